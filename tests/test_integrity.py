"""Tamper evidence: every kind of tampering, done to a real store, is detected and
named; untouched stores verify clean (also unsealed, rotated, or being appended to)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from auditcli import chain, integrity
from auditcli.cli import app
from auditcli.errors import IntegrityError, UsageError
from auditcli.integrity import (
    generate_keys,
    latest_manifest_hash,
    load_public_key,
    partition_records,
    seal,
    verify,
    write_receipt,
)
from auditcli.model import build_entry, dumps_entry
from auditcli.store import AuditStore

DAY, DAY2 = "2026-11-20", "2026-11-21"


def _entries(count: int, day: str = DAY, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "action": "login",
            "actorId": f"u-{i}",
            "organizationId": "org-1",
            "createdAt": f"{day}T08:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
        }
        for i in range(start, start + count)
    ]


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    """A store with 10 entries in one file of one partition."""
    store = AuditStore(tmp_path / "logs", writer_id="host1")
    store.append(_entries(10))
    return store


def _path(store: AuditStore, day: str = DAY, segment: str = "host1", ext: str = ".jsonl") -> Path:
    return store.root / f"date={day}" / f"{segment}{ext}"


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _kinds(report: integrity.VerifyReport) -> set[str]:
    return {p.kind for p in report.problems}


def _where(report: integrity.VerifyReport, kind: str) -> list[tuple[str, int | None]]:
    return [(p.file, p.line) for p in report.problems if p.kind == kind]


def _manifests(store: AuditStore) -> list[Path]:
    return sorted((store.root / "_manifests" / store.writer_id).glob("*.json"))


def _seal_all(store: AuditStore) -> None:
    """What `audit seal` does on a shared volume: seal every writer, each into its own chain."""
    integrity.seal_writers(store, integrity.default_writers(store)[0])


def _forged_line(store: AuditStore, previous_line: bytes, **fields: Any) -> bytes:
    """A new entry chained properly after `previous_line`: what an attacker without any key
    can compute."""
    data = {
        "action": "login",
        "actorId": "mallory",
        "organizationId": "org-1",
        "createdAt": f"{DAY}T09:00:00.000Z",
        **fields,
    }
    content = dumps_entry(build_entry(data, store.catalog))
    parsed = chain.split_line(previous_line)
    assert parsed is not None
    return chain.chained_line(content, chain.link(parsed[1], content))


def _rewrite_manifest(path: Path, change: Any, *, rehash: bool) -> None:
    envelope = orjson.loads(path.read_bytes())
    change(envelope["manifest"])
    if rehash:
        envelope["hash"] = integrity.body_hash(integrity.canonical(envelope["manifest"]))
    path.write_bytes(orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS))


# ================================================================================ clean stores
class TestCleanStores:
    def test_an_unsealed_store_verifies_with_a_warning(self, store: AuditStore) -> None:
        report = verify(store)
        assert report.ok, report.problems
        assert (report.files, report.entries, report.uncovered, report.manifests) == (1, 10, 10, 0)
        assert any("never been sealed" in note for note in report.notes)

    def test_a_sealed_store_verifies_clean_and_counts_checkpoints(self, store: AuditStore) -> None:
        seal(store)
        AuditStore(store.root, writer_id="host2").append(_entries(3, DAY2))
        # A shared volume: one host seals every writer, each into its own chain.
        results = integrity.seal_writers(store, integrity.store_writers(store))
        assert [(r.writer, r.manifest.sequence) for r in results] == [("host1", 2), ("host2", 1)]
        assert results[0].changed == 0  # host1's file did not change: its manifest lists none
        store.append(_entries(2, DAY2, start=50))
        report = verify(store)
        assert report.ok, report.problems
        assert (report.files, report.entries, report.manifests) == (3, 15, 3)
        assert report.uncovered == 2  # host1's two newest entries of DAY2
        hosts = {h.writer: (h.files, h.entries, h.manifests, h.uncovered) for h in report.hosts}
        assert hosts == {"host1": (2, 12, 2, 2), "host2": (1, 3, 1, 0)}
        assert report.signed == "unsigned"
        assert any("unsigned" in note for note in report.notes)

    def test_a_seal_is_written_even_when_nothing_changed(self, store: AuditStore) -> None:
        first = seal(store)
        second = seal(store)
        assert (first.manifest.sequence, second.manifest.sequence) == (1, 2)
        assert second.manifest.body["previous"] == first.manifest.hash
        assert second.new_lines == 0
        assert [p.name[:10] for p in _manifests(store)] == ["000000001-", "000000002-"]
        assert latest_manifest_hash(store) == second.manifest.hash

    def test_a_plain_file_replaced_by_its_gzip_twin_still_verifies(self, store: AuditStore) -> None:
        seal(store)
        plain = _path(store)
        _path(store, ext=".jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
        assert verify(store).ok
        sealed = seal(store)
        assert not sealed.warnings
        record = sealed.manifest.body["files"][0]
        assert record["name"].endswith(".jsonl.gz") and record["archive"]["sha256"].startswith(
            "sha256:"
        )
        report = verify(store)
        assert report.ok, report.problems
        assert report.entries == 10

    def test_entries_appended_after_the_seal_are_not_an_alarm(self, store: AuditStore) -> None:
        seal(store)
        store.append(_entries(5, start=100))
        report = verify(store)
        assert report.ok and report.uncovered == 5


# ================================================================================ lines
class TestLineTampering:
    @pytest.fixture(autouse=True)
    def _sealed(self, store: AuditStore) -> None:
        seal(store)

    def test_an_edited_field_is_an_altered_entry(self, store: AuditStore) -> None:
        path = _path(store)
        lines = _lines(path)
        assert b'"actorId":"u-4"' in lines[4]
        lines[4] = lines[4].replace(b'"actorId":"u-4"', b'"actorId":"u-7"')
        path.write_bytes(b"".join(lines))
        report = verify(store)
        assert _where(report, "altered entry") == [(f"date={DAY}/host1.jsonl", 5)]
        assert _kinds(report) == {"altered entry"}

    def test_a_deleted_line_is_named(self, store: AuditStore) -> None:
        path = _path(store)
        lines = _lines(path)
        del lines[3]
        path.write_bytes(b"".join(lines))
        report = verify(store)
        assert _where(report, "deleted line") == [(f"date={DAY}/host1.jsonl", 4)]
        assert _kinds(report) == {"deleted line"}

    def test_an_inserted_line_is_named_even_when_its_link_is_forged(
        self, store: AuditStore
    ) -> None:
        path = _path(store)
        lines = _lines(path)
        lines.insert(6, _forged_line(store, lines[5]))
        path.write_bytes(b"".join(lines))
        report = verify(store)
        assert _where(report, "inserted line") == [(f"date={DAY}/host1.jsonl", 7)]
        assert _kinds(report) == {"inserted line"}

    def test_an_inserted_line_with_a_made_up_link_is_named(self, store: AuditStore) -> None:
        path = _path(store)
        lines = _lines(path)
        forged = _forged_line(store, lines[1])
        lines.insert(3, forged[: -chain.SUFFIX_LEN + 18] + b"ab" * 32 + b'"}\n')
        path.write_bytes(b"".join(lines))
        report = verify(store)
        assert _where(report, "inserted line") == [(f"date={DAY}/host1.jsonl", 4)]

    def test_a_duplicated_line_is_named(self, store: AuditStore) -> None:
        path = _path(store)
        lines = _lines(path)
        lines.insert(7, lines[2])
        path.write_bytes(b"".join(lines))
        report = verify(store)
        assert _where(report, "duplicated line") == [(f"date={DAY}/host1.jsonl", 8)]
        assert "line 3" in report.problems[0].detail
        assert _kinds(report) == {"duplicated line"}

    def test_reordered_lines_are_named(self, store: AuditStore) -> None:
        path = _path(store)
        lines = _lines(path)
        lines[3], lines[4] = lines[4], lines[3]
        path.write_bytes(b"".join(lines))
        report = verify(store)
        assert _where(report, "reordered line") == [(f"date={DAY}/host1.jsonl", 4)]
        assert _kinds(report) == {"reordered line"}

    def test_a_line_moved_far_back_is_one_reorder(self, store: AuditStore) -> None:
        path = _path(store)
        lines = _lines(path)
        lines.insert(1, lines.pop(8))
        path.write_bytes(b"".join(lines))
        assert _kinds(verify(store)) == {"reordered line"}

    def test_a_truncated_file_is_named_even_after_a_reseal(self, store: AuditStore) -> None:
        path = _path(store)
        path.write_bytes(b"".join(_lines(path)[:7]))
        report = verify(store)
        assert _where(report, "truncated file") == [(f"date={DAY}/host1.jsonl", 8)]
        resealed = seal(store)  # the journald re-seal attack: the old checkpoint still holds
        assert any("7 lines" in w for w in resealed.warnings)
        report = verify(store)
        assert _kinds(report) == {"truncated file"}
        assert "manifest #1 checkpointed 10" in report.problems[0].detail

    def test_a_chain_recomputed_after_an_edit_is_a_rewritten_file(self, store: AuditStore) -> None:
        path = _path(store)
        lines = _lines(path)
        previous = chain.genesis(f"date={DAY}", "host1")
        rebuilt = []
        for number, line in enumerate(lines):
            content = chain.content_of(line)
            if number == 2:
                content = content.replace(b'"actorId":"u-2"', b'"actorId":"u-x"')
            previous = chain.link(previous, content)
            rebuilt.append(chain.chained_line(content, previous))
        path.write_bytes(b"".join(rebuilt))
        report = verify(store)
        assert _kinds(report) == {"rewritten file"}
        assert _where(report, "rewritten file") == [(f"date={DAY}/host1.jsonl", 10)]

    def test_a_torn_final_line_is_named(self, store: AuditStore) -> None:
        path = _path(store)
        with path.open("ab") as handle:
            handle.write(b'{"id":"0193-half-a-line')
        report = verify(store)
        assert _where(report, "torn line") == [(f"date={DAY}/host1.jsonl", 11)]

    def test_a_malformed_line_is_named(self, store: AuditStore) -> None:
        path = _path(store)
        lines = _lines(path)
        lines.insert(2, b"not json at all\n")
        path.write_bytes(b"".join(lines))
        report = verify(store)
        assert _where(report, "malformed line") == [(f"date={DAY}/host1.jsonl", 3)]

    def test_flipping_any_single_byte_is_detected(self, tmp_path: Path) -> None:
        small = AuditStore(tmp_path / "small", writer_id="w")
        small.append(_entries(2))
        seal(small)
        path = _path(small, segment="w")
        original = path.read_bytes()
        missed = []
        for offset in range(len(original)):
            flipped = bytearray(original)
            flipped[offset] ^= 0x01
            path.write_bytes(bytes(flipped))
            report = verify(small)
            if report.ok or not any(
                p.file.startswith(f"date={DAY}/w.jsonl") for p in report.problems
            ):
                missed.append(offset)
        path.write_bytes(original)
        assert verify(small).ok
        assert not missed, f"undetected flips at offsets {missed[:20]} of {len(original)}"

    def test_flipping_any_single_byte_of_a_sealed_archive_is_detected(self, tmp_path: Path) -> None:
        small = AuditStore(tmp_path / "small", writer_id="w")
        small.append(_entries(2))
        plain = _path(small, segment="w")
        gz = _path(small, segment="w", ext=".jsonl.gz")
        gz.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
        seal(small)
        original = gz.read_bytes()
        missed = []
        for offset in range(len(original)):
            flipped = bytearray(original)
            flipped[offset] ^= 0x01
            gz.write_bytes(bytes(flipped))
            if verify(small).ok:
                missed.append(offset)
        gz.write_bytes(original)
        assert verify(small).ok
        assert not missed, f"undetected flips at offsets {missed[:20]} of {len(original)}"

    def test_a_torn_line_present_at_the_seal_is_a_note(self, store: AuditStore) -> None:
        with _path(store).open("ab") as handle:
            handle.write(b'{"id":"crash')
        assert _kinds(verify(store)) == {"torn line"}
        seal(store)
        report = verify(store)
        assert report.ok
        assert any(f"date={DAY}/host1.jsonl:11" in note for note in report.notes)
        with _path(store).open("ab") as handle:
            handle.write(b"more")
        assert _kinds(verify(store)) == {"torn line"}


# ================================================================================ files
class TestFileTampering:
    def test_a_deleted_file_is_named(self, store: AuditStore) -> None:
        AuditStore(store.root, writer_id="host2").append(_entries(3))
        _seal_all(store)
        _path(store, segment="host2").unlink()
        report = verify(store)
        assert _where(report, "deleted file") == [(f"date={DAY}/host2.jsonl", None)]

    def test_a_deleted_partition_is_named(self, store: AuditStore) -> None:
        store.append(_entries(4, DAY2))
        seal(store)
        shutil.rmtree(store.root / f"date={DAY2}")
        report = verify(store)
        assert _where(report, "deleted partition") == [(f"date={DAY2}", None)]
        assert _kinds(report) == {"deleted partition"}

    def test_a_file_deleted_before_a_reseal_is_still_named(self, store: AuditStore) -> None:
        store.append(_entries(4, DAY2))
        seal(store)
        shutil.rmtree(store.root / f"date={DAY2}")
        assert seal(store).warnings
        assert _kinds(verify(store)) == {"deleted partition"}

    def test_a_planted_backdated_file_is_named(self, store: AuditStore) -> None:
        sealed = seal(store)
        AuditStore(store.root, writer_id="evil").append(_entries(2, start=300))
        planted = _path(store, segment="evil")
        old = time.time() - 3600
        os.utime(planted, (old, old))
        report = verify(store)
        assert _where(report, "planted file") == [(f"date={DAY}/evil.jsonl", None)]
        assert f"#{sealed.manifest.sequence}" in report.problems[0].detail

    def test_a_new_file_after_the_seal_is_uncovered_not_planted(self, store: AuditStore) -> None:
        seal(store)
        AuditStore(store.root, writer_id="host2").append(_entries(2, start=300))
        report = verify(store)
        assert report.ok and report.uncovered == 2

    def test_a_file_copied_into_another_partition_is_named(self, store: AuditStore) -> None:
        seal(store)
        (store.root / f"date={DAY2}").mkdir()
        shutil.copy(_path(store), _path(store, DAY2))
        report = verify(store)
        assert (f"date={DAY2}/host1.jsonl", 1) in _where(report, "moved file")
        moved = next(p for p in report.problems if p.kind == "moved file")
        assert f"date={DAY}/host1" in moved.detail
        assert "misplaced entry" in _kinds(report)

    def test_a_file_renamed_in_its_partition_is_named(self, store: AuditStore) -> None:
        seal(store)
        _path(store).rename(_path(store, segment="host3"))
        report = verify(store)
        assert _where(report, "moved file") == [(f"date={DAY}/host3.jsonl", 1)]
        assert _where(report, "deleted file") == [(f"date={DAY}/host1.jsonl", None)]

    def test_a_stray_file_in_a_partition_is_named(self, store: AuditStore) -> None:
        (store.root / f"date={DAY}" / "+evil.jsonl").write_bytes(b"{}\n")
        assert _where(verify(store), "stray file") == [(f"date={DAY}/+evil.jsonl", None)]

    def test_bytes_after_the_gzip_member_are_named(self, store: AuditStore) -> None:
        plain = _path(store)
        gz = _path(store, ext=".jsonl.gz")
        gz.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
        seal(store)
        with gz.open("ab") as handle:
            handle.write(b"smuggled\n")
        report = verify(store)
        assert (f"date={DAY}/host1.jsonl.gz", None) in _where(report, "trailing data")
        assert "altered archive" in _kinds(report)

    def test_a_gzip_member_appended_to_an_archive_is_read_and_named(
        self, store: AuditStore
    ) -> None:
        # Concatenated members are one gzip file (zcat reads them all): so does verify.
        plain = _path(store)
        gz = _path(store, ext=".jsonl.gz")
        gz.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
        seal(store)
        with gz.open("ab") as handle:
            handle.write(gzip.compress(b"smuggled\n"))
        report = verify(store)
        assert _where(report, "malformed line") == [(f"date={DAY}/host1.jsonl.gz", 11)]
        assert "altered archive" in _kinds(report)

    def test_a_recompressed_archive_is_named(self, store: AuditStore) -> None:
        plain = _path(store)
        gz = _path(store, ext=".jsonl.gz")
        data = plain.read_bytes()
        gz.write_bytes(gzip.compress(data, compresslevel=9))
        plain.unlink()
        seal(store)
        gz.write_bytes(gzip.compress(data, compresslevel=1))
        assert _kinds(verify(store)) == {"altered archive"}

    def test_only_partitions_in_the_range_are_checked(self, store: AuditStore) -> None:
        store.append(_entries(4, DAY2))
        seal(store)
        shutil.rmtree(store.root / f"date={DAY2}")
        assert verify(store, last_day=DAY).ok
        assert not verify(store, first_day=DAY2).ok


# ================================================================================ retention
class TestRetentionReceipts:
    def test_a_receipted_deletion_is_not_tampering(self, store: AuditStore) -> None:
        store.append(_entries(4, DAY2))
        seal(store)
        digest = write_receipt(store, DAY, partition_records(store, DAY), "older than 90 days")
        shutil.rmtree(store.root / f"date={DAY}")
        report = verify(store)
        assert report.ok, report.problems
        assert report.receipted_files == 1
        assert latest_manifest_hash(store) == digest
        seal(store)
        assert verify(store).ok

    def test_maintenance_style_facts_are_accepted(self, store: AuditStore) -> None:
        seal(store)
        record = partition_records(store, DAY)[0]
        facts = {
            "name": record["name"],
            "lines": record["lines"],
            "last_link": record["head"],
            "size": record["size"],
            "sha256": "sha256:" + "0" * 64,
        }
        write_receipt(store, DAY, [facts], "retention")
        shutil.rmtree(store.root / f"date={DAY}")
        assert verify(store).ok

    def test_a_receipt_for_fewer_lines_than_sealed_is_named(self, store: AuditStore) -> None:
        seal(store)
        record = {**partition_records(store, DAY)[0], "lines": 4}
        write_receipt(store, DAY, [record], "retention")
        shutil.rmtree(store.root / f"date={DAY}")
        assert _kinds(verify(store)) == {"receipt mismatch"}

    def test_a_partition_recreated_after_its_receipt_verifies(self, store: AuditStore) -> None:
        seal(store)
        write_receipt(store, DAY, partition_records(store, DAY), "retention")
        shutil.rmtree(store.root / f"date={DAY}")
        store.append(_entries(2, start=500))  # a late entry for the deleted day
        seal(store)
        report = verify(store)
        assert report.ok, report.problems

    def test_an_unsigned_receipt_does_not_excuse_a_deletion_in_a_signed_chain(
        self, store: AuditStore, tmp_path: Path
    ) -> None:
        generate_keys(tmp_path / "k")
        seal(store, signing_key=tmp_path / "k")
        write_receipt(
            store, DAY, partition_records(store, DAY), "forged by someone without the key"
        )
        shutil.rmtree(store.root / f"date={DAY}")
        report = verify(store, public_keys=[load_public_key(tmp_path / "k.pub")])
        assert {"unsigned manifest", "deleted partition"} <= _kinds(report)


# ================================================================================ manifests
class TestManifestTampering:
    @pytest.fixture
    def chained(self, store: AuditStore) -> list[Path]:
        for count in range(4):
            store.append(_entries(1, start=200 + count))
            seal(store)
        return _manifests(store)

    def test_a_deleted_manifest_is_named(self, store: AuditStore, chained: list[Path]) -> None:
        chained[1].unlink()
        report = verify(store)
        assert _kinds(report) == {"deleted manifest"}
        assert "#2 missing" in report.problems[0].detail

    def test_two_consecutive_deleted_manifests_are_named(
        self, store: AuditStore, chained: list[Path]
    ) -> None:
        chained[1].unlink()
        chained[2].unlink()
        report = verify(store)
        assert _kinds(report) == {"deleted manifest"}
        assert "#2–#3" in report.problems[0].detail

    def test_the_first_manifest_deleted_is_named(
        self, store: AuditStore, chained: list[Path]
    ) -> None:
        chained[0].unlink()
        assert _kinds(verify(store)) == {"deleted manifest"}

    def test_an_altered_manifest_is_named(self, store: AuditStore, chained: list[Path]) -> None:
        def lie(body: dict[str, Any]) -> None:
            body["files"][0]["lines"] = 5

        _rewrite_manifest(chained[1], lie, rehash=False)
        report = verify(store)
        assert ("_manifests/host1/" + chained[1].name, None) in _where(report, "altered manifest")

    def test_an_altered_and_rehashed_manifest_breaks_the_chain(
        self, store: AuditStore, chained: list[Path]
    ) -> None:
        _rewrite_manifest(chained[1], lambda body: body["files"][0].update(lines=5), rehash=True)
        report = verify(store)
        assert _where(report, "altered manifest") == [("_manifests/host1/" + chained[1].name, None)]
        assert "#3 chains to" in report.problems[0].detail

    def test_reordered_manifests_are_named(self, store: AuditStore, chained: list[Path]) -> None:
        a, b = chained[1], chained[2]
        tmp = a.with_name("swap")
        a.rename(tmp)
        b.rename(a)
        tmp.rename(b)
        assert "altered manifest" in _kinds(verify(store))

    def test_a_stray_file_among_manifests_is_named(
        self, store: AuditStore, chained: list[Path]
    ) -> None:
        (store.root / "_manifests" / "notes.txt").write_text("hi")
        assert _kinds(verify(store)) == {"stray file"}

    def test_the_anchor_must_be_in_the_chain(self, store: AuditStore, chained: list[Path]) -> None:
        newest = latest_manifest_hash(store)
        assert newest is not None
        assert verify(store, anchor=newest).ok
        chained[-1].unlink()  # deleting the newest manifest leaves no gap; the anchor shows it
        assert verify(store).ok
        assert _kinds(verify(store, anchor=newest)) == {"anchor not found"}

    def test_a_stale_or_missing_seal_is_named_when_asked(self, store: AuditStore) -> None:
        assert _kinds(verify(store, max_seal_age_since="2000-01-01T00:00:00.000Z")) == {
            "stale seal"
        }
        seal(store)
        assert verify(store, max_seal_age_since="2000-01-01T00:00:00.000Z").ok
        assert _kinds(verify(store, max_seal_age_since="2999-01-01T00:00:00.000Z")) == {
            "stale seal"
        }

    def test_sealing_on_a_damaged_manifest_is_refused(
        self, store: AuditStore, chained: list[Path]
    ) -> None:
        chained[-1].write_bytes(b"{broken")
        with pytest.raises(IntegrityError):
            seal(store)


# ================================================================================ signatures
class TestSignatures:
    @pytest.fixture
    def keys(self, tmp_path: Path) -> tuple[Path, Path]:
        generate_keys(tmp_path / "a")
        generate_keys(tmp_path / "b")
        return tmp_path / "a", tmp_path / "b"

    def test_signed_manifests_verify_with_the_public_key(
        self, store: AuditStore, keys: tuple[Path, Path]
    ) -> None:
        seal(store, signing_key=keys[0])
        seal(store, signing_key=keys[0])
        report = verify(store, public_keys=[load_public_key(f"{keys[0]}.pub")])
        assert report.ok and report.signed == "verified"
        embedded = verify(store)
        assert embedded.ok and embedded.signed == "embedded"
        assert any("--public-key" in note for note in embedded.notes)

    def test_the_signing_key_may_come_from_the_environment(
        self, store: AuditStore, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AUDIT_SIGNING_KEY", str(keys[0]))
        assert seal(store).key_id is not None
        assert verify(store, public_keys=[load_public_key(f"{keys[0]}.pub")]).ok

    def test_a_manifest_signed_by_another_key_is_named(
        self, store: AuditStore, keys: tuple[Path, Path]
    ) -> None:
        seal(store, signing_key=keys[1])
        report = verify(store, public_keys=[load_public_key(f"{keys[0]}.pub")])
        assert _kinds(report) == {"wrong signing key"}

    def test_a_key_change_midway_is_named_without_a_public_key(
        self, store: AuditStore, keys: tuple[Path, Path]
    ) -> None:
        seal(store, signing_key=keys[0])
        seal(store, signing_key=keys[1])
        assert _kinds(verify(store)) == {"wrong signing key"}
        both = [load_public_key(f"{k}.pub") for k in keys]
        assert verify(store, public_keys=both).ok

    def test_an_unsigned_manifest_after_signed_ones_is_named(
        self, store: AuditStore, keys: tuple[Path, Path]
    ) -> None:
        seal(store, signing_key=keys[0])
        seal(store)
        assert _kinds(verify(store)) == {"unsigned manifest"}

    def test_unsigned_manifests_fail_when_a_public_key_is_given(
        self, store: AuditStore, keys: tuple[Path, Path]
    ) -> None:
        seal(store)
        assert _kinds(verify(store, public_keys=[load_public_key(f"{keys[0]}.pub")])) == {
            "unsigned manifest"
        }

    def test_an_altered_latest_signed_manifest_is_named(
        self, store: AuditStore, keys: tuple[Path, Path]
    ) -> None:
        seal(store, signing_key=keys[0])
        newest = _manifests(store)[-1]
        _rewrite_manifest(newest, lambda body: body["files"][0].update(lines=3), rehash=True)
        report = verify(store, public_keys=[load_public_key(f"{keys[0]}.pub")])
        assert _where(report, "bad signature") == [("_manifests/host1/" + newest.name, None)]

    def test_a_public_key_with_no_manifest_at_all_is_a_problem(
        self, store: AuditStore, keys: tuple[Path, Path]
    ) -> None:
        report = verify(store, public_keys=[load_public_key(f"{keys[0]}.pub")])
        assert _kinds(report) == {"deleted manifest"}

    def test_generated_keys_are_private_and_not_overwritten(self, keys: tuple[Path, Path]) -> None:
        assert keys[0].stat().st_mode & 0o777 == 0o600
        assert Path(f"{keys[0]}.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
        with pytest.raises(UsageError):
            generate_keys(keys[0])


# ================================================================================ live files
def test_an_appender_during_seal_and_verify_raises_no_false_alarm(tmp_path: Path) -> None:
    root = tmp_path / "live"
    store = AuditStore(root, writer_id="reader")
    store.append(_entries(200))
    seal(store)
    script = (
        "import sys, time\n"
        "from auditcli.store import AuditStore\n"
        "s = AuditStore(sys.argv[1], writer_id='appender')\n"
        "end = time.monotonic() + 2.0\n"
        "i = 0\n"
        "while time.monotonic() < end:\n"
        "    s.append([{'action': 'login', 'actorId': f'a-{i}-{j}', 'organizationId': 'org-1',"
        " 'metadata': {'pad': 'x' * (j * 97 % 3000)}} for j in range(20)])\n"
        "    i += 1\n"
        "print(i * 20)\n"
    )
    appender = subprocess.Popen([sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE)
    rounds = 0
    try:
        while appender.poll() is None or rounds < 3:
            report = verify(store)
            assert report.ok, report.problems
            seal(store)
            rounds += 1
    finally:
        out, _ = appender.communicate(timeout=30)
    written = int(out)
    final = verify(store)
    assert final.ok, final.problems
    assert final.entries == 200 + written
    assert rounds >= 3


# ================================================================================ CLI
class TestCli:
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})

    def run(self, store: AuditStore, *args: str) -> Any:
        return self.runner.invoke(app, ["-d", str(store.root), *args])

    def test_seal_prints_the_manifest_hash(self, store: AuditStore) -> None:
        result = self.run(store, "seal")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == latest_manifest_hash(store)
        assert "sealed manifest #1" in result.stderr and "unsigned" in result.stderr
        quiet = self.run(store, "seal", "--quiet")
        assert quiet.exit_code == 0 and quiet.stderr == ""
        assert quiet.stdout.strip() == latest_manifest_hash(store)

    def test_seal_exits_5_when_a_sealed_file_shrank(self, store: AuditStore) -> None:
        self.run(store, "seal")
        path = _path(store)
        path.write_bytes(b"".join(_lines(path)[:3]))
        result = self.run(store, "seal")
        assert result.exit_code == 5
        assert "3 lines, manifest #1 recorded 10" in result.stderr
        assert result.stdout.startswith("sha256:")  # written all the same

    def test_verify_clean_table_and_exit_0(self, store: AuditStore) -> None:
        self.run(store, "seal")
        result = self.run(store, "verify", "-f", "table")
        assert result.exit_code == 0, result.output
        assert "Entries" in result.stdout and "10" in result.stdout
        assert "verify: OK" in result.stderr and "unsigned" in result.stderr

    def test_verify_writes_json_to_a_pipe(self, store: AuditStore) -> None:
        self.run(store, "seal")
        result = self.run(store, "verify")  # CliRunner's stdout is not a terminal
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.stdout)["entries"] == 10
        assert "verify: OK" in result.stderr and "unsigned" in result.stderr

    def test_verify_unsealed_store_warns_and_exits_0(self, store: AuditStore) -> None:
        result = self.run(store, "verify")
        assert result.exit_code == 0
        assert "never been sealed" in result.stderr

    def test_verify_names_problems_and_exits_5(self, store: AuditStore) -> None:
        self.run(store, "seal")
        path = _path(store)
        path.write_bytes(b"".join(_lines(path)[:6]))
        result = self.run(store, "verify", "-f", "table")
        assert result.exit_code == 5
        assert "truncated file" in result.stdout and f"date={DAY}/host1.jsonl" in result.stdout
        assert "Error: verify found 1 problem(s)" in result.stderr

    def test_verify_json(self, store: AuditStore) -> None:
        self.run(store, "seal")
        with _path(store).open("ab") as handle:
            handle.write(b"torn")
        result = self.run(store, "verify", "--format", "json")
        assert result.exit_code == 5
        data = orjson.loads(result.stdout)
        assert data["ok"] is False and data["entries"] == 10 and data["checkpoints"] == 1
        assert data["problems"] == [
            {
                "file": f"date={DAY}/host1.jsonl",
                "line": 11,
                "kind": "torn line",
                "detail": data["problems"][0]["detail"],
            }
        ]

    def test_keys_seal_and_verify_with_public_key(self, store: AuditStore, tmp_path: Path) -> None:
        key = tmp_path / "seal.key"
        generated = self.runner.invoke(app, ["keys", "generate", "--out", str(key)])
        assert generated.exit_code == 0, generated.output
        assert generated.stdout.startswith("sha256:")
        assert self.runner.invoke(app, ["keys", "generate", "--out", str(key)]).exit_code == 2
        sealed = self.run(store, "seal", "--signing-key", str(key))
        assert sealed.exit_code == 0 and generated.stdout.strip() in sealed.stderr
        good = self.run(
            store, "verify", "--public-key", f"{key}.pub", "--anchor", sealed.stdout.strip()
        )
        assert good.exit_code == 0, good.output
        other = tmp_path / "other.key"
        self.runner.invoke(app, ["keys", "generate", "--out", str(other)])
        bad = self.run(store, "verify", "--public-key", f"{other}.pub")
        assert bad.exit_code == 5 and "wrong signing key" in bad.stdout

    def test_verify_max_seal_age(self, store: AuditStore) -> None:
        assert self.run(store, "verify", "--max-seal-age", "2h").exit_code == 5
        self.run(store, "seal")
        assert self.run(store, "verify", "--max-seal-age", "2h").exit_code == 0
        assert self.run(store, "verify", "--max-seal-age", "2026").exit_code == 2

    def test_a_store_rotated_and_pruned_by_audit_rotate_verifies_clean(
        self, tmp_path: Path
    ) -> None:
        if not any("rotate" in (c.name, c.callback.__name__) for c in app.registered_commands):
            pytest.skip("audit rotate is not available")
        store = AuditStore(tmp_path / "rot", writer_id="w1")
        today = datetime.now(UTC).date()
        for age in (30, 5, 0):
            store.append(_entries(3, (today - timedelta(days=age)).isoformat()))
        key = tmp_path / "k"
        generate_keys(key)
        env = {"AUDIT_SIGNING_KEY": str(key), "AUDIT_WRITER_ID": "w1"}
        assert self.runner.invoke(app, ["-d", str(store.root), "seal"], env=env).exit_code == 0
        rotated = self.runner.invoke(
            app, ["-d", str(store.root), "rotate", "--delete-after", "20"], env=env
        )
        assert rotated.exit_code == 0, rotated.output
        public = ["--public-key", f"{key}.pub"]
        for _ in range(2):  # before and after the next seal records the archives' digests
            result = self.run(store, "verify", *public, "--format", "json")
            assert result.exit_code == 0, result.output
            data = orjson.loads(result.stdout)
            assert (data["files"], data["entries"], data["receiptedFiles"]) == (2, 6, 1)
            self.runner.invoke(app, ["-d", str(store.root), "seal"], env=env)

    def test_verify_since_until(self, store: AuditStore) -> None:
        store.append(_entries(3, DAY2))
        result = self.run(store, "verify", "--since", DAY2, "--format", "json")
        assert result.exit_code == 0
        assert orjson.loads(result.stdout)["entries"] == 3
