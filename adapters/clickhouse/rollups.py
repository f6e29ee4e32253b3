"""The lifecycle of meters' rollups, and which of them queries may read.

A live meter has a per-hour rollup (`meter_sql.render_rollup_ddl`); a changed meter's rollup has a
new name (`rollup_table` digests what its rows depend on), so the old one is retired and later
dropped. `RollupLifecycle.step` advances every rollup one state per pass (the sink role's
`workers.rollups.RollupWorker` runs it, one process at a time):

    (none) -> created -> filling -> ready -> retired -> dropped

The handover between the view and the fill counts every event exactly once, using the store's
own `stored_at` (the server's clock when the row was written):
- created: the table, and the view counting only events stored from W = server now + 2 x grace.
  The view must exist by W - grace (checked after it is made, else both are dropped and made again
  later): an insert that began before the view existed writes its rows within the grace, so before
  W; every row stored from W went through the view;
- filling: once the server's clock passes W + grace, every event stored before W has landed (the
  same grace). The fill aggregates exactly those into a staging table, which is checked against
  the events (count per subject and bucket), then copied into the rollup in one statement;
- ready: queries may read it (`ReadyRollups`).
A pass that finds `filling` (a crash or error during the fill or the copy: the copy may or may not
have happened) drops the rollup and starts over, so an event can never count twice. The one
assumption is the grace: an insert's rows land within it of their `stored_at` (inserts are batches
of at most `sink.max_batch_events`; the default grace is 30 s).

Retried inserts: the sink retries a batch with the same insert_deduplication_token;
`deduplicate_blocks_in_dependent_materialized_views` and the rollup table's deduplication window
make the retry a no-op in the rollup as it is in `events`. With that setting ClickHouse hands a
block `events` dropped as a duplicate to the view anyway, to be deduplicated by the rollup table
(without it, a retry after an insert whose view part failed would never reach the rollup). The one
case this leaves open: a batch that landed before its meter's rollup had a view, unacknowledged, and
retried from W on (with a new `stored_at`): the rollup never saw the first insert's token and counts
the retry. The sink never re-sends a token itself (a failed insert is settled by the keys `events`
holds and the rest goes again as a new batch: workers/sink.py), so only the driver's own retry
within one call reuses it, seconds apart, while W is two graces after the view exists.

Not covered: an insert whose rows `events` committed but whose view part failed (ClickHouse writes
a table and its views without a transaction) raises, and the sink settles it as stored: the rollup
misses those rows. Finding that needs a periodic audit of ready rollups against the events (not
built; docs/performance.md).

State lives in ClickHouse (`meter_rollups`, migrations/clickhouse/0002), beside the rollups: a
restored or rebuilt event store brings states that match its tables, and the event store routes
queries without asking Postgres.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from adapters import metrics
from adapters.clickhouse import ddl
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.meter_sql import (
    EVENTS_TABLE,
    Rollup,
    render_rollup_check,
    render_rollup_ddl,
    render_rollup_fill,
    render_rollup_table,
    rollup_table,
)
from domain.metering.models import Meter

log = structlog.get_logger(__name__)

# The rollups a live meter gets. Per hour only: a per-minute rollup holds about as many rows as
# there are events when a subject sends less than one event a minute, and its view costs ingest
# most (docs/performance.md).
LIVE_ROLLUPS: tuple[Rollup, ...] = (Rollup.HOUR,)

CREATED, FILLING, READY, RETIRED, DROPPED = "created", "filling", "ready", "retired", "dropped"


@dataclass(frozen=True, slots=True)
class RollupState:
    name: str
    state: str
    stored_from_ms: int
    at_ms: int


def _staging(table: str) -> str:
    return f"{table}_fill"


class RollupLifecycle:
    def __init__(self, ch: ClickHouse, grace: timedelta, drop_after: timedelta) -> None:
        self.ch = ch
        self.grace_ms = int(grace.total_seconds() * 1000)
        self.drop_after_ms = int(drop_after.total_seconds() * 1000)
        self._version = 0

    def _settings(self) -> dict[str, Any]:
        # On a cluster, writes through the Distributed tables are on their shards when they return.
        return {} if self.ch.cluster is None else {"distributed_foreground_insert": 1}

    async def server_ms(self) -> int:
        return int((await self.ch.query("SELECT toUnixTimestamp64Milli(now64(3))"))[0][0])

    async def states(self) -> dict[str, RollupState]:
        rows = await self.ch.query(
            "SELECT name, argMax(state, version), argMax(stored_from_ms, version), "
            "toUnixTimestamp64Milli(argMax(at, version)) FROM meter_rollups GROUP BY name"
        )
        return {str(r[0]): RollupState(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows}

    async def _record(self, name: str, meter: Meter | None, state: str, stored_from_ms: int = 0) -> None:
        # Nanoseconds, and never the same twice from this process: the latest row is the state.
        self._version = max(self._version + 1, time.time_ns())
        await self.ch.command(
            "INSERT INTO meter_rollups (name, namespace, meter_id, state, stored_from_ms, version) "
            "VALUES ({name:String}, {namespace:String}, {meter_id:String}, {state:String}, {w:Int64}, {v:UInt64})",
            {
                "name": name,
                "namespace": meter.namespace if meter else "",
                "meter_id": meter.id if meter else "",
                "state": state,
                "w": stored_from_ms,
                "v": self._version,
            },
            settings=self._settings(),
        )

    async def _drop(self, table: str) -> None:
        cluster = self.ch.cluster
        names = [(f"{table}_view", "VIEW"), (table, "TABLE"), (_staging(table), "TABLE")]
        for name, kind in names:
            await self.ch.command(f"DROP {kind} IF EXISTS {name}{ddl.on_cluster(cluster)}")
            if cluster is not None and kind == "TABLE":
                await self.ch.command(f"DROP TABLE IF EXISTS {name}{ddl.LOCAL_SUFFIX}{ddl.on_cluster(cluster)}")

    async def _run_ddl(self, statements: Sequence[tuple[str, dict[str, Any]]], tables: set[str]) -> None:
        # On a cluster each table becomes shard-local plus Distributed, like `events`, and the view
        # reads and writes the shard-local tables: each shard rolls up its own events.
        sharded = {EVENTS_TABLE, *tables}
        for sql, parameters in statements:
            for rendered in ddl.render([sql], self.ch.cluster, sharded):
                await self.ch.command(rendered, parameters)

    async def step(self, meters: Sequence[Meter]) -> dict[str, str]:
        """Advances each rollup one state; returns the states it moved to, by rollup table."""
        wanted = {rollup_table(m, r): (m, r) for m in meters for r in LIVE_ROLLUPS}
        states = await self.states()
        moved: dict[str, str] = {}
        for name, (meter, rollup) in sorted(wanted.items()):
            current = states.get(name)
            try:
                if current is None or current.state in (RETIRED, DROPPED, FILLING):
                    if await self._create(meter, rollup):
                        moved[name] = CREATED
                elif current.state == CREATED and await self.server_ms() >= current.stored_from_ms + self.grace_ms:
                    moved[name] = await self._fill(meter, rollup, current.stored_from_ms)
            except Exception:
                log.exception("meter rollup step failed; trying again later", rollup=name, meter=meter.slug)
        now = await self.server_ms()
        for name, current in sorted(states.items()):
            if name in wanted or current.state == DROPPED:
                continue
            if current.state != RETIRED:
                await self._record(name, None, RETIRED)
                moved[name] = RETIRED
            elif now - current.at_ms >= self.drop_after_ms:
                # Long after it was retired: no process still routes a query to it.
                await self._drop(name)
                await self._record(name, None, DROPPED)
                moved[name] = DROPPED
        counts = Counter(s.state for s in (await self.states()).values())
        for state in (CREATED, FILLING, READY, RETIRED):
            metrics.METER_ROLLUPS.labels(state).set(counts[state])
        return moved

    async def _create(self, meter: Meter, rollup: Rollup) -> bool:
        table = rollup_table(meter, rollup)
        await self._drop(table)  # what an interrupted attempt left
        stored_from = await self.server_ms() + 2 * self.grace_ms
        await self._run_ddl(render_rollup_ddl(meter, rollup, stored_from_ms=stored_from), {table})
        made = await self.server_ms()
        if made > stored_from - self.grace_ms:
            # The view took longer than the grace to appear: an insert begun before it might
            # store rows from the handover on without passing through it. Try again later.
            log.warning("meter rollup view took longer than the grace; trying again later", rollup=table)
            await self._drop(table)
            return False
        await self._record(table, meter, CREATED, stored_from)
        log.info("meter rollup created", rollup=table, meter=meter.slug, namespace=meter.namespace)
        return True

    async def _fill(self, meter: Meter, rollup: Rollup, stored_from: int) -> str:
        table = rollup_table(meter, rollup)
        staging = _staging(table)
        await self._record(table, meter, FILLING, stored_from)
        await self.ch.command(f"DROP TABLE IF EXISTS {staging}{ddl.on_cluster(self.ch.cluster)}")
        await self._run_ddl([(render_rollup_table(meter, staging), {})], {staging})
        # No deduplication: two blocks of the fill may well hold the same states.
        settings = {"insert_deduplicate": 0, **self._settings()}
        sql, parameters = render_rollup_fill(meter, rollup, stored_before_ms=stored_from, into=staging)
        await self.ch.command(sql, parameters, settings=settings)
        sql, parameters = render_rollup_check(meter, rollup, staging, stored_from)
        mismatched = int((await self.ch.query(sql, parameters))[0][0])
        if mismatched:
            # Left `filling`: the next pass starts the rollup over.
            log.error("meter rollup fill does not match the events", rollup=table, buckets=mismatched)
            return FILLING
        # Both names are rollup_table's digests, no caller's text.
        await self.ch.command(f"INSERT INTO {table} SELECT * FROM {staging}", settings=settings)  # noqa: S608
        await self.ch.command(f"DROP TABLE IF EXISTS {staging}{ddl.on_cluster(self.ch.cluster)}")
        if self.ch.cluster is not None:
            await self.ch.command(f"DROP TABLE IF EXISTS {staging}{ddl.LOCAL_SUFFIX}{ddl.on_cluster(self.ch.cluster)}")
        await self._record(table, meter, READY, stored_from)
        log.info("meter rollup ready", rollup=table, meter=meter.slug, namespace=meter.namespace)
        return READY


class ReadyRollups:
    """Which rollup tables queries may read: the `ready` ones, re-read at most every `ttl` seconds.

    A rollup stays ready until its meter changes or goes; it is dropped only long after it was
    retired (RollupLifecycle's `drop_after`, much longer than `ttl`), so a process that has not yet
    re-read still reads a table that exists and that its view still keeps complete."""

    def __init__(self, ch: ClickHouse, ttl: float = 2.0) -> None:
        self.ch = ch
        self.ttl = ttl
        self._ready: frozenset[str] = frozenset()
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> frozenset[str]:
        rows = await self.ch.query(
            "SELECT name FROM meter_rollups GROUP BY name HAVING argMax(state, version) = {ready:String}",
            {"ready": READY},
        )
        self._ready = frozenset(str(r[0]) for r in rows)
        self._read_at = time.monotonic()
        return self._ready

    async def names(self) -> frozenset[str]:
        if time.monotonic() - self._read_at < self.ttl:
            return self._ready
        async with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                await self.refresh()
        return self._ready

    async def ready(self, meter: Meter) -> tuple[Rollup, ...]:
        names = await self.names()
        return tuple(r for r in Rollup if rollup_table(meter, r) in names)
