"""Per-day summaries: what the access-review report counts in one partition day, per
organization, so that a report reads them for the whole days of its period instead of
counting every entry again.

A summary holds, for each organization (as its stored JSON text, the way the query engine
matches `--org`): the entries by action, and for each actor the entries, the non-login ones
(state changes) and the citation of the actor's first entry of the day (`createdAt`, `id`
and the name `cite_of` shows). It depends on the day's lines alone, so it is rebuilt from them
(never by a replay) and `audit verify` compares it byte for byte with such a rebuild. It is
stored as `_index/auditor/DAY.summary` next to the checkpoints (see `checkpoints`).
"""

from __future__ import annotations

from typing import Any

import orjson

from auditcli.query import Filters, QueryEngine, entry_of
from auditcli.store import AuditStore

from .model import cite_of
from .reading import _LOGIN, action_of

_ORG_KEY, _TEAM_KEY = b',"organizationId":', b',"teamId":'
_ACTOR_KEY = b',"actorId":"'


def org_text(line: bytes) -> str:
    """The organizationId of a stored line as its JSON text, found as the query engine's
    matcher finds it (the key's last occurrence: it comes after the metadata)."""
    at = line.rfind(_ORG_KEY) + len(_ORG_KEY)
    return line[at : line.find(_TEAM_KEY, at)].decode("utf-8", "replace")


def actor_id_of(line: bytes) -> str | None:
    """The actorId of a stored line from its bytes (the key's first occurrence is the field:
    a quote inside a JSON string is escaped); None when the value has an escape in it."""
    start = line.find(_ACTOR_KEY) + len(_ACTOR_KEY)
    end = line.find(b'"', start)
    raw = line[start:end]
    if start < len(_ACTOR_KEY) or b"\\" in raw:
        return None
    return raw.decode()


def summary_of_lines(lines: list[bytes]) -> dict[str, Any]:
    """The summary of one day's stored lines (in time order): `{org JSON text: {"actions":
    {action: n}, "actors": {actorId: [entries, changes, createdAt, id, name]}}}`. Logins are
    counted from their bytes; one is parsed only when it is its actor's first entry of the
    day in its organization (for the name)."""
    orgs: dict[str, dict[str, Any]] = {}
    for line in lines:
        org = org_text(line)
        summary = orgs.get(org)
        if summary is None:
            summary = orgs[org] = {"actions": {}, "actors": {}}
        actions: dict[str, int] = summary["actions"]
        actors: dict[str, list[Any]] = summary["actors"]
        action = action_of(line)
        if action == _LOGIN:
            actor = actor_id_of(line)
            known = actors.get(actor) if actor is not None else None
            if known is not None:
                actions["login"] = actions.get("login", 0) + 1
                known[0] += 1
                continue
        entry = entry_of(line)
        name, actor = entry["action"], entry["actorId"]
        actions[name] = actions.get(name, 0) + 1
        known = actors.get(actor)
        if known is None:
            cite = cite_of(entry)
            known = actors[actor] = [0, 0, cite.createdAt, cite.id, cite.actor]
        known[0] += 1
        if name != "login":
            known[1] += 1
    return orgs


def summary_of_day(store: AuditStore, day: str) -> dict[str, Any] | None:
    """The summary of one partition day (`summary_of_lines`); None when its reading met a
    problem (then a report reads the day itself and reports it)."""
    engine = QueryEngine(store, Filters(), order="asc")
    lines = engine.day_stream(day)
    if engine.problems:
        return None
    return summary_of_lines(lines)


def org_keys(org_ids: tuple[str, ...]) -> list[str] | None:
    """The keys of a summary for these organizations (None: every one)."""
    return [orjson.dumps(org).decode() for org in org_ids] if org_ids else None
