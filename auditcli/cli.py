"""The `audit` command: parses options, calls the core, renders. Exit codes are documented in
docs/reliability.md; every error, the framework's usage errors included, is one `Error: …` line
on stderr and its class's exit code."""

# No `from __future__ import annotations`: typer would eval every annotation string at start-up.

import copy
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .cli_params import plain_param
from .errors import AuditError, inert


class _AuditGroup(TyperGroup):
    """The `audit` group: maps every AuditError a command raises to `Error: …` on stderr and its
    exit code, prints the framework's usage errors the same way (one line, exit 2), and tidies
    the command tree once built (see `_tidy`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _tidy(self, [param for param in self.params if param.name in _GLOBAL_NAMES])

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; a usage error is one `Error: … See 'audit X -h'.` line, exit 2."""
        _resolved.clear()
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.Abort:
            if not standalone_mode:
                raise
            sys.stderr.write("Error: aborted\n")
            sys.exit(1)
        except Exception as exc:
            from typer._click.exceptions import ClickException, NoArgsIsHelpError

            if not isinstance(exc, ClickException) or not standalone_mode:
                raise
            if isinstance(exc, NoArgsIsHelpError):
                exc.show()  # `audit`, `audit keys`: the help, as click shows it (exit 2)
            else:
                sys.stderr.write(f"Error: {inert(usage_message(exc))}\n")
            sys.exit(exc.exit_code)
        if not standalone_mode:
            return code
        # Without standalone mode a command's Exit comes back as its code; success as None.
        sys.exit(code if isinstance(code, int) else 0)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """Note the command path resolved so far, for errors that come without a context."""
        name, command, rest = super().resolve_command(ctx, args)
        _resolved[:] = [ctx.command_path, name or ""]
        if command is not None:  # its help option is made on first use
            _convert_plainly(command.get_params(ctx))
        return name, command, rest

    def get_params(self, ctx: Any) -> list[Any]:
        """The group's options, the help and completion options added by typer included."""
        params = super().get_params(ctx)
        _convert_plainly(params)
        return params

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AuditError as exc:
            problems = getattr(exc, "problems", None) or []
            sys.stderr.write(f"Error: {inert(str(exc))}\n")
            for problem in problems:
                if problem != str(exc):
                    sys.stderr.write(f"  {inert(problem)}\n")
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            # `audit query | head`: the reader left; that is not an error of ours.
            sys.stderr.close()
            raise typer.Exit(0) from None
        except Exception as exc:
            # Click's own exceptions (usage errors, exits) are for `main` to print. Anything else
            # is a bug or an unwrapped OS error: one line and exit 1, never a traceback, which
            # could quote an entry's content. AUDIT_DEBUG=1 shows it.
            own = isinstance(exc, typer.Exit | typer.Abort) or type(exc).__module__.startswith(
                ("click", "typer")
            )
            if own or os.environ.get("AUDIT_DEBUG"):
                raise
            if isinstance(exc, OSError):
                where = f"{exc.filename}: " if exc.filename else ""
                sys.stderr.write(f"Error: {inert(where)}{exc.strerror or type(exc).__name__}\n")
            else:
                sys.stderr.write(
                    f"Error: internal error ({type(exc).__name__}); "
                    "run with AUDIT_DEBUG=1 for the traceback\n"
                )
            raise typer.Exit(1) from None


#: The command path last resolved (see `_AuditGroup.resolve_command`).
_resolved: list[str] = []

#: Typer's parameter checks speak pydantic; these say the same in a CLI's words.
_PYDANTIC_WORDS = (
    (re.compile(r"Value error, "), ""),
    (re.compile(r"Input should be a valid integer.*"), "expected a whole number"),
    (re.compile(r"Input should be a valid number.*"), "expected a number"),
    (re.compile(r"Input should be a valid boolean.*"), "expected true or false"),
    (re.compile(r"Input should be "), "expected "),
)


def usage_message(exc: Any) -> str:
    """A click/typer usage error as one line: what is wrong, then where to read more."""
    from typer._click.exceptions import BadParameter, UsageError

    text = " ".join(exc.format_message().split())
    for pattern, words in _PYDANTIC_WORDS:
        text = pattern.sub(words, text)
    if isinstance(exc, BadParameter) and exc.param is not None:
        text = text.replace(" / ", "/")
    ctx = exc.ctx if isinstance(exc, UsageError) else None
    # Some parser errors carry no context: the command being parsed is then the last resolved.
    where = ctx.command_path if ctx is not None else " ".join(_resolved) or "audit"
    return f"{text}{' ' if text.endswith(('.', '?')) else '. '}See '{where} -h'."


def _tidy(group: Any, globals_: list[Any]) -> None:
    """Once the tree is built: plain help (no boxes, flags without a type), metavars that read
    like a CLI, one-line summaries in the command list, and the global options accepted after
    the command name too (`audit query --log-dir X`)."""
    _tidy_params(group)
    for command in group.commands.values():
        own = {opt for param in command.params for opt in param.opts}
        for param in globals_:
            if own.isdisjoint(param.opts):
                late = copy.copy(param)
                late.expose_value = False
                late.callback = _set_late_global
                late.help = f"Same as '{param.opts[0]}' before the command name."
                command.params.append(late)
        if not command.short_help and command.help:
            command.short_help = _summary(command.help)
        if hasattr(command, "commands"):
            _tidy(command, globals_)
        else:
            _tidy_params(command)


def _tidy_params(command: Any) -> None:
    command.rich_markup_mode = None
    _convert_plainly(command.params)
    for param in command.params:
        if param.param_type_name == "argument":
            param.metavar = param.metavar or param.name.upper()
            # Typer would show `{action}` in the usage line and `<str>` after the name.
            param._usage_display_name = _plain_usage(param)
            param.display_type_rich = _no_type
        elif param.metavar is None and not getattr(param, "is_flag", False):
            param.metavar = _metavar(param.opts[0], param.display_type(None))


def _convert_plainly(params: list[Any]) -> None:
    """Typer would convert every value through pydantic: plain types convert without it (see
    cli_params)."""
    for param in params:
        if getattr(param, "_runtime_param", True) is None:
            param._runtime_param = plain_param(param)


def _no_type(ctx: Any = None) -> None:
    return None


def _plain_usage(param: Any) -> Any:
    def usage() -> str:
        return param.metavar if param.required else f"[{param.metavar}]"

    return usage


#: What to give, by option name, where the type alone would say TEXT or INTEGER.
_METAVAR_OF_OPTION = {
    "--target": "TYPE",
    "--host": "ADDRESS",
    "--port": "PORT",
    "--location": "URL",
    "--table": "NAME",
    "--group": "NAME",
    "--interval": "SECONDS",
    "--compress-after": "DAYS",
    "--delete-after": "DAYS",
    "--ssl-certfile": "FILE",
    "--ssl-keyfile": "FILE",
    **dict.fromkeys(("--limit", "--offset", "--top", "--max-rows", "--workers"), "N"),
}
_METAVAR_OF_SUFFIX = (("-id", "ID"), ("-email", "EMAIL"), ("-name", "NAME"))


def _metavar(option: str, shown: str) -> str:
    """A metavar from the option's name (`--org-id` → ID, `--port` → PORT) or its type as
    typer shows it (`<list[str]>` → TEXT, `<int>` → INTEGER, `<desc|asc>` → [desc|asc])."""
    inner = shown.strip("<>")
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[5:-1]
    if "|" in inner:
        return f"[{inner}]"
    if option in _METAVAR_OF_OPTION:
        return _METAVAR_OF_OPTION[option]
    for suffix, metavar in _METAVAR_OF_SUFFIX:
        if option.endswith(suffix):
            return metavar
    inner = inner.removesuffix(" range")  # `<int range>`: the range is shown after the help
    return {"int": "INTEGER", "float": "NUMBER", "path": "PATH", "file": "FILE"}.get(inner, "TEXT")


def _summary(help_text: str) -> str:
    """The first sentence of a help text's first paragraph, on one line."""
    first = " ".join(help_text.split("\n\n")[0].split())
    end = first.find(". ")
    return first if end < 0 else first[: end + 1]


def _set_late_global(ctx: Any, param: Any, value: Any) -> Any:
    """A global option given after the command name: the same effect as before it."""
    if value is not None:
        from .cli_options import set_flag

        set_flag(ctx, param.name, value)
    return value


class _AuditTyper(typer.Typer):
    """A Typer app whose command modules are imported when its commands are first asked for.

    Importing `auditcli.cli` (tests, `CliRunner`) still sees every command; `main()` first
    registers only the invoked command's module (see `_register`)."""

    _state = "pending"  # then "loading" while modules import, then "done"

    @property
    def registered_commands(self) -> list[Any]:
        _ensure_registered()
        return self._commands

    @registered_commands.setter
    def registered_commands(self, value: list[Any]) -> None:
        self._commands = value

    @property
    def registered_groups(self) -> list[Any]:
        _ensure_registered()
        return self._groups

    @registered_groups.setter
    def registered_groups(self, value: list[Any]) -> None:
        self._groups = value


app = _AuditTyper(
    cls=_AuditGroup,
    name="audit",
    help="An append-only, tamper-evident audit log of administrative actions.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"audit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            "-d",
            metavar="DIR",
            help="The log directory (default: $AUDIT_LOG_DIR, the config file's log_dir, else"
            " ~/.local/share/auditcli/logs). Before or after the command name.",
        ),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            metavar="ZONE",
            help="Show times in tables in this zone: UTC, local or e.g. Europe/Paris (default:"
            " $TZ, the config file's time_zone, else UTC). Stored times stay UTC.",
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress bars on stderr (results and errors stay)."),
    ] = False,
    no_pager: Annotated[
        bool,
        typer.Option(
            "--no-pager",
            help="Never page long output (default pager: $AUDIT_PAGER, $PAGER, else less -FRX).",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Record and query audit logs. Run `audit COMMAND -h` for a command's options."""
    from .cli_options import start

    start(ctx, {"log_dir": log_dir, "tz": tz})
    ctx.obj.update(quiet=quiet, no_pager=no_pager)


_COMMAND_MODULES = (
    "auditor",
    "core",
    "evidence",
    "integrity",
    "maintenance",
    "redact",
    "server",
    "setup",
)
#: The module that defines a command. Start-up time is measured (`audit record` in shell loops):
#: typer builds every registered command before it parses, so `audit COMMAND` registers only
#: COMMAND's module. A name missing here, or not found where this says, registers every module.
_MODULE_OF = {
    "record": "core",
    "import": "core",
    "query": "core",
    "actions": "core",
    "path": "core",
    "verify": "integrity",
    "seal": "integrity",
    "stats": "maintenance",
    "export": "maintenance",
    "rotate": "maintenance",
    "redact": "redact",
    "tail": "maintenance",
    "schema": "maintenance",
    "keys": "integrity",
    "prove": "evidence",
    "verify-bundle": "evidence",
    "serve": "server",
    "service-account": "server",
    "history": "auditor",
    "state": "auditor",
    "report": "auditor",
    "init": "setup",
    "config": "setup",
}
_GLOBAL_WITH_VALUE = ("--log-dir", "-d", "--tz")
#: Global flags without a value: only before the command name (`seal -q`, `rotate -q` differ).
_GLOBAL_FLAGS = ("--quiet", "-q", "--no-pager")
#: The parameter names of the global options, accepted before or after the command name.
_GLOBAL_NAMES = ("log_dir", "tz")


def _ensure_registered() -> None:
    if _AuditTyper._state == "pending":
        _register(None)


def _register(argv: list[str] | None) -> None:
    """Add commands to `app`: only the invoked command's module when `argv` names a known
    command, otherwise all of them. Each module imports its heavy dependencies lazily."""
    import importlib

    _AuditTyper._state = "loading"
    wanted = _MODULE_OF.get(_command_name(argv) or "") if argv is not None else None
    for name in (wanted,) if wanted else _COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__)
    _AuditTyper._state = "done"
    if wanted and not _registered(_command_name(argv)):
        _register(None)
    elif wanted:
        # Typer builds every registered command (signatures, type hints, options) before it
        # parses: of the module's commands only the invoked one is kept.
        invoked = _command_name(argv)
        app._commands = [info for info in app._commands if _name_of(info) == invoked]
        app._groups = [info for info in app._groups if info.name == invoked]


def _command_name(argv: list[str] | None) -> str | None:
    """The command word of `argv` (after the global options), or None when unsure."""
    args = iter(argv or ())
    for arg in args:
        if arg in _GLOBAL_WITH_VALUE:
            next(args, None)
        elif _is_global(arg):
            continue
        elif arg.startswith("-"):
            return None  # --help, --version, or a mistake: typer shows every command
        else:
            return arg
    return None


def _is_global(arg: str) -> bool:
    """Whether `arg` is a whole global option: a flag, `--log-dir=DIR`, `--tz=ZONE` or `-dDIR`."""
    attached = arg.startswith(("--log-dir=", "--tz=")) or (arg.startswith("-d") and arg != "-d")
    return arg in _GLOBAL_FLAGS or attached


def _registered(name: str | None) -> bool:
    """Whether `name` is a registered command or group, and typer will treat `app` as a group
    (it runs a lone command without its name)."""
    commands = app.registered_commands
    names = {_name_of(info) for info in commands if info.callback}
    names |= {info.name for info in app.registered_groups}
    return name in names and len(commands) + len(app.registered_groups) > 1


#: Commands that end by leaving the interpreter at once (see `main`): each writes what it
#: stores with os.write and fsync, and its output through sys.stdout/sys.stderr only.
_SHORT_COMMANDS = ("record", "query", "actions", "path")


def _name_of(command: Any) -> str | None:
    """The name a registered command is invoked by (typer's rule)."""
    if command.name or not command.callback:
        return command.name
    return str(command.callback.__name__.lower().replace("_", "-"))


def main() -> None:
    """Entry point of the `audit` console script."""
    argv = sys.argv[1:]
    _register(argv)
    try:
        app(prog_name="audit")
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    if _command_name(argv) not in _SHORT_COMMANDS or not isinstance(code, int | None):
        sys.exit(code)
    # The interpreter's teardown (freeing every module's objects, one at a time) is a tenth of
    # a short command's time, and a short command leaves nothing to it: what it stored is
    # written and fsynced, its files closed. Only its output may still be buffered: flushed
    # here, and a failure to flush takes the ordinary way out, which reports it.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code or 0)
