"""Delivery: buffered events -> Tally's ingest API, in batches, with backoff while Tally is away.

An event leaves the buffer only once Tally acknowledged its batch (gRPC IngestEvents, or REST
POST /api/v1/events answering 204: both mean durable in Tally). A batch whose answer is lost (a
timeout, a crash) is sent again with the same ids and Tally's deduplication keeps one copy. A batch
Tally refuses as invalid is split in halves until the refused events are alone; those go to the
buffer's dead letters (they can never succeed), the rest is delivered. Any other failure, Tally
down, overloaded or refusing the API key, is retried with capped exponential backoff and full
jitter, forever: dropping billing data is never the way out of an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from typing import Any, Protocol

import grpc
import httpx
import orjson
import structlog

import tally_sdk
from adapters.collectors import metrics
from workers.collector.buffer import Buffer, Buffered
from workers.collector.config import Batch, Sink

log = structlog.get_logger(__name__)


class RejectedError(Exception):
    """Tally refused the batch's content; sending it again cannot succeed."""


class DeliveryError(Exception):
    """Tally did not acknowledge the batch (unreachable, unavailable, timed out, ...): try again."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class Sender(Protocol):
    async def send(self, events: Sequence[dict[str, Any]]) -> None: ...

    async def close(self) -> None: ...


class GrpcSender:
    """Tally's gRPC port through the project's SDK (one attempt per call: retries happen here)."""

    def __init__(self, sink: Sink) -> None:
        scheme, target = sink.url.split("://", 1)
        credentials = grpc.ssl_channel_credentials() if scheme == "grpcs" else None
        self.client = tally_sdk.Client(
            target.rstrip("/"),
            api_key=sink.api_key,
            timeout=sink.timeout,
            retry=tally_sdk.RetryPolicy(max_attempts=1),
            credentials=credentials,
            source="tally-collector",
        )

    async def send(self, events: Sequence[dict[str, Any]]) -> None:
        try:
            request = self.client.build_batch(events)
        except ValueError as exc:  # an event the SDK cannot even encode (no subject, a bad time)
            raise RejectedError(str(exc)) from None
        try:
            await self.client.ingest(request)
        except (tally_sdk.InvalidArgumentError, tally_sdk.ResourceExhaustedError) as exc:
            raise RejectedError(str(exc)) from None
        except tally_sdk.TallyError as exc:
            raise DeliveryError(exc.code.name.lower(), str(exc)) from None

    async def close(self) -> None:
        await self.client.close()


class RestSender:
    """Tally's REST ingest (OpenMeter's POST /api/v1/events), for a collector that only reaches Envoy."""

    def __init__(self, sink: Sink) -> None:
        headers = {"content-type": "application/cloudevents-batch+json"}
        if sink.api_key:
            headers["authorization"] = f"Bearer {sink.api_key}"
        self.client = httpx.AsyncClient(base_url=sink.url.rstrip("/"), headers=headers, timeout=sink.timeout)

    async def send(self, events: Sequence[dict[str, Any]]) -> None:
        try:
            response = await self.client.post("/api/v1/events", content=orjson.dumps(list(events)))
        except httpx.HTTPError as exc:
            raise DeliveryError("connection", f"{type(exc).__name__}: {exc}") from None
        if response.status_code in (200, 202, 204):
            return
        if response.status_code in (400, 413, 422):
            raise RejectedError(f"{response.status_code}: {response.text[:500]}")
        raise DeliveryError(f"http_{response.status_code}", f"{response.status_code}: {response.text[:200]}")

    async def close(self) -> None:
        await self.client.aclose()


def sender_for(sink: Sink) -> Sender:
    if sink.url.startswith(("grpc://", "grpcs://")):
        return GrpcSender(sink)
    return RestSender(sink)


class Delivery:
    def __init__(self, buffer: Buffer, sender: Sender, batch: Batch) -> None:
        self.buffer = buffer
        self.sender = sender
        self.batch = batch
        self._wake = asyncio.Event()
        self._attempt = 0

    def notify(self) -> None:
        """A source buffered events: wake the loop early once a full batch waits."""
        if self.buffer.pending >= self.batch.size:
            self._wake.set()

    async def run(self) -> None:
        """Sends until cancelled: a full batch at once, a partial one once `batch.period` passed."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.batch.period)
            self._wake.clear()
            try:
                await self.drain()
            except Exception:
                # The buffer itself failed (disk full, I/O error): keep the loop alive and try again.
                log.exception("delivery loop failed; retrying")
                await asyncio.sleep(self.batch.max_backoff)

    async def drain(self) -> None:
        """Sends everything buffered, retrying failures with backoff until it is all acknowledged."""
        while self.buffer.pending:
            batch = await self.buffer.take(self.batch.size)
            if not batch:
                break
            try:
                await self._deliver(batch)
                self._attempt = 0
            except Exception as exc:
                # Anything but an acknowledgement or a refusal: the batch stays and is sent again.
                kind = exc.kind if isinstance(exc, DeliveryError) else type(exc).__name__
                metrics.DELIVERY_ERRORS.labels(kind).inc()
                await self.buffer.attempted([item.seq for item in batch])
                delay = random.uniform(0, min(self.batch.max_backoff, 0.2 * 2**self._attempt))
                self._attempt += 1
                log.warning("delivery failed; retrying", error=str(exc), retry_in=round(delay, 2), events=len(batch))
                await asyncio.sleep(delay)
            finally:
                await self._gauges()

    async def _deliver(self, batch: list[Buffered]) -> None:
        try:
            await self.sender.send([item.event for item in batch])
        except RejectedError as exc:
            if len(batch) == 1:
                item = batch[0]
                log.error("Tally refused an event; moved to dead letters", id=item.event.get("id"), error=str(exc))
                await self.buffer.dead_letter(item.seq, str(exc))
                metrics.FAILED.labels(_source_name(item.event), "rejected").inc()
                return
            middle = len(batch) // 2
            await self._deliver(batch[:middle])
            await self._deliver(batch[middle:])
            return
        await self.buffer.ack([item.seq for item in batch])
        metrics.SENT.inc(len(batch))

    async def _gauges(self) -> None:
        metrics.PENDING.set(self.buffer.pending)
        metrics.LAG.set(await self.buffer.oldest_age() if self.buffer.pending else 0.0)

    async def flush(self, within: float) -> bool:
        """SIGTERM: delivers what it can within `within` seconds; the rest stays on disk. True if all went."""
        try:
            async with asyncio.timeout(within):
                await self.drain()
        except TimeoutError:
            log.warning("shutdown: events left in the buffer for the next start", events=self.buffer.pending)
            return False
        return self.buffer.pending == 0


def _source_name(event: dict[str, Any]) -> str:
    source = str(event.get("source", ""))
    return source.removeprefix("collector/")
