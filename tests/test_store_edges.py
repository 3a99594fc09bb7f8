"""Edges of the store that an attacker or a crash leaves: a writer's file hard-linked to a file
outside the log directory, concurrent and killed `actions add`, a writer's lock held for ever."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from auditcli.catalog import CATALOG_FILE, CATALOG_LOCK, ActionSpec, render_custom_actions


def _audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditcli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_hard_linked_log_file_is_never_written_through(cli, store_dir: Path, tmp_path: Path):
    """Appending to a file with a second name would change that other file, which may be
    outside the log directory: the writer leaves it, like a damaged file, and moves on."""
    assert cli("record", "login", "--actor-id", "u-1", "--org-id", "o-1").exit_code == 0
    [day] = [p for p in store_dir.iterdir() if p.name.startswith("date=")]
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not yours\n")
    (day / "testhost.jsonl").unlink()
    os.link(outside, day / "testhost.jsonl")
    result = cli("record", "login", "--actor-id", "u-2", "--org-id", "o-1")
    assert result.exit_code == 0, result.output
    assert outside.read_bytes() == b"not yours\n"
    moved = (day / "testhost+2.jsonl").read_bytes()
    assert b'"actorId":"u-2"' in moved and moved.count(b"\n") == 1


def test_actions_add_waits_for_another_writer_of_the_catalog(store_dir: Path):
    """`actions add` rewrites the catalog from what it read: it holds the catalog lock while it
    does, so an add running at the same time waits and then keeps the other's action."""
    lock = os.open(store_dir / CATALOG_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "auditcli",
                "actions",
                "add",
                "deploy_a",
                "--display-name",
                "Deploy A",
                "--target",
                "ORGANIZATION",
                "--template",
                "{actor} a",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.5)
        assert run.poll() is None, "actions add did not wait for the catalog lock"
        # Meanwhile the lock holder adds its own action.
        spec = ActionSpec("deploy_b", "Deploy B", "ORGANIZATION", "Custom", "{actor} b", False)
        (store_dir / CATALOG_FILE).write_bytes(render_custom_actions([spec]))
    finally:
        os.close(lock)
    assert run.wait(timeout=120) == 0, run.stderr.read() if run.stderr else ""
    document = json.loads((store_dir / CATALOG_FILE).read_bytes())
    assert {action["action"] for action in document["actions"]} == {"deploy_a", "deploy_b"}


def test_a_killed_actions_add_leaves_no_temp_behind(store_dir: Path):
    """A temp file left by a kill is removed by the next `actions add`."""
    stale = store_dir / ".catalog-abc123.tmp"
    stale.write_bytes(b"{half")
    result = _audit(
        "actions",
        "add",
        "deploy_done",
        "--display-name",
        "Deploy Done",
        "--target",
        "ORGANIZATION",
        "--template",
        "{actor} deployed",
    )
    assert result.returncode == 0, result.stderr
    assert not stale.exists()


def test_rotate_does_not_wait_for_ever_on_a_held_lock(cli, store_dir: Path, monkeypatch):
    """Whoever can write the directory can hold a writer's lock for ever: rotate leaves that
    file in place, says so, and goes on (exit 5), within its bounded wait."""
    from auditcli import maintenance

    assert (
        cli(
            "record",
            "login",
            "--actor-id",
            "u-1",
            "--org-id",
            "o-1",
            "--created-at",
            "2026-01-02T00:00:00Z",
        ).exit_code
        == 0
    )
    [log] = list(store_dir.glob("date=2026-01-02/*.jsonl"))
    monkeypatch.setattr(maintenance, "_ROTATE_LOCK_WAIT", 0.5)
    holder = os.open(log, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        result = cli("rotate")
    finally:
        os.close(holder)
    assert result.exit_code == 5, result.output
    assert "lock stays held" in result.output
    assert log.exists() and not log.with_name(log.name + ".gz").exists()


def test_a_killed_query_leaves_no_index_temp_behind(cli, store_dir: Path):
    """A line-index temp file of a process that no longer runs is removed when the next index
    of that partition is saved; one of a running process is left alone."""
    from auditcli.store import AuditStore

    store = AuditStore(store_dir, writer_id="testhost")
    store.append(
        {
            "action": "login",
            "actorId": f"u-{n}",
            "organizationId": "o-1",
            "description": "x" * 200,
            "createdAt": f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z",
        }
        for n in range(1500)
    )
    index_dir = store_dir / "_index" / "date=2026-01-01"
    index_dir.mkdir(parents=True)
    dead = index_dir / ".testhost.jsonl.999999999.ab12.tmp"  # no such pid
    alive = index_dir / f".testhost.jsonl.{os.getpid()}.cd34.tmp"
    dead.write_bytes(b"half an index")
    alive.write_bytes(b"being written")
    assert cli("query", "--count", "--action", "login").stdout.strip() == "1500"
    assert (index_dir / "testhost.jsonl.idx").exists()
    assert not dead.exists() and alive.exists()


def test_tail_follows_a_big_archive_in_bounded_steps(cli, store_dir: Path, monkeypatch):
    """A rotated day is read a window at a time (memory bounded whatever the archive holds):
    every entry comes out once, in order, over several polls."""
    from auditcli import maintenance
    from auditcli.query import Filters
    from auditcli.store import AuditStore

    store = AuditStore(store_dir, writer_id="testhost")
    store.append(
        {"action": "login", "actorId": f"u-{n}", "organizationId": "o-1",
         "createdAt": f"2026-01-02T00:00:{n:02d}Z"}
        for n in range(50)
    )  # fmt: skip
    assert cli("rotate").exit_code == 0
    assert list(store_dir.glob("date=2026-01-02/*.jsonl.gz"))
    monkeypatch.setattr(maintenance, "_FOLLOW_LIMIT", 1000)  # a few entries per step
    follower = maintenance.Follower(store, Filters())
    seen: list[bytes] = []
    polls = 0
    while True:
        polls += 1
        found = follower.poll()
        seen += found
        if not follower.behind:
            break
    actors = [line.split(b'"actorId":"')[1].split(b'"')[0].decode() for line in seen]
    assert actors == [f"u-{n}" for n in range(50)]
    assert polls > 5 and not follower.problems
    assert follower.poll() == []  # read to its end: nothing again
