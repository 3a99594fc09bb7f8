"""Hypothesis round trips: any valid entry recorded is queried back equal, through the Python
API (also when filtered by each of its own field values) and through the CLI's JSON."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from auditcli import AuditStore, Filters, QueryEngine, entry_of
from auditcli.catalog import BUILTIN_ACTIONS, TARGETS
from auditcli.cli import app
from auditcli.model import SEED_FIELDS
from auditcli.timeparse import format_utc

# Any Unicode text JSON can carry: no lone surrogates (not UTF-8); controls, quotes, backslashes,
# bidi characters and astral planes included on purpose.
TEXT = st.characters(exclude_categories=("Cs",))
ID = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@-]{0,40}\Z")
REF = st.text(TEXT, min_size=1, max_size=40)
EMAIL = st.from_regex(r"\A[a-z0-9._%+-]{1,12}@[a-z0-9-]{1,12}\.[a-z]{2,6}\Z")
STAMP = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
).map(format_utc)
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(TEXT, max_size=20)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(TEXT, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
METADATA = st.none() | st.dictionaries(st.text(TEXT, max_size=10), JSON_VALUE, max_size=5)


@st.composite
def full_entries(draw: st.DrawFn) -> dict[str, Any]:
    """A complete valid entry: every one of the 13 fields given."""
    spec = draw(st.sampled_from(BUILTIN_ACTIONS))
    return {
        "id": draw(ID),
        "description": draw(st.text(TEXT, max_size=60)),
        "actorId": draw(REF),
        "actorName": draw(st.none() | st.text(TEXT, max_size=30)),
        "actorEmail": draw(st.none() | EMAIL),
        "action": spec.action,
        "actionDisplayName": draw(
            st.just(spec.display_name) | st.text(TEXT, min_size=1, max_size=30)
        ),
        "target": draw(st.sampled_from(TARGETS)),
        "targetId": draw(REF),
        "metadata": draw(METADATA),
        "organizationId": draw(REF),
        "teamId": draw(st.none() | REF),
        "createdAt": draw(STAMP),
    }


@st.composite
def partial_entries(draw: st.DrawFn) -> dict[str, Any]:
    """A valid entry with some generated fields left out (id, createdAt, description, …)."""
    entry = draw(full_entries())
    optional = ["id", "createdAt", "description", "actionDisplayName", "target", "actorName",
                "actorEmail", "metadata", "teamId"]  # fmt: skip
    if entry["action"] == "login":
        optional.append("targetId")
    for name in draw(st.lists(st.sampled_from(optional), unique=True)):
        del entry[name]
    return entry


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(entries=st.lists(full_entries(), min_size=1, max_size=4, unique_by=lambda e: e["id"]))
def test_full_entries_come_back_equal_through_the_api(entries: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = AuditStore(tmp, writer_id="prop")
        for entry in entries:
            assert store.record(entry) == entry
        total, lines = QueryEngine(store, Filters(), order="asc").page(limit=100)
        got = [entry_of(line) for line in lines]
        assert total == len(entries)
        assert got == sorted(entries, key=lambda e: (e["createdAt"], e["id"]))
        assert all(list(e) == list(SEED_FIELDS) for e in got)
        # Each entry is found by each of its own values, and by its exact time window: the
        # byte-level matcher must not be fooled by text that looks like JSON keys.
        for entry in entries:
            for filters in (
                Filters(actions=(entry["action"],)),
                Filters(targets=(entry["target"],)),
                Filters(actor_ids=(entry["actorId"],)),
                Filters(target_ids=(entry["targetId"],)),
                Filters(org_ids=(entry["organizationId"],)),
                Filters(team_ids=(entry["teamId"],)) if entry["teamId"] else Filters(),
                Filters(since=entry["createdAt"], until=entry["createdAt"]),
            ):
                found = [entry_of(line) for line in QueryEngine(store, filters).stream()]
                assert entry in found, filters
                for other in found:
                    assert _matches(other, filters), (other, filters)


def _matches(entry: dict[str, Any], filters: Filters) -> bool:
    by_field = filters.by_field()
    if any(entry[name] not in values for name, values in by_field.items()):
        return False
    if filters.since and entry["createdAt"] < filters.since:
        return False
    return not (filters.until and entry["createdAt"] > filters.until)


@SETTINGS
@given(data=partial_entries())
def test_partial_entries_come_back_as_recorded(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = AuditStore(tmp, writer_id="prop")
        recorded = store.record(data)
        for name, value in data.items():
            assert recorded[name] == value
        [line] = QueryEngine(store, Filters()).stream()
        assert entry_of(line) == recorded


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=full_entries())
def test_cli_record_then_query_json_gives_it_back(entry: dict[str, Any]) -> None:
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        recorded = runner.invoke(app, ["-d", tmp, "record", "-"], input=json.dumps(entry))
        assert recorded.exit_code == 0, recorded.stderr
        assert recorded.stdout == entry["id"] + "\n"
        queried = runner.invoke(app, ["-d", tmp, "query", "--format", "json"])
        assert queried.exit_code == 0, queried.stderr
        assert json.loads(queried.stdout) == {"total": 1, "limit": 20, "offset": 0, "logs": [entry]}
        by_actor = runner.invoke(
            app, ["-d", tmp, "query", "-f", "jsonl", "--actor-id", entry["actorId"]]
        )
        assert [json.loads(line) for line in by_actor.stdout.split("\n")[:-1]] == [entry]
