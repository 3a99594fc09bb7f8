"""What people see on a terminal and scripts get from a pipe: progress on stderr only on a
terminal, tables that fit 80 and 60 columns without splitting ids or emails, the pager, and
JSON or JSONL from every command that prints data when its output is not a terminal.

The terminal is a real pseudo-terminal; the commands run as `python -m auditcli`, with the
progress delay set to zero (`cli_options.SHOW_AFTER`) so that a small store shows a bar."""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.cells import cell_len

ROOT = Path(__file__).resolve().parent.parent
_RUN = (
    "import sys, auditcli.cli_options as o; o.SHOW_AFTER = 0; "
    "from auditcli.cli import main; sys.argv[0] = 'audit'; main()"
)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A copy of sample_logs (queries write line indexes into the store)."""
    target = tmp_path / "sample"
    shutil.copytree(ROOT / "sample_logs", target)
    return target


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(TERM="xterm", COLUMNS="80", LINES="24", AUDIT_WRITER_ID="t", **extra)
    env.pop("NO_COLOR", None)
    return env


def _read_all(fd: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks)


def run_audit(
    *args: str, terminal: tuple[str, ...] = ("stderr",), env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    """Run `audit ARGS` with the streams named in `terminal` on one pseudo-terminal (80 x 24)
    and the others piped. Returns (exit code, the terminal's bytes, stdout if piped)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN, *args],
        stdin=subprocess.DEVNULL,
        stdout=slave if "stdout" in terminal else subprocess.PIPE,
        stderr=slave if "stderr" in terminal else subprocess.PIPE,
        env=env or _env(),
    )
    os.close(slave)
    try:
        seen = _read_all(master, proc)
        piped = b""
        if proc.stdout is not None:
            piped = proc.stdout.read()
        if proc.stderr is not None:
            piped += proc.stderr.read()
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, seen, piped


@pytest.fixture
def entries_file(tmp_path: Path) -> Path:
    out = tmp_path / "entries.jsonl"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/gen_entries.py"),
            *("--entries", "3000", "--days", "3", "--out", str(out)),
        ],
        check=True,
        capture_output=True,
    )
    return out


# ------------------------------------------------------------------------------ progress
class TestProgress:
    def test_import_shows_a_bar_with_entries_on_a_terminal(self, tmp_path, entries_file) -> None:
        logs = str(tmp_path / "logs")
        code, screen, stdout = run_audit("-d", logs, "import", str(entries_file))
        assert code == 0
        assert stdout == b"imported 3000 entries\n"
        text = screen.decode()
        assert "importing" in text
        assert re.search(r"[\d,]+ entries", text), text

    def test_the_bar_shows_entries_per_second_and_restarts_at_each_phase(self) -> None:
        from auditcli.cli_options import _ProgressBar

        now = [100.0]
        bar = _ProgressBar("importing", 2000, "entries")
        bar.clock = lambda: now[0]
        bar.started = bar.last = bar.phase_started = 100.0
        try:
            now[0] = 102.0
            bar(5000, done=1000, phase="validating")
            fields = bar.bar.tasks[0].fields
            assert fields["entries"] == "5,000 entries · 2,500/s"
            assert bar.bar.tasks[0].completed == 1000 and bar.bar.tasks[0].total == 2000
            now[0] = 103.0
            bar(10, done=5, total=50, phase="writing")  # a new phase: no rate yet
            assert bar.bar.tasks[0].fields["entries"] == "10 entries"
            assert bar.bar.tasks[0].total == 50
            now[0] = 104.0
            bar(4000, done=40, phase="writing")
            assert bar.bar.tasks[0].fields["entries"] == "4,000 entries · 4,000/s"
        finally:
            bar.close()

    def test_quiet_and_pipes_show_nothing(self, tmp_path, entries_file) -> None:
        logs = str(tmp_path / "logs")
        code, screen, stdout = run_audit("-d", logs, "--quiet", "import", str(entries_file))
        assert (code, screen, stdout) == (0, b"", b"imported 3000 entries\n")
        # Everything piped: the same result, and nothing on stderr.
        proc = subprocess.run(
            [sys.executable, "-c", _RUN, "-d", logs, "import", str(entries_file)],
            capture_output=True,
            env=_env(),
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0
        assert proc.stdout == b"imported 0 entries, 3000 duplicate(s) skipped\n"
        assert proc.stderr == b""

    @pytest.mark.parametrize(
        ("args", "label"),
        [
            (("verify", "-f", "json"), "verifying"),
            (("seal",), "sealing"),
            (("state", "admins", "-f", "json"), "replaying"),
            (("history", "--target-id", "user-101", "-f", "json"), "reading the history"),
            (("export", "-o", "out.jsonl"), "exporting"),
        ],
    )
    def test_long_commands_report_on_stderr(self, tmp_path, entries_file, args, label) -> None:
        logs = str(tmp_path / "logs")
        assert run_audit("-d", logs, "--quiet", "import", str(entries_file))[0] == 0
        args = tuple(str(tmp_path / a) if a == "out.jsonl" else a for a in args)
        code, screen, stdout = run_audit("-d", logs, *args)
        assert code == 0, screen
        assert label in screen.decode()
        assert label not in stdout.decode()

    def test_the_first_query_reports_its_index_build(self, tmp_path, entries_file) -> None:
        logs = str(tmp_path / "logs")
        assert run_audit("-d", logs, "--quiet", "import", str(entries_file))[0] == 0
        # The import indexed the days it wrote: the first query has nothing to build ...
        assert run_audit("-d", logs, "query", "--count") == (0, b"", b"3000\n")
        shutil.rmtree(tmp_path / "logs" / "_index")  # ... unless the indexes are gone
        code, screen, stdout = run_audit("-d", logs, "query", "--count")
        assert (code, stdout) == (0, b"3000\n")
        assert "indexing" in screen.decode()
        again = run_audit("-d", logs, "query", "--count")  # indexed: nothing to report
        assert again == (0, b"", b"3000\n")


# ------------------------------------------------------------------------------ pager
class TestPager:
    def test_long_output_goes_through_the_pager_on_a_terminal(self, sample) -> None:
        pager = f"{sys.executable} -c \"import sys; sys.stdin.read(); print('PAGED')\""
        env = _env(AUDIT_PAGER=pager)
        code, screen, _ = run_audit(
            "-d", str(sample), "query", "-n", "30", terminal=("stdout", "stderr"), env=env
        )
        assert code == 0
        assert screen.decode().strip() == "PAGED"

    def test_no_pager_short_output_and_pipes_are_not_paged(self, sample) -> None:
        env = _env(AUDIT_PAGER=f"{sys.executable} -c \"print('PAGED')\"")
        both = ("stdout", "stderr")
        _, screen, _ = run_audit(
            "-d", str(sample), "--no-pager", "query", "-n", "30", terminal=both, env=env
        )
        assert "PAGED" not in screen.decode() and "Time (UTC)" in screen.decode()
        _, screen, _ = run_audit("-d", str(sample), "query", "-n", "2", terminal=both, env=env)
        assert "PAGED" not in screen.decode() and "Time (UTC)" in screen.decode()
        _, _, piped = run_audit("-d", str(sample), "query", "-n", "30", "-f", "table", env=env)
        assert b"PAGED" not in piped and b"Time (UTC)" in piped

    def test_a_missing_pager_shows_the_output_anyway(self, sample) -> None:
        env = _env(AUDIT_PAGER="/nonexistent/pager")
        code, screen, _ = run_audit(
            "-d", str(sample), "query", "-n", "30", terminal=("stdout", "stderr"), env=env
        )
        assert code == 0
        assert "Time (UTC)" in screen.decode() and "1–30 of 385" in screen.decode()


# ------------------------------------------------------------------------------ widths
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ID_START = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{1,12})*$")
_TABLES = [
    ("query", "--limit", "50"),
    ("query", "--action", "org_admin_added", "--action", "org_admin_removed"),
    ("state", "admins", "--at", "2026-11-11", "--diff", "2026-11-03"),
    ("state", "teams", "--at", "2026-11-06", "--diff", "2026-11-05"),
    ("state", "users"),
    ("state", "roles"),
    ("state", "service-accounts"),
    ("history", "--target-id", "role-201"),
    ("history", "--actor-id", "user-101"),
    ("actions",),
    ("stats", "--by", "actor"),
    ("verify",),
]


@pytest.mark.parametrize("width", [80, 60])
@pytest.mark.parametrize("args", _TABLES, ids=[" ".join(a[:2]) for a in _TABLES])
def test_tables_fit_and_never_split_ids_or_emails(cli, sample, width, args) -> None:
    result = cli("-d", sample, *args, "-f", "table", env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    # An email or an entry id that appears, appears whole (or as a short id: a prefix ending
    # at a `-`): a fragment at the end or start of a line would be a split.
    store_text = "".join(p.read_text() for p in sample.glob("date=*/*.jsonl"))
    emails = set(_EMAIL.findall(store_text))
    for line in lines:
        for word in line.split():
            if "@" in word:
                assert word.strip("(),.") in emails, f"a part of an email: {word!r} in {line!r}"
            if _ID_START.match(word):
                assert len(word) in (8, 13, 18, 23, 36) and word in store_text, (word, line)


def test_state_admins_at_60_keeps_org_user_and_grantor(cli, sample) -> None:
    args = ("-d", sample, "state", "admins", "--at", "2026-11-11", "-f", "table")
    result = cli(*args, env={"COLUMNS": "60"})
    header = next(line for line in result.stdout.splitlines() if "Org" in line)
    assert header.split()[:4] == ["Org", "User", "Granted", "by"]
    assert "bob@acme.example.com" in result.stdout and "alice@acme.example.com" in result.stdout


def test_short_ids_are_unique_prefixes() -> None:
    from auditcli.render import short_ids

    ids = [
        "01a1a1ba-66ea-701b-8000-000000000001",
        "01a1a1ba-66ea-701c-8000-000000000002",
        "01a1ac54-c8c0-7024-a81e-c5bc17957b19",
    ]
    assert short_ids(ids) == {
        ids[0]: "01a1a1ba-66ea-701b",
        ids[1]: "01a1a1ba-66ea-701c",
        ids[2]: "01a1ac54",
    }


def test_tail_shows_display_names_and_fits(cli, sample) -> None:
    from auditcli.commands.maintenance import _TableWriter
    from auditcli.store import AuditStore

    writer = _TableWriter()
    store = AuditStore(sample)
    last = store.files("2026-11-11")[0].path.read_bytes().splitlines(keepends=True)[-1]
    text = writer.line(last).decode()
    assert "User Login" in text or "System Admin" in text or "Team" in text
    assert "_" not in text.split()[2]  # a display name, not the raw action
    assert max(cell_len(line) for line in text.splitlines()) <= 80


# ------------------------------------------------------------------------------ pipes
@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (("state", "admins"), "json"),
        (("verify",), "json"),
        (("actions",), "json"),
        (("stats", "--by", "action"), "json"),
        (("history", "--target-id", "role-201"), "jsonl"),
        (("service-account", "list"), "json"),
        (("query", "-n", "3"), "jsonl"),
    ],
)
def test_data_commands_write_json_to_a_pipe(cli, sample, args, kind) -> None:
    result = cli("-d", sample, *args)
    assert result.exit_code == 0, result.output
    if kind == "json":
        json.loads(result.stdout)
    else:
        assert all(json.loads(line) for line in result.stdout.splitlines())
    table = cli("-d", sample, *args, "-f", "table")
    assert table.exit_code == 0
    with pytest.raises(ValueError):
        json.loads(table.stdout)


@pytest.mark.parametrize(
    ("audit_pager", "pager", "want"),
    [
        (None, None, ["less", "-FRX"]),
        (None, "more -d", ["more", "-d"]),
        ("most", "more", ["most"]),
        ("", "more", None),
        ("cat", None, None),
        (None, "cat", None),
        ("less 'unbalanced", None, None),
    ],
)
def test_pager_choice(monkeypatch, audit_pager, pager, want) -> None:
    from auditcli.pager import pager_command

    for name, value in (("AUDIT_PAGER", audit_pager), ("PAGER", pager)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert pager_command() == want
