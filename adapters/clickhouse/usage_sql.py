"""ClickHouse SQL for entitlement usage: a meter's value over several windows in one scan.

The balance engine asks for the meter value over a handful of windows (one per breakpoint, each
[since, until) at whole minutes). Instead of one query per window, one statement reads the matching
events once and computes every window with the aggregate's `-If` combinator, so each window's value
is exactly what `render_meter_query` would give for that window alone, for every aggregation
(UNIQUE_COUNT and LATEST included; property-tested in tests/integration/test_meter_rollup_lifecycle.py).
The windows are array parameters and their `-If` aggregates one `-IfForEach` aggregate, so the
statement is the same size for any number of windows.

`render_windows_batch_query` answers several such queries (one meter and filters, different
customers, windows and tails) in one statement, each exactly as its own statement would
(adapters/clickhouse/windows_batches.py sends concurrent queries that way).

`tail_from` adds two columns: how many events lie at or after it, and the earliest of their times.
The cache uses them to know until when a value computed for `tail_from` stays true: events already
stored with a future time start counting once the clock passes them.

Filters are the same as `render_meter_query`'s (namespace, type, the customer's subjects, the
feature's group-by filters), with the same bound parameters only.

`render_billing_usage_query` is billing's bulk read: one meter over one period for many customers
at once, grouped by customer (each event's subject mapped to its customer), counting only the
events stored by a cutoff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adapters.clickhouse.meter_sql import (
    _AGGREGATE_FUNCTIONS,
    EVENTS_TABLE,
    Rollup,
    SQLAndParameters,
    _Binder,
    _epoch_millis,
    _filter_sql,
    _number_sql,
    _rollup_key_columns,
    _string_sql,
    _time_where,
    _value_sql,
    rollup_table,
    whole_buckets,
)
from domain.metering.jsonpath import parse_jsonpath
from domain.metering.models import Aggregation, Meter
from domain.metering.query import FilterString, MeterQuery


def render_windows_query(
    meter: Meter,
    query: MeterQuery,
    windows: Sequence[tuple[datetime, datetime]],
    tail_from: datetime | None = None,
    *,
    maps_complete: bool = False,
    hour_rollup_filled_to_ms: int | None = None,
) -> SQLAndParameters:
    """One row: an array of the meter value of each window in order (NULL when no event counts;
    absent without windows), then, with `tail_from`, the count and the earliest time (epoch ms) of
    events at or after it.

    `query` carries the filters; its `from_` (the meter's `eventFrom` clamp included) bounds every
    window from below, its `to` and grouping are ignored.

    `hour_rollup_filled_to_ms`: the meter's per-hour rollup is ready, committed up to this watermark
    W; the whole hours inside each window are then read from its fills up to W and from the events
    stored from W on, and the rest from the events.
    """
    lower = query.from_
    bounds: list[tuple[int, int]] = []
    for since, until in windows:
        start = since if lower is None or since >= lower else lower
        bounds.append((_epoch_millis(start), _epoch_millis(until)))
    if hour_rollup_filled_to_ms is not None and any(
        whole_buckets(since, until, Rollup.HOUR.step_ms) for since, until in bounds
    ):
        return _render_windows_from_rollup(meter, query, bounds, tail_from, maps_complete, hour_rollup_filled_to_ms)
    binder = _Binder()
    select: list[str] = []
    if bounds:
        # The windows as two array parameters and one `-IfForEach` aggregate (one `-If` aggregate
        # per window, evaluated per element): 0.55 x the CPU of one `-If` aggregate per window at 8
        # windows in chDB, whose cost grows with the statement's size (docs/performance.md, "The
        # floor of one chDB statement").
        since_p = binder.fixed("window_starts", [b[0] for b in bounds], "Array(Int64)")
        until_p = binder.fixed("window_ends", [b[1] for b in bounds], "Array(Int64)")
        inside = f"arrayMap((s, u) -> time_ms >= s AND time_ms < u, {since_p}, {until_p})"
        # With no rows at all the aggregate is an empty array; resized, each window gets the
        # element type's default: NULL (or 0 for counts), what an `-If` aggregate gives no rows.
        each = _value_sql(binder, meter, maps_complete, conditions=(inside, len(bounds)))
        select.append(f"arrayResize({each}, {len(bounds)})")
    low_ms = min((b[0] for b in bounds), default=None)
    if tail_from is not None:
        tail = binder.bind(_epoch_millis(tail_from), "Int64", prefix="t")
        after = f"time >= fromUnixTimestamp64Milli({tail}, 'UTC')"
        select.append(f"countIf({after})")
        select.append(f"toUnixTimestamp64Milli(minIf(time, {after}))")
        low_ms = _epoch_millis(tail_from) if low_ms is None else min(low_ms, _epoch_millis(tail_from))
    if not select:
        raise ValueError("no windows to query")

    where = [
        f"namespace = {binder.fixed('namespace', query.namespace, 'String')}",
        f"type = {binder.fixed('event_type', meter.event_type, 'String')}",
    ]
    if low_ms is not None:
        where.append(f"time >= fromUnixTimestamp64Milli({binder.fixed('from_ms', low_ms, 'Int64')}, 'UTC')")
    meter_paths = meter.group_by_paths
    where += _subject_and_key_filters(binder, query, lambda key: _string_sql(binder, meter_paths[key], maps_complete))
    sql = (
        f"WITH toUnixTimestamp64Milli(time) AS time_ms\nSELECT {', '.join(select)}\nFROM {EVENTS_TABLE}\nWHERE "
        + "\n  AND ".join(where)
    )
    return sql, binder.parameters


@dataclass(frozen=True, slots=True)
class WindowsRequest:
    """One caller's windows query: what `render_windows_query` takes, as one item of a batch."""

    query: MeterQuery
    windows: Sequence[tuple[datetime, datetime]]
    tail_from: datetime | None = None


def batch_key(query: MeterQuery) -> tuple[str, str] | None:
    """What requests must share to be answered by one `render_windows_batch_query` statement (the
    namespace and the group-by filters; the meter and `maps_complete` are the caller's part of the
    key), or None when the query cannot join a batch: it filters by plain subjects, or by no
    customer at all."""
    if query.subjects or not any(subjects for _, subjects in query.customer_subjects):
        return None
    return query.namespace, repr(query.filters)


_NO_TAIL_MS = 2**63 - 1


def render_windows_batch_query(
    meter: Meter, requests: Sequence[WindowsRequest], *, maps_complete: bool = False
) -> SQLAndParameters:
    """`render_windows_query` for several requests in one statement: one row per request that has
    events, (its index, its windows' values, its tail count, its tail's earliest time in epoch ms).

    The requests share the namespace and the group-by filters (`batch_key`) and differ in their
    customers' subjects, windows and tail. Each event is read once (from the lowest bound of all)
    and joined to the requests whose subjects hold it (ARRAY JOIN); each request's group is then
    aggregated by the same `-IfForEach` aggregate and tail as its own statement. The group may hold
    events before the request's own lower bound, which none of its conditions takes, so they change
    nothing: a window no event meets gets the `-If` aggregate's value over no rows, and that is also
    what the single statement's `arrayResize` gives when no event at all is read (the same types'
    defaults). A request without a group (no event of its subjects read) is answered by
    `empty_windows_row`. So the batch answers each request exactly as `render_windows_query` does
    (property-tested against it in tests/integration/test_meter_rollup_lifecycle.py), and the
    statement's fixed cost (a chDB statement spends about 10 ms on analysis whatever it reads,
    docs/performance.md) is paid once per batch.
    """
    if not requests:
        raise ValueError("no requests to query")
    first = requests[0].query
    shared = batch_key(first)
    binder = _Binder()
    subjects: dict[str, list[int]] = {}
    starts: list[list[int]] = []
    ends: list[list[int]] = []
    lows: list[int] = []
    tails: list[int] = []
    for index, request in enumerate(requests):
        query = request.query
        if shared is None or batch_key(query) != shared:
            raise ValueError("requests of one batch must share the namespace and filters and filter by customer")
        lower = query.from_
        bounds = [
            (_epoch_millis(since if lower is None or since >= lower else lower), _epoch_millis(until))
            for since, until in request.windows
        ]
        tail_ms = None if request.tail_from is None else _epoch_millis(request.tail_from)
        low = min([b[0] for b in bounds] + ([tail_ms] if tail_ms is not None else []), default=None)
        if low is None:
            raise ValueError("a request without windows or tail has nothing to query")
        starts.append([b[0] for b in bounds])
        ends.append([b[1] for b in bounds])
        lows.append(low)
        tails.append(_NO_TAIL_MS if tail_ms is None else tail_ms)
        for _, customer_subjects in query.customer_subjects:
            for subject in customer_subjects:
                owners = subjects.setdefault(subject, [])
                if not owners or owners[-1] != index + 1:  # a subject twice in one request counts once
                    owners.append(index + 1)  # ClickHouse arrays count from 1
    subject_list = binder.fixed("batch_subjects", list(subjects), "Array(String)")
    owners_p = binder.fixed("batch_owners", list(subjects.values()), "Array(Array(UInt32))")
    starts_p = binder.fixed("window_starts", starts, "Array(Array(Int64))")
    ends_p = binder.fixed("window_ends", ends, "Array(Array(Int64))")
    tails_p = binder.fixed("tails", tails, "Array(Int64)")
    inside = f"arrayMap((s, u) -> time_ms >= s AND time_ms < u, {starts_p}[request], {ends_p}[request])"
    each = _value_sql(binder, meter, maps_complete, conditions=(inside, f"length({starts_p}[request])"))
    after = f"time_ms >= {tails_p}[request]"
    where = [
        f"namespace = {binder.fixed('namespace', first.namespace, 'String')}",
        f"type = {binder.fixed('event_type', meter.event_type, 'String')}",
        f"time >= fromUnixTimestamp64Milli({binder.fixed('from_ms', min(lows), 'Int64')}, 'UTC')",
        f"subject IN {subject_list}",
    ]
    meter_paths = meter.group_by_paths
    where += _key_filters(binder, first.filters, lambda key: _string_sql(binder, meter_paths[key], maps_complete))
    sql = (
        "WITH toUnixTimestamp64Milli(time) AS time_ms\n"
        f"SELECT request, {each}, countIf({after}), toUnixTimestamp64Milli(minIf(time, {after}))\n"
        f"FROM {EVENTS_TABLE}\n"
        f"ARRAY JOIN {owners_p}[indexOf({subject_list}, subject)] AS request\n"
        "WHERE " + "\n  AND ".join(where) + "\nGROUP BY request"
    )
    return sql, binder.parameters


def empty_windows_row(meter: Meter, windows: int) -> tuple[list[float | None], int, int]:
    """What a windows statement answers over no rows: each window's value (the `arrayResize`
    default of the aggregate's type: 0 for the counts, NULL for the nullable numbers), no tail."""
    counts = meter.aggregation in (Aggregation.COUNT, Aggregation.UNIQUE_COUNT)
    return [0.0 if counts else None] * windows, 0, 0


def _subject_and_key_filters(binder: _Binder, query: MeterQuery, group_sql: Callable[[str], str]) -> list[str]:
    where = []
    if query.subjects:
        where.append(f"subject IN {binder.fixed('subjects', list(query.subjects), 'Array(String)')}")
    customer_subjects = [subject for _, subjects in query.customer_subjects for subject in subjects]
    if customer_subjects:
        bound = binder.fixed("filter_customer_subjects", customer_subjects, "Array(String)")
        where.append(f"subject IN {bound}")
    return where + _key_filters(binder, query.filters, group_sql)


def _key_filters(
    binder: _Binder, filters: Sequence[tuple[str, FilterString]], group_sql: Callable[[str], str]
) -> list[str]:
    return [_filter_sql(binder, group_sql(key), f) for key, f in filters if not f.is_empty()]


def _render_windows_from_rollup(
    meter: Meter,
    query: MeterQuery,
    bounds: Sequence[tuple[int, int]],
    tail_from: datetime | None,
    maps_complete: bool,
    filled_to_ms: int,
) -> SQLAndParameters:
    """`render_windows_query`'s row, each window's whole hours merged from the per-hour rollup's
    states (its fills up to the watermark `filled_to_ms`, W, and the events stored from W on) and
    its other seconds from the events' states, in one statement.

    Exact: a window's whole hours are whole buckets of the rollup (an hour bucket holds the events
    whose time, at whole seconds, falls in it, as the raw query's bounds do), and the rest of the
    window is read from the events at the raw query's precision. Each window's condition takes the
    rollup rows of its own whole hours and the event rows of its own edges, so a row another window
    needed (fetched for that one) never counts in this one. States merge as the raw aggregate would
    add those events (sum, count, min, max, uniqExact, argMax over event time; the floating-point
    caveat of the rollups in meter_sql applies to SUM and AVG).
    """
    binder = _Binder()
    function = _AGGREGATE_FUNCTIONS[meter.aggregation]
    namespace = binder.fixed("namespace", query.namespace, "String")
    keys = _rollup_key_columns(meter)
    meter_paths = meter.group_by_paths

    def millis(ms: int) -> str:
        return f"fromUnixTimestamp64Milli({binder.bind(ms, 'Int64', prefix='w')}, 'UTC')"

    windows: list[str] = []
    hour_ranges: list[tuple[int, int]] = []
    edge_ranges: list[tuple[int, int]] = []
    for since_ms, until_ms in bounds:
        hours = whole_buckets(since_ms, until_ms, Rollup.HOUR.step_ms)
        window = f"at >= {millis(since_ms)} AND at < {millis(until_ms)}"
        if hours is None:
            windows.append(f"{function}MergeIf(state, from_events AND {window})")
            edge_ranges.append((since_ms, until_ms))
            continue
        inside = f"at >= {millis(hours[0])} AND at < {millis(hours[1])}"
        # An event row inside the whole hours counts only when stored from W on (after_fill): the
        # fills up to W hold the others.
        windows.append(
            f"{function}MergeIf(state, (NOT from_events AND {inside}) "
            f"OR (from_events AND {window} AND (after_fill OR NOT ({inside}))))"
        )
        hour_ranges.append(hours)
        edge_ranges += [(since_ms, hours[0]), (hours[1], until_ms)]
    select = [f"[{', '.join(windows)}]"]
    fetched = [f"(time >= {millis(a)} AND time < {millis(b)})" for a, b in edge_ranges if a < b]
    if tail_from is not None:
        tail_ms = millis(_epoch_millis(tail_from))
        select.append(f"sumIf(events, from_events AND at >= {tail_ms})")
        select.append(f"toUnixTimestamp64Milli(minIf(at, from_events AND at >= {tail_ms}))")
        fetched.append(f"time >= {tail_ms}")

    watermark = binder.fixed("filled_to_ms", filled_to_ms, "Int64")
    after_fill = f"stored_at >= fromUnixTimestamp64Milli({watermark}, 'UTC')"
    if hour_ranges:
        hours_sql = " OR ".join(f"(time >= {millis(a)} AND time < {millis(b)})" for a, b in hour_ranges)
        fetched.append(f"({after_fill} AND ({hours_sql}))")
    rollup_where = [f"namespace = {namespace}", f"filled_to_ms <= {watermark}"]
    rollup_where.append(
        "(" + " OR ".join(f"(bucket >= {millis(a)} AND bucket < {millis(b)})" for a, b in hour_ranges) + ")"
    )
    rollup_where += _subject_and_key_filters(binder, query, keys.__getitem__)
    event_where = [
        f"namespace = {namespace}",
        f"type = {binder.fixed('event_type', meter.event_type, 'String')}",
    ]
    event_where.append("(" + " OR ".join(fetched) + ")" if fetched else "0")
    event_where += _subject_and_key_filters(
        binder, query, lambda key: _string_sql(binder, meter_paths[key], maps_complete)
    )
    sql = (
        f"SELECT {', '.join(select)}\nFROM (\n"
        "SELECT false AS from_events, false AS after_fill, toDateTime64(bucket, 3, 'UTC') AS at, state, "
        "toUInt64(0) AS events\n"
        f"FROM {rollup_table(meter, Rollup.HOUR)}\nWHERE " + "\n  AND ".join(rollup_where) + "\nUNION ALL\n"
        f"SELECT true AS from_events, {after_fill} AS after_fill, time AS at, "
        f"{_value_sql(binder, meter, maps_complete, combinator='State')} AS state, count() AS events\n"
        f"FROM {EVENTS_TABLE}\nWHERE " + "\n  AND ".join(event_where) + "\nGROUP BY time, after_fill\n)"
    )
    return sql, binder.parameters


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def render_billing_usage_query(
    meter: Meter,
    namespace: str,
    customer_subjects: Mapping[str, Sequence[str]],
    start: datetime,
    end: datetime,
    stored_by: datetime,
    filters: Mapping[str, FilterString],
    *,
    maps_complete: bool = False,
) -> SQLAndParameters:
    """Rows of (customer ID, meter value) for the customers with usage in [start, end) among the
    events stored by `stored_by` (the `stored_at` column, which the store sets when the row is
    written). A subject listed under two customers counts for the first. Customers without usage
    have no row.

    Period bounds are at whole seconds, as every meter query (`render_meter_query`), so a period
    reads exactly what GET /meters/{slug}/query shows for it; `start` is clamped by the meter's
    `eventFrom`. The cutoff is at the millisecond.
    """
    binder = _Binder()
    mapping: dict[str, str] = {}
    for customer_id, subjects in customer_subjects.items():
        for subject in subjects:
            mapping.setdefault(subject, customer_id)
    if not mapping:
        raise ValueError("no customer subjects to read usage for")
    keys = binder.fixed("customer_subjects", list(mapping), "Array(String)")
    ids = binder.fixed("customer_ids", list(mapping.values()), "Array(String)")
    lower = start if meter.event_from is None else max(start, meter.event_from)
    # Integer arithmetic: a float timestamp times 1000 can land a hair below the millisecond.
    cutoff_ms = (stored_by - _EPOCH) // timedelta(milliseconds=1)
    where = [
        f"namespace = {binder.fixed('namespace', namespace, 'String')}",
        f"type = {binder.fixed('event_type', meter.event_type, 'String')}",
        f"subject IN {keys}",
        *_time_where(binder, lower, end),
        # Milliseconds, floored: an event stored within the cutoff's millisecond counts.
        f"stored_at <= fromUnixTimestamp64Milli({binder.fixed('stored_by_ms', cutoff_ms, 'Int64')}, 'UTC')",
    ]
    meter_paths = meter.group_by_paths
    for key, f in filters.items():
        if f.is_empty():
            continue
        where.append(_filter_sql(binder, _string_sql(binder, meter_paths[key], maps_complete), f))
    customer_id = f"transform(subject, {keys}, {ids}, '') AS customer_id"
    if meter.aggregation is Aggregation.SUM:
        return _decimal_sum_query(binder, meter, customer_id, where, maps_complete), binder.parameters
    sql = (
        f"SELECT {customer_id}, {_value_sql(binder, meter, maps_complete)} AS value\n"
        f"FROM {EVENTS_TABLE}\nWHERE " + "\n  AND ".join(where) + "\nGROUP BY customer_id"
    )
    return sql, binder.parameters


# Billing's SUM as a decimal sum: each value's shortest text (what the event carried, for any number
# a Float64 holds exactly as written) parsed at this scale, so 0.1 + 0.2 is 0.3, not the Float64
# sum 0.30000000000000004 that would start a second package of 0.3. 29 integer digits: no realistic
# total overflows them, and the sanity check below falls back if one ever did.
_DECIMAL_SCALE = 9


def _decimal_sum_query(binder: _Binder, meter: Meter, customer_id: str, where: list[str], maps_complete: bool) -> str:
    """Rows of (customer ID, the SUM as text): exact when every value converts to the decimal scale
    faithfully (its text parses and reads back as the same Float64: not more digits than the scale,
    not beyond its range), else the Float64 sum as the meter query gives it (a value like 1e-12
    keeps today's reading rather than being truncated to 0). The decimal sum is also checked
    against the Float64 one, so an overflow could never pass as a number."""
    if meter.value_property is None:
        raise ValueError(f"meter {meter.slug!r} sums without a value property")
    number = _number_sql(binder, parse_jsonpath(meter.value_property), maps_complete)
    rows = (
        f"SELECT {customer_id}, {number} AS x, toDecimal128OrNull(toString(x), {_DECIMAL_SCALE}) AS d\n"
        f"FROM {EVENTS_TABLE}\nWHERE " + "\n  AND ".join(where)
    )
    faithful = (
        "countIf(x IS NOT NULL AND (d IS NULL OR toFloat64(d) != x)) = 0 "
        "AND abs(toFloat64(sum(d)) - sum(x)) <= 1e-6 * sum(abs(x)) + 1e-9"
    )
    return (
        f"SELECT customer_id, if({faithful}, toString(sum(d)), toString(sum(x))) AS value\n"
        f"FROM ({rows})\nGROUP BY customer_id"
    )


__all__ = [
    "WindowsRequest",
    "batch_key",
    "empty_windows_row",
    "render_billing_usage_query",
    "render_windows_batch_query",
    "render_windows_query",
]
