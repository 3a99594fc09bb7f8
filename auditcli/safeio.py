"""Opening what lies under the log directory as someone who can write it cannot exploit: no
symlink followed below the root, no FIFO waited on, no file read without a bound.

The root itself may be a symlink (the operator's choice). Below it every directory is opened
with O_NOFOLLOW | O_DIRECTORY and every file relative to its directory's descriptor with
O_NOFOLLOW | O_NONBLOCK, then checked with fstat to be what it should be.

The control files have size limits (the `*_MAX` constants below), each far above what the
tool ever writes: a larger file is refused as damage, never read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import IntegrityError

#: `_store.json`: the log directory's marker and its settings (a few dozen bytes).
MARKER_MAX = 4 << 10
#: `_catalog.json`: the custom actions (a thousand actions take about 300 KiB).
CATALOG_MAX = 1 << 20
#: `_accounts/accounts.json`: service accounts (ten thousand take about 3 MiB).
ACCOUNTS_MAX = 8 << 20
#: One manifest of `_manifests/` (a seal of 100,000 files takes about 25 MiB).
MANIFEST_MAX = 48 << 20
#: The JSON header of one line index of `_index/` (its values and counts).
INDEX_HEADER_MAX = 32 << 20

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def lock_within(fd: int, operation: int, seconds: float) -> bool:
    """Take `fcntl.flock(fd, operation)` (LOCK_SH or LOCK_EX) within `seconds`; False when it
    stays held. Whoever can write the directory can hold any lock file for ever: no command
    may wait for one without bound."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


def why(exc: OSError) -> str:
    """The reason of an OS error, in words a person acts on."""
    if exc.errno == errno.ELOOP:
        return "is a symbolic link (refused: it could point anywhere)"
    return exc.strerror or str(exc)


def open_dir(root: Path, parts: Sequence[str], *, create: bool = False) -> int:
    """A descriptor of the directory `root/parts[0]/parts[1]/…`, no component below `root`
    followed if it is a symlink (OSError: ELOOP or ENOTDIR, FileNotFoundError if missing);
    with `create`, each missing part is made (0700) first."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            child = open_dir_at(fd, part)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_dirs(root: Path, parts: Sequence[str]) -> int:
    """`open_dir` creating each missing part (0700): for writers of derived data."""
    return open_dir(root, parts, create=True)


def write_all(fd: int, data: bytes | bytearray) -> None:
    """Write all of `data` to `fd` (os.write may write less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic_at(directory: int, name: str, temporary: str, content: bytes) -> None:
    """Write `content` to `name` in the directory `directory` through the new file `temporary`
    (O_EXCL, 0600, never through a symlink) renamed over it; on OSError the temporary file is
    removed and the error raised. No fsync: for derived data, which a crash may lose."""
    try:
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=directory,
        )
        try:
            write_all(fd, content)
        finally:
            os.close(fd)
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise


def open_dir_at(dir_fd: int, name: str) -> int:
    """A descriptor of the directory `name` in the directory `dir_fd`; OSError ELOOP when it
    is a symlink, ENOTDIR when it is something else."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except NotADirectoryError:  # O_DIRECTORY | O_NOFOLLOW says ENOTDIR for a link
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name) from None
        raise


def open_file(root: Path, relative: str, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """A descriptor of the file `root/relative` (`a/b/c`), opened following no symlink below
    `root` and without blocking on a FIFO. The caller checks its kind with fstat."""
    *parents, name = relative.split("/")
    dfd = open_dir(root, parents)
    try:
        return os.open(name, flags | _FILE_FLAGS, mode, dir_fd=dfd)
    finally:
        os.close(dfd)


def read_bounded(fd: int, limit: int, where: object) -> bytes:
    """The whole content of the open regular file `fd`, refused (IntegrityError naming `where`)
    when it is not a regular file or holds more than `limit` bytes."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise IntegrityError(f"{where}: {kind_of(info.st_mode)}, not a regular file (refused)")
    if info.st_size > limit:
        raise IntegrityError(
            f"{where}: {info.st_size} bytes, over the {_size(limit)} limit (refused)"
        )
    parts, size = [], 0
    while block := os.read(fd, min(1 << 20, limit + 1 - size)):
        parts.append(block)
        size += len(block)
        if size > limit:  # grew while read
            raise IntegrityError(f"{where}: over the {_size(limit)} limit (refused)")
    return b"".join(parts)


def read_control(root: Path, relative: str, limit: int) -> bytes | None:
    """The content of the control file `root/relative`, None when it does not exist;
    IntegrityError naming it when it is a symlink, not a regular file, over `limit` bytes
    or unreadable."""
    where = root / relative
    try:
        fd = open_file(root, relative)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IntegrityError(f"{where}: cannot open: {why(exc)}") from None
    try:
        return read_bounded(fd, limit, where)
    except OSError as exc:
        raise IntegrityError(f"{where}: cannot read: {why(exc)}") from None
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename, creation or removal in `directory` durable (OSError when it fails)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def kind_of(mode: int) -> str:
    """What a file of `mode` is, in words: "a directory", "a FIFO", …"""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a file"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
