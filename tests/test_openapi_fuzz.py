"""The OpenAPI document describes what `audit serve` accepts: schemathesis (the real tool, from
PyPI) runs every check against a real server process, bounded in examples and time.

It sends schema-valid requests (each must be accepted) and schema-violating ones (each must be
refused), checks status codes, content types, headers and bodies against the document, and that
requests without the token are refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serving import Server

from auditcli.accounts import AccountStore
from auditcli.store import AuditStore


def _store(root: Path) -> str:
    """Entries of two organizations and an admin token of one; returns the token."""
    store = AuditStore(root, writer_id="w1")
    store.append(
        {
            "action": action,
            "actorId": f"u{n}",
            "targetId": f"t{n}",
            "organizationId": f"org-{n % 2}",
            "createdAt": f"2026-11-0{1 + n % 3}T00:00:0{n % 10}Z",
        }
        for n, action in enumerate(["login", "user_added", "role_created"] * 10)
    )
    _, token = AccountStore(store).create("fuzz", "org-1", "admin", actor={"actorId": "t"})
    return token


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    tool = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(tool).exists():
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    root = tmp_path / "logs"
    token = _store(root)
    server = Server(root, tmp_path / "serve.log")
    try:
        run = subprocess.run(
            [
                tool,
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "all",
                "--header",
                f"Authorization: Bearer {token}",
                "--max-examples",
                "60",
                "--seed",
                "11",
                "--generation-database",
                "none",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=tmp_path,
        )
    finally:
        stopped_in = server.stop()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1]
    assert stopped_in < 5
    log = server.log.read_text()
    assert token not in log
    assert "?" not in "".join(line for line in log.splitlines() if '"GET ' in line)
