"""A partition handed from one sink to another in the middle of a flush: every event stored once.

Two Kafka sink consumers (adapters/bus/kafka.py) share a consumer group on the real broker (tansu),
over real Postgres key records and a chDB event store. The first holds a batch in hand (its insert
waits on a gate) when the second joins the group. The group must not give that batch's partition to
the second sink before the batch is stored and its offsets committed: otherwise the second settles
the batch as interrupted (nothing stored yet, so its keys are released), replays it and stores it,
and the first then stores it again (the topology test's sink was seen doing so after a SIGKILL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.bus.kafka import KafkaBus, KafkaSinkConsumer, ensure_topic
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.db import create_engine, migrate
from adapters.postgres.event_keys import PostgresEventKeyStore
from domain.metering.events import Event, EventKey, epoch_ms
from domain.metering.ports import ExtractedValues
from tests.support.metering import unique
from tests.support.services import Tansu
from tests.support.stack import create_database, wait_for
from workers.sink import EventSink, FlushResult, MeterCatalog

PARTITIONS = 2
EVENTS = 40


class _NoMeters:
    async def list_all_live(self) -> list[object]:
        return []


class GatedWriter:
    """The real event-store writer, whose inserts wait until the gate opens."""

    def __init__(self, real: ClickHouseEventStore) -> None:
        self.real = real
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def insert(self, events: Sequence[Event], values: Sequence[ExtractedValues], token: str) -> None:
        self.entered.set()
        await self.gate.wait()
        await self.real.insert(events, values, token)

    async def existing_keys(self, keys: Sequence[EventKey]) -> set[EventKey]:
        return await self.real.existing_keys(keys)


class TracedSink(EventSink):
    """The real sink, remembering which partition it flushed last and which it settled."""

    in_hand: str | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.recovered: list[str | None] = []

    async def flush(self, events: Sequence[Event], owner: str | None = None) -> FlushResult:
        self.in_hand = owner
        return await super().flush(events, owner)

    async def recover(self, owner: str | None = None) -> None:
        self.recovered.append(owner)
        await super().recover(owner)


async def _async(value: bool) -> bool:
    return value


async def test_a_partition_changes_hands_only_after_its_batch_in_hand_is_stored(
    postgres_ready: None, tansu: Tansu, tmp_path: Path
) -> None:
    url = await create_database()
    await migrate(url)
    engine = create_engine(url)
    clickhouse = ClickHouse(f"chdb://{tmp_path / 'events'}")
    await clickhouse.migrate()
    topic, group = unique("handover"), unique("handover-sink")
    await ensure_topic(tansu.brokers, topic, PARTITIONS)
    bus = KafkaBus(tansu.brokers, topic, request_timeout_ms=10_000, enable_idempotence=False)
    await bus.start()
    now = epoch_ms(datetime.now(UTC))
    await bus.publish([Event("ns", f"e-{i}", "t", "src", "s", now, '{"v": 1}', now) for i in range(EVENTS)])
    await bus.stop()

    keys = PostgresEventKeyStore(engine)
    store = ClickHouseEventStore(clickhouse)
    gated = GatedWriter(store)
    first_sink = TracedSink(gated, keys, MeterCatalog(_NoMeters()), owner="first")
    second_sink = TracedSink(store, keys, MeterCatalog(_NoMeters()), owner="second")

    def consumer(sink: EventSink) -> KafkaSinkConsumer:
        return KafkaSinkConsumer(tansu.brokers, topic, group, sink, 1000, flush_interval_ms=20, session_timeout_ms=6000)

    first, second = consumer(first_sink), consumer(second_sink)
    with structlog.testing.capture_logs() as logs:
        await first.start()
        await wait_for(lambda: _async(gated.entered.is_set()), timeout=60)
        in_hand = first_sink.in_hand
        # Joining returns once the group has given the second sink its partitions.
        joining = asyncio.create_task(second.start())

        # Either the first sink is asked to give its partitions up (and must finish the batch in
        # hand first), or, wrongly, the second has already taken the partition of that batch.
        def handing_over() -> bool:
            revoked = any(entry["event"].startswith("sink partitions revoked") for entry in logs)
            return revoked or in_hand in second_sink.recovered

        await wait_for(lambda: _async(handing_over()), timeout=60)
        gated.gate.set()
        await joining

        # Settled: the group has committed every message of the topic.
        watcher = AIOKafkaConsumer(bootstrap_servers=tansu.brokers, group_id=group, enable_auto_commit=False)
        await watcher.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            ends = await watcher.end_offsets(partitions)

            async def committed_all() -> bool:
                return [await watcher.committed(tp) for tp in partitions] == [ends[tp] for tp in partitions]

            await wait_for(committed_all, timeout=60, interval=0.1)
        finally:
            gated.gate.set()
            await watcher.stop()
            await first.stop()
            await second.stop()

    rows = await clickhouse.query("SELECT count(), uniqExact(id) FROM events WHERE namespace = 'ns'")
    assert (int(rows[0][0]), int(rows[0][1])) == (EVENTS, EVENTS)
    clickhouse.close()
    await engine.dispose()
