"""Chain version 2: salted per-field commitments, so that personal data can be erased from a
stored line without breaking its chain link. Pure functions, no I/O.

A version 2 line stores one more key just before `createdAt`, the line's random salt:

    {"id":…,"actorName":"Alice",…,"teamId":null,"_salt":"<32 hex>","createdAt":"…","_chain":…}

Its link does not hash the personal values themselves but a commitment to each: for every
*personal field* (`description`, `actorName`, `actorEmail` and each top-level key `K` of
`metadata`, named `metadata.K`)

    field salt  = SHA-256( "auditcli-field-salt" 0x00 ‖ salt ‖ field name )
    commitment  = SHA-256( field salt ‖ canonical JSON of the value )        (hex)

and the link is SHA-256( previous link ‖ "auditcli-chain-v2" 0x00 ‖ canonical JSON of the entry
with each personal value replaced by its commitment ). Canonical JSON is the manifests' (keys
sorted, compact, UTF-8). A redaction replaces chosen personal values with `MARKER` and the salt
with the `_redacted` record: the commitments of the removed values and the field salts of the
personal fields kept (which bind their values without revealing the salt of the others). The
link is unchanged, so the chain proves that nothing but personal values changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from . import chain

#: What a redacted value becomes.
MARKER = "[redacted]"
#: The personal fields outside `metadata`; `metadata.K` names a top-level metadata key.
PERSONAL_FIELDS: tuple[str, ...] = ("description", "actorName", "actorEmail")
#: The metadata keys `audit redact` removes by default (extend per call with --field).
DEFAULT_METADATA_KEYS: tuple[str, ...] = (
    "email",
    "name",
    "userName",
    "username",
    "fullName",
    "phone",
    "ip",
    "ipAddress",
    "userAgent",
    "address",
    "targetName",
    "targetEmail",
)
SALT_BYTES = 16
_LINK_TAG = b"auditcli-chain-v2\x00"
_FIELD_TAG = b"auditcli-field-salt\x00"
#: `,"createdAt":"<24 chars>"}`: the end of every entry's canonical JSON.
_CREATED_TAIL = len(b',"createdAt":"') + 24 + 2


class BadBlock(ValueError):
    """A version 2 line whose salt or redaction record is malformed or does not fit it."""


def canonical(value: Any) -> bytes:
    """Canonical JSON (keys sorted, compact, UTF-8), as manifests are written (Python's
    `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`)."""
    if type(value) in _SAME_IN_ORJSON:  # byte for byte what json.dumps writes, 20x faster
        return orjson.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


#: Values orjson writes exactly as json.dumps does (a float may differ: `1e+16` vs `1e16`).
_SAME_IN_ORJSON = (str, int, bool, type(None))


def personal_fields(entry: Mapping[str, Any]) -> list[str]:
    """The names of the personal fields an entry commits to (its metadata keys included)."""
    metadata = entry.get("metadata")
    keys = [f"metadata.{key}" for key in metadata] if isinstance(metadata, dict) else []
    return [*PERSONAL_FIELDS, *keys]


def value_of(entry: Mapping[str, Any], name: str) -> Any:
    """The value of personal field `name` (`metadata.K` reads metadata key K)."""
    if name.startswith("metadata."):
        return entry["metadata"][name[len("metadata.") :]]
    return entry[name]


def field_salt(salt: bytes, name: str) -> bytes:
    """The salt of one field: it reveals nothing of the line's salt or the other fields'."""
    return hashlib.sha256(_FIELD_TAG + salt + name.encode()).digest()


def commitment(salt_of_field: bytes, value: Any) -> str:
    """The commitment (hex) to one field's value."""
    return hashlib.sha256(salt_of_field + canonical(value)).hexdigest()


def hashed_form(entry: Mapping[str, Any], commitments: Mapping[str, str]) -> bytes:
    """What a version 2 link hashes after the previous link: the entry with each personal
    value replaced by its commitment."""
    form = {key: entry[key] for key in chain.SEED_FIELDS}
    for name in PERSONAL_FIELDS:
        form[name] = commitments[name]
    metadata = entry["metadata"]
    if isinstance(metadata, dict):
        form["metadata"] = {key: commitments[f"metadata.{key}"] for key in metadata}
    # Only strings and null (commitments replace every other value): orjson's sorted output
    # is json.dumps's, byte for byte.
    return _LINK_TAG + orjson.dumps(form, option=orjson.OPT_SORT_KEYS)


def salted(content: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """`(stored content, hashed form)` of a new entry (its canonical JSON `content`): the
    content with the salt key inserted before `createdAt`, and what its link hashes."""
    entry = orjson.loads(content)
    cut = len(content) - _CREATED_TAIL
    stored = content[:cut] + chain.SALT_KEY + salt.hex().encode() + b'"' + content[cut:]
    return stored, hashed_form(entry, _commit_all(entry, salt))


def _commit_all(entry: Mapping[str, Any], salt: bytes) -> dict[str, str]:
    """`commitment(field_salt(salt, f), value)` of every personal field, inlined: it runs for
    every entry written and every line verified."""
    sha, plain, dumps = hashlib.sha256, _SAME_IN_ORJSON, orjson.dumps
    prefix = _FIELD_TAG + salt
    out = {}
    for name in PERSONAL_FIELDS:
        value = entry[name]
        data = dumps(value) if type(value) in plain else canonical(value)
        out[name] = sha(sha(prefix + name.encode()).digest() + data).hexdigest()
    metadata = entry["metadata"]
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            data = dumps(value) if type(value) in plain else canonical(value)
            name = b"metadata." + key.encode()
            out[f"metadata.{key}"] = sha(sha(prefix + name).digest() + data).hexdigest()
    return out


def parse(content: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`(entry, block)` of a stored line's content (as `chain.split_line` cuts it): the 13
    fields, and the version 2 block (`{"_salt": …}` or `{"_redacted": …}`), None for version 1.
    Raises BadBlock when the content is not JSON or the block is malformed."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise BadBlock("not JSON") from None
    if not isinstance(data, dict):
        raise BadBlock("not a JSON object")
    block = {key: data.pop(key) for key in ("_salt", "_redacted") if key in data}
    if len(block) > 1 or list(data) != list(chain.SEED_FIELDS):
        raise BadBlock("not the 13 entry fields and one commitment block")
    return data, block or None


def commitments_of(entry: Mapping[str, Any], block: Mapping[str, Any]) -> dict[str, str]:
    """The commitments of every personal field of a version 2 line (BadBlock when the block
    does not fit the entry: a field missing or twice, a redacted value not the marker)."""
    names = personal_fields(entry)
    if "_salt" in block:
        return _commit_all(entry, _hex(block["_salt"], SALT_BYTES))
    record = block["_redacted"]
    if not isinstance(record, dict) or set(record) != {"commitments", "salts"}:
        raise BadBlock("_redacted must hold exactly commitments and salts")
    removed, kept = record["commitments"], record["salts"]
    if not isinstance(removed, dict) or not isinstance(kept, dict):
        raise BadBlock("_redacted: commitments and salts must be objects")
    if set(removed) & set(kept) or set(removed) | set(kept) != set(names):
        raise BadBlock("_redacted does not name each personal field of the entry exactly once")
    out = {}
    for name in names:
        if name in removed:
            value = value_of(entry, name)
            if value != MARKER and not (name == "description" and isinstance(value, str)):
                raise BadBlock(f"{name}: redacted, but its value is not {MARKER}")
            out[name] = _hex(removed[name], 32).hex()
        else:
            out[name] = commitment(_hex(kept[name], 32), value_of(entry, name))
    return out


def link_input(content: bytes) -> tuple[bytes, bool] | None:
    """For a stored line's content (block included): `(what its link hashes, redacted)` for a
    version 2 line, None for version 1. BadBlock when malformed."""
    entry, block = parse(content)
    if block is None:
        return None
    return hashed_form(entry, commitments_of(entry, block)), "_redacted" in block


def redact(content: bytes, fields: Iterable[str], terms: Iterable[str]) -> bytes | None:
    """The stored content of a line with personal `fields` (present, not null, not already the
    marker) replaced by MARKER and each of `terms` inside the description too; None when
    nothing changes. Version 2 lines keep their link (the salt goes, the commitments stay);
    version 1 lines can only be replaced whole (their link no longer follows)."""
    entry, block = parse(content)
    wanted = set(fields)
    changed: set[str] = set()
    for name in personal_fields(entry):
        if name == "description" or name not in wanted:
            continue
        value = value_of(entry, name)
        if value is not None and value != MARKER:
            changed.add(name)
    description = entry["description"]
    if isinstance(description, str):
        scrubbed = description
        for term in sorted({t for t in terms if len(t) >= 3}, key=len, reverse=True):
            scrubbed = scrubbed.replace(term, MARKER)
        if scrubbed != description or ("description" in wanted and description != MARKER):
            changed.add("description")
            description = scrubbed if "description" not in wanted else MARKER
    if not changed:
        return None
    commitments = commitments_of(entry, block) if block is not None else {}
    new = dict(entry)
    for name in changed:
        if name == "description":
            new["description"] = description
        elif name.startswith("metadata."):
            new["metadata"] = {**new["metadata"], name[len("metadata.") :]: MARKER}
        else:
            new[name] = MARKER
    body = orjson.dumps(new)
    if block is None:
        return body
    if "_salt" in block:
        salt = _hex(block["_salt"], SALT_BYTES)
        removed: dict[str, str] = {}
        kept = {n: field_salt(salt, n).hex() for n in personal_fields(entry)}
    else:
        removed, kept = dict(block["_redacted"]["commitments"]), dict(block["_redacted"]["salts"])
    for name in changed:
        if name in kept:
            del kept[name]
            removed[name] = commitments[name]
    record = canonical({"commitments": removed, "salts": kept})
    cut = len(body) - _CREATED_TAIL
    return body[:cut] + chain.REDACTED_KEY[:-1] + record + body[cut:]


def _hex(value: Any, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise BadBlock(f"expected {2 * size} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BadBlock(f"expected {2 * size} hex digits") from None
