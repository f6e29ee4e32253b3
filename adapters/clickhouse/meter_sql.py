"""ClickHouse SQL for meter queries, the meter subjects list and the group-by values list.

Every function here returns `(sql, parameters)` for clickhouse-connect's server-side binding
(`{name:Type}` placeholders). Nothing a caller supplies is ever part of the SQL text: namespaces,
event types, JSONPaths, time zones, subjects, customer mappings and filter operands are all bound
parameters, and the only identifiers (column names, aliases, parameter names) come from this
module's own constants and counters.

Semantics follow OpenMeter's ClickHouse connector (reference/openmeter-semantics.md 3.2-3.3):

* a meter value is `toFloat64OrNull(JSON_VALUE(data, path))` with NaN and infinities dropped, or
  the same value extracted at ingest into `num_values` (`str_values` for group-by keys and
  UNIQUE_COUNT); the map wins when it holds the path, so old and new events count alike;
* `from` is inclusive and `to` exclusive, both at whole seconds, because OpenMeter stores event
  time as a DateTime and compares against Unix seconds;
* windows tumble in the requested time zone: MINUTE/HOUR/DAY by tumbleStart, DAY ends one calendar
  day later (23 or 25 hours across DST), MONTH boundaries at local midnight of the 1st;
* without a window, one row per group from the minute-floor of the first event to one minute past
  the minute-floor of the last; `to_query_rows` then substitutes the request's `from`/`to`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from domain.metering.jsonpath import JsonPath, parse_jsonpath
from domain.metering.models import Aggregation, Meter, WindowSize
from domain.metering.query import (
    GROUP_BY_VALUES_DEFAULT_SPAN,
    FilterString,
    MeterQuery,
    QueryRow,
)

EVENTS_TABLE: Final = "events"
# Event time at whole seconds, the precision OpenMeter stores and windows on.
_TIME_SECONDS: Final = "toDateTime(time, 'UTC')"

_WINDOW_INTERVALS: Final = {
    WindowSize.MINUTE: "toIntervalMinute(1)",
    WindowSize.HOUR: "toIntervalHour(1)",
    WindowSize.DAY: "toIntervalDay(1)",
    WindowSize.MONTH: "toIntervalMonth(1)",
}

SQLAndParameters = tuple[str, dict[str, Any]]


class _Binder:
    """Hands out placeholder names and remembers the values bound to them."""

    def __init__(self) -> None:
        self.parameters: dict[str, Any] = {}
        self._paths: dict[str, str] = {}

    def bind(self, value: Any, type_: str, prefix: str = "p") -> str:
        name = f"{prefix}{len(self.parameters)}"
        self.parameters[name] = value
        return f"{{{name}:{type_}}}"

    def fixed(self, name: str, value: Any, type_: str) -> str:
        self.parameters[name] = value
        return f"{{{name}:{type_}}}"

    def path(self, path: JsonPath) -> str:
        # One parameter per distinct path keeps the statement short when a path repeats.
        placeholder = self._paths.get(path.canonical)
        if placeholder is None:
            placeholder = self.bind(path.canonical, "String", prefix="path")
            self._paths[path.canonical] = placeholder
        return placeholder


def _number_sql(binder: _Binder, path: JsonPath, maps_complete: bool) -> str:
    p = binder.path(path)
    if maps_complete:
        return f"ifNotFinite(num_values[{p}], NULL)"
    return (
        f"ifNotFinite(if(mapContains(num_values, {p}), num_values[{p}], toFloat64OrNull(JSON_VALUE(data, {p}))), NULL)"
    )


def _string_sql(binder: _Binder, path: JsonPath, maps_complete: bool) -> str:
    p = binder.path(path)
    if maps_complete:
        return f"str_values[{p}]"
    return f"if(mapContains(str_values, {p}), str_values[{p}], JSON_VALUE(data, {p}))"


_NUMERIC_AGGREGATES = {
    Aggregation.SUM: "sum",
    Aggregation.AVG: "avg",
    Aggregation.MIN: "min",
    Aggregation.MAX: "max",
}


def _value_sql(binder: _Binder, meter: Meter, maps_complete: bool, condition: str | None = None) -> str:
    """The meter's aggregate; with `condition`, its `-If` form over the rows that meet it (one scan
    computing several windows gives each exactly what a query for that window alone would)."""
    aggregation = meter.aggregation

    def call(function: str, *arguments: str) -> str:
        if condition is None:
            return f"{function}({', '.join(arguments)})"
        return f"{function}If({', '.join((*arguments, condition))})"

    if aggregation is Aggregation.COUNT:
        return "count(*)" if condition is None else f"countIf({condition})"
    if meter.value_property is None:
        raise ValueError(f"meter {meter.slug!r} aggregates {aggregation} without a value property")
    path = parse_jsonpath(meter.value_property)
    if aggregation is Aggregation.UNIQUE_COUNT:
        # OpenMeter drops JSON null but counts a missing value ('') as one more distinct value.
        return call("uniqExact", f"nullIf({_string_sql(binder, path, maps_complete)}, 'null')")
    number = _number_sql(binder, path, maps_complete)
    if aggregation is Aggregation.LATEST:
        return call("argMax", number, "time")
    return call(_NUMERIC_AGGREGATES[aggregation], number)


def _like_pattern(pattern: str) -> str:
    """The pattern with a trailing lone backslash taken literally.

    ClickHouse fails the whole query on a LIKE pattern ending in an unpaired escape character
    (OpenMeter answers 500 then); doubling it keeps the obvious meaning, a literal backslash.
    """
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


def _filter_sql(binder: _Binder, column: str, f: FilterString) -> str:
    """OpenMeter's string filter over one expression; an empty filter matches everything."""
    if f.eq is not None:
        return f"{column} = {binder.bind(f.eq, 'String')}"
    if f.ne is not None:
        return f"{column} <> {binder.bind(f.ne, 'String')}"
    if f.in_ is not None:
        return f"{column} IN {binder.bind(list(f.in_), 'Array(String)')}"
    if f.nin is not None:
        return f"{column} NOT IN {binder.bind(list(f.nin), 'Array(String)')}"
    if f.like is not None:
        return f"{column} LIKE {binder.bind(_like_pattern(f.like), 'String')}"
    if f.nlike is not None:
        return f"{column} NOT LIKE {binder.bind(_like_pattern(f.nlike), 'String')}"
    if f.ilike is not None:
        return f"lower({column}) LIKE lower({binder.bind(_like_pattern(f.ilike), 'String')})"
    if f.nilike is not None:
        return f"lower({column}) NOT LIKE lower({binder.bind(_like_pattern(f.nilike), 'String')})"
    if f.gt is not None:
        return f"{column} > {binder.bind(f.gt, 'String')}"
    if f.gte is not None:
        return f"{column} >= {binder.bind(f.gte, 'String')}"
    if f.lt is not None:
        return f"{column} < {binder.bind(f.lt, 'String')}"
    if f.lte is not None:
        return f"{column} <= {binder.bind(f.lte, 'String')}"
    if f.and_ is not None:
        return "(" + " AND ".join(_filter_sql(binder, column, child) for child in f.and_) + ")"
    if f.or_ is not None:
        return "(" + " OR ".join(_filter_sql(binder, column, child) for child in f.or_) + ")"
    return "1"


def _epoch_millis(moment: datetime) -> int:
    # OpenMeter compares against Unix seconds: a bound's sub-second part is dropped (floored).
    return math.floor(moment.timestamp()) * 1000


def _time_where(binder: _Binder, from_: datetime | None, to: datetime | None) -> list[str]:
    where = []
    if from_ is not None:
        bound = binder.fixed("from_ms", _epoch_millis(from_), "Int64")
        where.append(f"time >= fromUnixTimestamp64Milli({bound}, 'UTC')")
    if to is not None:
        where.append(f"time < fromUnixTimestamp64Milli({binder.fixed('to_ms', _epoch_millis(to), 'Int64')}, 'UTC')")
    return where


def _window_columns(binder: _Binder, window_size: WindowSize | None, time_zone: str) -> list[str]:
    if window_size is None:
        return [
            f"toUnixTimestamp(tumbleStart(min({_TIME_SECONDS}), toIntervalMinute(1))) AS window_start",
            f"toUnixTimestamp(tumbleEnd(max({_TIME_SECONDS}), toIntervalMinute(1))) AS window_end",
        ]
    tz = binder.fixed("tz", time_zone, "String")
    interval = _WINDOW_INTERVALS[window_size]
    if window_size is WindowSize.DAY:
        # A calendar day in the zone, not 24 hours: DST days are 23 or 25 hours long.
        start = f"tumbleStart({_TIME_SECONDS}, {interval}, {tz})"
        return [
            f"toUnixTimestamp({start}) AS window_start",
            f"toUnixTimestamp({start} + toIntervalDay(1)) AS window_end",
        ]
    if window_size is WindowSize.MONTH:
        # tumbleStart over months yields a Date; as a DateTime in the zone it is local midnight.
        month_start = f"tumbleStart({_TIME_SECONDS}, {interval}, {tz})"
        month_end = f"tumbleEnd({_TIME_SECONDS}, {interval}, {tz})"
        return [
            f"toUnixTimestamp(toDateTime({month_start}, {tz})) AS window_start",
            f"toUnixTimestamp(toDateTime({month_end}, {tz})) AS window_end",
        ]
    return [
        f"toUnixTimestamp(tumbleStart({_TIME_SECONDS}, {interval}, {tz})) AS window_start",
        f"toUnixTimestamp(tumbleEnd({_TIME_SECONDS}, {interval}, {tz})) AS window_end",
    ]


def _customer_mapping(query: MeterQuery) -> tuple[list[str], list[str]]:
    """Subject -> customer ID pairs; a subject listed under two customers goes to the first."""
    mapping: dict[str, str] = {}
    for customer_id, subjects in query.customer_subjects:
        for subject in subjects:
            mapping.setdefault(subject, customer_id)
    return list(mapping), list(mapping.values())


def render_meter_query(meter: Meter, query: MeterQuery, *, maps_complete: bool = False) -> SQLAndParameters:
    """The aggregation query for `query` over `meter`'s events.

    `maps_complete` says every event of the meter's type holds the meter's paths in its value maps
    (extracted at ingest or backfilled); the query then skips the raw `data` column, which makes it
    about twice as fast. Never set it otherwise: a missing numeric key would read as 0.

    Result columns, in order: window_start and window_end (Unix seconds), value, then subject if
    grouped by subject, customer_id if grouped by customer, then one column per meter group-by key
    in `query.meter_group_by` order. `to_query_rows` reads them back.
    """
    binder = _Binder()
    namespace = binder.fixed("namespace", query.namespace, "String")
    event_type = binder.fixed("event_type", meter.event_type, "String")

    select = _window_columns(binder, query.window_size, query.time_zone)
    select.append(f"{_value_sql(binder, meter, maps_complete)} AS value")
    group_columns: list[str] = []
    if query.groups_by_subject:
        select.append("subject")
        group_columns.append("subject")
    if query.groups_by_customer:
        subjects, customer_ids = _customer_mapping(query)
        if subjects:
            keys = binder.fixed("customer_subjects", subjects, "Array(String)")
            ids = binder.fixed("customer_ids", customer_ids, "Array(String)")
            select.append(f"transform(subject, {keys}, {ids}, '') AS customer_id")
        else:
            select.append("'' AS customer_id")
        group_columns.append("customer_id")
    meter_paths = meter.group_by_paths
    for i, key in enumerate(query.meter_group_by):
        alias = f"group_{i}"
        select.append(f"{_string_sql(binder, meter_paths[key], maps_complete)} AS {alias}")
        group_columns.append(alias)

    where = [f"namespace = {namespace}", f"type = {event_type}"]
    if query.subjects:
        where.append(f"subject IN {binder.fixed('subjects', list(query.subjects), 'Array(String)')}")
    customer_subjects = [subject for _, subjects in query.customer_subjects for subject in subjects]
    if customer_subjects:
        # OpenMeter skips the filter when the customers have no subjects at all; so does Tally.
        bound = binder.fixed("filter_customer_subjects", customer_subjects, "Array(String)")
        where.append(f"subject IN {bound}")
    where.extend(_time_where(binder, query.from_, query.to))
    for key, f in query.filters:
        if f.is_empty():
            continue
        where.append(_filter_sql(binder, _string_sql(binder, meter_paths[key], maps_complete), f))

    sql = [f"SELECT {', '.join(select)}", f"FROM {EVENTS_TABLE}", "WHERE " + "\n  AND ".join(where)]
    if query.window_size is not None:
        sql.append(f"GROUP BY {', '.join(['window_start', 'window_end', *group_columns])}")
        sql.append(f"ORDER BY {', '.join(['window_start', *group_columns])}")
    elif group_columns:
        # Without groups ClickHouse returns its single row, as OpenMeter (COUNT 0 on no events).
        sql.append(f"GROUP BY {', '.join(group_columns)}")
        sql.append(f"ORDER BY {', '.join(group_columns)}")
    return "\n".join(sql), binder.parameters


def _utc_from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def to_query_rows(query: MeterQuery, rows: Sequence[Sequence[Any]]) -> list[QueryRow]:
    """Reads rows of `render_meter_query` into QueryRows, dropping those whose aggregate is NULL.

    Without a window, windowStart/windowEnd become the request's `from`/`to` when given. A
    non-finite aggregate (a sum overflowing float64) raises ValueError, as OpenMeter fails then.
    """
    meter_keys = query.meter_group_by
    with_subject = query.groups_by_subject
    with_customer = query.groups_by_customer
    result: list[QueryRow] = []
    # Many rows share a window (one per group): convert each distinct window bound once.
    moments: dict[int, datetime] = {}

    def moment(seconds: int) -> datetime:
        found = moments.get(seconds)
        if found is None:
            found = moments[seconds] = _utc_from_epoch(seconds)
        return found

    for row in rows:
        raw_value = row[2]
        if raw_value is None:
            continue
        value = float(raw_value)
        if not math.isfinite(value):
            raise ValueError(f"meter query produced a non-finite value: {value}")
        index = 3
        subject: str | None = None
        customer_id: str | None = None
        if with_subject:
            subject = row[index]
            index += 1
        if with_customer:
            customer_id = row[index]
            index += 1
        group_by: dict[str, str | None] = {key: row[index + i] for i, key in enumerate(meter_keys)}
        window_start = moment(row[0])
        window_end = moment(row[1])
        if query.window_size is None:
            if query.requested_from is not None:
                window_start = query.requested_from
            if query.to is not None:
                window_end = query.to
        result.append(
            QueryRow(
                value=value,
                window_start=window_start,
                window_end=window_end,
                subject=subject,
                customer_id=customer_id,
                group_by=group_by,
            )
        )
    return result


def render_subjects_query(
    namespace: str,
    meter: Meter | None,
    from_: datetime | None = None,
    to: datetime | None = None,
    search: str | None = None,
) -> SQLAndParameters:
    """Distinct subjects with events (of the meter's event type, when given), sorted."""
    binder = _Binder()
    where = [f"namespace = {binder.fixed('namespace', namespace, 'String')}"]
    if meter is not None:
        where.append(f"type = {binder.fixed('event_type', meter.event_type, 'String')}")
    where.extend(_time_where(binder, from_, to))
    if search:
        where.append(f"positionCaseInsensitive(subject, {binder.fixed('search', search, 'String')}) > 0")
    sql = f"SELECT DISTINCT subject\nFROM {EVENTS_TABLE}\nWHERE " + "\n  AND ".join(where) + "\nORDER BY subject"
    return sql, binder.parameters


def render_group_by_values_query(
    namespace: str,
    meter: Meter,
    key: str,
    from_: datetime | None = None,
    to: datetime | None = None,
    search: str | None = None,
    now: datetime | None = None,
) -> SQLAndParameters:
    """Distinct values of one meter group-by key, sorted; '' stands for events without the key.

    With neither `from` nor `to`, the last 24 hours before `now` are listed (OpenMeter's default).
    """
    if key not in meter.group_by:
        raise KeyError(f"meter {meter.slug!r} has no group-by key {key!r}")
    if from_ is None and to is None:
        from_ = (now or datetime.now(UTC)) - GROUP_BY_VALUES_DEFAULT_SPAN
    binder = _Binder()
    where = [
        f"namespace = {binder.fixed('namespace', namespace, 'String')}",
        f"type = {binder.fixed('event_type', meter.event_type, 'String')}",
    ]
    where.extend(_time_where(binder, from_, to))
    value = _string_sql(binder, meter.group_by_paths[key], False)
    if search:
        where.append(f"positionCaseInsensitive({value}, {binder.fixed('search', search, 'String')}) > 0")
    sql = (
        f"SELECT DISTINCT {value} AS group_by_value\nFROM {EVENTS_TABLE}\nWHERE "
        + "\n  AND ".join(where)
        + "\nORDER BY group_by_value"
    )
    return sql, binder.parameters


__all__ = [
    "EVENTS_TABLE",
    "SQLAndParameters",
    "render_group_by_values_query",
    "render_meter_query",
    "render_subjects_query",
    "to_query_rows",
]
