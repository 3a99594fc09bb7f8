"""Evidence bundles: entries with RFC 9162 inclusion proofs, or a consistency proof between two
seals, plus the signed manifests holding the tree heads; and the check of a bundle.

A bundle is one JSON object (format `auditcli-bundle/1`)::

    {"format": "auditcli-bundle/1", "kind": "inclusion" | "consistency",
     "cover": ["what this proves and how to check it", …],
     "keyId": "sha256:…" | null,
     "manifests": [{"hash": "sha256:…", "body": "<canonical manifest body>", "signature": {…}}],
     "statement": "<canonical JSON: what the bundle claims>", "statementSignature": {…} | null,
     "entries": [{"leafIndex": 17, "file": "date=…/host.jsonl", "line": 18,
                  "stored": "<the stored line, exactly>", "path": ["<hex>", …]}],   # inclusion
     "consistency": {"first": {…}, "second": {…}, "proof": ["<hex>", …]}}             # consistency

A manifest's `body` is the exact canonical text its hash and signature cover, so a checker
needs no JSON canonicalisation. The statement lists, in leaf order, every entry's leaf index,
leaf hash, file and line, the query and the tree head; it is signed (domain tag
`auditcli-bundle/1\\n`) with the store's key when `prove` has it. `docs/verify_bundle.py`
checks a bundle with the standard library and `cryptography` only.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from auditcli import chain
from auditcli.errors import AuditError, IntegrityError, UsageError
from auditcli.query import Filters, QueryEngine
from auditcli.store import AuditStore
from auditcli.timeparse import format_utc

from .constants import _TAGGED, TREE_FORMAT
from .keys import embedded_public_key, key_id, signature_valid, signing_key_from
from .manifests import Manifest, canonical, load_manifests
from .merkle import HASH_SIZE, leaf_hash, verify_consistency, verify_inclusion
from .tree import head_of, load_tree, tree_chain

BUNDLE_FORMAT = "auditcli-bundle/1"
_STATEMENT_TAG = b"auditcli-bundle/1\n"


# ---------------------------------------------------------------------------- proving
def prove(store: AuditStore, filters: Filters, *, signing_key: Any = None) -> dict[str, Any]:
    """A bundle of every entry `filters` select, each with its audit path to the tree head of
    the newest seal that has one. Fails (AuditError) when a selected entry is not sealed yet,
    and (IntegrityError) when the store does not give that seal's head."""
    key = signing_key_from(signing_key)
    if key is None:
        raise UsageError(
            "prove needs the store's signing key (--signing-key or AUDIT_SIGNING_KEY): it signs"
            " the list of entries, without which a removed entry would not show"
        )
    manifests, _ = load_manifests(store)
    target = _newest_tree_seal(manifests)
    loaded = load_tree(store, manifests, target)
    head = loaded.heads[-1]
    engine = QueryEngine(store, filters, order="asc")
    lines = list(engine.stream())
    if engine.problems:
        raise IntegrityError(
            f"the store has {len(engine.problems)} damaged line(s) or file(s), first:"
            f" {engine.problems[0]}; run `audit verify`"
        )
    wanted = {leaf_hash(line[:-1]): line for line in lines}
    found: dict[bytes, int] = {}
    leaves = loaded.tree.levels[0]
    for at in range(0, len(leaves), HASH_SIZE):
        digest = leaves[at : at + HASH_SIZE]
        if digest in wanted and digest not in found:
            found[digest] = at // HASH_SIZE
    if len(found) < len(wanted):
        raise AuditError(
            f"{len(wanted) - len(found)} of the {len(wanted)} selected entries are not covered"
            f" by the newest seal #{target.sequence} ({target.sealed_at}): newer than it (run"
            " `audit seal` and prove again) or changed since (run `audit verify`)"
        )
    entries, claims = [], []
    for digest, index in sorted(found.items(), key=lambda item: item[1]):
        name, number = loaded.locate(index)
        entries.append(
            {
                "leafIndex": index,
                "file": name,
                "line": number,
                "stored": wanted[digest][:-1].decode(),
                "path": [p.hex() for p in loaded.tree.inclusion_path(index, head.size)],
            }
        )
        claims.append([index, digest.hex(), name, number])
    statement = {
        "format": BUNDLE_FORMAT,
        "kind": "inclusion",
        "createdAt": format_utc(store.clock()),
        "query": filters.describe(),
        "manifest": target.hash,
        "treeSize": head.size,
        "root": chain.tag(head.root),
        "entries": claims,
    }
    bundle = _bundle("inclusion", [target], statement, key)
    bundle["entries"] = entries
    bundle["cover"] = _inclusion_cover(target, head.size, len(entries), filters, bundle)
    return bundle


def prove_consistency(
    store: AuditStore, first_ref: str, second_ref: str, *, signing_key: Any = None
) -> dict[str, Any]:
    """A bundle proving that the tree of seal `first_ref` is a prefix of the tree of seal
    `second_ref` (each a manifest sequence number or hash)."""
    key = signing_key_from(signing_key)
    manifests, _ = load_manifests(store)
    first, second = resolve_manifest(manifests, first_ref), resolve_manifest(manifests, second_ref)
    if first.sequence > second.sequence:
        raise UsageError(f"--consistency: #{first.sequence} comes after #{second.sequence}")
    heads = tree_chain(manifests, second)
    if not any(h.manifest.hash == first.hash for h in heads):
        raise AuditError(
            f"seal #{second.sequence}'s tree does not extend #{first.sequence}'s: its tree"
            f" starts at #{heads[0].manifest.sequence} (a seal without a tree came between)"
        )
    loaded = load_tree(store, manifests, second)
    old, new = head_of(first), loaded.heads[-1]
    assert old is not None  # in the chain above
    proof = loaded.tree.consistency_proof(old.size, new.size) if old.size else []
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


def _head_claim(manifest: Manifest, size: int, root: bytes) -> dict[str, Any]:
    return {
        "manifest": manifest.hash,
        "sequence": manifest.sequence,
        "treeSize": size,
        "root": chain.tag(root),
    }


def _newest_tree_seal(manifests: Sequence[Manifest]) -> Manifest:
    for manifest in reversed(manifests):
        if head_of(manifest) is not None:
            return manifest
    raise AuditError("no seal has a Merkle tree head yet: run `audit seal` first")


def resolve_manifest(manifests: Sequence[Manifest], ref: str) -> Manifest:
    """The seal manifest `ref` names: a sequence number, or a hash (`sha256:` optional)."""
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
    signer = next((m.signature.get("keyId") for m in manifests if m.signature), None)
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
    target: Manifest, size: int, count: int, filters: Filters, bundle: Mapping[str, Any]
) -> list[str]:
    query = (
        ", ".join(
            f"{name}={'|'.join(value) if isinstance(value, list) else value}"
            for name, value in filters.describe().items()
            if value
        )
        or "everything"
    )
    return [
        f"auditcli evidence bundle ({BUNDLE_FORMAT}): {count} audit log entries.",
        f"Selected by the query: {query}.",
        f"Tree head: manifest #{target.sequence} {target.hash}, sealed {target.sealed_at},",
        f"tree of {size} entries, signing key {bundle['keyId'] or 'none (unsigned store)'}.",
        "What it proves: each entry below is, byte for byte, the line at its position in the",
        "log whose Merkle tree head that key signed; an edited, added, reordered or foreign",
        "entry, or a proof against another store's head, fails the check.",
        "The list of entries and the query are signed by the same key, so removing an entry",
        "from this file shows; that nothing else matched the query rests on the word of",
        "whoever holds the key.",
        *_HOW_TO_CHECK,
    ]


def _consistency_cover(
    first: Manifest, second: Manifest, old: int, new: int, bundle: Mapping[str, Any]
) -> list[str]:
    return [
        f"auditcli consistency proof ({BUNDLE_FORMAT}).",
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


# ---------------------------------------------------------------------------- checking
@dataclass
class EntryResult:
    """The check of one entry of a bundle."""

    position: int
    leaf_index: int | None
    entry_id: str
    action: str
    ok: bool
    detail: str


@dataclass
class BundleReport:
    """The outcome of `verify_bundle()`: ok when `problems` is empty."""

    kind: str = ""
    key_id: str | None = None
    key_trusted: bool = False
    manifests: list[dict[str, Any]] = field(default_factory=list)
    entries: list[EntryResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "ok": self.ok,
            "kind": self.kind,
            "keyId": self.key_id,
            "keyTrusted": self.key_trusted,
            "manifests": self.manifests,
            "entries": [
                {
                    "position": e.position,
                    "leafIndex": e.leaf_index,
                    "id": e.entry_id,
                    "action": e.action,
                    "ok": e.ok,
                    "detail": e.detail,
                }
                for e in self.entries
            ],
            "problems": self.problems,
            "notes": self.notes,
        }


def verify_bundle(
    data: bytes, public_keys: Sequence[Any] = (), anchor: str | None = None
) -> BundleReport:
    """Check a bundle: manifest hashes and signatures (against `public_keys` when given, else
    the key the bundle carries, noted as untrusted), the statement and its signature, and each
    entry's audit path, or the consistency proof. `anchor`: a manifest hash or tree root the
    auditor kept, which must be the bundle's (earlier) head."""
    report = BundleReport()
    try:
        bundle = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise IntegrityError(f"not a bundle: not valid JSON ({exc})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise IntegrityError(f"not a bundle: format is not {BUNDLE_FORMAT}")
    report.kind = str(bundle.get("kind"))
    trusted = {key_id(k): k for k in public_keys}
    heads = _check_manifests(bundle.get("manifests"), trusted, report)
    if report.key_id is not None and bundle.get("keyId") != report.key_id:
        report.problems.append(
            f"the bundle names key {bundle.get('keyId')}, its manifests are signed by"
            f" {report.key_id}"
        )
    statement = _check_statement(bundle, trusted, report)
    if report.kind == "inclusion":
        _check_inclusion(bundle, statement, heads, report)
    elif report.kind == "consistency":
        _check_consistency(bundle, statement, heads, report)
    else:
        report.problems.append(f"unknown bundle kind {report.kind!r}")
    if anchor is not None:
        wanted = anchor if anchor.startswith("sha256:") else f"sha256:{anchor}"
        first = next(iter(heads.values()), None)
        if first is None or wanted not in (first["hash"], first["root"]):
            report.problems.append(f"the anchor {wanted} is not the bundle's (earlier) head")
    return report


def _check_manifests(
    items: Any, trusted: Mapping[str, Any], report: BundleReport
) -> dict[str, dict[str, Any]]:
    """The tree heads of the bundle's well-formed, correctly signed manifests, by hash."""
    heads: dict[str, dict[str, Any]] = {}
    if not isinstance(items, list) or not items:
        report.problems.append("the bundle holds no manifest")
        return heads
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("body"), str):
            report.problems.append("a manifest entry is malformed")
            continue
        body_bytes = item["body"].encode()
        digest = chain.tag(hashlib.sha256(body_bytes).digest())
        if item.get("hash") != digest:
            report.problems.append(f"manifest {item.get('hash')}: its body hashes to {digest}")
            continue
        try:
            body = orjson.loads(body_bytes)
            merkle = body["merkle"]
            head = {
                "hash": digest,
                "sequence": body["sequence"],
                "sealedAt": body["sealedAt"],
                "size": int(merkle["size"]),
                "root": str(merkle["root"]),
            }
            if body.get("format") != TREE_FORMAT or body.get("kind") != "seal":
                raise ValueError("not a format-2 seal")
            if head["size"] < 0 or not _TAGGED.match(head["root"]):
                raise ValueError("a malformed tree head")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            report.problems.append(f"manifest {digest}: not a seal with a tree head ({exc})")
            continue
        signature = item.get("signature")
        if not isinstance(signature, dict) or signature.get("algorithm") != "ed25519":
            report.problems.append(
                f"manifest #{head['sequence']} is unsigned: its tree head proves nothing"
            )
            continue
        signer = str(signature.get("keyId"))
        key = trusted.get(signer) if trusted else embedded_public_key(signature)
        if key is not None and not trusted and key_id(key) != signer:
            key = None
        if key is None or not signature_valid(body_bytes, signature, key):
            why = "not signed by a given --public-key" if trusted else "its signature is invalid"
            report.problems.append(f"manifest #{head['sequence']}: {why} (key {signer})")
            continue
        if report.key_id not in (None, signer):
            report.problems.append(f"manifest #{head['sequence']} is signed by another key")
            continue
        report.key_id, report.key_trusted = signer, bool(trusted)
        heads[digest] = head
        report.manifests.append(head)
    if heads and not trusted:
        report.notes.append(
            f"signatures checked against the key the bundle carries ({report.key_id}):"
            " pass --public-key with the store's key to know who signed"
        )
    return heads


def _check_statement(
    bundle: Mapping[str, Any], trusted: Mapping[str, Any], report: BundleReport
) -> dict[str, Any]:
    text = bundle.get("statement")
    if not isinstance(text, str):
        report.problems.append("the bundle has no statement")
        return {}
    statement_bytes = text.encode()
    try:
        statement = orjson.loads(statement_bytes)
    except orjson.JSONDecodeError:
        report.problems.append("the statement is not valid JSON")
        return {}
    if not isinstance(statement, dict) or statement.get("kind") != report.kind:
        report.problems.append("the statement is not of the bundle's kind")
        return {}
    signature = bundle.get("statementSignature")
    if signature is None and report.kind == "inclusion":  # a consistency proof needs none
        # Unsigned, an entry removed together with its line in the statement would not show.
        report.problems.append("the statement (the list of entries) is not signed")
    elif signature is not None and not _statement_signed(
        statement_bytes, signature, trusted, report.key_id
    ):
        report.problems.append(
            f"the statement's signature is not valid for the manifests' key {report.key_id}"
        )
    return statement


def _statement_signed(
    statement: bytes, signature: Any, trusted: Mapping[str, Any], manifest_key: str | None
) -> bool:
    """Whether `signature` is the manifests' key's over the statement."""
    from cryptography.exceptions import InvalidSignature

    if not isinstance(signature, dict) or signature.get("keyId") != manifest_key:
        return False
    key = trusted.get(str(manifest_key)) if trusted else embedded_public_key(signature)
    if key is None or key_id(key) != manifest_key:
        return False
    try:
        key.verify(base64.b64decode(signature["value"], validate=True), _STATEMENT_TAG + statement)
    except (InvalidSignature, ValueError, TypeError, KeyError):
        return False
    return True


def _check_inclusion(
    bundle: Mapping[str, Any],
    statement: Mapping[str, Any],
    heads: Mapping[str, dict[str, Any]],
    report: BundleReport,
) -> None:
    head = heads.get(str(statement.get("manifest")))
    if head is None:
        report.problems.append("the statement's manifest is not a valid manifest of the bundle")
    elif (statement.get("treeSize"), statement.get("root")) != (head["size"], head["root"]):
        report.problems.append("the statement's tree head is not the signed manifest's")
    claims = statement.get("entries")
    entries = bundle.get("entries")
    if not isinstance(claims, list) or not isinstance(entries, list):
        report.problems.append("the bundle has no entry list")
        return
    if len(claims) != len(entries):
        report.problems.append(
            f"the statement lists {len(claims)} entries, the bundle holds {len(entries)}"
        )
    previous = -1
    for position, item in enumerate(entries, 1):
        result = _check_entry(position, item, claims, head)
        if result.leaf_index is not None:
            if result.leaf_index <= previous and result.ok:
                result.ok, result.detail = False, "out of order (leaf indexes must increase)"
            previous = max(previous, result.leaf_index)
        report.entries.append(result)
        if not result.ok:
            report.problems.append(f"entry {position} ({result.entry_id}): {result.detail}")


def _check_entry(
    position: int, item: Any, claims: Sequence[Any], head: Mapping[str, Any] | None
) -> EntryResult:
    result = EntryResult(position, None, "?", "?", False, "")
    if not isinstance(item, dict) or not isinstance(item.get("stored"), str):
        result.detail = "malformed"
        return result
    try:
        entry = orjson.loads(item["stored"])
        result.entry_id, result.action = str(entry.get("id")), str(entry.get("action"))
    except (orjson.JSONDecodeError, AttributeError):
        result.detail = "the stored line is not a JSON object"
        return result
    index, path = item.get("leafIndex"), item.get("path")
    if not isinstance(index, int) or not isinstance(path, list):
        result.detail = "no leaf index or audit path"
        return result
    result.leaf_index = index
    leaf = leaf_hash(item["stored"].encode())
    claim = claims[position - 1] if position <= len(claims) else None
    if claim != [index, leaf.hex(), item.get("file"), item.get("line")]:
        result.detail = "not the entry the statement lists at this position"
        return result
    if head is None:
        result.detail = "no valid tree head to check against"
        return result
    try:
        hashes = [bytes.fromhex(p) for p in path]
    except (TypeError, ValueError):
        result.detail = "the audit path is not hex"
        return result
    root = bytes.fromhex(head["root"][7:])
    if not verify_inclusion(leaf, index, head["size"], hashes, root):
        result.detail = f"its audit path does not lead to the signed head #{head['sequence']}"
        return result
    result.ok, result.detail = True, f"in the tree of seal #{head['sequence']}"
    return result


def _check_consistency(
    bundle: Mapping[str, Any],
    statement: Mapping[str, Any],
    heads: Mapping[str, dict[str, Any]],
    report: BundleReport,
) -> None:
    body = bundle.get("consistency")
    if not isinstance(body, dict) or any(
        body.get(k) != statement.get(k) for k in ("first", "second", "proof")
    ):
        report.problems.append("the consistency proof is not the statement's")
        return
    try:
        first, second = heads[body["first"]["manifest"]], heads[body["second"]["manifest"]]
        proof = [bytes.fromhex(p) for p in body["proof"]]
    except (KeyError, TypeError, ValueError):
        report.problems.append("the consistency proof names no valid signed manifest")
        return
    for claim, head in ((body["first"], first), (body["second"], second)):
        if (claim.get("treeSize"), claim.get("root")) != (head["size"], head["root"]):
            report.problems.append(
                f"the head claimed for #{head['sequence']} is not the signed one"
            )
            return
    ok = verify_consistency(
        first["size"],
        second["size"],
        bytes.fromhex(first["root"][7:]),
        bytes.fromhex(second["root"][7:]),
        proof,
    )
    if not ok:
        report.problems.append(
            f"the tree of #{second['sequence']} does not extend the tree of #{first['sequence']}"
        )
