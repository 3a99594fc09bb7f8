"""`seal()`: checkpoint every file of every partition in a new signed, chained manifest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditcli.errors import IntegrityError
from auditcli.store import AuditStore
from auditcli.timeparse import format_utc

from .keys import key_id, signing_key_from
from .manifests import (
    Manifest,
    append_manifest,
    file_key,
    file_record,
    manifest_lock,
    manifest_names,
    read_manifest,
    receipt_records,
    records_of,
)
from .tree import tree_fields


@dataclass
class SealResult:
    """What `seal()` wrote, and anything it noticed that contradicts the previous seal."""

    manifest: Manifest
    files: int
    lines: int
    new_lines: int
    key_id: str | None
    warnings: list[str] = field(default_factory=list)


def seal(store: AuditStore, *, signing_key: Any = None) -> SealResult:
    """Write the next manifest: a checkpoint of every file of every partition, chained to the
    previous manifest and signed when a key is given (a path, a key, or AUDIT_SIGNING_KEY).

    Writes one even when nothing changed, so a missing hour shows as a gap. Warnings (not
    errors: the manifest is written, older ones keep the evidence) name files that shrank or
    vanished since the previous seal without a retention receipt."""
    key = signing_key_from(signing_key)
    with manifest_lock(store) as directory:
        # The time is taken before listing: a file that `verify` finds missing from this
        # manifest but older than this time was hidden from the seal, or planted backdated.
        sealed_at = format_utc(store.clock())
        manifests = _since_last_seal(store)
        previous_seal = manifests[0] if manifests and manifests[0].kind == "seal" else None
        known = _latest_records(manifests)
        records = []
        total = 0
        unreadable = []
        for day in store.days():
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
        body.update(tree_fields(store, previous_seal, records))  # format 2 + the Merkle head
        manifest = append_manifest(store, directory, body, key)
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
    names, _ = manifest_names(store)
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
        for record in records_of(manifest):
            key = file_key(record["name"])
            if key:
                latest[key] = record
    return latest


def _seal_warnings(
    manifests: Sequence[Manifest], previous: Manifest | None, records: list[dict[str, Any]]
) -> list[str]:
    if previous is None:
        return []
    now = {file_key(r["name"]): r for r in records}
    receipted = {
        file_key(r["name"])
        for m in manifests
        if m.sequence > previous.sequence and m.kind == "receipt"
        for r in receipt_records(m)
    }
    warnings = []
    for old in records_of(previous):
        key = file_key(old["name"])
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
        old = known.get(file_key(record["name"]))  # type: ignore[arg-type]
        new += max(0, record["lines"] - (old["lines"] if old else 0))
    return new
