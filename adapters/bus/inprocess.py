"""The in-process bus of the embedded default: ingest hands events straight to the sink.

Group commit: requests that arrive while a flush is running wait and go into the next flush
together, so load turns into large batches and an idle system stores an event at once. `publish`
returns once the events are stored and their keys claimed (or raises), so the REST 204 means durable
and counted once; it does not wait for the flush's last step, marking the batch stored
(workers/sink.py).

A request with an event in doubt (its key held by a flush still pending, whose event may never be
stored: workers/sink.py) fails with the retryable UnavailableError (gRPC UNAVAILABLE, REST 503);
the request's other events are stored by the flush as usual and are duplicates on the retry, and the
other requests of the flush are answered as if it were alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

import structlog

from domain.errors import UnavailableError
from domain.metering.events import Event, FlushResult, event_key
from domain.metering.ports import BatchConsumer

log = structlog.get_logger(__name__)


class InProcessBus:
    def __init__(self, sink: BatchConsumer, max_batch_events: int = 20_000) -> None:
        self._sink = sink
        self._max_batch_events = max_batch_events
        self._waiting: deque[tuple[Sequence[Event], asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        await self._sink.recover()
        self._task = asyncio.create_task(self._run(), name="inprocess-bus")

    async def publish(self, events: Sequence[Event]) -> None:
        if self._closing or self._task is None:
            raise UnavailableError("the event bus is shutting down; retry")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((events, future))
        self._wake.set()
        await future

    async def _run(self) -> None:
        while not (self._closing and not self._waiting):
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            taken: list[tuple[Sequence[Event], asyncio.Future[None]]] = []
            count = 0
            while self._waiting and (not taken or count + len(self._waiting[0][0]) <= self._max_batch_events):
                item = self._waiting.popleft()
                taken.append(item)
                count += len(item[0])
            batch = [event for events, _ in taken for event in events]

            def acknowledge(
                result: FlushResult, taken: list[tuple[Sequence[Event], asyncio.Future[None]]] = taken
            ) -> None:
                for events, future in taken:
                    if future.done():
                        continue
                    doubtful = sum(event_key(event) in result.in_doubt for event in events) if result.in_doubt else 0
                    if doubtful:
                        future.set_exception(
                            UnavailableError(
                                f"{doubtful} of the {len(events)} events are still being settled from an earlier "
                                "attempt to store them; retry (events already stored are not counted twice)"
                            )
                        )
                    else:
                        future.set_result(None)

            try:
                result = await self._sink.flush(batch, acknowledge=acknowledge)
            except Exception as error:
                if all(future.done() for _, future in taken):
                    # Answered: the events are stored, only marking the batch stored failed. The sink
                    # settles it in the background (or the next start's recovery does), keeping all its
                    # keys; until then a retry of its events is answered retryable.
                    log.exception("marking a stored flush failed; it is settled later", events=len(batch))
                    continue
                log.exception("flush failed; failing its requests", events=len(batch))
                failure = UnavailableError(f"the event store did not accept the batch: {error}; retry")
                for _, future in taken:
                    if not future.done():
                        future.set_exception(failure)
                continue
            if result.in_doubt:
                log.warning(
                    "events still being settled; their requests answered retryable", events=len(result.in_doubt)
                )
            acknowledge(result)

    async def stop(self) -> None:
        """Drains: everything published before stop is flushed (or failed) before this returns."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
