"""Burn-down engine cases, mirroring OpenMeter's credit/engine run_test.go and reset_test.go and the
engine-level parts of entitlement/metered reset_test.go."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.entitlements.engine import (
    BurnDownError,
    GrantUsage,
    RunInput,
    RunResult,
    Snapshot,
    UsageMode,
    UsageWindow,
    breakpoints,
    run,
    run_with,
)
from domain.entitlements.grants import ExpirationDuration, ExpirationPeriod, Grant
from domain.entitlements.models import GrantInput
from domain.entitlements.recurrence import DAY, WEEK, Recurrence, add_months_no_overflow
from domain.errors import ValidationError

T1 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
D = timedelta(days=1)


def dec(x: float | int | str) -> Decimal:
    return Decimal(str(x))


@dataclass
class Meter:
    """Events as (time, value); answers windows like ClickHouse would for SUM, LATEST or UNIQUE_COUNT."""

    events: list[tuple[datetime, Any]] = field(default_factory=list)
    aggregation: str = "SUM"
    queries: list[UsageWindow] = field(default_factory=list)

    def use(self, value: Any, at: datetime) -> None:
        self.events.append((at, value))

    def query(self, w: UsageWindow) -> Decimal:
        self.queries.append(w)
        inside = sorted((e for e in self.events if w.since <= e[0] < w.until), key=lambda e: e[0])
        if self.aggregation == "SUM":
            return sum((dec(v) for _, v in inside), Decimal(0))
        if self.aggregation == "LATEST":
            return dec(inside[-1][1]) if inside else Decimal(0)
        if self.aggregation == "UNIQUE_COUNT":
            return Decimal(len({v for _, v in inside}))
        raise AssertionError(self.aggregation)


def grant(
    gid: str,
    amount: float = 100,
    *,
    priority: int = 1,
    effective: datetime = T1,
    expiration: ExpirationPeriod | None = ExpirationPeriod(ExpirationDuration.DAY, 30),  # noqa: B008
    **kw: Any,
) -> Grant:
    return Grant(id=gid, amount=dec(amount), priority=priority, effective_at=effective, expiration=expiration, **kw)


def snap(at: datetime, balances: dict[str, float], **kw: Any) -> Snapshot:
    return Snapshot(at=at, balances={k: dec(v) for k, v in balances.items()}, **kw)


def go(
    meter: Meter,
    grants: Iterable[Grant],
    start: Snapshot,
    until: datetime,
    resets: Iterable[datetime] = (),
    **kw: Any,
) -> RunResult:
    return run_with(RunInput(grants=tuple(grants), start=start, until=until, resets=tuple(resets), **kw), meter.query)


G1 = grant("grant-1")
G2 = grant("grant-2")


# --- run_test.go ----------------------------------------------------------------------------


def test_same_result_on_subsequent_runs() -> None:
    m = Meter()
    m.use(120, T1 + H)
    args = ([G1], snap(T1, {"grant-1": 100}), T1 + D + H)
    assert go(m, *args) == go(m, *args)


def test_reports_overage_if_there_are_no_grants() -> None:
    m = Meter()
    m.use(50, T1 + H)
    res = go(m, [], snap(T1, {}), T1 + 30 * D)
    assert res.overage == 50
    assert res.balance == 0
    assert dict(res.snapshot.balances) == {}
    [seg] = res.history
    assert (seg.start, seg.end, seg.usage, seg.overage, seg.grant_usages) == (T1, T1 + 30 * D, 50, 50, ())
    assert dict(seg.balances_at_start) == {}
    assert res.usage == 50
    assert res.total_available_grant_amount == 0


def test_errors_if_balance_was_provided_for_nonexistent_grants() -> None:
    with pytest.raises(BurnDownError):
        go(Meter(), [], snap(T1, {"grant-1": 100}), T1 + 30 * D)


def test_missing_balance_is_filled_from_grant_activity() -> None:
    # OpenMeter errors here; its callers first fill missing grants (amount if active, else 0).
    m = Meter()
    m.use(50, T1 + H)
    res = go(m, [G1, G2], snap(T1, {"grant-1": 100}), T1 + 29 * D)
    assert res.start.balances == {"grant-1": 100, "grant-2": 100}
    assert res.grant_balances == {"grant-1": 50, "grant-2": 100}


def test_zero_length_period_does_nothing() -> None:
    m = Meter()
    m.use(100, T1 + H)
    start = snap(T1, {"grant-1": 100}, usage=dec(10), period_start=T1 - D)
    m.use(10, T1 - H)
    res = go(m, [G1], start, T1)
    assert res.snapshot == start
    assert res.balance == 100
    assert res.usage == 10


def test_burns_down_single_active_grant() -> None:
    m = Meter()
    m.use(50, T1 + H)
    res = go(m, [G1], snap(T1, {"grant-1": 100}), T1 + 29 * D)
    assert res.grant_balances["grant-1"] == 50
    assert res.total_available_grant_amount == 100
    # the grant expires exactly at `until`: it no longer counts, but what it covered still does
    res = go(m, [G1], snap(T1, {"grant-1": 100}), T1 + 30 * D)
    assert res.balance == 0
    assert res.snapshot.balances["grant-1"] == 0
    assert res.total_available_grant_amount == 50


def test_zero_balance_for_grant_with_future_effective_at() -> None:
    m = Meter()
    m.use(50, T1 + H)
    g = grant("grant-1", effective=T1 + 10 * D)
    res = go(m, [g], snap(T1, {"grant-1": 100}), T1 + 5 * D)
    assert res.snapshot.balances["grant-1"] == 0
    assert res.balance == 0
    assert res.overage == 50


def test_zero_balance_for_deleted_grant() -> None:
    m = Meter()
    m.use(50, T1 + H)
    g = grant("grant-1", deleted_at=T1)
    res = go(m, [g], snap(T1, {"grant-1": 100}), T1 + 5 * D)
    assert res.snapshot.balances["grant-1"] == 0


@pytest.mark.parametrize("attr", ["deleted_at", "voided_at"])
def test_burns_down_grant_until_deleted_or_voided(attr: str) -> None:
    end_at = T1 + H
    m = Meter()
    m.use(50, end_at - M)
    m.use(50, end_at + M)
    g = grant("grant-1", **{attr: end_at})
    res = go(m, [g], snap(T1, {"grant-1": 100}), T1 + 5 * D)
    assert res.snapshot.balances["grant-1"] == 0
    assert res.overage == 50
    assert len(res.history) == 2
    assert [s.usage for s in res.history] == [50, 50]
    assert res.history[1].balances_at_start["grant-1"] == 0
    assert res.history[0].reasons.priority_change
    # 50 was used before it went away, so it still counts as available in the period
    assert res.total_available_grant_amount == 50


def test_void_time_is_truncated_to_the_minute() -> None:
    m = Meter()
    m.use(50, T1 + H - M)
    m.use(50, T1 + H + 10 * timedelta(seconds=1))
    g = grant("grant-1", voided_at=T1 + H + timedelta(seconds=30))
    res = go(m, [g], snap(T1, {"grant-1": 100}), T1 + 5 * D)
    assert res.history[0].end == T1 + H
    assert res.overage == 50


def test_zero_balance_for_grant_with_past_expiry() -> None:
    m = Meter()
    m.use(50, T1 + H)
    g = grant("grant-1", effective=T1 - 365 * D, expiration=ExpirationPeriod(ExpirationDuration.DAY, 1))
    res = go(m, [g], snap(T1, {"grant-1": 100}), T1 + 5 * D)
    assert res.snapshot.balances["grant-1"] == 0


def test_does_not_burn_grant_that_expires_at_start_of_period() -> None:
    m = Meter()
    m.use(50, T1 + H)
    g = grant("grant-1", effective=T1 - 365 * D, expiration=ExpirationPeriod(ExpirationDuration.DAY, 1))
    assert g.expires_at is not None
    res = go(m, [g], snap(g.expires_at, {"grant-1": 100}), g.expires_at + 5 * D)
    assert res.snapshot.balances["grant-1"] == 0


def test_burns_down_grant_that_becomes_active_during_phase() -> None:
    m = Meter()
    m.use(25, T1 + H)  # after effective_at
    m.use(25, T1 - H)  # before effective_at: overage, burnt once the grant takes effect
    res = go(m, [G1], snap(T1 - D, {"grant-1": 0}), T1 + D)
    assert res.snapshot.balances["grant-1"] == 50
    assert len(res.history) == 2
    assert res.history[0].balances_at_start["grant-1"] == 0
    assert res.history[0].overage == 25
    # the starting balance does not have the overage deducted; it is carried separately
    assert res.history[1].balances_at_start["grant-1"] == 100
    assert res.history[1].overage_at_start == 25
    assert res.history[1].grant_usages == (GrantUsage("grant-1", dec(50), exhausted=False),)
    assert res.overage == 0
    assert res.usage == 50


def test_burns_down_multiple_grants() -> None:
    m = Meter()
    m.use(200, T1 + H)
    res = go(m, [G1, G2], snap(T1, {"grant-1": 100, "grant-2": 100}), T1 + D)
    assert res.grant_balances == {"grant-1": 0, "grant-2": 0}
    assert res.overage == 0


def test_burns_down_higher_priority_first() -> None:
    m = Meter()
    m.use(120, T1 + H)
    g1 = grant("grant-1", priority=1)
    g2 = grant("grant-2", priority=2)
    res = go(m, [g2, g1], snap(T1, {"grant-1": 100, "grant-2": 100}), T1 + D)
    assert res.grant_balances == {"grant-1": 0, "grant-2": 80}
    assert res.history[0].grant_usages == (
        GrantUsage("grant-1", dec(100), exhausted=True),
        GrantUsage("grant-2", dec(20), exhausted=False),
    )
    assert res.grant_usages == {"grant-1": 100, "grant-2": 20}


def test_burns_down_grant_that_expires_first() -> None:
    m = Meter()
    m.use(120, T1 + H)
    g2 = grant("grant-2", expiration=ExpirationPeriod(ExpirationDuration.YEAR, 100))
    res = go(m, [g2, G1], snap(T1, {"grant-1": 100, "grant-2": 100}), T1 + D)
    assert res.grant_balances == {"grant-1": 0, "grant-2": 80}


def test_grant_without_expiry_burns_after_expiring_ones() -> None:
    m = Meter()
    m.use(120, T1 + H)
    g2 = grant("grant-2", expiration=None)
    res = go(m, [g2, G1], snap(T1, {"grant-1": 100, "grant-2": 100}), T1 + D)
    assert res.grant_balances == {"grant-1": 0, "grant-2": 80}


def test_burn_order_then_creation_then_id() -> None:
    m = Meter()
    m.use(150, T1 + H)
    a = grant("a", created_at=T1 - H)
    b = grant("b", created_at=T1 - 2 * H)
    c = grant("c", created_at=T1 - 2 * H)
    res = go(m, [a, c, b], Snapshot.starting([a, b, c], T1), T1 + D)
    assert res.grant_balances == {"b": 0, "c": 50, "a": 100}


def test_burns_down_grant_that_expires_first_among_many() -> None:
    grants = [grant(f"grant-{i}") for i in range(2000)]
    grants[0] = grant("grant-0", expiration=ExpirationPeriod(ExpirationDuration.DAY, 29))
    grants.reverse()
    m = Meter()
    m.use(99, T1 + H)
    res = go(m, grants, Snapshot.starting(grants, T1), T1 + D)
    assert res.grant_balances["grant-0"] == 1
    assert all(v == 100 for k, v in res.grant_balances.items() if k != "grant-0")


def test_burns_down_recurring_grant() -> None:
    m = Meter()
    m.use(120, T1 + H)
    g1 = grant("grant-1", recurrence=Recurrence(DAY, T1))
    res = go(m, [g1], snap(T1, {"grant-1": 100}), T1 + D + H)
    # 20 of overage carries over; the grant refills to 100 after a day and the overage burns it
    assert res.grant_balances["grant-1"] == 80
    assert res.history[0].reasons.recurrence == ("grant-1",)
    assert (res.history[0].overage, res.history[1].balance_at_start, res.overage) == (20, 100, 0)
    m.use(20, T1 + D + 30 * M)
    assert go(m, [g1], snap(T1, {"grant-1": 100}), T1 + D + H).grant_balances["grant-1"] == 60


def _recurring_pair() -> tuple[Grant, Grant]:
    g1 = grant("grant-1", priority=3, effective=T1 - D)
    g2 = grant("grant-2", priority=1, effective=T1 + D, recurrence=Recurrence(WEEK, T1 + 3 * D))
    return g1, g2


def test_recurring_grant_taking_effect_later_before_it_has_recurred() -> None:
    g1, g2 = _recurring_pair()
    m = Meter()
    m.use(20, T1 - H)  # g1, before the start
    m.use(20, T1 + H)  # g1
    m.use(20, T1 + D - timedelta(seconds=1))  # g1, its last period alone
    m.use(20, T1 + D)  # g2: higher priority, already effective
    res = go(m, [g1, g2], snap(T1, {"grant-1": 80, "grant-2": 100}), T1 + 10 * D)
    assert res.grant_balances["grant-1"] == 40
    assert res.grant_balances["grant-2"] == 100  # recurred on day 10


def test_recurring_grant_taking_effect_later_after_it_has_recurred() -> None:
    g1, g2 = _recurring_pair()
    m = Meter()
    m.use(20, T1 - H)
    m.use(20, T1 + H)
    m.use(20, T1 + D - timedelta(seconds=1))
    m.use(20, T1 + D)
    m.use(20, T1 + 3 * D)
    res = go(m, [g1, g2], snap(T1, {"grant-1": 80, "grant-2": 100}), T1 + 10 * D - H)
    assert res.grant_balances["grant-1"] == 40
    assert res.grant_balances["grant-2"] == 80


def test_does_not_reapply_recurrence_on_later_activity_changes() -> None:
    recurrence = T1 + D
    activity = recurrence + H
    m = Meter()
    m.use(30, recurrence + 30 * M)
    m.use(20, activity + 30 * M)
    g1 = grant("grant-1", priority=1, recurrence=Recurrence(DAY, recurrence))
    g2 = grant("grant-2", priority=2, effective=activity)
    res = go(m, [g1, g2], snap(T1, {"grant-1": 100, "grant-2": 0}), activity + H)
    assert res.snapshot.balances == {"grant-1": 50, "grant-2": 100}
    assert len(res.history) == 3
    assert res.history[1].balances_at_start["grant-1"] == 100
    assert res.history[2].balances_at_start["grant-1"] == 70


def test_returns_burn_down_history() -> None:
    start, end = T1, add_months_no_overflow(T1, 1)
    tg1, tg2, tg2r = T1 + 5 * D, T1 + 20 * D, T1 + 25 * D
    m = Meter()
    for value, at in ((50, start + H), (30, tg1 + H), (30, tg2 + H), (20, tg2r + H)):
        m.use(value, at)
    two_months = ExpirationPeriod(ExpirationDuration.MONTH, 2)
    g1 = grant("grant-1", priority=3, effective=tg1, expiration=two_months)
    g2 = grant("grant-2", priority=1, effective=tg2, expiration=two_months, recurrence=Recurrence(WEEK, tg2r))
    res = go(m, [g1, g2], snap(start, {"grant-1": 80, "grant-2": 100}), end)
    assert [(s.start, s.end) for s in res.history] == [(start, tg1), (tg1, tg2), (tg2, tg2r), (tg2r, end)]
    assert [s.usage for s in res.history] == [50, 30, 30, 20]
    # 50 of overage before any grant; g1 takes it plus 30; g2 takes 30, recurs, takes 20
    assert [s.overage for s in res.history] == [50, 0, 0, 0]
    assert res.grant_balances == {"grant-1": 20, "grant-2": 80}
    first = res.history[0]
    assert first.balance_at_start == 0  # neither grant is active yet
    assert res.history[1].balances_at_end == {"grant-1": 20, "grant-2": 0}


def test_sequential_periods_across_timezones_come_out_in_utc() -> None:
    from zoneinfo import ZoneInfo

    start = T1
    t1 = (start + H).astimezone(ZoneInfo("America/New_York"))
    t2 = (start + H + M).astimezone(ZoneInfo("Europe/Budapest"))
    t3 = (start + H + 9 * M).astimezone(ZoneInfo("Asia/Tokyo"))
    end = t3 + H
    m = Meter()
    g1 = grant("grant-1", priority=3, effective=t1, expiration=ExpirationPeriod(ExpirationDuration.MONTH, 1))
    g2 = grant("grant-2", priority=1, effective=t2, expiration=ExpirationPeriod(ExpirationDuration.HOUR, 1))
    g3 = grant("grant-3", priority=2, effective=t3, expiration=ExpirationPeriod(ExpirationDuration.WEEK, 1))
    res = go(m, [g1, g2, g3], snap(start, {"grant-1": 80, "grant-2": 100, "grant-3": 100}), end.astimezone(UTC))
    bounds = [(s.start, s.end) for s in res.history]
    u = [x.astimezone(UTC) for x in (start, t1, t2, t3, t2 + H, end)]
    assert bounds == list(itertools.pairwise(u))
    assert all(s.start.tzinfo is UTC for s in res.history)


def test_latest_aggregation_treats_grants_as_limits() -> None:
    start, end = T1, T1 + 3 * H
    m = Meter(aggregation="LATEST")
    m.use(0, start - M)
    g1 = grant("g1-expired", 50, priority=1, expiration=ExpirationPeriod(ExpirationDuration.HOUR, 1))
    g2 = grant("g2-active", 100, priority=2)
    g3 = grant("g3-later", 75, priority=3, effective=start + H)
    g4 = grant("g4-future", 200, priority=4, effective=start + 4 * H)
    for value, at in ((15, start), (30, start + H), (10, start + 2 * H), (20, start + 3 * H)):
        m.use(value, at)
    grants = [g1, g2, g3, g4]
    res = go(
        m,
        grants,
        snap(start, {"g1-expired": 50, "g2-active": 100, "g3-later": 75, "g4-future": 200}),
        end,
        mode=UsageMode.LATEST,
    )
    # 175 active at the end minus the latest value 10
    assert res.balance == 165
    assert res.usage == 25
    assert res.snapshot.total_grant_usage == 25
    assert res.total_available_grant_amount == 190
    assert len(res.history) == 2
    assert (res.history[0].usage, res.history[0].balance_at_start, res.history[0].balance_at_end) == (15, 150, 135)
    assert (res.history[1].usage, res.history[1].balance_at_start, res.history[1].balance_at_end) == (10, 175, 165)
    assert [(w.since, w.until) for w in m.queries] == [(start, start + H), (start + H, end)]


def test_unique_count_is_not_double_counted_across_segments() -> None:
    m = Meter(aggregation="UNIQUE_COUNT")
    for i in range(10):
        m.use(f"user-{i % 4}", T1 + i * M)  # 4 distinct users before the second grant
    for i in range(10):
        m.use(f"user-{i % 6}", T1 + 2 * H + i * M)  # 2 new ones after it
    g1 = grant("grant-1", 100)
    g2 = grant("grant-2", 100, priority=2, effective=T1 + H)
    res = go(m, [g1, g2], Snapshot.starting([g1, g2], T1), T1 + D)
    assert [s.usage for s in res.history] == [4, 2]
    assert res.usage == 6
    assert res.grant_balances == {"grant-1": 94, "grant-2": 100}
    # every window of the usage period starts at the period start
    assert {w.since for w in m.queries} == {T1}


# --- reset_test.go --------------------------------------------------------------------------


def test_reset_rolls_over_grant_balance() -> None:
    m = Meter()
    m.use(10, T1 + H)
    g1 = grant("grant-1", max_rollover_amount=dec(50))
    reset = T1 + 5 * H
    res = go(m, [g1], snap(T1, {"grant-1": 100}, period_start=T1 - D), T1 + D, [reset])
    # 100 - 10 = 90; min(50, max(0, 90)) = 50
    assert res.grant_balances["grant-1"] == 50
    assert res.usage == 0
    assert res.snapshot.period_start == reset
    assert len(res.history) == 3
    first, rollover, last = res.history
    assert (first.balance_at_start, first.overage_at_start, first.usage) == (100, 0, 10)
    assert first.reasons.usage_reset
    assert rollover.reasons.rollover and (rollover.start, rollover.end) == (reset, reset)
    assert (rollover.balance_at_start, rollover.overage_at_start, rollover.usage, rollover.grant_usages) == (
        50,
        0,
        0,
        (),
    )
    assert rollover.balance_at_end == 50
    assert not last.reasons.rollover
    assert (last.balance_at_start, last.overage_at_start, last.usage) == (50, 0, 0)


def test_reset_carries_over_overage_to_next_period() -> None:
    m = Meter()
    m.use(10, T1 + H)
    m.use(100, T1 + 2 * H)
    g1 = grant("grant-1", max_rollover_amount=dec(50), min_rollover_amount=dec(50))
    reset = T1 + 5 * H
    res = go(m, [g1], snap(T1, {"grant-1": 100}), T1 + D, [reset], preserve_overage=True)
    assert res.grant_balances["grant-1"] == 40
    assert res.total_available_grant_amount == 50
    assert len(res.history) == 3
    first, rollover, last = res.history
    assert (first.balance_at_start, first.overage_at_start, first.overage, first.usage) == (100, 0, 10, 110)
    assert first.reasons.usage_reset
    assert rollover.reasons.rollover
    assert (rollover.balance_at_start, rollover.overage_at_start, rollover.usage, rollover.overage) == (50, 10, 0, 0)
    assert rollover.grant_usages == (GrantUsage("grant-1", dec(10), exhausted=False),)
    assert rollover.balance_at_end == 40
    assert (last.balance_at_start, last.overage_at_start, last.usage) == (40, 0, 0)


def test_reset_drops_overage_unless_preserved() -> None:
    m = Meter()
    m.use(110, T1 + H)
    g1 = grant("grant-1", max_rollover_amount=dec(50), min_rollover_amount=dec(50))
    res = go(m, [g1], snap(T1, {"grant-1": 100}), T1 + D, [T1 + 5 * H])
    assert res.grant_balances["grant-1"] == 50
    assert res.overage == 0
    assert res.history[1].overage_at_start == 0


def test_no_reset_extends_starting_usage() -> None:
    m = Meter()
    m.use(10, T1 - 2 * H)
    m.use(10, T1 + H)
    g2 = grant("grant-2", effective=T1 + 2 * H)
    start = snap(T1, {"grant-1": 100, "grant-2": 100}, usage=dec(10), period_start=T1 - D)
    res = go(m, [G1, g2], start, T1 + D)
    assert res.usage == 20
    assert res.snapshot.period_start == T1 - D
    assert len(res.history) == 2
    assert not any(s.reasons.usage_reset for s in res.history)


def test_until_at_a_reset_returns_the_starting_balance_of_the_new_period() -> None:
    m = Meter()
    m.use(10, T1 + H)
    g1 = grant("grant-1", max_rollover_amount=dec(50))
    reset = T1 + D
    res = go(m, [g1], snap(T1, {"grant-1": 100}), reset, [reset])
    assert res.usage == 0
    assert res.snapshot.period_start == reset
    assert len(res.history) == 3
    assert res.history[0].reasons.usage_reset
    assert res.history[1].reasons.rollover
    assert not res.history[2].reasons.usage_reset
    assert res.balance == 50


def test_recurrence_at_reset_applies_after_rollover() -> None:
    m = Meter()
    m.use(10, T1 + H)
    g1 = grant("grant-1", recurrence=Recurrence(DAY, T1))
    reset = T1 + D
    res = go(m, [g1], snap(T1, {"grant-1": 100}), reset, [reset])
    assert len(res.history) == 3
    assert res.history[1].balances_at_start["grant-1"] == 0  # max rollover 0
    assert res.history[2].balances_at_start["grant-1"] == 100
    assert res.grant_balances["grant-1"] == 100


def test_reset_at_the_starting_snapshot_is_already_applied() -> None:
    m = Meter()
    m.use(10, T1 + H)
    g1 = grant("grant-1", max_rollover_amount=dec(50))
    res = go(m, [g1], snap(T1, {"grant-1": 100}), T1 + D, [T1])
    assert not any(s.reasons.rollover for s in res.history)
    assert res.balance == 90


# --- entitlement/metered reset_test.go (engine part) ----------------------------------------


def _two_grants(g2_min: float, g2_max: float) -> list[Grant]:
    exp = ExpirationPeriod(ExpirationDuration.DAY, 3)
    return [
        grant("g1", 1000, priority=1, effective=T1 + 2 * H, expiration=exp, max_rollover_amount=dec(1000)),
        grant(
            "g2",
            1000,
            priority=3,
            effective=T1 + 2 * H,
            expiration=exp,
            min_rollover_amount=dec(g2_min),
            max_rollover_amount=dec(g2_max),
        ),
    ]


def test_balance_after_reset_with_rolled_over_grants() -> None:
    grants = _two_grants(0, 100)
    m = Meter()
    m.use(600, T1 + M)
    reset = T1 + 5 * H
    res = go(m, grants, Snapshot.starting(grants, T1), reset, [reset])
    assert res.usage == 0
    assert res.balance == 500  # 400 rolled over + min(100, 1000)
    assert res.overage == 0
    assert res.grant_balances == {"g1": 400, "g2": 100}


@pytest.mark.parametrize(("used", "balance", "overage", "g2"), [(2100, 400, 0, 400), (2600, 0, 100, 0)])
def test_preserved_overage_is_deducted_from_the_new_balance(used: int, balance: int, overage: int, g2: int) -> None:
    grants = _two_grants(500, 500)
    m = Meter()
    m.use(used, T1 + M)
    reset = T1 + 5 * H
    res = go(m, grants, Snapshot.starting(grants, T1), reset, [reset], preserve_overage=True)
    assert res.usage == 0
    assert res.balance == balance
    assert res.overage == overage
    assert res.grant_balances == {"g1": 0, "g2": g2}


def test_a_reset_s_own_preserve_overage_overrides_the_entitlement_s() -> None:
    # OpenMeter's reset.go: the request's preserveOverage, falling back to the entitlement's. Two
    # resets: the first keeps its overage (asked for), the second follows the default (dropped).
    grants = _two_grants(500, 500)
    m = Meter()
    m.use(2600, T1 + M)
    r1, r2 = T1 + 5 * H, T1 + 10 * H
    m.use(600, r1 + H)
    start = Snapshot.starting(grants, T1)
    res = go(m, grants, start, r1, [r1], preserve_overage_at={r1: True})
    assert (res.balance, res.overage, res.grant_balances) == (0, 100, {"g1": 0, "g2": 0})
    # The same reset without the override drops the overage: g2 keeps its minimum rollover.
    res = go(m, grants, start, r1, [r1])
    assert (res.balance, res.overage) == (500, 0)
    # An override of False beats an entitlement default of True.
    res = go(m, grants, start, r1, [r1], preserve_overage=True, preserve_overage_at={r1: False})
    assert (res.balance, res.overage) == (500, 0)
    # Only the reset named is overridden: at r2 the default (not preserved) applies again.
    res = go(m, grants, start, r2, [r1, r2], preserve_overage_at={r1: True})
    assert (res.overage, res.grant_balances) == (0, {"g1": 0, "g2": 500})
    rollovers = [s for s in res.history if s.reasons.rollover]
    assert [(s.start, s.overage_at_start, s.overage) for s in rollovers] == [(r1, 600, 100), (r2, 0, 0)]


def test_grants_taking_effect_after_a_reset_and_a_second_reset() -> None:
    grants = _two_grants(0, 100)
    r1, r2 = T1 + 5 * H, T1 + 10 * H
    g3 = grant(
        "g3",
        1000,
        effective=r1 + H,
        expiration=ExpirationPeriod(ExpirationDuration.DAY, 3),
        max_rollover_amount=dec(1000),
    )
    m = Meter()
    m.use(600, T1 + M)
    m.use(300, r1 + 10 * M)
    res = go(m, [*grants, g3], Snapshot.starting(grants, T1), r2, [r1, r2])
    # after r1: g1 400, g2 100; 300 burns g1 (priority 1, earlier expiry than g3) -> 100
    assert res.grant_balances == {"g1": 100, "g2": 100, "g3": 1000}
    assert res.balance == 1200


def test_grant_issued_at_the_reset_time() -> None:
    g1 = grant("g1", 1000, effective=T1 + 2 * H, expiration=ExpirationPeriod(ExpirationDuration.DAY, 3))
    reset = T1 + 5 * H
    g2 = grant(
        "g2",
        1000,
        effective=reset,
        expiration=ExpirationPeriod(ExpirationDuration.DAY, 3),
        max_rollover_amount=dec(1000),
    )
    m = Meter()
    m.use(0, T1)
    # reset first (g2 does not exist yet): nothing rolls over
    after_reset = go(m, [g1], Snapshot.starting([g1], T1), reset, [reset])
    assert after_reset.balance == 0
    # g2 is created later; a run from the cached reset snapshot sees it at full amount
    for until in (reset, reset + M):
        res = go(m, [g1, g2], after_reset.snapshot, until, [reset])
        assert res.usage == 0
        assert res.balance == 1000
    # and so does a full recomputation
    res = go(m, [g1, g2], Snapshot.starting([g1, g2], T1), reset, [reset])
    assert res.balance == 1000


def test_grant_expiring_at_the_reset_time() -> None:
    reset = T1 + 3 * D
    g1 = grant("g1", 1000, effective=T1 + 2 * H, expires_at=reset, expiration=None, max_rollover_amount=dec(1000))
    m = Meter()
    res = go(m, [g1], Snapshot.starting([g1], T1), reset, [reset])
    assert res.usage == 0
    assert res.balance == 0


def test_grant_taking_effect_exactly_at_until_is_counted() -> None:
    m = Meter()
    m.use(30, T1 + H)
    g1 = grant("g1", 10)
    g2 = grant("g2", 100, effective=T1 + 2 * H)
    res = go(m, [g1, g2], Snapshot.starting([g1, g2], T1), T1 + 2 * H)
    # 20 of overage is burnt from g2 the moment it takes effect
    assert res.grant_balances == {"g1": 0, "g2": 80}
    assert res.overage == 0
    assert res.history[-1].start == res.history[-1].end == T1 + 2 * H


def test_a_grant_created_without_priority_burns_before_priority_one() -> None:
    # OpenMeter's grant APIs (v1 and v2) default an omitted priority to 0, below the 1..255 a client
    # may send, so such a grant burns before the issueAfterReset grant (priority 1). 30 used of
    # {issue 100 (min = max rollover 100), grant 50 (v2: max rollover 50)}: the grant keeps 20, and
    # after the reset the balance is 100 + 20 = 120, not 100 + 50 = 150.
    issue = grant(
        "issue", 100, expiration=None, min_rollover_amount=dec(100), max_rollover_amount=dec(100), created_at=T1
    )
    valid = GrantInput(amount=50, effective_at=T1, v2=True).validate(T1 + M)
    assert valid.priority == 0
    extra = grant(
        "extra",
        50,
        priority=valid.priority,
        expiration=valid.expiration,
        max_rollover_amount=valid.max_rollover_amount,
        created_at=T1 + M,
    )
    m = Meter()
    m.use(30, T1 + H)
    start = Snapshot.starting([issue, extra], T1)
    before = go(m, [issue, extra], start, T1 + 2 * H)
    assert before.grant_balances == {"issue": 100, "extra": 20}
    reset = T1 + D
    after = go(m, [issue, extra], start, reset, [reset])
    assert (after.balance, after.grant_balances) == (120, {"issue": 100, "extra": 20})


# --- API shape ------------------------------------------------------------------------------


def test_breakpoints_name_one_window_per_boundary() -> None:
    g1 = grant("g1", 100, recurrence=Recurrence(DAY, T1 + 12 * H))
    g2 = grant("g2", 50, effective=T1 + 3 * H)
    reset = T1 + 2 * D
    inp = RunInput(
        grants=(g1, g2), start=Snapshot.starting([g1, g2], T1 + H, period_start=T1), until=T1 + 3 * D, resets=(reset,)
    )
    windows = breakpoints(inp)
    assert [(w.since, w.until) for w in windows] == [
        (T1, T1 + H),  # baseline at the start of the run
        (T1, T1 + 3 * H),
        (T1, T1 + 12 * H),
        (T1, T1 + 36 * H),
        (T1, reset),
        (reset, reset + 12 * H),
        (reset, T1 + 3 * D),
    ]
    usage = {w.until: Decimal(0) for w in windows}
    del usage[T1 + 12 * H]
    with pytest.raises(BurnDownError):
        run(inp, usage)


def test_input_validation() -> None:
    with pytest.raises(BurnDownError):
        RunInput(grants=(), start=snap(T1, {}), until=T1 - M)
    with pytest.raises(BurnDownError):
        RunInput(grants=(), start=snap(T1, {}), until=T1 + timedelta(seconds=30))
    with pytest.raises(BurnDownError):
        RunInput(grants=(G1, G1), start=snap(T1, {}), until=T1 + D)
    with pytest.raises(ValidationError):
        grant("x", -1)
    with pytest.raises(ValidationError):
        grant("x", priority=-1)
    with pytest.raises(ValidationError):
        grant("x", priority=256)
    with pytest.raises(ValidationError):
        Grant(id="x", amount=dec(1), effective_at=datetime(2024, 1, 1))  # naive
    with pytest.raises(BurnDownError):
        snap(T1, {}, period_start=T1 + M)


def test_resumable_snapshots_reproduce_the_full_run() -> None:
    m = Meter()
    for i in range(0, 72, 5):
        m.use(7, T1 + i * H + 13 * M)
    g1 = grant("g1", 40, recurrence=Recurrence(DAY, T1 + 6 * H), min_rollover_amount=dec(5))
    g2 = grant("g2", 100, priority=2, effective=T1 + 20 * H, max_rollover_amount=dec(30))
    g3 = grant("g3", 60, priority=1, effective=T1 + 30 * H, voided_at=T1 + 50 * H)
    grants = [g1, g2, g3]
    resets = [T1 + D, T1 + 2 * D]
    full = go(m, grants, Snapshot.starting(grants, T1), T1 + 3 * D, resets, preserve_overage=True)
    for s in full.resumable_snapshots():
        part = go(m, grants, s, T1 + 3 * D, resets, preserve_overage=True)
        assert part.snapshot == full.snapshot
        assert part.total_available_grant_amount == full.total_available_grant_amount


def test_resuming_at_an_activation_that_absorbed_overage() -> None:
    m = Meter()
    m.use(30, T1 + H)
    m.use(5, T1 + 3 * H)
    g1 = grant("g1", 10)
    g2 = grant("g2", 100, effective=T1 + 2 * H)
    grants = [g1, g2]
    full = go(m, grants, Snapshot.starting(grants, T1), T1 + 4 * H)
    part = go(m, grants, Snapshot.starting(grants, T1), T1 + 2 * H)
    resumed = go(m, grants, part.snapshot, T1 + 4 * H)
    assert resumed.snapshot == full.snapshot
    assert full.grant_balances == {"g1": 0, "g2": 75}


def test_resuming_at_a_recurrence_that_absorbed_overage() -> None:
    m = Meter()
    m.use(130, T1 + H)
    m.use(5, T1 + D + H)
    g1 = grant("g1", 100, recurrence=Recurrence(DAY, T1))
    full = go(m, [g1], Snapshot.starting([g1], T1), T1 + D + 2 * H)
    part = go(m, [g1], Snapshot.starting([g1], T1), T1 + D)
    assert part.grant_balances == {"g1": 70}  # refilled at `until`, then the 30 of overage burnt
    resumed = go(m, [g1], part.snapshot, T1 + D + 2 * H)
    assert resumed.snapshot == full.snapshot
    assert full.grant_balances == {"g1": 65}
