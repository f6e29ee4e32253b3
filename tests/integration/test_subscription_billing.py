"""Subscriptions billed on real Postgres: their billable items as lines on the customer's gathering
invoice (idempotent across re-runs, racing syncs and edits; an item removed before it was invoiced
disappears from the gathering invoice), collected and issued by the billing worker, and usage
stored after an invoice was issued billed by the next run as a correction line for the old period.

Subscriptions are the real service over Postgres; usage is the stand-in of test_invoices. Each test
has a database of its own: the worker's passes cover every namespace."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from adapters.postgres.billing import PostgresInvoiceNumbers, billing_unit_of_work
from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import create_engine, migrate, session_factory
from adapters.postgres.subscriptions import PostgresSubscriptionRepository
from domain.billing.apps.models import InstallAppInput, UpdateAppInput
from domain.billing.apps.registry import Marketplace
from domain.billing.invoice_rest import line_rest, parse_invoice_update
from domain.billing.invoice_service import InvoiceService, gathering_schedule
from domain.billing.invoice_states import Action, InvoiceStatus, State
from domain.billing.invoices import (
    InvoiceLine,
    InvoiceListQuery,
    InvoiceNowInput,
    InvoiceWithLines,
    ManagedBy,
    PendingLineInput,
    VoidAction,
    VoidInput,
    VoidLineAction,
)
from domain.billing.models import (
    ListProfilesInput,
    OverrideUpsertInput,
    ProfileApps,
    ProfileCreateInput,
    ProrationMode,
    WorkflowPatch,
)
from domain.billing.ports import UnitOfWork
from domain.billing.service import AppService, BillingProfileService, Provisioner
from domain.billing.subscription_sync import SubscriptionSync
from domain.catalog.plans import Plan, parse_plan
from domain.customers.models import CustomerInput
from domain.customers.service import CustomerService
from domain.errors import ForbiddenError, NotFoundError, ValidationError
from domain.subscriptions import edits
from domain.subscriptions.catalog import CatalogRateCards, plan_view
from domain.subscriptions.models import CreateSubscriptionInput, PlanSelector, Subscription, Timing
from domain.subscriptions.ports import AddonSource, PlanView
from domain.subscriptions.service import SubscriptionService
from tests.support.services import require
from tests.support.stack import create_database, postgres_available
from tests.support.usage import EventUsage
from workers.billing import BillingWorker

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
JAN = datetime(2027, 1, 1, tzinfo=UTC)
D = Decimal


def card(key: str, price: dict[str, Any], feature: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "usage_based" if feature else "flat_fee",
        "key": key,
        "name": key.title(),
        "billingCadence": "P1M",
        "price": price,
    }
    if feature:
        body["featureKey"] = feature
    return body


PLAN = {
    "key": "team",
    "name": "Team",
    "currency": "USD",
    "billingCadence": "P1M",
    "phases": [
        {
            "key": "default",
            "name": "Default",
            "rateCards": [
                card("base", {"type": "flat", "amount": "30", "paymentTerm": "in_advance"}),
                card("api", {"type": "unit", "amount": "0.01"}, "api"),
            ],
        }
    ],
}


# A 14-day trial (the base fee free), then the team plan's base fee.
TRIAL_PLAN = {
    **PLAN,
    "key": "trial",
    "phases": [
        {
            "key": "trial",
            "name": "Trial",
            "duration": "P14D",
            "rateCards": [card("base", {"type": "flat", "amount": "0", "paymentTerm": "in_advance"})],
        },
        {**PLAN["phases"][0], "rateCards": PLAN["phases"][0]["rateCards"][:1]},  # type: ignore[index]
    ],
}


# A monthly plan whose usage is billed daily (each day its own line, invoiced with the month).
DAILY_PLAN = {
    **PLAN,
    "key": "daily",
    "phases": [
        {
            **PLAN["phases"][0],
            "rateCards": [{**card("api", {"type": "unit", "amount": "0.01"}, "api"), "billingCadence": "P1D"}],
        }
    ],  # type: ignore[index]
}


def published(body: dict[str, Any], version: int = 1) -> PlanView:
    """The plan `body` (OpenMeter's plan JSON) as the subscription service reads it: `version` of
    its key, published on Nov 1."""
    content, issues = parse_plan(body)
    issues.raise_if_errors()
    assert content is not None
    key = str(body["key"])
    return plan_view(Plan(f"plan-{key}-{version}", "any", version, content, NOV, NOV, effective_from=NOV))


class Plans:
    """The catalog's active plans, as the subscription service reads them: `bodies` as OpenMeter's
    plan JSON, each published on Nov 1 as version 1."""

    def __init__(self, bodies: Sequence[dict[str, Any]] = (PLAN, TRIAL_PLAN, DAILY_PLAN)) -> None:
        self.views: dict[str, PlanView] = {str(body["key"]): published(body) for body in bodies}

    async def active_plan(self, namespace: str, key: str, version: int | None) -> PlanView:
        if key not in self.views:
            raise NotFoundError("plan", key)
        return self.views[key]

    async def check_rate_card(self, namespace: str, rate_card: Any, path: str) -> None:
        return None  # no features here; the catalog's check of an edit's items is tested end to end


class Clock:
    def __init__(self) -> None:
        self.at = NOV

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Env:
    subscriptions: SubscriptionService
    sync: SubscriptionSync
    invoices: InvoiceService
    customers: CustomerService
    usage: EventUsage
    clock: Clock
    store: UnitOfWork
    profiles: BillingProfileService
    apps: AppService

    def worker(self) -> BillingWorker:
        return BillingWorker(self.invoices, self.sync, clock=self.clock)


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env(Plans()) as opened:
        yield opened


@asynccontextmanager
async def open_env(plans: Plans, addons: AddonSource | None = None) -> AsyncIterator[Env]:
    """The services over a new, migrated database of their own (add-ons offered by `addons`)."""
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=10)
    sessions = session_factory(engine)
    clock = Clock()
    customers = CustomerService(PostgresCustomerRepository(sessions), clock=clock)
    rate_cards = CatalogRateCards()
    repository = PostgresSubscriptionRepository(sessions, rate_cards)
    subscriptions = SubscriptionService(repository, plans, customers, rate_cards, clock=clock, addons=addons)
    uow = billing_unit_of_work(sessions)
    marketplace = Marketplace(PostgresInvoiceNumbers(sessions))
    profiles = BillingProfileService(uow, Provisioner(uow), customers, marketplace)
    usage = EventUsage()
    invoices = InvoiceService(uow, profiles, customers, marketplace, usage, clock=clock)
    sync = SubscriptionSync(uow, profiles, repository, clock=clock, drafts=invoices)
    invoices.bill_again = sync.bill_again
    apps = AppService(uow, marketplace, Provisioner(uow))
    try:
        yield Env(subscriptions, sync, invoices, customers, usage, clock, uow, profiles, apps)
    finally:
        await engine.dispose()


async def subscribe(env: Env, ns: str, key: str, plan: str = "team") -> Subscription:
    await env.customers.create(ns, CustomerInput(name=key, key=key))
    return await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector(plan), customer_key=key))


async def all_invoices(env: Env, ns: str) -> list[InvoiceWithLines]:
    found, _ = await env.invoices.list_invoices(ns, InvoiceListQuery(limit=100), with_lines=True)
    return found


def gathering_lines(found: list[InvoiceWithLines]) -> list[InvoiceLine]:
    out = [x for f in found if f.invoice.status is InvoiceStatus.GATHERING for x in f.lines]
    return sorted(out, key=lambda x: (x.period_start, x.name))


def shown(lines: list[InvoiceLine]) -> list[tuple[str, datetime, datetime, datetime]]:
    return [(x.name, x.period_start, x.period_end, x.invoice_at) for x in lines]


async def test_sync_is_idempotent_across_reruns_races_and_edits(env: Env) -> None:
    ns = "sb_sync"
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    assert await env.sync.sync(sub) == 3
    # In advance: the base fee is due when its period starts; usage when its period ends. Lines are
    # made up to the end of the current billing period (OpenMeter's horizon): December's fee,
    # due on Dec 1, is on the gathering invoice already.
    assert shown(gathering_lines(await all_invoices(env, ns))) == [
        ("Api", NOV, DEC, DEC),
        ("Base", NOV, DEC, NOV),
        ("Base", DEC, JAN, DEC),
    ]
    # Again, and twice at once: nothing new, one line per item and period.
    assert await env.sync.sync(sub) == 0
    await asyncio.gather(env.sync.sync(sub), env.sync.sync(sub))
    lines = gathering_lines(await all_invoices(env, ns))
    assert len(lines) == 3 and all(x.managed_by is ManagedBy.SUBSCRIPTION for x in lines)
    base = next(x for x in lines if x.name == "Base")
    assert base.per_unit_amount == D(30) and base.quantity == D(1)

    # Edit on Nov 11: a new usage item, which is then removed at once (never billed: its line goes),
    # and the api item removed (its line shrinks to Nov 1 - Nov 11, due with the billing period on
    # Dec 1, as OpenMeter's aligned billing: TestAlignedSubscriptionInvoicing's in-arrears v0).
    env.clock.at = NOV + timedelta(days=10)
    extra = CatalogRateCards().parse(card("calls", {"type": "unit", "amount": "0.02"}, "calls"), "rateCard")
    sub = await env.subscriptions.edit(ns, sub.id, [edits.AddItem("default", extra, "item-calls")], Timing("immediate"))
    assert await env.sync.sync(sub) == 1
    assert "Calls" in [x.name for x in gathering_lines(await all_invoices(env, ns))]
    sub = await env.subscriptions.edit(
        ns, sub.id, [edits.RemoveItem("default", "calls"), edits.RemoveItem("default", "api")], Timing("immediate")
    )
    await env.sync.sync(sub)
    assert await env.sync.sync(sub) == 0
    assert shown(gathering_lines(await all_invoices(env, ns))) == [
        ("Api", NOV, env.clock.at, DEC),
        ("Base", NOV, DEC, NOV),
        ("Base", DEC, JAN, DEC),
    ]


def as_given(line: InvoiceLine, **changes: Any) -> PendingLineInput:
    """The line as a client sends it back in a PUT of its invoice, with `changes`."""
    fields: dict[str, Any] = {
        "name": line.name,
        "period_start": line.period_start,
        "period_end": line.period_end,
        "invoice_at": line.invoice_at,
        "price": line.price,
        "feature_key": line.feature_key,
        "per_unit_amount": line.per_unit_amount,
        "quantity": line.quantity,
        "description": line.description,
        "rate_card_discounts": line.rate_card_discounts,
        "tax_config": line.tax_config,
        "metadata": line.metadata,
        "payment_term": line.payment_term,
    }
    return PendingLineInput(**(fields | changes))


def sent_back(line: InvoiceLine) -> tuple[str | None, PendingLineInput]:
    """The line as the REST API shows it, read back as a PUT of its invoice reads it."""
    (given,) = parse_invoice_update({"lines": [json.loads(json.dumps(line_rest(line), default=str))]}).lines
    return given


async def test_lines_a_user_edits_on_the_gathering_invoice_are_left_alone_by_the_sync(env: Env) -> None:
    # OpenMeter's PUT of a gathering invoice (httpdriver/invoice.go updateGatheringInvoice): a line
    # the user changed becomes managedBy manual and one the user removed is deleted as manual, and
    # the subscription sync patches only subscription-managed lines (subscriptionsync reconciler
    # patchhelpers.go shouldSkipLinePatch), so neither is put back. A line sent back unchanged stays
    # the subscription's. The invoice's period follows its lines.
    ns = "sb_user_edit"
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    await env.sync.sync(sub)
    (gathering,) = [x for x in await all_invoices(env, ns) if x.invoice.status is InvoiceStatus.GATHERING]
    assert gathering.invoice.period_end == JAN
    by_name = {(x.name, x.period_start): x for x in gathering.lines}
    api, base_nov = by_name[("Api", NOV)], by_name[("Base", NOV)]
    edited = await env.invoices.update_lines(
        ns,
        gathering.invoice.id,
        [
            (base_nov.id, as_given(base_nov, per_unit_amount=D(25))),
            sent_back(api),
            (None, PendingLineInput("Setup", NOV, DEC, NOV, per_unit_amount=D(5))),
        ],
    )
    assert edited.invoice.status is InvoiceStatus.GATHERING
    # December's fee, left out, is gone: the invoice now ends with November.
    assert (edited.invoice.period_start, edited.invoice.period_end, edited.invoice.collection_at) == (NOV, DEC, NOV)
    after = {x.name: x for x in edited.lines}
    assert sorted(after) == ["Api", "Base", "Setup"]
    assert (after["Base"].id, after["Base"].managed_by, after["Base"].per_unit_amount) == (
        base_nov.id,
        ManagedBy.MANUAL,
        D(25),
    )
    assert (after["Api"].id, after["Api"].managed_by) == (api.id, ManagedBy.SUBSCRIPTION)
    assert after["Setup"].managed_by is ManagedBy.MANUAL
    # The sync puts back neither December's fee nor November's 30.
    assert await env.sync.sync(sub) == 0
    assert await env.sync.sync_all() == 0
    (again,) = [x for x in await all_invoices(env, ns) if x.invoice.status is InvoiceStatus.GATHERING]
    assert sorted((x.name, x.period_start, x.per_unit_amount) for x in again.lines) == [
        ("Api", NOV, None),
        ("Base", NOV, D(25)),
        ("Setup", NOV, D(5)),
    ]
    # A cancellation on Nov 11 shortens the subscription's usage line; the edited fee stays as edited.
    env.clock.at = NOV + timedelta(days=10)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    lines = {x.name: x for x in gathering_lines(await all_invoices(env, ns))}
    assert (lines["Api"].period_end, lines["Base"].period_end, lines["Base"].per_unit_amount) == (
        env.clock.at,
        DEC,
        D(25),
    )


async def test_a_gathering_invoice_a_sync_makes_is_scheduled_by_every_line_made_with_it(env: Env) -> None:
    # The sync schedules a gathering invoice it made from the lines it made with it, without
    # reading them back: the stored schedule must be the one the stored lines give.
    ns = "sb_fresh_schedule"
    env.clock.at = NOV
    await env.sync.sync(await subscribe(env, ns, "c1"))
    (gathering,) = [x for x in await all_invoices(env, ns) if x.invoice.status is InvoiceStatus.GATHERING]
    assert len({(x.period_start, x.period_end) for x in gathering.lines}) > 1
    assert gathering.invoice == gathering_schedule(gathering.invoice, gathering.lines, gathering.invoice.updated_at)
    assert (gathering.invoice.period_start, gathering.invoice.period_end) == (NOV, JAN)


async def test_a_sync_pass_repairs_the_subscriptions_out_of_sync_and_only_those(env: Env) -> None:
    ns = "sb_pass"
    env.clock.at = NOV
    subs = [await subscribe(env, ns, f"c{i}") for i in range(3)]
    assert await env.sync.sync_all() == 9
    assert await env.sync.sync_all() == 0
    # A line lost out of band (as if a sync had never run): the pass finds that subscription out
    # of sync and makes the line again; the other subscriptions' lines are not written.
    before = {x.id: x for x in gathering_lines(await all_invoices(env, ns))}
    lost = next(x for x in before.values() if x.subscription and x.subscription.subscription_id == subs[1].id)
    async with env.store() as tx:
        await tx.invoices.delete_lines(ns, [lost.id], NOV)
        await tx.commit()
    env.clock.at = NOV + timedelta(hours=1)
    assert await env.sync.sync_all() == 1
    after = gathering_lines(await all_invoices(env, ns))
    (made,) = [x for x in after if x.id not in before]
    assert (made.sync_key, made.period_start, made.period_end) == (lost.sync_key, lost.period_start, lost.period_end)
    assert [x for x in after if x.id != made.id] == [x for x in before.values() if x.id != lost.id]
    assert await env.sync.sync_all() == 0


async def test_worker_bills_subscriptions_and_late_usage_as_a_correction(env: Env) -> None:
    ns = "sb_late"
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    cid = sub.customer_id
    env.usage.add("api", cid, NOV + timedelta(days=4), "1000")
    worker = env.worker()

    # Nov 1: the in-advance base fee is collected and issued at once; the usage line and
    # December's fee (made ahead, due on Dec 1) wait.
    first = await worker.run_once()
    assert first.synced == 3 and first.collected == 1
    (nov_fee,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.PAID]
    assert nov_fee.invoice.totals.total == D(30)

    # Dec 1, 2h: December's lines are synced; November's usage is collected and issued with
    # December's in-advance fee.
    env.clock.at = DEC + timedelta(hours=2)
    second = await worker.run_once()
    assert second.synced == 2 and second.collected == 1 and second.corrections == 0
    paid = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.PAID]
    (dec_invoice,) = [f for f in paid if f.invoice.id != nov_fee.invoice.id]
    api = next(x for x in dec_invoice.lines if x.name == "Api" and x.parent_line_id is None)
    assert (api.period_start, api.period_end, api.quantity) == (NOV, DEC, D(1000))
    assert dec_invoice.invoice.totals.total == D("40.00")  # 1000 x 0.01 + 30

    # Usage for November stored after that invoice was issued.
    env.usage.add("api", cid, NOV + timedelta(days=20), "250", stored_at=DEC + timedelta(hours=3))
    env.clock.at = DEC + timedelta(hours=4)
    third = await worker.run_once()
    assert third.corrections == 1 and third.collected == 1
    invoices = await all_invoices(env, ns)
    (correction,) = [
        f
        for f in invoices
        if f.invoice.id not in (nov_fee.invoice.id, dec_invoice.invoice.id) and f.lines
        if f.invoice.status is not InvoiceStatus.GATHERING
    ]
    assert correction.invoice.state is State.PAID
    (line,) = [x for x in correction.lines if x.parent_line_id is None]
    # Exactly the difference, for the old service period, rated on top of what was billed.
    assert (line.period_start, line.period_end) == (NOV, DEC)
    assert line.quantity == D(250) and line.pre_line_period_quantity == D(1000)
    assert correction.invoice.totals.total == D("2.50")
    assert line.period_key == api.period_key and line.managed_by is ManagedBy.SYSTEM
    # Nothing more to correct, and the subscription sync leaves the correction alone.
    fourth = await worker.run_once()
    assert (fourth.corrections, fourth.synced, fourth.collected) == (0, 0, 0)

    # Cancelled mid-December: the December usage line ends with the subscription.
    env.clock.at = DEC + timedelta(days=10)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    assert shown(gathering_lines(await all_invoices(env, ns))) == [("Api", DEC, env.clock.at, env.clock.at)]
    env.clock.at = JAN
    assert (await worker.run_once()).synced == 0


def billed_api(found: list[InvoiceWithLines]) -> list[InvoiceLine]:
    """November's Api lines on every invoice that bills (not gathering, deleted or voided)."""
    return [
        x
        for f in found
        if f.invoice.status not in (InvoiceStatus.GATHERING, InvoiceStatus.DELETED, InvoiceStatus.VOIDED)
        for x in f.lines
        if x.parent_line_id is None and x.name == "Api" and x.period_start < DEC
    ]


async def invoice_api_now(env: Env, ns: str, customer_id: str) -> InvoiceWithLines:
    """Progressive invoice-now of the gathering Api line (the default workflow bills progressively)."""
    api = next(x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Api")
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(customer=customer_id, line_ids=[api.id]))
    assert draft.invoice.state is State.DRAFT_WAITING_FOR_COLLECTION
    return draft


async def subscribed_with_api_usage(env: Env, ns: str, *usage: tuple[int, str]) -> Subscription:
    """A customer subscribed on Nov 1 (lines synced) with Api usage on the given days of November."""
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    await env.sync.sync(sub)
    for day, quantity in usage:
        env.usage.add("api", sub.customer_id, NOV + timedelta(days=day), quantity)
    return sub


async def test_a_deleted_progressive_draft_gives_its_part_back_to_the_line_it_was_cut_from(env: Env) -> None:
    ns = "sb_release"
    sub = await subscribed_with_api_usage(env, ns, (4, "1000"), (19, "500"))
    cid = sub.customer_id
    (original,) = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Api"]

    env.clock.at = NOV + timedelta(days=14)
    draft = await invoice_api_now(env, ns, cid)
    await env.invoices.act(ns, draft.invoice.id, Action.DELETE)
    # One line again, as before the cut: same ID, the whole period.
    (api,) = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Api"]
    assert (api.id, api.period_start, api.period_end, api.invoice_at) == (original.id, NOV, DEC, DEC)

    # A cancellation still reaches it (two parts of one key made every sync a conflict).
    env.clock.at = NOV + timedelta(days=24)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    (api,) = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Api"]
    assert (api.period_start, api.period_end) == (NOV, env.clock.at)

    # November's usage is billed once: 1,500 units (before: 1,000 + 1,500 on one invoice).
    env.clock.at = DEC + timedelta(hours=2)
    await env.worker().run_once()
    billed = billed_api(await all_invoices(env, ns))
    assert sum((x.quantity or D(0) for x in billed), D(0)) == D(1500)
    assert sum((x.totals.total for x in billed), D(0)) == D("15.00")


async def test_parts_of_one_period_on_one_invoice_are_each_billed_after_the_earlier_ones(env: Env) -> None:
    # Two progressive drafts (Nov 10 and Nov 15); the first is deleted while the second holds the
    # middle of the period, so its part cannot rejoin the rest: November's invoice then holds two
    # parts of one period key, and the second must not bill the first's usage again.
    ns = "sb_release_chain"
    sub = await subscribed_with_api_usage(env, ns, (4, "1000"), (12, "300"), (19, "500"))
    cid = sub.customer_id

    env.clock.at = NOV + timedelta(days=9)
    first = await invoice_api_now(env, ns, cid)
    env.clock.at = NOV + timedelta(days=14)
    await invoice_api_now(env, ns, cid)
    await env.invoices.act(ns, first.invoice.id, Action.DELETE)
    parts = [(x.period_start, x.period_end) for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Api"]
    assert parts == [(NOV, NOV + timedelta(days=9)), (NOV + timedelta(days=14), DEC)]
    # A cancellation trims only the part it falls in; the earlier part keeps its end (before: it
    # was stretched to the new end too, over the second draft's days and the last part's).
    env.clock.at = NOV + timedelta(days=24)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    parts = [(x.period_start, x.period_end) for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Api"]
    assert parts == [(NOV, NOV + timedelta(days=9)), (NOV + timedelta(days=14), env.clock.at)]

    env.clock.at = DEC + timedelta(hours=2)
    await env.worker().run_once()
    billed = billed_api(await all_invoices(env, ns))
    assert len(billed) == 3  # the middle part on its own invoice, the other two on November's
    assert sum((x.quantity or D(0) for x in billed), D(0)) == D(1800)
    assert sum((x.totals.total for x in billed), D(0)) == D("18.00")


async def test_a_cancellation_bills_the_shortened_flat_fee_as_the_workflow_says(env: Env) -> None:
    # subscriptionEndProrationMode: bill_actual_period (the default) prorates the in-advance Base
    # fee of a period the cancellation cuts short; bill_full_period bills it whole.
    env.clock.at = NOV
    for ns, mode, fee in (
        ("sb_end_actual", None, D("10.00")),
        ("sb_end_full", ProrationMode.BILL_FULL_PERIOD, D(30)),
    ):
        env.clock.at = NOV
        sub = await subscribe(env, ns, "c1")
        if mode is not None:
            await env.profiles.upsert_override(
                ns, "c1", OverrideUpsertInput(workflow=WorkflowPatch(subscription_end_proration_mode=mode))
            )
        await env.sync.sync(sub)
        bases = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base"]
        # Nothing cut short yet: the whole fee either way (December's made ahead, due on Dec 1).
        assert [(x.period_start, x.per_unit_amount) for x in bases] == [(NOV, D(30)), (DEC, D(30))]
        env.clock.at = NOV + timedelta(days=10)
        sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
        await env.sync.sync(sub)
        # December's fee made ahead goes with the cancellation; November's is cut short.
        (base,) = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base"]
        assert (base.period_end, base.per_unit_amount) == (env.clock.at, fee), ns


async def test_an_ended_subscription_is_not_restored_and_its_end_stays_billed(env: Env) -> None:
    # Canceled at once on Nov 15 after a part of November was invoiced, then "restored" on Nov 16:
    # OpenMeter's state machine permits continue only while the subscription is canceled with its
    # end still to come. Tally revived it, and billed Nov 15-16 and the usage of Nov 19, when the
    # customer had no subscription. Refused now, and the period stays billed to Nov 15.
    ns = "sb_restore_ended"
    sub = await subscribed_with_api_usage(env, ns, (4, "1000"), (12, "300"), (19, "500"))
    cid = sub.customer_id
    env.clock.at = NOV + timedelta(days=9)
    await invoice_api_now(env, ns, cid)  # [Nov 1, Nov 10)
    env.clock.at = NOV + timedelta(days=14)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    env.clock.at = NOV + timedelta(days=15)
    with pytest.raises(ForbiddenError):
        await env.subscriptions.restore(ns, sub.id)
    assert (await env.subscriptions.get(ns, sub.id)).active_to == NOV + timedelta(days=14)

    env.clock.at = DEC + timedelta(hours=2)
    await env.worker().run_once()
    assert sum((x.quantity or D(0) for x in billed_api(await all_invoices(env, ns))), D(0)) == D(1300)


async def test_a_sync_pass_survives_the_deleted_customer_of_an_ended_subscription(env: Env) -> None:
    # Ended subscriptions stay in the passes for a while; one whose flat fee the end cut short
    # reads the billing workflow, which must not fail once its customer is gone.
    ns = "sb_deleted_customer"
    env.clock.at = NOV
    env.customers.delete_guards.insert(0, env.subscriptions.guard_customer_delete)
    sub = await subscribe(env, ns, "c1")
    await env.sync.sync(sub)
    env.clock.at = NOV + timedelta(days=10)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    env.clock.at = NOV + timedelta(days=11)
    await env.customers.delete(ns, "c1")  # allowed: nothing of it is live
    assert await env.sync.sync_all() == 0
    assert (await env.worker().run_once()).failed == 0


async def test_a_fourteen_day_trial_ends_on_day_fourteen_and_the_plan_bills_the_rest_of_the_month(env: Env) -> None:
    # The phase switch falls inside November: the trial's (free) base covers Nov 1-15, the plan's
    # base fee Nov 15 - Dec 1, prorated: 30 x 16/30 = 16. (The switch used to wait for Dec 1: a
    # month free where the plan promised 14 days.)
    ns = "sb_trial14"
    sub = await subscribe(env, ns, "c1", plan="trial")
    env.clock.at = NOV + timedelta(days=14)
    await env.sync.sync(sub)
    lines = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base"]
    switch = NOV + timedelta(days=14)
    # The trial's free fee makes no line; December's fee is made ahead, due on Dec 1.
    assert [(x.period_start, x.period_end, x.invoice_at, x.per_unit_amount) for x in lines] == [
        (switch, DEC, switch, D(16)),
        (DEC, JAN, DEC, D(30)),
    ]
    env.clock.at = DEC
    await env.sync.sync(sub)
    lines = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base"]
    assert [(x.period_start, x.period_end, x.per_unit_amount) for x in lines][-2:] == [
        (DEC, JAN, D(30)),
        (JAN, datetime(2027, 2, 1, tzinfo=UTC), D(30)),
    ]


async def test_a_lines_subscription_billing_period_is_the_subscriptions_not_the_items(env: Env) -> None:
    # OpenMeter's line `subscription.billingPeriod`: the subscription's aligned billing period, cut
    # at its phase (a daily item of a monthly plan shows the month; the plan's first fee after a
    # trial shows the part of the month after the trial), not the line's own full period.
    ns = "sb_billing_period"
    daily = await subscribe(env, ns, "c1", plan="daily")
    trial = await subscribe(env, ns, "c2", plan="trial")
    env.clock.at = NOV + timedelta(days=14)
    await env.sync.sync(daily)
    await env.sync.sync(trial)
    found = await all_invoices(env, ns)
    shown_periods = {
        (x.name, x.period_start.day, x.period_start.month): line_rest(x)["subscription"]["billingPeriod"]
        for x in gathering_lines(found)
    }
    month = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    after_trial = {"from": "2026-11-15T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    assert shown_periods[("Api", 1, 11)] == shown_periods[("Api", 30, 11)] == month
    assert len([k for k in shown_periods if k[0] == "Api"]) == 30
    assert shown_periods[("Base", 15, 11)] == after_trial
    assert shown_periods[("Base", 1, 12)] == {"from": "2026-12-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}


async def test_a_flat_fee_whose_amount_alone_changes_is_synced_again(env: Env) -> None:
    # OpenMeter (reconciler semanticProrateDecision): a gathering flat-fee line is patched when its
    # per-unit amount differs from the target's, not only when its service period does. Canceled on
    # Nov 11 under bill_actual_period, the Base fee is 10.00; the customer's workflow then says
    # bill_full_period: the next sync bills 30 (it stayed 10.00, the period being the same).
    ns = "sb_amount_only"
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    await env.sync.sync(sub)
    env.clock.at = NOV + timedelta(days=10)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    (base,) = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base"]
    assert (base.period_end, base.per_unit_amount) == (env.clock.at, D("10.00"))
    await env.profiles.upsert_override(
        ns,
        "c1",
        OverrideUpsertInput(workflow=WorkflowPatch(subscription_end_proration_mode=ProrationMode.BILL_FULL_PERIOD)),
    )
    assert await env.sync.sync_all() == 1
    (after,) = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base"]
    assert (after.id, after.period_end, after.per_unit_amount) == (base.id, env.clock.at, D(30))
    assert await env.sync.sync_all() == 0


async def test_bill_full_period_bills_a_first_period_the_start_shortened_in_full_when_it_is_also_the_last(
    env: Env,
) -> None:
    # OpenMeter (TestInAdvanceFlatFeeCancelAtFirstBillingBoundaryBillFullPeriodMode; StateItem
    # .shouldProrate): with bill_full_period, the period the subscription ends in is billed in full,
    # however it was shortened. Started Nov 21 on an anchor of the 1st and canceled for Dec 1, the
    # one period Nov 21 - Dec 1 bills the Base fee whole: 30, not 30 x 10/30 = 10.00 (it was kept
    # prorated, since the end did not cut it: it fell on the period's own end).
    start = NOV + timedelta(days=20)
    for ns, mode, fee in (
        ("sb_first_actual", None, D("10.00")),
        ("sb_first_full", ProrationMode.BILL_FULL_PERIOD, D(30)),
    ):
        env.clock.at = start
        await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
        if mode is not None:
            await env.profiles.upsert_override(
                ns, "c1", OverrideUpsertInput(workflow=WorkflowPatch(subscription_end_proration_mode=mode))
            )
        sub = await env.subscriptions.create(
            CreateSubscriptionInput(ns, PlanSelector("team"), customer_key="c1", billing_anchor=NOV)
        )
        await env.sync.sync(sub)
        bases = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base"]
        assert [(x.period_start, x.period_end, x.per_unit_amount) for x in bases] == [
            (start, DEC, D("10.00")),
            (DEC, JAN, D(30)),  # made ahead; it goes with the cancellation
        ]
        sub = await env.subscriptions.cancel(ns, sub.id, Timing(at=DEC))
        await env.sync.sync(sub)
        (base,) = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base"]
        assert (base.period_start, base.period_end, base.per_unit_amount) == (start, DEC, fee), ns


async def test_a_cancellation_prorates_the_flat_fee_on_a_draft_invoice(env: Env) -> None:
    # OpenMeter (TestInAdvanceGatheringSyncDraftInvoiceProrated; invoiceupdater: patches apply to
    # gathering and mutable standard invoices): a line on a draft invoice, which nobody has been
    # sent yet, follows the subscription like a gathering one. Base (30, in advance) was invoiced on
    # Nov 1 into a draft waiting for approval; canceled on Nov 11, the draft bills Nov 1 - Nov 11:
    # 10.00 (it kept billing the whole month, 30).
    ns = "sb_draft_prorated"
    env.clock.at = NOV
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    await env.profiles.upsert_override(ns, "c1", OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    sub = await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector("team"), customer_key="c1"))
    await env.sync.sync(sub)
    env.clock.at = NOV + timedelta(hours=1)
    # November's fee (December's, made ahead, is not due yet).
    base = next(x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base" and x.period_start == NOV)
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(customer=sub.customer_id, line_ids=[base.id]))
    assert draft.invoice.status is InvoiceStatus.DRAFT and draft.invoice.totals.total == D(30)

    env.clock.at = NOV + timedelta(days=10)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    after = await env.invoices.get(ns, draft.invoice.id)
    (line,) = [x for x in after.lines if x.parent_line_id is None]
    assert (line.id, line.period_start, line.period_end, line.per_unit_amount) == (
        base.id,
        NOV,
        env.clock.at,
        D("10.00"),
    )
    assert after.invoice.status is InvoiceStatus.DRAFT and after.invoice.totals.total == D("10.00")
    assert [x.name for x in gathering_lines(await all_invoices(env, ns))] == ["Api"]
    assert await env.sync.sync(sub) == 0


# Api at 0.01 a unit with a minimum spend of 5 a period.
MIN_SPEND_PLAN = {
    **PLAN,
    "key": "minimum",
    "phases": [
        {
            **PLAN["phases"][0],  # type: ignore[index]
            "rateCards": [card("api", {"type": "unit", "amount": "0.01", "minimumAmount": "5"}, "api")],
        }
    ],
}


async def minimum_spend_billed_progressively(
    env: Env, ns: str, workflow: WorkflowPatch, at: datetime, units: str = "100"
) -> tuple[Subscription, InvoiceWithLines]:
    """c1 subscribed to MIN_SPEND_PLAN on Nov 1 under `workflow`, `units` of Api on Nov 4, and
    November billed progressively at `at`: the subscription and that invoice."""
    env.clock.at = NOV
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    await env.profiles.upsert_override(ns, "c1", OverrideUpsertInput(workflow=workflow))
    sub = await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector("minimum"), customer_key="c1"))
    await env.sync.sync(sub)
    env.usage.add("api", sub.customer_id, NOV + timedelta(days=3), units)
    env.clock.at = at
    (invoice,) = await env.invoices.invoice_now(ns, InvoiceNowInput(customer=sub.customer_id))
    return sub, invoice


async def minimum_spend_drafted_on_nov_10(env: Env, ns: str) -> tuple[Subscription, InvoiceWithLines]:
    """100 Api units billed progressively on Nov 10 into a draft waiting for approval."""
    return await minimum_spend_billed_progressively(
        env, ns, WorkflowPatch(auto_advance=False), NOV + timedelta(days=10)
    )


async def test_a_cancellation_at_the_end_of_a_drafts_progressive_part_makes_it_the_last_and_charges_the_minimum() -> (
    None
):
    # Found by test_subscription_billing_properties. November's Api usage (100 units, 1.00) billed
    # progressively on Nov 10 into a draft waiting for approval, then the subscription canceled at
    # that very instant: the draft's part is now the whole service period, so it is the period's
    # last line and carries the minimum spend's shortfall (4.00: 5.00 in all, docs/billing.md; as
    # OpenMeter's sync ends the split line group's service period and rates the mutable line again
    # as the last in it). The sync moved only lines reaching past the new end, so the part kept its
    # period's old end (Dec 1) and the draft billed 1.00, the minimum lost.
    async with open_env(Plans([MIN_SPEND_PLAN])) as env:
        ns = "sb_min_at_cut"
        sub, draft = await minimum_spend_drafted_on_nov_10(env, ns)
        assert draft.invoice.status is InvoiceStatus.DRAFT

        sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
        await env.sync.sync(sub)
        env.clock.at += timedelta(hours=2)
        await env.worker().run_once()
        after = await env.invoices.get(ns, draft.invoice.id)
        (line,) = [x for x in after.lines if x.parent_line_id is None]
        assert (line.totals.total, after.invoice.totals.total) == (D("5.00"), D("5.00"))
        assert (line.period_start, line.period_end, line.full_period_end) == (
            NOV,
            NOV + timedelta(days=10),
            line.period_end,
        )
        assert gathering_lines(await all_invoices(env, ns)) == []


async def canceled_in_the_second_of_an_issued_invoice_now(env: Env, ns: str, units: str) -> int:
    """c1 subscribed to MIN_SPEND_PLAN on Nov 1 with invoices issued at once (no collection
    interval), `units` of Api on Nov 4, November billed progressively on Nov 10 at 12:00:00.7 and
    the subscription canceled at once 250 ms later (periods are billed at whole seconds, so the
    issued part, Nov 1 - Nov 10 12:00:00, is the whole period now, and it was not rated as the
    period's last). What the cancellation's sync changed."""
    at_once = WorkflowPatch(collection_interval="PT0S")
    at = NOV + timedelta(days=9, hours=12, microseconds=700_000)
    sub, issued = await minimum_spend_billed_progressively(env, ns, at_once, at, units)
    assert issued.invoice.status is InvoiceStatus.PAID
    env.clock.at += timedelta(microseconds=250_000)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    changed = await env.sync.sync(sub)
    assert await env.sync.sync(sub) == 0
    return changed


async def two_hours_on(env: Env) -> None:
    env.clock.at += timedelta(hours=2)
    await env.worker().run_once()


async def test_a_cancellation_in_the_second_of_an_issued_invoice_now_closes_the_period_and_charges_the_minimum() -> (
    None
):
    # 100 units (1.00) under the minimum of 5.00: a closing line at the end charges the shortfall
    # (4.00), and usage stored late then is billed above the minimum (700 units: 7.00, so 2.00
    # more). Before, nothing closed the period: 1.00 for it, the minimum never charged (and the late
    # usage billed as 6.00, its own units).
    async with open_env(Plans([MIN_SPEND_PLAN])) as env:
        ns = "sb_min_same_second"
        # The rest of the period the invoice-now left gathering goes; the closing line comes.
        assert await canceled_in_the_second_of_an_issued_invoice_now(env, ns, "100") == 2
        # Sent back as read in a PUT of its gathering invoice, over no time, it is kept as it is
        # (the pending-line rule that a period ends after it starts refused it).
        (gathering,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.GATHERING]
        (closing,) = gathering.lines
        kept = await env.invoices.update_lines(ns, gathering.invoice.id, [sent_back(closing)])
        assert [(x.id, x.managed_by) for x in kept.lines] == [(closing.id, closing.managed_by)]
        await two_hours_on(env)
        end = NOV + timedelta(days=9, hours=12)
        lines = billed_api(await all_invoices(env, ns))
        assert [(x.period_start, x.period_end, x.full_period_end, x.quantity, x.totals.total) for x in lines] == [
            (NOV, end, DEC, D(100), D("1.00")),
            (end, end, end, D(0), D("4.00")),
        ]

        customer = await env.customers.get(ns, "c1")
        env.usage.add("api", customer.id, NOV + timedelta(days=5), "600", stored_at=env.clock.at)
        env.clock.at += timedelta(hours=2)
        await env.worker().run_once()
        env.clock.at += timedelta(hours=2)
        await env.worker().run_once()
        lines = billed_api(await all_invoices(env, ns))
        assert [(x.quantity, x.totals.total) for x in lines] == [
            (D(100), D("1.00")),
            (D(0), D("4.00")),
            (D(600), D("2.00")),
        ]
        assert gathering_lines(await all_invoices(env, ns)) == []


async def test_a_period_cut_in_the_second_of_an_issued_invoice_now_past_its_minimum_gets_no_closing_line() -> None:
    # 700 units (7.00) billed past the minimum: a closing line would charge nothing (an invoice of
    # 0.00), so none is made; the cancellation's sync only takes away the rest of the period.
    async with open_env(Plans([MIN_SPEND_PLAN])) as env:
        ns = "sb_past_min_same_second"
        assert await canceled_in_the_second_of_an_issued_invoice_now(env, ns, "700") == 1
        await two_hours_on(env)
        lines = billed_api(await all_invoices(env, ns))
        assert [(x.quantity, x.totals.total) for x in lines] == [(D(700), D("7.00"))]
        assert len([f for f in await all_invoices(env, ns) if f.invoice.status is not InvoiceStatus.GATHERING]) == 1


async def test_a_deleted_drafts_part_rejoined_after_a_cancellation_is_the_periods_last_and_charges_the_minimum() -> (
    None
):
    # Found by test_subscription_billing_properties. November's Api usage (100 units, 1.00) billed
    # progressively on Nov 10 into a draft waiting for approval; the subscription canceled on Nov
    # 20, which makes the gathering part (Nov 10-20) the period's last; then the draft deleted: its
    # part rejoins that one, Nov 1-20, still the period's last, so it carries the minimum spend's
    # shortfall (5.00 in all). The rejoined line kept the draft part's period end (Dec 1), so it
    # was no period's last and billed 1.00, the minimum lost.
    async with open_env(Plans([MIN_SPEND_PLAN])) as env:
        ns = "sb_min_rejoined"
        sub, draft = await minimum_spend_drafted_on_nov_10(env, ns)
        env.clock.at = NOV + timedelta(days=20)
        sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
        await env.sync.sync(sub)
        await env.invoices.act(ns, draft.invoice.id, Action.DELETE)
        (api,) = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Api"]
        assert (api.period_start, api.period_end, api.full_period_end) == (NOV, env.clock.at, env.clock.at)
        assert await env.sync.sync(sub) == 0

        env.clock.at += timedelta(hours=2)
        await env.worker().run_once()
        (made,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.DRAFT]
        await env.invoices.act(ns, made.invoice.id, Action.APPROVE)
        (line,) = billed_api(await all_invoices(env, ns))
        assert (line.quantity, line.totals.total) == (D(100), D("5.00"))


async def paying_later(env: Env, ns: str, key: str, workflow: WorkflowPatch | None = None) -> None:
    """Customer `key` invoiced through custom invoicing without its sync hooks (an issued invoice
    waits for its payment, so it can still be voided), under `workflow` (None: the default's)."""
    app, _ = await env.apps.install(ns, InstallAppInput(type="custom_invoicing", create_billing_profile=False))
    hooks_off = UpdateAppInput(
        type="custom_invoicing", name="Ours", enable_draft_sync_hook=False, enable_issuing_sync_hook=False
    )
    await env.apps.update_app(ns, app.id, hooks_off)
    default = await env.profiles.get_default(ns)
    profile = await env.profiles.create(
        ns, ProfileCreateInput("Custom", default.supplier, ProfileApps(app.id, app.id, app.id))
    )
    await env.profiles.upsert_override(
        ns, key, OverrideUpsertInput(profile_id=profile.profile.id, workflow=workflow or WorkflowPatch())
    )


async def test_a_minimum_spends_parts_billed_again_one_after_the_other_charge_the_minimum_once() -> None:
    # Found by test_subscription_billing_properties. November's Api usage (100 units on Nov 3)
    # billed progressively: Nov 1-5 (1.00), Nov 5-10 (0.00), and Nov 10 - Dec 1 on Dec 1 (the
    # period's last part: the minimum spend's shortfall, 4.00). The last two invoices voided to be
    # billed again, in order: Nov 5-10 is made again; at the last part's void the sync stretches
    # it to the end of November (it is the latest gathering part, and no live part reaches the
    # end), so it is the period's last and charges the shortfall once: 5.00 in all. The last part
    # was also made again over its own time, a second period's last line: 4.00 twice, 9.00.
    async with open_env(Plans([MIN_SPEND_PLAN])) as env:
        ns = "sb_min_billed_again"
        env.clock.at = NOV
        await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
        await paying_later(env, ns, "c1")
        sub = await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector("minimum"), customer_key="c1"))
        await env.sync.sync(sub)
        env.usage.add("api", sub.customer_id, NOV + timedelta(days=2), "100")
        for day in (4, 9):
            env.clock.at = NOV + timedelta(days=day, hours=22)
            await env.invoices.invoice_now(ns, InvoiceNowInput(customer=sub.customer_id))
        env.clock.at = DEC + timedelta(hours=2)
        await env.worker().run_once()
        parts = sorted(
            (x.period_start, x.totals.total, f.invoice.id) for f in await all_invoices(env, ns) for x in billed_api([f])
        )
        assert [total for _, total, _ in parts] == [D("1.00"), D("0.00"), D("4.00")]
        again = VoidInput("wrong address", VoidAction(VoidLineAction.PENDING))
        for _, _, invoice_id in parts[1:]:
            await env.invoices.void(ns, invoice_id, again)
        (api,) = [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Api" and x.period_start < DEC]
        assert (api.period_start, api.period_end, api.full_period_end) == (parts[1][0], DEC, DEC)
        assert await env.sync.sync(sub) == 0

        env.clock.at += timedelta(hours=2)
        await env.worker().run_once()
        billed = sorted((x.period_start, x.totals.total) for x in billed_api(await all_invoices(env, ns)))
        assert billed == [(NOV, D("1.00")), (parts[1][0], D("4.00"))]


async def test_a_fee_the_user_edits_on_a_draft_is_left_alone_by_the_sync(env: Env) -> None:
    # As on a gathering invoice (above): a draft's subscription line the user changed through a PUT
    # of the draft is managedBy manual (OpenMeter's mergeLineFromInvoiceLineReplaceUpdate), so a
    # cancellation does not prorate the fee the user set; sent back unchanged, it stays the
    # subscription's and follows the cancellation.
    ns = "sb_draft_user_edit"
    env.clock.at = NOV
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    await env.profiles.upsert_override(ns, "c1", OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    sub = await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector("team"), customer_key="c1"))
    await env.sync.sync(sub)
    env.clock.at = NOV + timedelta(hours=1)
    base = next(x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base" and x.period_start == NOV)
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(customer=sub.customer_id, line_ids=[base.id]))
    (line,) = [x for x in draft.lines if x.parent_line_id is None]
    unchanged = await env.invoices.update_lines(ns, draft.invoice.id, [sent_back(line)])
    assert [x.managed_by for x in unchanged.lines if x.parent_line_id is None] == [ManagedBy.SUBSCRIPTION]
    edited = await env.invoices.update_lines(ns, draft.invoice.id, [(line.id, as_given(line, per_unit_amount=D(25)))])
    assert [(x.managed_by, x.per_unit_amount) for x in edited.lines if x.parent_line_id is None] == [
        (ManagedBy.MANUAL, D(25))
    ]

    env.clock.at = NOV + timedelta(days=10)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    after = await env.invoices.get(ns, draft.invoice.id)
    (kept,) = [x for x in after.lines if x.parent_line_id is None]
    assert (kept.period_end, kept.per_unit_amount, after.invoice.totals.total) == (DEC, D(25), D(25))


async def test_cancel_at_the_next_billing_cycle_in_a_trial_ends_with_the_trial(env: Env) -> None:
    # A billing period the phase switch falls in is split (the trial's part ends Nov 15), so the
    # trial's billing cycle ends on Nov 15: OpenMeter's next_billing_cycle is the end of the aligned
    # billing period (GetAlignedBillingPeriodAt, cut at the phase's end), and a custom time on the
    # switch is on a billing-period boundary. Tally ended the subscription on Dec 1 and billed the
    # plan's base fee for Nov 15 - Dec 1 (16.00) to a customer who canceled during the trial; and
    # refused a cancel at Nov 15 (400 timing_not_aligned_with_billing_cadence).
    switch = NOV + timedelta(days=14)
    for ns, timing in (
        ("sb_trial_cancel_next", Timing("next_billing_cycle")),
        ("sb_trial_cancel_at", Timing(at=switch)),
    ):
        env.clock.at = NOV
        sub = await subscribe(env, ns, "c1", plan="trial")
        env.clock.at = NOV + timedelta(days=5)
        sub = await env.subscriptions.cancel(ns, sub.id, timing)
        assert sub.active_to == switch, ns
        env.clock.at = DEC
        await env.sync.sync(sub)
        assert [x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base"] == [], ns


async def test_a_draft_whose_every_line_the_subscription_takes_back_is_deleted(env: Env) -> None:
    # Base (30, in advance) invoiced on Nov 1 into a draft waiting for approval, then the
    # subscription canceled a minute later: a minute of Base is 0.00, no line, so the draft's only
    # line goes. OpenMeter's invoice updater deletes a mutable invoice the sync leaves without lines
    # (updateMutableStandardInvoice). Tally refused the edit: the draft went on billing the whole
    # month (30.00) for one minute, and every sync pass found the subscription out of sync.
    ns = "sb_draft_emptied"
    env.clock.at = NOV
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    await env.profiles.upsert_override(ns, "c1", OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    sub = await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector("team"), customer_key="c1"))
    await env.sync.sync(sub)
    env.clock.at = NOV + timedelta(seconds=1)
    # November's fee (December's, made ahead, is not due yet).
    base = next(x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base" and x.period_start == NOV)
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(customer=sub.customer_id, line_ids=[base.id]))
    assert draft.invoice.status is InvoiceStatus.DRAFT and draft.invoice.totals.total == D(30)

    env.clock.at = NOV + timedelta(minutes=1)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    assert await env.sync.sync(sub) > 0
    after = await env.invoices.get(ns, draft.invoice.id)
    assert after.invoice.status is InvoiceStatus.DELETED
    assert [x for x in after.lines if x.parent_line_id is None and x.deleted_at is None] == []
    found = await all_invoices(env, ns)
    assert [f.invoice.id for f in found if f.invoice.status is not InvoiceStatus.GATHERING] == []
    assert [x.name for x in gathering_lines(found)] == ["Api"]  # the Base line went, not back here
    assert await env.sync.sync(sub) == 0


async def test_a_pass_leaves_alone_a_subscription_whose_only_differences_are_issued(env: Env) -> None:
    # Base (30, in advance) issued on Nov 1, then the subscription canceled on Nov 11: the item now
    # bills Nov 1 - Nov 11, but what was issued stays (a credit note would be needed) and nothing
    # else differs. Every later pass found that subscription out of sync and opened a transaction
    # locking its gathering invoice, to change nothing, for as long as the subscription stayed in
    # the passes (an edit of a live one: for ever).
    ns = "sb_issued_differs"
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1")
    await env.sync.sync(sub)
    env.clock.at = NOV + timedelta(hours=2)
    await env.worker().run_once()
    env.clock.at = NOV + timedelta(days=10)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("immediate"))
    await env.sync.sync(sub)
    synced: list[str] = []
    sync = env.sync.sync

    async def counted(subscription: Subscription) -> int:
        synced.append(subscription.id)
        return await sync(subscription)

    env.sync.sync = counted  # type: ignore[method-assign]
    env.clock.at = NOV + timedelta(days=11)
    assert await env.sync.sync_all() == 0
    assert synced == []


async def test_a_new_default_invoiced_by_another_app_keeps_paid_subscriptions_on_the_old_one(env: Env) -> None:
    """OpenMeter's handleDefaultProfileChange: when the new default profile's invoicing app is of
    another type, the customers that followed the old default and have a paid subscription's lines
    waiting are pinned to the old default, so their running subscriptions are not invoiced by
    another app mid-period; customers without such lines and already-pinned ones are left alone,
    and a new default of the same app type pins no one."""
    ns = "sb_default_change"
    env.clock.at = NOV
    paying = await subscribe(env, ns, "paying")
    patched = await subscribe(env, ns, "patched")
    for sub in (paying, patched):
        await env.sync.sync(sub)
    # An override without a profile follows the default: it is pinned, keeping its workflow.
    patch = WorkflowPatch(auto_advance=False)
    await env.profiles.upsert_override(ns, patched.customer_id, OverrideUpsertInput(workflow=patch))
    idle = await env.customers.create(ns, CustomerInput(name="idle", key="idle"))
    sandbox_default = await env.profiles.get_default(ns)

    erp, _ = await env.apps.install(ns, InstallAppInput(type="custom_invoicing", create_billing_profile=False))
    erp_apps = ProfileApps(erp.id, erp.id, erp.id)
    custom = await env.profiles.create(ns, ProfileCreateInput("ERP", sandbox_default.supplier, erp_apps, default=True))
    assert (await env.profiles.get_default(ns)).id == custom.profile.id

    for sub in (paying, patched):
        effective = await env.profiles.effective_profile(ns, sub.customer_id)
        assert effective.profile.id == sandbox_default.id
        assert effective.override is not None and effective.override.profile_id == sandbox_default.id
    kept = await env.profiles.effective_profile(ns, patched.customer_id)
    assert kept.override is not None and kept.override.workflow == patch and not kept.workflow.auto_advance
    unpaid = await env.profiles.effective_profile(ns, idle.id)
    assert unpaid.override is None and unpaid.profile.id == custom.profile.id

    # Another custom invoicing default: the same kind of app, so no one is pinned to "ERP".
    later = await subscribe(env, ns, "later")
    await env.sync.sync(later)
    again = await env.profiles.create(ns, ProfileCreateInput("ERP 2", sandbox_default.supplier, erp_apps, default=True))
    moved = await env.profiles.effective_profile(ns, later.customer_id)
    assert moved.override is None and moved.profile.id == again.profile.id


async def test_a_profile_mixing_apps_is_refused(env: Env) -> None:
    """OpenMeter: "all apps must be the same"; nothing is stored."""
    ns = "sb_mixed_apps"
    await env.customers.create(ns, CustomerInput(name="c", key="c"))
    default = await env.profiles.get_default(ns)
    erp, _ = await env.apps.install(ns, InstallAppInput(type="custom_invoicing", create_billing_profile=False))
    sandbox = default.apps.invoicing
    with pytest.raises(ValidationError) as refused:
        await env.profiles.create(
            ns, ProfileCreateInput("Mixed", default.supplier, ProfileApps(sandbox, erp.id, erp.id))
        )
    assert refused.value.violations[0].code == "apps_differ"
    profiles, total, _, _ = await env.profiles.list_profiles(ns, ListProfilesInput())
    assert total == 1 and [p.profile.id for p in profiles] == [default.id]


async def test_bill_full_period_bills_a_drafts_start_shortened_fee_in_full_when_its_period_becomes_the_last(
    env: Env,
) -> None:
    # Found by test_subscription_billing_properties. As on the gathering invoice (above), a draft's
    # subscription lines follow the subscription (OpenMeter's invoiceupdater: mutable standard
    # invoices are patched like gathering ones, the amount alone included: semanticProrateDecision).
    # Started Nov 21 on an anchor of the 1st, the Base fee (30, in advance) invoiced at once into a
    # draft waiting for approval at 10.00; canceled for Dec 1 under bill_full_period, the period
    # Nov 21 - Dec 1 is the last and bills 30 whole.
    ns = "sb_draft_full_period"
    start = NOV + timedelta(days=20)
    env.clock.at = start
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    patch = WorkflowPatch(auto_advance=False, subscription_end_proration_mode=ProrationMode.BILL_FULL_PERIOD)
    await env.profiles.upsert_override(ns, "c1", OverrideUpsertInput(workflow=patch))
    sub = await env.subscriptions.create(
        CreateSubscriptionInput(ns, PlanSelector("team"), customer_key="c1", billing_anchor=NOV)
    )
    await env.sync.sync(sub)
    env.clock.at = start + timedelta(hours=1)
    base = next(x for x in gathering_lines(await all_invoices(env, ns)) if x.name == "Base" and x.period_start == start)
    (draft,) = await env.invoices.invoice_now(ns, InvoiceNowInput(customer=sub.customer_id, line_ids=[base.id]))
    assert draft.invoice.status is InvoiceStatus.DRAFT and draft.invoice.totals.total == D("10.00")

    env.clock.at = start + timedelta(days=2)
    sub = await env.subscriptions.cancel(ns, sub.id, Timing("next_billing_cycle"))
    assert sub.active_to == DEC
    await env.sync.sync(sub)
    after = await env.invoices.get(ns, draft.invoice.id)
    (line,) = [x for x in after.lines if x.parent_line_id is None]
    assert (line.id, line.period_start, line.period_end, line.per_unit_amount) == (base.id, start, DEC, D(30))
    assert after.invoice.totals.total == D(30)
    assert await env.sync.sync(sub) == 0
