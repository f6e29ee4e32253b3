"""Remaining OpenMeter entitlement behaviours over REST (Envoy), OpenMeter's Python SDK and gRPC.

- A reset's `preserveOverage` is the request's, falling back to the entitlement's
  preserveOverageAtReset (OpenMeter's metered/reset.go). OpenMeter's reset example: grants of 1000
  (max rollover 1000) and 1000 (max and min rollover 500), usage 2600; a reset that preserves the
  overage leaves balance 0 and overage 100, one that does not leaves balance 500.
- v2 create with both `issue` (or issueAfterReset) and `grants` is refused with 400.
- Features carry `unitCost` (manual or llm), validated as OpenMeter validates it.
- What would orphan data: a customer with an active entitlement cannot be deleted (409, OpenMeter's
  customer validator); archiving a feature is allowed, its entitlements keep working, new ones on
  it are refused (404: not among live features).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from corehttp.exceptions import HttpResponseError
from openmeter import Client
from openmeter.models import FeatureCreateInputs, FeatureLLMUnitCost, FeatureManualUnitCost

from tally.v1 import customers_pb2, customers_pb2_grpc, entitlements_pb2_grpc, features_pb2, features_pb2_grpc
from tally.v1 import entitlements_pb2 as pb
from tests.e2e.test_entitlements import customer, eventually_value, feature, ingest, meter, minute, ok
from tests.support.metering import cloudevent, rfc3339, unique
from tests.support.stack import TallyProcess


def fields(response: httpx.Response) -> set[str]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return {v["field"] for v in response.json()["extensions"]["validationErrors"]}


# --- reset: preserveOverage from the request ---------------------------------------------------


async def test_reset_preserve_overage_comes_from_the_request(http: httpx.AsyncClient, tally: TallyProcess) -> None:
    slug = await meter(http, "SUM")
    f = await feature(http, slug)
    now = minute(datetime.now(UTC))
    start, used_at, reset_at = now - timedelta(hours=3), now - timedelta(hours=2), now - timedelta(hours=1)
    grants = [
        {"amount": 1000, "effectiveAt": rfc3339(start), "priority": 1, "maxRolloverAmount": 1000},
        {
            "amount": 1000,
            "effectiveAt": rfc3339(start),
            "priority": 3,
            "maxRolloverAmount": 500,
            "minRolloverAmount": 500,
        },
    ]

    async def entitlement(preserve_at_reset: bool) -> tuple[str, str, str]:
        c = await customer(http)
        body: dict[str, Any] = {
            "type": "metered",
            "featureKey": f["key"],
            "usagePeriod": {"interval": "MONTH", "anchor": rfc3339(start)},
            "measureUsageFrom": rfc3339(start),
            "preserveOverageAtReset": preserve_at_reset,
            "grants": grants,
        }
        ent = await ok(await http.post(f"/api/v2/customers/{c['key']}/entitlements", json=body), 201)
        return c["key"], ent["id"], f"/api/v2/customers/{c['key']}/entitlements/{ent['id']}"

    # (entitlement's preserveOverageAtReset, the request's preserveOverage or None, expected).
    cases = [
        (False, True, (0, 100)),  # the request asks to preserve: OpenMeter's example
        (False, None, (500, 0)),  # nothing asked: the entitlement's (not preserved)
        (True, False, (500, 0)),  # the request beats the entitlement's
        (True, None, (0, 100)),  # nothing asked: the entitlement's (preserved)
    ]
    made = [await entitlement(preserve) for preserve, _, _ in cases]
    await ingest(http, [cloudevent(slug, key, {"value": 2600}, time=used_at) for key, _, _ in made])
    for _, _, path in made:
        await eventually_value(http, path, {"usage": 2600, "balance": 0, "overage": 600})

    async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
        stub = entitlements_pb2_grpc.EntitlementServiceStub(channel)
        for i, ((_, asked, _), (key, ent_id, path)) in enumerate(zip(cases, made, strict=True)):
            body: dict[str, Any] = {"effectiveAt": rfc3339(reset_at)}
            if asked is not None:
                body["preserveOverage"] = asked
            if i == 0:  # v2 REST
                response = await http.post(f"{path}/reset", json=body)
            elif i == 1:  # v1 subject-scoped REST
                response = await http.post(f"/api/v1/subjects/{key}/entitlements/{ent_id}/reset", json=body)
            else:  # gRPC
                request = pb.ResetCustomerEntitlementUsageRequest(
                    customer_id_or_key=key, entitlement_id_or_feature_key=ent_id
                )
                request.effective_at.FromDatetime(reset_at)
                if asked is not None:
                    request.preserve_overage = asked
                await stub.ResetCustomerEntitlementUsage(request)
                continue
            assert response.status_code == 204, response.text

    for (_, _, (balance, overage)), (_, _, path) in zip(cases, made, strict=True):
        got = await ok(await http.get(f"{path}/value"))
        assert (got["usage"], got["balance"], got["overage"]) == (0, balance, overage), path
        # History agrees: the reset's rollover segment carries the overage it was asked to.
        history = await ok(await http.get(f"{path}/history", params={"windowSize": "HOUR", "from": rfc3339(start)}))
        rollover = [s for s in history["burndownHistory"] if s["period"]["from"] == s["period"]["to"]]
        assert rollover and rollover[-1]["overage"] == overage, history["burndownHistory"]


# --- v2 create: issue and grants together ----------------------------------------------------


async def test_v2_create_refuses_issue_with_grants(http: httpx.AsyncClient, tally: TallyProcess) -> None:
    slug = await meter(http, "SUM")
    f = await feature(http, slug)
    c = await customer(http)
    now = minute(datetime.now(UTC))
    path = f"/api/v2/customers/{c['key']}/entitlements"
    base = {"type": "metered", "featureKey": f["key"], "usagePeriod": {"interval": "MONTH"}}
    # A minute on: the entitlement's measurement starts at the server's now, which a grant may not precede.
    grant = {"amount": 10, "effectiveAt": rfc3339(now + timedelta(minutes=1))}
    for extra in ({"issue": {"amount": 100}}, {"issueAfterReset": 100}):
        refused = await http.post(path, json={**base, **extra, "grants": [grant]})
        assert refused.status_code == 400, refused.text
        assert "grants" in fields(refused)
    # Nothing was created: either alone is fine.
    assert (await ok(await http.get(path)))["totalCount"] == 0
    created = await ok(await http.post(path, json={**base, "grants": [grant]}), 201)
    assert created["type"] == "metered"

    async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
        stub = entitlements_pb2_grpc.EntitlementServiceStub(channel)
        other = await customer(http)
        request = pb.CreateCustomerEntitlementRequest(customer_id_or_key=other["key"])
        request.entitlement.type = "metered"
        request.entitlement.feature_key = f["key"]
        request.entitlement.usage_period.interval = "MONTH"
        request.entitlement.issue.amount = 5
        request.entitlement.grants.add(amount=10).effective_at.FromDatetime(now)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.CreateCustomerEntitlement(request)
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT


# --- feature unitCost --------------------------------------------------------------------------


async def test_feature_unit_cost_manual_and_llm(http: httpx.AsyncClient, tally: TallyProcess) -> None:
    slug = await meter(
        http, "SUM", groupBy={"provider": "$.provider", "model": "$.model", "token_type": "$.token_type"}
    )
    manual = await feature(http, slug, unitCost={"type": "manual", "amount": "0.25"})
    assert manual["unitCost"] == {"type": "manual", "amount": "0.25"}
    llm_cost = {"type": "llm", "providerProperty": "provider", "modelProperty": "model", "tokenType": "input"}
    llm = await feature(http, slug, unitCost=llm_cost)
    assert llm["unitCost"] == llm_cost
    static = {"type": "llm", "provider": "openai", "model": "gpt-4o", "tokenTypeProperty": "token_type"}
    assert (await feature(http, slug, unitCost=static))["unitCost"] == static
    plain = await feature(http, slug)
    assert "unitCost" not in plain
    assert (await ok(await http.get(f"/api/v1/features/{manual['id']}")))["unitCost"] == manual["unitCost"]
    listed = {x["key"]: x.get("unitCost") for x in await ok(await http.get("/api/v1/features"))}
    assert listed[llm["key"]] == llm_cost and listed[plain["key"]] is None

    bad: list[tuple[dict[str, Any], str | None, str]] = [
        ({"type": "manual", "amount": "-1"}, slug, "unitCost.amount"),
        ({"type": "manual", "amount": "abc"}, slug, "unitCost.amount"),
        ({"type": "manual"}, slug, "unitCost.amount"),
        ({"type": "flat", "amount": "1"}, slug, "unitCost.type"),
        ({"type": "llm", "providerProperty": "provider", "tokenType": "input"}, slug, "unitCost.model"),
        (
            {"type": "llm", "provider": "openai", "providerProperty": "provider", "model": "m", "tokenType": "input"},
            slug,
            "unitCost.providerProperty",
        ),
        ({"type": "llm", "provider": "openai", "model": "m", "tokenType": "tokens"}, slug, "unitCost.tokenType"),
        (
            {"type": "llm", "provider": "openai", "modelProperty": "nope", "tokenType": "input"},
            slug,
            "unitCost.modelProperty",
        ),
        ({"type": "llm", "provider": "openai", "model": "m", "tokenType": "input"}, None, "unitCost.type"),
    ]
    for cost, meter_slug, field in bad:
        body: dict[str, Any] = {"key": unique("cost"), "name": "cost", "unitCost": cost}
        if meter_slug is not None:
            body["meterSlug"] = meter_slug
        response = await http.post("/api/v1/features", json=body)
        assert response.status_code == 400, (cost, response.text)
        assert field in fields(response), (cost, response.json())

    # OpenMeter's SDK sends and reads it unchanged.
    def sdk() -> None:
        client = Client(endpoint=tally.rest_url)
        made = client.features.create(
            FeatureCreateInputs(
                key=unique("sdk_cost"),
                name="SDK cost",
                meter_slug=slug,
                unit_cost=FeatureManualUnitCost(type="manual", amount="0.002"),
            )
        )
        assert made.unit_cost is not None and made.unit_cost["amount"] == "0.002"
        llm_made = client.features.create(
            FeatureCreateInputs(
                key=unique("sdk_llm"),
                name="SDK llm",
                meter_slug=slug,
                unit_cost=FeatureLLMUnitCost(
                    type="llm", provider="anthropic", model_property="model", token_type="output"
                ),
            )
        )
        assert llm_made.unit_cost["modelProperty"] == "model"
        with pytest.raises(HttpResponseError) as refused:
            client.features.create(
                FeatureCreateInputs(
                    key=unique("sdk_bad"),
                    name="bad",
                    unit_cost=FeatureManualUnitCost(type="manual", amount="-0.5"),
                )
            )
        assert refused.value.status_code == 400

    await asyncio.to_thread(sdk)

    async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
        stub = features_pb2_grpc.FeatureServiceStub(channel)
        got = await stub.GetFeature(features_pb2.GetFeatureRequest(feature_id=llm["id"]))
        assert (got.unit_cost.type, got.unit_cost.provider_property, got.unit_cost.token_type) == (
            "llm",
            "provider",
            "input",
        )
        assert not got.unit_cost.HasField("amount")


# --- what would orphan data --------------------------------------------------------------------


async def test_customer_with_active_entitlements_cannot_be_deleted(
    http: httpx.AsyncClient, tally: TallyProcess
) -> None:
    f = await feature(http, None)
    c = await customer(http)
    ent = await ok(
        await http.post(f"/api/v2/customers/{c['key']}/entitlements", json={"type": "boolean", "featureKey": f["key"]}),
        201,
    )
    refused = await http.delete(f"/api/v1/customers/{c['key']}")
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["detail"] == (
        f"customer {c['id']} still has active entitlements, please remove them before deleting the customer"
    )
    assert (await ok(await http.get(f"/api/v1/customers/{c['id']}")))["key"] == c["key"]

    def sdk() -> None:
        with pytest.raises(HttpResponseError) as conflict:
            Client(endpoint=tally.rest_url).customers.delete(c["id"])
        assert conflict.value.status_code == 409

    await asyncio.to_thread(sdk)
    async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
        stub = customers_pb2_grpc.CustomerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.DeleteCustomer(customers_pb2.DeleteCustomerRequest(customer_id_or_key=c["key"]))
        assert error.value.code() is grpc.StatusCode.ALREADY_EXISTS

    # Once its entitlements are gone, it can go.
    assert (await http.delete(f"/api/v2/customers/{c['key']}/entitlements/{ent['id']}")).status_code == 204
    assert (await http.delete(f"/api/v1/customers/{c['key']}")).status_code == 204


async def test_archived_feature_keeps_its_entitlements_and_refuses_new_ones(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "SUM")
    f = await feature(http, slug)
    c = await customer(http)
    now = minute(datetime.now(UTC))
    body = {
        "type": "metered",
        "featureKey": f["key"],
        "usagePeriod": {"interval": "DAY", "anchor": rfc3339(now - timedelta(hours=2))},
        "measureUsageFrom": rfc3339(now - timedelta(hours=2)),
        "issue": {"amount": 10},
    }
    path = f"/api/v2/customers/{c['key']}/entitlements"
    ent = await ok(await http.post(path, json=body), 201)
    await ingest(http, [cloudevent(slug, c["key"], {"value": 3}, time=now - timedelta(hours=1))])
    await eventually_value(http, f"{path}/{f['key']}", {"hasAccess": True, "balance": 7, "usage": 3})

    assert (await http.delete(f"/api/v1/features/{f['id']}")).status_code == 204
    assert (await http.get(f"/api/v1/features/{f['id']}")).status_code == 404

    # Its entitlement keeps working: by key and id, value, usage after the archive, grants.
    await ingest(http, [cloudevent(slug, c["key"], {"value": 2}, time=now - timedelta(minutes=30))])
    await eventually_value(http, f"{path}/{f['key']}", {"hasAccess": True, "balance": 5, "usage": 5})
    assert (await ok(await http.get(f"{path}/{ent['id']}")))["featureKey"] == f["key"]
    grant = {"amount": 4, "effectiveAt": rfc3339(now - timedelta(hours=2))}
    await ok(await http.post(f"{path}/{ent['id']}/grants", json=grant), 201)
    await eventually_value(http, f"{path}/{ent['id']}", {"balance": 9, "usage": 5})
    v1 = await ok(await http.get(f"/api/v1/subjects/{c['key']}/entitlements/{f['key']}/value"))
    assert (v1["hasAccess"], v1["balance"]) == (True, 9)

    # New entitlements on it are refused (the feature is not found among live ones), by key or id.
    other = await customer(http)
    rest = {k: v for k, v in body.items() if k != "featureKey"}
    for ref in ({"featureKey": f["key"]}, {"featureId": f["id"]}):
        refused = await http.post(f"/api/v2/customers/{other['key']}/entitlements", json={**rest, **ref})
        assert refused.status_code == 404, refused.text


async def test_reset_and_value_before_creation_on_the_kafka_path(tally_kafka: TallyProcess) -> None:
    """The production path (events and announcements through the Kafka-protocol broker; the api
    process serves values from its cache only while in step with the announcements)."""
    async with httpx.AsyncClient(base_url=tally_kafka.rest_url, timeout=30) as http:
        slug = await meter(http, "SUM")
        f = await feature(http, slug)
        c = await customer(http)
        now = minute(datetime.now(UTC))
        start = now - timedelta(hours=3)
        body = {
            "type": "metered",
            "featureKey": f["key"],
            "usagePeriod": {"interval": "MONTH", "anchor": rfc3339(start)},
            "measureUsageFrom": rfc3339(start),
            "grants": [
                {"amount": 1000, "effectiveAt": rfc3339(start), "maxRolloverAmount": 1000},
                {
                    "amount": 1000,
                    "effectiveAt": rfc3339(start),
                    "priority": 3,
                    "maxRolloverAmount": 500,
                    "minRolloverAmount": 500,
                },
            ],
        }
        path = f"/api/v2/customers/{c['key']}/entitlements"
        ent = await ok(await http.post(path, json=body), 201)
        await ingest(http, [cloudevent(slug, c["key"], {"value": 2600}, time=now - timedelta(hours=2))])
        await eventually_value(http, f"{path}/{ent['id']}", {"usage": 2600, "overage": 600})
        reset = {"effectiveAt": rfc3339(now - timedelta(hours=1)), "preserveOverage": True}
        assert (await http.post(f"{path}/{ent['id']}/reset", json=reset)).status_code == 204
        got = await ok(await http.get(f"{path}/{ent['id']}/value"))
        assert (got["usage"], got["balance"], got["overage"]) == (0, 0, 100)
        before = rfc3339(datetime.fromisoformat(ent["createdAt"].replace("Z", "+00:00")) - timedelta(minutes=5))
        assert await ok(await http.get(f"{path}/{f['key']}/value", params={"time": before})) == {"hasAccess": False}
        missing = await http.get(f"/api/v1/subjects/{c['key']}/entitlements/{f['key']}/value", params={"time": before})
        assert missing.status_code == 404
