"""`report_data`: everything the access-review report shows for a period."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from auditcli import chain
from auditcli.errors import UsageError
from auditcli.progress import Progress
from auditcli.query import Filters, Problem, QueryEngine, entry_of
from auditcli.store import AuditStore
from auditcli.timeparse import parse_utc

from .checkpoints import ALL_SCOPES, Checkpoints, anomaly_of
from .model import (
    KINDS,
    TEAM_MEMBER_ACTIONS,
    UNKNOWN_BEFORE_NOTE,
    Anomaly,
    TimelineItem,
    cite_of,
    learn_labels,
)
from .reading import (
    _LOGIN,
    STORED_OUT_OF_ORDER,
    _pausing_cyclic_gc,
    action_of,
    first_recorded,
    storage_order_in_day,
)
from .replay import Replay
from .summary import actor_id_of, org_keys

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
    #: The period's first anomalies in time order (at most `keep` of them, see report_data).
    anomalies: list[Anomaly] = field(default_factory=list)
    #: Every anomaly of the period, counted (`anomalies` may hold only the first ones).
    anomaly_total: int = 0
    problems: list[Problem] = field(default_factory=list)
    integrity: dict[str, Any] = field(default_factory=dict)
    #: The day whose checkpoint the replay resumed from (None: it replayed from the start).
    resumed_from: str | None = None
    #: How many days were counted from their summaries and events checkpoints.
    summarised: int = 0
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
            ("Anomalies", self.anomaly_total),
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


#: The sections whose states depend on each other (removing a user ends admin grants and team
#: memberships), and on nothing else: once a group's tables are full its entries are skipped.
_GROUPS = (("admins", "users", "teams"), ("roles",), ("service-accounts",))
#: Hours of a day read at a time by a summarised day's replay of its section entries.
_SLICE_HOURS = 2
_SECTION_OF = {action: name for name, actions in SECTION_ACTIONS.items() for action in actions}


class _Fallback(Exception):
    """A checkpoint the summarised reading needs is missing: read every day instead."""


class _Period:
    """The report's accounting of a period, fed a partition day at a time in time order.

    A day is either *read*: its lines are replayed and counted one by one (the days before the
    period, partial days, days without a current summary), or *summarised*: fully inside the
    period, with a current summary (`summary`) and events checkpoint (read only until the
    period's first anomalies are held, see `count_unread`), its counts and anomalies are taken
    from those, and its lines are replayed only while a section table has room, only the
    actions of the sections with room. `exact` says whether the replay is the state
    after every entry so far (else it is resumed from a checkpoint when that is needed)."""

    def __init__(
        self,
        store: AuditStore,
        data: ReportData,
        checkpoints: Checkpoints | None,
        keep: int | None,
        progress: Progress | None,
    ) -> None:
        self.store, self.data, self.checkpoints = store, data, checkpoints
        self.keep, self.progress, self.read = keep, progress, 0
        self.replay, self.exact, self.started = Replay(), True, False
        self.since = data.since.encode()
        self.engine = QueryEngine(
            store, Filters(org_ids=data.org_ids, until=data.until), order="asc"
        )
        #: The period's replay anomalies (the first `keep` of them; all are counted).
        self.anomalies: list[Anomaly] = []
        #: The period's entries stored out of order, from the summarised days' events.
        self.stored: list[Anomaly] = []
        #: The period's days that were read (their stored-out-of-order entries are found later).
        self.read_days: list[str] = []
        #: Summarised days whose events checkpoint was not read (the period's first `keep`
        #: anomalies were held already): their anomalies are counted by `count_unread`.
        self.unread: list[str] = []
        #: Whether every day so far was summarised (none was read entry by entry).
        self.all_summarised = True

    # ----------------------------------------------------------------- state
    def room(self, section: str) -> bool:
        """Whether the table of `section` keeps its next entry."""
        return self.keep is None or len(self.data.sections[section]) < self.keep

    def resume_after(self, day: str, kinds: tuple[str, ...] = KINDS) -> None:
        """Make the replay the state at the end of partition `day` (its checkpoint), its
        tables of `kinds` (the others stay empty: then it is not `exact`)."""
        self.replay = Replay()  # the old state is not needed: not held twice
        parts = (*kinds, "emails", "labels")
        point = self.checkpoints.point(day + "~", parts) if self.checkpoints is not None else None
        if point is None or point.day != day:
            raise _Fallback(day)
        self.replay = Replay.resumed(
            point.parts, org_ids=self.data.org_ids, scopes=ALL_SCOPES, kinds=frozenset(kinds)
        )
        self.data.labels = point.labels_for(self.data.org_ids)
        self.exact = kinds == KINDS

    def begin(self) -> None:
        """The period starts: the system admins at its start."""
        if not self.started:
            self.data.admins_at_start = self.replay.rows("admins")
            self.started = True

    def anomalies_held(self) -> bool:
        """Whether the period's first `keep` anomalies are held: a later day's come after."""
        return self.keep is not None and len(self.anomalies) + len(self.stored) >= self.keep

    def count_unread(self, last: str | None, before: int | None) -> None:
        """Count the anomalies of the days whose events were not read. When every day of the
        period was summarised, the period's anomalies are those the checkpoints counted
        between the one before it (`before` anomalies so far; None: unknown) and the one of
        its `last` day; else each unread day's events are read and counted."""
        if not self.unread or self.checkpoints is None:
            return
        orgs = set(self.data.org_ids)
        point = self.checkpoints.point(last + "~", ()) if last and self.all_summarised else None
        if point is not None and point.day == last and before is not None:
            self.data.anomaly_total = _anomalies_so_far(point.counts, orgs) - before
            return
        for day in self.unread:
            events = self.checkpoints.events(day, KINDS)
            if events is None:
                raise _Fallback(day)
            self.data.anomaly_total += sum(1 for row in events if not orgs or row[5] in orgs)

    def hold(self, found: list[Anomaly]) -> None:
        """Count the period's anomalies `found`, hold the first `keep` ones."""
        self.data.anomaly_total += len(found)
        room = len(found) if self.keep is None else self.keep - len(self.anomalies)
        if room > 0:
            self.anomalies += found[:room]

    def _progress(self, lines: int) -> None:
        self.read += lines
        if self.progress is not None:
            self.progress(self.read)

    # ----------------------------------------------------------------- a day read
    def read_day(self, day: str, previous: str | None) -> None:
        """Replay and count every line of `day` (the lines before the period are replayed,
        not counted); `previous` is the partition day before it."""
        if not self.exact and previous is not None:
            self.resume_after(previous)
        self.all_summarised = False
        lines = self.engine.day_stream(day)
        self._progress(len(lines))
        if day >= self.data.since[:10]:
            self.read_days.append(day)
        for line in lines:
            self.take(line)

    def take(self, line: bytes) -> None:
        """Replay and count one line."""
        data, replay = self.data, self.replay
        created = line[chain.CREATED_START : chain.CREATED_END]
        in_period = created >= self.since
        if action_of(line) == _LOGIN:
            # Most entries are logins: they change no state; they are counted from their
            # bytes, and one is parsed per actor (for the actor's name).
            if not in_period:
                return
            self.begin()
            actor = actor_id_of(line)
            if actor is None or actor not in data.actor_names:
                entry = entry_of(line)
                actor = entry["actorId"]
                if actor not in data.actor_names:
                    data.actor_names[actor] = cite_of(entry).actor
            data.total += 1
            data.by_action["login"] += 1
            data.actors[actor] += 1
            day = created[:10].decode()
            data.logins_per_day[day] = data.logins_per_day.get(day, 0) + 1
            return
        if in_period:
            self.begin()
        entry = entry_of(line)
        section = _SECTION_OF.get(entry["action"])
        # Diffs only for the entries a section keeps: the others' changes are never shown
        # (before the period only the state matters).
        replay.track = in_period and section is not None and self.room(section)
        changes = replay.apply(entry)
        learn_labels(data.labels, entry)
        found, replay.anomalies = replay.anomalies, []
        if not in_period:
            return  # not the period's anomalies: never shown
        self.hold(found)
        action, actor = entry["action"], entry["actorId"]
        data.total += 1
        data.by_action[action] += 1
        data.actors[actor] += 1
        data.actor_admin_actions[actor] += 1
        if actor not in data.actor_names:  # cite_of builds a citation: once per actor
            data.actor_names[actor] = cite_of(entry).actor
        if section is not None:
            data.section_totals[section] += 1
            if self.room(section):
                data.sections[section].append(TimelineItem(entry, changes, found))

    # ----------------------------------------------------------------- a day summarised
    def summarise_day(
        self, day: str, summary: dict[str, Any], events: list[list[Any]] | None
    ) -> None:
        """Count `day` (whole, inside the period) from its summary and events checkpoint (None:
        not read, see `count_unread`); replay its lines of the sections whose tables have
        room. Their groups' states are exact: a group is skipped only once it needs nothing
        more, and never needed again."""
        self.begin()
        self.data.summarised += 1
        self._count(day, summary)
        if events is None:
            self.unread.append(day)
        else:
            self._anomalies_of(events)
        self._replay_day(day)

    def _anomalies_of(self, events: list[list[Any]]) -> None:
        """Count the anomalies of a day's events checkpoint; hold the first ones."""
        orgs = set(self.data.org_ids)
        rows = [row for row in events if not orgs or row[5] in orgs]
        found = [row for row in rows if row[0] != STORED_OUT_OF_ORDER]
        self.stored += [anomaly_of(row) for row in rows if row[0] == STORED_OUT_OF_ORDER]
        self.data.anomaly_total += len(found)
        if self.keep is None or len(self.anomalies) < self.keep:
            # Held in the order the replay found them: time order (the parts are by state).
            found.sort(key=lambda row: (row[1][1], row[1][0]))
            room = len(found) if self.keep is None else self.keep - len(self.anomalies)
            self.anomalies += [anomaly_of(row) for row in found[:room]]

    def _replay_day(self, day: str) -> None:
        """Replay the lines of `day` of the sections whose tables have room."""
        # The lines are read a slice of the day at a time: few enough that each is read
        # alone (not the whole file into memory), and none after the tables are full.
        for hour in range(0, 24, _SLICE_HOURS):
            groups = [g for g in _GROUPS if any(self.room(section) for section in g)]
            # A group skipped (full), or the day left unread: the state is resumed when needed.
            self.exact = self.exact and len(groups) == len(_GROUPS)
            if not groups:
                return
            actions = tuple(a for g in groups for section in g for a in SECTION_ACTIONS[section])
            window = Filters(
                actions=actions,
                org_ids=self.data.org_ids,
                since=f"{day}T{hour:02d}:00:00.000Z",
                until=f"{day}T{hour + _SLICE_HOURS - 1:02d}:59:59.999Z",
            )
            self._replay_sections(day, QueryEngine(self.store, window, order="asc"))

    def _replay_sections(self, day: str, engine: QueryEngine) -> None:
        """Replay the lines of `day` that `engine` selects, keeping the section items."""
        lines = engine.day_stream(day)
        if engine.problems:  # the summary was built from a clean read: the day changed since
            raise _Fallback(day)
        self._progress(len(lines))
        replay, sections = self.replay, self.data.sections
        for line in lines:
            entry = entry_of(line)
            section = _SECTION_OF[entry["action"]]
            replay.track = room = self.room(section)
            changes = replay.apply(entry)
            if self.exact:
                learn_labels(self.data.labels, entry)
            if room:
                sections[section].append(TimelineItem(entry, changes, replay.anomalies))
            replay.anomalies = []

    def _count(self, day: str, summary: dict[str, Any]) -> None:
        """Add the counts of a day's summary (of the report's organizations)."""
        data = self.data
        keys = org_keys(data.org_ids)
        first: dict[str, tuple[str, str, str]] = {}
        for org in keys if keys is not None else summary:
            counts = summary.get(org)
            if counts is None:
                continue
            for action, n in counts["actions"].items():
                data.total += n
                data.by_action[action] += n
                section = _SECTION_OF.get(action)
                if section is not None:
                    data.section_totals[section] += n
                if action == "login":
                    data.logins_per_day[day] = data.logins_per_day.get(day, 0) + n
            for actor, (n, changes, created, entry_id, name) in counts["actors"].items():
                data.actors[actor] += n
                if changes:
                    data.actor_admin_actions[actor] += changes
                if actor not in data.actor_names and (
                    actor not in first or (created, entry_id) < first[actor][:2]
                ):
                    first[actor] = (created, entry_id, name)
        for actor, (_, _, name) in first.items():
            data.actor_names[actor] = name

    def end(self, last: str | None) -> None:
        """The period is read: the system admins at its end (`last`: the last day read)."""
        self.begin()
        if not self.exact and last is not None:
            self.resume_after(last, ("admins",))
        self.data.admins_at_end = self.replay.rows("admins")


def _anomalies_so_far(counts: list[list[Any]], orgs: set[str]) -> int:
    """The anomalies a checkpoint counted so far (`Point.counts`), of these organizations."""
    return sum(n for _, org, _, n in counts if not orgs or org in orgs)


def _summary_ok(summary: Any) -> bool:
    """Whether a summary has the shape `summary_of_lines` writes (a forged one with a matching
    digest may not: it is then not used)."""
    if not isinstance(summary, dict):
        return False
    for counts in summary.values():
        if not isinstance(counts, dict):
            return False
        actions, actors = counts.get("actions"), counts.get("actors")
        if not isinstance(actions, dict) or not isinstance(actors, dict):
            return False
        if not all(isinstance(n, int) for n in actions.values()):
            return False
        for row in actors.values():
            if not (
                isinstance(row, list)
                and len(row) == 5
                and all(isinstance(x, int) for x in row[:2])
                and all(isinstance(x, str) for x in row[2:])
            ):
                return False
    return True


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
    use_checkpoints: bool = True,
) -> ReportData:
    """The access-review report's data for [since, until] (canonical, inclusive): totals,
    logins per day, the admin / user / team / role / service-account changes with their
    before → after changes, system admins at the start and end, the busiest actors, and the
    anomalies of the period. Entries before `since` are replayed (not counted) so that state
    and changes are right. Each section keeps its first `keep` entries (None: all) and counts
    the rest in `section_totals`; likewise the anomalies (`anomalies`, `anomaly_total`).
    Logins change no state and teach no labels: they are counted. `progress` hears of the
    entries read.

    The replay starts from the checkpoint of the last settled day before the period (see
    `checkpoints`; `use_checkpoints=False` replays all history and reads every day, the
    reference of the tests). The whole settled days of the period are counted from their
    summaries and events checkpoints, and replayed only until the section tables are full:
    the report reads its window, and of its window mostly what it lists. Only the first
    `keep` anomalies of the period are held: memory does not grow with the period's
    anomalies."""
    if since > until:
        raise UsageError(f"--since {since} is after --until {until}")
    checkpoints = Checkpoints(store, progress) if use_checkpoints else None
    try:
        return _report(store, since, until, generated_at, org_ids, keep, progress, checkpoints)
    except _Fallback:
        # A checkpoint vanished or a day changed while the report read: read every day.
        return _report(
            store, since, until, generated_at, org_ids, keep, progress, checkpoints, False
        )


def _report(
    store: AuditStore,
    since: str,
    until: str,
    generated_at: str,
    org_ids: tuple[str, ...],
    keep: int | None,
    progress: Progress | None,
    checkpoints: Checkpoints | None,
    summarise: bool = True,
) -> ReportData:
    """`report_data` (see there); without `summarise`, every day is read."""
    data = ReportData(since, until, org_ids, generated_at, None)
    data.logins_per_day = dict.fromkeys(_days_between(since, until), 0)
    data.sections = {name: [] for name in SECTION_ACTIONS}
    period = _Period(store, data, checkpoints, keep, progress)
    first = None
    before: int | None = 0  # the anomalies before the period (None: not known)
    if checkpoints is not None:
        point = checkpoints.point(since[:10])
        if point is not None and point.latest < since:
            period.replay = point.resume(org_ids=org_ids, scopes=ALL_SCOPES)
            data.resumed_from, first = point.day, point.first_recorded(org_ids)
            data.labels = point.labels_for(org_ids)
            before = _anomalies_so_far(point.counts, set(org_ids))
        elif point is not None:
            before = None
        del point  # its parts, read as JSON, are several times the state
    data.first_recorded = first or first_recorded(store, org_ids)
    day_start, day_end = "T00:00:00.000Z", "T23:59:59.999Z"
    previous = data.resumed_from
    for day in period.engine.days():
        if data.resumed_from is not None and day <= data.resumed_from:
            continue
        whole = since <= day + day_start and day + day_end <= until
        summary = events = None
        unread = False
        if summarise and whole and checkpoints is not None and day in checkpoints.sources:
            summary = checkpoints.summary(day)
            if _summary_ok(summary):
                # Once the first anomalies are held, the others are only counted: at the end.
                unread = period.anomalies_held()
                events = None if unread else checkpoints.events(day, KINDS)
        if summary is not None and (unread or events is not None):
            period.summarise_day(day, summary, events)
        else:
            period.read_day(day, previous)
        previous = day
    period.end(previous)
    stored = _stored_out_of_order(store, checkpoints, org_ids, since, until, period.read_days)
    data.anomaly_total += len(period.stored) + len(stored)
    period.count_unread(previous, before)
    data.anomalies = sorted(
        [*period.anomalies, *period.stored, *stored], key=lambda a: (a.entry.createdAt, a.entry.id)
    )
    if keep is not None:
        del data.anomalies[keep:]
    data.problems = period.engine.problems
    return data


def _stored_out_of_order(
    store: AuditStore,
    checkpoints: Checkpoints | None,
    org_ids: tuple[str, ...],
    since: str,
    until: str,
    days: list[str],
) -> list[Anomaly]:
    """The entries of `days` (of the period) stored out of time order
    (`storage_order_anomalies`), from the checkpoints of the settled days and by reading the
    others."""
    matcher = QueryEngine(store, Filters(org_ids=org_ids, since=since, until=until)).matcher
    found = []
    for day in days:
        events = checkpoints.events(day) if checkpoints is not None else None
        if events is None:
            found += [anomaly for _, anomaly in storage_order_in_day(store, day, matcher)]
            continue
        found += [
            anomaly_of(row)  # [kind, cite, detail, targetId, scope, organizationId]
            for row in events
            if (not org_ids or row[5] in org_ids) and since <= row[1][1] <= until
        ]
    return found
