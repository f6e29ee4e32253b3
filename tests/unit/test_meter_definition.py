"""Meter create and update inputs: OpenMeter's rules for a meter's fields (meter/meter.go)."""

from __future__ import annotations

import pytest

from domain.errors import ValidationError
from domain.metering.models import MeterCreateInput, MeterUpdateInput
from tests.unit.test_meter_query_model import METER


def _fields(excinfo: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return [v.field for v in excinfo.value.violations]


def test_an_empty_description_is_refused() -> None:
    # CreateMeterInput.Validate and UpdateMeterInput.Validate: "description must not be empty
    # string"; leaving it out is how a meter has none.
    with pytest.raises(ValidationError) as created:
        MeterCreateInput(slug="m", aggregation="COUNT", event_type="e", description="").validate()
    assert _fields(created) == ["description"]
    with pytest.raises(ValidationError) as updated:
        MeterUpdateInput(description="").validate(METER)
    assert _fields(updated) == ["description"]
    MeterCreateInput(slug="m", aggregation="COUNT", event_type="e").validate()
    MeterUpdateInput(description="d").validate(METER)
