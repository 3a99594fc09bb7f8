"""`verify_bundle()`: check an evidence bundle (see bundle.py for the format) offline, entry by
entry: manifest hashes and signatures, the signed statement, each audit path, or the
consistency proof. `docs/verify_bundle.py` does the same without auditcli."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from auditcli import chain
from auditcli.errors import IntegrityError

from .bundle import _STATEMENT_TAG, BUNDLE_FORMAT
from .constants import _TAGGED, TREE_FORMAT
from .keys import embedded_public_key, key_id, signature_valid
from .merkle import leaf_hash, verify_consistency, verify_inclusion


@dataclass
class EntryResult:
    """The check of one entry of a bundle."""

    position: int
    leaf_index: int | None
    entry_id: str
    action: str
    ok: bool
    detail: str
    writer: str | None = None  # whose tree the entry is proved in


@dataclass
class BundleReport:
    """The outcome of `verify_bundle()`: ok when `problems` is empty."""

    kind: str = ""
    key_id: str | None = None  # the key that signed the statement (one of `key_ids`)
    key_ids: list[str] = field(default_factory=list)  # the keys that signed the manifests
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
            "manifestKeyIds": self.key_ids,
            "keyTrusted": self.key_trusted,
            "manifests": self.manifests,
            "entries": [
                {
                    "position": e.position,
                    "writer": e.writer,
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
    if report.key_ids:
        if bundle.get("keyId") in report.key_ids:
            report.key_id = str(bundle["keyId"])
        else:
            report.problems.append(
                f"the bundle names key {bundle.get('keyId')}, its manifests are signed by"
                f" {', '.join(report.key_ids)}"
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
        # The head the bundle proves from: its statement's (inclusion), the earlier one
        # (consistency); never just the first manifest listed, which anyone can reorder.
        claims: list[Any]
        if report.kind == "consistency":
            claims = [statement.get("first")]
        else:
            heads_claimed = statement.get("heads")
            claims = heads_claimed if isinstance(heads_claimed, list) else []
        named = [c.get("manifest") for c in claims if isinstance(c, dict)]
        proved = [heads[str(n)] for n in named if str(n) in heads]
        if not any(wanted in (head["hash"], head["root"]) for head in proved):
            report.problems.append(f"the anchor {wanted} is not a head the bundle proves from")
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
                "writer": body.get("writer"),
                "sequence": body["sequence"],
                "sealedAt": body["sealedAt"],
                "size": int(merkle["size"]),
                "root": str(merkle["root"]),
            }
            if body.get("format") != TREE_FORMAT or body.get("kind") != "seal":
                raise ValueError(f"not a {TREE_FORMAT} seal")
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
        if signer not in report.key_ids:  # each writer of a fleet may have its own key
            report.key_ids.append(signer)
        report.key_trusted = bool(trusted)
        heads[digest] = head
        report.manifests.append(head)
    if heads and not trusted:
        report.notes.append(
            "signatures checked against the keys the bundle carries"
            f" ({', '.join(report.key_ids)}): pass --public-key with each writer's key to know"
            " who signed"
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
    claimed = statement.get("heads")
    if not isinstance(claimed, list) or not claimed:
        report.problems.append("the statement names no tree head")
        return
    proved: list[dict[str, Any] | None] = []
    for claim in claimed:
        head = heads.get(str(claim.get("manifest"))) if isinstance(claim, dict) else None
        if head is None or (claim.get("treeSize"), claim.get("root")) != (
            head["size"],
            head["root"],
        ):
            report.problems.append(f"the statement's tree head {claim} is not a signed one")
            head = None
        proved.append(head)
    claims = statement.get("entries")
    entries = bundle.get("entries")
    if not isinstance(claims, list) or not isinstance(entries, list):
        report.problems.append("the bundle has no entry list")
        return
    if len(claims) != len(entries):
        report.problems.append(
            f"the statement lists {len(claims)} entries, the bundle holds {len(entries)}"
        )
    previous = (-1, -1)
    for position, item in enumerate(entries, 1):
        result, order = _check_entry(position, item, claims, proved)
        if order is not None:
            if order <= previous and result.ok:
                result.ok, result.detail = False, "out of order (by head, then leaf index)"
            previous = max(previous, order)
        report.entries.append(result)
        if not result.ok:
            report.problems.append(f"entry {position} ({result.entry_id}): {result.detail}")


def _check_entry(
    position: int, item: Any, claims: Sequence[Any], heads: Sequence[dict[str, Any] | None]
) -> tuple[EntryResult, tuple[int, int] | None]:
    """The check of one entry, and its (head, leaf index) place when it has one."""
    result = EntryResult(position, None, "?", "?", False, "")
    if not isinstance(item, dict) or not isinstance(item.get("stored"), str):
        result.detail = "malformed"
        return result, None
    try:
        entry = orjson.loads(item["stored"])
        result.entry_id, result.action = str(entry.get("id")), str(entry.get("action"))
    except (orjson.JSONDecodeError, AttributeError):
        result.detail = "the stored line is not a JSON object"
        return result, None
    number, index, path = item.get("head"), item.get("leafIndex"), item.get("path")
    if not isinstance(number, int) or not isinstance(index, int) or not isinstance(path, list):
        result.detail = "no head, leaf index or audit path"
        return result, None
    result.leaf_index = index
    leaf = leaf_hash(item["stored"].encode())
    head = heads[number] if 0 <= number < len(heads) else None
    result.writer = head.get("writer") if head else None
    if head is None:
        result.detail = "no valid tree head to check against"
        return result, (number, index)
    try:
        hashes = [bytes.fromhex(p) for p in path]
    except (TypeError, ValueError):
        result.detail = "the audit path is not hex"
        return result, (number, index)
    if not verify_inclusion(leaf, index, head["size"], hashes, bytes.fromhex(head["root"][7:])):
        result.detail = (
            f"not in the signed tree of seal #{head['sequence']} (edited, or a wrong path)"
        )
        return result, (number, index)
    # Proved, but is it the one the signed statement lists here (not moved, added, swapped)?
    claim = claims[position - 1] if position <= len(claims) else None
    if claim != [number, index, leaf.hex(), item.get("file"), item.get("line")]:
        result.detail = "not the entry the statement lists at this position"
        return result, (number, index)
    result.ok, result.detail = True, f"in the tree of seal #{head['sequence']}"
    return result, (number, index)


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
    report.manifests = [first] if first is second else [first, second]  # in proof order
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
