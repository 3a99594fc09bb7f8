"""Retention receipts: a manifest of kind `receipt` that names the files retention deletes,
so a planned deletion is told apart from tampering."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from auditcli import chain
from auditcli.errors import UsageError
from auditcli.store import PARTITION_PREFIX, AuditStore
from auditcli.timeparse import format_utc

from .keys import signing_key_from
from .manifests import append_manifest, file_key, manifest_lock
from .tree import keep_leaves


def write_receipt(
    store: AuditStore,
    day: str,
    files: list[dict[str, Any]],
    reason: str,
    *,
    action: str = "delete",
    signing_key: Any = None,
    writer: str | None = None,
    then: Callable[[], None] | None = None,
) -> str:
    """Record in the manifest chain that the files of partition `day` are deleted on purpose
    (`action="delete"`), or only noted (`action="compress"`: no effect on checks, since a gzip
    twin with the same lines already verifies).

    The receipt goes into the chain of `writer` (default: the store's writer id), the one
    doing the deletion, whoever wrote the files: on a host that is the host's own chain; on a
    merged store, the log host's own chain, since appending to a host's chain there would fork
    it against the host's next seal when the copies merge.

    Call it *before* deleting (if it fails, do not delete). A deletion first makes sure the
    kept Merkle leaf hashes of the files are there and right (`tree.keep_leaves`): after it
    they are the only copy of those leaves, which later proofs need. `files`: one dict per file, as
    `file_record()` / `partition_records()` return them: `name` (`host.jsonl[.gz]` or
    `date=…/host.jsonl[.gz]`), `lines`, `head` (or `last_link`: the tagged last link), `size`,
    and `sha256` (of the bytes on disk) or `archive: {size, sha256}`. Signed like a seal (a key,
    a path, or AUDIT_SIGNING_KEY). `then` (the deletion itself) runs once the receipt is
    written, still under the store's manifest lock: no seal of any writer's chain runs between
    a receipt and its deletion, so no seal lists files that a receipt before it already counts
    as deleted.
    Returns the receipt manifest's hash."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise UsageError(f"receipt: day {day!r} is not YYYY-MM-DD")
    if action not in ("delete", "compress"):
        raise UsageError(f"receipt: action {action!r} is not delete or compress")
    key = signing_key_from(signing_key)
    normalised = [_normalise_receipt_file(day, record) for record in files]
    chain_writer = writer or store.writer_id
    with manifest_lock(store):
        body = {
            "kind": "receipt",
            "sealedAt": format_utc(store.clock()),
            "receipt": {"action": action, "day": day, "reason": str(reason), "files": normalised},
        }
        if action == "delete":
            # The kept leaf hashes become the only copy of the deleted lines' tree leaves.
            keep_leaves(store, [record["name"] for record in normalised])
        manifest = append_manifest(store, chain_writer, body, key)
        if then is not None:
            then()
    return manifest.hash or ""


def _normalise_receipt_file(day: str, record: Mapping[str, Any]) -> dict[str, Any]:
    raw_name = str(record.get("name") or record.get("path") or "")
    base = raw_name.rsplit("/", 1)[-1]
    name = f"{PARTITION_PREFIX}{day}/{base}"
    if file_key(name) is None:
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
