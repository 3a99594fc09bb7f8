"""`audit import`: valid files and stdin, every invalid line reported as `line N: field: message`
with nothing written, `--skip-invalid`, duplicates, and the Python API `import_jsonl`."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditcli import AuditStore, InvalidEntryError, chain
from auditcli.importer import import_jsonl


def entry(n: int, **fields: Any) -> dict[str, Any]:
    """A complete, valid seed-format entry number `n` (two days, several actions)."""
    base = {
        "id": f"imp-{n:04d}",
        "description": f"entry {n}",
        "actorId": f"user-{n % 3}",
        "actorName": None,
        "actorEmail": f"user{n % 3}@example.com",
        "action": ("login", "team_created", "role_updated")[n % 3],
        "actionDisplayName": ("User Login", "Team Created", "Role Updated")[n % 3],
        "target": ("USER", "TEAM", "ROLE")[n % 3],
        "targetId": f"res-{n}",
        "metadata": {"n": n} if n % 2 else None,
        "organizationId": "org-1",
        "teamId": None,
        "createdAt": f"2026-05-{1 + n % 2:02d}T10:{n % 60:02d}:00.000Z",
    }
    base.update(fields)
    return base


def jsonl(*entries: dict[str, Any] | str) -> str:
    return "".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entries)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` and its bytes: 'unchanged' means byte for byte."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def stored(root: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(root.glob("date=*/*.jsonl")):
        for line in path.read_bytes().splitlines(keepends=True):
            found.append(orjson.loads(chain.content_of(line)))
    return found


class TestValid:
    def test_imports_a_file_and_reports_the_count(self, cli, log_dir, tmp_path) -> None:
        entries = [entry(n) for n in range(10)]
        source = tmp_path / "in.jsonl"
        source.write_text(jsonl(*entries))
        result = cli("import", str(source))
        assert result.exit_code == 0, result.stderr
        assert result.stdout == "imported 10 entries\n"
        assert sorted(stored(log_dir), key=lambda e: e["id"]) == entries
        assert sorted(p.name for p in log_dir.glob("date=*")) == [
            "date=2026-05-01",
            "date=2026-05-02",
        ]

    def test_reads_stdin(self, cli, log_dir) -> None:
        result = cli("import", "-", input=jsonl(entry(1), entry(2)))
        assert result.exit_code == 0, result.stderr
        assert result.stdout == "imported 2 entries\n"
        assert len(stored(log_dir)) == 2

    def test_optional_fields_are_generated(self, cli, log_dir) -> None:
        minimal = {
            "actorId": "u-1",
            "actorEmail": "ann@example.com",
            "action": "team_deleted",
            "target": "TEAM",
            "targetId": "team-9",
            "organizationId": "org-1",
            "createdAt": "2026-05-01T12:00:00+02:00",
        }
        result = cli("import", "-", input=jsonl(minimal))
        assert result.exit_code == 0, result.stderr
        [got] = stored(log_dir)
        assert got["actionDisplayName"] == "Team Deleted"
        assert got["description"] == "ann@example.com deleted team team-9"
        assert got["createdAt"] == "2026-05-01T10:00:00.000Z"
        # No id but a createdAt: a stable id (UUIDv8 from the line), the same on a re-run.
        assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-8", got["id"])
        assert got["metadata"] is None and got["teamId"] is None and got["actorName"] is None

    def test_given_fields_are_kept_not_regenerated(self, cli, log_dir) -> None:
        custom = entry(1, description="custom words", actionDisplayName="Login (SSO)")
        cli("import", "-", input=jsonl(custom))
        assert stored(log_dir) == [custom]

    def test_crlf_and_whitespace_around_lines_are_accepted(self, cli, log_dir) -> None:
        text = "  " + json.dumps(entry(1)) + "  \r\n" + json.dumps(entry(2), indent=None) + "\r\n"
        result = cli("import", "-", input=text)
        assert result.exit_code == 0, result.stderr
        assert len(stored(log_dir)) == 2

    def test_a_real_process_imports_a_file(self, tmp_path, log_dir) -> None:
        source = tmp_path / "in.jsonl"
        source.write_text(jsonl(*(entry(n) for n in range(5))))
        done = subprocess.run(
            [sys.executable, "-m", "auditcli", "import", str(source)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "imported 5 entries\n"
        assert done.stderr == ""  # no progress bar when stderr is not a terminal
        assert len(stored(log_dir)) == 5


class TestInvalid:
    LINE = re.compile(r"^  line (\d+): ([A-Za-z.\[\]0-9]+): (.+)$")

    def test_every_invalid_line_is_reported_and_nothing_written(self, cli, log_dir) -> None:
        cli("import", "-", input=jsonl(entry(100)))  # something already stored
        before = snapshot(log_dir)
        text = jsonl(
            entry(1),
            entry(2, action="team_craeted"),  # line 2
            entry(3),
            entry(4, actorEmail="nobody"),  # line 4
            entry(5, createdAt="2026-05-01T10:00:00"),  # line 5: no offset
            entry(6, target="GROUP", metadata=[1]),  # line 6: two problems
            {k: v for k, v in entry(7).items() if k != "organizationId"},  # line 7
            entry(8, extra="x"),  # line 8
        )
        result = cli("import", "-", input=text)
        assert result.exit_code == 3
        assert result.stdout == ""
        assert snapshot(log_dir) == before
        first, *details = result.stderr.splitlines()
        assert first == "Error: 6 invalid line(s); nothing was written"
        parsed = [self.LINE.match(line) for line in details]
        assert all(parsed), details
        reported = [(int(m.group(1)), m.group(2)) for m in parsed if m]
        assert reported == [
            (2, "action"),
            (4, "actorEmail"),
            (5, "createdAt"),
            (6, "target"),
            (6, "metadata"),
            (7, "organizationId"),
            (8, "extra"),
        ]
        assert "did you mean team_created" in result.stderr

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("not json", "not valid JSON"),
            ("[1, 2]", "expected a JSON object"),
            ("", "empty line"),
            ('{"id": "x", "id": "y"}', "duplicate key"),
            ('{"metadata": NaN}', "JSON"),
        ],
    )
    def test_unparseable_lines(self, cli, log_dir, line, message) -> None:
        result = cli("import", "-", input=jsonl(entry(1)) + line + "\n" + jsonl(entry(2)))
        assert result.exit_code == 3
        assert "line 2: " in result.stderr and message in result.stderr
        assert snapshot(log_dir) == {}

    def test_empty_input_is_an_error(self, cli, log_dir) -> None:
        result = cli("import", "-", input="")
        assert result.exit_code == 3
        assert "empty" in result.stderr

    def test_missing_file_is_a_usage_error(self, cli, tmp_path) -> None:
        result = cli("import", str(tmp_path / "nope.jsonl"))
        assert result.exit_code == 2
        assert "nope.jsonl" in result.stderr and "cannot open" in result.stderr

    def test_skip_invalid_writes_the_valid_lines(self, cli, log_dir) -> None:
        text = jsonl(entry(1), entry(2, action="nope"), "garbage", entry(3))
        result = cli("import", "--skip-invalid", "-", input=text)
        assert result.exit_code == 0, result.stderr
        assert result.stdout == "imported 2 entries, 2 invalid line(s) skipped\n"
        assert "skipped: line 2: action: unknown action 'nope'" in result.stderr
        assert "skipped: line 3: not valid JSON" in result.stderr
        assert sorted(e["id"] for e in stored(log_dir)) == ["imp-0001", "imp-0003"]

    def test_python_api_raises_with_every_problem(self, tmp_path) -> None:
        store = AuditStore(tmp_path / "api")
        with pytest.raises(InvalidEntryError) as caught:
            import_jsonl(store, io.BytesIO(jsonl(entry(1), entry(2, actorId=None)).encode()))
        assert caught.value.problems == ["line 2: actorId: field required"]
        assert not (tmp_path / "api").exists()


class TestDuplicates:
    def test_a_second_import_of_the_same_file_writes_nothing(self, cli, log_dir) -> None:
        text = jsonl(*(entry(n) for n in range(4)))
        assert cli("import", "-", input=text).stdout == "imported 4 entries\n"
        before = snapshot(log_dir)
        again = cli("import", "-", input=text)
        assert again.exit_code == 0, again.stderr
        assert again.stdout == "imported 0 entries, 4 duplicate(s) skipped\n"
        assert snapshot(log_dir) == before

    def test_repeated_line_within_a_file_is_written_once(self, cli, log_dir) -> None:
        result = cli("import", "-", input=jsonl(entry(1), entry(1), entry(2)))
        assert result.stdout == "imported 2 entries, 1 duplicate(s) skipped\n"
        assert len(stored(log_dir)) == 2

    def test_same_id_with_other_content_in_the_file_is_invalid(self, cli, log_dir) -> None:
        result = cli("import", "-", input=jsonl(entry(1), entry(1, description="changed")))
        assert result.exit_code == 3
        assert "line 2: id: imp-0001 appears on line 1 with different content" in result.stderr
        assert snapshot(log_dir) == {}

    def test_same_id_stored_with_other_content_is_invalid(self, cli, log_dir) -> None:
        cli("import", "-", input=jsonl(entry(1)))
        before = snapshot(log_dir)
        result = cli("import", "-", input=jsonl(entry(2), entry(1, description="changed")))
        assert result.exit_code == 3
        assert "line 2: id: imp-0001 is already recorded with different content" in result.stderr
        assert snapshot(log_dir) == before
        skipped = cli(
            "import", "--skip-invalid", "-", input=jsonl(entry(2), entry(1, description="x"))
        )
        assert skipped.exit_code == 0
        assert skipped.stdout.startswith("imported 1 entries")
        assert [e["description"] for e in stored(log_dir) if e["id"] == "imp-0001"] == ["entry 1"]

    def test_a_day_whose_every_line_is_skipped_leaves_its_indexed_file_alone(
        self, cli, log_dir
    ) -> None:
        """`--skip-invalid` where every line of a day is refused (its ids stored with other
        content) writes nothing that day; the day's file, big enough to be indexed, is
        indexed from its bytes as before (an import that wrote nothing to it once crashed)."""
        pad = "x" * 500  # about 800 bytes a line: 400 lines are over the 256 KiB indexed
        day = [
            entry(n, description=f"{pad} {n}", createdAt="2026-05-01T10:00:00.000Z")
            for n in range(0, 1200, 3)
        ]
        assert cli("import", "-", input=jsonl(*day)).exit_code == 0
        before = stored(log_dir)
        changed = [{**e, "description": "changed " + e["description"]} for e in day]
        result = cli("import", "--skip-invalid", "-", input=jsonl(*changed))
        assert result.exit_code == 0, result.stderr
        assert result.stdout == f"imported 0 entries, {len(day)} invalid line(s) skipped\n"
        assert stored(log_dir) == before
        assert list(log_dir.glob("_index/date=2026-05-01/*.idx"))
        assert cli("verify").exit_code == 0

    def test_recorded_entry_reimported_is_a_duplicate(self, cli, log_dir) -> None:
        recorded = cli("record", "login", "--actor-id", "u", "--org-id", "o", "--json").stdout
        result = cli("import", "-", input=recorded)
        assert result.stdout == "imported 0 entries, 1 duplicate(s) skipped\n"


class TestChainFormat:
    def test_bulk_chained_lines_are_the_per_line_format(self, cli, log_dir, tmp_path) -> None:
        """An import's lines (chained a batch at a time) are byte for byte what chaining each
        line alone gives, continuing a file that already holds a recorded entry, across
        several locked writes (over 4 MiB of one day), and `audit verify` accepts them."""
        first = cli("import", "-", input=jsonl(entry(0, createdAt="2026-05-01T00:00:00.000Z")))
        assert first.exit_code == 0, first.stderr
        pad = "x" * 700  # about 1 KiB a line: 6,000 lines are more than one 4 MiB write
        many = [
            entry(n, description=f"{pad} {n}", createdAt="2026-05-01T10:00:00.000Z")
            for n in range(1, 6001)
        ]
        source = tmp_path / "in.jsonl"
        source.write_text(jsonl(*many))
        result = cli("import", str(source))
        assert result.exit_code == 0, result.stderr
        [path] = log_dir.glob("date=2026-05-01/*.jsonl")
        lines = path.read_bytes().splitlines(keepends=True)
        assert len(lines) == 6001
        previous = chain.genesis("date=2026-05-01", path.name.removesuffix(".jsonl"))
        for line in lines:
            content = chain.content_of(line)
            previous = chain.link(previous, content)
            assert line == chain.chained_line(content, previous)
        assert chain.chained_lines(b"\0" * 32, []) == (b"", b"\0" * 32)
        checked = cli("verify")
        assert checked.exit_code == 0, checked.stdout + checked.stderr


class TestHostileBatch:
    def test_a_hostile_batch_of_emails_is_refused_in_bounded_time(self, log_dir) -> None:
        """Emails that the email rule can match in several ways, then one it cannot: each value
        is checked alone, so the work grows with the batch, not exponentially in it (a process
        with a deadline: exponential is hours, linear well under a second of work)."""
        # Compact lines in the stored key order: the batch path, which checks a column at once.
        lines = [
            orjson.dumps(entry(n, actorEmail=f"u{n}@a.b.c.d.e.f")).decode() for n in range(400)
        ]
        lines.append(orjson.dumps(entry(400, actorEmail="not-an-email")).decode())
        done = subprocess.run(
            [sys.executable, "-m", "auditcli", "import", "-"],
            input=jsonl(*lines),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 3, done.stderr
        assert "line 401: actorEmail" in done.stderr
        assert not list(log_dir.glob("date=*"))
