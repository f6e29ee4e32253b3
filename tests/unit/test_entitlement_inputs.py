"""Validation of the customer, feature, entitlement, grant and pagination inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.catalog.models import FeatureCreateInput
from domain.customers.models import CustomerInput
from domain.entitlements.models import EntitlementInput, EntitlementType, GrantInput, RecurrenceInput, StoredGrant
from domain.errors import ValidationError
from domain.metering.models import Aggregation, Meter
from domain.metering.query import FilterString
from domain.pagination import PageMode, Pagination

NOW = datetime(2025, 3, 15, 12, 30, 45, tzinfo=UTC)
MONTH = RecurrenceInput("MONTH", datetime(2024, 1, 1, tzinfo=UTC))


def fields(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {v.field for v in exc.value.violations}


def meter(aggregation: Aggregation = Aggregation.COUNT) -> Meter:
    return Meter(
        id="m",
        namespace="default",
        slug="m",
        name="m",
        description=None,
        aggregation=aggregation,
        event_type="e",
        event_from=None,
        value_property=None if aggregation is Aggregation.COUNT else "$.v",
        group_by={"model": "$.model"},
        metadata={},
        annotations={},
        created_at=NOW,
        updated_at=NOW,
    )


def test_customer_needs_key_or_subjects_and_valid_codes() -> None:
    CustomerInput(name="a", key="k").validate()
    CustomerInput(name="a", subject_keys=["s"]).validate()
    with pytest.raises(ValidationError) as exc:
        CustomerInput(name="", currency="usd", subject_keys=["s", "s"]).validate()
    assert fields(exc) == {"name", "currency", "usageAttribution.subjectKeys"}
    with pytest.raises(ValidationError) as exc:
        CustomerInput(name="a").validate()
    assert fields(exc) == {"usageAttribution.subjectKeys"}


def test_feature_rules() -> None:
    filters = FeatureCreateInput(key="f", name="F", meter_group_by_filters={"model": "gpt-4"}).validate(meter())
    assert filters == {"model": FilterString(eq="gpt-4")}
    with pytest.raises(ValidationError) as exc:
        FeatureCreateInput(key="Bad-Key", name="", meter_group_by_filters={"nope": "x"}).validate(meter())
    assert fields(exc) == {"key", "name", "meterGroupByFilters.nope"}
    with pytest.raises(ValidationError) as exc:
        FeatureCreateInput(key="01ARZ3NDEKTSV4RRFFQ69G5FAV".lower(), name="x").validate(None)
    with pytest.raises(ValidationError) as exc:
        FeatureCreateInput(key="f", name="F").validate(meter(Aggregation.AVG))
    assert fields(exc) == {"meterSlug"}


def test_metered_entitlement_defaults_and_measure_usage_from() -> None:
    valid = EntitlementInput(type="metered", feature_key="f", usage_period=MONTH).validate(NOW)
    assert valid.type is EntitlementType.METERED
    assert valid.measure_usage_from == datetime(2025, 3, 15, 12, 30, tzinfo=UTC)
    assert valid.recurrence is not None and valid.recurrence.interval.iso() == "P1M"
    start = EntitlementInput(
        type="metered", feature_key="f", usage_period=MONTH, measure_usage_from="CURRENT_PERIOD_START"
    ).validate(NOW)
    assert start.measure_usage_from == datetime(2025, 3, 1, tzinfo=UTC)
    p2w = EntitlementInput(type="metered", feature_key="f", usage_period=RecurrenceInput("P2W")).validate(NOW)
    assert p2w.recurrence is not None and p2w.recurrence.interval.iso() == "P2W"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (EntitlementInput(type="metered", feature_key="f"), {"usagePeriod"}),
        (
            EntitlementInput(type="metered", feature_key="f", usage_period=RecurrenceInput("PT30M")),
            {"usagePeriod.interval"},
        ),
        (EntitlementInput(type="nope", feature_key="f"), {"type"}),
        (EntitlementInput(type="boolean"), {"featureKey"}),
        (EntitlementInput(type="boolean", feature_key="f", is_soft_limit=True), {"isSoftLimit"}),
        (EntitlementInput(type="static", feature_key="f"), {"config"}),
        (EntitlementInput(type="static", feature_key="f", config="[1]"), {"config"}),
        (
            EntitlementInput(type="metered", feature_key="f", usage_period=MONTH, issue_after_reset_priority=3),
            {"issueAfterResetPriority"},
        ),
        (
            EntitlementInput(type="metered", feature_key="f", usage_period=MONTH, measure_usage_from="yesterday"),
            {"measureUsageFrom"},
        ),
    ],
)
def test_entitlement_input_violations(data: EntitlementInput, expected: set[str]) -> None:
    with pytest.raises(ValidationError) as exc:
        data.validate(NOW)
    assert fields(exc) == expected


def test_grant_v1_and_v2_defaults() -> None:
    v1 = GrantInput(amount=100, effective_at=NOW, expiration_duration="MONTH", expiration_count=1).validate(NOW)
    assert v1.effective_at == datetime(2025, 3, 15, 12, 30, tzinfo=UTC)
    assert v1.max_rollover_amount == 0
    assert v1.expires_at == datetime(2025, 4, 15, 12, 30, tzinfo=UTC)
    v2 = GrantInput(amount=100, effective_at=NOW, v2=True).validate(NOW)
    assert v2.max_rollover_amount == Decimal(100) and v2.expiration is None
    with pytest.raises(ValidationError) as exc:
        GrantInput(amount=0, effective_at=None, priority=300).validate(NOW)
    assert fields(exc) == {"amount", "effectiveAt", "priority", "expiration"}
    # An omitted priority is OpenMeter's 0 (burns first); a client may only send 1..255.
    assert v2.priority == 0 and v1.priority == 0
    with pytest.raises(ValidationError) as exc:
        GrantInput(amount=100, effective_at=NOW, v2=True, priority=0).validate(NOW)
    assert fields(exc) == {"priority"}


def test_pagination_page_beats_limit() -> None:
    assert Pagination().mode is PageMode.NONE
    both = Pagination(page=2, page_size=2, limit=1, offset=0).validate()
    assert both.mode is PageMode.PAGE and both.window() == (2, 2)
    assert Pagination(limit=2, offset=1).validate().window() == (1, 2)
    assert Pagination(page_size=2).validate().apply([1, 2, 3]) == [1, 2]
    with pytest.raises(ValidationError):
        Pagination(page=0).validate()
    with pytest.raises(ValidationError):
        Pagination(page_size=1001).validate()


def test_grant_recurrence_anchor_defaults_to_effective_at() -> None:
    # OpenMeter (entitlement/driver/metered.go, v2/mapping.go) anchors a recurrence given without an
    # anchor at the grant's effectiveAt, not at the request time. A daily grant of 100 effective at
    # midnight, created at 12:30, refills at the next midnight: after 100 used at 13:00 its balance
    # on the 16th at 06:00 is 100 again (an anchor at 12:30 would leave it at 0 until 12:30).
    midnight = datetime(2025, 3, 15, tzinfo=UTC)
    valid = GrantInput(amount=100, effective_at=midnight, v2=True, recurrence=RecurrenceInput("DAY")).validate(NOW)
    assert valid.recurrence is not None
    assert valid.recurrence.anchor == midnight
    assert valid.recurrence.next_after(NOW, inclusive=False) == datetime(2025, 3, 16, tzinfo=UTC)
    odd = GrantInput(
        amount=100, effective_at=datetime(2025, 3, 15, 9, 5, 30, tzinfo=UTC), v2=True, recurrence=RecurrenceInput("DAY")
    ).validate(NOW)
    assert odd.recurrence is not None and odd.recurrence.anchor == datetime(2025, 3, 15, 9, 5, tzinfo=UTC)
    anchored = GrantInput(
        amount=100,
        effective_at=midnight,
        v2=True,
        recurrence=RecurrenceInput("DAY", datetime(2025, 3, 1, 6, tzinfo=UTC)),
    ).validate(NOW)
    assert anchored.recurrence is not None and anchored.recurrence.anchor == datetime(2025, 3, 1, 6, tzinfo=UTC)


def test_a_usage_period_not_in_whole_minutes_is_refused() -> None:
    # A usage period of PT1H30S was taken (it is at least an hour), but its resets fall off the
    # engine's whole minutes (13:00:30), so every balance computed past the first one failed
    # ('reset times must be on whole minutes'). It is refused up front, as a grant recurrence is.
    with pytest.raises(ValidationError) as exc:
        EntitlementInput(type="metered", feature_key="f", usage_period=RecurrenceInput("PT1H30S")).validate(NOW)
    assert fields(exc) == {"usagePeriod.interval"}
    valid = EntitlementInput(type="metered", feature_key="f", usage_period=RecurrenceInput("PT1H1M")).validate(NOW)
    assert valid.recurrence is not None and valid.recurrence.interval.iso() == "PT1H1M"


def test_a_grant_recurs_at_least_hourly_and_in_whole_minutes() -> None:
    # OpenMeter takes any positive grant recurrence; Tally holds grants to an hour as usage periods
    # (each recurrence is a window of the usage statement, evaluated per event: a minutely refill
    # would make a month's value 43,200 windows). An interval not in whole minutes (the engine's
    # resolution) is refused too.
    hourly = GrantInput(amount=5, effective_at=NOW, v2=True, recurrence=RecurrenceInput("PT1H")).validate(NOW)
    assert hourly.recurrence is not None and hourly.recurrence.interval.iso() == "PT1H"
    for refused in ("PT30M", "PT1M", "PT1H30S"):
        with pytest.raises(ValidationError) as exc:
            GrantInput(amount=5, effective_at=NOW, v2=True, recurrence=RecurrenceInput(refused)).validate(NOW)
        assert fields(exc) == {"recurrence.interval"}


def test_grant_next_recurrence_is_the_first_boundary_from_now() -> None:
    # OpenMeter's GrantFromCreditGrant: nextRecurrence = recurrence.NextAfter(now, Inclusive), even
    # for a grant that takes effect later. A daily grant effective tomorrow at 09:00 (anchored
    # there) recurs next at that 09:00 (it said the day after), and one whose boundary is exactly
    # now recurs now.
    tomorrow = datetime(2025, 3, 16, 9, tzinfo=UTC)
    valid = GrantInput(amount=10, effective_at=tomorrow, v2=True, recurrence=RecurrenceInput("DAY")).validate(NOW)
    stored = StoredGrant(
        id="g",
        namespace="default",
        entitlement_id="e",
        amount=valid.amount,
        priority=valid.priority,
        effective_at=valid.effective_at,
        created_at=NOW,
        updated_at=NOW,
        recurrence=valid.recurrence,
    )
    assert stored.next_recurrence(NOW) == tomorrow
    assert stored.next_recurrence(tomorrow) == tomorrow
    assert stored.next_recurrence(tomorrow + timedelta(seconds=1)) == tomorrow + timedelta(days=1)
