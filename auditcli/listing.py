"""Directory listings remembered while the directory's own stat says nothing changed.

`audit serve` lists the log directory and every partition on each request; on a store of a
year that is hundreds of `listdir` calls for directories that change once a day. A listing is
kept with the directory's identity (inode, mtime, ctime) and reused while a `stat` of the
directory shows the same identity. Adding, removing or renaming an entry changes the
directory's mtime and ctime; ctime cannot be set back by anyone (`utime` sets it to now).

Timestamps are coarse (a kernel tick, up to 2 s on some file systems): a change made in the
same tick as the listing would leave the identity as it was. A listing is therefore reused only
if it was taken at least `settle` seconds after the directory's last change (as git does with
"racy" index entries); a directory changed just now is listed afresh on every call.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DirectoryListings:
    """What `list_now()` returned for each directory, reused while the directory is unchanged.

    Bounded (LRU, `max_dirs`); shared by threads."""

    def __init__(self, max_dirs: int = 4096, settle: float = 2.0) -> None:
        self.max_dirs = max_dirs
        self.settle_ns = int(settle * 1e9)
        self._known: OrderedDict[str, tuple[tuple[int, int, int], Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, path: os.PathLike[str] | str, list_now: Callable[[], T]) -> T:
        """`list_now()`'s answer for the directory `path`, from memory while the directory's
        inode, mtime and ctime are those it had when that answer was taken (and that answer
        was taken after the change had settled). Exceptions of `list_now` pass through and
        nothing is remembered."""
        key = os.fspath(path)
        try:
            info = os.stat(key)
        except OSError:
            return list_now()  # it says why, or that the directory is gone
        identity = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
        with self._lock:
            known = self._known.get(key)
            if known is not None and known[0] == identity:
                self._known.move_to_end(key)
                self.hits += 1
                return known[1]
            self.misses += 1
        taken = time.time_ns()
        answer = list_now()
        if taken - max(info.st_mtime_ns, info.st_ctime_ns) >= self.settle_ns:
            with self._lock:
                self._known[key] = (identity, answer)
                self._known.move_to_end(key)
                if len(self._known) > self.max_dirs:
                    self._known.popitem(last=False)
        return answer
