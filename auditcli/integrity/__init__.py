"""Tamper evidence: sealed manifests (checkpoints), retention receipts, signatures and verify.

Each log file is already a hash chain (see chain.py). A chain alone is weak: whoever can write
the directory can cut off its tail or recompute it. So `seal()` writes a *manifest* into the
writer's own chain, `LOGDIR/_manifests/<writer>/`, that records, for each of that writer's files
that is new or changed since its previous seal, its line count, the link of its last line (its
head), its size and, for gzip archives, the archive's SHA-256. Each manifest names the hash of
the previous one of its chain, has a sequence number (a gap shows), and is signed with Ed25519
when a private key is configured. One chain per writer lets the stores of many hosts merge into
one tree by plain file copy. `write_receipt()` adds a manifest of kind `receipt` when retention
deletes files, so a planned deletion is told apart from tampering. Stores sealed before
per-writer chains keep their flat `_manifests/*.json` chain (format 1, read only: the legacy
chain); each writer's first manifest names its head.

`verify()` streams every file once (SHA-256 per line), writer by writer, and checks every link,
the genesis binding, every checkpoint any manifest ever made of the file (so truncating a file
and re-sealing it still shows), every chain and its signatures, what is missing or new, and with
a fleet file (fleet.py) which hosts must be there and which key signs each.

On disk a manifest is one canonical JSON object (orjson, sorted keys)::

    {"hash":"sha256:…","manifest":{…body…},"signature":{"algorithm":"ed25519","keyId":"sha256:…",
     "publicKey":"<base64>","value":"<base64>"} | null}

`hash` is SHA-256 over the canonical body; the signature covers a domain tag plus that body.
"""

from .fleet import Fleet, load_fleet
from .keys import generate_keys, key_id, load_public_key, load_signing_key
from .manifests import (
    Manifest,
    body_hash,
    canonical,
    chain_writers,
    file_record,
    latest_manifest_hash,
    load_manifests,
    manifest_dir,
    partition_records,
    read_manifest,
)
from .receipts import write_receipt
from .seal import SealResult, default_writers, seal, seal_writers, store_writers
from .verify import LEGACY_HOST, HostReport, VerifyReport, iter_problem_lines, verify

__all__ = [
    "LEGACY_HOST",
    "Fleet",
    "HostReport",
    "Manifest",
    "SealResult",
    "VerifyReport",
    "body_hash",
    "canonical",
    "chain_writers",
    "default_writers",
    "file_record",
    "generate_keys",
    "iter_problem_lines",
    "key_id",
    "latest_manifest_hash",
    "load_fleet",
    "load_manifests",
    "load_public_key",
    "load_signing_key",
    "manifest_dir",
    "partition_records",
    "read_manifest",
    "seal",
    "seal_writers",
    "store_writers",
    "verify",
    "write_receipt",
]
