"""Re-running after a crash never duplicates: an import of id-less
lines killed with SIGKILL mid-write and run again; service accounts and the log agree after a
fault or a kill at every step of `service-account create` and `delete`."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from auditcli.accounts import AccountStore
from auditcli.store import AuditStore


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(AUDIT_WRITER_ID="w1", **extra)
    return env


def _stored(root: Path) -> list[dict]:
    out = []
    for path in sorted(root.glob("date=*/*.jsonl*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        out += [orjson.loads(line) for line in data.splitlines() if line.endswith(b"}")]
    return out


def _written(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("date=*/*.jsonl"))


def test_an_id_less_import_killed_mid_write_and_run_again_stores_each_line_once(
    tmp_path: Path,
) -> None:
    root = tmp_path / "log"
    lines = [
        {
            "action": "login",
            "actorId": f"user-{n % 50}",
            "organizationId": "org-1",
            "createdAt": f"2026-03-0{1 + n % 3}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:"
            f"{n % 60:02d}.000Z",
            "metadata": {"pad": "x" * 200},
        }
        for n in range(12000)
    ]
    lines += lines[:5]  # five lines twice: two entries each, as the input says
    source = tmp_path / "idless.jsonl"
    source.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in lines))
    proc = subprocess.Popen(
        [sys.executable, "-m", "auditcli", "-d", str(root), "import", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and _written(root) < 400_000 and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    first = len(_stored(root))
    assert 0 < first < len(lines), "the kill did not land mid-import"
    again = subprocess.run(
        [sys.executable, "-m", "auditcli", "-d", str(root), "import", str(source)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        f"imported {len(lines) - first} entries, {first} duplicate(s) skipped\n"
    )
    stored = _stored(root)
    assert len(stored) == len(lines) == 12005
    assert max(Counter(entry["id"] for entry in stored).values()) == 1
    assert "note:" not in again.stderr


def test_id_and_time_less_lines_are_named_as_not_safe_to_rerun(tmp_path: Path) -> None:
    root = tmp_path / "log"
    source = tmp_path / "x.jsonl"
    source.write_bytes(
        b'{"action":"login","actorId":"u","organizationId":"o"}\n'
        b'{"action":"login","actorId":"u","organizationId":"o","createdAt":"2026-03-01T10:00Z"}\n'
    )
    run = [sys.executable, "-m", "auditcli", "-d", str(root), "import", str(source)]
    first = subprocess.run(run, capture_output=True, text=True, env=_env(), check=False)
    assert first.returncode == 0
    assert "1 line(s) had neither id nor createdAt" in first.stderr
    second = subprocess.run(run, capture_output=True, text=True, env=_env(), check=False)
    assert second.stdout == "imported 1 entries, 1 duplicate(s) skipped\n"


#: `audit …` with one fault, argv[1] = "<where>:<what>:<n>": at the n-th call of `where`
#: (log-write: os.write to a log file; accounts-replace: os.replace onto accounts.json), do
#: `what` (kill: SIGKILL itself; enospc: fail with ENOSPC).
FAULT = """
import errno, os, runpy, signal, sys
where, what, nth = sys.argv.pop(1).split(":")
calls = [0]
def hit():
    calls[0] += 1
    if calls[0] == int(nth):
        if what == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
real_write, real_replace = os.write, os.replace
def write(fd, data):
    if where == "log-write" and "/date=" in os.readlink(f"/proc/self/fd/{fd}"):
        hit()
    return real_write(fd, data)
def replace(src, dst, **kw):
    if where == "accounts-replace" and str(dst).endswith("accounts.json"):
        hit()
    return real_replace(src, dst, **kw)
os.write, os.replace = write, replace
sys.argv = ["audit", *sys.argv[1:]]
runpy.run_module("auditcli", run_name="__main__")
"""


def _init(root: Path) -> Path:
    """A new, empty store at `root` (service accounts need one: only writers create it)."""
    subprocess.run([sys.executable, "-m", "auditcli", "init", str(root)], check=True, timeout=60)
    return root


def _accounts_cli(root: Path, *args: str, fault: str | None = None):
    prefix = [sys.executable, "-c", FAULT, fault] if fault else [sys.executable, "-m", "auditcli"]
    return subprocess.run(
        [*prefix, "-d", str(root), "service-account", *args],
        capture_output=True,
        text=True,
        env=_env(AUDIT_ACTOR_ID="admin-1"),
        timeout=60,
        check=False,
    )


def _agree(root: Path) -> list[str]:
    """The live account names after settling (`list`), checked against the log: an account
    exists exactly when its created entry is there and its deleted entry is not."""
    listed = _accounts_cli(root, "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    live = {item["id"]: item["name"] for item in orjson.loads(listed.stdout)}
    entries = _stored(root)
    created = {e["targetId"] for e in entries if e["action"] == "service_account_created"}
    deleted = {e["targetId"] for e in entries if e["action"] == "service_account_deleted"}
    assert set(live) == created - deleted, (live, created, deleted)
    assert list((root / "_accounts").glob(".accounts-*.tmp")) == []
    assert "pending" not in orjson.loads((root / "_accounts" / "accounts.json").read_bytes())
    return sorted(live.values())


CREATE = ("create", "siem", "--org-id", "org-1", "--role", "admin")


@pytest.mark.parametrize(
    ("fault", "code", "exists"),
    [
        ("log-write:enospc:1", 4, False),  # full disk: nothing recorded, no account
        ("log-write:kill:1", -9, False),  # killed before the entry is written
        ("accounts-replace:kill:1", -9, False),  # killed before anything is noted
        ("accounts-replace:kill:2", -9, True),  # killed after the entry, before the account
        ("accounts-replace:enospc:2", 1, True),  # recorded, account file full: settled later
        ("accounts-replace:enospc:1", 4, False),  # the note itself cannot be written
    ],
)
def test_service_account_create_and_the_log_agree_after_a_fault(
    tmp_path: Path, fault: str, code: int, exists: bool
) -> None:
    root = _init(tmp_path / "log")
    assert _accounts_cli(root, *CREATE[:1], "other", *CREATE[2:]).returncode == 0
    result = _accounts_cli(root, *CREATE, fault=fault)
    assert result.returncode == code, result.stderr
    if code > 0:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stdout == ""  # no token for an account that is not usable
    assert _agree(root) == (["other", "siem"] if exists else ["other"])
    # And the name can be used (again) afterwards.
    if not exists:
        assert _accounts_cli(root, *CREATE).returncode == 0
        assert _agree(root) == ["other", "siem"]


@pytest.mark.parametrize(
    ("fault", "code", "usable", "gone"),
    [
        ("log-write:kill:1", -9, False, False),  # killed before the entry: undone when settled
        ("accounts-replace:kill:2", -9, False, True),  # killed after the entry: completed
        ("log-write:enospc:1", 4, True, False),  # full disk: not deleted
    ],
)
def test_service_account_delete_and_the_log_agree_after_a_fault(
    tmp_path: Path, fault: str, code: int, usable: bool, gone: bool
) -> None:
    root = _init(tmp_path / "log")
    assert _accounts_cli(root, *CREATE).returncode == 0
    result = _accounts_cli(root, "delete", "siem", fault=fault)
    assert result.returncode == code, result.stderr
    # Before anything settles it, a deletion in progress already stops the token.
    assert bool(AccountStore(AuditStore(root)).accounts()) == usable
    assert _agree(root) == ([] if gone else ["siem"])


def test_record_whose_stdout_fails_says_the_entry_is_stored_and_gives_its_id(
    tmp_path: Path,
) -> None:
    root = tmp_path / "log"
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "auditcli",
                "-d",
                str(root),
                "record",
                "login",
                "--actor-id",
                "u",
                "--org-id",
                "o",
            ],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(
        "Error: stdout: No space left on device; the entry IS recorded, with id "
    )
    [stored] = _stored(root)
    assert line.endswith(stored["id"])


def test_a_seal_killed_mid_write_leaves_a_temp_that_the_next_seal_removes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "log"
    AuditStore(root, writer_id="w1").record(
        {"action": "login", "actorId": "u", "organizationId": "o"}
    )
    stall = (
        "import os, runpy, signal, sys\n"
        "real = os.fsync\n"
        "def fsync(fd):\n"
        "    if os.readlink(f'/proc/self/fd/{fd}').endswith('.json.tmp'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(fd)\n"
        "os.fsync = fsync\n"
        "sys.argv = ['audit', *sys.argv[1:]]\n"
        "runpy.run_module('auditcli', run_name='__main__')\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", stall, "-d", str(root), "seal"], env=_env(), check=False
    )
    assert killed.returncode == -9
    assert len(list((root / "_manifests" / "w1").glob(".*.json.tmp"))) == 1  # w1's chain
    run = [sys.executable, "-m", "auditcli", "-d", str(root)]
    assert subprocess.run([*run, "seal"], env=_env(), capture_output=True).returncode == 0
    assert list((root / "_manifests").glob("**/.*.tmp")) == []
    assert subprocess.run([*run, "verify"], env=_env(), capture_output=True).returncode == 0


def test_import_and_service_account_create_whose_stdout_fails_say_what_was_done(
    tmp_path: Path,
) -> None:
    root = tmp_path / "log"
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"action":"login","actorId":"u","organizationId":"o","createdAt":"2026-03-01T10:00Z"}\n'
    )
    commands = {
        "import": ["import", str(source)],
        "create": ["service-account", "create", "siem", "--org-id", "o", "--role", "admin"],
    }
    errors = {}
    for name, args in commands.items():
        with open("/dev/full", "wb") as full:
            done = subprocess.run(
                [sys.executable, "-m", "auditcli", "-d", str(root), *args],
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                check=False,
                env=_env(AUDIT_ACTOR_ID="admin-1"),
            )
        assert done.returncode == 1
        errors[name] = done.stderr.splitlines()[-1]
    assert errors["import"] == (
        "Error: stdout: No space left on device; the import IS done: imported 1 entries"
    )
    assert "IS created, but its token could not be shown" in errors["create"]
    assert _agree(root) == ["siem"]
