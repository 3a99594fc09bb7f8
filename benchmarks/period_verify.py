"""Benchmark `audit verify --since/--until` (what `audit report` runs for its integrity section)
cold and repeated, against `sha256sum` over the same days' files, in the same run
(docs/fleet.md, "A repeat verify").

    python benchmarks/period_verify.py --logs COPY_OF_STORE --runs 3 \
        [--baseline PREVIOUS_AUDIT] [--workers 1]

Each round runs, alternately: a **cold** verify (the record of verified files emptied first:
every line hashed, the record written), a **repeat** verify (the record the cold run left),
`sha256sum` over the period's data files, and the `--baseline` executable if given (a cold
verify of the previous version). Medians after a warm-up round, CPU time and peak RSS from
wait4. XDG_CACHE_HOME is a private directory under the store's `.bench` directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    AUDIT,
    ENV,
    Report,
    Sample,
    compare,
    forget_verified,
    machine,
    run_once,
    seconds,
    setup_env,
)


def period_files(logs: Path, since: str, until: str) -> list[str]:
    """The data files of the days [since, until] (as `audit verify` reads them)."""
    return sorted(
        str(path)
        for path in logs.glob("date=*/*.jsonl*")
        if since <= path.parent.name[5:15] <= until
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, required=True, help="a store you may write into")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--since", default="2026-10-10")
    parser.add_argument("--until", default="2026-11-08")
    parser.add_argument("--baseline", help="another `audit` executable timed in the same rounds")
    args = parser.parse_args()
    work = args.logs.parent / f"{args.logs.name}.bench"
    work.mkdir(exist_ok=True)
    setup_env(work)
    cache = work / "verify-cache"
    cache.mkdir(mode=0o700, exist_ok=True)
    ENV["XDG_CACHE_HOME"] = str(cache)
    argv = ["-d", str(args.logs), "verify", "--since", args.since, "--until", args.until]
    argv += ["-f", "json"]
    files = period_files(args.logs, args.since, args.until)
    size = sum(os.path.getsize(f) for f in files)
    print(f"# machine: {machine()}", flush=True)
    print(f"# {len(files)} files, {size / 1e6:.0f} MB, {args.since} to {args.until}", flush=True)

    def cold() -> Sample:
        forget_verified()
        return run_once([AUDIT, *argv], env=ENV)

    tools = {
        "cold": cold,
        "repeat": lambda: run_once([AUDIT, *argv], env=ENV),
        "sha256sum": lambda: run_once(["sha256sum", *files], env=ENV),
    }
    if args.baseline:
        tools["baseline"] = lambda: run_once([args.baseline, *argv], env=ENV)
    got = compare(tools, args.runs)
    report = Report()
    sha = got["sha256sum"]
    for name, result in got.items():
        report.add(
            f"verify {name}" if name != "sha256sum" else "sha256sum",
            f"{seconds(result.median)} (CPU {seconds(result.cpu)}, {result.rss_mb:.0f} MB):"
            f" {result.median / sha.median:.2f}x sha256sum, CPU {result.cpu / sha.cpu:.2f}x",
            "",
            None,
        )
    print(f"# load {os.getloadavg()[0]:.1f} at the end", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
