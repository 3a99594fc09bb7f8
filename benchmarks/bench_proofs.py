"""Benchmark evidence: the first seal of an existing store against the seal before Merkle
trees, `prove` of ~100 entries, `verify-bundle` of them, and the bytes of a bundle of ~40.

    python benchmarks/bench_proofs.py --store /work/benchdata/1m/logs   # a copy of it is used
    python benchmarks/bench_proofs.py --entries 200000                  # generated and imported

Data lives under --data (default /tmp/benchproofs): a copy of --store (never written to), or a
store made with benchmarks/gen_entries.py and `audit import`. The baseline seal is the code of
--baseline (default: the commit before trees were merged), extracted with `git archive` under
--data and run from there. Seal timings run in new processes, alternating baseline and current
(run.py's `compare`, after a warm-up round): each process resets the seals, times the first
seal (every entry new), appends 1,000 entries and times the incremental seal, in-process (wall
and CPU seconds, its worker processes' included). `prove` is timed warm (page cache, and the
kept tree nodes of a previous prove) as the `audit` command and as the core call, and once cold
(nodes not kept yet). Medians of --runs runs; ratios are of medians taken in the same run.
Prints one JSON object; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import AUDIT, ENV, PY, Sample, compare, machine, run_once, setup_env  # noqa: E402

BASELINE = "97a4896"  # main before the Merkle tree merge (per-writer seals, format 2)

#: Run in a new process: reset the seals of LOGS, time a first seal, append 1,000 entries,
#: time the incremental seal; print the four figures as JSON. A third argument is the seal's
#: `workers` (code that has the option).
_SEAL_ONCE = r"""
import importlib, json, resource, shutil, sys, time
from pathlib import Path
from auditcli.store import AuditStore
seal = importlib.import_module("auditcli.integrity.seal")
logs, key = Path(sys.argv[1]), Path(sys.argv[2])
options = {"workers": int(sys.argv[3])} if sys.argv[3:] else {}
for name in ("_manifests", "_timestamps", "_index/merkle"):
    shutil.rmtree(logs / name, ignore_errors=True)
def cpu():  # this process's and its reaped workers' (wait4) user + system seconds
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in used)
def timed():
    store = AuditStore(logs)
    wall, start = time.perf_counter(), cpu()
    seal.seal_writers(store, seal.store_writers(store), signing_key=key, **options)
    return time.perf_counter() - wall, cpu() - start
first = timed()
writer = seal.store_writers(AuditStore(logs))[0]
AuditStore(logs, writer_id=writer).append(
    {"action": "login", "actorId": f"u-{n}", "organizationId": "org-456"} for n in range(1000)
)
incremental = timed()
print(json.dumps({"first": first, "incremental": incremental}))
"""


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median wall seconds of `runs` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def make_store(data: Path, entries: int, days: int, store: Path | None) -> Path:
    """A store to write seals into: a copy of `store`, or one generated and imported."""
    if store is not None:
        logs = data / f"copy-{store.parent.name}-{store.name}"
        if not logs.exists():
            shutil.copytree(store, logs, symlinks=True)  # a copy: never hard links
        return logs
    logs = data / f"logs-{entries}x{days}"
    if logs.exists():
        return logs
    flat = data / f"flat-{entries}x{days}.jsonl"
    data.mkdir(parents=True, exist_ok=True)
    generate = [PY, str(HERE / "gen_entries.py"), "--entries", str(entries), "--days", str(days)]
    subprocess.run([*generate, "--seed", "42", "--out", str(flat)], check=True)
    subprocess.run(
        [AUDIT, "-d", str(logs), "import", str(flat)], check=True, stdout=subprocess.DEVNULL
    )
    return logs


def baseline_code(data: Path, ref: str) -> Path:
    """The `auditcli` package at git `ref`, extracted under `data` (once)."""
    target = data / f"baseline-{ref}"
    if not (target / "auditcli").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", ref, "auditcli"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def bench_seal(logs: Path, key: Path, baseline: Path, runs: int) -> dict[str, Any]:
    """First and incremental seal, baseline code against the current code (as it chooses its
    processes, and in one process), alternating."""
    figures: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": [], "one_process": []}

    def tool(name: str, path: Path | None, *extra: str) -> Callable[[], Sample]:
        env = dict(ENV)
        if path is not None:
            env["PYTHONPATH"] = str(path)

        def run() -> Sample:
            start = time.perf_counter()
            done = subprocess.run(
                # -P: never the package of the working directory (a repository's: not baseline)
                [PY, "-P", "-c", _SEAL_ONCE, str(logs), str(key), *extra],
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                figures[name].append(json.loads(done.stdout))
            else:
                sys.stderr.write(done.stderr)
            return Sample(time.perf_counter() - start, 0, 0, done.returncode)

        return run

    tools = {
        "baseline": tool("baseline", baseline),
        "current": tool("current", None),
        "one_process": tool("one_process", None, "1"),
    }
    compare(tools, runs)
    out: dict[str, Any] = {}
    for name, samples in figures.items():
        samples = samples[-runs:]  # the warm-up round is not counted
        for kind in ("first", "incremental"):
            out[f"{kind}_seal_{name}_s"] = statistics.median(s[kind][0] for s in samples)
            out[f"{kind}_seal_{name}_cpu_s"] = statistics.median(s[kind][1] for s in samples)
    for unit in ("s", "cpu_s"):
        for name in ("current", "one_process"):
            out[f"first_seal_{name}_ratio_{unit}"] = round(
                out[f"first_seal_{name}_{unit}"] / out[f"first_seal_baseline_{unit}"], 2
            )
    return out


def pick_window(logs: Path, actor: str, wanted: int) -> list[str]:
    """`query` options selecting `actor`'s entries from the first day on, over the fewest
    whole hours that hold at least `wanted` of them (binary search on the end hour)."""
    import datetime as dt

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


def bench_bundle(logs: Path, key: Path, data: Path, wanted: int, runs: int) -> dict[str, Any]:
    """`prove` of about `wanted` entries (command warm and cold, core call) and its check."""
    from auditcli.cli_options import make_filters
    from auditcli.integrity.bundle import prove
    from auditcli.integrity.bundle_check import verify_bundle
    from auditcli.integrity.keys import load_public_key
    from auditcli.store import AuditStore

    window = pick_window(logs, "user-123", wanted)
    bundle_path = data / f"bundle-{wanted}.json"
    command = [AUDIT, "-d", str(logs), "prove", *window, "--signing-key", str(key)]
    command += ["-o", str(bundle_path), "--force"]
    for nodes in (logs / "_index" / "merkle").glob("*/tree-*.nodes"):
        nodes.unlink()  # the first prove of a tree hashes it once and keeps a level of nodes
    cold = run_once(command, env=ENV)
    warm = compare({"prove": lambda: run_once(command, env=ENV)}, runs)["prove"]
    store = AuditStore(logs)
    opts = dict(zip(window[::2], window[1::2], strict=True))
    filters = make_filters(
        store, actor_id=[opts["--actor-id"]], since=opts["--since"], until=opts["--until"]
    )
    core_seconds, bundle = timed(lambda: prove(store, filters, signing_key=key), runs)
    count = len(bundle["entries"])
    raw = bundle_path.read_bytes()
    check = [AUDIT, "verify-bundle", str(bundle_path), "--public-key", f"{key}.pub"]
    verify_cli = compare({"verify-bundle": lambda: run_once(check, env=ENV)}, runs)
    public = [load_public_key(f"{key}.pub")]
    verify_core, report = timed(lambda: verify_bundle(raw, public), runs)
    assert report.ok
    return {
        "entries": count,
        "bytes": len(raw),
        "bytes_per_entry": round(len(raw) / max(count, 1)),
        "prove_cli_cold_s": cold.seconds,
        "prove_cli_s": warm.median,
        "prove_core_s": core_seconds,
        "verify_bundle_cli_s": verify_cli["verify-bundle"].median,
        "verify_bundle_core_s": verify_core,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, help="an existing store to copy (read only)")
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="git ref of the baseline seal")
    parser.add_argument("--data", type=Path, default=Path("/tmp/benchproofs"))
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    setup_env(args.data)
    logs = make_store(args.data, args.entries, args.days, args.store)
    key = args.data / "seal.key"
    if not key.exists():
        subprocess.run(
            [AUDIT, "keys", "generate", "--out", str(key)], check=True, capture_output=True
        )
    results: dict[str, Any] = {"machine": machine(), "store": str(args.store or logs)}
    results.update(bench_seal(logs, key, baseline_code(args.data, args.baseline), args.runs))
    # The last incremental seals added entries: seal once more so every entry is covered.
    subprocess.run(
        [AUDIT, "-d", str(logs), "seal", "--signing-key", str(key), "-q"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=ENV,
    )
    for wanted in (100, 40):
        results[f"bundle_{wanted}"] = bench_bundle(logs, key, args.data, wanted, args.runs)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
