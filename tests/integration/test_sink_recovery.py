"""The sink's exactly-once protocol against the real stores (Postgres, chDB), with injected faults.

A wrapper around the real ClickHouse adapter fails at chosen points: before the insert (store down),
after it (the process dies before confirming), and while settling (so only the next start's recovery
can settle the batch). Whatever the fault, a retry or a restart stores each event exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from adapters.bus.inprocess import InProcessBus
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.db import create_engine, migrate
from adapters.postgres.event_keys import PostgresEventKeyStore
from domain.metering.events import Event, EventKey, epoch_ms
from domain.metering.ports import ExtractedValues
from tests.support import event_store
from tests.support.stack import create_database
from workers.sink import EventSink, MeterCatalog


class _NoMeters:
    async def list_all_live(self) -> list[object]:
        return []


class Crash(Exception):
    """Stands in for the process dying at this point."""


class FaultyWriter:
    def __init__(self, real: ClickHouseEventStore) -> None:
        self.real = real
        self.fail_before_insert = False
        self.fail_after_insert = False
        self.fail_lookups = False

    async def insert(self, events: Sequence[Event], values: Sequence[ExtractedValues], token: str) -> None:
        if self.fail_before_insert:
            raise Crash("event store unavailable")
        await self.real.insert(events, values, token)
        if self.fail_after_insert:
            raise Crash("died after the insert")

    async def existing_keys(self, keys: Sequence[EventKey]) -> set[EventKey]:
        if self.fail_lookups:
            raise Crash("died while settling")
        return await self.real.existing_keys(keys)


@pytest_asyncio.fixture(scope="module", params=event_store.KINDS)
async def stores(
    request: pytest.FixtureRequest, postgres_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple]:
    url = await create_database()
    await migrate(url)
    engine = create_engine(url)
    kind = request.param
    clickhouse = ClickHouse(event_store.event_store_url(request, kind, Path(tmp_path_factory.mktemp("sink")), "sink"))
    await clickhouse.migrate()
    yield engine, clickhouse
    clickhouse.close()
    await engine.dispose()


def _events(prefix: str, n: int) -> list[Event]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        Event(
            namespace="ns",
            id=f"{prefix}-{i}",
            type="t",
            source="src",
            subject="s",
            time_ms=epoch_ms(now - timedelta(minutes=i)),
            data='{"v": 1}',
            ingested_ms=epoch_ms(now),
        )
        for i in range(n)
    ]


async def _count(clickhouse: ClickHouse, prefix: str) -> int:
    rows = await clickhouse.query(
        "SELECT count() FROM events WHERE namespace = 'ns' AND startsWith(id, {p:String})", {"p": f"{prefix}-"}
    )
    return int(rows[0][0])


def _sink(engine, clickhouse: ClickHouse, writer=None) -> tuple[EventSink, FaultyWriter]:  # type: ignore[no-untyped-def]
    faulty = writer or FaultyWriter(ClickHouseEventStore(clickhouse))
    return EventSink(faulty, PostgresEventKeyStore(engine), MeterCatalog(_NoMeters()), owner="test"), faulty


async def test_duplicates_within_and_across_flushes(stores: tuple) -> None:
    engine, clickhouse = stores
    sink, _ = _sink(engine, clickhouse)
    events = _events("dup", 50)
    first = await sink.flush(events + events[:10])
    assert (first.stored, first.duplicates) == (50, 10)
    second = await sink.flush(events[5:20])
    assert (second.stored, second.duplicates) == (0, 15)
    assert await _count(clickhouse, "dup") == 50


async def test_store_down_releases_keys_so_a_retry_stores(stores: tuple) -> None:
    engine, clickhouse = stores
    sink, faulty = _sink(engine, clickhouse)
    events = _events("down", 40)
    faulty.fail_before_insert = True
    with pytest.raises(Crash):
        await sink.flush(events)
    assert await _count(clickhouse, "down") == 0
    faulty.fail_before_insert = False
    result = await sink.flush(events)
    assert result.stored == 40
    assert await _count(clickhouse, "down") == 40


async def test_failure_after_insert_keeps_keys_so_a_retry_does_not_double(stores: tuple) -> None:
    engine, clickhouse = stores
    sink, faulty = _sink(engine, clickhouse)
    events = _events("after", 30)
    faulty.fail_after_insert = True
    with pytest.raises(Crash):
        await sink.flush(events)
    faulty.fail_after_insert = False
    result = await sink.flush(events)
    assert (result.stored, result.duplicates) == (0, 30)
    assert await _count(clickhouse, "after") == 30


class _CatalogDown:
    """The meters' table unreachable (Postgres away) for the first `failures` reads."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def list_all_live(self) -> list[object]:
        if self.failures:
            self.failures -= 1
            raise Crash("meters unreachable")
        return []


async def test_meter_catalogue_unreachable_claims_nothing_so_the_retry_stores(stores: tuple) -> None:
    """The catalogue is read before the claim: had it failed after, the keys would stay claimed by a
    batch that stored nothing, and the retry would be dropped as a duplicate (lost until a restart)."""
    engine, clickhouse = stores
    writer = FaultyWriter(ClickHouseEventStore(clickhouse))
    sink = EventSink(writer, PostgresEventKeyStore(engine), MeterCatalog(_CatalogDown(1)), owner="test-catalog")
    events = _events("catalog", 15)
    with pytest.raises(Crash):
        await sink.flush(events)
    assert await PostgresEventKeyStore(engine).pending("test-catalog") == []
    result = await sink.flush(events)
    assert (result.stored, result.duplicates) == (15, 0)
    assert await _count(clickhouse, "catalog") == 15


class _MarkFails(PostgresEventKeyStore):
    async def commit(self, batch_id: int) -> None:
        raise Crash("died before marking the batch stored")


async def test_acknowledged_once_stored_and_counted_once_when_marking_it_stored_fails(stores: tuple) -> None:
    """The in-process bus answers before the batch is marked stored (workers/sink.py): a failure of
    that last step leaves the batch pending, the answer stands, and recovery keeps every key."""
    engine, clickhouse = stores
    writer = FaultyWriter(ClickHouseEventStore(clickhouse))
    sink = EventSink(writer, _MarkFails(engine), MeterCatalog(_NoMeters()), owner="test-mark")
    acknowledged: list[int] = []
    writer.fail_before_insert = True
    with pytest.raises(Crash):
        await sink.flush(_events("markdown", 5), acknowledge=lambda: acknowledged.append(1))
    assert acknowledged == []  # nothing stored, nothing answered
    writer.fail_before_insert = False
    events = _events("mark", 20)
    with pytest.raises(Crash):
        await sink.flush(events, acknowledge=lambda: acknowledged.append(2))
    assert acknowledged == [2]
    bus = InProcessBus(EventSink(writer, _MarkFails(engine), MeterCatalog(_NoMeters()), owner="test-mark"))
    # Its start settles the pending batch: the 20 events reached the store, so all 20 keys are kept.
    await bus.start()
    try:
        assert await PostgresEventKeyStore(engine).pending("test-mark") == []
        await bus.publish(_events("viabus", 10))  # answered, although marking its batch fails
        await bus.publish(events)  # a client's retry: duplicates
    finally:
        await bus.stop()
    assert await _count(clickhouse, "mark") == 20
    assert await _count(clickhouse, "viabus") == 10
    assert len(await PostgresEventKeyStore(engine).pending("test-mark")) == 2


async def test_crash_mid_flush_is_settled_by_recovery_at_start(stores: tuple) -> None:
    engine, clickhouse = stores
    sink, faulty = _sink(engine, clickhouse)
    landed = _events("crash-landed", 25)
    lost = _events("crash-lost", 25)
    # Died after the insert, and could not settle: the batch stays pending.
    faulty.fail_after_insert = faulty.fail_lookups = True
    with pytest.raises(Crash):
        await sink.flush(landed)
    # Died before the insert, and could not settle either.
    faulty.fail_after_insert = False
    faulty.fail_before_insert = True
    with pytest.raises(Crash):
        await sink.flush(lost)
    assert len(await PostgresEventKeyStore(engine).pending("test")) == 2

    restarted, _ = _sink(engine, clickhouse)
    await restarted.recover()
    assert await PostgresEventKeyStore(engine).pending("test") == []
    # The bus replays both batches: the landed one is recognised, the lost one is stored now.
    replay = await restarted.flush(landed + lost)
    assert (replay.stored, replay.duplicates) == (25, 25)
    assert await _count(clickhouse, "crash-landed") == 25
    assert await _count(clickhouse, "crash-lost") == 25


async def test_concurrent_flushes_of_the_same_events_store_once(stores: tuple) -> None:
    engine, clickhouse = stores
    sink, _ = _sink(engine, clickhouse)
    events = _events("same", 20)
    await asyncio.gather(sink.flush(events), sink.flush(list(reversed(events))))
    assert await _count(clickhouse, "same") == 20
