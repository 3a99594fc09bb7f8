"""Loses nothing, lets nothing through, with real processes:
concurrent writers and readers, `kill -9` mid-import, torn lines, and write faults (resource
limits, read-only and immutable files, dropped privileges, a tiny filesystem, injected OS errors).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from auditcli import chain
from auditcli.cli import app
from auditcli.commands import core  # noqa: F401  (registers record, import, query)
from auditcli.integrity.redaction import hashed_input
from auditcli.model import MAX_LINE_BYTES, SEED_FIELDS
from auditcli.store import AuditStore, init_store

DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")


# ------------------------------------------------------------------------------- helpers
def audit(
    root: Path,
    *args: str,
    writer: str = "w1",
    stdin: bytes | None = None,
    preexec_fn: Callable[[], None] | None = None,
    prefix: tuple[str, ...] = (),
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m auditcli -d ROOT ARGS…` as a real process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env["AUDIT_WRITER_ID"] = writer
    return subprocess.run(
        [*prefix, sys.executable, "-m", "auditcli", "-d", str(root), *args],
        input=stdin,
        capture_output=True,
        env=env,
        preexec_fn=preexec_fn,
        timeout=timeout,
        check=False,
    )


def inproc(
    root: Path, *args: str, writer: str = "w1", stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The same command in this process (typer's CliRunner): for tests where the process
    boundary is not the point, since each real process costs ~0.3 s of start-up."""
    env = {"AUDIT_LOG_DIR": None, "AUDIT_WRITER_ID": writer}
    result = CliRunner().invoke(app, ["-d", str(root), *args], input=stdin, env=env)
    return subprocess.CompletedProcess(
        args, result.exit_code, result.stdout_bytes, result.stderr_bytes
    )


def popen_import(root: Path, source: Path, writer: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env["AUDIT_WRITER_ID"] = writer
    return subprocess.Popen(
        [sys.executable, "-m", "auditcli", "-d", str(root), "import", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def entry(
    entry_id: str, n: int, *, writer: str = "w1", pad: int = 0, day: str = DAYS[0]
) -> dict[str, Any]:
    """A valid seed-format entry; the same arguments always give the same entry."""
    return {
        "id": entry_id,
        "action": "login",
        "actorId": f"user-{n % 97}",
        "organizationId": "org-1",
        "createdAt": f"{day}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
        "metadata": {"w": writer, "pad": "x" * pad},
    }


def dump(entries: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in entries)


def scan(root: Path) -> tuple[list[tuple[Path, dict[str, Any]]], dict[Path, int]]:
    """Every stored entry with its file, checking that each line is whole, has the stored shape,
    parses, and chains from the previous line (so no two writes ever interleaved). Returns the
    entries and, per file with an unterminated tail (a crash), that tail's line number."""
    entries: list[tuple[Path, dict[str, Any]]] = []
    torn: dict[Path, int] = {}
    for path in sorted(root.glob("date=*/*.jsonl")):
        lines = path.read_bytes().split(b"\n")
        tail = lines.pop()
        if tail:
            torn[path] = len(lines) + 1
        previous = chain.genesis(path.parent.name, path.name[: -len(".jsonl")])
        for number, line in enumerate(lines, 1):
            parsed = chain.split_line(line + b"\n")
            assert parsed is not None, f"{path}:{number} is not a whole stored line"
            digest = parsed[1]
            hashed = hashed_input(line)  # a version 2 line's committed form
            assert digest == chain.link(previous, hashed), f"{path}:{number} breaks the chain"
            previous = digest
            data = orjson.loads(chain.content_of(line + b"\n"))
            assert tuple(data) == SEED_FIELDS
            entries.append((path, data))
    return entries, torn


def writer_of(path: Path) -> str:
    return path.name[: -len(".jsonl")].split("+")[0]


def file_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def one_error_line(stderr: bytes) -> str:
    """The single `Error: …` line a failed command prints, checked to be alone and clean."""
    text = stderr.decode()
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("Error: "), text
    return lines[0]


# ------------------------------------------------------------------------------- 1. concurrency
@pytest.mark.slow
def test_concurrent_records_imports_and_queries(tmp_path: Path) -> None:
    """4 importers, 3 record loops and 2 query loops at once, on 4 writer ids ("hosts"): every
    entry lands exactly once, every line is whole and chained, a file holds one host's entries,
    and no query running meanwhile fails, reports damage or returns a partial line."""
    root = tmp_path / "logs"
    rng = random.Random(1)

    def pad() -> int:
        roll = rng.random()
        if roll < 0.01:
            return rng.randint(MAX_LINE_BYTES - 3000, MAX_LINE_BYTES - 1200)  # near the limit
        return rng.randint(500, 6000) if roll < 0.15 else rng.randint(0, 300)

    made: dict[str, dict[str, Any]] = {}

    def make(prefix: str, count: int, writer: str) -> list[dict[str, Any]]:
        for n in range(count):
            entry_id = f"{prefix}-{n}"
            if entry_id not in made:
                made[entry_id] = entry(entry_id, n, writer=writer, pad=pad(), day=DAYS[n % 3])
        return [made[f"{prefix}-{n}"] for n in range(count)]

    a = make("a", 6000, "hostA")
    b = a[3000:] + make("b", 3000, "hostA")  # half of A again: the same host, same content
    rng.shuffle(b)
    sources = {
        ("a", "hostA"): a,
        ("b", "hostA"): b,
        ("c", "hostB"): make("c", 6000, "hostB"),
        ("d", "hostC"): make("d", 6000, "hostC"),
    }
    paths = {}
    for (name, _), items in sources.items():
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_bytes(dump(items))

    confirmed: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    done = threading.Event()
    query_runs = Counter[str]()

    def record_loop(writer: str, count: int) -> None:
        local = random.Random(writer)
        for n in range(count):
            entry_id = f"r-{writer}-{n}"
            size = MAX_LINE_BYTES - 1500 if n == 0 else local.randint(0, 3000)
            data = entry(entry_id, n, writer=writer, pad=size, day=DAYS[n % 3])
            if n % 2:
                proc = audit(root, "record", "-", writer=writer, stdin=orjson.dumps(data))
            else:
                proc = audit(
                    root,
                    "record",
                    "login",
                    "--actor-id",
                    data["actorId"],
                    "--org-id",
                    "org-1",
                    "--id",
                    entry_id,
                    "--created-at",
                    data["createdAt"],
                    "--metadata",
                    json.dumps(data["metadata"]),
                    writer=writer,
                )
            if proc.returncode != 0 or proc.stdout.decode().strip() != entry_id:
                failures.append(f"record {entry_id}: {proc.returncode} {proc.stderr!r}")
            confirmed[entry_id] = data

    def query_loop(kind: str) -> None:
        while not done.is_set() or query_runs[kind] < 2:
            args = ("--all", "-f", "jsonl", "--order", "asc") if kind == "all" else ("--count",)
            proc = audit(root, "query", *args)
            query_runs[kind] += 1
            if proc.returncode != 0 or proc.stderr:
                failures.append(f"query {kind}: {proc.returncode} {proc.stderr[:300]!r}")
                return
            if kind == "count":
                int(proc.stdout)
                continue
            assert proc.stdout.endswith(b"\n") or not proc.stdout
            seen = set()
            for line in proc.stdout.splitlines():
                data = orjson.loads(line)  # a partial line would not parse
                if tuple(data) != SEED_FIELDS or data["id"] in seen:
                    failures.append(f"query returned a bad or repeated entry: {line[:100]!r}")
                seen.add(data["id"])

    init_store(root)  # the queries read it from the start: it must be a log directory by then
    started = time.monotonic()
    importers = {name: popen_import(root, paths[name], writer) for name, writer in sources}
    threads = [
        threading.Thread(target=record_loop, args=(w, 5)) for w in ("hostA", "hostB", "hostD")
    ]
    threads += [threading.Thread(target=query_loop, args=(k,)) for k in ("all", "count")]
    for thread in threads:
        thread.start()
    outputs = {name: proc.communicate(timeout=180) for name, proc in importers.items()}
    for thread in threads[:3]:
        thread.join(timeout=180)
    done.set()
    for thread in threads[3:]:
        thread.join(timeout=180)
    elapsed = time.monotonic() - started

    assert not failures, failures[:5]
    for name, proc in importers.items():
        assert proc.returncode == 0, outputs[name][1]
    reports = {name: outputs[name][0].decode() for name in importers}
    assert reports["c"] == "imported 6000 entries\n" and reports["d"] == "imported 6000 entries\n"
    # A and B share 3000 ids: together they write each once, and say how many they skipped.
    written = duplicates = 0
    for name in ("a", "b"):
        parts = reports[name].replace(",", "").split()
        written += int(parts[1])
        duplicates += int(parts[3]) if "duplicate(s)" in reports[name] else 0
    assert (written, duplicates) == (9000, 3000), reports

    entries, torn = scan(root)
    assert not torn
    ids = Counter(data["id"] for _, data in entries)
    assert max(ids.values()) == 1, ids.most_common(3)
    expected = set(made) | set(confirmed)
    assert set(ids) == expected
    assert len(ids) == 21000 + 15
    for path, data in entries:  # hosts never share a file
        assert data["metadata"]["w"] == writer_of(path), path
        want = made.get(data["id"]) or confirmed[data["id"]]
        assert data["metadata"] == want["metadata"] and data["createdAt"] == want["createdAt"]
    writers = {writer_of(path) for path, _ in entries}
    assert writers == {"hostA", "hostB", "hostC", "hostD"}
    assert query_runs["all"] >= 2 and query_runs["count"] >= 2
    verify = audit(root, "verify")  # every file's chain, checked by the tool itself
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr
    print(
        f"\n{len(ids)} entries from 9 concurrent processes in {elapsed:.1f}s; "
        f"{query_runs['all']} full and {query_runs['count']} counting queries meanwhile"
    )


def test_hosts_sharing_a_volume_write_separate_files(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    for writer in ("host-1", "host-2", "host-3"):
        proc = inproc(
            root, "record", "-", writer=writer, stdin=orjson.dumps(entry(writer, 1, writer=writer))
        )
        assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (root / f"date={DAYS[0]}").iterdir())
    assert names == ["host-1.jsonl", "host-2.jsonl", "host-3.jsonl"]
    for path, data in scan(root)[0]:
        assert data["metadata"]["w"] == writer_of(path)


# ------------------------------------------------------------------------------- 2. crashes
def _importer_bytes(root: Path) -> int:
    total = 0
    for path in root.glob("date=*/w1*.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


@pytest.mark.slow
def test_kill_9_mid_import_loses_no_confirmed_entry(tmp_path: Path) -> None:
    """An importer is killed with SIGKILL once it is writing, round after round, while `audit
    record` commands complete beside it on the same file. Every confirmed record survives, the
    store stays whole and chained (a torn tail, if a kill made one, is reported and never
    touched again), and the shipper's retry completes the import with each id exactly once."""
    root = tmp_path / "logs"
    rng = random.Random(9)
    big = [entry(f"k-{n}", n, pad=rng.randint(0, 1200), day=DAYS[n % 2]) for n in range(10000)]
    source = tmp_path / "big.jsonl"
    source.write_bytes(dump(big))
    confirmed: set[str] = set()
    failures: list[bytes] = []
    stop = threading.Event()

    def record_beside() -> None:
        n = 0
        while not stop.is_set():
            entry_id = f"conf-{n}"
            done = audit(root, "record", "-", stdin=orjson.dumps(entry(entry_id, n, day=DAYS[1])))
            if done.returncode != 0:
                failures.append(done.stderr)
            confirmed.add(entry_id)
            n += 1

    recorder = threading.Thread(target=record_beside)
    recorder.start()
    torn_seen: dict[Path, bytes] = {}
    kills = 0
    try:
        for _ in range(4):
            proc = popen_import(root, source, "w1")
            base = _importer_bytes(root)
            while proc.poll() is None:
                if _importer_bytes(root) > base + 300_000:  # a batch is being written
                    time.sleep(rng.uniform(0, 0.05))
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                    break
                time.sleep(0.002)
            proc.communicate()
            entries, torn = scan(root)  # whole, chained lines, whatever the kill interrupted
            ids = Counter(data["id"] for _, data in entries)
            assert max(ids.values()) == 1
            for path, line in torn.items():  # a torn tail is reported by file and line
                query = audit(root, "query", "--count")
                assert query.returncode == 5
                assert f"{path.parent.name}/{path.name}:{line}: torn line" in query.stderr.decode()
                torn_seen.setdefault(path, path.read_bytes())
    finally:
        stop.set()
        recorder.join()
    assert not failures, failures[:3]
    for path, data in torn_seen.items():  # never rewritten, never appended to
        assert path.read_bytes() == data
    entries, _ = scan(root)
    assert confirmed <= {data["id"] for _, data in entries}
    final = audit(root, "import", str(source))
    assert final.returncode == 0, final.stderr
    entries, _ = scan(root)
    ids = Counter(data["id"] for _, data in entries)
    assert max(ids.values()) == 1
    assert set(ids) == {item["id"] for item in big} | confirmed
    assert kills >= 2
    verify = audit(root, "verify")
    assert verify.returncode == (5 if torn_seen else 0), verify.stdout[-2000:] + verify.stderr
    print(
        f"\n{kills} kills mid-write, {len(confirmed)} confirmed records beside them, "
        f"{len(torn_seen)} torn tails; the retry: {final.stdout.decode().strip()}"
    )


def test_torn_tail_is_reported_excluded_and_never_glued_to(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    for n in range(2):
        assert inproc(root, "record", "-", stdin=orjson.dumps(entry(f"e-{n}", n))).returncode == 0
    path = root / f"date={DAYS[0]}" / "w1.jsonl"
    fragment = path.read_bytes().splitlines(keepends=True)[0][:80]  # a crash mid-line
    with path.open("ab") as handle:
        handle.write(fragment)
    damaged = path.read_bytes()

    query = inproc(root, "query", "-f", "jsonl")
    assert query.returncode == 5
    stderr = query.stderr.decode()
    assert f"date={DAYS[0]}/w1.jsonl:3: torn line: 80 bytes" in stderr
    assert stderr.splitlines()[-1].startswith("Error: ")
    assert [orjson.loads(x)["id"] for x in query.stdout.splitlines()] == ["e-1", "e-0"]

    record = inproc(root, "record", "-", stdin=orjson.dumps(entry("e-2", 2)))
    assert record.returncode == 0, record.stderr
    imported = inproc(root, "import", "-", stdin=dump([entry("e-3", 3), entry("e-4", 4)]))
    assert imported.returncode == 0, imported.stderr
    assert path.read_bytes() == damaged  # the fragment is never completed nor rewritten
    fresh = root / f"date={DAYS[0]}" / "w1+2.jsonl"
    assert [
        orjson.loads(chain.content_of(x))["id"] for x in fresh.read_bytes().splitlines(True)
    ] == [
        "e-2",
        "e-3",
        "e-4",
    ]
    entries, torn = scan(root)
    assert torn == {path: 3}
    assert sorted(data["id"] for _, data in entries) == ["e-0", "e-1", "e-2", "e-3", "e-4"]
    query = inproc(root, "query", "--count")
    assert query.stdout == b"5\n" and query.returncode == 5
    verify = audit(root, "verify", "--format", "json")
    assert verify.returncode == 5
    assert b"w1.jsonl" in verify.stdout and b"torn line" in verify.stdout


def test_torn_tail_in_a_duplicate_check_does_not_block_imports(tmp_path: Path) -> None:
    """Re-delivery after a crash: the import skips what survived and writes the rest."""
    root = tmp_path / "logs"
    items = [entry(f"e-{n}", n) for n in range(20)]
    assert inproc(root, "import", "-", stdin=dump(items[:10])).returncode == 0
    path = root / f"date={DAYS[0]}" / "w1.jsonl"
    with path.open("ab") as handle:
        handle.write(orjson.dumps(items[10])[:50])
    again = inproc(root, "import", "-", stdin=dump(items))
    assert again.returncode == 0, again.stderr
    assert again.stdout == b"imported 10 entries, 10 duplicate(s) skipped\n"
    assert sorted(data["id"] for _, data in scan(root)[0]) == sorted(x["id"] for x in items)


@pytest.mark.parametrize(
    "leftover",
    ["empty partition", "empty segment", "empty foreign segment", "temp file", "all of them"],
)
def test_a_crash_while_creating_a_partition_breaks_nothing(tmp_path: Path, leftover: str) -> None:
    root = tmp_path / "logs"
    part = root / f"date={DAYS[0]}"
    part.mkdir(parents=True)
    if leftover in ("empty segment", "all of them"):
        (part / "w1.jsonl").write_bytes(b"")
    if leftover in ("empty foreign segment", "all of them"):
        (part / "other-host.jsonl").write_bytes(b"")
    if leftover in ("temp file", "all of them"):
        (part / "w1.jsonl.gz.tmp").write_bytes(b"\x1f\x8b half a gzip")
    assert inproc(root, "query", "--count").stdout == b"0\n"
    record = inproc(root, "record", "-", stdin=orjson.dumps(entry("e-1", 1)))
    assert record.returncode == 0, record.stderr
    imported = inproc(root, "import", "-", stdin=dump([entry("e-2", 2)]))
    assert imported.returncode == 0, imported.stderr
    query = inproc(root, "query", "-f", "jsonl")
    assert query.returncode == 0 and query.stderr == b""
    assert len(query.stdout.splitlines()) == 2
    assert (part / "w1.jsonl").exists() and not (part / "w1+2.jsonl").exists()


# ------------------------------------------------------------------------------- 6. idempotence
def test_record_id_conflicts_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    original = entry("same-id", 1)
    assert inproc(root, "record", "-", stdin=orjson.dumps(original)).returncode == 0
    before = file_bytes(root)
    again = inproc(root, "record", "-", stdin=orjson.dumps(original))
    assert again.returncode == 3
    assert one_error_line(again.stderr) == "Error: id: same-id is already recorded"
    changed = inproc(root, "record", "-", stdin=orjson.dumps({**original, "actorId": "mallory"}))
    assert changed.returncode == 3
    assert "already recorded with different content" in one_error_line(changed.stderr)
    imported = inproc(
        root, "import", "-", stdin=dump([entry("new", 2), {**original, "actorId": "m"}])
    )
    assert imported.returncode == 3
    assert b"line 2: id: same-id is already recorded with different content" in imported.stderr
    assert file_bytes(root) == before


# ------------------------------------------------------------------------------- 3. write faults
def _prefill(root: Path, count: int, pad: int = 300) -> Path:
    store = AuditStore(root, writer_id="w1")
    store.append([entry(f"pre-{n}", n, pad=pad) for n in range(count)])
    return root / f"date={DAYS[0]}" / "w1.jsonl"


def _fsize_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_file_size_limit_short_write_is_cut_back(tmp_path: Path) -> None:
    """`ulimit -f`: the kernel writes part of the line, then refuses (EFBIG)."""
    root = tmp_path / "logs"
    path = _prefill(root, 3)
    before = file_bytes(root)
    size = path.stat().st_size
    proc = audit(
        root,
        "record",
        "-",
        stdin=orjson.dumps(entry("big", 9, pad=2000)),
        preexec_fn=_fsize_limit(size + 700),
    )
    assert proc.returncode == 4
    line = one_error_line(proc.stderr)
    assert "File too large" in line and "NOT recorded (nothing was written)" in line
    assert file_bytes(root) == before
    assert audit(root, "query", "--count").stdout == b"3\n"


def test_file_size_limit_mid_import_batch(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    path = _prefill(root, 2000)  # bigger than the import, so that the spool fits the limit
    before = file_bytes(root)
    items = [entry(f"imp-{n}", n, pad=300) for n in range(1000)]
    proc = audit(
        root,
        "import",
        "-",
        stdin=dump(items),
        preexec_fn=_fsize_limit(path.stat().st_size + 200_000),
    )
    assert proc.returncode == 4
    line = one_error_line(proc.stderr)
    assert "File too large; entry NOT recorded (nothing was written)" in line
    assert "0 of 1000 input line(s) were written before this batch" in line
    assert file_bytes(root) == before
    retry = audit(root, "import", "-", stdin=dump(items))  # the shipper's retry completes it
    assert retry.stdout == b"imported 1000 entries\n"


def test_read_only_file_and_directory_via_chattr(tmp_path: Path) -> None:
    """Immutable file (EPERM on open for writing) and immutable directory (no new file)."""
    if not shutil.which("chattr"):
        pytest.skip("chattr not available")
    root = tmp_path / "logs"
    path = _prefill(root, 2)
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted on this filesystem")
    try:
        before = file_bytes(root)
        proc = audit(root, "record", "-", stdin=orjson.dumps(entry("x", 5)))
        assert proc.returncode == 4
        assert "Operation not permitted; entry NOT recorded" in one_error_line(proc.stderr)
        assert file_bytes(root) == before
        assert audit(root, "query", "--count").stdout == b"2\n"  # reading still works
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    subprocess.run(["chattr", "+i", str(path.parent)], check=True)
    try:
        proc = audit(root, "record", "-", writer="other", stdin=orjson.dumps(entry("y", 6)))
        assert proc.returncode == 4
        assert "entry NOT recorded" in one_error_line(proc.stderr)
        assert not (path.parent / "other.jsonl").exists()
    finally:
        subprocess.run(["chattr", "-i", str(path.parent)], check=True)


def _setpriv_prefix() -> tuple[str, ...]:
    """Run as root without the capabilities that bypass file permissions (CAP_DAC_OVERRIDE…)."""
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv not available")
    prefix = (setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner")
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot drop capabilities here")
    return prefix


def test_missing_permissions(tmp_path: Path) -> None:
    prefix = _setpriv_prefix() if os.geteuid() == 0 else ()
    root = tmp_path / "logs"
    path = _prefill(root, 2)
    before = file_bytes(root)
    path.chmod(0o400)
    proc = audit(root, "record", "-", stdin=orjson.dumps(entry("x", 5)), prefix=prefix)
    assert proc.returncode == 4
    assert "Permission denied; entry NOT recorded" in one_error_line(proc.stderr)
    path.chmod(0o600)
    path.parent.chmod(0o500)
    try:
        proc = audit(
            root, "record", "-", writer="w2", stdin=orjson.dumps(entry("y", 6)), prefix=prefix
        )
        assert proc.returncode == 4
        assert "Permission denied; entry NOT recorded" in one_error_line(proc.stderr)
        new_day = orjson.dumps(entry("z", 7, day=DAYS[2]))
        root.chmod(0o500)
        proc = audit(root, "record", "-", stdin=new_day, prefix=prefix)
        assert proc.returncode == 4
        assert "cannot create: Permission denied; entry NOT recorded" in one_error_line(proc.stderr)
    finally:
        root.chmod(0o700)
        path.parent.chmod(0o700)
    assert file_bytes(root) == before


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_disk_on_a_tiny_filesystem(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "small", "64k") as small:
        root = small / "logs"
        recorded = 0
        for n in range(10):
            proc = inproc(root, "record", "-", stdin=orjson.dumps(entry(f"e-{n}", n, pad=15000)))
            if proc.returncode != 0:
                break
            recorded += 1
        assert 0 < recorded < 10
        assert proc.returncode == 4
        assert "No space left on device; entry NOT recorded" in one_error_line(proc.stderr)
        before = file_bytes(root)
        items = [entry(f"i-{n}", n, pad=1000) for n in range(40)]
        imported = inproc(root, "import", "-", stdin=dump(items))
        assert imported.returncode == 4
        assert "No space left on device" in one_error_line(imported.stderr)
        assert file_bytes(root) == before  # no partial line, nothing half-written
        entries, torn = scan(root)
        assert not torn and len(entries) == recorded
        query = inproc(root, "query", "--count")
        assert query.returncode == 0 and query.stdout == f"{recorded}\n".encode()


def test_read_only_filesystem(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "1m") as mnt:
        root = mnt / "logs"
        assert inproc(root, "record", "-", stdin=orjson.dumps(entry("e-1", 1))).returncode == 0
        before = file_bytes(root)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True)
        if remount.returncode != 0:
            pytest.skip("cannot remount read-only")
        proc = inproc(root, "record", "-", stdin=orjson.dumps(entry("e-2", 2)))
        assert proc.returncode == 4
        assert "Read-only file system; entry NOT recorded" in one_error_line(proc.stderr)
        proc = inproc(root, "record", "-", stdin=orjson.dumps(entry("e-3", 3, day=DAYS[1])))
        assert proc.returncode == 4
        assert "Read-only file system; entry NOT recorded" in one_error_line(proc.stderr)
        assert file_bytes(root) == before
        query = inproc(root, "query", "--count")
        assert query.returncode == 0 and query.stdout == b"1\n"


# --- injected OS errors (in-process, the real CLI) -------------------------------------------
def _run(root: Path, argv: list[str], stdin: bytes | None = None):
    env = {"AUDIT_LOG_DIR": None, "AUDIT_WRITER_ID": "w1"}
    return CliRunner().invoke(app, ["-d", str(root), *argv], input=stdin, env=env)


def _is_log_file(root: Path, fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(str(root)) and os.path.isfile(
            f"/proc/self/fd/{fd}"
        )
    except OSError:
        return False


@pytest.fixture
def prefilled(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    _prefill(root, 3)
    return root


def _inject(monkeypatch: pytest.MonkeyPatch, name: str, fake: Callable[..., Any]) -> None:
    monkeypatch.setattr(os, name, fake)


def _expect_not_recorded(root: Path, before: dict[str, bytes], result: Any, reason: str) -> None:
    assert result.exit_code == 4, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert reason in lines[0] and "NOT recorded (nothing was written)" in lines[0]
    assert file_bytes(root) == before


def test_injected_short_write_then_enospc(prefilled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write

    def short_then_full(fd: int, data: Any) -> int:
        if not _is_log_file(prefilled, fd):
            return real(fd, data)
        if len(data) > 10:
            return real(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    before = file_bytes(prefilled)
    _inject(monkeypatch, "write", short_then_full)
    result = _run(prefilled, ["record", "-"], orjson.dumps(entry("x", 9, pad=100)))
    _expect_not_recorded(prefilled, before, result, "No space left on device")


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_injected_eio(prefilled: Path, monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    real = getattr(os, call)

    def failing(fd: int, *args: Any) -> Any:
        if _is_log_file(prefilled, fd):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, *args)

    before = file_bytes(prefilled)
    _inject(monkeypatch, call, failing)
    result = _run(prefilled, ["record", "-"], orjson.dumps(entry("x", 9)))
    _expect_not_recorded(prefilled, before, result, "Input/output error")
    monkeypatch.undo()
    items = [entry(f"i-{n}", n) for n in range(5)]
    _inject(monkeypatch, call, failing)
    result = _run(prefilled, ["import", "-"], dump(items))
    assert result.exit_code == 4 and file_bytes(prefilled) == before


def test_injected_close_error_after_the_write(
    prefilled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() can report a write-back error (NFS): the write is cut back while the lock is
    still held through a duplicate descriptor, and the entry is reported NOT recorded."""
    real = os.close
    failed: list[int] = []

    def close(fd: int) -> None:
        writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
        if not failed and _is_log_file(prefilled, fd) and writable:
            failed.append(fd)
            real(fd)  # Linux releases the descriptor even when close reports an error
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    before = file_bytes(prefilled)
    _inject(monkeypatch, "close", close)
    result = _run(prefilled, ["record", "-"], orjson.dumps(entry("x", 9)))
    assert failed
    _expect_not_recorded(prefilled, before, result, "Input/output error")


def test_injected_failure_to_cut_back_leaves_a_torn_line_readers_report(
    prefilled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If even the clean-up fails, the message says so, readers report the fragment, and the
    next writer moves to a fresh segment rather than gluing onto it."""
    real = os.write

    def half(fd: int, data: Any) -> int:
        if not _is_log_file(prefilled, fd):
            return real(fd, data)
        real(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def no_truncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    _inject(monkeypatch, "write", half)
    _inject(monkeypatch, "ftruncate", no_truncate)
    result = _run(prefilled, ["record", "-"], orjson.dumps(entry("x", 9)))
    assert result.exit_code == 4
    assert "entry NOT recorded (a partial line may remain" in result.stderr
    monkeypatch.undo()
    assert _run(prefilled, ["record", "-"], orjson.dumps(entry("y", 10))).exit_code == 0
    assert (prefilled / f"date={DAYS[0]}" / "w1+2.jsonl").exists()
    query = _run(prefilled, ["query", "--count"])
    assert query.exit_code == 5 and query.stdout == "4\n"
    assert f"date={DAYS[0]}/w1.jsonl:4: torn line" in query.stderr


def test_injected_directory_fsync_failure_on_a_new_partition(
    prefilled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    _inject(monkeypatch, "fsync", fsync)
    result = _run(prefilled, ["record", "-"], orjson.dumps(entry("x", 1, day=DAYS[2])))
    assert result.exit_code == 4
    assert "cannot sync the directory" in result.stderr and "NOT recorded" in result.stderr
    monkeypatch.undo()
    # What the failure left (an empty partition) does not break the next command.
    assert _run(prefilled, ["record", "-"], orjson.dumps(entry("x", 1, day=DAYS[2]))).exit_code == 0
    query = _run(prefilled, ["query", "--count"])
    assert query.exit_code == 0 and query.stdout == "4\n"


# ------------------------------------------------------------------------------- 7. messages
def test_an_unexpected_error_is_one_line_without_traceback_or_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: AuditStore, data: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"bug while handling {data['actorId']}")

    monkeypatch.setattr(AuditStore, "record", broken)
    result = inproc(tmp_path / "logs", "record", "-", stdin=orjson.dumps(entry("e", 1)))
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line == "Error: internal error (RuntimeError); run with AUDIT_DEBUG=1 for the traceback"
    assert b"user-1" not in result.stderr


def test_query_to_a_full_stdout_says_so_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    assert (
        inproc(root, "import", "-", stdin=dump([entry(f"e-{n}", n) for n in range(50)])).returncode
        == 0
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "auditcli", "-d", str(root), "query", "--all", "-f", "jsonl"],
            stdout=full,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1
    assert one_error_line(proc.stderr) == "Error: No space left on device"


# ------------------------------------------------------------------------------- the log dir
def test_a_log_dir_with_missing_parents_is_created(tmp_path: Path) -> None:
    root = tmp_path / "fresh" / "home" / ".local" / "share" / "auditcli" / "logs"
    result = inproc(root, "record", "-", stdin=orjson.dumps(entry("e-1", 1)))
    assert result.returncode == 0, result.stderr
    assert (root.stat().st_mode & 0o777) == 0o700
    assert len(scan(root)[0]) == 1


def test_the_log_dir_itself_may_be_a_symlink(tmp_path: Path) -> None:
    """An operator's choice (`/var/log/audit -> /data/audit`); only partitions may not be."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = inproc(tmp_path / "link", "record", "-", stdin=orjson.dumps(entry("e-1", 1)))
    assert result.returncode == 0, result.stderr
    assert len(scan(tmp_path / "real")[0]) == 1
