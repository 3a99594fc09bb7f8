"""`access_state`: the access state of one kind at an instant, and what changed since another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditcli import chain
from auditcli.errors import UsageError
from auditcli.progress import Progress
from auditcli.query import Filters, Problem, QueryEngine, entry_of
from auditcli.store import AuditStore

from .model import KIND_READS, KINDS, UNKNOWN_BEFORE_NOTE, Anomaly, Cite
from .reading import (
    _PROGRESS_EVERY,
    _pausing_cyclic_gc,
    action_of,
    first_recorded,
    storage_order_anomalies,
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
