"""Configure once: the TOML config files (system, user, AUDIT_CONFIG), their precedence under the
environment and the flags, `audit config`, global options after the command name, and the
display time zone (`--tz`, `TZ`, `time_zone`) that tables use while stored and machine output
stays UTC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditcli.config import KEYS

ENTRY = ["login", "--actor-id", "u-1", "--org-id", "org-1"]
AT = "2026-11-25T08:06:40.123Z"


@pytest.fixture
def system_file(tmp_path: Path) -> Path:
    """The system config file of this test (conftest points AUDIT_SYSTEM_CONFIG at it)."""
    path = tmp_path / "etc" / "config.toml"
    path.parent.mkdir()
    return path


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    """The per-user config file ($XDG_CONFIG_HOME/auditcli/config.toml)."""
    path = tmp_path / "config" / "auditcli" / "config.toml"
    path.parent.mkdir(parents=True)
    return path


def shown(cli, *args: str) -> dict:
    """`audit config --format json`'s settings."""
    result = cli(*args, "config", "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


class TestPrecedence:
    def test_flag_over_environment_over_user_over_system(
        self, cli, monkeypatch, tmp_path, system_file, user_file
    ) -> None:
        monkeypatch.delenv("AUDIT_LOG_DIR")
        monkeypatch.delenv("AUDIT_WRITER_ID")
        default = str(tmp_path / "xdg" / "auditcli" / "logs")  # XDG_DATA_HOME, by conftest
        assert shown(cli)["settings"]["log_dir"] == {"value": default, "source": "default"}
        assert shown(cli)["settings"]["time_zone"] == {"value": "UTC", "source": "default"}
        system_file.write_text('log_dir = "/srv/system"\nwriter_id = "sys-host"\n')
        settings = shown(cli)["settings"]
        assert settings["log_dir"] == {"value": "/srv/system", "source": str(system_file)}
        assert settings["writer_id"] == {"value": "sys-host", "source": str(system_file)}
        user_file.write_text('log_dir = "/srv/user"\n')
        settings = shown(cli)["settings"]
        assert settings["log_dir"] == {"value": "/srv/user", "source": str(user_file)}
        assert settings["writer_id"]["source"] == str(system_file)  # keys layer one by one
        monkeypatch.setenv("AUDIT_LOG_DIR", "/srv/env")
        assert shown(cli)["settings"]["log_dir"] == {"value": "/srv/env", "source": "AUDIT_LOG_DIR"}
        flagged = shown(cli, "--log-dir", "/srv/flag")["settings"]["log_dir"]
        assert flagged == {"value": "/srv/flag", "source": "--log-dir"}

    def test_audit_config_names_the_user_file(self, cli, monkeypatch, tmp_path, user_file) -> None:
        user_file.write_text('log_dir = "/srv/user"\n')
        named = tmp_path / "service.toml"
        named.write_text('log_dir = "/srv/service"\n')
        monkeypatch.setenv("AUDIT_CONFIG", str(named))
        monkeypatch.delenv("AUDIT_LOG_DIR")
        data = shown(cli)
        assert data["settings"]["log_dir"] == {"value": "/srv/service", "source": str(named)}
        assert data["files"][1] == {"scope": "user", "path": str(named), "found": True}
        monkeypatch.setenv("AUDIT_CONFIG", str(tmp_path / "missing.toml"))
        result = cli("config")
        assert result.exit_code == 2 and "AUDIT_CONFIG" in result.stderr

    def test_the_log_directory_of_the_config_is_used(
        self, cli, monkeypatch, tmp_path, user_file
    ) -> None:
        monkeypatch.delenv("AUDIT_LOG_DIR")
        monkeypatch.delenv("AUDIT_WRITER_ID")
        user_file.write_text('log_dir = "../../shared-logs"\nwriter_id = "web-1"\n')
        assert cli("record", *ENTRY).exit_code == 0
        # relative to the file's directory: config/auditcli/../../shared-logs
        shared = tmp_path / "shared-logs"
        assert [p.name for p in shared.glob("date=*/*.jsonl")] == ["web-1.jsonl"]
        assert cli("path").stdout == f"{user_file.parent / '../../shared-logs'}\n"

    def test_signing_key_public_key_and_format_from_the_config(
        self, cli, tmp_path, user_file, store_dir
    ) -> None:
        key = tmp_path / "seal.key"
        assert cli("keys", "generate", "-o", key).exit_code == 0
        user_file.write_text(
            f'signing_key = "{key}"\npublic_key = ["{key}.pub"]\nformat = "json"\n'
        )
        assert cli("record", *ENTRY).exit_code == 0
        sealed = cli("seal")
        assert sealed.exit_code == 0 and "signed by" in sealed.stderr
        report = json.loads(cli("verify").stdout)  # format json from the config
        assert report["ok"] is True and report["signatures"] == "verified"
        assert json.loads(cli("query").stdout)["total"] == 1  # json, not jsonl
        assert cli("query", "-f", "jsonl").stdout.count("\n") == 1  # the flag wins
        # only commands that draw tables take it: record still prints the id, export JSONL
        assert len(cli("record", *ENTRY).stdout.strip()) == 36
        exported = cli("export").stdout.splitlines()
        assert len(exported) == 2 and all(json.loads(line)["action"] for line in exported)

    def test_audit_format_sets_the_table_commands_format(self, cli, monkeypatch, store_dir):
        monkeypatch.setenv("AUDIT_FORMAT", "json")
        assert json.loads(cli("query").stdout)["total"] == 0
        assert shown(cli)["settings"]["format"] == {"value": "json", "source": "AUDIT_FORMAT"}

    def test_environment_beats_the_config_for_option_defaults(
        self, cli, monkeypatch, tmp_path, user_file, store_dir
    ) -> None:
        user_file.write_text(f'signing_key = "{tmp_path / "missing.key"}"\n')
        assert cli("seal").exit_code != 0  # the config's key is used, and it is missing
        monkeypatch.setenv("AUDIT_SIGNING_KEY", "")
        key = tmp_path / "k"
        cli("keys", "generate", "-o", key)
        monkeypatch.setenv("AUDIT_SIGNING_KEY", str(key))
        assert "signed by" in cli("seal").stderr


class TestBadConfig:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ('log_dri = "/x"\n', "unknown key 'log_dri'; did you mean log_dir?"),
            ("log_dir = 3\n", "log_dir: expected a non-empty string, got int"),
            ('log_dir = "/x\n', "not valid TOML"),
            ('time_zone = "Mars/Base"\n', "unknown time zone 'Mars/Base'"),
            ("public_key = []\n", "public_key: expected a path or a list of paths"),
            ('format = "yaml"\n', "format: 'yaml' is not one of table, json, jsonl, csv"),
        ],
    )
    def test_one_line_naming_the_file(self, cli, user_file, text, message) -> None:
        user_file.write_text(text)
        result = cli("query")
        assert result.exit_code == 2
        assert result.stderr.startswith(f"Error: {user_file}") and message in result.stderr
        assert result.stderr.count("\n") == 1

    def test_a_bad_writer_id_in_the_config_is_refused(self, cli, monkeypatch, user_file) -> None:
        monkeypatch.delenv("AUDIT_WRITER_ID")
        user_file.write_text('writer_id = "../../etc"\n')
        result = cli("record", *ENTRY)
        assert result.exit_code == 2 and "writer id" in result.stderr


class TestAuditConfig:
    def test_every_key_with_its_source(self, cli, log_dir) -> None:
        data = shown(cli)
        assert list(data["settings"]) == [key.name for key in KEYS]
        assert data["settings"]["log_dir"] == {"value": str(log_dir), "source": "AUDIT_LOG_DIR"}
        assert data["settings"]["writer_id"]["source"] == "AUDIT_WRITER_ID"
        assert [f["scope"] for f in data["files"]] == ["system", "user"]

    def test_json_when_piped_table_when_asked(self, cli, log_dir) -> None:
        assert json.loads(cli("config").stdout)["settings"]["log_dir"]["value"] == str(log_dir)
        table = cli("config", "-f", "table").stdout
        assert "log_dir" in table and "AUDIT_LOG_DIR" in table and "(none)" in table
        assert max(len(line) for line in table.splitlines()) <= 80


class TestGlobalOptions:
    @pytest.mark.parametrize(
        "argv",
        [
            ["--log-dir", "{d}", "query", "--count"],
            ["query", "--log-dir", "{d}", "--count"],
            ["query", "--count", "-d", "{d}"],
            ["query", "--count", "--log-dir={d}"],
        ],
    )
    def test_log_dir_before_or_after_the_command(self, cli, tmp_path, argv) -> None:
        other = tmp_path / "other"
        cli("-d", other, "record", *ENTRY)
        result = cli(*(arg.format(d=other) for arg in argv))
        assert result.exit_code == 0, result.stderr
        assert result.stdout == "1\n"

    def test_after_a_subcommand_of_a_group(self, cli, tmp_path) -> None:
        other = tmp_path / "other"
        cli("init", other)
        result = cli("service-account", "list", "-d", other, "-f", "json")
        assert result.exit_code == 0 and result.stdout == "[]\n"


class TestDisplayZone:
    @pytest.fixture
    def recorded(self, cli) -> None:
        assert cli("record", *ENTRY, "--created-at", AT).exit_code == 0

    @pytest.mark.usefixtures("recorded")
    def test_tables_follow_tz_and_machine_output_stays_utc(self, cli, monkeypatch, user_file):
        assert "2026-11-25 08:06:40" in cli("query", "-f", "table").stdout
        tokyo = cli("query", "-f", "table", "--tz", "Asia/Tokyo").stdout
        assert "Time (Asia/Tokyo)" in tokyo and "2026-11-25 17:06:40" in tokyo
        assert (
            json.loads(cli("--tz", "Asia/Tokyo", "query", "-f", "json").stdout)["logs"][0][
                "createdAt"
            ]
            == AT
        )
        monkeypatch.setenv("TZ", "America/New_York")
        assert "2026-11-25 03:06:40" in cli("query", "-f", "table").stdout
        monkeypatch.delenv("TZ")
        user_file.write_text('time_zone = "Europe/Paris"\n')
        assert "2026-11-25 09:06:40" in cli("query", "-f", "table").stdout
        assert "2026-11-25 08:06:40" in cli("query", "-f", "table", "--tz", "UTC").stdout

    def test_an_unknown_zone_is_a_usage_error(self, cli) -> None:
        result = cli("--tz", "Mars/Base", "path")
        assert result.exit_code == 2
        assert result.stderr == (
            "Error: --tz: unknown time zone 'Mars/Base'; use UTC, local or a name such as"
            " Europe/Paris\n"
        )


def test_the_suite_never_reads_the_machines_or_the_developers_config(tmp_path) -> None:
    """conftest points both files into the test's directory: a real /etc/auditcli/config.toml
    or ~/.config/auditcli/config.toml cannot change what a test sees."""
    from auditcli.config import SYSTEM_CONFIG, config_files

    paths = [found.path for found in config_files()]
    assert all(path.is_relative_to(tmp_path) for path in paths), paths
    assert SYSTEM_CONFIG not in paths
