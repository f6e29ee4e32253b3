"""MeterService: proto <-> domain for meter CRUD and queries (JSON and CSV)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, tzinfo
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from google.api import httpbody_pb2
from google.protobuf import empty_pb2, struct_pb2

from domain.errors import FieldViolation, ValidationError
from domain.metering.events import IngestLimits
from domain.metering.models import Meter, MeterCreateInput, MeterUpdateInput
from domain.metering.preview import MeterDefinition, preview_meter
from domain.metering.query import (
    FilterString,
    ListGroupByValuesInput,
    ListSubjectsInput,
    MeterQuery,
    MeterQueryInput,
    QueryRow,
)
from domain.metering.service import MeterService
from domain.wiretime import rfc3339
from server.context import RequestContext
from server.convert import optional_str, set_timestamp, struct_from, timestamp_or_none
from server.rest import ServicerContext as Ctx
from server.rest import header, rest_hints
from tally.v1 import meters_pb2, meters_pb2_grpc


def meter_to_proto(meter: Meter) -> meters_pb2.Meter:
    message = meters_pb2.Meter(
        id=meter.id,
        slug=meter.slug,
        name=meter.name,
        aggregation=meter.aggregation.value,
        event_type=meter.event_type,
        group_by=meter.group_by,
        metadata=meter.metadata,
    )
    if meter.description is not None:
        message.description = meter.description
    if meter.value_property is not None:
        message.value_property = meter.value_property
    if meter.annotations:
        message.annotations.CopyFrom(struct_from(meter.annotations))
    set_timestamp(message.event_from, meter.event_from)
    set_timestamp(message.created_at, meter.created_at)
    set_timestamp(message.updated_at, meter.updated_at)
    set_timestamp(message.deleted_at, meter.deleted_at)
    return message


def _filter_string(message: meters_pb2.FilterString) -> FilterString:
    return FilterString(
        eq=optional_str(message, "eq"),
        ne=optional_str(message, "ne"),
        in_=tuple(getattr(message, "in")) or None,
        nin=tuple(message.nin) or None,
        like=optional_str(message, "like"),
        nlike=optional_str(message, "nlike"),
        ilike=optional_str(message, "ilike"),
        nilike=optional_str(message, "nilike"),
        gt=optional_str(message, "gt"),
        gte=optional_str(message, "gte"),
        lt=optional_str(message, "lt"),
        lte=optional_str(message, "lte"),
        and_=tuple(_filter_string(item) for item in getattr(message, "and")) or None,
        or_=tuple(_filter_string(item) for item in getattr(message, "or")) or None,
    )


def _filter_group_by(request: meters_pb2.QueryMeterRequest, context: Ctx) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key, value in request.filter_group_by.items():
        values = [value] if isinstance(value, str) else list(value) if isinstance(value, struct_pb2.ListValue) else None
        if values is None or not all(isinstance(v, str) for v in values):
            raise ValidationError.single(f"filterGroupBy.{key}", "must be a string or an array of strings")
        result[key] = [str(v) for v in values]
    # GET clients send deepObject parameters (filterGroupBy[model]=x), which the transcoder cannot
    # map; Envoy passes the original path along.
    original = header(context, "x-envoy-original-path")
    if original:
        for name, value in parse_qsl(urlsplit(original).query, keep_blank_values=True):
            if name.startswith("filterGroupBy[") and name.endswith("]"):
                result.setdefault(name[len("filterGroupBy[") : -1], []).append(value)
    return result


def query_input(request: meters_pb2.QueryMeterRequest, context: Ctx) -> MeterQueryInput:
    return MeterQueryInput(
        from_=timestamp_or_none(request, "from"),
        to=timestamp_or_none(request, "to"),
        window_size=optional_str(request, "window_size"),
        window_time_zone=optional_str(request, "window_time_zone"),
        subjects=list(request.subject),
        filter_customer_ids=list(request.filter_customer_id),
        group_by=list(request.group_by),
        filter_group_by=_filter_group_by(request, context),
        advanced_filters={key: _filter_string(value) for key, value in request.advanced_meter_group_by_filters.items()},
        client_id=optional_str(request, "client_id"),
    )


async def rest_query_rows(context: Ctx, query: MeterQuery) -> None:
    """Over REST every row carries `subject`, null unless the query groups by subject, as OpenMeter's
    rows do. The transcoder leaves it out when unset (an empty `groupBy` it prints as `{}`), and
    whether it is set is the same for every row of a query (adapters/clickhouse/meter_wire.py)."""
    await rest_hints(context, row_fill=("windowEnd", [] if query.groups_by_subject else ['"subject":null']))


def query_response(data: MeterQueryInput, rows: bytes) -> bytes:
    """OpenMeter's MeterQueryResult, serialized: the request's from, to and windowSize echoed, then
    the rows as the event store encoded them (the `data` field's wire bytes, EventStore.
    query_meter_wire). A protobuf message is the concatenation of its fields, so nothing is parsed;
    the servicer returns the bytes as they are (server/encoded.py)."""
    head = meters_pb2.QueryMeterResponse()
    set_timestamp(getattr(head, "from"), data.from_)
    set_timestamp(head.to, data.to)
    if data.window_size is not None:
        head.window_size = data.window_size
    encoded: bytes = head.SerializeToString()
    return encoded + rows


# Go's unicode.IsSpace in Latin-1; above it, Python's isspace() holds the same characters.
_GO_LATIN1_SPACES = frozenset("\t\n\v\f\r \x85\xa0")


def _csv_field(field: str) -> str:
    """A CSV field as Go's encoding/csv Writer writes it (OpenMeter's CSV): quoted when it holds a
    comma, a quote, \\r or \\n, starts with white space, or is `\\.`. Python's csv module leaves a
    lone \\r bare, which splits the row for most readers, and leading white space too."""
    if not field:
        return field
    first = field[0]
    if (
        field == "\\."
        or any(c in field for c in ',"\r\n')
        or first in _GO_LATIN1_SPACES
        or (first > "\xff" and first.isspace())
    ):
        return '"' + field.replace('"', '""') + '"'
    return field


def _csv_record(fields: list[str]) -> str:
    return ",".join(_csv_field(field) for field in fields) + "\n"


def render_csv(query: MeterQuery, rows: list[QueryRow], display_names: Mapping[str, str] | None = None) -> str:
    """OpenMeter's CSV: window_start,window_end[,subject[,subject_display_name]][,<group-by keys>],value;
    values with %f.

    The group-by columns come in the order OpenMeter's handler keeps the keys (`group_by_order`),
    not sorted: a client reading columns by position gets the ones it asked for where it asked.
    `display_names` (MeterService.subject_display_names) holds the row subjects that are subject
    entities; when it holds any, OpenMeter adds subject_display_name ("" for the others).
    Windows are written in the window time zone (OpenMeter scans them from DateTime columns of that
    zone); the request's `from` and `to`, which reach here without their offsets, in UTC."""
    with_subject = query.groups_by_subject
    with_names = with_subject and bool(display_names)
    names = display_names or {}
    group_keys = [key for key in query.group_by_order if key != "subject"]
    subject_columns = ["subject", "subject_display_name"] if with_names else ["subject"] if with_subject else []
    out = [_csv_record(["window_start", "window_end", *subject_columns, *group_keys, "value"])]
    zone: tzinfo = UTC if query.window_size is None else ZoneInfo(query.time_zone)
    for row in rows:
        # Go's time.RFC3339, which OpenMeter's CSV uses: whole seconds, in the windows' zone.
        line = [
            rfc3339(row.window_start, timespec="seconds", zone=zone),
            rfc3339(row.window_end, timespec="seconds", zone=zone),
        ]
        if with_subject:
            line.append(row.subject or "")
        if with_names:
            line.append(names.get(row.subject or "", ""))
        for key in group_keys:
            line.append(row.customer_id or "" if key == "customer_id" else row.group_by.get(key) or "")
        line.append(f"{row.value:f}")
        out.append(_csv_record(line))
    return "".join(out)


async def csv_answer(context: Ctx, meter: Meter, text: str) -> httpbody_pb2.HttpBody:
    """A meter query's CSV; over REST a download named after the meter, as OpenMeter's CSV encoder
    answers it (commonhttp csvResponseEncoder: Content-Disposition with the meter's slug)."""
    await rest_hints(context, headers=[("content-disposition", f"attachment; filename={meter.slug}.csv")])
    return httpbody_pb2.HttpBody(content_type="text/csv", data=text.encode())


class MeterServicer(meters_pb2_grpc.MeterServiceServicer):
    def __init__(self, meters: MeterService, request: RequestContext, limits: IngestLimits) -> None:
        self._meters = meters
        self._request = request
        # The ingest limits, so a preview refuses a sample event exactly as ingest would.
        self._limits = limits

    async def ListMeters(self, request: meters_pb2.ListMetersRequest, context: Ctx) -> meters_pb2.ListMetersResponse:
        meters = await self._meters.list_meters(
            self._request.namespace(context),
            request.include_deleted,
            optional_str(request, "order_by"),
            optional_str(request, "order"),
        )
        await rest_hints(context, shape="array")
        return meters_pb2.ListMetersResponse(items=[meter_to_proto(m) for m in meters])

    async def CreateMeter(self, request: meters_pb2.CreateMeterRequest, context: Ctx) -> meters_pb2.Meter:
        data = MeterCreateInput(
            slug=request.slug,
            aggregation=request.aggregation,
            event_type=request.event_type,
            name=optional_str(request, "name"),
            description=optional_str(request, "description"),
            event_from=timestamp_or_none(request, "event_from"),
            value_property=optional_str(request, "value_property"),
            group_by=dict(request.group_by),
            metadata=dict(request.metadata),
        )
        meter = await self._meters.create(self._request.namespace(context), data)
        await rest_hints(context, http_code=201)
        return meter_to_proto(meter)

    async def GetMeter(self, request: meters_pb2.GetMeterRequest, context: Ctx) -> meters_pb2.Meter:
        return meter_to_proto(await self._meters.get(self._request.namespace(context), request.meter_id_or_slug))

    async def UpdateMeter(self, request: meters_pb2.UpdateMeterRequest, context: Ctx) -> meters_pb2.Meter:
        data = MeterUpdateInput(
            name=optional_str(request, "name"),
            description=optional_str(request, "description"),
            group_by=dict(request.group_by),
            metadata=dict(request.metadata),
        )
        meter = await self._meters.update(self._request.namespace(context), request.meter_id_or_slug, data)
        return meter_to_proto(meter)

    async def DeleteMeter(self, request: meters_pb2.DeleteMeterRequest, context: Ctx) -> empty_pb2.Empty:
        await self._meters.delete(self._request.namespace(context), request.meter_id_or_slug)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def QueryMeter(self, request: meters_pb2.QueryMeterRequest, context: Ctx) -> bytes:
        data = query_input(request, context)
        query, rows = await self._meters.query_wire(self._request.namespace(context), request.meter_id_or_slug, data)
        await rest_query_rows(context, query)
        return query_response(data, rows)

    async def QueryMeterCsv(self, request: meters_pb2.QueryMeterRequest, context: Ctx) -> httpbody_pb2.HttpBody:
        data = query_input(request, context)
        namespace = self._request.namespace(context)
        meter, query, rows = await self._meters.query(namespace, request.meter_id_or_slug, data)
        names = await self._meters.subject_display_names(namespace, query, rows)
        return await csv_answer(context, meter, render_csv(query, rows, names))

    async def GetProgress(self, request: meters_pb2.GetProgressRequest, context: Ctx) -> meters_pb2.Progress:
        progress = await self._meters.progress(self._request.namespace(context), request.id)
        message = meters_pb2.Progress(
            success=float(progress.success), failed=float(progress.failed), total=float(progress.total)
        )
        set_timestamp(message.updated_at, progress.updated_at)
        return message

    async def ListMeterSubjects(
        self, request: meters_pb2.ListMeterSubjectsRequest, context: Ctx
    ) -> meters_pb2.ListMeterSubjectsResponse:
        data = ListSubjectsInput(from_=timestamp_or_none(request, "from"), to=timestamp_or_none(request, "to"))
        subjects = await self._meters.subjects(self._request.namespace(context), request.meter_id_or_slug, data)
        await rest_hints(context, shape="array")
        return meters_pb2.ListMeterSubjectsResponse(items=subjects)

    async def ListMeterGroupByValues(
        self, request: meters_pb2.ListMeterGroupByValuesRequest, context: Ctx
    ) -> meters_pb2.ListMeterGroupByValuesResponse:
        data = ListGroupByValuesInput(
            group_by_key=request.group_by_key,
            from_=timestamp_or_none(request, "from"),
            to=timestamp_or_none(request, "to"),
            search=optional_str(request, "search"),
        )
        values = await self._meters.group_by_values(self._request.namespace(context), request.meter_id_or_slug, data)
        await rest_hints(context, shape="array")
        return meters_pb2.ListMeterGroupByValuesResponse(items=values)

    async def PreviewMeter(
        self, request: meters_pb2.PreviewMeterRequest, context: Ctx
    ) -> meters_pb2.PreviewMeterResponse:
        definition = MeterDefinition(
            aggregation=request.aggregation,
            event_type=request.event_type,
            value_property=optional_str(request, "value_property"),
            group_by=dict(request.group_by),
        )
        preview = preview_meter(definition, request.sample_event, self._limits)
        response = meters_pb2.PreviewMeterResponse(
            meter_errors=[_field_error(v) for v in preview.meter_errors],
            event_errors=[_field_error(v) for v in preview.event_errors],
            event_type_matches=preview.event_type_matches,
            group_by=preview.group_by,
        )
        if preview.value is not None:
            response.value = preview.value
        if preview.unique_value is not None:
            response.unique_value = preview.unique_value
        if preview.skip_reason is not None:
            response.skip_reason = preview.skip_reason
        return response


def _field_error(violation: FieldViolation) -> meters_pb2.PreviewFieldError:
    return meters_pb2.PreviewFieldError(field=violation.field, message=violation.message, code=violation.code)
