"""verify's column-at-a-time check of clean chunks (`verify._clean_chunk`) changes nothing but
speed: on an honest store it accepts every chunk, and on every kind of damaged file the report
is the very one the line-by-line loop alone gives (same problems, same lines, same order), with
files read in many small chunks so that clean chunks come before and after the damage."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from auditcli import chain, integrity
from auditcli.store import AuditStore, LineSource

verify_module = importlib.import_module("auditcli.integrity.verify")

DAY = "2026-11-18"
LINES = 40


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)
    monkeypatch.setattr(LineSource, "CHUNK", 700)  # two or three lines per chunk


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    """One writer, two days, sealed (with a Merkle tree head), then grown past the seal."""
    key = tmp_path / "seal.key"
    integrity.generate_keys(key)
    store = AuditStore(tmp_path / "logs", writer_id="w1")
    for day in (DAY, "2026-11-19"):
        store.append(
            {
                "action": "login",
                "actorId": f"user-{i}",
                "organizationId": "org-1",
                "createdAt": f"{day}T08:{i:02d}:00.000Z",
            }
            for i in range(LINES)
        )
    integrity.seal(store, signing_key=key)
    store.append(
        [
            {
                "action": "login",
                "actorId": "u",
                "organizationId": "o",
                "createdAt": f"{DAY}T09:00:00Z",
            }
        ]
    )
    return store


def _path(store: AuditStore) -> Path:
    return store.root / f"date={DAY}" / "w1.jsonl"


def _lines(store: AuditStore) -> list[bytes]:
    return _path(store).read_bytes().splitlines(keepends=True)


def _write(store: AuditStore, lines: list[bytes]) -> None:
    _path(store).write_bytes(b"".join(lines))


def _rechained(lines: list[bytes]) -> list[bytes]:
    """The lines with every link computed again, as a forger without the seal key would."""
    link = chain.genesis(f"date={DAY}", "w1")
    out = []
    for line in lines:
        parsed = chain.split_line(line)
        assert parsed is not None
        link = chain.link(link, parsed[0])
        out.append(chain.chained_line(parsed[0], link))
    return out


def _both(store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], int]:
    """The report with the column check, the report with the loop only (they must be equal),
    and how many chunks the column check accepted."""
    real = verify_module._clean_chunk
    accepted = 0

    def counting(*args: Any) -> Any:
        nonlocal accepted
        found = real(*args)
        accepted += found is not None
        return found

    monkeypatch.setattr(verify_module, "_clean_chunk", counting)
    fast = integrity.verify(store, workers=1).to_dict()
    monkeypatch.setattr(verify_module, "_clean_chunk", lambda *args: None)
    slow = integrity.verify(store, workers=1).to_dict()
    assert fast == slow
    return fast, accepted


def test_an_honest_store_is_checked_by_the_column_check(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, accepted = _both(store, monkeypatch)
    assert report["ok"] and report["entries"] == 2 * LINES + 1 and report["uncovered"] == 1
    assert accepted >= 2 * LINES // 3  # every chunk of both files


def _edit(index: int, old: bytes, new: bytes) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        assert old in lines[index]
        lines[index] = lines[index].replace(old, new, 1)
        return lines

    return change


def _uppercase_link(lines: list[bytes]) -> list[bytes]:
    line = lines[25]
    lines[25] = (
        line[: -chain.SUFFIX_LEN + len(chain.SUFFIX_HEAD)]
        + line[-chain.SUFFIX_LEN + len(chain.SUFFIX_HEAD) : -3].upper()
        + line[-3:]
    )
    return lines


def _altered_link(lines: list[bytes]) -> list[bytes]:
    at = -chain.SUFFIX_LEN + len(chain.SUFFIX_HEAD)
    digit = lines[20][at : at + 1]
    lines[20] = lines[20][:at] + (b"0" if digit != b"0" else b"1") + lines[20][at + 1 :]
    return lines


def _misplaced(lines: list[bytes]) -> list[bytes]:
    lines[30] = lines[30].replace(f'"createdAt":"{DAY}'.encode(), b'"createdAt":"2026-11-17', 1)
    return _rechained(lines)


CASES: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "edited entry": _edit(17, b'"user-17"', b'"user-71"'),
    "altered link": _altered_link,
    "upper-case link": _uppercase_link,
    "deleted line": lambda lines: lines[:12] + lines[13:],
    "reordered lines": lambda lines: [*lines[:8], lines[9], lines[8], *lines[10:]],
    "inserted foreign line": lambda lines: [*lines[:5], b'{"hello":"world"}\n', *lines[5:]],
    "copied line, chain rebuilt": lambda lines: _rechained([*lines[:33], lines[4], *lines[33:]]),
    "misplaced entry, chain rebuilt": _misplaced,
    "rewritten from line 1": lambda lines: _rechained(_edit(0, b'"user-0"', b'"user-X"')(lines)),
    "truncated": lambda lines: lines[:22],
    "torn tail": lambda lines: [*lines, lines[3][:50]],
    "too-long line": lambda lines: [*lines[:10], b"x" * (chain.MAX_LINE + 10) + b"\n", *lines[10:]],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_file_gets_the_loops_report(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    _write(store, CASES[case](_lines(store)))
    report, _ = _both(store, monkeypatch)
    assert not report["ok"]
    assert any(p["file"] == f"date={DAY}/w1.jsonl" for p in report["problems"])


def test_a_file_copied_under_another_name_gets_the_loops_report(
    store: AuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clean links from the wrong genesis: the column check must not take them."""
    other = store.root / "date=2026-11-19" / "w1.jsonl"
    other.write_bytes(_path(store).read_bytes())
    report, _ = _both(store, monkeypatch)
    assert ("date=2026-11-19/w1.jsonl", "moved file") in {
        (p["file"], p["kind"]) for p in report["problems"]
    }
