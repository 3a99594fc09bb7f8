"""Work spread over forked worker processes: `forked_map`, and on it verify's writers, merged
in writer order, and one writer's files, merged in file order (seal's first read of a store's
files uses `forked_map` too).

Each writer is checked against its own chain, so writers are independent once the store is
surveyed and the legacy chain and receipts are read: a worker forked then inherits all of
that, checks one writer at a time exactly as a sequential verify would (same code, same
state before it), and sends back only what that writer added to the report. The parent folds
those additions in writer order, so the report is the sequential one. Memory stays one
writer's state per process.

Within a writer, once its chain is read, each file is checked against its own chain links and
the checkpoints read from the manifests, which no other file's check changes: a store with one
big writer forks after its chain and checks runs of its files side by side (`check_files`).
The Merkle tree heads, whose leaves run across files in order, are fed by the parent from the
leaf hashes each worker's scan sends back, in file order; what ties the files together
(missing files, coverage, tree heads) is checked by the parent afterwards, as before.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from auditcli.errors import AuditError

T = TypeVar("T")
R = TypeVar("R")

#: Report counters a writer adds to.
_COUNTED = ("files", "entries", "bytes", "checkpoints", "uncovered", "receipted_files")
#: Lists of the verifier (or its report) a writer appends to: (owner, attribute).
_LISTS = (
    ("report", "problems"),
    ("report", "hosts"),
    ("verifier", "heads"),
    ("verifier", "statuses"),
    ("verifier", "torn_notes"),
    ("verifier", "legacy_elsewhere"),
)
#: A writer's counters a file check adds to.
_HOST_COUNTED = ("files", "entries", "uncovered")
#: Runs of files per worker process (a little more than one: a slow run is not waited for alone).
_RUNS_PER_WORKER = 4
#: A run of files holds about this many bytes at most (a run's leaf hashes come back whole).
_RUN_BYTES = 32 << 20
#: Below this many files (and bytes) a second process costs more than it saves.
PARALLEL_FILES = 200
PARALLEL_BYTES = 32 << 20


@dataclass
class WriterDelta:
    """What checking one writer added: counters, appended items, new key ids, tree counts."""

    counted: dict[str, int] = field(default_factory=dict)
    appended: dict[str, list[Any]] = field(default_factory=dict)
    key_ids: list[str] = field(default_factory=list)
    tree_counts: dict[str, int] = field(default_factory=dict)
    files_done: int = 0
    anchor_found: bool = False


def _owner(verifier: Any, name: str) -> Any:
    return verifier.report if name == "report" else verifier


def capture(verifier: Any, check: Callable[[], None]) -> WriterDelta:
    """Run `check` (one writer's check) and return what it added to `verifier`."""
    report, trees = verifier.report, verifier.trees
    counted = {name: getattr(report, name) for name in _COUNTED}
    marks = {attr: len(getattr(_owner(verifier, owner), attr)) for owner, attr in _LISTS}
    ids = len(report.key_ids)
    tree_counts = dict(trees.counts) if trees else {}
    done, anchor = verifier.files_done, verifier.anchor_found
    check()
    return WriterDelta(
        {name: getattr(report, name) - counted[name] for name in _COUNTED},
        {attr: getattr(_owner(verifier, owner), attr)[marks[attr] :] for owner, attr in _LISTS},
        report.key_ids[ids:],
        {key: trees.counts[key] - tree_counts[key] for key in tree_counts} if trees else {},
        verifier.files_done - done,
        verifier.anchor_found and not anchor,
    )


def merge(verifier: Any, delta: WriterDelta) -> None:
    """Add one writer's `delta` (from a worker) to `verifier`, as if it had checked it."""
    report = verifier.report
    for name, added in delta.counted.items():
        setattr(report, name, getattr(report, name) + added)
    for owner, attr in _LISTS:
        getattr(_owner(verifier, owner), attr).extend(delta.appended[attr])
    report.key_ids.extend(k for k in delta.key_ids if k not in report.key_ids)
    if verifier.trees:
        for key, added in delta.tree_counts.items():
            verifier.trees.counts[key] += added
    verifier.files_done += delta.files_done
    verifier.anchor_found = verifier.anchor_found or delta.anchor_found


def worker_count(files: int, size: Callable[[], int], writers: int, workers: int | None) -> int:
    """How many processes check the writers: `workers` if given, else one per CPU this process
    may run on when the store (`files` files of `size()` bytes) is big enough to gain from it;
    never more than the writers."""
    if workers is None:
        workers = cpu_count()
        if files < PARALLEL_FILES and size() < PARALLEL_BYTES:
            workers = 1
    return max(1, min(workers, writers))


def cpu_count() -> int:
    """The CPUs this process may run on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cpus or 1


_TASK: Callable[[Any], Any] | None = None  # set in the parent just before forking


def _start_worker(parent: int) -> None:
    """A worker never writes to the terminal, and must not flush the standard streams it
    inherited at exit: a lock another thread of the parent held when it forked (a progress
    bar) would never be released in the worker. It ends with its parent."""
    sys.stdout = sys.stderr = None
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """End this worker once the process that forked it is gone: killed (kill -9), it waits for
    no worker, and one left behind would hold what it inherited for ever (a seal's lock on the
    store's manifests: every later seal would wait on it, then fail)."""
    while os.getppid() == parent:
        time.sleep(0.1)
    os._exit(1)


def _run_task(item: Any) -> Any:
    assert _TASK is not None
    return _TASK(item)


def forked_map(
    function: Callable[[T], R], items: Iterable[T], count: int, failed: str
) -> Generator[R, None, None]:
    """`function(item)` for each of `items` in `count` forked processes, the results in `items`
    order. `function` is inherited by the fork, never pickled: only the items and the results
    cross, and at most `count` + 1 results wait in the parent (memory). A worker that dies
    (killed, out of memory) raises AuditError `failed` instead of leaving the caller waiting."""
    global _TASK
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    _TASK = function
    # fork: the workers inherit the modules and the caller's state; starting them costs
    # milliseconds. They never touch the terminal (progress is told by the caller).
    context = multiprocessing.get_context("fork")
    # Out of the collector's sight, the objects inherited stay shared with the parent
    # instead of being copied into each worker by a full collection touching them all.
    gc.freeze()
    pool = ProcessPoolExecutor(
        count, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
    )
    try:
        ahead: deque[Future[R]] = deque()
        for item in items:
            ahead.append(pool.submit(_run_task, item))
            if len(ahead) > count:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    except BrokenProcessPool as exc:
        raise AuditError(f"{failed} ({exc})") from None
    finally:
        pool.shutdown(cancel_futures=True)
        _TASK = None
        gc.unfreeze()


def check_writers(
    verifier: Any,
    writers: Sequence[str],
    check: Callable[[str], None],
    count: int,
    done: Callable[[], None],
) -> None:
    """`check(writer)` for each writer, in `count` forked processes; each writer's additions
    merged into `verifier` in `writers` order, `done()` called after each."""
    deltas = forked_map(
        lambda writer: capture(verifier, lambda: check(writer)),
        writers,
        count,
        "verify: a worker process died; nothing was judged",
    )
    with contextlib.closing(deltas):  # a failure here stops the workers at once
        for delta in deltas:
            merge(verifier, delta)
            done()


@dataclass
class FilesDelta:
    """What checking a run of one writer's files added: the verifier's additions (`capture`),
    the writer's counters, what each file's check returned, and the record entries
    (proven.py) the checks used or made."""

    delta: WriterDelta
    host: dict[str, int]
    results: list[Any]
    proven: dict[str, list]
    proven_changed: bool


def _capture_files(verifier: Any, run: Sequence[Any], check: Callable[[Any], Any]) -> FilesDelta:
    """Check the files of `run` with `check` and return what that added to `verifier`."""
    host, proven = verifier.host, verifier.proven
    counted = {name: getattr(host, name) for name in _HOST_COUNTED}
    used = set(proven.used_files) if proven is not None else set()
    results: list[Any] = []
    delta = capture(verifier, lambda: results.extend(check(file) for file in run))
    return FilesDelta(
        delta,
        {name: getattr(host, name) - counted[name] for name in _HOST_COUNTED},
        results,
        {k: v for k, v in proven.used_files.items() if k not in used} if proven else {},
        proven.changed if proven is not None else False,
    )


def file_runs(files: Sequence[T], sizes: Sequence[int], count: int) -> list[Sequence[T]]:
    """`files` cut into runs of consecutive files for `count` processes: about
    `_RUNS_PER_WORKER` runs per process, and none much over `_RUN_BYTES` (what a run's check
    sends back grows with its lines) but a file bigger than that (`too_big`), alone."""
    target = min(sum(sizes) // (count * _RUNS_PER_WORKER), _RUN_BYTES)
    runs: list[Sequence[T]] = []
    start, held = 0, 0
    for at, size in enumerate(sizes):
        if too_big(size) and start < at:  # a run of its own (see too_big)
            runs.append(files[start:at])
            start, held = at, 0
        held += size
        if held >= target or at == len(sizes) - 1:
            runs.append(files[start : at + 1])
            start, held = at + 1, 0
    return runs


def too_big(size: int) -> bool:
    """Whether a file of `size` bytes (file_runs) is too big for a worker to check: it would
    send back the leaf hashes of all its lines at once. Alone in its run, the caller checks
    it itself in its turn."""
    return size > _RUN_BYTES


def check_files(
    verifier: Any,
    runs: Sequence[Sequence[T]],
    check: Callable[[T], R],
    take: Callable[[T, R], bool],
    count: int,
    done: Callable[[], None],
) -> list[bool]:
    """`check(file)` for each file of one writer's `runs` (file_runs) in `count` forked
    processes; in the parent, in file order, the additions of each run merged into `verifier`
    (its writer's report and record too), then `take(file, what check returned)` for each of
    its files (False: the file vanished) and `done()`. Returns what `take` returned."""
    deltas = forked_map(
        lambda run: _capture_files(verifier, run, check),
        runs,
        count,
        "verify: a worker process died; nothing was judged",
    )
    found: list[bool] = []
    host, proven = verifier.host, verifier.proven
    with contextlib.closing(deltas):  # a failure here stops the workers at once
        for run, added in zip(runs, deltas, strict=True):
            merge(verifier, added.delta)
            for name, value in added.host.items():
                setattr(host, name, getattr(host, name) + value)
            if proven is not None:
                proven.used_files.update(added.proven)
                proven.changed = proven.changed or added.proven_changed
            found.extend(
                take(file, result) for file, result in zip(run, added.results, strict=True)
            )
            done()
    return found
