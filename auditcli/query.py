"""Queries over the store: filters, byte-level prefilters, ordering, pagination and totals.

Every stored line comes from one serialiser with a fixed key order, so each filter has an exact
byte form. The engine searches the raw bytes for the most selective one, and checks every
candidate line exactly by position (a prefilter only drops lines that cannot match):

* fields before `metadata` (actorId, action, target, targetId) are checked at the *first*
  occurrence of their key: a JSON string cannot hold an unescaped quote, so nothing earlier in
  the line can imitate `,"action":`;
* fields after `metadata` (organizationId, teamId) at the *last* occurrence, for the same
  reason read from the end;
* `createdAt` sits at a fixed offset from the end of the line, and fixed-width UTC timestamps
  compare as strings.

Lines that do not have the stored shape (foreign, corrupted, torn) are reported as problems with
file and line number and never returned.

A settled file (a file of a past day) is read once in full and gets a line index (see
`lineindex`; `rotate` writes the index of the archives it makes): later queries take the
matching lines' positions from it and read only those lines, in result order, with no scan,
parse or sort (from an archive, by inflating only the gzip members that hold them). The index
agrees with the scan by construction and is used only while the file is byte-for-byte as
indexed.
"""

from __future__ import annotations

import itertools
import operator
import os
import stat
from array import array
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import orjson

from . import chain, lineindex
from .catalog import Catalog, check_target
from .errors import IntegrityError, UsageError, inert
from .progress import Progress
from .store import PARTITION_PREFIX, AuditStore, LineSource, LogFile, _open_in_partition
from .timeparse import format_utc

_NEWLINE = b"\n"
_SUFFIX_HEAD = chain.SUFFIX_HEAD
_BEFORE_METADATA = ("actorId", "action", "target", "targetId")
_AFTER_METADATA = ("organizationId", "teamId")
#: Files smaller than this are scanned, never indexed: reading them costs what an index would.
INDEX_MIN_BYTES = 256 << 10
_BLOCK_LINES = 8192  # lines per output block of `content_blocks`
_SPOT_CHECKS = 64  # values of a key field checked against a line before counts are trusted
# A vouched index (see auditcli.trust) is looked for when a file's selection may be at least
# this many lines and 1/_VOUCH_SHARE of the file: checking a line costs ~5 us, hashing the
# index ~10 bytes a line.
_VOUCH_MIN = 64
_VOUCH_SHARE = 256
#: The Filters attribute of each filterable JSON field.
_FILTER_OF = {
    "actorId": "actor_ids",
    "action": "actions",
    "target": "targets",
    "targetId": "target_ids",
    "organizationId": "org_ids",
    "teamId": "team_ids",
}


@dataclass(frozen=True)
class Filters:
    """What to select. Values of one field are ORed; fields are ANDed. Bounds are canonical
    timestamps, both inclusive."""

    actions: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    actor_ids: tuple[str, ...] = ()
    target_ids: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = ()
    org_ids: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None

    def check(self, catalog: Catalog) -> Filters:
        """Raise UsageError for an unknown action or target, or `since` after `until`."""
        for action in self.actions:
            catalog.get(action)
        for target in self.targets:
            check_target(target)
        if self.since and self.until and self.since > self.until:
            raise UsageError(f"--since {self.since} is after --until {self.until}")
        return self

    def by_field(self) -> dict[str, tuple[str, ...]]:
        """The equality filters keyed by the entry's JSON field name."""
        pairs = {
            "actorId": self.actor_ids,
            "action": self.actions,
            "target": self.targets,
            "targetId": self.target_ids,
            "organizationId": self.org_ids,
            "teamId": self.team_ids,
        }
        return {name: values for name, values in pairs.items() if values}

    def describe(self) -> dict[str, object]:
        """The filters as JSON-friendly data, for reports and footers."""
        data: dict[str, object] = {name: list(values) for name, values in self.by_field().items()}
        data["since"], data["until"] = self.since, self.until
        return data


@dataclass(frozen=True)
class Problem:
    """A line or file that is not a valid stored entry: reported, never returned."""

    file: str
    line: int | None
    kind: str
    detail: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.kind}: {self.detail}"


class _Matcher:
    """Exact, positional tests of one stored line against the filters."""

    def __init__(self, filters: Filters) -> None:
        self.checks: list[tuple[bytes, tuple[bytes, ...], bool]] = []
        for name, values in filters.by_field().items():
            key = b',"' + name.encode() + b'":'
            forms = tuple(orjson.dumps(value) + b"," for value in values)
            self.checks.append((key, forms, name in _AFTER_METADATA))
        self.since = filters.since.encode() if filters.since else None
        self.until = filters.until.encode() if filters.until else None
        # The needle: the first single-valued filter, most selective fields first.
        self.needle: bytes | None = None
        by_field = filters.by_field()
        for name in ("targetId", "actorId", "teamId", "action", "target", "organizationId"):
            values = by_field.get(name, ())
            if len(values) == 1:
                self.needle = b',"' + name.encode() + b'":' + orjson.dumps(values[0]) + b","
                break

    @property
    def filters_fields(self) -> bool:
        """Whether any field (not only time) is filtered."""
        return bool(self.checks)

    def all_match(self, lines: list[bytes]) -> bool:
        """Whether every one of `lines` (stored lines) matches: the tests of `__call__`, a
        column at a time in C."""
        if self.since is not None or self.until is not None:
            stamps = list(map(_created_of, lines))
            if self.since is not None and min(stamps, default=self.since) < self.since:
                return False
            if self.until is not None and max(stamps, default=self.until) > self.until:
                return False
        for key, forms, from_end in self.checks:
            found = list(map(bytes.rfind if from_end else bytes.find, lines, repeat(key)))
            if min(found, default=0) < 0:
                return False
            after = map(len(key).__add__, found)
            if not all(map(bytes.startswith, lines, repeat(forms), after)):
                return False
        return True

    def __call__(self, line: bytes) -> bool:
        created = line[chain.CREATED_START : chain.CREATED_END]
        if self.since is not None and created < self.since:
            return False
        if self.until is not None and created > self.until:
            return False
        for key, forms, from_end in self.checks:
            at = line.rfind(key) if from_end else line.find(key)
            if at < 0:
                return False
            at += len(key)
            if not any(line.startswith(form, at) for form in forms):
                return False
        return True


def sort_key(line: bytes) -> tuple[bytes, bytes]:
    """(createdAt, id) of a stored line: the order of results, ties broken by id."""
    return line[chain.CREATED_START : chain.CREATED_END], line[7 : line.index(b'"', 7)]


_created_of = operator.itemgetter(slice(chain.CREATED_START, chain.CREATED_END))


def in_result_order(lines: list[bytes], descending: bool) -> bool:
    """Whether `lines` (stored lines) are in result order (`sort_key`, ties allowed), a column
    at a time: createdAt (fixed width) first, and ids only where two createdAt are equal."""
    stamps = list(map(_created_of, lines))
    step = operator.ge if descending else operator.le
    if not all(map(step, stamps, itertools.islice(stamps, 1, None))):
        return False
    equal = map(operator.eq, stamps, itertools.islice(stamps, 1, None))
    return all(
        step(sort_key(lines[n]), sort_key(lines[n + 1]))
        for n in itertools.compress(itertools.count(), equal)
    )


def _worth_vouching(
    index: lineindex.LineIndex, by_field: dict[str, tuple[str, ...]], most: int
) -> bool:
    """Whether a query of `by_field` that returns at most `most` lines may return enough of the
    index's lines that reading and hashing the whole index (to find it vouched for) costs less
    than checking each line."""
    columns = index.columns
    estimate = min(
        (columns[name].total(columns[name].codes_of(values)) for name, values in by_field.items()),
        default=index.lines,
    )
    estimate = min(estimate, most)
    return estimate >= _VOUCH_MIN and estimate * _VOUCH_SHARE >= index.lines


class QueryEngine:
    """Runs one query over a store: pruned partitions, prefiltered scans, ordered results.

    Problems met on the way (torn or foreign lines, unreadable files) collect in `problems`.
    """

    def __init__(
        self,
        store: AuditStore,
        filters: Filters,
        *,
        order: str = "desc",
        use_index: bool = True,
        progress: Progress | None = None,
    ) -> None:
        """`progress` hears of the entries of the files indexed on the way (a settled file is
        indexed the first time a query reads it)."""
        if order not in ("asc", "desc"):
            raise UsageError(f"--order: expected asc or desc, got {order!r}")
        self.store, self.filters, self.order = store, filters, order
        self.matcher = _Matcher(filters)
        self.problems: list[Problem] = []
        #: Use (and write) line indexes; False scans every file (the reference path in tests).
        self.use_index = use_index
        self.index_min_bytes = INDEX_MIN_BYTES
        self._today = format_utc(store.clock())[:10]  # files of this day or later: not settled
        self._indexed: set[LogFile] = set()  # answered from an index: parsed when indexed
        self._in_order: set[LogFile] = set()  # ... and already in result order, no ties
        self._trusted_days: set[str] = set()
        self._buffer = bytearray()  # reused to read indexed files whole (lineindex.FileBytes)
        self.progress = progress
        self._indexed_lines = 0
        self._odd_reported = False

    def days(self) -> list[str]:
        """The partitions that can hold matches, in result order."""
        first = self.filters.since[:10] if self.filters.since else None
        last = self.filters.until[:10] if self.filters.until else None
        days = self.store.days(first, last)
        if not self._odd_reported:
            self._odd_reported = True
            for name, why in self.store.odd_partitions():
                day = name[len(PARTITION_PREFIX) :][:10]  # what it claims to be
                if (first is None or day >= first) and (last is None or day <= last[:10]):
                    self.problems.append(Problem(inert(name), None, "not a partition", why))
        return days[::-1] if self.order == "desc" else days

    def _whole_day(self, day: str) -> bool:
        since, until = self.filters.since, self.filters.until
        return (since is None or since <= f"{day}T00:00:00.000Z") and (
            until is None or until >= f"{day}T23:59:59.999Z"
        )

    # ---------------------------------------------------------------- scanning
    def _scan_file(self, file: LogFile, *, count_only: bool) -> tuple[int, list[bytes]]:
        """Count and (unless `count_only`) collect the matching lines of one file."""
        count, found, _ = self.scan_from(file, 0, count_only=count_only)
        return count, found

    def scan_from(
        self, file: LogFile, start: int, *, count_only: bool = False
    ) -> tuple[int, list[bytes], int]:
        """`_scan_file` of a plain file's lines from byte `start` (a line's start) on, and the
        byte offset just past the last whole line read: a caller that remembers what a growing
        file held reads only what was appended since. Line numbers in problems count from
        `start`."""
        source = LineSource(file, start) if start else self.store.lines(file)
        matcher, needle = self.matcher, self.matcher.needle
        everything = not matcher.filters_fields and self._whole_day(file.day)
        count, found = 0, []
        first_line = 1
        try:
            for chunk in source.chunks():
                lines_here = chunk.count(_NEWLINE)
                if chunk.count(_SUFFIX_HEAD) != lines_here:
                    # Some line lacks the stored shape: take the careful path for this chunk.
                    n, hits = self._scan_checked(file, chunk, first_line, count_only, source)
                    count += n
                    found.extend(hits)
                elif everything:
                    count += lines_here
                    if not count_only:
                        found.extend(split_lines(chunk))
                elif needle is not None:
                    n, hits = _scan_needle(chunk, needle, matcher, count_only)
                    count += n
                    found.extend(hits)
                else:
                    for line in split_lines(chunk):
                        if matcher(line):
                            count += 1
                            if not count_only:
                                found.append(line)
                first_line += lines_here
        except IntegrityError as exc:  # an unreadable file is reported, not fatal
            self.problems.append(Problem(file.name, None, "unreadable", str(exc)))
        self.note_damage(file, source)
        return count, found, source.end

    def note_damage(self, file: LogFile, source: LineSource) -> None:
        """Report what reading `file` through `source` met besides entries (torn end, bytes
        after a gzip member, lines over the size limit)."""
        for line, kind, detail in source.damage():
            self.problems.append(Problem(file.name, line, kind, detail))

    def _scan_checked(
        self, file: LogFile, chunk: bytes, first_line: int, count_only: bool, source: LineSource
    ) -> tuple[int, list[bytes]]:
        count, found = 0, []
        overlong = {bad.line for bad in source.overlong}  # reported by note_damage
        for offset, line in enumerate(split_lines(chunk)):
            if not chain.is_chained_line(line):
                if first_line + offset in overlong:
                    continue
                self.problems.append(
                    Problem(
                        file.name,
                        first_line + offset,
                        "not an entry",
                        "foreign or corrupted line; skipped",
                    )
                )
                continue
            if self.matcher(line):
                count += 1
                if not count_only:
                    found.append(line)
        return count, found

    def day_lines(self, day: str) -> list[bytes]:
        """Every matching stored line of one partition, in result order."""
        files = self._day_files(day)
        found: list[bytes] = []
        trusted = True
        for file in files:
            lines = self.file_lines(file)
            trusted = trusted and (not lines or file in self._indexed)
            found.extend(lines)
        if trusted:
            self._trusted_days.add(day)
        else:
            self._trusted_days.discard(day)
        if len(files) == 1 and files[0] in self._in_order:
            if self.order == "desc":
                found.reverse()  # the index gave them ascending
        else:
            found.sort(key=sort_key, reverse=self.order == "desc")
        return found

    def file_lines(self, file: LogFile) -> list[bytes]:
        """The matching stored lines of one file: in result order (ascending) when they come
        from its line index, else in file order."""
        answer = self._from_index(file, "lines")
        if answer is not None:
            return answer[1]
        return self._scan_file(file, count_only=False)[1]

    def day_count(self, day: str) -> int:
        """How many lines of one partition match, without keeping them."""
        return sum(self.file_count(file) for file in self._day_files(day))

    def day_window(self, day: str, low: int, high: int) -> tuple[int, list[bytes]]:
        """How many lines of one partition match, and those ranked `low` to `high` in result
        order. Only those are kept: a huge offset (an API parameter) must not hold every
        earlier match in memory, only one partition's at a time."""
        lines = self.day_lines(day)
        return len(lines), self._parseable(day, lines[low:high])

    def _day_files(self, day: str) -> list[LogFile]:
        """The files of a partition; one that cannot be listed is reported and skipped."""
        try:
            return self.store.files(day)
        except IntegrityError as exc:
            self.problems.append(Problem(f"date={day}", None, "unreadable", str(exc)))
            return []

    def file_count(self, file: LogFile) -> int:
        """How many lines of one file match: the unit a long-running caller (the HTTP server)
        may memoise, since a file only grows and a closed one never changes."""
        answer = self._from_index(file, "count")
        if answer is not None:
            return answer[0]
        return self._scan_file(file, count_only=True)[0]

    def key_counts(
        self, file: LogFile, fields: tuple[str, ...]
    ) -> Counter[tuple[bytes, ...]] | None:
        """How many matching lines of `file` have each combination of values of `fields` (JSON
        field names, e.g. ("action",)), each value as its JSON bytes, from the file's line index;
        None when the file is to be scanned instead (what `audit stats` counts first)."""
        answer = self._from_index(file, "keys", fields)
        return answer[1][0] if answer is not None else None

    def _from_index(
        self,
        file: LogFile,
        want: str,
        keys: tuple[str, ...] = (),
        window: tuple[int, int] = (0, 0),
    ) -> tuple[int, Any] | None:
        """One file's answer from its line index, indexing a settled file first when it has no
        valid index. By `want`:

        * "count": `(count, [])`;
        * "lines": `(count, the lines in ascending result order)`;
        * "blocks": `(count, iterator of (n, JSONL block) in query order)`;
        * "window": `(count, the lines ranked window[0] to window[1] in query order)`;
        * "keys": `(0, [Counter of the values of the fields `keys`])`.

        None when the file is to be scanned (small, of today, not indexable, changed under us,
        an old gzip file too big to inflate whole) or, for blocks and windows, when equal sort
        keys make a plain reversal inexact. A compressed file's lines are read by inflating
        only the gzip members that hold them (see `lineindex.GzipBytes`)."""
        if not self.use_index:
            return None
        try:
            fd = _open_in_partition(file.path, os.O_RDONLY)
        except OSError:
            return None  # the scan reports why
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size < max(self.index_min_bytes, 1):
                return None
            by_field = self.filters.by_field()
            tail = lineindex.tail_of(fd, info.st_size)
            index = lineindex.load(
                self.store.root,
                file.partition,
                file.path.name,
                lineindex.identity(info),
                tail,
                {*by_field, *keys},
            )
            if index is None:
                if file.day >= self._today:
                    return None  # still appended to: scanned, indexed once the day is over
                index = lineindex.build(fd, info, compressed=file.compressed)
                if index is None:
                    return None
                self._indexed_lines += index.lines
                if self.progress is not None:
                    self.progress(self._indexed_lines)
                lineindex.save(self.store.root, file.partition, file.path.name, index)
            if not index.usable:
                return None
            try:
                return self._answer(index, fd, info.st_size, file, by_field, want, keys, window)
            except (lineindex.NotSeekable, _FileChanged):
                return None
            except (_IndexDisagrees, IndexError, ValueError, TypeError, KeyError, OverflowError):
                # Derived data that does not describe its file (forged, or damaged past what
                # loading notices) never answers: the file is scanned and this is reported.
                self.problems.append(
                    Problem(file.name, None, "line index ignored", _DISAGREES.format(file=file))
                )
                return None
        finally:
            os.close(fd)

    def _answer(
        self,
        index: lineindex.LineIndex,
        fd: int,
        size: int,
        file: LogFile,
        by_field: dict[str, tuple[str, ...]],
        want: str,
        keys: tuple[str, ...],
        window: tuple[int, int],
    ) -> tuple[int, Any] | None:
        """`_from_index`'s answer from `index`, loaded for `file` (open as `fd`, `size` bytes):
        from the index alone for counts (after spot checks), else the lines it selects, each
        checked (`_checked`) unless the index read whole is one this user vouched for."""
        vouched = False
        most = window[1] - window[0] if want == "window" else index.lines
        if want in ("lines", "blocks", "window") and _worth_vouching(index, by_field, most):
            # Everything below then comes from the vouched index alone, checked only against
            # the file's identity: which shows every change only to a file no one else writes.
            vouched = lineindex.private(os.fstat(fd)) and lineindex.vouched_for(index)
        since, until = self.matcher.since, self.matcher.until
        if since is not None and since <= index.first:
            since = None  # every line is at or after it: no test needed
        if until is not None and until >= index.last:
            until = None
        descending = self.order == "desc"
        if want in ("blocks", "window") and index.ties and descending:
            return None  # equal keys keep file order in a stable descending sort
        data = lineindex.file_bytes(index, fd, size, self._buffer)
        if want in ("count", "keys"):
            # Counts come from the index alone: check that each value it counts is what a
            # line it gives that value holds (a swap of values, as a forger would do, shows).
            self._spot_check(index, data, by_field, keys)
        if want == "count":
            return index.count(by_field, since, until, lambda: data), []
        if want == "keys":
            return 0, [index.key_counts(keys, by_field, since, until, lambda: data)]
        selected = index.select(by_field, since, until, data)
        found: Any = []
        if want in ("blocks", "window"):
            in_order = selected[::-1] if descending else selected
            if want == "window":
                part = in_order[window[0] : window[1]]
                found = self._lines(index, part, data, descending, vouched, fd)
            else:
                blocks = self._blocks(index, in_order, os.dup(fd), size, vouched)
                # The first block is checked now: an index wrong from its start never answers.
                first = next(blocks, None)
                found = _stop_on_disagreement(
                    itertools.chain([first] if first else [], blocks), file
                )
        elif len(selected):
            found = self._lines(index, selected, data, False, vouched, fd)
        self._indexed.add(file)
        if not index.ties:
            self._in_order.add(file)
        return len(selected), found

    def _lines(
        self,
        index: lineindex.LineIndex,
        selected: Any,
        data: lineindex.FileBytes | lineindex.GzipBytes,
        descending: bool,
        vouched: bool,
        fd: int,
    ) -> list[bytes]:
        """The lines `selected` by the index: as they are when it is `vouched` for (and the
        file `fd` is still the one it describes), else each checked (`_checked`)."""
        if vouched:
            lines = index.lines_at(selected, data)
            _still_described(index, fd)
            return lines
        return self._checked(index, selected, data, descending)[0]

    def _checked(
        self,
        index: lineindex.LineIndex,
        selected: Any,
        data: lineindex.FileBytes | lineindex.GzipBytes,
        descending: bool,
        after: bytes | None = None,
    ) -> tuple[list[bytes], list[bytes]]:
        """The lines `selected` by the index and their contents (`chain.contents_of`), each
        line checked to be a whole stored entry of the file (its content parsed as JSON) that
        matches the filters (with the exact byte matcher) and in result order (descending or
        not, following the line `after`); _IndexDisagrees otherwise."""
        lines = index.checked_lines(selected, data, self._all_genuine)
        if lines is None or not in_result_order([after, *lines] if after else lines, descending):
            raise _IndexDisagrees
        contents = chain.contents_of(lines)
        try:
            deque(map(orjson.loads, contents), maxlen=0)
        except orjson.JSONDecodeError:
            raise _IndexDisagrees from None
        return lines, contents

    def _spot_check(
        self,
        index: lineindex.LineIndex,
        data: lineindex.FileBytes | lineindex.GzipBytes,
        by_field: dict[str, tuple[str, ...]],
        keys: tuple[str, ...],
    ) -> None:
        """_IndexDisagrees unless, for every value the answer counts (the filtered ones, and
        the _SPOT_CHECKS most frequent of each key field), the first line the index gives that
        value is a whole stored line that holds it. One read per value."""
        for name in {*by_field, *keys}:
            column = index.columns[name]
            codes = set(column.codes_of(by_field.get(name, ())))
            if name in keys:
                ranked = sorted(range(len(column.counts)), key=column.counts.__getitem__)
                codes.update(ranked[-_SPOT_CHECKS:])
            places = array("BHI"[column.width.bit_length() - 1], column.codes)
            for code in codes:
                if not column.counts[code]:
                    continue
                value = column.values[code]
                only: dict[str, Any] = {_FILTER_OF[name]: (value,)}
                holds = _Matcher(Filters(**only))
                if index.checked_lines([places.index(code)], data, holds.all_match) is None:
                    raise _IndexDisagrees

    def _all_genuine(self, lines: list[bytes]) -> bool:
        """Whether every one of `lines` has the stored shape and matches the filters, each
        test a column at a time (a Python call per line costs more); `_checked` then parses
        their contents."""
        return chain.all_chained_lines(lines) and self.matcher.all_match(lines)

    def _blocks(
        self, index: lineindex.LineIndex, selected: Any, fd: int, size: int, vouched: bool
    ) -> Iterator[tuple[int, bytes]]:
        """JSONL blocks of the `selected` lines, made as they are consumed (memory stays at one
        block and the read buffer), each line checked as `_checked` does (_IndexDisagrees
        otherwise) unless the index is `vouched` for; closes `fd`."""
        try:
            data = lineindex.file_bytes(index, fd, size, self._buffer)
            previous = None
            for first in range(0, len(selected), _BLOCK_LINES):
                part = selected[first : first + _BLOCK_LINES]
                if vouched:
                    block = index.contents_block(part, data)
                    _still_described(index, fd)
                    yield len(part), block
                    continue
                lines, contents = self._checked(index, part, data, self.order == "desc", previous)
                previous = lines[-1] if lines else previous
                yield len(lines), lineindex.joined_lines(contents, b"\n")
        finally:
            os.close(fd)

    def _parseable(self, day: str, lines: list[bytes]) -> list[bytes]:
        """`lines` less those whose content is not JSON: a line can keep the stored shape and
        still be corrupted inside. Each is reported with its file and line, never returned.
        Lines that came from line indexes were parsed when their file was indexed."""
        if day in self._trusted_days:
            return lines
        loads, content_of, bad = orjson.loads, chain.content_of, []
        for line in lines:
            try:
                loads(content_of(line))
            except orjson.JSONDecodeError:
                bad.append(line)
        if not bad:
            return lines
        for line in bad:
            self.problems.append(self._locate(day, line))
        return [line for line in lines if line not in bad]

    def _locate(self, day: str, line: bytes) -> Problem:
        detail = "corrupted line (its content is not JSON); skipped"
        for file in self.store.files(day):
            for number, candidate in self.store.iter_lines(file):
                if candidate == line:
                    return Problem(file.name, number, "not an entry", detail)
        return Problem(f"date={day}", None, "not an entry", detail)

    # ---------------------------------------------------------------- results
    def stream(self, after: str | None = None) -> Iterator[bytes]:
        """Every matching stored line, in order, one partition in memory at a time; with
        `after` (a day), only those of the partitions after it (a replay resumed there)."""
        for day in self.days():
            if after is None or day > after:
                yield from self.day_stream(day)

    def day_stream(self, day: str) -> list[bytes]:
        """The matching stored lines of one partition that are entries, in order (the others
        are reported in `problems`)."""
        return self._parseable(day, self.day_lines(day))

    def content_blocks(self) -> Iterator[tuple[int, bytes]]:
        """`(n, block)`: the matches as JSONL of their seed JSON (`n` lines per block), in
        order, a partition at a time; what `query --all --format jsonl` writes."""
        for day in self.days():
            files = self._day_files(day)
            if len(files) == 1 and (answer := self._from_index(files[0], "blocks")) is not None:
                yield from answer[1]
                continue
            lines = self._parseable(day, self.day_lines(day))
            for first in range(0, len(lines), _BLOCK_LINES):
                part = lines[first : first + _BLOCK_LINES]
                yield len(part), lineindex.joined_lines(chain.contents_of(part), b"\n")

    def count(self) -> int:
        """The number of matches."""
        return sum(self.day_count(day) for day in self.days())

    def page(self, limit: int, offset: int = 0) -> tuple[int, list[bytes]]:
        """`(total, lines)`: the matches ranked `offset` to `offset + limit` and the total.

        Partitions hold disjoint days, so once enough matches are collected from the partitions
        nearest the start of the order, the rest are only counted."""
        if limit < 1:
            raise UsageError("--limit: must be at least 1")
        if offset < 0:
            raise UsageError("--offset: must be 0 or more")
        wanted = offset + limit
        total, kept = 0, []
        for day in self.days():
            if offset > total:
                # A day wholly before the page is only counted (from its line index or, in the
                # server, a remembered count): a deep offset does not read every earlier day.
                reported = len(self.problems)
                count = self.day_count(day)
                if total + count <= offset:
                    total += count
                    continue
                del self.problems[reported:]  # the day is read below, which reports them again
            low, high = max(offset - total, 0), wanted - total
            files = self._day_files(day) if total < wanted else []
            if len(files) == 1 and (
                answer := self._from_index(files[0], "window", window=(low, high))
            ):
                # A settled day: only the wanted lines are read, ranked by the index.
                self._trusted_days.add(day)
                kept.extend(answer[1])
                total += answer[0]
            elif total < wanted:
                count, lines = self.day_window(day, low, high)
                kept.extend(lines)
                total += count
            else:
                total += self.day_count(day)
        return total, kept


def _stop_on_disagreement(
    blocks: Iterator[tuple[int, bytes]], file: LogFile
) -> Iterator[tuple[int, bytes]]:
    """`blocks`; a line the index got wrong after the first block stops the output with an
    IntegrityError (what was written is right, but not all: the error says what to do)."""
    try:
        yield from blocks
    except (_IndexDisagrees, IndexError, ValueError, TypeError, OverflowError):
        raise IntegrityError(
            f"{file.name}: "
            + _NOT_DESCRIBED.format(file=file)
            + "; output stopped. Run `audit verify`; delete the index and retry"
        ) from None


class _IndexDisagrees(Exception):
    """A line index selected something that is not a matching entry of its file."""


class _FileChanged(_IndexDisagrees):
    """The file changed after its index was loaded or built: the index no longer describes it
    (before any output: the file is scanned; after some, the output stops)."""


def _still_described(index: lineindex.LineIndex, fd: int) -> None:
    """_FileChanged unless the file `fd` still has the identity `index` was made for: lines
    read by a vouched index go unchecked, so a file edited since it was loaded or built (its
    lines moved) must not give them. Checked after the read: what was read is then the file
    the index describes."""
    if lineindex.identity(os.fstat(fd)) != index.ident:
        raise _FileChanged


_NOT_DESCRIBED = (
    "its line index (_index/{file.name}.idx) does not describe the file (forged or damaged)"
)
_DISAGREES = _NOT_DESCRIBED + "; the file was scanned instead. Run `audit verify`; delete the index"


def split_lines(chunk: bytes) -> list[bytes]:
    """The lines of a chunk of whole lines, each with its newline (only `\\n` ends a line)."""
    parts = chunk.split(_NEWLINE)
    parts.pop()
    return [part + _NEWLINE for part in parts]


def _scan_needle(
    chunk: bytes, needle: bytes, matcher: _Matcher, count_only: bool
) -> tuple[int, list[bytes]]:
    find, rfind = chunk.find, chunk.rfind
    count, found = 0, []
    pos = 0
    while (at := find(needle, pos)) >= 0:
        start = rfind(_NEWLINE, 0, at) + 1
        end = find(_NEWLINE, at) + 1
        line = chunk[start:end]
        if matcher(line):
            count += 1
            if not count_only:
                found.append(line)
        pos = end
    return count, found


def seed_json(line: bytes) -> bytes:
    """The entry's canonical JSON (the 13 entry fields) of a stored line."""
    return chain.content_of(line)


def entry_of(line: bytes) -> dict[str, Any]:
    """The entry of a stored line as a dict of the 13 entry fields."""
    return orjson.loads(chain.content_of(line))
