"""Seekable gzip: a rotated log file written as independent gzip members of whole lines.

Rotation compresses a day's file as a run of gzip members, each holding about MEMBER_BYTES of
whole lines (a member ends just after a newline). Concatenated members are one ordinary gzip
file (RFC 1952 section 2.2): gzip, zcat, `rg -z`, DuckDB and Spark read it as the day's lines.
Because each member starts a fresh deflate stream, a reader that knows where members start (the
day's line index records it) inflates only the members holding the lines it wants.

Everything here reads through a file descriptor with `pread` (never a path), in bounded blocks:
memory stays bounded whatever an archive holds. Inflating uses ISA-L (`isal`, the same format
and API as zlib, 2-3x faster) when it is installed, else zlib.
"""

from __future__ import annotations

import os
import zlib
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import Any

#: Uncompressed bytes per member before it is cut at the next line end: small enough that a
#: selective read inflates little (a query matching 2% of the lines touches ~3/4 of the members,
#: a rarer one proportionally fewer), large enough that the archive is only ~13% bigger than
#: one member would be (64 KiB: 7% bigger, but a 2% query touches 94% of the members).
MEMBER_BYTES = 32 << 10
#: A member bigger than this (an archive from before seekable members, or another tool's) is
#: never inflated for a few lines: such a file is read from its start.
SEEKABLE_MAX = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
_LEVEL = 6
_READ = 64 << 10  # compressed bytes read at a time
_RUN = 1 << 20  # compressed bytes of consecutive members read at once (inflate_members)


_engine: Any = None  # the inflating module, imported on first use (start-up time)


def _decompressobj() -> Any:
    """A decompressor of one gzip member (wbits 31: header, deflate, CRC and size checked)."""
    global _engine
    if _engine is None:
        try:
            from isal import isal_zlib

            _engine = isal_zlib
        except ImportError:
            _engine = zlib
    return _engine.decompressobj(wbits=31)


def _errors() -> tuple[type[Exception], ...]:
    return (zlib.error, _engine.error) if _engine is not None else (zlib.error,)


class GzipError(ValueError):
    """The bytes are not a complete gzip stream; `str()` says what is wrong."""


class Truncated(GzipError):
    """The file ends inside a member."""


class Packer:
    """Compresses a stream of bytes into members that each end on a line boundary.

    `feed()` and `finish()` return the compressed bytes to write; `members` lists each member's
    `(compressed offset, uncompressed offset)`. Deterministic: the same input gives the same
    bytes (zlib writes a gzip header with mtime 0)."""

    def __init__(self, member_bytes: int | None = None) -> None:
        self.member_bytes = member_bytes or MEMBER_BYTES
        self.members: list[tuple[int, int]] = []
        self.packed = self.plain = 0
        self._pending = bytearray()

    def feed(self, data: bytes) -> bytes:
        """Add `data`; the bytes of the members it completed."""
        self._pending += data
        out = []
        while len(self._pending) >= self.member_bytes:
            cut = self._pending.find(b"\n", self.member_bytes - 1) + 1
            if not cut:
                break  # a line longer than a member: it ends in a later block
            out.append(self._member(cut))
        return b"".join(out)

    def finish(self) -> bytes:
        """The bytes of the last member (what is left; one empty member for empty input)."""
        if self._pending or not self.members:
            return self._member(len(self._pending))
        return b""

    def _member(self, size: int) -> bytes:
        packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        with memoryview(self._pending) as view:
            packed = packer.compress(view[:size]) + packer.flush()
        del self._pending[:size]
        self.members.append((self.packed, self.plain))
        self.packed += len(packed)
        self.plain += size
        return packed


class Inflater:
    """The decompressed stream of a gzip file of one or more members, read from `fd` up to
    `size` bytes a block at a time.

    While `blocks()` runs, `members` collects each member's `(compressed offset, uncompressed
    offset)`; once it is exhausted, `trailing` counts the bytes after the last member that do
    not start another one (gzip's "trailing garbage"). A file that ends inside a member raises
    Truncated, bytes that do not inflate raise GzipError."""

    def __init__(self, fd: int, size: int, chunk: int = 8 << 20) -> None:
        self.fd, self.size, self.chunk = fd, size, chunk
        self.members: list[tuple[int, int]] = []
        self.trailing = 0
        self.out = 0  # uncompressed bytes produced so far

    def blocks(self) -> Iterator[bytes]:
        """Uncompressed blocks of at most about `chunk` bytes, in order."""
        out: list[bytes] = []
        held = 0
        for piece in self._pieces():
            out.append(piece)
            held += len(piece)
            if held >= self.chunk:
                yield b"".join(out)
                out, held = [], 0
        if out:
            yield b"".join(out)

    def _pieces(self) -> Iterator[bytes]:
        # Input is read in small blocks: at each member's end zlib copies the rest of the
        # block it was given, so a big block would be copied once per member.
        position, pending = 0, b""
        inflater = None
        try:
            while True:
                if inflater is None:
                    if len(pending) < len(GZIP_MAGIC) and position < self.size:
                        block = self._read(position)
                        pending, position = pending + block, position + len(block)
                        continue
                    if not pending:
                        return
                    if not pending.startswith(GZIP_MAGIC):
                        self.trailing = len(pending) + self.size - position
                        return
                    self.members.append((position - len(pending), self.out))
                    inflater = _decompressobj()
                if pending:
                    out = inflater.decompress(pending, self.chunk)
                    pending = inflater.unconsumed_tail
                else:
                    out = inflater.decompress(b"", self.chunk)  # output zlib still holds
                    if not out and not inflater.eof:
                        if position >= self.size:
                            raise Truncated("gzip stream is truncated")
                        pending = self._read(position)
                        position += len(pending)
                        continue
                if out:
                    self.out += len(out)
                    yield out
                if inflater.eof:
                    pending, inflater = inflater.unused_data + pending, None
        except _errors() as exc:
            raise GzipError(f"not a valid gzip file: {exc}") from None

    def _read(self, position: int) -> bytes:
        block = os.pread(self.fd, min(_READ, self.size - position), position)
        if not block:
            raise Truncated("gzip stream is truncated (the file shrank while it was read)")
        return block


def inflate_member(
    fd: int, start: int, end: int, plain_size: int, upto: int | None = None
) -> bytes:
    """What the one gzip member at bytes [start, end) of `fd` holds, `plain_size` bytes:
    GzipError unless the member ends exactly at `end` and holds exactly that many (CRC-32
    checked). With `upto`, only its first `upto` bytes, inflated no further (GzipError unless
    it holds that many): a line near a member's start costs a fraction of the member; the whole
    archive is checked by `audit verify`, which reads every member to its end."""
    if end <= start or plain_size < 0:
        raise GzipError("not a gzip member where the index says")
    raw = os.pread(fd, end - start, start)
    if len(raw) != end - start:
        raise GzipError("not a gzip member where the index says")
    return _inflated(raw, plain_size, upto)


def inflate_members(
    fd: int, packed: Sequence[int], plain: Sequence[int], run: int = _RUN
) -> Iterator[bytes]:
    """Each member of the file `fd` in turn, whole, the members starting at `packed` (the
    file's size last) and holding `plain` (their offsets in the stream, its size last); each is
    checked as `inflate_member` checks it. Consecutive members are read together, about `run`
    compressed bytes at a time: one read for many members, memory bounded by `run` and a
    member (a day inflated this way costs about half what `Inflater` costs, which must find
    where each member ends)."""
    first, members = 0, len(packed) - 1
    while first < members:
        last = bisect_right(packed, packed[first] + run, first + 1, members + 1) - 1
        last = max(last, first + 1)  # at least one member, however big
        base = packed[first]
        raw = os.pread(fd, packed[last] - base, base)
        if len(raw) != packed[last] - base:
            raise GzipError("not a gzip member where the index says")
        with memoryview(raw) as view:
            for n in range(first, last):
                if packed[n + 1] <= packed[n]:
                    raise GzipError("not a gzip member where the index says")
                member = view[packed[n] - base : packed[n + 1] - base]
                yield _inflated(member, plain[n + 1] - plain[n])
        first = last


def _inflated(raw: bytes | memoryview, plain_size: int, upto: int | None = None) -> bytes:
    """The content of the one whole gzip member `raw` (or its first `upto` bytes), checked to
    be `plain_size` bytes and to end exactly where `raw` does (GzipError otherwise)."""
    if plain_size < 0 or raw[:2] != GZIP_MAGIC:
        raise GzipError("not a gzip member where the index says")
    inflater = _decompressobj()
    whole = upto is None or upto >= plain_size
    try:
        out = inflater.decompress(raw, plain_size + 1 if whole else upto)
    except _errors() as exc:
        raise GzipError(f"not a valid gzip member: {exc}") from None
    if not whole:
        if len(out) != upto:
            raise GzipError("the member does not hold what the index says")
        return out
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise GzipError("the member does not end where the index says")
    if len(out) != plain_size:
        raise GzipError("the member does not hold what the index says")
    return out
