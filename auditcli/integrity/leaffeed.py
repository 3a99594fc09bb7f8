"""Merkle leaves from verify's one pass over each file: the tree heads of a writer's chain are
recomputed from the same chunks that its line-by-line chain check reads, so no file is read twice.

`plan_feeds` says, before a writer's files are scanned, which line ranges of which file each
tree head appends (tree.py's `appended`); `LeafFeed` takes one file scan's chunks and extends
each head's frontier with the leaf hashes of its ranges, in the head's order. A scan that is
thrown away (verify re-reads a file in some rare cases) is never committed, and a head whose
ranges were not all fed, in order and whole, is `complete` False: the tree check then falls
back to reading its files itself, with the messages it has always given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from .manifests import Manifest, file_key
from .merkle import HASH_SIZE, Frontier, leaf_digests
from .tree import TreeHead, head_of

FileKey = tuple[str, str]


@dataclass
class Pending:
    """One tree head being recomputed from the scans: its frontier so far (continued from the
    head it extends) and a digest of its concatenated leaf hashes (compared with the kept
    leaf file)."""

    head: TreeHead
    frontier: Frontier
    digest: Any = field(default_factory=sha256)
    next_range: int = 0
    broken: bool = False
    #: The SHA-256 of its leaf hashes, when the record of earlier verifies vouches for the
    #: head and its files (proven.py) and the scans therefore did not feed it.
    proven: bytes | None = None
    #: The frontier it starts from (the head it extends), kept to feed it again from scratch.
    origin: Frontier | None = None

    @property
    def complete(self) -> bool:
        """Whether every range of the head was fed, whole and in order."""
        return not self.broken and self.next_range == len(self.head.appended)


def plan_feeds(manifests: Sequence[Manifest]) -> tuple[dict[int, Pending], dict[FileKey, list]]:
    """The heads of one chain (`manifests`, in order) to recompute, by manifest sequence, and
    per file key the `(start, end, pending, range index)` the file's scan feeds."""
    by_hash: dict[str, TreeHead] = {}
    pending: dict[int, Pending] = {}
    wants: dict[FileKey, list[tuple[int, int, Pending, int]]] = {}
    for manifest in manifests:
        head = head_of(manifest)
        if head is None:
            continue
        if manifest.hash:
            by_hash[manifest.hash] = head
        if head.extends is None:
            start = Frontier()
        elif (base := by_hash.get(head.extends)) is not None and base.size == head.first:
            start = Frontier(base.size, base.frontier)
        else:
            continue  # a broken `extends`: the tree check reports it without any leaves
        keys = [file_key(name) for name, _, _ in head.appended]
        if None in keys or len(set(keys)) != len(keys):
            continue  # a file named twice (or no file name): left to the tree check's reading
        job = pending[manifest.sequence] = Pending(head, start, origin=start.copy())
        for index, ((_, first, end), key) in enumerate(zip(head.appended, keys, strict=True)):
            wants.setdefault(key, []).append((first, end, job, index))  # type: ignore[arg-type]
    return pending, wants


class LeafFeed:
    """The leaf hashes one scan of one file gives the heads that cover its lines. Fed a copy
    of each head's state; `commit()` makes it theirs once the scan is the one verify keeps.

    `keep`: a worker process's scan (workers.check_files), whose heads are the parent's: the
    leaf hashes are only kept (`kept`, concatenated once committed), and the parent gives them
    to its own feed of the file (`add_kept`), in file order."""

    def __init__(self, wants: Iterable[tuple[int, int, Pending, int]], keep: bool = False) -> None:
        self.wants = [
            (first, end, job, index, job.frontier.copy(), job.digest.copy(), [0])
            for first, end, job, index in wants
        ]
        self.end = max((end for _, end, *_ in self.wants), default=0)
        self.line = 0  # lines of the file fed so far
        self.keep = keep
        self.leaves: list[bytes] = []  # with `keep`: the leaf hashes so far
        self.kept: bytes | None = None  # with `keep`: all of them, once committed

    def add(self, lines: Sequence[bytes]) -> None:
        """The next whole lines of the file (without their newlines), in file order."""
        first = self.line
        self.line += len(lines)
        if first >= self.end:
            return
        wanted = lines[: self.end - first] if first + len(lines) > self.end else lines
        leaves = leaf_digests(wanted)
        if self.keep:
            self.leaves += leaves
        else:
            self.extend(first, leaves)

    def add_kept(self, kept: bytes) -> None:
        """The leaf hashes a worker's feed of the same file `kept`, from its first line."""
        self.line = len(kept) // HASH_SIZE
        self.extend(0, [kept[at : at + HASH_SIZE] for at in range(0, len(kept), HASH_SIZE)])

    def extend(self, first: int, leaves: Sequence[bytes]) -> None:
        """Extend each head's copy with the leaf hashes of its ranges among `leaves`, those of
        the file's lines from line `first` (0-based) on."""
        last = first + len(leaves)
        for start, end, _, _, frontier, digest, fed in self.wants:
            low, high = max(start, first), min(end, last)
            if low < high:
                block = leaves[low - first : high - first]
                frontier.extend_digests(block)
                digest.update(b"".join(block))
                fed[0] += high - low

    def commit(self) -> None:
        """Hand the fed state to the heads: a range fed whole, and the next its head expects,
        moves the head on; anything else leaves the head to the tree check's own reading.
        (With `keep`: the leaf hashes are final, for the parent.)"""
        if self.keep:
            self.kept, self.leaves = b"".join(self.leaves), []
            return
        for start, end, job, index, frontier, digest, fed in self.wants:
            if job.broken:
                continue
            if fed[0] == end - start and job.next_range == index:
                job.frontier, job.digest = frontier, digest
                job.next_range += 1
            else:
                job.broken = True
