"""`AuditStore.listing_names` (verify's survey: no Path per file) says what `listing` says, on
a partition holding what a live store can: plain files, a rotation caught half done (a plain
file and its `.gz` twin), a new segment, temp files, planted names and a directory."""

from __future__ import annotations

import gzip
from pathlib import Path

from auditcli.store import AuditStore


def test_listing_names_is_listing_without_paths(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "logs", writer_id="web1")
    day = "2026-11-18"
    store.append(
        [
            {
                "action": "login",
                "actorId": "u",
                "organizationId": "o",
                "createdAt": f"{day}T08:00:00Z",
            }
        ]
    )
    partition = store.root / f"date={day}"
    plain = (partition / "web1.jsonl").read_bytes()
    (partition / "web2.jsonl").write_bytes(plain)
    (partition / "web2.jsonl.gz").write_bytes(gzip.compress(plain))  # rotation half done
    (partition / "web1+2.jsonl.gz").write_bytes(gzip.compress(plain))
    (partition / ".web1.jsonl.123.tmp").write_bytes(b"")
    (partition / "notes.txt").write_bytes(b"planted")
    (partition / "bad name!.jsonl").write_bytes(plain)
    (partition / "sub").mkdir()

    files, strays = store.listing(day)
    names, stray_names = store.listing_names(day)

    assert names == [(f.segment, f.compressed) for f in files]
    assert names == [("web1", False), ("web1+2", True), ("web2", True)]
    assert stray_names == [p.name for p in strays]
    assert stray_names == ["bad name!.jsonl", "notes.txt", "sub"]
    assert store.listing_names("2026-01-01") == ([], [])  # no such partition
