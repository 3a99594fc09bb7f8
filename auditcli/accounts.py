"""Service accounts and their bearer tokens: what `audit serve` authenticates.

Accounts live in `LOGDIR/_accounts/accounts.json` (directory 0700, file 0600, replaced
atomically). A token is `audit_` + 43 URL-safe characters (256 random bits); only its SHA-256 is
stored, so a copy of the file does not grant access.

Creating and deleting an account records `service_account_created` / `service_account_deleted`
in the log itself, and the accounts file and the log agree after any single fault or kill. A
change is made in three durable steps, under the accounts lock: (1) the file notes the change as
*pending* (an account being created is not usable yet; one being deleted stops working at
once), (2) the entry is recorded with an id derived from the account (`sa-….created`,
`sa-….deleted`), (3) the file completes the change. When (2) fails, (1) is undone. Whatever a
kill or a failed (3) leaves pending is settled by the next `service-account` command: the
change is completed when its entry is in the log, else undone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .errors import AuditError, AuthError, IntegrityError, NotRecordedError, UsageError
from .safeio import ACCOUNTS_MAX, fsync_dir, lock_within, open_file, read_bounded, why
from .store import AuditStore
from .timeparse import Duration, format_utc, parse_bound, parse_duration, parse_utc

ACCOUNTS_DIR = "_accounts"
ACCOUNTS_FILE = "accounts.json"
LOCK_FILE = ".lock"
TOKEN_PREFIX = "audit_"
ROLES: tuple[str, ...] = ("admin", "member")
# Matched whole (fullmatch): `$` would also accept a trailing newline.
_TOKEN = re.compile(r"audit_[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FORMAT_VERSION = 1


class TokenError(AuthError):
    """The bearer token is missing, malformed, unknown, expired or belongs to a deleted account
    (HTTP 401). `code` is the RFC 6750 error code for the WWW-Authenticate header."""

    def __init__(self, message: str, code: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


class ForbiddenError(AuthError):
    """The token is valid but its account lacks the role the operation needs (HTTP 403)."""


@dataclass(frozen=True)
class ServiceAccount:
    """One service account. `token_hash` is `sha256:<hex>` of its token; the token itself is
    never stored."""

    id: str
    name: str
    organization_id: str
    role: str
    created_at: str
    created_by: str
    expires_at: str | None
    token_hash: str

    def expired(self, now: str) -> bool:
        """Whether the account's token has expired at canonical time `now`."""
        return self.expires_at is not None and now >= self.expires_at

    def public(self, now: str | None = None) -> dict[str, Any]:
        """The account as shown to people and scripts: everything but the token hash."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "organizationId": self.organization_id,
            "role": self.role,
            "createdAt": self.created_at,
            "createdBy": self.created_by,
            "expiresAt": self.expires_at,
        }
        if now is not None:
            data["status"] = "expired" if self.expired(now) else "active"
        return data

    def stored(self) -> dict[str, Any]:
        """The account's record in the accounts file."""
        return {**self.public(), "tokenHash": self.token_hash}

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> ServiceAccount:
        """An account from its record in the accounts file (KeyError/TypeError if malformed)."""
        account = cls(
            id=data["id"],
            name=data["name"],
            organization_id=data["organizationId"],
            role=data["role"],
            created_at=data["createdAt"],
            created_by=data["createdBy"],
            expires_at=data["expiresAt"],
            token_hash=data["tokenHash"],
        )
        if not all(isinstance(v, str) for v in (account.id, account.name, account.token_hash)):
            raise TypeError("id, name and tokenHash must be strings")
        if account.role not in ROLES or not account.token_hash.startswith("sha256:"):
            raise TypeError(f"account {account.name!r}: unknown role or hash algorithm")
        return account


def new_token() -> str:
    """A fresh bearer token: `audit_` + 32 random bytes, URL-safe base64 (43 characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What is stored for a token: its SHA-256, tagged with the algorithm. A token carries 256
    random bits, so a fast hash is enough: there is nothing to brute-force."""
    return "sha256:" + hashlib.sha256(token.encode("ascii")).hexdigest()


def parse_expiry(text: str, now: str) -> str | None:
    """When a token given `--expires TEXT` at `now` expires: `never` (None), a duration ahead
    (`12h`, `90d`, `2w`, `3mo`, `1y`: the grammar of every time option) or an ISO time or date
    (a date means the end of that day)."""
    value = text.strip().lower()
    if value in ("never", "none"):
        return None
    try:
        parsed = parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"--expires: {exc}") from None
    if parsed is not None:
        duration, ago = parsed
        if ago or duration == Duration(0, 0):
            raise UsageError(f"--expires: {text!r} is not in the future")
        try:
            return format_utc(duration.after(parse_utc(now)))
        except OverflowError:
            raise UsageError(f"--expires: {text!r} is too far ahead") from None
    expires = parse_bound(text, end=True, option="--expires")
    if expires <= now:
        raise UsageError(f"--expires: {expires} is not in the future")
    return expires


class AccountStore:
    """The service accounts of one log directory.

    Reading is cached by the file's identity (inode, size, mtime), so a server re-reads the file
    only after `create` or `delete` replaced it: a deleted account stops working at once.
    """

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self.directory = store.root / ACCOUNTS_DIR
        self.path = self.directory / ACCOUNTS_FILE
        self._cache: tuple[tuple[int, int, int], tuple[ServiceAccount, ...]] | None = None
        self._doc: dict[str, Any] | None = None

    def now(self) -> str:
        """The current canonical time, from the store's clock."""
        return format_utc(self.store.clock())

    # ------------------------------------------------------------------ reading
    def accounts(self) -> tuple[ServiceAccount, ...]:
        """Every live account, in creation order."""
        where = self.path
        try:
            fd = open_file(self.store.root, f"{ACCOUNTS_DIR}/{ACCOUNTS_FILE}")
        except FileNotFoundError:
            return ()
        except OSError as exc:
            raise IntegrityError(f"{where}: cannot open: {why(exc)}") from None
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o022:
                # Anyone who can write the file can add a token: refuse it, as ssh does.
                raise IntegrityError(
                    f"{where}: writable by group or others "
                    f"(mode {stat.S_IMODE(info.st_mode):o}); refused: chmod 600 it"
                )
            signature = (info.st_ino, info.st_size, info.st_mtime_ns)
            cached = self._cache
            if cached is not None and cached[0] == signature and stat.S_ISREG(info.st_mode):
                return cached[1]
            raw = read_bounded(fd, ACCOUNTS_MAX, where)
        except OSError as exc:
            raise IntegrityError(f"{where}: cannot read: {why(exc)}") from None
        finally:
            os.close(fd)
        accounts = self._parse(raw)
        self._cache = (signature, accounts)
        return accounts

    def _parse(self, raw: bytes) -> tuple[ServiceAccount, ...]:
        try:
            doc = orjson.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != _FORMAT_VERSION:
                raise TypeError(f"expected an object with version {_FORMAT_VERSION}")
            self._doc = doc
            return tuple(ServiceAccount.from_stored(item) for item in doc["accounts"])
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"{self.path}: not a valid accounts file: {exc}") from None

    def _document(self) -> dict[str, Any] | None:
        """The whole accounts file as last read (None when there is none)."""
        self._doc = None
        self._cache = None
        self.accounts()
        return self._doc

    def get(self, name: str) -> ServiceAccount:
        """The live account called `name`; UsageError if there is none."""
        for account in self.accounts():
            if account.name == name:
                return account
        raise UsageError(f"no service account named {name!r}; see `audit service-account list`")

    def authenticate(self, token: str | None) -> ServiceAccount:
        """The live, unexpired account whose token is `token`; TokenError otherwise.

        Every stored hash is compared, in constant time, whatever matched earlier: the time
        taken does not tell how close a guess was or where its account sits in the file."""
        if not token:
            raise TokenError("missing bearer token", code=None)
        if not _TOKEN.fullmatch(token):
            raise TokenError("malformed bearer token")
        presented = hash_token(token).encode()
        found: ServiceAccount | None = None
        for account in self.accounts():
            if hmac.compare_digest(presented, account.token_hash.encode()):
                found = account
        if found is None:
            # A deleted account's token is unknown: its hash left the file with it.
            raise TokenError("invalid bearer token")
        if found.expired(self.now()):
            raise TokenError(f"bearer token expired at {found.expires_at}")
        return found

    # ------------------------------------------------------------------ changing
    def create(
        self,
        name: str,
        organization_id: str,
        role: str,
        *,
        actor: Mapping[str, str | None],
        expires: str | None = None,
    ) -> tuple[ServiceAccount, str]:
        """Create an account and record `service_account_created`; returns (account, token).

        `actor` holds the entry's actorId (required), actorName and actorEmail. The token is
        returned once and never stored."""
        if not _NAME.fullmatch(name):
            raise UsageError(
                f"name {name!r}: use 1-64 letters, digits, '.', '_' and '-', "
                "starting with a letter or digit"
            )
        if role not in ROLES:
            raise UsageError(f"--role: expected one of {', '.join(ROLES)}, got {role!r}")
        if not organization_id.strip():
            raise UsageError("--org-id: must not be empty")
        now = self.now()
        expires_at = parse_expiry(expires, now) if expires is not None else None
        token = new_token()
        with self._locked():
            self._settle()
            current = self.accounts()
            if any(account.name == name for account in current):
                raise UsageError(f"a service account named {name!r} already exists")
            account = ServiceAccount(
                id="sa-" + secrets.token_hex(8),
                name=name,
                organization_id=organization_id,
                role=role,
                created_at=now,
                created_by=str(actor.get("actorId")),
                expires_at=expires_at,
                token_hash=hash_token(token),
            )
            self._change("create", current, account, actor, (*current, account))
        return account, token

    def delete(self, name: str, *, actor: Mapping[str, str | None]) -> ServiceAccount:
        """Delete the account `name` (its token stops working at once) and record
        `service_account_deleted`."""
        with self._locked():
            self._settle()
            current = self.accounts()
            account = self.get(name)
            remaining = tuple(a for a in current if a.id != account.id)
            self._change("delete", remaining, account, actor, remaining)
        return account

    def settle(self) -> None:
        """Complete or undo a change that a kill or a fault left pending (see the module doc)."""
        if self._pending() or any(self.directory.glob(".accounts-*.tmp")):
            with self._locked():
                self._settle()

    def _change(
        self,
        op: str,
        meanwhile: tuple[ServiceAccount, ...],
        account: ServiceAccount,
        actor: Mapping[str, str | None],
        after: tuple[ServiceAccount, ...],
    ) -> None:
        """The three steps of a create or delete (the lock is held)."""
        before = self.accounts()
        what = f"service account {account.name!r} NOT {op}d"
        # The entry's time is fixed now, so its partition is known when settling.
        created_at = self.now()
        pending = {"op": op, "account": account.stored(), "createdAt": created_at}
        try:
            self._write(meanwhile, [pending])
        except OSError as exc:
            raise NotRecordedError(f"{self.path}: cannot write: {exc.strerror}; {what}") from None
        try:
            self._record(op, account, actor, created_at)
        except AuditError as exc:
            with contextlib.suppress(OSError):  # else the next command undoes it
                self._write(before, [])
            raise NotRecordedError(f"{exc}; {what}") from None
        try:
            self._write(after, [])
        except OSError as exc:
            raise AuditError(
                f"{self.path}: cannot write: {exc.strerror}; service_account_{op}d is recorded,"
                f" and the next `audit service-account` command completes the {op}"
                + (
                    " (the new token is not shown: delete the account and create it again)"
                    if op == "create"
                    else ""
                )
            ) from None

    def _pending(self) -> list[dict[str, Any]]:
        doc = self._document()
        pending = doc.get("pending", []) if doc else []
        return pending if isinstance(pending, list) else []

    def _settle(self) -> None:
        for stale in self.directory.glob(".accounts-*.tmp"):  # left by a kill (lock held)
            stale.unlink(missing_ok=True)
        pending = self._pending()
        if not pending:
            return
        accounts = list(self.accounts())
        for change in pending:
            account = ServiceAccount.from_stored(change["account"])
            recorded = self._recorded(change["op"], account, str(change["createdAt"]))
            if (change["op"] == "create" and recorded) or (
                change["op"] == "delete" and not recorded
            ):
                accounts.append(account)
        accounts.sort(key=lambda a: a.created_at)
        self._write(tuple(accounts), [])

    def _recorded(self, op: str, account: ServiceAccount, created_at: str) -> bool:
        """Whether the log holds the entry of this change (its id is derived from both, its
        partition from the time fixed when the change was noted)."""
        from .store import IdIndex

        index = IdIndex(self.store, created_at[:10])
        index.refresh()
        return _entry_id(op, account) in index.ids

    def _record(
        self, op: str, account: ServiceAccount, actor: Mapping[str, str | None], created_at: str
    ) -> None:
        action = f"service_account_{op}d"
        entry: dict[str, Any] = {
            "id": _entry_id(op, account),
            "createdAt": created_at,
            "action": action,
            "target": "SERVICE_ACCOUNT",
            "targetId": account.id,
            "organizationId": account.organization_id,
            "metadata": {
                "name": account.name,
                "role": account.role,
                "expiresAt": account.expires_at,
            },
        }
        entry.update({key: value for key, value in actor.items() if value is not None})
        self.store.record(entry, target_name=account.name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock over read-modify-write of the accounts file (concurrent `create`s
        would otherwise lose one another's accounts)."""
        self.store.ensure_root()
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            if self.directory.is_symlink() or not self.directory.is_dir():
                raise IntegrityError(f"{self.directory}: not a directory (refused)") from None
        fd = os.open(
            self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            if not lock_within(fd, fcntl.LOCK_EX, 60):
                raise IntegrityError(
                    f"{self.directory / LOCK_FILE}: held by another process for 60 s "
                    "(a change of accounts takes milliseconds); nothing changed"
                )
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, accounts: tuple[ServiceAccount, ...], pending: list[dict[str, Any]]) -> None:
        """Replace the accounts file atomically: temp file (0600), fsync, rename, fsync dir."""
        doc: dict[str, Any] = {
            "version": _FORMAT_VERSION,
            "accounts": [a.stored() for a in accounts],
        }
        if pending:
            doc["pending"] = pending
        document = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".accounts-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:  # mkstemp creates the file with mode 0600
                handle.write(document)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(self.directory)
        self._cache = None


def _entry_id(op: str, account: ServiceAccount) -> str:
    """The id of the log entry of a change to `account`: found again after a kill."""
    return f"{account.id}.{op}d"
