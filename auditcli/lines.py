"""Cutting a stream of byte blocks into chunks of whole lines, in linear time and with memory
bounded by the longest allowed line, whatever the input (one 2 GB "line" included).

A line longer than the limit cannot be an entry (the writer refuses them): it is damage. It is
never held in memory: its bytes are skipped as they stream by, its place is kept by an empty
line (`b"\\n"`) so that line numbers stay right and every reader sees a line that is not an
entry, and where it was is recorded in `overlong` (line number, byte offset, length).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

_NL = b"\n"


class Overlong(NamedTuple):
    """A line longer than the limit: its 1-based number, first byte's offset and length."""

    line: int
    offset: int
    length: int


class LineSplitter:
    """Whole-line chunks of a stream of blocks (see the module docstring).

    After `chunks()` is exhausted: `lines` whole lines were yielded (placeholders included),
    `end` is the byte offset just past the last of them, `rest` the bytes after it (a line
    with no newline) and `overlong` the lines that were too long."""

    def __init__(self, limit: int, start: int = 0, overlong: list[Overlong] | None = None) -> None:
        self.limit = limit
        self.lines = 0
        self.end = start
        self.rest = 0
        #: Filled as the chunks are read (pass a list to watch it fill).
        self.overlong: list[Overlong] = [] if overlong is None else overlong

    def chunks(self, blocks: Iterable[bytes]) -> Iterator[bytes]:
        """Chunks of whole lines, each ending with a newline, in stream order."""
        limit = self.limit
        carry = bytearray()  # the start of a line that did not end in its block (< limit)
        skipping = -1  # offset where a too-long line began while its bytes stream by
        pos = self.end  # stream offset of the current block's first byte
        for block in blocks:
            size = len(block)
            if not size:
                continue
            out: list[bytes] = []
            at = 0  # where the block's first line (after any pending one) starts
            if carry and skipping < 0:
                room = limit - len(carry)
                nl = block.find(_NL, 0, room)
                if nl >= 0:
                    carry += block[: nl + 1]
                    out.append(bytes(carry))
                    carry.clear()
                    at = nl + 1
                elif size < room:
                    carry += block
                    pos += size
                    continue
                else:
                    skipping = pos - len(carry)
                    carry.clear()
            if skipping >= 0:
                nl = block.find(_NL)
                if nl < 0:
                    pos += size
                    continue
                self._overlong(out, skipping, pos + nl + 1)
                skipping = -1
                at = nl + 1
            good = p = at
            # Every line from p on is short when a newline lies within `limit` bytes of its
            # start: one backwards search per `limit` bytes, at memchr speed.
            while p + limit <= size:
                q = block.rfind(_NL, p, p + limit)
                if q >= 0:
                    p = q + 1
                    continue
                if p > good:
                    out.append(block[good:p])
                e = block.find(_NL, p + limit)
                if e < 0:
                    skipping = pos + p
                    good = p = size
                    break
                self._overlong(out, pos + p, pos + e + 1)
                good = p = e + 1
            if skipping < 0:
                cut = block.rfind(_NL, p) + 1 or p
                if cut > good:
                    out.append(block[good:cut] if good or cut < size else block)
                carry += block[cut:]
                whole = pos + cut
            else:
                whole = skipping
            if out:
                chunk = out[0] if len(out) == 1 else b"".join(out)
                self.lines += chunk.count(_NL)
                self.end = whole
                yield chunk
            pos += size
        self.rest = len(carry) if skipping < 0 else pos - skipping

    def _overlong(self, out: list[bytes], start: int, stop: int) -> None:
        """Note the too-long line [start, stop) and keep its place with an empty line."""
        before = self.lines + sum(part.count(_NL) for part in out)
        self.overlong.append(Overlong(before + 1, start, stop - start))
        out.append(_NL)
