"""Start-up of short commands: `audit query` never imports pydantic, option values converted
without it are exactly what Typer's own (pydantic) conversion gives, and the short commands'
quick exit loses no output and keeps every exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer._click import Context
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from auditcli.chain import SEED_FIELDS
from auditcli.cli import app
from auditcli.cli_params import plain_param
from auditcli.entry_model import Entry
from auditcli.model import _plainly_valid
from auditcli.store import AuditStore


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, **kw)


def test_query_count_with_filters_imports_no_pydantic(log_dir: Path) -> None:
    run("-m", "auditcli", "record", "login", "--actor-id", "u-1", "--org-id", "o-1")
    done = run(
        "-X", "importtime", "-m", "auditcli", "query", "--count", "-a", "login", "-n", "5",
        "--since", "7d", "--target", "user", "--order", "asc", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\n"
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert "typer.main" in imported  # the breakdown is there ...
    assert not {name for name in imported if name.startswith(("pydantic", "typer._adapters"))}


def _params() -> list[tuple[Any, Any]]:
    """Every parameter of every command, with the command it belongs to."""
    found = []

    def walk(command: Any) -> None:
        ctx = Context(command, info_name="audit")
        found.extend((command, param) for param in command.get_params(ctx))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found


PARAMS = _params()
TEXTS = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,3})?", fullmatch=True),
    st.sampled_from(["0", "-0", "007", "+5", "1_000", " 5", "1e3", "٣", "nan", "inf", "", "\x00"]),
    st.sampled_from(["table", "json", "jsonl", "csv", "desc", "asc", "JSON", "admin"]),
)


def _outcome(convert: Any, value: Any, param: Any, ctx: Any) -> tuple[str, str, type]:
    try:
        result = convert(value, param, ctx)
        return "value", repr(result), type(result)
    except BadParameter as exc:
        return "error", exc.format_message(), BadParameter


#: (parameter, its plain conversion, Typer's own conversion, a context), built once.
CONVERSIONS = [
    (param, plain, build_runtime_param(param.type_descriptor), Context(command, info_name="audit"))
    for command, param in PARAMS
    if (plain := plain_param(param)) is not None
]


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=3))
def test_plain_conversion_equals_typers(texts: list[str]) -> None:
    """Same value (and type) or the same error message as Typer's pydantic conversion, for
    every parameter of every command, one value or several."""
    for param, plain, typers, ctx in CONVERSIONS:
        multi = param.multiple or param.nargs != 1
        for value in [tuple(texts)] if multi else texts:
            ours = _outcome(plain.coerce, value, param, ctx)
            assert ours == _outcome(typers.coerce, value, param, ctx), (param.name, value)


def test_every_plain_type_of_the_commands_converts_without_pydantic() -> None:
    kinds = {repr(param.type_descriptor.annotation) for _, param in PARAMS}
    unconverted = {
        repr(param.type_descriptor.annotation) for _, param in PARAMS if plain_param(param) is None
    }
    assert len(kinds) > 10 and not unconverted


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["query", "--limit", "many"], 2, "--limit'/'-n': expected a whole number"),
        (["query", "--limit", "0"], 2, "--limit"),
        (["query", "--order", "sideways"], 2, "'sideways' is not one of 'desc', 'asc'"),
        (["query", "--format", "JSON"], 2, "'JSON' is not one of"),
        (["record", "Not_Snake", "--actor-id", "a", "--org-id", "o"], 3, "action"),
    ],
)
def test_errors_of_short_commands_keep_their_code_and_line(
    log_dir: Path, args: list[str], code: int, needle: str
) -> None:
    run("-m", "auditcli", "record", "login", "--actor-id", "u-1", "--org-id", "o-1")
    done = run("-m", "auditcli", *args)
    assert done.returncode == code
    assert needle in done.stderr and done.stderr.startswith("Error: ")
    assert done.stderr.count("\n") == 1 or code == 3


def test_quick_exit_flushes_large_output_and_keeps_every_entry(log_dir: Path) -> None:
    entries = "\n".join(
        f'{{"action":"login","actorId":"user-{n}","organizationId":"o-1"}}' for n in range(3000)
    )
    done = run("-m", "auditcli", "import", "-", input=entries)
    assert done.returncode == 0, done.stderr
    ids = [
        run("-m", "auditcli", "record", "login", "--actor-id", f"r-{n}", "--org-id", "o-1")
        for n in range(3)
    ]
    assert all(done.returncode == 0 and len(done.stdout.split()) == 1 for done in ids)
    # Through a pipe bigger than its buffer, to the last byte.
    read, write = os.pipe()
    with os.fdopen(write, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditcli", "query", "--all", "--format", "jsonl"],
            stdout=out,
        )
    with os.fdopen(read, "rb") as source:
        data = source.read()
    assert proc.wait(timeout=60) == 0
    lines = data.splitlines()
    assert len(lines) == 3003 and data.endswith(b"}\n")
    recorded = {done.stdout.strip() for done in ids}
    assert recorded <= {line.split(b'"')[3].decode() for line in lines}


def test_a_full_stdout_is_still_an_error_after_the_entry_is_stored(log_dir: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "auditcli", "record", "login", "--actor-id", "a", "--org-id=x"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1 and "IS recorded" in done.stderr
    listed = run("-m", "auditcli", "query", "--count")
    assert listed.stdout == "1\n"


class Text(str):
    """A str subclass: the model (strict) decides about it, never the quick check."""


VALID = {
    "id": "01a23376-af53-7085-974c-b372ceefa80d",
    "description": "user-1 logged in",
    "actorId": "user-1",
    "actorName": None,
    "actorEmail": "a@b.example",
    "action": "login",
    "actionDisplayName": "User Login",
    "target": "USER",
    "targetId": "user-1",
    "metadata": {"ip": "10.0.0.1"},
    "organizationId": "org-1",
    "teamId": None,
    "createdAt": "2026-11-25T08:06:40.123Z",
}
ODD_TEXT = st.one_of(
    st.text(max_size=6),
    st.text(st.characters(blacklist_categories=()), max_size=4),  # lone surrogates too
    st.sampled_from(["a\ud800b", "\udfff", "ok\x00", "tab\t"]),
    st.sampled_from(["", "x" * 128, "x" * 129, "y" * 512, "y" * 513, "z" * 8193, "é", "٣"]),
    st.sampled_from(
        ["login\n", "USER\n", "a@b.c\n", "a b@c.d", "a@b", "2026-11-25T08:06:40.123Z\n"]
    ),
    st.sampled_from(["2026-11-25T08:06:40.12Z", "٢٠٢٦-11-25T08:06:40.123Z", "ORGANIZATION"]),
    st.sampled_from(["snake_case", "Snake", "a__b", "_a", "a1_2b", "user@x.y", "-id", "a:b@c.d-e"]),
)
ODD_VALUE = st.one_of(
    ODD_TEXT,
    ODD_TEXT.map(Text),
    st.none(),
    st.integers(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just({1: "not a text key"}),
    st.just({"\ud800": "a key that is not Unicode"}),
)


@settings(max_examples=400, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(SEED_FIELDS), ODD_VALUE, max_size=4))
def test_plainly_valid_entries_are_valid_for_the_model(changes: dict[str, Any]) -> None:
    """The quick check of `audit record` never accepts what the pydantic model refuses."""
    from pydantic import ValidationError

    entry = {**VALID, **changes}
    try:
        Entry.__pydantic_validator__.validate_python(entry)
        valid = True
    except ValidationError:
        valid = False
    assert valid or not _plainly_valid(entry), entry


def test_an_ordinary_entry_skips_the_model() -> None:
    assert _plainly_valid(VALID)
    assert _plainly_valid({**VALID, "metadata": None, "actorEmail": None, "teamId": "team-1"})


def test_record_imports_no_pydantic_and_still_refuses_what_the_model_refuses(
    log_dir: Path,
) -> None:
    done = run(
        "-X", "importtime", "-m", "auditcli", "record", "login", "--actor-id", "u-1",
        "--org-id", "o-1", "--actor-email", "u1@example.com", "--metadata", '{"a": 1}',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert not {name for name in imported if name.startswith("pydantic")}
    from auditcli import AuditStore, InvalidEntryError

    with pytest.raises(InvalidEntryError, match="Input should be a valid string"):
        AuditStore(log_dir).record({"action": "login", "actorId": "a\ud800", "organizationId": "o"})
    bad = run("-m", "auditcli", "record", "login", "--actor-id", "u-1", "--org-id", "o" * 513)
    assert bad.returncode == 3
    assert bad.stderr == "Error: organizationId: String should have at most 512 characters\n"
    assert run("-m", "auditcli", "query", "--count").stdout == "1\n"


def test_a_page_at_an_offset_reports_each_damaged_line_once(log_dir: Path) -> None:
    """Days before the page are only counted; the day the page starts in is counted, then read:
    its damaged line is reported once, and the page is the same slice as from offset 0."""
    from auditcli import Filters, QueryEngine

    store = AuditStore(log_dir)
    store.append(
        [
            {
                "action": "login",
                "actorId": f"user-{n}",
                "organizationId": "o-1",
                "createdAt": f"2026-11-0{1 + n % 3}T10:00:{n:02d}.000Z",
            }
            for n in range(30)
        ]
    )
    middle = next(log_dir.glob("date=2026-11-02/*.jsonl"))
    with open(middle, "ab") as handle:
        handle.write(b'{"planted": true}\n')
    everything = QueryEngine(store, Filters()).page(100, 0)[1]
    for offset in (0, 5, 12, 15, 25):
        engine = QueryEngine(store, Filters())
        total, page = engine.page(4, offset)
        assert (total, page) == (30, everything[offset : offset + 4])
        assert len(engine.problems) == 1, engine.problems


def test_the_cli_warns_once_for_a_page_at_an_offset(log_dir: Path) -> None:
    test_a_page_at_an_offset_reports_each_damaged_line_once(log_dir)
    done = run("-m", "auditcli", "query", "--offset", "12", "--limit", "3", "--format", "json")
    assert done.returncode == 5
    assert done.stderr.count("warning:") == 1
