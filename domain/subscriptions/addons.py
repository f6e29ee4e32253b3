"""Add-ons on a subscription, as pure transformations of the spec.

Buying an add-on (or changing how many) never rewrites the past: from the effective time, every
phase the plan offers the add-on in (its `fromPlanPhase` and the phases after it) gets the add-on's
rate cards as items, with the quantity bought; a change of quantity ends those items at the change
and starts new versions with the new quantity (none for 0). The quantity's history is the add-on's
`timeline`. An add-on's rate card with the key of a plan item extends that item instead (as
OpenMeter's): its versions from the effective time carry the add-on (domain.subscriptions.extensions).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.errors import ValidationError
from domain.subscriptions import extensions
from domain.subscriptions.models import QuantitySegment, SubscriptionAddon
from domain.subscriptions.timeline import (
    Extension,
    ItemSpec,
    PhaseView,
    SubscriptionSpec,
    TimelineRateCard,
    items,
    phases,
)

SINGLE = "single"
MULTIPLE = "multiple"


@dataclass(frozen=True, slots=True)
class AddonOffer:
    """An add-on version as the subscription's plan offers it (a plan add-on)."""

    addon_id: str
    key: str
    version: int
    instance_type: str
    name: str
    rate_cards: tuple[TimelineRateCard, ...]
    from_plan_phase: str
    max_quantity: int | None = None


def check_quantity(offer: AddonOffer, quantity: int, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if offer.instance_type == SINGLE and quantity not in (low, 1):
        raise ValidationError.single(
            "quantity", "a single-instance add-on is bought once (quantity 1)", "addon_quantity_single_instance"
        )
    if quantity < low:
        raise ValidationError.single("quantity", f"must be at least {low}", "addon_quantity_out_of_range")
    if offer.max_quantity is not None and quantity > offer.max_quantity:
        raise ValidationError.single(
            "quantity", f"at most {offer.max_quantity} of this add-on may be bought", "addon_max_quantity_exceeded"
        )


def check_phase(spec: SubscriptionSpec, offer: AddonOffer, at: datetime) -> None:
    """A purchase or a change of quantity takes effect in the add-on's `fromPlanPhase` or a later
    phase (OpenMeter refuses one during an earlier phase, e.g. the trial, rather than deferring it)."""
    views = phases(spec)
    current = next((v for v in views if v.contains(at)), None)
    if current is None:
        raise ValidationError.single(
            "timing", "the subscription has no active phase at that time", "addon_phase_not_found"
        )
    keys = [v.spec.key for v in views]
    if offer.from_plan_phase in keys and keys.index(current.spec.key) < keys.index(offer.from_plan_phase):
        raise ValidationError.single(
            "timing",
            f"the add-on can be added from phase {offer.from_plan_phase!r} on; the subscription is in "
            f"phase {current.spec.key!r} then",
            "addon_phase_not_reached",
        )


def add_items(
    spec: SubscriptionSpec,
    subscription_addon_id: str,
    offer: AddonOffer,
    quantity: int,
    at: datetime,
    new_id: Callable[[], str],
) -> SubscriptionSpec:
    """The add-on's rate cards in every phase it is offered in that has not ended by `at`: each one
    extends the plan item with its key from `at` (see domain.subscriptions.extensions), and is an
    item of its own where the phase has no such plan item."""
    views = phases(spec)
    keys = [v.spec.key for v in views]
    if offer.from_plan_phase not in keys:
        raise ValidationError.single(
            "addon",
            f"the add-on starts in phase {offer.from_plan_phase!r}, which this subscription does not have",
            "addon_phase_not_found",
        )
    first = keys.index(offer.from_plan_phase)
    updated = {p.key: p for p in spec.phases}
    for view in views[first:]:
        if view.active_to is not None and view.active_to <= at:
            continue
        phase = updated[view.spec.key]
        items = phase.items
        for index, card in enumerate(offer.rate_cards):
            added = _Adding(subscription_addon_id, card, quantity, at, f"addon.rateCards[{index}]", new_id)
            items = added.into(
                spec, PhaseView(dataclasses.replace(phase, items=items), view.active_from, view.active_to)
            )
        updated[phase.key] = dataclasses.replace(phase, items=items)
    return dataclasses.replace(spec, phases=tuple(updated[p.key] for p in spec.phases))


@dataclass(frozen=True, slots=True)
class _Adding:
    """One add-on rate card going into one phase from `at` (OpenMeter's getApplyForRateCard): the
    plan item versions with its key that `at` has not ended are extended (one `at` falls in is split
    there: before as it was, after extended, a new version), and the rest of the time an item of the
    add-on's own covers."""

    addon_id: str
    card: TimelineRateCard
    quantity: int
    at: datetime
    where: str
    new_id: Callable[[], str]

    def into(self, spec: SubscriptionSpec, phase: PhaseView) -> tuple[ItemSpec, ...]:
        start = max(self.at, phase.active_from)
        out: list[ItemSpec] = []
        covered: list[tuple[datetime, datetime | None]] = []
        for view in items(spec, phase):
            item = view.spec
            if item.key != self.card.key or item.addon_id is not None or view.is_empty:
                out.append(item)
                continue
            if view.active_to is not None and view.active_to <= start:
                out.append(item)
                continue
            extensions.check(item.rate_card, self.card, self.where, phase.spec.key)
            covered.append((max(view.active_from, start), view.active_to))
            base = item.base if item.base is not None else item.rate_card
            ext = (*item.extensions, Extension(self.addon_id, self.card, self.quantity))
            merged = extensions.extended(base, ext)
            if view.active_from < start:
                out.append(dataclasses.replace(item, active_to=start))
                item = dataclasses.replace(item, active_from=start)
            out.append(
                dataclasses.replace(
                    item, id=self.new_id(), created_at=self.at, rate_card=merged, base=base, extensions=ext
                )
            )
        for gap_from, gap_to in _gaps(start, phase.active_to, covered):
            out.append(
                ItemSpec(
                    self.new_id(),
                    self.card.key,
                    self.card,
                    active_from=gap_from if gap_from > phase.active_from else None,
                    active_to=gap_to if gap_to != phase.active_to else None,
                    created_at=self.at,
                    addon_id=self.addon_id,
                    quantity=Decimal(self.quantity),
                )
            )
        return tuple(out)


def _gaps(
    start: datetime, end: datetime | None, covered: list[tuple[datetime, datetime | None]]
) -> list[tuple[datetime, datetime | None]]:
    """The parts of [start, end) no span of `covered` (all within it) covers."""
    out: list[tuple[datetime, datetime | None]] = []
    cursor: datetime | None = start
    for span_from, span_to in sorted(covered, key=lambda s: s[0]):
        if cursor is None:
            break
        if span_from > cursor:
            out.append((cursor, span_from))
        cursor = None if span_to is None else max(cursor, span_to)
    if cursor is not None and (end is None or cursor < end):
        out.append((cursor, end))
    return out


def end_items(
    spec: SubscriptionSpec, subscription_addon_id: str, at: datetime, new_id: Callable[[], str]
) -> SubscriptionSpec:
    """The add-on's items end at `at` (versions that would only start later are dropped), and the
    plan items it extends are themselves again from `at` (OpenMeter's Restore): a version `at` falls
    in is split there, a later one recomputed without the add-on, and joined to the version before
    it when the two are then the same."""
    out = []
    for view in phases(spec):
        kept: list[ItemSpec] = []
        for item_view in items(spec, view):
            item = item_view.spec
            if item.addon_id == subscription_addon_id:
                if item_view.active_from >= at:
                    continue
                if item.active_to is None or item.active_to > at:
                    item = dataclasses.replace(item, active_to=at)
            elif any(e.addon_id == subscription_addon_id for e in item.extensions):
                if item_view.active_to is not None and item_view.active_to <= at:
                    kept.append(item)
                    continue
                restored_from = max(item_view.active_from, at)
                if item_view.active_from < at:
                    kept.append(dataclasses.replace(item, active_to=at))
                    item = dataclasses.replace(item, id=new_id(), active_from=at, created_at=at)
                item = _without(item, subscription_addon_id)
                before = next(
                    (
                        i
                        for i, k in enumerate(kept)
                        if k.key == item.key
                        and k.addon_id is None
                        and k.active_to is not None
                        and k.active_to == restored_from
                        and (k.rate_card, k.base, k.extensions) == (item.rate_card, item.base, item.extensions)
                    ),
                    None,
                )
                if before is not None:
                    # Taken back before it started: the version before goes on as if never split.
                    kept[before] = dataclasses.replace(kept[before], active_to=item.active_to)
                    continue
            kept.append(item)
        out.append(dataclasses.replace(view.spec, items=tuple(kept)))
    by_key = {p.key: p for p in out}
    return dataclasses.replace(spec, phases=tuple(by_key.get(p.key, p) for p in spec.phases))


def _without(item: ItemSpec, subscription_addon_id: str) -> ItemSpec:
    assert item.base is not None
    left = tuple(e for e in item.extensions if e.addon_id != subscription_addon_id)
    if not left:
        return dataclasses.replace(item, rate_card=item.base, base=None, extensions=())
    return dataclasses.replace(item, rate_card=extensions.extended(item.base, left), extensions=left)


def new_timeline(quantity: int, at: datetime) -> tuple[QuantitySegment, ...]:
    return (QuantitySegment(at, None, quantity),)


def change_timeline(addon: SubscriptionAddon, quantity: int, at: datetime) -> tuple[QuantitySegment, ...]:
    """The quantity history with a change at `at` (a later change replaces what was scheduled).
    Every change is a segment, 0 included (OpenMeter's timeline shows it, and the add-on has no
    activeTo while it stays on the subscription at 0); taken back before it started, the add-on
    keeps just the 0 from `at`, as the quantity it was scheduled with no longer applies."""
    kept = [s for s in addon.timeline if s.active_from < at]
    if kept and (kept[-1].active_to is None or kept[-1].active_to > at):
        kept[-1] = dataclasses.replace(kept[-1], active_to=at)
    return (*kept, QuantitySegment(at, None, quantity))
