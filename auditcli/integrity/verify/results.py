"""What `verify()` reports: per store, per writer (host), and problems as text lines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from auditcli.query import Problem

LEGACY_HOST = "(legacy)"  # the row of the legacy chain; never a writer id (no parentheses)


@dataclass
class HostReport:
    """What verify found for one writer (host): its files and its own manifest chain."""

    writer: str
    in_fleet: bool | None = None  # None: no fleet file given
    chain: str = "none"  # "own", "legacy" (sealed before per-writer chains only), "none"
    files: int = 0
    entries: int = 0
    manifests: int = 0
    uncovered: int = 0
    signed: str = "none"
    key_ids: list[str] = field(default_factory=list)
    latest: dict[str, Any] | None = None
    problems: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "writer": self.writer,
            "ok": self.problems == 0,
            "inFleet": self.in_fleet,
            "chain": self.chain,
            "files": self.files,
            "entries": self.entries,
            "manifests": self.manifests,
            "uncovered": self.uncovered,
            "signatures": self.signed,
            "keyIds": self.key_ids,
            "latestManifest": self.latest,
            "problems": self.problems,
        }


@dataclass
class VerifyReport:
    """The outcome of `verify()`. `problems` empty means the store is what was written (within
    what the configuration can prove: see `notes`). `hosts`: one row per writer (and one for
    the legacy chain, if the store has one)."""

    files: int = 0
    entries: int = 0
    bytes: int = 0
    partitions: int = 0
    manifests: int = 0
    checkpoints: int = 0
    tree_heads: int = 0  # Merkle tree heads recomputed from the entries
    uncovered: int = 0
    receipted_files: int = 0
    signed: str = (
        "none"  # "verified" (by trusted keys), "embedded", "unsigned", "none" (no manifest)
    )
    key_ids: list[str] = field(default_factory=list)
    latest: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hosts: list[HostReport] = field(default_factory=list)
    fleet: str | None = None

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
            "treeHeads": self.tree_heads,
            "uncovered": self.uncovered,
            "receiptedFiles": self.receipted_files,
            "signatures": self.signed,
            "keyIds": self.key_ids,
            "latestManifest": self.latest,
            "fleet": self.fleet,
            "hosts": [host.to_dict() for host in self.hosts],
            "problems": [
                {"file": p.file, "line": p.line, "kind": p.kind, "detail": p.detail}
                for p in self.problems
            ],
            "notes": self.notes,
        }


def iter_problem_lines(problems: Iterable[Problem]) -> Iterator[str]:
    """One `file:line: kind: detail` line per problem (for plain-text output)."""
    for problem in problems:
        yield str(problem)
