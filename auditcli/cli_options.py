"""Options shared by several commands, defined once, and the helpers commands use to render.

Nothing here imports rich at module level: `audit record` in a shell loop must start fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from .store import AuditStore

_FILTERS = "Filters"


class TableOrJson(StrEnum):
    """`--format` of a command that draws a table for people or writes JSON for scripts."""

    table = "table"
    json = "json"


class Order(StrEnum):
    """`--order`: by createdAt, ties by id."""

    desc = "desc"
    asc = "asc"


ActionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--action",
        "-a",
        help="Only this action (repeat for any of several).",
        rich_help_panel=_FILTERS,
    ),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        "-t",
        help="Only this target type: USER, ROLE, TEAM, SERVICE_ACCOUNT, ORGANIZATION.",
        rich_help_panel=_FILTERS,
    ),
]
ActorIdOpt = Annotated[
    list[str] | None,
    typer.Option("--actor-id", help="Only entries by this actor.", rich_help_panel=_FILTERS),
]
TargetIdOpt = Annotated[
    list[str] | None,
    typer.Option("--target-id", help="Only entries about this resource.", rich_help_panel=_FILTERS),
]
TeamIdOpt = Annotated[
    list[str] | None,
    typer.Option("--team-id", help="Only entries of this team.", rich_help_panel=_FILTERS),
]
OrgIdOpt = Annotated[
    list[str] | None,
    typer.Option("--org-id", help="Only entries of this organization.", rich_help_panel=_FILTERS),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        "--created-at-gte",
        help="From this time, inclusive: 2026-11-25T08:00:00Z, 2026-11-25, 7d, 24h, today…",
        rich_help_panel=_FILTERS,
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until",
        "--created-at-lte",
        help="Up to this time, inclusive (a bare date includes that whole day).",
        rich_help_panel=_FILTERS,
    ),
]


def make_filters(
    store: AuditStore,
    *,
    action: list[str] | None = None,
    target: list[str] | None = None,
    actor_id: list[str] | None = None,
    target_id: list[str] | None = None,
    team_id: list[str] | None = None,
    org_id: list[str] | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Any:
    """Build and check the core's Filters from the shared filter options."""
    from .query import Filters
    from .timeparse import parse_bound

    filters = Filters(
        actions=tuple(action or ()),
        targets=tuple(value.upper() for value in target or ()),
        actor_ids=tuple(actor_id or ()),
        target_ids=tuple(target_id or ()),
        team_ids=tuple(team_id or ()),
        org_ids=tuple(org_id or ()),
        since=parse_bound(since, end=False, clock=store.clock, option="--since") if since else None,
        until=parse_bound(until, end=True, clock=store.clock, option="--until") if until else None,
    )
    return filters.check(store.catalog)


_FILTER_OPTIONS = (
    "action",
    "target",
    "actor_id",
    "target_id",
    "team_id",
    "org_id",
    "since",
    "until",
)


def filters_from_options(ctx: typer.Context, store: AuditStore) -> Any:
    """The checked Filters of a command that declares the shared filter options above."""
    return make_filters(store, **{name: ctx.params.get(name) for name in _FILTER_OPTIONS})


def get_store(ctx: typer.Context) -> AuditStore:
    """The store of the log directory chosen by `--log-dir`, `AUDIT_LOG_DIR` or the default."""
    root: Path | None = ctx.obj.get("log_dir") if ctx.obj else None
    return AuditStore(root)


def stdout_is_terminal() -> bool:
    """Whether standard output is a terminal (tables by default) or a pipe (JSONL)."""
    return sys.stdout.isatty()


def pick_format(given: Any, table: Any, machine: Any) -> Any:
    """The `--format` given, else `table` on a terminal and `machine` (JSON or JSONL) in a pipe:
    the one rule of every command that prints data."""
    if given is not None:
        return given
    return table if stdout_is_terminal() else machine


def global_flag(ctx: typer.Context, name: str) -> bool:
    """A global flag of the root command (`quiet`, `no_pager`), seen from any subcommand."""
    obj = ctx.find_root().obj or {}
    return bool(obj.get(name))


@contextmanager
def screen(ctx: typer.Context) -> Iterator[Any]:
    """The console a command draws its tables on. On a terminal, output taller than the screen
    goes through the pager (see pager.py) unless `--no-pager`; on a pipe it is written as is."""
    out = console()
    command = None
    if stdout_is_terminal() and not global_flag(ctx, "no_pager"):
        from .pager import pager_command

        command = pager_command()
    if command is None:
        yield out
        return
    with out.capture() as captured:
        yield out
    text = captured.get()
    if text.count("\n") < out.height:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from .pager import page

        page(text, command)


def console(stderr: bool = False) -> Any:
    """A rich Console that never interprets markup or emoji and honours NO_COLOR."""
    from rich.console import Console

    return Console(
        stderr=stderr,
        markup=False,
        emoji=False,
        highlight=False,
        no_color="NO_COLOR" in os.environ or None,
    )


#: Work that ends sooner than this shows no progress bar (no flicker on quick commands).
SHOW_AFTER = 1.0


class _ProgressBar:
    """A `progress.Progress` that draws a transient rich bar on stderr once the work has taken
    SHOW_AFTER seconds: entries, entries per second and, where the total is known, a bar and
    the time left."""

    def __init__(self, label: str, total: int | None, unit: str) -> None:
        import time

        self.label, self.total, self.unit = label, total, unit
        self.clock = time.monotonic
        self.started = self.last = self.phase_started = self.clock()
        self.phase: str | None = None
        self.bar: Any = None
        self.task: Any = None

    def __call__(
        self,
        entries: int,
        *,
        done: int | None = None,
        total: int | None = None,
        phase: str | None = None,
    ) -> None:
        now = self.clock()
        if total is not None:
            self.total = total
        if self.bar is None:
            if now - self.started < SHOW_AFTER:
                return
            self._start()
        elif now - self.last < 0.1:
            return  # ten times a second is as often as anyone can read it
        self.last = now
        if phase != self.phase:
            if self.phase is not None:  # a later stage counts its entries from 0 again
                self.phase_started = now
            self.phase = phase
        elapsed = now - self.phase_started
        rate = f" · {entries / elapsed:,.0f}/s" if elapsed >= 0.2 else ""  # else: no rate yet
        self.bar.update(
            self.task,
            completed=done if done is not None else entries,
            total=self.total,
            description=f"{self.label} ({phase})" if phase else self.label,
            entries=f"{entries:,} {self.unit}{rate}",
        )

    def _start(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[entries]}"),
            TimeRemainingColumn(),
            console=console(stderr=True),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total, entries="")

    def close(self) -> None:
        """Take the bar off the screen."""
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def progress_bar(
    ctx: typer.Context, label: str, *, total: int | None = None, unit: str = "entries"
) -> Iterator[Any]:
    """The `progress` argument for a core function: a bar on stderr when stderr is a terminal
    and `--quiet` was not given, else None (nothing to draw: a pipe, a log file, cron).
    `total`: the size of the work, when the caller knows it and the core does not."""
    if global_flag(ctx, "quiet") or not sys.stderr.isatty():
        yield None
        return
    bar = _ProgressBar(label, total, unit)
    try:
        yield bar
    finally:
        bar.close()


def say(message: str) -> None:
    """A diagnostic line on stderr (never on stdout, which is for results); control and bidi
    characters from untrusted input are shown as escapes."""
    from .errors import inert

    sys.stderr.write(inert(message) + "\n")


def write_out(data: bytes) -> None:
    """Raw bytes to stdout."""
    sys.stdout.buffer.write(data)


def write_json(data: Any) -> None:
    """`data` as indented JSON and a newline on stdout (the `--format json` of the commands)."""
    import orjson

    write_out(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def time_window(filters: Any) -> str:
    """The --since/--until window of `filters`, as a table caption shows it."""
    return f"{filters.since or 'beginning'} → {filters.until or 'now'} (UTC)"


def report_problems(problems: list[Any]) -> None:
    """Damaged lines were skipped: a warning for each on stderr, then exit 5 (IntegrityError),
    after the answer was printed."""
    if not problems:
        return
    from .errors import IntegrityError

    for problem in problems:
        say(f"warning: {problem}")
    raise IntegrityError(
        f"{len(problems)} damaged or foreign line(s)/file(s) were skipped; run `audit verify`"
    )
