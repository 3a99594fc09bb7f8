"""Line indexes vouched for by this user (`auditcli.trust`) answer without per-line checks.

An index `audit` built itself (an import, a rotation, a query) or that `audit verify` compared
with a rebuild is recorded by its SHA-256 outside the log directory; a query that finds the
bytes it read in that record returns the lines the index gives without checking each one.
Here: such answers equal a scan's on every kind of store (chain version 1, version 2 with a
redaction, gzip members); the record is what decides, and only a private one is believed;
`verify` vouches for what it checked and for nothing it found forged.
"""

from __future__ import annotations

import json
import mmap
import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from auditcli import lineindex, query, trust
from auditcli.cli import app
from auditcli.query import Filters, QueryEngine
from auditcli.store import AuditStore

D1, D2, D3 = "2026-10-01", "2026-10-02", "2026-10-03"
ORGS = ("org-a", "org-b")


def _audit(root: Path, *args: str, writer: str = "w1") -> tuple[int, str]:
    env = {"AUDIT_LOG_DIR": str(root), "AUDIT_WRITER_ID": writer}
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def _entries(day: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{day}-{n:04d}",
            "description": f"user-{n % 7} did it",
            "actorId": f"user-{n % 7}",
            "actorName": f"User {n % 7}",
            "actorEmail": f"user{n % 7}@example.com",
            "action": ("login", "role_updated", "user_added")[n % 3],
            "target": "USER",
            "targetId": f"user-{n % 5}",
            "organizationId": ORGS[n % 2],
            "metadata": {"ip": "10.0.0.7", "n": n},
            # Several entries per second: equal createdAt, ordered by id.
            "createdAt": f"{day}T{n // 360 % 24:02d}:{n // 6 % 60:02d}:{n % 6:02d}.000Z",
        }
        for n in range(count)
    ]


def _build(tmp: Path, kind: str) -> Path:
    """A store of three past days: `plain` (chain version 1), `redacted` (version 2 lines, one
    actor redacted) or `rotated` (every day gzipped by `audit rotate`)."""
    root = tmp / "logs"
    if kind == "redacted":
        assert _audit(root, "init", "--redactable", str(root))[0] == 0
    source = tmp / "in.jsonl"
    lines = [json.dumps(e) for day in (D1, D2, D3) for e in _entries(day, 400)]
    source.write_text("\n".join(lines) + "\n")
    assert _audit(root, "import", str(source))[0] == 0
    if kind == "rotated":
        code, out = _audit(root, "rotate", "-q", "--compress-after", "1")
        assert code == 0, out
    if kind == "redacted":
        key = tmp / "seal.key"
        assert _audit(root, "keys", "generate", "--out", str(key))[0] == 0
        code, out = _audit(
            root,
            "redact",
            "--actor-id",
            "user-3",
            "--reason",
            "test",
            "--signing-key",
            str(key),
        )
        assert code == 0, out
    return root


def _answers(root: Path, wanted: Filters, order: str, use_index: bool) -> dict[str, Any]:
    def engine() -> QueryEngine:
        made = QueryEngine(AuditStore(root), wanted, order=order, use_index=use_index)
        made.index_min_bytes = 0  # index even the small files of a test
        return made

    lines = list(engine().stream())
    blocks = b"".join(block for _, block in engine().content_blocks())
    pages = [engine().page(50, offset) for offset in (0, 120, 390)]
    checked = engine()
    list(checked.stream())
    return {"lines": lines, "blocks": blocks, "pages": pages, "problems": checked.problems}


def _index_files(root: Path) -> list[Path]:
    return sorted((root / "_index").glob("date=*/*.idx"))


@pytest.mark.parametrize("kind", ["plain", "redacted", "rotated"])
def test_vouched_indexes_answer_as_a_scan_does(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _build(tmp_path, kind)
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    checked: list[int] = []
    check = QueryEngine._checked

    def counted(engine: QueryEngine, *args: Any, **kwargs: Any) -> Any:
        checked.append(len(args[1]))
        return check(engine, *args, **kwargs)

    monkeypatch.setattr(QueryEngine, "_checked", counted)
    cases = [
        Filters(),
        Filters(actions=("login",)),
        Filters(actor_ids=("user-3",), org_ids=("org-b",)),
        Filters(actions=("role_updated",), since=f"{D2}T00:30:00.000Z"),
    ]
    for wanted in cases:
        for order in ("asc", "desc"):
            scanned = _answers(root, wanted, order, use_index=False)
            assert scanned["lines"] and not scanned["problems"]
            vouched = _answers(root, wanted, order, use_index=True)  # builds what is missing
            assert vouched == scanned, (wanted, order)
    assert not checked  # every line came from a vouched index, none was checked
    indexes = _index_files(root)
    assert len(indexes) == 3
    assert all(path.name.endswith(".gz.idx") == (kind == "rotated") for path in indexes)
    # Each was vouched for when it was written (import, rotate or query): a later query
    # reads each one whole and finds its digest in the user's record.
    assert all(trust.vouched(path.read_bytes()) for path in indexes)
    if kind == "redacted":
        blocks = _answers(root, Filters(actor_ids=("user-3",)), "asc", True)["blocks"]
        assert b'"_salt"' not in blocks and b'"_redacted"' not in blocks
        assert b"User 3" not in blocks


def _orgs_swapped(data: bytes) -> bytes:
    """`data` with org-a and org-b swapped (a forger's edit of the same size)."""
    forged = data.replace(b'"org-a"', b'"org-X"').replace(b'"org-b"', b'"org-a"')
    forged = forged.replace(b'"org-X"', b'"org-b"')
    assert forged != data
    return forged


def _swap_orgs(path: Path) -> bytes:
    """The index at `path` with org-a and org-b swapped in its header (a forger's edit)."""
    forged = _orgs_swapped(path.read_bytes())
    path.write_bytes(forged)
    return forged


def _org_b_lines(root: Path) -> list[bytes]:
    engine = QueryEngine(AuditStore(root), Filters(org_ids=("org-b",)), order="asc")
    engine.index_min_bytes = 0  # index even the small files of a test
    return list(engine.stream())


def test_only_a_private_record_is_believed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record decides which indexes are used unchecked, so it must be the user's alone:
    a digest planted there by someone else is ignored (and so is the whole record)."""
    root = _build(tmp_path, "plain")
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    honest = _org_b_lines(root)
    assert honest and all(b'"organizationId":"org-b"' in line for line in honest)
    forged = _swap_orgs(_index_files(root)[0])

    # Not in the record: checked line by line, so the swap changes nothing.
    assert _org_b_lines(root) == honest

    record = Path(trust.location())
    (record / trust.digest(forged)).touch()  # as if this user had vouched for the forgery
    assert _org_b_lines(root) != honest  # the record is believed: org-a's lines come back

    record.chmod(0o770)  # a record others could have written is not believed at all
    assert _org_b_lines(root) == honest
    record.chmod(0o700)

    moved = record.with_name("elsewhere")
    record.rename(moved)
    record.symlink_to(moved)  # nor one behind a symlink
    assert _org_b_lines(root) == honest


def test_an_index_vouched_for_one_file_is_not_used_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _build(tmp_path, "plain")
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    honest = _org_b_lines(root)
    first, second = _index_files(root)[:2]
    second.write_bytes(first.read_bytes())  # vouched, but made for the first day's file
    assert trust.vouched(second.read_bytes())
    assert _org_b_lines(root) == honest


def test_verify_vouches_for_what_it_checked_and_not_for_a_forgery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _build(tmp_path, "plain")
    _org_b_lines(root)  # writes the indexes
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-cache"))  # another user
    indexes = _index_files(root)
    assert len(indexes) == 3
    assert not any(trust.vouched(path.read_bytes()) for path in indexes)
    forged = _swap_orgs(indexes[0])

    code, out = _audit(root, "verify", "--format", "json")
    assert code == 5, out
    assert "forged index" in out
    assert not trust.vouched(forged)
    assert all(trust.vouched(path.read_bytes()) for path in indexes[1:])
    assert oct(os.stat(trust.location()).st_mode & 0o777) == "0o700"


def test_an_import_vouches_only_for_the_file_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file renamed over the one an import just wrote (same size, other content), before the
    import indexes it: the index is built from that file, never from the import's values."""
    from auditcli import importer

    index_day = importer._index_day

    def swapped_first(store: AuditStore, plan: Any, day: str, wrote: Any) -> None:
        for path in (store.root / f"date={day}").glob("*.jsonl"):
            forged = path.with_name(".forged")
            data = path.read_bytes().replace(b'"actorId":"user-1"', b'"actorId":"user-3"')
            forged.write_bytes(data)
            forged.rename(path)
        index_day(store, plan, day, wrote)

    monkeypatch.setattr(importer, "INDEX_MIN_BYTES", 0)
    monkeypatch.setattr(importer, "_index_day", swapped_first)
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    root = _build(tmp_path, "plain")
    assert len(_index_files(root)) == 3
    wanted = Filters(actor_ids=("user-1",))
    scanned = _answers(root, wanted, "asc", use_index=False)
    assert scanned["lines"] == []  # the files say no entry is user-1's
    assert _answers(root, wanted, "asc", use_index=True) == scanned


def test_an_index_file_is_hashed_once_and_believed_only_while_it_is_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once its bytes are found vouched for, an index file is remembered by its identity and
    not hashed again; rewritten in place (same size, mtime set back) it is hashed again, and a
    forgery is then checked line by line. A file changed in the last seconds is not remembered
    (its ctime could stay the same through another change)."""
    root = _build(tmp_path, "plain")
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    hashed: list[int] = []
    digest = trust.digest

    def counted(data: Any) -> str:
        hashed.append(len(data))
        return digest(data)

    monkeypatch.setattr(trust, "digest", counted)
    honest = _org_b_lines(root)  # the import wrote the indexes just now
    assert hashed  # each was hashed to find it vouched for ...
    record = Path(trust.location())
    assert not [name for name in os.listdir(record) if name.startswith("file-")]  # ... too fresh

    monkeypatch.setattr(trust, "_SETTLED_NS", 20_000_000)
    time.sleep(0.025)
    hashed.clear()
    assert _org_b_lines(root) == honest
    assert len(hashed) == 3  # hashed, and now remembered
    assert len([name for name in os.listdir(record) if name.startswith("file-")]) == 3
    hashed.clear()
    assert _org_b_lines(root) == honest
    assert hashed == []  # remembered: not hashed again

    # The same bytes vouched for under their digest, but the file rewritten in place: hashed
    # again (and still believed, being those bytes).
    path = _index_files(root)[0]
    before = path.stat()
    path.write_bytes(path.read_bytes())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    assert _org_b_lines(root) == honest
    assert len(hashed) == 1

    # A forgery of the same size with the mtime set back: not the remembered file, and its
    # bytes are not vouched for, so every line it selects is checked: the swap changes nothing.
    time.sleep(0.025)
    assert _org_b_lines(root) == honest  # the rewritten file is remembered too
    before = path.stat()
    forged = _swap_orgs(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert len(forged) == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    assert not trust.vouched(forged)
    assert _org_b_lines(root) == honest


def _big_day(tmp: Path) -> Path:
    """A store of one past day whose index file is over the 64 KiB `lineindex` reads first."""
    root = tmp / "logs"
    source = tmp / "in.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in _entries(D1, 8000)) + "\n")
    assert _audit(root, "import", str(source))[0] == 0
    assert _index_files(root)[0].stat().st_size > 64 << 10
    return root


def test_a_vouched_index_is_parsed_from_the_bytes_it_is_hashed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index file over `lineindex._ONE_READ` (4 MiB; here every one over 64 KiB) is read
    twice (its start, with the header, then whole): a forger who rewrites it in place between
    the two reads (forged header first, the vouched bytes back for the whole read) must not
    have the forged header believed on the strength of the vouched bytes' hash."""
    root = _big_day(tmp_path)
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    monkeypatch.setattr(lineindex, "_ONE_READ", 0)  # the first read is 64 KiB
    honest = _org_b_lines(root)
    assert honest and all(b'"organizationId":"org-b"' in line for line in honest)
    path = _index_files(root)[0]
    vouched = path.read_bytes()
    forged = _swap_orgs(path)  # in place: same inode, same size
    assert not trust.vouched(forged) and trust.vouched(vouched)
    pread, index_inode, swapped = os.pread, path.stat().st_ino, []

    def racing(fd: int, size: int, at: int) -> bytes:
        data = pread(fd, size, at)
        if not swapped and os.fstat(fd).st_ino == index_inode:
            swapped.append(at)
            with open(path, "r+b") as back:  # the vouched bytes, back in place
                back.write(vouched)
        return data

    monkeypatch.setattr(os, "pread", racing)
    assert _org_b_lines(root) == honest
    assert swapped == [0]  # the race did happen, between the first read and the next


def test_an_ordinary_index_file_is_read_with_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index file of ordinary size (over the 64 KiB of a first read, under 4 MiB) is read
    with one read, the header and arrays parsed from the bytes hashed: a rewrite right after
    that read (vouched bytes swapped for a forgery) changes nothing in the answer."""
    root = _big_day(tmp_path)
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    honest = _org_b_lines(root)
    path = _index_files(root)[0]
    vouched = path.read_bytes()
    pread, index_inode, reads = os.pread, path.stat().st_ino, []

    def forging(fd: int, size: int, at: int) -> bytes:
        data = pread(fd, size, at)
        if os.fstat(fd).st_ino == index_inode:
            reads.append((at, len(data)))
            with open(path, "r+b") as file:  # a forgery in place once it has been read
                file.write(_orgs_swapped(vouched))
        return data

    monkeypatch.setattr(os, "pread", forging)
    assert _org_b_lines(root) == honest
    assert reads == [(0, len(vouched))]


def _org_b(root: Path, how: str, use_index: bool = True) -> Any:
    """Org-b's entries as `stream`, `content_blocks` or `page` gives them."""
    engine = QueryEngine(AuditStore(root), Filters(org_ids=("org-b",)), use_index=use_index)
    engine.index_min_bytes = 0  # index even the small files of a test
    if how == "blocks":
        return b"".join(block for _, block in engine.content_blocks())
    if how == "page":
        return engine.page(50, 120)
    return list(engine.stream())


@pytest.mark.parametrize("made", ["built", "loaded"])
@pytest.mark.parametrize("how", ["stream", "blocks", "page"])
def test_a_vouched_index_is_not_used_after_its_file_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, made: str
) -> None:
    """A query uses a past day's index unchecked when it built it itself or its bytes are
    vouched for: if the file is edited in place after the index was built (while it is saved)
    or loaded, the lines the index gives are not returned as they now are, unchecked (org-a
    lines answering a query for org-b): the answer is a scan's of the file as it now is."""
    root = _build(tmp_path, "plain")
    assert not _index_files(root)  # small files: the query builds their indexes
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    if made == "loaded":
        _org_b(root, how)  # builds and saves them, vouched for
        assert len(_index_files(root)) == 3
    hooked, edited = getattr(lineindex, "save" if made == "built" else "load"), []

    def then_edit(where: Path, partition: str, file_name: str, *args: Any) -> Any:
        result = hooked(where, partition, file_name, *args)
        path = where / partition / file_name
        with open(path, "r+b") as file:  # in place, same size: the inode and size stay
            file.write(_orgs_swapped(path.read_bytes()))
        edited.append(file_name)
        return result

    monkeypatch.setattr(lineindex, "save" if made == "built" else "load", then_edit)
    answer = _org_b(root, how)
    assert edited
    monkeypatch.setattr(lineindex, "save" if made == "built" else "load", hooked)
    scanned = _org_b(root, how, use_index=False)
    assert scanned and b'"organizationId":"org-a"' not in repr(scanned).encode()
    assert answer == scanned


def test_an_index_file_others_can_write_is_hashed_on_every_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes written through a shared mapping after its first write keep the file's ctime (the
    kernel sets it when a clean page is first written, then not until it writes the page
    back), so the identity of an index file that someone else could write does not show that
    its bytes changed: such a file is never remembered, and a forgery written through a mapping
    after it was read as vouched is still checked line by line."""
    root = _build(tmp_path, "plain")
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    monkeypatch.setattr(trust, "_SETTLED_NS", 20_000_000)
    honest = _org_b_lines(root)
    path = _index_files(root)[0]
    vouched = path.read_bytes()
    forged = _orgs_swapped(vouched)
    path.chmod(0o666)  # anyone may write it (planted so, or written under a umask of 0)
    with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0) as mapped:
        mapped[:] = vouched  # the first write to each page of the mapping: ctime set now
        time.sleep(0.025)
        assert _org_b_lines(root) == honest  # read, hashed and found vouched for
        before = path.stat()
        mapped[:] = forged
        assert path.read_bytes() == forged
        assert lineindex.identity(path.stat()) == lineindex.identity(before)  # looks unchanged
        assert _org_b_lines(root) == honest
        assert not trust.vouched_file(lineindex.identity(path.stat()))


def test_a_log_file_others_can_write_is_read_through_its_index_with_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log file's identity binds a vouched index to it; but bytes written through a shared
    mapping after its first write keep the file's ctime (as for an index file, above). Whoever
    else can write a log file can so swap its lines' values under an index built or vouched
    for while the mapping's pages were dirty: the lines that index gives must still be checked,
    never returned as now read (org-a lines answering a query for org-b)."""
    root = _build(tmp_path, "plain")
    monkeypatch.setattr(query, "_VOUCH_MIN", 0)
    path = sorted(root.glob("date=*/*.jsonl"))[0]
    honest = path.read_bytes()
    path.chmod(0o666)  # anyone may write it (planted so, or written under a umask of 0)
    with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0) as mapped:
        mapped[:] = honest  # the first write to each page of the mapping: ctime set now
        time.sleep(0.025)
        assert all(b'"organizationId":"org-b"' in line for line in _org_b_lines(root))
        # The same pages again: the identity stays (until the kernel writes them back).
        mapped[:] = _orgs_swapped(honest)
        answer = _org_b_lines(root)
    scanned = list(
        QueryEngine(
            AuditStore(root), Filters(org_ids=("org-b",)), use_index=False, order="asc"
        ).stream()
    )
    assert scanned and all(b'"organizationId":"org-b"' in line for line in scanned)
    assert answer == scanned
