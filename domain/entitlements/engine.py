"""The grant burn-down engine: pure, synchronous and deterministic (OpenMeter's `credit/engine`).

Usage is pulled by the caller in two steps, so the engine itself does no I/O:

    inp = RunInput(grants=grants, start=snapshot, until=until, resets=resets)
    windows = breakpoints(inp)                    # what to ask the meter
    usage = {w.until: meter_value(w.since, w.until) for w in windows}
    result = run(inp, usage)

With `UsageMode.CUMULATIVE` (SUM, COUNT, UNIQUE_COUNT, MAX, ...) every window of a usage period
starts at that period's start, so a segment's usage is `cumulative(t_i) - cumulative(t_{i-1})`
and non-additive aggregations come out right. With `UsageMode.LATEST` each window is one segment
and grants act as limits: active grants refill to their amount at the start of every segment.

How a run proceeds (resolution is one minute; grant times are truncated to the minute):
- The range [start.at, until] is cut at usage resets into periods, and each period into segments
  at grant activity changes (effective, expiry, void, deletion) and grant recurrences.
- At a segment start: recurrences due at its start refill their grants; grants not active get
  balance 0; grants taking effect right then get their full amount.
- Usage plus the overage carried so far burns the active grants in burn order; what no grant
  covers is overage, which carries forward and is burnt from grants as they become active.
- At a reset every grant active at that instant becomes min(maxRollover, max(balance, minRollover));
  with `preserve_overage` (or that reset's own entry in `preserve_overage_at`) the overage is then
  burnt from all grants in burn order, otherwise it is dropped; usage restarts at 0. The history records this as a zero-length `rollover` segment.

A `Snapshot` is the state at an instant after everything due at that instant was applied, so a run
resumed from any snapshot the engine hands out (`RunResult.resumable_snapshots()`) reproduces the
full run exactly. Snapshots are caches only.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from domain.entitlements.grants import ZERO, Grant
from domain.entitlements.recurrence import ensure_utc, floor_minute, is_minute_aligned, resets_between
from domain.errors import TallyError


class BurnDownError(TallyError):
    """The engine's inputs do not fit together (a caching or wiring bug, not a user error)."""


class UsageMode(enum.StrEnum):
    CUMULATIVE = "CUMULATIVE"
    LATEST = "LATEST"


def _frozen_map(values: Mapping[str, Decimal]) -> Mapping[str, Decimal]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True, slots=True)
class UsageWindow:
    """A meter value the caller must supply: the aggregate over [since, until)."""

    since: datetime
    until: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Engine state at `at`: balance per grant, carried overage, and usage-period totals so far.

    `usage` and `total_grant_usage` count from `period_start`, the start of the usage period in
    force at `at`. `total_grant_usage` is how much the grants have covered in that period.
    """

    at: datetime
    balances: Mapping[str, Decimal]
    overage: Decimal = ZERO
    usage: Decimal = ZERO
    total_grant_usage: Decimal = ZERO
    period_start: datetime | None = None

    def __post_init__(self) -> None:
        at = ensure_utc(self.at, "snapshot.at")
        object.__setattr__(self, "at", at)
        start = at if self.period_start is None else ensure_utc(self.period_start, "snapshot.periodStart")
        if start > at:
            raise BurnDownError("snapshot period start is after the snapshot")
        object.__setattr__(self, "period_start", start)
        object.__setattr__(self, "balances", _frozen_map(self.balances))

    @classmethod
    def starting(cls, grants: Iterable[Grant], at: datetime, period_start: datetime | None = None) -> Snapshot:
        """The zero-usage state at the start of measurement: active grants at full amount."""
        at = ensure_utc(at)
        return cls(
            at=at,
            balances={g.id: g.amount if g.active_at(at) else ZERO for g in grants},
            period_start=period_start,
        )

    @property
    def usage_period_start(self) -> datetime:
        assert self.period_start is not None  # set in __post_init__
        return self.period_start

    @property
    def balance(self) -> Decimal:
        return sum(self.balances.values(), ZERO)


@dataclass(frozen=True, slots=True)
class GrantUsage:
    """How much of one grant a segment used; `exhausted` when it was used up."""

    grant_id: str
    usage: Decimal
    exhausted: bool


@dataclass(frozen=True, slots=True)
class SegmentReasons:
    """Why a segment ended (several may hold at once)."""

    priority_change: bool = False
    recurrence: tuple[str, ...] = ()
    usage_reset: bool = False
    rollover: bool = False


@dataclass(frozen=True, slots=True)
class Segment:
    """One burn-down step, as OpenMeter's /history `burndownHistory` reports it.

    `usage` is metered usage in [start, end); `overage` is what remained uncovered at its end.
    A rollover segment is the zero-length reset transition: its start balances are the rolled-over
    ones and its grant usages are the preserved overage burnt from them.
    """

    start: datetime
    end: datetime
    usage: Decimal
    overage_at_start: Decimal
    overage: Decimal
    balances_at_start: Mapping[str, Decimal]
    grant_usages: tuple[GrantUsage, ...]
    reasons: SegmentReasons = field(default_factory=SegmentReasons)

    @property
    def balance_at_start(self) -> Decimal:
        return sum(self.balances_at_start.values(), ZERO)

    @property
    def balances_at_end(self) -> Mapping[str, Decimal]:
        end = dict(self.balances_at_start)
        for u in self.grant_usages:
            end[u.grant_id] = end.get(u.grant_id, ZERO) - u.usage
        return _frozen_map(end)

    @property
    def balance_at_end(self) -> Decimal:
        return sum(self.balances_at_end.values(), ZERO)


@dataclass(frozen=True, slots=True)
class RunInput:
    """Everything a run depends on besides usage.

    `grants`: every grant active at some point in [start.at, until] (others are harmless).
    `resets`: usage-period starts; only those in (start.at, until] count, since a snapshot taken
    at a reset time already reflects that reset.
    `preserve_overage`: whether overage carries over a reset; `preserve_overage_at` overrides it
    for single reset times (a manual reset asked with its own preserveOverage).
    """

    grants: Sequence[Grant]
    start: Snapshot
    until: datetime
    resets: Sequence[datetime] = ()
    preserve_overage: bool = False
    mode: UsageMode = UsageMode.CUMULATIVE
    preserve_overage_at: Mapping[datetime, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        until = ensure_utc(self.until, "until")
        object.__setattr__(self, "until", until)
        object.__setattr__(self, "grants", tuple(self.grants))
        for name, t in (("start.at", self.start.at), ("until", until)):
            if not is_minute_aligned(t):
                raise BurnDownError(f"{name} must be on a whole minute, got {t.isoformat()}")
        if until < self.start.at:
            raise BurnDownError("until is before the starting snapshot")
        resets = resets_between(self.resets, self.start.at, until)
        if any(not is_minute_aligned(t) for t in resets):
            raise BurnDownError("reset times must be on whole minutes")
        object.__setattr__(self, "resets", resets)
        overrides = {ensure_utc(t, "preserve_overage_at"): bool(v) for t, v in self.preserve_overage_at.items()}
        object.__setattr__(self, "preserve_overage_at", MappingProxyType(overrides))
        ids = [g.id for g in self.grants]
        if len(ids) != len(set(ids)):
            raise BurnDownError("duplicate grant ids")
        unknown = set(self.start.balances) - set(ids)
        if unknown:
            raise BurnDownError(f"snapshot has balances for unknown grants: {sorted(unknown)}")


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of a run: the end state, its history, and the figures OpenMeter reports."""

    start: Snapshot
    snapshot: Snapshot
    history: tuple[Segment, ...]
    active_grant_ids: frozenset[str]
    start_active_grant_ids: frozenset[str]
    segment_snapshots: tuple[Snapshot | None, ...]

    @property
    def at(self) -> datetime:
        return self.snapshot.at

    @property
    def grant_balances(self) -> Mapping[str, Decimal]:
        """Balances of the grants active at the end (what `grantBalances` shows)."""
        return _frozen_map({k: v for k, v in self.snapshot.balances.items() if k in self.active_grant_ids})

    @property
    def grant_balances_at_start(self) -> Mapping[str, Decimal]:
        return _frozen_map({k: v for k, v in self.start.balances.items() if k in self.start_active_grant_ids})

    @property
    def balance(self) -> Decimal:
        return sum(self.grant_balances.values(), ZERO)

    @property
    def usage(self) -> Decimal:
        """Usage in the current usage period."""
        return self.snapshot.usage

    @property
    def overage(self) -> Decimal:
        return self.snapshot.overage

    @property
    def total_available_grant_amount(self) -> Decimal:
        """What grants have covered this usage period plus what active grants still hold."""
        return self.snapshot.total_grant_usage + self.balance

    @property
    def grant_usages(self) -> Mapping[str, Decimal]:
        """Total usage per grant over the whole run (rollover segments included)."""
        totals: dict[str, Decimal] = {}
        for segment in self.history:
            for u in segment.grant_usages:
                totals[u.grant_id] = totals.get(u.grant_id, ZERO) + u.usage
        return _frozen_map(totals)

    def snapshot_at_segment(self, index: int) -> Snapshot | None:
        """The resumable state at the start of segment `index`; None for rollover segments."""
        return self.segment_snapshots[index]

    def resumable_snapshots(self) -> tuple[Snapshot, ...]:
        """Every state a later run may start from: each segment start and the end."""
        found = [s for s in self.segment_snapshots if s is not None]
        return (*found, self.snapshot)


# ---------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True, slots=True)
class _Phase:
    start: datetime
    end: datetime
    recurred_at_end: tuple[str, ...] = ()
    priority_change: bool = False


@dataclass(frozen=True, slots=True)
class _PeriodPlan:
    start: datetime
    end: datetime
    since: datetime
    first: bool
    phases: tuple[_Phase, ...]
    recurred_at_start: tuple[str, ...]


def _normalise(grant: Grant) -> Grant:
    """The grant with every instant truncated to the engine's one-minute resolution."""

    def floor(t: datetime | None) -> datetime | None:
        return None if t is None else floor_minute(t)

    recurrence = grant.recurrence
    if recurrence is not None and not is_minute_aligned(recurrence.anchor):
        recurrence = replace(recurrence, anchor=floor_minute(recurrence.anchor))
    return replace(
        grant,
        effective_at=floor_minute(grant.effective_at),
        expires_at=floor(grant.expires_at),
        voided_at=floor(grant.voided_at),
        deleted_at=floor(grant.deleted_at),
        recurrence=recurrence,
    )


def _phases(
    grants: Sequence[Grant], start: datetime, end: datetime, last: bool
) -> tuple[tuple[_Phase, ...], tuple[str, ...]]:
    """Cut [start, end] at activity changes and recurrences (OpenMeter's burn phases)."""
    changes: set[datetime] = set()
    for g in grants:
        for t in (g.effective_at, g.expires_at, g.deleted_at, g.voided_at):
            if t is not None and start <= t < end:
                changes.add(t)

    def in_period(t: datetime) -> bool:
        if start == end or last:
            return start <= t <= end
        return start <= t < end

    recurrences: dict[datetime, list[str]] = {}
    for g in grants:
        if g.recurrence is None:
            continue
        for t in g.recurrence.iterate(max(g.effective_at, start), inclusive=True):
            if not in_period(t) or not g.active_at(t):
                break
            recurrences.setdefault(floor_minute(t), []).append(g.id)

    at_start = tuple(sorted(recurrences.pop(start, [])))
    phases: list[_Phase] = []
    cursor = start
    for t in sorted(changes | set(recurrences)):
        if t > cursor:
            phases.append(_Phase(cursor, t, tuple(sorted(recurrences.get(t, []))), t in changes))
            cursor = t
    if cursor < end:
        phases.append(_Phase(cursor, end))
    if phases and phases[-1].end == end and phases[-1].recurred_at_end:
        # A recurrence exactly at the end is applied in a zero-length terminal phase.
        phases.append(_Phase(end, end))
    if not phases:
        phases.append(_Phase(start, end))
    return tuple(phases), at_start


def _plan(inp: RunInput, grants: Sequence[Grant]) -> tuple[_PeriodPlan, ...]:
    s = inp.start.at
    times = [s, *inp.resets, inp.until]
    bounds = list(itertools.pairwise(times))
    plans: list[_PeriodPlan] = []
    for k, (start, end) in enumerate(bounds):
        last = k == len(bounds) - 1
        phases, at_start = _phases(grants, start, end, last)
        if last and phases[-1].start < end and any(g.effective_at == end for g in grants):
            # Unlike OpenMeter, a grant taking effect exactly at `until` is applied in a terminal
            # phase too, so the end state counts it and stays resumable.
            phases = (*phases, _Phase(end, end))
        since = inp.start.usage_period_start if k == 0 else start
        plans.append(_PeriodPlan(start, end, since, k == 0, phases, at_start))
    return tuple(plans)


def breakpoints(inp: RunInput) -> tuple[UsageWindow, ...]:
    """The meter values `run` needs, one per distinct `until` (zero-length windows are implied 0)."""
    grants = [_normalise(g) for g in inp.grants]
    plans = _plan(inp, grants)
    windows: list[UsageWindow] = []
    seen: set[datetime] = set()

    def add(since: datetime, until: datetime) -> None:
        if until > since and until not in seen:
            seen.add(until)
            windows.append(UsageWindow(since, until))

    if inp.mode is UsageMode.CUMULATIVE:
        add(inp.start.usage_period_start, inp.start.at)
        for plan in plans:
            for phase in plan.phases:
                add(plan.since, phase.end)
    else:
        for plan in plans:
            for phase in plan.phases:
                add(phase.start, phase.end)
    return tuple(windows)


# ---------------------------------------------------------------------------------------------
# running


def _burn(
    balances: dict[str, Decimal], ordered: Sequence[Grant], amount: Decimal
) -> tuple[tuple[GrantUsage, ...], Decimal]:
    """Burn `amount` from `ordered` grants in place; returns the grant usages and what is left.

    Follows OpenMeter: grants with zero balance are skipped, and once the amount is used up every
    further grant with a balance is listed with zero usage.
    """
    uses: list[GrantUsage] = []
    remaining = amount
    for g in ordered:
        b = balances[g.id]
        if b == 0:
            continue
        if b <= remaining:
            balances[g.id] = ZERO
            remaining -= b
            uses.append(GrantUsage(g.id, b, exhausted=True))
        else:
            balances[g.id] = b - remaining
            uses.append(GrantUsage(g.id, remaining, exhausted=False))
            remaining = ZERO
    return tuple(uses), remaining


def _as_decimal(value: object, until: datetime) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise BurnDownError(f"usage until {until.isoformat()} must be a Decimal, got {type(value).__name__}")


def run(inp: RunInput, usage: Mapping[datetime, Decimal]) -> RunResult:
    """Burn the grants down over [inp.start.at, inp.until] with the usage `breakpoints` asked for."""
    grants = sorted((_normalise(g) for g in inp.grants), key=Grant.burn_order_key)
    s = inp.start.at
    latest = inp.mode is UsageMode.LATEST

    def value(until: datetime) -> Decimal:
        until = ensure_utc(until)
        if until not in usage:
            raise BurnDownError(f"missing usage for the window ending {until.isoformat()}")
        return _as_decimal(usage[until], until)

    def segment_usage(plan: _PeriodPlan, phase: _Phase) -> Decimal:
        if latest:
            return ZERO if phase.end == phase.start else value(phase.end)

        def cumulative(t: datetime) -> Decimal:
            return ZERO if t == plan.since else value(t)

        return cumulative(phase.end) - cumulative(phase.start)

    balances = dict(inp.start.balances)
    for g in grants:
        if g.id not in balances:
            # A grant the cached snapshot does not know yet (taking effect at or after it).
            balances[g.id] = g.amount if g.active_at(s) else ZERO
    start = replace(inp.start, balances=balances)

    overage = inp.start.overage
    period_usage = inp.start.usage
    grant_usage = inp.start.total_grant_usage
    history: list[Segment] = []
    snapshots: list[Snapshot | None] = []
    by_id = {g.id: g for g in grants}
    since = inp.start.usage_period_start

    for plan in _plan(inp, grants):
        since = plan.since
        if not plan.first:
            reset_at = plan.start
            if history:
                last = history[-1]
                history[-1] = replace(last, reasons=replace(last.reasons, usage_reset=True))
            rolled = dict(balances)
            for g in grants:
                if g.active_at(reset_at):
                    rolled[g.id] = g.rollover_balance(rolled[g.id])
            carried = overage if inp.preserve_overage_at.get(reset_at, inp.preserve_overage) else ZERO
            balances = dict(rolled)
            uses: tuple[GrantUsage, ...] = ()
            overage = carried
            if carried != 0:
                uses, overage = _burn(balances, grants, carried)
            history.append(
                Segment(
                    start=reset_at,
                    end=reset_at,
                    usage=ZERO,
                    overage_at_start=carried,
                    overage=overage,
                    balances_at_start=_frozen_map(rolled),
                    grant_usages=uses,
                    reasons=SegmentReasons(rollover=True),
                )
            )
            snapshots.append(None)
            period_usage = ZERO
            grant_usage = sum((u.usage for u in uses), ZERO)
            for grant_id in plan.recurred_at_start:
                balances[grant_id] = by_id[grant_id].recurrence_balance(balances[grant_id])

        pending: tuple[str, ...] = ()
        for phase in plan.phases:
            for grant_id in pending:
                balances[grant_id] = by_id[grant_id].recurrence_balance(balances[grant_id])
            active: list[Grant] = []
            for g in grants:
                if not g.active_at(phase.start):
                    balances[g.id] = ZERO
                    continue
                active.append(g)
                # The run's own start was settled by whoever made the starting snapshot.
                if latest or (g.effective_at == phase.start and not (plan.first and phase.start == s)):
                    balances[g.id] = g.amount

            snapshots.append(
                Snapshot(
                    at=phase.start,
                    balances=balances,
                    overage=overage,
                    usage=period_usage,
                    total_grant_usage=grant_usage,
                    period_start=since,
                )
            )
            at_start = _frozen_map(balances)
            overage_at_start = overage
            used = segment_usage(plan, phase)
            uses, overage = _burn(balances, active, used + overage)
            history.append(
                Segment(
                    start=phase.start,
                    end=phase.end,
                    usage=used,
                    overage_at_start=overage_at_start,
                    overage=overage,
                    balances_at_start=at_start,
                    grant_usages=uses,
                    reasons=SegmentReasons(priority_change=phase.priority_change, recurrence=phase.recurred_at_end),
                )
            )
            period_usage += used
            grant_usage += sum((u.usage for u in uses), ZERO)
            pending = phase.recurred_at_end

    for g in grants:
        if not g.active_at(inp.until):
            # What any continuation does first; keeps the end state identical to a resumed one.
            balances[g.id] = ZERO
    end = Snapshot(
        at=inp.until,
        balances=balances,
        overage=overage,
        usage=period_usage,
        total_grant_usage=grant_usage,
        period_start=since,
    )
    return RunResult(
        start=start,
        snapshot=end,
        history=tuple(history),
        active_grant_ids=frozenset(g.id for g in grants if g.active_at(inp.until)),
        start_active_grant_ids=frozenset(g.id for g in grants if g.active_at(s)),
        segment_snapshots=tuple(snapshots),
    )


def next_change(grants: Sequence[Grant], after: datetime) -> datetime | None:
    """The first instant after `after` at which a balance can change without new usage.

    That is a grant taking effect, expiring, voided or deleted, or recurring (at the engine's
    one-minute resolution). Usage resets are the usage period's and not included. A result computed
    for `after` holds, absent new usage, for every `until` in [after, next_change).
    """
    after = ensure_utc(after)
    found: datetime | None = None
    for g in (_normalise(g) for g in grants):
        candidates = [g.effective_at, g.active_until]
        if g.recurrence is not None:
            candidates.append(floor_minute(g.recurrence.next_after(max(after, g.effective_at), inclusive=False)))
        for t in candidates:
            if t is not None and t > after and (found is None or t < found):
                found = t
    return found


def run_with(inp: RunInput, query: Callable[[UsageWindow], Decimal]) -> RunResult:
    """`run` with usage fetched window by window through `query` (handy in tests and scripts)."""
    return run(inp, {w.until: query(w) for w in breakpoints(inp)})
