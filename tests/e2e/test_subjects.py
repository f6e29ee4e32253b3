"""OpenMeter's v1 subject API (deprecated, still served) over REST through Envoy."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.metering import unique


async def _upsert(http: httpx.AsyncClient, *items: dict[str, Any]) -> list[dict[str, Any]]:
    response = await http.post("/api/v1/subjects", json=list(items))
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


async def test_an_upsert_changes_only_the_fields_it_carries(http: httpx.AsyncClient) -> None:
    # OpenMeter's upsertSubject: "If the subject exists, it will be partially updated with the
    # provided fields" (subject/httphandler/subject.go sets only the fields present in the body).
    key = unique("partial")
    full = {"key": key, "displayName": "Acme", "metadata": {"tier": "gold"}, "stripeCustomerId": "cus_123"}
    created = (await _upsert(http, full))[0]
    again = (await _upsert(http, {"key": key}))[0]
    assert again["id"] == created["id"]
    assert (again["displayName"], again.get("metadata"), again.get("stripeCustomerId")) == (
        "Acme",
        {"tier": "gold"},
        "cus_123",
    )
    renamed = (await _upsert(http, {"key": key, "displayName": "Acme Inc"}))[0]
    assert (renamed["displayName"], renamed.get("metadata"), renamed.get("stripeCustomerId")) == (
        "Acme Inc",
        {"tier": "gold"},
        "cus_123",
    )
    stored = (await http.get(f"/api/v1/subjects/{key}")).json()
    assert (stored["displayName"], stored.get("metadata"), stored.get("stripeCustomerId")) == (
        "Acme Inc",
        {"tier": "gold"},
        "cus_123",
    )


async def test_a_stripe_customer_id_must_be_one(http: httpx.AsyncClient) -> None:
    # OpenMeter's upsertSubject refuses a stripeCustomerId that does not start with cus_ (400).
    key = unique("stripe")
    refused = await http.post("/api/v1/subjects", json=[{"key": key, "stripeCustomerId": "acct_1"}])
    assert refused.status_code == 400, refused.text
    assert "stripeCustomerId" in refused.text
    assert (await http.get(f"/api/v1/subjects/{key}")).status_code == 404
    assert (await _upsert(http, {"key": key, "stripeCustomerId": "cus_1"}))[0]["stripeCustomerId"] == "cus_1"


async def test_a_customers_subject_keys_are_subjects(http: httpx.AsyncClient) -> None:
    # OpenMeter provisions a subject for each of a customer's usage-attribution keys when the
    # customer is created or updated (subject/service/hooks/customersubject.go EnsureSubjects);
    # a subject that exists already is left as it is.
    first, second, known = unique("attr"), unique("attr"), unique("attr")
    await _upsert(http, {"key": known, "displayName": "Known"})
    body = {"name": first, "key": first, "usageAttribution": {"subjectKeys": [first, known]}}
    response = await http.post("/api/v1/customers", json=body)
    assert response.status_code == 201, response.text
    customer = response.json()
    provisioned = await http.get(f"/api/v1/subjects/{first}")
    assert provisioned.status_code == 200, provisioned.text
    assert provisioned.json()["metadata"] == {"createdBy": "subject.provisioner", "customerId": customer["id"]}
    assert "displayName" not in provisioned.json()
    assert (await http.get(f"/api/v1/subjects/{known}")).json()["displayName"] == "Known"
    updated = await http.put(
        f"/api/v1/customers/{customer['id']}",
        json={**body, "usageAttribution": {"subjectKeys": [first, known, second]}},
    )
    assert updated.status_code == 200, updated.text
    assert (await http.get(f"/api/v1/subjects/{second}")).json()["metadata"]["customerId"] == customer["id"]


async def test_subjects_are_listed_in_creation_order(http: httpx.AsyncClient) -> None:
    # OpenMeter's listSubjects sorts by ID (subject/adapter/subject.go List: the default sort), and
    # IDs are ULIDs: the order subjects were made in, not their keys'.
    prefix = unique("listed")
    keys = [f"{prefix}_c", f"{prefix}_a", f"{prefix}_b"]
    for key in keys:
        await _upsert(http, {"key": key})
    listed = (await http.get("/api/v1/subjects")).json()
    assert [s["key"] for s in listed if s["key"].startswith(prefix)] == keys
