"""Backfills meter values into the typed maps of events stored before the meter (or its paths) existed.

Queries are exact either way: until a meter is marked backfilled they fall back to parsing the raw
JSON of events that lack its paths. Marking it lets them skip the raw column (about twice as fast).
The worker waits `delay` after a meter changes, longer than any sink takes to refresh its meter
catalog, so events stored afterwards already carry the paths; it verifies before it marks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from domain.metering.models import Meter
from domain.metering.ports import MeterRepository

log = structlog.get_logger(__name__)


class ValueBackfiller(Protocol):
    async def backfill_values(self, meter: Meter) -> bool: ...


class BackfillWorker:
    def __init__(
        self, meters: MeterRepository, store: ValueBackfiller, delay: timedelta, interval_seconds: float
    ) -> None:
        self._meters = meters
        self._store = store
        self._delay = delay
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Backfills every due meter, the longest waiting first; returns how many it marked.

        A meter whose backfill fails is logged and retried on the next pass; it does not hold back
        the meters after it (each is its own statement, and each is verified before it is marked)."""
        marked = 0
        now = datetime.now(UTC)
        due = [
            m
            for m in await self._meters.list_all_live()
            if not m.values_backfilled and now - m.updated_at >= self._delay
        ]
        for meter in sorted(due, key=lambda m: m.updated_at):
            started = time.monotonic()
            try:
                if not await self._store.backfill_values(meter):
                    # Events without the paths were stored meanwhile (a sink with a stale catalog).
                    log.info("meter values backfill incomplete; retrying", namespace=meter.namespace, meter=meter.slug)
                elif not await self._meters.mark_backfilled(meter):
                    log.info(
                        "meter changed during its values backfill; retrying",
                        namespace=meter.namespace,
                        meter=meter.slug,
                    )
                else:
                    marked += 1
                    log.info(
                        "meter values backfilled",
                        namespace=meter.namespace,
                        meter=meter.slug,
                        seconds=round(time.monotonic() - started, 3),
                    )
            except Exception:
                log.exception(
                    "meter value backfill failed; retrying later", namespace=meter.namespace, meter=meter.slug
                )
        return marked

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("listing meters to backfill failed; retrying later")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="meter-backfill")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
