"""Property tests: the engine against a minute-by-minute reference model, plus its invariants.

The reference walks every minute and applies the rules literally (reset, recurrence,
deactivation and activation at the minute's start, then burn that minute's usage plus carried
overage greedily in burn order). The engine must agree with it, and must give the same answer
however a segment's usage is spread, and when resumed from any snapshot it hands out.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.entitlements.engine import RunInput, RunResult, Snapshot, UsageWindow, breakpoints, run
from domain.entitlements.grants import Grant
from domain.entitlements.recurrence import IsoDuration, Recurrence

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
STEP = timedelta(minutes=30)
HORIZON_STEPS = 60  # 30 hours
HORIZON_MINUTES = HORIZON_STEPS * 30
ZERO = Decimal(0)
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
FAR_PAST = datetime.min.replace(tzinfo=UTC)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- scenario generation ------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    grants: tuple[Grant, ...]
    resets: tuple[datetime, ...]
    preserve_overage: bool
    events: tuple[tuple[datetime, Decimal], ...]
    until: datetime


def grid(lo: int, hi: int) -> st.SearchStrategy[datetime]:
    return st.integers(lo, hi).map(lambda k: T0 + k * STEP)


amounts = st.one_of(st.integers(0, 120).map(Decimal), st.decimals(0, 120, places=2))


@st.composite
def grants_strategy(draw: st.DrawFn, gid: str) -> Grant:
    effective = draw(grid(-20, HORIZON_STEPS))
    expires = draw(st.one_of(st.none(), st.integers(1, 80).map(lambda k: effective + k * STEP)))
    voided = draw(st.one_of(st.none(), grid(-4, HORIZON_STEPS + 2)))
    deleted = draw(st.one_of(st.none(), grid(-4, HORIZON_STEPS + 2)))
    recurrence = draw(
        st.one_of(
            st.none(),
            st.builds(
                Recurrence,
                st.sampled_from(
                    [IsoDuration(hours=1), IsoDuration(hours=3), IsoDuration(hours=7), IsoDuration(days=1)]
                ),
                grid(-10, HORIZON_STEPS),
            ),
        )
    )
    return Grant(
        id=gid,
        amount=draw(amounts),
        priority=draw(st.integers(1, 3)),
        effective_at=effective,
        expires_at=expires,
        created_at=draw(st.one_of(st.none(), grid(-30, 0))),
        voided_at=voided,
        deleted_at=deleted,
        recurrence=recurrence,
        min_rollover_amount=draw(st.sampled_from([ZERO, Decimal(10), Decimal(50)])),
        max_rollover_amount=draw(st.sampled_from([ZERO, Decimal(25), Decimal(100), Decimal(1000)])),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(0, 4))
    grants = tuple(draw(grants_strategy(f"g{i}")) for i in range(n))
    resets = tuple(sorted(set(draw(st.lists(grid(1, HORIZON_STEPS), max_size=3)))))
    events = tuple(
        draw(
            st.lists(
                st.tuples(
                    st.integers(-30, HORIZON_MINUTES - 1).map(lambda k: T0 + k * MINUTE),
                    st.one_of(st.integers(0, 60).map(Decimal), st.decimals(0, 60, places=3)),
                ),
                max_size=25,
            )
        )
    )
    until = draw(st.one_of(grid(0, HORIZON_STEPS), st.integers(0, HORIZON_MINUTES).map(lambda k: T0 + k * MINUTE)))
    return Scenario(grants, resets, draw(st.booleans()), events, until)


# --- the reference model ------------------------------------------------------------------


def burn_key(g: Grant) -> tuple[int, datetime, datetime, str]:
    return (g.priority, g.expires_at or FAR_FUTURE, g.created_at or FAR_PAST, g.id)


def active(g: Grant, t: datetime) -> bool:
    ends = [x for x in (g.expires_at, g.voided_at, g.deleted_at) if x is not None]
    end = max(min(ends), g.effective_at) if ends else None
    return g.effective_at <= t and (end is None or t < end)


def recurs_at(g: Grant, t: datetime) -> bool:
    if g.recurrence is None:
        return False
    step = timedelta(hours=g.recurrence.interval.hours, days=g.recurrence.interval.days)
    return (t - g.recurrence.anchor) % step == timedelta(0)


@dataclass
class RefState:
    balances: dict[str, Decimal]
    overage: Decimal
    usage: Decimal
    grant_usage: Decimal


def reference(s: Scenario, start: datetime = T0) -> RefState:
    order = sorted(s.grants, key=burn_key)
    bal = {g.id: g.amount if active(g, start) else ZERO for g in s.grants}
    st_ = RefState(bal, ZERO, ZERO, ZERO)
    per_minute: dict[datetime, Decimal] = defaultdict(Decimal)
    for at, value in s.events:
        per_minute[at] += value

    def burn(amount: Decimal, grants: list[Grant]) -> Decimal:
        """Take `amount` greedily from `grants`; returns what was left uncovered."""
        for g in grants:
            take = min(bal[g.id], amount)
            bal[g.id] -= take
            amount -= take
            st_.grant_usage += take
        return amount

    m = start
    while True:
        if m > start:
            if m in s.resets:
                for g in s.grants:
                    if active(g, m):
                        bal[g.id] = min(g.max_rollover_amount, max(g.min_rollover_amount, bal[g.id]))
                carried = st_.overage if s.preserve_overage else ZERO
                st_.usage = ZERO
                st_.grant_usage = ZERO
                st_.overage = burn(carried, order)
            for g in s.grants:
                if active(g, m) and recurs_at(g, m):
                    bal[g.id] = g.amount
            for g in s.grants:
                if not active(g, m):
                    bal[g.id] = ZERO
                elif g.effective_at == m:
                    bal[g.id] = g.amount
        live = [g for g in order if active(g, m)]
        if m == s.until:
            st_.overage = burn(st_.overage, live)
            break
        used = per_minute[m]
        st_.usage += used
        st_.overage = burn(used + st_.overage, live)
        m += MINUTE
    st_.balances = {g.id: bal[g.id] for g in s.grants if active(g, s.until)}
    return st_


# --- driving the engine -------------------------------------------------------------------


def cumulative(events: tuple[tuple[datetime, Decimal], ...], w: UsageWindow) -> Decimal:
    return sum((v for at, v in events if w.since <= at < w.until), ZERO)


def engine_run(s: Scenario, start: Snapshot | None = None, until: datetime | None = None) -> RunResult:
    inp = RunInput(
        grants=s.grants,
        start=start or Snapshot.starting(s.grants, T0),
        until=until or s.until,
        resets=s.resets,
        preserve_overage=s.preserve_overage,
    )
    return run(inp, {w.until: cumulative(s.events, w) for w in breakpoints(inp)})


# --- properties ---------------------------------------------------------------------------


@SETTINGS
@given(scenarios())
def test_engine_matches_minute_by_minute_reference(s: Scenario) -> None:
    res = engine_run(s)
    ref = reference(s)
    assert dict(res.grant_balances) == ref.balances
    assert res.overage == ref.overage
    assert res.usage == ref.usage
    assert res.snapshot.total_grant_usage == ref.grant_usage
    assert res.total_available_grant_amount == ref.grant_usage + sum(ref.balances.values(), ZERO)


@SETTINGS
@given(scenarios())
def test_invariants(s: Scenario) -> None:
    res = engine_run(s)
    assert res.balance >= 0
    assert all(b >= 0 for b in res.snapshot.balances.values())
    previous_end = T0
    for seg in res.history:
        assert seg.start == previous_end
        assert seg.start <= seg.end
        previous_end = seg.end
        assert all(b >= 0 for b in seg.balances_at_start.values())
        assert all(b >= 0 for b in seg.balances_at_end.values())
        assert all(u.usage >= 0 for u in seg.grant_usages)
        # what came in (usage plus carried overage) is what the grants took plus what is left over
        assert sum((u.usage for u in seg.grant_usages), ZERO) + seg.overage == seg.usage + seg.overage_at_start
    assert previous_end == s.until
    # per usage period: grant usage + overage == usage + overage carried into the period
    rollovers = [seg for seg in res.history if seg.reasons.rollover]
    carried_in = rollovers[-1].overage_at_start if rollovers else ZERO
    assert res.snapshot.total_grant_usage + res.overage == res.usage + carried_in
    # every segment's usage is the meter's usage in it, so they add up to the total
    total = sum((v for at, v in s.events if T0 <= at < s.until), ZERO)
    assert sum((seg.usage for seg in res.history), ZERO) == total


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_result_depends_only_on_usage_per_segment(s: Scenario, rnd: random.Random) -> None:
    """Moving events anywhere inside their segment (and reordering them) changes nothing."""
    res = engine_run(s)
    cuts = sorted({T0, s.until, *(seg.start for seg in res.history)})
    moved: list[tuple[datetime, Decimal]] = []
    for at, value in s.events:
        if not T0 <= at < s.until:
            moved.append((at, value))
            continue
        lo = max(c for c in cuts if c <= at)
        hi = min(c for c in cuts if c > at)
        span = int((hi - lo) / MINUTE)
        moved.append((lo + rnd.randrange(span) * MINUTE, value))
    rnd.shuffle(moved)
    other = engine_run(Scenario(s.grants, s.resets, s.preserve_overage, tuple(moved), s.until))
    assert other.snapshot == res.snapshot
    assert other.grant_usages == res.grant_usages


@SETTINGS
@given(scenarios(), st.data())
def test_resuming_from_any_snapshot_matches_the_full_run(s: Scenario, data: st.DataObject) -> None:
    full = engine_run(s)
    snapshots = list(full.resumable_snapshots())
    # also the end state of a shorter run, at an arbitrary minute
    cut = data.draw(st.integers(0, int((s.until - T0) / MINUTE)).map(lambda k: T0 + k * MINUTE))
    snapshots.append(engine_run(s, until=cut).snapshot)
    for snap in data.draw(st.lists(st.sampled_from(snapshots), min_size=1, max_size=4)):
        resumed = engine_run(s, start=snap)
        assert resumed.snapshot == full.snapshot
        assert resumed.grant_balances == full.grant_balances
        assert resumed.total_available_grant_amount == full.total_available_grant_amount
        # a snapshot that forgot grants (they are filled in from grant activity) changes nothing either
        pruned = Snapshot(
            at=snap.at,
            balances={
                k: v for k, v in snap.balances.items() if any(g.id == k and active(g, snap.at) for g in s.grants)
            },
            overage=snap.overage,
            usage=snap.usage,
            total_grant_usage=snap.total_grant_usage,
            period_start=snap.period_start,
        )
        again = engine_run(s, start=pruned)
        assert again.grant_balances == full.grant_balances
        assert again.overage == full.overage
        assert again.usage == full.usage
