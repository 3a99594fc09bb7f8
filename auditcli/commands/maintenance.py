"""`audit rotate`, `export`, `stats`, `tail` and `schema`."""

from __future__ import annotations

import sys
import time
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
    TargetIdOpt,
    TargetOpt,
    TeamIdOpt,
    UntilOpt,
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
from auditcli.errors import IntegrityError, UsageError

SigningKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--signing-key",
        metavar="FILE",
        envvar="AUDIT_SIGNING_KEY",
        help="Ed25519 private key (PEM) signing retention receipts (default: $AUDIT_SIGNING_KEY).",
    ),
]


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    ocsf = "ocsf"
    syslog = "syslog"


class TailFormat(StrEnum):
    table = "table"
    text = "text"  # the old name of table, still accepted
    jsonl = "jsonl"
    csv = "csv"
    ocsf = "ocsf"
    syslog = "syslog"


class StatsFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class Dialect(StrEnum):
    duckdb = "duckdb"
    spark = "spark"
    athena = "athena"
    trino = "trino"


# ----------------------------------------------------------------------------- rotate
@app.command()
def rotate(
    ctx: typer.Context,
    compress_after: Annotated[
        int,
        typer.Option(
            "--compress-after",
            help="Compress days at least this many days before today (UTC); 1 = all but today.",
        ),
    ] = 1,
    delete_after: Annotated[
        int | None,
        typer.Option(
            "--delete-after",
            help="Delete whole days at least this many days old, with a receipt (default: never).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")
    ] = False,
    signing_key: SigningKeyOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing when all went well.")
    ] = False,
) -> None:
    """Compress closed days to gzip and apply retention. Safe to run from cron, any time.

    A day D is compressed when today - D >= --compress-after (UTC days) and deleted when
    today - D >= --delete-after. Writers keep appending meanwhile; an interrupted run is
    completed by the next one; a second run changes nothing.

    Example: audit rotate --compress-after 1 --delete-after 400
    """
    from auditcli.maintenance import rotate as run_rotate
    from auditcli.render import human_size

    store = get_store(ctx)
    with progress_bar(ctx, "rotating", unit="files") as progress:
        steps = 0

        def show(step: Any) -> None:
            nonlocal steps
            if not quiet or step.action == "problem":
                typer.echo(("would " if dry_run else "") + _step_line(step))
            steps += 1
            if progress is not None:
                progress(steps)

        report = run_rotate(
            store,
            compress_after=compress_after,
            delete_after=delete_after,
            dry_run=dry_run,
            signing_key=signing_key,
            on_step=show,
        )
    compressed = [s for s in report.steps if s.action == "compress"]
    before = sum(s.bytes_in for s in compressed)
    after = sum(s.bytes_out for s in compressed)
    if dry_run:
        parts = [f"would compress {len(compressed)} file(s) ({human_size(before)})"]
    else:
        sizes = f" ({human_size(before)} -> {human_size(after)})" if compressed else ""
        parts = [f"compressed {len(compressed)} file(s){sizes}"]
    if report.count("finish"):
        parts.append(f"finished {report.count('finish')} interrupted rotation(s)")
    if report.delete_before is not None:
        parts.append(f"{'would delete' if dry_run else 'deleted'} {report.count('delete')} day(s)")
    summary = ("dry run: " if dry_run else "") + ", ".join(parts)
    if not report.steps:
        summary = f"nothing to do: every day before {report.compress_before} is compressed"
    if not quiet or report.problems:
        typer.echo(summary)
    if report.problems:
        raise IntegrityError(
            f"{len(report.problems)} file(s) could not be rotated and were left in place"
        )


def _step_line(step: Any) -> str:
    """A rotation step as `rotate` prints it: sizes as people read them."""
    from auditcli.render import human_size

    if step.action != "compress":
        return str(step)
    if step.bytes_out:
        ratio = f" ({step.bytes_out * 100 // step.bytes_in}%)" if step.bytes_in else ""
        sizes = f"{human_size(step.bytes_in)} -> {human_size(step.bytes_out)}{ratio}"
    else:
        sizes = f"{human_size(step.bytes_in)} (dry run)"
    return f"{step.action:<9} {step.target}  {sizes}"


# ----------------------------------------------------------------------------- export
@app.command()
def export(
    ctx: typer.Context,
    action: ActionOpt = None,
    target: TargetOpt = None,
    actor_id: ActorIdOpt = None,
    target_id: TargetIdOpt = None,
    team_id: TeamIdOpt = None,
    org_id: OrgIdOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format", "-f", help="jsonl, json (one array), csv, ocsf or syslog (RFC 5424)."
        ),
    ] = ExportFormat.jsonl,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write this file atomically (default: stdout)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --output file.")
    ] = False,
    gzip: Annotated[
        bool, typer.Option("--gzip", help="Compress the output (one gzip member).")
    ] = False,
    order: Annotated[Order, typer.Option("--order", help="asc: oldest first.")] = Order.asc,
) -> None:
    """Export every matching entry, streamed, as JSONL, JSON, CSV, OCSF or syslog.

    Example: audit export --since 2026-11-01 --until 2026-11-30 -f csv -o november.csv
    """
    from auditcli.export import export as run_export
    from auditcli.outfile import OutputFile

    store = get_store(ctx)
    filters = filters_from_options(ctx, store)
    with progress_bar(ctx, "exporting") as progress:
        if output is None:
            report = run_export(
                store,
                filters,
                sys.stdout.buffer,
                fmt.value,
                order=order.value,
                gzip=gzip,
                progress=progress,
            )
        else:
            with OutputFile(output, force=force) as out:
                report = run_export(
                    store,
                    filters,
                    out.handle,
                    fmt.value,
                    order=order.value,
                    gzip=gzip,
                    progress=progress,
                )
                if report.problems:  # an export that exits non-zero leaves no file
                    out.discard()
    if output is not None and report.problems:
        report_problems(report.problems, f"nothing was written to {output}")
    if output is not None:
        say(f"exported {report.entries} entries to {output} ({report.bytes_written} bytes)")
    report_problems(report.problems)


# ----------------------------------------------------------------------------- stats
@app.command()
def stats(
    ctx: typer.Context,
    by: Annotated[
        list[str],
        typer.Option(
            "--by",
            "-b",
            metavar="KEY",
            help="action, actor, target, org, team, day or hour; one or two (repeat, or a,b).",
        ),
    ],
    action: ActionOpt = None,
    target: TargetOpt = None,
    actor_id: ActorIdOpt = None,
    target_id: TargetIdOpt = None,
    team_id: TeamIdOpt = None,
    org_id: OrgIdOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: Annotated[
        StatsFormat | None,
        typer.Option("--format", "-f", help="Default: table on a terminal, else json."),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option("--top", help="Only the N largest groups."),
    ] = None,
) -> None:
    """Count matching entries grouped by one or two keys.

    Example: audit stats --by action --since 30d ;  audit stats --by actor,day --action login
    """
    from auditcli.maintenance import parse_by
    from auditcli.maintenance import stats as run_stats

    store = get_store(ctx)
    keys = parse_by(by)
    filters = filters_from_options(ctx, store)
    if top is not None and top < 1:
        raise UsageError("--top: must be at least 1")
    result = run_stats(store, filters, keys)
    chosen = pick_format(fmt, StatsFormat.table, StatsFormat.json)
    if chosen is StatsFormat.json:
        _stats_json(result, result.rows(top))
    elif chosen is StatsFormat.csv:
        _stats_csv(result, result.rows(top))
    else:
        with screen(ctx) as out:
            out.print(_stats_table(result, top, filters, out.width))
    report_problems(result.problems)


def _stats_json(result: Any, rows: list[tuple[Any, ...]]) -> None:
    from auditcli.maintenance import KEY_COLUMNS

    names = [KEY_COLUMNS[key] for key in result.keys]
    groups = [dict(zip([*names, "count"], row, strict=True)) for row in rows]
    write_json({"by": list(result.keys), "total": result.total, "groups": groups})


def _stats_csv(result: Any, rows: list[tuple[Any, ...]]) -> None:
    from auditcli.maintenance import KEY_COLUMNS
    from auditcli.render import csv_rows

    names = [KEY_COLUMNS[key] for key in result.keys]
    dicts = (dict(zip([*names, "count"], row, strict=True)) for row in rows)
    for text in csv_rows(dicts, [*names, "count"]):
        sys.stdout.write(text)


def _stats_table(result: Any, top: int | None, filters: Any, width: int) -> Any:
    from rich.text import Text

    from auditcli.maintenance import KEY_COLUMNS, TIME_KEYS, bar, sparkline, time_buckets
    from auditcli.render import rows_table

    keys = result.keys
    caption = f"{result.total} entries · {time_window(filters)}"
    if len(keys) == 2 and (keys[0] in TIME_KEYS) != (keys[1] in TIME_KEYS):
        # One key over time: a row per value, with its counts over time as a sparkline.
        time_at = 0 if keys[0] in TIME_KEYS else 1
        other = 1 - time_at
        rows = result.rows()
        buckets = time_buckets(keys, rows)
        per_value: dict[Any, dict[str, int]] = {}
        for row in rows:
            per_value.setdefault(row[other], {})[row[time_at]] = row[2]
        totals = sorted(per_value.items(), key=lambda item: (-sum(item[1].values()), str(item[0])))
        # At most 60 characters: neighbouring buckets are summed when there are more.
        step = max(1, -(-len(buckets) // 60))
        table_rows = [
            (
                _show(value),
                sum(series.values()),
                Text(sparkline(_binned([series.get(b, 0) for b in buckets], step))),
            )
            for value, series in totals[:top]
        ]
        span = f"{buckets[0]} … {buckets[-1]}" if buckets else ""
        unit = keys[time_at] if step == 1 else f"{step} {keys[time_at]}s"
        headers: tuple[str, ...] = (KEY_COLUMNS[keys[other]], "count", f"per {unit}, {span}")
        return rows_table(headers, table_rows, width=width, caption=caption, numeric=("count",))
    shown = result.rows(top)
    peak = max((row[-1] for row in shown), default=0)
    table_rows = [
        (*(_show(v) for v in row[:-1]), row[-1], Text(bar(row[-1], peak))) for row in shown
    ]
    headers = (*(KEY_COLUMNS[key] for key in keys), "count", "")
    return rows_table(headers, table_rows, width=width, caption=caption, numeric=("count",))


def _binned(values: list[int], step: int) -> list[int]:
    return [sum(values[at : at + step]) for at in range(0, len(values), step)]


def _show(value: Any) -> str:
    return "(none)" if value is None else str(value)


# ----------------------------------------------------------------------------- tail
@app.command()
def tail(
    ctx: typer.Context,
    action: ActionOpt = None,
    target: TargetOpt = None,
    actor_id: ActorIdOpt = None,
    target_id: TargetIdOpt = None,
    team_id: TeamIdOpt = None,
    org_id: OrgIdOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: Annotated[
        TailFormat | None,
        typer.Option(
            "--format",
            "-f",
            metavar="[table|jsonl|csv|ocsf|syslog]",
            help="Default: table on a terminal, else jsonl.",
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", metavar="N", help="First print the last N matching entries."),
    ] = 10,
    lines: Annotated[
        int | None, typer.Option("--lines", hidden=True, help="Old spelling of --limit.")
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between looks at the store.")
    ] = 0.5,
) -> None:
    """Print matching entries as they are appended; Ctrl-C to stop.

    Follows new days, new segments and rotation. Example: audit tail --action login -f syslog
    """
    from auditcli.export import make_writer
    from auditcli.maintenance import Follower
    from auditcli.query import QueryEngine

    store = get_store(ctx)
    filters = filters_from_options(ctx, store)
    if lines is not None:
        limit = lines
    if limit < 0:
        raise UsageError("--limit: must be 0 or more")
    if not 0.05 <= interval <= 60:
        raise UsageError("--interval: between 0.05 and 60 seconds")
    chosen = pick_format(fmt, TailFormat.table, TailFormat.jsonl)
    tabular = chosen in (TailFormat.table, TailFormat.text)
    writer = _TableWriter() if tabular else make_writer(chosen.value)
    out = sys.stdout.buffer
    follower = Follower(store, filters)
    try:
        follower.skip_existing()
        shown: set[bytes] = set()
        out.write(writer.head())
        if limit:
            _, recent = QueryEngine(store, filters, order="desc").page(limit)
            for stored in reversed(recent):
                shown.add(_id_of(stored))
                out.write(writer.line(stored))
        out.flush()
        while True:
            for stored in follower.poll():
                if shown and _id_of(stored) in shown:
                    continue  # printed above: appended between the snapshot and the backlog
                out.write(writer.line(stored))
            out.flush()
            for problem in follower.problems:
                say(f"warning: {problem}")
            follower.problems.clear()
            if not follower.behind:
                time.sleep(interval)
    except KeyboardInterrupt:
        out.flush()
        raise typer.Exit(0) from None


class _TableWriter:
    """`audit tail -f table`: each entry as a row of the query table (display names, words never
    split, fitted to the terminal), columns at fixed widths so that rows line up."""

    def __init__(self) -> None:
        from auditcli.cli_options import console

        self.console = console()

    def head(self) -> bytes:
        """No header: rows arrive one by one, for as long as tail runs."""
        return b""

    def line(self, stored: bytes) -> bytes:
        """One entry as a table row, rendered for the terminal."""
        from auditcli.query import entry_of
        from auditcli.render import entries_table

        table = entries_table(
            [entry_of(stored)], width=self.console.width, show_header=False, stream=True
        )
        with self.console.capture() as captured:
            self.console.print(table)
        return captured.get().encode()


def _id_of(stored: bytes) -> bytes:
    return stored[7 : stored.index(b'"', 7)]


# ----------------------------------------------------------------------------- schema
@app.command()
def schema(
    ctx: typer.Context,
    dialect: Annotated[
        Dialect, typer.Option("--dialect", help="The engine to declare the table in.")
    ] = Dialect.duckdb,
    location: Annotated[
        str | None,
        typer.Option(
            "--location",
            help="Where the engine sees the log directory, e.g. s3://bucket/audit/"
            " (default: the local log directory).",
        ),
    ] = None,
    table: Annotated[str, typer.Option("--table", help="Table (or view) name.")] = "audit_logs",
) -> None:
    """Print the SQL that makes DuckDB, Spark, Athena or Trino read the log directory as a table.

    Example: audit schema > audit.sql && duckdb -init audit.sql ;
    audit schema --dialect athena --location s3://bucket/audit/
    """
    from auditcli.engines import athena_missed_days, schema_sql
    from auditcli.timeparse import format_utc

    # With --location the SQL can be printed without a local store (its days are then unknown).
    store = get_store(ctx, must_exist=location is None)
    days = store.days()
    where = location or str(store.root)
    typer.echo(schema_sql(dialect.value, where, table=table, days=days), nl=False)
    if dialect.value == "athena":
        missed = athena_missed_days(days, format_utc(store.clock())[:10])
        if missed:
            more = f" and {len(missed) - 5} more" if len(missed) > 5 else ""
            shown = ", ".join(missed[:5]) + more
            say(
                f"warning: the Athena table does not see {len(missed)} day(s) of {store.root} after"
                f" tomorrow: {shown}; widen 'projection.date.range' to reach them"
            )
