"""`audit record` and `AuditStore.record`: every option and environment variable, generated
fields (UUIDv7 id, createdAt, actionDisplayName, target, description, a login's targetId),
validation errors and their exit codes, `record -`, and what lands on disk."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from auditcli import AuditStore, InvalidEntryError, chain
from auditcli.catalog import BUILTIN_ACTIONS
from auditcli.model import SEED_FIELDS, uuid7

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
BASE = ["record", "login", "--actor-id", "user-1", "--org-id", "org-1"]


def stored_lines(root: Path) -> list[bytes]:
    """Every stored line under `root`, partition by partition."""
    lines: list[bytes] = []
    for path in sorted(root.glob("date=*/*.jsonl")):
        lines.extend(path.read_bytes().splitlines(keepends=True))
    return lines


def stored_entries(root: Path) -> list[dict[str, Any]]:
    return [orjson.loads(chain.content_of(line)) for line in stored_lines(root)]


def id_ms(entry_id: str) -> int:
    """The Unix milliseconds in the first 48 bits of a UUIDv7."""
    return int(entry_id.replace("-", "")[:12], 16)


# ------------------------------------------------------------------------------- output
class TestOutput:
    def test_prints_only_the_new_id(self, cli, log_dir: Path) -> None:
        result = cli(*BASE)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        printed = result.stdout
        assert printed.endswith("\n") and printed.count("\n") == 1
        assert UUID7.match(printed.strip())
        assert [e["id"] for e in stored_entries(log_dir)] == [printed.strip()]

    def test_json_prints_the_stored_entry(self, cli, log_dir: Path) -> None:
        result = cli(*BASE, "--json")
        assert result.exit_code == 0, result.stderr
        printed = json.loads(result.stdout)
        assert list(printed) == list(SEED_FIELDS)
        assert stored_entries(log_dir) == [printed]
        # exactly the stored bytes, less the chain link
        assert result.stdout.encode() == chain.content_of(stored_lines(log_dir)[0]) + b"\n"


# ------------------------------------------------------------------------------- options
class TestOptions:
    def test_every_option_lands_in_its_field(self, cli) -> None:
        result = cli(
            "record", "team_created",
            "--actor-id", "user-789",
            "--actor-name", "Jane Smith",
            "--actor-email", "jane@example.com",
            "--target", "team",  # case-insensitive
            "--target-id", "team-101",
            "--target-name", "Engineering",
            "--org-id", "org-456",
            "--team-id", "team-101",
            "--metadata", '{"input": {"permissions": ["read", "write"]}}',
            "--meta", "source=cli",
            "--meta", "ticket=OPS-1=2",
            "--created-at", "2023-11-08T09:15:22Z",
            "--id", "550e8400-e29b-41d4-a716-446655440001",
            "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == {
            "id": "550e8400-e29b-41d4-a716-446655440001",
            "description": "jane@example.com created team Engineering",
            "actorId": "user-789",
            "actorName": "Jane Smith",
            "actorEmail": "jane@example.com",
            "action": "team_created",
            "actionDisplayName": "Team Created",
            "target": "TEAM",
            "targetId": "team-101",
            "metadata": {
                "input": {"permissions": ["read", "write"]},
                "source": "cli",
                "ticket": "OPS-1=2",  # only the first '=' splits
            },
            "organizationId": "org-456",
            "teamId": "team-101",
            "createdAt": "2023-11-08T09:15:22.000Z",
        }

    def test_description_option_replaces_the_template(self, cli) -> None:
        result = cli(*BASE, "--description", "Signed in with SSO", "--json")
        assert json.loads(result.stdout)["description"] == "Signed in with SSO"

    def test_explicit_target_overrides_the_default(self, cli) -> None:
        result = cli(
            "record", "user_added", "--actor-id", "a", "--org-id", "o",
            "--target", "ORGANIZATION", "--target-id", "org-1", "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["target"] == "ORGANIZATION"

    def test_meta_alone_makes_an_object_of_strings(self, cli) -> None:
        result = cli(*BASE, "--meta", "ip=10.0.0.1", "--meta", "mfa=true", "--json")
        assert json.loads(result.stdout)["metadata"] == {"ip": "10.0.0.1", "mfa": "true"}

    def test_no_metadata_is_null(self, cli) -> None:
        entry = json.loads(cli(*BASE, "--json").stdout)
        assert entry["metadata"] is None and entry["teamId"] is None
        assert entry["actorName"] is None and entry["actorEmail"] is None


class TestEnvironment:
    def test_env_vars_supply_the_common_fields(self, cli, monkeypatch) -> None:
        monkeypatch.setenv("AUDIT_ACTOR_ID", "user-env")
        monkeypatch.setenv("AUDIT_ACTOR_NAME", "Env User")
        monkeypatch.setenv("AUDIT_ACTOR_EMAIL", "env@example.com")
        monkeypatch.setenv("AUDIT_ORG_ID", "org-env")
        result = cli("record", "login", "--json")
        assert result.exit_code == 0, result.stderr
        entry = json.loads(result.stdout)
        assert (entry["actorId"], entry["actorName"], entry["actorEmail"]) == (
            "user-env",
            "Env User",
            "env@example.com",
        )
        assert entry["organizationId"] == "org-env"
        assert entry["targetId"] == "user-env"
        assert entry["description"] == "env@example.com logged in"

    def test_options_override_env_vars(self, cli, monkeypatch) -> None:
        monkeypatch.setenv("AUDIT_ACTOR_ID", "user-env")
        monkeypatch.setenv("AUDIT_ORG_ID", "org-env")
        monkeypatch.setenv("AUDIT_ACTOR_NAME", "Env User")
        monkeypatch.setenv("AUDIT_ACTOR_EMAIL", "env@example.com")
        result = cli(
            "record", "login", "--actor-id", "u-opt", "--org-id", "o-opt",
            "--actor-name", "Opt", "--actor-email", "opt@example.com", "--json",
        )  # fmt: skip
        entry = json.loads(result.stdout)
        assert (entry["actorId"], entry["organizationId"]) == ("u-opt", "o-opt")
        assert (entry["actorName"], entry["actorEmail"]) == ("Opt", "opt@example.com")


# ------------------------------------------------------------------------------- generated
class TestGeneratedFields:
    def test_id_is_a_uuid7_carrying_the_time(self, cli) -> None:
        before = int(time.time() * 1000)
        entry_id = cli(*BASE).stdout.strip()
        after = int(time.time() * 1000)
        assert UUID7.match(entry_id)
        assert before <= id_ms(entry_id) <= after

    def test_uuid7_sorts_in_time_order(self) -> None:
        stamps = [1_700_000_000_000 + step * 7 for step in range(200)]
        ids = [uuid7(ms) for ms in stamps]
        assert all(UUID7.match(value) for value in ids)
        assert sorted(ids) == ids
        assert [id_ms(value) for value in ids] == stamps
        assert len(set(ids)) == len(ids)

    def test_successive_records_have_non_decreasing_ids(self, cli) -> None:
        ids = [cli(*BASE).stdout.strip() for _ in range(5)]
        stamps = [id_ms(value) for value in ids]
        assert stamps == sorted(stamps)
        assert len(set(ids)) == 5

    def test_created_at_defaults_to_now_in_canonical_form(self, cli) -> None:
        before = datetime.now(UTC)
        created = json.loads(cli(*BASE, "--json").stdout)["createdAt"]
        after = datetime.now(UTC)
        assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", created)
        moment = datetime.fromisoformat(created)
        assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= moment <= after

    @pytest.mark.parametrize(
        ("given", "stored"),
        [
            ("2023-11-08T08:06:40Z", "2023-11-08T08:06:40.000Z"),
            ("2023-11-08T08:06:40.5Z", "2023-11-08T08:06:40.500Z"),
            ("2023-11-08T08:06:40.123456Z", "2023-11-08T08:06:40.123Z"),
            ("2023-11-08T08:06:40.123Z", "2023-11-08T08:06:40.123Z"),
            ("2023-11-08T10:06:40+02:00", "2023-11-08T08:06:40.000Z"),
            ("2023-11-08T02:36:40-05:30", "2023-11-08T08:06:40.000Z"),
            ("2023-11-08T08:06:40+00:00", "2023-11-08T08:06:40.000Z"),
            ("2023-11-09T01:00:00+09:00", "2023-11-08T16:00:00.000Z"),
            ("2023-11-08 08:06:40Z", "2023-11-08T08:06:40.000Z"),
        ],
    )
    def test_created_at_offsets_are_normalised(self, cli, log_dir, given, stored) -> None:
        result = cli(*BASE, "--created-at", given, "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["createdAt"] == stored
        # the partition is the UTC day, not the day written in the given time
        assert [p.name for p in log_dir.glob("date=*")] == [f"date={stored[:10]}"]

    @pytest.mark.parametrize(
        "given",
        [
            "2023-11-08T08:06:40",
            "2023-11-08",
            "2023-02-30T00:00:00Z",
            "yesterday",
            "nonsense",
            "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
            "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        ],
    )
    def test_created_at_without_offset_or_invalid_is_refused(self, cli, log_dir, given) -> None:
        result = cli(*BASE, "--created-at", given)
        assert result.exit_code == 3
        assert "createdAt" in result.stderr
        assert not log_dir.exists() or not list(log_dir.glob("date=*"))

    @pytest.mark.parametrize("spec", BUILTIN_ACTIONS, ids=lambda spec: spec.action)
    def test_display_name_target_and_template_come_from_the_catalog(self, cli, spec) -> None:
        result = cli(
            "record", spec.action, "--actor-id", "user-1", "--actor-email", "ann@example.com",
            "--org-id", "org-1", "--target-id", "res-9", "--target-name", "Thing", "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        entry = json.loads(result.stdout)
        assert entry["actionDisplayName"] == spec.display_name
        assert entry["target"] == spec.target
        assert entry["description"] == spec.template.format(
            actor="ann@example.com", target="Thing", team="", org="org-1"
        )

    def test_default_targets_are_the_apis(self) -> None:
        targets = {spec.action: spec.target for spec in BUILTIN_ACTIONS}
        assert targets.pop("entries_redacted") == "ORGANIZATION"  # audit redact's own
        assert len(targets) == 15
        for action, target in targets.items():
            if action in ("login", "user_added", "user_removed") or action.startswith("org_admin"):
                assert target == "USER", action
            elif action.startswith("role_"):
                assert target == "ROLE", action
            elif action.startswith("team_") or action.endswith("_team"):
                assert target == "TEAM", action
            else:
                assert action.startswith("service_account_") and target == "SERVICE_ACCOUNT"

    def test_seed_descriptions(self, cli) -> None:
        login = cli(*BASE, "--actor-email", "user@example.com", "--json")
        assert json.loads(login.stdout)["description"] == "user@example.com logged in"
        team = cli(
            "record", "team_created", "--actor-id", "user-789", "--org-id", "org-456",
            "--actor-email", "alice@example.com", "--target-id", "team-101",
            "--target-name", "Engineering", "--json",
        )  # fmt: skip
        assert (
            json.loads(team.stdout)["description"] == "alice@example.com created team Engineering"
        )

    @pytest.mark.parametrize(
        ("extra", "actor"),
        [
            (["--actor-email", "e@example.com", "--actor-name", "Ed"], "e@example.com"),
            (["--actor-name", "Ed"], "Ed"),
            ([], "user-1"),
        ],
    )
    def test_template_actor_is_email_then_name_then_id(self, cli, extra, actor) -> None:
        entry = json.loads(cli(*BASE, *extra, "--json").stdout)
        assert entry["description"] == f"{actor} logged in"

    def test_template_target_falls_back_to_the_target_id(self, cli) -> None:
        result = cli(
            "record", "role_deleted", "--actor-id", "u", "--org-id", "o",
            "--target-id", "role-7", "--json",
        )  # fmt: skip
        assert json.loads(result.stdout)["description"] == "u deleted role role-7"

    def test_login_target_id_defaults_to_the_actor(self, cli) -> None:
        entry = json.loads(cli(*BASE, "--json").stdout)
        assert entry["targetId"] == "user-1" and entry["target"] == "USER"
        other = json.loads(cli(*BASE, "--target-id", "user-2", "--json").stdout)
        assert other["targetId"] == "user-2"

    def test_custom_action_from_the_catalog(self, cli, store_dir) -> None:
        added = cli(
            "actions", "add", "deploy_approved", "--display-name", "Deploy Approved",
            "--target", "organization", "--template", "{actor} approved deploy {target} in {org}",
        )  # fmt: skip
        assert added.exit_code == 0, added.stderr
        result = cli(
            "record", "deploy_approved", "--actor-id", "u", "--org-id", "org-1",
            "--target-id", "d-42", "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        entry = json.loads(result.stdout)
        assert entry["actionDisplayName"] == "Deploy Approved"
        assert entry["target"] == "ORGANIZATION"
        assert entry["description"] == "u approved deploy d-42 in org-1"


# ------------------------------------------------------------------------------- errors
class TestErrors:
    def test_unknown_action_names_the_closest(self, cli, log_dir) -> None:
        result = cli(
            "record", "team_creatd", "--actor-id", "u", "--org-id", "o", "--target-id", "t"
        )
        assert result.exit_code == 3
        assert "unknown action 'team_creatd'" in result.stderr
        assert "team_created" in result.stderr
        assert result.stdout == ""
        assert not log_dir.exists()

    def test_unknown_action_with_nothing_close_points_to_the_list(self, cli) -> None:
        result = cli("record", "zzzzzz", "--actor-id", "u", "--org-id", "o", "--target-id", "t")
        assert result.exit_code == 3
        assert "audit actions" in result.stderr

    @pytest.mark.parametrize(
        ("args", "field"),
        [
            (["record", "login", "--org-id", "o"], "actorId"),
            (["record", "login", "--actor-id", "u"], "organizationId"),
            (["record", "team_created", "--actor-id", "u", "--org-id", "o"], "targetId"),
        ],
    )
    def test_required_fields(self, cli, log_dir, args, field) -> None:
        result = cli(*args)
        assert result.exit_code == 3
        assert f"{field}: field required" in result.stderr
        assert not log_dir.exists()

    @pytest.mark.parametrize(
        ("extra", "field"),
        [
            (["--actor-email", "not-an-email"], "actorEmail"),
            (["--target", "GROUP"], "target"),
            (["--metadata", "[1, 2]"], "metadata"),
            (["--metadata", "{bad json"], "metadata"),
            (["--metadata", '{"a": 1, "a": 2}'], "metadata"),
            (["--id", "has space"], "id"),
            (["--actor-id", ""], "actorId"),
        ],
    )
    def test_invalid_values_exit_3(self, cli, log_dir, extra, field) -> None:
        result = cli(*BASE, *extra)
        assert result.exit_code == 3, result.stderr
        assert f"{field}:" in result.stderr
        assert not log_dir.exists()

    @pytest.mark.parametrize("pair", ["novalue", "=x"])
    def test_malformed_meta_is_a_usage_error(self, cli, pair) -> None:
        result = cli(*BASE, "--meta", pair)
        assert result.exit_code == 2
        assert "--meta" in result.stderr

    def test_meta_key_twice_is_refused(self, cli) -> None:
        result = cli(*BASE, "--metadata", '{"k": 1}', "--meta", "k=2")
        assert result.exit_code == 2

    def test_a_given_id_already_stored_is_refused(self, cli, log_dir) -> None:
        first = cli(*BASE, "--id", "evt-1")
        assert first.exit_code == 0, first.stderr
        before = stored_lines(log_dir)
        again = cli(*BASE, "--id", "evt-1")
        assert again.exit_code == 3
        assert "evt-1" in again.stderr and "already" in again.stderr
        assert stored_lines(log_dir) == before

    def test_errors_are_one_line_per_problem_without_traceback(self, cli) -> None:
        result = cli("record", "login")
        assert result.exit_code == 3
        lines = result.stderr.splitlines()
        assert lines[0].startswith("Error: ")
        assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------- stdin
class TestStdin:
    SEED_ROLE: ClassVar[dict[str, Any]] = {
        "id": "550e8400-e29b-41d4-a716-446655440002",
        "description": "user@example.com updated role Developer",
        "actorId": "user-456",
        "actorName": "Admin User",
        "actorEmail": "user@example.com",
        "action": "role_updated",
        "actionDisplayName": "Role Updated",
        "target": "ROLE",
        "targetId": "role-202",
        "metadata": {
            "input": {
                "permissions": ["read", "write"],
                "description": "Updated developer permissions",
            }
        },
        "organizationId": "org-456",
        "teamId": None,
        "createdAt": "2023-11-08T10:30:15Z",
    }

    def test_reads_one_full_entry(self, cli, log_dir) -> None:
        result = cli("record", "-", input=json.dumps(self.SEED_ROLE, indent=2))
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == self.SEED_ROLE["id"]
        assert stored_entries(log_dir) == [
            {**self.SEED_ROLE, "createdAt": "2023-11-08T10:30:15.000Z"}
        ]

    def test_fills_generated_fields(self, cli) -> None:
        data = {"action": "user_added", "actorId": "u", "organizationId": "o", "targetId": "u-2"}
        result = cli("record", "-", "--json", input=json.dumps(data))
        assert result.exit_code == 0, result.stderr
        entry = json.loads(result.stdout)
        assert UUID7.match(entry["id"])
        assert entry["actionDisplayName"] == "User Added"
        assert entry["target"] == "USER"
        assert entry["description"] == "u added user u-2"

    def test_options_and_env_fill_what_the_json_lacks(self, cli, monkeypatch) -> None:
        monkeypatch.setenv("AUDIT_ORG_ID", "org-env")
        monkeypatch.setenv("AUDIT_ACTOR_EMAIL", "env@example.com")
        data = {"action": "team_deleted", "actorId": "u-json", "actorEmail": None}
        result = cli(
            "record", "-", "--actor-id", "u-opt", "--target-id", "team-7",
            "--target-name", "Red", "--json", input=json.dumps(data),
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        entry = json.loads(result.stdout)
        assert entry["organizationId"] == "org-env"  # from the environment
        assert entry["targetId"] == "team-7"  # from an option
        assert entry["actorId"] == "u-json"  # the JSON's value wins
        assert entry["actorEmail"] is None  # an explicit null too
        assert entry["description"] == "u-json deleted team Red"

    @pytest.mark.parametrize(
        ("stdin", "message"),
        [
            ("", "empty"),
            ("   \n", "empty"),
            ("[1]", "JSON object"),
            ("{nope", "JSON"),
            (
                '{"action":"login","actorId":"u","organizationId":"o","extra":1}',
                "extra: unknown field",
            ),
            ('{"action":"login","actorId":"u","organizationId":"o"}\n{"action":"login"}', "JSON"),
        ],
    )
    def test_bad_stdin_exit_3(self, cli, log_dir, stdin, message) -> None:
        result = cli("record", "-", input=stdin)
        assert result.exit_code == 3
        assert message in result.stderr
        assert not log_dir.exists()


# ------------------------------------------------------------------------------- on disk
class TestOnDisk:
    def test_hive_layout_and_line_format(self, cli, log_dir) -> None:
        for at in ("2026-11-24T23:59:59.999Z", "2026-11-25T00:00:00Z", "2026-11-25T12:00:00Z"):
            assert cli(*BASE, "--created-at", at).exit_code == 0
        assert sorted(p.relative_to(log_dir).as_posix() for p in log_dir.rglob("*.jsonl")) == [
            "date=2026-11-24/testhost.jsonl",
            "date=2026-11-25/testhost.jsonl",
        ]
        data = (log_dir / "date=2026-11-25" / "testhost.jsonl").read_bytes()
        assert data.endswith(b"\n") and data.count(b"\n") == 2
        for line in data.splitlines(keepends=True):
            assert chain.is_chained_line(line)
            content = chain.content_of(line)
            assert list(orjson.loads(content)) == list(SEED_FIELDS)
            assert orjson.dumps(orjson.loads(content)) == content  # compact, one serialiser
            line.decode("utf-8")

    def test_modes_are_private_whatever_the_umask(self, cli, log_dir) -> None:
        old = os.umask(0)
        try:
            assert cli(*BASE, "--created-at", "2026-01-01T00:00:00Z").exit_code == 0
        finally:
            os.umask(old)
        partition = log_dir / "date=2026-01-01"
        assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(partition.stat().st_mode) == 0o700
        for path in partition.iterdir():
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    def test_records_append_and_never_rewrite(self, cli, log_dir) -> None:
        cli(*BASE, "--created-at", "2026-01-01T00:00:00Z")
        path = log_dir / "date=2026-01-01" / "testhost.jsonl"
        first = path.read_bytes()
        cli(*BASE, "--created-at", "2026-01-01T00:00:01Z")
        assert path.read_bytes().startswith(first)

    def test_log_dir_option_beats_the_env(self, cli, tmp_path, log_dir) -> None:
        other = tmp_path / "other"
        assert cli("--log-dir", str(other), *BASE).exit_code == 0
        assert cli("-d", str(other), *BASE).exit_code == 0
        assert len(stored_lines(other)) == 2
        assert not log_dir.exists()


# ------------------------------------------------------------------------------- Python API
class TestPythonApi:
    def test_record_returns_the_stored_entry(self, tmp_path) -> None:
        store = AuditStore(tmp_path / "api", writer_id="svc")
        entry = store.record(
            {"action": "login", "actorId": "u-1", "organizationId": "o-1"}, target_name=None
        )
        assert list(entry) == list(SEED_FIELDS)
        assert stored_entries(tmp_path / "api") == [entry]
        assert (tmp_path / "api" / f"date={entry['createdAt'][:10]}" / "svc.jsonl").exists()

    def test_invalid_entry_raises_with_every_problem(self, tmp_path) -> None:
        store = AuditStore(tmp_path / "api")
        with pytest.raises(InvalidEntryError) as caught:
            store.record({"action": "nope", "actorEmail": "bad"})
        problems = caught.value.problems
        assert any(p.startswith("action: unknown action 'nope'") for p in problems)
        assert "actorId: field required" in problems
        assert "organizationId: field required" in problems
        assert "actorEmail: not a valid email address" in problems
        assert caught.value.exit_code == 3
        assert not (tmp_path / "api").exists()
