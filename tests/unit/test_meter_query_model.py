"""Meter query validation: OpenMeter's rules for /meters/{meter}/query and its helper endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.errors import NotFoundError, ValidationError
from domain.metering.models import Aggregation, Meter, WindowSize
from domain.metering.query import (
    MAX_FILTER_DEPTH,
    FilterString,
    ListGroupByValuesInput,
    ListSubjectsInput,
    MeterQuery,
    MeterQueryInput,
    QueryRow,
    allowed_time_zones,
)
from server.servicers.meters import render_csv

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make_meter(**changes: Any) -> Meter:
    fields: dict[str, Any] = {
        "id": "01HMETER",
        "namespace": "default",
        "slug": "tokens",
        "name": "Tokens",
        "description": None,
        "aggregation": Aggregation.SUM,
        "event_type": "prompt",
        "event_from": None,
        "value_property": "$.tokens",
        "group_by": {"model": "$.model", "type": "$.type"},
        "metadata": {},
        "annotations": {},
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(changes)
    return Meter(**fields)


METER = make_meter()


def violations(data: MeterQueryInput, meter: Meter = METER, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as excinfo:
        data.validate(meter, **kwargs)
    return {v.field: v.message for v in excinfo.value.violations}


def test_defaults() -> None:
    query = MeterQueryInput().validate(METER)
    assert query == MeterQuery(
        namespace="default",
        from_=None,
        to=None,
        requested_from=None,
        window_size=None,
        time_zone="UTC",
        subjects=(),
        customer_subjects=(),
        group_by=(),
        filters=(),
        client_id=None,
    )
    assert not query.groups_by_subject and not query.groups_by_customer and query.meter_group_by == ()


# --- from / to ---------------------------------------------------------------------------------


def test_from_equal_to_is_rejected() -> None:
    assert violations(MeterQueryInput(from_=T0, to=T0)) == {"from": "from and to cannot be equal"}


def test_from_after_to_is_rejected() -> None:
    assert violations(MeterQueryInput(from_=T0 + timedelta(seconds=1), to=T0)) == {"from": "from must be before to"}


def test_naive_times_are_rejected() -> None:
    naive = datetime(2024, 1, 1)
    assert set(violations(MeterQueryInput(from_=naive, to=naive))) == {"from", "to"}


def test_from_only_and_to_only_are_fine() -> None:
    assert MeterQueryInput(from_=T0).validate(METER).from_ == T0
    assert MeterQueryInput(to=T0).validate(METER).to == T0


def test_other_offsets_are_accepted() -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2024, 1, 1, 1, tzinfo=ZoneInfo("Europe/Budapest"))
    assert violations(MeterQueryInput(from_=local, to=T0)) == {"from": "from and to cannot be equal"}


# --- eventFrom ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "event_from", "effective"),
    [
        (None, None, None),
        (None, T0, T0),
        (T0, None, T0),
        (T0 - timedelta(days=1), T0, T0),
        (T0 + timedelta(days=1), T0, T0 + timedelta(days=1)),
    ],
)
def test_event_from_clamps_from(
    requested: datetime | None, event_from: datetime | None, effective: datetime | None
) -> None:
    query = MeterQueryInput(from_=requested).validate(make_meter(event_from=event_from))
    assert query.from_ == effective
    assert query.requested_from == requested


# --- window ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["MINUTE", "HOUR", "DAY", "MONTH"])
def test_window_sizes(size: str) -> None:
    assert MeterQueryInput(window_size=size).validate(METER).window_size is WindowSize(size)


@pytest.mark.parametrize("size", ["SECOND", "WEEK", "hour", "", "DAY "])
def test_unknown_window_size(size: str) -> None:
    assert set(violations(MeterQueryInput(window_size=size))) == {"windowSize"}


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        (None, "UTC"),
        ("", "UTC"),
        ("UTC", "UTC"),
        ("America/Los_Angeles", "America/Los_Angeles"),
        ("Europe/Budapest", "Europe/Budapest"),
        ("Asia/Kolkata", "Asia/Kolkata"),
        ("Etc/GMT+5", "Etc/GMT+5"),
    ],
)
def test_time_zones(zone: str | None, expected: str) -> None:
    query = MeterQueryInput(window_size="DAY", window_time_zone=zone).validate(METER)
    assert query.time_zone == expected


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "utc", "europe/budapest", "../etc/passwd", "posix/UTC", "right/UTC", "localtime", "Local"]
)
def test_invalid_time_zone(zone: str) -> None:
    # Validated even without a window, as OpenMeter does.
    assert set(violations(MeterQueryInput(window_time_zone=zone))) == {"windowTimeZone"}


def test_allowed_time_zones_are_iana_names() -> None:
    zones = allowed_time_zones()
    assert "UTC" in zones and "America/New_York" in zones
    assert not any(zone.startswith(("posix/", "right/")) for zone in zones)


# --- subjects and group by ---------------------------------------------------------------------


def test_subject_filter_implies_group_by_subject() -> None:
    query = MeterQueryInput(subjects=["s1", "s2"]).validate(METER)
    assert query.subjects == ("s1", "s2")
    assert query.group_by == ("subject",)
    assert query.groups_by_subject


def test_empty_subject_list_is_no_filter() -> None:
    query = MeterQueryInput(subjects=[]).validate(METER)
    assert query.subjects == () and query.group_by == ()


def test_group_by_meter_keys_and_subject() -> None:
    query = MeterQueryInput(group_by=["type", "subject", "model", "type"]).validate(METER)
    assert query.group_by == ("model", "subject", "type")
    assert query.meter_group_by == ("model", "type")


def test_unknown_group_by_is_rejected() -> None:
    assert violations(MeterQueryInput(group_by=["model", "region", "$.model"])) == {
        "groupBy[1]": "invalid group by: region",
        "groupBy[2]": "invalid group by: $.model",
    }


def test_customer_id_group_by_needs_customer_filter() -> None:
    assert violations(MeterQueryInput(group_by=["customer_id"])) == {
        "groupBy": "customer filter is required with customer_id group by"
    }


def test_too_many_subjects_customers_and_group_bys() -> None:
    found = violations(
        MeterQueryInput(
            subjects=[f"s{i}" for i in range(101)],
            filter_customer_ids=[f"c{i}" for i in range(101)],
            group_by=["model"] * 101,
        )
    )
    assert {"subject", "filterCustomerId", "groupBy"} <= set(found)


def test_hundred_subjects_are_fine() -> None:
    assert len(MeterQueryInput(subjects=[f"s{i}" for i in range(100)]).validate(METER).subjects) == 100


# --- customers ---------------------------------------------------------------------------------


def test_customer_filter_resolves_subjects_and_groups_by_customer() -> None:
    query = MeterQueryInput(filter_customer_ids=["c2", "c1", "c2"]).validate(
        METER, customer_subjects={"c1": ["key-1", "s-1"], "c2": ["key-2"]}
    )
    assert query.customer_subjects == (("c2", ("key-2",)), ("c1", ("key-1", "s-1")))
    assert query.group_by == ("customer_id",)
    assert query.groups_by_customer and not query.groups_by_subject


def test_customer_and_subject_filters_combine() -> None:
    query = MeterQueryInput(subjects=["s"], filter_customer_ids=["c1"], group_by=["customer_id"]).validate(
        METER, customer_subjects={"c1": ["s"]}
    )
    assert query.group_by == ("customer_id", "subject")


def test_unknown_customer_is_not_found() -> None:
    with pytest.raises(NotFoundError) as excinfo:
        MeterQueryInput(filter_customer_ids=["c1", "nope"]).validate(METER, customer_subjects={"c1": ["s"]})
    assert excinfo.value.key == "nope"
    with pytest.raises(NotFoundError):
        MeterQueryInput(filter_customer_ids=["c1"]).validate(METER)


def test_validation_errors_come_before_not_found() -> None:
    assert set(violations(MeterQueryInput(filter_customer_ids=["nope"], window_size="WEEK"))) == {"windowSize"}


# --- filterGroupBy and advanced filters ---------------------------------------------------------


def test_filter_group_by_becomes_in() -> None:
    query = MeterQueryInput(filter_group_by={"model": ["gpt-4", "gpt-4o"], "type": []}).validate(METER)
    assert query.filters == (("model", FilterString(in_=("gpt-4", "gpt-4o"))),)
    # Filtering does not group.
    assert query.group_by == ()


def test_filter_group_by_unknown_key() -> None:
    assert violations(MeterQueryInput(filter_group_by={"region": ["eu"]})) == {
        "filterGroupBy.region": "invalid group by filter: region"
    }


def test_filter_group_by_empty_value() -> None:
    assert set(violations(MeterQueryInput(filter_group_by={"model": [""]}))) == {"filterGroupBy.model.$in[0]"}


def test_filter_group_by_with_advanced_filters_is_rejected() -> None:
    found = violations(
        MeterQueryInput(filter_group_by={"model": ["a"]}, advanced_filters={"type": FilterString(eq="x")})
    )
    assert found == {"filterGroupBy": "advanced meter group by filters and filter group by cannot be used together"}


def test_advanced_filters() -> None:
    nested = FilterString(
        or_=(FilterString(like="gpt-%"), FilterString(and_=(FilterString(ne="a"), FilterString(gte="b"))))
    )
    query = MeterQueryInput(advanced_filters={"type": FilterString(eq="input"), "model": nested}).validate(METER)
    assert query.filters == (("model", nested), ("type", FilterString(eq="input")))


def test_empty_advanced_filter_is_dropped() -> None:
    assert MeterQueryInput(advanced_filters={"model": FilterString()}).validate(METER).filters == ()


def test_advanced_filter_unknown_key() -> None:
    for key in ("region", "subject", "customer_id"):
        assert violations(MeterQueryInput(advanced_filters={key: FilterString(eq="x")})) == {
            f"advancedMeterGroupByFilters.{key}": f"meter does not have group by: {key}"
        }


@pytest.mark.parametrize(
    ("f", "where"),
    [
        (FilterString(eq="a", ne="b"), "advancedMeterGroupByFilters.model"),
        (FilterString(eq=""), "advancedMeterGroupByFilters.model.$eq"),
        (FilterString(like=""), "advancedMeterGroupByFilters.model.$like"),
        (FilterString(in_=("a", "")), "advancedMeterGroupByFilters.model.$in[1]"),
        (FilterString(nin=("",)), "advancedMeterGroupByFilters.model.$nin[0]"),
        (FilterString(and_=()), "advancedMeterGroupByFilters.model.$and"),
        (FilterString(or_=(FilterString(eq="a"), FilterString(gt=""))), "advancedMeterGroupByFilters.model.$or[1].$gt"),
        (
            FilterString(and_=(FilterString(eq="a", lt="b"),)),
            "advancedMeterGroupByFilters.model.$and[0]",
        ),
    ],
)
def test_invalid_filters(f: FilterString, where: str) -> None:
    assert set(violations(MeterQueryInput(advanced_filters={"model": f}))) == {where}


def _nest(depth: int) -> FilterString:
    f = FilterString(eq="x")
    for _ in range(depth):
        f = FilterString(and_=(f,))
    return f


def test_filter_depth_is_bounded() -> None:
    MeterQueryInput(advanced_filters={"model": _nest(MAX_FILTER_DEPTH)}).validate(METER)
    found = violations(MeterQueryInput(advanced_filters={"model": _nest(MAX_FILTER_DEPTH + 1)}))
    assert any("nest at most" in message for message in found.values())


def test_every_operator_is_accepted() -> None:
    for f in (
        FilterString(eq="a"),
        FilterString(ne="a"),
        FilterString(in_=("a", "b")),
        FilterString(nin=("a",)),
        FilterString(in_=()),
        FilterString(like="a%"),
        FilterString(nlike="a%"),
        FilterString(ilike="A%"),
        FilterString(nilike="A%"),
        FilterString(gt="a"),
        FilterString(gte="a"),
        FilterString(lt="a"),
        FilterString(lte="a"),
        FilterString(and_=(FilterString(eq="a"),)),
        FilterString(or_=(FilterString(eq="a"), FilterString(eq="b"))),
    ):
        assert MeterQueryInput(advanced_filters={"model": f}).validate(METER).filters == (("model", f),)


def test_filter_from_json() -> None:
    decoded = FilterString.from_json(
        {"$or": [{"$in": ["a", "b"]}, {"$and": [{"$like": "x%"}, {"$ne": "xy"}]}], "$eq": None}
    )
    assert decoded == FilterString(
        or_=(FilterString(in_=("a", "b")), FilterString(and_=(FilterString(like="x%"), FilterString(ne="xy"))))
    )
    assert decoded.operators() == ["$or"]


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ("x", "f"),
        ({"$regex": "a"}, "f.$regex"),
        ({"$eq": 1}, "f.$eq"),
        ({"$in": "a"}, "f.$in"),
        ({"$in": ["a", 1]}, "f.$in"),
        ({"$and": {"$eq": "a"}}, "f.$and"),
        ({"$or": ["a"]}, "f.$or[0]"),
    ],
)
def test_filter_from_json_rejects(raw: Any, where: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        FilterString.from_json(raw, "f")
    assert where in {v.field for v in excinfo.value.violations}


# --- clientId ----------------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["", "x" * 37])
def test_client_id_length(client_id: str) -> None:
    assert set(violations(MeterQueryInput(client_id=client_id))) == {"clientId"}


def test_client_id_kept() -> None:
    assert MeterQueryInput(client_id="x" * 36).validate(METER).client_id == "x" * 36


def test_all_problems_reported_at_once() -> None:
    found = violations(
        MeterQueryInput(
            from_=T0,
            to=T0,
            window_size="WEEK",
            window_time_zone="Nowhere/City",
            group_by=["nope"],
            client_id="",
            filter_group_by={"nope": ["x"]},
        )
    )
    assert set(found) == {"from", "windowSize", "windowTimeZone", "groupBy[0]", "clientId", "filterGroupBy.nope"}


def test_query_row_shape() -> None:
    row = QueryRow(value=1.5, window_start=T0, window_end=T0, subject=None, customer_id=None, group_by={"model": "x"})
    assert row.group_by == {"model": "x"}


def test_csv_group_by_columns_keep_the_requested_order() -> None:
    # OpenMeter's CSV handler writes the group-by columns in params.GroupBy order (the request's,
    # then the implied subject and customer_id appended); only its SQL sorts them.
    query = MeterQueryInput(group_by=["type", "model"], subjects=["s1"], filter_customer_ids=["c1"]).validate(
        METER, {"c1": ["s1"]}
    )
    row = QueryRow(
        value=2.0,
        window_start=T0,
        window_end=T0 + timedelta(days=1),
        subject="s1",
        customer_id="c1",
        group_by={"model": "m", "type": "t"},
    )
    assert render_csv(query, [row]).splitlines() == [
        "window_start,window_end,subject,type,model,customer_id,value",
        "2024-01-01T00:00:00Z,2024-01-02T00:00:00Z,s1,t,m,c1,2.000000",
    ]


def test_csv_times_are_rfc3339_seconds_in_the_window_time_zone() -> None:
    # OpenMeter formats with Go's time.RFC3339 (no fraction of a second), and the window bounds it
    # scans carry the window time zone of their ClickHouse column (DateTime('Europe/Budapest')).
    budapest = MeterQueryInput(window_size="DAY", window_time_zone="Europe/Budapest").validate(METER)
    start = datetime(2023, 12, 31, 23, tzinfo=UTC)
    row = QueryRow(
        value=1.0, window_start=start, window_end=start + timedelta(days=1), subject=None, customer_id=None, group_by={}
    )
    assert render_csv(budapest, [row]).splitlines()[1] == "2024-01-01T00:00:00+01:00,2024-01-02T00:00:00+01:00,1.000000"
    london = MeterQueryInput(window_size="DAY", window_time_zone="Europe/London").validate(METER)
    assert render_csv(london, [row]).splitlines()[1] == "2023-12-31T23:00:00Z,2024-01-01T23:00:00Z,1.000000"
    # Without a window the bounds are the request's from and to.
    total = MeterQueryInput(from_=T0 + timedelta(milliseconds=500), to=T0 + timedelta(days=1)).validate(METER)
    row = QueryRow(
        value=1.0, window_start=total.requested_from, window_end=total.to, subject=None, customer_id=None, group_by={}
    )
    assert render_csv(total, [row]).splitlines()[1] == "2024-01-01T00:00:00Z,2024-01-02T00:00:00Z,1.000000"


def test_csv_fields_are_quoted_as_gos_csv_writer_quotes_them() -> None:
    # OpenMeter writes its CSV with Go's encoding/csv (commonhttp csvResponseEncoder), which quotes a
    # field holding a comma, a quote, \r or \n, one starting with a space, and `\.`; a bare \r left
    # unquoted splits the row for most CSV readers.
    query = MeterQueryInput(group_by=["model"]).validate(METER)
    values = ["a\rb", " lead", "\\.", 'q"t', "x,y", "plain", "", "\tab"]
    rows = [
        QueryRow(
            value=1.0,
            window_start=T0,
            window_end=T0 + timedelta(days=1),
            subject=None,
            customer_id=None,
            group_by={"model": value},
        )
        for value in values
    ]
    fields = [line.split(",", 2)[2].rsplit(",", 1)[0] for line in render_csv(query, rows).split("\n")[1:-1]]
    assert fields[:2] == ['"a\rb"', '" lead"']
    assert fields[2:] == ['"\\."', '"q""t"', '"x,y"', "plain", "", '"\tab"']


# --- helper endpoints --------------------------------------------------------------------------

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def test_group_by_values_defaults_to_last_day() -> None:
    query = ListGroupByValuesInput("model").validate(METER, NOW)
    assert query.from_ == NOW - timedelta(hours=24) and query.to is None


def test_group_by_values_keeps_to_without_from() -> None:
    query = ListGroupByValuesInput("model", to=NOW).validate(METER, NOW)
    assert query.from_ is None and query.to == NOW


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (ListGroupByValuesInput("region"), "groupByKey"),
        (ListGroupByValuesInput(""), "groupByKey"),
        (ListGroupByValuesInput("model", from_=NOW - timedelta(days=90)), "from"),
        (ListGroupByValuesInput("model", from_=NOW - timedelta(days=40), to=NOW - timedelta(days=5)), "to"),
        (ListGroupByValuesInput("model", from_=NOW, to=NOW), "from"),
    ],
)
def test_group_by_values_rules(data: ListGroupByValuesInput, field: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        data.validate(METER, NOW)
    assert field in {v.field for v in excinfo.value.violations}


def test_subjects_input() -> None:
    assert ListSubjectsInput(from_=T0, search="").validate().search is None
    with pytest.raises(ValidationError):
        ListSubjectsInput(from_=T0, to=T0).validate()
