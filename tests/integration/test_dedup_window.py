"""The deduplication window, against the real stores (Postgres keys, chDB events), with a clock the
test moves: a re-sent event is dropped for exactly `window` after its key was recorded, and stored
again once the purge has forgotten the key; keys are per namespace.

A wrong cutoff either keeps dropping legitimate events as duplicates (too late) or forgets keys
early and counts an event twice (too early); the boundary is checked to the microsecond. The
hourly job that runs the purge in a server is tests/e2e/test_dedup_window_job.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.db import create_engine, migrate
from adapters.postgres.event_keys import PostgresEventKeyStore
from domain.metering.events import Event, epoch_ms
from tests.support.metering import unique
from tests.support.services import require_module
from tests.support.stack import create_database
from workers.sink import EventSink, MeterCatalog

require_module("chdb")

WINDOW = timedelta(days=35)
ONE_US = timedelta(microseconds=1)


class _NoMeters:
    async def list_all_live(self) -> list[object]:
        return []


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest_asyncio.fixture(scope="module")
async def stores(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple]:
    url = await create_database()
    await migrate(url)
    engine = create_engine(url)
    clickhouse = ClickHouse(f"chdb://{Path(tmp_path_factory.mktemp('dedup')) / 'events'}")
    await clickhouse.migrate()
    yield engine, clickhouse
    clickhouse.close()
    await engine.dispose()


def _sink(stores: tuple, clock: Clock) -> tuple[EventSink, PostgresEventKeyStore]:
    engine, clickhouse = stores
    keys = PostgresEventKeyStore(engine, clock=clock)
    return EventSink(ClickHouseEventStore(clickhouse), keys, MeterCatalog(_NoMeters()), owner="dedup-test"), keys


def _event(event_id: str, namespace: str = "ns") -> Event:
    now = epoch_ms(datetime.now(UTC))
    return Event(namespace, event_id, "t", "src", "s", now, '{"v": 1}', now)


async def _stored(stores: tuple, event_id: str, namespace: str = "ns") -> int:
    _, clickhouse = stores
    rows = await clickhouse.query(
        "SELECT count() FROM events WHERE namespace = {ns:String} AND source = 'src' AND id = {id:String}",
        {"ns": namespace, "id": event_id},
    )
    return int(rows[0][0])


async def test_a_resend_inside_the_window_is_dropped_up_to_the_exact_boundary(stores: tuple) -> None:
    recorded = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    clock = Clock(recorded)
    sink, keys = _sink(stores, clock)
    event_id = unique("inside")
    assert (await sink.flush([_event(event_id)])).stored == 1

    for elapsed in (timedelta(hours=1), WINDOW - timedelta(days=1), WINDOW - ONE_US, WINDOW):
        clock.now = recorded + elapsed
        await keys.purge(WINDOW)
        result = await sink.flush([_event(event_id)])
        assert (result.stored, result.duplicates) == (0, 1), f"re-sent {elapsed} after: must still be a duplicate"
    assert await _stored(stores, event_id) == 1


async def test_a_resend_after_the_window_and_the_purge_is_stored(stores: tuple) -> None:
    recorded = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    clock = Clock(recorded)
    sink, keys = _sink(stores, clock)
    event_id = unique("after")
    await sink.flush([_event(event_id)])

    # Past the window but not yet purged (the job runs hourly): still recognised.
    clock.now = recorded + WINDOW + timedelta(minutes=30)
    assert (await sink.flush([_event(event_id)])).duplicates == 1
    # One microsecond past the window, purged: forgotten, so the re-send is a new event again.
    clock.now = recorded + WINDOW + ONE_US
    assert await keys.purge(WINDOW) >= 1
    result = await sink.flush([_event(event_id)])
    assert (result.stored, result.duplicates) == (1, 0)
    assert await _stored(stores, event_id) == 2
    # The new copy starts a new window of its own.
    clock.now += WINDOW
    await keys.purge(WINDOW)
    assert (await sink.flush([_event(event_id)])).duplicates == 1
    assert await _stored(stores, event_id) == 2


async def test_the_purge_forgets_only_keys_older_than_the_window(stores: tuple) -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    clock = Clock(start)
    sink, keys = _sink(stores, clock)
    old, young = unique("old"), unique("young")
    await sink.flush([_event(old)])
    clock.now = start + timedelta(days=2)
    await sink.flush([_event(young)])

    clock.now = start + WINDOW + timedelta(hours=1)
    await keys.purge(WINDOW)
    assert (await sink.flush([_event(old), _event(young)])).stored == 1  # old forgotten, young kept
    assert (await _stored(stores, old), await _stored(stores, young)) == (2, 1)


async def test_the_same_source_and_id_in_two_namespaces_counts_in_both(stores: tuple) -> None:
    sink, _ = _sink(stores, Clock(datetime(2026, 6, 1, tzinfo=UTC)))
    event_id = unique("shared")
    first = await sink.flush([_event(event_id, "tenant_a"), _event(event_id, "tenant_b")])
    assert (first.stored, first.duplicates) == (2, 0)
    # And each namespace still drops its own duplicate.
    again = await sink.flush([_event(event_id, "tenant_b")])
    assert (again.stored, again.duplicates) == (0, 1)
    third = await sink.flush([_event(event_id, "tenant_c"), _event(event_id, "tenant_a")])
    assert (third.stored, third.duplicates) == (1, 1)
    counts = [await _stored(stores, event_id, ns) for ns in ("tenant_a", "tenant_b", "tenant_c")]
    assert counts == [1, 1, 1]
