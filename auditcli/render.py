"""Renderers: JSON, JSONL and CSV exact for machines; rich tables for people.

Every field is untrusted text. Tables build cells as `rich.text.Text` (never markup) and show
control characters, DEL, C1 controls and bidi overrides as visible escapes; CSV neutralises cells
that a spreadsheet would run as a formula. rich is imported only when a table is drawn.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import orjson

#: C0 controls, DEL, C1 controls, and the Unicode format characters that reorder or hide text.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
#: A cell starting with one of these gets a leading `'`: the first five start a formula in a
#: spreadsheet (OWASP CSV injection); `'` itself, so that the prefix can always be taken off.
_QUOTED_START = ("=", "+", "-", "@", "\t", "\r", "'")


def visible(text: str) -> str:
    """`text` with every control or bidi character shown as an escape (`\\x1b`, `\\u202e`)."""
    return _UNSAFE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def csv_cell(value: Any) -> str:
    """One CSV cell, reversibly (docs/formats.md): null is an empty cell, an empty string a
    lone `'`, an object its JSON; a leading `'` goes before text starting with a character a
    spreadsheet would treat as the start of a formula (OWASP CSV injection) or with `'`. So a
    non-empty cell starting with `'` loses exactly that one character when decoded."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if not text or text.startswith(_QUOTED_START):
        return "'" + text
    return text


def csv_rows(
    entries: Iterable[dict[str, Any]], fields: Sequence[str] | None = None
) -> Iterator[str]:
    """CSV text, a header row of `fields` (default: the seed's 13) first, then one row per
    entry (RFC 4180 quoting)."""
    if fields is None:
        from .model import SEED_FIELDS  # lazily: model imports pydantic (startup time)

        fields = SEED_FIELDS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(fields)
    yield buffer.getvalue()
    for entry in entries:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(entry.get(name)) for name in fields])
        yield buffer.getvalue()


def write_json_response(
    out: IO[bytes], total: int, limit: int, offset: int, contents: Iterable[bytes]
) -> None:
    """The API's response `{"total","limit","offset","logs":[…]}` from canonical entries."""
    out.write(b'{"total":%d,"limit":%d,"offset":%d,"logs":[' % (total, limit, offset))
    first = True
    for content in contents:
        if not first:
            out.write(b",")
        out.write(content)
        first = False
    out.write(b"]}\n")


def short_time(created_at: str) -> str:
    """`2026-11-25 08:06:40` from a canonical timestamp: what a table shows, in the display
    zone (`--tz`; UTC unless set)."""
    from .timeparse import display_time

    return display_time(created_at)


def zoned(heading: str) -> str:
    """A table heading with its `(UTC)` naming the display zone instead, as `short_time`
    shows the times under it: `Time (Europe/Paris)`."""
    from .timeparse import display_zone_name

    return heading.replace("(UTC)", f"({display_zone_name()})")


def entries_table(
    entries: Sequence[dict[str, Any]], *, title: str | None = None, caption: str | None = None
) -> Any:
    """A rich Table of entries for people: time, action (display name), actor (name, else email,
    else id), target id (its type is in the action) and description.

    Laid out for 80 columns: no borders but a rule under the header, so the description keeps
    most of the width. Cells wrap at spaces and fold only a word wider than its column (an email,
    an id): nothing is cut off. Every cell is inert text."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),  # with the blank column divider: two spaces between columns
    )
    # Caps, not minimums: rich crops a table whose minimums exceed the width. 12 holds every
    # word of the builtin display names; names and ids past their cap wrap or fold.
    table.add_column(zoned("Time (UTC)"), no_wrap=True)
    table.add_column("Action", overflow="fold", max_width=12)
    table.add_column("Actor", overflow="fold", max_width=14)
    table.add_column("Target", overflow="fold", max_width=12)
    table.add_column("Description", overflow="fold")
    for entry in entries:
        actor = entry.get("actorName") or entry.get("actorEmail") or entry.get("actorId") or ""
        table.add_row(
            Text(short_time(str(entry.get("createdAt", "")))),
            Text(visible(str(entry.get("actionDisplayName") or entry.get("action")))),
            Text(visible(str(actor))),
            Text(visible(str(entry.get("targetId") or ""))),
            Text(visible(str(entry.get("description") or ""))),
        )
    return table


def rows_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
    numeric: Sequence[str] = (),
    no_wrap: Sequence[str] = (),
) -> Any:
    """A rich Table of plain rows; every cell is shown inertly as text (a `Text` cell as given).
    `numeric` columns are right-aligned; `no_wrap` columns are never wrapped."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, caption=caption)
    for header in headers:
        table.add_column(
            zoned(header),
            justify="right" if header in numeric else "left",
            no_wrap=header in no_wrap,
            overflow="fold",
        )
    for row in rows:
        table.add_row(
            *(cell if isinstance(cell, Text) else Text(visible(_cell_text(cell))) for cell in row)
        )
    return table


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def loads_entry(content: bytes) -> dict[str, Any]:
    """Parse one canonical entry."""
    return orjson.loads(content)
