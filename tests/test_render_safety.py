"""Hostile content on the way out: tables are inert, CSV cannot run formulas,
foreign or corrupted lines are reported with file and line and skipped, never crash a query."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from auditcli.cli import app
from auditcli.commands import core  # noqa: F401  (registers record, import, query)
from auditcli.render import csv_cell, visible
from auditcli.store import AuditStore

WRITER = "w1"
DAY = "2026-01-02"
MARKUP = "[bold]bold[/bold] [/x] [link=https://evil.example]click me[/link] [red]"
TERMINAL = {
    "esc": "\x1b[2J\x1b[31m",
    "osc": "\x1b]8;;https://evil.example\x07link\x1b]8;;\x07",
    "osc0": "\x1b]0;owned title\x1b\\",
    "c1": "\x9b31m\x85\x90",
    "del": "\x7f",
    "bidi": "abc\u202edcba\u2066x\u2069",
    "nul": "\x00",
    "bel": "\x07",
}
#: Characters that must never reach a terminal from a field.
RAW_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: The only escape sequences allowed in table output: rich's own colour codes (SGR).
SGR = re.compile(r"\x1b\[[0-9;]*m")


def invoke(root: Path, argv: list[str], **env: str):
    base = {"AUDIT_LOG_DIR": None, "AUDIT_WRITER_ID": WRITER, "COLUMNS": "250", "NO_COLOR": None}
    base.update(env)
    return CliRunner().invoke(app, ["-d", str(root), *argv], env=base)


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore(tmp_path / "logs", writer_id=WRITER)


def _record(store: AuditStore, n: int, **fields: object) -> dict[str, object]:
    data = {
        "id": f"e-{n}",
        "action": "team_created",
        "actorId": "u-1",
        "organizationId": "org-1",
        "targetId": "team-1",
        "createdAt": f"{DAY}T00:00:{n:02d}Z",
    }
    data.update(fields)
    return store.record(data)


# ------------------------------------------------------------------------------- tables
@pytest.mark.parametrize("force", [False, True], ids=["plain", "forced-terminal"])
def test_rich_markup_is_shown_literally(store: AuditStore, force: bool) -> None:
    _record(store, 1, description=MARKUP, actorName=MARKUP, targetId=MARKUP)
    _record(store, 2, actorEmail="x@evil.example", description="[/]")
    env = {"FORCE_COLOR": "1", "TERM": "xterm-256color"} if force else {}
    result = invoke(store.root, ["query", "--format", "table"], **env)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "MarkupError" not in out and "Traceback" not in out
    plain = SGR.sub("", out)
    assert "[bold]bold[/bold]" in plain
    assert "[link=https://evil.example]click me[/link]" in plain
    assert "[/]" in plain
    assert "\x1b]8;" not in out  # never a hyperlink


def test_terminal_escapes_are_visible_never_raw(store: AuditStore) -> None:
    for n, (name, payload) in enumerate(TERMINAL.items()):
        _record(store, n, description=f"{name}:{payload}", actorName=payload, targetId=payload)
    result = invoke(
        store.root, ["query", "--format", "table"], FORCE_COLOR="1", TERM="xterm-256color"
    )
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    # Every ESC in the output is one of rich's own SGR colour codes; none came from a field.
    assert "\x1b" not in SGR.sub("", out)
    assert not RAW_FORBIDDEN.search(SGR.sub("", out).replace("\n", ""))
    plain = SGR.sub("", out)
    for shown in (
        "esc:\\x1b[2J",
        "osc:\\x1b]8;;https://evil.example\\x07",
        "\\x9b31m\\x85",
        "\\x7f",
        "abc\\u202edcba\\u2066",
        "\\x00",
        "\\x07",
    ):
        assert shown in plain, shown


def test_visible_escapes_every_dangerous_character() -> None:
    for code in [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x202E, 0x202A, 0x2066, 0x2069, 0x200B]:
        assert visible(chr(code)).startswith("\\"), hex(code)
    assert visible("plain text, ünïcödé, 😀") == "plain text, ünïcödé, 😀"


def test_json_and_jsonl_return_the_exact_text(store: AuditStore) -> None:
    """Machine formats are exact: the escapes are JSON's, the values the attacker's."""
    payload = "".join(TERMINAL.values()) + MARKUP
    _record(store, 1, description=payload)
    for fmt in ("json", "jsonl"):
        result = invoke(store.root, ["query", "-f", fmt])
        assert result.exit_code == 0
        assert b"\x1b" not in result.stdout_bytes  # JSON escapes ESC as \u001b
        data = orjson.loads(result.stdout_bytes)
        entry = data["logs"][0] if fmt == "json" else data
        assert entry["description"] == payload


# ------------------------------------------------------------------------------- CSV
FORMULAS = ["=1+1", "+1", "-1", "@SUM(A1)", "\tTAB", "\rCR", '=HYPERLINK("http://x","y")']


@pytest.mark.parametrize("formula", FORMULAS)
def test_csv_cell_neutralises_formulas(formula: str) -> None:
    assert csv_cell(formula) == "'" + formula


def test_csv_export_neutralises_every_field(store: AuditStore) -> None:
    for n, formula in enumerate(FORMULAS):
        _record(
            store,
            n,
            description=formula,
            actorId=formula,
            actorName=formula,
            targetId=formula,
            teamId=formula,
            metadata={"k": formula},
        )
    result = invoke(store.root, ["query", "-f", "csv", "--all", "--order", "asc"])
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout_bytes.decode(), newline="")))
    header, body = rows[0], rows[1:]
    assert len(body) == len(FORMULAS)
    for row, formula in zip(body, FORMULAS, strict=True):
        cells = dict(zip(header, row, strict=True))
        for name in ("description", "actorId", "actorName", "targetId", "teamId"):
            assert cells[name] == "'" + formula, name
        assert orjson.loads(cells["metadata"]) == {"k": formula}  # JSON starts with `{`
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert b"\r\n" in result.stdout_bytes  # RFC 4180 rows; a CR inside a cell is quoted


def test_ordinary_values_are_not_mangled_in_csv() -> None:
    assert csv_cell("user-1") == "user-1"
    assert csv_cell("a=b") == "a=b"
    assert csv_cell(None) == ""
    assert csv_cell({"k": 1}) == '{"k":1}'


# ------------------------------------------------------------------------------- foreign lines
FOREIGN = [
    b'{"hello":"world"}\n',
    b"plain text, not JSON at all\n",
    b"\x00\x01\x02\xff\xfe binary\n",
    b"\n",
    b'{"id":"forged", BROKEN ,"createdAt":"2026-01-02T00:00:09.000Z","_chain":"sha256:'
    + b"0" * 64
    + b'"}\n',
]


@pytest.mark.parametrize("foreign", FOREIGN, ids=["json", "text", "binary", "empty", "shaped"])
@pytest.mark.parametrize("fmt", ["jsonl", "json", "table", "csv"])
def test_foreign_line_is_reported_and_skipped(store: AuditStore, foreign: bytes, fmt: str) -> None:
    _record(store, 1)
    path = store.root / f"date={DAY}" / f"{WRITER}.jsonl"
    with path.open("ab") as handle:
        handle.write(foreign)
    _record(store, 3)  # the writer moved on to a fresh segment, past the foreign line
    assert (store.root / f"date={DAY}" / f"{WRITER}+2.jsonl").exists()
    result = invoke(store.root, ["query", "-f", fmt, "--all"])
    assert result.exit_code == 5, result.output
    assert "Traceback" not in result.output
    assert f"date={DAY}/{WRITER}.jsonl:2: not an entry" in result.stderr
    assert "skipped" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert b"forged" not in result.stdout_bytes and b"hello" not in result.stdout_bytes
    if fmt == "jsonl":
        ids = [orjson.loads(line)["id"] for line in result.stdout_bytes.splitlines()]
        assert ids == ["e-3", "e-1"]


def test_count_and_filters_report_foreign_lines_too(store: AuditStore) -> None:
    _record(store, 1)
    path = store.root / f"date={DAY}" / f"{WRITER}.jsonl"
    with path.open("ab") as handle:
        handle.write(b'{"action":"team_created"}\n')
    for argv in (["query", "--count"], ["query", "--action", "team_created", "-f", "jsonl"]):
        result = invoke(store.root, argv)
        assert result.exit_code == 5, argv
        assert f"date={DAY}/{WRITER}.jsonl:2" in result.stderr


def test_torn_line_is_reported_with_file_and_line(store: AuditStore) -> None:
    _record(store, 1)
    _record(store, 2)
    path = store.root / f"date={DAY}" / f"{WRITER}.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[0][:57])  # a crash mid-line
    result = invoke(store.root, ["query", "-f", "jsonl"])
    assert result.exit_code == 5
    assert f"date={DAY}/{WRITER}.jsonl:3: torn line: 57 bytes" in result.stderr
    assert len(result.stdout_bytes.splitlines()) == 2


def test_a_file_planted_as_a_partition_is_reported_not_fatal(store: AuditStore) -> None:
    _record(store, 1)
    (store.root / "date=2026-01-05").write_bytes(b"not a directory\n")
    result = invoke(store.root, ["query", "-f", "jsonl"])
    assert result.exit_code == 5
    assert "date=2026-01-05" in result.stderr and "cannot list the partition" in result.stderr
    assert [orjson.loads(line)["id"] for line in result.stdout_bytes.splitlines()] == ["e-1"]
