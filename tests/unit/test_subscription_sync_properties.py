"""Property: syncing after every edit (and crash-replays of a sync) ends where one sync from scratch does.

A subscription is edited at increasing times with random operations (add/remove items in the
current or a future phase, stretch, add/remove phases, cancel, unschedule); after each step the
sync plan is applied to a simulated line store, sometimes twice (a replay after a crash). At the end
the store must hold exactly the lines a single sync of the final spec computes: no line billed twice,
none dropped.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.entitlements.recurrence import IsoDuration
from domain.errors import ConflictError, ForbiddenError, ValidationError
from domain.subscriptions import edits
from domain.subscriptions.sync import HeldLine, plan_sync
from domain.subscriptions.timeline import ItemSpec, PhaseSpec, SubscriptionSpec, billable_items

MONTH = IsoDuration(months=1)
START = datetime(2026, 1, 31, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Card:
    key: str
    billing_cadence: IsoDuration | None = MONTH
    in_advance: bool = False


@dataclass(frozen=True)
class Terms:
    card: Card

    def is_billable(self) -> bool:
        return True

    def invoiced_in_advance(self) -> bool:
        return self.card.in_advance

    @property
    def cadence(self) -> IsoDuration | None:
        return self.card.billing_cadence


def terms(card: object) -> Terms:
    assert isinstance(card, Card)
    return Terms(card)


CARDS = [Card("base", in_advance=True), Card("tokens"), Card("setup", None, True), Card("seats", IsoDuration(years=1))]

operation = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(["p1", "p2", "p3"]), st.sampled_from(CARDS)),
    st.tuples(st.just("remove"), st.sampled_from(["p1", "p2", "p3"]), st.sampled_from([c.key for c in CARDS])),
    st.tuples(st.just("stretch"), st.sampled_from(["p1", "p2"]), st.integers(1, 2)),
    st.tuples(st.just("remove_phase"), st.sampled_from(["p2", "p3"]), st.sampled_from(["next", "prev"])),
    st.tuples(st.just("cancel"), st.integers(0, 3)),
    st.tuples(st.just("unschedule")),
)


def initial() -> SubscriptionSpec:
    def phase(key: str, months: int, *cards: Card) -> PhaseSpec:
        return PhaseSpec(
            key, key, key, IsoDuration(months=months), tuple(ItemSpec(f"{key}-{c.key}", c.key, c) for c in cards)
        )

    return SubscriptionSpec(
        START,
        None,
        START,
        MONTH,
        (phase("p1", 0, CARDS[0]), phase("p2", 2, CARDS[0], CARDS[1]), phase("p3", 5, CARDS[1])),
    )


def apply(spec: SubscriptionSpec, op: tuple, at: datetime, counter: list[int]) -> SubscriptionSpec:
    counter[0] += 1
    kind = op[0]
    if kind == "add":
        return edits.apply_edits(spec, [edits.AddItem(op[1], op[2], f"new-{counter[0]}")], at)
    if kind == "remove":
        return edits.apply_edits(spec, [edits.RemoveItem(op[1], op[2])], at)
    if kind == "stretch":
        return edits.apply_edits(spec, [edits.StretchPhase(op[1], IsoDuration(months=op[2]))], at)
    if kind == "remove_phase":
        return edits.apply_edits(spec, [edits.RemovePhase(op[1], op[2])], at)
    if kind == "cancel":
        end = spec.billing.next_after(at, inclusive=False)
        for _ in range(op[1]):
            end = spec.billing.next_after(end, inclusive=False)
        if spec.active_to is not None and end >= spec.active_to:
            return spec
        return replace(spec, active_to=end)
    return edits.apply_edits(spec, [edits.UnscheduleEdit()], at)


def sync(store: dict[str, HeldLine], spec: SubscriptionSpec, now: datetime) -> None:
    plan = plan_sync(billable_items("sub", spec, now, terms), store)
    for key in plan.delete:
        del store[key]
    for item in (*plan.create, *plan.update):
        store[item.key] = HeldLine(item.key, item.service_period, item.invoice_at, item.item_id)
    assert not plan.corrections  # nothing is invoiced in this model


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(operation, st.integers(1, 40 * 24), st.booleans()), min_size=1, max_size=12),
)
def test_incremental_syncs_equal_a_sync_from_scratch(steps: list[tuple[tuple, int, bool]]) -> None:
    spec = initial()
    store: dict[str, HeldLine] = {}
    now = START
    counter = [0]
    sync(store, spec, now)
    for op, hours, replay in steps:
        now += timedelta(hours=hours)
        with contextlib.suppress(ValidationError, ConflictError, ForbiddenError):  # a refused edit changes nothing
            spec = apply(spec, op, now, counter)
        sync(store, spec, now)
        if replay:
            sync(store, spec, now)  # a crash after applying, before remembering: the replay is a no-op
    scratch = {b.key: b for b in billable_items("sub", spec, now, terms)}
    assert set(store) == set(scratch)
    for key, held in store.items():
        assert held.service_period == scratch[key].service_period
        assert held.invoice_at == scratch[key].invoice_at
    # No two lines of one item version bill overlapping time.
    by_item: dict[str, list] = {}
    for item in scratch.values():
        by_item.setdefault(item.item_id, []).append(item.service_period)
    for periods in by_item.values():
        periods.sort(key=lambda p: p.start)
        for a, b in itertools.pairwise(periods):
            assert a.end <= b.start
    # Across versions of one key, service time never overlaps (one price per moment).
    by_key: dict[tuple[str, str], list] = {}
    for item in scratch.values():
        by_key.setdefault((item.phase_key, item.item_key), []).append(item)
    for items in by_key.values():
        items.sort(key=lambda i: i.service_period.start)
        for a, b in itertools.pairwise(items):
            if not (a.one_time or b.one_time):
                assert a.service_period.end <= b.service_period.start, (a, b)
