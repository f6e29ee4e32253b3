"""What meter rollups (adapters/clickhouse/meter_sql.py) gain on queries and cost on ingest, in chDB.

    .venv/bin/python -m tests.bench.rollups query [rows] [subjects]
        the query dataset of `make bench` (tests/bench/dataset.py) and its query from the per-hour
        rollup beside the raw typed and naive queries, with whole-hour bounds and with the bench's
        own (the rollup's edges then read from the events; equal answers checked first);
    .venv/bin/python -m tests.bench.rollups ingest [rows] [meters] [minute,hour] [maps]
        bulk inserts of bench rows into `events` beside the rollup tables of `meters` meters (SUM
        and UNIQUE_COUNT alternately, one group-by key). Before fills replaced materialized views
        this measured the views' cost (`maps`: views without the JSON fallback); a rollup table now
        costs an insert nothing, and the fills are measured by `flush`.

    .venv/bin/python -m tests.bench.rollups api [rows] [subjects]
        the same dataset behind a Tally process: the bench's query (SUM per subject per hour,
        30 days) over gRPC with whole-hour bounds and with bounds inside an hour, once the meter's
        rollup is ready (the API reads it, and the partial hours from the events), beside the
        naive raw-JSON SQL; `BENCH_ROLLUPS=0` runs the same with rollups off.

    .venv/bin/python -m tests.bench.rollups flush [meters] [events per flush]
        the sink's small inserts (p50 of 40 flushes of one event type) into `events` with the
        per-hour rollups of `meters` meters of other event types ready (as in a store with many
        meters), and then one rollup worker pass filling all of them (what the worker spends every
        `sink.rollup_fill_interval_s`), p50 of 5. With the materialized views of before, every view
        ran on every insert block, whatever its type.

    .venv/bin/python -m tests.bench.rollups audit [rows] [subjects]
        bench rows over 30 days (SUM meter, one group-by key) in chDB, the meter's per-hour rollup
        made ready through the lifecycle, then the time of one audit of it (what each
        `sink.rollup_audit_interval_s` costs per ready rollup: the last day's settled hours and one
        older day) beside a comparison of every bucket.

    .venv/bin/python -m tests.bench.rollups busy [rows] [subjects] [tail events] [rounds]
        busy ingest: the query dataset stored as it arrives (each event a few seconds after its
        time), its per-hour rollup as `sink.rollup_fill_interval_s` = 300 s fills leave it (one fill
        per 5 minutes of `stored_at` over the 30 days, made by one statement), `tail events` more
        in the last hour stored since the watermark W (read from `events` by every query); then the
        bench's whole-hour query (SUM per subject per hour, 30 days) raw, from the fills as they
        are, and from a second rollup of the same events compacted (RollupLifecycle.compact's
        statements), alternating, p50 per round; and what the compaction itself took.

    .venv/bin/python -m tests.bench.rollups windows [events per customer]
        an entitlement run's windows query (5 windows over two days, a tail) for one of 10
        customers, from the events and with whole hours from the ready per-hour rollup.

chDB opens one data directory per process: compare ingest runs with and without views as
separate runs, alternately, and read ratios.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from adapters.clickhouse import meter_sql
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.meter_sql import Rollup, render_rollup_ddl
from domain.metering.models import Aggregation, Meter
from tests.bench.dataset import CHUNK, QUERY_EVENT_TYPE, _table, load_query_dataset


def _meter(index: int, now: datetime) -> Meter:
    unique = index % 2 == 1
    return Meter(
        id=f"rollup-bench-{index}",
        namespace="default",
        slug=f"rollup_bench_{index}",
        name="rollup bench",
        description=None,
        aggregation=Aggregation.UNIQUE_COUNT if unique else Aggregation.SUM,
        event_type=QUERY_EVENT_TYPE,
        event_from=None,
        value_property="$.user" if unique else "$.tokens",
        group_by={"model": "$.model"},
        metadata={},
        annotations={},
        created_at=now,
        updated_at=now,
    )


async def ingest_rows_per_s(rows: int, meters: int, rollups: list[Rollup]) -> float:
    directory = Path(tempfile.mkdtemp(prefix="rollup-ingest-"))
    clickhouse = ClickHouse(f"chdb://{directory}")
    try:
        await clickhouse.migrate()
        now = datetime.now(UTC)
        for index in range(meters):
            for rollup in rollups:
                for sql, parameters in render_rollup_ddl(_meter(index, now), rollup):
                    await clickhouse.command(sql, parameters)
        tables = [_table(min(CHUNK, rows - o), o, 100, now, QUERY_EVENT_TYPE) for o in range(0, rows, CHUNK)]
        started = time.perf_counter()
        for i, table in enumerate(tables):
            await clickhouse.insert_arrow("events", table, settings={"insert_deduplication_token": f"r-{i}"})
        return rows / (time.perf_counter() - started)
    finally:
        clickhouse.close()
        shutil.rmtree(directory, ignore_errors=True)


def _without_json_fallback() -> None:
    strings, numbers = meter_sql._string_sql, meter_sql._number_sql
    meter_sql._string_sql = lambda binder, path, _: strings(binder, path, True)  # type: ignore[assignment]
    meter_sql._number_sql = lambda binder, path, _: numbers(binder, path, True)  # type: ignore[assignment]


def main(argv: list[str]) -> None:
    if argv[:1] == ["ingest"]:
        rows = int(argv[1]) if len(argv) > 1 else 1_000_000
        meters = int(argv[2]) if len(argv) > 2 else 2
        rollups = [Rollup(r) for r in (argv[3] if len(argv) > 3 else "hour").split(",")]
        if argv[4:5] == ["maps"]:
            _without_json_fallback()
        rate = asyncio.run(ingest_rows_per_s(rows, meters, rollups))
        print(f"insert rows/s {rate:,.0f} with {meters} meters' {','.join(rollups)} rollups {' '.join(argv[4:])}")
        return
    rows = int(argv[1]) if len(argv) > 1 else 1_000_000
    subjects = int(argv[2]) if len(argv) > 2 else 100
    if argv and argv[0] == "windows":
        asyncio.run(windows_figures(int(argv[1]) if len(argv) > 1 else 1000))
        return
    if argv and argv[0] == "flush":
        asyncio.run(flush_figures(int(argv[1]) if len(argv) > 1 else 100, int(argv[2]) if len(argv) > 2 else 100))
        return
    if argv and argv[0] == "audit":
        asyncio.run(audit_figures(rows, subjects))
        return
    if argv and argv[0] == "api":
        api_figures(rows, subjects)
        return
    if argv and argv[0] == "busy":
        tail = int(argv[3]) if len(argv) > 3 else 100_000
        asyncio.run(busy_figures(rows, subjects, tail, int(argv[4]) if len(argv) > 4 else 3))
        return
    directory = Path(tempfile.mkdtemp(prefix="rollup-query-"))
    try:
        r = load_query_dataset(directory / "events", rows, subjects)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"naive {r['naive_ms']:,.1f} ms   raw typed (whole hours) {r['aligned_typed_sql_ms']:,.1f} ms   "
        f"hour rollup {r['rollup_sql_ms']:,.1f} ms ({r['rollup_sql_ms'] / r['aligned_typed_sql_ms']:.2f} x raw, "
        f"{r['rollup_sql_ms'] / r['naive_ms']:.2f} x naive)   engine only {r['rollup_engine_ms']:,.1f} vs "
        f"{r['aligned_typed_engine_ms']:,.1f} ms ({r['rollup_engine_ms'] / r['aligned_typed_engine_ms']:.2f} x)"
    )
    print(
        f"the bench's query (now-30d .. now+1min): raw typed {r['typed_sql_ms']:,.1f} ms   hour rollup with "
        f"edges from the events {r['rollup_edges_sql_ms']:,.1f} ms ({r['rollup_edges_sql_ms'] / r['typed_sql_ms']:.2f}"
        f" x raw, {r['rollup_edges_sql_ms'] / r['naive_ms']:.2f} x naive)"
    )


async def flush_figures(meters: int, per_flush: int) -> None:
    import statistics

    from adapters.clickhouse.events import ClickHouseEventStore
    from adapters.clickhouse.rollups import READY, RollupLifecycle
    from domain.metering.events import Event

    directory = Path(tempfile.mkdtemp(prefix="rollup-flush-"))
    ch = ClickHouse(f"chdb://{directory}")
    try:
        await ch.migrate()
        now = datetime.now(UTC)
        others = [replace(_meter(index, now), event_type=f"other_{index}") for index in range(meters)]
        lifecycle = RollupLifecycle(
            ch, grace=timedelta(seconds=0.3), drop_after=timedelta(0), audit_interval=None, fill_interval=timedelta(0)
        )
        while sum(s.state == READY for s in (await lifecycle.states()).values()) < len(others):
            await lifecycle.step(others)
        store = ClickHouseEventStore(ch)
        timings = []
        for flush in range(40):
            events = [
                Event("default", f"{flush}-{i}", QUERY_EVENT_TYPE, "b", f"s{i % 10}", int(time.time() * 1000),
                      '{"tokens": 3, "model": "m"}', 0)
                for i in range(per_flush)
            ]  # fmt: skip
            t0 = time.perf_counter()
            await store.insert(events, [({"$.tokens": 3.0}, {"$.model": "m"})] * per_flush, f"flush-{flush}")
            timings.append((time.perf_counter() - t0) * 1000)
        passes = []
        for _ in range(5 if others else 0):
            await asyncio.sleep(0.3)  # the grace: each pass fills what was stored since the last
            t0 = time.perf_counter()
            await lifecycle.step(others)
            passes.append((time.perf_counter() - t0) * 1000)
        print(
            f"{meters} ready rollups of other event types: a flush of {per_flush} events p50 "
            f"{statistics.median(timings):.1f} ms (min {min(timings):.1f}, max {max(timings):.1f}); "
            f"a worker pass filling all of them p50 {statistics.median(passes) if passes else 0:.1f} ms"
        )
    finally:
        ch.close()
        shutil.rmtree(directory, ignore_errors=True)


async def audit_figures(rows: int, subjects: int) -> None:
    import statistics

    from adapters.clickhouse.meter_sql import render_rollup_differences, rollup_table
    from adapters.clickhouse.rollups import RollupLifecycle

    directory = Path(tempfile.mkdtemp(prefix="rollup-audit-"))
    ch = ClickHouse(f"chdb://{directory}")
    try:
        await ch.migrate()
        now = datetime.now(UTC)
        meter = _meter(0, now)
        for offset in range(0, rows, CHUNK):
            table = _table(min(CHUNK, rows - offset), offset, subjects, now, QUERY_EVENT_TYPE)
            await ch.insert_arrow("events", table, settings={"insert_deduplication_token": f"a-{offset}"})
        lifecycle = RollupLifecycle(
            ch, grace=timedelta(seconds=0.3), drop_after=timedelta(0), audit_interval=timedelta(0)
        )
        started = time.perf_counter()
        while "ready" not in (await lifecycle.step([meter])).values():
            await asyncio.sleep(0.1)
        ready_s = time.perf_counter() - started
        passes, whole = [], []
        filled_to = (await lifecycle.states())[rollup_table(meter, Rollup.HOUR)].stored_from_ms
        for _ in range(10):
            t0 = time.perf_counter()
            assert await lifecycle.audit(meter, Rollup.HOUR, filled_to)
            passes.append((time.perf_counter() - t0) * 1000)
        assert not lifecycle._audits[rollup_table(meter, Rollup.HOUR)].suspects
        every_bucket = render_rollup_differences(meter, Rollup.HOUR, rollup_table(meter, Rollup.HOUR))
        for _ in range(5):
            t0 = time.perf_counter()
            assert not await ch.query(*every_bucket)
            whole.append((time.perf_counter() - t0) * 1000)
        print(
            f"{rows:,} events over 30 days, {subjects} subjects: rollup ready in {ready_s:.1f} s (its first "
            f"fill); one audit p50 {statistics.median(passes):.1f} ms (max {max(passes):.1f}), "
            f"every bucket compared p50 {statistics.median(whole):.1f} ms"
        )
    finally:
        ch.close()
        shutil.rmtree(directory, ignore_errors=True)


FILL_MS = 300_000  # sink.rollup_fill_interval_s's default


async def busy_figures(rows: int, subjects: int, tail: int, rounds: int) -> None:
    import statistics

    from adapters.clickhouse.meter_sql import (
        render_meter_query,
        render_rollup_compaction,
        render_rollup_fill,
        render_rollup_partitions_to_compact,
        rollup_table,
        to_query_rows,
    )
    from domain.metering.query import MeterQueryInput
    from tests.bench.dataset import _p50

    directory = Path(tempfile.mkdtemp(prefix="rollup-busy-"))
    ch = ClickHouse(f"chdb://{directory}")
    try:
        await ch.migrate()
        now = datetime.now(UTC)
        for offset in range(0, rows, CHUNK):
            table = _table(min(CHUNK, rows - offset), offset, subjects, now, QUERY_EVENT_TYPE)
            await ch.insert_arrow("events", table, settings={"insert_deduplication_token": f"b-{offset}"})
        # Stored as they arrive: each event 5 s after its time.
        await ch.command(
            "ALTER TABLE events UPDATE stored_at = time + toIntervalSecond(5) WHERE 1 SETTINGS mutations_sync = 2"
        )
        now_ms = int(now.timestamp() * 1000)
        watermark = (now_ms // FILL_MS - 1) * FILL_MS
        # The busy tail: events of the last hour stored since W (here, now).
        hour = now.replace(minute=0, second=0, microsecond=0)
        tail_table = _table(tail, rows, subjects, now, QUERY_EVENT_TYPE)
        times = pa.array(
            [int(hour.timestamp() * 1000) + i * 3_600_000 // max(1, tail) for i in range(tail)],
            pa.timestamp("ms", tz="UTC"),
        )
        tail_table = tail_table.set_column(tail_table.schema.get_field_index("time"), "time", times)
        await ch.insert_arrow("events", tail_table, settings={"insert_deduplication_token": "b-tail"})
        await ch.command("OPTIMIZE TABLE events FINAL")
        meters = {label: replace(_meter(0, now), id=f"busy-{label}", group_by={}) for label in ("fills", "compacted")}
        for meter in meters.values():
            for sql, parameters in render_rollup_ddl(meter, Rollup.HOUR):
                await ch.command(sql, parameters)
            # What one fill per FILL_MS of stored_at up to W leaves, in one statement: the fill's
            # statement with each event's fill as its tag, grouped by it too.
            sql, parameters = render_rollup_fill(meter, Rollup.HOUR, stored_before_ms=watermark)
            tag = f"toInt64(intDiv(toUnixTimestamp64Milli(stored_at), {FILL_MS}) * {FILL_MS} + {FILL_MS})"
            sql = sql.replace("toInt64({stored_before_ms:Int64}) AS filled_to_ms", f"{tag} AS filled_to_ms")
            await ch.command(sql + ", filled_to_ms", parameters, settings={"insert_deduplicate": 0})
        compacted = meters["compacted"]
        started = time.perf_counter()
        partitions = await ch.query(*render_rollup_partitions_to_compact(compacted, Rollup.HOUR, watermark, 2))
        for (partition,) in partitions:
            steps = render_rollup_compaction(compacted, Rollup.HOUR, int(partition), watermark)
            for statement in steps.prepare:
                await ch.command(statement)
            await ch.command(*steps.copy, settings={"insert_deduplicate": 0})
            tally = {str(r[0]): tuple(r[2:]) for r in await ch.query(*steps.tally)}
            assert tally["rollup"] == tally["staging"], tally
            await ch.command(steps.swap)
            for statement in steps.clean:
                await ch.command(statement)
        compact_ms = (time.perf_counter() - started) * 1000
        counts = {
            label: int((await ch.query(f"SELECT count() FROM {rollup_table(m, Rollup.HOUR)}"))[0][0])
            for label, m in meters.items()
        }
        since_w = int(
            (
                await ch.query(
                    "SELECT count() FROM events WHERE stored_at >= fromUnixTimestamp64Milli({w:Int64}, 'UTC')",
                    {"w": watermark},
                )
            )[0][0]
        )
        query = MeterQueryInput(
            from_=hour - timedelta(days=30), to=hour + timedelta(hours=1), window_size="HOUR", group_by=["subject"]
        ).validate(meters["fills"])
        statements = {"raw": render_meter_query(meters["fills"], query, maps_complete=True)}
        for label, meter in meters.items():
            statements[label] = render_meter_query(
                meter, query, maps_complete=True, rollup=Rollup.HOUR, filled_to_ms=watermark
            )
        answers = {label: to_query_rows(query, await ch.query(*s)) for label, s in statements.items()}
        assert answers["fills"] == answers["raw"] and answers["compacted"] == answers["raw"]
        print(
            f"{rows:,} events over 30 days, {subjects} subjects, {since_w:,} stored since W (tail), "
            f"{len(answers['raw']):,} result rows; rollup rows: fills {counts['fills']:,}, compacted "
            f"{counts['compacted']:,} (compaction of {len(partitions)} partitions {compact_ms:,.0f} ms)"
        )
        engine = "SELECT count(), sum(value) FROM ({}) AS q"
        figures: dict[str, list[float]] = {}
        for _ in range(rounds):
            for label, (sql, parameters) in statements.items():
                figures.setdefault(label, []).append(await _p50(lambda s=sql, p=parameters: ch.query(s, p)))
                figures.setdefault(f"{label} engine", []).append(
                    await _p50(lambda s=sql, p=parameters: ch.query(engine.format(s), p))
                )
        for label, values in figures.items():
            print(f"{label:>18}: p50 per round {', '.join(f'{v:.1f}' for v in values)} ms "
                  f"(median {statistics.median(values):.1f})")  # fmt: skip
    finally:
        ch.close()
        shutil.rmtree(directory, ignore_errors=True)


async def store_two_days_of_usage(ch: ClickHouse, anchor: datetime, customers: int, per_customer: int) -> None:
    """Customers c0, c1, ... each with `per_customer` events of {"tokens": 3} at random times in the
    two days from `anchor` (an entitlement's usage, as the entitlement bench ingests it)."""
    import random

    from adapters.clickhouse.events import ClickHouseEventStore
    from domain.metering.events import Event

    rng = random.Random(1)
    start_ms = int(anchor.timestamp() * 1000)
    events = [
        Event("default", f"{c}-{i}", QUERY_EVENT_TYPE, "b", f"c{c}", start_ms + rng.randrange(172_800_000),
              '{"tokens": 3}', 0)
        for c in range(customers)
        for i in range(per_customer)
    ]  # fmt: skip
    await ClickHouseEventStore(ch).insert(events, [({"$.tokens": 3.0}, {})] * len(events), "two-days")


async def windows_figures(per_customer: int) -> None:
    import statistics

    from adapters.clickhouse.rollups import RollupLifecycle
    from adapters.clickhouse.usage_sql import render_windows_query
    from domain.metering.query import MeterQueryInput

    directory = Path(tempfile.mkdtemp(prefix="rollup-windows-"))
    ch = ClickHouse(f"chdb://{directory}")
    try:
        await ch.migrate()
        now = datetime.now(UTC)
        anchor = now - timedelta(days=2)
        meter = _meter(0, now)
        lifecycle = RollupLifecycle(ch, grace=timedelta(seconds=0.3), drop_after=timedelta(0))
        await lifecycle.step([meter])
        await store_two_days_of_usage(ch, anchor, 10, per_customer)
        while "ready" not in (await lifecycle.step([meter])).values():
            await asyncio.sleep(0.2)
        query = MeterQueryInput(from_=anchor, subjects=["c5"]).validate(meter)
        windows = [(anchor, anchor + timedelta(hours=h)) for h in (6, 12, 24, 36)]
        windows.append((anchor, now.replace(second=0, microsecond=0)))
        raw = render_windows_query(meter, query, windows, now)
        filled_to = (await lifecycle.states())[meter_sql.rollup_table(meter, Rollup.HOUR)].stored_from_ms
        hybrid = render_windows_query(meter, query, windows, now, hour_rollup_filled_to_ms=filled_to)
        assert await ch.query(*raw) == await ch.query(*hybrid)
        for label, (sql, parameters) in (("events", raw), ("hours from rollup", hybrid)) * 2:
            timings = []
            for _ in range(30):
                t0 = time.perf_counter()
                await ch.query(sql, parameters)
                timings.append((time.perf_counter() - t0) * 1000)
            print(f"{per_customer:,} events per customer, {label}: p50 {statistics.median(timings):.1f} ms")
    finally:
        ch.close()
        shutil.rmtree(directory, ignore_errors=True)


def api_figures(rows: int, subjects: int) -> None:
    import os
    import uuid

    import grpc

    from tally.v1 import meters_pb2, meters_pb2_grpc
    from tests.bench.dataset import _p50, wait_backfilled
    from tests.bench.entitlements import rollups_ready
    from tests.support.services import ROOT
    from tests.support.stack import TallyProcess, create_database, drop_created_databases

    rollups = os.environ.get("BENCH_ROLLUPS") != "0"
    work = ROOT / ".bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / f"rollup-api-{uuid.uuid4().hex[:6]}"
    loaded = load_query_dataset(data_dir / "events", rows, subjects)
    stack = TallyProcess(data_dir=data_dir, postgres_url=asyncio.run(create_database()))
    stack.extra_env = {
        "TALLY_LOG_LEVEL": "warning",
        "TALLY_SINK__ROLLUPS": "true" if rollups else "false",
        "TALLY_SINK__ROLLUP_GRACE_S": "2",
        "TALLY_SINK__ROLLUP_INTERVAL_S": "1",
    }
    stack.start(180)

    async def run() -> dict[str, float]:
        now: datetime = loaded["now"]
        async with grpc.aio.insecure_channel(
            stack.grpc_target, options=[("grpc.max_receive_message_length", 256 << 20)]
        ) as ch:
            meters = meters_pb2_grpc.MeterServiceStub(ch)
            tokens = await meters.CreateMeter(
                meters_pb2.CreateMeterRequest(
                    slug="bench_tokens", event_type=QUERY_EVENT_TYPE, aggregation="SUM", value_property="$.tokens"
                )
            )
            await wait_backfilled(meters, [tokens.slug])
            waited = await rollups_ready(stack.metrics_port) if rollups else 0.0

            def request(from_: datetime, to: datetime) -> meters_pb2.QueryMeterRequest:
                message = meters_pb2.QueryMeterRequest(
                    meter_id_or_slug=tokens.slug, window_size="HOUR", group_by=["subject"]
                )
                getattr(message, "from").FromDatetime(from_)
                message.to.FromDatetime(to)
                return message

            hour = now.replace(minute=0, second=0, microsecond=0)
            aligned = request(hour - timedelta(days=30), hour + timedelta(hours=1))
            unaligned = request(now - timedelta(days=30), now + timedelta(minutes=1))
            a = await meters.QueryMeter(aligned)
            return {
                "rollup_wait_s": waited,
                "result_rows": len(a.data),
                "api_aligned_ms": await _p50(lambda: meters.QueryMeter(aligned)),
                "api_unaligned_ms": await _p50(lambda: meters.QueryMeter(unaligned)),
            }

    try:
        figures = asyncio.run(run())
    finally:
        stack.stop()
        asyncio.run(drop_created_databases())
        shutil.rmtree(data_dir, ignore_errors=True)
    naive = loaded["naive_ms"]
    print(f"rollups {'on' if rollups else 'off'}: naive raw-JSON SQL {naive:,.1f} ms")
    for key, value in figures.items():
        ratio = f"  ({value / naive:.2f} x naive)" if key.startswith("api_") else ""
        print(f"{key:>18} {value:10.1f}{ratio}")


if __name__ == "__main__":
    main(sys.argv[1:])
