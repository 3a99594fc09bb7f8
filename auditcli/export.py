"""Export writers (JSONL, JSON, CSV, OCSF, RFC 5424 syslog); `-o` files go through outfile.py.

Every writer turns stored lines into bytes one entry at a time, so an export of any size runs in
the memory of one partition's matches. The OCSF mapping and the syslog and CSV encodings are
documented in docs/formats.md (keep its tables in step with OCSF_CLASSES and the escapes below).
"""

from __future__ import annotations

import csv
import re
import socket
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import orjson

from . import __version__
from .errors import UsageError
from .model import SEED_FIELDS
from .progress import Progress
from .query import Filters, QueryEngine, entry_of, seed_json
from .render import csv_cell
from .store import AuditStore

FORMATS: tuple[str, ...] = ("jsonl", "json", "csv", "ocsf", "syslog")

# =============================================================================== OCSF
#: The OCSF schema version the events declare.
OCSF_VERSION = "1.3.0"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IAM = 3  # category "Identity & Access Management"
_CLASS_NAMES = {
    3001: "Account Change",
    3002: "Authentication",
    3004: "Entity Management",
    3005: "User Access Management",
    3006: "Group Management",
}
#: The OCSF 1.3.0 captions of the activities used here, per class (99 is always "Other").
_ACTIVITIES = {
    3001: {1: "Create", 6: "Delete"},
    3002: {1: "Logon"},
    3004: {},
    3005: {1: "Assign Privileges", 2: "Revoke Privileges"},
    3006: {3: "Add User", 4: "Remove User", 5: "Delete", 6: "Create"},
}
#: OCSF `email_t`: an address outside this pattern stays in `unmapped` only.
_OCSF_EMAIL = re.compile(r"[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+")
#: What the event says when an entry does not name the member (or role) OCSF requires.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class OcsfClass:
    """How one action maps to OCSF: class, activity, and what `user` (or `group`) describes."""

    class_uid: int
    activity_id: int
    #: "actor", "target" (targetId as a user), "group" (the team; `user` = the actor),
    #: "member" (metadata's userId), or "entity" (targetId as a managed entity)
    subject: str
    #: activity_name for activity 99 (Other), which takes the source's own name
    other_name: str | None = None

    @property
    def activity_name(self) -> str:
        """The OCSF caption of the activity, or the own name of an Other (99) activity."""
        if self.activity_id == 99:
            return self.other_name or "Other"
        return _ACTIVITIES[self.class_uid][self.activity_id]

    @property
    def type_name(self) -> str:
        """The caption of `type_uid` in OCSF 1.3.0: class caption and activity caption."""
        caption = "Other" if self.activity_id == 99 else self.activity_name
        return f"{_CLASS_NAMES[self.class_uid]}: {caption}"


#: The 16 built-in actions. Custom actions map by target type (see ocsf_class()).
OCSF_CLASSES: dict[str, OcsfClass] = {
    "login": OcsfClass(3002, 1, "actor"),
    "user_added": OcsfClass(3001, 1, "target"),
    "user_removed": OcsfClass(3001, 6, "target"),
    "service_account_created": OcsfClass(3001, 1, "target"),
    "service_account_deleted": OcsfClass(3001, 6, "target"),
    # OCSF 1.3.0 names no activity of Entity Management: Other (99), by its own name.
    "entries_redacted": OcsfClass(3004, 99, "entity", "Entries Redacted"),
    "role_created": OcsfClass(3001, 1, "target"),
    "role_updated": OcsfClass(3001, 99, "target", "Update"),
    "role_deleted": OcsfClass(3001, 6, "target"),
    "org_admin_added": OcsfClass(3005, 1, "target"),
    "org_admin_removed": OcsfClass(3005, 2, "target"),
    "user_role_changed_in_team": OcsfClass(3005, 1, "member"),
    "team_created": OcsfClass(3006, 6, "group"),
    "team_deleted": OcsfClass(3006, 5, "group"),
    "user_added_to_team": OcsfClass(3006, 3, "member"),
    "user_removed_from_team": OcsfClass(3006, 4, "member"),
}
_CUSTOM_BY_TARGET = {
    "USER": (3001, "target"),
    "ROLE": (3001, "target"),
    "SERVICE_ACCOUNT": (3001, "target"),
    "TEAM": (3006, "group"),
    "ORGANIZATION": (3004, "entity"),
}
#: OCSF user type: a regular user (1), or Other (99) named by `type` for roles and service accounts.
_USER_TYPES = {
    "USER": (1, "User"),
    "ROLE": (99, "Role"),
    "SERVICE_ACCOUNT": (99, "Service Account"),
}


def ocsf_class(action: str, target: str, display_name: str | None = None) -> OcsfClass:
    """The mapping of `action`; an action outside the catalog's 16 maps by its target type to
    the class's Other activity (99), named by its display name."""
    known = OCSF_CLASSES.get(action)
    if known is not None:
        return known
    class_uid, subject = _CUSTOM_BY_TARGET.get(target, (3004, "entity"))
    return OcsfClass(class_uid, 99, subject, display_name or action)


def _epoch_ms(created_at: str) -> int:
    from .timeparse import parse_utc

    moment = parse_utc(created_at)
    # Exact integer arithmetic: a float timestamp loses milliseconds for years far from 1970.
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _input(entry: dict[str, Any]) -> dict[str, Any]:
    # The API's examples keep request details under metadata.input; accept them at the top too.
    metadata = entry.get("metadata")
    if not isinstance(metadata, dict):
        return {}
    inner = metadata.get("input")
    return inner if isinstance(inner, dict) else metadata


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def ocsf_event(entry: dict[str, Any]) -> dict[str, Any]:
    """One entry as an OCSF 1.3.0 event of the Identity & Access Management category (the
    mapping per action is documented in docs/formats.md)."""
    mapping = ocsf_class(entry["action"], entry["target"], entry["actionDisplayName"])
    class_uid, activity_id = mapping.class_uid, mapping.activity_id
    org = {"uid": entry["organizationId"]}
    unmapped: dict[str, Any] = {
        "action": entry["action"],
        "actionDisplayName": entry["actionDisplayName"],
        "target": entry["target"],
        "targetId": entry["targetId"],
    }
    actor_user: dict[str, Any] = {"uid": entry["actorId"], "type_id": 1, "type": "User", "org": org}
    if entry.get("actorName"):
        actor_user["name"] = entry["actorName"]
    email = entry.get("actorEmail")
    if email and _OCSF_EMAIL.fullmatch(email):
        actor_user["email_addr"] = email
    elif email:
        unmapped["actorEmail"] = email  # not an OCSF email_t: kept, but not as email_addr
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": _CLASS_NAMES[class_uid],
        "category_uid": _IAM,
        "category_name": "Identity & Access Management",
        "activity_id": activity_id,
        "activity_name": mapping.activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": mapping.type_name,
        "time": _epoch_ms(entry["createdAt"]),
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "message": entry["description"],
        "actor": {"user": actor_user},
        "metadata": {
            "version": OCSF_VERSION,
            "uid": entry["id"],
            "event_code": entry["action"],
            "original_time": entry["createdAt"],
            "product": {"name": "auditcli", "vendor_name": "auditcli", "version": __version__},
        },
    }
    details = _input(entry)
    target_type = entry["target"]
    team = entry.get("teamId") or (entry["targetId"] if target_type == "TEAM" else None)
    if mapping.subject == "actor":
        event["user"] = dict(actor_user)
    if class_uid == 3002:
        # OCSF wants the service or endpoint signed in to: the entry names the organization.
        event["service"] = {"uid": entry["organizationId"]}
    elif mapping.subject == "target":
        type_id, type_name = _USER_TYPES.get(target_type, (99, target_type.title()))
        event["user"] = {
            "uid": entry["targetId"],
            "type_id": type_id,
            "type": type_name,
            "org": org,
        }
    elif mapping.subject == "group":
        # OCSF wants the member (user) or privileges; creating or deleting a team has neither,
        # so `user` is the actor, the one user the entry names.
        event["group"] = _group(entry["targetId"], details)
        event["user"] = dict(actor_user)
    elif mapping.subject == "member":
        member = _text(details.get("userId"))
        event["user"] = (
            {"uid": member, "type_id": 1, "type": "User", "org": org}
            if member is not None
            else {"name": UNKNOWN, "type_id": 0, "type": "Unknown", "org": org}
        )
        if class_uid == 3006:
            event["group"] = _group(team or entry["targetId"], details)
        elif team is not None:
            event["resource"] = {"uid": team, "type": "Team"}
    else:  # entity
        event["entity"] = {"uid": entry["targetId"], "type": target_type.title()}
    if class_uid == 3005:
        event["privileges"] = [_privilege(entry, details)]
    if entry.get("teamId") and "group" not in event and "resource" not in event:
        unmapped["teamId"] = entry["teamId"]
    if entry.get("metadata") is not None:
        unmapped["metadata"] = entry["metadata"]
    event["unmapped"] = unmapped
    return event


def _group(uid: str, details: dict[str, Any]) -> dict[str, Any]:
    group: dict[str, Any] = {"uid": uid, "type": "Team"}
    name = _text(details.get("name"))
    if name is not None:
        group["name"] = name
    return group


def _privilege(entry: dict[str, Any], details: dict[str, Any]) -> str:
    """The privilege granted or revoked: `org_admin`, or the new team role; `unknown` when the
    entry's metadata does not say (the entry is kept whole in `unmapped`)."""
    if entry["action"] in ("org_admin_added", "org_admin_removed"):
        return "org_admin"
    for key in ("to", "role", "newRole"):
        value = _text(details.get(key))
        if value is not None:
            return value
    return UNKNOWN


# ============================================================================== syslog
#: RFC 5424 facility 13 "log audit"; severity 6 (informational) for logins, 5 (notice) otherwise.
SYSLOG_FACILITY = 13
#: The SD-ID: name@<private enterprise number>; 32473 is the number RFC 5612 reserves for examples.
SD_ID = "audit@32473"
_SD_FIELDS = (
    "id",
    "actorId",
    "actorName",
    "actorEmail",
    "action",
    "target",
    "targetId",
    "organizationId",
    "teamId",
)
#: The text escape of syslog MSG and SD values, one pass of str.translate: a backslash is
#: doubled, and every character that some reader takes as a line break or control — C0 controls,
#: DEL, the C1 controls (NEL is U+0085), U+2028 and U+2029 — becomes `\xNN` or `\uNNNN`.
#: unescape_text() reverses it exactly.
_TEXT_TABLE = {
    **{code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]},
    0x5C: "\\\\",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
#: RFC 5424 §6.3.3: inside a PARAM-VALUE, `"`, `\` and `]` are escaped with a backslash.
_SD_TABLE = {0x5C: "\\\\", 0x22: '\\"', 0x5D: "\\]"}
_UNESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|(\\))")
#: Printed before a MSG that is not pure ASCII, as RFC 5424 §6.4 asks of UTF-8 text.
BOM = "\ufeff"
#: MSGID is at most 32 characters (RFC 5424 §6); a longer action leaves it NILVALUE.
MSGID_MAX = 32


def escape_text(text: str) -> str:
    """The text escape used in syslog MSG and (before RFC 5424 escaping) in SD values."""
    return text.translate(_TEXT_TABLE)


def unescape_text(text: str) -> str:
    """The original of escape_text(): `\\\\` → `\\`, `\\xNN` and `\\uNNNN` → that
    character."""

    def one(match: re.Match[str]) -> str:
        if match.group(3):
            return "\\"
        return chr(int(match.group(1) or match.group(2), 16))

    return _UNESCAPE.sub(one, text)


def sd_escape(value: str) -> str:
    """An SD-PARAM value: the text escape, then RFC 5424 §6.3.3's backslash before `"`, `\\`
    and `]`. An RFC 5424 parser's value is escape_text(value), so unescape_text() of it is
    `value`."""
    return escape_text(value).translate(_SD_TABLE)


def _header_token(text: str, limit: int) -> str:
    # HOSTNAME is printable US-ASCII without spaces, or "-" (it is this host's name, not data).
    if text.isascii() and text.isprintable() and " " not in text and 0 < len(text) <= limit:
        return text
    cleaned = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def syslog_line(entry: dict[str, Any], hostname: str) -> str:
    """One entry as an RFC 5424 message (without the newline): PRI, version 1, the entry's time,
    HOSTNAME, APP-NAME `audit`, no PROCID, MSGID = the action (NILVALUE when it is longer than
    32 characters: it is always in the `action` parameter), structured data, and the
    description as MSG. docs/formats.md says how to decode it."""
    severity = 6 if entry["action"] == "login" else 5
    params = [
        f'{name}="{sd_escape(str(entry[name]))}"'
        for name in _SD_FIELDS
        if entry.get(name) is not None
    ]
    if entry.get("metadata") is not None:
        params.append(f'metadata="{sd_escape(orjson.dumps(entry["metadata"]).decode())}"')
    pri = SYSLOG_FACILITY * 8 + severity
    action = entry["action"]
    msgid = action if len(action) <= MSGID_MAX else "-"  # actions are [a-z0-9_]: PRINTUSASCII
    host = _header_token(hostname, 255)
    data = f"[{SD_ID} {' '.join(params)}]"
    line = f"<{pri}>1 {entry['createdAt']} {host} audit - {msgid} {data}"
    description = entry["description"]
    if not description:
        return line
    message = escape_text(description)
    return f"{line} {message if message.isascii() else BOM + message}"


def default_hostname() -> str:
    """This host's name for syslog HOSTNAME."""
    return socket.gethostname() or "-"


# ============================================================================= writers
class Writer:
    """Turns stored lines into output bytes: `head()`, `line()` per entry, `tail()`."""

    def head(self) -> bytes:
        """Bytes before the first entry."""
        return b""

    def line(self, stored: bytes) -> bytes:
        """The bytes of one entry."""
        raise NotImplementedError

    def tail(self) -> bytes:
        """Bytes after the last entry."""
        return b""


class JsonlWriter(Writer):
    """One entry per line: exactly the 13 entry fields (the `_chain` link is left out)."""

    def line(self, stored: bytes) -> bytes:
        return seed_json(stored) + b"\n"


class JsonWriter(Writer):
    """One JSON array of entries, written as it goes (one entry per line inside the array)."""

    def __init__(self) -> None:
        self.first = True

    def head(self) -> bytes:
        return b"["

    def line(self, stored: bytes) -> bytes:
        prefix = b"\n" if self.first else b",\n"
        self.first = False
        return prefix + seed_json(stored)

    def tail(self) -> bytes:
        return b"]\n" if self.first else b"\n]\n"


class _Collect:
    """A file-like object for csv.writer that keeps what it is given."""

    def __init__(self, parts: list[str]) -> None:
        self.write = parts.append


class CsvWriter(Writer):
    """A header row, then one row per entry; metadata as a JSON cell; formula cells neutralised."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.csv = csv.writer(_Collect(self.parts), lineterminator="\r\n")

    def _row(self, cells: Iterable[str]) -> bytes:
        self.csv.writerow(cells)
        row = "".join(self.parts)
        self.parts.clear()
        return row.encode()

    def head(self) -> bytes:
        return self._row(SEED_FIELDS)

    def line(self, stored: bytes) -> bytes:
        entry = entry_of(stored)
        return self._row([csv_cell(entry[name]) for name in SEED_FIELDS])


#: Characters JSON allows raw inside strings that some line readers (Python's splitlines,
#: JavaScript before ES2019) take as line ends: an OCSF line writes them as JSON escapes.
_JSON_LINE_BREAKS = (("\u0085", "\\u0085"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


class OcsfWriter(Writer):
    """One OCSF event per line (JSON Lines), with no character any reader takes as a line end."""

    def line(self, stored: bytes) -> bytes:
        data = orjson.dumps(ocsf_event(entry_of(stored)))
        for raw, escaped in _JSON_LINE_BREAKS:
            raw_bytes = raw.encode()
            if raw_bytes in data:  # only inside strings: JSON's structure is ASCII
                data = data.replace(raw_bytes, escaped.encode())
        return data + b"\n"


class SyslogWriter(Writer):
    """One RFC 5424 message per line."""

    def __init__(self, hostname: str | None = None) -> None:
        self.hostname = hostname or default_hostname()

    def line(self, stored: bytes) -> bytes:
        return syslog_line(entry_of(stored), self.hostname).encode() + b"\n"


def make_writer(fmt: str, *, hostname: str | None = None) -> Writer:
    """The writer of one of FORMATS."""
    if fmt == "jsonl":
        return JsonlWriter()
    if fmt == "json":
        return JsonWriter()
    if fmt == "csv":
        return CsvWriter()
    if fmt == "ocsf":
        return OcsfWriter()
    if fmt == "syslog":
        return SyslogWriter(hostname)
    raise UsageError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")


# ============================================================================== export
@dataclass
class ExportReport:
    """What an export wrote."""

    entries: int
    bytes_written: int
    problems: list[Any]


def export(
    store: AuditStore,
    filters: Filters,
    out: IO[bytes],
    fmt: str = "jsonl",
    *,
    order: str = "asc",
    gzip: bool = False,
    hostname: str | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Write every entry matching `filters` to `out` in `fmt`, one partition in memory at a time.

    `progress` hears of the entries written and the partitions (days) done of all. With `gzip`, the
    output is one gzip member."""
    writer = make_writer(fmt, hostname=hostname)
    engine = QueryEngine(store, filters, order=order)
    sink = _GzipSink(out) if gzip else _PlainSink(out)
    days = engine.days()
    entries = 0
    sink.write(writer.head())
    for done, day in enumerate(days, 1):
        buffer = bytearray()
        for stored in engine.day_lines(day):
            buffer += writer.line(stored)
            entries += 1
            if len(buffer) >= 1 << 20:
                sink.write(bytes(buffer))
                buffer.clear()
        sink.write(bytes(buffer))
        if progress is not None:
            progress(entries, done=done, total=len(days))
    sink.write(writer.tail())
    sink.close()
    return ExportReport(entries, sink.size, engine.problems)


class _PlainSink:
    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.size = out, 0

    def write(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.size += len(data)

    def close(self) -> None:
        self.out.flush()


class _GzipSink(_PlainSink):
    # zlib with wbits=31 writes a single gzip member with mtime 0: the same input gives the same
    # bytes, and every gzip reader reads all of it.
    def __init__(self, out: IO[bytes]) -> None:
        super().__init__(out)
        self.packer = zlib.compressobj(6, zlib.DEFLATED, 31)

    def write(self, data: bytes) -> None:
        if data:
            packed = self.packer.compress(data)
            if packed:
                super().write(packed)

    def close(self) -> None:
        super().write(self.packer.flush())
        super().close()
