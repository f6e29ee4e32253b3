"""Usage events: the CloudEvents input rules, the accepted event record, and listing queries.

Validation follows OpenMeter (id, source, type and subject non-empty; specversion 1.0; time in
RFC 3339, default now; data a JSON object or null) and reports the offending event's index and
field. A batch is accepted whole or not at all, so a rejected request never half-lands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from domain.errors import FieldViolation, PayloadTooLargeError, ValidationError

SPEC_VERSIONS = frozenset({"1.0"})
JSON_CONTENT_TYPES = frozenset({"application/json"})
CONTENT_TYPE_SINGLE = "application/cloudevents+json"
CONTENT_TYPE_BATCH = "application/cloudevents-batch+json"
CONTENT_TYPE_JSON = "application/json"


@dataclass(slots=True)
class Event:
    """An accepted usage event, as carried on the bus and stored.

    `time` is UTC with millisecond precision; `data` is the payload re-encoded as compact JSON text
    ("" when the event had no data).
    """

    namespace: str
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: str
    ingested_at: datetime


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: Event
    stored_at: datetime
    validation_error: str | None = None
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class EventListQuery:
    from_: datetime
    to: datetime | None = None
    ingested_at_from: datetime | None = None
    ingested_at_to: datetime | None = None
    id_contains: str | None = None
    subject_contains: str | None = None
    subjects: tuple[str, ...] | None = None
    limit: int = 100
    # Cursor pagination (v2): events strictly after this (time, id) position, newest first.
    before: tuple[datetime, str] | None = None
    sources: tuple[str, ...] = field(default_factory=tuple)
    types: tuple[str, ...] = field(default_factory=tuple)


EventKey = tuple[str, str, str]
"""(namespace, source, id): what makes an event unique."""


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """A sink flush that began but was not confirmed stored (the process stopped in between)."""

    id: int
    token: str
    keys: list[EventKey]


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_event_bytes: int = 64 * 1024
    max_batch_events: int = 10_000
    max_batch_bytes: int = 10 * 1024 * 1024


def to_millis(value: datetime) -> datetime:
    """UTC, truncated to the millisecond: the precision the event store keeps."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def parse_time(text: str) -> datetime:
    """RFC 3339 with a required offset (Z or ±hh:mm)."""
    if not isinstance(text, str) or len(text) < 20 or text[10] not in "Tt":
        raise ValueError("must be an RFC 3339 date-time, e.g. 2024-01-01T00:00:00Z")
    parsed = datetime.fromisoformat(text.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError("must carry a time zone offset (Z or ±hh:mm)")
    return parsed


class _EventErrors:
    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, index: int | None, name: str, message: str, code: str = "invalid") -> None:
        where = name if index is None else f"[{index}].{name}"
        self.items.append(FieldViolation(where, message, code))


def _required_string(raw: dict[str, Any], name: str, index: int | None, errors: _EventErrors) -> str:
    value = raw.get(name)
    if value is None or value == "":
        errors.add(index, name, "required, must be a non-empty string", "required")
        return ""
    if not isinstance(value, str):
        errors.add(index, name, "must be a string", "invalid_type")
        return ""
    return value


def event_from_json(
    raw: Any, namespace: str, now: datetime, index: int | None, errors: _EventErrors, limits: IngestLimits
) -> Event | None:
    if not isinstance(raw, dict):
        errors.add(index, "event", "must be a JSON object (a CloudEvent)", "invalid_type")
        return None
    before = len(errors.items)
    event_id = _required_string(raw, "id", index, errors)
    source = _required_string(raw, "source", index, errors)
    event_type = _required_string(raw, "type", index, errors)
    subject = _required_string(raw, "subject", index, errors)
    specversion = raw.get("specversion", "1.0")
    if specversion not in SPEC_VERSIONS:
        errors.add(index, "specversion", "must be 1.0", "unsupported")
    content_type = raw.get("datacontenttype")
    if content_type is not None and content_type not in JSON_CONTENT_TYPES:
        errors.add(index, "datacontenttype", "only application/json is supported", "unsupported")
    event_time = now
    raw_time = raw.get("time")
    if isinstance(raw_time, datetime):  # the gRPC path hands over a decoded Timestamp
        event_time = raw_time
    elif raw_time is not None:
        try:
            event_time = parse_time(raw_time)
        except (ValueError, TypeError) as exc:
            errors.add(index, "time", str(exc) if isinstance(exc, ValueError) else "must be a string", "invalid_time")
    data = raw.get("data")
    data_text = ""
    if data is not None:
        if not isinstance(data, dict):
            errors.add(index, "data", "must be a JSON object or null", "invalid_type")
        else:
            data_text = orjson.dumps(data).decode()
            if len(data_text) > limits.max_event_bytes:
                raise PayloadTooLargeError(
                    f"event {'' if index is None else f'[{index}] '}data is {len(data_text)} bytes; "
                    f"at most {limits.max_event_bytes} bytes are allowed per event"
                )
    if len(errors.items) > before:
        return None
    return Event(
        namespace=namespace,
        id=event_id,
        type=event_type,
        source=source,
        subject=subject,
        time=to_millis(event_time),
        data=data_text,
        ingested_at=now,
    )


def parse_cloudevents(
    body: bytes, content_type: str, namespace: str, now: datetime, limits: IngestLimits
) -> list[Event]:
    """Decodes OpenMeter's REST ingest body: one event, a batch, or either as application/json."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in (CONTENT_TYPE_SINGLE, CONTENT_TYPE_BATCH, CONTENT_TYPE_JSON):
        raise ValidationError.single(
            "Content-Type",
            f"unsupported content type {media_type or '(none)'!r}; use {CONTENT_TYPE_SINGLE}, "
            f"{CONTENT_TYPE_BATCH} or {CONTENT_TYPE_JSON}",
            "unsupported_media_type",
        )
    if len(body) > limits.max_batch_bytes:
        raise PayloadTooLargeError(f"request body is {len(body)} bytes; at most {limits.max_batch_bytes} are allowed")
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError.single("body", f"invalid JSON: {exc}", "invalid_json") from exc
    if media_type == CONTENT_TYPE_SINGLE and not isinstance(decoded, dict):
        raise ValidationError.single("body", "must be one CloudEvent (a JSON object)", "invalid_type")
    if media_type == CONTENT_TYPE_BATCH and not isinstance(decoded, list):
        raise ValidationError.single("body", "must be a JSON array of CloudEvents", "invalid_type")
    if isinstance(decoded, dict):
        return validate_batch([decoded], namespace, now, limits, single=True)
    if isinstance(decoded, list):
        return validate_batch(decoded, namespace, now, limits, single=False)
    raise ValidationError.single("body", "must be a CloudEvent object or an array of them", "invalid_type")


def validate_batch(
    raws: Sequence[Any], namespace: str, now: datetime, limits: IngestLimits, single: bool = False
) -> list[Event]:
    if not raws:
        raise ValidationError.single("body", "no events: send at least one CloudEvent", "empty")
    if len(raws) > limits.max_batch_events:
        raise PayloadTooLargeError(
            f"batch holds {len(raws)} events; at most {limits.max_batch_events} are allowed per request"
        )
    errors = _EventErrors()
    events = [event_from_json(raw, namespace, now, None if single else i, errors, limits) for i, raw in enumerate(raws)]
    if errors.items:
        raise ValidationError(errors.items[:100], message=_summary(errors.items))
    return [event for event in events if event is not None]


def _summary(violations: Iterable[FieldViolation]) -> str:
    items = list(violations)
    head = "; ".join(f"{v.field}: {v.message}" for v in items[:5])
    more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
    return f"invalid events: {head}{more}"
