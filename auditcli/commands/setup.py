"""`audit init` and `audit config`: make a log directory, show the settings in effect."""

# No `from __future__ import annotations`: typer would eval every annotation string at start-up.

from pathlib import Path
from typing import Annotated, Any

import typer

from auditcli.cli import app
from auditcli.cli_options import (
    TableOrJson,
    TableOrJsonOpt,
    console,
    say,
    settings,
    stdout_is_terminal,
    write_json,
)


# ----------------------------------------------------------------------------- init
@app.command()
def init(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR", help="The log directory to create (default: the one in use)."
        ),
    ] = None,
    redactable: Annotated[
        bool,
        typer.Option(
            "--redactable",
            help="Write chain version 2 lines from now on, so `audit redact` can prove per "
            "field what it removed (verify ~4-5x, import ~1.6x slower on those lines).",
        ),
    ] = False,
) -> None:
    """Create a log directory (mode 0700) with its marker file, _store.json; print its path.

    Every command that reads refuses a directory that is not a log directory, so a mistyped
    path fails instead of showing an empty log. Running it on an existing log directory
    changes nothing, unless --redactable adds that setting (lines already written keep their
    version; writers read the setting when they start).

    Example: audit init /var/lib/audit ;  audit init --redactable /var/lib/audit
    """
    from auditcli.store import default_log_dir, init_store, is_redactable

    chosen = settings(ctx)["log_dir"].value
    root = directory or (Path(chosen) if chosen else default_log_dir())
    was_redactable = not redactable or (root.is_dir() and is_redactable(root))
    created = init_store(root, redactable=redactable)
    if created:
        say(f"created {root}{' (redactable)' if redactable else ''}")
    elif not was_redactable:
        say(f"made redactable: {root} (new lines are chain version 2)")
    else:
        say(f"already a log directory: {root}")
    typer.echo(str(root))


# ----------------------------------------------------------------------------- config
@app.command("config")
def config_(
    ctx: typer.Context,
    fmt: TableOrJsonOpt = None,
) -> None:
    """Show each setting in effect and where it came from: a flag, an environment variable,
    a config file or the default.

    Precedence: flag > environment > user file ($AUDIT_CONFIG, else
    $XDG_CONFIG_HOME/auditcli/config.toml) > system file (/etc/auditcli/config.toml).

    Example: audit config ;  audit config --format json
    """
    from auditcli.config import KEYS, config_files

    found = settings(ctx)
    files = config_files()
    rows = [
        (key.name, _effective(key.name, found[key.name].value), found[key.name].source)
        for key in KEYS
    ]
    chosen = fmt or (TableOrJson.table if stdout_is_terminal() else TableOrJson.json)
    if chosen is TableOrJson.json:
        write_json(
            {
                "settings": {name: {"value": value, "source": src} for name, value, src in rows},
                "files": [{"scope": f.scope, "path": str(f.path), "found": f.found} for f in files],
            }
        )
        return
    from rich.text import Text

    from auditcli.render import rows_table

    # The table names a file by its scope (the paths follow it), leaving the width to values.
    scope_of = {str(f.path): f"{f.scope} file" for f in files}
    out = console()
    out.print(
        rows_table(
            # Value last: a long path folds there instead of squeezing the other columns.
            ("Setting", "Source", "Value"),
            [(name, scope_of.get(source, source), value) for name, value, source in rows],
            width=out.width,
        )
    )
    for f in files:
        out.print(Text(f"{f.scope} file: {f.path}{'' if f.found else ' (none)'}"), overflow="fold")


def _effective(name: str, value: Any) -> Any:
    """A setting's value as text/JSON, the built-in default filled in where there is one (None:
    unset, e.g. no signing key; `format` unset means each command's own default)."""
    from auditcli.store import default_log_dir, default_writer_id

    if value is None:
        defaults = {"log_dir": default_log_dir, "writer_id": default_writer_id}
        if name in defaults:
            return str(defaults[name]())
        return "UTC" if name == "time_zone" else None
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)
