"""Checkpoints: the replayed access state at the end of each settled day, so that a question
about an instant or a period replays only its window instead of all history.

For each partition day D (before today, UTC) two derived files live in `_index/auditor/`:

* `D.state`: the state of a replay of every non-login entry of the partitions up to D
  (`Replay.snapshot`, emails and display labels kept per organization so that a question about
  some organizations resumes from it exactly), the latest `createdAt` read, and the number of
  anomalies so far per (state, organization, target);
* `D.events`: the anomalies found while replaying day D, and its entries stored out of order;
* `D.members`: the per-target index of day D: each user named by a team membership entry
  (`metadata.input.userId`) -> the teams (`targetId`) of those entries, so that `history` of a
  user reads only the membership lines that name them (`members_of_day`);
* `D.summary`: what a report counts in day D (`summary.summary_of_day`), so that a report
  reads it for the whole days of its period instead of their entries.

They are derived data, never evidence: deleting them loses nothing (they are rebuilt by the
next question that needs them), and each records what it was built from, `builtFrom`: a hash
chained over every partition day up to D of each file's name, identity (device, inode, size,
mtime, ctime: any write changes one) and last bytes (its last chain link). A file whose
`builtFrom` is not that of the log as it is now (a late import into an old day, a rotation, a
restore) is stale and never used; a file that is half-written, garbled or over its size limit
fails a digest (of its header, or of a part read: each has its own) and is treated as missing.
Whoever can write the log directory can forge a checkpoint with matching digests: `audit
verify` replays the log and compares every current checkpoint byte for byte
(`check_checkpoints`), as it does for line indexes. A day
whose reading met a problem (a damaged line, an unreadable file) gets no checkpoint, nor do the
days after it: questions about them replay from the last clean day and report the problem.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import stat
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from auditcli import chain
from auditcli.errors import IntegrityError, inert
from auditcli.lineindex import CHECKPOINT_DIR, INDEX_DIR, identity, tail_of
from auditcli.outfile import process_alive
from auditcli.progress import Progress
from auditcli.query import Filters, Problem, QueryEngine, entry_of
from auditcli.safeio import make_dirs, open_dir, open_file, read_bounded, why, write_atomic_at
from auditcli.store import AuditStore
from auditcli.timeparse import format_utc

from .model import (
    KINDS,
    SCOPE_OF_ACTION,
    TEAM_MEMBER_ACTIONS,
    Anomaly,
    Cite,
    _input_of,
    learn_labels,
)
from .reading import _LOGIN, action_of, storage_order_in_day
from .replay import Replay
from .summary import org_text, summary_of_day

_NAME = re.compile(r"(\d{4}-\d\d-\d\d)\.(state|events|members|summary)")
_TEMP = re.compile(r"\..+\.(\d+)\.tmp")
#: Every scope of action a report replays (the state kinds, and "" for other actions).
ALL_SCOPES = frozenset((*SCOPE_OF_ACTION.values(), ""))
#: The parts of a state checkpoint (see `Replay.snapshot`) and of an events one.
STATE_PARTS = (*KINDS, "emails", "labels")
EVENT_PARTS = (*KINDS, "storage")  # the replay's anomalies by the state they are about


# ----------------------------------------------------------------------------- what was read
def day_fingerprint(store: AuditStore, day: str) -> bytes | None:
    """What a checkpoint of `day` depends on in that partition: each log file's name, identity
    and last bytes. None when a file cannot be opened (then nothing is checkpointed)."""
    parts = []
    try:
        files = store.files(day)
    except IntegrityError:
        return None
    for file in files:
        try:
            # Non-blocking: a FIFO planted as a log file must not hang the question.
            fd = os.open(file.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None  # not a log file: the query engine reports it
            parts.append([file.path.name, list(identity(info)), tail_of(fd, info.st_size).hex()])
        except OSError:
            return None
        finally:
            os.close(fd)
    return orjson.dumps([day, parts])


def built_from(store: AuditStore, days: Iterable[str]) -> dict[str, str]:
    """Each day's `builtFrom`: the hash chained over the fingerprints of `days` (all the
    partitions, oldest first) up to it. Stops at the first day that cannot be fingerprinted."""
    chained: dict[str, str] = {}
    previous = b""
    for day in days:
        fingerprint = day_fingerprint(store, day)
        if fingerprint is None:
            break
        previous = hashlib.sha256(previous + fingerprint).digest()
        chained[day] = previous.hex()
    return chained


# ----------------------------------------------------------------------------- the files
#: The current format (see `_assemble`); the previous one (`_OLD_MAGIC`) is still read and is
#: rewritten in this one when read (`_upgrade`); any other is not a checkpoint (rebuilt).
_MAGIC = b"AUDITCKPT3\n"
#: The previous format: one SHA-256 over the whole file, so reading any part read it all.
_OLD_MAGIC = b"AUDITCKPT2\n"
_DIGEST_LEN = 64  # hex sha256
_LENGTH_LEN = 10  # the header's length, in decimal digits
_PREFIX_LEN = len(_MAGIC) + _DIGEST_LEN + 1 + _LENGTH_LEN + 1
_MAX_BYTES = 256 << 20  # a checkpoint (or its inflated body) over this is refused: missing


def _encode(header: dict[str, Any], parts: dict[str, Any]) -> bytes:
    """A checkpoint file of `header` and `parts`, each part as compressed JSON (ids and
    citations repeat: a tenth of the size), see `_assemble`."""
    return _assemble(header, {name: zlib.compress(orjson.dumps(v), 1) for name, v in parts.items()})


def _assemble(header: dict[str, Any], blobs: dict[str, bytes]) -> bytes:
    """The magic line; the SHA-256 of the header line and its length; the JSON header line,
    naming where each part is and its SHA-256; then the parts. Each part is checked on its
    own, so a question reads (and hashes) only the header and the parts it needs: a history
    reads the small `storage` part of each day's events, not the whole file."""
    where, at = {}, 0
    for name, blob in blobs.items():
        where[name] = [at, len(blob), hashlib.sha256(blob).hexdigest()]
        at += len(blob)
    line = orjson.dumps({**header, "parts": where}) + b"\n"
    prefix = _MAGIC + hashlib.sha256(line).hexdigest().encode() + b" %010d\n" % len(line)
    return prefix + line + b"".join(blobs.values())


def _upgrade(content: bytes) -> bytes | None:
    """A file of the previous format (`_OLD_MAGIC`: one digest over all of it) as the current
    format holds the same header and parts; None when it is not one or fails its digest."""
    head = len(_OLD_MAGIC) + _DIGEST_LEN + 1
    if not content.startswith(_OLD_MAGIC) or len(content) < head:
        return None
    rest = content[head:]
    if hashlib.sha256(rest).hexdigest().encode() != content[len(_OLD_MAGIC) : head - 1]:
        return None
    try:
        newline = rest.index(b"\n")
        header = orjson.loads(rest[:newline])
        parts = header.pop("parts")
        body = rest[newline + 1 :]
        blobs = {name: body[at : at + size] for name, (at, size) in parts.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if b"".join(blobs.values()) != body:
        return None  # parts that do not tile the body: not what this program wrote
    return _assemble(header, blobs)


def _decode(
    read: Callable[[int, int], bytes], size: int, names: Iterable[str], raw: bool = False
) -> dict[str, Any] | None:
    """The header of the checkpoint file of `size` bytes that `read(count, offset)` reads,
    with the parts `names` read into it (`raw`: as their JSON bytes, unparsed); None when it
    is not one, the header or a part fails its digest (half-written or garbled), or a part is
    unreadable. Only the header and those parts are read."""
    prefix = read(_PREFIX_LEN, 0)
    digest, length = prefix[len(_MAGIC) : -1].partition(b" ")[::2]
    if not (prefix.startswith(_MAGIC) and length.isdigit() and len(prefix) == _PREFIX_LEN):
        return None
    if int(length) > size - _PREFIX_LEN:
        return None
    line = read(int(length), _PREFIX_LEN)
    if hashlib.sha256(line).hexdigest().encode() != digest:
        return None
    body = _PREFIX_LEN + len(line)
    try:
        header = orjson.loads(line)
        for name in names:
            at, count, part_digest = header["parts"][name]
            blob = read(count, body + at) if count <= size else b""
            if len(blob) != count or hashlib.sha256(blob).hexdigest() != part_digest:
                return None
            inflate = zlib.decompressobj()
            plain = inflate.decompress(blob, _MAX_BYTES)
            if inflate.unconsumed_tail:
                return None  # would inflate past the limit
            header[name] = plain if raw else orjson.loads(plain)
    except (ValueError, KeyError, TypeError, zlib.error):
        return None
    return header if isinstance(header, dict) else None


def _read(store: AuditStore, name: str) -> bytes | None:
    """The bytes of `_index/auditor/<name>`; None when missing, not a regular file, behind a
    symlink, too big or unreadable."""
    try:
        fd = open_file(store.root, f"{INDEX_DIR}/{CHECKPOINT_DIR}/{name}")
    except OSError:
        return None
    try:
        return read_bounded(fd, _MAX_BYTES, name)
    except (OSError, IntegrityError):
        return None
    finally:
        os.close(fd)


def _load(
    store: AuditStore, day: str, kind: str, source: str, names: Iterable[str], raw: bool = False
) -> dict[str, Any] | None:
    """The header of the checkpoint `kind` (state, events) of `day` with its parts `names`
    (`raw`: unparsed, see `_decode`), if it was built from `source`; else None. A file of the
    previous format is rewritten in the current one (a failure to save only costs time)."""
    name = f"{day}.{kind}"
    try:
        fd = open_file(store.root, f"{INDEX_DIR}/{CHECKPOINT_DIR}/{name}")
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_BYTES:
            return None
        content = None
        if os.pread(fd, len(_OLD_MAGIC), 0) == _OLD_MAGIC:
            content = _upgrade(read_bounded(fd, _MAX_BYTES, name))
            body = _decode(_reader(content), len(content), names, raw) if content else None
        else:
            body = _decode(functools.partial(os.pread, fd), info.st_size, names, raw)
    except (OSError, IntegrityError):
        return None
    finally:
        os.close(fd)
    if body is None or body.get("day") != day or body.get("builtFrom") != source:
        return None
    if content is not None:
        _save_in(store, name, content)
    return body


def _load_events(
    store: AuditStore, day: str, source: str, names: Iterable[str]
) -> dict[str, Any] | None:
    """The events checkpoint of `day` with its parts `names` (`_load`), if each part holds
    rows of the shape `_anomaly_data` writes; else None, as if missing. A forged one with a
    matching digest may hold anything: `audit verify` reports it, and no question crashes."""
    body = _load(store, day, "events", source, names)
    if body is None or not all(_anomaly_rows(body[name]) for name in names):
        return None
    return body


def _anomaly_rows(rows: Any) -> bool:
    """Whether `rows` is a list of `[kind, cite, detail, targetId, scope, org]` rows of text,
    `cite` a list of five texts (`_anomaly_data`)."""
    return isinstance(rows, list) and all(
        isinstance(row, list)
        and len(row) == 6
        and isinstance(row[1], list)
        and len(row[1]) == 5
        and all(isinstance(text, str) for text in (row[0], *row[1], *row[2:]))
        for row in rows
    )


def _reader(content: bytes) -> Callable[[int, int], bytes]:
    """`read(count, offset)` over bytes held in memory (see `_decode`)."""
    return lambda count, at: content[at : at + count]


def _save_in(store: AuditStore, name: str, content: bytes) -> bool:
    """`_save` into the store's checkpoint directory, made when missing."""
    try:
        directory = make_dirs(store.root, [INDEX_DIR, CHECKPOINT_DIR])
    except OSError:
        return False
    try:
        return _save(directory, name, content)
    finally:
        os.close(directory)


def _save(directory: int, name: str, content: bytes) -> bool:
    """Write `name` atomically (a temp file renamed over it); False when it failed (read-only
    directory, full disk): a checkpoint only saves time."""
    try:
        write_atomic_at(directory, name, f".{name}.{os.getpid()}.tmp", content)
    except OSError:
        return False
    return True


def _prune(directory: int, days: set[str]) -> None:
    """Remove the checkpoints of days that are no longer partitions, and temp files of dead
    processes."""
    for name in os.listdir(directory):
        temp = _TEMP.fullmatch(name)
        match = _NAME.fullmatch(name)
        if (temp and not process_alive(int(temp.group(1)))) or (
            match and match.group(1) not in days
        ):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=directory)


# ----------------------------------------------------------------------------- anomalies
def _anomaly_data(anomaly: Anomaly, org: str) -> list[Any]:
    c = anomaly.entry
    cite = [c.id, c.createdAt, c.actorId, c.actor, c.action]
    return [anomaly.kind, cite, anomaly.detail, anomaly.target_id, anomaly.scope, org]


def anomaly_of(data: list[Any]) -> Anomaly:
    """The anomaly a checkpoint row `[kind, cite, detail, targetId, scope, org]` holds."""
    kind, cite, detail, target, scope, _ = data
    return Anomaly(kind, Cite(*cite), detail, target, scope)


# ----------------------------------------------------------------------------- building
@dataclass
class Point:
    """A checkpoint: the state at the end of `day` and what led to it."""

    day: str
    source: str  # builtFrom
    latest: str  # the latest createdAt of the partitions up to `day`
    counts: list[list[Any]]  # [scope, org, targetId, anomalies so far]
    #: The organizationId (as stored JSON) -> [day, createdAt] of its first line ("*": any).
    first: dict[str, list[str]]
    #: The parts read: those of `Replay.snapshot()` and `labels` ([org, key, createdAt, id,
    #: label]).
    parts: dict[str, Any]

    def resume(
        self, *, org_ids: tuple[str, ...], scopes: frozenset[str], **options: bool
    ) -> Replay:
        """A replay in this state, as if only the entries of `org_ids` (all when empty) whose
        actions are of `scopes` had been applied."""
        return Replay.resumed(self.parts, org_ids=org_ids, scopes=scopes, kinds=None, **options)

    def labels_for(self, org_ids: tuple[str, ...]) -> dict[str, str]:
        """The display labels a report learns from these organizations' entries so far."""
        latest: dict[str, tuple[str, str, str]] = {}
        for org, key, created, entry_id, label in self.parts["labels"]:
            if (not org_ids or org in org_ids) and (
                key not in latest or (created, entry_id) > latest[key][:2]
            ):
                latest[key] = (created, entry_id, label)
        return {key: label for key, (_, _, label) in latest.items()}

    def first_recorded(self, org_ids: tuple[str, ...]) -> str | None:
        """What `reading.first_recorded` says of these organizations (all when empty), when
        their first entry is in the days up to this checkpoint; else None."""
        keys = [orjson.dumps(org).decode() for org in org_ids] if org_ids else ["*"]
        found = [self.first[key] for key in keys if key in self.first]
        return min(found)[1] if found else None

    def anomaly_count(self, scope: str, org_ids: tuple[str, ...], targets: tuple[str, ...]) -> int:
        """The anomalies about `scope` found so far (of these organizations and targets)."""
        return sum(
            n
            for s, org, target, n in self.counts
            if s == scope and (not org_ids or org in org_ids) and (not targets or target in targets)
        )


class Checkpoints:
    """The checkpoints of a store, checked against the log as it is now."""

    def __init__(self, store: AuditStore, progress: Progress | None = None) -> None:
        """`progress` hears of the entries read while checkpoints are built."""
        self.store, self.progress = store, progress
        today = format_utc(store.clock())[:10]
        #: Settled partition days (before today) and their current `builtFrom`.
        self.sources = built_from(store, [day for day in store.days() if day < today])
        self.days = list(self.sources)

    def point(self, before: str, parts: Iterable[str] = STATE_PARTS) -> Point | None:
        """The latest checkpoint of a day before `before` (a day) with its `parts` read,
        building the missing and stale ones first (from the latest one that is current);
        None when there is none."""
        wanted = [day for day in self.days if day < before]
        names = set(parts)
        start = len(wanted)
        found: Point | None = None
        while start > 0:
            day = wanted[start - 1]
            found = _saved_point(self.store, day, self.sources[day], names)
            if found is not None:
                break
            start -= 1
        if start < len(wanted):
            if found is not None and names != set(STATE_PARTS):  # building resumes from all
                found = self.point(found.day + "~")
            found = self._build(found, wanted[start:]) or found
        return found

    def events(
        self, day: str, kinds: Iterable[str] = (), *, far: bool = True
    ) -> list[list[Any]] | None:
        """The anomalies of `day` found by the replay about the states `kinds`, then those of
        its entries stored out of order, as rows `[kind, cite, detail, targetId, scope,
        organizationId]` (see `anomaly_of`). A missing or stale day is rebuilt from the day
        before's checkpoint (a replay of one day), which is built first when missing unless
        `far` is False (a replay of all the days since the last current one); None when it
        cannot be."""
        names = (*kinds, "storage")
        source = self.sources.get(day)
        if source is None:
            return None
        body = _load_events(self.store, day, source, names)
        if body is None:
            index = self.days.index(day)
            before = None
            if index:
                previous = self.days[index - 1]
                if far:
                    before = self.point(day)
                else:
                    before = _saved_point(self.store, previous, self.sources[previous])
            if index and (before is None or before.day != self.days[index - 1]):
                return None
            self._build(before, [day])
            body = _load_events(self.store, day, source, names)
            if body is None:
                return None
        return [row for name in names for row in body[name]]

    def teams_of(self, day: str, users: Iterable[str]) -> set[str] | None:
        """The teams whose membership lines of the settled `day` name one of `users` as their
        `metadata.input.userId`, from the per-target index of the day (see `members_of_day`),
        built and saved when missing or stale; None when `day` is not settled or its reading
        met a problem."""
        source = self.sources.get(day)
        if source is None:
            return None
        body = _load(self.store, day, "members", source, ("members",), raw=True)
        if body is None:
            members = self._built(day, source, "members")
        elif not any(orjson.dumps(user) + b":" in body["members"] for user in users):
            # Parsing the index cost more than the rest of a day of a history, so it is parsed
            # only when it names one of them as a key. A key is its JSON text then a colon;
            # inside a string the quote before that colon is escaped: a miss hides no key.
            return set()
        else:
            try:
                members = orjson.loads(body["members"])
            except ValueError:
                return None
        if not isinstance(members, dict):
            return None
        return {team for user in users for team in members.get(user, ())}

    def _built(self, day: str, source: str, part: str) -> dict[str, Any] | None:
        """The derived `part` of `day`, read from its lines (`_FROM_LINES`) and saved (a
        failure to save only costs time)."""
        found = _FROM_LINES[part](self.store, day)
        if found is not None:
            _save_in(self.store, f"{day}.{part}", _encode_part(part, day, source, found))
        return found

    def summary(self, day: str) -> dict[str, Any] | None:
        """The summary of the settled `day` (`summary.summary_of_day`), built and saved when
        missing or stale; None when `day` is not settled or its reading met a problem."""
        source = self.sources.get(day)
        if source is None:
            return None
        body = _load(self.store, day, "summary", source, ("summary",))
        if body is not None:
            found = body["summary"]
            return found if isinstance(found, dict) else None
        return self._built(day, source, "summary")

    def latest(self, tries: int = 7) -> Point | None:
        """The latest current state checkpoint of the last `tries` settled days, its header
        only; never built here (None when there is none)."""
        for day in reversed(self.days[-tries:]):
            found = _saved_point(self.store, day, self.sources[day], ())
            if found is not None:
                return found
        return None

    def _build(self, start: Point | None, days: list[str]) -> Point | None:
        """Replay `days` from `start` (None: from nothing) and save a checkpoint of each;
        stop at a day whose reading met a problem or when nothing can be saved. The last
        checkpoint saved, or None."""
        try:
            directory = make_dirs(self.store.root, [INDEX_DIR, CHECKPOINT_DIR])
        except OSError:
            return None
        try:
            _prune(directory, set(self.store.days()))
            return _Builder(self.store, start, self.progress).run(directory, days, self.sources)
        finally:
            os.close(directory)


def _saved_point(
    store: AuditStore, day: str, source: str, parts: Iterable[str] = STATE_PARTS
) -> Point | None:
    """The state checkpoint of `day` with its `parts` read, if it was built from `source`
    (`_load`); else None. Never built here."""
    body = _load(store, day, "state", source, parts)
    return _point(body) if body is not None else None


def _point(body: dict[str, Any]) -> Point:
    parts = {name: body[name] for name in STATE_PARTS if name in body}
    return Point(
        body["day"], body["builtFrom"], body["latest"], body["counts"], body["first"], parts
    )


class _Builder:
    """Replays whole partitions the way a report does before its period (every entry but
    logins, no diffs), keeping what a checkpoint needs."""

    def __init__(
        self, store: AuditStore, start: Point | None, progress: Progress | None = None
    ) -> None:
        self.progress, self.read = progress, 0
        self.store = store
        self.engine = QueryEngine(store, Filters(), order="asc")
        if start is None:
            self.replay = Replay(track_changes=False, stamp_emails=True)
            self.labels: dict[tuple[str, str], list[str]] = {}
            self.counts: Counter[tuple[str, str, str]] = Counter()
            self.latest = ""
            self.first: dict[str, list[str]] = {}
        else:
            self.replay = start.resume(
                org_ids=(), scopes=ALL_SCOPES, track_changes=False, stamp_emails=True
            )
            self.labels = {
                (org, key): [org, key, *rest] for org, key, *rest in start.parts["labels"]
            }
            self.counts = Counter({(s, o, t): n for s, o, t, n in start.counts})
            self.latest = start.latest
            self.first = dict(start.first)

    def run(self, directory: int, days: list[str], sources: dict[str, str]) -> Point | None:
        """Checkpoint each of `days` in turn; the last one saved."""
        saved = None
        for day in days:
            point, events = self._day(day, sources[day])
            if point is None:
                break
            # The events first: a state file is only ever next to the events of its day.
            if not (
                _save(directory, f"{day}.events", _encode_events(events))
                and _save(directory, f"{day}.state", _encode_point(point))
            ):
                break
            members = members_of_day(self.store, day)
            if members is not None:
                _save(
                    directory, f"{day}.members", _encode_part("members", day, sources[day], members)
                )
            saved = point
        return saved

    def _day(self, day: str, source: str) -> tuple[Point | None, dict[str, Any]]:
        problems = len(self.engine.problems)
        lines = self.engine.day_stream(day)
        if len(self.engine.problems) > problems:
            return None, {}  # damaged: questions about it read it (and report the problem)
        replay, found = self.replay, []
        if self.progress is not None:
            self.read += len(lines)
            self.progress(self.read)
        for line in lines:
            created = line[chain.CREATED_START : chain.CREATED_END].decode()
            self.latest = max(self.latest, created)
            for org in ("*", org_text(line)):
                if org not in self.first:  # lines come in order: the first seen is the first
                    self.first[org] = [day, created]
            if action_of(line) == _LOGIN:
                continue
            entry = entry_of(line)
            seen = len(replay.anomalies)
            replay.apply(entry)
            org = entry["organizationId"]
            learnt: dict[str, str] = {}
            learn_labels(learnt, entry)
            for key, label in learnt.items():
                self.labels[(org, key)] = [org, key, entry["createdAt"], entry["id"], label]
            found += [_anomaly_data(a, org) for a in replay.anomalies[seen:]]
        replay.anomalies.clear()
        storage = [_anomaly_data(a, org) for org, a in storage_order_in_day(self.store, day, _any)]
        for item in (*found, *storage):
            self.counts[(item[4], item[5], item[3])] += 1
        point = Point(
            day,
            source,
            self.latest,
            [[*key, n] for key, n in self.counts.items()],
            dict(self.first),
            {**replay.snapshot(), "labels": list(self.labels.values())},
        )
        events: dict[str, Any] = {"day": day, "builtFrom": source, "storage": storage}
        for kind in KINDS:
            events[kind] = [row for row in found if row[4] == kind]
        return point, events


def members_of_day(store: AuditStore, day: str) -> dict[str, list[str]] | None:
    """The per-target index of one partition: each user named as `metadata.input.userId` by a
    team membership entry -> the teams (`targetId`) of those entries, sorted. Read through the
    line indexes (only the membership lines); None when the reading met a problem."""
    engine = QueryEngine(store, Filters(actions=TEAM_MEMBER_ACTIONS))
    lines = engine.day_stream(day)
    if engine.problems:
        return None
    found: dict[str, set[str]] = {}
    for line in lines:
        entry = entry_of(line)
        user = _input_of(entry).get("userId")
        if isinstance(user, str):
            found.setdefault(user, set()).add(entry["targetId"])
    return {user: sorted(teams) for user, teams in sorted(found.items())}


#: The derived files of a day rebuilt from its lines alone, never by a replay: part -> builder.
_FROM_LINES: dict[str, Callable[[AuditStore, str], dict[str, Any] | None]] = {
    "members": members_of_day,
    "summary": summary_of_day,
}


def _encode_part(part: str, day: str, source: str, value: dict[str, Any]) -> bytes:
    """The file `DAY.part` of a derived part of `day` built from `source` (`_FROM_LINES`)."""
    return _encode({"day": day, "builtFrom": source}, {part: value})


def _any(line: bytes) -> bool:
    return True


def _encode_point(point: Point) -> bytes:
    header = {
        "day": point.day,
        "builtFrom": point.source,
        "latest": point.latest,
        "counts": point.counts,
        "first": point.first,
    }
    return _encode(header, {name: point.parts[name] for name in STATE_PARTS})


def _encode_events(events: dict[str, Any]) -> bytes:
    header = {"day": events["day"], "builtFrom": events["builtFrom"]}
    return _encode(header, {name: events[name] for name in EVENT_PARTS})


# ----------------------------------------------------------------------------- verify
def check_checkpoints(
    store: AuditStore, first_day: str | None = None, last_day: str | None = None
) -> list[Problem]:
    """Problems with the checkpoints of the days in [first_day, last_day] under
    `_index/auditor/`: each one that is current (built from the log as it is now) is rebuilt
    by a replay and must be identical, byte for byte. The replay starts from the first
    partition when the whole store is checked, else from the current checkpoint before the
    first day checked. A stale one is never used and not reported; anything there that is not
    a regular file is reported, never followed or read."""
    where = f"{INDEX_DIR}/{CHECKPOINT_DIR}"
    try:
        directory = open_dir(store.root, [INDEX_DIR, CHECKPOINT_DIR])
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [Problem(where, None, "not an index directory", f"{why(exc)}; not read")]
    try:
        names = sorted(os.listdir(directory))
    finally:
        os.close(directory)
    checkpoints = Checkpoints(store)
    current: dict[str, dict[str, bytes]] = {}
    problems = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match is None:
            continue  # a writer's temp file, or not a checkpoint: never used
        day, part = match.groups()
        if (first_day is not None and day < first_day) or (last_day is not None and day > last_day):
            continue
        content = _read(store, name)
        if content is None:
            detail = "not a regular file, unreadable or too big; never used"
            problems.append(Problem(f"{where}/{inert(name)}", None, "not a checkpoint", detail))
            continue
        if content.startswith(_OLD_MAGIC):  # compared as it is rewritten when read
            content = _upgrade(content) or content
        read = _reader(content)
        body = _decode(read, len(content), ())
        if (
            body is None
            or body.get("builtFrom") != checkpoints.sources.get(day)
            or _decode(read, len(content), body["parts"], raw=True) is None
        ):
            continue  # stale, or a part is garbled: never used
        build = _FROM_LINES.get(part)
        if build is not None:  # the per-target index, a report's counts: from the lines alone
            found = build(store, day)
            if found is None or content != _encode_part(part, day, body["builtFrom"], found):
                problems.append(_forged(f"{where}/{name}"))
            continue
        current.setdefault(day, {})[part] = content
    if not current:
        return problems
    start = None
    days = checkpoints.days
    if first_day is not None:
        before = [day for day in days if day < min(current)]
        start = _saved_point(store, before[-1], checkpoints.sources[before[-1]]) if before else None
        days = days[days.index(start.day) + 1 :] if start is not None else days
    builder = _Builder(store, start)
    for day in days:
        if day > max(current):
            break
        point, events = builder._day(day, checkpoints.sources[day])
        if point is None:
            break
        rebuilt = {"state": _encode_point(point), "events": _encode_events(events)}
        for part, content in sorted(current.get(day, {}).items()):
            if content != rebuilt[part]:
                problems.append(_forged(f"{where}/{day}.{part}"))
    return problems


def _forged(name: str) -> Problem:
    return Problem(
        name,
        None,
        "forged checkpoint",
        "differs from a replay of the log it says it was built from; it is derived data: "
        "delete it (it is rebuilt when needed)",
    )
