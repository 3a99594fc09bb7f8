"""Time values: the one stored form, entry timestamps, and the query bounds people type.

Every stored `createdAt` has the fixed-width form `2026-11-25T08:06:40.123Z`, so comparing two of
them as strings compares the instants; the query engine relies on that.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from .errors import UsageError

Clock = Callable[[], datetime]

# Matched whole (fullmatch, `\Z`): `$` would also accept a trailing newline.
CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
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


_DURATION_PART = re.compile(r"(\d{1,9})\s*([a-z]+)\s*")
_UNIT_OF = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "seconds"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "minutes"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "hours"),
    **dict.fromkeys(("d", "day", "days"), "days"),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), "weeks"),
    **dict.fromkeys(("mo", "mon", "month", "months"), "months"),
    **dict.fromkeys(("y", "yr", "yrs", "year", "years"), "years"),
}
_UNITS_HINT = "s, m(in), h, d, w, mo(nths), y(ears)"
_DATE_SHAPE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?(.*)$"
)
_RANGES = (("month", 1, 12), ("hour", 0, 23), ("minute", 0, 59), ("second", 0, 59))


class TimeValueError(ValueError):
    """A time or duration that is wrong in a way worth naming (`month 13 is out of range`)."""


@dataclass(frozen=True)
class Duration:
    """A span people type: calendar months (a year is 12) plus a fixed number of seconds."""

    months: int
    seconds: int

    def before(self, moment: datetime) -> datetime:
        """`moment` minus this span; a month back from March 31 is the last day of February."""
        return _add_months(moment, -self.months) - timedelta(seconds=self.seconds)

    def after(self, moment: datetime) -> datetime:
        """`moment` plus this span (for expiries)."""
        return _add_months(moment, self.months) + timedelta(seconds=self.seconds)


def parse_duration(text: str) -> tuple[Duration, bool] | None:
    """`1y`, `3mo`, `90d`, `2 hours`, `1h30m`, `2 hours ago`, `-7d` as (Duration, ago), or None
    when `text` is not shaped like a duration. Raises ValueError for a duration-shaped text
    with an unknown unit (TimeValueError), so `3x` gets its own message."""
    value = text.strip().lower()
    ago = False
    if value.endswith(" ago"):
        value, ago = value[:-4].rstrip(), True
    if value.startswith("-"):
        value, ago = value[1:].lstrip(), True
    if not value or not value[0].isdigit():
        return None
    months = seconds = 0
    at = 0
    while at < len(value):
        match = _DURATION_PART.match(value, at)
        if not match:
            return None
        amount, unit = int(match.group(1)), match.group(2)
        kind = _UNIT_OF.get(unit)
        if kind is None:
            raise TimeValueError(f"unknown unit {unit!r} in {text.strip()!r}; use {_UNITS_HINT}")
        if kind in ("months", "years"):
            months += amount * (12 if kind == "years" else 1)
        else:
            seconds += int(timedelta(**{kind: amount}).total_seconds())
        at = match.end()
    return Duration(months, seconds), ago


def _add_months(moment: datetime, months: int) -> datetime:
    if not months:
        return moment
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("out of range")
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def date_problem(text: str) -> str | None:
    """What is wrong with a date-shaped `text` (`month 13 is out of range (1-12)`,
    `2026-02 has no day 30`), or None when its fields are in range or it is not date-shaped."""
    match = _DATE_SHAPE.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (
        int(part) if part is not None else None for part in match.groups()[:6]
    )
    fields = dict(
        zip(("month", "hour", "minute", "second"), (month, hour, minute, second), strict=True)
    )
    for name, low, high in _RANGES:
        got = fields[name]
        if got is not None and not low <= got <= high:
            return f"{name} {got} is out of range ({low}-{high})"
    assert year is not None and month is not None and day is not None
    if year < 1:
        return "year 0 is out of range"
    last = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last:
        return f"{year:04d}-{month:02d} has no day {day} (it has {last})"
    return None


def relative_time(text: str, clock: Clock = utc_now) -> str | None:
    """`now` or a duration back from now (`15m`, `2 hours ago`, `3mo`) in canonical form, or
    None when `text` is neither (an ISO time, say). ValueError for a bad duration."""
    if text.strip().lower() == "now":
        return format_utc(clock())
    parsed = parse_duration(text)
    if parsed is None:
        return None
    return format_utc(parsed[0].before(clock().astimezone(UTC)))


def parse_bound(text: str, *, end: bool, clock: Clock = utc_now, option: str = "--since") -> str:
    """A query bound in canonical form, inclusive on both ends.

    Accepts ISO-8601 with `Z` or an offset (no offset means UTC), a bare date (`end=True` makes it
    the last millisecond of that day), `@EPOCH` seconds, durations back from now (`15m`, `24h`,
    `7d`, `2w`, `3mo`, `1y`, `1h30m`, `2 hours ago`), and `now`, `today`, `yesterday`. Raises
    UsageError naming `option` and, where it can, what is wrong (`month 13 is out of range`).
    """
    value = text.strip()
    lowered = value.lower()
    now = clock().astimezone(UTC)
    try:
        if lowered in ("today", "yesterday"):
            day = now.date() - timedelta(days=1 if lowered == "yesterday" else 0)
            return _day_bound(day, end)
        relative = relative_time(value, lambda: now)
        if relative is not None:
            return relative
        if value.startswith("@"):
            return format_utc(datetime.fromtimestamp(float(value[1:]), UTC))
        if problem := date_problem(value):
            raise TimeValueError(problem)
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
    except OverflowError:
        raise UsageError(f"{option}: {text!r} is out of range") from None
    except TimeValueError as exc:
        raise UsageError(f"{option}: cannot read {text!r} as a time: {exc}") from None
    except (ValueError, OSError):
        raise UsageError(
            f"{option}: cannot read {text!r} as a time: use ISO-8601 (2026-11-25T08:06:40Z),"
            " a date (2026-11-25), a duration back from now (15m, 24h, 7d, 2w, 3mo, 1y,"
            " '2 hours ago'), now, today or yesterday"
        ) from None


def _day_bound(day: date, end: bool) -> str:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return format_utc(start + timedelta(days=1, milliseconds=-1) if end else start)


def day_of(created_at: str) -> str:
    """The UTC day (`YYYY-MM-DD`) of a canonical timestamp: the entry's partition."""
    return created_at[:10]


# ----------------------------------------------------------------------------- display zone
#: The zone tables show times in (`--tz`, `TZ`, the config's time_zone); stored and machine
#: output stays UTC. None means the system's local time (the C library's reading of `TZ`).
_display: tzinfo | None = UTC
_display_name = "UTC"


def display_zone(name: str, *, option: str = "--tz", lenient: bool = False) -> tzinfo | None:
    """The zone `name` names: `UTC`, `local` (None: the system's), or an IANA name such as
    `Europe/Paris`. An unknown name is a UsageError naming `option`, unless `lenient` (the `TZ`
    variable, whose POSIX forms such as `EST5EDT` the C library reads): then local time."""
    value = name.strip().lstrip(":")
    if value.upper() in ("UTC", "Z", "GMT", "ETC/UTC"):
        return UTC
    if value.lower() == "local":
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        if lenient:
            return None
        raise UsageError(
            f"{option}: unknown time zone {name!r}; use UTC, local or a name such as Europe/Paris"
        ) from None


def set_display_zone(name: str | None, *, option: str = "--tz", lenient: bool = False) -> None:
    """Show table times in zone `name` from now on (None: UTC)."""
    global _display, _display_name
    _display = UTC if name is None else display_zone(name, option=option, lenient=lenient)
    if _display is UTC:
        _display_name = "UTC"
    elif _display is None:
        _display_name = "local"
    else:
        _display_name = str(_display)


def display_zone_name() -> str:
    """How table headings name the display zone: `UTC`, `local` or e.g. `Europe/Paris`."""
    return _display_name


def display_time(created_at: str) -> str:
    """`2026-11-25 08:06:40` of a canonical timestamp, in the display zone."""
    if _display is UTC:
        return created_at[:10] + " " + created_at[11:19]
    moment = parse_utc(created_at)
    shown = moment.astimezone() if _display is None else moment.astimezone(_display)
    return shown.strftime("%Y-%m-%d %H:%M:%S")
