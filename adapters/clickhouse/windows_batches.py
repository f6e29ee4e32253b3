"""Entitlement windows queries that arrive together, answered by one statement (group commit).

A cold entitlement value runs one windows statement (adapters/clickhouse/usage_sql.py), and most of
its cost is the statement's fixed cost, not the rows it reads: chDB spends about 10 ms analysing a
filtered statement whatever it reads (docs/performance.md, "The floor of one chDB statement"), and
the embedded engine runs one statement at a time, so 16 concurrent cold values queued behind each
other's analysis. Here the first query of a meter (and filters) goes out at once, alone, as before;
queries of the same meter and filters that arrive while it runs wait and go out together as one
`render_windows_batch_query` statement when it ends, and so on. Nobody waits for a batch to fill:
a query waits at most for the statement ahead of it, which it would have waited for in the engine's
queue anyway.

Each caller gets exactly what its own statement would answer (the batch statement's proof is in
usage_sql; tests/integration/test_meter_rollup_lifecycle.py runs both). A batch statement that
fails is not every caller's failure: each of its queries then runs alone, so only a query that
fails alone fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.usage_sql import (
    WindowsRequest,
    batch_key,
    empty_windows_row,
    render_windows_batch_query,
    render_windows_query,
)
from domain.metering.models import Meter

# (each window's value, the tail's event count, the tail's earliest time in epoch ms)
WindowsRow = tuple[list[float | None], int, int]

# A batch's parameters grow with its queries (each one's windows and subjects); past this many, the
# rest wait for the next statement.
MAX_BATCH = 64


async def query_windows(ch: ClickHouse, meter: Meter, requests: Sequence[WindowsRequest]) -> list[WindowsRow]:
    """Each request's row, in order: its own statement for one, the batch statement for several."""
    maps_complete = meter.values_backfilled
    if len(requests) == 1:
        request = requests[0]
        row = (
            await ch.query(
                *render_windows_query(
                    meter, request.query, request.windows, request.tail_from, maps_complete=maps_complete
                )
            )
        )[0]
        values = _floats(row[0]) if request.windows else []
        tail = row[1:] if request.windows else row
        return [(values, int(tail[0]), int(tail[1])) if request.tail_from is not None else (values, 0, 0)]
    rows: list[WindowsRow | None] = [None] * len(requests)
    for index, values, count, first_ms in await ch.query(
        *render_windows_batch_query(meter, requests, maps_complete=maps_complete)
    ):
        rows[index - 1] = (_floats(values), int(count), int(first_ms))
    return [
        row if row is not None else empty_windows_row(meter, len(request.windows))
        for row, request in zip(rows, requests, strict=True)
    ]


def _floats(values: Sequence[Any]) -> list[float | None]:
    """A windows array as the caller's numbers (ClickHouse's Decimal, int or float; NULL stays None)."""
    return [None if v is None else float(v) for v in values]


@dataclass
class _Queue:
    meter: Meter
    waiting: list[tuple[WindowsRequest, asyncio.Future[WindowsRow]]] = field(default_factory=list)


class WindowsBatches:
    def __init__(self, ch: ClickHouse, max_batch: int = MAX_BATCH) -> None:
        self._ch = ch
        self._max_batch = max_batch
        self._queues: dict[Hashable, _Queue] = {}
        self._drains: set[asyncio.Task[None]] = set()

    async def query(self, meter: Meter, request: WindowsRequest) -> WindowsRow:
        shared = batch_key(request.query)
        if shared is None:  # not by customer: alone
            return (await query_windows(self._ch, meter, [request]))[0]
        loop = asyncio.get_running_loop()
        # What the statement is made of (the batch's SQL is rendered from its first query's meter).
        definition = (
            meter.namespace,
            meter.event_type,
            meter.aggregation,
            meter.value_property,
            tuple(sorted(meter.group_by.items())),
            meter.event_from,
            meter.values_backfilled,
        )
        key = (loop, definition, shared)
        answer: asyncio.Future[WindowsRow] = loop.create_future()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(meter)
            drain = loop.create_task(self._drain(key, queue))
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        queue.waiting.append((request, answer))
        return await answer

    async def _drain(self, key: Hashable, queue: _Queue) -> None:
        try:
            while queue.waiting:
                batch = [(r, a) for r, a in queue.waiting[: self._max_batch] if not a.done()]  # done: cancelled
                del queue.waiting[: self._max_batch]
                if batch:
                    await self._answer(queue.meter, batch)
        finally:
            del self._queues[key]
            for _, answer in queue.waiting:  # only when the drain itself is cancelled (shutdown)
                answer.cancel()

    async def _answer(self, meter: Meter, batch: list[tuple[WindowsRequest, asyncio.Future[WindowsRow]]]) -> None:
        try:
            rows = await query_windows(self._ch, meter, [request for request, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for one in batch:  # one query's failure is not the others'
                await self._answer(meter, [one])
            return
        for (_, answer), row in zip(batch, rows, strict=True):
            _settle(answer, row)


def _settle(answer: asyncio.Future[WindowsRow], outcome: WindowsRow | BaseException) -> None:
    if answer.done():  # its caller gave up meanwhile
        return
    if isinstance(outcome, BaseException):
        answer.set_exception(outcome)
    else:
        answer.set_result(outcome)
