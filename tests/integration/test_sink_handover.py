"""Partitions changing hands between the sinks of a group: every event stored exactly once.

Kafka sink consumers (adapters/bus/kafka.py) on the real broker (tansu), over real Postgres key
records and a chDB event store; a gate in the event-store writer holds one step back until the
consumer shows whether it waits as it must or goes ahead. Both races were seen in the topology test:
- a partition revoked while its batch is in hand must not reach another sink before that batch is
  stored and committed (else the next owner settles it as interrupted and both store it: doubled);
- a partition assigned with an interrupted flush pending must not be flushed before that flush is
  settled (else the replayed events meet their own claimed keys, are dropped as duplicates, and the
  settling then releases the keys: lost).
And within one sink: a batch whose events are in doubt (their keys held by a flush still pending)
must not be committed until the doubt resolves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest_asyncio
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.bus.kafka import KafkaBus, KafkaSinkConsumer, ensure_topic, partition_for
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.db import create_engine, migrate
from adapters.postgres.event_keys import PostgresEventKeyStore
from domain.metering.events import Event, EventKey, FlushResult, epoch_ms, new_insert_token
from domain.metering.ports import ExtractedValues
from tests.support.metering import unique
from tests.support.services import Tansu
from tests.support.stack import create_database, wait_for
from workers.sink import EventSink, MeterCatalog

PARTITIONS = 2
EVENTS = 40


class _NoMeters:
    async def list_all_live(self) -> list[object]:
        return []


class GatedWriter:
    """The real event-store writer; inserts (or, with `gate_lookups`, key look-ups) wait for the gate."""

    def __init__(self, real: ClickHouseEventStore, gate_lookups: bool = False) -> None:
        self.real = real
        self.gate_lookups = gate_lookups
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def insert(self, events: Sequence[Event], values: Sequence[ExtractedValues], token: str) -> None:
        if not self.gate_lookups:
            self.entered.set()
            await self.gate.wait()
        await self.real.insert(events, values, token)

    async def existing_keys(self, keys: Sequence[EventKey], insert_token: str) -> set[EventKey]:
        if self.gate_lookups:
            self.entered.set()
            await self.gate.wait()
        return await self.real.existing_keys(keys, insert_token)


class TracedSink(EventSink):
    """The real sink, remembering which partitions it flushed and which it settled."""

    in_hand: tuple[str, ...] = ()

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.recovered: list[str | None] = []
        self.flushed: list[str] = []
        self.sizes: list[int] = []  # events per insert
        self.results: list[tuple[str, FlushResult]] = []

    async def flush_parts(self, parts: Sequence[tuple[str, Sequence[Event]]]) -> list[FlushResult]:
        self.in_hand = tuple(owner for owner, _ in parts)
        results = await super().flush_parts(parts)
        self.flushed.extend(self.in_hand)
        self.sizes.append(sum(len(events) for _, events in parts))
        self.results.extend(zip(self.in_hand, results, strict=True))
        return results

    async def recover(self, owner: str | None = None) -> None:
        self.recovered.append(owner)
        await super().recover(owner)


class FailingWriter:
    """The real event-store writer; the first insert fails, and key look-ups fail while `fail_lookups`."""

    def __init__(self, real: ClickHouseEventStore) -> None:
        self.real = real
        self.failed: list[Event] = []
        self.fail_lookups = True

    async def insert(self, events: Sequence[Event], values: Sequence[ExtractedValues], token: str) -> None:
        if not self.failed:
            self.failed.extend(events)
            raise ConnectionError("event store unavailable")
        await self.real.insert(events, values, token)

    async def existing_keys(self, keys: Sequence[EventKey], insert_token: str) -> set[EventKey]:
        if self.fail_lookups:
            raise ConnectionError("event store unavailable while settling")
        return await self.real.existing_keys(keys, insert_token)


async def _async(value: bool) -> bool:
    return value


@dataclass
class Setup:
    topic: str
    group: str
    events: list[Event]
    keys: PostgresEventKeyStore
    store: ClickHouseEventStore
    clickhouse: ClickHouse


@pytest_asyncio.fixture
async def setup(postgres_ready: None, tansu: Tansu, tmp_path: Path) -> AsyncIterator[Setup]:
    """A migrated Postgres and chDB, and a topic of PARTITIONS partitions holding EVENTS events."""
    url = await create_database()
    await migrate(url)
    engine = create_engine(url)
    clickhouse = ClickHouse(f"chdb://{tmp_path / 'events'}")
    await clickhouse.migrate()
    topic = unique("handover")
    await ensure_topic(tansu.brokers, topic, PARTITIONS)
    bus = KafkaBus(tansu.brokers, topic, request_timeout_ms=10_000, enable_idempotence=False)
    await bus.start()
    now = epoch_ms(datetime.now(UTC))
    events = [Event("ns", f"e-{i}", "t", "src", "s", now, '{"v": 1}', now) for i in range(EVENTS)]
    await bus.publish(events)
    await bus.stop()
    yield Setup(
        topic,
        unique("handover-sink"),
        events,
        PostgresEventKeyStore(engine),
        ClickHouseEventStore(clickhouse),
        clickhouse,
    )
    clickhouse.close()
    await engine.dispose()


def _consumer(
    tansu: Tansu, setup: Setup, sink: EventSink, max_batch_events: int = 1000, flush_interval_ms: int = 20
) -> KafkaSinkConsumer:
    return KafkaSinkConsumer(
        tansu.brokers,
        setup.topic,
        setup.group,
        sink,
        max_batch_events,
        flush_interval_ms=flush_interval_ms,
        session_timeout_ms=6000,
    )


def _sink(setup: Setup, writer: GatedWriter | ClickHouseEventStore, name: str) -> TracedSink:
    return TracedSink(writer, setup.keys, MeterCatalog(_NoMeters()), owner=name)


async def _wait_until_all_committed(tansu: Tansu, setup: Setup) -> None:
    watcher = AIOKafkaConsumer(bootstrap_servers=tansu.brokers, group_id=setup.group, enable_auto_commit=False)
    await watcher.start()
    try:
        partitions = [TopicPartition(setup.topic, p) for p in range(PARTITIONS)]
        ends = await watcher.end_offsets(partitions)

        async def committed_all() -> bool:
            return [await watcher.committed(tp) for tp in partitions] == [ends[tp] for tp in partitions]

        await wait_for(committed_all, timeout=60, interval=0.1)
    finally:
        await watcher.stop()


async def _consume_everything(tansu: Tansu, setup: Setup, consumer: KafkaSinkConsumer) -> None:
    """Runs the consumer until every offset of the topic is committed."""
    try:
        await consumer.start()
        await _wait_until_all_committed(tansu, setup)
    finally:
        await consumer.stop()


async def _stored(setup: Setup) -> tuple[int, int]:
    rows = await setup.clickhouse.query("SELECT count(), uniqExact(id) FROM events WHERE namespace = 'ns'")
    return int(rows[0][0]), int(rows[0][1])


def _logged(logs: list[dict[str, Any]], prefix: str) -> bool:
    return any(entry["event"].startswith(prefix) for entry in logs)


async def test_a_partition_changes_hands_only_after_its_batch_in_hand_is_stored(tansu: Tansu, setup: Setup) -> None:
    gated = GatedWriter(setup.store)
    first_sink, second_sink = _sink(setup, gated, "first"), _sink(setup, setup.store, "second")
    first, second = _consumer(tansu, setup, first_sink), _consumer(tansu, setup, second_sink)
    with structlog.testing.capture_logs() as logs:
        try:
            await first.start()
            await wait_for(lambda: _async(gated.entered.is_set()), timeout=60)
            in_hand = first_sink.in_hand
            # Joining returns once the group has given the second sink its partitions.
            joining = asyncio.create_task(second.start())
            # Either the first sink is asked to give its partitions up (and must finish the batch
            # in hand first), or, wrongly, the second has already taken one of that batch's partitions.
            await wait_for(
                lambda: _async(
                    _logged(logs, "sink partitions revoked") or any(o in second_sink.recovered for o in in_hand)
                ),
                timeout=60,
            )
            gated.gate.set()
            await joining
            await _wait_until_all_committed(tansu, setup)
        finally:
            gated.gate.set()
            await first.stop()
            await second.stop()
    assert await _stored(setup) == (EVENTS, EVENTS)


async def test_a_partition_is_flushed_only_after_its_interrupted_flush_is_settled(tansu: Tansu, setup: Setup) -> None:
    # What a sink killed mid-flush leaves: every event of partition 0 claimed by a pending batch,
    # nothing stored, nothing committed.
    partition0 = [e for e in setup.events if partition_for(e, PARTITIONS) == 0]
    await setup.keys.claim(f"{setup.topic}:0", partition0, new_insert_token())
    gated = GatedWriter(setup.store, gate_lookups=True)
    sink = _sink(setup, gated, "next")
    consumer = _consumer(tansu, setup, sink)
    with structlog.testing.capture_logs() as logs:
        try:
            starting = asyncio.create_task(consumer.start())
            # The settling looks the batch's keys up in the store (and waits at the gate) while
            # the consumer either holds the partition's fetched events back, or, wrongly, flushes them.
            await wait_for(
                lambda: _async(_logged(logs, "sink holding fetched events") or f"{setup.topic}:0" in sink.flushed),
                timeout=60,
            )
            gated.gate.set()
            await starting
            await _wait_until_all_committed(tansu, setup)
        finally:
            gated.gate.set()
            await consumer.stop()
    assert partition0
    assert await _stored(setup) == (EVENTS, EVENTS)


async def test_a_fetch_is_stored_in_inserts_of_at_most_max_batch_events(tansu: Tansu, setup: Setup) -> None:
    # Besides the fixture's one large message per partition (about 20 events each), many small ones.
    bus = KafkaBus(tansu.brokers, setup.topic, request_timeout_ms=10_000, enable_idempotence=False)
    await bus.start()
    now = epoch_ms(datetime.now(UTC))
    small = [Event("ns", f"small-{i}", "t", "src", "s", now, '{"v": 1}', now) for i in range(30)]
    for start in range(0, len(small), 3):
        await bus.publish(small[start : start + 3])
    await bus.stop()
    sink = _sink(setup, setup.store, "bounded")
    # Below the large messages' size (they are split) and above the small ones' (they are gathered).
    await _consume_everything(tansu, setup, _consumer(tansu, setup, sink, max_batch_events=7))
    assert await _stored(setup) == (EVENTS + len(small), EVENTS + len(small))
    assert max(sink.sizes) <= 7
    # Small messages were gathered into shared inserts, not stored one message at a time.
    assert len(sink.sizes) < (EVENTS + len(small)) / 3


async def test_the_partitions_fetched_within_the_flush_interval_share_one_insert(tansu: Tansu, setup: Setup) -> None:
    """Under light traffic a sink that stored each fetch, partition by partition, at once would make
    an insert per partition per fetch; what arrives within the flush interval is one insert, each
    partition's keys still claimed by a batch of its own, and every offset committed."""
    sink = _sink(setup, setup.store, "joined")
    await _consume_everything(tansu, setup, _consumer(tansu, setup, sink, flush_interval_ms=3000))
    assert sink.sizes == [EVENTS]
    assert sorted(sink.flushed) == [f"{setup.topic}:{p}" for p in range(PARTITIONS)]
    assert await _stored(setup) == (EVENTS, EVENTS)


async def test_no_offset_is_committed_past_events_in_doubt(tansu: Tansu, setup: Setup) -> None:
    """A flush's insert fails and settling it fails too: its batch stays pending, holding the keys. The
    consumer delivers the partition's events again; they are in doubt (not duplicates: the pending
    batch stored nothing), so no offset may be committed past them until the sink has settled its
    batch in the background, after which they are stored once."""
    writer = FailingWriter(setup.store)
    sink = TracedSink(writer, setup.keys, MeterCatalog(_NoMeters()), owner="doubt")
    # Inserts no larger than the larger partition's events, so the failing first insert holds one
    # partition's alone (the consumer otherwise stores both partitions' events with one insert).
    largest = max(sum(1 for e in setup.events if partition_for(e, PARTITIONS) == p) for p in range(PARTITIONS))
    consumer = _consumer(tansu, setup, sink, max_batch_events=largest)
    watcher = AIOKafkaConsumer(bootstrap_servers=tansu.brokers, group_id=setup.group, enable_auto_commit=False)
    await watcher.start()
    try:
        await consumer.start()
        await wait_for(lambda: _async(bool(writer.failed)), timeout=60)
        tp = TopicPartition(setup.topic, partition_for(writer.failed[0], PARTITIONS))
        owner = f"{tp.topic}:{tp.partition}"
        end = (await watcher.end_offsets([tp]))[tp]

        async def committed_or_redelivered_twice() -> bool:
            redelivered = [r for o, r in sink.results if o == owner and r.stored == 0]
            return len(redelivered) >= 2 or await watcher.committed(tp) == end

        # The partition's events delivered again (twice, so a commit after the first would be seen).
        await wait_for(committed_or_redelivered_twice, timeout=60)
        assert await watcher.committed(tp) != end, "offsets committed past events that were never stored"
        # The other partition is not held back meanwhile; this one still is.
        other = TopicPartition(setup.topic, 1 - tp.partition)
        other_end = (await watcher.end_offsets([other]))[other]
        await wait_for(lambda: _committed_at(watcher, other, other_end), timeout=60)
        assert await watcher.committed(tp) != end
        assert await _stored(setup) == (EVENTS - len(writer.failed), EVENTS - len(writer.failed))
        writer.fail_lookups = False  # the background settling now succeeds and releases the keys
        await _wait_until_all_committed(tansu, setup)
    finally:
        await watcher.stop()
        await consumer.stop()
        await sink.close()
    assert await _stored(setup) == (EVENTS, EVENTS)


async def _committed_at(watcher: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> bool:
    return bool(await watcher.committed(tp) == offset)
