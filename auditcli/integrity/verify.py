"""`verify()`: stream every file once and check chains, checkpoints, manifests, signatures,
and what is missing, planted or foreign."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from auditcli import chain
from auditcli.errors import IntegrityError
from auditcli.query import Problem
from auditcli.store import PARTITION_PREFIX, AuditStore, LineSource, LogFile
from auditcli.timeparse import format_utc, parse_utc

from .constants import (
    _CLOCK_SLACK,
    _CREATED_DAY,
    _HEX64,
    _HEX_END,
    _HEX_START,
    _MAX_BAD_SEARCH,
    _MAX_INCIDENT,
    _MAX_PROBLEMS_PER_FILE,
    _MAX_SEARCHES_PER_FILE,
    _MIN_LINE,
    _TAGGED,
    _TAIL,
    _WINDOW,
    MANIFEST_DIR,
)
from .keys import embedded_public_key, key_id, signature_valid
from .manifests import (
    Manifest,
    archive_digest,
    file_key,
    load_manifests,
    manifest_names,
    read_manifest,
    receipt_records,
    records_of,
)
from .tree import check_tree_heads


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
) -> VerifyReport:
    """Check the store: every line's link, every file against every checkpoint, the manifest
    chain and signatures, missing, planted and foreign files. Partitions outside
    [first_day, last_day] are skipped (the manifest chain is always checked whole).

    `public_keys`: trusted Ed25519 public keys; when given, every manifest must be signed by
    one of them. `anchor`: a manifest hash kept off-host that must still be in the chain.
    `max_seal_age_since`: a canonical time; the newest manifest must be at least that recent.
    """
    return _Verifier(store, first_day, last_day, public_keys, anchor, max_seal_age_since).run()


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

    def problem(self, file: str, line: int | None, kind: str, detail: str) -> None:
        self.report.problems.append(Problem(file, line, kind, detail))

    def in_range(self, day: str) -> bool:
        return (self.first_day is None or day >= self.first_day) and (
            self.last_day is None or day <= self.last_day
        )

    def run(self) -> VerifyReport:
        self.check_manifests()
        self.check_files()
        if self.first_day is None and self.last_day is None:  # a tree spans every day
            check_tree_heads(self.store, self.report)
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
            key = embedded_public_key(signature)
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
        if not signature_valid(manifest.body_bytes, signature, key):
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
            for record in records_of(manifest):
                key = file_key(record["name"])
                if key is not None:
                    self.checkpoints.setdefault(key, _Checkpoints()).add(record, manifest.sequence)
        elif manifest.kind == "receipt" and trusted:
            for record in receipt_records(manifest):
                key = file_key(record["name"])
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
        for day in days:
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
        names, _ = manifest_names(self.store)
        for sequence, path in names:
            if sequence <= self.loaded_up_to:
                continue
            manifest = read_manifest(path, sequence)
            if manifest.body is None or manifest.error or manifest.kind != "receipt":
                continue
            if self.trusted:
                signature = manifest.signature or {}
                key = self.trusted.get(str(signature.get("keyId")))
                if key is None or not signature_valid(manifest.body_bytes, signature, key):
                    continue
            keys.update(k for r in receipt_records(manifest) if (k := file_key(r["name"])))
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
                actual = archive_digest(current.path)["sha256"]
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
