"""Rotation removes nothing through a symlink and nothing outside the log directory: a linked
`_deleting`, partition, `_index`, or links inside what is deleted, each pointing at a sandbox
directory that must come out untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditcli.maintenance import rotate
from auditcli.store import AuditStore

OLD = (datetime.now(UTC).date() - timedelta(days=40)).isoformat()


def _sandbox(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A directory outside the log directory with files and a sub-directory in it."""
    sandbox = tmp_path / "sandbox"
    (sandbox / f"date={OLD}").mkdir(parents=True)
    (sandbox / "precious.txt").write_bytes(b"keep me\n")
    (sandbox / "w1.jsonl").write_bytes(b"not yours\n")
    (sandbox / f"date={OLD}" / "w1.jsonl.idx").write_bytes(b"index of another store\n")
    return sandbox, _tree(sandbox)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() if path.is_file() else b"<dir>"
        for path in sorted(root.rglob("*"))
    }


def _store(tmp_path: Path) -> AuditStore:
    store = AuditStore(tmp_path / "log", writer_id="w1")
    store.record(
        {"action": "login", "actorId": "u", "organizationId": "o", "createdAt": f"{OLD}T10:00Z"}
    )
    return store


def _rotate_cli(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    return subprocess.run(
        [sys.executable, "-m", "auditcli", "-d", str(root), "rotate", "--delete-after", "30"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_symlinked_deleting_dir_is_refused_and_nothing_is_deleted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sandbox, before = _sandbox(tmp_path)
    (store.root / "_deleting").symlink_to(sandbox)
    result = _rotate_cli(store.root)
    assert result.returncode == 5, result.stderr
    error = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error) == 1 and f"{store.root / '_deleting'}: is a symbolic link" in error[0]
    assert _tree(sandbox) == before
    assert (store.root / f"date={OLD}" / "w1.jsonl").exists()  # not deleted either


def test_a_symlinked_partition_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sandbox, before = _sandbox(tmp_path)
    other = (datetime.now(UTC).date() - timedelta(days=50)).isoformat()
    (store.root / f"date={other}").symlink_to(sandbox)
    result = _rotate_cli(store.root)
    assert result.returncode == 5
    assert f"date={other}" in result.stdout + result.stderr
    assert "symbolic link" in result.stdout + result.stderr
    assert _tree(sandbox) == before
    assert (store.root / f"date={other}").is_symlink()
    assert not (store.root / f"date={OLD}").exists()  # the real old day was deleted


@pytest.mark.parametrize("where", ["inside the partition", "inside _deleting"])
def test_links_inside_what_is_removed_are_removed_not_followed(tmp_path: Path, where: str) -> None:
    store = _store(tmp_path)
    sandbox, before = _sandbox(tmp_path)
    if where == "inside the partition":
        (store.root / f"date={OLD}" / "evil").symlink_to(sandbox)
        (store.root / f"date={OLD}" / "sub").mkdir()
        (store.root / f"date={OLD}" / "sub" / "deeper").symlink_to(sandbox / "precious.txt")
    else:
        (store.root / "_deleting").mkdir()
        (store.root / "_deleting" / "date=1999-01-01.1").symlink_to(sandbox)
    report = rotate(store, delete_after=30)
    assert report.problems == []
    assert _tree(sandbox) == before
    assert list((store.root / "_deleting").iterdir()) == []


def test_a_symlinked_index_dir_is_left_alone(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sandbox, before = _sandbox(tmp_path)
    (store.root / "_index").symlink_to(sandbox)
    report = rotate(store, delete_after=30)
    assert report.count("delete") == 1
    assert _tree(sandbox) == before
    assert (store.root / "_index").is_symlink()


def test_a_partition_swapped_for_a_symlink_is_never_compressed_through(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sandbox, before = _sandbox(tmp_path)
    recent = (datetime.now(UTC).date() - timedelta(days=3)).isoformat()
    (store.root / f"date={recent}").symlink_to(sandbox)
    report = rotate(store)
    assert [step.target for step in report.problems] == [f"date={recent}"]
    assert _tree(sandbox) == before


#: `audit rotate` whose unlink of a plain log file fails with EPERM (as for a file that is
#: append-only on a file system whose flags cannot be read).
EPERM_UNLINK = """
import errno, os, runpy, sys
real = os.unlink
def unlink(path, *args, **kwargs):
    if str(path).endswith(".jsonl"):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))
    return real(path, *args, **kwargs)
os.unlink = unlink
sys.argv = ["audit", *sys.argv[1:]]
runpy.run_module("auditcli", run_name="__main__")
"""


def _rotate(root: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    prefix = [sys.executable, "-c", code] if code else [sys.executable, "-m", "auditcli"]
    return subprocess.run(
        [*prefix, "-d", str(root), "rotate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _partition_names(store: AuditStore) -> list[str]:
    return sorted(p.name for p in (store.root / f"date={OLD}").iterdir())


def test_an_append_only_log_file_is_skipped_cleanly_and_rotated_once_it_is_not(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    plain = store.root / f"date={OLD}" / "w1.jsonl"
    if subprocess.run(["chattr", "+a", str(plain)], capture_output=True).returncode != 0:
        pytest.skip("chattr +a is not available or not permitted here")
    try:
        for _ in range(2):  # and the next run is no different: no abort, nothing left
            result = _rotate(store.root)
            assert result.returncode == 5, result.stderr
            assert "append-only or immutable" in result.stdout + result.stderr
            assert _partition_names(store) == ["w1.jsonl"]
    finally:
        subprocess.run(["chattr", "-a", str(plain)], check=True)
    assert _rotate(store.root).returncode == 0
    assert _partition_names(store) == ["w1.jsonl.gz"]


def test_a_plain_file_that_cannot_be_removed_leaves_no_gz_twin(tmp_path: Path) -> None:
    store = _store(tmp_path)
    result = _rotate(store.root, EPERM_UNLINK)
    assert result.returncode == 5
    assert "not compressed (Operation not permitted); the original is kept" in (
        result.stdout + result.stderr
    )
    assert _partition_names(store) == ["w1.jsonl"]
    assert _rotate(store.root).returncode == 0
    assert _partition_names(store) == ["w1.jsonl.gz"]
