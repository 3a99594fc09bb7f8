"""Bulk import of JSONL in the API's entry format: validate everything first, then append by day.

Three passes, memory bounded by the largest day rather than the input:

1. *validate*: the input is read in batches; a batch of complete, canonical entries (what
   exports, shippers and `audit query` write) is parsed and checked column by column
   (`batchcheck.canonical_columns`), any other line takes the full path (`build_entry`).
   Entries go to a spool in input order; `(id, spool offset, line, position)` keys go to a
   second spool, grouped by day. No entry is hashed here: the check pass reads back (and
   hashes) only the entries whose id it has seen before.
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
import stat
import tempfile
import uuid
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate, repeat
from itertools import chain as concat
from operator import add, itemgetter, sub
from typing import IO, Any

import orjson

from . import chain, lineindex
from .batchcheck import canonical_columns
from .catalog import Catalog
from .errors import AuditError, InvalidEntryError, NotRecordedError
from .model import MAX_ENTRY_BYTES, build_entry, columns_of, dumps_entry, loads_strict
from .progress import Progress
from .query import INDEX_MIN_BYTES
from .store import AppendReport, AuditStore, IdIndex, _open_in_partition, content_digest

_FLUSH_BYTES = 4 << 20  # one locked write per day buffer of this size
_MAX_BUFFERED = 16 << 20  # bound on what all day buffers hold together
_MAX_REPORTED = 1000
#: An input line may be this long (a stored entry is at most 64 KiB; JSON escapes and
#: whitespace can make its input form longer).
MAX_INPUT_LINE = 1 << 20
_READ = 256 << 10  # input read at a time (and spool read back): the bytes validated as one batch
_KEYS_BUFFERED = 2 << 20  # keys held before they are written to the key spool, by day
_TAKE = 2048  # spooled lines buffered at a time
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
            spool.flush()
            _check_days(store, plan, spool, report)
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
    what the check pass decides (spool positions to leave out, each day's last position).

    A segment holds, for entries of one day in spool order: ids, byte offsets in the spool,
    input line numbers and spool positions (read by the check pass), then stored line lengths
    (which give the contents' lengths) and the values a line index needs (read when the day
    is indexed)."""

    def __init__(self, keys: IO[bytes]) -> None:
        self.keys = keys
        #: day -> [(offset, count, bytes of ids, bytes of index values)], in spool order
        self.segments: dict[str, list[tuple[int, int, int, int]]] = {}
        #: day -> the parts of its next segment, already packed: ids, offsets, lines,
        #: positions, lengths, index values (bytes each; kept small: memory is what they take)
        self._pending: dict[str, list[tuple[bytes, bytes, bytes, bytes, bytes, bytes]]] = {}
        self._pending_bytes = 0
        #: Spool positions not to write: a repeated id, or (with --skip-invalid) a conflict.
        self.skip: set[int] = set()
        #: day -> spool position of its last entry: the day is complete once that is written.
        self.last: dict[str, int] = {}
        self.entries = 0  # entries in the spool
        #: The spool as runs of one day: day numbers (into `_days`) and entry counts.
        self._run_days, self._run_counts = array("I"), array("Q")
        self._days: list[str] = []
        self._day_numbers: dict[str, int] = {}

    def add(
        self,
        day: str,
        columns: Mapping[str, Sequence[Any]],
        contents: list[bytes],
        lines: list[int],
        offset: int,
    ) -> None:
        """Note the keys of spooled entries of one day (the next positions of the spool),
        whose contents were spooled back to back from byte `offset`, each with a newline:
        `columns` holds at least the values of `_KEPT`, a column per field."""
        lengths = array("I", map(add, map(len, contents), repeat(chain.SUFFIX_LEN - 1)))
        ids = columns["id"]
        positions = range(self.entries, self.entries + len(ids))
        self.entries += len(ids)
        number = self._day_numbers.get(day)
        if number is None:
            number = self._day_numbers[day] = len(self._days)
            self._days.append(day)
        if self._run_days and self._run_days[-1] == number:
            self._run_counts[-1] += len(ids)
        else:
            self._run_days.append(number)
            self._run_counts.append(len(ids))
        part = (
            "\n".join(ids).encode(),
            array(_ARRAY, accumulate(map(len, contents[:-1]), _next, initial=offset)).tobytes(),
            array(_ARRAY, lines).tobytes(),
            array(_ARRAY, positions).tobytes(),
            lengths.tobytes(),
            # one JSON text per part (no raw newline in it): a segment's are split at newlines
            orjson.dumps([columns[name] for name in _FIELDS]),
        )
        self._pending.setdefault(day, []).append(part)
        self._pending_bytes += sum(map(len, part))
        if self._pending_bytes >= _KEYS_BUFFERED:
            self.flush_keys()

    def flush_keys(self) -> None:
        """Write the keys held, one segment per day."""
        for day, parts in self._pending.items():
            ids = b"\n".join(part[0] for part in parts)
            values = b"\n".join(part[5] for part in parts)
            count = sum(len(part[1]) for part in parts) // _WIDTH
            offset = self.keys.seek(0, os.SEEK_END)
            self.keys.write(ids)
            for n in range(1, 5):
                self.keys.write(b"".join(part[n] for part in parts))
            self.keys.write(values)
            self.segments.setdefault(day, []).append((offset, count, len(ids), len(values)))
        self._pending.clear()
        self._pending_bytes = 0

    def runs(self) -> Iterator[tuple[str, int]]:
        """`(day, entries)` of the spool's runs of one day, in spool order."""
        days = self._days
        for number, count in zip(self._run_days, self._run_counts, strict=True):
            yield days[number], count

    def _read(self, segment: tuple[int, int, int, int]) -> bytes:
        offset, count, id_bytes, value_bytes = segment
        self.keys.seek(offset)
        return self.keys.read(id_bytes + count * _KEY_WIDTH + value_bytes)

    def day_keys(self, day: str) -> Iterator[tuple[list[str], Iterator[tuple[int, ...]]]]:
        """`(ids, keys)` of each segment of `day`, in spool order; the keys of each entry
        `(spool offset, content length, input line, spool position)`."""
        for segment in self.segments[day]:
            _, count, id_bytes, _ = segment
            raw = self._read(segment)
            offsets, lines, positions = array(_ARRAY), array(_ARRAY), array(_ARRAY)
            for n, column in enumerate((offsets, lines, positions)):
                at = id_bytes + n * count * _WIDTH
                column.frombytes(raw[at : at + count * _WIDTH])
            at = id_bytes + 3 * count * _WIDTH
            stored = array("I", raw[at : at + 4 * count])  # content + chain suffix - brace
            sizes = map(sub, stored, repeat(chain.SUFFIX_LEN - 1))
            keys = zip(offsets, sizes, lines, positions, strict=True)
            yield raw[:id_bytes].decode().split("\n"), keys

    def day_rows(self, day: str) -> Iterator[tuple[array[int], list[bytes], list[bytes], Any]]:
        """`(stored line lengths, ids, createdAt, index columns)` of the entries of `day` to be
        written (those not in `skip`), a segment at a time, in spool order; the columns in
        `lineindex.FIELDS` order."""
        for segment in self.segments[day]:
            _, count, id_bytes, _ = segment
            raw = self._read(segment)
            at = id_bytes + 2 * count * _WIDTH
            positions, lengths = array(_ARRAY), array("I")
            positions.frombytes(raw[at : at + count * _WIDTH])
            at += count * _WIDTH
            lengths.frombytes(raw[at : at + 4 * count])
            ids = raw[:id_bytes].split(b"\n")
            parts = list(map(orjson.loads, raw[at + 4 * count :].split(b"\n")))
            stamps, *columns = [
                list(concat.from_iterable(map(itemgetter(n), parts))) for n in range(len(_FIELDS))
            ]
            stamps = list(map(str.encode, stamps))
            if self.skip and not self.skip.isdisjoint(positions):
                keep = [n for n, position in enumerate(positions) if position not in self.skip]
                pick = lambda seq, keep=keep: [seq[n] for n in keep]  # noqa: E731
                lengths, ids, stamps = array("I", pick(lengths)), pick(ids), pick(stamps)
                columns = [pick(column) for column in columns]
            yield lengths, ids, stamps, columns


_FIELDS = ("createdAt", *lineindex.FIELDS)
_KEPT = ("id", *_FIELDS)  # the values the plan keeps of each entry
_WIDTH = array(_ARRAY).itemsize
_KEY_WIDTH = 3 * _WIDTH + 4  # spool offset, line, position, stored length


def _next(offset: int, length: int) -> int:
    """The spool offset of the content after one of `length` bytes at `offset`."""
    return offset + length + 1  # and its newline


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
            del lines[0]  # the end of the line already reported
            skipping = False
        elif rest:
            lines[0] = rest + lines[0]
        rest = lines.pop()
        batch: list[bytes | None] = lines  # type: ignore[assignment]
        if lines and max(map(len, lines)) >= MAX_INPUT_LINE:  # rare: looked for in C
            batch = [None if len(line) >= MAX_INPUT_LINE else line for line in lines]
        if len(rest) >= MAX_INPUT_LINE:
            batch.append(None)
            rest, skipping = b"", True
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
        # a None (a line too long) was skipped, not read
        read += sum(map(len, filter(None, batch))) + len(batch) - batch.count(None)
        if progress:
            progress(number, done=read, phase="validating")
        fast = None if None in batch else _canonical_batch(batch, catalog)  # type: ignore[arg-type]
        if fast is not None:
            contents, columns = fast
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
            columns = columns_of(entries)
        stamps = columns["createdAt"]
        if min(stamps)[:10] == max(stamps)[:10]:  # one day: the usual case, input in time order
            offset = spool.tell()
            spool.write(b"\n".join(contents) + b"\n")
            plan.add(stamps[0][:10], columns, contents, lines, offset)
            continue
        by_day: dict[str, list[int]] = {}
        for n, stamp in enumerate(stamps):
            by_day.setdefault(stamp[:10], []).append(n)
        for day, picked in by_day.items():  # spooled in the order the plan numbers them
            day_contents = [contents[n] for n in picked]
            offset = spool.tell()
            spool.write(b"\n".join(day_contents) + b"\n")
            plan.add(
                day,
                {name: [columns[name][n] for n in picked] for name in _KEPT},
                day_contents,
                [lines[n] for n in picked],
                offset,
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
        contents, columns = fast
        return {name: column[0] for name, column in columns.items()}, contents[0]
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
) -> tuple[list[bytes], dict[str, tuple[Any, ...]]] | None:
    """`(contents, columns)` when every line of `raws` is already a complete, canonical,
    valid entry, which is how exports, shippers and `audit query` write them (`columns`: each
    field's values, see `batchcheck.canonical_columns`); None otherwise (the lines then go one
    by one, each through this check alone or the full path).

    Only lines that the full path would accept unchanged are taken, so both give the same
    entries and the same bytes: canonical lines that pass the model's rules
    (`canonical_columns`: so none that `build_entry` would fill is null, and createdAt has the
    stored form), of at most MAX_ENTRY_BYTES, whose createdAt is a real time and whose action
    is in the catalog. Each check runs over the whole batch in C-level passes."""
    got = canonical_columns(raws)
    if got is None:
        return None
    contents, columns = got
    if not set(columns["action"]) <= catalog.actions() or max(map(len, contents)) > MAX_ENTRY_BYTES:
        return None
    try:
        # A real date and time (2026-02-30 is not): `parse_utc` of each, called from C.
        all(map(datetime.fromisoformat, columns["createdAt"]))
    except ValueError:
        return None
    return contents, columns


def _check_days(store: AuditStore, plan: _Plan, spool: IO[bytes], report: ImportReport) -> None:
    """Day by day, before any write: ids repeated in the input (the same content again is a
    duplicate, other content an invalid line) and ids already stored with other content (an
    invalid line). What is not to be written goes to `plan.skip`; a day's keys are dropped
    when it is done. Only the entries of an id seen before are read back from `spool` (its
    writes flushed): their contents are compared, or hashed to compare with a stored one."""

    def content(key: tuple[int, ...]) -> bytes:
        return os.pread(spool.fileno(), key[1], key[0])

    stored_days = set(store.days())
    for day in sorted(plan.segments):
        # id -> (spool offset, content length, line, spool position)
        seen: dict[str, tuple[int, ...]] = {}
        for ids, keys in plan.day_keys(day):
            if len(set(ids)) == len(ids) and seen.keys().isdisjoint(ids):
                seen.update(zip(ids, keys, strict=True))
                plan.last[day] = seen[ids[-1]][3]
                continue
            for entry_id, key in zip(ids, keys, strict=True):
                plan.last[day] = key[3]
                earlier = seen.get(entry_id)
                if earlier is None:
                    seen[entry_id] = key
                    continue
                plan.skip.add(key[3])
                if content(earlier) != content(key):
                    number = key[2]
                    _problem(
                        report,
                        number,
                        f"line {number}: id: {entry_id} appears on line {earlier[2]} "
                        "with different content",
                    )
                else:
                    report.duplicates += 1
        if day not in stored_days:
            continue
        index = IdIndex(store, day)
        index.refresh()
        for entry_id in sorted(index.ids.keys() & seen.keys(), key=seen.__getitem__):
            key = seen[entry_id]
            if index.ids[entry_id] != content_digest(content(key)):
                plan.skip.add(key[3])
                _problem(
                    report,
                    key[2],
                    f"line {key[2]}: id: {entry_id} is already recorded with different content",
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
    wrote: dict[str, list[AppendReport]] = {day: [] for day in plan.last}

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
        if result.duplicates:  # stored meanwhile by another writer: not only our lines
            wrote[day].append(AppendReport(file="", start=-1, end=-1))
        elif result.written:
            wrote[day].append(result)

    def finish(day: str) -> None:
        if day in buffers:
            flush(day)
        indexes.pop(day, None)
        _index_day(store, plan, day, wrote.pop(day))

    def add_run(day: str, run: list[bytes], first: int) -> None:
        """Buffer `run`, spool positions `first`…, of `day`; write what is due."""
        nonlocal buffered
        end = first + len(run)
        if plan.skip and not plan.skip.isdisjoint(range(first, end)):
            run = [line for n, line in enumerate(run, first) if n not in plan.skip]
        if run:
            if day not in buffers:
                buffers[day], sizes[day] = [], 0
            # Every content starts with its id, unescaped (the id rule allows no quote).
            ids = [line[7 : line.index(b'"', 7)].decode() for line in run]
            buffers[day].extend(zip(ids, run, strict=True))
            grown = sum(map(len, run)) + len(run)
            sizes[day] += grown
            buffered += grown
        if plan.last[day] == end - 1:
            finish(day)
        elif day not in sizes:
            return
        elif sizes[day] >= _FLUSH_BYTES:
            flush(day)
        elif buffered >= _MAX_BUFFERED:
            flush(max(sizes, key=sizes.__getitem__))

    size = spool.seek(0, os.SEEK_END)
    spool.seek(0)
    lines = _SpoolLines(spool)
    position = 0
    for day, count in plan.runs():
        for piece in range(0, count, _TAKE):  # a day's run can be the whole day: in pieces
            run = lines.take(min(_TAKE, count - piece))
            add_run(day, run, position)
            position += len(run)
            if progress:
                progress(position, done=lines.done, total=size, phase="writing")
    for day in sorted(buffers):
        finish(day)


class _SpoolLines:
    """The lines of the spool (without newlines), taken a run at a time, read in blocks."""

    def __init__(self, spool: IO[bytes]) -> None:
        self.spool, self.done = spool, 0
        self._lines: list[bytes] = []
        self._at = 0
        self._rest = b""

    def take(self, count: int) -> list[bytes]:
        """The next `count` lines."""
        taken: list[bytes] = []
        while len(taken) < count:
            if self._at == len(self._lines):
                block = self.spool.read(_READ)
                if not block:
                    raise OSError("the import spool ended early")
                self.done += len(block)
                self._lines = (self._rest + block).split(b"\n")
                self._rest = self._lines.pop()
                self._at = 0
            end = min(len(self._lines), self._at + count - len(taken))
            taken.extend(self._lines[self._at : end])
            self._at = end
        return taken


def _index_day(store: AuditStore, plan: _Plan, day: str, wrote: list[AppendReport]) -> None:
    """Write the line index of this writer's files of `day`, so that the first query after
    the import does not build it. A file this import created and alone wrote to (`wrote`: its
    writes, back to back from byte 0) is indexed from the values noted while validating,
    without reading it, provided it is still the file as this import left it (the identity
    of its last write: another file renamed over it, or an edit, is read instead); any other
    is read and indexed (`lineindex.index_file`). Files too small to be indexed are left out,
    as the query engine leaves them out."""
    fresh = (
        not store.redactable  # version 2 lines hold a salt: not the lengths noted
        and len({write.file for write in wrote}) == 1
        and wrote[0].start == 0
        and all(wrote[n].end == wrote[n + 1].start for n in range(len(wrote) - 1))
        and wrote[-1].stat is not None
    )
    last = wrote[-1].stat if fresh else None  # the file as this import's last write left it
    mine = store.writer_id
    for file in store.files(day):
        name = file.path.name
        if file.compressed or (file.segment != mine and not file.segment.startswith(mine + "+")):
            continue
        try:
            fd = _open_in_partition(file.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size < INDEX_MIN_BYTES:
                continue
            ident = lineindex.identity(info)
            if last is not None and name == wrote[0].file and ident == lineindex.identity(last):
                index = lineindex.from_rows(
                    plan.day_rows(day), ident, lineindex.tail_of(fd, info.st_size)
                )
                lineindex.save(store.root, file.partition, name, index)
                continue
        finally:
            os.close(fd)
        lineindex.index_file(store.root, file.partition, name)
