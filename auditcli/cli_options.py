"""Options shared by several commands, defined once, and the helpers commands use to render.

Nothing here imports rich at module level: `audit record` in a shell loop must start fast.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from .store import AuditStore

_FILTERS = "Filters"


class TableOrJson(StrEnum):
    """`--format` of a command that draws a table for people or writes JSON for scripts."""

    table = "table"
    json = "json"


class Order(StrEnum):
    """`--order`: by createdAt, ties by id."""

    desc = "desc"
    asc = "asc"


ActionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--action",
        "-a",
        help="Only this action (repeat for any of several).",
        rich_help_panel=_FILTERS,
    ),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        "-t",
        help="Only this target type: USER, ROLE, TEAM, SERVICE_ACCOUNT, ORGANIZATION.",
        rich_help_panel=_FILTERS,
    ),
]
ActorIdOpt = Annotated[
    list[str] | None,
    typer.Option("--actor-id", help="Only entries by this actor.", rich_help_panel=_FILTERS),
]
TargetIdOpt = Annotated[
    list[str] | None,
    typer.Option("--target-id", help="Only entries about this resource.", rich_help_panel=_FILTERS),
]
TeamIdOpt = Annotated[
    list[str] | None,
    typer.Option("--team-id", help="Only entries of this team.", rich_help_panel=_FILTERS),
]
OrgIdOpt = Annotated[
    list[str] | None,
    typer.Option("--org-id", help="Only entries of this organization.", rich_help_panel=_FILTERS),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        "--created-at-gte",
        help="From this time, inclusive: 2026-11-25T08:00:00Z, 2026-11-25, 7d, 24h, today…",
        rich_help_panel=_FILTERS,
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until",
        "--created-at-lte",
        help="Up to this time, inclusive (a bare date includes that whole day).",
        rich_help_panel=_FILTERS,
    ),
]


def make_filters(
    store: AuditStore,
    *,
    action: list[str] | None = None,
    target: list[str] | None = None,
    actor_id: list[str] | None = None,
    target_id: list[str] | None = None,
    team_id: list[str] | None = None,
    org_id: list[str] | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Any:
    """Build and check the core's Filters from the shared filter options."""
    from .query import Filters
    from .timeparse import parse_bound

    filters = Filters(
        actions=tuple(action or ()),
        targets=tuple(value.upper() for value in target or ()),
        actor_ids=tuple(actor_id or ()),
        target_ids=tuple(target_id or ()),
        team_ids=tuple(team_id or ()),
        org_ids=tuple(org_id or ()),
        since=parse_bound(since, end=False, clock=store.clock, option="--since") if since else None,
        until=parse_bound(until, end=True, clock=store.clock, option="--until") if until else None,
    )
    return filters.check(store.catalog)


_FILTER_OPTIONS = (
    "action",
    "target",
    "actor_id",
    "target_id",
    "team_id",
    "org_id",
    "since",
    "until",
)


def filters_from_options(ctx: typer.Context, store: AuditStore) -> Any:
    """The checked Filters of a command that declares the shared filter options above."""
    return make_filters(store, **{name: ctx.params.get(name) for name in _FILTER_OPTIONS})


def get_store(ctx: typer.Context) -> AuditStore:
    """The store of the log directory chosen by `--log-dir`, `AUDIT_LOG_DIR` or the default."""
    root: Path | None = ctx.obj.get("log_dir") if ctx.obj else None
    return AuditStore(root)


def stdout_is_terminal() -> bool:
    """Whether standard output is a terminal (tables by default) or a pipe (JSONL)."""
    return sys.stdout.isatty()


def console(stderr: bool = False) -> Any:
    """A rich Console that never interprets markup or emoji and honours NO_COLOR."""
    from rich.console import Console

    return Console(
        stderr=stderr,
        markup=False,
        emoji=False,
        highlight=False,
        no_color="NO_COLOR" in os.environ or None,
    )


class StderrProgress:
    """A transient rich progress bar on stderr, shown only when stderr is a terminal. `with`
    gives the callback that advances it, or None (nothing to draw: a pipe, a log file, a test).
    A subclass names the bar's columns and makes the callback."""

    def __init__(self) -> None:
        self.bar: Any = None

    def columns(self) -> list[Any]:
        """The rich progress columns."""
        raise NotImplementedError

    def callback(self, bar: Any) -> Any:
        """Add the task to the started `bar`; return the function that advances it."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return None
        from rich.progress import Progress

        self.bar = Progress(*self.columns(), console=console(stderr=True), transient=True)
        self.bar.start()
        return self.callback(self.bar)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def say(message: str) -> None:
    """A diagnostic line on stderr (never on stdout, which is for results); control and bidi
    characters from untrusted input are shown as escapes."""
    from .errors import inert

    sys.stderr.write(inert(message) + "\n")


def write_out(data: bytes) -> None:
    """Raw bytes to stdout."""
    sys.stdout.buffer.write(data)


def deliver(data: bytes, done: str) -> None:
    """Write `data` to stdout and flush it now; when stdout fails (full disk, closed pipe),
    an error (exit 1) that says what was `done` all the same, e.g. that an entry is stored
    and its id, which the caller would otherwise lose."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except OSError as exc:
        from .errors import AuditError

        # What is still buffered would fail again at exit, with a traceback-like message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise AuditError(f"stdout: {exc.strerror or exc}; {done}") from None


def write_json(data: Any) -> None:
    """`data` as indented JSON and a newline on stdout (the `--format json` of the commands)."""
    import orjson

    write_out(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def time_window(filters: Any) -> str:
    """The --since/--until window of `filters`, as a table caption shows it."""
    return f"{filters.since or 'beginning'} → {filters.until or 'now'} (UTC)"


def report_problems(problems: list[Any], outcome: str = "") -> None:
    """Damaged lines were skipped: a warning for each on stderr, then exit 5 (IntegrityError),
    after the answer was printed; `outcome` says what that meant for the output."""
    if not problems:
        return
    from .errors import IntegrityError

    for problem in problems:
        say(f"warning: {problem}")
    raise IntegrityError(
        f"{len(problems)} damaged or foreign line(s)/file(s) were skipped"
        + (f"; {outcome}" if outcome else "")
        + "; run `audit verify`"
    )
