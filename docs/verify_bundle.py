#!/usr/bin/env python3
"""Check an auditcli evidence bundle without auditcli: Python 3.11+ and `cryptography` only.

    python3 verify_bundle.py BUNDLE.json --public-key HOST_KEY.pub [--public-key …] [--anchor HASH]

Exit 0 when every check passes, 5 when one fails, 2 on bad usage. What is checked, step by
step (see docs/evidence.md):

1. each manifest: SHA-256 of its `body` text is its `hash`; its Ed25519 signature over
   b"auditcli-manifest/1\\n" + body verifies with one of the given public keys (each writer
   of a fleet may have its own); it is a seal of format auditcli-manifest/3 with a Merkle tree
   head (`merkle.size`, `merkle.root`) of its writer's tree;
2. the statement (what the bundle claims) is signed by one of those manifests' keys over
   b"auditcli-bundle/1\\n" + statement (a consistency bundle's may be unsigned);
3. inclusion: each tree head the statement names is a signed manifest's; the entries are
   exactly the statement's list, in (head, leaf index) order; each leaf is
   SHA-256(0x00 || stored line) and its audit path leads to its head's signed root
   (RFC 9162 section 2.1.3.2);
4. consistency: the proof shows the earlier signed tree is a prefix of the later one
   (RFC 9162 section 2.1.4.2).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
    load_ssh_public_key,
)

MANIFEST_TAG = b"auditcli-manifest/1\n"
STATEMENT_TAG = b"auditcli-bundle/1\n"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(m: int, n: int, old: bytes, new: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2 (equal sizes: empty proof and equal roots)."""
    if m == n:
        return not proof and old == new
    if not 0 < m < n or not proof:
        return False
    path = ([old] if m & (m - 1) == 0 else []) + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old and sr == new and sn == 0


def key_id(key: Ed25519PublicKey) -> str:
    return "sha256:" + sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hex()


def load_key(path: str) -> Ed25519PublicKey:
    data = Path(path).read_bytes()
    for loader in (load_pem_public_key, load_ssh_public_key):
        try:
            key = loader(data)
        except ValueError:
            continue
        if isinstance(key, Ed25519PublicKey):
            return key
    raise SystemExit(f"usage: {path} is not an Ed25519 public key")


def signed(key: Ed25519PublicKey | None, tag: bytes, data: bytes, signature: object) -> bool:
    if key is None or not isinstance(signature, dict) or signature.get("algorithm") != "ed25519":
        return False
    try:
        key.verify(base64.b64decode(signature["value"], validate=True), tag + data)
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False
    return signature.get("keyId") == key_id(key)


def embedded(signature: object) -> Ed25519PublicKey | None:
    """The public key a signature carries (trusted only when no key is given)."""
    raw = base64.b64decode(str((signature or {}).get("publicKey", "")))  # type: ignore[union-attr]
    return Ed25519PublicKey.from_public_bytes(raw) if len(raw) == 32 else None


def check(bundle: dict, keys: list[Ed25519PublicKey], anchor: str | None) -> list[str]:
    """The problems found in `bundle` (empty: it verifies). Prints one line per entry."""
    problems: list[str] = []
    if bundle.get("format") != "auditcli-bundle/1":
        return ["not an auditcli-bundle/1 file"]
    given = {key_id(k): k for k in keys}
    if not given:  # no key given: use the bundle's own, and say so
        print(f"note: no --public-key; using the keys the bundle carries ({bundle.get('keyId')})")
    signers: dict[str, Ed25519PublicKey] = {}  # the keys that signed the manifests
    heads: dict[str, tuple[int, bytes, int]] = {}
    for item in bundle.get("manifests") or []:
        body = str(item.get("body", "")).encode()
        digest = "sha256:" + sha256(body).hex()
        if item.get("hash") != digest:
            problems.append(f"manifest {item.get('hash')}: body hashes to {digest}")
            continue
        signature = item.get("signature") or {}
        name = str(signature.get("keyId"))
        key = given.get(name) if given else embedded(signature)
        if not signed(key, MANIFEST_TAG, body, signature):
            problems.append(f"manifest {digest}: not signed by a given key")
            continue
        signers[name] = key  # type: ignore[assignment]
        parsed = json.loads(body)
        merkle = parsed.get("merkle") or {}
        if parsed.get("format") != "auditcli-manifest/3" or parsed.get("kind") != "seal":
            problems.append(f"manifest {digest}: not a seal with a tree head")
            continue
        heads[digest] = (merkle["size"], bytes.fromhex(merkle["root"][7:]), parsed["sequence"])
        print(
            f"manifest {parsed.get('writer')}#{parsed['sequence']}: {merkle['size']} entries,"
            f" root {merkle['root']}"
        )
    text = str(bundle.get("statement", "")).encode()
    statement = json.loads(text)
    if bundle.get("statementSignature") is not None:
        key = signers.get(str(bundle["statementSignature"].get("keyId")))
        if bundle.get("keyId") != bundle["statementSignature"].get("keyId"):
            problems.append("the bundle's keyId is not the statement's signer")
        if not signed(key, STATEMENT_TAG, text, bundle["statementSignature"]):
            problems.append("the statement's signature does not verify")
    elif bundle.get("kind") == "inclusion":
        problems.append("the statement (the list of entries) is not signed")
    if statement.get("kind") != bundle.get("kind"):
        problems.append("the statement is not of the bundle's kind")
    if bundle.get("kind") == "inclusion":
        # The tree heads the entries are proved against: each must be a signed manifest's.
        proved = []
        for claim in statement.get("heads") or []:
            head = heads.get(claim.get("manifest"))
            if head is None or (claim.get("treeSize"), claim.get("root")) != (
                head[0],
                "sha256:" + head[1].hex(),
            ):
                problems.append(f"the statement's tree head {claim} is not a signed one")
                head = None
            proved.append(head)
        claims, entries = statement.get("entries") or [], bundle.get("entries") or []
        if len(claims) != len(entries):
            problems.append(
                f"the statement lists {len(claims)} entries, the bundle has {len(entries)}"
            )
        last = (-1, -1)
        for position, entry in enumerate(entries, 1):
            stored = str(entry.get("stored", ""))
            leaf = sha256(b"\x00" + stored.encode())
            number, index = entry.get("head"), entry.get("leafIndex")
            claim = claims[position - 1] if position <= len(claims) else None
            ok = claim == [number, index, leaf.hex(), entry.get("file"), entry.get("line")]
            ok = ok and isinstance(number, int) and 0 <= number < len(proved)
            ok = ok and isinstance(index, int) and (number, index) > last
            head = proved[number] if ok else None
            ok = head is not None and verify_inclusion(
                leaf, index, head[0], [bytes.fromhex(p) for p in entry.get("path", [])], head[1]
            )
            last = (number, index) if ok else last
            print(f"entry {position} leaf {index}: {'ok' if ok else 'FAILED'}")
            if not ok:
                problems.append(f"entry {position} does not verify")
    elif bundle.get("kind") == "consistency":
        proof = bundle.get("consistency") or {}
        first = heads.get(proof.get("first", {}).get("manifest"))
        second = heads.get(proof.get("second", {}).get("manifest"))
        if proof != {k: statement.get(k) for k in ("first", "second", "proof")}:
            problems.append("the consistency proof is not the statement's")
        elif (
            first is None
            or second is None
            or not verify_consistency(
                first[0], second[0], first[1], second[1], [bytes.fromhex(p) for p in proof["proof"]]
            )
        ):
            problems.append("the later tree does not extend the earlier one")
        else:
            print(f"consistent: #{first[2]} ({first[0]} entries) -> #{second[2]} ({second[0]})")
    else:
        problems.append(f"unknown kind {bundle.get('kind')!r}")
    if anchor is not None:
        wanted = anchor if anchor.startswith("sha256:") else "sha256:" + anchor
        # The heads the bundle proves from (not whichever manifest is listed first).
        if bundle.get("kind") == "consistency":
            claims = [statement.get("first") or {}]
        else:
            claims = statement.get("heads") or []
        named = [c.get("manifest") for c in claims if c.get("manifest") in heads]
        if not any(wanted in (n, "sha256:" + heads[n][1].hex()) for n in named):
            problems.append(f"the anchor {wanted} is not a head the bundle proves from")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description="Check an auditcli evidence bundle offline.")
    parser.add_argument("bundle")
    parser.add_argument(
        "--public-key",
        action="append",
        default=[],
        help="a writer's Ed25519 public key (PEM or ssh); repeat for each host's key",
    )
    parser.add_argument("--anchor", help="a manifest hash or tree root you kept")
    args = parser.parse_args()
    try:
        bundle = json.loads(Path(args.bundle).read_bytes())
        problems = check(bundle, [load_key(path) for path in args.public_key], args.anchor)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        problems = [f"unreadable or malformed bundle: {type(exc).__name__}: {exc}"]
    for problem in problems:
        print(f"problem: {problem}")
    print("bundle: OK" if not problems else f"bundle: FAILED ({len(problems)} problem(s))")
    return 5 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
