"""Metering over native gRPC: typed batch and streaming ingest, typed queries, rich error details."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import orjson
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2

from tally.v1 import events_pb2, events_pb2_grpc, meters_pb2, meters_pb2_grpc
from tests.support.barrier import settle_grpc
from tests.support.metering import unique
from tests.support.stack import wait_for


def _event(event_type: str, subject: str, i: int, *, fast: bool) -> events_pb2.CloudEvent:
    event = events_pb2.CloudEvent(id=f"{event_type}-{i}", source="grpc", type=event_type, subject=subject)
    event.time.FromDatetime(datetime.now(UTC) - timedelta(minutes=2))
    if fast:
        event.data_json = orjson.dumps({"tokens": i})
    else:
        data = struct_pb2.Struct()
        data.update({"tokens": i})
        event.data.CopyFrom(data)
    return event


async def _sum(meters: meters_pb2_grpc.MeterServiceStub, slug: str) -> float:
    response = await meters.QueryMeter(meters_pb2.QueryMeterRequest(meter_id_or_slug=slug))
    return sum(row.value for row in response.data)


async def test_batch_and_stream_ingest(channel: grpc.aio.Channel) -> None:
    events = events_pb2_grpc.EventServiceStub(channel)
    meters = meters_pb2_grpc.MeterServiceStub(channel)
    slug = unique("grpc_tokens")
    created = await meters.CreateMeter(
        meters_pb2.CreateMeterRequest(slug=slug, event_type=slug, aggregation="SUM", value_property="$.tokens")
    )
    assert created.id and created.slug == slug

    batch = events_pb2.IngestEventsRequest(events=[_event(slug, "a", i, fast=i % 2 == 0) for i in range(100)])
    assert (await events.IngestEvents(batch)).accepted == 100

    async def requests():  # type: ignore[no-untyped-def]
        for start in range(100, 400, 100):
            yield events_pb2.IngestEventsRequest(
                events=[_event(slug, "b", i, fast=True) for i in range(start, start + 100)]
            )

    acks = [ack.accepted async for ack in events.IngestEventStream(requests())]
    assert acks == [100, 100, 100]

    expected = float(sum(range(400)))

    async def settled() -> bool:
        return await _sum(meters, slug) == expected

    await wait_for(settled, timeout=15)
    by_subject = await meters.QueryMeter(meters_pb2.QueryMeterRequest(meter_id_or_slug=slug, group_by=["subject"]))
    assert {row.subject: row.value for row in by_subject.data} == {"a": sum(range(100)), "b": sum(range(100, 400))}


async def test_invalid_batch_is_rejected_whole_with_field_details(channel: grpc.aio.Channel) -> None:
    events = events_pb2_grpc.EventServiceStub(channel)
    meters = meters_pb2_grpc.MeterServiceStub(channel)
    slug = unique("grpc_invalid")
    await meters.CreateMeter(meters_pb2.CreateMeterRequest(slug=slug, event_type=slug, aggregation="COUNT"))
    good = _event(slug, "a", 1, fast=True)
    missing_subject = events_pb2.CloudEvent(id="x", source="grpc", type=slug)
    bad_json = events_pb2.CloudEvent(id="y", source="grpc", type=slug, subject="a", data_json=b"{nope")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await events.IngestEvents(events_pb2.IngestEventsRequest(events=[good, missing_subject]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = dict(error.value.trailing_metadata() or ())
    status = status_pb2.Status.FromString(details["grpc-status-details-bin"])
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert [v.field for v in bad_request.field_violations] == ["[1].subject"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await events.IngestEvents(events_pb2.IngestEventsRequest(events=[bad_json]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Nothing of the rejected batches was stored: checked once markers sent after them are stored.
    await settle_grpc(channel)
    response = await meters.QueryMeter(meters_pb2.QueryMeterRequest(meter_id_or_slug=slug))
    assert sum(row.value for row in response.data) == 0


async def test_batch_limits(channel: grpc.aio.Channel) -> None:
    events = events_pb2_grpc.EventServiceStub(channel)
    too_many = events_pb2.IngestEventsRequest(events=[_event("limits", "a", i, fast=True) for i in range(10_001)])
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await events.IngestEvents(too_many)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "10000" in (error.value.details() or "")
    huge = events_pb2.CloudEvent(
        id="huge", source="grpc", type="limits", subject="a", data_json=orjson.dumps({"blob": "x" * 70_000})
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await events.IngestEvents(events_pb2.IngestEventsRequest(events=[huge]))
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
