"""A subscription billed by the running server, through the API a user calls: subscribing puts the
plan's items on the customer's gathering invoice (the subscription service's write triggers the
sync, which wakes the billing role), the in-advance fee is collected, issued and paid through the
sandbox at once, the month's usage line waits for the period's end; cancelling ends that line with
the subscription; an upgrade nets the paid fee; a subscription's invoice voided with pending has
its lines made again at once.

The test stack's billing worker polls only hourly: what happens here is the write-triggered path."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.test_invoices_api import custom_invoicing_customer
from tests.support.metering import unique
from tests.support.stack import TallyProcess

INVOICES = "/api/v1/billing/invoices"


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def until(http: httpx.AsyncClient, customer: str, done: Any, what: str) -> list[dict[str, Any]]:
    """The customer's invoices (lines expanded) once `done(invoices)` holds; fails after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        found = await ok(await http.get(INVOICES, params={"customers": customer, "expand": "lines"}))
        items: list[dict[str, Any]] = found["items"]
        if done(items):
            return items
        assert time.monotonic() < deadline, f"{what}: {items}"
        await asyncio.sleep(0.2)


def by_status(items: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [i for i in items if i["status"] == status]


async def published_plan(http: httpx.AsyncClient, base: str, feature: str | None = None, fee_key: str = "base") -> str:
    """A monthly plan with an in-advance base fee of `base` under the rate-card key `fee_key` (and
    calls of `feature` at 0.01 each), published; returns its key."""
    cards: list[dict[str, Any]] = [
        {
            "type": "flat_fee",
            "key": fee_key,
            "name": "Base",
            "billingCadence": "P1M",
            "price": {"type": "flat", "amount": base, "paymentTerm": "in_advance"},
        }
    ]
    if feature is not None:
        cards.append(
            {
                "type": "usage_based",
                "key": feature,
                "name": "Calls",
                "featureKey": feature,
                "billingCadence": "P1M",
                "price": {"type": "unit", "amount": "0.01"},
            }
        )
    key = unique("subinv")
    body = {
        "key": key,
        "name": "Team",
        "currency": "USD",
        "billingCadence": "P1M",
        "phases": [{"key": "default", "name": "Default", "rateCards": cards}],
    }
    plan = await ok(await http.post("/api/v1/plans", json=body), 201)
    await ok(await http.post(f"/api/v1/plans/{plan['id']}/publish"))
    return key


async def subscribed(http: httpx.AsyncClient, plan_key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new customer subscribed to the plan now: (customer, subscription)."""
    key = unique("subinv_customer")
    customer = await ok(
        await http.post(
            "/api/v1/customers", json={"name": "Sub Inv", "key": key, "usageAttribution": {"subjectKeys": [key]}}
        ),
        201,
    )
    sub = await ok(await http.post("/api/v1/subscriptions", json={"plan": {"key": plan_key}, "customerKey": key}), 201)
    return customer, sub


async def test_a_subscription_is_billed_by_the_billing_role(tally: TallyProcess) -> None:
    feature = unique("subinv_calls")
    async with httpx.AsyncClient(base_url=tally.rest_url, timeout=30) as http:
        await ok(
            await http.post("/api/v1/meters", json={"slug": feature, "eventType": feature, "aggregation": "COUNT"}), 201
        )
        await ok(await http.post("/api/v1/features", json={"key": feature, "name": feature, "meterSlug": feature}), 201)
        customer, sub = await subscribed(http, await published_plan(http, "25", feature))

        items = await until(
            http,
            customer["id"],
            lambda xs: len(by_status(xs, "paid")) == 1 and len(by_status(xs, "gathering")) == 1,
            "the base fee paid and the usage line gathering",
        )
        (paid,) = by_status(items, "paid")
        assert paid["totals"]["total"] == "25"
        assert [x["name"] for x in paid["lines"]] == ["Base"]
        (gathering,) = by_status(items, "gathering")
        calls = next(x for x in gathering["lines"] if x["name"] == "Calls")
        # Next month's in-advance fee is made ahead (OpenMeter's horizon: up to the end of the
        # current billing period), due when its period starts.
        (upcoming,) = [x for x in gathering["lines"] if x["name"] == "Base"]
        assert upcoming["period"]["from"] == upcoming["invoiceAt"] == paid["lines"][0]["period"]["to"]
        assert calls["name"] == "Calls" and calls["managedBy"] == "subscription"
        assert calls["period"]["from"] == paid["lines"][0]["period"]["from"]

        # Billed periods are whole seconds: a usage line canceled within its first second would
        # be empty, and is removed rather than ended (as OpenMeter drops it).
        started = when(sub["activeFrom"]).replace(microsecond=0)
        await asyncio.sleep(max(0.0, (started + timedelta(seconds=1.1) - datetime.now(UTC)).total_seconds()))
        canceled = await ok(await http.post(f"/api/v1/subscriptions/{sub['id']}/cancel", json={"timing": "immediate"}))
        end = when(canceled["activeTo"])

        def calls_end_with_the_subscription(xs: list[dict[str, Any]]) -> bool:
            # Due at once now: the worker may already have collected it from the gathering invoice.
            # Billed periods end on the whole second (meters' resolution, as OpenMeter truncates
            # them); the cancellation's activeTo keeps its fraction.
            ends = [when(x["period"]["to"]) for i in xs for x in i["lines"] if x["name"] == "Calls"]
            return ends == [end.replace(microsecond=0)]

        await until(
            http, customer["id"], calls_end_with_the_subscription, "the usage line ending with the subscription"
        )


@pytest.mark.parametrize("new_fee_key", ["base", "platform"])
async def test_an_upgrade_after_the_months_fee_was_paid_bills_the_new_fee_net_of_it(
    tally: TallyProcess, new_fee_key: str
) -> None:
    # The month's 25.00 is paid at once (sandbox app); the change to a 50.00 plan a few seconds
    # later bills the new fee for the rest of the month less what the paid line charged for it:
    # 25.00, not 50.00 on top (docs/billing.md: a fee's later version is billed net of what was
    # issued), whether the new plan keeps the fee's rate-card key or names its one fee otherwise.
    async with httpx.AsyncClient(base_url=tally.rest_url, timeout=30) as http:
        customer, sub = await subscribed(http, await published_plan(http, "25"))
        items = await until(http, customer["id"], lambda xs: len(by_status(xs, "paid")) == 1, "the 25.00 paid")
        (paid,) = by_status(items, "paid")
        pro = await published_plan(http, "50", fee_key=new_fee_key)
        changed = await ok(
            await http.post(
                f"/api/v1/subscriptions/{sub['id']}/change", json={"plan": {"key": pro}, "timing": "immediate"}
            )
        )
        successor = changed["next"]["id"]

        def the_new_fee_paid(xs: list[dict[str, Any]]) -> bool:
            return any(
                x["subscription"]["subscription"]["id"] == successor for i in by_status(xs, "paid") for x in i["lines"]
            )

        items = await until(http, customer["id"], the_new_fee_paid, "the new plan's fee paid")
        (line,) = [
            x
            for i in by_status(items, "paid")
            for x in i["lines"]
            if x["subscription"]["subscription"]["id"] == successor
        ]
        assert line["totals"]["total"] == "25", line
        month = f"{paid['lines'][0]['period']['from']} - {paid['lines'][0]['period']['to']}"
        assert line["description"] == f"less 25.00 already invoiced for {month}"
        assert line["period"]["to"] == paid["lines"][0]["period"]["to"]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_subscriptions_invoice_voided_with_pending_is_billed_again_at_once(tally: TallyProcess) -> None:
    # Billed through custom invoicing (the invoice waits for the integrator, then for its payment,
    # so it can be voided): the month's 25.00 issued, then voided to bill it again. The void syncs
    # the subscription at once (the test stack's worker polls hourly): the month's fee is back on
    # the gathering invoice, the subscription's line again, for the same period.
    async with httpx.AsyncClient(base_url=tally.rest_url, timeout=30) as http:
        customer, _ = await custom_invoicing_customer(http)
        plan = await published_plan(http, "25")
        sub = await ok(
            await http.post("/api/v1/subscriptions", json={"plan": {"key": plan}, "customerId": customer}), 201
        )
        items = await until(
            http, customer, lambda xs: any(i["status"] != "gathering" for i in xs), "the month's fee invoiced"
        )
        (invoice,) = [i for i in items if i["status"] != "gathering"]
        apps = "/api/v1/apps/custom-invoicing"
        await ok(await http.post(f"{apps}/{invoice['id']}/draft/synchronized", json={}), 204)
        await ok(await http.post(f"{apps}/{invoice['id']}/issuing/synchronized", json={}), 204)
        (fee,) = invoice["lines"]
        voided = await ok(
            await http.post(
                f"{INVOICES}/{invoice['id']}/void",
                json={"reason": "wrong address", "action": {"percentage": 100, "action": {"type": "pending"}}},
            )
        )
        assert voided["status"] == "voided"
        found = await ok(await http.get(INVOICES, params={"customers": customer, "expand": "lines"}))
        again = [
            x
            for i in by_status(found["items"], "gathering")
            for x in i["lines"]
            if x["name"] == "Base" and x["period"] == fee["period"]
        ]
        assert [(x["subscription"]["subscription"]["id"], x["managedBy"]) for x in again] == [
            (sub["id"], "subscription")
        ]
