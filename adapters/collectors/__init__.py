"""The collector's sources: the drivers that read usage from infrastructure (`tally collect`).

prometheus (PromQL over its HTTP API), kubernetes (the official client: pods, nodes, PVCs and the
Lease used for leader election), otel_logs (an OTLP/gRPC logs receiver) and http (a CloudEvents
relay). They live here, beside the project's other drivers, because they speak external protocols;
the pipeline that buffers and delivers what they yield is `workers/collector/`. Each source turns
what it reads into plain records (dicts) and hands them to the pipeline; none of them talks to
Tally itself.
"""
