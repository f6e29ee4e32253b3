"""What a single-event call waits for on the embedded default: the sink's flushes during the bench's
single-event run (16 callers, one event per call), from Tally's /metrics read before and after.

`.venv/bin/python -m tests.bench.flush_floor [calls] [rounds]` prints, per round, the calls' p99
and the adjacent no-op RPC's p99, the number of flushes, the events per flush, the flush period and
the mean event-store insert time per flush (tally_sink_insert_seconds).
"""

from __future__ import annotations

import asyncio
import re
import sys
import uuid

import httpx

from tests.bench.run import single_event_latency
from tests.support.services import ROOT
from tests.support.stack import TallyProcess, create_database, drop_created_databases

_INSERT = re.compile(r"^tally_sink_insert_seconds_(sum|count) ([0-9.e+-]+)$", re.M)


def insert_seconds(metrics_port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    return {kind: float(value) for kind, value in _INSERT.findall(text)}


def main(calls: int, rounds: int) -> None:
    work = ROOT / ".bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    stack = TallyProcess(data_dir=work / f"floor-{uuid.uuid4().hex[:6]}", postgres_url=asyncio.run(create_database()))
    stack.extra_env = {"TALLY_LOG_LEVEL": "warning"}
    stack.start(180)
    try:
        for _ in range(rounds):
            before = insert_seconds(stack.metrics_port)
            p99, calls_per_s, noop_p99 = asyncio.run(single_event_latency(stack, calls))
            after = insert_seconds(stack.metrics_port)
            flushes = after["count"] - before["count"]
            insert_ms = (after["sum"] - before["sum"]) / max(flushes, 1) * 1000
            print(
                f"single p99 {p99:.1f} ms, no-op p99 {noop_p99:.1f} ms, {calls_per_s:.0f} calls/s; "
                f"{flushes:.0f} flushes, {calls / max(flushes, 1):.1f} events per flush, "
                f"a flush every {1000 * calls / calls_per_s / max(flushes, 1):.1f} ms, "
                f"insert {insert_ms:.1f} ms per flush",
                flush=True,
            )
    finally:
        stack.stop()
        asyncio.run(drop_created_databases())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000, int(sys.argv[2]) if len(sys.argv) > 2 else 2)
