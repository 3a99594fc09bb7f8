"""User-named output files: `export -o`, `report -o` and
`keys generate --out` go through one writer; a failed write leaves nothing at the path, a
durability error after the rename says so, and a kill's temp file is removed by the next run.
Faults are injected into a real child process (its os.fsync / os.read replaced)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from auditcli.store import AuditStore

#: `audit …` with one os function replaced, selected by argv[1]:
#: dirsync-eio: fsync of a directory fails with EIO; stall: the first fsync of a file hangs.
FAULTY = """
import errno, os, runpy, stat, sys, time
fault = sys.argv.pop(1)
real_fsync = os.fsync
def fsync(fd):
    mode = os.fstat(fd).st_mode
    if fault == "dirsync-eio" and stat.S_ISDIR(mode):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    if fault == "stall" and stat.S_ISREG(mode):
        print("stalled", file=sys.stderr, flush=True)
        time.sleep(600)
    return real_fsync(fd)
os.fsync = fsync
sys.argv = ["audit", *sys.argv[1:]]
runpy.run_module("auditcli", run_name="__main__")
"""


def _run(root: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    prefix = [sys.executable, "-c", FAULTY, fault] if fault else [sys.executable, "-m", "auditcli"]
    return subprocess.run(
        [*prefix, "-d", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    root = tmp_path / "log"
    store = AuditStore(root, writer_id="w1")
    for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
        store.append(
            [
                {
                    "action": "login",
                    "actorId": f"u{n}",
                    "organizationId": "o",
                    "createdAt": f"{day}T10:00:{n:02d}Z",
                }
                for n in range(20)
            ]
        )
    return root


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_an_export_that_cannot_read_a_file_leaves_nothing_and_a_rerun_works(
    filled: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "all.jsonl"
    broken = filled / "date=2026-03-02" / "w1.jsonl.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    result = _run(filled, "export", "-o", str(target))
    assert result.returncode == 5
    assert f"nothing was written to {target}" in result.stderr
    assert _leftovers(out_dir) == []
    broken.unlink()
    again = _run(filled, "export", "-o", str(target))
    assert again.returncode == 0, again.stderr
    assert len(target.read_text().splitlines()) == 60  # the plain twin is read again
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_failed_directory_sync_after_the_rename_says_so_and_leaves_nothing(
    filled: Path, tmp_path: Path
) -> None:
    target = tmp_path / "all.csv"
    result = _run(filled, "export", "-f", "csv", "-o", str(target), fault="dirsync-eio")
    assert result.returncode == 1
    assert "its directory could not be synced" in result.stderr
    assert "removed" in result.stderr
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".all.csv")]


def test_the_temp_file_of_a_killed_export_is_removed_by_the_next_run(
    filled: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    target = tmp_path / "all.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", FAULTY, "stall", "-d", str(filled), "export", "-o", str(target)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().strip() == "stalled"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    temps = [p.name for p in tmp_path.iterdir() if p.name.startswith(".all.jsonl.")]
    assert len(temps) == 1 and not target.exists()
    result = _run(filled, "export", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "log") == ["all.jsonl"]


def test_report_refuses_to_overwrite_without_force_and_writes_0600(
    filled: Path, tmp_path: Path
) -> None:
    target = tmp_path / "review.md"
    target.write_text("an earlier review\n")
    args = ("report", "--since", "2026-03-01", "--until", "2026-03-03", "-o", str(target))
    refused = _run(filled, *args)
    assert refused.returncode == 2 and "use --force" in refused.stderr
    assert target.read_text() == "an earlier review\n"
    link = tmp_path / "link.md"
    link.symlink_to(target)
    assert _run(filled, *args[:-1], str(link)).returncode == 2
    assert target.read_text() == "an earlier review\n"
    forced = _run(filled, *args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert target.read_text().startswith("# Access review report")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_keys_generate_writes_both_files_or_neither(tmp_path: Path) -> None:
    root = tmp_path / "log"
    missing = tmp_path / "no-such-dir" / "seal.key"
    result = _run(root, "keys", "generate", "--out", str(missing))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not missing.parent.exists()
    key = tmp_path / "seal.key"
    assert _run(root, "keys", "generate", "--out", str(key)).returncode == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "seal.key.pub").stat().st_mode) == 0o644
    before = key.read_bytes()
    assert _run(root, "keys", "generate", "--out", str(key)).returncode == 2
    assert key.read_bytes() == before
    failed = _run(root, "keys", "generate", "--out", str(tmp_path / "k2"), fault="dirsync-eio")
    assert failed.returncode == 1
    assert not (tmp_path / "k2").exists() and not (tmp_path / "k2.pub").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
