"""docs/verify_store.py, the verifier written from docs/store-format.md alone (standard library
and `cryptography`, nothing from auditcli), run as an auditor runs it: on a real store made by
the `audit` CLI (plain and rotated days, a retention deletion with its receipt, signed seals),
and on tampered copies of it, each of which it must reject, as `audit verify` does.
"""

from __future__ import annotations

import ast
import base64
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from auditcli import chain
from auditcli.cli import app

VERIFIER = Path(__file__).parent.parent / "docs" / "verify_store.py"


LEGACY = Path(__file__).parent / "data" / "legacy-store"


def _audit(root: Path, *args: str, writer: str = "w1") -> tuple[int, str]:
    env = {"AUDIT_LOG_DIR": str(root), "AUDIT_WRITER_ID": writer}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def _verifier(root: Path, key: Path | None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(VERIFIER), str(root)]
    if key is not None:
        args += ["--public-key", str(key)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(log directory, public key): two writers' chains, days plain and rotated, one deleted
    with a receipt (in w1's chain, the writer running rotate)."""
    base = tmp_path_factory.mktemp("verify")
    root, key = base / "logs", base / "seal.key"
    assert _audit(root, "keys", "generate", "--out", str(key))[0] == 0
    today = datetime.now(UTC).date()
    for age in (60, 3, 2, 0):
        day = today - timedelta(days=age)
        for n in range(4):
            code, out = _audit(
                root, "record", "login", "--actor-id", f"u{n}", "--org-id", "o1",
                "--created-at", f"{day}T0{n}:00:00Z", "--description", f"é {n}\nline two",
            )  # fmt: skip
            assert code == 0, out
    assert _audit(root, "seal", "--signing-key", str(key))[0] == 0
    code, out = _audit(
        root, "rotate", "--compress-after", "1", "--delete-after", "30", "--signing-key", str(key)
    )
    assert code == 0, out
    assert _audit(root, "record", "login", "--actor-id", "late", "--org-id", "o1")[0] == 0
    code, out = _audit(root, "record", "login", "--actor-id", "w2", "--org-id", "o1", writer="w2")
    assert code == 0, out
    assert _audit(root, "seal", "--signing-key", str(key))[0] == 0
    assert len(list(root.glob("date=*/*.jsonl.gz"))) == 2
    assert sorted(p.name for p in (root / "_manifests").iterdir() if p.is_dir()) == ["w1", "w2"]
    return root, key.with_name("seal.key.pub")


def test_a_real_sealed_store_verifies(sealed: tuple[Path, Path]) -> None:
    root, public = sealed
    assert _audit(root, "verify", "--public-key", str(public))[0] == 0
    result = _verifier(root, public)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "" and result.stderr.startswith("OK: 4 files, 14 lines")
    assert _verifier(root, None).returncode == 0  # the embedded key: consistent, proves less
    tree = ast.parse(VERIFIER.read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - {"__future__", "cryptography"} <= sys.stdlib_module_names


def test_a_legacy_store_and_its_migration_verify(tmp_path: Path) -> None:
    """A store sealed by the release before per-writer chains (the flat format 1 chain), then
    the same store once `audit seal` started each writer's chain on top of it."""
    root = tmp_path / "logs"
    shutil.copytree(LEGACY / "logs", root)
    public = LEGACY / "seal.key.pub"
    result = _verifier(root, public)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.startswith("OK: 2 files, 7 lines"), result.stderr
    assert _audit(root, "seal", "--signing-key", str(LEGACY / "seal.key"))[0] == 0
    assert (root / "_manifests" / "web1").is_dir() and (root / "_manifests" / "web2").is_dir()
    migrated = _verifier(root, public)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    newest = sorted((root / "_manifests").glob("0*.json"))[-1]
    newest.unlink()  # the legacy head the writers' first manifests continue
    cut = _verifier(root, public)
    assert cut.returncode == 1 and "continues a legacy manifest no longer there" in cut.stdout


def _first(root: Path, pattern: str) -> Path:
    return sorted(root.glob(pattern))[0]


def _edit_plain(root: Path) -> None:
    path = _first(root, "date=*/*.jsonl")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"late", b"LATE", 1))


def _edit_gzip(root: Path) -> None:
    path = _first(root, "date=*/*.jsonl.gz")
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()).replace(b"u1", b"u7", 1)))


def _truncate(root: Path) -> None:
    path = _first(root, "date=*/*.jsonl.gz")
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join(lines[:-1])))


def _rechain(root: Path) -> None:
    # Whoever can write the directory rewrites a day and recomputes every link.
    path = _first(root, "date=*/*.jsonl.gz")
    day, segment = path.parent.name, path.name.removesuffix(".jsonl.gz")
    link, out = chain.genesis(day, segment), []
    for line in gzip.decompress(path.read_bytes()).splitlines(keepends=True):
        content = chain.content_of(line).replace(b"u2", b"u8")
        link = chain.link(link, content)
        out.append(chain.chained_line(content, link))
    path.write_bytes(gzip.compress(b"".join(out)))


def _manifests(root: Path) -> list[Path]:
    """w1's chain, in order."""
    return sorted((root / "_manifests" / "w1").glob("*.json"))


def _copy_to_other_chain(root: Path) -> None:
    # w1's newest seal copied over w2's newest: hashed, signed, but in the wrong chain.
    w2 = sorted((root / "_manifests" / "w2").glob("*.json"))[-1]
    w2.write_bytes(_manifests(root)[-1].read_bytes())


def _edit_manifest(root: Path) -> None:
    path = _manifests(root)[0]
    path.write_bytes(path.read_bytes().replace(b'"lines":4', b'"lines":3', 1))


def _resign_manifest(root: Path) -> None:
    # A new body, hashed and signed correctly, but with a key that is not the auditor's.
    path = _manifests(root)[-1]
    envelope = json.loads(path.read_bytes())
    body = envelope["manifest"]
    body["totals"]["lines"] += 1
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes_raw()
    envelope["hash"] = chain.tag(hashlib.sha256(canonical).digest())
    envelope["signature"] = {
        "algorithm": "ed25519",
        "keyId": chain.tag(hashlib.sha256(raw).digest()),
        "publicKey": base64.b64encode(raw).decode(),
        "value": base64.b64encode(key.sign(b"auditcli-manifest/1\n" + canonical)).decode(),
    }
    path.write_bytes(json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode() + b"\n")


def _drop_manifest(root: Path) -> None:
    _manifests(root)[1].unlink()


def _delete_file(root: Path) -> None:
    _first(root, "date=*/*.jsonl.gz").unlink()


def _torn(root: Path) -> None:
    with open(_first(root, "date=*/*.jsonl"), "ab") as handle:
        handle.write(b'{"id":"x","descr')


@pytest.mark.parametrize(
    ("tamper", "found"),
    [
        (_edit_plain, "chain link does not follow"),
        (_edit_gzip, "chain link does not follow"),
        (_truncate, "truncated"),
        (_rechain, "rewritten"),
        (_edit_manifest, "its body hashes to"),
        (_resign_manifest, "signed by"),
        (_drop_manifest, "a manifest is missing"),
        (_delete_file, "no retention receipt"),
        (_copy_to_other_chain, "but is in w2's chain"),
        (_torn, "torn line"),
    ],
)
def test_a_tampered_copy_is_rejected(
    sealed: tuple[Path, Path],
    tmp_path: Path,
    tamper: Callable[[Path], None],
    found: str,
) -> None:
    root, public = sealed
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    tamper(copy)
    result = _verifier(copy, public)
    assert result.returncode == 1, result.stdout + result.stderr
    assert found in result.stdout, result.stdout
    # and the tool itself agrees that something is wrong
    assert _audit(copy, "verify", "--public-key", str(public))[0] == 5
