"""A seal reads only its writer's chain tail: the fold of the chain kept in `_index/seal/`
(sealstate.py) must give what reading the whole chain gives, be used only when it still fits
the chain, and a forged one must be named by verify."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditcli import integrity
from auditcli.integrity import manifests as manifests_module
from auditcli.integrity.seal import writer_state
from auditcli.integrity.sealstate import load_tail, state_name
from auditcli.integrity.tree import tree_start
from auditcli.maintenance import rotate
from auditcli.store import AuditStore

WRITERS = ("host1", "host2")
START = datetime(2026, 11, 1, 9, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)


class Clock:
    """A store clock the test moves on."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _entries(writer: str, day: datetime, count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "action": "login",
            "actorId": f"{writer}-{i}",
            "organizationId": "org-1",
            "createdAt": f"{day:%Y-%m-%d}T08:{i % 60:02d}:{WRITERS.index(writer):02d}.000Z",
        }
        for i in range(start, start + count)
    ]


def _stores(root: Path, clock: Clock) -> dict[str, AuditStore]:
    return {w: AuditStore(root, writer_id=w, clock=clock) for w in WRITERS}


def _whole_chain(store: AuditStore, writer: str) -> tuple[Any, ...]:
    """What a seal computes reading the whole chain (and every other chain's receipts)."""
    known, _, _ = writer_state(store, writer)
    tree = tree_start(store, writer)
    return known, tree.base.manifest.hash if tree.base else None, tree.coverage


def _from_state(store: AuditStore, writer: str) -> tuple[Any, ...] | None:
    tail = load_tail(store, writer)
    if tail is None:
        return None
    known, tree = tail
    return known, tree.base.manifest.hash if tree.base else None, tree.coverage


def _history(root: Path, clock: Clock) -> Iterator[AuditStore]:
    """A shared volume's life: two writers append over days, seal every day, rotate, and
    delete old days with receipts (in host1's chain, so foreign to host2). Yields the store
    before each seal."""
    stores = _stores(root, clock)
    for day in range(6):
        clock.now = START + timedelta(days=day)
        for writer, store in stores.items():
            store.append(_entries(writer, clock.now, 5 + day))
        if day == 2:
            stores["host2"].append(_entries("host2", clock.now - timedelta(days=1), 3, 50))
        if day == 3:
            rotate(stores["host1"], compress_after=1)
        if day == 5:
            rotate(stores["host1"], compress_after=1, delete_after=4)
        clock.now += timedelta(hours=1)
        yield stores["host1"]
        integrity.seal_writers(stores["host1"], WRITERS)
        clock.now += timedelta(minutes=1)


def test_the_kept_state_is_the_whole_chain_fold_after_every_seal(tmp_path: Path) -> None:
    used = 0
    for store in _history(tmp_path / "logs", Clock()):
        for writer in WRITERS:
            tail = _from_state(store, writer)
            if tail is not None:
                used += 1
                assert tail == _whole_chain(store, writer), writer
    # Used after every seal but the first; not for host2 once host1's receipt deleted its
    # files (a receipt of another chain is folded by time: the whole chain is read then).
    assert used >= 8
    report = integrity.verify(AuditStore(tmp_path / "logs", writer_id="host1"))
    assert report.ok, report.problems
    assert report.receipted_files >= 2


def test_a_seal_reads_only_the_chain_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AuditStore(tmp_path / "logs", writer_id="host1")
    for i in range(30):
        store.append(_entries("host1", START, 1, i))
        integrity.seal(store)
    read: list[Path] = []
    real = manifests_module.read_manifest_bytes

    def counting(path: Path) -> bytes:
        read.append(path)
        return real(path)

    monkeypatch.setattr(manifests_module, "read_manifest_bytes", counting)
    store.append(_entries("host1", START, 1, 30))
    result = integrity.seal(store)
    assert result.new_lines == 1 and result.manifest.sequence == 31
    assert len(read) <= 3, read  # the state's manifest, the newest one to chain to
    (store.root / state_name("host1")).unlink()  # derived: the next seal reads the chain
    read.clear()
    integrity.seal(store)
    assert len(read) >= 31
    assert integrity.verify(store).ok


def _state(store: AuditStore, writer: str = "host1") -> dict[str, Any]:
    return orjson.loads((store.root / state_name(writer)).read_bytes())  # type: ignore[no-any-return]


def _write_state(store: AuditStore, state: dict[str, Any], writer: str = "host1") -> None:
    (store.root / state_name(writer)).write_bytes(orjson.dumps(state))


@pytest.fixture
def sealed(tmp_path: Path) -> AuditStore:
    """host1 with two days, sealed three times."""
    clock = Clock()
    store = AuditStore(tmp_path / "logs", writer_id="host1", clock=clock)
    for day in range(2):
        clock.now = START + timedelta(days=day)
        store.append(_entries("host1", clock.now, 4))
        integrity.seal(store)
        clock.now += timedelta(minutes=5)
    store.append(_entries("host1", clock.now, 2, 10))
    integrity.seal(store)
    return store


def test_a_state_that_does_not_fit_the_chain_is_not_used(sealed: AuditStore) -> None:
    state = _state(sealed)
    assert load_tail(sealed, "host1") is not None
    for forged in (
        {**state, "at": {**state["at"], "hash": "sha256:" + "0" * 64}},  # not the chain's
        {**state, "at": {**state["at"], "sequence": 9}},  # not in the chain
        {**state, "writer": "host2"},
        {**state, "known": [["not a record"]]},
    ):
        _write_state(sealed, forged)
        assert load_tail(sealed, "host1") is None
    (sealed.root / state_name("host1")).write_bytes(b"{not json")
    assert load_tail(sealed, "host1") is None
    report = integrity.verify(sealed)
    assert report.ok, report.problems  # stale or unreadable: unused, nothing to report


def test_verify_names_a_forged_state_under_the_right_hashes(sealed: AuditStore) -> None:
    state = _state(sealed)
    # Claim the newest day's file holds no more than the seal before the last one saw: the
    # next seal would leave the growth of that file out (its entries not covered).
    record, label, sealed_at = state["known"][-1]
    state["known"][-1] = [{**record, "lines": 1}, label, sealed_at]
    _write_state(sealed, state)
    report = integrity.verify(sealed)
    assert [(p.file, p.kind) for p in report.problems] == [
        ("_index/seal/host1.json", "forged index")
    ]
    # A forged coverage (what the tree holds of each file) is named as well.
    (sealed.root / state_name("host1")).unlink()
    integrity.seal(sealed)
    state = _state(sealed)
    state["coverage"][0][2] += 1
    _write_state(sealed, state)
    assert [p.kind for p in integrity.verify(sealed).problems] == ["forged index"]


def test_a_state_behind_the_chain_folds_the_manifests_after_it(sealed: AuditStore) -> None:
    """A receipt in the writer's own chain (retention), or a seal that died before writing its
    state: the next seal folds the few manifests after the state."""
    old = _state(sealed)
    clock = sealed.clock
    assert isinstance(clock, Clock)
    clock.now = START + timedelta(days=9)
    rotate(sealed, compress_after=1, delete_after=5)  # a receipt for the first day
    assert _state(sealed) == old  # receipts do not write the state
    assert _from_state(sealed, "host1") == _whole_chain(sealed, "host1")
    integrity.seal(sealed)
    _write_state(sealed, old)  # as if the seal died before writing it
    assert _from_state(sealed, "host1") == _whole_chain(sealed, "host1")
    assert integrity.verify(sealed).ok


def test_a_deleted_manifest_is_not_blamed_on_the_state(sealed: AuditStore) -> None:
    """With the manifest that first listed a file deleted, the chain no longer folds to the
    honest state: the deletion is the problem named, not the state."""
    first = sorted((sealed.root / "_manifests" / "host1").glob("0*.json"))[0]
    first.unlink()
    kinds = [p.kind for p in integrity.verify(sealed).problems]
    assert "deleted manifest" in kinds and "forged index" not in kinds


def test_no_state_is_kept_behind_a_receipt_dated_after_the_seal(tmp_path: Path) -> None:
    """Another host's receipt dated after this seal (clocks apart on a shared volume): the
    whole-chain fold orders it after the seal, a kept fold could not; none is kept."""
    ahead, behind = Clock(), Clock()
    ahead.now = START + timedelta(days=20)
    behind.now = START + timedelta(days=2)
    host1 = AuditStore(tmp_path / "logs", writer_id="host1", clock=ahead)
    host2 = AuditStore(tmp_path / "logs", writer_id="host2", clock=behind)
    host2.append(_entries("host2", START, 3))
    host2.append(_entries("host2", START + timedelta(days=1), 3))
    integrity.seal(host2)
    assert (host2.root / state_name("host2")).exists()
    rotate(host1, compress_after=1, delete_after=10)  # host1's receipt for host2's old days
    integrity.seal(host2)
    assert not (host2.root / state_name("host2")).exists()
    report = integrity.verify(host2)
    assert report.ok, report.problems
