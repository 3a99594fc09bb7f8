#!/usr/bin/env python3
"""`audit serve` under load: requests/s and p50/p99 latency for pages of 20 and 100 from a
1M-entry store, against DuckDB answering the same queries in-process. Run on demand:

    python benchmarks/bench_server.py                 # defaults below
    python benchmarks/bench_server.py --workers 1 --seconds 3 --requests 50

Data: /tmp/benchdata/logs (reused when it holds partitions; otherwise made from
/tmp/benchdata/flat.jsonl, itself generated when missing, with benchmarks/gen_entries.py
--entries 1000000 --days 30). The benchmark never writes to that store: its token lives in a
separate accounts directory, so the shared data set stays untouched.

What is measured, per query (always scoped to the token's organization, org-456, as every API
request is):
  * server: the real app on uvicorn in a separate process over loopback HTTP, access log off.
    `cold` is the first request after start (nothing cached); `p50`/`p99` from sequential
    requests by one client; `req/s` from several client threads for a fixed time.
  * duckdb-table: the 1M entries loaded once into an in-memory DuckDB table (load time shown);
    per request a count(*) and an ORDER BY createdAt DESC, id DESC LIMIT/OFFSET query, then the
    same JSON response built with orjson (what an API backed by DuckDB would do).
  * duckdb-files: DuckDB's read_ndjson over the store's files for every request (no preload).
Every DuckDB answer is checked against the server's: same total, same ids in the same order.

`--load` measures the server as issue #15 states its targets, while a separate process appends
100 entries/s to the store (so give `--store` a COPY: it is written to), after `--preload`
entries were appended to today's file at once (deep offsets then fall inside the file being
appended to). The clients are raw-socket HTTP/1.1 keep-alive clients, one process each; every
row has p50, p99 and the server's own CPU time per request (from /proc):
  * one client paging at offsets from 0 to the last page (one worker);
  * a page of 50 at offset 0 from `--clients` clients at once, each asking as fast as it can,
    then each `--pace` times a second; with each worker count of `--workers`;
  * mixed queries (every query above, random offsets) for `--mixed-seconds` (one worker), with
    the server's resident memory (VmRSS) after each minute and its peak (VmHWM).

    python benchmarks/bench_server.py --load --store /tmp/me/logs --clients 8 --seconds 15 \
        --requests 50 --mixed-seconds 120
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path("/tmp/benchdata")
GEN = Path(__file__).resolve().parent / "gen_entries.py"
ORG = "org-456"
API = "/api/v1/audit-logs"
FIELDS = (
    "id", "description", "actorId", "actorName", "actorEmail", "action", "actionDisplayName",
    "target", "targetId", "metadata", "organizationId", "teamId", "createdAt",
)  # fmt: skip


@dataclass(frozen=True)
class Query:
    """One API request and its SQL twin."""

    name: str
    params: dict[str, Any]

    @property
    def limit(self) -> int:
        return int(self.params.get("limit", 20))

    @property
    def offset(self) -> int:
        return int(self.params.get("offset", 0))


QUERIES = (
    Query("page of 20 (newest)", {"limit": 20}),
    Query("page of 100 (newest)", {"limit": 100}),
    Query("page of 100, offset 1000", {"limit": 100, "offset": 1000}),
    Query("action=role_updated, 20", {"limit": 20, "action": "role_updated"}),
    Query(
        "one day, 100",
        {
            "limit": 100,
            "createdAtGte": "2026-10-25T00:00:00Z",
            "createdAtLte": "2026-10-25T23:59:59.999Z",
        },
    ),
)


@dataclass
class Result:
    """Timings of one (engine, query)."""

    engine: str
    query: str
    latencies: list[float] = field(default_factory=list)
    rps: float | None = None
    cold: float | None = None
    note: str = ""

    def row(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
        rps = f"{self.rps:.1f}" if self.rps is not None else "–"
        cold = f"{self.cold * 1000:.0f}" if self.cold is not None else "–"
        cells = (self.engine, self.query, cold, f"{p50:.1f}", f"{p99:.1f}", rps, self.note)
        return "| " + " | ".join(cells) + " |"


# ----------------------------------------------------------------------------- data
def ensure_data(root: Path) -> None:
    """Reuse the store when it has partitions; otherwise generate and import (lock-free: a
    helper running the same commands at the same time makes the same files)."""
    if root.is_dir() and any(p.name.startswith("date=") for p in root.iterdir()):
        return
    flat = DATA / "flat.jsonl"
    if not flat.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(GEN), "--entries", "1000000", "--days", "30", "--out", str(flat)],
            check=True,
        )
    subprocess.run(
        [sys.executable, "-m", "auditcli", "-d", str(root), "import", str(flat)], check=True
    )


def make_token(accounts_root: Path) -> str:
    """An admin token for ORG in a private accounts directory (never in the shared store)."""
    from auditcli.accounts import AccountStore
    from auditcli.store import AuditStore

    accounts = AccountStore(AuditStore(accounts_root))
    return accounts.create("bench", ORG, "admin", actor={"actorId": "bench"})[1]


# ----------------------------------------------------------------------------- the server
def make_app() -> Any:
    """uvicorn's factory in each worker: the bench store, the private accounts directory."""
    from auditcli.accounts import AccountStore
    from auditcli.server import create_app
    from auditcli.store import AuditStore

    accounts = AccountStore(AuditStore(os.environ["BENCH_ACCOUNTS"]))
    return create_app(AuditStore(os.environ["BENCH_STORE"]), accounts=accounts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    root: Path, accounts_root: Path, workers: int
) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "BENCH_STORE": str(root),
        "BENCH_ACCOUNTS": str(accounts_root),
        "PYTHONPATH": str(Path(__file__).resolve().parent),
    }
    code = (
        "import uvicorn; uvicorn.run('bench_server:make_app', factory=True, host='127.0.0.1', "
        f"port={port}, workers={workers}, access_log=False, log_level='warning')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/openapi.json", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


def bench_server(
    root: Path, accounts_root: Path, token: str, workers: int, args: argparse.Namespace
) -> tuple[list[Result], dict[str, Any]]:
    import httpx

    process, url = start_server(root, accounts_root, workers)
    headers = {"Authorization": f"Bearer {token}"}
    results, answers = [], {}
    engine = f"audit serve ({workers} worker{'s' if workers > 1 else ''})"
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            for query in QUERIES:
                result = Result(engine, query.name)
                start = time.perf_counter()
                response = client.get(API, params=query.params)
                result.cold = time.perf_counter() - start
                response.raise_for_status()
                answers[query.name] = response.json()
                # Each worker keeps its own counts: warm every one of them.
                for _ in range(3 * workers):
                    client.get(API, params=query.params).raise_for_status()
                for _ in range(args.requests):
                    start = time.perf_counter()
                    client.get(API, params=query.params).raise_for_status()
                    result.latencies.append(time.perf_counter() - start)
                result.rps = _throughput(url, token, query, args.clients, args.seconds)
                result.note = f"{args.clients} clients for req/s"
                results.append(result)
                print(result.row(), flush=True)
    finally:
        print(f"server peak RSS: {_peak_rss_mb(process.pid):.0f} MB", flush=True)
        process.terminate()
        process.wait(timeout=30)
    return results, answers


def _peak_rss_mb(pid: int) -> float:
    """The peak resident set of a process and its children (uvicorn's workers), in MB."""
    return _memory(pid)["VmHWM"]


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


def _throughput(url: str, token: str, query: Query, clients: int, seconds: float) -> float:
    """Requests a second of `clients` client processes asking for `query` for `seconds`."""
    port = int(url.rsplit(":", 1)[1])
    latencies = _clients(port, token, clients, seconds, f"query:{QUERIES.index(query)}")
    return len(latencies) / seconds


# ----------------------------------------------------------------------------- DuckDB
_COLUMNS = (
    "{'id':'VARCHAR','description':'VARCHAR','actorId':'VARCHAR','actorName':'VARCHAR',"
    "'actorEmail':'VARCHAR','action':'VARCHAR','actionDisplayName':'VARCHAR','target':'VARCHAR',"
    "'targetId':'VARCHAR','metadata':'JSON','organizationId':'VARCHAR','teamId':'VARCHAR',"
    "'createdAt':'VARCHAR'}"
)


def _where(query: Query) -> tuple[str, list[Any]]:
    clauses, values = ["organizationId = ?"], [ORG]
    for param, column, op in (
        ("action", "action", "="),
        ("target", "target", "="),
        ("actorId", "actorId", "="),
        ("createdAtGte", "createdAt", ">="),
        ("createdAtLte", "createdAt", "<="),
    ):
        if param in query.params:
            value = query.params[param]
            if param.startswith("createdAt"):  # the stored form: millisecond precision, Z
                from auditcli.timeparse import parse_bound

                value = parse_bound(value, end=param.endswith("Lte"))
            clauses.append(f"{column} {op} ?")
            values.append(value)
    return " AND ".join(clauses), values


def duckdb_answer(con: Any, source: str, query: Query) -> bytes:
    """The API's response bytes, computed by DuckDB plus orjson."""
    import orjson

    where, values = _where(query)
    total = con.execute(f"SELECT count(*) FROM {source} WHERE {where}", values).fetchone()[0]
    rows = con.execute(
        f"SELECT {', '.join(FIELDS)} FROM {source} WHERE {where} "
        "ORDER BY createdAt DESC, id DESC LIMIT ? OFFSET ?",
        [*values, query.limit, query.offset],
    ).fetchall()
    meta = FIELDS.index("metadata")
    logs = []
    for row in rows:
        entry = dict(zip(FIELDS, row, strict=True))
        if row[meta] is not None:
            entry["metadata"] = orjson.Fragment(row[meta])
        logs.append(entry)
    return orjson.dumps(
        {"total": total, "limit": query.limit, "offset": query.offset, "logs": logs}
    )


def bench_duckdb(
    root: Path, answers: dict[str, Any], args: argparse.Namespace
) -> tuple[list[Result], str]:
    import duckdb
    import orjson

    from auditcli.store import AuditStore

    store = AuditStore(root)
    files = [str(f.path) for day in store.days() for f in store.files(day)]
    file_list = "[" + ",".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    reader = f"read_ndjson({file_list}, columns={_COLUMNS}, format='newline_delimited')"
    results = []
    con = duckdb.connect()
    start = time.perf_counter()
    con.execute(f"CREATE TABLE audit AS SELECT * FROM {reader}")
    load = time.perf_counter() - start
    rows = con.execute("SELECT count(*) FROM audit").fetchone()[0]
    print(f"duckdb: loaded {rows} entries from {len(files)} files in {load:.1f} s", flush=True)
    for engine, source, runs in (
        ("duckdb-table (in-memory)", "audit", args.requests),
        ("duckdb-files (read_ndjson)", reader, args.file_runs),
    ):
        for query in QUERIES:
            result = Result(engine, query.name)
            start = time.perf_counter()
            body = duckdb_answer(con, source, query)
            result.cold = time.perf_counter() - start
            mine = answers.get(query.name)
            if mine is not None:
                theirs = orjson.loads(body)
                same = theirs["total"] == mine["total"] and [e["id"] for e in theirs["logs"]] == [
                    e["id"] for e in mine["logs"]
                ]
                result.note = "same answer as the server" if same else "DIFFERENT ANSWER"
            for _ in range(runs):
                start = time.perf_counter()
                duckdb_answer(con, source, query)
                result.latencies.append(time.perf_counter() - start)
            result.rps = len(result.latencies) / sum(result.latencies)
            result.note += "; req/s = sequential, in-process"
            results.append(result)
            print(result.row(), flush=True)
    return results, f"duckdb: loaded {rows} entries from {len(files)} files in {load:.1f} s"


# ----------------------------------------------------------------------------- under load
APPENDER = """
import signal, sys, time
from auditcli.store import AuditStore
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
store, rate = AuditStore(sys.argv[1]), float(sys.argv[2])
n, start = 0, time.monotonic()
try:
    while True:
        store.record({"action": "login", "actorId": f"load-{n % 50}", "organizationId": "org-456"})
        n += 1
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
finally:
    print(f"{n} in {time.monotonic() - start:.0f} s", flush=True)
"""


def _memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process and its children (uvicorn's workers), in MB."""
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    for task in [pid, *_children(pid)]:
        for line in Path(f"/proc/{task}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in found:
                found[key] += int(value.split()[0]) / 1024
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far, from /proc."""
    total = 0.0
    for task in [pid, *_children(pid)]:
        fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class RawClient:
    """An HTTP/1.1 keep-alive client on a plain socket: a request costs the client a send and
    a recv or two, so the clients leave the cores to the server (httpx in Python threads took
    about as much CPU as the server it measured)."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        self.pending = b""

    def get(self, params: dict[str, Any]) -> bytes:
        """The body of `GET API?params`; RuntimeError unless the status is 200."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        self.sock.sendall(f"GET {API}?{query} HTTP/1.1\r\n".encode() + self.head)
        data = self.pending
        while (split := data.find(b"\r\n\r\n")) < 0:
            data += self._recv()
        head, body = data[:split], data[split + 4 :]
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += self._recv()
        self.pending = body[length:]
        if head[9:12] != b"200":
            raise RuntimeError(head.decode(errors="replace"))
        return body[:length]

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        return chunk


def _mixed(n: int, rng: Any, total: int) -> dict[str, Any]:
    """The n-th request of a mixed run: the five queries in turn, every third at a random
    offset."""
    params = dict(QUERIES[n % len(QUERIES)].params)
    if n % 3 == 0:
        params["offset"] = rng.randrange(0, total)
    return params


def _client(
    port: int, token: str, stop: float, pace: float, first: float, kind: str, seed: int, out: Any
) -> None:
    """One client process: requests until `stop` (time.time()), `pace` a second or as fast as
    it can; sends its latencies (seconds) on `out`."""
    import random

    rng, client, latencies = random.Random(seed), RawClient(port, token), []
    number = int(kind.partition(":")[2] or 0)  # the query's index, or the mixed run's total
    began = first
    while time.time() < stop:
        if pace:
            time.sleep(max(0.0, began - time.time()))
            began += 1 / pace
        if kind == "page":
            params: dict[str, Any] = {"limit": 50}
        elif kind.startswith("query:"):
            params = QUERIES[number].params
        else:
            params = _mixed(len(latencies), rng, number)
        start = time.perf_counter()
        client.get(params)
        latencies.append(time.perf_counter() - start)
    out.send(latencies)


def _clients(
    port: int, token: str, clients: int, seconds: float, kind: str, pace: float = 0
) -> list[float]:
    """Latencies of `clients` client processes (one each: no client waits on another's GIL)
    asking for `kind` for `seconds`: "page" (a page of 50 at offset 0), "query:N" (QUERIES[N])
    or "mixed:TOTAL" (see `_mixed`)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    now = time.time()
    stop = now + 0.5 + seconds
    pipes, processes = [], []
    for n in range(clients):
        mine, theirs = context.Pipe(duplex=False)
        first = now + 0.5 + (n / pace / clients if pace else 0)  # paced clients staggered
        args = (port, token, stop, pace, first, kind, n, theirs)
        processes.append(context.Process(target=_client, args=args))
        pipes.append(mine)
        processes[-1].start()
    latencies = [x for pipe in pipes for x in pipe.recv()]
    for process in processes:
        process.join()
    return latencies


def _stats(latencies: list[float]) -> tuple[float, float]:
    lat = sorted(latencies)
    return statistics.median(lat) * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000


def _preload(root: Path, entries: int) -> None:
    """`entries` logins of org-456 appended to today's file (a busy day so far), so that
    deep offsets fall inside the file being appended to."""
    from auditcli.store import AuditStore

    store = AuditStore(root)
    for first in range(0, entries, 5000):
        store.append(
            {"action": "login", "actorId": f"day-{n % 50}", "organizationId": ORG}
            for n in range(first, min(entries, first + 5000))
        )


def bench_load(root: Path, accounts_root: Path, token: str, args: argparse.Namespace) -> None:
    """The targets of issue #15 for `audit serve`, with one process appending meanwhile."""
    from run import machine

    _preload(root, args.preload)
    appender = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(root), "100"], stdout=subprocess.PIPE
    )
    rows: list[str] = []

    def row(name: str, workers: int, lat: list[float], cpu: float | None, target: str) -> None:
        p50, p99 = _stats(lat)
        cells = (name, str(workers), str(len(lat)), f"{p50:.1f}", f"{p99:.1f}")
        cpu_cell = f"{cpu * 1000:.2f}" if cpu is not None else "–"
        rows.append("| " + " | ".join((*cells, cpu_cell, target)) + " |")
        print(rows[-1], flush=True)

    try:
        print(f"machine: {machine()}", flush=True)
        for workers in (int(w) for w in args.workers.split(",") if w):
            process, url = start_server(root, accounts_root, workers)
            port = int(url.rsplit(":", 1)[1])
            try:
                client = RawClient(port, token)
                begin = time.perf_counter()
                total = orjson_total(client.get({"limit": 50}))
                print(
                    f"{workers} worker(s): first request {time.perf_counter() - begin:.2f} s, "
                    f"total {total}",
                    flush=True,
                )
                if workers == 1:
                    offsets = (0, 1000, args.preload // 2, total // 10, total // 2, total - 50)
                    for offset in offsets:
                        for _ in range(3):  # each worker's caches warm
                            client.get({"limit": 50, "offset": offset})
                        lat, cpu = [], _cpu_seconds(process.pid)
                        for _ in range(args.requests):
                            start = time.perf_counter()
                            client.get({"limit": 50, "offset": offset})
                            lat.append(time.perf_counter() - start)
                        cpu = (_cpu_seconds(process.pid) - cpu) / len(lat)
                        inside = " (today's file)" if offset < args.preload else ""
                        row(f"offset {offset:,}{inside}, 1 client", 1, lat, cpu, "p50 ≤ 50")
                else:
                    for _ in range(5 * workers):
                        client.get({"limit": 50})
                for pace, how in (
                    (0.0, "as fast as each can"),
                    (args.pace, f"{args.pace:g}/s each"),
                ):
                    cpu = _cpu_seconds(process.pid)
                    lat = _clients(port, token, args.clients, args.seconds, "page", pace)
                    cpu = (_cpu_seconds(process.pid) - cpu) / len(lat)
                    name = f"offset 0, {args.clients} clients, {how}"
                    row(name, workers, lat, cpu, "p50 ≤ 20, p99 ≤ 100")
                if workers == 1 and args.mixed_seconds:
                    memory_run(process.pid, port, token, total, args, row)
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        appender.terminate()
        appended = appender.communicate(timeout=30)[0].decode().strip()
    print(f"\nmachine: {machine()}; appended meanwhile: {appended} entries")
    print(
        "| requests (page of 50) | workers | n | p50 ms | p99 ms | server CPU ms/req | target ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


def memory_run(
    pid: int, port: int, token: str, total: int, args: argparse.Namespace, row: Any
) -> None:
    """Mixed queries from the clients for `--mixed-seconds`, in slices; the server's memory
    after each (the trend), its peak at the end."""
    print(f"memory before the mixed run: {_memory(pid)}", flush=True)
    slices = max(1, round(args.mixed_seconds / 60))
    lat: list[float] = []
    cpu = _cpu_seconds(pid)
    for number in range(slices):
        lat += _clients(
            port,
            token,
            args.clients,
            args.mixed_seconds / slices,
            f"mixed:{total}",
            args.mixed_pace,
        )
        memory = _memory(pid)
        print(
            f"  after {(number + 1) * args.mixed_seconds / slices:.0f} s: "
            f"RSS {memory['VmRSS']:.0f} MB, peak {memory['VmHWM']:.0f} MB",
            flush=True,
        )
    cpu = (_cpu_seconds(pid) - cpu) / len(lat)
    paced = f", {args.mixed_pace:g}/s each" if args.mixed_pace else ""
    title = f"mixed, {args.clients} clients{paced}, {args.mixed_seconds:.0f} s"
    row(title, 1, lat, cpu, "RSS ≤ 150 MB")


def orjson_total(body: bytes) -> int:
    """The `total` of an API answer."""
    import orjson

    return int(orjson.loads(body)["total"])


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=DATA / "logs")
    parser.add_argument("--requests", type=int, default=100, help="sequential requests per query")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each req/s run")
    parser.add_argument("--clients", type=int, default=4, help="client threads for req/s")
    parser.add_argument("--workers", default="1,2", help="server worker counts to run")
    parser.add_argument("--file-runs", type=int, default=3, help="runs of duckdb-files per query")
    parser.add_argument("--no-duckdb", action="store_true")
    parser.add_argument("--load", action="store_true", help="the #15 targets (writes --store)")
    parser.add_argument("--mixed-seconds", type=float, default=120.0, help="--load: mixed run")
    parser.add_argument("--pace", type=float, default=5.0, help="--load: requests/s per client")
    parser.add_argument(
        "--mixed-pace",
        type=float,
        default=0.0,
        help="--load: requests/s per client in the mixed run (default: as fast as each can)",
    )
    parser.add_argument(
        "--preload", type=int, default=20000, help="--load: entries appended to today first"
    )
    args = parser.parse_args()
    if args.load:
        print(f"store: {args.store}; machine: {os.cpu_count()} CPUs, shared and noisy", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-accounts-") as accounts_root:
            token = make_token(Path(accounts_root))
            bench_load(args.store, Path(accounts_root), token, args)
        return

    ensure_data(args.store)
    print(f"store: {args.store}; machine: {os.cpu_count()} CPUs, shared and noisy", flush=True)
    header = (
        "| engine | query | cold ms | p50 ms | p99 ms | req/s | notes |\n"
        "|---|---|---:|---:|---:|---:|---|"
    )
    print(header, flush=True)
    all_results: list[Result] = []
    answers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-accounts-") as accounts_root:
        token = make_token(Path(accounts_root))
        for workers in (int(w) for w in args.workers.split(",") if w):
            results, answers = bench_server(args.store, Path(accounts_root), token, workers, args)
            all_results.extend(results)
    loaded = ""
    if not args.no_duckdb:
        results, loaded = bench_duckdb(args.store, answers, args)
        all_results.extend(results)
    print("\n" + header)
    for result in all_results:
        print(result.row())
    print(f"\n{loaded}")
    totals = {name: answer["total"] for name, answer in answers.items()}
    print(f"\nmatches per query ({ORG}): {totals}")


if __name__ == "__main__":
    main()
