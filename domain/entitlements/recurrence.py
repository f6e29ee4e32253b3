"""Calendar arithmetic for entitlements: ISO-8601 durations, recurrences and usage periods.

A recurrence is an anchor plus an interval; its boundaries are `anchor + n * interval` for every
integer n, each computed from the anchor (never by stepping from the previous boundary), so a
monthly recurrence anchored on Jan 31 lands on Feb 28/29, Mar 31, Apr 30, ... Month and year steps
clamp to the last day of the target month, as OpenMeter's `AddMonthsNoOverflow` does. All
arithmetic happens in UTC.

A usage period is a timeline of recurrences, each in force from a given time (a reset that moves
the anchor starts a new entry). It answers "which period contains t" and "which resets fall in a
range", with OpenMeter's truncation at entry boundaries.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.errors import ValidationError

MINUTE = timedelta(minutes=1)

_SECONDS_PER_DAY = 86_400
# Average lengths only seed the search for n; the exact boundary is always recomputed from the anchor.
_APPROX_YEAR_S = 365.2425 * _SECONDS_PER_DAY
_APPROX_MONTH_S = _APPROX_YEAR_S / 12
_MAX_STEPS = 1_000_000


# ---------------------------------------------------------------------------------------------
# time helpers


def ensure_utc(t: datetime, field: str = "time") -> datetime:
    """`t` converted to UTC; naive datetimes are refused because their zone is a guess."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValidationError.single(field, "must be timezone-aware", "naive_datetime")
    return t.astimezone(UTC)


def floor_minute(t: datetime) -> datetime:
    """`t` truncated to the minute (OpenMeter's `Truncate(time.Minute)`), in UTC."""
    t = ensure_utc(t)
    return t.replace(second=0, microsecond=0)


def ceil_minute(t: datetime) -> datetime:
    """`t` rounded up to the next full minute unless already on one, in UTC."""
    floored = floor_minute(t)
    return floored if floored == ensure_utc(t) else floored + MINUTE


def is_minute_aligned(t: datetime) -> bool:
    return t.second == 0 and t.microsecond == 0


def add_months_no_overflow(t: datetime, months: int) -> datetime:
    """`t` plus `months` calendar months, clamping the day to the target month's last day."""
    if months == 0:
        return t
    index = t.year * 12 + (t.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    day = min(t.day, calendar.monthrange(year, month)[1])
    return t.replace(year=year, month=month, day=day)


def add_years_no_overflow(t: datetime, years: int) -> datetime:
    """`t` plus `years`, clamping Feb 29 to Feb 28 in non-leap years."""
    return add_months_no_overflow(t, 12 * years)


def add_date_overflowing(t: datetime, years: int = 0, months: int = 0, days: int = 0) -> datetime:
    """Go's `time.AddDate`: an out-of-range day rolls into the next month (Jan 31 + 1 month = Mar 2/3).

    OpenMeter computes a grant's `expiresAt` this way, unlike recurrences, which clamp.
    """
    index = (t.year + years) * 12 + (t.month - 1) + months
    year, month0 = divmod(index, 12)
    first = t.replace(year=year, month=month0 + 1, day=1)
    return first + timedelta(days=t.day - 1 + days)


# ---------------------------------------------------------------------------------------------
# ISO-8601 durations

_ISO_RE = re.compile(
    r"^P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)

_ENUM_INTERVALS = {"DAY": "P1D", "WEEK": "P1W", "MONTH": "P1M", "YEAR": "P1Y"}


@dataclass(frozen=True, slots=True)
class IsoDuration:
    """A calendar duration with whole-number fields (ISO-8601 `PnYnMnWnDTnHnMnS`).

    Adding it applies years, then months (both clamped to the month end), then weeks, days, hours,
    minutes and seconds, matching OpenMeter's `DateTime.Add`.
    """

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, text: str, field: str = "interval") -> IsoDuration:
        """Parse `P1M`, `P2W`, `PT1H`, ... Fractions and negative values are refused."""
        match = _ISO_RE.match(text.strip().upper()) if text else None
        if match is None or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
            raise ValidationError.single(field, f"invalid ISO-8601 duration: {text!r}", "invalid_duration")
        parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
        return cls(parts["y"], parts["mo"], parts["w"], parts["d"], parts["h"], parts["mi"], parts["s"])

    def scaled(self, n: int) -> IsoDuration:
        return IsoDuration(
            self.years * n,
            self.months * n,
            self.weeks * n,
            self.days * n,
            self.hours * n,
            self.minutes * n,
            self.seconds * n,
        )

    def plus(self, other: IsoDuration, n: int = 1) -> IsoDuration:
        """`self + n * other` field by field, as OpenMeter adds and subtracts ISO durations (a
        field may come out negative: P6M minus P14D is six months less fourteen days)."""
        o = other.scaled(n)
        return IsoDuration(*(a + b for a, b in zip(self._fields(), o._fields(), strict=True)))

    @property
    def is_non_negative(self) -> bool:
        return all(v >= 0 for v in self._fields())

    def add_to(self, t: datetime, n: int = 1) -> datetime:
        """`t + n * self` (n may be negative), each field scaled before it is applied."""
        # Field by field without building the scaled duration: a subscription sync adds a cadence
        # to its anchor about 170 times per subscription (Recurrence.at).
        t = add_years_no_overflow(t, self.years * n)
        t = add_months_no_overflow(t, self.months * n)
        if self.weeks or self.days or self.hours or self.minutes or self.seconds:
            n_days = (self.weeks * 7 + self.days) * n
            t += timedelta(days=n_days, hours=self.hours * n, minutes=self.minutes * n, seconds=self.seconds * n)
        return t

    @property
    def is_positive(self) -> bool:
        return any(v > 0 for v in self._fields()) and all(v >= 0 for v in self._fields())

    @property
    def at_least_one_hour(self) -> bool:
        if self.years or self.months or self.weeks or self.days:
            return True
        return self.hours * 3600 + self.minutes * 60 + self.seconds >= 3600

    def approx_seconds(self) -> float:
        return (
            self.years * _APPROX_YEAR_S
            + self.months * _APPROX_MONTH_S
            + (self.weeks * 7 + self.days) * _SECONDS_PER_DAY
            + self.hours * 3600
            + self.minutes * 60
            + self.seconds
        )

    def iso(self) -> str:
        """The canonical ISO string, e.g. `P1Y`, `P2W`, `PT1H` (`intervalISO` on the wire)."""
        date = "".join(
            f"{v}{u}" for v, u in ((self.years, "Y"), (self.months, "M"), (self.weeks, "W"), (self.days, "D")) if v
        )
        clock = "".join(f"{v}{u}" for v, u in ((self.hours, "H"), (self.minutes, "M"), (self.seconds, "S")) if v)
        if not date and not clock:
            return "PT0S"
        return "P" + date + ("T" + clock if clock else "")

    def enum_name(self) -> str | None:
        """`DAY`/`WEEK`/`MONTH`/`YEAR` when the duration is exactly one of those, else None."""
        iso = self.iso()
        for name, value in _ENUM_INTERVALS.items():
            if value == iso:
                return name
        return None

    def _fields(self) -> tuple[int, ...]:
        return (self.years, self.months, self.weeks, self.days, self.hours, self.minutes, self.seconds)

    def __str__(self) -> str:
        return self.iso()


DAY = IsoDuration(days=1)
WEEK = IsoDuration(weeks=1)
MONTH = IsoDuration(months=1)
YEAR = IsoDuration(years=1)


def parse_interval(value: str, field: str = "interval", *, min_one_hour: bool = True) -> IsoDuration:
    """An interval as OpenMeter accepts it: `DAY|WEEK|MONTH|YEAR` or an ISO-8601 duration.

    Usage periods must be at least one hour long (`min_one_hour`).
    """
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ValidationError.single(field, "interval is required", "required")
    duration = IsoDuration.parse(_ENUM_INTERVALS.get(text.upper(), text), field)
    if not duration.is_positive:
        raise ValidationError.single(field, "interval must be positive", "invalid_duration")
    if min_one_hour and not duration.at_least_one_hour:
        raise ValidationError.single(field, "interval must be at least 1 hour", "interval_too_short")
    return duration


# ---------------------------------------------------------------------------------------------
# recurrences


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open time range [start, end)."""

    start: datetime
    end: datetime

    def contains(self, t: datetime) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class Recurrence:
    """Boundaries at `anchor + n * interval` for every integer n; the anchor may be past or future."""

    interval: IsoDuration
    anchor: datetime

    def __post_init__(self) -> None:
        if not self.interval.is_positive:
            raise ValidationError.single("recurrence.interval", "interval must be positive", "invalid_duration")
        object.__setattr__(self, "anchor", ensure_utc(self.anchor, "recurrence.anchor"))

    def at(self, n: int) -> datetime:
        """The n-th boundary (n=0 is the anchor)."""
        return self.interval.add_to(self.anchor, n)

    def index_at_or_before(self, t: datetime) -> int:
        """The largest n with `at(n) <= t`."""
        t = ensure_utc(t)
        n = math.floor((t - self.anchor).total_seconds() / self.interval.approx_seconds())
        while self.at(n) > t:
            n -= 1
        while self.at(n + 1) <= t:
            n += 1
        return n

    def next_after(self, t: datetime, inclusive: bool = True) -> datetime:
        """The first boundary after t; with `inclusive`, t itself when it is a boundary."""
        n = self.index_at_or_before(t)
        at_n = self.at(n)
        if inclusive and at_n == ensure_utc(t):
            return at_n
        return self.at(n + 1)

    def prev_before(self, t: datetime, inclusive: bool = True) -> datetime:
        """The last boundary before t; with `inclusive`, t itself when it is a boundary."""
        n = self.index_at_or_before(t)
        at_n = self.at(n)
        if not inclusive and at_n == ensure_utc(t):
            return self.at(n - 1)
        return at_n

    def period_at(self, t: datetime) -> Period:
        """The recurrence period [boundary, next boundary) that contains t."""
        n = self.index_at_or_before(t)
        return Period(self.at(n), self.at(n + 1))

    def iterate(self, t: datetime, inclusive: bool = True) -> Iterator[datetime]:
        """Boundaries from `next_after(t, inclusive)` onwards, endlessly."""
        n = self.index_at_or_before(t)
        if not (inclusive and self.at(n) == ensure_utc(t)):
            n += 1
        while True:
            yield self.at(n)
            n += 1


# ---------------------------------------------------------------------------------------------
# usage periods


@dataclass(frozen=True, slots=True)
class UsagePeriodEntry:
    """A recurrence in force from `start` (the measurement start, or the time of an anchor-moving reset)."""

    start: datetime
    recurrence: Recurrence

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, "usagePeriod.start"))


@dataclass(frozen=True, slots=True)
class UsagePeriod:
    """An entitlement's usage period: recurrences over time, sorted by their start.

    The first entry's start is the original period start (OpenMeter passes measureUsageFrom).
    """

    entries: tuple[UsagePeriodEntry, ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise ValidationError.single("usagePeriod", "usage period must have at least one recurrence")
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda e: e.start)))

    @classmethod
    def single(cls, recurrence: Recurrence, start: datetime | None = None) -> UsagePeriod:
        """A usage period with one recurrence, starting at `start` (default: the anchor)."""
        return cls((UsagePeriodEntry(start if start is not None else recurrence.anchor, recurrence),))

    def with_entry(self, start: datetime, recurrence: Recurrence) -> UsagePeriod:
        """This usage period with a recurrence taking over from `start` (what a reset records)."""
        return UsagePeriod((*self.entries, UsagePeriodEntry(start, recurrence)))

    def validate(self, field: str = "usagePeriod") -> None:
        for entry in self.entries:
            if not entry.recurrence.interval.at_least_one_hour:
                raise ValidationError.single(f"{field}.interval", "UsagePeriod must be at least 1 hour")

    def entry_index_at(self, t: datetime) -> int:
        """Index of the entry in force at t (the first one when t precedes every entry)."""
        t = ensure_utc(t)
        idx = 0
        for i, entry in enumerate(self.entries):
            if entry.start <= t:
                idx = i
            else:
                break
        return idx

    def entry_at(self, t: datetime) -> UsagePeriodEntry:
        return self.entries[self.entry_index_at(t)]

    def current_period_at(self, t: datetime) -> Period:
        """The usage period containing t, truncated to the entry in force (before the first: the first)."""
        t = ensure_utc(t)
        idx = self.entry_index_at(t)
        entry = self.entries[idx]
        if t < entry.start:
            t = entry.start
        full = entry.recurrence.period_at(t)
        start, end = full.start, full.end
        if entry.start > start:
            start = entry.start
        if idx < len(self.entries) - 1:
            nxt = self.entries[idx + 1].start
            end = min(end, nxt)
        return Period(start, end)

    def reset_times(self, start: datetime, end: datetime) -> tuple[datetime, ...]:
        """Every period start in [start, end], both ends inclusive (OpenMeter's reset timeline).

        The original period start is included when `start` is not after it.
        """
        start, end = ensure_utc(start), ensure_utc(end)
        times: list[datetime] = []
        first = self.entries[0].start
        if start <= first:
            times.append(first)
        at = start
        for i in range(self.entry_index_at(start), len(self.entries)):
            entry = self.entries[i]
            if entry.start > end:
                break
            limit = end
            if i < len(self.entries) - 1:
                limit = min(limit, self.entries[i + 1].start)
            first_step = True
            for _ in range(_MAX_STEPS):
                period = self.current_period_at(at)
                if first_step and period.start == at:
                    times.append(at)
                first_step = False
                if period.end > limit:
                    break
                at = period.end
                times.append(at)
            else:
                raise ValidationError.single("usagePeriod", "too many periods in the requested range")
        return tuple(sorted(set(times)))


def resets_between(reset_times: Sequence[datetime], after: datetime, until: datetime) -> tuple[datetime, ...]:
    """The reset times in (after, until], sorted and de-duplicated: what the engine consumes."""
    return tuple(sorted({ensure_utc(t) for t in reset_times if after < ensure_utc(t) <= until}))
