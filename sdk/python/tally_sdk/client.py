"""The async client: deadlines on every call, retries for idempotent ones, API-key metadata.

Requests and responses are the generated messages of `tally.v1` (typed by their .pyi files); the
client adds what the stubs lack: connection handling, a default deadline, retries with backoff on
UNAVAILABLE and DEADLINE_EXCEEDED for calls that are safe to repeat, `Authorization: Bearer` when
an API key is given, and typed errors.

Which calls are retried: every read, and ingest, because an event is identified by (source, id)
and the server drops duplicates; the client fixes each event's id before the first attempt, so a
retried batch is the same batch. Creates, updates, deletes and invoice actions are sent once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tally.v1 import events_pb2, events_pb2_grpc, invoices_pb2, invoices_pb2_grpc, meters_pb2, meters_pb2_grpc
from tally_sdk.errors import TallyError, from_rpc_error
from tally_sdk.retry import RetryPolicy

T = TypeVar("T")

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_SOURCE = "tally-sdk-python"
TimeLike = datetime | str


@dataclass(slots=True)
class Event:
    """A usage event (CloudEvents 1.0). `id` defaults to a random UUID, `time` to now on the server."""

    type: str
    subject: str
    data: Mapping[str, Any] | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    source: str | None = None
    time: TimeLike | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        """An event from its CloudEvents JSON form ({"id", "source", "type", "subject", "time", "data"})."""
        missing = [name for name in ("type", "subject") if not raw.get(name)]
        if missing:
            raise ValueError(f"event is missing {', '.join(missing)}")
        data = raw.get("data")
        if data is not None and not isinstance(data, Mapping):
            raise ValueError("event data must be a JSON object")
        time = raw.get("time")
        if time is not None:
            _timestamp(time)  # fails here, naming the event, rather than when the batch is built
        return cls(
            type=str(raw["type"]),
            subject=str(raw["subject"]),
            data=data,
            id=str(raw["id"]) if raw.get("id") else str(uuid.uuid4()),
            source=str(raw["source"]) if raw.get("source") else None,
            time=time,
        )


def _timestamp(value: TimeLike) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"time {value!r} is not an RFC 3339 time") from None
    elif not isinstance(value, datetime):
        raise ValueError(f"time {value!r} is not an RFC 3339 time")
    if value.tzinfo is None:
        raise ValueError(f"time {value.isoformat()} has no time zone; pass an aware datetime")
    result.FromDatetime(value.astimezone(UTC))
    return result


def _set_time(target: Any, name: str, value: TimeLike | None) -> None:
    if value is not None:
        getattr(target, name).CopyFrom(_timestamp(value))


def to_cloudevent(event: Event | Mapping[str, Any], default_source: str) -> events_pb2.CloudEvent:
    """The wire form of an event; data travels as JSON bytes (the server's fast path)."""
    if not isinstance(event, Event):
        event = Event.from_dict(event)
    message = events_pb2.CloudEvent(
        id=event.id, source=event.source or default_source, specversion="1.0", type=event.type, subject=event.subject
    )
    _set_time(message, "time", event.time)
    if event.data is not None:
        message.data_json = json.dumps(event.data, separators=(",", ":"), default=str).encode()
    return message


def _one_or_list(values: Sequence[str]) -> str | list[str]:
    items = list(values)
    return items[0] if len(items) == 1 else items


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A google.protobuf.Struct (event data, annotations) as plain Python values."""
    result: dict[str, Any] = json_format.MessageToDict(struct)
    return result


class Client:
    """An async client for one Tally gRPC endpoint. Use as `async with Client(...) as client:`.

    target: host:port of Tally's gRPC port (default 127.0.0.1:50051).
    api_key: sent as `authorization: Bearer <key>` on every call when given.
    timeout: the deadline of each attempt, in seconds; every method takes `timeout=` to override it.
    retry: how idempotent calls are retried (RetryPolicy(max_attempts=1) turns retries off).
    credentials: TLS channel credentials; None is plaintext (in-cluster or loopback).
    source: the CloudEvents source of events that carry none.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        source: str = DEFAULT_SOURCE,
        options: Sequence[tuple[str, Any]] = (),
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.source = source
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        channel_options = [("grpc.max_receive_message_length", 32 * 1024 * 1024), *options]
        if channel is not None:
            self._channel = channel
            self._owns_channel = False
        elif credentials is not None:
            self._channel = grpc.aio.secure_channel(target, credentials, options=channel_options)
            self._owns_channel = True
        else:
            self._channel = grpc.aio.insecure_channel(target, options=channel_options)
            self._owns_channel = True
        self.events = events_pb2_grpc.EventServiceStub(self._channel)
        self.meters = meters_pb2_grpc.MeterServiceStub(self._channel)
        self.invoices = invoices_pb2_grpc.InvoiceServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close()

    async def _call(
        self,
        rpc: Callable[..., Awaitable[T]],
        request: Any,
        *,
        idempotent: bool,
        timeout: float | None,
    ) -> T:
        attempts = self.retry.max_attempts if idempotent else 1
        for attempt in range(attempts):
            try:
                return await rpc(request, timeout=timeout or self.timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                if attempt + 1 >= attempts or exc.code() not in self.retry.codes:
                    raise from_rpc_error(exc) from None
            await asyncio.sleep(self.retry.backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    # Health

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """The server's health for a service ("" for the whole server): SERVING, NOT_SERVING, ..."""
        response = await self._call(
            self._health.Check, health_pb2.HealthCheckRequest(service=service), idempotent=True, timeout=timeout
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    # Events

    def build_batch(self, events: Iterable[Event | Mapping[str, Any]]) -> events_pb2.IngestEventsRequest:
        """The request ingest() sends; build it once to resend the same batch (same ids) later."""
        return events_pb2.IngestEventsRequest(events=[to_cloudevent(event, self.source) for event in events])

    async def ingest(
        self,
        events: Iterable[Event | Mapping[str, Any]] | events_pb2.IngestEventsRequest,
        *,
        timeout: float | None = None,
    ) -> int:
        """Ingests a batch (all or nothing) and returns once it is durable; the number accepted."""
        request = events if isinstance(events, events_pb2.IngestEventsRequest) else self.build_batch(events)
        if not request.events:
            return 0
        response = await self._call(self.events.IngestEvents, request, idempotent=True, timeout=timeout)
        return int(response.accepted)

    async def list_events(
        self,
        *,
        from_: TimeLike | None = None,
        to: TimeLike | None = None,
        ingested_at_from: TimeLike | None = None,
        ingested_at_to: TimeLike | None = None,
        id: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> list[events_pb2.IngestedEvent]:
        """Stored events, newest first (event time within the last 32 days unless from_ is given)."""
        request = events_pb2.ListEventsRequest()
        _set_time(request, "from", from_)
        _set_time(request, "to", to)
        _set_time(request, "ingested_at_from", ingested_at_from)
        _set_time(request, "ingested_at_to", ingested_at_to)
        if id is not None:
            request.id = id
        if subject is not None:
            request.subject = subject
        if limit is not None:
            request.limit = limit
        response = await self._call(self.events.ListEvents, request, idempotent=True, timeout=timeout)
        return list(response.items)

    async def list_events_page(
        self,
        *,
        filter: Mapping[str, Any] | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> tuple[list[events_pb2.IngestedEvent], str | None]:
        """One page of stored events (ListEventsV2) and the cursor of the next page, if any."""
        request = events_pb2.ListEventsV2Request()
        if filter is not None:
            request.filter = json.dumps(filter, default=str)
        if cursor is not None:
            request.cursor = cursor
        if limit is not None:
            request.limit = limit
        response = await self._call(self.events.ListEventsV2, request, idempotent=True, timeout=timeout)
        return list(response.items), response.next_cursor if response.HasField("next_cursor") else None

    # Meters

    async def list_meters(
        self, *, include_deleted: bool = False, timeout: float | None = None
    ) -> list[meters_pb2.Meter]:
        request = meters_pb2.ListMetersRequest(include_deleted=include_deleted)
        response = await self._call(self.meters.ListMeters, request, idempotent=True, timeout=timeout)
        return list(response.items)

    async def get_meter(self, meter_id_or_slug: str, *, timeout: float | None = None) -> meters_pb2.Meter:
        request = meters_pb2.GetMeterRequest(meter_id_or_slug=meter_id_or_slug)
        result: meters_pb2.Meter = await self._call(self.meters.GetMeter, request, idempotent=True, timeout=timeout)
        return result

    async def create_meter(
        self,
        slug: str,
        *,
        aggregation: str,
        event_type: str,
        value_property: str | None = None,
        group_by: Mapping[str, str] | None = None,
        name: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        event_from: TimeLike | None = None,
        timeout: float | None = None,
    ) -> meters_pb2.Meter:
        """Creates a meter (sent once: a retried create could collide with itself)."""
        request = meters_pb2.CreateMeterRequest(
            slug=slug,
            aggregation=aggregation,
            event_type=event_type,
            group_by=dict(group_by or {}),
            metadata=dict(metadata or {}),
        )
        if value_property is not None:
            request.value_property = value_property
        if name is not None:
            request.name = name
        if description is not None:
            request.description = description
        _set_time(request, "event_from", event_from)
        result: meters_pb2.Meter = await self._call(self.meters.CreateMeter, request, idempotent=False, timeout=timeout)
        return result

    async def delete_meter(self, meter_id_or_slug: str, *, timeout: float | None = None) -> None:
        request = meters_pb2.DeleteMeterRequest(meter_id_or_slug=meter_id_or_slug)
        await self._call(self.meters.DeleteMeter, request, idempotent=False, timeout=timeout)

    def query_request(
        self,
        meter_id_or_slug: str,
        *,
        from_: TimeLike | None = None,
        to: TimeLike | None = None,
        window_size: str | None = None,
        window_time_zone: str | None = None,
        subjects: Sequence[str] = (),
        customer_ids: Sequence[str] = (),
        group_by: Sequence[str] = (),
        filter_group_by: Mapping[str, Sequence[str]] | None = None,
    ) -> meters_pb2.QueryMeterRequest:
        request = meters_pb2.QueryMeterRequest(
            meter_id_or_slug=meter_id_or_slug,
            subject=list(subjects),
            filter_customer_id=list(customer_ids),
            group_by=list(group_by),
        )
        _set_time(request, "from", from_)
        _set_time(request, "to", to)
        if window_size is not None:
            request.window_size = window_size
        if window_time_zone is not None:
            request.window_time_zone = window_time_zone
        for key, values in (filter_group_by or {}).items():
            # One value travels as a plain string, as OpenMeter's clients send it.
            request.filter_group_by.update({key: values if isinstance(values, str) else _one_or_list(values)})
        return request

    async def query_meter(
        self, meter_id_or_slug: str, *, timeout: float | None = None, **query: Any
    ) -> meters_pb2.QueryMeterResponse:
        """Aggregates the meter's usage. Keyword arguments as in query_request()."""
        request = self.query_request(meter_id_or_slug, **query)
        result: meters_pb2.QueryMeterResponse = await self._call(
            self.meters.QueryMeter, request, idempotent=True, timeout=timeout
        )
        return result

    async def query_meter_csv(self, meter_id_or_slug: str, *, timeout: float | None = None, **query: Any) -> str:
        """The same query as OpenMeter's CSV (window_start,window_end[,subject][,group keys],value)."""
        request = self.query_request(meter_id_or_slug, **query)
        body = await self._call(self.meters.QueryMeterCsv, request, idempotent=True, timeout=timeout)
        return bytes(body.data).decode()

    async def list_meter_subjects(
        self,
        meter_id_or_slug: str,
        *,
        from_: TimeLike | None = None,
        to: TimeLike | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        request = meters_pb2.ListMeterSubjectsRequest(meter_id_or_slug=meter_id_or_slug)
        _set_time(request, "from", from_)
        _set_time(request, "to", to)
        response = await self._call(self.meters.ListMeterSubjects, request, idempotent=True, timeout=timeout)
        return list(response.items)

    # Invoices (OpenMeter's /api/v1/billing/invoices; lines and money as the REST JSON has them)

    async def list_invoices(
        self,
        *,
        customers: Sequence[str] = (),
        statuses: Sequence[str] = (),
        expand: Sequence[str] = ("lines",),
        include_deleted: bool = False,
        page: int | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
    ) -> invoices_pb2.ListInvoicesResponse:
        """One page of invoices, newest first; `customers` are customer IDs, `statuses` e.g. gathering, paid."""
        request = invoices_pb2.ListInvoicesRequest(
            customers=list(customers), statuses=list(statuses), expand=list(expand), include_deleted=include_deleted
        )
        if page is not None:
            request.page = page
        if page_size is not None:
            request.page_size = page_size
        result: invoices_pb2.ListInvoicesResponse = await self._call(
            self.invoices.ListInvoices, request, idempotent=True, timeout=timeout
        )
        return result

    async def get_invoice(
        self, invoice_id: str, *, include_deleted_lines: bool = False, timeout: float | None = None
    ) -> invoices_pb2.Invoice:
        request = invoices_pb2.GetInvoiceRequest(invoice_id=invoice_id, include_deleted_lines=include_deleted_lines)
        result: invoices_pb2.Invoice = await self._call(
            self.invoices.GetInvoice, request, idempotent=True, timeout=timeout
        )
        return result

    async def create_pending_lines(
        self,
        customer: str,
        currency: str,
        lines: Iterable[Mapping[str, Any] | invoices_pb2.InvoicePendingLine],
        *,
        timeout: float | None = None,
    ) -> invoices_pb2.CreatePendingInvoiceLinesResponse:
        """Adds lines to the customer's (ID or key) gathering invoice. A line may be given as its REST
        JSON ({"name", "period": {"from", "to"}, "invoiceAt", "rateCard": {"price", "featureKey"}})."""
        request = invoices_pb2.CreatePendingInvoiceLinesRequest(
            customer_id=customer, currency=currency, lines=[_pending_line(line) for line in lines]
        )
        result: invoices_pb2.CreatePendingInvoiceLinesResponse = await self._call(
            self.invoices.CreatePendingInvoiceLines, request, idempotent=False, timeout=timeout
        )
        return result

    async def invoice_now(
        self,
        customer: str,
        *,
        as_of: TimeLike | None = None,
        line_ids: Sequence[str] = (),
        progressive_billing_override: bool | None = None,
        timeout: float | None = None,
    ) -> list[invoices_pb2.Invoice]:
        """Invoices the customer's lines due by `as_of` (default now): one invoice per currency."""
        request = invoices_pb2.InvoicePendingLinesRequest(customer_id=customer)
        if line_ids:
            # Filters that name no line are refused (they would not mean "every line").
            request.filters.line_ids.extend(line_ids)
        if as_of is not None:
            request.as_of = _timestamp(as_of).ToJsonString()
        if progressive_billing_override is not None:
            request.progressive_billing_override = progressive_billing_override
        response = await self._call(self.invoices.InvoicePendingLines, request, idempotent=False, timeout=timeout)
        return list(response.items)

    async def approve_invoice(self, invoice_id: str, *, timeout: float | None = None) -> invoices_pb2.Invoice:
        return await self._invoice_action(self.invoices.ApproveInvoice, invoice_id, timeout)

    async def advance_invoice(self, invoice_id: str, *, timeout: float | None = None) -> invoices_pb2.Invoice:
        return await self._invoice_action(self.invoices.AdvanceInvoice, invoice_id, timeout)

    async def retry_invoice(self, invoice_id: str, *, timeout: float | None = None) -> invoices_pb2.Invoice:
        return await self._invoice_action(self.invoices.RetryInvoice, invoice_id, timeout)

    async def snapshot_invoice_quantities(
        self, invoice_id: str, *, timeout: float | None = None
    ) -> invoices_pb2.Invoice:
        return await self._invoice_action(self.invoices.SnapshotInvoiceQuantities, invoice_id, timeout)

    async def void_invoice(
        self,
        invoice_id: str,
        reason: str,
        *,
        bill_again: bool = False,
        next_invoice_at: TimeLike | None = None,
        timeout: float | None = None,
    ) -> invoices_pb2.Invoice:
        """Voids an issued, unpaid invoice; the reason is kept on it (OpenMeter answers 501 here).
        Its lines are forgiven (`discard`), or with `bill_again` put back on the gathering invoice
        to be billed again (`pending`), due at `next_invoice_at` (default: at once; not for a
        subscription's lines, which its sync makes again at once)."""
        if next_invoice_at is not None and not bill_again:
            raise ValueError("next_invoice_at is for lines billed again: pass bill_again=True")
        line_action = invoices_pb2.VoidInvoiceLineAction(type="pending" if bill_again else "discard")
        if next_invoice_at is not None:
            line_action.next_invoice_at = _timestamp(next_invoice_at).ToJsonString()
        request = invoices_pb2.VoidInvoiceRequest(
            invoice_id=invoice_id,
            reason=reason,
            action=invoices_pb2.VoidInvoiceAction(percentage=100, action=line_action),
        )
        result: invoices_pb2.Invoice = await self._call(
            self.invoices.VoidInvoice, request, idempotent=False, timeout=timeout
        )
        return result

    async def delete_invoice(self, invoice_id: str, *, timeout: float | None = None) -> None:
        """Deletes a draft; its lines go back to the gathering invoice."""
        request = invoices_pb2.DeleteInvoiceRequest(invoice_id=invoice_id)
        await self._call(self.invoices.DeleteInvoice, request, idempotent=False, timeout=timeout)

    async def _invoice_action(
        self, rpc: Callable[..., Awaitable[invoices_pb2.Invoice]], invoice_id: str, timeout: float | None
    ) -> invoices_pb2.Invoice:
        # Sent once: repeating an action that did happen would be refused or move the invoice on.
        request = invoices_pb2.InvoiceActionRequest(invoice_id=invoice_id)
        return await self._call(rpc, request, idempotent=False, timeout=timeout)


def _pending_line(line: Mapping[str, Any] | invoices_pb2.InvoicePendingLine) -> invoices_pb2.InvoicePendingLine:
    if isinstance(line, invoices_pb2.InvoicePendingLine):
        return line
    message = invoices_pb2.InvoicePendingLine()
    json_format.ParseDict(dict(line), message)
    return message


__all__ = ["Client", "Event", "TallyError", "struct_to_dict", "to_cloudevent"]
