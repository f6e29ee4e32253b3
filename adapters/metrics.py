"""Prometheus instruments of every layer, and the liveness of every worker loop, served on their own
port (default 127.0.0.1:9464): `/metrics` (Prometheus) and `/healthz` (the probes of k8s/).

They live here, below the workers and the host that record them as well as the adapters (the Kafka
bus records lag), so no layer reaches up to another for its metrics.

Liveness: each long-running loop (the event loop itself, the sink's consumer, the balance and notify
workers, the announcement listeners) registers with a maximum age and beats on every turn, also
when a turn fails (an unreachable store is an outage to wait out, not a reason to restart). `/healthz`
answers 200 while every registered loop beat within its maximum age, else 503, with each loop's age
in JSON. It is served from a thread, so a blocked event loop shows as a stale beat.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

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
EVENTS_IN_DOUBT = Counter(
    "tally_events_in_doubt_total",
    "Events not stored by a flush because a still pending flush holds their keys; the bus retries or fails them",
)
INGEST_REJECTED = Counter(
    "tally_ingest_rejected_total",
    "Ingest requests refused whole (nothing acknowledged), by error: ValidationError, PayloadTooLargeError...",
    ["error"],
)
SINK_BATCH_SIZE = Histogram(
    "tally_sink_batch_events",
    "Events per sink flush",
    buckets=(1, 10, 100, 500, 1000, 5000, 10000, 20000, 50000),
)
SINK_INSERT_SECONDS = Histogram("tally_sink_insert_seconds", "Event store insert latency per flush")
SINK_KEYS_SECONDS = Histogram(
    "tally_sink_keys_seconds",
    "Key store round trips per flush: claim (records the batch and claims its keys), stored (marks it stored)",
    ["step"],
)
SINK_DELAY_SECONDS = Histogram(
    "tally_sink_ingest_to_stored_seconds",
    "Time from ingest acknowledgement to the event being queryable (oldest event of each flush)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SINK_LAG = Gauge(
    "tally_sink_lag_messages", "Kafka messages (batches of events) not yet stored, per partition", ["partition"]
)
EMBEDDED_ENGINE_CACHE_BYTES = Gauge(
    "tally_embedded_engine_cache_bytes",
    "Bytes held by each cache of the embedded ClickHouse engine (chDB; bounded by the chdb.* settings)",
    ["cache"],
)
METER_ROLLUPS = Gauge(
    "tally_meter_rollups",
    "Meters' rollups by lifecycle state (ready: meter queries and entitlement values read them), as the "
    "rollup worker last saw them",
    ["state"],
)
METER_ROLLUP_AUDIT_MISMATCHES = Counter(
    "tally_meter_rollup_audit_mismatches_total",
    "Ready meter rollups the audit found unequal to the events (count per subject and hour): each was taken "
    "out of routing and started over; any is a bug or a lost view insert worth a look at the logs",
)
METER_ROLLUP_AUDIT_SECONDS = Histogram(
    "tally_meter_rollup_audit_seconds",
    "Time of one audit of one ready meter rollup against the events",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

WEBHOOK_ATTEMPTS = Counter(
    "tally_webhook_attempts_total",
    "Webhook delivery attempts, by result (success: a 2xx answer; error: any other answer, a timeout or a refusal) "
    "and the delivery's state after it (SUCCESS, SENDING: will retry, FAILED: given up)",
    ["result", "state"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "tally_webhook_attempt_seconds",
    "Webhook delivery attempt duration",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_ABANDONED = Counter(
    "tally_webhook_abandoned_total",
    "Deliveries failed without an attempt, by reason: channel_not_found, rule_not_assigned, channel_disabled, deadline_passed",
    ["reason"],
)
BALANCE_RECOMPUTED = Counter("tally_balance_recomputed_total", "Entitlement balances recomputed by the balance worker")
BALANCE_ERRORS = Counter("tally_balance_errors_total", "Entitlement balance recomputations that failed")
BALANCE_SECONDS = Histogram(
    "tally_balance_recompute_seconds",
    "Time to recompute one entitlement's balance",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


class Liveness:
    def __init__(self) -> None:
        self._loops: dict[str, tuple[float, float]] = {}  # name -> (last beat, maximum age)
        self._lock = threading.Lock()

    def register(self, name: str, max_age_s: float) -> None:
        with self._lock:
            self._loops[name] = (time.monotonic(), max_age_s)

    def beat(self, name: str) -> None:
        with self._lock:
            found = self._loops.get(name)
            if found is not None:
                self._loops[name] = (time.monotonic(), found[1])

    def unregister(self, name: str) -> None:
        with self._lock:
            self._loops.pop(name, None)

    @contextlib.contextmanager
    def watching(self, name: str, max_age_s: float) -> Iterator[None]:
        """Registers a loop for its lifetime: a loop that ended (a stopped worker) is not reported stalled."""
        self.register(name, max_age_s)
        try:
            yield
        finally:
            self.unregister(name)

    def report(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            loops = {
                name: {"age_s": round(now - beat, 3), "max_age_s": max_age, "alive": now - beat <= max_age}
                for name, (beat, max_age) in self._loops.items()
            }
        return all(loop["alive"] for loop in loops.values()), loops


LIVENESS = Liveness()


class _Handler(BaseHTTPRequestHandler):
    liveness: Liveness = LIVENESS

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/healthz":
            ok, loops = self.liveness.report()
            body = json.dumps({"status": "ok" if ok else "stalled", "loops": loops}).encode()
            self._send(200 if ok else 503, "application/json", body)
        elif self.path.split("?")[0] == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest())
        else:
            self._send(404, "text/plain", b"not found: /metrics or /healthz\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(host: str, port: int, liveness: Liveness = LIVENESS) -> ThreadingHTTPServer:
    """Serves /metrics and /healthz (from `liveness`) on a thread of its own."""
    handler = type("Handler", (_Handler,), {"liveness": liveness})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
