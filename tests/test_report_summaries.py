"""The report's per-day summaries (`_index/auditor/DAY.summary`): a report counted from them
equals one that reads every day (`use_checkpoints=False`), whatever the log (hypothesis: days
stored out of time order, late imports, organizations, table sizes), after a redaction, and
whatever happened to them: missing, forged with a matching digest (reported by `audit verify`,
and never a crash), or of another shape."""

from __future__ import annotations

import contextlib
import json
import mmap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_checkpoints import DIR, ENTRY, ORGS, _entries, _files, _forge, _import
from typer.testing import CliRunner

from auditcli import AuditStore, report
from auditcli.auditor import report_data
from auditcli.cli import app

PERIODS = (
    ("2026-01-01T00:00:00.000Z", "2026-01-04T23:59:59.999Z"),  # whole days only
    ("2026-01-02T00:00:00.000Z", "2026-01-03T23:59:59.999Z"),  # resumed, whole days
    ("2026-01-01T06:00:00.000Z", "2026-01-04T12:00:00.000Z"),  # partial first and last day
    ("2026-01-02T00:00:00.000Z", "2026-01-09T23:59:59.999Z"),  # ending after the last entry
)


def _report(store: AuditStore, period: tuple[str, str], **options: Any) -> dict[str, Any]:
    since, until = period
    data = report_data(store, since=since, until=until, generated_at="now", **options)
    return {**data.as_dict(), "labels": data.labels, "summarised": data.summarised}


def _same(store: AuditStore, period: tuple[str, str], **options: Any) -> int:
    """The report from the summaries equals the one reading every day; how many days it
    counted from summaries."""
    expected = _report(store, period, use_checkpoints=False, **options)
    got = _report(store, period, **options)
    summarised = got.pop("summarised")
    assert expected.pop("summarised") == 0
    assert got == expected
    return int(summarised)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(ENTRY, min_size=1, max_size=60),
    late=st.lists(ENTRY, max_size=6),
    period=st.sampled_from(PERIODS),
    orgs=st.sampled_from(((), ("org-1",), ORGS)),
    keep=st.sampled_from((1, 3, None)),
)
def test_a_report_from_summaries_equals_reading_every_day(
    tmp_path_factory: pytest.TempPathFactory,
    specs: list[tuple[int, int, str, int, str]],
    late: list[tuple[int, int, str, int, str]],
    period: tuple[str, str],
    orgs: tuple[str, ...],
    keep: int | None,
) -> None:
    store = AuditStore(tmp_path_factory.mktemp("log") / "logs", writer_id="test")
    _import(store, _entries(specs))  # in the order given: days stored out of time order
    options = {"org_ids": orgs, "keep": keep}
    _same(store, period, **options)  # builds the checkpoints and summaries on the way
    assert _same(store, period, **options) >= 1 or not _whole_days_with_entries(store, period)
    if late:  # a late import makes the summaries of its days stale: never used, rebuilt
        _import(store, _entries(late, first=len(specs)))
        _same(store, period, **options)


def _whole_days_with_entries(store: AuditStore, period: tuple[str, str]) -> list[str]:
    since, until = period
    return [
        day
        for day in store.days()
        if since <= f"{day}T00:00:00.000Z" and f"{day}T23:59:59.999Z" <= until
    ]


SCENARIO = [
    (1, 3600, "org_admin_added", 0, "org-1"),
    (1, 7200, "user_added", 1, "org-1"),
    (1, 8000, "login", 1, "org-1"),
    (2, 3600, "org_admin_added", 0, "org-1"),  # a duplicate grant: an anomaly
    (2, 7200, "team_created", 0, "org-2"),
    (2, 600, "login", 2, "org-2"),  # stored after a later one: out of time order
    (2, 9000, "user_added_to_team", 2, "org-2"),
    (3, 3600, "org_admin_removed", 1, "org-1"),  # never granted: an anomaly
    (3, 4000, "login", 3, "org-1"),
    (3, 5000, "user_removed", 0, "org-1"),
    (4, 3600, "org_admin_added", 2, "org-1"),
]
WHOLE = PERIODS[0]


@pytest.fixture
def summarised(tmp_path: Path) -> AuditStore:
    store = AuditStore(tmp_path / "logs", writer_id="test")
    _import(store, _entries(SCENARIO))
    assert _same(store, WHOLE, keep=2) == 4
    return store


def _summary(store: AuditStore, day: str) -> Path:
    return store.root.joinpath(*DIR, f"{day}.summary")


def test_deleting_summaries_loses_nothing(summarised: AuditStore) -> None:
    before = {path.name: path.read_bytes() for path in _files(summarised)}
    _summary(summarised, "2026-01-02").unlink()
    assert _same(summarised, WHOLE, keep=2) == 4
    assert {path.name: path.read_bytes() for path in _files(summarised)} == before  # alike


def test_a_forged_summary_is_reported_by_verify(summarised: AuditStore) -> None:
    """Whoever can write the log directory can forge a summary with a matching digest: a
    report believes it until `audit verify`, which rebuilds it from the day's lines, reports it
    (exit 5, naming the file); deleting it restores the answer."""
    runner = CliRunner()
    assert runner.invoke(app, ["-d", str(summarised.root), "verify"]).exit_code == 0

    def hide_a_grant(summary: dict[str, Any]) -> None:
        summary['"org-1"']["actions"]["org_admin_added"] -= 1

    _forge(_summary(summarised, "2026-01-02"), "summary", hide_a_grant)
    verify = runner.invoke(app, ["-d", str(summarised.root), "verify"])
    assert verify.exit_code == 5, verify.output
    assert "forged checkpoint" in verify.output and "2026-01-02.summary" in verify.output
    period = runner.invoke(app, ["-d", str(summarised.root), "verify", "--since", "2026-01-02"])
    assert period.exit_code == 5 and "2026-01-02.summary" in period.output
    _summary(summarised, "2026-01-02").unlink()
    assert _same(summarised, WHOLE, keep=2) == 4
    assert runner.invoke(app, ["-d", str(summarised.root), "verify"]).exit_code == 0


@pytest.mark.parametrize(
    "change",
    [
        lambda summary: summary.update({'"org-1"': {"actions": {"login": "many"}, "actors": {}}}),
        lambda summary: summary.update({'"org-1"': []}),
        lambda summary: summary['"org-1"']["actors"].update({"u-1": [1, 0, "x"]}),
    ],
    ids=["count not a number", "not an object", "short actor row"],
)
def test_a_summary_of_another_shape_is_never_used(summarised: AuditStore, change: Any) -> None:
    """A forged summary that is not what a summary holds is read around (the day is read
    instead), never a crash or a wrong count."""
    _forge(_summary(summarised, "2026-01-03"), "summary", change)
    assert _same(summarised, WHOLE, keep=2) == 3


@pytest.mark.parametrize(
    ("part", "change"),
    [
        ("admins", lambda rows: rows.append(["duplicate grant"])),
        ("admins", lambda rows: rows.append("x")),
        ("storage", lambda rows: rows.append(["stored out of time order", [1], "", "", "", ""])),
        ("users", lambda rows: rows.append(["k", "cite", "detail", "u-1", "users", "org-1"])),
    ],
    ids=["short row", "not a row", "short citation", "citation not a list"],
)
def test_an_events_checkpoint_of_another_shape_is_never_used(
    summarised: AuditStore, part: str, change: Any
) -> None:
    """A forged events checkpoint (matching digest) whose rows are not anomaly rows is
    treated as missing and rebuilt: the report equals reading every day, never a crash."""
    path = summarised.root.joinpath(*DIR, "2026-01-02.events")
    _forge(path, part, change)
    assert _same(summarised, WHOLE) == 4
    _forge(path, part, change)
    assert _same(summarised, WHOLE, keep=1) == 4


def test_a_stale_summary_is_never_used(summarised: AuditStore) -> None:
    """A late import into a summarised day changes what its summary was built from: it is
    rebuilt, and the report counts the late entry."""
    before = _summary(summarised, "2026-01-02").read_bytes()
    _import(summarised, _entries([(2, 100, "org_admin_removed", 0, "org-1")], first=50))
    assert _same(summarised, WHOLE, keep=2) == 4
    assert _summary(summarised, "2026-01-02").read_bytes() != before
    totals = _report(summarised, WHOLE, keep=2)["totals"]
    assert totals["System admin revocations"] == 2


def test_a_redacted_day_is_summarised_again(tmp_path: Path) -> None:
    """`audit redact` rewrites the day's file: its summary is rebuilt from the redacted lines
    (the actor's name in the busiest actors is the redacted one), equal to reading the day."""
    runner = CliRunner()
    root, key = tmp_path / "logs", tmp_path / "seal.key"
    assert runner.invoke(app, ["init", "--redactable", str(root)]).exit_code == 0
    assert (
        runner.invoke(app, ["-d", str(root), "keys", "generate", "--out", str(key)]).exit_code == 0
    )
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in _entries(SCENARIO)))
    assert runner.invoke(app, ["-d", str(root), "import", str(source)]).exit_code == 0
    store = AuditStore(root)
    assert _same(store, WHOLE, keep=2) == 4
    before = {actor["actorId"]: actor["actor"] for actor in _report(store, WHOLE)["topActors"]}
    redact = [
        *("-d", str(root), "redact", "--actor-id", "u-2", "--reason", "request 7"),
        *("--signing-key", str(key)),
    ]
    result = runner.invoke(app, redact)
    assert result.exit_code == 0, result.output
    assert _same(store, WHOLE, keep=2) >= 4
    after = {actor["actorId"]: actor["actor"] for actor in _report(store, WHOLE)["topActors"]}
    assert before["u-2"] != after["u-2"] and "example.com" not in after["u-2"]


def test_a_checkpoint_that_cannot_be_rebuilt_falls_back_to_reading_every_day(
    summarised: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state at the end of a summarised day is needed to read the partial day after it;
    when its checkpoint is gone and cannot be written again (a read-only store), the report
    reads every day of its period instead: slower, the same answer."""
    from auditcli.auditor import checkpoints

    store_root = summarised.root.joinpath(*DIR)
    store_root.joinpath("2026-01-03.state").unlink()
    monkeypatch.setattr(checkpoints, "_save", lambda directory, name, content: False)
    partial = ("2026-01-01T00:00:00.000Z", "2026-01-04T12:00:00.000Z")
    assert _same(summarised, partial, keep=1) == 0  # fell back: no day counted from a summary
    monkeypatch.undo()
    assert _same(summarised, partial, keep=1) == 3


def _delete_second_line(data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[:1] + lines[2:])  # a middle line: a chain break


def _rename_an_action(data: bytes) -> bytes:
    return data.replace(b'"org_admin_removed"', b'"org_admin_rxmoved"')  # same size


@pytest.mark.parametrize("through_a_mapping", [False, True], ids=["in place", "mapped"])
def test_an_entry_changed_while_a_report_runs_is_never_counted_as_verified(
    summarised: AuditStore, monkeypatch: pytest.MonkeyPatch, through_a_mapping: bool
) -> None:
    """The report's integrity status must cover the entries it counted. An entry changed in
    the log while the report runs (here: just after its integrity check, which runs first) is
    either counted as it was or the status says FAILED: never counted changed and stated
    verified. Also when the change is written through a shared mapping of a log file someone
    else can write, which leaves the file's identity as it was."""
    since, until = "2026-01-01T00:00:00.000Z", "2026-01-03T12:00:00.000Z"  # day 3 is read

    def counts() -> tuple[str, int, dict[str, int]]:
        got = report.build_report(summarised, since=since, until=until, generated_at="now")
        return got.integrity["status"], got.total, dict(got.by_action)

    honest = counts()
    assert honest[0].startswith("verified") and honest[2]["org_admin_removed"] == 1
    path = summarised.root / "date=2026-01-03" / "test.jsonl"
    original = path.read_bytes()
    change = _rename_an_action if through_a_mapping else _delete_second_line
    check = report.integrity_status
    with contextlib.ExitStack() as stack:
        if through_a_mapping:
            path.chmod(0o666)  # anyone may write it
            file = stack.enter_context(open(path, "r+b"))
            mapped = stack.enter_context(mmap.mmap(file.fileno(), 0))
            mapped[:] = original  # the first write to its page: the ctime is set now

        def then_change(*args: Any) -> dict[str, Any]:
            status = check(*args)
            if through_a_mapping:
                # The same page again: the ctime stays (until the kernel writes the page back).
                mapped[:] = change(original)
            else:
                path.write_bytes(change(original))
            return status

        monkeypatch.setattr(report, "integrity_status", then_change)
        got = counts()
    assert got[0] == "FAILED" or got[1:] == honest[1:]
    monkeypatch.undo()
    assert path.read_bytes() == change(original)
    after = counts()
    assert after[0] == "FAILED" and after[1:] != honest[1:]
