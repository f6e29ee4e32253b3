"""Meter query SQL rendered by adapters/clickhouse/meter_sql.py, run on a real chDB.

The events table comes from migrations/clickhouse/0001_events.sql. Each test writes its events
into its own namespace, which doubles as a check that every query is scoped to one namespace.
Events are stored three ways - values extracted into the maps (as the sink writes them), values
only in the raw `data`, and values only in the maps - and every way must give the same answer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from adapters.clickhouse.meter_sql import (
    render_group_by_values_query,
    render_meter_query,
    render_subjects_query,
    to_query_rows,
)
from domain.metering.jsonpath import extract_values, parse_jsonpath
from domain.metering.models import Aggregation, Meter
from domain.metering.query import FilterString, MeterQueryInput, QueryRow
from tests.support import event_store
from tests.support.services import require_module

require_module("chdb")

MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "clickhouse" / "0001_events.sql"
T0 = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
Storage = Literal["extracted", "data_only", "maps_only"]
STORAGES: tuple[Storage, ...] = ("extracted", "data_only", "maps_only")
_namespaces = itertools.count()


@pytest.fixture(scope="module", params=event_store.KINDS)
def ch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    # chDB holds one data directory per process; closing the client lets the next module open its own.
    # "http": the same engine behind the test suite's ClickHouse HTTP endpoint (clickhouse-connect's HTTP path).
    client = event_store.client(request, request.param, tmp_path_factory.mktemp("meter_sql"), "meter_sql")
    statements = "\n".join(line for line in MIGRATION.read_text().splitlines() if not line.strip().startswith("--"))
    for statement in statements.split(";\n"):
        if statement.strip():
            client.command(statement.strip().rstrip(";"))
    yield client
    client.close()


def new_namespace() -> str:
    return f"ns{next(_namespaces)}"


def make_meter(
    namespace: str,
    aggregation: Aggregation = Aggregation.SUM,
    value_property: str | None = "$.tokens",
    group_by: Mapping[str, str] | None = None,
    event_from: datetime | None = None,
) -> Meter:
    return Meter(
        id="01HMETER",
        namespace=namespace,
        slug="meter",
        name="meter",
        description=None,
        aggregation=aggregation,
        event_type="prompt",
        event_from=event_from,
        value_property=None if aggregation is Aggregation.COUNT else value_property,
        group_by=dict(group_by if group_by is not None else {"model": "$.model", "type": "$.type"}),
        metadata={},
        annotations={},
        created_at=T0,
        updated_at=T0,
    )


@dataclass
class Ev:
    subject: str
    time: datetime
    data: Any
    type: str = "prompt"
    id: str | None = None  # id-{index} when None
    ingested_at: datetime | None = None  # T0 when None


def insert(ch: Client, namespace: str, meter: Meter, events: Sequence[Ev], storage: Storage = "extracted") -> None:
    numeric = [parse_jsonpath(meter.value_property)] if meter.value_property and meter.aggregation.numeric else []
    strings = [parse_jsonpath(p) for p in meter.group_by.values()]
    if meter.value_property and not meter.aggregation.numeric:
        strings.append(parse_jsonpath(meter.value_property))
    rows = []
    for i, ev in enumerate(events):
        text = orjson.dumps(ev.data).decode() if ev.data is not None else ""
        num: dict[str, float] = {}
        txt: dict[str, str] = {}
        if storage != "data_only":
            num, txt = extract_values(orjson.loads(text) if text else None, numeric, strings)
        if storage == "maps_only":
            text = "{}"
        event_id = ev.id if ev.id is not None else f"id-{i}"
        ingested_at = ev.ingested_at if ev.ingested_at is not None else T0
        rows.append([namespace, event_id, ev.type, "test", ev.subject, ev.time, text, num, txt, ingested_at])
    ch.insert(
        "events",
        rows,
        column_names=[
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
        ],
    )


def run(
    ch: Client,
    meter: Meter,
    data: MeterQueryInput,
    customer_subjects: Mapping[str, Sequence[str]] | None = None,
    maps_complete: bool = False,
) -> list[QueryRow]:
    query = data.validate(meter, customer_subjects)
    sql, parameters = render_meter_query(meter, query, maps_complete=maps_complete)
    return to_query_rows(query, ch.query(sql, parameters=parameters).result_rows)


def simple(rows: list[QueryRow]) -> list[tuple[Any, ...]]:
    return [(r.value, r.subject, r.customer_id, tuple(sorted(r.group_by.items()))) for r in rows]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# Values as OpenMeter reads them: numbers and numeric strings count; everything else is skipped.
VALUE_EVENTS = [
    Ev("s1", at(0), {"tokens": 1, "model": "a", "user": "u1"}),
    Ev("s1", at(1), {"tokens": "2.5", "model": "a", "user": "u2"}),
    Ev("s2", at(2), {"tokens": 4, "model": "b", "user": "u1"}),
    Ev("s2", at(3), {"tokens": "abc", "model": "b", "user": None}),
    Ev("s2", at(4), {"tokens": None, "model": "b", "user": 1.50}),
    Ev("s2", at(5), {"tokens": True, "user": "1.5"}),
    Ev("s2", at(6), {"tokens": {"x": 1}, "model": "b"}),
    Ev("s2", at(7), {"tokens": "nan", "model": "a"}),
    Ev("s2", at(8), {"tokens": "inf", "model": "a"}),
    Ev("s2", at(9), {"tokens": "-Infinity", "model": "a"}),
    Ev("s2", at(10), {"model": "a"}),
    Ev("s2", at(11), None),
]


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize(
    ("aggregation", "value_property", "expected"),
    [
        (Aggregation.SUM, "$.tokens", 7.5),
        (Aggregation.COUNT, None, 12.0),
        (Aggregation.AVG, "$.tokens", 2.5),
        (Aggregation.MIN, "$.tokens", 1.0),
        (Aggregation.MAX, "$.tokens", 4.0),
        # The latest event with a countable value: later invalid values are skipped.
        (Aggregation.LATEST, "$.tokens", 4.0),
        # u1, u2, '1.5' (1.50 re-serialized and the string '1.5') and '' for the events without a
        # user; JSON null is not counted.
        (Aggregation.UNIQUE_COUNT, "$.user", 4.0),
    ],
)
def test_every_aggregation(
    ch: Client, storage: Storage, aggregation: Aggregation, value_property: str | None, expected: float
) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace, aggregation, value_property)
    insert(ch, namespace, meter, VALUE_EVENTS, storage)
    rows = run(ch, meter, MeterQueryInput())
    assert [r.value for r in rows] == [expected]
    assert rows[0].window_start == at(0) and rows[0].window_end == at(12)
    if storage != "data_only":
        # Every event holds the meter's paths in its maps, so the data column may be skipped.
        assert run(ch, meter, MeterQueryInput(), maps_complete=True) == rows


@pytest.mark.parametrize("later_first", [False, True])
def test_latest_takes_the_event_ingested_last_among_those_of_one_millisecond(ch: Client, later_first: bool) -> None:
    # argMax over the event time alone picks whichever of two same-millisecond events it reads
    # first, which depends on the parts and threads: one gauge could answer 1 on one call and 2
    # on the next, and an invoice's quantity differ from the query that checks it. The event
    # ingested last wins, then the greatest (source, id); each event is inserted as a part of its own.
    namespace = new_namespace()
    meter = make_meter(namespace, Aggregation.LATEST)
    earlier = Ev("s", at(5), {"tokens": 1}, id="b", ingested_at=T0)
    later = Ev("s", at(5), {"tokens": 2}, id="a", ingested_at=T0 + timedelta(milliseconds=1))
    for event in (later, earlier) if later_first else (earlier, later):
        insert(ch, namespace, meter, [event])
    assert [r.value for r in run(ch, meter, MeterQueryInput())] == [2.0]
    # Ingested together: the greater id.
    same = [Ev("t", at(7), {"tokens": 3}, id="y"), Ev("t", at(7), {"tokens": 4}, id="z")]
    for event in reversed(same) if later_first else same:
        insert(ch, namespace, meter, [event])
    rows = run(ch, meter, MeterQueryInput(group_by=["subject"]))
    assert {r.subject: r.value for r in rows} == {"s": 2.0, "t": 4.0}


def test_storage_forms_agree_on_a_grouped_windowed_query(ch: Client) -> None:
    results = []
    data = MeterQueryInput(
        window_size="MINUTE",
        group_by=["model", "type", "subject"],
        advanced_filters={"model": FilterString(ne="zzz")},
    )
    for storage in STORAGES:
        namespace = new_namespace()
        meter = make_meter(namespace)
        insert(ch, namespace, meter, VALUE_EVENTS, storage)
        for maps_complete in (False, True) if storage != "data_only" else (False,):
            rows = run(ch, meter, data, maps_complete=maps_complete)
            results.append([(r.window_start, r.window_end, *simple([r])[0]) for r in rows])
    assert len(results) == 5
    assert all(result == results[0] for result in results)
    assert [row[2] for row in results[0]] == [1.0, 2.5, 4.0]
    assert results[0][0][5] == (("model", "a"), ("type", ""))


def test_group_with_only_unusable_values_is_omitted(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    insert(ch, namespace, meter, VALUE_EVENTS)
    rows = run(ch, meter, MeterQueryInput(subjects=["s1", "s2"], group_by=["model"]))
    # s2 events without a model ('' group) hold only `true` and a missing value: no row.
    assert simple(rows) == [
        (3.5, "s1", None, (("model", "a"),)),
        (4.0, "s2", None, (("model", "b"),)),
    ]


def test_count_counts_events_regardless_of_values(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace, Aggregation.COUNT)
    insert(ch, namespace, meter, VALUE_EVENTS)
    rows = run(ch, meter, MeterQueryInput(group_by=["model"]))
    assert {r.group_by["model"]: r.value for r in rows} == {"": 2.0, "a": 6.0, "b": 4.0}


def test_other_event_types_and_namespaces_are_ignored(ch: Client) -> None:
    namespace, other = new_namespace(), new_namespace()
    meter = make_meter(namespace)
    insert(ch, namespace, meter, [Ev("s", at(0), {"tokens": 1}), Ev("s", at(0), {"tokens": 10}, type="other")])
    insert(ch, other, make_meter(other), [Ev("s", at(0), {"tokens": 100})])
    assert [r.value for r in run(ch, meter, MeterQueryInput())] == [1.0]


# --- time range and total window ----------------------------------------------------------------


def test_from_inclusive_to_exclusive(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    insert(ch, namespace, meter, [Ev("s", at(m), {"tokens": 10**m}) for m in range(5)])
    rows = run(ch, meter, MeterQueryInput(from_=at(1), to=at(3)))
    assert [(r.value, r.window_start, r.window_end) for r in rows] == [(110.0, at(1), at(3))]


def test_bounds_are_compared_at_whole_seconds(ch: Client) -> None:
    # OpenMeter stores event time as DateTime (seconds) and compares with Unix seconds.
    namespace = new_namespace()
    meter = make_meter(namespace)
    base = T0 + timedelta(seconds=30)
    insert(
        ch,
        namespace,
        meter,
        [
            Ev("s", base + timedelta(milliseconds=200), {"tokens": 1}),
            Ev("s", base + timedelta(seconds=5, milliseconds=300), {"tokens": 2}),
        ],
    )
    rows = run(
        ch,
        meter,
        MeterQueryInput(from_=base + timedelta(milliseconds=700), to=base + timedelta(seconds=5, milliseconds=900)),
    )
    assert [r.value for r in rows] == [1.0]
    assert rows[0].window_start == base + timedelta(milliseconds=700)


def test_total_window_without_bounds_uses_minute_floors(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    insert(ch, namespace, meter, [Ev("s", at(0.75), {"tokens": 1}), Ev("s", at(42.5), {"tokens": 2})])
    rows = run(ch, meter, MeterQueryInput())
    assert [(r.value, r.window_start, r.window_end) for r in rows] == [(3.0, at(0), at(43))]


def test_total_window_per_group_has_its_own_span(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    insert(
        ch,
        namespace,
        meter,
        [Ev("a", at(0), {"tokens": 1}), Ev("a", at(5), {"tokens": 1}), Ev("b", at(10.5), {"tokens": 1})],
    )
    rows = run(ch, meter, MeterQueryInput(group_by=["subject"]))
    assert [(r.subject, r.window_start, r.window_end) for r in rows] == [("a", at(0), at(6)), ("b", at(10), at(11))]
    rows = run(ch, meter, MeterQueryInput(group_by=["subject"], to=at(60)))
    assert [(r.subject, r.window_start, r.window_end) for r in rows] == [("a", at(0), at(60)), ("b", at(10), at(60))]


def test_event_from_clamps_but_window_echoes_the_request(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace, event_from=at(2))
    insert(ch, namespace, meter, [Ev("s", at(m), {"tokens": 1}) for m in range(5)])
    rows = run(ch, meter, MeterQueryInput(from_=at(0), to=at(10)))
    assert [(r.value, r.window_start, r.window_end) for r in rows] == [(3.0, at(0), at(10))]
    rows = run(ch, meter, MeterQueryInput())
    assert [(r.value, r.window_start, r.window_end) for r in rows] == [(3.0, at(2), at(5))]


def test_no_events(ch: Client) -> None:
    namespace = new_namespace()
    assert run(ch, make_meter(namespace), MeterQueryInput()) == []
    assert run(ch, make_meter(namespace), MeterQueryInput(group_by=["model"])) == []
    # As in OpenMeter: an ungrouped COUNT answers its single row even over no events.
    rows = run(ch, make_meter(namespace, Aggregation.COUNT), MeterQueryInput(from_=at(0), to=at(1)))
    assert [(r.value, r.window_start, r.window_end) for r in rows] == [(0.0, at(0), at(1))]
    assert run(ch, make_meter(namespace, Aggregation.COUNT), MeterQueryInput(window_size="HOUR")) == []


# --- windows -------------------------------------------------------------------------------------


def windows(rows: list[QueryRow]) -> list[tuple[datetime, datetime, float]]:
    return [(r.window_start, r.window_end, r.value) for r in rows]


def test_minute_and_hour_windows(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    insert(
        ch,
        namespace,
        meter,
        [Ev("s", at(0.5), {"tokens": 1}), Ev("s", at(0.9), {"tokens": 2}), Ev("s", at(61), {"tokens": 4})],
    )
    assert windows(run(ch, meter, MeterQueryInput(window_size="MINUTE"))) == [
        (at(0), at(1), 3.0),
        (at(61), at(62), 4.0),
    ]
    assert windows(run(ch, meter, MeterQueryInput(window_size="HOUR"))) == [
        (at(0), at(60), 3.0),
        (at(60), at(120), 4.0),
    ]


def test_windows_are_epoch_aligned_and_may_start_before_from(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    insert(ch, namespace, meter, [Ev("s", at(30), {"tokens": 1}), Ev("s", at(50), {"tokens": 2})])
    rows = run(ch, meter, MeterQueryInput(window_size="HOUR", from_=at(40)))
    assert windows(rows) == [(at(0), at(60), 2.0)]


def test_day_and_month_windows_in_utc(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    times = [datetime(2024, 1, 31, 23, 59, tzinfo=UTC), datetime(2024, 2, 1, 0, 0, tzinfo=UTC)]
    insert(ch, namespace, meter, [Ev("s", t, {"tokens": 1}) for t in times])
    day = timedelta(days=1)
    assert windows(run(ch, meter, MeterQueryInput(window_size="DAY"))) == [
        (datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 1, 31, tzinfo=UTC) + day, 1.0),
        (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 2, 2, tzinfo=UTC), 1.0),
    ]
    assert windows(run(ch, meter, MeterQueryInput(window_size="MONTH"))) == [
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC), 1.0),
        (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC), 1.0),
    ]


LA = ZoneInfo("America/Los_Angeles")


@pytest.mark.parametrize(("start", "days"), [(datetime(2024, 3, 7), 7), (datetime(2024, 10, 31), 7)])
def test_los_angeles_day_windows_are_continuous_across_dst(ch: Client, start: datetime, days: int) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    # Events at local 00:30 and 23:30, the edges of each local day.
    events = []
    for d in range(days):
        day = (start + timedelta(days=d)).date()
        for hour, minute in ((0, 30), (23, 30)):
            local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=LA)
            events.append(Ev("s", local.astimezone(UTC), {"tokens": 1}))
    insert(ch, namespace, meter, events)
    rows = run(ch, meter, MeterQueryInput(window_size="DAY", window_time_zone="America/Los_Angeles"))
    assert [r.value for r in rows] == [2.0] * days
    for r in rows:
        local_start = r.window_start.astimezone(LA)
        assert (local_start.hour, local_start.minute) == (0, 0)
        assert r.window_end.astimezone(LA) == datetime.combine(
            local_start.date() + timedelta(days=1), local_start.time(), LA
        )
    for previous, current in itertools.pairwise(rows):
        assert previous.window_end == current.window_start
    lengths = {r.window_start.astimezone(LA).date().isoformat(): r.window_end - r.window_start for r in rows}
    if start.month == 3:
        assert lengths["2024-03-10"] == timedelta(hours=23)
    else:
        assert lengths["2024-11-03"] == timedelta(hours=25)
    assert sum(1 for length in lengths.values() if length == timedelta(hours=24)) == days - 1


def test_day_windows_where_a_dst_change_skips_local_midnight(ch: Client) -> None:
    # America/Santiago springs forward at midnight: 2026-09-06 begins at 01:00 (-03) and has 23
    # hours. Its window starts at that first instant and the day before ends there, with no gap.
    santiago = ZoneInfo("America/Santiago")
    namespace = new_namespace()
    meter = make_meter(namespace)
    local = [datetime(2026, 9, d, h, 30, tzinfo=santiago) for d in (5, 6, 7) for h in (1, 23)]
    insert(ch, namespace, meter, [Ev("s", t.astimezone(UTC), {"tokens": 1}) for t in local])
    rows = run(ch, meter, MeterQueryInput(window_size="DAY", window_time_zone="America/Santiago"))
    bounds = [datetime(2026, 9, 5, tzinfo=santiago), datetime(2026, 9, 6, 1, tzinfo=santiago)]
    bounds += [datetime(2026, 9, d, tzinfo=santiago) for d in (7, 8)]
    assert windows(rows) == [(a, b, 2.0) for a, b in itertools.pairwise(bounds)]
    assert bounds[2] - bounds[1] == timedelta(hours=23)


def test_month_and_hour_windows_in_other_zones(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    # 2024-03-01 07:30 UTC is still February in Los Angeles; 10:40 UTC is 16:10 in Kolkata.
    insert(
        ch,
        namespace,
        meter,
        [
            Ev("s", datetime(2024, 3, 1, 7, 30, tzinfo=UTC), {"tokens": 1}),
            Ev("s", datetime(2024, 3, 1, 8, 30, tzinfo=UTC), {"tokens": 2}),
        ],
    )
    rows = run(ch, meter, MeterQueryInput(window_size="MONTH", window_time_zone="America/Los_Angeles"))
    assert windows(rows) == [
        (datetime(2024, 2, 1, tzinfo=LA), datetime(2024, 3, 1, tzinfo=LA), 1.0),
        (datetime(2024, 3, 1, tzinfo=LA), datetime(2024, 4, 1, tzinfo=LA), 2.0),
    ]
    assert windows(rows)[1][1].astimezone(UTC) == datetime(2024, 4, 1, 7, tzinfo=UTC)  # PDT by then
    rows = run(ch, meter, MeterQueryInput(window_size="HOUR", window_time_zone="Asia/Kolkata"))
    assert [(r.window_start, r.window_end) for r in rows] == [
        (datetime(2024, 3, 1, 7, 30, tzinfo=UTC), datetime(2024, 3, 1, 8, 30, tzinfo=UTC)),
        (datetime(2024, 3, 1, 8, 30, tzinfo=UTC), datetime(2024, 3, 1, 9, 30, tzinfo=UTC)),
    ]


# --- subjects, customers, filters ----------------------------------------------------------------

GROUP_EVENTS = [
    Ev("alice", at(0), {"tokens": 1, "model": "gpt-4", "type": "input"}),
    Ev("alice", at(1), {"tokens": 2, "model": "gpt-4o", "type": "output"}),
    Ev("bob", at(2), {"tokens": 4, "model": "GPT-4", "type": "input"}),
    Ev("bob", at(3), {"tokens": 8, "model": "claude", "type": "input"}),
    Ev("carol", at(4), {"tokens": 16, "type": "output"}),
]


@pytest.fixture(scope="module")
def grouped(ch: Client) -> dict[Storage, Meter]:
    meters = {}
    for storage in STORAGES:
        namespace = new_namespace()
        meter = make_meter(namespace)
        insert(ch, namespace, meter, GROUP_EVENTS, storage)
        meters[storage] = meter
    return meters


def total(ch: Client, grouped: dict[Storage, Meter], data: MeterQueryInput, **kwargs: Any) -> float:
    values = set()
    for meter in grouped.values():
        values.add(sum(r.value for r in run(ch, meter, data, **kwargs)))
    assert len(values) == 1, values
    return values.pop()


def test_subject_filter_groups_by_subject(ch: Client, grouped: dict[Storage, Meter]) -> None:
    for meter in grouped.values():
        rows = run(ch, meter, MeterQueryInput(subjects=["alice", "carol", "nobody"]))
        assert simple(rows) == [(3.0, "alice", None, ()), (16.0, "carol", None, ())]


def test_group_by_subject_and_key(ch: Client, grouped: dict[Storage, Meter]) -> None:
    for meter in grouped.values():
        rows = run(ch, meter, MeterQueryInput(group_by=["subject", "type"]))
        assert simple(rows) == [
            (1.0, "alice", None, (("type", "input"),)),
            (2.0, "alice", None, (("type", "output"),)),
            (12.0, "bob", None, (("type", "input"),)),
            (16.0, "carol", None, (("type", "output"),)),
        ]


def test_customers_map_subjects_to_customer_ids(ch: Client, grouped: dict[Storage, Meter]) -> None:
    mapping = {"cust-a": ["alice", "carol"], "cust-b": ["bob"]}
    for meter in grouped.values():
        rows = run(ch, meter, MeterQueryInput(filter_customer_ids=["cust-a", "cust-b"]), mapping)
        assert simple(rows) == [(19.0, None, "cust-a", ()), (12.0, None, "cust-b", ())]
        rows = run(ch, meter, MeterQueryInput(filter_customer_ids=["cust-b"], group_by=["model"]), mapping)
        assert simple(rows) == [
            (4.0, None, "cust-b", (("model", "GPT-4"),)),
            (8.0, None, "cust-b", (("model", "claude"),)),
        ]


def test_customers_without_subjects_filter_nothing(ch: Client, grouped: dict[Storage, Meter]) -> None:
    # OpenMeter's behaviour: no subject keys at all means no subject filter and an empty customer_id.
    for meter in grouped.values():
        rows = run(ch, meter, MeterQueryInput(filter_customer_ids=["empty"]), {"empty": []})
        assert simple(rows) == [(31.0, None, "", ())]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"model": FilterString(eq="gpt-4")}, 1.0),
        ({"model": FilterString(ne="gpt-4")}, 30.0),  # carol has no model: '' <> 'gpt-4'
        ({"model": FilterString(in_=("gpt-4", "claude"))}, 9.0),
        ({"model": FilterString(nin=("gpt-4", "claude"))}, 22.0),
        ({"model": FilterString(in_=())}, 0.0),
        ({"model": FilterString(like="gpt-4%")}, 3.0),
        ({"model": FilterString(nlike="gpt-4%")}, 28.0),
        ({"model": FilterString(ilike="GPT-4%")}, 7.0),
        ({"model": FilterString(nilike="gpt%")}, 24.0),
        ({"model": FilterString(gt="gpt-4")}, 2.0),
        ({"model": FilterString(gte="gpt-4")}, 3.0),
        ({"model": FilterString(lt="claude")}, 20.0),  # 'GPT-4' and '' sort before 'claude'
        ({"model": FilterString(lte="claude")}, 28.0),
        ({"model": FilterString(and_=(FilterString(like="gpt%"), FilterString(ne="gpt-4o")))}, 1.0),
        ({"model": FilterString(or_=(FilterString(eq="claude"), FilterString(eq="gpt-4o")))}, 10.0),
        ({"model": FilterString(like="gpt%"), "type": FilterString(eq="output")}, 2.0),
        ({"model": FilterString()}, 31.0),
    ],
)
def test_advanced_filters(
    ch: Client, grouped: dict[Storage, Meter], filters: dict[str, FilterString], expected: float
) -> None:
    assert total(ch, grouped, MeterQueryInput(advanced_filters=filters)) == expected


def test_filter_group_by(ch: Client, grouped: dict[Storage, Meter]) -> None:
    assert total(ch, grouped, MeterQueryInput(filter_group_by={"type": ["input"]})) == 13.0
    assert total(ch, grouped, MeterQueryInput(filter_group_by={"type": ["input", "output"], "model": []})) == 31.0
    assert total(ch, grouped, MeterQueryInput(filter_group_by={"model": ["claude"], "type": ["input"]})) == 8.0


# --- hostile input --------------------------------------------------------------------------------

HOSTILE = [
    "'); DROP TABLE events; --",
    "' OR '1'='1",
    '" OR "1"="1',
    "{namespace:String}",
    "{p0:String}",
    "\\",
    "\\'",
    "%",
    "_",
    "a\x00b",
    "line\nbreak",
    "ünïcødé 😀",
    "$.tokens",
    "",
]


def test_hostile_values_are_data(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace, group_by={"model": "$.model", "odd": "$['it\\'s \"odd\"']"})
    events = [
        Ev(value or "empty", at(i), {"tokens": 1, "model": value, 'it\'s "odd"': value})
        for i, value in enumerate(HOSTILE)
    ]
    insert(ch, namespace, meter, events)
    before = ch.query("SELECT count() FROM events").result_rows[0][0]

    rows = run(ch, meter, MeterQueryInput(group_by=["model", "odd"]))
    assert sorted(r.group_by["model"] or "" for r in rows) == sorted(HOSTILE)
    assert all(r.group_by["model"] == r.group_by["odd"] for r in rows)

    for value in HOSTILE:
        if value:
            assert [
                r.value for r in run(ch, meter, MeterQueryInput(advanced_filters={"model": FilterString(eq=value)}))
            ] == [1.0]
            assert [r.value for r in run(ch, meter, MeterQueryInput(filter_group_by={"odd": [value]}))] == [1.0]
            assert simple(run(ch, meter, MeterQueryInput(subjects=[value]))) == [(1.0, value, None, ())]
        hostile_or = FilterString(
            or_=(FilterString(like=value or "x"), FilterString(nin=tuple(v for v in HOSTILE if v)))
        )
        run(ch, meter, MeterQueryInput(advanced_filters={"model": hostile_or}))
    # A trailing lone backslash (which ClickHouse refuses in a pattern) means a literal backslash.
    for op in ("like", "ilike"):
        only_backslash = MeterQueryInput(advanced_filters={"model": FilterString(**{op: "\\"})})
        assert [r.value for r in run(ch, meter, only_backslash)] == [1.0]
    assert [
        r.value for r in run(ch, meter, MeterQueryInput(advanced_filters={"model": FilterString(nlike="%\\")}))
    ] == [13.0]
    # LIKE keeps its wildcard meaning (as in OpenMeter): '%' matches every model.
    assert total(ch, {"extracted": meter}, MeterQueryInput(advanced_filters={"model": FilterString(like="%")})) == 14.0
    rows = run(ch, meter, MeterQueryInput(filter_customer_ids=["c"]), {"c": HOSTILE[:3]})
    assert [(r.value, r.customer_id) for r in rows] == [(3.0, "c")]

    assert ch.query("SELECT count() FROM events").result_rows[0][0] == before
    sql, _ = render_meter_query(
        meter,
        MeterQueryInput(
            subjects=HOSTILE,
            group_by=["model"],
            advanced_filters={"model": FilterString(in_=tuple(v for v in HOSTILE if v))},
        ).validate(meter),
    )
    for value in HOSTILE:
        if len(value) > 2 and "{" not in value:
            assert value not in sql


# --- helper endpoints -------------------------------------------------------------------------------


def test_subjects_query(ch: Client, grouped: dict[Storage, Meter]) -> None:
    meter = grouped["extracted"]
    namespace = meter.namespace
    insert(ch, namespace, meter, [Ev("dave", at(100), {"tokens": 1}, type="other")])
    assert [r[0] for r in ch.query(*render_subjects_query(namespace, meter)).result_rows] == ["alice", "bob", "carol"]
    assert [r[0] for r in ch.query(*render_subjects_query(namespace, None)).result_rows] == [
        "alice",
        "bob",
        "carol",
        "dave",
    ]
    assert [r[0] for r in ch.query(*render_subjects_query(namespace, meter, at(2), at(4))).result_rows] == ["bob"]
    assert [r[0] for r in ch.query(*render_subjects_query(namespace, meter, search="AL")).result_rows] == ["alice"]


def test_group_by_values_query(ch: Client, grouped: dict[Storage, Meter]) -> None:
    for meter in grouped.values():

        def values(**kwargs: Any) -> list[str]:
            sql, parameters = render_group_by_values_query(meter.namespace, meter, "model", **kwargs)  # noqa: B023
            return [r[0] for r in ch.query(sql, parameters=parameters).result_rows]

        assert values(from_=at(0)) == ["", "GPT-4", "claude", "gpt-4", "gpt-4o"]
        assert values(from_=at(1), to=at(3)) == ["GPT-4", "gpt-4o"]
        assert values(from_=at(0), search="GPT") == ["GPT-4", "gpt-4", "gpt-4o"]
        # Without bounds: the last 24 hours before `now`.
        assert values(now=at(60 * 24 + 2.5)) == ["", "claude"]
    with pytest.raises(KeyError):
        render_group_by_values_query("ns", grouped["extracted"], "region")


def test_non_finite_aggregate_fails_like_openmeter(ch: Client) -> None:
    namespace = new_namespace()
    meter = make_meter(namespace)
    insert(ch, namespace, meter, [Ev("s", at(0), {"tokens": 1.5e308}), Ev("s", at(1), {"tokens": 1.5e308})])
    with pytest.raises(ValueError, match="non-finite"):
        run(ch, meter, MeterQueryInput())
    assert math.isfinite(run(ch, make_meter(namespace, Aggregation.MAX), MeterQueryInput())[0].value)
