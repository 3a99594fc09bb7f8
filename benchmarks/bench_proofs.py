"""Benchmark evidence: seal time with and without the Merkle tree, `prove` of ~100
entries, `verify-bundle` of them, and the bytes of a bundle of ~40 entries.

    python benchmarks/bench_proofs.py --entries 200000          # data under /tmp/benchproofs

The store is made once with benchmarks/gen_entries.py and `audit import` (reused afterwards).
Seal timings run in-process on the same store: "without tree" is today's seal (the tree step
replaced by nothing), "with tree" the full seal; each is a first seal (every entry new) and an
incremental one (1,000 entries appended since the previous seal). `prove` and `verify-bundle`
are timed as the `audit` command (a new process, as a user runs it; warm page cache) and as the
core call. Medians of --runs runs. Prints one JSON object; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
AUDIT = str(Path(PY).with_name("audit"))


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median wall seconds of `runs` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def make_store(data: Path, entries: int, days: int) -> Path:
    logs = data / f"logs-{entries}x{days}"
    if logs.exists():
        return logs
    flat = data / f"flat-{entries}x{days}.jsonl"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            PY,
            str(HERE / "gen_entries.py"),
            "--entries",
            str(entries),
            "--days",
            str(days),
            "--seed",
            "42",
            "--out",
            str(flat),
        ],
        check=True,
    )
    subprocess.run(
        [AUDIT, "-d", str(logs), "import", str(flat)], check=True, stdout=subprocess.DEVNULL
    )
    return logs


def reset_seals(logs: Path) -> None:
    for name in ("_manifests", "_timestamps"):
        shutil.rmtree(logs / name, ignore_errors=True)
    shutil.rmtree(logs / "_index" / "merkle", ignore_errors=True)


def bench_seal(logs: Path, key: Path, runs: int) -> dict[str, float]:
    import importlib

    from auditcli.store import AuditStore

    seal_module = importlib.import_module("auditcli.integrity.seal")  # the module, not seal()

    def seal(store: AuditStore, signing_key: Path) -> None:
        # Every writer's chain, as `audit seal` does (one tree per writer).
        seal_module.seal_writers(store, seal_module.store_writers(store), signing_key=signing_key)

    real = seal_module.tree_fields
    out: dict[str, float] = {}
    for label, fields in (("without_tree", lambda *args: {}), ("with_tree", real)):
        seal_module.tree_fields = fields  # type: ignore[assignment]
        try:
            first = []
            for _ in range(runs):
                reset_seals(logs)
                store = AuditStore(logs)
                start = time.perf_counter()
                seal(store, signing_key=key)
                first.append(time.perf_counter() - start)
            out[f"first_seal_{label}_s"] = statistics.median(first)
            incremental = []
            for _ in range(runs):
                # The imported writer grows: its seal continues its tree (hashes 1,000 lines).
                writer = seal_module.store_writers(AuditStore(logs))[0]
                store = AuditStore(logs, writer_id=writer)
                store.append(
                    {"action": "login", "actorId": f"u-{n}", "organizationId": "org-456"}
                    for n in range(1000)
                )
                start = time.perf_counter()
                seal(store, signing_key=key)
                incremental.append(time.perf_counter() - start)
            out[f"incremental_seal_{label}_s"] = statistics.median(incremental)
        finally:
            seal_module.tree_fields = real
    return out


def pick_window(logs: Path, actor: str, wanted: int) -> list[str]:
    """`query` options selecting `actor`'s entries from the first day on, over the fewest
    whole hours that hold at least `wanted` of them (binary search on the end hour)."""
    from auditcli.cli_options import make_filters
    from auditcli.query import QueryEngine
    from auditcli.store import AuditStore

    store = AuditStore(logs)
    first = dt.datetime.fromisoformat(store.days()[0] + "T00:00:00+00:00")

    def options(hours: int) -> list[str]:
        until = (first + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return ["--actor-id", actor, "--since", store.days()[0], "--until", until]

    def count(hours: int) -> int:
        opts = options(hours)
        filters = make_filters(store, actor_id=[actor], since=opts[3], until=opts[5])
        return QueryEngine(store, filters).count()

    low, high = 1, 24 * len(store.days())
    while low < high:
        middle = (low + high) // 2
        if count(middle) >= wanted:
            high = middle
        else:
            low = middle + 1
    return options(low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("/tmp/benchproofs"))
    args = parser.parse_args()
    logs = make_store(args.data, args.entries, args.days)
    key = args.data / "seal.key"
    if not key.exists():
        subprocess.run(
            [AUDIT, "keys", "generate", "--out", str(key)], check=True, capture_output=True
        )
    results: dict[str, Any] = {
        "entries": args.entries,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpu,"
        f" Python {platform.python_version()}",
    }
    results.update(bench_seal(logs, key, args.runs))
    # The incremental seals above added writers' entries: seal once more so all are covered.
    subprocess.run(
        [AUDIT, "-d", str(logs), "seal", "--signing-key", str(key), "-q"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    results["sealed_entries"] = args.entries + 2000 * args.runs

    from auditcli.cli_options import make_filters
    from auditcli.integrity.bundle import prove
    from auditcli.integrity.bundle_check import verify_bundle
    from auditcli.integrity.keys import load_public_key
    from auditcli.store import AuditStore

    for label, wanted in (("100", 100), ("40", 40)):
        window = pick_window(logs, "user-123", wanted)
        bundle_path = args.data / f"bundle-{label}.json"
        command = [
            AUDIT,
            "-d",
            str(logs),
            "prove",
            *window,
            "--signing-key",
            str(key),
            "-o",
            str(bundle_path),
        ]
        subprocess.run(command, check=True, capture_output=True)  # warm-up
        cli_seconds, _ = timed(
            lambda c=command: subprocess.run(c, check=True, capture_output=True), args.runs
        )
        store = AuditStore(logs)
        opts = dict(zip(window[::2], window[1::2], strict=True))
        filters = make_filters(
            store, actor_id=[opts["--actor-id"]], since=opts["--since"], until=opts["--until"]
        )
        core_seconds, bundle = timed(
            lambda s=store, f=filters: prove(s, f, signing_key=key), args.runs
        )
        count = len(bundle["entries"])
        data = bundle_path.read_bytes()
        check = [AUDIT, "verify-bundle", str(bundle_path), "--public-key", f"{key}.pub"]
        verify_cli, _ = timed(
            lambda c=check: subprocess.run(c, check=True, capture_output=True), args.runs
        )
        public = [load_public_key(f"{key}.pub")]
        verify_core, report = timed(lambda d=data, p=public: verify_bundle(d, p), args.runs)
        assert report.ok
        results[f"bundle_{label}"] = {
            "entries": count,
            "bytes": len(data),
            "bytes_per_entry": round(len(data) / max(count, 1)),
            "prove_cli_s": cli_seconds,
            "prove_core_s": core_seconds,
            "verify_bundle_cli_s": verify_cli,
            "verify_bundle_core_s": verify_core,
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
