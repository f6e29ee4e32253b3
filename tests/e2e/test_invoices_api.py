"""Invoices as users reach them: REST through Envoy (raw HTTP and OpenMeter's official Python SDK,
unchanged) and gRPC stubs, on the shared stack with usage in the real event store.

Each test makes its own meter, feature and customer, so invoices of one test are not another's.
Totals are computed by hand in the comments; the usage is ingested through /api/v1/events.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import httpx
import pytest
from corehttp.exceptions import HttpResponseError
from google.rpc import error_details_pb2, status_pb2
from openmeter import Client

from tally.v1 import invoices_pb2, invoices_pb2_grpc
from tests.support.metering import cloudevent, create_meter, ingest, query, query_until, rfc3339, unique
from tests.support.stack import TallyProcess
from tests.support.webhooks import WebhookReceiver

D = Decimal
INVOICES = "/api/v1/billing/invoices"
# A billing period that ended two hours ago: due, and past the default collection interval (PT1H).
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
START = END - timedelta(days=30)
PERIOD = {"from": rfc3339(START), "to": rfc3339(END)}


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def metered_customer(http: httpx.AsyncClient, *tokens: int) -> tuple[str, str]:
    """A customer with a SUM meter and feature over its own events, and `tokens` of usage in PERIOD.
    Returns (customer ID, feature key)."""
    slug = unique("inv_tokens")
    await create_meter(http, slug=slug, eventType=slug, aggregation="SUM", valueProperty="$.tokens")
    await ok(await http.post("/api/v1/features", json={"key": slug, "name": slug, "meterSlug": slug}), 201)
    key = unique("inv_customer")
    customer = await ok(
        await http.post(
            "/api/v1/customers", json={"name": "Acme Corp", "key": key, "usageAttribution": {"subjectKeys": [key]}}
        ),
        201,
    )
    if tokens:
        at = START + timedelta(days=3)
        await ingest(
            http, [cloudevent(slug, key, {"tokens": n}, time=at + timedelta(hours=i)) for i, n in enumerate(tokens)]
        )
    return customer["id"], slug


def line(name: str, price: dict[str, Any], feature: str | None = None, **card: Any) -> dict[str, Any]:
    rate_card: dict[str, Any] = {"price": price, **card}
    if feature is not None:
        rate_card["featureKey"] = feature
    return {"name": name, "period": PERIOD, "invoiceAt": rfc3339(END), "rateCard": rate_card}


async def add_lines(http: httpx.AsyncClient, customer: str, *lines: dict[str, Any], currency: str = "USD") -> Any:
    return await ok(
        await http.post(
            f"/api/v1/billing/customers/{customer}/invoices/pending-lines",
            json={"currency": currency, "lines": list(lines)},
        ),
        201,
    )


async def invoice_now(http: httpx.AsyncClient, customer: str, **body: Any) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = await ok(
        await http.post(f"{INVOICES}/invoice", json={"customerId": customer, **body}), 201
    )
    return made


def by_name(invoice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["name"]: x for x in invoice["lines"]}


async def manual_approval(http: httpx.AsyncClient, customer: str) -> None:
    """The customer's invoices wait in draft.manual_approval_needed (a customer override)."""
    await ok(
        await http.put(
            f"/api/v1/billing/customers/{customer}", json={"workflow": {"invoicing": {"autoAdvance": False}}}
        )
    )


async def fee_draft(http: httpx.AsyncClient) -> dict[str, Any]:
    """A new customer's draft invoice waiting for approval, with one flat fee "Fee" of 5."""
    customer, _ = await metered_customer(http)
    await manual_approval(http, customer)
    await add_lines(http, customer, line("Fee", {"type": "flat", "amount": "5"}))
    (draft,) = await invoice_now(http, customer)
    return draft


async def gathering_total(http: httpx.AsyncClient, customer: str) -> str:
    (gathering,) = (await ok(await http.get(INVOICES, params={"customers": customer, "statuses": "gathering"})))[
        "items"
    ]
    assert "lines" not in gathering or not gathering["lines"]  # totals without lines unless expanded
    return str(gathering["totals"]["total"])


async def test_a_gathering_invoice_shows_what_its_lines_come_to_now(http: httpx.AsyncClient) -> None:
    """OpenMeter answers a gathering invoice with live data (calculateGatheringInvoiceWithLiveData):
    usage so far rated by its price, flat fees at their amount, totals summed, as of the read.
    Nothing is stored: invoicing it later bills the usage of then."""
    customer, feature = await metered_customer(http, 1000, 250)
    await add_lines(
        http,
        customer,
        line("Tokens", {"type": "unit", "amount": "0.01"}, feature),
        line("Fee", {"type": "flat", "amount": "5"}),
    )
    assert await gathering_total(http, customer) == "17.5"  # 1,250 x 0.01 + 5
    (listed,) = (await ok(await http.get(INVOICES, params={"customers": customer, "expand": "lines"})))["items"]
    one = await ok(await http.get(f"{INVOICES}/{listed['id']}"))
    for shown in (listed, one):
        assert shown["status"] == "gathering" and shown["totals"]["total"] == "17.5" and shown["quantitySnapshotedAt"]
        lines = by_name(shown)
        assert (lines["Tokens"]["quantity"], lines["Tokens"]["totals"]["total"]) == ("1250", "12.5")
        assert lines["Fee"]["totals"]["total"] == "5"

    # More usage in the period: the next read shows it.
    key = (await ok(await http.get(f"/api/v1/customers/{customer}")))["key"]
    await ingest(http, [cloudevent(feature, key, {"tokens": 500}, time=START + timedelta(days=5))])
    for _ in range(100):
        if await gathering_total(http, customer) == "22.5":
            break
        await asyncio.sleep(0.1)
    assert await gathering_total(http, customer) == "22.5"

    # The stored lines were not rated by the reads: the invoice bills the usage of now, once.
    (invoice,) = await invoice_now(http, customer)
    assert invoice["totals"]["total"] == "22.5" and by_name(invoice)["Tokens"]["quantity"] == "1750"


async def test_the_sandbox_reports_an_invoice_sent_as_it_issues_it(http: httpx.AsyncClient) -> None:
    """OpenMeter's sandbox finalizes with SetSentToCustomerAt(now): an issued sandbox invoice
    carries sentToCustomerAt, the draft none."""
    draft = await fee_draft(http)
    assert "sentToCustomerAt" not in draft
    before = datetime.now(UTC)
    paid = await ok(await http.post(f"{INVOICES}/{draft['id']}/approve"))
    sent = datetime.fromisoformat(paid["sentToCustomerAt"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= sent <= datetime.now(UTC)
    assert paid["status"] == "paid" and sent <= datetime.fromisoformat(paid["issuedAt"].replace("Z", "+00:00"))


async def test_every_price_type_totals_by_hand_through_the_sandbox_to_paid(http: httpx.AsyncClient) -> None:
    customer, feature = await metered_customer(http, 1000, 250)  # 1,250 tokens in the period
    unit = {"type": "unit", "amount": "0.01"}
    created = await add_lines(
        http,
        customer,
        line("Platform fee", {"type": "flat", "amount": "20", "paymentTerm": "in_arrears"}),
        line("Unit", unit, feature),
        line(
            "Graduated",
            {
                "type": "tiered",
                "mode": "graduated",
                "tiers": [
                    {"upToAmount": "1000", "unitPrice": {"type": "unit", "amount": "0.01"}},
                    {"unitPrice": {"type": "unit", "amount": "0.005"}},
                ],
            },
            feature,
        ),
        line(
            "Volume",
            {
                "type": "tiered",
                "mode": "volume",
                "tiers": [
                    {"upToAmount": "1000", "unitPrice": {"type": "unit", "amount": "0.02"}},
                    {"unitPrice": {"type": "unit", "amount": "0.01"}, "flatPrice": {"type": "flat", "amount": "5"}},
                ],
            },
            feature,
        ),
        line("Package", {"type": "package", "amount": "3", "quantityPerPackage": "500"}, feature),
        line("Dynamic", {"type": "dynamic", "multiplier": "1.5"}, feature),
        line("Discounted", unit, feature, discounts={"percentage": {"percentage": 10}}),
        line("Minimum", {**unit, "minimumAmount": "20"}, feature),
        line("Maximum", {"type": "unit", "amount": "0.02", "maximumAmount": "20"}, feature),
    )
    gathering = created["invoice"]
    assert created["isInvoiceNew"] is True and len(created["lines"]) == 9
    assert gathering["status"] == "gathering" and gathering["statusDetails"]["extendedStatus"] == "gathering"
    assert gathering["statusDetails"]["availableActions"] == {"invoice": {}}
    assert gathering["customer"]["id"] == customer and gathering["currency"] == "USD"
    again = await add_lines(http, customer, line("Setup", {"type": "flat", "amount": "5"}))
    assert again["isInvoiceNew"] is False and again["invoice"]["id"] == gathering["id"]

    (invoice,) = await invoice_now(http, customer)
    lines = by_name(invoice)
    expected = {
        "Platform fee": "20",
        "Setup": "5",
        "Unit": "12.5",  # 1250 x 0.01
        "Graduated": "11.25",  # 1000 x 0.01 + 250 x 0.005
        "Volume": "17.5",  # all 1250 in the second tier: 1250 x 0.01 + 5 flat
        "Package": "9",  # ceil(1250 / 500) = 3 packages x 3
        "Dynamic": "1875",  # 1250 x 1.5
        "Discounted": "11.25",  # 12.50 - 10 %
        "Minimum": "20",  # 12.50 of usage + 7.50 to reach the minimum
        "Maximum": "20",  # 25.00 capped at 20
    }
    assert {name: x["totals"]["total"] for name, x in lines.items()} == expected
    assert lines["Discounted"]["totals"]["discountsTotal"] == "1.25"
    assert lines["Minimum"]["totals"]["chargesTotal"] == "7.5"
    assert lines["Maximum"]["totals"]["discountsTotal"] == "5"
    assert lines["Unit"]["quantity"] == "1250" and lines["Unit"]["meteredQuantity"] == "1250"
    assert lines["Unit"]["preLinePeriodQuantity"] == "0"
    assert lines["Graduated"]["children"] and all(c["status"] == "detailed" for c in lines["Graduated"]["children"])
    assert sum(D(c["totals"]["total"]) for c in lines["Graduated"]["children"]) == D("11.25")
    total = sum(D(v) for v in expected.values())  # 2001.50
    assert D(invoice["totals"]["total"]) == total == D("2001.50")
    assert invoice["totals"]["discountsTotal"] == "6.25" and invoice["totals"]["chargesTotal"] == "7.5"
    # The sandbox issues, numbers and collects at once.
    assert invoice["status"] == "paid" and invoice["statusDetails"]["extendedStatus"] == "paid"
    assert invoice["statusDetails"]["availableActions"] == {} and invoice["statusDetails"]["immutable"] is True
    assert invoice["number"].startswith("OM-SANDBOX-ACCO-")
    assert invoice["issuedAt"] and invoice["dueAt"] and invoice["quantitySnapshotedAt"]
    assert invoice["workflow"]["workflow"]["invoicing"]["dueAfter"] == "P30D"

    got = await ok(await http.get(f"{INVOICES}/{invoice['id']}"))
    assert got["totals"] == invoice["totals"] and len(got["lines"]) == 10
    assert set(got["workflow"]["apps"]["invoicing"]) == {"id"}
    expanded = await ok(await http.get(f"{INVOICES}/{invoice['id']}", params={"expand": "lines,workflow.apps"}))
    assert expanded["workflow"]["apps"]["invoicing"]["type"] == "sandbox" and expanded["lines"]
    listed = await ok(await http.get(INVOICES, params={"customers": customer, "expand": "lines"}))
    assert listed["totalCount"] == 1 and listed["items"][0]["id"] == invoice["id"] and listed["items"][0]["lines"]
    # The emptied gathering invoice is gone, and nothing is left to invoice: 400, never an empty invoice.
    gone = await ok(await http.get(INVOICES, params={"customers": customer, "statuses": "gathering"}))
    assert gone["items"] == []
    nothing = await http.post(f"{INVOICES}/invoice", json={"customerId": customer})
    assert nothing.status_code == 400 and "customerId" in nothing.text
    voided = await http.post(
        f"{INVOICES}/{invoice['id']}/void",
        json={"reason": "paid", "action": {"percentage": 100, "action": {"type": "discard"}}},
    )
    assert voided.status_code == 400, voided.text


async def test_a_rate_card_discount_keeps_its_correlation_id(http: httpx.AsyncClient) -> None:
    """OpenMeter's BillingDiscountPercentage and BillingDiscountUsage take a correlationId, which the
    line's rate card and its discounts' reason keep; without one, one is made up."""
    customer, feature = await metered_customer(http, 1000)
    given = "01JB8Z2V4M5X6Y7Z8A9B0C1D2E"
    created = await add_lines(
        http,
        customer,
        line(
            "Kept",
            {"type": "unit", "amount": "0.01"},
            feature,
            discounts={
                "percentage": {"percentage": 10, "correlationId": given},
                "usage": {"quantity": "100", "correlationId": given},
            },
        ),
        line("Made up", {"type": "flat", "amount": "20"}, discounts={"percentage": {"percentage": 5}}),
    )
    made = by_name(created)["Made up"]["rateCard"]["discounts"]["percentage"]
    assert made["percentage"] == 5 and len(made["correlationId"]) == 26
    (invoice,) = await invoice_now(http, customer)
    kept = by_name(invoice)["Kept"]
    assert kept["rateCard"]["discounts"] == {
        "percentage": {"percentage": 10, "correlationId": given},
        "usage": {"quantity": "100", "correlationId": given},
    }
    reasons = [d["reason"] for c in kept["children"] for d in c["discounts"].get("amount", [])]
    assert reasons == [{"type": "ratecard_percentage", "percentage": 10, "correlationId": given}]
    usage = [d["reason"] for d in kept["discounts"]["usage"]]
    assert usage == [{"type": "ratecard_usage", "quantity": "100", "correlationId": given}]
    assert by_name(invoice)["Made up"]["rateCard"]["discounts"]["percentage"] == made


async def test_request_errors_name_the_field(http: httpx.AsyncClient) -> None:
    customer, _ = await metered_customer(http)
    bad = await http.post(
        f"/api/v1/billing/customers/{customer}/invoices/pending-lines",
        json={"currency": "XXX", "lines": [line("No feature", {"type": "unit", "amount": "1"})]},
    )
    assert bad.status_code == 400 and "currency" in bad.text and "featureKey" in bad.text
    missing = await http.post(f"{INVOICES}/invoice", json={"customerId": "01J0000000000000000000NOPE"})
    assert missing.status_code == 404, missing.text
    unknown = await http.get(f"{INVOICES}/01J0000000000000000000NOPE")
    assert unknown.status_code == 404
    wrong = await http.get(INVOICES, params={"statuses": "nope"})
    assert wrong.status_code == 400 and "statuses" in wrong.text


def _sdk_manual_approval_delete_and_simulate(rest_url: str, customer: str, feature: str) -> None:
    client = Client(endpoint=rest_url)
    client.customer_overrides.upsert(customer, {"workflow": {"invoicing": {"autoAdvance": False}}})
    created = client.customer_invoice.create_pending_invoice_line(
        customer,
        {
            "currency": "USD",
            "lines": [
                line("Seats", {"type": "flat", "amount": "49"}),
                line("Usage", {"type": "unit", "amount": "0.5"}, feature),
            ],
        },
    )
    assert created.is_invoice_new is True and len(created.lines) == 2
    (draft,) = client.invoices.invoice_pending_lines_action({"customerId": customer})
    assert draft.status == "draft"
    assert draft.status_details.extended_status == "draft.manual_approval_needed"
    actions = draft.status_details.available_actions
    # Approval issues it and asks the payment app to collect; the payment's outcome is the app's.
    assert actions.approve.resulting_state == "payment_processing.pending"
    assert actions.delete.resulting_state == "deleted"
    assert actions.void is None
    assert draft.totals.total == "54"  # 49 + 10 x 0.5

    # Delete: the lines go back to a gathering invoice, and can be invoiced again.
    client.invoice.delete_invoice(draft.id)
    with pytest.raises(HttpResponseError) as again:
        client.invoice.approve_action(draft.id)
    assert again.value.status_code == 400
    pending = client.invoices.list(customers=[customer], statuses=["gathering"], expand=["lines"])
    assert pending.total_count == 1 and {x.name for x in pending["items"][0].lines} == {"Seats", "Usage"}
    (draft,) = client.invoices.invoice_pending_lines_action({"customerId": customer})
    paid = client.invoice.approve_action(draft.id)
    assert paid.status == "paid" and paid.totals.total == "54"

    # Simulate: the totals the lines would make, nothing stored.
    simulated = client.customer_invoice.simulate_invoice(
        customer,
        {
            "currency": "USD",
            "lines": [
                {**line("Sim", {"type": "unit", "amount": "0.25"}, feature), "quantity": "40"},
                {**line("Sim flat", {"type": "flat", "amount": "3"}), "quantity": "1"},
            ],
        },
    )
    assert simulated.totals.total == "13"  # 40 x 0.25 + 3
    # OpenMeter's number of a simulation that names none (SimulateInvoice), and its collection;
    # manual approval: no due date before the issue.
    assert simulated.number == "INV-SIMULATED"
    assert simulated.collection_at is not None and simulated.due_at is None
    # Nothing was stored, so nothing can be done with it: OpenMeter's simulation carries empty
    # status details (openmeter/billing/service/invoice.go SimulateInvoice).
    assert dict(simulated.status_details.available_actions) == {}
    assert simulated.status_details.extended_status == "draft.created"
    assert client.invoices.list(customers=[customer]).total_count == 1


async def test_sdk_manual_approval_delete_and_simulate(tally: TallyProcess, http: httpx.AsyncClient) -> None:
    customer, feature = await metered_customer(http, 10)
    await asyncio.to_thread(_sdk_manual_approval_delete_and_simulate, tally.rest_url, customer, feature)


async def custom_invoicing_customer(http: httpx.AsyncClient) -> tuple[str, str]:
    """A customer billed through a custom_invoicing app with both sync hooks on."""
    installed = await ok(
        await http.post(
            "/api/v1/marketplace/listings/custom_invoicing/install",
            json={"name": unique("erp"), "createBillingProfile": False},
        )
    )
    app = installed["app"]["id"]
    await ok(
        await http.put(
            f"/api/v1/apps/{app}",
            json={
                "type": "custom_invoicing",
                "name": "ERP",
                "enableDraftSyncHook": True,
                "enableIssuingSyncHook": True,
            },
        )
    )
    profile = await ok(
        await http.post(
            "/api/v1/billing/profiles",
            json={
                "name": unique("erp_profile"),
                "supplier": {"name": "Acme Billing", "addresses": [{"country": "NL"}]},
                "default": False,
                "apps": {"tax": app, "invoicing": app, "payment": app},
            },
        ),
        201,
    )
    customer, feature = await metered_customer(http, 100)
    await ok(await http.put(f"/api/v1/billing/customers/{customer}", json={"billingProfileId": profile["id"]}))
    return customer, feature


async def test_standard_invoice_lines_carry_the_workflows_default_tax_config_under_their_own(
    http: httpx.AsyncClient,
) -> None:
    # OpenMeter snapshots the workflow's defaultTaxConfig into each line of a standard invoice it
    # calculates, the line's own settings first (the Stripe code and tax code ID as one), and shows
    # a line's config on its children too: the app that computes the tax reads it per line. The
    # gathering invoice's lines stay as they were asked for.
    customer, feature = await metered_customer(http, 100)
    # (A default tax config takes no tax code any more: the contract deprecates it.)
    default_tax = {"behavior": "exclusive", "customInvoicing": {"code": "VAT"}}
    await ok(
        await http.put(
            f"/api/v1/billing/customers/{customer}",
            json={"workflow": {"invoicing": {"defaultTaxConfig": default_tax}}},
        )
    )
    own = {"behavior": "inclusive", "stripe": {"code": "txcd_20030000"}}
    made = await add_lines(
        http,
        customer,
        line("Support", {"type": "flat", "amount": "50"}),
        line("Tokens", {"type": "unit", "amount": "0.5"}, feature, taxConfig=own),
    )
    pending = {x["name"]: x for x in made["lines"]}
    assert "taxConfig" not in pending["Support"] and pending["Tokens"]["taxConfig"] == own
    (invoice,) = await invoice_now(http, customer)
    lines = {x["name"]: x for x in invoice["lines"]}
    assert lines["Support"]["taxConfig"] == default_tax
    tokens = {**own, "customInvoicing": {"code": "VAT"}}
    assert lines["Tokens"]["taxConfig"] == lines["Tokens"]["rateCard"]["taxConfig"] == tokens
    (child,) = lines["Tokens"]["children"]
    assert child["taxConfig"] == child["rateCard"]["taxConfig"] == tokens
    assert invoice["totals"]["total"] == "100"  # 50 + 100 x 0.5: no tax engine, the config is the app's


async def test_sync_callbacks_stamp_openmeters_metadata_keys(http: httpx.AsyncClient) -> None:
    """OpenMeter's custom invoicing stamps when each callback arrived into the invoice's metadata
    (openmeter.io/custominvoicing/draft-synced-at, .../finalized-at, RFC 3339 to the second)."""
    customer, _ = await custom_invoicing_customer(http)
    await add_lines(http, customer, line("Licence", {"type": "flat", "amount": "120"}))
    (invoice,) = await invoice_now(http, customer)
    iid = invoice["id"]
    draft_key = "openmeter.io/custominvoicing/draft-synced-at"
    final_key = "openmeter.io/custominvoicing/finalized-at"
    assert draft_key not in (invoice.get("metadata") or {})
    apps = "/api/v1/apps/custom-invoicing"
    before = datetime.now(UTC).replace(microsecond=0)
    await ok(await http.post(f"{apps}/{iid}/draft/synchronized", json={}), 204)
    synced = (await ok(await http.get(f"{INVOICES}/{iid}")))["metadata"]
    assert final_key not in synced
    assert before <= datetime.fromisoformat(synced[draft_key].replace("Z", "+00:00")) <= datetime.now(UTC)
    assert synced[draft_key].endswith("Z") and "." not in synced[draft_key]
    await ok(await http.post(f"{apps}/{iid}/issuing/synchronized", json={}), 204)
    issued = await ok(await http.get(f"{INVOICES}/{iid}"))
    assert issued["status"] == "payment_processing" and issued["metadata"][draft_key] == synced[draft_key]
    assert before <= datetime.fromisoformat(issued["metadata"][final_key].replace("Z", "+00:00")) <= datetime.now(UTC)


async def _issued_through_custom_invoicing(http: httpx.AsyncClient, *lines: dict[str, Any]) -> tuple[str, str]:
    """A custom-invoicing customer's lines invoiced and issued (waiting for payment, so voidable):
    the customer and the invoice's ID."""
    customer, _ = await custom_invoicing_customer(http)
    await add_lines(http, customer, *lines)
    (invoice,) = await invoice_now(http, customer)
    iid = invoice["id"]
    apps = "/api/v1/apps/custom-invoicing"
    await ok(await http.post(f"{apps}/{iid}/draft/synchronized", json={}), 204)
    await ok(await http.post(f"{apps}/{iid}/issuing/synchronized", json={}), 204)
    return customer, iid


async def test_void_takes_openmeters_whole_request(http: httpx.AsyncClient) -> None:
    """VoidInvoiceActionInput as OpenMeter's schema has it: the action for every line, and
    `overrides` per line. The override discards the licence; the setup fee, pending, goes back to
    the gathering invoice due at `nextInvoiceAt`. Anything Tally cannot do is refused first: a
    percentage other than 100 (part of a line needs a credit note), an unknown action type, a time
    for a discarded line, a line of another invoice."""
    licence, setup = line("Licence", {"type": "flat", "amount": "120"}), line("Setup", {"type": "flat", "amount": "30"})
    customer, iid = await _issued_through_custom_invoicing(http, licence, setup)
    ids = {x["name"]: x["id"] for x in (await ok(await http.get(f"{INVOICES}/{iid}")))["lines"]}
    pending = {"type": "pending", "nextInvoiceAt": "2030-01-01T00:00:00Z"}
    whole = {"percentage": 100, "action": pending}
    for body, field in (
        ({"action": {"percentage": 50, "action": pending}}, "action.percentage"),
        ({"action": {"percentage": 100, "action": {"type": "refund"}}}, "action.action.type"),
        (
            {"action": {"percentage": 100, "action": {"type": "discard", "nextInvoiceAt": "2030-01-01T00:00:00Z"}}},
            "action.action.nextInvoiceAt",
        ),
        (
            {"action": whole, "overrides": [{"lineId": "01J0000000000000000000NOPE", "action": whole}]},
            "overrides[0].lineId",
        ),
    ):
        refused = await http.post(f"{INVOICES}/{iid}/void", json={"reason": "wrong customer", **body})
        assert refused.status_code == 400, refused.text
        fields = [v["field"] for v in refused.json()["extensions"]["validationErrors"]]
        assert fields == [field], refused.text
    assert (await ok(await http.get(f"{INVOICES}/{iid}")))["status"] != "voided"
    voided = await ok(
        await http.post(
            f"{INVOICES}/{iid}/void",
            json={
                "reason": "wrong customer",
                "action": whole,
                "overrides": [{"lineId": ids["Licence"], "action": {"percentage": 100, "action": {"type": "discard"}}}],
            },
        )
    )
    assert voided["status"] == "voided" and voided["voidReason"] == "wrong customer"
    (gathering,) = (
        await ok(await http.get(INVOICES, params={"customers": customer, "statuses": "gathering", "expand": "lines"}))
    )["items"]
    (again,) = gathering["lines"]
    assert (again["name"], again["totals"]["total"], again["invoiceAt"]) == ("Setup", "30", "2030-01-01T00:00:00Z")
    assert again["metadata"] == {"tally.billed_again_from": ids["Setup"]}


async def test_custom_invoicing_stores_the_apps_ids_of_line_discounts(http: httpx.AsyncClient) -> None:
    # OpenMeter's CustomInvoicingSyncResult carries lineDiscountExternalIds beside lineExternalIds;
    # an integration built against it sends both (it was refused as an unknown field).
    customer, _ = await custom_invoicing_customer(http)
    await add_lines(
        http, customer, line("Licence", {"type": "flat", "amount": "120"}, discounts={"percentage": {"percentage": 10}})
    )
    (invoice,) = await invoice_now(http, customer)
    iid = invoice["id"]
    (discount,) = invoice["lines"][0]["discounts"]["amount"]
    assert discount["amount"] == "12" and "externalIds" not in discount
    apps = "/api/v1/apps/custom-invoicing"
    stranger = await http.post(
        f"{apps}/{iid}/draft/synchronized",
        json={"invoicing": {"lineDiscountExternalIds": [{"lineDiscountId": "01NOTADISCOUNT", "externalId": "x"}]}},
    )
    assert stranger.status_code == 400, stranger.text
    assert "invoicing.lineDiscountExternalIds[0].lineDiscountId" in stranger.text
    assert (await ok(await http.get(f"{INVOICES}/{iid}")))["statusDetails"]["extendedStatus"] == "draft.syncing"
    mapping = {"lineDiscountId": discount["id"], "externalId": "erp-discount-1"}
    await ok(
        await http.post(f"{apps}/{iid}/draft/synchronized", json={"invoicing": {"lineDiscountExternalIds": [mapping]}}),
        204,
    )
    synced = await ok(await http.get(f"{INVOICES}/{iid}"))
    (kept,) = synced["lines"][0]["discounts"]["amount"]
    assert (kept["id"], kept["amount"], kept["externalIds"]) == (discount["id"], "12", {"invoicing": "erp-discount-1"})
    assert synced["statusDetails"]["extendedStatus"] == "issuing.syncing"


async def test_custom_invoicing_syncs_in_order_then_payment_and_void(http: httpx.AsyncClient) -> None:
    customer, feature = await custom_invoicing_customer(http)
    await add_lines(http, customer, line("API", {"type": "unit", "amount": "0.1"}, feature))  # 100 x 0.1
    (invoice,) = await invoice_now(http, customer)
    iid = invoice["id"]
    assert invoice["statusDetails"]["extendedStatus"] == "draft.syncing" and invoice["totals"]["total"] == "10"
    apps = "/api/v1/apps/custom-invoicing"
    # Out of order: issuing and payment before the draft is synchronized are refused, nothing moves.
    early = await http.post(f"{apps}/{iid}/issuing/synchronized", json={})
    assert early.status_code == 400, early.text
    early = await http.post(f"{apps}/{iid}/payment/status", json={"trigger": "paid"})
    assert early.status_code == 400
    assert (await ok(await http.get(f"{INVOICES}/{iid}")))["statusDetails"]["extendedStatus"] == "draft.syncing"

    draft = await ok(await http.get(f"{INVOICES}/{iid}"))
    (line_id,) = [x["id"] for x in draft["lines"]]
    # Line external IDs name lines of this invoice; another ID is refused and nothing moves.
    stranger = await http.post(
        f"{apps}/{iid}/draft/synchronized",
        json={"invoicing": {"lineExternalIds": [{"lineId": "01NOTALINE", "externalId": "x"}]}},
    )
    assert stranger.status_code == 400 and "invoicing.lineExternalIds[0].lineId" in stranger.text, stranger.text
    assert (await ok(await http.get(f"{INVOICES}/{iid}")))["statusDetails"]["extendedStatus"] == "draft.syncing"
    await ok(
        await http.post(
            f"{apps}/{iid}/draft/synchronized",
            json={
                "invoicing": {
                    "externalId": "erp-draft-1",
                    "lineExternalIds": [{"lineId": line_id, "externalId": "erp-line-1"}],
                }
            },
        ),
        204,
    )
    synced = await ok(await http.get(f"{INVOICES}/{iid}"))
    assert [x["externalIds"] for x in synced["lines"]] == [{"invoicing": "erp-line-1"}]
    synced = await ok(await http.get(f"{INVOICES}/{iid}"))
    assert synced["statusDetails"]["extendedStatus"] == "issuing.syncing"
    assert synced["externalIds"]["invoicing"] == "erp-draft-1"
    again = await http.post(f"{apps}/{iid}/draft/synchronized", json={})
    assert again.status_code == 400

    # A bad sentToCustomerAt is refused, naming the field; nothing moves.
    bad = await http.post(f"{apps}/{iid}/issuing/synchronized", json={"invoicing": {"sentToCustomerAt": "today"}})
    assert bad.status_code == 400 and "invoicing.sentToCustomerAt" in bad.text, bad.text
    await ok(
        await http.post(
            f"{apps}/{iid}/issuing/synchronized",
            json={
                "invoicing": {"invoiceNumber": "ERP-0001", "sentToCustomerAt": "2025-12-02T10:00:00Z"},
                "payment": {"externalId": "pay-1"},
            },
        ),
        204,
    )
    issued = await ok(await http.get(f"{INVOICES}/{iid}"))
    assert issued["number"] == "ERP-0001" and issued["externalIds"]["payment"] == "pay-1"
    assert issued["sentToCustomerAt"] == "2025-12-02T10:00:00Z"
    assert issued["statusDetails"]["extendedStatus"] == "payment_processing.pending"
    assert set(issued["statusDetails"]["availableActions"]) == {"void"}

    await ok(await http.post(f"{apps}/{iid}/payment/status", json={"trigger": "payment_failed"}), 204)
    failed = await ok(await http.get(f"{INVOICES}/{iid}"))
    assert (
        failed["statusDetails"]["extendedStatus"] == "payment_processing.failed" and failed["statusDetails"]["failed"]
    )
    assert {"retry", "void"} <= set(failed["statusDetails"]["availableActions"])
    bad = await http.post(f"{apps}/{iid}/payment/status", json={"trigger": "refunded"})
    assert bad.status_code == 400 and "trigger" in bad.text

    # Void needs a reason; OpenMeter answers 501 here, Tally voids and keeps the reason.
    no_reason = await http.post(
        f"{INVOICES}/{iid}/void", json={"action": {"percentage": 100, "action": {"type": "discard"}}}
    )
    assert no_reason.status_code == 400 and "reason" in no_reason.text
    voided = await ok(
        await http.post(
            f"{INVOICES}/{iid}/void",
            json={"reason": "duplicate order", "action": {"percentage": 100, "action": {"type": "discard"}}},
        )
    )
    assert voided["status"] == "voided" and voided["voidedAt"] and voided["voidReason"] == "duplicate order"
    assert voided["statusDetails"]["availableActions"] == {}
    twice = await http.post(f"{INVOICES}/{iid}/void", json={"reason": "again"})
    assert twice.status_code == 400

    # A second invoice, paid by the integrator.
    await add_lines(http, customer, line("Support", {"type": "flat", "amount": "15"}))
    (second,) = await invoice_now(http, customer)
    sid = second["id"]
    await ok(await http.post(f"{apps}/{sid}/draft/synchronized", json={}), 204)
    await ok(await http.post(f"{apps}/{sid}/issuing/synchronized", json={}), 204)
    await ok(await http.post(f"{apps}/{sid}/payment/status", json={"trigger": "paid"}), 204)
    paid = await ok(await http.get(f"{INVOICES}/{sid}"))
    assert paid["status"] == "paid" and paid["totals"]["total"] == "15"


async def test_update_draft_lines_and_retry_refused_when_nothing_failed(http: httpx.AsyncClient) -> None:
    customer, feature = await metered_customer(http, 20)
    await manual_approval(http, customer)
    await add_lines(http, customer, line("Old fee", {"type": "flat", "amount": "7"}))
    (draft,) = await invoice_now(http, customer)
    (old,) = draft["lines"]
    retry = await http.post(f"{INVOICES}/{draft['id']}/retry")
    assert retry.status_code == 400
    body = {
        "supplier": draft["supplier"],
        "customer": draft["customer"],
        "workflow": draft["workflow"],
        "lines": [
            {**line("New fee", {"type": "flat", "amount": "8"}), "id": old["id"]},
            line("Usage", {"type": "unit", "amount": "2"}, feature),
        ],
    }
    updated = await ok(await http.put(f"{INVOICES}/{draft['id']}", json=body))
    names = by_name(updated)
    assert set(names) == {"New fee", "Usage"} and names["New fee"]["id"] == old["id"]
    assert updated["statusDetails"]["extendedStatus"] == "draft.manual_approval_needed"
    assert updated["totals"]["total"] == "48"  # 8 + 20 x 2
    paid = await ok(await http.post(f"{INVOICES}/{draft['id']}/approve"))
    assert paid["status"] == "paid"
    late = await http.put(f"{INVOICES}/{draft['id']}", json=body)
    assert late.status_code == 400


async def test_update_takes_the_customer_tax_id_openmeter_allows(http: httpx.AsyncClient) -> None:
    """InvoiceReplaceUpdate.customer is OpenMeter's BillingPartyReplaceUpdate, with an optional
    taxId; OpenMeter keeps none for an invoice's customer, and the request is not refused for it."""
    draft = await fee_draft(http)
    body = {
        "supplier": draft["supplier"],
        "customer": {**draft["customer"], "taxId": {"code": "NL123456789B01"}},
        "workflow": draft["workflow"],
        "lines": [{**line("Fee", {"type": "flat", "amount": "5"}), "id": by_name(draft)["Fee"]["id"]}],
    }
    updated = await ok(await http.put(f"{INVOICES}/{draft['id']}", json=body))
    assert updated["totals"]["total"] == "5" and "taxId" not in updated["customer"]


async def test_update_replaces_the_description_and_metadata(http: httpx.AsyncClient) -> None:
    """PUT is a replace: metadata {} and no description clear what an earlier PUT set."""
    draft = await fee_draft(http)
    body = {
        "supplier": draft["supplier"],
        "customer": draft["customer"],
        "workflow": draft["workflow"],
        "lines": [{**line("Fee", {"type": "flat", "amount": "5"}), "id": by_name(draft)["Fee"]["id"]}],
    }
    described = await ok(
        await http.put(f"{INVOICES}/{draft['id']}", json={**body, "description": "Q4", "metadata": {"po": "42"}})
    )
    assert (described["description"], described["metadata"]) == ("Q4", {"po": "42"})
    cleared = await ok(await http.put(f"{INVOICES}/{draft['id']}", json={**body, "metadata": {}}))
    assert "description" not in cleared and cleared.get("metadata", {}) == {}


async def test_include_deleted_lines_shows_what_an_update_removed(http: httpx.AsyncClient) -> None:
    customer, _ = await metered_customer(http)
    await manual_approval(http, customer)
    await add_lines(
        http, customer, line("Keep", {"type": "flat", "amount": "5"}), line("Drop", {"type": "flat", "amount": "3"})
    )
    (draft,) = await invoice_now(http, customer)
    body = {
        "supplier": draft["supplier"],
        "customer": draft["customer"],
        "workflow": draft["workflow"],
        "lines": [{**line("Keep", {"type": "flat", "amount": "5"}), "id": by_name(draft)["Keep"]["id"]}],
    }
    updated = await ok(await http.put(f"{INVOICES}/{draft['id']}", json=body))
    assert set(by_name(updated)) == {"Keep"} and updated["totals"]["total"] == "5"
    shown = await ok(await http.get(f"{INVOICES}/{draft['id']}"))
    assert set(by_name(shown)) == {"Keep"}
    everything = await ok(await http.get(f"{INVOICES}/{draft['id']}", params={"includeDeletedLines": "true"}))
    lines = by_name(everything)
    assert set(lines) == {"Keep", "Drop"}
    assert lines["Drop"]["deletedAt"] and "deletedAt" not in lines["Keep"]
    assert everything["totals"]["total"] == "5"  # a deleted line is shown, not billed


async def test_update_a_gathering_invoices_lines(http: httpx.AsyncClient) -> None:
    """OpenMeter's PUT of a gathering invoice (httpdriver/invoice.go updateGatheringInvoice) edits
    its lines only: a changed line becomes managedBy manual, a line left out is deleted, one
    without an ID is added; the invoice's description is not the request's to set. With no lines
    left the gathering invoice is deleted."""
    customer, _ = await metered_customer(http)
    created = await add_lines(
        http, customer, line("Keep", {"type": "flat", "amount": "5"}), line("Drop", {"type": "flat", "amount": "3"})
    )
    gathering = await ok(await http.get(f"{INVOICES}/{created['invoice']['id']}"))
    body = {
        "supplier": gathering["supplier"],
        "customer": gathering["customer"],
        "workflow": gathering["workflow"],
        "description": "Q4",
        "lines": [
            {**line("Keep", {"type": "flat", "amount": "6"}), "id": by_name(gathering)["Keep"]["id"]},
            {**line("Added", {"type": "flat", "amount": "2"}), "id": "client-side-id"},
        ],
    }
    updated = await ok(await http.put(f"{INVOICES}/{gathering['id']}", json=body))
    lines = by_name(updated)
    assert updated["status"] == "gathering" and "description" not in updated
    assert set(lines) == {"Keep", "Added"} and lines["Keep"]["id"] == by_name(gathering)["Keep"]["id"]
    assert lines["Added"]["id"] != "client-side-id" and lines["Added"]["managedBy"] == "manual"
    assert lines["Keep"]["rateCard"]["price"]["amount"] == "6"
    shown = await ok(await http.get(f"{INVOICES}/{gathering['id']}"))
    assert shown["totals"]["total"] == "8"  # 6 + 2
    refused = await http.put(
        f"{INVOICES}/{gathering['id']}",
        json={
            **body,
            "lines": [
                {**line("Bad", {"type": "flat", "amount": "1"}), "period": {"from": PERIOD["to"], "to": PERIOD["from"]}}
            ],
        },
    )
    assert refused.status_code == 400 and "lines[0].period" in refused.text
    emptied = await http.put(f"{INVOICES}/{gathering['id']}", json={**body, "lines": []})
    assert emptied.status_code == 200, emptied.text
    left = await ok(await http.get(INVOICES, params={"customers": customer, "statuses": "gathering"}))
    assert left["items"] == []


async def test_grpc_pending_lines_and_invoice_now(http: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
    customer, feature = await metered_customer(http, 300)
    stub = invoices_pb2_grpc.InvoiceServiceStub(channel)
    request = invoices_pb2.CreatePendingInvoiceLinesRequest(customer_id=customer, currency="EUR")
    pending = request.lines.add(name="Calls", invoice_at=rfc3339(END))
    pending.period.CopyFrom(invoices_pb2.InvoicePeriod(**{"from": rfc3339(START), "to": rfc3339(END)}))
    pending.rate_card.feature_key = feature
    pending.rate_card.price.type = "unit"
    pending.rate_card.price.amount = "0.02"
    created = await stub.CreatePendingInvoiceLines(request)
    assert created.is_invoice_new and created.invoice.status == "gathering"
    made = await stub.InvoicePendingLines(invoices_pb2.InvoicePendingLinesRequest(customer_id=customer))
    (invoice,) = made.items
    assert invoice.currency == "EUR" and invoice.totals.total == "6" and invoice.status == "paid"  # 300 x 0.02
    got = await stub.GetInvoice(invoices_pb2.GetInvoiceRequest(invoice_id=invoice.id))
    assert got.lines[0].quantity == "300"
    with pytest.raises(grpc.aio.AioRpcError) as nothing:
        await stub.InvoicePendingLines(invoices_pb2.InvoicePendingLinesRequest(customer_id=customer))
    assert nothing.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_invoice_webhooks_are_signed_and_delivered_on_state_changes(http: httpx.AsyncClient) -> None:
    receiver = await WebhookReceiver().start()
    rules: list[str] = []
    try:
        channel = await ok(
            await http.post(
                "/api/v1/notification/channels",
                json={"type": "WEBHOOK", "name": unique("invoices"), "url": receiver.url("/invoices")},
            ),
            201,
        )
        receiver.secrets["/invoices"] = channel["signingSecret"]
        for kind in ("invoice.created", "invoice.updated"):
            rule = await ok(
                await http.post(
                    "/api/v1/notification/rules",
                    json={"type": kind, "name": unique("invoice_rule"), "channels": [channel["id"]]},
                ),
                201,
            )
            rules.append(rule["id"])
        customer, feature = await custom_invoicing_customer(http)
        await add_lines(http, customer, line("API", {"type": "unit", "amount": "0.1"}, feature))
        (invoice,) = await invoice_now(http, customer)
        iid = invoice["id"]
        await ok(await http.post(f"/api/v1/apps/custom-invoicing/{iid}/draft/synchronized", json={}), 204)

        def seen() -> list[tuple[str, str]]:
            return [
                (d.body["type"], d.body["data"]["statusDetails"]["extendedStatus"])
                for d in receiver.successes("/invoices")
                if d.body.get("data", {}).get("id") == iid
            ]

        async def both() -> bool:
            while len(seen()) < 2:
                await asyncio.sleep(0.05)
            return True

        await asyncio.wait_for(both(), timeout=30)
        # The integrator learns of the new draft waiting for it, then of each move.
        assert seen() == [("invoice.created", "draft.syncing"), ("invoice.updated", "issuing.syncing")]
        deliveries = [d for d in receiver.successes("/invoices") if d.body["data"]["id"] == iid]
        assert all(d.verified for d in deliveries)
        data = deliveries[0].body["data"]
        # OpenMeter's payload: the invoice as the API shows it.
        assert data["customer"]["id"] == customer and data["totals"]["total"] == "10" and data["lines"]
        assert deliveries[0].body["id"] and deliveries[0].body["timestamp"]
        # The workflow's apps come in full, as GET /billing/invoices/{id}?expand=workflow.apps shows them
        # (OpenMeter's MapEventInvoiceToAPI), not as bare references.
        shown = await ok(
            await http.get(f"/api/v1/billing/invoices/{iid}", params={"expand": ["lines", "workflow.apps"]})
        )
        latest = deliveries[-1].body["data"]
        assert latest["workflow"]["apps"] == shown["workflow"]["apps"]
        assert latest["workflow"]["apps"]["invoicing"]["type"] == "custom_invoicing"
        assert latest["workflow"]["apps"]["invoicing"]["name"] == "ERP"
    finally:
        for rule_id in rules:
            await http.delete(f"/api/v1/notification/rules/{rule_id}")
        await receiver.stop()


def _sdk_custom_invoicing_retry_and_void(rest_url: str, customer: str) -> None:
    client = Client(endpoint=rest_url)
    client.customer_invoice.create_pending_invoice_line(
        customer, {"currency": "USD", "lines": [line("Licence", {"type": "flat", "amount": "120"})]}
    )
    (invoice,) = client.invoices.invoice_pending_lines_action({"customerId": customer})
    assert invoice.status_details.extended_status == "draft.syncing"
    with pytest.raises(HttpResponseError) as early:
        client.app_custom_invoicing.payment_status(invoice.id, {"trigger": "paid"})
    assert early.value.status_code == 400
    client.app_custom_invoicing.draft_syncronized(invoice.id, {"invoicing": {"invoiceNumber": "ERP-D-1"}})
    client.app_custom_invoicing.finalized(invoice.id, {"invoicing": {"invoiceNumber": "ERP-9"}})
    issued = client.invoice.get_invoice(invoice.id)
    assert issued.number == "ERP-9" and issued.status == "payment_processing"
    # Retry is refused while nothing failed, allowed once the payment failed.
    with pytest.raises(HttpResponseError) as refused:
        client.invoice.retry_action(invoice.id)
    assert refused.value.status_code == 400
    client.app_custom_invoicing.payment_status(invoice.id, {"trigger": "payment_failed"})
    retried = client.invoice.retry_action(invoice.id)
    assert retried.status_details.extended_status == "payment_processing.pending"
    voided = client.invoice.void_invoice_action(
        invoice.id, {"reason": "customer left", "action": {"percentage": 100, "action": {"type": "discard"}}}
    )
    assert voided.status == "voided" and voided.voided_at is not None
    with pytest.raises(HttpResponseError) as gone:
        client.invoice.delete_invoice(invoice.id)
    assert gone.value.status_code == 400


async def test_sdk_custom_invoicing_retry_and_void(tally: TallyProcess, http: httpx.AsyncClient) -> None:
    customer, _ = await custom_invoicing_customer(http)
    await asyncio.to_thread(_sdk_custom_invoicing_retry_and_void, tally.rest_url, customer)


async def test_customer_delete_refused_while_an_invoice_is_open(http: httpx.AsyncClient) -> None:
    """OpenMeter's billing customer validator (ValidateDeleteCustomer) refuses a customer's delete
    with 400 while it has a gathering invoice or one that is not final, naming each invoice."""
    customer, _ = await metered_customer(http)
    await manual_approval(http, customer)
    await add_lines(http, customer, line("Licence", {"type": "flat", "amount": "120"}))
    (gathering,) = (await ok(await http.get(INVOICES, params={"customers": customer})))["items"]
    refused = await http.delete(f"/api/v1/customers/{customer}")
    assert refused.status_code == 400, refused.text
    assert f"invoice {gathering['id']} is still in gathering state" in refused.json()["detail"]

    (draft,) = await invoice_now(http, customer)
    assert draft["status"] == "draft"
    refused = await http.delete(f"/api/v1/customers/{customer}")
    assert refused.status_code == 400, refused.text
    assert f"invoice {draft['id']} is not in final state" in refused.json()["detail"]

    # Approved, the sandbox issues it and marks it paid: a final state.
    assert (await ok(await http.post(f"{INVOICES}/{draft['id']}/approve")))["status"] == "paid"
    assert (await http.delete(f"/api/v1/customers/{customer}")).status_code == 204


async def test_a_usage_line_counts_the_subjects_its_invoice_was_made_for(http: httpx.AsyncClient) -> None:
    """OpenMeter snapshots a line's quantity for the customer's usage attribution as the invoice
    copied it when it was made (SnapshotLineQuantities reads invoice.Customer; billing/lineengine),
    not as the customer is when the quantities are read. A subject added to the customer while
    the invoice waited for its collection counted on it: 1,000 tokens billed as 1,300 (10.00 as
    13.00), with the invoice still showing the customer without that subject."""
    customer, feature = await metered_customer(http, 1000)
    await ok(
        await http.put(f"/api/v1/billing/customers/{customer}", json={"workflow": {"collection": {"interval": "P1D"}}})
    )
    await add_lines(http, customer, line("Tokens", {"type": "unit", "amount": "0.01"}, feature))
    (waiting,) = await invoice_now(http, customer)
    assert waiting["status"] == "draft" and waiting["statusDetails"]["extendedStatus"] == "draft.waiting_for_collection"
    key = (await ok(await http.get(f"/api/v1/customers/{customer}")))["key"]
    other = unique("inv_subject")
    await ok(
        await http.put(
            f"/api/v1/customers/{customer}",
            json={"name": "Acme Corp", "key": key, "usageAttribution": {"subjectKeys": [key, other]}},
        )
    )
    await ingest(http, [cloudevent(feature, other, {"tokens": 300}, time=START + timedelta(days=4))])
    for _ in range(100):  # the event is stored (the meter shows it) before the quantities are read
        if await query(http, feature, subject=other):
            break
        await asyncio.sleep(0.1)
    assert await query(http, feature, subject=other)
    snapshotted = await ok(await http.post(f"{INVOICES}/{waiting['id']}/snapshot-quantities"))
    tokens = by_name(await ok(await http.get(f"{INVOICES}/{snapshotted['id']}", params={"expand": "lines"})))["Tokens"]
    assert (tokens["quantity"], tokens["totals"]["total"]) == ("1000", "10")
    assert snapshotted["customer"]["usageAttribution"]["subjectKeys"] == [key]


async def test_an_invoices_customer_shows_the_customers_subject_keys_without_its_key(http: httpx.AsyncClient) -> None:
    """OpenMeter's invoice customer carries the customer's usage attribution as the customer has it
    (InvoiceCustomer.UsageAttribution from Customer.GetUsageAttribution: ID, key and subject keys
    apart) and shows `usageAttribution.subjectKeys` as the subject keys alone
    (billing/httpdriver/invoice.go mapInvoiceCustomerToAPI); its key is `customer.key`. Tally put
    the key first in subjectKeys. Usage still counts under the key as under each subject key."""
    slug = unique("inv_tokens")
    await create_meter(http, slug=slug, eventType=slug, aggregation="SUM", valueProperty="$.tokens")
    await ok(await http.post("/api/v1/features", json={"key": slug, "name": slug, "meterSlug": slug}), 201)
    key, subject = unique("inv_customer"), unique("inv_subject")
    customer = await ok(
        await http.post(
            "/api/v1/customers", json={"name": "Acme Corp", "key": key, "usageAttribution": {"subjectKeys": [subject]}}
        ),
        201,
    )
    at = START + timedelta(days=3)
    await ingest(
        http, [cloudevent(slug, key, {"tokens": 100}, time=at), cloudevent(slug, subject, {"tokens": 20}, time=at)]
    )
    await query_until(http, slug, lambda rows: rows and Decimal(str(rows[0]["value"])) == 120)
    await add_lines(http, customer["id"], line("Tokens", {"type": "unit", "amount": "0.01"}, slug))
    (made,) = await invoice_now(http, customer["id"])
    assert made["customer"]["key"] == key
    assert made["customer"]["usageAttribution"] == {"subjectKeys": [subject]}
    assert by_name(made)["Tokens"]["quantity"] == "120"

    # A customer known by its key alone shows no subject keys.
    bare = await ok(await http.post("/api/v1/customers", json={"name": "Bare", "key": unique("inv_bare")}), 201)
    await add_lines(http, bare["id"], line("Fee", {"type": "flat", "amount": "5"}))
    (fee,) = await invoice_now(http, bare["id"])
    assert fee["customer"]["usageAttribution"] == {"subjectKeys": []}


async def test_update_replaces_the_drafts_supplier_and_customer_details(http: httpx.AsyncClient) -> None:
    """OpenMeter's PUT of a draft replaces the invoice's supplier (name, address, tax ID) and
    customer (name, address) with the body's (billing/httpdriver/invoice.go updateStandardInvoice:
    mergeInvoiceSupplierFromAPI, mergeInvoiceCustomerFromAPI), so a wrong address is corrected
    before the invoice is issued. Tally accepted them and kept the snapshot: the invoice went out
    with the old name and address."""
    draft = await fee_draft(http)
    customer_key = draft["customer"]["key"]
    supplier = {
        **draft["supplier"],
        "name": "Acme Billing GmbH",
        "taxId": {"code": "DE123456789"},
        "addresses": [{"country": "DE", "city": "Berlin", "line1": "Unter den Linden 1"}],
    }
    customer = {
        **draft["customer"],
        "name": "Acme Corporation",
        "addresses": [{"country": "NL", "city": "Amsterdam", "postalCode": "1011"}],
    }
    body = {
        "supplier": supplier,
        "customer": customer,
        "workflow": draft["workflow"],
        "lines": [{**line("Fee", {"type": "flat", "amount": "5"}), "id": by_name(draft)["Fee"]["id"]}],
    }
    updated = await ok(await http.put(f"{INVOICES}/{draft['id']}", json=body))
    for shown in (updated, await ok(await http.get(f"{INVOICES}/{draft['id']}"))):
        assert shown["supplier"]["name"] == "Acme Billing GmbH"
        assert shown["supplier"]["taxId"] == {"code": "DE123456789"}
        assert shown["supplier"]["addresses"] == [{"country": "DE", "city": "Berlin", "line1": "Unter den Linden 1"}]
        assert shown["customer"]["name"] == "Acme Corporation"
        assert shown["customer"]["addresses"] == [{"country": "NL", "city": "Amsterdam", "postalCode": "1011"}]
        # What identifies the customer and counts its usage is not the body's to change.
        assert shown["customer"]["key"] == customer_key and shown["customer"]["id"] == draft["customer"]["id"]

    # No tax ID and no address clear them; a name is required, as the supplier's country.
    cleared = await ok(
        await http.put(
            f"{INVOICES}/{draft['id']}",
            json={
                **body,
                "supplier": {**supplier, "taxId": None, "addresses": [{"country": "DE"}]},
                "customer": {**customer, "addresses": []},
            },
        )
    )
    assert "taxId" not in cleared["supplier"] and cleared["supplier"]["addresses"] == [{"country": "DE"}]
    assert not cleared["customer"].get("addresses")
    nameless = await http.put(f"{INVOICES}/{draft['id']}", json={**body, "customer": {**customer, "name": ""}})
    assert nameless.status_code == 400 and "customer.name" in nameless.text, nameless.text
    countryless = await http.put(f"{INVOICES}/{draft['id']}", json={**body, "supplier": {**supplier, "addresses": []}})
    assert countryless.status_code == 400 and "supplier.addresses[0].country" in countryless.text, countryless.text
    # The invoice is issued with the details the update gave.
    paid = await ok(await http.post(f"{INVOICES}/{draft['id']}/approve"))
    assert paid["status"] == "paid" and paid["customer"]["name"] == "Acme Corporation"

    # A gathering invoice's PUT edits its lines only: its supplier and customer are not read.
    other, _ = await metered_customer(http)
    await add_lines(http, other, line("Fee", {"type": "flat", "amount": "5"}))
    (gathering,) = (await ok(await http.get(INVOICES, params={"customers": other, "expand": "lines"})))["items"]
    fee = {**line("Fee", {"type": "flat", "amount": "5"}), "id": by_name(gathering)["Fee"]["id"]}
    edited = await ok(
        await http.put(
            f"{INVOICES}/{gathering['id']}",
            json={"supplier": {}, "customer": {"name": ""}, "workflow": gathering["workflow"], "lines": [fee]},
        )
    )
    assert edited["customer"]["name"] == "Acme Corp" and edited["supplier"]["name"] == gathering["supplier"]["name"]


async def test_update_takes_the_drafts_approval_and_payment_terms_from_the_workflow(http: httpx.AsyncClient) -> None:
    """OpenMeter's PUT of a draft sets its workflow's autoAdvance, draftPeriod, dueAfter and
    collectionMethod from the body, each one the body leaves out to its default
    (billing/httpdriver/invoice.go mergeInvoiceWorkflowFromAPI), and the draft moves on by the new
    settings. Tally kept the snapshot: a draft switched to automatic approval still waited for a
    person, and one given 7 days to pay was due in 30."""
    draft = await fee_draft(http)
    assert draft["statusDetails"]["extendedStatus"] == "draft.manual_approval_needed"
    workflow = draft["workflow"]
    fee = {**line("Fee", {"type": "flat", "amount": "5"}), "id": by_name(draft)["Fee"]["id"]}
    body = {"supplier": draft["supplier"], "customer": draft["customer"], "lines": [fee]}

    invalid = {**workflow, "workflow": {**workflow["workflow"], "invoicing": {"dueAfter": "soon"}}}
    refused = await http.put(f"{INVOICES}/{draft['id']}", json={**body, "workflow": invalid})
    assert refused.status_code == 400 and "workflow.workflow.invoicing.dueAfter" in refused.text, refused.text

    # Sent back as shown, nothing changes.
    same = await ok(await http.put(f"{INVOICES}/{draft['id']}", json={**body, "workflow": workflow}))
    assert same["statusDetails"]["extendedStatus"] == "draft.manual_approval_needed"
    assert same["workflow"]["workflow"]["invoicing"]["autoAdvance"] is False

    # Only dueAfter given: autoAdvance and draftPeriod take their defaults (true, P0D), so the draft
    # is approved at once and the sandbox issues it, due 7 days after its draft period ended.
    terms = {**workflow, "workflow": {**workflow["workflow"], "invoicing": {"dueAfter": "P7D"}}}
    updated = await ok(await http.put(f"{INVOICES}/{draft['id']}", json={**body, "workflow": terms}))
    invoicing = updated["workflow"]["workflow"]["invoicing"]
    assert (invoicing["autoAdvance"], invoicing["draftPeriod"], invoicing["dueAfter"]) == (True, "P0D", "P7D")
    assert updated["status"] == "paid", updated["statusDetails"]
    draft_until = datetime.fromisoformat(updated["draftUntil"].replace("Z", "+00:00"))
    due = datetime.fromisoformat(updated["dueAt"].replace("Z", "+00:00"))
    assert due == draft_until.replace(microsecond=0) + timedelta(days=7)


async def test_deleting_a_gathering_invoice_deletes_its_pending_lines(http: httpx.AsyncClient) -> None:
    """OpenMeter's DELETE /invoices/{id} of a gathering invoice deletes its pending lines, and with
    them the invoice (billing/httpdriver/invoice.go DeleteInvoice -> DeleteGatheringInvoice); one
    already deleted answers 204 again. Tally refused it with 400 (no delete in state gathering)."""
    customer, _ = await metered_customer(http)
    await add_lines(
        http, customer, line("Setup", {"type": "flat", "amount": "5"}), line("Extra", {"type": "flat", "amount": "2"})
    )
    (gathering,) = (await ok(await http.get(INVOICES, params={"customers": customer, "statuses": "gathering"})))[
        "items"
    ]
    deleted = await http.delete(f"{INVOICES}/{gathering['id']}")
    assert deleted.status_code == 204, deleted.text
    left = await ok(await http.get(INVOICES, params={"customers": customer, "statuses": "gathering"}))
    assert left["items"] == []
    nothing = await http.post(f"{INVOICES}/invoice", json={"customerId": customer})
    assert nothing.status_code == 400, nothing.text
    assert (await http.delete(f"{INVOICES}/{gathering['id']}")).status_code == 204
    # New pending lines start a new gathering invoice.
    await add_lines(http, customer, line("Later", {"type": "flat", "amount": "3"}))
    (again,) = (await ok(await http.get(INVOICES, params={"customers": customer, "statuses": "gathering"})))["items"]
    assert again["id"] != gathering["id"] and again["totals"]["total"] == "3"


async def test_invoice_now_with_an_empty_line_filter_invoices_nothing(http: httpx.AsyncClient) -> None:
    """OpenMeter refuses filters.lineIds [] with 400 (InvoicePendingLinesInput.Validate: "must contain
    at least one line ID"); Tally read it as no filter and invoiced every due line, so a client
    whose selection came out empty billed the customer everything pending."""
    customer, _ = await metered_customer(http)
    await add_lines(http, customer, line("Fee", {"type": "flat", "amount": "5"}))
    refused = await http.post(f"{INVOICES}/invoice", json={"customerId": customer, "filters": {"lineIds": []}})
    assert refused.status_code == 400 and "filters.lineIds" in refused.text, refused.text
    assert await gathering_total(http, customer) == "5"
    (made,) = await invoice_now(http, customer)  # without filters: every due line
    assert made["totals"]["total"] == "5"


def _refusal(response: httpx.Response, code: str) -> None:
    """A refused invoice action as OpenMeter's billing answers it (billing.EncodeValidationIssues):
    400 problem+json with the issue's code, message and severity at the top of `extensions`, and
    Tally's `validationErrors` listing the same issue."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    extensions = problem["extensions"]
    assert extensions["code"] == code and extensions["severity"] == "critical", problem
    assert extensions["message"] and extensions["message"] in problem["detail"], problem
    assert [v["code"] for v in extensions["validationErrors"]] == [code], problem


async def test_refused_actions_carry_openmeters_codes(http: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
    """Each kind of refused action, through Envoy and over gRPC, names OpenMeter's code: a client
    written against OpenMeter branches on `extensions.code` (invoice_action_not_available, or
    invoice_cannot_advance for an advance, as billing/service/invoice.go refuses them)."""
    draft = await fee_draft(http)
    iid = draft["id"]
    # A draft waiting for approval: nothing to advance, nothing failed to retry, not issued to void.
    _refusal(await http.post(f"{INVOICES}/{iid}/advance"), "invoice_cannot_advance")
    _refusal(await http.post(f"{INVOICES}/{iid}/retry"), "invoice_action_not_available")
    _refusal(await http.post(f"{INVOICES}/{iid}/void", json={"reason": "too early"}), "invoice_action_not_available")
    paid = await ok(await http.post(f"{INVOICES}/{iid}/approve"))
    assert paid["status"] == "paid"
    # Paid: approving again, deleting or voiding it is refused alike.
    _refusal(await http.post(f"{INVOICES}/{iid}/approve"), "invoice_action_not_available")
    _refusal(await http.delete(f"{INVOICES}/{iid}"), "invoice_action_not_available")
    _refusal(await http.post(f"{INVOICES}/{iid}/void", json={"reason": "late"}), "invoice_action_not_available")
    _refusal(await http.post(f"{INVOICES}/{iid}/snapshot-quantities"), "invoice_action_not_available")

    # gRPC: INVALID_ARGUMENT with the code in ErrorInfo's metadata, as a conflict's code travels.
    stub = invoices_pb2_grpc.InvoiceServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ApproveInvoice(invoices_pb2.InvoiceActionRequest(invoice_id=iid))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = next(
        status_pb2.Status.FromString(v)
        for k, v in refused.value.trailing_metadata() or ()
        if k == "grpc-status-details-bin"
    )
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in details.details)
    assert info.metadata["code"] == "invoice_action_not_available", info
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.GetInvoice(invoices_pb2.GetInvoiceRequest(invoice_id="01J0000000000000000000NOPE"))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    details = next(
        status_pb2.Status.FromString(v)
        for k, v in unknown.value.trailing_metadata() or ()
        if k == "grpc-status-details-bin"
    )
    assert any(d.Unpack(info) for d in details.details) and info.metadata["code"] == "invoice_not_found", info


async def test_billing_validation_failures_carry_openmeters_codes(http: httpx.AsyncClient) -> None:
    """Invoicing's refusals name OpenMeter's codes at the top of the problem's extensions, with the
    status OpenMeter answers: an unknown invoice is 404 invoice_not_found, nothing to invoice is
    400 invoice_create_no_lines, a listed line that cannot be invoiced 400 invoice_lines_not_billable."""
    unknown = await http.get(f"{INVOICES}/01J0000000000000000000NOPE")
    assert unknown.status_code == 404 and unknown.json()["extensions"]["code"] == "invoice_not_found", unknown.text
    customer, _ = await metered_customer(http)
    nothing = await http.post(f"{INVOICES}/invoice", json={"customerId": customer})
    assert nothing.status_code == 400, nothing.text
    assert nothing.json()["extensions"]["code"] == "invoice_create_no_lines", nothing.text
    await add_lines(http, customer, line("Setup", {"type": "flat", "amount": "5"}))
    stranger = await http.post(f"{INVOICES}/invoice", json={"customerId": customer, "filters": {"lineIds": ["nope"]}})
    assert stranger.status_code == 400, stranger.text
    problem = stranger.json()
    assert problem["extensions"]["code"] == "invoice_lines_not_billable", problem
    assert problem["extensions"]["validationErrors"][0]["field"] == "filters.lineIds[0]", problem
