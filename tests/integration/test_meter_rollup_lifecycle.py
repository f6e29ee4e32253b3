"""Meters' rollups made, filled and routed to: the event store's answers stay the raw ones.

Over chDB and the ClickHouse HTTP endpoint, through `ClickHouseEventStore` (as the API calls it): a
store routing to ready rollups answers every meter query as a store reading only the events does,
and the entitlement windows statement that reads whole hours from the rollup gives the events' row,
with events stored before the rollup exists, between its creation and its first fill, after the
first fill (read from the events), after a second fill, and a batch retried with the same
deduplication token; also between a fill's insert and its commit, and after a fill that crashed
after inserting. A ready rollup damaged any way (rows missing or counted twice, events that landed
after their fill) is found by the audit, leaves routing and comes back ready and equal to the events.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from adapters import metrics
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.clickhouse.meter_sql import (
    Rollup,
    render_rollup_check,
    render_rollup_ddl,
    render_rollup_differences,
    render_rollup_fill,
    rollup_table,
)
from adapters.clickhouse.rollups import (
    CREATED,
    DAMAGED,
    DROPPED,
    READY,
    RETIRED,
    ReadyRollups,
    RollupLifecycle,
)
from adapters.clickhouse.usage_sql import WindowsRequest, render_windows_query
from adapters.clickhouse.windows_batches import WindowsBatches, query_windows
from domain.errors import ValidationError
from domain.metering.events import Event
from domain.metering.jsonpath import extract_values
from domain.metering.models import Aggregation, Meter
from domain.metering.query import FilterString, MeterQueryInput
from tests.integration.test_meter_rollup_chdb import DAYS, event, make_meter, queries
from tests.support import event_store
from tests.support.services import require_module

require_module("chdb")

GRACE = timedelta(milliseconds=300)
_namespaces = itertools.count()
_ids = itertools.count()


class Stores:
    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.raw = ClickHouseEventStore(ch)
        self.routed = ClickHouseEventStore(ch, ReadyRollups(ch, ttl=0))
        # Every pass fills and audits each ready rollup it is given, and compacts what two fills or
        # more left in a partition (up to the watermark just committed: no reader lags here).
        self.lifecycle = RollupLifecycle(
            ch,
            grace=GRACE,
            drop_after=timedelta(0),
            audit_interval=timedelta(0),
            fill_interval=timedelta(0),
            compact_at_fills=2,
        )


@pytest_asyncio.fixture(scope="module", params=event_store.KINDS)
async def stores(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stores]:
    url = event_store.event_store_url(request, request.param, Path(tmp_path_factory.mktemp("lifecycle")), "lifecycle")
    ch = ClickHouse(url)
    await ch.migrate()
    yield Stores(ch)
    ch.close()


async def store_events(
    store: ClickHouseEventStore, meter: Meter, events: Sequence[Any], token: str = ""
) -> list[Event]:
    numeric, strings = meter.extracted_paths
    batch = [
        Event(
            meter.namespace,
            f"id-{next(_ids)}",
            "prompt",
            "test",
            s,
            int(t.timestamp() * 1000),
            orjson.dumps(d).decode(),
            0,
        )
        for s, t, d in events
    ]
    if batch:
        values = [extract_values(orjson.loads(e.data), numeric, strings) for e in batch]
        await store.insert(batch, values, token or f"t-{next(_ids)}")
    return batch


async def until_server_ms(lifecycle: RollupLifecycle, moment_ms: int) -> None:
    while await lifecycle.server_ms() < moment_ms:
        await asyncio.sleep(0.05)


async def step_until_created(stores: Stores, meter: Meter) -> None:
    name = rollup_table(meter, Rollup.HOUR)
    assert (await stores.lifecycle.step([meter])).get(name) == CREATED


async def watermark(stores: Stores, meter: Meter) -> int:
    return (await stores.lifecycle.states())[rollup_table(meter, Rollup.HOUR)].stored_from_ms


async def step_after_the_grace(stores: Stores, meter: Meter) -> dict[str, str]:
    """A pass once everything stored so far is a grace old: the fill takes all of it."""
    await until_server_ms(stores.lifecycle, await stores.lifecycle.server_ms() + stores.lifecycle.grace_ms + 1)
    return await stores.lifecycle.step([meter])


async def make_ready(stores: Stores, meter: Meter, during: Sequence[Any], after_fill: Sequence[Any]) -> None:
    """Creates the rollup and fills it, storing `during` before the first fill and `after_fill` after it."""
    name = rollup_table(meter, Rollup.HOUR)
    await step_until_created(stores, meter)
    assert await watermark(stores, meter) == 0
    await store_events(stores.raw, meter, during)
    assert (await step_after_the_grace(stores, meter))[name] == READY
    await store_events(stores.raw, meter, after_fill)


def _at(day: datetime, seconds: int, millis: int) -> datetime:
    return day - timedelta(days=1) + timedelta(seconds=seconds, milliseconds=millis)


@st.composite
def windows(draw: st.DrawFn, day: datetime) -> tuple[list[tuple[datetime, datetime]], datetime | None]:
    """An entitlement run's windows: ascending breakpoints at whole minutes or at any second."""
    start = day - timedelta(days=1)
    points = sorted(
        draw(
            st.lists(st.integers(0, 3 * 24 * 3600).map(lambda s: start + timedelta(seconds=s)), min_size=2, max_size=6)
        )
    )
    if draw(st.booleans()):
        points = [p.replace(second=0) for p in points]
    pairs = [(points[0], p) for p in points[1:]] if draw(st.booleans()) else list(itertools.pairwise(points))
    tail = draw(st.none() | st.sampled_from(points))
    return pairs, tail


_FIXTURE_PER_EXAMPLE = [HealthCheck.function_scoped_fixture]
# No advanced filter, an equality and a set: the filters an entitlement's meter query can carry.
FEATURE_FILTERS = st.sampled_from([{}, {"model": FilterString(eq="a")}, {"region": FilterString(in_=("a", "b"))}])


@pytest.mark.full_suite_over_http
@settings(max_examples=12, deadline=None, suppress_health_check=_FIXTURE_PER_EXAMPLE, phases=[Phase.generate])
@given(
    st.sampled_from(list(Aggregation)),
    st.sampled_from(DAYS),
    st.lists(event, min_size=0, max_size=80, unique_by=lambda e: (e[1], e[2])),
    st.data(),
)
async def test_routed_answers_equal_raw_answers_through_the_handover(
    stores: Stores, aggregation: Aggregation, day: datetime, events: list[Any], data: st.DataObject
) -> None:
    meter = make_meter(f"lifecycle{next(_namespaces)}", aggregation)
    stored = [(s, _at(day, sec, ms), payload) for s, sec, ms, payload in events]
    parts = [stored[i::5] for i in range(5)]
    await store_events(stores.raw, meter, parts[0])
    await make_ready(stores, meter, parts[1], parts[2])
    token = f"retried-{meter.namespace}"
    retried = await store_events(stores.raw, meter, parts[3], token=token)
    # The sink retries a batch with the same token: a no-op in `events`, so in the rollup's fills.
    numeric, strings = meter.extracted_paths
    if retried:
        values = [extract_values(orjson.loads(e.data), numeric, strings) for e in retried]
        await stores.raw.insert(retried, values, token)
    # Answers between fills (the events since the first fill read from the events), after a second
    # fill, and with events of the same old hours stored after that one.
    for second in (False, True):
        if second:
            first = await watermark(stores, meter)
            assert rollup_table(meter, Rollup.HOUR) not in await step_after_the_grace(stores, meter)
            assert await watermark(stores, meter) > first
            if retried:
                await stores.raw.insert(retried, values, token)
            await store_events(stores.raw, meter, parts[4])
        assert Rollup.HOUR in await stores.routed.rollups.ready(meter)  # type: ignore[union-attr]
        for _ in range(3):
            try:
                query = data.draw(queries(day)).validate(meter, {"c1": ["s1", "s2"], "c2": ["s3"]})
            except ValidationError:
                continue
            assert await stores.routed.query_meter(meter, query) == await stores.raw.query_meter(meter, query)
    filled_to = await watermark(stores, meter)
    for _ in range(4):
        pairs, tail = data.draw(windows(day))
        query = MeterQueryInput(
            filter_customer_ids=data.draw(st.sampled_from([(), ("c1",)])),
            advanced_filters=data.draw(FEATURE_FILTERS),
        ).validate(meter, {"c1": ["s1", "s2"], "c2": ["s3"]})
        # The store reads entitlement windows from the events (faster, measured); the statement
        # that reads their whole hours from the rollup must still give the events' row.
        raw = await stores.ch.query(*render_windows_query(meter, query, pairs, tail))
        hybrid = await stores.ch.query(
            *render_windows_query(meter, query, pairs, tail, hour_rollup_filled_to_ms=filled_to)
        )
        assert hybrid == raw


@settings(max_examples=25, deadline=None, suppress_health_check=_FIXTURE_PER_EXAMPLE, phases=[Phase.generate])
@given(
    st.sampled_from(list(Aggregation)),
    st.sampled_from(DAYS),
    st.lists(event, min_size=0, max_size=60, unique_by=lambda e: (e[1], e[2])),
    st.data(),
)
async def test_each_window_of_the_windows_statement_is_the_meter_query_for_that_window(
    stores: Stores, aggregation: Aggregation, day: datetime, events: list[Any], data: st.DataObject
) -> None:
    # The oracle is the meter query (render_meter_query, OpenMeter's semantics) for each window
    # alone, and Python for the tail; the windows statement computes all of them in one aggregate.
    meter = make_meter(f"lifecycle{next(_namespaces)}", aggregation)
    pairs, tail = data.draw(windows(day))
    # Events on every bound and a millisecond before it, where an off-by-one shows.
    bounds = {t for pair in pairs for t in pair} | ({tail} if tail is not None else set())
    edges = [
        (s, t - timedelta(milliseconds=m), {"tokens": 2, "user": "b"})
        for t in bounds
        for s, m in (("s1", 0), ("s3", 1))
    ]
    stored = await store_events(stores.raw, meter, [(s, _at(day, sec, ms), p) for s, sec, ms, p in events] + edges)
    customers = {"c1": ["s1", "s2"], "c2": ["s3"]}
    filters = {
        "filter_customer_ids": data.draw(st.sampled_from([(), ("c1",)])),
        "advanced_filters": data.draw(FEATURE_FILTERS),
    }
    lower = min([since for since, _ in pairs] + ([tail] if tail is not None else []))
    query = MeterQueryInput(from_=lower, **filters).validate(meter, customers)
    values, first = await stores.raw.query_meter_windows(meter, query, pairs, tail)
    for maps_complete in (False, True):  # the values read from the maps or from the JSON: the same row
        sql = render_windows_query(meter, query, pairs, tail, maps_complete=maps_complete)
        assert [None if v is None else float(v) for v in (await stores.ch.query(*sql))[0][0]] == values
    expected = []
    for since, until in pairs:
        if since >= until:  # an empty window (the meter query refuses one): nothing counts
            expected.append(None)
            continue
        alone = MeterQueryInput(from_=since, to=until, **filters).validate(meter, customers)
        rows = await stores.raw.query_meter(meter, alone)
        assert len(rows) <= 1
        expected.append(rows[0].value if rows else None)
    # No event counted: NULL from the windows statement (0 for counts), no row from the meter query.
    assert [v or 0 for v in values] == [v or 0 for v in expected]
    if tail is not None and not filters["advanced_filters"]:
        subjects = {s for c in filters["filter_customer_ids"] for s in customers[c]}
        after = [
            e.time_ms
            for e in stored
            if e.time_ms >= tail.timestamp() * 1000 and (not subjects or e.subject in subjects)
        ]
        assert first == (datetime.fromtimestamp(min(after) / 1000, tz=UTC) if after else None)


_BATCH_CUSTOMERS = {"c1": ["s1", "s2"], "c2": ["s3"], "c3": ["s2", "s3"], "c4": ["s9"]}


@settings(max_examples=15, deadline=None, suppress_health_check=_FIXTURE_PER_EXAMPLE, phases=[Phase.generate])
@given(
    st.sampled_from(list(Aggregation)),
    st.sampled_from(DAYS),
    st.lists(event, min_size=0, max_size=60, unique_by=lambda e: (e[1], e[2])),
    st.data(),
)
async def test_a_batch_of_windows_queries_answers_each_as_its_own_statement(
    stores: Stores, aggregation: Aggregation, day: datetime, events: list[Any], data: st.DataObject
) -> None:
    # Customers sharing a subject (c1, c3), one without events (c4), windows and tails of their own,
    # one customer twice: the batch statement's row for each is its own statement's, exactly.
    meter = make_meter(f"lifecycle{next(_namespaces)}", aggregation)
    advanced = data.draw(FEATURE_FILTERS)
    requests = []
    for _ in range(data.draw(st.integers(2, 5))):
        pairs, tail = data.draw(windows(day))
        if tail is not None and data.draw(st.booleans()):
            pairs = []  # the tail alone
        lower = min([since for since, _ in pairs] + ([tail] if tail is not None else []))
        customer = data.draw(st.sampled_from(list(_BATCH_CUSTOMERS)))
        query = MeterQueryInput(from_=lower, filter_customer_ids=(customer,), advanced_filters=advanced).validate(
            meter, _BATCH_CUSTOMERS
        )
        requests.append(WindowsRequest(query, pairs, tail))
    # Events on every bound and a millisecond before it, where an off-by-one shows.
    bounds = {t for r in requests for pair in r.windows for t in pair} | {r.tail_from for r in requests} - {None}
    edges = [
        (s, t - timedelta(milliseconds=m), {"tokens": 2, "user": "b"})
        for t in bounds
        for s, m in (("s1", 0), ("s3", 1))
    ]
    await store_events(stores.raw, meter, [(s, _at(day, sec, ms), p) for s, sec, ms, p in events] + edges)
    alone = [(await query_windows(stores.ch, meter, [request]))[0] for request in requests]
    assert await query_windows(stores.ch, meter, requests) == alone
    # Through the store, concurrently (coalesced into one or two statements): the same answers.
    answers = await asyncio.gather(
        *(stores.raw.query_meter_windows(meter, r.query, r.windows, r.tail_from) for r in requests)
    )
    for (values, first), (expected, count, first_ms) in zip(answers, alone, strict=True):
        assert values == expected
        assert first == (datetime.fromtimestamp(first_ms / 1000, tz=UTC) if count else None)


class CountingClickHouse:
    """The real engine behind it; counts statements and can fail the next batch statements (ARRAY JOIN)."""

    def __init__(self, ch: ClickHouse) -> None:
        self._ch = ch
        self.statements = 0
        self.fail_batches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ch, name)

    async def query(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]:
        self.statements += 1
        if self.fail_batches and "ARRAY JOIN" in sql:
            self.fail_batches -= 1
            raise RuntimeError("injected: the batch statement failed")
        return await self._ch.query(sql, parameters)


async def test_concurrent_windows_queries_share_statements_and_a_failed_batch_fails_nobody(stores: Stores) -> None:
    ch = CountingClickHouse(stores.ch)
    store = ClickHouseEventStore(ch)  # type: ignore[arg-type]
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.SUM)
    day = DAYS[0]
    customers = {f"c{i}": [f"s{i}"] for i in range(16)}
    await store_events(store, meter, [(f"s{i}", day + timedelta(minutes=i), {"tokens": i}) for i in range(16)])
    pairs = [(day, day + timedelta(hours=1)), (day, day + timedelta(minutes=8))]
    queries = [
        MeterQueryInput(from_=day, filter_customer_ids=(c,)).validate(meter, customers) for c in sorted(customers)
    ]

    async def ask_all() -> list[Any]:
        return await asyncio.gather(*(store.query_meter_windows(meter, q, pairs, day) for q in queries))

    expected = [
        ([float(i), float(i) if i < 8 else None], day + timedelta(minutes=i)) for i in sorted(range(16), key=str)
    ]
    # Asked in the same turn of the event loop: one statement.
    assert await ask_all() == expected
    assert ch.statements == 1
    # One asked first, its statement under way when the other 15 come: they go out together after it.
    ch.statements = 0
    first = asyncio.ensure_future(store.query_meter_windows(meter, queries[0], pairs, day))
    for _ in range(2):  # the caller queues, then the drain sends its statement
        await asyncio.sleep(0)
    assert ch.statements == 1
    rest = await asyncio.gather(*(store.query_meter_windows(meter, q, pairs, day) for q in queries[1:]))
    assert [await first, *rest] == expected
    assert ch.statements == 2
    ch.fail_batches, ch.statements = 1, 0
    assert await ask_all() == expected  # the failed batch's queries, each alone
    assert ch.statements == 1 + 16
    # A caller that gives up while queued costs the others nothing.
    ch.statements = 0
    waiting = [asyncio.ensure_future(store.query_meter_windows(meter, q, pairs, day)) for q in queries]
    await asyncio.sleep(0)
    waiting[5].cancel()
    done = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(done[5], asyncio.CancelledError)
    assert [d for i, d in enumerate(done) if i != 5] == [e for i, e in enumerate(expected) if i != 5]
    # More waiting than a statement may carry: statements of at most max_batch queries each.
    requests = [WindowsRequest(q, pairs, day) for q in queries]
    alone = [(await query_windows(stores.ch, meter, [r]))[0] for r in requests]
    small = WindowsBatches(ch, max_batch=5)  # type: ignore[arg-type]
    ch.statements = 0
    assert await asyncio.gather(*(small.query(meter, r) for r in requests)) == alone
    assert ch.statements == 4  # 5 + 5 + 5 + 1


async def test_a_changed_meter_gets_a_new_rollup_and_the_old_one_is_dropped(stores: Stores) -> None:
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.SUM)
    await make_ready(stores, meter, [], [])
    old = rollup_table(meter, Rollup.HOUR)
    changed = make_meter(meter.namespace, Aggregation.MAX)
    new = rollup_table(changed, Rollup.HOUR)
    assert new != old
    moved = await stores.lifecycle.step([changed])
    assert moved[old] == RETIRED and moved[new] == CREATED
    assert (await stores.lifecycle.step([changed]))[old] == DROPPED
    tables = {r[0] for r in await stores.ch.query("SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert old not in tables and new in tables and not {t for t in tables if t.endswith("_view")}


async def test_a_view_made_rollup_of_old_is_dropped_with_its_view(stores: Stores) -> None:
    # An upgraded store: a rollup table and view under a digest without fills, recorded ready.
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.SUM)
    old = f"meter_rollup_hour_old{meter.namespace}"
    await stores.ch.command(f"CREATE TABLE {old} (n UInt64) ENGINE = MergeTree ORDER BY n")
    await stores.ch.command(f"CREATE MATERIALIZED VIEW {old}_view TO {old} AS SELECT 1 AS n FROM events")
    await stores.lifecycle._record(old, meter, READY, 1)
    assert (await stores.lifecycle.step([meter]))[old] == RETIRED
    assert (await stores.lifecycle.step([meter]))[old] == DROPPED
    tables = {r[0] for r in await stores.ch.query("SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert not {old, f"{old}_view"} & tables


async def test_a_fill_that_crashed_after_inserting_counts_nothing_twice(stores: Stores) -> None:
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.SUM)
    name = rollup_table(meter, Rollup.HOUR)
    day = DAYS[0]
    await make_ready(stores, meter, [("s1", day + timedelta(hours=h), {"tokens": 1}) for h in range(3)], [])
    await store_events(stores.raw, meter, [("s1", day + timedelta(hours=h), {"tokens": 10}) for h in range(3)])
    query = MeterQueryInput(window_size="HOUR").validate(meter)
    expected = await stores.raw.query_meter(meter, query)
    assert [r.value for r in expected] == [11.0] * 3
    # A fill inserted its rows and never committed (a crash before recording the new watermark):
    # between its insert and its commit, a query reads none of them.
    committed = await watermark(stores, meter)
    await until_server_ms(stores.lifecycle, await stores.lifecycle.server_ms() + stores.lifecycle.grace_ms + 1)
    crashed = await stores.lifecycle.server_ms() - stores.lifecycle.grace_ms
    fill = render_rollup_fill(meter, Rollup.HOUR, stored_from_ms=committed, stored_before_ms=crashed)
    await stores.ch.command(*fill, settings={"insert_deduplicate": 0})
    assert await stores.routed.query_meter(meter, query) == expected
    # The next fill removes them before it inserts its own: committed, nothing counts twice.
    assert name not in await step_after_the_grace(stores, meter)
    assert await watermark(stores, meter) > crashed
    assert await stores.routed.query_meter(meter, query) == expected
    assert not await stores.ch.query(*render_rollup_differences(meter, Rollup.HOUR, name))
    assert name not in await stores.lifecycle.step([meter])  # audited equal


async def test_the_fill_check_finds_an_event_the_fill_missed(stores: Stores) -> None:
    # An event stored before U that lands after the fill read the events (what the grace rules out)
    # is in neither the fill nor the events read from U on: the check, run after the fill, counts its bucket.
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.COUNT)
    await store_events(stores.raw, meter, [("s1", DAYS[0], {}), ("s2", DAYS[0], {})])
    table = rollup_table(meter, Rollup.HOUR)
    stored_from = await stores.lifecycle.server_ms()
    for sql, parameters in render_rollup_ddl(meter, Rollup.HOUR):
        await stores.ch.command(sql, parameters)
    await stores.ch.command(*render_rollup_fill(meter, Rollup.HOUR, stored_before_ms=stored_from))
    check = render_rollup_check(meter, Rollup.HOUR, table, stored_from)
    assert (await stores.ch.query(*check))[0][0] == 0
    await stores.ch.command(
        "INSERT INTO events (namespace, id, type, source, subject, time, data, ingested_at, stored_at) VALUES "
        "({ns:String}, 'late', 'prompt', 'test', 's1', now64(3), '{}', now64(3), "
        "fromUnixTimestamp64Milli({w:Int64}, 'UTC') - 1)",
        {"ns": meter.namespace, "w": stored_from},
    )
    assert (await stores.ch.query(*check))[0][0] == 1
    await stores.ch.command(f"DROP TABLE {table}")


async def audited_events(stores: Stores, meter: Meter) -> list[Any]:
    """Events in settled hours both of the audit's reaches: the last day, and an older day."""
    now = datetime.fromtimestamp(await stores.lifecycle.server_ms() / 1000, UTC)
    recent = [now - timedelta(hours=h, minutes=m) for h in (2, 5) for m in (0, 7)]
    old = [DAYS[0] + timedelta(hours=h, minutes=m) for h in (1, 3) for m in (0, 7)]
    return [(s, t, {"tokens": 2, "model": "a"}) for s in ("s1", "s2") for t in recent + old]


async def stray_events(stores: Stores, meter: Meter, events: Sequence[Any], stored_at_ms: int) -> None:
    """Stores events directly into `events` with the given stored_at (not through the event store)."""
    for subject, moment, _ in events:
        await stores.ch.command(
            "INSERT INTO events (namespace, id, type, source, subject, time, data, ingested_at, stored_at) VALUES "
            "({ns:String}, {id:String}, 'prompt', 'test', {subject:String}, fromUnixTimestamp64Milli({t:Int64}, 'UTC'), "
            "'{\"tokens\": 2}', now64(3), fromUnixTimestamp64Milli({w:Int64}, 'UTC'))",
            {
                "ns": meter.namespace,
                "id": f"stray-{next(_ids)}",
                "subject": subject,
                "t": int(moment.timestamp() * 1000),
                "w": stored_at_ms,
            },
        )


async def damage(stores: Stores, meter: Meter, how: str, events: Sequence[Any]) -> None:
    table = rollup_table(meter, Rollup.HOUR)
    if how == "rows missing":  # from the older day only: the audit's rotating slice finds them
        await stores.ch.command(
            f"ALTER TABLE {table} DELETE WHERE subject = 's1' AND bucket < now() - INTERVAL 2 DAY "
            "SETTINGS mutations_sync = 2"
        )
    elif how == "rows counted twice":
        await stores.ch.command(
            f"INSERT INTO {table} SELECT * FROM {table} WHERE subject = 's2'", settings={"insert_deduplicate": 0}
        )
    else:  # stored before the watermark, landing after the fill: in neither the fill nor the events read
        await stray_events(stores, meter, events[::3], await watermark(stores, meter) - 1)


@pytest.mark.parametrize("how", ["rows missing", "rows counted twice", "events landed after their fill"])
async def test_the_audit_takes_a_damaged_rollup_out_of_routing_and_makes_it_again(stores: Stores, how: str) -> None:
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.SUM)
    name = rollup_table(meter, Rollup.HOUR)
    events = await audited_events(stores, meter)
    await store_events(stores.raw, meter, events[: len(events) // 2])
    await make_ready(stores, meter, events[len(events) // 2 :], [])
    query = MeterQueryInput(group_by=("subject",)).validate(meter)
    assert await stores.routed.query_meter(meter, query) == await stores.raw.query_meter(meter, query)
    assert name not in await stores.lifecycle.step([meter])  # audited: equal
    found_before = metrics.METER_ROLLUP_AUDIT_MISMATCHES._value.get()

    await damage(stores, meter, how, events)
    assert await stores.routed.query_meter(meter, query) != await stores.raw.query_meter(meter, query)
    # Seen once it is only a suspect (an insert in flight looks the same); a grace later, unchanged,
    # it is a finding.
    assert name not in await stores.lifecycle.step([meter])
    await asyncio.sleep(GRACE.total_seconds())
    assert (await stores.lifecycle.step([meter]))[name] == DAMAGED
    assert metrics.METER_ROLLUP_AUDIT_MISMATCHES._value.get() == found_before + 1
    assert Rollup.HOUR not in await stores.routed.rollups.ready(meter)  # type: ignore[union-attr]
    assert await stores.routed.query_meter(meter, query) == await stores.raw.query_meter(meter, query)

    # Started over (drop_after is 0 here): ready again, equal to the events, and audited equal.
    await step_until_created(stores, meter)
    assert (await step_after_the_grace(stores, meter))[name] == READY
    assert Rollup.HOUR in await stores.routed.rollups.ready(meter)  # type: ignore[union-attr]
    assert await stores.routed.query_meter(meter, query) == await stores.raw.query_meter(meter, query)
    assert not await stores.ch.query(*render_rollup_differences(meter, Rollup.HOUR, name))
    assert name not in await stores.lifecycle.step([meter])
    await asyncio.sleep(GRACE.total_seconds())
    assert name not in await stores.lifecycle.step([meter])


async def test_a_difference_gone_a_grace_later_is_no_finding(stores: Stores) -> None:
    # What an insert in flight looks like: the events hold rows the rollup does not yet (or the
    # other way round), and a moment later both do.
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.COUNT)
    name = rollup_table(meter, Rollup.HOUR)
    await make_ready(stores, meter, await audited_events(stores, meter), [])
    await stores.ch.command(f"CREATE TABLE held_{meter.namespace} AS {name}")
    await stores.ch.command(f"INSERT INTO held_{meter.namespace} SELECT * FROM {name} WHERE subject = 's1'")
    await stores.ch.command(f"ALTER TABLE {name} DELETE WHERE subject = 's1' SETTINGS mutations_sync = 2")
    assert name not in await stores.lifecycle.step([meter])
    await stores.ch.command(
        f"INSERT INTO {name} SELECT * FROM held_{meter.namespace}", settings={"insert_deduplicate": 0}
    )
    await asyncio.sleep(GRACE.total_seconds())
    assert name not in await stores.lifecycle.step([meter])
    assert Rollup.HOUR in await stores.routed.rollups.ready(meter)  # type: ignore[union-attr]
    await stores.ch.command(f"DROP TABLE held_{meter.namespace}")


def test_the_hour_windows_query_reads_whole_hours_from_the_rollup() -> None:
    meter = make_meter("ns", Aggregation.SUM)
    query = MeterQueryInput().validate(meter)
    t0 = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    within_an_hour = [(t0, t0 + timedelta(minutes=20))]
    table = rollup_table(meter, Rollup.HOUR)
    assert table not in render_windows_query(meter, query, within_an_hour, hour_rollup_filled_to_ms=0)[0]
    sql, _ = render_windows_query(meter, query, [(t0, t0 + timedelta(hours=3))], hour_rollup_filled_to_ms=0)
    assert table in sql and "UNION ALL" in sql


async def test_the_hour_windows_statement_reads_the_events_stored_after_the_watermark(stores: Stores) -> None:
    # Late events for old hours, stored after the last fill: the windows statement's whole hours
    # take them from the events (they are in no committed fill), as the meter query does.
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.SUM)
    day = DAYS[0]
    await make_ready(
        stores,
        meter,
        [("s1", day + timedelta(hours=h, minutes=5), {"tokens": 1}) for h in range(4)],
        [("s1", day + timedelta(hours=h, minutes=9), {"tokens": 10}) for h in range(4)],
    )
    query = MeterQueryInput(from_=day).validate(meter)
    pairs = [(day, day + timedelta(hours=2)), (day + timedelta(minutes=30), day + timedelta(hours=4))]
    raw = await stores.ch.query(*render_windows_query(meter, query, pairs))
    assert raw[0][0] == [22.0, 33.0]
    hybrid = render_windows_query(meter, query, pairs, hour_rollup_filled_to_ms=await watermark(stores, meter))
    assert await stores.ch.query(*hybrid) == raw


class Crash(Exception):
    pass


class CrashingClickHouse:
    """The event store as the lifecycle sees it, until its `at`-th statement: the process dies
    there (the statement never runs, which is also how a crash just after the one before looks)."""

    def __init__(self, ch: ClickHouse, at: int) -> None:
        self._ch, self.at, self.count = ch, at, 0
        self.cluster = ch.cluster

    def _next(self) -> None:
        self.count += 1
        if self.count == self.at:
            raise Crash(self.count)

    async def query(self, *args: Any, **kwargs: Any) -> Any:
        self._next()
        return await self._ch.query(*args, **kwargs)

    async def command(self, *args: Any, **kwargs: Any) -> Any:
        self._next()
        return await self._ch.command(*args, **kwargs)


async def rollup_rows(stores: Stores, meter: Meter) -> int:
    return int((await stores.ch.query(f"SELECT count() FROM {rollup_table(meter, Rollup.HOUR)}"))[0][0])


async def differences_up_to_the_watermark(stores: Stores, meter: Meter) -> list[Any]:
    name = rollup_table(meter, Rollup.HOUR)
    w = await watermark(stores, meter)
    return await stores.ch.query(*render_rollup_differences(meter, Rollup.HOUR, name, stored_before_ms=w))


async def filled_three_times(stores: Stores, meter: Meter) -> None:
    """A ready rollup whose hours each hold rows of three fills (in two months' partitions), plus
    events stored after the last fill (read from the events), by a worker that never compacts."""
    filler = RollupLifecycle(
        stores.ch, grace=GRACE, drop_after=timedelta(0), audit_interval=None, fill_interval=timedelta(0),
        compact_at_fills=10**6,
    )  # fmt: skip
    day = DAYS[2]  # 2024-12-31: its hours and the next day's are in two partitions

    def batch(tokens: int) -> list[Any]:
        return [
            (s, day + timedelta(hours=h, minutes=tokens), {"tokens": tokens, "model": m})
            for s in ("s1", "s2") for h in range(20, 28) for m in ("a", "b")
        ]  # fmt: skip

    await filler.step([meter])
    for tokens in (1, 2, 4):
        await store_events(stores.raw, meter, batch(tokens))
        await until_server_ms(filler, await filler.server_ms() + filler.grace_ms + 1)
        await filler.step([meter])
    await store_events(stores.raw, meter, batch(8))


async def test_compaction_folds_the_fills_into_a_row_per_key_and_answers_stay_the_events(stores: Stores) -> None:
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.SUM)
    await filled_three_times(stores, meter)
    queries = [
        MeterQueryInput(window_size="HOUR", group_by=["subject", "model"]).validate(meter),
        MeterQueryInput().validate(meter),
    ]
    expected = [await stores.raw.query_meter(meter, q) for q in queries]
    assert sum(r.value for r in expected[1]) == 15 * 2 * 8 * 2
    rows = await rollup_rows(stores, meter)
    assert rows == 3 * 2 * 8 * 2  # three fills x subjects x hours x models
    assert await stores.lifecycle.compact(meter, Rollup.HOUR) == 2  # both months' partitions
    assert await rollup_rows(stores, meter) == rows // 3
    assert [await stores.routed.query_meter(meter, q) for q in queries] == expected
    assert not await differences_up_to_the_watermark(stores, meter)
    assert await stores.lifecycle.compact(meter, Rollup.HOUR) == 0  # one fill's rows per partition now
    # A later fill adds its rows beside the compacted ones; the pass of the `compact_at_fills`-th
    # fill since the compaction compacts again (the fills before cost no compaction statement).
    assert rollup_table(meter, Rollup.HOUR) not in await step_after_the_grace(stores, meter)
    assert await rollup_rows(stores, meter) == rows // 3 + rows // 3
    assert [await stores.routed.query_meter(meter, q) for q in queries] == expected
    assert rollup_table(meter, Rollup.HOUR) not in await step_after_the_grace(stores, meter)
    assert await rollup_rows(stores, meter) == rows // 3
    assert [await stores.routed.query_meter(meter, q) for q in queries] == expected


@pytest.mark.full_suite_over_http
async def test_a_compaction_that_crashed_at_any_step_leaves_the_answers_exact(stores: Stores) -> None:
    at, completed = 1, False
    while not completed:
        meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.UNIQUE_COUNT)
        await filled_three_times(stores, meter)
        query = MeterQueryInput(window_size="HOUR", group_by=["subject"]).validate(meter)
        expected = await stores.raw.query_meter(meter, query)
        rows = await rollup_rows(stores, meter)
        crashing = CrashingClickHouse(stores.ch, at)
        lifecycle = RollupLifecycle(
            crashing,
            grace=GRACE,
            drop_after=timedelta(0),
            compact_at_fills=2,  # type: ignore[arg-type]
        )
        try:
            await lifecycle.compact(meter, Rollup.HOUR)
            completed = True
        except Crash:
            pass
        assert await stores.routed.query_meter(meter, query) == expected, at
        assert not await differences_up_to_the_watermark(stores, meter), at
        # The next compaction (another process, say) finishes the work; a staging table is left only
        # by a crash at the last statement (harmless: the next compaction or the rollup's drop takes it).
        await stores.lifecycle.compact(meter, Rollup.HOUR)
        assert await rollup_rows(stores, meter) == rows // 3, at
        assert await stores.routed.query_meter(meter, query) == expected, at
        tables = await stores.ch.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        left = f"{rollup_table(meter, Rollup.HOUR)}_compact" in {t[0] for t in tables}
        assert left == (at == crashing.count and not completed and at == 2 + 2 * 6), at
        at += 1
    # Every statement of a compaction of two partitions was a crash point: C, the partitions, and
    # per partition a drop, a create, the copy, the tally, the swap and a drop.
    assert at - 1 == 2 + 2 * 6 + 1


async def test_fills_committed_within_drop_after_are_not_compacted(stores: Stores) -> None:
    # A process may still read at a watermark committed up to a few seconds ago: compaction folds
    # only fills up to a watermark committed `drop_after` ago, which every reader has passed.
    meter = make_meter(f"lifecycle{next(_namespaces)}", Aggregation.SUM)
    await filled_three_times(stores, meter)
    rows = await rollup_rows(stores, meter)
    patient = RollupLifecycle(stores.ch, grace=GRACE, drop_after=timedelta(hours=1), compact_at_fills=2)
    assert await patient.compactable_to(rollup_table(meter, Rollup.HOUR)) == 0
    assert await patient.compact(meter, Rollup.HOUR) == 0
    assert await rollup_rows(stores, meter) == rows
