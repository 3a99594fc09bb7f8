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

workers_module = importlib.import_module("auditcli.integrity.workers")

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


ONE_WRITER_DAYS = tuple(f"2026-11-{day:02d}" for day in range(10, 19))


@pytest.fixture
def one_writer(tmp_path: Path) -> AuditStore:
    """One writer, nine days, sealed twice (signed), a day grown after the second seal."""
    key = tmp_path / "seal.key"
    integrity.generate_keys(key)
    store = AuditStore(tmp_path / "logs", writer_id="alpha")
    for day in ONE_WRITER_DAYS[:6]:
        store.append(_entries("alpha", day, 5))
    integrity.seal(store, signing_key=key)
    for day in ONE_WRITER_DAYS[5:]:
        store.append(_entries("alpha", day, 4, 20))
    integrity.seal(store, signing_key=key)
    store.append(_entries("alpha", ONE_WRITER_DAYS[-1], 2, 40))  # not yet covered
    return store


PERIODS = [{}, {"first_day": ONE_WRITER_DAYS[1], "last_day": ONE_WRITER_DAYS[-1]}]


def _one_writer_both(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, period: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A verify (of `period`) in one process and with the files split over two workers, each
    on an empty record of its own; the records they write must be the same too, and no tree
    head is recomputed by reading its files again (the workers' leaves were fed to it)."""
    told: list[tuple[int | None, int | None]] = []
    forked: list[int] = []
    reread: list[int] = []
    tree_module = importlib.import_module("auditcli.integrity.tree")
    real_map, real_reread = workers_module.forked_map, tree_module._recomputed_leaves

    def progress(entries: int, *, done: int | None = None, total: int | None = None) -> None:
        told.append((done, total))

    def counting(function: Any, items: Any, count: int, failed: str) -> Any:
        items = list(items)
        forked.append(len(items))
        return real_map(function, items, count, failed)

    def rereading(*args: Any, **kwargs: Any) -> Any:
        reread.append(1)
        return real_reread(*args, **kwargs)

    monkeypatch.setattr(workers_module, "forked_map", counting)
    monkeypatch.setattr(tree_module, "_recomputed_leaves", rereading)
    reports, records, rereads = [], [], []
    for workers, cache in ((1, "one"), (2, "two")):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / cache))
        report = integrity.verify(store, workers=workers, progress=progress, **period)
        reports.append(report.to_dict())
        records.append({p.name: p.read_bytes() for p in (tmp_path / cache).rglob("*.json")})
        rereads.append(len(reread))
    assert forked and forked[0] > 1  # the second verify did split the writer's files
    assert told[-1][0] == told[-1][1]  # told to the last file
    assert records[1] == records[0]
    assert rereads[1] == rereads[0] * 2  # as many heads read again as by one process
    if reports[0]["ok"]:
        assert rereads == [0, 0]  # every head was given all its leaves by the scans
    return reports[0], reports[1]


@pytest.mark.parametrize("period", PERIODS, ids=["whole store", "some days"])
def test_one_writers_files_split_over_workers_give_the_same_report_and_record(
    one_writer: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, period: dict
) -> None:
    sequential, parallel = _one_writer_both(one_writer, tmp_path, monkeypatch, period)
    assert sequential["ok"] and parallel == sequential
    assert parallel["uncovered"] == 2
    assert (parallel["files"], parallel["treeHeads"]) == ((8, 0) if period else (9, 2))


@pytest.mark.parametrize("period", PERIODS, ids=["whole store", "some days"])
def test_one_writers_tampered_files_split_over_workers_give_the_same_problems(
    one_writer: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, period: dict
) -> None:
    root = one_writer.root
    edited = root / f"date={ONE_WRITER_DAYS[2]}" / "alpha.jsonl"
    edited.write_bytes(edited.read_bytes().replace(b"alpha-3", b"alpha-9", 1))
    (root / f"date={ONE_WRITER_DAYS[4]}" / "alpha.jsonl").unlink()
    cut = root / f"date={ONE_WRITER_DAYS[6]}" / "alpha.jsonl"
    cut.write_bytes(b"".join(cut.read_bytes().splitlines(keepends=True)[:2]))
    torn = root / f"date={ONE_WRITER_DAYS[7]}" / "alpha.jsonl"
    torn.write_bytes(torn.read_bytes() + b'{"id":"half')
    sequential, parallel = _one_writer_both(one_writer, tmp_path, monkeypatch, period)
    assert not sequential["ok"] and parallel == sequential
    kinds = [(p["file"].split("/")[0][5:], p["kind"]) for p in parallel["problems"]]
    for found in [
        (ONE_WRITER_DAYS[2], "altered entry"),
        (ONE_WRITER_DAYS[4], "deleted file"),
        (ONE_WRITER_DAYS[6], "truncated file"),
        (ONE_WRITER_DAYS[7], "torn line"),
    ]:
        assert found in kinds


def test_a_worker_checking_files_that_dies_fails_the_run(
    one_writer: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    verify_module = importlib.import_module("auditcli.integrity.verify.verifier")
    real = verify_module._Verifier.check_file

    def dying(self: Any, file: Any) -> bool:
        if file.day == ONE_WRITER_DAYS[5]:
            os.kill(os.getpid(), signal.SIGKILL)
        return bool(real(self, file))

    monkeypatch.setattr(verify_module._Verifier, "check_file", dying)
    with pytest.raises(AuditError, match="worker process died"):
        integrity.verify(one_writer, first_day=ONE_WRITER_DAYS[1], workers=2)


def test_a_file_bigger_than_a_run_sends_no_leaf_hashes_back_and_gives_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run holds about `_RUN_BYTES` of files at most (the leaf hashes of its lines come back
    whole, 32 bytes a line): a file bigger than that alone is not sent back as leaf hashes
    from a worker (it would hold them all), yet the report, the record and the tree heads are
    the ones a single process gives, with no tree head read again."""
    key = tmp_path / "seal.key"
    integrity.generate_keys(key)
    store = AuditStore(tmp_path / "logs", writer_id="alpha")
    for index, day in enumerate(ONE_WRITER_DAYS):
        store.append(_entries("alpha", day, 60 if index == 3 else 3))
    integrity.seal(store, signing_key=key)
    big = store.root / f"date={ONE_WRITER_DAYS[3]}" / "alpha.jsonl"
    monkeypatch.setattr(workers_module, "_RUN_BYTES", big.stat().st_size // 4)
    shipped: list[int] = []  # file bytes whose leaf hashes one run sent back
    real_map = workers_module.forked_map

    def measuring(function: Any, items: Any, count: int, failed: str) -> Any:
        items = list(items)
        for run, added in zip(items, real_map(function, items, count, failed), strict=True):
            shipped.append(
                sum(
                    file.path.stat().st_size
                    for file, result in zip(run, added.results, strict=True)
                    if result is not None and result[3]
                )
            )
            yield added

    monkeypatch.setattr(workers_module, "forked_map", measuring)
    _one_writer_both(store, tmp_path, monkeypatch, {})
    assert shipped and max(shipped) <= workers_module._RUN_BYTES
