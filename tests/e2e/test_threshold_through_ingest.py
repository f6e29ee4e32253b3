"""A balance threshold crossed by real usage: ingest -> sink -> balance worker -> notification rule ->
signed webhook, all through Envoy and the session's Tally, to a real receiver in this process.

One delivery per threshold per usage period: usage that stays within a crossed threshold sends
nothing more; crossing the next threshold sends exactly one more.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.metering import cloudevent, create_meter, ingest, unique
from tests.support.stack import wait_for
from tests.support.webhooks import WebhookReceiver


async def _ok(response: httpx.Response, status: int = 201) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def _metered_customer(http: httpx.AsyncClient) -> tuple[str, str, str]:
    """A SUM meter of `tokens`, a feature on it and a customer whose usage subject is its key:
    (event type, feature key, customer key)."""
    event_type = unique("usage")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.tokens")
    feature = unique("feature")
    await _ok(await http.post("/api/v1/features", json={"key": feature, "name": feature, "meterSlug": event_type}))
    customer = unique("customer")
    await _ok(
        await http.post(
            "/api/v1/customers",
            json={"name": customer, "key": customer, "usageAttribution": {"subjectKeys": [customer]}},
        )
    )
    return event_type, feature, customer


async def test_threshold_crossing_through_real_ingest(http: httpx.AsyncClient) -> None:
    receiver = await WebhookReceiver().start()
    try:
        event_type, feature, customer = await _metered_customer(http)
        entitlement = await _ok(
            await http.post(
                f"/api/v2/customers/{customer}/entitlements",
                json={
                    "type": "metered",
                    "featureKey": feature,
                    "usagePeriod": {"interval": "MONTH"},
                    "issue": {"amount": 100},
                    "measureUsageFrom": "CURRENT_PERIOD_START",
                },
            )
        )
        channel = await _ok(
            await http.post(
                "/api/v1/notification/channels",
                json={"type": "WEBHOOK", "name": unique("hook"), "url": receiver.url("/balance")},
            )
        )
        receiver.secrets["/balance"] = channel["signingSecret"]
        await _ok(
            await http.post(
                "/api/v1/notification/rules",
                json={
                    "type": "entitlements.balance.threshold",
                    "name": unique("rule"),
                    "channels": [channel["id"]],
                    "features": [feature],
                    "thresholds": [
                        {"value": 50, "type": "usage_percentage"},
                        {"value": 75, "type": "usage_percentage"},
                    ],
                },
            )
        )
        # Usage counts from the entitlement's current period start: the minute it was created in
        # (the anchor defaults to the creation time, truncated to the minute). Events timed by the
        # test's own clock ("a few seconds ago") fell before that start whenever the entitlement was
        # created in the first seconds of a minute, and then counted nothing. Timed from the
        # entitlement's own period they are inside it, whatever the clock says.
        period = entitlement["currentUsagePeriod"]
        now = datetime.fromisoformat(period["from"].replace("Z", "+00:00"))
        assert now <= datetime.now(UTC) < datetime.fromisoformat(period["to"].replace("Z", "+00:00"))

        await ingest(http, [cloudevent(event_type, customer, {"tokens": 30}, time=now) for _ in range(2)])
        first = await receiver.wait_for("/balance", 1, timeout=30)
        assert first[0].verified, "signed with the channel's secret (Standard Webhooks)"
        body = first[0].body
        assert body["type"] == "entitlements.balance.threshold"
        assert body["data"]["threshold"] == {"value": 50, "type": "usage_percentage"}
        assert body["data"]["entitlement"]["id"] == entitlement["id"]
        assert body["data"]["value"]["usage"] == 60
        assert body["data"]["value"]["balance"] == 40

        # Still between 50 % and 75 %: nothing new.
        await ingest(http, cloudevent(event_type, customer, {"tokens": 5}, time=now))

        async def settled() -> bool:
            value = (await http.get(f"/api/v2/customers/{customer}/entitlements/{feature}/value")).json()
            return value["usage"] == 65

        await wait_for(settled, timeout=15)
        await asyncio.sleep(2.0)
        assert len(receiver.successes("/balance")) == 1

        # Past 75 %: exactly one more, for the 75 % threshold.
        await ingest(http, cloudevent(event_type, customer, {"tokens": 15}, time=now))
        both = await receiver.wait_for("/balance", 2, timeout=30)
        assert both[1].body["data"]["threshold"] == {"value": 75, "type": "usage_percentage"}
        assert both[1].webhook_id != both[0].webhook_id
        await asyncio.sleep(2.0)
        assert len(receiver.successes("/balance")) == 2

        async def recorded() -> list | None:
            events = (await http.get("/api/v1/notification/events", params={"feature": feature})).json()
            items = events.get("items", events) if isinstance(events, dict) else events
            states = [s["state"] for item in items for s in item["deliveryStatus"]]
            return items if len(items) == 2 and set(states) == {"SUCCESS"} else None

        await wait_for(recorded, timeout=15)
    finally:
        await receiver.stop()


async def test_reset_webhook_carries_the_value_after_the_reset(http: httpx.AsyncClient) -> None:
    """entitlements.reset sends the entitlement's whole value right after the reset (OpenMeter builds
    it from the reset's balance snapshot): hasAccess (required by the schema), balance, usage,
    overage and totalAvailableGrantAmount, the same figures the value endpoint shows."""
    receiver = await WebhookReceiver().start()
    try:
        event_type, feature, customer = await _metered_customer(http)
        # The customer's usage subject exists as a subject entity: the payload shows it whole.
        subjects = await http.post("/api/v1/subjects", json=[{"key": customer, "displayName": "Acme"}])
        assert subjects.status_code == 200, subjects.text
        [subject] = subjects.json()
        # Measured from a few minutes ago, so a reset now is after the start of measurement.
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
        await _ok(
            await http.post(
                f"/api/v2/customers/{customer}/entitlements",
                json={
                    "type": "metered",
                    "featureKey": feature,
                    "usagePeriod": {"interval": "MONTH", "anchor": start.isoformat()},
                    "issue": {"amount": 100},
                    "measureUsageFrom": start.isoformat(),
                },
            )
        )
        channel = await _ok(
            await http.post(
                "/api/v1/notification/channels",
                json={"type": "WEBHOOK", "name": unique("hook"), "url": receiver.url("/reset")},
            )
        )
        receiver.secrets["/reset"] = channel["signingSecret"]
        rule = await _ok(
            await http.post(
                "/api/v1/notification/rules",
                json={
                    "type": "entitlements.reset",
                    "name": unique("rule"),
                    "channels": [channel["id"]],
                    "features": [feature],
                },
            )
        )
        await ingest(http, cloudevent(event_type, customer, {"tokens": 30}, time=start + timedelta(minutes=5)))

        async def used() -> bool:
            value = (await http.get(f"/api/v2/customers/{customer}/entitlements/{feature}/value")).json()
            return value["usage"] == 30

        await wait_for(used, timeout=15)
        reset = await http.post(f"/api/v2/customers/{customer}/entitlements/{feature}/reset", json={})
        assert reset.status_code == 204, reset.text
        [delivery] = await receiver.wait_for("/reset", 1, timeout=30)
        assert delivery.verified
        assert delivery.body["type"] == "entitlements.reset"
        after = (await http.get(f"/api/v2/customers/{customer}/entitlements/{feature}/value")).json()
        assert after["usage"] == 0 and after["balance"] == 100
        assert delivery.body["data"]["value"] == {
            "hasAccess": True,
            "balance": 100,
            "usage": 0,
            "overage": 0,
            "totalAvailableGrantAmount": 100,
        }
        # OpenMeter's payload subject is the API's Subject (id, key, createdAt, updatedAt required).
        sent = delivery.body["data"]["subject"]
        assert {k: sent.get(k) for k in ("id", "key", "displayName", "createdAt")} == {
            k: subject.get(k) for k in ("id", "key", "displayName", "createdAt")
        }
        events = (
            await http.get("/api/v1/notification/events", params={"subject": subject["id"], "rule": rule["id"]})
        ).json()
        assert [e["id"] for e in events["items"]] == [delivery.webhook_id]
        assert events["items"][0]["annotations"]["event.subject.id"] == subject["id"]
    finally:
        await receiver.stop()
