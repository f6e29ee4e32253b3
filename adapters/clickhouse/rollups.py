"""The lifecycle of meters' rollups, and which of them queries may read.

A live meter has a per-hour rollup (`meter_sql.render_rollup_ddl`); a changed meter's rollup has a
new name (`rollup_table` digests what its rows depend on), so the old one is retired and later
dropped. `RollupLifecycle.step` advances every rollup one state per pass (the sink role's
`workers.rollups.RollupWorker` runs it, one process at a time):

    (none) -> created -> ready -> retired -> dropped
                         ready -> damaged -> created (the audit)

No materialized view: a view runs on every insert into `events`, whatever its event type, so the
sink's flush cost grew with the number of meters (docs/performance.md). The worker fills each
rollup itself from `events`, by `stored_at` (the server's clock when a row is written):
- each rollup has a committed watermark W (`stored_from_ms` of its latest `ready` row in
  `meter_rollups`; 0 while `created`): its fills up to W hold exactly the meter's events stored
  before W. A query reads those fills (`filled_to_ms <= W`) and, from `events`, the events stored
  from W on, whatever their event time (`meter_sql._rollup_source`);
- a fill (first on `created`, then every `fill_interval` on `ready`) takes U = server now - grace
  (the one assumption, as before: an insert's rows land within the grace of their `stored_at`, so
  every event stored before U has landed), inserts the states of the events stored in [W, U) as
  rows tagged `filled_to_ms` = U, and then commits by recording `ready` with W = U. The tag is in
  the rollup's sorting key, so no merge folds rows of two fills together;
- a query between a fill's insert and its commit reads W: the new rows (tag U > W) are not read,
  and their events are read from `events`. A process whose W is a little stale (ReadyRollups
  re-reads every 2 s) is as exact: rows tagged <= its W never change, and the events stored from
  its W on are read from `events`;
- a fill that failed or crashed after inserting part or all of its rows leaves rows tagged above
  the committed W, which no query reads; the next fill deletes them (a synchronous mutation,
  only when there are any) before it inserts, so they can never be committed twice;
- retried inserts need nothing here: `events` drops a retried batch (its deduplication token),
  and the rollup's only source is `events`.
The first fill is checked against the events (count per subject and bucket); any difference and
the rollup starts over. Fills are every `fill_interval` (minutes): a (subject, hour) with events
in n fills has n rows until compacted, and the events stored since W (at most about
`fill_interval` + grace of them) are aggregated at query time.

Compaction (`RollupLifecycle.compact`, after the `compact_at_fills`-th fill since the last one, under
the same lock): in each partition (month of buckets) whose rows up to C come from
`compact_at_fills` fills or more, those rows are merged
into one row per (subject, bucket, group) tagged C, in a staging table swapped in with REPLACE
PARTITION. C is the latest watermark committed at least `drop_after` ago, so every reader holds a
W >= C (they re-read it every 2 s), and for any such W the rows tagged <= W hold the same states
before and after the swap, merged differently. Crash-safe at every statement: before the swap the
rollup is untouched, the swap is atomic, and a staging table left behind is dropped by the next
compaction (or with the rollup).

The audit (`RollupLifecycle.audit`, every `audit_interval` per ready rollup) covers what the fill
cannot: an event stored before U that landed after the fill read the events (the grace broken),
rows lost or doubled. It compares the count of events stored before W per subject and bucket with
the count in the fills up to W (what queries read from the rollup), over settled buckets; a pair
unequal with the same counts twice, a grace apart, at the same W, makes the rollup `damaged`: out
of routing (every process re-reads the ready ones within 2 s), started over (`created`)
`drop_after` later.

State lives in ClickHouse (`meter_rollups`, migrations/clickhouse/0002 and 0003), beside the
rollups: a restored or rebuilt event store brings states that match its tables, and the event store
routes queries without asking Postgres. Rollups made by views before (another digest) are retired
and dropped, views included, and made again by fills.
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
    render_rollup_compaction,
    render_rollup_ddl,
    render_rollup_differences,
    render_rollup_fill,
    render_rollup_partitions_to_compact,
    rollup_table,
)
from domain.metering.models import Meter

log = structlog.get_logger(__name__)

# The rollups a live meter gets. Per hour only: a per-minute rollup holds about as many rows as
# there are events when a subject sends less than one event a minute (docs/performance.md).
LIVE_ROLLUPS: tuple[Rollup, ...] = (Rollup.HOUR,)

CREATED, READY, RETIRED, DROPPED = "created", "ready", "retired", "dropped"
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

# A partition of a ready rollup is compacted once its rows that may be compacted come from this
# many fills (an hour's at the default 300 s fill interval): each compaction rewrites the
# partition, so not after every fill.
COMPACT_AT_FILLS = 12


@dataclass(frozen=True, slots=True)
class RollupState:
    name: str
    state: str
    # The committed watermark W: the rollup's fills up to W hold the events stored before W.
    stored_from_ms: int
    at_ms: int


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
    # The watermark they were counted at: compared again at the same one (a fill since adds to both
    # counts of a pair, equal or not).
    suspects_w: int = 0


class RollupLifecycle:
    def __init__(
        self,
        ch: ClickHouse,
        grace: timedelta,
        drop_after: timedelta,
        audit_interval: timedelta | None = timedelta(seconds=60),
        fill_interval: timedelta = timedelta(minutes=5),
        compact_at_fills: int = COMPACT_AT_FILLS,
    ) -> None:
        self.ch = ch
        self.grace_ms = int(grace.total_seconds() * 1000)
        self.fill_interval_ms = int(fill_interval.total_seconds() * 1000)
        self.drop_after_ms = int(drop_after.total_seconds() * 1000)
        self.compact_at_fills = compact_at_fills
        # None: ready rollups are not audited (a measurement only).
        self.audit_interval_ms = None if audit_interval is None else int(audit_interval.total_seconds() * 1000)
        self._version = 0
        self._audits: dict[str, _Audit] = {}
        # Fills of each ready rollup since its last compaction (or since this process took over):
        # a compaction runs every `compact_at_fills` fills (in a busy partition that many have then
        # come under C), so the fills between cost no compaction statement, nor does a quiet
        # rollup's. In memory: a process taking over counts from 0, which only delays a compaction.
        self._fills_since_compaction: Counter[str] = Counter()

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
        # The view and staging table of a rollup made before fills replaced views.
        # The compaction's staging table, should one have been left.
        names = [(f"{table}_view", "VIEW"), (table, "TABLE"), (f"{table}_fill", "TABLE"), (f"{table}_compact", "TABLE")]
        for name, kind in names:
            await self.ch.command(f"DROP {kind} IF EXISTS {name}{ddl.on_cluster(cluster)}")
            if cluster is not None and kind == "TABLE":
                await self.ch.command(f"DROP TABLE IF EXISTS {name}{ddl.LOCAL_SUFFIX}{ddl.on_cluster(cluster)}")

    async def _run_ddl(self, statements: Sequence[tuple[str, dict[str, Any]]], tables: set[str]) -> None:
        # On a cluster each table becomes shard-local plus Distributed, like `events`; fills insert
        # through the Distributed table, sharded by namespace and subject.
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
                # A state not known here (a `filling` of the view-made rollups) starts over too.
                if (
                    current is None
                    or current.state not in (CREATED, READY, DAMAGED)
                    or (current.state == DAMAGED and await self.server_ms() - current.at_ms >= self.drop_after_ms)
                ):
                    await self._create(meter, rollup)
                    moved[name] = CREATED
                elif current.state == CREATED:
                    if await self._fill(meter, rollup, current.stored_from_ms, first=True) is not None:
                        self._fills_since_compaction[name] = 1
                        moved[name] = READY
                elif current.state == READY:
                    watermark, filled = current.stored_from_ms, None
                    if await self.server_ms() - self.grace_ms - watermark >= self.fill_interval_ms:
                        filled = await self._fill(meter, rollup, watermark)
                        watermark = filled or watermark
                    if not await self.audit(meter, rollup, watermark):
                        await self._record(name, meter, DAMAGED, watermark)
                        moved[name] = DAMAGED
                    elif filled is not None:
                        # After a fill, not every pass: only a fill adds rows. Not while the audit
                        # suspects a difference: it compares again at the watermark it counted at.
                        self._fills_since_compaction[name] += 1
                        due = self._fills_since_compaction[name] >= self.compact_at_fills
                        if due and not self._audits[name].suspects:
                            del self._fills_since_compaction[name]
                            await self.compact(meter, rollup)
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
        for name in set(self._fills_since_compaction) - set(wanted):
            del self._fills_since_compaction[name]
        counts = Counter(s.state for s in (await self.states()).values())
        for state in (CREATED, READY, DAMAGED, RETIRED):
            metrics.METER_ROLLUPS.labels(state).set(counts[state])
        return moved

    async def _create(self, meter: Meter, rollup: Rollup) -> None:
        table = rollup_table(meter, rollup)
        await self._drop(table)  # what an earlier attempt, or a view-made rollup of old, left
        await self._run_ddl(render_rollup_ddl(meter, rollup), {table})
        await self._record(table, meter, CREATED, 0)
        log.info("meter rollup created", rollup=table, meter=meter.slug, namespace=meter.namespace)

    async def _fill(self, meter: Meter, rollup: Rollup, watermark: int, first: bool = False) -> int | None:
        """Adds the events stored from the committed `watermark` W to U = now - grace to the rollup
        as the fill U, and commits W = U; returns U, or None when it did not commit. The first fill
        (W = 0) is checked against the events first."""
        table = rollup_table(meter, rollup)
        upper = await self.server_ms() - self.grace_ms
        if upper <= watermark:
            return None
        settings = self._settings()
        # Rows of a fill that never committed (it failed or crashed after inserting some or all):
        # no query reads them (tag > W); gone before this fill, they can never count twice.
        # Identifiers are ours (rollup_table's digest); the watermark is bound.
        uncommitted = "filled_to_ms > {w:Int64}"
        left = await self.ch.query(f"SELECT count() FROM {table} WHERE {uncommitted}", {"w": watermark})  # noqa: S608
        if int(left[0][0]):
            log.warning("meter rollup: removing the rows of a fill that did not commit", rollup=table)
            await self.ch.command(
                f"ALTER TABLE {ddl.local_table(table, self.ch.cluster)}{ddl.on_cluster(self.ch.cluster)} "
                f"DELETE WHERE {uncommitted} SETTINGS mutations_sync = 2",
                {"w": watermark},
            )
        # No deduplication: two blocks of a fill, or of two fills, may well hold the same states.
        sql, parameters = render_rollup_fill(meter, rollup, stored_from_ms=watermark or None, stored_before_ms=upper)
        await self.ch.command(sql, parameters, settings={"insert_deduplicate": 0, **settings})
        if first:
            sql, parameters = render_rollup_check(meter, rollup, table, upper)
            mismatched = int((await self.ch.query(sql, parameters))[0][0])
            if mismatched:
                # Left `created` at W = 0: the next pass removes these rows and fills again.
                log.error("meter rollup fill does not match the events", rollup=table, buckets=mismatched)
                return None
        await self._record(table, meter, READY, upper)
        if first:
            log.info("meter rollup ready", rollup=table, meter=meter.slug, namespace=meter.namespace)
        return upper

    async def compactable_to(self, name: str) -> int:
        """C: the latest watermark of the rollup committed at least `drop_after` ago (0 if none), the
        highest tag compaction may fold. Every process re-reads its watermark every 2 s, and a query
        reads the rollup within moments of taking it, so none still reads at a watermark below C."""
        rows = await self.ch.query(
            "SELECT max(stored_from_ms) FROM meter_rollups WHERE name = {name:String} AND state = {ready:String} "
            "AND toUnixTimestamp64Milli(at) <= toUnixTimestamp64Milli(now64(3)) - {lag:Int64} "
            # This incarnation's commits only: a rollup made again starts after its last other state.
            "AND version > (SELECT max(version) FROM meter_rollups WHERE name = {name:String} "
            "AND state != {ready:String})",
            {"name": name, "ready": READY, "lag": self.drop_after_ms},
        )
        return int(rows[0][0] or 0) if rows else 0

    async def compact(self, meter: Meter, rollup: Rollup) -> int:
        """Folds, in each partition with rows from `compact_at_fills` fills or more up to C
        (`compactable_to`), those rows into one row per (subject, bucket, group) tagged C; returns
        how many partitions it swapped.

        Exact for every reader at any committed watermark W >= C, at every instant: before the swap
        it reads the fills tagged <= W; after it, the same states merged (tag C <= W) and the rows
        tagged (C, W] untouched, merged by the query the same way. The swap (REPLACE PARTITION) is
        atomic, and a query reads the parts it found when it started. A crash or error before the
        swap leaves the rollup as it was and a staging table, dropped by the next compaction; after
        it, only the staging table to drop. The copy is tallied against the partition (events per
        side of C, rows above C) before the swap: a difference leaves the partition as it was. One
        worker at a time (the lock), so no fill writes the partition between the copy and the swap."""
        table = rollup_table(meter, rollup)
        compact_to = await self.compactable_to(table)
        if not compact_to:
            return 0
        sql, parameters = render_rollup_partitions_to_compact(meter, rollup, compact_to, self.compact_at_fills)
        swapped = 0
        for (partition,) in await self.ch.query(sql, parameters):
            steps = render_rollup_compaction(meter, rollup, int(partition), compact_to, self.ch.cluster)
            for statement in steps.prepare:
                await self.ch.command(statement)
            # No deduplication: the copy's blocks may hold the same states as another's.
            await self.ch.command(*steps.copy, settings={"insert_deduplicate": 0, **self._settings()})
            for statement in steps.settle:
                await self.ch.command(statement)
            tally = {str(r[0]): tuple(int(v) for v in r[1:]) for r in await self.ch.query(*steps.tally)}
            before, after = tally.get("rollup", (0, 0, 0, 0)), tally.get("staging", (0, 0, 0, 0))
            if before[1:] != after[1:]:
                log.error(
                    "meter rollup compaction: the copy does not tally with the partition; left as it was",
                    rollup=table,
                    partition=partition,
                    rollup_figures=before,
                    copy_figures=after,
                )
            else:
                await self.ch.command(steps.swap)
                swapped += 1
                log.info(
                    "meter rollup partition compacted", rollup=table, partition=partition, rows=before[0], to=after[0]
                )
            for statement in steps.clean:
                await self.ch.command(statement)
        return swapped

    async def audit(self, meter: Meter, rollup: Rollup, watermark: int) -> bool:
        """Whether the ready rollup, committed up to `watermark` W, still equals the events, as far
        as this pass looked; False when it does not (the same pairs unequal with the same counts
        twice, a grace apart, at the same W).

        Compares, per subject and bucket, the count of events stored before W with the count in the
        fills up to W (the first fill's check, same statement: what queries read from the rollup) over
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
            again = await self._differences(
                meter, rollup, audit.suspects_w, buckets[0] * 1000, buckets[-1] * 1000 + rollup.step_ms
            )
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
        found = await self._differences(meter, rollup, watermark, recent_from, settled)
        latest = None
        if audit.slice_end_ms is not None:
            latest = await self._latest_before(meter, table, audit.slice_end_ms)
        if latest is None:  # nothing older: round again from the recent hours
            latest = await self._latest_before(meter, table, recent_from)
        if latest is None:
            audit.slice_end_ms = None
        else:
            slice_end = (latest // rollup.step_ms + 1) * rollup.step_ms
            found |= await self._differences(meter, rollup, watermark, slice_end - AUDIT_SLICE_MS, slice_end)
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
            audit.suspects_w = watermark
        return True

    async def _differences(
        self, meter: Meter, rollup: Rollup, watermark: int, from_ms: int, to_ms: int
    ) -> dict[Pair, tuple[int, int]]:
        sql, parameters = render_rollup_differences(
            meter,
            rollup,
            rollup_table(meter, rollup),
            stored_before_ms=watermark,
            buckets_from_ms=from_ms,
            buckets_to_ms=to_ms,
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
    """Which rollup tables queries may read, the `ready` ones, and each one's committed watermark
    W; re-read at most every `ttl` seconds.

    A rollup stays ready until its meter changes or goes; it is dropped only long after it was
    retired (RollupLifecycle's `drop_after`, much longer than `ttl`), so a process that has not yet
    re-read still reads a table that exists. A W stale by up to `ttl` is exact too: the events
    stored from it on are read from `events`, and the fills up to it change only by compaction,
    which merges fills up to a watermark committed `drop_after` ago (no reader holds an older W: a
    failed re-read fails the query rather than keep the old W)."""

    def __init__(self, ch: ClickHouse, ttl: float = 2.0) -> None:
        self.ch = ch
        self.ttl = ttl
        self._ready: dict[str, int] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> dict[str, int]:
        rows = await self.ch.query(
            "SELECT name, argMax(stored_from_ms, version) FROM meter_rollups GROUP BY name "
            "HAVING argMax(state, version) = {ready:String}",
            {"ready": READY},
        )
        self._ready = {str(r[0]): int(r[1]) for r in rows}
        self._read_at = time.monotonic()
        return self._ready

    async def names(self) -> dict[str, int]:
        if time.monotonic() - self._read_at < self.ttl:
            return self._ready
        async with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                await self.refresh()
        return self._ready

    async def ready(self, meter: Meter) -> dict[Rollup, int]:
        """The meter's ready rollups, each with its committed watermark W."""
        names = await self.names()
        return {r: names[rollup_table(meter, r)] for r in Rollup if rollup_table(meter, r) in names}
