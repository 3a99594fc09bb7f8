"""auditcli: an audit log over append-only, date-partitioned, hash-chained JSONL files.

The core is a library; the `audit` command is one client of it::

    from auditcli import AuditStore, Filters, QueryEngine

    store = AuditStore("/var/lib/audit")
    entry = store.record({"action": "login", "actorId": "user-1", "organizationId": "org-1"})
    total, lines = QueryEngine(store, Filters(actions=("login",))).page(limit=20)
"""

from typing import TYPE_CHECKING, Any

# Names are loaded on first use (PEP 562): `import auditcli.cli` for `audit query` must not pay
# for pydantic, and `audit record` must not pay for the query engine. Each name maps to the
# module that defines it.
_LAZY = {
    "AuditError": "errors",
    "AuthError": "errors",
    "DuplicateIdError": "errors",
    "IntegrityError": "errors",
    "InvalidEntryError": "errors",
    "NotRecordedError": "errors",
    "UsageError": "errors",
    "SEED_FIELDS": "model",
    "Entry": "entry_model",
    "Filters": "query",
    "Problem": "query",
    "QueryEngine": "query",
    "entry_of": "query",
    "AuditStore": "store",
}

if TYPE_CHECKING:
    from .entry_model import Entry
    from .errors import (
        AuditError,
        AuthError,
        DuplicateIdError,
        IntegrityError,
        InvalidEntryError,
        NotRecordedError,
        UsageError,
    )
    from .model import SEED_FIELDS
    from .query import Filters, Problem, QueryEngine, entry_of
    from .store import AuditStore


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'auditcli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
