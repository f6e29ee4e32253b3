"""The ingest producer alone against tansu: aiokafka (the product's `KafkaBus`) against librdkafka
through confluent-kafka, alternating (docs/performance.md, "A librdkafka producer for ingest").

16 callers publish through the api's path (`partition_for`, `encode`, one message per partition):
one event per call, then requests of 1,000 events. Per side and size: p50/p99 per call, events/s,
the producer process's CPU µs per event (all threads) and the broker's. confluent-kafka is not a
project dependency (it was measured and not adopted): `.venv/bin/pip install confluent-kafka` first.

`.venv/bin/python -m tests.bench.producer [rounds]`
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psutil

from adapters.bus.kafka import KafkaBus, encode, ensure_topic, partition_for
from domain.metering.events import Event
from tests.support.services import Tansu

TOPIC = "producer_bench"
PARTITIONS = 4
CALLERS = 16


class ConfluentBus:
    """`KafkaBus.publish` on confluent-kafka: produce from the loop, delivery reports served by a
    thread of ours (poll) and resolved on the loop in one call_soon_threadsafe per poll. Settings as
    the product's producer: acks=all, no idempotence, linger 0, one request in flight (aiokafka's
    ordering), explicit partitions."""

    def __init__(self, brokers: str) -> None:
        import confluent_kafka  # not a dependency: imported only when measured

        self._producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": brokers,
                "acks": "all",
                "enable.idempotence": False,
                "linger.ms": 0,
                "request.timeout.ms": 10_000,
                "message.timeout.ms": 10_000,
                "max.in.flight.requests.per.connection": 1,
                "message.max.bytes": 16 * 1024 * 1024,
                "socket.nagle.disable": True,
            }
        )
        self._reports: list[tuple[asyncio.Future[None], Any]] = []
        self._closing = False
        self._thread = threading.Thread(target=self._serve_reports, daemon=True)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def _serve_reports(self) -> None:
        while not self._closing:
            if self._producer.poll(0.1) and self._reports:
                reports, self._reports = self._reports, []
                self._loop.call_soon_threadsafe(_settle, reports)

    def _report(self, future: asyncio.Future[None], error: Any, _message: Any) -> None:
        self._reports.append((future, error))

    async def publish(self, events: Sequence[Event]) -> None:
        by_partition: dict[int, list[Event]] = {}
        for event in events:
            by_partition.setdefault(partition_for(event, PARTITIONS), []).append(event)
        futures = []
        for partition, chunk in by_partition.items():
            future: asyncio.Future[None] = self._loop.create_future()
            report = functools.partial(self._report, future)
            self._producer.produce(TOPIC, encode(chunk), partition=partition, on_delivery=report)
            futures.append(future)
        await asyncio.gather(*futures)

    async def stop(self) -> None:
        self._closing = True
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._producer.flush, 10)


def _settle(reports: list[tuple[asyncio.Future[None], Any]]) -> None:
    for future, error in reports:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(RuntimeError(str(error)))


def _events(n: int) -> list[Event]:
    return [Event("default", uuid.uuid4().hex, "t", "bench", f"c-{i % 100}", 1, '{"tokens":1}', 1) for i in range(n)]


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _calls(bus: Any, broker: psutil.Process, calls: int, size: int) -> dict[str, float]:
    requests = [_events(size) for _ in range(min(calls, 50))]
    took: list[float] = []
    counter = iter(range(calls))

    async def caller() -> None:
        for n in counter:
            started = time.perf_counter()
            await bus.publish(requests[n % len(requests)])
            took.append(time.perf_counter() - started)

    broker_cpu = sum(broker.cpu_times()[:2])
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    events = calls * size
    return {
        "p50": _ms(took, 0.5),
        "p99": _ms(took, 0.99),
        "eps": events / (time.perf_counter() - wall),
        "cpu": (time.process_time() - cpu) / events * 1e6,
        "broker": (sum(broker.cpu_times()[:2]) - broker_cpu) / events * 1e6,
    }


async def main(rounds: int) -> None:
    broker = Tansu().start()
    assert broker.process is not None
    try:
        await ensure_topic(broker.brokers, TOPIC, PARTITIONS)
        process = psutil.Process(broker.process.pid)
        for n in range(rounds):
            for name in ("aiokafka", "confluent"):
                bus = (
                    KafkaBus(broker.brokers, TOPIC, request_timeout_ms=10_000, enable_idempotence=False)
                    if name == "aiokafka"
                    else ConfluentBus(broker.brokers)
                )
                await bus.start()
                for size, calls in ((1, 4_000), (1_000, 200)):
                    await _calls(bus, process, calls // 4, size)  # warm-up
                    f = await _calls(bus, process, calls, size)
                    print(
                        f"round {n} {name:<9} {size:>5} per call: p50 {f['p50']:7.2f} ms, p99 {f['p99']:7.2f} ms, "
                        f"{f['eps']:>9,.0f} events/s, CPU µs per event {f['cpu']:6.1f} (broker {f['broker']:6.1f}); "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
                await bus.stop()
    finally:
        broker.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
