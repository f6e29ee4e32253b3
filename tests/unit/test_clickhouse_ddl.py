"""Cluster DDL, tested by rendering: no ClickHouse cluster runs here (docs/clickhouse-cluster.md).

Every migration renders in both modes; the single-node rendering is the file itself; the cluster
rendering puts every table ON CLUSTER as Replicated*MergeTree behind a Distributed table sharded by
namespace and subject, and ClickHouse's own parser (chDB's formatQuery) accepts every statement.
"""

from __future__ import annotations

from collections.abc import Iterator

import chdb
import pytest

from adapters.clickhouse.client import MIGRATIONS_DIR, split_statements
from adapters.clickhouse.ddl import (
    ClusterDdlError,
    kill_query,
    ledger_ddl,
    local_table,
    on_cluster,
    render,
    sync_replicas,
)


@pytest.fixture(scope="module")
def parser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[chdb.state.sqlitelike.Connection]:
    connection = chdb.connect(str(tmp_path_factory.mktemp("ddl")))
    yield connection
    connection.close()


def _parses(parser: chdb.state.sqlitelike.Connection, statement: str) -> str:
    literal = "'" + statement.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return bytes(parser.query(f"SELECT formatQuery({literal})", "TSVRaw").bytes()).decode()


def _all(cluster: str | None) -> list[str]:
    sharded: set[str] = set()
    return [
        statement
        for path in sorted(MIGRATIONS_DIR.glob("*.sql"))
        for statement in render(split_statements(path.read_text()), cluster, sharded)
    ]


def test_single_node_is_the_migration_as_written() -> None:
    assert _all(None) == [s for p in sorted(MIGRATIONS_DIR.glob("*.sql")) for s in split_statements(p.read_text())]
    assert "ON CLUSTER" not in ledger_ddl(None)
    assert local_table("events", None) == "events" and on_cluster(None) == ""


def test_every_migration_renders_for_a_cluster_and_parses(parser: chdb.state.sqlitelike.Connection) -> None:
    statements = _all("tally")
    for statement in [ledger_ddl("tally"), *statements]:
        formatted = _parses(parser, statement)
        assert "ON CLUSTER tally" in formatted, statement
    events_local = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS events_local "))
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/events_local', '{replica}')" in (
        events_local
    )
    assert "ORDER BY (namespace, type, subject, time)" in events_local
    assert "PROJECTION by_key" in events_local
    events = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS events "))
    assert events.endswith(
        "ENGINE = Distributed('tally', currentDatabase(), events_local, cityHash64(namespace, subject))"
    )
    assert "ReplicatedMergeTree('/clickhouse/tables/{database}/tally_schema_migrations', '{replica}')" in ledger_ddl(
        "tally"
    )
    assert local_table("events", "tally") == "events_local" and on_cluster("tally") == " ON CLUSTER 'tally'"


def test_later_statements_address_the_shard_local_tables(parser: chdb.state.sqlitelike.Connection) -> None:
    sharded: set[str] = set()
    render(
        ["CREATE TABLE t (namespace String, subject String, v Float64) ENGINE = MergeTree ORDER BY namespace"],
        "c",
        sharded,
    )
    rollup = render(
        [
            "CREATE TABLE IF NOT EXISTS usage_minute (namespace String, minute DateTime, "
            "v AggregateFunction(sum, Float64)) ENGINE = AggregatingMergeTree ORDER BY (namespace, minute)",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS usage_minute_mv TO usage_minute AS "
            "SELECT namespace, toStartOfMinute(now()) AS minute, sumState(v) AS v FROM t GROUP BY namespace, minute",
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS w Float64",
        ],
        "c",
        sharded,
    )
    assert "ReplicatedAggregatingMergeTree(" in rollup[0]
    assert rollup[1].endswith("Distributed('c', currentDatabase(), usage_minute_local, cityHash64(namespace))")
    assert "TO usage_minute_local" in rollup[2] and "FROM t_local" in rollup[2]
    assert rollup[3].startswith("ALTER TABLE t_local ON CLUSTER 'c' ADD COLUMN")
    for statement in rollup:
        _parses(parser, statement)


def test_what_it_cannot_distribute_is_refused() -> None:
    with pytest.raises(ClusterDdlError):
        render(["CREATE DICTIONARY d (k UInt64) PRIMARY KEY k SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0)"], "c")
    with pytest.raises(ClusterDdlError):
        render(["SELECT 1"], "bad name; DROP")


def test_a_meters_rollup_renders_for_a_cluster(parser: chdb.state.sqlitelike.Connection) -> None:
    # What adapters/clickhouse/rollups.py runs on a cluster: the rollup shards like `events` (its
    # fills are inserted through the Distributed table); no view.
    from datetime import UTC, datetime

    from adapters.clickhouse.meter_sql import Rollup, render_rollup_ddl, rollup_table
    from domain.metering.models import Aggregation, Meter

    moment = datetime(2024, 1, 1, tzinfo=UTC)
    meter = Meter(
        id="m1", namespace="ns", slug="tokens", name="tokens", description=None, aggregation=Aggregation.SUM,
        event_type="prompt", event_from=None, value_property="$.tokens", group_by={"model": "$.model"},
        metadata={}, annotations={}, created_at=moment, updated_at=moment,
    )  # fmt: skip
    table = rollup_table(meter, Rollup.HOUR)
    statements = [sql for sql, _ in render_rollup_ddl(meter, Rollup.HOUR)]
    rendered = render(statements, "c", {"events", table})
    assert len(rendered) == 2
    assert "ReplicatedAggregatingMergeTree(" in rendered[0]
    assert rendered[1].endswith(f"Distributed('c', currentDatabase(), {table}_local, cityHash64(namespace, subject))")
    for statement in rendered:
        _parses(parser, statement)


def test_a_rollups_compaction_renders_for_a_cluster(parser: chdb.state.sqlitelike.Connection) -> None:
    # What RollupLifecycle.compact runs: the staging table shards like the rollup (so each shard's
    # copy holds its own rows), every replica has it before the swap, and each shard swaps its own
    # partition of the shard-local tables.
    from datetime import UTC, datetime

    from adapters.clickhouse.meter_sql import Rollup, render_rollup_compaction, rollup_table
    from domain.metering.models import Aggregation, Meter

    moment = datetime(2024, 1, 1, tzinfo=UTC)
    meter = Meter(
        id="m1", namespace="ns", slug="tokens", name="tokens", description=None, aggregation=Aggregation.LATEST,
        event_type="prompt", event_from=None, value_property="$.tokens", group_by={"model": "$.model"},
        metadata={}, annotations={}, created_at=moment, updated_at=moment,
    )  # fmt: skip
    table = rollup_table(meter, Rollup.HOUR)
    single = render_rollup_compaction(meter, Rollup.HOUR, 202412, 1_700_000_000_000)
    assert single.swap == f"ALTER TABLE {table} REPLACE PARTITION 202412 FROM {table}_compact"
    assert not single.settle and "argMaxMergeState(state)" in single.copy[0]
    steps = render_rollup_compaction(meter, Rollup.HOUR, 202412, 1_700_000_000_000, "c")
    staging = f"{table}_compact"
    assert steps.prepare[:2] == [
        f"DROP TABLE IF EXISTS {staging} ON CLUSTER 'c' SYNC",
        f"DROP TABLE IF EXISTS {staging}_local ON CLUSTER 'c' SYNC",
    ]
    assert (
        "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/" + staging + "_local'"
        in (steps.prepare[2])
    )
    assert steps.prepare[3].endswith(
        f"Distributed('c', currentDatabase(), {staging}_local, cityHash64(namespace, subject))"
    )
    assert steps.copy[0].startswith(f"INSERT INTO {staging} (")  # through the Distributed table
    assert steps.settle == [f"SYSTEM SYNC REPLICA ON CLUSTER 'c' {staging}_local"]
    assert steps.swap == f"ALTER TABLE {table}_local ON CLUSTER 'c' REPLACE PARTITION 202412 FROM {staging}_local"
    for statement in [*steps.prepare, steps.copy[0], steps.tally[0], *steps.settle, steps.swap, *steps.clean]:
        _parses(parser, statement)


def test_settling_statements_reach_every_node_and_parse(parser: chdb.state.sqlitelike.Connection) -> None:
    # What the sink runs before it looks up what a failed insert stored (docs/clickhouse-cluster.md).
    assert kill_query(None) == "KILL QUERY WHERE initial_query_id = {id:String} SYNC"
    assert kill_query("c") == "KILL QUERY ON CLUSTER 'c' WHERE initial_query_id = {id:String} SYNC"
    assert sync_replicas("events", "c") == "SYSTEM SYNC REPLICA ON CLUSTER 'c' events_local"
    for statement in (kill_query(None), kill_query("c"), sync_replicas("events", "c")):
        assert _parses(parser, statement)
