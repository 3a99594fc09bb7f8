"""The auditor's checkpoints (`_index/auditor/`): an answer resumed from them equals the full
replay, whatever the log (hypothesis), and whatever happened to them: missing, stale (a late
import into a checkpointed day), half-written, planted or forged (which `audit verify` reports).
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from auditcli import AuditStore
from auditcli.auditor import KINDS, TEAM_MEMBER_ACTIONS, Replay, access_state, history, report_data
from auditcli.auditor.checkpoints import Checkpoints
from auditcli.cli import app
from auditcli.importer import import_jsonl
from auditcli.query import Filters, QueryEngine, entry_of

DIR = ("_index", "auditor")
USERS = ("u-1", "u-2", "u-3")
TEAMS = ("t-1", "t-2")
ROLES = ("r-1", "r-2")
SERVICE_ACCOUNTS = ("s-1",)
ORGS = ("org-1", "org-2")


def _entry(n: int, day: int, second: int, action: str, pick: int, org: str) -> dict[str, Any]:
    """Entry `n` on 2026-01-`day`: its target and metadata follow the action's conventions."""
    user = USERS[pick % len(USERS)]
    team = TEAMS[pick % len(TEAMS)]
    inputs: dict[str, Any] | None = None
    if action in ("user_added_to_team", "user_removed_from_team", "user_role_changed_in_team"):
        target, inputs = team, {"userId": USERS[(pick // 2) % len(USERS)]}
        if action == "user_added_to_team":
            inputs["role"] = ("member", "lead")[pick % 2]
        elif action == "user_role_changed_in_team":
            inputs.update({"from": "member", "to": "lead"})
    elif action.startswith("team_"):
        target, inputs = team, ({"name": f"Team {pick}"} if action == "team_created" else None)
    elif action.startswith("role_"):
        target = ROLES[pick % len(ROLES)]
        if action != "role_deleted":
            inputs = {"name": "Role", "permissions": ["read", "write", "admin"][: 1 + pick % 3]}
    elif action.startswith("service_account_"):
        target = SERVICE_ACCOUNTS[0]
        inputs = {"name": "bot"} if action.endswith("created") else None
    else:  # users, admins, logins
        target = user
        if action == "user_added":
            inputs = {"email": f"{user}.{pick}@example.com", "role": "member"}
    actor = USERS[(pick + n) % len(USERS)]
    return {
        "id": f"e{n:04d}",
        "action": action,
        "actorId": actor,
        "actorEmail": f"{actor}+{pick % 2}@example.com",
        "targetId": target,
        "organizationId": org,
        "teamId": target if target in TEAMS else None,
        "metadata": {"input": inputs} if inputs else None,
        "createdAt": f"2026-01-{day:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:"
        f"{second % 60:02d}.000Z",
    }


ACTIONS = (
    "login",
    "user_added",
    "user_removed",
    "org_admin_added",
    "org_admin_removed",
    "team_created",
    "team_deleted",
    "user_added_to_team",
    "user_removed_from_team",
    "user_role_changed_in_team",
    "role_created",
    "role_updated",
    "role_deleted",
    "service_account_created",
    "service_account_deleted",
)
ENTRY = st.tuples(
    st.integers(1, 4),  # day
    st.integers(0, 86399),  # second of the day
    st.sampled_from(ACTIONS),
    st.integers(0, 11),
    st.sampled_from(ORGS),
)


def _entries(specs: list[tuple[int, int, str, int, str]], first: int = 0) -> list[dict[str, Any]]:
    return [_entry(first + n, *spec) for n, spec in enumerate(specs)]


def _import(store: AuditStore, entries: list[dict[str, Any]]) -> None:
    """Imported in the order given: out of time order within a day is reported as such."""
    import_jsonl(store, io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in entries)))


def _at(day: int, hour: int) -> str:
    return f"2026-01-{day:02d}T{hour:02d}:00:00.000Z"


def _same_answers(store: AuditStore, question: dict[str, Any]) -> None:
    """Every question answered from the checkpoints equals the full replay."""
    kind, at, diff, since, orgs = (
        question["kind"],
        question["at"],
        question["diff"],
        question["since"],
        question["orgs"],
    )
    args = {"at": at, "org_ids": orgs, "diff_from": diff, "anomalies_since": since}
    expected = access_state(store, kind, **args, use_checkpoints=False).as_dict()
    assert access_state(store, kind, **args).as_dict() == expected
    start = diff or since or _at(1, 0)
    period = {"since": start, "until": at, "generated_at": "now", "org_ids": orgs, "keep": 5}
    reference = report_data(store, **period, use_checkpoints=False)
    resumed = report_data(store, **period)
    assert resumed.as_dict() == reference.as_dict()
    assert resumed.labels == reference.labels
    # Only the first `keep` anomalies are held; all are counted.
    every = report_data(store, **{**period, "keep": None})
    assert resumed.anomaly_total == every.anomaly_total == len(every.anomalies)
    assert [a.as_dict() for a in resumed.anomalies] == [a.as_dict() for a in every.anomalies[:5]]
    for name, items in every.sections.items():  # the first 5 alike, with their changes
        assert [i.as_dict() for i in resumed.sections[name]] == [i.as_dict() for i in items[:5]]


QUESTION = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(KINDS),
        "at": st.builds(_at, st.integers(1, 5), st.integers(0, 23)),
        "diff": st.one_of(st.none(), st.builds(_at, st.integers(1, 2), st.integers(0, 23))),
        "since": st.one_of(st.none(), st.builds(_at, st.integers(1, 4), st.integers(0, 23))),
        "orgs": st.sampled_from(((), ("org-1",), ("org-2",), ORGS)),
    }
).filter(lambda q: (q["diff"] is None or q["diff"] <= q["at"]) and (q["since"] or "") <= q["at"])


def _files(store: AuditStore) -> list[Path]:
    return sorted(store.root.joinpath(*DIR).glob("*.*"))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(ENTRY, min_size=1, max_size=40),
    late=st.lists(ENTRY, max_size=6),
    question=QUESTION,
)
def test_resumed_answers_equal_the_full_replay(
    tmp_path_factory: pytest.TempPathFactory,
    specs: list[tuple[int, int, str, int, str]],
    late: list[tuple[int, int, str, int, str]],
    question: dict[str, Any],
) -> None:
    store = AuditStore(tmp_path_factory.mktemp("log") / "logs", writer_id="test")
    _import(store, _entries(specs))
    _same_answers(store, question)  # builds the checkpoints on the way
    _same_answers(store, question)  # and answers from them
    built = _files(store)
    if built:
        assert _verify_problems(store) == []  # incremental == from the first day
    # A late import into checkpointed days makes them stale: never used, rebuilt.
    if late:
        _import(store, _entries(late, first=len(specs)))
        _same_answers(store, question)


def _verify_problems(store: AuditStore) -> list[str]:
    from auditcli.auditor.checkpoints import check_checkpoints

    return [str(problem) for problem in check_checkpoints(store)]


# ----------------------------------------------------------------------------- damage
SCENARIO = [
    (1, 3600, "org_admin_added", 0, "org-1"),
    (1, 7200, "user_added", 1, "org-1"),
    (2, 3600, "org_admin_added", 0, "org-1"),  # a duplicate grant: an anomaly
    (2, 7200, "team_created", 0, "org-2"),
    (2, 9000, "user_added_to_team", 2, "org-2"),
    (3, 3600, "org_admin_removed", 1, "org-1"),  # never granted: an anomaly
    (3, 5000, "user_removed", 0, "org-1"),
    (4, 3600, "org_admin_added", 2, "org-1"),
]
QUESTIONS = [
    {"kind": kind, "at": _at(4, 12), "diff": diff, "since": None, "orgs": ()}
    for kind in ("admins", "teams", "users")
    for diff in (None, _at(3, 0))
]


@pytest.fixture
def built(tmp_path: Path) -> AuditStore:
    store = AuditStore(tmp_path / "logs", writer_id="test")
    _import(store, _entries(SCENARIO))
    for question in QUESTIONS:
        _same_answers(store, question)
    names = [path.name for path in _files(store)]
    # A report's summaries are written for the whole days of its period (not the 4th: the
    # reports end at noon).
    assert names == [
        f"2026-01-0{day}.{part}"
        for day in (1, 2, 3, 4)
        for part in ("events", "members", "state", "summary")
        if part != "summary" or day < 4
    ]
    return store


def _still_right(store: AuditStore) -> None:
    for question in QUESTIONS:
        _same_answers(store, question)


def test_deleting_checkpoints_loses_nothing(built: AuditStore) -> None:
    before = {path.name: path.read_bytes() for path in _files(built)}
    for name in (
        "2026-01-02.state",
        "2026-01-01.events",
        "2026-01-03.events",
        "2026-01-02.summary",
    ):
        built.root.joinpath(*DIR, name).unlink()
    _still_right(built)
    assert {path.name: path.read_bytes() for path in _files(built)} == before  # rebuilt alike


def _flipped(content: bytes, at: int) -> bytes:
    return content[:at] + bytes([content[at] ^ 1]) + content[at + 1 :]


@pytest.mark.parametrize("name", ["2026-01-03.state", "2026-01-02.events"])
def test_a_half_written_or_garbled_checkpoint_is_never_used(built: AuditStore, name: str) -> None:
    """Each part is checked by its own digest when read: a garbled part is never used (and
    rebuilt by the first question that needs it), nor reported as forged by verify."""
    path = built.root.joinpath(*DIR, name)
    whole = path.read_bytes()
    header = whole.index(b"{")  # the header line; the parts follow it, the last one at the end
    for damaged in (
        whole[: len(whole) // 2],
        _flipped(whole, len(whole) - 1),
        _flipped(whole, header + 2),
        _flipped(whole, 20),  # the header's digest
        b"",
    ):
        path.write_bytes(damaged)
        assert _verify_problems(built) == []
        _still_right(built)
        checkpoints = Checkpoints(built)
        if name.endswith(".state"):
            assert checkpoints.point("2026-01-04") is not None  # reads every part
        else:
            assert checkpoints.events("2026-01-02", KINDS) is not None
        assert path.read_bytes() == whole  # rebuilt


def test_a_checkpoint_of_the_previous_format_is_read_and_rewritten(built: AuditStore) -> None:
    """A file written by the previous version (one digest over the whole file) is still used,
    rewritten in the current format when read, and checked by verify until then."""
    current = {path: path.read_bytes() for path in _files(built)}
    for path, content in current.items():
        path.write_bytes(_old_format(content))
    assert _verify_problems(built) == []
    _forge_old(built.root.joinpath(*DIR, "2026-01-01.state"))
    assert _verify_problems(built) == [
        f"{DIR[0]}/{DIR[1]}/2026-01-01.state: forged checkpoint: differs from a replay of the "
        "log it says it was built from; it is derived data: delete it (it is rebuilt when needed)"
    ]
    built.root.joinpath(*DIR, "2026-01-01.state").write_bytes(
        _old_format(current[built.root.joinpath(*DIR, "2026-01-01.state")])
    )
    _still_right(built)
    assert (
        history(built, target_ids=("u-2",)).as_dict()
        == history(built, target_ids=("u-2",), use_index=False).as_dict()
    )
    # Every file the questions read is now as the current version writes it; the first day's
    # state (no question resumes from it) is still in the previous format.
    old = [path.name for path in _files(built) if path.read_bytes() != current[path]]
    assert old == ["2026-01-01.state"]
    assert built.root.joinpath(*DIR, old[0]).read_bytes().startswith(b"AUDITCKPT2\n")
    assert _verify_problems(built) == []


def _parts_of(content: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The header and the compressed parts of a checkpoint file of the current format."""
    prefix = content.index(b"\n", content.index(b"\n") + 1) + 1
    newline = content.index(b"\n", prefix)
    header = orjson.loads(content[prefix:newline])
    body = content[newline + 1 :]
    where = header.pop("parts")
    return header, {name: body[at : at + size] for name, (at, size, _) in where.items()}


def _old_format(content: bytes) -> bytes:
    """The same checkpoint as the previous version wrote it: the magic, one SHA-256 of the
    rest, the header naming where each part is, the parts."""
    header, blobs = _parts_of(content)
    where, at = {}, 0
    for name, blob in blobs.items():
        where[name], at = [at, len(blob)], at + len(blob)
    rest = orjson.dumps({**header, "parts": where}) + b"\n" + b"".join(blobs.values())
    return b"AUDITCKPT2\n" + hashlib.sha256(rest).hexdigest().encode() + b"\n" + rest


def _forge_old(path: Path) -> None:
    """An old-format file whose admins part is emptied, with a matching digest."""
    content = path.read_bytes()
    rest = content[len(b"AUDITCKPT2\n") + 65 :]
    newline = rest.index(b"\n")
    header, body = orjson.loads(rest[:newline]), rest[newline + 1 :]
    parts = {}
    for name, (at, size) in header.pop("parts").items():
        parts[name] = orjson.loads(zlib.decompress(body[at : at + size]))
    parts["admins"]["table"].clear()
    blobs = {name: zlib.compress(orjson.dumps(value), 1) for name, value in parts.items()}
    where, at = {}, 0
    for name, blob in blobs.items():
        where[name], at = [at, len(blob)], at + len(blob)
    rest = orjson.dumps({**header, "parts": where}) + b"\n" + b"".join(blobs.values())
    path.write_bytes(b"AUDITCKPT2\n" + hashlib.sha256(rest).hexdigest().encode() + b"\n" + rest)


def test_a_late_import_into_a_checkpointed_day_is_seen(built: AuditStore) -> None:
    before = access_state(built, "admins", at=_at(4, 12))
    assert [row["userId"] for row in before.rows] == ["u-3"]  # u-1 left on day 3
    # Day 3 now grants u-1 again after that: the checkpoints from day 3 on are stale.
    _import(built, _entries([(3, 9000, "org_admin_added", 0, "org-1")], first=100))
    after = access_state(built, "admins", at=_at(4, 12))
    assert [row["userId"] for row in after.rows] == ["u-1", "u-3"]
    _still_right(built)


def _forge(path: Path, part: str, change: Any) -> None:
    """Rewrite one part of a checkpoint with `change` applied, with a matching digest: what
    anyone who can write the log directory can do (the format is in `_encode`)."""
    header, blobs = _parts_of(path.read_bytes())
    value = orjson.loads(zlib.decompress(blobs[part]))
    change(value)
    blobs[part] = zlib.compress(orjson.dumps(value))
    where, at = {}, 0
    for name, blob in blobs.items():
        where[name], at = [at, len(blob), hashlib.sha256(blob).hexdigest()], at + len(blob)
    line = orjson.dumps({**header, "parts": where}) + b"\n"
    prefix = b"AUDITCKPT3\n" + hashlib.sha256(line).hexdigest().encode() + b" %010d\n" % len(line)
    path.write_bytes(prefix + line + b"".join(blobs.values()))


def test_verify_reports_a_forged_checkpoint(built: AuditStore) -> None:
    runner = CliRunner()
    verify = runner.invoke(app, ["-d", str(built.root), "verify"])
    assert verify.exit_code == 0, verify.output
    # The admin granted on day 1 is erased from the state at the end of day 3.
    _forge(
        built.root.joinpath(*DIR, "2026-01-03.state"),
        "admins",
        lambda part: part["table"].clear(),
    )
    verify = runner.invoke(app, ["-d", str(built.root), "verify"])
    assert verify.exit_code == 5
    assert "_index/auditor/2026-01-03.state" in verify.output
    assert "forged checkpoint" in verify.output
    # A verify of the period holding it reports it too; one of another period does not.
    period = runner.invoke(app, ["-d", str(built.root), "verify", "--since", "2026-01-03"])
    assert period.exit_code == 5 and "forged checkpoint" in period.output
    assert "2026-01-03.state" not in _period_problems(built, "2026-01-01", "2026-01-02")
    # Deleting it loses nothing: the next question rebuilds it.
    built.root.joinpath(*DIR, "2026-01-03.state").unlink()
    _still_right(built)
    assert runner.invoke(app, ["-d", str(built.root), "verify"]).exit_code == 0


def test_a_report_says_which_derived_data_it_did_not_check(built: AuditStore) -> None:
    """The report's integrity section checks the entries, not the checkpoints and line
    indexes it read through: it names them and the verify that checks them, which does."""
    _forge(
        built.root.joinpath(*DIR, "2026-01-03.state"),
        "admins",
        lambda part: part["table"].clear(),
    )
    runner = CliRunner()
    args = ["--since", "2026-01-04", "--until", "2026-01-04", "-o", "-", "-f", "md"]
    report = runner.invoke(app, ["-d", str(built.root), "report", *args])
    assert report.exit_code == 0, report.output
    assert "**Integrity of the period:** verified \\(unsealed\\)" in report.output
    assert (
        "derived data not checked here: the report resumed from the checkpoint of 2026-01-03,"
        " counted 1 day from its summary and events checkpoint and read through the line"
        " indexes, which \\`audit verify\\` rebuilds and compares"
    ) in report.output
    verify = runner.invoke(app, ["-d", str(built.root), "verify"])
    assert verify.exit_code == 5 and "2026-01-03.state" in verify.output


def _period_problems(store: AuditStore, first: str, last: str) -> str:
    from auditcli.auditor.checkpoints import check_checkpoints

    return "\n".join(str(p) for p in check_checkpoints(store, first, last))


def test_a_planted_checkpoint_directory_is_never_followed(
    built: AuditStore, tmp_path: Path
) -> None:
    directory = built.root.joinpath(*DIR)
    for path in _files(built):
        path.unlink()
    directory.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    directory.symlink_to(elsewhere)
    _still_right(built)
    assert list(elsewhere.iterdir()) == []  # nothing written through the link
    verify = CliRunner().invoke(app, ["-d", str(built.root), "verify"])
    assert verify.exit_code == 5 and "_index/auditor" in verify.output


def test_a_symlinked_checkpoint_is_never_read(built: AuditStore, tmp_path: Path) -> None:
    path = built.root.joinpath(*DIR, "2026-01-03.state")
    decoy = tmp_path / "decoy"
    decoy.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(decoy)
    _forge(decoy, "admins", lambda part: part["table"].clear())
    _still_right(built)  # the link is not read (the answer is the replay's)


def test_the_cli_lists_the_window_and_counts_all(built: AuditStore) -> None:
    runner = CliRunner()
    args = ["-d", str(built.root), "state", "admins", "--at", _at(4, 12), "-f", "json"]
    every = orjson.loads(runner.invoke(app, [*args, "--anomalies-since", "all"]).output)
    assert every["anomalyTotal"] == len(every["anomalies"]) == 2
    recent = orjson.loads(runner.invoke(app, [*args, "--anomalies-since", "2d"]).output)
    assert recent["anomaliesSince"] == _at(2, 12)
    assert (recent["anomalyTotal"], len(recent["anomalies"])) == (2, 1)
    table = runner.invoke(app, [*args[:-2], "-f", "table", "--anomalies-since", "2d"])
    assert "2 anomalies about admins up to" in table.output
    bad = runner.invoke(app, [*args, "--anomalies-since", "someday"])
    assert bad.exit_code == 2 and "--anomalies-since" in bad.output


def test_no_checkpoint_for_today_or_a_damaged_day(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "logs", writer_id="test")
    _import(store, _entries(SCENARIO))
    damaged = next(store.root.joinpath("date=2026-01-03").glob("*.jsonl"))
    with damaged.open("ab") as file:
        file.write(b"not an entry\n")
    question = {"kind": "admins", "at": _at(4, 12), "diff": None, "since": None, "orgs": ()}
    _same_answers(store, question)
    result = access_state(store, "admins", at=_at(4, 12))
    assert any("not an entry" in str(p) for p in result.problems)  # still reported
    names = [p.name for p in _files(store)]
    assert [n for n in names if n.endswith(".state")][-1] == "2026-01-02.state"  # none from 3 on
    assert "2026-01-03.summary" not in names  # a damaged day is read by a report, never summarised
    os.truncate(damaged, damaged.stat().st_size - len(b"not an entry\n"))
    _same_answers(store, question)
    assert [p.name for p in _files(store) if p.suffix == ".state"][-1] == "2026-01-04.state"


# ----------------------------------------------------------------------------- history
def _naive_timeline(store: AuditStore, target: str) -> list[tuple[str, str | None, list[str]]]:
    """(id, via, anomaly kinds) of a resource's timeline from a replay of every entry."""
    replay, found = Replay(), []
    for line in QueryEngine(store, Filters(), order="asc").stream():
        entry = entry_of(line)
        seen = len(replay.anomalies)
        changes = replay.apply(entry)
        user = ((entry.get("metadata") or {}).get("input") or {}).get("userId")
        hit, via = entry["targetId"] == target, None
        if not hit and entry["action"] in TEAM_MEMBER_ACTIONS and user == target:
            hit, via = True, f"metadata.input.userId = {target}"
        elif (
            not hit
            and entry["action"] == "team_deleted"
            and any(c.field == "members" and target in (c.removed or ()) for c in changes)
        ):
            hit, via = True, f"team deleted with {target} in it"
        if hit:
            found.append((entry["id"], via, [a.kind for a in replay.anomalies[seen:]]))
    return found


def _same_history(store: AuditStore, target: str, orgs: tuple[str, ...]) -> None:
    """The history read through the per-target index equals the one scanning every day; with
    every organization, its items and anomalies are those of a replay of every entry."""
    args: dict[str, Any] = {"target_ids": (target,), "org_ids": orgs}
    indexed = history(store, **args)
    assert indexed.as_dict() == history(store, **args, use_index=False).as_dict()
    if not orgs:
        got = [
            (
                item.entry["id"],
                item.via,
                [a.kind for a in item.anomalies if a.kind != "stored out of time order"],
            )
            for item in indexed.items
        ]
        assert got == _naive_timeline(store, target)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(ENTRY, min_size=1, max_size=40),
    late=st.lists(ENTRY, max_size=6),
    target=st.sampled_from((*USERS, *TEAMS, *ROLES)),
    orgs=st.sampled_from(((), ("org-1",))),
)
def test_history_from_the_per_target_index_equals_the_scan(
    tmp_path_factory: pytest.TempPathFactory,
    specs: list[tuple[int, int, str, int, str]],
    late: list[tuple[int, int, str, int, str]],
    target: str,
    orgs: tuple[str, ...],
) -> None:
    store = AuditStore(tmp_path_factory.mktemp("log") / "logs", writer_id="test")
    _import(store, _entries(specs))
    _same_history(store, target, orgs)  # builds the per-target index on the way
    assert {p.name[:10] for p in _files(store) if p.suffix == ".members"} == set(store.days())
    _same_history(store, target, orgs)  # and answers from it
    assert _verify_problems(store) == []
    if late:  # stale from the late days on: never used, rebuilt
        _import(store, _entries(late, first=len(specs)))
        _same_history(store, target, orgs)


@pytest.mark.parametrize("user", ['u"1', "u\\1", "ü-1", 'x":["u-1'])
def test_history_of_a_user_whose_id_json_escapes(tmp_path: Path, user: str) -> None:
    """The per-target index is looked up by the user's JSON text before it is parsed: an id
    that JSON escapes is found, and one that holds another's JSON text hides nothing."""
    entries = _entries(
        [(1, 60, "team_created", 0, "org-1"), (1, 120, "user_added_to_team", 0, "org-1")]
        + [(day, 60, "user_added_to_team", 2, "org-1") for day in (2, 3)]
    )
    for entry in entries[1:3]:  # days 1 and 2 name the odd user; day 3 names u-2
        entry["metadata"]["input"]["userId"] = user
    store = AuditStore(tmp_path / "logs", writer_id="test")
    _import(store, entries)
    for target in (user, "u-1", "u-2"):
        _same_history(store, target, ())  # builds the per-target index
        indexed = history(store, target_ids=(target,))
        assert indexed.as_dict() == history(store, target_ids=(target,), use_index=False).as_dict()
    odd = [item.entry["id"] for item in history(store, target_ids=(user,)).items]
    assert odd == ["e0001", "e0002"]


def test_a_forged_per_target_index_is_reported_and_deleting_it_loses_nothing(
    built: AuditStore,
) -> None:
    path = built.root.joinpath(*DIR, "2026-01-02.members")
    members = _parts_of(path.read_bytes())[1]["members"]
    assert orjson.loads(zlib.decompress(members)) == {"u-2": ["t-1"]}
    expected = history(built, target_ids=("u-2",)).as_dict()
    vias = [item.get("via") for item in expected["items"]]
    assert vias == [None, "metadata.input.userId = u-2", None]  # added, into t-1, admin
    _forge(path, "members", lambda part: part.clear())  # hides u-2's membership
    verify = CliRunner().invoke(app, ["-d", str(built.root), "verify"])
    assert verify.exit_code == 5
    assert "_index/auditor/2026-01-02.members" in verify.output
    assert "forged checkpoint" in verify.output
    path.unlink()
    assert history(built, target_ids=("u-2",)).as_dict() == expected
    assert CliRunner().invoke(app, ["-d", str(built.root), "verify"]).exit_code == 0


def test_history_builds_a_missing_events_checkpoint_only_from_the_day_before(
    built: AuditStore,
) -> None:
    """A day's events (its entries stored out of order) missing: `history` replays that one
    day from the day before's checkpoint, never more; without one it reads the day."""
    before = {path.name: path.read_bytes() for path in _files(built)}
    expected = history(built, target_ids=("u-3",)).as_dict()
    assert [item["entry"]["createdAt"][:10] for item in expected["items"]] == ["2026-01-04"]
    built.root.joinpath(*DIR, "2026-01-04.events").unlink()
    assert history(built, target_ids=("u-3",)).as_dict() == expected
    after = {path.name: path.read_bytes() for path in _files(built)}
    assert after == before  # rebuilt alike, from 2026-01-03.state
    for name in ("2026-01-03.state", "2026-01-04.events"):
        built.root.joinpath(*DIR, name).unlink()
    assert history(built, target_ids=("u-3",)).as_dict() == expected
    after = {path.name for path in _files(built)}
    assert after == set(before) - {"2026-01-03.state", "2026-01-04.events"}  # nothing built


def test_history_reports_a_damaged_day(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "logs", writer_id="test")
    _import(store, _entries(SCENARIO))
    damaged = next(store.root.joinpath("date=2026-01-03").glob("*.jsonl"))
    with damaged.open("ab") as file:
        file.write(b"not an entry\n")
    for use_index in (True, False):
        result = history(store, target_ids=("u-1",), use_index=use_index)
        assert [item.entry["id"] for item in result.items] == ["e0000", "e0002", "e0006"]
        assert any("not an entry" in str(p) for p in result.problems)
    assert not store.root.joinpath(*DIR, "2026-01-03.members").exists()  # none for it
