"""Prometheus instruments of every layer, served on their own port (default 127.0.0.1:9464, /metrics).

They live here, below the workers and the host that record them as well as the adapters (the Kafka
bus records lag), so no layer reaches up to another for its metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_TOTAL = Counter("tally_rpc_total", "gRPC calls handled", ["method", "code"])
RPC_LATENCY = Histogram(
    "tally_rpc_seconds",
    "gRPC call latency",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
EVENTS_INGESTED = Counter("tally_events_ingested_total", "Events acknowledged by the ingest API")
EVENTS_STORED = Counter("tally_events_stored_total", "Events written to the event store by the sink")
EVENTS_DUPLICATE = Counter("tally_events_duplicate_total", "Events dropped as duplicates of (namespace, source, id)")
SINK_BATCH_SIZE = Histogram(
    "tally_sink_batch_events",
    "Events per sink flush",
    buckets=(1, 10, 100, 500, 1000, 5000, 10000, 20000, 50000),
)
SINK_INSERT_SECONDS = Histogram("tally_sink_insert_seconds", "Event store insert latency per flush")
SINK_DELAY_SECONDS = Histogram(
    "tally_sink_ingest_to_stored_seconds",
    "Time from ingest acknowledgement to the event being queryable (oldest event of each flush)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SINK_LAG = Gauge(
    "tally_sink_lag_messages", "Kafka messages (batches of events) not yet stored, per partition", ["partition"]
)


def serve(host: str, port: int) -> None:
    start_http_server(port, addr=host)
