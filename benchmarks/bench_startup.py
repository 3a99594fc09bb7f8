#!/usr/bin/env python3
"""Start-up time of short `audit` commands against their peers, in the same run
(docs/performance.md, "Start-up"):

    python benchmarks/bench_startup.py                # 15 alternating runs per row
    python benchmarks/bench_startup.py --runs 31 --importtime

Rows:
  * `audit query --count -a login --since 7d` on an empty log directory vs
    `python -c 'import typer'` (target <= 1.3x);
  * `audit record login --actor-id ... --org-id ...` vs benchmarks/minimal_record.py, a minimal
    Typer + pydantic app that validates and appends one entry, fsynced (target <= 0.8x).

Each sample is a new process (benchmarks/run.py's run_once: wall time, peak RSS from wait4),
tools alternate after warm-up rounds and medians are compared. Bytecode caches are on, as in
any installed copy. `--importtime` prints the `python -X importtime` breakdown of both
commands: the top modules by cumulative import time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from run import AUDIT, ENV, HERE, PY, compare, machine, run_once, setup_env

QUERY = ["query", "--count", "-a", "login", "--since", "7d"]
RECORD = ["record", "login", "--actor-id", "user-1", "--org-id", "org-1"]


def importtime(argv: list[str], top: int) -> str:
    """The `-X importtime` lines of `argv` (an audit command) with the largest cumulative
    times, as a table: cumulative ms, self ms, module."""
    code = "import sys; from auditcli.cli import main; sys.argv[0] = 'audit'; main()"
    done = subprocess.run(
        [PY, "-X", "importtime", "-c", code, *argv], env=ENV, capture_output=True, text=True
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = line[12:].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((int(cumulative), int(own), depth, name.strip()))
    total = sum(cumulative for cumulative, _, depth, _ in rows if depth == 0)
    out = [f"{'cumulative ms':>14} {'self ms':>8}  module (all imports: {total / 1000:.0f} ms)"]
    for cumulative, own, depth, name in sorted(rows, reverse=True)[:top]:
        out.append(f"{cumulative / 1000:14.1f} {own / 1000:8.1f}  {'  ' * depth}{name}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--importtime", action="store_true", help="print the import breakdown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        setup_env(work)
        logs = work / "logs"
        subprocess.run([AUDIT, "init", str(logs)], env=ENV, check=True, capture_output=True)
        print(f"# machine: {machine()}", flush=True)
        query = [AUDIT, "-d", str(logs), *QUERY]
        record = [AUDIT, "-d", str(logs), *RECORD]
        minimal = [PY, str(HERE / "minimal_record.py"), *RECORD[1:], "--out", str(work / "m")]
        got = compare(
            {
                "audit query --count": lambda: run_once(query, env=ENV),
                "import typer": lambda: run_once([PY, "-c", "import typer"], env=ENV),
                "audit record": lambda: run_once(record, env=ENV),
                "minimal Typer+pydantic record": lambda: run_once(minimal, env=ENV),
            },
            args.runs,
            warmup=3,
        )
        print("| command | median ms | peak RSS MB | peer | ratio | target |")
        print("|---|---:|---:|---|---:|---|")
        for name, peer, target in (
            ("audit query --count", "import typer", 1.3),
            ("audit record", "minimal Typer+pydantic record", 0.8),
        ):
            a, p = got[name], got[peer]
            ratio = a.median / p.median
            print(
                f"| `{name}` | {a.median * 1000:.0f} | {a.rss_mb:.0f} | `{peer}` "
                f"{p.median * 1000:.0f} ms | {ratio:.2f}x | <= {target}x "
                f"{'met' if ratio <= target else '**not met**'} |"
            )
        if args.importtime:
            for argv in (["-d", str(logs), *QUERY], ["-d", str(logs), *RECORD]):
                print(f"\n$ python -X importtime -m auditcli {' '.join(argv[2:])}")
                print(importtime(argv, 25))
        shutil.rmtree(work / "pycache", ignore_errors=True)
    os.environ.pop("PYTHONPYCACHEPREFIX", None)
    sys.exit(0)


if __name__ == "__main__":
    main()
