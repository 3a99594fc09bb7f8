"""The chain tail a seal starts from, kept so that a seal reads only its writer's newest
manifests, not the whole chain.

A seal needs, of its writer's chain, each file's newest checkpoint (to list only what changed
and warn about files that shrank) and the Merkle tree it continues (the newest head and how
many lines of each file the tree holds). Both are folds over every manifest of the chain (and
the receipts of other chains that deleted this writer's files). After each seal their values
are written to `LOGDIR/_index/seal/<writer>.json`, derived data like the rest of `_index/`:

    {"format": "auditcli-seal-state/1", "writer": "web1",
     "at": {"sequence": 365, "hash": "sha256:…"},     # the manifest the fold ends with
     "base": {"sequence": 365, "hash": "sha256:…"} | null,  # the newest seal with a tree head
     "known": [[record, label, sealedAt], …], "coverage": [[day, segment, lines], …],
     "receipts": ["<writer>/<file name>", …]}         # other chains' receipts folded

Never trusted blindly. The next seal uses it only when the manifests it names are still in the
chain with those hashes (two manifest reads), folds the manifests written after it (a receipt,
a seal that crashed before writing the state), and reads any receipt of another chain that is
new since; if one of those deletes a file of this writer, or anything does not fit, it reads
the whole chain as before. What it cannot see is a forged fold under the right hashes: `audit
verify`, which reads every manifest anyway, folds the chain itself and names a state file that
differs (`forged index`). A forged state can only make a seal list too few files (their lines
stay "not yet covered") or plan wrong tree ranges, which verify reports on the manifest.
Deleting `_index/` loses nothing: the next seal reads the whole chain.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from auditcli.errors import AuditError
from auditcli.lineindex import INDEX_DIR
from auditcli.query import Problem
from auditcli.safeio import (
    MANIFEST_MAX,
    make_dirs,
    open_file,
    read_bounded,
    write_atomic_at,
)
from auditcli.store import AuditStore

from .manifests import (
    Manifest,
    file_key,
    file_writer,
    manifest_names,
    read_manifest,
    receipt_names,
    receipt_records,
    records_of,
)
from .tree import TreeHead, TreeStart, advance, head_of

STATE_DIR = "seal"
FORMAT = "auditcli-seal-state/1"
#: file key -> (its newest checkpoint record, the label of the manifest that made it, its time)
Known = dict[tuple[str, str], tuple[dict[str, Any], str, str]]


def state_name(writer: str) -> str:
    """The state file of `writer`, relative to the store root."""
    return f"{INDEX_DIR}/{STATE_DIR}/{writer}.json"


def fold(known: Known, manifest: Manifest, writer: str, label: str | None = None) -> None:
    """Fold one manifest into `known`: a seal's records of `writer`'s files replace older ones,
    a deletion receipt removes them. `label`: how to name the manifest (default its own)."""
    if manifest.body is None:
        return
    if manifest.kind == "seal":
        for record in records_of(manifest):
            key = file_key(record["name"])
            if key and file_writer(key[1]) == writer:
                known[key] = (
                    record,
                    manifest.label if label is None else label,
                    manifest.sealed_at,
                )
    elif manifest.kind == "receipt":
        for record in receipt_records(manifest):
            key = file_key(record["name"])
            if key:
                known.pop(key, None)


def foreign_receipt_names(store: AuditStore, writer: str) -> dict[str, tuple[str, int, Path]]:
    """`<writer>/<file name>` -> (writer, sequence, path) of every receipt in other chains."""
    return {
        f"{other}/{path.name}": (other, sequence, path)
        for other, sequence, path in receipt_names(store)
        if other != writer
    }


# ---------------------------------------------------------------------------- the seal's side
def load_tail(store: AuditStore, writer: str) -> tuple[Known, TreeStart] | None:
    """`writer`'s newest checkpoints and tree start from its state file and the manifests
    after it, or None when there is no usable state (the caller reads the whole chain)."""
    state = _read_state(store, writer)
    if state is None:
        return None
    try:
        known, coverage, at, base_ref, folded = _parse(state, writer)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    names, _ = manifest_names(store, writer)
    by_sequence = dict(names)
    anchor = _manifest_at(by_sequence, at, writer)
    if anchor is None:
        return None
    base = None
    if base_ref is not None:
        base_manifest = anchor if base_ref == at else _manifest_at(by_sequence, base_ref, writer)
        base = head_of(base_manifest) if base_manifest is not None else None
        if base is None:
            return None
    # Receipts of other chains since the state: one deleting a file of this writer is folded
    # by time into the tree's coverage; that is the whole-chain path's job.
    for name, (other, sequence, path) in foreign_receipt_names(store, writer).items():
        if name in folded:
            continue
        receipt = read_manifest(path, sequence, other)
        if receipt.body is None or receipt.error:
            continue
        if any(
            (key := file_key(r["name"])) and file_writer(key[1]) == writer
            for r in receipt_records(receipt)
        ):
            return None
    for sequence, path in names:
        if sequence <= at[0]:
            continue
        manifest = read_manifest(path, sequence, writer)
        if manifest.body is None or manifest.error:
            return None  # damaged: the whole-chain path (and its refusal) decides
        fold(known, manifest, writer)
        advance(coverage, manifest)
        if manifest.kind == "seal":
            base = head_of(manifest)
    return known, TreeStart(writer, base, coverage if base else {})


def save_tail(
    store: AuditStore,
    writer: str,
    known: Known,
    tree: TreeStart,
    manifest: Manifest,
    chained: bool,
) -> None:
    """Write the state after `manifest` (the seal just appended): `known` and `tree` were the
    state before it (`chained` False: the chain was empty, so nothing before it counts).
    Failures are ignored (derived data: the next seal reads the chain)."""
    after: Known = dict(known) if chained else {}
    fold(after, manifest, writer)
    coverage = dict(tree.coverage) if chained else {}
    advance(coverage, manifest)
    base = head_of(manifest)
    others = foreign_receipt_names(store, writer)
    stamp = manifest.sealed_at[:19].replace(":", "-")
    if any(name.rsplit("/", 1)[-1].partition("-")[2][:19] >= stamp for name in others):
        # A receipt of another chain dated at or after this seal (clocks of two hosts): the
        # whole-chain fold orders it after the seal, which this state cannot; none is kept.
        with contextlib.suppress(OSError):
            os.unlink(store.root / state_name(writer))
        return
    state = _serialise(writer, after, coverage if base else {}, manifest, base, sorted(others))
    _write_state(store, writer, state)


def _manifest_at(
    by_sequence: dict[int, Path], ref: tuple[int, str], writer: str
) -> Manifest | None:
    path = by_sequence.get(ref[0])
    if path is None:
        return None
    manifest = read_manifest(path, ref[0], writer)
    return manifest if manifest.hash == ref[1] and manifest.error is None else None


def _serialise(
    writer: str,
    known: Known,
    coverage: dict[tuple[str, str], int],
    at: Manifest,
    base: TreeHead | None,
    receipts: Sequence[str],
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "writer": writer,
        "at": {"sequence": at.sequence, "hash": at.hash},
        "base": {"sequence": base.manifest.sequence, "hash": base.manifest.hash} if base else None,
        "known": [list(value) for _, value in sorted(known.items())],
        "coverage": [[day, segment, lines] for (day, segment), lines in sorted(coverage.items())],
        "receipts": list(receipts),
    }


def _parse(
    state: dict[str, Any], writer: str
) -> tuple[Known, dict[tuple[str, str], int], tuple[int, str], tuple[int, str] | None, set[str]]:
    if state.get("format") != FORMAT or state.get("writer") != writer:
        raise ValueError("not this writer's state")
    known: Known = {}
    for record, label, sealed_at in state["known"]:
        key = file_key(record["name"])
        if key is None or not isinstance(record.get("lines"), int):
            raise ValueError("bad record")
        known[key] = (record, str(label), str(sealed_at))
    coverage = {(str(day), str(segment)): int(lines) for day, segment, lines in state["coverage"]}
    at = (int(state["at"]["sequence"]), str(state["at"]["hash"]))
    base = state["base"]
    base_ref = None if base is None else (int(base["sequence"]), str(base["hash"]))
    return known, coverage, at, base_ref, {str(name) for name in state["receipts"]}


def _read_state(store: AuditStore, writer: str) -> dict[str, Any] | None:
    try:
        fd = open_file(store.root, state_name(writer))  # no symlink, no FIFO
    except OSError:
        return None
    try:
        state = orjson.loads(read_bounded(fd, MANIFEST_MAX, state_name(writer)))
    except (OSError, ValueError, AuditError):  # unreadable, too big, not JSON: as if missing
        return None
    finally:
        os.close(fd)
    return state if isinstance(state, dict) else None


def _write_state(store: AuditStore, writer: str, state: dict[str, Any]) -> None:
    data = orjson.dumps(state, option=orjson.OPT_SORT_KEYS) + b"\n"
    try:
        directory = make_dirs(store.root, [INDEX_DIR, STATE_DIR])
    except OSError:
        return
    try:
        write_atomic_at(directory, f"{writer}.json", f".{writer}.json.{os.getpid()}.tmp", data)
    except OSError:
        pass  # derived data: the next seal reads the chain
    finally:
        os.close(directory)


# ---------------------------------------------------------------------------- verify's side
def check_state(
    store: AuditStore,
    writer: str,
    manifests: Sequence[Manifest],
    receipts: Iterable[Manifest],
) -> Problem | None:
    """A problem when `writer`'s state file is not the fold of its chain up to the manifest it
    names (`manifests`: the whole chain as verify read it; `receipts`: every chain's). A state
    naming a manifest that is not in the chain, or older than a receipt of another chain that
    deleted this writer's files, is stale: never used by a seal, not reported; nor is one
    behind a deleted or damaged manifest (the chain's own problem, which changes the fold)."""
    state = _read_state(store, writer)
    if state is None:
        return None
    try:
        at = (int(state["at"]["sequence"]), str(state["at"]["hash"]))
        folded = {str(name) for name in state["receipts"]}
    except (KeyError, TypeError, ValueError):
        return _forged(writer, "not a seal state")
    prefix = []
    for manifest in manifests:
        prefix.append(manifest)
        if manifest.sequence == at[0]:
            break
    else:
        return None  # names no manifest of the chain: stale, unused
    if prefix[-1].hash != at[1]:
        return None  # not the chain's manifest: a seal does not use it
    if [m.sequence for m in prefix] != list(range(1, len(prefix) + 1)) or any(
        m.body is None or m.error for m in prefix
    ):
        return None  # a manifest deleted or damaged before it: reported on the chain itself
    foreign = [m for m in receipts if m.writer != writer and m.body is not None and not m.error]
    for receipt in foreign:
        if f"{receipt.writer}/{receipt.path.name}" not in folded and any(
            (key := file_key(r["name"])) and file_writer(key[1]) == writer
            for r in receipt_records(receipt)
        ):
            return None  # a seal would not use it
    # The fold a seal would make reading the whole chain up to there (seal.writer_state and
    # tree.tree_start, over the manifests already read).
    from .seal import writer_state
    from .tree import tree_start

    known, _, chained = writer_state(store, writer, prefix, foreign)
    tree = tree_start(store, writer, prefix, foreign)
    expected = _serialise(writer, known, tree.coverage, prefix[-1], tree.base, [])
    expected["receipts"] = state.get("receipts")
    if not chained or orjson.dumps(expected, option=orjson.OPT_SORT_KEYS) != orjson.dumps(
        state, option=orjson.OPT_SORT_KEYS
    ):
        return _forged(writer, f"not what {writer}'s chain says up to manifest #{at[0]}")
    return None


def _forged(writer: str, why: str) -> Problem:
    return Problem(
        state_name(writer),
        None,
        "forged index",
        f"{why} (a seal trusts it to list what changed): delete it; the next seal reads the"
        " whole chain and writes it again",
    )
