"""Errors raised by the core. The CLI maps each class to one documented exit code."""

from __future__ import annotations


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
