"""Bulk import of JSONL in the API's entry format: validate everything first, then append by day.

Three passes, memory bounded by the largest day rather than the input:

1. *validate*: the input is read in batches; a batch of complete, canonical entries (what
   exports, shippers and `audit query` write) is parsed and checked column by column
   (`model.valid_entries`), any other line takes the full path (`build_entry`). Entries go to a
   spool in input order; `(id, digest, line, position)` keys go to a second spool, grouped by
   day. Each entry is hashed here, once.
2. *check*: day by day, the keys of one day only: an id repeated in the input (same content: a
   duplicate to skip; other content: an invalid line) and an id already stored with other
   content (an invalid line). Then the day's keys are released.
3. *write* (nothing if any line was invalid, unless `--skip-invalid`): the spool is appended
   day by day in locked, fsynced batches; when a day's last entry is written its files get
   their line index (`lineindex`), so the first query after an import does not build them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, itemgetter
from typing import IO, Any

import orjson

from . import lineindex
from .catalog import Catalog
from .errors import AuditError, InvalidEntryError, NotRecordedError
from .model import (
    MAX_LINE_BYTES,
    MAX_METADATA_DEPTH,
    build_entry,
    dumps_entry,
    loads_strict,
    valid_entries,
)
from .progress import Progress
from .query import INDEX_MIN_BYTES
from .store import AuditStore, IdIndex, content_digest
from .timeparse import CANONICAL, parse_utc

_FLUSH_BYTES = 4 << 20  # one locked write per day buffer of this size
_MAX_BUFFERED = 32 << 20  # bound on what all day buffers hold together
_MAX_REPORTED = 1000
#: An input line may be this long (a stored entry is at most 64 KiB; JSON escapes and
#: whitespace can make its input form longer).
MAX_INPUT_LINE = 1 << 20
_READ = 1 << 20  # input read at a time; also about the bytes validated as one batch
_KEYS_BUFFERED = 8 << 20  # keys held before they are written to the key spool, by day
_DIGEST = 16  # bytes of content_digest
_ARRAY = "Q"  # line numbers and spool positions in the key spool


@dataclass
class ImportReport:
    """The outcome of an import: what was written, skipped as re-delivered, or refused."""

    lines: int = 0
    written: int = 0
    duplicates: int = 0
    invalid: int = 0
    #: Lines with neither `id` nor `createdAt`: they get a new id and the import time, so
    #: importing the same input again stores them again.
    unstable: int = 0
    problems: list[str] = field(default_factory=list)
    #: Line numbers of `problems`, to list them in input order whatever pass found them.
    _problem_lines: list[int] = field(default_factory=list, repr=False)

    def rerun_advice(self) -> str:
        """What importing the same input again does (after a crash or a failed batch)."""
        if not self.unstable:
            return "importing the same input again skips them as duplicates"
        return (
            "importing the same input again skips them as duplicates, except the "
            f"{self.unstable} line(s) with neither id nor createdAt, which it stores again"
        )


def import_jsonl(
    store: AuditStore,
    source: IO[bytes],
    *,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import JSONL entries from `source` into `store`.

    A line without an `id` but with a `createdAt` gets a stable id (see `stable_id`), so a
    re-run after a crash skips what was written; a line with neither gets a new UUIDv7 and
    counts in `unstable`. Every line is validated before anything is written; with an invalid
    line and no `skip_invalid`, InvalidEntryError lists every problem as `line N: field:
    message` (in input order) and the store is untouched. Entries whose id is already stored
    with the same content are skipped and counted as duplicates (shippers deliver at least
    once); an id stored with different content is an invalid line. Memory stays bounded by the
    largest day: validated entries are spooled to unlinked temporary files, checked a day at a
    time, then appended day by day in locked, fsynced batches, and each day's files indexed.
    """
    report = ImportReport()
    try:
        with (
            tempfile.TemporaryFile(prefix="audit-import-") as spool,
            tempfile.TemporaryFile(prefix="audit-import-") as keys,
        ):
            plan = _Plan(keys)
            _validate_into(store, source, spool, plan, report, progress)
            plan.flush_keys()
            _check_days(store, plan, report)
            _sort_problems(report)
            if report.invalid and not skip_invalid:
                raise InvalidEntryError(
                    f"{report.invalid} invalid line(s); nothing was written", report.problems
                )
            spool.seek(0)
            _write_spooled(store, spool, plan, report, progress)
    except OSError as exc:  # the input or the spools (in TMPDIR) failed, not the store
        raise NotRecordedError(
            f"import: {exc.strerror or exc}; {report.written} entries were written before this"
            + (f" ({report.rerun_advice()})" if report.written else "")
        ) from None
    return report


#: Prefix of the hash behind a stable id: a new derivation gets a new prefix.
_STABLE_ID_DOMAIN = b"auditcli-import-id/1\n"


def stable_id(data: dict[str, Any], occurrence: int) -> str:
    """The id of an imported line that has none: a UUID (version 8) from SHA-256 over the
    line's JSON object (keys sorted, whitespace and key order ignored, `"id": null` the same as
    no id) and its occurrence among identical objects of the same input (1, 2, …). The same
    input gives the same ids, so a re-run skips what was already written; two identical lines
    in one input stay two entries."""
    body = orjson.dumps({k: v for k, v in data.items() if k != "id"}, option=orjson.OPT_SORT_KEYS)
    raw = bytearray(
        hashlib.sha256(_STABLE_ID_DOMAIN + body + b"\n" + str(occurrence).encode()).digest()[:16]
    )
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))


class _Plan:
    """What the validation pass leaves for the others: the key spool's segments by day, and
    what the check pass decides (spool positions to leave out, each day's last position)."""

    def __init__(self, keys: IO[bytes]) -> None:
        self.keys = keys
        #: day -> [(offset, count, bytes of ids)] of its key segments, in spool order
        self.segments: dict[str, list[tuple[int, int, int]]] = {}
        self._pending: dict[str, list[tuple[list[str], list[bytes], array[int], array[int]]]]
        self._pending = {}
        self._pending_bytes = 0
        #: Spool positions not to write: a repeated id, or (with --skip-invalid) a conflict.
        self.skip: set[int] = set()
        #: day -> spool position of its last entry: the day is complete once that is written.
        self.last: dict[str, int] = {}
        self.entries = 0  # entries in the spool

    def add(self, day: str, ids: list[str], digests: list[bytes], lines: list[int]) -> None:
        """Note the keys of spooled entries of one day (the next positions of the spool)."""
        first = self.entries
        self.entries += len(ids)
        positions = array(_ARRAY, range(first, self.entries))
        self._pending.setdefault(day, []).append((ids, digests, array(_ARRAY, lines), positions))
        self._pending_bytes += len(ids) * 100
        if self._pending_bytes >= _KEYS_BUFFERED:
            self.flush_keys()

    def flush_keys(self) -> None:
        """Write the keys held, one segment per day."""
        for day, parts in self._pending.items():
            ids = "\n".join("\n".join(part[0]) for part in parts).encode()
            digests = b"".join(b"".join(part[1]) for part in parts)
            lines = b"".join(part[2].tobytes() for part in parts)
            positions = b"".join(part[3].tobytes() for part in parts)
            offset = self.keys.seek(0, os.SEEK_END)
            self.keys.write(ids + digests + lines + positions)
            count = sum(len(part[0]) for part in parts)
            self.segments.setdefault(day, []).append((offset, count, len(ids)))
        self._pending.clear()
        self._pending_bytes = 0

    def day_keys(self, day: str) -> Iterator[tuple[list[str], bytes, array[int], array[int]]]:
        """`(ids, digests, lines, positions)` of each segment of `day`, in spool order."""
        width = array(_ARRAY).itemsize
        for offset, count, id_bytes in self.segments[day]:
            self.keys.seek(offset)
            raw = self.keys.read(id_bytes + count * (_DIGEST + 2 * width))
            ids = raw[:id_bytes].decode().split("\n")
            at = id_bytes + count * _DIGEST
            lines, positions = array(_ARRAY), array(_ARRAY)
            lines.frombytes(raw[at : at + count * width])
            positions.frombytes(raw[at + count * width :])
            yield ids, raw[id_bytes:at], lines, positions


def _input_batches(source: IO[bytes]) -> Iterator[list[bytes | None]]:
    """The lines of `source` (without their newline) in batches of about `_READ` bytes; None
    for a line of MAX_INPUT_LINE bytes or more: a hostile input without newlines must not be
    read into memory whole; its bytes are skipped, not kept."""
    rest = b""
    skipping = False  # inside a line already reported as too long
    while block := source.read(_READ):
        lines = block.split(b"\n")
        if skipping:
            if len(lines) == 1:
                continue
            lines[0], skipping = None, False  # type: ignore[call-overload]
        elif rest:
            lines[0] = rest + lines[0]
        rest = lines.pop()
        if len(rest) >= MAX_INPUT_LINE:
            lines.append(None)  # type: ignore[arg-type]
            rest, skipping = b"", True
        batch: list[bytes | None] = lines  # type: ignore[assignment]
        for n, line in enumerate(lines):
            if line is not None and len(line) >= MAX_INPUT_LINE:
                batch[n] = None
        if batch:
            yield batch
    if rest:
        yield [rest]


def _problem(report: ImportReport, line: int, message: str, *, new_line: bool = True) -> None:
    """Note a problem of input line `line` (0: of the input as a whole); `new_line=False` for
    a further problem of a line already counted, so `invalid` counts lines, not problems."""
    if new_line:
        report.invalid += 1
    if len(report.problems) < _MAX_REPORTED:
        report.problems.append(message)
        report._problem_lines.append(line)
    elif len(report.problems) == _MAX_REPORTED:
        report.problems.append("… further problems not listed")
        report._problem_lines.append(1 << 62)


def _sort_problems(report: ImportReport) -> None:
    """List the problems in input order (a stable sort: a line's problems keep their order)."""
    order = sorted(range(len(report.problems)), key=report._problem_lines.__getitem__)
    report.problems = [report.problems[n] for n in order]
    report._problem_lines = [report._problem_lines[n] for n in order]


def _validate_into(
    store: AuditStore,
    source: IO[bytes],
    spool: IO[bytes],
    plan: _Plan,
    report: ImportReport,
    progress: Progress | None,
) -> None:
    catalog = store.catalog
    read = 0
    occurrences: dict[bytes, int] = {}  # id-less objects seen so far -> how many times
    number = 0
    for batch in _input_batches(source):
        first = number + 1
        number += len(batch)
        report.lines = number
        read += sum(len(raw) + 1 for raw in batch if raw is not None)
        if progress:
            progress(number, done=read, phase="validating")
        fast = None if None in batch else _canonical_batch(batch, catalog)  # type: ignore[arg-type]
        if fast is not None:
            entries, contents = fast
            lines = list(range(first, number + 1))
        else:
            entries, contents, lines = [], [], []
            for n, raw in enumerate(batch, first):
                got = _slow_line(store, raw, n, occurrences, report)
                if got is not None:
                    entries.append(got[0])
                    contents.append(got[1])
                    lines.append(n)
        if not contents:
            continue
        ids = list(map(itemgetter("id"), entries))
        days = [created[:10] for created in map(itemgetter("createdAt"), entries)]
        digests = list(map(content_digest, contents))  # the one hash of each entry
        if days.count(days[0]) == len(days):  # the usual case: input in time order
            spool.write(b"\n".join(contents) + b"\n")
            plan.add(days[0], ids, digests, lines)
            continue
        by_day: dict[str, list[int]] = {}
        for n, day in enumerate(days):
            by_day.setdefault(day, []).append(n)
        for day, picked in by_day.items():  # spooled in the order the plan numbers them
            spool.write(b"\n".join([contents[n] for n in picked]) + b"\n")
            plan.add(
                day,
                [ids[n] for n in picked],
                [digests[n] for n in picked],
                [lines[n] for n in picked],
            )
    if report.lines == 0:
        _problem(report, 0, "input: no entries (the input is empty)")


def _slow_line(
    store: AuditStore,
    raw: bytes | None,
    number: int,
    occurrences: dict[bytes, int],
    report: ImportReport,
) -> tuple[dict[str, Any], bytes] | None:
    """`(entry, content)` of one input line that did not pass as part of a canonical batch, or
    None with its problems noted: the full path (`loads_strict`, `build_entry`, `dumps_entry`)
    unless the line alone is canonical."""
    if raw is None:
        _problem(report, number, f"line {number}: longer than {MAX_INPUT_LINE >> 20} MiB; not read")
        return None
    if not raw.strip():
        _problem(report, number, f"line {number}: empty line")
        return None
    fast = _canonical_batch([raw], store.catalog)
    if fast is not None:
        return fast[0][0], fast[1][0]
    try:
        data = loads_strict(raw)
        if isinstance(data, dict) and data.get("id") is None:
            if data.get("createdAt") is None:
                report.unstable += 1
            else:
                key = hashlib.blake2b(
                    orjson.dumps(data, option=orjson.OPT_SORT_KEYS), digest_size=16
                ).digest()
                occurrences[key] = occurrences.get(key, 0) + 1
                data["id"] = stable_id(data, occurrences[key])
        entry = build_entry(data, store.catalog, clock=store.clock)
        return entry, dumps_entry(entry)
    except InvalidEntryError as exc:
        for n, text in enumerate(exc.problems):
            _problem(report, number, f"line {number}: {text}", new_line=n == 0)
    except ValueError as exc:
        _problem(report, number, f"line {number}: {exc}")
    return None


def _canonical_batch(
    raws: list[bytes], catalog: Catalog
) -> tuple[list[dict[str, Any]], list[bytes]] | None:
    """`(entries, contents)` when every line of `raws` is already a complete, canonical, valid
    entry, which is how exports, shippers and `audit query` write them; None otherwise (the
    lines then go one by one, each through this check alone or the full path).

    Only lines that the full path would accept unchanged are taken, so both give the same
    entries and the same bytes: the JSON is compact and round-trips (what `loads_strict` checks
    first), the 13 entry fields are present in the API's order and pass the model's rules
    (`valid_entries`; so none that `build_entry` would fill is null), createdAt is already
    canonical, the action is in the catalog, and metadata cannot nest too deep (few brackets
    in the whole line). Each check runs over the whole batch in C-level passes."""
    contents = list(map(bytes.strip, raws))
    try:
        entries = list(map(orjson.loads, contents))
        # One dumps of the batch equals the contents joined only if each entry's does: each
        # content is one JSON object, whose end is fixed by its text.
        if orjson.dumps(entries) != b"[" + b",".join(contents) + b"]":
            return None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    if not valid_entries(entries):
        return None
    stamps = list(map(itemgetter("createdAt"), entries))
    if (
        not all(map(catalog.__contains__, map(itemgetter("action"), entries)))
        or max(map(len, contents)) > MAX_LINE_BYTES - 100
        or max(
            map(
                add,
                map(bytes.count, contents, repeat(b"{")),
                map(bytes.count, contents, repeat(b"[")),
            )
        )
        > MAX_METADATA_DEPTH + 1
        or not all(map(CANONICAL.fullmatch, stamps))
    ):
        return None
    try:
        all(map(parse_utc, stamps))  # a real date and time (2026-02-30 is not)
    except ValueError:
        return None
    return entries, contents


def _check_days(store: AuditStore, plan: _Plan, report: ImportReport) -> None:
    """Day by day, before any write: ids repeated in the input (the same content again is a
    duplicate, other content an invalid line) and ids already stored with other content (an
    invalid line). What is not to be written goes to `plan.skip`; a day's keys are dropped
    when it is done."""
    stored_days = set(store.days())
    for day in sorted(plan.segments):
        seen: dict[str, tuple[bytes, int, int]] = {}  # id -> (digest, line, spool position)
        for ids, digests, lines, positions in plan.day_keys(day):
            plan.last[day] = positions[-1]
            cut = [digests[k : k + _DIGEST] for k in range(0, len(digests), _DIGEST)]
            if len(set(ids)) == len(ids) and seen.keys().isdisjoint(ids):
                seen.update(zip(ids, zip(cut, lines, positions, strict=True), strict=True))
                continue
            for entry_id, digest, number, position in zip(ids, cut, lines, positions, strict=True):
                earlier = seen.get(entry_id)
                if earlier is None:
                    seen[entry_id] = (digest, number, position)
                    continue
                plan.skip.add(position)
                if earlier[0] != digest:
                    _problem(
                        report,
                        number,
                        f"line {number}: id: {entry_id} appears on line {earlier[1]} "
                        "with different content",
                    )
                else:
                    report.duplicates += 1
        if day not in stored_days:
            continue
        index = IdIndex(store, day)
        index.refresh()
        for entry_id in index.ids.keys() & seen.keys():
            digest, number, position = seen[entry_id]
            if index.ids[entry_id] != digest:
                plan.skip.add(position)
                _problem(
                    report,
                    number,
                    f"line {number}: id: {entry_id} is already recorded with different content",
                )


def _write_spooled(
    store: AuditStore,
    spool: IO[bytes],
    plan: _Plan,
    report: ImportReport,
    progress: Progress | None,
) -> None:
    indexes: dict[str, IdIndex] = {}
    buffers: dict[str, list[tuple[str, bytes]]] = {}
    sizes: dict[str, int] = {}
    buffered = 0

    def flush(day: str) -> None:
        nonlocal buffered
        items = buffers.pop(day)
        buffered -= sizes.pop(day)
        index = indexes.get(day)
        if index is None:
            # The check pass left one of each id per day: what this import writes need not
            # be remembered, only what others wrote meanwhile is read (under the lock).
            index = indexes[day] = IdIndex(store, day, remember_written=False)
        try:
            result = store.append_contents(day, items, known_ids=index)
        except AuditError as exc:  # earlier batches are durable: say how many, and what next
            written = f"{report.written} of {report.lines} input line(s) were written before"
            raise type(exc)(f"{exc}; {written} this batch ({report.rerun_advice()})") from None
        report.written += result.written
        report.duplicates += result.duplicates

    def finish(day: str) -> None:
        if day in buffers:
            flush(day)
        indexes.pop(day, None)
        _index_day(store, day)

    size = spool.seek(0, os.SEEK_END)
    spool.seek(0)
    position, done, rest = 0, 0, b""
    skip, last = plan.skip, plan.last
    while block := spool.read(_FLUSH_BYTES):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for content in lines:
            at = position
            position += 1
            day = content[-26:-16].decode()  # createdAt ends every content: `…Z"}`
            if not skip or at not in skip:
                if day not in buffers:
                    buffers[day], sizes[day] = [], 0
                buffers[day].append((content[7 : content.index(b'"', 7)].decode(), content))
                sizes[day] += len(content) + 1
                buffered += len(content) + 1
            if last[day] == at:
                finish(day)
            elif day not in sizes:
                continue
            elif sizes[day] >= _FLUSH_BYTES:
                flush(day)
            elif buffered >= _MAX_BUFFERED:
                flush(max(sizes, key=sizes.__getitem__))
        done += len(block)
        if progress:
            progress(position, done=done, total=size, phase="writing")
    for day in sorted(buffers):
        finish(day)


def _index_day(store: AuditStore, day: str) -> None:
    """Write the line index of this writer's files of `day` (see `lineindex.index_file`), so
    the first query after the import does not build it; files too small to be indexed are
    left out, as the query engine leaves them out."""
    mine = store.writer_id
    for file in store.files(day):
        if file.compressed or (file.segment != mine and not file.segment.startswith(mine + "+")):
            continue
        try:
            if os.stat(file.path, follow_symlinks=False).st_size < INDEX_MIN_BYTES:
                continue
        except OSError:
            continue
        lineindex.index_file(store.root, file.partition, file.path.name)
