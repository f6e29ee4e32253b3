"""kill -9 of Tally during ingest: every acknowledged event is counted exactly once after restart.

A client keeps sending batches; Tally is killed mid-stream (sink included) and restarted on the same
stores. Batches that were not acknowledged are retried with the same ids, as a real client would.
The final count must equal the number of distinct events: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.barrier import settle
from tests.support.metering import cloudevent, create_meter, query, total, unique
from tests.support.stack import TallyProcess, create_database


async def _send_until_killed(stack: TallyProcess, batches: list[list[dict]], kill_after: int) -> set[int]:
    """Sends batches in order; kills Tally (SIGKILL) once `kill_after` batches are acknowledged."""
    acknowledged: set[int] = set()
    async with httpx.AsyncClient(base_url=stack.rest_url, timeout=10) as http:
        for index, batch in enumerate(batches):
            if len(acknowledged) == kill_after:
                # Fire one more batch and kill while it is in flight.
                inflight = asyncio.create_task(
                    http.post("/api/v1/events", json=batch, headers={"content-type": "application/json"})
                )
                await asyncio.sleep(0.01)
                await asyncio.to_thread(stack.kill)
                try:
                    response = await inflight
                    if response.status_code == 204:
                        acknowledged.add(index)
                except httpx.HTTPError:
                    pass
                return acknowledged
            response = await http.post("/api/v1/events", json=batch, headers={"content-type": "application/json"})
            assert response.status_code == 204
            acknowledged.add(index)
    return acknowledged


@pytest.mark.parametrize("bus", ["inprocess", "kafka"])
async def test_kill_9_mid_ingest_loses_and_doubles_nothing(
    bus: str, postgres_ready: None, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    brokers = request.getfixturevalue("tansu").brokers if bus == "kafka" else None
    stack = TallyProcess(data_dir=tmp_path / "tally", postgres_url=await create_database(), kafka_brokers=brokers)
    await asyncio.to_thread(stack.start)
    event_type = unique("crash")
    now = datetime.now(UTC) - timedelta(minutes=1)
    batches = [
        [cloudevent(event_type, f"s{b % 5}", {"n": 1}, time=now, id=f"{b}-{i}") for i in range(500)] for b in range(12)
    ]
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.n")
        acknowledged = await _send_until_killed(stack, batches, kill_after=6)
        assert len(acknowledged) >= 6

        # Same stores, same ports: a restart, as a supervisor would do it.
        await asyncio.to_thread(stack.start, 120)
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            # Every acknowledged event is there, exactly once, before any retry: final once markers
            # sent after the restart are stored (the sink replays what it had not committed first).
            acked_total = float(500 * len(acknowledged))
            await settle(http, partitions=stack.partitions)
            rows = await query(http, event_type)
            # The in-flight batch may have landed, wholly or (on Kafka, where a batch is produced as
            # one message per partition) in part: never less than what was acknowledged, never more
            # than that and the batch. The retries below make the total exact.
            assert acked_total <= total(rows) <= acked_total + 500
            # The client retries everything it did not see acknowledged (same ids).
            for index, batch in enumerate(batches):
                if index not in acknowledged:
                    response = await http.post(
                        "/api/v1/events", json=batch, headers={"content-type": "application/json"}
                    )
                    assert response.status_code == 204
            expected = float(500 * len(batches))
            await settle(http, partitions=stack.partitions)
            assert total(await query(http, event_type)) == expected
    finally:
        await asyncio.to_thread(stack.stop)
