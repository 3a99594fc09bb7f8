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

`--load` measures the server as issue #15 states its targets, on one worker, while a separate
process appends 100 entries/s to the store (so give `--store` a COPY: it is written to):
  * a page of 50 at offset 0, asked for by 8 client threads at once: p50, p99, with each
    client asking as fast as it can, then with each asking `--pace` times a second;
  * one client paging at offsets from 0 to the last page: p50 per offset;
  * mixed queries (every query above, random offsets) from 8 clients for `--mixed-seconds`,
    then the server's resident memory (VmRSS) and its peak (VmHWM) from /proc.

    python benchmarks/bench_server.py --load --store /tmp/me/logs --mixed-seconds 300
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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
                result.rps = _throughput(url, headers, query, args.clients, args.seconds)
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
    total = 0
    for task in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{task}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


def _throughput(
    url: str, headers: dict[str, str], query: Query, clients: int, seconds: float
) -> float:
    import httpx

    done = [0] * clients
    stop = time.perf_counter() + seconds

    def run(n: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            while time.perf_counter() < stop:
                client.get(API, params=query.params).raise_for_status()
                done[n] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


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
until = time.monotonic() + float(sys.argv[3])
n, start = 0, time.monotonic()
try:
    while time.monotonic() < until:
        store.record({"action": "login", "actorId": f"load-{n % 50}", "organizationId": "org-456"})
        n += 1
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
finally:
    print(f"{n} in {time.monotonic() - start:.0f} s", flush=True)
"""


def _memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB, from /proc."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _clients(
    url: str, headers: dict[str, str], clients: int, seconds: float, pick: Any, pace: float = 0
) -> list[float]:
    """Latencies of requests made by `clients` threads for `seconds`, each asking for the
    params `pick(n)` gives (n: the thread's request count); with `pace`, each thread starts at
    most `pace` requests a second (users of a dashboard), else one as soon as the last ends."""
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def run(number: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            began = time.perf_counter() + number / max(pace, 1) / clients  # staggered
            while time.perf_counter() < stop:
                if pace:
                    began += 1 / pace
                    time.sleep(max(0.0, began - time.perf_counter()))
                params = pick(len(latencies[number]))
                start = time.perf_counter()
                client.get(API, params=params).raise_for_status()
                latencies[number].append(time.perf_counter() - start)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [x for one in latencies for x in one]


def _percentiles(latencies: list[float]) -> str:
    lat = sorted(latencies)
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(lat)} requests)"


def bench_load(root: Path, accounts_root: Path, token: str, args: argparse.Namespace) -> None:
    """The targets of issue #15 for `audit serve`, with one process appending meanwhile."""
    import random

    import httpx

    process, url = start_server(root, accounts_root, 1)
    headers = {"Authorization": f"Bearer {token}"}
    total_seconds = 60 + args.seconds * 2 + args.mixed_seconds
    appender = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(root), "100", str(total_seconds)],
        stdout=subprocess.PIPE,
    )
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
            start = time.perf_counter()
            first = client.get(API, params={"limit": 50}).json()
            print(
                f"first request (cold): {(time.perf_counter() - start) * 1000:.0f} ms; "
                f"total {first['total']}",
                flush=True,
            )
            total = first["total"]
            for offset in sorted({0, 1000, total // 10, total // 2, total - 50}):
                client.get(API, params={"limit": 50, "offset": offset}).raise_for_status()
                lat = []
                cpu = _cpu_seconds(process.pid)
                for _ in range(args.requests):
                    begin = time.perf_counter()
                    client.get(API, params={"limit": 50, "offset": offset}).raise_for_status()
                    lat.append(time.perf_counter() - begin)
                cpu = (_cpu_seconds(process.pid) - cpu) / args.requests * 1000
                print(
                    f"one client, page of 50 at offset {offset}: {_percentiles(lat)}; "
                    f"server CPU {cpu:.1f} ms a request",
                    flush=True,
                )
        for pace in (0.0, args.pace):
            lat = _clients(url, headers, args.clients, args.seconds, lambda n: {"limit": 50}, pace)
            how = f"each at {pace:g} requests/s" if pace else "each as fast as it can"
            print(f"{args.clients} clients ({how}), page of 50 at offset 0: {_percentiles(lat)}")
        mixed = [query.params for query in QUERIES]
        rng = random.Random(7)

        def pick(n: int) -> dict[str, Any]:
            params = dict(mixed[n % len(mixed)])
            if n % 3 == 0:
                params["offset"] = rng.randrange(0, total)
            return params

        print(f"server memory before the mixed run: {_memory(process.pid)}", flush=True)
        lat = _clients(url, headers, args.clients, args.mixed_seconds, pick)
        print(
            f"mixed queries, {args.clients} clients, {args.mixed_seconds:.0f} s: "
            f"{_percentiles(lat)}",
            flush=True,
        )
        print(f"server memory after: {_memory(process.pid)}", flush=True)
    finally:
        appender.terminate()
        appended = appender.communicate(timeout=30)[0].decode().strip()
        print(f"appended meanwhile: {appended or 'n/a (stopped)'} entries", flush=True)
        process.terminate()
        process.wait(timeout=30)


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
    parser.add_argument("--mixed-seconds", type=float, default=300.0, help="--load: mixed run")
    parser.add_argument("--pace", type=float, default=5.0, help="--load: requests/s per client")
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
