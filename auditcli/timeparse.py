"""Time values: the one stored form, entry timestamps, and the query bounds people type.

Every stored `createdAt` has the fixed-width form `2026-11-25T08:06:40.123Z`, so comparing two of
them as strings compares the instants; the query engine relies on that.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from .errors import UsageError

Clock = Callable[[], datetime]

# Matched whole (fullmatch, `\Z`): `$` would also accept a trailing newline.
CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_RELATIVE = re.compile(r"-?(\d+)\s*(s|m|h|d|w)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_HAS_OFFSET = re.compile(r"(Z|z|[+-]\d{2}:?\d{2})\Z")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def utc_now() -> datetime:
    """The current instant, timezone-aware UTC (the default clock)."""
    return datetime.now(UTC)


def format_utc(moment: datetime) -> str:
    """The canonical stored form of `moment`: UTC, millisecond precision, `Z` suffix."""
    moment = moment.astimezone(UTC)
    # `%Y` gives no leading zeros on Linux: year 999 would sort after 2026 as text.
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def parse_utc(text: str) -> datetime:
    """A canonical stored timestamp back into an aware datetime."""
    return datetime.fromisoformat(text)


def _fromiso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a valid ISO-8601 time: {text!r}") from None


def normalise_entry_time(text: str) -> str:
    """An entry's `createdAt` in canonical form; it must carry `Z` or an explicit offset.

    A time with no offset is refused rather than guessed: a log shipped from a host in another
    zone would otherwise land hours away from where it happened.
    """
    if CANONICAL.fullmatch(text):
        _fromiso(text)  # still reject impossible dates such as 2026-02-30
        return text
    if "T" not in text and " " not in text:
        raise ValueError(f"expected a date and time such as 2026-11-25T08:06:40Z, got {text!r}")
    if not _HAS_OFFSET.search(text):
        raise ValueError(f"time {text!r} has no UTC offset: add Z or e.g. +02:00")
    moment = _fromiso(text)
    try:
        return format_utc(moment)
    except OverflowError:  # 9999-12-31T23:59Z-01:00 is in year 10000 in UTC
        raise ValueError(f"time {text!r} is out of range") from None


def parse_bound(text: str, *, end: bool, clock: Clock = utc_now, option: str = "--since") -> str:
    """A query bound in canonical form, inclusive on both ends.

    Accepts ISO-8601 with `Z` or an offset (no offset means UTC), a bare date (`end=True` makes it
    the last millisecond of that day), `@EPOCH` seconds, relative durations back from now (`15m`,
    `24h`, `7d`, `2w`), and `now`, `today`, `yesterday`. Raises UsageError naming `option`.
    """
    value = text.strip()
    lowered = value.lower()
    now = clock().astimezone(UTC)
    try:
        if lowered == "now":
            return format_utc(now)
        if lowered in ("today", "yesterday"):
            day = now.date() - timedelta(days=1 if lowered == "yesterday" else 0)
            return _day_bound(day, end)
        if match := _RELATIVE.fullmatch(lowered):
            amount = int(match.group(1))
            return format_utc(now - timedelta(**{_UNITS[match.group(2)]: amount}))
        if value.startswith("@"):
            return format_utc(datetime.fromtimestamp(float(value[1:]), UTC))
        if _DATE_ONLY.fullmatch(value):
            return _day_bound(date.fromisoformat(value), end)
        moment = _fromiso(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if not end and moment.microsecond % 1000:
            # Stored times have milliseconds: a lower bound between two of them rounds up, or
            # `--since 08:00:00.0005Z` would include an entry at 08:00:00.000.
            moment += timedelta(microseconds=1000 - moment.microsecond % 1000)
        return format_utc(moment)
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"{option}: cannot read {text!r} as a time: use ISO-8601 (2026-11-25T08:06:40Z), "
            "a date (2026-11-25), a duration (15m, 24h, 7d, 2w), now, today or yesterday"
        ) from None


def _day_bound(day: date, end: bool) -> str:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return format_utc(start + timedelta(days=1, milliseconds=-1) if end else start)


def day_of(created_at: str) -> str:
    """The UTC day (`YYYY-MM-DD`) of a canonical timestamp: the entry's partition."""
    return created_at[:10]
