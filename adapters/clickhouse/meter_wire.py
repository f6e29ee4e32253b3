"""A meter query's result rows as protobuf wire bytes, built by ClickHouse: no Python object per row.

`wrap_for_wire` wraps the SQL of `render_meter_query` (whatever table it reads) in a statement that
gathers its rows, in the order the query gives them, into one array of tuples shaped like
`tally.v1.MeterQueryRow`, and asks for it in ClickHouse's ProtobufSingle format against
`ROWS_SCHEMA`. The bytes that come back are one `repeated MeterQueryRow data = 4` field: exactly
the `data` of a `tally.v1.QueryMeterResponse`, which the servicer appends to the response's other
fields unparsed (a protobuf message is the concatenation of its fields, in any order).

Why this and not rows into Python: a group-by query over a month of hours returns 10^5-10^6 rows,
and a Python object per row (clickhouse-connect's row tuples, a QueryRow, a protobuf message)
cost seconds; ClickHouse serialises them in C++ in a fraction of its query time.

It gives the same messages as reading the rows with `to_query_rows` and building a message per row,
as the API did before (tests/integration/test_meter_wire.py decodes both and compares):
- rows whose aggregate is NULL are dropped; a non-finite aggregate fails the query;
- `subject` and `customer_id` are set, even when empty, exactly when the query groups by them
  (`optional` fields in the schema: ClickHouse writes an empty string then, as protobuf does for a
  set optional field);
- `group_by` holds every meter group-by key of the query, NULL read as "";
- window bounds are whole seconds; without a window they are the request's `from`/`to` when given
  (any precision: seconds and nanos bound as parameters). Timestamp's `seconds` is `optional` here
  so that the Unix epoch itself is written (protobuf sets the message field however its values are;
  ClickHouse omits a nested message all of whose plain fields are zero).

A server needs the `format_schema_source` setting (the schema travels with the query as text, no
file on the server; adapters/clickhouse/client.py): ClickHouse 26.9, which chDB 4 embeds, has it;
older servers may not (`SELECT name FROM system.settings WHERE name = 'format_schema_source'`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters.clickhouse.meter_sql import SQLAndParameters
from domain.metering.query import MeterQuery

# tally.v1.MeterQueryRow and google.protobuf.Timestamp: the same field numbers and wire types
# (tests/integration/test_meter_wire.py holds it to the generated descriptor).
ROWS_SCHEMA = """syntax = "proto3";
message Timestamp {
  optional int64 seconds = 1;
  int32 nanos = 2;
}
message MeterQueryRow {
  double value = 1;
  Timestamp window_start = 2;
  Timestamp window_end = 3;
  optional string subject = 4;
  optional string customer_id = 5;
  map<string, string> group_by = 6;
}
message Rows {
  repeated MeterQueryRow data = 4;
}
"""

ROWS_MESSAGE = "Rows"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def seconds_nanos(moment: datetime) -> tuple[int, int]:
    """A Timestamp's fields for an aware datetime (exact: no float on the way)."""
    delta = moment - _EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds * 1000


def _bound(column: str, fixed: datetime | None, name: str, parameters: dict[str, Any]) -> str:
    if fixed is None:
        return f"tuple(toInt64({column}), toInt32(0))"
    parameters[f"wire_{name}_s"], parameters[f"wire_{name}_n"] = seconds_nanos(fixed)
    return f"tuple({{wire_{name}_s:Int64}}, {{wire_{name}_n:Int32}})"


def wrap_for_wire(query: MeterQuery, rendered: SQLAndParameters) -> SQLAndParameters:
    """The statement whose ProtobufSingle output (ROWS_SCHEMA's ROWS_MESSAGE) is the rows' `data` field.

    `rendered` is `render_meter_query`'s statement: its result columns (window_start, window_end,
    value, subject, customer_id, group_0...) are read by name, its row order kept by numbering the
    rows as they leave it and sorting the gathered array by that number (an aggregate's input order
    is not guaranteed once ClickHouse runs it on several threads).
    """
    sql, parameters = rendered
    parameters = dict(parameters)
    window_start = _bound(
        "window_start", query.requested_from if query.window_size is None else None, "from", parameters
    )
    window_end = _bound("window_end", query.to if query.window_size is None else None, "to", parameters)
    fields = ["toFloat64(assumeNotNull(value))", window_start, window_end]
    types = [
        "value Float64",
        "window_start Tuple(seconds Int64, nanos Int32)",
        "window_end Tuple(seconds Int64, nanos Int32)",
    ]
    if query.groups_by_subject:
        fields.append("toString(subject)")
        types.append("subject String")
    if query.groups_by_customer:
        fields.append("toString(customer_id)")
        types.append("customer_id String")
    keys = query.meter_group_by
    if keys:
        # The keys are user data: bound, never spliced.
        for i, key in enumerate(keys):
            parameters[f"wire_key_{i}"] = key
        pairs = ", ".join(f"{{wire_key_{i}:String}}, ifNull(toString(group_{i}), '')" for i in range(len(keys)))
        fields.append(f"map({pairs})")
        types.append("group_by Map(String, String)")
    row_type = f"Tuple({', '.join(types)})"
    # A sum past float64's range fails the query, as to_query_rows refuses it.
    finite = "throwIf(NOT isFinite(toFloat64(assumeNotNull(value))), 'meter query produced a non-finite value') = 0"
    # Only our names and functions around the rendered statement; values are bound parameters.
    rows = f"SELECT * FROM (\n{sql}\n) WHERE value IS NOT NULL AND {finite}"  # noqa: S608
    numbered = (
        f"SELECT rowNumberInAllBlocks() AS n, CAST(tuple({', '.join(fields)}), '{row_type}') AS row FROM ({rows})"  # noqa: S608
    )
    wrapped = f"SELECT arrayMap(r -> r.2, arraySort(r -> r.1, groupArray((n, row)))) AS data FROM ({numbered})"  # noqa: S608
    return wrapped, parameters
