"""A worker stopped while its pass runs stops when the pass ends, not a poll interval later: the
stop's wake must not be cleared by the loop after the pass (the billing worker's stop once waited
out its poll interval, an hour in the tests, right after a start)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

from workers.billing import BillingWorker
from workers.notify import NotifyWorker


async def stops_when_its_pass_ends(worker: Any, start: Callable[[], Awaitable[None]], result: object) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def long_pass() -> object:
        entered.set()
        await release.wait()
        return result

    worker.run_once = long_pass
    await start()
    await entered.wait()
    stopping = asyncio.ensure_future(worker.stop())
    await asyncio.sleep(0.05)  # the stop has asked; the pass is still running
    release.set()
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done, "the stop waited for the poll interval"
    stopping.result()


async def test_the_billing_worker_stops_when_its_pass_ends() -> None:
    worker = BillingWorker(cast(Any, None), poll_interval=timedelta(hours=1))
    await stops_when_its_pass_ends(worker, worker.start, None)


async def test_the_notify_worker_stops_when_its_pass_ends() -> None:
    worker = NotifyWorker(cast(Any, None), cast(Any, None), None, cast(Any, None), poll_interval=timedelta(hours=1))
    await stops_when_its_pass_ends(worker, worker.start, 0)
