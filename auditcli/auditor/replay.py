"""The access model (`Replay`): admins, organization members, teams and their members, roles
and service accounts, advanced one entry at a time in time order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditcli.errors import UsageError

from .model import (
    _MISSING,
    KINDS,
    SCOPE_OF_ACTION,
    Anomaly,
    Change,
    Cite,
    _input_of,
    _text,
    cite_of,
    diff_attrs,
    show_value,
)


@dataclass
class _Member:
    role: Any
    cite: Cite  # the entry that set the current role
    since: Cite  # the entry that added the user


@dataclass
class _Resource:
    """A team, role, service account, organization member or system-admin grant."""

    org: str
    rid: str
    cite: Cite  # the entry that granted / created it or last set its attributes
    created: Cite | None  # None: it predates the recorded history
    attrs: dict[str, Any] = field(default_factory=dict)
    members: dict[str, _Member] = field(default_factory=dict)  # teams only


class Replay:
    """The access model, advanced one entry at a time in time order.

    `apply(entry)` returns the changes the entry made; contradictions collect in `anomalies`.
    `rows(kind)` is the state now: one dict per grant, each citing the entry behind it."""

    def __init__(
        self, *, track_changes: bool = True, keep_journal: bool = False, stamp_emails: bool = False
    ) -> None:
        #: Without it, apply() keeps the state but skips the attribute diffs (state is faster).
        self.track = track_changes
        #: With it, every grant and end is kept in `journal` (diffs between two instants).
        self.keep_journal = keep_journal
        self.admins: dict[tuple[str, str], _Resource] = {}
        self.users: dict[tuple[str, str], _Resource] = {}
        self.teams: dict[tuple[str, str], _Resource] = {}
        self.roles: dict[tuple[str, str], _Resource] = {}
        self.accounts: dict[tuple[str, str], _Resource] = {}
        self.anomalies: list[Anomaly] = []
        #: (kind, key) -> the entry that ended a grant, for diffs ("revoked by …").
        self.ended: dict[tuple[str, tuple[str, ...]], Cite] = {}
        #: Grants ended as a side effect (team deleted, user removed): a later explicit removal
        #: of the same grant is expected, not an anomaly.
        self.implicit: dict[tuple[str, tuple[str, ...]], Cite] = {}
        #: Deleted teams / roles / service accounts / removed users: (kind, org, id) -> entry.
        self.deleted: dict[tuple[str, str, str], Cite] = {}
        #: Every grant (True) and end (False) in order: (kind, key, granted, entry).
        self.journal: list[tuple[str, tuple[str, ...], bool, Cite]] = []
        self._target = ""
        #: user id -> email, from actors and `user_added` metadata: labels for admin rows.
        self.emails: dict[str, str] = {}
        #: With `stamp_emails`, the same per (organization, scope of the action): user id ->
        #: (createdAt, id, email) of the last entry that taught it. A checkpoint keeps them so
        #: that a replay of some organizations or some actions can be resumed from it.
        self.email_groups: dict[tuple[str, str], dict[str, tuple[str, str, str]]] | None = (
            {} if stamp_emails else None
        )
        self._group: dict[str, tuple[str, str, str]] = {}
        self._cite: Cite | None = None

    # ------------------------------------------------------------------ helpers
    def _learn_email(self, user: str, email: str) -> None:
        self.emails[user] = email
        if self.email_groups is not None and self._cite is not None:
            self._group[user] = (self._cite.createdAt, self._cite.id, email)

    def _flag(self, kind: str, cite: Cite, detail: str) -> None:
        scope = SCOPE_OF_ACTION.get(cite.action, "")
        self.anomalies.append(Anomaly(kind, cite, detail, self._target, scope))

    def _end(self, kind: str, key: tuple[str, ...], cite: Cite, *, implicit: bool) -> None:
        if self.keep_journal:
            self.journal.append((kind, key, False, cite))
        self.ended[(kind, key)] = cite
        if implicit:
            self.implicit[(kind, key)] = cite
        else:
            self.implicit.pop((kind, key), None)

    def _grant(self, kind: str, key: tuple[str, ...], cite: Cite) -> None:
        if self.keep_journal:
            self.journal.append((kind, key, True, cite))
        self.ended.pop((kind, key), None)
        self.implicit.pop((kind, key), None)

    def _no_grant(self, kind: str, key: tuple[str, ...], cite: Cite, what: str) -> bool:
        """Report a removal of something not granted; False when an earlier cascade ended it."""
        earlier = self.implicit.pop((kind, key), None)
        if earlier is not None:
            return False
        self._flag(
            "removal without a prior grant",
            cite,
            f"{what} was not granted in the recorded history (it may predate the first "
            "recorded entry)",
        )
        return True

    def _diff(
        self, known: dict[str, Any], new: dict[str, Any], *, origin_known: bool
    ) -> list[Change]:
        return diff_attrs(known, new, origin_known=origin_known) if self.track else []

    # ------------------------------------------------------------------ applying
    def apply(self, entry: dict[str, Any]) -> list[Change]:
        """Apply one entry (in time order); return the changes it made."""
        cite = cite_of(entry)
        self._target = entry["targetId"]
        if self.email_groups is not None:
            group = (entry["organizationId"], SCOPE_OF_ACTION.get(entry["action"], ""))
            self._cite, self._group = cite, self.email_groups.setdefault(group, {})
        if entry.get("actorEmail"):
            self._learn_email(entry["actorId"], entry["actorEmail"])
        handler = _HANDLERS.get(entry["action"])
        if handler is None:
            return []
        return handler(self, entry, cite)

    def _admin(self, entry: dict[str, Any], cite: Cite, granted: bool) -> list[Change]:
        org, user = entry["organizationId"], entry["targetId"]
        key = (org, user)
        current = self.admins.get(key)
        if granted:
            if current is not None:
                self._flag(
                    "duplicate grant",
                    cite,
                    f"{user} is already a system admin of {org} since {current.cite.createdAt} "
                    f"(entry {current.cite.id}); the earlier grant is kept",
                )
                return []
            self.admins[key] = _Resource(org, user, cite, cite)
            self._grant("admins", key, cite)
            return [Change("systemAdmin", False, True)]
        if current is None:
            if self._no_grant("admins", key, cite, f"system admin of {org} for {user}"):
                return [Change("systemAdmin", None, False, before_known=False)]
            return []  # already ended when the user left the organization
        del self.admins[key]
        self._end("admins", key, cite, implicit=False)
        return [Change("systemAdmin", True, False)]

    def _user(self, entry: dict[str, Any], cite: Cite, added: bool) -> list[Change]:
        org, user = entry["organizationId"], entry["targetId"]
        key = (org, user)
        current = self.users.get(key)
        attrs = _input_of(entry)
        if added:
            if current is not None:
                self._flag(
                    "duplicate grant",
                    cite,
                    f"{user} is already a member of {org} since {current.cite.createdAt}",
                )
                changes: list[Change] = self._diff(current.attrs, attrs, origin_known=True)
                current.attrs.update(attrs)
                return changes
            self.users[key] = _Resource(org, user, cite, cite, dict(attrs))
            if _text(attrs.get("email")):
                self._learn_email(user, attrs["email"])
            self.deleted.pop(("users", org, user), None)
            self._grant("users", key, cite)
            return [Change("member", False, True), *self._diff({}, attrs, origin_known=True)]
        changes = []
        if current is None:
            known = not self._no_grant("users", key, cite, f"membership of {org} for {user}")
            changes.append(Change("member", False if known else None, False, known))
        else:
            del self.users[key]
            self._end("users", key, cite, implicit=False)
            changes.append(Change("member", True, False))
        self.deleted[("users", org, user)] = cite
        # Leaving the organization ends the user's admin grant and team memberships there.
        if (org, user) in self.admins:
            del self.admins[(org, user)]
            self._end("admins", (org, user), cite, implicit=True)
            changes.append(Change("systemAdmin", True, False))
        left = []
        for (team_org, team_id), team in self.teams.items():
            if team_org == org and user in team.members:
                del team.members[user]
                self._end("teams", (org, team_id, user), cite, implicit=True)
                left.append(team_id)
        if left:
            changes.append(Change("teams", sorted(left), [], True, (), tuple(sorted(left))))
        return changes

    def _resource_table(self, kind: str) -> dict[tuple[str, str], _Resource]:
        return {"teams": self.teams, "roles": self.roles, "service-accounts": self.accounts}[kind]

    def _created(self, kind: str, entry: dict[str, Any], cite: Cite) -> list[Change]:
        org, rid = entry["organizationId"], entry["targetId"]
        table = self._resource_table(kind)
        attrs = _input_of(entry)
        current = table.get((org, rid))
        if current is not None:
            since = current.created.createdAt if current.created else "before the recorded history"
            self._flag(
                "duplicate grant", cite, f"{_noun(kind)} {rid} already exists (created {since})"
            )
            changes = self._diff(current.attrs, attrs, origin_known=current.created is not None)
            current.attrs.update(attrs)
            current.cite = cite
            return changes
        table[(org, rid)] = _Resource(org, rid, cite, cite, dict(attrs))
        self.deleted.pop((kind, org, rid), None)
        self._grant(kind, (org, rid), cite)
        return [Change("exists", False, True), *self._diff({}, attrs, origin_known=True)]

    def _existing(self, kind: str, org: str, rid: str, cite: Cite) -> _Resource:
        """The resource an update names; one never created in the log predates it (no
        anomaly), one deleted in the log is an anomaly; either way it is taken to exist."""
        table = self._resource_table(kind)
        current = table.get((org, rid))
        if current is None:
            gone = self.deleted.get((kind, org, rid))
            if gone is not None:
                self._flag(
                    "event after deletion",
                    cite,
                    f"{_noun(kind)} {rid} was deleted at {gone.createdAt} (entry {gone.id})",
                )
            current = table[(org, rid)] = _Resource(org, rid, cite, None)
            self.deleted.pop((kind, org, rid), None)
            self._grant(kind, (org, rid), cite)
        return current

    def _updated(self, kind: str, entry: dict[str, Any], cite: Cite) -> list[Change]:
        current = self._existing(kind, entry["organizationId"], entry["targetId"], cite)
        attrs = _input_of(entry)
        changes = self._diff(current.attrs, attrs, origin_known=current.created is not None)
        current.attrs.update(attrs)
        current.cite = cite
        return changes

    def _deleted(self, kind: str, entry: dict[str, Any], cite: Cite) -> list[Change]:
        org, rid = entry["organizationId"], entry["targetId"]
        table = self._resource_table(kind)
        current = table.pop((org, rid), None)
        if current is None:
            gone = self.deleted.get((kind, org, rid))
            detail = (
                f"{_noun(kind)} {rid} was already deleted at {gone.createdAt} (entry {gone.id})"
                if gone
                else f"{_noun(kind)} {rid} was never created in the recorded history"
            )
            self._flag("removal without a prior grant", cite, detail)
            self.deleted[(kind, org, rid)] = cite
            return [Change("exists", None, False, before_known=False)]
        self.deleted[(kind, org, rid)] = cite
        self._end(kind, (org, rid), cite, implicit=False)
        changes = [Change("exists", True, False)]
        if current.members:
            gone_members = sorted(current.members)
            for user in gone_members:
                self._end("teams", (org, rid, user), cite, implicit=True)
            changes.append(Change("members", gone_members, [], True, (), tuple(gone_members)))
        return changes

    def _member(self, entry: dict[str, Any], cite: Cite) -> list[Change]:
        action, org = entry["action"], entry["organizationId"]
        team_id = entry.get("teamId") or entry["targetId"]
        data = _input_of(entry)
        user = _text(data.get("userId"))
        if user is None:
            self._flag("missing metadata", cite, "metadata.input.userId is missing: not applied")
            return []
        key = (org, team_id, user)
        label = f"role of {user}"
        if action == "user_removed_from_team":
            # A removal never brings a deleted team back.
            team = self.teams.get((org, team_id))
            member = team.members.get(user) if team else None
            if team is None or member is None:
                if self._no_grant("teams", key, cite, f"membership of team {team_id} for {user}"):
                    return [Change(label, None, None, before_known=False)]
                return []  # already ended by the team's deletion or the user's removal
            del team.members[user]
            self._end("teams", key, cite, implicit=False)
            return [
                Change("members", None, None, True, (), (user,)),
                Change(label, member.role, None),
            ]
        team = self._existing("teams", org, team_id, cite)
        member = team.members.get(user)
        if action == "user_added_to_team":
            role = data.get("role")
            if member is not None:
                self._flag(
                    "duplicate grant",
                    cite,
                    f"{user} is already in team {team_id} since {member.since.createdAt}",
                )
                before = member.role
                member.role, member.cite = role, cite
                return [Change(label, before, role)] if before != role else []
            team.members[user] = _Member(role, cite, cite)
            self._grant("teams", key, cite)
            return [Change("members", None, None, True, (user,), ()), Change(label, None, role)]
        # user_role_changed_in_team
        new_role, said_before = data.get("to"), data.get("from", _MISSING)
        if member is None:
            self._flag(
                "role change for a non-member",
                cite,
                f"{user} is not a member of team {team_id} in the recorded history; "
                "taken as a member from this entry on",
            )
            team.members[user] = _Member(new_role, cite, cite)
            self._grant("teams", key, cite)
            before = None if said_before is _MISSING else said_before
            return [Change(label, before, new_role, before_known=said_before is not _MISSING)]
        if said_before is not _MISSING and said_before != member.role:
            self._flag(
                "role mismatch",
                cite,
                f"the entry changes {user}'s role in team {team_id} from {show_value(said_before)} "
                "but the recorded "
                f"role is {show_value(member.role)} (set at {member.cite.createdAt}, entry "
                f"{member.cite.id})",
            )
        before = member.role
        member.role, member.cite = new_role, cite
        return [Change(label, before, new_role)]

    # ------------------------------------------------------------------ state
    def rows(self, kind: str) -> list[dict[str, Any]]:
        """The state now, one dict per grant (sorted), each citing its entry as `grantedBy`."""
        if kind not in KINDS:
            raise UsageError(f"unknown state {kind!r}: expected one of {', '.join(KINDS)}")
        rows: list[dict[str, Any]] = []
        if kind == "admins":
            for (org, user), grant in sorted(self.admins.items()):
                rows.append(
                    {
                        "organizationId": org,
                        "userId": user,
                        "email": self.emails.get(user),
                        "grantedBy": grant.cite.as_dict(),
                    }
                )
        elif kind == "users":
            for (org, user), grant in sorted(self.users.items()):
                rows.append(
                    {
                        "organizationId": org,
                        "userId": user,
                        "email": grant.attrs.get("email"),
                        "role": grant.attrs.get("role"),
                        "grantedBy": grant.cite.as_dict(),
                    }
                )
        elif kind == "teams":
            for (org, team_id), team in sorted(self.teams.items()):
                base = {
                    "organizationId": org,
                    "teamId": team_id,
                    "teamName": team.attrs.get("name"),
                    "teamCreatedBy": team.created.as_dict() if team.created else None,
                }
                # The team itself first (userId null), then one row per member.
                rows.append(
                    {
                        **base,
                        "userId": None,
                        "role": None,
                        "memberSince": None,
                        "grantedBy": (team.created or team.cite).as_dict(),
                    }
                )
                for user, member in sorted(team.members.items()):
                    rows.append(
                        {
                            **base,
                            "userId": user,
                            "role": member.role,
                            "memberSince": member.since.createdAt,
                            "grantedBy": member.cite.as_dict(),
                        }
                    )
        else:
            id_field = "roleId" if kind == "roles" else "serviceAccountId"
            for (org, rid), res in sorted(self._resource_table(kind).items()):
                rows.append(
                    {
                        "organizationId": org,
                        id_field: rid,
                        "name": res.attrs.get("name"),
                        "permissions": res.attrs.get("permissions"),
                        "createdBy": res.created.as_dict() if res.created else None,
                        "grantedBy": res.cite.as_dict(),
                    }
                )
        return rows

    # ------------------------------------------------------------------ snapshots
    def _tables(self) -> dict[str, dict[tuple[str, str], _Resource]]:
        return {
            "admins": self.admins,
            "users": self.users,
            "teams": self.teams,
            "roles": self.roles,
            "service-accounts": self.accounts,
        }

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON data (no anomalies, journal or diffs): what `resumed` restores.
        One part per kind (`admins`, `users`, …: its grants, ends and deletions, each citation
        written once in the part's `cites` and referred to by position), so that a question
        about one kind reads only its part, and `emails` (per organization and scope: needs
        `stamp_emails`)."""
        if self.email_groups is None:
            raise ValueError("a snapshot needs a replay made with stamp_emails=True")
        parts: dict[str, Any] = {}
        for kind, table in self._tables().items():
            # Keyed by a plain tuple of the fields: hashing the dataclass costs ten times more.
            numbers: dict[tuple[str, str, str, str, str], int] = {}

            def ref(
                cite: Cite, numbers: dict[tuple[str, str, str, str, str], int] = numbers
            ) -> int:
                key = (cite.id, cite.createdAt, cite.actorId, cite.actor, cite.action)
                number = numbers.get(key)
                if number is None:
                    number = numbers[key] = len(numbers)
                return number

            part = {
                "table": [
                    [
                        res.org,
                        res.rid,
                        ref(res.cite),
                        ref(res.created) if res.created is not None else None,
                        res.attrs,
                        [
                            [user, m.role, ref(m.cite), ref(m.since)]
                            for user, m in res.members.items()
                        ],
                    ]
                    for res in table.values()
                ],
                "ended": [[*key, ref(c)] for (k, key), c in self.ended.items() if k == kind],
                "implicit": [[*key, ref(c)] for (k, key), c in self.implicit.items() if k == kind],
                "deleted": [
                    [org, rid, ref(c)] for (k, org, rid), c in self.deleted.items() if k == kind
                ],
            }
            part["cites"] = list(numbers)
            parts[kind] = part
        parts["emails"] = [
            [org, scope, user, *stamp]
            for (org, scope), learnt in self.email_groups.items()
            for user, stamp in learnt.items()
        ]
        return parts

    @classmethod
    def resumed(
        cls,
        parts: dict[str, Any],
        *,
        org_ids: tuple[str, ...] = (),
        scopes: frozenset[str],
        kinds: frozenset[str] | None = None,
        **options: bool,
    ) -> Replay:
        """A replay in the state `snapshot` saved, as if only the entries of `org_ids` (all
        when empty) whose actions are of `scopes` had been applied: each grant and end is
        kept per organization and kind, and each email per organization and scope. `parts`
        needs `emails` and the part of each kind in `scopes`. With `kinds`, only the tables
        of those kinds are restored (a caller that shows only them saves the rest)."""
        replay = cls(**options)
        orgs = set(org_ids)
        tables = replay._tables()
        for kind, table in tables.items():
            if kind not in scopes or (kinds is not None and kind not in kinds):
                continue
            part = parts[kind]
            cites = [Cite(*cite) for cite in part["cites"]]
            for org, rid, cite, created, attrs, members in part["table"]:
                if orgs and org not in orgs:
                    continue
                table[(org, rid)] = _Resource(
                    org,
                    rid,
                    cites[cite],
                    cites[created] if created is not None else None,
                    attrs,
                    {
                        user: _Member(role, cites[c], cites[since])
                        for user, role, c, since in members
                    },
                )
            for name in ("ended", "implicit"):
                target = getattr(replay, name)
                for *key, cite in part[name]:
                    if not orgs or key[0] in orgs:
                        target[(kind, tuple(key))] = cites[cite]
            for org, rid, cite in part["deleted"]:
                if not orgs or org in orgs:
                    replay.deleted[(kind, org, rid)] = cites[cite]
        latest: dict[str, tuple[str, str, str]] = {}
        for org, scope, user, created, entry_id, email in parts["emails"]:
            if (not orgs or org in orgs) and scope in scopes:
                # The entries were applied in (createdAt, id) order: the latest one taught it.
                stamp = (created, entry_id, email)
                if user not in latest or stamp[:2] > latest[user][:2]:
                    latest[user] = stamp
        replay.emails = {user: email for user, (_, _, email) in latest.items()}
        if replay.email_groups is not None:
            for org, scope, user, created, entry_id, email in parts["emails"]:
                if (not orgs or org in orgs) and scope in scopes:
                    group = replay.email_groups.setdefault((org, scope), {})
                    group[user] = (created, entry_id, email)
        return replay


def _noun(kind: str) -> str:
    return {"teams": "team", "roles": "role", "service-accounts": "service account"}[kind]


_HANDLERS: dict[str, Any] = {
    "org_admin_added": lambda r, e, c: r._admin(e, c, True),
    "org_admin_removed": lambda r, e, c: r._admin(e, c, False),
    "user_added": lambda r, e, c: r._user(e, c, True),
    "user_removed": lambda r, e, c: r._user(e, c, False),
    "team_created": lambda r, e, c: r._created("teams", e, c),
    "team_deleted": lambda r, e, c: r._deleted("teams", e, c),
    "role_created": lambda r, e, c: r._created("roles", e, c),
    "role_updated": lambda r, e, c: r._updated("roles", e, c),
    "role_deleted": lambda r, e, c: r._deleted("roles", e, c),
    "service_account_created": lambda r, e, c: r._created("service-accounts", e, c),
    "service_account_deleted": lambda r, e, c: r._deleted("service-accounts", e, c),
    "user_added_to_team": lambda r, e, c: r._member(e, c),
    "user_removed_from_team": lambda r, e, c: r._member(e, c),
    "user_role_changed_in_team": lambda r, e, c: r._member(e, c),
}


def row_key(kind: str, row: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a grant across instants (the row's subject, not its citation)."""
    if kind == "admins":
        return (row["organizationId"], row["userId"])
    if kind == "users":
        return (row["organizationId"], row["userId"])
    if kind == "teams":
        return (row["organizationId"], row["teamId"], row["userId"] or "")
    if kind == "roles":
        return (row["organizationId"], row["roleId"])
    return (row["organizationId"], row["serviceAccountId"])


def _row_value(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    # What counts as "changed": everything but the citations and labels that only describe
    # (an admin row's email is learnt from any entry, so it may appear later).
    ignored = {"grantedBy", "teamCreatedBy", "createdBy", "memberSince"}
    if kind == "admins":
        ignored.add("email")
    return {k: v for k, v in row.items() if k not in ignored}
