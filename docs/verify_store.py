#!/usr/bin/env python3
"""Check an auditcli log directory without auditcli: Python's standard library + `cryptography`.

    python3 verify_store.py LOGDIR [--public-key seal.key.pub]

It implements docs/store-format.md and nothing else: every file's hash chain from its genesis,
each manifest chain (every writer's `_manifests/<writer>/`, format 2, and the flat legacy chain
`_manifests/*.json` of older stores, format 1: file names, sequence numbers, `previous` links,
body hashes, the writer each names), each manifest's Ed25519 signature (with the key given, else
with the key the manifest embeds, which proves nothing about who signed), and that every
checkpoint a manifest ever made of a file still holds (the file has at least that many lines and
its link at that line is the recorded head) unless a later retention receipt, in any chain, says
the file was deleted on purpose. Lines of chain version 2 are checked through their salted
commitments; a redacted line is accepted only when a signed redaction receipt names its bytes
(a version 1 line: as a whole-line replacement). Exit 0: all holds; 1: problems, one per line
on stdout; 2: bad arguments.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import zlib
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

GENESIS_TAG = b"auditcli-chain-v1\x00"
V2_TAG = b"auditcli-chain-v2\x00"  # chain version 2: personal fields through commitments
FIELD_TAG = b"auditcli-field-salt\x00"
MARKER = "[redacted]"
PERSONAL = ("description", "actorName", "actorEmail")  # and every metadata.KEY
SIGNED_TAG = b"auditcli-manifest/1\n"
LEGACY_FORMAT = "auditcli-manifest/1"  # the flat chain of stores sealed before per-writer chains
FORMAT = "auditcli-manifest/2"  # a writer's own chain
#: A writer's seal that also signs a Merkle tree head (`merkle`); its tree is checked by
#: docs/verify_bundle.py and `audit verify`, its chain and records here like format 2.
TREE_FORMAT = "auditcli-manifest/3"
SUFFIX_HEAD = b',"_chain":"sha256:'
SUFFIX_LEN = len(SUFFIX_HEAD) + 64 + len(b'"}')  # of a line without its newline
LOG_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})/([A-Za-z0-9.+-]+?)(\.jsonl|\.jsonl\.gz)$")
MANIFEST_FILE = re.compile(r"(\d{9})-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z(\.receipt)?\.json")
WRITER = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")

#: A chain: `""` for the legacy flat chain, else the writer id (its directory's name).
Chains = dict[str, list[tuple[int, Path]]]


def manifest_paths(root: Path) -> Chains:
    """Every manifest file, by chain, `(sequence, path)` in sequence order: the legacy chain
    `_manifests/*.json` (key `""`) and each writer's `_manifests/<writer>/*.json`. Stray names,
    symlinks and anything that is neither a manifest nor a writer's directory are reported."""
    directory = root / "_manifests"
    chains: Chains = {}
    if not directory.is_dir() or directory.is_symlink():
        if directory.exists() or directory.is_symlink():
            problem("_manifests", "not a directory")
        return chains
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):  # .lock and a seal's temp file
            continue
        match = MANIFEST_FILE.fullmatch(path.name)
        if path.is_dir() and not path.is_symlink() and WRITER.fullmatch(path.name):
            found = chains.setdefault(path.name, [])
            for inner in sorted(path.iterdir()):
                match = MANIFEST_FILE.fullmatch(inner.name)
                if match and inner.is_file() and not inner.is_symlink():
                    found.append((int(match.group(1)), inner))
                elif not inner.name.startswith("."):
                    problem(f"_manifests/{path.name}/{inner.name}", "not a manifest file")
        elif match and not match.group(2) and path.is_file() and not path.is_symlink():
            chains.setdefault("", []).append((int(match.group(1)), path))
        else:
            problem(f"_manifests/{path.name}", "not a manifest file or a writer's chain")
    return {chain: sorted(found) for chain, found in chains.items()}


PROBLEMS: list[str] = []
#: (day, segment) -> line number -> SHA-256 (tagged) of the lines signed redaction receipts made.
REDACTED: dict[tuple[str, str], dict[int, set[str]]] = {}


def problem(where: str, what: str) -> None:
    """Record one problem: `where: what`."""
    PROBLEMS.append(f"{where}: {what}")


def canonical(body: Any) -> bytes:
    """The canonical bytes of a manifest body: compact JSON, keys sorted, UTF-8."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def tagged(digest: bytes) -> str:
    """`sha256:<hex>`, as manifests write a digest."""
    return "sha256:" + digest.hex()


def key_id(key: Ed25519PublicKey) -> str:
    """SHA-256 of the 32 raw public key bytes, tagged."""
    return tagged(hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).digest())


def check_manifests(
    root: Path, trusted: Ed25519PublicKey | None
) -> list[tuple[str, dict[str, Any]]]:
    """`(chain, body)` of every manifest of every chain, after checking each chain and its
    signatures, and that each writer's first manifest continues the legacy chain it names."""
    found: list[tuple[str, dict[str, Any]]] = []
    legacy_hashes: set[str] = set()
    chains = manifest_paths(root)
    for chain in sorted(chains):  # "" (the legacy chain) first
        bodies = check_chain(chain, chains[chain], trusted, legacy_hashes if not chain else None)
        found += [(chain, body) for body in bodies]
        first = bodies[0] if bodies and chain else {}
        legacy = first.get("legacy")
        if isinstance(legacy, dict) and "" in chains and legacy.get("hash") not in legacy_hashes:
            problem(f"_manifests/{chain}/", "continues a legacy manifest no longer there")
    return found


def check_chain(
    chain: str,
    paths: list[tuple[int, Path]],
    trusted: Ed25519PublicKey | None,
    hashes: set[str] | None,
) -> list[dict[str, Any]]:
    """The bodies of one chain (`chain`: a writer id, or "" for the legacy chain), in order,
    after checking links, sequence, format, writer and signatures; `hashes` collects theirs."""
    bodies = []
    previous_hash, previous_time, expected, signer = None, "", 1, None
    for sequence, path in paths:
        name = f"_manifests/{chain}/{path.name}" if chain else f"_manifests/{path.name}"
        envelope = json.loads(path.read_bytes())
        body = envelope.get("manifest")
        if not isinstance(body, dict):
            problem(name, "no manifest body")
            continue
        body_bytes = canonical(body)
        digest = tagged(hashlib.sha256(body_bytes).digest())
        if path.read_bytes() != canonical(envelope) + b"\n":
            problem(name, "the file is not the canonical envelope of its content")
        if envelope.get("hash") != digest:
            problem(name, f"its body hashes to {digest}, not {envelope.get('hash')}")
        if sequence != expected:
            problem(name, f"sequence {sequence}, expected {expected} (a manifest is missing)")
        expected = sequence + 1
        allowed = (FORMAT, TREE_FORMAT) if chain else (LEGACY_FORMAT,)
        if body.get("format") not in allowed or (
            body.get("format") == TREE_FORMAT and body.get("kind") != "seal"
        ):
            problem(name, f"format {body.get('format')!r} does not belong in this chain")
        if body.get("sequence") != sequence:
            problem(name, "its body's sequence is not its file name's")
        if chain and body.get("writer") != chain:
            problem(name, f"names writer {body.get('writer')!r}, but is in {chain}'s chain")
        if chain and (body.get("kind") == "receipt") != path.name.endswith(".receipt.json"):
            problem(name, "its file name and its kind disagree")
        if chain and body.get("kind") == "seal":
            for record in body.get("files", []):
                if file_key(record["name"])[1].split("+")[0] != chain:
                    problem(name, f"lists {record['name']}, a file of another writer")
        if body.get("previous") != previous_hash:
            problem(name, f"previous is {body.get('previous')}, expected {previous_hash}")
        if str(body.get("sealedAt")) < previous_time:
            problem(name, "sealed before the manifest it follows")
        signer = check_signature(name, body_bytes, envelope.get("signature"), trusted, signer)
        receipt = body.get("receipt") or {}
        if receipt.get("action") == "redact" and envelope.get("signature") is not None:
            for record in receipt.get("lines", []):  # (a bad signature is a problem above)
                lines = REDACTED.setdefault(file_key(record["name"]), {})
                lines.setdefault(record["line"], set()).add(record["new"])
        previous_hash, previous_time = digest, str(body.get("sealedAt"))
        if hashes is not None:
            hashes.add(digest)
        bodies.append(body)
    return bodies


def check_signature(
    name: str,
    body_bytes: bytes,
    signature: dict[str, Any] | None,
    trusted: Ed25519PublicKey | None,
    signer: str | None,
) -> str | None:
    """Check one signature; returns the key id manifests are signed with so far."""
    if signature is None:
        if trusted is not None or signer is not None:
            problem(name, "not signed")
        return signer
    try:
        embedded = Ed25519PublicKey.from_public_bytes(base64.b64decode(signature["publicKey"]))
        value = base64.b64decode(signature["value"], validate=True)
    except (KeyError, ValueError, TypeError):
        problem(name, "malformed signature")
        return signer
    key = trusted or embedded
    if signature.get("algorithm") != "ed25519" or signature.get("keyId") != key_id(key):
        problem(name, f"signed by {signature.get('keyId')}, not by {key_id(key)}")
        return signer
    if signer is not None and signer != key_id(key):
        problem(name, f"signed by {key_id(key)}, earlier manifests by {signer}")
    try:
        key.verify(value, SIGNED_TAG + body_bytes)
    except InvalidSignature:
        problem(name, "the signature does not match the body")
    return signer or key_id(key)


def checkpoints(
    bodies: list[tuple[str, dict[str, Any]]],
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per file key (day, segment): every (lines, head) a seal recorded since the last deletion
    receipt of it, torn tails recorded, and whether a receipt deleted it last. Seals of every
    chain and receipts of any chain are taken in `sealedAt` order (a receipt before a seal of
    the same time); a writer's seals list only its own files."""
    known: dict[tuple[str, str], dict[str, Any]] = {}
    ordered = sorted(
        enumerate(bodies),
        key=lambda item: (
            str(item[1][1].get("sealedAt")),
            item[1][1].get("kind") == "seal",
            item[0],
        ),
    )
    for _, (_, body) in ordered:
        if body.get("kind") == "seal":
            for record in body.get("files", []):
                key = file_key(record["name"])
                entry = known.setdefault(key, {"heads": set(), "torn": set(), "deleted": False})
                entry["heads"].add((record["lines"], record.get("head")))
                entry["deleted"] = False
                if record.get("torn"):
                    entry["torn"].add((record["torn"]["line"], record["torn"]["bytes"]))
        receipt = body.get("receipt") or {}
        if body.get("kind") == "receipt" and receipt.get("action", "delete") == "delete":
            for record in receipt.get("files", []):
                known[file_key(record["name"])] = {"heads": set(), "torn": set(), "deleted": True}
    return known


def file_key(name: str) -> tuple[str, str]:
    """`date=D/<segment>.jsonl[.gz]` -> (D, segment): a plain file and its gzip twin share it."""
    match = LOG_FILE.match(name.removeprefix("date="))
    if match is None:
        raise ValueError(f"{name}: not a log file name")
    return match.group(1), match.group(2)


def read_file(path: Path, name: str) -> bytes:
    """A log file's bytes, decompressed when it is gzip: one gzip member or several back to
    back (rotate writes independent members of whole lines), nothing else after them."""
    data = path.read_bytes()
    if not path.name.endswith(".gz"):
        return data
    parts, rest = [], data
    while True:
        unpacker = zlib.decompressobj(31)
        parts.append(unpacker.decompress(rest) + unpacker.flush())
        if not unpacker.eof:
            problem(name, "ends inside a gzip member")
            break
        rest = unpacker.unused_data
        if not rest:
            break
        if not rest.startswith(b"\x1f\x8b"):
            problem(name, "bytes after its last gzip member")
            break
    return b"".join(parts)


def check_file(
    path: Path, name: str, day: str, segment: str, want: set[int]
) -> tuple[int, dict[int, str], tuple[int, int] | None]:
    """Check one file's chain from its genesis. Returns its number of whole lines, the link
    after each line number in `want` (the line counts manifests recorded), and its torn line
    (number, bytes) if it ends without a newline."""
    data = read_file(path, name)
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else a torn line
    link = hashlib.sha256(GENESIS_TAG + f"date={day}/{segment}".encode()).digest()
    heads: dict[int, str] = {}
    for number, line in enumerate(lines, 1):
        if not (line.startswith(b'{"id":"') and line[-SUFFIX_LEN:].startswith(SUFFIX_HEAD)):
            problem(f"{name}:{number}", "not a stored entry")
            continue
        content = line[:-SUFFIX_LEN] + b"}"
        stated = line[-SUFFIX_LEN + len(SUFFIX_HEAD) : -2]
        previous, link = link, hashlib.sha256(link + content).digest()
        if stated != link.hex().encode():
            covered = tagged(hashlib.sha256(line + b"\n").digest()) in REDACTED.get(
                (day, segment), {}
            ).get(number, ())
            version2 = hashed_v2(content)
            if version2 is not None:
                link = hashlib.sha256(previous + version2[0]).digest()
                if stated == link.hex().encode() and version2[1] and not covered:
                    problem(
                        f"{name}:{number}", "redacted, and no signed redaction receipt names it"
                    )
            elif covered:  # version 1: replaced whole, as a signed receipt says
                link = bytes.fromhex(stated.decode())
        if stated != link.hex().encode():
            problem(f"{name}:{number}", "its chain link does not follow from the lines before")
            link = bytes.fromhex(stated.decode())  # go on from the stated link
        if json.loads(content).get("createdAt", "")[:10] != day:
            problem(f"{name}:{number}", f"createdAt is not in date={day}")
        if number in want:
            heads[number] = tagged(link)
    torn = (len(lines) + 1, len(tail)) if tail else None
    return len(lines), heads, torn


def hashed_v2(content: bytes) -> tuple[bytes, bool] | None:
    """For a chain version 2 line's content: (what its link hashes after the previous link,
    whether it is redacted); None for version 1 or a malformed commitment block."""
    try:
        entry = json.loads(content)
        block = {k: entry.pop(k) for k in ("_salt", "_redacted") if k in entry}
        metadata = entry["metadata"]
        names = [*PERSONAL, *(f"metadata.{k}" for k in (metadata or {}))]
        values = {n: metadata[n[9:]] if n.startswith("metadata.") else entry[n] for n in names}
        commitments = {}
        if set(block) == {"_salt"}:
            salt = bytes.fromhex(block["_salt"])
            for n in names:
                field_salt = hashlib.sha256(FIELD_TAG + salt + n.encode()).digest()
                commitments[n] = hashlib.sha256(field_salt + canonical(values[n])).hexdigest()
        elif set(block) == {"_redacted"}:
            removed, kept = block["_redacted"]["commitments"], block["_redacted"]["salts"]
            if set(removed) & set(kept) or set(removed) | set(kept) != set(names):
                return None
            for n in names:
                if n in removed and values[n] != MARKER and n != "description":
                    return None
                commitments[n] = (
                    removed.get(n)
                    or hashlib.sha256(bytes.fromhex(kept[n]) + canonical(values[n])).hexdigest()
                )
        else:
            return None
        for n in PERSONAL:
            entry[n] = commitments[n]
        if isinstance(metadata, dict):
            entry["metadata"] = {k: commitments[f"metadata.{k}"] for k in metadata}
        return V2_TAG + canonical(entry), "_redacted" in block
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def verify(root: Path, trusted: Ed25519PublicKey | None) -> tuple[int, int]:
    """Check everything; returns (files, lines) read. Problems go to PROBLEMS."""
    known = checkpoints(check_manifests(root, trusted))
    seen: set[tuple[str, str]] = set()
    files = total = 0
    for path in sorted(root.glob("date=*/*")):
        name = f"{path.parent.name}/{path.name}"
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue  # the temp of an interrupted rotate or redact: never evidence
        try:
            day, segment = file_key(name)
        except ValueError:
            problem(name, "not a log file of the store")
            continue
        seen.add((day, segment))
        entry = known.get((day, segment), {"heads": set(), "torn": set()})
        wanted = {lines for lines, _ in entry["heads"]}
        count, heads, torn = check_file(path, name, day, segment, wanted)
        files, total = files + 1, total + count
        for lines, head in sorted(entry["heads"], key=lambda item: item[0]):
            if lines > count:
                problem(name, f"{count} lines, but a manifest recorded {lines}: truncated")
            elif lines and heads.get(lines) != head:
                problem(f"{name}:{lines}", "not the line a manifest recorded: rewritten")
        if torn is not None and torn not in entry["torn"]:
            problem(f"{name}:{torn[0]}", f"torn line ({torn[1]} bytes with no newline)")
    for (day, segment), entry in sorted(known.items()):
        if (day, segment) not in seen and not entry["deleted"]:
            problem(f"date={day}/{segment}", "sealed, now gone, and no retention receipt")
    return files, total


def main(argv: list[str] | None = None) -> int:
    """The command line: exit 0 when the store holds, 1 when a problem was found."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the log directory")
    parser.add_argument("--public-key", type=Path, help="the seal key's public half (PEM)")
    args = parser.parse_args(argv)
    trusted = None
    if args.public_key is not None:
        trusted = load_pem_public_key(args.public_key.read_bytes())
        if not isinstance(trusted, Ed25519PublicKey):
            parser.error(f"{args.public_key}: not an Ed25519 public key")
    files, lines = verify(args.root, trusted)
    for line in PROBLEMS:
        print(line)
    verdict = f"{len(PROBLEMS)} problem(s)" if PROBLEMS else "OK"
    print(f"{verdict}: {files} files, {lines} lines", file=sys.stderr)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
