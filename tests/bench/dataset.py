"""Bench data: the raw-insert reference and the query dataset, written straight into chDB."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa

from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import _SCHEMA
from adapters.clickhouse.meter_sql import (
    Rollup,
    render_meter_query,
    render_rollup_ddl,
    render_rollup_drop,
    render_rollup_fill,
    rollup_for,
    rollup_table,
    to_query_rows,
)
from domain.metering.models import VALUES_BACKFILLED, Aggregation, Meter
from domain.metering.query import MeterQueryInput
from tally.v1 import meters_pb2, meters_pb2_grpc
from tests.support.stack import TallyProcess

QUERY_EVENT_TYPE = "bench_query"
CHUNK = 500_000


def _table(n: int, offset: int, subjects: int, now: datetime, event_type: str) -> pa.Table:
    ids = np.arange(offset, offset + n)
    tokens = ids % 1000
    models = np.where(ids % 3 == 0, "gpt-4o-mini", "gpt-4o")
    users = [f"user-{u}" for u in (ids * 7919) % 10_000]
    data = [f'{{"tokens":{t},"model":"{m}","user":"{u}"}}' for t, m, u in zip(tokens, models, users, strict=True)]
    start_ms = int((now - timedelta(days=30)).timestamp() * 1000)
    times = start_ms + (ids * 2_592_000_000 // max(1, offset + n)) % 2_592_000_000
    now_ms = int(now.timestamp() * 1000)
    return pa.Table.from_arrays(
        [
            pa.array(["default"] * n),
            pa.array([f"q-{i}" for i in ids]),
            pa.array([event_type] * n),
            pa.array(["bench"] * n),
            pa.array([f"customer-{s}" for s in ids % subjects]),
            pa.array(times, pa.timestamp("ms", tz="UTC")),
            pa.array(data),
            pa.array([[("$.tokens", float(t))] for t in tokens], _SCHEMA.field("num_values").type),
            pa.array(
                [[("$.model", m), ("$.user", u)] for m, u in zip(models, users, strict=True)],
                _SCHEMA.field("str_values").type,
            ),
            pa.array(np.full(n, now_ms), pa.timestamp("ms", tz="UTC")),
        ],
        schema=_SCHEMA,
    )


def raw_insert_rps(directory: Path, rows: int) -> float:
    """Rows/s of bulk Arrow inserts of event rows straight into chDB: the physical limit."""

    async def run() -> float:
        clickhouse = ClickHouse(f"chdb://{directory}")
        await clickhouse.migrate()
        now = datetime.now(UTC)
        tables = [_table(min(CHUNK, rows - o), o, 1000, now, "raw") for o in range(0, rows, CHUNK)]
        started = time.perf_counter()
        for i, table in enumerate(tables):
            await clickhouse.insert_arrow("events", table, settings={"insert_deduplication_token": f"raw-{i}"})
        elapsed = time.perf_counter() - started
        clickhouse.close()
        return rows / elapsed

    return asyncio.run(run())


def load_query_dataset(directory: Path, rows: int, subjects: int) -> dict[str, Any]:
    """Loads the query dataset and measures the naive (raw-JSON, OpenMeter-style) query on it."""

    async def run() -> dict[str, Any]:
        clickhouse = ClickHouse(f"chdb://{directory}")
        await clickhouse.migrate()
        now = datetime.now(UTC)
        for offset in range(0, rows, CHUNK):
            table = _table(min(CHUNK, rows - offset), offset, subjects, now, QUERY_EVENT_TYPE)
            await clickhouse.insert_arrow("events", table, settings={"insert_deduplication_token": f"q-{offset}"})
        await clickhouse.command("OPTIMIZE TABLE events FINAL")
        # The same aggregation as typed queries run, written the way OpenMeter queries raw events.
        naive_sql = (
            "SELECT tumbleStart(toDateTime(time), toIntervalHour(1), 'UTC') AS w, subject, "
            "sum(toFloat64OrNull(JSON_VALUE(data, '$.tokens'))) AS value FROM events "
            "WHERE namespace = 'default' AND type = {t:String} AND time >= {f:DateTime64(3)} AND time < {to:DateTime64(3)} "
            "GROUP BY w, subject ORDER BY w, subject"
        )
        params = {"t": QUERY_EVENT_TYPE, "f": now - timedelta(days=30), "to": now + timedelta(minutes=1)}
        # Tally's own SQL for the same query, on the typed columns (the dataset's maps are complete).
        meter = Meter(
            id="bench",
            namespace="default",
            slug="bench",
            name="bench",
            description=None,
            aggregation=Aggregation.SUM,
            event_type=QUERY_EVENT_TYPE,
            event_from=None,
            value_property="$.tokens",
            group_by={},
            metadata={},
            annotations={VALUES_BACKFILLED: True},
            created_at=now,
            updated_at=now,
        )
        query = MeterQueryInput(from_=params["f"], to=params["to"], window_size="HOUR", group_by=["subject"]).validate(
            meter
        )
        typed_sql, typed_params = render_meter_query(meter, query, maps_complete=True)
        naive = await _p50(lambda: clickhouse.query(naive_sql, params))
        typed = await _p50(lambda: clickhouse.query(typed_sql, typed_params))
        # The same two, wrapped so that only the engine's work counts (no 72k-row result transfer).
        engine = "SELECT count(), sum(value) FROM ({}) AS q"
        naive_engine = await _p50(lambda: clickhouse.query(engine.format(naive_sql), params))
        typed_engine = await _p50(lambda: clickhouse.query(engine.format(typed_sql), typed_params))
        rollup = await _rollup_figures(clickhouse, meter, params["f"], params["to"], engine)
        clickhouse.close()
        return {
            "now": now,
            "naive_ms": naive,
            "typed_sql_ms": typed,
            "naive_engine_ms": naive_engine,
            "typed_engine_ms": typed_engine,
            **rollup,
        }

    return asyncio.run(run())


async def _rollup_figures(
    clickhouse: ClickHouse, meter: Meter, from_: datetime, to: datetime, engine: str
) -> dict[str, float]:
    """The typed query from the meter's per-hour rollup (adapters/clickhouse/meter_sql.py), beside
    the raw typed query on the same whole-hour bounds, and the bench's own query (bounds inside an
    hour) from the rollup with its edges from the events; the answers must be equal first."""
    hour_from = from_.replace(minute=0, second=0, microsecond=0)
    hour_to = to.replace(minute=0, second=0, microsecond=0)
    query = MeterQueryInput(from_=hour_from, to=hour_to, window_size="HOUR", group_by=["subject"]).validate(meter)
    edges_query = MeterQueryInput(from_=from_, to=to, window_size="HOUR", group_by=["subject"]).validate(meter)
    rollup = rollup_for(query)
    assert rollup is Rollup.HOUR and rollup_for(edges_query) is Rollup.HOUR
    for sql, parameters in render_rollup_ddl(meter, rollup):
        await clickhouse.command(sql, parameters)
    # One fill of every event (what the rollup worker's fills add up to), the watermark after it.
    filled_to = int((await clickhouse.query("SELECT toUnixTimestamp64Milli(now64(3))"))[0][0])
    await clickhouse.command(
        *render_rollup_fill(meter, rollup, stored_before_ms=filled_to), settings={"insert_deduplicate": 0}
    )
    await clickhouse.command(f"OPTIMIZE TABLE {rollup_table(meter, rollup)} FINAL")
    statements = {}
    for name, q in (("aligned", query), ("edges", edges_query)):
        raw_sql, raw_params = render_meter_query(meter, q, maps_complete=True)
        rollup_sql, rollup_params = render_meter_query(
            meter, q, maps_complete=True, rollup=rollup, filled_to_ms=filled_to
        )
        raw_rows = to_query_rows(q, await clickhouse.query(raw_sql, raw_params))
        rollup_rows = to_query_rows(q, await clickhouse.query(rollup_sql, rollup_params))
        if rollup_rows != raw_rows:  # a figure for wrong answers would be worthless
            raise AssertionError(f"the rollup's answer ({name}) differs from the raw events' answer")
        statements[name] = (raw_sql, raw_params, rollup_sql, rollup_params)
    raw_sql, raw_params, rollup_sql, rollup_params = statements["aligned"]
    _, _, edges_sql, edges_params = statements["edges"]
    figures = {
        "aligned_typed_sql_ms": await _p50(lambda: clickhouse.query(raw_sql, raw_params)),
        "rollup_sql_ms": await _p50(lambda: clickhouse.query(rollup_sql, rollup_params)),
        "rollup_edges_sql_ms": await _p50(lambda: clickhouse.query(edges_sql, edges_params)),
        "aligned_typed_engine_ms": await _p50(lambda: clickhouse.query(engine.format(raw_sql), raw_params)),
        "rollup_engine_ms": await _p50(lambda: clickhouse.query(engine.format(rollup_sql), rollup_params)),
    }
    # Tally then runs on this store and makes its own rollups.
    for sql in render_rollup_drop(meter, rollup):
        await clickhouse.command(sql)
    return figures


async def _p50(call: Any, runs: int = 7) -> float:
    timings = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await call()
        timings.append((time.perf_counter() - t0) * 1000)
    return statistics.median(timings[1:])


async def query_meters(
    meters: meters_pb2_grpc.MeterServiceStub, stored_at: datetime | None = None, metrics_port: int | None = None
) -> tuple[Any, Any]:
    """The query benchmarks' two meters over the query dataset (tokens summed by model, unique
    users), made anew and backfilled. With `metrics_port` (the server's), returned once both meters'
    per-hour rollups are ready, the steady state of meters older than their rollups' first fill:
    queries then read the whole hours from the rollups. The meters are made a grace
    (sink.rollup_grace_s, 30 s) after `stored_at`, when the dataset was stored, so that first fill
    holds all of it."""
    if metrics_port is not None and stored_at is not None:
        await asyncio.sleep(max(0.0, (stored_at + timedelta(seconds=31) - datetime.now(UTC)).total_seconds()))
    suffix = uuid.uuid4().hex[:6]
    tokens = await meters.CreateMeter(
        meters_pb2.CreateMeterRequest(
            slug=f"bench_tokens_{suffix}",
            event_type=QUERY_EVENT_TYPE,
            aggregation="SUM",
            value_property="$.tokens",
            group_by={"model": "$.model"},
        )
    )
    users = await meters.CreateMeter(
        meters_pb2.CreateMeterRequest(
            slug=f"bench_users_{suffix}",
            event_type=QUERY_EVENT_TYPE,
            aggregation="UNIQUE_COUNT",
            value_property="$.user",
        )
    )
    await wait_backfilled(meters, [tokens.slug, users.slug])
    if metrics_port is not None:
        from tests.bench.entitlements import rollups_ready  # it imports this module's neighbours

        waited = await rollups_ready(metrics_port, count=2, timeout=900)
        print(f"  (both query meters' rollups ready after {waited:.1f} s)", flush=True)
    return tokens, users


async def query_figures(stack: TallyProcess, loaded: dict[str, Any]) -> dict[str, float]:
    now: datetime = loaded["now"]
    async with grpc.aio.insecure_channel(
        stack.grpc_target, options=[("grpc.max_receive_message_length", 256 << 20)]
    ) as ch:
        meters = meters_pb2_grpc.MeterServiceStub(ch)
        tokens, users = await query_meters(meters, now, stack.metrics_port)

        def request(slug: str, **extra: Any) -> meters_pb2.QueryMeterRequest:
            message = meters_pb2.QueryMeterRequest(meter_id_or_slug=slug, window_size="HOUR", **extra)
            getattr(message, "from").FromDatetime(now - timedelta(days=30))
            message.to.FromDatetime(now + timedelta(minutes=1))
            return message

        return {
            "rollup_sql": loaded["rollup_sql_ms"],
            "rollup_edges_sql": loaded["rollup_edges_sql_ms"],
            "aligned_typed_sql": loaded["aligned_typed_sql_ms"],
            "rollup_engine": loaded["rollup_engine_ms"],
            "aligned_typed_engine": loaded["aligned_typed_engine_ms"],
            "naive": loaded["naive_ms"],
            "typed_sql": loaded["typed_sql_ms"],
            "naive_engine": loaded["naive_engine_ms"],
            "typed_engine": loaded["typed_engine_ms"],
            "typed": await _p50(lambda: meters.QueryMeter(request(tokens.slug, group_by=["subject"]))),
            "groupby": await _p50(lambda: meters.QueryMeter(request(tokens.slug, group_by=["subject", "model"]))),
            "unique": await _p50(lambda: meters.QueryMeter(request(users.slug, group_by=["subject"]))),
        }


async def wait_backfilled(meters: meters_pb2_grpc.MeterServiceStub, slugs: list[str], timeout: float = 300) -> None:
    """Waits until the meters' values are marked extracted for all stored events (typed queries)."""
    deadline = time.monotonic() + timeout
    for slug in slugs:
        while True:
            meter = await meters.GetMeter(meters_pb2.GetMeterRequest(meter_id_or_slug=slug))
            if meter.annotations.fields.get("tally.values.backfilled"):
                break
            if time.monotonic() > deadline:
                print(f"  (meter {slug} not backfilled after {timeout}s; its queries read raw JSON)")
                break
            await asyncio.sleep(0.5)
