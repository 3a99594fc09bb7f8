"""Whoever can write the log directory cannot make `audit` lie, hang, or touch anything outside
it, table-driven.

Each case plants one hostile state in a copy of a small store, then runs record, import, query,
export, stats, verify, seal, report and rotate in one child process (the real CLI through typer's
runner, so a case costs one interpreter start; the child has a timeout, so a hang fails the case
instead of the suite), and tail as its own process for a moment. Every case asserts: all finish
in time; nothing changed in a sentinel directory next to the log directory (which the planted
links point into); no internal error; the commands that meet the planted thing fail with the
documented exit code and a one-line message naming it, and answers stay exact. `serve` meets
the worst of them as a real server process (see `test_serve_is_never_wedged`)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from serving import Server

from auditcli.accounts import AccountStore
from auditcli.store import AuditStore

BIG_DAY, DAY, DAY3 = "2026-01-01", "2026-01-02", "2026-01-03"
ORGS = ("org-a", "org-b")
BIG = 1200  # entries of BIG_DAY: over 256 KiB, so queries index the file
TIMEOUT = 60  # seconds for one case's child process (it takes a few)
DRIVER = r"""
import json, sys
from typer.testing import CliRunner
from auditcli.cli import app
from auditcli.commands import core, integrity, maintenance, auditor, server  # noqa: F401
runner = CliRunner()
out = {}
for name, argv, stdin in json.loads(sys.argv[1]):
    result = runner.invoke(app, argv, input=stdin)
    # What a person reads: stderr, and the problems verify (as JSON), seal and rotate print.
    said = result.stderr
    if name == "verify" and result.stdout.startswith("{"):
        for p in json.loads(result.stdout)["problems"]:
            where = p["file"] if p["line"] is None else f"{p['file']}:{p['line']}"
            said += f"{where}: {p['kind']}: {p['detail']}\n"
    elif name in ("seal", "rotate"):
        said += result.stdout
    out[name] = [result.exit_code, said, result.stdout if name == "query" else ""]
# This process's own peak (VmHWM starts afresh at exec; ru_maxrss would count the RSS of the
# pytest process it was forked from).
with open("/proc/self/status") as status:
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
out["peak_mib"] = hwm // 1024
print(json.dumps(out))
"""


def _entry(n: int, day: str) -> dict[str, Any]:
    return {
        "id": f"{day}-{n:05d}",
        "action": "login",
        "actorId": f"u{n % 7}",
        "organizationId": ORGS[n % 2],
        "metadata": {"pad": "x" * 200},
        "createdAt": f"{day}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
    }


def _index(root: Path) -> None:
    """Index the big day's file as it is in `root` (a copy has other inodes: a new index)."""
    from auditcli.query import Filters, QueryEngine

    assert QueryEngine(AuditStore(root), Filters()).count() >= BIG


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a big settled day (indexed by a first query), two small days, a seal."""
    root = tmp_path_factory.mktemp("base") / "logs"
    store = AuditStore(root, writer_id="w1")
    store.append(_entry(n, BIG_DAY) for n in range(BIG))
    store.append(_entry(n, day) for day in (DAY, DAY3) for n in range(10))
    _index(root)
    assert list((root / "_index" / f"date={BIG_DAY}").iterdir())
    return root


# ------------------------------------------------------------------------------- states
def _outside(root: Path) -> Path:
    return root.parent / "outside"


def _fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def _socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


def _manifest(root: Path) -> Path:
    """The newest manifest of the last writer's chain (`_manifests/<writer>/…`)."""
    return sorted((root / "_manifests").glob("*/0*.json"))[-1]


def _chain_links_outside(root: Path) -> None:
    """A writer's chain directory replaced by a symlink to a copy of it outside the store."""
    chain = _manifest(root).parent
    shutil.copytree(chain, _outside(root) / chain.name)
    shutil.rmtree(chain)
    chain.symlink_to(_outside(root) / chain.name)


def _removed(path: Path) -> Path:
    """`path`, deleted (a case plants something else in its place)."""
    path.unlink()
    return path


def swap_index_orgs(root: Path) -> None:
    """Issue 11 item 2: org ids (and counts) swapped in an index header, identity kept."""
    _index(root)
    path = next((root / "_index" / f"date={BIG_DAY}").glob("*.idx"))
    data = path.read_bytes()
    forged = data.replace(b'"org-a"', b'"org-X"').replace(b'"org-b"', b'"org-a"')
    path.write_bytes(forged.replace(b'"org-X"', b'"org-b"'))


def giant_line(root: Path) -> None:
    """Issue 11 item 6: 64 MiB without a newline in the middle of a log file."""
    path = root / f"date={DAY}" / "w1.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    with path.open("wb") as handle:
        handle.writelines(lines[:5])
        block = b"y" * (1 << 20)
        for _ in range(64):
            handle.write(block)
        handle.write(b"\n")
        handle.writelines(lines[5:])


def gzip_bomb(root: Path) -> None:
    """96 MiB of one "line" in a small gzip archive."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    path = root / f"date={DAY3}" / "w9.jsonl.gz"
    with path.open("wb") as handle:
        block = b"z" * (1 << 20)
        for _ in range(96):
            handle.write(packer.compress(block))
        handle.write(packer.flush())


def hard_link(root: Path) -> None:
    """A log file hard-linked to a file outside: read like any foreign file, never changed."""
    os.link(_outside(root) / "secret.jsonl", root / f"date={DAY}" / "w5.jsonl")


def unreadable_partition(root: Path) -> None:
    (root / f"date={DAY}").chmod(0)


def unreadable_manifests(root: Path) -> None:
    (root / "_manifests").chmod(0)


@dataclass
class Case:
    name: str
    setup: Callable[[Path], None]
    #: Commands that meet the planted thing: they must exit `code` naming `needle`.
    fails: tuple[str, ...]
    code: int = 5
    needle: str = ""
    #: Commands that may also exit `code` (a warning about the state) instead of 0.
    may_fail: tuple[str, ...] = ()
    #: query --count per organization after the setup (default: the true counts).
    counts: dict[str, int] | None = None
    unprivileged: bool = False
    #: A second text each failing command must say.
    extra_needle: str = ""
    #: Whether `query` still answers (a broken catalog stops it with `code`).
    answers: bool = True
    #: Commands that exit with another documented code here.
    other_codes: dict[str, int] = field(default_factory=dict)


READERS = ("query", "export", "stats", "verify")
ALL = ("record", "import", "query", "export", "stats", "verify", "seal", "report", "rotate")
TRUE_COUNTS = {org: (BIG + 20) // 2 for org in ORGS}
P = f"date={DAY}"

CASES = [
    Case(
        "_index links outside",
        lambda r: (shutil.rmtree(r / "_index"), (r / "_index").symlink_to(_outside(r))),
        fails=("verify",),
        needle="_index: not an index directory",
    ),
    Case(
        "_index/date=… symlinked outside",
        lambda r: (
            shutil.rmtree(r / "_index" / f"date={BIG_DAY}"),
            (r / "_index" / f"date={BIG_DAY}").symlink_to(_outside(r)),
        ),
        fails=("verify",),
        needle="not an index directory",
    ),
    Case(
        "index header forged: organizations swapped",
        swap_index_orgs,
        fails=("query", "verify", "stats"),
        needle=f"_index/date={BIG_DAY}/w1.jsonl.idx",
        may_fail=("export", "stats", "report", "seal", "rotate"),
    ),
    Case(
        "_catalog.json is a FIFO",
        lambda r: _fifo(r / "_catalog.json"),
        fails=("record", "import"),
        needle="_catalog.json: a FIFO, not a regular file (refused)",
        may_fail=ALL,
        answers=False,
    ),
    Case(
        "_catalog.json links to /dev/zero",
        lambda r: (r / "_catalog.json").symlink_to("/dev/zero"),
        fails=("record", "import"),
        needle="_catalog.json: cannot open: is a symbolic link",
        may_fail=ALL,
        answers=False,
    ),
    Case(
        "_catalog.json of 2 MiB",
        lambda r: (r / "_catalog.json").write_bytes(b" " * (2 << 20)),
        fails=("record", "import"),
        needle="over the 1 MiB limit (refused)",
        may_fail=ALL,
        answers=False,
    ),
    Case(
        "_catalog.json is a directory",
        lambda r: (r / "_catalog.json").mkdir(),
        fails=("record", "import"),
        needle="_catalog.json: a directory, not a regular file",
        may_fail=ALL,
        answers=False,
    ),
    Case(
        "a manifest is a FIFO",
        lambda r: _fifo(_removed(_manifest(r))),
        fails=("verify", "seal"),
        needle="a FIFO, not a regular file",
        may_fail=("report", "rotate"),
    ),
    Case(
        "a manifest links to /dev/zero",
        lambda r: _removed(_manifest(r)).symlink_to("/dev/zero"),
        fails=("verify", "seal"),
        needle="is a symbolic link",
        may_fail=("report", "rotate"),
    ),
    Case(
        "_manifests is a socket",
        lambda r: (shutil.rmtree(r / "_manifests"), _socket(r / "_manifests")),
        fails=("verify", "seal"),
        needle="_manifests",
        may_fail=("report", "rotate"),
    ),
    Case(
        "_manifests links outside",
        lambda r: (shutil.rmtree(r / "_manifests"), (r / "_manifests").symlink_to(_outside(r))),
        fails=("verify", "seal"),
        needle="_manifests",
        may_fail=("report", "rotate"),
    ),
    Case(
        "a writer's manifest chain links outside",
        _chain_links_outside,
        fails=("verify", "seal"),
        needle="_manifests/w",
        may_fail=("report", "rotate"),
    ),
    Case(
        "an empty partition named date=…\\n",
        lambda r: (r / f"date={DAY}\n").mkdir(),
        fails=("query", "verify"),
        needle="not a partition: not a partition name",
        may_fail=(*READERS, "report", "rotate"),
    ),
    Case(
        "a partition that links outside",
        lambda r: (r / "date=2026-01-04").symlink_to(_outside(r)),
        fails=("query", "verify", "rotate"),
        needle="is a symbolic link, not a partition directory; ignored",
        may_fail=(*READERS, "report"),
    ),
    Case(
        "a file where a partition belongs",
        lambda r: (r / "date=2026-01-04").write_bytes(b"x\n"),
        fails=("query", "verify"),
        needle="date=2026-01-04: not a partition: cannot list the partition: not a directory",
        may_fail=(*READERS, "report", "rotate"),
    ),
    Case(
        "a log file is a FIFO",
        lambda r: _fifo(r / P / "w2.jsonl"),
        fails=("query", "verify", "seal"),
        needle=f"{P}/w2.jsonl: not a regular file",
        may_fail=ALL,
    ),
    Case(
        "a log file is a socket",
        lambda r: _socket(r / P / "w2.jsonl"),
        fails=("query", "verify"),
        needle=f"{P}/w2.jsonl",
        may_fail=ALL,
    ),
    Case(
        "a log file links to /dev/zero",
        lambda r: (r / P / "w2.jsonl").symlink_to("/dev/zero"),
        fails=("query", "verify", "seal"),
        needle=f"{P}/w2.jsonl: cannot open: is a symbolic link",
        may_fail=ALL,
    ),
    Case(
        "a compressed log file links to /dev/zero",
        lambda r: (r / P / "w2.jsonl.gz").symlink_to("/dev/zero"),
        fails=("query", "verify"),
        needle=f"{P}/w2.jsonl.gz: cannot open: is a symbolic link",
        may_fail=ALL,
    ),
    Case(
        "a directory where a log file belongs",
        lambda r: (r / P / "w2.jsonl").mkdir(),
        fails=("query", "verify"),
        needle=f"{P}/w2.jsonl: not a regular file",
        may_fail=ALL,
    ),
    Case(
        "a 64 MiB line",
        giant_line,
        fails=("query", "verify"),
        needle="67108865 bytes at byte offset 2850",
        may_fail=ALL,
    ),
    Case(
        "a gzip bomb of one 96 MiB line",
        gzip_bomb,
        fails=("query", "verify"),
        needle="w9.jsonl.gz:1: ",
        extra_needle="100663296 bytes with no newline at the end",
        may_fail=ALL,
    ),
    Case(
        "a log file hard-linked to a file outside",
        hard_link,
        fails=("query", "verify"),
        needle=f"{P}/w5.jsonl:1: ",
        may_fail=ALL,
    ),
    Case(
        "an unreadable partition (no CAP_DAC_OVERRIDE)",
        unreadable_partition,
        fails=("query", "verify"),
        needle="Permission denied",
        may_fail=ALL,
        unprivileged=True,
        other_codes={"rotate": 5},  # files left in place: exit 5, like any rotate problem
        counts={org: TRUE_COUNTS[org] - 5 for org in ORGS},
    ),
    Case(
        "an unreadable _manifests (no CAP_DAC_OVERRIDE)",
        unreadable_manifests,
        fails=("verify", "seal"),
        needle="_manifests",
        may_fail=("report", "rotate"),
        unprivileged=True,
    ),
]


# ------------------------------------------------------------------------------- helpers
def _snapshot(directory: Path) -> dict[str, tuple[int, str]]:
    """Every entry below `directory`: its mode and content digest (files) or link target."""
    found = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(info.st_mode):
            digest = os.readlink(path)
        else:
            digest = ""
        found[str(path.relative_to(directory))] = (info.st_mode, digest)
    return found


def _unprivileged() -> tuple[str, ...]:
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    prefix = (setpriv or "setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner")
    if not setpriv or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here")
    return prefix


def _commands(tmp: Path) -> list[tuple[str, list[str], str | None]]:
    imported = orjson.dumps(_entry(99, DAY3) | {"id": "imported-1"}).decode() + "\n"
    return [
        ("record", ["record", "login", "--actor-id", "u", "--org-id", "org-a"], None),
        ("import", ["import", "-"], imported),
        ("query", ["query", "--org-id", "org-b", "--all", "--format", "jsonl"], None),
        ("export", ["export", "--format", "csv"], None),
        ("stats", ["stats", "--by", "org", "--format", "json"], None),
        ("verify", ["verify", "--format", "json"], None),
        ("seal", ["seal"], None),
        ("report", ["report", "-o", "-", "--format", "md"], None),
        ("rotate", ["rotate"], None),
    ]


def _run_case(case: Case, base: Path, tmp: Path) -> dict[str, Any]:
    root = tmp / "logs"
    shutil.copytree(base, root, symlinks=True)
    outside = _outside(root)
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(b'{"secret": true}\n')
    (outside / "keep").mkdir()
    (outside / "keep" / "note.txt").write_text("do not touch")
    _seal(root)
    case.setup(root)
    before = _snapshot(outside)
    prefix = _unprivileged() if case.unprivileged else ()
    env = {**os.environ, "AUDIT_LOG_DIR": str(root), "AUDIT_WRITER_ID": "testhost"}
    started = time.monotonic()
    tail = _start_tail(prefix, env)  # follows while the other commands run
    try:
        child = subprocess.run(
            [*prefix, sys.executable, "-c", DRIVER, json.dumps(_commands(tmp))],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
        )
    finally:
        if case.unprivileged:
            for path in (root / P, root / "_manifests"):
                if path.exists():
                    path.chmod(0o700)
    assert child.returncode == 0, child.stderr[-3000:]
    results = json.loads(child.stdout)
    results["tail"] = _stop_tail(tail)
    results["seconds"] = time.monotonic() - started
    assert _snapshot(outside) == before, "something outside the log directory changed"
    return results


def _seal(root: Path) -> None:
    """A seal written as `audit seal` writes it, under the name the cases expect."""
    from auditcli.integrity import seal

    store = AuditStore(root, writer_id="w1", clock=lambda: _at("2026-01-04T00:00:00"))
    seal(store)


def _at(text: str) -> Any:
    from datetime import UTC, datetime

    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _start_tail(prefix: tuple[str, ...], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`audit tail`: it must print its last lines and keep following, or stop with a
    documented code; never hang unkillably or crash."""
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "auditcli", "tail", "-n", "3", "--interval", "0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def _stop_tail(process: subprocess.Popen[bytes]) -> list[Any]:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("audit tail did not stop on SIGINT")
    assert process.stderr is not None
    return [process.returncode, process.stderr.read().decode()]


@pytest.fixture(scope="module")
def outcomes(base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case run up front, three at a time (a case is mostly child processes), so the
    table stays fast; each test then checks its own outcome (or re-raises its failure)."""
    places = [tmp_path_factory.mktemp("case") for _ in CASES]

    def run(case: Case, place: Path) -> Any:
        try:
            return _run_case(case, base, place)
        except BaseException as exc:  # pytest's skip and fail too: re-raised by the test
            return exc

    with ThreadPoolExecutor(3) as pool:
        return dict(zip([case.name for case in CASES], pool.map(run, CASES, places), strict=True))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_directory(case: Case, outcomes: dict[str, Any]) -> None:
    results = outcomes[case.name]
    if isinstance(results, BaseException):
        raise results
    assert results.pop("seconds") < TIMEOUT
    # Memory stays bounded whatever the files hold (a 64 MiB line, a 96 MiB gzip "line").
    assert results.pop("peak_mib") < 160
    tail_code, tail_err = results.pop("tail")
    assert "internal error" not in tail_err and "Traceback" not in tail_err, tail_err
    assert tail_code in (-signal.SIGINT, 130, 0, case.code), tail_err
    for name, (code, err, *_) in results.items():
        assert "internal error" not in err and "Traceback" not in err, (name, err)
        if name in case.fails:
            assert code == case.code, (name, code, err)
            assert case.needle in err and case.extra_needle in err, (name, err)
            # One line per message: the needle's line says it all.
            assert any(case.needle in line for line in err.splitlines()), (name, err)
        elif name in case.other_codes:
            assert code == case.other_codes[name] and "Error: " in err, (name, code, err)
        else:
            allowed = (0, case.code) if name in case.may_fail else (0,)
            assert code in allowed, (name, code, err)
    # Answers stay exact: org-b's entries and nothing else (the forged index swapped them).
    code, _, stdout = results["query"]
    if not case.answers:
        assert code == case.code and not stdout
        return
    got = [orjson.loads(line) for line in stdout.splitlines()]
    assert {entry["organizationId"] for entry in got} <= {"org-b"}
    expected = (case.counts or TRUE_COUNTS)["org-b"] + (results["import"][0] == 0)  # org-b's
    assert len(got) == expected, (len(got), expected)
    assert len({entry["id"] for entry in got}) == len(got)


def _quietly(call: Callable[..., Any], *args: Any) -> None:
    """Run `call`, ignoring a transport error (the server stops under it)."""
    with contextlib.suppress(httpx.TransportError):
        call(*args)


def test_names_are_matched_whole(tmp_path: Path) -> None:
    """a trailing newline never passes a name check."""
    env = {**os.environ, "AUDIT_LOG_DIR": str(tmp_path / "logs")}
    subprocess.run([sys.executable, "-m", "auditcli", "init"], env=env, check=True, timeout=60)
    for argv in (
        [
            "actions",
            "add",
            "deploy\n",
            "--display-name",
            "D",
            "--target",
            "USER",
            "--template",
            "x",
        ],
        ["service-account", "create", "sa\n", "--org-id", "o", "--role", "admin"],
    ):
        run = subprocess.run(
            [sys.executable, "-m", "auditcli", *argv], capture_output=True, text=True, env=env
        )
        assert run.returncode == 2, (argv, run.stderr)
        assert "\\n" in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    with pytest.raises(Exception, match="writer id"):
        AuditStore(tmp_path, writer_id="w1\n")


def test_serve_is_never_wedged(base: Path, tmp_path: Path) -> None:
    """Issue 11 item 3: planted FIFOs and endless files cost the request that meets them a JSON
    error; every other request is answered; SIGTERM stops the server within 5 s."""
    root = tmp_path / "logs"
    shutil.copytree(base, root, symlinks=True)
    store = AuditStore(root, writer_id="w1")
    _, token = AccountStore(store).create("api", "org-b", "admin", actor={"actorId": "t"})
    server = Server(root, tmp_path / "serve.log")
    headers = {"Authorization": f"Bearer {token}"}
    url = server.url + "/api/v1/audit-logs"

    def get(params: dict[str, Any]) -> httpx.Response:
        return httpx.get(url, params=params, headers=headers, timeout=15)

    stopped_in = float("inf")
    try:
        assert get({"limit": 1}).json()["total"] == TRUE_COUNTS["org-b"] + 1  # + its creation
        for plant, params in (
            (lambda: _fifo(root / "_catalog.json"), {"action": "login"}),
            (lambda: (root / "_catalog.json").symlink_to("/dev/zero"), {"action": "login"}),
            (lambda: _fifo(root / P / "w2.jsonl"), {}),
            (lambda: (root / P / "w2.jsonl").symlink_to("/dev/zero"), {}),
        ):
            plant()
            bad = get(params)
            assert bad.status_code in (200, 500), bad.text
            assert bad.headers["content-type"] == "application/json"
            if bad.status_code == 200:  # a bad log file is skipped, and the answer says so
                assert "X-Audit-Warning" in bad.headers
                assert bad.json()["total"] == TRUE_COUNTS["org-b"] + 1
            else:
                assert "error" in bad.json()
            for planted in (root / "_catalog.json", root / P / "w2.jsonl"):
                if planted.is_symlink() or planted.exists():
                    planted.unlink()
            assert get({"limit": 1}).status_code == 200
        # The forged index of item 2: org-b's token still sees only org-b.
        swap_index_orgs(root)
        body = get({"limit": 100}).json()
        assert {entry["organizationId"] for entry in body["logs"]} == {"org-b"}
        # The query string is never logged (a token there is refused, and not kept).
        refused = httpx.get(url, params={"access_token": token}, timeout=5)
        assert refused.status_code == 401
        trailing = httpx.get(url + "/", headers=headers, timeout=5)
        assert trailing.status_code == 404 and "location" not in trailing.headers
        head = httpx.head(url, headers=headers, timeout=5)
        assert head.status_code == 200 and head.headers["content-type"] == "application/json"
        # A planted process holds a writer's lock over a torn end forever: the request that
        # meets it waits (5 s at most), and SIGTERM meanwhile still stops the server in time.
        with (root / P / "w1.jsonl").open("ab") as planted:
            planted.write(b'{"id":"torn')
            planted.flush()
            fcntl.flock(planted.fileno(), fcntl.LOCK_EX)
            waiting = threading.Thread(target=lambda: _quietly(get, {}), daemon=True)
            waiting.start()
            time.sleep(0.5)
            stopped_in = server.stop()
    finally:
        server.stop()  # (at once when it already stopped)
    assert stopped_in < 5
    log = server.log.read_text()
    assert token not in log and "access_token" not in log


def test_a_held_lock_costs_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planted process holding a lock for ever: readers read on, seal gives up with a
    one-line error (the waits are shortened here; see LOCK_WAIT and LOCK_PATIENCE)."""
    from auditcli import store as store_module
    from auditcli.errors import IntegrityError
    from auditcli.integrity import manifests, seal
    from auditcli.query import Filters, QueryEngine

    monkeypatch.setattr(store_module, "LOCK_WAIT", 0.2)
    monkeypatch.setattr(manifests, "LOCK_PATIENCE", 0.2)
    store = AuditStore(tmp_path / "logs", writer_id="w1")
    store.append(_entry(n, DAY) for n in range(4))
    seal(store)
    path = tmp_path / "logs" / P / "w1.jsonl"
    with path.open("ab") as held, (tmp_path / "logs" / "_manifests" / ".lock").open("rb") as lock:
        held.write(b'{"id":"half')
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        started = time.monotonic()
        engine = QueryEngine(store, Filters())
        assert engine.count() == 4
        assert [problem.kind for problem in engine.problems] == ["torn line"]
        with pytest.raises(IntegrityError, match=r"_manifests/\.lock: held by another process"):
            seal(store)
        assert time.monotonic() - started < 5
