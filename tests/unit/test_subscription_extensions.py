"""What an add-on rate card does to the plan rate card it extends (OpenMeter's extend.go Apply)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain.catalog.prices import FlatPrice
from domain.catalog.ratecards import TemplateType
from domain.subscriptions.catalog import CatalogRateCards
from domain.subscriptions.extensions import extended
from domain.subscriptions.timeline import Extension

TOKENS: dict[str, Any] = {
    "type": "usage_based",
    "key": "tokens",
    "name": "Tokens",
    "featureKey": "tokens",
    "billingCadence": "P1M",
}


def card(**body: Any) -> Any:
    return CatalogRateCards().parse({**TOKENS, **body}, "rateCard")


def test_entitlements_and_discounts_merge_as_openmeter_applies_them() -> None:
    plan = card(
        price={"type": "unit", "amount": "0.001"},
        entitlementTemplate={"type": "metered", "issueAfterReset": 1000},
        discounts={"percentage": {"percentage": 10}},
    )
    more = card(name="More tokens", entitlementTemplate={"type": "metered", "issueAfterReset": 500})
    got = extended(plan, [Extension("sa", more, 2)])
    # issueAfterReset added per instance; the plan's name, price and percentage discount kept.
    assert got.entitlement_template.issue_after_reset == 2000
    assert (got.name, got.price, got.discounts) == (plan.name, plan.price, plan.discounts)
    # An add-on's percentage discount is not carried over (Apply merges usage discounts only).
    assert (
        extended(
            card(),
            [
                Extension(
                    "sa", card(discounts={"percentage": {"percentage": 5}}, price={"type": "unit", "amount": "1"}), 1
                )
            ],
        ).discounts.percentage
        is None
    )
    # A boolean template on a boolean one stays one; an item without a template takes the add-on's.
    boolean = card(entitlementTemplate={"type": "boolean"})
    assert extended(boolean, [Extension("sa", boolean, 3)]).entitlement_template == boolean.entitlement_template
    assert extended(card(), [Extension("sa", boolean, 1)]).entitlement_template.type is TemplateType.BOOLEAN


def test_flat_amounts_of_several_add_ons_add_up() -> None:
    base = CatalogRateCards().parse(
        {
            "type": "flat_fee",
            "key": "base",
            "name": "Base",
            "billingCadence": "P1M",
            "price": {"type": "flat", "amount": "30"},
        },
        "rateCard",
    )
    five = CatalogRateCards().parse(
        {**base.rest(), "name": "Five", "price": {"type": "flat", "amount": "5"}}, "rateCard"
    )
    got = extended(base, [Extension("a", five, 2), Extension("b", five, 1)])
    assert got.price == FlatPrice(Decimal(45)) and got.name == "Base"
