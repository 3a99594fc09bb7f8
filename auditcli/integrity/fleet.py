"""The fleet file: which writers (hosts) a merged store must hold and which key signs each.

It is trusted input, kept outside the store (an attacker who can write the store must not be
able to change it). TOML, read with the standard library::

    [writers.web1]
    public_key = "keys/web1.pub"   # PEM or ssh-ed25519; relative to this file. Or a list.
    anchor = "sha256:…"            # optional: a manifest hash `audit seal` printed on web1
    [writers.web2]
    key_id = "sha256:…"            # the key id `audit keys generate` printed, instead of a file
    required = false               # may be absent (default true: absent is a problem)
    [writers.lab]
    unsigned = true                # seals without a key (only the hash chain protects them)
    [legacy]
    public_key = "old-seal.pub"    # optional: the key of the chain written before per-writer chains
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditcli.errors import UsageError

from .constants import _TAGGED, _WRITER
from .keys import key_id, load_public_key

#: key id -> the public key, or None when only the id is known (the embedded key must match it)
TrustedKeys = dict[str, Any]

_WRITER_FIELDS = {"public_key", "key_id", "unsigned", "required", "anchor"}


@dataclass
class FleetWriter:
    """What the fleet file says about one writer."""

    writer: str
    keys: TrustedKeys = field(default_factory=dict)
    unsigned: bool = False
    required: bool = True
    anchors: list[str] = field(default_factory=list)


@dataclass
class Fleet:
    """A parsed fleet file."""

    path: Path
    writers: dict[str, FleetWriter]
    legacy_keys: TrustedKeys = field(default_factory=dict)


def load_fleet(path: str | os.PathLike[str]) -> Fleet:
    """Read and check a fleet file; any mistake is a UsageError naming the file and field
    (a typo must never quietly weaken what verify checks)."""
    where = Path(path)
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"fleet file {where}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"fleet file {where}: not valid TOML ({exc})") from None
    unknown = set(data) - {"writers", "legacy"}
    if unknown:
        raise UsageError(f"fleet file {where}: unknown table(s) {', '.join(sorted(unknown))}")
    writers_table = data.get("writers")
    if not isinstance(writers_table, dict) or not writers_table:
        raise UsageError(f"fleet file {where}: no [writers.<id>] table")
    writers = {}
    for writer, spec in writers_table.items():
        field_name = f"writers.{writer}"
        if not _WRITER.fullmatch(writer):
            raise UsageError(f"fleet file {where}: {field_name}: not a writer id")
        if not isinstance(spec, dict):
            raise UsageError(f"fleet file {where}: {field_name}: expected a table")
        extra = set(spec) - _WRITER_FIELDS
        if extra:
            raise UsageError(
                f"fleet file {where}: {field_name}: unknown field(s) {', '.join(sorted(extra))}"
            )
        entry = FleetWriter(writer)
        entry.keys = _keys(where, field_name, spec)
        entry.unsigned = _bool(where, f"{field_name}.unsigned", spec.get("unsigned", False))
        entry.required = _bool(where, f"{field_name}.required", spec.get("required", True))
        if not entry.keys and not entry.unsigned:
            raise UsageError(
                f"fleet file {where}: {field_name}: give public_key or key_id"
                " (or unsigned = true for a writer that seals without a key)"
            )
        if entry.keys and entry.unsigned:
            raise UsageError(f"fleet file {where}: {field_name}: keys and unsigned = true")
        for anchor in _strings(where, f"{field_name}.anchor", spec.get("anchor")):
            tagged = anchor if anchor.startswith("sha256:") else "sha256:" + anchor
            if not _TAGGED.fullmatch(tagged):
                raise UsageError(f"fleet file {where}: {field_name}.anchor: not a SHA-256")
            entry.anchors.append(tagged)
        writers[writer] = entry
    legacy = data.get("legacy", {})
    if not isinstance(legacy, dict) or set(legacy) - {"public_key", "key_id"}:
        raise UsageError(f"fleet file {where}: legacy: only public_key and key_id are allowed")
    return Fleet(where, writers, _keys(where, "legacy", legacy))


def _keys(where: Path, field_name: str, spec: dict[str, Any]) -> TrustedKeys:
    keys: TrustedKeys = {}
    for name in _strings(where, f"{field_name}.public_key", spec.get("public_key")):
        key_path = Path(name).expanduser()
        if not key_path.is_absolute():
            key_path = where.parent / key_path
        try:
            key = load_public_key(key_path)
        except UsageError as exc:
            raise UsageError(f"fleet file {where}: {field_name}.public_key: {exc}") from None
        keys[key_id(key)] = key
    for ident in _strings(where, f"{field_name}.key_id", spec.get("key_id")):
        if not _TAGGED.fullmatch(ident):
            raise UsageError(f"fleet file {where}: {field_name}.key_id: expected sha256:<hex>")
        keys.setdefault(ident, None)
    return keys


def _strings(where: Path, field_name: str, value: Any) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise UsageError(f"fleet file {where}: {field_name}: expected a string or a list of them")
    return values


def _bool(where: Path, field_name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"fleet file {where}: {field_name}: expected true or false")
    return value
