"""The Merkle tree of sealed entries: the head each seal signs, the leaf hashes kept as derived
data, the check `verify` runs, and the loading `prove` needs.

**Which entries, in which order.** The tree is append-only across seals, like a CT log. A seal
with a tree head (manifest format `auditcli-manifest/3`) appends, for each file of its
`files` list in that list's order (by day, then segment), the lines past the count the
previous seal recorded for that file, up to the count this seal records; lines in file order.
Its `merkle` member says so explicitly::

    "merkle": {"size": 1200, "root": "sha256:…", "frontier": ["<hex>", …],
               "extends": "sha256:<hash of the previous seal manifest>" | null,
               "appended": [["date=2026-11-25/host-a.jsonl", 1000, 1180], …]}

`appended` ranges are 0-based, end exclusive: the range above adds lines 1001–1180. A leaf is
a stored line without its newline (`_chain` included), exactly as in the file. `frontier` is the
roots of the perfect subtrees on the tree's right edge, so the next seal continues the tree
from the signed manifest alone, hashing only the new lines. `extends` is null when the tree
starts at this seal (the first seal with a tree, or after one without): it then covers every
line of every file the seal lists. A plain file and its gzip twin are one file (rotation keeps
the lines); lines of files deleted later stay in the tree (their leaf hashes are kept).

**Derived data.** Each seal's new leaf hashes (32 bytes each), hashed in the seal's own read
of each file, are written to `LOGDIR/_index/merkle/<writer>/<first>-<end>-<root hex>.leaves`,
and `prove` keeps one level of the tree's nodes beside them (`tree-….nodes`). They are never
evidence: `prove` checks what it builds from them against the signed heads and rebuilds a bad
or missing one from the files; `verify` recomputes every seal's leaves from the files and
rewrites the derived file when it differs. Deleting `_index/` loses nothing while the log files
exist; before retention deletes files, `keep_leaves` makes sure their kept leaves are right.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from auditcli import chain
from auditcli.errors import IntegrityError
from auditcli.lineindex import INDEX_DIR
from auditcli.outfile import process_alive
from auditcli.query import Problem
from auditcli.safeio import write_all
from auditcli.store import PARTITION_PREFIX, AuditStore, LineSource, LogFile

from .constants import MANIFEST_DIR, MERKLE_DIR, TREE_FORMAT
from .manifests import (
    Manifest,
    chain_writers,
    file_key,
    file_writer,
    iter_manifests,
    load_manifests,
    read_manifest,
    receipt_names,
    receipt_records,
    records_of,
)
from .merkle import HASH_SIZE, Frontier, Tree, leaf_hashes, verify_inclusion
from .redaction import Redactions

_KIND = "tree head"
_TEMP = re.compile(r"\.leaves\.(\d+)\.[0-9a-f]+\.tmp")  # _LeafFile's: .leaves.<pid>.<n>.tmp
_GONE, _UNCHECKED = "gone", "unchecked"  # outcomes of _check_one besides a problem
_LOST = (
    "covers files deleted since whose kept leaf hashes (_index/merkle) are gone: it cannot be"
    " rechecked, and entries sealed with or after it cannot be proved; restore _index/merkle"
    " from a backup"
)


@dataclass(frozen=True)
class TreeHead:
    """The well-formed `merkle` member of one seal manifest."""

    manifest: Manifest
    size: int
    root: bytes
    frontier: tuple[bytes, ...]
    extends: str | None
    appended: tuple[tuple[str, int, int], ...]

    @property
    def writer(self) -> str:
        """The writer whose chain holds the head."""
        return self.manifest.writer or ""

    @property
    def first(self) -> int:
        """The index of the first leaf this seal appended."""
        return self.size - sum(end - start for _, start, end in self.appended)


# ---------------------------------------------------------------------------- sealing
Coverage = dict[tuple[str, str], int]


@dataclass
class TreeStart:
    """Where a writer's next seal continues its tree: the head of its newest readable seal
    (None: the next seal starts a new tree) and how many lines of each file the tree holds."""

    writer: str
    base: TreeHead | None
    coverage: Coverage


def advance(coverage: Coverage, manifest: Manifest) -> None:
    """Fold one readable manifest of a writer's chain into the tree's line counts per file: a
    seal sets the counts of the files it lists (a seal starting a tree, or one without a tree,
    starts from nothing), a deletion receipt drops its files (re-created, they start again from
    line 0). Seal and verify use this same fold, so they plan the same ranges."""
    if manifest.body is None or manifest.error:
        return
    if manifest.kind == "seal":
        head = head_of(manifest)
        if head is None or head.extends is None:
            coverage.clear()
        for record in records_of(manifest):
            key = file_key(record["name"])
            if key is not None:
                coverage[key] = record["lines"]
    elif manifest.kind == "receipt":
        for record in receipt_records(manifest):
            coverage.pop(file_key(record["name"]), None)  # type: ignore[arg-type]


def foreign_receipts(
    store: AuditStore, writer: str, receipts: Iterable[Manifest] | None = None
) -> list[tuple[str, tuple[str, str]]]:
    """`(time, file key)` of `writer`'s files deleted under receipts in other writers' chains
    (a shared volume's sealer, a log host applying retention), oldest first. `receipts`: every
    chain's receipts, when the caller has read them already."""
    if receipts is None:
        receipts = (
            read_manifest(path, sequence, other)
            for other, sequence, path in receipt_names(store)
            if other != writer
        )
    found = []
    for receipt in receipts:
        if receipt.writer == writer or receipt.body is None or receipt.error:
            continue
        for record in receipt_records(receipt):
            key = file_key(record["name"])
            if key is not None and file_writer(key[1]) == writer:
                found.append((receipt.sealed_at, key))
    return sorted(found)


def drop_foreign(
    coverage: Coverage, foreign: Sequence[tuple[str, tuple[str, str]]], at: int, until: str | None
) -> int:
    """Drop from `coverage` the files of `foreign[at:]` deleted before time `until` (None: all),
    as `writer_state` does for the seal's own view; returns the next index."""
    while at < len(foreign) and (until is None or foreign[at][0] < until):
        coverage.pop(foreign[at][1], None)
        at += 1
    return at


def tree_start(
    store: AuditStore,
    writer: str,
    manifests: Iterable[Manifest] | None = None,
    receipts: Iterable[Manifest] | None = None,
) -> TreeStart:
    """The state of `writer`'s tree before its next seal (read from its chain, and the
    receipts of other chains that deleted its files; or from `manifests` and `receipts`, when
    the caller has read them)."""
    coverage: Coverage = {}
    base: TreeHead | None = None
    foreign = foreign_receipts(store, writer, receipts)
    at = 0
    for manifest in iter_manifests(store, writer) if manifests is None else manifests:
        if manifest.body is None or manifest.error:
            continue
        at = drop_foreign(coverage, foreign, at, manifest.sealed_at)
        advance(coverage, manifest)
        if manifest.kind == "seal":
            base = head_of(manifest)
    drop_foreign(coverage, foreign, at, None)
    return TreeStart(writer, base, coverage if base else {})


class TreeBuilder:
    """A seal's tree head, built streaming as the seal reads its files: `hasher(file)` is the
    `file_record` callback that hashes the file's new lines in the seal's one read, `add(record,
    hasher)` appends them (in the order the seal lists its records) to the frontier and to the
    derived leaf file. Memory: the frontier (O(log n)) and one file's leaf hashes."""

    def __init__(self, store: AuditStore, start: TreeStart) -> None:
        self.store = store
        self.start = start
        base = start.base
        self.frontier = Frontier(base.size, base.frontier) if base else Frontier()
        self.first = self.frontier.size
        self.appended: list[tuple[str, int, int]] = []
        self.files = _FileFinder(store)
        self.out = _LeafFile(store, start.writer)

    def hasher(self, file: LogFile) -> LeafHasher:
        """The callback hashing the lines of `file` that its tree does not hold yet."""
        return LeafHasher(self.start.coverage.get((file.day, file.segment), 0))

    def add(self, record: Mapping[str, Any], hasher: LeafHasher | None = None) -> None:
        """Append the lines a listed `record` adds to the tree: from `hasher` when it saw them
        (the record's own read), else read again."""
        for name, first, end in planned_ranges(self.start.coverage, [record]):
            leaves = hasher.leaves(first, end) if hasher is not None else None
            if leaves is None:  # not read with the record (a reused archive record)
                leaves = _leaves_of(self.files.find(name), first, end)
            self.frontier.extend_concatenated(leaves)
            self.out.write(leaves)
            self.appended.append((name, first, end))

    def discard(self) -> None:
        """Drop the partial leaf file of a seal that did not finish (nothing once it did)."""
        self.out.discard()

    def fields(self) -> dict[str, Any]:
        """The format and `merkle` members of the seal manifest; keeps the new leaf hashes."""
        frontier, base = self.frontier, self.start.base
        root = frontier.root()
        self.out.finish(self.first, frontier.size, root)
        return {
            "format": TREE_FORMAT,
            "merkle": {
                "size": frontier.size,
                "root": chain.tag(root),
                "frontier": [h.hex() for h in frontier.hashes],
                "extends": base.manifest.hash if base else None,
                "appended": [list(item) for item in self.appended],
            },
        }


class LeafHasher:
    """The leaf hashes of lines `start` (0-based) on of one file, fed its chunks of whole lines
    in order with the number of lines before each (`file_record`'s `on_lines`)."""

    def __init__(self, start: int = 0, end: int | None = None) -> None:
        self.start = start
        self.end = end
        self.lines = 0  # lines seen so far
        self.parts: list[bytes] = []

    def __call__(self, chunk: bytes, before: int) -> None:
        """Hash the wanted lines of `chunk`, whose first line is line `before` (0-based)."""
        if self.end is not None and before >= self.end:
            return  # past the wanted lines
        if before < self.start:
            self.lines = before + chunk.count(b"\n")
            if self.lines <= self.start:
                return  # no wanted line in it: counted, not split
        lines = chunk.split(b"\n")
        lines.pop()  # after the last newline
        self.lines = before + len(lines)
        stop = None if self.end is None else self.end - before
        self.parts.append(leaf_hashes(lines[max(self.start - before, 0) : stop]))

    def leaves(self, first: int, end: int) -> bytes | None:
        """The leaf hashes of lines [first, end), or None when this hasher did not see them."""
        if first != self.start or self.lines < end or (self.end is not None and self.end < end):
            return None
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        self.parts = [data]
        return data[: (end - first) * HASH_SIZE]


def planned_ranges(
    prior: Mapping[tuple[str, str], int], records: Sequence[Mapping[str, Any]]
) -> list[tuple[str, int, int]]:
    """`(file name, first line, end line)` a seal with `records` appends to a tree that holds
    `prior` lines per file key: the rule in this module's docstring."""
    ranges = []
    for record in records:
        key = file_key(str(record.get("name")))
        lines = record.get("lines")
        if key is None or not isinstance(lines, int):
            continue
        start = prior.get(key, 0)
        if lines > start:
            ranges.append((str(record["name"]), start, lines))
    return ranges


class _GoneError(IntegrityError):
    """A file a tree range names is no longer in the store (retention, or deleted)."""


class _FileFinder:
    """The current file (plain or its gzip twin) of a manifest's file name."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self.days: dict[str, dict[tuple[str, str], LogFile]] = {}

    def find(self, name: str) -> LogFile:
        key = file_key(name)
        if key is None:
            raise IntegrityError(f"{name}: not a log file name")
        if key[0] not in self.days:
            self.days[key[0]] = {(f.day, f.segment): f for f in self.store.files(key[0])}
        found = self.days[key[0]].get(key)
        if found is None:
            raise _GoneError(f"{name}: gone from the store; its leaves cannot be recomputed")
        return found


def _leaves_of(file: LogFile, start: int, end: int) -> bytes:
    """The leaf hashes of lines [start, end) (0-based) of `file`, concatenated."""
    source = LineSource(file)
    hasher = LeafHasher(start, end)
    number = 0  # lines before the current chunk
    for chunk in source.chunks():
        hasher(chunk, number)
        number = source.lines
        if number >= end:
            break
    if number < end:
        raise IntegrityError(f"{file.name}: {number} whole lines, the seal covers {end}")
    return hasher.leaves(start, end) or b""


# ---------------------------------------------------------------------------- derived data
def leaves_path(store: AuditStore, writer: str, first: int, end: int, root: bytes) -> Path:
    """Where the leaf hashes [first, end) of `writer`'s tree with head `root` at size `end`
    live."""
    return Path(_leaves_file(store, writer, first, end, root))


def _leaves_file(store: AuditStore, writer: str, first: int, end: int, root: bytes) -> str:
    """`leaves_path` as a string: verify reads one per head, and a Path costs more to make
    than the read."""
    name = f"{first:012d}-{end:012d}-{root.hex()}.leaves"
    return os.path.join(store.root, INDEX_DIR, MERKLE_DIR, writer, name)


def save_leaves(
    store: AuditStore, writer: str, first: int, end: int, root: bytes, leaves: bytes | bytearray
) -> None:
    """Write one seal's leaf hashes, atomically; a failure is ignored (derived data)."""
    out = _LeafFile(store, writer)
    out.write(leaves)
    out.finish(first, end, root)


class _LeafFile:
    """A derived leaf file written as its hashes come (a temporary file, renamed to its name
    once the head is known); any failure drops it (derived data)."""

    def __init__(self, store: AuditStore, writer: str) -> None:
        self.store, self.writer = store, writer
        self.directory = store.root / INDEX_DIR / MERKLE_DIR / writer
        self.temporary = self.directory / f".leaves.{os.getpid()}.{id(self):x}.tmp"
        self.fd: int | None = None
        self.failed = False

    def write(self, leaves: bytes | bytearray) -> None:
        """Append leaf hashes."""
        if self.failed or not leaves:
            return
        try:
            if self.fd is None:
                self.fd = self._open()
            if self.fd is not None:
                write_all(self.fd, leaves)
        except OSError:
            self._drop()

    def finish(self, first: int, end: int, root: bytes) -> None:
        """Name the file after the leaves [first, end) of the head `root` (nothing when empty)."""
        self.finish_at(leaves_path(self.store, self.writer, first, end, root))

    def finish_at(self, target: Path) -> None:
        """Rename the file written to `target` (nothing when nothing was written)."""
        if self.fd is None:
            return
        try:
            os.close(self.fd)
            self.fd = None
            if not self.failed:
                os.replace(self.temporary, target)
                _prune_temps(self.directory)
        except OSError:
            self._drop()

    def discard(self) -> None:
        """Remove the temporary file if it was not named yet."""
        if self.fd is not None:
            self._drop()

    def _open(self) -> int | None:
        directory = self.directory
        for path in (directory.parent.parent, directory.parent, directory):
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
            if path.is_symlink():  # planted: never write through it
                self.failed = True
                return None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(self.temporary, flags, 0o600)

    def _drop(self) -> None:
        self.failed = True
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        with contextlib.suppress(OSError):
            os.unlink(self.temporary)


def _prune_temps(directory: Path) -> None:
    """Remove the temporary leaf files (`_LeafFile`) of processes that no longer run (a seal
    killed while it wrote)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            stale = _TEMP.fullmatch(name)
            if stale and not process_alive(int(stale.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(directory / name)


def _saved_leaves(store: AuditStore, head: TreeHead) -> bytes | None:
    path = _leaves_file(store, head.writer, head.first, head.size, head.root)
    try:
        # O_NONBLOCK: a FIFO planted here reads as empty (a wrong file, rewritten), never hangs
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    size = (head.size - head.first) * HASH_SIZE
    try:
        data = os.read(fd, size + 1)  # one read: a longer file is wrong whatever follows
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) == size else None


def _recomputed_leaves(
    head: TreeHead, files: _FileFinder, redactions: Redactions | None = None
) -> bytes:
    parts = [_leaves_of(files.find(name), start, end) for name, start, end in head.appended]
    if redactions is not None:  # a line redacted after this seal: the leaf the seal signed
        parts = [
            redactions.sealed_leaves(file_key(name), start, leaves, head.manifest.sealed_at)
            for (name, start, _), leaves in zip(head.appended, parts, strict=True)
        ]
    return b"".join(parts)


# ---------------------------------------------------------------------------- retention
def keep_leaves(store: AuditStore, names: Sequence[str]) -> None:
    """Before retention deletes the files `names`: make sure the kept leaf hashes of every tree
    head that appended lines of them are there and right (hashed again from the files while
    they exist), since once they are gone the kept hashes are the only copy of those leaves.
    Call it holding the manifest lock. A head whose files are already gone is left as it is
    (`verify` reports it)."""
    keys = {file_key(name) for name in names} - {None}
    files = _FileFinder(store)
    for writer in chain_writers(store)[0]:
        base: TreeHead | None = None
        for manifest in iter_manifests(store, writer):
            head = head_of(manifest)
            if manifest.kind == "seal" and manifest.error is None:
                if head is not None and keys & {file_key(n) for n, _, _ in head.appended}:
                    _keep_one(store, head, base, files)
                base = head


#: Kept leaf files this process found right: (root, inode, size, mtime).
_KEPT: set[tuple[bytes, int, int, int]] = set()


def _keep_one(store: AuditStore, head: TreeHead, base: TreeHead | None, files: _FileFinder) -> None:
    """Keep `head`'s leaves: the saved ones when they take `base` to `head`, else hashed from
    the files (kept only when they give the head)."""
    heads = [base, head] if base is not None and head.extends is not None else [head]
    try:
        info = os.stat(leaves_path(store, head.writer, head.first, head.size, head.root))
        seen = (head.root, info.st_ino, info.st_size, info.st_mtime_ns)
    except OSError:
        seen = None
    if seen is not None and seen in _KEPT:
        return  # checked by an earlier receipt of this process (rotate deletes day by day)
    if _continues(heads, len(heads) - 1, _saved_leaves(store, head)):
        if seen is not None:
            _KEPT.add(seen)
        return
    try:
        leaves = _recomputed_leaves(head, files)
    except IntegrityError:
        return  # a file it covers is already gone or damaged: nothing left to keep from
    if _continues(heads, len(heads) - 1, leaves):
        save_leaves(store, head.writer, head.first, head.size, head.root, leaves)


# ---------------------------------------------------------------------------- reading heads
def head_of(manifest: Manifest) -> TreeHead | None:
    """The tree head of a seal manifest, or None when it has none or it is malformed."""
    if "head" not in manifest.memo:  # parsed once per manifest read (verify asks thrice)
        manifest.memo["head"] = _parse_head(manifest)
    head: TreeHead | None = manifest.memo["head"]
    return head


def _parse_head(manifest: Manifest) -> TreeHead | None:
    merkle = (manifest.body or {}).get("merkle")
    if manifest.error or manifest.kind != "seal" or not isinstance(merkle, dict):
        return None
    try:
        size, root, frontier = merkle["size"], merkle["root"], merkle["frontier"]
        extends, appended = merkle["extends"], merkle["appended"]
        if not isinstance(size, int) or size < 0 or not isinstance(root, str):
            return None
        if not root.startswith("sha256:") or (extends is not None and not isinstance(extends, str)):
            return None
        ranges = tuple((str(n), int(a), int(b)) for n, a, b in appended)
        if any(not 0 <= a < b for _, a, b in ranges) or sum(b - a for _, a, b in ranges) > size:
            return None
        hashes = tuple(bytes.fromhex(h) for h in frontier)
        if len(hashes) != bin(size).count("1") or any(len(h) != HASH_SIZE for h in hashes):
            return None
        root_bytes = bytes.fromhex(root[7:])
    except (KeyError, TypeError, ValueError):
        return None
    if len(root_bytes) != HASH_SIZE:
        return None
    return TreeHead(manifest, size, root_bytes, hashes, extends, ranges)


def tree_chain(manifests: Sequence[Manifest], target: Manifest) -> list[TreeHead]:
    """The heads from the start of `target`'s tree to `target`, oldest first (IntegrityError
    when a link is missing or does not add up)."""
    by_hash = {m.hash: m for m in manifests if m.hash}
    head = head_of(target)
    if head is None:
        raise IntegrityError(f"{target.name}: has no valid tree head")
    found = [head]
    while head.extends is not None:
        before = by_hash.get(head.extends)
        older = head_of(before) if before else None
        if older is None:
            raise IntegrityError(
                f"{head.manifest.name}: its tree extends {head.extends}, no valid seal with a"
                " tree head"
            )
        if older.size != head.first:
            raise IntegrityError(
                f"{head.manifest.name}: appends {head.size - head.first} leaves to a tree of"
                f" {older.size}, but states {head.size}"
            )
        found.append(older)
        head = older
    if head.first != 0:
        raise IntegrityError(f"{head.manifest.name}: its tree starts from nothing at {head.first}")
    return found[::-1]


# ---------------------------------------------------------------------------- verify
class TreeCheck:
    """What `verify` runs for each writer's chain: recompute every seal's tree head from the
    files, continuing from the head it extends, and add to the report (a VerifyReport) a problem
    for each head that does not match or is missing from a format-3 seal, unless a problem
    already found in one of the files it covers explains it. Rewrites a derived leaf file that
    is missing or differs. `notes()` sums up once every writer is checked."""

    def __init__(self, store: AuditStore, report: Any) -> None:
        self.store = store
        self.report = report
        self.files = _FileFinder(store)
        self.counts = {"heads": 0, _GONE: 0}
        self.redactions: Redactions | None = None  # set by verify: lines redacted since

    def check(
        self,
        writer: str,
        manifests: Sequence[Manifest] | None = None,
        foreign: Sequence[tuple[str, tuple[str, str]]] | None = None,
        streamed: Mapping[int, Any] | None = None,
    ) -> None:
        """Check the heads of `writer`'s chain (after its files were checked). The caller may
        pass the chain's `manifests` and the `foreign_receipts` it already read, and the heads
        whose leaves its scan of the files already fed (leaffeed.Pending, by sequence)."""
        explained = {file_key(p.file) for p in self.report.problems} - {None}
        problems, counts = self.report.problems, self.counts
        if manifests is not None and foreign is not None:
            before, kept = len(problems), dict(counts)
            read = (manifests, foreign, streamed or {})
            _check_chain(
                self.store,
                writer,
                self.report,
                explained,
                self.files,
                counts,
                read,
                self.redactions,
            )
            if len(problems) == before:
                return
            # What the caller read before the files may be behind the chain and the receipts
            # now (a seal or a retention ran alongside): a problem is decided on them as they
            # are now.
            del problems[before:]
            counts.update(kept)
        read = (load_manifests(self.store, writer)[0], foreign_receipts(self.store, writer), {})
        _check_chain(
            self.store, writer, self.report, explained, self.files, counts, read, self.redactions
        )

    def notes(self) -> None:
        """Add to the report how many heads were recomputed (`tree_heads`; not a note: every
        verify does it) and notes on the heads that could not be, or only from kept leaves."""
        counts, notes = self.counts, self.report.notes
        self.report.tree_heads = counts["heads"]
        if counts[_GONE]:
            notes.append(
                f"{counts[_GONE]} tree head(s) cover files deleted since; checked from the kept"
                " leaf hashes"
            )


def _check_chain(
    store: AuditStore,
    writer: str,
    report: Any,
    explained: set[tuple[str, str] | None],
    files: _FileFinder,
    counts: dict[str, int],
    read: tuple[Sequence[Manifest], Sequence[tuple[str, tuple[str, str]]], Mapping[int, Any]],
    redactions: Redactions | None = None,
) -> None:
    """`TreeCheck.check`: the heads of one writer's chain."""
    prefix = f"{MANIFEST_DIR}/{writer}/"
    # A deleted or altered manifest breaks the `extends` links after it: already reported.
    chain_broken = any(p.file.startswith(prefix) for p in report.problems)
    # (sequence, file key) of every file a retention receipt of this chain excused, and
    # (time, file key) of those of other chains: the file a head covered may be gone, or
    # re-created since under the same name with other lines.
    manifests, foreign, streamed = read
    receipted = _receipted(manifests)
    coverage: Coverage = {}
    base: TreeHead | None = None  # the head of the newest readable seal so far
    at = 0
    for manifest in manifests:
        if manifest.error or manifest.body is None:
            continue
        at = drop_foreign(coverage, foreign, at, manifest.sealed_at)
        if manifest.kind != "seal":
            advance(coverage, manifest)
            continue
        head = head_of(manifest)
        if head is None:
            if manifest.body.get("format") == TREE_FORMAT:
                report.problems.append(Problem(manifest.name, None, _KIND, "missing or malformed"))
            advance(coverage, manifest)
            base = None
            continue
        counts["heads"] += 1
        deleted = _deleted_after(manifest, receipted, foreign)
        detail = _check_one(
            store,
            head,
            base,
            coverage,
            files,
            deleted,
            streamed.get(manifest.sequence),
            redactions,
        )
        if detail == _GONE:
            counts[detail] += 1
        elif (
            detail
            and not explained & {file_key(name) for name, _, _ in head.appended}
            and not (chain_broken and detail.startswith("extends"))
        ):
            # _UNCHECKED: retention kept the leaves before it deleted the files; lost since
            report.problems.append(
                Problem(manifest.name, None, _KIND, _LOST if detail == _UNCHECKED else detail)
            )
        advance(coverage, manifest)
        base = head


def _check_one(
    store: AuditStore,
    head: TreeHead,
    base: TreeHead | None,
    coverage: Coverage,
    files: _FileFinder,
    deleted: set[tuple[str, str] | None],
    streamed: Any = None,
    redactions: Redactions | None = None,
) -> str:
    """What is wrong with one head: "" when nothing, _GONE when files it covers were deleted
    since (gone, or under a later receipt: `deleted` are their file keys) and
    the kept leaves match, _UNCHECKED when those are gone too, else the problem. `base` is the
    head of the seal before it, `coverage` the tree's lines per file then. `streamed`: the
    head's leaves as verify's scan of the files fed them (a leaffeed.Pending), if it did."""
    if head.extends is None:
        if base is not None:
            return f"starts a new tree though the seal before ({base.manifest.label}) has one"
        start, prior = Frontier(), {}
    elif base is None or base.manifest.hash != head.extends:
        return f"extends {head.extends}, which is not the seal before it"
    else:
        start, prior = Frontier(base.size, base.frontier), coverage
    planned = planned_ranges(prior, list(records_of(head.manifest)))
    if tuple(planned) != head.appended:
        return "its appended ranges are not the lines its files grew by since the seal before"
    gone = any(file_key(name) in deleted for name, _, _ in head.appended)
    if not gone and streamed is not None and streamed.complete and gives(streamed.frontier, head):
        # Fed by verify's one pass over the files, from the same start (the head it extends).
        # Anything else is decided by reading the files again, below, as it always was.
        start, digest = streamed.frontier, streamed.digest.digest()
    elif not gone and streamed is not None and streamed.proven is not None:
        # An earlier verify recomputed it from these very manifests and files (proven.py).
        start, digest = Frontier(head.size, head.frontier), streamed.proven
    else:
        digest = None
        origin = start.copy()
        try:
            leaves = b"" if gone else _recomputed_leaves(head, files, redactions)
        except _GoneError:
            gone = True
        except IntegrityError as exc:  # shorter than sealed, unreadable: its file's problem too
            if not _receipted_since(store, head):
                return f"cannot recompute its leaves: {exc}"
            gone = True  # deleted by a retention that ran while verify did: the kept leaves decide
        if gone:
            leaves = _saved_leaves(store, head) or b""
            if not leaves:  # a copy that kept the files (a fleet's central store) still has them
                leaves = _recomputed_if_head(head, files, start.copy(), redactions)
                if not leaves:
                    return _UNCHECKED
                gone = False
        start.extend_concatenated(leaves)
        if not gone and not gives(start, head) and _receipted_since(store, head):
            # A retention receipt written while verify ran deleted a file the head covers, and
            # a late writer made it again: the kept leaves decide.
            gone, start, leaves = True, origin, _saved_leaves(store, head) or b""
            if not leaves:
                return _UNCHECKED
            start.extend_concatenated(leaves)
    if not gives(start, head):
        return f"the entries it covers no longer give its tree head (size {head.size})"
    if start.root() != head.root:
        return "its root is not the hash of its frontier"
    if not gone:
        saved = _saved_leaves(store, head)
        if digest is None:
            if saved != leaves:
                save_leaves(store, head.writer, head.first, head.size, head.root, leaves)
        elif saved is None or sha256(saved).digest() != digest:
            # The kept leaf file is missing or wrong (rare): its files are read once more.
            with contextlib.suppress(IntegrityError):  # gone meanwhile: derived data waits
                leaves = _recomputed_leaves(head, files)
                save_leaves(store, head.writer, head.first, head.size, head.root, leaves)
    return _GONE if gone else ""


def gives(frontier: Frontier, head: TreeHead) -> bool:
    """Whether `frontier` is the head's (size and right-edge hashes)."""
    return frontier.size == head.size and tuple(frontier.hashes) == head.frontier


def _recomputed_if_head(
    head: TreeHead, files: _FileFinder, frontier: Frontier, redactions: Redactions | None = None
) -> bytes:
    """`head`'s leaves hashed from the files when they are there and take `frontier` (the
    head before it) to `head`, else nothing (gone, or re-created with other lines)."""
    try:
        leaves = _recomputed_leaves(head, files, redactions)
    except IntegrityError:
        return b""
    frontier.extend_concatenated(leaves)
    return leaves if gives(frontier, head) else b""


def _receipted_since(store: AuditStore, head: TreeHead) -> bool:
    """Whether a retention receipt, read now, names a file `head` covers and came after it: one
    written while verify ran (its file may be gone, or made again by a late writer)."""
    keys = {file_key(name) for name, _, _ in head.appended}
    own, _ = load_manifests(store, head.writer)
    foreign = foreign_receipts(store, head.writer)
    return bool(keys & _deleted_after(head.manifest, _receipted(own), foreign))


def _receipted(manifests: Sequence[Manifest]) -> list[tuple[int, tuple[str, str] | None]]:
    """`(sequence, file key)` of every file a retention receipt of this chain excused."""
    return [(m.sequence, file_key(r["name"])) for m in manifests for r in receipt_records(m)]


def _deleted_after(
    seal: Manifest,
    receipted: Sequence[tuple[int, tuple[str, str] | None]],
    foreign: Sequence[tuple[str, tuple[str, str]]],
) -> set[tuple[str, str] | None]:
    """The file keys that receipts after `seal` excused: of its own chain (`receipted`, by
    sequence) and of other chains (`foreign`, by time)."""
    deleted = {key for sequence, key in receipted if sequence > seal.sequence}
    deleted.update(key for when, key in foreign if when >= seal.sealed_at)
    return deleted


# ---------------------------------------------------------------------------- prove
#: The height of the level of nodes kept for `prove` (`_index/merkle/<writer>/tree-….nodes`,
#: 1/64 of the leaf hashes): an audit path then hashes at most 64 leaves per level below it
#: instead of the whole tree.
NODES_HEIGHT = 6


@dataclass
class LoadedTree:
    """The full tree of one seal, and which file line each leaf is."""

    heads: list[TreeHead]
    tree: Tree

    def locate(self, leaf_index: int) -> tuple[str, int]:
        """`(file name, 1-based line)` of a leaf."""
        for head in self.heads:
            if head.first <= leaf_index < head.size:
                at = head.first
                for name, start, end in head.appended:
                    if leaf_index < at + end - start:
                        return name, start + leaf_index - at + 1
                    at += end - start
        raise ValueError(f"no leaf {leaf_index}")

    def find(self, leaf: bytes, day: str | None = None) -> int | None:
        """The index of leaf hash `leaf`: with `day`, among the lines of that day's files only
        (where an entry of that day is stored), else anywhere in the tree."""
        spans = [(0, self.tree.size)]
        if day is not None:
            prefix, spans = f"{PARTITION_PREFIX}{day}/", []
            for head in self.heads:
                at = head.first
                for name, start, end in head.appended:
                    if name.startswith(prefix):
                        spans.append((at, at + end - start))
                    at += end - start
        leaves = self.tree.leaves
        for low, high in spans:
            found = leaves.find(leaf, low * HASH_SIZE, high * HASH_SIZE)
            while found >= 0 and found % HASH_SIZE:  # straddles two hashes: look further
                found = leaves.find(leaf, found + 1, high * HASH_SIZE)
            if found >= 0:
                return found // HASH_SIZE
        return None

    def proof(self, index: int, leaf: bytes) -> list[bytes] | None:
        """The audit path of `leaf` at `index` to the newest head, or None when it does not
        lead to the signed root (the kept leaf hashes are wrong)."""
        head = self.heads[-1]
        path = self.tree.inclusion_path(index, head.size)
        return path if verify_inclusion(leaf, index, head.size, path, head.root) else None


def load_tree(
    store: AuditStore, manifests: Sequence[Manifest], target: Manifest, *, recheck: bool = False
) -> LoadedTree:
    """The tree `target` signs, from the derived leaf files and kept nodes (rebuilt from the
    entries where missing or wrong). The root is checked against the signed head; the kept
    nodes spare hashing every leaf, so a wrong leaf under them shows only in an audit path
    (`LoadedTree.proof`): then load again with `recheck`, which checks every leaf file against
    the heads. IntegrityError when the entries no longer give the signed head."""
    heads = tree_chain(manifests, target)
    files = _FileFinder(store)
    slices = [_saved_leaves(store, head) for head in heads]
    cache = nodes_path(store, heads[0])
    kept = b"" if recheck else _read_derived(cache)
    for attempt in range(1 if recheck else 0, 2):
        for i, head in enumerate(heads):
            if slices[i] is None or (attempt and not _continues(heads, i, slices[i])):
                try:
                    slices[i] = _recomputed_leaves(head, files)
                except IntegrityError as exc:
                    raise IntegrityError(
                        f"{head.manifest.name}: its leaf hashes are not kept (_index/merkle)"
                        f" and cannot be recomputed: {exc}"
                    ) from None
                save_leaves(store, head.writer, head.first, head.size, head.root, slices[i] or b"")
        leaves = b"".join(s or b"" for s in slices)
        tree = Tree(leaves, skip=NODES_HEIGHT, nodes=b"" if attempt else kept)
        if tree.size == heads[-1].size and tree.root() == heads[-1].root:
            if tree.nodes() != kept:
                out = _LeafFile(store, heads[0].writer)
                out.write(tree.nodes())
                out.finish_at(cache)
            return LoadedTree(heads, tree)
    raise IntegrityError(
        f"{target.name}: the sealed entries no longer give its tree head; run `audit verify`"
    )


def nodes_path(store: AuditStore, first: TreeHead) -> Path:
    """Where the kept nodes of the tree that starts with head `first` live."""
    name = f"tree-{first.size:012d}-{first.root.hex()}.nodes"
    return store.root / INDEX_DIR / MERKLE_DIR / first.writer / name


def _read_derived(path: Path) -> bytes:
    """A derived file's bytes, or nothing when it is missing, not a regular file or odd."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    return b"" if len(data) % HASH_SIZE else data


def _continues(heads: Sequence[TreeHead], i: int, leaves: bytes | None) -> bool:
    """Whether `leaves` take the head before heads[i] to heads[i]."""
    head = heads[i]
    frontier = Frontier(heads[i - 1].size, heads[i - 1].frontier) if i else Frontier()
    frontier.extend_concatenated(leaves or b"")
    return frontier.size == head.size and tuple(frontier.hashes) == head.frontier
