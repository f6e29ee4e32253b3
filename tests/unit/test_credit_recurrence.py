"""Usage-period and recurrence math, mirroring OpenMeter's recurrence_test.go and usageperiod_test.go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.entitlements.grants import ExpirationDuration, ExpirationPeriod
from domain.entitlements.recurrence import (
    DAY,
    MONTH,
    WEEK,
    YEAR,
    IsoDuration,
    Period,
    Recurrence,
    UsagePeriod,
    UsagePeriodEntry,
    add_months_no_overflow,
    ceil_minute,
    floor_minute,
    parse_interval,
    resets_between,
)
from domain.errors import ValidationError


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


NOW = utc("2024-06-05T14:08:00Z")


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "iso", "enum"),
    [
        ("DAY", "P1D", "DAY"),
        ("WEEK", "P1W", "WEEK"),
        ("MONTH", "P1M", "MONTH"),
        ("YEAR", "P1Y", "YEAR"),
        ("P2W", "P2W", None),
        ("PT1H", "PT1H", None),
        ("p1y", "P1Y", "YEAR"),
        ("P1DT12H", "P1DT12H", None),
        ("PT90M", "PT90M", None),
    ],
)
def test_parse_interval(text: str, iso: str, enum: str | None) -> None:
    d = parse_interval(text)
    assert d.iso() == iso
    assert d.enum_name() == enum


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "P1.5D", "P-1D", "1D", "PT30M", "PT59M59S", "PT0H", "HOUR"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_interval(text)


def test_short_interval_allowed_when_not_a_usage_period() -> None:
    assert parse_interval("PT30M", min_one_hour=False).iso() == "PT30M"


def test_duration_add_clamps_month_end_and_applies_years_first() -> None:
    assert MONTH.add_to(utc("2024-01-31T00:00:00Z")) == utc("2024-02-29T00:00:00Z")
    assert MONTH.add_to(utc("2025-01-31T00:00:00Z")) == utc("2025-02-28T00:00:00Z")
    assert YEAR.add_to(utc("2024-02-29T10:00:00Z")) == utc("2025-02-28T10:00:00Z")
    # years then months, each clamped: Feb 29 + 1Y = Feb 28, + 1M = Mar 28
    assert IsoDuration(years=1, months=1).add_to(utc("2024-02-29T00:00:00Z")) == utc("2025-03-28T00:00:00Z")
    assert MONTH.add_to(utc("2024-03-31T00:00:00Z"), -1) == utc("2024-02-29T00:00:00Z")
    assert add_months_no_overflow(utc("2024-12-31T00:00:00Z"), 2) == utc("2025-02-28T00:00:00Z")


def test_minute_rounding() -> None:
    t = utc("2024-01-01T10:00:30.5Z")
    assert floor_minute(t) == utc("2024-01-01T10:00:00Z")
    assert ceil_minute(t) == utc("2024-01-01T10:01:00Z")
    assert ceil_minute(utc("2024-01-01T10:00:00Z")) == utc("2024-01-01T10:00:00Z")
    with pytest.raises(ValidationError):
        floor_minute(datetime(2024, 1, 1))  # naive


# --- recurrence -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "anchor", "t", "inclusive", "want"),
    [
        (DAY, NOW, NOW, True, NOW),
        (DAY, NOW - timedelta(days=1), NOW, True, NOW),
        (DAY, NOW - timedelta(days=1), NOW - timedelta(hours=1), True, NOW),
        (DAY, NOW - timedelta(days=50), NOW - timedelta(hours=1), True, NOW),
        (DAY, NOW + timedelta(days=1), NOW - timedelta(hours=1), True, NOW),
        (DAY, NOW + timedelta(days=50), NOW - timedelta(hours=1), True, NOW),
        (WEEK, NOW - timedelta(days=1), NOW, True, NOW + timedelta(days=6)),
        (MONTH, NOW, NOW + timedelta(days=1), True, add_months_no_overflow(NOW, 1)),
        (DAY, NOW, NOW, False, NOW + timedelta(days=1)),
        (DAY, NOW - timedelta(days=1), NOW, False, NOW + timedelta(days=1)),
        (DAY, NOW + timedelta(days=1), NOW, False, NOW + timedelta(days=1)),
    ],
)
def test_next_after(interval: IsoDuration, anchor: datetime, t: datetime, inclusive: bool, want: datetime) -> None:
    assert Recurrence(interval, anchor).next_after(t, inclusive) == want


@pytest.mark.parametrize(
    ("interval", "anchor", "t", "inclusive", "want"),
    [
        (DAY, NOW, NOW, False, NOW - timedelta(days=1)),
        (DAY, NOW, NOW, True, NOW),
        (DAY, NOW + timedelta(days=3), NOW + timedelta(hours=1), True, NOW),
        (MONTH, NOW, NOW + timedelta(days=1), False, NOW),
        (MONTH, utc("2025-01-29T12:00:00Z"), utc("2025-01-29T12:10:00Z"), False, utc("2025-01-29T12:00:00Z")),
    ],
)
def test_prev_before(interval: IsoDuration, anchor: datetime, t: datetime, inclusive: bool, want: datetime) -> None:
    assert Recurrence(interval, anchor).prev_before(t, inclusive) == want


@pytest.mark.parametrize(
    ("anchor", "t", "start", "end"),
    [
        ("2025-01-31T15:00:00Z", "2025-08-13T20:00:00Z", "2025-07-31T15:00:00Z", "2025-08-31T15:00:00Z"),
        ("2025-01-31T15:00:00Z", "2025-09-30T15:00:00Z", "2025-09-30T15:00:00Z", "2025-10-31T15:00:00Z"),
        ("2025-01-30T15:00:00Z", "2025-02-13T20:00:00Z", "2025-01-30T15:00:00Z", "2025-02-28T15:00:00Z"),
        ("2024-01-31T00:00:00Z", "2024-02-29T12:00:00Z", "2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z"),
        ("2025-01-31T00:00:00Z", "2025-02-28T00:00:00Z", "2025-02-28T00:00:00Z", "2025-03-31T00:00:00Z"),
        # anchor in the future, month-end: boundaries before it clamp too
        ("2025-03-31T00:00:00Z", "2025-02-10T00:00:00Z", "2025-01-31T00:00:00Z", "2025-02-28T00:00:00Z"),
    ],
)
def test_month_end_anchor_periods(anchor: str, t: str, start: str, end: str) -> None:
    assert Recurrence(MONTH, utc(anchor)).period_at(utc(t)) == Period(utc(start), utc(end))


def test_recurrence_iterates_from_anchor_not_from_previous_boundary() -> None:
    rec = Recurrence(MONTH, utc("2024-01-31T00:00:00Z"))
    it = rec.iterate(utc("2024-01-31T00:00:00Z"))
    got = [next(it) for _ in range(4)]
    assert got == [
        utc(x)
        for x in (
            "2024-01-31T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2024-03-31T00:00:00Z",
            "2024-04-30T00:00:00Z",
        )
    ]


def test_recurrence_far_from_anchor_is_exact() -> None:
    rec = Recurrence(parse_interval("P2W"), utc("2000-01-03T00:00:00Z"))
    t = utc("2031-07-19T13:37:00Z")
    period = rec.period_at(t)
    assert period.start <= t < period.end
    assert period.end - period.start == timedelta(weeks=2)
    assert (period.start - rec.anchor).days % 14 == 0


def test_recurrence_normalises_to_utc() -> None:
    anchor = datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    rec = Recurrence(DAY, anchor)
    assert rec.anchor == utc("2024-01-01T00:00:00Z")
    assert rec.anchor.tzinfo is UTC


# --- expiration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "count", "effective", "expires"),
    [
        (ExpirationDuration.HOUR, 1, "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
        (ExpirationDuration.DAY, 30, "2024-01-01T00:00:00Z", "2024-01-31T00:00:00Z"),
        (ExpirationDuration.WEEK, 1, "2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z"),
        # Go's AddDate overflows: Jan 31 + 1 month = "Feb 31" = Mar 2 (leap year)
        (ExpirationDuration.MONTH, 1, "2024-01-31T00:00:00Z", "2024-03-02T00:00:00Z"),
        (ExpirationDuration.MONTH, 1, "2025-01-31T00:00:00Z", "2025-03-03T00:00:00Z"),
        (ExpirationDuration.YEAR, 1, "2024-02-29T00:00:00Z", "2025-03-01T00:00:00Z"),
    ],
)
def test_grant_expiration(duration: ExpirationDuration, count: int, effective: str, expires: str) -> None:
    assert ExpirationPeriod(duration, count).expires_at(utc(effective)) == utc(expires)


@pytest.mark.parametrize("count", [0, 1001])
def test_expiration_count_bounds(count: int) -> None:
    with pytest.raises(ValidationError):
        ExpirationPeriod(ExpirationDuration.DAY, count)


# --- usage periods --------------------------------------------------------------------------


def test_single_recurrence_usage_period_matches_recurrence() -> None:
    rec = Recurrence(parse_interval("PT1H"), utc("2024-05-01T10:17:00Z"))
    up = UsagePeriod.single(rec)
    for minutes in range(0, 60 * 24 * 3, 97):
        t = utc("2024-05-02T00:00:00Z") + timedelta(minutes=minutes)
        assert up.current_period_at(t) == rec.period_at(t)


def test_usage_period_before_first_entry_returns_first_period() -> None:
    t1 = utc("2025-03-18T11:23:00Z")
    rec1 = Recurrence(MONTH, utc("2025-06-18T01:00:00Z"))
    rec2 = Recurrence(MONTH, utc("2025-06-18T02:00:00Z"))
    up = UsagePeriod((UsagePeriodEntry(t1, rec1), UsagePeriodEntry(utc("2025-06-18T11:23:00Z"), rec2)))
    # the first period starts at the entry time and ends at rec1's next boundary
    assert up.current_period_at(utc("2024-12-01T00:00:00Z")) == Period(t1, utc("2025-04-18T01:00:00Z"))


def test_usage_period_truncates_at_entry_boundaries() -> None:
    t1 = utc("2025-05-10T11:23:00Z")
    t2 = utc("2025-05-23T11:23:00Z")
    up = UsagePeriod(
        (
            UsagePeriodEntry(t1, Recurrence(MONTH, utc("2025-06-05T01:00:00Z"))),
            UsagePeriodEntry(t2, Recurrence(MONTH, utc("2025-06-05T02:00:00Z"))),
        )
    )
    assert up.current_period_at(utc("2025-05-15T00:00:00Z")) == Period(t1, t2)
    assert up.current_period_at(utc("2025-05-30T00:00:00Z")) == Period(t2, utc("2025-06-05T02:00:00Z"))


def test_reset_times_single_recurrence() -> None:
    start_of_day = utc("2025-06-05T00:00:00Z")
    anchor = start_of_day + timedelta(hours=1)
    up = UsagePeriod.single(Recurrence(DAY, anchor), start_of_day)
    now = utc("2025-06-05T14:08:02Z")
    misaligned = up.reset_times(now + timedelta(days=1), now + timedelta(days=5))
    assert misaligned == tuple(anchor + timedelta(days=d) for d in (2, 3, 4, 5))
    aligned = up.reset_times(anchor + timedelta(days=1), anchor + timedelta(days=5))
    assert aligned == tuple(anchor + timedelta(days=d) for d in (1, 2, 3, 4, 5))


def test_reset_times_include_first_period_start() -> None:
    now = utc("2025-06-05T14:08:00Z")
    up = UsagePeriod.single(Recurrence(DAY, utc("2025-06-05T01:00:00Z")), now)
    times = up.reset_times(utc("2025-05-05T00:00:00Z"), now + timedelta(days=3))
    assert times[0] == now
    assert len(times) == 4
    assert len(up.reset_times(now, now + timedelta(days=3))) == 4


def test_reset_times_multiple_recurrences() -> None:
    now = utc("2025-06-05T14:08:00Z")
    sod = utc("2025-06-05T00:00:00Z")
    up = UsagePeriod(
        (
            UsagePeriodEntry(now, Recurrence(DAY, sod + timedelta(hours=1))),
            UsagePeriodEntry(now + timedelta(days=3), Recurrence(DAY, sod + timedelta(hours=2))),
        )
    )
    times = up.reset_times(sod, sod + timedelta(days=5))
    assert times == (
        now,
        sod + timedelta(days=1, hours=1),
        sod + timedelta(days=2, hours=1),
        sod + timedelta(days=3, hours=1),
        now + timedelta(days=3),
        sod + timedelta(days=4, hours=2),
    )


def test_resets_between_is_half_open() -> None:
    a, b, c = utc("2024-01-01T00:00:00Z"), utc("2024-01-02T00:00:00Z"), utc("2024-01-03T00:00:00Z")
    assert resets_between([c, a, b, b], a, c) == (b, c)


def test_usage_period_validation() -> None:
    with pytest.raises(ValidationError):
        UsagePeriod(())
    up = UsagePeriod.single(Recurrence(IsoDuration(minutes=30), NOW))
    with pytest.raises(ValidationError):
        up.validate()
    with pytest.raises(ValidationError):
        Recurrence(IsoDuration(), NOW)
