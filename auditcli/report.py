"""The access-review report: one self-contained HTML file (or Markdown for a ticket).

The HTML needs nothing but itself: no scripts, no fonts, no images from anywhere (a
Content-Security-Policy meta tag forbids loading any), an inline SVG bar chart of logins per
day, and print CSS that fits A4 and US Letter. Every value from the log is untrusted: control
and bidi characters are shown as escapes (`render.visible`) and the result is HTML-escaped, so
a `<script>` in a description is text on the page. Markdown output escapes the characters that
would otherwise turn a value into markup or a link.
"""

from __future__ import annotations

import html
import os
import re
import stat
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from . import lineindex
from .auditor import SECTION_ACTIONS, ReportData, TimelineItem, report_data
from .errors import AuditError, IntegrityError
from .progress import Progress
from .render import visible
from .store import AuditStore

if TYPE_CHECKING:
    from .integrity import VerifyReport

SECTION_TITLES: dict[str, str] = {
    "admins": "System admin grants and revocations",
    "users": "Users added to and removed from the organization",
    "teams": "Team changes",
    "roles": "Role changes",
    "service-accounts": "Service accounts created and deleted",
}


# ----------------------------------------------------------------------------- data
def integrity_status(store: AuditStore, since: str, until: str) -> dict[str, Any]:
    """The integrity of the period's partitions from `auditcli.integrity.verify`:
    `{"status": "verified" | "verified (unsealed)" | "FAILED", "detail": …}`.

    The entries are checked (every line's link, the chains, manifests and signatures); the
    derived data under `_index/` is not: rebuilding every line index and replaying the
    period again for its checkpoints cost several times the report itself (`derived_note`
    says so in the detail)."""
    from .integrity import verify

    try:
        result = verify(store, first_day=since[:10], last_day=until[:10], derived=False)
    except AuditError as exc:
        return {"status": "FAILED", "detail": str(exc)}
    return _summarise_verify(result)


def period_files(
    store: AuditStore, since: str, until: str
) -> list[tuple[str, lineindex.Identity]] | None:
    """The name and identity of each log file of the days of [since, until]: any write to a
    file changes its identity (the ctime, which cannot be set back), a file added or replaced
    changes the list. None when one cannot be read, or anyone but this user can write it
    (bytes they write through a shared mapping need not change it, see `lineindex.private`)."""
    files = []
    try:
        for day in store.days():
            if not since[:10] <= day <= until[:10]:
                continue
            for file in store.files(day):
                info = os.stat(file.path, follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode) or not lineindex.private(info):
                    return None
                files.append((file.name, lineindex.identity(info)))
    except (OSError, IntegrityError):
        return None
    return files


def derived_note(resumed_from: str | None, summarised: int) -> str:
    """What the integrity detail adds: the derived data the report read and did not check,
    naming the checkpoint its replay resumed from (`resumed_from`, a day) and how many days it
    counted from their summaries."""
    read = [f"resumed from the checkpoint of {resumed_from}"] if resumed_from else []
    if summarised:
        what = (
            "1 day from its summary and events checkpoint"
            if summarised == 1
            else f"{summarised} days from their summaries and events checkpoints"
        )
        read.append(f"counted {what}")
    read.append("read through the line indexes")
    done = ", ".join(read[:-1]) + " and " + read[-1] if len(read) > 1 else read[0]
    return (
        f"; derived data not checked here: the report {done}, which `audit verify` rebuilds "
        "and compares (run it before you trust a review)"
    )


def _summarise_verify(result: VerifyReport) -> dict[str, Any]:
    """`{"status", "detail"}` from verify()'s report (`ok`, counts, `problems`, `notes`)."""
    parts = [
        f"{result.entries} entries in {result.files} files checked",
        f"{result.manifests} manifests, signatures: {result.signed or 'none'}",
    ]
    parts += [str(p) for p in result.problems[:5]]
    if len(result.problems) > 5:
        parts.append(f"… and {len(result.problems) - 5} more problems (run `audit verify`)")
    parts += [str(note) for note in result.notes]
    status = "verified" if result.ok else "FAILED"
    if result.ok and result.manifests == 0:
        status = "verified (unsealed)"  # each file's chain holds; truncation is not excluded
    return {"status": status, "detail": "; ".join(parts)}


def build_report(
    store: AuditStore,
    *,
    since: str,
    until: str,
    generated_at: str,
    org_ids: tuple[str, ...] = (),
    max_rows: int = 0,
    progress: Progress | None = None,
) -> ReportData:
    """The report's data (see `auditor.report_data`) with the integrity status of the period;
    with `max_rows`, each section keeps only that many entries (memory stays bounded).
    `progress` hears of the integrity check, then of the entries read. The check runs first:
    what it holds is freed before the report's data is gathered (a lower peak of memory). It
    must cover the entries counted, so it runs again after the read when a log file of the
    period changed meanwhile, or could have changed unseen (`period_files`)."""
    files = period_files(store, since, until)
    integrity = None
    if files is not None:
        if progress is not None:
            progress(0, phase="verifying")
        integrity = integrity_status(store, since, until)
    data = report_data(
        store,
        since=since,
        until=until,
        generated_at=generated_at,
        org_ids=org_ids,
        keep=max_rows or None,
        progress=progress,
    )
    if integrity is None or period_files(store, since, until) != files:
        if progress is not None:
            progress(data.total, phase="verifying")
        integrity = integrity_status(store, since, until)
    integrity["detail"] += derived_note(data.resumed_from, data.summarised)
    data.integrity = integrity
    return data


# ----------------------------------------------------------------------------- helpers
def esc(value: Any) -> str:
    """Untrusted text as inert HTML: control/bidi characters visible, then HTML-escaped."""
    return html.escape(visible("" if value is None else str(value)), quote=True)


def _when(created_at: str) -> str:
    return created_at[:10] + " " + created_at[11:19]


def _subject(item: TimelineItem, labels: dict[str, str]) -> str:
    """What an entry was about, as plain text: the resource, and the user for a membership."""
    entry = item.entry
    target = entry.get("targetId") or ""
    name = labels.get(target)
    text = f"{name} ({target})" if name and name != target else str(target)
    metadata = entry.get("metadata")
    data = metadata.get("input") if isinstance(metadata, dict) else None
    user = data.get("userId") if isinstance(data, dict) else None
    if (
        isinstance(user, str)
        and entry.get("action", "").startswith("user_")
        and "team" in entry.get("action", "")
    ):
        who = labels.get(user)
        text += f" · {who} ({user})" if who and who != user else f" · {user}"
    return text


def _user(user: str, labels: dict[str, str]) -> str:
    label = labels.get(user)
    return f"{label} ({user})" if label and label != user else user


def _period_days(data: ReportData) -> str:
    days = len(data.logins_per_day)
    return f"{days} day" + ("" if days == 1 else "s")


# ----------------------------------------------------------------------------- HTML
_CSS = """
:root { --ink:#1d2330; --muted:#5b6475; --line:#d8dde6; --accent:#2f5ea8; --bad:#a32121;
        --good:#1f7a3a; --warn:#8a5a00; --soft:#f3f5f9; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 32px 40px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 18px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 26px 0 8px; padding-bottom: 3px;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); text-transform: uppercase;
     letter-spacing: .04em; }
.meta { color: var(--muted); margin: 2px 0; }
.meta b { color: var(--ink); font-weight: 600; }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px;
          margin: 0; }
.totals div { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
              padding: 8px 10px; }
.totals dt { color: var(--muted); font-size: 12px; }
.totals dd { margin: 0; font-size: 22px; font-weight: 650; }
.status { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 650;
          border: 1px solid currentColor; }
.status.verified { color: var(--good); } .status.FAILED { color: var(--bad); }
.status.not-checked { color: var(--warn); }
table { width: 100%; border-collapse: collapse; margin: 4px 0 10px; font-size: 12.5px; }
th, td { text-align: left; vertical-align: top; padding: 4px 6px;
         border-bottom: 1px solid var(--line); }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.time { white-space: nowrap; font-variant-numeric: tabular-nums; }
.id { font: 10.5px/1.3 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
      color: var(--muted); word-break: break-all; }
.change { display: block; }
.empty { color: var(--muted); font-style: italic; }
.anomaly td { background: #fff6e5; }
.chart { width: 100%; height: auto; max-width: 900px; display: block; }
.chart .bar { fill: var(--accent); } .chart .grid { stroke: var(--line); stroke-width: 1; }
.chart text { font-size: 11px; fill: var(--muted); }
.chart .value { fill: var(--ink); font-weight: 600; }
.note { background: var(--soft); border-left: 4px solid var(--accent); padding: 8px 12px; }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line);
         padding-top: 8px; }
/* Printing: the page box is left to the printer (A4 or Letter); content is narrower than both
   (A4 is 210 mm wide, Letter 216 mm), table headers repeat, rows and charts never split. */
@page { size: auto; margin: 14mm 12mm; }
@media print {
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  h3 { break-after: avoid; }
  thead { display: table-header-group; }
  tr, .totals div, svg { break-inside: avoid; page-break-inside: avoid; }
  .totals { grid-template-columns: repeat(4, 1fr); }
  a { color: inherit; text-decoration: none; }
}
"""


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Sequence[int] = (),
    empty: str = "None in this period.",
    row_class: str = "",
) -> str:
    """An HTML table; cells are already-escaped HTML fragments."""
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{cell}</td>' if n in numeric else f"<td>{cell}</td>"
            for n, cell in enumerate(row)
        )
        body.append(f'<tr class="{row_class}">{cells}</tr>' if row_class else f"<tr>{cells}</tr>")
    if not body:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if n in numeric else f"<th>{esc(h)}</th>"
        for n, h in enumerate(headers)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cite_cells(cite: dict[str, Any]) -> list[str]:
    return [
        f'<span class="time">{esc(_when(cite["createdAt"]))}</span>',
        esc(cite["actor"]),
        f'<span class="id">{esc(cite["id"])}</span>',
    ]


def _event_rows(items: list[TimelineItem], labels: dict[str, str]) -> list[list[str]]:
    rows = []
    for item in items:
        entry = item.entry
        actor = entry.get("actorEmail") or entry.get("actorName") or entry.get("actorId")
        changes = "".join(f'<span class="change">{esc(c.text())}</span>' for c in item.changes)
        changes += "".join(
            f'<span class="change"><b>⚠ {esc(a.kind)}</b></span>' for a in item.anomalies
        )
        rows.append(
            [
                f'<span class="time">{esc(_when(entry["createdAt"]))}</span>',
                esc(actor),
                esc(entry.get("actionDisplayName") or entry.get("action")),
                esc(_subject(item, labels)),
                changes or '<span class="empty">—</span>',
                f'<span class="id">{esc(entry["id"])}</span>',
            ]
        )
    return rows


def _nice_step(peak: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if peak / step <= 5:
            return step
    return max(1, 10 ** (len(str(peak)) - 1))


def logins_svg(per_day: dict[str, int]) -> str:
    """An inline SVG bar chart of logins per day (axis, grid, a value on each bar when it
    fits, a <title> per bar). Pure markup: no script, no external reference."""
    days = list(per_day.items())
    width, height = 900, 260
    left, right, top, bottom = 46, 12, 18, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((count for _, count in days), default=0)
    step = _nice_step(max(peak, 1))
    ceiling = max(step, -(-peak // step) * step)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-label="Logins per day, {len(days)} days, peak {peak}">'
    ]
    for tick in range(0, ceiling + 1, step):
        y = top + plot_h - plot_h * tick / ceiling
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    if days:
        slot = plot_w / len(days)
        bar = max(1.0, slot * 0.72)
        label_every = max(1, -(-len(days) // 16))
        for n, (day, count) in enumerate(days):
            x = left + slot * n + (slot - bar) / 2
            h = plot_h * count / ceiling
            y = top + plot_h - h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                f"<title>{esc(day)}: {count} logins</title></rect>"
            )
            if len(days) <= 31 and count:
                parts.append(
                    f'<text class="value" x="{x + bar / 2:.1f}" y="{y - 4:.1f}" '
                    f'text-anchor="middle">{count}</text>'
                )
            if n % label_every == 0:
                parts.append(
                    f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" '
                    f'text-anchor="middle">{esc(day[5:])}</text>'
                )
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">'
            "day (UTC, month-day)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


#: Rows shown per table by default: a review is read by people; the totals count everything.
MAX_ROWS = 1000


def _more(shown: int, total: int, hint: str) -> str:
    """The plain-text note under a table cut at `shown` rows (empty when nothing was cut)."""
    if total <= shown:
        return ""
    return f"Showing the first {shown} of {total}; {hint}"


def render_html(data: ReportData, *, command: str | None = None, max_rows: int = MAX_ROWS) -> str:
    """The whole report as one HTML document (UTF-8 text); each table shows at most
    `max_rows` rows (0: all) and says how many it left out."""
    limit = max_rows or None
    labels = data.labels
    orgs = ", ".join(data.org_ids) if data.org_ids else "all organizations"
    status = data.integrity.get("status", "not checked")
    status_class = "not-checked" if status == "not checked" else status.split()[0]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched or run, even if a value slipped through unescaped.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="auditcli">',
        f"<title>Access review {esc(data.since[:10])} to {esc(data.until[:10])}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<header><h1>Access review report</h1>",
        f'<p class="meta">Period: <b>{esc(data.since)}</b> to <b>{esc(data.until)}</b> (UTC, '
        f"inclusive; {_period_days(data)})</p>",
        f'<p class="meta">Organizations: <b>{esc(orgs)}</b> · Generated: {esc(data.generated_at)}'
        "</p>",
    ]
    if command:
        out.append(f'<p class="meta">Command: <code>{esc(command)}</code></p>')
    out.append("</header>")

    out.append('<section id="summary"><h2>Summary</h2><dl class="totals">')
    for label, value in data.totals():
        out.append(f"<div><dt>{esc(label)}</dt><dd>{value}</dd></div>")
    out.append("</dl></section>")

    out.append('<section id="integrity"><h2>Integrity of the period</h2>')
    out.append(f'<p><span class="status {esc(status_class)}">{esc(status)}</span> ')
    out.append(f"{esc(data.integrity.get('detail', ''))}</p></section>")

    out.append('<section id="logins"><h2>Logins per day</h2>')
    out.append(logins_svg(data.logins_per_day))
    out.append("</section>")

    out.append('<section id="admins"><h2>System admins</h2>')
    for title, rows in (
        (f"At the start of the period ({data.since})", data.admins_at_start),
        (f"At the end of the period ({data.until})", data.admins_at_end),
    ):
        out.append(f"<h3>{esc(title)}</h3>")
        out.append(
            _table(
                ("Organization", "User", "Granted (UTC)", "Granted by", "Entry"),
                (
                    [
                        esc(r["organizationId"]),
                        esc(_user(r["userId"], labels)),
                        *_cite_cells(r["grantedBy"]),
                    ]
                    for r in rows
                ),
                empty="No system admin is recorded (grants older than the log do not appear).",
            )
        )
    out.append(f"<h3>{esc(SECTION_TITLES['admins'])}</h3>")
    out.append(_section_table(data, "admins", labels, limit))
    out.append("</section>")

    for name in ("users", "teams", "roles", "service-accounts"):
        out.append(f'<section id="{name}"><h2>{esc(SECTION_TITLES[name])}</h2>')
        out.append(_section_table(data, name, labels, limit))
        out.append("</section>")

    out.append('<section id="actors"><h2>Most active actors</h2>')
    out.append(
        _table(
            ("Actor", "Actor id", "Entries", "Logins", "Other actions"),
            (
                [esc(name), f'<span class="id">{esc(actor)}</span>', str(n), str(lg), str(ch)]
                for actor, name, n, lg, ch in data.top_actors()
            ),
            numeric=(2, 3, 4),
        )
    )
    out.append("</section>")

    out.append('<section id="anomalies"><h2>Anomalies</h2>')
    out.append(
        _table(
            ("Time (UTC)", "Action", "Kind", "Detail", "Entry"),
            (
                [
                    f'<span class="time">{esc(_when(a.entry.createdAt))}</span>',
                    esc(a.entry.action),
                    f"<b>{esc(a.kind)}</b>",
                    esc(a.detail),
                    f'<span class="id">{esc(a.entry.id)}</span>',
                ]
                for a in data.anomalies[:limit]
            ),
            empty="No anomaly: every removal had a prior grant and entries were stored in order.",
            row_class="anomaly",
        )
    )
    if note := _more(len(data.anomalies[:limit]), data.anomaly_total, _anomaly_hint(data)):
        out.append(f'<p class="empty">{esc(note)}</p>')
    if data.problems:
        out.append("<h3>Damaged or foreign lines skipped</h3><ul>")
        out.extend(f"<li>{esc(p)}</li>" for p in data.problems)
        out.append("</ul>")
    out.append("</section>")

    out.append(
        f'<p class="note">{esc(data.note)} States are replayed in time order (createdAt, '
        "ties broken by entry id). Each row cites the entry it comes from; look it up "
        "with <code>audit query</code> or <code>audit history</code>.</p>"
    )
    out.append(
        f"<footer>auditcli access review · {esc(data.generated_at)} · "
        f"{data.total} entries in the period</footer>"
    )
    out.append("</main></body></html>\n")
    return "\n".join(out)


def _section_hint(data: ReportData, name: str) -> str:
    actions = " ".join(f"--action {a}" for a in SECTION_ACTIONS[name])
    return f"the rest: audit query {actions} --since {data.since} --until {data.until} --all"


def _anomaly_hint(data: ReportData) -> str:
    return f"the rest: audit state … --at {data.until}, or audit history"


def _section_table(data: ReportData, name: str, labels: dict[str, str], limit: int | None) -> str:
    items = data.sections.get(name, [])
    table = _table(
        ("Time (UTC)", "Actor", "Action", "Subject", "Change", "Entry"),
        _event_rows(items[:limit], labels),
    )
    total = max(data.section_totals.get(name, 0), len(items))
    if note := _more(len(items[:limit]), total, _section_hint(data, name)):
        table += f'<p class="empty">{esc(note)}</p>'
    return table


# ----------------------------------------------------------------------------- Markdown
_MD_SPECIAL = re.compile(r"([\\`*{}\[\]()#+!|<>~&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def md(value: Any) -> str:
    """Untrusted text as inert Markdown for a table cell: control characters visible, markup
    characters backslash-escaped (CommonMark allows escaping any ASCII punctuation)."""
    text = visible("" if value is None else str(value))
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str = "None in this period."
) -> list[str]:
    rows = list(rows)
    if not rows:
        return [f"_{empty}_", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _md_events(items: list[TimelineItem], labels: dict[str, str]) -> list[str]:
    rows = []
    for item in items:
        entry = item.entry
        actor = entry.get("actorEmail") or entry.get("actorName") or entry.get("actorId")
        changes = [md(c.text()) for c in item.changes] + [
            f"**⚠ {md(a.kind)}**" for a in item.anomalies
        ]
        rows.append(
            [
                md(_when(entry["createdAt"])),
                md(actor),
                md(entry.get("actionDisplayName") or entry.get("action")),
                md(_subject(item, labels)),
                "<br>".join(changes) or "—",
                f"`{entry['id']}`" if "`" not in entry["id"] else md(entry["id"]),
            ]
        )
    return _md_table(("Time (UTC)", "Actor", "Action", "Subject", "Change", "Entry"), rows)


def _md_section(
    data: ReportData, name: str, labels: dict[str, str], limit: int | None
) -> list[str]:
    items = data.sections.get(name, [])
    lines = _md_events(items[:limit], labels)
    total = max(data.section_totals.get(name, 0), len(items))
    if note := _more(len(items[:limit]), total, _section_hint(data, name)):
        lines += [f"_{md(note)}_", ""]
    return lines


def render_markdown(
    data: ReportData, *, command: str | None = None, max_rows: int = MAX_ROWS
) -> str:
    """The report as GitHub-flavoured Markdown (tables; the chart as text bars); each table
    shows at most `max_rows` rows (0: all)."""
    limit = max_rows or None
    labels = data.labels
    orgs = ", ".join(data.org_ids) if data.org_ids else "all organizations"
    out = [
        "# Access review report",
        "",
        f"- **Period:** {md(data.since)} to {md(data.until)} (UTC, inclusive; "
        f"{_period_days(data)})",
        f"- **Organizations:** {md(orgs)}",
        f"- **Generated:** {md(data.generated_at)}",
    ]
    if command:
        out.append(f"- **Command:** {md(command)}")
    status = data.integrity.get("status", "not checked")
    out += [
        f"- **Integrity of the period:** {md(status)} {md(data.integrity.get('detail', ''))}",
        "",
        "## Summary",
        "",
    ]
    out += _md_table(("Measure", "Count"), ([md(k), str(v)] for k, v in data.totals()))
    out += ["## Logins per day", ""]
    peak = max(data.logins_per_day.values(), default=0) or 1
    out += _md_table(
        ("Day (UTC)", "Logins", ""),
        ([day, str(n), "█" * round(30 * n / peak)] for day, n in data.logins_per_day.items()),
    )
    out += ["## System admins", ""]
    for title, rows in (
        (f"At the start of the period ({data.since})", data.admins_at_start),
        (f"At the end of the period ({data.until})", data.admins_at_end),
    ):
        out += [f"### {md(title)}", ""]
        out += _md_table(
            ("Organization", "User", "Granted (UTC)", "Granted by", "Entry"),
            (
                [
                    md(r["organizationId"]),
                    md(_user(r["userId"], labels)),
                    md(_when(r["grantedBy"]["createdAt"])),
                    md(r["grantedBy"]["actor"]),
                    md(r["grantedBy"]["id"]),
                ]
                for r in rows
            ),
            empty="No system admin is recorded (grants older than the log do not appear).",
        )
    out += [f"### {SECTION_TITLES['admins']}", ""]
    out += _md_section(data, "admins", labels, limit)
    for name in ("users", "teams", "roles", "service-accounts"):
        out += [f"## {SECTION_TITLES[name]}", ""]
        out += _md_section(data, name, labels, limit)
    out += ["## Most active actors", ""]
    out += _md_table(
        ("Actor", "Actor id", "Entries", "Logins", "Other actions"),
        (
            [md(name), md(actor), str(n), str(lg), str(ch)]
            for actor, name, n, lg, ch in data.top_actors()
        ),
    )
    out += ["## Anomalies", ""]
    out += _md_table(
        ("Time (UTC)", "Action", "Kind", "Detail", "Entry"),
        (
            [
                md(_when(a.entry.createdAt)),
                md(a.entry.action),
                md(a.kind),
                md(a.detail),
                md(a.entry.id),
            ]
            for a in data.anomalies[:limit]
        ),
        empty="No anomaly.",
    )
    if note := _more(len(data.anomalies[:limit]), data.anomaly_total, _anomaly_hint(data)):
        out += [f"_{md(note)}_", ""]
    if data.problems:
        out += ["Damaged or foreign lines skipped:", ""]
        out += [f"- {md(p)}" for p in data.problems] + [""]
    out += [
        f"> {md(data.note)} States are replayed in time order (createdAt, ties broken by "
        "entry id).",
        "",
    ]
    return "\n".join(out)
