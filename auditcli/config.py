"""Settings from a TOML config file, the environment and the command line, and where each came from.

Precedence, highest first: a command-line flag, an environment variable, the user's file
(`AUDIT_CONFIG`, else `$XDG_CONFIG_HOME/auditcli/config.toml`), the system file
(`/etc/auditcli/config.toml`; `AUDIT_SYSTEM_CONFIG` names another, which tests and packagers use),
then the built-in default. A cron job, a service and a person then share one store by default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

SYSTEM_CONFIG = Path("/etc/auditcli/config.toml")
#: The values of `format`: what the table-drawing commands offer besides `table` itself.
FORMATS = ("table", "json", "jsonl", "csv")


@dataclass(frozen=True)
class Key:
    """One setting: its environment variable and the kind of value the file gives (see
    docs/configuration.md for what each means)."""

    name: str
    env: str | None
    kind: str  # "path", "paths" (one or a list), "text", "format", "zone"


KEYS = (
    Key("log_dir", "AUDIT_LOG_DIR", "path"),
    Key("writer_id", "AUDIT_WRITER_ID", "text"),
    Key("signing_key", "AUDIT_SIGNING_KEY", "path"),
    Key("public_key", "AUDIT_PUBLIC_KEY", "paths"),
    Key("format", "AUDIT_FORMAT", "format"),
    Key("time_zone", "TZ", "zone"),
)
_BY_NAME = {key.name: key for key in KEYS}


@dataclass(frozen=True)
class Setting:
    """An effective value and where it came from (a flag, a variable, a file, `default`)."""

    name: str
    value: Any
    source: str


@dataclass(frozen=True)
class ConfigFile:
    """A config file that was consulted: its scope, path, and whether it exists."""

    scope: str  # "system" or "user"
    path: Path
    found: bool


def config_files(env: Mapping[str, str] | None = None) -> list[ConfigFile]:
    """The files consulted, lowest precedence first: the system file, then the user's."""
    env = os.environ if env is None else env
    system = Path(env.get("AUDIT_SYSTEM_CONFIG") or SYSTEM_CONFIG)
    if env.get("AUDIT_CONFIG"):
        user = Path(env["AUDIT_CONFIG"])
        if not user.is_file():
            # Named on purpose: a missing file is a mistake, not "no settings".
            raise UsageError(f"AUDIT_CONFIG: {user}: no such file")
    else:
        home = env.get("HOME") or os.path.expanduser("~")
        base = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        user = Path(base) / "auditcli" / "config.toml"
    return [
        ConfigFile("system", system, system.is_file()),
        ConfigFile("user", user, user.is_file()),
    ]


def read_file(path: Path) -> dict[str, Any]:
    """The settings of one TOML file, checked: unknown keys and wrong types are UsageErrors
    naming the file. Relative paths in it are relative to the file's directory."""
    import tomllib

    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    settings: dict[str, Any] = {}
    for name, raw in data.items():
        key = _BY_NAME.get(name)
        if key is None:
            import difflib

            close = difflib.get_close_matches(name, _BY_NAME, n=1)
            hint = (
                f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(_BY_NAME)}"
            )
            raise UsageError(f"{path}: unknown key {name!r}{hint}")
        settings[name] = _checked(path, key, raw)
    return settings


def _checked(path: Path, key: Key, raw: Any) -> Any:
    where = f"{path}: {key.name}"
    if key.kind == "paths" and isinstance(raw, list):
        if not raw or not all(isinstance(item, str) and item for item in raw):
            raise UsageError(f"{where}: expected a path or a list of paths")
        return [_relative_to(path, item) for item in raw]
    if not isinstance(raw, str) or not raw.strip():
        raise UsageError(f"{where}: expected a non-empty string, got {type(raw).__name__}")
    if key.kind in ("path", "paths"):
        resolved = _relative_to(path, raw)
        return [resolved] if key.kind == "paths" else resolved
    if key.kind == "format":
        return _format(raw, where)
    if key.kind == "zone":
        from .timeparse import display_zone

        display_zone(raw, option=where)  # refuses an unknown zone now, not at first use
    return raw.strip()


def _relative_to(config: Path, raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else config.parent / path


def resolve(
    flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> dict[str, Setting]:
    """Every key's effective Setting. `flags` holds command-line values by key name (None: not
    given), named in the source as the flag, e.g. `{"log_dir": ("--log-dir", Path(...))}`."""
    env = os.environ if env is None else env
    flags = flags or {}
    layers: list[tuple[str, dict[str, Any]]] = []
    for found in config_files(env):
        if found.found:
            layers.append((str(found.path), read_file(found.path)))
    result = {}
    for key in KEYS:
        flag = flags.get(key.name)
        if flag is not None and flag[1] is not None:
            result[key.name] = Setting(key.name, flag[1], flag[0])
        elif key.env and env.get(key.env):
            result[key.name] = Setting(key.name, _from_env(key, env[key.env]), key.env)
        else:
            result[key.name] = _from_files(key, layers)
    return result


def _format(raw: str, where: str) -> str:
    value = raw.strip().lower()
    if value not in FORMATS:
        raise UsageError(f"{where}: {raw!r} is not one of {', '.join(FORMATS)}")
    return value


def _from_env(key: Key, raw: str) -> Any:
    if key.kind == "format":
        return _format(raw, key.env or key.name)
    if key.kind == "path":
        return Path(raw)
    if key.kind == "paths":
        return [Path(item) for item in raw.split()]
    return raw


def _from_files(key: Key, layers: list[tuple[str, dict[str, Any]]]) -> Setting:
    for source, settings in reversed(layers):  # the user's file first
        if key.name in settings:
            return Setting(key.name, settings[key.name], source)
    return Setting(key.name, None, "default")
