"""CPU per event of the ingest path's Python pieces, one at a time, on 10,000 bench events.

`.venv/bin/python -m tests.bench.ingest_pieces` prints one JSON line (µs of process CPU time per
event, the best of 7 passes): a shared machine's load disturbs CPU time much less than the wall-clock
rates of `python -m tests.bench.run ingest`. To compare with an older tree, run it with PYTHONPATH
pointing at that tree (`git archive COMMIT | tar -x -C DIR`), alternating with this one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from adapters.bus import kafka
from adapters.clickhouse.events import to_arrow
from domain.metering.events import EventBatch, IngestLimits, parse_cloudevents
from server.servicers.events import add_cloudevents
from tally.v1 import events_pb2

EVENTS = 10_000
BATCH = 1_000


def _cpu_us_per_event(work: Callable[[], Any], passes: int = 7) -> float:
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return round(best / EVENTS * 1e6, 3)


def pieces() -> dict[str, float]:
    now = datetime.now(UTC)
    limits = IngestLimits()
    requests = []
    for b in range(EVENTS // BATCH):
        messages = []
        for i in range(BATCH):
            n = b * BATCH + i
            message = events_pb2.CloudEvent(
                id=f"p-{n}",
                source="bench",
                type="pieces",
                subject=f"customer-{n % 100}",
                data_json=orjson.dumps({"tokens": n % 100, "model": "gpt-4o" if n % 3 else "gpt-4o-mini"}),
            )
            message.time.FromDatetime(now - timedelta(seconds=n % 3600))
            messages.append(message)
        wire = events_pb2.IngestEventsRequest(events=messages).SerializeToString()
        requests.append(events_pb2.IngestEventsRequest.FromString(wire))  # as gRPC hands it over
    bodies = [
        orjson.dumps(
            [
                {
                    "specversion": "1.0",
                    "id": f"r-{b}-{i}",
                    "source": "bench",
                    "type": "pieces",
                    "subject": f"customer-{i % 100}",
                    "time": now.isoformat(),
                    "data": {"tokens": i % 100},
                }
                for i in range(BATCH)
            ]
        )
        for b in range(EVENTS // BATCH)
    ]
    batches = [add_cloudevents(EventBatch("default", now, limits), r.events).result() for r in requests]
    no_values: tuple[dict[str, float], dict[str, str]] = ({}, {})
    wire = [kafka.encode(events) for events in batches]
    return {
        "grpc_decode_validate": _cpu_us_per_event(
            lambda: [add_cloudevents(EventBatch("default", now, limits), r.events).result() for r in requests]
        ),
        "rest_decode_validate": _cpu_us_per_event(
            lambda: [
                parse_cloudevents(body, "application/cloudevents-batch+json", "default", now, limits) for body in bodies
            ]
        ),
        "to_arrow": _cpu_us_per_event(lambda: [to_arrow(events, [no_values] * len(events)) for events in batches]),
        "kafka_encode": _cpu_us_per_event(lambda: [kafka.encode(events) for events in batches]),
        "kafka_decode": _cpu_us_per_event(lambda: [kafka.decode(value) for value in wire]),
        "kafka_partition_for": _cpu_us_per_event(
            lambda: [[kafka.partition_for(event, 4) for event in events] for events in batches]
        ),
    }


if __name__ == "__main__":
    print(json.dumps(pieces()))
