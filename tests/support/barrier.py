"""A barrier instead of time, for every check that something did NOT arrive.

"Nothing extra was stored" can only be asserted once everything sent before the check has been
through the sink: a test that sleeps a little, or stops polling as soon as a total reaches the
expected value, passes before the duplicates (or the wrongly accepted input) it is about have even
been consumed. The barrier: after the input under test, send marker events on the same path, one on
each bus partition (an event's partition is a hash of (namespace, source, id), so each marker's id
is chosen to land on one partition), and wait until every marker is listed by the event store. The
sink handles each partition in order, so by then everything acknowledged before the markers has been
stored or dropped, and totals read afterwards are final.

Markers have their own event type and subject: no meter counts them and no customer owns them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx

from adapters.bus.kafka import partition_for
from domain.metering.events import Event, epoch_ms
from tally.v1 import events_pb2, events_pb2_grpc
from tests.support.metering import rfc3339

MARKER_TYPE = "tally_test_barrier"
MARKER_SOURCE = "tests-barrier"
DEFAULT_TIMEOUT = 90.0


@dataclass(frozen=True)
class Markers:
    subject: str
    ids: list[str]
    time: datetime

    def cloudevents(self) -> list[dict[str, Any]]:
        return [
            {
                "specversion": "1.0",
                "id": marker_id,
                "source": MARKER_SOURCE,
                "type": MARKER_TYPE,
                "subject": self.subject,
                "time": rfc3339(self.time),
            }
            for marker_id in self.ids
        ]


def markers(partitions: int = 1, namespace: str = "default") -> Markers:
    """One marker per partition of the events topic (one in all for the in-process bus)."""
    subject = f"barrier_{uuid.uuid4().hex[:12]}"
    now = datetime.now(UTC)
    ids: dict[int, str] = {}
    while len(ids) < partitions:
        candidate = f"{subject}-{uuid.uuid4().hex[:8]}"
        event = Event(namespace, candidate, MARKER_TYPE, MARKER_SOURCE, subject, epoch_ms(now), "", epoch_ms(now))
        ids.setdefault(partition_for(event, partitions), candidate)
    return Markers(subject, [ids[p] for p in sorted(ids)], now)


async def wait_listed(
    count_listed: Callable[[str], Awaitable[int]], sent: Markers, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Waits until the event store lists every marker (a wait for state, bounded only to fail)."""
    deadline = time.monotonic() + timeout
    listed = 0
    while time.monotonic() < deadline:
        listed = await count_listed(sent.subject)
        if listed >= len(sent.ids):
            assert listed == len(sent.ids), f"markers stored more than once: {listed} of {len(sent.ids)}"
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"barrier markers never became visible ({listed} of {len(sent.ids)} listed)")


async def settle(
    http: httpx.AsyncClient, *, partitions: int = 1, namespace: str = "default", timeout: float = DEFAULT_TIMEOUT
) -> None:
    """The barrier over REST (through Envoy): markers ingested and listed with the caller's client
    (and so its API key and namespace)."""
    sent = markers(partitions, namespace)
    response = await http.post(
        "/api/v1/events", json=sent.cloudevents(), headers={"content-type": "application/cloudevents-batch+json"}
    )
    assert response.status_code == 204, response.text

    async def count(subject: str) -> int:
        listed = await http.get("/api/v1/events", params={"subject": subject})
        assert listed.status_code == 200, listed.text
        return len(listed.json())

    await wait_listed(count, sent, timeout)


async def settle_grpc(
    channel: grpc.aio.Channel,
    *,
    partitions: int = 1,
    namespace: str = "default",
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """The barrier over native gRPC: markers sent with IngestEvents and listed with ListEvents."""
    sent = markers(partitions, namespace)
    stub = events_pb2_grpc.EventServiceStub(channel)
    request = events_pb2.IngestEventsRequest()
    for marker_id in sent.ids:
        event = request.events.add(id=marker_id, source=MARKER_SOURCE, type=MARKER_TYPE, subject=sent.subject)
        event.time.FromDatetime(sent.time)
    assert (await stub.IngestEvents(request, metadata=tuple(metadata))).accepted == len(sent.ids)

    async def count(subject: str) -> int:
        response = await stub.ListEvents(events_pb2.ListEventsRequest(subject=subject), metadata=tuple(metadata))
        return len(response.items)

    await wait_listed(count, sent, timeout)
