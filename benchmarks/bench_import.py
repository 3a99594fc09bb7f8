"""Benchmark `audit import` against `jq -c . FILE > out` in the same run, by wall and CPU time
(docs/performance.md, "Import").

    python benchmarks/bench_import.py --data /tmp/me --runs 3 FILE
    python benchmarks/bench_import.py --data /tmp/me --runs 3 --baseline /tmp/old FILE

FILE is `gen_entries.py` output; each run imports it into a new store under --data (deleted
after). Runs alternate audit and jq (`run.compare`: medians, peak RSS and user + system CPU
seconds from wait4). On a shared machine the CPU-time rate is the steadier figure: wall time
also counts the time the process waited for a core. With --baseline DIR (a directory holding
another version's `auditcli` package, e.g. `git archive COMMIT auditcli | tar -x -C DIR`),
that version's import is timed too, alternating with the others, from the same `audit`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import AUDIT, ENV, Sample, compare, machine, run_once, setup_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--data", type=Path, default=Path("/tmp/benchdata"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a directory holding another auditcli")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    setup_env(args.data)
    scratch, out = args.data / "import-bench", args.data / "jq-out.jsonl"
    with open(args.file, "rb") as handle:
        entries = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))
    print(f"# machine: {machine()}", flush=True)

    def audit_import(env: dict[str, str] = ENV) -> Sample:
        shutil.rmtree(scratch, ignore_errors=True)
        return run_once([AUDIT, "-d", str(scratch), "import", str(args.file)], env=env)

    tools = {"audit": audit_import}
    if args.baseline:
        old_env = dict(ENV, PYTHONPATH=str(args.baseline.resolve()))
        tools["baseline"] = lambda: audit_import(old_env)

    def jq_copy() -> Sample:
        with open(out, "wb") as handle:
            return run_once(["jq", "-c", ".", str(args.file)], stdout=handle)

    try:
        got = compare({**tools, "jq": jq_copy}, args.runs, warmup=0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        out.unlink(missing_ok=True)
    a, j = got["audit"], got["jq"]
    results = {
        "entries": entries,
        "audit_wall_s": a.median,
        "audit_cpu_s": a.cpu,
        "jq_wall_s": j.median,
        "jq_cpu_s": j.cpu,
        "rate_wall": entries / a.median,
        "rate_cpu": entries / a.cpu,
        "ratio_wall": a.median / j.median,
        "ratio_cpu": a.cpu / j.cpu,
        "rss_mb": a.rss_mb,
        "load_at_end": os.getloadavg()[0],
    }
    print(
        f"audit import: {a.median:.1f} s wall ({results['rate_wall']:,.0f} entries/s), "
        f"{a.cpu:.1f} s CPU ({results['rate_cpu']:,.0f} entries/s), peak RSS {a.rss_mb:.0f} MB\n"
        f"jq -c .:      {j.median:.1f} s wall, {j.cpu:.1f} s CPU\n"
        f"ratio:        {results['ratio_wall']:.2f}x jq by wall, "
        f"{results['ratio_cpu']:.2f}x by CPU; load {results['load_at_end']:.1f} at the end"
    )
    if "baseline" in got:
        b = got["baseline"]
        results |= {
            "baseline_wall_s": b.median,
            "baseline_cpu_s": b.cpu,
            "baseline_rss_mb": b.rss_mb,
            "speedup_wall": b.median / a.median,
            "speedup_cpu": b.cpu / a.cpu,
        }
        print(
            f"baseline:     {b.median:.1f} s wall ({entries / b.median:,.0f} entries/s), "
            f"{b.cpu:.1f} s CPU ({entries / b.cpu:,.0f} entries/s), peak RSS {b.rss_mb:.0f} MB\n"
            f"speed-up:     {results['speedup_wall']:.2f}x the baseline by wall, "
            f"{results['speedup_cpu']:.2f}x by CPU"
        )
    (args.data / "import.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
