"""What a single-event acknowledgement's pieces cost alone, outside a running Tally (the numbers in
docs/performance.md, "Single-event latency"):

- `producer`: the Kafka producer against tansu, 16 callers and 1, one small message per call, with
  linger_ms 2 and 0: p50/p99 per message and the producer process's CPU per message;
- `insert [fsync] [sizes]`: an N-event insert into a fresh chDB event store as the sink makes it,
  wall time and the process's CPU per insert (all threads, the parts' background merges included);
  with `fsync`, the events table set to fsync each part and its directory (not Tally's setting);
- `keys`: the key store's claim of 8 keys and the mark "stored", through the real adapter, on a
  fresh database (ms per step).

`.venv/bin/python -m tests.bench.ack_pieces producer|insert|keys`
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from adapters.bus.kafka import ensure_topic
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.db import create_engine, migrate
from adapters.postgres.event_keys import PostgresEventKeyStore
from domain.metering.events import Event, epoch_ms, new_insert_token
from tests.support.services import Tansu
from tests.support.stack import create_database, drop_created_databases

MESSAGE = b'[["default","x","t","s","sub",1,null,1]]'


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _events(n: int) -> list[Event]:
    now = epoch_ms(datetime.now(UTC))
    return [Event("default", uuid.uuid4().hex, "t", "bench", "customer-1", now, '{"tokens":1}', now) for _ in range(n)]


async def _sends(kafka: AIOKafkaProducer, callers: int, calls: int) -> tuple[list[float], float]:
    """Seconds per acknowledged send, and the process's CPU µs per message."""
    took: list[float] = []
    counter = iter(range(calls))

    async def caller() -> None:
        for n in counter:
            started = time.perf_counter()
            await (await kafka.send("ack_pieces", MESSAGE, partition=n % 4))
            took.append(time.perf_counter() - started)

    cpu = time.process_time()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return took, (time.process_time() - cpu) / calls * 1e6


async def producer(calls: int = 4000) -> None:
    broker = Tansu().start()
    try:
        await ensure_topic(broker.brokers, "ack_pieces", 4)
        for _ in range(2):
            for linger, callers in ((2, 16), (0, 16), (2, 1), (0, 1)):
                kafka = AIOKafkaProducer(bootstrap_servers=broker.brokers, acks="all", linger_ms=linger)
                await kafka.start()
                await _sends(kafka, callers, calls // 4)  # warm-up
                took, cpu_us = await _sends(kafka, callers, calls)
                await kafka.stop()
                print(
                    f"linger {linger} ms, {callers} callers: p50 {_ms(took, 0.5):.2f} ms, p99 {_ms(took, 0.99):.2f} ms, "
                    f"{cpu_us:.0f} µs CPU per message; load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    finally:
        broker.stop()


async def insert(sizes: list[int], fsync: bool, inserts: int = 200) -> None:
    clickhouse = ClickHouse(f"chdb://{tempfile.mkdtemp(prefix='ack-pieces-')}/events")
    await clickhouse.migrate()
    if fsync:
        await clickhouse.command("ALTER TABLE events MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1")
    store = ClickHouseEventStore(clickhouse)
    try:
        for size in sizes:
            took: list[float] = []
            cpu = time.process_time()
            for _ in range(inserts):
                started = time.perf_counter()
                await store.insert(_events(size), [({}, {})] * size, f"batch-{uuid.uuid4().hex}")
                took.append(time.perf_counter() - started)
            cpu_ms = (time.process_time() - cpu) / inserts * 1000
            print(
                f"{size}-event insert: median {_ms(took, 0.5):.2f} ms, p90 {_ms(took, 0.9):.2f} ms, "
                f"{cpu_ms:.2f} ms CPU per insert; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        clickhouse.close()


async def keys(flushes: int = 300) -> None:
    url = await create_database()
    await migrate(url)
    engine = create_engine(url)
    store = PostgresEventKeyStore(engine)
    try:
        for _ in range(3):
            claim: list[float] = []
            stored: list[float] = []
            for _ in range(flushes):
                started = time.perf_counter()
                batch_id = (await store.claim("bench", _events(8), new_insert_token())).batch_id
                claimed = time.perf_counter()
                await store.commit([batch_id])
                claim.append(claimed - started)
                stored.append(time.perf_counter() - claimed)
            print(
                f"claim of 8 keys: median {statistics.median(claim) * 1000:.2f} ms; mark stored: median "
                f"{statistics.median(stored) * 1000:.2f} ms; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        await engine.dispose()
        await drop_created_databases()


if __name__ == "__main__":
    match sys.argv[1:2]:
        case ["producer"]:
            asyncio.run(producer())
        case ["insert"]:
            fsync = sys.argv[2:3] == ["fsync"]
            asyncio.run(insert([int(s) for s in sys.argv[2 + fsync :]] or [1, 8, 64, 512], fsync))
        case ["keys"]:
            asyncio.run(keys())
        case _:
            raise SystemExit(__doc__)
