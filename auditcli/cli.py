"""The `audit` command: parses options, calls the core, renders. Exit codes are documented in
the README; every core error is one `Error: …` line on stderr and its class's exit code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .errors import AuditError


class _AuditGroup(TyperGroup):
    """Maps every AuditError a command raises to `Error: …` on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except AuditError as exc:
            problems = getattr(exc, "problems", None) or []
            sys.stderr.write(f"Error: {exc}\n")
            for problem in problems:
                if problem != str(exc):
                    sys.stderr.write(f"  {problem}\n")
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            # `audit query | head`: the reader left; that is not an error of ours.
            sys.stderr.close()
            raise typer.Exit(0) from None


app = typer.Typer(
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


def _register() -> None:
    # Each module adds its commands to `app`; they import their heavy dependencies lazily.
    from .commands import auditor, core, integrity, maintenance, server  # noqa: F401


_register()


def main() -> None:
    """Entry point of the `audit` console script."""
    app(prog_name="audit")
