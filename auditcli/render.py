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
from dataclasses import dataclass, replace
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
    """CSV text, a header row of `fields` (default: the 13 entry fields) first, then one row per
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


def human_size(size: int) -> str:
    """A byte count as people read it: `812 B`, `254.9 KiB`, `1.8 MiB`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


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


@dataclass(frozen=True)
class Column:
    """One column of a table for people.

    `priority` 0 is always shown; when the width is short, the column with the highest priority
    is dropped first (then the next), so the table keeps its most useful columns instead of
    squeezing all of them. A cell wraps at spaces only: a word (an id, an email) is never split,
    except in a `fold` column (free text), where a word wider than `fold` characters is folded."""

    header: str
    priority: int = 0
    fold: int | None = None
    numeric: bool = False
    max_width: int | None = None
    width: int | None = None  # exactly this wide (a stream's rows line up whatever they hold)


#: The space between two columns.
_GAP = 2


def fit_table(
    columns: Sequence[Column],
    rows: Iterable[Sequence[Any]],
    *,
    width: int,
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
) -> Any:
    """A rich Table of `rows` (cells: text, numbers, or `rich.text.Text` as given) laid out for
    `width` columns: the columns that fit by priority (see Column), no borders but a rule under
    the header. Every cell is inert text: control and bidi characters are shown as escapes."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # Headings say `(UTC)`; times are shown in the display zone (`--tz`), so they name it.
    columns = [replace(column, header=zoned(column.header)) for column in columns]
    cells = [
        [cell if isinstance(cell, Text) else Text(visible(_cell_text(cell))) for cell in row]
        for row in rows
    ]
    needs = [_min_width(column, [row[at] for row in cells]) for at, column in enumerate(columns)]
    shown = list(range(len(columns)))
    while len(shown) > 1 and sum(needs[at] for at in shown) + _GAP * (len(shown) - 1) > width:
        droppable = [at for at in shown if columns[at].priority > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda at: (columns[at].priority, at)))
    wants = [_want_width(columns[at], [row[at] for row in cells], needs[at]) for at in shown]
    # Free text (fold columns) takes what the others leave.
    order = sorted(range(len(shown)), key=lambda n: (columns[shown[n]].fold is not None, n))
    widths = _share([needs[at] for at in shown], wants, width - _GAP * (len(shown) - 1), order)
    table = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, _GAP - 1, 0, 0),  # with the blank column divider: _GAP spaces between
        show_header=show_header,
    )
    for at, size in zip(shown, widths, strict=True):
        column = columns[at]
        table.add_column(
            column.header,
            justify="right" if column.numeric else "left",
            width=size,
            overflow="fold",
        )
    for row in cells:
        table.add_row(*(row[at] for at in shown))
    return table


def _want_width(column: Column, cells: Sequence[Any], need: int) -> int:
    """The width the column would take unwrapped (its widest line), up to its max_width."""
    from rich.cells import cell_len

    if column.width is not None:
        return column.width
    widest = max((cell_len(line) for cell in cells for line in cell.plain.split("\n")), default=0)
    widest = max(widest, cell_len(column.header))
    if column.max_width is not None:
        widest = min(widest, column.max_width)
    return max(widest, need)


def _share(needs: list[int], wants: list[int], room: int, order: list[int]) -> list[int]:
    """Column widths: each its need, then the room left given to the columns in `order`, each
    either all it wants (a time or a name then shows on one line) or nothing (a little more
    width would not save a line); the last in `order` (free text) takes what remains."""
    widths = list(needs)
    spare = room - sum(widths)
    for at in order[:-1]:
        if wants[at] - widths[at] <= spare:
            spare -= wants[at] - widths[at]
            widths[at] = wants[at]
    if order:
        widths[order[-1]] += max(0, min(spare, wants[order[-1]] - widths[order[-1]]))
    return widths


def _min_width(column: Column, cells: Sequence[Any]) -> int:
    """The narrowest the column can be without splitting a word (or, in a `fold` column, a word
    of up to `fold` characters); its header may wrap at spaces."""
    from rich.cells import cell_len

    if column.width is not None:
        return column.width
    words = [word for cell in cells for word in cell.plain.split()]
    widest = max((cell_len(word) for word in words), default=0)
    if column.fold is not None:
        widest = min(widest, column.fold)
    header = max((cell_len(word) for word in column.header.split()), default=0)
    return max(widest, header, 1)


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """Each id shortened, as git abbreviates hashes: its first 8 characters, or as many more
    (up to the next `-`) as make it unique among `ids`. UUIDv7 ids begin with their time, so
    entries of the same minute need more than 8. Machine formats always give the full id."""
    unique = sorted(set(ids))
    result: dict[str, str] = {}
    for length in (8, 13, 18, 23):
        counts: dict[str, int] = {}
        for value in unique:
            counts[value[:length]] = counts.get(value[:length], 0) + 1
        for value in unique:
            if value not in result and counts[value[:length]] == 1:
                result[value] = value[:length]
    for value in unique:
        result.setdefault(value, value)
    return result


def entries_table(
    entries: Sequence[dict[str, Any]],
    *,
    width: int,
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
    stream: bool = False,
) -> Any:
    """A table of entries for people (query, tail): time, action (display name), actor (name,
    else email, else id), target id (its type is in the action) and description. At 80 columns
    all five fit; on narrower terminals target, then actor, then action give way. `stream`:
    fixed widths, so that the rows of successive tables (`audit tail`) line up."""
    columns: list[Column | None] = [
        Column("Time (UTC)"),
        Column("Action", priority=1, max_width=12),
        Column("Actor", priority=2, max_width=16),
        Column("Target", priority=3),
        Column("Description", fold=36),
    ]
    if stream:
        columns = _stream_columns(columns, width)
    rows = [
        (
            short_time(str(entry.get("createdAt", ""))),
            action_name(entry),
            entry.get("actorName") or entry.get("actorEmail") or entry.get("actorId") or "",
            entry.get("targetId") or "",
            entry.get("description") or "",
        )
        for entry in entries
    ]
    shown = [[row[at] for at, column in enumerate(columns) if column is not None] for row in rows]
    return fit_table(
        [column for column in columns if column is not None],
        shown,
        width=width,
        title=title,
        caption=caption,
        show_header=show_header,
    )


#: The widths of the entries table's columns in a stream, and the least the description gets.
_STREAM_WIDTHS = (19, 12, 14, 12)
_STREAM_TEXT = 28


def _stream_columns(columns: list[Column | None], width: int) -> list[Column | None]:
    """Fixed widths for a stream of one-row tables (`audit tail`): the columns that fit beside
    a description of at least _STREAM_TEXT, by priority; None for a column left out."""
    from dataclasses import replace

    kept = list(range(len(_STREAM_WIDTHS)))

    def used() -> int:
        return sum(_STREAM_WIDTHS[at] + _GAP for at in kept)

    while used() + _STREAM_TEXT > width and len(kept) > 1:
        kept.remove(max(kept, key=lambda at: _priority(columns[at])))
    result: list[Column | None] = [
        replace(column, width=_STREAM_WIDTHS[at]) if column and at in kept else None
        for at, column in enumerate(columns[:-1])
    ]
    text = columns[-1]
    assert text is not None
    return [*result, replace(text, width=max(width - used(), 10))]


def _priority(column: Column | None) -> int:
    return column.priority if column else 0


def action_name(entry: dict[str, Any]) -> str:
    """What a table shows for an entry's action: its display name (as stored), else the name."""
    return str(entry.get("actionDisplayName") or entry.get("action") or "")


def rows_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    width: int,
    title: str | None = None,
    caption: str | None = None,
    numeric: Sequence[str] = (),
) -> Any:
    """A table of plain rows whose columns all matter (none is dropped); `numeric` columns are
    right-aligned. Words are never split but in the last column."""
    columns = [
        Column(
            header,
            numeric=header in numeric,
            fold=36 if at == len(headers) - 1 else None,
        )
        for at, header in enumerate(headers)
    ]
    return fit_table(columns, rows, width=width, title=title, caption=caption)


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
