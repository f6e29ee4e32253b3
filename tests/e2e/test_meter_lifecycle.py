"""Meter CRUD rules that protect what depends on a meter, over REST through Envoy (OpenMeter's
meter/service/manage.go): a meter used by a feature or an entitlement stays, and so do the group-by
keys its features filter on."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.metering import create_meter, unique


async def _created(response: httpx.Response) -> Any:
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_meter_used_by_a_feature_or_an_entitlement_is_not_deleted(http: httpx.AsyncClient) -> None:
    slug = unique("in_use")
    meter = await create_meter(http, slug=slug, eventType=slug, aggregation="COUNT")
    feature = await _created(
        await http.post("/api/v1/features", json={"key": unique("feat"), "name": "f", "meterSlug": slug})
    )
    refused = await http.delete(f"/api/v1/meters/{slug}")
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await http.get(f"/api/v1/meters/{slug}")).json().get("deletedAt") is None

    # An entitlement keeps the meter even once its feature is archived.
    key = unique("cust")
    customer = await _created(
        await http.post("/api/v1/customers", json={"name": key, "key": key, "usageAttribution": {"subjectKeys": [key]}})
    )
    entitlement = await _created(
        await http.post(
            f"/api/v2/customers/{customer['id']}/entitlements",
            json={"type": "metered", "featureKey": feature["key"], "usagePeriod": {"interval": "MONTH"}},
        )
    )
    assert (await http.delete(f"/api/v1/features/{feature['id']}")).status_code == 204
    assert (await http.delete(f"/api/v1/meters/{meter['id']}")).status_code == 409

    deleted = await http.delete(f"/api/v2/customers/{customer['id']}/entitlements/{entitlement['id']}")
    assert deleted.status_code == 204, deleted.text
    assert (await http.delete(f"/api/v1/meters/{slug}")).status_code == 204


async def test_a_group_by_key_a_feature_filters_on_is_not_dropped(http: httpx.AsyncClient) -> None:
    slug = unique("filtered")
    group_by = {"model": "$.model", "region": "$.region"}
    await create_meter(http, slug=slug, eventType=slug, aggregation="COUNT", groupBy=group_by)
    await _created(
        await http.post(
            "/api/v1/features",
            json={"key": unique("feat"), "name": "f", "meterSlug": slug, "meterGroupByFilters": {"model": "gpt"}},
        )
    )
    dropped = await http.put(f"/api/v1/meters/{slug}", json={"groupBy": {"region": "$.region"}})
    assert dropped.status_code == 409, dropped.text
    assert (await http.get(f"/api/v1/meters/{slug}")).json()["groupBy"] == group_by
    # Keys no feature filters on may go; new ones may come.
    kept = await http.put(f"/api/v1/meters/{slug}", json={"groupBy": {"model": "$.model", "tier": "$.tier"}})
    assert kept.status_code == 200, kept.text
    assert kept.json()["groupBy"] == {"model": "$.model", "tier": "$.tier"}


async def test_meters_are_listed_by_key_unless_asked_otherwise(http: httpx.AsyncClient) -> None:
    # OpenMeter's listMeters: orderBy (key, name, aggregation, createdAt, updatedAt) defaults to
    # key, order to ASC.
    prefix = unique("order")
    slugs = [f"{prefix}_b", f"{prefix}_c", f"{prefix}_a"]
    names = {f"{prefix}_b": "Zeta", f"{prefix}_c": "Alpha", f"{prefix}_a": "Mu"}
    for slug in slugs:
        await create_meter(http, slug=slug, eventType=slug, aggregation="COUNT", name=names[slug])

    async def listed(**params: str) -> list[str]:
        response = await http.get("/api/v1/meters", params=params)
        assert response.status_code == 200, response.text
        return [m["slug"] for m in response.json() if m["slug"].startswith(prefix)]

    assert await listed() == sorted(slugs)
    assert await listed(order="DESC") == sorted(slugs, reverse=True)
    assert await listed(orderBy="createdAt") == slugs
    assert await listed(orderBy="name") == [f"{prefix}_c", f"{prefix}_a", f"{prefix}_b"]
    for params in ({"orderBy": "slug"}, {"order": "UP"}):
        refused = await http.get("/api/v1/meters", params=params)
        assert refused.status_code == 400, (params, refused.text)


async def test_an_update_replaces_the_name_and_description(http: httpx.AsyncClient) -> None:
    # OpenMeter's PUT is a replacement (meter/httphandler/meter.go UpdateMeter): a name left out
    # becomes the slug again, a description left out is cleared.
    slug = unique("replace")
    await create_meter(http, slug=slug, eventType=slug, aggregation="COUNT", name="Calls", description="API calls")
    renamed = await http.put(f"/api/v1/meters/{slug}", json={"name": "Requests"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Requests" and "description" not in renamed.json()
    described = await http.put(f"/api/v1/meters/{slug}", json={"description": "All requests"})
    assert (described.json()["name"], described.json()["description"]) == (slug, "All requests")
    stored = (await http.get(f"/api/v1/meters/{slug}")).json()
    assert (stored["name"], stored["description"]) == (slug, "All requests")


async def test_deleting_a_deleted_meter_by_id_changes_nothing(http: httpx.AsyncClient) -> None:
    # OpenMeter's DeleteMeter finds a deleted meter by its ID and returns without a change (204),
    # so a retried DELETE succeeds; its slug names no live meter any more (404).
    slug = unique("twice")
    meter = await create_meter(http, slug=slug, eventType=slug, aggregation="COUNT")
    assert (await http.delete(f"/api/v1/meters/{meter['id']}")).status_code == 204
    deleted_at = (await http.get(f"/api/v1/meters/{meter['id']}")).json()["deletedAt"]
    again = await http.delete(f"/api/v1/meters/{meter['id']}")
    assert again.status_code == 204, again.text
    assert (await http.get(f"/api/v1/meters/{meter['id']}")).json()["deletedAt"] == deleted_at
    assert (await http.delete(f"/api/v1/meters/{slug}")).status_code == 404
