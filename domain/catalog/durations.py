"""ISO 8601 durations for billing cadences, phase lengths and usage periods.

A `Duration` keeps the calendar parts (months, days) apart from exact time (seconds), because a
month is not a fixed number of days and (across a DST change) a day is not a fixed number of
hours. Years are months x 12 and weeks are days x 7; nothing else is normalised, so `P1M` and
`P30D` stay different, as a customer would expect.

Alignment (`aligned_with`) is the rule publish applies between a plan's billing cadence and each
rate card's (`rate_card_billing_cadence_unaligned`): one must divide the other into a whole number of
parts for every length a month (28-31 days) and a day (23-25 hours) can have, so `P1Y`/`P1M`,
`P1M`/`P1D`, `P1W`/`P1D`, `P1D`/`PT1H` align while `P1M`/`P1W` and `P1D`/`PT2H` do not. That is
OpenMeter's rule, restated.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final

# Whole numbers only: a billing cadence of "P1.5M" has no calendar meaning we could bill by.
_ISO_RE: Final = re.compile(
    r"^P(?!$)(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$"
)
_MONTH_DAYS: Final = (28, 29, 30, 31)
_DAY_HOURS: Final = (23, 24, 25)
# Bounds keep arithmetic on user input cheap (a cadence of 10^30 months is not a cadence).
MAX_COMPONENT: Final = 100_000


class DurationError(ValueError):
    pass


@dataclass(frozen=True, slots=True, order=False)
class Duration:
    months: int = 0
    days: int = 0
    seconds: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        return _parse(text)

    @classmethod
    def _parse_text(cls, text: str) -> Duration:
        match = _ISO_RE.match(text or "")
        if match is None:
            raise DurationError(f"{text!r} is not an ISO 8601 duration such as P1M, P1Y, P2W or PT1H")
        parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
        if any(value > MAX_COMPONENT for value in parts.values()):
            raise DurationError(f"{text!r} is too long")
        return cls(
            months=parts["y"] * 12 + parts["mo"],
            days=parts["w"] * 7 + parts["d"],
            seconds=parts["h"] * 3600 + parts["mi"] * 60 + parts["s"],
        )

    def iso(self) -> str:
        """Canonical text: years and weeks are written when the value is a whole number of them."""
        if self.is_zero():
            return "PT0S"
        out = "P"
        years, months = divmod(self.months, 12)
        if years:
            out += f"{years}Y"
        if months:
            out += f"{months}M"
        if self.days:
            weeks, days = divmod(self.days, 7)
            if days == 0 and not self.months:
                out += f"{weeks}W"
            else:
                out += f"{self.days}D"
        if self.seconds:
            hours, rest = divmod(self.seconds, 3600)
            minutes, seconds = divmod(rest, 60)
            out += "T"
            if hours:
                out += f"{hours}H"
            if minutes:
                out += f"{minutes}M"
            if seconds:
                out += f"{seconds}S"
        return out

    def __str__(self) -> str:
        return self.iso()

    def is_zero(self) -> bool:
        return self.months == 0 and self.days == 0 and self.seconds == 0

    def shortest_seconds(self) -> int:
        """The fewest seconds this duration can last (short months, 23-hour days)."""
        return self.months * 28 * 23 * 3600 + self.days * 23 * 3600 + self.seconds

    @property
    def whole_minutes(self) -> bool:
        """No seconds part: usage periods made from it reset on the minute, the entitlement engine's
        resolution."""
        return self.seconds % 60 == 0

    def at_least(self, other: Duration) -> bool:
        """True when this duration is never shorter than `other`, whatever the calendar."""
        return self._bounds()[0] >= other._bounds()[1]

    def _bounds(self) -> tuple[int, int]:
        low = self.months * 28 * 23 * 3600 + self.days * 23 * 3600 + self.seconds
        high = self.months * 31 * 25 * 3600 + self.days * 25 * 3600 + self.seconds
        return low, high

    def _lengths(self) -> list[int]:
        return [
            self.months * md * dh * 3600 + self.days * dh * 3600 + self.seconds
            for md in _MONTH_DAYS
            for dh in _DAY_HOURS
        ]

    def divisible_by(self, smaller: Duration) -> bool:
        """This duration is a whole multiple (>= 1) of `smaller` for every calendar."""
        if self.is_zero() or smaller.is_zero():
            return False
        for big, small in zip(self._lengths(), smaller._lengths(), strict=True):
            if small <= 0 or big % small != 0 or big // small < 1:
                return False
        return True

    def aligned_with(self, other: Duration) -> bool:
        return self == other or self.divisible_by(other) or other.divisible_by(self)

    def add_to(self, moment: datetime, times: int = 1) -> datetime:
        """`moment` plus this duration `times` over, months first (clamped to the month's last day,
        Jan 31 + P1M = Feb 28/29), then days, then exact seconds. Multiplying first and adding once
        keeps anchored recurrences stable (Jan 31 + 2 x P1M is Mar 31, not Mar 28)."""
        result = moment
        if self.months:
            total = result.month - 1 + self.months * times
            year = result.year + total // 12
            month = total % 12 + 1
            day = min(result.day, calendar.monthrange(year, month)[1])
            result = result.replace(year=year, month=month, day=day)
        if self.days:
            result = result + timedelta(days=self.days * times)
        if self.seconds:
            result = result + timedelta(seconds=self.seconds * times)
        return result


def period_fraction(start: datetime, end: datetime, full_start: datetime, full_end: datetime) -> Decimal:
    """The share of [full_start, full_end) that [start, end) covers, exactly (for proration)."""
    full = full_end - full_start
    part = end - start
    if full <= timedelta(0):
        return Decimal(1)
    ratio = Fraction(part // timedelta(microseconds=1), full // timedelta(microseconds=1))
    return Decimal(ratio.numerator) / Decimal(ratio.denominator)


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> Duration:
    """`Duration.parse`, remembered: a billing pass reads each invoice's workflow durations (the
    same few texts) about 16 times per invoice. A Duration is immutable, so one is shared."""
    return Duration._parse_text(text)
