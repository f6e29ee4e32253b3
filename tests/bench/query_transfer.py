"""Meter queries end to end, with their result transfer: gRPC and REST (Envoy's JSON) on the bench's
query dataset, p50 of several calls each (issue #17 item 3, the group-by and unique-count targets).

`.venv/bin/python -m tests.bench.query_transfer [ROWS] [SUBJECTS] [RUNS]` (default 1,000,000 events,
100 subjects, 7 calls: the small scale of `make bench`; 10,000,000 and 1,000 is the default scale).
With BENCH_PROFILE=DIR, py-spy samples the Tally process during the gRPC calls (tests/bench/run.py).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx

from adapters.clickhouse.client import ClickHouse
from tally.v1 import meters_pb2, meters_pb2_grpc
from tests.bench.dataset import CHUNK, QUERY_EVENT_TYPE, _table, query_meters
from tests.bench.run import profiled
from tests.support.stack import TallyProcess, create_database


def load(directory: Path, rows: int, subjects: int) -> datetime:
    async def run() -> datetime:
        clickhouse = ClickHouse(f"chdb://{directory}")
        await clickhouse.migrate()
        now = datetime.now(UTC)
        for offset in range(0, rows, CHUNK):
            table = _table(min(CHUNK, rows - offset), offset, subjects, now, QUERY_EVENT_TYPE)
            await clickhouse.insert_arrow("events", table, settings={"insert_deduplication_token": f"q-{offset}"})
        await clickhouse.command("OPTIMIZE TABLE events FINAL")
        clickhouse.close()
        return now

    return asyncio.run(run())


async def _p50(call: Any, runs: int) -> tuple[float, int]:
    timings = []
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        size = await call()
        timings.append((time.perf_counter() - t0) * 1000)
    return statistics.median(timings[1:]), size


async def figures(stack: TallyProcess, now: datetime, runs: int) -> dict[str, tuple[float, int]]:
    start, end = now - timedelta(days=30), now + timedelta(minutes=1)
    async with (
        grpc.aio.insecure_channel(stack.grpc_target, options=[("grpc.max_receive_message_length", 512 << 20)]) as ch,
        httpx.AsyncClient(base_url=stack.rest_url, timeout=600) as rest,
    ):
        meters = meters_pb2_grpc.MeterServiceStub(ch)
        tokens, users = await query_meters(meters)

        async def grpc_call(slug: str, group_by: list[str]) -> int:
            message = meters_pb2.QueryMeterRequest(meter_id_or_slug=slug, window_size="HOUR", group_by=group_by)
            getattr(message, "from").FromDatetime(start)
            message.to.FromDatetime(end)
            return len((await meters.QueryMeter(message)).data)

        async def rest_call(slug: str, group_by: list[str]) -> int:
            params = [("windowSize", "HOUR"), ("from", start.isoformat()), ("to", end.isoformat())]
            response = await rest.get(
                f"/api/v1/meters/{slug}/query", params=params + [("groupBy", g) for g in group_by]
            )
            if response.status_code != 200:
                raise RuntimeError(f"REST query: {response.status_code} {response.text[:300]}")
            return len(response.content)

        out: dict[str, tuple[float, int]] = {}
        with profiled("query_transfer_grpc", stack):
            out["typed"] = await _p50(lambda: grpc_call(tokens.slug, ["subject"]), runs)
            out["groupby"] = await _p50(lambda: grpc_call(tokens.slug, ["subject", "model"]), runs)
            out["unique"] = await _p50(lambda: grpc_call(users.slug, ["subject"]), runs)
        try:
            out["rest_groupby"] = await _p50(lambda: rest_call(tokens.slug, ["subject", "model"]), runs)
        except RuntimeError as error:  # Envoy's transcoder buffers a whole response, up to a limit
            print(error)
        return out


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    subjects = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    with tempfile.TemporaryDirectory(prefix="tally-bench-query-") as work:
        data_dir = Path(work) / "tally"
        print(f"loading {rows:,} events ...", flush=True)
        now = load(data_dir / "events", rows, subjects)
        stack = TallyProcess(data_dir=data_dir, postgres_url=asyncio.run(create_database()))
        stack.extra_env = {"TALLY_LOG_LEVEL": "warning"}
        stack.start(180)
        try:
            result = asyncio.run(figures(stack, now, runs))
        finally:
            stack.stop()
    names = {
        "typed": "query_api_p50_ms (SUM by subject per hour, gRPC)",
        "groupby": "query_groupby_p50_ms (by subject and model, gRPC)",
        "unique": "query_unique_p50_ms (UNIQUE_COUNT by subject, gRPC)",
        "rest_groupby": "query_groupby_rest_p50_ms (the same through Envoy, JSON)",
    }
    for key, (ms, size) in result.items():
        unit = "bytes" if key.startswith("rest") else "rows"
        print(f"{names[key]}: {ms:,.1f} ms ({size:,} {unit})")


if __name__ == "__main__":
    main()
