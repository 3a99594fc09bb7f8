"""`check_indexes()`: every line index the query engine would use must say what its log file
says. Indexes are derived data that anyone who can write the log directory can forge; the engine
checks each line an index selects, and this check (run by `audit verify`) rebuilds every index
that is current for its file (same identity and last bytes) and compares the two byte for byte.
An index found equal is vouched for (`auditcli.trust`): this user's later queries use it
without checking each line, for as long as its bytes and its file stay as they are.

Indexes of files that no longer exist, or no longer as indexed, are never used and not
reported. Anything that is not an index where one belongs (a symlink, a FIFO, a directory)
is reported, never followed or read."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from auditcli import lineindex, trust
from auditcli.errors import inert
from auditcli.query import Problem
from auditcli.safeio import kind_of, open_dir, open_dir_at, why
from auditcli.store import _PARTITION, AuditStore, _open_in_partition

from .constants import MERKLE_DIR
from .sealstate import STATE_DIR

_SUFFIX = ".idx"


def check_indexes(
    store: AuditStore, first_day: str | None = None, last_day: str | None = None
) -> list[Problem]:
    """Problems with the line indexes under `_index/` of partitions in [first_day, last_day]."""
    problems: list[Problem] = []
    where = lineindex.INDEX_DIR
    try:
        top = open_dir(store.root, [where])
    except FileNotFoundError:
        return problems
    except OSError as exc:
        return [Problem(where, None, "not an index directory", f"{why(exc)}; not read")]
    try:
        for partition in sorted(os.listdir(top)):
            name = f"{where}/{inert(partition)}"
            if partition in (MERKLE_DIR, STATE_DIR):  # checked against the chains (tree.py,
                continue  # sealstate.py)
            if partition == lineindex.CHECKPOINT_DIR:  # the auditor's: checked by a replay
                from auditcli.auditor.checkpoints import check_checkpoints  # a big import

                problems.extend(check_checkpoints(store, first_day, last_day))
                continue
            match = _PARTITION.fullmatch(partition)
            if match is None:
                if not partition.startswith("."):
                    problems.append(Problem(name, None, "stray file", "not an index partition"))
                continue
            day = match.group(1)
            if (first_day is not None and day < first_day) or (
                last_day is not None and day > last_day
            ):
                continue
            try:
                directory = open_dir_at(top, partition)
            except OSError as exc:
                problems.append(Problem(name, None, "not an index directory", why(exc)))
                continue
            try:
                problems.extend(_check_partition(store, partition, directory))
            finally:
                os.close(directory)
    finally:
        os.close(top)
    return problems


def _check_partition(store: AuditStore, partition: str, directory: int) -> Iterator[Problem]:
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return  # removed meanwhile with its partition (retention): nothing a query would use
    for entry in entries:
        if entry.startswith(".") or not entry.endswith(_SUFFIX):
            continue  # a temporary file of a writer, or not an index: never used
        name = f"{lineindex.INDEX_DIR}/{partition}/{inert(entry)}"
        try:
            info = os.stat(entry, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed meanwhile (its file was rotated or deleted)
        if not stat.S_ISREG(info.st_mode):
            yield Problem(name, None, "not an index", f"{kind_of(info.st_mode)}; not read")
            continue
        problem = _check_one(store, partition, entry[: -len(_SUFFIX)], name)
        if problem is not None:
            yield problem


def _check_one(store: AuditStore, partition: str, file_name: str, name: str) -> Problem | None:
    """Rebuild the index of `partition/file_name` and compare it with the stored one."""
    path = store.root / partition / file_name
    try:
        fd = _open_in_partition(path, os.O_RDONLY)
    except OSError:
        return None  # no such log file (or not one): the engine never uses this index
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        stored = lineindex.load(
            store.root,
            partition,
            file_name,
            lineindex.identity(info),
            lineindex.tail_of(fd, info.st_size),
            lineindex.FIELDS,
        )
        if stored is None:
            return None  # stale or unreadable: the engine rebuilds it
        fresh = lineindex.build(fd, info, compressed=file_name.endswith(".gz"))
        if fresh is None:
            return None  # changed while read (the engine would not use the index either)
        content = fresh.to_bytes()
        if content == stored.to_bytes():
            # Checked against its file: this user's queries may use it without per-line
            # checks (only while its bytes are exactly these: see auditcli.trust).
            trust.vouch(content)
            return None
        return Problem(
            name,
            None,
            "forged index",
            f"does not describe {partition}/{file_name} (queries check every line it selects, "
            "but it may hide or miscount entries): delete it; the next query rebuilds it",
        )
    finally:
        os.close(fd)
