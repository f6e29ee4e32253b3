-- The lifecycle of each meter's rollup (adapters/clickhouse/rollups.py): one row per state change,
-- the current state is the row with the highest version. Kept in ClickHouse, beside the rollup it
-- describes, so the two cannot disagree (a restored or rebuilt event store brings its own states),
-- and the event store routes queries without a second database. `stored_from_ms` is the handover:
-- the rollup's view counts events stored from then on, its fill those stored before.
CREATE TABLE IF NOT EXISTS meter_rollups
(
    name           String,
    namespace      LowCardinality(String),
    meter_id       String,
    state          LowCardinality(String),
    stored_from_ms Int64,
    version        UInt64,
    at             DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (name, version)
