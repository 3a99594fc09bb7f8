"""Shared fixtures for every test module.

Every test runs against its own empty log directory (`AUDIT_LOG_DIR` = `<tmp_path>/logs`), as
writer `testhost`, with no actor, organization, signing key, time zone or config file inherited
from the environment or the machine, and with an 80-column terminal, so results never depend on
the machine running the suite.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

#: Variables a developer's shell may carry that would change what the CLI records or signs.
_INHERITED = (
    "AUDIT_ACTOR_ID",
    "AUDIT_ACTOR_NAME",
    "AUDIT_ACTOR_EMAIL",
    "AUDIT_ORG_ID",
    "AUDIT_SIGNING_KEY",
    "AUDIT_PUBLIC_KEY",
    "AUDIT_FORMAT",
    "AUDIT_CONFIG",
    "AUDIT_DEBUG",
    "NO_COLOR",
    "TZ",
)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the user's private records (vouched indexes, proven files) out of the real home,
    for module-scoped fixtures too, which run before `_audit_env` sets a test's own."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def _audit_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolate every test: its own log directory, writer id, terminal width, no inherited
    actor/org/key. (Not named `log_dir` so a module's own `log_dir` cannot switch it off.)"""
    root = tmp_path / "logs"
    monkeypatch.setenv("AUDIT_LOG_DIR", str(root))
    monkeypatch.setenv("AUDIT_WRITER_ID", "testhost")
    # The default log directory, should a test unset AUDIT_LOG_DIR, is inside tmp_path too.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    # No config file of the machine or of the developer: the system file is looked for in
    # tmp_path (AUDIT_SYSTEM_CONFIG), the user's under an empty XDG_CONFIG_HOME.
    monkeypatch.setenv("AUDIT_SYSTEM_CONFIG", str(tmp_path / "etc" / "config.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # The user's record of vouched-for line indexes (auditcli.trust): one per test.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "50")
    for name in _INHERITED:
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def log_dir(_audit_env: Path) -> Path:
    """The test's log directory (not created until something is written), = `AUDIT_LOG_DIR`."""
    return _audit_env


@pytest.fixture
def store_dir(log_dir: Path) -> Path:
    """The test's log directory, created as `audit init` creates it (for commands that read)."""
    from auditcli.store import init_store

    init_store(log_dir)
    return log_dir


@pytest.fixture
def runner() -> CliRunner:
    """A CliRunner; stdout and stderr are separate (`result.stdout`, `result.stderr`)."""
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner):  # type: ignore[no-untyped-def]
    """`cli("query", "--format", "json", input=...)` runs `audit` in-process and returns the
    click Result; the log directory is the test's (`AUDIT_LOG_DIR`)."""
    from auditcli.cli import app

    def invoke(*args: str, input: str | bytes | None = None, env: dict | None = None) -> Result:
        argv: Sequence[str] = [str(arg) for arg in args]
        return runner.invoke(app, argv, input=input, env=env)

    return invoke


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--update-docs`: tests/test_docs.py rewrites the docs' example outputs from real runs."""
    parser.addoption(
        "--update-docs",
        action="store_true",
        default=False,
        help="rewrite the output of every console example in README.md and docs/*.md that "
        "no longer matches, from a real run",
    )
