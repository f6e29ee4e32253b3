"""The versioned ClickHouse DDL for one server (as written) or for a cluster (rendered from it).

Migrations in migrations/clickhouse/ are written for a single node, the default. With a configured
cluster name (`clickhouse_cluster`), each statement is rendered for that cluster:

- `CREATE TABLE t (...) ENGINE = <X>MergeTree ...` becomes `t_local ON CLUSTER` with
  `Replicated<X>MergeTree('/clickhouse/tables/{shard}/{database}/t_local', '{replica}')`, plus
  `t ON CLUSTER AS t_local ENGINE = Distributed(cluster, currentDatabase(), t_local, key)`, sharded by
  namespace and subject (`cityHash64(namespace, subject)`) when the table has a subject column, else
  by namespace: a customer's usage stays on one shard, and every query reads `t` as it does on one
  node. The `{shard}`, `{replica}` and `{database}` macros are the server's (set in its config).
- `ALTER TABLE t ...` of a sharded table becomes `ALTER TABLE t_local ON CLUSTER ...`.
- `CREATE MATERIALIZED VIEW v [TO t] AS SELECT ... FROM s` becomes `v ON CLUSTER`, writing to
  `t_local` from `s_local`: each shard aggregates its own rows.
- The migrations ledger is one replicated table shared by every node (no shard in its path).

Anything else is refused (ClusterDdlError) rather than guessed; tests/unit/test_clickhouse_ddl.py
renders every migration in both modes and has ClickHouse's parser (chDB's formatQuery) check each
statement. No cluster runs on the machines this was built on: docs/clickhouse-cluster.md says what was
and was not verified.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LOCAL_SUFFIX = "_local"

_CREATE_TABLE = re.compile(
    r"^\s*CREATE\s+TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)\s*(?P<body>\(.*\))\s*"
    r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\s*\(\s*(?P<args>[^)]*)\))?(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_ALTER_TABLE = re.compile(r"^\s*ALTER\s+TABLE\s+(?P<name>\w+)\s+(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_CREATE_VIEW = re.compile(
    r"^\s*CREATE\s+MATERIALIZED\s+VIEW\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)\s+"
    r"(?:TO\s+(?P<to>\w+)\s+)?(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_SUBJECT_COLUMN = re.compile(r"(^|[(,\n])\s*subject\s+\w", re.IGNORECASE)


class ClusterDdlError(ValueError):
    """A migration statement the cluster renderer does not know how to distribute."""


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(cluster: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-{}]+", cluster):
        raise ClusterDdlError(f"cluster name {cluster!r}: letters, digits, '_', '-', '.' and macros only")
    return cluster


def ledger_ddl(cluster: str | None) -> str:
    """The migrations ledger (which versions were applied)."""
    columns = "(version String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))"
    if cluster is None:
        return f"CREATE TABLE IF NOT EXISTS tally_schema_migrations {columns} ENGINE = MergeTree ORDER BY version"
    name = _identifier(cluster)
    # One replicated table across every shard and replica: any node answers what was applied.
    return (
        f"CREATE TABLE IF NOT EXISTS tally_schema_migrations ON CLUSTER {_quote(name)} {columns} "
        "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{database}/tally_schema_migrations', '{replica}') "
        "ORDER BY version"
    )


def render(statements: Sequence[str], cluster: str | None, sharded: set[str] | None = None) -> list[str]:
    """The statements of one migration for a single node (unchanged) or for `cluster`.

    `sharded` collects the tables made local + Distributed so far (earlier migrations' tables are
    found again by name in later ones); pass the same set across migrations in order."""
    if cluster is None:
        return list(statements)
    name = _quote(_identifier(cluster))
    known = sharded if sharded is not None else set()
    rendered: list[str] = []
    for statement in statements:
        if match := _CREATE_TABLE.match(statement):
            table, body, engine = match["name"], match["body"], match["engine"]
            local = table + LOCAL_SUFFIX
            args = (match["args"] or "").strip()
            path = f"'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'"
            replicated = f"Replicated{engine}({path}{', ' + args if args else ''})"
            ine = "IF NOT EXISTS " if match["ine"] else ""
            key = "cityHash64(namespace, subject)" if _SUBJECT_COLUMN.search(body) else "cityHash64(namespace)"
            rendered.append(f"CREATE TABLE {ine}{local} ON CLUSTER {name} {body}\nENGINE = {replicated}{match['rest']}")
            rendered.append(
                f"CREATE TABLE {ine}{table} ON CLUSTER {name} AS {local}\n"
                f"ENGINE = Distributed({name}, currentDatabase(), {local}, {key})"
            )
            known.add(table)
        elif (match := _ALTER_TABLE.match(statement)) and match["name"] in known:
            rendered.append(f"ALTER TABLE {match['name']}{LOCAL_SUFFIX} ON CLUSTER {name} {match['rest']}")
        elif match := _CREATE_VIEW.match(statement):
            target = match["to"]
            rest = match["rest"]
            for table in known:
                rest = re.sub(rf"\b(FROM|JOIN)\s+{table}\b", rf"\1 {table}{LOCAL_SUFFIX}", rest, flags=re.IGNORECASE)
            to = f"TO {target}{LOCAL_SUFFIX if target in known else ''} " if target else ""
            ine = "IF NOT EXISTS " if match["ine"] else ""
            rendered.append(f"CREATE MATERIALIZED VIEW {ine}{match['name']} ON CLUSTER {name} {to}{rest}")
        else:
            raise ClusterDdlError(f"no cluster rendering for this statement: {statement[:120]}...")
    return rendered


def local_table(table: str, cluster: str | None) -> str:
    """The table that mutations (ALTER ... UPDATE) address: the shard-local one on a cluster."""
    return table if cluster is None else table + LOCAL_SUFFIX


def on_cluster(cluster: str | None) -> str:
    return "" if cluster is None else f" ON CLUSTER {_quote(_identifier(cluster))}"


def kill_query(cluster: str | None) -> str:
    """Stops the statements named by the `id` parameter, on every node of a cluster (a Distributed
    insert's statements on the shards carry it as their initial query), waiting for any past stopping."""
    return f"KILL QUERY{on_cluster(cluster)} WHERE initial_query_id = {{id:String}} SYNC"


def sync_replicas(table: str, cluster: str) -> str:
    """Makes every replica of `table`'s shards fetch what the others hold, before a read that must see
    every acknowledged insert (one replica per shard acknowledges it)."""
    return f"SYSTEM SYNC REPLICA{on_cluster(cluster)} {local_table(table, cluster)}"
