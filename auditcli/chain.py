"""Hash links between the lines of one log file: pure functions, no I/O.

A stored line is the entry's canonical JSON with one more key at the end:

    {"id":"…",…,"createdAt":"2026-11-25T08:06:40.123Z","_chain":"sha256:<64 hex>"}

`_chain` is SHA-256 over the previous line's link (32 bytes) followed by this entry's canonical
JSON. The first link of a file starts from a genesis value that binds the file's partition and
segment name, so a file copied or renamed elsewhere no longer verifies. The suffix has a fixed
width, which lets readers strip it (and find `createdAt`) by position without parsing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import chain as _concat
from itertools import repeat
from operator import itemgetter

#: The 13 entry fields, in the API's order: the key order of every stored and printed entry.
SEED_FIELDS: tuple[str, ...] = (
    "id",
    "description",
    "actorId",
    "actorName",
    "actorEmail",
    "action",
    "actionDisplayName",
    "target",
    "targetId",
    "metadata",
    "organizationId",
    "teamId",
    "createdAt",
)
ALGORITHM = "sha256"
#: A stored line (entry, chain link and newline) is never longer: a longer one is damage.
MAX_LINE = 64 * 1024
SUFFIX_HEAD = b',"_chain":"sha256:'
SUFFIX_LEN = len(SUFFIX_HEAD) + 64 + len(b'"}\n')
#: `createdAt` sits just before the suffix: `"createdAt":"<24 chars>"` then `,"_chain"…`.
CREATED_START = -(SUFFIX_LEN + 25)
CREATED_END = -(SUFFIX_LEN + 1)
_GENESIS_TAG = b"auditcli-chain-v1\x00"
#: `,"createdAt":"<24 chars>"`: what stands between a line's commitment block and its suffix.
_CREATED_FIELD = len(b',"createdAt":"') + 24 + 1
#: Chain version 2 (see auditcli.commitments) puts one key just before `createdAt`: the salt
#: (`,"_salt":"<32 hex>"`, fixed width) or, once redacted, the `_redacted` object. Positions
#: counted from a line's end (createdAt, the suffix) are the same for both versions.
SALT_KEY = b',"_salt":"'
SALT_BLOCK = len(SALT_KEY) + 32 + 1
REDACTED_KEY = b',"_redacted":{'


def genesis(partition: str, segment: str) -> bytes:
    """The link a file's first line chains from: it binds `date=…/segment` into the chain."""
    return hashlib.sha256(_GENESIS_TAG + f"{partition}/{segment}".encode()).digest()


def link(previous: bytes, content: bytes) -> bytes:
    """The link of an entry whose canonical JSON is `content`, following link `previous`."""
    return hashlib.sha256(previous + content).digest()


def chained_line(content: bytes, digest: bytes) -> bytes:
    """The stored line: `content` (a JSON object) with its `_chain` key appended, plus newline."""
    return content[:-1] + SUFFIX_HEAD + digest.hex().encode() + b'"}\n'


def chained_lines(previous: bytes, contents: list[bytes]) -> tuple[bytes, bytes]:
    """`(payload, last link)`: the stored lines of `contents` (in order, each following the
    link before it, the first following `previous`), joined; the same bytes as `chained_line`
    of each after `link`, for bulk appends. The links are sequential, one SHA-256 each; all
    else runs in a few C-level passes over the batch (one hex of all links, one join)."""
    links: list[bytes] = []
    append, sha256 = links.append, hashlib.sha256
    for content in contents:
        previous = sha256(previous + content).digest()
        append(previous)
    # One hex of all links, split every 32 bytes: the text of each link.
    hexes = b"".join(links).hex("\n", 32).encode().split(b"\n") if links else []
    parts = zip(map(_WITHOUT_BRACE, contents), repeat(SUFFIX_HEAD), hexes, repeat(b'"}\n'))
    return b"".join(_concat.from_iterable(parts)), previous


_WITHOUT_BRACE = itemgetter(slice(None, -1))


def is_chained_line(line: bytes) -> bool:
    """Whether `line` (newline included) has the stored shape: object start, chain suffix, end."""
    return (
        len(line) > SUFFIX_LEN + 40
        and line.startswith(b'{"id":"')
        and line[-SUFFIX_LEN : -SUFFIX_LEN + len(SUFFIX_HEAD)] == SUFFIX_HEAD
        and line.endswith(b'"}\n')
    )


def all_chained_lines(lines: Sequence[bytes]) -> bool:
    """Whether every one of `lines` has the stored shape (`is_chained_line`), tested a column
    at a time in C: the per-line Python call costs more than the tests."""
    head = itemgetter(slice(-SUFFIX_LEN, -SUFFIX_LEN + len(SUFFIX_HEAD)))
    return (
        min(map(len, lines), default=SUFFIX_LEN + 41) > SUFFIX_LEN + 40
        and all(map(bytes.startswith, lines, repeat(b'{"id":"')))
        and all(map(bytes.endswith, lines, repeat(b'"}\n')))
        and list(map(head, lines)).count(SUFFIX_HEAD) == len(lines)
    )


def split_line(line: bytes) -> tuple[bytes, bytes] | None:
    """`(content, digest)` of a stored line (newline included), or None when it is malformed."""
    if not is_chained_line(line):
        return None
    try:
        digest = bytes.fromhex(line[-SUFFIX_LEN + len(SUFFIX_HEAD) : -3].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    return line[:-SUFFIX_LEN] + b"}", digest


def content_of(line: bytes) -> bytes:
    """The entry's canonical JSON (the 13 entry fields) of a stored line, without newline:
    a version 2 line's commitment block (salt or redaction record) is left out."""
    end = len(line) - SUFFIX_LEN
    start = block_start(line, end)
    if start is None:
        return line[:end] + b"}"
    return line[:start] + line[end - _CREATED_FIELD : end] + b"}"


#: Where, from a line's end, a version 2 line's salt key and a redacted line's closing brace
#: would be (see `block_start`): a line with neither is a version 1 line.
_BLOCK_END = SUFFIX_LEN + _CREATED_FIELD  # bytes from a commitment block's end to the line's
_SALT_AT = slice(-(_BLOCK_END + SALT_BLOCK), -(_BLOCK_END + SALT_BLOCK) + len(SALT_KEY))
_BRACE_AT = slice(-(_BLOCK_END + 1), -_BLOCK_END)


def contents_of(lines: Sequence[bytes]) -> list[bytes]:
    """`content_of` of each of `lines` (stored lines, newline included), a column at a time
    when none of them holds a commitment block (the usual case: chain version 1)."""
    if may_hold_blocks(lines):
        return list(map(content_of, lines))
    return list(map(bytes.__add__, map(_WITHOUT_SUFFIX, lines), repeat(b"}")))


def may_hold_blocks(lines: Sequence[bytes]) -> bool:
    """Whether some of `lines` (stored lines, newline included) may hold a commitment block
    (or are too short to tell): each must then go through `content_of`. Tested a column at a
    time."""
    return (
        min(map(len, lines), default=_BLOCK_END + SALT_BLOCK) < _BLOCK_END + SALT_BLOCK
        or SALT_KEY in map(itemgetter(_SALT_AT), lines)
        or b"}" in map(itemgetter(_BRACE_AT), lines)
    )


_WITHOUT_SUFFIX = itemgetter(slice(None, -SUFFIX_LEN))


def block_start(line: bytes, end: int) -> int | None:
    """Where the commitment block of a stored line starts (`end`: where its `_chain` suffix
    starts), or None for a version 1 line. Inside JSON strings quotes are escaped, so the raw
    key bytes can only be the block itself."""
    created = end - _CREATED_FIELD
    salt = created - SALT_BLOCK
    if line[salt : salt + len(SALT_KEY)] == SALT_KEY:
        return salt
    # A v1 line has teamId's value (a string or null) there, never the end of an object.
    if line[created - 1 : created] == b"}":
        start = line.rfind(REDACTED_KEY, 0, created)
        return start if start >= 0 else None
    return None


def tag(digest: bytes) -> str:
    """A digest tagged with its algorithm, as shown to people and written in manifests."""
    return f"{ALGORITHM}:{digest.hex()}"
