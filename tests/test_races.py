"""Nothing confirmed is ever lost: writers recording into days that retention is
deleting while rotate and seal loop, every confirmed id counted against the survivors plus the
retention receipts; verify clean afterwards. Real processes throughout.

`AUDIT_RACE_SECONDS` (default 12) bounds the race; on the code before the partition lock a
3-second run already lost 56 of 163 confirmed entries (see docs/reliability.md).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from auditcli.integrity import Manifest, chain_writers, load_manifests, verify
from auditcli.integrity.manifests import receipt_records
from auditcli.store import AuditStore

RACE_SECONDS = float(os.environ.get("AUDIT_RACE_SECONDS", "12"))

#: A writer: records one entry at a time into the given days, printing `id day` after each
#: confirmed one (what `audit record` prints and exits 0 on) and `ERR …` after a refused one.
WRITER = """
import sys, time
from auditcli.errors import AuditError
from auditcli.store import AuditStore
root, writer, seconds, days = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
store = AuditStore(root, writer_id=writer)
end, n = time.monotonic() + seconds, 0
while time.monotonic() < end:
    day = days[n % len(days)]
    data = {"action": "login", "actorId": f"{writer}-{n}", "organizationId": "org-1",
            "createdAt": f"{day}T12:00:00.000Z"}
    try:
        entry = store.record(data)
    except AuditError as exc:
        print("ERR", exc, flush=True)
    else:
        print(entry["id"], day, flush=True)
    n += 1
"""

#: Rotate (retention at 30 days), seal or verify in a loop until a stop file appears; each
#: problem, warning or error goes to stderr. Renames are
#: slowed, as on a loaded disk or NFS, which widens every window a rename closes.
LOOPER = """
import os, sys, time
from pathlib import Path
from auditcli.store import AuditStore
root, job, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3])
rename = os.rename
def slow_rename(*args, **kwargs):
    time.sleep(0.02)
    return rename(*args, **kwargs)
os.rename = slow_rename
store = AuditStore(root, writer_id="maint")
runs = 0
while not stop.exists():
    try:
        if job == "rotate":
            from auditcli.maintenance import rotate
            problems = rotate(store, delete_after=30).problems
        elif job == "seal":  # as `audit seal` does: every writer's chain
            from auditcli.integrity import default_writers, seal_writers
            sealed = seal_writers(store, default_writers(store)[0])
            problems = [warning for result in sealed for warning in result.warnings]
        else:
            from auditcli.integrity import verify
            problems = verify(store).problems
    except Exception as exc:  # reported, and the loop goes on: the count decides first
        problems = [repr(exc)]
    for problem in problems:
        print(job, problem, file=sys.stderr, flush=True)
    runs += 1
print(runs)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _stored_ids(root: Path) -> Counter[str]:
    """Every entry id in the store (plain and compressed files), with its count."""
    ids: Counter[str] = Counter()
    for path in root.glob("date=*/*.jsonl*"):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for line in data.splitlines():
            ids[orjson.loads(line)["id"]] += 1
    return ids


def _manifests(store: AuditStore) -> list[Manifest]:
    """Every manifest of the store: the legacy chain's and each writer's chain's."""
    found = load_manifests(store)[0]
    for writer in chain_writers(store)[0]:
        found += load_manifests(store, writer)[0]
    return found


def test_records_into_days_being_deleted_are_kept_or_receipted(tmp_path: Path) -> None:
    root = tmp_path / "log"
    AuditStore(root).ensure_root()
    today = datetime.now(UTC).date()
    old = [(today - timedelta(days=n)).isoformat() for n in (40, 41)]
    stop = tmp_path / "stop"
    writers = [
        _python(WRITER, str(root), writer, str(RACE_SECONDS), *old)
        for writer in ("w1", "w2", "w1")  # two processes share a writer id (one host)
    ]
    loops = [_python(LOOPER, str(root), job, str(stop)) for job in ("rotate", "seal", "verify")]
    confirmed: dict[str, str] = {}
    refused: list[str] = []
    for writer in writers:
        out, err = writer.communicate(timeout=RACE_SECONDS + 120)
        assert writer.returncode == 0, err
        for line in out.splitlines():
            if line.startswith("ERR"):
                refused.append(line)
            else:
                entry_id, day = line.split()
                confirmed[entry_id] = day
    stop.touch()
    runs, loop_problems = [], []
    for loop in loops:
        out, err = loop.communicate(timeout=120)
        assert loop.returncode == 0, err
        runs.append(int(out))
        loop_problems += err.splitlines()
    assert runs[0] >= 3 and len(confirmed) >= 100, (runs, len(confirmed))

    stored = _stored_ids(root)
    assert max(stored.values(), default=1) == 1  # nothing stored twice
    assert set(stored) <= set(confirmed)  # nothing unconfirmed is stored
    manifests = _manifests(AuditStore(root))
    receipted: Counter[str] = Counter()
    for manifest in manifests:
        if manifest.kind == "receipt":
            day = manifest.body["receipt"]["day"]
            receipted[day] += sum(record["lines"] for record in receipt_records(manifest))
    assert receipted, "retention never deleted a day: the race did not run"
    for day in old:
        sent = sum(1 for d in confirmed.values() if d == day)
        kept = sum(1 for entry_id in stored if confirmed[entry_id] == day)
        assert sent == kept + receipted[day], (
            f"{day}: {sent} confirmed, {kept} kept + {receipted[day]} receipted: "
            f"{sent - kept - receipted[day]} confirmed entries lost"
        )
    assert refused == []
    assert loop_problems == []
    report = verify(AuditStore(root))
    assert report.problems == []


#: One rotation with retention whose partition rename, once the receipt is written, takes
#: `sys.argv[2]` seconds: a seal started meanwhile would see the receipt but not the deletion.
SLOW_DELETE = """
import os, sys, time
from auditcli.maintenance import rotate
from auditcli.store import AuditStore
rename = os.rename
def slow_rename(src, dst, **kwargs):
    if "_deleting" in str(dst) or kwargs.get("dst_dir_fd") is not None:
        time.sleep(float(sys.argv[2]))
    return rename(src, dst, **kwargs)
os.rename = slow_rename
report = rotate(AuditStore(sys.argv[1], writer_id="maint"), delete_after=30)
print(report.count("delete"), [str(step) for step in report.problems])
"""


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    return subprocess.run(
        [sys.executable, "-m", "auditcli", "-d", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_seal_between_a_receipt_and_its_deletion_raises_no_alarm(tmp_path: Path) -> None:
    root = tmp_path / "log"
    store = AuditStore(root, writer_id="w1")
    old = (datetime.now(UTC).date() - timedelta(days=40)).isoformat()
    for n in range(5):
        store.record(
            {
                "action": "login",
                "actorId": f"u{n}",
                "organizationId": "o",
                "createdAt": f"{old}T10:00:0{n}.000Z",
            }
        )
    assert _cli(root, "seal").returncode == 0
    rotation = _python(SLOW_DELETE, str(root), "2")
    deadline = time.monotonic() + 60
    while not any(m.kind == "receipt" for m in _manifests(store)):
        assert time.monotonic() < deadline and rotation.poll() is None, "no receipt written"
        time.sleep(0.02)
    sealed = _cli(root, "seal")  # while the partition is still there, receipted
    out, err = rotation.communicate(timeout=60)
    assert rotation.returncode == 0, err
    assert out.startswith("1 []"), out
    assert sealed.returncode == 0, sealed.stderr
    checked = _cli(root, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    again = _cli(root, "seal")
    assert again.returncode == 0 and "warning" not in again.stderr, again.stderr
    assert _cli(root, "verify").returncode == 0


def test_verify_during_a_rotation_of_many_writer_files_finds_nothing_stray(
    tmp_path: Path,
) -> None:
    root = tmp_path / "log"
    day = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    for n in range(300):
        AuditStore(root, writer_id=f"host{n}").append_contents(
            day, [(f"id-{n}", _content(f"id-{n}", day))], check_ids=False
        )
    assert _cli(root, "seal").returncode == 0
    rotation = _python(
        "import sys\nfrom auditcli.maintenance import rotate\nfrom auditcli.store import "
        "AuditStore\nprint(rotate(AuditStore(sys.argv[1])).count('compress'))",
        str(root),
    )
    alarms, runs = [], 0
    while rotation.poll() is None or runs == 0:
        report = verify(AuditStore(root))
        alarms += [str(problem) for problem in report.problems]
        runs += 1
    out, err = rotation.communicate()
    assert rotation.returncode == 0, err
    assert out.strip() == "300"
    assert alarms == [], f"{len(alarms)} false alarms in {runs} verifies: {alarms[:3]}"


def _content(entry_id: str, day: str) -> bytes:
    from auditcli.catalog import Catalog
    from auditcli.model import build_entry, dumps_entry

    entry = build_entry(
        {
            "id": entry_id,
            "action": "login",
            "actorId": "u",
            "organizationId": "o",
            "createdAt": f"{day}T08:00:00.000Z",
        },
        Catalog.load(Path("/nonexistent")),
    )
    return dumps_entry(entry)


#: `audit …` with the first fsync of a log file slowed, then failing with EIO: the entry's
#: line sits in the file, whole, for a second before the writer cuts it back.
FAILING_FSYNC = """
import errno, os, runpy, stat, sys, time
real = os.fsync
failed = []
def fsync(fd):
    if not failed and stat.S_ISREG(os.fstat(fd).st_mode):
        failed.append(fd)
        time.sleep(1.0)
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    return real(fd)
os.fsync = fsync
sys.argv = ["audit", *sys.argv[1:]]
runpy.run_module("auditcli", run_name="__main__")
"""


class _Lines:
    """The lines a process writes to stdout, collected by a thread."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        import threading

        self.lines: list[bytes] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def ids(self) -> list[str]:
        return [orjson.loads(line)["id"] for line in list(self.lines)]

    def wait_for(self, ids: list[str], seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while not set(ids) <= set(self.ids()) and time.monotonic() < deadline:
            time.sleep(0.05)


def test_tail_prints_exactly_the_confirmed_entries_across_a_failed_write_and_a_recreated_day(
    tmp_path: Path,
) -> None:
    import signal

    root = tmp_path / "log"
    old = (datetime.now(UTC).date() - timedelta(days=40)).isoformat()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(AUDIT_WRITER_ID="w1", AUDIT_ACTOR_ID="u1", AUDIT_ORG_ID="org-1")
    confirmed: list[str] = []

    def record(entry_id: str, *extra: str, code: str | None = None) -> int:
        argv = ["-d", str(root), "record", "login", "--id", entry_id, *extra]
        command = (
            [sys.executable, "-c", code, *argv]
            if code
            else [sys.executable, "-m", "auditcli", *argv]
        )
        done = subprocess.run(command, capture_output=True, env=env, timeout=60, check=False)
        if done.returncode == 0:
            assert done.stdout.decode().strip() == entry_id
            confirmed.append(entry_id)
        return done.returncode

    assert record("first") == 0
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "auditcli",
            "-d",
            str(root),
            "tail",
            "-n",
            "0",
            "-f",
            "jsonl",
            "--interval",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    printed = _Lines(tail)
    try:
        for n in range(40):  # until tail is following: it prints a marker
            assert record(f"marker-{n}") == 0
            printed.wait_for([f"marker-{n}"], 0.5)
            if printed.lines:
                break
        del confirmed[: confirmed.index(printed.ids()[0])]  # recorded before tail followed
        assert record("never", code=FAILING_FSYNC) == 4
        for n in range(5):
            assert record(f"after-{n}") == 0
        for n in range(3):
            assert record(f"old-{n}", "--created-at", f"{old}T10:00:0{n}Z") == 0
        printed.wait_for(confirmed)
        rotated = subprocess.run(
            [sys.executable, "-m", "auditcli", "-d", str(root), "rotate", "--delete-after", "30"],
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert rotated.returncode == 0, rotated.stderr
        assert not (root / f"date={old}").exists()
        for n in range(2):  # the day again, under the same file name
            assert record(f"late-{n}", "--created-at", f"{old}T11:00:0{n}Z") == 0
        printed.wait_for(confirmed)
    finally:
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=30)
        printed.thread.join(timeout=10)
    seen = printed.ids()
    assert "never" not in seen
    expected = confirmed
    missing = [entry_id for entry_id in expected if entry_id not in seen]
    assert missing == [] and len(seen) == len(expected), (seen, err)
    assert sorted(seen) == sorted(expected)
    assert b"not an entry" not in err, err


def test_rotate_killed_between_a_receipt_and_its_deletion_loses_nothing(tmp_path: Path) -> None:
    import signal

    root = tmp_path / "log"
    store = AuditStore(root, writer_id="w1")
    old = (datetime.now(UTC).date() - timedelta(days=40)).isoformat()

    def record(n: int) -> str:
        data = {
            "action": "login",
            "actorId": f"u{n}",
            "organizationId": "o",
            "createdAt": f"{old}T10:00:{n:02d}.000Z",
        }
        return store.record(data)["id"]

    confirmed = [record(n) for n in range(5)]
    assert _cli(root, "seal").returncode == 0
    rotation = _python(SLOW_DELETE, str(root), "600")
    deadline = time.monotonic() + 60
    while not any(m.kind == "receipt" for m in _manifests(store)):
        assert time.monotonic() < deadline and rotation.poll() is None, "no receipt written"
        time.sleep(0.02)
    rotation.send_signal(signal.SIGKILL)
    rotation.communicate(timeout=30)
    confirmed += [record(n) for n in range(5, 7)]  # after the receipt, before any deletion
    assert _cli(root, "seal").returncode == 0
    assert _cli(root, "verify").returncode == 0
    again = _cli(root, "rotate", "--delete-after", "30")
    assert again.returncode == 0, again.stderr
    receipts = [m for m in _manifests(store) if m.kind == "receipt"]
    assert [sum(r["lines"] for r in receipt_records(m)) for m in receipts] == [5, 7]
    assert not (root / f"date={old}").exists() and list((root / "_deleting").iterdir()) == []
    checked = _cli(root, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(confirmed) == 7


def test_verify_accepts_an_old_store_sealed_between_a_receipt_and_its_deletion(
    tmp_path: Path,
) -> None:
    """Stores written before receipts and deletions were one step may hold a seal between
    them: the partition being gone is still the receipt's deletion, unless a seal saw more
    than the receipt counted (then entries were deleted that no receipt covers)."""
    import shutil

    from auditcli.integrity import partition_records, seal, write_receipt

    for grown in (False, True):
        root = tmp_path / f"log-{grown}"
        store = AuditStore(root, writer_id="w1")
        old = "2026-01-05"
        for n in range(3):
            store.record(
                {
                    "action": "login",
                    "actorId": f"u{n}",
                    "organizationId": "o",
                    "createdAt": f"{old}T10:00:0{n}Z",
                }
            )
        seal(store)
        write_receipt(store, old, partition_records(store, old), "retention")
        if grown:
            store.record(
                {
                    "action": "login",
                    "actorId": "late",
                    "organizationId": "o",
                    "createdAt": f"{old}T11:00:00Z",
                }
            )
        seal(store)  # between the receipt and the deletion
        shutil.rmtree(root / f"date={old}")
        kinds = [problem.kind for problem in verify(store).problems]
        assert kinds == (["deleted partition"] if grown else [])


def test_tail_reads_a_file_made_again_under_a_deleted_name_from_its_start(
    tmp_path: Path,
) -> None:
    """Whatever the new file's inode (numbers are reused after a deletion) and whether it is
    shorter or longer than what was read of the old one."""
    import shutil

    from auditcli.maintenance import Follower
    from auditcli.query import Filters

    store = AuditStore(tmp_path / "log", writer_id="w1")
    day = "2026-01-05"

    def record(tag: str, count: int) -> list[str]:
        return [
            store.record(
                {
                    "action": "login",
                    "actorId": f"{tag}{n}",
                    "organizationId": "o",
                    "createdAt": f"{day}T10:00:{n:02d}Z",
                    "id": f"{tag}-{n}",
                }
            )["id"]
            for n in range(count)
        ]

    follower = Follower(store, Filters())
    follower.skip_existing()
    seen: list[str] = []

    def poll() -> None:
        seen.extend(orjson.loads(line)["id"] for line in follower.poll())

    expected = record("a", 3)
    poll()
    for tag, count in (("b", 1), ("c", 6)):  # shorter, then longer than the file read before
        shutil.rmtree(store.root / f"date={day}")
        expected += record(tag, count)
        poll()
    assert seen == expected
    assert follower.problems == []
