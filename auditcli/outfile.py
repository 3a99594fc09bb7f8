"""The one writer of every file a user names for output: `export -o`, `report -o`,
`keys generate --out` (and its `.pub`).

A file appears complete or not at all. The data goes to a temp file `.<name>.<pid>.<n>.tmp`
(mode 0600, then the file's mode) in the target's own directory; on success it is fsynced, then
linked into place, which refuses anything already there, or with `force` renamed over it; then
the directory is fsynced. The target is never opened, so a symlink there is never followed:
without `force` it is refused like any file, with `force` the link itself is replaced. The
directory must exist (it is never created). On any failure, before or after the rename, nothing
is left at the path (a failed directory fsync removes the renamed file and says so), and the
temp file is removed. A temp file left by a killed run (its process gone) is removed by the next
run that writes a file of the same name in that directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path
from typing import IO

from .errors import AuditError, UsageError
from .safeio import fsync_dir


class OutputError(AuditError):
    """The output file could not be written; nothing is left at its path (exit 1)."""

    exit_code = 1


class OutputFile:
    """A user-named output file, written atomically (see the module doc).

    >>> with OutputFile("out.csv", force=False) as out:
    ...     out.handle.write(b"a,b\\n")

    On a clean exit from the `with` block the file is committed; on an exception, or after
    `discard()`, nothing is left at the path."""

    def __init__(
        self, path: str | os.PathLike[str], *, force: bool = False, mode: int = 0o600
    ) -> None:
        self.path = Path(path)
        self.force, self.mode = force, mode
        self.temp: Path | None = None
        self._handle: IO[bytes] | None = None

    @property
    def handle(self) -> IO[bytes]:
        """The binary stream to write to (buffered)."""
        assert self._handle is not None, "use OutputFile in a with block"
        return self._handle

    def __enter__(self) -> OutputFile:
        self._check_target()
        directory = self.path.parent
        _remove_stale_temps(directory, self.path.name)
        for attempt in range(100):
            temp = directory / f".{self.path.name}.{os.getpid()}.{attempt}.tmp"
            try:
                fd = os.open(
                    temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
                )
            except FileExistsError:
                continue
            except FileNotFoundError:
                raise UsageError(f"{self.path}: the directory {directory} does not exist") from None
            except OSError as exc:
                raise OutputError(
                    f"{self.path}: cannot write in {directory}: {exc.strerror}"
                ) from None
            self.temp = temp
            try:
                os.fchmod(fd, self.mode)  # the umask may have narrowed it
            except OSError:
                os.close(fd)
                self.discard()
                raise
            self._handle = os.fdopen(fd, "wb", buffering=1 << 20)
            return self
        raise OutputError(f"{self.path}: cannot create a temp file in {directory}")

    def _check_target(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise UsageError(f"{self.path}: {exc.strerror}") from None
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{self.path}: is a directory")
        if not self.force:
            kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "a file"
            raise UsageError(f"{self.path}: {kind} is already there; use --force to replace it")

    def discard(self) -> None:
        """Give up: close and remove the temp file; nothing appears at the path."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
            self.temp = None

    def commit(self) -> None:
        """Make the file durable and put it in place (OutputError when any step fails: then
        nothing is at the path)."""
        if self.temp is None:  # discarded
            return
        temp, handle = self.temp, self.handle
        placed = False
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            self._handle = None
            if self.force:
                os.rename(temp, self.path)
                placed = True
            else:
                try:
                    os.link(temp, self.path)  # fails if anything appeared there meanwhile
                except FileExistsError:
                    raise UsageError(
                        f"{self.path}: appeared while writing; use --force to replace it"
                    ) from None
                placed = True
                os.unlink(temp)
            self.temp = None
        except OSError as exc:
            if placed:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            self.discard()
            raise OutputError(
                f"{self.path}: not written: {exc.strerror or exc}; nothing is left there"
            ) from None
        except BaseException:
            self.discard()
            raise
        try:
            fsync_dir(self.path.parent)
        except OSError as exc:
            # In place, but the rename may not survive a crash: a file that may vanish is
            # worse than none, so it goes, and the message says so.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            replaced = " (and the file it replaced is gone)" if self.force else ""
            raise OutputError(
                f"{self.path}: written, but its directory could not be synced "
                f"({exc.strerror or exc}), so it might not survive a crash; removed{replaced}"
            ) from None

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.commit()


def write_file(
    path: str | os.PathLike[str], data: bytes, *, force: bool = False, mode: int = 0o600
) -> None:
    """Write `data` to the user-named `path` atomically (see OutputFile)."""
    with OutputFile(path, force=force, mode=mode) as out:
        out.handle.write(data)


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Remove `.<name>.<pid>.<n>.tmp` files of processes that no longer run on this host."""
    pattern = re.compile(rf"\.{re.escape(name)}\.(\d+)\.\d+\.tmp")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for entry in names:
        match = pattern.fullmatch(entry)
        if match and not process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(directory / entry)


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True
