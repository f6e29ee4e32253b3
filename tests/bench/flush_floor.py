"""What a single-event call waits for on the embedded default: the sink's flushes during the bench's
single-event run (16 callers, one event per call), from Tally's /metrics read before and after.

`.venv/bin/python -m tests.bench.flush_floor [calls] [rounds]` prints, per round, the calls' p99
and the adjacent no-op RPC's p99, the number of flushes, the events per flush, the flush period, and
the mean time per flush of each step an acknowledgement waits for: the key claim (a Postgres
transaction recording the batch and its keys: tally_sink_keys_seconds{step="claim"}), the
event-store insert (tally_sink_insert_seconds), and marking the batch stored (a second Postgres
transaction: step="stored").
"""

from __future__ import annotations

import asyncio
import re
import sys
import uuid

import httpx

from tests.bench.run import single_event_figures
from tests.support.services import ROOT
from tests.support.stack import TallyProcess, create_database, drop_created_databases

_STEPS = {
    "claim": re.compile(r'^tally_sink_keys_seconds_(sum|count)\{step="claim"\} ([0-9.e+-]+)$', re.M),
    "insert": re.compile(r"^tally_sink_insert_seconds_(sum|count) ([0-9.e+-]+)$", re.M),
    "stored": re.compile(r'^tally_sink_keys_seconds_(sum|count)\{step="stored"\} ([0-9.e+-]+)$', re.M),
}


def step_seconds(metrics_port: int) -> dict[str, dict[str, float]]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    return {step: {kind: float(value) for kind, value in pattern.findall(text)} for step, pattern in _STEPS.items()}


def main(calls: int, rounds: int) -> None:
    work = ROOT / ".bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    stack = TallyProcess(data_dir=work / f"floor-{uuid.uuid4().hex[:6]}", postgres_url=asyncio.run(create_database()))
    stack.extra_env = {"TALLY_LOG_LEVEL": "warning"}
    stack.start(180)
    try:
        for _ in range(rounds):
            before = step_seconds(stack.metrics_port)
            f = asyncio.run(single_event_figures(stack, calls))
            after = step_seconds(stack.metrics_port)
            flushes = max(after["insert"].get("count", 0.0) - before["insert"].get("count", 0.0), 1)
            steps = ", ".join(
                f"{step} {(after[step].get('sum', 0.0) - before[step].get('sum', 0.0)) / flushes * 1000:.1f}"
                for step in _STEPS
            )
            print(
                f"single p99 {f['single_p99']:.1f} ms (p50 {f['single_p50']:.1f}), no-op p99 {f['noop_p99']:.1f} ms "
                f"(p50 {f['noop_p50']:.1f}), {f['single_rate']:.0f} calls/s; {flushes:.0f} flushes, "
                f"{calls / flushes:.1f} events per flush, a flush every {1000 * calls / f['single_rate'] / flushes:.1f} ms; "
                f"ms per flush: {steps}",
                flush=True,
            )
    finally:
        stack.stop()
        asyncio.run(drop_created_databases())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000, int(sys.argv[2]) if len(sys.argv) > 2 else 2)
