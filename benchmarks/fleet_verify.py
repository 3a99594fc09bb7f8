"""Benchmark `audit verify` on a merged fleet store against `sha256sum` over the same files.

    python benchmarks/fleet_verify.py                       # 50 writers x 365 days
    python benchmarks/fleet_verify.py --writers 5 --days 30 --runs 1   # a quick look

Builds (under --data, default /tmp/benchfleet, never in the repository) a store as the central
copy of a fleet would hold it: W writers, each with D daily files of --per-day small entries
(built by the entry model and chained exactly as `audit record` stores them), and each writer's
own signed chain with one seal per day listing that day's file (what a daily `audit seal` adds:
one small file per writer per seal). Memory is measured on two more stores, one with a fifth of
the writers and one with a fifth of the days, to show what it grows with.

Each measurement is a new process (wall time, CPU time and peak RSS from wait4: run.py's
helpers, bytecode cache on). `audit verify` has two peers, each run as one process and as two
at a time (`xargs -P 2`: verify checks writers in one worker per CPU): `sha256sum` over the
data files, and `sha256sum` over every file verify reads (data files, manifests, kept leaf
hashes under `_index/merkle/`). `audit verify` runs cold (its record of earlier verifies,
integrity/proven.py, emptied before each run) and repeat (the record the previous run left),
each with its own XDG_CACHE_HOME beside the store. All run alternately after a warm-up;
medians reported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import run  # noqa: E402  (benchmarks/run.py: the timing helpers every benchmark shares)

from auditcli import chain  # noqa: E402
from auditcli.integrity import generate_keys, load_signing_key  # noqa: E402
from auditcli.integrity.manifests import append_manifest, file_record, manifest_lock  # noqa: E402
from auditcli.integrity.tree import TreeBuilder, TreeStart, head_of  # noqa: E402
from auditcli.model import build_entry, dumps_entry  # noqa: E402
from auditcli.store import AuditStore, LogFile  # noqa: E402

FIRST_DAY = dt.date(2025, 11, 1)


def build(root: Path, writers: int, days: int, per_day: int) -> None:
    """Write the store: files chained as stored, then each writer's daily seals."""
    if (root / ".complete").exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    store = AuditStore(root, writer_id="loghost")
    keys = root.parent / "keys"
    keys.mkdir(exist_ok=True)
    for w in range(writers):
        writer = f"host{w:03d}"
        key_path = keys / f"{writer}.key"
        if not key_path.exists():
            generate_keys(key_path)
        key = load_signing_key(key_path)
        base = None
        for d in range(days):
            day = (FIRST_DAY + dt.timedelta(days=d)).isoformat()
            partition = root / f"date={day}"
            partition.mkdir(exist_ok=True, mode=0o700)
            link = chain.genesis(f"date={day}", writer)
            lines = []
            for i in range(per_day):
                created = f"{day}T{i % 24:02d}:{(i // 24) % 60:02d}:{w % 60:02d}.000Z"
                entry = build_entry(
                    {
                        "action": "login",
                        "actorId": f"user-{(w * 7 + i) % 500}",
                        "organizationId": "org-1",
                        "createdAt": created,
                    },
                    store.catalog,
                )
                content = dumps_entry(entry)
                link = chain.link(link, content)
                lines.append(chain.chained_line(content, link))
            path = partition / f"{writer}.jsonl"
            path.write_bytes(b"".join(lines))
            os.chmod(path, 0o600)
            # the seal that ran the next morning: it lists the one file that changed
            sealed_at = f"{(FIRST_DAY + dt.timedelta(days=d + 1)).isoformat()}T01:00:00.000Z"
            record = file_record(LogFile(day, writer, path, False))
            body = {
                "kind": "seal",
                "sealedAt": sealed_at,
                "files": [record],
                "totals": {"files": d + 1, "lines": (d + 1) * per_day, "changed": 1},
            }
            # The Merkle tree head a seal adds (format 3), continuing the previous seal's tree:
            # the day's file is new, so the tree held none of its lines.
            builder = TreeBuilder(store, TreeStart(writer, base, {}))
            builder.add(record)
            body.update(builder.fields())
            with manifest_lock(store):
                base = head_of(append_manifest(store, writer, body, key))
        print(f"  built {writer} ({days} days)", file=sys.stderr, end="\r")
    (root / ".complete").write_text("ok\n")
    print(file=sys.stderr)


def subset(big: Path, root: Path, writers: int, days: int, per_day: int) -> None:
    """A smaller store made of hard links into the big one: the first `writers` writers and the
    first `days` days, with the seals of those days (seal N lists day N's file) and their kept
    leaf hashes."""
    if (root / ".complete").exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    names = [f"host{w:03d}" for w in range(writers)]
    for d in range(days):
        day = (FIRST_DAY + dt.timedelta(days=d)).isoformat()
        (root / f"date={day}").mkdir()
        for name in names:
            os.link(big / f"date={day}" / f"{name}.jsonl", root / f"date={day}" / f"{name}.jsonl")
    for name in names:
        (root / "_manifests" / name).mkdir(parents=True)
        for path in sorted((big / "_manifests" / name).glob("*.json"))[:days]:
            os.link(path, root / "_manifests" / name / path.name)
        # the kept leaf hashes of those seals (`FIRST-END-ROOT.leaves`, END <= the lines kept)
        kept = root / "_index" / "merkle" / name
        kept.mkdir(parents=True)
        for path in (big / "_index" / "merkle" / name).glob("*.leaves"):
            if int(path.name.split("-")[1]) <= days * per_day:
                os.link(path, kept / path.name)
    (root / ".complete").write_text("ok\n")


def data_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.glob("date=*/*.jsonl*"))


def measure(root: Path, runs: int) -> dict[str, Any]:
    """`audit verify` and its peers, alternately, medians (run.py's `compare`). Verify twice:
    cold (its record of earlier verifies emptied before each run, so every line is hashed and
    the record written) and repeat (the record a previous verify of the same store left)."""
    env = {**run.ENV, "AUDIT_LOG_DIR": str(root)}
    cold_cache, warm_cache = root.parent / "cache-cold", root.parent / "cache-repeat"
    shutil.rmtree(warm_cache, ignore_errors=True)
    files = data_files(root)
    manifests = sorted(str(p) for p in root.glob("_manifests/*/*.json"))
    kept = sorted(str(p) for p in root.glob("_index/merkle/*/*.leaves"))
    # xargs keeps the argument lists short; sha256sum hashes every file once, in one process
    # at a time or (-P 2) in two at a time, as verify's two workers do on 2 cores. Two sets of
    # files: the data files, and every file verify reads (data, manifests, kept leaf hashes).
    data = '-path "*/date=*" -name "*.jsonl*"'
    every = (
        f'\\( {data} -o -path "*/_manifests/*" -name "*.json"'
        ' -o -path "*/_index/merkle/*" -name "*.leaves" \\)'
    )
    find = 'find "$0" {} -print0 | xargs -0 {} sha256sum'
    audit_verify = [sys.executable, "-m", "auditcli", "verify", "--format", "json"]
    tools = {
        # sh empties the record, then becomes verify (the removal is timed too: a few ms)
        "verify": ["sh", "-c", 'rm -rf "$0"; exec "$@"', str(cold_cache), *audit_verify],
        "verify repeat": audit_verify,
        "sha256sum": ["sh", "-c", find.format(data, ""), str(root)],
        "sha256sum -P2": ["sh", "-c", find.format(data, "-P 2"), str(root)],
        "sha256sum all": ["sh", "-c", find.format(every, ""), str(root)],
        "sha256sum all -P2": ["sh", "-c", find.format(every, "-P 2"), str(root)],
    }
    inproc = [
        sys.executable,
        "-c",
        "import sys, time\n"
        "from auditcli.integrity import verify\n"
        "from auditcli.store import AuditStore\n"
        "t = time.perf_counter()\n"
        "report = verify(AuditStore(sys.argv[1], writer_id='loghost'))\n"
        "assert report.ok, report.problems[:3]\n"
        "print(time.perf_counter() - t)\n",
        str(root),
    ]
    caches = {"verify": cold_cache, "verify repeat": warm_cache}
    envs = {name: {**env, "XDG_CACHE_HOME": str(caches.get(name, cold_cache))} for name in tools}
    results = run.compare(
        {
            name: (lambda argv=argv, name=name: run.run_once(argv, envs[name], subprocess.DEVNULL))
            for name, argv in tools.items()
        },
        runs,
    )
    shutil.rmtree(cold_cache, ignore_errors=True)  # the in-process run is cold too
    inside = float(
        subprocess.run(inproc, env=envs["verify"], capture_output=True, check=True).stdout
    )
    shutil.rmtree(cold_cache, ignore_errors=True)
    shutil.rmtree(warm_cache, ignore_errors=True)
    return {
        "files": len(files),
        "bytes": sum(os.path.getsize(p) for p in files),
        "manifests": len(manifests),
        "manifest_bytes": sum(os.path.getsize(p) for p in manifests),
        "kept": len(kept),
        "kept_bytes": sum(os.path.getsize(p) for p in kept),
        "in_process_s": inside,
        **{name: results[name] for name in tools},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=24, help="entries per writer per day")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("/tmp/benchfleet"))
    args = parser.parse_args()
    shapes = [
        (args.writers, args.days),
        (max(1, args.writers // 5), args.days),
        (args.writers, max(1, args.days // 5)),
    ]
    print(
        f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )
    run.setup_env(args.data)  # bytecode cache on, as in an installed copy
    print(
        "| writers x days | data files (MB) | manifests (MB) | kept leaf files (MB) |"
        " `audit verify` cold / repeat | in-process `verify()` (cold) |"
        " `sha256sum` data, 1 / 2 processes | ratio cold / repeat |"
        " `sha256sum` all files, 1 / 2 processes | ratio cold / repeat |"
        " CPU time verify cold / repeat / data / all | verify peak RSS cold / repeat |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    big = args.data / f"w{args.writers}-d{args.days}-p{args.per_day}" / "logs"
    for writers, days in shapes:
        root = args.data / f"w{writers}-d{days}-p{args.per_day}" / "logs"
        if root == big:
            build(root, writers, days, args.per_day)
        else:
            subset(big, root, writers, days, args.per_day)
        m = measure(root, args.runs if (writers, days) == shapes[0] else 1)
        verify, again = m["verify"], m["verify repeat"]
        data1, data2 = m["sha256sum"], m["sha256sum -P2"]
        all1, all2 = m["sha256sum all"], m["sha256sum all -P2"]
        print(
            f"| {writers} x {days} | {m['files']} ({m['bytes'] / 1e6:.0f}) |"
            f" {m['manifests']} ({m['manifest_bytes'] / 1e6:.1f}) |"
            f" {m['kept']} ({m['kept_bytes'] / 1e6:.1f}) |"
            f" {verify.median:.2f} s / {again.median:.2f} s | {m['in_process_s']:.2f} s |"
            f" {data1.median:.2f} s / {data2.median:.2f} s |"
            f" {verify.median / data1.median:.2f}x / {again.median / data1.median:.2f}x |"
            f" {all1.median:.2f} s / {all2.median:.2f} s |"
            f" {verify.median / all1.median:.2f}x / {again.median / all1.median:.2f}x |"
            f" {verify.cpu:.2f} s / {again.cpu:.2f} s / {data1.cpu:.2f} s / {all1.cpu:.2f} s"
            f" = {verify.cpu / all1.cpu:.1f}x / {again.cpu / all1.cpu:.1f}x all |"
            f" {verify.rss_mb:.0f} / {again.rss_mb:.0f} MiB |",
            flush=True,
        )
    print(f"# load average after the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
