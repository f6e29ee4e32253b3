"""The billing journey issue 14's reviewer takes, as a new user would: OpenMeter's official Python
SDK, unchanged (raw HTTP only to poll what the worker does), against a Tally of its own whose
billing worker polls every half second and looks for late usage every second.

Deterministic without a fake clock: the subscription starts 100 s in the past (OpenMeter allows up
to two minutes) and its billing anchor is set 40 s ahead, so its first service period is
[start, anchor), and every event is placed in that period by its own time. Totals are worked out
by hand (Decimal) in the comments and asserted to the cent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from corehttp.exceptions import HttpResponseError
from openmeter import Client

from tests.support.metering import cloudevent, rfc3339, unique
from tests.support.stack import TallyProcess, create_database

D = Decimal
INVOICES = "/api/v1/billing/invoices"


@pytest.fixture(scope="module")
def billing_tally(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    url = asyncio.run(create_database())
    stack = TallyProcess(
        data_dir=tmp_path_factory.mktemp("billing-journey"),
        postgres_url=url,
        extra_env={"TALLY_BILLING__POLL_INTERVAL_S": "0.5", "TALLY_BILLING__SYNC_INTERVAL_S": "1"},
    ).start()
    yield stack
    stack.stop()


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def invoices_of(http: httpx.Client, customer: str) -> list[dict[str, Any]]:
    found = ok(http.get(INVOICES, params={"customers": customer, "expand": "lines"}))
    items: list[dict[str, Any]] = found["items"]
    return items


def until(http: httpx.Client, customer: str, pick: Callable[[list[dict[str, Any]]], Any], what: str) -> Any:
    """Polls the customer's invoices until `pick` finds something (the worker's work is a state to
    wait for); fails after 120 s with what was there."""
    deadline = time.monotonic() + 120
    while True:
        items = invoices_of(http, customer)
        found = pick(items)
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: {items}"
        time.sleep(0.2)


def usage_lines(invoice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["name"]: x for x in invoice["lines"]}


def graduated(quantity: int) -> Decimal:
    """The plan's graduated price: 0.10 each for the first 100 units, 0.05 each after that."""
    return D("0.10") * min(quantity, 100) + D("0.05") * max(quantity - 100, 0)


def packages(quantity: int) -> Decimal:
    """The plan's package price: 5 per started package of 10."""
    return D(5) * -(-quantity // 10)


def meter_and_feature(http: httpx.Client, prefix: str) -> str:
    key = unique(prefix)
    ok(
        http.post("/api/v1/meters", json={"slug": key, "eventType": key, "aggregation": "SUM", "valueProperty": "$.n"}),
        201,
    )
    ok(http.post("/api/v1/features", json={"key": key, "name": key, "meterSlug": key}), 201)
    return key


def test_defaults_profiles_and_overrides(billing_tally: TallyProcess) -> None:
    client = Client(endpoint=billing_tally.rest_url)
    # The sandbox app and the default profile using it, present from the start.
    (sandbox,) = [a for a in client.apps.list()["items"] if a["type"] == "sandbox"]
    (default,) = [p for p in client.billing_profiles.list()["items"] if p["default"]]
    assert default["apps"]["invoicing"]["id"] == sandbox["id"] and default["apps"]["payment"]["id"] == sandbox["id"]

    # A new profile takes OpenMeter's workflow defaults.
    created = client.billing_profiles.create(
        {
            "name": unique("eu"),
            "default": False,
            "supplier": {"name": "Acme GmbH", "addresses": [{"country": "DE"}]},
            "apps": {"tax": sandbox["id"], "invoicing": sandbox["id"], "payment": sandbox["id"]},
            "workflow": {"invoicing": {"autoAdvance": False}},
        }
    )
    workflow = created.workflow
    assert workflow.collection.interval == "PT1H"
    assert workflow.invoicing.draft_period == "P0D" and workflow.invoicing.due_after == "P30D"
    assert workflow.invoicing.auto_advance is False and workflow.invoicing.progressive_billing is True
    assert workflow.payment.collection_method == "charge_automatically"

    # A customer pinned to it by an override, with one setting of its own.
    key = unique("pinned")
    customer = client.customers.create({"name": "Pinned", "key": key, "usageAttribution": {"subjectKeys": [key]}})
    client.customer_overrides.upsert(
        customer.id, {"billingProfileId": created.id, "workflow": {"invoicing": {"dueAfter": "P7D"}}}
    )
    effective = client.customer_overrides.get(customer.id)
    assert effective["baseBillingProfileId"] == created.id
    invoicing = effective["customerProfile"]["workflow"]["invoicing"]
    assert invoicing["dueAfter"] == "P7D" and invoicing["autoAdvance"] is False
    listed = client.customer_overrides.list(include_all_customers=False, billing_profile=[created.id])
    assert [o["customerOverride"]["customerId"] for o in listed["items"]] == [customer.id]

    # The default profile and a profile an override pins cannot be deleted.
    with pytest.raises(HttpResponseError) as refused:
        client.billing_profiles.delete(default["id"])
    assert refused.value.status_code == 400
    with pytest.raises(HttpResponseError) as pinned:
        client.billing_profiles.delete(created.id)
    assert pinned.value.status_code == 400
    client.customer_overrides.delete(customer.id)
    client.billing_profiles.delete(created.id)


def test_subscription_usage_progressive_billing_and_late_usage(billing_tally: TallyProcess) -> None:
    client = Client(endpoint=billing_tally.rest_url)
    with httpx.Client(base_url=billing_tally.rest_url, timeout=30) as http:
        tokens = meter_and_feature(http, "journey_tokens")
        images = meter_and_feature(http, "journey_images")
        plan_key = unique("journey")
        hourly = "PT1H"
        plan = client.plans.create(
            {
                "key": plan_key,
                "name": "Journey",
                "currency": "USD",
                "billingCadence": hourly,
                "phases": [
                    {
                        "key": "default",
                        "name": "Default",
                        "rateCards": [
                            {
                                "type": "usage_based",
                                "key": tokens,
                                "name": "Tokens",
                                "featureKey": tokens,
                                "billingCadence": hourly,
                                "price": {
                                    "type": "tiered",
                                    "mode": "graduated",
                                    "tiers": [
                                        {"upToAmount": "100", "unitPrice": {"type": "unit", "amount": "0.10"}},
                                        {"unitPrice": {"type": "unit", "amount": "0.05"}},
                                    ],
                                },
                            },
                            {
                                "type": "usage_based",
                                "key": images,
                                "name": "Images",
                                "featureKey": images,
                                "billingCadence": hourly,
                                "price": {"type": "package", "amount": "5", "quantityPerPackage": "10"},
                            },
                        ],
                    }
                ],
            }
        )
        client.plans.publish(plan.id)
        key = unique("journey_customer")
        customer = client.customers.create({"name": "Journey", "key": key, "usageAttribution": {"subjectKeys": [key]}})

        now = datetime.now(UTC).replace(microsecond=0)
        start, anchor = now - timedelta(seconds=100), now + timedelta(seconds=40)
        subscription = client.subscriptions.create(
            {"plan": {"key": plan_key}, "customerKey": key, "timing": rfc3339(start), "billingAnchor": rfc3339(anchor)}
        )
        assert subscription.active_from == start

        # Before the mid-period cut (start + 40 s): 80 tokens, 13 images; after it: 50 tokens, 15 images.
        cut = start + timedelta(seconds=40)
        early, later = start + timedelta(seconds=10), start + timedelta(seconds=70)
        client.events.ingest_events(
            [
                cloudevent(tokens, key, {"n": 80}, time=early),
                cloudevent(images, key, {"n": 13}, time=early),
                cloudevent(tokens, key, {"n": 50}, time=later),
                cloudevent(images, key, {"n": 15}, time=later),
            ]
        )
        for meter, total in ((tokens, 130), (images, 28)):
            wait_for_meter(http, meter, key, total)

        # The subscription's usage lines wait on the gathering invoice, over [start, anchor).
        gathering = until(http, customer.id, lambda xs: [i for i in xs if i["status"] == "gathering"], "gathering")[0]
        lines = usage_lines(gathering)
        assert set(lines) == {"Tokens", "Images"}
        for line in lines.values():
            assert line["managedBy"] == "subscription" and line["subscription"]["subscription"]["id"] == subscription.id
            assert (when(line["period"]["from"]), when(line["period"]["to"])) == (start, anchor)

        # Progressive billing: invoice now as of the cut bills [start, cut) only.
        (mid,) = client.invoices.invoice_pending_lines_action({"customerId": customer.id, "asOf": rfc3339(cut)})
        assert mid.status_details.extended_status == "draft.waiting_for_collection"
        paid_mid = client.invoice.snapshot_quantities_action(mid.id)
        assert paid_mid.status == "paid"
        mid_json = ok(http.get(f"{INVOICES}/{mid.id}"))
        mid_lines = usage_lines(mid_json)
        assert D(mid_lines["Tokens"]["quantity"]) == 80 and D(mid_lines["Images"]["quantity"]) == 13
        assert when(mid_lines["Tokens"]["period"]["to"]) == cut
        # 80 x 0.10 = 8.00; 13 images = 2 packages = 10.00.
        assert D(mid_lines["Tokens"]["totals"]["total"]) == graduated(80) == D("8.00")
        assert D(mid_lines["Images"]["totals"]["total"]) == packages(13) == D(10)
        assert D(mid_json["totals"]["total"]) == D("18.00")

        # At the period's end the worker collects the rest: it rates the period's cumulative usage
        # (130 tokens, 28 images) and bills the difference from what the first invoice billed.
        def period_end_invoice(xs: list[dict[str, Any]]) -> Any:
            return [
                i
                for i in xs
                if i["id"] != mid.id
                and i["status"] != "gathering"
                and any(when(x["period"]["to"]) == anchor for x in i["lines"])
            ]

        (end,) = until(http, customer.id, period_end_invoice, "the worker's period-end invoice")
        end_json = paid_now(http, client, end["id"])
        end_lines = usage_lines(end_json)
        assert D(end_lines["Tokens"]["quantity"]) == 50 and D(end_lines["Tokens"]["preLinePeriodQuantity"]) == 80
        assert D(end_lines["Images"]["quantity"]) == 15 and D(end_lines["Images"]["preLinePeriodQuantity"]) == 13
        # Tokens: 20 x 0.10 + 30 x 0.05 = 3.50 (rated from 80 to 130); images: 3 packages - 2 = 5.00.
        assert D(end_lines["Tokens"]["totals"]["total"]) == graduated(130) - graduated(80) == D("3.50")
        assert D(end_lines["Images"]["totals"]["total"]) == packages(28) - packages(13) == D(5)
        # Together exactly what one invoice for the whole period bills: 11.50 + 15.00.
        single = graduated(130) + packages(28)
        assert D(mid_json["totals"]["total"]) + D(end_json["totals"]["total"]) == single == D("26.50")

        # Late usage: 20 tokens for the first period, stored after its invoices were issued, become
        # a correction line for the old service period on the next invoice: 20 x 0.05 = 1.00.
        client.events.ingest_events([cloudevent(tokens, key, {"n": 20}, time=anchor - timedelta(seconds=5))])
        wait_for_meter(http, tokens, key, 150)

        def correction_invoice(xs: list[dict[str, Any]]) -> Any:
            return [
                i
                for i in xs
                if i["id"] not in (mid.id, end["id"])
                and i["status"] != "gathering"
                and any(x.get("metadata", {}).get("tally.correction") == "late_usage" for x in i["lines"])
            ]

        (late,) = until(http, customer.id, correction_invoice, "the late-usage correction invoice")
        late_json = paid_now(http, client, late["id"])
        (correction,) = late_json["lines"]
        assert correction["name"] == "Tokens"
        assert (when(correction["period"]["from"]), when(correction["period"]["to"])) == (start, anchor)
        assert D(correction["quantity"]) == 20 and D(correction["preLinePeriodQuantity"]) == 130
        assert D(correction["totals"]["total"]) == graduated(150) - graduated(130) == D("1.00")
        assert D(late_json["totals"]["total"]) == D("1.00")
        # The period's tokens billed over three invoices: what one invoice would bill for 150.
        billed = sum(D(usage_lines(i)["Tokens"]["totals"]["total"]) for i in (mid_json, end_json, late_json))
        assert billed == graduated(150) == D("12.50")


def test_late_usage_counts_the_subjects_its_period_was_billed_for(billing_tally: TallyProcess) -> None:
    """A late-usage correction read the customer's subjects as they are now, where the invoice it
    corrects counted the subjects it copied from the customer when it was made (as OpenMeter reads
    a line's usage for its invoice's customer). A subject added to the customer after its period
    was invoiced had its usage of that period billed as "late usage": 300 calls that were never
    the customer's when the period was billed, next to the 3 that really came late."""
    with httpx.Client(base_url=billing_tally.rest_url, timeout=30) as http:
        calls = meter_and_feature(http, "late_subjects")
        key, moved = unique("late_customer"), unique("late_subject")
        customer = ok(
            http.post(
                "/api/v1/customers", json={"name": "Late", "key": key, "usageAttribution": {"subjectKeys": [key]}}
            ),
            201,
        )
        # A day that ended two hours ago: due, and past its collection interval (PT1H).
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        start = end - timedelta(days=1)
        http.post("/api/v1/events", json=[cloudevent(calls, key, {"n": 5}, time=start + timedelta(hours=1))])
        wait_for_meter(http, calls, key, 5)
        pending = {
            "name": "Calls",
            "period": {"from": rfc3339(start), "to": rfc3339(end)},
            "invoiceAt": rfc3339(end),
            "rateCard": {"featureKey": calls, "price": {"type": "unit", "amount": "1"}},
        }
        ok(
            http.post(
                f"/api/v1/billing/customers/{customer['id']}/invoices/pending-lines",
                json={"currency": "USD", "lines": [pending]},
            ),
            201,
        )

        def paid(xs: list[dict[str, Any]]) -> Any:
            return [i for i in xs if i["status"] == "paid"]

        (first,) = until(http, customer["id"], paid, "the worker's invoice of the day")
        assert D(first["totals"]["total"]) == 5
        assert first["customer"]["usageAttribution"]["subjectKeys"] == [key]

        # The customer takes a subject with 300 calls in that day, then 3 calls of its own arrive late.
        body = {"name": "Late", "key": key, "usageAttribution": {"subjectKeys": [key, moved]}}
        ok(http.put(f"/api/v1/customers/{customer['id']}", json=body))
        http.post("/api/v1/events", json=[cloudevent(calls, moved, {"n": 300}, time=start + timedelta(hours=2))])
        wait_for_meter(http, calls, moved, 300)
        http.post("/api/v1/events", json=[cloudevent(calls, key, {"n": 3}, time=start + timedelta(hours=3))])
        wait_for_meter(http, calls, key, 8)

        def corrections(xs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                x
                for i in xs
                if i["id"] != first["id"] and i["status"] == "paid"
                for x in i["lines"]
                if x.get("metadata", {}).get("tally.correction") == "late_usage"
            ]

        found = until(http, customer["id"], corrections, "the late-usage correction")
        assert [(D(x["quantity"]), D(x["totals"]["total"])) for x in found] == [(3, 3)]


def paid_now(http: httpx.Client, client: Client, invoice_id: str) -> dict[str, Any]:
    """A worker-collected invoice, once the worker has moved it to wait for its collection interval
    (PT1H after the usage ended, for late events): its quantities snapshotted now, and with that
    issued and paid by the sandbox."""
    deadline = time.monotonic() + 60
    while True:
        invoice = ok(http.get(f"{INVOICES}/{invoice_id}"))
        if invoice["statusDetails"]["extendedStatus"] == "draft.waiting_for_collection":
            client.invoice.snapshot_quantities_action(invoice_id)
            invoice = ok(http.get(f"{INVOICES}/{invoice_id}"))
            break
        assert time.monotonic() < deadline, invoice["statusDetails"]
        time.sleep(0.2)
    assert invoice["status"] == "paid", invoice["statusDetails"]
    return invoice


def wait_for_meter(http: httpx.Client, meter: str, subject: str, total: int) -> None:
    """Waits until the event store holds `total` for the subject (ingest acknowledges before the
    sink stores)."""
    deadline = time.monotonic() + 60
    while True:
        data = ok(http.get(f"/api/v1/meters/{meter}/query", params={"subject": subject}))["data"]
        value = sum(D(str(row["value"])) for row in data)
        if value == total:
            return
        assert time.monotonic() < deadline, f"{meter}: {data}"
        time.sleep(0.1)


def flat_line(name: str, amount: str) -> dict[str, Any]:
    period = {"from": "2025-11-01T00:00:00Z", "to": "2025-12-01T00:00:00Z"}
    return {
        "name": name,
        "period": period,
        "invoiceAt": period["to"],
        "rateCard": {"price": {"type": "flat", "amount": amount}},
    }


def refused(call: Callable[[], Any]) -> int:
    with pytest.raises(HttpResponseError) as error:
        call()
    status: int = error.value.status_code
    return status


def test_void_delete_and_retry_where_allowed(tally: TallyProcess) -> None:
    """On the shared stack, whose billing worker polls only hourly: here the lines are due at once,
    and a worker polling as often as the journey's would collect them before the calls below."""
    client = Client(endpoint=tally.rest_url)
    (sandbox,) = [a for a in client.apps.list()["items"] if a["type"] == "sandbox"]
    apps = {"tax": sandbox["id"], "invoicing": sandbox["id"], "payment": sandbox["id"]}
    manual = client.billing_profiles.create(
        {
            "name": unique("manual"),
            "default": False,
            "supplier": {"name": "Acme", "addresses": [{"country": "US"}]},
            "apps": apps,
            "workflow": {"invoicing": {"autoAdvance": False}},
        }
    )
    key = unique("manual_customer")
    customer = client.customers.create({"name": "Manual", "key": key, "usageAttribution": {"subjectKeys": [key]}})
    client.customer_overrides.upsert(customer.id, {"billingProfileId": manual.id})
    client.customer_invoice.create_pending_invoice_line(
        customer.id, {"currency": "USD", "lines": [flat_line("Setup", "30")]}
    )

    # A draft waiting for approval: approve or delete, nothing to retry, nothing to void yet.
    (draft,) = client.invoices.invoice_pending_lines_action({"customerId": customer.id})
    assert draft.status == "draft"
    assert set(draft.status_details.available_actions) >= {"approve", "delete"}
    assert refused(lambda: client.invoice.retry_action(draft.id)) == 400
    assert (
        refused(
            lambda: client.invoice.void_invoice_action(
                draft.id, {"reason": "x", "action": {"percentage": 100, "action": {"type": "discard"}}}
            )
        )
        == 400
    )
    # Deleting the draft puts its line back on the gathering invoice.
    client.invoice.delete_invoice(draft.id)
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        items = invoices_of(http, customer.id)
    assert [i["status"] for i in items] == ["gathering"]
    assert [x["name"] for x in items[0]["lines"]] == ["Setup"]
    assert client.invoice.get_invoice(draft.id).status == "deleted"

    # Invoiced again and approved: issued and paid by the sandbox. Paid is final here.
    (again,) = client.invoices.invoice_pending_lines_action({"customerId": customer.id})
    paid = client.invoice.approve_action(again.id)
    assert paid.status == "paid" and D(paid.totals.total) == D(30)
    assert refused(lambda: client.invoice.delete_invoice(again.id)) == 400
    assert (
        refused(
            lambda: client.invoice.void_invoice_action(
                again.id, {"reason": "x", "action": {"percentage": 100, "action": {"type": "discard"}}}
            )
        )
        == 400
    )

    # With custom invoicing, a failed payment can be retried, and an unpaid invoice voided.
    listings = [x["type"] for x in client.marketplace.list()["items"]]
    assert {"sandbox", "custom_invoicing"} <= set(listings)
    installed = client.marketplace.install("custom_invoicing", {"name": unique("erp"), "createBillingProfile": False})
    erp_app = installed["app"]["id"]
    client.apps.update(
        erp_app, {"type": "custom_invoicing", "name": "ERP", "enableDraftSyncHook": True, "enableIssuingSyncHook": True}
    )
    erp_profile = client.billing_profiles.create(
        {
            "name": unique("erp_profile"),
            "default": False,
            "supplier": {"name": "Acme", "addresses": [{"country": "US"}]},
            "apps": {"tax": erp_app, "invoicing": erp_app, "payment": erp_app},
        }
    )
    client.customer_overrides.upsert(customer.id, {"billingProfileId": erp_profile.id})
    client.customer_invoice.create_pending_invoice_line(
        customer.id, {"currency": "USD", "lines": [flat_line("Licence", "120")]}
    )
    (synced,) = client.invoices.invoice_pending_lines_action({"customerId": customer.id})
    assert synced.status_details.extended_status == "draft.syncing"
    client.app_custom_invoicing.draft_syncronized(synced.id, {"invoicing": {"invoiceNumber": "ERP-D-1"}})
    client.app_custom_invoicing.finalized(synced.id, {"invoicing": {"invoiceNumber": "ERP-1"}})
    assert refused(lambda: client.invoice.retry_action(synced.id)) == 400
    client.app_custom_invoicing.payment_status(synced.id, {"trigger": "payment_failed"})
    failed = client.invoice.get_invoice(synced.id)
    assert failed.status_details.failed and {"retry", "void"} <= set(failed.status_details.available_actions)
    retried = client.invoice.retry_action(synced.id)
    assert retried.status_details.extended_status == "payment_processing.pending"
    voided = client.invoice.void_invoice_action(
        synced.id, {"reason": "customer left", "action": {"percentage": 100, "action": {"type": "discard"}}}
    )
    assert voided.status == "voided" and voided.number == "ERP-1"
    assert refused(lambda: client.invoice.delete_invoice(synced.id)) == 400
