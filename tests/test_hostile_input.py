"""Hostile input, table-driven: every case is refused with its exit code and leaves the store
byte-for-byte unchanged, or is stored and returned exactly.

Cases run in-process through the real CLI (typer's CliRunner) for speed; the FIFO query case runs
a real process with a timeout, since a regression there would hang rather than fail.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from auditcli import chain
from auditcli.cli import app
from auditcli.commands import core  # noqa: F401  (registers record, import, query)
from auditcli.model import MAX_LINE_BYTES

WRITER = "w1"
DAY = "2026-01-02"
AT = f"{DAY}T00:00:00Z"
#: Everything a terminal or a parser might trip on, as valid Unicode: it must be stored exactly.
EVIL = (
    "esc\x1b[31mred\x1b[0m osc\x1b]8;;https://evil.example\x07link\x1b]8;;\x07 bel\x07 del\x7f"
    " c1\x85\x9b bidi\u202eevil\u202c zw\u200b cr\r lf\n crlf\r\n ls\u2028 ps\u2029 tab\t"
    ' astral\U0001f600 quote" backslash\\ markup[bold]x[/bold][link=https://e.example]y[/link]'
)
NUL_EVIL = EVIL + " nul\x00"  # argv cannot carry NUL; JSON input can


def _entry(**fields: Any) -> dict[str, Any]:
    base = {"action": "login", "actorId": "u-1", "organizationId": "org-1", "createdAt": AT}
    base.update(fields)
    return base


def _json(**fields: Any) -> bytes:
    return json.dumps(_entry(**fields)).encode()


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


REC = ["record", "login", "--actor-id", "u-1", "--org-id", "org-1", "--created-at", AT]


# ------------------------------------------------------------------------------- set-ups
def _elsewhere(root: Path) -> Path:
    return root.parent / "elsewhere"


def symlinked_partition(root: Path) -> None:
    """`date=…` is a symlink to a directory outside the log directory."""
    _elsewhere(root).mkdir()
    (root / f"date={DAY}").symlink_to(_elsewhere(root))


def partition_is_file(root: Path) -> None:
    (root / f"date={DAY}").write_bytes(b"not a directory\n")


def _partition(root: Path) -> Path:
    part = root / f"date={DAY}"
    part.mkdir(exist_ok=True)
    return part


def fifo_segment(root: Path) -> None:
    os.mkfifo(_partition(root) / f"{WRITER}.jsonl")


def devfull_symlink_segment(root: Path) -> None:
    (_partition(root) / f"{WRITER}.jsonl").symlink_to("/dev/full")


def devfull_node_segment(root: Path) -> None:
    try:
        os.mknod(_partition(root) / f"{WRITER}.jsonl", stat.S_IFCHR | 0o600, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("mknod is not permitted here")


def directory_segment(root: Path) -> None:
    (_partition(root) / f"{WRITER}.jsonl").mkdir()


def symlinked_segment(root: Path) -> None:
    """The writer's file is a symlink to a regular file elsewhere: never written through."""
    target = root.parent / "target.jsonl"
    target.write_bytes(b"")
    (_partition(root) / f"{WRITER}.jsonl").symlink_to(target)


# ------------------------------------------------------------------------------- the table
@dataclass
class Case:
    name: str
    argv: list[str]
    stdin: bytes | None = None
    exit: int = 3
    #: For an accepted case: the fields the stored entry must hold exactly.
    stored: dict[str, Any] | None = None
    new_lines: int = 1
    setup: Callable[[Path], None] | None = None
    stderr_has: str = ""
    env: dict[str, str] = field(default_factory=dict)


BIG = MAX_LINE_BYTES  # bytes: an entry over the limit
NEAR = MAX_LINE_BYTES - 1000  # bytes of metadata padding: an entry just under the limit

CASES: list[Case] = [
    # --- record options ---------------------------------------------------------------
    Case(
        "unknown action",
        ["record", "no_such_action", "--actor-id", "u", "--org-id", "o"],
        stderr_has="unknown action",
    ),
    Case(
        "missing actor", ["record", "login", "--org-id", "o"], stderr_has="actorId: field required"
    ),
    Case(
        "missing org",
        ["record", "login", "--actor-id", "u"],
        stderr_has="organizationId: field required",
    ),
    Case("unknown target", [*REC, "--target", "planet"], stderr_has="target: must be one of"),
    Case("bad email", [*REC, "--actor-email", "not-an-email"], stderr_has="actorEmail"),
    Case(
        "email with newline", [*REC, "--actor-email", "a@b.example\nX: y"], stderr_has="actorEmail"
    ),
    Case("metadata not JSON", [*REC, "--metadata", "{nope"], stderr_has="metadata: not valid JSON"),
    Case("metadata array", [*REC, "--metadata", "[1,2]"], stderr_has="must be a JSON object"),
    Case("metadata string", [*REC, "--metadata", '"x"'], stderr_has="must be a JSON object"),
    Case(
        "metadata duplicate keys", [*REC, "--metadata", '{"k":1,"k":2}'], stderr_has="duplicate key"
    ),
    Case(
        "metadata int 2**64",
        [*REC, "--metadata", '{"n":18446744073709551616}'],
        stderr_has="64 bits",
    ),
    Case(
        "metadata int -(2**63)-1",
        [*REC, "--metadata", '{"n":-9223372036854775809}'],
        stderr_has="64 bits",
    ),
    Case("metadata NaN", [*REC, "--metadata", '{"n":NaN}'], stderr_has="not valid JSON"),
    Case("metadata Infinity", [*REC, "--metadata", '{"n":-Infinity}'], stderr_has="not valid JSON"),
    Case("metadata 1e400", [*REC, "--metadata", '{"n":1e400}'], stderr_has="infinity"),
    Case("metadata 5000 deep", [*REC, "--metadata", _deep(5000)], stderr_has="depth"),
    Case("metadata 300 deep", [*REC, "--metadata", _deep(300)], stderr_has="nested too deeply"),
    Case("metadata 40 deep", [*REC, "--metadata", _deep(40)], stderr_has="nested deeper than"),
    Case(
        "metadata lone surrogate", [*REC, "--metadata", '{"s":"\\ud800"}'], stderr_has="surrogate"
    ),
    Case(
        "created-at without offset",
        [*REC[:-2], "--created-at", "2026-01-02T00:00:00"],
        stderr_has="no UTC offset",
    ),
    Case(
        "created-at impossible date",
        [*REC[:-2], "--created-at", "2026-02-30T00:00:00Z"],
        stderr_has="not a valid ISO-8601",
    ),
    Case(
        "created-at 25 o'clock",
        [*REC[:-2], "--created-at", "2026-01-02T25:00:00Z"],
        stderr_has="createdAt",
    ),
    Case("created-at date only", [*REC[:-2], "--created-at", "2026-01-02"], stderr_has="createdAt"),
    Case("id path traversal", [*REC, "--id", "../../etc/passwd"], stderr_has="id: must be"),
    Case("id with newline", [*REC, "--id", "abc\ndef"], stderr_has="id: must be"),
    Case("id too long", [*REC, "--id", "a" * 200], stderr_has="id: must be"),
    Case(
        "entry over the size limit",
        [*REC, "--metadata", json.dumps({"pad": "x" * BIG})],
        stderr_has="64 KiB",
    ),
    Case(
        "description over its limit", [*REC, "--description", "d" * 9000], stderr_has="description"
    ),
    Case("--meta without =", [*REC, "--meta", "novalue"], exit=2, stderr_has="key=value"),
    Case(
        "--meta twice", [*REC, "--meta", "k=1", "--meta", "k=2"], exit=2, stderr_has="given twice"
    ),
    # --- record - (one JSON entry on stdin) ---------------------------------------------
    Case("stdin empty", ["record", "-"], b"", stderr_has="input is empty"),
    Case("stdin whitespace", ["record", "-"], b" \n\t\n", stderr_has="input is empty"),
    Case("stdin invalid JSON", ["record", "-"], b'{"action": login}', stderr_has="not valid JSON"),
    Case(
        "stdin invalid UTF-8",
        ["record", "-"],
        _json(actorName="x").replace(b'"x"', b'"\xff\xfe"'),
        stderr_has="UTF-8",
    ),
    Case(
        "stdin overlong UTF-8",
        ["record", "-"],
        _json(actorName="x").replace(b'"x"', b'"\xc0\xaf"'),
        stderr_has="UTF-8",
    ),
    Case(
        "stdin lone surrogate escape",
        ["record", "-"],
        _json(actorName="x").replace(b'"x"', b'"\\udc00"'),
        stderr_has="surrogate",
    ),
    Case("stdin BOM", ["record", "-"], b"\xef\xbb\xbf" + _json(), stderr_has="BOM"),
    Case(
        "stdin duplicate key",
        ["record", "-"],
        _json()[:-1] + b', "actorId": "someone-else"}',
        stderr_has="duplicate key 'actorId'",
    ),
    Case(
        "stdin actorId is a number",
        ["record", "-"],
        _json(actorId=5),
        stderr_has="actorId: Input should be a valid string",
    ),
    Case("stdin teamId is a bool", ["record", "-"], _json(teamId=True), stderr_has="teamId"),
    Case(
        "stdin metadata is a string", ["record", "-"], _json(metadata="{}"), stderr_has="metadata"
    ),
    Case(
        "stdin createdAt is epoch",
        ["record", "-"],
        _json(createdAt=1767312000),
        stderr_has="createdAt",
    ),
    Case("stdin actorId null", ["record", "-"], _json(actorId=None), stderr_has="actorId"),
    Case(
        "stdin unknown field", ["record", "-"], _json(ip="10.0.0.1"), stderr_has="ip: unknown field"
    ),
    Case(
        "stdin missing action",
        ["record", "-"],
        json.dumps({"actorId": "u", "organizationId": "o"}).encode(),
        stderr_has="action: field required",
    ),
    Case(
        "stdin createdAt without offset",
        ["record", "-"],
        _json(createdAt="2026-01-02T10:00:00"),
        stderr_has="no UTC offset",
    ),
    Case(
        "stdin impossible date",
        ["record", "-"],
        _json(createdAt="2026-13-01T00:00:00Z"),
        stderr_has="createdAt",
    ),
    Case("stdin lowercase target", ["record", "-"], _json(target="user"), stderr_has="target"),
    Case(
        "stdin unknown action",
        ["record", "-"],
        _json(action="drop_tables"),
        stderr_has="unknown action",
    ),
    Case(
        "stdin array", ["record", "-"], b"[" + _json() + b"]", stderr_has="expected a JSON object"
    ),
    Case(
        "stdin two objects", ["record", "-"], _json() + b"\n" + _json(), stderr_has="not valid JSON"
    ),
    Case(
        "stdin NaN",
        ["record", "-"],
        _json()[:-1] + b', "metadata": {"x": NaN}}',
        stderr_has="not valid JSON",
    ),
    Case(
        "stdin over the size limit",
        ["record", "-"],
        _json(metadata={"pad": "y" * BIG}),
        stderr_has="64 KiB",
    ),
    Case(
        "stdin metadata with 2**64",
        ["record", "-"],
        _json(metadata={"n": 2**64}),
        stderr_has="64 bits",
    ),
    Case(
        "stdin of 3 MiB without a newline",
        ["record", "-"],
        b"{" * (3 << 20),
        stderr_has="stdin: longer than 1 MiB; not read",
    ),
    Case(
        "import line of 3 MiB",
        ["import", "-"],
        _json(id="imp-1") + b"\n" + b'"' * (3 << 20) + b"\n" + _json(id="imp-2"),
        stderr_has="line 2: longer than 1 MiB; not read",
    ),
    # --- import ---------------------------------------------------------------------------
    Case(
        "import one bad line among good",
        ["import", "-"],
        _json(id="imp-1") + b"\n{broken\n" + _json(id="imp-2") + b"\n",
        stderr_has="line 2: not valid JSON",
    ),
    Case(
        "import invalid UTF-8 line",
        ["import", "-"],
        _json(id="imp-1") + b"\n" + _json(actorName="x").replace(b'"x"', b'"\xed\xa0\x80"'),
        stderr_has="line 2",
    ),
    Case(
        "import same id, other content",
        ["import", "-"],
        _json(id="imp-1") + b"\n" + _json(id="imp-1", actorId="u-2") + b"\n",
        stderr_has="appears on line 1 with different content",
    ),
    Case(
        "import stored id, other content",
        ["import", "-"],
        _json(id="seed-1", actorId="u-9", createdAt="2026-01-01T00:00:00Z"),
        stderr_has="already recorded with different content",
    ),
    Case("import empty", ["import", "-"], b"", stderr_has="input is empty"),
    Case(
        "import blank line",
        ["import", "-"],
        _json(id="imp-1") + b"\n\n" + _json(id="imp-2"),
        stderr_has="line 2: empty line",
    ),
    Case(
        "import missing file", ["import", "/nonexistent/x.jsonl"], exit=2, stderr_has="cannot open"
    ),
    # --- query options ----------------------------------------------------------------------
    Case(
        "query since garbage", ["query", "--since", "yesterday-ish"], exit=2, stderr_has="--since"
    ),
    Case(
        "query since path", ["query", "--since", "../../etc/passwd"], exit=2, stderr_has="--since"
    ),
    Case(
        "query unknown action",
        ["query", "--action", "nope\x1b[2J"],
        exit=2,
        stderr_has="unknown action 'nope\\x1b[2J'",
    ),
    Case(
        "query unknown target", ["query", "--target", "PLANET"], exit=2, stderr_has="unknown target"
    ),
    Case(
        "query since after until",
        ["query", "--since", "2026-02-01", "--until", "2026-01-01"],
        exit=2,
        stderr_has="is after",
    ),
    Case("query limit 0", ["query", "--limit", "0"], exit=2, stderr_has="--limit"),
    Case("query offset -1", ["query", "--offset", "-1"], exit=2, stderr_has="--offset"),
    Case("query limit not a number", ["query", "--limit", "ten"], exit=2),
    Case("query unknown format", ["query", "--format", "xml"], exit=2),
    # --- where a file or a partition should be -------------------------------------------
    Case("symlinked partition", REC, exit=4, setup=symlinked_partition, stderr_has="symbolic link"),
    Case("partition is a file", REC, exit=4, setup=partition_is_file, stderr_has="not a directory"),
    Case(
        "FIFO as the segment",
        REC,
        exit=4,
        setup=fifo_segment,
        env={"AUDIT_WRITER_ID": WRITER},
        stderr_has="not a regular file",
    ),
    Case(
        "/dev/full symlink as the segment",
        REC,
        exit=4,
        setup=devfull_symlink_segment,
        env={"AUDIT_WRITER_ID": WRITER},
        stderr_has="symbolic link",
    ),
    Case(
        "/dev/full device node as the segment",
        REC,
        exit=4,
        setup=devfull_node_segment,
        env={"AUDIT_WRITER_ID": WRITER},
        stderr_has="not a regular file",
    ),
    Case(
        "directory as the segment",
        REC,
        exit=4,
        setup=directory_segment,
        env={"AUDIT_WRITER_ID": WRITER},
        stderr_has="NOT recorded",
    ),
    Case(
        "symlink to a file as the segment",
        REC,
        exit=4,
        setup=symlinked_segment,
        env={"AUDIT_WRITER_ID": WRITER},
        stderr_has="symbolic link",
    ),
    # --- stored, and returned exactly -------------------------------------------------------
    Case(
        "stdin: control, bidi, CR/LF, U+2028, NUL, markup",
        ["record", "-"],
        _json(description=NUL_EVIL, actorName=NUL_EVIL, targetId=NUL_EVIL, teamId=NUL_EVIL),
        exit=0,
        stored={
            "description": NUL_EVIL,
            "actorName": NUL_EVIL,
            "targetId": NUL_EVIL,
            "teamId": NUL_EVIL,
        },
    ),
    Case(
        "options: control, bidi, CR/LF, U+2028, markup",
        [
            "record",
            "team_created",
            "--actor-id",
            EVIL,
            "--org-id",
            EVIL,
            "--target-id",
            EVIL,
            "--actor-name",
            EVIL,
            "--description",
            EVIL,
            "--team-id",
            EVIL,
            "--created-at",
            AT,
        ],
        exit=0,
        stored={
            "actorId": EVIL,
            "organizationId": EVIL,
            "targetId": EVIL,
            "actorName": EVIL,
            "description": EVIL,
            "teamId": EVIL,
        },
    ),
    Case(
        "metadata keys and values, 64-bit edges",
        ["record", "-"],
        _json(metadata={NUL_EVIL: [NUL_EVIL, 2**64 - 1, -(2**63), 0.1, True, None, {"": ""}]}),
        exit=0,
        stored={"metadata": {NUL_EVIL: [NUL_EVIL, 2**64 - 1, -(2**63), 0.1, True, None, {"": ""}]}},
    ),
    Case(
        "--meta pairs with control chars",
        [*REC, "--meta", f"k={EVIL}", "--meta", f"{EVIL.replace('=', ':')}=v"],
        exit=0,
        stored={"metadata": {"k": EVIL, EVIL.replace("=", ":"): "v"}},
    ),
    Case(
        "entry just under the size limit",
        ["record", "-"],
        _json(metadata={"pad": "z" * NEAR}),
        exit=0,
        stored={"metadata": {"pad": "z" * NEAR}},
    ),
    Case(
        "offset time normalised to UTC",
        ["record", "-"],
        _json(createdAt="2026-01-02T03:04:05.678+05:30"),
        exit=0,
        stored={"createdAt": "2026-01-01T21:34:05.678Z"},
    ),
    Case(
        "8192-character description",
        [*REC, "--description", "é" * 8192],
        exit=0,
        stored={"description": "é" * 8192},
    ),
    Case(
        "import of hostile lines",
        ["import", "-"],
        _json(id="imp-evil-1", description=NUL_EVIL)
        + b"\r\n"
        + _json(id="imp-evil-2", actorName=NUL_EVIL)
        + b"\n",
        exit=0,
        new_lines=2,
        stored={"description": NUL_EVIL},
    ),
    Case(
        "writer id with path traversal",
        REC,
        exit=0,
        env={"AUDIT_WRITER_ID": "../../../tmp/x"},
        stored={"actorId": "u-1"},
    ),
    Case(
        "query filter with control chars (no match)",
        ["query", "--actor-id", EVIL, "-f", "jsonl"],
        exit=0,
        new_lines=0,
    ),
]


# ------------------------------------------------------------------------------- machinery
def snapshot(top: Path) -> dict[str, Any]:
    """Every path under `top` with its bytes (regular files), link target or type."""
    found: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = os.lstat(path)
            rel = str(path.relative_to(top))
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                found[rel] = path.read_bytes()
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = "dir"
            else:
                found[rel] = ("special", stat.S_IFMT(info.st_mode))
    return found


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A log directory holding one entry (id `seed-1`), so that 'unchanged' means something."""
    logs = tmp_path / "logs"
    result = invoke(logs, ["record", "-"], _json(id="seed-1", createdAt="2026-01-01T00:00:00Z"))
    assert result.exit_code == 0, result.stderr
    return logs


def invoke(
    root: Path, argv: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None
):
    clean = {
        name: None
        for name in (
            "AUDIT_LOG_DIR",
            "AUDIT_ACTOR_ID",
            "AUDIT_ORG_ID",
            "AUDIT_ACTOR_NAME",
            "AUDIT_ACTOR_EMAIL",
        )
    }
    clean["AUDIT_WRITER_ID"] = WRITER
    clean["COLUMNS"] = "200"
    clean.update(env or {})
    return CliRunner().invoke(app, ["-d", str(root), *argv], input=stdin, env=clean)


def stored_entries(root: Path) -> list[tuple[str, bytes]]:
    """(file, content) of every stored line, checking each is one whole chained line."""
    lines = []
    for path in sorted(root.glob("date=*/*.jsonl")):
        data = path.read_bytes()
        assert data.endswith(b"\n") or not data
        for line in data.splitlines(keepends=True):
            assert chain.split_line(line) is not None, line[:100]
            lines.append((str(path), chain.content_of(line)))  # the 13 fields (no salt)
    return lines


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input(case: Case, root: Path) -> None:
    if case.setup is not None:
        case.setup(root)
    before = snapshot(root.parent)
    lines_before = stored_entries(root) if case.setup is None else []
    result = invoke(root, case.argv, case.stdin, case.env)
    after = snapshot(root.parent)

    assert result.exit_code == case.exit, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert case.stderr_has in result.stderr
    if case.exit != 0:
        assert after == before, "a refused input changed the store"
        first = result.stderr.splitlines()[0]
        assert first.startswith(("Error: ", "Usage: ")), result.stderr
        # One inert line: nothing from the input reaches the terminal raw.
        assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
        return
    assert result.stderr == ""
    if case.stored is None:  # a query
        assert after == before
        return
    new = [item for item in stored_entries(root) if item not in lines_before]
    assert len(new) == case.new_lines
    path, content = new[0]
    entry = orjson.loads(content)
    for name, value in case.stored.items():
        assert entry[name] == value, name
    # One physical line per entry, whatever the text held.
    raw = Path(path).read_bytes()
    assert raw.count(b"\n") == len([item for item in stored_entries(root) if item[0] == path])
    assert b"\r" not in raw and b"\x00" not in raw
    # Returned exactly: the query gives back the very bytes that were stored, JSON equal too.
    jsonl = invoke(root, ["query", "--all", "--order", "asc", "-f", "jsonl"])
    assert jsonl.exit_code == 0, jsonl.stderr
    assert content in jsonl.stdout_bytes.split(b"\n")
    response = invoke(root, ["query", "-f", "json", "--limit", "100"])
    returned = {item["id"]: item for item in orjson.loads(response.stdout_bytes)["logs"]}
    assert returned[entry["id"]] == entry


def test_writer_id_cannot_leave_the_partition(root: Path) -> None:
    result = invoke(root, REC, env={"AUDIT_WRITER_ID": "../../../tmp/x"})
    assert result.exit_code == 0, result.stderr
    files = sorted(p.name for p in (root / f"date={DAY}").iterdir())
    assert files == ["tmp-x.jsonl"]  # reduced to [A-Za-z0-9.-]: no separator survives
    assert sorted(p.name for p in root.parent.iterdir()) == ["logs"]


def test_filter_on_control_characters_matches_exactly(root: Path) -> None:
    """Query filters take hostile values too and match them byte-exactly."""
    assert invoke(root, ["record", "-"], _json(actorId=NUL_EVIL, id="evil-1")).exit_code == 0
    assert invoke(root, ["record", "-"], _json(actorId=NUL_EVIL[:-1], id="evil-2")).exit_code == 0
    result = invoke(root, ["query", "--actor-id", NUL_EVIL, "-f", "json"])
    assert result.exit_code == 0, result.stderr
    logs = orjson.loads(result.stdout_bytes)["logs"]
    assert [item["id"] for item in logs] == ["evil-1"]
    assert logs[0]["actorId"] == NUL_EVIL


def test_record_refuses_existing_id(root: Path) -> None:
    before = snapshot(root)
    same = invoke(root, ["record", "-"], _json(id="seed-1", createdAt="2026-01-01T00:00:00Z"))
    other = invoke(
        root, ["record", "-"], _json(id="seed-1", createdAt="2026-01-01T00:00:00Z", actorId="u-2")
    )
    via_option = invoke(root, [*REC[:-2], "--created-at", "2026-01-01T00:00:00Z", "--id", "seed-1"])
    for result in (same, other, via_option):
        assert result.exit_code == 3, result.stderr
        assert "seed-1 is already recorded" in result.stderr
    assert "different content" in other.stderr
    assert snapshot(root) == before


def test_import_twice_writes_each_id_once(root: Path, tmp_path: Path) -> None:
    source = tmp_path / "batch.jsonl"
    source.write_bytes(b"".join(_json(id=f"b-{n}", actorId=f"u-{n}") + b"\n" for n in range(50)))
    first = invoke(root, ["import", str(source)])
    assert first.exit_code == 0, first.stderr
    assert "imported 50 entries" in first.stdout
    after_first = snapshot(root)
    second = invoke(root, ["import", str(source)])
    assert second.exit_code == 0, second.stderr
    assert "imported 0 entries, 50 duplicate(s) skipped" in second.stdout
    assert snapshot(root) == after_first
    # Partly new: only the new ids are written, the rest are counted as duplicates.
    source.write_bytes(source.read_bytes() + _json(id="b-new") + b"\n")
    third = invoke(root, ["import", str(source)])
    assert "imported 1 entries, 50 duplicate(s) skipped" in third.stdout
    ids = [orjson.loads(content)["id"] for _, content in stored_entries(root)]
    assert len(ids) == len(set(ids)) == 52


def test_query_with_a_fifo_in_a_partition_does_not_hang(root: Path) -> None:
    os.mkfifo(root / "date=2026-01-01" / "planted.jsonl")
    proc = subprocess.run(
        [sys.executable, "-m", "auditcli", "-d", str(root), "query", "-f", "jsonl"],
        capture_output=True,
        timeout=20,
        env={**os.environ, "AUDIT_WRITER_ID": WRITER},
    )
    assert proc.returncode == 5
    assert b"date=2026-01-01/planted.jsonl" in proc.stderr
    assert b"not a regular file" in proc.stderr
    assert orjson.loads(proc.stdout.splitlines()[0])["id"] == "seed-1"


def test_query_does_not_read_through_a_symlinked_partition(root: Path, tmp_path: Path) -> None:
    """A `date=…` link to a directory of valid-looking files is reported, not read."""
    other = tmp_path / "other-logs"
    result = invoke(other, ["record", "-"], _json(id="planted-1", createdAt="2026-03-01T00:00:00Z"))
    assert result.exit_code == 0
    (root / "date=2026-03-01").symlink_to(other / "date=2026-03-01")
    query = invoke(root, ["query", "-f", "jsonl"])
    assert query.exit_code == 5
    assert "date=2026-03-01" in query.stderr and "symbolic link" in query.stderr
    assert b"planted-1" not in query.stdout_bytes
