"""The subscription timeline and its edits: phases, item versions, billable items."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from domain.entitlements.recurrence import IsoDuration
from domain.errors import ConflictError, ForbiddenError, ValidationError
from domain.subscriptions import edits
from domain.subscriptions.timeline import (
    ItemSpec,
    PhaseSpec,
    SubscriptionSpec,
    billable_items,
    current_phase,
    item_timelines,
    phases,
    representative_items,
)

MONTH = IsoDuration(months=1)
START = datetime(2026, 1, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Card:
    key: str
    billing_cadence: IsoDuration | None = MONTH
    in_advance: bool = False
    billable: bool = True


@dataclass(frozen=True)
class Terms:
    card: Card

    def is_billable(self) -> bool:
        return self.card.billable

    def invoiced_in_advance(self) -> bool:
        return self.card.in_advance

    @property
    def cadence(self) -> IsoDuration | None:
        return self.card.billing_cadence


def terms(card: object) -> Terms:
    assert isinstance(card, Card)
    return Terms(card)


def spec(*phase_specs: PhaseSpec, anchor: datetime = START, end: datetime | None = None) -> SubscriptionSpec:
    return SubscriptionSpec(START, end, anchor, MONTH, tuple(phase_specs))


def phase(key: str, after: IsoDuration, *cards: Card) -> PhaseSpec:
    return PhaseSpec(
        f"ph-{key}", key, key.title(), after, tuple(ItemSpec(f"it-{key}-{c.key}", c.key, c) for c in cards)
    )


TRIAL = phase("trial", IsoDuration(), Card("base", in_advance=True))
DEFAULT = phase("default", IsoDuration(months=2), Card("base", in_advance=True), Card("tokens"))


def test_phases_follow_start_after_and_clamp_month_ends() -> None:
    views = phases(spec(TRIAL, DEFAULT))
    assert [(v.spec.key, v.active_from, v.active_to) for v in views] == [
        ("trial", START, datetime(2026, 3, 31, tzinfo=UTC)),
        ("default", datetime(2026, 3, 31, tzinfo=UTC), None),
    ]


def test_a_phase_after_the_end_is_not_listed_and_returns_without_it() -> None:
    # OpenMeter lists such a phase with no length (its end clamped to its start); Tally leaves it
    # out (docs/billing.md, subscriptions' deliberate differences) and keeps it in the spec, so
    # taking the cancelation back brings it back.
    canceled = spec(TRIAL, DEFAULT, end=datetime(2026, 2, 10, tzinfo=UTC))
    assert [(v.spec.key, v.active_to) for v in phases(canceled)] == [("trial", datetime(2026, 2, 10, tzinfo=UTC))]
    assert [v.spec.key for v in phases(spec(TRIAL, DEFAULT))] == ["trial", "default"]


def test_a_phase_off_a_billing_boundary_starts_on_time_and_splits_that_period() -> None:
    # OpenMeter (SubscriptionSpec.GetPhaseCadence): a phase starts exactly start_after past the
    # subscription's start. Jan 31 + 2 months = Mar 31, inside the cycle Mar 15 - Apr 15 of an anchor
    # on the 15th: the trial's base ends there and the default phase's starts there, each billed
    # for its part of that one cycle (the full cycle is what proration divides by).
    anchor = datetime(2026, 1, 15, tzinfo=UTC)
    s = SubscriptionSpec(START, None, anchor, MONTH, (TRIAL, DEFAULT))
    switch = datetime(2026, 3, 31, tzinfo=UTC)
    assert [(v.spec.key, v.active_from, v.active_to) for v in phases(s)] == [
        ("trial", START, switch),
        ("default", switch, None),
    ]
    got = billable_items("sub", s, datetime(2026, 4, 20, tzinfo=UTC), terms)
    cycle = (datetime(2026, 3, 15, tzinfo=UTC), datetime(2026, 4, 15, tzinfo=UTC))
    around = [
        (b.phase_key, b.item_key, b.service_period.start, b.service_period.end, b.invoice_at)
        for b in got
        if (b.full_period.start, b.full_period.end) == cycle
    ]
    assert around == [
        ("trial", "base", cycle[0], switch, cycle[0]),
        ("default", "base", switch, cycle[1], switch),
        ("default", "tokens", switch, cycle[1], cycle[1]),
    ]


def test_a_fourteen_day_trial_lasts_fourteen_days() -> None:
    # A P14D trial on a monthly plan: before, the switch waited for the next monthly boundary and
    # the trial lasted a month (a month of the plan unbilled).
    trial = phase("trial", IsoDuration(), Card("base", in_advance=True))
    default = phase("default", IsoDuration(days=14), Card("base", in_advance=True))
    views = phases(spec(trial, default))
    assert views[1].active_from == START + timedelta(days=14)


def test_billable_items_split_by_period_and_clip_at_the_end() -> None:
    end = datetime(2026, 3, 10, tzinfo=UTC)
    s = spec(phase("only", IsoDuration(), Card("base", in_advance=True), Card("tokens")), end=end)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    got = billable_items("sub", s, now, terms)
    base = [b for b in got if b.item_key == "base"]
    assert [(b.service_period.start, b.service_period.end, b.invoice_at) for b in base] == [
        (START, datetime(2026, 2, 28, tzinfo=UTC), START),
        (datetime(2026, 2, 28, tzinfo=UTC), end, datetime(2026, 2, 28, tzinfo=UTC)),
    ]
    # The clipped period still knows its full length, which proration divides by.
    assert base[1].full_period.end == datetime(2026, 3, 31, tzinfo=UTC)
    tokens = [b for b in got if b.item_key == "tokens"]
    assert [b.invoice_at for b in tokens] == [datetime(2026, 2, 28, tzinfo=UTC), end]


def test_billable_items_are_made_to_the_end_of_the_current_billing_period() -> None:
    # OpenMeter (subscriptionsync/README.md "Target time model"; targetstate.go
    # collectUpcomingLines, phaseiterator.go Generate): items are made up to the end of the aligned
    # billing period `now` falls in, every one due by then. Mid-February the in-advance fee of the
    # period starting Feb 28 is made already, due on Feb 28 (Tally made it only once that period
    # had started, so it reached an invoice only after the next sync pass).
    s = spec(TRIAL, DEFAULT)
    feb28 = datetime(2026, 2, 28, tzinfo=UTC)
    got = billable_items("sub", s, datetime(2026, 2, 10, tzinfo=UTC), terms)
    assert [(b.item_key, b.service_period.start, b.invoice_at) for b in got] == [
        ("base", START, START),
        ("base", feb28, feb28),
    ]
    # Before the subscription starts: what is due at its start (Tally made nothing).
    early = billable_items("sub", s, START - timedelta(days=3), terms)
    assert [(b.item_key, b.service_period.start, b.invoice_at) for b in early] == [("base", START, START)]
    # The usage of the current period is due at its end, the horizon: made too; the next period's
    # usage is not.
    one = spec(phase("only", IsoDuration(), Card("base", in_advance=True), Card("tokens")))
    mar31 = datetime(2026, 3, 31, tzinfo=UTC)
    at_start = billable_items("sub", one, feb28, terms)
    assert [(b.item_key, b.service_period.start, b.invoice_at) for b in at_start] == [
        ("base", START, START),
        ("tokens", START, feb28),
        ("base", feb28, feb28),
        ("tokens", feb28, mar31),
        ("base", mar31, mar31),
    ]
    # A phase with nothing to bill (a free trial) does not hold back its successor: the paid
    # phase's first fee is made during the trial, due when the trial ends.
    free = phase("free", IsoDuration(), Card("base", billable=False))
    paid = phase("paid", IsoDuration(months=2), Card("base", in_advance=True), Card("tokens"))
    during = billable_items("sub", spec(free, paid), datetime(2026, 2, 10, tzinfo=UTC), terms)
    assert [(b.phase_key, b.item_key, b.service_period.start, b.invoice_at) for b in during] == [
        ("paid", "base", mar31, mar31)
    ]


def test_billable_keys_are_stable_across_time() -> None:
    s = spec(TRIAL, DEFAULT)
    early = billable_items("sub", s, datetime(2026, 4, 1, tzinfo=UTC), terms)
    late = billable_items("sub", s, datetime(2026, 8, 1, tzinfo=UTC), terms)
    assert [b.key for b in early] == [b.key for b in late][: len(early)]


def test_one_time_fee_bills_once() -> None:
    setup = Card("setup", billing_cadence=None, in_advance=True)
    s = spec(phase("only", IsoDuration(), setup))
    got = billable_items("sub", s, datetime(2027, 1, 1, tzinfo=UTC), terms)
    assert len(got) == 1 and got[0].one_time and got[0].invoice_at == START


def test_add_item_in_the_current_phase_replaces_the_live_version() -> None:
    s = spec(TRIAL, DEFAULT)
    at = datetime(2026, 2, 10, tzinfo=UTC)
    edited = edits.apply_edits(s, [edits.AddItem("trial", Card("base", in_advance=True), "new-base")], at)
    view = phases(edited)[0]
    timeline = item_timelines(edited, view)["base"]
    assert [(v.spec.id, v.active_from, v.active_to) for v in timeline] == [
        ("it-trial-base", START, at),
        ("new-base", at, view.active_to),
    ]
    assert [v.spec.id for v in representative_items(edited, view, at)] == ["new-base"]
    # Billing sees both versions, each for its part of the period.
    got = billable_items("sub", edited, at, terms)
    assert [(b.item_id, b.service_period.start, b.service_period.end) for b in got] == [
        ("it-trial-base", START, at),
        ("new-base", at, datetime(2026, 2, 28, tzinfo=UTC)),
        # The next period's fee, due on Feb 28, is made ahead.
        ("new-base", datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)),
    ]


def test_remove_then_add_in_one_edit_and_future_phase_rules() -> None:
    s = spec(TRIAL, DEFAULT)
    at = datetime(2026, 2, 10, tzinfo=UTC)
    with pytest.raises(ForbiddenError):
        edits.apply_edits(s, [edits.AddItem("default", Card("tokens"), "x")], at)
    edited = edits.apply_edits(
        s, [edits.RemoveItem("default", "tokens"), edits.AddItem("default", Card("tokens", MONTH), "x")], at
    )
    assert [i.id for i in edited.phases[1].items] == ["it-default-base", "x"]


def test_errors_name_the_operation() -> None:
    s = spec(TRIAL, DEFAULT)
    with pytest.raises(ValidationError) as caught:
        edits.apply_edits(
            s, [edits.UnscheduleEdit(), edits.RemoveItem("nope", "base")], datetime(2026, 2, 1, tzinfo=UTC)
        )
    assert caught.value.violations[0].field == "customizations[1].phaseKey"
    with pytest.raises(ForbiddenError, match=r"customizations\[0\]"):
        edits.apply_edits(s, [edits.RemoveItem("trial", "base")], datetime(2026, 5, 1, tzinfo=UTC))


def test_stretch_and_remove_phase_shift() -> None:
    third = phase("third", IsoDuration(months=5), Card("base"))
    s = spec(TRIAL, DEFAULT, third)
    at = datetime(2026, 2, 1, tzinfo=UTC)
    stretched = edits.apply_edits(s, [edits.StretchPhase("trial", MONTH)], at)
    assert [v.active_from.date().isoformat() for v in phases(stretched)] == ["2026-01-31", "2026-04-30", "2026-07-31"]
    removed_next = edits.apply_edits(s, [edits.RemovePhase("default", "next")], at)
    assert [(v.spec.key, v.active_from.date().isoformat()) for v in phases(removed_next)] == [
        ("trial", "2026-01-31"),
        ("third", "2026-03-31"),
    ]
    removed_prev = edits.apply_edits(s, [edits.RemovePhase("default", "prev")], at)
    assert [(v.spec.key, v.active_from.date().isoformat()) for v in phases(removed_prev)] == [
        ("trial", "2026-01-31"),
        ("third", "2026-06-30"),
    ]
    with pytest.raises(ForbiddenError):
        edits.apply_edits(s, [edits.RemovePhase("trial", "next")], at)


def test_add_phase_shifts_the_following_ones() -> None:
    s = spec(TRIAL, DEFAULT)
    at = datetime(2026, 2, 1, tzinfo=UTC)
    extra = PhaseSpec("ph-x", "promo", "Promo", IsoDuration(months=2), (), duration=IsoDuration(months=1))
    added = edits.apply_edits(s, [edits.AddPhase(extra), edits.AddItem("promo", Card("base"), "promo-base")], at)
    assert [(v.spec.key, v.active_from.date().isoformat()) for v in phases(added)] == [
        ("trial", "2026-01-31"),
        ("promo", "2026-03-31"),
        ("default", "2026-04-30"),
    ]
    with pytest.raises(ConflictError):
        edits.apply_edits(s, [edits.AddPhase(replace_key(extra, "default"))], at)


def test_unschedule_edit_drops_future_versions_and_scheduled_ends() -> None:
    s = spec(TRIAL, DEFAULT)
    at = datetime(2026, 2, 10, tzinfo=UTC)
    ended = edits.apply_edits(s, [edits.RemoveItem("trial", "base")], at)
    assert current_phase(ended, at) is not None
    restored = edits.apply_edits(ended, [edits.UnscheduleEdit()], at - timedelta(days=1))
    assert restored.phases[0].items[0].active_to is None


def test_unschedule_edit_keeps_what_already_ended_in_the_phase() -> None:
    # OpenMeter's PatchUnscheduleEdit drops every version after the last one in force, so an item
    # removed earlier in the current phase would lose its history; Tally drops only what is still
    # to come (docs/billing.md, subscriptions' deliberate differences).
    s = spec(TRIAL, DEFAULT)
    removed_at = datetime(2026, 4, 10, tzinfo=UTC)
    removed = edits.apply_edits(s, [edits.RemoveItem("default", "tokens")], removed_at)
    later = datetime(2026, 4, 20, tzinfo=UTC)
    scheduled = edits.apply_edits(removed, [edits.RemoveItem("default", "base")], datetime(2026, 5, 1, tzinfo=UTC))
    unscheduled = edits.apply_edits(scheduled, [edits.UnscheduleEdit()], later)
    by_key = {i.key: i for i in unscheduled.phases[1].items}
    assert by_key["tokens"].active_to == removed_at
    assert by_key["base"].active_to is None


def test_removing_an_item_that_already_ended_is_refused_and_keeps_its_end() -> None:
    # A retried removal, or `immediate` then `next_billing_cycle`: ending the item again later
    # would bill the days after it ended.
    s = spec(TRIAL, DEFAULT)
    ended_at = datetime(2026, 4, 10, tzinfo=UTC)
    ended = edits.apply_edits(s, [edits.RemoveItem("default", "tokens")], ended_at)
    (tokens,) = [b for b in billable_items("sub", ended, ended_at, terms) if "tokens" in b.key]
    assert tokens.service_period.end == ended_at
    for again in (ended_at, ended_at + timedelta(days=9)):
        with pytest.raises(ValidationError) as caught:
            edits.apply_edits(ended, [edits.RemoveItem("default", "tokens")], again)
        assert caught.value.violations[0].code == "subscription_item_not_found"
    # A removal scheduled for later can still be brought forward.
    scheduled = edits.apply_edits(s, [edits.RemoveItem("default", "tokens")], datetime(2026, 4, 30, tzinfo=UTC))
    earlier = edits.apply_edits(scheduled, [edits.RemoveItem("default", "tokens")], ended_at)
    assert [i.active_to for i in earlier.phases[1].items if i.key == "tokens"] == [ended_at]


def test_an_edit_that_leaves_a_phase_without_items_is_refused() -> None:
    # OpenMeter validates the spec after all of an edit's patches (SubscriptionSpec.ApplyMany, then
    # SubscriptionPhaseSpec.Validate in subscription/subscriptionspec.go): a phase with no item is
    # 400 subscription_phase_has_no_items. Between the patches of one edit it may be empty (the
    # error is AllowedDuringApplyingToSpecError), so a new phase gets its items in the same edit.
    s = spec(TRIAL, DEFAULT)
    at = datetime(2026, 2, 1, tzinfo=UTC)
    extra = PhaseSpec("ph-x", "promo", "Promo", IsoDuration(months=2), (), duration=IsoDuration(months=1))
    with pytest.raises(ValidationError) as caught:
        edits.apply_edits(s, [edits.AddPhase(extra)], at)
    assert caught.value.violations[0].code == "subscription_phase_has_no_items"
    with pytest.raises(ValidationError) as caught:
        edits.apply_edits(s, [edits.RemoveItem("default", "base"), edits.RemoveItem("default", "tokens")], at)
    assert (caught.value.violations[0].field, caught.value.violations[0].code) == (
        "phases[default]",
        "subscription_phase_has_no_items",
    )
    # The current phase keeps an item it ends (its past stays), so it is never left empty.
    edited = edits.apply_edits(s, [edits.RemoveItem("trial", "base")], at)
    assert [i.active_to for i in edited.phases[0].items] == [at]


def test_adding_an_item_whose_current_version_has_a_scheduled_end_is_forbidden() -> None:
    # OpenMeter's PatchAddItem (subscription/patch/additem.go): when the key's current version
    # already ends after the new one would start, "cannot add item ... which would overlap with a
    # current item, you should delete first" is a PatchForbiddenError (403). Tally answered 409.
    s = spec(TRIAL, DEFAULT)
    at = datetime(2026, 2, 10, tzinfo=UTC)
    scheduled = edits.apply_edits(s, [edits.RemoveItem("trial", "base")], datetime(2026, 2, 28, tzinfo=UTC))
    with pytest.raises(ForbiddenError, match=r"customizations\[0\]"):
        edits.apply_edits(scheduled, [edits.AddItem("trial", Card("base", in_advance=True), "new-base")], at)


def replace_key(p: PhaseSpec, key: str) -> PhaseSpec:
    from dataclasses import replace

    return replace(p, key=key)


def test_sync_plan_deletes_pending_and_corrects_invoiced_lines() -> None:
    from domain.subscriptions.sync import HeldLine, plan_sync

    s = spec(TRIAL, DEFAULT)
    now = datetime(2026, 4, 10, tzinfo=UTC)
    expected = billable_items("sub", s, now, terms)
    held = {b.key: HeldLine(b.key, b.service_period, b.invoice_at, b.item_id) for b in expected}
    assert plan_sync(expected, held).empty
    stale = HeldLine("sub/gone", expected[0].service_period, expected[0].invoice_at, "x")
    invoiced = HeldLine("sub/billed", expected[0].service_period, expected[0].invoice_at, "y", invoiced=True)
    changed = replace_period(held[expected[0].key])
    plan = plan_sync(expected, {**held, stale.key: stale, invoiced.key: invoiced, changed.key: changed})
    assert plan.delete == ("sub/gone",) and plan.corrections == ("sub/billed",)
    assert [b.key for b in plan.update] == [changed.key] and not plan.create
    changed_invoiced = replace_period(held[expected[0].key], invoiced=True)
    assert plan_sync(expected, {**held, changed_invoiced.key: changed_invoiced}).corrections == (changed.key,)


def replace_period(line: object, invoiced: bool = False) -> object:
    from dataclasses import replace

    from domain.entitlements.recurrence import Period

    assert hasattr(line, "service_period")
    period = line.service_period
    return replace(line, service_period=Period(period.start, period.end - timedelta(hours=1)), invoiced=invoiced)  # type: ignore[type-var]


def test_addon_items_follow_the_quantity_and_never_rewrite_the_past() -> None:
    from decimal import Decimal

    from domain.subscriptions import addons

    offer = addons.AddonOffer("ad", "seats", 1, "multiple", "Seats", (Card("seat", in_advance=True),), "default", 5)
    s = spec(TRIAL, DEFAULT)
    bought_at = datetime(2026, 4, 10, tzinfo=UTC)
    ids = iter(f"seat-{n}" for n in range(10))
    with_two = addons.add_items(s, "sa", offer, 2, bought_at, lambda: next(ids))
    assert [i.key for i in with_two.phases[0].items] == ["base"]  # offered from "default" only
    changed_at = datetime(2026, 5, 3, tzinfo=UTC)
    with_three = addons.add_items(
        addons.end_items(with_two, "sa", changed_at, lambda: next(ids)), "sa", offer, 3, changed_at, lambda: next(ids)
    )
    got = [
        b for b in billable_items("sub", with_three, datetime(2026, 6, 1, tzinfo=UTC), terms) if b.item_key == "seat"
    ]
    assert [
        (b.service_period.start.date().isoformat(), b.service_period.end.date().isoformat(), b.quantity) for b in got
    ] == [
        ("2026-04-10", "2026-04-30", Decimal(2)),
        ("2026-04-30", "2026-05-03", Decimal(2)),
        ("2026-05-03", "2026-05-31", Decimal(3)),
        ("2026-05-31", "2026-06-30", Decimal(3)),
        ("2026-06-30", "2026-07-31", Decimal(3)),  # due on June 30, made ahead
    ]
    with pytest.raises(ValidationError):
        addons.check_quantity(offer, 6, allow_zero=False)


def test_stretches_add_durations_field_by_field() -> None:
    # OpenMeter adds ISO durations (P2M + P1M + P1M = P4M: Jan 31 + 4 months = May 31); moving the
    # instant by the first stretch's days would land on May 30.
    at = datetime(2026, 2, 1, tzinfo=UTC)
    once = edits.apply_edits(spec(TRIAL, DEFAULT), [edits.StretchPhase("trial", MONTH)], at)
    twice = edits.apply_edits(once, [edits.StretchPhase("trial", MONTH)], at)
    assert phases(twice)[1].active_from == datetime(2026, 5, 31, tzinfo=UTC)
    # Shortening by days leaves a field negative (P2M - P14D): kept as the instant it lands on.
    shorter = edits.apply_edits(spec(TRIAL, DEFAULT), [edits.StretchPhase("trial", IsoDuration(days=14), True)], at)
    assert phases(shorter)[1].active_from == datetime(2026, 3, 17, tzinfo=UTC)


def test_a_one_time_fee_in_arrears_waits_for_the_end_of_its_phase() -> None:
    # OpenMeter (TestInArrearsOneTimeFeeSyncing; StateItem.IsBillable, GetFullServicePeriodAt): a
    # one-time fee in arrears covers its item's whole time in the phase and is invoiced at its end;
    # while the phase has no end it is not billable at all. It was billed at the end of the first
    # billing period (Feb 28 here), months before the three-month phase ended.
    fee = Card("setup", billing_cadence=None, in_advance=False)
    three_months = phase("intro", IsoDuration(), fee)
    rest = phase("rest", IsoDuration(months=3), Card("base", in_advance=True))
    s = spec(three_months, rest)
    got = [b for b in billable_items("sub", s, datetime(2026, 3, 1, tzinfo=UTC), terms) if b.item_key == "setup"]
    phase_end = datetime(2026, 4, 30, tzinfo=UTC)
    assert [(b.service_period.start, b.service_period.end, b.invoice_at) for b in got] == [
        (START, phase_end, phase_end)
    ]
    # A phase without an end: nothing to bill until the subscription is given one.
    open_ended = spec(phase("only", IsoDuration(), fee))
    assert billable_items("sub", open_ended, datetime(2027, 1, 1, tzinfo=UTC), terms) == []
    cancel = datetime(2026, 2, 14, tzinfo=UTC)
    ended = spec(phase("only", IsoDuration(), fee), end=cancel)
    got = billable_items("sub", ended, datetime(2026, 2, 1, tzinfo=UTC), terms)
    assert [(b.service_period.start, b.service_period.end, b.invoice_at) for b in got] == [(START, cancel, cancel)]


def test_a_one_time_fee_in_arrears_an_edit_ends_mid_period_is_due_with_the_billing_period() -> None:
    # OpenMeter (SubscriptionItemWithPeriods.GetInvoiceAt): in arrears is invoiced at the later of
    # the service period's end and the billing period's (the one the item started in), so a
    # one-time fee in arrears that an edit ends on Feb 10 is due with the period on Feb 28, as the
    # other in-arrears items the edit ends are (docs/billing.md). It was due on Feb 10, on an
    # invoice of its own.
    fee = Card("setup", billing_cadence=None, in_advance=False)
    removed = datetime(2026, 2, 10, tzinfo=UTC)
    only = PhaseSpec("ph", "only", "Only", IsoDuration(), (ItemSpec("setup-0", "setup", fee, active_to=removed),))
    got = billable_items("sub", spec(only), datetime(2026, 2, 11, tzinfo=UTC), terms)
    assert [(b.service_period.start, b.service_period.end, b.invoice_at) for b in got] == [
        (START, removed, datetime(2026, 2, 28, tzinfo=UTC))
    ]


def test_items_are_invoiced_with_the_subscriptions_billing_period() -> None:
    # OpenMeter (TestAlignedSubscriptionInvoicing; SubscriptionItemWithPeriods.GetInvoiceAt): weekly
    # items on a four-week plan are invoiced with the plan's billing period: in advance at its start,
    # in arrears at its end (not before their own service period ends). Both items are replaced on
    # Jan 2. By Jan 3 the in-advance fee is due for Jan 1 - 2 and the four weeks to Jan 29 (5 + 4 x
    # 8 = 37, where it was 5 + 8 = 13: one week at a time); every in-arrears part, the one the edit
    # ended on Jan 2 too, is due on Jan 29 (they were due on Jan 2 and Jan 8, on invoices of their own).
    start = datetime(2024, 1, 1, tzinfo=UTC)
    edit = datetime(2024, 1, 2, tzinfo=UTC)
    week = IsoDuration(days=7)
    advance, arrears = Card("fee", week, in_advance=True), Card("usage", week)
    only = PhaseSpec(
        "ph",
        "only",
        "Only",
        IsoDuration(),
        (
            ItemSpec("fee-0", "fee", advance, active_to=edit),
            ItemSpec("fee-1", "fee", advance, active_from=edit),
            ItemSpec("usage-0", "usage", arrears, active_to=edit),
            ItemSpec("usage-1", "usage", arrears, active_from=edit),
        ),
    )
    s = SubscriptionSpec(start, None, start, IsoDuration(days=28), (only,))
    got = billable_items("sub", s, datetime(2024, 1, 3, 12, tzinfo=UTC), terms)
    day = timedelta(days=1)
    fee = [(b.item_id, b.service_period.start, b.invoice_at) for b in got if b.item_key == "fee"]
    jan29 = start + 28 * day
    assert fee == [
        ("fee-0", start, start),
        ("fee-1", edit, start),
        ("fee-1", start + 7 * day, start),
        ("fee-1", start + 14 * day, start),
        ("fee-1", start + 21 * day, start),
        # The next billing period's weeks are due at its start, Jan 29, the end of the current
        # one: made ahead (OpenMeter's horizon).
        ("fee-1", jan29, jan29),
        ("fee-1", jan29 + 7 * day, jan29),
        ("fee-1", jan29 + 14 * day, jan29),
        ("fee-1", jan29 + 21 * day, jan29),
    ]
    usage = [
        (b.item_id, b.service_period.start, b.service_period.end, b.invoice_at) for b in got if b.item_key == "usage"
    ]
    # Every week of the current billing period is due on Jan 29, those not started yet too.
    assert usage == [
        ("usage-0", start, edit, jan29),
        ("usage-1", edit, start + 7 * day, jan29),
        ("usage-1", start + 7 * day, start + 14 * day, jan29),
        ("usage-1", start + 14 * day, start + 21 * day, jan29),
        ("usage-1", start + 21 * day, jan29, jan29),
    ]


def test_billable_periods_are_whole_seconds_and_keep_their_keys() -> None:
    # OpenMeter (subscriptionsync/service/targetstate/phaseiterator.go, truncateItemsIfNeeded)
    # truncates every service, full and billing period to the second, meters' resolution, before it
    # makes lines of them: a subscription started "immediately" at 10:00:00.123456 bills from
    # 10:00:00, and a fee is due then. Tally's lines started at the microsecond. The key stays the
    # one the untruncated start gives, so a line made before is still found (not billed again).
    start = datetime(2026, 1, 31, 10, 0, 0, 123456, tzinfo=UTC)
    whole = start.replace(microsecond=0)
    only = phase("only", IsoDuration(), Card("base", in_advance=True), Card("tokens"))
    s = SubscriptionSpec(start, None, start, MONTH, (only,))
    got = billable_items("sub", s, datetime(2026, 3, 1, tzinfo=UTC), terms)
    feb28, mar31 = datetime(2026, 2, 28, 10, tzinfo=UTC), datetime(2026, 3, 31, 10, tzinfo=UTC)
    apr30 = datetime(2026, 4, 30, 10, tzinfo=UTC)
    assert [
        (b.item_key, b.service_period.start, b.service_period.end, b.full_period.start, b.full_period.end, b.invoice_at)
        for b in got
    ] == [
        ("base", whole, feb28, whole, feb28, whole),
        ("tokens", whole, feb28, whole, feb28, feb28),
        ("base", feb28, mar31, feb28, mar31, feb28),
        ("tokens", feb28, mar31, feb28, mar31, mar31),
        ("base", mar31, apr30, mar31, apr30, mar31),  # due at the current period's end: made ahead
    ]
    assert got[0].key == f"sub/only/base/it-only-base/{start.isoformat()}"
    # A one-time fee too.
    setup = phase("only", IsoDuration(), Card("setup", billing_cadence=None, in_advance=True))
    (fee,) = billable_items("sub", SubscriptionSpec(start, None, start, MONTH, (setup,)), feb28, terms)
    assert (fee.service_period.start, fee.invoice_at) == (whole, whole)
    # Canceled at a fraction of a second: the last period ends on the whole second before it.
    cancel = datetime(2026, 2, 10, 8, 30, 15, 987654, tzinfo=UTC)
    ended = SubscriptionSpec(start, cancel, start, MONTH, (only,))
    last = billable_items("sub", ended, feb28, terms)
    assert {b.service_period.end for b in last} == {cancel.replace(microsecond=0)}
