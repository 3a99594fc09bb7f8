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
    TargetIdOpt,
    TeamIdOpt,
    UntilOpt,
    console,
    get_store,
    report_problems,
    say,
    stdout_is_terminal,
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


#: Columns of times and entry ids: they never wrap (people look them up).
_WHOLE = ("Time", "Entry", "Granted (", "Since", "Set (", "Added (", "When")


def rows_table(
    headers: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    *,
    title: str | None = None,
    caption: str | None = None,
) -> Any:
    """render.rows_table, with the time and entry id columns kept whole."""
    from auditcli.render import rows_table as inert_table

    whole = [header for header in headers if header.startswith(_WHOLE)]
    return inert_table(headers, rows, title=title, caption=caption, no_wrap=whole)


def _when_and_id(created_at: str, entry_id: str) -> Any:
    """One cell: the time, and under it the entry id (dim), to look the entry up."""
    from rich.text import Text

    from auditcli.render import visible

    cell = Text(_short(created_at) + "\n")
    cell.append(visible(entry_id), style="dim")
    return cell


def _anomaly_table(anomalies: list[Any]) -> Any:
    rows = [
        (_when_and_id(a.entry.createdAt, a.entry.id), a.entry.action, a.kind, a.detail)
        for a in anomalies
    ]
    return rows_table(
        ("Time (UTC) / entry", "Action", "Anomaly", "Detail"),
        rows,
        title="Anomalies (reported, not hidden)",
    )


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
    result = build_history(
        store,
        target_ids=tuple(target_id or ()),
        actor_ids=tuple(actor_id or ()),
        org_ids=tuple(org_id or ()),
        since=parse_bound(since, end=False, clock=store.clock) if since else None,
        until=parse_bound(until, end=True, clock=store.clock, option="--until") if until else None,
    )
    chosen = fmt or (HistoryFormat.table if stdout_is_terminal() else HistoryFormat.jsonl)
    if chosen is HistoryFormat.json:
        write_json(result.as_dict())
    elif chosen is HistoryFormat.jsonl:
        import orjson

        for item in result.items:
            write_out(orjson.dumps(item.as_dict()) + b"\n")
    else:
        _history_table(result)
    report_problems(result.problems)


def _history_table(result: Any) -> None:
    from rich.text import Text

    from auditcli.auditor import UNKNOWN_BEFORE_NOTE
    from auditcli.render import visible

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
        rows.append((_when_and_id(entry["createdAt"], entry["id"]), entry["action"], actor, what))
    subject = ", ".join([*result.target_ids, *result.actor_ids])
    caption = (
        f"{len(result.items)} entries · first recorded entry {result.first_recorded or 'none'}: "
        f"{UNKNOWN_BEFORE_NOTE}"
    )
    table = rows_table(
        ("Time (UTC) / entry", "Action", "Actor", "What happened"),
        rows,
        title=f"History of {subject}",
        caption=caption,
    )
    console().print(table)


# ----------------------------------------------------------------------------- state
_STATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "admins": ("Org", "User", "Granted (UTC)", "Granted by", "Entry"),
    "users": ("Org", "User", "Email", "Role", "Added (UTC)", "Added by", "Entry"),
    "teams": ("Org", "Team", "Member", "Role", "Since (UTC)", "Granted by", "Entry"),
    "roles": ("Org", "Role", "Name", "Permissions", "Set (UTC)", "Set by", "Entry"),
    "service-accounts": ("Org", "Account", "Name", "Permissions", "Set (UTC)", "Set by", "Entry"),
}


def _state_cells(kind: str, row: dict[str, Any]) -> tuple[Any, ...]:
    from auditcli.auditor import show_value

    cite = row["grantedBy"]
    tail = (_short(cite["createdAt"]), cite["actor"], cite["id"])
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
    kind: Annotated[StateKind, typer.Argument(help="What to reconstruct.")],
    at: Annotated[
        str,
        typer.Option(
            "--at",
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
    fmt: Annotated[
        TableOrJson, typer.Option("--format", "-f", help="table or json.")
    ] = TableOrJson.table,
) -> None:
    """Access state at an instant, replayed from the entries up to it: system admins, team
    members and their roles, organization members, custom roles, service accounts. Each row
    cites the entry that granted it. Anomalies (a removal with no prior grant, entries stored
    out of order) are listed. State before the first recorded entry is unknown.

    Example: audit state admins --at 2026-11-05 --diff 2026-11-03
    """
    from auditcli.auditor import access_state
    from auditcli.timeparse import parse_bound

    store = get_store(ctx)
    at_bound = parse_bound(at, end=True, clock=store.clock, option="--at")
    from_bound = parse_bound(diff, end=True, clock=store.clock, option="--diff") if diff else None
    result = access_state(
        store,
        kind.value,
        at=at_bound,
        org_ids=tuple(org_id or ()),
        team_ids=tuple(team_id or ()),
        diff_from=from_bound,
    )
    if fmt is TableOrJson.json:
        write_json(result.as_dict())
    else:
        _state_tables(result)
    report_problems(result.problems)


def _state_tables(result: Any) -> None:
    out = console()
    kind = result.kind
    title = f"{kind} at {result.at}"
    if result.org_ids:
        title += f" · org {', '.join(result.org_ids)}"
    if result.team_ids:
        title += f" · team {', '.join(result.team_ids)}"
    out.print(
        rows_table(
            _STATE_COLUMNS[kind],
            [_state_cells(kind, row) for row in result.rows],
            title=title,
            caption=f"{len(result.rows)} rows",
        )
    )
    if result.diff_from is not None:
        rows = []
        for row in result.granted:
            cite = row["grantedBy"]
            rows.append(
                (
                    "granted",
                    _subject(kind, row),
                    _short(cite["createdAt"]),
                    cite["actor"],
                    cite["id"],
                )
            )
        for row in result.revoked:
            cite = row["revokedBy"]
            rows.append(
                (
                    "revoked",
                    _subject(kind, row),
                    _short(cite["createdAt"]) if cite else "",
                    cite["actor"] if cite else "",
                    cite["id"] if cite else "",
                )
            )
        for item in result.transient:
            granted, revoked = item["grantedBy"], item["revokedBy"]
            subject = " ".join(part for part in item["key"] if part)
            for what, cite in (("granted, then", granted), ("… revoked", revoked)):
                rows.append((what, subject, _short(cite["createdAt"]), cite["actor"], cite["id"]))
        for change in result.changed:
            cite = change["after"]["grantedBy"]
            what = "re-granted" if change["regranted"] else "changed"
            rows.append(
                (
                    what,
                    _subject(kind, change["after"]),
                    _short(cite["createdAt"]),
                    cite["actor"],
                    cite["id"],
                )
            )
        out.print(
            rows_table(
                ("Change", "Subject", "When (UTC)", "By", "Entry"),
                rows,
                title=f"Changes from {result.diff_from} to {result.at}",
                caption=f"{len(result.granted)} granted, {len(result.revoked)} revoked, "
                f"{len(result.changed)} changed, {len(result.transient)} granted then revoked",
            )
        )
    if result.anomalies:
        out.print(_anomaly_table(result.anomalies))
    out.print(result.note, soft_wrap=True)


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
        str, typer.Option("--output", "-o", help="The file to write; '-' for stdout.")
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
    data = build_report(
        store,
        since=start,
        until=end,
        generated_at=_generated_at(store),
        org_ids=tuple(org_id or ()),
        max_rows=max_rows,
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
            f"{len(data.anomalies)} anomalies, integrity {data.integrity.get('status')}"
        )
    report_problems(data.problems)
