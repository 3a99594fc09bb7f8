"""Manifests on disk: canonical bodies, hashes, names, reading, the chained append, and the
per-file facts (line count, head, size, archive digest) a manifest records."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from auditcli import chain
from auditcli.errors import IntegrityError, UsageError
from auditcli.safeio import (
    MANIFEST_MAX,
    fsync_dir,
    kind_of,
    lock_within,
    open_dir,
    read_bounded,
    why,
)
from auditcli.store import AuditStore, LineSource, LogFile, _open_in_partition
from auditcli.timeparse import parse_utc

from .constants import (
    _FILE_NAME,
    _MANIFEST_NAME,
    _WRITER,
    FORMAT,
    FORMATS,
    KINDS,
    LEGACY_FORMAT,
    MANIFEST_DIR,
)
from .keys import sign

#: Seconds a seal or receipt waits for another one to finish before it gives up.
LOCK_PATIENCE = 60.0


def canonical(body: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a manifest body: compact JSON with sorted keys (hashed, signed)."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def body_hash(body_bytes: bytes) -> str:
    """The tagged SHA-256 of a canonical manifest body: what the next manifest chains to."""
    return chain.tag(hashlib.sha256(body_bytes).digest())


def manifest_dir(store: AuditStore) -> Path:
    """`LOGDIR/_manifests` (the underscore hides it from query engines)."""
    return store.root / MANIFEST_DIR


def chain_dir(store: AuditStore, writer: str | None) -> Path:
    """The directory of one chain: `_manifests/<writer>`, or `_manifests` for the legacy chain
    (`writer` None) that stores written before per-writer chains have. UsageError when
    `writer` is not a writer id (it becomes a path component)."""
    if writer is None:
        return manifest_dir(store)
    if not _WRITER.fullmatch(writer):
        raise UsageError(
            f"writer {writer!r}: not a writer id (letters, digits, '.' and '-', at most 63)"
        )
    return manifest_dir(store) / writer


def file_writer(segment: str) -> str:
    """The writer a file segment belongs to: `web1+2` -> `web1`."""
    return segment.split("+", 1)[0]


@dataclass
class Manifest:
    """One manifest file as read from disk; `body` is None when it could not be parsed.
    `writer` is the chain it was read from (None: the legacy flat chain)."""

    path: Path
    sequence: int
    body: dict[str, Any] | None = None
    hash: str | None = None
    body_bytes: bytes = b""
    signature: dict[str, Any] | None = None
    error: str | None = None
    writer: str | None = None
    #: Values a reader derives from the body once (e.g. its Merkle tree head: tree.head_of).
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        """`_manifests/[<writer>/]<file name>`: how problems name it."""
        if self.writer is None:
            return f"{MANIFEST_DIR}/{self.path.name}"
        return f"{MANIFEST_DIR}/{self.writer}/{self.path.name}"

    @property
    def kind(self) -> str:
        """`seal` or `receipt`."""
        return str((self.body or {}).get("kind", ""))

    @property
    def sealed_at(self) -> str:
        """The canonical time the manifest was made."""
        return str((self.body or {}).get("sealedAt", ""))

    @property
    def label(self) -> str:
        """How messages name it: `#5` in a writer's chain, `#5 (legacy chain)` otherwise."""
        return f"#{self.sequence}" if self.writer else f"#{self.sequence} (legacy chain)"


def chain_writers(store: AuditStore) -> tuple[list[str], list[Path]]:
    """The writers that have a chain directory under `_manifests/`, and foreign directories."""
    directory = manifest_dir(store)
    try:
        entries = _scan(store, [MANIFEST_DIR])
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise IntegrityError(f"{directory}: cannot list: {why(exc)}") from None
    writers: list[str] = []
    foreign: list[str] = []
    for name, is_dir in entries:
        if name.startswith(".") or not is_dir:
            continue  # a symlink or file here is named a stray by the legacy chain's listing
        (writers if _WRITER.fullmatch(name) else foreign).append(name)
    return sorted(writers), sorted(directory / name for name in foreign)


def _scan(store: AuditStore, parts: list[str]) -> list[tuple[str, bool]]:
    """`(name, is a directory)` of each entry of `store.root/parts…`, no component followed if
    it is a symlink (OSError ELOOP / ENOTDIR; FileNotFoundError when missing)."""
    fd = open_dir(store.root, parts)
    try:
        with os.scandir(fd) as entries:
            return [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    finally:
        os.close(fd)


def manifest_names(
    store: AuditStore, writer: str | None = None
) -> tuple[list[tuple[int, Path]], list[Path]]:
    """`(sequence, path)` of every manifest file of one chain (`writer`, or None: the legacy
    chain), in order, and the other files in its directory (writer directories aside)."""
    directory = chain_dir(store, writer)
    found, foreign = manifest_entries(store, writer)
    return [(sequence, directory / name) for sequence, name in found], [
        directory / name for name in foreign
    ]


def manifest_entries(
    store: AuditStore, writer: str | None = None
) -> tuple[list[tuple[int, str]], list[str]]:
    """`manifest_names` with file names instead of paths (a Path costs more to make than the
    listing: verify lists every chain before it checks any)."""
    directory = chain_dir(store, writer)
    try:
        entries = _scan(store, [MANIFEST_DIR] if writer is None else [MANIFEST_DIR, writer])
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise IntegrityError(f"{directory}: cannot list: {why(exc)}") from None
    found, foreign = [], []
    for name, is_dir in entries:
        if name.startswith("."):  # the lock file and temp files of a seal in progress
            continue
        match = _MANIFEST_NAME.fullmatch(name)
        if match and (writer is not None or match.group(3) is None):
            found.append((int(match.group(1)), name))
        elif writer is None and is_dir:
            continue  # a writer's chain (or a foreign directory: chain_writers names it)
        else:
            foreign.append(name)
    found.sort()
    return found, sorted(foreign)


def read_manifest(path: Path, sequence: int, writer: str | None = None) -> Manifest:
    """Parse one manifest file of chain `writer` (None: legacy); problems go to `error` (never
    raises for bad content)."""
    manifest = Manifest(path, sequence, writer=writer)
    try:
        raw = read_manifest_bytes(path)
    except IntegrityError as exc:
        manifest.error = str(exc).removeprefix(f"{path}: ")
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
    expected = (LEGACY_FORMAT,) if writer is None else FORMATS
    if body.get("format") not in expected or body.get("kind") not in KINDS:
        problems.append(
            f"unknown format or kind (this chain holds {' or '.join(expected)} seals and receipts)"
        )
    if writer is not None:
        if body.get("writer") != writer:
            problems.append(
                f"its body names writer {body.get('writer')!r}, its directory {writer!r}"
                " (copied from another host's chain)"
            )
        if (body.get("kind") == "receipt") != path.name.endswith(".receipt.json"):
            problems.append("its file name and its kind disagree")
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


def read_manifest_bytes(path: Path) -> bytes:
    """The bytes of the manifest file `path` (in a directory the caller checked), bounded:
    never through a symlink, never blocking on a FIFO, never over MANIFEST_MAX bytes; any
    other kind or a vanished file raises IntegrityError naming it. The one reader of
    manifest files, whatever directory they live in."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read: {why(exc)}") from None
    try:
        return read_bounded(fd, MANIFEST_MAX, path)
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read: {why(exc)}") from None
    finally:
        os.close(fd)


def _valid_time(text: str) -> bool:
    try:
        parse_utc(text)
    except ValueError:
        return False
    return True


def iter_manifests(store: AuditStore, writer: str | None = None) -> Iterator[Manifest]:
    """The manifests of one chain in sequence order, read one at a time (streaming)."""
    names, _ = manifest_names(store, writer)
    for sequence, path in names:
        yield read_manifest(path, sequence, writer)


def load_manifests(
    store: AuditStore, writer: str | None = None
) -> tuple[list[Manifest], list[Path]]:
    """Every manifest of one chain in sequence order, and foreign files in its directory."""
    names, foreign = manifest_names(store, writer)
    return [read_manifest(path, sequence, writer) for sequence, path in names], foreign


def latest_manifest(store: AuditStore, writer: str | None) -> Manifest | None:
    """The newest manifest of one chain (None when the chain is empty)."""
    names, _ = manifest_names(store, writer)
    if not names:
        return None
    sequence, path = names[-1]
    return read_manifest(path, sequence, writer)


def latest_manifest_hash(store: AuditStore, writer: str | None = None) -> str | None:
    """The hash of the newest manifest of `writer`'s chain (default: the store's writer id),
    what `audit seal` prints to ship off-host; None when the chain is empty."""
    manifest = latest_manifest(store, writer or store.writer_id)
    if manifest is None:
        return None
    if manifest.body is None:
        raise IntegrityError(f"{manifest.name}: {manifest.error}")
    return manifest.hash


def receipt_names(store: AuditStore) -> list[tuple[str, int, Path]]:
    """`(writer, sequence, path)` of every receipt in every writer's chain: their file names
    say so, so they are found without reading the seals."""
    found = []
    for writer in chain_writers(store)[0]:
        names, _ = manifest_names(store, writer)
        found += [(writer, seq, path) for seq, path in names if path.name.endswith(".receipt.json")]
    return found


class manifest_lock:
    """An exclusive lock on the store's manifests, `_manifests/.lock`: one seal or receipt at a
    time, whatever chain it appends to. Store-wide, not per chain: a receipt and the deletion it
    covers run under it as one step (receipts.py), so no seal of any writer's chain runs between
    them; it is also the lock releases before per-writer chains take.

    Writers never take it, so sealing never blocks `audit record`."""

    def __init__(self, store: AuditStore) -> None:
        self.directory = manifest_dir(store)
        self.store = store
        self.fd = -1

    def __enter__(self) -> Path:
        self.store.ensure_root()
        _make_dir(self.directory)
        try:
            self.fd = os.open(
                self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
            )
        except OSError as exc:
            raise IntegrityError(f"{self.directory}/.lock: {why(exc)}") from None
        if not lock_within(self.fd, fcntl.LOCK_EX, LOCK_PATIENCE):
            os.close(self.fd)
            raise IntegrityError(
                f"{self.directory}/.lock: held by another process for {LOCK_PATIENCE:g} s "
                "(a seal or receipt takes seconds); not sealing"
            )
        return self.directory

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


def _make_dir(directory: Path) -> None:
    """Create `directory` (mode 0700) unless it is there; IntegrityError when a symlink or a
    file is in its place."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        if not directory.is_dir() or directory.is_symlink():
            raise IntegrityError(f"{directory}: exists and is not a directory") from None
    except OSError as exc:
        raise IntegrityError(f"{directory}: cannot create: {why(exc)}") from None


def append_manifest(
    store: AuditStore, writer: str, body: dict[str, Any], signing_key: Any
) -> Manifest:
    """Give `body` its place in `writer`'s chain (sequence, previous, format), sign it, write
    it as `NNNNNNNNN-<time>[.receipt].json`. Call it holding `manifest_lock(store)`."""
    directory = chain_dir(store, writer)
    _make_dir(directory)
    names, _ = manifest_names(store, writer)
    previous: str | None = None
    sequence = 1
    if names:
        last_sequence, last_path = names[-1]
        last = read_manifest(last_path, last_sequence, writer)
        if last.body is None or last.error:
            # Chaining to a damaged manifest would hide the damage behind a fresh, valid link.
            raise IntegrityError(
                f"{last.name}: {last.error}; not sealing on top of it (run `audit verify`)"
            )
        previous, sequence = last.hash, last_sequence + 1
    body = {
        "format": FORMAT,
        "writer": writer,
        "sequence": sequence,
        "previous": previous,
        **body,
    }
    body_bytes = canonical(body)
    digest = body_hash(body_bytes)
    signature = sign(body_bytes, signing_key) if signing_key is not None else None
    envelope = {"hash": digest, "manifest": body, "signature": signature}
    stamp = body["sealedAt"][:19].replace(":", "-") + "Z"
    suffix = ".receipt.json" if body["kind"] == "receipt" else ".json"
    path = directory / f"{sequence:09d}-{stamp}{suffix}"
    tmp = directory / f".{path.name}.tmp"
    data = orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS) + b"\n"
    # A temp file left by a seal or receipt that was killed: the manifest lock is held, so no
    # one else is writing one.
    for stale in directory.glob(".*.json.tmp"):
        stale.unlink(missing_ok=True)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # never replaces an existing manifest
        os.unlink(tmp)
        fsync_dir(directory)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise IntegrityError(f"{path}: cannot write the manifest: {exc.strerror}") from None
    return Manifest(path, sequence, body, digest, body_bytes, signature, writer=writer)


@functools.lru_cache(maxsize=4096)
def file_key(name: str) -> tuple[str, str] | None:
    """`(day, segment)` of a manifest file name `date=…/<segment>.jsonl[.gz]`: a plain file
    and its gzip twin share one key (rotation keeps identical lines)."""
    # Cached: verify asks about each name of a writer's chain five times or more (its chain,
    # its files, its tree heads), a few microseconds each; a writer's names fit (about 1 MB).
    match = _FILE_NAME.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def file_record(
    file: LogFile,
    reuse: Mapping[str, Any] | None = None,
    on_lines: Callable[[bytes, int], None] | None = None,
) -> dict[str, Any]:
    """The checkpoint of one file: name, whole lines, head link, bytes of whole lines, and for a
    gzip archive its size and SHA-256 (and a torn tail if there is one).

    Reads without holding a lock (LineSource takes a shared lock only to wait out a write in
    progress at the end). A gzip archive whose digest equals `reuse`'s is not decompressed again.
    `on_lines` is called with each chunk of whole lines the record counts and the number of lines
    before it: the seal hashes its Merkle leaves in this same read.
    """
    if file.compressed:
        archive = archive_digest(file.path)
        if reuse and reuse.get("archive", {}).get("sha256") == archive["sha256"]:
            return {**reuse, "name": file.name, "archive": archive}
    source = LineSource(file)
    size, last_chunk, before = 0, b"", 0
    for chunk in source.chunks():
        if on_lines is not None:
            on_lines(chunk, before)
            before = source.lines
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
        record["archive"] = archive_digest(source.file.path)
    if source.torn_line is not None:
        record["torn"] = {"line": source.torn_line, "bytes": source.torn_bytes}
    return record


def archive_digest(path: Path) -> dict[str, Any]:
    """The SHA-256 and size of a gzip archive's bytes, as a manifest records them."""
    digest = hashlib.sha256()
    size = 0
    try:
        fd = _open_in_partition(path, os.O_RDONLY)  # no symlink, no FIFO
        with open(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise IntegrityError(f"{path}: {kind_of(info.st_mode)}, not a regular file")
            while block := handle.read(1 << 20):
                digest.update(block)
                size += len(block)
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot read: {why(exc)}") from None
    return {"size": size, "sha256": chain.tag(digest.digest())}


def partition_records(store: AuditStore, day: str) -> list[dict[str, Any]]:
    """The checkpoint records of every file of one partition: what `write_receipt` wants."""
    return [file_record(file) for file in store.files(day)]


def records_of(manifest: Manifest) -> Iterator[dict[str, Any]]:
    """The well-formed file records (checkpoints) of a seal manifest."""
    files = (manifest.body or {}).get("files")
    if isinstance(files, list):
        for record in files:
            if (
                isinstance(record, dict)
                and isinstance(record.get("name"), str)
                and isinstance(record.get("lines"), int)
            ):
                yield record


def receipt_records(manifest: Manifest) -> Iterator[dict[str, Any]]:
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
