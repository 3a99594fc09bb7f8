"""The action catalog: the API's 15 admin actions, `entries_redacted` (audit redact), its 5
targets, and a user's own actions."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from .errors import UsageError
from .safeio import CATALOG_MAX, read_control

TARGETS: tuple[str, ...] = ("USER", "ROLE", "TEAM", "SERVICE_ACCOUNT", "ORGANIZATION")
CATALOG_FILE = "_catalog.json"
#: Taken by `audit actions add` while it rewrites the catalog file.
CATALOG_LOCK = "_catalog.lock"
LOCK_SECONDS = 60.0
ACTION_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")  # matched whole (fullmatch)
TEMPLATE_FIELDS = ("actor", "target", "team", "org")


@dataclass(frozen=True)
class ActionSpec:
    """One action: machine name, display name, default target, group, description template."""

    action: str
    display_name: str
    target: str
    group: str
    template: str
    builtin: bool = True

    def as_dict(self) -> dict[str, str | bool]:
        """The JSON form `audit actions --format json` prints."""
        return {
            "action": self.action,
            "actionDisplayName": self.display_name,
            "target": self.target,
            "group": self.group,
            "template": self.template,
            "builtin": self.builtin,
        }


BUILTIN_ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("login", "User Login", "USER", "Authentication", "{actor} logged in"),
    ActionSpec(
        "user_added", "User Added", "USER", "User Management", "{actor} added user {target}"
    ),
    ActionSpec(
        "user_removed", "User Removed", "USER", "User Management", "{actor} removed user {target}"
    ),
    ActionSpec(
        "role_created", "Role Created", "ROLE", "Role Management", "{actor} created role {target}"
    ),
    ActionSpec(
        "role_updated", "Role Updated", "ROLE", "Role Management", "{actor} updated role {target}"
    ),
    ActionSpec(
        "role_deleted", "Role Deleted", "ROLE", "Role Management", "{actor} deleted role {target}"
    ),
    ActionSpec(
        "team_created", "Team Created", "TEAM", "Team Management", "{actor} created team {target}"
    ),
    ActionSpec(
        "team_deleted", "Team Deleted", "TEAM", "Team Management", "{actor} deleted team {target}"
    ),
    ActionSpec(
        "user_added_to_team",
        "User Added to Team",
        "TEAM",
        "Team Management",
        "{actor} added a user to team {target}",
    ),
    ActionSpec(
        "user_removed_from_team",
        "User Removed from Team",
        "TEAM",
        "Team Management",
        "{actor} removed a user from team {target}",
    ),
    ActionSpec(
        "user_role_changed_in_team",
        "User Role Changed in Team",
        "TEAM",
        "Team Management",
        "{actor} changed a user's role in team {target}",
    ),
    ActionSpec(
        "org_admin_added",
        "System Admin Added",
        "USER",
        "Permission Management",
        "{actor} made {target} a system admin",
    ),
    ActionSpec(
        "org_admin_removed",
        "System Admin Removed",
        "USER",
        "Permission Management",
        "{actor} revoked system admin from {target}",
    ),
    ActionSpec(
        "service_account_created",
        "Service Account Created",
        "SERVICE_ACCOUNT",
        "Service Account Management",
        "{actor} created service account {target}",
    ),
    ActionSpec(
        "service_account_deleted",
        "Service Account Deleted",
        "SERVICE_ACCOUNT",
        "Service Account Management",
        "{actor} deleted service account {target}",
    ),
    ActionSpec(
        "entries_redacted",
        "Entries Redacted",
        "ORGANIZATION",
        "Data Protection",
        "{actor} redacted personal data from audit entries",
    ),
)


def check_target(target: str) -> str:
    """Return `target` if it is one of the five targets, else raise a UsageError naming them."""
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    return target


def check_template(template: str) -> str:
    """Return `template` if every `{field}` in it is a known template field."""
    try:
        template.format(**{name: "" for name in TEMPLATE_FIELDS})
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"template {template!r} is not valid: use only {{actor}}, {{target}}, {{team}}, {{org}}"
        ) from exc
    return template


class Catalog:
    """The builtin actions plus the custom ones from a log directory's `_catalog.json`."""

    def __init__(self, custom: tuple[ActionSpec, ...] = ()) -> None:
        self._specs: dict[str, ActionSpec] = {spec.action: spec for spec in BUILTIN_ACTIONS}
        for spec in custom:
            if spec.action in self._specs:
                raise UsageError(f"{CATALOG_FILE}: action {spec.action!r} is already defined")
            self._specs[spec.action] = spec

    @classmethod
    def load(cls, root: Path) -> Catalog:
        """Read the catalog of the log directory `root` (builtins only when it has no file)."""
        raw = read_control(root, CATALOG_FILE, CATALOG_MAX)
        if raw is None:
            return cls()
        return cls(parse_custom_actions(raw, str(root / CATALOG_FILE)))

    def __contains__(self, action: object) -> bool:
        return action in self._specs

    def actions(self) -> frozenset[str]:
        """The names of every action in the catalog."""
        return frozenset(self._specs)

    def __iter__(self) -> Iterator[ActionSpec]:
        return iter(self._specs.values())

    def custom(self) -> list[ActionSpec]:
        """The actions a user added, in the order they were defined."""
        return [spec for spec in self._specs.values() if not spec.builtin]

    def get(self, action: str) -> ActionSpec:
        """The spec of `action`; an unknown one raises a UsageError naming the closest ones."""
        try:
            return self._specs[action]
        except KeyError:
            raise UsageError(self.unknown_message(action)) from None

    def unknown_message(self, action: str) -> str:
        """`unknown action 'x'`, with the closest known actions as suggestions."""
        close = difflib.get_close_matches(action, list(self._specs), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `audit actions`"
        return f"unknown action {action!r}{hint}"


def parse_custom_actions(raw: bytes, source: str) -> tuple[ActionSpec, ...]:
    """Parse the `{"actions": [...]}` document of a catalog file, naming the entry at fault."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{source}: not valid JSON: {exc}") from None
    items = doc.get("actions") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise UsageError(f'{source}: expected an object {{"actions": [...]}}')
    specs = []
    for n, item in enumerate(items):
        where = f"{source}: actions[{n}]"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: expected an object")
        unknown = set(item) - {"action", "actionDisplayName", "target", "template", "group"}
        if unknown:
            raise UsageError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        name, display = item.get("action"), item.get("actionDisplayName")
        target, template = item.get("target"), item.get("template")
        if not isinstance(name, str) or not ACTION_NAME.fullmatch(name):
            raise UsageError(f"{where}.action: must be snake_case, e.g. deploy_approved")
        if not isinstance(display, str) or not display.strip():
            raise UsageError(f"{where}.actionDisplayName: must be a non-empty string")
        if not isinstance(target, str):
            raise UsageError(f"{where}.target: must be one of {', '.join(TARGETS)}")
        if not isinstance(template, str):
            raise UsageError(
                f"{where}.template: must be a string such as '{{actor}} did {{target}}'"
            )
        try:
            check_target(target)
            check_template(template)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        group = item.get("group", "Custom")
        specs.append(ActionSpec(name, display, target, str(group), template, builtin=False))
    return tuple(specs)


def render_custom_actions(specs: list[ActionSpec]) -> bytes:
    """The catalog file's bytes for `specs` (what `audit actions add` writes)."""
    items = [
        {
            "action": s.action,
            "actionDisplayName": s.display_name,
            "target": s.target,
            "template": s.template,
            "group": s.group,
        }
        for s in specs
    ]
    return orjson.dumps({"actions": items}, option=orjson.OPT_INDENT_2) + b"\n"


def add_custom_action(
    root: Path, name: str, display_name: str, target: str, template: str, group: str = "Custom"
) -> ActionSpec:
    """Add an action to `root`'s catalog file, written atomically (temp file, fsync, rename)."""
    import fcntl
    import os
    import tempfile

    from .safeio import lock_within

    # Checked here first so errors name what the user typed, not a position in the file.
    if not ACTION_NAME.fullmatch(name):
        raise UsageError(f"action {name!r}: the name must be snake_case, e.g. deploy_approved")
    if not display_name.strip():
        raise UsageError(f"action {name!r}: the display name must not be empty")
    check_target(target)
    check_template(template)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    # One `actions add` at a time: without the lock two concurrent runs each rewrite the file
    # from what they read, and one action is lost.
    lock = os.open(
        root / CATALOG_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        if not lock_within(lock, fcntl.LOCK_EX, LOCK_SECONDS):
            raise UsageError(f"{root / CATALOG_LOCK}: held by another process; try again")
        for stale in root.glob(".catalog-*.tmp"):  # left by a run that was killed
            stale.unlink(missing_ok=True)
        catalog = Catalog.load(root)
        if name in catalog:
            kind = "a builtin action" if catalog.get(name).builtin else "already in the catalog"
            raise UsageError(f"action {name!r} is already defined ({kind})")
        spec = ActionSpec(name, display_name, target, group, template, builtin=False)
        document = render_custom_actions([*catalog.custom(), spec])
        parse_custom_actions(document, CATALOG_FILE)  # validates the new action the same way
        Catalog((*catalog.custom(), spec))  # refuses a name that is already defined
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".catalog-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(document)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, root / CATALOG_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        os.close(lock)
    return spec
