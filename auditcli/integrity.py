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

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from . import chain
from .errors import IntegrityError, UsageError
from .progress import Progress
from .query import Problem
from .store import PARTITION_PREFIX, AuditStore, LineSource, LogFile
from .timeparse import format_utc, parse_utc

MANIFEST_DIR = "_manifests"
FORMAT = "auditcli-manifest/1"
SIGNING_ENV = "AUDIT_SIGNING_KEY"
_SIGNED_TAG = b"auditcli-manifest/1\n"
_MANIFEST_NAME = re.compile(r"^(\d{9})-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)\.json$")
_FILE_NAME = re.compile(r"^date=(\d{4}-\d{2}-\d{2})/([^/]+?)(\.jsonl|\.jsonl\.gz)$")
_HEX64 = re.compile(rb"^[0-9a-f]{64}$")
_TAGGED = re.compile(r"^sha256:[0-9a-f]{64}$")

# Stored line without its newline: content[:-84] + "}" is the entry, [-66:-2] the link in hex.
_TAIL = chain.SUFFIX_LEN - 1
_HEX_START, _HEX_END = -(_TAIL - len(chain.SUFFIX_HEAD)), -2
_MIN_LINE = chain.SUFFIX_LEN + 40
_CREATED_DAY = chain.CREATED_START + 1  # createdAt[:10] of a line without its newline
_WINDOW = 64  # lines kept around a chain break to find where a moved line belongs
_MAX_BAD_SEARCH = 64  # bad lines per incident whose predecessor is searched for
_MAX_PROBLEMS_PER_FILE = 200
_MAX_INCIDENT = 4096
_MAX_SEARCHES_PER_FILE = 512  # bounds the cost of a file broken throughout
_CLOCK_SLACK = 2.0  # seconds: file times vs the seal's clock (see check_planted)


# ============================================================================ keys and signing
def key_id(public_key: Any) -> str:
    """The fingerprint of an Ed25519 public key: SHA-256 of its 32 raw bytes, tagged."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return chain.tag(hashlib.sha256(raw).digest())


def generate_keys(out: str | os.PathLike[str], *, force: bool = False) -> str:
    """Write a new Ed25519 private key to `out` (PEM, mode 0600) and its public key to
    `out.pub` (PEM). Refuses to overwrite unless `force`. Returns the key id."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    path = Path(out)
    pub_path = path.with_name(path.name + ".pub")
    for target in (path, pub_path):
        if (target.exists() or target.is_symlink()) and not force:
            raise UsageError(f"{target}: exists; pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    _write_new(path, private_pem, 0o600)
    _write_new(pub_path, public_pem, 0o644)
    return key_id(key.public_key())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temp file with `mode`, fsync, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it; never widen a private key though
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_signing_key(path: str | os.PathLike[str]) -> Any:
    """The Ed25519 private key in PEM file `path` (UsageError when unreadable or not Ed25519)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"signing key {path}: cannot read: {exc.strerror}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"signing key {path}: not an unencrypted PEM private key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"signing key {path}: not an Ed25519 key (use `audit keys generate`)")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Any:
    """The Ed25519 public key in `path`: PEM (`audit keys generate` writes PATH.pub) or an
    OpenSSH `ssh-ed25519` line. A private key file is accepted too (its public half is used)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
        load_ssh_public_key,
    )

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"public key {path}: cannot read: {exc.strerror}") from None
    key: Any = None
    for loader in (load_pem_public_key, load_ssh_public_key):
        try:
            key = loader(data)
            break
        except (ValueError, TypeError, Exception):
            continue
    if key is None:
        try:
            private = load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            private = None
        if isinstance(private, Ed25519PrivateKey):
            key = private.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"public key {path}: not an Ed25519 public key (PEM or ssh-ed25519)")
    return key


def _signing_key_from(signing_key: Any) -> Any:
    """A private key object from a path, a key object, or AUDIT_SIGNING_KEY; None if none."""
    if signing_key is None:
        env = os.environ.get(SIGNING_ENV)
        return load_signing_key(env) if env else None
    if isinstance(signing_key, str | os.PathLike):
        return load_signing_key(signing_key)
    return signing_key


def _sign(body_bytes: bytes, key: Any) -> dict[str, str]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key()
    return {
        "algorithm": "ed25519",
        "keyId": key_id(public),
        "publicKey": base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode(),
        "value": base64.b64encode(key.sign(_SIGNED_TAG + body_bytes)).decode(),
    }


def _signature_valid(body_bytes: bytes, signature: Mapping[str, Any], public_key: Any) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(
            base64.b64decode(signature["value"], validate=True), _SIGNED_TAG + body_bytes
        )
    except (InvalidSignature, ValueError, TypeError, KeyError):
        return False
    return True


def _embedded_public_key(signature: Mapping[str, Any]) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(signature["publicKey"], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, KeyError):
        return None


# ============================================================================ manifests on disk
def canonical(body: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a manifest body: compact JSON with sorted keys (hashed, signed)."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def body_hash(body_bytes: bytes) -> str:
    """The tagged SHA-256 of a canonical manifest body: what the next manifest chains to."""
    return chain.tag(hashlib.sha256(body_bytes).digest())


def manifest_dir(store: AuditStore) -> Path:
    """`LOGDIR/_manifests` (the underscore hides it from query engines)."""
    return store.root / MANIFEST_DIR


@dataclass
class Manifest:
    """One manifest file as read from disk; `body` is None when it could not be parsed."""

    path: Path
    sequence: int
    body: dict[str, Any] | None = None
    hash: str | None = None
    body_bytes: bytes = b""
    signature: dict[str, Any] | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        """`_manifests/<file name>`: how problems name it."""
        return f"{MANIFEST_DIR}/{self.path.name}"

    @property
    def kind(self) -> str:
        """`seal` or `receipt`."""
        return str((self.body or {}).get("kind", ""))

    @property
    def sealed_at(self) -> str:
        """The canonical time the manifest was made."""
        return str((self.body or {}).get("sealedAt", ""))


def _manifest_names(store: AuditStore) -> tuple[list[tuple[int, Path]], list[Path]]:
    """`(sequence, path)` of every manifest file, in order, and the other files in the dir."""
    directory = manifest_dir(store)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise IntegrityError(f"{directory}: cannot list: {exc.strerror}") from None
    found, foreign = [], []
    for name in names:
        if name.startswith("."):  # the lock file and temp files of a seal in progress
            continue
        match = _MANIFEST_NAME.match(name)
        if match:
            found.append((int(match.group(1)), directory / name))
        else:
            foreign.append(directory / name)
    found.sort(key=lambda item: (item[0], item[1].name))
    return found, sorted(foreign)


def read_manifest(path: Path, sequence: int) -> Manifest:
    """Parse one manifest file; problems go to `error` (never raises for bad content)."""
    manifest = Manifest(path, sequence)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        manifest.error = f"cannot read: {exc.strerror}"
        return manifest
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        manifest.error = f"not valid JSON ({exc})"
        return manifest
    if not isinstance(envelope, dict) or not isinstance(envelope.get("manifest"), dict):
        manifest.error = "not a manifest envelope"
        return manifest
    body = envelope["manifest"]
    manifest.body = body
    manifest.body_bytes = canonical(body)
    manifest.hash = body_hash(manifest.body_bytes)
    signature = envelope.get("signature")
    manifest.signature = signature if isinstance(signature, dict) else None
    problems = []
    if envelope.get("hash") != manifest.hash:
        problems.append(
            f"its content hashes to {manifest.hash}, not the {envelope.get('hash')} it states"
        )
    if body.get("format") != FORMAT or body.get("kind") not in ("seal", "receipt"):
        problems.append("unknown format or kind")
    if body.get("sequence") != sequence:
        problems.append(
            f"its body says sequence {body.get('sequence')!r}, its file name {sequence}"
        )
    if not isinstance(body.get("sealedAt"), str) or not _valid_time(body["sealedAt"]):
        problems.append("no valid sealedAt time")
    if not isinstance(body.get("files", []), list):
        problems.append("files is not a list")
    if problems:
        manifest.error = "; ".join(problems)
    return manifest


def _valid_time(text: str) -> bool:
    try:
        parse_utc(text)
    except ValueError:
        return False
    return True


def load_manifests(store: AuditStore) -> tuple[list[Manifest], list[Path]]:
    """Every manifest in sequence order, and foreign files found in the manifest directory."""
    names, foreign = _manifest_names(store)
    return [read_manifest(path, sequence) for sequence, path in names], foreign


def latest_manifest_hash(store: AuditStore) -> str | None:
    """The hash of the newest manifest (what `audit seal` prints to ship off-host), or None."""
    names, _ = _manifest_names(store)
    if not names:
        return None
    sequence, path = names[-1]
    manifest = read_manifest(path, sequence)
    if manifest.body is None:
        raise IntegrityError(f"{manifest.name}: {manifest.error}")
    return manifest.hash


class _manifest_lock:
    """An exclusive lock on the manifest directory: one seal or receipt at a time.

    Writers never take it, so sealing never blocks `audit record`."""

    def __init__(self, store: AuditStore) -> None:
        self.directory = manifest_dir(store)
        self.store = store
        self.fd = -1

    def __enter__(self) -> Path:
        self.store.ensure_root()
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            if not self.directory.is_dir() or self.directory.is_symlink():
                raise IntegrityError(f"{self.directory}: exists and is not a directory") from None
        except OSError as exc:
            raise IntegrityError(f"{self.directory}: cannot create: {exc.strerror}") from None
        try:
            self.fd = os.open(
                self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
            )
        except OSError as exc:
            raise IntegrityError(f"{self.directory}/.lock: {exc.strerror}") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.directory

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


def _append_manifest(
    store: AuditStore, directory: Path, body: dict[str, Any], signing_key: Any
) -> Manifest:
    """Give `body` its place in the chain (sequence, previous, time), sign it, write it."""
    names, _ = _manifest_names(store)
    previous: str | None = None
    sequence = 1
    if names:
        last_sequence, last_path = names[-1]
        last = read_manifest(last_path, last_sequence)
        if last.body is None or last.error:
            # Chaining to a damaged manifest would hide the damage behind a fresh, valid link.
            raise IntegrityError(
                f"{last.name}: {last.error}; not sealing on top of it (run `audit verify`)"
            )
        previous, sequence = last.hash, last_sequence + 1
    body = {
        "format": FORMAT,
        "sequence": sequence,
        "previous": previous,
        **body,
    }
    body_bytes = canonical(body)
    digest = body_hash(body_bytes)
    signature = _sign(body_bytes, signing_key) if signing_key is not None else None
    envelope = {"hash": digest, "manifest": body, "signature": signature}
    stamp = body["sealedAt"][:19].replace(":", "-") + "Z"
    path = directory / f"{sequence:09d}-{stamp}.json"
    tmp = directory / f".{path.name}.tmp"
    data = orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS) + b"\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # never replaces an existing manifest
        os.unlink(tmp)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise IntegrityError(f"{path}: cannot write the manifest: {exc.strerror}") from None
    return Manifest(path, sequence, body, digest, body_bytes, signature)


# ============================================================================ file states
def _file_key(name: str) -> tuple[str, str] | None:
    """`(day, segment)` of a manifest file name `date=…/<segment>.jsonl[.gz]`: a plain file
    and its gzip twin share one key (rotation keeps identical lines)."""
    match = _FILE_NAME.match(name)
    return (match.group(1), match.group(2)) if match else None


def file_record(file: LogFile, reuse: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint of one file: name, whole lines, head link, bytes of whole lines, and for a
    gzip archive its size and SHA-256 (and a torn tail if there is one).

    Reads without holding a lock (LineSource takes a shared lock only to wait out a write in
    progress at the end). A gzip archive whose digest equals `reuse`'s is not decompressed again.
    """
    if file.compressed:
        archive = _archive_digest(file.path)
        if reuse and reuse.get("archive", {}).get("sha256") == archive["sha256"]:
            return {**reuse, "name": file.name, "archive": archive}
    source = LineSource(file)
    size, last_chunk = 0, b""
    for chunk in source.chunks():
        size += len(chunk)
        last_chunk = chunk
    head = None
    if last_chunk:
        begin = last_chunk.rfind(b"\n", 0, len(last_chunk) - 1) + 1
        parsed = chain.split_line(last_chunk[begin:])
        head = chain.tag(parsed[1]) if parsed else None
    record: dict[str, Any] = {
        "name": source.file.name,
        "lines": source.lines,
        "head": head,
        "size": size,
    }
    if source.file.compressed:
        record["archive"] = _archive_digest(source.file.path)
    if source.torn_line is not None:
        record["torn"] = {"line": source.torn_line, "bytes": source.torn_bytes}
    return record


def _archive_digest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
                size += len(block)
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read: {exc.strerror}") from None
    return {"size": size, "sha256": chain.tag(digest.digest())}


def partition_records(store: AuditStore, day: str) -> list[dict[str, Any]]:
    """The checkpoint records of every file of one partition: what `write_receipt` wants."""
    return [file_record(file) for file in store.files(day)]


# ============================================================================ seal
@dataclass
class SealResult:
    """What `seal()` wrote, and anything it noticed that contradicts the previous seal."""

    manifest: Manifest
    files: int
    lines: int
    new_lines: int
    key_id: str | None
    warnings: list[str] = field(default_factory=list)


def seal(
    store: AuditStore, *, signing_key: Any = None, progress: Progress | None = None
) -> SealResult:
    """Write the next manifest: a checkpoint of every file of every partition, chained to the
    previous manifest and signed when a key is given (a path, a key, or AUDIT_SIGNING_KEY).

    Writes one even when nothing changed, so a missing hour shows as a gap. Warnings (not
    errors: the manifest is written, older ones keep the evidence) name files that shrank or
    vanished since the previous seal without a retention receipt."""
    key = _signing_key_from(signing_key)
    with _manifest_lock(store) as directory:
        # The time is taken before listing: a file that `verify` finds missing from this
        # manifest but older than this time was hidden from the seal, or planted backdated.
        sealed_at = format_utc(store.clock())
        manifests = _since_last_seal(store)
        previous_seal = manifests[0] if manifests and manifests[0].kind == "seal" else None
        known = _latest_records(manifests)
        records = []
        total = 0
        unreadable = []
        days = store.days()
        for done, day in enumerate(days, 1):
            if progress is not None:
                progress(total, done=done - 1, total=len(days))
            for file in store.files(day):
                old = known.get((file.day, file.segment))
                reuse = old if old and file.compressed and old["name"] == file.name else None
                try:
                    record = file_record(file, reuse)
                except IntegrityError as exc:
                    # Left out of this manifest; older checkpoints of it still hold in verify.
                    unreadable.append(f"{file.name}: not sealed: {exc}")
                    continue
                records.append(record)
                total += record["lines"]
        warnings = unreadable + _seal_warnings(manifests, previous_seal, records)
        uncovered = _count_new_lines(known, records)
        body = {
            "kind": "seal",
            "sealedAt": sealed_at,
            "files": records,
            "totals": {"files": len(records), "lines": total},
        }
        manifest = _append_manifest(store, directory, body, key)
    return SealResult(
        manifest,
        len(records),
        total,
        uncovered,
        key_id(key.public_key()) if key else None,
        warnings,
    )


def _since_last_seal(store: AuditStore) -> list[Manifest]:
    """The newest readable seal manifest and the manifests after it (receipts), oldest first:
    all a new seal compares against, without reading a year of hourly manifests."""
    names, _ = _manifest_names(store)
    found: list[Manifest] = []
    for sequence, path in reversed(names):
        manifest = read_manifest(path, sequence)
        found.append(manifest)
        if manifest.kind == "seal" and manifest.error is None:
            break
    return found[::-1]


def _latest_records(manifests: Sequence[Manifest]) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest checkpoint record of each file key over all readable seal manifests."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for manifest in manifests:
        if manifest.body is None or manifest.kind != "seal":
            continue
        for record in _records_of(manifest):
            key = _file_key(record["name"])
            if key:
                latest[key] = record
    return latest


def _records_of(manifest: Manifest) -> Iterator[dict[str, Any]]:
    files = (manifest.body or {}).get("files")
    if isinstance(files, list):
        for record in files:
            if (
                isinstance(record, dict)
                and isinstance(record.get("name"), str)
                and isinstance(record.get("lines"), int)
            ):
                yield record


def _receipt_records(manifest: Manifest) -> Iterator[dict[str, Any]]:
    """The file records of a deletion receipt (a `compress` receipt excuses nothing)."""
    receipt = (manifest.body or {}).get("receipt")
    if (
        isinstance(receipt, dict)
        and receipt.get("action", "delete") == "delete"
        and isinstance(receipt.get("files"), list)
    ):
        for record in receipt["files"]:
            if isinstance(record, dict) and isinstance(record.get("name"), str):
                yield record


def _seal_warnings(
    manifests: Sequence[Manifest], previous: Manifest | None, records: list[dict[str, Any]]
) -> list[str]:
    if previous is None:
        return []
    now = {_file_key(r["name"]): r for r in records}
    receipted = {
        _file_key(r["name"])
        for m in manifests
        if m.sequence > previous.sequence and m.kind == "receipt"
        for r in _receipt_records(m)
    }
    warnings = []
    for old in _records_of(previous):
        key = _file_key(old["name"])
        if key is None or key in receipted:
            continue
        new = now.get(key)
        if new is None:
            warnings.append(
                f"{old['name']}: in manifest #{previous.sequence} but gone,"
                " with no retention receipt"
            )
        elif new["lines"] < old["lines"]:
            warnings.append(
                f"{new['name']}: {new['lines']} lines,"
                f" manifest #{previous.sequence} recorded {old['lines']}"
            )
        elif new["lines"] == old["lines"] and old.get("head") and new.get("head") != old["head"]:
            warnings.append(
                f"{new['name']}: its last line changed since manifest #{previous.sequence}"
            )
    return warnings


def _count_new_lines(
    known: Mapping[tuple[str, str], dict[str, Any]], records: list[dict[str, Any]]
) -> int:
    new = 0
    for record in records:
        old = known.get(_file_key(record["name"]))  # type: ignore[arg-type]
        new += max(0, record["lines"] - (old["lines"] if old else 0))
    return new


# ============================================================================ retention receipts
def write_receipt(
    store: AuditStore,
    day: str,
    files: list[dict[str, Any]],
    reason: str,
    *,
    action: str = "delete",
    signing_key: Any = None,
) -> str:
    """Record in the manifest chain that the files of partition `day` are deleted on purpose
    (`action="delete"`), or only noted (`action="compress"`: no effect on checks, since a gzip
    twin with the same lines already verifies).

    Call it *before* deleting (if it fails, do not delete). `files`: one dict per file, as
    `file_record()` / `partition_records()` return them: `name` (`host.jsonl[.gz]` or
    `date=…/host.jsonl[.gz]`), `lines`, `head` (or `last_link`: the tagged last link), `size`,
    and `sha256` (of the bytes on disk) or `archive: {size, sha256}`. Signed like a seal (a key,
    a path, or AUDIT_SIGNING_KEY).
    Returns the receipt manifest's hash."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise UsageError(f"receipt: day {day!r} is not YYYY-MM-DD")
    if action not in ("delete", "compress"):
        raise UsageError(f"receipt: action {action!r} is not delete or compress")
    key = _signing_key_from(signing_key)
    normalised = [_normalise_receipt_file(day, record) for record in files]
    with _manifest_lock(store) as directory:
        body = {
            "kind": "receipt",
            "sealedAt": format_utc(store.clock()),
            "receipt": {"action": action, "day": day, "reason": str(reason), "files": normalised},
        }
        manifest = _append_manifest(store, directory, body, key)
    return manifest.hash or ""


def _normalise_receipt_file(day: str, record: Mapping[str, Any]) -> dict[str, Any]:
    raw_name = str(record.get("name") or record.get("path") or "")
    base = raw_name.rsplit("/", 1)[-1]
    name = f"{PARTITION_PREFIX}{day}/{base}"
    if _file_key(name) is None:
        raise UsageError(f"receipt: {raw_name!r} is not a log file name of partition {day}")
    lines = record.get("lines")
    if not isinstance(lines, int) or lines < 0:
        raise UsageError(f"receipt: {name}: lines must be a count")
    head = (
        record.get("head")
        or record.get("last_link")
        or record.get("last_hash")
        or record.get("lastHash")
    )
    if isinstance(head, bytes):
        head = chain.tag(head)
    out: dict[str, Any] = {
        "name": name,
        "lines": lines,
        "head": head if isinstance(head, str) else None,
    }
    if isinstance(record.get("size"), int):
        out["size"] = record["size"]
    archive = record.get("archive")
    sha = record.get("sha256") or record.get("archive_sha256") or record.get("archiveSha256")
    if isinstance(sha, str) and not sha.startswith("sha256:"):
        sha = "sha256:" + sha
    if isinstance(archive, dict):
        out["archive"] = archive
    elif isinstance(sha, str) and name.endswith(".gz"):
        out["archive"] = {"sha256": sha}
    elif isinstance(sha, str):
        out["sha256"] = sha  # of the plain file's bytes
    return out


# ============================================================================ verify
@dataclass
class VerifyReport:
    """The outcome of `verify()`. `problems` empty means the store is what was written (within
    what the configuration can prove: see `notes`)."""

    files: int = 0
    entries: int = 0
    bytes: int = 0
    partitions: int = 0
    manifests: int = 0
    checkpoints: int = 0
    uncovered: int = 0
    receipted_files: int = 0
    signed: str = (
        "none"  # "verified" (by --public-key), "embedded", "unsigned", "none" (no manifest)
    )
    key_ids: list[str] = field(default_factory=list)
    latest: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "ok": self.ok,
            "files": self.files,
            "entries": self.entries,
            "bytes": self.bytes,
            "partitions": self.partitions,
            "manifests": self.manifests,
            "checkpoints": self.checkpoints,
            "uncovered": self.uncovered,
            "receiptedFiles": self.receipted_files,
            "signatures": self.signed,
            "keyIds": self.key_ids,
            "latestManifest": self.latest,
            "problems": [
                {"file": p.file, "line": p.line, "kind": p.kind, "detail": p.detail}
                for p in self.problems
            ],
            "notes": self.notes,
        }


@dataclass
class _Checkpoints:
    """What the trusted history says about one file key (since its last retention receipt)."""

    by_line: dict[int, dict[bytes, int]] = field(default_factory=dict)  # lines -> head hex -> seq
    last_listed: int = 0  # sequence of the last manifest listing the key
    name: str = ""
    archives: dict[str, tuple[str, int]] = field(default_factory=dict)  # gz name -> (sha, seq)
    torn: set[tuple[int, int]] = field(default_factory=set)
    receipt_seq: int = 0

    def add(self, record: Mapping[str, Any], sequence: int) -> None:
        self.last_listed = sequence
        self.name = record["name"]
        head = record.get("head")
        hexhead = head[7:].encode() if isinstance(head, str) and _TAGGED.match(head) else b""
        self.by_line.setdefault(record["lines"], {}).setdefault(hexhead, sequence)
        archive = record.get("archive")
        if isinstance(archive, dict) and isinstance(archive.get("sha256"), str):
            self.archives[record["name"]] = (archive["sha256"], sequence)
        torn = record.get("torn")
        if isinstance(torn, dict):
            self.torn.add((torn.get("line"), torn.get("bytes")))  # type: ignore[arg-type]

    def max_lines(self) -> int:
        return max(self.by_line, default=0)


def verify(
    store: AuditStore,
    *,
    first_day: str | None = None,
    last_day: str | None = None,
    public_keys: Sequence[Any] = (),
    anchor: str | None = None,
    max_seal_age_since: str | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check the store: every line's link, every file against every checkpoint, the manifest
    chain and signatures, missing, planted and foreign files. Partitions outside
    [first_day, last_day] are skipped (the manifest chain is always checked whole).

    `public_keys`: trusted Ed25519 public keys; when given, every manifest must be signed by
    one of them. `anchor`: a manifest hash kept off-host that must still be in the chain.
    `max_seal_age_since`: a canonical time; the newest manifest must be at least that recent.
    `progress` hears of the entries checked and the partitions done."""
    verifier = _Verifier(store, first_day, last_day, public_keys, anchor, max_seal_age_since)
    verifier.progress = progress
    return verifier.run()


class _Verifier:
    def __init__(
        self,
        store: AuditStore,
        first_day: str | None,
        last_day: str | None,
        public_keys: Sequence[Any],
        anchor: str | None,
        max_seal_age_since: str | None,
    ) -> None:
        self.store = store
        self.first_day, self.last_day = first_day, last_day
        self.trusted = {key_id(k): k for k in public_keys}
        self.anchor = (
            anchor if anchor is None or anchor.startswith("sha256:") else "sha256:" + anchor
        )
        self.max_age_since = max_seal_age_since
        self.report = VerifyReport()
        self.checkpoints: dict[tuple[str, str], _Checkpoints] = {}
        self.latest_seal: Manifest | None = None
        self._geneses: dict[bytes, str] | None = None
        self.torn_notes: list[str] = []
        self.loaded_up_to = 0
        self.progress: Progress | None = None

    def problem(self, file: str, line: int | None, kind: str, detail: str) -> None:
        self.report.problems.append(Problem(file, line, kind, detail))

    def in_range(self, day: str) -> bool:
        return (self.first_day is None or day >= self.first_day) and (
            self.last_day is None or day <= self.last_day
        )

    def run(self) -> VerifyReport:
        self.check_manifests()
        self.check_files()
        self.add_notes()
        return self.report

    # ------------------------------------------------------------------ the manifest chain
    def check_manifests(self) -> None:
        manifests, foreign = load_manifests(self.store)
        report = self.report
        report.manifests = len(manifests)
        for path in foreign:
            self.problem(
                f"{MANIFEST_DIR}/{path.name}",
                None,
                "stray file",
                "not a manifest; planted or left behind",
            )
        previous: Manifest | None = None
        expected = 1
        first_key: str | None = None
        seen_signed = False
        anchored = False
        seen_seq: set[int] = set()
        for manifest in manifests:
            trusted = True
            if manifest.sequence in seen_seq:
                self.problem(
                    manifest.name,
                    None,
                    "altered manifest",
                    f"a second manifest with sequence {manifest.sequence}",
                )
                trusted = False
            seen_seq.add(manifest.sequence)
            if manifest.sequence > expected:
                missing = (
                    f"#{expected}"
                    if manifest.sequence == expected + 1
                    else f"#{expected}–#{manifest.sequence - 1}"
                )
                self.problem(
                    f"{MANIFEST_DIR}/",
                    None,
                    "deleted manifest",
                    f"manifest {missing} missing before {manifest.path.name}"
                    " (the sequence has a gap)",
                )
            expected = max(expected, manifest.sequence + 1)
            if manifest.body is None or manifest.error:
                self.problem(
                    manifest.name, None, "altered manifest", manifest.error or "unreadable"
                )
                trusted = False
            if manifest.body is not None:
                stated = manifest.body.get("previous")
                if previous is not None and previous.sequence == manifest.sequence - 1:
                    if previous.hash != stated:
                        self.problem(
                            previous.name,
                            None,
                            "altered manifest",
                            f"manifest #{manifest.sequence} chains to {stated},"
                            f" but this one hashes to {previous.hash}",
                        )
                        trusted = False
                    elif previous.sealed_at > manifest.sealed_at:
                        self.problem(
                            manifest.name,
                            None,
                            "reordered manifest",
                            "sealed before the manifest it follows",
                        )
                        trusted = False
                elif manifest.sequence == 1 and stated is not None:
                    self.problem(
                        manifest.name,
                        None,
                        "altered manifest",
                        "the first manifest names a predecessor",
                    )
                    trusted = False
                if self.anchor and manifest.hash == self.anchor:
                    anchored = True
                signed_ok, key = self.check_signature(manifest, first_key, seen_signed)
                if manifest.signature is not None:
                    seen_signed = True
                    first_key = first_key or key
                trusted = trusted and signed_ok
                self.take_checkpoints(manifest, trusted)
            previous = manifest
        if manifests:
            last = manifests[-1]
            self.loaded_up_to = last.sequence
            report.latest = {
                "sequence": last.sequence,
                "hash": last.hash,
                "sealedAt": last.sealed_at,
                "kind": last.kind,
                "signed": last.signature is not None,
                "keyId": (last.signature or {}).get("keyId"),
            }
            report.signed = (
                "unsigned" if not seen_signed else "verified" if self.trusted else "embedded"
            )
        elif self.trusted:
            self.problem(
                f"{MANIFEST_DIR}/",
                None,
                "deleted manifest",
                "no manifest at all, though --public-key expects signed ones"
                " (all deleted, or the store was never sealed)",
            )
        if self.anchor and not anchored:
            self.problem(
                f"{MANIFEST_DIR}/",
                None,
                "anchor not found",
                f"no manifest hashes to {self.anchor}:"
                " manifests were deleted or the chain was rebuilt",
            )
        if self.max_age_since is not None:
            newest = manifests[-1].sealed_at if manifests else None
            if newest is None or newest < self.max_age_since:
                self.problem(
                    f"{MANIFEST_DIR}/",
                    None,
                    "stale seal",
                    f"the newest manifest is from {newest or 'never'};"
                    f" expected one since {self.max_age_since}"
                    " (seal not running, or the newest manifests were deleted)",
                )

    def check_signature(
        self, manifest: Manifest, first_key: str | None, seen_signed: bool
    ) -> tuple[bool, str | None]:
        """Whether the manifest's signature is acceptable (problems recorded), and its key id."""
        signature = manifest.signature
        if signature is None:
            if self.trusted:
                self.problem(
                    manifest.name,
                    None,
                    "unsigned manifest",
                    "not signed, but --public-key was given",
                )
                return False, None
            if seen_signed:
                self.problem(
                    manifest.name,
                    None,
                    "unsigned manifest",
                    "not signed, though earlier manifests were"
                    " (a key-less writer may have forged it)",
                )
                return False, None
            return True, None
        stated = signature.get("keyId")
        if self.trusted:
            key = self.trusted.get(str(stated))
            if key is None:
                self.problem(
                    manifest.name,
                    None,
                    "wrong signing key",
                    f"signed by {stated}, not by the key(s) given: {', '.join(self.trusted)}",
                )
                return False, stated
        else:
            key = _embedded_public_key(signature)
            if key is None or key_id(key) != stated:
                self.problem(
                    manifest.name, None, "bad signature", "the embedded public key is malformed"
                )
                return False, stated
            if first_key is not None and stated != first_key:
                self.problem(
                    manifest.name,
                    None,
                    "wrong signing key",
                    f"signed by {stated}, earlier manifests by {first_key}"
                    " (pass --public-key for each key you trust)",
                )
                return False, stated
        if not _signature_valid(manifest.body_bytes, signature, key):
            self.problem(
                manifest.name,
                None,
                "bad signature",
                f"the signature does not match the content (key {stated})",
            )
            return False, stated
        if stated not in self.report.key_ids:
            self.report.key_ids.append(str(stated))
        return True, stated

    def take_checkpoints(self, manifest: Manifest, trusted: bool) -> None:
        """Collect checkpoints from every readable manifest (even a damaged one: more checks),
        but only a trusted receipt may excuse a deletion."""
        if manifest.kind == "seal":
            if manifest.error is None:
                self.latest_seal = manifest
            for record in _records_of(manifest):
                key = _file_key(record["name"])
                if key is not None:
                    self.checkpoints.setdefault(key, _Checkpoints()).add(record, manifest.sequence)
        elif manifest.kind == "receipt" and trusted:
            for record in _receipt_records(manifest):
                key = _file_key(record["name"])
                if key is None:
                    continue
                known = self.checkpoints.get(key)
                if known is not None and known.by_line and self.in_range(key[0]):
                    self.check_receipt(manifest, record, known)
                fresh = _Checkpoints(receipt_seq=manifest.sequence, name=record["name"])
                self.checkpoints[key] = fresh

    def check_receipt(
        self, manifest: Manifest, record: Mapping[str, Any], known: _Checkpoints
    ) -> None:
        top = known.max_lines()
        lines = record.get("lines", 0)
        heads = known.by_line.get(top, {})
        head = record.get("head")
        hexhead = head[7:].encode() if isinstance(head, str) else b""
        if lines < top or (lines == top and hexhead and heads and hexhead not in heads):
            self.problem(
                record["name"],
                None,
                "receipt mismatch",
                f"receipt {manifest.name} records {lines} lines,"
                f" but manifest #{min(heads.values(), default=0)}"
                f" checkpointed {top}: the file was cut or changed before its deletion",
            )

    # ------------------------------------------------------------------ the files
    def check_files(self) -> None:
        report = self.report
        days = self.store.days(self.first_day, self.last_day)
        on_disk = set(days)
        seen: set[tuple[str, str]] = set()
        for done, day in enumerate(days):
            if self.progress is not None:
                self.progress(report.entries, done=done, total=len(days))
            report.partitions += 1
            try:
                strays = self.store.stray_files(day)
            except OSError:
                strays = []
            for path in strays:
                self.problem(
                    f"{PARTITION_PREFIX}{day}/{path.name}",
                    None,
                    "stray file",
                    "not a log file of this store (planted or foreign)",
                )
            for file in self.store.files(day):
                seen.add((file.day, file.segment))
                self.check_file(file)
        missing_by_day: dict[str, list[_Checkpoints]] = {}
        late: set[tuple[str, str]] | None = None
        for key, known in self.checkpoints.items():
            if key in seen or not self.in_range(key[0]):
                continue
            if known.last_listed == 0:  # only a receipt since: deleted as planned
                report.receipted_files += 1
                continue
            if late is None:
                late = self.late_receipts()
            if key in late:  # retention deleted it while we were reading
                report.receipted_files += 1
                continue
            missing_by_day.setdefault(key[0], []).append(known)
        for day, gone in sorted(missing_by_day.items()):
            if day not in on_disk:
                names = ", ".join(sorted(g.name.rsplit("/", 1)[-1] for g in gone))
                self.problem(
                    f"{PARTITION_PREFIX}{day}",
                    None,
                    "deleted partition",
                    f"the partition is gone ({names};"
                    f" last in manifest #{max(g.last_listed for g in gone)})"
                    " and no retention receipt covers it",
                )
            else:
                for known in sorted(gone, key=lambda g: g.name):
                    self.problem(
                        known.name,
                        None,
                        "deleted file",
                        f"in manifest #{known.last_listed} with {known.max_lines()} lines,"
                        " now gone, no retention receipt",
                    )

    def late_receipts(self) -> set[tuple[str, str]]:
        """File keys covered by (acceptably signed) receipts written since verify started."""
        keys: set[tuple[str, str]] = set()
        names, _ = _manifest_names(self.store)
        for sequence, path in names:
            if sequence <= self.loaded_up_to:
                continue
            manifest = read_manifest(path, sequence)
            if manifest.body is None or manifest.error or manifest.kind != "receipt":
                continue
            if self.trusted:
                signature = manifest.signature or {}
                key = self.trusted.get(str(signature.get("keyId")))
                if key is None or not _signature_valid(manifest.body_bytes, signature, key):
                    continue
            keys.update(k for r in _receipt_records(manifest) if (k := _file_key(r["name"])))
        return keys

    def geneses(self) -> dict[bytes, str]:
        """Genesis link of every file name the store or its manifests know: a file whose first
        line chains from another name's genesis was copied or renamed from there."""
        if self._geneses is None:
            names: set[tuple[str, str]] = set(self.checkpoints)
            for day in self.store.days():
                names.update((f.day, f.segment) for f in self.store.files(day))
            self._geneses = {
                chain.genesis(PARTITION_PREFIX + day, segment): f"{PARTITION_PREFIX}{day}/{segment}"
                for day, segment in names
            }
        return self._geneses

    def check_file(self, file: LogFile) -> None:
        report = self.report
        known = self.checkpoints.get((file.day, file.segment))
        scan = _FileScan(file, known, self.geneses)
        try:
            scan.run()
        except IntegrityError as exc:
            self.problem(file.name, None, "unreadable file", str(exc))
            return
        name = scan.source.file.name if scan.source else file.name
        report.files += 1
        report.entries += scan.lines
        report.bytes += scan.bytes
        report.problems.extend(scan.problems)
        if scan.sealed_torn:
            self.torn_notes.append(scan.sealed_torn)
        if known is None or not known.by_line:
            report.uncovered += scan.lines
            if known is None:  # a receipted name that reappears is not "unknown"
                self.check_planted(file, name, scan.lines)
            return
        report.checkpoints += sum(len(heads) for heads in known.by_line.values())
        report.uncovered += max(0, scan.lines - known.max_lines())
        current = scan.source.file if scan.source else file
        if current.compressed:
            recorded = known.archives.get(current.name)
            if recorded is not None:
                actual = _archive_digest(current.path)["sha256"]
                if actual != recorded[0]:
                    self.problem(
                        current.name,
                        None,
                        "altered archive",
                        f"SHA-256 {actual}, manifest #{recorded[1]} recorded {recorded[0]}",
                    )

    def check_planted(self, file: LogFile, name: str, lines: int) -> None:
        """A file no manifest knows is new since the latest seal, or planted: planted when it is
        older than that seal (the seal listed every file that existed when it ran)."""
        seal = self.latest_seal
        if seal is None or lines == 0:
            return
        try:
            info = os.stat(
                file.path if file.path.exists() else file.path.with_name(file.path.name + ".gz")
            )
        except OSError:
            return
        # File times come from a coarse kernel clock (a few ms behind) and, on a shared volume,
        # from another host: a file created just after the seal began must not look older.
        sealed = parse_utc(seal.sealed_at).timestamp() - _CLOCK_SLACK
        if min(info.st_mtime, info.st_ctime) < sealed:
            when = format_utc(
                datetime.fromtimestamp(
                    min(info.st_mtime, info.st_ctime), parse_utc(seal.sealed_at).tzinfo
                )
            )
            self.problem(
                name,
                None,
                "planted file",
                f"no manifest lists it, yet it dates from {when}, before manifest #{seal.sequence}"
                f" ({seal.sealed_at}) that listed every file then present",
            )

    def add_notes(self) -> None:
        report = self.report
        if report.manifests == 0:
            report.notes.append(
                "The store has never been sealed: each file's chain was checked, but nothing shows"
                " whether lines were cut from the end of a file or whole files deleted. Run"
                " `audit seal` hourly from cron."
            )
        elif report.signed == "unsigned":
            report.notes.append(
                "Manifests are unsigned. Their hash chain shows an edited, deleted or reordered"
                " manifest, and a sealed file that was cut, edited or deleted. It cannot stop"
                " someone who can write the log directory from rewriting files and re-creating"
                " the whole manifest chain, or deleting the newest manifests: ship the hash"
                " `audit seal` prints off-host (check it with --anchor), or sign with"
                " `audit keys generate` and keep the private key away from the writers."
            )
        elif report.signed == "embedded":
            report.notes.append(
                "Signatures were checked against the public key inside the manifests"
                f" ({', '.join(report.key_ids)}): consistent, but that does not show who signed."
                " Pass --public-key with your key."
            )
        if self.torn_notes:
            report.notes.append(
                "Torn final lines left by a crash, already present when the store was sealed"
                f" (excluded from queries, not entries): {', '.join(self.torn_notes)}"
            )
        if report.latest and report.uncovered:
            report.notes.append(
                f"{report.uncovered} {'entry is' if report.uncovered == 1 else 'entries are'}"
                " newer than the latest seal"
                f" (#{report.latest['sequence']}, {report.latest['sealedAt']}):"
                " they verify by their chains only until the next seal."
            )


class _FileScan:
    """One pass over one file: links, ids, shape, and where checkpointed heads sit."""

    def __init__(
        self, file: LogFile, known: _Checkpoints | None, geneses: Callable[[], dict[bytes, str]]
    ) -> None:
        self.file = file
        self.known = known
        self.geneses = geneses
        self.source: LineSource | None = None
        self.lines = 0
        self.bytes = 0
        self.problems: list[Problem] = []
        self.suppressed = 0
        self.unexplained: list[tuple[int, bytes, bytes | None]] = []
        self.flagged: set[int] = set()
        self.head_pos: dict[bytes, int] = {}
        self.at_line: dict[int, bytes] = {}
        self.moved_from: str | None = None
        self.sealed_torn: str | None = None
        self.searched = 0

    def problem(self, line: int | None, kind: str, detail: str, name: str | None = None) -> None:
        if len(self.problems) >= _MAX_PROBLEMS_PER_FILE:
            self.suppressed += 1
            return
        self.problems.append(Problem(name or self.file.name, line, kind, detail))

    def run(self) -> None:
        file = self.file
        source = self.source = LineSource(file)
        sha = hashlib.sha256
        head_bytes, created_day = chain.SUFFIX_HEAD, _CREATED_DAY
        hex_start, hex_end, tail = _HEX_START, _HEX_END, _TAIL
        genesis = prev = chain.genesis(file.partition, file.segment)
        day = file.day.encode()
        by_line = self.known.by_line if self.known else {}
        cp_heads = {h for heads in by_line.values() for h in heads if h}
        ids: dict[int, int] = {}
        ring: deque[tuple[int, bytes | None, bytes | None, bool]] = deque(maxlen=_WINDOW)
        incident: list[tuple[int, bytes | None, bytes | None, bool]] | None = None
        last_bad = 0
        misplaced = 0
        after_malformed = False
        n = 0
        for chunk in source.chunks():
            self.bytes += len(chunk)
            lines = chunk.split(b"\n")
            lines.pop()
            for line in lines:
                n += 1
                if (
                    line[-tail:hex_start] == head_bytes
                    and len(line) > _MIN_LINE
                    and line.startswith(b'{"id":"')
                    and line.endswith(b'"}')
                ):
                    digest = sha(prev + line[:-tail] + b"}").digest()
                    hexd = line[hex_start:hex_end]
                    ok = digest.hex().encode() == hexd
                    if not ok:
                        if _HEX64.match(hexd) is None:
                            self.malformed(n, "its chain link is not a SHA-256 in hex")
                            after_malformed = True
                            record = (n, None, None, False)
                            ring.append(record)
                            if incident is not None:
                                incident.append(record)
                            continue
                        digest = bytes.fromhex(hexd.decode())
                        if after_malformed:
                            ok = True  # explained by the malformed line just before
                        else:
                            last_bad = n
                    prev = digest
                    after_malformed = False
                    ident = hash(line[7 : line.find(b'"', 7)])
                    earlier = ids.get(ident)
                    if earlier is None:
                        ids[ident] = n
                    else:
                        self.flagged.add(n)
                        self.problem(n, "duplicated line", f"its id is already at line {earlier}")
                    if line[created_day : created_day + 10] != day:
                        misplaced += 1
                        if misplaced == 1:
                            self.problem(
                                n, "misplaced entry", f"createdAt is not in {file.partition}"
                            )
                    if cp_heads and hexd in cp_heads and hexd not in self.head_pos:
                        self.head_pos[hexd] = n
                    if n in by_line:
                        self.at_line[n] = hexd
                    record = (n, line, digest, ok)
                else:
                    self.malformed(n, "not a stored entry (foreign or corrupted bytes)")
                    after_malformed = True
                    record = (n, None, None, False)
                if incident is None:
                    if not record[3] and record[1] is not None:
                        incident = [*ring, record]
                else:
                    incident.append(record)
                    if n - last_bad >= _WINDOW or len(incident) >= _MAX_INCIDENT:
                        self.analyse(incident, genesis)
                        incident = None
                ring.append(record)
        if incident is not None:
            self.analyse(incident, genesis)
        self.lines = n
        if misplaced > 1:
            self.problem(
                None,
                "misplaced entry",
                f"{misplaced} entries in all have a createdAt outside {file.partition}",
            )
        self.classify_unexplained(by_line)
        self.check_checkpoints(by_line)
        self.check_tail()
        if self.suppressed:
            self.problems.append(
                Problem(
                    self.file.name,
                    None,
                    "more problems",
                    f"{self.suppressed} further problems in this file not listed",
                )
            )

    def malformed(self, n: int, detail: str) -> None:
        self.flagged.add(n)
        self.problem(n, "malformed line", detail)

    def analyse(
        self, records: list[tuple[int, bytes | None, bytes | None, bool]], genesis: bytes
    ) -> None:
        """Explain the chain breaks of one window: where does each broken line's real
        predecessor sit? After a later line: reordered. Lines skipped over that nothing chains
        from: inserted. Nowhere: edited, or its predecessor deleted (decided by checkpoints)."""
        sha = hashlib.sha256
        candidates = [(0, genesis)] if records[0][0] == 1 else []
        candidates += [(r[0], r[2]) for r in records if r[2] is not None]
        bad = [r for r in records if not r[3] and r[1] is not None and r[0] not in self.flagged]
        # A link edited on an intact entry: the entry hashes right from its predecessor, and
        # the next line chains from that computed link, not from the stored one.
        stored = dict(candidates)
        by_number = {r[0]: r for r in records}
        computed: dict[int, bytes] = {}
        explained: set[int] = set()
        for n, line, _, _ in bad[:_MAX_BAD_SEARCH]:
            before = stored.get(n - 1)
            if before is None or line is None:
                continue
            computed[n] = link = sha(before + line[:-_TAIL] + b"}").digest()
            after = by_number.get(n + 1)
            if (
                after
                and after[1] is not None
                and not after[3]
                and sha(link + after[1][:-_TAIL] + b"}").digest() == after[2]
            ):
                self.flagged.add(n)
                explained.add(n + 1)
                self.problem(
                    n, "altered link", "the entry is intact but its _chain value was changed"
                )
        bad = [r for r in bad if r[0] not in self.flagged and r[0] not in explained]
        pred: dict[int, int] = {}
        for index, (n, line, digest, _) in enumerate(bad):
            assert line is not None
            if index >= _MAX_BAD_SEARCH or self.searched >= _MAX_SEARCHES_PER_FILE:
                break
            self.searched += 1
            content = line[:-_TAIL] + b"}"
            for m, candidate in candidates:
                if m != n and m != n - 1 and sha(candidate + content).digest() == digest:
                    pred[n] = m
                    break
        is_pred = {r[0] - 1 for r in records if r[3]} | set(pred.values())
        reordered = {n for n, m in pred.items() if m > n}
        for n, m in sorted(pred.items()):
            if m > n:
                self.flagged.add(n)
                self.problem(n, "reordered line", f"it was written after line {m}")
            elif m < n - 1:
                for x in range(m + 1, n):
                    if x in self.flagged or x in reordered or x in is_pred:
                        continue
                    self.flagged.add(x)
                    self.problem(
                        x,
                        "inserted line",
                        f"not part of the chain (line {n} follows line {m})"
                        if m
                        else f"not part of the chain (line {n} is the file's real first line)",
                    )
        for n, line, _, _ in bad:
            if n in pred or n in self.flagged:
                continue
            if len(self.unexplained) < _MAX_PROBLEMS_PER_FILE:
                self.unexplained.append((n, line or b"", computed.get(n)))
            else:  # a file broken throughout: name the rest plainly, keep no lines in memory
                self.problem(n, "chain break", f"does not follow line {n - 1}")

    def classify_unexplained(self, by_line: Mapping[int, Mapping[bytes, int]]) -> None:
        """A broken line whose predecessor is nowhere near: name it with the help of the
        checkpoints after it (shifted head: lines deleted; same place: the entry was edited)."""
        for n, line, computed in self.unexplained:
            if n in self.flagged:
                continue
            if computed is not None and computed.hex().encode() in by_line.get(n, {}):
                self.problem(
                    n, "altered link", "the entry is intact but its _chain value was changed"
                )
                continue
            if n == 1:
                parsed = chain.split_line(line + b"\n")
                if parsed is not None:
                    for origin, name in self.geneses().items():
                        if chain.link(origin, parsed[0]) == parsed[1]:
                            self.moved_from = name
                            self.problem(
                                1,
                                "moved file",
                                f"its chain starts at {name}: copied or renamed from there",
                            )
                            break
                    if self.moved_from:
                        continue
            shift = None
            for lines in sorted(by_line):
                if lines < n:
                    continue
                positions = [self.head_pos[h] for h in by_line[lines] if h in self.head_pos]
                if positions:
                    shift = positions[0] - lines
                    break
            try:
                orjson.loads(line[:-_TAIL] + b"}")
                parses = True
            except orjson.JSONDecodeError:
                parses = False
            if not parses or shift == 0:
                self.problem(n, "altered entry", "the entry does not match its chain link (edited)")
            elif shift is not None and shift < 0:
                self.problem(n, "deleted line", f"{-shift} line(s) missing before this line")
            else:
                self.problem(
                    n,
                    "chain break",
                    f"does not follow line {n - 1}:"
                    " this entry was edited, or lines before it deleted",
                )

    def check_checkpoints(self, by_line: Mapping[int, Mapping[bytes, int]]) -> None:
        """Every checkpoint ever made of this file must still hold: the file has at least that
        many lines, and the link at that line is the checkpointed head."""
        if not by_line:
            return
        # A head found at another line is explained by the line problems already named.
        problem_lines = {p.line for p in self.problems if p.line is not None}
        chain_trouble = bool(problem_lines)
        truncated: tuple[int, int] | None = None
        for lines in sorted(by_line):
            heads = by_line[lines]
            seq = min(heads.values())
            if lines > self.lines:
                shifted = any(h in self.head_pos for h in heads)
                if not (shifted and chain_trouble):
                    truncated = (lines, seq)
                continue
            if lines == 0:
                continue
            stored = self.at_line.get(lines)
            real_heads = {h for h in heads if h}
            if real_heads and stored not in real_heads and lines not in problem_lines:
                shifted = any(h in self.head_pos for h in real_heads)
                if shifted and chain_trouble:
                    continue
                self.problem(
                    lines,
                    "rewritten file",
                    f"line {lines} is not the line manifest #{seq} checkpointed:"
                    " the file was rewritten",
                )
                break
        if truncated is not None:
            self.problem(
                self.lines + 1,
                "truncated file",
                f"{self.lines} lines, but manifest #{truncated[1]} checkpointed {truncated[0]}",
            )

    def check_tail(self) -> None:
        source = self.source
        assert source is not None
        name = source.file.name
        if source.torn_line is not None:
            known = self.known.torn if self.known else set()
            if (source.torn_line, source.torn_bytes) in known:
                self.sealed_torn = f"{name}:{source.torn_line}"
            else:
                self.problem(
                    source.torn_line,
                    "torn line",
                    f"{source.torn_bytes} bytes with no newline at the end"
                    " (a crash mid-write, or appended bytes)",
                    name,
                )
        if source.trailing_garbage:
            self.problem(
                None,
                "trailing data",
                f"{source.trailing_garbage} bytes after the gzip member (appended to the archive)",
                name,
            )


def iter_problem_lines(problems: Iterable[Problem]) -> Iterator[str]:
    """One `file:line: kind: detail` line per problem (for plain-text output)."""
    for problem in problems:
        yield str(problem)
