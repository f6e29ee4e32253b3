-- Rollups are filled by the rollup worker from `events` by settled `stored_at` ranges, and a
-- meter query reads the events stored after a rollup's last committed fill straight from `events`
-- (adapters/clickhouse/rollups.py). That read is by `stored_at`, which the sort key does not lead
-- with; a min-max index per granule lets it skip the granules of older inserts. Existing parts get
-- the index by a background mutation (until then they are read whole, as before).
ALTER TABLE events ADD INDEX IF NOT EXISTS stored_at_minmax stored_at TYPE minmax GRANULARITY 1;
ALTER TABLE events MATERIALIZE INDEX stored_at_minmax;
-- Every committed fill is a `ready` row of its rollup (the new watermark): superseded rows go after
-- two days. A rollup whose rows all went (its worker stopped for two days) is made again, its
-- table dropped first.
ALTER TABLE meter_rollups MODIFY TTL toDateTime(at) + INTERVAL 2 DAY;
