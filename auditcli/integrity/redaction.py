"""Redaction receipts and the rule `verify` applies to a line that is not what its chain link
committed to: accepted exactly when a trusted, *signed* redaction receipt names that line with
the SHA-256 of its current bytes and

* version 2 (salted commitments): the line's commitments still give its stated link, so only
  personal values changed; or
* version 1 (a store not redactable when written): there is no way to tell which fields
  changed, so the line is accepted only as a whole-line replacement that the receipt's signer
  vouches for.

A receipt is a manifest of kind `receipt`, `receipt.action` = `redact`::

    {"action": "redact", "reason": "…", "operator": "…", "fields": ["actorEmail", …],
     "lines": [{"name": "date=…/web-1.jsonl", "line": 3, "old": "sha256:…", "new": "sha256:…",
                "oldLeaf": "sha256:…"}, …],
     "archives": [{"name": "date=…/web-1.jsonl.gz", "sha256": "sha256:…", "size": 1234}]}

`old`/`new`: SHA-256 of the stored line (newline included) before and after; `oldLeaf`: the
line's Merkle leaf hash before (seals made before the redaction signed that leaf); `archives`:
the digest of each rewritten `.gz`, which replaces what earlier seals recorded for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from auditcli import chain
from auditcli.commitments import BadBlock, link_input

from .manifests import Manifest, file_key

FileKey = tuple[str, str]


@dataclass
class Redactions:
    """What the trusted, signed redaction receipts of a store allow, by file key."""

    #: file key -> line number -> tagged SHA-256 of the lines the receipts produced.
    lines: dict[FileKey, dict[int, set[str]]] = field(default_factory=dict)
    #: file key -> line number -> [(receipt sealedAt, tagged leaf hash before it)].
    leaves: dict[FileKey, dict[int, list[tuple[str, str]]]] = field(default_factory=dict)
    #: archive name -> tagged SHA-256 of the archives the receipts wrote.
    archives: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, receipts: Iterable[tuple[Manifest, bool]]) -> Redactions:
        """From `(receipt manifest, trusted)` pairs: only trusted, signed redaction receipts
        count (an unsigned one excuses nothing, whatever the chain)."""
        found = cls()
        for manifest, trusted in receipts:
            receipt = (manifest.body or {}).get("receipt")
            if not trusted or manifest.signature is None or not isinstance(receipt, dict):
                continue
            if not is_redaction(receipt):
                continue
            for record in _records(receipt, "lines"):
                key = file_key(str(record.get("name")))
                number = record.get("line")
                if key is None or not isinstance(number, int):
                    continue
                found.lines.setdefault(key, {}).setdefault(number, set()).add(str(record["new"]))
                leaf = record.get("oldLeaf")
                if isinstance(leaf, str):
                    found.leaves.setdefault(key, {}).setdefault(number, []).append(
                        (manifest.sealed_at, leaf)
                    )
            for record in _records(receipt, "archives"):
                found.archives.setdefault(str(record.get("name")), set()).add(
                    str(record.get("sha256"))
                )
        return found

    def archive_ok(self, name: str, digest: str) -> bool:
        """Whether a redaction receipt wrote archive `name` with this SHA-256."""
        return digest in self.archives.get(name, ())

    def sealed_leaves(
        self, key: FileKey | None, start: int, leaves: bytes, sealed_at: str
    ) -> bytes:
        """`leaves` (concatenated, of the file's lines from 0-based `start`) as a seal made at
        `sealed_at` signed them: a line redacted after it has the leaf from before."""
        redacted = self.leaves.get(key) if key is not None else None
        if not redacted:
            return leaves
        out = bytearray(leaves)
        for number, history in redacted.items():
            at = (number - 1 - start) * 32
            if not 0 <= at < len(leaves):
                continue
            for when, leaf in sorted(history):
                if when > sealed_at:  # the first redaction after the seal had its leaf
                    out[at : at + 32] = bytes.fromhex(leaf.removeprefix("sha256:"))
                    break
        return bytes(out)


def is_redaction(receipt: Any) -> bool:
    """Whether a manifest's `receipt` member is a redaction receipt."""
    return isinstance(receipt, dict) and receipt.get("action") == "redact"


def line_accepted(
    previous: bytes, line: bytes, number: int, covered: Mapping[int, set[str]] | None
) -> bool:
    """Whether stored `line` (without its newline) at `number`, following link `previous`,
    whose plain version 1 link did not match, is sound: a version 2 line whose commitments
    give its stated link (and, once redacted, a receipt names its bytes), or a version 1 line
    a receipt names as a whole-line replacement."""
    parsed = chain.split_line(line + b"\n")
    if parsed is None:
        return False
    try:
        form = link_input(parsed[0])
    except BadBlock:
        return False
    if form is not None and chain.link(previous, form[0]) != parsed[1]:
        return False
    if form is not None and not form[1]:
        return True  # version 2, never redacted
    digest = "sha256:" + hashlib.sha256(line + b"\n").hexdigest()
    return covered is not None and digest in covered.get(number, ())


def hashed_input(line: bytes) -> bytes:
    """What stored `line` (without its newline) hashes after the previous link: its content
    (version 1, or a malformed block), else its committed form (version 2)."""
    content = line[: 1 - chain.SUFFIX_LEN] + b"}"
    try:
        form = link_input(content)
    except BadBlock:
        return content
    return content if form is None else form[0]


def _records(receipt: Mapping[str, Any], member: str) -> list[Mapping[str, Any]]:
    records = receipt.get(member)
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
