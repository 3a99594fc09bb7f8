"""History, point-in-time access state, diffs and the access-review report.

The scenarios are worked out by hand: each test states the entries, then the answer a person
reading them would give."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from auditcli import AuditStore
from auditcli.auditor import Change, access_state, diff_attrs, history, report_data
from auditcli.cli import app
from auditcli.importer import import_jsonl
from auditcli.report import build_report, md, render_html, render_markdown

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_logs"
TEAM_ACTIONS = {
    "team_created",
    "team_deleted",
    "user_added_to_team",
    "user_removed_from_team",
    "user_role_changed_in_team",
}


def ev(
    entry_id: str,
    at: str,
    action: str,
    target_id: str,
    *,
    actor: str = "user-1",
    org: str = "org-1",
    user: str | None = None,
    **inputs: Any,
) -> dict[str, Any]:
    """An entry at `2026-01-DDTHH:MM:SS.mmmZ`; team actions get teamId = targetId and
    metadata.input.userId = `user`; other keyword arguments go into metadata.input."""
    data = dict(inputs)
    if user is not None:
        data["userId"] = user
    return {
        "id": entry_id,
        "action": action,
        "actorId": actor,
        "actorEmail": f"{actor}@example.com",
        "targetId": target_id,
        "organizationId": org,
        "teamId": target_id if action in TEAM_ACTIONS else None,
        "metadata": {"input": data} if data else None,
        "createdAt": at,
    }


def T(day: int, hms: str, ms: int = 0) -> str:
    """A canonical time on 2026-01-`day`."""
    return f"2026-01-{day:02d}T{hms}.{ms:03d}Z"


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore(tmp_path / "logs", writer_id="test")


def ids(rows: list[dict[str, Any]], field: str = "userId") -> list[Any]:
    return [row[field] for row in rows]


# ----------------------------------------------------------------------------- admins
class TestSystemAdmins:
    """Grant on day 1, revoke on day 3, grant again on day 5."""

    @pytest.fixture
    def log(self, store: AuditStore) -> AuditStore:
        store.append(
            [
                ev("e01", T(1, "09:00:00"), "login", "user-1"),
                ev("e02", T(1, "10:00:00"), "org_admin_added", "user-2"),
                ev("e03", T(2, "10:00:00"), "org_admin_added", "user-3", actor="user-2"),
                ev("e04", T(3, "10:00:00"), "org_admin_removed", "user-2", actor="user-3"),
                ev("e05", T(5, "10:00:00"), "org_admin_added", "user-2"),
            ]
        )
        return store

    def test_granted_then_revoked_then_granted_again(self, log: AuditStore) -> None:
        at = {n: access_state(log, "admins", at=T(n, "23:59:59", 999)).rows for n in range(1, 6)}
        assert ids(at[1]) == ["user-2"]
        assert ids(at[2]) == ["user-2", "user-3"]
        assert ids(at[3]) == ids(at[4]) == ["user-3"]
        assert ids(at[5]) == ["user-2", "user-3"]

    def test_each_row_cites_the_entry_that_granted_it(self, log: AuditStore) -> None:
        rows = access_state(log, "admins", at=T(6, "00:00:00")).rows
        bob = rows[0]
        assert bob["grantedBy"] == {
            "id": "e05",
            "createdAt": T(5, "10:00:00"),
            "actorId": "user-1",
            "actor": "user-1@example.com",
            "action": "org_admin_added",
        }
        assert rows[1]["grantedBy"]["id"] == "e03"

    def test_the_instant_is_inclusive(self, log: AuditStore) -> None:
        assert ids(access_state(log, "admins", at=T(3, "10:00:00")).rows) == ["user-3"]
        assert ids(access_state(log, "admins", at=T(3, "09:59:59", 999)).rows) == [
            "user-2",
            "user-3",
        ]

    def test_diff_names_grants_revocations_and_regrants(self, log: AuditStore) -> None:
        over_revoke = access_state(log, "admins", at=T(4, "00:00:00"), diff_from=T(2, "12:00:00"))
        assert over_revoke.granted == []
        assert ids(over_revoke.revoked) == ["user-2"]
        assert over_revoke.revoked[0]["revokedBy"]["id"] == "e04"
        whole = access_state(log, "admins", at=T(6, "00:00:00"), diff_from=T(1, "12:00:00"))
        assert ids(whole.granted) == ["user-3"]
        assert whole.revoked == []
        assert [(c["after"]["userId"], c["regranted"]) for c in whole.changed] == [("user-2", True)]

    def test_diff_shows_access_granted_and_revoked_in_between(self, log: AuditStore) -> None:
        # user-3 got admin rights on day 2 and kept them; user-2 lost them on day 3.
        result = access_state(log, "admins", at=T(4, "00:00:00"), diff_from=T(1, "00:00:00"))
        assert ids(result.granted) == ["user-3"]
        assert [
            (t["key"], t["grantedBy"]["id"], t["revokedBy"]["id"]) for t in result.transient
        ] == [(["org-1", "user-2"], "e02", "e04")]
        assert result.as_dict()["diff"]["grantedThenRevoked"] == result.transient

    def test_before_the_first_entry_nothing_is_known(self, log: AuditStore) -> None:
        result = access_state(log, "admins", at="2025-12-31T23:59:59.999Z")
        assert result.rows == []
        assert "before the first recorded entry" in result.note
        later = access_state(log, "admins", at=T(2, "00:00:00"))
        assert "state before the first recorded event is unknown" in later.note
        assert later.first_recorded == T(1, "09:00:00")

    def test_a_removal_without_a_grant_is_reported(self, store: AuditStore) -> None:
        store.append([ev("x1", T(1, "10:00:00"), "org_admin_removed", "user-9")])
        result = access_state(store, "admins", at=T(2, "00:00:00"))
        assert result.rows == []
        [anomaly] = result.anomalies
        assert anomaly.kind == "removal without a prior grant"
        assert anomaly.entry.id == "x1"

    def test_a_second_grant_is_reported_and_the_first_kept(self, store: AuditStore) -> None:
        store.append(
            [
                ev("g1", T(1, "10:00:00"), "org_admin_added", "user-2"),
                ev("g2", T(1, "11:00:00"), "org_admin_added", "user-2"),
            ]
        )
        result = access_state(store, "admins", at=T(2, "00:00:00"))
        assert [row["grantedBy"]["id"] for row in result.rows] == ["g1"]
        assert [a.kind for a in result.anomalies] == ["duplicate grant"]

    def test_admins_are_per_organization(self, store: AuditStore) -> None:
        store.append(
            [
                ev("o1", T(1, "10:00:00"), "org_admin_added", "user-2", org="org-1"),
                ev("o2", T(1, "11:00:00"), "org_admin_added", "user-2", org="org-2"),
                ev("o3", T(1, "12:00:00"), "org_admin_removed", "user-2", org="org-1"),
            ]
        )
        rows = access_state(store, "admins", at=T(2, "00:00:00")).rows
        assert [(r["organizationId"], r["userId"]) for r in rows] == [("org-2", "user-2")]
        only = access_state(store, "admins", at=T(2, "00:00:00"), org_ids=("org-1",))
        assert only.rows == []

    def test_leaving_the_organization_ends_admin_rights(self, store: AuditStore) -> None:
        store.append(
            [
                ev("u1", T(1, "09:00:00"), "user_added", "user-2", email="b@example.com"),
                ev("u2", T(1, "10:00:00"), "org_admin_added", "user-2"),
                ev("u3", T(2, "10:00:00"), "user_removed", "user-2"),
                ev("u4", T(2, "10:05:00"), "org_admin_removed", "user-2"),
            ]
        )
        result = access_state(store, "admins", at=T(3, "00:00:00"), diff_from=T(1, "12:00:00"))
        assert result.rows == []
        assert result.revoked[0]["revokedBy"]["id"] == "u3"
        assert result.anomalies == []  # the explicit removal after the cascade is expected

    def test_metadata_imitating_a_login_does_not_hide_an_entry(self, store: AuditStore) -> None:
        entry = ev("m1", T(1, "10:00:00"), "org_admin_added", "user-2")
        entry["metadata"] = {"a": 1, "action": "login", "b": 2}
        store.append([entry])
        assert ids(access_state(store, "admins", at=T(2, "00:00:00")).rows) == ["user-2"]
        data = report_data(
            store, since=T(1, "00:00:00"), until=T(1, "23:59:59"), generated_at=T(2, "00:00:00")
        )
        assert data.by_action == {"org_admin_added": 1}
        assert [i.entry["id"] for i in history(store, actor_ids=("user-1",)).items] == ["m1"]


# ----------------------------------------------------------------------------- teams
class TestTeams:
    def test_deleting_a_team_ends_its_memberships(self, store: AuditStore) -> None:
        store.append(
            [
                ev("t1", T(1, "09:00:00"), "team_created", "team-1", name="Red"),
                ev(
                    "t2",
                    T(1, "09:01:00"),
                    "user_added_to_team",
                    "team-1",
                    user="u-a",
                    role="member",
                ),
                ev("t3", T(1, "09:02:00"), "user_added_to_team", "team-1", user="u-b", role="lead"),
                ev("t4", T(2, "09:00:00"), "team_deleted", "team-1"),
                ev("t5", T(2, "09:30:00"), "user_removed_from_team", "team-1", user="u-a"),
                ev("t6", T(3, "09:00:00"), "user_added_to_team", "team-1", user="u-c"),
            ]
        )
        day1 = access_state(store, "teams", at=T(1, "23:59:59", 999)).rows
        assert [(r["teamName"], r["userId"], r["role"]) for r in day1] == [
            ("Red", None, None),
            ("Red", "u-a", "member"),
            ("Red", "u-b", "lead"),
        ]
        day2 = access_state(store, "teams", at=T(2, "23:59:59", 999), diff_from=T(1, "23:59:59"))
        assert day2.rows == []
        assert [(r["userId"], r["revokedBy"]["id"]) for r in day2.revoked] == [
            (None, "t4"),
            ("u-a", "t4"),
            ("u-b", "t4"),
        ]
        assert day2.anomalies == []  # removing a member of the deleted team is no contradiction
        day3 = access_state(store, "teams", at=T(3, "23:59:59", 999))
        assert [a.kind for a in day3.anomalies] == ["event after deletion"]
        assert ids(day3.rows) == [None, "u-c"]

    def test_role_changed_twice_in_one_millisecond_is_ordered_by_id(
        self, store: AuditStore
    ) -> None:
        same = T(1, "10:00:00", 500)
        store.append(
            [
                ev(
                    "a0",
                    T(1, "09:00:00"),
                    "user_added_to_team",
                    "team-1",
                    user="u-a",
                    role="member",
                ),
                # Stored in the "wrong" order; the id decides: a1 first, then a2.
                ev(
                    "a2",
                    same,
                    "user_role_changed_in_team",
                    "team-1",
                    user="u-a",
                    **{"from": "maintainer", "to": "owner"},
                ),
                ev(
                    "a1",
                    same,
                    "user_role_changed_in_team",
                    "team-1",
                    user="u-a",
                    **{"from": "member", "to": "maintainer"},
                ),
            ]
        )
        result = access_state(store, "teams", at=T(2, "00:00:00"))
        member = next(r for r in result.rows if r["userId"] == "u-a")
        assert (member["role"], member["grantedBy"]["id"]) == ("owner", "a2")
        assert member["memberSince"] == T(1, "09:00:00")
        assert result.anomalies == []  # each `from` matched: the order was right

    def test_role_changed_twice_in_one_second(self, store: AuditStore) -> None:
        # Different milliseconds of the same second: time decides, not the id.
        store.append(
            [
                ev(
                    "b0",
                    T(1, "09:00:00"),
                    "user_added_to_team",
                    "team-1",
                    user="u-a",
                    role="member",
                ),
                ev(
                    "b1",
                    T(1, "10:00:00", 900),
                    "user_role_changed_in_team",
                    "team-1",
                    user="u-a",
                    **{"from": "maintainer", "to": "owner"},
                ),
                ev(
                    "b2",
                    T(1, "10:00:00", 100),
                    "user_role_changed_in_team",
                    "team-1",
                    user="u-a",
                    **{"from": "member", "to": "maintainer"},
                ),
            ]
        )
        rows = access_state(store, "teams", at=T(2, "00:00:00")).rows
        assert [(r["role"], r["grantedBy"]["id"]) for r in rows if r["userId"]] == [("owner", "b1")]

    def test_a_role_change_whose_from_is_wrong_is_reported(self, store: AuditStore) -> None:
        store.append(
            [
                ev(
                    "c0",
                    T(1, "09:00:00"),
                    "user_added_to_team",
                    "team-1",
                    user="u-a",
                    role="member",
                ),
                ev(
                    "c1",
                    T(1, "10:00:00"),
                    "user_role_changed_in_team",
                    "team-1",
                    user="u-a",
                    **{"from": "owner", "to": "maintainer"},
                ),
            ]
        )
        result = access_state(store, "teams", at=T(2, "00:00:00"))
        assert [a.kind for a in result.anomalies] == ["role mismatch"]
        assert "recorded role is member" in result.anomalies[0].detail

    def test_team_id_filter(self, store: AuditStore) -> None:
        store.append(
            [
                ev("d1", T(1, "09:00:00"), "user_added_to_team", "team-1", user="u-a"),
                ev("d2", T(1, "09:00:01"), "user_added_to_team", "team-2", user="u-b"),
                ev("d3", T(1, "09:00:02"), "user_removed_from_team", "team-2", user="u-z"),
            ]
        )
        result = access_state(store, "teams", at=T(2, "00:00:00"), team_ids=("team-1",))
        assert [(r["teamId"], r["userId"]) for r in result.rows] == [
            ("team-1", None),
            ("team-1", "u-a"),
        ]
        assert result.anomalies == []  # team-2's anomaly is not about team-1
        assert result.rows[0]["teamCreatedBy"] is None  # created before the recorded history


# ----------------------------------------------------------------------------- out of order
class TestOutOfOrder:
    LINES: ClassVar[list[dict[str, Any]]] = [
        ev("r3", T(1, "12:00:00"), "org_admin_removed", "user-2"),
        ev("r1", T(1, "10:00:00"), "org_admin_added", "user-2"),
        ev("r2", T(1, "11:00:00"), "login", "user-2", actor="user-2"),
    ]

    def _import(self, store: AuditStore, entries: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(e) + b"\n" for e in entries)
        import_jsonl(store, io.BytesIO(data))

    def test_state_follows_time_not_storage_order(self, tmp_path: Path) -> None:
        scrambled = AuditStore(tmp_path / "a", writer_id="test")
        ordered = AuditStore(tmp_path / "b", writer_id="test")
        self._import(scrambled, self.LINES)
        self._import(ordered, sorted(self.LINES, key=lambda e: e["createdAt"]))
        for at in (T(1, "10:30:00"), T(1, "12:30:00")):
            a = access_state(scrambled, "admins", at=at, diff_from=T(1, "09:00:00"))
            b = access_state(ordered, "admins", at=at, diff_from=T(1, "09:00:00"))
            assert (a.rows, a.granted, a.revoked) == (b.rows, b.granted, b.revoked)
        assert ids(access_state(scrambled, "admins", at=T(1, "10:30:00")).rows) == ["user-2"]
        assert access_state(scrambled, "admins", at=T(1, "12:30:00")).rows == []

    def test_entries_stored_out_of_order_are_reported(self, tmp_path: Path) -> None:
        scrambled = AuditStore(tmp_path / "a", writer_id="test")
        self._import(scrambled, self.LINES)
        result = access_state(scrambled, "admins", at=T(2, "00:00:00"))
        kinds = [(a.kind, a.entry.id) for a in result.anomalies]
        # r1 (10:00) was stored after r3 (12:00); the login r2 is not about admins.
        assert kinds == [("stored out of time order", "r1")]
        assert "2 h" in result.anomalies[0].detail or "120 min" in result.anomalies[0].detail

    def test_across_days_the_replay_is_still_in_time_order(self, store: AuditStore) -> None:
        self._import(
            store,
            [
                ev("s2", T(3, "10:00:00"), "org_admin_removed", "user-2"),
                ev("s1", T(1, "10:00:00"), "org_admin_added", "user-2"),
            ],
        )
        assert ids(access_state(store, "admins", at=T(2, "00:00:00")).rows) == ["user-2"]
        final = access_state(store, "admins", at=T(4, "00:00:00"))
        assert final.rows == [] and final.anomalies == []


# ----------------------------------------------------------------------------- roles, users
class TestRolesUsersAccounts:
    def test_role_permissions_diffed_change_by_change(self, store: AuditStore) -> None:
        store.append(
            [
                ev(
                    "p1",
                    T(1, "09:00:00"),
                    "role_created",
                    "role-1",
                    name="Dev",
                    permissions=["read", "write"],
                ),
                ev(
                    "p2",
                    T(1, "09:00:00", 200),
                    "role_updated",
                    "role-1",
                    permissions=["read", "write", "deploy"],
                ),
                ev(
                    "p3",
                    T(1, "09:00:00", 700),
                    "role_updated",
                    "role-1",
                    permissions=["read", "deploy"],
                ),
                ev("p4", T(2, "09:00:00"), "role_deleted", "role-1"),
            ]
        )
        items = history(store, target_ids=("role-1",)).items
        perms = [[c for c in item.changes if c.field == "permissions"] for item in items]
        assert [(c[0].added, c[0].removed) for c in perms[:3]] == [
            (("read", "write"), ()),
            (("deploy",), ()),
            ((), ("write",)),
        ]
        assert perms[2][0].text() == "permissions: −write = [read, deploy]"
        assert [c.as_dict() for c in items[3].changes] == [
            {"field": "exists", "before": True, "after": False}
        ]
        mid = access_state(store, "roles", at=T(1, "23:00:00")).rows
        assert [(r["roleId"], r["name"], r["permissions"]) for r in mid] == [
            ("role-1", "Dev", ["read", "deploy"])
        ]
        assert mid[0]["createdBy"]["id"] == "p1" and mid[0]["grantedBy"]["id"] == "p3"
        assert access_state(store, "roles", at=T(3, "00:00:00")).rows == []

    def test_an_update_of_a_role_older_than_the_log_has_an_unknown_before(
        self, store: AuditStore
    ) -> None:
        store.append([ev("q1", T(1, "09:00:00"), "role_updated", "role-7", permissions=["read"])])
        [item] = history(store, target_ids=("role-7",)).items
        assert item.changes == [Change("permissions", None, ["read"], before_known=False)]
        assert item.changes[0].text() == "permissions: (unknown) → [read]"
        assert item.changes[0].as_dict()["beforeUnknown"] is True
        [row] = access_state(store, "roles", at=T(2, "00:00:00")).rows
        assert row["createdBy"] is None and row["permissions"] == ["read"]

    def test_users_and_service_accounts(self, store: AuditStore) -> None:
        store.append(
            [
                ev(
                    "v1",
                    T(1, "09:00:00"),
                    "user_added",
                    "user-5",
                    email="e@x.example",
                    role="member",
                ),
                ev("v2", T(1, "09:10:00"), "service_account_created", "sa-1", name="ci"),
                ev("v3", T(2, "09:00:00"), "service_account_deleted", "sa-1"),
                ev("v4", T(2, "09:10:00"), "service_account_deleted", "sa-2"),
                ev("v5", T(3, "09:00:00"), "user_removed", "user-5"),
            ]
        )
        users = access_state(store, "users", at=T(2, "12:00:00")).rows
        assert [(r["userId"], r["email"], r["grantedBy"]["id"]) for r in users] == [
            ("user-5", "e@x.example", "v1")
        ]
        assert access_state(store, "users", at=T(3, "12:00:00")).rows == []
        accounts = access_state(store, "service-accounts", at=T(1, "12:00:00"))
        assert [(r["serviceAccountId"], r["name"]) for r in accounts.rows] == [("sa-1", "ci")]
        later = access_state(store, "service-accounts", at=T(2, "12:00:00"))
        assert later.rows == []
        assert [(a.kind, a.entry.id) for a in later.anomalies] == [
            ("removal without a prior grant", "v4")
        ]


# ----------------------------------------------------------------------------- history
class TestHistory:
    @pytest.fixture
    def log(self, store: AuditStore) -> AuditStore:
        store.append(
            [
                ev("h1", T(1, "09:00:00"), "team_created", "team-1", name="Red"),
                ev(
                    "h2",
                    T(1, "09:05:00"),
                    "user_added_to_team",
                    "team-1",
                    user="user-2",
                    role="member",
                ),
                ev("h3", T(1, "09:10:00"), "org_admin_added", "user-2"),
                ev("h4", T(1, "10:00:00"), "login", "user-2", actor="user-2"),
                ev("h5", T(2, "09:00:00"), "team_deleted", "team-1", actor="user-3"),
            ]
        )
        return store

    def test_a_users_timeline_includes_memberships_and_team_deletions(
        self, log: AuditStore
    ) -> None:
        result = history(log, target_ids=("user-2",))
        assert [(i.entry["id"], i.via) for i in result.items] == [
            ("h2", "metadata.input.userId = user-2"),
            ("h3", None),
            ("h4", None),
            ("h5", "team deleted with user-2 in it"),
        ]
        assert result.items[3].changes[1].text() == "members: −user-2"

    def test_an_actors_timeline(self, log: AuditStore) -> None:
        result = history(log, actor_ids=("user-3",))
        assert [i.entry["id"] for i in result.items] == ["h5"]
        # The diff knows the members although user-3 did not add them.
        assert result.items[0].changes[1].removed == ("user-2",)

    def test_since_limits_the_timeline_not_the_replay(self, log: AuditStore) -> None:
        result = history(log, target_ids=("team-1",), since=T(2, "00:00:00"))
        assert [i.entry["id"] for i in result.items] == ["h5"]
        assert result.items[0].changes[1].removed == ("user-2",)


# ----------------------------------------------------------------------------- report
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def report_store(store: AuditStore) -> AuditStore:
    store.append(
        [
            ev("w0", T(1, "08:00:00"), "org_admin_added", "user-2"),
            ev("w1", T(2, "08:00:00"), "login", "user-1"),
            ev("w2", T(2, "09:00:00"), "login", "user-2", actor="user-2"),
            ev("w3", T(3, "09:00:00"), "login", "user-2", actor="user-2"),
            ev("w4", T(3, "10:00:00"), "org_admin_removed", "user-2"),
            ev("w5", T(3, "11:00:00"), "team_created", "team-1", name=HOSTILE),
            ev("w6", T(3, "11:30:00"), "role_created", "role-1", permissions=["a|b", "read"]),
            ev("w7", T(3, "12:00:00"), "service_account_created", "sa-1", name="bot"),
            ev("w8", T(3, "12:30:00"), "service_account_deleted", "sa-1"),
            ev("w9", T(3, "13:00:00"), "org_admin_removed", "user-8"),
        ]
    )
    entry = ev("wa", T(3, "14:00:00"), "user_added", "user-9", email="n@example.com")
    entry["description"] = HOSTILE
    store.append([entry])
    return store


class TestReport:
    def test_report_data_is_what_a_person_counts(self, report_store: AuditStore) -> None:
        data = report_data(
            report_store,
            since=T(2, "00:00:00"),
            until=T(3, "23:59:59", 999),
            generated_at=T(4, "00:00:00"),
        )
        assert data.logins_per_day == {"2026-01-02": 2, "2026-01-03": 1}
        assert data.total == 10  # w0 is before the period
        assert ids(data.admins_at_start) == ["user-2"] and data.admins_at_end == []
        assert [i.entry["id"] for i in data.sections["admins"]] == ["w4", "w9"]
        assert [i.entry["id"] for i in data.sections["service-accounts"]] == ["w7", "w8"]
        assert [(a.kind, a.entry.id) for a in data.anomalies] == [
            ("removal without a prior grant", "w9")
        ]
        top = data.top_actors()
        assert top[0][:3] == ("user-1", "user-1@example.com", 8)
        totals = dict(data.totals())
        assert totals["System admin revocations"] == 2 and totals["Logins"] == 3

    def test_changes_in_the_period_are_diffed_against_what_came_before(
        self, store: AuditStore
    ) -> None:
        store.append(
            [
                ev("k1", T(1, "09:00:00"), "role_created", "role-1", permissions=["read"]),
                ev("k2", T(2, "09:00:00"), "role_updated", "role-1", permissions=["read", "x"]),
                ev("k3", T(2, "10:00:00"), "login", 'a"b', actor='a"b'),
                ev("k4", T(2, "11:00:00"), "login", 'a"b', actor='a"b'),
            ]
        )
        data = report_data(
            store, since=T(2, "00:00:00"), until=T(2, "23:59:59"), generated_at=T(3, "00:00:00")
        )
        [item] = data.sections["roles"]
        assert item.changes[0].text() == "permissions: +x = [read, x]"
        assert data.actors == {"user-1": 1, 'a"b': 2}  # an escaped actorId is counted right
        assert data.logins_per_day == {"2026-01-02": 2}

    def test_html_is_self_contained_and_escaped(self, report_store: AuditStore) -> None:
        data = build_report(
            report_store,
            since=T(2, "00:00:00"),
            until=T(3, "23:59:59", 999),
            generated_at=T(4, "00:00:00"),
        )
        page = render_html(data, command="audit report")
        for section in (
            "summary",
            "integrity",
            "logins",
            "admins",
            "users",
            "teams",
            "roles",
            "service-accounts",
            "actors",
            "anomalies",
        ):
            assert f'<section id="{section}">' in page
        assert "<svg" in page and "<rect" in page
        lowered = page.lower()
        assert "<script" not in lowered and "<img" not in lowered
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
        for external in ("<link", "url(", "@import", "<iframe", "<object", "<embed"):
            assert external not in lowered
        assert re.search(r"<[a-z][^>]*\s(src|href|on\w+)=", lowered) is None
        assert "@page" in page and "@media print" in page
        assert "default-src 'none'" in page
        assert "state before the first recorded event is unknown" in page
        kept = build_report(
            report_store,
            since=T(2, "00:00:00"),
            until=T(3, "23:59:59", 999),
            generated_at=T(4, "00:00:00"),
            max_rows=1,
        )
        assert len(kept.sections["admins"]) == 1 and kept.section_totals["admins"] == 2
        assert "Showing the first 1 of 2" in render_html(kept)
        cut = render_html(data, max_rows=1)
        assert "Showing the first 1 of 2; the rest: audit query --action org_admin_added" in cut
        assert "Showing the first 1 of 2" in render_markdown(data, max_rows=1)

    def test_integrity_from_the_real_verify(self, report_store: AuditStore) -> None:
        args = {
            "since": T(1, "00:00:00"),
            "until": T(3, "23:59:59", 999),
            "generated_at": T(4, "00:00:00"),
        }
        assert build_report(report_store, **args).integrity["status"].startswith("verified")
        [file] = report_store.files("2026-01-02")
        file.path.write_bytes(file.path.read_bytes().replace(b'"user-2"', b'"user-X"', 1))
        assert build_report(report_store, **args).integrity["status"] == "FAILED"

    def test_markdown(self, report_store: AuditStore) -> None:
        data = report_data(
            report_store,
            since=T(2, "00:00:00"),
            until=T(3, "23:59:59", 999),
            generated_at=T(4, "00:00:00"),
        )
        text = render_markdown(data)
        for heading in (
            "# Access review report",
            "## Summary",
            "## Logins per day",
            "## System admins",
            "## Team changes",
            "## Role changes",
            "## Service accounts created and deleted",
            "## Most active actors",
            "## Anomalies",
        ):
            assert f"\n{heading}\n" in f"\n{text}"
        assert re.search(r"(?<!\\)<script", text) is None and "\\<script\\>" in text
        assert "a\\|b" in text  # a pipe in a value does not split the table cell
        assert md("x_y _z_ [l](u)") == "x_y \\_z\\_ \\[l\\]\\(u\\)"


# ----------------------------------------------------------------------------- CLI
runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


class TestCli:
    def test_state_json_and_table(self, report_store: AuditStore) -> None:
        root = str(report_store.root)
        result = runner.invoke(
            app, ["-d", root, "state", "admins", "--at", "2026-01-02", "--format", "json"]
        )
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert [r["userId"] for r in data["rows"]] == ["user-2"]
        assert data["rows"][0]["grantedBy"]["id"] == "w0"
        assert data["at"] == "2026-01-02T23:59:59.999Z"
        assert "unknown" in data["note"]
        table = runner.invoke(
            app, ["-d", root, "state", "admins", "--at", "2026-01-04", "--diff", "2026-01-02"]
        )
        assert table.exit_code == 0, table.output
        assert "revoked" in table.stdout and "w4" in table.stdout
        assert "removal without a prior grant" in table.stdout

    def test_history_jsonl(self, report_store: AuditStore) -> None:
        result = runner.invoke(
            app,
            ["-d", str(report_store.root), "history", "--target-id", "user-2", "--format", "jsonl"],
        )
        assert result.exit_code == 0, result.output
        items = [json.loads(line) for line in result.stdout.splitlines()]
        assert [i["entry"]["id"] for i in items] == ["w0", "w2", "w3", "w4"]
        assert items[3]["changes"] == [{"field": "systemAdmin", "before": True, "after": False}]

    def test_usage_errors(self, report_store: AuditStore) -> None:
        root = str(report_store.root)
        assert runner.invoke(app, ["-d", root, "history"]).exit_code == 2
        bad = runner.invoke(
            app, ["-d", root, "state", "admins", "--at", "2026-01-01", "--diff", "2026-01-03"]
        )
        assert bad.exit_code == 2 and "after --at" in bad.stderr
        assert runner.invoke(app, ["-d", root, "state", "admins", "--team-id", "t"]).exit_code == 2

    def test_report_files(self, report_store: AuditStore, tmp_path: Path) -> None:
        root = str(report_store.root)
        html_file, md_file = tmp_path / "r.html", tmp_path / "r.md"
        for target in (html_file, md_file):
            result = runner.invoke(
                app,
                [
                    "-d",
                    root,
                    "report",
                    "--since",
                    "2026-01-02",
                    "--until",
                    "2026-01-03",
                    "-o",
                    str(target),
                ],
            )
            assert result.exit_code == 0, result.output
            assert "wrote" in result.stderr
        assert html_file.read_text().startswith("<!DOCTYPE html>")
        assert md_file.read_text().startswith("# Access review report")


# ----------------------------------------------------------------------------- sample_logs
class TestSampleLogs:
    """The answers the README shows, checked against the story in make_sample_logs.py."""

    def test_the_script_rebuilds_the_same_bytes(self, tmp_path: Path) -> None:
        script = SAMPLE / "make_sample_logs.py"
        subprocess.run(
            [sys.executable, str(script), "--out", str(tmp_path)], check=True, capture_output=True
        )
        built = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jsonl"))
        committed = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*.jsonl"))
        assert built == committed and len(built) == 10
        for name in built:
            assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name

    def test_admins_at_points_in_time(self) -> None:
        store = AuditStore(SAMPLE)

        def admins(at: str) -> list[tuple[str, str]]:
            rows = access_state(store, "admins", at=at).rows
            return [(r["organizationId"], r["userId"]) for r in rows]

        assert admins("2026-11-03T23:59:59.999Z") == [("org-456", "user-101")]
        assert admins("2026-11-04T12:00:00.000Z") == [
            ("org-456", "user-102"),
            ("org-457", "user-201"),
        ]
        assert admins("2026-11-11T23:59:59.999Z") == [
            ("org-456", "user-101"),
            ("org-457", "user-201"),
        ]

    def test_a_report_keeping_k_rows_keeps_the_first_k_alike(self) -> None:
        """With `keep`, a section keeps its first entries with the same changes (diffs are
        computed only for them) and the anomalies their first ones, every one counted."""
        store = AuditStore(SAMPLE)
        period = {
            "since": "2026-11-01T00:00:00.000Z",
            "until": "2026-11-30T23:59:59.999Z",
            "generated_at": "2026-12-01T00:00:00.000Z",
            "use_checkpoints": False,
        }
        every = report_data(store, **period)
        assert every.anomaly_total == len(every.anomalies) == 2
        for keep in (1, 2, 3):
            kept = report_data(store, **period, keep=keep)
            for name, items in every.sections.items():
                assert [i.as_dict() for i in kept.sections[name]] == [
                    i.as_dict() for i in items[:keep]
                ]
                assert kept.section_totals[name] == len(items)
            assert [a.as_dict() for a in kept.anomalies] == [
                a.as_dict() for a in every.anomalies[:keep]
            ]
            assert kept.anomaly_total == 2 and kept.totals() == every.totals()

    def test_every_action_and_the_anomalies(self) -> None:
        store = AuditStore(SAMPLE)
        data = report_data(
            store,
            since="2026-11-01T00:00:00.000Z",
            until="2026-11-30T23:59:59.999Z",
            generated_at="2026-12-01T00:00:00.000Z",
        )
        assert len(data.by_action) == 15
        assert sorted(a.kind for a in data.anomalies) == [
            "removal without a prior grant",
            "stored out of time order",
        ]
        developer = history(store, target_ids=("role-201",)).items
        assert developer[-1].entry["metadata"]["input"]["permissions"] == ["read", "deploy"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_report_renders_in_headless_chromium(report_store: AuditStore, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    data = build_report(
        report_store,
        since=T(2, "00:00:00"),
        until=T(3, "23:59:59", 999),
        generated_at=T(4, "00:00:00"),
    )
    page.write_text(render_html(data))
    shot = tmp_path / "shot.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=60,
        text=True,
    ).stdout
    # The browser parsed the hostile team name as text: no element was created from it.
    assert "<img" not in dom.lower() and "Access review report" in dom


JSON_ITEM = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["a", "b", "1"])),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from("xy"), inner),
    max_leaves=4,
)


@given(before=st.lists(JSON_ITEM, max_size=5), after=st.lists(JSON_ITEM, max_size=5))
def test_a_list_change_names_the_items_added_and_removed(
    before: list[Any], after: list[Any]
) -> None:
    """Items compare by their canonical JSON: 1, true and "1" differ, key order does not."""

    def key(item: Any) -> bytes:
        return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)

    (change,) = diff_attrs({"p": before}, {"p": after}, origin_known=True) or [None]
    if change is None:
        assert before == after
        return
    old, new = {key(i) for i in before}, {key(i) for i in after}
    assert change.added == tuple(i for i in after if key(i) not in old)
    assert change.removed == tuple(i for i in before if key(i) not in new)
