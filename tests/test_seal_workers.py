"""seal with its files read and leaf-hashed by forked worker processes (integrity/workers.py's
`forked_map`) writes the very manifest, tree head and kept leaf hashes a seal in one process
writes; a worker that dies fails the seal and leaves nothing; small seals never fork."""

from __future__ import annotations

import fcntl
import gzip
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditcli import integrity
from auditcli.errors import AuditError
from auditcli.store import AuditStore

WRITERS = ("host1", "host2")
DAYS = ("2026-11-18", "2026-11-19", "2026-11-20")
seal_module = importlib.import_module("auditcli.integrity.seal")
workers_module = importlib.import_module("auditcli.integrity.workers")


@pytest.fixture
def key_pair(tmp_path: Path) -> Path:
    key = tmp_path / "seal.key"
    integrity.generate_keys(key)
    return key


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)


def _entries(writer: str, day: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "action": "login",
            "actorId": f"{writer}-{i}",
            "organizationId": "org-1",
            "createdAt": f"{day}T08:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
        }
        for i in range(start, start + count)
    ]


def _fill(root: Path, count: int = 40) -> None:
    for writer in WRITERS:
        store = AuditStore(root, writer_id=writer)
        for day in DAYS:
            store.append(_entries(writer, day, count))


def _grow_and_rotate(root: Path) -> None:
    """A day compressed as rotate leaves it, a torn tail, a damaged archive, new lines."""
    for path in root.glob(f"date={DAYS[0]}/*.jsonl"):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    with (root / f"date={DAYS[1]}" / "host1.jsonl").open("ab") as handle:
        handle.write(b'{"torn": ')  # a crash mid-write: not a whole line
    (root / f"date={DAYS[0]}" / "host2.jsonl.gz").write_bytes(b"\x1f\x8b not gzip")
    AuditStore(root, writer_id="host2").append(_entries("host2", DAYS[2], 25, 100))


def _sealed(root: Path, key: Path, workers: int) -> list[Any]:
    told: list[tuple[int | None, int | None]] = []
    results = integrity.seal_writers(
        AuditStore(root),
        WRITERS,
        signing_key=key,
        workers=workers,
        progress=lambda entries, done=None, total=None: told.append((entries, done)),
    )
    return [told, *[(r.files, r.lines, r.new_lines, r.changed, r.warnings) for r in results]]


def _evidence(root: Path) -> dict[str, Any]:
    """Every manifest's body but its time, and every kept leaf file's bytes."""
    found: dict[str, Any] = {}
    for path in sorted(root.glob("_manifests/*/0*.json")):
        body = orjson.loads(path.read_bytes())["manifest"]
        body.pop("sealedAt")
        body.pop("previous", None)  # the hash of the previous manifest, which has a time
        body.get("merkle", {}).pop("extends", None)
        found[path.parent.name + "/" + path.name.split("-")[0]] = body
    for path in sorted(root.glob("_index/merkle/*/*.leaves")):
        found[path.parent.name + "/" + path.name] = path.read_bytes()
    return found


def test_parallel_seals_write_what_one_process_writes(tmp_path: Path) -> None:
    key = tmp_path / "seal.key"
    integrity.generate_keys(key)
    one, two = tmp_path / "one", tmp_path / "two"
    _fill(one)
    shutil.copytree(one, two)
    assert _sealed(one, key, 1) == _sealed(two, key, 2)  # the first seal: every line new
    _grow_and_rotate(one)
    for day in DAYS:  # the same bytes in both (new entries get new ids)
        shutil.rmtree(two / f"date={day}")
        shutil.copytree(one / f"date={day}", two / f"date={day}")
    sealed = _sealed(two, key, 2)
    assert _sealed(one, key, 1) == sealed  # growth, an archive, a torn tail, a bad archive
    assert any("host2.jsonl.gz: not sealed" in w for w in sealed[2][4])
    evidence = _evidence(two)
    assert evidence == _evidence(one)
    # host1 grew by no whole line: three seals with new leaves
    assert len([name for name in evidence if name.endswith(".leaves")]) == 3
    # The tree heads are those of the stored lines: verify recomputes them from the files.
    (two / f"date={DAYS[0]}" / "host2.jsonl.gz").unlink()  # the damaged archive, sealed before
    report = integrity.verify(
        AuditStore(two), public_keys=[integrity.load_public_key(f"{key}.pub")]
    )
    assert report.tree_heads == 4
    # Only the archive's deletion: it was sealed (plain) before it was damaged.
    assert [(p.file, p.kind) for p in report.problems] == [
        (f"date={DAYS[0]}/host2.jsonl", "deleted file")
    ]


def test_a_worker_that_dies_fails_the_seal_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed worker (out of memory, kill -9) fails the seal with a clear error: no manifest,
    no kept leaf file, and the next seal seals everything."""
    root = tmp_path / "logs"
    _fill(root)
    parent = os.getpid()
    real = seal_module.file_record

    def dying(file: Any, *args: Any) -> Any:
        if os.getpid() != parent and file.day == DAYS[2]:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(file, *args)

    monkeypatch.setattr(seal_module, "file_record", dying)
    with pytest.raises(AuditError, match="worker process died reading host1's files"):
        integrity.seal(AuditStore(root, writer_id="host1"), workers=2)
    assert not list(root.glob("_manifests/host1/*.json"))
    assert not [p for p in root.glob("_index/merkle/**/*") if p.is_file()]
    monkeypatch.setattr(seal_module, "file_record", real)
    result = integrity.seal(AuditStore(root, writer_id="host1"), workers=2)
    assert (result.files, result.lines) == (3, 120)


def test_a_small_seal_does_not_fork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: Any) -> Any:
        raise AssertionError("forked for a small seal")

    monkeypatch.setattr(workers_module, "forked_map", refused)
    root = tmp_path / "logs"
    _fill(root)
    assert integrity.seal(AuditStore(root, writer_id="host1")).lines == 120


def test_the_seal_command_forks_for_a_big_store(
    log_dir: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`audit seal` forks for the lines new to the tree when they are many (the threshold is
    lowered here), and not for a seal of no new line."""
    _fill(log_dir)
    reference = log_dir.parent / "reference"
    shutil.copytree(log_dir, reference)
    used: list[int] = []
    real = workers_module.forked_map

    def counted(function: Any, items: Any, count: int, failed: str) -> Any:
        used.append(count)
        return real(function, items, count, failed)

    monkeypatch.setattr(workers_module, "forked_map", counted)
    monkeypatch.setattr(workers_module, "PARALLEL_BYTES", 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    result = cli("seal")
    assert result.exit_code == 0, result.stderr
    assert used == [2, 2]  # one pool per writer, each of its 3 files new
    integrity.seal_writers(AuditStore(reference), WRITERS, workers=1)
    assert _evidence(log_dir) == _evidence(reference)
    AuditStore(log_dir, writer_id="host2").append(_entries("host2", DAYS[2], 5, 500))
    assert cli("seal").exit_code == 0
    assert used == [2, 2, 2]  # host2 grew; host1 has no new line: read in one process


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper holds nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_seal_killed_mid_read_leaves_no_worker_holding_the_lock(
    tmp_path: Path, key_pair: Path
) -> None:
    """kill -9 of a seal while its workers read: the workers end too (else they would hold the
    store's manifest lock they inherited, and every later seal would wait, then fail); the
    next seal seals everything."""
    root, marks = tmp_path / "logs", tmp_path / "marks"
    _fill(root)
    marks.mkdir()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import importlib, os, sys, time\n"
            "from pathlib import Path\n"
            "from auditcli.store import AuditStore\n"
            "seal = importlib.import_module('auditcli.integrity.seal')\n"
            "parent = os.getpid()\n"
            "def reading(file, *args):\n"
            "    if os.getpid() != parent:\n"
            "        (Path(sys.argv[2]) / str(os.getpid())).touch()\n"
            "        time.sleep(60)\n"
            "seal.file_record = reading\n"
            "seal.seal(AuditStore(sys.argv[1], writer_id='host1'), workers=2)\n",
            str(root),
            str(marks),
        ]
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [int(path.name) for path in marks.iterdir()]
        assert len(workers) == 2 and all(map(_alive, workers))
    finally:
        child.kill()  # SIGKILL
        child.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, workers))
    with (root / "_manifests" / ".lock").open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: raises if still held
    result = integrity.seal(AuditStore(root, writer_id="host1"), signing_key=key_pair)
    assert (result.files, result.lines) == (3, 120)
