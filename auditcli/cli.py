"""The `audit` command: parses options, calls the core, renders. Exit codes are documented in
the README; every core error is one `Error: …` line on stderr and its class's exit code."""

# No `from __future__ import annotations`: typer would eval every annotation string at start-up.

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .errors import AuditError, inert


class _AuditGroup(TyperGroup):
    """Maps every AuditError a command raises to `Error: …` on stderr and its exit code."""

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
            # Click's own exceptions (usage errors, exits) are click's to print. Anything else
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


class _AuditTyper(typer.Typer):
    """A Typer app whose command modules are imported when its commands are first asked for.

    Importing `auditcli.cli` (tests, `CliRunner`) still sees every command; `main()` first
    registers only the invoked command's module (see `_register`)."""

    _state = "pending"  # then "loading" while modules import, then "done"

    @property
    def registered_commands(self) -> list[Any]:  # type: ignore[override]
        _ensure_registered()
        return self._commands

    @registered_commands.setter
    def registered_commands(self, value: list[Any]) -> None:
        self._commands = value

    @property
    def registered_groups(self) -> list[Any]:  # type: ignore[override]
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
    add_completion=False,
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
            envvar="AUDIT_LOG_DIR",
            help="The log directory (default: $AUDIT_LOG_DIR, else ~/.local/share/auditcli/logs).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Record and query audit logs. Run `audit COMMAND -h` for a command's options."""
    ctx.obj = {"log_dir": log_dir}


_COMMAND_MODULES = ("auditor", "core", "evidence", "integrity", "maintenance", "server")
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
}
_GLOBAL_WITH_VALUE = ("--log-dir", "-d")


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


def _command_name(argv: list[str] | None) -> str | None:
    """The command word of `argv` (after the global options), or None when unsure."""
    args = iter(argv or ())
    for arg in args:
        if arg in _GLOBAL_WITH_VALUE:
            next(args, None)
        elif arg.startswith("--log-dir=") or (arg.startswith("-d") and arg != "-d"):
            continue
        elif arg.startswith("-"):
            return None  # --help, --version, or a mistake: typer shows every command
        else:
            return arg
    return None


def _registered(name: str | None) -> bool:
    """Whether `name` is a registered command or group, and typer will treat `app` as a group
    (it runs a lone command without its name)."""
    commands = app.registered_commands
    names = {
        info.name or info.callback.__name__.lower().replace("_", "-")
        for info in commands
        if info.callback
    }
    names |= {info.name for info in app.registered_groups}
    return name in names and len(commands) + len(app.registered_groups) > 1


def main() -> None:
    """Entry point of the `audit` console script."""
    _register(sys.argv[1:])
    app(prog_name="audit")
