"""Keeping a store for years: rotation (gzip closed days), retention (delete old days with a
receipt), counts grouped by a key, and following the store as it grows.

Rotation never rewrites or truncates a file a writer may hold. For each plain file of a closed
day it takes the same exclusive `flock` the writers take, gzips the bytes to a hidden temp file in
the same directory (independent gzip members of whole lines, see `gzmembers`: one gzip file to
every other reader, seekable to ours), fsyncs it, decompresses it again and compares (indexing
its lines on the way), renames it to `<name>.jsonl.gz`, fsyncs the directory, and only then
unlinks the plain file; the line index of the archive is then saved (derived data: a rotation
killed before that leaves it to the first query). A writer that
was waiting for the lock finds the file gone or its `.gz` twin present and moves on to its next
segment (`<writer>+2.jsonl`), so a late entry for a day being compressed is never lost; the next
run compresses that segment too. Killed at any step, the next run completes the work: a leftover
temp is removed and redone; a plain file beside its `.gz` twin (readers already prefer the twin)
is removed once its bytes are checked equal to the twin's.

Retention holds the partition's lock exclusive (writers hold it shared while appending) and the
manifest lock from its receipt to the rename into `_deleting/`, so the receipt counts exactly
what is deleted and no seal falls between them. Everything rotation removes is reached through
directory descriptors opened without following a link (it never leaves the log directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any

import orjson

from . import chain, gzmembers, lineindex
from .errors import IntegrityError, NotRecordedError, UsageError, inert
from .query import Filters, Problem, QueryEngine, _scan_needle, split_lines
from .safeio import lock_within, write_all
from .store import (
    _NO_SURPRISES,
    LOCK_WAIT,
    PARTITION_PREFIX,
    PLAIN,
    AuditStore,
    LogFile,
    _open_in_partition,
    _why,
    partition_lock,
)

ROTATE_LOCK = "_rotate.lock"
#: Partitions being deleted by retention are first moved here (hidden from every engine).
DELETING_DIR = "_deleting"
_TEMP_SUFFIX = ".rotate.tmp"
_BLOCK = 4 << 20


# =============================================================================== rotation
@dataclass
class Step:
    """One thing rotation did (or, with dry_run, would do)."""

    action: str  # compress | finish | remove-temp | delete | purge | problem
    target: str  # date=…/file, or date=… for a whole partition
    detail: str = ""
    bytes_in: int = 0
    bytes_out: int = 0

    def __str__(self) -> str:
        return f"{self.action:<9} {self.target}" + (f"  {self.detail}" if self.detail else "")


@dataclass
class RotateReport:
    """What one `rotate` run did."""

    today: str
    compress_before: str  # days strictly before this one are closed (compressed)
    delete_before: str | None  # days strictly before this one are deleted
    dry_run: bool
    steps: list[Step] = field(default_factory=list)

    @property
    def problems(self) -> list[Step]:
        """Steps that could not be done (left in place, nothing lost)."""
        return [step for step in self.steps if step.action == "problem"]

    def count(self, action: str) -> int:
        """How many steps of one kind."""
        return sum(1 for step in self.steps if step.action == action)


def cutoff(today: date, days: int) -> str:
    """The first day that is *not* older than `days` days before `today`: a day D is selected
    (compressed or deleted) when `today - D >= days`, i.e. when D < today - days + 1."""
    return (today - timedelta(days=days - 1)).isoformat()


def rotate(
    store: AuditStore,
    *,
    compress_after: int = 1,
    delete_after: int | None = None,
    dry_run: bool = False,
    reason: str = "retention",
    signing_key: Any = None,
    on_step: Callable[[Step], None] | None = None,
) -> RotateReport:
    """Compress closed days and, with `delete_after`, delete old ones; see the module doc.

    A day D is *closed* when it is at least `compress_after` days before today (UTC): with the
    default 1, every day before today. With `delete_after` N, a day at least N days old is
    deleted as a whole partition after a receipt is written through
    `integrity.write_receipt`. Idempotent: a second run finds nothing to do. Only one rotation
    runs at a time (a lock file in the log directory). `signing_key` signs receipts (default:
    AUDIT_SIGNING_KEY, as for seals)."""
    if compress_after < 0:
        raise UsageError("--compress-after: must be 0 or more days")
    if delete_after is not None and delete_after < 1:
        raise UsageError("--delete-after: must be at least 1 day (today is never deleted)")
    today = store.clock().astimezone(UTC).date()
    report = RotateReport(
        today=today.isoformat(),
        compress_before=cutoff(today, compress_after),
        delete_before=cutoff(today, delete_after) if delete_after is not None else None,
        dry_run=dry_run,
    )

    def note(step: Step) -> None:
        report.steps.append(step)
        if on_step is not None:
            on_step(step)

    if not store.root.is_dir():
        return report
    with _RotationLock(store.root, dry_run):
        _purge_deleting(store, dry_run, note)
        deleted: set[str] = set()
        if report.delete_before is not None:
            for day in store.days(last=_day_before(report.delete_before)):
                _delete_day(store, day, reason, signing_key, dry_run, note)
                deleted.add(day)
        for day in store.days(last=_day_before(report.compress_before)):
            if day not in deleted:  # (a dry run leaves them in place)
                _compress_day(store, day, dry_run, note)
        for name, why in store.odd_partitions():  # never followed, never counted: reported
            note(Step("problem", inert(name), why))
    return report


def _day_before(day: str) -> str:
    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()


class _RotationLock:
    """An exclusive lock on LOGDIR/_rotate.lock: two rotations never work on one file."""

    def __init__(self, root: Path, dry_run: bool) -> None:
        self.root, self.dry_run, self.fd = root, dry_run, -1

    def __enter__(self) -> None:
        if self.dry_run:
            return
        try:
            self.fd = os.open(
                self.root / ROTATE_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
            )
        except OSError as exc:
            raise NotRecordedError(f"{self.root / ROTATE_LOCK}: {exc.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise UsageError("another `audit rotate` is running on this log directory") from None

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


# ------------------------------------------------------------------------------- compress
def _compress_day(store: AuditStore, day: str, dry_run: bool, note: Callable[[Step], None]) -> None:
    partition = PARTITION_PREFIX + day
    try:
        dfd = open_dir_nofollow(store.root / partition)
    except FileNotFoundError:
        return
    except IntegrityError as exc:  # a symlink in place of the partition directory
        note(Step("problem", partition, str(exc)))
        return
    try:
        names = sorted(os.listdir(dfd))
        # Only the store's own log files: anything else in the directory is not ours to touch.
        try:
            segments = {file.segment for file in store.files(day)}
        except IntegrityError as exc:
            note(Step("problem", partition, str(exc)))
            return
        for name in names:
            where = f"{partition}/{name}"
            if name.startswith(".") and name.endswith(_TEMP_SUFFIX):
                # Left by a rotation killed before its rename: the plain file is still there.
                note(Step("remove-temp", where, "left by an interrupted rotation"))
                if not dry_run:
                    _unlink_at(dfd, name)
                    os.fsync(dfd)
                continue
            if not name.endswith(PLAIN) or name[: -len(PLAIN)] not in segments:
                continue
            try:
                if _exists_at(dfd, name + ".gz"):
                    done = _finish(dfd, name, where, dry_run, note)
                    index = None
                else:
                    done, index = _compress(dfd, name, where, dry_run, note)
            except IntegrityError as exc:
                note(Step("problem", where, str(exc)))
                continue
            if done:  # the plain file's line index (derived data) describes a file now gone
                _remove_under(store.root, (lineindex.INDEX_DIR, partition), name + ".idx")
            if index is not None:
                lineindex.save(store.root, partition, name + ".gz", index)
    finally:
        os.close(dfd)


def _exists_at(dfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _open_locked(dfd: int, name: str) -> int | None:
    """Open `name` in the partition `dfd` (never through a symlink) and take the writers'
    exclusive lock; None when the file is gone or was replaced while we waited."""
    try:
        fd = os.open(name, os.O_RDONLY | _NO_SURPRISES, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IntegrityError(f"cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError("not a regular file; left alone")
        if not lock_within(fd, fcntl.LOCK_EX, _ROTATE_LOCK_WAIT):
            raise IntegrityError("its writers' lock stays held; left alone")
        try:
            now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_ino, now.st_dev) != (info.st_ino, info.st_dev):
            os.close(fd)
            return None
        return fd
    except BaseException:
        os.close(fd)
        raise


#: FS_IOC_GETFLAGS and its append-only / immutable bits (linux/fs.h).
_FS_IOC_GETFLAGS, _FS_APPEND_FL, _FS_IMMUTABLE_FL = 0x80086601, 0x20, 0x10


def _unremovable(fd: int) -> bool:
    """Whether the file carries `chattr +a` or `+i`: it cannot be unlinked, so compressing it
    would leave a `.gz` twin beside a file that never goes."""
    buffer = bytearray(8)
    try:
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buffer)
    except OSError:  # the file system has no such flags
        return False
    return bool(int.from_bytes(buffer[:4], "little") & (_FS_APPEND_FL | _FS_IMMUTABLE_FL))


def _compress(
    dfd: int, name: str, where: str, dry_run: bool, note: Callable[[Step], None]
) -> tuple[bool, lineindex.LineIndex | None]:
    """Compress one plain file of partition `dfd`: whether the plain file is gone, and the line
    index of the archive made while checking it (None when the file is not indexable)."""
    if dry_run:
        try:
            size = os.stat(name, dir_fd=dfd, follow_symlinks=False).st_size
        except FileNotFoundError:
            size = 0
        note(Step("compress", where, f"{size} bytes (dry run)", size, 0))
        return False, None
    fd = _open_locked(dfd, name)
    if fd is None:
        return False, None
    temp = f".{name[: -len(PLAIN)]}{_TEMP_SUFFIX}"
    gz = name + ".gz"
    renamed = False
    check = -1
    try:
        if _exists_at(dfd, gz):  # compressed by someone else while we waited for the lock
            return False, None
        if _unremovable(fd):
            raise IntegrityError(
                "not compressed: the file is append-only or immutable (chattr), so it could "
                "not be removed afterwards; left as is"
            )
        _unlink_at(dfd, temp)
        size, packed, index, check = write_gzip(dfd, temp, iter(lambda: os.read(fd, _BLOCK), b""))
        os.rename(temp, gz, src_dir_fd=dfd, dst_dir_fd=dfd)
        renamed = True
        os.fsync(dfd)
        os.unlink(name, dir_fd=dfd)
        os.fsync(dfd)
        if index is not None:  # the rename changed the archive's ctime: index what is there now
            index.ident = lineindex.identity(os.fstat(check))
    except OSError as exc:
        if renamed and _exists_at(dfd, name):
            # The original stays, so its twin goes: a plain file that cannot be removed (or a
            # rename not made durable) must not leave a `.gz` that the next run trips over.
            with contextlib.suppress(OSError):
                _unlink_at(dfd, gz)
                os.fsync(dfd)
        with contextlib.suppress(OSError):
            _unlink_at(dfd, temp)
        raise IntegrityError(
            f"not compressed ({exc.strerror or exc}); the original is kept"
        ) from None
    finally:
        os.close(fd)  # releases the lock: a waiting writer now finds the file gone
        if check >= 0:
            os.close(check)
    ratio = f"{size} -> {packed} bytes" + (f" ({packed * 100 // size}%)" if size else "")
    note(Step("compress", where, ratio, size, packed))
    return True, index


def write_gzip(
    dfd: int, temp: str, blocks: Iterable[bytes]
) -> tuple[int, int, lineindex.LineIndex | None, int]:
    """Write `blocks` as seekable gzip (independent members of whole lines, gzmembers.Packer)
    to the new file `temp` of directory `dfd` (0600, never through a link), fsync it and read it
    back as every reader will, indexing it on the way; OSError when it does not decompress to
    the same bytes. Returns (bytes in, bytes written, its line index or None, a descriptor of
    it open for reading, which the caller closes: after renaming the file into place, the index
    is identified from it, as the rename changes the file's ctime)."""
    digest, size = hashlib.sha256(), 0
    packer = gzmembers.Packer()
    out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_SURPRISES, 0o600, dir_fd=dfd)
    try:
        for block in blocks:
            digest.update(block)
            size += len(block)
            write_all(out, packer.feed(block))
        write_all(out, packer.finish())
        os.fsync(out)
        packed = os.fstat(out).st_size
    finally:
        os.close(out)
    check = os.open(temp, os.O_RDONLY | _NO_SURPRISES, dir_fd=dfd)
    try:
        unpacked, sizes = hashlib.sha256(), []

        def observe(block: bytes) -> None:
            unpacked.update(block)
            sizes.append(len(block))

        index = lineindex.build(check, os.fstat(check), compressed=True, observe=observe)
        # An index (usable or not) means the whole archive was read and is clean gzip; without
        # one (a torn last line, or bad gzip) the archive is checked on its own.
        got = (unpacked.digest(), sum(sizes)) if index is not None else _gzip_digest(dfd, temp)
        if got != (digest.digest(), size):
            raise OSError(0, "the compressed file does not decompress to the same bytes")
    except BaseException:
        os.close(check)
        raise
    return size, packed, index, check


def _finish(dfd: int, name: str, where: str, dry_run: bool, note: Callable[[Step], None]) -> bool:
    """A plain file beside its `.gz` twin: a rotation was interrupted after the rename, or a
    writer racing the rotation created an empty file. Remove it once it holds nothing the twin
    does not: identical bytes, or nothing at all. True when it was removed."""
    fd = None if dry_run else _open_locked(dfd, name)
    if fd is None and not dry_run:
        return False
    try:
        plain_digest, plain_size = _file_digest(dfd, name, fd)
        if plain_size:
            gz_digest, gz_size = _gzip_digest(dfd, name + ".gz")
            if (gz_digest, gz_size) != (plain_digest, plain_size):
                raise IntegrityError(
                    f"differs from its .gz twin ({plain_size} vs {gz_size} bytes); both kept, "
                    "run `audit verify`"
                )
        detail = "the .gz twin holds the same bytes" if plain_size else "empty"
        if dry_run:
            note(Step("finish", where, detail + " (dry run)"))
            return False
        try:
            os.unlink(name, dir_fd=dfd)
            os.fsync(dfd)
        except OSError as exc:
            raise IntegrityError(f"not removed ({exc.strerror}); both kept") from None
        note(Step("finish", where, detail + "; removed"))
        return True
    finally:
        if fd is not None:
            os.close(fd)


def _file_digest(dfd: int, name: str, fd: int | None) -> tuple[bytes, int]:
    own = fd is None
    if fd is None:
        fd = os.open(name, os.O_RDONLY | _NO_SURPRISES, dir_fd=dfd)
    try:
        digest, size, offset = hashlib.sha256(), 0, 0
        while block := os.pread(fd, _BLOCK, offset):
            digest.update(block)
            size += len(block)
            offset += len(block)
        return digest.digest(), size
    finally:
        if own:
            os.close(fd)


def _gzip_digest(dfd: int, name: str) -> tuple[bytes, int]:
    """SHA-256 and length of what `name` (in directory `dfd`) decompresses to; IntegrityError
    unless it is complete gzip (one or more members) with nothing after it."""
    digest, size = hashlib.sha256(), 0
    fd = os.open(name, os.O_RDONLY | _NO_SURPRISES, dir_fd=dfd)
    try:
        inflater = gzmembers.Inflater(fd, os.fstat(fd).st_size, _BLOCK)
        for block in inflater.blocks():
            digest.update(block)
            size += len(block)
    except gzmembers.GzipError as exc:
        raise IntegrityError(f"{name}: {exc}") from None
    finally:
        os.close(fd)
    if inflater.trailing:
        raise IntegrityError(f"{name}: data after the gzip members")
    return digest.digest(), size


def _unlink_at(dfd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dfd)


# ---------------------------------------------------------------- removing, never via a link
def open_dir_nofollow(path: Path, *, parent: int | None = None) -> int:
    """A descriptor of directory `path` (a name in `parent` when given) that never goes through
    a symlink: a link in its place raises IntegrityError naming it. Rotation removes only
    what it reaches through such descriptors, so it never leaves the log directory."""
    try:
        return os.open(
            path.name if parent is not None else path,
            os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
            dir_fd=parent,
        )
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise IntegrityError(
                f"{path}: is a symbolic link (refused: rotate never removes anything through a "
                "link)"
            ) from None
        raise IntegrityError(f"{path}: cannot open the directory: {exc.strerror}") from None


def _remove_entry(dfd: int, name: str) -> None:
    """Remove `name` from directory `dfd`: a directory with everything below it, walked by
    descriptors (shutil.rmtree with dir_fd never follows a link), anything else unlinked (a
    symlink itself, not what it points at)."""
    if stat.S_ISDIR(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
        if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux has openat
            raise IntegrityError("this platform cannot remove a directory without following links")
        shutil.rmtree(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)


def _remove_under(root: Path, parts: tuple[str, ...], name: str) -> None:
    """Remove `root/parts…/name` (derived data) if it is there, walking each directory of
    `parts` without following a link: a linked `_index` is left alone, never followed."""
    fds: list[int] = []
    try:
        path = root
        for part in parts:
            path = path / part
            fds.append(open_dir_nofollow(path, parent=fds[-1] if fds else None))
        _remove_entry(fds[-1], name)
    except (FileNotFoundError, IntegrityError):
        pass
    finally:
        for fd in fds:
            os.close(fd)


# ------------------------------------------------------------------------------ retention
def _delete_day(
    store: AuditStore,
    day: str,
    reason: str,
    signing_key: Any,
    dry_run: bool,
    note: Callable[[Step], None],
) -> None:
    partition = PARTITION_PREFIX + day
    directory = store.root / partition
    if dry_run:
        files = store.files(day)
        lines = sum(1 for file in files for _ in store.iter_lines(file))
        note(Step("delete", partition, f"{len(files)} file(s), {lines} entries (dry run)"))
        return
    from . import integrity

    root_fd = os.open(store.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        trash_fd = _open_trash(store.root, create=True)
        try:
            # The partition's exclusive lock waits for every write in progress and keeps new
            # ones out until the rename: what the receipt counts is exactly what is deleted. A
            # writer that waited finds the partition gone and makes a new one (store.py).
            with partition_lock(directory, exclusive=True):
                # The receipt records each file exactly as a seal checkpoints it (lines, head
                # link, size, archive digest), so verify can tell this deletion from tampering.
                facts = [integrity.file_record(file) for file in store.files(day)]

                def delete() -> None:
                    # A rename is atomic: the partition vanishes for every reader at once, and a
                    # run killed half way through the removal leaves only hidden leftovers.
                    os.rename(
                        partition,
                        f"{partition}.{time.time_ns()}",
                        src_dir_fd=root_fd,
                        dst_dir_fd=trash_fd,
                    )
                    os.fsync(root_fd)
                    os.fsync(trash_fd)

                integrity.write_receipt(
                    store, day, facts, reason, signing_key=signing_key, then=delete
                )
        finally:
            os.close(trash_fd)
    except FileNotFoundError:  # gone meanwhile (nothing to delete)
        return
    except OSError as exc:
        note(Step("problem", partition, f"not deleted: {_why(exc)}"))
        return
    except IntegrityError as exc:
        note(Step("problem", partition, f"not deleted: {exc}"))
        return
    finally:
        os.close(root_fd)
    _remove_under(store.root, (lineindex.INDEX_DIR,), partition)
    entries = sum(fact["lines"] for fact in facts)
    note(Step("delete", partition, f"{len(facts)} file(s), {entries} entries; receipt written"))
    _purge_deleting(store, False, lambda step: None)


def _open_trash(root: Path, *, create: bool) -> int:
    """`LOGDIR/_deleting`, opened without following a link (IntegrityError when it is one)."""
    path = root / DELETING_DIR
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    return open_dir_nofollow(path)


def _purge_deleting(store: AuditStore, dry_run: bool, note: Callable[[Step], None]) -> None:
    """Remove what retention moved to `_deleting` (a run killed half way left it there)."""
    try:
        trash_fd = _open_trash(store.root, create=False)
    except FileNotFoundError:
        return
    try:
        for name in sorted(os.listdir(trash_fd)):
            note(Step("purge", f"{DELETING_DIR}/{name}", "removing a deleted partition"))
            if not dry_run:
                _remove_entry(trash_fd, name)
        if not dry_run:
            os.fsync(trash_fd)
    finally:
        os.close(trash_fd)


# =================================================================================== stats
STATS_KEYS: tuple[str, ...] = ("action", "actor", "target", "org", "team", "day", "hour")
TIME_KEYS = ("day", "hour")
_STRING = rb'(null|"[^"\\\n]*(?:\\.[^"\\\n]*)*")'
#: key -> (field key bytes, the key that always follows it, take the last occurrence)
_FIELDS: dict[str, tuple[bytes, bytes, bool]] = {
    "action": (b',"action":', b',"actionDisplayName":', False),
    "actor": (b',"actorId":', b',"actorName":', False),
    "target": (b',"target":', b',"targetId":', False),
    "org": (b',"organizationId":', b',"teamId":', True),
    # teamId is followed by createdAt, or (chain version 2) by the line's salt or redaction
    # record: `,"` starts the next key (never raw inside a JSON string, where `"` is escaped).
    "team": (b',"teamId":', b',"', True),
}
_PATTERNS: dict[str, re.Pattern[bytes]] = {
    name: re.compile(re.escape(key) + _STRING + re.escape(term))
    for name, (key, term, _) in _FIELDS.items()
}
#: The JSON field of each key that is a field.
_JSON_FIELD = {
    "action": "action",
    "actor": "actorId",
    "target": "target",
    "org": "organizationId",
    "team": "teamId",
}
#: The name of each key's column in `audit stats` output: its JSON field, or the time key itself.
KEY_COLUMNS: dict[str, str] = {**_JSON_FIELD, **{key: key for key in TIME_KEYS}}
#: The same positional read for the fields a query filters on, by JSON field name.
_FILTER_PATTERNS: dict[str, re.Pattern[bytes]] = {
    "actorId": _PATTERNS["actor"],
    "action": _PATTERNS["action"],
    "target": _PATTERNS["target"],
    "targetId": re.compile(b',"targetId":' + _STRING + b',"metadata":'),
    "organizationId": _PATTERNS["org"],
    "teamId": _PATTERNS["team"],
}
_CREATED = re.compile(rb',"createdAt":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)","_chain":"')
_PATTERNS["day"] = re.compile(
    rb',"createdAt":' + rb'"(\d{4}-\d\d-\d\d)T\d\d:\d\d:\d\d\.\d{3}Z","_chain":"'
)
_PATTERNS["hour"] = re.compile(
    rb',"createdAt":' + rb'"(\d{4}-\d\d-\d\dT\d\d):\d\d:\d\d\.\d{3}Z","_chain":"'
)


@dataclass
class StatsResult:
    """Counts of matching entries grouped by one or two keys."""

    keys: tuple[str, ...]
    counts: dict[tuple[Any, ...], int]
    total: int
    problems: list[Problem]

    def rows(self, top: int | None = None) -> list[tuple[Any, ...]]:
        """`(key values…, count)`, time keys in time order, others by count (largest first);
        with `top`, only the `top` largest groups."""
        items = list(self.counts.items())
        if top is not None:
            items = sorted(items, key=lambda item: -item[1])[:top]
        if self.keys[0] in TIME_KEYS:
            items.sort(key=lambda item: tuple("" if v is None else str(v) for v in item[0]))
        else:
            items.sort(
                key=lambda item: (-item[1], tuple("" if v is None else str(v) for v in item[0]))
            )
        return [(*key, count) for key, count in items]


def parse_by(values: Sequence[str]) -> tuple[str, ...]:
    """`--by` values (repeated or comma-separated) checked: one or two known keys."""
    keys = tuple(part.strip() for value in values for part in value.split(",") if part.strip())
    if not 1 <= len(keys) <= 2:
        raise UsageError("--by: give one or two keys, e.g. --by action or --by action,day")
    for key in keys:
        if key not in STATS_KEYS:
            raise UsageError(f"--by: unknown key {key!r}: expected one of {', '.join(STATS_KEYS)}")
    if len(set(keys)) != len(keys):
        raise UsageError("--by: the same key twice")
    return keys


def stats(
    store: AuditStore, filters: Filters, by: Sequence[str], *, workers: int | None = None
) -> StatsResult:
    """Count the entries matching `filters`, grouped by the keys `by` (see STATS_KEYS).

    Keys are read from each line by position, never by parsing it: every stored line comes from
    one serialiser, so a field's value sits between its key and the next field's key. A regular
    expression collects one value per line for a whole block; when the number of values differs
    from the number of lines (a metadata object that imitates a field) the block is redone line
    by line, taking a field before `metadata` at its first occurrence and one after at its last.
    A large store is scanned by `workers` processes (default: one per CPU), a share of the files
    each.
    """
    keys = parse_by(by)
    engine = QueryEngine(store, filters, order="asc")
    files = [file for day in engine.days() for file in store.files(day)]
    counter: Counter[tuple[bytes, ...]] = Counter()
    if not any(key in TIME_KEYS for key in keys):
        # Settled files answer from their line index (query.lineindex): counts per value are
        # stored there, nothing is read; only the other files are scanned below.
        names = tuple(_JSON_FIELD[key] for key in keys)
        scanned = []
        for file in files:
            indexed = engine.key_counts(file, names)
            if indexed is None:
                scanned.append(file)
            else:
                counter.update(indexed)
        files = scanned
    groups = _share(files, workers if workers is not None else (os.cpu_count() or 1))
    if len(groups) > 1:
        import multiprocessing

        # fork: the workers inherit the imported modules, so starting them costs milliseconds.
        with multiprocessing.get_context("fork").Pool(len(groups)) as pool:
            parts = pool.starmap(
                _count_files, [(store.root, filters, keys, group) for group in groups]
            )
    else:
        parts = [_count_files(store.root, filters, keys, files)] if files else []
    problems: list[Problem] = list(engine.problems)  # odd partitions, indexes ignored
    for part, found in parts:
        counter.update(part)
        problems.extend(found)
    counts: dict[tuple[Any, ...], int] = {}
    for raw, count in counter.items():
        decoded = tuple(_decode(key, value) for key, value in zip(keys, raw, strict=True))
        counts[decoded] = counts.get(decoded, 0) + count
    return StatsResult(keys, counts, sum(counts.values()), problems)


_PARALLEL_BYTES = 64 << 20  # below this a second process costs more than it saves


def _share(files: list[LogFile], workers: int) -> list[list[LogFile]]:
    """`files` split into at most `workers` groups of about equal size (largest first)."""
    sizes = []
    for file in files:
        try:
            sizes.append((file.path.stat().st_size * (5 if file.compressed else 1), file))
        except OSError:
            sizes.append((0, file))
    total = sum(size for size, _ in sizes)
    count = max(1, min(workers, len(files), total // _PARALLEL_BYTES + 1))
    if count == 1:
        return [files]
    groups: list[list[LogFile]] = [[] for _ in range(count)]
    loads = [0] * count
    for size, file in sorted(sizes, key=lambda item: -item[0]):
        lightest = loads.index(min(loads))
        groups[lightest].append(file)
        loads[lightest] += size
    return [group for group in groups if group]


def _count_files(
    root: Path, filters: Filters, keys: tuple[str, ...], files: list[LogFile]
) -> tuple[Counter[tuple[bytes, ...]], list[Problem]]:
    engine = QueryEngine(AuditStore(root, writer_id="stats"), filters, order="asc")
    counter: Counter[tuple[bytes, ...]] = Counter()
    for file in files:
        for block, lines, mask in matching_blocks(engine, file):
            counter.update(_block_keys(block, lines, keys, mask))
    return counter, engine.problems


def _decode(key: str, value: bytes) -> Any:
    if key in TIME_KEYS:
        return value.decode()
    return orjson.loads(value)


def _block_keys(
    block: bytes, lines: int, keys: tuple[str, ...], mask: list[bool] | None = None
) -> Iterator[tuple[bytes, ...]]:
    columns = [_PATTERNS[key].findall(block) for key in keys]
    rows: Iterator[tuple[bytes, ...]]
    if all(len(column) == lines for column in columns):
        rows = zip(*columns, strict=True)
    else:
        rows = (tuple(_line_key(line, key) for key in keys) for line in split_lines(block))
    if mask is None:
        return rows
    return (row for row, keep in zip(rows, mask, strict=True) if keep)


def _line_key(line: bytes, key: str) -> bytes:
    if key in TIME_KEYS:
        stamp = line[chain.CREATED_START : chain.CREATED_END]
        return stamp[:10] if key == "day" else stamp[:13]
    name, term, from_end = _FIELDS[key]
    at = (line.rfind(name) if from_end else line.find(name)) + len(name)
    return line[at : line.find(term, at)]


def matching_blocks(
    engine: QueryEngine, file: LogFile
) -> Iterator[tuple[bytes, int, list[bool] | None]]:
    """`(block, lines, mask)`: the lines of `file` that match, a chunk at a time: either a block
    of only matching lines (`mask` None) or a whole chunk with one flag per line.

    The same selection as the query engine's (problems noted in `engine.problems`), so counts
    agree with `audit query`. A selective filter takes the engine's needle search; a filter that
    most lines pass is checked a column at a time (one regular expression per filtered field over
    the whole chunk, then a comparison per line), which avoids a Python call per line."""
    source = engine.store.lines(file)
    matcher, needle = engine.matcher, engine.matcher.needle
    everything = not matcher.filters_fields and engine._whole_day(file.day)
    first_line = 1
    try:
        for chunk in source.chunks():
            lines_here = source.lines - first_line + 1  # the source counted them already
            mask = None
            if chunk.count(chain.SUFFIX_HEAD) != lines_here:
                _, hits = engine._scan_checked(file, chunk, first_line, False, source)
            elif everything:
                hits = None
            elif needle is not None and _selective(chunk, needle):
                _, hits = _scan_needle(chunk, needle, matcher, False)
            else:
                mask = _column_mask(engine, file.day, chunk, lines_here)
                hits = (
                    None
                    if mask is not None
                    else [line for line in split_lines(chunk) if matcher(line)]
                )
            first_line += lines_here
            if hits is None:
                yield chunk, lines_here, mask
            elif hits:
                yield b"".join(hits), len(hits), None
    except IntegrityError as exc:
        engine.problems.append(Problem(file.name, None, "unreadable", str(exc)))
    engine.note_damage(file, source)


def _selective(chunk: bytes, needle: bytes) -> bool:
    """Whether at most one line in 8 holds `needle`, judged on the chunk's first MiB: then the
    needle search, which skips the other lines at memchr speed, beats a column check."""
    sample = min(len(chunk), 1 << 20)
    return chunk.count(needle, 0, sample) * 8 < chunk.count(b"\n", 0, sample)


def _column_mask(engine: QueryEngine, day: str, chunk: bytes, lines: int) -> list[bool] | None:
    """One flag per line of `chunk`: does it pass the filters? None when a field cannot be read
    as one value per line (then the caller checks line by line)."""
    mask: list[bool] | None = None
    for name, values in engine.filters.by_field().items():
        column = _FILTER_PATTERNS[name].findall(chunk)
        if len(column) != lines:
            return None
        allowed = {orjson.dumps(value) for value in values}
        if mask is None:
            mask = [value in allowed for value in column]
        else:
            mask = [keep and value in allowed for keep, value in zip(mask, column, strict=True)]
    if not engine._whole_day(day):
        stamps = _CREATED.findall(chunk)
        if len(stamps) != lines:
            return None
        since = (engine.filters.since or "").encode()
        until = (engine.filters.until or "9999").encode()
        if mask is None:
            mask = [since <= stamp <= until for stamp in stamps]
        else:
            mask = [keep and since <= s <= until for keep, s in zip(mask, stamps, strict=True)]
    return mask if mask is not None else [True] * lines


def time_buckets(keys: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> list[str]:
    """Every day (or hour) from the first to the last one in `rows`, gaps included: the x axis
    of a sparkline."""
    position = next(i for i, key in enumerate(keys) if key in TIME_KEYS)
    seen = sorted({row[position] for row in rows})
    if not seen:
        return []
    if keys[position] == "day":
        first, last = date.fromisoformat(seen[0]), date.fromisoformat(seen[-1])
        return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    from datetime import datetime

    start = datetime.fromisoformat(seen[0] + ":00")
    end = datetime.fromisoformat(seen[-1] + ":00")
    hours = int((end - start).total_seconds() // 3600)
    if hours > 24 * 366:  # a sparkline of more than a year of hours says nothing
        return seen
    return [(start + timedelta(hours=n)).strftime("%Y-%m-%dT%H") for n in range(hours + 1)]


_SPARKS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """Counts as block characters, scaled to the largest (an empty bucket is a blank)."""
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    return "".join(_SPARKS[0 if v <= 0 else max(1, round(v * 8 / top))] for v in values)


def bar(value: int, top: int, width: int = 24) -> str:
    """A horizontal bar of `width` cells at most, in eighths of a cell."""
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value * width * 8 / top))
    full, part = divmod(eighths, 8)
    return "█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[part]


# ==================================================================================== tail
#: The bytes before a follower's offset that it keeps: they end with the chain link of the last
#: line read, which hashes every line before it, so a file whose bytes there are the same holds
#: the same lines up to the offset, whatever its inode (numbers are reused after a deletion).
_MARK = chain.SUFFIX_LEN


@dataclass
class _Followed:
    offset: int = 0  # bytes of the (decompressed) content already read, at a line boundary
    mark: bytes = b""  # the last _MARK bytes before offset
    done: bool = False  # compressed: it never changes again
    archive: tuple[int, int] | None = None  # (device, inode) of the archive read to its end


class Follower:
    """New matching lines as they are appended anywhere in the store: new days, new segments,
    and files that rotation replaces with their `.gz` twin (identical bytes, so reading goes on
    from the same offset in the decompressed stream, then the file is done).

    Only confirmed entries: a plain file is read under the writers' lock taken shared, which
    waits out a write in progress; a write that fails is cut back before its writer lets the
    lock go, so its line is never read. Each file's bytes before the follower's offset must
    still be what was read (see _MARK): a file that retention deleted and a late writer made
    again under the same name is read from its start."""

    def __init__(self, store: AuditStore, filters: Filters) -> None:
        self.store = store
        self.engine = QueryEngine(store, filters, order="asc")
        self.files: dict[tuple[str, str], _Followed] = {}
        self.problems: list[Problem] = []
        #: True when a poll stopped at its read limit: poll again without waiting.
        self.behind = False
        #: Files that are not regular files (planted FIFOs, symlinks, …): reported once, skipped.
        self.refused: set[tuple[str, str]] = set()

    def _refuse(self, file: LogFile, detail: str) -> None:
        key = (file.day, file.segment)
        if key not in self.refused:
            self.refused.add(key)
            self.problems.append(Problem(file.name, None, "unreadable file", f"{detail}; skipped"))

    def _current(self) -> Iterator[LogFile]:
        for day in self.engine.days():
            yield from self.store.files(day)

    def skip_existing(self) -> None:
        """Start at the current end of every file: only entries appended from now on follow."""
        for file in self._current():
            key = (file.day, file.segment)
            if file.compressed:
                self.files[key] = _Followed(done=True, archive=_identity(file.path))
            else:
                size, mark = _whole_lines_end(file.path)
                self.files[key] = _Followed(size, mark)

    def poll(self) -> list[bytes]:
        """The matching lines appended since the last poll, in (createdAt, id) order."""
        found: list[bytes] = []
        self.behind = False
        for file in self._current():
            key = (file.day, file.segment)
            if key in self.refused:
                continue
            state = self.files.setdefault(key, _Followed())
            try:
                if file.compressed:
                    data = self._read_archive(file, state)
                else:
                    data = self._read_plain(file, state)
            except (OSError, IntegrityError) as exc:  # a FIFO, a socket, a link: said once
                self._refuse(file, str(exc) if isinstance(exc, IntegrityError) else _why(exc))
                continue
            cut = data.rfind(b"\n") + 1
            if not cut and len(data) >= _FOLLOW_LIMIT:
                # No entry is this long (64 KiB at most): damage, skipped in bounded steps. The
                # rest of it up to its newline is then one more foreign line, skipped too.
                self.problems.append(
                    Problem(file.name, None, "line too long", f"skipped at byte {state.offset}")
                )
                cut = len(data)
            if not cut:
                continue
            state.offset += cut
            state.mark = (state.mark + data[:cut])[-_MARK:]
            for line in split_lines(data[:cut]):
                if not chain.is_chained_line(line):
                    if line != b"\n":  # the place of a line too long, reported above
                        self.problems.append(
                            Problem(
                                file.name,
                                None,
                                "not an entry",
                                "foreign or corrupted line; skipped",
                            )
                        )
                elif self.engine.matcher(line):
                    found.append(line)
        found.sort(
            key=lambda line: (
                line[chain.CREATED_START : chain.CREATED_END],
                line[7 : line.index(b'"', 7)],
            )
        )
        return found

    def _read_archive(self, file: LogFile, state: _Followed) -> bytes:
        identity = _identity(file.path)
        if identity is None or (state.done and state.archive == identity):
            return b""
        # The plain file followed so far, rotated: the same bytes go on from the offset.
        # Anything else (a new file under the same name) is read from its start.
        before, data, more = _gzip_window(file.path, state.offset, len(state.mark))
        if before != state.mark:
            state.offset, state.mark = 0, b""
            _, data, more = _gzip_window(file.path, 0, 0)
        # A big archive is followed in steps of _FOLLOW_LIMIT: memory stays bounded.
        state.done, state.archive = not more, identity
        self.behind = self.behind or more
        return data

    def _read_plain(self, file: LogFile, state: _Followed) -> bytes:
        if state.archive is not None:  # an archive was read: a plain file under its name is new
            state.offset, state.mark, state.done, state.archive = 0, b"", False, None
        read = _plain_from(file.path, state.offset, len(state.mark), _FOLLOW_LIMIT)
        if read is None:  # rotated between listing and reading: next poll reads the .gz
            return b""
        before, data = read
        if before != state.mark:
            # Not the file followed so far: retention deleted the day and a writer made it
            # again. Everything in it is new.
            state.offset, state.mark = 0, b""
            read = _plain_from(file.path, 0, 0, _FOLLOW_LIMIT)
            if read is None:
                return b""
            data = read[1]
        self.behind = self.behind or len(data) >= _FOLLOW_LIMIT
        return data


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _whole_lines_end(path: Path) -> tuple[int, bytes]:
    """The size of the whole lines of `path` and the _MARK bytes before it, read under the
    writers' lock taken shared. IntegrityError when it is not a regular file."""
    try:
        fd = _open_log_file(path)
    except (OSError, IntegrityError):
        return 0, b""  # gone, or not a file a writer appends to: poll reports it
    try:
        size = os.fstat(fd).st_size
        begin = max(0, size - 70 * 1024)
        tail = os.pread(fd, size - begin, begin)
        cut = tail.rfind(b"\n") + 1
        return begin + cut, tail[:cut][-_MARK:]
    finally:
        os.close(fd)


#: Seconds rotate waits for a writer's lock on a file (a write holds it for milliseconds;
#: whoever can write the directory could hold it for ever).
_ROTATE_LOCK_WAIT = 60.0
_FOLLOW_LIMIT = 16 << 20  # bytes read from one file per poll: a big import is followed in steps


def _plain_from(path: Path, offset: int, back: int, limit: int) -> tuple[bytes, bytes] | None:
    """`(the `back` bytes before offset, up to `limit` bytes from offset)` of a plain file, read
    under the writers' lock taken shared (a write in progress is waited out); None when the
    file is gone. Before-bytes shorter than `back` mean the file is shorter than the offset.
    IntegrityError when it is not a regular file."""
    try:
        fd = _open_log_file(path)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        before = os.pread(fd, back, offset - back) if back else b""
        data = os.pread(fd, min(limit, size - offset), offset) if size > offset else b""
        return before, data
    finally:
        os.close(fd)


def _open_log_file(path: Path) -> int:
    """A descriptor of the plain log file `path`, no link followed, holding the writers' lock
    taken shared (a write in progress is waited out, within LOCK_WAIT: whoever can write the
    directory can hold a lock for ever). IntegrityError for anything but a regular file."""
    fd = _open_in_partition(path, os.O_RDONLY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IntegrityError(f"{path.parent.name}/{path.name}: not a regular file")
        if not lock_within(fd, fcntl.LOCK_SH, LOCK_WAIT):
            raise IntegrityError(f"{path.parent.name}/{path.name}: its lock stays held")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _gzip_window(path: Path, start: int, back: int) -> tuple[bytes, bytes, bool]:
    """`(the back bytes before start, up to _FOLLOW_LIMIT bytes from start, whether more
    follow)` of what a gzip log file decompresses to, inflated a block at a time so memory stays
    bounded whatever the archive holds (empty when it cannot be read)."""
    before, data = bytearray(), bytearray()
    low, position, more = start - back, 0, False
    try:
        fd = _open_in_partition(path, os.O_RDONLY)
    except OSError:
        return b"", b"", False
    try:
        for out in gzmembers.Inflater(fd, os.fstat(fd).st_size, _BLOCK).blocks():
            end = position + len(out)
            if end > low and position < start:
                before += out[max(0, low - position) : start - position]
            if end > start:
                room = _FOLLOW_LIMIT - len(data)
                taken = out[max(0, start - position) :]
                data += taken[:room]
                if len(taken) > room:
                    more = True
                    break
            position = end
    except (OSError, gzmembers.GzipError):
        return b"", b"", False
    finally:
        os.close(fd)
    return bytes(before), bytes(data), more
