"""The entry: the 13 entry fields, their validation, strict JSON input and the one serialiser."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from .catalog import TARGETS, Catalog
from .chain import MAX_LINE, SEED_FIELDS
from .errors import InvalidEntryError
from .timeparse import Clock, format_utc, normalise_entry_time, utc_now

#: A stored line (entry plus chain link) may not exceed this many bytes.
MAX_LINE_BYTES = MAX_LINE
#: The largest entry (canonical JSON): its stored line adds the chain suffix (85 bytes) and the
#: salt of chain version 2 (43).
MAX_ENTRY_BYTES = MAX_LINE_BYTES - 150
MAX_METADATA_DEPTH = 32
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1

IdText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
RefText = Annotated[str, StringConstraints(min_length=1, max_length=512)]
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f]+"
Email = Annotated[
    str,
    StringConstraints(max_length=320, pattern=rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$"),
]
Target = Annotated[str, StringConstraints(pattern="^(" + "|".join(TARGETS) + ")$")]
Action = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")]
Stamp = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")]


class Entry(BaseModel):
    """One audit log entry, exactly the 13 fields of the API's entry under their JSON names."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: IdText
    description: Annotated[str, StringConstraints(max_length=8192)]
    actorId: RefText
    actorName: Annotated[str, StringConstraints(max_length=512)] | None
    actorEmail: Email | None
    action: Action
    actionDisplayName: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    target: Target
    targetId: RefText
    metadata: dict[str, Any] | None
    organizationId: RefText
    teamId: RefText | None
    createdAt: Stamp

    def to_dict(self) -> dict[str, Any]:
        """The entry as a plain dict in the API's field order."""
        return dict(self.__dict__)


_validate = Entry.__pydantic_validator__.validate_python


def uuid7(now_ms: int | None = None) -> str:
    """A time-ordered UUIDv7 (RFC 9562): 48-bit milliseconds, then 74 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def loads_strict(raw: bytes | str) -> Any:
    """Parse JSON and refuse what cannot round-trip: invalid UTF-8, lone surrogates, NaN and
    infinities, duplicate keys, integers beyond 64 bits. Raises ValueError with the reason."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    # orjson keeps the last of duplicate keys and turns huge integers into floats. When the
    # compact re-serialisation equals the input neither happened; otherwise the exact (slower)
    # standard parser decides.
    text = raw if isinstance(raw, bytes) else raw.encode()
    try:
        if orjson.dumps(value) == text.strip():
            return value
    except orjson.JSONEncodeError as exc:
        # orjson reads 1024 levels but writes only 254: what it cannot write back is refused
        # here, before the standard parser could hit Python's recursion limit.
        reason = "nested too deeply" if "ecursion" in str(exc) else str(exc)
        raise ValueError(f"cannot be stored: {reason}") from None
    return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_json_value(value: Any, path: str, depth: int = 0) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_json_value(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _check_json_value(item, f"{path}[{n}]", depth + 1)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise ValueError(f"{path}: integer {value} does not fit in 64 bits")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{path}: {value} is not a JSON number")
    else:
        raise ValueError(f"{path}: {type(value).__name__} is not a JSON value")


def _describe(spec_template: str, data: Mapping[str, Any], target_name: str | None) -> str:
    actor = data.get("actorEmail") or data.get("actorName") or data.get("actorId") or "someone"
    target = target_name or data.get("targetId") or ""
    return spec_template.format(
        actor=actor, target=target, team=data.get("teamId") or "", org=data.get("organizationId")
    )


def build_entry(
    data: Mapping[str, Any],
    catalog: Catalog,
    *,
    clock: Clock = utc_now,
    target_name: str | None = None,
) -> dict[str, Any]:
    """Validate `data` and fill in what the API's format lets be generated: `id` (UUIDv7),
    `createdAt` (now), `actionDisplayName` and `target` (from the catalog), `description` (the
    action's template), `targetId` of a login (the actor). Returns the entry in the API's field
    order. Raises InvalidEntryError listing every problem as `field: message`."""
    if not isinstance(data, Mapping):
        raise InvalidEntryError(f"expected a JSON object, got {_json_type(data)}")
    unknown = [key for key in data if key not in SEED_FIELDS]
    if unknown:
        problems: list[str] = [
            f"{key}: unknown field (the 13 entry fields only)" for key in unknown
        ]
        raise InvalidEntryError(problems[0], problems)
    problems = []
    entry = dict.fromkeys(SEED_FIELDS)
    entry.update(data)
    action = entry["action"]
    spec = None
    if action is None:
        problems.append("action: field required")
    elif isinstance(action, str):
        if action in catalog:
            spec = catalog.get(action)
        else:
            problems.append(f"action: {catalog.unknown_message(action)}")
    created = entry["createdAt"]
    if created is None:
        entry["createdAt"] = format_utc(clock())
    elif isinstance(created, str):
        try:
            entry["createdAt"] = normalise_entry_time(created)
        except ValueError as exc:
            problems.append(f"createdAt: {exc}")
    if spec is not None:
        if entry["target"] is None:
            entry["target"] = spec.target
        if entry["actionDisplayName"] is None:
            entry["actionDisplayName"] = spec.display_name
    if entry["targetId"] is None and action == "login":
        entry["targetId"] = entry["actorId"]
    if entry["id"] is None:
        entry["id"] = uuid7()
    if entry["description"] is None and spec is not None:
        entry["description"] = _describe(spec.template, entry, target_name)
    if entry["metadata"] is not None:
        try:
            _check_json_value(entry["metadata"], "metadata")
        except ValueError as exc:
            problems.append(str(exc))
    try:
        _validate(entry)
    except ValidationError as exc:
        derived = {"description", "actionDisplayName", "target"} if spec is None else set()
        # A field already reported (e.g. an impossible createdAt) is not reported twice.
        reported = {problem.split(":", 1)[0].split(".", 1)[0] for problem in problems}
        problems.extend(
            problem
            for problem in _pydantic_problems(exc, entry)
            if not (problem.split(":", 1)[0] in derived and entry[problem.split(":", 1)[0]] is None)
            and problem.split(":", 1)[0] not in reported
        )
    if problems:
        raise InvalidEntryError(problems[0], problems)
    return entry


def _pydantic_problems(exc: ValidationError, entry: Mapping[str, Any]) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in err["loc"]) or "entry"
        message = err["msg"]
        if err["type"] == "missing" or (len(err["loc"]) == 1 and entry.get(field, 0) is None):
            message = "field required"
        elif err["type"] == "string_pattern_mismatch":
            message = _PATTERN_HINTS.get(str(err["loc"][0]), message)
        problems.append(f"{field}: {message}")
    return problems


_PATTERN_HINTS = {
    "id": "must be 1-128 characters of letters, digits and . _ : @ - (a UUID fits)",
    "actorEmail": "not a valid email address",
    "target": f"must be one of {', '.join(TARGETS)}",
    "action": "must be snake_case",
    "createdAt": "must be an ISO-8601 time with an offset",
}


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def dumps_entry(entry: Mapping[str, Any]) -> bytes:
    """The one serialiser: the entry's canonical JSON (the API's field order, compact, UTF-8).

    Every byte that is stored, hashed or compared is produced here. Raises InvalidEntryError when
    the stored line would exceed MAX_LINE_BYTES."""
    content = orjson.dumps({field: entry[field] for field in SEED_FIELDS})
    if len(content) > MAX_ENTRY_BYTES:
        raise InvalidEntryError(
            f"entry: {len(content)} bytes is over the {MAX_LINE_BYTES // 1024} KiB entry size limit"
        )
    return content
