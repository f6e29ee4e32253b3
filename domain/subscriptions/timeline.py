"""A subscription's timeline, and what it bills: pure functions of the subscription's spec and "now".

A subscription is stored as a spec (`SubscriptionSpec`): its start and end, its billing anchor and
cadence, and its phases. A phase starts exactly `start_after` after the subscription starts (as
OpenMeter's; a billing period the switch falls in is split between the two phases' items, each
clipped to its phase) and ends where the next phase starts, or with the subscription. A phase
holds item versions: for each item key a sequence of rate cards, each in force over its own part of
the phase (an edit that replaces an item ends one version and starts the next; both stay in the
spec, which is how `itemTimelines` is read).

`billable_items(spec, now)` turns that into the billing side's work: one `BillableItem` per item
version and billing period due by the end of the billing period `now` falls in (so the next
period's in-advance fees are made ahead, as OpenMeter's), with the service period (clipped to the item),
the full billing period (what proration divides by) and when it becomes invoiceable. Each item has a
deterministic `key`, so the billing side can reconcile what it holds against a fresh computation:
re-running the sync after an edit or a crash finds the same keys and neither bills twice nor drops a
line. The function reads nothing but its arguments; every caller gets the same answer for the same
spec and time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from domain.entitlements.recurrence import IsoDuration, Period, Recurrence, ensure_utc


class TimelineRateCard(Protocol):
    """What the timeline needs from a rate card itself (domain.catalog's rate cards provide it)."""

    @property
    def key(self) -> str: ...


class BillingTerms(Protocol):
    """How a rate card is invoiced: whether at all, how often (None: once), and whether in advance
    (at the service period's start) or in arrears."""

    def is_billable(self) -> bool: ...

    def invoiced_in_advance(self) -> bool: ...

    @property
    def cadence(self) -> IsoDuration | None: ...


@dataclass(frozen=True, slots=True)
class Extension:
    """A subscription add-on's rate card merged `quantity` times into a plan item version (see
    domain.subscriptions.extensions)."""

    addon_id: str
    rate_card: TimelineRateCard
    quantity: int


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """One version of an item: a rate card in force over part of its phase.

    `active_from`/`active_to` are absolute times; None means the phase's start/end, so an item that
    was never edited follows its phase when phases move (stretch, remove with shift).
    """

    id: str
    key: str
    rate_card: TimelineRateCard
    active_from: datetime | None = None
    active_to: datetime | None = None
    created_at: datetime | None = None
    # Set when the item came from an add-on instead of the plan: the subscription add-on's id.
    addon_id: str | None = None
    # How many of the rate card this item bills (an add-on bought several times); 1 for plan items.
    quantity: Decimal = Decimal(1)
    # A plan item version add-ons extend: `rate_card` is `base` with `extensions` merged in (kept so
    # that taking an add-on off recomputes the item exactly). None and () for any other item.
    base: TimelineRateCard | None = None
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    id: str
    key: str
    name: str
    start_after: IsoDuration
    items: tuple[ItemSpec, ...] = ()
    description: str | None = None
    # Intended length from the plan; informational (the next phase's start decides the end).
    duration: IsoDuration | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    active_from: datetime
    active_to: datetime | None
    billing_anchor: datetime
    billing_cadence: IsoDuration
    phases: tuple[PhaseSpec, ...]

    @property
    def billing(self) -> Recurrence:
        return Recurrence(self.billing_cadence, self.billing_anchor)


ZERO = IsoDuration()


# ---------------------------------------------------------------------------------------------
# phases and items in absolute time


@dataclass(frozen=True, slots=True)
class PhaseView:
    spec: PhaseSpec
    active_from: datetime
    active_to: datetime | None

    def contains(self, t: datetime) -> bool:
        return self.active_from <= t and (self.active_to is None or t < self.active_to)


@dataclass(frozen=True, slots=True)
class ItemView:
    spec: ItemSpec
    phase_key: str
    active_from: datetime
    active_to: datetime | None

    def contains(self, t: datetime) -> bool:
        return self.active_from <= t and (self.active_to is None or t < self.active_to)

    @property
    def is_empty(self) -> bool:
        return self.active_to is not None and self.active_to <= self.active_from


def phase_start(spec: SubscriptionSpec, phase: PhaseSpec) -> datetime:
    """Where a phase starts: `start_after` past the subscription's start (OpenMeter's GetPhaseCadence)."""
    nominal = phase.start_after.add_to(spec.active_from)
    return max(nominal, spec.active_from)


def phases(spec: SubscriptionSpec) -> list[PhaseView]:
    """The phases in order with their absolute times; a phase pushed past the end is dropped."""
    starts = [(phase_start(spec, p), i, p) for i, p in enumerate(spec.phases)]
    starts.sort(key=lambda s: (s[0], s[1]))
    views: list[PhaseView] = []
    for index, (start, _, phase) in enumerate(starts):
        end: datetime | None = starts[index + 1][0] if index + 1 < len(starts) else None
        if spec.active_to is not None:
            end = spec.active_to if end is None else min(end, spec.active_to)
        if end is not None and end <= start and not (index == 0 and start == spec.active_from):
            continue  # starts only after the subscription ended (or shares its start with the next one)
        views.append(PhaseView(phase, start, end))
    return views


def current_phase(spec: SubscriptionSpec, at: datetime) -> PhaseView | None:
    for view in phases(spec):
        if view.contains(at):
            return view
    return None


def items(spec: SubscriptionSpec, phase: PhaseView) -> list[ItemView]:
    """Every item version of a phase with its absolute times, clipped to the phase."""
    out: list[ItemView] = []
    for item in phase.spec.items:
        start = max(item.active_from or phase.active_from, phase.active_from)
        end = _min_end(item.active_to, phase.active_to)
        out.append(ItemView(item, phase.spec.key, start, end))
    return out


def item_timelines(spec: SubscriptionSpec, phase: PhaseView) -> dict[str, list[ItemView]]:
    """Item versions grouped by key, each key's versions in time order (OpenMeter's itemTimelines)."""
    grouped: dict[str, list[ItemView]] = {}
    for view in items(spec, phase):
        grouped.setdefault(view.spec.key, []).append(view)
    for versions in grouped.values():
        versions.sort(key=lambda v: v.active_from)
    return grouped


def representative_items(spec: SubscriptionSpec, phase: PhaseView, at: datetime) -> list[ItemView]:
    """One version per key, as OpenMeter flattens `items`: the active one in the current phase, the
    last one in a past phase, the first one in a future phase."""
    chosen: list[ItemView] = []
    for versions in item_timelines(spec, phase).values():
        live = [v for v in versions if not v.is_empty] or versions
        if phase.contains(at):
            active = [v for v in live if v.contains(at)]
            if not active:
                continue
            chosen.append(active[0])
        elif phase.active_to is not None and phase.active_to <= at:
            chosen.append(live[-1])
        else:
            chosen.append(live[0])
    return chosen


def all_items(spec: SubscriptionSpec) -> list[ItemView]:
    out: list[ItemView] = []
    for phase in phases(spec):
        out.extend(v for v in items(spec, phase) if not v.is_empty)
    return out


# ---------------------------------------------------------------------------------------------
# billing


@dataclass(frozen=True, slots=True)
class BillableItem:
    """One item version's share of one billing period: what the billing side turns into a line.

    `key` identifies it across syncs (subscription, phase, item version, period start). The amount
    for `service_period` is the rating engine's business; `full_period` is the denominator of any
    proration, `invoice_at` is when the line becomes collectable.
    """

    key: str
    subscription_id: str
    phase_key: str
    item_key: str
    item_id: str
    service_period: Period
    full_period: Period
    invoice_at: datetime
    rate_card: TimelineRateCard = field(compare=False)
    one_time: bool = False
    quantity: Decimal = Decimal(1)
    # The subscription's billing period the item is invoiced with (OpenMeter's aligned billing
    # period, cut at the phase): a daily item of a monthly subscription has the month here.
    billing_period: Period | None = None


def billable_items(
    subscription_id: str,
    spec: SubscriptionSpec,
    now: datetime,
    terms: BillingTermsFor,
) -> list[BillableItem]:
    """Every billable item due by the generation horizon (`generation_horizon`: the end of the
    billing period `now` falls in), in a stable order.

    Deterministic in (spec, now): the same inputs give the same keys and periods, which is what makes
    the sync idempotent. `terms(rate_card)` says whether a rate card bills at all and whether in
    advance; it is passed in so this module needs nothing from the catalog but that answer.
    """
    now = ensure_utc(now, "now")
    out: list[BillableItem] = []
    horizon = generation_horizon(spec, now)
    for phase in phases(spec):
        billable = [v for v in items(spec, phase) if not v.is_empty and terms(v.spec.rate_card).is_billable()]
        if not billable or phase.active_to == phase.active_from:
            # Nothing to bill here; the phases after it are still looked at (a free trial's
            # successor has its first fees made ahead, as OpenMeter's collectUpcomingLines).
            continue
        limit = horizon
        if phase.active_from > limit:
            limit = min(whole_second(v.active_from) for v in billable)
        _phase_items(subscription_id, spec, phase, billable, whole_second(limit), terms, out)
        if phase.active_to is None or phase.active_to > now:
            break
    out.sort(key=lambda b: (b.service_period.start, b.phase_key, b.item_key, b.key))
    return out


def generation_horizon(spec: SubscriptionSpec, now: datetime) -> datetime:
    """How far ahead items are made: everything due by the end of the billing period `now` is in
    (OpenMeter's collectUpcomingLines), so the next period's in-advance fees wait on the gathering
    invoice, due when it starts; before the subscription starts, what is due at its start.
    (OpenMeter makes only what is due at that instant when `now` is exactly a period's start, and
    nothing of a phase starting exactly then; the next sync catches up. Here a period is its own
    from its first instant.)"""
    if now < spec.active_from:
        return spec.active_from
    return billing_period_at(spec, now).end


def _phase_items(
    subscription_id: str,
    spec: SubscriptionSpec,
    phase: PhaseView,
    billable: list[ItemView],
    limit: datetime,
    terms: BillingTermsFor,
    out: list[BillableItem],
) -> None:
    """The phase's items due by `limit` (one-time fees whatever their due time, as OpenMeter's)."""
    for item in billable:
        card_terms = terms(item.spec.rate_card)
        in_advance = card_terms.invoiced_in_advance()
        cadence = card_terms.cadence
        if cadence is None:
            if not in_advance and item.active_to is None:
                # In arrears means at the end of the item's time in its phase: while neither has an
                # end there is nothing to bill yet (OpenMeter's StateItem.IsBillable).
                continue
            out.append(_one_time(subscription_id, spec, phase, item, in_advance))
            continue
        for exact_full in _periods(Recurrence(cadence, spec.billing_anchor), item.active_from, item.active_to):
            exact_service = Period(
                max(exact_full.start, item.active_from), _min_end(exact_full.end, item.active_to) or exact_full.end
            )
            # Periods are billed at whole seconds, meters' resolution (OpenMeter's phase iterator
            # truncates them); the key keeps the exact start, so lines made before are found.
            service, full = _whole_seconds(exact_service), _whole_seconds(exact_full)
            # Invoiced with the subscription's billing period (OpenMeter's aligned billing, even for
            # an item of a shorter cadence or one an edit ended): in advance at its start, so every
            # part of a period that has begun is due; otherwise at its end, and not before the part.
            billing = _whole_seconds(_billing_period(spec, phase, exact_service.start))
            invoice_at = billing.start if in_advance else max(service.end, billing.end)
            if invoice_at > limit:
                break
            if service.end <= service.start:
                continue
            out.append(
                BillableItem(
                    key=_key(subscription_id, item, exact_service.start),
                    subscription_id=subscription_id,
                    phase_key=item.phase_key,
                    item_key=item.spec.key,
                    item_id=item.spec.id,
                    service_period=service,
                    full_period=full,
                    invoice_at=invoice_at,
                    billing_period=billing,
                    rate_card=item.spec.rate_card,
                    quantity=item.spec.quantity,
                )
            )


class BillingTermsFor(Protocol):
    def __call__(self, rate_card: TimelineRateCard, /) -> BillingTerms: ...


def _one_time(
    subscription_id: str, spec: SubscriptionSpec, phase: PhaseView, item: ItemView, in_advance: bool
) -> BillableItem:
    # A one-time fee is never prorated. In advance, its "period" is the billing period it falls in,
    # from the item's start, and it is due at once. In arrears, it covers the item's whole time in
    # its phase (its end is known: see billable_items) and is due when that ends, as OpenMeter's
    # GetFullServicePeriodAt: not at the end of the first billing period, months early.
    full = spec.billing.period_at(item.active_from)
    if not in_advance and item.active_to is not None:
        service = Period(item.active_from, item.active_to)
    else:
        service = Period(item.active_from, _min_end(full.end, item.active_to) or full.end)
    if service.end <= service.start:
        service = Period(item.active_from, full.end)
    # In arrears: not before the billing period the item started in ends either (OpenMeter's
    # GetInvoiceAt), so an edit ending it mid-period bills it with that period, not on its own.
    billing = _billing_period(spec, phase, item.active_from)
    invoice_at = service.start if in_advance else max(service.end, billing.end)
    # At whole seconds, as every billed period (see billable_items); the key keeps the exact start.
    service, invoice_at, billing = _whole_seconds(service), whole_second(invoice_at), _whole_seconds(billing)
    return BillableItem(
        key=_key(subscription_id, item, item.active_from),
        subscription_id=subscription_id,
        phase_key=item.phase_key,
        item_key=item.spec.key,
        item_id=item.spec.id,
        service_period=service,
        full_period=service,
        invoice_at=invoice_at,
        billing_period=billing,
        rate_card=item.spec.rate_card,
        one_time=True,
        quantity=item.spec.quantity,
    )


def _periods(recurrence: Recurrence, start: datetime, end: datetime | None) -> Iterator[Period]:
    """The item's periods overlapping [start, end), in order (the caller stops where it must)."""
    period = recurrence.period_at(start)
    while end is None or period.start < end:
        yield period
        period = Period(period.end, recurrence.next_after(period.end, inclusive=False))


def _billing_period(spec: SubscriptionSpec, phase: PhaseView, at: datetime) -> Period:
    """The subscription's billing period at `at`, within its phase (OpenMeter's GetAlignedBillingPeriodAt)."""
    period = spec.billing.period_at(at)
    return Period(max(period.start, phase.active_from), _min_end(period.end, phase.active_to) or period.end)


def billing_period_at(spec: SubscriptionSpec, at: datetime) -> Period:
    """The subscription's billing period at `at`, cut at its phase's start and end (OpenMeter's
    GetAlignedBillingPeriodAt): a phase switch inside a period ends one billing cycle and starts
    the next. Outside every phase (before the start, after the end), the cadence's period."""
    phase = current_phase(spec, at)
    if phase is None:
        return spec.billing.period_at(at)
    return _billing_period(spec, phase, at)


def _key(subscription_id: str, item: ItemView, period_start: datetime) -> str:
    return f"{subscription_id}/{item.phase_key}/{item.spec.key}/{item.spec.id}/{period_start.isoformat()}"


def item_of(key: str) -> str:
    """The subscription item (subscription, phase and rate-card key: every version of it) a
    billable item's `key` bills. Cut from the right: the version ID and the ISO start hold no '/'."""
    return key.rsplit("/", 2)[0]


def rate_card_key_of(key: str) -> str:
    """The rate-card key of the item a billable item's `key` bills (keys are slugs: no '/')."""
    return key.rsplit("/", 3)[1]


def whole_second(at: datetime) -> datetime:
    """`at` truncated to the second: billed periods have meters' resolution (OpenMeter's
    MinimumWindowSizeDuration)."""
    return at.replace(microsecond=0)


def _whole_seconds(period: Period) -> Period:
    return Period(whole_second(period.start), whole_second(period.end))


def _min_end(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def boundaries_between(spec: SubscriptionSpec, start: datetime, end: datetime) -> Sequence[datetime]:
    """Billing-period boundaries in [start, end]."""
    out: list[datetime] = []
    for boundary in spec.billing.iterate(start, inclusive=True):
        if boundary > end:
            break
        out.append(boundary)
    return out
