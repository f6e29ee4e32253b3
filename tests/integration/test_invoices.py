"""Invoices end to end through the domain service on real Postgres: pending lines on one gathering
invoice per customer and currency, invoice-now with totals computed by hand, the sandbox lifecycle
to paid, manual approval, delete of a draft, progressive billing adding up to one invoice.

Usage comes from `EventUsage`, a stand-in for the UsageSource port over a list of events (the
ClickHouse reader, adapters/clickhouse/billing_usage.py, has its own test); everything else is the real code."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio

from adapters.postgres.billing import PostgresInvoiceNumbers, billing_unit_of_work
from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import create_engine, migrate, session_factory
from adapters.postgres.invoices import PostgresInvoiceRepository
from domain.billing.apps.models import InstallAppInput, UpdateAppInput
from domain.billing.apps.registry import Marketplace
from domain.billing.apps.sandbox import TARGET_PAYMENT_STATUS_KEY
from domain.billing.invoice_rest import line_rest, lines_rest, parse_invoice_update, parse_pending_lines
from domain.billing.invoice_service import InvoiceListener, InvoiceService
from domain.billing.invoice_states import Action, InvalidTransitionError, InvoiceStatus, State
from domain.billing.invoices import (
    InvoiceListQuery,
    InvoiceNowInput,
    InvoiceWithLines,
    LineStatus,
    ManagedBy,
    PendingLineInput,
    PendingLinesInput,
    VoidAction,
    VoidInput,
    VoidLineAction,
)
from domain.billing.models import (
    Alignment,
    ListProfilesInput,
    OverrideUpsertInput,
    ProfileApps,
    ProfileCreateInput,
    RecurringPeriod,
    WorkflowPatch,
)
from domain.billing.ports import UnitOfWork
from domain.billing.service import AppService, BillingProfileService, Provisioner
from domain.catalog.currencies import get as currency
from domain.catalog.prices import Commitments, Discounts, PriceTier, TieredMode, TieredPrice, UnitPrice
from domain.catalog.rating import DiscountReason, Period, RatingInput, rate
from domain.customers.models import CustomerInput
from domain.customers.service import CustomerService
from domain.errors import ConflictError, ValidationError
from server.servicers.invoices import invoice_json
from tests.support.services import require
from tests.support.stack import create_database, postgres_available
from tests.support.usage import EventUsage
from workers.billing import BillingWorker

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
D = Decimal


@dataclass
class Env:
    invoices: InvoiceService
    apps: AppService
    profiles: BillingProfileService
    customers: CustomerService
    usage: EventUsage
    # For services of their own (a test's listeners or clock) over the same store.
    uow: UnitOfWork
    marketplace: Marketplace


@pytest_asyncio.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async for made in open_env():
        yield made


async def open_env() -> AsyncIterator[Env]:
    """The services over a new database (for this module's fixture and other modules' own)."""
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
    usage = EventUsage()
    yield Env(
        InvoiceService(uow, profiles, customers, marketplace, usage), apps, profiles, customers, usage, uow, marketplace
    )
    await engine.dispose()


TIERED = TieredPrice(
    TieredMode.GRADUATED,
    (PriceTier(D(100), None, D("0.1")), PriceTier(None, D(5), D("0.05"))),
)


def flat(name: str, amount: str, qty: str = "1", at: datetime = NOV) -> PendingLineInput:
    return PendingLineInput(name, NOV, DEC, at, per_unit_amount=D(amount), quantity=D(qty))


def usage_line(name: str, feature: str, price: UnitPrice | TieredPrice, start: datetime = NOV) -> PendingLineInput:
    return PendingLineInput(name, start, DEC, DEC, price=price, feature_key=feature)


def listening(
    env: Env, listener: InvoiceListener, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> InvoiceService:
    """An invoice service over the module's store that tells `listener` (the module's tells no one)."""
    service = InvoiceService(env.uow, env.profiles, env.customers, env.marketplace, env.usage, clock)
    service.listeners.append(listener)
    return service


async def customer(env: Env, namespace: str, name: str = "Acme Corp") -> str:
    return (await env.customers.create(namespace, CustomerInput(name=name, key=namespace))).id


async def test_pending_lines_gather_on_one_invoice_per_currency(env: Env) -> None:
    ns = "inv_pending"
    cid = await customer(env, ns)
    first, lines, created = await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [flat("Setup", "10")])
    )
    assert created and first.invoice.state is State.GATHERING and len(lines) == 1
    again, _, created = await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("More", "5")]))
    assert not created and again.invoice.id == first.invoice.id and len(again.lines) == 2
    # Racing posts in another currency still make exactly one gathering invoice for it.
    results = await asyncio.gather(
        *(env.invoices.create_pending_lines(ns, cid, PendingLinesInput("EUR", [flat(f"e{i}", "1")])) for i in range(5))
    )
    assert len({r[0].invoice.id for r in results}) == 1 and sum(r[2] for r in results) == 1
    found, total = await env.invoices.list_invoices(ns, InvoiceListQuery(customers=[cid]), with_lines=True)
    assert total == 2 and sorted(len(i.lines) for i in found) == [2, 5]


async def test_an_invoice_notification_not_told_by_its_call_is_told_by_the_worker_once(env: Env) -> None:
    """invoice.created / invoice.updated are owed by the write that makes them, in its transaction:
    a call that dies before telling (here: the CLI's service, which has no listeners, as a process
    killed after the commit) or a listener that fails leaves them owed, and the billing worker's
    pass tells each once, as `created` when the invoice's creation was never told."""
    ns = "inv_owed_notifications"
    cid = await customer(env, ns)
    heard: list[tuple[str, bool]] = []
    failing = [True]

    async def listener(namespace: str, invoice_id: str, created: bool) -> None:
        if namespace != ns:
            return  # other tests' invoices, owed by the module's service that has no listeners
        heard.append((invoice_id, created))
        if failing[0]:
            failing[0] = False
            raise RuntimeError("the notifications store is away")

    # The worker's pass leaves notifications owed for less than a minute to their own calls: it
    # runs a minute and a half ahead.
    ahead = [timedelta(0)]
    telling = listening(env, listener, clock=lambda: datetime.now(UTC) + ahead[0])
    worker = BillingWorker(telling)

    async def drain() -> None:
        ahead[0] = timedelta(seconds=90)
        for _ in range(50):  # a pass tells up to 500; what it tells is owed no longer
            if not await worker.notify_owed():
                break
        else:
            raise AssertionError("the worker's passes kept telling the same notifications")
        ahead[0] = timedelta(0)

    await drain()  # other tests' leftovers, not heard here
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Seats", "10")]))
    (silent,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))  # made, nobody told
    await telling.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Seats", "20")]))
    (failed,) = await telling.invoice_now(ns, InvoiceNowInput(cid))  # its listener fails
    assert heard == [(failed.invoice.id, True)]
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    await telling.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Seats", "30")]))
    (told,) = await telling.invoice_now(ns, InvoiceNowInput(cid))  # told at once: owes nothing after
    assert heard[-1] == (told.invoice.id, True)
    heard.clear()

    await drain()
    assert sorted(heard) == sorted([(silent.invoice.id, True), (failed.invoice.id, True)])
    heard.clear()
    await drain()
    assert heard == []

    # A later move of an invoice whose creation was never told tells it as created.
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Seats", "40")]))
    (waiting,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert waiting.invoice.state is State.DRAFT_MANUAL_APPROVAL_NEEDED
    await telling.act(ns, waiting.invoice.id, Action.APPROVE)
    assert heard == [(waiting.invoice.id, True)]
    heard.clear()
    await drain()
    assert heard == []

    # Two workers' passes at once tell each owed notification once (the claim is a lease).
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=True)))
    untold = []
    for amount in ("50", "60", "70"):
        await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Seats", amount)]))
        (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
        untold.append((made.invoice.id, True))
    ahead[0] = timedelta(seconds=90)
    await asyncio.gather(worker.notify_owed(), BillingWorker(telling).notify_owed())
    assert sorted(heard) == sorted(untold)


async def test_an_invoice_action_answers_when_the_owed_notifications_cannot_be_read(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres failing after the action committed (here: the read of what it owes) does not turn
    the action into an error: the invoice moved, and what it owes is told by the worker's pass."""
    ns = "inv_owed_unreadable"
    cid = await customer(env, ns)
    heard: list[str] = []

    async def listener(namespace: str, invoice_id: str, created: bool) -> None:
        heard.append(invoice_id)

    telling = listening(env, listener)
    await telling.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Seats", "10")]))

    async def unreadable(*_: object) -> dict[str, object]:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(PostgresInvoiceRepository, "owed_notifications", unreadable)
    (made,) = await telling.invoice_now(ns, InvoiceNowInput(cid))
    assert made.invoice.state is State.PAID and heard == []
    monkeypatch.undo()
    async with env.uow() as tx:
        owed = await tx.invoices.owed_notifications(ns, [made.invoice.id])
    assert owed[made.invoice.id].created


async def test_pending_line_validation(env: Env) -> None:
    ns = "inv_pending_bad"
    cid = await customer(env, ns)
    bad = PendingLineInput("x", DEC, NOV, DEC, price=UnitPrice(D(1)))
    with pytest.raises(ValidationError) as caught:
        await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("XXX", [bad]))
    assert {v.field for v in caught.value.violations} == {"currency", "lines[0].period", "lines[0].featureKey"}


async def test_invoice_now_totals_by_hand_and_sandbox_to_paid(env: Env) -> None:
    ns = "inv_now"
    cid = await customer(env, ns)
    env.usage.add("api", cid, NOV + timedelta(days=3), "1001")
    env.usage.add("tokens", cid, NOV + timedelta(days=4), "150")
    env.usage.add("tokens", cid, DEC + timedelta(days=1), "999")  # outside the period
    await env.invoices.create_pending_lines(
        ns,
        cid,
        PendingLinesInput(
            "USD",
            [
                flat("Seats", "12.50", "2"),
                usage_line("API", "api", UnitPrice(D("0.015"))),
                usage_line("Tokens", "tokens", TIERED),
            ],
        ),
    )
    with pytest.raises(ValidationError):
        await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=NOV - timedelta(days=1)))
    with pytest.raises(ValidationError) as caught:
        await env.invoices.invoice_now(ns, InvoiceNowInput(cid, line_ids=["01M8VD9F2MBADBENGKDT3N58Z7"]))
    assert [v.field for v in caught.value.violations] == ["filters.lineIds[0]"]
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    inv = made.invoice
    # 2 x 12.50 = 25.00; 1001 x 0.015 = 15.015 -> 15.02; tokens: 100 x 0.1 + 5 flat + 50 x 0.05 = 17.50.
    assert inv.state is State.PAID and inv.status is InvoiceStatus.PAID
    assert inv.totals.amount == D("57.52") and inv.totals.total == D("57.52")
    # OpenMeter's customer prefix: two letters of each of the first two words.
    assert inv.number is not None and inv.number.startswith("OM-SANDBOX-ACCO-")
    # Approved automatically (a draft period of P0D): due dueAfter (P30D) past the draft period's
    # end, in whole seconds, as OpenMeter's CalculateDueAt.
    assert inv.issued_at is not None and inv.paid_at is not None and inv.draft_until is not None
    assert inv.draft_until <= inv.issued_at and inv.due_at == (inv.draft_until + timedelta(days=30)).replace(
        microsecond=0
    )
    top = {x.name: x for x in made.lines if x.parent_line_id is None}
    assert top["API"].quantity == D(1001) and top["API"].totals.total == D("15.02")
    assert top["Tokens"].quantity == D(150) and top["Tokens"].pre_line_period_quantity == D(0)
    children = [x for x in made.lines if x.parent_line_id == top["Tokens"].id]
    assert all(c.status is LineStatus.DETAILED for c in children)
    assert sum((c.totals.total for c in children), D(0)) == D("17.50")
    # The emptied gathering invoice is gone; nothing is left to invoice.
    found, _ = await env.invoices.list_invoices(ns, InvoiceListQuery(statuses=[InvoiceStatus.GATHERING]))
    assert found == []
    with pytest.raises(ValidationError):
        await env.invoices.invoice_now(ns, InvoiceNowInput(cid))


async def test_invoice_now_refuses_a_listed_line_that_is_not_billable_yet(env: Env) -> None:
    """filters.lineIds: every listed line must be billable as of asOf, or nothing is invoiced (400
    naming it, as OpenMeter's ErrInvoiceLinesNotBillable). An in-arrears fee whose period has begun
    but not ended is not (a flat fee is never split), though a listed line beside it is due."""
    ns = "inv_now_listed_not_billable"
    cid = await customer(env, ns)
    now = datetime.now(UTC)
    running = PendingLineInput(
        "Support", now - timedelta(days=1), now + timedelta(days=10), now + timedelta(days=10), per_unit_amount=D(7)
    )
    gathered, lines, _ = await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [flat("Setup", "10"), running])
    )
    due, later = lines
    with pytest.raises(ValidationError) as caught:
        await env.invoices.invoice_now(ns, InvoiceNowInput(cid, line_ids=[due.id, later.id]))
    assert [v.field for v in caught.value.violations] == ["filters.lineIds[1]"]
    # Nothing was invoiced: both lines still wait on the gathering invoice.
    found = await env.invoices.get(ns, gathered.invoice.id)
    assert sorted(x.id for x in found.lines if x.parent_line_id is None) == sorted([due.id, later.id])


async def test_manual_approval_then_paid_and_delete_of_a_draft(env: Env) -> None:
    ns = "inv_manual"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "99.99")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert made.invoice.state is State.DRAFT_MANUAL_APPROVAL_NEEDED and made.invoice.totals.total == D("99.99")
    with pytest.raises(InvalidTransitionError):
        await env.invoices.act(ns, made.invoice.id, Action.VOID)
    paid = await env.invoices.act(ns, made.invoice.id, Action.APPROVE)
    assert paid.invoice.state is State.PAID

    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Other", "1")]))
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    deleted = await env.invoices.act(ns, draft.invoice.id, Action.DELETE)
    assert deleted.invoice.state is State.DELETED and deleted.invoice.deleted_at is not None
    # Its line went back to a gathering invoice and can be invoiced again.
    (gathering,), _ = await env.invoices.list_invoices(
        ns, InvoiceListQuery(statuses=[InvoiceStatus.GATHERING]), with_lines=True
    )
    assert [x.name for x in gathering.lines] == ["Other"]
    with pytest.raises(InvalidTransitionError):
        await env.invoices.act(ns, paid.invoice.id, Action.DELETE)


async def test_an_override_set_after_lines_were_gathered_applies_to_their_invoice(env: Env) -> None:
    # OpenMeter makes a standard invoice from the customer's profile as merged *now*
    # (billing/service/gatheringinvoicependinglines.go: GetCustomerOverride, then CreateInvoice with
    # its MergedProfile), not from the gathering invoice. A customer switched to manual approval, or
    # to another profile, after its lines started gathering (a subscription's customer always has
    # some) must get invoices that follow the switch.
    ns = "inv_override_later"
    cid = await customer(env, ns)
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "30")]))
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    await env.customers.update(ns, cid, CustomerInput(name="Acme Renamed", key=ns))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert not made.invoice.workflow.auto_advance and made.invoice.customer.name == "Acme Renamed"
    assert made.invoice.state is State.DRAFT_MANUAL_APPROVAL_NEEDED  # was: paid, without approval

    # The worker's collection too (one batch): pinned to a custom invoicing profile meanwhile.
    ns = "inv_override_later_batch"
    other = await custom_invoicing_customer(env, ns, "Globex")
    await env.profiles.delete_override(ns, other)
    await env.invoices.create_pending_lines(ns, other, PendingLinesInput("USD", [flat("Fee", "7", at=NOV)]))
    custom = await env.profiles.list_profiles(ns, ListProfilesInput())
    (pinned,) = [p.profile for p in custom[0] if p.profile.name == "Custom"]
    await env.profiles.upsert_override(ns, other, OverrideUpsertInput(profile_id=pinned.id))
    (gathering,), _ = await env.invoices.list_invoices(
        ns, InvoiceListQuery(customers=[other], statuses=[InvoiceStatus.GATHERING])
    )
    batch = await env.invoices.collect_batch(ns, [gathering.invoice], DEC)
    (invoice_id,) = batch.made[gathering.invoice.id]
    collected = await env.invoices.get(ns, invoice_id)
    assert collected.invoice.profile_id == pinned.id
    assert collected.invoice.invoicing_app_id == pinned.apps.invoicing


async def test_a_gathering_fee_sent_back_unchanged_keeps_its_quantity(env: Env) -> None:
    """OpenMeter's InvoiceLineReplaceUpdate has no quantity, and its gathering line merge leaves
    what the request does not carry as it was: a fee of 2 x 10 sent back as it is shown stays
    2 x 10 (not 1 x 10), and, nothing of it changed, keeps who manages it."""
    ns = "inv_gathering_quantity"
    cid = await customer(env, ns)
    gathering, (seats,), _ = await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [flat("Seats", "10", qty="2")])
    )
    shown = dataclasses.replace(flat("Seats", "10"), quantity=None)
    updated = await env.invoices.update_lines(ns, gathering.invoice.id, [(seats.id, shown)])
    (after,) = updated.lines
    assert (after.quantity, after.per_unit_amount, after.updated_at) == (D(2), D(10), seats.updated_at)


async def test_a_draft_fee_sent_back_unchanged_keeps_its_quantity_and_an_edited_line_is_the_users(env: Env) -> None:
    """The same on a draft (OpenMeter's mergeLineFromInvoiceLineReplaceUpdate: what the request does
    not carry stays, and a line that changed becomes managedBy manual): a fee of 2 x 10 sent back as
    shown stays 2 x 10 and its manager; renamed, it is the user's."""
    ns = "inv_draft_quantity"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Seats", "10", qty="2")]))
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (seats,) = [x for x in draft.lines if x.parent_line_id is None]
    assert (seats.quantity, draft.invoice.totals.total) == (D(2), D(20))
    # Sent back as the REST API shows it and reads it (the body has no quantity).
    (given,) = parse_invoice_update({"lines": [json.loads(json.dumps(line_rest(seats), default=str))]}).lines
    assert given[0] == seats.id
    shown = given[1]
    updated = await env.invoices.update_lines(ns, draft.invoice.id, [given])
    (after,) = [x for x in updated.lines if x.parent_line_id is None]
    assert (after.quantity, after.managed_by, updated.invoice.totals.total) == (D(2), seats.managed_by, D(20))
    renamed = dataclasses.replace(shown, name="Seats (renamed)")
    updated = await env.invoices.update_lines(ns, draft.invoice.id, [(seats.id, renamed)])
    (after,) = [x for x in updated.lines if x.parent_line_id is None]
    assert (after.name, after.quantity, after.managed_by) == ("Seats (renamed)", D(2), ManagedBy.MANUAL)
    assert updated.invoice.totals.total == D(20)


async def test_a_gathering_invoices_lines_must_stay_billable_as_of_their_invoice_at(env: Env) -> None:
    """OpenMeter's UpdateGatheringInvoice checks each line can be invoiced at its invoiceAt
    (service/gatheringinvoice.go checkIfGatheringLinesAreInvoicable, rating ResolveBillablePeriod):
    a usage line at the end of its period, or, billed in parts, after its start; a line whose
    earlier part was invoiced keeps its period (ErrInvoiceLineNoPeriodChangeForSplitLine). 400."""
    ns = "inv_gathering_billable"
    cid = await customer(env, ns)
    mid = NOV + timedelta(days=15)
    gathering, (tokens,), _ = await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Tokens", "tokens", TIERED)])
    )
    gid = gathering.invoice.id
    early = dataclasses.replace(usage_line("Tokens", "tokens", TIERED), invoice_at=NOV)
    with pytest.raises(ValidationError) as caught:
        await env.invoices.update_lines(ns, gid, [(tokens.id, early)])
    assert [v.field for v in caught.value.violations] == ["lines[0].invoiceAt"]
    # Billed in parts (progressive billing, a meter that only grows) it may be invoiced mid-period.
    updated = await env.invoices.update_lines(ns, gid, [(tokens.id, dataclasses.replace(early, invoice_at=mid))])
    assert updated.invoice.collection_at == mid
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(progressive_billing=False)))
    with pytest.raises(ValidationError) as caught:
        await env.invoices.update_lines(ns, gid, [(tokens.id, dataclasses.replace(early, invoice_at=mid))])
    assert [v.field for v in caught.value.violations] == ["lines[0].invoiceAt"]
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(progressive_billing=True)))
    # Its first half invoiced, the rest's period stays; it can be deleted.
    env.usage.add("tokens", cid, NOV + timedelta(days=2), "70")
    await env.invoices.update_lines(ns, gid, [(tokens.id, usage_line("Tokens", "tokens", TIERED))])
    await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=mid))
    (rest,) = (await env.invoices.get(ns, gid)).lines
    assert (rest.period_start, rest.period_end) == (mid, DEC)
    moved = usage_line("Tokens", "tokens", TIERED, start=mid + timedelta(days=1))
    with pytest.raises(ValidationError) as caught:
        await env.invoices.update_lines(ns, gid, [(rest.id, moved)])
    assert [v.field for v in caught.value.violations] == ["lines[0].period"]
    renamed = await env.invoices.update_lines(ns, gid, [(rest.id, usage_line("Renamed", "tokens", TIERED, start=mid))])
    assert [(x.id, x.name) for x in renamed.lines] == [(rest.id, "Renamed")]


async def test_progressive_billing_adds_up_to_one_invoice(env: Env) -> None:
    ns = "inv_progressive"
    cid = await customer(env, ns)
    mid = NOV + timedelta(days=15)
    env.usage.add("tokens", cid, NOV + timedelta(days=2), "70")
    env.usage.add("tokens", cid, NOV + timedelta(days=9), "40")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [usage_line("Tokens", "tokens", TIERED)]))
    (first,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=mid))
    assert first.invoice.state is State.PAID
    env.usage.add("tokens", cid, NOV + timedelta(days=20), "33")
    (second,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    line = next(x for x in second.lines if x.parent_line_id is None)
    assert line.pre_line_period_quantity == D(110) and line.quantity == D(33)
    whole = rate(RatingInput(price=TIERED, currency=currency("USD"), service_period=Period(NOV, DEC), quantity=D(143)))
    # 100 x 0.1 + 5 + 43 x 0.05 = 17.15, however the period is split.
    assert whole.totals.total == D("17.15")
    assert first.invoice.totals.total + second.invoice.totals.total == whole.totals.total


async def test_a_period_billed_in_parts_counts_each_parts_own_subjects(env: Env) -> None:
    # Each invoice copies its customer's subjects when it is made, and each part of a period counts
    # those over its own time (as OpenMeter reads a split line's range and its pre-line range for
    # its own invoice's customer). The first part (to the 16th) copied {key, a}; then a was taken
    # from the customer and b given to it. The second part bills {key, b} from the 16th on: b's 7
    # of before the 16th is not the customer's, a's 1000 after it neither. Before, the second part
    # counted {key, b} over the whole month less what the first billed: 10 + 7 + 1 + 20000 - 110 =
    # 19908 units instead of 20001 (a's 100 taken back, b's 7 billed).
    ns = "inv_split_subjects"
    cid = (await env.customers.create(ns, CustomerInput(name="Split", key=ns, subject_keys=["split-a"]))).id
    mid = NOV + timedelta(days=15)
    for subject, day, qty in ((ns, 2, "10"), ("split-a", 3, "100"), ("split-b", 4, "7")):
        env.usage.add("tokens", cid, NOV + timedelta(days=day), qty, subject=subject)
    for subject, day, qty in ((ns, 20, "1"), ("split-a", 21, "1000"), ("split-b", 22, "20000")):
        env.usage.add("tokens", cid, NOV + timedelta(days=day), qty, subject=subject)
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [usage_line("Tokens", "tokens", TIERED)]))
    (first,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=mid))
    await env.customers.update(ns, cid, CustomerInput(name="Split", key=ns, subject_keys=["split-b"]))
    env.usage.subjects_now[cid] = (ns, "split-b")
    # The gathering invoice's live totals count the same way (its rest of the month, read as of
    # now for the customer's subjects now).
    (gathering,) = [
        x
        for x in (await env.invoices.list_invoices(ns, InvoiceListQuery(), live=True, with_lines=True))[0]
        if x.invoice.state is State.GATHERING
    ]
    assert [x.quantity for x in gathering.lines if x.parent_line_id is None] == [D(20001)]  # before: 19908
    (second,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    (one,) = [x for x in first.lines if x.parent_line_id is None]
    (two,) = [x for x in second.lines if x.parent_line_id is None]
    assert one.quantity == D(110)
    assert (two.pre_line_period_quantity, two.quantity) == (D(110), D(20001))  # before: 110, 19908
    # Rated on top of the first part: the month's 20111 units at the graduated tiers, to the cent.
    whole = rate(
        RatingInput(price=TIERED, currency=currency("USD"), service_period=Period(NOV, DEC), quantity=D(20111))
    )
    assert whole.totals.total == D("1015.55")  # 100 x 0.1 + 5 + 20011 x 0.05
    assert first.invoice.totals.total + second.invoice.totals.total == whole.totals.total
    # Usage stored late is each part's own subjects' too: a's 5 more before the 16th is the first
    # part's late usage; b's 3 more before it was no one's on the invoices, nor a's 4 after it.
    late = DEC + timedelta(days=1)
    env.usage.add("tokens", cid, NOV + timedelta(days=5), "5", stored_at=late, subject="split-a")
    env.usage.add("tokens", cid, NOV + timedelta(days=6), "3", stored_at=late, subject="split-b")
    env.usage.add("tokens", cid, NOV + timedelta(days=23), "4", stored_at=late, subject="split-a")
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 1
    (correction,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (fix,) = [x for x in correction.lines if x.parent_line_id is None]
    assert (fix.pre_line_period_quantity, fix.quantity) == (D(20111), D(5))
    assert correction.invoice.totals.total == D("0.25")


async def test_a_latest_meters_period_is_not_billed_in_parts(env: Env) -> None:
    # Seats in use on a LATEST meter: 10 mid-month, 5 at its end. Billed in parts, the first part
    # took 10 and the rest max(5 - 10, 0) = 0: 10 seats billed where the month ended at 5. OpenMeter
    # bills only periods of meters that can only grow in parts (SUM, COUNT, MAX, UNIQUE_COUNT:
    # billing/rating/service/billableperiod.go isDependingOnIncreaseOnlyMeters); a LATEST line
    # waits for its period's end.
    ns = "inv_latest_whole"
    cid = await customer(env, ns)
    env.usage.latest.add("seats")
    env.usage.add("seats", cid, NOV + timedelta(days=2), "10")
    env.usage.add("seats", cid, NOV + timedelta(days=20), "5")
    unit = UnitPrice(D(1))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [usage_line("Seats", "seats", unit)]))
    with pytest.raises(ValidationError) as nothing_due:
        await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=NOV + timedelta(days=15)))
    assert nothing_due.value.violations[0].code == "invoice_create_no_lines"
    (whole,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    (line,) = [x for x in whole.lines if x.parent_line_id is None]
    assert (line.period_start, line.period_end, line.quantity, whole.invoice.totals.total) == (NOV, DEC, D(5), D(5))


async def test_a_period_without_usage_is_billed_with_its_snapshot(env: Env) -> None:
    # The snapshot of a line whose period had no usage rates to nothing, as the line was rated
    # before its snapshot; that must not drop the snapshot itself: the issued line says it billed
    # 0 (quantity, preLinePeriodQuantity, when it was read), as OpenMeter's does, not nothing.
    ns = "inv_no_usage"
    cid = await customer(env, ns)
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", UnitPrice(D(1)))])
    )
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert made.invoice.state is State.PAID and made.invoice.totals.total == D(0)
    (line,) = [x for x in made.lines if x.parent_line_id is None]
    assert (line.quantity, line.metered_quantity, line.pre_line_period_quantity) == (D(0), D(0), D(0))
    assert line.quantity_snapshotted_at == made.invoice.quantity_snapshotted_at is not None


async def test_a_lines_quantities_shown_net_of_its_usage_discount(env: Env) -> None:
    # OpenMeter's InvoiceUsageBasedLine: `quantity` and `preLinePeriodQuantity` have the usage
    # discount deducted, `meteredQuantity` and `meteredPreLinePeriodQuantity` are as metered
    # (openmeter-openapi.yaml; billing/rating/service/mutator/discountusage.go).
    ns = "inv_usage_discount_qty"
    cid = await customer(env, ns)
    env.usage.add("calls", cid, NOV + timedelta(days=2), "70")
    env.usage.add("calls", cid, NOV + timedelta(days=20), "80")
    line = dataclasses.replace(
        usage_line("Calls", "calls", UnitPrice(D("0.05"))), rate_card_discounts=Discounts(usage_quantity=D(100))
    )
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [line]))
    (first,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=NOV + timedelta(days=15)))
    (second,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    assert (first.invoice.totals.total, second.invoice.totals.total) == (D(0), D("2.50"))
    (shown,) = lines_rest(first.lines)
    assert (shown["quantity"], shown["meteredQuantity"]) == ("0", "70")  # before: "70", "70"
    (shown,) = lines_rest(second.lines)
    assert (shown["quantity"], shown["meteredQuantity"]) == ("50", "80")  # before: "80", "80"
    # before: "70", "70"
    assert (shown["preLinePeriodQuantity"], shown["meteredPreLinePeriodQuantity"]) == ("0", "70")
    assert [c["quantity"] for c in shown["children"]] == ["50"]


async def test_a_lines_usage_discount_is_listed_on_the_line(env: Env) -> None:
    # OpenMeter lists the usage discount a line took in its `discounts.usage`: the units made free
    # on this line, those made free before it in the period (preLinePeriodQuantity, left out when
    # 0) and the rate card's discount as the reason (billing/rating/service/mutator/discountusage.go,
    # billing/httpdriver/invoiceline.go mapInvoiceLineUsageDiscountsToAPI). The first 100 calls
    # free; 70, 80 and 10 calls in three invoices: 70 free on the first, 30 on the second, none on
    # the third (OpenMeter lists nothing there).
    ns = "inv_usage_discount_listed"
    cid = await customer(env, ns)
    env.usage.add("calls", cid, NOV + timedelta(days=2), "70")
    env.usage.add("calls", cid, NOV + timedelta(days=17), "80")
    env.usage.add("calls", cid, NOV + timedelta(days=25), "10")
    line = dataclasses.replace(
        usage_line("Calls", "calls", UnitPrice(D("0.05"))), rate_card_discounts=Discounts(usage_quantity=D(100))
    )
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [line]))
    made = [
        (await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=at)))[0]
        for at in (NOV + timedelta(days=15), NOV + timedelta(days=20), DEC + timedelta(hours=2))
    ]
    shown = [invoice_json(env.invoices, x)["lines"][0] for x in made]
    reason = {"type": "ratecard_usage", "quantity": "100"}
    # Every line's rate card discount has a correlation ID (OpenMeter's UpsertDiscountCorrelationIDs),
    # one for the period: the same on both invoices.
    correlation_ids = {d["reason"].pop("correlationId") for x in shown for d in x["discounts"].get("usage", [])}
    assert len(correlation_ids) == 1
    listed = [
        [(d["quantity"], d.get("preLinePeriodQuantity"), d["reason"]) for d in x["discounts"]["usage"]] for x in shown
    ]
    assert listed == [[("70", None, reason)], [("30", "70", reason)], []]
    assert all(d["id"] and d["createdAt"] and d["updatedAt"] for d in shown[0]["discounts"]["usage"])
    # Free units are simply not charged: the listing changes no total (0, 50 x 0.05, 10 x 0.05).
    assert [(x["totals"]["discountsTotal"], x["totals"]["total"]) for x in shown] == [
        ("0", "0"),
        ("0", "2.5"),
        ("0", "0.5"),
    ]


async def test_racing_actions_on_one_draft_apply_once(env: Env) -> None:
    ns = "inv_race"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "5")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    results = await asyncio.gather(
        *(env.invoices.act(ns, made.invoice.id, a) for a in (Action.APPROVE, Action.DELETE, Action.APPROVE)),
        return_exceptions=True,
    )
    done = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InvalidTransitionError)]
    # The row lock serialises them: each applies to the state the previous one left (a delete may
    # follow an approval while the invoice is still a draft), the rest are refused, none half-done.
    assert done and len(done) + len(refused) == 3, results
    final = await env.invoices.get(ns, made.invoice.id)
    assert final.invoice.state in (State.PAID, State.DELETED)
    # The one line is on exactly one live invoice: the paid one, or back on a gathering invoice.
    found, _ = await env.invoices.list_invoices(ns, InvoiceListQuery(customers=[cid]), with_lines=True)
    assert [x.name for f in found for x in f.lines if x.parent_line_id is None] == ["Fee"]
    assert [f.invoice.status for f in found] == [
        InvoiceStatus.PAID if final.invoice.state is State.PAID else InvoiceStatus.GATHERING
    ]


async def custom_invoicing_customer(env: Env, ns: str, name: str, *, issuing_hook: bool = True) -> str:
    """A customer billed through custom invoicing with both sync hooks on (invoices wait for the
    integrator's draft/synchronized and issuing/synchronized calls), or only the draft hook."""
    cid = await customer(env, ns, name)
    app, _ = await env.apps.install(ns, InstallAppInput(type="custom_invoicing", create_billing_profile=False))
    await env.apps.update_app(
        ns,
        app.id,
        UpdateAppInput(
            type="custom_invoicing", name="Ours", enable_draft_sync_hook=True, enable_issuing_sync_hook=issuing_hook
        ),
    )
    default = await env.profiles.get_default(ns)
    profile = await env.profiles.create(
        ns, ProfileCreateInput("Custom", default.supplier, ProfileApps(app.id, app.id, app.id))
    )
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(profile_id=profile.profile.id))
    return cid


async def test_custom_invoicing_waits_for_the_integrator(env: Env) -> None:
    ns = "inv_custom"
    cid = await custom_invoicing_customer(env, ns, "Globex")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "40")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    iid = made.invoice.id
    assert made.invoice.state is State.DRAFT_SYNCING
    # Out of order: issuing before the draft was synchronized, or a payment now.
    for early in (Action.ISSUING_SYNCHRONIZED, Action.PAYMENT_PAID):
        with pytest.raises(InvalidTransitionError):
            await env.invoices.app_callback(ns, iid, early)
    assert (await env.invoices.get(ns, iid)).invoice.state is State.DRAFT_SYNCING
    after_draft = await env.invoices.app_callback(ns, iid, Action.DRAFT_SYNCHRONIZED, invoicing_external_id="ext-1")
    assert after_draft.invoice.state is State.ISSUING_SYNCING
    with pytest.raises(InvalidTransitionError):
        await env.invoices.app_callback(ns, iid, Action.DRAFT_SYNCHRONIZED)
    issued = await env.invoices.app_callback(ns, iid, Action.ISSUING_SYNCHRONIZED, invoice_number="INV-7")
    # Custom invoicing collects nothing itself: the invoice waits for payment/status.
    assert issued.invoice.state is State.PAYMENT_PENDING and issued.invoice.number == "INV-7"
    assert issued.invoice.invoicing_external_id == "ext-1" and issued.invoice.issued_at is not None
    paid = await env.invoices.app_callback(ns, iid, Action.PAYMENT_PAID)
    assert paid.invoice.state is State.PAID and paid.invoice.totals.total == D(40)
    with pytest.raises(InvalidTransitionError):
        await env.invoices.app_callback(ns, iid, Action.PAYMENT_FAILED)


async def test_issuing_synchronized_without_a_number_issues_a_numbered_invoice(env: Env) -> None:
    # invoicing.invoiceNumber is optional in issuing/synchronized ("if set"). OpenMeter then numbers
    # the invoice itself (app/custominvoicing/app.go FinalizeStandardInvoice: a draft number is
    # replaced by one of its sequence once the hook is done): an issued invoice always has a number.
    ns = "inv_custom_unnumbered"
    cid = await custom_invoicing_customer(env, ns, "Initech")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "40")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    await env.invoices.app_callback(ns, made.invoice.id, Action.DRAFT_SYNCHRONIZED)
    issued = await env.invoices.app_callback(ns, made.invoice.id, Action.ISSUING_SYNCHRONIZED)
    assert issued.invoice.state is State.PAYMENT_PENDING and issued.invoice.issued_at is not None
    assert issued.invoice.number == "INV-INIT-1"
    # The next one takes the next number of the sequence.
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "5")]))
    (second,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    await env.invoices.app_callback(ns, second.invoice.id, Action.DRAFT_SYNCHRONIZED)
    again = await env.invoices.app_callback(ns, second.invoice.id, Action.ISSUING_SYNCHRONIZED, invoice_number="X-9")
    assert again.invoice.number == "X-9"
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "6")]))
    (third,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    await env.invoices.app_callback(ns, third.invoice.id, Action.DRAFT_SYNCHRONIZED)
    last = await env.invoices.app_callback(ns, third.invoice.id, Action.ISSUING_SYNCHRONIZED)
    assert last.invoice.number == "INV-INIT-2"


async def test_a_number_set_at_draft_sync_is_the_issued_invoices_number(env: Env) -> None:
    # draft/synchronized's invoicing.invoiceNumber is the integrator's number for the invoice. With
    # no issuing hook, OpenMeter issues it under that number: custom invoicing's
    # FinalizeStandardInvoice (app/custominvoicing/app.go) numbers only an invoice still carrying a
    # draft number. It must not be overwritten by one of Tally's own sequence.
    ns = "inv_custom_draft_number"
    cid = await custom_invoicing_customer(env, ns, "Umbrella", issuing_hook=False)
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "40")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    issued = await env.invoices.app_callback(ns, made.invoice.id, Action.DRAFT_SYNCHRONIZED, invoice_number="ERP-42")
    assert issued.invoice.state is State.PAYMENT_PENDING and issued.invoice.number == "ERP-42"


async def test_a_deleted_invoices_lines_go_back_without_its_app_ids_and_description(env: Env) -> None:
    """Deleting an invoice whose lines make a new gathering invoice (the customer has none left)
    does not pass on what belonged to the deleted invoice: the integrator's external ID (ext-1
    named the next invoice too, before its own draft/synchronized). OpenMeter makes the gathering
    invoice anew."""
    ns = "inv_delete_fresh_gathering"
    cid = await custom_invoicing_customer(env, ns, "Soylent")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "40")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    iid = made.invoice.id
    synced = await env.invoices.app_callback(ns, iid, Action.DRAFT_SYNCHRONIZED, invoicing_external_id="ext-1")
    assert synced.invoice.state is State.ISSUING_SYNCING and synced.invoice.invoicing_external_id == "ext-1"
    deleted = await env.invoices.act(ns, iid, Action.DELETE)
    assert deleted.invoice.state is State.DELETED
    (gathering,), _ = await env.invoices.list_invoices(ns, InvoiceListQuery(statuses=[InvoiceStatus.GATHERING]))
    assert gathering.invoice.invoicing_external_id is None and gathering.invoice.payment_external_id is None
    (again,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert again.invoice.state is State.DRAFT_SYNCING and again.invoice.invoicing_external_id is None


async def test_a_deleted_invoices_lines_go_back_without_their_app_ids(env: Env) -> None:
    """The integrator's IDs of a deleted invoice's lines (draft/synchronized's lineExternalIds)
    named lines of an invoice that no longer exists: back on the gathering invoice, and on the
    next invoice made from it, the lines carried erp-line-1 before the integrator synced them
    again. OpenMeter's gathering lines have no external IDs."""
    ns = "inv_delete_line_ids"
    cid = await custom_invoicing_customer(env, ns, "Tyrell")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "40")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (fee,) = [x for x in made.lines if x.parent_line_id is None]
    synced = await env.invoices.app_callback(
        ns, made.invoice.id, Action.DRAFT_SYNCHRONIZED, line_external_ids=[(fee.id, "erp-line-1")]
    )
    assert [x.invoicing_external_id for x in synced.lines if x.id == fee.id] == ["erp-line-1"]
    await env.invoices.act(ns, made.invoice.id, Action.DELETE)
    (gathering,), _ = await env.invoices.list_invoices(
        ns, InvoiceListQuery(statuses=[InvoiceStatus.GATHERING]), with_lines=True
    )
    assert [(x.id, x.invoicing_external_id) for x in gathering.lines] == [(fee.id, None)]
    (again,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert [x.invoicing_external_id for x in again.lines] == [None, None]  # the fee and its detailed line


async def test_a_late_usage_correction_does_not_carry_the_billed_lines_app_id(env: Env) -> None:
    """A late-usage correction is a line of its own on a new invoice: it carried the integrator's
    ID of the issued line it corrects (erp-line-1), so the integrator's sync of the correction
    invoice named the old invoice's line."""
    ns = "inv_late_line_ids"
    cid = await custom_invoicing_customer(env, ns, "Cyberdyne")
    env.usage.add("calls", cid, NOV + timedelta(days=2), "5")
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", UnitPrice(D(1)))])
    )
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    (calls,) = [x for x in made.lines if x.parent_line_id is None]
    iid = made.invoice.id
    await env.invoices.app_callback(ns, iid, Action.DRAFT_SYNCHRONIZED, line_external_ids=[(calls.id, "erp-line-1")])
    await env.invoices.app_callback(ns, iid, Action.ISSUING_SYNCHRONIZED)
    paid = await env.invoices.app_callback(ns, iid, Action.PAYMENT_PAID)
    assert paid.invoice.state is State.PAID and paid.invoice.totals.total == D(5)
    env.usage.add("calls", cid, NOV + timedelta(days=5), "3")  # stored after the invoice was issued
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 1
    (correction,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert correction.invoice.totals.total == D(3)
    assert {x.invoicing_external_id for x in correction.lines} == {None}


async def test_late_usage_of_a_draft_issued_after_the_window_is_still_billed(env: Env) -> None:
    """The late-usage window ran from the period's end only. A draft that waited longer than the
    window after its period ended (an integrator's sync here; a person's approval alike) was issued
    with what its snapshot read, and usage stored after the snapshot was never billed: found by
    test_subscription_billing_properties with manual approval (1.30 of api usage stored after a
    Dec 1 snapshot, approved in January). Its periods are now corrected within the window after
    the invoice was issued."""
    ns = "inv_late_after_a_long_draft"
    cid = await custom_invoicing_customer(env, ns, "Soylent")
    env.usage.add("calls", cid, NOV + timedelta(days=2), "5")
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", UnitPrice(D(1)))])
    )
    clock = [DEC + timedelta(hours=2)]
    service = InvoiceService(env.uow, env.profiles, env.customers, env.marketplace, env.usage, lambda: clock[0])
    (made,) = await service.invoice_now(ns, InvoiceNowInput(cid))
    env.usage.add("calls", cid, NOV + timedelta(days=29), "3")  # stored after the draft's snapshot
    clock[0] = datetime(2027, 1, 20, tzinfo=UTC)  # seven weeks later the draft is synced and issued
    await service.app_callback(ns, made.invoice.id, Action.DRAFT_SYNCHRONIZED)
    issued = await service.app_callback(ns, made.invoice.id, Action.ISSUING_SYNCHRONIZED)
    # Issued (overdue at once: its payment terms ran from the draft's collection in December).
    assert issued.invoice.state is State.OVERDUE and issued.invoice.totals.total == D(5)
    clock[0] += timedelta(days=1)
    assert await service.bill_late_usage(timedelta(days=7)) == 1
    (correction,) = await service.invoice_now(ns, InvoiceNowInput(cid))
    assert correction.invoice.totals.total == D(3)
    # And once corrected, a later pass finds nothing more to bill.
    assert await service.bill_late_usage(timedelta(days=7)) == 0


async def test_a_draft_update_keeps_the_integrators_ids_of_the_lines_it_keeps(env: Env) -> None:
    """PUT /invoices/{id} on a draft custom invoicing synced: a line kept by its ID keeps the
    integrator's ID for it (OpenMeter merges the update into the stored line), so the next
    draft/synchronized round updates the ERP's line instead of finding a line it never saw."""
    ns = "inv_put_keeps_line_ids"
    cid = await custom_invoicing_customer(env, ns, "Massive Dynamic")
    profile_id = (await env.profiles.effective_profile(ns, cid)).profile.id
    await env.profiles.upsert_override(
        ns, cid, OverrideUpsertInput(profile_id=profile_id, workflow=WorkflowPatch(auto_advance=False))
    )
    tenth_off = Discounts(percentage=D(10))
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [dataclasses.replace(flat("Fee", "40"), rate_card_discounts=tenth_off)])
    )
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (fee,) = [x for x in made.lines if x.parent_line_id is None]
    (off,) = fee.discounts
    synced = await env.invoices.app_callback(
        ns,
        made.invoice.id,
        Action.DRAFT_SYNCHRONIZED,
        line_external_ids=[(fee.id, "erp-line-1")],
        line_discount_external_ids=[(off.id, "erp-discount-1")],
    )
    assert synced.invoice.state is State.DRAFT_MANUAL_APPROVAL_NEEDED
    given = dataclasses.replace(flat("Fee", "50"), rate_card_discounts=tenth_off)
    updated = await env.invoices.update_lines(ns, made.invoice.id, [(fee.id, given)])
    assert updated.invoice.state is State.DRAFT_SYNCING and updated.invoice.totals.total == D(45)
    (kept,) = [x for x in updated.lines if x.parent_line_id is None]
    assert (kept.id, kept.invoicing_external_id) == (fee.id, "erp-line-1")
    assert [(d.id, d.invoicing_external_id) for d in kept.discounts] == [(off.id, "erp-discount-1")]


async def test_a_draft_rated_again_keeps_its_detailed_lines_ids_and_the_integrators(env: Env) -> None:
    """A detailed line a new rating gives again (same parent and component) keeps its ID, as
    OpenMeter's DetailedLinesWithIDReuse, and so the integrator's ID for it."""
    ns = "inv_put_keeps_child_ids"
    cid = await custom_invoicing_customer(env, ns, "Soylent")
    profile_id = (await env.profiles.effective_profile(ns, cid)).profile.id
    await env.profiles.upsert_override(
        ns, cid, OverrideUpsertInput(profile_id=profile_id, workflow=WorkflowPatch(auto_advance=False))
    )
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "40")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (fee,) = [x for x in made.lines if x.parent_line_id is None]
    (detail,) = [x for x in made.lines if x.parent_line_id == fee.id]
    await env.invoices.app_callback(
        ns, made.invoice.id, Action.DRAFT_SYNCHRONIZED, line_external_ids=[(detail.id, "erp-detail-1")]
    )
    updated = await env.invoices.update_lines(ns, made.invoice.id, [(fee.id, flat("Fee", "50"))])
    (again,) = [x for x in updated.lines if x.parent_line_id == fee.id]
    assert (again.id, again.invoicing_external_id, again.totals.total) == (detail.id, "erp-detail-1", D(50))


async def test_custom_invoicing_callbacks_refuse_an_invoice_of_another_app(env: Env) -> None:
    # The custom invoicing callbacks are for invoices its app invoices: OpenMeter checks the
    # invoice's invoicing app first (app/custominvoicing/service/sync.go ValidateInvoiceApp, a
    # validation error: 400) for draft/synchronized, issuing/synchronized and payment/status alike.
    # A sandbox invoice whose payment failed is not marked paid by a custom invoicing call.
    ns = "inv_custom_foreign"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "40")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (line,) = [x for x in made.lines if x.parent_line_id is None]
    await env.invoices.update_lines(
        ns, made.invoice.id, [(line.id, flat("Fee", "40"))], metadata={TARGET_PAYMENT_STATUS_KEY: "failed"}
    )
    failed = await env.invoices.act(ns, made.invoice.id, Action.APPROVE)
    assert failed.invoice.state is State.PAYMENT_FAILED
    for action in (Action.PAYMENT_PAID, Action.DRAFT_SYNCHRONIZED, Action.ISSUING_SYNCHRONIZED):
        with pytest.raises(ValidationError) as caught:
            await env.invoices.app_callback(ns, made.invoice.id, action)
        assert "custom invoicing" in str(caught.value)
    assert (await env.invoices.get(ns, made.invoice.id)).invoice.state is State.PAYMENT_FAILED


async def test_an_app_with_unfinished_invoices_cannot_be_uninstalled(env: Env) -> None:
    # An invoice keeps the apps it was made with until it is final. OpenMeter refuses to uninstall
    # an app a non-final invoice uses (billing/adapter/invoice.go IsAppUsed: 409), even once no
    # billing profile uses it any more: its integrator must still be able to finish the invoice.
    ns = "inv_uninstall_in_use"
    cid = await custom_invoicing_customer(env, ns, "Hooli")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "40")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert made.invoice.state is State.DRAFT_SYNCING
    profile_id = (await env.profiles.get_override(ns, cid)).profile.id
    await env.profiles.delete_override(ns, cid)
    await env.profiles.delete(ns, profile_id)
    with pytest.raises(ConflictError) as caught:
        await env.apps.uninstall(ns, made.invoice.invoicing_app_id)
    assert made.invoice.id in str(caught.value)
    # Once the invoice is final (deleted here), the app can go.
    await env.invoices.act(ns, made.invoice.id, Action.DELETE)
    await env.apps.uninstall(ns, made.invoice.invoicing_app_id)


async def test_simulate_rates_like_an_invoice_and_stores_nothing(env: Env) -> None:
    ns = "inv_simulate"
    cid = await customer(env, ns)
    api = dataclasses.replace(usage_line("API", "api", UnitPrice(D("0.015"))), quantity=D(1001))
    tokens = dataclasses.replace(usage_line("Tokens", "tokens", TIERED), quantity=D(150))
    sim = await env.invoices.simulate(ns, cid, PendingLinesInput("USD", [flat("Seats", "12.50", "2"), api, tokens]))
    # The same lines and quantities as test_invoice_now_totals_by_hand_and_sandbox_to_paid.
    assert sim.invoice.totals.total == D("57.52")
    top = {x.name: x for x in sim.lines if x.parent_line_id is None}
    assert top["Tokens"].totals.total == D("17.50") and top["API"].totals.total == D("15.02")
    assert len([x for x in sim.lines if x.parent_line_id == top["Tokens"].id]) >= 2
    assert await env.invoices.list_invoices(ns, InvoiceListQuery(include_deleted=True)) == ([], 0)


async def test_simulate_rates_a_line_after_its_pre_line_period_quantity(env: Env) -> None:
    # OpenMeter's InvoiceSimulationLine carries preLinePeriodQuantity, the usage billed before the
    # line in its period (openmeter/billing/httpdriver/invoiceline.go, mapSimulationLineToEntity).
    # 10 units after 150 fall in the second tier: 10 x 0.05 = 0.50, not 10 x 0.10 = 1.00, and the
    # second tier's 5.00 entry fee was charged by the line that entered it.
    ns = "inv_simulate_pre"
    cid = await customer(env, ns)
    tier = {"upToAmount": "100", "unitPrice": {"type": "unit", "amount": "0.1"}}
    body = {
        "currency": "USD",
        "lines": [
            {
                "name": "Tokens",
                "period": {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
                "invoiceAt": "2026-12-01T00:00:00Z",
                "quantity": "10",
                "preLinePeriodQuantity": "150",
                "rateCard": {
                    "featureKey": "tokens",
                    "price": {
                        "type": "tiered",
                        "mode": "graduated",
                        "tiers": [
                            tier,
                            {
                                "flatPrice": {"type": "flat", "amount": "5"},
                                "unitPrice": {"type": "unit", "amount": "0.05"},
                            },
                        ],
                    },
                },
            }
        ],
    }
    sim = await env.invoices.simulate(ns, cid, parse_pending_lines(body, simulation=True))
    (line,) = [x for x in sim.lines if x.parent_line_id is None]
    assert sim.invoice.totals.total == D("0.50")  # before: 1.00, rated as the period's first 10 units
    assert (line.quantity, line.pre_line_period_quantity) == (D(10), D(150))


async def test_totals_of_amounts_beyond_28_digits_are_exact(env: Env) -> None:
    # Amounts of up to 38 digits are accepted and rated exactly (rating.py's exact context); the
    # line and invoice totals made from them must not be rounded to the default context's 28
    # significant digits.
    ns = "inv_long_amounts"
    cid = await customer(env, ns)
    big = "12345678901234567890123456789.99"
    fee = dataclasses.replace(flat("Fee", big), rate_card_discounts=Discounts(percentage=D(10)))
    sim = await env.invoices.simulate(ns, cid, PendingLinesInput("USD", [fee, flat("Setup", "0.02")]))
    (line,) = [x for x in sim.lines if x.name == "Fee" and x.parent_line_id is None]
    assert (line.totals.amount, line.totals.discounts_total) == (D(big), D("1234567890123456789012345679.00"))
    # before: 11111111011111111101111111110 for both totals (0.99 and 1.01 short), and the
    # invoice's amount 12345678901234567890123456790 (0.01 short of the sum of its lines')
    assert line.totals.total == D("11111111011111111101111111110.99")
    assert sim.invoice.totals.total == D("11111111011111111101111111111.01")
    assert sim.invoice.totals.amount == D("12345678901234567890123456790.01")


# Graduated, with a first-tier flat fee: 10.00 to enter the period, then 1.00 a unit up to 100.
ENTRY_FEE = TieredPrice(TieredMode.GRADUATED, (PriceTier(D(100), D(10), D(1)), PriceTier(None, None, D("0.5"))))


async def test_a_periods_entry_fee_is_charged_once_after_a_void_and_by_late_usage(env: Env) -> None:
    # The first tier's flat fee is due once per period, charged by the line that starts it. Where a
    # line stands in the period does not tell: a correction after a period billed at zero usage
    # covers the whole period (it charged the fee again), and a line billed again after the
    # period's first invoice was voided starts mid-period (it charged nothing).
    ns = "inv_entry_void"
    cid = await custom_invoicing_customer(env, ns, "Globex")
    env.usage.add("calls", cid, NOV + timedelta(days=2), "3")
    env.usage.add("calls", cid, NOV + timedelta(days=20), "2")
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", ENTRY_FEE)])
    )
    (first,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=NOV + timedelta(days=15)))
    await env.invoices.app_callback(ns, first.invoice.id, Action.DRAFT_SYNCHRONIZED)
    issued = await env.invoices.app_callback(ns, first.invoice.id, Action.ISSUING_SYNCHRONIZED)
    assert issued.invoice.totals.total == D("13.00")  # the fee and 3 units
    # Billed again (test_invoice_void.py: the voided part goes back as a line of its own, rated
    # as the period's first; a discarded part counts as billed, entry fee and all).
    await env.invoices.void(ns, first.invoice.id, VoidInput("wrong contact", VoidAction(VoidLineAction.PENDING)))
    (again,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    parts = sorted((x for x in again.lines if x.parent_line_id is None), key=lambda x: x.period_start)
    assert [(x.quantity, x.pre_line_period_quantity, x.period_started) for x in parts] == [
        (D(3), D(0), False),
        (D(2), D(3), True),
    ]
    assert again.invoice.totals.total == D("15.00")  # before: 5.00, the fee lost with the void

    ns = "inv_entry_late"
    cid = await customer(env, ns)
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", ENTRY_FEE)])
    )
    (period,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    assert period.invoice.state is State.PAID and period.invoice.totals.total == D("10.00")  # no usage yet
    env.usage.add("calls", cid, NOV + timedelta(days=5), "5")  # stored after the invoice was issued
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 1
    (correction,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (line,) = [x for x in correction.lines if x.parent_line_id is None]
    assert line.period_started is True
    assert correction.invoice.totals.total == D("5.00")  # before: 15.00, the fee charged again


async def test_a_draft_update_adds_a_line_whose_id_is_not_the_invoices(env: Env) -> None:
    """PUT /invoices/{id}: a line with an ID that is not one of the invoice's is a new line (OpenMeter
    lets a client give new lines IDs of its own, not stored, for discounts to refer to); it was
    refused with 400 lines[1].id 'no such line on the invoice'."""
    ns = "inv_put_client_ids"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "9")]))
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (fee,) = [x for x in draft.lines if x.parent_line_id is None]
    client_id = "01M8VD9F2MBADBENGKDT3N58Z7"
    updated = await env.invoices.update_lines(
        ns, draft.invoice.id, [(fee.id, flat("Fee", "9")), (client_id, flat("Extra", "4"))]
    )
    top = {x.name: x for x in updated.lines if x.parent_line_id is None}
    assert set(top) == {"Fee", "Extra"} and top["Fee"].id == fee.id and top["Extra"].id != client_id
    assert updated.invoice.totals.total == D(13)


async def test_a_draft_update_replaces_its_description_and_metadata(env: Env) -> None:
    """PUT /invoices/{id} is a replace (OpenMeter's UpdateInvoice sets Description and Metadata
    from the body, a missing metadata as {}): a body without a description clears it, one with
    metadata {} clears that. They were kept, so neither could ever be removed."""
    ns = "inv_put_replace"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "9")]))
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (fee,) = [x for x in draft.lines if x.parent_line_id is None]
    described = await env.invoices.update_lines(
        ns, draft.invoice.id, [(fee.id, flat("Fee", "9"))], description="Q4", metadata={"po": "42"}
    )
    assert (described.invoice.description, dict(described.invoice.metadata)) == ("Q4", {"po": "42"})
    cleared = await env.invoices.update_lines(
        ns, draft.invoice.id, [(fee.id, flat("Fee", "9"))], description=None, metadata={}
    )
    assert (cleared.invoice.description, dict(cleared.invoice.metadata)) == (None, {})


async def test_a_draft_fee_replaced_by_a_usage_line_has_its_late_usage_billed(env: Env) -> None:
    """PUT /invoices/{id} turning a draft's flat fee into a usage line (same line ID) gives it a
    billing period of its own, as a new usage line gets: usage stored after the invoice was issued
    is billed by a correction. It had none (the fee's), so late usage was never billed."""
    ns = "inv_put_fee_to_usage"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    env.usage.add("calls", cid, NOV + timedelta(days=2), "5")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Calls", "9")]))
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    (fee,) = [x for x in draft.lines if x.parent_line_id is None]
    updated = await env.invoices.update_lines(
        ns, draft.invoice.id, [(fee.id, usage_line("Calls", "calls", UnitPrice(D(1))))]
    )
    assert updated.invoice.state is State.DRAFT_MANUAL_APPROVAL_NEEDED and updated.invoice.totals.total == D(5)
    paid = await env.invoices.act(ns, draft.invoice.id, Action.APPROVE)
    assert paid.invoice.state is State.PAID
    env.usage.add("calls", cid, NOV + timedelta(days=5), "3")  # stored after the invoice was issued
    await env.invoices.bill_late_usage(timedelta(days=30))
    (correction,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert correction.invoice.totals.total == D(3)


async def test_a_draft_usage_line_given_another_feature_is_billed_as_a_new_line(env: Env) -> None:
    """PUT /invoices/{id} giving a usage line another feature makes it a new line: its own billing
    period, not the rest of the old feature's. The second part of a progressively billed period of
    calls (5 billed on the first invoice) turned into images was billed as images less the 5
    calls billed before (8 images at 1.00 came to 3.00)."""
    ns = "inv_put_other_feature"
    cid = await customer(env, ns)
    env.usage.add("calls", cid, NOV + timedelta(days=2), "5")
    env.usage.add("images", cid, NOV + timedelta(days=20), "8")
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", UnitPrice(D(1)))])
    )
    (first,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=NOV + timedelta(days=15)))
    assert first.invoice.totals.total == D(5)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    (rest,) = [x for x in draft.lines if x.parent_line_id is None]
    # A price change keeps the line's billing period: the 5 calls billed before still count.
    dearer = usage_line("Calls", "calls", UnitPrice(D(2)), start=NOV + timedelta(days=15))
    repriced = await env.invoices.update_lines(ns, draft.invoice.id, [(rest.id, dearer)])
    (line,) = [x for x in repriced.lines if x.parent_line_id is None]
    assert (line.quantity, line.pre_line_period_quantity) == (D(0), D(5))
    images = usage_line("Images", "images", UnitPrice(D(1)), start=NOV + timedelta(days=15))
    updated = await env.invoices.update_lines(ns, draft.invoice.id, [(rest.id, images)])
    (line,) = [x for x in updated.lines if x.parent_line_id is None]
    assert (line.quantity, line.pre_line_period_quantity or D(0)) == (D(8), D(0))
    assert updated.invoice.totals.total == D(8)


async def november_billed(env: Env, ns: str, line: PendingLineInput, calls: str | None) -> tuple[str, InvoiceWithLines]:
    """A new customer whose `calls` on Nov 3 (None: no usage) are billed by `line`, a usage line
    for November, invoiced whole on Dec 1: the customer and the invoice."""
    cid = await customer(env, ns)
    if calls is not None:
        env.usage.add("calls", cid, NOV + timedelta(days=2), calls)
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [line]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    return cid, made


async def test_late_usage_that_charges_nothing_makes_no_correction_invoice(env: Env) -> None:
    # A period capped by its maximum spend: 30 calls at 1.00 billed 20.00. Five more calls stored
    # after the invoice was issued would cost nothing (the cap), and made an invoice of 0.00 (5.00
    # charged, 5.00 discounted) that the customer received anyway. Late usage that does charge is
    # rated on top of all of it, so leaving the free part out changes no later amount.
    ns = "inv_late_capped"
    capped = UnitPrice(D(1), Commitments(maximum_amount=D(20)))
    cid, made = await november_billed(env, ns, usage_line("Calls", "calls", capped), "30")
    assert made.invoice.state is State.PAID and made.invoice.totals.total == D(20)
    env.usage.add("calls", cid, NOV + timedelta(days=5), "5")
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 0  # before: 1, rated to 0.00
    assert (await env.invoices.list_invoices(ns, InvoiceListQuery(customers=[cid])))[1] == 1

    # Inside a free allowance (100 calls free, 70 billed, 20 late): nothing; past it, the whole
    # late usage since the last invoice is rated on top of the 70 billed (110 in all: 10 charged).
    ns = "inv_late_free"
    free = dataclasses.replace(
        usage_line("Calls", "calls", UnitPrice(D("0.05"))), rate_card_discounts=Discounts(usage_quantity=D(100))
    )
    cid, _ = await november_billed(env, ns, free, "70")
    env.usage.add("calls", cid, NOV + timedelta(days=3), "20")
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 0
    env.usage.add("calls", cid, NOV + timedelta(days=4), "20")
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 1
    (correction,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (line,) = [x for x in correction.lines if x.parent_line_id is None]
    assert (line.quantity, line.pre_line_period_quantity) == (D(40), D(70))
    assert correction.invoice.totals.total == D("0.50")


async def test_late_usage_under_volume_tiers_is_billed_as_the_difference_of_the_period_totals(env: Env) -> None:
    # A volume-tiered price rates the period's total at one tier, so late usage is worth what the
    # new total costs more than the billed one (it used to make no correction at all: that usage was
    # never billed). Tier 1: up to 100 at 1.00 plus 5.00; tier 2: above, 0.80 (or 0.50), no flat price.
    def volume(above: str) -> TieredPrice:
        return TieredPrice(TieredMode.VOLUME, (PriceTier(D(100), D(5), D(1)), PriceTier(None, None, D(above))))

    async def billed(ns: str, price: TieredPrice, calls: str | None) -> tuple[str, Decimal]:
        """A customer's period of `calls` billed whole: (customer, invoice total)."""
        cid, made = await november_billed(env, ns, usage_line("Calls", "calls", price), calls)
        return cid, made.invoice.totals.total

    async def late(ns: str, cid: str, day: int, calls: str) -> tuple[Decimal, Decimal, Decimal] | None:
        """`calls` stored late: the correction's (quantity, quantity billed before, total), if any."""
        env.usage.add("calls", cid, NOV + timedelta(days=day), calls)
        if not await env.invoices.bill_late_usage(timedelta(days=30)):
            return None
        (invoice,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
        (line,) = [x for x in invoice.lines if x.parent_line_id is None]
        assert line.quantity is not None and line.pre_line_period_quantity is not None
        return line.quantity, line.pre_line_period_quantity, invoice.invoice.totals.total

    cid, total = await billed("inv_late_volume", volume("0.80"), "60")
    assert total == D(65)  # 5.00 + 60 x 1.00
    assert await late("inv_late_volume", cid, 5, "20") == (D(20), D(60), D(20))  # 80 in tier 1: 85.00 - 65.00
    assert await late("inv_late_volume", cid, 6, "40") == (D(40), D(80), D(11))  # 120 in tier 2: 96.00 - 85.00

    # A total that costs less than was billed makes no correction: giving money back needs a credit
    # note. Late usage that costs more again is rated against what was billed.
    cid, total = await billed("inv_late_volume_cheaper", volume("0.50"), "100")
    assert total == D(105)
    assert await late("inv_late_volume_cheaper", cid, 5, "10") is None  # 110 x 0.50 = 55.00 < 105.00
    assert await late("inv_late_volume_cheaper", cid, 6, "200") == (D(210), D(100), D(50))  # 155.00 - 105.00

    # A period billed at no usage charged its tier's flat price: a correction does not charge it again.
    cid, total = await billed("inv_late_volume_from_zero", volume("0.80"), None)
    assert total == D(5)
    assert await late("inv_late_volume_from_zero", cid, 5, "10") == (D(10), D(0), D(10))  # 15.00 - 5.00


async def test_late_usage_under_a_minimum_spend_is_billed_above_the_minimum_already_charged(env: Env) -> None:
    # 5 calls at 1.00 under a 20.00 minimum: the period's invoice charged 5.00 and a 15.00
    # shortfall. Late calls were never billed (no corrections under a minimum spend): 40 calls were
    # invoiced 20.00. Now the late usage is rated above the minimum already charged: 10 late calls
    # cost nothing more (15.00 in all, covered), 10 more make the period 25.00 (a correction of 5.00,
    # one item), 20 more 45.00 (20.00, as usual). 45.00 in all, what one invoice of the 45 calls
    # charges, and never the shortfall a second time.
    ns = "inv_late_minimum"
    floored = UnitPrice(D(1), Commitments(minimum_amount=D(20)))
    cid, made = await november_billed(env, ns, usage_line("Calls", "calls", floored), "5")
    assert (made.invoice.totals.amount, made.invoice.totals.charges_total) == (D(5), D(15))

    async def late(day: int, calls: str) -> list[tuple[str | None, Decimal, Decimal]] | None:
        """`calls` stored late: the correction's detailed lines (key, quantity, amount), if one is made."""
        env.usage.add("calls", cid, NOV + timedelta(days=day), calls)
        if not await env.invoices.bill_late_usage(timedelta(days=30)):
            return None
        (invoice,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
        (line,) = [x for x in invoice.lines if x.parent_line_id is None]
        assert line.metadata.get("tally.correction") == "late_usage" and line.period_closed
        assert invoice.invoice.totals.charges_total == 0  # no shortfall charged again
        return [(x.child_key, x.quantity or D(0), x.totals.total) for x in invoice.lines if x.parent_line_id]

    assert await late(5, "10") is None
    assert await late(6, "10") == [("min-spend-late-usage", D(1), D(5))]
    assert await late(7, "20") == [("unit-price-usage", D(20), D(20))]
    invoices, count = await env.invoices.list_invoices(ns, InvoiceListQuery(customers=[cid]))
    assert count == 3 and sum((i.invoice.totals.total for i in invoices), D(0)) == D(45)


async def test_a_line_rated_to_nothing_keeps_its_quantity_snapshot(env: Env) -> None:
    # 70 calls, all free under the rate card's usage discount: the line rates to 0.00 with no
    # detailed lines, as it stood on the gathering invoice. Its snapshot must still be stored: it
    # is what the period key billed, which late-usage checks compare the stored usage with.
    ns = "inv_free_snapshot"
    cid = await customer(env, ns)
    env.usage.add("calls", cid, NOV + timedelta(days=2), "70")
    line = dataclasses.replace(
        usage_line("Calls", "calls", UnitPrice(D("0.05"))), rate_card_discounts=Discounts(usage_quantity=D(100))
    )
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [line]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    assert made.invoice.state is State.PAID and made.invoice.totals.total == D(0)
    (billed,) = made.lines
    # before: None, None (the snapshot was dropped because the rating equalled the gathering line's)
    assert (billed.quantity, billed.pre_line_period_quantity) == (D(70), D(0))
    # No usage came late, so there is nothing to correct. Before: a correction line for the period
    # (70 stored > 0 billed), rated to nothing and dropped the same way, made again on every pass.
    await env.invoices.bill_late_usage(timedelta(days=30))
    assert (await env.invoices.list_invoices(ns, InvoiceListQuery(customers=[cid])))[1] == 1


async def test_a_flat_fee_line_takes_its_rate_cards_percentage_discount(env: Env) -> None:
    ns = "inv_flat_discount"
    cid = await customer(env, ns)
    onboarding = dataclasses.replace(flat("Onboarding", "100"), rate_card_discounts=Discounts(percentage=D(10)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [onboarding]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (line,) = [x for x in made.lines if x.parent_line_id is None]
    assert (line.totals.amount, line.totals.discounts_total, line.totals.total) == (D(100), D(10), D(90))
    assert [(d.reason, d.amount) for d in line.discounts] == [(DiscountReason.RATECARD_PERCENTAGE, D(10))]
    assert made.invoice.totals.total == D(90)  # before: 100, the discount dropped


async def test_a_flat_fee_line_is_detailed_by_its_flat_price_line(env: Env) -> None:
    # OpenMeter rates a flat fee like any line: one detailed "flat-price" line (quantity, per-unit
    # amount, the fee's payment term and its discount) under it, which is what invoicing apps sync
    # (billing/rating/service/rate/flat.go; test/billing/invoice_test.go requireDetailedLines(flatFee,
    # flat-price: 1 x 100)). The children of every line then add up to the invoice.
    ns = "inv_flat_detailed"
    cid = await customer(env, ns)
    onboarding = dataclasses.replace(flat("Onboarding", "100"), rate_card_discounts=Discounts(percentage=D(10)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [onboarding, flat("Seats", "2.5", "3")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert made.invoice.totals.total == D("97.50")
    shown = {x["name"]: x for x in invoice_json(env.invoices, made)["lines"]}
    details = {
        name: [
            (
                c["name"],
                c["quantity"],
                c["perUnitAmount"],
                c["paymentTerm"],
                c["totals"]["amount"],
                c["totals"]["total"],
            )
            for c in line["children"]
        ]
        for name, line in shown.items()
    }
    assert details == {
        "Onboarding": [("Onboarding", "1", "100", "in_advance", "100", "90")],
        "Seats": [("Seats", "3", "2.5", "in_advance", "7.5", "7.5")],
    }
    (child,) = shown["Onboarding"]["children"]
    assert [(d["reason"]["type"], d["amount"]) for d in child["discounts"]["amount"]] == [("ratecard_percentage", "10")]
    assert sum(D(c["totals"]["total"]) for x in shown.values() for c in x["children"]) == made.invoice.totals.total


async def test_a_percentage_discounts_reason_says_its_percentage(env: Env) -> None:
    # OpenMeter's DiscountReasonRatecardPercentage requires `percentage` (openmeter-openapi.yaml;
    # billing/httpdriver/invoiceline.go mapDiscountReasonToAPI): a client reading why 10.00 came off
    # must find the 10 %, on a flat fee line and on a usage line's detailed lines alike.
    ns = "inv_pct_reason"
    cid = await customer(env, ns)
    env.usage.add("calls", cid, NOV + timedelta(days=2), "50")
    onboarding = dataclasses.replace(flat("Onboarding", "100"), rate_card_discounts=Discounts(percentage=D("12.5")))
    calls = dataclasses.replace(usage_line("Calls", "calls", UnitPrice(D(1))), rate_card_discounts=Discounts(D(10)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [onboarding, calls]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=1)))
    shown = {x["name"]: x for x in invoice_json(env.invoices, made)["lines"]}
    # Each with its correlation ID (OpenMeter's UpsertDiscountCorrelationIDs gives every line's one).
    assert [d["reason"].pop("correlationId") for d in shown["Onboarding"]["discounts"]["amount"]]
    assert [d["reason"] for d in shown["Onboarding"]["discounts"]["amount"]] == [
        {"type": "ratecard_percentage", "percentage": 12.5}
    ]
    (child,) = shown["Calls"]["children"]
    assert [d["reason"].pop("correlationId") for d in child["discounts"]["amount"]]
    assert [(d["reason"], d["amount"]) for d in child["discounts"]["amount"]] == [
        ({"type": "ratecard_percentage", "percentage": 10.0}, "5")
    ]
    # Listed where it was taken, once: not again on the usage line (OpenMeter's InvoiceLine lists
    # only usage discounts), so a client adding up listed discounts gets 5, not 10.
    assert not shown["Calls"]["discounts"].get("amount")


async def test_a_maximum_spend_discount_says_what_it_caps(env: Env) -> None:
    # OpenMeter describes the discount that caps a line at its maximum spend, "Maximum spend
    # discount for charges over <the maximum, rounded to the currency>" (billing/rating/detailedline.go
    # AddDiscountForOverage; tieredgraduated_test.go "... over 170"): 50 calls at 1.00 capped at 20.
    ns = "inv_max_description"
    cid = await customer(env, ns)
    env.usage.add("calls", cid, NOV + timedelta(days=2), "50")
    capped = usage_line("Calls", "calls", UnitPrice(D(1), Commitments(maximum_amount=D("20.004"))))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [capped]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=1)))
    assert made.invoice.totals.total == D(20)
    (line,) = invoice_json(env.invoices, made)["lines"]
    (child,) = line["children"]
    assert [(d["reason"], d["amount"], d.get("description")) for d in child["discounts"]["amount"]] == [
        ({"type": "maximum_spend"}, "30", "Maximum spend discount for charges over 20")
    ]


async def test_an_in_arrears_flat_fee_line_shows_its_payment_term(env: Env) -> None:
    # A manual flat line posted with paymentTerm in_arrears: its line's price says so, as the
    # request did (OpenMeter keeps the line's FlatPrice with its term), not the in_advance default.
    ns = "inv_flat_term"
    cid = await customer(env, ns)
    body = {
        "currency": "USD",
        "lines": [
            {
                "name": f"Support {term}",
                "period": {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
                "invoiceAt": "2026-12-01T00:00:00Z",
                "rateCard": {"price": {"type": "flat", "amount": "20", "paymentTerm": term}},
            }
            for term in ("in_arrears", "in_advance")
        ],
    }
    await env.invoices.create_pending_lines(ns, cid, parse_pending_lines(body))
    (gathering,), _ = await env.invoices.list_invoices(
        ns, InvoiceListQuery(statuses=[InvoiceStatus.GATHERING]), with_lines=True
    )
    shown = {x["name"]: x["price"]["paymentTerm"] for x in lines_rest(gathering.lines)}
    assert shown == {"Support in_arrears": "in_arrears", "Support in_advance": "in_advance"}


@pytest.mark.parametrize(
    ("price", "totals"),
    [
        # 10 calls in each half of November at 1.00: 20.00 in all.
        (UnitPrice(D(1)), (D(10), D(10))),
        # The first 10 calls of the period free, then 1.00: the first half is the free one.
        (TieredPrice(TieredMode.GRADUATED, (PriceTier(D(10), None, D(0)), PriceTier(None, None, D(1)))), (D(0), D(10))),
    ],
)
async def test_an_earlier_part_rated_again_after_a_later_one_is_billed_keeps_its_usage(
    env: Env, price: UnitPrice | TieredPrice, totals: tuple[D, D]
) -> None:
    # Progressive billing with manual approval: the draft of Nov 1-15 waits while the rest of
    # November is invoiced. Editing that first draft afterwards reads its usage again; it must still
    # bill its own 10 calls at their place in the period (calls 1-10), not 10 - 10 billed later = 0
    # (the period then billed 10 of 20 calls), nor the later part's place (calls 11-20).
    ns = f"inv_reread_{type(price).__name__.lower()}"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    mid = NOV + timedelta(days=15)
    env.usage.add("calls", cid, NOV + timedelta(days=2), "10")
    env.usage.add("calls", cid, NOV + timedelta(days=20), "10")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", price)]))
    (first,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=mid))
    (second,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2)))
    (line,) = [x for x in first.lines if x.parent_line_id is None]
    edited = await env.invoices.update_lines(
        ns, first.invoice.id, [(line.id, dataclasses.replace(usage_line("Calls", "calls", price), period_end=mid))]
    )
    (again,) = [x for x in edited.lines if x.parent_line_id is None]
    assert again.quantity_snapshotted_at is not None and again.quantity_snapshotted_at > line.quantity_snapshotted_at
    assert (again.quantity, again.pre_line_period_quantity) == (D(10), D(0))
    assert (edited.invoice.totals.total, second.invoice.totals.total) == totals


async def test_a_payment_callback_owes_its_invoice_notification(env: Env) -> None:
    # The integrator's payment/status call moves the invoice (here to paid) in its own
    # transaction: that write owes invoice.updated like every other move, so a process that dies
    # after the commit (here: the CLI's service, no listeners) leaves it for the worker to tell.
    ns = "inv_custom_callback_owed"
    cid = await custom_invoicing_customer(env, ns, "Hooli")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "40")]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    iid = made.invoice.id
    await env.invoices.app_callback(ns, iid, Action.DRAFT_SYNCHRONIZED)
    await env.invoices.app_callback(ns, iid, Action.ISSUING_SYNCHRONIZED)
    async with env.uow() as tx:
        owed = await tx.invoices.owed_notifications(ns, [iid])
        await tx.invoices.clear_owed_notifications(ns, {iid: owed[iid].since})
        await tx.commit()
    async with env.uow() as tx:
        assert await tx.invoices.owed_notifications(ns, [iid]) == {}
    paid = await env.invoices.app_callback(ns, iid, Action.PAYMENT_PAID)
    assert paid.invoice.state is State.PAID
    async with env.uow() as tx:
        owed = await tx.invoices.owed_notifications(ns, [iid])
    assert iid in owed


async def test_a_draft_update_moves_the_invoices_period_and_collection_with_its_lines(env: Env) -> None:
    """PUT /invoices/{id}: the invoice's period and collection time follow its lines, as
    OpenMeter's calculator recomputes them on every calculation of a draft
    (invoicecalc/period.go CalculateStandardInvoiceServicePeriod, invoicecalc/collectionat.go
    StandardInvoiceCollectionAt). Both stayed as the invoice was created: a line added for an
    earlier month was outside the invoice's period, and a usage line whose period had not ended
    was snapshotted at the old collection time, billing the part of its usage stored so far."""
    ns = "inv_put_period"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Fee", "9")]))
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert (draft.invoice.period_start, draft.invoice.period_end) == (NOV, DEC)
    (fee,) = [x for x in draft.lines if x.parent_line_id is None]
    oct_1 = datetime(2026, 10, 1, tzinfo=UTC)
    october = PendingLineInput("October", oct_1, NOV, NOV, per_unit_amount=D(4), quantity=D(1))
    widened = await env.invoices.update_lines(ns, draft.invoice.id, [(fee.id, flat("Fee", "9")), (None, october)])
    assert (widened.invoice.period_start, widened.invoice.period_end) == (oct_1, DEC)
    (kept,) = [x for x in widened.lines if x.parent_line_id is None and x.name == "Fee"]
    narrowed = await env.invoices.update_lines(ns, draft.invoice.id, [(kept.id, flat("Fee", "9"))])
    assert (narrowed.invoice.period_start, narrowed.invoice.period_end) == (NOV, DEC)

    # A usage line whose period ends next year: the draft waits for its collection (an hour, the
    # default collection interval, after the line's period ends) before reading its usage.
    jan = datetime(2027, 1, 1, tzinfo=UTC)
    feb = datetime(2027, 2, 1, tzinfo=UTC)
    env.usage.add("calls", cid, jan + timedelta(days=1), "5")
    upcoming = PendingLineInput("Calls", jan, feb, feb, price=UnitPrice(D(1)), feature_key="calls")
    waiting = await env.invoices.update_lines(ns, draft.invoice.id, [(kept.id, flat("Fee", "9")), (None, upcoming)])
    assert waiting.invoice.state is State.DRAFT_WAITING_FOR_COLLECTION
    assert waiting.invoice.collection_at == feb + timedelta(hours=1)
    assert (waiting.invoice.period_start, waiting.invoice.period_end) == (NOV, feb)


async def test_simulate_shows_the_dates_and_number_openmeter_calculates(env: Env) -> None:
    """POST /customers/{id}/invoices/simulate runs OpenMeter's whole invoice calculation
    (openmeter/billing/service/invoice.go SimulateInvoice: Calculate, so StandardInvoiceCollectionAt,
    CalculateDraftUntil and CalculateDueAt) and numbers the invoice INV-SIMULATED unless the
    request gives a number. Tally's had no collectionAt, draftUntil nor dueAt, and a DRAFT- number."""
    ns = "inv_simulate_dates"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(
        ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(draft_period="P1D", due_after="P7D"))
    )
    api = dataclasses.replace(usage_line("API", "api", UnitPrice(D("0.015"))), quantity=D(10))
    sim = await env.invoices.simulate(ns, cid, PendingLinesInput("USD", [flat("Seats", "12.50", "2"), api]))
    inv = sim.invoice
    assert inv.number == "INV-SIMULATED"
    # The usage line's end (December 1st) plus the default collection interval (PT1H).
    assert inv.collection_at == DEC + timedelta(hours=1)
    # Automatic approval: the draft period runs from the later of creation and collection.
    start = max(inv.collection_at, inv.created_at)
    assert inv.draft_until == start + timedelta(days=1)
    assert inv.due_at == (inv.draft_until + timedelta(days=7)).replace(microsecond=0)


async def test_invoice_now_takes_a_line_once_its_invoice_at_has_come(env: Env) -> None:
    """A line is billed at its invoiceAt, not as soon as its period has ended: OpenMeter bills a
    flat price once invoiceAt <= asOf (openmeter/billing/rating/service/rate/flat.go
    ResolveBillablePeriod) and, without progressive billing, keeps every line whose invoiceAt is
    after asOf on the gathering invoice (openmeter/billing/service/gatheringinvoicependinglines.go
    gatherInScopeLines). Tally took any line whose period had ended, so a fee due next month was
    invoiced with today's."""
    ns = "inv_now_invoice_at"
    cid = await customer(env, ns)
    jan = datetime(2027, 1, 1, tzinfo=UTC)
    later_fee = PendingLineInput("Support", NOV, DEC, jan, per_unit_amount=D(7), quantity=D(1))
    env.usage.add("calls", cid, NOV + timedelta(days=2), "5")
    later_usage = PendingLineInput("Calls", NOV, DEC, jan, price=UnitPrice(D(1)), feature_key="calls")
    gathered, lines, _ = await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [flat("Setup", "10"), later_fee, later_usage])
    )
    setup = lines[0]
    for progressive in (False, None):
        with pytest.raises(ValidationError):
            # Listed, a line not due yet is refused (OpenMeter's ErrInvoiceLinesNotBillable).
            await env.invoices.invoice_now(
                ns, InvoiceNowInput(cid, line_ids=[lines[1].id], progressive_billing_override=progressive)
            )
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, progressive_billing_override=False))
    assert [x.id for x in made.lines if x.parent_line_id is None] == [setup.id]
    assert made.invoice.totals.total == D(10)
    found = await env.invoices.get(ns, gathered.invoice.id)
    waiting = sorted(x.name for x in found.lines if x.parent_line_id is None and x.deleted_at is None)
    assert waiting == ["Calls", "Support"]
    assert found.invoice.collection_at == jan
    # With progressive billing, usage of an ended period is billable before its invoiceAt
    # (rate/base.go ProgressiveBillingMeteredPricer); the fee still waits.
    (usage,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert [x.name for x in usage.lines if x.parent_line_id is None] == ["Calls"]
    assert usage.invoice.totals.total == D(5)


async def test_pending_line_times_are_whole_seconds(env: Env) -> None:
    """A line's period and invoiceAt are kept to the second, as OpenMeter's API reads them
    (openmeter/billing/httpdriver/invoiceline.go truncates them to
    streaming.MinimumWindowSizeDuration, a second): the line was kept and shown with the request's
    fractions, so it did not cover what the meter query of its period (whole seconds) covers."""
    ns = "inv_pending_seconds"
    cid = await customer(env, ns)
    body = {
        "currency": "USD",
        "lines": [
            {
                "name": "Setup",
                "period": {"from": "2026-11-01T00:00:00.750Z", "to": "2026-12-01T00:00:00.250Z"},
                "invoiceAt": "2026-11-01T00:00:00.999Z",
                "rateCard": {"price": {"type": "flat", "amount": "10"}},
            }
        ],
    }
    _, (line,), _ = await env.invoices.create_pending_lines(ns, cid, parse_pending_lines(body))
    assert (line.period_start, line.period_end, line.invoice_at) == (NOV, DEC, NOV)


@pytest.mark.parametrize("batched", [True, False])
async def test_anchored_collection_alignment_collects_at_the_anchor(env: Env, batched: bool) -> None:
    """collection.alignment `anchored`: a gathering invoice is collected at the first anchor at or
    after its earliest line's invoiceAt, and the collection takes the lines due by the latest
    anchor, not by now (openmeter/billing/service/invoicecalc/collectionat.go
    calculateGatheringInvoiceNextCollectionAt; gatheringinvoicependinglines.go
    resolvePendingLineCollectionCutoff, which invoice-now through the API bypasses). Tally ignored
    the alignment: each line was collected as soon as it was due."""
    ns = f"inv_anchored_{batched}".lower()
    cid = await customer(env, ns)
    now = datetime.now(UTC).replace(microsecond=0)
    anchor = now - timedelta(hours=1)  # daily anchors: one an hour ago, the next in 23 hours
    await env.profiles.upsert_override(
        ns,
        cid,
        OverrideUpsertInput(
            workflow=WorkflowPatch(alignment=Alignment.ANCHORED, recurring_period=RecurringPeriod("P1D", anchor))
        ),
    )
    before = PendingLineInput("Before", NOV, DEC, now - timedelta(hours=2), per_unit_amount=D(1), quantity=D(1))
    gathered, _, _ = await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [before]))
    assert gathered.invoice.collection_at == anchor
    after = PendingLineInput("After", NOV, DEC, now - timedelta(minutes=30), per_unit_amount=D(2), quantity=D(1))
    gathered, _, _ = await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [after]))
    assert gathered.invoice.collection_at == anchor
    if batched:
        done = await env.invoices.collect_batch(ns, [gathered.invoice], now)
        (made,) = done.made[gathered.invoice.id]
    else:
        (made,) = await env.invoices.collect(gathered.invoice, now)
    invoice = await env.invoices.get(ns, made)
    assert [x.name for x in invoice.lines if x.parent_line_id is None] == ["Before"]
    rest = await env.invoices.get(ns, gathered.invoice.id)
    assert [x.name for x in rest.lines if x.parent_line_id is None] == ["After"]
    assert rest.invoice.collection_at == anchor + timedelta(days=1)
    # Invoice-now through the API bypasses the alignment: the line due half an hour ago is billed.
    (now_made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    assert [x.name for x in now_made.lines if x.parent_line_id is None] == ["After"]


async def test_a_late_snapshot_does_not_push_the_draft_period_or_due_date(env: Env) -> None:
    """With automatic approval the draft period runs from the later of the invoice's creation and
    its collection time (openmeter/billing/service/invoicecalc/draftuntil.go CalculateDraftUntil),
    and the due date dueAfter past that (dueat.go). A billing worker that snapshots the quantities
    after the collection time (a pass later, or down for a while) moved both by its lag: Tally ran
    the draft period from the snapshot."""
    ns = "inv_late_snapshot_dates"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(
        ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(draft_period="P1D", due_after="P7D"))
    )
    env.usage.add("calls", cid, NOV + timedelta(days=2), "5")
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", UnitPrice(D(1)))])
    )
    clock = [DEC + timedelta(minutes=10)]
    service = InvoiceService(env.uow, env.profiles, env.customers, env.marketplace, env.usage, lambda: clock[0])
    (draft,) = await service.invoice_now(ns, InvoiceNowInput(cid))
    collection_at = DEC + timedelta(hours=1)
    assert draft.invoice.state is State.DRAFT_WAITING_FOR_COLLECTION
    assert draft.invoice.collection_at == collection_at
    clock[0] = DEC + timedelta(hours=3)  # the worker's pass comes two hours late
    await service.advance_due(ns, draft.invoice.id)
    found = await service.get(ns, draft.invoice.id)
    assert found.invoice.state is State.DRAFT_WAITING_AUTO_APPROVAL
    assert found.invoice.totals.total == D(5)
    assert found.invoice.draft_until == collection_at + timedelta(days=1)
    assert found.invoice.due_at == collection_at + timedelta(days=8)


async def test_a_progressive_split_is_cut_at_a_whole_second(env: Env) -> None:
    """Invoice-now with progressive billing cuts a usage line at asOf (now by default) to the
    second, as OpenMeter resolves the billable period with asOf truncated to
    streaming.MinimumWindowSizeDuration (openmeter/billing/rating/service/rate/base.go
    ProgressiveBillingMeteredPricer). Tally cut at the microsecond, so the two parts' periods did
    not fall on the whole seconds the meter query reads."""
    ns = "inv_split_seconds"
    cid = await customer(env, ns)
    now = datetime.now(UTC)
    start = (now - timedelta(days=1)).replace(microsecond=0)
    end = (now + timedelta(days=10)).replace(microsecond=0)
    env.usage.add("calls", cid, now - timedelta(hours=1), "4")
    running = PendingLineInput("Calls", start, end, end, price=UnitPrice(D(1)), feature_key="calls")
    gathered, _, _ = await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [running]))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    (billed,) = [x for x in made.lines if x.parent_line_id is None]
    assert billed.period_end.microsecond == 0 and billed.invoice_at == billed.period_end
    assert made.invoice.state is State.DRAFT_WAITING_FOR_COLLECTION  # for late events, an hour
    rest = await env.invoices.get(ns, gathered.invoice.id)
    (kept,) = [x for x in rest.lines if x.parent_line_id is None]
    assert kept.period_start == billed.period_end and kept.period_end == end


async def test_an_invoices_lines_are_answered_by_name_then_period(env: Env) -> None:
    """The API answers an invoice's lines by name, then period start, then ID, as OpenMeter sorts
    them before answering (MapStandardInvoiceToAPI's invoice.SortLines,
    openmeter/billing/stdinvoiceline.go StandardLines.Sort). Tally answered them in the order
    they were made."""
    ns = "inv_line_order"
    cid = await customer(env, ns)
    await env.profiles.upsert_override(ns, cid, OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    oct_1 = datetime(2026, 10, 1, tzinfo=UTC)
    lines = [
        flat("Zeta", "1"),
        flat("Alpha", "2"),
        PendingLineInput("Alpha", oct_1, NOV, NOV, per_unit_amount=D(3), quantity=D(1)),
        flat("Beta", "4"),
    ]
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", lines))
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid))
    body = invoice_json(env.invoices, made)
    answered = [(x["name"], x["period"]["from"], x["totals"]["total"]) for x in body["lines"]]
    assert answered == [
        ("Alpha", "2026-10-01T00:00:00Z", "3"),
        ("Alpha", "2026-11-01T00:00:00Z", "2"),
        ("Beta", "2026-11-01T00:00:00Z", "4"),
        ("Zeta", "2026-11-01T00:00:00Z", "1"),
    ]


async def test_a_deleted_customers_late_usage_makes_no_invoice(env: Env) -> None:
    """Usage stored after a deleted customer's last invoice was paid made a correction line on a
    new gathering invoice for the deleted customer, which the worker then invoiced: 3 calls
    billed to a customer who no longer exists. OpenMeter never bills a deleted customer again
    (its customer delete requires every invoice final, and it makes no late-usage lines)."""
    ns = "inv_late_deleted"
    cid = await customer(env, ns)
    live = (await env.customers.create(ns, CustomerInput(name="Globex", key="globex"))).id
    made = {}
    for each in (cid, live):
        env.usage.add("calls", each, NOV + timedelta(days=2), "5")
        await env.invoices.create_pending_lines(
            ns, each, PendingLinesInput("USD", [usage_line("Calls", "calls", UnitPrice(D(1)))])
        )
        (made[each],) = await env.invoices.invoice_now(ns, InvoiceNowInput(each, as_of=DEC + timedelta(hours=2)))
        assert made[each].invoice.state is State.PAID and made[each].invoice.totals.total == D(5)
        env.usage.add("calls", each, NOV + timedelta(days=5), "3")  # stored after the invoice was paid
    await env.customers.delete(ns, cid)
    # The live customer's correction is made; the deleted one's is not, and did not stop the pass.
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 1
    found, total = await env.invoices.list_invoices(ns, InvoiceListQuery(customers=[cid]))
    assert total == 1 and found[0].invoice.id == made[cid].invoice.id
    (correction,) = await env.invoices.invoice_now(ns, InvoiceNowInput(live))
    assert correction.invoice.totals.total == D(3)
