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

import enum
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from adapters.clickhouse import ddl
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


# LATEST is the value of the event with the greatest time; among events of one millisecond, the one
# ingested last, then the greatest (source, id). argMax over the time alone keeps whichever tied
# event it reads first, which depends on the parts and threads: one query could answer differently
# from the next, and an invoice's quantity from the query that checks it.
_LATEST_ORDER: Final = "(time, ingested_at, source, id)"


def _value_sql(
    binder: _Binder,
    meter: Meter,
    maps_complete: bool,
    condition: str | None = None,
    combinator: str = "",
    conditions: tuple[str, int | str] | None = None,
) -> str:
    """The meter's aggregate; with `condition`, its `-If` form over the rows that meet it (one scan
    computing several windows gives each exactly what a query for that window alone would); with
    `combinator` "State", the partial state a rollup keeps.

    `conditions` (an array expression of N conditions, and N, a number or an SQL expression): the
    same `-If` aggregate once per condition, as one array, through the `-ForEach` combinator
    (`sumIfForEach(args..., conds)` is `[sumIf(args..., conds[1]), ..., sumIf(args..., conds[N])]`).
    One aggregate instead of N keeps the statement's size, and ClickHouse's cost of analysing it, the
    same for any N."""
    aggregation = meter.aggregation

    def call(function: str, *arguments: str) -> str:
        if conditions is not None:
            array, n = conditions
            each = [f"arrayWithConstant({n}, {argument})" for argument in arguments]
            return f"{function}IfForEach({', '.join((*each, array))})"
        if condition is None:
            return f"{function}{combinator}({', '.join(arguments)})"
        return f"{function}If({', '.join((*arguments, condition))})"

    if aggregation is Aggregation.COUNT:
        if conditions is not None:
            return f"countIfForEach({conditions[0]})"
        if combinator:
            return f"count{combinator}()"
        return "count(*)" if condition is None else f"countIf({condition})"
    if meter.value_property is None:
        raise ValueError(f"meter {meter.slug!r} aggregates {aggregation} without a value property")
    path = parse_jsonpath(meter.value_property)
    if aggregation is Aggregation.UNIQUE_COUNT:
        # OpenMeter drops JSON null but counts a missing value ('') as one more distinct value.
        return call("uniqExact", f"nullIf({_string_sql(binder, path, maps_complete)}, 'null')")
    number = _number_sql(binder, path, maps_complete)
    if aggregation is Aggregation.LATEST:
        return call("argMax", number, _LATEST_ORDER)
    return call(_NUMERIC_AGGREGATES[aggregation], number)


def _like_pattern(pattern: str) -> str:
    """The pattern with a trailing lone backslash taken literally.

    ClickHouse fails the whole query on a LIKE pattern ending in an unpaired escape character
    (OpenMeter answers 500 then); doubling it keeps the obvious meaning, a literal backslash.
    """
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


def _filter_sql(binder: _Binder, column: str, f: FilterString, unicode_ilike: bool = False) -> str:
    """OpenMeter's string filter over one expression; an empty filter matches everything.

    `$ilike` / `$nilike` lower-case both sides with `lower` (ASCII), as OpenMeter's meter query
    does; with `unicode_ilike`, ClickHouse's ILIKE (case folded in all of UTF-8), as its event list
    does (go-sqlbuilder's ILike for ClickHouse)."""
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
        pattern = binder.bind(_like_pattern(f.ilike), "String")
        return f"{column} ILIKE {pattern}" if unicode_ilike else f"lower({column}) LIKE lower({pattern})"
    if f.nilike is not None:
        pattern = binder.bind(_like_pattern(f.nilike), "String")
        return f"{column} NOT ILIKE {pattern}" if unicode_ilike else f"lower({column}) NOT LIKE lower({pattern})"
    if f.gt is not None:
        return f"{column} > {binder.bind(f.gt, 'String')}"
    if f.gte is not None:
        return f"{column} >= {binder.bind(f.gte, 'String')}"
    if f.lt is not None:
        return f"{column} < {binder.bind(f.lt, 'String')}"
    if f.lte is not None:
        return f"{column} <= {binder.bind(f.lte, 'String')}"
    if f.and_ is not None:
        return "(" + " AND ".join(_filter_sql(binder, column, child, unicode_ilike) for child in f.and_) + ")"
    if f.or_ is not None:
        return "(" + " OR ".join(_filter_sql(binder, column, child, unicode_ilike) for child in f.or_) + ")"
    return "1"


def _epoch_millis(moment: datetime) -> int:
    # OpenMeter compares against Unix seconds: a bound's sub-second part is dropped (floored).
    return math.floor(moment.timestamp()) * 1000


def _time_where(binder: _Binder, from_: datetime | None, to: datetime | None, column: str = "time") -> list[str]:
    return _range_where(
        binder,
        None if from_ is None else _epoch_millis(from_),
        None if to is None else _epoch_millis(to),
        column,
    )


def _range_where(
    binder: _Binder, from_ms: int | None, to_ms: int | None, column: str = "time", name: str = ""
) -> list[str]:
    """`column` in [from_ms, to_ms) (epoch milliseconds; None: open), bound as `{name}from_ms` and
    `{name}to_ms`."""
    where = []
    if from_ms is not None:
        bound = binder.fixed(f"{name}from_ms", from_ms, "Int64")
        where.append(f"{column} >= fromUnixTimestamp64Milli({bound}, 'UTC')")
    if to_ms is not None:
        bound = binder.fixed(f"{name}to_ms", to_ms, "Int64")
        where.append(f"{column} < fromUnixTimestamp64Milli({bound}, 'UTC')")
    return where


def _window_columns(
    binder: _Binder,
    window_size: WindowSize | None,
    time_zone: str,
    seconds: str = _TIME_SECONDS,
    first: str | None = None,
    last: str | None = None,
) -> list[str]:
    """The window bounds of each row, from `seconds`: event time at whole seconds, or a rollup's
    bucket start (the same DateTime type, so each function computes the same bound from it).
    Without a window, from the first and last event time (`first`, `last`: a rollup's minutes)."""
    if window_size is None:
        return [
            f"toUnixTimestamp(tumbleStart(min({first or seconds}), toIntervalMinute(1))) AS window_start",
            f"toUnixTimestamp(tumbleEnd(max({last or seconds}), toIntervalMinute(1))) AS window_end",
        ]
    tz = binder.fixed("tz", time_zone, "String")
    interval = _WINDOW_INTERVALS[window_size]
    if window_size is WindowSize.DAY:
        # A calendar day in the zone, not 24 hours: DST days are 23 or 25 hours long. The end is
        # the next day's start, found from an instant 36 hours on (always inside the next day):
        # tumbleEnd adds 24 hours, and adding a calendar day lands an hour early where a DST change
        # skips midnight (America/Santiago's 2026-09-06 begins at 01:00).
        start = f"tumbleStart({seconds}, {interval}, {tz})"
        return [
            f"toUnixTimestamp({start}) AS window_start",
            f"toUnixTimestamp(tumbleStart({start} + toIntervalHour(36), {interval}, {tz})) AS window_end",
        ]
    if window_size is WindowSize.MONTH:
        # tumbleStart over months yields a Date; as a DateTime in the zone it is local midnight.
        month_start = f"tumbleStart({seconds}, {interval}, {tz})"
        month_end = f"tumbleEnd({seconds}, {interval}, {tz})"
        return [
            f"toUnixTimestamp(toDateTime({month_start}, {tz})) AS window_start",
            f"toUnixTimestamp(toDateTime({month_end}, {tz})) AS window_end",
        ]
    return [
        f"toUnixTimestamp(tumbleStart({seconds}, {interval}, {tz})) AS window_start",
        f"toUnixTimestamp(tumbleEnd({seconds}, {interval}, {tz})) AS window_end",
    ]


def _customer_mapping(query: MeterQuery) -> tuple[list[str], list[str]]:
    """Subject -> customer ID pairs; a subject listed under two customers goes to the first."""
    mapping: dict[str, str] = {}
    for customer_id, subjects in query.customer_subjects:
        for subject in subjects:
            mapping.setdefault(subject, customer_id)
    return list(mapping), list(mapping.values())


def render_meter_query(
    meter: Meter,
    query: MeterQuery,
    *,
    maps_complete: bool = False,
    rollup: Rollup | None = None,
    filled_to_ms: int | None = None,
) -> SQLAndParameters:
    """The aggregation query for `query` over `meter`'s events.

    `maps_complete` says every event of the meter's type holds the meter's paths in its value maps
    (extracted at ingest or backfilled); the query then skips the raw `data` column, which makes it
    about twice as fast. Never set it otherwise: a missing numeric key would read as 0.

    `rollup` reads the meter's per-minute or per-hour rollup (`render_rollup_ddl`) instead of the
    events: the same answer, from one row per subject, bucket, group-by values and fill, and from
    the events for the parts of the range that are not whole buckets (`_rollup_ranges`). Only for a
    query that `rollup_answers_exactly` (`rollup_for` picks which rollup). `filled_to_ms` is the
    rollup's committed watermark W (adapters/clickhouse/rollups.py): the rollup's rows of fills up
    to W hold exactly the meter's events stored before W; the events stored from W on (any event
    time) are read from the events.

    Result columns, in order: window_start and window_end (Unix seconds), value, then subject if
    grouped by subject, customer_id if grouped by customer, then one column per meter group-by key
    in `query.meter_group_by` order. `to_query_rows` reads them back.
    """
    if rollup is not None and not rollup_answers_exactly(query, rollup):
        raise ValueError(f"this query cannot be answered exactly from a per-{rollup} rollup; query the events")
    if rollup is not None and filled_to_ms is None:
        raise ValueError("a rollup is read up to its committed watermark (filled_to_ms)")
    binder = _Binder()
    namespace = binder.fixed("namespace", query.namespace, "String")
    meter_paths = meter.group_by_paths
    rollup_columns = _rollup_key_columns(meter)

    def group_sql(key: str) -> str:
        return rollup_columns[key] if rollup is not None else _string_sql(binder, meter_paths[key], maps_complete)

    if rollup is not None:
        select = _window_columns(
            binder, query.window_size, query.time_zone, "bucket", first="first_minute", last="last_minute"
        )
        select.append(f"{_AGGREGATE_FUNCTIONS[meter.aggregation]}Merge(state) AS value")
        assert filled_to_ms is not None
        source, where = _rollup_source(binder, meter, rollup, query, maps_complete, filled_to_ms)
    else:
        select = _window_columns(binder, query.window_size, query.time_zone)
        select.append(f"{_value_sql(binder, meter, maps_complete)} AS value")
        source = EVENTS_TABLE
        where = [f"namespace = {namespace}", f"type = {binder.fixed('event_type', meter.event_type, 'String')}"]
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
    for i, key in enumerate(query.meter_group_by):
        alias = f"group_{i}"
        select.append(f"{group_sql(key)} AS {alias}")
        group_columns.append(alias)

    if query.subjects:
        where.append(f"subject IN {binder.fixed('subjects', list(query.subjects), 'Array(String)')}")
    customer_subjects = [subject for _, subjects in query.customer_subjects for subject in subjects]
    if customer_subjects:
        # OpenMeter skips the filter when the customers have no subjects at all; so does Tally.
        bound = binder.fixed("filter_customer_subjects", customer_subjects, "Array(String)")
        where.append(f"subject IN {bound}")
    if rollup is None:  # a rollup's source keeps to the query's range itself
        where.extend(_time_where(binder, query.from_, query.to))
    for key, f in query.filters:
        if f.is_empty():
            continue
        where.append(_filter_sql(binder, group_sql(key), f))

    sql = [f"SELECT {', '.join(select)}", f"FROM {source}", "WHERE " + "\n  AND ".join(where)]
    if query.window_size is not None:
        sql.append(f"GROUP BY {', '.join(['window_start', 'window_end', *group_columns])}")
        sql.append(f"ORDER BY {', '.join(['window_start', *group_columns])}")
    elif group_columns:
        # Without groups ClickHouse returns its single row, as OpenMeter (COUNT 0 on no events).
        sql.append(f"GROUP BY {', '.join(group_columns)}")
        sql.append(f"ORDER BY {', '.join(group_columns)}")
    return "\n".join(sql), binder.parameters


# --- per-minute and per-hour rollups --------------------------------------------------------------
#
# A meter's rollup keeps, per namespace, subject, bucket (a UTC minute or hour) and the values of
# all the meter's group-by keys, the partial state of its aggregation (sumState, uniqExactState,
# argMaxState, ...) and the first and last minute with events: an AggregatingMergeTree that the
# rollup worker fills from `events` by settled `stored_at` ranges, one row per fill (the events
# stored after the last committed fill are read from `events`: `_rollup_source`). Merging the states
# of a window's buckets gives what aggregating the window's events gives, because
# - every value, group-by value and filter operand is computed per event by the same expressions as
#   the raw query (the map-or-JSON form, which equals the maps-only one on complete maps);
# - the rollup answers only the whole buckets between a query's bounds (a bucket there is wholly
#   inside the range); the seconds before the first and after the last whole bucket are read from
#   the events, grouped into the same partial buckets by the same expressions (`_rollup_ranges`),
#   so a partial bucket lies in one window as a whole one does;
# - a window's bounds are whole buckets of UTC, so all the seconds of one bucket fall in the same
#   window: per hour, windows of an hour or more in UTC; per minute, any window in UTC, and in
#   another zone from 1973 on (every zone offset in use since is whole minutes:
#   tests/integration/test_meter_rollup_chdb.py checks the installed zone data);
# - without a window, the first and last minute are what the raw query floors event times to.
# Float sums (SUM, AVG) add the same numbers grouped differently; they are equal whenever the sum
# is exact in float64 (integers, binary fractions), and otherwise differ no more than two runs of
# the raw query on different thread counts do.

# ClickHouse's aggregate function behind each aggregation, for its -State and -Merge forms.
_AGGREGATE_FUNCTIONS: Final = {
    Aggregation.COUNT: "count",
    Aggregation.SUM: "sum",
    Aggregation.AVG: "avg",
    Aggregation.MIN: "min",
    Aggregation.MAX: "max",
    Aggregation.UNIQUE_COUNT: "uniqExact",
    Aggregation.LATEST: "argMax",
}
# The argument types of each state: the types of `_value_sql`'s arguments.
_STATE_ARGUMENTS: Final = {
    Aggregation.COUNT: "",
    Aggregation.UNIQUE_COUNT: ", Nullable(String)",
    Aggregation.LATEST: ", Nullable(Float64), Tuple(DateTime64(3, 'UTC'), DateTime64(3, 'UTC'), String, String)",
}


class Rollup(enum.StrEnum):
    """A rollup's bucket: its name, and `step_ms` its length."""

    MINUTE = "minute"
    HOUR = "hour"

    @property
    def step_ms(self) -> int:
        return 60_000 if self is Rollup.MINUTE else 3_600_000


_UTC_ZONES: Final = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"})
# From here on every time zone's offsets are whole minutes (Africa/Monrovia's -0:44:30 ended in
# January 1972, the last offset with seconds).
WHOLE_MINUTE_OFFSETS_SINCE: Final = datetime(1973, 1, 1, tzinfo=UTC)


def rollup_table(meter: Meter, rollup: Rollup) -> str:
    """The rollup table's name: a digest of everything its rows depend on, so a changed meter (a
    new value property, aggregation or group-by) gets a new rollup rather than a stale one."""
    fingerprint = "\0".join(
        [
            meter.namespace,
            meter.id,
            meter.event_type,
            meter.aggregation.value,
            meter.value_property or "",
            *(f"{key}={path}" for key, path in sorted(meter.group_by.items())),
            # A LATEST rollup made before ties had an order keeps a state of another type.
            *(["order=" + _LATEST_ORDER] if meter.aggregation is Aggregation.LATEST else []),
            # Rollups filled by the worker (tagged by fill, read up to a watermark): one made by a
            # materialized view before is another table, retired and dropped with its view.
            "filled=stored_at",
        ]
    )
    return f"meter_rollup_{rollup}_" + hashlib.sha256(fingerprint.encode()).hexdigest()[:24]


def _rollup_key_columns(meter: Meter) -> dict[str, str]:
    """The rollup's column of each group-by key (the keys are user data; the names are ours)."""
    return {key: f"key_{i}" for i, key in enumerate(sorted(meter.group_by))}


def rollup_answers_exactly(query: MeterQuery, rollup: Rollup) -> bool:
    """Whether the rollup (with the events for a range's partial buckets) gives this query exactly
    the raw events' answer: no bucket straddles one of its windows."""
    if query.window_size is None:
        return True
    in_utc = query.time_zone in _UTC_ZONES
    if rollup is Rollup.HOUR:
        return in_utc and query.window_size is not WindowSize.MINUTE
    return in_utc or (query.from_ is not None and query.from_ >= WHOLE_MINUTE_OFFSETS_SINCE)


# Epoch milliseconds, None where the range is open.
_Range = tuple[int | None, int | None]
# Past this many whole hours an hour rollup reads fewer rows than a minute one, whatever its edges
# (at most two hours of events) hold.
_HOURS_BEFORE_EDGES_DONT_MATTER: Final = 24


def _first_bucket_from(ms: int, step_ms: int) -> int:
    """The start of the first whole bucket of `step_ms` (UTC-aligned) at or after `ms`."""
    return -(-ms // step_ms) * step_ms


def _last_bucket_end_by(ms: int, step_ms: int) -> int:
    """The end of the last whole bucket of `step_ms` (UTC-aligned) at or before `ms`."""
    return ms // step_ms * step_ms


def whole_buckets(since_ms: int, until_ms: int, step_ms: int) -> tuple[int, int] | None:
    """The whole buckets of `step_ms` (UTC-aligned) inside [since, until), as [first, end) in epoch
    ms, or None when there are none."""
    first, end = _first_bucket_from(since_ms, step_ms), _last_bucket_end_by(until_ms, step_ms)
    return (first, end) if first < end else None


def _rollup_ranges(query: MeterQuery, rollup: Rollup) -> tuple[_Range | None, list[_Range]]:
    """How `rollup` and the events share the query's range [from, to): the whole buckets between
    the bounds, which the rollup answers (None when there are none), and the edges before and after
    them, which the events answer. Disjoint, and together exactly the query's range."""
    step = rollup.step_ms
    low = None if query.from_ is None else _epoch_millis(query.from_)
    high = None if query.to is None else _epoch_millis(query.to)
    whole_low = None if low is None else _first_bucket_from(low, step)
    whole_high = None if high is None else _last_bucket_end_by(high, step)
    if whole_low is not None and whole_high is not None and whole_low >= whole_high:
        return None, [(low, high)]
    edges = []
    if low != whole_low:
        edges.append((low, whole_low))
    if high != whole_high:
        edges.append((whole_high, high))
    return (whole_low, whole_high), edges


def rollup_for(query: MeterQuery, ready: Sequence[Rollup] = tuple(Rollup)) -> Rollup | None:
    """Which of the `ready` rollups to read for `query`, or None: read the events.

    The hour rollup when the bounds are whole hours, or when a day or more of whole hours lies
    between them (its edges are then a small part); else the minute rollup (edges under a minute
    each); else the hour rollup with its edges; None when no whole bucket lies between the bounds
    or no ready rollup answers the query's windows exactly."""
    usable: dict[Rollup, tuple[_Range, list[_Range]]] = {}
    for rollup in ready:
        whole, edges = _rollup_ranges(query, rollup)
        if whole is not None and rollup_answers_exactly(query, rollup):
            usable[rollup] = (whole, edges)
    if Rollup.HOUR in usable:
        (low, high), edges = usable[Rollup.HOUR]
        hours = math.inf if low is None or high is None else (high - low) // Rollup.HOUR.step_ms
        if not edges or hours >= _HOURS_BEFORE_EDGES_DONT_MATTER:
            return Rollup.HOUR
    if Rollup.MINUTE in usable:
        return Rollup.MINUTE
    return Rollup.HOUR if Rollup.HOUR in usable else None


def _rollup_source(
    binder: _Binder, meter: Meter, rollup: Rollup, query: MeterQuery, maps_complete: bool, filled_to_ms: int
) -> tuple[str, list[str]]:
    """What a rollup query reads (FROM, and its WHERE conditions): the rollup's rows of the query's
    whole buckets from the fills up to `filled_to_ms` (the committed watermark W), and rows of the
    same shape aggregated from the events: those of the whole buckets stored from W on (not yet
    filled, or filled by a fill not yet committed), and, when the bounds are not whole buckets, all
    those at the edges. Disjoint: an event stored before W is in exactly one committed fill."""
    whole, edges = _rollup_ranges(query, rollup)
    if whole is None:
        raise ValueError(f"no whole {rollup} lies between the query's bounds; query the events")
    table = rollup_table(meter, rollup)
    # Only the group-by keys the query groups or filters by, and the first and last minute only
    # without a window: the other columns would be read and grouped by for nothing. On the edges
    # that matters: a SUM by subject reads no string map at all without the meter's keys, and the
    # edges read (on data sorted by subject before time) about every granule (docs/performance.md).
    wanted = {key for key, f in query.filters if not f.is_empty()} | set(query.meter_group_by)
    key_columns = {key: column for key, column in _rollup_key_columns(meter).items() if key in wanted}
    keys = list(key_columns.values())
    minutes = ["first_minute", "last_minute"] if query.window_size is None else []
    watermark = binder.fixed("filled_to_ms", filled_to_ms, "Int64")
    where = [
        f"namespace = {binder.fixed('namespace', meter.namespace, 'String')}",
        *_range_where(binder, *whole, column="bucket", name="whole_"),
        f"filled_to_ms <= {watermark}",
    ]
    columns = ", ".join(["namespace", "subject", "bucket", *minutes, *keys, "state"])
    # Identifiers are ours (rollup_table's digest, key_N); every value is a bound parameter.
    parts = [f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)}"]  # noqa: S608
    ranges = [" AND ".join(_range_where(binder, *edge, name=f"edge{i}_")) for i, edge in enumerate(edges)]
    # The whole buckets' events the committed fills do not hold (a skip index on stored_at keeps
    # this read to the recent parts: migrations/clickhouse/0003).
    after_fill = [f"stored_at >= fromUnixTimestamp64Milli({watermark}, 'UTC')", *_range_where(binder, *whole)]
    # The edges and the events stored after the fill in two selects, not one with OR: ORed, every
    # granule the edges read (on data sorted by subject before time, about all of them) also reads
    # `stored_at`, and the skip index cannot prune the stored-after part. 10M events: 18 % less CPU
    # for the bench's group-by and unique-count statements (docs/performance.md).
    wheres = [*([" OR ".join(f"({r})" for r in ranges)] if ranges else []), " AND ".join(after_fill)]
    for condition in wheres:
        rows, _ = _rollup_select(
            meter,
            rollup,
            binder=binder,
            maps_complete=maps_complete,
            where=condition,
            key_columns=key_columns,
            minutes=bool(minutes),
        )
        parts.append(f"SELECT {columns} FROM ({rows})")  # noqa: S608
    return "(" + "\nUNION ALL ".join(parts) + ")", [where[0]]


def _stored_where(binder: _Binder, stored_from_ms: int | None, stored_before_ms: int | None) -> list[str]:
    where = []
    if stored_from_ms is not None:
        where.append(
            f"stored_at >= fromUnixTimestamp64Milli({binder.fixed('stored_from_ms', stored_from_ms, 'Int64')}, 'UTC')"
        )
    if stored_before_ms is not None:
        bound = binder.fixed("stored_before_ms", stored_before_ms, "Int64")
        where.append(f"stored_at < fromUnixTimestamp64Milli({bound}, 'UTC')")
    return where


def _rollup_select(
    meter: Meter,
    rollup: Rollup,
    stored_from_ms: int | None = None,
    stored_before_ms: int | None = None,
    *,
    binder: _Binder | None = None,
    maps_complete: bool = False,
    where: str | None = None,
    key_columns: dict[str, str] | None = None,
    minutes: bool = True,
) -> SQLAndParameters:
    """Each bucket's rows of the meter's events, aggregated to states (the fill's, and a query's
    edges); with `stored_from_ms` / `stored_before_ms`, only the events stored from / before that
    moment, and a last column `filled_to_ms` = `stored_before_ms` (the fill that holds them); with
    `where`, only the events that meet it (a query's edges, on the query's `binder`); with
    `key_columns`, only those of the rollup's key columns, and without `minutes`, no first and last
    minute and no count of events (a query's edges: what it uses)."""
    binder = binder or _Binder()
    namespace = binder.fixed("namespace", meter.namespace, "String")
    event_type = binder.fixed("event_type", meter.event_type, "String")
    meter_paths = meter.group_by_paths
    keys = _rollup_key_columns(meter) if key_columns is None else key_columns
    bucket = "toStartOfMinute" if rollup is Rollup.MINUTE else "toStartOfHour"
    select = ["namespace", "subject", f"{bucket}({_TIME_SECONDS}) AS bucket"]
    if minutes:
        select += [
            f"min(toStartOfMinute({_TIME_SECONDS})) AS first_minute",
            f"max(toStartOfMinute({_TIME_SECONDS})) AS last_minute",
            "count() AS events",
        ]
    select += [f"{_string_sql(binder, meter_paths[key], maps_complete)} AS {column}" for key, column in keys.items()]
    select.append(f"{_value_sql(binder, meter, maps_complete, combinator='State')} AS state")
    if stored_before_ms is not None:
        select.append(f"toInt64({binder.fixed('stored_before_ms', stored_before_ms, 'Int64')}) AS filled_to_ms")
    conditions = [
        f"namespace = {namespace}",
        f"type = {event_type}",
        *_stored_where(binder, stored_from_ms, stored_before_ms),
        *([f"({where})"] if where else []),
    ]
    sql = (
        f"SELECT {', '.join(select)}\nFROM {EVENTS_TABLE}\n"
        f"WHERE {' AND '.join(conditions)}\n"
        f"GROUP BY {', '.join(['namespace', 'subject', 'bucket', *keys.values()])}"
    )
    return sql, binder.parameters


def render_rollup_table(meter: Meter, table: str) -> str:
    """A rollup table of `meter` named `table`.

    `events` counts the events behind each row (the fill and the audit compare it with the events).
    `filled_to_ms` names the fill that wrote the row (its upper `stored_at` bound, the watermark it
    commits); it is part of the sorting key, so a merge never folds rows of two fills together (only
    the worker's compaction does, `render_rollup_compaction`), and a query reads only committed
    fills (`filled_to_ms <= W`). No deduplication window: the fills'
    blocks may well hold equal states (adapters/clickhouse/rollups.py says why nothing counts twice)."""
    keys = list(_rollup_key_columns(meter).values())
    function = _AGGREGATE_FUNCTIONS[meter.aggregation]
    arguments = _STATE_ARGUMENTS.get(meter.aggregation, ", Nullable(Float64)")
    columns = [
        "namespace LowCardinality(String)",
        "subject String",
        "bucket DateTime('UTC')",
        "first_minute SimpleAggregateFunction(min, DateTime('UTC'))",
        "last_minute SimpleAggregateFunction(max, DateTime('UTC'))",
        "events SimpleAggregateFunction(sum, UInt64)",
        *(f"{key} String" for key in keys),
        f"state AggregateFunction({function}{arguments})",
        "filled_to_ms Int64",
    ]
    return (
        f"CREATE TABLE IF NOT EXISTS {table}\n({', '.join(columns)})\n"
        f"ENGINE = AggregatingMergeTree\nPARTITION BY toYYYYMM(bucket)\n"
        f"ORDER BY ({', '.join(['namespace', 'subject', 'bucket', *keys, 'filled_to_ms'])})"
    )


def render_rollup_ddl(meter: Meter, rollup: Rollup) -> list[SQLAndParameters]:
    """The meter's rollup table. Nothing fills it as events arrive (a materialized view would run
    on every insert into `events`, whatever its event type: docs/performance.md); the rollup worker
    adds settled `stored_at` ranges with `render_rollup_fill`."""
    return [(render_rollup_table(meter, rollup_table(meter, rollup)), {})]


def render_rollup_fill(
    meter: Meter, rollup: Rollup, *, stored_from_ms: int | None = None, stored_before_ms: int, into: str | None = None
) -> SQLAndParameters:
    """Adds the states of the meter's events stored in [`stored_from_ms`, `stored_before_ms`) (from
    the first, without `stored_from_ms`) to its rollup, or to the table `into`, as the fill
    `filled_to_ms` = `stored_before_ms`. Queries count those rows once W reaches that bound; see
    adapters/clickhouse/rollups.py for why each event is counted exactly once."""
    table = into or rollup_table(meter, rollup)
    select, parameters = _rollup_select(meter, rollup, stored_from_ms=stored_from_ms, stored_before_ms=stored_before_ms)
    keys = list(_rollup_key_columns(meter).values())
    columns = ", ".join(
        ["namespace", "subject", "bucket", "first_minute", "last_minute", "events", *keys, "state", "filled_to_ms"]
    )
    return f"INSERT INTO {table} ({columns})\n{select}", parameters


_ROLLUP_COLUMNS: Final = ("namespace", "subject", "bucket", "first_minute", "last_minute", "events")


def render_rollup_partitions_to_compact(
    meter: Meter, rollup: Rollup, compact_to_ms: int, at_fills: int
) -> SQLAndParameters:
    """The rollup's partitions (`toYYYYMM(bucket)`) whose rows tagged up to `compact_to_ms` come
    from `at_fills` fills or more: those worth folding into one row per key."""
    table = rollup_table(meter, rollup)
    # Identifiers are ours (rollup_table's digest); values are bound.
    sql = (
        f"SELECT toYYYYMM(bucket) AS partition FROM {table} "  # noqa: S608
        "WHERE filled_to_ms <= {compact_to:Int64} GROUP BY partition "
        "HAVING uniqExact(filled_to_ms) >= {at_fills:UInt32} ORDER BY partition"
    )
    return sql, {"compact_to": compact_to_ms, "at_fills": at_fills}


@dataclass(frozen=True, slots=True)
class RollupCompaction:
    """The statements that fold one partition's fills up to a committed watermark C into one row per
    key, in the order they run (adapters/clickhouse/rollups.py, `RollupLifecycle.compact`, says why
    every reader whose watermark is C or later reads the same answer before and after)."""

    staging: str
    # A staging table of the rollup's structure, made afresh (what a crashed compaction left goes).
    prepare: list[str]
    # Into it: the partition's rows tagged up to C, merged per key and tagged C; the rest as they are.
    copy: SQLAndParameters
    # On a cluster, every replica of the staging table holds what the copy wrote before the swap.
    settle: list[str]
    # (side, rows, events tagged up to C, rows tagged above C, events tagged above C) of the rollup's
    # partition and of the staging table: the swap runs only when all but the rows agree.
    tally: SQLAndParameters
    # One atomic statement (per shard on a cluster): the partition becomes the staging table's.
    swap: str
    clean: list[str]


def render_rollup_compaction(
    meter: Meter, rollup: Rollup, partition: int, compact_to_ms: int, cluster: str | None = None
) -> RollupCompaction:
    """Folds the rows of `partition` (a `toYYYYMM(bucket)` value) tagged `filled_to_ms` <= C =
    `compact_to_ms` into one row per (subject, bucket, group) tagged C, through a staging table
    swapped in with REPLACE PARTITION. Rows tagged above C (later fills, or a fill that never
    committed) are copied as they are. On a cluster the staging table shards like the rollup (by
    namespace and subject, both in every row's key), so each shard's copy holds exactly its own rows,
    and each shard swaps its own partition."""
    table = rollup_table(meter, rollup)
    staging = f"{table}_compact"
    keys = list(_rollup_key_columns(meter).values())
    function = _AGGREGATE_FUNCTIONS[meter.aggregation]
    columns = [*_ROLLUP_COLUMNS, *keys, "state", "filled_to_ms"]
    partition = int(partition)  # a number from our own query; formatted, never spliced as text
    parameters = {"partition": partition, "compact_to": compact_to_ms}
    where = "toYYYYMM(bucket) = {partition:UInt32}"
    group = ", ".join(["namespace", "subject", "bucket", *keys])
    merged = ", ".join(
        [
            "namespace, subject, bucket",
            "min(first_minute), max(last_minute), sum(events)",
            *keys,
            f"{function}MergeState(state)",
            "toInt64({compact_to:Int64})",
        ]
    )
    # Identifiers are ours (rollup_table's digest, key_N); values are bound.
    copy = (
        f"INSERT INTO {staging} ({', '.join(columns)})\n"  # noqa: S608
        f"SELECT {merged} FROM {table} WHERE {where} AND filled_to_ms <= {{compact_to:Int64}} GROUP BY {group}\n"
        f"UNION ALL SELECT {', '.join(columns)} FROM {table} WHERE {where} AND filled_to_ms > {{compact_to:Int64}}"
    )
    figures = (
        "count(), sumIf(events, filled_to_ms <= {compact_to:Int64}), countIf(filled_to_ms > {compact_to:Int64}), "
        "sumIf(events, filled_to_ms > {compact_to:Int64})"
    )
    tally = (
        f"SELECT 'rollup', {figures} FROM {table} WHERE {where}\n"  # noqa: S608
        f"UNION ALL SELECT 'staging', {figures} FROM {staging} WHERE {where}"
    )
    on = ddl.on_cluster(cluster)
    # SYNC: on a cluster a replicated table's metadata in the keeper is gone before it is made again.
    drop = [f"DROP TABLE IF EXISTS {staging}{on} SYNC"]
    if cluster is not None:
        drop.append(f"DROP TABLE IF EXISTS {staging}{ddl.LOCAL_SUFFIX}{on} SYNC")
    local, local_staging = ddl.local_table(table, cluster), ddl.local_table(staging, cluster)
    return RollupCompaction(
        staging=staging,
        prepare=[*drop, *ddl.render([render_rollup_table(meter, staging)], cluster, {staging})],
        copy=(copy, parameters),
        settle=[] if cluster is None else [ddl.sync_replicas(staging, cluster)],
        tally=(tally, parameters),
        swap=f"ALTER TABLE {local}{on} REPLACE PARTITION {partition} FROM {local_staging}",
        clean=drop,
    )


def render_rollup_differences(
    meter: Meter,
    rollup: Rollup,
    table: str,
    stored_before_ms: int | None = None,
    buckets_from_ms: int | None = None,
    buckets_to_ms: int | None = None,
) -> SQLAndParameters:
    """The (subject, bucket start in epoch seconds, rollup's count, events' count) of every pair in
    which `table` counts other than the meter's events do: none when `table` holds each of those
    events exactly once. With `stored_before_ms` (a committed watermark W), the fills up to W
    against the events stored before W: what queries read from the rollup; with `buckets_from_ms` /
    `buckets_to_ms` (whole buckets), only the buckets from / before then (the audit)."""
    binder = _Binder()
    namespace = binder.fixed("namespace", meter.namespace, "String")
    event_type = binder.fixed("event_type", meter.event_type, "String")
    bucket = "toStartOfMinute" if rollup is Rollup.MINUTE else "toStartOfHour"
    rollup_where = [f"namespace = {namespace}"]
    events_where = [f"namespace = {namespace}", f"type = {event_type}", *_stored_where(binder, None, stored_before_ms)]
    if stored_before_ms is not None:
        rollup_where.append("filled_to_ms <= {stored_before_ms:Int64}")
    # Buckets are whole seconds, so `time` within them is exactly the events whose bucket is.
    if buckets_from_ms is not None:
        start = binder.fixed("buckets_from_ms", buckets_from_ms, "Int64")
        rollup_where.append(f"bucket >= toDateTime(intDiv({start}, 1000), 'UTC')")
        events_where.append(f"time >= fromUnixTimestamp64Milli({start}, 'UTC')")
    if buckets_to_ms is not None:
        end = binder.fixed("buckets_to_ms", buckets_to_ms, "Int64")
        rollup_where.append(f"bucket < toDateTime(intDiv({end}, 1000), 'UTC')")
        events_where.append(f"time < fromUnixTimestamp64Milli({end}, 'UTC')")
    # Identifiers are ours (rollup_table's digest); every value is a bound parameter. One pass
    # over each side and a GROUP BY (no join): a pair missing from either side counts 0 there.
    sql = (
        "SELECT subject, toUnixTimestamp(bucket), sum(r), sum(e) FROM (\n"  # noqa: S608
        f"SELECT subject, bucket, sum(events) AS r, toUInt64(0) AS e FROM {table} "
        f"WHERE {' AND '.join(rollup_where)} GROUP BY subject, bucket\n"
        f"UNION ALL SELECT subject, {bucket}({_TIME_SECONDS}) AS bucket, toUInt64(0) AS r, count() AS e "
        f"FROM {EVENTS_TABLE} WHERE {' AND '.join(events_where)} GROUP BY subject, bucket\n"
        ") GROUP BY subject, bucket HAVING sum(r) != sum(e) ORDER BY bucket, subject"
    )
    return sql, binder.parameters


def render_rollup_check(meter: Meter, rollup: Rollup, table: str, stored_before_ms: int) -> SQLAndParameters:
    """How many (subject, bucket) pairs of `table`'s fills up to `stored_before_ms` count other than
    the events stored before then do: 0 when they hold each of those events exactly once."""
    sql, parameters = render_rollup_differences(meter, rollup, table, stored_before_ms=stored_before_ms)
    return f"SELECT count() FROM ({sql})", parameters  # noqa: S608


def render_rollup_drop(meter: Meter, rollup: Rollup) -> list[str]:
    return [f"DROP TABLE IF EXISTS {rollup_table(meter, rollup)}"]


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
    "Rollup",
    "SQLAndParameters",
    "render_group_by_values_query",
    "render_meter_query",
    "render_rollup_check",
    "render_rollup_ddl",
    "render_rollup_differences",
    "render_rollup_drop",
    "render_rollup_fill",
    "render_rollup_table",
    "render_subjects_query",
    "rollup_answers_exactly",
    "rollup_for",
    "rollup_table",
    "to_query_rows",
    "whole_buckets",
]
