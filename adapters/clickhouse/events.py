"""The event store over ClickHouse: batch inserts (Arrow), key look-ups for recovery, event listing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import pyarrow as pa

from adapters.clickhouse import meter_wire
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.ddl import local_table, on_cluster
from adapters.clickhouse.meter_sql import (
    Rollup,
    SQLAndParameters,
    _Binder,
    _filter_sql,
    render_group_by_values_query,
    render_meter_query,
    render_subjects_query,
    rollup_for,
    to_query_rows,
)
from adapters.clickhouse.rollups import ReadyRollups
from adapters.clickhouse.usage_sql import WindowsRequest
from adapters.clickhouse.windows_batches import WindowsBatches
from domain.metering.event_list import EventListQuery, TimeFilter
from domain.metering.events import Event, EventKey, StoredEvent, epoch_ms
from domain.metering.models import Meter
from domain.metering.ports import ExtractedValues
from domain.metering.query import GroupByValuesQuery, MeterQuery, QueryRow, SubjectsQuery

EVENT_COLUMNS = (
    "namespace",
    "id",
    "type",
    "source",
    "subject",
    "time",
    "data",
    "num_values",
    "str_values",
    "ingested_at",
)

LIST_COLUMNS = "namespace, id, type, source, subject, time, data, ingested_at, stored_at"

_MS = pa.timestamp("ms", tz="UTC")
_SCHEMA = pa.schema(
    [
        ("namespace", pa.string()),
        ("id", pa.string()),
        ("type", pa.string()),
        ("source", pa.string()),
        ("subject", pa.string()),
        ("time", pa.timestamp("ms", tz="UTC")),
        ("data", pa.string()),
        ("num_values", pa.map_(pa.string(), pa.float64())),
        ("str_values", pa.map_(pa.string(), pa.string())),
        ("ingested_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def _map_array(maps: Sequence[dict[str, Any]], item_type: pa.DataType) -> pa.Array:
    if not any(maps):  # no meter extracts values from these events (common): all maps empty
        return pa.MapArray.from_arrays(
            pa.array([0] * (len(maps) + 1), pa.int32()), pa.array([], pa.string()), pa.array([], item_type)
        )
    offsets = [0]
    keys: list[str] = []
    items: list[Any] = []
    for mapping in maps:
        keys.extend(mapping)
        items.extend(mapping.values())
        offsets.append(len(keys))
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), pa.array(items, item_type)
    )


def load_arrow_conversions() -> None:
    """Loads what pyarrow loads on its first conversion of a Python sequence, so that it happens at
    start and not at the first flush after it.

    That first conversion imports pandas (when it is installed: chDB installs it), which took
    0.3-0.8 s of the sink process's event loop in a bench run (docs/performance.md, "The first flush
    after a start"): on the embedded default every request in flight waited for it, and the sink on
    Kafka fell that far behind its topic once after every start."""
    pa.array([0], pa.int64())


_ROW = attrgetter("namespace", "id", "type", "source", "subject", "time_ms", "data", "ingested_ms")


def to_arrow(events: Sequence[Event], values: Sequence[ExtractedValues]) -> pa.Table:
    """Column-wise, from plain lists: one C-level attribute read per event (attrgetter), transposed
    by zip, then Arrow converts each column."""
    namespace, ids, types, sources, subjects, times, data, ingested = zip(*map(_ROW, events), strict=True)
    numeric, strings = zip(*values, strict=True)
    return pa.Table.from_arrays(
        [
            pa.array(namespace, pa.string()),
            pa.array(ids, pa.string()),
            pa.array(types, pa.string()),
            pa.array(sources, pa.string()),
            pa.array(subjects, pa.string()),
            pa.array(times, _MS),
            pa.array(data, pa.string()),
            _map_array(numeric, pa.float64()),
            _map_array(strings, pa.string()),
            pa.array(ingested, _MS),
        ],
        schema=_SCHEMA,
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ClickHouseEventStore:
    def __init__(self, clickhouse: ClickHouse, rollups: ReadyRollups | None = None) -> None:
        self.ch = clickhouse
        # Meter queries read a meter's rollup once it is ready (adapters/clickhouse/rollups.py) and
        # answers the query exactly; without `rollups`, always the events.
        self.rollups = rollups
        self._windows = WindowsBatches(clickhouse)

    async def _rollup(self, meter: Meter, query: MeterQuery) -> tuple[Rollup, int] | None:
        """The ready rollup to read for `query` (meter_sql.rollup_for) and its committed watermark,
        or None: read the events."""
        if self.rollups is None:
            return None
        ready = await self.rollups.ready(meter)
        rollup = rollup_for(query, list(ready))
        return None if rollup is None else (rollup, ready[rollup])

    async def insert(self, events: Sequence[Event], values: Sequence[ExtractedValues], token: str) -> None:
        """One insert per batch; `token` makes a retried insert of the same batch a no-op, and names
        the statement for `existing_keys`."""
        await self.ch.insert_arrow(
            "events",
            to_arrow(events, values),
            # The meters' rollups are filled from `events` (adapters/clickhouse/rollups.py), so a
            # batch dropped here as a retry is dropped for them too.
            settings={"insert_deduplication_token": token, "insert_deduplicate": 1},
            query_id=token,
        )

    async def _meter_statement(self, meter: Meter, query: MeterQuery) -> SQLAndParameters:
        """The statement answering `query`: both ways of reading its rows run this one (from the
        meter's rollup when a ready one answers it exactly)."""
        routed = await self._rollup(meter, query)
        if routed is None:
            return render_meter_query(meter, query, maps_complete=meter.values_backfilled)
        rollup, watermark = routed
        return render_meter_query(
            meter, query, maps_complete=meter.values_backfilled, rollup=rollup, filled_to_ms=watermark
        )

    async def query_meter(self, meter: Meter, query: MeterQuery) -> list[QueryRow]:
        return to_query_rows(query, await self.ch.query(*await self._meter_statement(meter, query)))

    async def query_meter_wire(self, meter: Meter, query: MeterQuery) -> bytes:
        sql, parameters = meter_wire.wrap_for_wire(query, await self._meter_statement(meter, query))
        return await self.ch.query_protobuf(sql, parameters, meter_wire.ROWS_SCHEMA, meter_wire.ROWS_MESSAGE)

    async def query_meter_windows(
        self,
        meter: Meter,
        query: MeterQuery,
        windows: Sequence[tuple[datetime, datetime]],
        tail_from: datetime | None = None,
    ) -> tuple[list[float | None], datetime | None]:
        """The meter value of each window (one scan), and the first event time at or after `tail_from`.

        Concurrent calls for one meter and filters share a statement (adapters/clickhouse/windows_batches.py).
        """
        # From the events, also when the meter's hour rollup is ready: reading a window's whole hours
        # from it (render_windows_query's hour_rollup) measured 1-3 x slower in chDB at every volume
        # tried, up to 200k events per customer in two days (docs/performance.md).
        values, count, first_ms = await self._windows.query(meter, WindowsRequest(query, tuple(windows), tail_from))
        first = datetime.fromtimestamp(first_ms / 1000, tz=UTC) if tail_from is not None and count else None
        return values, first

    async def list_subjects(self, namespace: str, meter: Meter, query: SubjectsQuery) -> list[str]:
        sql, parameters = render_subjects_query(namespace, meter, query.from_, query.to, query.search)
        return [str(row[0]) for row in await self.ch.query(sql, parameters)]

    async def list_group_by_values(self, namespace: str, meter: Meter, query: GroupByValuesQuery) -> list[str]:
        sql, parameters = render_group_by_values_query(
            namespace, meter, query.group_by_key, query.from_, query.to, query.search
        )
        return [str(row[0]) for row in await self.ch.query(sql, parameters)]

    async def backfill_values(self, meter: Meter) -> bool:
        """Extracts the meter's paths into the value maps of stored events that lack them.

        Same functions as the query fallback (JSON_VALUE, toFloat64OrNull), so a backfilled value
        equals what the query would have computed from the raw JSON. Returns whether, afterwards,
        every stored event of the meter's type holds every path (checked, not assumed: a sink with a
        stale meter catalog may have inserted meanwhile; the worker then tries again later).
        """
        numeric, strings = meter.extracted_paths
        if not numeric and not strings:
            return True
        params: dict[str, Any] = {"namespace": meter.namespace, "event_type": meter.event_type}
        num_keys = [f"{{n{i}:String}}" for i in range(len(numeric))]
        str_keys = [f"{{s{i}:String}}" for i in range(len(strings))]
        params.update({f"n{i}": p.canonical for i, p in enumerate(numeric)})
        params.update({f"s{i}": p.canonical for i, p in enumerate(strings)})
        # Placeholders only; the paths are bound parameters.
        assignments = []
        if numeric:
            pairs = ", ".join(f"{k}, ifNull(toFloat64OrNull(JSON_VALUE(data, {k})), nan)" for k in num_keys)
            assignments.append(f"num_values = mapUpdate(num_values, map({pairs}))")
        if strings:
            pairs = ", ".join(f"{k}, JSON_VALUE(data, {k})" for k in str_keys)
            assignments.append(f"str_values = mapUpdate(str_values, map({pairs}))")
        complete = " AND ".join(
            [f"mapContains(num_values, {k})" for k in num_keys] + [f"mapContains(str_values, {k})" for k in str_keys]
        )
        scope = "namespace = {namespace:String} AND type = {event_type:String}"
        missing = f"SELECT count() FROM events WHERE {scope} AND NOT ({complete})"  # noqa: S608
        if (await self.ch.query(missing, params))[0][0] == 0:
            return True
        await self.ch.command(
            f"ALTER TABLE {local_table('events', self.ch.cluster)}{on_cluster(self.ch.cluster)} "
            f"UPDATE {', '.join(assignments)} WHERE {scope} AND NOT ({complete}) "
            "SETTINGS mutations_sync = 2",
            params,
        )
        return bool((await self.ch.query(missing, params))[0][0] == 0)

    async def backfill_progress(self, meter: Meter) -> tuple[int, int]:
        numeric, strings = meter.extracted_paths
        params: dict[str, Any] = {"namespace": meter.namespace, "event_type": meter.event_type}
        checks = [f"mapContains(num_values, {{n{i}:String}})" for i in range(len(numeric))]
        checks += [f"mapContains(str_values, {{s{i}:String}})" for i in range(len(strings))]
        params.update({f"n{i}": p.canonical for i, p in enumerate(numeric)})
        params.update({f"s{i}": p.canonical for i, p in enumerate(strings)})
        complete = " AND ".join(checks) or "1"
        # Placeholders only; the paths are bound parameters.
        sql = (
            f"SELECT countIf({complete}), count() FROM events "  # noqa: S608
            "WHERE namespace = {namespace:String} AND type = {event_type:String}"
        )
        done, total = (await self.ch.query(sql, params))[0]
        return int(done), int(total)

    async def count_events_by_subject(self, namespace: str, since: datetime) -> list[tuple[str, int]]:
        rows = await self.ch.query(
            "SELECT subject, count() FROM events WHERE namespace = {namespace:String} "
            "AND time >= fromUnixTimestamp64Milli({since:Int64}, 'UTC') GROUP BY subject ORDER BY subject",
            {"namespace": namespace, "since": epoch_ms(since)},
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    async def existing_keys(self, keys: Sequence[EventKey], insert_token: str) -> set[EventKey]:
        """Which (namespace, source, id) triples are stored, once the insert named `insert_token` can
        store nothing more: used only to settle an interrupted flush (ClickHouse.end_query)."""
        await self.ch.end_query(insert_token)
        # On a cluster the insert was acknowledged by one replica per shard; a lagging replica
        # answering "not stored" would release the keys of stored events.
        await self.ch.sync_replicas("events")
        found: set[EventKey] = set()
        for start in range(0, len(keys), 5_000):
            chunk = [tuple(k) for k in keys[start : start + 5_000]]
            rows = await self.ch.query(
                "SELECT DISTINCT namespace, source, id FROM events "
                "WHERE (namespace, source, id) IN {keys:Array(Tuple(String, String, String))}",
                {"keys": chunk},
            )
            found.update((str(r[0]), str(r[1]), str(r[2])) for r in rows)
        return found

    async def list_events(self, namespace: str, query: EventListQuery) -> list[StoredEvent]:
        sql, params = render_list_events(namespace, query)
        rows = await self.ch.query(sql, params)
        return [
            StoredEvent(
                event=Event(r[0], r[1], r[2], r[3], r[4], epoch_ms(_utc(r[5])), r[6], epoch_ms(_utc(r[7]))),
                stored_at=_utc(r[8]),
            )
            for r in rows
        ]


def _ms(binder: _Binder, moment: datetime) -> str:
    # Bound as epoch milliseconds: the driver renders a DateTime64 parameter as text ClickHouse
    # cannot parse for years before 1000 (a 500 on `?ingestedAtTo=0466-...`).
    return f"fromUnixTimestamp64Milli({binder.bind(epoch_ms(moment), 'Int64')}, 'UTC')"


def _time_filter_sql(binder: _Binder, column: str, f: TimeFilter) -> str:
    """OpenMeter's FilterTime over one column; an empty filter matches everything."""
    for bound, operator in ((f.gt, ">"), (f.gte, ">="), (f.lt, "<"), (f.lte, "<=")):
        if bound is not None:
            return f"{column} {operator} {_ms(binder, bound)}"
    if f.and_:
        return "(" + " AND ".join(_time_filter_sql(binder, column, child) for child in f.and_) + ")"
    if f.or_:
        return "(" + " OR ".join(_time_filter_sql(binder, column, child) for child in f.or_) + ")"
    return "1"


def render_list_events(namespace: str, query: EventListQuery) -> tuple[str, dict[str, Any]]:
    """The listing as SQL; conditions are fixed text from here, every caller value a bound parameter."""
    binder = _Binder()
    where = [f"namespace = {binder.bind(namespace, 'String')}"]
    if query.from_ is not None:
        where.append(f"time >= {_ms(binder, query.from_)}")
    if query.to is not None:
        where.append(f"time <= {_ms(binder, query.to)}")  # inclusive, as OpenMeter's `to`
    if query.ingested_at_from is not None:
        where.append(f"ingested_at >= {_ms(binder, query.ingested_at_from)}")
    if query.ingested_at_to is not None:
        where.append(f"ingested_at <= {_ms(binder, query.ingested_at_to)}")
    if query.id_contains:
        where.append(f"position(id, {binder.bind(query.id_contains, 'String')}) > 0")
    if query.subject_contains:
        where.append(f"position(subject, {binder.bind(query.subject_contains, 'String')}) > 0")
    for column, string_filter in (
        ("id", query.id),
        ("source", query.source),
        ("subject", query.subject),
        ("type", query.type),
    ):
        if string_filter is not None:
            where.append(_filter_sql(binder, column, string_filter, unicode_ilike=True))
    if query.subjects is not None:
        where.append(f"subject IN {binder.bind(list(query.subjects), 'Array(String)')}")
    if query.time is not None:
        where.append(_time_filter_sql(binder, "time", query.time))
    if query.ingested_at is not None:
        where.append(_time_filter_sql(binder, "ingested_at", query.ingested_at))
    if query.before is not None:
        where.append(f"(time, id) < ({_ms(binder, query.before[0])}, {binder.bind(query.before[1], 'String')})")
    limit = binder.bind(query.limit, "UInt32")
    sql = f"SELECT {LIST_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY time DESC, id DESC LIMIT {limit}"  # noqa: S608
    return sql, binder.parameters
