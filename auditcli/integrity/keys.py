"""Ed25519 keys: generate, load, sign and check manifest signatures; key ids."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from auditcli import chain
from auditcli.errors import UsageError
from auditcli.outfile import write_file

from .constants import _SIGNED_TAG, SIGNING_ENV


def key_id(public_key: Any) -> str:
    """The fingerprint of an Ed25519 public key: SHA-256 of its 32 raw bytes, tagged."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return chain.tag(hashlib.sha256(raw).digest())


def generate_keys(out: str | os.PathLike[str], *, force: bool = False) -> str:
    """Write a new Ed25519 private key to `out` (PEM, mode 0600) and its public key to
    `out.pub` (PEM). Refuses to overwrite unless `force`. Returns the key id."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    path = Path(out)
    pub_path = path.with_name(path.name + ".pub")
    for target in (path, pub_path):
        if (target.exists() or target.is_symlink()) and not force:
            raise UsageError(f"{target}: exists; pass --force to replace it")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    # Both files or neither: the public key is committed first, and removed again when the
    # private key cannot be written.
    write_file(pub_path, public_pem, force=force, mode=0o644)
    try:
        write_file(path, private_pem, force=force, mode=0o600)
    except BaseException:
        pub_path.unlink(missing_ok=True)
        raise
    return key_id(key.public_key())


def load_signing_key(path: str | os.PathLike[str]) -> Any:
    """The Ed25519 private key in PEM file `path` (UsageError when unreadable or not Ed25519)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"signing key {path}: cannot read: {exc.strerror}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"signing key {path}: not an unencrypted PEM private key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"signing key {path}: not an Ed25519 key (use `audit keys generate`)")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Any:
    """The Ed25519 public key in `path`: PEM (`audit keys generate` writes PATH.pub) or an
    OpenSSH `ssh-ed25519` line. A private key file is accepted too (its public half is used)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
        load_ssh_public_key,
    )

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"public key {path}: cannot read: {exc.strerror}") from None
    key: Any = None
    for loader in (load_pem_public_key, load_ssh_public_key):
        try:
            key = loader(data)
            break
        except (ValueError, TypeError, Exception):
            continue
    if key is None:
        try:
            private = load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            private = None
        if isinstance(private, Ed25519PrivateKey):
            key = private.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"public key {path}: not an Ed25519 public key (PEM or ssh-ed25519)")
    return key


def signing_key_from(signing_key: Any) -> Any:
    """A private key object from a path, a key object, or AUDIT_SIGNING_KEY; None if none."""
    if signing_key is None:
        env = os.environ.get(SIGNING_ENV)
        return load_signing_key(env) if env else None
    if isinstance(signing_key, str | os.PathLike):
        return load_signing_key(signing_key)
    return signing_key


def sign(body_bytes: bytes, key: Any) -> dict[str, str]:
    """The signature object of a manifest body: Ed25519 over the domain tag plus the body."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key()
    return {
        "algorithm": "ed25519",
        "keyId": key_id(public),
        "publicKey": base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode(),
        "value": base64.b64encode(key.sign(_SIGNED_TAG + body_bytes)).decode(),
    }


def signature_valid(body_bytes: bytes, signature: Mapping[str, Any], public_key: Any) -> bool:
    """Whether `signature` is `public_key`'s over the domain tag plus `body_bytes`."""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(
            base64.b64decode(signature["value"], validate=True), _SIGNED_TAG + body_bytes
        )
    except (InvalidSignature, ValueError, TypeError, KeyError):
        return False
    return True


def embedded_public_key(signature: Mapping[str, Any]) -> Any:
    """The public key a signature object carries (None when malformed); trust is checked apart."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw = base64.b64decode(signature["publicKey"], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, KeyError):
        return None
