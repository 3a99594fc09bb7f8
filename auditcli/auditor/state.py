"""`access_state`: the access state of one kind at an instant, and what changed since another."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from auditcli import chain
from auditcli.errors import UsageError
from auditcli.progress import Progress
from auditcli.query import Filters, Problem, QueryEngine, entry_of
from auditcli.store import AuditStore

from .checkpoints import Checkpoints, Point, anomaly_of
from .model import KIND_READS, KINDS, SCOPE_OF_ACTION, UNKNOWN_BEFORE_NOTE, Anomaly, Cite
from .reading import (
    _PROGRESS_EVERY,
    _pausing_cyclic_gc,
    first_recorded,
    storage_order_in_day,
)
from .replay import Replay, _row_value, row_key


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
    #: `anomalies` are those from this instant on (None: all); `anomaly_total` counts all.
    anomalies_since: str | None = None
    anomaly_total: int = 0

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

    @property
    def anomaly_note(self) -> str:
        """How many anomalies there are up to `at`, and which are listed."""
        return (
            f"{self.anomaly_total} anomalies about {self.kind} up to {self.at}; the "
            f"{len(self.anomalies)} from {self.anomalies_since} on are listed "
            "(--anomalies-since all lists every one)."
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
        data["anomalyTotal"] = self.anomaly_total
        data["anomaliesSince"] = self.anomalies_since
        data["anomalies"] = [a.as_dict() for a in self.anomalies]
        data["problems"] = [str(p) for p in self.problems]
        return data


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
    anomalies_since: str | None = None,
    progress: Progress | None = None,
    use_checkpoints: bool = True,
) -> StateResult:
    """The `kind` state (admins, teams, users, roles, service-accounts) at the canonical instant
    `at`, from the entries up to it; with `diff_from`, also what was granted, revoked or
    changed between that earlier instant and `at`. `team_ids` narrows team rows (and the
    anomalies about teams) to those teams. The anomalies up to `at` are counted; those from
    `anomalies_since` on (all when None) are listed. `progress` hears of the entries read.

    The replay starts from the checkpoint of the last settled day before the earlier instant
    (`checkpoints`, built on the way when missing; `use_checkpoints=False` replays all history,
    the reference the tests compare with); the answer is the same either way."""
    if kind not in KINDS:
        raise UsageError(f"unknown state {kind!r}: expected one of {', '.join(KINDS)}")
    if diff_from is not None and diff_from > at:
        raise UsageError(f"--diff {diff_from} is after --at {at}")
    if team_ids and kind != "teams":
        raise UsageError("--team-id applies to `audit state teams` only")
    # Only the actions this state is replayed from are read: the line indexes select them, so
    # the day of `--at` costs its few state-changing lines, not all of its entries.
    filters = Filters(actions=KIND_READS[kind], org_ids=org_ids, until=at)
    engine = QueryEngine(store, filters, order="asc")
    window = _Window(kind, team_ids, anomalies_since)
    options = {"track_changes": False, "keep_journal": diff_from is not None}
    replay, resumed_after, first = Replay(**options), None, None
    if use_checkpoints:
        checkpoints = Checkpoints(store, progress)
        scopes = frozenset(SCOPE_OF_ACTION[action] for action in KIND_READS[kind])
        point = checkpoints.point(min(at, diff_from or at)[:10], parts=(*scopes, "emails"))
        if point is not None and point.latest <= min(at, diff_from or at):
            kept = _kept_before(checkpoints, point, window, org_ids)
            if kept is not None:  # else a day's anomalies cannot be read: replay it all
                replay = point.resume(org_ids=org_ids, scopes=scopes, **options)
                resumed_after, first = point.day, point.first_recorded(org_ids)
                window.total = point.anomaly_count(kind, org_ids, team_ids)
                window.kept = kept
    before_rows: list[dict[str, Any]] | None = None
    journal_from = 0
    for n, line in enumerate(engine.stream(after=resumed_after), 1):
        if progress is not None and n % _PROGRESS_EVERY == 1:
            progress(n)
        if (
            diff_from is not None
            and before_rows is None
            and line[chain.CREATED_START : chain.CREATED_END].decode() > diff_from
        ):
            before_rows, journal_from = replay.rows(kind), len(replay.journal)
        replay.apply(entry_of(line))
        if replay.anomalies:  # counted, and kept only when in the window
            window.take(replay.anomalies)
            replay.anomalies.clear()
    if diff_from is not None and before_rows is None:
        before_rows, journal_from = replay.rows(kind), len(replay.journal)
    for day in store.days(None, at[:10]):
        if resumed_after is None or day > resumed_after:
            window.take(a for _, a in storage_order_in_day(store, day, engine.matcher))
    window.kept.sort(key=lambda a: (a.entry.createdAt, a.entry.id))
    result = StateResult(
        kind,
        at,
        _select(kind, replay.rows(kind), team_ids),
        first or first_recorded(store, org_ids),
        window.kept,
        engine.problems,
        org_ids,
        team_ids,
        diff_from,
        anomalies_since=anomalies_since,
        anomaly_total=window.total,
    )
    if before_rows is not None:
        _fill_diff(result, replay, _select(kind, before_rows, team_ids), journal_from)
    return result


class _Window:
    """The anomalies about one kind of state (and these teams): all counted, those from
    `since` on kept."""

    def __init__(self, kind: str, team_ids: tuple[str, ...], since: str | None) -> None:
        self.kind, self.team_ids, self.since = kind, team_ids, since
        self.total = 0
        self.kept: list[Anomaly] = []

    def about(self, anomaly: Anomaly) -> bool:
        """Whether `anomaly` is about this state (and these teams)."""
        return anomaly.scope == self.kind and (
            not self.team_ids or anomaly.target_id in self.team_ids
        )

    def take(self, anomalies: Iterable[Anomaly]) -> None:
        """Count the anomalies about this state, keep those in the window."""
        for anomaly in anomalies:
            if self.about(anomaly):
                self.total += 1
                if self.since is None or anomaly.entry.createdAt >= self.since:
                    self.kept.append(anomaly)


def _kept_before(
    checkpoints: Checkpoints, point: Point, window: _Window, org_ids: tuple[str, ...]
) -> list[Anomaly] | None:
    """The anomalies in the window that the days up to `point` hold (from their checkpoints);
    None when one of those days' cannot be read."""
    first = window.since[:10] if window.since is not None else ""
    kept = []
    for day in checkpoints.days:
        if day > point.day:
            break
        if day < first:
            continue
        found = checkpoints.events(day, (window.kind,))
        if found is None:
            return None
        for row in found:  # [kind, cite, detail, targetId, scope, organizationId]
            if (
                row[4] == window.kind
                and (not org_ids or row[5] in org_ids)
                and (not window.team_ids or row[3] in window.team_ids)
                and (window.since is None or row[1][1] >= window.since)
            ):
                kept.append(anomaly_of(row))
    return kept


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
