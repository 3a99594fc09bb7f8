"""What the trusted history (seals, receipts) says about one file key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from auditcli.integrity.constants import (
    _TAGGED,
)

#: How a checkpoint names the manifest that made it: (order verify read it in, `#5`).
Label = tuple[int, str]


@dataclass
class FileHistory:
    """What the trusted history says about one file key (since its last retention receipt)."""

    by_line: dict[int, dict[bytes, Label]] = field(default_factory=dict)  # lines->head hex->label
    last_listed: Label | None = None  # the last manifest listing the key
    name: str = ""
    archives: dict[str, tuple[str, Label]] = field(default_factory=dict)  # gz name -> (sha, label)
    torn: set[tuple[int, int]] = field(default_factory=set)
    # After a retention receipt: the history it closed and the file it recorded. A copy that
    # outlives the deletion (a central store keeping longer than the host) is checked against it.
    retired: FileHistory | None = None
    receipt: Mapping[str, Any] | None = None
    #: Every seal since the receipt saw the file exactly as the receipt counted it: one that
    #: ran between a receipt and its deletion (before the two were made one step), so the
    #: file being gone is still the receipt's deletion.
    as_receipted: bool = True

    def note_listed(self, record: Mapping[str, Any]) -> None:
        """A seal lists the file again: does it see what the receipt before it counted?"""
        receipt = self.receipt
        if receipt is None or (record["lines"], record.get("head")) != (
            receipt.get("lines"),
            receipt.get("head"),
        ):
            self.as_receipted = False

    def deleted_as_planned(self) -> bool:
        """Whether the file being gone is a receipt's deletion: no seal listed it since the
        receipt, or every one that did saw exactly what the receipt counted."""
        return self.last_listed is None or (self.receipt is not None and self.as_receipted)

    def add(self, record: Mapping[str, Any], label: Label) -> None:
        """A seal's record of the file: its line count's head, archive and torn tail."""
        self.last_listed = label
        self.name = record["name"]
        head = record.get("head")
        hexhead = head[7:].encode() if isinstance(head, str) and _TAGGED.fullmatch(head) else b""
        self.by_line.setdefault(record["lines"], {}).setdefault(hexhead, label)
        archive = record.get("archive")
        if isinstance(archive, dict) and isinstance(archive.get("sha256"), str):
            self.archives[record["name"]] = (archive["sha256"], label)
        torn = record.get("torn")
        if isinstance(torn, dict):
            self.torn.add((torn.get("line"), torn.get("bytes")))  # type: ignore[arg-type]

    def max_lines(self) -> int:
        """The most lines any seal counted in the file."""
        return max(self.by_line, default=0)
