"""What a full `audit verify` proved about exact bytes, recorded outside the log directory, so
that a repeat verify of the same bytes need not prove it again.

Verify reads every data file of a store and hashes every line three times (its chain link, its
Merkle leaf, its share of the writer's tree): most of its time. On a repeat verify nearly all
files are the ones it already checked. For each plain data file made of whole lines only (no
torn end, no line over the size limit), verify hashes the file's name and whole content as it
reads it (`content_key`, SHA-256: one pass, what `sha256sum` does) and records, for a file
whose lines were all found right, what its line-by-line check gave: the number of lines, the
last line's link, and the link at each line count a seal checkpointed. For each Merkle tree
head recomputed from such files it records the SHA-256 of the head's leaf hashes under a key
binding the head's manifest, the manifest it extends and the content keys of its files.

A repeat verify hashes each file again: when the key is recorded, the lines of those exact
bytes under that name are known to be right, so only the checks that depend on anything else
run (checkpoints against the links recorded, the file's place in its writer's history). A head
whose manifests and files hash as recorded gives the frontier it states. A changed byte, a
file copied under another name, or a manifest changed gives another key: that file or head is
checked in full, as on the first verify. Nothing in the log directory is trusted for this.

The record is one file per store and writer under a directory private to the user,
`$XDG_CACHE_HOME/auditcli/verified/` (default `~/.cache/…`), refused unless the user owns it
and nobody else can write it (see `trust.open_private`); whoever can write the log directory
cannot write it. Deleting it costs speed, never a finding.

A verify of some days (--since/--until, and `audit report`'s check) reads it alike and records
the files it checked in full: what a file's entry states depends on nothing but the file's name
and bytes (its lines, the link at each checkpointed line count; the seals' checkpoints, which
every verify reads whole, are checked against it each time), so it holds whichever verify wrote
it. Such a verify checks no tree head, so it records none, and it keeps every entry of days it
did not look at. A whole-store verify keeps only the entries it used or made; a verify of some
days drops only those of its days that it did not use (a file since changed), so the record
stays about one entry per file either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from auditcli import trust
from auditcli.errors import IntegrityError
from auditcli.safeio import read_bounded, write_atomic_at
from auditcli.store import PARTITION_PREFIX

#: Hashed before everything a key binds: a release that checks files differently changes it,
#: so that what an older one proved is not believed.
_TAG = b"auditcli verified 1\x00"
#: A record bigger than this is damage (about 300 bytes per file and per seal).
_RECORD_MAX = 64 << 20

FileProof = tuple[int, bytes, dict[int, bytes]]  # lines, last link, link at each checkpoint
Period = tuple[str | None, str | None]  # the first and last day of a --since/--until verify


def location() -> str:
    """The record directory: `verified` beside the vouched line indexes (trust.location)."""
    return os.path.join(os.path.dirname(trust.location()), "verified")


def content_key(name: str, data: bytes) -> bytes:
    """The key of a data file named `name` (`date=…/<file>`) whose whole content is `data`."""
    hashed = content_hasher(name)
    hashed.update(data)
    return hashed.digest()


def content_hasher(name: str) -> Any:
    """A SHA-256 that gives `content_key(name, data)` once fed `data` (in pieces, as read)."""
    hashed = hashlib.sha256(_TAG)
    hashed.update(name.encode())
    hashed.update(b"\x00")
    return hashed


def head_key(extends: str | None, manifest_hash: str, files: Iterable[bytes]) -> bytes:
    """The key of a tree head: its manifest's hash, the hash of the manifest it extends, and
    the content keys of the files whose lines it appends (in its order)."""
    hashed = hashlib.sha256(_TAG + b"head\x00")
    hashed.update(f"{extends}\x00{manifest_hash}\x00".encode())
    for key in files:
        hashed.update(key)
    return hashed.digest()


class Proven:
    """One writer's record in one store: loaded when the writer's check starts, `save`d when it
    ends with what this verify used and added."""

    def __init__(self, root: str, writer: str, period: Period | None = None) -> None:
        """`period`: the days a --since/--until verify checks (None: the whole store)."""
        store = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:32]
        self.name = f"{store}-{writer}.json"
        self.files: dict[str, list] = {}
        self.heads: dict[str, str] = {}
        self.used_files: dict[str, list] = {}
        self.used_heads: dict[str, str] = {}
        self.changed = False
        self.period = period
        raw = _read(self.name)
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            loaded = orjson.loads(raw) if raw else {}
            files, heads = loaded.get("files", {}), loaded.get("heads", {})
            if isinstance(files, dict) and isinstance(heads, dict):
                self.files, self.heads = files, heads

    def file(self, key: bytes) -> FileProof | None:
        """What the record says of the file with this content key, if anything."""
        entry = self.files.get(key.hex())
        try:
            lines, head, links, *_ = entry  # type: ignore[misc]
            proof = (int(lines), bytes.fromhex(head), {int(k): v.encode() for k, v in links})
        except (TypeError, ValueError, AttributeError):
            return None
        self.used_files[key.hex()] = entry  # type: ignore[assignment]
        return proof

    def note_file(
        self, key: bytes, name: str, lines: int, head: bytes, links: Mapping[int, bytes]
    ) -> None:
        """Record the file `name` (`date=…/<file>`, as keyed) whose lines were all found right
        (`links`: the hex link at each line count a seal checkpointed)."""
        entry = [lines, head.hex(), sorted([k, v.decode()] for k, v in links.items()), name]
        if self.files.get(key.hex()) != entry:
            self.changed = True
        self.used_files[key.hex()] = entry

    def head(self, key: bytes) -> bytes | None:
        """The SHA-256 of the leaf hashes of the tree head with this key, if recorded."""
        value = self.heads.get(key.hex())
        try:
            digest = bytes.fromhex(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if len(digest) != 32:
            return None
        self.used_heads[key.hex()] = value  # type: ignore[assignment]
        return digest

    def note_head(self, key: bytes, digest: bytes) -> None:
        """Record a tree head recomputed from its files (`digest`: of its leaf hashes)."""
        if self.heads.get(key.hex()) != digest.hex():
            self.changed = True
        self.used_heads[key.hex()] = digest.hex()

    def save(self) -> None:
        """Keep what this verify used or added, and for a verify of some days also what it did
        not look at: the other days' files and every tree head (files since deleted or changed
        drop out). Any failure is ignored: the next verify then checks in full."""
        files, heads = self.used_files, self.used_heads
        if self.period is not None:
            files = {k: v for k, v in self.files.items() if not self.looked_at(v)} | files
            heads = self.heads | heads
        if not self.changed and len(files) == len(self.files) and len(heads) == len(self.heads):
            return  # (nothing added or changed: what is kept is a subset of what was read)
        data = orjson.dumps({"files": files, "heads": heads})
        with contextlib.suppress(OSError):
            directory = trust.open_private(location(), create=True)
            if directory is None:
                return
            try:
                # Whole or not at all: a write cut short (a size limit, a full disk) raises.
                temporary = f".{self.name}.{os.getpid()}.{id(self):x}.tmp"
                write_atomic_at(directory, self.name, temporary, data)
            finally:
                os.close(directory)

    def looked_at(self, entry: object) -> bool:
        """Whether this verify saw every file of the day of a record entry's file (a whole-store
        verify sees all; an entry that does not name its file cannot be told stale: kept)."""
        if self.period is None:
            return True
        name = entry[3] if isinstance(entry, list) and len(entry) > 3 else None
        if not isinstance(name, str) or not name.startswith(PARTITION_PREFIX):
            return False
        first, last = self.period
        day = name[len(PARTITION_PREFIX) :][:10]
        return (first is None or day >= first) and (last is None or day <= last)


def _read(name: str) -> bytes:
    """The record file `name`, or nothing (missing, unreadable, not a regular file, too big,
    or in a directory someone else could write)."""
    try:
        directory = trust.open_private(location(), create=False)
    except OSError:
        return b""
    if directory is None:
        return b""
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory
        )
    except OSError:
        return b""
    finally:
        os.close(directory)
    try:
        return read_bounded(fd, _RECORD_MAX, name)
    except (OSError, IntegrityError):
        return b""
    finally:
        os.close(fd)
