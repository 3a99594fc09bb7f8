"""verify with writers checked by forked worker processes (integrity/workers.py) gives the very
report a sequential verify gives: same problems in the same order, same per-host rows, counts
and notes, honest store or tampered."""

from __future__ import annotations

import importlib
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from auditcli import integrity
from auditcli.errors import AuditError
from auditcli.store import AuditStore

WRITERS = ("alpha", "bravo", "charlie", "delta")
DAYS = ("2026-11-18", "2026-11-19", "2026-11-20")


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)


def _entries(writer: str, day: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "action": "login",
            "actorId": f"{writer}-{i}",
            "organizationId": "org-1",
            "createdAt": f"{day}T08:{i % 60:02d}:{WRITERS.index(writer):02d}.000Z",
        }
        for i in range(start, start + count)
    ]


@pytest.fixture
def fleet(tmp_path: Path) -> AuditStore:
    """Four writers on one volume, three days each, each sealed into its own signed chain
    twice (the second seal after a day of growth)."""
    key = tmp_path / "seal.key"
    integrity.generate_keys(key)
    root = tmp_path / "logs"
    for writer in WRITERS:
        store = AuditStore(root, writer_id=writer)
        for day in DAYS[:2]:
            store.append(_entries(writer, day, 6))
        integrity.seal(store, signing_key=key)
        store.append(_entries(writer, DAYS[2], 5))
        integrity.seal(store, signing_key=key)
        store.append(_entries(writer, DAYS[2], 2, 40))  # not yet covered
    return AuditStore(root, writer_id="alpha")


def _both(store: AuditStore) -> tuple[dict[str, Any], dict[str, Any]]:
    told: list[tuple[int | None, int | None]] = []

    def progress(
        entries: int,
        *,
        done: int | None = None,
        total: int | None = None,
        phase: str | None = None,
    ) -> None:
        told.append((done, total))

    sequential = integrity.verify(store, workers=1).to_dict()
    parallel = integrity.verify(store, workers=2, progress=progress)
    assert told and told[-1][0] == told[-1][1]  # told as writers finish, to the last file
    return sequential, parallel.to_dict()


def test_an_honest_fleet_gives_the_same_report(fleet: AuditStore) -> None:
    sequential, parallel = _both(fleet)
    assert sequential["ok"] and parallel == sequential
    assert [h["writer"] for h in parallel["hosts"]] == list(WRITERS)
    assert parallel["entries"] == 4 * 19 and parallel["uncovered"] == 4 * 2
    assert parallel["treeHeads"] == 8


def test_a_tampered_fleet_gives_the_same_problems_in_the_same_order(fleet: AuditStore) -> None:
    root = fleet.root
    edited = root / f"date={DAYS[0]}" / "alpha.jsonl"
    edited.write_bytes(edited.read_bytes().replace(b"alpha-3", b"alpha-9", 1))
    (root / f"date={DAYS[1]}" / "bravo.jsonl").unlink()
    cut = root / f"date={DAYS[2]}" / "charlie.jsonl"
    cut.write_bytes(b"".join(cut.read_bytes().splitlines(keepends=True)[:3]))
    sorted((root / "_manifests" / "delta").glob("0*.json"))[0].unlink()
    sequential, parallel = _both(fleet)
    assert not sequential["ok"]
    assert parallel == sequential
    kinds = {(p["file"].split("/")[-1], p["kind"]) for p in parallel["problems"]}
    assert ("alpha.jsonl", "altered entry") in kinds
    assert ("bravo.jsonl", "deleted file") in kinds
    assert ("charlie.jsonl", "truncated file") in kinds
    assert ("delta", "deleted manifest") in {
        (p["file"].split("/")[-2], p["kind"]) for p in parallel["problems"]
    }
    assert [h["problems"] > 0 for h in parallel["hosts"]] == [True, True, True, True]


def test_a_worker_that_dies_fails_the_run(
    fleet: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed worker (out of memory, kill -9) must fail verify, never hang it or drop a
    writer from the report."""
    verify_module = importlib.import_module("auditcli.integrity.verify.verifier")
    real = verify_module._Verifier.check_writer

    def dying(self: Any, writer: str, chained: bool) -> None:
        if writer == "charlie":
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, writer, chained)

    monkeypatch.setattr(verify_module._Verifier, "check_writer", dying)
    with pytest.raises(AuditError, match="worker process died"):
        integrity.verify(fleet, workers=2)


def test_a_writers_manifests_are_freed_once_it_is_checked(fleet: AuditStore) -> None:
    """Memory stays one writer's: each writer's manifests are freed when it is done, not left
    for the cyclic garbage collector to find several writers later (at 50 writers × 365 days
    that garbage was most of verify's peak memory)."""
    import gc
    import weakref

    from auditcli.integrity.manifests import Manifest

    gc.collect()
    gc.disable()
    try:
        integrity.verify(fleet, workers=1)
        left = [weakref.ref(o) for o in gc.get_objects() if isinstance(o, Manifest)]
        gc.collect()
    finally:
        gc.enable()
    assert sum(ref() is None for ref in left) == 0  # none was waiting for the collector
