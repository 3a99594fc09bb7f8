"""What auditors ask: a resource's timeline with before → after changes, the access state at an
instant, what changed between two instants, and the data of the access-review report.

Everything here is a *replay*: the entries are read in time order (`createdAt`, ties broken by
`id`, the same order as `audit query --order asc`) and applied to an in-memory model of system
admins, organization members, teams with their members, custom roles and service accounts. The
order is the entries' own time, never the order in which they were stored, so entries imported
late still land where they belong; being stored out of time order is itself reported.

Metadata conventions the replay reads (the API leaves `metadata` free-form; these are the
shapes `sample_logs/` and `benchmarks/gen_entries.py` use):

* `org_admin_added` / `org_admin_removed`, `user_added` / `user_removed`: `targetId` is the user.
* `team_created` / `team_deleted`: `targetId` is the team (`teamId` too);
  `metadata.input.name` is the team's name.
* `user_added_to_team`: `targetId` = `teamId` = the team, `metadata.input.userId` the user,
  `metadata.input.role` the role in the team. `user_removed_from_team`: `metadata.input.userId`.
  `user_role_changed_in_team`: `metadata.input.userId`, `.from` and `.to`.
* `role_created` / `role_updated`: `targetId` is the role, `metadata.input` holds its attributes
  (`name`, `permissions`, `description`, …); an update is diffed against the last known values
  (lists as added / removed items). `service_account_created` likewise.
* Removing a user from the organization ends their system-admin grant and team memberships;
  deleting a team ends its memberships. Both are cited as the entry that ended them.

Nothing before the first recorded entry is known: a grant older than the log is invisible.
Contradictions (a removal with no prior grant, a second grant, a role change whose `from` is not
the recorded role, an event on a deleted team) are reported as anomalies and never hidden.
"""

from __future__ import annotations

import functools
import gc
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import orjson

from . import chain
from .errors import UsageError
from .progress import Progress
from .query import Filters, Problem, QueryEngine, entry_of, split_lines
from .store import AuditStore
from .timeparse import parse_utc

F = TypeVar("F", bound=Callable[..., Any])
KINDS: tuple[str, ...] = ("admins", "teams", "users", "roles", "service-accounts")
TEAM_MEMBER_ACTIONS = ("user_added_to_team", "user_removed_from_team", "user_role_changed_in_team")
#: Actions that change access state (every builtin action but `login`).
STATE_ACTIONS: tuple[str, ...] = (
    "user_added",
    "user_removed",
    "role_created",
    "role_updated",
    "role_deleted",
    "team_created",
    "team_deleted",
    *TEAM_MEMBER_ACTIONS,
    "org_admin_added",
    "org_admin_removed",
    "service_account_created",
    "service_account_deleted",
)
#: The state each action changes (its anomalies are about that state).
SCOPE_OF_ACTION: dict[str, str] = {
    "org_admin_added": "admins",
    "org_admin_removed": "admins",
    "user_added": "users",
    "user_removed": "users",
    "team_created": "teams",
    "team_deleted": "teams",
    **dict.fromkeys(TEAM_MEMBER_ACTIONS, "teams"),
    "role_created": "roles",
    "role_updated": "roles",
    "role_deleted": "roles",
    "service_account_created": "service-accounts",
    "service_account_deleted": "service-accounts",
}
#: The actions a kind of state is replayed from: its own, and the organization's users
#: (removing a user ends their admin grant and team memberships).
KIND_READS: dict[str, tuple[str, ...]] = {
    kind: tuple(a for a, scope in SCOPE_OF_ACTION.items() if scope in (kind, "users"))
    if kind in ("admins", "teams")
    else tuple(a for a, scope in SCOPE_OF_ACTION.items() if scope == kind)
    for kind in KINDS
}
UNKNOWN_BEFORE_NOTE = "state before the first recorded event is unknown"
#: An entry stored after one of the same file stamped more than this much later is reported as
#: stored out of time order (smaller gaps are concurrent writers racing, not a late import).
OUT_OF_ORDER_TOLERANCE = timedelta(seconds=1)
_ACTION_KEY = b',"action":"'
_LOGIN = b"login"
_CASCADES = frozenset((b"team_deleted", b"user_removed"))
#: Lines read between two progress reports (a report costs far more than skipping a line).
_PROGRESS_EVERY = 4096


# ----------------------------------------------------------------------------- value types
@dataclass(frozen=True)
class Cite:
    """The entry a fact comes from: its id, time, actor and action."""

    id: str
    createdAt: str  # the API's field names
    actorId: str
    actor: str
    action: str

    def as_dict(self) -> dict[str, str]:
        """JSON form."""
        return {
            "id": self.id,
            "createdAt": self.createdAt,
            "actorId": self.actorId,
            "actor": self.actor,
            "action": self.action,
        }


def cite_of(entry: dict[str, Any]) -> Cite:
    """The citation of an entry: who (email, else name, else id), when, which entry."""
    actor = entry.get("actorEmail") or entry.get("actorName") or entry["actorId"]
    return Cite(entry["id"], entry["createdAt"], entry["actorId"], str(actor), entry["action"])


@dataclass(frozen=True)
class Anomaly:
    """An entry that contradicts what the log recorded before it, or was stored out of order.
    `target_id` is the entry's targetId (a team for team membership entries)."""

    kind: str
    entry: Cite
    detail: str
    target_id: str = ""
    scope: str = ""  # the state it concerns: admins, users, teams, roles, service-accounts

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kind": self.kind,
            "entry": self.entry.as_dict(),
            "targetId": self.target_id,
            "state": self.scope,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        where = f"{self.entry.createdAt} {self.entry.action} {self.entry.id}"
        return f"{where}: {self.kind}: {self.detail}"


_MISSING = object()


@dataclass(frozen=True)
class Change:
    """One before → after change an entry made; lists also as the items added and removed.

    `before_known` is False when the value before is not in the recorded history (the resource
    predates the log, or earlier entries did not carry that attribute)."""

    field: str
    before: Any
    after: Any
    before_known: bool = True
    added: tuple[Any, ...] | None = None
    removed: tuple[Any, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form; `before` is null and `beforeUnknown` true when it is not known."""
        data: dict[str, Any] = {"field": self.field, "before": self.before, "after": self.after}
        if not self.before_known:
            data["beforeUnknown"] = True
        if self.added is not None:
            data["added"] = list(self.added)
        if self.removed is not None:
            data["removed"] = list(self.removed)
        return data

    def text(self) -> str:
        """One line for people: `permissions: +deploy −write` or `role: member → maintainer`."""
        if self.added is not None and self.removed is not None:
            parts = [f"+{show_value(item)}" for item in self.added]
            parts += [f"−{show_value(item)}" for item in self.removed]
            text = f"{self.field}: {' '.join(parts) or '(unchanged)'}"
            # A list's new value too (membership changes carry only the items).
            if isinstance(self.after, list) and self.field not in ("members", "teams"):
                return f"{text} = {show_value(self.after)}"
            return text
        before = show_value(self.before) if self.before_known else "(unknown)"
        return f"{self.field}: {before} → {show_value(self.after)}"


def show_value(value: Any) -> str:
    """A metadata value for people: lists joined, null as `—`, objects as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(show_value(item) for item in value) + "]"
    return orjson.dumps(value).decode()


def _item_key(item: Any) -> Any:
    # Strings compare as themselves; objects and lists (unhashable) by their canonical JSON.
    return item if isinstance(item, str) else orjson.dumps(item, option=orjson.OPT_SORT_KEYS)


def _list_diff(before: list[Any], after: list[Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Items of `after` not in `before`, and of `before` not in `after`, in list order."""
    old = {_item_key(item) for item in before}
    new = {_item_key(item) for item in after}
    added = tuple(item for item in after if _item_key(item) not in old)
    removed = tuple(item for item in before if _item_key(item) not in new)
    return added, removed


def diff_attrs(
    known: dict[str, Any], new: dict[str, Any], *, origin_known: bool, skip: Iterable[str] = ()
) -> list[Change]:
    """The changes `new` makes to the attributes `known`. An attribute missing from `known` was
    absent when the resource was created in the log (`origin_known`), else it is unknown."""
    changes = []
    skipped = set(skip)
    for name, after in new.items():
        if name in skipped:
            continue
        before = known.get(name, _MISSING)
        if before is _MISSING and not origin_known:
            changes.append(Change(name, None, after, before_known=False))
            continue
        before = None if before is _MISSING else before
        if before == after:
            continue
        if isinstance(after, list) and isinstance(before, list | None):
            added, removed = _list_diff(before or [], after)
            changes.append(Change(name, before, after, True, added, removed))
        else:
            changes.append(Change(name, before, after))
    return changes


def _input_of(entry: dict[str, Any]) -> dict[str, Any]:
    metadata = entry.get("metadata")
    value = metadata.get("input") if isinstance(metadata, dict) else None
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# ----------------------------------------------------------------------------- the model
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

    def __init__(self, *, track_changes: bool = True, keep_journal: bool = False) -> None:
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
        self.applied = 0
        self._target = ""
        #: user id -> email, from actors and `user_added` metadata: labels for admin rows.
        self.emails: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers
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
        self.applied += 1
        if entry.get("actorEmail"):
            self.emails[entry["actorId"]] = entry["actorEmail"]
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
                self.emails[user] = attrs["email"]
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


# ----------------------------------------------------------------------------- reading
def _pausing_cyclic_gc(function: F) -> F:
    """Run `function` with the cyclic garbage collector paused.

    A replay allocates hundreds of thousands of small objects that are never cyclic garbage;
    the collector walking them again and again doubled the run time on a million entries.
    Reference counting still frees everything; the collector resumes when the call returns
    (by then the replay's objects are gone)."""

    @functools.wraps(function)
    def paused(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused  # type: ignore[return-value]


def first_recorded(store: AuditStore, org_ids: tuple[str, ...] = ()) -> str | None:
    """The `createdAt` of the earliest entry (of these organizations): where knowledge starts."""
    engine = QueryEngine(store, Filters(org_ids=org_ids), order="asc")
    for day in engine.days():
        lines = engine.day_lines(day)
        if lines:
            return lines[0][chain.CREATED_START : chain.CREATED_END].decode()
    return None


_STAMP_AT_END = re.compile(
    rb'"createdAt":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)","_chain":"sha256:[0-9a-f]{64}"\}\n'
)


def storage_order_anomalies(store: AuditStore, filters: Filters) -> list[Anomaly]:
    """Entries stored after an entry of the same file stamped more than
    OUT_OF_ORDER_TOLERANCE later: imported or recorded late. Their place in the replay is their
    own time, but a report produced before they arrived said something else.

    Reads each file's bytes once and compares only the timestamps (found by their fixed place
    at the end of each line); lines are split and parsed only around a finding."""
    matcher = QueryEngine(store, filters).matcher
    first = filters.since[:10] if filters.since else None
    last = filters.until[:10] if filters.until else None
    found = []
    for day in store.days(first, last):
        for file in store.files(day):
            latest = b""
            latest_at: tuple[bytes, int] = (b"", 0)  # (chunk, index of its line) of `latest`
            number = 0
            for chunk in store.lines(file).chunks():
                stamps = _STAMP_AT_END.findall(chunk)
                if len(stamps) != chunk.count(b"\n"):
                    # A damaged line (the query engine reports it): take the lines one by one.
                    stamps = [
                        line[chain.CREATED_START : chain.CREATED_END]
                        if chain.is_chained_line(line)
                        else b""
                        for line in split_lines(chunk)
                    ]
                lines: list[bytes] | None = None
                for index, created in enumerate(stamps):
                    if created >= latest:
                        latest, latest_at = created, (chunk, index)
                        continue
                    if not created:
                        continue
                    gap = parse_utc(latest.decode()) - parse_utc(created.decode())
                    if gap <= OUT_OF_ORDER_TOLERANCE:
                        continue
                    lines = lines if lines is not None else split_lines(chunk)
                    line = lines[index]
                    if not matcher(line):
                        continue
                    try:
                        entry = entry_of(line)
                    except ValueError:
                        continue  # corrupted inside: the query engine reports it
                    later = split_lines(latest_at[0])[latest_at[1]]
                    later_id = later[7 : later.index(b'"', 7)].decode()
                    found.append(
                        Anomaly(
                            "stored out of time order",
                            cite_of(entry),
                            f"{file.name} line {number + index + 1} was stored after entry "
                            f"{later_id} stamped {latest.decode()} ({_duration(gap)} later): "
                            "imported or recorded late",
                            entry["targetId"],
                            SCOPE_OF_ACTION.get(entry["action"], ""),
                        )
                    )
                number += len(stamps)
    found.sort(key=lambda a: (a.entry.createdAt, a.entry.id))
    return found


def _duration(gap: timedelta) -> str:
    seconds = int(gap.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# ----------------------------------------------------------------------------- state
@dataclass
class StateResult:
    """The access state of one kind at `at`, optionally compared with the state at `diff_from`."""

    kind: str
    at: str
    rows: list[dict[str, Any]]
    first_recorded: str | None
    anomalies: list[Anomaly]
    problems: list[Problem]
    org_ids: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = ()
    diff_from: str | None = None
    granted: list[dict[str, Any]] = field(default_factory=list)
    revoked: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    #: Granted after `diff_from` and revoked again before `at`: {key, grantedBy, revokedBy}.
    transient: list[dict[str, Any]] = field(default_factory=list)

    @property
    def note(self) -> str:
        """The plain statement of what the state can and cannot know."""
        if self.first_recorded is None:
            return f"The log has no entries: {UNKNOWN_BEFORE_NOTE}."
        if self.at < self.first_recorded:
            return (
                f"{self.at} is before the first recorded entry ({self.first_recorded}): "
                "nothing is known at that instant."
            )
        return (
            f"Computed from the entries up to {self.at}; the first recorded entry is at "
            f"{self.first_recorded}: {UNKNOWN_BEFORE_NOTE} (grants older than the log do not "
            "appear)."
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        data: dict[str, Any] = {
            "state": self.kind,
            "at": self.at,
            "filters": {"organizationId": list(self.org_ids), "teamId": list(self.team_ids)},
            "firstRecorded": self.first_recorded,
            "note": self.note,
            "rows": self.rows,
        }
        if self.diff_from is not None:
            data["diff"] = {
                "from": self.diff_from,
                "to": self.at,
                "granted": self.granted,
                "revoked": self.revoked,
                "changed": self.changed,
                "grantedThenRevoked": self.transient,
            }
        data["anomalies"] = [a.as_dict() for a in self.anomalies]
        data["problems"] = [str(p) for p in self.problems]
        return data


def action_of(line: bytes) -> bytes:
    """The action of a stored line, from its bytes. The key's first occurrence is the field
    (it comes before metadata, and a quote inside a JSON string is escaped); action names are
    snake_case, so the value has no escapes."""
    start = line.find(_ACTION_KEY) + len(_ACTION_KEY)
    return line[start : line.find(b'"', start)]


def _select(
    kind: str, rows: list[dict[str, Any]], team_ids: tuple[str, ...]
) -> list[dict[str, Any]]:
    if team_ids and kind == "teams":
        return [row for row in rows if row["teamId"] in team_ids]
    return rows


@_pausing_cyclic_gc
def access_state(
    store: AuditStore,
    kind: str,
    *,
    at: str,
    org_ids: tuple[str, ...] = (),
    team_ids: tuple[str, ...] = (),
    diff_from: str | None = None,
    progress: Progress | None = None,
) -> StateResult:
    """The `kind` state (admins, teams, users, roles, service-accounts) at the canonical instant
    `at`, from the entries up to it; with `diff_from`, also what was granted, revoked or
    changed between that earlier instant and `at`. `team_ids` narrows team rows (and the
    anomalies about teams) to those teams. `progress` hears of the entries read."""
    if kind not in KINDS:
        raise UsageError(f"unknown state {kind!r}: expected one of {', '.join(KINDS)}")
    if diff_from is not None and diff_from > at:
        raise UsageError(f"--diff {diff_from} is after --at {at}")
    if team_ids and kind != "teams":
        raise UsageError("--team-id applies to `audit state teams` only")
    # Only the actions this state is replayed from are parsed; the rest are skipped by their
    # bytes (cheaper than asking the engine to match a dozen actions).
    filters = Filters(org_ids=org_ids, until=at)
    engine = QueryEngine(store, filters, order="asc")
    reads = frozenset(action.encode() for action in KIND_READS[kind])
    replay = Replay(track_changes=False, keep_journal=diff_from is not None)
    before_rows: list[dict[str, Any]] | None = None
    journal_from = 0
    for n, line in enumerate(engine.stream(), 1):
        if progress is not None and n % _PROGRESS_EVERY == 1:
            progress(n)
        if action_of(line) not in reads:
            continue
        if (
            diff_from is not None
            and before_rows is None
            and line[chain.CREATED_START : chain.CREATED_END].decode() > diff_from
        ):
            before_rows, journal_from = replay.rows(kind), len(replay.journal)
        replay.apply(entry_of(line))
    if diff_from is not None and before_rows is None:
        before_rows, journal_from = replay.rows(kind), len(replay.journal)
    rows = _select(kind, replay.rows(kind), team_ids)
    # Only the anomalies about this kind of state (and these teams).
    anomalies = [
        a
        for a in replay.anomalies + storage_order_anomalies(store, filters)
        if a.scope == kind and (not team_ids or a.target_id in team_ids)
    ]
    anomalies.sort(key=lambda a: (a.entry.createdAt, a.entry.id))
    result = StateResult(
        kind,
        at,
        rows,
        first_recorded(store, org_ids),
        anomalies,
        engine.problems,
        org_ids,
        team_ids,
        diff_from,
    )
    if before_rows is not None:
        _fill_diff(result, replay, _select(kind, before_rows, team_ids), journal_from)
    return result


def _fill_diff(
    result: StateResult, replay: Replay, before_rows: list[dict[str, Any]], journal_from: int
) -> None:
    kind = result.kind
    before = {row_key(kind, row): row for row in before_rows}
    after = {row_key(kind, row): row for row in result.rows}
    for key, row in after.items():
        old = before.get(key)
        if old is None:
            result.granted.append(row)
        elif _row_value(kind, old) != _row_value(kind, row) or old["grantedBy"] != row["grantedBy"]:
            # Same value, another grant: it was revoked and granted again in between.
            regranted = _row_value(kind, old) == _row_value(kind, row)
            result.changed.append({"before": old, "after": row, "regranted": regranted})
    for key, row in before.items():
        if key not in after:
            ended_key = (kind, key) if kind != "teams" or key[2] else ("teams", key[:2])
            ender = replay.ended.get(ended_key)
            result.revoked.append({**row, "revokedBy": ender.as_dict() if ender else None})
    # Granted after FROM and gone again by TO: in neither snapshot, but access that existed.
    opened: dict[tuple[str, ...], Cite] = {}
    for entry_kind, key, granted, cite in replay.journal[journal_from:]:
        if entry_kind != kind:
            continue
        full = key if kind != "teams" or len(key) == 3 else (*key, "")
        if full in before or full in after:
            continue
        if kind == "teams" and result.team_ids and full[1] not in result.team_ids:
            continue
        if granted:
            opened.setdefault(full, cite)
        elif full in opened:
            result.transient.append(
                {
                    "key": list(full),
                    "grantedBy": opened.pop(full).as_dict(),
                    "revokedBy": cite.as_dict(),
                }
            )


# ----------------------------------------------------------------------------- history
@dataclass
class TimelineItem:
    """One entry of a timeline with the changes it made and any anomalies about it."""

    entry: dict[str, Any]
    changes: list[Change]
    anomalies: list[Anomaly] = field(default_factory=list)
    via: str | None = None  # why it was selected when not by targetId / actorId

    def as_dict(self) -> dict[str, Any]:
        """JSON form: the entry, its changes, anomalies (and `via` when set)."""
        data: dict[str, Any] = {
            "entry": self.entry,
            "changes": [c.as_dict() for c in self.changes],
            "anomalies": [a.as_dict() for a in self.anomalies],
        }
        if self.via:
            data["via"] = self.via
        return data


@dataclass
class HistoryResult:
    """A chronological timeline (oldest first) of one resource or one actor."""

    items: list[TimelineItem]
    first_recorded: str | None
    problems: list[Problem]
    target_ids: tuple[str, ...] = ()
    actor_ids: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "targetId": list(self.target_ids),
            "actorId": list(self.actor_ids),
            "firstRecorded": self.first_recorded,
            "note": f"first recorded entry {self.first_recorded}: {UNKNOWN_BEFORE_NOTE}",
            "total": len(self.items),
            "items": [item.as_dict() for item in self.items],
            "problems": [str(p) for p in self.problems],
        }


@_pausing_cyclic_gc
def history(
    store: AuditStore,
    *,
    target_ids: tuple[str, ...] = (),
    actor_ids: tuple[str, ...] = (),
    org_ids: tuple[str, ...] = (),
    since: str | None = None,
    until: str | None = None,
    progress: Progress | None = None,
) -> HistoryResult:
    """The timeline of the resources `target_ids` (entries whose targetId is one of them, and
    team membership entries whose metadata.input.userId is one of them), or of what the actors
    `actor_ids` did, oldest first, each with its before → after changes.

    Changes depend on what came before, so the entries up to `until` that can change the
    selected resources are replayed: those naming one of them as a JSON string (targetId,
    metadata.input.userId), and every team deletion and user removal (they end memberships).
    Other lines are skipped by their bytes, without being parsed. `progress` hears of the
    entries read."""
    if not target_ids and not actor_ids:
        raise UsageError("give --target-id or --actor-id")
    selected = QueryEngine(store, Filters(target_ids=target_ids, actor_ids=actor_ids)).matcher
    engine = QueryEngine(store, Filters(org_ids=org_ids, until=until), order="asc")
    mentioned = set(target_ids) or _touched_by(store, actor_ids, org_ids, until)
    # A busy actor touches many resources: past a few dozen names, a regex alternation costs
    # more than parsing every state-changing line.
    names = _mention_pattern(mentioned) if len(mentioned) <= 32 else None
    replay = Replay()
    items: list[TimelineItem] = []
    by_id: dict[str, TimelineItem] = {}
    wanted_users = set(target_ids)
    for n, line in enumerate(engine.stream(), 1):
        if progress is not None and n % _PROGRESS_EVERY == 1:
            progress(n)
        hit = selected(line)
        if not hit and (
            (action := action_of(line)) == _LOGIN
            or not (action in _CASCADES or names is None or names.search(line))
        ):
            continue
        entry = entry_of(line)
        seen = len(replay.anomalies)
        changes = replay.apply(entry)
        via = None
        if not hit and wanted_users and entry["action"] in TEAM_MEMBER_ACTIONS and not actor_ids:
            user = _input_of(entry).get("userId")
            if user in wanted_users:
                hit, via = True, f"metadata.input.userId = {user}"
        elif not hit and wanted_users and entry["action"] == "team_deleted" and not actor_ids:
            # The deletion ended these users' memberships: part of their timeline too.
            ended = {u for c in changes if c.field == "members" for u in c.removed or ()}
            if ended & wanted_users:
                users = ", ".join(sorted(ended & wanted_users))
                hit, via = True, f"team deleted with {users} in it"
        if not hit or (since is not None and entry["createdAt"] < since):
            continue
        item = TimelineItem(entry, changes, replay.anomalies[seen:], via)
        items.append(item)
        by_id[entry["id"]] = item
    period = Filters(org_ids=org_ids, since=since, until=until)
    for anomaly in storage_order_anomalies(store, period):
        if anomaly.entry.id in by_id:
            by_id[anomaly.entry.id].anomalies.append(anomaly)
    first = first_recorded(store, org_ids)
    return HistoryResult(items, first, engine.problems, target_ids, actor_ids)


def _mention_pattern(ids: set[str]) -> re.Pattern[bytes]:
    """Matches a line naming one of `ids` as a whole JSON string."""
    if not ids:
        return re.compile(rb"(?!)")  # matches nothing
    return re.compile(b"|".join(re.escape(orjson.dumps(i)) for i in sorted(ids)))


def _touched_by(
    store: AuditStore, actor_ids: tuple[str, ...], org_ids: tuple[str, ...], until: str | None
) -> set[str]:
    """The resources (and team members) the actors' state-changing entries are about."""
    touched: set[str] = set()
    engine = QueryEngine(store, Filters(actor_ids=actor_ids, org_ids=org_ids, until=until))
    for line in engine.stream():
        if action_of(line) == _LOGIN:
            continue
        entry = entry_of(line)
        touched.add(entry["targetId"])
        user = _input_of(entry).get("userId")
        if isinstance(user, str):
            touched.add(user)
    return touched


# ----------------------------------------------------------------------------- report data
SECTION_ACTIONS: dict[str, tuple[str, ...]] = {
    "admins": ("org_admin_added", "org_admin_removed"),
    "users": ("user_added", "user_removed"),
    "teams": ("team_created", "team_deleted", *TEAM_MEMBER_ACTIONS),
    "roles": ("role_created", "role_updated", "role_deleted"),
    "service-accounts": ("service_account_created", "service_account_deleted"),
}


@dataclass
class ReportData:
    """Everything the access-review report shows, computed in one pass over the log."""

    since: str
    until: str
    org_ids: tuple[str, ...]
    generated_at: str
    first_recorded: str | None
    total: int = 0
    by_action: Counter[str] = field(default_factory=Counter)
    logins_per_day: dict[str, int] = field(default_factory=dict)
    actors: Counter[str] = field(default_factory=Counter)
    actor_names: dict[str, str] = field(default_factory=dict)
    actor_admin_actions: Counter[str] = field(default_factory=Counter)
    sections: dict[str, list[TimelineItem]] = field(default_factory=dict)
    #: Entries of each section in the period (a section keeps at most `keep` items).
    section_totals: Counter[str] = field(default_factory=Counter)
    admins_at_start: list[dict[str, Any]] = field(default_factory=list)
    admins_at_end: list[dict[str, Any]] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    integrity: dict[str, Any] = field(default_factory=dict)
    #: Display names seen in the log: user id -> email, team / role / account id -> name.
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def note(self) -> str:
        """What the report cannot know."""
        start = self.first_recorded or "(no entries)"
        return f"The first recorded entry is at {start}: {UNKNOWN_BEFORE_NOTE}."

    def top_actors(self, limit: int = 10) -> list[tuple[str, str, int, int, int]]:
        """(actorId, display, entries, logins, state changes), busiest first, ties by id."""
        ranked = sorted(self.actors.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return [
            (
                actor,
                self.actor_names.get(actor, actor),
                count,
                count - self.actor_admin_actions.get(actor, 0),
                self.actor_admin_actions.get(actor, 0),
            )
            for actor, count in ranked
        ]

    def totals(self) -> list[tuple[str, int]]:
        """The headline numbers, labelled."""
        count = self.by_action.get
        return [
            ("Entries in the period", self.total),
            ("Logins", count("login", 0)),
            ("Distinct actors", len(self.actors)),
            ("System admin grants", count("org_admin_added", 0)),
            ("System admin revocations", count("org_admin_removed", 0)),
            ("Users added / removed", count("user_added", 0) + count("user_removed", 0)),
            ("Team changes", sum(count(a, 0) for a in SECTION_ACTIONS["teams"])),
            ("Role changes", sum(count(a, 0) for a in SECTION_ACTIONS["roles"])),
            ("Service accounts created", count("service_account_created", 0)),
            ("Service accounts deleted", count("service_account_deleted", 0)),
            ("Anomalies", len(self.anomalies)),
        ]

    def as_dict(self) -> dict[str, Any]:
        """JSON form (used by tests and for machine consumption)."""
        return {
            "since": self.since,
            "until": self.until,
            "organizationId": list(self.org_ids),
            "generatedAt": self.generated_at,
            "firstRecorded": self.first_recorded,
            "totals": dict(self.totals()),
            "byAction": dict(sorted(self.by_action.items())),
            "loginsPerDay": self.logins_per_day,
            "topActors": [
                {"actorId": a, "actor": n, "entries": c, "logins": lg, "changes": ch}
                for a, n, c, lg, ch in self.top_actors()
            ],
            "sections": {
                name: [item.as_dict() for item in items] for name, items in self.sections.items()
            },
            "adminsAtStart": self.admins_at_start,
            "adminsAtEnd": self.admins_at_end,
            "anomalies": [a.as_dict() for a in self.anomalies],
            "problems": [str(p) for p in self.problems],
            "integrity": self.integrity,
            "note": self.note,
        }


def _days_between(since: str, until: str) -> list[str]:
    first, last = parse_utc(since).date(), parse_utc(until).date()
    days: list[str] = []
    while first <= last and len(days) < 3700:
        days.append(first.isoformat())
        first += timedelta(days=1)
    return days


def _learn_labels(labels: dict[str, str], entry: dict[str, Any]) -> None:
    if entry.get("actorEmail"):
        labels[entry["actorId"]] = entry["actorEmail"]
    data = _input_of(entry)
    name, mail = _text(data.get("name")), _text(data.get("email"))
    if entry["action"] == "user_added" and mail:
        labels[entry["targetId"]] = mail
    elif name and entry["target"] in ("TEAM", "ROLE", "SERVICE_ACCOUNT"):
        labels[entry["targetId"]] = name


_ACTOR_KEY = b',"actorId":"'


def _actor_id_of(line: bytes) -> str | None:
    """The actorId of a stored line from its bytes (the key's first occurrence is the field:
    a quote inside a JSON string is escaped); None when the value has an escape in it."""
    start = line.find(_ACTOR_KEY) + len(_ACTOR_KEY)
    end = line.find(b'"', start)
    raw = line[start:end]
    if start < len(_ACTOR_KEY) or b"\\" in raw:
        return None
    return raw.decode()


@_pausing_cyclic_gc
def report_data(
    store: AuditStore,
    *,
    since: str,
    until: str,
    generated_at: str,
    org_ids: tuple[str, ...] = (),
    keep: int | None = None,
    progress: Progress | None = None,
) -> ReportData:
    """The access-review report's data for [since, until] (canonical, inclusive): totals,
    logins per day, the admin / user / team / role / service-account changes with their
    before → after changes, system admins at the start and end, the busiest actors, and the
    anomalies of the period. Entries before `since` are replayed (not counted) so that state
    and changes are right. Each section keeps its first `keep` entries (None: all) and counts
    the rest in `section_totals`. `progress` hears of the entries read."""
    if since > until:
        raise UsageError(f"--since {since} is after --until {until}")
    data = ReportData(since, until, org_ids, generated_at, first_recorded(store, org_ids))
    data.logins_per_day = dict.fromkeys(_days_between(since, until), 0)
    data.sections = {name: [] for name in SECTION_ACTIONS}
    section_of = {action: name for name, actions in SECTION_ACTIONS.items() for action in actions}
    engine = QueryEngine(store, Filters(org_ids=org_ids, until=until), order="asc")
    replay = Replay()
    started = False
    since_bytes = since.encode()
    for n, line in enumerate(engine.stream(), 1):
        if progress is not None and n % _PROGRESS_EVERY == 1:
            progress(n)
        created = line[chain.CREATED_START : chain.CREATED_END]
        in_period = created >= since_bytes
        is_login = action_of(line) == _LOGIN
        if not in_period and is_login:
            continue
        if in_period and not started:
            data.admins_at_start = replay.rows("admins")
            started = True
        if is_login:
            # Most entries are logins: count them from their bytes, parse one per actor.
            actor = _actor_id_of(line)
            if actor is not None and actor in data.actor_names:
                data.total += 1
                data.by_action["login"] += 1
                data.actors[actor] += 1
                day = created[:10].decode()
                data.logins_per_day[day] = data.logins_per_day.get(day, 0) + 1
                continue
        replay.track = in_period  # before the period only the state matters, not the diffs
        entry = entry_of(line)
        seen = len(replay.anomalies)
        changes = replay.apply(entry)
        _learn_labels(data.labels, entry)
        if not in_period:
            continue
        action, actor = entry["action"], entry["actorId"]
        data.total += 1
        data.by_action[action] += 1
        data.actors[actor] += 1
        data.actor_names.setdefault(actor, cite_of(entry).actor)
        if action == "login":
            day = entry["createdAt"][:10]
            data.logins_per_day[day] = data.logins_per_day.get(day, 0) + 1
        else:
            data.actor_admin_actions[actor] += 1
        section = section_of.get(action)
        if section is not None:
            data.section_totals[section] += 1
            if keep is None or len(data.sections[section]) < keep:
                item = TimelineItem(entry, changes, replay.anomalies[seen:])
                data.sections[section].append(item)
    if not started:
        data.admins_at_start = replay.rows("admins")
    data.admins_at_end = replay.rows("admins")
    period = Filters(org_ids=org_ids, since=since, until=until)
    data.anomalies = [a for a in replay.anomalies if a.entry.createdAt >= since]
    data.anomalies += storage_order_anomalies(store, period)
    data.anomalies.sort(key=lambda a: (a.entry.createdAt, a.entry.id))
    data.problems = engine.problems
    return data
