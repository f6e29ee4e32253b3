"""What one small chDB query costs, whatever it reads: the floor under a cold entitlement value.

A cold `/value` computation (nothing cached) runs one windows query (`render_windows_query`) for a
customer with few events. This measures the CPU each statement costs the process (all threads:
chDB runs in it) through the adapter's client, on the entitlement bench's data shape (1,000
customers, 10 events each over two days, one compact part): `SELECT 1`, then a count over the
events with the windows query's filters added one at a time, then the windows query itself with 1,
4 and 8 windows, and, for comparison, 8 windows as the adapter rendered them before 2026-12-03 (one
`sumIf` per window, where this statement's cost grew with each window). Rounds alternate so drift on a shared machine spreads over every row.

`.venv/bin/python -m tests.bench.query_floor [rounds] [calls per round]`; `... query_floor first`: the
wall time of each of a windows statement's first runs, as the event store runs it and compiled (the
JIT compilation ClickHouse does on a statement's fourth run, which the embedded engine has off).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.clickhouse.client import EMBEDDED_QUERY_SETTINGS, ClickHouse
from adapters.clickhouse.usage_sql import render_windows_query
from domain.metering.query import MeterQueryInput
from tests.bench.rollups import QUERY_EVENT_TYPE, _meter, store_two_days_of_usage

CUSTOMERS = 1_000
EVENTS_PER_CUSTOMER = 10

Statement = Callable[[int], tuple[str, dict[str, Any]]]


def statements(anchor: datetime, now: datetime, *windows_counts: int) -> dict[str, Statement]:
    meter = _meter(0, now)  # SUM of $.tokens
    low_ms = int(anchor.timestamp() * 1000)
    filters = [
        "namespace = {namespace:String}",
        "type = {event_type:String}",
        "subject IN {subjects:Array(String)}",
        "time >= fromUnixTimestamp64Milli({low_ms:Int64}, 'UTC')",
    ]

    def count(n_filters: int) -> Statement:
        where = " AND ".join(filters[:n_filters])
        sql = "SELECT count() FROM events" + (f" WHERE {where}" if where else "")
        return lambda c: (
            sql,
            {"namespace": "default", "event_type": QUERY_EVENT_TYPE, "subjects": [f"c{c}"], "low_ms": low_ms},
        )

    def windows(n: int) -> Statement:
        # Windows from the period start to successive breakpoints, as the engine asks for them.
        pairs = [(anchor, anchor + timedelta(hours=47 * (i + 1) / n)) for i in range(n)]

        def render(c: int) -> tuple[str, dict[str, Any]]:
            query = MeterQueryInput(from_=anchor, subjects=[f"c{c}"]).validate(meter)
            return render_windows_query(meter, query, pairs, now)

        return render

    def one_aggregate_per_window(n: int) -> Statement:
        # What the adapter ran before 2026-12-03: one `sumIf` of the value expression per window.
        value = (
            "ifNotFinite(if(mapContains(num_values, {path:String}), num_values[{path:String}], "
            "toFloat64OrNull(JSON_VALUE(data, {path:String}))), NULL)"
        )
        ends = [int((anchor + timedelta(hours=47 * (i + 1) / n)).timestamp() * 1000) for i in range(n)]
        each = [
            f"sumIf({value}, time >= fromUnixTimestamp64Milli({{low_ms:Int64}}, 'UTC') "
            f"AND time < fromUnixTimestamp64Milli({end}, 'UTC'))"
            for end in ends
        ]
        tail = "time >= fromUnixTimestamp64Milli({tail:Int64}, 'UTC')"
        sql = (
            f"SELECT {', '.join(each)}, countIf({tail}), toUnixTimestamp64Milli(minIf(time, {tail})) "
            f"FROM events WHERE {' AND '.join(filters)}"
        )
        fixed = {"namespace": "default", "event_type": QUERY_EVENT_TYPE, "low_ms": low_ms, "path": "$.tokens",
                 "tail": int(now.timestamp() * 1000)}  # fmt: skip
        return lambda c: (sql, {**fixed, "subjects": [f"c{c}"]})

    out: dict[str, Statement] = {"SELECT 1": lambda c: ("SELECT 1", {})}
    labels = ["no filter", "+ namespace", "+ type", "+ subject", "+ time"]
    out.update({f"count(), {label}": count(i) for i, label in enumerate(labels)})
    counts = windows_counts or (1, 4, 8)
    out.update({f"windows query, {n} window{'s' if n > 1 else ''} + tail": windows(n) for n in counts})
    out["8 windows, one aggregate each (before)"] = one_aggregate_per_window(8)
    return out


@asynccontextmanager
async def entitlement_store() -> AsyncIterator[tuple[ClickHouse, datetime, datetime]]:
    """A fresh chDB store holding the entitlement bench's usage: (the client, its anchor, now)."""
    directory = Path(tempfile.mkdtemp(prefix="query-floor-"))
    ch = ClickHouse(f"chdb://{directory}")
    try:
        await ch.migrate()
        now = datetime.now(UTC)
        anchor = now - timedelta(days=2)
        await store_two_days_of_usage(ch, anchor, CUSTOMERS, EVENTS_PER_CUSTOMER)
        yield ch, anchor, now
    finally:
        ch.close()
        shutil.rmtree(directory, ignore_errors=True)


async def measure(rounds: int, calls: int) -> dict[str, list[float]]:
    async with entitlement_store() as (ch, anchor, now):
        cpu_ms: dict[str, list[float]] = {}
        for _ in range(rounds):
            for label, statement in statements(anchor, now).items():
                started = time.process_time()
                for i in range(calls):
                    await ch.query(*statement(i % CUSTOMERS))
                cpu_ms.setdefault(label, []).append((time.process_time() - started) / calls * 1000)
        return cpu_ms


async def first_runs(runs: int = 8) -> dict[str, list[float]]:
    """Wall ms of each of the first `runs` runs of one windows statement (other customers each
    run), as the event store's client runs it and with ClickHouse's JIT compilation turned back on
    (another statement shape, 6 windows instead of 5, so nothing compiled for the first is reused)."""
    async with entitlement_store() as (ch, anchor, now):
        walls: dict[str, list[float]] = {}
        for label, windows in (("as the event store runs it", 5), ("compiled (ClickHouse's default)", 6)):
            if windows == 6:
                for name in EMBEDDED_QUERY_SETTINGS:
                    ch._client.set_client_setting(name, 1)
            render = statements(anchor, now, windows)[f"windows query, {windows} windows + tail"]
            for i in range(runs):
                started = time.perf_counter()
                await ch.query(*render(i))
                walls.setdefault(label, []).append((time.perf_counter() - started) * 1000)
        return walls


def main(rounds: int, calls: int) -> None:
    cpu_ms = asyncio.run(measure(rounds, calls))
    print(f"CPU ms per statement (process, all threads), median of {rounds} rounds of {calls} calls [min-max]")
    for label, figures in cpu_ms.items():
        print(f"  {label:<36} {statistics.median(figures):6.2f}  [{min(figures):.2f}-{max(figures):.2f}]")


if __name__ == "__main__":
    if sys.argv[1:2] == ["first"]:
        for label, walls in asyncio.run(first_runs()).items():
            print(f"first runs of one windows statement, {label}, ms: {' '.join(f'{w:.0f}' for w in walls)}")
    else:
        arguments = [int(a) for a in sys.argv[1:3]]
        main(arguments[0] if arguments else 3, arguments[1] if len(arguments) > 1 else 150)
