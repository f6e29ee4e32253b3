"""Customers, subjects, features, entitlements and grants over REST through Envoy.

Mirrors OpenMeter's e2e behaviours (e2e_test.go TestCredit, entitlement_test.go,
entitlement_parity_test.go, multisubject_test.go): the exact credit-flow value, 409 with
conflictingEntityId, reset and override, UNIQUE_COUNT and LATEST balances, void rules, P2W periods,
grant pagination, v1/v2 parity and multi-subject customers.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from openmeter import Client
from openmeter.models import CustomerCreate, FeatureCreateInputs

from tests.support.metering import cloudevent, rfc3339, unique
from tests.support.stack import TallyProcess, wait_for

JSON = {"content-type": "application/json"}
MONTH_2024 = {"interval": "MONTH", "anchor": "2024-01-01T00:00:00Z"}


def minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def meter(http: httpx.AsyncClient, aggregation: str, value: str | None = "$.value", **extra: Any) -> str:
    slug = unique("ent_meter")
    body: dict[str, Any] = {"slug": slug, "eventType": slug, "aggregation": aggregation, **extra}
    if value is not None:
        body["valueProperty"] = value
    await ok(await http.post("/api/v1/meters", json=body), 201)
    return slug


async def customer(
    http: httpx.AsyncClient, key: str | None = None, subjects: list[str] | None = None
) -> dict[str, Any]:
    key = key or unique("cust")
    body = {
        "name": f"Customer {key}",
        "key": key,
        "currency": "USD",
        "primaryEmail": f"{key}@example.com",
        "usageAttribution": {"subjectKeys": subjects if subjects is not None else [key]},
    }
    created: dict[str, Any] = await ok(await http.post("/api/v1/customers", json=body), 201)
    await ok(await http.post("/api/v1/subjects", json=[{"key": s} for s in body["usageAttribution"]["subjectKeys"]]))
    return created


async def feature(http: httpx.AsyncClient, meter_slug: str | None, **extra: Any) -> dict[str, Any]:
    key = unique("feat")
    body: dict[str, Any] = {"key": key, "name": key, **extra}
    if meter_slug is not None:
        body["meterSlug"] = meter_slug
    return await ok(await http.post("/api/v1/features", json=body), 201)  # type: ignore[no-any-return]


async def ingest(http: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await http.post(
        "/api/v1/events", content=json.dumps(events), headers={"content-type": "application/cloudevents-batch+json"}
    )
    assert response.status_code == 204, response.text


async def value(http: httpx.AsyncClient, path: str, **params: str) -> dict[str, Any]:
    return await ok(await http.get(f"{path}/value", params=params))  # type: ignore[no-any-return]


async def eventually_value(http: httpx.AsyncClient, path: str, expected: dict[str, Any]) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        got = await value(http, path)
        return got if all(got.get(k) == v for k, v in expected.items()) else None

    result: dict[str, Any] = await wait_for(check, timeout=10)
    return result


# --- customers and subjects ------------------------------------------------------------------


async def test_customer_crud_by_id_or_key_and_subject_ownership(http: httpx.AsyncClient) -> None:
    key = unique("crud")
    c = await customer(http, key, [key, f"{key}_b"])
    assert c["usageAttribution"] == {"subjectKeys": [key, f"{key}_b"]}
    assert c["currency"] == "USD" and c["key"] == key and len(c["id"]) == 26
    assert (await ok(await http.get(f"/api/v1/customers/{c['id']}")))["key"] == key
    assert (await ok(await http.get(f"/api/v1/customers/{key}")))["id"] == c["id"]

    # A subject key belongs to at most one customer.
    clash = await http.post(
        "/api/v1/customers", json={"name": "x", "key": unique("other"), "usageAttribution": {"subjectKeys": [key]}}
    )
    assert clash.status_code == 409, clash.text
    assert clash.json()["extensions"]["conflictingEntityId"] == c["id"]
    dup_key = await http.post("/api/v1/customers", json={"name": "x", "key": key})
    assert dup_key.status_code == 409
    neither = await http.post("/api/v1/customers", json={"name": "x"})
    assert neither.status_code == 400

    updated = await ok(
        await http.put(
            f"/api/v1/customers/{key}",
            json={"name": "Renamed", "key": key, "usageAttribution": {"subjectKeys": [key]}, "currency": "EUR"},
        )
    )
    assert updated["name"] == "Renamed" and updated["currency"] == "EUR"
    page = await ok(await http.get("/api/v1/customers", params={"key": key, "pageSize": 1}))
    assert page["totalCount"] == 1 and page["page"] == 1 and page["pageSize"] == 1
    assert [item["id"] for item in page["items"]] == [c["id"]]

    assert (await http.delete(f"/api/v1/customers/{key}")).status_code == 204
    assert (await http.get(f"/api/v1/customers/{key}")).status_code == 404
    # Its subjects are free again.
    await customer(http, unique("reuse"), [f"{key}_b"])


async def test_customer_currency_must_be_an_iso_4217_code(http: httpx.AsyncClient) -> None:
    # OpenMeter's validateCustomerCurrency: currencyx.Code.Validate knows the fiat codes, so three
    # capital letters that name no currency are refused, on create and on update.
    key = unique("cur")
    refused = await http.post("/api/v1/customers", json={"name": "x", "key": key, "currency": "ABC"})
    assert refused.status_code == 400, refused.text
    assert [e["field"] for e in refused.json()["extensions"]["validationErrors"]] == ["currency"]
    created = await ok(await http.post("/api/v1/customers", json={"name": "x", "key": key, "currency": "JPY"}), 201)
    assert created["currency"] == "JPY"
    replaced = await http.put(f"/api/v1/customers/{key}", json={"name": "x", "key": key, "currency": "QQQ"})
    assert replaced.status_code == 400, replaced.text
    assert (await ok(await http.get(f"/api/v1/customers/{key}")))["currency"] == "JPY"


async def test_customer_replace_keeps_the_email_currency_and_address_fields_it_leaves_out(
    http: httpx.AsyncClient,
) -> None:
    # OpenMeter's customer adapter (UpdateCustomer) sets primaryEmail, currency and each billing
    # address field only when the replacement carries it; description, key, metadata and an absent
    # billingAddress are replaced (cleared).
    key = unique("keep")
    body = {
        "name": "x",
        "key": key,
        "description": "d",
        "metadata": {"a": "b"},
        "primaryEmail": "x@example.com",
        "currency": "EUR",
        "billingAddress": {"country": "DE", "city": "Berlin", "line1": "Street 1"},
    }
    await ok(await http.post("/api/v1/customers", json=body), 201)
    replaced = await ok(
        await http.put(f"/api/v1/customers/{key}", json={"name": "y", "key": key, "billingAddress": {"city": "Bonn"}})
    )
    assert replaced["primaryEmail"] == "x@example.com" and replaced["currency"] == "EUR"
    assert replaced["billingAddress"] == {"country": "DE", "city": "Bonn", "line1": "Street 1"}
    assert "description" not in replaced and not replaced.get("metadata")
    got = await ok(await http.get(f"/api/v1/customers/{key}"))
    assert (got["primaryEmail"], got["currency"], got["billingAddress"]["country"]) == ("x@example.com", "EUR", "DE")
    cleared = await ok(await http.put(f"/api/v1/customers/{key}", json={"name": "y", "key": key}))
    assert "billingAddress" not in cleared and cleared["currency"] == "EUR"


async def test_deleted_customer_refuses_update_and_delete_by_id(http: httpx.AsyncClient) -> None:
    # OpenMeter's customer httpdriver (updateCustomer, deleteCustomer) finds a deleted customer by
    # its ID and answers 412 "customer is deleted"; by key it is not found.
    key = unique("gone")
    c = await ok(await http.post("/api/v1/customers", json={"name": "x", "key": key}), 201)
    assert (await http.delete(f"/api/v1/customers/{c['id']}")).status_code == 204
    assert "deletedAt" in await ok(await http.get(f"/api/v1/customers/{c['id']}"))
    replaced = await http.put(f"/api/v1/customers/{c['id']}", json={"name": "y", "key": key})
    assert replaced.status_code == 412, replaced.text
    assert "deleted" in replaced.json()["detail"]
    again = await http.delete(f"/api/v1/customers/{c['id']}")
    assert again.status_code == 412, again.text
    assert (await http.delete(f"/api/v1/customers/{key}")).status_code == 404
    assert (await ok(await http.get(f"/api/v1/customers/{c['id']}")))["name"] == "x"


async def test_deleted_customers_access_and_entitlements_by_id_are_412(http: httpx.AsyncClient) -> None:
    # OpenMeter's customer and v2 entitlement handlers find a deleted customer by its ID and answer
    # 412 "customer is deleted" (getCustomerAccess, the value endpoints, the v2 entitlement CRUD);
    # by key it is not found.
    slug = await meter(http, "SUM")
    feat = await feature(http, slug)
    c = await ok(await http.post("/api/v1/customers", json={"name": "x", "key": unique("del412")}), 201)
    assert (await http.delete(f"/api/v1/customers/{c['id']}")).status_code == 204
    for path in (
        f"/api/v1/customers/{c['id']}/access",
        f"/api/v1/customers/{c['id']}/entitlements/{feat['key']}/value",
        f"/api/v2/customers/{c['id']}/entitlements/{feat['key']}/value",
        f"/api/v2/customers/{c['id']}/entitlements",
        f"/api/v2/customers/{c['id']}/entitlements/{feat['key']}",
    ):
        got = await http.get(path)
        assert got.status_code == 412, (path, got.text)
        assert "deleted" in got.json()["detail"], path
    created = await http.post(
        f"/api/v2/customers/{c['id']}/entitlements", json={"type": "boolean", "featureKey": feat["key"]}
    )
    assert created.status_code == 412, created.text
    assert (await http.get(f"/api/v1/customers/{c['key']}/access")).status_code == 404


async def test_customer_key_may_not_be_another_customers_id(http: httpx.AsyncClient) -> None:
    # OpenMeter's customer adapter (CreateCustomer, UpdateCustomer): "key ... overlaps with id of
    # another customer", a 409: /customers/{idOrKey} would name two customers.
    first = await customer(http)
    clash = await http.post("/api/v1/customers", json={"name": "x", "key": first["id"]})
    assert clash.status_code == 409, clash.text
    assert "overlaps with id" in clash.json()["detail"]
    second = await customer(http)
    replaced = await http.put(f"/api/v1/customers/{second['id']}", json={"name": "x", "key": first["id"]})
    assert replaced.status_code == 409, replaced.text
    assert (await ok(await http.get(f"/api/v1/customers/{first['id']}")))["key"] == first["key"]


async def test_customer_list_subject_filter_is_a_case_insensitive_partial_match(http: httpx.AsyncClient) -> None:
    # OpenAPI listCustomers `subject`: "Filter customers by usage attribution subject.
    # Case-insensitive partial match." (OpenMeter's httpdriver: containsFilter(params.Subject)).
    key = unique("subjf")
    c = await customer(http, key, [f"Device-{key}-A", f"{key}_other"])
    for fragment in (f"device-{key.upper()}", f"{key}-a", f"DEVICE-{key}-A"):
        page = await ok(await http.get("/api/v1/customers", params={"subject": fragment}))
        assert [item["id"] for item in page["items"]] == [c["id"]], fragment
    assert (await ok(await http.get("/api/v1/customers", params={"subject": f"{key}-b"})))["items"] == []


async def test_customer_list_subject_filter_finds_no_deleted_customer(http: httpx.AsyncClient) -> None:
    # OpenMeter's customer adapter matches `subject` on the customer's live subject rows, and a
    # deleted customer's subjects are deleted with it: includeDeleted lists it, but not by subject.
    key = unique("subjdel")
    gone = await customer(http, key, [f"{key}_dev"])
    assert (await http.delete(f"/api/v1/customers/{gone['id']}")).status_code == 204
    successor = await customer(http, unique("subjnew"), [f"{key}_dev"])
    page = await ok(await http.get("/api/v1/customers", params={"subject": f"{key}_dev", "includeDeleted": "true"}))
    assert [item["id"] for item in page["items"]] == [successor["id"]]
    every = await ok(await http.get("/api/v1/customers", params={"key": key, "includeDeleted": "true"}))
    assert [item["id"] for item in every["items"]] == [gone["id"]]


async def test_customer_list_filters_take_percent_and_underscore_literally(http: httpx.AsyncClient) -> None:
    # OpenMeter's key, name and primaryEmail filters are contains filters (ent's ContainsFold, which
    # escapes LIKE's wildcards): "a%b" finds what contains "a%b", not every "a...b".
    key = unique("lit")  # lit_<hex>
    c = await customer(http, key)
    head, tail = key.split("_", 1)
    for name, value in (("key", key), ("name", f"Customer {key}"), ("primaryEmail", f"{key}@example.com")):
        found = await ok(await http.get("/api/v1/customers", params={name: value.upper()}))
        assert [item["id"] for item in found["items"]] == [c["id"]], name
        for wild in (value.replace(f"{head}_", f"{head}%"), value.replace(f"{head}_{tail}", f"{head}_{tail[:-1]}_")):
            page = await ok(await http.get("/api/v1/customers", params={name: wild}))
            assert page["items"] == [], (name, wild)


async def test_customer_list_is_ordered_by_name_unless_asked_otherwise(http: httpx.AsyncClient) -> None:
    # OpenMeter's listCustomers handler: orderBy defaults to name (ASC), not to the ID.
    tag = unique("ordr")
    made = [
        await ok(await http.post("/api/v1/customers", json={"name": f"{tag} {n}", "key": f"{tag}_{n}"}), 201)
        for n in ("c", "a", "b")
    ]
    by_name = await ok(await http.get("/api/v1/customers", params={"name": tag}))
    assert [item["name"] for item in by_name["items"]] == [f"{tag} a", f"{tag} b", f"{tag} c"]
    by_id = await ok(await http.get("/api/v1/customers", params={"name": tag, "orderBy": "id"}))
    assert [item["id"] for item in by_id["items"]] == sorted(c["id"] for c in made)


async def test_customer_list_without_paging_parameters_is_the_first_page_of_100(http: httpx.AsyncClient) -> None:
    # OpenMeter's listCustomers pages always: page 1 of 100 when neither page nor pageSize is given.
    tag = unique("many")
    for start in range(0, 101, 25):
        await asyncio.gather(
            *(
                http.post("/api/v1/customers", json={"name": f"{tag} {n:03d}", "key": f"{tag}_{n:03d}"})
                for n in range(start, min(start + 25, 101))
            )
        )
    first = await ok(await http.get("/api/v1/customers", params={"name": tag}))
    assert (first["totalCount"], first["page"], first["pageSize"]) == (101, 1, 100)
    assert [item["name"] for item in first["items"]] == [f"{tag} {n:03d}" for n in range(100)]
    second = await ok(await http.get("/api/v1/customers", params={"name": tag, "page": 2}))
    assert [item["name"] for item in second["items"]] == [f"{tag} 100"]


async def test_subjects_upsert_list_get_delete(http: httpx.AsyncClient) -> None:
    key = unique("subj")
    created = await ok(await http.post("/api/v1/subjects", json=[{"key": key, "displayName": "One"}]))
    assert isinstance(created, list) and created[0]["key"] == key and created[0]["displayName"] == "One"
    again = await ok(await http.post("/api/v1/subjects", json=[{"key": key, "displayName": "Two"}]))
    assert again[0]["id"] == created[0]["id"] and again[0]["displayName"] == "Two"
    assert key in [s["key"] for s in await ok(await http.get("/api/v1/subjects"))]
    assert (await ok(await http.get(f"/api/v1/subjects/{key}")))["id"] == created[0]["id"]
    assert (await http.delete(f"/api/v1/subjects/{key}")).status_code == 204
    assert (await http.get(f"/api/v1/subjects/{key}")).status_code == 404


async def test_meter_query_filter_customer_id_sums_every_subject(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "SUM")
    key = unique("multi")
    c = await customer(http, key, [f"{key}_a", f"{key}_b"])
    now = datetime.now(UTC)
    await ingest(
        http,
        [
            cloudevent(slug, f"{key}_a", {"value": 2}, time=now),
            cloudevent(slug, f"{key}_b", {"value": 3}, time=now),
            cloudevent(slug, "someone_else", {"value": 100}, time=now),
        ],
    )

    async def rows() -> list[dict[str, Any]] | None:
        body = await ok(await http.get(f"/api/v1/meters/{slug}/query", params={"filterCustomerId": key}))
        return body["data"] if body["data"] and body["data"][0]["value"] == 5 else None

    data = await wait_for(rows)
    assert data[0]["customerId"] == c["id"]
    by_id = await ok(await http.get(f"/api/v1/meters/{slug}/query", params={"filterCustomerId": c["id"]}))
    assert by_id["data"][0]["value"] == 5
    missing = await http.get(f"/api/v1/meters/{slug}/query", params={"filterCustomerId": unique("nobody")})
    assert missing.status_code == 404


# --- features ----------------------------------------------------------------------------------


async def test_features_create_list_get_archive(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "COUNT", value=None, groupBy={"model": "$.model"})
    f = await feature(http, slug, meterGroupByFilters={"model": "gpt-4"})
    assert f["meterGroupByFilters"] == {"model": "gpt-4"}
    assert f["advancedMeterGroupByFilters"] == {"model": {"$eq": "gpt-4"}}
    dup = await http.post("/api/v1/features", json={"key": f["key"], "name": "x"})
    assert dup.status_code == 409 and dup.json()["extensions"]["conflictingEntityId"] == f["id"]
    assert (
        await http.post("/api/v1/features", json={"key": unique("f"), "name": "x", "meterSlug": "nope"})
    ).status_code == 404
    bad = await http.post(
        "/api/v1/features",
        json={"key": unique("f"), "name": "x", "meterSlug": slug, "meterGroupByFilters": {"nope": "1"}},
    )
    assert bad.status_code == 400

    listed = await ok(await http.get("/api/v1/features", params={"meterSlug": slug}))
    assert isinstance(listed, list) and [x["id"] for x in listed] == [f["id"]]
    paged = await ok(await http.get("/api/v1/features", params={"meterSlug": slug, "page": 1, "pageSize": 10}))
    assert paged["totalCount"] == 1 and paged["page"] == 1 and paged["pageSize"] == 10
    assert (await ok(await http.get(f"/api/v1/features/{f['id']}")))["key"] == f["key"]
    assert (await http.delete(f"/api/v1/features/{f['id']}")).status_code == 204
    # Archived: not found by ID (as in OpenMeter), listed only with includeArchived.
    assert (await http.get(f"/api/v1/features/{f['id']}")).status_code == 404
    assert f["id"] not in [x["id"] for x in await ok(await http.get("/api/v1/features"))]
    everything = await ok(await http.get("/api/v1/features", params={"meterSlug": slug, "includeArchived": "true"}))
    assert [x["id"] for x in everything] == [f["id"]] and everything[0]["archivedAt"]
    # The key is free again.
    await ok(await http.post("/api/v1/features", json={"key": f["key"], "name": "again"}), 201)


async def test_features_are_listed_by_key_unless_asked_otherwise(http: httpx.AsyncClient) -> None:
    # OpenMeter's listFeatures orders by key (ascending) by default.
    slug = await meter(http, "COUNT", value=None)
    base = unique("order")
    for suffix in ("b", "c", "a"):
        await ok(
            await http.post("/api/v1/features", json={"key": f"{base}_{suffix}", "name": suffix, "meterSlug": slug}),
            201,
        )
    keys = [f["key"] for f in await ok(await http.get("/api/v1/features", params={"meterSlug": slug}))]
    assert keys == [f"{base}_a", f"{base}_b", f"{base}_c"]
    by_creation = await ok(await http.get("/api/v1/features", params={"meterSlug": slug, "orderBy": "createdAt"}))
    assert [f["key"] for f in by_creation] == [f"{base}_b", f"{base}_c", f"{base}_a"]


# --- the credit flow (e2e_test.go TestCredit) --------------------------------------------------


async def test_credit_flow(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "COUNT", value=None, groupBy={"model": "$.model"})
    key = unique("credit")
    await customer(http, key)
    f = await feature(http, slug, meterGroupByFilters={"model": "gpt-4"})
    body = {"type": "metered", "featureId": f["id"], "usagePeriod": MONTH_2024}
    ent = await ok(await http.post(f"/api/v1/subjects/{key}/entitlements", json=body), 201)
    assert ent["subjectKey"] == key and ent["type"] == "metered"
    assert ent["usagePeriod"] == {"interval": "MONTH", "anchor": "2024-01-01T00:00:00Z", "intervalISO": "P1M"}
    # OpenMeter stores an absent issueAfterReset as 0 (metered BeforeCreate) and shows it.
    assert ent["issueAfterReset"] == 0 and "issueAfterResetPriority" not in ent

    dup = await http.post(f"/api/v1/subjects/{key}/entitlements", json=body)
    assert dup.status_code == 409
    assert dup.json()["extensions"]["conflictingEntityId"] == ent["id"]

    # Every time below is taken from the entitlement's creation, not the test's clock: a grant made
    # "now" could start in a later minute than the events it must cover on a slow machine.
    created = datetime.fromisoformat(ent["createdAt"].replace("Z", "+00:00"))
    effective = minute(created)
    grant = await ok(
        await http.post(
            f"/api/v1/subjects/{key}/entitlements/{ent['id']}/grants",
            json={
                "amount": 100,
                "effectiveAt": rfc3339(effective),
                "expiration": {"duration": "MONTH", "count": 1},
                "priority": 1,
                "maxRolloverAmount": 100,
                "minRolloverAmount": 0,
                "recurrence": {"anchor": "2024-01-01T00:00:00Z", "interval": "YEAR"},
                "metadata": {"some_key": "some_value"},
            },
        ),
        201,
    )
    assert grant["recurrence"] == {"interval": "YEAR", "anchor": "2024-01-01T00:00:00Z", "intervalISO": "P1Y"}
    assert grant["effectiveAt"] == rfc3339(effective) and grant["expiresAt"] and grant["nextRecurrence"]
    assert grant["entitlementId"] == ent["id"] and grant["metadata"] == {"some_key": "some_value"}

    at = created + timedelta(seconds=15)
    await ingest(
        http,
        [cloudevent(slug, key, {"model": "gpt-4"}, time=at), cloudevent(slug, key, {"model": "gpt-3"}, time=at)],
    )
    path = f"/api/v1/subjects/{key}/entitlements/{ent['id']}"

    async def credit_value() -> dict[str, Any] | None:
        got = await value(http, path, time=rfc3339(created + timedelta(minutes=2)))
        return got if got.get("usage") == 1 else None

    got = await wait_for(credit_value)
    assert got == {"balance": 99, "hasAccess": True, "overage": 0, "usage": 1, "totalAvailableGrantAmount": 100}

    grants = await ok(await http.get(f"{path}/grants"))
    assert [g["id"] for g in grants] == [grant["id"]]
    listed = await ok(await http.get(f"/api/v1/subjects/{key}/entitlements"))
    assert [e["id"] for e in listed] == [ent["id"]]


async def test_issue_after_reset_and_measure_usage_from(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "COUNT", value=None)
    f = await feature(http, slug)
    key = unique("issue")
    await customer(http, key)
    ent = await ok(
        await http.post(
            f"/api/v1/subjects/{key}/entitlements",
            json={
                "type": "metered",
                "featureId": f["id"],
                "usagePeriod": MONTH_2024,
                "measureUsageFrom": "2024-01-01T00:00:00Z",
                "issueAfterReset": 100,
                "issueAfterResetPriority": 6,
            },
        ),
        201,
    )
    assert ent["measureUsageFrom"] == "2024-01-01T00:00:00Z"
    grants = await ok(await http.get(f"/api/v1/subjects/{key}/entitlements/{ent['id']}/grants"))
    assert len(grants) == 1
    assert grants[0]["amount"] == ent["issueAfterReset"] == 100
    assert grants[0]["priority"] == ent["issueAfterResetPriority"] == 6
    assert grants[0]["annotations"] == {"issueAfterReset": True}

    other = unique("anchor")
    await customer(http, other)
    anchor = minute(datetime.now(UTC)) - timedelta(hours=1)
    ent2 = await ok(
        await http.post(
            f"/api/v1/subjects/{other}/entitlements",
            json={
                "type": "metered",
                "featureId": f["id"],
                "usagePeriod": {"interval": "MONTH", "anchor": rfc3339(anchor)},
                "measureUsageFrom": "CURRENT_PERIOD_START",
            },
        ),
        201,
    )
    assert ent2["measureUsageFrom"] == rfc3339(anchor)


# --- entitlement_test.go -----------------------------------------------------------------------


async def test_v2_crud_and_missing_customer(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "UNIQUE_COUNT")
    f = await feature(http, slug)
    c = await customer(http)
    body = {"type": "metered", "featureKey": f["key"], "usagePeriod": MONTH_2024, "issue": {"amount": 10}}
    ent = await ok(await http.post(f"/api/v2/customers/{c['id']}/entitlements", json=body), 201)
    assert ent["customerId"] == c["id"] and ent["customerKey"] == c["key"] and ent["featureId"] == f["id"]
    # No priority was given: none is shown (the issued grant still burns at priority 1).
    assert ent["issue"] == {"amount": 10} and ent["issueAfterReset"] == 10 and "issueAfterResetPriority" not in ent
    listed = await ok(await http.get(f"/api/v2/customers/{c['key']}/entitlements", params={"page": 1, "pageSize": 10}))
    assert listed["totalCount"] == 1 and [e["id"] for e in listed["items"]] == [ent["id"]]
    by_key = await ok(await http.get(f"/api/v2/customers/{c['key']}/entitlements/{f['key']}"))
    assert by_key["id"] == ent["id"]
    assert (await ok(await http.get(f"/api/v2/entitlements/{ent['id']}")))["customerId"] == c["id"]
    assert (await ok(await http.get(f"/api/v1/entitlements/{ent['id']}")))["subjectKey"] == c["key"]

    missing = await http.post(f"/api/v2/customers/{unique('ghost')}/entitlements", json=body)
    assert missing.status_code == 404

    assert (await http.delete(f"/api/v2/customers/{c['id']}/entitlements/{ent['id']}")).status_code == 204
    assert (await http.get(f"/api/v2/customers/{c['id']}/entitlements/{f['key']}")).status_code == 404
    again = await ok(await http.post(f"/api/v2/customers/{c['id']}/entitlements", json=body), 201)
    assert again["id"] != ent["id"]


async def test_unique_count_balance_and_reset(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "UNIQUE_COUNT")
    f = await feature(http, slug)
    key = unique("uc")
    await customer(http, key)
    now = datetime.now(UTC)
    start = minute(now) - timedelta(minutes=5)
    ent = await ok(
        await http.post(
            f"/api/v1/subjects/{key}/entitlements",
            json={
                "type": "metered",
                "featureId": f["id"],
                "usagePeriod": MONTH_2024,
                "measureUsageFrom": rfc3339(start),
            },
        ),
        201,
    )
    path = f"/api/v1/subjects/{key}/entitlements/{ent['id']}"
    await ok(
        await http.post(
            f"{path}/grants",
            json={
                "amount": 100,
                "effectiveAt": rfc3339(start),
                "expiration": {"duration": "YEAR", "count": 1},
                "maxRolloverAmount": 100,
            },
        ),
        201,
    )
    # 10 events, half of them repeating a value: 5 unique values.
    events = [cloudevent(slug, key, {"value": str(i // 2)}, time=start + timedelta(seconds=10 + i)) for i in range(10)]
    await ingest(http, events)
    got = await eventually_value(http, path, {"usage": 5})
    assert got["balance"] == 95

    reset = await http.post(f"{path}/reset", json={"effectiveAt": rfc3339(minute(datetime.now(UTC)))})
    assert reset.status_code == 204, reset.text
    after = await value(http, path)
    assert after["usage"] == 0
    assert after["balance"] == 95  # the grant rolls over with what was left, not counted twice

    # The reset rules.
    future = await http.post(f"{path}/reset", json={"effectiveAt": rfc3339(datetime.now(UTC) + timedelta(hours=1))})
    assert future.status_code == 400
    before = await http.post(f"{path}/reset", json={"effectiveAt": rfc3339(start - timedelta(minutes=1))})
    assert before.status_code == 400
    same = await http.post(f"{path}/reset", json={"effectiveAt": rfc3339(minute(datetime.now(UTC)))})
    assert same.status_code == 400


async def test_latest_balance_follows_the_newest_value(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "LATEST")
    f = await feature(http, slug)
    key = unique("latest")
    await customer(http, key)
    start = minute(datetime.now(UTC)) - timedelta(minutes=5)
    ent = await ok(
        await http.post(
            f"/api/v1/subjects/{key}/entitlements",
            json={
                "type": "metered",
                "featureId": f["id"],
                "usagePeriod": MONTH_2024,
                "measureUsageFrom": rfc3339(start),
            },
        ),
        201,
    )
    path = f"/api/v1/subjects/{key}/entitlements/{ent['id']}"
    await ok(
        await http.post(
            f"{path}/grants",
            json={"amount": 1000, "effectiveAt": rfc3339(start), "expiration": {"duration": "YEAR", "count": 1}},
        ),
        201,
    )
    base = start + timedelta(minutes=1)
    await ingest(
        http,
        [cloudevent(slug, key, {"value": v}, time=base + timedelta(seconds=i)) for i, v in enumerate([100, 50, 150])],
    )
    got = await eventually_value(http, path, {"usage": 150})
    assert got["balance"] == 850
    await ingest(http, [cloudevent(slug, key, {"value": 300}, time=datetime.now(UTC))])
    got = await eventually_value(http, path, {"usage": 300})
    assert got["balance"] == 700


async def test_void_grant_rules(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "UNIQUE_COUNT")
    f = await feature(http, slug)
    key = unique("void")
    await customer(http, key)
    ent = await ok(
        await http.post(
            f"/api/v1/subjects/{key}/entitlements",
            json={"type": "metered", "featureId": f["id"], "usagePeriod": MONTH_2024},
        ),
        201,
    )

    async def grant() -> str:
        body = {
            "amount": 100,
            "effectiveAt": rfc3339(minute(datetime.now(UTC))),
            "expiration": {"duration": "MONTH", "count": 1},
        }
        created = await ok(await http.post(f"/api/v1/subjects/{key}/entitlements/{ent['id']}/grants", json=body), 201)
        return str(created["id"])

    assert (await http.delete(f"/api/v1/grants/{await grant()}")).status_code == 204
    now = rfc3339(minute(datetime.now(UTC)))
    assert (await http.delete(f"/api/v1/grants/{await grant()}", params={"at": now})).status_code == 204
    future = rfc3339(datetime.now(UTC) + timedelta(hours=1))
    assert (await http.delete(f"/api/v1/grants/{await grant()}", params={"at": future})).status_code == 400
    old = rfc3339(datetime.now(UTC) - timedelta(days=60))
    assert (await http.delete(f"/api/v1/grants/{await grant()}", params={"at": old})).status_code == 400
    voided = [
        g
        for g in await ok(await http.get(f"/api/v1/subjects/{key}/entitlements/{ent['id']}/grants"))
        if g.get("voidedAt")
    ]
    assert len(voided) == 2


async def test_iso_usage_period_p2w(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "UNIQUE_COUNT")
    f = await feature(http, slug)
    key = unique("p2w")
    await customer(http, key)
    ent = await ok(
        await http.post(
            f"/api/v1/subjects/{key}/entitlements",
            json={
                "type": "metered",
                "featureId": f["id"],
                "usagePeriod": {"interval": "P2W", "anchor": "2024-01-01T00:00:00Z"},
            },
        ),
        201,
    )
    assert ent["usagePeriod"]["interval"] == "P2W" and ent["usagePeriod"]["intervalISO"] == "P2W"
    period = ent["currentUsagePeriod"]
    start = datetime.fromisoformat(period["from"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(period["to"].replace("Z", "+00:00"))
    assert (end - datetime(2024, 1, 1, tzinfo=UTC)) % timedelta(weeks=2) == timedelta(0)
    assert end - start <= timedelta(weeks=2)
    grant = await ok(
        await http.post(
            f"/api/v1/subjects/{key}/entitlements/{ent['id']}/grants",
            json={
                "amount": 10,
                "effectiveAt": rfc3339(minute(datetime.now(UTC))),
                "expiration": {"duration": "YEAR", "count": 1},
                "recurrence": {"interval": "P2W", "anchor": "2024-01-01T00:00:00Z"},
            },
        ),
        201,
    )
    assert grant["recurrence"]["intervalISO"] == "P2W"
    short = await http.post(
        f"/api/v1/subjects/{key}/entitlements",
        json={"type": "metered", "featureId": f["id"], "usagePeriod": {"interval": "PT30M"}},
    )
    assert short.status_code == 400


async def grants_of_a_new_entitlement(
    http: httpx.AsyncClient, aggregation: str, value: str | None = "$.value"
) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """A new meter, feature, customer and monthly metered entitlement: (meter slug, feature,
    customer, the entitlement's v2 grants path)."""
    slug = await meter(http, aggregation, value=value)
    f = await feature(http, slug)
    c = await customer(http)
    await ok(
        await http.post(
            f"/api/v2/customers/{c['id']}/entitlements",
            json={"type": "metered", "featureKey": f["key"], "usagePeriod": MONTH_2024},
        ),
        201,
    )
    return slug, f, c, f"/api/v2/customers/{c['id']}/entitlements/{f['key']}/grants"


async def test_grant_pagination(http: httpx.AsyncClient) -> None:
    _, f, c, path = await grants_of_a_new_entitlement(http, "UNIQUE_COUNT")
    last = minute(datetime.now(UTC)) + timedelta(minutes=3)
    for i, amount in enumerate([30, 10, 20]):
        await ok(
            await http.post(path, json={"amount": amount, "effectiveAt": rfc3339(last - timedelta(minutes=i))}), 201
        )

    def amounts(body: dict[str, Any]) -> list[float]:
        return [g["amount"] for g in body["items"]]

    first = await ok(await http.get(path))
    assert amounts(first) == [30, 10, 20] and (first["page"], first["pageSize"], first["totalCount"]) == (1, 100, 3)
    order = {"orderBy": "createdAt", "order": "ASC"}
    assert amounts(await ok(await http.get(path, params={"limit": 2, **order}))) == [30, 10]
    sized = await ok(await http.get(path, params={"pageSize": 2, **order}))
    assert amounts(sized) == [30, 10] and (sized["page"], sized["pageSize"], sized["totalCount"]) == (1, 2, 3)
    second = await ok(await http.get(path, params={"page": 2, "pageSize": 2, **order}))
    assert amounts(second) == [20] and second["page"] == 2 and second["totalCount"] == 3
    both = await ok(await http.get(path, params={"page": 2, "pageSize": 2, "limit": 1, "offset": 0, **order}))
    assert amounts(both) == [20] and (both["page"], both["pageSize"]) == (2, 2)
    legacy = await ok(await http.get(path, params={"limit": 2, "offset": 1, **order}))
    assert amounts(legacy) == [10, 20] and (legacy["page"], legacy["pageSize"], legacy["totalCount"]) == (0, 0, 3)
    desc = await ok(await http.get(path, params={"orderBy": "createdAt", "order": "DESC"}))
    assert amounts(desc) == [20, 10, 30]
    assert (await http.get(path, params={"page": 0, "pageSize": 2})).status_code == 400
    # v2 grants have no expiration; v1 shows them with OpenMeter's placeholders (MapEntitlementGrantToAPI):
    # an expiration of 100 years and an expiresAt 100 years from now.
    before = datetime.now(UTC)
    v1 = await ok(await http.get("/api/v1/grants", params={"feature": f["key"]}))
    after = datetime.now(UTC)
    assert len(v1) == 3 and all(g["expiration"] == {"duration": "YEAR", "count": 100} for g in v1)
    for g in v1:
        expires = datetime.fromisoformat(g["expiresAt"].replace("Z", "+00:00"))
        assert before.replace(year=before.year + 100) - timedelta(seconds=1) <= expires
        assert expires <= after.replace(year=after.year + 100) + timedelta(seconds=1)
    v2 = await ok(await http.get("/api/v2/grants", params={"customer": c["id"]}))
    assert v2["totalCount"] == 3 and all("expiration" not in g for g in v2["items"])
    # The namespace-wide lists default to effectiveAt ascending (OpenMeter's credit grant driver),
    # unlike an entitlement's own list (createdAt).
    assert amounts(v2) == [20, 10, 30] and [g["amount"] for g in v1] == [20, 10, 30]


async def test_lists_without_paging_parameters_answer_at_most_100(http: httpx.AsyncClient) -> None:
    # OpenMeter caps every list a request names no paging for at 100: the v1 plain arrays (features,
    # grants, entitlements) and v2 namespace grants as limit 100, the v2 entitlement lists and a
    # customer entitlement's grants as page 1 of 100.
    slug, f, c, path = await grants_of_a_new_entitlement(http, "COUNT", value=None)
    at = rfc3339(minute(datetime.now(UTC)))
    for start in range(0, 101, 20):
        created = await asyncio.gather(
            *(http.post(path, json={"amount": i + 1, "effectiveAt": at}) for i in range(start, min(start + 20, 101)))
        )
        assert all(r.status_code == 201 for r in created), [r.text for r in created if r.status_code != 201]

    own = await ok(await http.get(path))
    assert (len(own["items"]), own["totalCount"], own["page"], own["pageSize"]) == (100, 101, 1, 100)
    assert len((await ok(await http.get(path, params={"page": 2})))["items"]) == 1
    v2 = await ok(await http.get("/api/v2/grants", params={"customer": c["id"]}))
    assert (len(v2["items"]), v2["totalCount"]) == (100, 101)
    v1 = await ok(await http.get("/api/v1/grants", params={"feature": f["key"]}))
    assert isinstance(v1, list) and len(v1) == 100
    assert len(await ok(await http.get("/api/v1/grants", params={"feature": f["key"], "limit": 1000}))) == 101

    base = unique("many")
    features = await asyncio.gather(
        *(
            http.post("/api/v1/features", json={"key": f"{base}_{i:03}", "name": "n", "meterSlug": slug})
            for i in range(101)
        )
    )
    assert all(r.status_code == 201 for r in features)
    listed = await ok(await http.get("/api/v1/features", params={"meterSlug": slug}))
    assert isinstance(listed, list) and len(listed) == 100
    assert (await ok(await http.get("/api/v1/features", params={"meterSlug": slug, "pageSize": 1})))[
        "totalCount"
    ] == 102

    # Entitlements: the namespace holds other tests' too, so compare with a paged count.
    total = (await ok(await http.get("/api/v2/entitlements", params={"pageSize": 1})))["totalCount"]
    v2_list = await ok(await http.get("/api/v2/entitlements"))
    assert (len(v2_list["items"]), v2_list["page"], v2_list["pageSize"]) == (min(total, 100), 1, 100)
    assert len(await ok(await http.get("/api/v1/entitlements"))) == min(total, 100)


# --- parity, multi-subject customers, override, other types -------------------------------------


async def test_v1_v2_parity_and_multi_subject_customer(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "COUNT", value=None)
    f = await feature(http, slug)
    key = unique("ms")
    subjects = [f"{key}_one", f"{key}_two"]
    c = await customer(http, key, subjects)
    start = minute(datetime.now(UTC)) - timedelta(minutes=5)
    ent = await ok(
        await http.post(
            f"/api/v2/customers/{key}/entitlements",
            json={
                "type": "metered",
                "featureKey": f["key"],
                "usagePeriod": MONTH_2024,
                "measureUsageFrom": rfc3339(start),
                "grants": [{"amount": 10, "effectiveAt": rfc3339(start)}],
            },
        ),
        201,
    )
    now = datetime.now(UTC)
    await ingest(http, [cloudevent(slug, s, {}, time=now) for s in subjects + subjects[:1]])
    v2 = await eventually_value(http, f"/api/v2/customers/{c['id']}/entitlements/{f['key']}", {"usage": 3})
    assert v2["balance"] == 7 and v2["hasAccess"] is True and list(v2["grantBalances"].values()) == [7]
    for subject in subjects:
        v1 = await value(http, f"/api/v1/subjects/{subject}/entitlements/{f['key']}")
        assert v1 == {k: v for k, v in v2.items() if k != "grantBalances"}
        listed = await ok(await http.get(f"/api/v1/subjects/{subject}/entitlements"))
        assert [e["id"] for e in listed] == [ent["id"]] and listed[0]["subjectKey"] == subject
    v1_customer = await value(http, f"/api/v1/customers/{key}/entitlements/{f['key']}")
    assert v1_customer["balance"] == 7
    access = await ok(await http.get(f"/api/v1/customers/{key}/access"))
    assert access["entitlements"][f["key"]]["balance"] == 7 and access["entitlements"][f["key"]]["id"] == ent["id"]


async def test_override_static_boolean_and_soft_limit(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "COUNT", value=None)
    metered = await feature(http, slug)
    flag = await feature(http, None)
    conf = await feature(http, None)
    c = await customer(http)
    base = f"/api/v2/customers/{c['id']}/entitlements"
    first = await ok(
        await http.post(base, json={"type": "metered", "featureKey": metered["key"], "usagePeriod": MONTH_2024}), 201
    )
    assert (await value(http, f"{base}/{metered['key']}"))["hasAccess"] is False
    override = await http.put(
        f"{base}/{metered['key']}/override",
        json={"type": "metered", "featureKey": metered["key"], "usagePeriod": MONTH_2024, "isSoftLimit": True},
    )
    assert override.status_code == 201, override.text
    second = override.json()
    assert second["id"] != first["id"] and second["isSoftLimit"] is True
    assert (await value(http, f"{base}/{metered['key']}"))["hasAccess"] is True
    # OpenMeter's override ends the old entitlement where the new one starts (it is not deleted).
    old = (await http.get(f"/api/v2/entitlements/{first['id']}")).json()
    assert old["activeTo"] == second["activeFrom"] and "deletedAt" not in old

    await ok(await http.post(base, json={"type": "boolean", "featureKey": flag["key"]}), 201)
    assert await value(http, f"{base}/{flag['key']}") == {"hasAccess": True}
    static = await ok(
        await http.post(base, json={"type": "static", "featureKey": conf["key"], "config": '{"seats": 5}'}), 201
    )
    assert static["config"] == '{"seats": 5}'
    assert await value(http, f"{base}/{conf['key']}") == {"hasAccess": True, "config": '{"seats": 5}'}
    bad = await http.post(base, json={"type": "static", "featureKey": unique("x"), "config": "[1]"})
    assert bad.status_code in (400, 404)
    access = await ok(await http.get(f"/api/v1/customers/{c['id']}/access"))
    assert set(access["entitlements"]) == {metered["key"], flag["key"], conf["key"]}
    v1_list = await ok(await http.get("/api/v1/entitlements", params={"feature": [flag["key"], conf["key"]]}))
    assert isinstance(v1_list, list) and {e["type"] for e in v1_list} == {"boolean", "static"}
    # The overridden (ended, not deleted) entitlement is listed too, unless inactive ones are excluded.
    v2_list = await ok(await http.get("/api/v2/entitlements", params={"customerIds": c["id"]}))
    assert v2_list["totalCount"] == 4
    active = await ok(await http.get("/api/v2/entitlements", params={"customerIds": c["id"], "excludeInactive": True}))
    assert active["totalCount"] == 3 and first["id"] not in {e["id"] for e in active["items"]}


async def test_history_windows_and_burndown(http: httpx.AsyncClient) -> None:
    slug = await meter(http, "SUM")
    f = await feature(http, slug)
    c = await customer(http)
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    base = f"/api/v2/customers/{c['id']}/entitlements"
    await ok(
        await http.post(
            base,
            json={
                "type": "metered",
                "featureKey": f["key"],
                "usagePeriod": MONTH_2024,
                "measureUsageFrom": rfc3339(start),
                "grants": [{"amount": 100, "effectiveAt": rfc3339(start)}],
            },
        ),
        201,
    )
    await ingest(
        http,
        [
            cloudevent(slug, c["key"], {"value": 10}, time=start + timedelta(minutes=10)),
            cloudevent(slug, c["key"], {"value": 5}, time=start + timedelta(hours=1, minutes=10)),
        ],
    )
    path = f"{base}/{f['key']}"
    await eventually_value(http, path, {"usage": 15})
    history = await ok(
        await http.get(
            f"{path}/history",
            params={"windowSize": "HOUR", "from": rfc3339(start), "to": rfc3339(start + timedelta(hours=2))},
        )
    )
    windows = history["windowedHistory"]
    assert [(w["usage"], w["balanceAtStart"]) for w in windows] == [(10, 100), (5, 90)]
    assert windows[0]["period"] == {"from": rfc3339(start), "to": rfc3339(start + timedelta(hours=1))}
    burndown = history["burndownHistory"]
    assert burndown and burndown[0]["balanceAtStart"] == 100
    assert sum(s["usage"] for s in burndown) == 15
    early = await http.get(
        f"{path}/history", params={"windowSize": "HOUR", "from": rfc3339(start - timedelta(hours=1))}
    )
    assert early.status_code == 400


def test_openmeter_sdk_customer_feature_and_value(tally: TallyProcess) -> None:
    client = Client(endpoint=tally.rest_url)
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        slug = unique("sdk_ent")
        assert (
            http.post("/api/v1/meters", json={"slug": slug, "eventType": slug, "aggregation": "COUNT"}).status_code
            == 201
        )
        key = unique("sdk_cust")
        created = client.customers.create(
            CustomerCreate(name="SDK", key=key, usage_attribution={"subject_keys": [key]})  # type: ignore[arg-type]
        )
        assert created.id and created.key == key
        feat = client.features.create(FeatureCreateInputs(key=unique("sdk_feat"), name="SDK feature", meter_slug=slug))
        assert feat.meter_slug == slug
        response = http.post(
            f"/api/v2/customers/{created.id}/entitlements",
            json={
                "type": "metered",
                "featureKey": feat.key,
                "usagePeriod": MONTH_2024,
                "issue": {"amount": 5},
                "measureUsageFrom": rfc3339(minute(datetime.now(UTC)) - timedelta(minutes=1)),
            },
        )
        assert response.status_code == 201, response.text
        deadline = time.monotonic() + 5
        got = client.customer_entitlement.get_customer_entitlement_value(key, feat.key)
        while got.balance != 5 and time.monotonic() < deadline:
            got = client.customer_entitlement.get_customer_entitlement_value(key, feat.key)
        assert got.has_access is True and got.balance == 5 and got.usage == 0
