"""`audit query`: every filter and their combinations, every time syntax, ordering and
tie-breaks, pagination, `--all`, every format, every usage error (exit 2), partition pruning,
and the API's three example entries, end to end (real processes)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from auditcli import AuditStore, Filters, QueryEngine, entry_of
from auditcli.model import SEED_FIELDS
from auditcli.timeparse import format_utc, parse_bound

ACTIONS = ("login", "team_created", "role_updated", "user_added", "org_admin_added")
DISPLAY = {
    "login": "User Login",
    "team_created": "Team Created",
    "role_updated": "Role Updated",
    "user_added": "User Added",
    "org_admin_added": "System Admin Added",
}
TARGET = {
    "login": "USER",
    "team_created": "TEAM",
    "role_updated": "ROLE",
    "user_added": "USER",
    "org_admin_added": "USER",
}


def make_entries() -> list[dict[str, Any]]:
    """40 entries over 2026-03-01..05 with several actors, orgs, teams and actions. Entries 36-39
    share one createdAt (ties), and two sit on the edges of 2026-03-02."""
    entries = []
    for n in range(40):
        action = ACTIONS[n % 5]
        day = 1 + n % 5
        created = f"2026-03-{day:02d}T{n % 24:02d}:{n % 60:02d}:00.000Z"
        if n >= 36:
            created = "2026-03-04T12:00:00.000Z"
        entries.append(
            {
                "id": f"e-{(n * 7) % 40:02d}",  # ids not in time order
                "description": f"entry {n}",
                "actorId": f"user-{n % 4}",
                "actorName": f"User {n % 4}",
                "actorEmail": f"user{n % 4}@example.com",
                "action": action,
                "actionDisplayName": DISPLAY[action],
                "target": TARGET[action],
                "targetId": f"res-{n % 6}",
                "metadata": {"n": n} if n % 3 == 0 else None,
                "organizationId": f"org-{n % 2}",
                "teamId": f"team-{n % 3}" if n % 3 else None,
                "createdAt": created,
            }
        )
    entries[0]["createdAt"] = "2026-03-02T00:00:00.000Z"
    entries[1]["createdAt"] = "2026-03-02T23:59:59.999Z"
    entries[2]["createdAt"] = "2026-03-03T00:00:00.000Z"
    entries[3]["createdAt"] = "2026-03-01T23:59:59.999Z"
    return entries


ENTRIES = make_entries()


@pytest.fixture
def store(log_dir: Path) -> AuditStore:
    store = AuditStore(log_dir)
    store.append(ENTRIES)
    return store


def expected(
    *,
    actions=(),
    targets=(),
    actors=(),
    target_ids=(),
    teams=(),
    orgs=(),
    since=None,
    until=None,
    order="desc",
) -> list[dict[str, Any]]:
    """The reference answer: plain Python over ENTRIES."""

    def keep(e: dict[str, Any]) -> bool:
        return (
            (not actions or e["action"] in actions)
            and (not targets or e["target"] in targets)
            and (not actors or e["actorId"] in actors)
            and (not target_ids or e["targetId"] in target_ids)
            and (not teams or e["teamId"] in teams)
            and (not orgs or e["organizationId"] in orgs)
            and (since is None or e["createdAt"] >= since)
            and (until is None or e["createdAt"] <= until)
        )

    found = [e for e in ENTRIES if keep(e)]
    return sorted(found, key=lambda e: (e["createdAt"], e["id"]), reverse=order == "desc")


def query_json(cli, *args: str) -> dict[str, Any]:
    result = cli("query", "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def logs(cli, *args: str) -> list[dict[str, Any]]:
    return query_json(cli, "--limit", "100", *args)["logs"]


# ------------------------------------------------------------------------------- filters
FILTER_CASES = {
    "action": (["--action", "login"], {"actions": ("login",)}),
    "action-short": (["-a", "team_created"], {"actions": ("team_created",)}),
    "actions-or": (
        ["--action", "login", "--action", "role_updated"],
        {"actions": ("login", "role_updated")},
    ),
    "target": (["--target", "USER"], {"targets": ("USER",)}),
    "target-lowercase": (["--target", "team"], {"targets": ("TEAM",)}),
    "actor-id": (["--actor-id", "user-2"], {"actors": ("user-2",)}),
    "target-id": (["--target-id", "res-5"], {"target_ids": ("res-5",)}),
    "team-id": (["--team-id", "team-1"], {"teams": ("team-1",)}),
    "org-id": (["--org-id", "org-1"], {"orgs": ("org-1",)}),
    "since": (["--since", "2026-03-04T00:00:00Z"], {"since": "2026-03-04T00:00:00.000Z"}),
    "until": (["--until", "2026-03-02T00:00:00Z"], {"until": "2026-03-02T00:00:00.000Z"}),
    "gte-alias": (
        ["--created-at-gte", "2026-03-04T00:00:00Z"],
        {"since": "2026-03-04T00:00:00.000Z"},
    ),
    "lte-alias": (
        ["--created-at-lte", "2026-03-02T00:00:00Z"],
        {"until": "2026-03-02T00:00:00.000Z"},
    ),
    "action+actor": (
        ["--action", "login", "--actor-id", "user-0"],
        {"actions": ("login",), "actors": ("user-0",)},
    ),
    "target+org+team": (
        ["--target", "USER", "--org-id", "org-0", "--team-id", "team-2"],
        {"targets": ("USER",), "orgs": ("org-0",), "teams": ("team-2",)},
    ),
    "actions-or+window": (
        [
            "--action",
            "user_added",
            "--action",
            "org_admin_added",
            "--since",
            "2026-03-02",
            "--until",
            "2026-03-04",
        ],
        {
            "actions": ("user_added", "org_admin_added"),
            "since": "2026-03-02T00:00:00.000Z",
            "until": "2026-03-04T23:59:59.999Z",
        },
    ),
    "everything": (
        [
            "--action",
            "login",
            "--target",
            "USER",
            "--actor-id",
            "user-0",
            "--actor-id",
            "user-1",
            "--target-id",
            "res-0",
            "--org-id",
            "org-0",
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-05",
        ],
        {
            "actions": ("login",),
            "targets": ("USER",),
            "actors": ("user-0", "user-1"),
            "target_ids": ("res-0",),
            "orgs": ("org-0",),
            "since": "2026-03-01T00:00:00.000Z",
            "until": "2026-03-05T23:59:59.999Z",
        },
    ),
    "no-match": (
        ["--action", "login", "--target", "ROLE"],
        {"actions": ("login",), "targets": ("ROLE",)},
    ),
}


class TestFilters:
    @pytest.mark.parametrize("case", FILTER_CASES, ids=str)
    def test_filter_matches_the_reference(self, cli, store, case) -> None:
        args, wanted = FILTER_CASES[case]
        want = expected(**wanted)
        assert logs(cli, *args) == want
        assert query_json(cli, *args)["total"] == len(want)
        if case != "no-match":
            assert want, "a case that matches nothing proves little"

    def test_every_pair_of_single_filters_is_their_and(self, cli, store) -> None:
        singles = {
            "--action": ("login", "actions"),
            "--target": ("USER", "targets"),
            "--actor-id": ("user-1", "actors"),
            "--target-id": ("res-1", "target_ids"),
            "--team-id": ("team-1", "teams"),
            "--org-id": ("org-1", "orgs"),
        }
        for (a, (va, ka)), (b, (vb, kb)) in itertools.combinations(singles.items(), 2):
            got = logs(cli, a, va, b, vb)
            assert got == expected(**{ka: (va,), kb: (vb,)}), (a, b)

    def test_filter_values_are_exact_not_prefixes(self, cli, store) -> None:
        assert logs(cli, "--actor-id", "user") == []
        assert logs(cli, "--target-id", "res-") == []
        assert logs(cli, "--org-id", "org-10") == []

    def test_python_api_filters(self, store) -> None:
        filters = Filters(actions=("login",), org_ids=("org-0",)).check(store.catalog)
        total, lines = QueryEngine(store, filters).page(limit=100)
        got = [entry_of(line) for line in lines]
        assert got == expected(actions=("login",), orgs=("org-0",))
        assert total == len(got)


# ------------------------------------------------------------------------------- time syntax
class TestTimeSyntax:
    def test_day_edges_bare_date_includes_the_whole_day(self, cli, store) -> None:
        got = logs(cli, "--since", "2026-03-02", "--until", "2026-03-02")
        stamps = {e["createdAt"] for e in got}
        assert "2026-03-02T00:00:00.000Z" in stamps and "2026-03-02T23:59:59.999Z" in stamps
        assert "2026-03-03T00:00:00.000Z" not in stamps
        assert "2026-03-01T23:59:59.999Z" not in stamps
        assert got == expected(since="2026-03-02T00:00:00.000Z", until="2026-03-02T23:59:59.999Z")

    @pytest.mark.parametrize(
        "value",
        [
            "2026-03-02T00:00:00Z",
            "2026-03-02T00:00:00.000Z",
            "2026-03-02T02:00:00+02:00",
            "2026-03-01T19:00:00-05:00",
            "2026-03-02T00:00:00",  # no offset: UTC
            "2026-03-02T00:00",
            "2026-03-02 00:00:00",
            "@1772409600",  # 2026-03-02T00:00:00Z
            "2026-03-02",
        ],
    )
    def test_equivalent_spellings_of_one_instant(self, cli, store, value) -> None:
        want = expected(since="2026-03-02T00:00:00.000Z")
        assert logs(cli, "--since", value) == want
        # as an upper bound only the bare date differs (it means the end of that day)
        until = "2026-03-02T23:59:59.999Z" if value == "2026-03-02" else "2026-03-02T00:00:00.000Z"
        assert logs(cli, "--until", value) == expected(until=until)

    def test_since_and_until_are_inclusive_to_the_millisecond(self, cli, store) -> None:
        assert [e["createdAt"] for e in logs(cli, "--since", "2026-03-02T23:59:59.999Z",
                                              "--until", "2026-03-03T00:00:00Z")] == [
            "2026-03-03T00:00:00.000Z",
            "2026-03-02T23:59:59.999Z",
        ]  # fmt: skip
        # a bound between two milliseconds excludes the earlier one
        assert logs(
            cli, "--since", "2026-03-02T23:59:59.9995Z", "--until", "2026-03-03T00:00:00Z"
        ) == [e for e in ENTRIES if e["createdAt"] == "2026-03-03T00:00:00.000Z"]

    NOW = datetime(2026, 11, 25, 8, 6, 40, 123000, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("text", "end", "want"),
        [
            ("now", False, "2026-11-25T08:06:40.123Z"),
            ("NOW", True, "2026-11-25T08:06:40.123Z"),
            ("today", False, "2026-11-25T00:00:00.000Z"),
            ("today", True, "2026-11-25T23:59:59.999Z"),
            ("yesterday", False, "2026-11-24T00:00:00.000Z"),
            ("yesterday", True, "2026-11-24T23:59:59.999Z"),
            ("15m", False, "2026-11-25T07:51:40.123Z"),
            ("24h", False, "2026-11-24T08:06:40.123Z"),
            ("7d", False, "2026-11-18T08:06:40.123Z"),
            ("2w", False, "2026-11-11T08:06:40.123Z"),
            ("90s", True, "2026-11-25T08:05:10.123Z"),
            ("2026-11-25", False, "2026-11-25T00:00:00.000Z"),
            ("2026-11-25", True, "2026-11-25T23:59:59.999Z"),
            ("2026-11-25T10:00:00+02:00", False, "2026-11-25T08:00:00.000Z"),
            ("2026-11-25T08:00:00", True, "2026-11-25T08:00:00.000Z"),
            ("@0", False, "1970-01-01T00:00:00.000Z"),
            ("@1764057600.5", False, "2025-11-25T08:00:00.500Z"),
            (" 7d ", False, "2026-11-18T08:06:40.123Z"),
            # the grammar of --expires, backwards: calendar months and years, words, "ago"
            ("1y", False, "2025-11-25T08:06:40.123Z"),
            ("3mo", False, "2026-08-25T08:06:40.123Z"),
            ("2 hours ago", False, "2026-11-25T06:06:40.123Z"),
            ("1 day", False, "2026-11-24T08:06:40.123Z"),
            ("1h30m", False, "2026-11-25T06:36:40.123Z"),
            ("-7d", False, "2026-11-18T08:06:40.123Z"),
            ("2 Weeks Ago", False, "2026-11-11T08:06:40.123Z"),
        ],
    )
    def test_parse_bound(self, text, end, want) -> None:
        assert parse_bound(text, end=end, clock=lambda: self.NOW) == want

    def test_a_month_back_from_the_31st_is_the_end_of_the_shorter_month(self) -> None:
        march_31 = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
        assert parse_bound("1mo", end=False, clock=lambda: march_31) == "2026-02-28T12:00:00.000Z"
        assert parse_bound("1y", end=False, clock=lambda: march_31) == "2025-03-31T12:00:00.000Z"

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("soon", "use ISO-8601"),
            ("@x", "use ISO-8601"),
            ("", "use ISO-8601"),
            ("2026-13-01", "month 13 is out of range (1-12)"),
            ("2026-00-10", "month 0 is out of range (1-12)"),
            ("2026-02-30", "2026-02 has no day 30 (it has 28)"),
            ("2026-03-02T25:00Z", "hour 25 is out of range (0-23)"),
            ("2026-03-02T10:61:00Z", "minute 61 is out of range (0-59)"),
            ("3x", "unknown unit 'x'"),
            ("2 fortnights ago", "unknown unit 'fortnights'"),
        ],
    )
    def test_parse_bound_refuses_and_says_why(self, text, why) -> None:
        from auditcli import UsageError

        with pytest.raises(UsageError, match="--until: cannot read") as caught:
            parse_bound(text, end=True, clock=lambda: self.NOW, option="--until")
        assert why in str(caught.value)

    def test_an_overflowing_duration_is_out_of_range(self) -> None:
        from auditcli import UsageError

        with pytest.raises(UsageError, match="out of range"):
            parse_bound("9000y", end=False, clock=lambda: self.NOW)

    def test_relative_and_named_times_through_the_cli(self, cli, log_dir) -> None:
        now = datetime.now(UTC)
        times = {
            "m5": now - timedelta(minutes=5),
            "h2": now - timedelta(hours=2),
            "d3": now - timedelta(days=3),
            "d10": now - timedelta(days=10),
            "d20": now - timedelta(days=20),
            "future": now + timedelta(hours=1),
        }
        store = AuditStore(log_dir)
        for name, moment in times.items():
            store.record(
                {"id": name, "action": "login", "actorId": "u", "organizationId": "o",
                 "createdAt": format_utc(moment)}
            )  # fmt: skip

        def ids(*args: str) -> set[str]:
            return {e["id"] for e in logs(cli, *args)}

        assert ids("--since", "15m") == {"m5", "future"}
        assert ids("--since", "24h", "--until", "now") == {"m5", "h2"}
        assert ids("--since", "7d", "--until", "now") == {"m5", "h2", "d3"}
        assert ids("--since", "2w", "--until", "now") == {"m5", "h2", "d3", "d10"}
        assert ids("--until", "now") == {"m5", "h2", "d3", "d10", "d20"}
        today = now.date()
        assert ids("--since", "today") == {i for i, t in times.items() if t.date() >= today}
        assert ids("--until", "yesterday") == {i for i, t in times.items() if t.date() < today}
        assert ids("--since", "yesterday", "--until", "yesterday") == {
            i for i, t in times.items() if t.date() == today - timedelta(days=1)
        }


# ------------------------------------------------------------------------------- errors
class TestUsageErrors:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--since", "2026-03-03", "--until", "2026-03-02"], "is after --until"),
            (["--since", "now", "--until", "yesterday"], "is after --until"),
            (["--limit", "0"], "--limit"),
            (["--limit", "-5"], "--limit"),
            (["--offset", "-1"], "--offset"),
            (["--since", "last tuesday"], "--since: cannot read 'last tuesday'"),
            (["--until", "2026-02-30"], "--until: cannot read"),
            (["--created-at-gte", "x"], "--since: cannot read"),
            (["--target", "GROUP"], "unknown target 'GROUP'"),
            (["--action", "logn"], "did you mean login"),
            (["--action", "login", "--action", "team_delete"], "team_deleted"),
        ],
    )
    def test_exit_2_with_one_clear_line(self, cli, store, args, message) -> None:
        result = cli("query", *args)
        assert result.exit_code == 2, result.stderr
        assert result.stdout == ""
        assert message in result.stderr
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1

    @pytest.mark.parametrize("args", [["--format", "xml"], ["--order", "up"], ["--limit", "x"]])
    def test_bad_option_values_exit_2(self, cli, args) -> None:
        assert cli("query", *args).exit_code == 2

    def test_a_limit_above_100_is_allowed(self, cli, store) -> None:
        assert query_json(cli, "--limit", "1000")["total"] == 40


# ------------------------------------------------------------------------------- ordering
class TestOrdering:
    def test_default_is_newest_first_with_ties_by_id(self, cli, store) -> None:
        got = logs(cli)
        assert got == expected()
        tied = [e["id"] for e in got if e["createdAt"] == "2026-03-04T12:00:00.000Z"]
        assert len(tied) >= 4 and tied == sorted(tied, reverse=True)

    def test_asc_is_oldest_first_with_ties_by_id(self, cli, store) -> None:
        got = logs(cli, "--order", "asc")
        assert got == expected(order="asc")
        tied = [e["id"] for e in got if e["createdAt"] == "2026-03-04T12:00:00.000Z"]
        assert tied == sorted(tied)

    def test_ties_across_writers_of_one_day(self, cli, log_dir) -> None:
        at = "2026-03-09T09:00:00.000Z"
        for writer, ids in (("host-b", ["t-3", "t-1"]), ("host-a", ["t-4", "t-2"])):
            AuditStore(log_dir, writer_id=writer).append(
                {"id": i, "action": "login", "actorId": "u", "organizationId": "o", "createdAt": at}
                for i in ids
            )
        assert [e["id"] for e in logs(cli)] == ["t-4", "t-3", "t-2", "t-1"]
        assert [e["id"] for e in logs(cli, "--order", "asc")] == ["t-1", "t-2", "t-3", "t-4"]


# ------------------------------------------------------------------------------- pagination
class TestPagination:
    def test_default_limit_is_20(self, cli, store) -> None:
        page = query_json(cli)
        assert (page["total"], page["limit"], page["offset"]) == (40, 20, 0)
        assert page["logs"] == expected()[:20]

    @pytest.mark.parametrize("size", [1, 3, 7, 40])
    @pytest.mark.parametrize("order", ["desc", "asc"])
    def test_pages_concatenate_to_the_whole(self, cli, store, size, order) -> None:
        seen = []
        for offset in range(0, 40, size):
            page = query_json(cli, "--limit", str(size), "--offset", str(offset), "--order", order)
            assert page["total"] == 40
            assert (page["limit"], page["offset"]) == (size, offset)
            seen.extend(page["logs"])
        assert seen == expected(order=order)

    def test_offset_past_the_end_is_empty_with_the_total(self, cli, store) -> None:
        page = query_json(cli, "--offset", "500", "--action", "login")
        assert page == {"total": 8, "limit": 20, "offset": 500, "logs": []}

    def test_page_of_a_filtered_query(self, cli, store) -> None:
        want = expected(actions=("login", "user_added"))
        page = query_json(cli, "-a", "login", "-a", "user_added", "-n", "5", "--offset", "5")
        assert page["total"] == len(want) and page["logs"] == want[5:10]

    def test_count(self, cli, store) -> None:
        result = cli("query", "--count", "--org-id", "org-0")
        assert result.exit_code == 0
        assert result.stdout == f"{len(expected(orgs=('org-0',)))}\n"


class TestAll:
    def test_all_jsonl_streams_every_match_ignoring_limit(self, cli, store) -> None:
        result = cli("query", "--all", "--limit", "2", "--format", "jsonl", "--org-id", "org-1")
        assert result.exit_code == 0
        assert [json.loads(line) for line in result.stdout.splitlines()] == expected(
            orgs=("org-1",)
        )

    def test_all_json_is_the_api_shape(self, cli, store) -> None:
        page = query_json(cli, "--all", "--order", "asc")
        assert list(page) == ["total", "limit", "offset", "logs"]
        assert page["total"] == 40 and page["offset"] == 0
        assert page["logs"] == expected(order="asc")

    def test_all_csv(self, cli, store) -> None:
        result = cli("query", "--all", "--format", "csv", "--action", "login")
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert rows[0] == list(SEED_FIELDS)
        assert [row[0] for row in rows[1:]] == [e["id"] for e in expected(actions=("login",))]

    def test_all_table(self, cli, store) -> None:
        result = cli("query", "--all", "--format", "table")
        assert result.exit_code == 0
        assert "40 entries" in result.stdout
        shown = [int(n) for n in re.findall(r"\bentry (\d+)\b", result.stdout)]
        assert sorted(shown) == list(range(40))


# ------------------------------------------------------------------------------- formats
class TestFormats:
    def test_json_is_exactly_the_api_response(self, cli, store) -> None:
        result = cli("query", "--format", "json", "-n", "2")
        page = json.loads(result.stdout)
        assert list(page) == ["total", "limit", "offset", "logs"]
        assert all(list(entry) == list(SEED_FIELDS) for entry in page["logs"])
        assert result.stdout.endswith("}\n") and result.stdout.count("\n") == 1

    def test_jsonl_is_one_entry_per_line(self, cli, store) -> None:
        result = cli("query", "--format", "jsonl", "-n", "5")
        lines = result.stdout.splitlines()
        assert [json.loads(line) for line in lines] == expected()[:5]
        assert all(list(json.loads(line)) == list(SEED_FIELDS) for line in lines)

    def test_default_format_is_jsonl_when_not_a_terminal(self, cli, store) -> None:
        assert cli("query", "-n", "5").stdout == cli("query", "-n", "5", "-f", "jsonl").stdout

    def test_default_format_is_a_table_on_a_terminal(self, cli, store, monkeypatch) -> None:
        from auditcli import cli_options

        monkeypatch.setattr(cli_options, "stdout_is_terminal", lambda: True)
        assert "1–20 of 40" in cli("query").stdout

    def test_csv_header_and_rows(self, cli, store) -> None:
        result = cli("query", "--format", "csv", "--limit", "40")
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert rows[0] == list(SEED_FIELDS)
        assert len(rows) == 41
        for row, want in zip(rows[1:], expected(), strict=True):
            got = dict(zip(SEED_FIELDS, row, strict=True))
            assert got["id"] == want["id"] and got["createdAt"] == want["createdAt"]
            assert got["teamId"] == (want["teamId"] or "")
            assert got["metadata"] == (
                json.dumps(want["metadata"], separators=(",", ":")) if want["metadata"] else ""
            )

    def test_table_fits_80_columns_and_counts(self, cli, store, log_dir) -> None:
        AuditStore(log_dir).record(
            {
                "action": "team_created",
                "actorId": "user-with-a-very-long-identifier-0123456789",
                "actorEmail": "someone.with.a.very.long.address@subdomain.example.com",
                "targetId": "team-" + "x" * 70,
                "organizationId": "o",
                "description": "团队 " * 30
                + "averyveryverylongunbrokenwordthatcannotwrapnaturally" * 2,
                "createdAt": "2026-03-05T23:00:00Z",
            }
        )
        result = cli("query", "--format", "table")
        assert result.exit_code == 0
        lines = result.stdout.splitlines()
        assert max(cell_len(line) for line in lines) <= 80
        assert "1–20 of 41" in result.stdout
        assert "Time (UTC)" in result.stdout and "Description" in result.stdout
        assert "2026-03-05 23:00:00" in result.stdout
        second = cli("query", "--format", "table", "--offset", "20", "--limit", "30").stdout
        assert "21–41 of 41" in second

    def test_table_wraps_long_cells_but_never_cuts_them(self, cli, log_dir) -> None:
        description = "granted " + "x" * 50 + " the role " + "word " * 20 + "end"
        AuditStore(log_dir).record(
            {
                "action": "user_role_changed_in_team",
                "actorId": "user-1",
                "actorName": "Mallory Price-Featherstonehaugh",
                "targetId": "team-" + "0123456789" * 3,
                "organizationId": "o",
                "description": description,
                "createdAt": "2026-03-05T23:00:00Z",
            }
        )
        # At 80 columns the 35-character target id and the 23-character name do not fit beside
        # a description that keeps a 36-character word whole: their columns give way, target
        # first (ids and names are never split), and the rest keep their words whole.
        narrow = cli("query", "--format", "table").stdout.splitlines()
        assert max(cell_len(line) for line in narrow) <= 80
        assert narrow[0].split() == ["Time", "(UTC)", "Action", "Description"]
        lines = cli("query", "--format", "table", env={"COLUMNS": "120"}).stdout.splitlines()
        assert max(cell_len(line) for line in lines) <= 120
        header, body = lines[0], lines[2:-1]
        # The name's type is in the action: the target column shows the id alone.
        assert header.split() == ["Time", "(UTC)", "Action", "Actor", "Target", "Description"]

        def column(name: str, after: str | None = None) -> str:
            start = header.index(name)
            end = header.index(after) if after else None
            return "".join("".join(line[start:end].split()) for line in body)

        assert column("Description") == "".join(description.split())
        assert column("Target", "Description") == "team-" + "0123456789" * 3
        assert column("Actor", "Target") == "MalloryPrice-Featherstonehaugh"
        assert column("Action", "Actor") == "UserRoleChangedinTeam"
        # Words wrap whole where they fit: only the 50-character word is folded.
        assert any(line.rstrip().endswith("granted") for line in body)

    def test_table_footer_shows_the_resolved_window(self, cli, store) -> None:
        out = cli(
            "query", "-f", "table", "--since", "2026-03-02T02:00:00+02:00", "--until", "2026-03-02"
        ).stdout
        flat = " ".join(out.split())
        assert "2026-03-02T00:00:00.000Z → 2026-03-02T23:59:59.999Z (UTC)" in flat

    def test_table_with_no_match(self, cli, store) -> None:
        out = cli("query", "-f", "table", "--actor-id", "nobody").stdout
        assert "0 of 0" in out

    def test_empty_store(self, cli, store_dir) -> None:
        assert query_json(cli) == {"total": 0, "limit": 20, "offset": 0, "logs": []}
        assert cli("query").stdout == ""


# ------------------------------------------------------------------------------- partitions
class TestPartitions:
    def test_only_partitions_in_range_are_opened(self, cli, store, monkeypatch) -> None:
        opened: list[str] = []
        original = AuditStore.files

        def spy(self: AuditStore, day: str):  # type: ignore[no-untyped-def]
            opened.append(day)
            return original(self, day)

        monkeypatch.setattr(AuditStore, "files", spy)
        assert logs(cli, "--since", "2026-03-02T05:00:00Z", "--until", "2026-03-03")
        assert sorted(set(opened)) == ["2026-03-02", "2026-03-03"]
        opened.clear()
        logs(cli, "--since", "2026-03-04")
        assert sorted(set(opened)) == ["2026-03-04", "2026-03-05"]

    def test_a_damaged_partition_out_of_range_is_not_read(self, cli, store, log_dir) -> None:
        damaged = log_dir / "date=2026-03-01" / "testhost.jsonl"
        with damaged.open("ab") as handle:
            handle.write(b'{"foreign": "line written by something else"}\n')
        (log_dir / "date=2026-03-06").write_text("a file where a partition should be")

        result = cli("query", "--format", "json", "--since", "2026-03-02", "--until", "2026-03-05")
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        assert json.loads(result.stdout)["total"] == len(
            expected(since="2026-03-02T00:00:00.000Z", until="2026-03-05T23:59:59.999Z")
        )

        everything = cli("query", "--format", "json")
        assert everything.exit_code == 5  # reported, never silently skipped
        assert "date=2026-03-01/testhost.jsonl:" in everything.stderr
        assert "date=2026-03-06" in everything.stderr
        assert json.loads(everything.stdout)["total"] == 40  # the good entries still answer


# ------------------------------------------------------------------------------- done-when
SEED_EXAMPLES = [
    {
        "id": "550e8400-e29b-41d4-a716-446655440000",
        "description": "user@example.com logged in",
        "actorId": "user-123",
        "actorName": "John Doe",
        "actorEmail": "user@example.com",
        "action": "login",
        "actionDisplayName": "User Login",
        "target": "USER",
        "targetId": "user-123",
        "metadata": None,
        "organizationId": "org-456",
        "teamId": None,
        "createdAt": "2023-11-08T08:06:40Z",
    },
    {
        "id": "550e8400-e29b-41d4-a716-446655440001",
        "description": "user@example.com created team Engineering",
        "actorId": "user-789",
        "actorName": "Jane Smith",
        "actorEmail": "user@example.com",
        "action": "team_created",
        "actionDisplayName": "Team Created",
        "target": "TEAM",
        "targetId": "team-101",
        "metadata": None,
        "organizationId": "org-456",
        "teamId": "team-101",
        "createdAt": "2023-11-08T09:15:22Z",
    },
    {
        "id": "550e8400-e29b-41d4-a716-446655440002",
        "description": "user@example.com updated role Developer",
        "actorId": "user-456",
        "actorName": "Admin User",
        "actorEmail": "user@example.com",
        "action": "role_updated",
        "actionDisplayName": "Role Updated",
        "target": "ROLE",
        "targetId": "role-202",
        "metadata": {
            "input": {
                "permissions": ["read", "write"],
                "description": "Updated developer permissions",
            }
        },
        "organizationId": "org-456",
        "teamId": None,
        "createdAt": "2023-11-08T10:30:15Z",
    },
]
LOGIN, TEAM, ROLE = (
    {**entry, "createdAt": entry["createdAt"][:-1] + ".000Z"} for entry in SEED_EXAMPLES
)


def audit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`audit ARGS` as a real process (log directory and writer from the test's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "auditcli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestSeedExamples:
    def test_imported_seed_examples_come_back_field_for_field(self, tmp_path) -> None:
        source = tmp_path / "seed.jsonl"
        source.write_text("".join(json.dumps(entry) + "\n" for entry in SEED_EXAMPLES))
        imported = audit("import", str(source))
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout == "imported 3 entries\n"

        cases = {
            (): (3, 20, 0, [ROLE, TEAM, LOGIN]),
            ("--limit", "2"): (3, 2, 0, [ROLE, TEAM]),
            ("--limit", "2", "--offset", "2"): (3, 2, 2, [LOGIN]),
            ("--offset", "1"): (3, 20, 1, [TEAM, LOGIN]),
            ("--created-at-gte", "2023-11-08T09:00:00Z"): (2, 20, 0, [ROLE, TEAM]),
            ("--created-at-lte", "2023-11-08T09:15:22Z"): (2, 20, 0, [TEAM, LOGIN]),
            ("--created-at-gte", "2023-11-08T09:15:22.000Z",
             "--created-at-lte", "2023-11-08T09:15:22.000Z"): (1, 20, 0, [TEAM]),
            ("--action", "login"): (1, 20, 0, [LOGIN]),
            ("--target", "ROLE"): (1, 20, 0, [ROLE]),
            ("--actor-id", "user-789"): (1, 20, 0, [TEAM]),
            ("--limit", "50", "--action", "login"): (1, 50, 0, [LOGIN]),  # the API's example
        }  # fmt: skip
        for args, (total, limit, offset, want) in cases.items():
            done = audit("query", "--format", "json", *args)
            assert done.returncode == 0, (args, done.stderr)
            assert json.loads(done.stdout) == {
                "total": total,
                "limit": limit,
                "offset": offset,
                "logs": want,
            }, args
            # field order too: the 13 entry fields in the API's order
            for raw in json.loads(done.stdout, object_pairs_hook=list)[3][1]:
                assert [key for key, _ in raw] == list(SEED_FIELDS)

    def test_a_real_process_defaults_to_jsonl_on_a_pipe(self) -> None:
        data = json.dumps(SEED_EXAMPLES[0])
        assert audit("record", "-", stdin=data).returncode == 0
        done = audit("query")
        assert done.returncode == 0, done.stderr
        assert [json.loads(line) for line in done.stdout.splitlines()] == [LOGIN]
        failed = audit("query", "--since", "tomorrow-ish")
        assert failed.returncode == 2 and failed.stdout == ""
        assert failed.stderr.startswith("Error: --since: cannot read")
