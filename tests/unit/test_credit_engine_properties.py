"""Property tests: the engine against a minute-by-minute reference model, plus its invariants.

The reference walks every minute and applies the rules literally (reset, recurrence,
deactivation and activation at the minute's start, then burn that minute's usage plus carried
overage greedily in burn order). The engine must agree with it, and must give the same answer
however a segment's usage is spread, and when resumed from any snapshot it hands out.

Scenarios start at month ends as well as mid-month, with monthly and yearly recurrences anchored on
the 29th-31st (Jan 31 + P1M clamps to Feb 28/29: the reference computes each boundary from the
anchor with the calendar, independently of the engine's own arithmetic), grant times given in
non-UTC offsets, and usage that is a SUM or a UNIQUE_COUNT (distinct values since the period
start). LATEST usage, which the engine runs segment by segment, has its own invariants below.
"""

from __future__ import annotations

import calendar
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from domain.entitlements.engine import (
    RunInput,
    RunResult,
    Snapshot,
    UsageMode,
    UsageWindow,
    breakpoints,
    run,
)
from domain.entitlements.grants import Grant
from domain.entitlements.recurrence import IsoDuration, Recurrence

MINUTE = timedelta(minutes=1)
STEP = timedelta(minutes=30)
HORIZON_STEPS = 60  # 30 hours
HORIZON_MINUTES = HORIZON_STEPS * 30
ZERO = Decimal(0)
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
FAR_PAST = datetime.min.replace(tzinfo=UTC)
# Where scenarios start: mid-month, and just before month ends (leap and common Februaries, 30- and
# 31-day months, the year end), so monthly boundaries clamped to a month's last day fall inside.
STARTS = [
    datetime(2024, 1, 1, tzinfo=UTC),
    datetime(2024, 1, 30, 18, tzinfo=UTC),
    datetime(2024, 2, 28, 6, tzinfo=UTC),
    datetime(2023, 2, 27, 20, tzinfo=UTC),
    datetime(2024, 4, 29, 12, 30, tzinfo=UTC),
    datetime(2024, 12, 30, 23, tzinfo=UTC),
]
# The same instants written in other offsets (whole and odd ones, with and without DST).
ZONES: list[tzinfo] = [
    UTC,
    timezone(timedelta(hours=5, minutes=45)),
    timezone(-timedelta(hours=3, minutes=30)),
    ZoneInfo("America/New_York"),
    ZoneInfo("Australia/Lord_Howe"),
]
LABELS = [f"v{i}" for i in range(6)]

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- scenario generation ------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    t0: datetime
    grants: tuple[Grant, ...]
    resets: tuple[datetime, ...]
    preserve_overage: bool
    # SUM: (time, amount); UNIQUE_COUNT: (time, label); LATEST: (time, value).
    events: tuple[tuple[datetime, Decimal | str], ...]
    until: datetime
    kind: str = "SUM"


amounts = st.one_of(st.integers(0, 120).map(Decimal), st.decimals(0, 120, places=2))


@st.composite
def monthly_recurrences(draw: st.DrawFn, t0: datetime) -> Recurrence:
    """A monthly, two-monthly or yearly recurrence with a boundary inside the run: at a half-hour of
    the horizon, from an anchor whole intervals earlier. When that boundary is a month's last day, the
    anchor may sit on a later day of its own month (the 31st before a 30-day month or February):
    the boundary is then a clamped one."""
    months = draw(st.sampled_from([1, 2, 12]))
    candidates = [t0 + k * STEP for k in range(HORIZON_STEPS + 1)]
    month_ends = [t for t in candidates if t.day == calendar.monthrange(t.year, t.month)[1]]
    # Mostly on a month's last day, where clamping happens; sometimes anywhere.
    target = draw(
        st.sampled_from(month_ends) if month_ends and draw(st.integers(0, 3)) else st.sampled_from(candidates)
    )
    back = months * draw(st.integers(1, max(1, 14 // months)))
    year, month0 = divmod(target.year * 12 + target.month - 1 - back, 12)
    anchor_last = calendar.monthrange(year, month0 + 1)[1]
    day = target.day
    if target.day == calendar.monthrange(target.year, target.month)[1] and target.day < anchor_last:
        day = draw(st.integers(target.day, anchor_last))
        if day > target.day:
            event("a clamped monthly boundary")
    anchor = target.replace(year=year, month=month0 + 1, day=min(day, anchor_last))
    interval = IsoDuration(years=1) if months == 12 else IsoDuration(months=months)
    return Recurrence(interval, anchor)


@st.composite
def grants_strategy(draw: st.DrawFn, gid: str, t0: datetime) -> Grant:
    def grid(lo: int, hi: int) -> st.SearchStrategy[datetime]:
        return st.integers(lo, hi).map(lambda k: t0 + k * STEP)

    zone = draw(st.sampled_from(ZONES))

    def local(t: datetime | None) -> datetime | None:
        return None if t is None else t.astimezone(zone)

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
            monthly_recurrences(t0).map(lambda r: Recurrence(r.interval, r.anchor.astimezone(zone))),
        )
    )
    return Grant(
        id=gid,
        amount=draw(amounts),
        priority=draw(st.integers(1, 3)),
        effective_at=local(effective),
        expires_at=local(expires),
        created_at=local(draw(st.one_of(st.none(), grid(-30, 0)))),
        voided_at=local(voided),
        deleted_at=local(deleted),
        recurrence=recurrence,
        min_rollover_amount=draw(st.sampled_from([ZERO, Decimal(10), Decimal(50)])),
        max_rollover_amount=draw(st.sampled_from([ZERO, Decimal(25), Decimal(100), Decimal(1000)])),
    )


@st.composite
def scenarios(
    draw: st.DrawFn, kinds: tuple[str, ...] = ("SUM", "UNIQUE_COUNT"), monthly_grant: bool = False
) -> Scenario:
    """With `monthly_grant`, the first grant is in force all along with a monthly (or yearly)
    recurrence whose boundary, often a clamped one, falls inside the run."""
    t0 = draw(st.sampled_from(STARTS))
    kind = draw(st.sampled_from(kinds))

    def grid(lo: int, hi: int) -> st.SearchStrategy[datetime]:
        return st.integers(lo, hi).map(lambda k: t0 + k * STEP)

    n = draw(st.integers(0, 4))
    grants = tuple(draw(grants_strategy(f"g{i}", t0)) for i in range(n))
    if monthly_grant:
        zone = draw(st.sampled_from(ZONES))
        recurrence = draw(monthly_recurrences(t0))
        first = Grant(
            id="monthly",
            amount=draw(amounts),
            priority=draw(st.integers(1, 3)),
            effective_at=t0.astimezone(zone),
            recurrence=Recurrence(recurrence.interval, recurrence.anchor.astimezone(zone)),
            max_rollover_amount=draw(st.sampled_from([ZERO, Decimal(1000)])),
        )
        grants = (first, *grants[:2])
    resets = tuple(sorted(set(draw(st.lists(grid(1, HORIZON_STEPS), max_size=3)))))
    values: st.SearchStrategy[Decimal | str]
    if kind == "UNIQUE_COUNT":
        values = st.sampled_from(LABELS)
    else:
        values = st.one_of(st.integers(0, 60).map(Decimal), st.decimals(0, 60, places=3))
    events = tuple(
        draw(
            st.lists(
                st.tuples(st.integers(-30, HORIZON_MINUTES - 1).map(lambda k: t0 + k * MINUTE), values),
                max_size=25,
            )
        )
    )
    until = draw(st.one_of(grid(0, HORIZON_STEPS), st.integers(0, HORIZON_MINUTES).map(lambda k: t0 + k * MINUTE)))
    if monthly_grant:
        until = t0 + HORIZON_STEPS * STEP
    scenario = Scenario(t0, grants, resets, draw(st.booleans()), events, until, kind)
    if any(g.recurrence and g.recurrence.interval.months and recurrences_in(g, t0, until) for g in grants):
        event("a monthly boundary inside the run")
    return scenario


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
    interval = g.recurrence.interval
    anchor = g.recurrence.anchor.astimezone(UTC)
    t = t.astimezone(UTC)
    months = interval.months + 12 * interval.years
    if months:
        # The boundary in t's month: the anchor's day clamped to that month's last day, each
        # boundary computed from the anchor (in UTC), never from the previous one.
        n = (t.year - anchor.year) * 12 + (t.month - anchor.month)
        if n % months:
            return False
        last_day = calendar.monthrange(t.year, t.month)[1]
        boundary = anchor.replace(year=t.year, month=t.month, day=min(anchor.day, last_day))
        return boundary == t
    step = timedelta(hours=interval.hours, days=interval.days)
    return (t - anchor) % step == timedelta(0)


def recurrences_in(g: Grant, since: datetime, until: datetime) -> bool:
    m = since
    while m <= until:
        if recurs_at(g, m):
            return True
        m += STEP
    return False


@dataclass
class RefState:
    balances: dict[str, Decimal]
    overage: Decimal
    usage: Decimal
    grant_usage: Decimal


def reference(s: Scenario) -> RefState:
    start = s.t0
    order = sorted(s.grants, key=burn_key)
    bal = {g.id: g.amount if active(g, start) else ZERO for g in s.grants}
    st_ = RefState(bal, ZERO, ZERO, ZERO)
    per_minute: dict[datetime, Decimal] = defaultdict(Decimal)
    labels: dict[datetime, set[str]] = defaultdict(set)
    for at, value in s.events:
        if isinstance(value, str):
            labels[at].add(value)
        else:
            per_minute[at] += value
    seen: set[str] = set()  # UNIQUE_COUNT: values counted in the current usage period

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
                seen.clear()
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
        if s.kind == "UNIQUE_COUNT":
            used = Decimal(len(labels[m] - seen))
            seen.update(labels[m])
        st_.usage += used
        st_.overage = burn(used + st_.overage, live)
        m += MINUTE
    st_.balances = {g.id: bal[g.id] for g in s.grants if active(g, s.until)}
    return st_


# --- driving the engine -------------------------------------------------------------------


def meter(s: Scenario, w: UsageWindow) -> Decimal:
    """What the meter answers for a window, by the scenario's aggregation, computed the plain way."""
    inside = [(at, v) for at, v in s.events if w.since <= at < w.until]
    if s.kind == "UNIQUE_COUNT":
        return Decimal(len({v for _, v in inside}))
    if s.kind == "LATEST":
        return max(inside, key=lambda item: (item[0], item[1]))[1] if inside else ZERO  # type: ignore[return-value]
    return sum((v for _, v in inside), ZERO)  # type: ignore[misc]


def engine_run(s: Scenario, start: Snapshot | None = None, until: datetime | None = None) -> RunResult:
    inp = RunInput(
        grants=s.grants,
        start=start or Snapshot.starting(s.grants, s.t0),
        until=until or s.until,
        resets=s.resets,
        preserve_overage=s.preserve_overage,
        mode=UsageMode.LATEST if s.kind == "LATEST" else UsageMode.CUMULATIVE,
    )
    return run(inp, {w.until: meter(s, w) for w in breakpoints(inp)})


def period_usage_total(s: Scenario) -> Decimal:
    """The usage of [t0, until) summed over its usage periods (cut at the resets)."""
    cuts = [s.t0, *(r for r in s.resets if s.t0 < r < s.until), s.until]
    return sum((meter(s, UsageWindow(a, b)) for a, b in itertools.pairwise(cuts) if b > a), ZERO)


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
@given(scenarios(monthly_grant=True))
def test_monthly_recurrences_match_the_reference_at_month_ends(s: Scenario) -> None:
    res = engine_run(s)
    ref = reference(s)
    assert dict(res.grant_balances) == ref.balances
    assert (res.overage, res.usage) == (ref.overage, ref.usage)
    assert res.snapshot.total_grant_usage == ref.grant_usage


@SETTINGS
@given(scenarios())
def test_invariants(s: Scenario) -> None:
    res = engine_run(s)
    assert res.balance >= 0
    assert all(b >= 0 for b in res.snapshot.balances.values())
    previous_end = s.t0
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
    # every segment's usage is the meter's usage in it, so they add up to each period's total
    assert sum((seg.usage for seg in res.history), ZERO) == period_usage_total(s)


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_result_depends_only_on_usage_per_segment(s: Scenario, rnd: random.Random) -> None:
    """Moving events anywhere inside their segment (and reordering them) changes nothing."""
    res = engine_run(s)
    cuts = sorted({s.t0, s.until, *(seg.start for seg in res.history)})
    moved: list[tuple[datetime, Decimal | str]] = []
    for at, value in s.events:
        if not s.t0 <= at < s.until:
            moved.append((at, value))
            continue
        lo = max(c for c in cuts if c <= at)
        hi = min(c for c in cuts if c > at)
        span = int((hi - lo) / MINUTE)
        moved.append((lo + rnd.randrange(span) * MINUTE, value))
    rnd.shuffle(moved)
    other = engine_run(replace(s, events=tuple(moved)))
    assert other.snapshot == res.snapshot
    assert other.grant_usages == res.grant_usages


@SETTINGS
@given(scenarios(), st.data())
def test_resuming_from_any_snapshot_matches_the_full_run(s: Scenario, data: st.DataObject) -> None:
    full = engine_run(s)
    snapshots = list(full.resumable_snapshots())
    # also the end state of a shorter run, at an arbitrary minute
    cut = data.draw(st.integers(0, int((s.until - s.t0) / MINUTE)).map(lambda k: s.t0 + k * MINUTE))
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


@SETTINGS
@given(scenarios(kinds=("LATEST",)))
def test_latest_usage_invariants(s: Scenario) -> None:
    """LATEST: each segment's usage is the newest value inside it (not a sum), grants only limit it."""
    res = engine_run(s)
    assert res.balance >= 0
    previous_end = s.t0
    for seg in res.history:
        assert seg.start == previous_end and seg.start <= seg.end
        previous_end = seg.end
        expected = meter(s, UsageWindow(seg.start, seg.end)) if seg.end > seg.start else ZERO
        assert seg.usage == expected, (seg.start, seg.end)
        assert all(b >= 0 for b in seg.balances_at_end.values())
        assert sum((u.usage for u in seg.grant_usages), ZERO) + seg.overage == seg.usage + seg.overage_at_start
    assert previous_end == s.until
    # (No resume property: the service never starts a LATEST run from a cached snapshot.)
