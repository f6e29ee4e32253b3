"""One ClickHouse connection for the event store, embedded (chDB) or a server, same driver and SQL.

clickhouse-connect is synchronous; calls run on a small thread pool (chDB and the HTTP client both
release the GIL while ClickHouse works), so the event loop never blocks on a query.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

import clickhouse_connect
import structlog
from clickhouse_connect.driver.client import Client

from adapters.clickhouse import ddl

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations" / "clickhouse"


# The engine's caches (system.metrics name -> the name Tally reports), as bounded by the chdb.* settings.
ENGINE_CACHES = {
    "MarkCacheBytes": "mark",
    "PrimaryIndexCacheBytes": "primary_index",
    "IndexMarkCacheBytes": "index_mark",
    "QueryConditionCacheBytes": "query_condition",
    "UncompressedCacheBytes": "uncompressed",
    "QueryCacheBytes": "query",
}


def format_schema_settings(url: str, schema: str, message: str) -> dict[str, str]:
    """The settings that give a statement's Protobuf output format this schema (its text) and message.

    A server takes the text with the statement (`format_schema_source = 'string'`). chDB would
    cache such a text in the process's working directory (`__cache__/`, wherever Tally was started),
    so the embedded engine reads it from a file in its data directory instead, by absolute path.
    """
    if not url.startswith("chdb://"):
        return {"format_schema_source": "string", "format_schema": schema, "format_schema_message_name": message}
    directory = Path(url.removeprefix("chdb://")) / "format_schemas"
    path = directory / f"{hashlib.sha256(schema.encode()).hexdigest()[:24]}.proto"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a concurrent reader never sees half a schema.
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(schema)
        partial.replace(path)
    return {"format_schema_source": "file", "format_schema": str(path), "format_schema_message_name": message}


# No JIT compilation of expressions in the embedded engine. ClickHouse compiles an expression the
# third time it meets it (`min_count_to_compile_*`), in the statement that meets it: the fourth run
# of a windows statement took 49-74 ms instead of 6-14, once per statement shape and process, and
# the embedded engine runs one statement at a time, so every query and insert behind it waited as
# long. Compiled or not, the bench's meter queries took the same time at 1M and 10M events
# (docs/performance.md, "Statements compiled on their fourth run"). A ClickHouse server runs
# statements side by side and is left at its operator's settings.
EMBEDDED_QUERY_SETTINGS = {"compile_expressions": 0, "compile_aggregate_expressions": 0, "compile_sort_description": 0}


def connect(url: str, engine_options: Mapping[str, str] | None = None) -> Client:
    """chdb:///path opens the embedded engine in that directory; http(s)://user:pass@host:port/db a server.

    `engine_options` are the embedded engine's server settings (cache sizes, memory limit), given
    to it when it starts; a process has one engine, so a later connection to it joins it as it is.
    """
    if url.startswith("chdb://"):
        Path(url.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(
            dsn=url, chdb_options=dict(engine_options or {}) or None, settings=EMBEDDED_QUERY_SETTINGS
        )
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"unsupported ClickHouse URL scheme {parsed.scheme!r}; use chdb://, http:// or https://")
    return clickhouse_connect.get_client(
        **_timeouts(parsed.query),
        host=parsed.hostname or "localhost",
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        username=unquote(parsed.username or "default"),
        password=unquote(parsed.password or ""),
        database=parsed.path.lstrip("/") or "default",
        secure=parsed.scheme == "https",
        # No HTTP session: the pool below runs queries concurrently on this one client, which
        # clickhouse-connect refuses within a session ("concurrent queries within the same
        # session"); Tally keeps no session state (temporary tables, SET) on the server.
        autogenerate_session_id=False,
    )


# What a server URL's query string may set: the client's timeouts, in seconds (clickhouse-connect's
# defaults: 10 to connect, 300 for a statement's answer).
URL_TIMEOUTS = ("connect_timeout", "send_receive_timeout")


def _timeouts(query: str) -> dict[str, Any]:
    timeouts: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in URL_TIMEOUTS:
            raise ValueError(f"ClickHouse URL option {name!r} is not known; allowed: {', '.join(URL_TIMEOUTS)}")
        if not value.isdigit() or int(value) == 0:
            raise ValueError(f"ClickHouse URL option {name}={value!r}: a whole number of seconds above 0")
        timeouts[name] = int(value)
    return timeouts


class ClickHouse:
    def __init__(
        self,
        url: str,
        workers: int = 4,
        cluster: str | None = None,
        engine_options: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        # A configured cluster: DDL rendered for it (adapters/clickhouse/ddl.py), inserts through
        # Distributed tables acknowledged only once the shards hold them.
        self.cluster = cluster
        self.embedded = url.startswith("chdb://")
        self._client = connect(url, engine_options)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clickhouse")
        # clickhouse-connect's client is not documented as thread-safe for concurrent inserts;
        # inserts are serialised (one sink writes at a time anyway), queries run concurrently.
        self._insert_lock = threading.Lock()

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        result = await self._run(self._client.query, sql, parameters=dict(parameters or {}))
        return list(result.result_rows)

    async def query_protobuf(self, sql: str, parameters: Mapping[str, Any], schema: str, message: str) -> bytes:
        """The statement's whole output in ClickHouse's ProtobufSingle format (one `message` of the
        `schema` text, unparsed): the caller's statement returns one row."""
        settings = format_schema_settings(self.url, schema, message)
        output = await self._run(
            self._client.raw_query, sql, parameters=dict(parameters), settings=settings, fmt="ProtobufSingle"
        )
        return bytes(output)

    async def command(
        self, sql: str, parameters: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> Any:
        return await self._run(
            self._client.command, sql, parameters=dict(parameters or {}), settings=dict(settings or {}) or None
        )

    def _insert_arrow(self, table: str, arrow_table: Any, settings: Mapping[str, Any], query_id: str | None) -> None:
        settings = dict(settings)
        if self.cluster is not None:
            # The sink commits Kafka offsets after this returns: the rows must be on their shards
            # by then, not queued in the Distributed table's local spool.
            settings.setdefault("distributed_foreground_insert", 1)
        if query_id is not None and not self.embedded:
            settings["query_id"] = query_id  # what `end_query` names
        with self._insert_lock:
            self._client.insert_arrow(table, arrow_table, settings=settings)

    async def insert_arrow(
        self, table: str, arrow_table: Any, settings: Mapping[str, Any] | None = None, query_id: str | None = None
    ) -> None:
        """Inserts `arrow_table`; on a server the statement is named `query_id` (see `end_query`).

        Returns or raises only once the insert's thread is done, even when the caller is cancelled:
        the thread goes on inserting whatever happens to the awaiting task, and a caller that settles
        a failed insert (the sink) must not look at the store while its insert may still land."""
        insert = asyncio.get_running_loop().run_in_executor(
            self._pool, self._insert_arrow, table, arrow_table, settings or {}, query_id
        )
        try:
            await asyncio.shield(insert)
        except asyncio.CancelledError:
            await asyncio.wait([insert])
            raise

    async def end_query(self, query_id: str) -> None:
        """Makes sure no statement named `query_id` is still running: once this returns, whatever it
        did is done. A server goes on with a statement whose client gave up waiting (a read timeout
        after an insert's data was sent): that insert may still land. It is killed, or waited for if
        it is past stopping, on every node of a cluster (`ddl.kill_query`). The embedded engine runs
        statements only on this process's threads, which `insert_arrow` waits for: nothing to end.

        What no client can end is a request the server has received but not yet started (it is not
        in system.processes yet); that window is the time between a server reading a request and
        starting it, against a client timeout of seconds (docs/clickhouse-cluster.md)."""
        if self.embedded:
            return
        await self.command(ddl.kill_query(self.cluster), {"id": query_id})

    async def sync_replicas(self, table: str) -> None:
        """On a cluster, waits until every replica holds every part of `table` that any replica
        acknowledged: a read that follows sees all acknowledged inserts, whichever replica answers it.
        Slow (a replication queue drained per replica) and blocked while a replica is down: for reads
        that must be final, never for ordinary queries. One node (or ClickHouse Cloud): nothing to do."""
        if self.cluster is not None:
            await self.command(ddl.sync_replicas(table, self.cluster))

    async def engine_cache_bytes(self) -> dict[str, int]:
        """Bytes each of the engine's caches holds now (system.metrics), by cache."""
        rows = await self.query(
            "SELECT metric, value FROM system.metrics WHERE metric IN {names:Array(String)}",
            {"names": list(ENGINE_CACHES)},
        )
        return {ENGINE_CACHES[str(metric)]: int(value) for metric, value in rows}

    async def migrate(self) -> list[str]:
        """Applies migrations/clickhouse/*.sql in order, once each; safe to run on every start."""
        await self.command(ddl.ledger_ddl(self.cluster))
        applied = {row[0] for row in await self.query("SELECT version FROM tally_schema_migrations")}
        done: list[str] = []
        sharded: set[str] = set()
        for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
            # Rendered even when applied: later migrations find earlier tables by name.
            statements = ddl.render(split_statements(path.read_text()), self.cluster, sharded)
            if path.stem in applied:
                continue
            for statement in statements:
                await self.command(statement)
            await self.command(
                "INSERT INTO tally_schema_migrations (version) VALUES ({v:String})",
                parameters={"v": path.stem},
            )
            done.append(path.stem)
            log.info("clickhouse migration applied", version=path.stem)
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()


def split_statements(sql: str) -> Sequence[str]:
    """Splits a migration file on semicolons at line ends; comments are dropped."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    parts = (part.strip().rstrip(";").strip() for part in "\n".join(lines).split(";\n"))
    return [part for part in parts if part]
