"""Tamper evidence: sealed manifests (checkpoints), retention receipts, signatures and verify.

Each log file is already a hash chain (see chain.py). A chain alone is weak: whoever can write
the directory can cut off its tail or recompute it. So `seal()` writes a *manifest* into
`LOGDIR/_manifests/` that records, for every file of every partition, its line count, the link of
its last line (its head), its size and, for gzip archives, the archive's SHA-256. Each manifest
names the hash of the previous one, has a sequence number (a gap shows), and is signed with
Ed25519 when a private key is configured. `write_receipt()` adds a manifest of kind `receipt`
when retention deletes files, so a planned deletion is told apart from tampering.

`verify()` streams every file once (SHA-256 per line), checks every link, the genesis binding,
every checkpoint any manifest ever made of the file (so truncating a file and re-sealing it
still shows), the manifest chain and its signatures, and what is missing or new.

On disk a manifest is one canonical JSON object (orjson, sorted keys)::

    {"hash":"sha256:…","manifest":{…body…},"signature":{"algorithm":"ed25519","keyId":"sha256:…",
     "publicKey":"<base64>","value":"<base64>"} | null}

`hash` is SHA-256 over the canonical body; the signature covers a domain tag plus that body.
"""

from .keys import generate_keys, key_id, load_public_key, load_signing_key
from .manifests import (
    Manifest,
    body_hash,
    canonical,
    file_record,
    latest_manifest_hash,
    load_manifests,
    manifest_dir,
    partition_records,
    read_manifest,
)
from .receipts import write_receipt
from .seal import SealResult, seal
from .verify import VerifyReport, iter_problem_lines, verify

__all__ = [
    "Manifest",
    "SealResult",
    "VerifyReport",
    "body_hash",
    "canonical",
    "file_record",
    "generate_keys",
    "iter_problem_lines",
    "key_id",
    "latest_manifest_hash",
    "load_manifests",
    "load_public_key",
    "load_signing_key",
    "manifest_dir",
    "partition_records",
    "read_manifest",
    "seal",
    "verify",
    "write_receipt",
]
