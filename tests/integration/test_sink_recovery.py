"""The sink's exactly-once protocol against the real stores (Postgres, chDB), with injected faults.

A wrapper around the real ClickHouse adapter fails at chosen points: before the insert (store down),
after it (the process dies before confirming), and while settling (so the batch stays pending until
the background settling, or the next start's recovery, succeeds). Whatever the fault, a retry or a
restart stores each event exactly once; a retry that meets a batch still pending is answered
retryable, never "duplicate" (its events are in doubt).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from domain.errors import UnavailableError
from domain.metering.events import Event, EventKey, epoch_ms
from domain.metering.ports import ExtractedValues
from tests.support import event_store
from tests.support.services import ClickHouseHttp
from tests.support.stack import create_database, wait_for
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
        # With `hold`, an insert waits for it (its batch pending meanwhile), having set `entered`.
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def insert(self, events: Sequence[Event], values: Sequence[ExtractedValues], token: str) -> None:
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_before_insert:
            raise Crash("event store unavailable")
        await self.real.insert(events, values, token)
        if self.fail_after_insert:
            raise Crash("died after the insert")

    async def existing_keys(self, keys: Sequence[EventKey], insert_token: str) -> set[EventKey]:
        if self.fail_lookups:
            raise Crash("died while settling")
        return await self.real.existing_keys(keys, insert_token)


@contextlib.asynccontextmanager
async def _open_stores(request: pytest.FixtureRequest, kind: str, tmp: Path, name: str) -> AsyncIterator[tuple]:
    """A fresh key database and event store of this kind: (engine, clickhouse)."""
    url = await create_database()
    await migrate(url)
    engine = create_engine(url)
    clickhouse = ClickHouse(event_store.event_store_url(request, kind, tmp, name))
    await clickhouse.migrate()
    try:
        yield engine, clickhouse
    finally:
        clickhouse.close()
        await engine.dispose()


@pytest_asyncio.fixture(scope="module", params=event_store.KINDS)
async def stores(
    request: pytest.FixtureRequest, postgres_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple]:
    async with _open_stores(request, request.param, Path(tmp_path_factory.mktemp("sink")), "sink") as opened:
        yield opened


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


_opened: list[EventSink] = []


@pytest_asyncio.fixture(autouse=True)
async def _close_sinks() -> AsyncIterator[None]:
    """Stops the background settling of every sink a test made (the event loop outlives the test)."""
    yield
    while _opened:
        await _opened.pop().close()


def _new_sink(writer: FaultyWriter, keys: PostgresEventKeyStore, owner: str) -> EventSink:
    sink = EventSink(writer, keys, MeterCatalog(_NoMeters()), owner=owner)
    _opened.append(sink)
    return sink


def _sink(engine, clickhouse: ClickHouse, writer=None, owner: str = "test") -> tuple[EventSink, FaultyWriter]:  # type: ignore[no-untyped-def]
    faulty = writer or FaultyWriter(ClickHouseEventStore(clickhouse))
    return _new_sink(faulty, PostgresEventKeyStore(engine), owner), faulty


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
    """Marking a batch stored always fails; settling it (`abort`) fails while `settling_fails`."""

    settling_fails = False

    async def commit(self, batch_ids: Sequence[int]) -> None:
        raise Crash("died before marking the batch stored")

    async def abort(self, batch_id: int, keep: Sequence[EventKey] = ()) -> None:
        if self.settling_fails:
            raise Crash("Postgres away while settling")
        await super().abort(batch_id, keep)


async def test_acknowledged_once_stored_and_counted_once_when_marking_it_stored_fails(stores: tuple) -> None:
    """The in-process bus answers before the batch is marked stored (workers/sink.py): a failure of
    that last step leaves the batch pending, the answer stands, and settling it (at once, in the
    background while Postgres is away, or by the recovery at the next start) keeps every key."""
    engine, clickhouse = stores
    writer = FaultyWriter(ClickHouseEventStore(clickhouse))
    keys = _MarkFails(engine)
    sink = _new_sink(writer, keys, "test-mark")
    acknowledged: list[int] = []
    writer.fail_before_insert = True
    with pytest.raises(Crash):
        await sink.flush(_events("markdown", 5), acknowledge=lambda result: acknowledged.append(1))
    assert acknowledged == []  # nothing stored, nothing answered
    writer.fail_before_insert = False
    events = _events("mark", 20)
    keys.settling_fails = True
    with pytest.raises(Crash):
        await sink.flush(events, acknowledge=lambda result: acknowledged.append(2))
    assert acknowledged == [2]
    await sink.close()  # the process dies before it could settle the batch
    assert len(await PostgresEventKeyStore(engine).pending("test-mark")) == 1
    keys = _MarkFails(engine)
    bus = InProcessBus(_new_sink(writer, keys, "test-mark"))
    # Its start settles the pending batch: the 20 events reached the store, so all 20 keys are kept.
    await bus.start()
    viabus = _events("viabus", 10)
    try:
        assert await PostgresEventKeyStore(engine).pending("test-mark") == []
        await bus.publish(_events("settled", 4))  # answered; marking fails, settling (after the answer) works
        await bus.publish(events)  # a client's retry: duplicates
        await wait_for(lambda: _no_pending(engine, "test-mark"), timeout=60)
        keys.settling_fails = True
        await bus.publish(viabus)  # answered, although neither marking nor settling its batch works
        with pytest.raises(UnavailableError, match="still being settled"):
            await bus.publish(viabus)  # a retry meanwhile: in doubt, not a duplicate
        keys.settling_fails = False
        # The live process settles the batch in the background, without a restart.
        await wait_for(lambda: _no_pending(engine, "test-mark"), timeout=60)
        await bus.publish(viabus)  # now a duplicate
    finally:
        await bus.stop()
    assert await _count(clickhouse, "mark") == 20
    assert await _count(clickhouse, "settled") == 4
    assert await _count(clickhouse, "viabus") == 10


async def _no_pending(engine, owner: str) -> bool:  # type: ignore[no-untyped-def]
    return await PostgresEventKeyStore(engine).pending(owner) == []


async def test_a_retry_of_an_unsettled_failed_flush_is_retryable_until_it_is_settled(stores: tuple) -> None:
    """The insert fails and settling it fails too (the stores briefly away): the batch stays pending
    with its keys. The client, told to retry, retries: answered retryable (not "duplicate", which
    would lose the events) until the live process settles the batch in the background; then stored
    once. Events of the same flush that are not in doubt are stored (and acknowledged if their request
    has none in doubt)."""
    engine, clickhouse = stores
    writer = FaultyWriter(ClickHouseEventStore(clickhouse))
    bus = InProcessBus(_new_sink(writer, PostgresEventKeyStore(engine), "test-doubt"))
    await bus.start()
    events = _events("indoubt", 12)
    alongside = _events("alongside", 5)
    unaffected = _events("unaffected", 4)
    try:
        writer.fail_before_insert = writer.fail_lookups = True
        with pytest.raises(UnavailableError, match="did not accept"):
            await bus.publish(events)
        writer.fail_before_insert = False
        with pytest.raises(UnavailableError, match="still being settled"):
            await bus.publish(events)
        # In doubt beside new events: the new ones are stored, the request is answered retryable.
        with pytest.raises(UnavailableError, match="3 of the 8 events are still being settled"):
            await bus.publish(events[:3] + alongside)
        # Two requests together (one flush, group commit): only the one with events in doubt fails.
        doubtful, alone = await asyncio.gather(bus.publish(events), bus.publish(unaffected), return_exceptions=True)
        assert isinstance(doubtful, UnavailableError) and alone is None
        assert await _count(clickhouse, "indoubt") == 0
        assert await _count(clickhouse, "alongside") == 5
        writer.fail_lookups = False
        await wait_for(lambda: _no_pending(engine, "test-doubt"), timeout=60)
        await bus.publish(events[:3] + alongside)  # the whole retried request: stored and duplicates
        await bus.publish(events)
        await bus.publish(events + unaffected)  # once more: all duplicates
    finally:
        await bus.stop()
    assert await _count(clickhouse, "indoubt") == 12
    assert await _count(clickhouse, "alongside") == 5
    assert await _count(clickhouse, "unaffected") == 4


async def test_a_retry_during_a_pending_insert_that_then_fails_is_not_lost(stores: tuple) -> None:
    """A retry (or a concurrent duplicate) arrives, through another sink, while the first flush of its
    events has claimed their keys and is inserting. Answered "duplicate", it would be lost once that
    insert fails and its keys are released; in doubt, it is answered retryable and the next retry
    stores it."""
    engine, clickhouse = stores
    keys = PostgresEventKeyStore(engine)
    held = FaultyWriter(ClickHouseEventStore(clickhouse))
    held.hold = asyncio.Event()
    first = _new_sink(held, keys, "test-first")
    events = _events("concurrent", 9)
    original = asyncio.create_task(first.flush(events))
    await held.entered.wait()  # claimed, insert in progress
    held.fail_before_insert = True
    bus = InProcessBus(_new_sink(FaultyWriter(ClickHouseEventStore(clickhouse)), keys, "test-second"))
    await bus.start()
    try:
        with pytest.raises(UnavailableError, match="still being settled"):
            await bus.publish(events)
        held.hold.set()  # the first insert fails; its keys are released
        with pytest.raises(Crash):
            await original
        await bus.publish(events)
        await bus.publish(events)  # and once more: duplicates
    finally:
        held.hold.set()
        await bus.stop()
    assert await _count(clickhouse, "concurrent") == 9


async def test_a_failed_announcement_is_settled_at_once_so_the_replay_is_announced_not_in_doubt(stores: tuple) -> None:
    """Stored, but the announcement failed: the flush fails and the bus replays it. The batch is
    settled at once (all keys kept), so the replay finds duplicates (announced again), not events in
    doubt that would wait for a restart."""
    engine, clickhouse = stores
    sink, _ = _sink(engine, clickhouse, owner="test-announce")
    announced: list[set[tuple[str, str, str]]] = []

    async def listener(touched: set[tuple[str, str, str]]) -> None:
        announced.append(touched)
        if len(announced) == 1:
            raise Crash("announcements unavailable")

    sink.subscribe(listener)
    events = _events("announce", 6)
    with pytest.raises(Crash):
        await sink.flush(events)
    replay = await sink.flush(events)
    assert (replay.stored, replay.duplicates, replay.in_doubt) == (0, 6, frozenset())
    assert len(announced) == 2 and announced[1] == {("ns", "s", "t")}
    assert await _count(clickhouse, "announce") == 6


async def test_the_same_event_twice_in_one_request_is_stored_once_and_acknowledged(stores: tuple) -> None:
    engine, clickhouse = stores
    bus = InProcessBus(
        _new_sink(FaultyWriter(ClickHouseEventStore(clickhouse)), PostgresEventKeyStore(engine), "twice")
    )
    await bus.start()
    events = _events("twice", 3)
    try:
        await bus.publish(events + events[:2])
        await bus.publish(events)
    finally:
        await bus.stop()
    assert await _count(clickhouse, "twice") == 3


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


async def test_the_parts_of_a_joined_flush_share_one_insert_and_are_each_recovered_by_their_owner(
    stores: tuple,
) -> None:
    """A Kafka fetch's partitions go into one insert, each partition's keys claimed by a batch of its
    own: after a crash between the insert and the marks, recovering one partition settles its part
    alone (the other stays pending for its own owner), and the replays are duplicates."""
    engine, clickhouse = stores
    sink, faulty = _sink(engine, clickhouse)
    inserts: list[int] = []
    real_insert = faulty.insert

    async def counted(events: Sequence[Event], values: Sequence[ExtractedValues], token: str) -> None:
        inserts.append(len(events))
        await real_insert(events, values, token)

    faulty.insert = counted  # type: ignore[method-assign]
    first, second, empty = _events("part-a", 12), _events("part-b", 7), []
    results = await sink.flush_parts([("t:0", first + first[:3]), ("t:1", second), ("t:2", empty)])
    assert [(r.stored, r.duplicates) for r in results] == [(12, 3), (7, 0), (0, 0)]
    assert inserts == [19]

    landed_a, landed_b = _events("joined-a", 10), _events("joined-b", 5)
    faulty.fail_after_insert = faulty.fail_lookups = True  # died after the insert, could not settle
    with pytest.raises(Crash):
        await sink.flush_parts([("t:0", landed_a), ("t:1", landed_b)])
    assert inserts == [19, 15]
    keys = PostgresEventKeyStore(engine)
    assert [len(b.keys) for b in await keys.pending("t:0")] == [10]
    assert [len(b.keys) for b in await keys.pending("t:1")] == [5]

    restarted, _ = _sink(engine, clickhouse)
    await restarted.recover("t:0")
    assert await keys.pending("t:0") == []
    assert [len(b.keys) for b in await keys.pending("t:1")] == [5]  # the other owner's, left to it
    await restarted.recover("t:1")
    assert await keys.pending("t:1") == []
    replay = await restarted.flush_parts([("t:0", landed_a), ("t:1", landed_b)])
    assert [(r.stored, r.duplicates) for r in replay] == [(0, 10), (0, 5)]
    assert await _count(clickhouse, "joined-a") == 10
    assert await _count(clickhouse, "joined-b") == 5


async def test_a_joined_flush_whose_insert_fails_releases_every_part(stores: tuple) -> None:
    """The insert fails before storing anything: each part's batch is settled at once, its keys
    released, so the retry stores every part."""
    engine, clickhouse = stores
    sink, faulty = _sink(engine, clickhouse)
    parts = [("t:0", _events("unstored-a", 6)), ("t:1", _events("unstored-b", 4))]
    faulty.fail_before_insert = True
    with pytest.raises(Crash):
        await sink.flush_parts(parts)
    keys = PostgresEventKeyStore(engine)
    assert await keys.pending("t:0") == [] and await keys.pending("t:1") == []
    faulty.fail_before_insert = False
    assert [(r.stored, r.duplicates) for r in await sink.flush_parts(parts)] == [(6, 0), (4, 0)]
    assert await _count(clickhouse, "unstored-a") == 6
    assert await _count(clickhouse, "unstored-b") == 4


async def test_concurrent_flushes_of_the_same_events_store_once(stores: tuple) -> None:
    engine, clickhouse = stores
    sink, _ = _sink(engine, clickhouse)
    events = _events("same", 20)
    results = await asyncio.gather(sink.flush(events), sink.flush(list(reversed(events))))
    assert await _count(clickhouse, "same") == 20
    # Each event stored by one flush; the other found it stored (duplicate) or still pending (in doubt).
    assert sum(r.stored for r in results) == 20
    assert all(r.stored + r.duplicates + len(r.in_doubt) == 20 for r in results)


# A ClickHouse server goes on with a statement whose client stopped waiting. The endpoint holds the
# sink's inserts (fault injection) the way a busy server would, and the sink's client gives up after
# one second: the insert is still the server's to run when the sink settles the batch.


@pytest_asyncio.fixture(scope="module")
async def held_inserts(
    request: pytest.FixtureRequest, postgres_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple]:
    endpoint = request.getfixturevalue("clickhouse_http")
    async with _open_stores(request, "http", Path(tmp_path_factory.mktemp("held")), "held") as (engine, clickhouse):
        impatient = ClickHouse(f"{clickhouse.url}?send_receive_timeout=1")
        yield engine, clickhouse, impatient, endpoint
        endpoint.release()
        impatient.close()


async def _idle(endpoint: ClickHouseHttp, prefix: str) -> bool:
    return endpoint.running(prefix) == 0


async def _busy(endpoint: ClickHouseHttp, prefix: str) -> bool:
    return endpoint.running(prefix) > 0


async def test_an_insert_the_server_still_holds_when_its_client_gives_up_never_lands_after_settling(
    held_inserts: tuple,
) -> None:
    engine, clickhouse, impatient, endpoint = held_inserts
    sink, _ = _sink(engine, impatient)
    events = _events("held", 5)
    endpoint.hold("insert-")
    try:
        with pytest.raises(Exception, match=r"(?i)timed? ?out"):
            await sink.flush(events)
    finally:
        endpoint.release()
    # Whatever the server still held runs now, if it was not ended: let it finish before the retry.
    await wait_for(lambda: _idle(endpoint, "insert-"), timeout=30)
    retry = await sink.flush(events)
    # Settled as "not stored", the batch's keys were released and the retry stored the events: the
    # held insert must never have landed, or they would be stored twice.
    assert retry.stored == 5
    assert await _count(clickhouse, "held") == 5


async def test_a_cancelled_insert_returns_only_once_its_statement_is_answered(held_inserts: tuple) -> None:
    _, clickhouse, _, endpoint = held_inserts
    store = ClickHouseEventStore(clickhouse)
    events = _events("cancelled", 5)
    endpoint.hold("cancel-")
    try:
        insert = asyncio.create_task(store.insert(events, [({}, {})] * len(events), "cancel-1"))
        await wait_for(lambda: _busy(endpoint, "cancel-"), timeout=30)
        insert.cancel()
        await asyncio.sleep(0.3)
        # The thread is still inserting: a caller told "cancelled" now would settle too early.
        assert not insert.done()
    finally:
        endpoint.release()
    with pytest.raises(asyncio.CancelledError):
        await insert
    assert endpoint.running("cancel-") == 0
    assert await _count(clickhouse, "cancelled") == 5
