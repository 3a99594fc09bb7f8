"""RFC 3161 timestamps: `audit seal --tsa` against a real local TSA (OpenSSL's
`openssl ts -reply` behind a small HTTP handler on 127.0.0.1, with a CA made here), and
`audit verify --tsa-ca` accepting good tokens and rejecting wrong ones.

The TSA replies without `-chain`: OpenSSL writes a chain's certificates in chain order, not in
the DER order a SET OF needs, and rfc3161-client (strict DER) refuses such a token."""

from __future__ import annotations

import datetime
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from auditcli.store import AuditStore

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(path: Path, cert: x509.Certificate, key: Any) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_tsa(directory: Path, label: str) -> Path:
    """A test CA and a TSA certificate it issues (EKU timeStamping, critical); returns the dir
    holding ca.crt, tsa.crt, tsa.key and an `openssl ts` config."""
    directory.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} test CA"))
        .issuer_name(_name(f"{label} test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} test TSA"))
        .issuer_name(ca.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _pem(directory / "ca", ca, ca_key)
    _pem(directory / "tsa", tsa, tsa_key)
    (directory / "serial").write_text("01\n")
    (directory / "openssl.cnf").write_text(
        "[ tsa ]\ndefault_tsa = tsa_config\n\n[ tsa_config ]\n"
        f"dir = {directory}\nserial = $dir/serial\ncrypto_device = builtin\n"
        "signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256, sha512\n"
        "accuracy = secs:1\nordering = yes\ntsa_name = yes\n"
        "ess_cert_id_chain = no\ness_cert_id_alg = sha256\n"
    )
    return directory


class _TsaHandler(http.server.BaseHTTPRequestHandler):
    directory: Path
    lock = threading.Lock()

    def do_POST(self) -> None:
        query = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:  # one `openssl ts` at a time: they share the serial file
            path = self.directory / "query.tsq"
            path.write_bytes(query)
            out = self.directory / "reply.tsr"
            subprocess.run(
                [
                    "openssl",
                    "ts",
                    "-reply",
                    "-config",
                    str(self.directory / "openssl.cnf"),
                    "-queryfile",
                    str(path),
                    "-signer",
                    str(self.directory / "tsa.crt"),
                    "-inkey",
                    str(self.directory / "tsa.key"),
                    "-out",
                    str(out),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            reply = out.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running TSA: its URL and the directory with its ca.crt."""
    directory = make_tsa(tmp_path / "tsa", "good")
    handler = type("Handler", (_TsaHandler,), {"directory": directory})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", directory
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours proxy variables, even for 127.0.0.1: the local TSA is reached directly."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _record(root: Path) -> None:
    AuditStore(root, writer_id="host1").append(
        [{"action": "login", "actorId": "u-1", "organizationId": "o-1"}]
    )


def test_a_seal_is_timestamped_and_verified(log_dir: Path, cli: Any, tsa: tuple) -> None:
    url, directory = tsa
    _record(log_dir)
    ca = str(directory / "ca.crt")
    result = cli("seal", "--tsa", url, "--tsa-ca", ca)
    assert result.exit_code == 0, result.stderr
    assert "timestamped by" in result.stderr and "good test TSA" in result.stderr
    tokens = list((log_dir / "_timestamps" / "host1").glob("*.tsr"))
    assert len(tokens) == 1 and tokens[0].name.startswith("000000001-")
    # The real outside tool agrees: openssl checks the token against the manifest's hash.
    digest = result.stdout.strip().removeprefix("sha256:")
    check = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-digest",
            digest,
            "-in",
            str(tokens[0]),
            "-CAfile",
            ca,
            "-untrusted",
            str(directory / "tsa.crt"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0 and "Verification: OK" in check.stdout, check.stderr
    verified = cli("verify", "--tsa-ca", ca)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert "the newest timestamped manifest is #1" in verified.stderr
    # A later seal without a token: noted without a CA, a problem when timestamps are
    # expected (--tsa-ca), since dropping tokens must not hide a rewritten manifest.
    assert cli("seal").exit_code == 0
    assert "manifests after #1 have no timestamp" in cli("verify").stderr
    missing = cli("verify", "--tsa-ca", ca, "--format", "json")
    assert missing.exit_code == 5
    problems = json.loads(missing.stdout)["problems"]
    assert [(p["file"][:27], p["kind"]) for p in problems] == [
        ("_manifests/host1/000000002-", "timestamp")
    ]
    shutil.rmtree(log_dir / "_timestamps")
    none = cli("verify", "--tsa-ca", ca, "--format", "json")
    assert none.exit_code == 5
    assert "no manifest of host1's chain has a valid timestamp token" in none.stdout


def test_a_token_from_another_ca_is_rejected(
    log_dir: Path, cli: Any, tsa: tuple, tmp_path: Path
) -> None:
    url, _ = tsa
    other = make_tsa(tmp_path / "other", "other")
    _record(log_dir)
    refused = cli("seal", "--tsa", url, "--tsa-ca", str(other / "ca.crt"))
    assert refused.exit_code == 5 and "does not verify against the CA bundle" in refused.stderr
    assert not list(log_dir.glob("_timestamps/*/*.tsr"))  # a token that fails is not kept
    assert cli("seal", "--tsa", url).exit_code == 0  # stored, checked only at verify
    result = cli("verify", "--tsa-ca", str(other / "ca.crt"), "--format", "json")
    assert result.exit_code == 5
    problems = json.loads(result.stdout)["problems"]
    assert [p["kind"] for p in problems] == ["timestamp", "timestamp"]
    assert "does not verify against the CA bundle" in problems[0]["detail"]
    assert "no manifest of host1's chain has a valid timestamp token" in problems[1]["detail"]


def test_a_token_for_another_hash_is_rejected(log_dir: Path, cli: Any, tsa: tuple) -> None:
    url, directory = tsa
    ca = str(directory / "ca.crt")
    _record(log_dir)
    assert cli("seal", "--tsa", url, "--tsa-ca", ca).exit_code == 0
    _record(log_dir)
    assert cli("seal", "--tsa", url, "--tsa-ca", ca).exit_code == 0
    first, second = sorted((log_dir / "_timestamps" / "host1").glob("*.tsr"))
    first.write_bytes(second.read_bytes())  # manifest #1's token replaced by #2's
    result = cli("verify", "--tsa-ca", ca, "--format", "json")
    assert result.exit_code == 5
    assert "the token is over another hash" in result.stdout
    # A token whose manifest was deleted names it.
    first.unlink()
    manifest = sorted((log_dir / "_manifests" / "host1").glob("0*.json"))[-1]
    manifest.unlink()
    result = cli("verify", "--tsa-ca", ca, "--format", "json")
    assert result.exit_code == 5
    assert "a timestamp token for a manifest that is not there" in result.stdout


def test_an_unreachable_tsa_fails_after_sealing(log_dir: Path, cli: Any) -> None:
    _record(log_dir)
    result = cli("seal", "--tsa", "http://127.0.0.1:9/")
    assert result.exit_code == 5 and "no timestamp" in result.stderr
    chain = log_dir / "_manifests" / "host1"
    assert len(list(chain.glob("0*.json"))) == 1  # the seal itself stands
    # Mistakes in the options are found before sealing: nothing is written.
    assert cli("seal", "--tsa", "file:///etc/passwd").exit_code == 2
    assert cli("seal", "--tsa", "http://127.0.0.1:9/", "--tsa-ca", str(log_dir)).exit_code == 2
    assert cli("seal", "--tsa-ca", str(log_dir)).exit_code == 2
    assert len(list((log_dir / "_manifests" / "host1").glob("0*.json"))) == 1


def test_each_writer_chain_is_timestamped_in_its_own_directory(
    log_dir: Path, cli: Any, tsa: tuple
) -> None:
    """Tokens mirror `_manifests/<writer>/`, so hosts' copies merge; verify expects a token in
    every writer's chain and names the writer whose tokens are gone."""
    url, directory = tsa
    ca = str(directory / "ca.crt")
    for writer in ("host1", "host2"):
        AuditStore(log_dir, writer_id=writer).append(
            [{"action": "login", "actorId": "u-1", "organizationId": "o-1"}]
        )
    result = cli("seal", "--tsa", url, "--tsa-ca", ca)
    assert result.exit_code == 0, result.stderr
    for writer in ("host1", "host2"):
        manifests = sorted((log_dir / "_manifests" / writer).glob("0*.json"))
        tokens = sorted((log_dir / "_timestamps" / writer).glob("*.tsr"))
        assert [t.name for t in tokens] == [m.name + ".tsr" for m in manifests]
    assert cli("verify", "--tsa-ca", ca).exit_code == 0
    # host2's token copied over host1's: over another manifest's hash.
    host1 = next((log_dir / "_timestamps" / "host1").glob("*.tsr"))
    saved = host1.read_bytes()
    host1.write_bytes(next((log_dir / "_timestamps" / "host2").glob("*.tsr")).read_bytes())
    swapped = cli("verify", "--tsa-ca", ca, "--format", "json")
    assert swapped.exit_code == 5 and "the token is over another hash" in swapped.stdout
    host1.write_bytes(saved)
    shutil.rmtree(log_dir / "_timestamps" / "host2")
    result = cli("verify", "--tsa-ca", ca, "--format", "json")
    assert result.exit_code == 5
    problems = json.loads(result.stdout)["problems"]
    assert [(p["file"], p["kind"]) for p in problems] == [("_timestamps/host2", "timestamp")]
