-- Raw usage events, one row per accepted, de-duplicated CloudEvent.
-- Namespace leads the sort key: every query is scoped to one tenant.
-- num_values / str_values hold meter values extracted at ingest, keyed by the canonical JSONPath
-- (domain/metering/jsonpath.py); queries fall back to parsing `data` for paths an event lacks, so a
-- meter created after its events arrived counts them exactly (meters are data, not schema).
-- A numeric path whose value is missing or not a number is stored as nan (skipped by queries, like
-- OpenMeter's toFloat64OrNull -> NULL).
CREATE TABLE IF NOT EXISTS events
(
    namespace   LowCardinality(String),
    id          String,
    type        LowCardinality(String),
    source      String,
    subject     String,
    time        DateTime64(3, 'UTC'),
    data        String CODEC(ZSTD(1)),
    num_values  Map(LowCardinality(String), Float64),
    str_values  Map(LowCardinality(String), String),
    ingested_at DateTime64(3, 'UTC'),
    stored_at   DateTime64(3, 'UTC') DEFAULT now64(3),
    -- Duplicate detection looks events up by (namespace, source, id) in this projection, which is
    -- written atomically with each part: a key becomes visible exactly when its event does.
    PROJECTION by_key (SELECT namespace, source, id, ingested_at ORDER BY (namespace, source, id))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (namespace, type, subject, time)
SETTINGS non_replicated_deduplication_window = 10000, deduplicate_merge_projection_mode = 'rebuild'
