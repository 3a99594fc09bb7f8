"""A fleet: several hosts, each with its own store, key and manifest chain, copied
into one central store with the sync recipe (examples/fleet-sync.sh, rsync for real); one
`verify` proves every host, names the host when one is not what it wrote, and everything else
reads the merged tree as one log."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditcli import integrity
from auditcli.integrity import generate_keys, load_fleet, seal_writers, verify
from auditcli.store import AuditStore

ROOT = Path(__file__).resolve().parent.parent
SYNC = ROOT / "examples" / "fleet-sync.sh"
LEGACY = Path(__file__).resolve().parent / "data" / "legacy-store"
HOSTS = ("alpha", "bravo", "charlie")
DAY1, DAY2 = "2026-11-20", "2026-11-21"

needs_rsync = pytest.mark.skipif(
    shutil.which("rsync") is None or shutil.which("flock") is None,
    reason="rsync and flock are needed for the sync recipe (.ci/run installs rsync with apt-get)",
)


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)


def _env(host: Path, writer: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env.update(AUDIT_LOG_DIR=str(host / "logs"), AUDIT_WRITER_ID=writer, COLUMNS="80", NO_COLOR="1")
    return env


def audit(host: Path, writer: str, *args: str, stdin: str | None = None) -> str:
    """Run `audit ARGS` as that host's own process; its stdout (fails the test on exit != 0)."""
    result = subprocess.run(
        [sys.executable, "-m", "auditcli", *args],
        env=_env(host, writer),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def _entries(writer: str, day: str, count: int, start: int = 0) -> str:
    """JSONL entries; the hosts' entries interleave in time (second = host index)."""
    second = HOSTS.index(writer) if writer in HOSTS else 30
    return "".join(
        orjson.dumps(
            {
                "action": "login",
                "actorId": f"{writer}-{i}",
                "organizationId": "org-1",
                "createdAt": f"{day}T08:{i % 60:02d}:{second:02d}.000Z",
            }
        ).decode()
        + "\n"
        for i in range(start, start + count)
    )


def sync(host: Path, central: Path) -> None:
    """The documented recipe, run for real."""
    central.mkdir(exist_ok=True)
    subprocess.run(
        ["sh", str(SYNC), str(host / "logs"), f"{central}/"],
        check=True,
        capture_output=True,
        timeout=60,
    )


@dataclass
class Fleet:
    base: Path
    hosts: dict[str, Path]
    anchors: dict[str, str]  # the hash each host's newest seal printed
    first_names: dict[str, str]  # the file name of each host's first manifest

    def fleet_file(self, *, keys: dict[str, str] | None = None, anchors: bool = True) -> Path:
        """A fleet file kept outside the stores; `keys`: writer -> whose key it names."""
        keys = keys or {h: h for h in HOSTS}
        text = ""
        for writer in HOSTS:
            text += f'[writers.{writer}]\npublic_key = "{self.hosts[keys[writer]]}/seal.key.pub"\n'
            if anchors:
                text += f'anchor = "{self.anchors[writer]}"\n'
        path = self.base / f"fleet-{abs(hash((tuple(sorted(keys.items())), anchors)))}.toml"
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """Three hosts, each its own store and key, written and sealed by their own processes:
    the first seals at the same moment (started together), later ones at different times."""
    base = tmp_path_factory.mktemp("fleet")
    hosts = {name: base / name for name in HOSTS}
    for name, host in hosts.items():
        host.mkdir()
        audit(host, name, "keys", "generate", "--out", str(host / "seal.key"))
        audit(host, name, "import", "-", stdin=_entries(name, DAY1, 20))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "auditcli", "seal", "--signing-key", str(host / "seal.key")],
            env=_env(host, name),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, host in hosts.items()
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    anchors = {}
    for name, host in hosts.items():
        audit(host, name, "import", "-", stdin=_entries(name, DAY2, 10))
        anchors[name] = audit(host, name, "seal", "--signing-key", str(host / "seal.key")).strip()
    # alpha writes and seals once more: the chains differ in length
    audit(hosts["alpha"], "alpha", "import", "-", stdin=_entries("alpha", DAY2, 5, start=10))
    anchors["alpha"] = audit(
        hosts["alpha"], "alpha", "seal", "--signing-key", str(hosts["alpha"] / "seal.key")
    ).strip()
    first = {
        name: sorted((host / "logs" / "_manifests" / name).glob("*.json"))[0].name
        for name, host in hosts.items()
    }
    return Fleet(base, hosts, anchors, first)


@pytest.fixture(scope="module")
def central(fleet: Fleet) -> Path:
    """The hosts synced into one central store (alpha, bravo, charlie)."""
    path = fleet.base / "central"
    for name in HOSTS:
        sync(fleet.hosts[name], path)
    return path


def _copy(central: Path, tmp_path: Path) -> Path:
    target = tmp_path / "central"
    shutil.copytree(central, target, symlinks=True)
    return target


def _verify(root: Path, fleet_file: Path | None = None, **kwargs: Any) -> integrity.VerifyReport:
    store = AuditStore(root, writer_id="loghost")
    return verify(store, fleet=load_fleet(fleet_file) if fleet_file else None, **kwargs)


def _hosts_with_problems(report: integrity.VerifyReport) -> set[str]:
    return {h.writer for h in report.hosts if h.problems}


# ============================================================================ merging
@needs_rsync
@pytest.mark.parametrize("order", list(itertools.permutations(HOSTS)), ids="-".join)
def test_copies_merged_in_any_order_verify_clean_per_host(
    fleet: Fleet, tmp_path: Path, order: tuple[str, ...]
) -> None:
    central = tmp_path / "central"
    for name in order:
        sync(fleet.hosts[name], central)
    for name in reversed(order):  # again, in another order: copies are idempotent
        sync(fleet.hosts[name], central)
    report = _verify(central, fleet.fleet_file())
    assert report.ok, report.problems
    rows = {h.writer: (h.files, h.entries, h.manifests, h.chain, h.problems) for h in report.hosts}
    assert rows == {
        "alpha": (2, 35, 3, "own", 0),
        "bravo": (2, 30, 2, "own", 0),
        "charlie": (2, 30, 2, "own", 0),
    }
    assert report.signed == "verified" and report.uncovered == 0
    keys = {h.writer: h.key_ids for h in report.hosts}
    for name in HOSTS:
        expected = integrity.key_id(integrity.load_public_key(fleet.hosts[name] / "seal.key.pub"))
        assert keys[name] == [expected]


@needs_rsync
def test_seals_in_the_same_second_merge_without_overwriting(tmp_path: Path) -> None:
    """The issue's first case: every host's first manifest has the same name; in its own
    chain directory none overwrites another."""
    instant = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    hosts = {}
    for name in HOSTS:
        host = tmp_path / name
        store = AuditStore(host / "logs", writer_id=name, clock=lambda: instant)
        store.append([orjson.loads(line) for line in _entries(name, DAY1, 3).splitlines()])
        generate_keys(host / "seal.key")
        integrity.seal(store, signing_key=host / "seal.key")
        hosts[name] = host
    names = {next((hosts[n] / "logs" / "_manifests" / n).glob("*.json")).name for n in HOSTS}
    assert names == {"000000001-2026-11-25T12-00-00Z.json"}
    central = tmp_path / "central"
    for name in HOSTS:
        sync(hosts[name], central)
    report = _verify(central)
    assert report.ok, report.problems
    assert [(h.writer, h.entries, h.manifests) for h in report.hosts] == [
        (name, 3, 1) for name in HOSTS
    ]
    assert report.uncovered == 0
    assert any("No fleet file" in note for note in report.notes)


@needs_rsync
def test_syncing_while_a_host_writes_and_rotates_never_raises_an_alarm(tmp_path: Path) -> None:
    """A file caught mid-write or mid-rotation on the source: the copy is taken under the
    writers' lock (never mid-line), manifests go last (never ahead of the files)."""
    host = tmp_path / "delta"
    host.mkdir()
    audit(host, "delta", "import", "-", stdin=_entries("delta", DAY1, 50))
    audit(host, "delta", "seal")
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from auditcli.store import AuditStore\n"
            "store = AuditStore(sys.argv[1], writer_id='delta')\n"
            "deadline = time.monotonic() + 60\n"
            "i = 0\n"
            "while not Path(sys.argv[2]).exists() and time.monotonic() < deadline:\n"
            "    store.append([{'action': 'login', 'actorId': f'w-{i}', 'organizationId': 'o',"
            " 'createdAt': '2026-11-21T09:00:00.000Z', 'description': 'x' * 3000}])\n"
            "    i += 1\n",
            str(host / "logs"),
            str(stop),
        ],
        env=_env(host, "delta"),
    )
    central = tmp_path / "central"
    try:
        for round_ in range(3):
            audit(host, "delta", "seal", "--quiet")
            if round_ == 1:
                audit(host, "delta", "rotate")  # compresses the closed days under the writer
            sync(host, central)
            report = _verify(central)
            assert report.ok, (round_, report.problems)
            assert writer.poll() is None  # still writing
    finally:
        stop.touch()
        writer.wait(timeout=60)
    assert writer.returncode == 0
    audit(host, "delta", "seal", "--quiet")
    sync(host, central)
    report = _verify(central)
    assert report.ok and report.uncovered == 0, report.problems
    here = _verify(host / "logs")
    assert (report.entries, report.files) == (here.entries, here.files)


# ============================================================================ tampering
@needs_rsync
class TestTamperingPerHost:
    def test_an_edited_entry_names_its_host(
        self, fleet: Fleet, central: Path, tmp_path: Path
    ) -> None:
        root = _copy(central, tmp_path)
        path = root / f"date={DAY1}" / "bravo.jsonl"
        path.write_bytes(path.read_bytes().replace(b'"bravo-3"', b'"bravo-X"', 1))
        report = _verify(root, fleet.fleet_file())
        assert [(p.file, p.line, p.kind) for p in report.problems] == [
            (f"date={DAY1}/bravo.jsonl", 4, "altered entry")
        ]
        assert _hosts_with_problems(report) == {"bravo"}

    def test_a_deleted_file_names_its_host(
        self, fleet: Fleet, central: Path, tmp_path: Path
    ) -> None:
        root = _copy(central, tmp_path)
        (root / f"date={DAY2}" / "charlie.jsonl").unlink()
        report = _verify(root, fleet.fleet_file())
        assert [(p.file, p.kind) for p in report.problems] == [
            (f"date={DAY2}/charlie.jsonl", "deleted file")
        ]
        assert _hosts_with_problems(report) == {"charlie"}

    def test_a_deleted_host_is_named_only_with_a_fleet_file(
        self, fleet: Fleet, central: Path, tmp_path: Path
    ) -> None:
        root = _copy(central, tmp_path)
        for path in root.glob("date=*/alpha.jsonl*"):
            path.unlink()
        shutil.rmtree(root / "_manifests" / "alpha")
        report = _verify(root, fleet.fleet_file())
        assert [(p.file, p.kind) for p in report.problems] == [
            ("_manifests/alpha/", "missing host"),
            ("_manifests/alpha/", "anchor not found"),
        ]
        assert _hosts_with_problems(report) == {"alpha"}
        blind = _verify(root)
        assert blind.ok and [h.writer for h in blind.hosts] == ["bravo", "charlie"]
        assert any("cannot tell a host" in note for note in blind.notes)

    def test_a_hosts_files_without_its_manifests_are_named(
        self, fleet: Fleet, central: Path, tmp_path: Path
    ) -> None:
        root = _copy(central, tmp_path)
        shutil.rmtree(root / "_manifests" / "charlie")
        report = _verify(root, fleet.fleet_file(anchors=False))
        assert ("_manifests/charlie/", "deleted manifest") in [
            (p.file, p.kind) for p in report.problems
        ]
        assert _hosts_with_problems(report) == {"charlie"}

    def test_a_deleted_newest_manifest_is_named_by_the_anchor(
        self, fleet: Fleet, central: Path, tmp_path: Path
    ) -> None:
        root = _copy(central, tmp_path)
        max((root / "_manifests" / "bravo").glob("*.json")).unlink()
        report = _verify(root, fleet.fleet_file())
        assert [(p.file, p.kind) for p in report.problems] == [
            ("_manifests/bravo/", "anchor not found")
        ]
        assert "bravo" in report.problems[0].detail
        # without the anchor the chain looks whole: what a fleet file's anchors are for
        assert _verify(root, fleet.fleet_file(anchors=False)).ok

    def test_swapped_keys_are_named(self, fleet: Fleet, central: Path, tmp_path: Path) -> None:
        swapped = fleet.fleet_file(keys={"alpha": "bravo", "bravo": "alpha", "charlie": "charlie"})
        report = _verify(central, swapped)
        assert {p.kind for p in report.problems} == {"wrong signing key"}
        assert {p.file.split("/")[1] for p in report.problems} == {"alpha", "bravo"}
        assert _hosts_with_problems(report) == {"alpha", "bravo"}

    def test_a_chain_resigned_with_another_key_is_named(
        self, fleet: Fleet, central: Path, tmp_path: Path
    ) -> None:
        root = _copy(central, tmp_path)
        shutil.rmtree(root / "_manifests" / "charlie")
        generate_keys(tmp_path / "evil.key")
        seal_writers(
            AuditStore(root, writer_id="x"), ["charlie"], signing_key=tmp_path / "evil.key"
        )
        report = _verify(root, fleet.fleet_file(anchors=False))
        assert {(p.file.rsplit("/", 1)[0], p.kind) for p in report.problems} == {
            ("_manifests/charlie", "wrong signing key")
        }

    def test_one_hosts_file_copied_under_anothers_name_is_named(
        self, fleet: Fleet, central: Path, tmp_path: Path
    ) -> None:
        root = _copy(central, tmp_path)
        shutil.copy(root / f"date={DAY1}" / "alpha.jsonl", root / f"date={DAY1}" / "bravo.jsonl")
        report = _verify(root, fleet.fleet_file())
        moved = [p for p in report.problems if p.kind == "moved file"]
        assert [(p.file, p.line) for p in moved] == [(f"date={DAY1}/bravo.jsonl", 1)]
        assert f"date={DAY1}/alpha" in moved[0].detail
        assert _hosts_with_problems(report) == {"bravo"}

    def test_one_hosts_manifest_copied_into_anothers_chain_is_named(
        self, fleet: Fleet, central: Path, tmp_path: Path
    ) -> None:
        root = _copy(central, tmp_path)
        source = max((root / "_manifests" / "alpha").glob("*.json"))
        shutil.copy(source, root / "_manifests" / "charlie" / source.name)
        report = _verify(root, fleet.fleet_file(anchors=False))
        details = [p.detail for p in report.problems if p.file.startswith("_manifests/charlie/")]
        assert any("names writer 'alpha'" in d for d in details), report.problems
        assert _hosts_with_problems(report) == {"charlie"}

    def test_a_planted_host_is_named(self, fleet: Fleet, central: Path, tmp_path: Path) -> None:
        root = _copy(central, tmp_path)
        store = AuditStore(root, writer_id="mallory")
        store.append([orjson.loads(line) for line in _entries("mallory", DAY1, 2).splitlines()])
        integrity.seal(store)
        report = _verify(root, fleet.fleet_file())
        assert {(p.file, p.kind) for p in report.problems} == {
            ("_manifests/mallory/", "unknown writer")
        }
        row = next(h for h in report.hosts if h.writer == "mallory")
        assert row.in_fleet is False


# ============================================================================ the CLI
@needs_rsync
def test_verify_cli_reports_per_host_table_and_json(fleet: Fleet, central: Path) -> None:
    env = {**_env(fleet.base, "loghost"), "AUDIT_LOG_DIR": str(central)}
    args = [sys.executable, "-m", "auditcli", "verify", "--fleet", str(fleet.fleet_file())]
    table = subprocess.run(
        [*args, "--format", "table"], env=env, capture_output=True, text=True, timeout=60
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    tables = [line for line in lines if not line.startswith("Latest manifest: sha256:")]
    assert all(len(line) <= 80 for line in tables), table.stdout
    assert "verified with the fleet's keys" in table.stdout
    for name in HOSTS:
        row = next(line for line in lines if line.startswith(f"{name} "))
        assert row.rstrip().endswith("OK"), row
    as_json = subprocess.run(
        [*args, "--format", "json"], env=env, capture_output=True, text=True, timeout=60
    )
    data = orjson.loads(as_json.stdout)
    assert [(h["writer"], h["ok"], h["inFleet"], h["entries"]) for h in data["hosts"]] == [
        ("alpha", True, True, 35),
        ("bravo", True, True, 30),
        ("charlie", True, True, 30),
    ]
    assert data["hosts"][0]["latestManifest"]["hash"] == fleet.anchors["alpha"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[writers.a]\npublic_key = 'k.pub'\ncolour = 1\n", "writers.a: unknown field(s) colour"),
        ("[writers.a]\nrequired = true\n", "writers.a: give public_key or key_id"),
        ("[writers.a]\nkey_id = 'nope'\n", "writers.a.key_id: expected sha256:<hex>"),
        ("[writers.a]\npublic_key = 'missing.pub'\n", "writers.a.public_key"),
        ("[writers.a\n", "not valid TOML"),
        ("[legacy]\n", "no [writers.<id>] table"),
    ],
)
def test_a_bad_fleet_file_is_a_usage_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "fleet.toml").write_text(text)
    env = {**_env(tmp_path, "x")}
    audit(tmp_path, "x", "init")  # a reader refuses a missing store first
    result = subprocess.run(
        [sys.executable, "-m", "auditcli", "verify", "--fleet", str(tmp_path / "fleet.toml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr and "fleet.toml" in result.stderr


# ============================================================================ readers
@needs_rsync
def test_everything_else_reads_the_merged_tree_as_one_log(fleet: Fleet, central: Path) -> None:
    env = {**_env(fleet.base, "loghost"), "AUDIT_LOG_DIR": str(central)}

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "auditcli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    rows = [
        orjson.loads(line)
        for line in run("query", "--all", "--order", "asc", "--format", "jsonl").splitlines()
    ]
    assert len(rows) == 95
    assert {row["actorId"].split("-")[0] for row in rows} == set(HOSTS)
    keys = [(row["createdAt"], row["id"]) for row in rows]
    assert keys == sorted(keys)  # one log, in time order across hosts
    assert rows[0]["actorId"] == "alpha-0" and rows[1]["actorId"] == "bravo-0"
    assert run("query", "--count").strip() == "95"
    exported = run("export", "--format", "jsonl").splitlines()
    assert len(exported) == 95
    duckdb = pytest.importorskip("duckdb")
    connection = duckdb.connect()
    connection.execute(run("schema", "--dialect", "duckdb"))
    got = connection.execute("SELECT actorId FROM audit_logs ORDER BY createdAt, id").fetchall()
    assert [r[0] for r in got] == [row["actorId"] for row in rows]
    history = [
        orjson.loads(x) for x in run("history", "--actor-id", "bravo-4", "-f", "jsonl").splitlines()
    ]
    assert [h["entry"]["createdAt"][:10] for h in history] == [DAY1, DAY2]
    users = orjson.loads(run("state", "users", "--at", f"{DAY2}T23:00:00Z", "--format", "json"))
    assert users["firstRecorded"] == rows[0]["createdAt"]  # the replay starts at alpha's first
    report = run("report", "--since", DAY1, "--until", DAY2, "-o", "-")
    assert "95" in report and "verified" in report


def test_importing_one_hosts_export_into_another_store_is_idempotent(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for host in (one, two):
        host.mkdir()
    audit(one, "one", "import", "-", stdin=_entries("one", DAY1, 12))
    audit(two, "two", "import", "-", stdin=_entries("two", DAY1, 3))
    exported = audit(one, "one", "export", "--format", "jsonl")
    assert audit(two, "two", "import", "-", stdin=exported).startswith("imported 12 entries")
    again = audit(two, "two", "import", "-", stdin=exported)
    assert again.startswith("imported 0 entries, 12 duplicate(s) skipped"), again
    assert audit(two, "two", "query", "--count").strip() == "15"
    audit(two, "two", "seal")
    assert _verify(two / "logs").ok


# ============================================================================ receipts
@needs_rsync
def test_retention_on_a_host_keeps_the_central_copy_covered(tmp_path: Path) -> None:
    """A host deletes an old day (receipt in its own chain); the central store keeps the
    file longer, and it stays checked against what the host sealed, not just 'uncovered'."""
    host = tmp_path / "echo"
    host.mkdir()
    audit(host, "echo", "import", "-", stdin=_entries("echo", DAY1, 8) + _entries("echo", DAY2, 4))
    audit(host, "echo", "seal")
    central = tmp_path / "central"
    sync(host, central)
    audit(host, "echo", "rotate", "--delete-after", "1")  # DAY1 and DAY2 are long past
    audit(host, "echo", "seal")
    assert not list((host / "logs").glob("date=*"))
    receipts = list((host / "logs" / "_manifests" / "echo").glob("*.receipt.json"))
    assert len(receipts) == 2
    sync(host, central)
    report = _verify(central)
    assert report.ok and report.uncovered == 0 and report.entries == 12, report.problems
    # the kept copy is still evidence: an edit shows
    path = next(central.glob(f"date={DAY1}/echo.jsonl*"))
    if path.suffix == ".gz":
        import gzip

        data = gzip.decompress(path.read_bytes()).replace(b'"echo-2"', b'"echo-Z"', 1)
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(path.read_bytes().replace(b'"echo-2"', b'"echo-Z"', 1))
    assert "altered entry" in {p.kind for p in _verify(central).problems}
    # and the host itself verifies: its deletions are receipted
    assert _verify(host / "logs").ok


def test_a_log_hosts_receipt_excuses_deletions_only_when_its_key_is_in_the_fleet(
    tmp_path: Path,
) -> None:
    root = tmp_path / "logs"
    for name in ("alpha", "bravo"):
        store = AuditStore(root, writer_id=name)
        store.append([orjson.loads(line) for line in _entries(name, DAY1, 4).splitlines()])
        generate_keys(tmp_path / f"{name}.key")
        integrity.seal(store, signing_key=tmp_path / f"{name}.key")
    generate_keys(tmp_path / "loghost.key")
    loghost = AuditStore(root, writer_id="loghost")
    records = integrity.partition_records(loghost, DAY1)
    integrity.write_receipt(
        loghost, DAY1, records, "retention", signing_key=tmp_path / "loghost.key"
    )
    assert list((root / "_manifests" / "loghost").glob("000000001-*.receipt.json"))
    shutil.rmtree(root / f"date={DAY1}")
    text = "".join(
        f'[writers.{n}]\npublic_key = "{tmp_path}/{n}.key.pub"\n' for n in ("alpha", "bravo")
    )
    trusting = tmp_path / "trusting.toml"
    trusting.write_text(text + f'[writers.loghost]\npublic_key = "{tmp_path}/loghost.key.pub"\n')
    report = _verify(root, trusting)
    assert report.ok and report.receipted_files == 2, report.problems
    doubting = tmp_path / "doubting.toml"
    doubting.write_text(text + '[writers.loghost]\nkey_id = "sha256:' + "0" * 64 + '"\n')
    report = _verify(root, doubting)
    assert {p.kind for p in report.problems} >= {"deleted partition", "wrong signing key"}


# ============================================================================ migration
def _legacy(tmp_path: Path) -> Path:
    target = tmp_path / "legacy"
    shutil.copytree(LEGACY, target)
    return target


def test_a_store_sealed_by_the_previous_release_still_verifies(tmp_path: Path) -> None:
    legacy = _legacy(tmp_path)
    key = integrity.load_public_key(legacy / "seal.key.pub")
    report = _verify(legacy / "logs", public_keys=[key])
    assert report.ok, report.problems
    assert (report.manifests, report.entries, report.receipted_files) == (5, 7, 2)
    assert [(h.writer, h.chain) for h in report.hosts] == [
        (integrity.LEGACY_HOST, "none"),
        ("web1", "legacy"),
        ("web2", "legacy"),
    ]


def test_the_first_seal_migrates_and_binds_the_legacy_chain(tmp_path: Path) -> None:
    legacy = _legacy(tmp_path)
    logs = legacy / "logs"
    out = audit(legacy, "web1", "seal", "--signing-key", str(legacy / "seal.key"))
    assert [line.split()[1] for line in out.splitlines()] == ["web1", "web2"]
    first = orjson.loads(next((logs / "_manifests" / "web2").glob("*.json")).read_bytes())
    body = first["manifest"]
    # A seal of a per-writer chain carries its writer's Merkle tree head (format 3).
    assert body["format"] == "auditcli-manifest/3" and body["writer"] == "web2"
    assert body["legacy"]["sequence"] == 5
    assert [f["name"] for f in body["files"]] == [f"date={DAY2}/web2.jsonl.gz"]
    key = integrity.load_public_key(legacy / "seal.key.pub")
    report = _verify(logs, public_keys=[key])
    assert report.ok, report.problems
    assert [(h.writer, h.chain, h.manifests) for h in report.hosts] == [
        (integrity.LEGACY_HOST, "none", 5),
        ("web1", "own", 1),
        ("web2", "own", 1),
    ]
    # the legacy chain cut back under the new chains shows
    max((logs / "_manifests").glob("*.json")).unlink()
    report = _verify(logs, public_keys=[key])
    kinds = [(p.kind, p.detail) for p in report.problems]
    assert any(k == "deleted manifest" and "legacy chain" in d for k, d in kinds), kinds
    # a legacy chain that is not there at all (a merged store): a note, not a problem
    for path in (logs / "_manifests").glob("*.json"):
        path.unlink()
    report = _verify(logs, public_keys=[key])
    assert report.ok and any("continue a legacy chain" in n for n in report.notes)


def test_seal_leaves_alone_a_chain_signed_by_another_key(tmp_path: Path) -> None:
    """Default `audit seal` on a store holding other hosts' chains (a merged copy) does not
    fork them; `--writer` picks a chain explicitly."""
    root = tmp_path / "logs"
    for name in ("alpha", "bravo"):
        store = AuditStore(root, writer_id=name)
        store.append([orjson.loads(line) for line in _entries(name, DAY1, 2).splitlines()])
    generate_keys(tmp_path / "a.key")
    generate_keys(tmp_path / "b.key")
    seal_writers(AuditStore(root, writer_id="x"), ["bravo"], signing_key=tmp_path / "b.key")
    chosen, skipped = integrity.default_writers(AuditStore(root), tmp_path / "a.key")
    assert (chosen, skipped) == (["alpha"], ["bravo"])
    host = tmp_path
    result = subprocess.run(
        [sys.executable, "-m", "auditcli", "seal", "--signing-key", str(tmp_path / "a.key")],
        env={**_env(host, "alpha"), "AUDIT_LOG_DIR": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "bravo not sealed: its chain is signed by another key" in result.stderr
    assert result.stdout.strip() == integrity.latest_manifest_hash(AuditStore(root), "alpha")
    assert len(list((root / "_manifests" / "bravo").glob("*.json"))) == 1
    only = subprocess.run(
        [
            sys.executable,
            "-m",
            "auditcli",
            "seal",
            "--writer",
            "bravo",
            "--signing-key",
            str(tmp_path / "b.key"),
        ],
        env={**_env(host, "alpha"), "AUDIT_LOG_DIR": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert only.returncode == 0, only.stderr
    assert len(list((root / "_manifests" / "bravo").glob("*.json"))) == 2
    assert len(list((root / "_manifests" / "alpha").glob("*.json"))) == 1


# ============================================================================ fleet file rules
def _two_writers(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """alpha signs with its key; bravo seals unsigned."""
    root = tmp_path / "logs"
    keys = {}
    for name in ("alpha", "bravo"):
        store = AuditStore(root, writer_id=name)
        store.append([orjson.loads(line) for line in _entries(name, DAY1, 3).splitlines()])
    generate_keys(tmp_path / "alpha.key")
    keys["alpha"] = tmp_path / "alpha.key"
    integrity.seal(AuditStore(root, writer_id="alpha"), signing_key=keys["alpha"])
    integrity.seal(AuditStore(root, writer_id="bravo"))
    return root, keys


def test_optional_unsigned_and_rotated_keys_in_the_fleet_file(tmp_path: Path) -> None:
    root, keys = _two_writers(tmp_path)
    fleet = tmp_path / "fleet.toml"
    base = (
        f'[writers.alpha]\npublic_key = "{keys["alpha"]}.pub"\n[writers.bravo]\nunsigned = true\n'
    )
    fleet.write_text(base + "[writers.charlie]\npublic_key = 'alpha.key.pub'\nrequired = false\n")
    report = _verify(root, fleet)
    assert report.ok, report.problems
    assert [(h.writer, h.signed, h.files) for h in report.hosts] == [
        ("alpha", "verified", 1),
        ("bravo", "unsigned", 1),
        ("charlie", "none", 0),
    ]
    # alpha rotates its key: the fleet file must list the new one too
    generate_keys(tmp_path / "alpha2.key")
    integrity.seal(AuditStore(root, writer_id="alpha"), signing_key=tmp_path / "alpha2.key")
    report = _verify(root, fleet)
    assert [(p.file.split("/")[1], p.kind) for p in report.problems] == [
        ("alpha", "wrong signing key")
    ]
    fleet.write_text(
        base.replace(
            f'"{keys["alpha"]}.pub"', f'["{keys["alpha"]}.pub", "{tmp_path}/alpha2.key.pub"]'
        )
    )
    assert _verify(root, fleet).ok


def test_an_unsigned_manifest_in_a_chain_the_fleet_file_signs_is_named(tmp_path: Path) -> None:
    root, keys = _two_writers(tmp_path)
    integrity.seal(AuditStore(root, writer_id="alpha"))  # a key-less forger appends
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'[writers.alpha]\npublic_key = "{keys["alpha"]}.pub"\n[writers.bravo]\nunsigned = true\n'
    )
    report = _verify(root, fleet)
    assert [(p.file.split("/")[1], p.kind) for p in report.problems] == [
        ("alpha", "unsigned manifest")
    ]


def test_max_seal_age_names_the_writer_that_stopped_sealing(tmp_path: Path) -> None:
    root, keys = _two_writers(tmp_path)
    time.sleep(0.01)  # alpha seals again later; bravo's newest seal is then older than that
    alpha = AuditStore(root, writer_id="alpha")
    later = integrity.seal(alpha, signing_key=keys["alpha"]).manifest.sealed_at
    report = _verify(root, max_seal_age_since=later)
    assert [(p.file, p.kind) for p in report.problems] == [("_manifests/bravo/", "stale seal")]
    assert "bravo" in report.problems[0].detail
    assert _verify(root, max_seal_age_since="2020-01-01T00:00:00.000Z").ok


def test_one_damaged_chain_does_not_stop_the_other_seals(tmp_path: Path) -> None:
    root, _ = _two_writers(tmp_path)
    newest = max((root / "_manifests" / "alpha").glob("*.json"))
    newest.write_bytes(b"{broken")
    result = subprocess.run(
        [sys.executable, "-m", "auditcli", "seal"],
        env={**_env(tmp_path, "bravo"), "AUDIT_LOG_DIR": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 5
    assert "error: alpha not sealed" in result.stderr and newest.name in result.stderr
    assert len(list((root / "_manifests" / "bravo").glob("*.json"))) == 2  # bravo sealed
    assert result.stdout.strip() == integrity.latest_manifest_hash(AuditStore(root), "bravo")
