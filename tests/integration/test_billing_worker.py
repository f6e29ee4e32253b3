"""The billing worker on real Postgres: collection of due gathering invoices, drafts advanced when
their draft period ends, overdue payments, two workers racing, a worker killed with SIGKILL
mid-advance, and the usage store failing during collection.

Time is the services' clock (a `Clock` the test moves); usage comes from the stand-in of
test_invoices (`EventUsage`), wrapped where a test needs the store to fail or to hold a worker
mid-step. Each test has a database of its own: the worker's passes cover every namespace."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import pytest_asyncio

from adapters.postgres.billing import PostgresInvoiceNumbers, TransactionInvoiceNumbers, billing_unit_of_work
from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import create_engine, migrate, session_factory
from domain.billing.apps.models import InstallAppInput
from domain.billing.apps.registry import Marketplace
from domain.billing.invoice_service import UNSCHEDULED, InvoiceService
from domain.billing.invoice_states import Action, InvoiceStatus, State
from domain.billing.invoices import (
    InvoiceListQuery,
    InvoiceNowInput,
    InvoiceWithLines,
    PendingLineInput,
    PendingLinesInput,
    UsageRequest,
)
from domain.billing.models import OverrideUpsertInput, ProfileApps, ProfileCreateInput, WorkflowPatch
from domain.billing.ports import UsageSource
from domain.billing.service import AppService, BillingProfileService, Provisioner
from domain.catalog.prices import PriceTier, TieredMode, TieredPrice, UnitPrice
from domain.customers.models import CustomerInput
from domain.customers.service import CustomerService
from tests.support.services import require
from tests.support.stack import create_database, postgres_available
from tests.support.usage import EventUsage
from workers.billing import Backoff, BillingWorker

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
D = Decimal
HOUR = timedelta(hours=1)
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Env:
    url: str
    uow: object
    profiles: BillingProfileService
    customers: CustomerService
    apps: AppService
    marketplace: Marketplace
    usage: EventUsage
    clock: Clock

    def invoices(self, usage: UsageSource | None = None) -> InvoiceService:
        return InvoiceService(
            self.uow,  # type: ignore[arg-type]
            self.profiles,
            self.customers,
            self.marketplace,
            usage or self.usage,
            clock=self.clock,
        )

    def worker(self, usage: UsageSource | None = None, **options: object) -> BillingWorker:
        return BillingWorker(self.invoices(usage), clock=self.clock, **options)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=10)
    sessions = session_factory(engine)
    customers = CustomerService(PostgresCustomerRepository(sessions))
    uow = billing_unit_of_work(sessions)
    marketplace = Marketplace(PostgresInvoiceNumbers(sessions))
    provisioner = Provisioner(uow)
    profiles = BillingProfileService(uow, provisioner, customers, marketplace)
    apps = AppService(uow, marketplace, provisioner)
    yield Env(url, uow, profiles, customers, apps, marketplace, EventUsage(), Clock(NOV))
    await engine.dispose()


async def customer(env: Env, namespace: str, key: str) -> str:
    return (await env.customers.create(namespace, CustomerInput(name=f"Customer {key}", key=key))).id


def month_lines() -> PendingLinesInput:
    """November's platform fee (in arrears) and API usage at 0.01 per call."""
    return PendingLinesInput(
        "USD",
        [
            PendingLineInput("Platform", NOV, DEC, DEC, per_unit_amount=D("20"), quantity=D(1)),
            PendingLineInput("API", NOV, DEC, DEC, price=UnitPrice(D("0.01")), feature_key="api"),
        ],
    )


async def invoices_of(env: Env, namespace: str) -> list[InvoiceWithLines]:
    found, _ = await env.invoices().list_invoices(namespace, InvoiceListQuery(limit=1000), with_lines=True)
    return found


def standard(found: Sequence[InvoiceWithLines]) -> list[InvoiceWithLines]:
    return [f for f in found if f.invoice.status is not InvoiceStatus.GATHERING]


def top(invoice: InvoiceWithLines) -> dict[str, Decimal | None]:
    return {x.name: x.quantity for x in invoice.lines if x.parent_line_id is None}


async def test_worker_collects_when_due_and_waits_out_the_collection_interval(env: Env) -> None:
    ns = "bw_collect"
    cid = await customer(env, ns, "c1")
    env.usage.add("api", cid, NOV + timedelta(days=3), "1000")
    # Stored after the period ended, within the collection interval: still on this invoice.
    env.usage.add("api", cid, DEC - timedelta(minutes=1), "500", stored_at=DEC + timedelta(minutes=30))
    await env.invoices().create_pending_lines(ns, cid, month_lines())
    worker = env.worker()

    env.clock.at = DEC - HOUR
    assert (await worker.run_once()).collected == 0
    env.clock.at = DEC + timedelta(minutes=5)
    first = await worker.run_once()
    assert first.collected == 1
    (draft,) = standard(await invoices_of(env, ns))
    # Waiting for late events until the collection interval (PT1H) after the usage ended.
    assert draft.invoice.state is State.DRAFT_WAITING_FOR_COLLECTION
    assert draft.invoice.next_attempt_at == DEC + HOUR
    assert (await worker.run_once()).advanced == 0

    env.clock.at = DEC + HOUR
    assert (await worker.run_once()).advanced == 1
    (paid,) = standard(await invoices_of(env, ns))
    assert paid.invoice.state is State.PAID and paid.invoice.id == draft.invoice.id
    assert top(paid) == {"Platform": D(1), "API": D(1500)}
    assert paid.invoice.totals.total == D("35.00")
    assert paid.invoice.next_attempt_at == UNSCHEDULED
    # Nothing left: the emptied gathering invoice is gone, a further pass does nothing.
    assert [f.invoice.status for f in await invoices_of(env, ns)] == [InvoiceStatus.PAID]
    again = await worker.run_once()
    assert (again.collected, again.advanced, again.failed) == (0, 0, 0)


async def test_drafts_advance_when_their_draft_period_ends(env: Env) -> None:
    ns = "bw_draft_period"
    cid = await customer(env, ns, "c1")
    patch = WorkflowPatch(draft_period="P2D", collection_interval="PT0S")
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=patch))
    await env.invoices().create_pending_lines(ns, cid, month_lines())
    worker = env.worker()
    env.clock.at = DEC
    assert (await worker.run_once()).collected == 1
    (draft,) = standard(await invoices_of(env, ns))
    assert draft.invoice.state is State.DRAFT_WAITING_AUTO_APPROVAL
    assert draft.invoice.draft_until == DEC + timedelta(days=2)
    env.clock.at = DEC + timedelta(days=2) - timedelta(seconds=1)
    assert (await worker.run_once()).advanced == 0
    env.clock.at = DEC + timedelta(days=2)
    assert (await worker.run_once()).advanced == 1
    (paid,) = standard(await invoices_of(env, ns))
    assert paid.invoice.state is State.PAID


async def test_a_drafts_due_date_runs_from_its_draft_period_and_shows_from_the_start(env: Env) -> None:
    # OpenMeter's CalculateDraftUntil and CalculateDueAt: with automatic approval a draft shows its
    # draftUntil (the draft period from its collection) and its dueAt (dueAfter past draftUntil) from
    # the start, and approving it early does not make it due earlier. Tally set draftUntil only once
    # the draft waited for approval, and dueAt only at the issue: an early approval made it due early.
    ns = "bw_due_dates"
    cid = await customer(env, ns, "c1")
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(draft_period="P2D")))
    await env.invoices().create_pending_lines(ns, cid, month_lines())
    worker = env.worker()
    env.clock.at = DEC
    assert (await worker.run_once()).collected == 1
    (draft,) = standard(await invoices_of(env, ns))
    # Usage ended at DEC: collected an hour later (PT1H), approved two days after that, due in 30.
    assert draft.invoice.state is State.DRAFT_WAITING_FOR_COLLECTION
    until = DEC + HOUR + timedelta(days=2)
    assert (draft.invoice.draft_until, draft.invoice.due_at) == (until, until + timedelta(days=30))
    env.clock.at = DEC + HOUR
    assert (await worker.run_once()).advanced == 1
    (waiting,) = standard(await invoices_of(env, ns))
    assert waiting.invoice.state is State.DRAFT_WAITING_AUTO_APPROVAL
    assert (waiting.invoice.draft_until, waiting.invoice.due_at) == (until, until + timedelta(days=30))
    env.clock.at = DEC + 2 * HOUR
    paid = (await env.invoices().act(ns, draft.invoice.id, Action.APPROVE)).invoice
    assert paid.state is State.PAID and paid.issued_at == DEC + 2 * HOUR
    assert paid.due_at == until + timedelta(days=30)


async def test_a_manually_approved_invoice_is_due_from_its_issue(env: Env) -> None:
    ns = "bw_due_manual"
    cid = await customer(env, ns, "c1")
    patch = WorkflowPatch(auto_advance=False, collection_interval="PT0S")
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=patch))
    await env.invoices().create_pending_lines(ns, cid, month_lines())
    env.clock.at = DEC
    await env.worker().run_once()
    (draft,) = standard(await invoices_of(env, ns))
    assert draft.invoice.state is State.DRAFT_MANUAL_APPROVAL_NEEDED
    assert (draft.invoice.draft_until, draft.invoice.due_at) == (None, None)
    env.clock.at = DEC + timedelta(days=3, microseconds=250)
    paid = (await env.invoices().act(ns, draft.invoice.id, Action.APPROVE)).invoice
    # Due dueAfter past the issue, in whole seconds (OpenMeter's, Stripe's precision).
    assert paid.issued_at == DEC + timedelta(days=3, microseconds=250)
    assert paid.due_at == DEC + timedelta(days=33)


async def test_open_payments_past_due_are_marked_overdue(env: Env) -> None:
    ns = "bw_overdue"
    cid = await customer(env, ns, "c1")
    # Custom invoicing without hooks issues at once and waits for the integrator's payment status.
    app, _ = await env.apps.install(ns, InstallAppInput(type="custom_invoicing", create_billing_profile=False))
    default = await env.profiles.get_default(ns)
    profile = await env.profiles.create(
        ns,
        ProfileCreateInput(
            "Custom",
            default.supplier,
            ProfileApps(app.id, app.id, app.id),
            workflow=WorkflowPatch(due_after="P7D"),
        ),
    )
    # A profile's collection interval must be positive (OpenMeter's rule); an override's may be zero.
    await env.profiles.upsert_override(
        ns,
        cid,
        OverrideUpsertInput(profile_id=profile.profile.id, workflow=WorkflowPatch(collection_interval="PT0S")),
    )
    await env.invoices().create_pending_lines(ns, cid, month_lines())
    worker = env.worker()
    env.clock.at = DEC
    await worker.run_once()
    (pending,) = standard(await invoices_of(env, ns))
    assert pending.invoice.state is State.PAYMENT_PENDING
    assert pending.invoice.due_at == DEC + timedelta(days=7) == pending.invoice.next_attempt_at
    env.clock.at = DEC + timedelta(days=7)
    assert (await worker.run_once()).advanced == 1
    (overdue,) = standard(await invoices_of(env, ns))
    assert overdue.invoice.state is State.OVERDUE and overdue.invoice.next_attempt_at == UNSCHEDULED


@dataclass
class UsageWrapper:
    """The usage store, passed through: subclasses change what `quantities` does around it."""

    inner: EventUsage

    async def growing_features(self, namespace: str, feature_keys: Collection[str]) -> set[str]:
        return await self.inner.growing_features(namespace, feature_keys)


@dataclass
class Rendezvous(UsageWrapper):
    """A usage store whose first `parties` reads wait for each other: every worker is reading the
    usage of the invoice it claimed (and holds the lease on), before any of them goes on."""

    barrier: asyncio.Barrier
    reads: int = 0

    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]:
        self.reads += 1
        if self.reads <= self.barrier.parties:
            await self.barrier.wait()
        return await self.inner.quantities(namespace, requests, cutoff)


async def test_two_workers_racing_advance_each_invoice_once(env: Env) -> None:
    ns = "bw_race"
    ids = [await customer(env, ns, f"c{i}") for i in range(6)]
    for i, cid in enumerate(ids):
        env.usage.add("api", cid, NOV + timedelta(days=1), str(100 * (i + 1)))
        await env.invoices().create_pending_lines(ns, cid, month_lines())
    env.clock.at = DEC + 2 * HOUR
    # Collection: both workers at once, one gathering invoice per claim.
    a, b = env.worker(batch_size=1), env.worker(batch_size=1)
    collected = await asyncio.gather(a.collect(), b.collect())
    # (The drafts wait for nothing: collection was due, so invoice-now took each one to paid,
    # snapshots included; the rendezvous below is for the advance pass.)
    assert sum(made for made, _ in collected) == 6 and all(failed == 0 for _, failed in collected)
    found = standard(await invoices_of(env, ns))
    assert len(found) == 6 and {f.invoice.customer.id for f in found} == set(ids)

    # Advance: drafts held in collection by a longer interval, then released together.
    ns2 = "bw_race_advance"
    ids2 = [await customer(env, ns2, f"c{i}") for i in range(6)]
    for i, cid in enumerate(ids2):
        await env.profiles.upsert_override(
            ns2, cid, OverrideUpsertInput(workflow=WorkflowPatch(collection_interval="P1D"))
        )
        env.usage.add("api", cid, NOV + timedelta(days=1), str(100 * (i + 1)))
        await env.invoices().create_pending_lines(ns2, cid, month_lines())
    await env.worker().collect()
    drafts = standard(await invoices_of(env, ns2))
    assert {d.invoice.state for d in drafts} == {State.DRAFT_WAITING_FOR_COLLECTION}
    env.clock.at = DEC + timedelta(days=1)
    rendezvous = Rendezvous(env.usage, asyncio.Barrier(2))
    a, b = env.worker(rendezvous, batch_size=1), env.worker(rendezvous, batch_size=1)
    results = await asyncio.gather(a.advance(), b.advance())
    # Both were reading usage at once (the barrier let them through), for different invoices;
    # together they advanced each invoice exactly once.
    assert rendezvous.reads == 6 and all(advanced >= 1 for advanced, _ in results)
    assert sum(advanced for advanced, _ in results) == 6 and all(failed == 0 for _, failed in results)
    paid = standard(await invoices_of(env, ns2))
    assert len(paid) == 6 and {p.invoice.state for p in paid} == {State.PAID}
    quantities = sorted(top(p)["API"] or D(0) for p in paid)
    assert quantities == [D(100 * (i + 1)) for i in range(6)]
    assert all(len([x for x in p.lines if x.parent_line_id is None]) == 2 for p in paid)
    numbers = [p.invoice.number for p in paid]
    assert len(set(numbers)) == 6


async def november_calls(env: Env, ns: str, cid: str, *calls: tuple[int, str]) -> None:
    """api calls of the customer's (days after Nov 1, how many) and its November line for them at
    1.00 each."""
    for day, count in calls:
        env.usage.add("api", cid, NOV + timedelta(days=day), count)
    line = PendingLineInput("API", NOV, DEC, DEC, price=UnitPrice(D(1)), feature_key="api")
    await env.invoices().create_pending_lines(ns, cid, PendingLinesInput("USD", [line]))


async def november_invoiced_now_at_mid(
    env: Env, ns: str, collection_interval: str | None = None
) -> tuple[str, InvoiceWithLines]:
    """A customer's November api calls at 1.00 each, 100 on Nov 4 and 50 on Nov 21, invoiced now
    (progressively) on Nov 15: the customer's ID and that invoice, waiting for its collection."""
    cid = await customer(env, ns, "c1")
    if collection_interval is not None:
        workflow = WorkflowPatch(collection_interval=collection_interval)
        await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=workflow))
    await november_calls(env, ns, cid, (3, "100"), (20, "50"))
    mid = NOV + timedelta(days=15)
    env.clock.at = mid
    (made,) = await env.invoices().invoice_now(ns, InvoiceNowInput(cid, as_of=mid, progressive_billing_override=True))
    return cid, made


async def test_two_parts_of_one_period_snapshotted_at_once_bill_its_usage_once(env: Env) -> None:
    # Progressive billing splits November at the 15th: part A (to the 15th) and part B (the rest)
    # on two drafts, each waiting a day for late events. Each part bills the period's usage up to
    # its end less what the *other* invoices of the period billed; when both snapshots run at once
    # (the worker on one, snapshot-quantities by a user on the other, or two workers), neither
    # may read the other's quantity before it is decided, or the first half's usage is billed twice.
    ns = "bw_period_race"
    cid, a = await november_invoiced_now_at_mid(env, ns, collection_interval="P1D")
    env.clock.at = DEC + HOUR
    (b,) = await env.invoices().invoice_now(ns, InvoiceNowInput(cid))
    assert {a.invoice.state, b.invoice.state} == {State.DRAFT_WAITING_FOR_COLLECTION}
    env.clock.at = DEC + timedelta(days=2)
    rendezvous = Rendezvous(env.usage, asyncio.Barrier(2))
    invoices = env.invoices(rendezvous)
    await asyncio.gather(
        invoices.act(ns, a.invoice.id, Action.SNAPSHOT_QUANTITIES),
        invoices.advance_due(ns, b.invoice.id),
    )
    found = {f.invoice.id: f for f in standard(await invoices_of(env, ns))}
    quantities = [top(found[a.invoice.id])["API"], top(found[b.invoice.id])["API"]]
    # Both read their usage before either went on (the barrier). Whichever takes the period's lock
    # second bills what the first left: A its 100 and B the rest, or, when B goes first and bills
    # the whole period so far, A nothing, after reading the usage up to B's end once more.
    assert (rendezvous.reads, quantities) in ((2, [D(100), D(50)]), (3, [D(0), D(150)])), quantities
    # November's 150 calls, billed once between the two parts (was 100 + 150).
    assert sum(q or D(0) for q in quantities) == D(150), quantities
    assert found[a.invoice.id].invoice.totals.total + found[b.invoice.id].invoice.totals.total == D(150)


async def test_a_worker_down_across_a_period_billed_in_parts_bills_each_part_its_own_time(env: Env) -> None:
    # November's calls billed in two parts: invoice-now on the 15th (100 calls), the month's end (50
    # more). The worker was down from before the first part's draft was due until after the month's
    # end, so one pass finds both: the first part's draft, due since the 15th, and the month's end
    # on the gathering invoice. Each part bills its own time's usage, as when the worker was up:
    # the pass advances what was due before it collects what is new. (It collected first: the
    # month's part took the period's 150 calls and the first part's invoice, made for Nov 1-15's
    # usage, billed 0.)
    ns = "bw_down_across_parts"
    _, first = await november_invoiced_now_at_mid(env, ns)
    assert first.invoice.state == State.DRAFT_WAITING_FOR_COLLECTION
    env.clock.at = DEC + 2 * HOUR
    result = await env.worker().run_once()
    assert (result.collected, result.failed) == (1, 0)
    found = {f.invoice.id: f for f in standard(await invoices_of(env, ns))}
    (month,) = [f for i, f in found.items() if i != first.invoice.id]
    assert {found[first.invoice.id].invoice.state, month.invoice.state} == {State.PAID}
    assert top(found[first.invoice.id]) == {"API": D(100)}
    assert top(month) == {"API": D(50)}


async def test_late_usage_stored_while_the_worker_was_down_past_the_window_is_billed(env: Env) -> None:
    # November's 100 calls issued on Dec 1; 30 more of November's stored on Dec 2 (late), and the
    # billing worker stopped from Dec 1 until Dec 20, past the late-usage window (7 days from the
    # period's end or its invoice's issue). The pass after the stop looks back from the last
    # pass that read late usage, not from now, so the 30 calls are billed.
    ns = "bw_late_while_down"
    cid = await customer(env, ns, "c1")
    await november_calls(env, ns, cid, (3, "100"))
    env.clock.at = DEC + 2 * HOUR
    worker = env.worker()
    assert (await worker.run_once()).collected == 1
    env.usage.add("api", cid, NOV + timedelta(days=29), "30")  # stored on Dec 2
    env.clock.at = DEC + timedelta(days=20)
    restarted = env.worker()  # a new process: nothing of the last one's passes in memory
    assert (await restarted.run_once()).corrections == 1
    env.clock.at += 2 * HOUR
    await restarted.run_once()
    assert sorted(top(f)["API"] or D(0) for f in standard(await invoices_of(env, ns))) == [D(30), D(100)]
    # Looked at once more, nothing is left to bill.
    assert (await restarted.run_once()).corrections == 0


async def test_a_batch_counts_each_part_of_a_period_for_its_own_subjects(env: Env) -> None:
    # The worker's batch snapshot (what other invoices billed staged per invoice) counts each
    # earlier part's time for the subjects that part's invoice copied, as one invoice at a time
    # does (test_invoices' test_a_period_billed_in_parts_counts_each_parts_own_subjects). The first
    # half copied {c1, c1-a}; a was then taken from the customer and b given to it.
    ns = "bw_split_subjects"
    cid = (await env.customers.create(ns, CustomerInput(name="Split", key="c1", subject_keys=["c1-a"]))).id
    for subject, day, qty in (("c1", 2, "10"), ("c1-a", 3, "100"), ("c1-b", 4, "7")):
        env.usage.add("api", cid, NOV + timedelta(days=day), qty, subject=subject)
    for subject, day, qty in (("c1", 20, "1"), ("c1-a", 21, "1000"), ("c1-b", 22, "20000")):
        env.usage.add("api", cid, NOV + timedelta(days=day), qty, subject=subject)
    line = PendingLineInput("API", NOV, DEC, DEC, price=UnitPrice(D(1)), feature_key="api")
    await env.invoices().create_pending_lines(ns, cid, PendingLinesInput("USD", [line]))
    mid = NOV + timedelta(days=15)
    env.clock.at = mid
    (first,) = await env.invoices().invoice_now(ns, InvoiceNowInput(cid, as_of=mid, progressive_billing_override=True))
    await env.customers.update(ns, cid, CustomerInput(name="Split", key="c1", subject_keys=["c1-b"]))
    env.clock.at = DEC + 2 * HOUR
    worker = env.worker(batch_size=100)
    await worker.run_once()
    await worker.run_once()
    found = {f.invoice.id: f for f in standard(await invoices_of(env, ns))}
    (second,) = [f for i, f in found.items() if i != first.invoice.id]
    # The first half's draft waited for late events (its collection interval) and was read first
    # in this pass, with the subjects its invoice copied ({c1, c1-a}: 110). The second part took
    # the period's usage up to its end less that, counting the first half's time for those same
    # subjects, not its own ({c1, c1-b}: 17 there): 20,001, 20,111 in all.
    assert {found[first.invoice.id].invoice.state, second.invoice.state} == {State.PAID}
    assert top(found[first.invoice.id]) == {"API": D(110)}
    assert top(second) == {"API": D(20001)}  # counted with its own subjects throughout: 19,908


TIERED = TieredPrice(TieredMode.GRADUATED, (PriceTier(D(100), None, D("0.1")), PriceTier(None, D(5), D("0.05"))))


def tiered_lines() -> PendingLinesInput:
    """A flat fee and a graduated-tier usage line (rated into detailed child lines, one per tier)."""
    return PendingLinesInput(
        "USD",
        [
            PendingLineInput("Platform", NOV, DEC, DEC, per_unit_amount=D("20"), quantity=D(1)),
            PendingLineInput("Tokens", NOV, DEC, DEC, price=TIERED, feature_key="api"),
        ],
    )


def billed(invoice: InvoiceWithLines) -> tuple[object, ...]:
    """What an invoice bills: its state and totals, each top line's quantities and totals, and the
    live detailed lines under each (by tier), without IDs, numbers or times."""
    names = {x.id: x.name for x in invoice.lines}
    return (
        invoice.invoice.state,
        invoice.invoice.totals,
        sorted((x.name, x.quantity, x.metered_quantity, x.totals) for x in invoice.lines if x.parent_line_id is None),
        sorted(
            (names[x.parent_line_id], x.child_key, x.quantity, x.per_unit_amount, x.totals)
            for x in invoice.lines
            if x.parent_line_id is not None
        ),
    )


async def test_a_batch_bills_exactly_what_one_invoice_at_a_time_bills(env: Env) -> None:
    # The worker moves a claimed batch together, several states per transaction with the writes
    # staged (domain/billing/invoice_batch.py); invoice-now moves one invoice a state per
    # transaction. The same lines and usage must bill the same, to the detailed line.
    usages = ["0", "50", "100", "101", "250", "1000", "7.5", "333"]
    manual = 3  # this customer's invoices wait for approval: the batch must stop where one would
    ids: dict[tuple[str, int], str] = {}
    for ns in ("bw_batched", "bw_alone"):
        for i, qty in enumerate(usages):
            cid = await customer(env, ns, f"c{i}")
            ids[ns, i] = cid
            if i == manual:
                await env.profiles.upsert_override(
                    ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False))
                )
            env.usage.add("api", cid, NOV + timedelta(days=3), qty)
            await env.invoices().create_pending_lines(ns, cid, tiered_lines())
    env.clock.at = DEC + 2 * HOUR
    for i in range(len(usages)):
        await env.invoices().invoice_now("bw_alone", InvoiceNowInput(customer=ids["bw_alone", i]))
    # bw_alone has nothing left to collect.
    assert await env.worker(batch_size=100).collect() == (len(usages), 0)

    by_customer = {
        ns: {f.invoice.customer.id: f for f in standard(await invoices_of(env, ns))}
        for ns in ("bw_batched", "bw_alone")
    }
    for i in range(len(usages)):
        batch, alone = by_customer["bw_batched"][ids["bw_batched", i]], by_customer["bw_alone"][ids["bw_alone", i]]
        assert billed(batch) == billed(alone), usages[i]
        expected = State.DRAFT_MANUAL_APPROVAL_NEEDED if i == manual else State.PAID
        assert batch.invoice.state is expected
    # 250 tokens: 100 at 0.1 + 150 at 0.05 + the second tier's flat 5 = 22.50, plus the platform fee.
    assert by_customer["bw_batched"][ids["bw_batched", 4]].invoice.totals.total == D("42.50")
    # Invoice numbers are gap-free: the batch's round reserved a block and gave back what it did not
    # use, so the invoice approved afterwards takes the very next number.
    numbers = [f.invoice.number for f in by_customer["bw_batched"].values() if f.invoice.state is State.PAID]
    assert sorted(_sequence(n) for n in numbers) == list(range(1, len(usages)))
    waiting = by_customer["bw_batched"][ids["bw_batched", manual]].invoice
    approved = await env.invoices().act("bw_batched", waiting.id, Action.APPROVE)
    assert approved.invoice.state is State.PAID and _sequence(approved.invoice.number) == len(usages)


async def test_a_round_gives_back_the_numbers_it_did_not_use(env: Env) -> None:
    # A batch round reserves a block of numbers (one per invoice it moves) and gives back what it
    # did not use before it commits. The give-back statement named its parameters after the
    # sequence's columns, which SQLAlchemy refuses in an UPDATE (CompileError "bindparam() name
    # 'namespace' is reserved"): every round with an invoice that stopped short of issuing (one
    # waiting for approval) failed and was advanced again one invoice at a time, so the batch
    # above bills right only through that fallback. Reserve 3, use 1, give 2 back: the next is 2.
    engine = create_engine(env.url)
    try:
        async with session_factory(engine)() as session:
            numbers = TransactionInvoiceNumbers(session)
            assert await numbers.reserve("bw_give_back", "invoice", 3) == 1
            await numbers.give_back("bw_give_back", "invoice", 2)
            assert await numbers.next_number("bw_give_back", "invoice") == 2
            await session.commit()
    finally:
        await engine.dispose()


def _sequence(number: str | None) -> int:
    assert number is not None
    return int(number.rsplit("-", 1)[1])


async def test_one_invoice_failing_in_a_batch_holds_back_only_itself(env: Env) -> None:
    ns = "bw_batch_failure"
    ids = [await customer(env, ns, f"c{i}") for i in range(5)]
    for i, cid in enumerate(ids):
        env.usage.add("api", cid, NOV + timedelta(days=2), str(10 * (i + 1)))
        await env.invoices().create_pending_lines(ns, cid, month_lines())
    env.clock.at = DEC + 2 * HOUR
    made, failed = await env.worker(FailingStore(env.usage, only_customer=ids[2]), batch_size=100).collect()
    assert (made, failed) == (4, 1)
    found = {f.invoice.customer.id: f for f in await invoices_of(env, ns)}
    # Its invoice was not made (its first advance failed, the creation rolled back with it): its
    # lines are where they were, on its gathering invoice, whose failure is counted and retried later.
    stuck = found[ids[2]]
    assert stuck.invoice.state is State.GATHERING and stuck.invoice.attempts == 1
    assert sorted(top(stuck)) == ["API", "Platform"]
    for i, cid in enumerate(ids):
        if i != 2:
            assert found[cid].invoice.state is State.PAID and top(found[cid])["API"] == D(10 * (i + 1))


@dataclass
class FailingStore(UsageWrapper):
    """The usage store, unreachable while `down` is set (as a ClickHouse outage reaches billing);
    with `only_customer`, only for reads that ask for that customer's usage."""

    down: bool = True
    refused: int = 0
    only_customer: str | None = None

    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]:
        if self.down and (self.only_customer is None or any(r.customer_id == self.only_customer for r in requests)):
            self.refused += 1
            raise ConnectionError("usage store unavailable")
        return await self.inner.quantities(namespace, requests, cutoff)


async def test_store_unavailable_during_collection_retries_and_loses_nothing(env: Env) -> None:
    ns = "bw_store_down"
    cid = await customer(env, ns, "c1")
    env.usage.add("api", cid, NOV + timedelta(days=5), "250")
    await env.invoices().create_pending_lines(ns, cid, month_lines())
    store = FailingStore(env.usage)
    worker = env.worker(store, backoff=Backoff(initial=timedelta(minutes=1), maximum=timedelta(minutes=10)))
    env.clock.at = DEC + HOUR
    result = await worker.run_once()
    # The new invoice's quantity snapshot failed, and with it its creation (one transaction): no
    # invoice was made, the lines wait on the gathering invoice, which is retried after its backoff.
    assert store.refused >= 1 and result.collected == 0 and result.failed == 1
    (gathering,) = await invoices_of(env, ns)
    assert gathering.invoice.state is State.GATHERING and sorted(top(gathering)) == ["API", "Platform"]
    assert gathering.invoice.attempts == 1 and gathering.invoice.next_attempt_at == DEC + HOUR + timedelta(minutes=1)
    # Still down at the retry: the next delay doubles.
    env.clock.at = DEC + HOUR + timedelta(minutes=1)
    assert (await worker.run_once()).failed == 1
    (gathering,) = await invoices_of(env, ns)
    assert gathering.invoice.attempts == 2 and gathering.invoice.next_attempt_at == env.clock.at + timedelta(minutes=2)
    # Not due yet: nothing is tried before the backoff ends.
    refused = store.refused
    assert (await worker.run_once()).failed == 0 and store.refused == refused
    store.down = False
    env.clock.at += timedelta(minutes=2)
    assert (await worker.run_once()).collected == 1
    (paid,) = await invoices_of(env, ns)
    assert paid.invoice.state is State.PAID and top(paid) == {"Platform": D(1), "API": D(250)}
    assert paid.invoice.totals.total == D("22.50") and paid.invoice.attempts == 0


@dataclass
class Watching(UsageWrapper):
    """The usage store, listing the namespace's standard invoices (as any client reading them is
    shown them: committed) each time billing reads usage."""

    env: Env
    namespace: str
    reads: int = 0
    shown: list[tuple[State, Decimal]] = field(default_factory=list)

    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]:
        self.reads += 1
        self.shown.extend(
            (f.invoice.state, f.invoice.totals.total) for f in standard(await invoices_of(self.env, self.namespace))
        )
        return await self.inner.quantities(namespace, requests, cutoff)


async def test_a_collected_invoice_is_never_shown_before_its_usage_is_rated(env: Env) -> None:
    # The worker made its standard invoices in one transaction and advanced them in the next ones:
    # a client reading the invoices in between (here: while the worker read their usage) was shown
    # drafts in draft.created, their lines unrated and their totals 0, and a failing advance left
    # them so. Made and advanced in one transaction (as OpenMeter's creation advances an invoice
    # until it is stable), with the usage read before it, no client is shown a new invoice before
    # it is rated.
    ns = "bw_never_unrated"
    ids = [await customer(env, ns, f"c{i}") for i in range(3)]
    for i, cid in enumerate(ids):
        env.usage.add("api", cid, NOV + timedelta(days=2), str(100 * (i + 1)))
        await env.invoices().create_pending_lines(ns, cid, month_lines())
    watching = Watching(env.usage, env, ns)
    env.clock.at = DEC + 2 * HOUR
    assert await env.worker(watching, batch_size=100).collect() == (3, 0)
    assert watching.reads >= 1 and watching.shown == []
    found = {f.invoice.customer.id: f.invoice for f in standard(await invoices_of(env, ns))}
    assert [(found[c].state, found[c].totals.total) for c in ids] == [
        (State.PAID, D("21.00")),
        (State.PAID, D("22.00")),
        (State.PAID, D("23.00")),
    ]


async def test_invoice_now_never_commits_an_unrated_invoice(env: Env) -> None:
    ns = "bw_now_unrated"
    cid = await customer(env, ns, "c1")
    env.usage.add("api", cid, NOV + timedelta(days=2), "300")
    await env.invoices().create_pending_lines(ns, cid, month_lines())
    env.clock.at = DEC + 2 * HOUR
    # The usage store down: the call fails and makes no invoice (it made one, its usage unrated).
    with pytest.raises(ConnectionError):
        await env.invoices(FailingStore(env.usage)).invoice_now(ns, InvoiceNowInput(customer=cid))
    (gathering,) = await invoices_of(env, ns)
    assert gathering.invoice.state is State.GATHERING and sorted(top(gathering)) == ["API", "Platform"]
    # Up: nobody is shown the invoice before its usage was read and rated.
    watching = Watching(env.usage, env, ns)
    (made,) = await env.invoices(watching).invoice_now(ns, InvoiceNowInput(customer=cid))
    assert watching.reads >= 1 and watching.shown == []
    assert made.invoice.state is State.PAID and made.invoice.totals.total == D("23.00")


async def test_worker_killed_mid_advance_leaves_nothing_half_done(env: Env, tmp_path: Path) -> None:
    ns = "bw_kill"
    cid = await customer(env, ns, "c1")
    env.usage.add("api", cid, NOV + timedelta(days=2), "300")
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(collection_interval="P1D")))
    await env.invoices().create_pending_lines(ns, cid, month_lines())
    env.clock.at = DEC
    assert (await env.worker().run_once()).collected == 1
    (draft,) = standard(await invoices_of(env, ns))
    assert draft.invoice.state is State.DRAFT_WAITING_FOR_COLLECTION

    # Another process advances it and is killed inside the quantity snapshot (its transaction open,
    # the invoice row locked).
    marker = tmp_path / "inside"
    at = DEC + timedelta(days=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.billing_worker_proc", env.url, at.isoformat(), str(marker)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))},
    )
    try:
        async with asyncio.timeout(60):
            while not marker.exists():
                assert proc.poll() is None, "the worker process ended before reaching the snapshot"
                await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (left,) = standard(await invoices_of(env, ns))
    assert left.invoice.state is State.DRAFT_WAITING_FOR_COLLECTION
    assert top(left) == {"Platform": D(1), "API": None} and left.invoice.quantity_snapshotted_at is None
    # Leased to the killed worker until its lease (5 minutes) ends; then another one resumes.
    env.clock.at = at
    assert (await env.worker().run_once()).advanced == 0
    env.clock.at = at + timedelta(minutes=5)
    assert (await env.worker().run_once()).advanced == 1
    found = await invoices_of(env, ns)
    (paid,) = standard(found)
    assert len(found) == 1 and paid.invoice.id == draft.invoice.id and paid.invoice.state is State.PAID
    assert top(paid) == {"Platform": D(1), "API": D(300)} and paid.invoice.totals.total == D("23.00")
