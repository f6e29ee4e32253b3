"""The balance worker: recomputes metered entitlements that are new or whose usage, grants or
resets changed.

The sink announces the (namespace, subject, event type) triples of every stored flush; creating a
metered entitlement, and grant, void and reset calls, announce the entitlement. The worker coalesces
announcements, finds the active metered entitlements they touch (the subject's customer, features on
meters of the event type), recomputes each balance (which stores a snapshot once an instant is older
than the grace period) and publishes a BalanceSnapshotEvent for notifications, several at once so
that computations of one meter share the event store's statement. Announcing never blocks the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable

import structlog

from adapters import metrics
from domain.entitlements.models import Entitlement
from domain.entitlements.service import EntitlementService
from domain.errors import NotFoundError

log = structlog.get_logger(__name__)

Touched = Iterable[tuple[str, str, str]]
# Entitlements recomputed at once by one drain.
CONCURRENT_RECOMPUTATIONS = 16
# How soon what a drain could not do (Postgres or the bus briefly away) is tried again.
RETRY_SECONDS = 1.0


class BalanceWorker:
    def __init__(self, service: EntitlementService) -> None:
        self._service = service
        self._touched: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
        self._entitlements: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.recomputed = 0

    async def on_flush(self, touched: Touched) -> None:
        """Sink listener: remember what changed and return at once."""
        for namespace, subject, event_type in touched:
            subjects, types = self._touched[namespace]
            subjects.add(subject)
            types.add(event_type)
        self._wake.set()

    async def on_change(self, namespace: str, entitlement_id: str) -> None:
        self._entitlements.add((namespace, entitlement_id))
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="balance-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        with metrics.LIVENESS.watching("balance", 60.0):
            while True:
                metrics.LIVENESS.beat("balance")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=5.0)
                if not self._wake.is_set():
                    continue
                self._wake.clear()
                try:
                    await self.drain()
                except Exception:
                    log.exception("balance recomputation failed")
                if (self._entitlements or self._touched) and not self._wake.is_set():
                    # What failed was kept (drain): try it again shortly, not at the next announcement.
                    await asyncio.sleep(RETRY_SECONDS)
                    self._wake.set()

    async def drain(self) -> int:
        """Recomputes everything announced so far; returns how many entitlements it recomputed."""
        touched, self._touched = self._touched, defaultdict(lambda: (set(), set()))
        announced, self._entitlements = self._entitlements, set()
        # Each target with the entitlement as the look-up read it (None: announced by id, read later).
        targets: dict[tuple[str, str], Entitlement | None] = dict.fromkeys(announced)
        try:
            for namespace, (subjects, types) in touched.items():
                for entitlement in await self._service.affected(namespace, sorted(subjects), sorted(types)):
                    targets[(namespace, entitlement.id)] = entitlement
        except Exception:
            # Kept for the next drain: a look-up that fails (Postgres briefly away) drops nothing.
            for namespace, (subjects, types) in touched.items():
                self._touched[namespace][0].update(subjects)
                self._touched[namespace][1].update(types)
            self._entitlements.update(announced)
            raise
        # Several at once: concurrent computations of one meter's usage share one event-store
        # statement (adapters/clickhouse/windows_batches.py), whose fixed cost dominates; one at a
        # time, a flush that touched a thousand customers took a statement each.
        running = asyncio.Semaphore(CONCURRENT_RECOMPUTATIONS)

        async def recompute(target: tuple[str, str]) -> bool:
            async with running:
                metrics.LIVENESS.beat("balance")
                return await self._recompute(*target, targets[target])

        done = sum(await asyncio.gather(*(recompute(target) for target in sorted(targets))))
        self.recomputed += done
        return done

    async def _recompute(self, namespace: str, entitlement_id: str, known: Entitlement | None) -> bool:
        """Recomputes one entitlement and publishes its balance; False if it has none (or failed)."""
        started = time.perf_counter()
        try:
            entitlement = known if known is not None else await self._service.get(namespace, entitlement_id)
            # Deleted, not yet started or already ended (scheduled entitlements): no balance.
            if not entitlement.metered or not entitlement.active_at(self._service.now()):
                return False
            event = await self._service.snapshot_event(namespace, entitlement)
            await self._service.publish(event)
        except NotFoundError:
            return False
        except Exception:
            # Recomputed again with the next drain (RETRY_SECONDS later at the latest).
            self._entitlements.add((namespace, entitlement_id))
            metrics.BALANCE_ERRORS.inc()
            log.exception("recomputing an entitlement failed", entitlement=entitlement_id)
            return False
        metrics.BALANCE_RECOMPUTED.inc()
        metrics.BALANCE_SECONDS.observe(time.perf_counter() - started)
        log.debug(
            "entitlement recomputed",
            entitlement=entitlement_id,
            balance=str(event.balance),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return True
