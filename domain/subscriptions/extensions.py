"""An add-on rate card that extends the plan item with its key, as OpenMeter's
`subscriptionaddon.SubscriptionAddonRateCard.Apply` (subscription/addon/extend.go) merges them.

The merged rate card is the plan item's with, once per instance bought:
- the add-on's flat price added to the item's flat price (same payment term); an item without a
  price takes the add-on's;
- the add-on's usage discount quantity added to the item's (an item without one takes it);
- a metered entitlement template's `issueAfterReset` added; an item without a template takes the
  add-on's; two boolean templates stay one.
Everything else is the item's: name, description, metadata, feature, billing cadence, tax config,
percentage discount. An add-on's percentage discount is not carried over (OpenMeter's Apply merges
only usage discounts).

What cannot be merged is refused at purchase, with OpenMeter's issue codes (its Apply runs
RateCardWithOverlay's validators with the add-on's rate card as the base): two prices of another
type, a non-flat add-on price, flat prices paid differently, two feature keys or billing cadences
that differ, two percentage discounts, entitlement templates of another type, static or with
another usage period.

An extended item version keeps what it was extended from (`base`) and by what (`extensions`), so
taking an add-on off recomputes the item from its base and the extensions left, exactly, instead
of subtracting (OpenMeter's Restore).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from domain.catalog.addons import check_overlay_terms
from domain.catalog.prices import FlatPrice
from domain.catalog.ratecards import EntitlementTemplate, RateCard, TemplateType
from domain.catalog.wire import Issues, join
from domain.subscriptions.timeline import Extension, TimelineRateCard


def check(target: TimelineRateCard, card: TimelineRateCard, where: str, phase_key: str) -> None:
    """Refuse (400) an add-on rate card that cannot extend `target`, as OpenMeter's Apply does."""
    item, addon = _card(target), _card(card)
    issues = Issues()
    in_phase = f"in phase {phase_key!r}"
    what = f"the add-on's rate card {addon.key!r} extends the plan item {in_phase}, but"
    if item.price is not None and addon.price is not None:
        if item.price.type != addon.price.type:
            issues.error(
                join(where, "price.type"),
                f"{what} its price is {addon.price.type.value} and the item's {item.price.type.value}: "
                "the types must match",
                "rate_card_price_type_mismatch",
            )
        if not isinstance(addon.price, FlatPrice):
            issues.error(
                join(where, "price.type"),
                f"{what} only a flat price can be added to the item's price",
                "rate_card_only_flat_price_allowed",
            )
        elif isinstance(item.price, FlatPrice) and item.price.payment_term is not addon.price.payment_term:
            issues.error(
                join(where, "price.paymentTerm"),
                f"{what} it is paid {addon.price.payment_term.value} and the item "
                f"{item.price.payment_term.value}: the payment terms must match",
                "rate_card_price_payment_term_mismatch",
            )
    if item.feature_key is not None and addon.feature_key is not None and item.feature_key != addon.feature_key:
        issues.error(
            join(where, "featureKey"),
            f"{what} its feature {addon.feature_key!r} is not the item's {item.feature_key!r}",
            "rate_card_feature_key_mismatch",
        )
    if (
        item.billing_cadence is not None
        and addon.billing_cadence is not None
        and item.billing_cadence != addon.billing_cadence
    ):
        issues.error(
            join(where, "billingCadence"),
            f"{what} it is billed every {addon.billing_cadence.iso()} and the item every "
            f"{item.billing_cadence.iso()}: the billing cadences must match",
            "rate_card_billing_cadence_mismatch",
        )
    check_overlay_terms(item, addon, where, in_phase, issues)
    issues.raise_if_errors()


def extended(base: TimelineRateCard, extensions: Sequence[Extension]) -> RateCard:
    """`base` with every extension applied `quantity` times (the order does not matter: each part
    is a sum, or taken when the item has none)."""
    card = _card(base)
    for extension in extensions:
        for _ in range(extension.quantity):
            card = _apply(card, _card(extension.rate_card))
    return card


def _apply(item: RateCard, addon: RateCard) -> RateCard:
    price = item.price
    if addon.price is not None:
        if price is None:
            price = addon.price
        else:
            # `check` let only flat on flat through.
            assert isinstance(price, FlatPrice) and isinstance(addon.price, FlatPrice)
            price = dataclasses.replace(price, amount=price.amount + addon.price.amount)
    discounts = item.discounts
    if addon.discounts.usage_quantity is not None:
        discounts = dataclasses.replace(
            discounts, usage_quantity=(discounts.usage_quantity or 0) + addon.discounts.usage_quantity
        )
    return dataclasses.replace(
        item,
        price=price,
        discounts=discounts,
        entitlement_template=_template(item.entitlement_template, addon.entitlement_template),
    )


def _template(item: EntitlementTemplate | None, addon: EntitlementTemplate | None) -> EntitlementTemplate | None:
    if addon is None:
        return item
    if item is None:
        return addon
    if item.type is TemplateType.METERED:
        granted = (item.issue_after_reset or 0) + (addon.issue_after_reset or 0)
        return dataclasses.replace(item, issue_after_reset=granted)
    # Boolean on boolean: still one (OpenMeter counts them in an annotation, which only Restore reads).
    return item


def _card(rate_card: TimelineRateCard) -> RateCard:
    assert isinstance(rate_card, RateCard), type(rate_card)
    return rate_card
