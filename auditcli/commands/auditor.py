"""`audit history`, `audit state` and `audit report`: the questions an access review asks."""

# No `from __future__ import annotations`: typer would evaluate the strings at start-up.

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from auditcli.cli import app
from auditcli.cli_options import (
    ActorIdOpt,
    OrgIdOpt,
    SinceOpt,
    TableOrJson,
    TableOrJsonOpt,
    TargetIdOpt,
    TeamIdOpt,
    UntilOpt,
    get_store,
    pick_format,
    progress_bar,
    report_problems,
    say,
    screen,
    write_json,
    write_out,
)
from auditcli.errors import UsageError


class HistoryFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


class StateKind(StrEnum):
    admins = "admins"
    teams = "teams"
    users = "users"
    roles = "roles"
    service_accounts = "service-accounts"


class ReportFormat(StrEnum):
    html = "html"
    md = "md"


def _short(created_at: str | None) -> str:
    from auditcli.render import short_time

    return short_time(created_at) if created_at else ""


def _when_and_id(created_at: str, entry_id: str) -> Any:
    """One cell: the time, and under it the entry's short id (dim), to look the entry up."""
    from rich.text import Text

    from auditcli.render import visible

    cell = Text(_short(created_at) + "\n")
    cell.append(visible(entry_id), style="dim")
    return cell


def _anomaly_table(catalog: Any, anomalies: list[Any], width: int) -> Any:
    from auditcli.render import Column, fit_table, short_ids

    short = short_ids(a.entry.id for a in anomalies)
    rows = [
        (
            _when_and_id(a.entry.createdAt, short[a.entry.id]),
            _action_name(catalog, a.entry.action),
            a.kind,
            a.detail,
        )
        for a in anomalies
    ]
    columns = (
        Column("Time (UTC) / entry"),
        Column("Action", priority=1, max_width=12),
        Column("Anomaly", max_width=16),
        Column("Detail", fold=36),
    )
    return fit_table(columns, rows, width=width, title="Anomalies (reported, not hidden)")


def _action_name(catalog: Any, action: str) -> str:
    """The display name of a catalog action, as query and tail show it."""
    return catalog.get(action).display_name if action in catalog else action


# ----------------------------------------------------------------------------- history
@app.command()
def history(
    ctx: typer.Context,
    target_id: TargetIdOpt = None,
    actor_id: ActorIdOpt = None,
    org_id: OrgIdOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: Annotated[
        HistoryFormat | None,
        typer.Option("--format", "-f", help="Default: table on a terminal, else jsonl."),
    ] = None,
) -> None:
    """The timeline of one resource (--target-id) or of one actor (--actor-id), oldest first,
    with what each change did (before → after; permissions added and removed).

    A user's timeline also lists the team membership entries naming them in
    metadata.input.userId, and the deletions of teams they were in.

    Example: audit history --target-id role-201
    """
    from auditcli.auditor import history as build_history
    from auditcli.timeparse import parse_bound

    store = get_store(ctx)
    if not target_id and not actor_id:
        raise UsageError("give --target-id (a resource) or --actor-id (a person)")
    since_bound = parse_bound(since, end=False, clock=store.clock) if since else None
    until_bound = (
        parse_bound(until, end=True, clock=store.clock, option="--until") if until else None
    )
    with progress_bar(ctx, "reading the history") as progress:
        result = build_history(
            store,
            target_ids=tuple(target_id or ()),
            actor_ids=tuple(actor_id or ()),
            org_ids=tuple(org_id or ()),
            since=since_bound,
            until=until_bound,
            progress=progress,
        )
    chosen = pick_format(fmt, HistoryFormat.table, HistoryFormat.jsonl)
    if chosen is HistoryFormat.json:
        write_json(result.as_dict())
    elif chosen is HistoryFormat.jsonl:
        import orjson

        for item in result.items:
            write_out(orjson.dumps(item.as_dict()) + b"\n")
    else:
        with screen(ctx) as out:
            out.print(_history_table(result, out.width))
    report_problems(result.problems)


def _history_table(result: Any, width: int) -> Any:
    from rich.text import Text

    from auditcli.auditor import UNKNOWN_BEFORE_NOTE
    from auditcli.render import Column, action_name, fit_table, short_ids, visible

    short = short_ids(item.entry["id"] for item in result.items)
    rows = []
    for item in result.items:
        entry = item.entry
        actor = entry.get("actorEmail") or entry.get("actorName") or entry.get("actorId")
        # The description first (dim: it is free text), then what changed, then anomalies.
        what = Text(visible(entry.get("description") or ""), style="dim")
        for change in item.changes:
            what.append("\n" + visible(change.text()))
        if item.via:
            what.append("\n" + visible(f"(via {item.via})"), style="italic")
        for anomaly in item.anomalies:
            what.append(f"\n⚠ {anomaly.kind}: ", style="bold")
            what.append(visible(anomaly.detail))
        when = _when_and_id(entry["createdAt"], short[entry["id"]])
        rows.append((when, action_name(entry), actor, what))
    subject = ", ".join([*result.target_ids, *result.actor_ids])
    caption = (
        f"{len(result.items)} entries · first recorded entry {result.first_recorded or 'none'}: "
        f"{UNKNOWN_BEFORE_NOTE}"
    )
    columns = (
        Column("Time (UTC) / entry"),
        Column("Action", priority=2, max_width=12),
        Column("Actor", priority=1),
        Column("What happened", fold=36),
    )
    return fit_table(columns, rows, width=width, title=f"History of {subject}", caption=caption)


# ----------------------------------------------------------------------------- state
#: Each kind's columns: (header, priority: 0 always shown, higher given up first when narrow,
#: free text). Who and what come first; when, by whom and the citing entry give way.
_STATE_COLUMNS: dict[str, tuple[tuple[str, int, bool], ...]] = {
    "admins": (("Org", 0, False), ("User", 0, False)),
    "users": (("Org", 0, False), ("User", 0, False), ("Email", 1, False), ("Role", 2, False)),
    "teams": (("Org", 3, False), ("Team", 0, False), ("Member", 0, False), ("Role", 1, False)),
    "roles": (("Org", 3, False), ("Role", 0, False), ("Name", 1, False), ("Permissions", 0, True)),
    "service-accounts": (
        ("Org", 3, False),
        ("Account", 0, False),
        ("Name", 1, False),
        ("Permissions", 0, True),
    ),
}
_CITE_HEADERS = {"users": "Added", "roles": "Set", "service-accounts": "Set"}


def _state_columns(kind: str) -> list[Any]:
    from auditcli.render import Column

    verb = _CITE_HEADERS.get(kind, "Granted")
    columns = [
        Column(header, priority=priority, fold=36 if text else None)
        for header, priority, text in _STATE_COLUMNS[kind]
    ]
    return [
        *columns,
        Column(f"{verb} by", priority=4),
        Column(f"{'Since' if kind == 'teams' else verb} (UTC)", priority=5),
        Column("Entry", priority=6),
    ]


def _state_cells(kind: str, row: dict[str, Any], short: dict[str, str]) -> tuple[Any, ...]:
    from auditcli.auditor import show_value

    cite = row["grantedBy"]
    tail = (cite["actor"], _short(cite["createdAt"]), short[cite["id"]])
    org = row["organizationId"]
    if kind == "admins":
        user = f"{row['userId']} {row['email']}" if row["email"] else row["userId"]
        return (org, user, *tail)
    if kind == "users":
        return (org, row["userId"], row["email"] or "", row["role"] or "", *tail)
    if kind == "teams":
        team = f"{row['teamId']} {row['teamName']}" if row["teamName"] else row["teamId"]
        member = row["userId"] or "(team)"
        return (org, team, member, show_value(row["role"]) if row["userId"] else "", *tail)
    rid = row.get("roleId") or row.get("serviceAccountId")
    perms = show_value(row["permissions"]) if row["permissions"] is not None else "(unknown)"
    return (org, rid, row["name"] or "", perms, *tail)


def _subject(kind: str, row: dict[str, Any]) -> str:
    if kind == "teams":
        return f"{row['teamId']} {row['userId']}" if row["userId"] else f"{row['teamId']} (team)"
    return f"{row['organizationId']} " + str(
        row.get("userId") or row.get("roleId") or row.get("serviceAccountId")
    )


@app.command()
def state(
    ctx: typer.Context,
    kind: Annotated[
        StateKind,
        typer.Argument(
            metavar="KIND",
            help="What to reconstruct: admins, teams, users, roles or service-accounts.",
        ),
    ],
    at: Annotated[
        str,
        typer.Option(
            "--at",
            metavar="TIME",
            help="The instant: ISO-8601, a date (= the end of that day, UTC), 7d, now… "
            "(default: now).",
        ),
    ] = "now",
    org_id: OrgIdOpt = None,
    team_id: TeamIdOpt = None,
    diff: Annotated[
        str | None,
        typer.Option(
            "--diff",
            metavar="FROM",
            help="Also show what was granted, revoked or changed between FROM and --at.",
        ),
    ] = None,
    anomalies_since: Annotated[
        str | None,
        typer.Option(
            "--anomalies-since",
            metavar="TIME",
            help="List the anomalies from TIME on ('all': every one; durations count back "
            "from --at). Default: FROM with --diff, else 7d. All are counted.",
        ),
    ] = None,
    fmt: TableOrJsonOpt = None,
) -> None:
    """Access state at an instant, replayed from the entries up to it: system admins, team
    members and their roles, organization members, custom roles, service accounts. Each row
    cites the entry that granted it. Anomalies (a removal with no prior grant, entries stored
    out of order) are listed. State before the first recorded entry is unknown.

    Example: audit state admins --at 2026-11-05 --diff 2026-11-03
    """
    from auditcli.auditor import access_state
    from auditcli.timeparse import parse_bound, parse_utc

    store = get_store(ctx)
    at_bound = parse_bound(at, end=True, clock=store.clock, option="--at")
    from_bound = parse_bound(diff, end=True, clock=store.clock, option="--diff") if diff else None
    window = anomalies_since or ("7d" if from_bound is None else None)
    anomalies_from = from_bound
    if window is not None and window.strip().lower() == "all":
        anomalies_from = None
    elif window is not None:
        anomalies_from = parse_bound(
            window, end=False, clock=lambda: parse_utc(at_bound), option="--anomalies-since"
        )
    with progress_bar(ctx, "replaying") as progress:
        result = access_state(
            store,
            kind.value,
            at=at_bound,
            org_ids=tuple(org_id or ()),
            team_ids=tuple(team_id or ()),
            diff_from=from_bound,
            anomalies_since=anomalies_from,
            progress=progress,
        )
    if pick_format(fmt, TableOrJson.table, TableOrJson.json) is TableOrJson.json:
        write_json(result.as_dict())
    else:
        with screen(ctx) as out:
            _state_tables(out, store.catalog, result)
    report_problems(result.problems)


def _state_tables(out: Any, catalog: Any, result: Any) -> None:
    from auditcli.render import Column, fit_table, short_ids

    kind = result.kind
    title = f"{kind} at {result.at}"
    if result.org_ids:
        title += f" · org {', '.join(result.org_ids)}"
    if result.team_ids:
        title += f" · team {', '.join(result.team_ids)}"
    changes: list[tuple[str, str, dict[str, Any] | None]] = []
    if result.diff_from is not None:
        changes += [("granted", _subject(kind, row), row["grantedBy"]) for row in result.granted]
        changes += [("revoked", _subject(kind, row), row["revokedBy"]) for row in result.revoked]
        for item in result.transient:
            subject = " ".join(part for part in item["key"] if part)
            changes.append(("granted, then", subject, item["grantedBy"]))
            changes.append(("… revoked", subject, item["revokedBy"]))
        for change in result.changed:
            what = "re-granted" if change["regranted"] else "changed"
            changes.append((what, _subject(kind, change["after"]), change["after"]["grantedBy"]))
    cited = [row["grantedBy"]["id"] for row in result.rows]
    short = short_ids(cited + [cite["id"] for _, _, cite in changes if cite])
    out.print(
        fit_table(
            _state_columns(kind),
            [_state_cells(kind, row, short) for row in result.rows],
            width=out.width,
            title=title,
            caption=f"{len(result.rows)} rows",
        )
    )
    if result.diff_from is not None:
        rows = [
            (
                what,
                subject,
                cite["actor"] if cite else "",
                _short(cite["createdAt"]) if cite else "",
                short[cite["id"]] if cite else "",
            )
            for what, subject, cite in changes
        ]
        columns = (
            Column("Change"),
            Column("Subject"),
            Column("By", priority=1),
            Column("When (UTC)", priority=2),
            Column("Entry", priority=3),
        )
        out.print(
            fit_table(
                columns,
                rows,
                width=out.width,
                title=f"Changes from {result.diff_from} to {result.at}",
                caption=f"{len(result.granted)} granted, {len(result.revoked)} revoked, "
                f"{len(result.changed)} changed, {len(result.transient)} granted then revoked",
            )
        )
    if result.anomalies:
        out.print(_anomaly_table(catalog, result.anomalies, out.width))
    if result.anomaly_total > len(result.anomalies):
        out.print(result.anomaly_note, soft_wrap=False)
    out.print(result.note, soft_wrap=False)


# ----------------------------------------------------------------------------- report
def _generated_at(store: Any) -> str:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible reports, as reproducible builds do)."""
    import os
    from datetime import UTC, datetime

    from auditcli.timeparse import format_utc

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            return format_utc(datetime.fromtimestamp(int(epoch), UTC))
        except (ValueError, OverflowError, OSError):
            raise UsageError(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time") from None
    return format_utc(store.clock())


@app.command()
def report(
    ctx: typer.Context,
    output: Annotated[
        str,
        typer.Option("--output", "-o", metavar="FILE", help="The file to write; '-' for stdout."),
    ],
    since: SinceOpt = None,
    until: UntilOpt = None,
    org_id: OrgIdOpt = None,
    fmt: Annotated[
        ReportFormat | None,
        typer.Option("--format", "-f", help="html (default) or md; a .md file name means md."),
    ] = None,
    max_rows: Annotated[
        int, typer.Option("--max-rows", help="Rows per table at most (0: all); totals count all.")
    ] = 1000,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing --output file.")
    ] = False,
) -> None:
    """Write an access-review report for a period: totals, logins per day (chart), system
    admin grants and revocations, admins at the start and end, user, team, role and service
    account changes, the most active actors, anomalies and the integrity of the period. The
    HTML is one self-contained file (no network, no scripts) that prints on A4 or Letter.

    Example: audit report --since 2026-11-01 --until 2026-11-30 -o review.html
    """
    from auditcli.report import build_report, render_html, render_markdown
    from auditcli.timeparse import parse_bound

    if max_rows < 0:
        raise UsageError("--max-rows: must be 0 (all) or more")
    store = get_store(ctx)
    if since:
        start = parse_bound(since, end=False, clock=store.clock)
    else:
        from auditcli.auditor import first_recorded

        start = first_recorded(store, tuple(org_id or ())) or _generated_at(store)
    end = parse_bound(until or "now", end=True, clock=store.clock, option="--until")
    chosen = fmt or (ReportFormat.md if output.endswith(".md") else ReportFormat.html)
    with progress_bar(ctx, "reporting") as progress:
        data = build_report(
            store,
            since=start,
            until=end,
            generated_at=_generated_at(store),
            org_ids=tuple(org_id or ()),
            max_rows=max_rows,
            progress=progress,
        )
    command = f"audit report --since {start} --until {end}"
    command += "".join(f" --org-id {org}" for org in org_id or ())
    render = render_markdown if chosen is ReportFormat.md else render_html
    text = render(data, command=command, max_rows=max_rows)
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from auditcli.outfile import write_file

        write_file(output, text.encode("utf-8"), force=force)
        say(
            f"wrote {output}: {data.total} entries from {start} to {end}, "
            f"{data.anomaly_total} anomalies, integrity {data.integrity.get('status')}"
        )
    report_problems(data.problems)
