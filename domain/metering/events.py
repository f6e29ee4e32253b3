"""Usage events: the CloudEvents input rules, the accepted event record, and listing queries.

Validation follows OpenMeter (id, source, type and subject non-empty; specversion 1.0, required in
JSON; time in RFC 3339, default now; data a JSON object or null) and reports the offending event's
index and field. A batch is accepted whole or not at all, so a rejected request never half-lands.
"""

from __future__ import annotations

import binascii
import secrets
from base64 import b64decode
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, cast

import orjson

from domain.errors import FieldViolation, PayloadTooLargeError, ValidationError

SPEC_VERSIONS = frozenset({"1.0"})
# Nesting levels of objects and arrays an event's data may have. Listing an event renders its data
# as a google.protobuf.Struct, two message levels per JSON level, under protobuf's limit of 100;
# deeper data would be accepted and then break every listing that includes it.
MAX_DATA_DEPTH = 32
# Event times the store and the query windows (ClickHouse DateTime) can represent.
MIN_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)
JSON_CONTENT_TYPES = frozenset({"application/json"})
CONTENT_TYPE_SINGLE = "application/cloudevents+json"
CONTENT_TYPE_BATCH = "application/cloudevents-batch+json"
CONTENT_TYPE_JSON = "application/json"


NOT_DECODED: Any = object()
"""Marks an Event whose data has not been decoded in this process (it arrived as text)."""


def epoch_ms(value: datetime) -> int:
    """UTC epoch milliseconds, truncated: the precision the event store keeps."""
    return (value - _EPOCH) // _ONE_MS


def from_epoch_ms(value: int) -> datetime:
    return _EPOCH + value * _ONE_MS


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_MIN_TIME_MS = epoch_ms(MIN_EVENT_TIME)
_MAX_TIME_MS = epoch_ms(MAX_EVENT_TIME)


@dataclass(slots=True)
class Event:
    """An accepted usage event, as carried on the bus and stored.

    Times are UTC epoch milliseconds (the store's precision; ints keep the ingest path cheap);
    `data` is the payload as compact JSON text ("" when the event had no data). `parsed` carries the
    decoded payload when the ingest path already has it, so the in-process sink need not decode it
    again; it never travels on the bus.
    """

    namespace: str
    id: str
    type: str
    source: str
    subject: str
    time_ms: int
    data: str
    ingested_ms: int
    parsed: Any = field(default=NOT_DECODED, compare=False, repr=False)

    @property
    def time(self) -> datetime:
        return from_epoch_ms(self.time_ms)

    @property
    def ingested_at(self) -> datetime:
        return from_epoch_ms(self.ingested_ms)

    def decoded(self) -> Any:
        """The payload as Python values (None for no data)."""
        if self.parsed is NOT_DECODED:
            self.parsed = orjson.loads(self.data) if self.data else None
        return self.parsed


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: Event
    stored_at: datetime
    validation_error: str | None = None
    customer_id: str | None = None


EventKey = tuple[str, str, str]
"""(namespace, source, id): what makes an event unique."""

event_key: Callable[[Event], EventKey] = attrgetter("namespace", "source", "id")
"""An event's EventKey. attrgetter runs in C: the sink takes the keys of whole batches with it."""


def new_insert_token() -> str:
    """Names one sink insert in the event store: its deduplication token and its statement's id (what
    settling ends before it looks). Recorded with every batch whose events the insert carries (a
    flush of several Kafka partitions claims one batch per partition), so each batch is settled by
    its own partition's owner, whatever the others' fate."""
    return f"insert-{secrets.randbits(62)}"


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """A sink flush that began but was not confirmed stored (the process stopped in between)."""

    id: int
    token: str
    keys: list[EventKey]


class Claim(NamedTuple):
    """What the sink's key claim found for a batch's events (adapters/postgres/event_keys.py)."""

    batch_id: int
    claimed: list[Event]
    """Events whose keys were free and are now this batch's: the sink stores these."""
    in_doubt: list[Event]
    """Events whose keys another, still pending, batch holds: that batch may or may not store them,
    so they are neither stored here nor duplicates yet. The caller must be told to retry."""


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one sink flush did with its events: how many it stored, how many were duplicates (of
    stored events, or within the batch), and the keys of the rest, in doubt."""

    stored: int
    duplicates: int
    in_doubt: frozenset[EventKey] = frozenset()
    """Keys of events neither stored nor known duplicates (`Claim.in_doubt`): not acknowledged."""


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_event_bytes: int = 64 * 1024
    max_batch_events: int = 10_000
    max_batch_bytes: int = 10 * 1024 * 1024


def _too_deep(data: Any, limit: int) -> bool:
    """Whether objects and arrays in `data` nest more than `limit` levels (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if type(value) is dict else value
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)
    return False


_STR_TYPES: frozenset[type] = frozenset({str})
_OPTIONAL_STR_TYPES: frozenset[type] = frozenset({str, type(None)})
_DATA_TYPES: frozenset[type] = frozenset({dict, type(None)})
_CONTENT_TYPES_OR_NONE: frozenset[Any] = frozenset({*JSON_CONTENT_TYPES, None})


def _all_text(column: Sequence[Any]) -> bool:
    """Every value a non-empty string (`all` on strings is C code: no per-value Python)."""
    return set(map(type, column)) <= _STR_TYPES and all(column)


def _only(column: Sequence[Any], types: frozenset[type], allowed: frozenset[Any]) -> bool:
    # Types first: a JSON array or object is unhashable, and building a set of them would raise.
    return set(map(type, column)) <= types and set(column) <= allowed


_NOT_RFC_3339 = "must be an RFC 3339 date-time, e.g. 2024-01-01T00:00:00Z or 2024-01-01T02:00:00+02:00"


def parse_time(text: str) -> datetime:
    """RFC 3339 as OpenMeter reads it (its OpenAPI date-time pattern, then Go's RFC3339Nano):
    YYYY-MM-DDTHH:MM:SS, optionally a dot and digits, then Z or ±hh:mm, with T and Z upper case.

    fromisoformat alone also takes ISO 8601 spellings OpenMeter refuses (+0100, +01, a comma or an
    empty fraction, lower-case t and z, basic-format times, offsets with seconds). The separators
    and the ends are checked by position: a few string reads per event on the ingest path, where a
    pattern match would cost more than the parse."""
    if not isinstance(text, str) or len(text) < 20 or text[4:17:3] != "--T::" or text[19] not in ".Z+-":
        raise ValueError(_NOT_RFC_3339)
    parsed = datetime.fromisoformat(text)
    if (text[-1] != "Z" and (text[-3] != ":" or text[-6] not in "+-")) or (text[19] == "." and text[20] in "Z+-"):
        raise ValueError(_NOT_RFC_3339)
    return parsed


class EventBatch:
    """Validates a request's events one by one into accepted Events, collecting every violation.

    The one place where OpenMeter's CloudEvents rules live; both the REST (JSON) and the gRPC (proto)
    decoders feed it field values. `result()` raises if any event was invalid: a batch is accepted
    whole or not at all.
    """

    def __init__(self, namespace: str, now: datetime, limits: IngestLimits, single: bool = False) -> None:
        self.namespace = namespace
        self.now_ms = epoch_ms(now)
        self.limits = limits
        self.single = single
        self.events: list[Event] = []
        self.violations: list[FieldViolation] = []

    def error(self, index: int, name: str, message: str, code: str = "invalid") -> None:
        where = name if self.single else f"[{index}].{name}"
        self.violations.append(FieldViolation(where, message, code))

    def _required(self, index: int, name: str, value: Any) -> str:
        if value is None or value == "":
            self.error(index, name, "required, must be a non-empty string", "required")
            return ""
        if not isinstance(value, str):
            self.error(index, name, "must be a string", "invalid_type")
            return ""
        return value

    def add(
        self,
        index: int,
        *,
        event_id: Any,
        source: Any,
        event_type: Any,
        subject: Any,
        specversion: Any = "1.0",
        content_type: Any = None,
        time_ms: int | None = None,
        time_text: Any = None,
        data: Any = None,
        invalid: bool = False,
    ) -> None:
        """One event's fields; `data` is the decoded payload (a dict, or None for no data).
        `invalid`: the caller already reported a violation of this event (its other fields are
        still checked, so the answer lists every one)."""
        before = len(self.violations)
        event_id = self._required(index, "id", event_id)
        source = self._required(index, "source", source)
        event_type = self._required(index, "type", event_type)
        subject = self._required(index, "subject", subject)
        # isinstance first: a JSON array or object is unhashable, and `in` on a set would raise.
        if specversion is None:
            self.error(index, "specversion", "required, the CloudEvents version: 1.0", "required")
        elif not isinstance(specversion, str) or specversion not in SPEC_VERSIONS:
            self.error(index, "specversion", "must be 1.0", "unsupported")
        if content_type is not None and (not isinstance(content_type, str) or content_type not in JSON_CONTENT_TYPES):
            self.error(index, "datacontenttype", "only application/json is supported", "unsupported")
        if time_ms is None:
            time_ms = self.now_ms
            if time_text is not None:
                try:
                    time_ms = epoch_ms(parse_time(time_text))
                except (ValueError, TypeError) as exc:
                    message = str(exc) if isinstance(exc, ValueError) else "must be a string"
                    self.error(index, "time", message, "invalid_time")
        if not _MIN_TIME_MS <= time_ms < _MAX_TIME_MS:
            self.error(index, "time", "must be from 1970 up to 2100", "out_of_range")
        data_text = ""
        if data is not None:
            if type(data) is not dict:
                self.error(index, "data", "must be a JSON object or null", "invalid_type")
            else:
                # Re-encoded, not kept as sent: one canonical text (duplicate keys resolved once) is
                # what both the ingest-time extraction and the query-time JSON fallback read.
                try:
                    data_text = orjson.dumps(data).decode()
                except orjson.JSONEncodeError as exc:  # nesting past orjson's limit, or integers past 64 bits
                    deep = "recursion" in str(exc).lower()
                    message = f"must nest at most {MAX_DATA_DEPTH} levels deep" if deep else f"not encodable: {exc}"
                    self.error(index, "data", message, "too_deep" if deep else "invalid_json")
                    return
                # Counting brackets is cheap and bounds the depth from above: the walk runs only
                # when the data might be too deep.
                if data_text.count("{") + data_text.count("[") > MAX_DATA_DEPTH and _too_deep(data, MAX_DATA_DEPTH):
                    self.error(index, "data", f"must nest at most {MAX_DATA_DEPTH} levels deep", "too_deep")
                    return
                if len(data_text) > self.limits.max_event_bytes:
                    where = "" if self.single else f"[{index}] "
                    raise PayloadTooLargeError(
                        f"event {where}data is {len(data_text)} bytes; "
                        f"at most {self.limits.max_event_bytes} bytes are allowed per event (ingest.max_event_bytes)"
                    )
        if invalid or len(self.violations) > before:
            return
        self.events.append(
            Event(self.namespace, event_id, event_type, source, subject, time_ms, data_text, self.now_ms, data)
        )

    def add_columns(
        self,
        ids: Sequence[Any],
        sources: Sequence[Any],
        types: Sequence[Any],
        subjects: Sequence[Any],
        specversions: Sequence[Any],
        content_types: Sequence[Any],
        times_ms: Sequence[int | None],
        datas: Sequence[Any],
    ) -> bool:
        """A whole batch at once, column by column: the fast path of `add` for the usual batch.

        Columns hold what `add` takes per event (`times_ms` None: now; `datas` decoded payloads).
        Only a batch whose every column is plainly valid is accepted here, with checks that run over
        a column in C (types, emptiness, set membership, min/max) instead of Python code per field.
        Anything else (a bad or unusual value anywhere) returns False and adds nothing: the caller
        then feeds the events one by one through `add`, which reports every violation with its
        index and field exactly as before. Both paths accept the same events and build the same
        Event records; tests/unit/test_ingest_columns.py holds them to that.
        """
        if not (
            times_ms
            and _all_text(ids)
            and _all_text(sources)
            and _all_text(types)
            and _all_text(subjects)
            and _only(specversions, _STR_TYPES, SPEC_VERSIONS)
            and _only(content_types, _OPTIONAL_STR_TYPES, _CONTENT_TYPES_OR_NONE)
            and set(map(type, datas)) <= _DATA_TYPES
        ):
            return False
        now = self.now_ms
        times = [now if t is None else t for t in times_ms] if None in times_ms else cast(list[int], times_ms)
        if min(times) < _MIN_TIME_MS or max(times) >= _MAX_TIME_MS:
            return False
        dumps = orjson.dumps
        try:
            texts = [dumps(d).decode() if d is not None else "" for d in datas]
        except orjson.JSONEncodeError:
            return False
        # Possibly too deep (more brackets than levels allowed) or too large: `add` decides exactly.
        longest = max(map(len, texts))
        if longest > self.limits.max_event_bytes or (
            longest > MAX_DATA_DEPTH and any(t.count("{") + t.count("[") > MAX_DATA_DEPTH for t in texts)
        ):
            return False
        ns = repeat(self.namespace)
        self.events.extend(map(Event, ns, ids, types, sources, subjects, times, texts, repeat(now), datas))
        return True

    def add_json(self, index: int, raw: Any) -> None:
        if not isinstance(raw, dict):
            self.error(index, "event", "must be a JSON object (a CloudEvent)", "invalid_type")
            return
        data = raw.get("data")
        invalid = False
        if raw.get("data_base64") is not None:
            data, invalid = self._base64_data(index, raw["data_base64"], data)
        self.add(
            index,
            event_id=raw.get("id"),
            source=raw.get("source"),
            event_type=raw.get("type"),
            subject=raw.get("subject"),
            # Required in JSON, as in OpenMeter (its OpenAPI Event and CloudEvents decoding refuse
            # an event without it); gRPC's proto field reads "" when unset and means 1.0.
            specversion=raw.get("specversion"),
            content_type=raw.get("datacontenttype"),
            time_text=raw.get("time"),
            data=data,
            invalid=invalid,
        )

    def _base64_data(self, index: int, encoded: Any, data: Any) -> tuple[Any, bool]:
        """The payload a JSON CloudEvent carries as data_base64 (the JSON format's form for binary
        data, what CloudEvents SDKs send for bytes), and whether it was refused. OpenMeter's
        CloudEvents decoding takes it as the event's data and meters the JSON inside; ignoring it
        would store the event without its data: acknowledged, then never counted. Tally keeps its
        rule for data (a JSON object), so anything else inside is refused, naming the field."""
        if data is not None:
            self.error(index, "data_base64", "data and data_base64 are exclusive: send one", "conflict")
            return None, True
        if not isinstance(encoded, str):
            self.error(index, "data_base64", "must be a string (base64 of the JSON data)", "invalid_type")
            return None, True
        try:
            decoded = orjson.loads(b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
            self.error(index, "data_base64", "must be base64 (RFC 4648, padded) of a JSON object", "invalid_base64")
            return None, True
        if type(decoded) is not dict:
            self.error(index, "data_base64", "must encode a JSON object", "invalid_type")
            return None, True
        return decoded, False

    def check_size(self, count: int, size_bytes: int | None = None) -> None:
        """The request's limits, the same on every path (REST body bytes, gRPC message bytes)."""
        if size_bytes is not None and size_bytes > self.limits.max_batch_bytes:
            raise PayloadTooLargeError(
                f"request is {size_bytes} bytes; at most {self.limits.max_batch_bytes} are allowed "
                "(ingest.max_batch_bytes): send smaller batches"
            )
        if count == 0:
            raise ValidationError.single("body", "no events: send at least one CloudEvent", "empty")
        if count > self.limits.max_batch_events:
            raise PayloadTooLargeError(
                f"batch holds {count} events; at most {self.limits.max_batch_events} are allowed per request "
                "(ingest.max_batch_events)"
            )

    def result(self) -> list[Event]:
        if self.violations:
            raise ValidationError(self.violations[:100], message=_summary(self.violations))
        return self.events


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
        raise PayloadTooLargeError(
            f"request body is {len(body)} bytes; at most {limits.max_batch_bytes} are allowed (ingest.max_batch_bytes)"
        )
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError.single("body", f"invalid JSON: {exc}", "invalid_json") from exc
    if media_type == CONTENT_TYPE_SINGLE and not isinstance(decoded, dict):
        raise ValidationError.single("body", "must be one CloudEvent (a JSON object)", "invalid_type")
    if media_type == CONTENT_TYPE_BATCH and not isinstance(decoded, list):
        raise ValidationError.single("body", "must be a JSON array of CloudEvents", "invalid_type")
    if media_type == CONTENT_TYPE_BATCH and not decoded:
        # A batch of nothing is a valid CloudEvents batch: OpenMeter ingests none and answers 204
        # (only application/json, an object or an array, refuses an empty array as "no events").
        return []
    if isinstance(decoded, dict):
        return validate_batch([decoded], namespace, now, limits, single=True)
    if isinstance(decoded, list):
        return validate_batch(decoded, namespace, now, limits, single=False)
    raise ValidationError.single("body", "must be a CloudEvent object or an array of them", "invalid_type")


def validate_batch(
    raws: Sequence[Any], namespace: str, now: datetime, limits: IngestLimits, single: bool = False
) -> list[Event]:
    batch = EventBatch(namespace, now, limits, single)
    batch.check_size(len(raws))
    if not _add_json_columns(batch, raws):
        for index, raw in enumerate(raws):
            batch.add_json(index, raw)
    return batch.result()


_SEPARATORS = itemgetter(slice(4, 17, 3))
_AFTER_SECONDS = itemgetter(slice(19, 21))
_LAST = itemgetter(-1)
_UTC_AFTER_SECONDS = frozenset({"Z", *(f".{digit}" for digit in "0123456789")})


def _utc_times_ms(texts: list[Any]) -> list[int | None] | None:
    """Epoch milliseconds of a column of event times, when each is absent or RFC 3339 in UTC
    (...Z, the usual spelling), checked as `parse_time` does but with C-level calls over the whole
    column (no Python code per event); None when any is something else, for `parse_time` one by
    one. ValueError when one of them is no date (fromisoformat's own checks)."""
    present = [t for t in texts if t is not None] if None in texts else texts
    if not present:
        return texts
    if not (
        set(map(type, present)) <= _STR_TYPES
        and min(map(len, present)) >= 20
        and set(map(_SEPARATORS, present)) == {"--T::"}
        and set(map(_LAST, present)) == {"Z"}
        and set(map(_AFTER_SECONDS, present)) <= _UTC_AFTER_SECONDS
    ):
        return None
    epoch, one_ms = _EPOCH, _ONE_MS
    times = [(moment - epoch) // one_ms for moment in map(datetime.fromisoformat, present)]
    if present is texts:
        return cast(list[int | None], times)
    parsed = iter(times)
    return [None if t is None else next(parsed) for t in texts]


def _add_json_columns(batch: EventBatch, raws: Sequence[Any]) -> bool:
    """The decoded JSON events as columns for `EventBatch.add_columns`; False (nothing added) for
    anything but a list of objects whose times all parse, so `add_json` reports what is wrong."""
    # An event with data_base64 takes the per-event path (about 15 ns an event to look).
    if set(map(type, raws)) != {dict} or True in ["data_base64" in r for r in raws]:
        return False
    texts = [r.get("time") for r in raws]
    try:
        times = _utc_times_ms(texts)
        if times is None:
            times = [None if t is None else epoch_ms(parse_time(t)) for t in texts]
    except (ValueError, TypeError):
        return False
    return batch.add_columns(
        [r.get("id") for r in raws],
        [r.get("source") for r in raws],
        [r.get("type") for r in raws],
        [r.get("subject") for r in raws],
        [r.get("specversion") for r in raws],
        [r.get("datacontenttype") for r in raws],
        times,
        [r.get("data") for r in raws],
    )


def _summary(violations: Iterable[FieldViolation]) -> str:
    items = list(violations)
    head = "; ".join(f"{v.field}: {v.message}" for v in items[:5])
    more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
    return f"invalid events: {head}{more}"
