"""A repeat verify and the record of what earlier verifies proved (integrity/proven.py): the
same report as a first verify, no line hashed again for bytes the record vouches for, and
anything changed since (a byte, a file under another name, a manifest, the kept leaf hashes)
found exactly as a first verify finds it; a record anyone else could write is not believed."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditcli import integrity
from auditcli.integrity import proven
from auditcli.store import AuditStore

verify_module = importlib.import_module("auditcli.integrity.verify.verifier")
tree_module = importlib.import_module("auditcli.integrity.tree")

WRITERS = ("alpha", "bravo")
DAYS = ("2026-11-18", "2026-11-19")


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    """Two writers, two days of 8 entries each, sealed (signed, with tree heads), then
    verified once: the record holds what that verify proved."""
    key = tmp_path / "seal.key"
    integrity.generate_keys(key)
    root = tmp_path / "logs"
    for index, writer in enumerate(WRITERS):
        writing = AuditStore(root, writer_id=writer)
        for day in DAYS:
            writing.append(
                [
                    {
                        "action": "login",
                        "actorId": f"{writer}-{i}",
                        "organizationId": "org-1",
                        "createdAt": f"{day}T08:{i:02d}:{index:02d}.000Z",
                    }
                    for i in range(8)
                ]
            )
        integrity.seal(writing, signing_key=key)
    store = AuditStore(root, writer_id="alpha")
    first = integrity.verify(store, workers=1)
    assert first.ok, first.problems
    return store


def _record_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "auditcli" / "verified"  # XDG_CACHE_HOME: see conftest.py


def _verify_counting(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[Any, dict]:
    """verify (with `options`, e.g. first_day), counting the files the record vouched for,
    the lines hashed into Merkle leaves by the scans, and the tree heads recomputed by reading
    their files again."""
    counts = {"vouched": 0, "scanned": 0, "fed": 0, "reread": 0}
    scan_run, feed_add = verify_module.FileScan.run, verify_module.LeafFeed.add
    reread = tree_module._recomputed_leaves

    def run(self: Any) -> None:
        scan_run(self)
        counts["vouched" if self.vouched else "scanned"] += 1

    def add(self: Any, lines: Any) -> None:
        counts["fed"] += len(lines)
        feed_add(self, lines)

    def recomputed(*args: Any, **kwargs: Any) -> bytes:
        counts["reread"] += 1
        return reread(*args, **kwargs)

    with monkeypatch.context() as patch:  # (undoing the fixture would undo conftest's too)
        patch.setattr(verify_module.FileScan, "run", run)
        patch.setattr(verify_module.LeafFeed, "add", add)
        patch.setattr(tree_module, "_recomputed_leaves", recomputed)
        return integrity.verify(store, workers=1, **options), counts


def _fresh(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> dict:
    """The report of a first verify (an empty record elsewhere), the record left as it was."""
    with monkeypatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))
        shutil.rmtree(tmp_path / "fresh-cache", ignore_errors=True)
        return integrity.verify(store, workers=1, **options).to_dict()


def _file(store: AuditStore, writer: str, day: str = DAYS[0]) -> Path:
    return store.root / f"date={day}" / f"{writer}.jsonl"


def test_a_repeat_verify_hashes_no_line_again_and_reports_the_same(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sorted(p.name.split("-", 1)[1] for p in _record_dir(tmp_path).iterdir()) == [
        "alpha.json",
        "bravo.json",
    ]
    report, counts = _verify_counting(store, monkeypatch)
    assert counts == {"vouched": 4, "scanned": 0, "fed": 0, "reread": 0}
    assert report.to_dict() == _fresh(store, tmp_path, monkeypatch)
    assert report.ok and report.entries == 32 and report.tree_heads == 2


def test_a_first_verify_records_and_vouches_for_nothing(
    tmp_path: Path, store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.rmtree(_record_dir(tmp_path))
    report, counts = _verify_counting(store, monkeypatch)
    assert report.ok
    assert counts == {"vouched": 0, "scanned": 4, "fed": 32, "reread": 0}


def _change_byte(path: Path) -> None:
    """One byte of the second line's content: still a stored line, its link now wrong."""
    data = path.read_bytes()
    assert data.count(b'"actorId":"alpha-1"') == 1
    path.write_bytes(data.replace(b'"actorId":"alpha-1"', b'"actorId":"alpha-7"'))


def _change_link(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    line = lines[2]
    digit = line[-5:-4]
    lines[2] = line[:-5] + (b"0" if digit != b"0" else b"1") + line[-4:]
    path.write_bytes(b"".join(lines))


def _delete_line(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3] + lines[4:]))


def _garbage_line(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:5], b'{"not": "an entry"}\n', *lines[5:]]))


def _truncate(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:6]))


def _swap_hosts(path: Path) -> None:
    """alpha's file replaced by bravo's file of the same day (each valid under its own name)."""
    shutil.copyfile(path.with_name("bravo.jsonl"), path)


TAMPERS = [_change_byte, _change_link, _delete_line, _garbage_line, _truncate, _swap_hosts]


@pytest.mark.parametrize("tamper", TAMPERS)
def test_a_file_changed_since_is_checked_in_full_and_named_as_a_first_verify_names_it(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: Any
) -> None:
    tamper(_file(store, "alpha"))
    report, counts = _verify_counting(store, monkeypatch)
    assert not report.ok
    assert counts["vouched"] == 3 and counts["scanned"] == 1  # only the changed file
    assert report.to_dict() == _fresh(store, tmp_path, monkeypatch)
    assert {p.file for p in report.problems} >= {f"date={DAYS[0]}/alpha.jsonl"}


def test_a_changed_manifest_is_found_as_a_first_verify_finds_it(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path,) = (store.root / "_manifests" / "alpha").glob("*.json")
    envelope = orjson.loads(path.read_bytes())
    envelope["manifest"]["merkle"]["size"] += 1
    path.write_bytes(orjson.dumps(envelope))
    report, _ = _verify_counting(store, monkeypatch)
    assert not report.ok
    assert report.to_dict() == _fresh(store, tmp_path, monkeypatch)


def test_damaged_kept_leaf_hashes_are_rewritten_as_by_a_first_verify(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (kept,) = (store.root / "_index" / "merkle" / "alpha").glob("*.leaves")
    right = kept.read_bytes()
    kept.write_bytes(b"\x00" * len(right))
    report, counts = _verify_counting(store, monkeypatch)
    assert report.ok and counts["vouched"] == 4
    assert kept.read_bytes() == right


def _forge(store: AuditStore, tmp_path: Path) -> None:
    """Change a line of alpha's first file, then write the record an attacker would want: the
    changed bytes vouched for as the honest file was (its line count and links)."""
    path = _file(store, "alpha")
    honest = proven.content_key(f"date={DAYS[0]}/alpha.jsonl", path.read_bytes())
    _change_byte(path)
    forged = proven.content_key(f"date={DAYS[0]}/alpha.jsonl", path.read_bytes())
    (record,) = _record_dir(tmp_path).glob("*-alpha.json")
    data = orjson.loads(record.read_bytes())
    data["files"][forged.hex()] = data["files"][honest.hex()]
    record.write_bytes(orjson.dumps(data))


def test_a_record_in_a_directory_others_can_write_is_not_believed(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forge(store, tmp_path)
    os.chmod(_record_dir(tmp_path), 0o777)
    report, counts = _verify_counting(store, monkeypatch)
    assert counts["vouched"] == 0
    assert [(p.file, p.line, p.kind) for p in report.problems] == [
        (f"date={DAYS[0]}/alpha.jsonl", 2, "altered entry")
    ]
    # The same forgery where only this user can write is believed for the file's lines: the
    # directory's permissions are the record's trust (whoever is this user can also edit the
    # audit program itself). The writer's tree head, recorded for the files' exact bytes,
    # is then recomputed from the file and still names the change.
    os.chmod(_record_dir(tmp_path), 0o700)
    report, counts = _verify_counting(store, monkeypatch)
    assert counts["vouched"] == 4 and counts["reread"] >= 1
    assert [(p.file.split("/")[1], p.kind) for p in report.problems] == [("alpha", "tree head")]


def _entries(tmp_path: Path, writer: str) -> list[list[Any]]:
    """The file entries of `writer`'s record."""
    (record,) = _record_dir(tmp_path).glob(f"*-{writer}.json")
    return list(orjson.loads(record.read_bytes())["files"].values())


def test_a_verify_of_some_days_records_its_days_and_a_whole_store_verify_the_rest(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.rmtree(_record_dir(tmp_path))
    report, counts = _verify_counting(store, monkeypatch, first_day=DAYS[1])
    assert report.ok and counts["vouched"] == 0 and counts["scanned"] == 2
    assert [entry[3] for entry in _entries(tmp_path, "alpha")] == [f"date={DAYS[1]}/alpha.jsonl"]
    report, counts = _verify_counting(store, monkeypatch, first_day=DAYS[1])
    assert counts == {"vouched": 2, "scanned": 0, "fed": 0, "reread": 0}
    assert report.to_dict() == _fresh(store, tmp_path, monkeypatch, first_day=DAYS[1])
    # A whole-store verify takes the period's files from the record and checks the others;
    # the tree heads, which a verify of some days neither checks nor records, are hashed
    # from every file (the vouched ones read again), so its report is a first verify's.
    report, counts = _verify_counting(store, monkeypatch)
    assert counts["vouched"] == 2 and counts["scanned"] == 2
    assert report.ok and report.to_dict() == _fresh(store, tmp_path, monkeypatch)


def test_a_verify_of_some_days_reads_a_whole_store_record_and_keeps_all_it_did_not_check(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, counts = _verify_counting(store, monkeypatch, last_day=DAYS[0])
    assert counts == {"vouched": 2, "scanned": 0, "fed": 0, "reread": 0}
    assert report.to_dict() == _fresh(store, tmp_path, monkeypatch, last_day=DAYS[0])
    # One of its files since grew by a right line: checked in full, recorded anew, and its
    # old entry dropped (one entry per file); the other day's entries and the heads stay.
    AuditStore(store.root, writer_id="alpha").append(
        [
            {
                "action": "login",
                "actorId": "late",
                "organizationId": "org-1",
                "createdAt": f"{DAYS[0]}T09:00:00.000Z",
            }
        ]
    )
    report, counts = _verify_counting(store, monkeypatch, last_day=DAYS[0])
    assert report.ok and counts["vouched"] == 1 and counts["scanned"] == 1
    assert sorted(entry[3] for entry in _entries(tmp_path, "alpha")) == [
        f"date={day}/alpha.jsonl" for day in DAYS
    ]
    # (alpha's tree head binds the grown file's old bytes: hashed from its files once more.)
    report, counts = _verify_counting(store, monkeypatch)
    assert counts["vouched"] == 4 and counts["scanned"] == 0
    assert report.ok and report.to_dict() == _fresh(store, tmp_path, monkeypatch)


@pytest.mark.parametrize("tamper", TAMPERS)
def test_a_file_changed_after_a_verify_of_its_day_is_found_as_a_first_verify_finds_it(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tamper: Any
) -> None:
    """The record written by a verify of some days only: a later verify of those days and a
    later whole-store verify both check the changed file in full and name what a first
    verify names."""
    shutil.rmtree(_record_dir(tmp_path))
    assert integrity.verify(store, first_day=DAYS[0], last_day=DAYS[0], workers=1).ok
    tamper(_file(store, "alpha"))
    period = {"first_day": DAYS[0], "last_day": DAYS[0]}
    report, counts = _verify_counting(store, monkeypatch, **period)
    assert not report.ok and counts["vouched"] == 1 and counts["scanned"] == 1
    assert report.to_dict() == _fresh(store, tmp_path, monkeypatch, **period)
    assert {p.file for p in report.problems} >= {f"date={DAYS[0]}/alpha.jsonl"}
    # (A file cut at a line end has right lines: recorded by then, and still found cut.)
    report, counts = _verify_counting(store, monkeypatch)
    assert counts["vouched"] == (2 if tamper is _truncate else 1)
    assert not report.ok and report.to_dict() == _fresh(store, tmp_path, monkeypatch)


def test_a_forged_record_is_not_believed_by_a_verify_of_some_days_nor_kept_past_the_tree(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forge(store, tmp_path)
    os.chmod(_record_dir(tmp_path), 0o777)
    report, counts = _verify_counting(store, monkeypatch, last_day=DAYS[0])
    assert counts["vouched"] == 0
    assert [(p.file, p.line, p.kind) for p in report.problems] == [
        (f"date={DAYS[0]}/alpha.jsonl", 2, "altered entry")
    ]
    # Where only this user can write, a verify of some days (no tree check) believes the
    # forged entry for the file's lines, as a whole-store verify does; it keeps the heads,
    # so the next whole-store verify still recomputes alpha's head and names the change.
    os.chmod(_record_dir(tmp_path), 0o700)
    _verify_counting(store, monkeypatch, last_day=DAYS[0])
    report, counts = _verify_counting(store, monkeypatch)
    assert counts["vouched"] == 4 and counts["reread"] >= 1
    assert [(p.file.split("/")[1], p.kind) for p in report.problems] == [("alpha", "tree head")]


def test_verify_and_report_of_some_days_on_the_command_line_after_a_recorded_run(
    store: AuditStore, tmp_path: Path, cli: Any
) -> None:
    """`audit verify --since/--until` and `audit report`, each run twice (the second on the
    record the first wrote), then after a byte changed: exit 5 and the same problem as on an
    empty record; the report says FAILED with it."""
    shutil.rmtree(_record_dir(tmp_path))
    days = ["--since", DAYS[0], "--until", DAYS[0]]
    report = ["report", *days, "-o", "-", "-f", "md"]
    for _ in range(2):
        assert cli("verify", *days, "-f", "json").exit_code == 0
        assert "- **Integrity of the period:** verified" in cli(*report).stdout
    assert _entries(tmp_path, "alpha") and _entries(tmp_path, "bravo")
    _change_byte(_file(store, "alpha"))
    after = cli("verify", *days, "-f", "json")
    assert after.exit_code == 5
    problems = orjson.loads(after.stdout)["problems"]
    assert problems == [
        {
            "file": f"date={DAYS[0]}/alpha.jsonl",
            "line": 2,
            "kind": "altered entry",
            "detail": "the entry does not match its chain link (edited)",
        }
    ]
    rendered = cli(*report).stdout
    assert "- **Integrity of the period:** FAILED" in rendered and "altered entry" in rendered
    shutil.rmtree(_record_dir(tmp_path))
    cold = cli("verify", *days, "-f", "json")
    assert cold.exit_code == 5 and cold.stdout == after.stdout


def test_worker_processes_read_and_write_the_record_alike(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.rmtree(_record_dir(tmp_path))
    first = integrity.verify(store, workers=2).to_dict()
    assert len(list(_record_dir(tmp_path).iterdir())) == 2  # one per writer, from its worker
    _change_byte(_file(store, "alpha", DAYS[1]))
    again = integrity.verify(store, workers=2).to_dict()
    assert first["ok"] and not again["ok"]
    assert again == _fresh(store, tmp_path, monkeypatch)


def test_a_head_missing_from_the_record_is_hashed_from_its_files_and_recorded(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files vouched for, their tree heads not (a record from before a seal spanning them):
    the heads' files are read once more and hashed (no line check), then the heads are in
    the record too."""
    for record in _record_dir(tmp_path).iterdir():
        data = orjson.loads(record.read_bytes())
        record.write_bytes(orjson.dumps({**data, "heads": {}}))
    report, counts = _verify_counting(store, monkeypatch)
    assert report.ok and counts == {"vouched": 4, "scanned": 0, "fed": 32, "reread": 0}
    report, counts = _verify_counting(store, monkeypatch)
    assert report.ok and counts == {"vouched": 4, "scanned": 0, "fed": 0, "reread": 0}


def test_a_record_directory_replaced_by_a_symlink_is_not_believed(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forged record moved elsewhere and the record directory made a symlink to it (what
    someone who could replace a directory on the way would do): not followed."""
    _forge(store, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    _record_dir(tmp_path).rename(elsewhere)
    _record_dir(tmp_path).symlink_to(elsewhere, target_is_directory=True)
    before = {p.name: p.read_bytes() for p in elsewhere.iterdir()}
    report, counts = _verify_counting(store, monkeypatch)
    assert counts["vouched"] == 0
    assert [(p.file, p.line, p.kind) for p in report.problems] == [
        (f"date={DAYS[0]}/alpha.jsonl", 2, "altered entry")
    ]
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == before  # none written


def test_a_record_written_short_never_replaces_the_one_before(
    store: AuditStore, tmp_path: Path
) -> None:
    """A record write the kernel cuts short without an error (a file size limit, a full file
    system mid-write) leaves the record as it was, not a torn one that loses every proof."""
    import subprocess
    import sys

    (record,) = _record_dir(tmp_path).glob("*-alpha.json")
    before = record.read_bytes()
    assert len(before) > 100
    script = (
        "import resource, signal, sys\n"
        "from auditcli.integrity.proven import Proven\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))\n"
        "record = Proven(sys.argv[1], 'alpha')\n"
        "record.note_file(bytes(32), 'date=2026-11-18/alpha.jsonl', 1, bytes(32), {})\n"
        "record.save()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(store.root)], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert record.read_bytes() == before
    assert [p.name for p in _record_dir(tmp_path).iterdir() if p.name.startswith(".")] == []


def test_a_writer_never_sealed_is_recorded_and_a_change_still_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No manifest at all (a store nobody seals): the record holds what each file's own lines
    gave, for a verify of some days and a whole-store verify alike."""
    store = AuditStore(tmp_path / "unsealed", writer_id="alpha")
    for day in DAYS:
        store.append(
            [
                {
                    "action": "login",
                    "actorId": f"alpha-{i}",
                    "organizationId": "org-1",
                    "createdAt": f"{day}T08:{i:02d}:00.000Z",
                }
                for i in range(8)
            ]
        )
    assert _verify_counting(store, monkeypatch, first_day=DAYS[1])[1]["scanned"] == 1
    report, counts = _verify_counting(store, monkeypatch)
    assert report.ok and counts["vouched"] == 1 and counts["scanned"] == 1
    report, counts = _verify_counting(store, monkeypatch, first_day=DAYS[1])
    assert counts["vouched"] == 1 and counts["scanned"] == 0
    _change_byte(_file(store, "alpha", DAYS[1]))
    for period in ({"first_day": DAYS[1]}, {}):
        report, counts = _verify_counting(store, monkeypatch, **period)
        assert [(p.file, p.line, p.kind) for p in report.problems] == [
            (f"date={DAYS[1]}/alpha.jsonl", 2, "chain break")  # (no checkpoint to tell more)
        ]
        assert report.to_dict() == _fresh(store, tmp_path, monkeypatch, **period)


@pytest.mark.parametrize("held", [1 << 30, 2000], ids=["held", "read again"])
def test_a_file_read_in_several_chunks_is_recorded_and_a_change_still_found(
    store: AuditStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: int
) -> None:
    """Files bigger than a read (8 MiB in real use; 1 KiB here), checked from the chunks their
    key was hashed from, or, over the size held in memory, read again for the check (the key
    recorded is then that of the bytes read the second time)."""
    filescan = importlib.import_module("auditcli.integrity.verify.filescan")
    monkeypatch.setattr(filescan.LineSource, "CHUNK", 1024)
    monkeypatch.setattr(filescan, "_HELD_MAX", held)
    assert _file(store, "alpha").stat().st_size > 2 * 1024
    shutil.rmtree(_record_dir(tmp_path))
    for period in ({"last_day": DAYS[0]}, {}):
        first, counts = _verify_counting(store, monkeypatch, **period)
        assert first.ok and counts["scanned"] == 2  # (the whole store: the other day's)
        report, counts = _verify_counting(store, monkeypatch, **period)
        assert counts["scanned"] == 0 and counts["fed"] == 0
        assert report.to_dict() == first.to_dict()
    _change_byte(_file(store, "alpha"))
    for period in ({"last_day": DAYS[0]}, {}):
        report, counts = _verify_counting(store, monkeypatch, **period)
        assert counts["scanned"] == 1
        assert [(p.file, p.line, p.kind) for p in report.problems] == [
            (f"date={DAYS[0]}/alpha.jsonl", 2, "altered entry")
        ]
        assert report.to_dict() == _fresh(store, tmp_path, monkeypatch, **period)
