"""The verifier: every writer's chain, checkpoints, manifests, signatures, coverage, and what is
missing, planted or foreign; writer by writer, each against its own chain."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from auditcli import chain
from auditcli.errors import IntegrityError, inert
from auditcli.integrity import workers
from auditcli.integrity.constants import (
    _CLOCK_SLACK,
    MANIFEST_DIR,
)
from auditcli.integrity.fleet import Fleet, FleetWriter, TrustedKeys
from auditcli.integrity.indexes import check_indexes
from auditcli.integrity.keys import embedded_public_key, key_id, signature_valid
from auditcli.integrity.leaffeed import LeafFeed, Pending, plan_feeds
from auditcli.integrity.manifests import (
    Manifest,
    archive_digest,
    chain_dir,
    chain_writers,
    file_key,
    file_writer,
    latest_manifest,
    manifest_entries,
    manifest_names,
    read_manifest,
    receipt_names,
    receipt_records,
    records_of,
)
from auditcli.integrity.proven import Proven, content_hasher, head_key
from auditcli.integrity.redaction import Redactions
from auditcli.integrity.sealstate import check_state
from auditcli.integrity.tree import TreeCheck, TreeHead, foreign_receipts, gives
from auditcli.progress import Progress
from auditcli.query import Problem
from auditcli.store import GZIP, PARTITION_PREFIX, PLAIN, AuditStore, LineSource, LogFile
from auditcli.timeparse import format_utc, parse_utc

from .checkpoints import FileHistory
from .filescan import FileScan, keyable
from .results import LEGACY_HOST, HostReport, VerifyReport


@dataclass
class _Chain:
    """The outcome of checking one chain: its newest manifest, newest good seal, signatures."""

    manifests: int = 0
    head: Manifest | None = None
    latest_seal: Manifest | None = None
    signed: str = "none"
    key_ids: list[str] = field(default_factory=list)
    hashes_found: set[str] = field(default_factory=set)
    #: Every manifest read, in order (kept for a writer's tree check when `keep` is True).
    read: list[Manifest] = field(default_factory=list)


def verify(
    store: AuditStore,
    *,
    first_day: str | None = None,
    last_day: str | None = None,
    public_keys: Sequence[Any] = (),
    anchor: str | None = None,
    max_seal_age_since: str | None = None,
    fleet: Fleet | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    derived: bool = True,
) -> VerifyReport:
    """Check the store: every line's link, every file against every checkpoint of its writer's
    chain (and the legacy chain), every chain and its signatures, missing, planted and foreign
    files. Partitions outside [first_day, last_day] are skipped (chains are always checked whole).
    Each writer is checked on its own: memory holds one writer's checkpoints at a time (per
    process). `workers`: processes checking writers side by side (default: one per CPU when the
    store is big enough and has several writers; see workers.py); the report is the same.

    `public_keys`: trusted Ed25519 public keys; when given, every manifest must be signed by
    one of them (with a fleet file: those of the legacy chain only). `fleet`: which writers must
    be present and the keys that sign each one's chain (see fleet.py). `anchor`: a manifest
    hash kept off-host that must still be in some chain. `max_seal_age_since`: a canonical
    time; every writer's newest manifest must be at least that recent. `progress` hears of
    the entries checked and the files done. `derived=False` leaves out the check of the
    derived data under `_index/` (line indexes, auditor checkpoints: `check_indexes`), which
    rebuilds each one; the caller must say it was not checked.
    """
    verifier = _Verifier(store, first_day, last_day, public_keys, anchor, max_seal_age_since, fleet)
    verifier.progress = progress
    verifier.workers = workers
    verifier.derived = derived
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
        fleet: Fleet | None,
    ) -> None:
        self.store = store
        self.first_day, self.last_day = first_day, last_day
        self.trusted: TrustedKeys = {key_id(k): k for k in public_keys}
        self.fleet = fleet
        self.anchor = (
            anchor if anchor is None or anchor.startswith("sha256:") else "sha256:" + anchor
        )
        self.anchor_found = False
        self.max_age_since = max_seal_age_since
        self.report = VerifyReport(fleet=str(fleet.path) if fleet else None)
        self.order = 0
        # Per writer while it is checked (memory: one writer's checkpoints at a time).
        self.checkpoints: dict[tuple[str, str], FileHistory] = {}
        self.feeds: dict[tuple[str, str], list[Any]] = {}  # file key -> leaf ranges (leaffeed)
        self.proven: Proven | None = None  # the record of earlier verifies (proven.py)
        self.content_keys: dict[tuple[str, str], bytes] = {}  # file key -> its content key
        self.vouched_files: set[tuple[str, str]] = set()  # file keys the record vouched for
        self.listed: dict[tuple[str, str], LogFile] = {}  # file key -> the file as listed
        self._embedded: dict[str, tuple[Any, str | None]] = {}  # see embedded()
        self.latest_seal: Manifest | None = None
        self.host = HostReport("")
        # Whole store.
        self.legacy_checkpoints: dict[tuple[str, str], FileHistory] = {}
        self.legacy = _Chain()
        self.receipts: list[tuple[Manifest, bool]] = []
        self.redactions = Redactions()
        self.seen_receipts: set[Path] = set()
        # Each writer's files as (day, segment, compressed) until it is checked: small tuples,
        # since every file of the store is listed up front (LogFile and its path are built then).
        self.writer_files: dict[str, list[tuple[str, str, bool]]] = {}
        self._ends: dict[str, tuple[tuple[int, Path] | None, list[tuple[int, Path]]]] = {}
        self.on_disk: set[str] = set()
        self._partition_paths: dict[str, Path] = {}
        self._geneses: dict[bytes, str] | None = None
        self.torn_notes: list[str] = []
        self.heads: list[Manifest] = []
        self.newest_seal: Manifest | None = None
        self.legacy_elsewhere: list[str] = []
        self.statuses: list[str] = []
        self.progress: Progress | None = None
        self.workers: int | None = None
        self.split_files = True  # a writer's files may be checked by workers (check_files)
        self.keep_leaves = False  # in such a worker: Merkle leaves kept for the parent
        self.kept_leaves: dict[tuple[str, str], bytes] = {}  # file key -> leaves (keep_leaves)
        self.derived = True  # check the line indexes and checkpoints (see verify())
        self.files_listed = 0
        self.files_done = 0
        # Merkle tree heads, per writer after its files; skipped for --since/--until (a tree
        # spans every day).
        whole = first_day is None and last_day is None
        self.trees = TreeCheck(store, self.report) if whole else None

    def problem(self, file: str, line: int | None, kind: str, detail: str) -> None:
        self.report.problems.append(Problem(file, line, kind, detail))

    def in_range(self, day: str) -> bool:
        return (self.first_day is None or day >= self.first_day) and (
            self.last_day is None or day <= self.last_day
        )

    def run(self) -> VerifyReport:
        chained, foreign_dirs = chain_writers(self.store)
        for path in foreign_dirs:
            self.problem(
                f"{MANIFEST_DIR}/{path.name}", None, "stray file", "not a writer's manifest chain"
            )
        self.survey_partitions()
        self.newest_seal = self.newest_seal_of(chained)
        self.collect_receipts(chained)
        self.redactions = Redactions.of(self.receipts)
        if self.trees:
            self.trees.redactions = self.redactions
        self.check_legacy()
        writers = set(chained) | set(self.writer_files)
        writers.update(file_writer(key[1]) for key in self.legacy_checkpoints)
        if self.fleet:
            writers.update(self.fleet.writers)
        self.check_writers(sorted(writers), set(chained))
        if self.derived:
            self.report.problems.extend(check_indexes(self.store, self.first_day, self.last_day))
        if self.trees:
            self.trees.notes()
        self.summarise()
        self.add_notes()
        return self.report

    # ------------------------------------------------------------------ survey
    def survey_partitions(self) -> None:
        """Count partitions, name stray files, and list each writer's files (names only: they are
        read writer by writer; a file rotated meanwhile is followed into its archive)."""
        for name, why in self.store.odd_partitions():
            if self.in_range(name[5:15]):  # the day it claims to be
                self.problem(inert(name), None, "not a partition", why)
        for day in self.store.days(self.first_day, self.last_day):
            self.report.partitions += 1
            self.on_disk.add(day)
            files, strays = self.store.listing_names(day)
            if strays:
                # A rotation that renamed `x.jsonl.gz` into place, or a writer that opened a
                # new segment, may be caught half done. Ask again after the fact: a stray is a
                # name that is still not a log file of the partition.
                strays = self.still_stray(day, strays)
            for name in strays:
                self.problem(
                    f"{PARTITION_PREFIX}{day}/{name}",
                    None,
                    "stray file",
                    "not a log file of this store (planted or foreign)",
                )
            for segment, compressed in files:
                # One string per writer, shared by its tuples (not one per file).
                writer = sys.intern(file_writer(segment))
                if segment == writer:
                    segment = writer
                self.writer_files.setdefault(writer, []).append((day, segment, compressed))
                self.files_listed += 1

    def still_stray(self, day: str, strays: list[str]) -> list[str]:
        """The strays of `day` that a fresh listing does not show as log files (or as the
        plain half of a rotation in progress, whose `.gz` twin is listed)."""
        try:
            known = {f.path.name for f in self.store.files(day)}
        except IntegrityError:
            return strays
        return [name for name in strays if name not in known and name + ".gz" not in known]

    def newest_seal_of(self, chained: Sequence[str]) -> Manifest | None:
        """The newest intact seal heading any writer's chain: a file of a writer that has no chain
        and is older than it was hidden from every seal (or planted backdated)."""
        heads = []
        for writer in chained:
            newest = self.chain_ends(writer)[0]
            if newest:
                heads.append(read_manifest(newest[1], newest[0], writer))
        seals = [m for m in heads if m and m.kind == "seal" and m.error is None]
        return max(seals, key=lambda m: m.sealed_at, default=None)

    def chain_ends(self, writer: str) -> tuple[tuple[int, Path] | None, list[tuple[int, Path]]]:
        """A chain's newest manifest name and its receipts' names, listed once per run (its
        whole listing is read again when its writer is checked: never all chains' at once)."""
        if writer not in self._ends:
            names = manifest_entries(self.store, writer)[0]
            directory = chain_dir(self.store, writer)
            receipts = [(s, directory / n) for s, n in names if n.endswith(".receipt.json")]
            newest = (names[-1][0], directory / names[-1][1]) if names else None
            self._ends[writer] = (newest, receipts)
        return self._ends[writer]

    def keys_for(self, writer: str | None) -> TrustedKeys | None:
        """The keys that must sign a chain (None: check against the key it embeds)."""
        if writer is None:
            if self.fleet and self.fleet.legacy_keys:
                return self.fleet.legacy_keys
            return self.trusted or None
        if self.fleet:
            entry = self.fleet.writers.get(writer)
            return entry.keys if entry and entry.keys else None
        return self.trusted or None

    def collect_receipts(self, chained: Sequence[str]) -> None:
        """Every receipt of every writer's chain, oldest first, with whether it may excuse a
        deletion: a log host or a shared volume's sealer deletes files of other writers."""
        found = []
        for writer in chained:
            newest, receipts = self.chain_ends(writer)
            if not receipts or newest is None:
                continue
            keys = self.keys_for(writer)
            head = read_manifest(newest[1], newest[0], writer)
            head_key = (head.signature or {}).get("keyId")
            for sequence, path in receipts:
                manifest = read_manifest(path, sequence, writer)
                self.seen_receipts.add(path)
                found.append((manifest, self.receipt_trusted(manifest, keys, head_key)))
        found.sort(key=lambda item: item[0].sealed_at)
        self.receipts = found

    def receipt_trusted(
        self, manifest: Manifest, keys: TrustedKeys | None, head_key: str | None
    ) -> bool:
        """A receipt is trusted when intact and signed as its chain must be (an unsigned receipt
        in a signed chain, or one signed by another key than the chain's head, is not)."""
        if manifest.body is None or manifest.error:
            return False
        signature = manifest.signature
        if signature is None:
            return not keys and head_key is None
        stated = str(signature.get("keyId"))
        if keys:
            if stated not in keys:
                return False
            key = keys[stated] or embedded_public_key(signature)
        else:
            key = embedded_public_key(signature)
            if head_key is not None and stated != head_key:
                return False
        return (
            key is not None
            and key_id(key) == stated
            and signature_valid(manifest.body_bytes, signature, key)
        )

    # ------------------------------------------------------------------ chains
    def check_legacy(self) -> None:
        """The flat chain of stores written before per-writer chains: checked as before, its
        checkpoints kept for every writer's files."""
        names, foreign = manifest_names(self.store, None)
        for path in foreign:
            self.problem(
                f"{MANIFEST_DIR}/{path.name}",
                None,
                "stray file",
                "not a manifest; planted or left behind",
            )
        if not names:
            return
        self.host = HostReport(LEGACY_HOST)
        start = len(self.report.problems)
        self.checkpoints = self.legacy_checkpoints
        self.legacy = self.check_chain(None, names, self.keys_for(None))
        self.checkpoints = {}
        self.host.problems = len(self.report.problems) - start
        self.report.hosts.append(self.host)

    def check_chain(
        self,
        writer: str | None,
        names: Sequence[tuple[int, Path]],
        keys: TrustedKeys | None,
        receipts: Sequence[tuple[Manifest, bool]] = (),
        keep: bool = False,
    ) -> _Chain:
        """Stream one chain: sequence gaps, links, order, signatures; fold its checkpoints (and
        other chains' `receipts`, by time) into `self.checkpoints`. `keep`: also keep the
        manifests read (`read`), for the tree check that follows the files."""
        result = _Chain(manifests=len(names))
        host = self.host
        host.manifests = len(names)
        pending = list(receipts)
        previous: Manifest | None = None
        expected = 1
        first_key: str | None = None
        seen_signed = False
        seen_seq: set[int] = set()
        for index, (sequence, path) in enumerate(names):
            manifest = read_manifest(path, sequence, writer)
            if keep:
                result.read.append(manifest)
            while pending and pending[0][0].sealed_at <= manifest.sealed_at:
                self.take_receipt(*pending.pop(0))
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
            where = f"{MANIFEST_DIR}/{writer}/" if writer else f"{MANIFEST_DIR}/"
            if manifest.sequence > expected:
                missing = (
                    f"#{expected}"
                    if manifest.sequence == expected + 1
                    else f"#{expected}–#{manifest.sequence - 1}"
                )
                self.problem(
                    where,
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
                if manifest.hash:
                    result.hashes_found.add(manifest.hash)
                    if manifest.hash == self.anchor:
                        self.anchor_found = True
                if writer is not None and manifest.sequence == 1:
                    self.check_legacy_binding(manifest)
                # The signature itself is checked where the key changes, on every receipt and
                # on the newest manifest: the hash links make that one vouch for all before it.
                crypto = (
                    index == len(names) - 1
                    or manifest.kind == "receipt"
                    or (manifest.signature or {}).get("keyId")
                    != ((previous.signature or {}).get("keyId") if previous else None)
                )
                signed_ok, key = self.check_signature(
                    manifest, writer, keys, first_key, seen_signed, crypto, result
                )
                if manifest.signature is not None:
                    seen_signed = True
                    first_key = first_key or key
                trusted = trusted and signed_ok
                if keep:  # signed bytes checked: the tree check after the files needs the body
                    manifest.body_bytes = b""
                self.take_checkpoints(manifest, trusted, writer)
                if manifest.kind == "seal" and manifest.error is None:
                    result.latest_seal = manifest
            previous = manifest
        for receipt in pending:
            self.take_receipt(*receipt)
        if previous is not None:
            result.head = previous
            self.heads.append(previous)
            result.signed = "unsigned" if not seen_signed else "verified" if keys else "embedded"
            host.signed, host.key_ids = result.signed, result.key_ids
            host.latest = _latest(previous)
            self.statuses.append(result.signed)
        return result

    def check_legacy_binding(self, manifest: Manifest) -> None:
        """A writer's first manifest names the legacy chain's head when it started: that head
        must still be in the legacy chain (else the legacy chain was cut or replaced)."""
        ref = (manifest.body or {}).get("legacy")
        if not isinstance(ref, dict):
            return
        if self.legacy.head is None:
            # A merged store: each host's legacy chain stays on the host (they would collide).
            self.legacy_elsewhere.append(manifest.writer or "")
        elif ref.get("hash") not in self.legacy.hashes_found:
            self.problem(
                f"{MANIFEST_DIR}/",
                None,
                "deleted manifest",
                f"{manifest.name} continues the legacy chain at its manifest"
                f" #{ref.get('sequence')} ({ref.get('hash')}), which is no longer there",
            )

    def check_signature(
        self,
        manifest: Manifest,
        writer: str | None,
        keys: TrustedKeys | None,
        first_key: str | None,
        seen_signed: bool,
        crypto: bool,
        result: _Chain,
    ) -> tuple[bool, str | None]:
        """Whether the manifest's signature is acceptable (problems recorded), and its key id."""
        given = (
            f"the fleet file's key(s) for {writer}"
            if self.fleet and writer and keys
            else "the key(s) given"
        )
        signature = manifest.signature
        if signature is None:
            if keys:
                self.problem(
                    manifest.name, None, "unsigned manifest", f"not signed, but {given} expect it"
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
        stated = str(signature.get("keyId"))
        if keys:
            if stated not in keys:
                self.problem(
                    manifest.name,
                    None,
                    "wrong signing key",
                    f"signed by {stated}, not by {given}: {', '.join(keys)}",
                )
                return False, stated
            kid: str | None = stated  # trusted keys are listed by their id
            key = keys[stated]
            if key is None:
                key, kid = self.embedded(signature)
        else:
            key, kid = self.embedded(signature)
            if first_key is not None and stated != first_key:
                self.problem(
                    manifest.name,
                    None,
                    "wrong signing key",
                    f"signed by {stated}, earlier manifests by {first_key}"
                    " (pass --public-key or a fleet file naming each key you trust)",
                )
                return False, stated
        if key is None or kid != stated:
            self.problem(
                manifest.name, None, "bad signature", "the embedded public key is malformed"
            )
            return False, stated
        if crypto and not signature_valid(manifest.body_bytes, signature, key):
            self.problem(
                manifest.name,
                None,
                "bad signature",
                f"the signature does not match the content (key {stated})",
            )
            return False, stated
        for ids in (result.key_ids, self.report.key_ids):
            if stated not in ids:
                ids.append(stated)
        return True, stated

    def embedded(self, signature: Mapping[str, Any]) -> tuple[Any, str | None]:
        """The public key a signature carries and its id (None, None when malformed), decoded
        once per distinct key: a chain repeats the same one in every manifest."""
        raw = signature.get("publicKey")
        cache = self._embedded
        if not isinstance(raw, str):
            return None, None
        if raw not in cache:
            key = embedded_public_key(signature)
            cache[raw] = (key, key_id(key) if key is not None else None)
        return cache[raw]

    def take_checkpoints(self, manifest: Manifest, trusted: bool, writer: str | None) -> None:
        """Collect checkpoints from every readable manifest (even a damaged one: more checks),
        but only a trusted receipt may excuse a deletion. A writer's chain vouches for that
        writer's files only."""
        self.order += 1
        label = (self.order, manifest.label)
        if manifest.kind == "seal":
            foreign = None
            for record in records_of(manifest):
                key = file_key(record["name"])
                if key is None:
                    continue
                if writer is not None and file_writer(key[1]) != writer:
                    foreign = record["name"]
                    continue
                known = self.checkpoints.setdefault(key, FileHistory())
                known.note_listed(record)
                known.add(record, label)
            if foreign:
                self.problem(
                    manifest.name,
                    None,
                    "altered manifest",
                    f"lists {foreign}, a file of another writer",
                )
        elif manifest.kind == "receipt":
            self.take_receipt(manifest, trusted)

    def take_receipt(self, manifest: Manifest, trusted: bool) -> None:
        """A trusted deletion receipt ends the history of the files it names (of this writer,
        or of any writer in the legacy chain)."""
        if not trusted:
            return
        for record in receipt_records(manifest):
            key = file_key(record["name"])
            if key is None or (
                self.host.writer != LEGACY_HOST and file_writer(key[1]) != self.host.writer
            ):
                continue
            known = self.checkpoints.get(key)
            retired = None
            if known is not None and known.by_line:
                retired = known
                if self.in_range(key[0]):
                    self.check_receipt(manifest, record, known)
            self.checkpoints[key] = FileHistory(
                name=record["name"], retired=retired, receipt=record
            )

    def check_receipt(
        self, manifest: Manifest, record: Mapping[str, Any], known: FileHistory
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
                f" but manifest {min(heads.values(), default=(0, '?'))[1]}"
                f" checkpointed {top}: the file was cut or changed before its deletion",
            )

    # ------------------------------------------------------------------ one writer
    def check_writers(self, writers: Sequence[str], chained: set[str]) -> None:
        """Check every writer, in forked worker processes when that pays (workers.py)."""
        count = workers.worker_count(
            self.files_listed, self.listed_bytes, len(writers), self.workers
        )
        if count < 2:
            for writer in writers:
                self.check_writer(writer, writer in chained)
            return
        # A worker checking whole writers checks each one's files itself (no fork in a fork).
        self.split_files = False
        try:
            with self.progress_told_here() as done:
                workers.check_writers(
                    self,
                    writers,
                    lambda writer: self.check_writer(writer, writer in chained),
                    count,
                    done,
                )
        finally:
            self.split_files = True

    @contextlib.contextmanager
    def progress_told_here(self) -> Iterator[Callable[[], None]]:
        """While forked workers check: progress is told by this process alone, through the
        function yielded (called as each worker's result is merged), not by the workers."""
        progress, self.progress = self.progress, None
        try:
            yield lambda: self.tell_progress(progress)
        finally:
            self.progress = progress

    def tell_progress(self, progress: Progress | None) -> None:
        """Tell `progress` (if any) the entries and files checked so far."""
        if progress is not None:
            progress(self.report.entries, done=self.files_done, total=self.files_listed)

    def listed_file(self, day: str, segment: str, compressed: bool) -> LogFile:
        """The LogFile of one `writer_files` item."""
        name = f"{segment}{GZIP if compressed else PLAIN}"
        return LogFile(day, segment, self.partition_path(day) / name, compressed)

    def partition_path(self, day: str) -> Path:
        """The partition directory of `day`, made once per day (writers share it)."""
        path = self._partition_paths.get(day)
        if path is None:
            path = self._partition_paths[day] = self.store.root / f"{PARTITION_PREFIX}{day}"
        return path

    def listed_bytes(self) -> int:
        """The bytes of the files listed (see _files_bytes)."""
        return _files_bytes(
            self.listed_file(*item) for files in self.writer_files.values() for item in files
        )

    def check_writer(self, writer: str, chained: bool) -> None:
        """Check one writer's chain, its files against it, and what the fleet file says."""
        self.host = host = HostReport(writer)
        start = len(self.report.problems)
        entry = self.fleet.writers.get(writer) if self.fleet else None
        if self.fleet:
            host.in_fleet = entry is not None
            if entry is None:
                self.problem(
                    f"{MANIFEST_DIR}/{writer}/",
                    None,
                    "unknown writer",
                    f"{writer} is not in the fleet file {self.fleet.path}:"
                    " a host nobody declared (planted), or one to add to the file",
                )
        # The legacy chain's checkpoints of this writer's files, then its own chain on top.
        self.checkpoints = {
            key: self.legacy_checkpoints.pop(key)
            for key in [k for k in self.legacy_checkpoints if file_writer(k[1]) == writer]
        }
        self.latest_seal = self.legacy.latest_seal
        receipts = [
            (m, t)
            for m, t in self.receipts
            if m.writer != writer
            and any(
                (k := file_key(r["name"])) and file_writer(k[1]) == writer
                for r in receipt_records(m)
            )
        ]
        names: list[tuple[int, Path]] = []
        if chained:
            names, foreign = manifest_names(self.store, writer)
            # As listed when the partitions were: a seal made since may list files the survey
            # did not see (a late writer's), which are the next verify's.
            listed = self.chain_ends(writer)[0]
            names = [(s, p) for s, p in names if listed is not None and s <= listed[0]]
            for path in foreign:
                self.problem(
                    f"{MANIFEST_DIR}/{writer}/{path.name}",
                    None,
                    "stray file",
                    "not a manifest; planted or left behind",
                )
        trees = self.trees if chained else None
        # What earlier verifies proved about exact bytes (proven.py), of any writer's files
        # (sealed or not: an entry says what the file's own lines gave); a verify of some
        # days keeps what the record holds of the others.
        period = None if self.trees else (self.first_day, self.last_day)
        self.proven = Proven(str(self.store.root), writer, period)
        chain = self.check_chain(writer, names, self.keys_for(writer), receipts, trees is not None)
        # The tree heads are recomputed from the same reads as the chain links (leaffeed.py).
        streamed, self.feeds = plan_feeds(chain.read) if trees else ({}, {})
        if chain.latest_seal is not None:
            self.latest_seal = chain.latest_seal
        elif self.latest_seal is None:
            self.latest_seal = self.newest_seal
        files = [self.listed_file(*item) for item in self.writer_files.pop(writer, [])]
        self.listed = {(file.day, file.segment): file for file in files}
        days = sorted({file.day for file in files})
        if names:
            host.chain = "own"
        else:
            if self.checkpoints or (self.legacy.head is not None and not days):
                host.chain = "legacy"
            self.missing_chain(writer, entry, days)
        if entry is not None:
            for anchor in entry.anchors:
                if anchor not in chain.hashes_found:
                    self.problem(
                        f"{MANIFEST_DIR}/{writer}/",
                        None,
                        "anchor not found",
                        f"no manifest of {writer} hashes to {anchor} (from the fleet file):"
                        " its newest manifests were deleted or its chain was rebuilt",
                    )
        if self.max_age_since is not None and (names or days or (entry and entry.required)):
            newest_manifest = chain.head or self.legacy.head
            newest = newest_manifest.sealed_at if newest_manifest else None
            if newest is None or newest < self.max_age_since:
                self.problem(
                    f"{MANIFEST_DIR}/{writer}/" if names else f"{MANIFEST_DIR}/",
                    None,
                    "stale seal",
                    f"the newest manifest of {writer} is from {newest or 'never'};"
                    f" expected one since {self.max_age_since}"
                    " (seal not running, or the newest manifests were deleted)",
                )
        found = self.check_files(files)
        self.check_missing({(f.day, f.segment) for f, t in zip(files, found, strict=True) if t})
        if trees:  # after the files: a file's problem explains its heads'
            self.proven_heads(streamed)
            others = foreign_receipts(self.store, writer, (m for m, _ in self.receipts))
            trees.check(writer, chain.read, others, streamed)
            forged = check_state(self.store, writer, chain.read, (m for m, _ in self.receipts))
            if forged is not None:
                self.report.problems.append(forged)
        if self.proven is not None:
            self.proven.save()
        self.checkpoints, self.feeds, self.content_keys, self.proven = {}, {}, {}, None
        self.vouched_files, self.listed = set(), {}
        for manifest in chain.read:
            # A parsed tree head refers to its manifest (tree.head_of's memo): free the
            # writer's manifests now, not at the next full collection, several writers later.
            manifest.memo.clear()
        host.problems = len(self.report.problems) - start
        self.report.hosts.append(host)

    def check_files(self, files: Sequence[LogFile]) -> list[bool]:
        """Check one writer's files in order (whether each was there: check_file). When they
        are many or big, and this is not already a worker checking whole writers, runs of
        them are checked in forked worker processes (workers.check_files): each sends back,
        per file, what the tree check and the record need, and the Merkle leaves of its lines,
        which the parent feeds to the heads in file order. The same report and record."""
        sizes: list[int] = []

        def size() -> int:
            sizes[:] = [_files_bytes([file]) for file in files]
            return sum(sizes)

        count = 1
        if self.split_files:
            count = workers.worker_count(len(files), size, len(files), self.workers)

        def check(file: LogFile) -> bool:
            there = self.check_file(file)
            self.files_done += 1
            self.tell_progress(self.progress)
            return there

        if count < 2:
            return [check(file) for file in files]
        if len(sizes) != len(files):
            size()

        # A file too big for a worker to send all its leaf hashes back: alone in its run, and
        # checked here in its turn (its leaves fed to the heads as read, memory bounded).
        big = {(f.day, f.segment) for f, s in zip(files, sizes, strict=True) if workers.too_big(s)}

        def in_worker(file: LogFile) -> tuple[bool, bytes | None, bool, bytes | None] | None:
            key = (file.day, file.segment)
            if key in big:
                return None
            self.keep_leaves = True  # (in the worker process only)
            there = check(file)
            vouched = key in self.vouched_files
            return there, self.content_keys.get(key), vouched, self.kept_leaves.pop(key, None)

        def take(
            file: LogFile, result: tuple[bool, bytes | None, bool, bytes | None] | None
        ) -> bool:
            if result is None:  # (big: see above)
                return check(file)
            there, content, vouched, leaves = result
            key = (file.day, file.segment)
            if content is not None:
                self.content_keys[key] = content
            if vouched:
                self.vouched_files.add(key)
            if leaves is not None:
                feed = LeafFeed(self.feeds[key])
                feed.add_kept(leaves)
                feed.commit()
            return there

        runs = workers.file_runs(files, sizes, count)
        with self.progress_told_here() as done:
            return workers.check_files(self, runs, in_worker, take, count, done)

    def missing_chain(self, writer: str, entry: FleetWriter | None, days: Sequence[str]) -> None:
        """A writer without a chain of its own: a problem when the fleet file or --public-key
        says its seals must be there (unless the legacy chain still covers it)."""
        if entry is not None and self.host.chain != "legacy":
            if days:
                self.problem(
                    f"{MANIFEST_DIR}/{writer}/",
                    None,
                    "deleted manifest",
                    f"{writer} has files in {len(days)} partition(s) but no manifest chain:"
                    " its manifests were deleted, or it never sealed",
                )
            elif entry.required:
                self.problem(
                    f"{MANIFEST_DIR}/{writer}/",
                    None,
                    "missing host",
                    f"the fleet file requires {writer}, but the store holds neither its files"
                    " nor its manifests (deleted, or never synced here)",
                )
        elif entry is None and self.trusted and days and self.legacy.head is None:
            self.problem(
                f"{MANIFEST_DIR}/",
                None,
                "deleted manifest",
                f"no manifest at all for {writer}, though --public-key expects signed ones"
                " (all deleted, or the store was never sealed)",
            )

    def check_missing(self, seen: set[tuple[str, str]]) -> None:
        """Files a manifest of this writer listed that are gone without a receipt."""
        report = self.report
        missing_by_day: dict[str, list[FileHistory]] = {}
        late: set[tuple[str, str]] | None = None
        for key, known in self.checkpoints.items():
            if key in seen or not self.in_range(key[0]):
                continue
            if known.deleted_as_planned():
                report.receipted_files += 1
                continue
            if late is None:
                late = self.late_receipts()
            if key in late:  # retention deleted it while we were reading
                report.receipted_files += 1
                continue
            missing_by_day.setdefault(key[0], []).append(known)
        for day, gone in sorted(missing_by_day.items()):
            if day not in self.on_disk:
                names = ", ".join(sorted(g.name.rsplit("/", 1)[-1] for g in gone))
                self.problem(
                    f"{PARTITION_PREFIX}{day}",
                    None,
                    "deleted partition",
                    f"the partition is gone ({names};"
                    f" last in manifest {max(g.last_listed for g in gone if g.last_listed)[1]})"
                    " and no retention receipt covers it",
                )
            else:
                for known in sorted(gone, key=lambda g: g.name):
                    assert known.last_listed is not None
                    self.problem(
                        known.name,
                        None,
                        "deleted file",
                        f"in manifest {known.last_listed[1]} with {known.max_lines()} lines,"
                        " now gone, no retention receipt",
                    )

    def late_receipts(self) -> set[tuple[str, str]]:
        """File keys covered by (acceptably signed) receipts written since verify started."""
        keys: set[tuple[str, str]] = set()
        for writer, sequence, path in receipt_names(self.store):
            if path in self.seen_receipts:
                continue
            manifest = read_manifest(path, sequence, writer)
            head = latest_manifest(self.store, writer)
            head_key = ((head.signature if head else None) or {}).get("keyId")
            if self.receipt_trusted(manifest, self.keys_for(writer), head_key):
                keys.update(k for r in receipt_records(manifest) if (k := file_key(r["name"])))
        return keys

    def geneses(self) -> dict[bytes, str]:
        """Genesis link of every file name the store, its chains or the checkpoints at hand
        know (each known segment on each known day): a file whose first line chains from
        another name's genesis was copied or renamed from there."""
        if self._geneses is None:
            days: set[str] = set(self.store.days())
            segments: set[str] = set(chain_writers(self.store)[0])
            for day in days:
                segments.update(f.segment for f in self.store.files(day))
            for day, segment in [*self.legacy_checkpoints, *self.checkpoints]:
                days.add(day)
                segments.add(segment)
            self._geneses = {
                chain.genesis(PARTITION_PREFIX + day, segment): f"{PARTITION_PREFIX}{day}/{segment}"
                for day in days
                for segment in segments
            }
        for day, segment in self.checkpoints:
            self._geneses.setdefault(
                chain.genesis(PARTITION_PREFIX + day, segment), f"{PARTITION_PREFIX}{day}/{segment}"
            )
        return self._geneses

    def check_file(self, file: LogFile) -> bool:
        """Check one file; False when it vanished before it could be read (retention deleted
        its partition meanwhile): it is then judged as missing, which a receipt excuses."""
        report, host = self.report, self.host
        key = (file.day, file.segment)
        known = self.checkpoints.get(key)
        scan: FileScan | None = None
        try:
            if known is not None and not known.by_line and known.retired and known.receipt:
                # Deleted by retention where it was written, still kept here: if it is the file
                # the receipt recorded, it is checked against the history the receipt closed.
                scan = self.scan(file, known.retired)
                if scan.lines == known.receipt.get("lines") and chain.tag(
                    scan.head
                ) == known.receipt.get("head"):
                    known = known.retired
                else:
                    scan = None  # a new file under an old name: checked as a new one
            if scan is None:
                feed = LeafFeed(self.feeds[key], self.keep_leaves) if key in self.feeds else None
                scan = self.scan(file, known, feed)
            if (
                scan.problems
                and known is not None
                and known.by_line
                and key in self.late_receipts()
            ):
                # Retention deleted the file that the manifests loaded at the start
                # checkpointed, and a late writer made a new one under the same name: those
                # are not its checks.
                known = FileHistory()
                scan = self.scan(file, known)
            elif scan.feed is not None:
                scan.feed.commit()  # the one scan verify keeps of this file
                if scan.feed.kept is not None:  # a worker's: for the parent's heads
                    self.kept_leaves[key] = scan.feed.kept
        except IntegrityError as exc:
            if _vanished(file):
                return False
            self.problem(file.name, None, "unreadable file", str(exc))
            return True
        if scan.lines == 0 and _vanished(file):
            return False
        name = scan.source.file.name if scan.source else file.name
        if scan.content_key is not None:
            self.content_keys[key] = scan.content_key
            if scan.vouched:
                self.vouched_files.add(key)
            if scan.proof is not None and self.proven is not None:
                self.proven.note_file(scan.content_key, name, *scan.proof)
        report.files += 1
        host.files += 1
        report.entries += scan.lines
        host.entries += scan.lines
        report.bytes += scan.bytes
        report.problems.extend(scan.problems)
        if scan.sealed_torn:
            self.torn_notes.append(scan.sealed_torn)
        if known is None or not known.by_line:
            report.uncovered += scan.lines
            host.uncovered += scan.lines
            if known is None:  # a receipted name that reappears is not "unknown"
                self.check_planted(file, name, scan.lines)
            return True
        report.checkpoints += sum(len(heads) for heads in known.by_line.values())
        report.uncovered += max(0, scan.lines - known.max_lines())
        host.uncovered += max(0, scan.lines - known.max_lines())
        current = scan.source.file if scan.source else file
        if current.compressed:
            recorded = known.archives.get(current.name)
            if recorded is not None:
                try:
                    actual = archive_digest(current.path)["sha256"]
                except IntegrityError as exc:
                    if not _vanished(current):  # (read whole above; then deleted by retention)
                        self.problem(current.name, None, "unreadable file", str(exc))
                    return True
                if actual != recorded[0] and not self.redactions.archive_ok(current.name, actual):
                    self.problem(
                        current.name,
                        None,
                        "altered archive",
                        f"SHA-256 {actual}, manifest {recorded[1][1]} recorded {recorded[0]}",
                    )
        return True

    def scan(
        self, file: LogFile, known: FileHistory | None, feed: LeafFeed | None = None
    ) -> FileScan:
        """One pass over `file` against `known` (IntegrityError when it cannot be read); `feed`
        takes the Merkle leaves of its lines."""
        scan = FileScan(file, known, self.geneses, feed)
        scan.redacted = self.redactions.lines.get((file.day, file.segment))
        scan.proven = self.proven
        scan.run()
        return scan

    def head_key(self, head: TreeHead) -> bytes | None:
        """The record's key of `head` (proven.head_key) from its files' content keys as the
        scans found them, if all are known."""
        manifest_hash, keys = head.manifest.hash, []
        if not manifest_hash:
            return None
        for name, _, _ in head.appended:
            key = self.content_keys.get(file_key(name))  # type: ignore[arg-type]
            if key is None:
                return None
            keys.append(key)
        return head_key(head.extends, manifest_hash, keys)

    def prove_head(self, pending: Pending) -> bytes | None:
        """The SHA-256 of the leaf hashes of a head the record does not hold, though it vouched
        for files whose lines it appends (so the scans did not feed it): hashed from those files
        read again, when each still has the content key its scan found and the leaves take the
        head it extends to this one. None otherwise (the tree check then decides, as always)."""
        head, origin = pending.head, pending.origin
        if origin is None:
            return None
        job = Pending(head, origin.copy())
        for index, (name, first, end) in enumerate(head.appended):
            at = file_key(name)
            file = self.listed.get(at)  # type: ignore[arg-type]
            if file is None:
                return None
            source = LineSource(file)
            hashed = content_hasher(source.file.name)
            feed = LeafFeed([(first, end, job, index)])
            try:
                for chunk in source.chunks():
                    hashed.update(chunk)
                    lines = chunk.split(b"\n")
                    lines.pop()
                    feed.add(lines)
            except IntegrityError:
                return None
            if not keyable(source) or hashed.digest() != self.content_keys.get(at):  # type: ignore[arg-type]
                return None  # changed since its scan
            feed.commit()
        return job.digest.digest() if job.complete and gives(job.frontier, head) else None

    def proven_heads(self, streamed: Mapping[int, Pending]) -> None:
        """Tree heads and the record of earlier verifies (proven.py): a head the scans fed
        whole and that they took to its stated frontier is recorded; a head whose files the
        record vouched for (so not fed) takes the record's word when its manifests and files
        hash as recorded. Any other head is recomputed by the tree check, reading its files."""
        if self.proven is None:
            return
        for pending in streamed.values():
            head = pending.head
            key = self.head_key(head)
            if key is None:
                continue
            if pending.complete:
                if gives(pending.frontier, head):
                    self.proven.note_head(key, pending.digest.digest())
                continue
            pending.proven = self.proven.head(key)
            if pending.proven is None and any(
                file_key(name) in self.vouched_files for name, _, _ in head.appended
            ):
                pending.proven = self.prove_head(pending)
                if pending.proven is not None:
                    self.proven.note_head(key, pending.proven)

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
        of = f" of {seal.writer}" if seal.writer and seal.writer != self.host.writer else ""
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
                f"no manifest lists it, yet it dates from {when}, before manifest"
                f" {seal.label}{of} ({seal.sealed_at}) that listed every file then present",
            )

    # ------------------------------------------------------------------ summary
    def summarise(self) -> None:
        report = self.report
        report.manifests = sum(host.manifests for host in report.hosts)
        if self.heads:
            last = max(self.heads, key=lambda m: m.sealed_at)
            report.latest = _latest(last, writer=True)
        if self.statuses:
            for status in ("unsigned", "embedded", "verified"):
                if status in self.statuses:
                    report.signed = status
                    break
        if self.anchor and not self.anchor_found:
            self.problem(
                f"{MANIFEST_DIR}/",
                None,
                "anchor not found",
                f"no manifest hashes to {self.anchor}:"
                " manifests were deleted or the chain was rebuilt",
            )

    def add_notes(self) -> None:
        report = self.report
        writers = [h.writer for h in report.hosts if h.writer != LEGACY_HOST]
        if self.fleet is None and len(writers) > 1:
            report.notes.append(
                f"No fleet file: {len(writers)} writers found ({', '.join(writers[:20])}"
                f"{', …' if len(writers) > 20 else ''}). Without one, verify cannot tell a host"
                " whose files and manifests were all deleted (it is simply not listed), which"
                " key belongs to which host, or whether a host's newest manifests were deleted."
                " Pass --fleet FILE."
            )
        if self.legacy_elsewhere:
            report.notes.append(
                f"The chains of {', '.join(self.legacy_elsewhere)} continue a legacy chain"
                " (_manifests/*.json) that is not in this store: files sealed before the upgrade"
                " are checked against the writers' own chains only (verify the legacy chain"
                " where it is kept, on the host)."
            )
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
                " Pass --public-key with your key, or --fleet with each host's."
            )
        if self.torn_notes:
            report.notes.append(
                "Torn final lines left by a crash, already present when the store was sealed"
                f" (excluded from queries, not entries): {', '.join(self.torn_notes)}"
            )
        if report.latest and report.uncovered:
            behind = [h for h in report.hosts if h.uncovered]
            where = ", ".join(
                f"{h.writer}: {h.uncovered} after"
                + (f" #{h.latest['sequence']} ({h.latest['sealedAt']})" if h.latest else " none")
                for h in behind[:10]
            ) + (", …" if len(behind) > 10 else "")
            report.notes.append(
                f"{report.uncovered} {'entry is' if report.uncovered == 1 else 'entries are'}"
                f" newer than their writer's latest seal ({where}):"
                " they verify by their chains only until the next seal."
            )


def _files_bytes(files: Iterable[LogFile]) -> int:
    """The bytes of `files` (a gzip file counted 5 times: what it inflates to)."""
    total = 0
    for file in files:
        with contextlib.suppress(OSError):
            total += file.path.stat().st_size * (5 if file.compressed else 1)
    return total


def _vanished(file: LogFile) -> bool:
    """Whether the file listed is gone: a `.gz` (only retention removes one, with its whole
    partition; a plain file a late writer makes there afterwards is another file, for the next
    verify), or a plain file with no `.gz` twin either (rotation would have left one)."""
    plain = file.path.with_name(file.segment + ".jsonl")
    if file.compressed:
        return not os.path.lexists(file.path)
    return not any(os.path.lexists(p) for p in (plain, plain.with_name(plain.name + ".gz")))


def _latest(manifest: Manifest, *, writer: bool = False) -> dict[str, Any]:
    """A report's `latestManifest`: the newest seal (of a writer, or of the store, naming its
    writer), in the report's key order."""
    latest: dict[str, Any] = {"sequence": manifest.sequence}
    if writer:
        latest["writer"] = manifest.writer
    latest.update(
        hash=manifest.hash,
        sealedAt=manifest.sealed_at,
        kind=manifest.kind,
        signed=manifest.signature is not None,
        keyId=(manifest.signature or {}).get("keyId"),
    )
    return latest
