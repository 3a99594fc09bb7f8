"""`audit export -f syslog` and `-f csv` read by outside parsers and decoded back to the stored
values with the recipes of docs/formats.md (written here again, from the documentation, with
nothing imported from auditcli).

Syslog: every line passes `syslog-rfc5424-parser` (a PyPI RFC 5424 parser) and a strict parser
of RFC 5424's ABNF below; no line holds a raw line separator of any kind; every SD value and
every MSG decodes back to the stored text. CSV: Python's csv reader (RFC 4180), then every cell
decodes back to the stored value (null and empty string told apart), and no cell a spreadsheet
reads starts a formula.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import outside_stores as stores
import pytest

FIELDS = (
    "id",
    "description",
    "actorId",
    "actorName",
    "actorEmail",
    "action",
    "actionDisplayName",
    "target",
    "targetId",
    "metadata",
    "organizationId",
    "teamId",
    "createdAt",
)
# syslog-rfc5424-parser's grammar library imports modules Python 3.11 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:module 'sre_:DeprecationWarning")

#: Every character some reader ends a line at: CR LF VT FF, FS GS RS, NEL, LS, PS.
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("exports") / "logs"
    stores.build(root, stores.every_action_entries(), big=False)
    return root


@pytest.fixture(scope="module")
def entries() -> dict[str, dict[str, Any]]:
    return {entry["id"]: entry for entry in stores.every_action_entries()}


# ================================================================== RFC 5424, from its ABNF
_PRINTUSASCII = r"[\x21-\x7e]"
_SD_NAME = r"[!#-<>-\\^-~]{1,32}"  # PRINTUSASCII except '=', SP, ']', '"'
_PARAM_VALUE = r'(?:[^"\\\]]|\\["\\\]])*'  # '"', '\' and ']' MUST be escaped
_SD_PARAM = rf'{_SD_NAME}="{_PARAM_VALUE}"'
_SD_ELEMENT = rf"\[{_SD_NAME}(?: {_SD_PARAM})*\]"
_TIMESTAMP = (
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"T(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
_SYSLOG_MSG = re.compile(
    rf"<(?P<pri>\d{{1,3}})>(?P<version>[1-9]\d{{0,2}}) "
    rf"(?P<timestamp>-|{_TIMESTAMP}) "
    rf"(?P<hostname>-|{_PRINTUSASCII}{{1,255}}) "
    rf"(?P<app>-|{_PRINTUSASCII}{{1,48}}) "
    rf"(?P<procid>-|{_PRINTUSASCII}{{1,128}}) "
    rf"(?P<msgid>-|{_PRINTUSASCII}{{1,32}}) "
    rf"(?P<sd>-|(?:{_SD_ELEMENT})+)"
    rf"(?: (?P<msg>.*))?",
    re.DOTALL,
)
_PARAM = re.compile(rf'({_SD_NAME})="({_PARAM_VALUE})"')


def parse_rfc5424(line: str) -> dict[str, Any]:
    """A strict RFC 5424 parse of one message: header fields, SD params (raw), MSG."""
    match = _SYSLOG_MSG.fullmatch(line)
    assert match, f"not RFC 5424: {line!r}"
    assert int(match["pri"]) <= 191
    msg = match["msg"]
    if msg is not None and not msg.isascii():
        assert msg.startswith("\ufeff"), "a UTF-8 MSG must start with a BOM (RFC 5424 6.4)"
    element = re.match(rf"\[({_SD_NAME})", match["sd"])
    assert element
    params = dict(_PARAM.findall(match["sd"][element.end() :]))
    return {**match.groupdict(), "sd_id": element[1], "params": params}


def rfc5424_unescape(value: str) -> str:
    """RFC 5424 6.3.3: a backslash before '"', '\\' or ']' is taken away."""
    return re.sub(r'\\(["\\\]])', r"\1", value)


def decode_text(text: str) -> str:
    """docs/formats.md's text decoding: \\\\ is a backslash, \\xNN and \\uNNNN a character."""
    return re.sub(
        r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})",
        lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)),
        text,
    )


# ===================================================================================== syslog
def test_every_syslog_line_parses_and_decodes_to_the_stored_entry(
    store: Any, entries: dict[str, dict[str, Any]]
) -> None:
    from syslog_rfc5424_parser import SyslogMessage

    out = stores.run_ok(store, "export", "-f", "syslog")
    assert out.endswith("\n")
    lines = out[:-1].split("\n")
    assert len(lines) == len(entries)
    seen = set()
    for line in lines:
        assert not any(c in line for c in LINE_BREAKS), repr(line)
        assert line.encode("utf-8").decode("utf-8") == line
        strict = parse_rfc5424(line)
        outside = SyslogMessage.parse(line).as_dict()
        params = {
            name: decode_text(rfc5424_unescape(raw)) for name, raw in strict["params"].items()
        }
        entry = entries[params["id"]]
        seen.add(entry["id"])
        # the outside parser reads the same message
        assert (outside["msgid"] or "-") == strict["msgid"]  # it reads NILVALUE as None
        assert outside["hostname"] == strict["hostname"]
        assert {
            name: decode_text(rfc5424_unescape(value))
            for name, value in outside["sd"]["audit@32473"].items()
        } == params
        assert outside["timestamp"] == entry["createdAt"] == strict["timestamp"]
        # every field is carried, decodable; nothing cut
        for name in (
            "id",
            "actorId",
            "actorName",
            "actorEmail",
            "action",
            "target",
            "targetId",
            "organizationId",
            "teamId",
        ):
            assert params.get(name) == entry[name], name
        metadata = json.loads(params["metadata"]) if "metadata" in params else None
        assert metadata == entry["metadata"]
        msg = strict["msg"] or ""
        assert decode_text(msg.removeprefix("\ufeff")) == entry["description"]
        # MSGID: the action, or NILVALUE when it is longer than 32 (never cut)
        expected = entry["action"] if len(entry["action"]) <= 32 else "-"
        assert strict["msgid"] == expected
        assert int(strict["pri"]) == 13 * 8 + (6 if entry["action"] == "login" else 5)
    assert seen == set(entries)
    assert any(len(e["action"]) > 32 for e in entries.values())


def test_the_strict_parser_refuses_what_rfc5424_forbids() -> None:
    good = '<109>1 2026-11-24T00:50:24.565Z vm audit - x [a@1 k="v\\]"] msg'
    parse_rfc5424(good)
    for bad in (
        '<109>1 2026-11-24T00:50:24.565Z vm audit - x [a@1 k="v]"] msg',  # raw ]
        '<109>1 2026-11-24T00:50:24.565Z vm audit - x [a@1 k="v\\n"] msg',  # stray backslash
        "<109>1 2026-11-24T00:50:24.565Z vm audit - xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx - m",
        "<109>1 2026-11-24T00:50:24.565Z vm audit - x - wörld",  # UTF-8 without BOM
        "<200>1 2026-11-24T00:50:24.565Z vm audit - x - m",
    ):
        with pytest.raises(AssertionError):
            parse_rfc5424(bad)


# ======================================================================================== CSV
def decode_cell(cell: str) -> str | None:
    """docs/formats.md's CSV decoding: an empty cell is null; a leading `'` is taken away."""
    if cell == "":
        return None
    return cell[1:] if cell.startswith("'") else cell


def test_every_csv_cell_decodes_to_the_stored_value(
    store: Any, entries: dict[str, dict[str, Any]]
) -> None:
    out = stores.run_ok(store, "export", "-f", "csv")
    rows = list(csv.reader(io.StringIO(out, newline="")))
    assert tuple(rows[0]) == FIELDS
    assert len(rows) == 1 + len(entries)
    empties = nulls = 0
    for row in rows[1:]:
        assert len(row) == len(FIELDS)
        # what a spreadsheet reads never starts a formula
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
        decoded = dict(zip(FIELDS, map(decode_cell, row), strict=True))
        entry = entries[decoded["id"]]
        if decoded["metadata"] is not None:
            decoded["metadata"] = json.loads(decoded["metadata"])
        assert decoded == entry
        empties += sum(value == "" for value in entry.values())
        nulls += sum(value is None for value in entry.values())
    assert empties and nulls  # both cases were exercised
    values = {e["description"] for e in entries.values()}
    assert {"=1+1", "'=1+1", "", "'", "''"} <= values
