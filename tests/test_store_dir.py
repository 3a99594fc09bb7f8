"""The wrong log directory is an error: every command that reads refuses a directory that does
not exist or is not a log directory (exit 7, one line, nothing created); `record` and `import`
create one at their first write and `audit init` creates one explicitly, mode 0700, marked."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from typing import Any

import pytest

from auditcli.errors import NotRecordedError
from auditcli.store import STORE_MARKER, AuditStore, init_store, require_store, store_problem

ENTRY = ["login", "--actor-id", "u-1", "--org-id", "org-1"]

#: Every command that reads (or changes) an existing log directory, with valid arguments.
READERS = [
    ["query"],
    ["query", "--count"],
    ["verify"],
    ["seal"],
    ["rotate"],
    ["export"],
    ["stats", "--by", "action"],
    ["tail", "--interval", "0.05"],
    ["state", "admins"],
    ["history", "--actor-id", "u-1"],
    ["report", "-o", "-"],
    ["schema"],
    ["actions"],
    ["actions", "add", "x_y", "--display-name", "X", "--target", "USER", "--template", "{actor}"],
    ["service-account", "list"],
    ["service-account", "create", "ci", "--org-id", "o", "--role", "admin", "--actor-id", "a"],
    ["service-account", "delete", "ci", "--actor-id", "a"],
    ["serve"],
]
IDS = [" ".join(argv[:2]) for argv in READERS]


@pytest.mark.parametrize("argv", READERS, ids=IDS)
def test_a_missing_log_directory_is_refused(cli, tmp_path, argv) -> None:
    missing = tmp_path / "no" / "such" / "logs"
    result = cli("-d", missing, *argv)
    assert result.exit_code == 7, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    assert f"{missing}: no such log directory (from --log-dir)" in result.stderr
    assert f"audit init {missing}" in result.stderr  # the hint
    assert result.stdout == ""
    assert not (tmp_path / "no").exists()  # nothing created on the way


@pytest.mark.parametrize("argv", [["query", "--count"], ["verify"], ["seal"]], ids=str)
def test_an_empty_or_foreign_directory_is_refused(cli, tmp_path, argv) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("-d", empty, *argv)
    assert result.exit_code == 7 and "an empty directory, not a log directory" in result.stderr
    assert list(empty.iterdir()) == []
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    result = cli("-d", foreign, *argv)
    assert result.exit_code == 7 and "not an audit log directory" in result.stderr
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "not a directory" in cli("-d", a_file, *argv).stderr


def test_the_source_of_a_wrong_directory_is_named(cli, tmp_path, monkeypatch) -> None:
    result = cli("query")
    assert result.exit_code == 7 and "(from AUDIT_LOG_DIR)" in result.stderr
    monkeypatch.delenv("AUDIT_LOG_DIR")
    config = tmp_path / "config" / "auditcli" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'log_dir = "{tmp_path / "typo"}"\n')
    result = cli("verify")
    assert result.exit_code == 7 and f"(from {config})" in result.stderr


def test_record_and_import_create_the_log_directory(cli, log_dir, tmp_path) -> None:
    assert cli("record", *ENTRY).exit_code == 0
    assert (log_dir / STORE_MARKER).is_file()
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    assert cli("query", "--count").stdout == "1\n"
    imported = tmp_path / "other"
    line = json.loads(cli("query", "-f", "jsonl").stdout)
    result = cli("-d", imported, "import", "-", input=json.dumps(line) + "\n")
    assert result.exit_code == 0, result.stderr
    assert (imported / STORE_MARKER).is_file()


def test_an_invalid_record_creates_nothing(cli, log_dir) -> None:
    result = cli("record", "login", "--org-id", "org-1")  # no actor
    assert result.exit_code == 3
    assert not log_dir.exists()


def test_init_creates_a_private_marked_log_directory(cli, tmp_path) -> None:
    target = tmp_path / "a" / "b" / "logs"
    result = cli("init", target)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{target}\n" and "created" in result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    marker = target / STORE_MARKER
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    assert json.loads(marker.read_text()) == {"format": "auditcli-log-directory", "version": 1}
    assert cli("-d", target, "query", "--count").stdout == "0\n"
    verified = cli("-d", target, "verify")
    assert verified.exit_code == 0, verified.stderr
    again = cli("init", target)  # idempotent: scripts run it every time
    assert again.exit_code == 0 and "already a log directory" in again.stderr


def test_init_without_a_path_uses_the_log_directory_in_use(cli, log_dir) -> None:
    assert cli("init").stdout == f"{log_dir}\n"
    assert cli("-d", log_dir.parent / "x", "init").stdout == f"{log_dir.parent / 'x'}\n"
    assert (log_dir / STORE_MARKER).exists() and (log_dir.parent / "x" / STORE_MARKER).exists()


def test_init_refuses_a_directory_with_other_files(cli, tmp_path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "syslog").write_text("x")
    result = cli("init", tmp_path / "var")
    assert result.exit_code == 2 and "give a new or empty directory" in result.stderr
    assert not (tmp_path / "var" / STORE_MARKER).exists()


def test_a_store_made_before_the_marker_is_still_a_store(tmp_path) -> None:
    """Stores written by 0.1.0 have no marker: a day partition or a control directory is
    enough, and the next write adds the marker."""
    old = tmp_path / "old"
    AuditStore(old, writer_id="w1").record(
        {"action": "login", "actorId": "u-1", "organizationId": "org-1"}
    )
    (old / STORE_MARKER).unlink()
    assert store_problem(old) is None
    sealed_only = tmp_path / "sealed"
    (sealed_only / "_manifests").mkdir(parents=True)
    require_store(sealed_only)
    AuditStore(old, writer_id="w1").record(
        {"action": "login", "actorId": "u-2", "organizationId": "org-1"}
    )
    assert (old / STORE_MARKER).is_file()


def test_init_store_reports_whether_it_created(tmp_path) -> None:
    assert init_store(tmp_path / "new") is True
    assert init_store(tmp_path / "new") is False


def test_the_exit_code_reaches_the_shell(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auditcli", "-d", str(tmp_path / "typo"), "query", "--count"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 7 and done.stdout == ""
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1


def test_an_older_store_the_writer_cannot_mark_still_records(tmp_path, monkeypatch) -> None:
    """A 0.1.0 store whose directory the writer may not add files to (it only appends to
    partitions) keeps recording; a new directory that cannot be marked records nothing."""
    import errno
    import os

    real_open = os.open

    def no_marker(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(STORE_MARKER) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    old = tmp_path / "old"
    first = {"action": "login", "actorId": "u-1", "organizationId": "org-1"}
    AuditStore(old, writer_id="w1").record(first)
    (old / STORE_MARKER).unlink()
    monkeypatch.setattr("auditcli.store.os.open", no_marker)
    AuditStore(old, writer_id="w1").record({**first, "actorId": "u-2"})
    assert not (old / STORE_MARKER).exists()
    (day_file,) = old.glob("date=*/w1.jsonl")
    assert len(day_file.read_bytes().splitlines()) == 2
    new = tmp_path / "new"
    with pytest.raises(NotRecordedError, match=r"_store\.json: cannot create"):
        AuditStore(new, writer_id="w1").record(first)
    assert list(tmp_path.iterdir()) == [old]  # neither `new` nor its staging directory


def test_a_reader_never_sees_a_log_directory_half_made(tmp_path) -> None:
    """The first writer makes the directory with its marker inside, under a temporary name,
    then renames it into place: a concurrent reader sees no directory, then a store."""
    import threading

    root = tmp_path / "logs"
    seen: set[str | None] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(store_problem(root))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for n in range(30):
            AuditStore(root, writer_id="w1").record(
                {"action": "login", "actorId": f"u-{n}", "organizationId": "org-1"}
            )
            if n < 29:
                root.rename(tmp_path / f"gone-{n}")  # atomically, unlike deleting it
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert seen <= {"no such log directory", None}, seen
    assert None in seen and "no such log directory" in seen
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_dangling_symlinked_log_directory_is_not_replaced(cli, tmp_path) -> None:
    """`/var/log/audit -> /data/audit` with /data not mounted: nothing is recorded, and the
    link is not replaced by a local directory that would take the entries."""
    link = tmp_path / "audit"
    link.symlink_to(tmp_path / "unmounted" / "audit")
    result = cli("-d", link, "record", *ENTRY)
    assert result.exit_code == 4 and "entry NOT recorded" in result.stderr
    assert link.is_symlink() and not (tmp_path / "unmounted").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]
