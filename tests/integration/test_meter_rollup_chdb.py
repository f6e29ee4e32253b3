"""Meter queries answered from per-minute and per-hour rollups give exactly the raw events' answers.

Each example stores random events of one meter (random subjects, times around DST changes, values
that are numbers, numeric strings, junk or missing, group-by values with gaps), a third before its
rollups' first fill, a third between that and a second fill and a third after (read from the events
stored from the watermark on), then asks
random queries: every aggregation, window size and time zone, group-bys, filters, subjects and
customers, bounded and unbounded ranges. Every query a rollup may answer must get the raw
query's rows from it, field for field, read at the second fill's watermark and at the first one's (a
reader that has not seen the second fill commit, or a query between its insert and its commit); in
some examples after compacting the fills up to one of the two watermarks (read at that one and
later only: the worker compacts up to a watermark every reader has passed). On a real chDB and over the HTTP client. Values are binary fractions so that float sums are exact in any order
(as the raw query's own answer is only then independent of ClickHouse's thread count).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from adapters.clickhouse.meter_sql import (
    WHOLE_MINUTE_OFFSETS_SINCE,
    Rollup,
    render_meter_query,
    render_rollup_compaction,
    render_rollup_ddl,
    render_rollup_drop,
    render_rollup_fill,
    render_rollup_partitions_to_compact,
    rollup_for,
    rollup_table,
    to_query_rows,
)
from domain.errors import ValidationError
from domain.metering.jsonpath import extract_values
from domain.metering.models import Aggregation, Meter
from domain.metering.query import FilterString, MeterQueryInput, QueryRow
from tests.support import event_store
from tests.support.services import require_module

require_module("chdb")

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "clickhouse" / "0001_events.sql"
# Spring-forward and fall-back days in Europe and America, a month end, a year end.
DAYS = [datetime(2024, 3, 31, tzinfo=UTC), datetime(2024, 11, 3, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC)]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe", "America/Santiago"]
GROUP_BY = {"model": "$.model", "region": "$.region"}
_namespaces = itertools.count()


@pytest.fixture(scope="module", params=event_store.KINDS)
def ch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = event_store.client(request, request.param, tmp_path_factory.mktemp("rollup"), "rollup")
    statements = "\n".join(line for line in MIGRATION.read_text().splitlines() if not line.strip().startswith("--"))
    for statement in statements.split(";\n"):
        if statement.strip():
            client.command(statement.strip().rstrip(";"))
    yield client
    client.close()


def make_meter(namespace: str, aggregation: Aggregation) -> Meter:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    return Meter(
        id="01HROLLUP",
        namespace=namespace,
        slug="meter",
        name="meter",
        description=None,
        aggregation=aggregation,
        event_type="prompt",
        event_from=None,
        value_property={Aggregation.COUNT: None, Aggregation.UNIQUE_COUNT: "$.user"}.get(aggregation, "$.tokens"),
        group_by=dict(GROUP_BY),
        metadata={},
        annotations={},
        created_at=moment,
        updated_at=moment,
    )


def insert(ch: Client, meter: Meter, events: list[tuple[str, datetime, Any]], first_id: int) -> None:
    numeric, strings = meter.extracted_paths
    rows = []
    for i, (subject, time, data) in enumerate(events):
        text = orjson.dumps(data).decode()
        num, txt = extract_values(data, numeric, strings)  # as the sink stores them
        rows.append([meter.namespace, f"id-{first_id + i}", "prompt", "test", subject, time, text, num, txt, time])
    columns = ["namespace", "id", "type", "source", "subject", "time", "data", "num_values", "str_values"]
    ch.insert("events", rows, column_names=[*columns, "ingested_at"])


def server_ms(ch: Client) -> int:
    return int(ch.query("SELECT toUnixTimestamp64Milli(now64(3))").result_rows[0][0])


def fill(ch: Client, meter: Meter, stored_from_ms: int | None = None) -> int:
    """Fills every rollup of the meter with the events stored from `stored_from_ms` to now (what the
    rollup worker does a grace later: here every insert has returned); returns the new watermark."""
    watermark = server_ms(ch)
    for rollup in Rollup:
        ch.command(
            *render_rollup_fill(meter, rollup, stored_from_ms=stored_from_ms, stored_before_ms=watermark),
            settings={"insert_deduplicate": 0},
        )
    return watermark


def compact(ch: Client, meter: Meter, compact_to_ms: int) -> None:
    """Folds every rollup's fills up to the committed watermark `compact_to_ms` into one row per
    key, partition by partition (what the rollup worker's compaction runs, crashes aside)."""
    for rollup in Rollup:
        partitions = ch.query(*render_rollup_partitions_to_compact(meter, rollup, compact_to_ms, 1)).result_rows
        for (partition,) in partitions:
            steps = render_rollup_compaction(meter, rollup, int(partition), compact_to_ms)
            for statement in steps.prepare:
                ch.command(statement)
            ch.command(*steps.copy, settings={"insert_deduplicate": 0})
            tally = {str(r[0]): tuple(r[2:]) for r in ch.query(*steps.tally).result_rows}
            assert tally["rollup"] == tally["staging"]
            ch.command(steps.swap)
            for statement in steps.clean:
                ch.command(statement)


def answers(ch: Client, meter: Meter, data: MeterQueryInput, filled_to_ms: int) -> dict[Rollup | None, list[QueryRow]]:
    """The raw answer (key None) and each rollup's that may answer (its fills up to `filled_to_ms`,
    the events stored from then on and the events at its edges); nothing for an invalid query."""
    try:
        query = data.validate(meter, {"c1": ["s1", "s2"], "c2": ["s3"]})
    except ValidationError:
        return {}
    result = {}
    for rollup in (None, *(r for r in Rollup if rollup_for(query, [r]) is r)):
        sql, parameters = render_meter_query(meter, query, rollup=rollup, filled_to_ms=filled_to_ms)
        result[rollup] = to_query_rows(query, ch.query(sql, parameters=parameters).result_rows)
    return result


values = st.one_of(
    st.integers(-40, 400).map(lambda n: n / 4),
    st.sampled_from(["2.5", "abc", None, True, "nan", "inf", {"x": 1}]),
)
labels = st.sampled_from(["a", "b", "c", None])
event = st.tuples(
    st.sampled_from(["s1", "s2", "s3", "s4"]),
    st.integers(0, 3 * 24 * 3600 - 1),  # seconds into the day before, the day and the day after
    st.integers(0, 999),
    st.fixed_dictionaries({}, optional={"tokens": values, "user": labels, "model": labels, "region": labels}),
)
filters = st.one_of(
    st.just(FilterString()),
    labels.filter(lambda v: v is not None).map(lambda v: FilterString(eq=v)),
    st.lists(st.sampled_from(["a", "b", ""]), min_size=1).map(lambda v: FilterString(in_=tuple(v))),
    st.just(FilterString(like="%a%")),
    st.just(FilterString(ne="b")),
)


@st.composite
def queries(draw: st.DrawFn, day: datetime, near: Sequence[datetime] = ()) -> MeterQueryInput:
    def bound() -> datetime | None:
        # Whole hours, whole minutes, any millisecond (a rollup then answers the whole buckets
        # between the bounds, and the events the edges), within two seconds of a stored event (so
        # that the edges and the buckets around them hold events), or open.
        start = day - timedelta(days=1)
        return draw(
            st.none()
            | st.integers(0, 3 * 24).map(lambda h: start + timedelta(hours=h))
            | st.integers(0, 3 * 24 * 60).map(lambda m: start + timedelta(minutes=m))
            | st.integers(0, 3 * 24 * 3600 * 1000).map(lambda ms: start + timedelta(milliseconds=ms))
            | (
                st.tuples(st.sampled_from(near), st.integers(-2000, 2000)).map(
                    lambda pair: pair[0] + timedelta(milliseconds=pair[1])
                )
                if near
                else st.nothing()
            )
        )

    from_, to = bound(), bound()
    if from_ is not None and to is not None and to < from_:
        from_, to = to, from_
    return MeterQueryInput(
        from_=from_,
        to=to,
        window_size=draw(st.sampled_from([None, "MINUTE", "HOUR", "DAY", "MONTH"])),
        window_time_zone=draw(st.sampled_from(ZONES)),
        subjects=draw(st.sampled_from([(), ("s1",), ("s2", "s4")])),
        filter_customer_ids=draw(st.sampled_from([(), ("c1",), ("c1", "c2")])),
        group_by=draw(st.lists(st.sampled_from(["model", "region", "subject", "customer_id"]), unique=True)),
        advanced_filters={key: f for key, f in draw(st.dictionaries(st.sampled_from(list(GROUP_BY)), filters)).items()},
    )


examples = given(
    st.sampled_from(list(Aggregation)),
    st.sampled_from(DAYS),
    st.lists(event, min_size=0, max_size=60, unique_by=lambda e: (e[1], e[2])),
    st.data(),
)
_FIXTURE_PER_EXAMPLE = [HealthCheck.function_scoped_fixture]  # one store for all examples, on purpose


@pytest.mark.full_suite_over_http
@settings(max_examples=20, deadline=None, suppress_health_check=_FIXTURE_PER_EXAMPLE)
@examples
def test_rollup_answers_equal_raw_answers(
    ch: Client, aggregation: Aggregation, day: datetime, events: list[Any], data: st.DataObject
) -> None:
    _check_rollups_against_raw(ch, aggregation, day, events, data)


@pytest.mark.full_suite
@settings(max_examples=300, deadline=None, suppress_health_check=_FIXTURE_PER_EXAMPLE)
@examples
def test_rollup_answers_equal_raw_answers_at_length(
    ch: Client, aggregation: Aggregation, day: datetime, events: list[Any], data: st.DataObject
) -> None:
    # `make etoe`: the same property, many more examples than `make test` can afford.
    _check_rollups_against_raw(ch, aggregation, day, events, data)


def _check_rollups_against_raw(
    ch: Client, aggregation: Aggregation, day: datetime, events: list[Any], data: st.DataObject
) -> None:
    meter = make_meter(f"rollup{next(_namespaces)}", aggregation)
    start = day - timedelta(days=1)
    stored = [(s, start + timedelta(seconds=sec, milliseconds=ms), payload) for s, sec, ms, payload in events]
    third = len(stored) // 3
    # Events stored before the first fill, between the two fills, and after the second (read from
    # the events); a reader at the first watermark reads the second fill's events from the events.
    insert(ch, meter, stored[:third], 0)
    for rollup in Rollup:
        for sql, parameters in render_rollup_ddl(meter, rollup):
            ch.command(sql, parameters=parameters)
    first = fill(ch, meter)
    insert(ch, meter, stored[third : 2 * third], third)
    second = fill(ch, meter, first)
    insert(ch, meter, stored[2 * third :], 2 * third)
    answered = 0
    # Then the fills compacted up to one of the watermarks C: a reader at C or later reads the same.
    compacted_to = data.draw(st.sampled_from([None, first, second]))
    if compacted_to is not None:
        compact(ch, meter, compacted_to)
    for _ in range(8):
        request = data.draw(queries(day, near=[time for _, time, _ in stored]))
        for watermark in (second, first):
            if compacted_to is not None and watermark < compacted_to:
                continue
            found = answers(ch, meter, request, watermark)
            for rollup, rows in found.items():
                assert rows == found[None], (rollup, watermark, compacted_to)
        answered += len(found) - 1
    for rollup in Rollup:
        for sql in render_rollup_drop(meter, rollup):
            ch.command(sql)
    assume(answered > 0)


def test_a_rollup_holds_a_row_per_subject_bucket_and_group(ch: Client) -> None:
    meter = make_meter(f"rollup{next(_namespaces)}", Aggregation.SUM)
    for rollup in Rollup:
        for sql, parameters in render_rollup_ddl(meter, rollup):
            ch.command(sql, parameters=parameters)
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    events = [("s1", t0 + timedelta(seconds=s), {"tokens": 1, "model": "a"}) for s in range(0, 600, 5)]
    insert(ch, meter, events, 0)
    watermark = fill(ch, meter)
    # 120 events in 10 minutes of one hour, one subject and group.
    for rollup, rows in ((Rollup.MINUTE, 10), (Rollup.HOUR, 1)):
        assert ch.query(f"SELECT count() FROM {rollup_table(meter, rollup)} FINAL").result_rows == [(rows,)]
    query = MeterQueryInput(window_size="HOUR").validate(meter)
    assert rollup_for(query) is Rollup.HOUR
    sql, parameters = render_meter_query(meter, query, rollup=Rollup.HOUR, filled_to_ms=watermark)
    rows = to_query_rows(query, ch.query(sql, parameters=parameters).result_rows)
    assert [(r.value, r.window_start) for r in rows] == [(120.0, t0)]


@pytest.mark.parametrize("aggregation", list(Aggregation))
def test_between_odd_bounds_the_rollup_answers_whole_buckets_and_the_events_the_edges(
    ch: Client, aggregation: Aggregation
) -> None:
    # Events on each side of every bound a rollup or its edges use: the query's (floored to whole
    # seconds, as OpenMeter compares), the first and last whole minute and hour between them.
    meter = make_meter(f"rollup{next(_namespaces)}", aggregation)
    for rollup in Rollup:
        for sql, parameters in render_rollup_ddl(meter, rollup):
            ch.command(sql, parameters=parameters)
    hour = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    from_, to = hour + timedelta(seconds=30, milliseconds=250), hour + timedelta(hours=3, seconds=10, milliseconds=700)
    moments = [
        hour + timedelta(seconds=29, milliseconds=999),  # before `from`
        hour + timedelta(seconds=30),  # `from` at whole seconds
        hour + timedelta(seconds=30, milliseconds=100),
        hour + timedelta(seconds=59, milliseconds=999),  # the minute rollup's head edge
        hour + timedelta(minutes=1),  # its first whole minute
        hour + timedelta(minutes=59, seconds=59, milliseconds=999),  # the hour rollup's head edge
        hour + timedelta(hours=1),  # its first whole hour
        hour + timedelta(hours=2, minutes=59, seconds=59, milliseconds=999),  # the last whole buckets
        hour + timedelta(hours=3),  # the tail edge of both
        hour + timedelta(hours=3, seconds=9, milliseconds=999),
        hour + timedelta(hours=3, seconds=10),  # `to` at whole seconds: out
        hour + timedelta(hours=3, seconds=10, milliseconds=500),
    ]
    tokens = [2**i for i in range(len(moments))]  # a sum names the events it counted
    events = [("s1", t, {"tokens": n, "user": f"u{n}", "model": "a"}) for t, n in zip(moments, tokens, strict=True)]
    # Every other one filled, the rest stored after the fill (read from the events).
    insert(ch, meter, events[::2], 0)
    watermark = fill(ch, meter)
    insert(ch, meter, events[1::2], len(events))
    counted = {i for i, t in enumerate(moments) if from_.replace(microsecond=0) <= t < to.replace(microsecond=0)}
    assert counted == set(range(1, 10))
    for window_size in (None, "HOUR", "DAY"):
        data = MeterQueryInput(from_=from_, to=to, window_size=window_size, group_by=["subject"])
        query = data.validate(meter)
        assert {r for r in Rollup if rollup_for(query, [r]) is r} == set(Rollup)
        found = answers(ch, meter, data, watermark)
        if aggregation is Aggregation.SUM and window_size is None:
            assert [row.value for row in found[None]] == [sum(tokens[i] for i in counted)]
        for rollup in Rollup:
            assert found[rollup] == found[None], (rollup, window_size)


def test_each_query_reads_the_rollup_with_the_fewest_rows_that_answers_it() -> None:
    meter = make_meter("ns", Aggregation.SUM)
    hour = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    cases = {
        "whole hours": MeterQueryInput(from_=hour, to=hour + timedelta(hours=3)),
        "whole minutes, three hours": MeterQueryInput(from_=hour + timedelta(minutes=1), to=hour + timedelta(hours=3)),
        "a bound inside a minute, three hours": MeterQueryInput(
            from_=hour + timedelta(seconds=30), to=hour + timedelta(hours=3)
        ),
        "a day of whole hours between odd bounds": MeterQueryInput(
            from_=hour + timedelta(seconds=30), to=hour + timedelta(days=1, hours=1, milliseconds=5)
        ),
        "an open end": MeterQueryInput(from_=hour + timedelta(seconds=30)),
        "inside one minute": MeterQueryInput(from_=hour + timedelta(seconds=1), to=hour + timedelta(seconds=59)),
        "minute windows": MeterQueryInput(window_size="MINUTE"),
        "a zone, no lower bound": MeterQueryInput(window_size="HOUR", window_time_zone="Europe/Berlin"),
        "a zone, from 1973": MeterQueryInput(
            window_size="HOUR", window_time_zone="Europe/Berlin", from_=WHOLE_MINUTE_OFFSETS_SINCE
        ),
        "UTC days, no bounds": MeterQueryInput(window_size="DAY"),
    }
    chosen = {name: rollup_for(data.validate(meter)) for name, data in cases.items()}
    assert chosen == {
        "whole hours": Rollup.HOUR,
        "whole minutes, three hours": Rollup.MINUTE,
        "a bound inside a minute, three hours": Rollup.MINUTE,
        "a day of whole hours between odd bounds": Rollup.HOUR,
        "an open end": Rollup.HOUR,
        "inside one minute": None,
        "minute windows": Rollup.MINUTE,
        "a zone, no lower bound": None,
        "a zone, from 1973": Rollup.MINUTE,
        "UTC days, no bounds": Rollup.HOUR,
    }
    # Only the rollups that are ready: without the minute one, the hour one and its edges.
    three_hours = cases["a bound inside a minute, three hours"].validate(meter)
    assert rollup_for(three_hours, [Rollup.HOUR]) is Rollup.HOUR
    assert rollup_for(cases["minute windows"].validate(meter), [Rollup.HOUR]) is None
    with pytest.raises(ValueError, match="cannot be answered exactly"):
        render_meter_query(meter, cases["minute windows"].validate(meter), rollup=Rollup.HOUR)
    with pytest.raises(ValueError, match="no whole minute"):
        render_meter_query(meter, cases["inside one minute"].validate(meter), rollup=Rollup.MINUTE, filled_to_ms=0)


def test_a_rollup_query_reads_only_the_group_by_keys_it_uses() -> None:
    # The edges are read from the events, on the bench's data about every granule (events sorted by
    # subject before time): a key the query neither groups nor filters by would be read and grouped
    # by for nothing, and a SUM by subject would read the string map for it (docs/performance.md).
    # The answers with and without keys are held to the events' by the property tests above.
    meter = make_meter("ns", Aggregation.SUM)
    hour = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    bounds = {"from_": hour + timedelta(seconds=30), "to": hour + timedelta(days=2, seconds=5), "window_size": "HOUR"}

    def statement(**query: Any) -> str:
        rollup_query = MeterQueryInput(**bounds, **query).validate(meter)
        return render_meter_query(meter, rollup_query, maps_complete=True, rollup=Rollup.HOUR, filled_to_ms=0)[0]

    by_subject = statement(group_by=["subject"])
    assert "str_values" not in by_subject and "key_" not in by_subject and "first_minute" not in by_subject
    by_model = statement(group_by=["model"])
    assert by_model.count("str_values[") == 2 and "key_0" in by_model and "key_1" not in by_model
    filtered = statement(advanced_filters={"region": FilterString(eq="eu")})
    assert "key_1" in filtered and "key_0" not in filtered
    no_window = MeterQueryInput(**{**bounds, "window_size": None}).validate(meter)
    assert "first_minute" in render_meter_query(meter, no_window, rollup=Rollup.HOUR, filled_to_ms=0)[0]


def test_every_zone_offset_since_1973_is_whole_minutes() -> None:
    # What `rollup_answers_exactly` relies on for windows in a zone: a UTC minute never straddles
    # a window boundary. Offsets are sampled every 5 days through 2037 in the installed zone data.
    odd = set()
    for name in available_timezones():
        zone = ZoneInfo(name)
        moment = WHOLE_MINUTE_OFFSETS_SINCE
        while moment.year < 2038:
            offset = moment.astimezone(zone).utcoffset()
            if offset is not None and not math.isclose(offset.total_seconds() % 60, 0):
                odd.add(name)
                break
            moment += timedelta(days=5)
    assert odd == set()
