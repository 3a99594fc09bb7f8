"""`audit redact` of one person on a copy of a big store: which files it rewrites, and its time
as a ratio to `audit query` of the same person (a full read of the same days), alternating runs.

    python benchmarks/bench_redact.py STORE WORKDIR --actor-id user-297 [--since D --until D]

STORE is copied (never written) to WORKDIR once per run; the copies are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import run_once


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.glob("date=*/*")
    }


def main() -> int:
    """Run the comparison and print one line per measure."""
    parser = argparse.ArgumentParser()
    parser.add_argument("store", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--actor-id", required=True)
    parser.add_argument("--since")
    parser.add_argument("--until")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    key = args.work / "bench.key"
    audit = [sys.executable, "-m", "auditcli"]
    if not key.exists():
        generate = [*audit, "keys", "generate", "-o", str(key)]
        subprocess.run(generate, check=True, capture_output=True)
    window = [f"--since={args.since}"] if args.since else []
    window += [f"--until={args.until}"] if args.until else []
    redacts, queries, rewritten, total = [], [], set(), 0
    for run in range(args.runs):
        copy = args.work / f"copy{run}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(args.store, copy)
        env = {**os.environ, "AUDIT_LOG_DIR": str(copy), "AUDIT_WRITER_ID": "bench"}
        query = [*audit, "query", "--all", "--format", "jsonl", "--actor-id", args.actor_id]
        queries.append(run_once([*query, *window], env=env))
        before = _files(copy)
        redact = [*audit, "redact", "--actor-id", args.actor_id, "--reason", "bench"]
        sample = run_once([*redact, "--signing-key", str(key), *window], env=env)
        assert sample.code == 0, sample
        redacts.append(sample)
        after = _files(copy)
        rewritten = {name for name in before if after.get(name) != before[name]}
        total = len(before)
        shutil.rmtree(copy)
    redact_s = statistics.median(s.seconds for s in redacts)
    query_s = statistics.median(s.seconds for s in queries)
    print(f"entries of {args.actor_id}: {queries[-1].lines}")
    print(f"files rewritten: {len(rewritten)} of {total} log files")
    print(f"redact {redact_s:.2f}s, query {query_s:.2f}s (medians of {args.runs}): "
          f"ratio {redact_s / query_s:.2f}")
    print(f"peak RSS redact {max(s.rss_kb for s in redacts) / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
