"""`history`: the timeline of resources or actors, each entry with the changes it made."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from auditcli.errors import UsageError
from auditcli.progress import Progress
from auditcli.query import Filters, Problem, QueryEngine, entry_of
from auditcli.store import AuditStore

from .model import TEAM_MEMBER_ACTIONS, UNKNOWN_BEFORE_NOTE, TimelineItem, _input_of
from .reading import (
    _CASCADES,
    _LOGIN,
    _PROGRESS_EVERY,
    _pausing_cyclic_gc,
    action_of,
    first_recorded,
    storage_order_anomalies,
)
from .replay import Replay


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
