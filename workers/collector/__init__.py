"""`tally collect`: a process of its own that turns infrastructure usage into metered events.

It owns the pipeline every source shares, from a source's records to events acknowledged by Tally:
the config file (`config`), the mapping of records to CloudEvents (`mapping`, JMESPath), the durable
SQLite buffer (`buffer`), batched delivery with backoff (`delivery`), schedules (`schedule`),
leader election (`leader`), its metrics (`metrics`) and the process itself (`runner`).

The sources' drivers (Prometheus' HTTP API, the Kubernetes client, the OTLP receiver, the HTTP
relay) live in `adapters/collectors/`, where the project keeps drivers; this package is to the
collector what `workers/sink.py` is to the sink: the loop, not the wire.
"""
