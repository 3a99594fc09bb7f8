"""Evidence bundles: entries with RFC 9162 inclusion proofs, or a consistency proof between two
seals, plus the signed manifests holding the tree heads (bundle_check.py checks them).

A bundle is one JSON object (format `auditcli-bundle/1`)::

    {"format": "auditcli-bundle/1", "kind": "inclusion" | "consistency",
     "cover": ["what this proves and how to check it", …],
     "keyId": "sha256:…" | null,
     "manifests": [{"hash": "sha256:…", "body": "<canonical manifest body>", "signature": {…}}],
     "statement": "<canonical JSON: what the bundle claims>", "statementSignature": {…} | null,
     "entries": [{"head": 0, "leafIndex": 17, "file": "date=…/host.jsonl", "line": 18,
                  "stored": "<the stored line, exactly>", "path": ["<hex>", …]}],   # inclusion
     "consistency": {"first": {…}, "second": {…}, "proof": ["<hex>", …]}}             # consistency

A manifest's `body` is the exact canonical text its hash and signature cover, so a checker
needs no JSON canonicalisation. The statement lists the tree heads (`heads`: manifest hash,
tree size, root) and, in (head, leaf) order, every entry's head number, leaf index, leaf hash,
file and line, and the query; it is signed (domain tag
`auditcli-bundle/1\\n`) with the store's key when `prove` has it. `docs/verify_bundle.py`
checks a bundle with the standard library and `cryptography` only.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from auditcli import chain
from auditcli.errors import AuditError, IntegrityError, UsageError
from auditcli.query import Filters, QueryEngine
from auditcli.store import AuditStore
from auditcli.timeparse import format_utc

from .keys import key_id, signing_key_from
from .manifests import Manifest, canonical, chain_writers, load_manifests
from .merkle import leaf_hash, verify_consistency
from .tree import LoadedTree, head_of, load_tree, tree_chain

BUNDLE_FORMAT = "auditcli-bundle/1"
_STATEMENT_TAG = b"auditcli-bundle/1\n"


# ---------------------------------------------------------------------------- proving
def prove(store: AuditStore, filters: Filters, *, signing_key: Any = None) -> dict[str, Any]:
    """A bundle of every entry `filters` select, each with its audit path to the tree head of
    the newest seal that has one in its writer's chain: one head per writer whose entries are in
    the bundle. Fails (AuditError) when a selected entry is not sealed yet, and
    (IntegrityError) when the store does not give a writer's signed head."""
    key = signing_key_from(signing_key)
    if key is None:
        raise UsageError(
            "prove needs the store's signing key (--signing-key or AUDIT_SIGNING_KEY): it signs"
            " the list of entries, without which a removed entry would not show"
        )
    engine = QueryEngine(store, filters, order="asc")
    lines = list(engine.stream())
    if engine.problems:
        raise IntegrityError(
            f"the store has {len(engine.problems)} damaged line(s) or file(s), first:"
            f" {engine.problems[0]}; run `audit verify`"
        )
    wanted = {leaf_hash(line[:-1]): line for line in lines}
    found, trees = _locate_leaves(store, wanted)
    order = sorted(trees)  # head number = the writer's place in this list
    number = {writer: i for i, writer in enumerate(order)}
    entries, claims = [], []
    for digest, (writer, index) in sorted(found.items(), key=lambda i: (number[i[1][0]], i[1][1])):
        loaded, target = trees[writer]
        path = loaded.proof(index, digest)
        if path is None:  # a kept leaf or node is wrong: check every leaf file, rebuild
            manifests, _ = load_manifests(store, writer)
            loaded = load_tree(store, manifests, target, recheck=True)
            trees[writer] = (loaded, target)
            path = loaded.proof(index, digest)
            if path is None or loaded.tree.leaf(index) != digest:
                raise IntegrityError(
                    f"{target.name}: the sealed entries no longer give its tree head; run"
                    " `audit verify`"
                )
        name, line = loaded.locate(index)
        head_no = number[writer]
        entries.append(
            {
                "head": head_no,
                "leafIndex": index,
                "file": name,
                "line": line,
                "stored": wanted[digest][:-1].decode(),
                "path": [p.hex() for p in path],
            }
        )
        claims.append([head_no, index, digest.hex(), name, line])
    targets = [trees[w][1] for w in order]
    head_claims = [
        _head_claim(trees[w][1], trees[w][0].heads[-1].size, trees[w][0].heads[-1].root)
        for w in order
    ]
    statement = {
        "format": BUNDLE_FORMAT,
        "kind": "inclusion",
        "createdAt": format_utc(store.clock()),
        "query": filters.describe(),
        "heads": head_claims,
        "entries": claims,
    }
    bundle = _bundle("inclusion", targets, statement, key)
    bundle["entries"] = entries
    bundle["cover"] = _inclusion_cover(head_claims, targets, len(entries), filters, bundle)
    return bundle


def prove_consistency(
    store: AuditStore, first_ref: str, second_ref: str, *, signing_key: Any = None
) -> dict[str, Any]:
    """A bundle proving that the tree of seal `first_ref` is a prefix of the tree of seal
    `second_ref`: both of one writer's chain, each a manifest hash or `WRITER:N` (a bare
    number N only when a single writer has a chain)."""
    key = signing_key_from(signing_key)
    first_writer, first_at = _locate_ref(store, first_ref)
    second_writer, second_at = _locate_ref(store, second_ref)
    if first_writer != second_writer:
        raise UsageError(
            f"--consistency: {first_ref} is in {first_writer}'s chain, {second_ref} in"
            f" {second_writer}'s: each writer has its own tree"
        )
    manifests, _ = load_manifests(store, first_writer)
    first = resolve_manifest(manifests, first_at)
    second = resolve_manifest(manifests, second_at)
    if first.sequence > second.sequence:
        raise UsageError(f"--consistency: {first.label} comes after {second.label}")
    heads = tree_chain(manifests, second)
    if not any(h.manifest.hash == first.hash for h in heads):
        raise AuditError(
            f"{second.name}'s tree does not extend {first.name}'s: its tree starts at"
            f" {heads[0].manifest.label} (a seal without a tree came between)"
        )
    old = head_of(first)
    assert old is not None  # in the chain above
    proof = None
    for recheck in (False, True):  # kept nodes first; every leaf file checked if they are wrong
        loaded = load_tree(store, manifests, second, recheck=recheck)
        new = loaded.heads[-1]
        proof = loaded.tree.consistency_proof(old.size, new.size) if old.size else []
        if verify_consistency(old.size, new.size, old.root, new.root, proof):
            break
    else:
        raise IntegrityError(f"{second.name}: its tree no longer extends {first.name}'s")
    statement = {
        "format": BUNDLE_FORMAT,
        "kind": "consistency",
        "createdAt": format_utc(store.clock()),
        "first": _head_claim(first, old.size, old.root),
        "second": _head_claim(second, new.size, new.root),
        "proof": [p.hex() for p in proof],
    }
    bundle = _bundle("consistency", [first, second], statement, key)
    bundle["consistency"] = {
        "first": statement["first"],
        "second": statement["second"],
        "proof": statement["proof"],
    }
    bundle["cover"] = _consistency_cover(first, second, old.size, new.size, bundle)
    return bundle


def _locate_leaves(
    store: AuditStore, wanted: Mapping[bytes, bytes]
) -> tuple[dict[bytes, tuple[str, int]], dict[str, tuple[LoadedTree, Manifest]]]:
    """`(writer, leaf index)` of each leaf hash in `wanted` (the stored lines by leaf hash) in
    the tree of its writer's newest seal with one, and those trees (of the writers found).
    An entry is looked for among the lines of its own day first, then anywhere. AuditError when
    one is in no tree (newer than the newest seal, or changed since)."""
    days = {digest: _day_of(line) for digest, line in wanted.items()}
    found: dict[bytes, tuple[str, int]] = {}
    loaded: dict[str, tuple[LoadedTree, Manifest]] = {}
    for writer in chain_writers(store)[0]:
        if loaded and len(found) == len(wanted):
            break
        manifests, _ = load_manifests(store, writer)
        target = _newest_tree_seal(manifests)
        if target is None:
            continue
        tree = load_tree(store, manifests, target)
        loaded[writer] = (tree, target)
        for digest in wanted.keys() - found.keys():
            index = tree.find(digest, days[digest])
            if index is not None:
                found[digest] = (writer, index)
    for writer, (tree, _) in loaded.items():  # stored under another day: anywhere
        for digest in wanted.keys() - found.keys():
            index = tree.find(digest)
            if index is not None:
                found[digest] = (writer, index)
    if not loaded:
        raise AuditError("no seal has a Merkle tree head yet: run `audit seal` first")
    if len(found) < len(wanted):
        raise AuditError(
            f"{len(wanted) - len(found)} of the {len(wanted)} selected entries are not covered"
            " by their writer's newest seal with a tree head: newer than it (run `audit seal`"
            " and prove again) or changed since (run `audit verify`)"
        )
    writers = {writer for writer, _ in found.values()}
    return found, {writer: loaded[writer] for writer in writers}


def _day_of(line: bytes) -> str | None:
    """The day partition an entry's `createdAt` puts it in, or None when it has none."""
    try:
        created = orjson.loads(line).get("createdAt")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return created[:10] if isinstance(created, str) else None


def _head_claim(manifest: Manifest, size: int, root: bytes) -> dict[str, Any]:
    return {
        "manifest": manifest.hash,
        "writer": manifest.writer,
        "sequence": manifest.sequence,
        "treeSize": size,
        "root": chain.tag(root),
    }


def _newest_tree_seal(manifests: Sequence[Manifest]) -> Manifest | None:
    for manifest in reversed(manifests):
        if head_of(manifest) is not None:
            return manifest
    return None


def _locate_ref(store: AuditStore, ref: str) -> tuple[str, str]:
    """The writer whose chain holds manifest `ref` (`WRITER:N`, a hash, or a bare N when one
    writer only has a chain), and `ref` as `resolve_manifest` takes it within that chain."""
    ref = ref.strip()
    writers = chain_writers(store)[0]
    writer, colon, number = ref.rpartition(":")
    if colon and number.isdigit() and writer != "sha256":
        if writer not in writers:
            raise UsageError(f"--consistency: no manifest chain of writer {writer!r}")
        return writer, number
    if ref.isdigit():
        if len(writers) != 1:
            raise UsageError(
                f"--consistency: {ref} is ambiguous with {len(writers)} writers' chains:"
                f" give the manifest hash or WRITER:{ref}"
            )
        return writers[0], ref
    wanted = ref if ref.startswith("sha256:") else f"sha256:{ref}"
    for writer in writers:
        manifests, _ = load_manifests(store, writer)
        if any(m.hash == wanted for m in manifests):
            return writer, wanted
    raise UsageError(f"--consistency: no manifest {ref!r}")


def resolve_manifest(manifests: Sequence[Manifest], ref: str) -> Manifest:
    """The seal manifest `ref` names in one chain: a sequence number, or a hash (`sha256:`
    optional)."""
    ref = ref.strip()
    if ref.isdigit():
        matches = [m for m in manifests if m.sequence == int(ref)]
    else:
        wanted = ref if ref.startswith("sha256:") else f"sha256:{ref}"
        matches = [m for m in manifests if m.hash == wanted]
    if not matches:
        raise UsageError(f"--consistency: no manifest {ref!r}")
    if head_of(matches[0]) is None:
        raise UsageError(f"--consistency: {matches[0].name} is not a seal with a tree head")
    return matches[0]


def _bundle(
    kind: str, manifests: Sequence[Manifest], statement: Mapping[str, Any], key: Any
) -> dict[str, Any]:
    statement_bytes = canonical(statement)
    manifests = list({m.hash: m for m in manifests}.values())  # FROM and TO may be one seal
    # The key that signs the statement: the prover's (each manifest carries its own signer's);
    # an unsigned consistency bundle names its manifests' key.
    signer = (
        key_id(key.public_key())
        if key
        else next((m.signature.get("keyId") for m in manifests if m.signature), None)
    )
    return {
        "format": BUNDLE_FORMAT,
        "kind": kind,
        "cover": [],
        "keyId": signer,
        "manifests": [
            {"hash": m.hash, "body": m.body_bytes.decode(), "signature": m.signature}
            for m in manifests
        ],
        "statement": statement_bytes.decode(),
        "statementSignature": _sign_statement(statement_bytes, key) if key else None,
    }


def _sign_statement(statement: bytes, key: Any) -> dict[str, str]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key()
    return {
        "algorithm": "ed25519",
        "keyId": key_id(public),
        "publicKey": base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode(),
        "value": base64.b64encode(key.sign(_STATEMENT_TAG + statement)).decode(),
    }


_HOW_TO_CHECK = [
    "How to check it: `audit verify-bundle THIS_FILE --public-key STORE_KEY.pub`, or without",
    "auditcli: `python3 verify_bundle.py THIS_FILE --public-key STORE_KEY.pub` (the script in",
    "auditcli's docs/; Python 3.11 and the `cryptography` package). By hand: a manifest's hash",
    "is SHA-256 of its `body` text, its Ed25519 signature covers 'auditcli-manifest/1\\n' + body;",
    "a leaf is SHA-256(0x00 || stored line as UTF-8), a node SHA-256(0x01 || left || right),",
    "and an audit path is checked as RFC 9162 section 2.1.3.2 says (consistency: 2.1.4.2).",
    "Compare the key id above with the one the store's operator gave you: a bundle re-signed",
    "with another key verifies against that other key only.",
]


def _inclusion_cover(
    claims: Sequence[Mapping[str, Any]],
    targets: Sequence[Manifest],
    count: int,
    filters: Filters,
    bundle: Mapping[str, Any],
) -> list[str]:
    query = (
        ", ".join(
            f"{name}={'|'.join(value) if isinstance(value, list) else value}"
            for name, value in filters.describe().items()
            if value
        )
        or "everything"
    )
    heads = [
        f"Tree head of writer {t.writer}: manifest {t.label} {t.hash}, sealed {t.sealed_at},"
        f" tree of {c['treeSize']} entries, key {(t.signature or {}).get('keyId', 'none')}."
        for c, t in zip(claims, targets, strict=True)
    ]
    return [
        f"auditcli evidence bundle ({BUNDLE_FORMAT}): {count} audit log entries.",
        f"Selected by the query: {query}.",
        *heads,
        f"The list of entries is signed by {bundle['keyId'] or 'none (unsigned store)'}.",
        "What it proves: each entry below is, byte for byte, the line at its position in the",
        "log of its writer whose Merkle tree head that writer's key signed; an edited, added,",
        "reordered or foreign entry, or a proof against another store's head, fails the check.",
        "The list of entries and the query are signed, so removing an entry from this file",
        "shows; that nothing else matched the query rests on the word of whoever holds the key.",
        *_HOW_TO_CHECK,
    ]


def _consistency_cover(
    first: Manifest, second: Manifest, old: int, new: int, bundle: Mapping[str, Any]
) -> list[str]:
    return [
        f"auditcli consistency proof ({BUNDLE_FORMAT}).",
        f"Writer: {first.writer}.",
        f"Earlier head: manifest #{first.sequence} {first.hash} ({first.sealed_at}),"
        f" {old} entries.",
        f"Later head: manifest #{second.sequence} {second.hash} ({second.sealed_at}),"
        f" {new} entries.",
        f"Signing key: {bundle['keyId'] or 'none (unsigned store)'}.",
        "What it proves (RFC 9162 consistency proof): the later tree holds the earlier tree's",
        "entries unchanged and in order, followed by new ones: nothing sealed by then was",
        "rewritten or removed from the tree (entries later deleted by retention stay in it).",
        "If you kept the earlier head, check it is the one named above (--anchor HASH).",
        *_HOW_TO_CHECK,
    ]
