"""Tenants and API keys from outside: a Tally with auth required, two namespaces, keys of each scope.

Over REST through Envoy and over native gRPC: a key of namespace A reads and writes nothing of
namespace B; an ingest-only key cannot read; a read key cannot write; revoked, missing and garbage
keys are refused; the first admin keys are made with `tally apikeys create` against the database.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tally.v1 import apikeys_pb2, apikeys_pb2_grpc, events_pb2, events_pb2_grpc, meters_pb2, meters_pb2_grpc
from tests.support.barrier import settle
from tests.support.metering import cloudevent, unique
from tests.support.services import ROOT
from tests.support.stack import TallyProcess, create_database, wait_for

TALLY = [sys.executable, "-m", "server.cli"]


def cli(stack: TallyProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`tally ...` with the stack's settings (its database), as an operator on that machine runs it."""
    result = subprocess.run(
        [*TALLY, *args], cwd=ROOT, env=stack.env(), capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def cli_key(stack: TallyProcess, namespace: str, *scopes: str) -> dict[str, Any]:
    args = ["apikeys", "create", "--json", "--namespace", namespace, "--name", f"{namespace} key"]
    for scope in scopes:
        args += ["--scope", scope]
    created: dict[str, Any] = json.loads(cli(stack, *args).stdout)
    return created


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@dataclass
class Tenant:
    namespace: str
    admin: str
    http: httpx.AsyncClient

    def client(self, key: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=str(self.http.base_url), headers=bearer(key), timeout=30)


@pytest.fixture(scope="module")
def secured(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    """Tally with API keys required (on loopback, where the default would be keyless)."""
    url = asyncio.run(create_database())
    stack = TallyProcess(
        data_dir=tmp_path_factory.mktemp("tally-auth"),
        postgres_url=url,
        extra_env={"TALLY_AUTH__REQUIRED": "true"},
    )
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def admin_keys(secured: TallyProcess) -> dict[str, str]:
    # The first keys of two namespaces, made before any key exists: by the CLI, on the database.
    return {
        "tenant_a": cli_key(secured, "tenant_a", "admin")["key"],
        "tenant_b": cli_key(secured, "tenant_b", "admin")["key"],
    }


@pytest_asyncio.fixture
async def tenants(secured: TallyProcess, admin_keys: dict[str, str]) -> AsyncIterator[tuple[Tenant, Tenant]]:
    async with (
        httpx.AsyncClient(base_url=secured.rest_url, headers=bearer(admin_keys["tenant_a"]), timeout=30) as a,
        httpx.AsyncClient(base_url=secured.rest_url, headers=bearer(admin_keys["tenant_b"]), timeout=30) as b,
    ):
        yield Tenant("tenant_a", admin_keys["tenant_a"], a), Tenant("tenant_b", admin_keys["tenant_b"], b)


async def make_key(tenant: Tenant, *scopes: str) -> dict[str, Any]:
    response = await tenant.http.post("/api/v1/tally/api-keys", json={"name": unique("key"), "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["key"].startswith("tly_") and created["namespace"] == tenant.namespace
    return created


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json() if response.content else None


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def populate(tenant: Tenant) -> dict[str, Any]:
    """A meter with counted events, a customer with a subject, a feature and an entitlement."""
    http = tenant.http
    slug = unique("iso")
    meter = await ok(
        await http.post("/api/v1/meters", json={"slug": slug, "eventType": slug, "aggregation": "COUNT"}), 201
    )
    subject = unique("subj")
    events = [cloudevent(slug, subject, {"n": i}) for i in range(3)]
    await ok(
        await http.post(
            "/api/v1/events", content=json.dumps(events), headers={"content-type": "application/cloudevents-batch+json"}
        ),
        204,
    )

    async def counted() -> bool:
        rows = (await ok(await http.get(f"/api/v1/meters/{slug}/query")))["data"]
        return bool(rows) and rows[0]["value"] == 3

    await wait_for(counted, timeout=15)
    customer = await ok(
        await http.post(
            "/api/v1/customers",
            json={"name": subject, "key": subject, "usageAttribution": {"subjectKeys": [subject]}},
        ),
        201,
    )
    feature = await ok(
        await http.post("/api/v1/features", json={"key": unique("feat"), "name": "f", "meterSlug": slug}), 201
    )
    entitlement = await ok(
        await http.post(
            f"/api/v2/customers/{customer['id']}/entitlements",
            json={"type": "metered", "featureKey": feature["key"], "usagePeriod": {"interval": "MONTH"}},
        ),
        201,
    )
    return {
        "slug": slug,
        "meter": meter,
        "subject": subject,
        "customer": customer,
        "feature": feature,
        "entitlement": entitlement,
    }


# --- missing, garbage and revoked keys -------------------------------------------------------


async def test_missing_and_garbage_keys_are_401(secured: TallyProcess) -> None:
    async with httpx.AsyncClient(base_url=secured.rest_url, timeout=30) as http:
        missing = assert_problem(await http.get("/api/v1/meters"), 401)
        assert missing["title"] == "Unauthorized" and "Bearer" in missing["detail"]
        for value in ("Bearer nonsense", "Bearer tly_abcdefghijkl_" + "x" * 40, "Basic dXNlcjpwdw==", "Bearer"):
            assert_problem(await http.get("/api/v1/meters", headers={"authorization": value}), 401)
        ingest = await http.post(
            "/api/v1/events",
            json=cloudevent("x", "s"),
            headers={"content-type": "application/cloudevents+json", "authorization": "Bearer nope"},
        )
        assert_problem(ingest, 401)
    async with grpc.aio.insecure_channel(secured.grpc_target) as channel:
        meters = meters_pb2_grpc.MeterServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer nonsense"),)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await meters.ListMeters(meters_pb2.ListMetersRequest(), metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Health checks stay open (probes carry no key).
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_revoked_key_is_refused_at_once(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    created = await make_key(a, "read")
    async with a.client(created["key"]) as http:
        await ok(await http.get("/api/v1/meters"))
        assert (await a.http.delete(f"/api/v1/tally/api-keys/{created['id']}")).status_code == 204
        assert_problem(await http.get("/api/v1/meters"), 401)
    listed = await ok(await a.http.get("/api/v1/tally/api-keys"))
    assert created["id"] not in {k["id"] for k in listed["items"]}
    with_revoked = await ok(await a.http.get("/api/v1/tally/api-keys", params={"includeRevoked": "true"}))
    revoked = next(k for k in with_revoked["items"] if k["id"] == created["id"])
    assert revoked["revokedAt"] and "key" not in revoked


async def test_cli_revocation_reaches_the_server(secured: TallyProcess, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    created = await make_key(a, "read")
    async with grpc.aio.insecure_channel(secured.grpc_target) as channel:
        meters = meters_pb2_grpc.MeterServiceStub(channel)
        metadata = (("authorization", f"Bearer {created['key']}"),)
        await meters.ListMeters(meters_pb2.ListMetersRequest(), metadata=metadata, timeout=10)
        # Another process (the CLI, on the database) revokes: the server's authentication cache
        # holds the key for at most its TTL (tests/unit/test_auth.py checks the bound with a clock).
        out = (await asyncio.to_thread(cli, secured, "apikeys", "revoke", created["prefix"])).stdout
        assert created["id"] in out

        async def refused() -> bool:
            try:
                await meters.ListMeters(meters_pb2.ListMetersRequest(), metadata=metadata, timeout=10)
            except grpc.aio.AioRpcError as error:
                return error.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

        await wait_for(refused, timeout=30, interval=0.1)
        # Once refused, refused for good: no cache hands the revoked key back.
        for _ in range(5):
            assert await refused()


def test_cli_lists_keys_without_secrets(secured: TallyProcess, admin_keys: dict[str, str]) -> None:
    lines = cli(secured, "apikeys", "list", "--json", "--namespace", "tenant_b").stdout.splitlines()
    keys = [json.loads(line) for line in lines]
    assert keys and all(k["namespace"] == "tenant_b" for k in keys)
    assert all("key" not in k and k["prefix"].startswith("tly_") for k in keys)
    assert admin_keys["tenant_b"].startswith(keys[-1]["prefix"] + "_")
    bad = cli(secured, "apikeys", "create", "--namespace", "Not A Namespace", check=False)
    assert bad.returncode == 1 and "namespace" in bad.stderr


# --- scopes ----------------------------------------------------------------------------------


async def test_scopes(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    slug = unique("scoped")
    await ok(await a.http.post("/api/v1/meters", json={"slug": slug, "eventType": slug, "aggregation": "COUNT"}), 201)
    ingest_key, read_key, write_key = await make_key(a, "ingest"), await make_key(a, "read"), await make_key(a, "write")
    event = cloudevent(slug, "s1")
    ce = {"content-type": "application/cloudevents+json"}
    async with a.client(ingest_key["key"]) as http:
        await ok(await http.post("/api/v1/events", json=event, headers=ce), 204)
        forbidden = assert_problem(await http.get("/api/v1/meters"), 403)
        assert "read" in forbidden["detail"]
        assert_problem(await http.get(f"/api/v1/meters/{slug}/query"), 403)
        assert_problem(await http.get("/api/v1/events"), 403)
        assert_problem(
            await http.post("/api/v1/meters", json={"slug": unique("x"), "eventType": "x", "aggregation": "COUNT"}), 403
        )
    async with a.client(read_key["key"]) as http:
        await ok(await http.get("/api/v1/meters"))
        await ok(await http.get(f"/api/v1/meters/{slug}/query"))
        assert_problem(await http.post("/api/v1/events", json=cloudevent(slug, "s1"), headers=ce), 403)
        assert_problem(await http.delete(f"/api/v1/meters/{slug}"), 403)
        assert_problem(await http.post("/api/v1/customers", json={"name": "x", "key": unique("c")}), 403)
        assert_problem(await http.get("/api/v1/tally/api-keys"), 403)
    async with a.client(write_key["key"]) as http:
        await ok(await http.put(f"/api/v1/meters/{slug}", json={"name": "renamed"}))
        assert_problem(await http.post("/api/v1/events", json=cloudevent(slug, "s1"), headers=ce), 403)
        assert_problem(await http.post("/api/v1/tally/api-keys", json={"name": "x", "scopes": ["admin"]}), 403)


async def test_scopes_over_grpc(secured: TallyProcess, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    ingest_key = await make_key(a, "ingest")
    metadata = (("authorization", f"Bearer {ingest_key['key']}"),)
    async with grpc.aio.insecure_channel(secured.grpc_target) as channel:
        events = events_pb2_grpc.EventServiceStub(channel)
        request = events_pb2.IngestEventsRequest()
        cloud = request.events.add()
        cloud.id, cloud.source, cloud.type, cloud.subject = unique("e"), "grpc", "grpc_scoped", "s1"
        response = await events.IngestEvents(request, metadata=metadata, timeout=10)
        assert response.accepted == 1
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await events.ListEvents(events_pb2.ListEventsRequest(), metadata=metadata, timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        keys = apikeys_pb2_grpc.ApiKeyServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as admin_only:
            await keys.ListApiKeys(apikeys_pb2.ListApiKeysRequest(), metadata=metadata, timeout=10)
        assert admin_only.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- isolation -------------------------------------------------------------------------------


async def test_namespace_a_sees_nothing_of_b_over_rest(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    theirs = await populate(b)
    mine = await populate(a)
    http = a.http
    slug, meter_id = theirs["slug"], theirs["meter"]["id"]

    # Meters: list, get by slug or ID, query, subjects.
    assert slug not in {m["slug"] for m in await ok(await http.get("/api/v1/meters"))}
    assert mine["slug"] in {m["slug"] for m in await ok(await http.get("/api/v1/meters"))}
    for path in (
        f"/api/v1/meters/{slug}",
        f"/api/v1/meters/{meter_id}",
        f"/api/v1/meters/{slug}/query",
        f"/api/v1/meters/{meter_id}/query",
        f"/api/v1/meters/{slug}/subjects",
    ):
        assert_problem(await http.get(path), 404)
    assert_problem(await http.post(f"/api/v1/meters/{slug}/query", json={}), 404)

    # Events: B's subject is not among A's events, in v1 or v2.
    listed = await ok(await http.get("/api/v1/events", params={"subject": theirs["subject"]}))
    assert listed == []
    assert all(e["event"]["subject"] != theirs["subject"] for e in await ok(await http.get("/api/v1/events")))
    v2 = await ok(await http.get("/api/v2/events"))
    assert all(e["event"]["subject"] != theirs["subject"] for e in v2["items"])

    # Customers, subjects, features, entitlements and grants.
    customer, feature, entitlement = theirs["customer"], theirs["feature"], theirs["entitlement"]
    for path in (
        f"/api/v1/customers/{customer['id']}",
        f"/api/v1/customers/{customer['key']}",
        f"/api/v1/subjects/{theirs['subject']}",
        f"/api/v1/features/{feature['id']}",
        f"/api/v2/entitlements/{entitlement['id']}",
        f"/api/v1/entitlements/{entitlement['id']}",
        f"/api/v2/customers/{customer['id']}/entitlements/{feature['key']}",
        f"/api/v2/customers/{customer['id']}/entitlements/{feature['key']}/value",
    ):
        assert_problem(await http.get(path), 404)
    customers = await ok(await http.get("/api/v1/customers", params={"pageSize": 1000}))
    assert customer["id"] not in {c["id"] for c in customers["items"]}
    assert feature["id"] not in {f["id"] for f in await ok(await http.get("/api/v1/features"))}
    entitlements = await ok(await http.get("/api/v2/entitlements", params={"pageSize": 1000}))
    assert entitlement["id"] not in {e["id"] for e in entitlements["items"]}
    keys = await ok(await http.get("/api/v1/tally/api-keys"))
    assert {k["namespace"] for k in keys["items"]} == {"tenant_a"}

    # Writes: nothing of B can be changed from A.
    assert_problem(await http.put(f"/api/v1/meters/{slug}", json={"name": "hijacked"}), 404)
    assert_problem(await http.delete(f"/api/v1/meters/{slug}"), 404)
    assert_problem(await http.delete(f"/api/v1/customers/{customer['id']}"), 404)
    assert_problem(await http.delete(f"/api/v1/features/{feature['id']}"), 404)
    assert_problem(
        await http.post(
            f"/api/v2/customers/{customer['id']}/entitlements/{feature['key']}/grants",
            json={"amount": 100, "effectiveAt": "2024-01-01T00:00:00Z", "expiration": {"duration": "DAY", "count": 1}},
        ),
        404,
    )
    b_keys = await ok(await b.http.get("/api/v1/tally/api-keys"))
    assert_problem(await http.delete(f"/api/v1/tally/api-keys/{b_keys['items'][0]['id']}"), 404)
    # Events A sends with B's event type and subject count in A, never in B.
    await ok(
        await http.post(
            "/api/v1/events",
            json=cloudevent(slug, theirs["subject"]),
            headers={"content-type": "application/cloudevents+json"},
        ),
        204,
    )
    # Final once markers A sends after it are stored (A's own path and namespace).
    await settle(http, namespace=a.namespace)
    b_rows = (await ok(await b.http.get(f"/api/v1/meters/{slug}/query")))["data"]
    assert [row["value"] for row in b_rows] == [3]
    # It did count in A: a meter of A's on the same event type (meters are data) sees it.
    await ok(await http.post("/api/v1/meters", json={"slug": slug, "eventType": slug, "aggregation": "COUNT"}), 201)
    a_rows = (await ok(await http.get(f"/api/v1/meters/{slug}/query")))["data"]
    assert [row["value"] for row in a_rows] == [1]
    assert (await ok(await b.http.get(f"/api/v1/meters/{slug}")))["name"] != "hijacked"
    assert (await ok(await b.http.get(f"/api/v1/customers/{customer['id']}")))["id"] == customer["id"]


async def test_namespace_a_sees_nothing_of_b_over_grpc(secured: TallyProcess, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    slug = unique("grpc_iso")
    await ok(await b.http.post("/api/v1/meters", json={"slug": slug, "eventType": slug, "aggregation": "COUNT"}), 201)
    metadata = (("authorization", f"Bearer {a.admin}"),)
    async with grpc.aio.insecure_channel(secured.grpc_target) as channel:
        meters = meters_pb2_grpc.MeterServiceStub(channel)
        listed = await meters.ListMeters(meters_pb2.ListMetersRequest(), metadata=metadata, timeout=10)
        assert slug not in {m.slug for m in listed.items}
        for call, request in (
            (meters.GetMeter, meters_pb2.GetMeterRequest(meter_id_or_slug=slug)),
            (meters.QueryMeter, meters_pb2.QueryMeterRequest(meter_id_or_slug=slug)),
            (meters.DeleteMeter, meters_pb2.DeleteMeterRequest(meter_id_or_slug=slug)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await call(request, metadata=metadata, timeout=10)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await ok(await b.http.get(f"/api/v1/meters/{slug}")))["slug"] == slug


# --- the auth policy at start ----------------------------------------------------------------


def test_keyless_loopback_stack_warns_loudly(tally: TallyProcess) -> None:
    assert "AUTHENTICATION IS DISABLED" in (tally.data_dir / "tally.log").read_text(errors="replace")


async def test_public_bind_without_keys_refuses_to_start(postgres_ready: None, tmp_path: Path) -> None:
    stack = TallyProcess(
        data_dir=tmp_path / "public",
        postgres_url=await create_database(),
        extra_env={"TALLY_GRPC_HOST": "0.0.0.0", "TALLY_REST_HOST": "0.0.0.0"},
    )
    with pytest.raises(RuntimeError, match="refusing to start"):
        await asyncio.to_thread(stack.start, 60)
    assert stack.process is not None and stack.process.wait(10) == 2


# --- portal tokens ---------------------------------------------------------------------------


async def portal_meter(tenant: Tenant, counts: dict[str, int]) -> str:
    """A COUNT meter grouped by model, with `counts[subject]` events per subject, all counted."""
    http = tenant.http
    slug = unique("portal")
    body = {"slug": slug, "eventType": slug, "aggregation": "COUNT", "groupBy": {"model": "$.model"}}
    await ok(await http.post("/api/v1/meters", json=body), 201)
    events = [cloudevent(slug, subject, {"model": "m1"}) for subject, n in counts.items() for _ in range(n)]
    await ok(
        await http.post(
            "/api/v1/events", content=json.dumps(events), headers={"content-type": "application/cloudevents-batch+json"}
        ),
        204,
    )

    async def counted() -> bool:
        rows = (await ok(await http.get(f"/api/v1/meters/{slug}/query")))["data"]
        return sum(row["value"] for row in rows) == sum(counts.values())

    await wait_for(counted, timeout=15)
    return slug


async def test_portal_token_flow(secured: TallyProcess, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    mine, other = unique("cust"), unique("cust")
    slug = await portal_meter(a, {mine: 2, other: 5})
    unlisted = await portal_meter(a, {mine: 1})
    created = await ok(await a.http.post("/api/v1/portal/tokens", json={"subject": mine, "allowedMeterSlugs": [slug]}))
    assert created["subject"] == mine and created["allowedMeterSlugs"] == [slug] and not created["expired"]
    assert created["token"].startswith("tlyp_") and created["expiresAt"] > created["createdAt"]
    listed = await ok(await a.http.get("/api/v1/portal/tokens"))
    assert isinstance(listed, list)
    mine_listed = next(t for t in listed if t["id"] == created["id"])
    assert "token" not in mine_listed and mine_listed["subject"] == mine

    async with httpx.AsyncClient(base_url=secured.rest_url, headers=bearer(created["token"]), timeout=30) as portal:
        # Only the token's subject, whatever the query asks for.
        for params in ({}, {"subject": other}, {"groupBy": "model"}, {"windowSize": "DAY"}):
            rows = (await ok(await portal.get(f"/api/v1/portal/meters/{slug}/query", params=params)))["data"]
            assert rows and {row["subject"] for row in rows} == {mine}
            assert sum(row["value"] for row in rows) == 2
        csv = await portal.get(f"/api/v1/portal/meters/{slug}/query", headers={"accept": "text/csv"})
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert mine in csv.text and other not in csv.text
        # Not an allowed meter, known or not, is a 401 as OpenMeter's portal authenticator answers
        # (portal/authenticator/authenticator.go verifyPortalToken); not an API key either.
        assert_problem(await portal.get(f"/api/v1/portal/meters/{unlisted}/query"), 401)
        assert_problem(await portal.get(f"/api/v1/portal/meters/{unique('none')}/query"), 401)
        assert_problem(await portal.get("/api/v1/meters"), 401)
        assert_problem(await portal.get(f"/api/v1/meters/{slug}/query"), 401)

        # An API key is not a portal token; nor is nothing.
        assert_problem(await a.http.get(f"/api/v1/portal/meters/{slug}/query"), 401)
        async with httpx.AsyncClient(base_url=secured.rest_url, timeout=30) as anonymous:
            assert_problem(await anonymous.get(f"/api/v1/portal/meters/{slug}/query"), 401)

        invalidate = await a.http.post("/api/v1/portal/tokens/invalidate", json={"id": created["id"]})
        assert invalidate.status_code == 204 and invalidate.content == b""
        assert_problem(await portal.get(f"/api/v1/portal/meters/{slug}/query"), 401)
    assert created["id"] not in {t["id"] for t in await ok(await a.http.get("/api/v1/portal/tokens"))}


async def test_portal_tokens_of_all_meters_expire_and_invalidate_by_subject(
    secured: TallyProcess, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    subject = unique("cust")
    slug = await portal_meter(a, {subject: 3})
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat().replace("+00:00", "Z")
    short = await ok(await a.http.post("/api/v1/portal/tokens", json={"subject": subject, "expiresAt": soon}))
    first = await ok(await a.http.post("/api/v1/portal/tokens", json={"subject": subject}))
    second = await ok(await a.http.post("/api/v1/portal/tokens", json={"subject": subject}))
    assert first["allowedMeterSlugs"] == []
    path = f"/api/v1/portal/meters/{slug}/query"
    async with httpx.AsyncClient(base_url=secured.rest_url, timeout=30) as http:
        for token in (short, first, second):
            rows = (await ok(await http.get(path, headers=bearer(token["token"]))))["data"]
            assert [row["value"] for row in rows] == [3]
        # Namespace B's token does not reach A's meter; with every meter allowed, an unknown one is a 404.
        theirs = await ok(await b.http.post("/api/v1/portal/tokens", json={"subject": subject}))
        assert_problem(await http.get(path, headers=bearer(theirs["token"])), 404)
        assert_problem(
            await http.get(f"/api/v1/portal/meters/{unique('none')}/query", headers=bearer(first["token"])), 404
        )

        async def short_expired() -> bool:
            return (await http.get(path, headers=bearer(short["token"]))).status_code == 401

        await wait_for(short_expired, timeout=30, interval=0.1)
        assert_problem(await http.get(path, headers=bearer(short["token"])), 401)
        listed = {t["id"]: t for t in await ok(await a.http.get("/api/v1/portal/tokens", params={"limit": 100}))}
        assert listed[short["id"]]["expired"] is True and listed[first["id"]]["expired"] is False

        done = await a.http.post("/api/v1/portal/tokens/invalidate", json={"subject": subject})
        assert done.status_code == 204
        for token in (first, second):
            assert_problem(await http.get(path, headers=bearer(token["token"])), 401)
        # B's token for the same subject name lives on: invalidation stays in A's namespace.
        b_slug = await portal_meter(b, {subject: 1})
        await ok(await http.get(f"/api/v1/portal/meters/{b_slug}/query", headers=bearer(theirs["token"])))


async def test_portal_csv_names_the_subject_as_the_meter_csv_does(
    secured: TallyProcess, tenants: tuple[Tenant, Tenant]
) -> None:
    # OpenMeter's portal query is its meter query for the token's subject (server/router/portal.go),
    # so its CSV adds subject_display_name when the subject is a subject entity.
    a, _ = tenants
    subject = unique("cust")
    await ok(await a.http.post("/api/v1/subjects", json=[{"key": subject, "displayName": "Acme, Inc."}]))
    slug = await portal_meter(a, {subject: 2})
    created = await ok(await a.http.post("/api/v1/portal/tokens", json={"subject": subject}))
    async with httpx.AsyncClient(base_url=secured.rest_url, headers=bearer(created["token"]), timeout=30) as portal:
        response = await portal.get(f"/api/v1/portal/meters/{slug}/query", headers={"accept": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f"attachment; filename={slug}.csv"
    header, row = response.text.splitlines()
    assert header == "window_start,window_end,subject,subject_display_name,value"
    assert row.endswith(f',{subject},"Acme, Inc.",2.000000')


async def test_portal_token_validation_and_scopes(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    tokens = "/api/v1/portal/tokens"
    assert_problem(await a.http.post(tokens, json={"subject": "s", "allowedMeterSlugs": []}), 400)
    assert_problem(await a.http.post(tokens, json={"subject": "s", "allowedMeterSlugs": [unique("nope")]}), 404)
    assert_problem(await a.http.post(tokens, json={"subject": "s", "expiresAt": "2020-01-01T00:00:00Z"}), 400)
    assert_problem(await a.http.post(tokens, json={"allowedMeterSlugs": ["x"]}), 400)
    assert_problem(await a.http.post(f"{tokens}/invalidate", json={}), 400)
    assert_problem(await a.http.get(tokens, params={"limit": 1000}), 400)
    read = await make_key(a, "read")
    async with a.client(read["key"]) as http:
        await ok(await http.get(tokens))
        assert_problem(await http.post(tokens, json={"subject": "s"}), 403)
        assert_problem(await http.post(f"{tokens}/invalidate", json={"subject": "s"}), 403)


async def test_authentication_comes_before_body_field_checks(secured: TallyProcess, admin_keys: dict[str, str]) -> None:
    """A caller without a key gets 401 even for a body with an unknown field (the schema check runs
    after authentication); with a key, the same body is the 400 naming the field."""
    body = {"slug": "auth_order", "eventType": "e", "aggregation": "COUNT", "groupby": {}}
    async with httpx.AsyncClient(base_url=secured.rest_url, timeout=30) as anonymous:
        assert_problem(await anonymous.post("/api/v1/meters", json=body), 401)
    async with httpx.AsyncClient(
        base_url=secured.rest_url, headers=bearer(admin_keys["tenant_a"]), timeout=30
    ) as keyed:
        problem = assert_problem(await keyed.post("/api/v1/meters", json=body), 400)
        assert [v["field"] for v in problem["extensions"]["validationErrors"]] == ["groupby"]
