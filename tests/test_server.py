"""`audit serve`: the audit-log HTTP API, service-account tokens, errors and OpenAPI.

Fast cases run in-process through FastAPI's TestClient; the rest start the real server
(`python -m auditcli serve`) on a free loopback port and talk HTTP to it with httpx, including
several clients at once while another process appends entries.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import random
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from auditcli import chain
from auditcli.accounts import AccountStore, TokenError, parse_expiry
from auditcli.cli import app as cli_app
from auditcli.errors import IntegrityError, UsageError
from auditcli.model import SEED_FIELDS
from auditcli.query import Filters, QueryEngine
from auditcli.store import AuditStore, init_store
from auditcli.tailindex import TailCache

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx vs httpx2
    from fastapi.testclient import TestClient

from auditcli.server import CachingQueryEngine, CountCache, create_app

API = "/api/v1/audit-logs"
TOKEN_RE = re.compile(r"^audit_[A-Za-z0-9_-]{43}$")
ACTOR = {"actorId": "tester"}
DAYS = ("2026-11-06", "2026-11-07", "2026-11-08")
ACTIONS = ("login", "team_created", "role_updated", "user_added", "login", "login")
runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


# ----------------------------------------------------------------------------- data
def _seed_entries() -> list[dict[str, Any]]:
    """60 entries over 3 days and 2 organizations; several share a createdAt (ties by id)."""
    entries = []
    for n in range(60):
        day = DAYS[n % 3]
        second = (n // 3) % 12  # 12 distinct seconds a day: 20 entries a day, some tied
        entries.append(
            {
                "id": f"e-{n:03d}",
                "action": ACTIONS[n % len(ACTIONS)],
                "actorId": f"user-{n % 4}",
                "actorEmail": f"user{n % 4}@example.com",
                "targetId": f"t-{n % 5}",
                "organizationId": "org-1" if n % 5 else "org-2",
                "teamId": "team-1" if n % 2 else None,
                "metadata": {"n": n} if n % 7 == 0 else None,
                "createdAt": f"{day}T10:00:{second:02d}.000Z",
            }
        )
    return entries


def stored_entries(root: Path) -> list[dict[str, Any]]:
    """Every entry in the store, read straight from the files (an oracle independent of the
    query engine): JSON parsed, the chain key dropped."""
    entries = []
    for path in sorted(root.glob("date=*/*.jsonl")):
        for line in path.read_bytes().splitlines():
            data = json.loads(line)
            if data.pop("_chain", None) is not None:  # else a planted foreign line
                data.pop("_salt", None)  # chain version 2: the line's salt, no entry field
                entries.append(data)
    return entries


def expected(root: Path, org: str, **filters: Any) -> list[dict[str, Any]]:
    """The oracle's answer: the org's entries matching `filters`, newest first, ties by id desc."""
    gte, lte = filters.pop("gte", None), filters.pop("lte", None)
    rows = [
        e
        for e in stored_entries(root)
        if e["organizationId"] == org
        and all(e[k] == v for k, v in filters.items())
        and (gte is None or e["createdAt"] >= gte)
        and (lte is None or e["createdAt"] <= lte)
    ]
    rows.sort(key=lambda e: (e["createdAt"], e["id"]), reverse=True)
    return rows


class Tokens:
    """The tokens of one test store."""

    admin: str
    admin2: str
    member: str
    expired: str


def _make_store(root: Path) -> tuple[AuditStore, Tokens]:
    store = AuditStore(root, writer_id="host1")
    store.append(_seed_entries())
    accounts = AccountStore(store)
    tokens = Tokens()
    tokens.admin = accounts.create("admin-1", "org-1", "admin", actor=ACTOR)[1]
    tokens.admin2 = accounts.create("admin-2", "org-2", "admin", actor=ACTOR)[1]
    tokens.member = accounts.create("member-1", "org-1", "member", actor=ACTOR)[1]
    # An account created two days ago that expired an hour after.
    past = AuditStore(root, writer_id="host1", clock=lambda: datetime.now(UTC) - timedelta(days=2))
    tokens.expired = AccountStore(past).create(
        "old-1", "org-1", "admin", actor=ACTOR, expires="1h"
    )[1]
    return store, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The stable error shape, with no stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "details"}
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["details"], list) and all(isinstance(d, str) for d in body["details"])
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def assert_page(response: httpx.Response, limit: int, offset: int) -> dict[str, Any]:
    """The API's response shape, each entry exactly the 13 fields in the API's order."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["total", "limit", "offset", "logs"]
    assert (body["limit"], body["offset"]) == (limit, offset)
    for entry in body["logs"]:
        assert list(entry) == list(SEED_FIELDS)
    return body


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def env(tmp_path: Path) -> tuple[AuditStore, Tokens, TestClient]:
    store, tokens = _make_store(tmp_path / "logs")
    client = TestClient(create_app(AuditStore(store.root)), raise_server_exceptions=False)
    return store, tokens, client


@pytest.fixture
def store(env: tuple[AuditStore, Tokens, TestClient]) -> AuditStore:
    return env[0]


@pytest.fixture
def tokens(env: tuple[AuditStore, Tokens, TestClient]) -> Tokens:
    return env[1]


@pytest.fixture
def client(env: tuple[AuditStore, Tokens, TestClient]) -> TestClient:
    return env[2]


# ----------------------------------------------------------------------------- the endpoint
@pytest.mark.parametrize("how", ["replaced", "mapped"])
def test_a_file_put_back_as_it_was_is_counted_again(client, tokens, store, how: str) -> None:
    """The server remembers each file's count of a query (and skips a file that held no match)
    while the file keeps its identity. Whoever can write the log directory can put a file of
    their own in a file's place, holding another actor id, let the server count it, then write
    the original bytes back into it with its mtime set back; or, for a file others can write,
    do both through a shared mapping, which leaves even its ctime as it was. The entries are
    then genuine (`audit verify` finds nothing): the server must answer with them."""
    path = store.root / "date=2026-11-07" / "host1.jsonl"
    original = path.read_bytes()
    tampered = original.replace(b'"actorId":"user-1"', b'"actorId":"user-9"')  # same size
    params = {"actorId": "user-1", "limit": 100}
    oracle = expected(store.root, "org-1", actorId="user-1")
    assert any(entry["createdAt"].startswith("2026-11-07") for entry in oracle)

    def answer() -> list[dict[str, Any]]:
        body = assert_page(client.get(API, params=params, headers=bearer(tokens.admin)), 100, 0)
        assert body["total"] == len(body["logs"])
        return body["logs"]

    if how == "replaced":
        mtime = path.stat().st_mtime_ns
        planted = path.with_name(".planted")
        planted.write_bytes(tampered)
        os.utime(planted, ns=(mtime, mtime))
        planted.rename(path)  # the attacker's own file, in its place
        assert answer() == expected(store.root, "org-1", actorId="user-1") != oracle
        with open(path, "r+b") as file:  # the original bytes back, in place
            file.write(original)
        os.utime(path, ns=(mtime, mtime))
        assert answer() == oracle
        return
    path.chmod(0o666)  # anyone may write it
    with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0) as mapped:
        mapped[:] = tampered  # the first write to its pages: the ctime is set now
        assert answer() == expected(store.root, "org-1", actorId="user-1") != oracle
        mapped[:] = original  # the same pages again: the ctime stays
        assert answer() == oracle


class TestListing:
    def test_default_page_is_20_newest_first_with_total(self, client, tokens, store) -> None:
        body = assert_page(client.get(API, headers=bearer(tokens.admin)), 20, 0)
        oracle = expected(store.root, "org-1")
        assert body["total"] == len(oracle) > 20
        assert body["logs"] == oracle[:20]

    def test_the_seed_example_request(self, client, tokens, store) -> None:
        response = client.get(f"{API}?limit=50&action=login", headers=bearer(tokens.admin))
        body = assert_page(response, 50, 0)
        oracle = expected(store.root, "org-1", action="login")
        assert body["total"] == len(oracle) and body["logs"] == oracle[:50]
        assert response.headers["cache-control"] == "no-store"

    @pytest.mark.parametrize(
        ("params", "filters"),
        [
            ({"action": "team_created"}, {"action": "team_created"}),
            ({"target": "ROLE"}, {"target": "ROLE"}),
            ({"target": "team"}, {"target": "TEAM"}),  # as `audit query --target team`
            ({"actorId": "user-1"}, {"actorId": "user-1"}),
            ({"actorId": "nobody"}, {"actorId": "nobody"}),
            ({"createdAtGte": "2026-11-07T10:00:05Z"}, {"gte": "2026-11-07T10:00:05.000Z"}),
            ({"createdAtLte": "2026-11-07T10:00:05Z"}, {"lte": "2026-11-07T10:00:05.000Z"}),
            # A bare date as the upper bound takes in that whole day.
            ({"createdAtLte": "2026-11-07"}, {"lte": "2026-11-07T23:59:59.999Z"}),
            # An offset, sent percent-encoded as it must be in a URL: 12:00:05+02:00 = 10:00:05Z.
            (
                {"createdAtGte": "2026-11-07T12:00:05+02:00", "createdAtLte": "2026-11-08"},
                {"gte": "2026-11-07T10:00:05.000Z", "lte": "2026-11-08T23:59:59.999Z"},
            ),
            (
                {
                    "action": "login",
                    "actorId": "user-2",
                    "target": "USER",
                    "createdAtGte": "2026-11-07",
                },
                {
                    "action": "login",
                    "actorId": "user-2",
                    "target": "USER",
                    "gte": "2026-11-07T00:00:00.000Z",
                },
            ),
        ],
    )
    def test_each_filter_matches_the_oracle(self, client, tokens, store, params, filters) -> None:
        response = client.get(API, params={**params, "limit": 100}, headers=bearer(tokens.admin))
        body = assert_page(response, 100, 0)
        oracle = expected(store.root, "org-1", **filters)
        assert body["total"] == len(oracle)
        assert body["logs"] == oracle

    def test_pages_walk_every_match_exactly_once(self, client, tokens, store) -> None:
        oracle = expected(store.root, "org-1")
        seen: list[dict[str, Any]] = []
        for offset in range(0, len(oracle) + 7, 7):
            body = assert_page(
                client.get(
                    API, params={"limit": 7, "offset": offset}, headers=bearer(tokens.admin)
                ),
                7,
                offset,
            )
            assert body["total"] == len(oracle)
            seen.extend(body["logs"])
        assert seen == oracle

    def test_offset_past_the_end_is_an_empty_page_with_the_total(
        self, client, tokens, store
    ) -> None:
        body = assert_page(
            client.get(API, params={"offset": 10_000, "limit": 100}, headers=bearer(tokens.admin)),
            100,
            10_000,
        )
        assert body["logs"] == [] and body["total"] == len(expected(store.root, "org-1"))

    @pytest.mark.parametrize("limit", [1, 100])
    def test_limit_bounds_are_accepted(self, client, tokens, limit) -> None:
        body = assert_page(
            client.get(API, params={"limit": limit}, headers=bearer(tokens.admin)), limit, 0
        )
        assert len(body["logs"]) == min(limit, body["total"])

    def test_same_answer_as_the_cli(self, client, tokens, store) -> None:
        """Same engine, same filters, same bytes as `audit query --format json`."""
        cli = runner.invoke(
            cli_app,
            [
                "-d",
                str(store.root),
                "query",
                "--org-id",
                "org-1",
                "--action",
                "login",
                "--since",
                "2026-11-07",
                "--limit",
                "9",
                "--offset",
                "2",
                "--format",
                "json",
            ],
        )
        assert cli.exit_code == 0, cli.output
        response = client.get(
            API,
            params={"action": "login", "createdAtGte": "2026-11-07", "limit": 9, "offset": 2},
            headers=bearer(tokens.admin),
        )
        assert response.content == cli.stdout.encode()

    def test_unknown_parameters_are_ignored(self, client, tokens) -> None:
        response = client.get(
            API, params={"_": "1700000000", "limit": 3}, headers=bearer(tokens.admin)
        )
        assert len(assert_page(response, 3, 0)["logs"]) == 3

    def test_new_entries_show_up_at_once(self, client, tokens, store) -> None:
        """Counts are cached per file identity: an append (to the newest day or an old one)
        must change the answer on the very next request."""
        first = client.get(API, headers=bearer(tokens.admin)).json()
        store.record(
            {
                "action": "login",
                "actorId": "late",
                "organizationId": "org-1",
                "createdAt": "2026-11-06T23:00:00Z",
                "id": "late-old-day",
            }
        )
        second = client.get(API, headers=bearer(tokens.admin)).json()
        assert second["total"] == first["total"] + 1
        entry = store.record({"action": "login", "actorId": "late", "organizationId": "org-1"})
        third = client.get(API, headers=bearer(tokens.admin)).json()
        assert third["total"] == first["total"] + 2 and third["logs"][0]["id"] == entry["id"]

    def test_a_new_file_in_a_listed_partition_shows_up_at_once(self, client, tokens, store) -> None:
        """Partition listings are reused while the directory is unchanged: a file another
        writer adds to a listed partition (and a new partition) is seen by the next request."""
        listings = client.app.state.listings
        listings.settle_ns = 50_000_000  # the stores of the tests are made just now
        time.sleep(0.1)
        first = client.get(API, headers=bearer(tokens.admin)).json()
        hits = listings.hits
        client.get(API, headers=bearer(tokens.admin))
        assert listings.hits > hits  # the listings were reused
        other = AuditStore(store.root, writer_id="host2")
        for day in ("2026-11-07", "2026-11-20"):  # a listed partition, then a new one
            other.record(
                {
                    "action": "login",
                    "actorId": "late",
                    "organizationId": "org-1",
                    "createdAt": f"{day}T12:00:00Z",
                }
            )
        second = client.get(API, headers=bearer(tokens.admin)).json()
        assert second["total"] == first["total"] + 2
        assert second == {**second, "logs": expected(store.root, "org-1")[:20]}

    def test_a_rare_actor_is_answered_from_the_cache_after_the_first_query(self, env) -> None:
        _store, tokens, client = env
        app = client.app
        params = {"actorId": "nobody-at-all"}
        assert client.get(API, params=params, headers=bearer(tokens.admin)).json()["total"] == 0
        hits = app.state.counts.hits
        assert client.get(API, params=params, headers=bearer(tokens.admin)).json()["total"] == 0
        assert app.state.counts.hits > hits

    def test_damaged_line_is_skipped_and_flagged(self, client, tokens, store) -> None:
        oracle = expected(store.root, "org-1")
        path = next(store.root.glob("date=2026-11-08/*.jsonl"))
        with open(path, "ab") as handle:
            handle.write(b'{"not":"an entry"}\n')
        for _ in range(2):  # the second answer (counts cached) must still warn
            response = client.get(API, params={"limit": 100}, headers=bearer(tokens.admin))
            body = assert_page(response, 100, 0)
            assert body["total"] == len(oracle) and body["logs"] == oracle
            assert "audit verify" in response.headers["x-audit-warning"]


def _in_order(first: int, count: int, base_ms: int) -> list[dict[str, Any]]:
    """Entries `first`.. of org-1 and org-2, the n-th at `base_ms` + n milliseconds (Unix)."""
    return [
        {
            "action": ACTIONS[n % len(ACTIONS)],
            "actorId": f"user-{n % 3}",
            "targetId": f"t-{n}",
            "organizationId": "org-1" if n % 4 else "org-2",
            "createdAt": datetime.fromtimestamp((base_ms + n) / 1000, UTC).isoformat(),
        }
        for n in range(first, first + count)
    ]


def _later_ms() -> int:
    """A time (Unix ms) after every entry the tests' stores hold."""
    return int(time.time() * 1000) + 1000


_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from test_server import _in_order
from auditcli.store import AuditStore
store = AuditStore(sys.argv[1], writer_id="host1")
for batch in range(40):
    store.append(_in_order(batch * 10, 10, int(sys.argv[3])))
    time.sleep(0.02)
"""


class TestGrowingFile:
    """Today's file, still appended to, is read from where the previous request stopped
    (TailCache): the answers stay the oracle's while it grows, is damaged or is replaced."""

    QUERIES = (
        {"limit": 20},
        {"limit": 100, "offset": 5},
        {"limit": 3, "offset": 40},
        {"limit": 10, "actorId": "user-1"},
        {"limit": 100, "action": "login"},
    )

    @staticmethod
    def _append(store: AuditStore, round_: int, count: int = 15) -> None:
        now = datetime.now(UTC)
        for n in range(count):
            entry = {
                "action": ACTIONS[n % len(ACTIONS)],
                "actorId": f"user-{n % 3}",
                "targetId": f"t-{n}",
                "organizationId": "org-1" if n % 4 else "org-2",
            }
            if n % 5 == 0:  # recorded late: earlier today than entries already stored
                entry["createdAt"] = f"{now:%Y-%m-%d}T00:00:0{round_ % 10}.000Z"
            store.record(entry)

    def _check(self, client: TestClient, tokens: Tokens, store: AuditStore) -> None:
        for params in self.QUERIES:
            response = client.get(API, params=params, headers=bearer(tokens.admin))
            body = assert_page(response, params["limit"], params.get("offset", 0))
            filters = {k: v for k, v in params.items() if k in ("actorId", "action")}
            oracle = expected(store.root, "org-1", **filters)
            offset = params.get("offset", 0)
            assert body["total"] == len(oracle)
            assert body["logs"] == oracle[offset : offset + params["limit"]]

    def test_ids_that_prefix_others_keep_the_engines_order(self, store) -> None:
        """Equal createdAt, ids `e1` and `e10`…: a page at every offset, in both orders, is the
        plain engine's (a kept match sorts by createdAt, then id, then place in the file)."""
        when = datetime.fromtimestamp(_later_ms() / 1000, UTC)
        same = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entries = [
            {
                "id": f"e{n}",
                "action": "login",
                "actorId": "user-1",
                "organizationId": "org-1",
                "createdAt": same,
            }
            for n in range(30)
        ]
        store.append(entries)
        later = (when + timedelta(seconds=1)).isoformat(timespec="milliseconds")
        store.append(
            {
                "id": f"f{n}",
                "action": "login",
                "actorId": "user-1",
                "organizationId": "org-1",
                "createdAt": later.replace("+00:00", "Z"),
            }
            for n in range(3)
        )
        wanted = Filters(org_ids=("org-1",), actor_ids=("user-1",))
        for order in ("desc", "asc"):
            tails = TailCache(keep=3)
            plain = QueryEngine(store, wanted, order=order)
            total, every = plain.page(1000)
            for offset in range(total):
                cached = CachingQueryEngine(store, wanted, CountCache(), tails)
                cached.order = order
                assert cached.page(1, offset) == (total, every[offset : offset + 1]), (
                    order,
                    offset,
                )

    def test_a_big_day_is_read_without_keeping_its_lines(self, store) -> None:
        """The matches of today's file are kept as offsets (about 100 bytes each while the file
        is read, in 1 MiB chunks), never as the lines themselves: the first page over a day of
        30,000 entries costs less memory than the file's size (0.6x here; keeping the lines, it
        took 2.9x)."""
        base = _later_ms()
        day = datetime.fromtimestamp(base / 1000, UTC).date()
        if datetime.fromtimestamp(base / 1000 + 30, UTC).date() != day:  # near midnight UTC
            day += timedelta(days=1)  # a day after today is still appended to: not indexed
            base = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        for first in range(0, 30_000, 5_000):
            store.append(_in_order(first, 5_000, base))
        (today,) = store.root.glob(f"date={day:%Y-%m-%d}/*.jsonl")
        size = today.stat().st_size
        for order in ("desc", "asc"):
            engine = CachingQueryEngine(
                store, Filters(org_ids=("org-1",)), CountCache(), TailCache()
            )
            engine.order = order
            tracemalloc.start()
            try:
                total, lines = engine.page(20)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            oracle = expected(store.root, "org-1")
            assert total == len(oracle) > 22_500
            newest = [orjson.loads(chain.content_of(line)) for line in lines]
            assert newest == (oracle[:20] if order == "desc" else oracle[::-1][:20])
            assert peak < size, (order, peak, size)

    def test_appends_between_requests_are_read_alone(self, client, tokens, store) -> None:
        tails = client.app.state.tails
        for round_ in range(4):
            self._append(store, round_)
            self._check(client, tokens, store)
        today = next(store.root.glob(f"date={datetime.now(UTC):%Y-%m-%d}/*.jsonl"))
        assert {tail.end for tail in tails._tails.values()} == {today.stat().st_size}
        assert any(start > 0 for start in tails.scans_from)  # later rounds read from there

    def test_any_offset_in_todays_file_reads_only_new_lines_and_the_page(
        self, client, tokens, store, monkeypatch
    ) -> None:
        """Deep pages inside today's file: answered from the kept offsets (the engine's own
        window, which reads the whole day, is never called for it), equal to the oracle."""
        today = f"{datetime.now(UTC):%Y-%m-%d}"
        whole_day_reads: list[str] = []
        day_window = QueryEngine.day_window

        def spy(self: QueryEngine, day: str, low: int, high: int) -> Any:
            whole_day_reads.append(day)
            return day_window(self, day, low, high)

        monkeypatch.setattr(QueryEngine, "day_window", spy)
        tails = client.app.state.tails
        rng = random.Random(15)
        done, base = 0, _later_ms()
        for _ in range(5):
            store.append(_in_order(done, 120, base))
            done += 120
            oracle = expected(store.root, "org-1")
            for _ in range(6):
                offset, limit = rng.randrange(0, len(oracle) + 3), rng.randint(1, 100)
                response = client.get(
                    API, params={"limit": limit, "offset": offset}, headers=bearer(tokens.admin)
                )
                body = assert_page(response, limit, offset)
                assert body["total"] == len(oracle)
                assert body["logs"] == oracle[offset : offset + limit]
        assert today not in whole_day_reads
        assert tails.scans_from.count(0) == 1  # later requests read from where the last ended

    def test_pages_while_another_process_appends(self, client, tokens, store) -> None:
        """A real writer process appends (each entry newer than the last) while pages at random
        offsets are asked for: a page answered when the file held T matches is the final
        oracle's page shifted by the matches appended since, its total T."""
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                str(store.root),
                str(Path(__file__).parent),
                str(_later_ms()),
            ]
        )
        rng = random.Random(3)
        answers = []
        try:
            while writer.poll() is None:
                params = {"limit": rng.randint(1, 100), "offset": rng.randrange(0, 400)}
                response = client.get(API, params=params, headers=bearer(tokens.admin))
                answers.append((params, assert_page(response, params["limit"], params["offset"])))
        finally:
            writer.wait(timeout=60)
        assert writer.returncode == 0 and len(answers) > 5
        oracle = expected(store.root, "org-1")
        for params, body in answers:
            shift = len(oracle) - body["total"]
            first = shift + params["offset"]
            assert body["logs"] == oracle[first : first + params["limit"]], params

    def test_random_offsets_equal_the_oracle_with_late_lines(self, client, tokens, store) -> None:
        """Appends that sort among the kept matches (recorded late) make the file read afresh;
        every page stays the oracle's, with and without filters."""
        rng = random.Random(7)
        for round_ in range(6):
            self._append(store, round_, count=rng.randint(1, 25))
            for _ in range(5):
                params: dict[str, Any] = {"limit": rng.randint(1, 100)}
                filters = rng.choice([{}, {"actorId": "user-1"}, {"action": "login"}])
                oracle = expected(store.root, "org-1", **filters)
                params |= {"offset": rng.randrange(0, len(oracle) + 2), **filters}
                response = client.get(API, params=params, headers=bearer(tokens.admin))
                body = assert_page(response, params["limit"], params["offset"])
                assert body["total"] == len(oracle)
                assert body["logs"] == oracle[params["offset"] : params["offset"] + params["limit"]]

    def test_a_line_being_written_is_not_waited_for_and_a_torn_one_is_reported(
        self, client, tokens, store
    ) -> None:
        """A last line without its newline while a writer holds the file's lock (as through its
        fsync): the page is answered at once, without it. Left so (a crash), it is torn: the
        answer stays the same and warns."""
        store.append(_in_order(0, 40, _later_ms()))
        self._check(client, tokens, store)
        oracle = expected(store.root, "org-1")
        today = next(store.root.glob(f"date={datetime.now(UTC):%Y-%m-%d}/*.jsonl"))
        last = today.read_bytes().splitlines(keepends=True)[-1]
        with open(today, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # a writer mid-write
            handle.write(last[: len(last) // 2])
            handle.flush()
            began = time.monotonic()
            response = client.get(API, params={"limit": 5}, headers=bearer(tokens.admin))
            assert time.monotonic() - began < 2
            assert response.json()["logs"] == oracle[:5]
            assert "x-audit-warning" not in response.headers
        client.app.state.tails.write_ns = 50_000_000  # a partial line this old is torn
        time.sleep(0.1)
        response = client.get(API, params={"limit": 5}, headers=bearer(tokens.admin))
        assert response.json() == {**response.json(), "total": len(oracle), "logs": oracle[:5]}
        assert "audit verify" in response.headers["x-audit-warning"]

    def test_a_kept_line_changed_in_place_is_not_returned(self, client, tokens, store) -> None:
        """A line rewritten in place (same length, another organization) after its offset was
        kept: the page reads it, sees it no longer matches, and the file is scanned."""
        store.append(_in_order(0, 40, _later_ms()))
        self._check(client, tokens, store)
        today = next(store.root.glob(f"date={datetime.now(UTC):%Y-%m-%d}/*.jsonl"))
        data = today.read_bytes()
        newest = data.rindex(b',"organizationId":"org-1"')
        today.write_bytes(data[:newest] + b',"organizationId":"org-3"' + data[newest + 25 :])
        client.app.state.tails.write_ns = 50_000_000  # a new mtime this old is no write
        time.sleep(0.1)
        oracle = expected(store.root, "org-1")
        body = client.get(API, params={"limit": 5}, headers=bearer(tokens.admin)).json()
        assert body["total"] == len(oracle) and body["logs"] == oracle[:5]

    def test_a_damaged_line_keeps_being_reported(self, client, tokens, store) -> None:
        self._append(store, 0)
        self._check(client, tokens, store)
        today = next(store.root.glob(f"date={datetime.now(UTC):%Y-%m-%d}/*.jsonl"))
        with open(today, "ab") as handle:
            handle.write(b'{"not":"an entry"}\n')
        for round_ in (1, 2):
            self._append(store, round_, count=3)
            for _ in range(2):
                response = client.get(API, params={"limit": 100}, headers=bearer(tokens.admin))
                oracle = expected(store.root, "org-1")
                assert response.json()["logs"] == oracle[:100]
                assert "audit verify" in response.headers["x-audit-warning"]

    def test_a_file_put_back_as_it_was_is_read_afresh(self, client, tokens, store) -> None:
        """Whoever can write the log directory can put a file of their own in today's file's
        place (another actor id in its lines), let the server keep its matches, then write the
        original bytes back into it with its mtime set back (the same size): the server must
        answer from the file as it now is, not from what it kept of the planted one."""
        self._append(store, 0, count=30)
        today = next(store.root.glob(f"date={datetime.now(UTC):%Y-%m-%d}/*.jsonl"))
        original = today.read_bytes()
        mtime = today.stat().st_mtime_ns
        planted = today.with_name("planted.tmp")
        planted.write_bytes(original.replace(b'"actorId":"user-1"', b'"actorId":"user-9"'))
        os.utime(planted, ns=(mtime, mtime))
        os.replace(planted, today)
        self._check(client, tokens, store)  # kept: the planted file's matches
        with open(today, "r+b") as handle:  # the original bytes back, in place
            handle.write(original)
        os.utime(today, ns=(mtime, mtime))
        client.app.state.tails.write_ns = 50_000_000  # a change this old is no write under way
        time.sleep(0.1)
        self._check(client, tokens, store)

    def test_a_replaced_or_truncated_file_is_read_afresh(self, client, tokens, store) -> None:
        self._append(store, 0, count=30)
        self._check(client, tokens, store)
        today = next(store.root.glob(f"date={datetime.now(UTC):%Y-%m-%d}/*.jsonl"))
        lines = today.read_bytes().splitlines(keepends=True)
        replacement = today.with_name("replacement.tmp")
        replacement.write_bytes(b"".join(lines[:20]))
        os.replace(replacement, today)  # another inode, fewer lines
        self._check(client, tokens, store)
        with open(today, "r+b") as handle:  # the same inode, shorter
            handle.truncate(len(b"".join(lines[:10])))
        self._check(client, tokens, store)


class TestParameterErrors:
    @pytest.mark.parametrize(
        ("query", "needle"),
        [
            ("limit=0", "limit: must be an integer from 1 to 100"),
            ("limit=101", "limit: must be an integer from 1 to 100"),
            ("limit=-5", "limit"),
            ("limit=ten", "limit"),
            ("limit=", "limit"),
            ("offset=-1", "offset: must be an integer, 0 or more"),
            ("offset=x", "offset"),
            ("createdAtGte=yesterday-ish", "createdAtGte"),
            ("createdAtLte=2026-13-01", "createdAtLte"),
            ("action=lgin", "did you mean login"),
            ("target=GROUP", "target: unknown target 'GROUP'"),
            ("actorId=", "actorId: must be 1 to 512 characters, got ''"),
            ("limit=5&limit=6", "limit: given more than once"),
            # An unencoded '+' arrives as a space: the message says how to send it.
            ("createdAtGte=2026-11-07T12:00:00+02:00", "%2B"),
        ],
    )
    def test_400_with_the_problem_named(self, client, tokens, query, needle) -> None:
        body = assert_error(client.get(f"{API}?{query}", headers=bearer(tokens.admin)), 400)
        assert body["error"] == "invalid query parameters"
        assert any(needle in detail for detail in body["details"]), body

    def test_an_empty_interval_matches_nothing(self, client, tokens) -> None:
        query = "createdAtGte=2026-11-08&createdAtLte=2026-11-07"
        response = client.get(f"{API}?{query}", headers=bearer(tokens.admin))
        assert assert_page(response, 20, 0) == {"total": 0, "limit": 20, "offset": 0, "logs": []}

    def test_every_bad_filter_is_listed_at_once(self, client, tokens) -> None:
        body = assert_error(
            client.get(
                f"{API}?action=nope&target=nope&createdAtGte=nope", headers=bearer(tokens.admin)
            ),
            400,
        )
        assert len(body["details"]) == 3


class TestAuthentication:
    def test_missing_token(self, client) -> None:
        response = client.get(API)
        assert assert_error(response, 401)["error"] == "missing bearer token"
        assert response.headers["www-authenticate"] == 'Bearer realm="auditcli"'

    @pytest.mark.parametrize(
        "header",
        [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            "Token audit_" + "a" * 43,
            "Bearer audit_short",
            "Bearer " + "x" * 49,
            "Bearer audit_" + "a" * 42 + "!",
        ],
    )
    def test_malformed_header_or_token(self, client, header) -> None:
        response = client.get(API, headers={"Authorization": header})
        assert "malformed" in assert_error(response, 401)["error"]
        assert (
            response.headers["www-authenticate"] == 'Bearer realm="auditcli", error="invalid_token"'
        )

    def test_unknown_token(self, client) -> None:
        response = client.get(API, headers=bearer("audit_" + "A" * 43))
        assert assert_error(response, 401)["error"] == "invalid bearer token"
        assert 'error="invalid_token"' in response.headers["www-authenticate"]

    def test_scheme_is_case_insensitive(self, client, tokens) -> None:
        response = client.get(API, headers={"Authorization": f"bearer {tokens.admin}"})
        assert response.status_code == 200

    def test_two_authorization_headers(self, client, tokens) -> None:
        headers = [
            ("Authorization", f"Bearer {tokens.admin}"),
            ("Authorization", f"Bearer {tokens.admin2}"),
        ]
        assert "more than once" in assert_error(client.get(API, headers=headers), 401)["error"]

    def test_expired_token(self, client, tokens) -> None:
        response = client.get(API, headers=bearer(tokens.expired))
        assert "expired" in assert_error(response, 401)["error"]
        assert "www-authenticate" in response.headers

    def test_deleted_token_stops_working_at_once(self, client, tokens, store) -> None:
        assert client.get(API, headers=bearer(tokens.admin2)).status_code == 200
        AccountStore(store).delete("admin-2", actor=ACTOR)
        response = client.get(API, headers=bearer(tokens.admin2))
        assert assert_error(response, 401)["error"] == "invalid bearer token"

    def test_member_role_is_forbidden(self, client, tokens) -> None:
        response = client.get(API, headers=bearer(tokens.member))
        assert "role admin" in assert_error(response, 403)["error"]
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]

    def test_authentication_comes_before_parameter_checks(self, client, tokens) -> None:
        # An unauthenticated caller learns nothing, not even which parameters are valid.
        assert_error(client.get(f"{API}?limit=0&action=nope"), 401)
        assert_error(client.get(f"{API}?limit=0&action=nope", headers=bearer(tokens.member)), 403)

    def test_token_sees_only_its_organization(self, client, tokens, store) -> None:
        body = assert_page(
            client.get(API, params={"limit": 100}, headers=bearer(tokens.admin2)), 100, 0
        )
        assert body["logs"] == expected(store.root, "org-2")
        assert {e["organizationId"] for e in body["logs"]} == {"org-2"}
        one = assert_page(
            client.get(API, params={"limit": 100}, headers=bearer(tokens.admin)), 100, 0
        )
        assert {e["organizationId"] for e in one["logs"]} == {"org-1"}
        assert one["total"] == len(expected(store.root, "org-1"))

    def test_org1_actor_filter_does_not_leak_org2(self, client, tokens, store) -> None:
        org2_only = {
            e["actorId"] for e in stored_entries(store.root) if e["organizationId"] == "org-2"
        }
        for actor in org2_only:
            body = client.get(
                API, params={"actorId": actor, "limit": 100}, headers=bearer(tokens.admin)
            ).json()
            assert all(e["organizationId"] == "org-1" for e in body["logs"])


class TestOtherRoutesAndFailures:
    @pytest.mark.parametrize(
        "path", ["/", "/api/v1/audit-log", "/api/v1/audit-logs/x", "/docs", "/redoc"]
    )
    def test_404(self, client, tokens, path) -> None:
        assert (
            assert_error(client.get(path, headers=bearer(tokens.admin)), 404)["error"]
            == "not found"
        )

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
    def test_405_names_the_allowed_method(self, client, tokens, method) -> None:
        response = client.request(method, API, headers=bearer(tokens.admin))
        assert assert_error(response, 405)["error"] == "method not allowed"
        assert response.headers["allow"] == "GET, HEAD"

    def test_unexpected_failure_is_a_bare_500(self, env, monkeypatch) -> None:
        _store, tokens, client = env

        def boom(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("secret internals /etc/shadow")

        monkeypatch.setattr("auditcli.query.QueryEngine.page", boom)
        response = client.get(API, headers=bearer(tokens.admin))
        body = assert_error(response, 500)
        assert body == {"error": "internal server error", "details": []}
        assert "secret" not in response.text

    def test_damaged_accounts_file_is_a_500_without_details(self, client, tokens, store) -> None:
        path = store.root / "_accounts" / "accounts.json"
        path.write_bytes(b"{not json")
        body = assert_error(client.get(API, headers=bearer(tokens.admin)), 500)
        assert "server log" in body["error"] and str(path) not in body["error"]


class TestOpenAPI:
    def test_schema_documents_endpoint_parameters_entry_and_errors(self, client) -> None:
        schema = client.get("/openapi.json").json()
        operation = schema["paths"][API]["get"]
        params = {p["name"]: p for p in operation["parameters"]}
        assert list(params) == [
            "limit",
            "offset",
            "createdAtGte",
            "createdAtLte",
            "action",
            "target",
            "actorId",
        ]
        assert {"minimum": 1, "maximum": 100, "default": 20}.items() <= params["limit"][
            "schema"
        ].items()
        assert params["offset"]["schema"]["minimum"] == 0
        assert all(p["in"] == "query" and p["description"] for p in params.values())
        assert set(operation["responses"]) == {
            "200",
            "400",
            "401",
            "403",
            "404",
            "405",
            "500",
            "503",
        }
        assert operation["security"] == [{"HTTPBearer": []}]
        components = schema["components"]
        assert components["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        entry = components["schemas"]["Entry"]
        assert list(entry["properties"]) == list(SEED_FIELDS)
        assert all(prop.get("description") for prop in entry["properties"].values())
        page = components["schemas"]["AuditLogPage"]
        assert list(page["properties"]) == ["total", "limit", "offset", "logs"]
        assert set(components["schemas"]["ErrorBody"]["properties"]) == {"error", "details"}
        for code in ("400", "401", "403", "404", "405", "500"):
            ref = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody")
        assert "HTTPValidationError" not in components["schemas"]


# ----------------------------------------------------------------------------- accounts (core)
class TestAccounts:
    def test_token_is_shown_once_and_only_its_hash_is_stored(self, tmp_path) -> None:
        accounts = AccountStore(AuditStore(tmp_path / "logs"))
        account, token = accounts.create("ci", "org-1", "admin", actor=ACTOR)
        assert TOKEN_RE.match(token)
        raw = accounts.path.read_text()
        assert token not in raw and token[6:] not in raw
        assert account.token_hash in raw and account.token_hash.startswith("sha256:")
        assert stat.S_IMODE(accounts.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(accounts.directory.stat().st_mode) == 0o700
        assert accounts.authenticate(token) == account

    def test_tokens_differ(self, tmp_path) -> None:
        accounts = AccountStore(AuditStore(tmp_path / "logs"))
        tokens = {accounts.create(f"a{n}", "org-1", "admin", actor=ACTOR)[1] for n in range(5)}
        assert len(tokens) == 5

    def test_create_and_delete_are_recorded_in_the_log(self, tmp_path) -> None:
        store = AuditStore(tmp_path / "logs")
        accounts = AccountStore(store)
        actor = {"actorId": "alice", "actorEmail": "alice@example.com", "actorName": None}
        account, token = accounts.create("siem", "org-9", "member", actor=actor, expires="30d")
        accounts.delete("siem", actor=actor)
        created, deleted = stored_entries(store.root)
        for entry, action in (
            (created, "service_account_created"),
            (deleted, "service_account_deleted"),
        ):
            assert entry["action"] == action
            assert entry["target"] == "SERVICE_ACCOUNT"
            assert entry["targetId"] == account.id
            assert entry["organizationId"] == "org-9"
            assert entry["actorId"] == "alice" and entry["actorEmail"] == "alice@example.com"
            assert entry["metadata"] == {
                "name": "siem",
                "role": "member",
                "expiresAt": account.expires_at,
            }
            assert token not in json.dumps(entry) and account.token_hash not in json.dumps(entry)
        assert created["description"] == "alice@example.com created service account siem"
        assert deleted["description"] == "alice@example.com deleted service account siem"
        assert accounts.accounts() == ()

    @pytest.mark.parametrize(
        ("name", "org", "role", "message"),
        [
            ("bad name", "org-1", "admin", "name 'bad name'"),
            ("-x", "org-1", "admin", "name '-x'"),
            ("ok", "org-1", "owner", "--role"),
            ("ok", " ", "admin", "--org-id"),
        ],
    )
    def test_invalid_create_is_refused_and_not_recorded(
        self, tmp_path, name, org, role, message
    ) -> None:
        store = AuditStore(tmp_path / "logs")
        with pytest.raises(UsageError, match=re.escape(message)):
            AccountStore(store).create(name, org, role, actor=ACTOR)
        assert stored_entries(store.root) == []

    def test_duplicate_name_is_refused(self, tmp_path) -> None:
        accounts = AccountStore(AuditStore(tmp_path / "logs"))
        accounts.create("ci", "org-1", "admin", actor=ACTOR)
        with pytest.raises(UsageError, match="already exists"):
            accounts.create("ci", "org-2", "admin", actor=ACTOR)
        assert len(stored_entries(accounts.store.root)) == 1

    def test_delete_unknown(self, tmp_path) -> None:
        with pytest.raises(UsageError, match="no service account named 'x'"):
            AccountStore(AuditStore(tmp_path / "logs")).delete("x", actor=ACTOR)

    @pytest.mark.parametrize(
        ("text", "result"),
        [
            ("12h", "2026-11-25T20:00:00.000Z"),
            ("90d", "2027-02-23T08:00:00.000Z"),
            ("2w", "2026-12-09T08:00:00.000Z"),
            ("1y", "2027-11-25T08:00:00.000Z"),
            ("3mo", "2027-02-25T08:00:00.000Z"),
            ("15m", "2026-11-25T08:15:00.000Z"),
            ("1 week", "2026-12-02T08:00:00.000Z"),
            ("never", None),
            ("2026-12-31", "2026-12-31T23:59:59.999Z"),
            ("2027-01-01T00:00:00+01:00", "2026-12-31T23:00:00.000Z"),
        ],
    )
    def test_expiry_forms(self, text, result) -> None:
        assert parse_expiry(text, "2026-11-25T08:00:00.000Z") == result

    @pytest.mark.parametrize(
        "text", ["0d", "-3d", "2 hours ago", "3x", "2026-11-01", "2026-13-01", "soon"]
    )
    def test_bad_expiry(self, text) -> None:
        with pytest.raises(UsageError, match="--expires"):
            parse_expiry(text, "2026-11-25T08:00:00.000Z")

    def test_writable_accounts_file_is_refused(self, tmp_path) -> None:
        accounts = AccountStore(AuditStore(tmp_path / "logs"))
        _, token = accounts.create("ci", "org-1", "admin", actor=ACTOR)
        os.chmod(accounts.path, 0o666)
        with pytest.raises(IntegrityError, match="writable by group or others"):
            accounts.authenticate(token)

    def test_authentication_failures(self, tmp_path) -> None:
        accounts = AccountStore(AuditStore(tmp_path / "logs"))
        for token, message in (
            (None, "missing"),
            ("", "missing"),
            ("nope", "malformed"),
            ("audit_" + "b" * 43, "invalid"),
        ):
            with pytest.raises(TokenError, match=message):
                accounts.authenticate(token)

    def test_concurrent_creates_lose_nothing(self, tmp_path) -> None:
        root = tmp_path / "logs"
        errors: list[BaseException] = []

        def create(n: int) -> None:
            try:
                AccountStore(AuditStore(root)).create(f"sa-{n}", "org-1", "admin", actor=ACTOR)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        names = sorted(a.name for a in AccountStore(AuditStore(root)).accounts())
        assert names == sorted(f"sa-{n}" for n in range(8))
        assert len(stored_entries(root)) == 8


# ----------------------------------------------------------------------------- CLI
class TestServiceAccountCommands:
    @pytest.fixture(autouse=True)
    def _store(self, tmp_path) -> None:
        """The commands work on an existing log directory (`audit init`)."""
        init_store(tmp_path / "logs")

    def test_create_prints_the_token_alone_on_stdout(self, tmp_path) -> None:
        logs = str(tmp_path / "logs")
        result = runner.invoke(
            cli_app,
            [
                "-d",
                logs,
                "service-account",
                "create",
                "ci",
                "--org-id",
                "org-1",
                "--role",
                "admin",
                "--expires",
                "90d",
                "--actor-id",
                "ops-1",
            ],
        )
        assert result.exit_code == 0, result.output
        assert TOKEN_RE.match(result.stdout.strip()) and result.stdout.count("\n") == 1
        assert (
            "Created service account ci" in result.stderr
            and "shown only this once" in result.stderr
        )
        assert result.stdout.strip() not in result.stderr
        assert stored_entries(Path(logs))[0]["actorId"] == "ops-1"

    def test_actor_from_environment_then_login_name(self, tmp_path, monkeypatch) -> None:
        import getpass

        logs = str(tmp_path / "logs")
        args = ["-d", logs, "service-account", "create"]
        assert (
            runner.invoke(
                cli_app,
                [*args, "a", "--org-id", "o", "--role", "admin"],
                env={"AUDIT_ACTOR_ID": "from-env"},
            ).exit_code
            == 0
        )
        monkeypatch.delenv("AUDIT_ACTOR_ID", raising=False)
        assert (
            runner.invoke(cli_app, [*args, "b", "--org-id", "o", "--role", "admin"]).exit_code == 0
        )
        actors = [e["actorId"] for e in stored_entries(Path(logs))]
        assert actors == ["from-env", getpass.getuser()]

    def test_list_and_delete(self, tmp_path) -> None:
        logs = str(tmp_path / "logs")
        created = runner.invoke(
            cli_app,
            [
                "-d",
                logs,
                "service-account",
                "create",
                "ci",
                "--org-id",
                "org-1",
                "--role",
                "member",
            ],
        )
        token = created.stdout.strip()
        listed = runner.invoke(cli_app, ["-d", logs, "service-account", "list", "--format", "json"])
        assert listed.exit_code == 0
        (item,) = json.loads(listed.stdout)
        assert item["name"] == "ci" and item["role"] == "member" and item["status"] == "active"
        assert item["expiresAt"] is None and "tokenHash" not in item and token not in listed.stdout
        table = runner.invoke(cli_app, ["-d", logs, "service-account", "list"])
        assert table.exit_code == 0 and "ci" in table.stdout and "member" in table.stdout
        deleted = runner.invoke(cli_app, ["-d", logs, "service-account", "delete", "ci"])
        assert deleted.exit_code == 0 and "deleted service account ci" in deleted.stdout
        again = runner.invoke(cli_app, ["-d", logs, "service-account", "delete", "ci"])
        assert again.exit_code == 2 and "Error: no service account named 'ci'" in again.stderr
        assert (
            json.loads(
                runner.invoke(cli_app, ["-d", logs, "service-account", "list", "-f", "json"]).stdout
            )
            == []
        )

    @pytest.mark.parametrize(
        "extra",
        [["--role", "owner"], ["--role", "admin", "--expires", "yesterday"], []],
    )
    def test_bad_create_exits_2(self, tmp_path, extra) -> None:
        result = runner.invoke(
            cli_app,
            [
                "-d",
                str(tmp_path / "logs"),
                "service-account",
                "create",
                "ci",
                "--org-id",
                "o",
                *extra,
            ],
        )
        assert result.exit_code == 2 and result.stdout == ""


class TestServeCommand:
    """`audit serve`'s own decisions, with uvicorn.run replaced by a recorder."""

    @pytest.fixture
    def runs(self, monkeypatch, tmp_path) -> list[dict[str, Any]]:
        import uvicorn

        calls: list[dict[str, Any]] = []
        monkeypatch.setattr(
            uvicorn, "run", lambda app, **options: calls.append({"app": app, **options})
        )
        init_store(tmp_path / "logs")  # serve reads an existing log directory
        return calls

    def test_binds_loopback_by_default_and_says_where(self, tmp_path, runs) -> None:
        result = runner.invoke(cli_app, ["-d", str(tmp_path / "logs"), "serve"])
        assert result.exit_code == 0, result.output
        (call,) = runs
        assert (call["host"], call["port"]) == ("127.0.0.1", 8080)
        assert call["server_header"] is False and call["proxy_headers"] is False
        assert "http://127.0.0.1:8080/api/v1/audit-logs" in result.stderr
        assert "no admin service account yet" in result.stderr
        assert "plain HTTP" not in result.stderr

    def test_public_address_without_tls_warns(self, tmp_path, runs) -> None:
        result = runner.invoke(
            cli_app, ["-d", str(tmp_path / "logs"), "serve", "--host", "0.0.0.0"]
        )
        assert result.exit_code == 0 and "tokens cross the network in clear" in result.stderr

    def test_tls_needs_both_files(self, tmp_path, runs) -> None:
        result = runner.invoke(
            cli_app,
            ["-d", str(tmp_path / "logs"), "serve", "--ssl-certfile", str(tmp_path / "c.pem")],
        )
        assert result.exit_code == 2 and "go together" in result.stderr and runs == []

    def test_workers_use_the_factory_over_the_same_directory(
        self, tmp_path, runs, monkeypatch
    ) -> None:
        from auditcli.server import app_from_environment

        store, tokens = _make_store(tmp_path / "logs")
        # setenv first so that monkeypatch restores the variable `serve` sets for its workers.
        monkeypatch.setenv("AUDIT_LOG_DIR", "unused")
        monkeypatch.delenv("AUDIT_LOG_DIR")
        result = runner.invoke(cli_app, ["-d", str(store.root), "serve", "--workers", "2"])
        assert result.exit_code == 0, result.output
        (call,) = runs
        assert call["app"] == "auditcli.server:app_from_environment" and call["factory"] is True
        assert call["workers"] == 2 and os.environ["AUDIT_LOG_DIR"] == str(store.root)
        client = TestClient(app_from_environment())
        assert client.get(API, headers=bearer(tokens.admin)).json()["total"] == len(
            expected(store.root, "org-1")
        )


# ----------------------------------------------------------------------------- the real server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m auditcli -d ROOT serve` on a free loopback port, output captured to a file."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("AUDIT_LOG_DIR", None)
        self.output = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "auditcli", "-d", str(root), "serve", "--port", str(self.port)],
            stdout=self.output,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(self.url + "/openapi.json", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start:\n" + log.read_text())
            time.sleep(0.1)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.process.kill()
                self.process.wait()
        self.output.close()
        return self.log.read_text()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Tokens]]:
    base = tmp_path_factory.mktemp("live")
    _, tokens = _make_store(base / "logs")
    server = Server(base / "logs", base / "server.log")
    try:
        yield server, tokens
    finally:
        server.stop()


class TestRealServer:
    def test_binds_loopback_only_by_default(self, live) -> None:
        server, _ = live
        text = server.log.read_text()
        assert f"Uvicorn running on http://127.0.0.1:{server.port}" in text
        assert "Serving" in text

    def test_seed_curl_example(self, live) -> None:
        server, tokens = live
        response = httpx.get(
            f"{server.url}{API}?limit=50&action=login", headers=bearer(tokens.admin)
        )
        body = assert_page(response, 50, 0)
        oracle = expected(server.root, "org-1", action="login")
        assert body["total"] == len(oracle) and body["logs"] == oracle[:50]

    def test_every_parameter_over_http(self, live) -> None:
        server, tokens = live
        params = {
            "limit": 3,
            "offset": 1,
            "createdAtGte": "2026-11-06T10:00:02Z",
            "createdAtLte": "2026-11-08T10:00:10Z",
            "action": "login",
            "target": "USER",
            "actorId": "user-2",
        }
        body = assert_page(
            httpx.get(server.url + API, params=params, headers=bearer(tokens.admin)), 3, 1
        )
        oracle = expected(
            server.root,
            "org-1",
            action="login",
            target="USER",
            actorId="user-2",
            gte="2026-11-06T10:00:02.000Z",
            lte="2026-11-08T10:00:10.000Z",
        )
        assert body["total"] == len(oracle) and body["logs"] == oracle[1:4]

    def test_status_codes_over_http(self, live) -> None:
        server, tokens = live
        url = server.url + API
        assert_error(httpx.get(url), 401)
        assert_error(httpx.get(url, headers=bearer("audit_" + "Z" * 43)), 401)
        assert_error(httpx.get(url, headers=bearer(tokens.expired)), 401)
        assert_error(httpx.get(url, headers=bearer(tokens.member)), 403)
        assert_error(httpx.get(url + "?limit=101", headers=bearer(tokens.admin)), 400)
        assert_error(
            httpx.get(server.url + "/api/v2/audit-logs", headers=bearer(tokens.admin)), 404
        )
        response = httpx.post(url, headers=bearer(tokens.admin))
        assert_error(response, 405)
        assert response.headers["allow"] == "GET, HEAD"
        assert "server" not in response.headers  # no version banner
        schema = httpx.get(server.url + "/openapi.json").json()
        assert API in schema["paths"]

    def test_concurrent_clients_while_entries_are_appended(self, live) -> None:
        """4 clients page through the API while another process appends: every answer is
        whole, ordered and made of real entries, totals only grow, and the end state is exact."""
        server, tokens = live
        before = httpx.get(server.url + API, headers=bearer(tokens.admin)).json()["total"]
        appends = 150
        writer = subprocess.Popen(
            [sys.executable, "-c", _APPENDER, str(server.root), str(appends)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        failures: list[str] = []
        totals: dict[int, list[int]] = {}
        pages: list[list[dict[str, Any]]] = []

        def client(number: int) -> None:
            seen: list[int] = []
            with httpx.Client(
                base_url=server.url, headers=bearer(tokens.admin), timeout=20
            ) as http:
                # Bounded: at least 10 requests, then on until the writer is done (at most 400).
                for n in range(400):
                    if n >= 10 and writer.poll() is not None:
                        break
                    response = http.get(API, params={"limit": 100, "offset": 0})
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text}")
                        return
                    body = response.json()
                    keys = [(e["createdAt"], e["id"]) for e in body["logs"]]
                    if keys != sorted(keys, reverse=True) or len(set(keys)) != len(keys):
                        failures.append("page out of order or with duplicates")
                    if len(body["logs"]) != min(100, body["total"]):
                        failures.append(
                            f"{len(body['logs'])} entries for a total of {body['total']}"
                        )
                    seen.append(body["total"])
                    pages.append(body["logs"])
            totals[number] = seen

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        _out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()
        assert not failures, failures[:3]
        assert len(totals) == 4
        for seen in totals.values():  # only appends happen: a total never goes down
            assert seen == sorted(seen) and before <= seen[0] and seen[-1] <= before + appends
        # The clients really ran while the log grew.
        assert len({total for seen in totals.values() for total in seen}) > 2
        final = httpx.get(
            server.url + API, params={"limit": 100}, headers=bearer(tokens.admin)
        ).json()
        oracle = expected(server.root, "org-1")
        assert final["total"] == before + appends == len(oracle)
        assert final["logs"] == oracle[:100]
        by_id = {entry["id"]: entry for entry in oracle}
        for page in pages:  # nothing torn, invented or altered was ever served
            assert all(by_id.get(entry["id"]) == entry for entry in page)

    def test_deleting_an_account_revokes_it_on_the_running_server(self, live) -> None:
        server, _tokens = live
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "auditcli",
                "-d",
                str(server.root),
                "service-account",
                "create",
                "short-lived",
                "--org-id",
                "org-1",
                "--role",
                "admin",
            ],
            capture_output=True,
            check=True,
        )
        token = created.stdout.decode().strip()
        assert httpx.get(server.url + API, headers=bearer(token)).status_code == 200
        subprocess.run(
            [
                sys.executable,
                "-m",
                "auditcli",
                "-d",
                str(server.root),
                "service-account",
                "delete",
                "short-lived",
            ],
            capture_output=True,
            check=True,
        )
        assert_error(httpx.get(server.url + API, headers=bearer(token)), 401)

    def test_tokens_never_reach_the_server_log(self, live) -> None:
        server, tokens = live
        for token in (tokens.admin, tokens.member, tokens.expired):
            httpx.get(server.url + API, headers=bearer(token))
        time.sleep(0.2)
        text = server.log.read_text()
        assert '"GET /api/v1/audit-logs HTTP/1.1" 200' in text  # the access log is on
        for token in (tokens.admin, tokens.admin2, tokens.member, tokens.expired):
            assert token not in text and token[6:20] not in text
        assert "authorization" not in text.lower() and "Bearer" not in text


_APPENDER = """
import sys
from auditcli.store import AuditStore
store = AuditStore(sys.argv[1], writer_id="appender")
for n in range(int(sys.argv[2])):
    store.record({"action": "login", "actorId": f"live-{n}", "organizationId": "org-1",
                  "metadata": {"n": n}})
"""


def test_openapi_json_is_plain_json(env) -> None:
    _, _, client = env
    response = client.get("/openapi.json")
    assert response.status_code == 200 and orjson.loads(response.content)["openapi"].startswith(
        "3."
    )
