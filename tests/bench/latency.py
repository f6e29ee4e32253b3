"""Latencies the tests used to assert with a stopwatch, measured here instead (tests assert order
and eventual state; these say how long "eventually" is on this machine):

- `entitlement_value_fresh_p50_ms`, `_p99_ms`: an event acknowledged -> the entitlement's /value counts
  it, in the embedded default (apart processes: `entitlement_value_staleness_p99_ms_split`);
- `ingest_p99_ms_webhook_stalled`: ingest latency while a webhook receiver holds every delivery
  open (deliveries run beside ingest, never in front of it).

    python -m tests.bench.latency      # against a fresh embedded stack, prints the figures
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.metering import cloudevent, rfc3339
from tests.support.stack import TallyProcess, create_database, drop_created_databases
from tests.support.webhooks import WebhookReceiver


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _ok(response: httpx.Response, status: int = 201) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


async def value_freshness(stack: TallyProcess, samples: int) -> tuple[float, float]:
    """p50 and p99 of ack -> first /value that counts the event (ms), one event at a time."""
    slug = f"bench_fresh_{uuid.uuid4().hex[:8]}"
    key = f"bench_fresh_cust_{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
        await _ok(await http.post("/api/v1/meters", json={"slug": slug, "eventType": slug, "aggregation": "COUNT"}))
        await _ok(await http.post("/api/v1/features", json={"key": slug, "name": slug, "meterSlug": slug}))
        await _ok(
            await http.post(
                "/api/v1/customers", json={"name": key, "key": key, "usageAttribution": {"subjectKeys": [key]}}
            )
        )
        await _ok(
            await http.post(
                f"/api/v2/customers/{key}/entitlements",
                json={
                    "type": "metered",
                    "featureKey": slug,
                    "usagePeriod": {"interval": "MONTH", "anchor": "2024-01-01T00:00:00Z"},
                    "measureUsageFrom": rfc3339(start),
                    "grants": [{"amount": 1_000_000, "effectiveAt": rfc3339(start)}],
                },
            )
        )
        path = f"/api/v2/customers/{key}/entitlements/{slug}/value"
        took: list[float] = []
        for n in range(1, samples + 1):
            response = await http.post(
                "/api/v1/events",
                json=cloudevent(slug, key, {}, time=datetime.now(UTC)),
                headers={"content-type": "application/cloudevents+json"},
            )
            assert response.status_code == 204, response.text
            acked = time.perf_counter()
            while (await _ok(await http.get(path), 200))["usage"] < n:
                await asyncio.sleep(0.002)
            took.append((time.perf_counter() - acked) * 1000)
    return statistics.median(took), percentile(took, 0.99)


async def ingest_with_stalled_receiver(stack: TallyProcess, calls: int) -> float:
    """p99 of single-event ingest (ms) while every webhook delivery is held open by the receiver."""
    receiver = await WebhookReceiver().start()
    gate = receiver.hold("/stalled")
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=60) as http:
            channel = await _ok(
                await http.post(
                    "/api/v1/notification/channels",
                    json={"type": "WEBHOOK", "name": "bench-stalled", "url": receiver.url("/stalled")},
                )
            )
            rule = await _ok(
                await http.post(
                    "/api/v1/notification/rules",
                    json={"type": "entitlements.reset", "name": "bench-stalled", "channels": [channel["id"]]},
                )
            )
            for _ in range(8):  # several deliveries in flight, all held
                await http.post(f"/api/v1/notification/rules/{rule['id']}/test")
            await receiver.wait_arrived("/stalled", 1)
            took: list[float] = []
            for n in range(calls):
                event = cloudevent("bench_stalled", "s", {}, id=f"stalled-{uuid.uuid4().hex}-{n}")
                started = time.perf_counter()
                response = await http.post(
                    "/api/v1/events", json=event, headers={"content-type": "application/cloudevents+json"}
                )
                took.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 204, response.text
            return percentile(took, 0.99)
    finally:
        gate.set()
        await receiver.stop()


def main() -> None:
    from pathlib import Path
    from tempfile import mkdtemp

    stack = TallyProcess(
        data_dir=Path(mkdtemp(prefix="tally-bench-latency-")), postgres_url=asyncio.run(create_database())
    )
    stack.extra_env = {"TALLY_LOG_LEVEL": "warning"}
    stack.start(180)
    try:
        p50, p99 = asyncio.run(value_freshness(stack, 200))
        print(f"entitlement_value_fresh_p50_ms = {p50:.2f}")
        print(f"entitlement_value_fresh_p99_ms = {p99:.2f}")
        print(f"ingest_p99_ms_webhook_stalled = {asyncio.run(ingest_with_stalled_receiver(stack, 500)):.2f}")
    finally:
        stack.stop()
        asyncio.run(drop_created_databases())


if __name__ == "__main__":
    sys.exit(main())
