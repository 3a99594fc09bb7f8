"""Bulk import of JSONL in the API's entry format: validate everything first, then append by day."""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from .catalog import Catalog
from .errors import AuditError, InvalidEntryError, NotRecordedError
from .model import (
    MAX_ENTRY_BYTES,
    MAX_METADATA_DEPTH,
    SEED_FIELDS,
    _validate,
    build_entry,
    dumps_entry,
    loads_strict,
)
from .progress import Progress
from .store import AuditStore, IdIndex, content_digest
from .timeparse import normalise_entry_time

#: Called with (phase, bytes of input done); phases are "validating" then "writing".

_FLUSH_BYTES = 4 << 20  # one locked write per day buffer of this size
_MAX_BUFFERED = 32 << 20  # bound on what all day buffers hold together
_MAX_REPORTED = 1000
#: An input line may be this long (a stored entry is at most 64 KiB; JSON escapes and
#: whitespace can make its input form longer).
MAX_INPUT_LINE = 1 << 20


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
    line and no
    `skip_invalid`, InvalidEntryError lists every problem as `line N: field: message` and the
    store is untouched. Entries whose id is already stored with the same content are skipped and
    counted as duplicates (shippers deliver at least once); an id stored with different content
    is an invalid line. Memory stays bounded: validated entries are spooled to an unlinked
    temporary file, then appended day by day in locked, fsynced batches.
    """
    report = ImportReport()
    seen: dict[str, dict[str, tuple[bytes, int]]] = {}  # day -> id -> (digest, line number)
    try:
        with tempfile.TemporaryFile(prefix="audit-import-") as spool:
            _import_spooled(store, source, spool, seen, report, skip_invalid, progress)
    except OSError as exc:  # the input or the spool (in TMPDIR) failed, not the store
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


def _import_spooled(
    store: AuditStore,
    source: IO[bytes],
    spool: IO[bytes],
    seen: dict[str, dict[str, tuple[bytes, int]]],
    report: ImportReport,
    skip_invalid: bool,
    progress: Progress | None,
) -> None:
    _validate_into(store, source, spool, seen, report, progress)
    rejected = _check_stored_ids(store, seen, report)
    seen.clear()
    if report.invalid and not skip_invalid:
        raise InvalidEntryError(
            f"{report.invalid} invalid line(s); nothing was written", report.problems
        )
    spool.seek(0)
    _write_spooled(store, spool, rejected, report, progress)


def _input_lines(source: IO[bytes]) -> Iterator[bytes | None]:
    """The lines of `source`, None for one longer than MAX_INPUT_LINE: a hostile input without
    newlines must not be read into memory whole; its bytes are skipped, not kept."""
    while raw := source.readline(MAX_INPUT_LINE):
        if len(raw) == MAX_INPUT_LINE and not raw.endswith(b"\n"):
            while (rest := source.readline(MAX_INPUT_LINE)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield raw


def _problem(report: ImportReport, message: str, *, new_line: bool = True) -> None:
    """Note a problem; `new_line=False` for a further problem of a line already counted, so
    `invalid` counts lines, not problems."""
    if new_line:
        report.invalid += 1
    if len(report.problems) < _MAX_REPORTED:
        report.problems.append(message)
    elif len(report.problems) == _MAX_REPORTED:
        report.problems.append("… further problems not listed")


def _validate_into(
    store: AuditStore,
    source: IO[bytes],
    spool: IO[bytes],
    seen: dict[str, dict[str, tuple[bytes, int]]],
    report: ImportReport,
    progress: Progress | None,
) -> None:
    catalog, clock = store.catalog, store.clock
    out: list[bytes] = []
    read = 0
    occurrences: dict[bytes, int] = {}  # id-less objects seen so far -> how many times
    for number, raw in enumerate(_input_lines(source), 1):
        report.lines = number
        if raw is None:
            _problem(report, f"line {number}: longer than {MAX_INPUT_LINE >> 20} MiB; not read")
            continue
        read += len(raw)
        if progress:
            progress(number, done=read, phase="validating")
        if not raw.strip():
            _problem(report, f"line {number}: empty line")
            continue
        fast = _canonical_entry(raw, catalog)
        try:
            if fast is not None:
                entry, content = fast
            else:
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
                entry = build_entry(data, catalog, clock=clock)
                content = dumps_entry(entry)
        except InvalidEntryError as exc:
            for n, text in enumerate(exc.problems):
                _problem(report, f"line {number}: {text}", new_line=n == 0)
            continue
        except ValueError as exc:
            _problem(report, f"line {number}: {exc}")
            continue
        day_ids = seen.setdefault(entry["createdAt"][:10], {})
        digest = content_digest(content)
        earlier = day_ids.get(entry["id"])
        if earlier is not None:
            if earlier[0] != digest:
                _problem(
                    report,
                    f"line {number}: id: {entry['id']} appears on line {earlier[1]} "
                    "with different content",
                )
            else:
                report.duplicates += 1
            continue
        day_ids[entry["id"]] = (digest, number)
        out.append(content)
        if len(out) >= 4096:
            spool.write(b"\n".join(out) + b"\n")
            out.clear()
    if out:
        spool.write(b"\n".join(out) + b"\n")
    if report.lines == 0:
        _problem(report, "input: no entries (the input is empty)")


def _canonical_entry(raw: bytes, catalog: Catalog) -> tuple[dict[str, Any], bytes] | None:
    """`(entry, content)` for a line that is already a complete, canonical, valid entry, which is
    how exports, shippers and `audit query` write them; None for anything else, which takes the
    full path (`loads_strict`, `build_entry`, `dumps_entry`).

    Only lines that the full path would accept unchanged are taken here, so both give the same
    entry and the same bytes: the JSON is compact and round-trips (what `loads_strict` checks
    first), the 13 entry fields are present in the API's order, none that `build_entry` would
    fill is null, createdAt is already canonical, the action is in the catalog, metadata cannot
    nest too deep (few brackets in the whole line), and the same pydantic validator passes. What
    this skips is Python work per entry: the parse-dump round trip and validation remain."""
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    content = raw.strip()
    if type(entry) is not dict or tuple(entry) != SEED_FIELDS:
        return None
    try:
        if orjson.dumps(entry) != content:
            return None
    except orjson.JSONEncodeError:
        return None
    created, action = entry["createdAt"], entry["action"]
    if (
        entry["id"] is None
        or entry["description"] is None
        or entry["actionDisplayName"] is None
        or entry["target"] is None
        or entry["targetId"] is None
        or type(created) is not str
        or type(action) is not str
        or action not in catalog
        or len(content) > MAX_ENTRY_BYTES
        or content.count(b"{") + content.count(b"[") > MAX_METADATA_DEPTH + 1
    ):
        return None
    try:
        if normalise_entry_time(created) != created:  # already canonical, a real date
            return None
        _validate(entry)
    except ValueError:  # pydantic's ValidationError is a ValueError
        return None
    return entry, content


def _check_stored_ids(
    store: AuditStore,
    seen: dict[str, dict[str, tuple[bytes, int]]],
    report: ImportReport,
) -> set[str]:
    """Report lines whose id is already stored with other content, before any write; returns
    those ids so that `--skip-invalid` leaves them out."""
    rejected: set[str] = set()
    existing = set(store.days())
    for day, ids in seen.items():
        if day not in existing:
            continue
        index = IdIndex(store, day)
        index.refresh()
        for entry_id, (digest, number) in ids.items():
            stored = index.ids.get(entry_id)
            if stored is not None and stored != digest:
                rejected.add(entry_id)
                _problem(
                    report,
                    f"line {number}: id: {entry_id} is already recorded with different content",
                )
    return rejected


def _write_spooled(
    store: AuditStore,
    spool: IO[bytes],
    rejected: set[str],
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
            index = indexes[day] = IdIndex(store, day)
        try:
            result = store.append_contents(day, items, known_ids=index)
        except AuditError as exc:  # earlier batches are durable: say how many, and what next
            written = f"{report.written} of {report.lines} input line(s) were written before"
            raise type(exc)(f"{exc}; {written} this batch ({report.rerun_advice()})") from None
        report.written += result.written
        report.duplicates += result.duplicates

    size = spool.seek(0, 2)
    spool.seek(0)
    done = 0
    for number, line in enumerate(spool, 1):
        content = line[:-1]
        created_day = content[-26:-16].decode()
        entry_id = content[7 : content.index(b'"', 7)].decode()
        done += len(line)
        if progress:
            progress(number, done=done, total=size, phase="writing")
        if entry_id in rejected:
            continue
        if created_day not in buffers:
            buffers[created_day], sizes[created_day] = [], 0
        buffers[created_day].append((entry_id, content))
        sizes[created_day] += len(line)
        buffered += len(line)
        if sizes[created_day] >= _FLUSH_BYTES:
            flush(created_day)
        elif buffered >= _MAX_BUFFERED:
            flush(max(sizes, key=sizes.__getitem__))
    for day in sorted(buffers):
        flush(day)
