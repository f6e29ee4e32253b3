"""Metering's domain types: meters, usage events and the inputs that create or change them."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.errors import Violations
from domain.metering.jsonpath import JsonPath, JsonPathError, parse_jsonpath

SLUG_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
GROUP_BY_KEY_RE = re.compile(r"^[a-zA-Z_][0-9a-zA-Z_]*$")
# Query-level group-by names that are not meter keys.
RESERVED_GROUP_BY_KEYS = frozenset({"subject", "customer_id"})
MAX_SLUG_LENGTH = 64
MAX_NAME_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 1024
# Read-only annotation: the meter's values are in the events' typed maps for all stored events, so
# queries skip parsing raw JSON. Set by the backfill worker; cleared when the meter's paths change.
VALUES_BACKFILLED = "tally.values.backfilled"
# The id under which GET /api/v1/info/progress/{id} reports a meter's values backfill.
BACKFILL_PROGRESS_ID = "tally.backfill.progress_id"
BACKFILL_PROGRESS_PREFIX = "meter_backfill_"


class Aggregation(enum.StrEnum):
    SUM = "SUM"
    COUNT = "COUNT"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    AVG = "AVG"
    MIN = "MIN"
    MAX = "MAX"
    LATEST = "LATEST"

    @property
    def only_grows(self) -> bool:
        """Whether a period's value can only grow as its events arrive (but for negative values),
        so that the period may be billed in parts: OpenMeter's isDependingOnIncreaseOnlyMeters
        (billing/rating/service/billableperiod.go). A LATEST value, an average or a minimum may
        fall, and a part billed on it could not be taken back."""
        return self in (Aggregation.SUM, Aggregation.COUNT, Aggregation.MAX, Aggregation.UNIQUE_COUNT)

    @property
    def numeric(self) -> bool:
        """Whether the value property is read as a number (every aggregation but COUNT and UNIQUE_COUNT)."""
        return self not in (Aggregation.COUNT, Aggregation.UNIQUE_COUNT)


class WindowSize(enum.StrEnum):
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    MONTH = "MONTH"


@dataclass(frozen=True, slots=True)
class Meter:
    id: str
    namespace: str
    slug: str
    name: str
    description: str | None
    aggregation: Aggregation
    event_type: str
    event_from: datetime | None
    value_property: str | None
    group_by: dict[str, str]
    metadata: dict[str, str]
    annotations: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @property
    def values_backfilled(self) -> bool:
        """Whether every stored event of this meter's type holds its paths in the value maps."""
        return bool(self.annotations.get(VALUES_BACKFILLED))

    @property
    def extracted_paths(self) -> tuple[list[JsonPath], list[JsonPath]]:
        """(numeric, string) JSONPaths whose values are extracted at ingest for this meter."""
        numeric: list[JsonPath] = []
        strings: list[JsonPath] = []
        value_path = self.value_path
        if value_path is not None:
            (numeric if self.aggregation.numeric else strings).append(value_path)
        strings.extend(self.group_by_paths.values())
        return numeric, strings

    @property
    def value_path(self) -> JsonPath | None:
        return parse_jsonpath(self.value_property) if self.value_property else None

    @property
    def group_by_paths(self) -> dict[str, JsonPath]:
        return {key: parse_jsonpath(path) for key, path in self.group_by.items()}


def _check_jsonpath(violations: Violations, field_name: str, value: str) -> None:
    try:
        parse_jsonpath(value)
    except JsonPathError as exc:
        violations.add(field_name, str(exc), "invalid_jsonpath")


def _check_group_by(violations: Violations, group_by: dict[str, str], value_property: str | None) -> None:
    for key, path in group_by.items():
        if not GROUP_BY_KEY_RE.fullmatch(key):
            violations.add(f"groupBy.{key}", "key must match ^[a-zA-Z_][0-9a-zA-Z_]*$", "invalid_key")
        elif key in RESERVED_GROUP_BY_KEYS:
            violations.add(f"groupBy.{key}", f"'{key}' is reserved", "reserved_key")
        _check_jsonpath(violations, f"groupBy.{key}", path)
        if value_property is not None and path == value_property:
            violations.add(f"groupBy.{key}", "must differ from valueProperty", "conflicts_with_value_property")


def _check_text(violations: Violations, field_name: str, value: str | None, max_length: int) -> None:
    """An optional text: absent, or 1 to `max_length` characters (OpenMeter refuses an empty name
    or description, meter/meter.go; leaving one out is how a meter has none, or its slug as name)."""
    if value is None:
        return
    if not value:
        violations.add(field_name, "must not be empty", "required")
    elif len(value) > max_length:
        violations.add(field_name, f"at most {max_length} characters", "too_long")


def check_definition(
    v: Violations, aggregation: str, event_type: str, value_property: str | None, group_by: dict[str, str]
) -> None:
    """The checks on what a meter reads from events; shared by create and the preview (PreviewMeter)."""
    if aggregation not in Aggregation.__members__:
        v.add("aggregation", f"must be one of {', '.join(Aggregation)}", "invalid_enum")
    if not event_type:
        v.add("eventType", "required", "required")
    if aggregation == Aggregation.COUNT:
        if value_property:
            v.add("valueProperty", "must not be set for COUNT", "not_allowed")
    elif aggregation in Aggregation.__members__:
        if not value_property:
            v.add("valueProperty", f"required for {aggregation}", "required")
        else:
            _check_jsonpath(v, "valueProperty", value_property)
    _check_group_by(v, group_by, value_property)


@dataclass(frozen=True, slots=True)
class MeterCreateInput:
    slug: str
    aggregation: str
    event_type: str
    name: str | None = None
    description: str | None = None
    event_from: datetime | None = None
    value_property: str | None = None
    group_by: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        v = Violations()
        if not self.slug:
            v.add("slug", "required", "required")
        elif len(self.slug) > MAX_SLUG_LENGTH or not SLUG_RE.fullmatch(self.slug):
            v.add("slug", "must match ^[a-z0-9]+(?:_[a-z0-9]+)*$ and be at most 64 characters", "invalid_slug")
        _check_text(v, "name", self.name, MAX_NAME_LENGTH)
        _check_text(v, "description", self.description, MAX_DESCRIPTION_LENGTH)
        check_definition(v, self.aggregation, self.event_type, self.value_property, self.group_by)
        v.raise_if_any()


@dataclass(frozen=True, slots=True)
class MeterUpdateInput:
    """OpenMeter lets only the name, description, metadata and groupBy of a meter change; an update
    replaces all four (a name left out is the slug, the others left out are empty)."""

    name: str | None = None
    description: str | None = None
    group_by: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def validate(self, meter: Meter) -> None:
        v = Violations()
        _check_text(v, "name", self.name, MAX_NAME_LENGTH)
        _check_text(v, "description", self.description, MAX_DESCRIPTION_LENGTH)
        _check_group_by(v, self.group_by, meter.value_property)
        v.raise_if_any()


@dataclass(frozen=True, slots=True)
class Progress:
    """OpenMeter's Progress of a long-running operation."""

    success: int
    failed: int
    total: int
    updated_at: datetime
