"""Faults under load: a backing service fails while clients ingest, and nothing acknowledged is lost
or counted twice. Each test starts its own Tally (and broker) and is bounded in time.

The client here behaves as any client should: a batch that was not acknowledged with 204 is sent
again, with the same event ids, until it is.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from tests.support.barrier import settle
from tests.support.metering import cloudevent, create_meter, query, total, unique
from tests.support.services import POSTGRES_ADMIN_URL, Tansu, free_port
from tests.support.stack import TallyProcess, create_database


class RetryingClient:
    """Sends each batch until it is acknowledged; records the statuses it saw."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.statuses: list[int] = []

    async def send(self, batch: list[dict], deadline: float) -> None:
        while True:
            try:
                response = await self.http.post(
                    "/api/v1/events", json=batch, headers={"content-type": "application/cloudevents-batch+json"}
                )
                self.statuses.append(response.status_code)
                if response.status_code == 204:
                    return
                assert response.status_code == 503, response.text  # retryable, and said so
            except httpx.HTTPError:
                self.statuses.append(0)
            assert time.monotonic() < deadline, "Tally did not recover in time"
            await asyncio.sleep(0.2)


_NOW = datetime.now(UTC) - timedelta(minutes=1)


def _batch(event_type: str, number: int, size: int = 200) -> list[dict]:
    """Batch `number` of a test's stream: fixed ids, so a resend is recognised as the same events."""
    return [cloudevent(event_type, f"s{number % 4}", {"n": 1}, time=_NOW, id=f"{number}-{i}") for i in range(size)]


def _batches(event_type: str, count: int, size: int = 200) -> list[list[dict]]:
    return [_batch(event_type, b, size) for b in range(count)]


async def _restart_database(name: str, outage_s: float) -> None:
    """What a Postgres restart looks like to Tally, confined to its own database: every connection
    is dropped and new ones are refused for a while (the shared server keeps serving others)."""
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        await asyncio.sleep(outage_s)
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()


async def test_postgres_restart_under_load(postgres_ready: None, tmp_path: Path) -> None:
    """Postgres goes away twice mid-ingest: ingest answers 503 meanwhile, then recovers by itself."""
    url = await create_database()
    stack = TallyProcess(data_dir=tmp_path / "tally", postgres_url=url)
    await asyncio.to_thread(stack.start, 120)
    assert stack.process is not None
    pid = stack.process.pid
    try:
        event_type = unique("pg_restart")
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.n")
            client = RetryingClient(http)
            deadline = time.monotonic() + 90

            async def outages() -> None:
                for _ in range(2):
                    await asyncio.sleep(0.5)
                    await _restart_database(url.rsplit("/", 1)[1], outage_s=1.0)

            chaos = asyncio.create_task(outages())
            sent = 0
            # Steady load for as long as the outages last, and a little after.
            while not chaos.done() or sent < 10:
                await client.send(_batch(event_type, sent), deadline)
                sent += 1
                await asyncio.sleep(0.05)
            await chaos
            expected = float(sent * 200)
            await settle(http, partitions=stack.partitions)
            assert total(await query(http, event_type)) == expected
            assert 503 in client.statuses, "the outage was seen, and answered as retryable"
            assert stack.process.pid == pid and stack.process.poll() is None, "recovered without a restart"
    finally:
        await asyncio.to_thread(stack.stop)


async def test_kafka_broker_outage(postgres_ready: None, tmp_path: Path) -> None:
    """The broker stops answering (frozen, as in a partition or a stalled node): ingest answers 503
    and acknowledges nothing, then recovers by itself when the broker is back.

    The broker is frozen rather than killed because the test broker keeps its log in memory only;
    Apache Kafka keeps topics and offsets across a restart, which freezing models faithfully."""
    broker = Tansu(free_port()).start(tmp_path / "tansu.log")
    assert broker.process is not None
    stack = TallyProcess(
        data_dir=tmp_path / "tally", postgres_url=await create_database(), kafka_brokers=broker.brokers
    )
    stack.extra_env = {"TALLY_KAFKA__REQUEST_TIMEOUT_MS": "2000"}
    await asyncio.to_thread(stack.start, 120)
    try:
        event_type = unique("broker_outage")
        before, during = _batches(event_type, 5), _batches(event_type, 5)
        for batch in during:
            for event in batch:
                event["id"] = "during-" + event["id"]
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.n")
            client = RetryingClient(http)
            for batch in before:
                await client.send(batch, time.monotonic() + 30)

            os.kill(broker.process.pid, signal.SIGSTOP)
            try:
                response = await http.post(
                    "/api/v1/events", json=during[0], headers={"content-type": "application/cloudevents-batch+json"}
                )
                assert response.status_code == 503
                assert response.headers["content-type"] == "application/problem+json"
            finally:
                os.kill(broker.process.pid, signal.SIGCONT)

            deadline = time.monotonic() + 90
            for batch in during:
                await client.send(batch, deadline)
            await settle(http, partitions=stack.partitions)
            assert total(await query(http, event_type)) == 2000.0
            assert stack.process is not None and stack.process.poll() is None
    finally:
        await asyncio.to_thread(stack.stop)
        broker.stop()


async def test_soak_with_periodic_kill_9(postgres_ready: None, tmp_path: Path) -> None:
    """Steady ingest while Tally is killed (-9) and restarted three times: exact totals at the end."""
    stack = TallyProcess(data_dir=tmp_path / "tally", postgres_url=await create_database())
    await asyncio.to_thread(stack.start, 120)
    event_type = unique("soak")
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=10) as http:
            await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.n")
            client = RetryingClient(http)
            chaos_done = asyncio.Event()

            async def chaos() -> None:
                for _ in range(3):
                    await asyncio.sleep(1.5)
                    await asyncio.to_thread(stack.kill)
                    await asyncio.to_thread(stack.start, 120)
                chaos_done.set()

            killer = asyncio.create_task(chaos())
            deadline = time.monotonic() + 240
            sent = 0
            # Send for as long as the chaos lasts (the load is steady, not a fixed amount).
            while not chaos_done.is_set():
                await client.send(_batch(event_type, sent, size=100), deadline)
                sent += 1
                await asyncio.sleep(0.02)
            await killer
            expected = float(sent * 100)
            await settle(http, partitions=stack.partitions)
            assert total(await query(http, event_type)) == expected
            assert 0 in client.statuses or 503 in client.statuses, "the soak really saw failures"
    finally:
        await asyncio.to_thread(stack.stop)
