"""The Merkle tree of sealed entries: the head each seal signs, the leaf hashes kept as derived
data, the check `verify` runs, and the loading `prove` needs.

**Which entries, in which order.** The tree is append-only across seals, like a CT log. A seal
with a tree head (manifest format `auditcli-manifest/2`) appends, for each file of its
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

**Derived data.** Each seal's new leaf hashes (32 bytes each) are written to
`LOGDIR/_index/merkle/<first>-<end>-<root hex>.leaves`. They are never evidence: `prove`
checks them against the signed heads and rebuilds a bad or missing one from the files;
`verify` recomputes every seal's leaves from the files and rewrites the derived file when it
differs. Deleting `_index/` loses nothing while the log files exist.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from auditcli import chain
from auditcli.errors import IntegrityError
from auditcli.lineindex import INDEX_DIR
from auditcli.query import Problem
from auditcli.store import AuditStore, LineSource, LogFile

from .constants import MANIFEST_DIR, MERKLE_DIR, TREE_FORMAT
from .manifests import (
    Manifest,
    file_key,
    file_writer,
    iter_manifests,
    load_manifests,
    read_manifest,
    receipt_names,
    receipt_records,
    records_of,
)
from .merkle import HASH_SIZE, Frontier, Tree
from .redaction import Redactions

_KIND = "tree head"
_GONE, _UNCHECKED = "gone", "unchecked"  # outcomes of _check_one besides a problem


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


def foreign_receipts(store: AuditStore, writer: str) -> list[tuple[str, tuple[str, str]]]:
    """`(time, file key)` of `writer`'s files deleted under receipts in other writers' chains
    (a shared volume's sealer, a log host applying retention), oldest first."""
    found = []
    for other, sequence, path in receipt_names(store):
        if other == writer:
            continue
        receipt = read_manifest(path, sequence, other)
        if receipt.body is None or receipt.error:
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


def tree_start(store: AuditStore, writer: str) -> TreeStart:
    """The state of `writer`'s tree before its next seal (read from its chain, and the
    receipts of other chains that deleted its files)."""
    coverage: Coverage = {}
    base: TreeHead | None = None
    foreign = foreign_receipts(store, writer)
    at = 0
    for manifest in iter_manifests(store, writer):
        if manifest.body is None or manifest.error:
            continue
        at = drop_foreign(coverage, foreign, at, manifest.sealed_at)
        advance(coverage, manifest)
        if manifest.kind == "seal":
            base = head_of(manifest)
    drop_foreign(coverage, foreign, at, None)
    return TreeStart(writer, base, coverage if base else {})


def tree_fields(
    store: AuditStore, start: TreeStart, records: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The members a new seal manifest adds for its tree: the format version and the head.

    `start` is the writer's tree before it (`tree_start`); `records` the file records the new
    seal lists (every file of the writer when `start.base` is None). Hashes only the lines new
    since the tree's previous head."""
    base = start.base
    frontier = Frontier(base.size, base.frontier) if base else Frontier()
    appended = planned_ranges(start.coverage, records)
    files = _FileFinder(store)
    leaves = bytearray()
    for name, first, end in appended:
        hashes = _leaves_of(files.find(name), first, end)
        frontier.extend_concatenated(hashes)
        leaves += hashes
    root = frontier.root()
    first_leaf = frontier.size - len(leaves) // HASH_SIZE
    save_leaves(store, start.writer, first_leaf, frontier.size, root, leaves)
    return {
        "format": TREE_FORMAT,
        "merkle": {
            "size": frontier.size,
            "root": chain.tag(root),
            "frontier": [h.hex() for h in frontier.hashes],
            "extends": base.manifest.hash if base else None,
            "appended": [list(item) for item in appended],
        },
    }


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
    number = 0  # lines before the current chunk
    out: list[bytes] = []
    for chunk in source.chunks():
        count = chunk.count(b"\n")
        if number + count > start:
            lines = chunk.split(b"\n")
            lines.pop()
            wanted = lines[max(start - number, 0) : end - number]
            out.extend([sha256(b"\x00" + line).digest() for line in wanted])  # leaf_hash, inlined
        number += count
        if number >= end:
            break
    if number < end:
        raise IntegrityError(f"{file.name}: {number} whole lines, the seal covers {end}")
    return b"".join(out)


# ---------------------------------------------------------------------------- derived data
def leaves_path(store: AuditStore, writer: str, first: int, end: int, root: bytes) -> Path:
    """Where the leaf hashes [first, end) of `writer`'s tree with head `root` at size `end`
    live."""
    name = f"{first:012d}-{end:012d}-{root.hex()}.leaves"
    return store.root / INDEX_DIR / MERKLE_DIR / writer / name


def save_leaves(
    store: AuditStore, writer: str, first: int, end: int, root: bytes, leaves: bytes | bytearray
) -> None:
    """Write one seal's leaf hashes, atomically; a failure is ignored (derived data)."""
    if end == first:
        return
    target = leaves_path(store, writer, first, end, root)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        for path in (target.parent.parent.parent, target.parent.parent, target.parent):
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o700)
            if path.is_symlink():  # planted: never write through it
                return
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            view = memoryview(leaves)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _saved_leaves(store: AuditStore, head: TreeHead) -> bytes | None:
    path = leaves_path(store, head.writer, head.first, head.size, head.root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    return data if len(data) == (head.size - head.first) * HASH_SIZE else None


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


# ---------------------------------------------------------------------------- reading heads
def head_of(manifest: Manifest) -> TreeHead | None:
    """The tree head of a seal manifest, or None when it has none or it is malformed."""
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
        self.counts = {"heads": 0, _GONE: 0, _UNCHECKED: 0}
        self.redactions: Redactions | None = None  # set by verify: lines redacted since

    def check(self, writer: str) -> None:
        """Check the heads of `writer`'s chain (after its files were checked)."""
        explained = {file_key(p.file) for p in self.report.problems} - {None}
        _check_chain(
            self.store, writer, self.report, explained, self.files, self.counts, self.redactions
        )

    def notes(self) -> None:
        """Add the notes of what was checked to the report."""
        counts, notes = self.counts, self.report.notes
        if counts["heads"]:
            notes.append(f"{counts['heads']} Merkle tree head(s) recomputed from the entries")
        if counts[_GONE]:
            notes.append(
                f"{counts[_GONE]} tree head(s) cover files deleted since; checked from the kept"
                " leaf hashes"
            )
        if counts[_UNCHECKED]:
            notes.append(
                f"{counts[_UNCHECKED]} tree head(s) cover files deleted since whose kept leaf"
                " hashes (_index/merkle) are gone too: not rechecked, and entries sealed with or"
                " after them cannot be proved"
            )


def _check_chain(
    store: AuditStore,
    writer: str,
    report: Any,
    explained: set[tuple[str, str] | None],
    files: _FileFinder,
    counts: dict[str, int],
    redactions: Redactions | None = None,
) -> None:
    """`TreeCheck.check`: the heads of one writer's chain."""
    prefix = f"{MANIFEST_DIR}/{writer}/"
    # A deleted or altered manifest breaks the `extends` links after it: already reported.
    chain_broken = any(p.file.startswith(prefix) for p in report.problems)
    manifests, _ = load_manifests(store, writer)
    # (sequence, file key) of every file a retention receipt of this chain excused, and
    # (time, file key) of those of other chains: the file a head covered may be gone, or
    # re-created since under the same name with other lines.
    receipted = _receipted(manifests)
    foreign = foreign_receipts(store, writer)
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
        detail = _check_one(store, head, base, coverage, files, deleted, redactions)
        if detail in (_GONE, _UNCHECKED):
            counts[detail] += 1
        elif (
            detail
            and not explained & {file_key(name) for name, _, _ in head.appended}
            and not (chain_broken and detail.startswith("extends"))
        ):
            report.problems.append(Problem(manifest.name, None, _KIND, detail))
        advance(coverage, manifest)
        base = head


def _check_one(
    store: AuditStore,
    head: TreeHead,
    base: TreeHead | None,
    coverage: Coverage,
    files: _FileFinder,
    deleted: set[tuple[str, str] | None],
    redactions: Redactions | None = None,
) -> str:
    """What is wrong with one head: "" when nothing, _GONE when files it covers were deleted
    since (gone, or under a later receipt: `deleted` are their file keys) and
    the kept leaves match, _UNCHECKED when those are gone too, else the problem. `base` is the
    head of the seal before it, `coverage` the tree's lines per file then."""
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
        if not leaves:
            return _UNCHECKED
    start.extend_concatenated(leaves)
    if start.size != head.size or tuple(start.hashes) != head.frontier:
        return f"the entries it covers no longer give its tree head (size {head.size})"
    if start.root() != head.root:
        return "its root is not the hash of its frontier"
    if not gone and _saved_leaves(store, head) != leaves:
        save_leaves(store, head.writer, head.first, head.size, head.root, leaves)
    return _GONE if gone else ""


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


def load_tree(store: AuditStore, manifests: Sequence[Manifest], target: Manifest) -> LoadedTree:
    """The tree `target` signs, from the derived leaf files (rebuilt from the entries where
    missing or wrong). IntegrityError when the entries no longer give the signed head."""
    heads = tree_chain(manifests, target)
    files = _FileFinder(store)
    slices = [_saved_leaves(store, head) for head in heads]
    for attempt in range(2):
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
        tree = Tree(b"".join(s or b"" for s in slices))
        if tree.size == heads[-1].size and tree.root() == heads[-1].root:
            return LoadedTree(heads, tree)
    raise IntegrityError(
        f"{target.name}: the sealed entries no longer give its tree head; run `audit verify`"
    )


def _continues(heads: Sequence[TreeHead], i: int, leaves: bytes | None) -> bool:
    """Whether `leaves` take the head before heads[i] to heads[i]."""
    head = heads[i]
    frontier = Frontier(heads[i - 1].size, heads[i - 1].frontier) if i else Frontier()
    frontier.extend_concatenated(leaves or b"")
    return frontier.size == head.size and tuple(frontier.hashes) == head.frontier
