"""The ingest limits hold on every path: REST through Envoy, gRPC IngestEvents and IngestEventStream.

A stack with small limits (ingest.max_batch_bytes 64 KiB, ingest.max_batch_events 50), so the requests
over them stay small; each refusal names the setting, and nothing of a refused request is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import orjson
import pytest
import pytest_asyncio

from tally.v1 import events_pb2, events_pb2_grpc
from tests.support.metering import cloudevent, unique
from tests.support.stack import TallyProcess, create_database

LIMITS = {"TALLY_INGEST__MAX_BATCH_BYTES": str(64 * 1024), "TALLY_INGEST__MAX_BATCH_EVENTS": "50"}


@pytest.fixture(scope="module")
def small(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    url = asyncio.run(create_database())
    stack = TallyProcess(data_dir=tmp_path_factory.mktemp("limits"), postgres_url=url, extra_env=LIMITS).start()
    yield stack
    stack.stop()


@pytest_asyncio.fixture
async def stub(small: TallyProcess) -> AsyncIterator[events_pb2_grpc.EventServiceStub]:
    async with grpc.aio.insecure_channel(small.grpc_target) as channel:
        yield events_pb2_grpc.EventServiceStub(channel)


def grpc_event(event_type: str, i: int, blob: int) -> events_pb2.CloudEvent:
    event = events_pb2.CloudEvent(
        id=f"{event_type}-{i}", source="limits", type=event_type, subject="s", data_json=orjson.dumps({"b": "x" * blob})
    )
    event.time.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
    return event


async def listed(small: TallyProcess, event_type: str) -> int:
    async with httpx.AsyncClient(base_url=small.rest_url, timeout=30) as http:
        response = await http.get(
            "/api/v2/events", params={"filter": orjson.dumps({"type": {"$eq": event_type}}).decode()}
        )
        return len(response.json()["items"])


async def test_grpc_batch_over_max_batch_bytes_is_refused_naming_it(
    small: TallyProcess, stub: events_pb2_grpc.EventServiceStub
) -> None:
    event_type = unique("bytes")
    # 40 events of ~2 KiB: under the event-count limit, over 64 KiB in all.
    request = events_pb2.IngestEventsRequest(events=[grpc_event(event_type, i, 2000) for i in range(40)])
    assert request.ByteSize() > 64 * 1024
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.IngestEvents(request)
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ingest.max_batch_bytes" in (error.value.details() or "")

    async def batches() -> AsyncIterator[events_pb2.IngestEventsRequest]:
        yield request

    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in stub.IngestEventStream(batches()):
            pass
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ingest.max_batch_bytes" in (error.value.details() or "")

    # Just under the limit passes.
    small_enough = events_pb2.IngestEventsRequest(events=[grpc_event(event_type, i, 1000) for i in range(40)])
    assert small_enough.ByteSize() < 64 * 1024
    assert (await stub.IngestEvents(small_enough)).accepted == 40
    for _ in range(100):
        if await listed(small, event_type) == 40:
            break
        await asyncio.sleep(0.1)
    assert await listed(small, event_type) == 40, "only the accepted batch was stored"


async def test_grpc_batch_over_max_batch_events_is_refused_naming_it(stub: events_pb2_grpc.EventServiceStub) -> None:
    request = events_pb2.IngestEventsRequest(events=[grpc_event(unique("count"), i, 1) for i in range(51)])
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.IngestEvents(request)
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ingest.max_batch_events" in (error.value.details() or "")


async def test_a_message_far_over_the_limit_is_refused_by_the_receive_cap(
    stub: events_pb2_grpc.EventServiceStub,
) -> None:
    """The gRPC server's receive limit comes from the settings (32 MiB at least): a message past it
    never reaches Tally's code."""
    request = events_pb2.IngestEventsRequest(events=[grpc_event(unique("cap"), i, 700_000) for i in range(50)])
    assert request.ByteSize() > 32 * 1024 * 1024
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.IngestEvents(request, timeout=60)
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_rest_limits_name_the_settings(small: TallyProcess) -> None:
    async with httpx.AsyncClient(base_url=small.rest_url, timeout=30) as http:
        event_type = unique("rest")
        big = [cloudevent(event_type, "s", {"b": "x" * 2000}) for _ in range(40)]
        response = await http.post(
            "/api/v1/events", content=orjson.dumps(big), headers={"content-type": "application/cloudevents-batch+json"}
        )
        assert response.status_code == 413, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "ingest.max_batch_bytes" in response.json()["detail"]
        many = [cloudevent(event_type, "s") for _ in range(51)]
        response = await http.post(
            "/api/v1/events", content=orjson.dumps(many), headers={"content-type": "application/cloudevents-batch+json"}
        )
        assert response.status_code == 413, response.text
        assert "ingest.max_batch_events" in response.json()["detail"]
