"""`history`: the timeline of resources or actors, each entry with the changes it made."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson

from auditcli.errors import UsageError
from auditcli.progress import Progress
from auditcli.query import Filters, Problem, QueryEngine, entry_of, sort_key
from auditcli.store import AuditStore

from .checkpoints import Checkpoints, anomaly_of
from .model import TEAM_MEMBER_ACTIONS, UNKNOWN_BEFORE_NOTE, Anomaly, TimelineItem, _input_of
from .reading import (
    _CASCADES,
    _LOGIN,
    _PROGRESS_EVERY,
    _pausing_cyclic_gc,
    action_of,
    first_recorded,
    id_of,
    storage_order_anomalies,
    storage_order_in_day,
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
    use_index: bool = True,
) -> HistoryResult:
    """The timeline of the resources `target_ids` (entries whose targetId is one of them, and
    team membership entries whose metadata.input.userId is one of them), or of what the actors
    `actor_ids` did, oldest first, each with its before → after changes.

    Changes depend on what came before, so the entries up to `until` that can change the
    selected resources are replayed. For `target_ids`: the entries whose targetId is one of
    them, the team membership entries whose metadata.input.userId is one of them (found through
    the per-target index, `Checkpoints.members`), and the team deletions (and creations) and
    user removals of the teams and users those entries link them to; all read through the
    line indexes, so the answer costs the resource's own entries. For `actor_ids`: the entries
    naming one of the resources they touched as a JSON string, and every team deletion and user
    removal; other lines are skipped by their bytes. `progress` hears of the entries read.
    `use_index=False` scans every day for the same lines (the reference the tests compare
    with); the answer is the same either way."""
    if not target_ids and not actor_ids:
        raise UsageError("give --target-id or --actor-id")
    selected = QueryEngine(store, Filters(target_ids=target_ids, actor_ids=actor_ids)).matcher
    base = Filters(org_ids=org_ids, until=until)
    reader: _TargetReader | None = None
    engine: QueryEngine | None = None
    if actor_ids:
        engine = QueryEngine(store, base, order="asc")
        lines = _mentioning(engine, selected, _touched_by(store, actor_ids, org_ids, until))
    else:
        reader = _TargetReader(store, base, target_ids, use_index)
        lines = reader.lines()
    replay = Replay()
    items: list[TimelineItem] = []
    by_id: dict[str, TimelineItem] = {}
    wanted_users = set(target_ids)
    for n, line in enumerate(lines, 1):
        if progress is not None and n % _PROGRESS_EVERY == 1:
            progress(n)
        hit = selected(line)
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
    if engine is not None:
        stored = storage_order_anomalies(store, Filters(org_ids=org_ids, since=since, until=until))
        first, problems = first_recorded(store, org_ids), engine.problems
    else:
        assert reader is not None
        days = {reader.day_of[item.entry["id"]] for item in items}
        stored, first = reader.storage_order(days, by_id), reader.first_recorded(org_ids)
        problems = reader.problems  # once every line was read
    for anomaly in stored:
        if anomaly.entry.id in by_id:
            by_id[anomaly.entry.id].anomalies.append(anomaly)
    return HistoryResult(items, first, problems, target_ids, actor_ids)


def _mentioning(engine: QueryEngine, selected: Any, mentioned: set[str]) -> Iterator[bytes]:
    """The lines of `engine` that `selected` accepts, name one of `mentioned` as a JSON string,
    or end memberships (team deletions, user removals); the rest skipped by their bytes."""
    # A busy actor touches many resources: past a few dozen names, a regex alternation costs
    # more than parsing every state-changing line.
    names = _mention_pattern(mentioned) if len(mentioned) <= 32 else None
    for line in engine.stream():
        if selected(line) or not (
            (action := action_of(line)) == _LOGIN
            or not (action in _CASCADES or names is None or names.search(line))
        ):
            yield line


_MEMBER_ACTIONS = frozenset(action.encode() for action in TEAM_MEMBER_ACTIONS)
#: What a resource is linked to can end (or restart) its memberships: a team's deletion (and
#: its creation again, after which an event on it is no anomaly), a member's removal.
_LINK_ENDS = ("team_created", "team_deleted", "user_removed")


class _TargetReader:
    """The lines a history of resources replays, read through the line indexes and the
    per-target index: those naming a resource as targetId, the membership lines naming it as
    metadata.input.userId, and the team creations and deletions and user removals of what those
    lines link it to (its teams, or its members). A day without a per-target index (today's,
    a damaged one, a store that cannot be written) is scanned for the same lines: the answer
    does not depend on the index."""

    def __init__(
        self, store: AuditStore, base: Filters, target_ids: tuple[str, ...], use_index: bool
    ) -> None:
        """`base`: the organization and `until` filters; `use_index`: read the per-target
        index (else scan every day)."""
        self.store, self.base, self.use_index = store, base, use_index
        self.wanted = frozenset(target_ids)
        self.pattern = _mention_pattern(set(target_ids))
        self.checkpoints = Checkpoints(store)
        self.named = QueryEngine(store, replace(base, target_ids=target_ids), order="asc")
        self.scan = QueryEngine(store, base, order="asc")
        self.engines = [self.named, self.scan]
        self.met: list[Problem] = []  # what the engines not kept met
        #: The day (partition) each line read came from, by entry id.
        self.day_of: dict[str, str] = {}

    @property
    def problems(self) -> list[Problem]:
        """What the readings met, each reported once."""
        found = [p for engine in self.engines for p in engine.problems]
        return list(dict.fromkeys([*found, *self.met]))

    def lines(self) -> Iterator[bytes]:
        """The lines to replay, in order (createdAt, id)."""
        picked: dict[str, list[bytes]] = {}
        linked: set[str] = set()  # the teams of the resources, and the members of them
        for day in self.scan.days():
            teams = self._teams_of(day)
            if teams is None:  # no per-target index: scanned for the same lines
                lines = [line for line in self.scan.day_stream(day) if self._names(line)]
            else:
                lines = self.named.day_stream(day)
                if teams:
                    lines = sorted({*lines, *self._membership_lines(day, teams)}, key=sort_key)
            for line in lines:
                self.day_of[id_of(line)] = day
                if action_of(line) in _MEMBER_ACTIONS:
                    linked.update(self._links(line))
            picked[day] = lines
        cascades = None
        if linked:
            ends = replace(self.base, actions=_LINK_ENDS, target_ids=tuple(sorted(linked)))
            cascades = QueryEngine(self.store, ends, order="asc")
            self.engines.append(cascades)
        for day, lines in picked.items():
            if cascades is not None:
                extra = cascades.day_stream(day)
                for line in extra:
                    self.day_of.setdefault(id_of(line), day)
                lines = sorted({*lines, *extra}, key=sort_key)
            yield from lines

    def _membership_lines(self, day: str, teams: set[str]) -> list[bytes]:
        """The membership lines of `day` in `teams` that name a resource as their userId."""
        filters = replace(self.base, target_ids=tuple(sorted(teams)), actions=TEAM_MEMBER_ACTIONS)
        # An engine of its own per day (its teams), not kept: an engine holds a read buffer
        # the size of a log file.
        via = QueryEngine(self.store, filters, order="asc")
        lines = [line for line in via.day_stream(day) if self._names(line)]
        self.met += via.problems
        return lines

    def _teams_of(self, day: str) -> set[str] | None:
        """The teams whose membership lines of `day` name a resource as their userId, from
        the per-target index; None when `day` has none (then it is scanned)."""
        return self.checkpoints.teams_of(day, self.wanted) if self.use_index else None

    def _names(self, line: bytes) -> bool:
        """Whether `line` names a resource as its targetId or as the userId of a membership."""
        if self.named.matcher(line):
            return True
        if action_of(line) not in _MEMBER_ACTIONS or not self.pattern.search(line):
            return False
        return _input_of(entry_of(line)).get("userId") in self.wanted

    def _links(self, line: bytes) -> set[str]:
        """What a membership line links a resource to: the team of a member, the member of a
        team (their deletion or removal ends the membership)."""
        entry = entry_of(line)
        user, team = _input_of(entry).get("userId"), entry["targetId"]
        linked = {team} if user in self.wanted else set()
        if team in self.wanted and isinstance(user, str):
            linked.add(user)
        return linked

    def storage_order(self, days: set[str], by_id: dict[str, TimelineItem]) -> list[Anomaly]:
        """The entries of `days` stored out of time order (from the events checkpoints, the
        missing ones built when the day before has one, else by reading the day), among
        `by_id`."""
        found = []
        for day in sorted(days):
            rows = self.checkpoints.events(day, far=False) if self.use_index else None
            stored = None if rows is None else [anomaly_of(row) for row in rows]
            if stored is None:
                stored = [
                    anomaly
                    for _, anomaly in storage_order_in_day(
                        self.store, day, lambda line: id_of(line) in by_id
                    )
                ]
            found += [anomaly for anomaly in stored if anomaly.entry.id in by_id]
        found.sort(key=lambda a: (a.entry.createdAt, a.entry.id))
        return found

    def first_recorded(self, org_ids: tuple[str, ...]) -> str | None:
        """Where knowledge starts (see `reading.first_recorded`), from the latest checkpoint
        when it knows."""
        point = self.checkpoints.latest() if self.use_index else None
        known = point.first_recorded(org_ids) if point is not None else None
        return known or first_recorded(self.store, org_ids)


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
