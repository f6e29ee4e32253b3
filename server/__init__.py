"""The host: settings, the gRPC server and its interceptors, the CLI, and the wiring of each area."""

import os

# Arrow's allocator, chosen when Arrow first allocates (so here, before anything imports it). The
# sink builds an Arrow table per insert; Arrow's default (mimalloc) keeps what those tables freed:
# a Kafka-path sink under steady ingest peaked 60-80 MB higher with it (tests/bench/run.py's
# sink_rss_mb_kafka), and building a 20k-event table took the same time with either (18.3-18.9 ms).
# The C allocator gives large blocks back. An ARROW_DEFAULT_MEMORY_POOL in the environment wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
