"""The billing worker: moves invoices on without anyone asking.

One pass (`run_once`, also `tally billing collect` / `tally billing advance`):
0. repair: subscriptions whose entitlements a write stored but did not finish reconciling (the
   process died in between) are reconciled (when the subscription service is wired; not in the CLI),
   and invoice notifications a write owes and nobody told (the process died before telling, or a
   listener failed) are told (when notifications are wired; not in the CLI);
1. sync: every live subscription's billable items onto its customer's gathering invoice (when a
   subscription sync is wired; subscription writes also sync at once, this pass repairs a missed one
   and adds the lines of billing periods that started since), then late usage: usage stored after
   its period's invoice was issued becomes a correction line (InvoiceService.bill_late_usage);
2. advance: standard invoices the table can move now (collection over, draft period ended, a step
   to redo after a failure) are advanced, and open payments past their due date marked overdue;
   before the collection, so an invoice-now part that waited while the worker was stopped is read
   before the later part of its period that the collection makes (each bills its own time);
3. collect: gathering invoices whose earliest line is due become standard invoices (the customer's
   lines due by now), made in the transaction of their first advance (never committed unrated; if
   it fails, the lines stay on the gathering invoice, which backs off), then advanced as far as
   their workflow allows.

Work is taken with leases in Postgres: a claim (FOR UPDATE SKIP LOCKED) moves the invoices'
`next_attempt_at` to the lease's end in the same transaction, so racing workers take different
invoices and each invoice is advanced by one worker. A claimed batch is collected in one
transaction and advanced in rounds, one transaction per round for the whole batch, each invoice
taking every row that stays inside Tally (domain/billing/invoice_batch.py): every state change
commits with its lines, a worker killed mid-advance leaves
each invoice in its last committed state, and the next worker resumes from there once the lease
has run out. An invoice a batch cannot move (its step failed) is moved on its own, and a step that
fails there (the store or an app did not answer) is retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from adapters import metrics
from domain.billing.invoice_service import InvoiceService, UsageSnapshot
from domain.billing.invoices import Invoice, by_namespace
from domain.records import evolve

log = structlog.get_logger(__name__)

# A batch is split into parts no smaller than this: a part's statements cost about the same for
# 50 invoices as for one, so smaller parts would only add statements.
_LEAST_PART = 50

# (done, failed) of one invoice's work.
Outcome = tuple[int, int]


def _now() -> datetime:
    return datetime.now(UTC)


class SubscriptionSync(Protocol):
    async def sync_all(self) -> int:
        """Syncs every live subscription; returns how many lines changed."""
        ...


class EntitlementRepair(Protocol):
    async def repair_entitlements(self) -> int:
        """Reconciles the subscriptions whose entitlements a write left unfinished; returns how many."""
        ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delays of a failed step: `initial`, doubling per failure, at most `maximum`."""

    initial: timedelta = timedelta(seconds=10)
    maximum: timedelta = timedelta(hours=1)

    def after(self, failures: int) -> timedelta:
        return min(self.maximum, self.initial * (1 << min(30, max(0, failures - 1))))


@dataclass(frozen=True, slots=True)
class PassResult:
    synced: int = 0
    corrections: int = 0
    repaired: int = 0
    notified: int = 0
    collected: int = 0
    advanced: int = 0
    failed: int = 0


async def _finish(step: Callable[[], Awaitable[int]], doing: str, unit: str) -> int:
    """A pass's step that finishes what a dead process left unfinished: how many it finished. Its
    failure is not held against the invoices: the next pass looks for them again."""
    try:
        finished = await step()
    except Exception:
        log.exception(f"{doing} failed")
        return 0
    if finished:
        log.info(f"{doing}: done", **{unit: finished})
    return finished


class BillingWorker:
    def __init__(
        self,
        invoices: InvoiceService,
        subscriptions: SubscriptionSync | None = None,
        *,
        batch_size: int = 100,
        concurrency: int = 8,
        lease: timedelta = timedelta(minutes=5),
        backoff: Backoff = Backoff(),
        poll_interval: timedelta = timedelta(seconds=10),
        sync_interval: timedelta = timedelta(minutes=5),
        # Usage periods that ended this recently are checked for usage stored after their invoice.
        late_usage_window: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] = _now,
        entitlements: EntitlementRepair | None = None,
    ) -> None:
        self._invoices = invoices
        self._subscriptions = subscriptions
        self._entitlements = entitlements
        self._batch = batch_size
        self._concurrency = concurrency
        self._lease = lease
        self._backoff = backoff
        self._poll = poll_interval
        self._sync_interval = sync_interval
        self._late_usage_window = late_usage_window
        self._clock = clock
        self._last_sync: datetime | None = None
        # Standard invoices made by the collection batch in progress, by gathering invoice.
        self._made: dict[str, list[str]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- one pass ------------------------------------------------------------------------------

    async def run_once(self) -> PassResult:
        failed_s = 0
        repaired = await self.repair()
        notified = await self.notify_owed()
        try:
            synced, corrections = await self.sync()
        except Exception:
            # The lines already gathered are still billed; the next pass syncs again.
            log.exception("syncing subscriptions or late usage failed")
            synced, corrections, failed_s = 0, 0, 1
        # What was due before this pass goes first (step 2 above): read second, an earlier part of
        # a period finds the period's usage billed by the part the collection made, and bills 0.
        advanced, failed_a = await self.advance()
        collected, failed_c = await self.collect()
        return PassResult(
            synced=synced,
            corrections=corrections,
            repaired=repaired,
            notified=notified,
            collected=collected,
            advanced=advanced,
            failed=failed_s + failed_c + failed_a,
        )

    async def repair(self) -> int:
        """Subscriptions' unfinished entitlement reconciliations: how many were finished."""
        if self._entitlements is None:
            return 0
        return await _finish(
            self._entitlements.repair_entitlements, "repairing subscriptions' entitlements", "subscriptions"
        )

    async def notify_owed(self) -> int:
        """Invoice notifications owed by writes whose call did not tell them: how many were told."""
        return await _finish(self._invoices.tell_owed_notifications, "telling owed invoice notifications", "invoices")

    async def sync(self) -> tuple[int, int]:
        """Subscription lines, then late-usage corrections: (lines changed, corrections made)."""
        synced = await self._subscriptions.sync_all() if self._subscriptions is not None else 0
        # Before the late-usage read and this pass's collection plan their reads on these lines.
        await self._invoices.refresh_statistics(synced)
        corrections = await self._invoices.bill_late_usage(self._late_usage_window)
        self._last_sync = self._clock()
        return synced, corrections

    async def collect(self) -> tuple[int, int]:
        """Collects every gathering invoice due now; returns (standard invoices made, failures)."""
        made = failed = 0
        seen: set[str] = set()
        while True:
            now = self._clock()
            claimed = await self._invoices.claim_gathering_due(now, self._batch, now + self._lease)
            claimed = [g for g in claimed if g.id not in seen]
            if not claimed:
                return made, failed
            seen.update(g.id for g in claimed)
            metrics.LIVENESS.beat("billing")  # a long pass is progress, not a stall
            parts = [(ns, part) for ns, batch in by_namespace(claimed).items() for part in self._parts(batch)]
            alone: list[Invoice] = []
            # The new invoices' usage in bulk, before their collection (one call to the usage store
            # per namespace for the whole claim); a failed read leaves each invoice to read its own.
            usage = await self._invoices.prefetch_collection_usage(claimed, now)
            collecting = (self._invoices.collect_batch(ns, p, now, usage) for ns, p in parts)
            for batch in await asyncio.gather(*collecting):
                # Made in their first advance's state: only those an app that calls out is next for
                # are advanced on.
                moving = set(batch.moving)
                self._made.update({g: [i for i in ids if i in moving] for g, ids in batch.made.items()})
                made += sum(len(ids) for ids in batch.made.values())
                alone.extend(batch.handed_over)
            results = await self._each(alone, functools.partial(self._collect_one, now=now))
            made += sum(done for done, _ in results)
            failed += sum(bad for _, bad in results)
            # Made and committed: advanced on at once, as one batch; a failure is the new invoice's.
            _, bad = await self._advance_batch(
                [evolve(g, id=i, attempts=0) for g in claimed for i in self._made.pop(g.id, ())]
            )
            failed += bad

    async def advance(self) -> tuple[int, int]:
        """Advances every standard invoice the worker can move now; returns (advanced, failures)."""
        advanced = failed = 0
        seen: set[str] = set()
        while True:
            now = self._clock()
            claimed = await self._invoices.claim_due(now, self._batch, now + self._lease)
            # Each invoice once per pass: one that is due again at once waits for the next pass.
            claimed = [i for i in claimed if i.id not in seen]
            if not claimed:
                return advanced, failed
            seen.update(i.id for i in claimed)
            metrics.LIVENESS.beat("billing")
            done, bad = await self._advance_batch(claimed)
            advanced += done
            failed += bad

    async def _advance_batch(self, invoices: Sequence[Invoice]) -> Outcome:
        """Advances these invoices, their usage read in bulk first (one call to the usage store per
        namespace for the whole batch, not one per invoice)."""
        if not invoices:
            return 0, 0
        try:
            usage = await self._invoices.prefetch_usage(invoices, self._clock())
        except Exception as exc:
            # Each invoice then reads its own usage, and fails (and backs off) on its own if it must.
            log.warning("reading a batch's usage failed", error=repr(exc))
            usage = None
        advanced = 0
        alone: list[Invoice] = []
        parts = [part for batch in by_namespace(invoices).values() for part in self._parts(batch)]
        outcomes = await asyncio.gather(
            *(self._invoices.advance_batch(part[0].namespace, [i.id for i in part], usage) for part in parts)
        )
        for part, outcome in zip(parts, outcomes, strict=True):
            advanced += len(set(outcome.moved) - set(outcome.handed_over))
            handed_over = set(outcome.handed_over)
            alone.extend(i for i in part if i.id in handed_over)
        results = await self._each(alone, functools.partial(self._advance_one, usage=usage))
        return advanced + sum(done for done, _ in results), sum(bad for _, bad in results)

    def _parts(self, batch: list[Invoice]) -> list[list[Invoice]]:
        """A batch in up to `concurrency` parts of at least `_LEAST_PART` invoices, each part in its
        own transactions at the same time: while one waits for Postgres, another runs here."""
        count = max(1, min(self._concurrency, len(batch) // _LEAST_PART))
        return [batch[i::count] for i in range(count)]

    async def _each(self, invoices: Sequence[Invoice], work: Callable[[Invoice], Awaitable[Outcome]]) -> list[Outcome]:
        limit = asyncio.Semaphore(self._concurrency)

        async def bounded(invoice: Invoice) -> Outcome:
            async with limit:
                return await work(invoice)

        return list(await asyncio.gather(*(bounded(i) for i in invoices)))

    async def _collect_one(self, gathering: Invoice, now: datetime) -> Outcome:
        """(standard invoices made, failures)"""
        try:
            made = await self._invoices.collect(gathering, now)
        except Exception as exc:
            await self._failed(gathering, "collecting a gathering invoice failed", exc)
            return 0, 1
        if made:
            log.info("collected", namespace=gathering.namespace, customer=gathering.customer.id, invoices=len(made))
            self._made[gathering.id] = made
        return len(made), 0

    async def _advance_one(self, invoice: Invoice, usage: UsageSnapshot | None = None) -> Outcome:
        """(1, 0) advanced, (0, 1) failed"""
        try:
            await self._invoices.advance_due(invoice.namespace, invoice.id, usage)
        except Exception as exc:
            await self._failed(invoice, "advancing an invoice failed", exc)
            return 0, 1
        return 1, 0

    async def _failed(self, invoice: Invoice, message: str, exc: Exception) -> None:
        retry_at = self._clock() + self._backoff.after(invoice.attempts + 1)
        log.warning(message, namespace=invoice.namespace, invoice=invoice.id, error=repr(exc), retry_at=retry_at)
        try:
            await self._invoices.record_failure(invoice.namespace, invoice.id, retry_at)
        except Exception as again:
            # The store itself is down: the lease runs out and the next pass takes the invoice again.
            log.warning("recording a failed billing step failed", invoice=invoice.id, error=repr(again))

    # --- the loop ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Work may be due now (a subscription changed, an invoice was created)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="billing-worker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        # A pass beats once per batch; a subscription sync of many subscriptions may take minutes.
        with metrics.LIVENESS.watching("billing", max(300.0, 3 * self._poll.total_seconds())):
            while not self._stopping:
                metrics.LIVENESS.beat("billing")
                # Cleared before the pass, never after it: a wake during the pass (new work, or
                # stop) then ends the wait below at once instead of being lost for a poll interval.
                self._wake.clear()
                try:
                    now = self._clock()
                    if self._last_sync is None or now - self._last_sync >= self._sync_interval:
                        await self.run_once()
                    else:
                        await self.collect()
                        await self.advance()
                except Exception:
                    log.exception("a billing pass failed; trying again at the next poll")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll.total_seconds())
