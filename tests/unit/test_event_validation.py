"""The events list's read-time `validationError`: OpenMeter's messages for events a meter skips."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.metering.events import Event
from domain.metering.models import Aggregation, Meter
from domain.metering.validation import meter_error, validation_error

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def make_meter(aggregation: Aggregation = Aggregation.SUM, value_property: str | None = "$.tokens") -> Meter:
    return Meter(
        id="01HMETER",
        namespace="default",
        slug="tokens",
        name="Tokens",
        description=None,
        aggregation=aggregation,
        event_type="prompt",
        event_from=None,
        value_property=value_property,
        group_by={},
        metadata={},
        annotations={},
        created_at=T0,
        updated_at=T0,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, None),
        ("2.5", None),
        (".5e-3", None),
        ("1e-400", None),  # underflows to 0 without an error
        ("-Infinity", "value cannot be infinity"),
        ("nan", "value cannot be NaN"),
        ("+nan", "value cannot be parsed as float64: +nan"),
        ("twelve", "value cannot be parsed as float64: twelve"),
        (" 5", "value cannot be parsed as float64:  5"),
        # strconv.ParseFloat fails with ErrRange past float64's range: a parse error, not infinity.
        ("1e400", "value cannot be parsed as float64: 1e400"),
        ("-" + "9" * 400, "value cannot be parsed as float64: -" + "9" * 400),
        ("0x1p2000", "value cannot be parsed as float64: 0x1p2000"),
        # Go's float literal syntax: `_` between digits, hexadecimal mantissas with a p exponent.
        ("1_000", None),
        ("1_000.5e1_0", None),
        ("0x1p4", None),
        ("0X_1.8P-2", None),
        ("1__000", "value cannot be parsed as float64: 1__000"),
        ("_1", "value cannot be parsed as float64: _1"),
        ("1_", "value cannot be parsed as float64: 1_"),
        ("1_.5", "value cannot be parsed as float64: 1_.5"),
        ("0x10", "value cannot be parsed as float64: 0x10"),  # hexadecimal needs the exponent
        (True, "unsupported value property type: bool"),
        (None, "value cannot be null"),
    ],
)
def test_string_values_are_parsed_as_gos_parse_float_does(value: Any, expected: str | None) -> None:
    assert meter_error(make_meter(), {"tokens": value}) == expected


def make_event(event_type: str = "prompt", data: str = "{}") -> Event:
    return Event(
        namespace="default",
        id="e1",
        type=event_type,
        source="test",
        subject="s1",
        time_ms=0,
        data=data,
        ingested_ms=0,
    )


def test_every_meter_of_the_type_reports_and_an_event_no_meter_reads_says_so() -> None:
    # OpenMeter validates the event against every meter of its type and joins all their errors
    # (errors.Join: one per line); an event of a type no meter has gets an error of its own.
    tokens = make_meter()
    cost = dataclasses.replace(make_meter(value_property="$.cost"), id="01HCOST", slug="cost")
    calls = dataclasses.replace(make_meter(Aggregation.COUNT, None), id="01HCALLS", slug="calls")
    assert validation_error(make_event(data='{"tokens": 3}'), [tokens, calls]) is None
    assert validation_error(make_event(), [tokens, calls, cost]) == (
        'invalid event: missing value property: "$.tokens"\ninvalid event: missing value property: "$.cost"'
    )
    assert validation_error(make_event("other"), [tokens]) == "no meter found for event type: other"
