"""Meter queries end to end, with their result transfer: gRPC and REST (Envoy's JSON) on the bench's
query dataset, p50 of several calls each (issue #17 item 3, the group-by and unique-count targets).

`.venv/bin/python -m tests.bench.query_transfer [ROWS] [SUBJECTS] [RUNS]` (default 1,000,000 events,
100 subjects, 7 calls: the small scale of `make bench`; 10,000,000 and 1,000 is the default scale).
With BENCH_PROFILE=DIR, py-spy samples the Tally process during the gRPC calls (tests/bench/run.py).

The calls start once both meters' per-hour rollups are ready (the steady state of a meter older than
its rollup's first fill: the queries read the whole hours from the rollup and the partial first and
last hours from the events); with BENCH_ROLLUPS=0 rollups are off and every query reads the events.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil

from adapters.clickhouse.client import ClickHouse
from tally.v1 import meters_pb2, meters_pb2_grpc
from tests.bench.dataset import CHUNK, QUERY_EVENT_TYPE, _table, query_meters
from tests.bench.run import profiled
from tests.support.stack import TallyProcess, create_database


def load(directory: Path, rows: int, subjects: int) -> tuple[datetime, datetime]:
    """Stores the query dataset: returns the `now` its event times end at, and when its last insert
    returned (every event's `stored_at` is before it)."""

    async def run() -> tuple[datetime, datetime]:
        clickhouse = ClickHouse(f"chdb://{directory}")
        await clickhouse.migrate()
        now = datetime.now(UTC)
        for offset in range(0, rows, CHUNK):
            table = _table(min(CHUNK, rows - offset), offset, subjects, now, QUERY_EVENT_TYPE)
            await clickhouse.insert_arrow("events", table, settings={"insert_deduplication_token": f"q-{offset}"})
        stored = datetime.now(UTC)
        await clickhouse.command("OPTIMIZE TABLE events FINAL")
        clickhouse.close()
        return now, stored

    return asyncio.run(run())


async def _p50(call: Any, runs: int, server: psutil.Process | None = None) -> tuple[float, int, float | None]:
    """p50 of the calls after the first (ms), the answer's size, and with `server` the p50 of the CPU
    time (ms, all threads: chDB's too) that process spent per call: the figure this shared machine's
    load disturbs least."""
    timings, cpu = [], []
    size = 0
    for _ in range(runs):
        before = sum(server.cpu_times()[:2]) if server is not None else 0.0
        t0 = time.perf_counter()
        size = await call()
        timings.append((time.perf_counter() - t0) * 1000)
        if server is not None:
            cpu.append((sum(server.cpu_times()[:2]) - before) * 1000)
    if os.environ.get("BENCH_CALLS"):
        print(f"    calls (ms): {[round(t) for t in timings]}, server CPU (ms): {[round(c) for c in cpu]}", flush=True)
    return statistics.median(timings[1:]), size, statistics.median(cpu[1:]) if cpu else None


async def figures(
    stack: TallyProcess, now: datetime, stored: datetime, runs: int, rollups: bool
) -> dict[str, tuple[float, int, float | None]]:
    start, end = now - timedelta(days=30), now + timedelta(minutes=1)
    async with (
        grpc.aio.insecure_channel(stack.grpc_target, options=[("grpc.max_receive_message_length", 512 << 20)]) as ch,
        httpx.AsyncClient(base_url=stack.rest_url, timeout=600) as rest,
    ):
        meters = meters_pb2_grpc.MeterServiceStub(ch)
        # Waited for from when the last event was stored, not from `now` (before the load): loading
        # 1M events takes 10-40 s here, and events stored after the first fill's bound (a grace
        # before it) are aggregated from `events` by every query: not the steady state measured.
        tokens, users = await query_meters(meters, stored, stack.metrics_port if rollups else None)

        def request(slug: str, group_by: list[str]) -> meters_pb2.QueryMeterRequest:
            message = meters_pb2.QueryMeterRequest(meter_id_or_slug=slug, window_size="HOUR", group_by=group_by)
            getattr(message, "from").FromDatetime(start)
            message.to.FromDatetime(end)
            return message

        async def grpc_call(slug: str, group_by: list[str]) -> int:
            return len((await meters.QueryMeter(request(slug, group_by))).data)

        # The same call with the response left as bytes: the server's answer and its transfer,
        # without this (Python, upb) client's parse of it, which is timed on its own.
        unparsed = ch.unary_unary(
            "/tally.v1.MeterService/QueryMeter",
            request_serializer=meters_pb2.QueryMeterRequest.SerializeToString,
            response_deserializer=None,
        )
        answers: dict[str, bytes] = {}

        async def unparsed_call(slug: str, group_by: list[str]) -> int:
            answers[slug] = await unparsed(request(slug, group_by))
            return len(answers[slug])

        async def parse(slug: str) -> int:
            return len(meters_pb2.QueryMeterResponse.FromString(answers[slug]).data)

        async def rest_call(slug: str, group_by: list[str]) -> int:
            params = [("windowSize", "HOUR"), ("from", start.isoformat()), ("to", end.isoformat())]
            response = await rest.get(
                f"/api/v1/meters/{slug}/query", params=params + [("groupBy", g) for g in group_by]
            )
            if response.status_code != 200:
                raise RuntimeError(f"REST query: {response.status_code} {response.text[:300]}")
            return len(response.content)

        out: dict[str, tuple[float, int, float | None]] = {}
        assert stack.process is not None
        server = psutil.Process(stack.process.pid)
        # What the server spends with no call in flight (its workers: with rollups on, the rollup
        # worker's passes and the engine's merges), as CPU ms per second over 3 s.
        idle_before = sum(server.cpu_times()[:2])
        await asyncio.sleep(3)
        out["idle"] = ((sum(server.cpu_times()[:2]) - idle_before) * 1000 / 3, 0, None)
        with profiled("query_transfer_grpc", stack):
            out["typed"] = await _p50(lambda: grpc_call(tokens.slug, ["subject"]), runs, server)
            out["groupby"] = await _p50(lambda: grpc_call(tokens.slug, ["subject", "model"]), runs, server)
            out["unique"] = await _p50(lambda: grpc_call(users.slug, ["subject"]), runs, server)
            out["groupby_unparsed"] = await _p50(lambda: unparsed_call(tokens.slug, ["subject", "model"]), runs, server)
            out["unique_unparsed"] = await _p50(lambda: unparsed_call(users.slug, ["subject"]), runs, server)
        out["groupby_parse"] = await _p50(lambda: parse(tokens.slug), runs)
        out["unique_parse"] = await _p50(lambda: parse(users.slug), runs)
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
        now, stored = load(data_dir / "events", rows, subjects)
        stack = TallyProcess(data_dir=data_dir, postgres_url=asyncio.run(create_database()))
        rollups = os.environ.get("BENCH_ROLLUPS", "1") != "0"
        stack.extra_env = {"TALLY_LOG_LEVEL": "warning", "TALLY_SINK__ROLLUPS": "true" if rollups else "false"}
        stack.start(180)
        try:
            result = asyncio.run(figures(stack, now, stored, runs, rollups))
        finally:
            stack.stop()
    names = {
        "idle": "server_idle_cpu_ms_per_s (the server's CPU with no call in flight, before the calls)",
        "typed": "query_api_p50_ms (SUM by subject per hour, gRPC)",
        "groupby": "query_groupby_p50_ms (by subject and model, gRPC)",
        "unique": "query_unique_p50_ms (UNIQUE_COUNT by subject, gRPC)",
        "groupby_unparsed": "query_groupby_unparsed_p50_ms (the group-by, response bytes not parsed)",
        "unique_unparsed": "query_unique_unparsed_p50_ms (the unique count, response bytes not parsed)",
        "groupby_parse": "client_parse_groupby_p50_ms (this client parsing the group-by response)",
        "unique_parse": "client_parse_unique_p50_ms (this client parsing the unique-count response)",
        "rest_groupby": "query_groupby_rest_p50_ms (the same through Envoy, JSON)",
    }
    for key, (ms, size, cpu) in result.items():
        if key == "idle":
            print(f"{names[key]}: {ms:,.1f}")
            continue
        unit = "bytes" if key.startswith("rest") or key.endswith("unparsed") else "rows"
        server_cpu = "" if cpu is None else f", server CPU {cpu:,.1f} ms"
        print(f"{names[key]}: {ms:,.1f} ms ({size:,} {unit}{server_cpu})")


if __name__ == "__main__":
    main()
