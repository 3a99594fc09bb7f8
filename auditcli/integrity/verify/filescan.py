"""One pass over one data file: chain links, ids, shape, and where checkpointed heads sit."""

from __future__ import annotations

import hashlib
from binascii import hexlify
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import attrgetter

import orjson

from auditcli import chain
from auditcli.integrity.constants import (
    _CREATED_DAY,
    _HEX64,
    _HEX_END,
    _HEX_START,
    _MAX_BAD_SEARCH,
    _MAX_INCIDENT,
    _MAX_PROBLEMS_PER_FILE,
    _MAX_SEARCHES_PER_FILE,
    _MIN_LINE,
    _TAIL,
    _WINDOW,
)
from auditcli.integrity.leaffeed import LeafFeed
from auditcli.integrity.proven import FileProof, Proven, content_hasher
from auditcli.integrity.redaction import hashed_input, line_accepted
from auditcli.lines import Overlong
from auditcli.query import Problem
from auditcli.store import LineSource, LogFile

from .checkpoints import FileHistory, Label

#: A file up to this size is checked from the chunks its content key was hashed from; a
#: bigger one is read again for its check (memory stays bounded).
_HELD_MAX = 32 << 20


class FileScan:
    """One pass over one file: links, ids, shape, and where checkpointed heads sit."""

    def __init__(
        self,
        file: LogFile,
        known: FileHistory | None,
        geneses: Callable[[], dict[bytes, str]],
        feed: LeafFeed | None = None,
    ) -> None:
        self.file = file
        self.feed = feed
        self.known = known
        self.geneses = geneses
        self.source: LineSource | None = None
        self.lines = 0
        self.bytes = 0
        self.problems: list[Problem] = []
        self.suppressed = 0
        self.unexplained: list[tuple[int, bytes, bytes | None]] = []
        self.flagged: set[int] = set()
        self.head_pos: dict[bytes, int] = {}
        self.at_line: dict[int, bytes] = {}
        self.moved_from: str | None = None
        self.sealed_torn: str | None = None
        self.searched = 0
        self.head = b""  # the last line's link (the genesis value for an empty file)
        self.redacted: Mapping[int, set[str]] | None = None  # lines redaction receipts name
        #: The record of earlier verifies (proven.py) when verify keeps one; then the
        #: file's content key when it was read in one piece, and whether the record vouched.
        self.proven: Proven | None = None
        self.content_key: bytes | None = None
        self.vouched = False
        self.proof: FileProof | None = None  # what this scan proved, to record

    def problem(self, line: int | None, kind: str, detail: str, name: str | None = None) -> None:
        if len(self.problems) >= _MAX_PROBLEMS_PER_FILE:
            self.suppressed += 1
            return
        self.problems.append(Problem(name or self.file.name, line, kind, detail))

    def run(self) -> None:
        file = self.file
        source = self.source = LineSource(file)
        sha = hashlib.sha256
        head_bytes, created_day = chain.SUFFIX_HEAD, _CREATED_DAY
        hex_start, hex_end, tail = _HEX_START, _HEX_END, _TAIL
        genesis = prev = chain.genesis(file.partition, file.segment)
        day = file.day.encode()
        by_line = self.known.by_line if self.known else {}
        cp_heads = {h for heads in by_line.values() for h in heads if h}
        ids: dict[int, int] = {}  # hash of each id -> the first line with it
        first_at = ids.setdefault
        ring: deque[tuple[int, bytes | None, bytes | None, bool]] = deque(maxlen=_WINDOW)
        incident: list[tuple[int, bytes | None, bytes | None, bool]] | None = None
        last_bad = 0
        misplaced = 0
        after_malformed = False
        n = 0
        record: tuple[int, bytes | None, bytes | None, bool]  # line no., line, digest, ok
        overlong = source.overlong  # filled as chunks are read
        feed = self.feed
        chunks = self.chunks(source, by_line)
        for chunk in chunks:
            self.bytes += len(chunk)
            lines = chunk.split(b"\n")
            lines.pop()
            if feed is not None:
                feed.add(lines)
            for line in lines:
                n += 1
                if (
                    line[-tail:hex_start] == head_bytes
                    and len(line) > _MIN_LINE
                    and line.startswith(b'{"id":"')
                    and line.endswith(b'"}')
                ):
                    digest = sha(prev + line[:-tail] + b"}").digest()
                    hexd = line[hex_start:hex_end]
                    ok = hexlify(digest) == hexd
                    if not ok and line_accepted(prev, line, n, self.redacted):
                        ok, digest = True, bytes.fromhex(hexd.decode())
                    if not ok:
                        if _HEX64.fullmatch(hexd) is None:
                            self.malformed(n, "its chain link is not a SHA-256 in hex")
                            after_malformed = True
                            record = (n, None, None, False)
                            ring.append(record)
                            if incident is not None:
                                incident.append(record)
                            continue
                        digest = bytes.fromhex(hexd.decode())
                        if after_malformed:
                            ok = True  # explained by the malformed line just before
                        else:
                            last_bad = n
                    prev = digest
                    after_malformed = False
                    earlier = first_at(hash(line[7 : line.find(b'"', 7)]), n)
                    if earlier != n:
                        self.flagged.add(n)
                        self.problem(n, "duplicated line", f"its id is already at line {earlier}")
                    if line[created_day : created_day + 10] != day:
                        misplaced += 1
                        if misplaced == 1:
                            self.problem(
                                n, "misplaced entry", f"createdAt is not in {file.partition}"
                            )
                    if cp_heads and hexd in cp_heads and hexd not in self.head_pos:
                        self.head_pos[hexd] = n
                    if n in by_line:
                        self.at_line[n] = hexd
                    record = (n, line, digest, ok)
                elif overlong and overlong[-1].line >= n and (bad := overlong_at(overlong, n)):
                    self.malformed(
                        n,
                        f"{bad.length} bytes at byte offset {bad.offset}: over the "
                        f"{chain.MAX_LINE // 1024} KiB limit of a stored line (not read)",
                    )
                else:
                    self.malformed(n, "not a stored entry (foreign or corrupted bytes)")
                    after_malformed = True
                    record = (n, None, None, False)
                if incident is None:
                    if not record[3] and record[1] is not None:
                        incident = [*ring, record]
                else:
                    incident.append(record)
                    if n - last_bad >= _WINDOW or len(incident) >= _MAX_INCIDENT:
                        self.analyse(incident, genesis)
                        incident = None
                ring.append(record)
        if incident is not None:
            self.analyse(incident, genesis)
        if not self.vouched:
            self.lines = n
            self.head = prev
            if self.content_key is not None and not self.problems and not self.unexplained:
                # Every line right: what a repeat verify of these bytes may take as proved.
                self.proof = (n, prev, dict(self.at_line))
        if misplaced > 1:
            self.problem(
                None,
                "misplaced entry",
                f"{misplaced} entries in all have a createdAt outside {file.partition}",
            )
        self.classify_unexplained(by_line)
        self.check_checkpoints(by_line)
        self.check_tail()
        if self.suppressed:
            self.problems.append(
                Problem(
                    self.file.name,
                    None,
                    "more problems",
                    f"{self.suppressed} further problems in this file not listed",
                )
            )

    def chunks(
        self, source: LineSource, by_line: Mapping[int, Mapping[bytes, Label]]
    ) -> Iterator[bytes]:
        """The file's chunks for the line loop; none when the record of earlier verifies
        vouches for its bytes (a plain file of whole lines whose content key, hashed as it is
        read here, is recorded, with the link at each line count checkpointed now): the loop's
        results are then the record's, and the checks after the loop run on them as on any
        file. Otherwise the chunks just read, when the file is at most `_HELD_MAX` bytes, or
        the file read again: the key recorded is then that of the bytes the loop checked."""
        if self.proven is None or self.redacted or source.file.compressed or source.start:
            return source.chunks()  # (never keyed: not hashed, nor inflated twice)
        hashed = content_hasher(source.file.name)
        held: list[bytes] | None = []
        size = 0
        for chunk in source.chunks():
            hashed.update(chunk)
            size += len(chunk)
            if held is not None:
                held.append(chunk)
                if size > _HELD_MAX:
                    held = None  # checked from a second read (memory stays bounded)
        key = hashed.digest() if keyable(source) else None
        proof = self.proven.file(key) if key is not None else None
        if proof is not None:
            lines, head, links = proof
            wanted = [k for k in by_line if 0 < k <= lines]
            if all(k in links for k in wanted):  # (else a checkpoint not recorded: in full)
                self.vouched, self.content_key = True, key
                self.lines, self.head, self.bytes = lines, head, size
                self.at_line.update((k, links[k]) for k in wanted)
                return iter(())
        if held is not None:
            self.content_key = key
            return iter(held)
        return self.read_again(source)

    def read_again(self, source: LineSource) -> Iterator[bytes]:
        """The chunks of `source` read once more, from scratch; once they are all read, the
        content key of those very bytes (when the file is one the record keys)."""
        hashed = content_hasher(source.file.name)
        for chunk in source.chunks():
            hashed.update(chunk)
            yield chunk
        self.content_key = hashed.digest() if keyable(source) else None

    def malformed(self, n: int, detail: str) -> None:
        self.flagged.add(n)
        self.problem(n, "malformed line", detail)

    def analyse(
        self, records: list[tuple[int, bytes | None, bytes | None, bool]], genesis: bytes
    ) -> None:
        """Explain the chain breaks of one window: where does each broken line's real
        predecessor sit? After a later line: reordered. Lines skipped over that nothing chains
        from: inserted. Nowhere: edited, or its predecessor deleted (decided by checkpoints)."""
        sha = hashlib.sha256
        candidates = [(0, genesis)] if records[0][0] == 1 else []
        candidates += [(r[0], r[2]) for r in records if r[2] is not None]
        bad = [r for r in records if not r[3] and r[1] is not None and r[0] not in self.flagged]
        # A link edited on an intact entry: the entry hashes right from its predecessor, and
        # the next line chains from that computed link, not from the stored one.
        stored = dict(candidates)
        by_number = {r[0]: r for r in records}
        computed: dict[int, bytes] = {}
        explained: set[int] = set()
        for n, line, _, _ in bad[:_MAX_BAD_SEARCH]:
            before = stored.get(n - 1)
            if before is None or line is None:
                continue
            computed[n] = link = sha(before + hashed_input(line)).digest()
            after = by_number.get(n + 1)
            if (
                after
                and after[1] is not None
                and not after[3]
                and sha(link + hashed_input(after[1])).digest() == after[2]
            ):
                self.flagged.add(n)
                explained.add(n + 1)
                self.problem(
                    n, "altered link", "the entry is intact but its _chain value was changed"
                )
        bad = [r for r in bad if r[0] not in self.flagged and r[0] not in explained]
        pred: dict[int, int] = {}
        for index, (n, line, digest, _) in enumerate(bad):
            assert line is not None
            if index >= _MAX_BAD_SEARCH or self.searched >= _MAX_SEARCHES_PER_FILE:
                break
            self.searched += 1
            content = hashed_input(line)
            for m, candidate in candidates:
                if m != n and m != n - 1 and sha(candidate + content).digest() == digest:
                    pred[n] = m
                    break
        is_pred = {r[0] - 1 for r in records if r[3]} | set(pred.values())
        reordered = {n for n, m in pred.items() if m > n}
        for n, m in sorted(pred.items()):
            if m > n:
                self.flagged.add(n)
                self.problem(n, "reordered line", f"it was written after line {m}")
            elif m < n - 1:
                for x in range(m + 1, n):
                    if x in self.flagged or x in reordered or x in is_pred:
                        continue
                    self.flagged.add(x)
                    self.problem(
                        x,
                        "inserted line",
                        f"not part of the chain (line {n} follows line {m})"
                        if m
                        else f"not part of the chain (line {n} is the file's real first line)",
                    )
        for n, line, _, _ in bad:
            if n in pred or n in self.flagged:
                continue
            if len(self.unexplained) < _MAX_PROBLEMS_PER_FILE:
                self.unexplained.append((n, line or b"", computed.get(n)))
            else:  # a file broken throughout: name the rest plainly, keep no lines in memory
                self.problem(n, "chain break", f"does not follow line {n - 1}")

    def classify_unexplained(self, by_line: Mapping[int, Mapping[bytes, Label]]) -> None:
        """A broken line whose predecessor is nowhere near: name it with the help of the
        checkpoints after it (shifted head: lines deleted; same place: the entry was edited)."""
        for n, line, computed in self.unexplained:
            if n in self.flagged:
                continue
            if computed is not None and computed.hex().encode() in by_line.get(n, {}):
                self.problem(
                    n, "altered link", "the entry is intact but its _chain value was changed"
                )
                continue
            if n == 1:
                parsed = chain.split_line(line + b"\n")
                if parsed is not None:
                    for origin, name in self.geneses().items():
                        if chain.link(origin, hashed_input(line)) == parsed[1]:
                            self.moved_from = name
                            self.problem(
                                1,
                                "moved file",
                                f"its chain starts at {name}: copied or renamed from there",
                            )
                            break
                    if self.moved_from:
                        continue
            shift = None
            for lines in sorted(by_line):
                if lines < n:
                    continue
                positions = [self.head_pos[h] for h in by_line[lines] if h in self.head_pos]
                if positions:
                    shift = positions[0] - lines
                    break
            try:
                orjson.loads(line[:-_TAIL] + b"}")
                parses = True
            except orjson.JSONDecodeError:
                parses = False
            if not parses or shift == 0:
                self.problem(n, "altered entry", "the entry does not match its chain link (edited)")
            elif shift is not None and shift < 0:
                self.problem(n, "deleted line", f"{-shift} line(s) missing before this line")
            else:
                self.problem(
                    n,
                    "chain break",
                    f"does not follow line {n - 1}:"
                    " this entry was edited, or lines before it deleted",
                )

    def check_checkpoints(self, by_line: Mapping[int, Mapping[bytes, Label]]) -> None:
        """Every checkpoint ever made of this file must still hold: the file has at least that
        many lines, and the link at that line is the checkpointed head."""
        if not by_line:
            return
        # A head found at another line is explained by the line problems already named.
        problem_lines = {p.line for p in self.problems if p.line is not None}
        chain_trouble = bool(problem_lines)
        truncated: tuple[int, Label] | None = None
        for lines in sorted(by_line):
            heads = by_line[lines]
            seq = min(heads.values())
            if lines > self.lines:
                shifted = any(h in self.head_pos for h in heads)
                if not (shifted and chain_trouble):
                    truncated = (lines, seq)
                continue
            if lines == 0:
                continue
            stored = self.at_line.get(lines)
            real_heads = {h for h in heads if h}
            if real_heads and stored not in real_heads and lines not in problem_lines:
                shifted = any(h in self.head_pos for h in real_heads)
                if shifted and chain_trouble:
                    continue
                self.problem(
                    lines,
                    "rewritten file",
                    f"line {lines} is not the line manifest {seq[1]} checkpointed:"
                    " the file was rewritten",
                )
                break
        if truncated is not None:
            self.problem(
                self.lines + 1,
                "truncated file",
                f"{self.lines} lines, but manifest {truncated[1][1]} checkpointed {truncated[0]}",
            )

    def check_tail(self) -> None:
        source = self.source
        assert source is not None
        name = source.file.name
        if source.torn_line is not None:
            known = self.known.torn if self.known else set()
            if (source.torn_line, source.torn_bytes) in known:
                self.sealed_torn = f"{name}:{source.torn_line}"
            else:
                self.problem(
                    source.torn_line,
                    "torn line",
                    f"{source.torn_bytes} bytes with no newline at the end"
                    " (a crash mid-write, or appended bytes)",
                    name,
                )
        if source.trailing_garbage:
            self.problem(
                None,
                "trailing data",
                f"{source.trailing_garbage} bytes after the gzip member (appended to the archive)",
                name,
            )


def overlong_at(overlong: Sequence[Overlong], n: int) -> Overlong | None:
    """The too-long line numbered `n` in `overlong` (sorted by line), if there is one."""
    at = bisect_left(overlong, n, key=attrgetter("line"))
    return overlong[at] if at < len(overlong) and overlong[at].line == n else None


def keyable(source: LineSource) -> bool:
    """Whether `source`, read to its end, is a file the record of earlier verifies keys: a
    plain file read from its start, with no torn end, no line over the size limit and no
    trailing data."""
    return not (
        source.file.compressed
        or source.start
        or source.torn_line is not None
        or source.overlong
        or source.trailing_garbage
    )
