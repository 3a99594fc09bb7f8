"""rotate, retention, export, stats, tail and schema.

Core behaviour runs in-process with an injected clock; the cases where processes are the point
(a rotation killed at random moments, writers appending while a day is compressed, `tail`
following the store, Ctrl-C) run real processes. DuckDB reads a real store with the SQL that
`audit schema` prints and must agree with `audit query --count`.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from auditcli import gzmembers, maintenance
from auditcli.cli import app
from auditcli.errors import UsageError
from auditcli.maintenance import Follower, rotate, stats
from auditcli.query import Filters, QueryEngine, entry_of
from auditcli.store import AuditStore, init_store

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
ACTIONS = (
    "login",
    "login",
    "login",
    "team_created",
    "user_added_to_team",
    "role_updated",
    "org_admin_added",
)
REPO = Path(__file__).resolve().parent.parent


def _day(offset: int, today: date = TODAY) -> str:
    return (today - timedelta(days=offset)).isoformat()


def _entries(day: str, count: int, tag: str = "e") -> list[dict[str, Any]]:
    """`count` varied entries on `day` (deterministic)."""
    out = []
    for n in range(count):
        action = ACTIONS[n % len(ACTIONS)]
        entry: dict[str, Any] = {
            "id": f"{tag}-{day}-{n:05d}",
            "action": action,
            "actorId": f"user-{n % 5}",
            "actorEmail": f"user{n % 5}@example.com",
            "organizationId": f"org-{n % 2}",
            "createdAt": f"{day}T{n % 24:02d}:{n % 60:02d}:{n % 59:02d}.{n % 1000:03d}Z",
        }
        if action in ("team_created", "user_added_to_team"):
            entry["targetId"] = f"team-{n % 3}"
            entry["teamId"] = f"team-{n % 3}"
        if action == "user_added_to_team":
            entry["metadata"] = {"input": {"userId": f"user-{(n + 1) % 5}", "role": "member"}}
        if action in ("role_updated", "org_admin_added"):
            entry["targetId"] = f"t-{n % 4}"
        out.append(entry)
    return out


def _store(root: Path, clock: datetime = NOW, writer: str = "w1") -> AuditStore:
    return AuditStore(root, writer_id=writer, clock=lambda: clock)


def _ids(store: AuditStore, filters: Filters | None = None) -> list[str]:
    engine = QueryEngine(store, filters or Filters(), order="asc")
    ids = [entry_of(line)["id"] for line in engine.stream()]
    assert not engine.problems, engine.problems
    return ids


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.glob("date=*/*") if p.is_file())


def _cli(root: Path, *args: str, input: str | None = None) -> Any:
    result = CliRunner().invoke(app, ["-d", str(root), *args], input=input)
    return result


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["AUDIT_LOG_DIR"] = str(root)
    env["AUDIT_WRITER_ID"] = "w1"
    env["PYTHONPATH"] = str(REPO)
    env.pop("AUDIT_SIGNING_KEY", None)
    return env


def _real_today() -> date:
    return datetime.now(UTC).date()


# =============================================================================== rotate
class TestRotate:
    def test_closed_days_become_one_gzip_member_with_the_same_bytes(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        for offset in (0, 1, 2):
            store.append(_entries(_day(offset), 50))
        before = {
            p.name + "@" + p.parent.name: p.read_bytes() for p in tmp_path.glob("date=*/*.jsonl")
        }
        ids = _ids(store)

        report = rotate(store)

        assert report.count("compress") == 2
        assert _files(tmp_path) == [
            f"date={_day(2)}/w1.jsonl.gz",
            f"date={_day(1)}/w1.jsonl.gz",
            f"date={_day(0)}/w1.jsonl",
        ]
        for offset in (1, 2):
            raw = (tmp_path / f"date={_day(offset)}" / "w1.jsonl.gz").read_bytes()
            inflater = zlib.decompressobj(wbits=31)
            assert inflater.decompress(raw) == before[f"w1.jsonl@date={_day(offset)}"]
            assert inflater.eof and inflater.unused_data == b""  # exactly one member
        assert _ids(store) == ids

    def test_a_rotated_day_is_members_of_whole_lines_that_outside_readers_read_alike(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(gzmembers, "MEMBER_BYTES", 4000)
        store = _store(tmp_path)
        store.append(_entries(_day(1), 400))
        plain = tmp_path / f"date={_day(1)}" / "w1.jsonl"
        before = plain.read_bytes()
        copy = tmp_path / "copy" / plain.parent.name / plain.name  # same Hive column
        copy.parent.mkdir(parents=True)
        copy.write_bytes(before)
        ids = _ids(store)
        rotate(store)
        gz = plain.with_name("w1.jsonl.gz")
        members, rest = [], gz.read_bytes()
        while rest:  # independent members, one after the other
            inflater = zlib.decompressobj(wbits=31)
            members.append(inflater.decompress(rest))
            assert inflater.eof
            rest = inflater.unused_data
        assert len(members) > 10 and b"".join(members) == before
        assert all(member.endswith(b"\n") and len(member) < 4000 + 1000 for member in members)
        assert (tmp_path / "_index" / f"date={_day(1)}" / "w1.jsonl.gz.idx").exists()
        subprocess.run(["gzip", "-t", str(gz)], check=True)
        assert subprocess.run(["zcat", str(gz)], capture_output=True, check=True).stdout == before
        duckdb = pytest.importorskip("duckdb")
        read = "SELECT * FROM read_json('{}', format = 'newline_delimited') ORDER BY ALL"
        connection = duckdb.connect()
        rows = connection.execute(read.format(gz)).fetchall()
        assert len(rows) == 400 and rows == connection.execute(read.format(copy)).fetchall()
        assert _ids(store) == ids

    def test_a_second_run_changes_nothing(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(3), 20))
        rotate(store)
        files = {p: p.stat().st_mtime_ns for p in tmp_path.glob("date=*/*")}
        again = rotate(store)
        assert again.steps == []
        assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("date=*/*")} == files

    def test_compress_after_counts_whole_days_before_today(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        for offset in (0, 1, 2, 3):
            store.append(_entries(_day(offset), 3))
        report = rotate(store, compress_after=3)
        assert report.compress_before == _day(2)
        assert [s.target for s in report.steps] == [f"date={_day(3)}/w1.jsonl"]
        assert rotate(store, compress_after=0).count("compress") == 3  # today too

    def test_dry_run_reports_and_changes_nothing(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 5) + _entries(_day(2), 5))
        files = _files(tmp_path)
        report = rotate(store, dry_run=True, delete_after=2)
        assert [s.action for s in report.steps] == ["delete", "compress"]
        assert _files(tmp_path) == files
        assert not (tmp_path / maintenance.ROTATE_LOCK).exists()

    def test_a_late_writer_moves_to_a_new_segment_and_stays_queryable(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 10))
        rotate(store)
        store.append(_entries(_day(1), 2, tag="late"))
        assert _files(tmp_path) == [f"date={_day(1)}/w1+2.jsonl", f"date={_day(1)}/w1.jsonl.gz"]
        assert len(_ids(store)) == 12
        rotate(store)
        assert _files(tmp_path) == [f"date={_day(1)}/w1+2.jsonl.gz", f"date={_day(1)}/w1.jsonl.gz"]
        assert len(_ids(store)) == 12

    def test_a_leftover_temp_file_is_removed_and_the_work_redone(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 10))
        partition = tmp_path / f"date={_day(1)}"
        (partition / ".w1.rotate.tmp").write_bytes(b"\x1f\x8bhalf a gzip")
        report = rotate(store)
        assert [s.action for s in report.steps] == ["remove-temp", "compress"]
        assert _files(tmp_path) == [f"date={_day(1)}/w1.jsonl.gz"]
        assert len(_ids(store)) == 10

    def test_a_plain_file_beside_its_identical_twin_is_finished(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 10))
        plain = tmp_path / f"date={_day(1)}" / "w1.jsonl"
        data = plain.read_bytes()
        plain.with_name("w1.jsonl.gz").write_bytes(gzip.compress(data))  # killed before unlink
        assert len(_ids(store)) == 10  # readers take the twin, never both
        report = rotate(store)
        assert [s.action for s in report.steps] == ["finish"]
        assert _files(tmp_path) == [f"date={_day(1)}/w1.jsonl.gz"]

    def test_an_empty_plain_file_beside_its_twin_is_removed(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 4))
        rotate(store)
        (tmp_path / f"date={_day(1)}" / "w1.jsonl").touch()  # a writer raced the rotation
        assert [s.detail for s in rotate(store).steps] == ["empty; removed"]

    def test_a_plain_file_that_differs_from_its_twin_is_kept_and_reported(
        self, tmp_path: Path
    ) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 4))
        plain = tmp_path / f"date={_day(1)}" / "w1.jsonl"
        plain.with_name("w1.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()[:-10]))
        report = rotate(store)
        assert [s.action for s in report.problems] == ["problem"]
        assert plain.exists()
        result = _cli(tmp_path, "rotate")
        assert result.exit_code == 5
        assert "differs from its .gz twin" in result.output

    def test_files_that_are_not_log_files_are_left_alone(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 2))
        partition = tmp_path / f"date={_day(1)}"
        (partition / "notes.txt").write_text("mine")
        (partition / "bad name.jsonl").write_text("{}\n")
        rotate(store)
        assert sorted(p.name for p in partition.iterdir()) == [
            "bad name.jsonl",
            "notes.txt",
            "w1.jsonl.gz",
        ]

    def test_fifos_and_symlinks_are_reported_never_followed_or_waited_on(
        self, tmp_path: Path, tmp_path_factory: Any
    ) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 3) + _entries(_day(2), 3))
        os.mkfifo(tmp_path / f"date={_day(1)}" / "w2.jsonl")
        secret = tmp_path_factory.mktemp("elsewhere") / "secret.jsonl"
        secret.write_text("secret\n")
        (tmp_path / f"date={_day(2)}" / "w3.jsonl").symlink_to(secret)
        (tmp_path / f"date={_day(5)}").symlink_to(secret.parent)
        report = rotate(store)
        assert sorted(step.target for step in report.problems) == [
            f"date={_day(5)}",
            f"date={_day(2)}/w3.jsonl",
            f"date={_day(1)}/w2.jsonl",
        ]
        assert report.count("compress") == 2
        assert sorted(p.name for p in secret.parent.iterdir()) == ["secret.jsonl"]
        assert secret.read_text() == "secret\n"

    def test_a_compressed_file_loses_its_line_index_and_a_deleted_day_its_index_dir(
        self, tmp_path: Path
    ) -> None:
        from auditcli import lineindex

        store = _store(tmp_path)
        store.append(_entries(_day(1), 900) + _entries(_day(3), 900))
        QueryEngine(store, Filters(actions=("login",))).count()  # indexes the settled files
        partition = f"date={_day(1)}"
        index = lineindex.index_path(tmp_path, partition, "w1.jsonl")
        if not index.exists():
            pytest.skip("this build writes no line index")
        rotate(store, delete_after=3)
        assert not index.exists()
        assert not (tmp_path / lineindex.INDEX_DIR / f"date={_day(3)}").exists()
        assert QueryEngine(store, Filters(actions=("login",))).count() == len(
            [e for e in _entries(_day(1), 900) if e["action"] == "login"]
        )

    def test_two_rotations_never_run_at_once(self, tmp_path: Path) -> None:
        import fcntl

        store = _store(tmp_path)
        store.append(_entries(_day(1), 2))
        fd = os.open(tmp_path / maintenance.ROTATE_LOCK, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with pytest.raises(UsageError, match="another `audit rotate` is running"):
                rotate(store)
        finally:
            os.close(fd)

    def test_cli_prints_what_it_did(self, tmp_path: Path) -> None:
        store = AuditStore(tmp_path, writer_id="w1")
        store.append(_entries(_day(2, _real_today()), 5))
        dry = _cli(tmp_path, "rotate", "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert dry.output.startswith(f"would compress  date={_day(2, _real_today())}/w1.jsonl")
        done = _cli(tmp_path, "rotate")
        assert done.exit_code == 0, done.output
        # Sizes as people read them, per file and in the summary.
        size = r"\d+(\.\d)? (B|KiB|MiB)"
        assert re.search(rf"compress  date=\S+/w1.jsonl  {size} -> {size} \(\d+%\)", done.output)
        assert re.search(rf"compressed 1 file\(s\) \({size} -> {size}\)", done.output)
        again = _cli(tmp_path, "rotate")
        assert again.output.startswith("nothing to do")

    def test_killed_at_random_moments_loses_nothing_and_the_next_run_completes(
        self, tmp_path: Path
    ) -> None:
        today = _real_today()
        days = [_day(offset, today) for offset in range(1, 31)]
        store = AuditStore(tmp_path, writer_id="w1")
        for day in days:
            store.append(_entries(day, 60))

        def run_rotate() -> float:
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "auditcli", "rotate", "-q"],
                env=_env(tmp_path),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            return time.monotonic() - began

        def add_work(tag: str) -> None:
            # A late entry for every closed day: 30 new segments for the next rotation.
            for day in days:
                store.append(_entries(day, 1, tag=tag))

        full = run_rotate()  # how long a run with this much work takes, start-up included
        rng = random.Random(20261125)
        seen: Counter[str] = Counter()
        for attempt in range(25):
            add_work(f"late{attempt}")
            expected = sorted(_ids(store))
            proc = subprocess.Popen(
                [sys.executable, "-m", "auditcli", "rotate", "-q"],
                env=_env(tmp_path),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.55, 1.0) * full)
            proc.kill()
            proc.wait()
            plain = [p for p in tmp_path.glob("date=*/*.jsonl")]
            twins = [p for p in plain if p.with_name(p.name + ".gz").exists()]
            temps = list(tmp_path.glob("date=*/.*.tmp"))
            state = (
                "temp"
                if temps
                else "twin"
                if twins
                else "partial"
                if 0 < len(plain) < len(days)
                else "before"
                if plain
                else "after"
            )
            seen[state] += 1
            assert sorted(_ids(store)) == expected, f"attempt {attempt} ({state}): entries changed"
            if sum(seen[k] for k in ("temp", "twin", "partial")) >= 3 and attempt >= 5:
                break
        assert seen["temp"] + seen["twin"] + seen["partial"] >= 1, seen  # really killed mid-run
        run_rotate()
        assert sorted(_ids(store)) == expected
        assert all(name.endswith(".jsonl.gz") for name in _files(tmp_path))
        assert not list(tmp_path.glob("date=*/.*"))  # no temp file left
        again = _cli(tmp_path, "rotate")
        assert again.output.startswith("nothing to do"), again.output

    def test_writers_appending_to_the_day_being_compressed_lose_nothing(
        self, tmp_path: Path
    ) -> None:
        today = _real_today()
        day = _day(1, today)
        store = AuditStore(tmp_path, writer_id="w1")
        store.append(_entries(day, 2000))
        script = (
            "import sys\n"
            "from auditcli.store import AuditStore\n"
            "root, tag, day = sys.argv[1:4]\n"
            "s = AuditStore(root, writer_id='w1')\n"
            "for i in range(150):\n"
            "    s.record({'action': 'login', 'actorId': f'{tag}-{i}', 'organizationId': 'o',\n"
            "              'createdAt': f'{day}T23:59:59.{i:03d}Z'})\n"
        )
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(tmp_path), f"p{n}", day], env=_env(tmp_path)
            )
            for n in range(3)
        ]
        compressed = 0
        while any(w.poll() is None for w in writers):
            compressed += rotate(store).count("compress")
            time.sleep(0.01)
        assert all(w.returncode == 0 for w in writers)
        compressed += rotate(store).count("compress")
        actors = Counter(
            entry_of(line)["actorId"]
            for line in QueryEngine(store, Filters(org_ids=("o",))).stream()
        )
        assert actors == Counter({f"p{n}-{i}": 1 for n in range(3) for i in range(150)})
        assert compressed >= 2  # rotations really ran while the writers wrote
        assert all(name.endswith(".gz") for name in _files(tmp_path))
        assert len(_ids(store)) == 2000 + 450


# ============================================================================ retention
class TestRetention:
    def test_old_days_are_deleted_with_a_receipt_and_verify_agrees(self, tmp_path: Path) -> None:
        today = _real_today()
        store = AuditStore(tmp_path, writer_id="w1")
        for offset in (0, 1, 5, 9, 10):
            store.append(_entries(_day(offset, today), 20))
        assert _cli(tmp_path, "seal").exit_code == 0

        result = _cli(tmp_path, "rotate", "--delete-after", "9")
        assert result.exit_code == 0, result.output
        assert f"delete    date={_day(10, today)}" in result.output
        assert f"delete    date={_day(9, today)}" in result.output
        assert store.days() == [_day(5, today), _day(1, today), _day(0, today)]
        receipts = [
            orjson.loads(p.read_bytes())["manifest"]
            for p in sorted((tmp_path / "_manifests").glob("*/*.json"))
        ]
        deleted = {
            r["receipt"]["day"]: r["receipt"] for r in receipts if r.get("kind") == "receipt"
        }
        assert set(deleted) == {_day(9, today), _day(10, today)}
        assert deleted[_day(9, today)]["files"][0]["lines"] == 20
        assert not (tmp_path / maintenance.DELETING_DIR).exists() or not any(
            (tmp_path / maintenance.DELETING_DIR).iterdir()
        )

        # Written again after rotation: query, export, stats and verify all agree.
        store.append(_entries(_day(1, today), 3, tag="again"))
        assert _cli(tmp_path, "seal").exit_code == 0
        verify = _cli(tmp_path, "verify")
        assert verify.exit_code == 0, verify.output
        count = int(_cli(tmp_path, "query", "--count").output)
        assert count == 3 * 20 + 3
        exported = _cli(tmp_path, "export").output.splitlines()
        assert len(exported) == count
        totals = orjson.loads(_cli(tmp_path, "stats", "--by", "day", "-f", "json").output)
        assert totals["total"] == count

    def test_delete_after_must_keep_today(self, tmp_path: Path) -> None:
        init_store(tmp_path)
        result = _cli(tmp_path, "rotate", "--delete-after", "0")
        assert result.exit_code == 2
        assert "--delete-after" in result.output

    def test_a_deletion_interrupted_after_the_rename_is_finished(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 2))
        leftover = tmp_path / maintenance.DELETING_DIR / "date=2020-01-01.1"
        leftover.mkdir(parents=True)
        (leftover / "w1.jsonl").write_bytes(b"x\n")
        report = rotate(store)
        assert [s.action for s in report.steps] == ["purge", "compress"]
        assert not leftover.exists()


# =============================================================================== export
@pytest.fixture
def filled(tmp_path: Path) -> Path:
    store = AuditStore(tmp_path, writer_id="w1")
    for offset in (1, 2, 3):
        store.append(_entries(f"2026-11-0{offset}", 30))
    store.append(
        [
            {
                "id": "evil-1",
                "action": "user_added",
                "actorId": "=cmd|' /C calc'!A0",
                "actorName": '@SUM(1+1) "quoted" back\\slash ]bracket',
                "organizationId": "org-1",
                "targetId": "+1-555",
                "description": "-2+3 line\nbreak",
                "metadata": {"input": {"email": "x@example.com"}},
                "createdAt": "2026-11-02T10:00:00.000Z",
            }
        ]
    )
    return tmp_path


class TestExport:
    def test_jsonl_is_query_all_in_time_order_and_respects_every_filter(self, filled: Path) -> None:
        for args in (
            [],
            ["--action", "login"],
            ["--since", "2026-11-02", "--until", "2026-11-02T12:00:00Z"],
            ["--team-id", "team-1", "--actor-id", "user-3"],
            ["--org-id", "org-1", "-t", "USER"],
        ):
            exported = _cli(filled, "export", *args)
            assert exported.exit_code == 0, exported.output
            queried = _cli(filled, "query", "--all", "--order", "asc", "-f", "jsonl", *args)
            assert exported.output == queried.output
            count = int(_cli(filled, "query", "--count", *args).output)
            assert len(exported.output.splitlines()) == count
            assert count < 91 or not args

    def test_json_is_one_array(self, filled: Path) -> None:
        data = orjson.loads(_cli(filled, "export", "-f", "json", "--action", "team_created").output)
        assert [entry["action"] for entry in data] == ["team_created"] * len(data) and data
        assert (
            orjson.loads(_cli(filled, "export", "-f", "json", "--actor-id", "nobody").output) == []
        )

    def test_csv_has_a_header_one_row_per_entry_and_no_live_formulas(self, filled: Path) -> None:
        out = _cli(
            filled, "export", "-f", "csv", "--since", "2026-11-02", "--until", "2026-11-02"
        ).output
        rows = list(csv.reader(io.StringIO(out)))
        assert rows[0][:3] == ["id", "description", "actorId"]
        assert len(rows) == 1 + 31
        evil = next(row for row in rows if row[0] == "evil-1")
        assert evil[2] == "'=cmd|' /C calc'!A0"
        assert evil[3].startswith("'@SUM")
        assert evil[8] == "'+1-555"
        assert evil[1] == "'-2+3 line\nbreak"
        assert orjson.loads(evil[9]) == {"input": {"email": "x@example.com"}}

    def test_ocsf_events_carry_class_activity_actor_user_and_time(self, filled: Path) -> None:
        lines = _cli(
            filled, "export", "-f", "ocsf", "--since", "2026-11-01", "--until", "2026-11-01"
        ).output
        events = [orjson.loads(line) for line in lines.splitlines()]
        by_action = {e["metadata"]["event_code"]: e for e in events}
        login = by_action["login"]
        assert (login["class_uid"], login["activity_id"], login["type_uid"]) == (3002, 1, 300201)
        assert login["category_uid"] == 3 and login["user"]["uid"] == login["actor"]["user"]["uid"]
        assert login["time"] == int(
            datetime.fromisoformat(login["metadata"]["original_time"]).timestamp() * 1000
        )
        team = by_action["team_created"]
        assert (team["class_uid"], team["activity_id"]) == (3006, 6)
        assert team["group"]["uid"] == team["unmapped"]["targetId"]
        member = by_action["user_added_to_team"]
        assert member["type_uid"] == 300603
        assert member["user"]["uid"] == member["unmapped"]["metadata"]["input"]["userId"]
        admin = by_action["org_admin_added"]
        assert (admin["class_uid"], admin["activity_id"], admin["privileges"]) == (
            3005,
            1,
            ["org_admin"],
        )
        role = by_action["role_updated"]
        assert (role["class_uid"], role["activity_id"], role["user"]["type"]) == (3001, 99, "Role")
        for event in events:
            assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
            assert event["metadata"]["product"]["name"] == "auditcli"
            assert event["severity_id"] == 1 and event["status_id"] == 1

    def test_syslog_lines_are_rfc5424_with_escaped_structured_data(self, filled: Path) -> None:
        out = _cli(
            filled, "export", "-f", "syslog", "--since", "2026-11-02", "--until", "2026-11-02"
        ).output
        lines = out.splitlines()
        assert len(lines) == 31  # the description's newline did not split a message
        shape = re.compile(
            r"^<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) audit - ([a-z_]+) "
            r'\[audit@32473( [A-Za-z]+="(?:[^"\\\]]|\\["\\\]])*")+\] (.*)$'
        )
        for line in lines:
            match = shape.match(line)
            assert match, line
            assert match.group(1) == ("110" if match.group(4) == "login" else "109")
        evil = next(line for line in lines if 'id="evil-1"' in line)
        # the text escape doubles the backslash, then RFC 5424 escapes each of the two
        assert r'actorName="@SUM(1+1) \"quoted\" back\\\\slash \]bracket"' in evil
        assert evil.endswith(r"-2+3 line\x0abreak")

    def test_output_file_is_atomic_and_never_overwritten_without_force(
        self, filled: Path, tmp_path_factory: Any
    ) -> None:
        out_dir = tmp_path_factory.mktemp("out")
        target = out_dir / "audit.csv"
        first = _cli(filled, "export", "-f", "csv", "-o", str(target))
        assert first.exit_code == 0, first.output
        assert "exported 91 entries" in first.output
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        original = target.read_bytes()
        refused = _cli(filled, "export", "--action", "login", "-o", str(target))
        assert refused.exit_code == 2 and "use --force" in refused.output
        assert target.read_bytes() == original
        forced = _cli(filled, "export", "--action", "login", "-o", str(target), "--force")
        assert forced.exit_code == 0
        assert target.read_bytes() != original
        assert sorted(p.name for p in out_dir.iterdir()) == ["audit.csv"]  # no temp left

    def test_a_symlink_at_the_output_is_never_followed(
        self, filled: Path, tmp_path_factory: Any
    ) -> None:
        out_dir = tmp_path_factory.mktemp("out")
        victim = out_dir / "victim"
        victim.write_text("precious")
        link = out_dir / "link.jsonl"
        link.symlink_to(victim)
        refused = _cli(filled, "export", "-o", str(link))
        assert refused.exit_code == 2 and "symlink" in refused.output
        forced = _cli(filled, "export", "-o", str(link), "--force")
        assert forced.exit_code == 0
        assert victim.read_text() == "precious"
        assert not link.is_symlink() and len(link.read_text().splitlines()) == 91

    def test_a_failed_export_leaves_no_file(
        self, filled: Path, tmp_path_factory: Any, monkeypatch: Any
    ) -> None:
        out_dir = tmp_path_factory.mktemp("out")

        def boom(self: Any, stored: bytes) -> bytes:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr("auditcli.export.JsonlWriter.line", boom)
        result = _cli(filled, "export", "-o", str(out_dir / "x.jsonl"))
        assert result.exit_code != 0
        assert list(out_dir.iterdir()) == []

    def test_gzip_output_is_one_member_and_reads_rotated_days(
        self, filled: Path, tmp_path_factory: Any
    ) -> None:
        out_dir = tmp_path_factory.mktemp("out")
        plain = _cli(filled, "export").stdout_bytes
        assert _cli(filled, "export", "--gzip", "-o", str(out_dir / "a.jsonl.gz")).exit_code == 0
        rotate(_store(filled))
        assert all(name.endswith(".gz") for name in _files(filled))
        assert _cli(filled, "export", "--gzip", "-o", str(out_dir / "b.jsonl.gz")).exit_code == 0
        for name in ("a.jsonl.gz", "b.jsonl.gz"):
            inflater = zlib.decompressobj(wbits=31)
            assert inflater.decompress((out_dir / name).read_bytes()) == plain
            assert inflater.eof and not inflater.unused_data


# ================================================================================ stats
class TestStats:
    def _expected(
        self, store: AuditStore, keys: tuple[str, ...], filters: Filters
    ) -> Counter[tuple[Any, ...]]:
        names = {
            "action": "action",
            "actor": "actorId",
            "target": "target",
            "org": "organizationId",
            "team": "teamId",
        }
        counts: Counter[tuple[Any, ...]] = Counter()
        for line in QueryEngine(store, filters).stream():
            entry = entry_of(line)
            row = []
            for key in keys:
                if key == "day":
                    row.append(entry["createdAt"][:10])
                elif key == "hour":
                    row.append(entry["createdAt"][:13])
                else:
                    row.append(entry[names[key]])
            counts[tuple(row)] += 1
        return counts

    @pytest.mark.parametrize(
        "keys",
        [
            ("action",),
            ("actor",),
            ("target",),
            ("org",),
            ("team",),
            ("day",),
            ("hour",),
            ("action", "day"),
            ("team", "org"),
        ],
    )
    def test_counts_equal_a_parse_of_every_entry(self, filled: Path, keys: tuple[str, ...]) -> None:
        store = AuditStore(filled)
        for filters in (
            Filters(),
            Filters(actions=("login", "team_created")),
            Filters(since="2026-11-02T05:00:00.000Z", org_ids=("org-1",)),  # checked by column
            Filters(target_ids=("team-1",), until="2026-11-02T12:00:00.000Z"),  # needle search
        ):
            result = stats(store, filters, keys)
            assert Counter(result.counts) == self._expected(store, keys, filters)
            assert result.total == QueryEngine(store, filters).count()

    def test_metadata_imitating_fields_does_not_fool_the_positional_read(
        self, tmp_path: Path
    ) -> None:
        store = _store(tmp_path)
        sneaky = {
            "k": 1,
            "action": "login",
            "organizationId": "org-evil",
            "teamId": "team-evil",
            "createdAt": "1999-01-01T00:00:00.000Z",
            "x": ',"action":"login","actionDisplayName":',
        }
        odd = {
            "id": "sneaky",
            "action": "team_deleted",
            "actorId": 'a","actorName":"b',
            "organizationId": "org-0",
            "targetId": "team-9",
            "teamId": "team-9",
            "metadata": sneaky,
            "createdAt": f"{_day(1)}T01:00:00.000Z",
        }
        store.append([*_entries(_day(1), 20), odd])
        for keys in (("action",), ("org",), ("team",), ("actor",), ("day",), ("org", "team")):
            for filters in (
                Filters(),
                Filters(org_ids=("org-0",), actions=("team_deleted", "login")),
            ):
                assert Counter(stats(store, filters, keys).counts) == self._expected(
                    store, keys, filters
                )

    def test_several_workers_count_the_same(self, filled: Path, monkeypatch: Any) -> None:
        monkeypatch.setattr(maintenance, "_PARALLEL_BYTES", 1)
        store = AuditStore(filled)
        rotate(_store(filled), compress_after=30)  # a mix: nothing compressed yet
        one = stats(store, Filters(), ("action", "day"), workers=1)
        rotate(_store(filled))
        two = stats(store, Filters(), ("action", "day"), workers=2)
        assert one.counts == two.counts and one.total == two.total == 91

    def test_cli_formats(self, filled: Path) -> None:
        data = orjson.loads(_cli(filled, "stats", "--by", "action", "-f", "json").output)
        assert data["total"] == 91 and data["groups"][0] == {"action": "login", "count": 42}
        rows = list(
            csv.reader(
                io.StringIO(_cli(filled, "stats", "-b", "org", "-b", "day", "-f", "csv").output)
            )
        )
        assert rows[0] == ["organizationId", "day", "count"] and len(rows) == 1 + 6
        table = _cli(filled, "stats", "--by", "action", "-f", "table").output
        assert "login" in table and "█" in table and "91 entries" in table
        spark = _cli(filled, "stats", "--by", "action,day", "-f", "table").output
        assert "per day, 2026-11-01 … 2026-11-03" in spark
        bad = _cli(filled, "stats", "--by", "color")
        assert bad.exit_code == 2 and "unknown key 'color'" in bad.output
        assert _cli(filled, "stats", "--by", "action,day,org").exit_code == 2

    def test_sparkline_and_bar(self) -> None:
        assert maintenance.sparkline([0, 1, 8]) == " ▁█"
        assert maintenance.bar(5, 10, width=4) == "██"
        assert maintenance.time_buckets(("day",), [("2026-11-01", 1), ("2026-11-03", 1)]) == [
            "2026-11-01",
            "2026-11-02",
            "2026-11-03",
        ]


# ================================================================================= tail
def _read_until(proc: subprocess.Popen[bytes], wanted: int, timeout: float = 15) -> list[bytes]:
    assert proc.stdout is not None
    lines: list[bytes] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    while len(lines) < wanted and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            buffer += data
            *done, buffer = buffer.split(b"\n")
            lines.extend(done)
    return lines


class TestTail:
    def test_follows_appends_new_days_new_segments_and_rotation_then_exits_on_ctrl_c(
        self, tmp_path: Path
    ) -> None:
        today = _real_today()
        store = AuditStore(tmp_path, writer_id="w1")
        store.append(_entries(_day(0, today), 5, tag="old"))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "auditcli",
                "tail",
                "-n",
                "2",
                "-f",
                "jsonl",
                "--interval",
                "0.05",
                "--action",
                "login",
            ],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            backlog = _read_until(proc, 2)
            assert [orjson.loads(line)["id"] for line in backlog] == [
                f"old-{_day(0, today)}-00001",
                f"old-{_day(0, today)}-00002",
            ]
            expected: list[str] = []

            def add(day: str, tag: str, count: int = 3) -> None:
                entries = _entries(day, count, tag=tag)
                store.append(entries)
                expected.extend(e["id"] for e in entries if e["action"] == "login")

            add(_day(0, today), "a")  # the followed file grows
            add(_day(-1, today), "b")  # a new day's partition appears
            add(_day(0, today), "c", 8)  # contains non-login entries that must not show
            rotate(AuditStore(tmp_path, writer_id="w1"), compress_after=0)
            add(_day(0, today), "d")  # after rotation: a new segment w1+2
            got = _read_until(proc, len(expected))
            ids = [orjson.loads(line)["id"] for line in got]
            assert sorted(ids) == sorted(expected)
            assert all(orjson.loads(line)["action"] == "login" for line in got)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
            assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def test_any_format_and_ctrl_c_while_idle_exits_zero(self, tmp_path: Path) -> None:
        store = AuditStore(tmp_path, writer_id="w1")
        store.append(_entries(_day(0, _real_today()), 6))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "auditcli",
                "tail",
                "-n",
                "3",
                "-f",
                "csv",
                "--interval",
                "0.05",
            ],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            rows = list(csv.reader(line.decode() for line in _read_until(proc, 4)))
            assert rows[0][0] == "id" and len(rows) == 4
            assert [row[0] for row in rows[1:]] == [
                e["id"]
                for e in sorted(_entries(_day(0, _real_today()), 6), key=lambda e: e["createdAt"])[
                    -3:
                ]
            ]
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def test_follower_reads_the_rest_of_a_file_from_its_gzip_twin(self, tmp_path: Path) -> None:
        store = _store(tmp_path)
        store.append(_entries(_day(1), 3, tag="x"))
        follower = Follower(store, Filters())
        follower.skip_existing()
        store.append(_entries(_day(1), 4, tag="y"))  # appended, then rotated before the poll
        rotate(store)
        assert [entry_of(line)["id"] for line in follower.poll()] == [
            f"y-{_day(1)}-{n:05d}" for n in range(4)
        ]
        assert follower.poll() == []


# =============================================================================== schema
class TestSchema:
    @pytest.mark.parametrize("dialect", ["duckdb", "spark", "athena", "trino"])
    def test_every_dialect_declares_the_columns_and_the_partition(
        self, tmp_path: Path, dialect: str
    ) -> None:
        result = _cli(tmp_path, "schema", "--dialect", dialect, "--location", "s3://bucket/audit/")
        assert result.exit_code == 0, result.output
        sql = result.output.lower()
        for column in (
            "actorid",
            "actiondisplayname",
            "organizationid",
            "teamid",
            "createdat",
            "metadata",
        ):
            assert column in sql
        assert "date" in sql and "s3://bucket/audit/" in sql
        assert "_chain" not in sql

    def test_a_table_name_is_an_identifier(self, tmp_path: Path) -> None:
        init_store(tmp_path)
        result = _cli(tmp_path, "schema", "--table", "x; drop table y")
        assert result.exit_code == 2

    def test_duckdb_agrees_with_query_plain_rotated_and_mid_rotation(self, tmp_path: Path) -> None:
        duckdb = pytest.importorskip("duckdb")
        today = _real_today()
        store = AuditStore(tmp_path, writer_id="w1")
        for offset in (0, 1, 2, 3):
            store.append(_entries(_day(offset, today), 120))
        since, until = f"{_day(2, today)}T06:00:00.000Z", f"{_day(1, today)}T18:00:00.000Z"
        checks = [
            ([], ""),
            (["--action", "login"], "action = 'login'"),
            (
                ["--actor-id", "user-3", "--org-id", "org-1"],
                "actorId = 'user-3' AND organizationId = 'org-1'",
            ),
            (["--team-id", "team-2"], "teamId = 'team-2'"),
            (
                ["--since", since, "--until", until],
                f"createdAt >= '{since}' AND createdAt <= '{until}'",
            ),
        ]

        def agree() -> None:
            connection = duckdb.connect()
            connection.execute(_cli(tmp_path, "schema", "--dialect", "duckdb").output)
            for args, where in checks:
                sql = "SELECT count(*) FROM audit_logs" + (f" WHERE {where}" if where else "")
                ours = int(_cli(tmp_path, "query", "--count", *args).output)
                assert connection.execute(sql).fetchone()[0] == ours, (args, ours)
            days = connection.execute("SELECT count(DISTINCT date) FROM audit_logs").fetchone()[0]
            assert days == 4
            connection.close()

        agree()
        rotate(AuditStore(tmp_path, writer_id="w1"), compress_after=2)  # two days compressed
        assert sum(name.endswith(".gz") for name in _files(tmp_path)) == 2
        agree()
        # Mid-rotation: a plain file beside its twin is read once, as `audit` reads it.
        twin = next(tmp_path.glob("date=*/*.jsonl.gz"))
        twin.with_name(twin.name[:-3]).write_bytes(gzip.decompress(twin.read_bytes()))
        agree()
