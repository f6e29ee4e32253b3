"""A source's record -> a CloudEvent, through the config's JMESPath expressions.

JMESPath (the maintained `jmespath` package, the language of the AWS CLI's --query) evaluates each
field against the record; nothing here parses expressions. The event id is not left to the user: it
is a digest of (source name, the record's object key, the window), so a re-run of the same window,
a retry or a restart after a crash produces the same id, and Tally's deduplication on (source, id)
counts the event once. An event is checked against the very rules Tally's ingest applies before it
is buffered, so the buffer never holds an event Tally would refuse.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import jmespath
import orjson
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from adapters.collectors.records import Record, plain, record_time
from domain.errors import TallyError
from domain.metering.events import IngestLimits, parse_time, validate_batch
from workers.collector.config import Mapping

_LIMITS = IngestLimits()


class MappingError(Exception):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def event_id(source: str, key: str, window: str) -> str:
    digest = hashlib.sha256("\x00".join((source, key, window)).encode()).hexdigest()
    return digest[:32]


class Mapper:
    def __init__(self, source_name: str, mapping: Mapping) -> None:
        self.source_name = source_name
        self.event_type = mapping.type
        self.event_source = mapping.source or f"collector/{source_name}"
        self._subject = jmespath.compile(mapping.subject)
        self._time = jmespath.compile(mapping.time) if mapping.time else None
        self._key = jmespath.compile(mapping.key) if mapping.key else None
        self._filter = jmespath.compile(mapping.filter) if mapping.filter else None
        self._data: dict[str, ParsedResult] = {name: jmespath.compile(expr) for name, expr in mapping.data.items()}

    def accepts(self, record: Record) -> bool:
        """Whether the filter keeps the record; MappingError when the filter cannot be evaluated on it."""
        if self._filter is None:
            return True
        return _true(_search("filter", self._filter, record.values))

    def map(self, record: Record) -> dict[str, Any]:
        """The CloudEvent for a record; MappingError when it cannot be one Tally accepts."""
        values = record.values
        subject = _search("subject", self._subject, values)
        if isinstance(subject, int | float) and not isinstance(subject, bool):
            subject = str(subject)
        if not isinstance(subject, str) or not subject:
            raise MappingError("subject", f"must be a non-empty string, got {subject!r}")
        when = record.time
        if self._time is not None:
            when = _time(_search("time", self._time, values))
        key = record.key
        if self._key is not None:
            found = _search("key", self._key, values)
            if found is None:
                raise MappingError("key", "is null")
            key = found if isinstance(found, str) else orjson.dumps(found, option=orjson.OPT_SORT_KEYS).decode()
        data = {name: plain(_search(f"data.{name}", expression, values)) for name, expression in self._data.items()}
        event = {
            "specversion": "1.0",
            "id": event_id(self.source_name, key, record.window),
            "source": self.event_source,
            "type": self.event_type,
            "subject": subject,
            "time": record_time(when),
            "data": data,
        }
        check(event)
        return event


def check(event: dict[str, Any]) -> None:
    """Tally's own ingest rules (domain/metering/events.py), applied before buffering."""
    try:
        validate_batch([event], "default", datetime.now(UTC), _LIMITS, single=True)
    except TallyError as exc:
        violations = getattr(exc, "violations", None) or []
        if violations:
            first = violations[0]
            raise MappingError(first.field, first.message) from None
        raise MappingError("event", str(exc)) from None


def _true(value: Any) -> bool:
    """JMESPath's truth: false, null and empty strings, lists and objects are false; 0 is true."""
    return not (value is None or value is False or value in ("", [], {}))


def _search(field: str, expression: ParsedResult, values: dict[str, Any]) -> Any:
    # A function given the wrong type (abs(null), to_number on a list) fails on this record only:
    # it is refused like any record that cannot be an event, and the rest of the window goes on.
    try:
        return expression.search(values)
    except JMESPathError as exc:
        raise MappingError(field, str(exc)) from None


def _time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError as exc:
            raise MappingError("time", f"{value!r}: {exc}") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError) as exc:  # milliseconds for seconds, NaN, infinity
            raise MappingError("time", f"{value!r} is not a time in epoch seconds ({exc})") from None
    raise MappingError("time", f"must be an RFC 3339 string or epoch seconds, got {value!r}")
