"""What a meter definition would read from one sample event, before the meter exists (PreviewMeter).

Nothing here parses or evaluates on its own: the definition goes through the checks CreateMeter
runs (`check_definition`), the sample through the ingest path's CloudEvent decoder
(`parse_cloudevents`), the values through the ingest-time extractor (`extract_values`, the twin of
what queries read) and the skip reason through the events list's `meter_error`. So a preview can
never disagree with what create, ingest and queries do, and the console needs no JSONPath grammar of
its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from domain.errors import FieldViolation, PayloadTooLargeError, ValidationError, Violations
from domain.metering.events import CONTENT_TYPE_SINGLE, Event, IngestLimits, parse_cloudevents
from domain.metering.jsonpath import extract_values
from domain.metering.models import Aggregation, Meter, check_definition
from domain.metering.validation import meter_error


@dataclass(frozen=True, slots=True)
class MeterDefinition:
    aggregation: str
    event_type: str
    value_property: str | None = None
    group_by: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MeterPreview:
    """The preview of one definition against one sample event.

    The extracted parts are present only when both the definition and the event are valid.
    """

    # As CreateMeter would refuse the definition (fields named as in its request).
    meter_errors: tuple[FieldViolation, ...] = ()
    # As ingest would refuse the sample event (fields named as in a single-event ingest).
    event_errors: tuple[FieldViolation, ...] = ()
    event_type_matches: bool = False
    # Numeric aggregations: the number the store reads (NaN when the value is not a number).
    value: float | None = None
    # UNIQUE_COUNT: the text whose distinct values are counted.
    unique_value: str | None = None
    # Each group-by key's value as stored ('' when the path is missing or not a scalar).
    group_by: dict[str, str] = field(default_factory=dict)
    # Why the meter would not count the event, as GET /api/v1/events reports it (validationError).
    skip_reason: str | None = None


def preview_meter(
    definition: MeterDefinition, sample_event: str, limits: IngestLimits, now: datetime | None = None
) -> MeterPreview:
    checks = Violations()
    check_definition(
        checks, definition.aggregation, definition.event_type, definition.value_property, definition.group_by
    )
    event: Event | None = None
    event_errors: tuple[FieldViolation, ...] = ()
    try:
        [event] = parse_cloudevents(
            sample_event.encode(), CONTENT_TYPE_SINGLE, "preview", now or datetime.now(UTC), limits
        )
    except ValidationError as exc:
        event_errors = exc.violations
    except PayloadTooLargeError as exc:
        event_errors = (FieldViolation("data", str(exc), "too_large"),)
    if checks or event is None:
        return MeterPreview(meter_errors=checks.items, event_errors=event_errors)
    # An unsaved meter: only what the extractor and meter_error read is filled in.
    meter = Meter(
        id="",
        namespace="",
        slug="",
        name="",
        description=None,
        aggregation=Aggregation(definition.aggregation),
        event_type=definition.event_type,
        event_from=None,
        value_property=definition.value_property or None,
        group_by=dict(definition.group_by),
        metadata={},
        annotations={},
        created_at=event.ingested_at,
        updated_at=event.ingested_at,
    )
    data = event.decoded()
    numeric, strings = meter.extracted_paths
    numbers, texts = extract_values(data, numeric, strings)
    value_path = meter.value_path
    value = unique_value = None
    if value_path is not None and meter.aggregation.numeric:
        value = numbers[value_path.canonical]
    elif value_path is not None:
        unique_value = texts[value_path.canonical]
    reason = meter_error(meter, data)
    return MeterPreview(
        event_type_matches=event.type == meter.event_type,
        value=value,
        unique_value=unique_value,
        group_by={key: texts[path.canonical] for key, path in meter.group_by_paths.items()},
        skip_reason=f"invalid event: {reason}" if reason is not None else None,
    )
