"""The production path: ingest produces to a Kafka-protocol broker (tansu), the sink consumes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.support.barrier import settle
from tests.support.metering import cloudevent, create_meter, ingest, query, total, unique
from tests.support.stack import TallyProcess


async def test_ingest_through_kafka_sums_and_dedupes(tally_kafka: TallyProcess) -> None:
    async with httpx.AsyncClient(base_url=tally_kafka.rest_url, timeout=30) as http:
        event_type = unique("kafka")
        await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.n")
        now = datetime.now(UTC) - timedelta(minutes=1)
        batch = [cloudevent(event_type, f"s{i % 7}", {"n": i}, time=now, id=f"k{i}") for i in range(1000)]
        await ingest(http, batch)
        for event in batch[:50]:  # duplicates, one by one and again as a batch
            await ingest(http, event)
        await ingest(http, batch[100:300])
        # Every duplicate has been through the sink once the markers behind it on each partition are.
        await settle(http, partitions=tally_kafka.partitions)
        expected = float(sum(range(1000)))
        rows = await query(http, event_type, groupBy="subject")
        assert len(rows) == 7
        assert total(rows) == expected
