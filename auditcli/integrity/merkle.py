"""RFC 9162 (Certificate Transparency v2) Merkle trees: pure functions, no I/O.

Hashing (RFC 9162 §2.1.1), with SHA-256:

    leaf hash = H(0x00 || entry bytes)        node hash = H(0x01 || left || right)
    MTH({}) = H(""),  MTH(D[n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power
    of two smaller than n.

`Frontier` builds a tree head streaming, keeping only the roots of the perfect subtrees on the
tree's right edge (one per set bit of the size: O(log n) memory). `Tree` holds every perfect
node of a tree over given leaf hashes and answers audit paths (§2.1.3.1) and consistency proofs
(§2.1.4.1). `verify_inclusion` and `verify_consistency` are the RFC's verification algorithms
(§2.1.3.2, §2.1.4.2), written step for step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 hash of a leaf whose bytes are `data`."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = _sha256(b"").digest()
_LEAF, _NODE = _sha256(b"\x00"), _sha256(b"\x01")  # fed their prefix: copied for each hash


def leaf_hashes(lines: Iterable[bytes]) -> bytes:
    """The concatenated RFC 9162 hashes of leaves whose bytes are `lines`, in order."""
    return b"".join(leaf_digests(lines))


def leaf_digests(lines: Iterable[bytes]) -> list[bytes]:
    """The RFC 9162 hashes of leaves whose bytes are `lines`, in order, one `bytes` each."""
    # A copy of a hash already fed the prefix spares a prefixed copy of every line: about a
    # tenth less time per leaf, where the calls cost as much as hashing a short line.
    copy, out = _LEAF.copy, list[bytes]()
    append = out.append
    for line in lines:
        h = copy()
        h.update(line)
        append(h.digest())
    return out


def parent_level(level: bytes | bytearray) -> bytes:
    """The node hashes of the pairs of concatenated hashes `level`, left to right (a last
    hash without a partner is left out)."""
    # The prefix copied and each pair viewed, not sliced and concatenated: a sixth less time.
    copy, view, out = _NODE.copy, memoryview(level), list[bytes]()
    append = out.append
    for at in range(0, len(level) - 63, 64):
        h = copy()
        h.update(view[at : at + 64])
        append(h.digest())
    return b"".join(out)


def _split(n: int) -> int:
    """The largest power of two strictly smaller than `n` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """A tree head built leaf by leaf: the roots of the perfect subtrees on the right edge,
    largest first (their sizes are the set bits of `size`)."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != bin(size).count("1"):
            raise ValueError(f"a frontier of size {size} has {bin(size).count('1')} hashes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash at the end."""
        hashes = self.hashes
        hashes.append(leaf)
        size = self.size
        # Each trailing set bit of the old size is a perfect subtree the new leaf completes.
        while size & 1:
            right = hashes.pop()
            hashes[-1] = _sha256(b"\x01" + hashes[-1] + right).digest()
            size >>= 1
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes at the end, in order."""
        for leaf in leaves:
            self.append(leaf)

    def extend_concatenated(self, leaves: bytes) -> None:
        """Add the leaf hashes of a concatenation, in order."""
        if len(leaves) % HASH_SIZE:
            raise ValueError("leaf hashes are not a multiple of 32 bytes")
        cut = range(0, len(leaves), HASH_SIZE)
        self.extend_digests([leaves[at : at + HASH_SIZE] for at in cut])

    def extend_digests(self, leaves: Sequence[bytes]) -> None:
        """Add leaf hashes (32 bytes each) at the end, in order: in aligned perfect blocks,
        each hashed level by level, so the work is the same hashes with less Python per hash
        (a level is one list comprehension over the pairs of the level below)."""
        sha, hashes, size = _sha256, self.hashes, self.size
        count, done = len(leaves), 0
        while done < count:
            # The biggest block that keeps the tree aligned: a power of two dividing the size
            # (any, when the size is 0) and no bigger than what is left.
            block = 1 << ((count - done).bit_length() - 1)
            if size:
                block = min(block, size & -size)
            level = leaves[done : done + block]
            while len(level) > 1:  # a power of two: the pairs come out even
                pairs = zip(level[::2], level[1::2], strict=True)
                level = [sha(b"\x01" + left + right).digest() for left, right in pairs]
            node = level[0]
            # Each trailing set bit of the size (in blocks) is a perfect subtree it completes.
            above = size >> (block.bit_length() - 1)
            while above & 1:
                node = sha(b"\x01" + hashes.pop() + node).digest()
                above >>= 1
            hashes.append(node)
            size += block
            done += block
        self.size = size

    def root(self) -> bytes:
        """MTH of the leaves so far."""
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = _sha256(b"\x01" + left + root).digest()
        return root

    def copy(self) -> Frontier:
        """An independent copy (appending to it leaves this one as it is)."""
        return Frontier(self.size, self.hashes)


def _perfect_root(level: bytes) -> bytes:
    """MTH of a power-of-two number of concatenated leaf hashes."""
    while len(level) > HASH_SIZE:
        level = parent_level(level)
    return level


class Tree:
    """The nodes of the tree over `leaves` (concatenated 32-byte leaf hashes) that answer audit
    paths (§2.1.3.1) and consistency proofs (§2.1.4.1).

    `levels[h]` holds the nodes of height h covering leaves [j·2^h, (j+1)·2^h), j < size >> h;
    any other subtree hash the RFC's recursions need is one of these or is folded from
    O(log n) of them. With `skip`, the levels strictly between the leaves and height `skip` are
    not kept (a subtree below `skip` is hashed from its at most 2^skip leaves when asked for),
    and `nodes` may give level `skip` outright (the first nodes of it, the rest are hashed):
    a proof then costs O(2^skip · log n) hashes instead of the n of building every level."""

    def __init__(self, leaves: bytes, *, skip: int = 1, nodes: bytes = b"") -> None:
        if len(leaves) % HASH_SIZE or len(nodes) % HASH_SIZE:
            raise ValueError("leaf hashes are not a multiple of 32 bytes")
        self.size = len(leaves) // HASH_SIZE
        self.skip = skip
        self.leaves = bytes(leaves)
        self.levels: list[bytes | None] = [self.leaves]
        if skip > 1 and self.size >> skip:
            self.levels += [None] * (skip - 1)
            block = HASH_SIZE << skip
            known = min(len(nodes), (self.size >> skip) * HASH_SIZE)
            rest = [
                _perfect_root(leaves[at : at + block])
                for at in range(known // HASH_SIZE * block, (self.size >> skip) * block, block)
            ]
            self.levels.append(bytes(nodes[:known]) + b"".join(rest))
        level = self.levels[-1] or b""
        while len(level) >= 2 * HASH_SIZE:
            level = parent_level(level)
            self.levels.append(level)

    def leaf(self, index: int) -> bytes:
        """The leaf hash at `index`."""
        return self.leaves[index * HASH_SIZE : (index + 1) * HASH_SIZE]

    def nodes(self) -> bytes:
        """Level `skip` (what `nodes` takes to skip the levels below it next time)."""
        return (self.levels[self.skip] or b"") if self.skip < len(self.levels) else b""

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a subtree the RFC's recursions reach from the root of a tree
        of size <= `self.size` (`start` is a multiple of the largest power of two below
        end - start, or the range is perfect and aligned)."""
        if not 0 <= start < end <= self.size:
            raise ValueError(f"no subtree [{start}, {end}) in a tree of {self.size} leaves")
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            height = width.bit_length() - 1
            level = self.levels[height] if height < len(self.levels) else None
            if level is None:  # a skipped level: hash the block's leaves
                return _perfect_root(self.leaves[start * HASH_SIZE : end * HASH_SIZE])
            at = (start >> height) * HASH_SIZE
            return level[at : at + HASH_SIZE]
        k = _split(width)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (all by default)."""
        size = self.size if size is None else size
        return EMPTY_ROOT if size == 0 else self.subtree(0, size)

    def inclusion_path(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1): the audit path of leaf `index`."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of {size} leaves")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self.subtree(start + k, end))
                end = start + k
            else:
                path.append(self.subtree(start, start + k))
                start += k
        path.reverse()  # the RFC lists the path from the leaf up
        return path

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[0:second]) (RFC 9162 §2.1.4.1): that the tree of `first` leaves is a
        prefix of the tree of `second` leaves."""
        second = self.size if second is None else second
        if not 0 < first <= second <= self.size:
            raise ValueError(f"no consistency proof from {first} to {second} leaves")
        proof: list[bytes] = []
        start, end, complete = 0, second, True  # SUBPROOF(m, D[start:end], b)
        m = first
        while True:
            width = end - start
            if m == width:
                if not complete:
                    proof.append(self.subtree(start, end))
                break
            k = _split(width)
            if m <= k:
                proof.append(self.subtree(start + k, end))
                end = start + k
            else:
                proof.append(self.subtree(start, start + k))
                start += k
                m -= k
                complete = False
        proof.reverse()
        return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: whether `path` proves leaf hash `leaf` at `index` in the tree of
    `size` leaves whose head is `root`."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: whether `proof` shows the tree of `first` leaves with head
    `first_root` is a prefix of the tree of `second` leaves with head `second_root`.

    Equal sizes need an empty proof and equal heads; an empty first tree is a prefix of any."""
    if first < 0 or second < first:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
