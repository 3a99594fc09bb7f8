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
    StderrProgress,
    TableOrJson,
    TargetIdOpt,
    TargetOpt,
    TeamIdOpt,
    UntilOpt,
    console,
    deliver,
    filters_from_options,
    get_store,
    report_problems,
    say,
    stdout_is_terminal,
    time_window,
    write_json,
)
from auditcli.errors import InvalidEntryError, UsageError


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
            "(options fill the fields it lacks)."
        ),
    ],
    actor_id: Annotated[
        str | None,
        typer.Option("--actor-id", envvar="AUDIT_ACTOR_ID", help="Who did it (required)."),
    ] = None,
    actor_name: Annotated[
        str | None,
        typer.Option("--actor-name", envvar="AUDIT_ACTOR_NAME", help="Their display name."),
    ] = None,
    actor_email: Annotated[
        str | None,
        typer.Option(
            "--actor-email",
            envvar="AUDIT_ACTOR_EMAIL",
            help="Their email (used in the description).",
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Target type (default: the action's).")
    ] = None,
    target_id: Annotated[
        str | None,
        typer.Option(
            "--target-id", help="The resource acted on (a login's defaults to the actor)."
        ),
    ] = None,
    target_name: Annotated[
        str | None,
        typer.Option("--target-name", help="The resource's name, used in the description."),
    ] = None,
    org_id: Annotated[
        str | None,
        typer.Option("--org-id", envvar="AUDIT_ORG_ID", help="The organization (required)."),
    ] = None,
    team_id: Annotated[
        str | None, typer.Option("--team-id", help="The team, where one applies.")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Default: the action's template.")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", help="A JSON object of extra context.")
    ] = None,
    meta: Annotated[
        list[str] | None,
        typer.Option("--meta", help="key=value added to metadata (a string); repeatable."),
    ] = None,
    created_at: Annotated[
        str | None, typer.Option("--created-at", help="ISO-8601 time with offset (default: now).")
    ] = None,
    entry_id: Annotated[
        str | None, typer.Option("--id", help="The entry id (default: a new UUIDv7).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the stored entry instead of its id.")
    ] = False,
) -> None:
    """Record one entry and print its id.

    Example: audit record team_created --actor-id user-1 --org-id org-1 --target-id team-101
    """
    from auditcli.model import dumps_entry, loads_strict

    store = get_store(ctx)
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
        "createdAt": created_at,
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
    printed = dumps_entry(entry) if as_json else entry["id"].encode()
    deliver(printed + b"\n", f"the entry IS recorded, with id {entry['id']}")


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
    source: Annotated[str, typer.Argument(help="A JSONL file, or '-' for stdin.")],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Write the valid lines and report the rest.")
    ] = False,
) -> None:
    """Import JSONL entries (the seed's format). Validates every line before writing any.

    Example: audit import entries.jsonl
    """
    from auditcli.importer import import_jsonl

    store = get_store(ctx)
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
        with _progress(size) as progress:
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


class _progress(StderrProgress):
    """A byte progress bar on stderr when stderr is a terminal, else nothing."""

    def __init__(self, size: int | None) -> None:
        super().__init__()
        self.size = size

    def columns(self) -> list[Any]:
        from rich.progress import BarColumn, DownloadColumn, TextColumn

        return [TextColumn("{task.description}"), BarColumn(), DownloadColumn()]

    def callback(self, bar: Any) -> Any:
        total = self.size * 2 if self.size else None
        task = bar.add_task("importing", total=total)

        def advance(phase: str, done: int) -> None:
            bar.update(task, advance=done, description=phase)

        return advance


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
    engine = QueryEngine(store, filters, order=order.value)
    if count:
        typer.echo(str(engine.count()))
        report_problems(engine.problems)
        return
    chosen = fmt or (QueryFormat.table if stdout_is_terminal() else QueryFormat.jsonl)
    out = sys.stdout.buffer
    if all_:
        _stream_all(engine, chosen, out)
    else:
        total, lines = engine.page(limit, offset)
        _write_page(chosen, total, limit, offset, lines, filters, out)
    out.flush()
    report_problems(engine.problems)


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
    from auditcli.render import entries_table, write_json_response

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
    else:
        entries = _entries(engine.stream())
        console().print(entries_table(entries, caption=f"{len(entries)} entries"))


def _write_page(
    chosen: QueryFormat,
    total: int,
    limit: int,
    offset: int,
    lines: list[bytes],
    filters: Any,
    out: Any,
) -> None:
    from auditcli.query import seed_json
    from auditcli.render import entries_table, write_json_response

    if chosen is QueryFormat.json:
        write_json_response(out, total, limit, offset, (seed_json(line) for line in lines))
    elif chosen is QueryFormat.jsonl:
        for line in lines:
            out.write(seed_json(line) + b"\n")
    elif chosen is QueryFormat.csv:
        _write_csv(lines, out)
    else:
        shown = f"{offset + 1}–{offset + len(lines)} of {total}" if lines else f"0 of {total}"
        caption = f"{shown} · {time_window(filters)}"
        console().print(entries_table(_entries(lines), caption=caption))


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
    fmt: Annotated[
        TableOrJson, typer.Option("--format", "-f", help="table for people, json for scripts.")
    ] = TableOrJson.table,
) -> None:
    """List every action: name, display name, default target, group.

    Example: audit actions --format json
    """
    if ctx.invoked_subcommand is not None:
        return
    store = get_store(ctx)
    specs = list(store.catalog)
    if fmt is TableOrJson.json:
        write_json([spec.as_dict() for spec in specs])
        return
    console().print(_actions_table(specs))


def _actions_table(specs: list[Any]) -> Any:
    """The catalog under group headings, as the seed lists it. Action names never wrap (people
    copy them into commands); three columns fit 80 with the longest builtin names."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from auditcli.render import visible

    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("Action", no_wrap=True, overflow="ellipsis")
    table.add_column("Display name", overflow="fold")
    table.add_column("Target", no_wrap=True)
    groups: dict[str, list[Any]] = {}
    for spec in specs:
        groups.setdefault(spec.group, []).append(spec)
    for n, (group, members) in enumerate(groups.items()):
        if n:
            table.add_row()
        table.add_row(Text(visible(group), style="bold"), Text(), Text())
        for spec in members:
            table.add_row(
                Text("  " + visible(spec.action)),
                Text(visible(spec.display_name)),
                Text(spec.target),
            )
    return table


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
    typer.echo(str(get_store(ctx).root))
