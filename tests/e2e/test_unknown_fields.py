"""A misspelt or unknown JSON field is a 400 naming it, on every REST body (not silently dropped)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.metering import unique


def unknown(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    [violation] = response.json()["extensions"]["validationErrors"]
    assert violation["code"] == "unknown_field", violation
    return violation


async def test_misspelt_meter_field_is_refused_and_nothing_is_created(http: httpx.AsyncClient) -> None:
    slug = unique("typo")
    body: dict[str, Any] = {
        "slug": slug,
        "eventType": slug,
        "aggregation": "SUM",
        "valueProperty": "$.tokens",
        "groupby": {"model": "$.model"},
    }
    violation = unknown(await http.post("/api/v1/meters", json=body))
    assert violation["field"] == "groupby" and "'groupBy'" in violation["message"]
    assert (await http.get(f"/api/v1/meters/{slug}")).status_code == 404

    body["groupBy"] = body.pop("groupby")
    created = await http.post("/api/v1/meters", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["groupBy"] == {"model": "$.model"}
    # Proto field names are accepted as the transcoder accepts them.
    also = await http.post("/api/v1/meters", json={"slug": unique("snake"), "event_type": "x", "aggregation": "COUNT"})
    assert also.status_code == 201, also.text

    update = await http.put(f"/api/v1/meters/{slug}", json={"name": "n", "descripton": "typo"})
    violation = unknown(update)
    assert violation["field"] == "descripton" and "'description'" in violation["message"]


async def test_feature_and_entitlement_typos_are_refused_with_their_path(http: httpx.AsyncClient) -> None:
    slug = unique("uf")
    meter = await http.post("/api/v1/meters", json={"slug": slug, "eventType": slug, "aggregation": "COUNT"})
    assert meter.status_code == 201, meter.text
    violation = unknown(await http.post("/api/v1/features", json={"key": slug, "name": slug, "meterslug": slug}))
    assert violation["field"] == "meterslug" and "'meterSlug'" in violation["message"]
    assert (await http.post("/api/v1/features", json={"key": slug, "name": slug, "meterSlug": slug})).status_code == 201

    customer = await http.post(
        "/api/v1/customers", json={"name": slug, "key": slug, "usageAttribution": {"subjectKeys": [slug]}}
    )
    assert customer.status_code == 201, customer.text
    entitlement = {"type": "metered", "featureKey": slug, "usagePeriod": {"intervall": "MONTH"}}
    violation = unknown(await http.post(f"/api/v2/customers/{slug}/entitlements", json=entitlement))
    assert violation["field"] == "usagePeriod.intervall" and "'interval'" in violation["message"]


async def test_every_unknown_field_is_listed(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/v1/customers",
        json={"name": "x", "key": unique("c"), "colour": "red", "usageAttribution": {"subjects": []}},
    )
    assert response.status_code == 400
    fields = {v["field"] for v in response.json()["extensions"]["validationErrors"]}
    assert fields == {"colour", "usageAttribution.subjects"}
