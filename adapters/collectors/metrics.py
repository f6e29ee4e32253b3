"""The collector's Prometheus metrics, on a registry of its own, served at /metrics by `tally collect`.

They live here, below the collector's worker package, so its sources record without reaching up.

scraped: records a source produced; buffered: events newly stored in the buffer; sent: events Tally
acknowledged; failed: records or events given up on, by reason (mapping: the record cannot be an
event Tally accepts; rejected: Tally refused it, kept in the buffer's dead letters); lag: age of the
oldest event still waiting for Tally.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

SCRAPED = Counter("tally_collector_scraped_total", "Records produced by a source", ["source"], registry=REGISTRY)
BUFFERED = Counter(
    "tally_collector_buffered_total", "Events stored durably in the buffer", ["source"], registry=REGISTRY
)
SENT = Counter("tally_collector_sent_total", "Events acknowledged by Tally", registry=REGISTRY)
FAILED = Counter(
    "tally_collector_failed_total", "Records or events given up on, by reason", ["source", "reason"], registry=REGISTRY
)
DELIVERY_ERRORS = Counter(
    "tally_collector_delivery_errors_total", "Delivery attempts that failed (retried)", ["kind"], registry=REGISTRY
)
SOURCE_ERRORS = Counter(
    "tally_collector_source_errors_total", "Source runs that failed (retried)", ["source"], registry=REGISTRY
)
PENDING = Gauge("tally_collector_buffer_events", "Events in the buffer waiting for Tally", registry=REGISTRY)
LAG = Gauge("tally_collector_lag_seconds", "Age of the oldest event waiting for Tally (0 when none)", registry=REGISTRY)
LEADER = Gauge("tally_collector_leader", "1 while this replica runs the pull sources", registry=REGISTRY)
LAST_RUN = Gauge(
    "tally_collector_last_run_timestamp_seconds",
    "End of the last window a pull source completed (Unix time)",
    ["source"],
    registry=REGISTRY,
)
SKIPPED_RUNS = Counter(
    "tally_collector_skipped_runs_total",
    "Scheduled runs missed beyond max_catch_up (while down or not the leader)",
    ["source"],
    registry=REGISTRY,
)
