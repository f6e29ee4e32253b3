"""An add-on rate card with the key of a plan item extends that item, as OpenMeter's
subscriptionaddon Apply/Restore (subscription/addon/extend.go, addon/diff): bought, changed and
taken off through the subscription service, billed by the subscription sync on real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio

from domain.billing.invoice_states import InvoiceStatus
from domain.billing.invoices import InvoiceNowInput
from domain.errors import ValidationError
from domain.subscriptions.addons import AddonOffer
from domain.subscriptions.catalog import CatalogRateCards
from domain.subscriptions.models import PlanRef, Timing
from domain.subscriptions.wire import addon_rest, expanded_rest
from tests.integration.test_subscription_billing import (
    DEC,
    JAN,
    NOV,
    PLAN,
    D,
    Env,
    Plans,
    all_invoices,
    billed_api,
    card,
    gathering_lines,
    open_env,
    subscribe,
)

RATE_CARDS = CatalogRateCards()


def _card(body: dict[str, Any]) -> Any:
    return RATE_CARDS.parse(body, "rateCards[0]")


# +5.00 a month on the plan's 30.00 base fee (in advance, as the base fee).
BASE_PLUS_FIVE = {
    "type": "flat_fee",
    "key": "base",
    "name": "Base boost",
    "billingCadence": "P1M",
    "price": {"type": "flat", "amount": "5", "paymentTerm": "in_advance"},
}
# 1,000 api calls a month not billed, with the add-on's price (OpenMeter's rate cards need a price
# for a discount, and a usage discount a usage price; only a flat price adds up, so such an add-on
# extends only a usage item without a price of its own).
API_DISCOUNT = {
    "type": "usage_based",
    "key": "api",
    "name": "Api allowance",
    "featureKey": "api",
    "billingCadence": "P1M",
    "price": {"type": "unit", "amount": "0.01"},
    "discounts": {"usage": {"quantity": "1000"}},
}
# The team plan with api calls metered but not priced.
METERED_PLAN = {
    **PLAN,
    "key": "metered",
    "phases": [
        {
            **PLAN["phases"][0],  # type: ignore[index]
            "rateCards": [
                PLAN["phases"][0]["rateCards"][0],  # type: ignore[index]
                {k: v for k, v in card("api", {}, "api").items() if k != "price"},
            ],
        }
    ],
}


class Offers:
    """The plan add-ons the catalog would hand over, by add-on id (every one from phase default)."""

    def __init__(self) -> None:
        self.offers: dict[str, AddonOffer] = {}

    def add(self, addon_id: str, instance_type: str, *cards: dict[str, Any]) -> str:
        rate_cards = tuple(_card(c) for c in cards)
        self.offers[addon_id] = AddonOffer(addon_id, addon_id, 1, instance_type, addon_id, rate_cards, "default", 5)
        return addon_id

    async def offer(self, namespace: str, plan: PlanRef, addon_id: str, purchase: bool = True) -> AddonOffer:
        return self.offers[addon_id]


@pytest_asyncio.fixture
async def offered() -> AsyncIterator[tuple[Env, Offers]]:
    offers = Offers()
    async with open_env(Plans((PLAN, METERED_PLAN)), addons=offers) as env:
        yield env, offers


def base_lines(found: Any) -> list[tuple[Any, Any, Any]]:
    return [(x.period_start, x.period_end, x.per_unit_amount) for x in gathering_lines(found) if x.name == "Base"]


async def test_a_flat_add_on_bought_mid_period_extends_the_base_fee_from_then(offered: tuple[Env, Offers]) -> None:
    # OpenMeter splits the plan item at the purchase: before it as it was, after it the plan's rate
    # card with the add-on's flat amount added (same key and name), each prorated over its part of
    # the billing period like any item version split mid-period.
    env, offers = offered
    ns = "ax_flat"
    boost = offers.add("boost", "single", BASE_PLUS_FIVE)
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    await env.sync.sync(sub)
    assert base_lines(await all_invoices(env, ns)) == [(NOV, DEC, D(30)), (DEC, JAN, D(30))]

    env.clock.at = NOV + timedelta(days=10)
    sub, bought = await env.subscriptions.create_addon(ns, sub.id, boost, 1, Timing("immediate"))
    await env.sync.sync(sub)
    at = env.clock.at
    # 30.00 for Nov 1-11 (10 of 30 days), 35.00 for Nov 11 - Dec 1 (20 of 30 days), 35.00 in December.
    assert base_lines(await all_invoices(env, ns)) == [(NOV, at, D("10.00")), (at, DEC, D("23.33")), (DEC, JAN, D(35))]

    view = expanded_rest(sub, at, RATE_CARDS)
    (phase,) = view["phases"]
    (base,) = [i for i in phase["items"] if i["key"] == "base"]
    assert (base["name"], base["price"]["amount"], base["activeFrom"]) == ("Base", "35", "2026-11-11T00:00:00Z")
    versions = phase["itemTimelines"]["base"]
    assert [(v["price"]["amount"], v.get("activeTo")) for v in versions] == [
        ("30", "2026-11-11T00:00:00Z"),
        ("35", None),
    ]
    shown = addon_rest(sub, bought, at, RATE_CARDS)
    (card,) = shown["rateCards"]
    assert card["rateCard"]["price"]["amount"] == "5" and card["affectedSubscriptionItemIds"] == [base["id"]]


async def issued_base(env: Env, ns: str) -> list[tuple[Any, Any, Any]]:
    """November's base fee lines past gathering: (start, end, total), by start."""
    return sorted(
        (x.period_start, x.period_end, x.totals.total)
        for f in await all_invoices(env, ns)
        if f.invoice.status is not InvoiceStatus.GATHERING
        for x in f.lines
        if x.parent_line_id is None and x.name == "Base" and x.period_start < DEC
    )


async def boosted_after_issue(env: Env, offers: Offers, ns: str) -> Any:
    """November's 30.00 issued on Nov 1, then the +5.00 add-on bought on Nov 11 and its line issued."""
    boost = offers.add("boost", "single", BASE_PLUS_FIVE)
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    await env.sync.sync(sub)
    env.clock.at = NOV + timedelta(hours=2)
    await env.worker().run_once()

    env.clock.at = NOV + timedelta(days=10)
    sub, bought = await env.subscriptions.create_addon(ns, sub.id, boost, 1, Timing("immediate"))
    await env.sync.sync(sub)
    env.clock.at += timedelta(hours=2)
    await env.worker().run_once()
    return sub, bought


async def test_a_flat_add_on_bought_after_the_fee_was_issued_bills_the_difference(
    offered: tuple[Env, Offers],
) -> None:
    # November's in-advance 30.00 is issued on Nov 1; the +5.00 add-on bought on Nov 11 cuts that
    # version at Nov 11, but the issued line stays whole (no credit notes). The extended version
    # bills its 23.33 for Nov 11 - Dec 1 net of the 20.00 the issued line already charged for that
    # time: 3.33, so November costs 33.33 as when nothing was issued (docs/billing.md, add-ons "In
    # time"; OpenMeter bills the 23.33 on top).
    env, offers = offered
    ns = "ax_issued"
    await boosted_after_issue(env, offers, ns)
    at = NOV + timedelta(days=10)
    assert await issued_base(env, ns) == [(NOV, DEC, D(30)), (at, DEC, D("3.33"))]
    (netted,) = [
        x
        for f in await all_invoices(env, ns)
        for x in f.lines
        if x.parent_line_id is None and x.name == "Base" and x.period_start == at
    ]
    assert netted.description == "less 20.00 already invoiced for 2026-11-01T00:00:00Z - 2026-12-01T00:00:00Z"
    assert [x for x in base_lines(await all_invoices(env, ns)) if x[0] == DEC] == [(DEC, JAN, D(35))]


async def test_a_flat_add_on_taken_off_after_its_net_line_was_issued_bills_nothing_more(
    offered: tuple[Env, Offers],
) -> None:
    # Taken off on Nov 21: the plan's 30.00 again for Nov 21 - Dec 1 (10.00) is less than the
    # issued lines charged for that time (10.00 of the 30.00 and 1.67 of the 3.33): no line, and
    # nothing given back (that needs credit notes). December is the plan's 30.00 again.
    env, offers = offered
    ns = "ax_taken_off"
    sub, bought = await boosted_after_issue(env, offers, ns)
    env.clock.at = NOV + timedelta(days=20)
    sub, _ = await env.subscriptions.update_addon(ns, sub.id, bought.id, 0, Timing("immediate"))
    await env.sync.sync(sub)
    assert await env.sync.sync(sub) == 0
    env.clock.at += timedelta(hours=2)
    await env.worker().run_once()
    at = NOV + timedelta(days=10)
    assert await issued_base(env, ns) == [(NOV, DEC, D(30)), (at, DEC, D("3.33"))]
    assert [x for x in base_lines(await all_invoices(env, ns)) if x[0] < JAN] == [(DEC, JAN, D(30))]


async def test_a_second_add_on_after_issue_nets_every_issued_line_of_the_item(offered: tuple[Env, Offers]) -> None:
    # A second +5.00 add-on on Nov 21: 40.00 for Nov 21 - Dec 1 is 13.33, less what both issued
    # lines charged for that time (10.00 + 1.665, rounded once: 11.67): 1.66.
    env, offers = offered
    ns = "ax_chain"
    sub, _ = await boosted_after_issue(env, offers, ns)
    more = offers.add("more", "single", BASE_PLUS_FIVE)
    env.clock.at = NOV + timedelta(days=20)
    sub, _ = await env.subscriptions.create_addon(ns, sub.id, more, 1, Timing("immediate"))
    await env.sync.sync(sub)
    assert await env.sync.sync(sub) == 0
    env.clock.at += timedelta(hours=2)
    await env.worker().run_once()
    assert await issued_base(env, ns) == [
        (NOV, DEC, D(30)),
        (NOV + timedelta(days=10), DEC, D("3.33")),
        (NOV + timedelta(days=20), DEC, D("1.66")),
    ]
    assert [x for x in base_lines(await all_invoices(env, ns)) if x[0] < JAN] == [(DEC, JAN, D(40))]


async def test_an_add_on_bought_the_instant_the_issued_fee_starts_bills_only_the_difference(
    offered: tuple[Env, Offers],
) -> None:
    # An invoice-now issues November's 30.00 at the subscription's start, and the add-on is bought
    # at that very instant: the first version ends where it began, and the extended one's 35.00 for
    # all of November is billed net of the issued 30.00 (not twice).
    env, offers = offered
    ns = "ax_instant"
    boost = offers.add("boost", "single", BASE_PLUS_FIVE)
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    await env.sync.sync(sub)
    await env.invoices.invoice_now(ns, InvoiceNowInput(customer=sub.customer_id))
    await env.worker().run_once()
    assert await issued_base(env, ns) == [(NOV, DEC, D(30))]
    sub, _ = await env.subscriptions.create_addon(ns, sub.id, boost, 1, Timing("immediate"))
    await env.sync.sync(sub)
    env.clock.at += timedelta(hours=2)
    await env.worker().run_once()
    assert await issued_base(env, ns) == [(NOV, DEC, D(5)), (NOV, DEC, D(30))]


async def test_a_usage_discount_add_on_bills_fewer_units_of_the_plan_item(offered: tuple[Env, Offers]) -> None:
    # The plan meters api calls without a price; the add-on brings its price and 1,000 free calls.
    env, offers = offered
    ns = "ax_usage"
    allowance = offers.add("allowance", "single", API_DISCOUNT)
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1", plan="metered")
    sub, bought = await env.subscriptions.create_addon(ns, sub.id, allowance, 1, Timing("immediate"))
    await env.sync.sync(sub)
    env.usage.add("api", sub.customer_id, NOV + timedelta(days=4), D(1500))

    env.clock.at = DEC + timedelta(hours=2)
    await env.worker().run_once()
    (api,) = billed_api(await all_invoices(env, ns))
    # 1,500 calls at 0.01, the first 1,000 not billed: 5.00.
    assert (api.quantity, api.totals.total) == (D(1500), D("5.00"))
    (item,) = [i for i in expanded_rest(sub, NOV, RATE_CARDS)["phases"][0]["items"] if i["key"] == "api"]
    assert (item["name"], item["price"]["amount"], item["discounts"]) == (
        "Api",
        "0.01",
        {"usage": {"quantity": "1000"}},
    )
    shown = addon_rest(sub, bought, NOV, RATE_CARDS)
    assert shown["rateCards"][0]["affectedSubscriptionItemIds"] == [item["id"]]


async def test_an_add_on_bought_twice_extends_twice_and_taken_off_restores_the_plan_item(
    offered: tuple[Env, Offers],
) -> None:
    env, offers = offered
    ns = "ax_twice"
    boost = offers.add("boosts", "multiple", BASE_PLUS_FIVE)
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    sub, bought = await env.subscriptions.create_addon(ns, sub.id, boost, 2, Timing("immediate"))
    await env.sync.sync(sub)
    # 30 + 2 x 5.
    assert base_lines(await all_invoices(env, ns)) == [(NOV, DEC, D(40)), (DEC, JAN, D(40))]

    env.clock.at = NOV + timedelta(days=20)
    sub, _ = await env.subscriptions.update_addon(ns, sub.id, bought.id, 0, Timing("next_billing_cycle"))
    await env.sync.sync(sub)
    # November keeps both, December is the plan's fee again.
    assert base_lines(await all_invoices(env, ns)) == [(NOV, DEC, D(40)), (DEC, JAN, D(30))]
    prices = [
        (v.active_from, v.active_to, v.rate_card.price.amount) for v in sub.spec.phases[0].items if v.key == "base"
    ]
    assert prices == [(None, DEC, D(40)), (DEC, None, D(30))]
    restored = [v for v in sub.spec.phases[0].items if v.key == "base"][-1]

    # Bought again from the next cycle and taken back before then: the plan item is one version again.
    env.clock.at = DEC + timedelta(days=3)
    sub, _ = await env.subscriptions.update_addon(ns, sub.id, bought.id, 1, Timing("next_billing_cycle"))
    versions = [v for v in sub.spec.phases[0].items if v.key == "base"]
    assert [v.rate_card.price.amount for v in versions] == [D(40), D(30), D(35)]
    sub, _ = await env.subscriptions.update_addon(ns, sub.id, bought.id, 0, Timing("immediate"))
    versions = [v for v in sub.spec.phases[0].items if v.key == "base"]
    assert [(v.active_to, v.rate_card.price.amount, v.extensions) for v in versions] == [
        (DEC, D(40), versions[0].extensions),
        (None, D(30), ()),
    ]
    assert (versions[1].id, versions[1].base) == (restored.id, None)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        # Only a flat price can be added: a usage discount (with its unit price) on the plan's priced api.
        (API_DISCOUNT, "rate_card_only_flat_price_allowed", "addon.rateCards[0].price.type"),
        # A flat amount paid in arrears cannot be added to a fee paid in advance.
        (
            {**BASE_PLUS_FIVE, "price": {"type": "flat", "amount": "5", "paymentTerm": "in_arrears"}},
            "rate_card_price_payment_term_mismatch",
            "addon.rateCards[0].price.paymentTerm",
        ),
        # A yearly amount cannot extend a monthly fee.
        (
            {**BASE_PLUS_FIVE, "billingCadence": "P1Y"},
            "rate_card_billing_cadence_mismatch",
            "addon.rateCards[0].billingCadence",
        ),
    ],
)
async def test_what_openmeter_cannot_merge_is_refused_at_purchase(
    offered: tuple[Env, Offers], body: dict[str, Any], code: str, field: str
) -> None:
    env, offers = offered
    ns = f"ax_refused_{code[-20:]}"
    addon = offers.add("odd", "single", body)
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    with pytest.raises(ValidationError) as refused:
        await env.subscriptions.create_addon(ns, sub.id, addon, 1, Timing("immediate"))
    assert [(v.field, v.code) for v in refused.value.violations] == [(field, code)]
    assert "extends the plan item" in str(refused.value)
    assert (await env.subscriptions.get(ns, sub.id)).addons == ()
