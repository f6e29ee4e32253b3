"""Add-ons on a subscription, as pure transformations of the spec.

Buying an add-on (or changing how many) never rewrites the past: from the effective time, every
phase the plan offers the add-on in (its `fromPlanPhase` and the phases after it) gets the add-on's
rate cards as items, with the quantity bought; a change of quantity ends those items at the change
and starts new versions with the new quantity (none for 0). The quantity's history is the add-on's
`timeline`. An add-on's rate card may not take the key of a plan item of the same phase (OpenMeter
merges such rate cards into the plan's; Tally refuses the purchase instead, 400
`addon_rate_card_key_conflict`, so every line on an invoice says which it is).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.errors import ValidationError
from domain.subscriptions.models import QuantitySegment, SubscriptionAddon
from domain.subscriptions.timeline import ItemSpec, SubscriptionSpec, TimelineRateCard, phases

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
    """The add-on's rate cards as items of every phase it is offered in that has not ended by `at`."""
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
        plan_keys = {i.key for i in phase.items if i.addon_id is None}
        added: list[ItemSpec] = []
        for card in offer.rate_cards:
            if card.key in plan_keys:
                raise ValidationError.single(
                    "addon",
                    f"the add-on's rate card {card.key!r} has the key of a plan item of phase {phase.key!r}",
                    "addon_rate_card_key_conflict",
                )
            start = at if view.active_from < at else None
            added.append(
                ItemSpec(
                    new_id(),
                    card.key,
                    card,
                    active_from=start,
                    created_at=at,
                    addon_id=subscription_addon_id,
                    quantity=Decimal(quantity),
                )
            )
        updated[phase.key] = dataclasses.replace(phase, items=(*phase.items, *added))
    return dataclasses.replace(spec, phases=tuple(updated[p.key] for p in spec.phases))


def end_items(spec: SubscriptionSpec, subscription_addon_id: str, at: datetime) -> SubscriptionSpec:
    """The add-on's items end at `at`; versions that would only start later are dropped."""
    starts = {v.spec.key: v.active_from for v in phases(spec)}
    out = []
    for phase in spec.phases:
        kept: list[ItemSpec] = []
        for item in phase.items:
            if item.addon_id == subscription_addon_id:
                start = item.active_from or starts.get(phase.key, spec.active_from)
                if start >= at:
                    continue
                if item.active_to is None or item.active_to > at:
                    item = dataclasses.replace(item, active_to=at)
            kept.append(item)
        out.append(dataclasses.replace(phase, items=tuple(kept)))
    return dataclasses.replace(spec, phases=tuple(out))


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
