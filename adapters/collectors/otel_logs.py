"""OpenTelemetry logs source: an OTLP/gRPC LogsService receiver (opentelemetry-proto's messages).

Each log record becomes a record for the mapping: `time` and `observed_time` (RFC 3339),
`severity_text`, `severity_number`, `body`, `attributes`, `resource` (the resource's attributes),
`scope` (name, version, attributes), `trace_id`, `span_id` (hex) and `event_name`. An Export is
answered only once its events are durably buffered: an exporter that times out and sends the batch
again yields the same event ids (a digest of the record and its resource), so nothing doubles.
Records the mapping cannot turn into events (or filters out) are reported in the response's
partial_success, as OTLP specifies; a full buffer answers UNAVAILABLE, which exporters retry.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

from adapters.collectors.records import BufferFullError, Record, record_time

# (records) -> (rejected count, error message)
Accept = Callable[[list[Record]], Awaitable[tuple[int, str]]]


def any_value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def attributes(items: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {item.key: any_value(item.value) for item in items}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(nanos: int) -> datetime | None:
    # Whole microseconds, truncated in integers: through a float (or rounding) a record of the last
    # microsecond of a day or month would be dated the next one, and billed in that period.
    return _EPOCH + timedelta(microseconds=nanos // 1000) if nanos else None


def records(request: logs_service_pb2.ExportLogsServiceRequest) -> list[Record]:
    result = []
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        resource_bytes = resource_logs.resource.SerializeToString(deterministic=True)
        for scope_logs in resource_logs.scope_logs:
            scope = {
                "name": scope_logs.scope.name,
                "version": scope_logs.scope.version,
                "attributes": attributes(scope_logs.scope.attributes),
            }
            for log_record in scope_logs.log_records:
                moment = _time(log_record.time_unix_nano) or _time(log_record.observed_time_unix_nano)
                digest = hashlib.sha256(resource_bytes)
                digest.update(scope_logs.scope.SerializeToString(deterministic=True))
                digest.update(log_record.SerializeToString(deterministic=True))
                values = {
                    "time": record_time(moment) if moment else None,
                    "observed_time": record_time(o) if (o := _time(log_record.observed_time_unix_nano)) else None,
                    "severity_text": log_record.severity_text,
                    "severity_number": log_record.severity_number,
                    "body": any_value(log_record.body),
                    "attributes": attributes(log_record.attributes),
                    "resource": resource,
                    "scope": scope,
                    "trace_id": log_record.trace_id.hex(),
                    "span_id": log_record.span_id.hex(),
                    "event_name": log_record.event_name,
                }
                # The record's own digest identifies it; it already contains its timestamps.
                result.append(
                    Record(values=values, key=digest.hexdigest(), window="", time=moment or datetime.now(UTC))
                )
    return result


class _Servicer(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]  # generated, untyped
    def __init__(self, accept: Accept) -> None:
        self.accept = accept

    async def Export(
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: grpc.aio.ServicerContext
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        try:
            rejected, message = await self.accept(records(request))
        except BufferFullError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        response = logs_service_pb2.ExportLogsServiceResponse()
        if rejected:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = message
        return response


class OtelLogsReceiver:
    def __init__(self, name: str, listen: str, accept: Accept) -> None:
        self.name = name
        self.server = grpc.aio.server(options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)])
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Servicer(accept), self.server)
        self.port = self.server.add_insecure_port(listen)

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)
