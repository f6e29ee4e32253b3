"""The lifecycle of meters' rollups, and which of them queries may read.

A live meter has a per-hour rollup (`meter_sql.render_rollup_ddl`); a changed meter's rollup has a
new name (`rollup_table` digests what its rows depend on), so the old one is retired and later
dropped. `RollupLifecycle.step` advances every rollup one state per pass (the sink role's
`workers.rollups.RollupWorker` runs it, one process at a time):

    (none) -> created -> filling -> ready -> retired -> dropped
                                       ready -> damaged -> created (the audit)

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

The audit (`RollupLifecycle.audit`, every `audit_interval` per ready rollup) covers what the
handover cannot: an insert whose rows `events` committed but whose view part failed (ClickHouse
writes a table and its views without a transaction; the sink settles it as stored, the rollup
misses it), a lost view, a block counted twice across a rollup's creation. It compares the count of
events per subject and bucket with the rollup's, over settled buckets; a pair unequal with the same
counts twice a grace apart (an insert in flight lands within the grace) makes the rollup `damaged`:
out of routing (every process re-reads the ready ones within 2 s), started over (`created`)
`drop_after` later.

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
from datetime import UTC, datetime, timedelta
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
    render_rollup_differences,
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
# A ready rollup the audit found unequal to the events: out of routing, started over
# `drop_after` later (when no process can still be reading it).
DAMAGED = "damaged"

_HOUR_MS = 3_600_000
# Each audit of a ready rollup compares this many hours up to the settled ones, every time ...
AUDIT_RECENT_MS = 24 * _HOUR_MS
# ... and one slice of this many older hours, the next older one each time, back to the oldest
# event or bucket and round again: each audit reads about two days of the meter's events.
AUDIT_SLICE_MS = 24 * _HOUR_MS

Pair = tuple[str, int]  # (subject, bucket start in epoch seconds)


@dataclass(frozen=True, slots=True)
class RollupState:
    name: str
    state: str
    stored_from_ms: int
    at_ms: int


def _staging(table: str) -> str:
    return f"{table}_fill"


@dataclass(slots=True)
class _Audit:
    """What the audit of one ready rollup remembers between passes (in memory: a process that
    takes over the lock starts afresh, which only delays a finding)."""

    last_ms: int = 0
    # The start of the older slice audited last; None: start again below the recent hours.
    slice_end_ms: int | None = None
    # Pairs seen unequal, with both counts, and when (server ms): a finding only if the counts are
    # still those, unequal, at least a grace later (an insert in flight lands within the grace).
    suspects: dict[Pair, tuple[int, int]] | None = None
    suspects_at_ms: int = 0


class RollupLifecycle:
    def __init__(
        self,
        ch: ClickHouse,
        grace: timedelta,
        drop_after: timedelta,
        audit_interval: timedelta | None = timedelta(seconds=60),
    ) -> None:
        self.ch = ch
        self.grace_ms = int(grace.total_seconds() * 1000)
        self.drop_after_ms = int(drop_after.total_seconds() * 1000)
        # None: ready rollups are not audited (a measurement only).
        self.audit_interval_ms = None if audit_interval is None else int(audit_interval.total_seconds() * 1000)
        self._version = 0
        self._audits: dict[str, _Audit] = {}

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
                # A damaged rollup starts over long after it left routing: no process still reads it.
                if (
                    current is None
                    or current.state in (RETIRED, DROPPED, FILLING)
                    or (current.state == DAMAGED and await self.server_ms() - current.at_ms >= self.drop_after_ms)
                ):
                    if await self._create(meter, rollup):
                        moved[name] = CREATED
                elif current.state == CREATED and await self.server_ms() >= current.stored_from_ms + self.grace_ms:
                    moved[name] = await self._fill(meter, rollup, current.stored_from_ms)
                elif current.state == READY and not await self.audit(meter, rollup):
                    await self._record(name, meter, DAMAGED, current.stored_from_ms)
                    moved[name] = DAMAGED
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
        for name in set(self._audits) - set(wanted):
            del self._audits[name]
        counts = Counter(s.state for s in (await self.states()).values())
        for state in (CREATED, FILLING, READY, DAMAGED, RETIRED):
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

    async def audit(self, meter: Meter, rollup: Rollup) -> bool:
        """Whether the ready rollup still equals the events, as far as this pass looked; False when
        it does not (the same pairs unequal with the same counts twice, a grace apart).

        Compares the count of events per subject and bucket (the fill's check, same statement) over
        settled buckets, those that ended a grace ago: every `audit_interval`, the last
        AUDIT_RECENT_MS of them and a slice of AUDIT_SLICE_MS below, the next older one each time
        (skipping hours with neither events nor rollup rows) until nothing is older, then round
        again. So each audit reads about two days of the meter's events."""
        table = rollup_table(meter, rollup)
        audit = self._audits.setdefault(table, _Audit())
        now = await self.server_ms()
        if audit.suspects:
            if now - audit.suspects_at_ms < self.grace_ms:
                return True
            buckets = sorted(bucket for _, bucket in audit.suspects)
            again = await self._differences(meter, rollup, buckets[0] * 1000, buckets[-1] * 1000 + rollup.step_ms)
            confirmed = {pair: counts for pair, counts in again.items() if audit.suspects.get(pair) == counts}
            if confirmed:
                self._damaged(meter, table, confirmed)
                del self._audits[table]
                return False
            audit.suspects = None
        if self.audit_interval_ms is None or now - audit.last_ms < self.audit_interval_ms:
            return True
        started = time.monotonic()
        audit.last_ms = now
        settled = (now - self.grace_ms) // rollup.step_ms * rollup.step_ms
        recent_from = settled - AUDIT_RECENT_MS
        found = await self._differences(meter, rollup, recent_from, settled)
        latest = None
        if audit.slice_end_ms is not None:
            latest = await self._latest_before(meter, table, audit.slice_end_ms)
        if latest is None:  # nothing older: round again from the recent hours
            latest = await self._latest_before(meter, table, recent_from)
        if latest is None:
            audit.slice_end_ms = None
        else:
            slice_end = (latest // rollup.step_ms + 1) * rollup.step_ms
            found |= await self._differences(meter, rollup, slice_end - AUDIT_SLICE_MS, slice_end)
            audit.slice_end_ms = slice_end - AUDIT_SLICE_MS
        metrics.METER_ROLLUP_AUDIT_SECONDS.observe(time.monotonic() - started)
        if found:
            log.warning(
                "meter rollup differs from the events; checking again after the grace",
                rollup=table,
                meter=meter.slug,
                namespace=meter.namespace,
                pairs=len(found),
            )
            audit.suspects = found
            audit.suspects_at_ms = now
        return True

    async def _differences(self, meter: Meter, rollup: Rollup, from_ms: int, to_ms: int) -> dict[Pair, tuple[int, int]]:
        sql, parameters = render_rollup_differences(
            meter, rollup, rollup_table(meter, rollup), buckets_from_ms=from_ms, buckets_to_ms=to_ms
        )
        return {(str(r[0]), int(r[1])): (int(r[2]), int(r[3])) for r in await self.ch.query(sql, parameters)}

    async def _latest_before(self, meter: Meter, table: str, before_ms: int) -> int | None:
        """The latest event time or bucket start of the meter before `before_ms` (either side may
        hold what the other lacks), in epoch ms; None when there is none."""
        # Identifiers are ours (EVENTS_TABLE, rollup_table's digest); values are bound.
        rows = await self.ch.query(
            f"SELECT (SELECT toUnixTimestamp64Milli(maxOrNull(time)) FROM {EVENTS_TABLE} "  # noqa: S608
            "WHERE namespace = {namespace:String} AND type = {event_type:String} "
            "AND time < fromUnixTimestamp64Milli({before:Int64}, 'UTC')), "
            f"(SELECT toUnixTimestamp(maxOrNull(bucket)) FROM {table} WHERE namespace = {{namespace:String}} "
            "AND bucket < toDateTime(intDiv({before:Int64}, 1000), 'UTC'))",
            {"namespace": meter.namespace, "event_type": meter.event_type, "before": before_ms},
        )
        event_ms, bucket_s = rows[0]
        found = [int(event_ms)] if event_ms is not None else []
        found += [int(bucket_s) * 1000] if bucket_s is not None else []
        return max(found, default=None)

    def _damaged(self, meter: Meter, table: str, pairs: dict[Pair, tuple[int, int]]) -> None:
        metrics.METER_ROLLUP_AUDIT_MISMATCHES.inc()
        shown = sorted(pairs.items(), key=lambda item: (item[0][1], item[0][0]))[:20]
        log.error(
            "meter rollup differs from the events: out of routing, starting it over",
            rollup=table,
            meter=meter.slug,
            namespace=meter.namespace,
            pairs=len(pairs),
            hours=sorted({datetime.fromtimestamp(b, UTC).isoformat() for (_, b) in pairs})[:20],
            differences=[
                {"subject": s, "bucket": datetime.fromtimestamp(b, UTC).isoformat(), "rollup": r, "events": e}
                for (s, b), (r, e) in shown
            ],
        )


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
