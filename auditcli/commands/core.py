"""`audit record`, `import`, `query`, `actions` and `path`."""

# No `from __future__ import annotations`: typer would eval every annotation string at start-up.

import sys
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from auditcli.cli import app
from auditcli.cli_options import (
    ActionOpt,
    ActorIdOpt,
    Order,
    OrgIdOpt,
    SinceOpt,
    TableOrJson,
    TableOrJsonOpt,
    TargetIdOpt,
    TargetOpt,
    TeamIdOpt,
    UntilOpt,
    complete_action,
    complete_target,
    deliver,
    filters_from_options,
    get_store,
    pick_format,
    progress_bar,
    report_problems,
    say,
    screen,
    time_window,
    write_json,
)
from auditcli.errors import InvalidEntryError, UsageError


class RecordFormat(StrEnum):
    id = "id"
    json = "json"


class QueryFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


# ----------------------------------------------------------------------------- record
@app.command()
def record(
    ctx: typer.Context,
    action: Annotated[
        str,
        typer.Argument(
            help="The action, e.g. login or team_created; '-' reads one JSON entry from stdin "
            "(options fill the fields it lacks).",
            autocompletion=complete_action,
        ),
    ],
    actor_id: Annotated[
        str | None,
        typer.Option(
            "--actor-id", metavar="ID", envvar="AUDIT_ACTOR_ID", help="Who did it (required)."
        ),
    ] = None,
    actor_name: Annotated[
        str | None,
        typer.Option(
            "--actor-name", metavar="NAME", envvar="AUDIT_ACTOR_NAME", help="Their display name."
        ),
    ] = None,
    actor_email: Annotated[
        str | None,
        typer.Option(
            "--actor-email",
            metavar="EMAIL",
            envvar="AUDIT_ACTOR_EMAIL",
            help="Their email (used in the description).",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="TYPE",
            autocompletion=complete_target,
            help="Target type (default: the action's).",
        ),
    ] = None,
    target_id: Annotated[
        str | None,
        typer.Option(
            "--target-id",
            metavar="ID",
            help="The resource acted on (a login's defaults to the actor).",
        ),
    ] = None,
    target_name: Annotated[
        str | None,
        typer.Option(
            "--target-name", metavar="NAME", help="The resource's name, used in the description."
        ),
    ] = None,
    org_id: Annotated[
        str | None,
        typer.Option(
            "--org-id", metavar="ID", envvar="AUDIT_ORG_ID", help="The organization (required)."
        ),
    ] = None,
    team_id: Annotated[
        str | None, typer.Option("--team-id", metavar="ID", help="The team, where one applies.")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Default: the action's template.")
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option("--metadata", metavar="JSON", help="A JSON object of extra context."),
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option(
            "--meta", metavar="KEY=VALUE", help="Added to metadata (a string); repeatable."
        ),
    ] = None,
    created_at: Annotated[
        str | None,
        typer.Option(
            "--created-at",
            metavar="TIME",
            help="ISO-8601 time with offset, or e.g. '5 minutes ago' (default: now).",
        ),
    ] = None,
    entry_id: Annotated[
        str | None,
        typer.Option("--id", metavar="ID", help="The entry id (default: a new UUIDv7)."),
    ] = None,
    fmt: Annotated[
        RecordFormat,
        typer.Option("--format", "-f", help="id: print the new id; json: the stored entry."),
    ] = RecordFormat.id,
    as_json: Annotated[
        bool, typer.Option("--json", hidden=True, help="Old spelling of --format json.")
    ] = False,
) -> None:
    """Record one entry and print its id.

    Example: audit record team_created --actor-id user-1 --org-id org-1 --target-id team-101
    """
    from auditcli.model import dumps_entry, loads_strict

    store = get_store(ctx, must_exist=False)
    given = {
        "actorId": actor_id,
        "actorName": actor_name,
        "actorEmail": actor_email,
        "target": target.upper() if target else None,
        "targetId": target_id,
        "organizationId": org_id,
        "teamId": team_id,
        "description": description,
        "metadata": _metadata(metadata, meta or []),
        "createdAt": _entry_time(created_at, store.clock) if created_at else None,
        "id": entry_id,
    }
    given = {key: value for key, value in given.items() if value is not None}
    if action == "-":
        from auditcli.importer import MAX_INPUT_LINE

        raw = sys.stdin.buffer.read(MAX_INPUT_LINE + 1)  # bounded: stdin may be hostile
        if len(raw) > MAX_INPUT_LINE:
            raise InvalidEntryError(f"stdin: longer than {MAX_INPUT_LINE >> 20} MiB; not read")
        if not raw.strip():
            raise InvalidEntryError("stdin: no entry (the input is empty)")
        try:
            data: Any = loads_strict(raw)
        except ValueError as exc:
            raise InvalidEntryError(f"stdin: {exc}") from None
        if isinstance(data, dict):
            # Options and AUDIT_* variables fill what the JSON leaves out (a script sets
            # AUDIT_ORG_ID once); a field the JSON gives, even as null, is the JSON's.
            data = {**given, **data}
    else:
        data = {"action": action, **given}
    entry = store.record(data, target_name=target_name)
    as_entry = as_json or fmt is RecordFormat.json
    printed = dumps_entry(entry) if as_entry else entry["id"].encode()
    deliver(printed + b"\n", f"the entry IS recorded, with id {entry['id']}")


def _entry_time(text: str, clock: Any) -> str:
    """`--created-at`: `now` or a duration back from now (`5m`, `2 hours ago`) is resolved
    here; anything else goes to the entry's own check (ISO-8601 with an offset)."""
    from auditcli.timeparse import relative_time

    try:
        return relative_time(text, clock) or text
    except ValueError as exc:
        raise UsageError(f"--created-at: {exc}") from None


def _metadata(raw: str | None, pairs: list[str]) -> dict[str, Any] | None:
    from auditcli.model import loads_strict

    result: dict[str, Any] | None = None
    if raw is not None:
        try:
            result = loads_strict(raw)
        except ValueError as exc:
            raise InvalidEntryError(f"metadata: {exc}") from None
        if not isinstance(result, dict):
            raise InvalidEntryError("metadata: must be a JSON object")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta: expected key=value, got {pair!r}")
        result = {} if result is None else result
        if key in result:
            raise UsageError(f"--meta: key {key!r} is given twice")
        result[key] = value
    return result


# ----------------------------------------------------------------------------- import
@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="FILE", help="A JSONL file, or '-' for stdin.")],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Write the valid lines and report the rest.")
    ] = False,
) -> None:
    """Import JSONL entries (the API's entry format). Validates every line before writing any.

    Example: audit import entries.jsonl
    """
    from auditcli.importer import import_jsonl

    store = get_store(ctx, must_exist=False)
    if source == "-":
        stream, size = sys.stdin.buffer, None
    else:
        path = Path(source)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise UsageError(f"{source}: cannot open: {exc.strerror}") from None
        size = path.stat().st_size if path.is_file() else None
    try:
        with progress_bar(ctx, "importing", total=size) as progress:
            report = import_jsonl(store, stream, skip_invalid=skip_invalid, progress=progress)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    for problem in report.problems:
        say(f"skipped: {problem}")
    duplicates = f", {report.duplicates} duplicate(s) skipped" if report.duplicates else ""
    invalid = f", {report.invalid} invalid line(s) skipped" if report.invalid else ""
    summary = f"imported {report.written} entries{duplicates}{invalid}"
    deliver(summary.encode() + b"\n", f"the import IS done: {summary}")
    if report.unstable:
        say(
            f"note: {report.unstable} line(s) had neither id nor createdAt: they got new ids "
            "and the import time, so importing this input again would store them again"
        )


# ----------------------------------------------------------------------------- query
@app.command()
def query(
    ctx: typer.Context,
    action: ActionOpt = None,
    target: TargetOpt = None,
    actor_id: ActorIdOpt = None,
    target_id: TargetIdOpt = None,
    team_id: TeamIdOpt = None,
    org_id: OrgIdOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Entries per page.")] = 20,
    offset: Annotated[int, typer.Option("--offset", help="Matches to skip.")] = 0,
    all_: Annotated[
        bool, typer.Option("--all", help="Every match, streamed (ignores --limit/--offset).")
    ] = False,
    order: Annotated[
        Order, typer.Option("--order", help="desc: newest first; ties by id.")
    ] = Order.desc,
    fmt: Annotated[
        QueryFormat | None,
        typer.Option("--format", "-f", help="Default: table on a terminal, else jsonl."),
    ] = None,
    count: Annotated[
        bool, typer.Option("--count", help="Print only the number of matches.")
    ] = False,
) -> None:
    """Answer who did what, and when.

    Example: audit query --action login --since 7d --actor-id user-123
    """
    from auditcli.query import QueryEngine

    store = get_store(ctx)
    filters = filters_from_options(ctx, store)
    if limit < 1:
        raise UsageError("--limit: must be at least 1")
    if offset < 0:
        raise UsageError("--offset: must be 0 or more")
    chosen = pick_format(fmt, QueryFormat.table, QueryFormat.jsonl)
    out = sys.stdout.buffer
    with progress_bar(ctx, "indexing") as progress:
        # The first query after an import or a rotation indexes the settled files it reads.
        engine = QueryEngine(store, filters, order=order.value, progress=progress)
        if count:
            total = engine.count()
        elif all_ and chosen is not QueryFormat.table:
            _stream_all(engine, chosen, out)
        elif all_:
            lines = list(engine.stream())
        else:
            total, lines = engine.page(limit, offset)
    if count:
        typer.echo(str(total))
    elif all_ and chosen is QueryFormat.table:
        _show_table(ctx, _entries(lines), f"{len(lines)} entries")
    elif not all_:
        _write_page(ctx, chosen, (total, limit, offset), lines, filters, out)
    out.flush()
    report_problems(engine.problems)


def _show_table(ctx: typer.Context, entries: list[dict[str, Any]], caption: str) -> None:
    from auditcli.render import entries_table

    with screen(ctx) as shown:
        shown.print(entries_table(entries, width=shown.width, caption=caption))


def _entries(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    from auditcli.query import seed_json
    from auditcli.render import loads_entry

    return [loads_entry(seed_json(line)) for line in lines]


def _write_csv(lines: Iterable[bytes], out: Any) -> None:
    from auditcli.query import seed_json
    from auditcli.render import csv_rows, loads_entry

    for row in csv_rows(loads_entry(seed_json(line)) for line in lines):
        out.write(row.encode())


def _stream_all(engine: Any, chosen: QueryFormat, out: Any) -> None:
    from auditcli.render import write_json_response

    if chosen is QueryFormat.jsonl:
        # Whole blocks of stored bytes (chain suffix cut off): no per-entry parse or write.
        for _, block in engine.content_blocks():
            out.write(block)
    elif chosen is QueryFormat.csv:
        _write_csv(engine.stream(), out)
    elif chosen is QueryFormat.json:
        import tempfile

        # `total` comes first in the response, so the matches are spooled, then written.
        with tempfile.TemporaryFile() as spool:
            total = 0
            for count, block in engine.content_blocks():
                spool.write(block)
                total += count
            spool.seek(0)
            write_json_response(out, total, total, 0, (row[:-1] for row in spool))


def _write_page(
    ctx: typer.Context,
    chosen: QueryFormat,
    page: tuple[int, int, int],
    lines: list[bytes],
    filters: Any,
    out: Any,
) -> None:
    from auditcli.query import seed_json
    from auditcli.render import write_json_response

    total, limit, offset = page
    if chosen is QueryFormat.json:
        write_json_response(out, total, limit, offset, (seed_json(line) for line in lines))
    elif chosen is QueryFormat.jsonl:
        for line in lines:
            out.write(seed_json(line) + b"\n")
    elif chosen is QueryFormat.csv:
        _write_csv(lines, out)
    else:
        shown = f"{offset + 1}–{offset + len(lines)} of {total}" if lines else f"0 of {total}"
        _show_table(ctx, _entries(lines), f"{shown} · {time_window(filters)}")


# ----------------------------------------------------------------------------- actions
actions_app = typer.Typer(
    help="List the action catalog, or add your own actions.\n\n"
    "Example: audit actions --format json",
    no_args_is_help=False,
)
app.add_typer(actions_app, name="actions")


@actions_app.callback(invoke_without_command=True)
def actions(
    ctx: typer.Context,
    fmt: TableOrJsonOpt = None,
) -> None:
    """List every action: name, display name, default target, group.

    Example: audit actions --format json
    """
    if ctx.invoked_subcommand is not None:
        return
    store = get_store(ctx)
    specs = list(store.catalog)
    if pick_format(fmt, TableOrJson.table, TableOrJson.json) is TableOrJson.json:
        write_json([spec.as_dict() for spec in specs])
        return
    with screen(ctx) as out:
        out.print(_actions_table(specs, out.width))


def _actions_table(specs: list[Any], width: int) -> Any:
    """The catalog under group headings. Action names never wrap (people copy them into
    commands); on a narrow terminal the target, then the display name give way."""
    from rich.text import Text

    from auditcli.render import Column, fit_table, visible

    rows: list[tuple[Any, ...]] = []
    groups: dict[str, list[Any]] = {}
    for spec in specs:
        groups.setdefault(spec.group, []).append(spec)
    for n, (group, members) in enumerate(groups.items()):
        if n:
            rows.append(("", "", ""))
        rows.append((Text(visible(group), style="bold"), "", ""))
        rows.extend(("  " + spec.action, spec.display_name, spec.target) for spec in members)
    columns = (Column("Action"), Column("Display name", priority=1), Column("Target", priority=2))
    return fit_table(columns, rows, width=width)


@actions_app.command("add")
def actions_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="snake_case action name, e.g. deploy_approved.")],
    display_name: Annotated[str, typer.Option("--display-name", help="Human-readable name.")],
    target: Annotated[str, typer.Option("--target", help="Default target type.")],
    template: Annotated[
        str,
        typer.Option("--template", help="Description template: {actor}, {target}, {team}, {org}."),
    ],
    group: Annotated[str, typer.Option("--group", help="The group it is listed under.")] = "Custom",
) -> None:
    """Add a custom action to the log directory's catalog (_catalog.json).

    Example: audit actions add deploy_approved --display-name "Deploy Approved"
    --target ORGANIZATION --template "{actor} approved deploy {target}"
    """
    from auditcli.catalog import add_custom_action

    store = get_store(ctx)
    spec = add_custom_action(store.root, name, display_name, target.upper(), template, group)
    typer.echo(spec.action)


# ----------------------------------------------------------------------------- path
@app.command()
def path(ctx: typer.Context) -> None:
    """Print the log directory in use.

    Example: audit path
    """
    typer.echo(str(get_store(ctx, must_exist=False).root))
