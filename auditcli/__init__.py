"""auditcli: an audit log over append-only, date-partitioned, hash-chained JSONL files.

The core is a library; the `audit` command is one client of it::

    from auditcli import AuditStore, Filters, QueryEngine

    store = AuditStore("/var/lib/audit")
    entry = store.record({"action": "login", "actorId": "user-1", "organizationId": "org-1"})
    total, lines = QueryEngine(store, Filters(actions=("login",))).page(limit=20)
"""

from .errors import (
    AuditError,
    AuthError,
    DuplicateIdError,
    IntegrityError,
    InvalidEntryError,
    NotRecordedError,
    UsageError,
)
from .model import SEED_FIELDS, Entry
from .query import Filters, Problem, QueryEngine, entry_of
from .store import AuditStore

__all__ = [
    "SEED_FIELDS",
    "AuditError",
    "AuditStore",
    "AuthError",
    "DuplicateIdError",
    "Entry",
    "Filters",
    "IntegrityError",
    "InvalidEntryError",
    "NotRecordedError",
    "Problem",
    "QueryEngine",
    "UsageError",
    "entry_of",
]
__version__ = "0.1.0"
