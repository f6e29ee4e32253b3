"""EventService: proto <-> domain for ingest and event listing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from google.api import httpbody_pb2
from google.protobuf import empty_pb2, struct_pb2

from adapters import metrics
from domain.errors import ValidationError
from domain.metering.event_list import EventListQuery, ListEventsV2Filter
from domain.metering.events import EventBatch, StoredEvent
from domain.metering.service import EventQueryService, IngestService
from server.context import RequestContext
from server.convert import optional_str, set_timestamp, struct_from, timestamp_or_none
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from tally.v1 import events_pb2, events_pb2_grpc


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return _struct(value.struct_value)
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    if kind == "null_value" or kind is None:
        return None
    return getattr(value, kind)


def _struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {key: _value(item) for key, item in struct.fields.items()}


def add_cloudevents(
    batch: EventBatch, messages: Sequence[events_pb2.CloudEvent], size_bytes: int | None = None
) -> EventBatch:
    """Feeds typed gRPC events into the domain's batch validation: column by column when every
    event is plainly valid (the usual batch), else field by field for per-event errors."""
    batch.check_size(len(messages), size_bytes)
    if not _add_columns(batch, messages):
        add_each(batch, messages)
    return batch


def add_each(batch: EventBatch, messages: Sequence[events_pb2.CloudEvent]) -> None:
    """The per-event path: every field through `EventBatch.add`, each violation with its index."""
    for index, message in enumerate(messages):
        data: Any = None
        payload = message.WhichOneof("payload")
        if payload == "data_json":
            try:
                data = orjson.loads(message.data_json)
            except orjson.JSONDecodeError as exc:
                batch.error(index, "data_json", f"invalid JSON: {exc}", "invalid_json")
                continue
        elif payload == "data":
            data = _struct(message.data)
        batch.add(
            index,
            event_id=message.id,
            source=message.source,
            event_type=message.type,
            subject=message.subject,
            specversion=message.specversion or "1.0",
            content_type=message.datacontenttype if message.HasField("datacontenttype") else None,
            time_ms=message.time.seconds * 1000 + message.time.nanos // 1_000_000 if message.HasField("time") else None,
            data=data,
        )


def _add_columns(batch: EventBatch, messages: Sequence[events_pb2.CloudEvent]) -> bool:
    """Reads each field of every message once into a column (one attribute read per field and
    event, no per-event function calls) for `EventBatch.add_columns`. False, with nothing added,
    when a payload is not valid JSON text or anything else needs the per-event path."""
    raws = [m.data_json for m in messages]
    loads = orjson.loads
    try:
        datas = [loads(raw) if raw else _no_payload(m) for raw, m in zip(raws, messages, strict=True)]
    except (orjson.JSONDecodeError, _PerEvent):
        return False
    stamps = [m.time for m in messages]
    times: list[int | None] = [t.seconds * 1000 + t.nanos // 1_000_000 for t in stamps]
    if 0 in times:  # an unset time reads as 0; only those messages are asked whether it was set
        times = [t if t or m.HasField("time") else None for t, m in zip(times, messages, strict=True)]
    return batch.add_columns(
        [m.id for m in messages],
        [m.source for m in messages],
        [m.type for m in messages],
        [m.subject for m in messages],
        [m.specversion or "1.0" for m in messages],
        [m.datacontenttype if m.HasField("datacontenttype") else None for m in messages],
        times,
        datas,
    )


class _PerEvent(Exception):
    """This event's payload needs the per-event path."""


def _no_payload(message: events_pb2.CloudEvent) -> Any:
    """None for an event without data; a Struct payload (rare: JSON clients send data_json, REST
    arrives as text) or data_json set to empty text (invalid JSON) goes the per-event way."""
    if message.WhichOneof("payload") is not None:
        raise _PerEvent
    return None


def stored_event_to_proto(stored: StoredEvent) -> events_pb2.IngestedEvent:
    event = stored.event
    cloud_event = events_pb2.CloudEvent(
        id=event.id, source=event.source, specversion="1.0", type=event.type, subject=event.subject
    )
    set_timestamp(cloud_event.time, event.time)
    if event.data:
        data = orjson.loads(event.data)
        if isinstance(data, dict):
            cloud_event.data.CopyFrom(struct_from(data))
            # OpenMeter lists stored data as JSON through the CloudEvents SDK, which marks it so.
            cloud_event.datacontenttype = "application/json"
    message = events_pb2.IngestedEvent(event=cloud_event)
    if stored.customer_id:
        message.customer_id = stored.customer_id
    if stored.validation_error:
        message.validation_error = stored.validation_error
    set_timestamp(message.ingested_at, event.ingested_at)
    set_timestamp(message.stored_at, stored.stored_at)
    return message


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, ingest: IngestService, events: EventQueryService, request: RequestContext) -> None:
        self._ingest = ingest
        self._events = events
        self._request = request

    async def IngestEvents(
        self, request: events_pb2.IngestEventsRequest, context: Ctx
    ) -> events_pb2.IngestEventsResponse:
        batch = add_cloudevents(
            self._ingest.new_batch(self._request.namespace(context)), request.events, request.ByteSize()
        )
        accepted = await self._ingest.ingest_batch(batch)
        metrics.EVENTS_INGESTED.inc(accepted)
        return events_pb2.IngestEventsResponse(accepted=accepted)

    async def IngestEventStream(
        self, request_iterator: AsyncIterator[events_pb2.IngestEventsRequest], context: Ctx
    ) -> AsyncIterator[events_pb2.IngestEventsResponse]:
        namespace = self._request.namespace(context)
        async for request in request_iterator:
            batch = add_cloudevents(self._ingest.new_batch(namespace), request.events, request.ByteSize())
            accepted = await self._ingest.ingest_batch(batch)
            metrics.EVENTS_INGESTED.inc(accepted)
            yield events_pb2.IngestEventsResponse(accepted=accepted)

    async def IngestCloudEvents(self, request: httpbody_pb2.HttpBody, context: Ctx) -> empty_pb2.Empty:
        accepted = await self._ingest.ingest_cloudevents(
            self._request.namespace(context), request.data, request.content_type
        )
        metrics.EVENTS_INGESTED.inc(accepted)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def ListEvents(self, request: events_pb2.ListEventsRequest, context: Ctx) -> events_pb2.ListEventsResponse:
        query = EventListQuery(
            from_=timestamp_or_none(request, "from") or self._events.default_from(),
            to=timestamp_or_none(request, "to"),
            ingested_at_from=timestamp_or_none(request, "ingested_at_from"),
            ingested_at_to=timestamp_or_none(request, "ingested_at_to"),
            id_contains=optional_str(request, "id"),
            subject_contains=optional_str(request, "subject"),
            customer_ids=tuple(dict.fromkeys(request.customer_id)),
            limit=request.limit if request.HasField("limit") else 100,
        )
        items = await self._events.list_events(self._request.namespace(context), query)
        await rest_hints(context, shape="array")
        return events_pb2.ListEventsResponse(items=[stored_event_to_proto(item) for item in items])

    async def GetDebugMetrics(self, request: events_pb2.GetDebugMetricsRequest, context: Ctx) -> httpbody_pb2.HttpBody:
        counts = await self._events.debug_counts(self._request.namespace(context))
        return httpbody_pb2.HttpBody(content_type="text/plain", data=openmetrics_event_counts(counts).encode())

    async def ListEventsV2(
        self, request: events_pb2.ListEventsV2Request, context: Ctx
    ) -> events_pb2.ListEventsV2Response:
        query = _v2_query(request)
        items = await self._events.list_events(self._request.namespace(context), query)
        response = events_pb2.ListEventsV2Response(items=[stored_event_to_proto(item) for item in items])
        if len(items) == query.limit:
            last = items[-1].event
            response.next_cursor = f"{last.time.isoformat()}|{last.id}"
        return response


def openmetrics_event_counts(counts: Sequence[tuple[str, int]]) -> str:
    """OpenMeter's debug metrics body: one OpenMetrics counter family, a sample per subject."""

    def label(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    lines = [
        "# HELP openmeter_events Number of ingested events.",
        "# TYPE openmeter_events counter",
        "# UNIT openmeter_events events",
        *(f'openmeter_events_total{{subject="{label(subject)}"}} {count}' for subject, count in counts),
        "# EOF",
    ]
    return "\n".join(lines) + "\n"


def _v2_query(request: events_pb2.ListEventsV2Request) -> EventListQuery:
    before = None
    if request.HasField("cursor"):
        try:
            time_text, event_id = request.cursor.split("|", 1)
            before = (datetime.fromisoformat(time_text), event_id)
        except ValueError as exc:
            raise ValidationError.single("cursor", "not a cursor returned by this API", "invalid_cursor") from exc
    filters = ListEventsV2Filter.parse(request.filter if request.HasField("filter") else None)
    return EventListQuery(
        id=filters.strings.get("id"),
        source=filters.strings.get("source"),
        subject=filters.strings.get("subject"),
        type=filters.strings.get("type"),
        customer_ids=filters.customer_ids,
        time=filters.time,
        ingested_at=filters.ingested_at,
        limit=request.limit if request.HasField("limit") else 100,
        before=before,
    )
