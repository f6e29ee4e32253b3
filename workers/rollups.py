"""Keeps every live meter's rollup made, filled and ready, and retires those no meter uses.

Each pass advances each rollup one state (adapters/clickhouse/rollups.py says which and why) under a
cluster-wide lock (a Postgres advisory lock): with several sink processes, one fills a rollup and
commits its watermark, never two (a second filler could delete the first's rows before its commit),
and no fill writes a partition between a compaction's copy of it and its swap (the fill's rows would go). A meter created or changed is picked up on the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import structlog

from domain.metering.models import Meter
from domain.metering.ports import MeterRepository

log = structlog.get_logger(__name__)


class RollupSteps(Protocol):
    async def step(self, meters: Sequence[Meter]) -> dict[str, str]: ...


class Lock(Protocol):
    def __call__(self) -> AbstractAsyncContextManager[bool]:
        """Holds the lock while the context is open; the value says whether it was got."""
        ...


class RollupWorker:
    def __init__(self, meters: MeterRepository, rollups: RollupSteps, lock: Lock, interval_seconds: float) -> None:
        self._meters = meters
        self._rollups = rollups
        self._lock = lock
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def run_once(self) -> dict[str, str] | None:
        """One pass; the states rollups moved to, or None when another process held the lock."""
        async with self._lock() as held:
            if not held:
                return None
            return await self._rollups.step(await self._meters.list_all_live())

    def wake(self) -> None:
        """A meter changed here: make a pass now rather than at the next interval."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("meter rollup pass failed; retrying later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="meter-rollups")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
