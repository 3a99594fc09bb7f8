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
    TEAM_MEMBER_ACTIONS,
    UNKNOWN_BEFORE_NOTE,
    Anomaly,
    TimelineItem,
    cite_of,
    learn_labels,
)
from .reading import (
    _LOGIN,
    _PROGRESS_EVERY,
    _pausing_cyclic_gc,
    action_of,
    first_recorded,
    storage_order_in_day,
)
from .replay import Replay

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
    use_checkpoints: bool = True,
) -> ReportData:
    """The access-review report's data for [since, until] (canonical, inclusive): totals,
    logins per day, the admin / user / team / role / service-account changes with their
    before → after changes, system admins at the start and end, the busiest actors, and the
    anomalies of the period. Entries before `since` are replayed (not counted) so that state
    and changes are right. Each section keeps its first `keep` entries (None: all) and counts
    the rest in `section_totals`; likewise the anomalies (`anomalies`, `anomaly_total`).
    `progress` hears of the entries read.

    The replay starts from the checkpoint of the last settled day before the period (see
    `checkpoints`; `use_checkpoints=False` replays all history, the reference of the tests),
    and the anomalies of entries stored out of order come from the checkpoints of the period's
    days: the report reads its window, not all history. Only the first `keep` anomalies of the
    period are held: memory does not grow with the period's anomalies."""
    if since > until:
        raise UsageError(f"--since {since} is after --until {until}")
    checkpoints = Checkpoints(store, progress) if use_checkpoints else None
    replay, resumed_after, first, labels = Replay(), None, None, {}
    if checkpoints is not None:
        point = checkpoints.point(since[:10])
        if point is not None and point.latest < since:
            replay = point.resume(org_ids=org_ids, scopes=ALL_SCOPES)
            resumed_after, first = point.day, point.first_recorded(org_ids)
            labels = point.labels_for(org_ids)
    data = ReportData(since, until, org_ids, generated_at, first or first_recorded(store, org_ids))
    data.labels, data.resumed_from = labels, resumed_after
    data.logins_per_day = dict.fromkeys(_days_between(since, until), 0)
    data.sections = {name: [] for name in SECTION_ACTIONS}
    section_of = {action: name for name, actions in SECTION_ACTIONS.items() for action in actions}
    engine = QueryEngine(store, Filters(org_ids=org_ids, until=until), order="asc")
    started = False
    since_bytes = since.encode()
    for n, line in enumerate(engine.stream(after=resumed_after), 1):
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
        entry = entry_of(line)
        section = section_of.get(entry["action"])
        # Diffs only for the entries a section keeps: the others' changes are never shown
        # (before the period only the state matters).
        replay.track = (
            in_period
            and section is not None
            and (keep is None or len(data.sections[section]) < keep)
        )
        seen = len(replay.anomalies)
        changes = replay.apply(entry)
        learn_labels(data.labels, entry)
        if not in_period:
            del replay.anomalies[seen:]  # not the period's: never shown
            continue
        data.anomaly_total += len(replay.anomalies) - seen
        action, actor = entry["action"], entry["actorId"]
        data.total += 1
        data.by_action[action] += 1
        data.actors[actor] += 1
        if actor not in data.actor_names:  # cite_of builds a citation: once per actor
            data.actor_names[actor] = cite_of(entry).actor
        if action == "login":
            day = entry["createdAt"][:10]
            data.logins_per_day[day] = data.logins_per_day.get(day, 0) + 1
        else:
            data.actor_admin_actions[actor] += 1
        if section is not None:
            data.section_totals[section] += 1
            if keep is None or len(data.sections[section]) < keep:
                item = TimelineItem(entry, changes, replay.anomalies[seen:])
                data.sections[section].append(item)
        if keep is not None and len(replay.anomalies) > keep:
            # Entries come in time order, so the first ones kept are the first of the period.
            del replay.anomalies[keep:]
    if not started:
        data.admins_at_start = replay.rows("admins")
    data.admins_at_end = replay.rows("admins")
    stored = _stored_out_of_order(store, checkpoints, org_ids, since, until)
    data.anomaly_total += len(stored)
    data.anomalies = sorted(
        [*replay.anomalies, *stored], key=lambda a: (a.entry.createdAt, a.entry.id)
    )
    if keep is not None:
        del data.anomalies[keep:]
    data.problems = engine.problems
    return data


def _stored_out_of_order(
    store: AuditStore,
    checkpoints: Checkpoints | None,
    org_ids: tuple[str, ...],
    since: str,
    until: str,
) -> list[Anomaly]:
    """The period's entries stored out of time order (`storage_order_anomalies`), from the
    checkpoints of its settled days and by reading the others."""
    matcher = QueryEngine(store, Filters(org_ids=org_ids, since=since, until=until)).matcher
    found = []
    for day in store.days(since[:10], until[:10]):
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
