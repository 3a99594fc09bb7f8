"""RFC 3161 timestamps of manifests: an outside witness that a seal existed at a time.

`stamp_manifest()` asks a timestamp authority (TSA) over HTTP for a token whose message
imprint is the manifest's hash (SHA-256 of its canonical body: the `hash` the manifest
states), checks the reply, and stores the whole response (DER) as
`LOGDIR/_timestamps/<writer>/<manifest file name>.tsr`, mirroring `_manifests/<writer>/` so the
stores of many hosts merge by plain file copy. `check_timestamps()` (run by `audit verify`)
checks each stored token: its signature and certificate chain against a CA bundle the caller
trusts, that its imprint is the manifest's hash, and that it was issued soon after the
manifest's `sealedAt` (a manifest re-created later cannot get an earlier timestamp). A token
whose manifest is gone names the deleted manifest.

The ASN.1 and CMS work is `rfc3161-client`'s (Trail of Bits); nothing here parses DER.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from auditcli.errors import IntegrityError, UsageError
from auditcli.query import Problem
from auditcli.store import AuditStore
from auditcli.timeparse import format_utc, parse_utc

from .manifests import Manifest, chain_writers, load_manifests

TIMESTAMP_DIR = "_timestamps"
#: A token issued later than this after the manifest's own time is a problem: the manifest
#: may have been made (or re-made) later than it says.
MAX_DELAY_SECONDS = 600.0
_TIMEOUT = 30.0
_MAX_REPLY = 1 << 20


@dataclass(frozen=True)
class Stamp:
    """A checked token of one manifest."""

    manifest: str
    time: str
    tsa: str
    path: Path


def load_roots(path: str | os.PathLike[str]) -> list[Any]:
    """The certificates of a PEM CA bundle (UsageError when unreadable or empty)."""
    from cryptography import x509

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"--tsa-ca {path}: cannot read: {exc.strerror}") from None
    try:
        roots = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise UsageError(f"--tsa-ca {path}: not a PEM certificate bundle ({exc})") from None
    return roots


def prepare_tsa(url: str, ca_bundle: str | os.PathLike[str] | None) -> list[Any] | None:
    """Check a `--tsa` URL (http or https only), that rfc3161-client is installed, and load the
    CA bundle: all before sealing, so a mistake seals nothing. Returns the CA's certificates."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--tsa {url}: expected an http:// or https:// URL")
    _client()
    return load_roots(ca_bundle) if ca_bundle is not None else None


def timestamp_path(store: AuditStore, manifest: Manifest) -> Path:
    """Where the token of a manifest of a writer's chain is kept."""
    return store.root / TIMESTAMP_DIR / str(manifest.writer) / (manifest.path.name + ".tsr")


def stamp_manifest(
    store: AuditStore, manifest: Manifest, url: str, roots: list[Any] | None = None
) -> Stamp:
    """Get a timestamp token over `manifest`'s hash from the TSA at `url` (checked by
    `prepare_tsa`), check it (against `roots` when given, else only its imprint and nonce),
    and store it. Raises IntegrityError
    when the TSA cannot be reached or its reply does not check (the manifest stays written)."""
    client = _client()
    request = (
        client.TimestampRequestBuilder()
        .data(manifest.body_bytes)
        .hash_algorithm(client.HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    reply = _post(url, request.as_bytes())
    try:
        response = client.decode_timestamp_response(reply)
    except ValueError as exc:
        raise IntegrityError(f"--tsa {url}: not a timestamp response ({exc})") from None
    problem = _token_problem(response, manifest, roots, nonce=request.nonce)
    if problem:
        raise IntegrityError(f"--tsa {url}: {problem}")
    if manifest.writer is None:
        raise UsageError("only manifests of a writer's chain are timestamped")
    path = timestamp_path(store, manifest)
    _save(path, reply)
    return Stamp(manifest.name, _gen_time(response), _tsa_name(response), path)


def _client() -> Any:
    """The rfc3161-client package (the `tsa` extra), or a UsageError saying how to get it."""
    try:
        import rfc3161_client
    except ImportError:
        raise UsageError(
            "RFC 3161 timestamps need the `tsa` extra: pip install 'auditcli[tsa]'"
        ) from None
    return rfc3161_client


def _post(url: str, query: bytes) -> bytes:
    request = urllib.request.Request(
        url, data=query, headers={"Content-Type": "application/timestamp-query"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as answer:
            data = answer.read(_MAX_REPLY + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise IntegrityError(f"--tsa {url}: no timestamp: {exc}") from None
    if len(data) > _MAX_REPLY:
        raise IntegrityError(f"--tsa {url}: the reply is larger than {_MAX_REPLY} bytes")
    return data


def _token_problem(
    response: Any, manifest: Manifest, roots: list[Any] | None, nonce: int | None = None
) -> str | None:
    """Why a decoded response is not a valid token over `manifest` (None when it is)."""
    import hashlib

    from rfc3161_client import PKIStatus, VerificationError, VerifierBuilder

    if PKIStatus(response.status) != PKIStatus.GRANTED:
        return f"the TSA refused (status {response.status})"
    digest = hashlib.sha256(manifest.body_bytes).digest()
    if response.tst_info.message_imprint.message != digest:
        return f"the token is over another hash, not {manifest.hash}"
    if nonce is not None and response.tst_info.nonce != nonce:
        return "the token answers another request (nonce)"
    if roots:
        builder = VerifierBuilder()
        for root in roots:
            builder = builder.add_root_certificate(root)
        try:
            builder.build().verify(response, digest)
        except VerificationError as exc:
            return f"the token does not verify against the CA bundle: {exc}"
    return None


def _gen_time(response: Any) -> str:
    when = response.tst_info.gen_time
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return format_utc(when)


def _tsa_name(response: Any) -> str:
    from cryptography import x509

    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        info = response.signed_data.signer_infos
        if any(cert.serial_number == si.serial_number for si in info):
            return cert.subject.rfc4514_string()
    return "unknown TSA"


def _save(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        for directory in (path.parent.parent, path.parent):
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
            if directory.is_symlink():  # planted: never write through it
                raise IntegrityError(f"{directory}: a symlink; not storing the timestamp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise IntegrityError(f"{path}: cannot store the timestamp: {exc.strerror}") from None


def check_timestamps(store: AuditStore, report: Any, roots: list[Any] | None) -> None:
    """Check every stored token against its manifest, writer by writer, and add problems and
    notes to `report` (a VerifyReport). Without `roots` the tokens' signatures cannot be judged:
    a note says so. With them, every writer's chain is expected to be timestamped."""
    directory = store.root / TIMESTAMP_DIR
    try:
        entries = sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except FileNotFoundError:
        if not roots:
            return  # nothing timestamped, nothing expected
        entries = []
    except OSError as exc:
        report.problems.append(Problem(TIMESTAMP_DIR, None, "timestamp", f"cannot list: {exc}"))
        return
    decode = _client().decode_timestamp_response
    chains = chain_writers(store)[0]
    for name in entries:
        if name not in chains or not (directory / name).is_dir():
            report.problems.append(
                Problem(
                    f"{TIMESTAMP_DIR}/{name}",
                    None,
                    "deleted manifest",
                    "timestamp tokens for a writer's chain that is not there",
                )
            )
    for writer in chains:
        _check_writer(store, writer, decode, report, roots)


def _check_writer(
    store: AuditStore, writer: str, decode: Any, report: Any, roots: list[Any] | None
) -> None:
    """`check_timestamps` for one writer's chain and its `_timestamps/<writer>/`."""
    directory = store.root / TIMESTAMP_DIR / writer
    try:
        names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        report.problems.append(
            Problem(f"{TIMESTAMP_DIR}/{writer}", None, "timestamp", f"cannot list: {exc}")
        )
        return
    manifests, _ = load_manifests(store, writer)
    by_name = {m.path.name: m for m in manifests}
    newest: tuple[int, str] | None = None
    stamped: set[int] = set()
    for name in names:
        where = f"{TIMESTAMP_DIR}/{writer}/{name}"
        manifest = by_name.get(name.removesuffix(".tsr"))
        if not name.endswith(".tsr") or manifest is None:
            report.problems.append(
                Problem(
                    where,
                    None,
                    "deleted manifest",
                    "a timestamp token for a manifest that is not there",
                )
            )
            continue
        try:
            response = decode((directory / name).read_bytes())
        except (OSError, ValueError) as exc:
            report.problems.append(Problem(where, None, "timestamp", f"unreadable: {exc}"))
            continue
        problem = _token_problem(response, manifest, roots)
        issued = _gen_time(response)
        if problem is None and manifest.sealed_at:
            delay = (parse_utc(issued) - parse_utc(manifest.sealed_at)).total_seconds()
            if not -MAX_DELAY_SECONDS <= delay <= MAX_DELAY_SECONDS:
                problem = (
                    f"issued {issued}, but the manifest says it was sealed {manifest.sealed_at}"
                )
        if problem:
            report.problems.append(Problem(where, None, "timestamp", problem))
            continue
        stamped.add(manifest.sequence)
        if newest is None or manifest.sequence > newest[0]:
            newest = (manifest.sequence, issued)
    if newest:
        report.notes.append(
            f"{writer}: the newest timestamped manifest is #{newest[0]}, stamped {newest[1]}"
            + ("" if roots else " (tokens not checked against a CA: pass --tsa-ca)")
        )
    if roots:
        _require_stamps(writer, manifests, stamped, report)
    elif newest and max((m.sequence for m in manifests), default=0) > newest[0]:
        report.notes.append(f"{writer}: manifests after #{newest[0]} have no timestamp")


def _require_stamps(writer: str, manifests: list[Manifest], stamped: set[int], report: Any) -> None:
    """With a CA given, timestamps are expected: a writer's chain with none is a problem, and so
    is a seal without a valid token after the first one that has one (dropping tokens hides
    nothing)."""
    if not stamped:
        if any(m.kind == "seal" for m in manifests):
            report.problems.append(
                Problem(
                    f"{TIMESTAMP_DIR}/{writer}",
                    None,
                    "timestamp",
                    f"no manifest of {writer}'s chain has a valid timestamp token",
                )
            )
        return
    first = min(stamped)
    for manifest in manifests:
        if (
            manifest.sequence > first
            and manifest.kind == "seal"
            and (manifest.sequence not in stamped)
        ):
            report.problems.append(
                Problem(
                    manifest.name,
                    None,
                    "timestamp",
                    f"no valid timestamp token (seals since #{first} have one)",
                )
            )
