"""Benchmark the auditor questions (`state`, `history`, `report`) against DuckDB doing the same
in SQL over the same files, in the same run (docs/access-reviews.md).

    python benchmarks/bench_auditor.py --logs /tmp/me/logs10m --runs 5

--logs is a store made by `audit import` of `gen_entries.py` output (a COPY: the first question
writes the checkpoints under `_index/auditor/` and line indexes; never a shared read-only
store). The first `state` builds the checkpoints (timed once, reported as such); then each row
alternates audit and its DuckDB peer after a warm-up round (`run.compare`: medians, peak RSS
from wait4). The DuckDB SQL is simplified (no anomalies, no before → after changes, no
citations of who granted what): it is the floor of reading the same rows, not the same answer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (
    AUDIT,
    DUCK_SOURCE,
    ENV,
    PY,
    Report,
    Sample,
    compare,
    forget_verified,
    machine,
    run_once,
    seconds,
    setup_env,
    store_files,
)

#: DuckDB peers: the SQL of each question (simplified, see the module docstring).
SQL = {
    "state": """SELECT organizationId, targetId FROM (
        SELECT organizationId, targetId, arg_max(action, createdAt || id) AS last FROM {src}
        WHERE action IN ('org_admin_added', 'org_admin_removed', 'user_removed')
          AND createdAt <= '{at}' GROUP BY ALL) WHERE last = 'org_admin_added'
        ORDER BY ALL""",
    "history": """SELECT * FROM {src} WHERE targetId = '{target}'
        OR json_extract_string(metadata, '$.input.userId') = '{target}'
        ORDER BY createdAt, id""",
    "report": """SELECT action, actorId, createdAt[:10] AS day, count(*) FROM {src}
        WHERE createdAt BETWEEN '{since}' AND '{until}' GROUP BY ALL ORDER BY ALL""",
}
DUCK_SQL = (
    """
import sys, duckdb
listfile, sql = sys.argv[1], sys.argv[2]
"""
    + DUCK_SOURCE
    + """for row in duckdb.connect().execute(sql.format(src=src)).fetchall():
    print(*row)
"""
)


def audit_run(argv: list[str], cold: bool) -> Sample:
    """One timed run of `audit` (`cold`: on an empty record of verified files)."""
    if cold:
        forget_verified()
    return run_once(argv, env=ENV)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, required=True, help="a store you may write into")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--at", default="2026-11-08T12:00:00.000Z")
    parser.add_argument("--target", default="role-210")
    parser.add_argument("--since", default="2026-10-10T00:00:00.000Z", help="report: 30 days")
    parser.add_argument("--until", default="2026-11-08T23:59:59.999Z")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--only",
        default="state,history,report",
        help="the questions to time, comma-separated (a report at 10M takes minutes a run)",
    )
    parser.add_argument(
        "--baseline", help="another `audit` executable timed in the same rounds (e.g. main's)"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="empty the record of verified files ($XDG_CACHE_HOME/auditcli/verified) before"
        " each audit run: report's integrity check then hashes every line (see docs/fleet.md)",
    )
    args = parser.parse_args()
    work = args.logs.parent / f"{args.logs.name}.bench"
    work.mkdir(exist_ok=True)
    setup_env(work)
    listfile = work / "files"
    listfile.write_text("\n".join(store_files(args.logs)) + "\n")
    duck = work / "duck_sql.py"
    duck.write_text(DUCK_SQL)
    audit = [AUDIT, "-d", str(args.logs)]
    print(f"# machine: {machine()}", flush=True)
    results: dict[str, object] = {
        "machine": machine(),
        "runs": args.runs,
        "date": str(dt.date.today()),
    }
    first = run_once([*audit, "state", "admins", "--at", args.at, "-f", "json"], env=ENV)
    print(
        f"# first state (builds the checkpoints): {seconds(first.seconds)}, "
        f"{first.rss_kb / 1024:.0f} MB",
        flush=True,
    )
    results["first"] = {"seconds": first.seconds, "rss_mb": first.rss_kb / 1024}
    questions = {
        "state": ([*audit, "state", "admins", "--at", args.at, "-f", "json"], {"at": args.at}),
        "history": (
            [*audit, "history", "--target-id", args.target, "-f", "jsonl"],
            {"target": args.target},
        ),
        "report": (
            [*audit, "report", "--since", args.since, "--until", args.until, "-o", "-", "-f", "md"],
            {"since": args.since, "until": args.until},
        ),
    }
    report = Report()
    targets = {"state": 0.5, "history": 0.5, "report": 5.0}
    for name in args.only.split(","):
        argv, values = questions[name]
        sql = " ".join(SQL[name].format(src="{src}", **values).split())
        tools = {
            "audit": lambda argv=argv: audit_run(argv, args.cold),
            "duckdb": lambda sql=sql: run_once([PY, str(duck), str(listfile), sql], env=ENV),
        }
        if args.baseline:
            base = [args.baseline, *argv[1:]]
            tools["baseline"] = lambda base=base: run_once(base, env=ENV)
        got = compare(tools, args.runs)
        a, d = got["audit"], got["duckdb"]
        if args.baseline:
            b = got["baseline"]
            print(
                f"#   baseline {seconds(b.median)} ({b.rss_mb:.0f} MB): audit is "
                f"{a.median / b.median:.2f}x",
                flush=True,
            )
        report.add(
            f"{name} (10M: <= {targets[name]} s, <= 100 MB)",
            f"audit {seconds(a.median)} (CPU {seconds(a.cpu)}, {a.rss_mb:.0f} MB), DuckDB "
            f"{seconds(d.median)} (CPU {seconds(d.cpu)}, {d.rss_mb:.0f} MB): "
            f"{a.median / d.median:.2f}x",
            f"<= {targets[name]} s and <= 100 MB",
            a.median <= targets[name] and a.rss_mb <= 100,
        )
        results[name] = {
            "audit": [s.seconds for s in a.samples],
            "duckdb": [s.seconds for s in d.samples],
            "audit_cpu": [s.cpu for s in a.samples],
            "duckdb_cpu": [s.cpu for s in d.samples],
            "audit_rss_mb": a.rss_mb,
            "duckdb_rss_mb": d.rss_mb,
            "ratio": a.median / d.median,
            **(
                {
                    "baseline": [s.seconds for s in got["baseline"].samples],
                    "baseline_rss_mb": got["baseline"].rss_mb,
                }
                if args.baseline
                else {}
            ),
        }
    results["report_rows"] = report.rows
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
