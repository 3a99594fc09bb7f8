"""Where the matches of a file still appended to are, in result order, kept across requests.

A settled file has a line index on disk (`lineindex`); the file of today is never indexed,
because every append changes it. `audit serve` answers many requests over it, so it keeps, per
(filters, order, file), the byte offsets of the file's matching lines in result order and how
far it read: the next request reads only the lines appended since, and a page at any offset
inside the file reads just its own lines (a `pread` each), whatever the offset.

Appends normally carry the newest times: the new matches then all sort after the known ones and
their offsets are appended. A line that sorts among the known ones (recorded late, imported,
a clock set back) makes the file be read afresh, so the order is always the engine's: by
(createdAt, id), equal keys in file order.

What is trusted and what is checked: the file's inode must be the same, it must not have
shrunk, the byte before the end already read must still end a line, and a file whose size did
not change must not have a new ctime (for longer than a write takes; unlike the mtime, it cannot
be set back), else the file is read afresh. The first `keep` matches are kept as lines (the
newest page, asked for most, reads nothing); every other line a page returns is read anew and
checked to start and end a line, to have the stored shape, to match the filters and to be in
result order; one that is not drops what is kept about the file and the caller scans it as
usual. A read that meets anything but
whole stored lines (a torn, foreign or overlong line) is not remembered: the caller's own scan
then reports it with its line number, on every request.

Bounded: at most `max_files` files, `max_positions` offsets in all (8 bytes each) plus `keep`
lines a file, least recently used dropped first; a file with more matches than that is not
kept at all.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import chain
from .query import in_result_order, sort_key, split_lines
from .store import LogFile, _open_in_partition

if TYPE_CHECKING:
    from .query import QueryEngine

_CHUNK = 1 << 20  # bytes read at a time from a growing file (each costs ~5x in objects)
_READ = 4096  # bytes read for one line at first; a longer line is read again whole
_DONE, _AFRESH, _GIVE_UP = object(), object(), object()  # what `TailCache._extend` did


@dataclass
class _Tail:
    """What a growing file (inode `ino`) held up to byte `end`: the offsets of its matches,
    `growth[i]` the i-th in ascending order (the last first for a descending query), and the
    greatest sort key among them."""

    ino: int
    end: int = 0
    ctime: int | None = None  # the file's ctime when `end` was its size, else None
    growth: array[int] = field(default_factory=lambda: array("Q"))
    last: bytes | None = None  # createdAt + id of the greatest
    top: list[bytes] = field(default_factory=list)  # the first `keep` matches, result order
    lock: threading.Lock = field(default_factory=threading.Lock)


class TailCache:
    """Offsets of the matches of growing files, per (filters, order, file); see the module
    docstring. Shared by the request threads."""

    def __init__(
        self, max_positions: int = 2_000_000, max_files: int = 64, keep: int = 200
    ) -> None:
        self.max_positions, self.max_files = max_positions, max_files
        #: The first matches in result order are kept as lines too: the newest page, asked
        #: for most, is answered without reading the file.
        self.keep = keep
        #: How long a new ctime at an unchanged size is taken for a write under way.
        self.write_ns = 1_000_000_000
        self._tails: OrderedDict[tuple[Any, ...], _Tail] = OrderedDict()
        self._lock = threading.Lock()
        self.scans_from: list[int] = []  # where the last reads began (tests)

    def count(self, engine: QueryEngine, file: LogFile) -> int | None:
        """How many lines of `file` match now, reading only what was appended since the last
        call; None when the file cannot be read this way (compressed, gone, damaged, too many
        matches to keep)."""
        tail = self._current(engine, file)
        return None if tail is None else len(tail.growth)

    def window(
        self, engine: QueryEngine, file: LogFile, low: int, high: int
    ) -> tuple[int, list[bytes]] | None:
        """`(count, lines ranked low to high in result order)` of `file` now; None as for
        `count`, or when a line is not what was kept about it (then nothing is kept)."""
        tail = self._current(engine, file)
        if tail is None:
            return None
        with tail.lock:
            size = len(tail.growth)
            if high <= len(tail.top) or len(tail.top) == size:
                return size, tail.top[low:high]
            if engine.order == "desc":
                picked = tail.growth[max(size - high, 0) : max(size - low, 0)][::-1]
            else:
                picked = tail.growth[low:high]
        lines = _read_checked(engine, file, tail.ino, picked)
        if lines is None:
            self._forget(engine, file)
            return None
        return size, lines

    # ---------------------------------------------------------------- keeping up
    def _key(self, engine: QueryEngine, file: LogFile) -> tuple[Any, ...]:
        return (engine.filters, engine.order, str(file.path))

    def _forget(self, engine: QueryEngine, file: LogFile) -> None:
        with self._lock:
            self._tails.pop(self._key(engine, file), None)

    def _current(self, engine: QueryEngine, file: LogFile) -> _Tail | None:
        """The kept tail of `file`, brought up to its current end."""
        if file.compressed:
            return None
        key = self._key(engine, file)
        try:
            info = os.stat(file.path, follow_symlinks=False)
        except OSError:
            return None
        with self._lock:
            tail = self._tails.get(key)
            if tail is None or tail.ino != info.st_ino:
                tail = self._tails[key] = _Tail(info.st_ino)
            self._tails.move_to_end(key)
        with tail.lock:
            done = self._extend(engine, file, tail, info.st_size, info.st_ctime_ns)
            if done is _AFRESH:
                tail.growth, tail.end, tail.last, tail.top = array("Q"), 0, None, []
                done = self._extend(engine, file, tail, info.st_size, info.st_ctime_ns)
        if done is not _DONE:
            self._forget(engine, file)
            return None
        self._bound(key)
        return tail

    def _extend(
        self, engine: QueryEngine, file: LogFile, tail: _Tail, size: int, ctime: int
    ) -> object:
        """Add the matches appended since `tail.end`: _DONE; _AFRESH when the file is to be read
        from its start (it shrank or was rewritten, a late line sorts among the kept ones);
        _GIVE_UP when it cannot be kept (a read met damage, too many matches)."""
        if tail.end == size and tail.end:
            # Nothing appended. A write sets the ctime just before the size grows, so another
            # ctime at the same size is a write under way, unless it stays so: the file was
            # rewritten in place (its mtime may be set back; its ctime cannot).
            if tail.ctime is None:
                tail.ctime = ctime  # read past the size stated then: this is its ctime
            if tail.ctime == ctime or time.time_ns() - ctime < self.write_ns:
                return _DONE
            return _AFRESH
        if tail.end > size or (tail.end and not _ends_line(file, tail.end)):
            return _AFRESH
        self.scans_from.append(tail.end)
        del self.scans_from[:-64]
        descending = engine.order == "desc"
        read = _matches_from(engine, file, tail.end, self.write_ns, descending)
        if read is None:
            return _GIVE_UP
        found, end = read  # ~100 bytes a match: its line is read again only for `top`
        if found:
            # Ascending by (createdAt, id), equal keys in file order; descending queries read
            # `growth` backwards, so there equal keys are kept in reverse file order.
            found.sort()
            if tail.last is not None and found[0][:-_KEY_END] <= tail.last:
                return _AFRESH  # sorts among the kept matches
            if len(tail.growth) + len(found) > self.max_positions:
                return _GIVE_UP
            positions = list(map(_place, found))
            if descending:
                positions = [_LAST_PLACE - place for place in positions]
            tail.last = found[-1][:-_KEY_END]
            if descending:
                newest = _read_checked(engine, file, tail.ino, positions[: -self.keep - 1 : -1])
                if newest is None:
                    return _GIVE_UP
                tail.top = newest + tail.top
                del tail.top[self.keep :]
            elif len(tail.top) < self.keep:
                oldest = _read_checked(
                    engine, file, tail.ino, positions[: self.keep - len(tail.top)]
                )
                if oldest is None:
                    return _GIVE_UP
                tail.top.extend(oldest)
            tail.growth.extend(positions)
        tail.end = end
        tail.ctime = ctime if end == size else None
        return _DONE

    def _bound(self, keep: tuple[Any, ...]) -> None:
        """Drop the least recently used tails (never `keep`) past the bounds."""
        with self._lock:
            total = sum(len(tail.growth) for tail in self._tails.values())
            for key in list(self._tails):
                if len(self._tails) <= self.max_files and total <= self.max_positions:
                    break
                if key != keep:
                    total -= len(self._tails.pop(key).growth)


#: A match is kept while a file is read as one bytes object: createdAt, id, a NUL (which sorts
#: a shorter id first, as the pair does: JSON text holds no raw NUL) and its place in the file
#: (8 bytes, big-endian; counted down for a descending query), which sorts as the engine orders
#: (equal keys in file order, or the reverse).
_PLACE = 8
_LAST_PLACE = (1 << 64) - 1
_KEY_END = 1 + _PLACE  # what follows createdAt + id in a kept match


def _place(match: bytes) -> int:
    """The place in the file (or its count-down) of a kept match."""
    return int.from_bytes(match[-_PLACE:], "big")


def _matches_from(
    engine: QueryEngine, file: LogFile, start: int, write_ns: int, descending: bool
) -> tuple[list[bytes], int] | None:
    """`(the matching lines from byte `start` on as sort keys (see _PLACE), end of the last
    whole line)`; None if anything but whole stored lines was met (the caller's scan reports
    it). A last line without its newline is left for the next read while the file's mtime is
    under `write_ns` old (a write under way: never waited for, as a full scan does, since the
    writer holds its lock through fsync); older, it is torn and the caller's scan reports it."""
    try:
        fd = _open_in_partition(file.path, os.O_RDONLY)
    except OSError:
        return None  # gone (rotated) or unreadable: the caller's scan says which
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        matcher, needle = engine.matcher, engine.matcher.needle
        found: list[bytes] = []
        position, rest = start, b""
        while position + len(rest) < info.st_size:
            block = os.pread(
                fd, min(_CHUNK, info.st_size - position - len(rest)), position + len(rest)
            )
            if not block:
                break  # cut back meanwhile
            data = rest + block
            cut = data.rfind(b"\n") + 1
            chunk, rest = data[:cut], data[cut:]
            if len(rest) > chain.MAX_LINE or chunk.count(chain.SUFFIX_HEAD) != chunk.count(b"\n"):
                return None
            for line in split_lines(chunk):
                if len(line) > chain.MAX_LINE:
                    return None
                if (needle is None or needle in line) and matcher(line):
                    if not chain.is_chained_line(line):
                        return None  # only the engine's scan knows how to report it
                    created, ident = sort_key(line)
                    place = _LAST_PLACE - position if descending else position
                    found.append(created + ident + b"\0" + place.to_bytes(_PLACE, "big"))
                position += len(line)
        if rest and time.time_ns() - info.st_mtime_ns >= write_ns:
            return None  # torn
        return found, position
    except OSError:
        return None
    finally:
        os.close(fd)


def _ends_line(file: LogFile, end: int) -> bool:
    """Whether the byte before `end` is still a newline."""
    try:
        fd = _open_in_partition(file.path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.pread(fd, 1, end - 1) == b"\n"
    finally:
        os.close(fd)


def _read_checked(
    engine: QueryEngine, file: LogFile, ino: int, positions: Sequence[int]
) -> list[bytes] | None:
    """`_read_lines` of `positions` (in result order), None unless they are `_genuine`."""
    lines = _read_lines(file, ino, positions)
    return lines if lines is not None and _genuine(engine, lines) else None


def _read_lines(file: LogFile, ino: int, positions: Sequence[int]) -> list[bytes] | None:
    """The whole lines starting at `positions` of the file (inode `ino`); None if one of them
    does not start or end a line there."""
    try:
        fd = _open_in_partition(file.path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_ino != ino:
            return None
        lines = []
        for position in positions:
            before = 1 if position else 0
            data = os.pread(fd, _READ, position - before)
            if before and data[:1] != b"\n":
                return None
            end = data.find(b"\n", before)
            if end < 0:
                data = os.pread(fd, chain.MAX_LINE + 1, position)
                end = data.find(b"\n")
                if end < 0:
                    return None
                lines.append(data[: end + 1])
            else:
                lines.append(data[before : end + 1])
        return lines
    except OSError:
        return None
    finally:
        os.close(fd)


def _genuine(engine: QueryEngine, lines: list[bytes]) -> bool:
    """Whether `lines` are stored entries that match the engine's filters, in result order
    (the tests the query engine makes of the lines a line index selects)."""
    return (
        chain.all_chained_lines(lines)
        and engine.matcher.all_match(lines)
        and in_result_order(lines, engine.order == "desc")
    )
