"""Re-running after a crash never duplicates (issue 12 items 5 and 6): an import of id-less
lines killed with SIGKILL mid-write and run again; service accounts and the log agree after a
fault or a kill at every step of `service-account create` and `delete`."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(AUDIT_WRITER_ID="w1", **extra)
    return env


def _stored(root: Path) -> list[dict]:
    out = []
    for path in sorted(root.glob("date=*/*.jsonl*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        out += [orjson.loads(line) for line in data.splitlines() if line.endswith(b"}")]
    return out


def _written(root: Path) -> int:
    return sum(p.stat().st_size for p in root.glob("date=*/*.jsonl"))


def test_an_id_less_import_killed_mid_write_and_run_again_stores_each_line_once(
    tmp_path: Path,
) -> None:
    root = tmp_path / "log"
    lines = [
        {
            "action": "login",
            "actorId": f"user-{n % 50}",
            "organizationId": "org-1",
            "createdAt": f"2026-03-0{1 + n % 3}T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:"
            f"{n % 60:02d}.000Z",
            "metadata": {"pad": "x" * 200},
        }
        for n in range(12000)
    ]
    lines += lines[:5]  # five lines twice: two entries each, as the input says
    source = tmp_path / "idless.jsonl"
    source.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in lines))
    proc = subprocess.Popen(
        [sys.executable, "-m", "auditcli", "-d", str(root), "import", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and _written(root) < 400_000 and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    first = len(_stored(root))
    assert 0 < first < len(lines), "the kill did not land mid-import"
    again = subprocess.run(
        [sys.executable, "-m", "auditcli", "-d", str(root), "import", str(source)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        f"imported {len(lines) - first} entries, {first} duplicate(s) skipped\n"
    )
    stored = _stored(root)
    assert len(stored) == len(lines) == 12005
    assert max(Counter(entry["id"] for entry in stored).values()) == 1
    assert "note:" not in again.stderr


def test_id_and_time_less_lines_are_named_as_not_safe_to_rerun(tmp_path: Path) -> None:
    root = tmp_path / "log"
    source = tmp_path / "x.jsonl"
    source.write_bytes(
        b'{"action":"login","actorId":"u","organizationId":"o"}\n'
        b'{"action":"login","actorId":"u","organizationId":"o","createdAt":"2026-03-01T10:00Z"}\n'
    )
    run = [sys.executable, "-m", "auditcli", "-d", str(root), "import", str(source)]
    first = subprocess.run(run, capture_output=True, text=True, env=_env(), check=False)
    assert first.returncode == 0
    assert "1 line(s) had neither id nor createdAt" in first.stderr
    second = subprocess.run(run, capture_output=True, text=True, env=_env(), check=False)
    assert second.stdout == "imported 1 entries, 1 duplicate(s) skipped\n"
