"""Line indexes this user has vouched for: built from their log file, or checked against it.

A line index (see `lineindex`) is derived data in the log directory, where whoever can write
the directory can forge it. So every line an index selects is checked before it is returned
(its place in the file, the stored shape, the filters by its bytes, result order, its content
parsed as JSON), and that check costs most of what a returned line costs. Most indexes were
written by this user's own `audit` (an import, a rotation, the first query of a past day) or
have been compared with a rebuild by this user's `audit verify`. Their SHA-256 is recorded
here, outside the log directory, so that a query can tell such an index from any other by
hashing the bytes it reads, and skip the per-line checks for it. An index is bound to its log
file's identity (device, inode, size, mtime, ctime) and last bytes, and used only while the
file still has them: a vouched index describes the file as it still is (for a log file no
one else can write: `lineindex.private`).

Hashing every index a broad query reads costs a tenth of its time at 10M entries, so once an
index file's bytes were found vouched for, the record also remembers that file by its identity
(device, inode, size, mtime, ctime: `remember_file`), and later queries that read it (with the
same identity before and after the read) skip the hash (`vouched_file`). Any write, truncation,
replacement or chmod changes the ctime, which user space cannot set back, as for the log files
the indexes describe; a file changed within the last seconds is not remembered yet (timestamps
are coarse: it could change again without its ctime showing it), nor one that anyone but this
user can write (bytes written through a shared mapping after its first write to a page leave
the ctime alone until the kernel writes the page back).

The record is a directory of empty files named by digest, private to the user:
`$XDG_CACHE_HOME/auditcli/vouched-indexes/` (default `~/.cache/…`). It is refused unless the
user owns it and nobody else can write it (an index is then used with checks, as before).
Deleting it costs speed, never an answer; nothing in it ever changes what a query returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from collections.abc import Sequence

#: Files are created as readable by the user only, directories as searchable by them only.
_DIR_MODE = 0o700
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


#: Hashed before an index's bytes: a release that changes how indexes are built changes it,
#: so that what an older one vouched for is not believed.
_TAG = b"auditcli vouched line index 1\x00"
#: How long ago an index file must have last changed for its identity to be remembered.
_SETTLED_NS = 2_000_000_000
_FILE_TAG = b"auditcli vouched index file 1\x00"


def location() -> str:
    """The directory of this user's record: `$XDG_CACHE_HOME/auditcli/vouched-indexes`
    (a relative XDG_CACHE_HOME is ignored, as the XDG spec says: `~/.cache`)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "auditcli", "vouched-indexes")


def digest(data: bytes | bytearray | memoryview) -> str:
    """The name an index's bytes are recorded under: SHA-256 of a version tag and the bytes,
    in hex."""
    hashed = hashlib.sha256(_TAG)
    hashed.update(data)
    return hashed.hexdigest()


def vouch(data: bytes | bytearray | memoryview) -> None:
    """Record an index (its bytes, as written to the log directory) as built or checked by
    this user. Any failure (a read-only home, a full disk, a record someone else can write)
    is ignored: the index is then checked line by line when used, as any other."""
    _note(digest(data), create=True)


def vouched(data: bytes | bytearray | memoryview) -> bool:
    """Whether this user recorded these index bytes (`vouch`)."""
    return _recorded(digest(data))


def remember_file(identity: Sequence[int]) -> None:
    """Record that the index file of `identity` (device, inode, size, mtime and ctime in ns)
    held bytes this user vouched for, as read between two equal fstat calls: unless it changed
    in the last _SETTLED_NS, when another change might leave the same identity. Failures are
    ignored, as for `vouch`."""
    if identity[4] > time.time_ns() - _SETTLED_NS:
        return
    _note(_file_name(identity), create=False)


def vouched_file(identity: Sequence[int]) -> bool:
    """Whether the index file of `identity` was remembered (`remember_file`): its bytes, still
    the same while the identity is, need no hashing."""
    return _recorded(_file_name(identity))


def _file_name(identity: Sequence[int]) -> str:
    """The record's name for an index file's identity (never a digest's name: a prefix)."""
    return "file-" + hashlib.sha256(_FILE_TAG + repr(tuple(identity)).encode()).hexdigest()


def _note(name: str, *, create: bool) -> None:
    """Add the empty file `name` to this user's record (the directory made first if
    `create`). Any failure is ignored: it only costs the checks or hashing it would spare."""
    with contextlib.suppress(OSError):
        directory = _open_record(create=create)
        if directory is None:
            return
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o600, dir_fd=directory))
        finally:
            os.close(directory)


def _recorded(name: str) -> bool:
    """Whether `name` is a regular file in this user's record."""
    try:
        directory = _open_record(create=False)
    except OSError:
        return False
    if directory is None:
        return False
    try:
        info = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except OSError:
        return False
    finally:
        os.close(directory)
    return stat.S_ISREG(info.st_mode)


def _open_record(*, create: bool) -> int | None:
    """The record directory, opened; None when it is missing (and not to be created) or
    anyone but this user could have written in it."""
    return open_private(location(), create=create)


def open_private(path: str, *, create: bool) -> int | None:
    """The directory `path` of a record private to this user, opened (created if `create`);
    None when it is missing (and not to be created), relative, or anyone but this user could
    have written in it."""
    if not os.path.isabs(path):
        return None  # no home directory to speak of: never one relative to where we run
    try:
        fd = os.open(path, _OPEN_DIR)
    except FileNotFoundError:
        if not create:
            return None
        os.makedirs(path, mode=_DIR_MODE, exist_ok=True)
        fd = os.open(path, _OPEN_DIR)
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        os.close(fd)
        return None
    return fd
