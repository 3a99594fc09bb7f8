"""Errors raised by the core. The CLI maps each class to one documented exit code."""

from __future__ import annotations

import re

#: Messages may quote untrusted input (a field name, a path): C0 and C1 controls, DEL and the
#: bidi/invisible format characters are shown as escapes, so a message stays one inert line.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)


def inert(message: str) -> str:
    """`message` with every control or bidi character shown as an escape (`\\x1b`, `\\u202e`)."""
    return _UNSAFE.sub(_escape, message)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class AuditError(Exception):
    """Base class of every error the core raises on purpose."""

    exit_code = 1


class UsageError(AuditError):
    """An option or parameter is malformed: an unknown action, an unparseable time, a bad range."""

    exit_code = 2


class InvalidEntryError(AuditError):
    """An entry (or a line of an import) does not validate; nothing was written."""

    exit_code = 3

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class DuplicateIdError(InvalidEntryError):
    """An entry's id is already in the store (with the same or with different content)."""


class NotRecordedError(AuditError):
    """The store could not write: the entry was NOT recorded and no partial line was left."""

    exit_code = 4


class IntegrityError(AuditError):
    """The store holds a line or file that is not what was written (torn, foreign, tampered)."""

    exit_code = 5


class AuthError(AuditError):
    """A token is missing, unknown, expired or lacks the role the operation needs."""

    exit_code = 6


class NoStoreError(AuditError):
    """The log directory does not exist or is not an audit log directory (a mistyped path, an
    unmounted disk): nothing was read or written."""

    exit_code = 7
