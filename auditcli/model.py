"""The entry: the 13 entry fields, their validation, strict JSON input and the one serialiser."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

import orjson

from .catalog import TARGETS, Catalog
from .chain import MAX_LINE, SEED_FIELDS
from .errors import InvalidEntryError
from .timeparse import CANONICAL, Clock, format_utc, normalise_entry_time, utc_now

#: A stored line (entry plus chain link) may not exceed this many bytes.
MAX_LINE_BYTES = MAX_LINE
#: The largest entry (canonical JSON): its stored line adds the chain suffix (85 bytes) and the
#: salt of chain version 2 (43).
MAX_ENTRY_BYTES = MAX_LINE_BYTES - 150
MAX_METADATA_DEPTH = 32
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class TextRule:
    """The constraints of one string field of an entry. This table is the one definition of
    them: the pydantic model (`entry_model.Entry`, which names problems for people), the
    importer's batch check (`batchcheck.canonical_columns`) and the single entry's quick check
    (`_plainly_valid`), which only say yes or no, are all made from it."""

    __slots__ = ("max_length", "min_length", "nullable", "pattern")

    def __init__(
        self,
        min_length: int = 0,
        max_length: int | None = None,
        pattern: str | None = None,
        *,
        nullable: bool = False,
    ) -> None:
        self.min_length, self.max_length, self.nullable = min_length, max_length, nullable
        #: Matched against the whole value (fullmatch here, ^…$ for pydantic, whose `$` is
        #: the end of the text): no top-level alternation, or ^…$ would not bind all of it.
        self.pattern = pattern


_EMAIL_PART = r"[^@\s\x00-\x1f\x7f]+"
_REF = TextRule(1, 512)
TEXT_RULES: dict[str, TextRule] = {
    "id": TextRule(pattern=r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}"),
    "description": TextRule(max_length=8192),
    "actorId": _REF,
    "actorName": TextRule(max_length=512, nullable=True),
    "actorEmail": TextRule(
        max_length=320, pattern=rf"{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}", nullable=True
    ),
    "action": TextRule(pattern=r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*"),
    "actionDisplayName": TextRule(1, 256),
    "target": TextRule(pattern="(" + "|".join(TARGETS) + ")"),
    "targetId": _REF,
    "organizationId": _REF,
    "teamId": TextRule(1, 512, nullable=True),
    "createdAt": TextRule(pattern=CANONICAL.pattern),  # the stored form (timeparse)
}
#: The fields an entry may hold null in (metadata is the one field that is not text).
NULLABLE = frozenset({"metadata", *(name for name, rule in TEXT_RULES.items() if rule.nullable)})


def __getattr__(name: str) -> Any:
    # PEP 562: the pydantic model is imported on first use. Recording an entry whose fields
    # are plainly valid never needs it (see `_plainly_valid`): `audit record` starts faster.
    if name in ("Entry", "_validate"):
        from .entry_model import Entry

        return Entry if name == "Entry" else Entry.__pydantic_validator__.validate_python
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Each text field's pattern, compiled (matched with fullmatch).
PATTERNS = {name: re.compile(rule.pattern) for name, rule in TEXT_RULES.items() if rule.pattern}


def columns_of(entries: Iterable[Mapping[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Each field's values, in entry order, of entries that have the 13 fields."""
    rows = map(itemgetter(*SEED_FIELDS), entries)
    return dict(zip(SEED_FIELDS, zip(*rows, strict=True), strict=True))


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
    if problems or not _plainly_valid(entry):
        _check_with_model(entry, problems, derived_missing=spec is None)
    if problems:
        raise InvalidEntryError(problems[0], problems)
    return entry


_FIELD_SET = frozenset(SEED_FIELDS)


def _plainly_valid(entry: Mapping[str, Any]) -> bool:
    """Whether `entry` is valid by rules simpler than the model's and never looser: exact
    `str` values of valid Unicode, ASCII where a pattern applies (Python's and pydantic's
    regex engines agree on ASCII), a dict with text keys or null for metadata. False sends the
    entry to the model, which decides and words every problem."""
    if entry.keys() != _FIELD_SET:
        return False
    for name, rule in TEXT_RULES.items():
        value = entry.get(name)
        if value is None and rule.nullable:
            continue
        high = rule.max_length
        if (
            type(value) is not str
            or len(value) < rule.min_length
            or (high is not None and len(value) > high)
        ):
            return False
        pattern = PATTERNS.get(name)
        if value.isascii():
            if pattern is not None and not pattern.fullmatch(value):
                return False
        elif pattern is not None or not _is_unicode(value):
            return False
    metadata = entry.get("metadata", 0)
    return metadata is None or (
        type(metadata) is dict
        and all(type(key) is str and (key.isascii() or _is_unicode(key)) for key in metadata)
    )


def _is_unicode(text: str) -> bool:
    """Whether `text` is valid Unicode (no lone surrogate), as pydantic requires of a str."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_with_model(entry: dict[str, Any], problems: list[str], derived_missing: bool) -> None:
    """Validate `entry` with the pydantic model; add its problems to `problems`."""
    from pydantic import ValidationError

    from .entry_model import Entry

    try:
        Entry.__pydantic_validator__.validate_python(entry)
    except ValidationError as exc:
        derived = {"description", "actionDisplayName", "target"} if derived_missing else set()
        # A field already reported (e.g. an impossible createdAt) is not reported twice.
        reported = {problem.split(":", 1)[0].split(".", 1)[0] for problem in problems}
        problems.extend(
            problem
            for problem in _pydantic_problems(exc, entry)
            if not (problem.split(":", 1)[0] in derived and entry[problem.split(":", 1)[0]] is None)
            and problem.split(":", 1)[0] not in reported
        )


def _pydantic_problems(exc: Any, entry: Mapping[str, Any]) -> list[str]:
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
