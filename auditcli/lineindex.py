"""Line indexes: derived sidecar files that answer a query about a settled log file without
scanning it.

An index describes one plain log file: where each line starts; for each filter field (actorId,
action, target, targetId, organizationId, teamId) a small code per line, with each code's value
and count; and whether the lines are already in result order (createdAt, then id). It lives in
`LOGDIR/_index/date=YYYY-MM-DD/<file name>.idx` (the underscore hides it from DuckDB and co.).

A rotated file (gzip, see `gzmembers`) is indexed by its decompressed lines, and its index also
lists where each gzip member starts in the file and in the decompressed stream, so the lines
an answer needs are read by inflating only the members that hold them. Rotation writes that
index as it compresses the day (no cold rebuild afterwards).

It is derived data, never evidence: deleting `_index/` loses nothing, and whoever can write
the log directory can forge it. It is used only while the file is as it was indexed: device,
inode, size, mtime and ctime are recorded (any write, truncation, replacement or chmod changes
one of them), and so are the file's last bytes (its last chain link), which bind the index to
the content. Every line an index selects is checked against the filter by the query engine
before it is returned (a disagreement is reported and the file scanned), unless the index's
bytes are ones this user vouched for (`trust`: `save` vouches for what it writes, `audit
verify` for what it finds equal to a rebuild; `vouched_for`). `audit verify` rebuilds every
index the engine would use and reports any that differs (`integrity/indexes.py`). Index files
are read, written and removed through directory descriptors, never through a symlink, with a
bounded header. A file is indexed only when every line has the stored shape and is canonical
JSON in the API's field order, so a code says exactly what the byte-level matcher of `query`
would say about the line. A file with any other line gets a small "not indexable" marker (same
identity rules) and is scanned as before, which reports its problems.

The query engine writes an index the first time it reads a file of a past day (UTC); today's
files are still being appended to and are always scanned. `audit import` writes the index of
each file it wrote as soon as it has written the file's day (`from_rows`, from the values it
validated, for a file it created; `index_file` otherwise), so the first query after an import
builds nothing; `from_lines` is for any other writer that holds a file's lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, compress, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from . import chain, gzmembers, trust
from .lines import LineSplitter
from .outfile import process_alive
from .safeio import (
    INDEX_HEADER_MAX,
    make_dirs,
    open_dir,
    open_dir_at,
    open_file,
    write_atomic_at,
)

INDEX_DIR = "_index"
#: The auditor's checkpoints and per-target indexes, under INDEX_DIR (auditcli.auditor).
CHECKPOINT_DIR = "auditor"
FIELDS = ("actorId", "action", "target", "targetId", "organizationId", "teamId")
KEY_ORDER = chain.SEED_FIELDS
_MAGIC = b"AUDITIDX3\n"  # the format version: another version is rebuilt
_HEADER_AT = len(_MAGIC) + 4
_READ_BLOCK = 4 << 20
_DENSE = 16  # a selection of more than 1/16 of the lines reads the whole file
_WHOLE_FILE_MAX = 32 << 20  # larger files are read a line at a time, never held whole
_ONE_READ = 4 << 20  # an index file up to this size is read with one read
_PARTIAL_SLACK = 4 << 10  # a gzip member first read stops this far past the line wanted
_BATCH = 2048  # lines parsed per batch while building (bounds memory on huge files)
_SUFFIX = chain.SUFFIX_LEN
_HEAD = chain.SUFFIX_HEAD
_ID_START = b'{"id":"'
# createdAt of a line *without* its newline (chain's offsets count the newline)
_CS, _CE = chain.CREATED_START + 1, chain.CREATED_END + 1
_STAMP = _CE - _CS  # bytes of a stored createdAt

Identity = tuple[int, int, int, int, int]


def identity(info: os.stat_result) -> Identity:
    """What must not change for an index to stay valid: device, inode, size, mtime, ctime."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


#: How many of a file's last bytes an index records: the last line's chain link and end.
TAIL_BYTES = chain.SUFFIX_LEN


def tail_of(fd: int, size: int) -> bytes:
    """The last TAIL_BYTES bytes of the open file `fd` of `size` bytes (what binds an index)."""
    count = min(size, TAIL_BYTES)
    return os.pread(fd, count, size - count) if count else b""


def index_path(root: Path, partition: str, file_name: str) -> Path:
    """Where the index of `partition/file_name` lives."""
    return root / INDEX_DIR / partition / (file_name + ".idx")


class Column:
    """One field's code per line, with each code's value and number of lines."""

    # A plain class, not a dataclass: this module is imported by every query (start-up time).
    __slots__ = ("_lookup", "codes", "counts", "values", "width")

    def __init__(self, values: list[Any], counts: list[int], codes: bytes, width: int) -> None:
        self.values, self.counts, self.width = values, counts, width
        self.codes = codes  # `width` bytes per line, native byte order
        self._lookup: dict[Any, int] | None = None

    def codes_of(self, wanted: Iterable[str]) -> list[int]:
        """The codes of the wanted values that occur in the file (none: no line matches)."""
        if self._lookup is None:
            self._lookup = {value: code for code, value in enumerate(self.values)}
        lookup = self._lookup
        return sorted({lookup[value] for value in wanted if value in lookup})

    def total(self, codes: Sequence[int]) -> int:
        """How many lines have one of `codes`."""
        return sum(self.counts[code] for code in codes)

    def code_list(self) -> Sequence[int]:
        """The code of every line, indexable by line number."""
        if self.width == 1:
            return self.codes
        return memoryview(self.codes).cast("H" if self.width == 2 else "I")

    def lines(self, codes: Sequence[int]) -> list[int]:
        """The line numbers (ascending) whose value has one of `codes`."""
        hits = self.total(codes)
        if not hits:
            return []
        sparse = hits * 8 <= len(self.codes) // self.width
        if self.width > 1:
            column = self.code_list()
            if len(codes) == 1 and sparse:  # a find per hit
                return _find_all(self.codes, codes[0].to_bytes(self.width, sys.byteorder))
            wanted = frozenset(codes)
            return list(compress(range(len(column)), map(wanted.__contains__, column)))
        # One-byte codes: the wanted ones map to 1, every other to 0, and the lines with a 1
        # are found in C (a Python step per hit, or per line, costs several times more).
        if sparse and len(codes) == 1:
            column, wanted_code = self.codes, bytes(codes)  # no mapping needed for one code
        else:
            table = bytearray(256)
            for code in codes:
                table[code] = 1
            column, wanted_code = self.codes.translate(table), b"\x01"
        if not sparse:
            return list(compress(range(len(column)), column))
        # Few hits: where the pieces between them end (a step per line costs more).
        lengths = list(map(len, column.split(wanted_code)))
        return list(accumulate(map((1).__add__, lengths[1:-1]), initial=lengths[0]))


def _find_all(column: bytes, needle: bytes) -> list[int]:
    """The line numbers whose code (`len(needle)` bytes per line) is `needle`; a match that
    straddles two lines' codes is not one."""
    width, found, find = len(needle), [], column.find
    at = find(needle)
    while at >= 0:
        if at % width:
            at = find(needle, at + 1)
            continue
        found.append(at // width)
        at = find(needle, at + width)
    return found


class LineIndex:
    """The index of one file (or, with `usable` false, the marker of a file not indexable).

    `order` lists the line numbers in result order (createdAt, then id, as query.sort_key) and
    `rank` is its inverse; both are empty when the file is already in that order (`ordered`).
    `ties`: two lines have the same (createdAt, id), so a stable sort keeps their file order.
    `members` (gzip files only): where each gzip member starts in the file and in the
    decompressed stream, each list ending with the file's size and the stream's."""

    __slots__ = (
        "blocks",
        "built",
        "columns",
        "first",
        "ident",
        "last",
        "lines",
        "members",
        "offsets",
        "order",
        "ordered",
        "rank",
        "raw",
        "source",
        "tail",
        "ties",
        "usable",
    )

    def __init__(
        self,
        ident: Identity,
        usable: bool,
        lines: int = 0,
        ordered: bool = True,
        offsets: Sequence[int] = (),
        columns: dict[str, Column] | None = None,
        order: Sequence[int] = (),
        rank: Sequence[int] = (),
        ties: bool = False,
    ) -> None:
        self.ident, self.usable, self.lines, self.ordered = ident, usable, lines, ordered
        self.offsets, self.columns = offsets, columns or {}
        self.order, self.rank, self.ties = order, rank, ties
        #: The file's last bytes when indexed (see `tail_of`).
        self.tail = b""
        #: The earliest and latest createdAt (stored bytes): bounds outside them are no-ops.
        self.first = self.last = b""
        self.members: tuple[Sequence[int], Sequence[int]] | None = None
        #: Whether some line may hold a chain version 2 commitment block (see
        #: `chain.content_of`): its entry's JSON is then not simply the line less its suffix.
        self.blocks = True
        #: Made by this process from its file's lines (`build`), not read from an index file.
        self.built = False
        #: The index file's bytes when `load` read it whole (for `vouched_for`).
        self.raw: bytes | None = None
        #: The identity of the index file `raw` was read from, the same before and after.
        self.source: Identity | None = None

    # ------------------------------------------------------------------ selection
    def select(
        self,
        by_field: dict[str, tuple[str, ...]],
        since: bytes | None,
        until: bytes | None,
        data: Any,
    ) -> Sequence[int]:
        """The line numbers, in result order (createdAt, then id, ascending), that match the
        equality filters `by_field` (JSON field name -> accepted values) and the inclusive
        createdAt bounds, exactly as the query matcher decides. `data` (the file's bytes) is
        read only for time bounds."""
        chosen: list[tuple[int, str, list[int]]] = []
        for name, values in by_field.items():
            column = self.columns[name]
            codes = column.codes_of(values)
            if not codes:
                return []
            chosen.append((column.total(codes), name, codes))
        chosen.sort()
        in_order = self.order if not self.ordered else range(self.lines)
        if since is not None or until is not None:
            low, high = self._bounds(since, until, data)
            in_order = in_order[low:high]
        else:
            low, high = 0, self.lines
        if not chosen:
            return in_order
        hits, name, codes = chosen[0]
        if hits * 8 > len(in_order):
            # Dense: walk the lines in result order and test each one's code.
            code_of, wanted = self.columns[name].code_list(), set(codes)
            if len(wanted) == 1:
                (only,) = wanted
                selected = [n for n in in_order if code_of[n] == only]
            else:
                selected = [n for n in in_order if code_of[n] in wanted]
        else:
            # Sparse: find the few lines by code, then put them in result order.
            selected = self.columns[name].lines(codes)
            if self.ordered:  # line numbers are positions in result order
                if low or high < self.lines:
                    selected = selected[bisect_left(selected, low) : bisect_left(selected, high)]
            else:
                rank = self.rank
                if low or high < self.lines:
                    selected = [n for n in selected if low <= rank[n] < high]
                selected.sort(key=rank.__getitem__)
        for _, name, codes in chosen[1:]:
            code_of, wanted = self.columns[name].code_list(), set(codes)
            selected = [n for n in selected if code_of[n] in wanted]
        return selected

    def count(
        self,
        by_field: dict[str, tuple[str, ...]],
        since: bytes | None,
        until: bytes | None,
        data_for: Any,
    ) -> int:
        """How many lines `select` would return; from the counts alone when no time bound and
        at most one field is filtered. `data_for()` opens the file's bytes when needed."""
        if since is None and until is None:
            if not by_field:
                return self.lines
            if len(by_field) == 1:
                ((name, values),) = by_field.items()
                column = self.columns[name]
                return column.total(column.codes_of(values))
        return len(self.select(by_field, since, until, data_for()))

    def key_counts(
        self,
        fields: Sequence[str],
        by_field: dict[str, tuple[str, ...]],
        since: bytes | None,
        until: bytes | None,
        data_for: Any,
    ) -> Counter[tuple[bytes, ...]]:
        """How many selected lines have each combination of values of `fields`, the values as
        their JSON bytes (as they appear in the lines); from the counts alone when nothing is
        filtered and one field is asked for."""
        columns = [self.columns[name] for name in fields]
        as_json = [[orjson.dumps(value) for value in column.values] for column in columns]
        if not by_field and since is None and until is None and len(columns) == 1:
            (column,), (values,) = columns, as_json
            return Counter({(values[c],): n for c, n in enumerate(column.counts) if n})
        selected = self.select(by_field, since, until, data_for())
        codes = [map(column.code_list().__getitem__, selected) for column in columns]
        return Counter(
            {
                tuple(values[c] for values, c in zip(as_json, combination, strict=True)): n
                for combination, n in Counter(zip(*codes, strict=True)).items()
            }
        )

    def _bounds(self, since: bytes | None, until: bytes | None, data: Any) -> tuple[int, int]:
        """Positions in result order of the first line at or after `since` and the first line
        after `until`: two binary searches on the stored createdAt bytes."""
        offsets, order, ordered = self.offsets, self.order, self.ordered

        def created(position: int) -> bytes:
            end = offsets[(position if ordered else order[position]) + 1]
            return data[end + chain.CREATED_START : end + chain.CREATED_END]

        positions = range(self.lines)
        low = bisect_left(positions, since, key=created) if since is not None else 0
        high = bisect_right(positions, until, key=created) if until is not None else self.lines
        return low, max(low, high)

    def checked_lines(
        self,
        selected: Sequence[int],
        source: FileBytes | GzipBytes,
        accept: Callable[[list[bytes]], bool],
    ) -> list[bytes] | None:
        """The lines numbered `selected` (as `lines_at`), or None when one is not a whole
        line of the file (the byte before it is not a newline, or it holds more than one) or
        `accept(lines)` is false: the index does not describe the file."""
        starts, ends, data = self._spans(selected, source)
        if isinstance(data, bytearray):
            before = [start - 1 for start in starts if start]
            if before and bytes(map(data.__getitem__, before)).count(b"\n") != len(before):
                return None
            found = _slice_lines(data, starts, ends)
        else:
            found = []
            for start, end in zip(starts, ends, strict=True):
                line = data[start - 1 : end] if start else b"\n" + data[0:end]
                if line[:1] != b"\n":
                    return None
                found.append(line[1:])
        # Each holds one newline, its last byte: one whole line.
        if sum(map(bytes.count, found, repeat(b"\n"))) != len(found):
            return None
        if not all(map(bytes.endswith, found, repeat(b"\n"))) or not accept(found):
            return None
        return found

    def lines_at(self, selected: Sequence[int], source: FileBytes | GzipBytes) -> list[bytes]:
        """The lines numbered `selected` (newline included), as the offsets place them, with
        none of the checks of `checked_lines`: for an index vouched for (`trust`)."""
        starts, ends, data = self._spans(selected, source)
        return _slice_lines(data, starts, ends)

    def contents_block(self, selected: Sequence[int], source: FileBytes | GzipBytes) -> bytes:
        """JSONL of the entries on lines `selected` (each line's `chain.content_of`), in that
        order, unchecked as `lines_at`: from a whole file's buffer, one copy of each entry, or
        a few entries read from the file with one `pread` each, less their chain suffix."""
        starts, ends, data = self._spans(selected, source)
        if self.blocks or isinstance(data, GzipBytes):
            return joined_lines(chain.contents_of(_slice_lines(data, starts, ends)), b"\n")
        # Each entry is its line up to its chain suffix, then "}".
        cuts = list(map(int.__sub__, ends, repeat(_SUFFIX)))
        if isinstance(data, FileBytes):
            return joined_lines(_slice_lines(data, starts, cuts), b"}\n")
        with memoryview(data) as view:
            parts = list(map(view.__getitem__, map(slice, starts, cuts)))
            block = joined_lines(parts, b"}\n")
            del parts  # the views hold the buffer until they are gone
            return block

    def _spans(
        self, selected: Sequence[int], source: FileBytes | GzipBytes
    ) -> tuple[Sequence[int], Sequence[int], FileBytes | GzipBytes | bytearray]:
        """Where the lines numbered `selected` start and end, and what to read them from (the
        whole file's buffer when they are many)."""
        offsets = self.offsets
        starts = _pick(offsets, selected)
        with memoryview(offsets) as view, view[1:] as following:  # type: ignore[arg-type]
            ends = _pick(following, selected)  # offsets[n + 1], with no n + 1 made
        data = source.for_lines(len(selected) * _DENSE > self.lines)
        if isinstance(data, GzipBytes):
            data.expect(ends)
        return starts, ends, data

    # ------------------------------------------------------------------ file form
    def to_bytes(self) -> bytes:
        """The index file's content."""
        header: dict[str, Any] = {
            "identity": list(self.ident),
            "tail": self.tail.hex(),
            "usable": self.usable,
            "byteorder": sys.byteorder,
        }
        body: list[bytes] = []
        if self.usable:
            kind = "Q" if self.offsets[-1] >= 1 << 32 else "I"
            header.update(
                lines=self.lines,
                ordered=self.ordered,
                ties=self.ties,
                blocks=self.blocks,
                span=[self.first.decode("latin-1"), self.last.decode("latin-1")],
            )
            arrays = {"offsets": array(kind, self.offsets).tobytes()}
            if not self.ordered:
                arrays["order"] = array("I", self.order).tobytes()
                arrays["rank"] = array("I", self.rank).tobytes()
            at = 0
            kinds = {"offsets": kind}
            if self.members is not None:
                packed, plain = self.members
                arrays["packed"] = array("Q", packed).tobytes()
                arrays["unpacked"] = array("Q", plain).tobytes()
                kinds["packed"] = kinds["unpacked"] = "Q"
                header["members"] = len(packed) - 1
            for name, data in arrays.items():
                header[name] = [at, kinds.get(name, "I")]
                body.append(data)
                at += len(data)
            columns = {}
            for name, column in self.columns.items():
                columns[name] = {
                    "values": column.values,
                    "counts": column.counts,
                    "at": at,
                    "width": column.width,
                }
                body.append(column.codes)
                at += len(column.codes)
            header["columns"] = columns
        head = orjson.dumps(header)
        return _MAGIC + len(head).to_bytes(4, "little") + head + b"".join(body)


def _pick(values: Sequence[int], positions: Sequence[int]) -> list[int] | tuple[int, ...]:
    """`values[n]` for each `n` of `positions`, in one C call when there are several (a map
    over `__getitem__` costs an iterator step more per value)."""
    if len(positions) > 1:
        picked: tuple[int, ...] = itemgetter(*positions)(values)
        return picked
    return [values[n] for n in positions]


def joined_lines(parts: list[Any], end: bytes) -> bytes:
    """`parts` (bytes-like), each followed by `end`, in one join with no copy after it (an
    empty part is appended to `parts` for the last `end`)."""
    if parts:
        parts.append(b"")
    return end.join(parts)


def _slice_lines(
    data: FileBytes | GzipBytes | bytearray, starts: Sequence[int], ends: Sequence[int]
) -> list[bytes]:
    """The bytes from each of `starts` to the matching end: from a buffer, one copy each; from
    the file, one `pread` each (ValueError when the file is shorter than that now)."""
    if isinstance(data, bytearray):
        with memoryview(data) as view:
            return list(map(bytes, map(view.__getitem__, map(slice, starts, ends))))
    if isinstance(data, FileBytes):
        found = list(map(os.pread, repeat(data.fd), map(int.__sub__, ends, starts), starts))
    else:
        found = list(map(data.__getitem__, map(slice, starts, ends)))
    if sum(map(len, found)) != sum(ends) - sum(starts):
        raise ValueError("the file is shorter than its index says")
    return found


class FileBytes:
    """The bytes of an open log file, read by line position: a few lines with one pread each,
    many by reading the whole file once into a buffer the caller reuses. (Mapping the file
    costs a page fault per page touched and a teardown, which on a VM is slower than both.)"""

    __slots__ = ("buffer", "fd", "loaded", "size")

    def __init__(self, fd: int, size: int, buffer: bytearray) -> None:
        self.fd, self.size, self.buffer, self.loaded = fd, size, buffer, False

    def __getitem__(self, span: slice) -> bytes:
        return os.pread(self.fd, span.stop - span.start, span.start)

    def for_lines(self, many: bool) -> FileBytes | bytearray:
        """Something to slice lines from: the buffer holding the whole file when `many` lines
        are wanted (and the file is not huge), else this reader."""
        if not many or self.size > _WHOLE_FILE_MAX:
            return self
        if not self.loaded:
            if len(self.buffer) < self.size:
                self.buffer.extend(bytes(self.size - len(self.buffer)))
            with memoryview(self.buffer) as view:
                done = 0
                while done < self.size:
                    got = os.preadv(self.fd, [view[done : self.size]], done)
                    if got <= 0:
                        raise OSError("the file shrank while it was read")
                    done += got
            self.loaded = True
        return self.buffer


class _MemberCache:
    """Inflated members kept across queries of one process (the HTTP server pages through the
    same recent days again and again), least recently used first out, within a byte budget:
    by default only what the lines of one read revisit (a file not in result order goes back
    and forth between nearby members), since a one-shot command never rereads a day; a
    server asks for more (`keep_inflated_members`). A member is keyed by its file's identity
    and its place and size, exactly as it was checked: a file changed in any way, or an index
    saying anything else, never hits."""

    BUDGET = 4 << 20

    def __init__(self) -> None:
        self.members: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self.held = 0
        self.budget = self.BUDGET
        self.lock = threading.Lock()  # the server reads from several threads

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self.lock:
            data = self.members.get(key)
            if data is not None:
                self.members.move_to_end(key)
            return data

    def put(self, key: tuple[Any, ...], data: bytes) -> None:
        if len(data) > self.budget:
            return
        with self.lock:
            held = self.members.get(key, b"")
            if len(held) >= len(data):
                return  # another thread inflated as much or more meanwhile
            self.held += len(data) - len(held)
            self.members[key] = data
            self.members.move_to_end(key)
            self._shrink()

    def resize(self, budget: int) -> None:
        """Keep at most `budget` bytes from now on."""
        with self.lock:
            self.budget = budget
            self._shrink()

    def _shrink(self) -> None:
        while self.held > self.budget:
            self.held -= len(self.members.popitem(last=False)[1])


_members_inflated = _MemberCache()


#: Member tables found seekable or not (GzipBytes.seekable), at most _SEEKABLE_TABLES.
_seekable_tables: dict[tuple[Any, ...], bool] = {}
_SEEKABLE_TABLES = 4096


def _table_bytes(column: Sequence[int]) -> bytes:
    """The values of `column` as 8-byte integers (the same bytes only for the same values)."""
    if isinstance(column, array) and column.typecode == "Q":
        return column.tobytes()
    return array("Q", column).tobytes()


def keep_inflated_members(budget: int) -> None:
    """Keep up to `budget` bytes of inflated gzip members across the queries of this process
    (what a long-running server wants: it pages through the same recent days again and
    again) instead of the default few MiB."""
    _members_inflated.resize(budget)


class GzipBytes:
    """The decompressed bytes of an open gzip log file, read by position like FileBytes: a few
    lines inflate only the members holding them, as far as needed (kept in a small cache of the
    process), many the whole stream into the caller's buffer. A member inflated to its end is
    checked to end where the index says and to hold what it says, and the whole stream to be
    the members the index lists (else gzmembers.GzipError, a ValueError to the caller's
    checks)."""

    __slots__ = (
        "_held",
        "_seekable",
        "buffer",
        "fd",
        "ident",
        "loaded",
        "packed",
        "plain",
        "wanted",
    )

    def __init__(
        self,
        fd: int,
        members: tuple[Sequence[int], Sequence[int]],
        buffer: bytearray,
        ident: Identity,
    ) -> None:
        self.fd, self.buffer, self.loaded, self.ident = fd, buffer, False, ident
        self.packed, self.plain = members
        self.wanted: dict[int, int] = {}  # member -> how far the coming reads go into it
        self._seekable: bool | None = None
        # The last member read, (where it starts in the stream, its inflated bytes): lines in
        # result order mostly follow each other, so most reads are served from it directly.
        self._held: tuple[int, bytes] = (0, b"")

    @property
    def seekable(self) -> bool:
        """Whether the members are small enough to inflate one by one (an old one-member
        archive is not), and in order."""
        if self._seekable is None:
            # A server checks the same tables again and again: each verdict is remembered for
            # the exact table it was given (bytes of both columns, and the file's identity).
            limit = gzmembers.SEEKABLE_MAX
            key = (self.ident, limit, _table_bytes(self.packed), _table_bytes(self.plain))
            verdict = _seekable_tables.get(key)
            if verdict is None:
                plain, starts = self.plain, self.packed
                sizes = list(map(int.__sub__, islice(plain, 1, None), plain))
                verdict = (
                    max(sizes, default=0) <= limit
                    and min(sizes, default=0) >= 0
                    and all(map(int.__lt__, starts, islice(starts, 1, None)))
                )
                if len(_seekable_tables) >= _SEEKABLE_TABLES:
                    _seekable_tables.clear()
                _seekable_tables[key] = verdict
            self._seekable = verdict
        return self._seekable

    @property
    def size(self) -> int:
        """Bytes of the decompressed stream."""
        return self.plain[-1]

    def __getitem__(self, span: slice) -> bytes:
        start, stop = span.start, span.stop
        base, held = self._held
        if base <= start <= stop <= base + len(held):
            return held[start - base : stop - base]
        if self.loaded or not self.seekable:
            return bytes(self._whole()[start:stop])
        if not 0 <= start <= stop <= self.size:
            raise IndexError("outside the file")
        plain = self.plain
        first = bisect_right(plain, start) - 1
        last = max(first, bisect_left(plain, stop) - 1)
        parts = [self._member(n, plain[n + 1] - plain[n]) for n in range(first, last)]
        parts.append(self._member(last, stop - plain[last]))
        self._held = (plain[last], parts[-1])
        joined = parts[0] if len(parts) == 1 else b"".join(parts)
        base = plain[first]
        return joined[start - base : stop - base]

    def expect(self, ends: Iterable[int]) -> None:
        """Note where the lines about to be read end, so that each member is inflated once,
        as far as the furthest of them."""
        plain, wanted = self.plain, self.wanted
        for end in ends:
            n = bisect_left(plain, end) - 1
            if end - plain[n] > wanted.get(n, 0):
                wanted[n] = end - plain[n]

    def for_lines(self, many: bool) -> GzipBytes | bytearray:
        """Something to slice lines from: the whole stream when `many` lines are wanted (and
        it is not huge) or members cannot be inflated one by one, else this reader."""
        if self.seekable and (not many or self.size > _WHOLE_FILE_MAX):
            return self
        return self._whole()

    def _whole(self) -> bytearray:
        if not self.loaded:
            if self.size > _WHOLE_FILE_MAX:
                raise NotSeekable
            del self.buffer[:]
            if self.seekable:
                # Each member where the index says, checked to end there and to hold what it
                # says: together, the whole file.
                for member in gzmembers.inflate_members(self.fd, self.packed, self.plain):
                    self.buffer += member
            else:
                inflater = gzmembers.Inflater(self.fd, self.packed[-1])
                for block in inflater.blocks():
                    self.buffer += block
                found = [*inflater.members, (self.packed[-1], len(self.buffer))]
                if inflater.trailing or found != list(zip(self.packed, self.plain, strict=True)):
                    raise gzmembers.GzipError("the members are not where the index says")
            self.loaded = True
        return self.buffer

    def _member(self, n: int, need: int) -> bytes:
        """Member `n`, inflated at least up to its first `need` bytes: a first read stops a
        little past them (a line early in a member costs a fraction of it), a read further on
        inflates the whole member (so a member read line by line costs at most ~1.25 times)."""
        start, end, size = self.packed[n], self.packed[n + 1], self.plain[n + 1] - self.plain[n]
        need = max(need, self.wanted.get(n, 0))
        key = (self.ident, start, end, size)
        data = _members_inflated.get(key)
        if data is None or len(data) < need:
            upto = None if data is not None else need + _PARTIAL_SLACK
            data = gzmembers.inflate_member(self.fd, start, end, size, upto)
            _members_inflated.put(key, data)
        return data


class NotSeekable(Exception):
    """A gzip file too big to inflate whole whose members cannot be inflated one by one: its
    lines are read by the ordinary scan (nothing is wrong with it)."""


def file_bytes(index: LineIndex, fd: int, size: int, buffer: bytearray) -> FileBytes | GzipBytes:
    """The reader of the lines of the file `fd` (`size` bytes) that `index` describes."""
    if index.members is not None:
        return GzipBytes(fd, index.members, buffer, index.ident)
    return FileBytes(fd, size, buffer)


# ---------------------------------------------------------------------- reading an index
def load(
    root: Path, partition: str, file_name: str, ident: Identity, tail: bytes, fields: Iterable[str]
) -> LineIndex | None:
    """The index of `partition/file_name` if it was made for a file of identity `ident` ending
    with `tail`, with the columns of `fields` read; None when it is missing, stale, unreadable,
    not a regular file, behind a symlink or with a header over INDEX_HEADER_MAX (the caller
    scans). An index file no bigger than one of its lines can be is read whole, with one read,
    and its bytes are kept for `vouched_for`."""
    gzipped = file_name.endswith(".gz")

    def read(fd: int, info: os.stat_result) -> LineIndex | None:
        index = _read(
            lambda size, at: os.pread(fd, size, at), ident, tail, fields, gzipped, info.st_size
        )
        if index is not None and index.raw is not None:
            # What was read is what the file of this identity holds (see `vouched_for`), and
            # keeps holding while it has it: unless someone else can write the file, as bytes
            # written through a shared mapping after its first write leave the ctime alone.
            same = identity(os.fstat(fd)) == identity(info)
            index.source = identity(info) if same and private(info) else None
        return index

    return _with_index_file(root, partition, file_name, read)


def private(info: os.stat_result) -> bool:
    """Whether only this user can write the file of `info`, so that its identity shows every
    change to its bytes: bytes someone else writes through a shared mapping after their first
    write to a page leave its mtime and ctime alone until the kernel writes the page back."""
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


def vouched_for(index: LineIndex) -> bool:
    """Whether `index` was built by this process (`build`) or loaded from bytes (`load`, read
    whole) that this user vouched for (`trust`): built from the file, or checked against it.
    Such an index says what the file says, so its lines need no per-line check. An index file
    found vouched for is remembered by its identity, and not hashed again while it keeps it."""
    if index.built:
        return True
    if index.raw is None:
        return False
    if index.source is not None and trust.vouched_file(index.source):
        return True
    if not trust.vouched(index.raw):
        return False
    if index.source is not None:
        trust.remember_file(index.source)
    return True


def _with_index_file(
    root: Path,
    partition: str,
    file_name: str,
    read: Callable[[int, os.stat_result], LineIndex | None],
) -> LineIndex | None:
    """`read(fd, its fstat)` of the index file of `partition/file_name`, opened without
    following a symlink; None when it is missing, not a regular file, or damaged or foreign
    (as if missing)."""
    try:
        fd = open_file(root, f"{INDEX_DIR}/{partition}/{file_name}.idx")
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        return read(fd, info) if stat.S_ISREG(info.st_mode) else None
    except (OSError, ValueError, KeyError, TypeError, OverflowError, IndexError, AttributeError):
        return None
    finally:
        os.close(fd)


def _largest(lines: int, members: int) -> int:
    """The most bytes the file of an index of `lines` lines and `members` gzip members takes:
    offsets of 8 bytes, order and rank of 4, codes of up to 4 per field."""
    per_line = 8 + 4 + 4 + 4 * len(FIELDS)
    return _HEADER_AT + INDEX_HEADER_MAX + per_line * (lines + 1) + 16 * (members + 1)


def _read(
    read: Callable[[int, int], bytes],
    ident: Identity,
    tail: bytes,
    fields: Iterable[str],
    gzipped: bool,
    file_size: int,
) -> LineIndex | None:
    """The index in the bytes `read(size, at)` gives, a file of `file_size` bytes (see
    `load`)."""
    # An index file of ordinary size is read with this one read (a bigger one, only in parts).
    start = read(max(64 << 10, min(file_size, _ONE_READ)), 0)
    if not start.startswith(_MAGIC) or len(start) < _HEADER_AT:
        return None
    size = int.from_bytes(start[len(_MAGIC) : _HEADER_AT], "little")
    if size > INDEX_HEADER_MAX:
        return None
    raw = start[_HEADER_AT : _HEADER_AT + size]
    if len(raw) < size:
        raw += _exact(read, size - len(raw), _HEADER_AT + len(raw))
    header = orjson.loads(raw)
    if (
        tuple(header["identity"]) != ident
        or header["byteorder"] != sys.byteorder
        or bytes.fromhex(header["tail"]) != tail
    ):
        return None
    if not header["usable"]:
        index = LineIndex(ident, usable=False)
        index.tail = tail
        return index
    body = _HEADER_AT + size
    lines, ordered = header["lines"], header["ordered"]
    whole = None
    if file_size <= _largest(lines, header.get("members", 0)):
        # Read whole, with one read: what a vouched index is hashed over (`vouched_for`) is
        # then exactly what it was parsed from. A bigger file (forged) is read only in parts.
        data = start if len(start) == file_size else _exact(read, file_size, 0)
        if data is not start and data[:body] != start[:_HEADER_AT] + raw:
            return None  # rewritten between the reads: the header parsed is not in `data`
        whole, view = data, memoryview(data)

        def read(size: int, at: int) -> bytes:
            # A view, not a copy: the arrays below copy what they keep.
            return view[at : at + size]  # type: ignore[return-value]

    def read_array(name: str, count: int) -> array[int]:
        at, kind = header[name]
        values = array(kind)
        values.frombytes(_exact(read, count * values.itemsize, body + at))
        return values

    offsets = read_array("offsets", lines + 1)
    members = None
    if "members" in header:
        count = header["members"]
        packed, plain = read_array("packed", count + 1), read_array("unpacked", count + 1)
        # Each member is checked where it is read (gzmembers.inflate_member): not here, where
        # most queries only count.
        if packed[0] != 0 or packed[-1] != ident[2] or plain[0] != 0 or plain[-1] != offsets[-1]:
            return None  # not the members of this file
        members = (packed, plain)
    elif offsets[-1] != ident[2]:
        return None  # not the whole of this file
    if offsets[0] != 0 or (members is None) != (not gzipped):
        return None
    order: Sequence[int] = ()
    rank: Sequence[int] = ()
    if not ordered:
        order, rank = read_array("order", lines), read_array("rank", lines)
    columns = {}
    for name in fields:
        spec = header["columns"][name]
        values, counts = spec["values"], spec["counts"]
        if len(values) != len(counts) or sum(counts) != lines:
            return None
        codes = bytes(_exact(read, lines * spec["width"], body + spec["at"]))
        columns[name] = Column(values, counts, codes, spec["width"])
    index = LineIndex(ident, True, lines, ordered, offsets, columns, order, rank, header["ties"])
    index.blocks = bool(header["blocks"])
    index.first, index.last = (stamp.encode("latin-1") for stamp in header["span"])
    index.tail = tail
    index.members = members
    index.raw = whole
    return index


def _exact(read: Callable[[int, int], bytes], size: int, at: int) -> bytes:
    """`read(size, at)`, which must give `size` bytes (ValueError: the file is truncated)."""
    data = read(size, at)
    if len(data) != size:
        raise ValueError("index file is truncated")
    return data


# ---------------------------------------------------------------------- building an index
def build(
    fd: int,
    info: os.stat_result,
    *,
    compressed: bool = False,
    observe: Callable[[bytes], object] | None = None,
) -> LineIndex | None:
    """Index the open file `fd` (whose fstat is `info`), reading it once; a `compressed` file
    (a rotated day: gzip members) is indexed by its decompressed lines, with where its members
    start. `observe` is given every (decompressed) block read, in order. Returns an unusable
    marker when some line is not canonical, and None when the file does not end with a newline,
    is not clean gzip or changed while it was read (the caller scans it the ordinary way, which
    reports what is wrong)."""
    inflater = gzmembers.Inflater(fd, info.st_size, _READ_BLOCK) if compressed else None
    failed: list[bool] = []
    blocks = _inflated(inflater) if inflater is not None else _plain_blocks(fd, info.st_size)
    # A line over the limit reads as an empty line, which makes the file not indexable.
    splitter = LineSplitter(chain.MAX_LINE)
    index = from_lines(
        splitter.chunks(_until_failure(blocks, failed, observe)), identity(info), b""
    )
    if failed or splitter.rest:
        return None  # a torn or unfinished last line: the scan waits for writers and reports it
    if identity(os.fstat(fd)) != identity(info):
        return None
    index.built = True  # from the lines just read, of the file as it still is
    index.tail = tail_of(fd, info.st_size)
    if inflater is not None and index.usable:
        starts = [*inflater.members, (info.st_size, inflater.out)]
        index.members = (array("Q", [at for at, _ in starts]), array("Q", [at for _, at in starts]))
    return index


def from_lines(blocks: Iterable[bytes], ident: Identity, tail: bytes) -> LineIndex:
    """The index (or not-indexable marker) of a file of identity `ident` whose last bytes are
    `tail` (`tail_of`) and whose whole content is `blocks`, blocks of whole lines in file order
    (each block ends with a newline). For a writer that holds the lines of a file it has just
    written, e.g. a rotation writing a day's `.gz`; `build` reads them from the file."""
    builder = _Builder()
    for block in blocks:
        if builder.usable:
            builder.add(block)
    index = builder.finish(ident)
    index.tail = tail
    return index


def from_rows(
    rows: Iterable[tuple[Iterable[int], list[bytes], list[bytes], Iterable[Sequence[Any]]]],
    ident: Identity,
    tail: bytes,
) -> LineIndex:
    """The index of a file of identity `ident` ending with `tail` (`tail_of`) that holds exactly
    the stored lines (chain version 1: no commitment block) of canonical entries (what
    `model.dumps_entry` writes, chained) described
    by `rows`, in file order: batches of `(line lengths with newline, ids, createdAt values,
    the values of FIELDS as one column each)`, ids and createdAt as bytes. For a writer that
    knows the values of what it wrote (an import), which need not be parsed again; the caller
    vouches that the file is those lines (e.g. it created the file and its size is their sum)."""
    builder = _Builder()
    for lengths, ids, stamps, columns in rows:
        if builder.usable:
            builder.usable = builder.add_rows(lengths, ids, stamps, columns)
    index = builder.finish(ident)
    index.tail = tail
    return index


def index_file(root: Path, partition: str, file_name: str) -> LineIndex | None:
    """Build and save the index of the log file `partition/file_name` (plain, or `.gz`) unless
    it has a valid one, which is what the first query that reads it would otherwise do: for a
    writer that has just finished the file (an import, for the days it wrote). None when it is
    not a regular file, cannot be opened (never through a symlink) or cannot be indexed now (a
    torn end, changed while read); the query engine then decides as before."""
    try:
        fd = open_file(root, f"{partition}/{file_name}")
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        ident, tail = identity(info), tail_of(fd, info.st_size)
        if (index := load(root, partition, file_name, ident, tail, ())) is not None:
            return index  # still valid: nothing to do
        index = build(fd, info, compressed=file_name.endswith(".gz"))
        if index is not None:
            save(root, partition, file_name, index)
        return index
    finally:
        os.close(fd)


def _until_failure(
    blocks: Iterable[bytes | None], failed: list[bool], observe: Callable[[bytes], object] | None
) -> Iterator[bytes]:
    """The blocks up to the first None (a read that went wrong), which appends to `failed`."""
    for block in blocks:
        if block is None:
            failed.append(True)
            return
        if observe is not None:
            observe(block)
        yield block


def _plain_blocks(fd: int, size: int) -> Iterator[bytes | None]:
    done = 0
    while done < size:
        block = os.pread(fd, min(_READ_BLOCK, size - done), done)
        if not block:
            yield None  # shrank: not what was stat'ed
            return
        done += len(block)
        yield block


def _inflated(inflater: gzmembers.Inflater) -> Iterator[bytes | None]:
    try:
        yield from inflater.blocks()
    except gzmembers.GzipError:
        yield None
        return
    if inflater.trailing:
        yield None  # bytes after the last member: the scan reports them


class _Builder:
    """Accumulates offsets, field codes and sort keys over blocks of whole lines.

    The per-line work runs in C (map, itemgetter, orjson); a Python loop per line would cost
    more than parsing the line."""

    def __init__(self) -> None:
        self.usable = True
        self.offsets = array("Q", [0])
        self.tables: list[dict[Any, int]] = [{} for _ in FIELDS]
        self.codes = [array("I") for _ in FIELDS]
        self.keys: list[bytes] = []  # createdAt (fixed width) + raw id: the result order
        self.blocks = False  # whether a line may hold a commitment block (LineIndex.blocks)

    def add(self, block: bytes) -> None:
        lines = block.split(b"\n")
        lines.pop()
        for first in range(0, len(lines), _BATCH):
            if not self._add_batch(lines[first : first + _BATCH]):
                self.usable = False
                return

    def _add_batch(self, lines: list[bytes]) -> bool:
        count = len(lines)
        suffix_at = -_SUFFIX + 1  # where the chain suffix starts (newline already cut)
        # The stored shape (chain.is_chained_line), for every line at once.
        if (
            min(map(len, lines)) < _SUFFIX + 40
            or not all(map(bytes.startswith, lines, repeat(_ID_START)))
            or not all(map(bytes.endswith, lines, repeat(b'"}')))
            or list(map(itemgetter(slice(suffix_at, suffix_at + len(_HEAD))), lines)).count(_HEAD)
            != count
        ):
            return False
        # The 13 fields (chain version 2 lines also hold a salt or redaction record).
        whole = list(map(bytes.__add__, lines, repeat(b"\n")))
        self.blocks = self.blocks or chain.may_hold_blocks(whole)
        contents = chain.contents_of(whole)
        try:
            entries = list(map(orjson.loads, contents))
            # Canonical (what the one serialiser writes, keys in the API's order): then each
            # field's raw bytes are the JSON of its value, as the byte-level matcher assumes.
            # One dumps of the whole batch (a tenth of the cost of one call per entry) equals
            # the contents joined only if each entry does: each content is one JSON object
            # with nothing around it, and where an object ends is fixed by its text.
            if orjson.dumps(entries) != b"[" + b",".join(contents) + b"]" or not all(
                map(KEY_ORDER.__eq__, map(tuple, entries))
            ):
                return False
            ids = list(map(str.encode, map(itemgetter("id"), entries)))
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError, AttributeError):
            return False
        return self.add_rows(
            map(_plus_one, map(len, lines)),
            ids,
            list(map(itemgetter(slice(_CS, _CE)), lines)),
            zip(*map(itemgetter(*FIELDS), entries), strict=True),
        )

    def add_rows(
        self,
        lengths: Iterable[int],
        ids: list[bytes],
        stamps: list[bytes],
        columns: Iterable[Sequence[Any]],
    ) -> bool:
        """Add lines of canonical entries by their values: each line's length (newline
        included), id and createdAt (as bytes), and the values of FIELDS, a column each."""
        # sort_key() reads the raw id up to its first quote: the same bytes unless escaped.
        if _NEEDS_ESCAPE.search(b"".join(ids)):
            return False
        self.keys.extend(map(bytes.__add__, stamps, ids))
        self.offsets.extend(islice(accumulate(lengths, initial=self.offsets[-1]), 1, None))
        try:
            for table, codes, values in zip(self.tables, self.codes, columns, strict=True):
                for value in dict.fromkeys(values):
                    if value not in table:
                        table[value] = len(table)
                codes.extend(map(table.__getitem__, values))
        except TypeError:  # an unhashable value (object, array): not ours
            return False
        return True

    def finish(self, ident: Identity) -> LineIndex:
        if not self.usable or not all(
            value is None or type(value) is str for table in self.tables for value in table
        ):
            return LineIndex(ident, usable=False)
        columns = {}
        for name, table, codes in zip(FIELDS, self.tables, self.codes, strict=True):
            kind = "B" if len(table) <= 1 << 8 else "H" if len(table) <= 1 << 16 else "I"
            packed = array(kind, codes)
            tally = Counter(codes)
            counts = [tally[code] for code in range(len(table))]
            columns[name] = Column(list(table), counts, packed.tobytes(), packed.itemsize)
        keys = self.keys
        lines = len(keys)
        index = LineIndex(ident, True, lines, True, self.offsets, columns)
        index.blocks = self.blocks
        if keys:  # a key starts with the fixed-width createdAt
            index.first, index.last = min(keys)[:_STAMP], max(keys)[:_STAMP]
        if all(map(bytes.__lt__, keys, islice(keys, 1, None))):
            return index  # strictly increasing: file order is result order
        order = array("I", sorted(range(lines), key=keys.__getitem__))  # stable
        ranked = list(map(keys.__getitem__, order))
        index.ties = any(map(bytes.__eq__, ranked, islice(ranked, 1, None)))
        if any(map(int.__ne__, order, range(lines))):
            rank = array("I", bytes(4 * lines))
            for position, line in enumerate(order):
                rank[line] = position
            index.ordered, index.order, index.rank = False, order, rank
        return index


def _plus_one(length: int) -> int:
    """A line's length with its newline (the builder's lines come without)."""
    return length + 1


_NEEDS_ESCAPE = re.compile(rb'["\\\x00-\x1f]')  # what JSON escapes inside a string


# ---------------------------------------------------------------------- writing an index
#: `save`'s temp file: `.<file>.<pid>.<n>.tmp`.
_TEMP = re.compile(r"\..+\.(\d+)\.[0-9a-f]+\.tmp")


def save(root: Path, partition: str, file_name: str, index: LineIndex) -> None:
    """Write `index` for `partition/file_name`, atomically; any failure (read-only directory,
    full disk, a symlink or a file planted as `_index` or its partition) is ignored: an index
    only saves time. Everything happens through directory descriptors opened without following
    a symlink, so nothing outside the log directory is ever written or removed. Indexes of files
    that no longer exist in the partition are removed on the way. `index` is one this process
    built from the file (an import, a rotation, a query), so it is vouched for (`trust`)."""
    temporary = f".{file_name}.{os.getpid()}.{id(index):x}.tmp"  # per writer
    try:
        directory = make_dirs(root, [INDEX_DIR, partition])
    except OSError:
        return
    content = index.to_bytes()
    try:
        write_atomic_at(directory, file_name + ".idx", temporary, content)
        trust.vouch(content)
        _prune(root, partition, directory)
    except OSError:
        pass
    finally:
        os.close(directory)


def _prune(root: Path, partition: str, directory: int) -> None:
    """Remove the indexes of files gone from the partition, and temp files of dead processes."""
    try:
        logs = open_dir(root, [partition])
    except OSError:
        return
    try:
        for name in os.listdir(directory):
            stale = _TEMP.fullmatch(name)
            if stale and not process_alive(int(stale.group(1))):  # left by a killed query
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=directory)
                continue
            if not name.endswith(".idx"):
                continue
            try:
                os.stat(name[: -len(".idx")], dir_fd=logs, follow_symlinks=False)
            except FileNotFoundError:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=directory)
            except OSError:
                continue
    finally:
        os.close(logs)


def forget_file(root: Path, partition: str, file_name: str) -> None:
    """Remove the index of `partition/file_name` (after the file was replaced or removed),
    never through a symlink; a missing one is fine."""
    with contextlib.suppress(OSError):
        directory = open_dir(root, [INDEX_DIR, partition])
        try:
            os.unlink(file_name + ".idx", dir_fd=directory)
        finally:
            os.close(directory)


def forget(root: Path, partition: str) -> None:
    """Remove the indexes of one partition (after it was compressed or deleted): the files of
    `_index/<partition>` and the directory, never through a symlink and never recursing into a
    planted directory (which is then left in place)."""
    with contextlib.suppress(OSError):
        parent = open_dir(root, [INDEX_DIR])
        try:
            directory = open_dir_at(parent, partition)
            try:
                for name in os.listdir(directory):
                    with contextlib.suppress(OSError):  # a directory is refused: left alone
                        os.unlink(name, dir_fd=directory)
            finally:
                os.close(directory)
            os.rmdir(partition, dir_fd=parent)
        finally:
            os.close(parent)
