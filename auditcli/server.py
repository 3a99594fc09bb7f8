"""The audit-log HTTP API over a log directory: `GET /api/v1/audit-logs` with bearer tokens.

Needs the `server` extra (`pip install 'auditcli[server]'`: FastAPI and uvicorn). The endpoint
runs the same query engine as `audit query`: the same filters give the same answers. Stored
lines are not parsed on the way out; each entry's canonical bytes are copied into the response.

Every error is JSON `{"error": "...", "details": [...]}`, never a stack trace: 400 for a bad
parameter, 401 for a missing, malformed, unknown, expired or deleted token (with
`WWW-Authenticate: Bearer`), 403 for a token without the admin role, 404 and 405 for other paths
and methods (a trailing slash is another path: 404, never a redirect), 500 for a store that cannot
be read or anything unexpected (logged on the server, without the request's headers), 503 for a
request whose store work did not finish in time.

Store work (reading the accounts file, the catalog, the log files) never runs on the event loop:
it runs in a small pool of daemon threads and each request waits at most `request_timeout`
seconds for it, so a file the directory's writer planted to stall a reader costs that request
an error, other requests keep being served, and SIGTERM still stops the server.
"""

import asyncio
import io
import logging
import os
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, lineindex
from .accounts import AccountStore, ForbiddenError, ServiceAccount, TokenError
from .catalog import TARGETS
from .entry_model import Entry
from .errors import AuditError, UsageError
from .listing import DirectoryListings
from .query import Filters, QueryEngine, seed_json
from .render import write_json_response
from .store import AuditStore, LogFile
from .tailindex import TailCache
from .timeparse import parse_bound

API_PATH = "/api/v1/audit-logs"
#: Seconds a request waits for its store work before it is answered 503.
REQUEST_TIMEOUT = 60.0
#: Bytes of inflated gzip members kept for the pages of rotated days (lineindex).
INFLATED_MEMBERS_BUDGET = 16 << 20
REALM = "auditcli"
log = logging.getLogger("auditcli.server")

#: The API's words for each field, shown in the OpenAPI schema.
FIELD_DOCS = {
    "id": "Unique log entry id (a time-ordered UUIDv7 unless the recorder gave one).",
    "description": "Human-readable description of the action.",
    "actorId": "ID of the user who performed the action.",
    "actorName": "Name of the user who performed the action.",
    "actorEmail": "Email of the user who performed the action.",
    "action": "Machine-readable action identifier, e.g. login.",
    "actionDisplayName": "Human-readable action name, e.g. User Login.",
    "target": "Type of resource that was affected.",
    "targetId": "ID of the specific resource that was affected.",
    "metadata": "Additional context-specific information (a JSON object), or null.",
    "organizationId": "ID of the organization where the action occurred.",
    "teamId": "ID of the team, if applicable.",
    "createdAt": "When the action was recorded: UTC, millisecond precision, "
    "e.g. 2026-11-25T08:06:40.123Z.",
}


class AuditLogPage(BaseModel):
    """One page of matching entries, newest first, and the number of all matches."""

    total: int = Field(description="How many entries match the filters (all pages together).")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="How many matches were skipped.")
    logs: list[Entry] = Field(description="The entries of this page, newest first.")


class ErrorBody(BaseModel):
    """Every error response."""

    error: str = Field(description="What went wrong, in one sentence.")
    details: list[str] = Field(description="One line per problem, e.g. `limit: ...`; may be empty.")


def _error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error_doc(
        "A parameter is out of range or unparseable: limit outside 1-100, a negative offset, "
        "a bad timestamp, an unknown action or target, a parameter given twice. "
        "(createdAtGte after createdAtLte is no error: nothing matches.)"
    ),
    401: _error_doc(
        "The bearer token is missing, malformed, unknown, expired or was deleted. "
        "The response carries `WWW-Authenticate: Bearer`."
    ),
    403: _error_doc("The token is valid but its service account is not an organization admin."),
    404: _error_doc("No such path (a trailing slash is another path)."),
    405: _error_doc("Only GET and HEAD are allowed (see the Allow header)."),
    500: _error_doc(
        "The audit store cannot be read (a damaged or planted file) or an unexpected server "
        "error; details are in the server's log only."
    ),
    503: _error_doc("The store work of the request did not finish in time; retry later."),
}

_RULES = {
    "limit": "must be an integer from 1 to 100",
    "offset": "must be an integer, 0 or more",
    "actorId": "must be 1 to 512 characters",
}
_SINGLE_VALUED = ("limit", "offset", "createdAtGte", "createdAtLte", "action", "target", "actorId")


class ParameterError(UsageError):
    """One or more query parameters are invalid (HTTP 400); `problems` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid query parameters")
        self.problems = problems


def error_response(
    status: int,
    message: str,
    details: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one error shape: `{"error": message, "details": [...]}` with `status`."""
    return JSONResponse(
        {"error": message, "details": details or []},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


class CountCache:
    """How many lines of a file match a query's filters, remembered across requests.

    `total` needs every match counted, but a file only ever grows (and a rotated `.gz` never
    changes), so a count is keyed by the file's identity *as it was before the scan*
    (`lineindex.identity`: any write changes its ctime, which cannot be set back, unlike the
    mtime): any append, edit or replacement changes the key and the file is counted afresh. A
    file anyone else can write is never cached: bytes written through a shared mapping need
    not change its identity (`lineindex.private`). A
    file whose scan reported a problem (torn or foreign line) is never cached, so every answer
    keeps warning about it. Bounded (LRU); shared by the request threads.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._counts: OrderedDict[tuple[Any, ...], int] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(engine: QueryEngine, file: LogFile) -> tuple[Any, ...] | None:
        """The identity of `file` as it is now, under `engine`'s filters (None if it is gone
        or anyone else can write it)."""
        try:
            info = os.stat(file.path, follow_symlinks=False)
        except OSError:
            return None  # rotated or unreadable: the scan itself knows what to do
        if not lineindex.private(info):
            return None
        return (engine.filters, str(file.path), *lineindex.identity(info))

    def get(self, key: tuple[Any, ...] | None) -> int | None:
        """The remembered count for `key`, or None."""
        if key is None:
            return None
        with self._lock:
            count = self._counts.get(key)
            if count is None:
                self.misses += 1
            else:
                self._counts.move_to_end(key)
                self.hits += 1
            return count

    def put(self, key: tuple[Any, ...] | None, count: int) -> None:
        """Remember `count` for `key` (a key taken *before* the scan that counted)."""
        if key is None:
            return
        with self._lock:
            self._counts[key] = count
            if len(self._counts) > self.max_entries:
                self._counts.popitem(last=False)


class CachingQueryEngine(QueryEngine):
    """The CLI's query engine, with per-file match counts remembered in a CountCache and the
    files still appended to read incrementally through a TailCache."""

    def __init__(
        self, store: AuditStore, filters: Filters, cache: CountCache, tails: TailCache
    ) -> None:
        super().__init__(store, filters)
        self.cache = cache
        self.tails = tails

    def _growing(self, file: LogFile) -> bool:
        """Whether `file` is of today (or later): still appended to, never indexed."""
        return file.day >= self._today and not file.compressed

    def day_window(self, day: str, low: int, high: int) -> tuple[int, list[bytes]]:
        """The engine's own window of one partition; a single growing file answers from its
        TailCache entry, reading only the window's lines, at any offset."""
        files = self._day_files(day)
        if len(files) == 1 and self._growing(files[0]):
            answer = self.tails.window(self, files[0], low, high)
            if answer is not None:
                return answer[0], self._parseable(day, answer[1])
        return super().day_window(day, low, high)

    def file_count(self, file: LogFile) -> int:
        """The engine's own count of one file, through the caches."""
        if self._growing(file) and (count := self.tails.count(self, file)) is not None:
            return count
        key = self.cache.key(self, file)
        count = self.cache.get(key)
        if count is None:
            problems = len(self.problems)
            count = super().file_count(file)
            if len(self.problems) == problems:
                self.cache.put(key, count)
        return count

    def file_lines(self, file: LogFile) -> list[bytes]:
        """The engine's own matching lines of one file; a file known to hold no match is not
        read at all (what makes a rare actor's query fast once its counts are known)."""
        key = self.cache.key(self, file)
        if self.cache.get(key) == 0:
            return []
        problems = len(self.problems)
        lines = super().file_lines(file)
        if len(self.problems) == problems:
            self.cache.put(key, len(lines))
        return lines


class StoreWorkers:
    """A fixed pool of daemon threads that runs blocking store work for the event loop.

    Daemon threads, unlike those of `concurrent.futures`, are not joined at exit: a thread
    stuck on a file never keeps a stopped server alive. At most `size` pieces of work run at
    once (a query is CPU-bound and holds up to one partition's matches in memory); the rest
    queue."""

    def __init__(self, size: int) -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        for number in range(size):
            threading.Thread(target=self._serve, name=f"audit-store-{number}", daemon=True).start()

    def _serve(self) -> None:
        while True:
            future, work = self._work.get()
            if not future.set_running_or_notify_cancel():
                continue  # its request gave up while it queued
            try:
                future.set_result(work())
            except BaseException as exc:  # handed to the request, which answers with it
                future.set_exception(exc)

    async def run(self, work: Callable[[], Any], timeout: float) -> Any:
        """The result of `work()` run on a pool thread; StoreTimeoutError after `timeout` s."""
        future: Future[Any] = Future()
        self._work.put((future, work))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            future.cancel()  # dropped if it has not started; a started one runs out alone
            raise StoreTimeoutError(
                f"the request's store work did not finish in {timeout:g} s"
            ) from None


class StoreTimeoutError(AuditError):
    """A request's store work took longer than the server's request timeout (HTTP 503)."""


class NoQueryString(logging.Filter):
    """Drops the query string from uvicorn's access log lines: a client may put a token there
    (`?access_token=…`, refused) and the log must not keep it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the path argument of an access record; always keep the record."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with NoQueryString on its access log."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["no_query_string"] = {"()": NoQueryString}
    config["handlers"]["access"]["filters"] = ["no_query_string"]
    return config


def _bearer_token(request: Request) -> str | None:
    """The token of the request's `Authorization: Bearer <token>` header (scheme
    case-insensitive, RFC 7235); TokenError when the header is there but not of that form."""
    values = request.headers.getlist("authorization")
    if not values:
        return None
    if len(values) > 1:
        raise TokenError("malformed Authorization header: given more than once")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("malformed Authorization header: expected 'Bearer <token>'")
    return token.strip()


def create_app(
    store: AuditStore,
    accounts: AccountStore | None = None,
    *,
    max_concurrent_queries: int = 4,
    request_timeout: float = REQUEST_TIMEOUT,
) -> FastAPI:
    """The API application over `store`, authenticating with `accounts` (default: the store's
    own `_accounts/`). Serve it with any ASGI server, e.g. `uvicorn.run(create_app(store))`.

    At most `max_concurrent_queries` requests do store work at once per process (see
    StoreWorkers); later ones wait their turn, each at most `request_timeout` seconds in all.
    """
    accounts = accounts if accounts is not None else AccountStore(store)
    # A server lists the same directories on every request: reuse listings while unchanged.
    store.listings = listings = DirectoryListings()
    counts = CountCache()
    tails = TailCache()
    workers = StoreWorkers(max_concurrent_queries)
    # Pages of rotated days reread the same gzip members: keep the latest inflated ones.
    lineindex.keep_inflated_members(INFLATED_MEMBERS_BUDGET)
    app = FastAPI(
        redirect_slashes=False,  # a redirect would answer before authentication (and echo Host)
        title="auditcli audit log API",
        version=__version__,
        description=(
            "The promptfoo audit log API (`GET /api/v1/audit-logs`) over an auditcli log "
            "directory. Authenticate with a service-account token (`audit service-account "
            "create NAME --org-id ORG --role admin`) as `Authorization: Bearer <token>`; a "
            "token sees only its own organization's entries."
        ),
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: not on an audit server
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    # Exposed for tests and benchmarks.
    app.state.counts, app.state.tails, app.state.listings = counts, tails, listings
    bearer = HTTPBearer(
        auto_error=False,
        bearerFormat="audit_<43 URL-safe characters>",
        description="A service-account token; the account needs the admin role.",
    )

    async def authorize(
        request: Request, _: Annotated[Any, Depends(bearer)] = None
    ) -> ServiceAccount:
        # `bearer` only documents the scheme in OpenAPI; the header is checked here so a
        # malformed one gets 401 like an unknown one (HTTPBearer would answer 403).
        token = _bearer_token(request)
        account = await workers.run(lambda: accounts.authenticate(token), request_timeout)
        if account.role != "admin":
            raise ForbiddenError(
                f"service account {account.name!r} has role {account.role!r}; "
                "reading audit logs needs organization admin privileges (role admin)"
            )
        return account

    @app.api_route(
        API_PATH,
        methods=["GET"],
        response_model=AuditLogPage,
        responses=_ERRORS,
        summary="List audit log entries",
        description=(
            "Entries of the token's organization matching every given filter, newest first "
            "(ties by id), `limit` at a time from `offset`, with the total number of matches. "
            "Unknown parameters are ignored; each known one may be given once."
        ),
        operation_id="listAuditLogs",
        tags=["audit logs"],
    )
    async def list_audit_logs(
        request: Request,
        account: Annotated[ServiceAccount, Depends(authorize)],
        limit: Annotated[
            int, Query(ge=1, le=100, description="Number of logs to return (1-100).")
        ] = 20,
        offset: Annotated[
            int, Query(ge=0, description="Number of logs to skip for pagination.")
        ] = 0,
        createdAtGte: Annotated[
            str | None,
            Query(
                description="Only logs created at or after this ISO-8601 time "
                "(e.g. 2026-11-25T08:00:00Z; no offset means UTC; "
                "a bare date is its first millisecond).",
                examples=["2026-11-01T00:00:00Z"],
            ),
        ] = None,
        createdAtLte: Annotated[
            str | None,
            Query(
                description="Only logs created at or before this ISO-8601 time (a bare date "
                "includes that whole day).",
                examples=["2026-11-08T23:59:59.999Z"],
            ),
        ] = None,
        action: Annotated[
            str | None, Query(description="Only this action type, e.g. login.", examples=["login"])
        ] = None,
        target: Annotated[
            str | None,
            Query(
                description="Only this target type: "
                "USER, ROLE, TEAM, SERVICE_ACCOUNT or ORGANIZATION (in capitals).",
                examples=["USER"],
            ),
        ] = None,
        actorId: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=512,
                description="Only logs by this actor.",
                examples=["user-123"],
            ),
        ] = None,
    ) -> Response:
        repeated = [name for name in _SINGLE_VALUED if len(request.query_params.getlist(name)) > 1]
        if repeated:
            raise ParameterError([f"{name}: given more than once" for name in repeated])

        def work() -> tuple[bytes, CachingQueryEngine]:
            store.reload_catalog()  # `audit actions add` may have run since the last request
            filters = _filters(store, account, createdAtGte, createdAtLte, action, target, actorId)
            engine = CachingQueryEngine(store, filters, counts, tails)
            total, lines = engine.page(limit, offset)
            body = io.BytesIO()
            write_json_response(body, total, limit, offset, (seed_json(line) for line in lines))
            return body.getvalue(), engine

        body, engine = await workers.run(work, request_timeout)
        headers = {"Cache-Control": "no-store"}
        if engine.problems:
            # The answer leaves out lines that are not valid entries: say so, as the CLI does.
            for problem in engine.problems:
                log.warning("skipped: %s", problem)
            headers["X-Audit-Warning"] = (
                f"{len(engine.problems)} damaged or foreign line(s)/file(s) skipped; "
                "run audit verify"
            )
        return Response(body, media_type="application/json", headers=headers)

    # HEAD is answered like GET (the server sends the headers only); not a second operation
    # in the OpenAPI document.
    app.add_api_route(
        API_PATH, list_audit_logs, methods=["HEAD"], include_in_schema=False, responses=_ERRORS
    )
    _install_error_handlers(app)
    _install_openapi(app, store)
    return app


def _filters(
    store: AuditStore,
    account: ServiceAccount,
    gte: str | None,
    lte: str | None,
    action: str | None,
    target: str | None,
    actor_id: str | None,
) -> Filters:
    """The query's Filters, scoped to the token's organization; UsageError listing every bad
    parameter at once."""
    problems: list[str] = []
    since = until = None
    for name, value, end in (("createdAtGte", gte, False), ("createdAtLte", lte, True)):
        if value is None:
            continue
        try:
            bound = _api_bound(value, end=end, name=name, store=store)
        except UsageError as exc:
            hint = ""
            if " " in value.strip():
                hint = " (a '+' in a URL query means a space: send a +hh:mm offset as %2B)"
            problems.append(f"{exc}{hint}")
            continue
        if end:
            until = bound
        else:
            since = bound
    # createdAtGte after createdAtLte is an empty interval, not an error: OpenAPI cannot say
    # that one parameter must not exceed another, and the answer (no entry) is exact.
    if action is not None and action not in store.catalog:
        problems.append(f"action: {store.catalog.unknown_message(action)}")
    if target is not None:
        if target.islower():  # the OpenAPI enum: in capitals or all in lower case
            target = target.upper()
        try:
            Filters(targets=(target,)).check(store.catalog)
        except UsageError as exc:
            problems.append(f"target: {exc}")
    if problems:
        raise ParameterError(problems)
    return Filters(
        actions=(action,) if action is not None else (),
        targets=(target,) if target is not None else (),
        actor_ids=(actor_id,) if actor_id is not None else (),
        org_ids=(account.organization_id,),
        since=since,
        until=until,
    )


def _api_bound(value: str, *, end: bool, name: str, store: AuditStore) -> str:
    """A time bound of the API in canonical form: only the forms the OpenAPI document declares
    (RFC 3339 date-times, with or without offset, and dates; UsageError for any other). A real
    time that UTC cannot hold (year 1 or 9999 moved across the year's edge by its offset) lies
    before or after every entry: it is clamped to the first or last canonical time."""
    if not _API_TIME.fullmatch(value):
        raise UsageError(
            f"{name}: cannot read {value!r} as a time: use an RFC 3339 date-time "
            "(2026-11-25T08:06:40Z; no offset means UTC) or a date (2026-11-25)"
        )
    text = value.upper()
    try:
        return parse_bound(text, end=end, clock=store.clock, option=name)
    except UsageError:
        year = _overflowing_year(text)
        if year is None:
            raise
        return "0001-01-01T00:00:00.000Z" if year == 1 else "9999-12-31T23:59:59.999Z"


def _overflowing_year(text: str) -> int | None:
    """The year of `text` when it is a real time that only its conversion to UTC overflows."""
    try:
        moment = datetime.fromisoformat(text)
        moment.astimezone(UTC)
    except OverflowError:
        return moment.year
    except ValueError:
        return None
    return None


def _install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the one JSON error shape, never to a stack trace."""

    @app.exception_handler(AuditError)
    async def audit_error(request: Request, exc: AuditError) -> JSONResponse:
        if isinstance(exc, TokenError):
            challenge = f'Bearer realm="{REALM}"'
            if exc.code:
                challenge += f', error="{exc.code}"'
            return error_response(401, str(exc), headers={"WWW-Authenticate": challenge})
        if isinstance(exc, ForbiddenError):
            challenge = f'Bearer realm="{REALM}", error="insufficient_scope"'
            return error_response(403, str(exc), headers={"WWW-Authenticate": challenge})
        if isinstance(exc, UsageError):
            return error_response(400, str(exc), list(getattr(exc, "problems", [])))
        if isinstance(exc, StoreTimeoutError):
            log.error("%s on %s %s", exc, request.method, request.url.path)
            return error_response(503, str(exc), headers={"Retry-After": "5"})
        # The store or the accounts file is damaged: the operator must look; the client
        # cannot fix it.
        log.error("%s: %s", type(exc).__name__, exc)
        return error_response(500, "the server cannot read its audit store; see the server log")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for err in exc.errors():
            name = str(err["loc"][-1]) if err.get("loc") else "request"
            rule = _RULES.get(name)
            got = err.get("input")
            details.append(f"{name}: {rule}, got {got!r}" if rule else f"{name}: {err['msg']}")
        return error_response(400, "invalid query parameters", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "not found", 405: "method not allowed"}
        message = messages.get(exc.status_code) or str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and request.url.path == API_PATH:
            headers["Allow"] = "GET, HEAD"  # two routes: the router names only the first
        return error_response(exc.status_code, message, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with the path only, never the headers (they carry the token); the ASGI server
        # logs the traceback itself.
        log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return error_response(500, "internal server error")


def _install_openapi(app: FastAPI, store: AuditStore) -> None:
    """Document 400 (not FastAPI's default 422), describe the entry's fields, and declare what
    each parameter accepts: `action` lists the catalog's actions (builtin and custom) as they
    are when the document is fetched (`audit actions add` changes it), `target` the five
    targets, the time bounds their date-time format."""
    made: dict[tuple[str, ...], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        store.reload_catalog()
        actions = tuple(spec.action for spec in store.catalog)
        if actions in made:
            return made[actions]
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
                for parameter in operation.get("parameters", []):
                    declared = _PARAMETER_SCHEMAS.get(parameter["name"])
                    if parameter["name"] == "action":
                        declared = {"type": "string", "enum": list(actions)}
                    if declared is not None:
                        parameter["schema"] = {**declared, "title": parameter["name"]}
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        entry = components.get("Entry", {})
        entry["description"] = "One audit log entry: exactly the 13 entry fields."
        for name, prop in entry.get("properties", {}).items():
            if name in FIELD_DOCS:
                prop["description"] = FIELD_DOCS[name]
        made.clear()  # one catalog at a time
        made[actions] = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


#: What the OpenAPI document declares for a parameter where FastAPI would say "any string".
#: RFC 3339 date-times and dates (a date-time without offset, read as UTC, is accepted too:
#: the parameter's text says so; JSON Schema's date-time format has no such form).
_TIME_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]
}
_PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "target": {"type": "string", "enum": [*TARGETS, *(t.lower() for t in TARGETS)]},
    "createdAtGte": _TIME_SCHEMA,
    "createdAtLte": _TIME_SCHEMA,
}
#: The time forms the API accepts (what _TIME_SCHEMA declares): RFC 3339 date-times, with or
#: without an offset, and dates.
_API_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})?)?"
)


def app_from_environment() -> FastAPI:
    """The app over `$AUDIT_LOG_DIR` (or the default log directory): the factory uvicorn
    imports in each worker process when `audit serve --workers N` runs several."""
    return create_app(AuditStore(os.environ.get("AUDIT_LOG_DIR") or None))
