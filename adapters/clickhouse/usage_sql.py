"""ClickHouse SQL for entitlement usage: a meter's value over several windows in one scan.

The balance engine asks for the meter value over a handful of windows (one per breakpoint, each
[since, until) at whole minutes). Instead of one query per window, one statement reads the matching
events once and computes every window with the aggregate's `-If` combinator, so each column is
exactly what `render_meter_query` would give for that window alone, for every aggregation
(UNIQUE_COUNT and LATEST included).

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

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from adapters.clickhouse.meter_sql import (
    EVENTS_TABLE,
    SQLAndParameters,
    _Binder,
    _epoch_millis,
    _filter_sql,
    _string_sql,
    _time_where,
    _value_sql,
)
from domain.metering.models import Meter
from domain.metering.query import FilterString, MeterQuery


def render_windows_query(
    meter: Meter,
    query: MeterQuery,
    windows: Sequence[tuple[datetime, datetime]],
    tail_from: datetime | None = None,
    *,
    maps_complete: bool = False,
) -> SQLAndParameters:
    """One row: the meter value of each window in order (NULL when no event counts), then, with
    `tail_from`, the count and the earliest time (epoch ms) of events at or after it.

    `query` carries the filters; its `from_` (the meter's `eventFrom` clamp included) bounds every
    window from below, its `to` and grouping are ignored.
    """
    binder = _Binder()
    lower = query.from_
    bounds: list[tuple[int, int]] = []
    for since, until in windows:
        start = since if lower is None or since >= lower else lower
        bounds.append((_epoch_millis(start), _epoch_millis(until)))
    select: list[str] = []
    for since_ms, until_ms in bounds:
        since_p = binder.bind(since_ms, "Int64", prefix="w")
        until_p = binder.bind(until_ms, "Int64", prefix="w")
        condition = (
            f"time >= fromUnixTimestamp64Milli({since_p}, 'UTC') AND time < fromUnixTimestamp64Milli({until_p}, 'UTC')"
        )
        select.append(_value_sql(binder, meter, maps_complete, condition))
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
    if query.subjects:
        where.append(f"subject IN {binder.fixed('subjects', list(query.subjects), 'Array(String)')}")
    customer_subjects = [subject for _, subjects in query.customer_subjects for subject in subjects]
    if customer_subjects:
        bound = binder.fixed("filter_customer_subjects", customer_subjects, "Array(String)")
        where.append(f"subject IN {bound}")
    if low_ms is not None:
        where.append(f"time >= fromUnixTimestamp64Milli({binder.fixed('from_ms', low_ms, 'Int64')}, 'UTC')")
    meter_paths = meter.group_by_paths
    for key, f in query.filters:
        if f.is_empty():
            continue
        where.append(_filter_sql(binder, _string_sql(binder, meter_paths[key], maps_complete), f))
    sql = f"SELECT {', '.join(select)}\nFROM {EVENTS_TABLE}\nWHERE " + "\n  AND ".join(where)
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
    sql = (
        f"SELECT transform(subject, {keys}, {ids}, '') AS customer_id, "
        f"{_value_sql(binder, meter, maps_complete)} AS value\n"
        f"FROM {EVENTS_TABLE}\nWHERE " + "\n  AND ".join(where) + "\nGROUP BY customer_id"
    )
    return sql, binder.parameters


__all__ = ["render_billing_usage_query", "render_windows_query"]
