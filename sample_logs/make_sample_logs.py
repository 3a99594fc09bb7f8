#!/usr/bin/env python3
"""Build the repository's `sample_logs/` store, deterministically, with the auditcli Python API.

    python sample_logs/make_sample_logs.py            # rebuilds sample_logs/ next to this file
    python sample_logs/make_sample_logs.py --out DIR  # or somewhere else

The same script always writes the same bytes: explicit ids and times, a seeded random generator
for the logins, and the writer id "sample" (files are `date=YYYY-MM-DD/sample.jsonl`). Existing
partitions and `_…` store files in the target are deleted first. The store is redactable
(`audit init --redactable`: chain version 2 lines), so the docs' examples can redact it.

The story (UTC, 2026-11-02 … 2026-11-11), two organizations, every one of the 15 actions:

* org-456 "Acme": Alice (user-100) administers it but her own admin grant predates the log, so it
  appears in no state: the state before the first recorded event is unknown.
  - Bob (user-101): system admin on 11-02, revoked on 11-04, granted again on 11-05.
  - Carol (user-102): system admin from 11-04 to 11-11.
  - Teams Engineering (team-101), Security (team-102), Platform (team-103; deleted on 11-06
    while Erin and Bob are still in it), Data (team-104, created 11-10).
  - Role Developer (role-201) updated twice at the same millisecond on 11-03: the tie is broken
    by id, so [read, deploy] is the final value. Billing Manager (role-203) deleted on 11-07.
    An Auditor (role-202) update stamped 11-06 08:15 was stored after that day's later entries
    (an out-of-order import, reported as an anomaly).
  - Service accounts ci-bot (sa-301, deleted 11-06), deploy-bot (sa-302), metrics-exporter
    (sa-303, created 11-09). Erin and Frank are removed from the organization (Frank while
    still in Security: his membership ends with the removal).
* org-457 "Globex": Heidi (user-200) administers it; Ivan becomes system admin on 11-04; the
  removal of Judy's admin rights on 11-05 has no prior grant (the anomaly example).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from auditcli import AuditStore  # noqa: E402
from auditcli.store import init_store  # noqa: E402

SEED = 20261102
FIRST_DAY = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 10

PEOPLE: dict[str, tuple[str, str, str]] = {
    # id: (name, email, organization)
    "user-100": ("Alice Doe", "alice@acme.example.com", "org-456"),
    "user-101": ("Bob Smith", "bob@acme.example.com", "org-456"),
    "user-102": ("Carol Jones", "carol@acme.example.com", "org-456"),
    "user-103": ("Dave Brown", "dave@acme.example.com", "org-456"),
    "user-104": ("Erin Garcia", "erin@acme.example.com", "org-456"),
    "user-105": ("Frank Miller", "frank@acme.example.com", "org-456"),
    "user-106": ("Grace Davis", "grace@acme.example.com", "org-456"),
    "user-200": ("Heidi Lopez", "heidi@globex.example.com", "org-457"),
    "user-201": ("Ivan Wilson", "ivan@globex.example.com", "org-457"),
    "user-202": ("Judy Moore", "judy@globex.example.com", "org-457"),
    "user-203": ("Mallory Price", "mallory@globex.example.com", "org-457"),
}
TEAMS = {
    "team-101": "Engineering",
    "team-102": "Security",
    "team-103": "Platform",
    "team-104": "Data",
    "team-201": "Research",
}
ROLES = {
    "role-201": "Developer",
    "role-202": "Auditor",
    "role-203": "Billing Manager",
    "role-301": "Analyst",
}
ACCOUNTS = {
    "sa-301": "ci-bot",
    "sa-302": "deploy-bot",
    "sa-303": "metrics-exporter",
    "sa-401": "backup-agent",
}
DISPLAY = {
    "login": "User Login",
    "user_added": "User Added",
    "user_removed": "User Removed",
    "role_created": "Role Created",
    "role_updated": "Role Updated",
    "role_deleted": "Role Deleted",
    "team_created": "Team Created",
    "team_deleted": "Team Deleted",
    "user_added_to_team": "User Added to Team",
    "user_removed_from_team": "User Removed from Team",
    "user_role_changed_in_team": "User Role Changed in Team",
    "org_admin_added": "System Admin Added",
    "org_admin_removed": "System Admin Removed",
    "service_account_created": "Service Account Created",
    "service_account_deleted": "Service Account Deleted",
}
TARGET = {
    "login": "USER",
    "user_added": "USER",
    "user_removed": "USER",
    "org_admin_added": "USER",
    "org_admin_removed": "USER",
    "role_created": "ROLE",
    "role_updated": "ROLE",
    "role_deleted": "ROLE",
    "service_account_created": "SERVICE_ACCOUNT",
    "service_account_deleted": "SERVICE_ACCOUNT",
}  # every other action targets a TEAM


class Story:
    """Collects entries with explicit times; ids are UUIDv7-shaped and derived from the time
    and a sequence number, so ids of entries at the same millisecond sort in script order."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, bool, int, dict[str, Any]]] = []
        self.seq = 0

    def add(
        self,
        when: str,
        action: str,
        actor: str,
        target_id: str,
        description: str,
        *,
        metadata: dict[str, Any] | None = None,
        team_id: str | None = None,
        stored_late: bool = False,
    ) -> None:
        """Add one entry at `when` (`2026-11-02T09:00:00.000Z`)."""
        name, email, org = PEOPLE[actor]
        self.seq += 1
        moment = datetime.fromisoformat(when)
        ms = int(moment.timestamp() * 1000)
        tail = int.from_bytes(hashlib.sha256(f"sample-{self.seq}".encode()).digest()[:8], "big")
        value = ms << 80 | 0x7 << 76 | (self.seq & 0xFFF) << 64 | 0b10 << 62
        value |= tail & ((1 << 62) - 1)
        h = f"{value:032x}"
        entry = {
            "id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
            "description": description,
            "actorId": actor,
            "actorName": name,
            "actorEmail": email,
            "action": action,
            "actionDisplayName": DISPLAY[action],
            "target": TARGET.get(action, "TEAM"),
            "targetId": target_id,
            "metadata": metadata,
            "organizationId": org,
            "teamId": team_id,
            "createdAt": when,
        }
        self.entries.append((when[:10], stored_late, self.seq, entry))

    def stored_order(self) -> list[dict[str, Any]]:
        """Entries in the order they are appended: by day, by time (ties by sequence), with the
        `stored_late` ones at the end of their day, as a late import would leave them."""
        ordered = sorted(self.entries, key=lambda e: (e[0], e[1], e[3]["createdAt"], e[2]))
        return [entry for *_, entry in ordered]


def email(user: str) -> str:
    """The email of one of the sample people."""
    return PEOPLE[user][1]


def admin_events(s: Story) -> None:
    """Everything but the logins, in story order."""
    a, b, c, d, e, f, g = (f"user-10{n}" for n in range(7))
    h, i, j, m = "user-200", "user-201", "user-202", "user-203"

    def user_added(when: str, actor: str, user: str) -> None:
        s.add(
            when,
            "user_added",
            actor,
            user,
            f"{email(actor)} added user {email(user)}",
            metadata={"input": {"email": email(user), "role": "member"}},
        )

    def team(
        when: str, action: str, actor: str, team_id: str, user: str | None = None, **extra: Any
    ) -> None:
        name = TEAMS[team_id]
        meta: dict[str, Any] | None
        if action == "team_created":
            text = f"{email(actor)} created team {name}"
            meta = {"input": {"name": name, "description": f"The {name} team"}}
        elif action == "team_deleted":
            text, meta = f"{email(actor)} deleted team {name}", None
        else:
            assert user is not None
            meta = {"input": {"userId": user, **extra}}
            text = {
                "user_added_to_team": f"{email(actor)} added {email(user)} to team {name}",
                "user_removed_from_team": f"{email(actor)} removed {email(user)} from team {name}",
                "user_role_changed_in_team": (
                    f"{email(actor)} changed the role of {email(user)} in team {name}"
                ),
            }[action]
        s.add(when, action, actor, team_id, text, metadata=meta, team_id=team_id)

    def role(
        when: str, action: str, actor: str, role_id: str, perms: list[str] | None = None, **kw: Any
    ) -> None:
        name = ROLES[role_id]
        verb = action.split("_")[1]
        meta = None
        if action == "role_created":
            meta = {"input": {"name": name, "permissions": perms, "description": f"{name} role"}}
        elif action == "role_updated":
            meta = {"input": {"permissions": perms}}
        s.add(
            when, action, actor, role_id, f"{email(actor)} {verb} role {name}", metadata=meta, **kw
        )

    def account(
        when: str, action: str, actor: str, sa: str, perms: list[str] | None = None
    ) -> None:
        name = ACCOUNTS[sa]
        verb = "created" if action.endswith("created") else "deleted"
        meta = {"input": {"name": name, "permissions": perms}} if perms else None
        s.add(
            when, action, actor, sa, f"{email(actor)} {verb} service account {name}", metadata=meta
        )

    def admin(when: str, granted: bool, actor: str, user: str) -> None:
        if granted:
            s.add(
                when,
                "org_admin_added",
                actor,
                user,
                f"{email(actor)} made {email(user)} a system admin",
                metadata={"input": {"userId": user}},
            )
        else:
            s.add(
                when,
                "org_admin_removed",
                actor,
                user,
                f"{email(actor)} revoked system admin from {email(user)}",
            )

    # 2026-11-02: Acme and Globex set up their people, teams and roles.
    s.add(
        "2026-11-02T08:55:12.000Z",
        "login",
        a,
        a,
        f"{email(a)} logged in",
        metadata={"method": "sso"},
    )
    s.add(
        "2026-11-02T12:58:40.000Z",
        "login",
        h,
        h,
        f"{email(h)} logged in",
        metadata={"method": "password"},
    )
    for n, user in enumerate((b, c, d, e)):
        user_added(f"2026-11-02T09:0{n}:00.000Z", a, user)
    for n, team_id in enumerate(("team-101", "team-102", "team-103")):
        team(f"2026-11-02T09:3{n}:00.000Z", "team_created", a, team_id)
    team("2026-11-02T10:00:00.000Z", "user_added_to_team", a, "team-101", b, role="maintainer")
    team("2026-11-02T10:01:00.000Z", "user_added_to_team", a, "team-101", c, role="member")
    team("2026-11-02T10:02:00.000Z", "user_added_to_team", a, "team-102", d, role="member")
    team("2026-11-02T10:03:00.000Z", "user_added_to_team", a, "team-103", e, role="member")
    team("2026-11-02T10:04:00.000Z", "user_added_to_team", a, "team-103", b, role="member")
    role("2026-11-02T11:00:00.000Z", "role_created", a, "role-201", ["read", "write"])
    role("2026-11-02T11:05:00.000Z", "role_created", a, "role-202", ["audit", "read"])
    role("2026-11-02T11:10:00.000Z", "role_created", a, "role-203", ["billing", "read"])
    admin("2026-11-02T12:00:00.000Z", True, a, b)
    user_added("2026-11-02T13:00:00.000Z", h, i)
    user_added("2026-11-02T13:01:00.000Z", h, j)
    team("2026-11-02T13:30:00.000Z", "team_created", h, "team-201")
    team("2026-11-02T13:35:00.000Z", "user_added_to_team", h, "team-201", i, role="member")
    team("2026-11-02T13:36:00.000Z", "user_added_to_team", h, "team-201", j, role="maintainer")
    role("2026-11-02T14:00:00.000Z", "role_created", h, "role-301", ["export", "read"])

    # 2026-11-03: service accounts; Developer updated twice in the same millisecond.
    account("2026-11-03T09:15:00.000Z", "service_account_created", a, "sa-301", ["read", "write"])
    account("2026-11-03T10:20:00.000Z", "service_account_created", b, "sa-302", ["deploy", "read"])
    role("2026-11-03T14:05:10.250Z", "role_updated", b, "role-201", ["read", "write", "deploy"])
    role("2026-11-03T14:05:10.250Z", "role_updated", b, "role-201", ["read", "deploy"])
    team(
        "2026-11-03T15:00:00.000Z",
        "user_role_changed_in_team",
        b,
        "team-101",
        c,
        **{"from": "member", "to": "maintainer"},
    )

    # 2026-11-04: Bob's admin rights revoked, Carol's granted; Frank joins.
    admin("2026-11-04T09:00:00.000Z", False, a, b)
    admin("2026-11-04T09:05:00.000Z", True, a, c)
    admin("2026-11-04T10:00:00.000Z", True, h, i)
    user_added("2026-11-04T11:00:00.000Z", a, f)
    team("2026-11-04T11:10:00.000Z", "user_added_to_team", a, "team-102", f, role="member")

    # 2026-11-05: Bob granted again; Judy's admin rights removed though never granted.
    admin("2026-11-05T10:00:00.000Z", True, a, b)
    admin("2026-11-05T15:30:00.000Z", False, h, j)

    # 2026-11-06: Platform deleted with members in it; ci-bot deleted; a late import.
    team("2026-11-06T09:00:00.000Z", "team_deleted", a, "team-103")
    account("2026-11-06T11:00:00.000Z", "service_account_deleted", b, "sa-301")
    team(
        "2026-11-06T16:00:00.000Z",
        "user_role_changed_in_team",
        c,
        "team-102",
        d,
        **{"from": "member", "to": "maintainer"},
    )
    role(
        "2026-11-06T08:15:00.000Z",
        "role_updated",
        a,
        "role-202",
        ["audit", "export", "read"],
        stored_late=True,
    )

    # 2026-11-07 … 11: deletions, removals, a new team, the end of Carol's admin rights.
    role("2026-11-07T10:00:00.000Z", "role_deleted", a, "role-203")
    user_added("2026-11-07T12:00:00.000Z", a, g)
    account("2026-11-07T11:00:00.000Z", "service_account_created", h, "sa-401", ["read"])
    team("2026-11-08T09:30:00.000Z", "user_removed_from_team", c, "team-102", d)
    s.add("2026-11-08T14:00:00.000Z", "user_removed", a, e, f"{email(a)} removed user {email(e)}")
    account("2026-11-08T16:00:00.000Z", "service_account_deleted", i, "sa-401")
    team(
        "2026-11-09T09:00:00.000Z",
        "user_role_changed_in_team",
        h,
        "team-201",
        i,
        **{"from": "member", "to": "maintainer"},
    )
    s.add("2026-11-09T10:00:00.000Z", "user_removed", a, f, f"{email(a)} removed user {email(f)}")
    account("2026-11-09T11:00:00.000Z", "service_account_created", b, "sa-303", ["metrics", "read"])
    team("2026-11-10T09:00:00.000Z", "team_created", c, "team-104")
    team("2026-11-10T09:10:00.000Z", "user_added_to_team", c, "team-104", g, role="member")
    team("2026-11-10T09:20:00.000Z", "user_added_to_team", c, "team-104", b, role="member")
    team("2026-11-10T10:00:00.000Z", "user_removed_from_team", h, "team-201", j)
    user_added("2026-11-10T10:30:00.000Z", h, m)
    team(
        "2026-11-10T13:00:00.000Z",
        "user_role_changed_in_team",
        c,
        "team-104",
        g,
        **{"from": "member", "to": "maintainer"},
    )
    admin("2026-11-11T09:00:00.000Z", False, b, c)
    role("2026-11-11T10:00:00.000Z", "role_updated", h, "role-301", ["audit", "export", "read"])


#: When each person can log in: (first, last) instants; None = the whole period.
ACTIVE = {
    "user-101": ("2026-11-02T09:00:00", None),
    "user-102": ("2026-11-02T09:01:00", None),
    "user-103": ("2026-11-02T09:02:00", None),
    "user-104": ("2026-11-02T09:03:00", "2026-11-08T14:00:00"),
    "user-105": ("2026-11-04T11:00:00", "2026-11-09T10:00:00"),
    "user-106": ("2026-11-07T12:00:00", None),
    "user-201": ("2026-11-02T13:00:00", None),
    "user-202": ("2026-11-02T13:01:00", None),
    "user-203": ("2026-11-10T10:30:00", None),
}


def logins(s: Story) -> None:
    """Two to five logins per person and working day, at seeded random times."""
    rng = random.Random(SEED)
    for day in range(DAYS):
        start = FIRST_DAY + timedelta(days=day, hours=7)
        for user in PEOPLE:
            first, last = ACTIVE.get(user, (None, None))
            low = max(start, datetime.fromisoformat(first + "Z")) if first else start
            high = start + timedelta(hours=12)
            if last:
                high = min(high, datetime.fromisoformat(last + "Z"))
            if high <= low:
                continue
            span_ms = int((high - low).total_seconds() * 1000)
            for offset in sorted(rng.randrange(1, span_ms) for _ in range(rng.randint(2, 5))):
                moment = low + timedelta(milliseconds=offset)
                when = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
                method = rng.choice(("sso", "sso", "password"))
                s.add(
                    when,
                    "login",
                    user,
                    user,
                    f"{email(user)} logged in",
                    metadata={"method": method},
                )


def main(argv: list[str] | None = None) -> int:
    """Rebuild the sample store; print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="the log directory to (re)build")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for child in out.iterdir():  # the old store, not this script or a README
        if child.name.startswith(("date=", "_")):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    story = Story()
    admin_events(story)
    logins(story)
    entries = story.stored_order()
    # A salt derived from each entry, so the files are the same bytes at every run (sample data:
    # a real store's salts are random, or a redacted value could be guessed back).
    store = AuditStore(
        out, writer_id="sample", salt=lambda content: hashlib.sha256(content).digest()[:16]
    )
    # A redactable store (chain version 2 lines), so the docs' examples can redact them.
    store.ensure_root()  # marks the directory, which also holds this script
    init_store(out, redactable=True)
    report = store.append(entries)
    actions = {entry["action"] for entry in entries}
    print(f"wrote {report.written} entries ({len(actions)} actions) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
