"""An entitlement's value after new usage is fresh, never served stale, in every topology Tally runs in.

The value cache may only answer where it hears of every change. These tests hold Tally to the
promise a user sees, whatever the rule that switches the cache on or off:
- embedded default (in-process bus): the 204 means stored, so the very next /value counts the event;
- Kafka, api and sink in one process: the value counts the event once the sink has stored it;
- Kafka, api and sink apart (two `App`s wired by server/wiring in this process, one chDB store
  between them, as separate Deployments share a ClickHouse): the api never sees the sink's flush in
  memory, and still its value must count the event once it is stored; a change nobody announced
  (SQL by hand) must reach it too.

"Once stored" is the barrier of tests/support/barrier.py (markers sent after the event, listed by
the event store); after it, a value is polled until it counts the event (a cache invalidated across
processes may lag a little) and must then keep counting it. A value cached before the event and
never invalidated never gets there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from server.app import App
from server.config import KafkaSettings, NotifySettings, Settings, SinkSettings
from tests.support.barrier import settle
from tests.support.metering import cloudevent, create_meter, ingest, rfc3339, unique
from tests.support.services import Tansu, free_port
from tests.support.stack import TallyProcess, create_database, wait_for


async def _entitlement(http: httpx.AsyncClient) -> tuple[str, str, str]:
    """A COUNT meter, a feature on it, a customer with a metered entitlement and 3 granted; returns
    (event type, customer key, value path)."""
    slug = unique("fresh")
    await create_meter(http, slug=slug, eventType=slug, aggregation="COUNT")
    feature = unique("fresh_feat")
    response = await http.post("/api/v1/features", json={"key": feature, "name": feature, "meterSlug": slug})
    assert response.status_code == 201, response.text
    key = unique("fresh_cust")
    response = await http.post(
        "/api/v1/customers", json={"name": key, "key": key, "usageAttribution": {"subjectKeys": [key]}}
    )
    assert response.status_code == 201, response.text
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    response = await http.post(
        f"/api/v2/customers/{key}/entitlements",
        json={
            "type": "metered",
            "featureKey": feature,
            "usagePeriod": {"interval": "MONTH", "anchor": "2024-01-01T00:00:00Z"},
            "measureUsageFrom": rfc3339(start),
            "grants": [{"amount": 3, "effectiveAt": rfc3339(start)}],
        },
    )
    assert response.status_code == 201, response.text
    return slug, key, f"/api/v2/customers/{key}/entitlements/{feature}/value"


async def _balance(http: httpx.AsyncClient, path: str) -> float:
    response = await http.get(path)
    assert response.status_code == 200, response.text
    value: float = response.json()["balance"]
    return value


async def _prime(http: httpx.AsyncClient, path: str) -> None:
    """Reads the value twice before any usage: a cache, if there is one, now holds balance 3."""
    assert await _balance(http, path) == 3
    assert await _balance(http, path) == 3


async def _fresh_once_stored(http: httpx.AsyncClient, path: str, partitions: int, expected: float) -> None:
    await settle(http, partitions=partitions)

    async def counted() -> bool:
        return await _balance(http, path) == expected

    await wait_for(counted, timeout=30, interval=0.1)
    for _ in range(3):  # and it stays counted
        assert await _balance(http, path) == expected


async def test_embedded_value_counts_the_event_as_soon_as_it_is_acknowledged(http: httpx.AsyncClient) -> None:
    slug, key, path = await _entitlement(http)
    await _prime(http, path)
    await ingest(http, [cloudevent(slug, key, {}, time=datetime.now(UTC))])
    # In-process, 204 means stored: no wait at all.
    assert await _balance(http, path) == 2
    await ingest(http, [cloudevent(slug, key, {}, time=datetime.now(UTC))])
    assert await _balance(http, path) == 1


async def test_kafka_value_counts_the_event_once_stored(tally_kafka: TallyProcess) -> None:
    async with httpx.AsyncClient(base_url=tally_kafka.rest_url, timeout=30) as http:
        slug, key, path = await _entitlement(http)
        await _prime(http, path)
        await ingest(http, [cloudevent(slug, key, {}, time=datetime.now(UTC))])
        await _fresh_once_stored(http, path, tally_kafka.partitions, 2)
        await ingest(http, [cloudevent(slug, key, {}, time=datetime.now(UTC))])
        await _fresh_once_stored(http, path, tally_kafka.partitions, 1)


def _settings(root: Path, roles: list[str], postgres_url: str, brokers: str, stack_id: str, events: Path) -> Settings:
    data_dir = root / "-".join(roles)
    return Settings(
        data_dir=data_dir,
        roles=roles,
        postgres_url=postgres_url,
        clickhouse_url=f"chdb://{events}",
        kafka_brokers=brokers,
        # Topics and groups of this pair alone (the session's broker is shared with other stacks).
        kafka=KafkaSettings(
            topic=f"tally.events.{stack_id}",
            session_timeout_ms=6000,
            announcements_topic=f"tally.announcements.{stack_id}",
            balance_consumer_group=f"tally-balance-{stack_id}",
        ),
        sink=SinkSettings(
            consumer_group=f"tally-sink-{stack_id}", flush_interval_ms=20, catalog_refresh_s=0.5, backfill_delay_s=1
        ),
        notify=NotifySettings(allowed_hosts=["127.0.0.1"]),
        rest_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        envoy_admin_port=free_port(),
        log_level="warning",
    )


@pytest_asyncio.fixture
async def apart(
    postgres_ready: None, tansu: Tansu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Settings]:
    """The api role and the sink (with balance and notify) as two Apps wired by server/wiring,
    sharing Postgres, the broker and one event store; returns the api's settings."""
    for name in [name for name in os.environ if name.startswith("TALLY_")]:
        monkeypatch.delenv(name)  # the settings below are the whole configuration
    url = await create_database()
    stack_id = unique("apart")
    events = tmp_path / "events"
    sink = App(_settings(tmp_path, ["sink", "balance", "notify"], url, tansu.brokers, stack_id, events))
    api = App(_settings(tmp_path, ["api"], url, tansu.brokers, stack_id, events))
    started: list[App] = []
    try:
        for app in (sink, api):
            await app.start()
            started.append(app)
        yield api.settings
    finally:
        for app in reversed(started):
            await app.stop()


async def test_value_counts_the_event_with_api_and_sink_apart(apart: Settings) -> None:
    partitions = apart.kafka.partitions
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{apart.rest_port}", timeout=30) as http:
        slug, key, path = await _entitlement(http)
        await _prime(http, path)
        await ingest(http, [cloudevent(slug, key, {}, time=datetime.now(UTC))])
        await _fresh_once_stored(http, path, partitions, 2)
        await ingest(http, [cloudevent(slug, key, {}, time=datetime.now(UTC))])
        await _fresh_once_stored(http, path, partitions, 1)


async def test_a_change_nobody_announced_reaches_the_api_value_cache(apart: Settings) -> None:
    """A write with no announcement behind it (an operator's SQL, or a process that died between its
    commit and its announcement) still reaches the api's cached value: Postgres notifies every
    listening api process when the write commits (migration 0015, adapters/postgres/change_listener.py)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{apart.rest_port}", timeout=30) as http:
        _, key, path = await _entitlement(http)
        await _prime(http, path)
        assert apart.postgres_url is not None
        connection = await asyncpg.connect(apart.postgres_url)
        try:
            # The grant voided from the moment it took effect: it never counted.
            voided = await connection.execute(
                "UPDATE grants g SET voided_at = g.effective_at FROM entitlements e, customers c"
                " WHERE g.namespace = e.namespace AND g.entitlement_id = e.id"
                " AND c.namespace = e.namespace AND c.id = e.customer_id AND c.key = $1",
                key,
            )
            assert voided == "UPDATE 1"
        finally:
            await connection.close()

        async def voided_counts() -> bool:
            return await _balance(http, path) == 0

        await wait_for(voided_counts, timeout=30, interval=0.1)
