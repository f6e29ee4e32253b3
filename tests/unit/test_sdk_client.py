"""The Python SDK's own behaviour against a scripted in-process gRPC server: retries and backoff on
UNAVAILABLE / DEADLINE_EXCEEDED for idempotent calls only, deadlines, the API-key header, and typed
errors decoded from google.rpc details."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import tally_sdk
from tally.v1 import events_pb2, events_pb2_grpc, meters_pb2, meters_pb2_grpc
from tests.support.services import free_port

FAST = tally_sdk.RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.002)


class Script:
    """Per-test behaviour: the statuses to fail with before succeeding, and what was received."""

    def __init__(self) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.delay = 0.0
        self.calls = 0
        self.metadata: list[dict[str, str]] = []
        self.batches: list[list[str]] = []

    async def enter(self, context: grpc.aio.ServicerContext) -> None:
        self.calls += 1
        self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            await context.abort(self.failures.pop(0), "scripted failure")


class Events(events_pb2_grpc.EventServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    async def IngestEvents(self, request: Any, context: Any) -> Any:
        await self.script.enter(context)
        self.script.batches.append([event.id for event in request.events])
        return events_pb2.IngestEventsResponse(accepted=len(request.events))


class Meters(meters_pb2_grpc.MeterServiceServicer):
    def __init__(self, script: Script) -> None:
        self.script = script

    async def CreateMeter(self, request: Any, context: Any) -> Any:
        await self.script.enter(context)
        if request.slug == "bad slug":
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field="slug", description="must match ^[a-z0-9]+$", reason="invalid_slug"
                        )
                    ]
                )
            )
            status = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="invalid meter")
            status.details.append(detail)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid meter",
                (("grpc-status-details-bin", status.SerializeToString()),),
            )
        return meters_pb2.Meter(slug=request.slug)

    async def ListMeters(self, request: Any, context: Any) -> Any:
        await self.script.enter(context)
        return meters_pb2.ListMetersResponse(items=[meters_pb2.Meter(slug="m")])


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    srv = grpc.aio.server()
    events_pb2_grpc.add_EventServiceServicer_to_server(Events(script), srv)
    meters_pb2_grpc.add_MeterServiceServicer_to_server(Meters(script), srv)
    port = free_port()
    srv.add_insecure_port(f"127.0.0.1:{port}")
    await srv.start()
    yield f"127.0.0.1:{port}", script
    await srv.stop(None)


async def test_reads_retry_unavailable_then_succeed(server: tuple[str, Script]) -> None:
    target, script = server
    script.failures = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED]
    async with tally_sdk.Client(target, retry=FAST) as client:
        meters = await client.list_meters()
    assert [m.slug for m in meters] == ["m"]
    assert script.calls == 3


async def test_retries_give_up_after_max_attempts(server: tuple[str, Script]) -> None:
    target, script = server
    script.failures = [grpc.StatusCode.UNAVAILABLE] * 10
    async with tally_sdk.Client(target, retry=FAST) as client:
        with pytest.raises(tally_sdk.UnavailableError):
            await client.list_meters()
    assert script.calls == 4


async def test_ingest_retries_the_same_batch(server: tuple[str, Script]) -> None:
    target, script = server
    script.failures = [grpc.StatusCode.UNAVAILABLE]
    async with tally_sdk.Client(target, retry=FAST) as client:
        accepted = await client.ingest([{"type": "t", "subject": "s"}, tally_sdk.Event(type="t", subject="s")])
    assert accepted == 2
    # The failed attempt's batch never reached the servicer body; the retry carried generated ids.
    assert len(script.batches) == 1 and all(script.batches[0])


async def test_mutations_are_not_retried(server: tuple[str, Script]) -> None:
    target, script = server
    script.failures = [grpc.StatusCode.UNAVAILABLE]
    async with tally_sdk.Client(target, retry=FAST) as client:
        with pytest.raises(tally_sdk.UnavailableError):
            await client.create_meter("m", aggregation="COUNT", event_type="e")
    assert script.calls == 1


async def test_other_errors_are_not_retried_and_carry_violations(server: tuple[str, Script]) -> None:
    target, script = server
    async with tally_sdk.Client(target, retry=FAST) as client:
        with pytest.raises(tally_sdk.InvalidArgumentError) as caught:
            await client.create_meter("bad slug", aggregation="COUNT", event_type="e")
    assert script.calls == 1
    assert caught.value.violations == (tally_sdk.FieldViolation("slug", "must match ^[a-z0-9]+$", "invalid_slug"),)
    assert "slug: must match" in str(caught.value)


async def test_deadline_applies_per_attempt(server: tuple[str, Script]) -> None:
    target, script = server
    script.delay = 0.5
    async with tally_sdk.Client(target, retry=tally_sdk.NO_RETRY, timeout=0.05) as client:
        with pytest.raises(tally_sdk.DeadlineExceededError):
            await client.list_meters()
        script.delay = 0
        assert await client.list_meters(timeout=5)


async def test_api_key_is_sent_as_bearer_metadata(server: tuple[str, Script]) -> None:
    target, script = server
    async with tally_sdk.Client(target, api_key="tk_secret") as client:
        await client.list_meters()
    async with tally_sdk.Client(target) as client:
        await client.list_meters()
    assert script.metadata[0]["authorization"] == "Bearer tk_secret"
    assert "authorization" not in script.metadata[1]


def test_backoff_is_capped_and_jittered() -> None:
    policy = tally_sdk.RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2)
    assert all(0 <= policy.backoff(n) <= min(1.0, 0.1 * 2**n) for n in range(10) for _ in range(20))
    with pytest.raises(ValueError):
        tally_sdk.RetryPolicy(max_attempts=0)


def test_event_validation() -> None:
    with pytest.raises(ValueError, match="subject"):
        tally_sdk.Event.from_dict({"type": "t"})
    with pytest.raises(ValueError, match="time zone"):
        from tally_sdk.client import to_cloudevent

        to_cloudevent({"type": "t", "subject": "s", "time": "2025-01-01T00:00:00"}, "src")
