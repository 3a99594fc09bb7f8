"""One error style and a CLI that reads like one: every usage error, the framework's own included,
is one `Error: …` line with a hint and exit 2; help shows CLI metavars and no types on flags;
shell completion for bash, zsh and fish; the old option spellings still work, hidden."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_misc import COMMANDS, IDS

ENTRY = ["login", "--actor-id", "u-1", "--org-id", "org-1"]


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["query", "-f", "yaml"], "Invalid value for '--format'/'-f': 'yaml' is not one of"),
        (["stats"], "Missing option '--by'/'-b'."),
        (["record"], "Missing argument 'ACTION'."),
        (["query", "--limit", "x"], "Invalid value for '--limit'/'-n': expected a whole number"),
        (["query", "--nope"], "No such option: --nope"),
        (["recrod"], "No such command 'recrod'. Did you mean 'record'?"),
        (["query", "--limit"], "Option '--limit' requires an argument."),
        (["state", "owners"], "Invalid value for 'KIND': 'owners' is not one of"),
        (["tail", "--interval", "soon"], "Invalid value for '--interval': expected a number"),
    ],
)
def test_framework_usage_errors_are_one_line_with_a_hint(cli, store_dir, argv, message) -> None:
    result = cli(*argv)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: ") and message in result.stderr
    command = "audit" if argv == ["recrod"] else f"audit {argv[0]}"
    assert result.stderr.endswith(f"See '{command} -h'.\n")
    for noise in ("╭", "│", "Usage:", "Value error", "Input should", "Try '"):
        assert noise not in result.stderr


def test_the_same_line_reaches_a_real_terminal_user(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auditcli", "query", "-f", "yaml"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "Error: Invalid value for '--format'/'-f': 'yaml' is not one of 'table', 'json',"
        " 'jsonl', 'csv'. See 'audit query -h'.\n"
    )


# ------------------------------------------------------------------------------- help
@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_reads_like_a_cli(cli, path, command) -> None:
    text = cli(*path, "-h").stdout
    usage = text.splitlines()[0]
    assert "{" not in usage and "<" not in usage, usage
    for python in ("<", "list[", "╭"):
        assert python not in text.replace("<=", ""), (path, text)  # 1<=x<=64 is a range
    flags = [p for p in command.params if getattr(p, "is_flag", False) and not p.hidden]
    for flag in flags:
        line = next(line for line in text.splitlines() if flag.opts[0] in line)
        assert "BOOL" not in line and "<" not in line


def test_top_level_help_lists_each_command_in_whole_lines(cli) -> None:
    text = cli("-h").stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    listing = text.split("Commands:\n", 1)[1].splitlines()
    # A continuation line is indented under the description, never a new sentence part
    # that starts at the left margin (the old listing broke mid-sentence).
    for line in listing:
        assert line.startswith("  ")
    assert "  init " in text and "  config " in text


def test_metavars_name_what_to_give(cli) -> None:
    text = cli("query", "-h").stdout
    for shown in ("--action ACTION", "--target TYPE", "--since, --created-at-gte TIME"):
        assert shown in text
    assert "Usage: audit record [OPTIONS] ACTION\n" in cli("record", "-h").stdout
    assert "-o, --output FILE" in cli("keys", "generate", "-h").stdout


# ------------------------------------------------------------------------------- old names
class TestOldSpellings:
    def test_keys_generate_out_is_a_hidden_alias_of_output(self, cli, tmp_path) -> None:
        assert cli("keys", "generate", "--output", tmp_path / "a.key").exit_code == 0
        assert cli("keys", "generate", "--out", tmp_path / "b.key").exit_code == 0
        assert (tmp_path / "a.key.pub").exists() and (tmp_path / "b.key.pub").exists()
        assert "--out " not in cli("keys", "generate", "-h").stdout
        missing = cli("keys", "generate")
        assert missing.exit_code == 2 and "--output" in missing.stderr

    def test_record_json_is_a_hidden_alias_of_format_json(self, cli) -> None:
        import json

        new = json.loads(cli("record", *ENTRY, "--format", "json").stdout)
        old = json.loads(cli("record", *ENTRY, "--json").stdout)
        assert new["action"] == old["action"] == "login"
        assert "--json" not in cli("record", "-h").stdout

    def test_tail_lines_and_text_are_hidden_aliases(self, log_dir) -> None:
        from auditcli.store import AuditStore

        store = AuditStore(log_dir, writer_id="w")
        for n in range(3):
            # Distinct times: entries of one millisecond are ordered by id, not by recording.
            entry = {"action": "login", "actorId": f"u-{n}", "organizationId": "o"}
            store.record({**entry, "createdAt": f"2026-01-01T00:00:0{n}Z"})
        outputs = []
        for argv in (["-n", "2", "-f", "table"], ["--lines", "2", "-f", "text"]):
            proc = subprocess.Popen(
                [sys.executable, "-m", "auditcli", "tail", *argv, "--interval", "0.05"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                outputs.append([proc.stdout.readline() for _ in range(2)])
            finally:
                proc.kill()
                proc.wait(timeout=10)
        assert outputs[0] == outputs[1]
        assert "u-1" in outputs[0][0] and "u-2" in outputs[0][1]

    def test_tail_help_shows_the_new_names_only(self, cli) -> None:
        text = cli("tail", "-h").stdout
        assert "-n, --limit N" in text and "--lines" not in text
        assert "[table|jsonl|csv|ocsf|syslog]" in text and "text" not in text.split("Options")[1]


# ------------------------------------------------------------------------------- completion
def _complete(shell: str, words: str) -> str:
    env = {**os.environ, "_AUDIT_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        env |= {"COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    else:
        env["_TYPER_COMPLETE_ARGS"] = words
        if shell == "fish":
            env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    done = subprocess.run(
        [sys.executable, "-m", "auditcli"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_come_out_for_each_shell(shell) -> None:
    env = {**os.environ, "_AUDIT_COMPLETE": f"source_{shell}"}
    done = subprocess.run(
        [sys.executable, "-m", "auditcli"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert {"bash": "complete -o", "zsh": "#compdef audit", "fish": "complete --command audit"}[
        shell
    ] in done.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_of_commands_actions_and_target_types(shell) -> None:
    assert "record" in _complete(shell, "audit rec")
    actions = _complete(shell, "audit query --action user_")
    assert "user_added_to_team" in actions and "login" not in actions
    assert "SERVICE_ACCOUNT" in _complete(shell, "audit query --target S")
    assert "team_created" in _complete(shell, "audit record team_c")


def test_completion_includes_the_log_directorys_own_actions(cli, store_dir) -> None:
    added = cli(
        "actions", "add", "deploy_approved", "--display-name", "Deploy Approved",
        "--target", "ORGANIZATION", "--template", "{actor} approved {target}",
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    assert "deploy_approved" in _complete("bash", "audit query --action dep").split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_itself_completes_with_the_script(tmp_path: Path) -> None:
    """The script `audit` prints, sourced by a real bash, fills COMPREPLY."""
    script = subprocess.run(
        [sys.executable, "-m", "auditcli"],
        env={**os.environ, "_AUDIT_COMPLETE": "source_bash"},
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    shim = tmp_path / "audit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m auditcli "$@"\n')
    shim.chmod(0o755)
    (tmp_path / "complete.sh").write_text(script)
    done = subprocess.run(
        ["bash", "-c",
         f'PATH="{tmp_path}:$PATH"; source "{tmp_path}/complete.sh";'
         ' COMP_WORDS=(audit query --target T); COMP_CWORD=3; _audit_completion audit;'
         ' printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.split() == ["TEAM"], done.stderr


# ------------------------------------------------------------------------------- record times
def test_record_created_at_takes_now_and_durations(cli) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC)
    stored = json.loads(cli("record", *ENTRY, "-f", "json", "--created-at", "2 hours ago").stdout)
    at = datetime.fromisoformat(stored["createdAt"])
    assert timedelta(hours=2) - timedelta(seconds=5) < before - at < timedelta(hours=2, seconds=5)
    now = json.loads(cli("record", *ENTRY, "-f", "json", "--created-at", "now").stdout)
    assert abs(datetime.fromisoformat(now["createdAt"]) - before) < timedelta(seconds=30)
    bad = cli("record", *ENTRY, "--created-at", "3 parsecs")
    assert bad.exit_code == 2 and "--created-at: unknown unit 'parsecs'" in bad.stderr
    naive = cli("record", *ENTRY, "--created-at", "2026-11-25T08:00:00")
    assert naive.exit_code == 3 and "no UTC offset" in naive.stderr  # still refused, not guessed
