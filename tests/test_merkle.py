"""RFC 9162 Merkle trees: the published vectors, and a naive reading of the RFC's recursions."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from auditcli.integrity.merkle import (
    EMPTY_ROOT,
    Frontier,
    Tree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

# The Certificate Transparency reference leaves and the tree heads of their prefixes.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATHS = {  # leaf index -> audit path in the tree of all 8 leaves
    0: [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    5: [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def naive_mth(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 §2.1.1 writes it, over the leaves' data."""
    n = len(leaves)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return _h(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:]))


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_proof(m: int, leaves: list[bytes], b: bool = True) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if b else [naive_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_proof(m, leaves[:k], b), naive_mth(leaves[k:])]
    return [*naive_proof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def _tree(leaves: list[bytes]) -> Tree:
    return Tree(b"".join(leaf_hash(leaf) for leaf in leaves))


def test_reference_vectors() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    tree = _tree(CT_LEAVES)
    for size in range(1, 9):
        assert tree.root(size).hex() == CT_ROOTS[size - 1]
        frontier = Frontier()
        frontier.extend(leaf_hash(leaf) for leaf in CT_LEAVES[:size])
        assert frontier.root().hex() == CT_ROOTS[size - 1]
    root = bytes.fromhex(CT_ROOTS[7])
    for index, path in CT_PATHS.items():
        assert [p.hex() for p in tree.inclusion_path(index)] == path
        assert verify_inclusion(tree.leaf(index), index, 8, tree.inclusion_path(index), root)


leaf_lists = st.lists(st.binary(max_size=6), min_size=1, max_size=300, unique=True)


@settings(max_examples=40, deadline=None)
@given(leaves=leaf_lists, data=st.data())
def test_tree_agrees_with_the_rfc_recursions(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    tree = _tree(leaves)
    assert tree.root() == naive_mth(leaves)
    frontier = Frontier()
    frontier.extend(tree.leaf(i) for i in range(n))
    assert frontier.root() == tree.root()
    # A frontier continued from a copy made part way gives the same head.
    cut = data.draw(st.integers(0, n))
    partial = Frontier()
    partial.extend(tree.leaf(i) for i in range(cut))
    resumed = Frontier(partial.size, partial.hashes)
    resumed.extend(tree.leaf(i) for i in range(cut, n))
    assert resumed.root() == tree.root() and resumed.size == n
    # Extending by a concatenation, in aligned blocks, gives the same frontier.
    blocks = Frontier(partial.size, partial.hashes)
    blocks.extend_concatenated(tree.levels[0][cut * 32 :])
    assert (blocks.size, blocks.hashes) == (resumed.size, resumed.hashes)

    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    path = tree.inclusion_path(index, size)
    assert path == naive_path(index, leaves[:size])
    root = naive_mth(leaves[:size])
    assert verify_inclusion(tree.leaf(index), index, size, path, root)
    # Wrong leaf, wrong index, wrong size, a changed or shortened path: all rejected.
    assert not verify_inclusion(leaf_hash(b"forged"), index, size, path, root)
    if size > 1:
        assert not verify_inclusion(tree.leaf(index), (index + 1) % size, size, path, root)
        assert not verify_inclusion(tree.leaf(index), index, size, path[:-1], root)
        bad = list(path)
        bad[0] = _h(bad[0])
        assert not verify_inclusion(tree.leaf(index), index, size, bad, root)
    if size < n:  # the path of a smaller tree does not lead to the bigger tree's head
        assert not verify_inclusion(tree.leaf(index), index, size + 1, path, tree.root(size + 1))

    first = data.draw(st.integers(1, n))
    second = data.draw(st.integers(first, n))
    proof = tree.consistency_proof(first, second)
    assert proof == naive_proof(first, leaves[:second])
    old, new = naive_mth(leaves[:first]), naive_mth(leaves[:second])
    assert verify_consistency(first, second, old, new, proof)
    if first < second:
        # A rewritten history: the first tree's head is not that of a prefix.
        assert not verify_consistency(first, second, _h(old), new, proof)
        assert not verify_consistency(first, second, old, _h(new), proof)
        if proof:
            assert not verify_consistency(first, second, old, new, proof[:-1])


def test_every_small_tree_every_proof() -> None:
    """Exhaustive over sizes 1..40: all audit paths and all consistency proofs verify."""
    leaves = [bytes([i]) for i in range(40)]
    tree = _tree(leaves)
    for second in range(1, 41):
        root = tree.root(second)
        for index in range(second):
            assert verify_inclusion(
                tree.leaf(index), index, second, tree.inclusion_path(index, second), root
            )
        for first in range(1, second + 1):
            proof = tree.consistency_proof(first, second)
            assert verify_consistency(first, second, tree.root(first), root, proof)


def test_rewritten_history_is_not_consistent() -> None:
    leaves = [bytes([i]) for i in range(20)]
    rewritten = [*leaves[:5], b"changed", *leaves[6:]]
    honest, other = _tree(leaves), _tree(rewritten)
    for first in range(6, 20):
        proof = other.consistency_proof(first, 20)
        assert not verify_consistency(first, 20, honest.root(first), other.root(20), proof)
    assert verify_consistency(0, 5, EMPTY_ROOT, honest.root(5), [])
    assert not verify_consistency(6, 6, honest.root(6), other.root(6), [])  # equal sizes


@settings(max_examples=40, deadline=None)
@given(count=st.integers(1, 300), skip=st.integers(1, 5), data=st.data())
def test_a_tree_with_skipped_levels_gives_the_same_proofs(
    count: int, skip: int, data: st.DataObject
) -> None:
    """Levels below `skip` not kept, level `skip` given in part (kept nodes of an earlier,
    smaller tree): every root, audit path and consistency proof is the full tree's."""
    leaves = b"".join(leaf_hash(b"%d" % i) for i in range(count))
    full = Tree(leaves)
    earlier = Tree(leaves[: data.draw(st.integers(0, count)) * 32], skip=skip)
    partial = Tree(leaves, skip=skip, nodes=earlier.nodes())
    assert len(partial.nodes()) == (count >> skip) * 32
    size = data.draw(st.integers(1, count))
    assert partial.root(size) == full.root(size)
    index = data.draw(st.integers(0, size - 1))
    assert partial.inclusion_path(index, size) == full.inclusion_path(index, size)
    first = data.draw(st.integers(1, size))
    assert partial.consistency_proof(first, size) == full.consistency_proof(first, size)
    # Wrong kept nodes give a root that the signed head refuses.
    if skip > 1 and count >> skip:
        forged = Tree(leaves, skip=skip, nodes=_h(partial.nodes()[:32]))
        assert forged.root() != full.root()
