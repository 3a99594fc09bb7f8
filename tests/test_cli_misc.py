"""`audit actions`, `actions add`, `path`, `--version`, and help: `-h` works on every command,
and every command says what it does, with an example, and what each of its options means."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer

from auditcli import __version__
from auditcli.catalog import BUILTIN_ACTIONS, CATALOG_FILE, TARGETS
from auditcli.cli import app

SEED_ACTIONS = {
    "login": ("User Login", "Authentication"),
    "user_added": ("User Added", "User Management"),
    "user_removed": ("User Removed", "User Management"),
    "role_created": ("Role Created", "Role Management"),
    "role_updated": ("Role Updated", "Role Management"),
    "role_deleted": ("Role Deleted", "Role Management"),
    "team_created": ("Team Created", "Team Management"),
    "team_deleted": ("Team Deleted", "Team Management"),
    "user_added_to_team": ("User Added to Team", "Team Management"),
    "user_removed_from_team": ("User Removed from Team", "Team Management"),
    "user_role_changed_in_team": ("User Role Changed in Team", "Team Management"),
    "org_admin_added": ("System Admin Added", "Permission Management"),
    "org_admin_removed": ("System Admin Removed", "Permission Management"),
    "service_account_created": ("Service Account Created", "Service Account Management"),
    "service_account_deleted": ("Service Account Deleted", "Service Account Management"),
    # Not one of the API's: what `audit redact` records.
    "entries_redacted": ("Entries Redacted", "Data Protection"),
}


def commands() -> Iterator[tuple[list[str], Any]]:
    """Every command and group of `audit`, with its path of names."""

    def walk(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def undocumented(command: Any) -> list[str]:
    """The visible options and arguments of `command` that have no help text."""
    return [
        param.opts[0]
        for param in command.params
        if not getattr(param, "hidden", False) and not (getattr(param, "help", None) or "").strip()
    ]


COMMANDS = list(commands())
IDS = [" ".join(path) or "audit" for path, _ in COMMANDS]


# ------------------------------------------------------------------------------- actions
class TestActions:
    @pytest.fixture(autouse=True)
    def _store(self, store_dir: Path) -> None:
        """`audit actions` reads, and `actions add` writes, an existing log directory."""

    def test_catalog_is_the_seeds(self) -> None:
        assert {s.action: (s.display_name, s.group) for s in BUILTIN_ACTIONS} == SEED_ACTIONS
        assert TARGETS == ("USER", "ROLE", "TEAM", "SERVICE_ACCOUNT", "ORGANIZATION")

    def test_json_lists_every_action(self, cli) -> None:
        result = cli("actions", "--format", "json")
        assert result.exit_code == 0, result.stderr
        listed = json.loads(result.stdout)
        assert [item["action"] for item in listed] == list(SEED_ACTIONS)
        for item in listed:
            assert item["actionDisplayName"] == SEED_ACTIONS[item["action"]][0]
            assert item["group"] == SEED_ACTIONS[item["action"]][1]
            assert item["target"] in TARGETS

    def test_table_lists_every_action_in_80_columns(self, cli) -> None:
        result = cli("actions", "-f", "table")
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        for action, (display, _) in SEED_ACTIONS.items():
            # whole, on one line: people copy action names into commands
            assert any(action in line and display in line for line in lines), action
        for group in {group for _, group in SEED_ACTIONS.values()}:
            assert any(line.strip() == group for line in lines), group
        assert max(len(line) for line in lines) <= 80

    def test_add_then_list_and_record(self, cli, log_dir: Path) -> None:
        added = cli(
            "actions", "add", "deploy_approved", "--display-name", "Deploy Approved",
            "--target", "ORGANIZATION", "--template", "{actor} approved {target}",
            "--group", "Deployments",
        )  # fmt: skip
        assert added.exit_code == 0, added.stderr
        assert added.stdout == "deploy_approved\n"
        catalog = json.loads((log_dir / CATALOG_FILE).read_text())
        assert catalog["actions"][0]["action"] == "deploy_approved"
        listed = json.loads(cli("actions", "-f", "json").stdout)
        assert listed[-1]["action"] == "deploy_approved"
        assert listed[-1]["actionDisplayName"] == "Deploy Approved"
        assert listed[-1]["target"] == "ORGANIZATION"
        assert listed[-1]["group"] == "Deployments"
        assert "deploy_approved" in cli("actions", "-f", "table").stdout
        query = cli("query", "--action", "deploy_approved")
        assert query.exit_code == 0, query.stderr  # known to the query filters too

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["DeployApproved", "--target", "USER", "--template", "{actor}"], "snake_case"),
            (["deploy-approved", "--target", "USER", "--template", "{actor}"], "snake_case"),
            (["login", "--target", "USER", "--template", "{actor}"], "already defined"),
            (["x_y", "--target", "GROUP", "--template", "{actor}"], "GROUP"),
            (["x_y", "--target", "USER", "--template", "{who} did it"], "template"),
            (["x_y", "--target", "USER", "--template", "{actor"], "template"),
        ],
    )
    def test_add_refuses_bad_actions(self, cli, log_dir, args, message) -> None:
        result = cli("actions", "add", *args[:1], "--display-name", "X", *args[1:])
        assert result.exit_code == 2, result.stderr
        assert message in result.stderr
        assert not (log_dir / CATALOG_FILE).exists()

    def test_add_twice_is_refused(self, cli) -> None:
        args = [
            "actions",
            "add",
            "x_y",
            "--display-name",
            "X",
            "--target",
            "USER",
            "--template",
            "{actor}",
        ]
        assert cli(*args).exit_code == 0
        again = cli(*args)
        assert again.exit_code == 2 and "already defined" in again.stderr

    def test_a_broken_catalog_file_is_a_clear_error(self, cli, log_dir) -> None:
        (log_dir / CATALOG_FILE).write_text('{"actions": [{"action": "Bad"}]}')
        result = cli("actions")
        assert result.exit_code == 2
        assert CATALOG_FILE in result.stderr and "actions[0]" in result.stderr


# ------------------------------------------------------------------------------- path, version
class TestPathAndVersion:
    def test_path_prints_the_env_dir(self, cli, log_dir) -> None:
        result = cli("path")
        assert result.exit_code == 0
        assert result.stdout == f"{log_dir}\n"

    def test_log_dir_option_wins(self, cli, tmp_path) -> None:
        assert cli("--log-dir", str(tmp_path / "x"), "path").stdout == f"{tmp_path / 'x'}\n"
        assert cli("-d", str(tmp_path / "y"), "path").stdout == f"{tmp_path / 'y'}\n"

    def test_default_is_the_per_user_data_dir(self, cli, monkeypatch, tmp_path) -> None:
        monkeypatch.delenv("AUDIT_LOG_DIR")
        assert cli("path").stdout == f"{tmp_path / 'xdg' / 'auditcli' / 'logs'}\n"
        monkeypatch.delenv("XDG_DATA_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        expected = tmp_path / "home" / ".local" / "share" / "auditcli" / "logs"
        assert cli("path").stdout == f"{expected}\n"

    def test_path_creates_nothing(self, cli, log_dir) -> None:
        cli("path")
        assert not log_dir.exists()

    def test_version(self, cli) -> None:
        result = cli("--version")
        assert result.exit_code == 0
        assert result.stdout == f"audit {__version__}\n"

    def test_python_dash_m_runs_the_same_cli(self, log_dir) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "auditcli", "--version"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0 and done.stdout == f"audit {__version__}\n"
        path = subprocess.run(
            [sys.executable, "-m", "auditcli", "path"], capture_output=True, text=True, timeout=60
        )
        assert path.stdout == f"{log_dir}\n"

    def test_no_arguments_shows_help(self, cli) -> None:
        for argv in ([], ["keys"]):
            result = cli(*argv)
            assert result.stderr.startswith("Usage: audit "), result.stderr
            assert "\nCommands:\n" in result.stderr and "Error" not in result.stderr

    def test_unknown_command_exits_2(self, cli) -> None:
        result = cli("recrod")
        assert result.exit_code == 2


# ------------------------------------------------------------------------------- help
class TestHelp:
    @pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
    def test_dash_h_works(self, cli, path, command) -> None:
        for flag in ("-h", "--help"):
            result = cli(*path, flag)
            assert result.exit_code == 0, result.stderr
            assert "Usage:" in result.stdout
            assert max(len(line) for line in result.stdout.splitlines()) <= 80

    @pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
    def test_every_command_has_help_and_an_example(self, path, command) -> None:
        text = (command.help or "").strip()
        assert text, f"`audit {' '.join(path)}` has no help text"
        runnable = not getattr(command, "commands", None) or getattr(
            command, "invoke_without_command", False
        )
        if path and runnable:
            assert "Example" in text, f"`audit {' '.join(path)}` has no example in its help"

    @pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
    def test_every_option_and_argument_says_what_it_is(self, path, command) -> None:
        missing = undocumented(command)
        assert not missing, f"`audit {' '.join(path)}`: no help for {missing}"

    def test_the_help_check_finds_what_is_missing(self) -> None:
        """The check above can fail: a command and an option without help are reported, and
        a hidden alias (the old spellings) is not."""
        demo = typer.Typer()

        @demo.command()
        def first(
            size: Annotated[int, typer.Option("--size")] = 1,
            old: Annotated[int, typer.Option("--old", hidden=True)] = 1,
            name: Annotated[str, typer.Option("--name", help="A name.")] = "",
        ) -> None:
            pass

        @demo.command()
        def second() -> None:
            """Documented."""

        group = typer.main.get_command(demo)
        assert undocumented(group.commands["first"]) == ["--size"]
        assert not (group.commands["first"].help or "").strip()
        assert (group.commands["second"].help or "").strip() == "Documented."

    def test_every_documented_command_exists(self) -> None:
        names = {" ".join(path) for path, _ in COMMANDS}
        assert {"record", "import", "query", "actions", "actions add", "path"} <= names
