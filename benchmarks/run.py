"""Benchmark `audit` against jq, ripgrep and DuckDB on the same files (docs/performance.md).

    python benchmarks/run.py                      # 1M entries over 30 days, ~10 minutes
    python benchmarks/run.py --runs 3 --quick     # fewer runs, no import benchmark
    python benchmarks/run.py --scaling            # one-day and full-scan time vs history size
    python benchmarks/run.py --gz                 # rotated (gzip) days against the plain store
    python benchmarks/run.py --import-only FILE   # only the import rows, importing FILE
    python benchmarks/run.py --vs-rg STORE        # selective queries on STORE (e.g. 10M) vs ripgrep
    python benchmarks/run.py --cold               # first query after rotate/seal/record/retention

Data lives under --data (default /tmp/benchdata, never in the repository): the generator's flat
JSONL file, the store it is imported into (`DATA/logs`, reused when it already holds the
entries), and scratch directories. Every peer reads the store's own files (`date=*/*.jsonl`).

Each measurement is the wall time of a new process with its output drained through a pipe, and
its peak RSS from wait4(). The tools of one row run alternately (audit, peer, peer, audit, ...)
after a warm-up round, so a noisy neighbour slows all of them alike; medians are reported, and
each target is judged on a ratio within the same run. Python's bytecode cache is enabled for
`audit` (PYTHONPYCACHEPREFIX under --data), as it is in any installed copy: a development
environment with PYTHONDONTWRITEBYTECODE would otherwise recompile the package on every start.
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
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
AUDIT = str(Path(PY).with_name("audit"))
ACTOR, DAY, WEEK_START = "user-123", "2026-10-25", "2026-10-20"
WEEK_LAST = "2026-10-26"  # the 7 days [WEEK_START, WEEK_START + 7d) as inclusive dates


# ---------------------------------------------------------------------- measuring
@dataclass
class Sample:
    seconds: float
    rss_kb: int
    lines: int
    code: int
    cpu: float = 0.0  # user + system seconds of the process and the children it waited for


def run_once(argv: Sequence[str], env: dict[str, str] | None = None, stdout: Any = None) -> Sample:
    """Run `argv` as a new process; drain its stdout through a pipe (or send it to `stdout`);
    return wall time, peak RSS (wait4) and the number of output lines."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    lines = 0
    if stdout is None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            lines += chunk.count(b"\n")
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen.wait
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(seconds, usage.ru_maxrss, lines, proc.returncode, cpu)


@dataclass
class Result:
    name: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def cpu(self) -> float:
        """Median CPU seconds (user + system): steadier than wall time on a busy machine."""
        return statistics.median(s.cpu for s in self.samples)

    @property
    def rss_mb(self) -> float:
        return max(s.rss_kb for s in self.samples) / 1024

    @property
    def lines(self) -> int:
        return self.samples[-1].lines


def compare(
    tools: dict[str, Callable[[], Sample]], runs: int, warmup: int = 1, slow: Sequence[str] = ()
) -> dict[str, Result]:
    """Time every tool `runs` times, alternating between them, after `warmup` rounds; tools
    named in `slow` (jq) run half as often."""
    results = {name: Result(name) for name in tools}
    for _ in range(warmup):
        for name, run in tools.items():
            if name not in slow:
                run()
    for round_ in range(runs):
        for name, run in tools.items():
            if name in slow and round_ % 2:
                continue
            sample = run()
            if sample.code != 0:
                raise SystemExit(f"{name} failed (exit {sample.code})")
            results[name].samples.append(sample)
    return results


# ---------------------------------------------------------------------- the data
def ensure_data(data: Path, entries: int, days: int, end: str = "2026-11-08") -> tuple[Path, Path]:
    """The flat file and the imported store for `entries` over `days`, made once."""
    tag = f"{entries}x{days}"
    flat = data / ("flat.jsonl" if tag == "1000000x30" else f"flat-{tag}.jsonl")
    logs = data / ("logs" if tag == "1000000x30" else f"logs-{tag}")
    if not flat.exists() and (not logs.exists() or tag == "1000000x30"):  # import needs it
        print(f"# generating {entries} entries over {days} days -> {flat}", flush=True)
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
                "--end",
                end,
                "--out",
                str(flat),
            ],
            check=True,
        )
    if not logs.exists():
        print(f"# importing {flat} -> {logs}", flush=True)
        sample = run_once([AUDIT, "-d", str(logs), "import", str(flat)], env=ENV)
        print(f"#   {sample.seconds:.1f} s, {entries / sample.seconds:,.0f} entries/s", flush=True)
    return flat, logs


def store_files(logs: Path) -> list[str]:
    return sorted(str(p) for p in logs.glob("date=*/*.jsonl"))


# ---------------------------------------------------------------------- peers
#: The DuckDB peer's source: the store files listed in the file `listfile`, read with the
#: entry's 13 columns as `src` (shared by the peer scripts of the benchmarks).
DUCK_SOURCE = """
files = [l.rstrip("\\n") for l in open(listfile) if l.strip()]
flist = "[" + ",".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
cols = ("{'id':'VARCHAR','description':'VARCHAR','actorId':'VARCHAR','actorName':'VARCHAR',"
        "'actorEmail':'VARCHAR','action':'VARCHAR','actionDisplayName':'VARCHAR','target':'VARCHAR',"
        "'targetId':'VARCHAR','metadata':'JSON','organizationId':'VARCHAR','teamId':'VARCHAR',"
        "'createdAt':'VARCHAR'}")
src = f"read_ndjson({flist}, columns={cols})"
"""
DUCK = (
    """
import sys, duckdb
mode, listfile, where = sys.argv[1], sys.argv[2], sys.argv[3]
"""
    + DUCK_SOURCE
    + """con = duckdb.connect()
if mode == "count":
    print(con.execute(f"SELECT count(*) FROM {src} WHERE {where}").fetchone()[0])
elif mode == "group":
    for row in con.execute(f"SELECT {where}, count(*) FROM {src} GROUP BY {where}").fetchall():
        print(*row)
else:
    con.execute(f"COPY (SELECT * FROM {src} WHERE {where}) TO '/dev/stdout' (FORMAT json)")
"""
)


@dataclass
class Query:
    key: str
    title: str
    audit: list[str]
    jq: str
    rg: list[str]  # ripgrep's pattern arguments
    where: str  # DuckDB


def queries() -> list[Query]:
    week_end = "2026-10-27"
    days = "|".join(
        (dt.date.fromisoformat(WEEK_START) + dt.timedelta(days=n)).isoformat() for n in range(7)
    )
    return [
        Query(
            "Q2",
            "rare action (role_updated, 2%)",
            ["--action", "role_updated"],
            'select(.action=="role_updated")',
            ["-F", '"action":"role_updated"'],
            "action = 'role_updated'",
        ),
        Query(
            "Q3",
            f"one actor ({ACTOR})",
            ["--actor-id", ACTOR],
            f'select(.actorId=="{ACTOR}")',
            ["-F", f'"actorId":"{ACTOR}"'],
            f"\"actorId\" = '{ACTOR}'",
        ),
        Query(
            "Q5",
            "action + 7-day window",
            ["--action", "team_created", "--since", WEEK_START, "--until", WEEK_LAST],
            f'select(.action=="team_created" and .createdAt >= "{WEEK_START}" and '
            f'.createdAt < "{week_end}")',
            [f'"action":"team_created".*"createdAt":"({days})T'],
            f"action = 'team_created' AND \"createdAt\" >= '{WEEK_START}' AND "
            f"\"createdAt\" < '{week_end}'",
        ),
        Query(
            "Q4",
            f"one day of 30 ({DAY})",
            ["--since", DAY, "--until", DAY],
            f'select(.createdAt >= "{DAY}" and .createdAt < "2026-10-26")',
            ["-F", f'"createdAt":"{DAY}T'],
            f"\"createdAt\" >= '{DAY}' AND \"createdAt\" < '2026-10-26'",
        ),
        Query(
            "Q1",
            "broad (login, 60%)",
            ["--action", "login"],
            'select(.action=="login")',
            ["-F", '"action":"login"'],
            "action = 'login'",
        ),
    ]


# ---------------------------------------------------------------------- the benchmark
ENV = dict(os.environ)


def setup_env(data: Path) -> None:
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = str(data / "pycache")
    ENV.pop("AUDIT_LOG_DIR", None)


def forget_verified() -> None:
    """Empty the record of what earlier verifies proved (auditcli/integrity/proven.py) under
    ENV's XDG_CACHE_HOME, so that the next `audit` run checks every line (a cold verify)."""
    cache = Path(ENV.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    shutil.rmtree(cache / "auditcli" / "verified", ignore_errors=True)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load {load:.1f} at start"
    )


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, row: str, measured: str, target: str, ok: bool | None, **extra: Any) -> None:
        mark = "n/a" if ok is None else ("met" if ok else "NOT met")
        print(f"{row:<46} {measured:<58} target {target:<34} {mark}", flush=True)
        self.rows.append({"row": row, "measured": measured, "target": target, "met": ok, **extra})


def seconds(value: float) -> str:
    return f"{value:.3f}s"


def bench_queries(logs: Path, runs: int, report: Report, results: dict[str, Any]) -> None:
    files = store_files(logs)
    listfile = logs.parent / f"{logs.name}.files"
    listfile.write_text("\n".join(files) + "\n")
    duck = logs.parent / "duck.py"
    duck.write_text(DUCK)
    base = [AUDIT, "-d", str(logs), "query", "--all", "--format", "jsonl"]
    full_scan: Result | None = None
    for q in queries():
        tools: dict[str, Callable[[], Sample]] = {
            "audit": lambda q=q: run_once([*base, *q.audit], env=ENV),
            "duckdb-json": lambda q=q: run_once([PY, str(duck), "json", str(listfile), q.where]),
            "rg": lambda q=q: run_once(["rg", "-I", "-N", *q.rg, *files]),
            "jq": lambda q=q: run_once(["jq", "-c", q.jq, *files]),
        }
        if q.key == "Q4":  # the same query over all 30 days (no bounds): every entry
            tools["audit-all-days"] = lambda: run_once(base, env=ENV)
            tools["duckdb-all-days"] = lambda: run_once(
                [PY, str(duck), "json", str(listfile), "true"]
            )
        got = compare(tools, runs, slow=("jq",))
        counts = {name: r.lines for name, r in got.items() if "all-days" not in name}
        if len(set(counts.values())) != 1:
            raise SystemExit(f"{q.key}: the tools disagree on the matches: {counts}")
        audit, duck_r, rg, jq = got["audit"], got["duckdb-json"], got["rg"], got["jq"]
        results[q.key] = {
            name: {"median_s": r.median, "rss_mb": r.rss_mb, "lines": r.lines}
            for name, r in got.items()
        }
        line = (
            f"audit {seconds(audit.median)} ({audit.lines} lines, {audit.rss_mb:.0f} MB), "
            f"duckdb {seconds(duck_r.median)} ({duck_r.rss_mb:.0f} MB), "
            f"rg {seconds(rg.median)}, jq {seconds(jq.median)}"
        )
        print(f"# {q.key} {q.title}: {line}", flush=True)
        name = f"{q.key} {q.title}"
        if q.key in ("Q2", "Q3", "Q5"):
            report.add(
                name,
                f"{audit.median / duck_r.median:.2f}x DuckDB JSON",
                "<= 0.6x DuckDB JSON",
                audit.median <= 0.6 * duck_r.median,
            )
            report.add(
                "",
                f"{audit.median / rg.median:.1f}x ripgrep",
                "<= 3x ripgrep",
                audit.median <= 3 * rg.median,
            )
            report.add(
                "",
                f"{jq.median / audit.median:.0f}x faster than jq",
                ">= 20x faster than jq",
                jq.median >= 20 * audit.median,
            )
        elif q.key == "Q4":
            full_scan = got["audit-all-days"]
            report.add(
                name,
                f"{audit.median / full_scan.median:.2f} of all 30 days "
                f"({seconds(audit.median)} vs {seconds(full_scan.median)})",
                "<= 0.10 of all 30 days",
                audit.median <= 0.1 * full_scan.median,
            )
        else:
            report.add(
                name,
                f"{audit.median / duck_r.median:.2f}x DuckDB JSON",
                "<= 1.5x DuckDB JSON",
                audit.median <= 1.5 * duck_r.median,
            )
        for tool, r in got.items():
            if tool.startswith("audit"):
                peer = got[tool.replace("audit", "duckdb") if "all-days" in tool else "duckdb-json"]
                peak = r.rss_mb
                report.add(
                    f"  memory: {q.key} {tool}",
                    f"peak RSS {peak:.0f} MB (DuckDB {peer.rss_mb:.0f} MB)",
                    "<= 100 MB and <= 1/2 DuckDB",
                    peak <= 100 and peak <= peer.rss_mb / 2,
                )
    startup = compare(
        {
            "audit": lambda: run_once(
                [AUDIT, "-d", str(logs.parent / "empty"), "query", "--count"], env=ENV
            )
        },
        runs,
    )["audit"]
    results["startup"] = {"median_s": startup.median}
    if full_scan is not None:
        day = results["Q4"]["audit"]["median_s"]
        net = (day - startup.median) / max(full_scan.median - startup.median, 1e-9)
        report.add(
            "  Q4 net of start-up",
            f"{net:.3f} of all 30 days (start-up "
            f"{seconds(startup.median)} = `audit query` on an empty store)",
            "<= 0.10 of all 30 days",
            net <= 0.1,
        )

    # default view: newest 20 with total, vs counting lines with ripgrep
    got = compare(
        {
            "audit": lambda: run_once(
                [AUDIT, "-d", str(logs), "query", "--format", "json"], env=ENV
            ),
            "rg-count": lambda: run_once(["rg", "-c", "", *files]),
        },
        runs,
    )
    a, r = got["audit"], got["rg-count"]
    results["default-view"] = {
        n: {"median_s": x.median, "rss_mb": x.rss_mb} for n, x in got.items()
    }
    report.add(
        "default view (newest 20 + total)",
        f"{a.median / r.median:.1f}x `rg -c ''` ({seconds(a.median)} vs {seconds(r.median)})",
        "<= 3x rg -c",
        a.median <= 3 * r.median,
    )

    # count everything
    got = compare(
        {
            "audit": lambda: run_once([AUDIT, "-d", str(logs), "query", "--count"], env=ENV),
            "duckdb-count": lambda: run_once([PY, str(duck), "count", str(listfile), "true"]),
        },
        runs,
    )
    results["count"] = {n: {"median_s": x.median, "rss_mb": x.rss_mb} for n, x in got.items()}
    report.add(
        "Q6 count all",
        f"audit {seconds(got['audit'].median)}, DuckDB {seconds(got['duckdb-count'].median)}",
        "(no target)",
        None,
    )

    # stats --by action vs GROUP BY
    got = compare(
        {
            "audit": lambda: run_once(
                [AUDIT, "-d", str(logs), "stats", "--by", "action", "--format", "json"], env=ENV
            ),
            "duckdb-group": lambda: run_once([PY, str(duck), "group", str(listfile), "action"]),
        },
        runs,
    )
    a, d = got["audit"], got["duckdb-group"]
    results["stats"] = {n: {"median_s": x.median, "rss_mb": x.rss_mb} for n, x in got.items()}
    report.add(
        "audit stats --by action",
        f"{a.median / d.median:.2f}x DuckDB GROUP BY ({seconds(a.median)} vs {seconds(d.median)})",
        "<= 1.5x DuckDB GROUP BY",
        a.median <= 1.5 * d.median,
    )

    # verify vs sha256sum over the same files
    got = compare(
        {
            "audit": lambda: run_once(
                [AUDIT, "-d", str(logs), "verify", "--format", "json"], env=ENV
            ),
            "sha256sum": lambda: run_once(["sha256sum", *files]),
        },
        max(3, runs // 2),
    )
    a, s = got["audit"], got["sha256sum"]
    results["verify"] = {n: {"median_s": x.median, "rss_mb": x.rss_mb} for n, x in got.items()}
    report.add(
        "audit verify (whole store)",
        f"{a.median / s.median:.1f}x sha256sum ({seconds(a.median)} vs {seconds(s.median)})",
        "<= 10x sha256sum",
        a.median <= 10 * s.median,
    )


def bench_gz(
    logs: Path, runs: int, report: Report, results: dict[str, Any], member_kib: Sequence[int] = ()
) -> None:
    """Line-returning queries on a fully rotated copy of the store (`LOGS-gz`, made once by
    `cp -a` and `audit rotate`) against the plain store and `rg -z` over the archives; with
    `member_kib`, also on copies rotated into members of those sizes (`LOGS-gzK`), each with
    its archives' size."""
    copies = {"audit-gz": logs.with_name(logs.name + "-gz")}
    copies.update({f"audit-gz{k}": logs.with_name(f"{logs.name}-gz{k}") for k in member_kib})
    for name, packed in copies.items():
        if not packed.exists():
            print(f"# copying {logs} -> {packed} and rotating it", flush=True)
            subprocess.run(["cp", "-a", str(logs), str(packed)], check=True)
            rotate = [AUDIT, "-d", str(packed), "rotate"]
            if name != "audit-gz":  # the same command with another member size
                kib = int(name.removeprefix("audit-gz"))
                rotate = [PY, "-c", _ROTATE_WITH_MEMBERS.format(kib=kib), *rotate[1:]]
            sample = run_once(rotate, env=ENV)
            print(f"#   rotate: {sample.seconds:.1f} s, {sample.rss_kb / 1024:.0f} MB", flush=True)
        size = sum(path.stat().st_size for path in packed.glob("date=*/*.jsonl.gz"))
        print(f"# {name}: archives {size / 2**20:.1f} MiB", flush=True)
        results.setdefault("gz_archive_bytes", {})[name] = size
    archives = sorted(str(p) for p in copies["audit-gz"].glob("date=*/*.jsonl.gz"))
    page = ["query", "--limit", "50", "--format", "jsonl"]
    rows: list[tuple[str, str, list[str], list[str] | None]] = [
        (q.key, q.title, ["query", "--all", "--format", "jsonl", *q.audit], q.rg) for q in queries()
    ]
    rows.append(("P50", "newest page of 50", page, None))
    rows.append(("P50r", "page of 50, role_updated", [*page, "--action", "role_updated"], None))
    results["gz"] = {}
    for key, title, args, rg in rows:
        tools: dict[str, Callable[[], Sample]] = {
            "audit-plain": lambda a=args: run_once([AUDIT, "-d", str(logs), *a], env=ENV),
        }
        for name, packed in copies.items():
            tools[name] = lambda a=args, d=packed: run_once([AUDIT, "-d", str(d), *a], env=ENV)
        if rg is not None:
            tools["rg-z"] = lambda rg=rg: run_once(["rg", "-z", "-I", "-N", *rg, *archives])
        got = compare(tools, runs)
        counts = {name: r.lines for name, r in got.items()}
        if len(set(counts.values())) != 1:
            raise SystemExit(f"gz {key}: the tools disagree on the matches: {counts}")
        plain = got["audit-plain"]
        results["gz"][key] = {
            name: {"median_s": r.median, "cpu_s": r.cpu, "rss_mb": r.rss_mb, "lines": r.lines}
            for name, r in got.items()
        }
        versus = f", rg -z {seconds(got['rg-z'].median)}" if "rg-z" in got else ""
        for name in copies:
            gz = got[name]
            label = "gz" if name == "audit-gz" else name.removeprefix("audit-")
            report.add(
                f"{label} {key} {title}",
                f"{gz.median / plain.median:.2f}x plain ({seconds(gz.median)} vs "
                f"{seconds(plain.median)}, {gz.rss_mb:.0f} MB; cpu {gz.cpu / plain.cpu:.2f}x)"
                + (versus if name == "audit-gz" else ""),
                "<= 1.2x plain",
                gz.median <= 1.2 * plain.median,
            )


#: `audit ARGS…` with rotation writing members of {kib} KiB (`--member-kib`).
_ROTATE_WITH_MEMBERS = (
    "import sys; from auditcli import cli, gzmembers; "
    "gzmembers.MEMBER_BYTES = {kib} << 10; sys.argv[0] = 'audit'; cli.main()"
)


#: The issue's targets against ripgrep (`--vs-rg`), as a fraction of rg's time: over the same
#: tree, or (Q5, time-bounded) over the directories of just the days it asks for.
RG_TARGETS = {"Q2": 0.5, "Q3": 0.5, "Q5": 1.0, "Q1": 1.0}


def bench_vs_rg(
    logs: Path,
    runs: int,
    keys: Sequence[str],
    report: Report,
    results: dict[str, Any],
    records: Path | None = None,
) -> None:
    """`audit query --all --format jsonl` against ripgrep over the store's files, for the
    queries `keys`, alternately; Q5 also against rg over only the files of its 7 days."""
    files = store_files(logs)
    base = [AUDIT, "-d", str(logs), "query", "--all", "--format", "jsonl"]
    week = [
        (dt.date.fromisoformat(WEEK_START) + dt.timedelta(days=n)).isoformat() for n in range(7)
    ]
    week_files = [f for f in files if Path(f).parent.name[len("date=") :] in week]
    vouched, checked = _index_records(logs, records)
    results["vs-rg"] = {}
    for q in (q for q in queries() if q.key in keys):
        tools: dict[str, Callable[[], Sample]] = {
            "audit": lambda q=q: run_once([*base, *q.audit], env=vouched),
            "audit-checked": lambda q=q: run_once([*base, *q.audit], env=checked),
            "rg": lambda q=q: run_once(["rg", "-I", "-N", *q.rg, *files]),
        }
        if q.key == "Q5":
            tools["rg-days"] = lambda q=q: run_once(["rg", "-I", "-N", *q.rg, *week_files])
        got = compare(tools, runs)
        counts = {name: r.lines for name, r in got.items()}
        if len(set(counts.values())) != 1:
            raise SystemExit(f"{q.key}: the tools disagree on the matches: {counts}")
        results["vs-rg"][q.key] = {
            name: {"median_s": r.median, "cpu_s": r.cpu, "rss_mb": r.rss_mb, "lines": r.lines}
            for name, r in got.items()
        }
        audit = got["audit"]
        peer = got["rg-days" if q.key == "Q5" else "rg"]
        print(
            f"# {q.key} {q.title}: "
            + ", ".join(
                f"{name} {seconds(r.median)} (cpu {seconds(r.cpu)}, {r.rss_mb:.0f} MB)"
                for name, r in got.items()
            )
            + f", {audit.lines} lines",
            flush=True,
        )
        if q.key in RG_TARGETS:
            limit = RG_TARGETS[q.key]
            report.add(
                f"{q.key} {q.title}",
                f"{audit.median / peer.median:.2f}x {peer.name} ({seconds(audit.median)} vs "
                f"{seconds(peer.median)}; cpu {audit.cpu / max(peer.cpu, 1e-9):.2f}x)",
                f"<= {limit}x {peer.name}",
                audit.median <= limit * peer.median,
            )


def _index_records(logs: Path, kept: Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """Two environments for `audit`: one whose record of vouched-for line indexes (see
    auditcli.trust) holds every index of `logs` (missing ones are written by a first query,
    the others checked against their files as `audit verify` does), one whose record is empty
    (every line an index selects is checked). Kept in `kept` when given: a later run over the
    same store then checks nothing again."""
    records = kept or Path(tempfile.mkdtemp(prefix="audit-records-"))
    vouched = {**ENV, "XDG_CACHE_HOME": str(records / "vouched")}
    checked = {**ENV, "XDG_CACHE_HOME": str(records / "empty")}
    count = [AUDIT, "-d", str(logs), "query", "--count"]
    subprocess.run(count, env=vouched, check=True, stdout=subprocess.DEVNULL)
    # Days with an index this record lacks (written before, by another user) are checked.
    vouch = (
        "import sys; from pathlib import Path; from auditcli import trust; "
        "from auditcli.store import AuditStore; "
        "from auditcli.integrity.indexes import check_indexes; "
        "root = Path(sys.argv[1]); store = AuditStore(root); "
        "days = sorted({p.parent.name[5:] for p in root.glob('_index/date=*/*.idx') "
        "if not trust.vouched(p.read_bytes())}); "
        "sys.exit(any(check_indexes(store, day, day) for day in days))"
    )
    subprocess.run([PY, "-c", vouch, str(logs)], env=vouched, check=True)
    return vouched, checked


def _store_days(logs: Path) -> list[dt.date]:
    return sorted(dt.date.fromisoformat(p.name[len("date=") :]) for p in logs.glob("date=*"))


def bench_cold(
    logs: Path, data: Path, runs: int, report: Report, results: dict[str, Any], copy: bool = True
) -> None:
    """The first line-returning query after each command that changes a copy of the store
    (rotate of its 3 oldest days, seal, record into a new day, retention deleting its oldest
    day), against the median of the same query run `runs` times after it. Without `copy`, the
    commands change `logs` itself (a store of 10M entries is not copied twice)."""
    scratch = data / "cold" if copy else logs
    if copy:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"# copying {logs} -> {scratch}", flush=True)
        subprocess.run(["cp", "-a", str(logs), str(scratch)], check=True)
    query = [AUDIT, "-d", str(scratch), "query", "--all", "--format", "jsonl"]
    query += ["--action", "role_updated"]
    run_once(query, env=ENV)  # indexes (if the copy has none) and bytecode: not a command's
    age = (dt.datetime.now(dt.UTC).date() - _store_days(scratch)[0]).days
    record = ["record", "login", "--actor-id", "user-1", "--org-id", "org-1"]
    steps = [
        ("rotate (3 oldest days)", ["rotate", "--compress-after", str(age - 2)]),
        ("seal", ["seal"]),
        ("record (into a new day)", record),
        # --compress-after beyond every day: only the deletion (its default compresses all)
        (
            "retention (oldest day deleted)",
            ["rotate", "--compress-after", "36500", "--delete-after", str(age)],
        ),
    ]
    results["cold"] = {}
    try:
        for name, args in steps:
            done = run_once([AUDIT, "-d", str(scratch), *args], env=ENV)
            if done.code != 0:
                raise SystemExit(f"{name}: audit {args[0]} failed (exit {done.code})")
            first = run_once(query, env=ENV)
            warm = compare({"audit": lambda: run_once(query, env=ENV)}, runs, warmup=0)["audit"]
            results["cold"][name] = {
                "command_s": done.seconds,
                "first_s": first.seconds,
                "first_cpu_s": first.cpu,
                "warm_s": warm.median,
                "warm_cpu_s": warm.cpu,
                "lines": first.lines,
            }
            report.add(
                f"first query after {name}",
                f"{first.seconds / warm.median:.2f}x warm ({seconds(first.seconds)} vs "
                f"{seconds(warm.median)}; cpu {first.cpu / max(warm.cpu, 1e-9):.2f}x)",
                "<= 1.5x warm",
                first.seconds <= 1.5 * warm.median,
            )
    finally:
        if copy:
            shutil.rmtree(scratch, ignore_errors=True)


def bench_record(data: Path, runs: int, report: Report, results: dict[str, Any]) -> None:
    rec = data / "record"
    shutil.rmtree(rec, ignore_errors=True)
    rec.mkdir(parents=True)
    args = ["login", "--actor-id", "user-1", "--org-id", "org-1"]
    got = compare(
        {
            "audit": lambda: run_once([AUDIT, "-d", str(rec / "logs"), "record", *args], env=ENV),
            "minimal": lambda: run_once(
                [PY, str(HERE / "minimal_record.py"), *args, "--out", str(rec / "minimal.jsonl")],
                env=ENV,
            ),
        },
        max(runs * 4, 20),
        warmup=3,
    )
    a, m = got["audit"], got["minimal"]
    results["record"] = {n: {"median_s": x.median, "rss_mb": x.rss_mb} for n, x in got.items()}
    report.add(
        "audit record (new process)",
        f"{a.median / m.median:.2f}x minimal Typer app "
        f"({seconds(a.median)} vs {seconds(m.median)})",
        "<= 0.8x minimal app",
        a.median <= 0.8 * m.median,
    )


def bench_import(
    flat: Path, data: Path, entries: int, runs: int, report: Report, results: dict[str, Any]
) -> None:
    scratch = data / "import-bench"
    out = data / "jq-out.jsonl"

    def audit_import() -> Sample:
        shutil.rmtree(scratch, ignore_errors=True)
        return run_once([AUDIT, "-d", str(scratch), "import", str(flat)], env=ENV)

    def jq_copy() -> Sample:
        with open(out, "wb") as handle:
            return run_once(["jq", "-c", ".", str(flat)], stdout=handle)

    got = compare({"audit": audit_import, "jq": jq_copy}, runs, warmup=0)
    out.unlink(missing_ok=True)
    a, j = got["audit"], got["jq"]
    rate = entries / a.median
    results["import"] = {
        "audit_s": a.median,
        "jq_s": j.median,
        "entries_per_s": rate,
        "rss_mb": a.rss_mb,
    }
    report.add(
        "audit import (validated, fsynced)",
        f"{rate:,.0f} entries/s ({seconds(a.median)})",
        ">= 150,000 entries/s",
        rate >= 150_000,
    )
    report.add("", f"peak RSS {a.rss_mb:.0f} MB", "<= 100 MB", a.rss_mb <= 100)
    report.add(
        "",
        f"{a.median / j.median:.2f}x `jq -c . FILE > out` ({seconds(j.median)})",
        "<= 1.5x jq -c",
        a.median <= 1.5 * j.median,
    )
    # The first query after an import reads the indexes the import wrote. Its modules' bytecode
    # is compiled first (an import does not load them), on an empty store: that is Python's
    # first start, not the store's.
    run_once([AUDIT, "-d", str(data / "empty"), "query", "--count", "--action", "login"], env=ENV)
    cold = run_once(
        [AUDIT, "-d", str(scratch), "query", "--count", "--action", "role_updated"], env=ENV
    )
    warm = run_once(
        [AUDIT, "-d", str(scratch), "query", "--count", "--action", "role_updated"], env=ENV
    )
    results["first-query"] = {
        "cold_s": cold.seconds,
        "warm_s": warm.seconds,
        "cold_rss_mb": cold.rss_kb / 1024,
    }
    report.add(
        "first query after import (indexes)",
        f"{seconds(cold.seconds)} first, "
        f"{seconds(warm.seconds)} after, peak {cold.rss_kb / 1024:.0f} MB",
        "<= 1.5x the one after",
        cold.seconds <= 1.5 * warm.seconds,
    )
    shutil.rmtree(scratch, ignore_errors=True)


def bench_scaling(data: Path, runs: int) -> dict[str, Any]:
    """One-day query and full scan as history grows: 30, 100 and 300 days at ~33k entries/day."""
    rows = {}
    for days in (30, 100, 300):
        entries = days * 1_000_000 // 30
        _, logs = ensure_data(data, entries, days)
        run_once([AUDIT, "-d", str(logs), "query", "--count"], env=ENV)  # index once
        got = compare(
            {
                "one day": lambda logs=logs: run_once(
                    [
                        AUDIT,
                        "-d",
                        str(logs),
                        "query",
                        "--all",
                        "--format",
                        "jsonl",
                        "--since",
                        DAY,
                        "--until",
                        DAY,
                    ],
                    env=ENV,
                ),
                "one day, one action": lambda logs=logs: run_once(
                    [
                        AUDIT,
                        "-d",
                        str(logs),
                        "query",
                        "--all",
                        "--format",
                        "jsonl",
                        "--since",
                        DAY,
                        "--until",
                        DAY,
                        "--action",
                        "role_updated",
                    ],
                    env=ENV,
                ),
                "full scan": lambda logs=logs: run_once(
                    [AUDIT, "-d", str(logs), "query", "--all", "--format", "jsonl"], env=ENV
                ),
                "rare action, all days": lambda logs=logs: run_once(
                    [
                        AUDIT,
                        "-d",
                        str(logs),
                        "query",
                        "--all",
                        "--format",
                        "jsonl",
                        "--action",
                        "role_updated",
                    ],
                    env=ENV,
                ),
            },
            runs,
        )
        rows[days] = {
            name: {"median_s": r.median, "lines": r.lines, "rss_mb": r.rss_mb}
            for name, r in got.items()
        }
        print(
            f"# {days} days / {entries:,} entries: "
            + ", ".join(
                f"{name} {seconds(r.median)} ({r.lines:,} lines, {r.rss_mb:.0f} MB)"
                for name, r in got.items()
            ),
            flush=True,
        )
    print(
        "\n| history | entries | one day | one day, one action | rare action, all days "
        "| full scan | full scan per 1M |"
    )
    print("|---|---|---|---|---|---|---|")
    for days, row in rows.items():
        entries = days * 1_000_000 // 30
        full = row["full scan"]["median_s"]
        print(
            f"| {days} days | {entries:,} | {seconds(row['one day']['median_s'])} | "
            f"{seconds(row['one day, one action']['median_s'])} | "
            f"{seconds(row['rare action, all days']['median_s'])} | {seconds(full)} | "
            f"{seconds(full / (entries / 1e6))} |"
        )
    return rows


def print_report(report: Report) -> None:
    """The rows as a Markdown table, and how many targets were met."""
    print("\n| row | measured | target | met |\n|---|---|---|---|")
    for row in report.rows:
        mark = {True: "yes", False: "**no**", None: ""}[row["met"]]
        print(f"| {row['row'].strip()} | {row['measured']} | {row['target']} | {mark} |")
    met = sum(1 for row in report.rows if row["met"])
    judged = sum(1 for row in report.rows if row["met"] is not None)
    print(f"# {met} of {judged} targets met", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/benchdata"))
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool (jq: half)")
    parser.add_argument("--quick", action="store_true", help="skip the import benchmark")
    parser.add_argument("--scaling", action="store_true", help="only the scaling series")
    parser.add_argument("--gz", action="store_true", help="only rotated (gzip) days vs plain")
    parser.add_argument(
        "--member-kib",
        default="",
        help="--gz: also copies rotated into gzip members of these KiB (e.g. 16,8)",
    )
    parser.add_argument(
        "--vs-rg",
        type=Path,
        metavar="STORE",
        help="only the queries --keys on STORE (e.g. a copy of a 10M store) against ripgrep",
    )
    parser.add_argument("--keys", default="Q2,Q3,Q5,Q1", help="the queries of --vs-rg")
    parser.add_argument(
        "--records",
        type=Path,
        help="--vs-rg: a directory to keep the record of vouched-for indexes in between runs",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="only the first query after rotate/seal/record/retention (on a copy of the store)",
    )
    parser.add_argument(
        "--cold-in-place",
        type=Path,
        metavar="STORE",
        help="--cold on STORE itself, changing it (rotates 3 days, seals, records, deletes a day)",
    )
    parser.add_argument(
        "--import-only",
        type=Path,
        metavar="FILE",
        help="only the import rows, importing FILE (e.g. a 10M-entry file from gen_entries.py)",
    )
    args = parser.parse_args(argv)
    for tool in ("jq", "rg", "sha256sum"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y jq ripgrep)")
    args.data.mkdir(parents=True, exist_ok=True)
    setup_env(args.data)
    # An empty log directory (`audit init`: commands refuse a bare directory), for start-up.
    subprocess.run(
        [AUDIT, "init", str(args.data / "empty")], env=ENV, check=True, capture_output=True
    )
    print(f"# machine: {machine()}", flush=True)
    results: dict[str, Any] = {"machine": machine(), "runs": args.runs}
    if args.scaling:
        results["scaling"] = bench_scaling(args.data, args.runs)
    elif args.vs_rg or args.cold or args.cold_in_place:
        report = Report()
        if args.vs_rg:
            keys = args.keys.split(",")
            bench_vs_rg(args.vs_rg, args.runs, keys, report, results, args.records)
        elif args.cold_in_place:
            bench_cold(args.cold_in_place, args.data, args.runs, report, results, copy=False)
        else:
            bench_cold(args.data / "logs", args.data, args.runs, report, results)
        results["report"] = report.rows
        print_report(report)
    elif args.import_only:
        with open(args.import_only, "rb") as handle:
            entries = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))
        report = Report()
        bench_import(args.import_only, args.data, entries, args.runs, report, results)
        results["report"] = report.rows
        print_report(report)
    else:
        logs = args.data / "logs"
        if not args.gz or not logs.exists():  # the gz rows need the store, not the flat file
            flat, logs = ensure_data(args.data, 1_000_000, 30)
        report = Report()
        if args.gz:
            kib = [int(k) for k in args.member_kib.split(",") if k]
            bench_gz(logs, args.runs, report, results, kib)
        else:
            bench_queries(logs, args.runs, report, results)
            bench_record(args.data, args.runs, report, results)
        if not args.quick and not args.gz:
            bench_import(flat, args.data, 1_000_000, max(2, args.runs // 2), report, results)
        results["report"] = report.rows
        print_report(report)
    kind = "scaling" if args.scaling else "gz" if args.gz else "vs-rg" if args.vs_rg else "cold"
    kind = (
        kind
        if (args.scaling or args.gz or args.vs_rg or args.cold or args.cold_in_place)
        else "results"
    )
    out = args.data / f"{kind}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"# results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
