"""What every collector source yields and shares: records, their JSON-safe values, backpressure.

Below the collector's pipeline (workers/collector), which maps records to events and buffers them,
so sources and pipeline speak one vocabulary without the sources reaching up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.wiretime import rfc3339


class BufferFullError(Exception):
    """The collector's buffer is full: a source must wait (backpressure), nothing is dropped.

    Push sources answer it as their protocol says (HTTP 503 with Retry-After, OTLP UNAVAILABLE)."""


@dataclass(frozen=True, slots=True)
class Record:
    """What a source yields: the values the mapping's expressions see, and what identifies it.

    key: the object within the source (a label set, a pod's uid, a log record's digest).
    window: the period or instant the record measures (e.g. "2025-01-01T00:00:00Z/...01:00:00Z").
    time: the event time when the mapping sets none.
    """

    values: dict[str, Any]
    key: str
    window: str
    time: datetime


def json_number(value: Decimal) -> int | float | str:
    """A Decimal as a JSON number when one represents it exactly, else as its decimal string.

    Tally reads meter values from numbers and numeric strings alike; a float is only used when its
    shortest form is the same decimal, so no digit changes on the way.
    """
    if value == value.to_integral_value() and abs(value) < 2**63:
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) == value:
        return as_float
    return str(value)


def plain(value: Any) -> Any:
    """Record values in the types JMESPath and JSON know (Decimals and times converted)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return json_number(value)
    if isinstance(value, datetime):
        return record_time(value)
    return value


def record_time(value: datetime) -> str:
    """A collected time: RFC 3339 UTC to the millisecond, always three digits. The Prometheus and
    Kubernetes windows are written so and are part of their events' ids (workers/collector/mapping.py
    event_id): another precision would give a re-collected window new ids, counted again."""
    return rfc3339(value, timespec="milliseconds")
