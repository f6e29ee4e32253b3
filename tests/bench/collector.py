"""`python -m tests.bench.collector`: the HTTP relay's figures, through the real `tally collect` process.

Real HTTP clients post CloudEvent batches to the relay; measured: how fast the relay acknowledges
(each request is one durable SQLite transaction), and how long until Tally has stored them all
(the collector's delivery to Tally's gRPC ingest included). Needs the machine's Postgres, like the
tests. COLLECTOR_BENCH_EVENTS (default 50,000), _BATCH (100) and _CLIENTS (8) size the run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import yaml

from tests.support.collector import CollectorProcess
from tests.support.metering import create_meter
from tests.support.services import free_port, port_open
from tests.support.stack import TallyProcess, create_database, drop_created_databases

EVENTS = int(os.environ.get("COLLECTOR_BENCH_EVENTS", "50000"))
BATCH = int(os.environ.get("COLLECTOR_BENCH_BATCH", "100"))
CLIENTS = int(os.environ.get("COLLECTOR_BENCH_CLIENTS", "8"))


async def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="collector-bench-"))
    tally = TallyProcess(data_dir=workdir / "tally", postgres_url=await create_database()).start()
    collector: CollectorProcess | None = None
    try:
        event_type = f"bench_{uuid.uuid4().hex[:8]}"
        async with httpx.AsyncClient(base_url=tally.rest_url, timeout=60) as api:
            await create_meter(api, slug=event_type, eventType=event_type, aggregation="COUNT")
        relay_port, metrics_port = free_port(), free_port()
        config = {
            "sink": {"url": f"grpc://{tally.grpc_target}"},
            "batch": {"size": 1000, "period": "200ms"},
            "buffer": {"path": str(workdir / "buffer.db")},
            "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
            "sources": [{"name": "relay", "type": "http", "listen": f"127.0.0.1:{relay_port}"}],
        }
        (workdir / "collector.yaml").write_text(yaml.safe_dump(config))
        collector = CollectorProcess(workdir / "collector.yaml", metrics_port).start()
        while not port_open("127.0.0.1", relay_port):
            await asyncio.sleep(0.05)

        batches = [
            [
                {
                    "specversion": "1.0",
                    "id": f"e{b}-{i}",
                    "source": "bench",
                    "type": event_type,
                    "subject": f"customer-{i % 50}",
                    "data": {"tokens": i},
                }
                for i in range(BATCH)
            ]
            for b in range(EVENTS // BATCH)
        ]
        queue: asyncio.Queue[list[dict[str, object]]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)
        latencies: list[float] = []

        async def client() -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{relay_port}", timeout=60) as http:
                while not queue.empty():
                    batch = queue.get_nowait()
                    started = time.perf_counter()
                    response = await http.post(
                        "/api/v1/events", json=batch, headers={"content-type": "application/cloudevents-batch+json"}
                    )
                    assert response.status_code == 204, response.text
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        accepted = time.perf_counter() - started
        total = len(batches) * BATCH
        async with httpx.AsyncClient(base_url=tally.rest_url, timeout=60) as api:
            while True:
                rows = (await api.get(f"/api/v1/meters/{event_type}/query")).json()["data"]
                if sum(row["value"] for row in rows) >= total:
                    break
                await asyncio.sleep(0.1)
        stored = time.perf_counter() - started
        latencies.sort()
        print(f"events {total}, batches of {BATCH}, {CLIENTS} clients")
        print(
            f"relay accepted (durable on the collector's disk): {total / accepted:,.0f} events/s "
            f"({accepted:.1f} s); request p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
        )
        print(f"stored in Tally (queryable): {total / stored:,.0f} events/s ({stored:.1f} s from the first request)")
    finally:
        if collector is not None:
            collector.stop(signal.SIGTERM)
        tally.stop()
        await drop_created_databases()


if __name__ == "__main__":
    asyncio.run(main())
