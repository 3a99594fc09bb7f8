"""AuditStore: the log directory, its day partitions, locked chained appends and raw file reads.

Layout (Hive-style, so DuckDB, Spark, Trino and Athena read it unchanged)::

    LOGDIR/date=2026-11-25/<writer>.jsonl        appended to, one file per writer host
    LOGDIR/date=2026-11-25/<writer>+2.jsonl      a later segment (after a torn line or rotation)
    LOGDIR/date=2026-11-24/<writer>.jsonl.gz     a rotated (closed, compressed) file
    LOGDIR/_store.json                           the marker that makes it a log directory
    LOGDIR/_catalog.json  _manifests/  _accounts/   (underscore: hidden from the engines)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import chain, gzmembers
from .catalog import Catalog
from .commitments import SALT_BYTES, salted
from .errors import (
    DuplicateIdError,
    IntegrityError,
    NoStoreError,
    NotRecordedError,
    UsageError,
)
from .lines import LineSplitter, Overlong
from .safeio import MARKER_MAX, fsync_dir, lock_within, read_control
from .safeio import why as _why
from .timeparse import Clock, utc_now

if TYPE_CHECKING:  # only `audit serve` makes one: record's start-up does not import it
    from .listing import DirectoryListings

PARTITION_PREFIX = "date="
PLAIN, GZIP = ".jsonl", ".jsonl.gz"
# Names are matched whole (fullmatch): `$` would also accept a name ending in a newline.
_PARTITION = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_SEGMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9.-]{0,62})(?:\+(\d{1,6}))?")
_ID_AT_LINE_START = re.compile(rb'^\{"id":"([^"]*)"', re.MULTILINE)
_TAIL_BYTES = 70 * 1024  # more than one line can be, so the last whole line is in the tail
_DIR_MODE, _FILE_MODE = 0o700, 0o600
#: Written when a log directory is created (`audit init`, the first write); its presence, or
#: that of a day partition or a control directory of a store made before the marker existed,
#: is what makes a directory a log directory.
STORE_MARKER = "_store.json"
_MARKER_CONTENT = b'{"format":"auditcli-log-directory","version":1}\n'
#: The marker of a redactable store (`audit init --redactable`): its writers write chain
#: version 2 lines (salted per-field commitments, see auditcli.commitments), which a later
#: `audit redact` can prove field by field, at a cost in verify and import time.
_REDACTABLE_MARKER = b'{"format":"auditcli-log-directory","version":1,"redactable":true}\n'
_OLDER_STORE_NAMES = ("_manifests", "_catalog.json", "_accounts")

#: Seconds a reader waits for a writer to finish the line at a file's end (a write holds its
#: lock for milliseconds); after that the unfinished line is reported as torn.
LOCK_WAIT = 5.0
#: Never follow a symlink; never block opening a FIFO planted where a file should be.
_NO_SURPRISES = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def default_writer_id() -> str:
    """This host's writer id: `AUDIT_WRITER_ID`, else the host name, reduced to [A-Za-z0-9.-].
    (The host name as uname(2) gives it, which is what socket.gethostname() returns on the
    POSIX systems the store runs on, without importing socket at every start.)"""
    raw = os.environ.get("AUDIT_WRITER_ID") or os.uname().nodename or "localhost"
    cleaned = re.sub(r"[^A-Za-z0-9.-]", "-", raw).strip(".-")[:63]
    return cleaned or "localhost"


def default_log_dir() -> Path:
    """`AUDIT_LOG_DIR`, else the per-user data directory (XDG_DATA_HOME/auditcli/logs)."""
    env = os.environ.get("AUDIT_LOG_DIR")
    if env:
        return Path(env)
    home_data = os.path.join(os.path.expanduser("~"), ".local", "share")
    base = os.environ.get("XDG_DATA_HOME") or home_data
    return Path(base) / "auditcli" / "logs"


def store_problem(root: Path) -> str | None:
    """Why `root` is not an audit log directory (`no such log directory`, `an empty directory`,
    …), or None when it is one: it holds the marker, a `date=` partition or a control directory.
    Readers refuse anything else, so a mistyped path is an error, not an empty, "verified" log."""
    try:
        info = os.stat(root)
    except FileNotFoundError:
        return "no such log directory"
    except OSError as exc:
        return f"cannot read: {_why(exc)}"
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory"
    try:
        names = os.listdir(root)
    except FileNotFoundError:  # removed or renamed since the stat
        return "no such log directory"
    except OSError as exc:
        return f"cannot list: {_why(exc)}"
    if STORE_MARKER in names or any(
        name in _OLDER_STORE_NAMES or _PARTITION.fullmatch(name) for name in names
    ):
        return None
    if not names:
        return "an empty directory, not a log directory"
    return f"not an audit log directory (no {STORE_MARKER}, no date= partitions)"


def require_store(root: Path) -> None:
    """Raise NoStoreError unless `root` is an audit log directory (see `store_problem`)."""
    problem = store_problem(root)
    if problem is not None:
        raise NoStoreError(f"{root}: {problem}")


def init_store(root: Path, *, redactable: bool = False) -> bool:
    """Make `root` a log directory: create it (mode 0700, parents too) when missing and write
    the marker. True when it was created or marked, False when it already was a log directory.
    A directory that holds other files is refused (UsageError): `audit init /var/log` is a slip.
    With `redactable`, the marker also says so (see `is_redactable`), on a new or existing store;
    the setting is never removed here (lines already written keep their version either way)."""
    problem = store_problem(root)
    if problem is not None and (
        problem != "no such log directory" and not problem.startswith("an empty directory")
    ):
        raise UsageError(f"{root}: {problem}; give a new or empty directory")
    created = problem is not None
    if created or not (root / STORE_MARKER).exists():
        AuditStore(root, writer_id="init").ensure_root()
    if redactable and not is_redactable(root):
        _replace_marker(root, _REDACTABLE_MARKER)
    return created


def is_redactable(root: Path) -> bool:
    """Whether writers of log directory `root` write chain version 2 lines: its marker holds
    `"redactable": true`. A missing or empty marker (a store made before it, or a crash while it
    was created) means no. A marker that is not such JSON, a symlink, not a regular file or over
    `MARKER_MAX` bytes is refused (IntegrityError naming it): nothing is written then. Only the
    format of future lines depends on it; what `verify` accepts does not."""
    raw = read_control(root, STORE_MARKER, MARKER_MAX)
    if not raw:
        return False
    try:
        marker = orjson.loads(raw)
    except orjson.JSONDecodeError:
        marker = None
    setting = marker.get("redactable", False) if isinstance(marker, dict) else None
    if not isinstance(setting, bool):
        raise IntegrityError(
            f"{root / STORE_MARKER}: not a log directory marker (a JSON object whose "
            '"redactable" is true or false); remove it and run `audit init [--redactable]`'
        )
    return setting


@dataclass(frozen=True, order=True)
class LogFile:
    """One file of a partition: plain (maybe still appended to) or gzip-compressed (closed)."""

    day: str
    segment: str
    path: Path = field(compare=False)
    compressed: bool = field(compare=False)

    @property
    def partition(self) -> str:
        """The partition directory name, `date=YYYY-MM-DD`."""
        return PARTITION_PREFIX + self.day

    @property
    def name(self) -> str:
        """`date=…/<file name>`: how problems and manifests name the file."""
        return f"{self.partition}/{self.path.name}"


class LineSource:
    """The whole lines of one file, read in bounded chunks that each end with a newline.

    A plain file is read up to its size when opened; if it then ends inside a line, a shared lock
    waits out any writer mid-write (writers hold an exclusive lock while they write), and what is
    still unterminated was left by a crash: a *torn* line, excluded and reported
    (`torn_line`, 1-based), never rewritten. For a gzip file, `trailing_garbage` counts bytes
    after its last member that do not start another. A line longer than `chain.MAX_LINE` is
    never held in memory: it reads as an empty line (not an entry) and is listed in `overlong`
    with its byte offset.
    All are known once `chunks()` is exhausted; `damage()` words them.
    """

    CHUNK = 8 << 20

    def __init__(self, file: LogFile, start: int = 0) -> None:
        self.file = file
        #: Plain files: begin at this byte offset, which must start a line (a reader's
        #: earlier end); line numbers then count from there.
        self.start = 0 if file.compressed else start
        self.lines = 0
        #: The byte offset just past the last whole line read (of the decompressed stream).
        self.end = self.start
        self.torn_line: int | None = None
        self.torn_bytes = 0
        self.trailing_garbage = 0
        self.overlong: list[Overlong] = []

    def chunks(self) -> Iterator[bytes]:
        """Blocks of whole lines, in file order (a second call reads the file afresh, and what
        it met replaces what the first one met)."""
        blocks = self._gzip_blocks() if self.file.compressed else self._plain_blocks()
        self.overlong.clear()
        self.torn_line, self.torn_bytes, self.trailing_garbage = None, 0, 0
        splitter = LineSplitter(chain.MAX_LINE, self.start, self.overlong)
        for chunk in splitter.chunks(blocks):
            self.lines, self.end = splitter.lines, splitter.end
            yield chunk
        self.lines, self.end = splitter.lines, splitter.end
        if splitter.rest:
            self.torn_line = self.lines + 1
            self.torn_bytes = splitter.rest

    def damage(self) -> list[tuple[int | None, str, str]]:
        """`(line, kind, detail)` of what `chunks()` met that is not whole lines of entries:
        a torn end, bytes after a gzip member, lines over the size limit."""
        found: list[tuple[int | None, str, str]] = [
            (
                bad.line,
                "line too long",
                f"{bad.length} bytes at byte offset {bad.offset}, over the "
                f"{chain.MAX_LINE // 1024} KiB limit of a stored line; skipped",
            )
            for bad in self.overlong
        ]
        if self.torn_line is not None and self.torn_bytes >= chain.MAX_LINE:
            found.append(
                (
                    self.torn_line,
                    "line too long",
                    f"{self.torn_bytes} bytes with no newline at the end, over the "
                    f"{chain.MAX_LINE // 1024} KiB limit of a stored line; skipped",
                )
            )
        elif self.torn_line is not None:
            found.append(
                (
                    self.torn_line,
                    "torn line",
                    f"{self.torn_bytes} bytes with no newline (a crash mid-write); excluded",
                )
            )
        if self.trailing_garbage:
            found.append(
                (None, "trailing data", f"{self.trailing_garbage} bytes after the last gzip member")
            )
        return found

    def _plain_blocks(self) -> Iterator[bytes]:
        path = self.file.path
        try:
            fd = _open_in_partition(path, os.O_RDONLY)
        except FileNotFoundError:
            gz = path.with_name(path.name + ".gz")
            if gz.exists():  # rotated between listing and opening
                self.file = LogFile(self.file.day, self.file.segment, gz, True)
                self.start = 0
                yield from self._gzip_blocks()
            return
        except OSError as exc:
            raise IntegrityError(f"{self.file.name}: cannot open: {_why(exc)}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise IntegrityError(f"{self.file.name}: not a regular file")
            size, done, last, settled = info.st_size, min(self.start, info.st_size), b"\n", False
            os.lseek(fd, done, os.SEEK_SET)
            while True:
                while done < size:
                    block = os.read(fd, min(self.CHUNK, size - done))
                    if not block:  # cut back by a writer whose write failed
                        size = done
                        break
                    done += len(block)
                    last = block[-1:]
                    yield block
                if last == b"\n" or settled:
                    break
                # The end is inside a line: a writer may be mid-write (it holds an exclusive
                # lock while it writes). Wait it out, note where it stopped, and read on
                # without holding the lock while the caller consumes blocks.
                if lock_within(fd, fcntl.LOCK_SH, LOCK_WAIT):
                    try:
                        size = os.fstat(fd).st_size
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                else:  # held far longer than any write takes: not a writer of ours
                    size = os.fstat(fd).st_size
                settled = True
        except OSError as exc:
            raise IntegrityError(f"{self.file.name}: cannot read: {_why(exc)}") from None
        finally:
            os.close(fd)

    def _gzip_blocks(self) -> Iterator[bytes]:
        """The decompressed stream (every gzip member in turn), the archive read a block at a
        time (never whole)."""
        try:
            fd = _open_in_partition(self.file.path, os.O_RDONLY)
        except OSError as exc:
            raise IntegrityError(f"{self.file.name}: cannot open: {_why(exc)}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise IntegrityError(f"{self.file.name}: not a regular file")
            inflater = gzmembers.Inflater(fd, info.st_size, self.CHUNK)
            yield from inflater.blocks()
            self.trailing_garbage = inflater.trailing
        except gzmembers.GzipError as exc:
            raise IntegrityError(f"{self.file.name}: {exc}") from None
        except OSError as exc:
            raise IntegrityError(f"{self.file.name}: cannot read: {_why(exc)}") from None
        finally:
            os.close(fd)


@dataclass
class AppendReport:
    """What an append did: entries written, and exact duplicates (same id and content) skipped."""

    written: int = 0
    duplicates: int = 0
    #: Where the write went: the file's name and the byte range of the lines written
    #: (nothing written: no file).
    file: str = ""
    start: int = 0
    end: int = 0
    #: The file's fstat just after the write, still under the writer's lock: what a line
    #: index built from the lines written (not read back) must find the file to be.
    stat: os.stat_result | None = None


class AuditStore:
    """An audit log directory: record and import entries, list partitions, read files.

    >>> store = AuditStore("/var/log/audit-admin")
    >>> entry = store.record({"action": "login", "actorId": "u-1", "organizationId": "org-1"})
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        writer_id: str | None = None,
        clock: Clock = utc_now,
        salt: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else default_log_dir()
        #: Each new line's salt (chain version 2: a redactable store), from its content: random
        #: unless a reproducible fixture (sample_logs) derives it; a guessable salt protects
        #: nothing.
        self.salt = salt or _random_salt
        self.writer_id = writer_id or default_writer_id()
        if not _SEGMENT.fullmatch(self.writer_id) or "+" in self.writer_id:
            raise UsageError(f"writer id {self.writer_id!r}: use letters, digits, '.' and '-'")
        self.clock = clock
        self._catalog: Catalog | None = None
        self._marked = False
        #: The store's setting (`is_redactable`), read once, at this writer's first append.
        self._redactable: bool | None = None
        #: Set by a long-lived reader (`audit serve`): directory listings reused while the
        #: directories are unchanged (see `listing`); None lists on every call.
        self.listings: DirectoryListings | None = None

    # ------------------------------------------------------------------ catalog and layout
    @property
    def catalog(self) -> Catalog:
        """The action catalog of this log directory (builtins plus `_catalog.json`)."""
        if self._catalog is None:
            self._catalog = Catalog.load(self.root)
        return self._catalog

    def reload_catalog(self) -> None:
        """Forget the cached catalog, e.g. after `audit actions add` changed the file."""
        self._catalog = None

    def ensure_root(self) -> None:
        """Create the log directory (mode 0700, missing parents too) if it does not exist, and
        its marker (`STORE_MARKER`) if it lacks one.

        The log directory may be a symlink to a directory (the operator's choice); a partition
        directory may not (see `_make_dir`)."""
        if self._marked:
            return
        if not self.root.is_dir():
            try:
                self.root.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NotRecordedError(
                    f"{self.root.parent}: cannot create: {exc.strerror}; entry NOT recorded"
                ) from None
            _make_marked_dir(self.root)
        try:
            _write_marker(self.root)
        except NotRecordedError:
            # A store made before the marker, whose directory this writer may not add files
            # to (it only appends to partitions), is still a store: the marker is optional
            # there. A directory that is not yet a store must be marked, or nothing is written.
            if store_problem(self.root) is not None:
                raise
        self._marked = True

    def days(self, first: str | None = None, last: str | None = None) -> list[str]:
        """The days (`YYYY-MM-DD`) that have a partition, oldest first, within [first, last].
        Only real directories named exactly `date=YYYY-MM-DD` count (see `odd_partitions`)."""
        days = [
            day
            for day in self._partitions()[0]
            if (first is None or day >= first) and (last is None or day <= last)
        ]
        days.sort()
        return days

    def odd_partitions(self) -> list[tuple[str, str]]:
        """`(name, why)` of root entries that look like partitions but are not counted: a
        symlink, a non-directory, or a name that is not exactly `date=YYYY-MM-DD`."""
        return self._partitions()[1]

    def _partitions(self) -> tuple[list[str], list[tuple[str, str]]]:
        if self.listings is not None:
            days, odd = self.listings.get(self.root, self._list_partitions)
            return list(days), list(odd)
        return self._list_partitions()

    def _list_partitions(self) -> tuple[list[str], list[tuple[str, str]]]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise UsageError(
                f"{self.root}: cannot list the log directory: {exc.strerror}"
            ) from None
        days, odd = [], []
        for entry in entries:
            name = entry.name
            if not name.startswith(PARTITION_PREFIX):
                continue
            match = _PARTITION.fullmatch(name)
            try:
                link, directory = entry.is_symlink(), entry.is_dir(follow_symlinks=False)
            except OSError:
                link = directory = False
            if not match:
                odd.append((name, "not a partition name (expected date=YYYY-MM-DD); ignored"))
            elif link:
                odd.append((name, "is a symbolic link, not a partition directory; ignored"))
            elif not directory:
                odd.append((name, "cannot list the partition: not a directory; ignored"))
            else:
                days.append(match.group(1))
        odd.sort()
        return days, odd

    def files(self, day: str) -> list[LogFile]:
        """The files of one partition, by segment. A plain file whose `.gz` twin exists (a
        rotation interrupted before it removed the original) is left out: the twin holds it."""
        if self.listings is not None:
            where = f"{self.root}{os.sep}{PARTITION_PREFIX}{day}"  # no Path made when reused
            return list(self.listings.get(where, lambda: self._listing(day, strays=False)[0]))
        return self._listing(day, strays=False)[0]

    def listing(self, day: str) -> tuple[list[LogFile], list[Path]]:
        """`files(day)` and `stray_files(day)` from one listing of the partition (one snapshot:
        verify's survey lists every partition once)."""
        return self._listing(day, strays=True)

    def listing_names(self, day: str) -> tuple[list[tuple[str, bool]], list[str]]:
        """`listing(day)` without a Path made: `(segment, compressed)` of each file and the
        names of the strays (verify's survey lists every partition of the store)."""
        files, strays = self._names(day, strays=True)
        return [(segment, compressed) for segment, _, compressed in files], strays

    def _listing(self, day: str, strays: bool) -> tuple[list[LogFile], list[Path]]:
        directory = self.root / (PARTITION_PREFIX + day)
        files, others = self._names(day, strays)
        listed = [LogFile(day, segment, directory / name, gz) for segment, name, gz in files]
        return listed, [directory / name for name in others]

    def _names(self, day: str, strays: bool) -> tuple[list[tuple[str, str, bool]], list[str]]:
        """`(segment, file name, compressed)` of each file of a partition by segment, and (if
        `strays`) the names of the entries that are not log files."""
        try:
            names = os.listdir(self.root / (PARTITION_PREFIX + day))
        except FileNotFoundError:
            return [], []
        except OSError as exc:  # a file planted as `date=…`, or no permission to list it
            raise IntegrityError(
                f"{PARTITION_PREFIX}{day}: cannot list the partition: {exc.strerror}"
            ) from None
        found: dict[str, tuple[str, bool]] = {}
        for name in names:
            if name.endswith(GZIP):
                segment, compressed = name[: -len(GZIP)], True
            elif name.endswith(PLAIN):
                segment, compressed = name[: -len(PLAIN)], False
            else:
                continue
            if not _SEGMENT.fullmatch(segment):
                continue
            if segment in found and not compressed:
                continue
            found[segment] = (name, compressed)
        files = [(segment, *found[segment]) for segment in sorted(found)]
        if not strays:
            return files, []
        known = {name for name, _ in found.values()}
        listed = set(names)
        return files, [
            name
            for name in sorted(names)
            if name not in known
            and not name.endswith(".tmp")
            and not (name.endswith(PLAIN) and name + ".gz" in listed)
        ]

    def stray_files(self, day: str) -> list[Path]:
        """Entries of a partition directory that are not log files (planted or foreign)."""
        return self.listing(day)[1]

    # ------------------------------------------------------------------ reading
    def lines(self, file: LogFile) -> LineSource:
        """A bounded-memory reader of the whole lines of `file` (see LineSource)."""
        return LineSource(file)

    def iter_lines(self, file: LogFile) -> Iterator[tuple[int, bytes]]:
        """`(line number, line with newline)` for each whole line of `file`."""
        number = 0
        for chunk in LineSource(file).chunks():
            start = 0
            while start < len(chunk):
                end = chunk.index(b"\n", start) + 1
                number += 1
                yield number, chunk[start:end]
                start = end

    # ------------------------------------------------------------------ writing
    def record(self, data: Mapping[str, Any], *, target_name: str | None = None) -> dict[str, Any]:
        """Validate one entry, fill its generated fields, append it durably and return it.

        An `id` given by the caller that is already stored is refused (DuplicateIdError)."""
        from .model import build_entry, dumps_entry  # pydantic: only for writers (startup)

        entry = build_entry(data, self.catalog, clock=self.clock, target_name=target_name)
        content = dumps_entry(entry)
        report = self.append_contents(
            entry["createdAt"][:10], [(entry["id"], content)], check_ids="id" in data
        )
        if report.duplicates:
            raise DuplicateIdError(f"id: {entry['id']} is already recorded")
        return entry

    @property
    def redactable(self) -> bool:
        """Whether this writer writes chain version 2 lines (the store's setting, read once)."""
        if self._redactable is None:
            self._redactable = is_redactable(self.root)
        return self._redactable

    def append_contents(
        self,
        day: str,
        items: list[tuple[str, bytes]],
        *,
        check_ids: bool = True,
        known_ids: IdIndex | None = None,
    ) -> AppendReport:
        """Append canonical entries `(id, content)` of one day in one locked write, chained and
        fsynced. With `check_ids`, ids already in the partition are skipped when the stored
        content is identical and refused (DuplicateIdError, nothing written) when it differs."""
        if not items:
            return AppendReport()
        partition = PARTITION_PREFIX + day
        self.ensure_root()
        redactable = self.redactable  # before anything is created: a bad marker stops here
        directory = self.root / partition
        index = known_ids if known_ids is not None else (IdIndex(self, day) if check_ids else None)
        with _locked_segment(directory, self.writer_id) as target:
            if index is not None:
                index.refresh()
                items, duplicates = index.filter_new(items)
            else:
                duplicates = 0
            if not items:
                return AppendReport(0, duplicates)
            previous = target.last_link or chain.genesis(partition, target.segment)
            if redactable:
                lines = []
                for _, content in items:
                    # Chain version 2: the link commits to personal fields through salted
                    # commitments, so a redaction can later remove them (auditcli.commitments).
                    stored, hashed = salted(content, self.salt(content))
                    previous = chain.link(previous, hashed)
                    lines.append(chain.chained_line(stored, previous))
                payload = b"".join(lines)
            else:  # chain version 1: the link commits to the line's exact bytes
                payload, _ = chain.chained_lines(previous, list(map(itemgetter(1), items)))
            target.write(payload)
            written = os.fstat(target.fd)
            if index is not None:
                index.note_written(target.path.name, items, len(payload))
            start = target.written_from or 0
        end = start + len(payload)
        return AppendReport(len(items), duplicates, target.path.name, start, end, written)

    def append(self, entries: Iterable[Mapping[str, Any]]) -> AppendReport:
        """Validate and append entries (Python API); grouped by day, one locked write per day."""
        from .model import build_entry, dumps_entry

        by_day: dict[str, list[tuple[str, bytes]]] = {}
        for data in entries:
            entry = build_entry(data, self.catalog, clock=self.clock)
            by_day.setdefault(entry["createdAt"][:10], []).append((entry["id"], dumps_entry(entry)))
        report = AppendReport()
        for day, items in sorted(by_day.items()):
            part = self.append_contents(day, items)
            report.written += part.written
            report.duplicates += part.duplicates
        return report


_DIGESTER = partial(hashlib.blake2b, digest_size=16)


def _random_salt(_content: bytes) -> bytes:
    return os.urandom(SALT_BYTES)


def content_digest(content: bytes) -> bytes:
    """A short digest of an entry's canonical content, to tell a re-delivery from a conflict."""
    return _DIGESTER(content).digest()


class IdIndex:
    """The ids stored in one partition with a digest of each entry, read incrementally."""

    def __init__(self, store: AuditStore, day: str, *, remember_written: bool = True) -> None:
        self.store, self.day = store, day
        self.ids: dict[str, bytes] = {}
        #: False for a writer whose own items never repeat an id (an import, which checked
        #: its input): what it writes is then skipped, not hashed and kept.
        self.remember_written = remember_written
        self._read_to: dict[str, int] = {}  # file name -> bytes of whole lines already read

    def refresh(self) -> None:
        """Read the ids of lines appended to the partition since the last refresh: only the
        bytes past what was read before, so an import's batches do not re-read the day."""
        for file in self.store.files(self.day):
            name = file.path.name
            start = self._read_to.get(name, 0)
            if file.compressed and name in self._read_to:
                continue  # a closed file does not change
            try:
                if start and os.stat(file.path, follow_symlinks=False).st_size < start:
                    start = 0  # replaced by a shorter file: read it again
            except FileNotFoundError:
                continue
            source = LineSource(file, start)
            for chunk in source.chunks():
                for line in chunk.split(b"\n")[:-1]:
                    if chain.is_chained_line(line + b"\n"):
                        content = chain.content_of(line + b"\n")
                        self.ids[_id_of(content)] = content_digest(content)
            self._read_to[name] = source.end  # a too-long line is skipped, its bytes counted

    def note_written(self, file_name: str, items: list[tuple[str, bytes]], written: int) -> None:
        """Remember entries this process just appended to `file_name` (`written` bytes): no
        need to re-read them."""
        if self.remember_written:
            for entry_id, content in items:
                self.ids[entry_id] = content_digest(content)
        self._read_to[file_name] = self._read_to.get(file_name, 0) + written

    def filter_new(self, items: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], int]:
        """Drop items whose id is stored with identical content; refuse one stored differently."""
        stored = self.ids
        ids = list(map(itemgetter(0), items))
        if stored.keys().isdisjoint(ids) and len(set(ids)) == len(ids):
            return list(items), 0  # the usual case, decided in C-level passes
        fresh, duplicates = [], 0
        batch: dict[str, bytes] = {}  # id -> content, of the items kept so far
        for entry_id, content in items:
            # Hashed only when the id is stored already: an import's new entries are not.
            known = stored.get(entry_id)
            if known is not None:
                same = known == content_digest(content)
            elif entry_id in batch:
                same = batch[entry_id] == content
            else:
                batch[entry_id] = content
                fresh.append((entry_id, content))
                continue
            if not same:
                raise DuplicateIdError(f"id: {entry_id} is already recorded with different content")
            duplicates += 1
        return fresh, duplicates


def _id_of(content: bytes) -> str:
    return content[7 : content.index(b'"', 7)].decode()


# ---------------------------------------------------------------------- low-level file work
def _make_dir(path: Path, parent: Path | None = None, *, follow: bool = False) -> None:
    """Create directory `path` (0700) and fsync `parent`. An existing symlink is refused unless
    `follow`: a planted `date=…` link must not send entries to another directory."""
    try:
        os.mkdir(path, _DIR_MODE)
    except FileExistsError:
        if path.is_symlink() and not follow:
            raise NotRecordedError(
                f"{path}: is a symbolic link, not a directory (refused); entry NOT recorded"
            ) from None
        if not path.is_dir():
            raise NotRecordedError(
                f"{path}: exists and is not a directory; entry NOT recorded"
            ) from None
        return
    except OSError as exc:
        raise NotRecordedError(
            f"{path}: cannot create: {exc.strerror}; entry NOT recorded"
        ) from None
    if parent is not None:
        _fsync_dir(parent)


def _make_marked_dir(root: Path) -> None:
    """Create log directory `root` with its marker already inside: made under a temporary name
    and renamed into place, so a reader never sees it empty (and refuses it) while a first
    writer creates it. If another writer created it meanwhile, theirs stays."""
    staging = root.with_name(f".{root.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        _make_dir(staging)
        _write_marker(staging)
        os.rename(staging, root)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            (staging / STORE_MARKER).unlink(missing_ok=True)
            staging.rmdir()
        if isinstance(exc, OSError) and root.is_dir():
            return  # another writer created it first: theirs is the log directory
        if isinstance(exc, OSError):
            raise NotRecordedError(
                f"{root}: cannot create: {_why(exc)}; entry NOT recorded"
            ) from None
        if isinstance(exc, NotRecordedError):  # name the log directory, not the staging one
            raise NotRecordedError(str(exc).replace(str(staging), str(root))) from None
        raise
    _fsync_dir(root.parent)


def _write_marker(root: Path) -> None:
    """Create `root`'s marker unless it exists (O_EXCL: concurrent writers race harmlessly)."""
    path = root / STORE_MARKER
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_SURPRISES, _FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise NotRecordedError(f"{path}: cannot create: {_why(exc)}; entry NOT recorded") from None
    try:
        os.write(fd, _MARKER_CONTENT)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(root)


def _replace_marker(root: Path, content: bytes) -> None:
    """Replace `root`'s marker by `content` atomically (a temporary file renamed over it), so a
    writer reads either the old setting or the new one, never a partial file."""
    temp = root / f".{STORE_MARKER}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_SURPRISES, _FILE_MODE)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, root / STORE_MARKER)
        fsync_dir(root)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise NotRecordedError(
            f"{root / STORE_MARKER}: cannot rewrite: {_why(exc)}; setting NOT changed"
        ) from None


def _open_partition(directory: Path) -> int:
    """A descriptor of a partition directory; a symlink in its place raises ELOOP."""
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except NotADirectoryError:
        if directory.is_symlink():  # O_DIRECTORY | O_NOFOLLOW says ENOTDIR for a link
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(directory)) from None
        raise


def _open_in_partition(path: Path, flags: int) -> int:
    """Open a file of a partition following no symlink, neither the file nor its partition
    directory; O_NONBLOCK so that a FIFO planted in place of a file cannot hang the caller."""
    dfd = _open_partition(path.parent)
    try:
        return os.open(
            path.name,
            flags | _NO_SURPRISES,
            _FILE_MODE,
            dir_fd=dfd,
        )
    finally:
        os.close(dfd)


#: How often a writer re-creates a partition that retention moved away while it waited.
_PARTITION_ATTEMPTS = 100


class partition_lock:  # used as a context manager, reads like a function
    """A `flock` on a partition directory, opened without following a symlink: writers hold it
    shared for the whole of an append, retention holds it exclusive from its receipt to the
    rename that deletes the partition. So no write lands in a partition after retention counted
    it, and retention never counts a write in progress.

    Yields the directory's descriptor. Shared (writers): once the lock is granted, the
    descriptor must still be the directory at `path`; when retention moved or removed it in
    the meantime, the lock is given up and `__enter__` raises `PartitionMoved`."""

    def __init__(self, path: Path, *, exclusive: bool) -> None:
        self.path, self.exclusive, self.fd = path, exclusive, -1

    def __enter__(self) -> int:
        self.fd = _open_partition(self.path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)
            if not self.exclusive:
                held = os.fstat(self.fd)
                try:
                    now = os.stat(self.path, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                if now is None or (now.st_ino, now.st_dev) != (held.st_ino, held.st_dev):
                    raise PartitionMoved(str(self.path))
        except BaseException:
            os.close(self.fd)
            self.fd = -1
            raise
        return self.fd

    def __exit__(self, *exc_info: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


class PartitionMoved(Exception):
    """Retention moved the partition away while a writer waited for it (internal: retried)."""


def _fsync_dir(path: Path) -> None:
    try:
        fsync_dir(path)
    except OSError as exc:
        raise NotRecordedError(
            f"{path}: cannot sync the directory: {exc.strerror}; entry NOT recorded"
        ) from None


class _Segment:
    """An open, exclusively locked segment file that is safe to append to."""

    def __init__(self, fd: int, path: Path, segment: str, last_link: bytes | None) -> None:
        self.fd, self.path, self.segment, self.last_link = fd, path, segment, last_link
        self.written_from: int | None = None  # where this process's durable write began

    def write(self, payload: bytes) -> None:
        """Write `payload` at the end, fsync; on any failure cut the file back and raise."""
        start = os.lseek(self.fd, 0, os.SEEK_END)
        view = memoryview(payload)
        try:
            while view:
                written = os.write(self.fd, view)
                if written == 0:  # pragma: no cover - regular files never return 0 for n > 0
                    raise OSError(errno.EIO, "short write")
                view = view[written:]
            os.fsync(self.fd)
        except OSError as exc:
            raise self._failed(self.fd, start, exc) from None
        self.written_from = start

    def close(self, check: bool) -> None:
        """Close the file, which releases the lock. A close error after a write (NFS reports
        write-back errors there) cuts the write back, through a duplicate descriptor that keeps
        the lock meanwhile, and raises NotRecordedError when `check`."""
        spare = None
        if self.written_from is not None:
            try:
                spare = os.dup(self.fd)
            except OSError:
                spare = None
        try:
            os.close(self.fd)
        except OSError as exc:
            if spare is not None and self.written_from is not None:
                error = self._failed(spare, self.written_from, exc)
                if check:
                    raise error from None
            elif check:
                raise NotRecordedError(f"{self.path}: close failed: {exc.strerror}") from None
        finally:
            if spare is not None:
                with contextlib.suppress(OSError):
                    os.close(spare)

    def _failed(self, fd: int, start: int, exc: OSError) -> NotRecordedError:
        # Removing our own unfinished bytes is not a rewrite: no reader was promised them, and
        # leaving them would glue the next writer's line onto a fragment.
        try:
            os.ftruncate(fd, start)
            left = "nothing was written"
        except OSError:
            left = "a partial line may remain: readers report it as torn, writers move on"
        with contextlib.suppress(OSError):  # best effort: the failing device may refuse it too
            os.fsync(fd)
        return NotRecordedError(f"{self.path}: {exc.strerror or exc}; entry NOT recorded ({left})")


class _locked_segment:  # used as a context manager, reads like a function
    """Find this writer's current segment in `directory`, open it (created 0600), lock it.

    A segment whose `.gz` twin exists is closed (rotated); one with a torn or foreign last line
    is damaged and never written again (like journald): the writer moves to the next segment.
    """

    def __init__(self, directory: Path, writer_id: str) -> None:
        self.directory, self.writer_id = directory, writer_id
        self.segment: _Segment | None = None
        self.partition: partition_lock | None = None
        self.dfd = -1

    def __enter__(self) -> _Segment:
        # Every file is opened relative to this descriptor of the partition, itself opened
        # without following a symlink: a link swapped in after `_make_dir` is not followed.
        # It is held under the partition's shared lock until the write is done: retention
        # (which takes it exclusive) then either counted this write in its receipt or finds it
        # in a partition it has not yet counted. A partition that retention moved away while
        # we waited is made again: a late entry for a deleted day lands in a new partition of
        # that day, which survives (the next retention run deletes it with a receipt).
        for _ in range(_PARTITION_ATTEMPTS):
            _make_dir(self.directory, parent=self.directory.parent)
            lock = partition_lock(self.directory, exclusive=False)
            try:
                self.dfd = lock.__enter__()
            except (PartitionMoved, FileNotFoundError):  # retention renamed it just now
                continue
            except OSError as exc:
                raise NotRecordedError(
                    f"{self.directory}: {_why(exc)}; entry NOT recorded"
                ) from None
            self.partition = lock
            break
        else:
            raise NotRecordedError(
                f"{self.directory}: deleted by retention again and again while waiting to "
                "write; entry NOT recorded"
            )
        try:
            for number in range(1, 100_000):
                name = self.writer_id if number == 1 else f"{self.writer_id}+{number}"
                segment = self._try(name)
                if segment is not None:
                    self.segment = segment
                    return segment
        except BaseException:
            self.partition.__exit__()
            raise
        self.partition.__exit__()
        raise NotRecordedError(f"{self.directory}: no usable segment left; entry NOT recorded")

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.segment is not None:
                self.segment.close(check=exc_info[0] is None)
        finally:
            assert self.partition is not None
            self.partition.__exit__()

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.dfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _try(self, name: str) -> _Segment | None:
        plain, gz = name + PLAIN, name + GZIP
        path = self.directory / plain
        while True:
            if self._exists(gz):
                return None
            try:
                existed = self._exists(plain)
                fd = os.open(
                    plain,
                    os.O_RDWR | os.O_APPEND | os.O_CREAT | _NO_SURPRISES,
                    _FILE_MODE,
                    dir_fd=self.dfd,
                )
            except OSError as exc:
                raise NotRecordedError(f"{path}: {_why(exc)}; entry NOT recorded") from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise NotRecordedError(f"{path}: not a regular file; entry NOT recorded")
                if info.st_nlink > 1:
                    # Hard-linked elsewhere (planted, or a backup tool's link): appending would
                    # write through to the other name, which may be outside the log directory.
                    # Like a damaged file, it is never written again.
                    os.close(fd)
                    return None
                fcntl.flock(fd, fcntl.LOCK_EX)
                # Rotation may have replaced or removed the file while we waited for the lock.
                try:
                    now = os.stat(plain, dir_fd=self.dfd, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                if now is None or (now.st_ino, now.st_dev) != (info.st_ino, info.st_dev):
                    os.close(fd)
                    continue
                if self._exists(gz):
                    os.close(fd)
                    return None
                if not existed:
                    try:
                        os.fsync(self.dfd)
                    except OSError as exc:
                        raise NotRecordedError(
                            f"{self.directory}: cannot sync the directory: {exc.strerror}; "
                            "entry NOT recorded"
                        ) from None
                last_link, usable = _last_link(fd)
                if not usable:
                    os.close(fd)
                    return None
                return _Segment(fd, path, name, last_link)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise


def _last_link(fd: int) -> tuple[bytes | None, bool]:
    """The chain link of the file's last line (None for an empty file), and whether the file
    may be appended to: it may not when its end is torn or its last line is not ours."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None, True
    start = max(0, size - _TAIL_BYTES)
    tail = os.pread(fd, size - start, start)
    if not tail.endswith(b"\n"):
        return None, False
    begin = tail.rfind(b"\n", 0, len(tail) - 1) + 1
    if begin == 0 and start > 0:
        return None, False
    parsed = chain.split_line(tail[begin:])
    if parsed is None:
        return None, False
    try:  # a line can keep the stored shape and still be corrupted inside
        orjson.loads(parsed[0])
    except orjson.JSONDecodeError:
        return None, False
    return parsed[1], True
