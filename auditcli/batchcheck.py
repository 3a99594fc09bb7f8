"""The importer's shortcut: whether a batch of input lines are all complete, canonical, valid
entries (what exports, shippers and `audit query` write), decided in a few C-level passes.

The rules are `model.TEXT_RULES`, from which the pydantic model is also made. The check only
says yes (each field's values) or no (None): a no sends the lines to the full path
(`model.build_entry`), which words every problem. So it may refuse what the model accepts, but
never the reverse: a line is taken only if the full path would store exactly its bytes.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import orjson

from .chain import SEED_FIELDS
from .model import MAX_METADATA_DEPTH, PATTERNS, TEXT_RULES, TextRule


def _field_type(rule: TextRule) -> Any:
    """The msgspec type of a text field: a string of the rule's length (in code points, as
    Python and pydantic count), or null where the rule allows it. Patterns are checked apart
    (`_patterns_hold`): msgspec would call Python's regex once per value."""
    limits = msgspec.Meta(min_length=rule.min_length or None, max_length=rule.max_length)
    text: Any = Annotated[str, limits]
    return text | None if rule.nullable else text


# The metadata is kept as its raw JSON text: msgspec writes some numbers (1e16, integers
# beyond 64 bits) that the one serialiser (orjson) writes otherwise or refuses, so orjson
# decides it (`_metadata_column`).
_Line = msgspec.defstruct(
    "_Line",
    [
        (name, msgspec.Raw if name == "metadata" else _field_type(TEXT_RULES[name]))
        for name in SEED_FIELDS
    ],
    forbid_unknown_fields=True,
    gc=False,  # no cycles possible: the collector need not track millions of them
)
_decode = msgspec.json.Decoder(_Line).decode
_encode_lines = msgspec.json.Encoder().encode_lines
_NOT_OPENING = bytes(byte for byte in range(256) if byte not in b"{[\n")


def canonical_columns(raws: list[bytes]) -> tuple[list[bytes], dict[str, tuple[Any, ...]]] | None:
    """`(contents, columns)` when every line of `raws` (without its newline) is a complete,
    canonical entry that the model accepts: the line's bytes without surrounding JSON
    whitespace, and each of the 13 fields' values in line order; else None.

    Taken only when: msgspec decodes the line as exactly the 13 fields (no other, none
    twice) with text of the rules' types and lengths, re-encoding gives its bytes (compact,
    the API's key order, the serialiser's escapes: msgspec and orjson write every string
    alike), its metadata holds at most MAX_METADATA_DEPTH brackets (counting every one, even
    in strings) and is an object or null that orjson writes back as given, and every pattern
    of TEXT_RULES holds. The caller checks what needs the store (catalog, dates)."""
    if not raws:
        return None
    contents = list(map(bytes.strip, raws))
    try:
        rows = list(map(_decode, raws))
    except msgspec.DecodeError:  # also a ValidationError: a type, length or field
        return None
    except RecursionError:  # nested deeper than Python's limit (msgspec checks it)
        return None
    # Equal only if each line is its entry's encoding: neither side has a newline inside.
    if _encode_lines(rows) != b"\n".join(contents) + b"\n":
        return None
    columns = dict(
        zip(SEED_FIELDS, zip(*map(msgspec.structs.astuple, rows), strict=True), strict=True)
    )
    metadata = _metadata_column(columns["metadata"])
    if metadata is None:
        return None
    columns["metadata"] = metadata
    if not all(_patterns_hold(name, columns[name]) for name in PATTERNS):
        return None
    return contents, columns


def _metadata_column(raws: tuple[msgspec.Raw, ...]) -> tuple[Any, ...] | None:
    """The metadata values of a batch, each one's JSON text `raws[n]`, when each nests no
    deeper than MAX_METADATA_DEPTH and is an object or null that orjson parses and writes
    back byte for byte (so no duplicate key, no integer beyond 64 bits, numbers in the
    serialiser's form); else None."""
    # A value at depth N is inside N containers: at most as many as opening brackets. The
    # texts hold no raw newline (nor does any input line): one line of brackets each.
    depth = b"\n".join(raws).translate(None, _NOT_OPENING).split(b"\n")
    if max(map(len, depth)) > MAX_METADATA_DEPTH:
        return None
    joined = b"[" + b",".join(raws) + b"]"
    try:
        values = orjson.loads(joined)
        # Each raw text is one JSON value (msgspec parsed it as one): equal only if each is
        # its value's orjson form.
        if orjson.dumps(values) != joined:
            return None
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    if not set(map(type, values)) <= {dict, type(None)}:
        return None
    return tuple(values)


def _patterns_hold(name: str, values: tuple[Any, ...]) -> bool:
    """Whether every value of text field `name` (already of the rule's type) matches its
    pattern, over the distinct values. ASCII only: on other text Python's and pydantic's regex
    engines' Unicode classes (e.g. `\\s`) may differ, so the full path decides."""
    distinct = set(values)
    distinct.discard(None)
    pattern = PATTERNS[name]
    return all(map(str.isascii, distinct)) and all(map(pattern.fullmatch, distinct))
