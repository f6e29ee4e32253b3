"""The Python SDK's example, run as a user runs it, against a running Tally."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from decimal import Decimal

import grpc
import httpx
import pytest

import tally_sdk
from tally.v1 import meters_pb2, meters_pb2_grpc
from tests.e2e.test_invoices_api import INVOICES, add_lines, custom_invoicing_customer, invoice_now, line, ok
from tests.support.barrier import settle_grpc
from tests.support.services import ROOT
from tests.support.stack import TallyProcess

EXAMPLE = ROOT / "sdk" / "python" / "examples" / "quickstart.py"
EXPECTED = ["customer-1 gpt-4o 100", "customer-1 gpt-4o-mini 20", "customer-2 gpt-4o 7"]


def run_example(tally: TallyProcess) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--server", tally.grpc_target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


async def stored_totals(tally: TallyProcess) -> list[str]:
    """The meter's totals once everything sent before is through the sink (the example's own query
    runs right after its ingest, before duplicates on a Kafka bus would have been consumed)."""
    async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
        await settle_grpc(channel, partitions=tally.partitions)
        response = await meters_pb2_grpc.MeterServiceStub(channel).QueryMeter(
            meters_pb2.QueryMeterRequest(meter_id_or_slug="sdk_example_tokens", group_by=["subject", "model"])
        )
    rows = sorted((row.subject, row.group_by["model"], row.value) for row in response.data)
    return [f"{subject} {model} {value:g}" for subject, model, value in rows]


async def test_example_ingests_and_queries(tally: TallyProcess) -> None:
    first = await asyncio.to_thread(run_example, tally)
    assert "ingested 3 events" in first
    assert first[-3:] == EXPECTED
    # Fixed event ids: a second run is deduplicated by the server, the totals do not move.
    second = await asyncio.to_thread(run_example, tally)
    assert "created meter sdk_example_tokens" not in second
    assert second[-3:] == EXPECTED
    assert await stored_totals(tally) == EXPECTED


async def test_sdk_invoices_from_pending_lines_to_paid(tally: TallyProcess) -> None:
    """The SDK's invoice calls, through the sandbox (the default profile advances automatically)."""
    key = f"sdk_invoices_{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=tally.rest_url, timeout=30) as http:
        created = await http.post(
            "/api/v1/customers", json={"name": "SDK", "key": key, "usageAttribution": {"subjectKeys": [key]}}
        )
        assert created.status_code == 201, created.text
    customer = created.json()["id"]
    period = {"from": "2025-11-01T00:00:00Z", "to": "2025-12-01T00:00:00Z"}
    fee = {
        "name": "Fee",
        "period": period,
        "invoiceAt": period["to"],
        "rateCard": {"price": {"type": "flat", "amount": "12.34"}},
    }
    async with tally_sdk.Client(tally.grpc_target) as client:
        pending = await client.create_pending_lines(key, "USD", [fee, {**fee, "name": "Second fee"}])
        assert pending.invoice.status == "gathering" and len(pending.lines) == 2
        (invoice,) = await client.invoice_now(customer, line_ids=[pending.lines[0].id])
        assert invoice.status == "paid" and Decimal(invoice.totals.total) == Decimal("12.34")
        fetched = await client.get_invoice(invoice.id)
        assert [x.name for x in fetched.lines] == ["Fee"]
        listed = await client.list_invoices(customers=[customer])
        assert {i.status for i in listed.items} == {"paid", "gathering"}
        # A paid invoice is final: no void (it would need a credit note), no delete, no retry.
        with pytest.raises(tally_sdk.InvalidArgumentError):
            await client.void_invoice(invoice.id, "duplicate")
        with pytest.raises(tally_sdk.InvalidArgumentError):
            await client.retry_invoice(invoice.id)
        # The line left on the gathering invoice, invoiced next.
        (rest,) = await client.invoice_now(customer, progressive_billing_override=False)
        assert rest.status == "paid" and Decimal(rest.totals.total) == Decimal("12.34")


async def test_sdk_voids_an_invoice_to_bill_it_again(tally: TallyProcess) -> None:
    """`void_invoice(..., bill_again=True)` sends OpenMeter's `pending` action: the invoice's fee
    goes back to the gathering invoice, due when asked; without it the fee is discarded."""
    async with httpx.AsyncClient(base_url=tally.rest_url, timeout=30) as http:
        customer, _ = await custom_invoicing_customer(http)
        issued = []
        for name in ("Licence", "Setup"):
            await add_lines(http, customer, line(name, {"type": "flat", "amount": "40"}))
            (invoice,) = await invoice_now(http, customer)
            apps = "/api/v1/apps/custom-invoicing"
            await ok(await http.post(f"{apps}/{invoice['id']}/draft/synchronized", json={}), 204)
            await ok(await http.post(f"{apps}/{invoice['id']}/issuing/synchronized", json={}), 204)
            issued.append(invoice["id"])
        async with tally_sdk.Client(tally.grpc_target) as client:
            with pytest.raises(ValueError):
                await client.void_invoice(issued[0], "x", next_invoice_at="2030-01-01T00:00:00Z")
            again = await client.void_invoice(
                issued[0], "wrong entity", bill_again=True, next_invoice_at="2030-01-01T00:00:00Z"
            )
            forgiven = await client.void_invoice(issued[1], "free setup")
            assert (again.status, forgiven.status) == ("voided", "voided")
        found = await ok(
            await http.get(INVOICES, params={"customers": customer, "statuses": "gathering", "expand": "lines"})
        )
        (gathering,) = found["items"]
        assert [(x["name"], x["invoiceAt"]) for x in gathering["lines"]] == [("Licence", "2030-01-01T00:00:00Z")]
