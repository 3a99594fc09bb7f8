"""The fast paths give exactly what plain parse-everything code gives.

The query engine answers from line indexes, byte-level prefilters and positional checks; the
importer takes canonical lines by a shortcut. Here both are compared, on randomised stores,
filters and inputs (hypothesis), with reference code that parses every line and compares
values. Nothing here is timed; see benchmarks/ for that.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
import time
import zlib
from array import array
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from auditcli import chain, gzmembers, importer, lineindex, query, trust
from auditcli.batchcheck import canonical_columns
from auditcli.catalog import Catalog
from auditcli.errors import InvalidEntryError
from auditcli.importer import _canonical_batch, import_jsonl
from auditcli.integrity.indexes import check_indexes
from auditcli.maintenance import rotate, stats
from auditcli.model import (
    SEED_FIELDS,
    TEXT_RULES,
    Entry,
    build_entry,
    dumps_entry,
    loads_strict,
)
from auditcli.query import Filters, QueryEngine, seed_json
from auditcli.store import AuditStore

DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")
TODAY = "2026-03-04"  # the store's clock: every day above is settled (indexable) ...
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # ... and entries of TODAY are not
ACTORS = ("user-1", "user-2", "user-3")
ACTIONS = ("login", "role_updated", "team_created", "user_added")
TARGETS = ("USER", "ROLE", "TEAM")
TARGET_IDS = ("user-1", "role-1", "team-1", "team-2")
ORGS = ("org-1", "org-2")
TEAMS = (None, "team-1", "team-2")
FILTER_FIELDS = {
    "actions": ("action", (*ACTIONS, "user_removed")),
    "targets": ("target", (*TARGETS, "ORGANIZATION")),
    "actor_ids": ("actorId", (*ACTORS, "nobody")),
    "target_ids": ("targetId", (*TARGET_IDS, "nothing")),
    "team_ids": ("teamId", ("team-1", "team-2", "team-9")),
    "org_ids": ("organizationId", (*ORGS, "org-9")),
}
# Metadata that imitates top-level fields: the positional matcher must not be fooled.
METADATA = st.one_of(
    st.none(),
    st.just({"action": "login", "teamId": "team-2", "organizationId": "org-2"}),
    st.just({"input": {"actorId": "user-3", "targetId": "team-1", "createdAt": "2026-03-02"}}),
    st.dictionaries(
        st.sampled_from(["a", "b", "teamId"]), st.integers(-1000, 1000) | st.text(max_size=5)
    ),
)
DESCRIPTIONS = st.sampled_from(
    ["someone did it", 'quote " and ,"action":"login", inside', "ünïcödé ✓", ""]
)


@st.composite
def entries(draw: Any, day: str) -> dict[str, Any]:
    """One valid entry of `day`; times come from a few seconds so that ties happen."""
    second = draw(st.integers(0, 3))
    milli = draw(st.sampled_from([0, 1, 999]))
    action = draw(st.sampled_from(ACTIONS))
    return {
        "id": draw(st.sampled_from(["a", "b", "c", "0"])) + f"-{draw(st.integers(0, 10**9))}",
        "description": draw(DESCRIPTIONS),
        "actorId": draw(st.sampled_from(ACTORS)),
        "actorName": draw(st.none() | st.just("Ann")),
        "actorEmail": None,
        "action": action,
        "actionDisplayName": "Display",
        "target": draw(st.sampled_from(TARGETS)),
        "targetId": draw(st.sampled_from(TARGET_IDS)),
        "metadata": draw(METADATA),
        "organizationId": draw(st.sampled_from(ORGS)),
        "teamId": draw(st.sampled_from(TEAMS)),
        "createdAt": f"{day}T0{draw(st.integers(0, 1))}:00:0{second}.{milli:03d}Z",
    }


@st.composite
def stores(draw: Any) -> list[dict[str, Any]]:
    """A plan of a store: per day and writer, entries in append order, plus damage to do."""
    plan = []
    for day in (*DAYS, TODAY):
        for writer in draw(st.sampled_from([("w1",), ("w1", "w2")])):
            batch = draw(
                st.lists(entries(day), min_size=draw(st.sampled_from([0, 5])), max_size=25)
            )
            plan.append(
                {
                    "day": day,
                    "writer": writer,
                    "entries": sorted(batch, key=_ref_key) if draw(st.booleans()) else batch,
                    # most files stay clean: only those get (and use) a line index
                    "foreign": draw(st.sampled_from([None] * 6 + [b"not json\n", b'{"id":"x"}\n'])),
                    "torn": draw(st.integers(0, 7)) == 0,
                    # rotated: one gzip member (an old store) or seekable members of whole
                    # lines, as small as one line each
                    "gzip": day != TODAY
                    and draw(st.integers(0, 5)) == 0
                    and draw(st.sampled_from(["one member", 1, 600, 4000])),
                }
            )
    return plan


@st.composite
def filters(draw: Any) -> Filters:
    """Any mix of field filters (one or two values, maybe one that never occurs) and bounds."""
    chosen: dict[str, Any] = {}
    fields = draw(st.sampled_from(["none", "some", "some"]))  # the unfiltered paths are special
    for name, (_, pool) in FILTER_FIELDS.items():
        if fields == "some" and draw(st.integers(0, 3)) == 0:
            chosen[name] = tuple(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2)))
    if draw(st.integers(0, 2)) == 0:
        return Filters(**chosen)  # no time bounds
    stamps = [None] + [
        f"{day}T{hh}.{ms}Z"
        for day in (*DAYS, TODAY)
        for hh in ("00:00:00", "00:00:02", "01:00:01", "23:59:59")
        for ms in ("000", "999")
    ]
    since, until = draw(st.sampled_from(stamps)), draw(st.sampled_from(stamps))
    if since and until and since > until:
        since, until = until, since
    return Filters(**chosen, since=since, until=until)


def _ref_key(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["createdAt"], entry["id"]


def _build(root: Path, plan: list[dict[str, Any]]) -> AuditStore:
    """Write the planned store with the real writer, then damage it as planned."""
    catalog = Catalog.load(root)
    for part in plan:
        store = AuditStore(root, writer_id=part["writer"], clock=lambda: NOW)
        items = []
        for data in part["entries"]:
            entry = build_entry(data, catalog)
            items.append((entry["id"], dumps_entry(entry)))
        store.append_contents(part["day"], items, check_ids=False)
        path = root / f"date={part['day']}" / f"{part['writer']}.jsonl"
        if part["foreign"] and path.exists():
            with open(path, "ab") as handle:
                handle.write(part["foreign"])
        if part["torn"] and path.exists():
            with open(path, "ab") as handle:
                handle.write(b'{"id":"torn')
        elif part["gzip"] and path.exists():
            gz = path.with_name(path.name + ".gz")
            gz.write_bytes(_packed(path.read_bytes(), part["gzip"]))
            path.unlink()
    return AuditStore(root, clock=lambda: NOW)


def _packed(data: bytes, members: str | int) -> bytes:
    """`data` gzipped as one member, or as rotation does with members of `members` bytes."""
    if members == "one member":
        return gzip.compress(data)
    packer = gzmembers.Packer(int(members))
    return packer.feed(data) + packer.finish()


def _reference(root: Path, wanted: Filters, order: str) -> list[bytes]:
    """Every matching stored line, found the plain way: parse each line of each file and
    compare the values; sort by (createdAt, id), stably."""
    fields = {name: set(values) for name, values in wanted.by_field().items()}
    found = []
    for partition in sorted(p for p in os.listdir(root) if p.startswith("date=")):
        names = sorted(os.listdir(root / partition))
        segments = sorted({n.removesuffix(".gz").removesuffix(".jsonl") for n in names})
        for segment in segments:
            plain, packed = (
                root / partition / f"{segment}.jsonl",
                root / partition / f"{segment}.jsonl.gz",
            )
            data = gzip.decompress(packed.read_bytes()) if packed.exists() else plain.read_bytes()
            for raw in data.split(b"\n")[:-1]:  # a last piece without newline is torn
                line = raw + b"\n"
                if not chain.is_chained_line(line):
                    continue
                entry = orjson.loads(chain.content_of(line))
                if any(entry[name] not in values for name, values in fields.items()):
                    continue
                if wanted.since and entry["createdAt"] < wanted.since:
                    continue
                if wanted.until and entry["createdAt"] > wanted.until:
                    continue
                found.append((_ref_key(entry), line))
    found.sort(key=lambda item: item[0], reverse=order == "desc")
    return [line for _, line in found]


def _engine(store: AuditStore, wanted: Filters, order: str, use_index: bool) -> QueryEngine:
    engine = QueryEngine(store, wanted, order=order, use_index=use_index)
    engine.index_min_bytes = 0  # index even the tiny files of a test
    return engine


def _answers(
    store: AuditStore, wanted: Filters, order: str, use_index: bool, limit: int, offset: int
) -> dict[str, Any]:
    streamed = _engine(store, wanted, order, use_index)
    lines = list(streamed.stream())
    blocks = b"".join(
        block for _, block in _engine(store, wanted, order, use_index).content_blocks()
    )
    paged = _engine(store, wanted, order, use_index)
    total, page = paged.page(limit, offset)
    counted = _engine(store, wanted, order, use_index)
    return {
        "lines": lines,
        "blocks": blocks,
        "count": counted.count(),
        "page": (total, page),
        "problems": sorted(map(str, streamed.problems)),
        "stats": {by: _stats(store, wanted, by, use_index) for by in STATS_BY},
    }


STATS_BY = (("action",), ("actor", "team"), ("org", "target"))
_JSON_NAMES = {
    "action": "action",
    "actor": "actorId",
    "team": "teamId",
    "org": "organizationId",
    "target": "target",
}


def _stats(store: AuditStore, wanted: Filters, by: tuple[str, ...], use_index: bool) -> Any:
    """`audit stats` counts: from line indexes (counts stored per value) or by scanning."""
    saved_minimum, saved_counts = query.INDEX_MIN_BYTES, QueryEngine.key_counts
    query.INDEX_MIN_BYTES = 0
    if not use_index:
        QueryEngine.key_counts = lambda self, file, fields: None  # type: ignore[method-assign]
    try:
        return stats(store, wanted, by, workers=1).counts
    finally:
        query.INDEX_MIN_BYTES, QueryEngine.key_counts = saved_minimum, saved_counts


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    plan=stores(),
    queries=st.lists(
        st.tuples(
            filters(), st.sampled_from(["asc", "desc"]), st.integers(1, 30), st.integers(0, 40)
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_fast_paths_equal_parsing_everything(
    plan: list[dict[str, Any]], queries: list[Any]
) -> None:
    ids = [entry["id"] for part in plan for entry in part["entries"]]
    assume(len(ids) == len(set(ids)))  # the store refuses a repeated id within a day anyway
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = _build(root, plan)
        for wanted, order, limit, offset in queries:
            expected = _reference(root, wanted, order)
            scanned = _answers(store, wanted, order, False, limit, offset)
            indexing = _answers(store, wanted, order, True, limit, offset)  # writes indexes
            indexed = _answers(store, wanted, order, True, limit, offset)  # reads them
            dense = lineindex._DENSE
            lineindex._DENSE = 0  # every file read a line at a time (pread), never whole
            try:
                by_line = _answers(store, wanted, order, True, limit, offset)
            finally:
                lineindex._DENSE = dense
            # The indexes this test's queries wrote are vouched for (auditcli.trust): with
            # any selection worth it, their lines are returned without per-line checks.
            # Index files found vouched for are remembered by identity (no file here changes
            # after it is indexed, so at once), and the next queries do not hash them again.
            vouch_min, settled = query._VOUCH_MIN, trust._SETTLED_NS
            query._VOUCH_MIN = trust._SETTLED_NS = 0
            try:
                vouched = _answers(store, wanted, order, True, limit, offset)
                lineindex._DENSE = 0
                vouched_by_line = _answers(store, wanted, order, True, limit, offset)
            finally:
                query._VOUCH_MIN, lineindex._DENSE = vouch_min, dense
                trust._SETTLED_NS = settled
            for answer in (scanned, indexing, indexed, by_line, vouched, vouched_by_line):
                assert answer["lines"] == expected
                assert answer["blocks"] == b"".join(seed_json(line) + b"\n" for line in expected)
                assert answer["count"] == len(expected)
                assert answer["page"] == (len(expected), expected[offset : offset + limit])
                assert answer["problems"] == scanned["problems"]
                for by in STATS_BY:
                    assert answer["stats"][by] == _reference_stats(expected, by)


def _reference_stats(lines: list[bytes], by: tuple[str, ...]) -> dict[tuple[Any, ...], int]:
    counted = Counter(
        tuple(orjson.loads(seed_json(line))[_JSON_NAMES[key]] for key in by) for line in lines
    )
    return dict(counted)


class TestLineIndex:
    """What the index is trusted with: exact identity, canonical lines only, settled files."""

    def _store(self, root: Path, count: int = 40) -> AuditStore:
        store = AuditStore(root, writer_id="w1", clock=lambda: NOW)
        catalog = Catalog.load(root)
        items = []
        for n in range(count):
            entry = build_entry(
                {
                    "action": ACTIONS[n % len(ACTIONS)],
                    "actorId": ACTORS[n % 3],
                    "organizationId": "org-1",
                    "targetId": "t",
                    "createdAt": f"2026-03-01T00:00:{n % 60:02d}.000Z",
                },
                catalog,
            )
            items.append((entry["id"], dumps_entry(entry)))
        store.append_contents("2026-03-01", items)
        return store

    def _query(self, store: AuditStore, **filters: Any) -> tuple[list[bytes], QueryEngine]:
        engine = _engine(store, Filters(**filters), "asc", True)
        return list(engine.stream()), engine

    def test_a_settled_file_gets_an_index_and_later_queries_use_it(self, tmp_path: Path) -> None:
        store = self._store(tmp_path)
        first, _ = self._query(store, actions=("login",))
        index = tmp_path / "_index" / "date=2026-03-01" / "w1.jsonl.idx"
        assert index.exists()
        again, engine = self._query(store, actions=("login",))
        assert again == first and len(first) == 10
        assert engine._indexed  # answered from the index

    def test_an_appended_file_is_not_answered_from_its_old_index(self, tmp_path: Path) -> None:
        store = self._store(tmp_path)
        self._query(store)
        catalog = Catalog.load(tmp_path)
        entry = build_entry(
            {
                "action": "login",
                "actorId": "user-9",
                "organizationId": "org-1",
                "createdAt": "2026-03-01T00:00:30.500Z",
            },
            catalog,
        )
        store.append_contents("2026-03-01", [(entry["id"], dumps_entry(entry))])
        found, _ = self._query(store, actor_ids=("user-9",))
        assert [orjson.loads(seed_json(line))["id"] for line in found] == [entry["id"]]

    def test_a_line_changed_in_place_invalidates_the_index(self, tmp_path: Path) -> None:
        store = self._store(tmp_path)
        self._query(store)
        path = tmp_path / "date=2026-03-01" / "w1.jsonl"
        data = path.read_bytes()
        # Same length, other actor: only the file's identity (mtime, ctime) betrays the edit.
        path.write_bytes(data.replace(b'"actorId":"user-1"', b'"actorId":"user-7"', 1))
        found, _ = self._query(store, actor_ids=("user-7",))
        assert len(found) == 1

    def test_a_corrupted_line_keeps_the_file_scanned_and_reported(self, tmp_path: Path) -> None:
        store = self._store(tmp_path)
        path = tmp_path / "date=2026-03-01" / "w1.jsonl"
        lines = path.read_bytes().split(b"\n")
        lines[3] = lines[3].replace(b'"description":"', b'"description":"\xff', 1)
        path.write_bytes(b"\n".join(lines))
        found, engine = self._query(store)
        assert len(found) == 39
        assert any("not JSON" in str(problem) for problem in engine.problems)
        found, engine = self._query(store)  # the "not indexable" marker: scanned again
        assert len(found) == 39 and engine.problems and not engine._indexed

    def test_todays_file_is_scanned_not_indexed(self, tmp_path: Path) -> None:
        store = self._store(tmp_path)
        late = AuditStore(
            tmp_path, writer_id="w1", clock=lambda: datetime(2026, 3, 1, 23, tzinfo=UTC)
        )
        engine = _engine(late, Filters(), "asc", True)
        assert len(list(engine.stream())) == 40
        assert not (tmp_path / "_index").exists()
        assert store.root == late.root

    def test_a_damaged_index_is_ignored(self, tmp_path: Path) -> None:
        store = self._store(tmp_path)
        expected, _ = self._query(store, actions=("role_updated",))
        index = tmp_path / "_index" / "date=2026-03-01" / "w1.jsonl.idx"
        index.write_bytes(index.read_bytes()[:200])
        found, _ = self._query(store, actions=("role_updated",))
        assert found == expected

    def test_a_rotated_file_is_counted_from_its_index(self, tmp_path: Path) -> None:
        store = self._store(tmp_path)
        plain = tmp_path / "date=2026-03-01" / "w1.jsonl"
        plain.with_name("w1.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
        engine = _engine(store, Filters(actions=("login",)), "asc", True)
        assert engine.count() == 10
        assert (tmp_path / "_index" / "date=2026-03-01" / "w1.jsonl.gz.idx").exists()
        assert _engine(store, Filters(actions=("login",)), "asc", True).count() == 10
        # bounds inside the day need the lines: decompressed and scanned, same answer
        inside = Filters(actions=("login",), since="2026-03-01T00:00:10.000Z")
        assert _engine(store, inside, "asc", True).count() == 7

    def test_a_rotated_file_with_trailing_bytes_is_scanned_and_reported(
        self, tmp_path: Path
    ) -> None:
        store = self._store(tmp_path)
        plain = tmp_path / "date=2026-03-01" / "w1.jsonl"
        packed = gzip.compress(plain.read_bytes()) + b"junk"
        plain.with_name("w1.jsonl.gz").write_bytes(packed)
        plain.unlink()
        engine = _engine(store, Filters(), "asc", True)
        assert engine.count() == 40
        assert [problem.kind for problem in engine.problems] == ["trailing data"]

    def _rotated(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuditStore:
        """A day of 300 entries rotated into members of ~2 KiB (about 5 lines each)."""
        store = self._store(tmp_path, 300)
        monkeypatch.setattr(gzmembers, "MEMBER_BYTES", 2000)
        assert rotate(store).count("compress") == 1
        return store

    def _same_as_a_scan(self, store: AuditStore, wanted: Filters) -> QueryEngine:
        """Check every answer of the index path against the scan; the index engine."""
        indexed = _engine(store, wanted, "desc", True)
        scanned = _engine(store, wanted, "desc", False)
        assert list(indexed.stream()) == list(scanned.stream())
        for limit, offset in ((1, 0), (7, 3), (50, 280)):
            assert _engine(store, wanted, "desc", True).page(limit, offset) == scanned.page(
                limit, offset
            )
        blocks = b"".join(
            block for _, block in _engine(store, wanted, "asc", True).content_blocks()
        )
        plain = b"".join(
            block for _, block in _engine(store, wanted, "asc", False).content_blocks()
        )
        assert blocks == plain
        assert indexed.count() == scanned.count()
        return indexed

    @pytest.mark.parametrize("inflate", ["isal", "zlib"])
    def test_rotate_writes_the_index_of_a_seekable_archive(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inflate: str
    ) -> None:
        if inflate == "zlib":  # what a machine without ISA-L uses
            monkeypatch.setattr(gzmembers, "_engine", zlib)
        store = self._rotated(tmp_path, monkeypatch)
        gz = tmp_path / "date=2026-03-01" / "w1.jsonl.gz"
        index_file = tmp_path / "_index" / "date=2026-03-01" / "w1.jsonl.gz.idx"
        written = index_file.stat()
        info = gz.stat()
        with gz.open("rb") as handle:
            tail = lineindex.tail_of(handle.fileno(), info.st_size)
        index = lineindex.load(
            tmp_path, "date=2026-03-01", gz.name, lineindex.identity(info), tail, ["action"]
        )
        assert index is not None and index.members is not None
        packed, plain = index.members
        assert len(packed) > 20 and packed[-1] == info.st_size
        data = gzip.decompress(gz.read_bytes())
        assert plain[-1] == len(data)
        assert all(data[end - 1 : end] == b"\n" for end in plain[1:])  # whole lines each
        for wanted in (
            Filters(actions=("login",)),
            Filters(actor_ids=("user-2",), since="2026-03-01T00:00:10.000Z"),
            Filters(until="2026-03-01T00:00:30.000Z"),
            Filters(),
        ):
            engine = self._same_as_a_scan(store, wanted)
            assert engine._indexed and not engine.problems
        again = index_file.stat()  # used as rotate wrote it: no rebuild
        assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
        assert not check_indexes(store)
        used = {"isal": "isal.isal_zlib", "zlib": "zlib"}[inflate]
        assert gzmembers._engine.__name__ == used

    @pytest.mark.parametrize(
        "forgery", ["member moved", "member resized", "members dropped", "members swapped"]
    )
    @pytest.mark.parametrize(
        "wanted",
        [Filters(actions=("team_created",)), Filters()],  # a few members, or the day inflated whole
        ids=["few lines", "every line"],
    )
    def test_a_forged_member_table_never_answers(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forgery: str, wanted: Filters
    ) -> None:
        store = self._rotated(tmp_path, monkeypatch)
        # Answered from the genuine table first: what the process remembers of it (the verdict
        # on its members) must not vouch for the forged one.
        assert not self._same_as_a_scan(store, wanted).problems
        gz = tmp_path / "date=2026-03-01" / "w1.jsonl.gz"
        info = gz.stat()
        with gz.open("rb") as handle:
            tail = lineindex.tail_of(handle.fileno(), info.st_size)
        index = lineindex.load(
            tmp_path, "date=2026-03-01", gz.name, lineindex.identity(info), tail, lineindex.FIELDS
        )
        assert index is not None and index.members is not None
        packed, plain = (list(values) for values in index.members)
        if forgery == "member moved":
            packed[5] += 3
        elif forgery == "member resized":
            plain[5] += 1
        elif forgery == "members swapped":  # out of order: not seekable, and not the file
            packed[5], packed[6] = packed[6], packed[5]
        else:  # one member claimed to hold what several do: inflating it says otherwise
            packed, plain = packed[:1] + packed[-1:], plain[:1] + plain[-1:]
        index.members = (packed, plain)
        lineindex.save(tmp_path, "date=2026-03-01", gz.name, index)
        engine = self._same_as_a_scan(store, wanted)
        assert {problem.kind for problem in engine.problems} == {"line index ignored"}
        assert [problem.kind for problem in check_indexes(store)] == ["forged index"]

    def test_an_old_one_member_archive_is_answered_alike(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = self._store(tmp_path, 300)
        plain = tmp_path / "date=2026-03-01" / "w1.jsonl"
        plain.with_name("w1.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
        engine = self._same_as_a_scan(store, Filters(actions=("login",)))
        assert engine._indexed and not engine.problems
        # Too big to inflate whole and no members to seek: scanned, with nothing reported.
        monkeypatch.setattr(lineindex, "_WHOLE_FILE_MAX", 1000)
        monkeypatch.setattr(gzmembers, "SEEKABLE_MAX", 1000)
        engine = self._same_as_a_scan(store, Filters(actions=("login",)))
        assert not engine._indexed and not engine.problems

    @pytest.mark.parametrize("run", [1, 3000, 1 << 20])  # a member, a few, all at once
    def test_members_inflated_from_their_table_are_the_archive(
        self, tmp_path: Path, run: int
    ) -> None:
        data = b"".join(b'{"n":%d,"pad":"%s"}\n' % (n, b"x" * (n % 50)) for n in range(3000))
        packer = gzmembers.Packer(1000)
        archive = packer.feed(data) + packer.finish()
        path = tmp_path / "day.jsonl.gz"
        path.write_bytes(archive)
        assert gzip.decompress(archive) == data  # one ordinary gzip file to any reader
        packed = [start for start, _ in packer.members] + [len(archive)]
        plain = [start for _, start in packer.members] + [len(data)]
        fd = os.open(path, os.O_RDONLY)
        try:
            members = list(gzmembers.inflate_members(fd, packed, plain, run))
            assert len(members) == len(packed) - 1 > 50
            assert b"".join(members) == data
            for forged in (
                ([*packed[:7], packed[7] + 2, *packed[8:]], plain),  # a member moved
                (packed, [*plain[:7], plain[7] - 1, *plain[8:]]),  # a member resized
                (packed[:3] + packed[5:], plain[:3] + plain[5:]),  # two members as one
                ([*packed[:-1], packed[-1] + 10], plain),  # beyond the end of the file
            ):
                with pytest.raises(gzmembers.GzipError):
                    list(gzmembers.inflate_members(fd, *forged, run))
        finally:
            os.close(fd)
        # Bytes slipped in after a member, the table saying the member ends after them: each
        # member still holds what the table says, but does not end where it says.
        path.write_bytes(archive[: packed[1]] + b"junk" + archive[packed[1] :])
        shifted = packed[:1] + [start + 4 for start in packed[1:]]
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(gzmembers.GzipError, match="does not end where"):
                list(gzmembers.inflate_members(fd, shifted, plain, run))
        finally:
            os.close(fd)

    def test_index_key_order_is_the_models(self) -> None:
        assert lineindex.KEY_ORDER == SEED_FIELDS


# ---------------------------------------------------------------------- the importer's shortcut
VALID = {
    "id": "id-1",
    "description": "d",
    "actorId": "user-1",
    "actorName": None,
    "actorEmail": "a@example.com",
    "action": "login",
    "actionDisplayName": "User Login",
    "target": "USER",
    "targetId": "user-1",
    "metadata": {"k": [1, 2.5, None, True, "x"]},
    "organizationId": "org-1",
    "teamId": None,
    "createdAt": "2026-03-01T00:00:00.000Z",
}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


MUTATIONS = st.sampled_from(
    [
        ("id", None),
        ("id", "bad id!"),
        ("description", None),
        ("actorId", ""),
        ("actorId", 5),
        ("actorEmail", "nope"),
        ("action", "no_such_action"),
        ("action", None),
        ("actionDisplayName", None),
        ("target", "PLANET"),
        ("target", None),
        ("targetId", None),
        ("metadata", {"deep": _nested(34)}),
        ("metadata", 7),
        ("metadata", {"big": 2**64}),
        ("organizationId", None),
        ("teamId", ""),
        ("createdAt", "2026-02-30T00:00:00.000Z"),
        ("createdAt", "2026-03-01T01:00:00+01:00"),
        ("createdAt", "2026-03-01T00:00:00Z"),
        ("createdAt", None),
        ("createdAt", "\uff12026-03-01T00:00:00.000Z"),  # a fullwidth digit: \\d matches it
        ("extra", 1),
        # the rules the batch check and pydantic both take from model.TEXT_RULES
        ("id", "a\n"),
        ("id", "x" * 129),
        ("id", "é"),
        ("description", "d" * 8193),
        ("actorName", "n" * 513),
        ("actorEmail", "a\u00a0b@example.com"),  # Unicode whitespace: refused by both
        ("actorEmail", "\u00fc@example.com"),  # non-ASCII: the batch check asks pydantic
        ("actorEmail", "a@b.c\n"),
        ("actionDisplayName", ""),
        ("target", "USER\n"),
        ("teamId", 5),
        ("actorId", "u" * 513),
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    mutations=st.lists(MUTATIONS, max_size=3),
    drop=st.lists(st.sampled_from(SEED_FIELDS), max_size=2),
    spacing=st.sampled_from(["compact", "spaced", "shuffled", "trailing", "form feed"]),
)
def test_canonical_import_shortcut_equals_the_full_path(
    mutations: list[tuple[str, Any]], drop: list[str], spacing: str
) -> None:
    data = dict(VALID)
    for name, value in mutations:
        data[name] = value
    for name in drop:
        data.pop(name, None)
    if spacing == "shuffled":
        data = dict(reversed(list(data.items())))
    separators = (", ", ": ") if spacing == "spaced" else (",", ":")
    raw = json.dumps(data, separators=separators, ensure_ascii=False).encode()
    raw += {"trailing": b"  \r\n", "form feed": b"\x0c\n"}.get(spacing, b"\n")
    catalog = _builtin_catalog()
    full = _full_path(raw, catalog)
    fast = _canonical_batch([raw], catalog)
    if fast is not None:
        assert full != "refused"
        assert fast[0] == [full[1]]
        assert _rows(fast[1]) == [full[0]]
    if not mutations and not drop and spacing == "compact":
        assert fast is not None  # a complete canonical line does take the shortcut


def _builtin_catalog() -> Catalog:
    """The catalog of a store with no custom action (no log directory)."""
    return Catalog.load(Path(tempfile.gettempdir()) / "no-such-audit-dir")


def _full_path(raw: bytes, catalog: Catalog) -> Any:
    """What the importer's full path makes of one input line: `(entry, stored bytes)`, or
    "refused"."""
    try:
        entry = build_entry(loads_strict(raw), catalog)
        return entry, dumps_entry(entry)
    except (InvalidEntryError, ValueError):
        return "refused"


def _with_field_text(field: str, text: bytes) -> bytes:
    """VALID as canonical JSON with the value of `field` written as `text`."""
    canonical = orjson.dumps(VALID)
    start = canonical.index(b'"' + field.encode() + b'":') + len(field) + 3
    return canonical[:start] + text + canonical[start + len(orjson.dumps(VALID[field])) :]


def _rows(columns: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The entries whose fields `columns` holds, a column per field."""
    assert tuple(columns) == SEED_FIELDS
    return [dict(zip(SEED_FIELDS, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _number_text(draw: Any) -> bytes:
    """A JSON number as some writer might write it: Python's, orjson's or msgspec's form
    (they differ, e.g. 1e+16, 1e16), an exponent form, or an integer beyond 64 bits."""
    kind = draw(st.sampled_from(["int", "float", "float"]))
    if kind == "int":
        return str(draw(st.integers(-(2**70), 2**70))).encode()
    number = draw(st.floats(allow_nan=False, allow_infinity=False))
    form = draw(st.sampled_from(["repr", "orjson", "msgspec", "e", "E+"]))
    if form == "orjson":
        return orjson.dumps(number)
    if form == "msgspec":
        return msgspec.json.encode(number)
    if form == "e":
        return f"{number:e}".encode()
    # Python's form with an upper-case exponent, always signed: 1E+16
    text = repr(number).upper().replace("E", "E+")
    return text.replace("E++", "E+").replace("E+-", "E-").encode()


@st.composite
def json_texts(draw: Any, depth: int = 3) -> bytes:
    """The text of a JSON value, written in any of the ways JSON allows (escapes, spaces,
    number forms, repeated keys) rather than only in the canonical one."""
    kinds = ["number", "text", "literal"] + (["array", "object"] if depth else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        return _number_text(draw)
    if kind == "literal":
        return draw(st.sampled_from([b"true", b"false", b"null"]))
    if kind == "text":
        value = draw(st.text(max_size=6))
        return json.dumps(value, ensure_ascii=draw(st.booleans())).encode()
    space = draw(st.sampled_from([b"", b"", b" "]))
    items = draw(st.lists(json_texts(depth - 1), max_size=3))
    if kind == "array":
        return b"[" + (b"," + space).join(items) + b"]"
    keys = draw(st.lists(st.sampled_from(["a", "b", r"\u0061", "é"]), min_size=len(items)))
    pairs = [b'"' + k.encode() + b'":' + space + item for k, item in zip(keys, items, strict=False)]
    return b"{" + b",".join(pairs) + b"}"


@settings(max_examples=300, deadline=None)
@given(metadata=json_texts(), field=st.sampled_from([*TEXT_RULES, "metadata"]))
def test_the_shortcut_takes_a_written_line_only_as_the_full_path_would_store_it(
    metadata: bytes, field: str
) -> None:
    """A canonical line whose metadata (or one text field) is JSON as any writer might write
    it: taken by the shortcut only if the full path accepts the line and stores exactly its
    bytes, with the same values; in particular numbers only in the one serialiser's form."""
    catalog = _builtin_catalog()
    raw = _with_field_text(field, metadata)
    full = _full_path(raw, catalog)
    fast = _canonical_batch([raw], catalog)
    if fast is not None:
        assert full != "refused", raw
        assert fast[0] == [full[1]] == [raw]
        assert _rows(fast[1]) == [full[0]]
    elif field == "metadata":  # metadata the full path stores unchanged is taken too
        assert full == "refused" or full[1] != raw, raw


@pytest.mark.parametrize(
    ("field", "text", "taken"),
    [
        ("metadata", b'{"n":1e+16}', True),  # orjson's form: the one stored
        ("metadata", b'{"n":1e16}', False),  # msgspec's form of the same number
        ("metadata", b'{"n":18446744073709551615}', True),
        ("metadata", b'{"n":18446744073709551616}', False),  # beyond 64 bits
        ("metadata", b'{"n":-9223372036854775809}', False),
        ("metadata", b'{"a":1,"a":2}', False),
        ("metadata", b'{"a": 1}', False),
        ("metadata", b"[1]", False),
        ("metadata", b'"text"', False),
        ("metadata", b"null", True),
        ("metadata", rb'{"s":"\\ud800"}', True),  # an escaped backslash, not a surrogate
        ("metadata", rb'{"s":"\ud800"}', False),  # a lone surrogate
        ("description", rb'"\u00e9"', False),  # stored as the character itself
        ("description", '"é"'.encode(), True),
        ("actorId", ('"' + "😀" * 512 + '"').encode(), True),  # code points, not units
        ("actorId", ('"' + "😀" * 513 + '"').encode(), False),
        ("actorName", b"null", True),
        ("actorId", b"null", False),
        ("metadata", orjson.dumps({"d": _nested(31)}), True),  # 32 levels: the most allowed
        ("metadata", orjson.dumps({"d": _nested(32)}), False),
        ("metadata", b"[" * 100_000 + b"]" * 100_000, False),  # beyond Python's recursion limit
        ("description", b'"' + b"[" * 40 + b'"', True),  # brackets outside the metadata
    ],
)
def test_the_shortcut_on_written_forms(field: str, text: bytes, taken: bool) -> None:
    """Hand-picked texts where msgspec (which decodes the shortcut's lines) and orjson (the
    one serialiser) could disagree, and the full path stores exactly what the shortcut took."""
    catalog = _builtin_catalog()
    raw = _with_field_text(field, text)
    fast = _canonical_batch([raw], catalog)
    assert (fast is not None) == taken
    if taken:
        entry = build_entry(loads_strict(raw), catalog)
        assert fast is not None and fast[0] == [dumps_entry(entry)] == [raw]
        assert _rows(fast[1]) == [entry]


def test_msgspec_and_orjson_write_every_character_alike() -> None:
    """The shortcut's canonical check re-encodes a line with msgspec, while the one serialiser
    is orjson: they must write every Unicode scalar value (escaped or not) the same way."""
    scalars = [chr(code) for code in range(0x110000) if not 0xD800 <= code <= 0xDFFF]
    assert len(scalars) == 1_112_064
    assert msgspec.json.encode(scalars) == orjson.dumps(scalars)


def test_a_batch_of_lines_each_of_two_entries_is_refused() -> None:
    """Lines are decoded one by one, and their contents are compared one by one: a line
    holding two entries, or one entry cut over two lines, is never taken."""
    catalog = _builtin_catalog()
    line = orjson.dumps(VALID)
    other = orjson.dumps(dict(VALID, id="id-2"))
    assert _canonical_batch([line, other], catalog) is not None
    assert _canonical_batch([line + b"," + other], catalog) is None
    assert _canonical_batch([line + other], catalog) is None
    cut = len(line) // 2
    assert _canonical_batch([line[:cut], line[cut:]], catalog) is None
    assert canonical_columns([line + b"\r"]) is not None  # JSON whitespace, as orjson takes it
    assert canonical_columns([line + b"\x0c"]) is None  # not JSON whitespace: orjson refuses


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.lists(MUTATIONS, max_size=1), min_size=1, max_size=6),
    ids=st.lists(st.integers(0, 3), min_size=6, max_size=6),
)
def test_a_batch_is_taken_whole_exactly_when_each_line_would_be(
    lines: list[list[tuple[str, Any]]], ids: list[int]
) -> None:
    """The importer checks a batch of lines column by column: it takes the batch exactly when
    every line alone would be taken, with the same entries and bytes."""
    catalog = _builtin_catalog()
    raws = []
    for n, mutations in enumerate(lines):
        data = dict(VALID, id=f"id-{ids[n]}", createdAt=f"2026-03-0{1 + ids[n] % 2}T00:00:00.000Z")
        for name, value in mutations:
            data[name] = value
        raws.append(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    alone = [_canonical_batch([raw], catalog) for raw in raws]
    together = _canonical_batch(raws, catalog)
    if all(one is not None for one in alone):
        assert together is not None
        assert together[0] == [content for one in alone if one for content in one[0]]
        assert _rows(together[1]) == [entry for one in alone if one for entry in _rows(one[1])]
    else:
        assert together is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stored=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(DAYS[:2]), st.integers(0, 1))),
    lines=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(DAYS[:2]), st.integers(0, 2)),
        min_size=1,
        max_size=30,
    ),
    read=st.sampled_from([300, 2000, 1 << 18]),
)
def test_the_check_pass_equals_a_line_by_line_check(
    stored: list[tuple[int, str, int]], lines: list[tuple[int, str, int]], read: int
) -> None:
    """Ids repeated in the input and ids already stored, decided from keys spooled in many
    small batches and segments (only the entries of an id seen before are read back), equal a
    plain line-by-line check: per day, a repeat of an id's first line is a duplicate when its
    content is the same and an invalid line naming that first line when not; a first line
    whose id is stored is a duplicate or "already recorded with different content"."""

    def line(number: int, day: str, variant: int) -> bytes:
        data = dict(VALID, id=f"id-{number}", createdAt=f"{day}T00:00:0{number}.000Z")
        return orjson.dumps(dict(data, description=f"variant {variant}"))

    expected_problems, written, duplicates = [], [], 0
    first: dict[tuple[str, int], tuple[int, bytes]] = {}  # (day, id) -> (line, content)
    kept = {(day, number): line(number, day, variant) for number, day, variant in stored}
    for at, (number, day, variant) in enumerate(lines, 1):
        content = line(number, day, variant)
        earlier = first.get((day, number))
        if earlier is None:
            first[(day, number)] = (at, content)
            if (day, number) not in kept:
                written.append(content)
            elif kept[(day, number)] == content:
                duplicates += 1
            else:
                expected_problems.append(
                    f"line {at}: id: id-{number} is already recorded with different content"
                )
        elif earlier[1] == content:
            duplicates += 1
        else:
            expected_problems.append(
                f"line {at}: id: id-{number} appears on line {earlier[0]} with different content"
            )
    saved = importer._READ, importer._KEYS_BUFFERED
    importer._READ, importer._KEYS_BUFFERED = read, read // 2
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = AuditStore(Path(tmp), writer_id="w1", clock=lambda: NOW)
            if kept:
                import_jsonl(store, io.BytesIO(b"\n".join(kept.values())))
            source = io.BytesIO(b"\n".join(line(*key) for key in lines))
            try:
                report = import_jsonl(store, source, skip_invalid=True)
            finally:
                importer._READ, importer._KEYS_BUFFERED = saved
            assert report.problems == expected_problems
            assert report.duplicates == duplicates
            assert report.written == len(written)
            contents = {
                chain.content_of(raw)
                for path in Path(tmp).glob("date=*/*.jsonl")
                for raw in path.read_bytes().splitlines(keepends=True)
            }
            assert contents == set(written) | set(kept.values())
    finally:
        importer._READ, importer._KEYS_BUFFERED = saved


# ---------------------------------------------------------------------- indexes written by import
DAMAGE = ("none", "missing", "stale", "forged", "half-written")


def _index_files(root: Path) -> list[Path]:
    return sorted((root / lineindex.INDEX_DIR).glob("date=*/*.idx"))


def _forge(root: Path, path: Path) -> bool:
    """Rewrite the index `path` so that it is current for its file (same identity and last
    bytes) but says something else; False when nothing else could be said."""
    partition, name = path.parent.name, path.name.removesuffix(".idx")
    fd = os.open(root / partition / name, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        index = lineindex.build(fd, info)
    finally:
        os.close(fd)
    assert index is not None and index.usable
    before = index.to_bytes()
    for column in index.columns.values():  # every line gets another line's value
        width = column.width
        codes = [column.codes[n : n + width] for n in range(0, len(column.codes), width)]
        column.codes = b"".join(codes[1:] + codes[:1])
    if index.to_bytes() == before:
        return False
    path.write_bytes(index.to_bytes())
    return True


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    earlier=st.lists(st.sampled_from(DAYS).flatmap(entries), max_size=8),
    batch=st.lists(st.sampled_from(DAYS).flatmap(entries), min_size=1, max_size=40),
    repeated=st.lists(st.integers(0, 39), max_size=3),
    in_order=st.booleans(),
    damage=st.sampled_from(DAMAGE),
    queries=st.lists(
        st.tuples(filters(), st.sampled_from(["asc", "desc"]), st.integers(1, 30)),
        min_size=1,
        max_size=3,
    ),
)
def test_indexes_written_by_import_equal_built_ones_and_damage_changes_no_answer(
    earlier: list[dict[str, Any]],
    batch: list[dict[str, Any]],
    repeated: list[int],
    in_order: bool,
    damage: str,
    queries: list[Any],
) -> None:
    """An import indexes the days it wrote, from the values it validated (a file it created)
    or by reading the file (one that held entries before): either way the very index the query
    engine would build, which `verify` accepts. Missing, stale and half-written index files
    change no answer, and `verify` reports a forged one. Queries take the vouched path, and
    an index file remembered as vouched for (by identity) before the damage is never used
    unchecked after it."""
    ids = [entry["id"] for entry in earlier + batch]
    assume(len(ids) == len(set(ids)))
    if in_order:
        batch = sorted(batch, key=_ref_key)
    lines = [orjson.dumps(entry) for entry in batch]
    for n in repeated:  # shippers deliver twice: skipped as duplicates
        if n < len(lines):
            lines.append(lines[n])
    saved = importer.INDEX_MIN_BYTES, query._VOUCH_MIN, trust._SETTLED_NS
    importer.INDEX_MIN_BYTES = query._VOUCH_MIN = 0  # index even the tiny files of a test
    trust._SETTLED_NS = 20_000_000  # an identity is remembered 20 ms after its last change
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            store = AuditStore(root, writer_id="w1", clock=lambda: NOW)
            if earlier:
                import_jsonl(store, io.BytesIO(b"\n".join(map(orjson.dumps, earlier))))
            report = import_jsonl(store, io.BytesIO(b"\n".join(lines) + b"\n"))
            assert report.written == len(batch) and not report.invalid
            files = sorted(root.glob("date=*/*.jsonl"))
            assert len(_index_files(root)) == len(files)  # every day written got its index
            for path in files:
                fd = os.open(path, os.O_RDONLY)
                try:
                    info = os.fstat(fd)
                    built = lineindex.build(fd, info)
                    tail = lineindex.tail_of(fd, info.st_size)
                finally:
                    os.close(fd)
                stored = lineindex.load(
                    root,
                    path.parent.name,
                    path.name,
                    lineindex.identity(info),
                    tail,
                    lineindex.FIELDS,
                )
                assert stored is not None and built is not None
                assert stored.to_bytes() == built.to_bytes()
            assert check_indexes(store) == []
            time.sleep(0.025)  # settled: a query now remembers each index file it hashes
            _answers(store, Filters(), "asc", True, 1, 0)
            remembered = [_index_identity(path) for path in _index_files(root)]
            assert all(map(trust.vouched_file, remembered))
            forged = False
            target = _index_files(root)[0]
            if damage == "missing":
                for path in _index_files(root):
                    path.unlink()
            elif damage == "half-written":
                for path in _index_files(root):
                    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            elif damage == "stale":  # the file grew after the import indexed it
                day = target.parent.name.removeprefix("date=")
                extra = build_entry(
                    dict(batch[0], id="late-1", createdAt=f"{day}T05:00:00.000Z"),
                    Catalog.load(root),
                )
                store.append_contents(day, [(extra["id"], dumps_entry(extra))])
            elif damage == "forged":
                forged = _forge(root, target)
            for wanted, order, limit in queries:
                if forged:
                    # A forged index that is current for its file can make a query answer
                    # wrong (a page or a count the spot checks do not catch), as a forged
                    # log line can: what holds is that `verify` names it (below).
                    break
                expected = _reference(root, wanted, order)
                answer = _answers(store, wanted, order, True, limit, 0)
                assert answer["lines"] == expected
                assert answer["count"] == len(expected)
                assert answer["page"] == (len(expected), expected[:limit])
                for by in STATS_BY:
                    assert answer["stats"][by] == _reference_stats(expected, by)
            if forged:  # queries scan the file instead, and verify names the index
                # Same size as the index it replaced, but not the same file: never believed.
                assert not trust.vouched_file(_index_identity(target))
                assert not lineindex.vouched_for(_load_index(root, target))
                reported = [p.file for p in check_indexes(store) if p.kind == "forged index"]
                assert reported == [f"_index/{target.parent.name}/{target.name}"]
    finally:
        importer.INDEX_MIN_BYTES, query._VOUCH_MIN, trust._SETTLED_NS = saved


def _index_identity(path: Path) -> lineindex.Identity:
    return lineindex.identity(os.stat(path))


def _load_index(root: Path, path: Path) -> lineindex.LineIndex:
    """The index file `path` (current for its log file), loaded as a query loads it."""
    partition, name = path.parent.name, path.name.removesuffix(".idx")
    fd = os.open(root / partition / name, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        tail = lineindex.tail_of(fd, info.st_size)
    finally:
        os.close(fd)
    index = lineindex.load(root, partition, name, lineindex.identity(info), tail, ())
    assert index is not None
    return index


def test_the_first_query_after_an_import_builds_no_index(tmp_path: Path, monkeypatch: Any) -> None:
    """No cold cliff: the days an import wrote are indexed by the import, so the first query
    reads those indexes and builds none."""
    monkeypatch.setattr(importer, "INDEX_MIN_BYTES", 0)
    store = AuditStore(tmp_path, writer_id="w1", clock=lambda: NOW)
    catalog = Catalog.load(tmp_path)
    lines = []
    for n in range(300):
        entry = build_entry(
            {
                "id": f"e-{n}",
                "action": ACTIONS[n % len(ACTIONS)],
                "actorId": ACTORS[n % 3],
                "organizationId": "org-1",
                "targetId": "t",
                "createdAt": f"{DAYS[n % 3]}T00:{n // 60:02d}:{n % 60:02d}.000Z",
            },
            catalog,
        )
        lines.append(dumps_entry(entry))
    import_jsonl(store, io.BytesIO(b"\n".join(lines)))
    assert len(_index_files(tmp_path)) == 3

    def no_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the first query built an index")

    monkeypatch.setattr(lineindex, "build", no_build)
    engine = _engine(store, Filters(actions=("login",)), "asc", True)
    assert len(list(engine.stream())) == 75
    assert engine._indexed


def test_the_batch_rules_and_pydantic_agree_on_every_ascii_character() -> None:
    """Each field with a pattern, a valid value with any one ASCII character put at its
    start, middle or end: the batch check (Python's regex engine) says what pydantic (Rust's)
    says. Non-ASCII values are left to pydantic by the batch check, so ASCII is all there is."""
    for name, rule in TEXT_RULES.items():
        if rule.pattern is None:
            continue
        good = VALID[name]
        for code in range(128):
            char = chr(code)
            for value in (char + good, good[:2] + char + good[2:], good + char):
                try:
                    Entry(**dict(VALID, **{name: value}))
                    expected = True
                except ValidationError:
                    expected = False
                taken = canonical_columns([orjson.dumps(dict(VALID, **{name: value}))])
                assert (taken is not None) == expected, (name, value)


@st.composite
def stored_lines(draw: Any) -> bytes:
    """A stored line of chain version 1 or 2 (salted, or redacted), or a damaged or foreign
    one: what the column-at-a-time checks of lines from an index must judge as the per-line
    ones do."""
    content = dumps_entry(build_entry(draw(entries(DAYS[0])), Catalog()))
    created = content.rindex(b',"createdAt":')
    block = draw(
        st.sampled_from([b"", b',"_salt":"' + b"0f" * 16 + b'"', b',"_redacted":{"f":["x"]}'])
    )
    line = chain.chained_line(content[:created] + block + content[created:], bytes(32))
    kind = draw(st.sampled_from(["whole", "whole", "cut", "bytes"]))
    if kind == "cut":
        return line[: draw(st.integers(0, len(line)))] + b"\n"
    if kind == "bytes":
        return draw(st.binary(max_size=300)) + b"\n"
    return line


@settings(max_examples=120, deadline=None)
@given(lines=st.lists(stored_lines(), max_size=6), wanted=filters())
def test_column_checks_of_lines_equal_the_per_line_checks(
    lines: list[bytes], wanted: Filters
) -> None:
    """chain.all_chained_lines, chain.contents_of and the matcher's all_match (what checks the
    lines a line index selects) decide exactly as is_chained_line, content_of and the matcher
    do one line at a time."""
    assert chain.all_chained_lines(lines) == all(map(chain.is_chained_line, lines))
    assert chain.contents_of(lines) == list(map(chain.content_of, lines))
    shaped = [line for line in lines if chain.is_chained_line(line)]
    matcher = query._Matcher(wanted)
    assert matcher.all_match(shaped) == all(map(matcher, shaped))


@settings(max_examples=200, deadline=None)
@given(
    width=st.sampled_from([1, 2]),
    drawn=st.lists(st.integers(0, 5), max_size=60),
    # Lines of code 0 after them, so that each other code may be rare (the split and find
    # paths) or not.
    padding=st.integers(0, 400),
    wanted=st.sets(st.integers(0, 5), min_size=1, max_size=3),
)
def test_the_lines_a_column_gives_are_those_holding_the_codes(
    width: int, drawn: list[int], padding: int, wanted: set[int]
) -> None:
    """Column.lines (the lines of a filter's values, found in C) gives exactly the lines whose
    code is wanted, in order: one code or several, rare or frequent, one- or two-byte codes
    (two-byte ones whose bytes a search could match across two lines' codes)."""
    as_code = range(6) if width == 1 else (0, 0x0100, 0x0001, 0x0101, 0x0102, 0x0201)
    codes = [as_code[code] for code in drawn] + [0] * padding
    values = [f"v{n}" for n in range(max(as_code) + 1)]
    counts = [codes.count(n) for n in range(len(values))]
    packed = array("B" if width == 1 else "H", codes).tobytes()
    column = lineindex.Column(values, counts, packed, width)
    asked = sorted(as_code[code] for code in wanted)
    assert column.lines(asked) == [n for n, code in enumerate(codes) if code in asked]
