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
from domain.metering.events import EventBatch, EventListQuery, StoredEvent
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


def add_cloudevents(batch: EventBatch, messages: Sequence[events_pb2.CloudEvent]) -> EventBatch:
    """Feeds typed gRPC events into the domain's batch validation, field by field."""
    batch.check_size(len(messages))
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
    return batch


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
        batch = add_cloudevents(self._ingest.new_batch(self._request.namespace(context)), request.events)
        accepted = await self._ingest.ingest_batch(batch)
        metrics.EVENTS_INGESTED.inc(accepted)
        return events_pb2.IngestEventsResponse(accepted=accepted)

    async def IngestEventStream(
        self, request_iterator: AsyncIterator[events_pb2.IngestEventsRequest], context: Ctx
    ) -> AsyncIterator[events_pb2.IngestEventsResponse]:
        namespace = self._request.namespace(context)
        async for request in request_iterator:
            batch = add_cloudevents(self._ingest.new_batch(namespace), request.events)
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
            limit=request.limit if request.HasField("limit") else 100,
        )
        items = await self._events.list_events(self._request.namespace(context), query)
        await rest_hints(context, shape="array")
        return events_pb2.ListEventsResponse(items=[stored_event_to_proto(item) for item in items])

    async def ListEventsV2(
        self, request: events_pb2.ListEventsV2Request, context: Ctx
    ) -> events_pb2.ListEventsV2Response:
        query = _v2_query(request, self._events.default_from())
        items = await self._events.list_events(self._request.namespace(context), query)
        response = events_pb2.ListEventsV2Response(items=[stored_event_to_proto(item) for item in items])
        if len(items) == query.limit:
            last = items[-1].event
            response.next_cursor = f"{last.time.isoformat()}|{last.id}"
        return response


def _v2_query(request: events_pb2.ListEventsV2Request, default_from: datetime) -> EventListQuery:
    limit = request.limit if request.HasField("limit") else 100
    before = None
    if request.HasField("cursor"):
        try:
            time_text, event_id = request.cursor.split("|", 1)
            before = (datetime.fromisoformat(time_text), event_id)
        except ValueError as exc:
            raise ValidationError.single("cursor", "not a cursor returned by this API", "invalid_cursor") from exc
    filters: dict[str, Any] = {}
    if request.HasField("filter"):
        try:
            filters = orjson.loads(request.filter)
        except orjson.JSONDecodeError as exc:
            raise ValidationError.single("filter", f"must be a JSON object: {exc}", "invalid_json") from exc
        if not isinstance(filters, dict):
            raise ValidationError.single("filter", "must be a JSON object", "invalid_type")

    def eq(name: str) -> tuple[str, ...]:
        value = filters.get(name)
        if value is None:
            return ()
        if isinstance(value, dict) and isinstance(value.get("$eq"), str):
            return (value["$eq"],)
        if isinstance(value, dict) and isinstance(value.get("$in"), list):
            return tuple(str(v) for v in value["$in"])
        raise ValidationError.single(f"filter.{name}", "supported operators: $eq, $in", "unsupported_filter")

    def time_range(name: str) -> tuple[datetime | None, datetime | None]:
        value = filters.get(name)
        if value is None:
            return None, None
        if not isinstance(value, dict):
            raise ValidationError.single(f"filter.{name}", "must be an object of $gte/$gt/$lte/$lt", "invalid_type")
        try:
            lower = value.get("$gte") or value.get("$gt")
            upper = value.get("$lt") or value.get("$lte")
            return (
                datetime.fromisoformat(lower) if lower else None,
                datetime.fromisoformat(upper) if upper else None,
            )
        except (TypeError, ValueError) as exc:
            raise ValidationError.single(f"filter.{name}", "times must be RFC 3339", "invalid_time") from exc

    time_from, time_to = time_range("time")
    ingested_from, ingested_to = time_range("ingestedAt")
    ids = eq("id")
    subjects = eq("subject")
    return EventListQuery(
        from_=time_from or default_from,
        to=time_to,
        ingested_at_from=ingested_from,
        ingested_at_to=ingested_to,
        id_contains=ids[0] if len(ids) == 1 else None,
        subjects=subjects or None,
        sources=eq("source"),
        types=eq("type"),
        limit=limit,
        before=before,
    )
