"""Export writers (JSONL, JSON, CSV, OCSF, RFC 5424 syslog); `-o` files go through outfile.py.

Every writer turns stored lines into bytes one entry at a time, so an export of any size runs in
the memory of one partition's matches. The OCSF and syslog mappings are documented in the README
(keep its table in step with OCSF_CLASSES below).
"""

from __future__ import annotations

import csv
import socket
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

import orjson

from . import __version__
from .errors import UsageError
from .model import SEED_FIELDS
from .query import Filters, QueryEngine, entry_of, seed_json
from .render import csv_cell, short_time, visible
from .store import AuditStore

FORMATS: tuple[str, ...] = ("jsonl", "json", "csv", "ocsf", "syslog")

# =============================================================================== OCSF
#: The OCSF schema version the events declare.
OCSF_VERSION = "1.3.0"
_IAM = 3  # category "Identity & Access Management"
_CLASS_NAMES = {
    3001: "Account Change",
    3002: "Authentication",
    3004: "Entity Management",
    3005: "User Access Management",
    3006: "Group Management",
}


@dataclass(frozen=True)
class OcsfClass:
    """How one action maps to OCSF: class, activity, and which entry field is the `user`."""

    class_uid: int
    activity_id: int
    activity_name: str
    #: what `user` (or `group`) describes: "actor", "target", or "member" (metadata's userId)
    subject: str


#: The 15 built-in actions. Custom actions fall back by target type (see ocsf_class()).
OCSF_CLASSES: dict[str, OcsfClass] = {
    "login": OcsfClass(3002, 1, "Logon", "actor"),
    "user_added": OcsfClass(3001, 1, "Create", "target"),
    "user_removed": OcsfClass(3001, 6, "Delete", "target"),
    "service_account_created": OcsfClass(3001, 1, "Create", "target"),
    "service_account_deleted": OcsfClass(3001, 6, "Delete", "target"),
    "role_created": OcsfClass(3001, 1, "Create", "target"),
    "role_updated": OcsfClass(3001, 99, "Update", "target"),
    "role_deleted": OcsfClass(3001, 6, "Delete", "target"),
    "org_admin_added": OcsfClass(3005, 1, "Assign Privileges", "target"),
    "org_admin_removed": OcsfClass(3005, 2, "Revoke Privileges", "target"),
    "user_role_changed_in_team": OcsfClass(3005, 1, "Assign Privileges", "member"),
    "team_created": OcsfClass(3006, 6, "Create", "group"),
    "team_deleted": OcsfClass(3006, 5, "Delete", "group"),
    "user_added_to_team": OcsfClass(3006, 3, "Add User", "member"),
    "user_removed_from_team": OcsfClass(3006, 4, "Remove User", "member"),
}
_CUSTOM_BY_TARGET = {
    "USER": 3001,
    "ROLE": 3001,
    "SERVICE_ACCOUNT": 3001,
    "TEAM": 3006,
    "ORGANIZATION": 3004,
}
#: OCSF user type: a regular user (1), or Other (99) named by `type` for roles and service accounts.
_USER_TYPES = {
    "USER": (1, "User"),
    "ROLE": (99, "Role"),
    "SERVICE_ACCOUNT": (99, "Service Account"),
}


def ocsf_class(action: str, target: str) -> OcsfClass:
    """The mapping of `action`; an action outside the catalog's 15 maps by its target type to
    the class's Other activity (99)."""
    known = OCSF_CLASSES.get(action)
    if known is not None:
        return known
    class_uid = _CUSTOM_BY_TARGET.get(target, 3004)
    subject = {3006: "group", 3004: "entity"}.get(class_uid, "target")
    return OcsfClass(class_uid, 99, "Other", subject)


def _epoch_ms(created_at: str) -> int:
    from .timeparse import parse_utc

    return int(parse_utc(created_at).timestamp() * 1000)


def _input(entry: dict[str, Any]) -> dict[str, Any]:
    # The seed's examples keep request details under metadata.input; accept them at the top too.
    metadata = entry.get("metadata")
    if not isinstance(metadata, dict):
        return {}
    inner = metadata.get("input")
    return inner if isinstance(inner, dict) else metadata


def ocsf_event(entry: dict[str, Any]) -> dict[str, Any]:
    """One entry as an OCSF 1.3 event of the Identity & Access Management category."""
    mapping = ocsf_class(entry["action"], entry["target"])
    class_uid, activity_id = mapping.class_uid, mapping.activity_id
    org = {"uid": entry["organizationId"]}
    actor_user: dict[str, Any] = {"uid": entry["actorId"], "type_id": 1, "type": "User", "org": org}
    if entry.get("actorName"):
        actor_user["name"] = entry["actorName"]
    if entry.get("actorEmail"):
        actor_user["email_addr"] = entry["actorEmail"]
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": _CLASS_NAMES[class_uid],
        "category_uid": _IAM,
        "category_name": "Identity & Access Management",
        "activity_id": activity_id,
        "activity_name": mapping.activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{_CLASS_NAMES[class_uid]}: {mapping.activity_name}",
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
    unmapped: dict[str, Any] = {
        "action": entry["action"],
        "actionDisplayName": entry["actionDisplayName"],
        "target": entry["target"],
        "targetId": entry["targetId"],
    }
    details = _input(entry)
    member = details.get("userId") if isinstance(details.get("userId"), str) else None
    target_type = entry["target"]
    if mapping.subject == "actor":
        event["user"] = dict(actor_user)
    elif mapping.subject == "target":
        type_id, type_name = _USER_TYPES.get(target_type, (99, target_type.title()))
        event["user"] = {
            "uid": entry["targetId"],
            "type_id": type_id,
            "type": type_name,
            "org": org,
        }
    elif mapping.subject == "group":
        event["group"] = {"uid": entry["targetId"], "type": "Team"}
    elif mapping.subject == "member":
        team = entry.get("teamId") or (entry["targetId"] if target_type == "TEAM" else None)
        if member is not None:
            event["user"] = {"uid": member, "type_id": 1, "type": "User", "org": org}
        if class_uid == 3006:
            event["group"] = {"uid": team, "type": "Team"}
        elif team is not None:
            event["resource"] = {"uid": team, "type": "Team"}
    else:  # entity
        event["entity"] = {"uid": entry["targetId"], "type": target_type.title()}
    if class_uid == 3005:
        event["privileges"] = _privileges(entry, details)
    if entry.get("teamId") and "group" not in event:
        unmapped["teamId"] = entry["teamId"]
    if entry.get("metadata") is not None:
        unmapped["metadata"] = entry["metadata"]
    event["unmapped"] = unmapped
    return event


def _privileges(entry: dict[str, Any], details: dict[str, Any]) -> list[str]:
    if entry["action"] in ("org_admin_added", "org_admin_removed"):
        return ["org_admin"]
    for key in ("to", "role", "newRole"):
        value = details.get(key)
        if isinstance(value, str):
            return [value]
    return [entry["actionDisplayName"]]


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
#: One pass of str.translate: a raw newline would end the syslog line early, so controls are
#: written as \xNN; in SD values `"`, `\` and `]` get a backslash (a literal backslash doubled,
#: so an \xNN escape cannot be confused with data there).
_MSG_TABLE = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}
_SD_TABLE = {**_MSG_TABLE, ord("\\"): "\\\\", ord('"'): '\\"', ord("]"): "\\]"}


def _no_controls(text: str) -> str:
    return text.translate(_MSG_TABLE)


def sd_escape(value: str) -> str:
    """An SD-PARAM value (RFC 5424 §6.3.3): `"`, `\\` and `]` escaped with a backslash."""
    return value.translate(_SD_TABLE)


def _header_token(text: str, limit: int) -> str:
    # HOSTNAME, APP-NAME and MSGID are printable US-ASCII without spaces, or "-".
    if text.isascii() and text.isprintable() and " " not in text and 0 < len(text) <= limit:
        return text
    cleaned = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def syslog_line(entry: dict[str, Any], hostname: str) -> str:
    """One entry as an RFC 5424 message (without the newline): PRI, version 1, the entry's time,
    HOSTNAME, APP-NAME `audit`, no PROCID, MSGID = the action, structured data, description."""
    severity = 6 if entry["action"] == "login" else 5
    params = [
        f'{name}="{sd_escape(str(entry[name]))}"'
        for name in _SD_FIELDS
        if entry.get(name) is not None
    ]
    if entry.get("metadata") is not None:
        params.append(f'metadata="{sd_escape(orjson.dumps(entry["metadata"]).decode())}"')
    pri = SYSLOG_FACILITY * 8 + severity
    host, msgid = _header_token(hostname, 255), _header_token(entry["action"], 32)
    data = f"[{SD_ID} {' '.join(params)}]"
    message = _no_controls(entry["description"])
    return f"<{pri}>1 {entry['createdAt']} {host} audit - {msgid} {data} {message}"


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
    """One entry per line: exactly the seed's 13 fields (the `_chain` link is left out)."""

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


class OcsfWriter(Writer):
    """One OCSF event per line (JSON Lines)."""

    def line(self, stored: bytes) -> bytes:
        return orjson.dumps(ocsf_event(entry_of(stored))) + b"\n"


class SyslogWriter(Writer):
    """One RFC 5424 message per line."""

    def __init__(self, hostname: str | None = None) -> None:
        self.hostname = hostname or default_hostname()

    def line(self, stored: bytes) -> bytes:
        return syslog_line(entry_of(stored), self.hostname).encode() + b"\n"


class TextWriter(Writer):
    """One readable line per entry (for `audit tail` on a terminal): time, action, actor,
    target, description, every field with control and bidi characters shown as escapes."""

    def line(self, stored: bytes) -> bytes:
        entry = entry_of(stored)
        actor = entry.get("actorEmail") or entry.get("actorName") or entry["actorId"]
        # Padded columns line up for the usual widths; longer values push the rest right.
        fields = [
            short_time(str(entry["createdAt"])),
            visible(str(entry["action"])).ljust(22),
            visible(str(actor)).ljust(24),
            visible(f"{entry['target']}:{entry['targetId']}").ljust(22),
            visible(str(entry["description"])),
        ]
        return ("  ".join(fields) + "\n").encode()


def make_writer(fmt: str, *, hostname: str | None = None) -> Writer:
    """The writer of one of FORMATS, or `text` (TextWriter)."""
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
    if fmt == "text":
        return TextWriter()
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
    progress: Callable[[int, int, int], None] | None = None,
) -> ExportReport:
    """Write every entry matching `filters` to `out` in `fmt`, one partition in memory at a time.

    `progress(days_done, days_total, entries)` is called after each partition. With `gzip`, the
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
            progress(done, len(days), entries)
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
