"""Active windows and subscription-managed entitlements on the wire: REST through Envoy, OpenMeter's
official Python SDK, and gRPC.

- A value at a time before the entitlement existed: v2 (and the v1 customer path) answer
  {"hasAccess": false}, the v1 subject path by feature key 404, by id {"hasAccess": false}
  (OpenMeter's GetEntitlementOfCustomerAt + IsActive).
- A subscription-managed entitlement (created through the domain API subscriptions call, on the
  same database) shows activeFrom, activeTo and annotations {"subscription.id": ...} in both API
  versions; the public API answers 403 to delete, override and grant.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import grpc
import httpx
import pytest
from corehttp.exceptions import HttpResponseError
from openmeter import Client

from adapters.postgres.customers import PostgresCustomerRepository, PostgresSubjectRepository
from adapters.postgres.db import create_engine, session_factory
from adapters.postgres.entitlements import (
    PostgresEntitlementRepository,
    PostgresGrantRepository,
    PostgresSnapshotRepository,
)
from adapters.postgres.features import PostgresFeatureRepository
from adapters.postgres.meters import PostgresMeterRepository
from domain.catalog.service import FeatureService
from domain.customers.service import CustomerService, SubjectService
from domain.entitlements.models import EntitlementInput, RecurrenceInput
from domain.entitlements.service import EntitlementService
from domain.metering.ports import EventStore
from tally.v1 import entitlements_pb2 as pb
from tally.v1 import entitlements_pb2_grpc
from tests.e2e.test_entitlements import JSON, customer, eventually_value, feature, ingest, meter, minute, ok
from tests.support.metering import cloudevent, rfc3339
from tests.support.stack import TallyProcess

NO_ACCESS = {"hasAccess": False}


async def test_value_before_the_entitlement_existed(http: httpx.AsyncClient, tally: TallyProcess) -> None:
    slug = await meter(http, "SUM")
    f = await feature(http, slug)
    c = await customer(http)
    key = c["key"]
    now = minute(datetime.now(UTC))
    body = {
        "type": "metered",
        "featureKey": f["key"],
        "usagePeriod": {"interval": "DAY", "anchor": rfc3339(now - timedelta(hours=6))},
        "measureUsageFrom": rfc3339(now - timedelta(hours=2)),
        "issue": {"amount": 20},
        # OpenMeter prunes these from a public create: the entitlement is active from now, no end.
        "activeFrom": rfc3339(now + timedelta(days=3)),
        "activeTo": rfc3339(now + timedelta(days=4)),
    }
    ent = await ok(await http.post(f"/api/v2/customers/{key}/entitlements", json=body), 201)
    assert ent["activeFrom"] == ent["createdAt"] and "activeTo" not in ent
    await ingest(http, [cloudevent(slug, key, {"value": 4}, time=now - timedelta(hours=1))])
    v2 = f"/api/v2/customers/{key}/entitlements"
    await eventually_value(http, f"{v2}/{f['key']}", {"hasAccess": True, "balance": 16, "usage": 4})

    before = rfc3339(datetime.fromisoformat(ent["createdAt"].replace("Z", "+00:00")) - timedelta(minutes=30))
    # Usage measured from before creation counts now, but at a time before creation there was no
    # entitlement: exactly {"hasAccess": false}, no balance.
    for path in (f"{v2}/{f['key']}", f"{v2}/{ent['id']}", f"/api/v1/customers/{key}/entitlements/{f['key']}"):
        assert await ok(await http.get(f"{path}/value", params={"time": before})) == NO_ACCESS, path
    v1 = f"/api/v1/subjects/{key}/entitlements"
    assert await ok(await http.get(f"{v1}/{ent['id']}/value", params={"time": before})) == NO_ACCESS
    missing = await http.get(f"{v1}/{f['key']}/value", params={"time": before})
    assert missing.status_code == 404, missing.text
    assert missing.headers["content-type"].startswith("application/problem+json")
    after = await ok(await http.get(f"{v1}/{f['key']}/value", params={"time": rfc3339(now + timedelta(minutes=1))}))
    assert (after["hasAccess"], after["balance"], after["usage"]) == (True, 16, 4)

    # OpenMeter's SDK, unchanged.
    def sdk() -> None:
        client = Client(endpoint=tally.rest_url)
        at = datetime.fromisoformat(before.replace("Z", "+00:00"))
        got = client.customer_entitlement_v2.get_customer_entitlement_value(key, f["key"], time=at)
        assert got.has_access is False and got.balance is None
        v1_value = client.customer_entitlement.get_customer_entitlement_value(key, f["key"], time=at)
        assert v1_value.has_access is False and v1_value.balance is None
        # (The SDK has no v1 subject-scoped value call; REST above covers it.)

    await asyncio.to_thread(sdk)

    # gRPC.
    async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
        stub = entitlements_pb2_grpc.EntitlementServiceStub(channel)
        request = pb.GetCustomerEntitlementValueRequest(customer_id_or_key=key, entitlement_id_or_feature_key=f["key"])
        request.time.FromDatetime(datetime.fromisoformat(before.replace("Z", "+00:00")))
        value = await stub.GetCustomerEntitlementValue(request)
        assert value.has_access is False and not value.HasField("balance")
        subject_request = pb.GetSubjectEntitlementValueRequest(
            subject_id_or_key=key, entitlement_id_or_feature_key=f["key"]
        )
        subject_request.time.CopyFrom(request.time)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetSubjectEntitlementValue(subject_request)
        assert error.value.code() is grpc.StatusCode.NOT_FOUND


def _service(postgres_url: str) -> tuple[EntitlementService, Any]:
    """The domain service subscriptions call, on the test stack's database. Creating an entitlement
    reads no usage, so no event store is wired."""
    engine = create_engine(postgres_url, pool_size=1)
    sessions = session_factory(engine)
    meters = PostgresMeterRepository(sessions)
    customers = CustomerService(PostgresCustomerRepository(sessions))
    service = EntitlementService(
        PostgresEntitlementRepository(sessions),
        PostgresGrantRepository(sessions),
        PostgresSnapshotRepository(sessions),
        customers,
        SubjectService(PostgresSubjectRepository(sessions)),
        FeatureService(PostgresFeatureRepository(sessions), meters),
        meters,
        cast(EventStore, None),
    )
    return service, engine


async def test_subscription_managed_entitlement_on_the_wire(http: httpx.AsyncClient, tally: TallyProcess) -> None:
    assert tally.postgres_url is not None
    slug = await meter(http, "SUM")
    f = await feature(http, slug)
    c = await customer(http)
    key = c["key"]
    start = minute(datetime.now(UTC)) + timedelta(hours=1)
    end = start + timedelta(days=30)
    service, engine = _service(tally.postgres_url)
    try:
        owner = await service.customer("default", key)
        managed = await service.create_managed(
            "default",
            owner,
            EntitlementInput(
                type="metered",
                feature_key=f["key"],
                usage_period=RecurrenceInput("MONTH"),
                issue_after_reset=100,
                v2=True,
            ),
            subscription_id="sub_e2e",
            active_from=start,
            active_to=end,
        )
    finally:
        await engine.dispose()

    v2 = f"/api/v2/customers/{key}/entitlements"
    v1 = f"/api/v1/subjects/{key}/entitlements"
    for path in (f"{v2}/{managed.id}", f"{v1}/{managed.id}", f"/api/v2/entitlements/{managed.id}"):
        got = await ok(await http.get(path))
        assert got["activeFrom"] == rfc3339(start) and got["activeTo"] == rfc3339(end), path
        assert got["annotations"] == {"subscription.id": "sub_e2e"}, path
        assert got["measureUsageFrom"] == rfc3339(start)

    # Not yet active: by key nothing is active now (v2: no access), by id no access either.
    assert await ok(await http.get(f"{v2}/{f['key']}/value")) == NO_ACCESS
    assert await ok(await http.get(f"{v2}/{managed.id}/value")) == NO_ACCESS
    assert (await http.get(f"{v1}/{f['key']}/value")).status_code == 404
    inside = await ok(await http.get(f"{v2}/{f['key']}/value", params={"time": rfc3339(start + timedelta(hours=1))}))
    assert (inside["hasAccess"], inside["balance"], inside["usage"]) == (True, 100, 0)

    # The public API may not delete, override or grant to it.
    grant = {"amount": 5, "effectiveAt": rfc3339(start), "expiration": {"duration": "DAY", "count": 1}}
    refused = [
        await http.delete(f"{v2}/{managed.id}"),
        await http.delete(f"{v1}/{managed.id}"),
        await http.post(f"{v2}/{managed.id}/grants", json=grant, headers=JSON),
        await http.post(f"{v1}/{managed.id}/grants", json=grant, headers=JSON),
        await http.put(f"{v2}/{managed.id}/override", json={"type": "boolean", "featureKey": f["key"]}, headers=JSON),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    # A public entitlement of the feature would overlap the scheduled window: 409 naming it.
    clash = await http.post(f"{v2}", json={"type": "boolean", "featureKey": f["key"]})
    assert clash.status_code == 409 and clash.json()["extensions"]["conflictingEntityId"] == managed.id

    def sdk() -> None:
        client = Client(endpoint=tally.rest_url)
        # The SDK hands the entitlement union back as its JSON object.
        got = client.entitlements_v2.get(managed.id)
        assert got["activeFrom"] == rfc3339(start) and got["activeTo"] == rfc3339(end)
        assert got["annotations"] == {"subscription.id": "sub_e2e"}
        with pytest.raises(HttpResponseError) as forbidden:
            client.customer_entitlements_v2.delete(key, managed.id)
        assert forbidden.value.status_code == 403

    await asyncio.to_thread(sdk)

    async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
        stub = entitlements_pb2_grpc.EntitlementServiceStub(channel)
        got = await stub.GetEntitlementV2(pb.GetEntitlementByIdRequest(entitlement_id=managed.id))
        assert got.active_from.ToDatetime(UTC) == start and got.active_to.ToDatetime(UTC) == end
        assert dict(got.annotations) == {"subscription.id": "sub_e2e"}
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.DeleteCustomerEntitlement(
                pb.CustomerEntitlementRequest(customer_id_or_key=key, entitlement_id_or_feature_key=managed.id)
            )
        assert error.value.code() is grpc.StatusCode.PERMISSION_DENIED
