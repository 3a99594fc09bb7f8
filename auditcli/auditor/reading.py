"""Reading the log for a replay: lines in time order skipped by their bytes, where knowledge
starts, and the entries stored out of time order."""

from __future__ import annotations

import functools
import gc
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from auditcli import chain
from auditcli.query import Filters, QueryEngine, entry_of, split_lines
from auditcli.store import AuditStore
from auditcli.timeparse import parse_utc

from .model import SCOPE_OF_ACTION, Anomaly, cite_of

F = TypeVar("F", bound=Callable[..., Any])
#: An entry stored after one of the same file stamped more than this much later is reported as
#: stored out of time order (smaller gaps are concurrent writers racing, not a late import).
OUT_OF_ORDER_TOLERANCE = timedelta(seconds=1)
_ACTION_KEY = b',"action":"'
_LOGIN = b"login"
_CASCADES = frozenset((b"team_deleted", b"user_removed"))
#: The anomaly of an entry stored after a later-stamped one (see `storage_order_anomalies`).
STORED_OUT_OF_ORDER = "stored out of time order"
#: Lines read between two progress reports (a report costs far more than skipping a line).
_PROGRESS_EVERY = 4096


def action_of(line: bytes) -> bytes:
    """The action of a stored line, from its bytes. The key's first occurrence is the field
    (it comes before metadata, and a quote inside a JSON string is escaped); action names are
    snake_case, so the value has no escapes."""
    start = line.find(_ACTION_KEY) + len(_ACTION_KEY)
    return line[start : line.find(b'"', start)]


def id_of(line: bytes) -> str:
    """The id of a stored line: its first field (`{"id":"...`); ids have no escapes."""
    return line[7 : line.index(b'"', 7)].decode()


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
    found = [
        anomaly
        for day in store.days(first, last)
        for _, anomaly in storage_order_in_day(store, day, matcher)
    ]
    found.sort(key=lambda a: (a.entry.createdAt, a.entry.id))
    return found


def storage_order_in_day(
    store: AuditStore, day: str, matcher: Callable[[bytes], bool]
) -> list[tuple[str, Anomaly]]:
    """`(organizationId, anomaly)` of the entries of one partition that `matcher` accepts and
    that were stored out of time order (see `storage_order_anomalies`), in file order."""
    found: list[tuple[str, Anomaly]] = []
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
                later_id = id_of(later)
                anomaly = Anomaly(
                    STORED_OUT_OF_ORDER,
                    cite_of(entry),
                    f"{file.name} line {number + index + 1} was stored after entry "
                    f"{later_id} stamped {latest.decode()} ({_duration(gap)} later): "
                    "imported or recorded late",
                    entry["targetId"],
                    SCOPE_OF_ACTION.get(entry["action"], ""),
                )
                found.append((entry["organizationId"], anomaly))
            number += len(stamps)
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
