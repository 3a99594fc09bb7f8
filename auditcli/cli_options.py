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

from .errors import NoStoreError
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


def complete_action(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion of an action name: the builtins and the log directory's own actions."""
    from .catalog import Catalog
    from .config import resolve
    from .store import default_log_dir

    try:
        root = resolve()["log_dir"].value or default_log_dir()
        catalog = Catalog.load(Path(root))
    except Exception:  # a broken config or catalog: complete the builtins, never fail
        catalog = Catalog()
    return [
        (spec.action, spec.display_name) for spec in catalog if spec.action.startswith(incomplete)
    ]


def complete_target(incomplete: str) -> list[str]:
    """Shell completion of a target type."""
    from .catalog import TARGETS

    return [target for target in TARGETS if target.startswith(incomplete.upper())]


#: `-f/--format` of the commands that print a table on a terminal and JSON when piped.
TableOrJsonOpt = Annotated[
    TableOrJson | None,
    typer.Option("--format", "-f", help="Default: table on a terminal, else json."),
]
ActionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--action",
        "-a",
        metavar="ACTION",
        help="Only this action (repeat for any of several).",
        autocompletion=complete_action,
        rich_help_panel=_FILTERS,
    ),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        "-t",
        metavar="TYPE",
        help="Only this target type: USER, ROLE, TEAM, SERVICE_ACCOUNT, ORGANIZATION.",
        autocompletion=complete_target,
        rich_help_panel=_FILTERS,
    ),
]
ActorIdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--actor-id", metavar="ID", help="Only entries by this actor.", rich_help_panel=_FILTERS
    ),
]
TargetIdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target-id",
        metavar="ID",
        help="Only entries about this resource.",
        rich_help_panel=_FILTERS,
    ),
]
TeamIdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--team-id", metavar="ID", help="Only entries of this team.", rich_help_panel=_FILTERS
    ),
]
OrgIdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--org-id",
        metavar="ID",
        help="Only entries of this organization.",
        rich_help_panel=_FILTERS,
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        "--created-at-gte",
        metavar="TIME",
        help="From this time, inclusive: 2026-11-25T08:00:00Z, 2026-11-25, 7d, 3mo,"
        " '2 hours ago', today…",
        rich_help_panel=_FILTERS,
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until",
        "--created-at-lte",
        metavar="TIME",
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


#: Global options by parameter name: the config key each sets and the flag it is named by.
_FLAG_KEYS = {"log_dir": ("log_dir", "--log-dir"), "tz": ("time_zone", "--tz")}
#: Config keys that become defaults of the commands' options of the same meaning (click's
#: default_map: below a flag and the option's own environment variable).
_OPTION_OF_KEY = {
    "signing_key": "--signing-key",
    "public_key": "--public-key",
    "format": "--format",
}


def start(ctx: typer.Context, flags: dict[str, Any]) -> None:
    """Read the settings (config files and environment) once, for the whole run, and make the
    config's signing key, public key and format the defaults of the options that take them."""
    from .config import resolve

    ctx.obj = {"flags": {}, "settings": resolve()}
    for name, value in flags.items():
        if value is not None:
            set_flag(ctx, name, value)
    _show_times_in_zone(ctx)
    ctx.default_map = _defaults(ctx.command, ctx.obj["settings"])


def set_flag(ctx: typer.Context, name: str, value: Any) -> None:
    """Record global option `name` (given before or after the command name)."""
    ctx.find_root().obj["flags"][name] = value
    if name == "tz":
        _show_times_in_zone(ctx)


def _show_times_in_zone(ctx: typer.Context) -> None:
    """Tables show times in the zone of `--tz`, `TZ` or the config (UTC when none is set)."""
    from .timeparse import set_display_zone

    zone = settings(ctx)["time_zone"]
    source = zone.source if zone.source in ("--tz", "TZ") else f"{zone.source}: time_zone"
    set_display_zone(zone.value, option=source, lenient=zone.source == "TZ")


def settings(ctx: typer.Context) -> dict[str, Any]:
    """Every setting's effective value and source (config.Setting), global flags applied."""
    from .config import Setting

    obj = ctx.find_root().obj
    result = dict(obj["settings"])
    for name, value in obj["flags"].items():
        key, flag = _FLAG_KEYS[name]
        result[key] = Setting(key, value, flag)
    return result


def _defaults(command: Any, found: dict[str, Any]) -> dict[str, Any]:
    """click's default_map for `command`'s subtree from the settings that have a value."""
    wanted = {
        _OPTION_OF_KEY[name]: setting.value
        for name, setting in found.items()
        if name in _OPTION_OF_KEY and setting.value is not None
    }
    result: dict[str, Any] = {}
    if not wanted:
        return result
    for name, sub in getattr(command, "commands", {}).items():
        defaults = _defaults(sub, found) if hasattr(sub, "commands") else {}
        for param in sub.params:
            for opt, value in wanted.items():
                if opt in param.opts and _accepts(param, value):
                    defaults[param.name] = value
        if defaults:
            result[name] = defaults
    return result


def _accepts(param: Any, value: Any) -> bool:
    """Whether an option takes `value` as its default. The config's format is the default only
    of commands that draw tables and offer that format (not `record`'s id or `export`'s
    formats: a script reading them must not change with a config file); one key path goes to
    a list option as a list and to a single option as itself."""
    choices = getattr(getattr(param, "type_descriptor", None), "choices", None)
    if choices:
        offered = {str(choice) for choice in choices}
        return "table" in offered and str(value) in offered
    return bool(param.multiple) == isinstance(value, list)


def get_store(ctx: typer.Context, *, must_exist: bool = True) -> AuditStore:
    """The store of the log directory chosen by `--log-dir`, `AUDIT_LOG_DIR`, the config file
    or the default, and this host's writer id. With `must_exist` (all but `record`, `import`,
    which create it at their first write, and `path`), it must already be a log directory: a
    mistyped path is an error (exit 7), not an empty log."""
    from .store import require_store

    found = settings(ctx)
    log_dir, writer = found["log_dir"], found["writer_id"]
    # AUDIT_WRITER_ID is the store's to read (it reduces a host name to a valid id); a config
    # file's writer_id is taken as written, and refused when it is not a valid id.
    from_file = writer.value if writer.source not in ("default", "AUDIT_WRITER_ID") else None
    store = AuditStore(log_dir.value, writer_id=from_file)
    if must_exist:
        try:
            require_store(store.root)
        except NoStoreError as exc:
            origin = "" if log_dir.source == "default" else f" (from {log_dir.source})"
            raise NoStoreError(
                f"{exc}{origin}; check the path, or create one with `audit init {store.root}`"
            ) from None
    return store


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


def deliver(data: bytes, done: str) -> None:
    """Write `data` to stdout and flush it now; when stdout fails (full disk, closed pipe),
    an error (exit 1) that says what was `done` all the same, e.g. that an entry is stored
    and its id, which the caller would otherwise lose."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except OSError as exc:
        from .errors import AuditError

        # What is still buffered would fail again at exit, with a traceback-like message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise AuditError(f"stdout: {exc.strerror or exc}; {done}") from None


def write_json(data: Any) -> None:
    """`data` as indented JSON and a newline on stdout (the `--format json` of the commands)."""
    import orjson

    write_out(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def time_window(filters: Any) -> str:
    """The --since/--until window of `filters`, as a table caption shows it."""
    return f"{filters.since or 'beginning'} → {filters.until or 'now'} (UTC)"


def report_problems(problems: list[Any], outcome: str = "") -> None:
    """Damaged lines were skipped: a warning for each on stderr, then exit 5 (IntegrityError),
    after the answer was printed; `outcome` says what that meant for the output."""
    if not problems:
        return
    from .errors import IntegrityError

    for problem in problems:
        say(f"warning: {problem}")
    raise IntegrityError(
        f"{len(problems)} damaged or foreign line(s)/file(s) were skipped"
        + (f"; {outcome}" if outcome else "")
        + "; run `audit verify`"
    )
