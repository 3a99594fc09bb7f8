"""`audit export -f ocsf` judged by the OCSF 1.3.0 schema itself.

`data/ocsf/ocsf-1.3.0.json.gz` is OCSF 1.3.0 compiled from the `ocsf/ocsf-schema` repository at
tag 1.3.0 with ocsf-lib (Apache 2.0: LICENSE and NOTICE beside it). The validator below applies
what the schema says a valid event is: every required attribute (per profile where one is named,
for the profiles the event declares), the class's and every object's `at_least_one`/`just_one`
constraints, no attribute the class or object does not define, enum ids, the caption of each
`*_id`'s sibling (99, Other, takes the source's own), the types (with their regex, length and
range), `type_uid = class_uid * 100 + activity_id`, and the category of the class.
"""

from __future__ import annotations

import gzip
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import outside_stores as stores
import pytest

from auditcli.catalog import BUILTIN_ACTIONS

SCHEMA_FILE = Path(__file__).parent / "data" / "ocsf" / "ocsf-1.3.0.json.gz"


@cache
def schema() -> dict[str, Any]:
    """The compiled OCSF 1.3.0 schema."""
    with gzip.open(SCHEMA_FILE) as handle:
        return json.load(handle)


def _class_of(uid: Any) -> dict[str, Any] | None:
    return next((c for c in schema()["classes"].values() if c["uid"] == uid), None)


def validate(event: dict[str, Any]) -> list[str]:
    """Every way `event` is not a valid OCSF 1.3.0 event (empty when it is valid)."""
    problems: list[str] = []
    cls = _class_of(event.get("class_uid"))
    if cls is None:
        return [f"class_uid {event.get('class_uid')!r} is no OCSF 1.3.0 class"]
    profiles = set((event.get("metadata") or {}).get("profiles") or [])
    _check_attributes(
        event, cls["attributes"], cls.get("constraints"), profiles, cls["name"], problems
    )
    if event.get("type_uid") != cls["uid"] * 100 + (event.get("activity_id") or 0):
        problems.append("type_uid is not class_uid * 100 + activity_id")
    category = schema()["categories"][cls["category"]]
    if event.get("category_uid") != category["uid"]:
        problems.append(f"category_uid is not {category['uid']} ({cls['category']})")
    return problems


def _present(value: Any) -> bool:
    return value is not None


def _check_attributes(
    data: Any,
    attributes: dict[str, Any],
    constraints: dict[str, list[str]] | None,
    profiles: set[str],
    where: str,
    problems: list[str],
) -> None:
    if not isinstance(data, dict):
        problems.append(f"{where}: not an object")
        return
    for name, spec in attributes.items():
        required = spec.get("requirement") == "required" and (
            spec.get("profile") is None or spec["profile"] in profiles
        )
        if required and not _present(data.get(name)):
            problems.append(f"{where}.{name}: required, missing")
    for kind, names in (constraints or {}).items():
        count = sum(_present(data.get(name)) for name in names)
        if (kind == "at_least_one" and count < 1) or (kind == "just_one" and count != 1):
            problems.append(f"{where}: constraint {kind} {names} not met ({count} present)")
    for name, value in data.items():
        spec = attributes.get(name)
        if spec is None:
            problems.append(f"{where}.{name}: not an attribute of {where.split('.')[-1]}")
            continue
        if value is None:
            continue
        values = value if spec.get("is_array") else [value]
        if spec.get("is_array") and not isinstance(value, list):
            problems.append(f"{where}.{name}: must be an array")
            continue
        for item in values:
            _check_value(item, spec, profiles, f"{where}.{name}", problems)
        enum = spec.get("enum")
        if enum:
            if str(value) not in enum:
                problems.append(f"{where}.{name}: {value!r} is not one of its enum ids")
            elif spec.get("sibling") and data.get(spec["sibling"]) is not None:
                caption = enum[str(value)]["caption"]
                if value != 99 and data[spec["sibling"]] != caption:
                    problems.append(
                        f"{where}.{spec['sibling']}: {data[spec['sibling']]!r}, but the caption"
                        f" of {name} {value} is {caption!r}"
                    )


def _check_value(
    value: Any, spec: dict[str, Any], profiles: set[str], where: str, problems: list[str]
) -> None:
    type_name = spec["type"]
    objects, types = schema()["objects"], schema()["types"]
    if type_name in objects:
        obj = objects[type_name]
        if type_name == "object":
            if not isinstance(value, dict):
                problems.append(f"{where}: not an object")
            return
        _check_attributes(
            value, obj["attributes"], obj.get("constraints"), profiles, where, problems
        )
        return
    _check_scalar(value, type_name, types, where, problems)


def _check_scalar(
    value: Any, type_name: str, types: dict[str, Any], where: str, problems: list[str]
) -> None:
    spec = types[type_name]
    base = spec.get("type") or type_name
    ok = {
        "string_t": lambda v: isinstance(v, str),
        "integer_t": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "long_t": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float_t": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean_t": lambda v: isinstance(v, bool),
        "json_t": lambda v: True,
    }[base](value)
    if not ok:
        problems.append(f"{where}: {value!r} is not a {type_name}")
        return
    if base == "integer_t" and not -(2**31) <= value < 2**31:
        problems.append(f"{where}: {value} is outside a 32-bit integer_t")
    if base == "long_t" and not -(2**63) <= value < 2**63:
        problems.append(f"{where}: {value} is outside a 64-bit long_t")
    for limits in (spec, types[base]):
        if limits.get("max_len") and isinstance(value, str) and len(value) > limits["max_len"]:
            problems.append(f"{where}: longer than {limits['max_len']}")
        if limits.get("regex") and not re.search(limits["regex"], value):
            problems.append(f"{where}: {value!r} does not match {type_name}")
        if limits.get("range") and not limits["range"][0] <= value <= limits["range"][1]:
            problems.append(f"{where}: {value} outside {limits['range']}")


# ====================================================================================== tests
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """`audit export -f ocsf` of a store holding every action, with and without metadata."""
    root = tmp_path_factory.mktemp("ocsf") / "logs"
    stores.build(root, stores.every_action_entries(), big=False)
    out = stores.run_ok(root, "export", "-f", "ocsf")
    lines = out.splitlines()  # any line separator a reader may split on is escaped
    assert len(lines) == out.count("\n")
    return [orjson.loads(line) for line in lines]


def test_every_event_of_every_action_is_valid_ocsf_1_3_0(
    exported: list[dict[str, Any]],
) -> None:
    entries = stores.every_action_entries()
    assert len(exported) == len(entries)
    actions = {event["metadata"]["event_code"] for event in exported}
    assert {spec.action for spec in BUILTIN_ACTIONS} | set(stores.CUSTOM_ACTIONS) <= actions
    # each action appears without metadata and with it
    with_metadata = {(e["metadata"]["event_code"], "metadata" in e["unmapped"]) for e in exported}
    for action in actions:
        assert {(action, True), (action, False)} <= with_metadata, action
    invalid = {event["metadata"]["uid"]: validate(event) for event in exported}
    assert {uid: found for uid, found in invalid.items() if found} == {}


def test_events_keep_what_the_entry_says(exported: list[dict[str, Any]]) -> None:
    entries = {entry["id"]: entry for entry in stores.every_action_entries()}
    for event in exported:
        entry = entries[event["metadata"]["uid"]]
        assert event["message"] == entry["description"]
        assert event["metadata"]["original_time"] == entry["createdAt"]
        assert event["actor"]["user"]["uid"] == entry["actorId"]
        assert event["unmapped"]["action"] == entry["action"]
        assert event["unmapped"].get("metadata") == entry["metadata"]
        email = event["actor"]["user"].get("email_addr") or event["unmapped"].get("actorEmail")
        assert email == entry["actorEmail"]
    by_code: dict[str, list[dict[str, Any]]] = {}
    for event in exported:
        by_code.setdefault(event["metadata"]["event_code"], []).append(event)
    role = by_code["role_updated"][0]
    assert (role["activity_name"], role["type_name"]) == ("Update", "Account Change: Other")
    changed = [e for e in by_code["user_role_changed_in_team"] if e["unmapped"].get("metadata")]
    input_ = changed[0]["unmapped"]["metadata"]["input"]
    assert changed[0]["user"]["uid"] == input_["userId"]
    assert changed[0]["privileges"] == [input_["to"]]
    bare = next(e for e in by_code["user_role_changed_in_team"] if "metadata" not in e["unmapped"])
    assert bare["user"]["name"] == "unknown" and bare["privileges"] == ["unknown"]
    login = by_code["login"][0]
    assert login["service"] == {"uid": login["actor"]["user"]["org"]["uid"]}
    custom = by_code["team_membership_quarterly_review_completed"][0]
    assert (custom["class_uid"], custom["activity_id"]) == (3006, 99)
    # Other (99) takes the source's own name: the action's display name
    assert custom["activity_name"] == entries[custom["metadata"]["uid"]]["actionDisplayName"]
    assert custom["type_name"] == "Group Management: Other"


@pytest.mark.parametrize(
    ("change", "found"),
    [
        (lambda e: e.pop("service"), "constraint at_least_one ['service', 'dst_endpoint']"),
        (lambda e: e.update(type_name="Authentication: Other"), "type_name"),
        (lambda e: e.update(activity_id=7, type_uid=300207), "activity_id: 7"),
        (lambda e: e.update(type_uid=300299), "type_uid is not"),
        (lambda e: e["actor"]["user"].update(email_addr="jörg@exämple.com"), "email_t"),
        (lambda e: e.update(time="2026-11-25"), "not a timestamp_t"),
        (lambda e: e.update(category_uid=4, category_name="x"), "category_uid"),
        (lambda e: e["metadata"].pop("product"), "metadata.product: required"),
        (lambda e: e.update(user={"type_id": 1}), "constraint at_least_one ['name', 'uid']"),
        (lambda e: e.update(colour="red"), "colour: not an attribute"),
        (lambda e: e["metadata"].update(profiles=["cloud"]), "cloud: required"),
    ],
)
def test_the_validator_catches_what_makes_an_event_invalid(
    exported: list[dict[str, Any]], change: Any, found: str
) -> None:
    login = next(e for e in exported if e["class_uid"] == 3002)
    assert validate(login) == []
    broken = json.loads(json.dumps(login))
    change(broken)
    problems = validate(broken)
    assert any(found in problem for problem in problems), problems
