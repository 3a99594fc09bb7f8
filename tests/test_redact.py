"""`audit redact`: one person's personal data erased across days, writers, plain and gzip
files, with `audit verify` and the docs' stand-alone verifier green after, and every way to
abuse a redaction (another field changed, a line no receipt names, a forged, unsigned or
foreign receipt) caught by both; kill -9 at random points, then a rerun finishes the job."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from auditcli import chain, commitments
from auditcli.cli import app

VERIFIER = Path(__file__).parent.parent / "docs" / "verify_store.py"
ALICE, BOB = "user-1", "user-2"
D1, D2 = "2026-10-01", "2026-10-02"


def _audit(root: Path, *args: str, writer: str = "w1") -> tuple[int, str]:
    env = {"AUDIT_LOG_DIR": str(root), "AUDIT_WRITER_ID": writer}
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def _entry(n: int, day: str, actor: str, action: str = "login") -> dict:
    name = {ALICE: "Alice Smith", BOB: "Bob Jones"}[actor]
    email = {ALICE: "alice@example.com", BOB: "bob@example.com"}[actor]
    return {
        "id": f"{day}-{actor}-{n}",
        "description": f"{email} did {action}",
        "actorId": actor,
        "actorName": name,
        "actorEmail": email,
        "action": action,
        "target": "USER",
        "targetId": actor,
        "organizationId": "org-1",
        "metadata": {"email": email, "ip": "10.0.0.7", "input": {"userId": "user-9"}},
        "createdAt": f"{day}T0{n % 10}:00:0{n // 10}Z",
    }


def _import(root: Path, writer: str, entries: list[dict], tmp: Path) -> None:
    source = tmp / f"in-{writer}-{len(entries)}-{random.random()}.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert _audit(root, "import", str(source), writer=writer)[0] == 0


def _build(tmp: Path) -> tuple[Path, Path]:
    """(log directory, signing key): w1 and w2 on D1 (rotated to gzip), w1 and w2 on D2 (plain,
    w2's file holds only Bob), sealed by both writers with the key."""
    root, key = tmp / "logs", tmp / "seal.key"
    assert _audit(root, "init", "--redactable", str(root))[0] == 0
    assert _audit(root, "keys", "generate", "--out", str(key))[0] == 0
    _import(root, "w1", [_entry(n, D1, ALICE if n % 2 else BOB) for n in range(6)], tmp)
    _import(root, "w2", [_entry(n, D1, ALICE) for n in range(6, 8)], tmp)
    assert _audit(root, "rotate", "-q")[0] == 0
    _import(root, "w1", [_entry(n, D2, ALICE if n < 2 else BOB) for n in range(3)], tmp)
    _import(root, "w2", [_entry(n, D2, BOB) for n in range(3, 5)], tmp)
    for writer in ("w1", "w2"):
        assert _audit(root, "seal", "-q", "--signing-key", str(key), writer=writer)[0] == 0
    return root, key


def _verify(root: Path, key: Path) -> tuple[int, int, str]:
    """(audit verify's exit code, the docs verifier's, their problem lines)."""
    code, out = _audit(root, "verify", "--public-key", f"{key}.pub", "--format", "json")
    docs = subprocess.run(
        [sys.executable, str(VERIFIER), str(root), "--public-key", f"{key}.pub"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return code, docs.returncode, out + docs.stdout


def _lines(path: Path) -> list[bytes]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return data.splitlines(keepends=True)


def _write_lines(path: Path, lines: list[bytes]) -> None:
    data = b"".join(lines)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def _query(root: Path, *filters: str) -> list[dict]:
    code, out = _audit(root, "query", "--all", "--format", "jsonl", *filters)
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def redacted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A store after `audit redact --actor-id user-1`, its key, and what was seen before."""
    tmp = tmp_path_factory.mktemp("redact")
    root, key = _build(tmp)
    before = {
        "alice": {e["id"]: e for e in _query(root, "--actor-id", ALICE)},
        "bob": _query(root, "--actor-id", BOB),
        "w2-d2": os.stat(root / f"date={D2}" / "w2.jsonl"),
        "files": {p: p.read_bytes() for p in root.glob("date=*/*")},
        "history": _ids(json.loads(_audit(root, "history", "--actor-id", ALICE, "-f", "json")[1])),
        "state": _audit(root, "state", "users", "--at", "2026-10-03", "--format", "json")[1],
    }
    code, out = _audit(
        root, "redact", "--actor-id", ALICE, "--reason", "GDPR Art. 17 request #42", "--dry-run"
    )
    assert code == 0, out
    before["dry-run"] = out
    assert {p: p.read_bytes() for p in root.glob("date=*/*")} == before["files"]
    code, out = _audit(
        root,
        "redact",
        "--actor-id",
        ALICE,
        "--reason",
        "GDPR Art. 17 request #42",
        "--operator",
        "dpo-1",
        "--signing-key",
        str(key),
    )
    assert code == 0, out
    before["output"] = out
    return root, key, before


def test_dry_run_names_each_entry_and_field_and_changes_nothing(redacted) -> None:
    _, _, before = redacted
    lines = before["dry-run"].splitlines()
    assert lines[-1] == "would redact 7 entries in 3 file(s)"
    assert f"date={D1}/w1.jsonl.gz:2 {D1}-{ALICE}-1: " in before["dry-run"]
    fields = lines[0].split(": ", 1)[1].split(", ")
    personal = {"description", "actorName", "actorEmail", "metadata.email", "metadata.ip"}
    assert set(fields) == personal


def test_the_person_is_gone_the_record_of_what_happened_stays(redacted) -> None:
    root, _, before = redacted
    assert before["output"].startswith("redacted 7 entries in 3 file(s); receipt sha256:")
    after = {e["id"]: e for e in _query(root, "--actor-id", ALICE)}
    assert after.keys() == before["alice"].keys()
    for entry_id, entry in after.items():
        old = before["alice"][entry_id]
        assert list(entry) == list(chain.SEED_FIELDS)  # no salt, no redaction record
        assert entry["actorName"] == entry["actorEmail"] == commitments.MARKER
        assert entry["description"] == f"{commitments.MARKER} did login"
        assert entry["metadata"] == {
            "email": commitments.MARKER,
            "ip": commitments.MARKER,
            "input": {"userId": "user-9"},
        }
        for name in ("id", "action", "createdAt", "actorId", "targetId", "organizationId"):
            assert entry[name] == old[name]
    assert _query(root, "--actor-id", BOB) == before["bob"]
    stored = b"".join(b"".join(_lines(p)) for p in root.glob("date=*/*"))
    assert b"alice" not in stored.lower()
    # only the files holding Alice were rewritten: w2's D2 file holds only Bob
    now = os.stat(root / f"date={D2}" / "w2.jsonl")
    assert (now.st_ino, now.st_mtime_ns) == (before["w2-d2"].st_ino, before["w2-d2"].st_mtime_ns)


def test_verify_and_the_docs_verifier_are_green(redacted) -> None:
    root, key, _ = redacted
    code, docs, problems = _verify(root, key)
    assert (code, docs) == (0, 0), problems


def test_receipt_holds_hashes_reason_operator_and_no_personal_data(redacted) -> None:
    root, _, before = redacted
    [path] = list((root / "_manifests" / "w1").glob("*.receipt.json"))
    text = path.read_text()
    assert "alice" not in text.lower()
    body = json.loads(text)["manifest"]
    receipt = body["receipt"]
    assert (receipt["action"], receipt["reason"], receipt["operator"]) == (
        "redact",
        "GDPR Art. 17 request #42",
        "dpo-1",
    )
    assert json.loads(text)["signature"] is not None
    assert len(receipt["lines"]) == 7
    first = next(r for r in receipt["lines"] if r["name"] == f"date={D2}/w1.jsonl")
    current = _lines(root / f"date={D2}" / "w1.jsonl")[first["line"] - 1]
    assert first["new"] == "sha256:" + hashlib.sha256(current).hexdigest()
    original = next(p for p in before["files"] if p.name == "w1.jsonl" and D2 in str(p))
    old = before["files"][original].splitlines(keepends=True)[first["line"] - 1]
    assert first["old"] == "sha256:" + hashlib.sha256(old).hexdigest()
    assert {a["name"] for a in receipt["archives"]} == {
        f"date={D1}/w1.jsonl.gz",
        f"date={D1}/w2.jsonl.gz",
    }


def test_the_redaction_is_an_entry_without_personal_data_and_a_rerun_changes_nothing(
    redacted,
) -> None:
    root, key, _ = redacted
    [note] = _query(root, "--action", "entries_redacted")
    assert (note["actorId"], note["target"], note["targetId"]) == ("dpo-1", "ORGANIZATION", "org-1")
    assert note["metadata"]["count"] == 7
    assert note["metadata"]["reason"] == "GDPR Art. 17 request #42"
    assert "alice" not in json.dumps(note).lower()
    code, out = _audit(
        root, "redact", "--actor-id", ALICE, "--reason", "again", "--signing-key", str(key)
    )
    assert (code, out.strip()) == (0, "redacted 0 entries in 0 file(s)")


def _ids(history: dict) -> list[str]:
    return [item["entry"]["id"] for item in history["items"]]


def test_exports_history_and_state_work_on_the_redacted_store(redacted) -> None:
    root, _, before = redacted
    code, out = _audit(root, "export", "--format", "csv", "--actor-id", ALICE)
    assert code == 0 and "[redacted]" in out and "alice" not in out.lower()
    code, out = _audit(root, "export", "--format", "ocsf", "--actor-id", ALICE)
    assert code == 0 and "[redacted]" in out and "alice" not in out.lower()
    code, out = _audit(root, "history", "--actor-id", ALICE, "--format", "json")
    assert code == 0, out
    assert _ids(json.loads(out)) == before["history"]
    code, out = _audit(root, "state", "users", "--at", "2026-10-03", "--format", "json")
    assert code == 0, out
    assert out == before["state"]


def test_a_redaction_needs_a_reason_a_filter_and_a_key(tmp_path: Path) -> None:
    root, key = _build(tmp_path)
    for args in (
        ("--actor-id", ALICE, "--reason", " ", "--signing-key", str(key)),
        ("--reason", "r", "--signing-key", str(key)),
        ("--actor-id", ALICE, "--reason", "r"),
    ):
        code, out = _audit(root, "redact", *args)
        assert code == 2, out
    assert "alice" in (root / f"date={D2}" / "w1.jsonl").read_text()


# ------------------------------------------------------------------------------- abuse
def _copy(redacted, tmp_path: Path) -> tuple[Path, Path]:
    root, key, _ = redacted
    shutil.copytree(root, tmp_path / "copy")
    return tmp_path / "copy", key


def _edit_line(path: Path, number: int, old: bytes, new: bytes) -> None:
    lines = _lines(path)
    assert old in lines[number - 1]
    lines[number - 1] = lines[number - 1].replace(old, new)
    _write_lines(path, lines)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"action":"login"', b'"action":"user_added"'),
        (b'T00:00:00.000Z"', b'T00:00:09.000Z"'),
        (b'"organizationId":"org-1"', b'"organizationId":"org-2"'),
    ],
    ids=["action", "createdAt", "organizationId"],
)
def test_another_field_changed_under_cover_of_a_redaction_is_tampering(
    redacted, tmp_path: Path, old: bytes, new: bytes
) -> None:
    root, key = _copy(redacted, tmp_path)
    _edit_line(root / f"date={D2}" / "w1.jsonl", 1, old, new)
    code, docs, problems = _verify(root, key)
    assert code == 5 and docs == 1, problems
    assert f"date={D2}/w1.jsonl:1" in problems


def test_a_redaction_no_receipt_names_is_tampering(redacted, tmp_path: Path) -> None:
    """Bob's line redacted the way `audit redact` would (commitments intact), no receipt."""
    root, key = _copy(redacted, tmp_path)
    path = root / f"date={D2}" / "w1.jsonl"
    lines = _lines(path)
    content, link = chain.split_line(lines[2]) or (b"", b"")
    new = commitments.redact(content, {"actorName", "actorEmail"}, ())
    assert new is not None
    lines[2] = chain.chained_line(new, link)
    _write_lines(path, lines)
    code, docs, problems = _verify(root, key)
    assert code == 5 and docs == 1, problems
    assert f"date={D2}/w1.jsonl:3" in problems


def _receipt(root: Path) -> Path:
    return next((root / "_manifests" / "w1").glob("*.receipt.json"))


def test_a_forged_receipt_is_caught(redacted, tmp_path: Path) -> None:
    """The receipt's body altered to name a line it did not: its hash and signature break."""
    root, key = _copy(redacted, tmp_path)
    path = _receipt(root)
    envelope = json.loads(path.read_text())
    envelope["manifest"]["receipt"]["lines"][0]["line"] = 3
    path.write_text(json.dumps(envelope, sort_keys=True, separators=(",", ":")) + "\n")
    code, docs, problems = _verify(root, key)
    assert code == 5 and docs == 1, problems


def test_an_unsigned_receipt_excuses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redaction whose receipt went into the chain unsigned (made without the key)."""
    from auditcli.integrity import manifests
    from auditcli.query import Filters
    from auditcli.redact import redact_entries
    from auditcli.store import AuditStore

    root, key = _build(tmp_path)
    real = manifests.append_manifest
    monkeypatch.setattr(
        manifests, "append_manifest", lambda store, writer, body, _: real(store, writer, body, None)
    )
    store = AuditStore(root, writer_id="w1")
    redact_entries(store, Filters(actor_ids=(ALICE,)), reason="r", operator="x", signing_key=key)
    monkeypatch.undo()
    code, docs, problems = _verify(root, key)
    assert code == 5 and docs == 1, problems
    assert "redacted, and no signed redaction receipt names it" in problems


def test_a_receipt_from_another_store_excuses_nothing(redacted, tmp_path: Path) -> None:
    """Another store (its own key) whose Alice lines were redacted by hand, with the first
    store's signed receipt copied in as its next manifest."""
    other = tmp_path / "other"
    other.mkdir()
    root, key = _build(other)
    path = root / f"date={D2}" / "w1.jsonl"
    lines = _lines(path)
    for n in (0, 1):
        content, link = chain.split_line(lines[n]) or (b"", b"")
        new = commitments.redact(content, {"actorName", "actorEmail", "metadata.email"}, ())
        lines[n] = chain.chained_line(new or b"", link)
    _write_lines(path, lines)
    foreign = _receipt(redacted[0])
    shutil.copy(foreign, root / "_manifests" / "w1" / foreign.name)
    code, docs, problems = _verify(root, key)
    assert code == 5 and docs == 1, problems
    assert f"date={D2}/w1.jsonl:1" in problems


# ------------------------------------------------------------------- version 1 lines
def test_lines_written_before_commitments_are_replaced_whole_under_a_signed_receipt(
    tmp_path: Path,
) -> None:
    root, key = _build(tmp_path)
    # Rewrite w2's D2 file as the release before commitments wrote it (version 1 links).
    day = root / f"date={D2}"
    entries = [_entry(n, D2, ALICE) for n in range(5, 7)]
    link, out = chain.genesis(f"date={D2}", "w3"), []
    for entry in entries:
        entry["actionDisplayName"], entry["teamId"] = "User Login", None
        entry["createdAt"] = entry["createdAt"].replace("Z", ".000Z")
        content = orjson.dumps({name: entry.get(name) for name in chain.SEED_FIELDS})
        link = chain.link(link, content)
        out.append(chain.chained_line(content, link))
    (day / "w3.jsonl").write_bytes(b"".join(out))
    assert _audit(root, "seal", "-q", "--signing-key", str(key), writer="w3")[0] == 0
    assert _verify(root, key)[:2] == (0, 0)
    code, out_text = _audit(
        root, "redact", "--actor-id", ALICE, "--reason", "r", "--signing-key", str(key)
    )
    assert code == 0 and "(2 chain version 1: replaced whole)" in out_text, out_text
    assert "audit init --redactable" in out_text
    code, docs, problems = _verify(root, key)
    assert (code, docs) == (0, 0), problems
    # the same kind of edit with no receipt is tampering
    _edit_line(day / "w3.jsonl", 1, b'"action":"login"', b'"action":"user_added"')
    code, docs, problems = _verify(root, key)
    assert code == 5 and docs == 1, problems


# --------------------------------------------------------- the setting: opt-in per store
def _versions(path: Path) -> list[int]:
    """The chain version of each line of `path`, checked: a version 1 line's link is over its
    exact bytes (as before chain version 2 existed), a version 2 line holds a salt."""
    partition, segment = path.parent.name, path.name.split(".")[0]
    previous, out = chain.genesis(partition, segment), []
    for line in _lines(path):
        content, link = chain.split_line(line) or (b"", b"")
        if b'"_salt":"' in content:
            out.append(2)
        else:
            assert chain.link(previous, content) == link  # main's format, byte for byte
            out.append(1)
        previous = link
    return out


def _record_login(root: Path) -> None:
    """`audit record login` by Alice, today."""
    args = ("--actor-id", ALICE, "--actor-name", "Alice Smith", "--org-id", "org-1")
    code, out = _audit(root, "record", "login", *args)
    assert code == 0, out


def test_a_default_store_writes_version_1_lines_a_redactable_one_version_2(
    tmp_path: Path,
) -> None:
    """record and import write version 1 lines unless the store is redactable; `audit init
    --redactable` on an existing store changes only the lines written after it, every writer
    (a new process) honours it, and verify and redact work on the mix."""
    from auditcli.store import STORE_MARKER, AuditStore, init_store, is_redactable

    root, key = tmp_path / "logs", tmp_path / "seal.key"
    code, out = _audit(root, "init", str(root))
    assert code == 0 and not is_redactable(root), out
    assert _audit(root, "keys", "generate", "--out", str(key))[0] == 0
    _import(root, "w1", [_entry(n, D1, ALICE) for n in range(3)], tmp_path)
    _record_login(root)
    today = next(p for p in root.glob("date=*") if p.name != f"date={D1}")
    assert _versions(root / f"date={D1}" / "w1.jsonl") == [1, 1, 1]
    assert _versions(today / "w1.jsonl") == [1]
    assert b"_salt" not in b"".join(p.read_bytes() for p in root.glob("date=*/*"))

    code, out = _audit(root, "init", "--redactable", str(root))
    assert code == 0 and "made redactable" in out, out
    assert is_redactable(root)
    assert json.loads((root / STORE_MARKER).read_text())["redactable"] is True
    assert _audit(root, "init", str(root))[0] == 0  # a plain init keeps the setting
    assert is_redactable(root)
    _import(root, "w1", [_entry(n, D1, ALICE) for n in range(3, 5)], tmp_path)
    _import(root, "w2", [_entry(n, D1, ALICE) for n in range(5, 6)], tmp_path)
    _record_login(root)
    assert _versions(root / f"date={D1}" / "w1.jsonl") == [1, 1, 1, 2, 2]
    assert _versions(root / f"date={D1}" / "w2.jsonl") == [2]
    assert _versions(today / "w1.jsonl") == [1, 2]
    # the Python API reads the same setting
    AuditStore(root, writer_id="w3").append([_entry(6, D1, ALICE)])
    assert _versions(root / f"date={D1}" / "w3.jsonl") == [2]
    assert init_store(root, redactable=True) is False

    assert _audit(root, "seal", "-q", "--signing-key", str(key))[0] == 0
    code, out = _audit(
        root, "redact", "--actor-id", ALICE, "--reason", "r", "--signing-key", str(key)
    )
    assert code == 0 and "(4 chain version 1: replaced whole)" in out, out
    code, docs, problems = _verify(root, key)
    assert (code, docs) == (0, 0), problems


def test_a_damaged_marker_stops_writes_naming_it(tmp_path: Path) -> None:
    from auditcli.store import STORE_MARKER

    root = tmp_path / "logs"
    assert _audit(root, "init", str(root))[0] == 0
    (root / STORE_MARKER).write_text('{"format":"auditcli-log-directory","redactable":"yes"}')
    code, out = _audit(root, "record", "login", "--actor-id", ALICE, "--org-id", "org-1")
    assert code == 5 and STORE_MARKER in out, out
    assert not list(root.glob("date=*"))
    (root / STORE_MARKER).unlink()
    (root / STORE_MARKER).symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text('{"redactable":true}')
    code, out = _audit(root, "record", "login", "--actor-id", ALICE, "--org-id", "org-1")
    assert code == 5 and "symbolic link" in out, out
    assert not list(root.glob("date=*"))


# ------------------------------------------------------------------------ crash safety
#: `audit …` that SIGKILLs itself at the n-th fsync (argv[1]): every step a redaction makes
#: durable (a temp file written, the receipt, each rename, the entry) ends in one.
KILL_AT_FSYNC = """
import os, runpy, signal, sys
nth, calls, real = int(sys.argv.pop(1)), [0], os.fsync
def fsync(fd):
    calls[0] += 1
    if calls[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(fd)
os.fsync = fsync
sys.argv = ["audit", *sys.argv[1:]]
runpy.run_module("auditcli", run_name="__main__")
"""


def test_kill_9_at_random_points_then_a_rerun_finishes(tmp_path: Path) -> None:
    root, key = tmp_path / "logs", tmp_path / "seal.key"
    assert _audit(root, "init", "--redactable", str(root))[0] == 0
    assert _audit(root, "keys", "generate", "--out", str(key))[0] == 0
    days = [f"2026-09-{d:02d}" for d in range(1, 7)]
    for day in days:
        _import(
            root, "w1", [_entry(n, day, ALICE if n % 3 == 0 else BOB) for n in range(90)], tmp_path
        )
    assert _audit(root, "rotate", "-q")[0] == 0
    _import(root, "w2", [_entry(n, days[0], ALICE) for n in range(90, 99)], tmp_path)
    assert _audit(root, "seal", "-q", "--signing-key", str(key))[0] == 0
    env = {**os.environ, "AUDIT_LOG_DIR": str(root), "AUDIT_WRITER_ID": "w1"}
    args = ["redact", "--actor-id", ALICE, "--reason", "r", "--signing-key", str(key)]
    codes = []
    for nth in sorted(random.Random(17).sample(range(1, 18), 4)):
        killed = subprocess.run(
            [sys.executable, "-c", KILL_AT_FSYNC, str(nth), *args],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        codes.append(killed.returncode)
        # After each kill the store is whole: every file the old or the new one.
        code, docs, problems = _verify(root, key)
        assert (code, docs) == (0, 0), problems
    assert codes[0] == -signal.SIGKILL, codes
    done = subprocess.run(
        [sys.executable, "-m", "auditcli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not list(root.glob("date=*/.*"))  # no temp left
    stored = b"".join(b"".join(_lines(p)) for p in root.glob("date=*/*"))
    assert b"alice" not in stored.lower()
    assert len(_query(root, "--actor-id", ALICE)) == 6 * 30 + 9
    code, docs, problems = _verify(root, key)
    assert (code, docs) == (0, 0), problems


def test_line_indexes_of_rewritten_files_are_dropped_not_served_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditcli import query

    root, key = _build(tmp_path)
    monkeypatch.setattr(query, "INDEX_MIN_BYTES", 0)  # index even these small files
    assert _query(root, "--actor-id", ALICE)[0]["actorName"] == "Alice Smith"
    indexes = list((root / "_index").rglob("*.idx"))
    assert any(p.name == "w1.jsonl.idx" for p in indexes), indexes
    code, out = _audit(root, "redact", "--actor-id", ALICE, "--reason", "r", "--signing-key", key)
    assert code == 0, out
    assert {e["actorName"] for e in _query(root, "--actor-id", ALICE)} == {commitments.MARKER}
    code, out = _audit(root, "verify", "--public-key", f"{key}.pub")
    assert code == 0, out


def test_the_http_api_shows_the_marker(redacted, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from auditcli.accounts import AccountStore
    from auditcli.server import create_app
    from auditcli.store import AuditStore

    root, _ = _copy(redacted, tmp_path)  # creating an account records an entry
    store = AuditStore(root, writer_id="w1")
    token = AccountStore(store).create("admin-1", "org-1", "admin", actor={"actorId": "t"})[1]
    client = TestClient(create_app(AuditStore(root)), raise_server_exceptions=False)
    response = client.get(
        "/api/v1/audit-logs",
        params={"actorId": ALICE, "limit": 100},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    logs = response.json()["logs"]
    assert len(logs) == 7
    assert all(list(e) == list(chain.SEED_FIELDS) for e in logs)
    assert {e["actorEmail"] for e in logs} == {commitments.MARKER}
    assert "alice" not in response.text.lower()


def test_new_lines_are_indexed_like_old_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line index is built from version 2 lines (their salt is no entry field)."""
    from auditcli import query

    root, _ = _build(tmp_path)
    monkeypatch.setattr(query, "INDEX_MIN_BYTES", 0)
    assert len(_query(root, "--actor-id", ALICE)) == 7
    index = root / "_index" / f"date={D2}" / "w1.jsonl.idx"
    assert b'"usable":true' in index.read_bytes()[:4096]
