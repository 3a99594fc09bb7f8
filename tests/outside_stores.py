"""Real stores for the outside-tool tests, made with the `audit` CLI as an operator makes them.

`every_action_entries()` holds every built-in action and one custom action per target type,
each without metadata and with the metadata the mappings read, plus entries whose text is
hostile to each export format (line separators of every kind, escapes-looking text, formula
starts, empty strings and nulls, a BOM). `build()` writes a store of them over several days
(year 1 to year 9999 included), with one big settled day so that `audit query` writes a line
index under `_index/`, and a signed seal; `add_torn_line`, `interrupt_rotation` make the states a
crash leaves.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from auditcli.catalog import BUILTIN_ACTIONS
from auditcli.cli import app

#: Custom actions, one per target type; the last one is longer than syslog's 32-char MSGID.
CUSTOM_ACTIONS = {
    "deploy_approved": "ORGANIZATION",
    "user_suspended": "USER",
    "role_reviewed": "ROLE",
    "team_archived": "TEAM",
    "service_key_rotated": "SERVICE_ACCOUNT",
    "team_membership_quarterly_review_completed": "TEAM",
}
#: Text every format must carry through unchanged.
HOSTILE_TEXTS = (
    "",
    "line\nfeed",
    "carriage\rreturn and \r\n crlf",
    "tab\there, vt\x0bff\x0c",
    "nel\x85ls\u2028ps\u2029end",
    "fs\x1cgs\x1drs\x1e us\x1f",
    "esc\x1b[31mred\x1b[0m del\x7f c1\x9b",
    r"literal \x0a and \u2028 and \\ and \\x0a",
    'back\\slash "quote" ]bracket [sd@1 k="v"]',
    "=1+1",
    "'=1+1",
    "'",
    "''",
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1)",
    "\tTab start",
    "\rCR start",
    "\ufeffbom start",
    "ünïcødé ✓ 𝄞 \u202eevil",
)
_DAYS = ("0001-01-01", "1999-06-01", "2026-11-01", "2026-11-02", "2026-11-03", "9999-12-31")
#: The big settled day: enough bytes (> 256 KiB) for `audit query` to write a line index.
BIG_DAY = "2026-11-04"
WRITER = "w1"


def _entry(n: int, action: str, target: str, day: str, **fields: Any) -> dict[str, Any]:
    entry = {
        "id": f"e-{n:05d}",
        "description": f"entry {n}",
        "actorId": f"user-{n % 7}",
        "actorName": f"User {n % 7}",
        "actorEmail": f"user{n % 7}@example.com",
        "action": action,
        "actionDisplayName": action.replace("_", " ").title(),
        "target": target,
        "targetId": f"{target.lower()}-{n % 5}",
        "metadata": None,
        "organizationId": f"org-{n % 2}",
        "teamId": f"team-{n % 3}" if n % 2 else None,
        "createdAt": f"{day}T{n % 24:02d}:{n % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
    }
    entry.update(fields)
    return entry


def _metadata_variants(action: str) -> list[dict[str, Any] | None]:
    return [
        None,
        {"input": {"userId": "user-9", "to": "maintainer", "role": "member", "name": "Ops"}},
        {"userId": "user-8", "role": "viewer"},  # details at the top level
        {"input": {"userId": 42, "to": ["not", "text"]}, "note": action},  # wrong types
    ]


def every_action_entries() -> list[dict[str, Any]]:
    """Every action (built-in and custom) with and without metadata, and hostile entries."""
    actions = [(spec.action, spec.target) for spec in BUILTIN_ACTIONS]
    actions += list(CUSTOM_ACTIONS.items())
    entries = []
    n = 0
    for index, (action, target) in enumerate(actions):
        for metadata in _metadata_variants(action):
            day = _DAYS[n % len(_DAYS)]
            entries.append(_entry(n, action, target, day, metadata=metadata))
            n += 1
        # and the same action naming no team, no actor name or email
        entries.append(
            _entry(
                n,
                action,
                target,
                _DAYS[index % len(_DAYS)],
                teamId=None,
                actorName=None,
                actorEmail=None,
            )
        )
        n += 1
    for index, text in enumerate(HOSTILE_TEXTS):
        action, target = actions[index % len(actions)]
        entries.append(
            _entry(
                n,
                action,
                target,
                _DAYS[index % len(_DAYS)],
                description=text,
                actorName=text,
                actorId=text or "x",
                targetId=text or "y",
                teamId=text or None,
                actionDisplayName=text or "Display",
                metadata={"input": {"userId": text, "to": text}, text: [text, None, ""]},
            )
        )
        n += 1
    # an email OCSF's email_t pattern refuses but the store accepts
    entries.append(_entry(n, "login", "USER", "2026-11-02", actorEmail="jörg@exämple.com"))
    return entries


def big_day_entries(count: int = 800) -> list[dict[str, Any]]:
    """`count` logins on BIG_DAY (about 400 bytes each)."""
    return [
        _entry(
            100000 + n,
            "login",
            "USER",
            BIG_DAY,
            id=f"big-{n:05d}",
            metadata={"input": {"ip": f"10.0.{n // 250}.{n % 250}"}},
        )
        for n in range(count)
    ]


def audit(root: Path, *args: str, input: str | None = None) -> Any:
    """Run `audit ARGS` in-process against the log directory `root`: click's Result."""
    env = {"AUDIT_LOG_DIR": str(root), "AUDIT_WRITER_ID": WRITER, "COLUMNS": "80"}
    result = CliRunner().invoke(app, list(args), input=input, env=env)
    return result


def run_ok(root: Path, *args: str, input: str | None = None) -> str:
    """`audit ARGS`, asserting exit 0; its stdout, exactly (click's `stdout` turns CRLF to LF)."""
    result = audit(root, *args, input=input)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout_bytes.decode("utf-8")


def build(root: Path, entries: Sequence[dict[str, Any]], *, big: bool = True) -> None:
    """A store at `root` holding `entries` (custom actions added to the catalog first), and the
    big day when `big`; queried once, so settled plain files get their line index."""
    run_ok(root, "init", str(root))
    for action, target in CUSTOM_ACTIONS.items():
        run_ok(
            root,
            "actions",
            "add",
            action,
            "--display-name",
            action.title(),
            "--target",
            target,
            "--template",
            "{actor} did " + action,
        )
    lines = [json.dumps(entry) for entry in [*entries, *(big_day_entries() if big else [])]]
    source = root.parent / f"{root.name}-import.jsonl"
    source.write_text("\n".join(lines) + "\n")
    run_ok(root, "import", str(source))
    run_ok(root, "query", "--count", "--action", "login")


def add_torn_line(file: Path) -> None:
    """Append the first bytes of an entry without its newline: what a crash mid-write leaves."""
    with open(file, "ab") as handle:
        handle.write(b'{"id":"torn-1","description":"cut he')


def interrupt_rotation(gz: Path) -> Path:
    """Put back the plain file beside its gzip twin: a rotation killed before the unlink."""
    plain = gz.with_name(gz.name[: -len(".gz")])
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    os.chmod(plain, 0o600)
    return plain


def copy(root: Path, to: Path) -> Path:
    """A copy of the store (file modes kept)."""
    shutil.copytree(root, to, symlinks=True)
    return to
