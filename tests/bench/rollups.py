"""What meter rollups (adapters/clickhouse/meter_sql.py) gain on queries and cost on ingest, in chDB.

    .venv/bin/python -m tests.bench.rollups query [rows] [subjects]
        the query dataset of `make bench` (tests/bench/dataset.py) and its query from the per-hour
        rollup beside the raw typed and naive queries (equal answers checked first);
    .venv/bin/python -m tests.bench.rollups ingest [rows] [meters] [minute,hour] [maps]
        bulk inserts of bench rows into `events` carrying the rollup views of `meters` meters
        (SUM and UNIQUE_COUNT alternately, one group-by key); `maps` renders the views without the
        JSON fallback (not exact for events whose maps lack a path: a measurement only).

chDB opens one data directory per process: compare ingest runs with and without views as
separate runs, alternately, and read ratios.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

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


if __name__ == "__main__":
    main(sys.argv[1:])
