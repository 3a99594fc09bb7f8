"""Evidence bundles: seals sign a Merkle tree head; `audit prove` writes bundles that
`audit verify-bundle` and the standalone docs/verify_bundle.py check; every tamper fails."""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditcli.integrity.merkle import Tree, leaf_hash
from auditcli.store import AuditStore

ROOT = Path(__file__).resolve().parent.parent
STANDALONE = ROOT / "docs" / "verify_bundle.py"
LEGACY = Path(__file__).resolve().parent / "data" / "legacy-store"
DAY, DAY2 = "2026-11-20", "2026-11-21"


def _entries(count: int, day: str, start: int = 0, action: str = "login") -> list[dict[str, Any]]:
    return [
        {
            "action": action,
            "actorId": f"u-{i}",
            "targetId": f"t-{i}",
            "organizationId": "org-1",
            "createdAt": f"{day}T08:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
        }
        for i in range(start, start + count)
    ]


@pytest.fixture
def key(tmp_path: Path, cli: Any) -> Path:
    path = tmp_path / "keys" / "seal.key"
    path.parent.mkdir()
    assert cli("keys", "generate", "--out", path).exit_code == 0
    return path


def _seal(cli: Any, key: Path | None) -> str:
    result = cli("seal", *(["--signing-key", str(key)] if key else []))
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def _store(root: Path, cli: Any, key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers over two days; sealed, grown, rotated (day 1 compressed), sealed again."""
    monkeypatch.setenv("AUDIT_LOG_DIR", str(root))
    AuditStore(root, writer_id="host1").append(_entries(30, DAY))
    AuditStore(root, writer_id="host2").append(_entries(20, DAY, 100, "role_updated"))
    _seal(cli, key)
    AuditStore(root, writer_id="host1").append(_entries(15, DAY2))
    AuditStore(root, writer_id="host2").append(_entries(10, DAY2, 200))
    _seal(cli, key)
    assert cli("rotate", "--compress-after", "1").exit_code == 0
    AuditStore(root, writer_id="host2").append(_entries(5, DAY2, 300, "role_updated"))
    _seal(cli, key)


@pytest.fixture
def store_a(log_dir: Path, cli: Any, key: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _store(log_dir, cli, key, monkeypatch)
    assert list(log_dir.glob("date=*/*.jsonl.gz")), "the rotation compressed nothing"
    return log_dir


def _prove(cli: Any, key: Path, out: Path, *args: str) -> dict[str, Any]:
    result = cli("prove", "--signing-key", str(key), "-o", str(out), *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(out.read_text())


def _check(cli: Any, bundle: dict[str, Any] | Path, path: Path, key: Path | None) -> Any:
    if isinstance(bundle, dict):
        path.write_text(json.dumps(bundle))
    args = ["--public-key", str(key) + ".pub"] if key else []
    return cli("verify-bundle", str(path), "--format", "json", *args)


def _standalone(path: Path, key: Path | None) -> subprocess.CompletedProcess[str]:
    args = ["--public-key", str(key) + ".pub"] if key else []
    return subprocess.run(
        [sys.executable, "-I", str(STANDALONE), str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _stored_lines(root: Path) -> set[str]:
    import gzip

    lines = set()
    for path in root.glob("date=*/*.jsonl*"):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines.update(line.decode() for line in data.splitlines())
    return lines


class TestRoundTrip:
    def test_a_bundle_of_a_query_verifies_with_both_verifiers(
        self, store_a: Path, cli: Any, key: Path, tmp_path: Path
    ) -> None:
        out = tmp_path / "bundle.json"
        bundle = _prove(cli, key, out, "--action", "role_updated")
        count = cli("query", "--action", "role_updated", "--count").stdout.strip()
        assert len(bundle["entries"]) == int(count) == 25
        # Entries exactly as stored, in leaf order, from both writers and a compressed day.
        assert {e["stored"] for e in bundle["entries"]} <= _stored_lines(store_a)
        indexes = [e["leafIndex"] for e in bundle["entries"]]
        assert indexes == sorted(indexes)
        segments = {e["file"].split("/")[1].split(".")[0] for e in bundle["entries"]}
        assert segments == {"host2", "host2+2"}  # a day written to again after its rotation
        assert any(e["file"].startswith(f"date={DAY}") for e in bundle["entries"])
        result = _check(cli, out, out, key)
        assert result.exit_code == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] and report["keyTrusted"] and len(report["entries"]) == 25
        assert all(e["ok"] for e in report["entries"])
        run = _standalone(out, key)
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.count(": ok") == 25 and "bundle: OK" in run.stdout
        assert "auditcli" not in STANDALONE.read_text().split('"""', 2)[2].replace(
            "auditcli-", ""
        ).replace("auditcli evidence", "")

    def test_every_entry_of_the_store_proves(
        self, store_a: Path, cli: Any, key: Path, tmp_path: Path
    ) -> None:
        bundle = _prove(cli, key, tmp_path / "all.json")
        assert len(bundle["entries"]) == 30 + 20 + 15 + 10 + 5
        # One tree per writer: host1's 45 entries (head 0), then host2's 35 (head 1).
        heads = json.loads(bundle["statement"])["heads"]
        assert [(h["writer"], h["treeSize"]) for h in heads] == [("host1", 45), ("host2", 35)]
        assert [(e["head"], e["leafIndex"]) for e in bundle["entries"]] == [
            *((0, i) for i in range(45)),
            *((1, i) for i in range(35)),
        ]
        assert len(bundle["manifests"]) == 2
        # The cover page says what it proves and how to check it.
        cover = "\n".join(bundle["cover"])
        assert "80 audit log entries" in cover and "verify-bundle" in cover
        assert "writer host1" in cover and "writer host2" in cover
        assert _standalone(tmp_path / "all.json", key).returncode == 0
        assert _check(cli, tmp_path / "all.json", tmp_path / "all.json", key).exit_code == 0

    def test_the_derived_leaf_files_are_rebuilt_and_checked(
        self, store_a: Path, cli: Any, key: Path, tmp_path: Path
    ) -> None:
        leaves = sorted((store_a / "_index" / "merkle").glob("*/*.leaves"))
        # One per writer's seal that added entries: host1 twice, host2 three times.
        assert [p.parent.name for p in leaves] == ["host1"] * 2 + ["host2"] * 3
        leaves[0].write_bytes(b"\x00" * leaves[0].stat().st_size)  # a wrong derived file
        result = cli("verify", "--public-key", f"{key}.pub")
        assert result.exit_code == 0, result.stdout + result.stderr
        assert orjson.loads(result.stdout)["treeHeads"] == 6  # recomputed, without a note
        assert "tree head" not in result.stderr
        assert leaves[0].read_bytes() != b"\x00" * leaves[0].stat().st_size  # rewritten
        shutil.rmtree(store_a / "_index")  # deleting derived data loses nothing
        bundle = _prove(cli, key, tmp_path / "b.json", "--actor-id", "u-103")
        assert len(bundle["entries"]) == 1
        assert _check(cli, tmp_path / "b.json", tmp_path / "b.json", key).exit_code == 0

    def test_unsealed_entries_are_refused_not_left_out(
        self, store_a: Path, cli: Any, key: Path, tmp_path: Path
    ) -> None:
        AuditStore(store_a, writer_id="host1").append(_entries(1, DAY2, 900, "role_updated"))
        result = cli("prove", "--signing-key", str(key), "--action", "role_updated")
        assert result.exit_code == 1
        assert "1 of the 26 selected entries are not covered" in result.stderr
        assert result.stdout == ""

    def test_prove_needs_the_signing_key(self, store_a: Path, cli: Any) -> None:
        result = cli("prove", "--action", "role_updated")
        assert result.exit_code == 2 and "signing key" in result.stderr

    def test_manifests_without_a_tree_keep_verifying(
        self, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A legacy flat chain (format 1) and per-writer seals without a tree (format 2, as the
        release before trees wrote them) keep verifying; the first seal with a tree starts each
        writer's tree over all of that writer's lines, and lists all its files."""
        seal_module = importlib.import_module("auditcli.integrity.seal")

        shutil.copytree(LEGACY, tmp_path / "legacy")
        root, key = tmp_path / "legacy" / "logs", tmp_path / "legacy" / "seal.key"
        monkeypatch.setenv("AUDIT_LOG_DIR", str(root))
        assert cli("verify", "--public-key", f"{key}.pub").exit_code == 0
        with monkeypatch.context() as patched:  # the seal of the release before trees
            patched.setattr(seal_module.TreeBuilder, "fields", lambda self: {})
            _seal(cli, key)
        chains = sorted(p.parent.name for p in root.glob("_manifests/*/0*.json"))
        assert chains == ["web1", "web2"]
        for path in root.glob("_manifests/*/0*.json"):
            assert orjson.loads(path.read_bytes())["manifest"]["format"] == "auditcli-manifest/2"
        AuditStore(root, writer_id="web2").append(_entries(2, DAY2, 50))
        _seal(cli, key)
        heads = {}
        for writer in ("web1", "web2"):
            newest = sorted((root / "_manifests" / writer).glob("0*.json"))[-1]
            body = orjson.loads(newest.read_bytes())["manifest"]
            assert body["format"] == "auditcli-manifest/3" and body["sequence"] == 2
            assert body["merkle"]["extends"] is None  # starts over everything
            assert body["totals"]["changed"] == body["totals"]["files"]  # lists every file
            heads[writer] = body["merkle"]["size"]
        assert heads == {"web1": 4, "web2": 5}
        verified = cli("verify", "--public-key", f"{key}.pub")
        assert verified.exit_code == 0, verified.stdout + verified.stderr
        assert orjson.loads(verified.stdout)["treeHeads"] == 2
        bundle = _prove(cli, key, tmp_path / "b.json")
        assert len(bundle["entries"]) == 9
        assert _check(cli, tmp_path / "b.json", tmp_path / "b.json", key).exit_code == 0


class TestTampering:
    @pytest.fixture
    def bundle(self, store_a: Path, cli: Any, key: Path, tmp_path: Path) -> dict[str, Any]:
        return _prove(cli, key, tmp_path / "good.json", "--action", "role_updated")

    def _fails(self, cli: Any, bundle: dict[str, Any], tmp_path: Path, key: Path) -> str:
        path = tmp_path / "bad.json"
        result = _check(cli, bundle, path, key)
        assert result.exit_code == 5, result.stdout + result.stderr
        run = _standalone(path, key)
        assert run.returncode == 5, run.stdout + run.stderr
        return result.stdout

    def test_an_edited_field(self, bundle: dict, cli: Any, key: Path, tmp_path: Path) -> None:
        bundle["entries"][3]["stored"] = bundle["entries"][3]["stored"].replace("u-", "u-9", 1)
        report = json.loads(self._fails(cli, bundle, tmp_path, key))
        assert [e["ok"] for e in report["entries"]].count(False) == 1
        assert report["entries"][3]["ok"] is False

    def test_two_entries_swapped(self, bundle: dict, cli: Any, key: Path, tmp_path: Path) -> None:
        entries = bundle["entries"]
        entries[1], entries[2] = entries[2], entries[1]
        self._fails(cli, bundle, tmp_path, key)

    def test_two_stored_lines_swapped(
        self, bundle: dict, cli: Any, key: Path, tmp_path: Path
    ) -> None:
        entries = bundle["entries"]
        entries[1]["stored"], entries[2]["stored"] = entries[2]["stored"], entries[1]["stored"]
        self._fails(cli, bundle, tmp_path, key)

    def test_an_entry_dropped(self, bundle: dict, cli: Any, key: Path, tmp_path: Path) -> None:
        del bundle["entries"][5]
        self._fails(cli, bundle, tmp_path, key)

    def test_an_entry_dropped_from_the_statement_too(
        self, bundle: dict, cli: Any, key: Path, tmp_path: Path
    ) -> None:
        del bundle["entries"][5]
        statement = json.loads(bundle["statement"])
        del statement["entries"][5]
        bundle["statement"] = json.dumps(statement, separators=(",", ":"), sort_keys=True)
        assert "signature" in self._fails(cli, bundle, tmp_path, key)
        bundle["statementSignature"] = None  # stripping the signature does not help
        assert "not signed" in self._fails(cli, bundle, tmp_path, key)

    def test_a_forged_entry_added(self, bundle: dict, cli: Any, key: Path, tmp_path: Path) -> None:
        forged = copy.deepcopy(bundle["entries"][-1])
        forged["stored"] = forged["stored"].replace("role_updated", "login")
        forged["leafIndex"] += 1
        bundle["entries"].append(forged)
        self._fails(cli, bundle, tmp_path, key)

    def test_proofs_spliced_from_another_store(
        self,
        bundle: dict,
        cli: Any,
        key: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        other_root = tmp_path / "other"
        _store(other_root, cli, key, monkeypatch)  # same key, same shape, other entries
        other = _prove(cli, key, tmp_path / "other.json", "--action", "role_updated")
        spliced = copy.deepcopy(bundle)
        spliced["entries"][0] = other["entries"][0]
        self._fails(cli, spliced, tmp_path, key)
        # The other store's whole entry list against this store's signed head.
        spliced = copy.deepcopy(bundle)
        spliced["entries"], spliced["statement"] = other["entries"], other["statement"]
        spliced["statementSignature"] = other["statementSignature"]
        self._fails(cli, spliced, tmp_path, key)

    def test_a_bundle_from_another_stores_key(
        self,
        bundle: dict,
        cli: Any,
        key: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        other_key = tmp_path / "keys" / "other.key"
        assert cli("keys", "generate", "--out", other_key).exit_code == 0
        _store(tmp_path / "other", cli, other_key, monkeypatch)
        other = _prove(cli, other_key, tmp_path / "other.json", "--action", "role_updated")
        # Valid in itself (its own key), but not against this store's key.
        assert _check(cli, other, tmp_path / "o.json", other_key).exit_code == 0
        out = self._fails(cli, other, tmp_path, key)
        assert "not signed by a given --public-key" in out

    def test_an_older_manifest_replayed(
        self, bundle: dict, store_a: Path, cli: Any, key: Path, tmp_path: Path
    ) -> None:
        oldest = sorted((store_a / "_manifests" / "host2").glob("0*.json"))[0]
        first = orjson.loads(oldest.read_bytes())
        replayed = copy.deepcopy(bundle)
        replayed["manifests"] = [
            {
                "hash": first["hash"],
                "body": orjson.dumps(first["manifest"], option=orjson.OPT_SORT_KEYS).decode(),
                "signature": first["signature"],
            }
        ]
        self._fails(cli, replayed, tmp_path, key)

    def test_an_edited_manifest(self, bundle: dict, cli: Any, key: Path, tmp_path: Path) -> None:
        body = json.loads(bundle["manifests"][0]["body"])
        body["merkle"]["size"] += 1
        bundle["manifests"][0]["body"] = json.dumps(body, separators=(",", ":"), sort_keys=True)
        bundle["manifests"][0]["hash"] = (
            "sha256:" + hashlib.sha256(bundle["manifests"][0]["body"].encode()).hexdigest()
        )
        self._fails(cli, bundle, tmp_path, key)

    def test_a_path_edited(self, bundle: dict, cli: Any, key: Path, tmp_path: Path) -> None:
        path = bundle["entries"][0]["path"]
        path[-1] = hashlib.sha256(bytes.fromhex(path[-1])).hexdigest()
        self._fails(cli, bundle, tmp_path, key)


class TestConsistency:
    def test_growth_between_two_seals(
        self, store_a: Path, cli: Any, key: Path, tmp_path: Path
    ) -> None:
        out = tmp_path / "c.json"
        result = cli("prove", "--consistency", "host2:1", "host2:3", "-o", str(out))
        assert result.exit_code == 0, result.stderr
        bundle = json.loads(out.read_text())
        assert bundle["consistency"]["first"]["treeSize"] == 20
        assert bundle["consistency"]["second"]["treeSize"] == 35
        assert _check(cli, out, out, key).exit_code == 0
        assert _standalone(out, key).returncode == 0
        first_hash = bundle["consistency"]["first"]["manifest"]
        ok = cli("verify-bundle", str(out), "--public-key", f"{key}.pub", "--anchor", first_hash)
        assert ok.exit_code == 0
        kept_root = bundle["consistency"]["first"]["root"]
        assert cli("verify-bundle", str(out), "--anchor", kept_root).exit_code == 0
        bad = cli("verify-bundle", str(out), "--anchor", "sha256:" + "0" * 64)
        assert bad.exit_code == 5
        # By hash too, and a seal against itself.
        second_hash = bundle["consistency"]["second"]["manifest"]
        same = cli("prove", "--consistency", second_hash, second_hash, "-o", str(out), "--force")
        assert same.exit_code == 0 and _check(cli, out, out, key).exit_code == 0

    def test_a_rewritten_history_is_rejected(
        self,
        store_a: Path,
        cli: Any,
        key: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        out = tmp_path / "c.json"
        assert cli("prove", "--consistency", "host2:1", "host2:3", "-o", str(out)).exit_code == 0
        honest = json.loads(out.read_text())
        # The same history, rewritten: one early entry differs, everything re-sealed with the
        # same key. Its own proof verifies, but not from the head an auditor kept.
        rewritten = tmp_path / "rewritten"
        monkeypatch.setenv("AUDIT_LOG_DIR", str(rewritten))
        AuditStore(rewritten, writer_id="host1").append(_entries(30, DAY, 1))
        AuditStore(rewritten, writer_id="host2").append(_entries(20, DAY, 100, "role_updated"))
        _seal(cli, key)
        AuditStore(rewritten, writer_id="host1").append(_entries(30, DAY2))
        _seal(cli, key)
        other = tmp_path / "o.json"
        assert cli("prove", "--consistency", "host1:1", "host1:2", "-o", str(other)).exit_code == 0
        assert _check(cli, other, other, key).exit_code == 0
        kept = honest["consistency"]["first"]["manifest"]
        assert cli("verify-bundle", str(other), "--anchor", kept).exit_code == 5
        # Splicing the kept head into the rewritten proof fails the proof itself.
        forged = json.loads(other.read_text())
        forged["manifests"][0] = honest["manifests"][0]
        forged["consistency"]["first"] = honest["consistency"]["first"]
        statement = json.loads(forged["statement"])
        statement["first"] = honest["consistency"]["first"]
        forged["statement"] = json.dumps(statement)
        result = _check(cli, forged, tmp_path / "f.json", key)
        assert result.exit_code == 5
        assert "does not extend" in result.stdout
        assert _standalone(tmp_path / "f.json", key).returncode == 5

    def test_a_store_edited_after_its_seal_cannot_prove(
        self, store_a: Path, cli: Any, key: Path
    ) -> None:
        path = store_a / f"date={DAY2}" / "host2+2.jsonl"
        data = path.read_bytes()
        path.write_bytes(data.replace(b'"t-300"', b'"t-666"', 1))
        # The edited entry is not the sealed one: it cannot be proved.
        result = cli("prove", "--signing-key", str(key), "--target-id", "t-666")
        assert (
            result.exit_code == 1 and "not covered by their writer's newest seal" in result.stderr
        )
        assert cli("verify").exit_code == 5
        # Without the derived leaves, the heads are rebuilt from the entries: they no longer
        # give the signed head, and prove refuses rather than prove something else.
        shutil.rmtree(store_a / "_index")
        result = cli("prove", "--consistency", "host2:1", "host2:3")
        assert result.exit_code == 5 and "no longer give its tree head" in result.stderr


def test_leaves_are_the_stored_lines(store_a: Path) -> None:
    """The tree head in each writer's newest manifest is RFC 9162 over that writer's lines in
    the documented order: each of its seals' `appended` ranges, one after the other."""
    import gzip

    for writer, size in (("host1", 45), ("host2", 35)):
        manifests = sorted((store_a / "_manifests" / writer).glob("0*.json"))
        leaves = []
        for path in manifests:
            body = orjson.loads(path.read_bytes())["manifest"]
            for name, start, end in body["merkle"]["appended"]:
                assert name.split("/")[1].startswith(writer)  # only the writer's own files
                file = store_a / name
                if not file.exists():
                    file = file.with_name(file.name + ".gz")
                data = file.read_bytes()
                lines = (gzip.decompress(data) if file.suffix == ".gz" else data).splitlines()
                leaves += [leaf_hash(line) for line in lines[start:end]]
        head = orjson.loads(manifests[-1].read_bytes())["manifest"]["merkle"]
        assert head["size"] == len(leaves) == size
        assert Tree(b"".join(leaves)).root().hex() == head["root"][7:]


def test_retention_keeps_the_tree_provable(
    store_a: Path, cli: Any, key: Path, tmp_path: Path
) -> None:
    """Days deleted under a retention receipt stay in the tree (their kept leaf hashes check
    the signed heads); entries sealed later still prove."""
    assert (
        cli(
            "record",
            "role_updated",
            "--actor-id",
            "u-new",
            "--org-id",
            "org-1",
            "--target-id",
            "t-new",
        ).exit_code
        == 0
    )
    _seal(cli, key)
    result = cli("rotate", "--delete-after", "1", "--signing-key", str(key))
    assert result.exit_code == 0, result.stderr
    assert not list(store_a.glob(f"date={DAY}")) and not list(store_a.glob(f"date={DAY2}"))
    # A late entry re-creates a deleted day under the same file name: its lines are new.
    late = _entries(1, DAY, 700)
    late[0]["actorId"] = "u-late"
    AuditStore(store_a, writer_id="host1").append(late)
    _seal(cli, key)
    verified = cli("verify", "--public-key", f"{key}.pub")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert "cover files deleted since; checked from the kept leaf hashes" in verified.stderr
    bundle = _prove(cli, key, tmp_path / "b.json", "--actor-id", "u-new")
    # `audit record` wrote as testhost: the first leaf of testhost's own tree.
    assert [(e["file"].split("/")[1], e["leafIndex"]) for e in bundle["entries"]] == [
        ("testhost.jsonl", 0)
    ]
    assert _check(cli, tmp_path / "b.json", tmp_path / "b.json", key).exit_code == 0
    late_bundle = _prove(cli, key, tmp_path / "late.json", "--actor-id", "u-late")
    assert [e["leafIndex"] for e in late_bundle["entries"]] == [45]  # after host1's 45
    assert late_bundle["entries"][0]["file"] == f"date={DAY}/host1.jsonl"
    assert _check(cli, tmp_path / "late.json", tmp_path / "late.json", key).exit_code == 0
    # The leaf hashes of deleted files exist only as derived data: without them the tree
    # cannot be rebuilt, and prove says so instead of proving something else.
    shutil.rmtree(store_a / "_index")
    result = cli("prove", "--signing-key", str(key), "--actor-id", "u-new")
    assert result.exit_code == 5 and "cannot be recomputed" in result.stderr
    # Retention kept them before deleting: losing them since is a problem, not a note.
    verified = cli("verify", "--public-key", f"{key}.pub")
    assert verified.exit_code == 5, verified.stdout + verified.stderr
    assert "kept leaf hashes (_index/merkle) are gone" in verified.stdout


def test_bad_input_is_one_clear_line(store_a: Path, cli: Any, tmp_path: Path) -> None:
    unknown = cli("prove", "--consistency", "host2:1", "host2:99")
    assert unknown.exit_code == 2 and "no manifest '99'" in unknown.stderr
    mixed = cli("prove", "--consistency", "host1:1", "host1:2", "--action", "login")
    assert mixed.exit_code == 2 and "takes no filters" in mixed.stderr
    backwards = cli("prove", "--consistency", "host2:3", "host2:1")
    assert backwards.exit_code == 2 and "comes after" in backwards.stderr
    missing = cli("verify-bundle", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    result = cli("verify-bundle", str(garbage))
    assert result.exit_code == 5 and "not a bundle" in result.stderr
    assert _standalone(garbage, None).returncode == 5


def test_any_single_change_to_the_evidence_fails(
    store_a: Path, cli: Any, key: Path, tmp_path: Path
) -> None:
    """One character changed anywhere in what a bundle proves (entries, paths, statement,
    manifests, signatures) fails the check, and never crashes it."""
    import random

    from auditcli.errors import IntegrityError
    from auditcli.integrity.bundle_check import verify_bundle
    from auditcli.integrity.keys import load_public_key

    good = _prove(cli, key, tmp_path / "b.json", "--action", "role_updated")
    public = [load_public_key(f"{key}.pub")]
    assert verify_bundle(json.dumps(good).encode(), public).ok
    targets: list[tuple[Any, Any]] = [(good, "statement"), (good, "keyId")]
    for manifest in good["manifests"]:
        targets += [(manifest, "hash"), (manifest, "body"), (manifest["signature"], "value")]
    for entry in good["entries"]:
        targets += [(entry, "stored"), (entry, "file"), (entry, "line"), (entry, "leafIndex")]
        targets.append((entry, "head"))
        targets += [(entry["path"], i) for i in range(len(entry["path"]))]
    rng = random.Random(16)
    for _ in range(150):
        container, slot = rng.choice(targets)
        original = container[slot]
        if isinstance(original, int):
            container[slot] = original + rng.choice([-1, 1])
        else:
            at = rng.randrange(len(original))
            replacement = rng.choice([c for c in '0123456789abcdef{}\\"' if c != original[at]])
            container[slot] = original[:at] + replacement + original[at + 1 :]
        try:
            report = verify_bundle(json.dumps(good).encode(), public)
        except IntegrityError:
            pass
        else:
            assert not report.ok, (slot, container[slot])
        container[slot] = original
    assert verify_bundle(json.dumps(good).encode(), public).ok


def test_the_anchor_is_the_proved_from_head_whatever_the_order(
    store_a: Path, cli: Any, key: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c.json"
    assert cli("prove", "--consistency", "host2:1", "host2:3", "-o", str(out)).exit_code == 0
    bundle = json.loads(out.read_text())
    later = bundle["consistency"]["second"]["manifest"]
    bundle["manifests"].reverse()  # the later manifest listed first
    result = _check(cli, bundle, tmp_path / "r.json", key)
    assert result.exit_code == 0  # the order of the list does not matter to the proof
    report = json.loads(result.stdout)
    assert [m["sequence"] for m in report["manifests"]] == [1, 3]
    anchored = cli("verify-bundle", str(tmp_path / "r.json"), "--anchor", later)
    assert anchored.exit_code == 5  # but the later head is not the one proved from
    run = subprocess.run(
        [sys.executable, "-I", str(STANDALONE), str(tmp_path / "r.json"), "--anchor", later],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 5, run.stdout


def test_prove_before_any_tree_says_to_seal(log_dir: Path, cli: Any, key: Path) -> None:
    AuditStore(log_dir, writer_id="host1").append(_entries(3, DAY))
    result = cli("prove", "--signing-key", str(key))
    assert result.exit_code == 1 and "no seal has a Merkle tree head yet" in result.stderr
    assert result.stdout == ""


def test_a_fleet_bundle_has_one_head_per_host_each_signed_by_its_key(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hosts seal their own stores with their own keys; the central copy (plain file copy)
    proves entries of both: one head per host, each manifest checked against its host's key,
    the list of entries signed by the prover's (one of them)."""
    keys = {}
    for host in ("web1", "web2"):
        keys[host] = tmp_path / "keys" / f"{host}.key"
        keys[host].parent.mkdir(exist_ok=True)
        assert cli("keys", "generate", "--out", keys[host]).exit_code == 0
        root = tmp_path / host
        monkeypatch.setenv("AUDIT_LOG_DIR", str(root))
        AuditStore(root, writer_id=host).append(_entries(5, DAY, 0, "role_updated"))
        _seal(cli, keys[host])
        AuditStore(root, writer_id=host).append(_entries(3, DAY2, 10, "role_updated"))
        _seal(cli, keys[host])
        shutil.copytree(root, tmp_path / "central", dirs_exist_ok=True)
    central = tmp_path / "central"
    monkeypatch.setenv("AUDIT_LOG_DIR", str(central))
    assert cli("verify").exit_code == 0
    out = tmp_path / "fleet.json"
    bundle = _prove(cli, keys["web1"], out, "--action", "role_updated")
    heads = json.loads(bundle["statement"])["heads"]
    assert [(h["writer"], h["treeSize"]) for h in heads] == [("web1", 8), ("web2", 8)]
    both = ["--public-key", f"{keys['web1']}.pub", "--public-key", f"{keys['web2']}.pub"]
    result = cli("verify-bundle", str(out), "--format", "json", *both)
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert len(report["entries"]) == 16 and len(report["manifestKeyIds"]) == 2
    run = subprocess.run(
        [sys.executable, "-I", str(STANDALONE), str(out), *both],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # Without web2's key, web2's head proves nothing: both verifiers fail.
    only = cli("verify-bundle", str(out), "--public-key", f"{keys['web1']}.pub")
    assert only.exit_code == 5 and "not signed by a given --public-key" in only.stderr
    assert _standalone(out, keys["web1"]).returncode == 5
    # Consistency proofs name a writer's manifest: a bare number is ambiguous across writers,
    # WRITER:N and hashes are not; two writers' manifests never mix.
    ambiguous = cli("prove", "--consistency", "1", "2")
    assert ambiguous.exit_code == 2 and "ambiguous" in ambiguous.stderr
    mixed = cli("prove", "--consistency", "web1:1", "web2:2")
    assert mixed.exit_code == 2 and "each writer has its own tree" in mixed.stderr
    growth = tmp_path / "growth.json"
    assert cli("prove", "--consistency", "web2:1", "web2:2", "-o", str(growth)).exit_code == 0
    proof = json.loads(growth.read_text())["consistency"]
    assert (proof["first"]["treeSize"], proof["second"]["treeSize"]) == (5, 8)
    by_hash = cli("prove", "--consistency", proof["first"]["manifest"], proof["second"]["manifest"])
    assert by_hash.exit_code == 0
    checked = cli("verify-bundle", str(growth), "--public-key", f"{keys['web2']}.pub")
    assert checked.exit_code == 0, checked.stdout + checked.stderr


def test_prove_uses_kept_nodes_and_never_trusts_them(
    log_dir: Path, cli: Any, key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prove` keeps one level of the tree's nodes (so a proof hashes a few leaves, not the
    whole tree); a forged node or leaf hash is caught by the signed root and rebuilt, and the
    bundle still verifies."""
    monkeypatch.setenv("AUDIT_LOG_DIR", str(log_dir))
    AuditStore(log_dir, writer_id="host1").append(_entries(300, DAY))
    _seal(cli, key)
    AuditStore(log_dir, writer_id="host1").append(_entries(100, DAY2, 300))
    _seal(cli, key)
    merkle = log_dir / "_index" / "merkle" / "host1"
    bundle = _prove(cli, key, tmp_path / "a.json", "--actor-id", "u-5")
    (nodes,) = merkle.glob("tree-*.nodes")
    assert nodes.stat().st_size == (400 >> 6) * 32  # one node per 64 leaves
    good = nodes.read_bytes()
    nodes.write_bytes(b"\x07" * len(good))  # forged kept nodes
    again = _prove(cli, key, tmp_path / "b.json", "--actor-id", "u-5")
    assert again["entries"] == bundle["entries"] and nodes.read_bytes() == good
    # A forged leaf hash next to u-5's leaf (index 5, under a kept node): the audit path
    # made from it fails the signed root, so prove checks every leaf file and rebuilds.
    first = min(merkle.glob("*.leaves"))
    data = bytearray(first.read_bytes())
    data[4 * 32 : 5 * 32] = b"\x01" * 32
    first.write_bytes(bytes(data))
    forged = _prove(cli, key, tmp_path / "c.json", "--actor-id", "u-5")
    assert forged["entries"] == bundle["entries"]
    assert first.read_bytes()[4 * 32 : 5 * 32] == leaf_hash(
        (log_dir / f"date={DAY}" / "host1.jsonl").read_bytes().split(b"\n")[4]
    )
    for name in ("a", "c"):
        assert _check(cli, tmp_path / f"{name}.json", tmp_path / f"{name}.json", key).exit_code == 0
    growth = cli("prove", "--consistency", "host1:1", "host1:2", "-o", str(tmp_path / "g.json"))
    assert growth.exit_code == 0, growth.stderr
    assert _check(cli, tmp_path / "g.json", tmp_path / "g.json", key).exit_code == 0


def test_retention_keeps_the_leaf_hashes_it_is_about_to_delete(
    store_a: Path, cli: Any, key: Path, tmp_path: Path
) -> None:
    """Deleting days under a receipt first writes (and checks) the kept leaf hashes of every
    head covering them, even when `_index/` was deleted before: later proofs still work."""
    shutil.rmtree(store_a / "_index")
    recorded = cli("record", "login", "--actor-id", "u-new", "--org-id", "org-1")
    assert recorded.exit_code == 0, recorded.stderr
    _seal(cli, key)
    result = cli("rotate", "--delete-after", "1", "--signing-key", str(key))
    assert result.exit_code == 0, result.stderr
    assert not list(store_a.glob(f"date={DAY}")) and not list(store_a.glob(f"date={DAY2}"))
    kept = sorted(p.parent.name for p in (store_a / "_index" / "merkle").glob("*/*.leaves"))
    # Every head covering a deleted file, and the last seal's (of testhost, `record`'s writer).
    assert kept == ["host1"] * 2 + ["host2"] * 3 + ["testhost"]
    late = _entries(1, DAY, 700, "role_updated")  # a late entry: host2's tree goes on
    AuditStore(store_a, writer_id="host2").append(late)
    _seal(cli, key)
    bundle = _prove(cli, key, tmp_path / "b.json", "--action", "role_updated")
    assert [e["leafIndex"] for e in bundle["entries"]] == [35]  # after the 35 deleted
    assert _check(cli, tmp_path / "b.json", tmp_path / "b.json", key).exit_code == 0
    verified = cli("verify", "--public-key", f"{key}.pub")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert "checked from the kept leaf hashes" in verified.stderr
    # A forged kept leaf file is caught by the signed head it no longer gives.
    forged = min((store_a / "_index" / "merkle" / "host2").glob("*.leaves"))
    forged.write_bytes(b"\x02" * forged.stat().st_size)
    verified = cli("verify", "--public-key", f"{key}.pub")
    assert verified.exit_code == 5 and "no longer give its tree head" in verified.stdout
    refused = cli("prove", "--signing-key", str(key), "--action", "role_updated")
    assert refused.exit_code == 5 and "cannot be recomputed" in refused.stderr


def test_a_copy_that_kept_receipted_files_checks_them_without_kept_leaves(
    store_a: Path, cli: Any, key: Path
) -> None:
    """A fleet's central copy keeps the files a host's retention deleted (and no `_index/`):
    the heads covering them are checked from those files, not reported as unprovable."""
    from auditcli.integrity import partition_records, write_receipt

    store = AuditStore(store_a, writer_id="host1")
    write_receipt(store, DAY, partition_records(store, DAY), "retention", signing_key=key)
    shutil.rmtree(store_a / "_index")  # the files stay, as at the central copy
    verified = cli("verify", "--public-key", f"{key}.pub", "--format", "json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert orjson.loads(verified.stdout)["treeHeads"] == 6
    assert "deleted since" not in verified.stderr  # checked from the files, not kept leaves


def test_a_seal_killed_while_it_writes_its_leaves_leaves_nothing_behind(
    log_dir: Path, cli: Any, key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 while the seal's leaf file is written (held just before its rename): no
    manifest, and the next seal removes the dead process's temporary file."""
    monkeypatch.setenv("AUDIT_LOG_DIR", str(log_dir))
    AuditStore(log_dir, writer_id="host1").append(_entries(50, DAY))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "from auditcli.integrity import seal\n"
            "from auditcli.store import AuditStore\n"
            "replace = os.replace\n"
            "def held(src, dst, *args, **kwargs):\n"
            "    if str(dst).endswith('.leaves'):\n"
            "        print('writing', flush=True)\n"
            "        time.sleep(60)\n"
            "    return replace(src, dst, *args, **kwargs)\n"
            "os.replace = held\n"
            "seal(AuditStore(sys.argv[1], writer_id='host1'), signing_key=sys.argv[2])\n",
            str(log_dir),
            str(key),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "writing\n"
    finally:
        child.kill()  # SIGKILL
        child.wait(timeout=30)
    merkle = log_dir / "_index" / "merkle" / "host1"
    assert [p.name.startswith(".leaves.") for p in merkle.iterdir()] == [True]
    assert not list(log_dir.glob("_manifests/host1/0*.json"))
    _seal(cli, key)
    assert [p.suffix for p in merkle.iterdir()] == [".leaves"]
    verified = cli("verify", "--public-key", f"{key}.pub")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
