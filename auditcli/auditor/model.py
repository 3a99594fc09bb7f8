"""The vocabulary of the auditor questions: which actions change which state, and the value
types every answer is made of (citations, anomalies, before → after changes, timeline items)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

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


# ----------------------------------------------------------------------------- value types
class Cite(NamedTuple):
    """The entry a fact comes from: its id, time, actor and action. (Value types made once per
    entry replayed are named tuples: a frozen dataclass costs four times as much to make.)"""

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


class Change(NamedTuple):
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


_STRINGS = frozenset((str,))


def _list_diff(before: list[Any], after: list[Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Items of `after` not in `before`, and of `before` not in `after`, in list order."""
    if _STRINGS.issuperset(map(type, before)) and _STRINGS.issuperset(map(type, after)):
        # Lists of strings (permissions, members: nearly all) are their own keys; a history
        # diffs thousands of them.
        old, new = set(before), set(after)
        return tuple([i for i in after if i not in old]), tuple([i for i in before if i not in new])
    # Each item's key is computed once.
    old_keys, new_keys = list(map(_item_key, before)), list(map(_item_key, after))
    old, new = set(old_keys), set(new_keys)
    added = tuple(item for item, key in zip(after, new_keys, strict=True) if key not in old)
    removed = tuple(item for item, key in zip(before, old_keys, strict=True) if key not in new)
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


def learn_labels(labels: dict[str, str], entry: dict[str, Any]) -> None:
    """Learn the display names an entry gives: actor id -> email, user id -> email (from
    `user_added`), team / role / service account id -> name."""
    if entry.get("actorEmail"):
        labels[entry["actorId"]] = entry["actorEmail"]
    data = _input_of(entry)
    name, mail = _text(data.get("name")), _text(data.get("email"))
    if entry["action"] == "user_added" and mail:
        labels[entry["targetId"]] = mail
    elif name and entry["target"] in ("TEAM", "ROLE", "SERVICE_ACCOUNT"):
        labels[entry["targetId"]] = name
