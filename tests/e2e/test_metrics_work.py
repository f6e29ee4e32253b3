"""Prometheus metrics of the work users cannot see otherwise: refused events, balance recomputations,
webhook attempts. Read from a running Tally's /metrics as Prometheus would."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import TallyProcess, wait_for
from tests.support.webhooks import WebhookReceiver


async def sample(tally: TallyProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples matching `labels` (0 when there are none yet)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{tally.metrics_port}/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                total += item.value
    return total


async def test_refused_events_are_counted_by_error(http: httpx.AsyncClient, tally: TallyProcess) -> None:
    before = await sample(tally, "tally_ingest_rejected_total", error="ValidationError")
    bad = {"specversion": "1.0", "id": "x", "source": "t", "type": "metrics_bad"}  # no subject
    response = await http.post("/api/v1/events", json=bad, headers={"content-type": "application/cloudevents+json"})
    assert response.status_code == 400
    assert await sample(tally, "tally_ingest_rejected_total", error="ValidationError") == before + 1
    # An accepted event is not counted as refused.
    good = {**bad, "subject": "s", "id": f"ok-{uuid.uuid4().hex}"}
    response = await http.post("/api/v1/events", json=good, headers={"content-type": "application/cloudevents+json"})
    assert response.status_code == 204
    assert await sample(tally, "tally_ingest_rejected_total", error="ValidationError") == before + 1


async def test_balance_work_and_webhook_attempts_are_counted(http: httpx.AsyncClient, tally: TallyProcess) -> None:
    receiver = await WebhookReceiver().start()
    try:
        suffix = uuid.uuid4().hex[:8]
        event_type, subject = f"metrics_{suffix}", f"metrics-{suffix}"
        assert (
            await http.post(
                "/api/v1/meters", json={"slug": f"m_{suffix}", "aggregation": "COUNT", "eventType": event_type}
            )
        ).status_code == 201
        customer = {"name": suffix, "key": f"c_{suffix}", "usageAttribution": {"subjectKeys": [subject]}}
        assert (await http.post("/api/v1/customers", json=customer)).status_code == 201
        feature = {"key": f"f_{suffix}", "name": suffix, "meterSlug": f"m_{suffix}"}
        assert (await http.post("/api/v1/features", json=feature)).status_code == 201
        entitlement = {"type": "metered", "featureKey": f"f_{suffix}", "usagePeriod": {"interval": "MONTH"}}
        response = await http.post(f"/api/v2/customers/c_{suffix}/entitlements", json=entitlement)
        assert response.status_code == 201, response.text

        recomputed = await sample(tally, "tally_balance_recomputed_total")
        timed = await sample(tally, "tally_balance_recompute_seconds_count")
        event = {"specversion": "1.0", "id": suffix, "source": "t", "type": event_type, "subject": subject}
        response = await http.post(
            "/api/v1/events", json=event, headers={"content-type": "application/cloudevents+json"}
        )
        assert response.status_code == 204

        async def recomputed_more() -> bool:
            return await sample(tally, "tally_balance_recomputed_total") > recomputed

        await wait_for(recomputed_more, timeout=15)
        assert await sample(tally, "tally_balance_recompute_seconds_count") > timed

        channel = (
            await http.post(
                "/api/v1/notification/channels",
                json={"type": "WEBHOOK", "name": suffix, "url": receiver.url(f"/{suffix}")},
            )
        ).json()
        receiver.secrets[f"/{suffix}"] = channel["signingSecret"]
        rule = await http.post(
            "/api/v1/notification/rules",
            json={"type": "entitlements.reset", "name": suffix, "channels": [channel["id"]]},
        )
        assert rule.status_code == 201, rule.text
        successes = await sample(tally, "tally_webhook_attempts_total", result="success", state="SUCCESS")
        assert (await http.post(f"/api/v1/notification/rules/{rule.json()['id']}/test")).status_code == 201

        async def delivered() -> bool:
            return await sample(tally, "tally_webhook_attempts_total", result="success", state="SUCCESS") > successes

        await wait_for(delivered, timeout=15)
        assert any(d.path == f"/{suffix}" for d in receiver.deliveries)
        assert await sample(tally, "tally_webhook_attempt_seconds_count") >= 1
    finally:
        await receiver.stop()


async def test_embedded_engine_caches_are_reported(http: httpx.AsyncClient, tally: TallyProcess) -> None:
    # A stored event and a meter query over it: the engine reads the events table's marks.
    suffix = uuid.uuid4().hex[:8]
    event = {"specversion": "1.0", "id": suffix, "source": "t", "type": f"cache_{suffix}", "subject": "s"}
    response = await http.post("/api/v1/events", json=event, headers={"content-type": "application/cloudevents+json"})
    assert response.status_code == 204
    meter = {"slug": f"cache_{suffix}", "aggregation": "COUNT", "eventType": f"cache_{suffix}"}
    assert (await http.post("/api/v1/meters", json=meter)).status_code == 201

    async def counted() -> bool:
        query = await http.get(f"/api/v1/meters/cache_{suffix}/query")
        return query.status_code == 200 and bool(query.json()["data"])

    await wait_for(counted, timeout=15)
    # Reported every 15 s by the process itself; the mark cache holds what the queries read.
    await wait_for(lambda: sample(tally, "tally_embedded_engine_cache_bytes", cache="mark"), timeout=40, interval=1)
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{tally.metrics_port}/metrics")).text
    reported = {
        item.labels["cache"]
        for family in text_string_to_metric_families(text)
        for item in family.samples
        if item.name == "tally_embedded_engine_cache_bytes"
    }
    assert reported == {"mark", "primary_index", "index_mark", "query_condition", "uncompressed", "query"}
