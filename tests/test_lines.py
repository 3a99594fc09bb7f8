"""LineSplitter (what every reader of log files uses): whole lines, in linear time and bounded
memory; a line over the limit is skipped, its place kept, where it was recorded."""

from __future__ import annotations

import random
import time

from auditcli.lines import LineSplitter


def _reference(data: bytes, limit: int) -> tuple[bytes, list[tuple[int, int, int]], int]:
    lines = data.split(b"\n")
    rest = lines.pop()
    out, overlong, offset = [], [], 0
    for number, line in enumerate(lines, 1):
        if len(line) + 1 > limit:
            overlong.append((number, offset, len(line) + 1))
            out.append(b"\n")
        else:
            out.append(line + b"\n")
        offset += len(line) + 1
    return b"".join(out), overlong, len(rest)


def test_any_cut_into_blocks_gives_the_reference_answer() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        limit = rng.randint(2, 20)
        sizes = [0, 1, limit - 2, limit - 1, limit, limit + 1, 3 * limit, rng.randint(0, 40)]
        data = b"".join(b"x" * rng.choice(sizes) + b"\n" for _ in range(rng.randint(0, 12)))
        data += b"y" * rng.randint(0, 2 * limit)
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 6))))
        blocks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        splitter = LineSplitter(limit)
        got = b"".join(splitter.chunks(blocks))
        want, overlong, rest = _reference(data, limit)
        assert got == want
        assert [tuple(bad) for bad in splitter.overlong] == overlong
        assert splitter.rest == rest
        assert splitter.lines == want.count(b"\n")
        assert splitter.end == len(data) - rest


def test_one_huge_line_costs_linear_time() -> None:
    """512 MiB without a newline, in 8 MiB blocks: the old `carry + block` copied it all for
    every block (quadratic); skipping it is a memchr pass."""
    block = b"z" * (8 << 20)
    started = time.monotonic()
    splitter = LineSplitter(64 << 10)
    assert list(splitter.chunks([block] * 64 + [b"\n" + b"{}\n"])) == [b"\n{}\n"]
    assert time.monotonic() - started < 5
    assert [tuple(bad) for bad in splitter.overlong] == [(1, 0, (512 << 20) + 1)]
