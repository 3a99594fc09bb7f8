"""`audit redact`: erase a person's personal data from the entries that hold it, keeping the
record of what happened and a store that still verifies.

One run: (1) read the days in range once, selecting the entries the filters match and noting
the names and emails of the people filtered for (to scrub them from descriptions too); (2) plan
each changed line (auditcli.commitments); (3) take the writers' lock of every file to change,
write its new version beside it (a hidden temp; a `.gz` through rotate's gzip writer); (4)
write one signed redaction receipt naming every changed line and rewritten archive; (5) rename
each temp over its file (atomic), fsync, drop the file's line index; (6) record an
`entries_redacted` entry. Killed anywhere, each file is the old or the new one; the next run
removes left temps and redoes what is still unredacted (a redacted line plans no change).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import chain, gzmembers, lineindex
from .commitments import DEFAULT_METADATA_KEYS, PERSONAL_FIELDS, parse, personal_fields, redact
from .errors import IntegrityError, UsageError
from .maintenance import (
    _BLOCK,
    _open_locked,
    _remove_under,
    _unlink_at,
    open_dir_nofollow,
    write_gzip,
)
from .model import build_entry
from .query import Filters, _Matcher
from .safeio import write_all
from .store import PARTITION_PREFIX, AuditStore, LogFile

TEMP_SUFFIX = ".redact.tmp"
ACTION = "entries_redacted"
_ACTOR_FIELDS = ("actorName", "actorEmail")


@dataclass
class LineChange:
    """One line to rewrite: where, its bytes before and after, which fields change."""

    file: LogFile
    line: int
    old: bytes
    new: bytes
    fields: list[str]
    entry_id: str
    organization: str

    def record(self) -> dict[str, Any]:
        """The line's record in the receipt (hashes only, never content)."""
        return {
            "name": self.file.name,
            "line": self.line,
            "old": chain.tag(hashlib.sha256(self.old).digest()),
            "new": chain.tag(hashlib.sha256(self.new).digest()),
            "oldLeaf": chain.tag(hashlib.sha256(b"\x00" + self.old[:-1]).digest()),
        }


@dataclass
class RedactReport:
    """What a run found and did."""

    changes: list[LineChange] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # rewritten (or, dry run, to rewrite)
    receipt: str | None = None
    leftovers: int = 0  # temps of an interrupted run, removed
    v1_lines: int = 0  # chain version 1 lines (store not redactable then): replaced whole
    too_long: list[str] = field(default_factory=list)  # `file:line` whose redaction won't fit


def redact_entries(
    store: AuditStore,
    filters: Filters,
    *,
    reason: str,
    operator: str,
    extra_fields: Iterable[str] = (),
    signing_key: Any = None,
    dry_run: bool = False,
    on_file: Callable[[str], None] | None = None,
) -> RedactReport:
    """Redact the personal data of the entries `filters` select (see the module docstring).
    `extra_fields`: more metadata keys (`K` or `metadata.K`), or `description`. Raises
    UsageError for a missing reason, filter or signing key; nothing is written then."""
    from .integrity.keys import signing_key_from

    if not reason.strip():
        raise UsageError("--reason: give why the data is erased (e.g. the request's number)")
    if not filters.by_field():
        raise UsageError("give --actor-id or --target-id (or another field filter): whose data?")
    fields = _fields(filters, extra_fields)
    key = None if dry_run else signing_key_from(signing_key)
    if key is None and not dry_run:
        raise UsageError(
            "--signing-key: a redaction receipt must be signed (or set AUDIT_SIGNING_KEY)"
        )
    report = RedactReport()
    if not dry_run:
        report.leftovers = _remove_leftovers(store)
    selected, terms = _select(store, filters)
    for file, number, line in selected:
        content = chain.split_line(line)
        assert content is not None  # selected lines have the stored shape
        new = redact(content[0], fields, terms)
        if new is None:
            continue
        old_entry = parse(content[0])[0]
        new_line = chain.chained_line(new, content[1])
        if len(new_line) > chain.MAX_LINE:  # its redaction record would not fit: left as is
            report.too_long.append(f"{file.name}:{number}")
            continue
        new_entry, block = parse(new)
        changed = [
            name
            for name in personal_fields(old_entry)
            if name in personal_fields(new_entry)
            and _value(old_entry, name) != _value(new_entry, name)
        ]
        report.v1_lines += block is None
        report.changes.append(
            LineChange(
                file,
                number,
                line,
                new_line,
                changed,
                str(old_entry["id"]),
                str(old_entry["organizationId"]),
            )
        )
    by_file: dict[str, list[LineChange]] = {}
    for change in report.changes:
        by_file.setdefault(change.file.name, []).append(change)
    report.files = sorted(by_file)
    if dry_run or not report.changes:
        return report
    counts: dict[str, int] = {}
    for change in report.changes:
        counts[change.organization] = counts.get(change.organization, 0) + 1
    # One entry per organization whose entries were redacted; built (checked) before any
    # file changes, so a bad --operator stops the run with nothing written.
    notes = [
        build_entry(
            {
                "actorId": operator,
                "action": ACTION,
                "target": "ORGANIZATION",
                "targetId": organization,
                "organizationId": organization,
                "metadata": {"count": count, "reason": reason},
            },
            store.catalog,
            clock=store.clock,
        )
        for organization, count in sorted(counts.items())
    ]
    _apply(store, by_file, report, reason, operator, fields, key, on_file)
    for note in notes:
        note["metadata"]["receipt"] = report.receipt
        del note["id"], note["createdAt"]  # given when recorded
        store.record(note)
    return report


def _fields(filters: Filters, extra: Iterable[str]) -> set[str]:
    """The personal fields to remove: description terms always, the actor's fields when the
    actor is who is filtered for, the default metadata keys and `extra`."""
    fields = {f"metadata.{key}" for key in DEFAULT_METADATA_KEYS}
    if filters.actor_ids:
        fields.update(_ACTOR_FIELDS)
    for name in extra:
        if name in PERSONAL_FIELDS or name.startswith("metadata."):
            fields.add(name)
        elif name and "." not in name:
            fields.add(f"metadata.{name}")
        else:
            raise UsageError(
                f"--field {name!r}: a metadata key, metadata.KEY, or one of "
                + ", ".join(PERSONAL_FIELDS)
            )
    return fields


def _select(
    store: AuditStore, filters: Filters
) -> tuple[list[tuple[LogFile, int, bytes]], set[str]]:
    """The stored lines the filters select, and the names and emails the people filtered for
    use as actors in the days read (scrubbed from descriptions)."""
    matcher = _Matcher(filters)
    people = [
        b',"actorId":' + orjson.dumps(value) + b","
        for value in (*filters.actor_ids, *filters.target_ids)
    ]
    first = filters.since[:10] if filters.since else None
    last = filters.until[:10] if filters.until else None
    selected: list[tuple[LogFile, int, bytes]] = []
    terms: set[str] = set()
    for day in store.days(first, last):
        for file in store.files(day):
            for number, line in store.iter_lines(file):
                if not chain.is_chained_line(line):
                    continue
                if matcher(line):
                    selected.append((file, number, line))
                if any(person in line for person in people):
                    entry = orjson.loads(chain.content_of(line))
                    terms.update(v for f in _ACTOR_FIELDS if isinstance(v := entry[f], str))
    return selected, terms


def _apply(
    store: AuditStore,
    by_file: dict[str, list[LineChange]],
    report: RedactReport,
    reason: str,
    operator: str,
    fields: set[str],
    key: Any,
    on_file: Callable[[str], None] | None,
) -> None:
    from .integrity.manifests import append_manifest, archive_digest, manifest_lock
    from .timeparse import format_utc

    held: list[tuple[int, int, str, str, LogFile]] = []  # dfd, fd, temp, name, file
    archives = []
    try:
        for changes in by_file.values():
            file = changes[0].file
            dfd = open_dir_nofollow(file.path.parent)
            fd = _open_locked(dfd, file.path.name)
            if fd is None:
                os.close(dfd)
                raise IntegrityError(f"{file.name}: rotated or replaced meanwhile; run again")
            temp = f".{file.path.name}{TEMP_SUFFIX}"
            held.append((dfd, fd, temp, file.path.name, file))
            _unlink_at(dfd, temp)
            blocks = _rewritten(_raw_blocks(fd, file), {c.line: c for c in changes}, file)
            if file.compressed:
                os.close(write_gzip(dfd, temp, blocks)[3])  # its index: dropped with the rest
                digest = archive_digest(file.path.with_name(temp))
                archives.append({"name": file.name, **digest})
            else:
                _write_plain(dfd, temp, blocks)
        body = {
            "kind": "receipt",
            "sealedAt": format_utc(store.clock()),
            "receipt": {
                "action": "redact",
                "reason": reason,
                "operator": operator,
                "fields": sorted(fields),
                "lines": [c.record() for c in report.changes],
                "archives": archives,
            },
        }
        with manifest_lock(store):
            report.receipt = append_manifest(store, store.writer_id, body, key).hash
        for dfd, _fd, temp, name, file in held:
            os.rename(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)
            # The line index describes the old bytes (derived data: rebuilt when next needed).
            _remove_under(store.root, (lineindex.INDEX_DIR, file.partition), name + ".idx")
            if on_file is not None:
                on_file(file.name)
    except OSError as exc:
        raise IntegrityError(f"redaction stopped: {exc.strerror or exc}; run it again") from None
    finally:
        for dfd, fd, temp, _name, _file in held:
            with contextlib.suppress(OSError):
                _unlink_at(dfd, temp)  # a temp not renamed: the file is the old one
            os.close(fd)
            os.close(dfd)


def _raw_blocks(fd: int, file: LogFile) -> Iterator[bytes]:
    """The file's bytes (decompressed for a `.gz`), a block at a time, torn tail included."""
    offset = 0
    if not file.compressed:
        while block := os.pread(fd, _BLOCK, offset):
            offset += len(block)
            yield block
        return
    inflater = gzmembers.Inflater(fd, os.fstat(fd).st_size, _BLOCK)
    try:
        yield from inflater.blocks()
    except gzmembers.GzipError as exc:  # Truncated included
        raise IntegrityError(f"{file.name}: not a valid gzip file ({exc}); left alone") from None
    if inflater.trailing:
        raise IntegrityError(f"{file.name}: bytes after its last gzip member; left alone")


def _rewritten(
    blocks: Iterable[bytes], changes: dict[int, LineChange], file: LogFile
) -> Iterator[bytes]:
    """`blocks` with each planned line replaced; IntegrityError if one changed meanwhile."""
    carry, number = b"", 0
    for block in blocks:
        data = carry + block
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        out = []
        for line in data[:cut].split(b"\n")[:-1]:
            number += 1
            line += b"\n"
            change = changes.get(number)
            if change is not None:
                if line != change.old:
                    raise IntegrityError(f"{file.name}:{number}: changed since it was read")
                line = change.new
            out.append(line)
        yield b"".join(out)
    yield carry  # a torn end stays as it was


def _write_plain(dfd: int, temp: str, blocks: Iterable[bytes]) -> None:
    from .maintenance import _NO_SURPRISES

    out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_SURPRISES, 0o600, dir_fd=dfd)
    try:
        for block in blocks:
            write_all(out, block)
        os.fsync(out)
    finally:
        os.close(out)


def _remove_leftovers(store: AuditStore) -> int:
    """Remove temps an interrupted run left (their files were never replaced)."""
    removed = 0
    for day in store.days():
        directory = store.root / (PARTITION_PREFIX + day)
        dfd = open_dir_nofollow(directory)
        try:
            for name in os.listdir(dfd):
                if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                    _unlink_at(dfd, name)
                    removed += 1
            if removed:
                os.fsync(dfd)
        finally:
            os.close(dfd)
    return removed


def _value(entry: dict[str, Any], name: str) -> Any:
    if name.startswith("metadata."):
        return (entry.get("metadata") or {}).get(name[len("metadata.") :])
    return entry.get(name)
