"""Meter query rows encoded by ClickHouse (adapters/clickhouse/meter_wire.py) are the messages the
rows read into Python and built one by one give, after decoding both.

The reference is how the API built responses before: `to_query_rows`, then a MeterQueryRow per row
(`reference_response`, kept here). Random events and queries as in test_meter_rollup_chdb.py:
every aggregation, window size and time zone (DST days), group-bys by subject, customer and meter
keys, filters, bounded and open ranges, empty results; the raw query and every rollup that may
answer it; on a real chDB and over the HTTP client.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.clickhouse import meter_wire
from adapters.clickhouse.client import format_schema_settings
from adapters.clickhouse.meter_sql import (
    Rollup,
    render_meter_query,
    render_rollup_ddl,
    render_rollup_drop,
    rollup_for,
    to_query_rows,
)
from domain.errors import ValidationError
from domain.metering.models import Aggregation, Meter
from domain.metering.query import MeterQueryInput, QueryRow
from server.convert import set_timestamp
from server.servicers.meters import query_response
from tally.v1 import meters_pb2
from tests.integration.test_meter_rollup_chdb import (
    DAYS,
    MIGRATION,
    _namespaces,
    event,
    fill,
    insert,
    make_meter,
    queries,
)
from tests.support import event_store
from tests.support.services import require_module

require_module("chdb")


@pytest.fixture(scope="module", params=event_store.KINDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, str]]:
    url = event_store.event_store_url(request, request.param, tmp_path_factory.mktemp("wire"), "wire")
    client = event_store.client_at(url)
    statements = "\n".join(line for line in MIGRATION.read_text().splitlines() if not line.strip().startswith("--"))
    for statement in statements.split(";\n"):
        if statement.strip():
            client.command(statement.strip().rstrip(";"))
    yield client, url
    client.close()


def encoded_rows(store: tuple[Client, str], sql: str, parameters: dict[str, Any]) -> bytes:
    """As ClickHouse.query_protobuf reads them, on a plain client."""
    ch, url = store
    settings = format_schema_settings(url, meter_wire.ROWS_SCHEMA, meter_wire.ROWS_MESSAGE)
    return bytes(ch.raw_query(sql, parameters=parameters, settings=settings, fmt="ProtobufSingle"))


def reference_response(data: MeterQueryInput, rows: Sequence[QueryRow]) -> meters_pb2.QueryMeterResponse:
    """The response as the servicer built it from QueryRows, one message per row, until the rows
    came encoded from ClickHouse."""
    response = meters_pb2.QueryMeterResponse()
    for row in rows:
        message = response.data.add(value=row.value)
        message.window_start.seconds, message.window_start.nanos = meter_wire.seconds_nanos(row.window_start)
        message.window_end.seconds, message.window_end.nanos = meter_wire.seconds_nanos(row.window_end)
        if row.subject is not None:
            message.subject = row.subject
        if row.customer_id is not None:
            message.customer_id = row.customer_id
        if row.group_by:
            message.group_by.update({key: value or "" for key, value in row.group_by.items()})
    set_timestamp(getattr(response, "from"), data.from_)
    set_timestamp(response.to, data.to)
    if data.window_size is not None:
        response.window_size = data.window_size
    return response


def both(
    store: tuple[Client, str],
    meter: Meter,
    data: MeterQueryInput,
    rollup: Rollup | None = None,
    filled_to_ms: int | None = None,
) -> tuple[Any, Any]:
    """(reference, encoded) responses, decoded."""
    ch = store[0]
    query = data.validate(meter, {"c1": ["s1", "s2"], "c2": ["s3"]})
    rendered = render_meter_query(meter, query, rollup=rollup, filled_to_ms=filled_to_ms)
    rows = to_query_rows(query, ch.query(rendered[0], parameters=rendered[1]).result_rows)
    sql, parameters = meter_wire.wrap_for_wire(query, rendered)
    encoded = encoded_rows(store, sql, parameters)
    return reference_response(data, rows), meters_pb2.QueryMeterResponse.FromString(query_response(data, encoded))


_FIXTURE_PER_EXAMPLE = [HealthCheck.function_scoped_fixture]  # one store for all examples, on purpose


@settings(max_examples=15, deadline=None, suppress_health_check=_FIXTURE_PER_EXAMPLE)
@given(
    st.sampled_from(list(Aggregation)),
    st.sampled_from(DAYS),
    st.lists(event, min_size=0, max_size=60, unique_by=lambda e: (e[1], e[2])),
    st.data(),
)
def test_encoded_rows_are_the_rows_built_one_by_one(
    store: tuple[Client, str], aggregation: Aggregation, day: datetime, events: list[Any], data: st.DataObject
) -> None:
    ch = store[0]
    meter = make_meter(f"wire{next(_namespaces)}", aggregation)
    start = day - timedelta(days=1)
    stored = [(s, start + timedelta(seconds=sec, milliseconds=ms), p) for s, sec, ms, p in events]
    # Half filled, half stored after the fill (read from the events).
    insert(ch, meter, stored[::2], 0)
    for rollup in Rollup:
        for sql, parameters in render_rollup_ddl(meter, rollup):
            ch.command(sql, parameters=parameters)
    watermark = fill(ch, meter)
    insert(ch, meter, stored[1::2], len(stored))
    for _ in range(8):
        request = data.draw(queries(day, near=[time for _, time, _ in stored]))
        try:
            query = request.validate(meter, {"c1": ["s1", "s2"], "c2": ["s3"]})
        except ValidationError:
            continue
        for rollup in (None, *(r for r in Rollup if rollup_for(query, [r]) is r)):
            reference, encoded = both(store, meter, request, rollup, watermark)
            assert encoded == reference, (request, rollup)
    for rollup in Rollup:
        for sql in render_rollup_drop(meter, rollup):
            ch.command(sql)


@pytest.mark.parametrize(
    "data",
    [
        # Many rows in many windows: the encoded rows keep the query's order.
        MeterQueryInput(window_size="MINUTE", group_by=["subject", "model"]),
        MeterQueryInput(
            window_size="HOUR",
            window_time_zone="Asia/Kathmandu",
            filter_customer_ids=["c1", "c2"],
            group_by=["customer_id", "region"],
        ),
        MeterQueryInput(window_size="DAY", window_time_zone="America/New_York", group_by=["subject"]),
        MeterQueryInput(window_size="MONTH", window_time_zone="Australia/Lord_Howe"),
        # No window: the request's bounds, at any precision, become the window.
        MeterQueryInput(
            from_=datetime(2024, 3, 30, 1, 2, 3, 456789, tzinfo=UTC),
            to=datetime(2024, 4, 1, 0, 0, 0, 1, tzinfo=UTC),
            group_by=["model", "region"],
        ),
        MeterQueryInput(to=datetime(2024, 4, 1, 0, 0, 0, 1, tzinfo=UTC)),
        MeterQueryInput(),
        # Nothing in range: an empty list with windows, and OpenMeter's single row without.
        MeterQueryInput(from_=datetime(2030, 1, 1, tzinfo=UTC), window_size="HOUR", group_by=["subject"]),
        MeterQueryInput(from_=datetime(2030, 1, 1, tzinfo=UTC)),
        MeterQueryInput(subjects=["nobody"], group_by=["subject"]),
    ],
)
@pytest.mark.parametrize("aggregation", list(Aggregation))
def test_cases(store: tuple[Client, str], aggregation: Aggregation, data: MeterQueryInput) -> None:
    meter = _filled(store[0], aggregation)
    reference, encoded = both(store, meter, data)
    assert encoded == reference
    assert len(encoded.data) == len(reference.data)


_filled_meters: dict[tuple[int, Aggregation], Meter] = {}


def _filled(ch: Client, aggregation: Aggregation) -> Meter:
    key = (id(ch), aggregation)
    if key not in _filled_meters:
        meter = make_meter(f"wirecase{next(_namespaces)}", aggregation)
        t0 = datetime(2024, 3, 30, tzinfo=UTC)
        events = [
            (
                f"s{i % 4 + 1}",
                t0 + timedelta(minutes=37 * i, milliseconds=i),
                {"tokens": (i % 9) / 4 - 0.5, "user": f"u{i % 5}", "model": ["a", "b", None][i % 3]}
                | ({"region": "r1"} if i % 2 else {}),
            )
            for i in range(400)
        ]
        insert(ch, meter, events, 0)
        _filled_meters[key] = meter
    return _filled_meters[key]


def test_a_window_at_the_unix_epoch_is_written(store: tuple[Client, str]) -> None:
    ch = store[0]
    # Protobuf writes a set Timestamp of 0 as an empty message; the schema's optional `seconds`
    # makes ClickHouse write it too, where it would omit the whole window_start.
    meter = make_meter(f"wireepoch{next(_namespaces)}", Aggregation.COUNT)
    insert(ch, meter, [("s1", datetime(1970, 1, 1, 0, 0, 30, tzinfo=UTC), {})], 0)
    reference, encoded = both(store, meter, MeterQueryInput(window_size="MINUTE"))
    assert encoded.data[0].HasField("window_start") and encoded.data[0].window_start.seconds == 0
    assert encoded == reference


def test_a_non_finite_sum_fails_the_query(store: tuple[Client, str]) -> None:
    ch = store[0]
    meter = make_meter(f"wireinf{next(_namespaces)}", Aggregation.SUM)
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    insert(ch, meter, [("s1", t0, {"tokens": 1.5e308}), ("s1", t0 + timedelta(seconds=1), {"tokens": 1.5e308})], 0)
    query = MeterQueryInput().validate(meter)
    rendered = render_meter_query(meter, query)
    with pytest.raises(ValueError, match="non-finite"):
        to_query_rows(query, ch.query(rendered[0], parameters=rendered[1]).result_rows)
    sql, parameters = meter_wire.wrap_for_wire(query, rendered)
    with pytest.raises(Exception, match="non-finite"):
        encoded_rows(store, sql, parameters)


def test_the_schema_is_the_generated_messages() -> None:
    # ROWS_SCHEMA restates tally.v1.MeterQueryRow for ClickHouse: same names, numbers and types.
    row = meters_pb2.MeterQueryRow.DESCRIPTOR
    declared = {(f.name, f.number, f.type) for f in row.fields}
    lines = meter_wire.ROWS_SCHEMA.split("message MeterQueryRow {")[1].split("}")[0].strip().splitlines()
    types = {"double": 1, "Timestamp": 11, "string": 9, "map<string,": 11}
    written = set()
    for line in lines:
        words = line.replace("optional ", "").split()
        name, number = words[-3], int(words[-1].rstrip(";"))
        written.add((name, number, types[words[0]]))
    assert written == declared
    stamp = meters_pb2.MeterQueryRow.DESCRIPTOR.fields_by_name["window_start"].message_type
    assert {(f.name, f.number) for f in stamp.fields} == {("seconds", 1), ("nanos", 2)}
    assert meters_pb2.QueryMeterResponse.DESCRIPTOR.fields_by_name["data"].number == 4
    assert {f.name for f in row.fields if f.has_presence} >= {"subject", "customer_id"}
