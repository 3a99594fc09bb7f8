"""`seal()`: checkpoint the files of one writer in a new signed manifest of that writer's chain.

Each writer (the `<writer>` of `date=…/<writer>[+N].jsonl[.gz]`) has its own chain under
`_manifests/<writer>/`, so stores of many hosts merge by plain file copy. A seal lists only the
files that are new or changed since the writer's previous seal (the first seal of a chain lists
them all), so an hourly seal adds one small file however many closed days the store holds."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from auditcli.errors import IntegrityError
from auditcli.progress import Progress
from auditcli.store import AuditStore, LogFile
from auditcli.timeparse import format_utc

from . import workers
from .keys import key_id, signing_key_from
from .manifests import (
    Manifest,
    append_manifest,
    chain_dir,
    chain_writers,
    file_key,
    file_record,
    file_writer,
    iter_manifests,
    latest_manifest,
    manifest_lock,
    manifest_names,
    read_manifest,
    receipt_names,
    receipt_records,
)
from .sealstate import Known, fold, load_tail, save_tail
from .tree import LeafHasher, TreeBuilder, tree_start


@dataclass
class SealResult:
    """What `seal()` wrote, and anything it noticed that contradicts the previous seal."""

    manifest: Manifest
    writer: str
    files: int
    lines: int
    new_lines: int
    changed: int
    key_id: str | None
    warnings: list[str] = field(default_factory=list)


def seal(
    store: AuditStore,
    *,
    signing_key: Any = None,
    writer: str | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> SealResult:
    """Write the next manifest of `writer`'s chain (default: the store's writer id): a checkpoint
    of that writer's files that changed since its previous seal, chained to it and signed when a
    key is given (a path, a key, or AUDIT_SIGNING_KEY).

    Writes one even when nothing changed, so a missing hour shows as a gap. Warnings (not
    errors: the manifest is written, older ones keep the evidence) name files that shrank or
    vanished since they were sealed without a retention receipt. `workers`: the processes that
    read the files (default: one per CPU when the lines new to the tree come to 32 MB or more,
    else this one)."""
    return seal_writers(
        store,
        [writer or store.writer_id],
        signing_key=signing_key,
        progress=progress,
        workers=workers,
    )[0]


def seal_writers(
    store: AuditStore,
    writers: Iterable[str],
    *,
    signing_key: Any = None,
    failures: list[tuple[str, str]] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> list[SealResult]:
    """`seal()` for each of `writers` in turn, each into its own chain (a shared volume where
    one host seals every writer: see `default_writers`). Lists the partitions once.

    A chain that cannot be sealed (its newest manifest is damaged) raises IntegrityError, or,
    when `failures` is a list, is noted there as `(writer, message)` while the others are sealed:
    one damaged chain must not stop the seals of a whole shared volume. `progress` hears of
    the entries checkpointed and the files done; `workers` as in `seal()`."""
    key = signing_key_from(signing_key)
    wanted = list(dict.fromkeys(writers))
    for writer in wanted:
        chain_dir(store, writer)  # refuses a name that is no writer id, before any seal
    results = []
    # One lock for the listing and every chain: a retention receipt and its deletion are one
    # step under it, so a partition is either listed whole before the receipt or gone after.
    with manifest_lock(store):
        # The time is taken before listing: a file that `verify` finds missing from a chain
        # but older than this time was hidden from the seal, or planted backdated.
        sealed_at = format_utc(store.clock())
        files = _files_by_writer(store, set(wanted))
        tally = _Tally(progress, sum(len(found) for found in files.values()))
        for writer in wanted:
            try:
                results.append(
                    _seal_one(store, writer, files.get(writer, []), key, sealed_at, tally, workers)
                )
            except IntegrityError as exc:
                if failures is None:
                    raise
                failures.append((writer, str(exc)))
    return results


@dataclass
class _Tally:
    """Files and entries sealed so far, told to `progress` after each file."""

    progress: Progress | None
    total: int
    files: int = 0
    entries: int = 0

    def add(self, lines: int) -> None:
        self.files += 1
        self.entries += lines
        if self.progress is not None:
            self.progress(self.entries, done=self.files, total=self.total)


def default_writers(store: AuditStore, signing_key: Any = None) -> tuple[list[str], list[str]]:
    """What `audit seal` seals without `--writer`: every writer with files or a chain in the
    store (on a host, itself; on a shared volume, everyone), or the store's own writer id in an
    empty store. Second list: writers left out because their newest manifest is signed by another
    key (or unsigned while this seal signs, or the reverse): they seal on their own hosts, and a
    second sealer would fork their chains when the copies merge."""
    key = signing_key_from(signing_key)
    mine = key_id(key.public_key()) if key else None
    chosen: list[str] = []
    skipped: list[str] = []
    for writer in store_writers(store) or [store.writer_id]:
        head = latest_manifest(store, writer)
        theirs = (head.signature or {}).get("keyId") if head and head.body else mine
        (chosen if theirs == mine else skipped).append(writer)
    return chosen, skipped


def store_writers(store: AuditStore) -> list[str]:
    """Every writer that has files in the store or a chain under `_manifests/`."""
    found = set(chain_writers(store)[0])
    for day in store.days():
        found.update(file_writer(f.segment) for f in store.files(day))
    return sorted(found)


def _files_by_writer(store: AuditStore, writers: set[str]) -> dict[str, list[LogFile]]:
    found: dict[str, list[LogFile]] = {}
    for day in store.days():
        for file in store.files(day):
            writer = file_writer(file.segment)
            if writer in writers:
                found.setdefault(writer, []).append(file)
    return found


def _seal_one(
    store: AuditStore,
    writer: str,
    files: list[LogFile],
    key: Any,
    sealed_at: str,
    tally: _Tally,
    processes: int | None,
) -> SealResult:
    """Seal `files` into `writer`'s chain; call it holding `manifest_lock(store)`."""
    tail = load_tail(store, writer)  # the chain's tail only, when its kept state checks out
    if tail is not None:
        (known, start), legacy_ref, chained = tail, None, True
    else:
        known, legacy_ref, chained = writer_state(store, writer)
        start = tree_start(store, writer)
    tree = TreeBuilder(store, start)
    # The first manifest of a chain lists every file (the chain stands on its own), and so
    # does the first seal of a new Merkle tree (its leaves are every line of what it lists);
    # later ones only what changed.
    fresh = not chained or tree.start.base is None
    try:
        records, changed, unreadable, total, uncovered = _read_files(
            files, known, tree, fresh, tally, processes
        )
        merkle = tree.fields()  # format 3 and the Merkle head; names the kept leaf file
    finally:
        tree.discard()  # the partial leaf file of a seal that failed (nothing once named)
    warnings = unreadable + _seal_warnings(known, records)
    body: dict[str, Any] = {
        "kind": "seal",
        "sealedAt": sealed_at,
        "files": changed,
        "totals": {"files": len(records), "lines": total, "changed": len(changed)},
    }
    if legacy_ref:
        body["legacy"] = legacy_ref
    body.update(merkle)
    manifest = append_manifest(store, writer, body, key)
    save_tail(store, writer, known, start, manifest, chained)
    return SealResult(
        manifest,
        writer,
        len(records),
        total,
        uncovered,
        len(changed),
        key_id(key.public_key()) if key else None,
        warnings,
    )


def _read_files(
    files: list[LogFile],
    known: Known,
    tree: TreeBuilder,
    fresh: bool,
    tally: _Tally,
    processes: int | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str], int, int]:
    """Checkpoint each file, hashing the lines new to the tree in the same read: every record,
    the records the seal lists (all when `fresh`), what could not be read, the lines in all and
    the lines new since the previous checkpoints. `processes`: `seal()`'s `workers`."""
    # A file opened since the partitions were listed is left for the next seal.
    records: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    unreadable: list[str] = []
    total = uncovered = 0
    olds = [known.get((file.day, file.segment)) for file in files]
    jobs = [_job(file, old, tree) for file, old in zip(files, olds, strict=True)]
    if processes is None:  # the hashing gains from workers, a seal of a few new lines does not
        many = _new_bytes(jobs, olds) >= workers.PARALLEL_BYTES
        processes = workers.cpu_count() if many else 1
    checked = _checkpoints(jobs, processes, tree.start.writer)
    with contextlib.closing(checked):  # a failure below stops the workers at once
        for (file, _, _), old, (record, hasher) in zip(jobs, olds, checked, strict=True):
            if isinstance(record, str):
                # Left out of this manifest; older checkpoints of it still hold in verify.
                unreadable.append(f"{file.name}: not sealed: {record}")
                continue
            records.append(record)
            if fresh or _changed(known, record):
                changed.append(record)
                tree.add(record, hasher)  # the tree's nodes and the kept leaves, in file order
            tally.add(record["lines"])
            total += record["lines"]
            uncovered += max(0, record["lines"] - (old[0]["lines"] if old else 0))
    return records, changed, unreadable, total, uncovered


_Job = tuple[LogFile, dict[str, Any] | None, LeafHasher]


def _job(file: LogFile, old: Any, tree: TreeBuilder) -> _Job:
    """What checkpointing `file` needs: the file, the sealed record that spares inflating it
    again, and the hasher of the lines new to the tree."""
    hasher = tree.hasher(file)
    # An archive sealed before is not inflated again, unless the tree lacks its lines.
    reuse = None
    if old and file.compressed and old[0]["name"] == file.name:
        reuse = old[0] if hasher.start >= old[0]["lines"] else None
    return file, reuse, hasher


def _checkpoint(job: _Job) -> tuple[dict[str, Any] | str, LeafHasher]:
    """One file's record (or why it cannot be read) and its hasher fed by that same read."""
    file, reuse, hasher = job
    try:
        return file_record(file, reuse, hasher), hasher
    except IntegrityError as exc:
        return str(exc), hasher


def _checkpoints(
    jobs: list[_Job], processes: int, writer: str
) -> Generator[tuple[dict[str, Any] | str, LeafHasher], None, None]:
    """`_checkpoint` of each job, in order: in `processes` forked workers when more than one
    (reading, line splitting and leaf hashing are per file), the parent meanwhile folding the
    leaves into the tree."""
    count = max(1, min(processes, len(jobs)))
    if count < 2:
        yield from map(_checkpoint, jobs)
        return
    yield from workers.forked_map(
        lambda at: _checkpoint(jobs[at]),
        range(len(jobs)),
        count,
        f"seal: a worker process died reading {writer}'s files; its chain was not sealed",
    )


def _new_bytes(jobs: list[_Job], olds: list[Any]) -> int:
    """About the bytes of the lines new to the tree that the jobs hash: a file the tree holds
    nothing of, whole; a plain file the tree holds lines of, its growth since its checkpoint;
    an archive the tree holds (rotated since) is inflated to be checkpointed, not hashed."""
    total = 0
    for (file, reuse, hasher), old in zip(jobs, olds, strict=True):
        if reuse is not None:
            continue
        try:
            size = file.path.stat().st_size
        except OSError:
            continue  # gone: its record says so
        if hasher.start == 0:
            total += size
        elif old and old[0]["name"] == file.name and not file.compressed:
            total += max(0, size - old[0].get("size", size))
    return total


def _changed(known: Known, record: dict[str, Any]) -> bool:
    key = file_key(record["name"])
    old = known.get(key) if key is not None else None
    return old is None or old[0] != record


def writer_state(
    store: AuditStore,
    writer: str,
    manifests: Iterable[Manifest] | None = None,
    receipts: Iterable[Manifest] | None = None,
) -> tuple[Known, dict[str, Any] | None, bool]:
    """The newest checkpoint of each of `writer`'s files that no retention receipt has excused
    since, from its chain (and the legacy chain before its first seal), and, when its chain is
    still empty and a legacy chain exists, the legacy chain's head that its first manifest binds;
    and whether the chain has any manifest yet. `manifests` (the chain) and `receipts` (every
    chain's): when the caller has read them already."""
    known: Known = {}
    chained = False
    for manifest in iter_manifests(store, writer) if manifests is None else manifests:
        chained = True
        fold(known, manifest, writer)
    legacy_ref = None
    if not chained:
        legacy = latest_manifest(store, None)
        if legacy is not None:
            if legacy.body is None or legacy.error:
                raise IntegrityError(
                    f"{legacy.name}: {legacy.error}; not starting {writer}'s chain on it"
                    " (run `audit verify`)"
                )
            legacy_ref = {"sequence": legacy.sequence, "hash": legacy.hash}
            for manifest in _since_last_seal(store):
                fold(known, manifest, writer, label="")
    # Receipts in other writers' chains (a log host applying retention to a merged store, or a
    # shared volume's sealer) excuse this writer's files sealed before them.
    if receipts is None:
        receipts = (
            read_manifest(path, sequence, other)
            for other, sequence, path in receipt_names(store)
            if other != writer
        )
    for receipt in receipts:
        if receipt.writer == writer or receipt.body is None or receipt.error:
            continue
        for record in receipt_records(receipt):
            key = file_key(record["name"])
            if key is not None and key in known and known[key][2] <= receipt.sealed_at:
                del known[key]
    return known, legacy_ref, chained


def _since_last_seal(store: AuditStore) -> list[Manifest]:
    """The newest readable seal of the legacy chain and the receipts after it, oldest first: it
    listed every file then, so it is all a writer's first seal compares against."""
    names, _ = manifest_names(store, None)
    found: list[Manifest] = []
    for sequence, path in reversed(names):
        manifest = read_manifest(path, sequence, None)
        found.append(manifest)
        if manifest.kind == "seal" and manifest.error is None:
            break
    return found[::-1]


def _seal_warnings(known: Known, records: list[dict[str, Any]]) -> list[str]:
    now = {file_key(r["name"]): r for r in records}
    warnings = []
    for key, (old, label, _) in sorted(known.items()):
        new = now.get(key)
        where = f"manifest {label}" if label else "the legacy chain's newest seal"
        if new is None:
            warnings.append(f"{old['name']}: in {where} but gone, with no retention receipt")
        elif new["lines"] < old["lines"]:
            warnings.append(f"{new['name']}: {new['lines']} lines, {where} recorded {old['lines']}")
        elif new["lines"] == old["lines"] and old.get("head") and new.get("head") != old["head"]:
            warnings.append(f"{new['name']}: its last line changed since {where}")
    return warnings
