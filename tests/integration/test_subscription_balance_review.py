"""Balance lines (docs/billing.md, "Subscriptions: a flat fee's later version is billed net of what
was issued", "Balance lines") tried from more sides: chains of plan changes, a successor's net line
still on a draft, add-ons bought in several units, a yearly fee voided mid-year, racing syncs, and
the user's own edits of a balance line. Each test computes what the customer owes by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest_asyncio

from domain.billing.invoice_rest import line_rest
from domain.billing.invoice_states import Action, InvoiceStatus
from domain.billing.invoices import BALANCE_OF, InvoiceLine, InvoiceNowInput, InvoiceWithLines, LineType, ManagedBy
from domain.billing.models import OverrideUpsertInput, ProrationMode, WorkflowPatch
from domain.customers.models import CustomerInput
from domain.subscriptions.models import CreateSubscriptionInput, PlanSelector, Subscription, Timing
from domain.wiretime import rfc3339
from tests.integration.test_subscription_addon_extensions import BASE_PLUS_FIVE, Offers
from tests.integration.test_subscription_billing import (
    DEC,
    JAN,
    NOV,
    PLAN,
    D,
    Env,
    all_invoices,
    as_given,
    open_env,
    paying_later,
    sent_back,
)
from tests.integration.test_subscription_change_billing import MAX, PRO, change, issue_due
from tests.integration.test_subscription_change_billing_review import (
    FEB,
    YEARLY,
    VersionedPlans,
    balances,
    boosted,
    voided,
    voided_after_pro_was_netted,
)


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    offers = Offers()
    offers.add("boost", "single", BASE_PLUS_FIVE)  # +5.00 a month on the base fee
    offers.add("boosts", "multiple", BASE_PLUS_FIVE)  # +5.00 a month a unit
    async with open_env(VersionedPlans((PLAN, PRO, MAX, YEARLY), {}), addons=offers) as opened:
        yield opened


async def voidable_month(env: Env, ns: str, plan: str = "team", *, approve: bool = True) -> tuple[Subscription, str]:
    """Customer c1 invoiced through custom invoicing without sync hooks (an issued invoice waits for
    its payment, so it can still be voided), subscribed to `plan` on Nov 1 and its first fee
    issued (`approve` False: its invoices wait as drafts for approval, and this first one is
    approved here); the subscription and that invoice's ID."""
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    await paying_later(env, ns, "c1", None if approve else WorkflowPatch(auto_advance=False))
    env.clock.at = NOV
    sub = await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector(plan), customer_key="c1"))
    await env.sync.sync(sub)
    await issue_due(env)
    (invoice,) = [
        f
        for f in await all_invoices(env, ns)
        if f.invoice.status is not InvoiceStatus.GATHERING and any(x.period_start == NOV for x in f.lines)
    ]
    if invoice.invoice.status is InvoiceStatus.DRAFT:
        await env.invoices.act(ns, invoice.invoice.id, Action.APPROVE)
    return sub, invoice.invoice.id


def fees(found: list[InvoiceWithLines], *, voided_too: bool = False) -> list[InvoiceLine]:
    """The subscriptions' flat-fee lines (their own and balances) on invoices past gathering (not
    voided unless `voided_too`)."""
    return [
        x
        for f in found
        if f.invoice.status is not InvoiceStatus.GATHERING
        and (voided_too or f.invoice.status is not InvoiceStatus.VOIDED)
        for x in f.lines
        if x.parent_line_id is None and x.type is LineType.FLAT_FEE and x.subscription and x.deleted_at is None
    ]


async def charged(env: Env, ns: str, before: datetime = DEC) -> D:
    """What the customer is charged for good (invoices past gathering, voided ones left out) for the
    subscriptions' flat fees of the periods starting before `before`."""
    return sum((x.totals.total for x in fees(await all_invoices(env, ns)) if x.period_start < before), D(0))


async def invoice_of(env: Env, ns: str, subscription: Subscription) -> str:
    """The one invoice past gathering that holds a fee of `subscription`."""
    (found,) = {
        f.invoice.id
        for f in await all_invoices(env, ns)
        if f.invoice.status is not InvoiceStatus.GATHERING
        for x in f.lines
        if x.subscription and x.subscription.subscription_id == subscription.id and x.type is LineType.FLAT_FEE
    }
    return found


def gathering_balances(found: list[InvoiceWithLines]) -> list[InvoiceLine]:
    return [
        x
        for f in found
        if f.invoice.status is InvoiceStatus.GATHERING
        for x in f.lines
        if x.parent_line_id is None and BALANCE_OF in x.metadata and x.deleted_at is None
    ]


async def test_a_voided_invoice_bills_the_successors_draft_line_whole_and_no_balance(env: Env) -> None:
    # Invoices wait for approval. team's 30.00 issued Nov 1 (approved); pro from Nov 11 nets to
    # 20.00 on a draft (not sent yet); team's invoice voided. The draft still follows the fee: pro's
    # line is re-rated to its 40.00 for Nov 11 - Dec 1, and no balance is made beside it. Approved,
    # November charges 40.00.
    ns = "rb_draft"
    team, invoice_id = await voidable_month(env, ns, approve=False)
    at = NOV + timedelta(days=10)
    pro = await change(env, ns, team, "pro", at)
    await issue_due(env)
    (draft,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.DRAFT]
    assert [x.totals.total for x in draft.lines if x.parent_line_id is None and x.type is LineType.FLAT_FEE] == [D(20)]
    await voided(env, ns, invoice_id)
    assert await env.sync.sync(pro) == 1
    assert await env.sync.sync_all() == 0
    assert balances(await all_invoices(env, ns)) == []
    await env.invoices.act(ns, draft.invoice.id, Action.APPROVE)
    assert await charged(env, ns) == D(40)
    assert await env.sync.sync_all() == 0


async def test_a_balance_on_a_draft_stays_when_the_successor_is_canceled(env: Env) -> None:
    # Invoices wait for approval. pro's 20.00 (net of team's 20.00) issued, team's invoice voided,
    # the 20.00 balance collected onto a draft; pro canceled at once on Nov 16. The balance is past
    # gathering and stays (docs: once on a draft or later it stays): 40.00 for pro.
    ns = "rb_draft_balance_cancel"
    team, invoice_id = await voidable_month(env, ns, approve=False)
    at = NOV + timedelta(days=10)
    pro = await change(env, ns, team, "pro", at)
    await issue_due(env)
    (draft,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.DRAFT]
    await env.invoices.act(ns, draft.invoice.id, Action.APPROVE)
    await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 1
    await issue_due(env)
    assert [x[0] for x in balances(await all_invoices(env, ns))] == [InvoiceStatus.DRAFT]
    env.clock.at = NOV + timedelta(days=15)
    canceled = await env.subscriptions.cancel(ns, pro.id, Timing("immediate"))
    await env.sync.sync(canceled)
    assert await env.sync.sync_all() == 0
    assert [x[:2] for x in balances(await all_invoices(env, ns))] == [(InvoiceStatus.DRAFT, D(20))]


async def test_racing_syncs_make_one_balance_and_one_gathering_invoice(env: Env) -> None:
    # pro canceled at the next billing cycle, so once November is issued nothing is gathering (no
    # gathering invoice). team's invoice voided, then two syncs of pro and a pass at once: one
    # 20.00 balance on one new gathering invoice, and then nothing.
    ns = "rb_race"
    team, invoice_id = await voidable_month(env, ns)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    pro = await env.subscriptions.cancel(ns, pro.id, Timing("next_billing_cycle"))
    await env.sync.sync(pro)
    await issue_due(env)
    assert [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.GATHERING] == []
    await voided(env, ns, invoice_id)
    await asyncio.gather(env.sync.sync(pro), env.sync.sync(pro), env.sync.sync_all(), env.sync.sync_all())
    assert await env.sync.sync(pro) == 0
    assert await env.sync.sync_all() == 0
    found = await all_invoices(env, ns)
    assert len([f for f in found if f.invoice.status is InvoiceStatus.GATHERING]) == 1
    assert [x[:2] for x in balances(found)] == [(InvoiceStatus.GATHERING, D(20))]
    await issue_due(env)
    assert await charged(env, ns) == D(40)


async def test_an_add_on_of_two_units_netted_against_a_voided_invoice_bills_the_rest(env: Env) -> None:
    # Two +5.00 units bought on Nov 11 after team's 30.00 was issued: 40.00 x 20/30 = 26.67 for
    # Nov 11 - Dec 1 less the 20.00 team's line charged for those days, 6.67 (issued). November's
    # invoice voided: the new version is owed its 26.67, so a 20.00 balance (one unit of 20.00),
    # 26.67 charged in all.
    ns = "rb_units"
    team, invoice_id = await voidable_month(env, ns)
    env.clock.at = NOV + timedelta(days=10)
    team, _ = await env.subscriptions.create_addon(ns, team.id, "boosts", 2, Timing("immediate"))
    await env.sync.sync(team)
    await issue_due(env)
    assert await charged(env, ns) == D("36.67")
    await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 1
    (balance,) = gathering_balances(await all_invoices(env, ns))
    assert (balance.quantity, balance.per_unit_amount) == (D(1), D(20))
    await issue_due(env)
    assert await charged(env, ns) == D("26.67")
    assert await env.sync.sync_all() == 0


async def test_a_yearly_fee_voided_mid_year_bills_each_netted_month_its_balance(env: Env) -> None:
    # 365.00 for Nov 1, 2026 - Nov 1, 2027 issued (1.00 a day); pro (60.00 a month) from Nov 11:
    # Nov 11 - Dec 1 issued at 40.00 less 20.00, December 60.00 less 31.00, January the same. The
    # year's invoice voided on Jan 15: each issued month is owed whole, so balances of 20.00, 31.00
    # and 31.00 (pro: 40 + 60 + 60 = 160.00 for Nov 11 - Feb 1), and February, still gathering, is
    # billed whole (60.00, not 60.00 less 28.00).
    ns = "rb_yearly"
    yearly, invoice_id = await voidable_month(env, ns, "yearly")
    pro = await change(env, ns, yearly, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    for month in (DEC, JAN):
        env.clock.at = month
        await issue_due(env)
    assert await charged(env, ns, FEB) == D(365 + 20 + 29 + 29)
    env.clock.at = JAN + timedelta(days=14)
    await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 4  # three balances, February's line re-rated
    assert sorted(x.per_unit_amount for x in gathering_balances(await all_invoices(env, ns))) == [D(20), D(31), D(31)]
    assert await env.sync.sync(pro) == 0
    await issue_due(env)
    assert await charged(env, ns, FEB) == D(160)
    env.clock.at = FEB
    await issue_due(env)
    assert await charged(env, ns, FEB + timedelta(days=28)) == D(220)
    assert await env.sync.sync_all() == 0


async def test_a_balance_the_user_edits_on_the_gathering_invoice_is_left_alone(env: Env) -> None:
    # The 20.00 balance set to 15.00 through a PUT of the gathering invoice is the user's (managedBy
    # manual): the sync leaves it at 15.00 and makes no other.
    ns = "rb_user_edit"
    await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    (balance,) = gathering_balances(await all_invoices(env, ns))
    (gathering,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.GATHERING]
    others = [sent_back(x) for x in gathering.lines if x.parent_line_id is None and x.id != balance.id]
    edited = [(balance.id, as_given(balance, per_unit_amount=D(15)))]
    await env.invoices.update_lines(ns, gathering.invoice.id, [*others, *edited])
    assert await env.sync.sync_all() == 0
    (kept,) = gathering_balances(await all_invoices(env, ns))
    assert (kept.id, kept.managed_by, kept.per_unit_amount) == (balance.id, ManagedBy.MANUAL, D(15))


async def test_a_balance_the_user_deletes_is_not_made_again(env: Env) -> None:
    # The 20.00 balance left out of a PUT of the gathering invoice is deleted as the user's
    # (managedBy manual), as a subscription's own line the user removes is: the sync does not
    # bill it again (pro: 20.00 charged in the end, what the user decided).
    ns = "rb_user_delete"
    pro, _ = await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    (balance,) = gathering_balances(await all_invoices(env, ns))
    (gathering,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.GATHERING]
    others = [sent_back(x) for x in gathering.lines if x.parent_line_id is None and x.id != balance.id]
    await env.invoices.update_lines(ns, gathering.invoice.id, others)
    assert gathering_balances(await all_invoices(env, ns)) == []
    assert await env.sync.sync(pro) == 0
    assert await env.sync.sync_all() == 0
    assert gathering_balances(await all_invoices(env, ns)) == []

    # The gathering invoice deleted whole (its lines deleted as the user's): the same.
    ns = "rb_user_delete_invoice"
    pro, _ = await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    (gathering,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.GATHERING]
    await env.invoices.delete(ns, gathering.invoice.id)
    assert await env.sync.sync_all() == 0
    assert gathering_balances(await all_invoices(env, ns)) == []


async def test_the_rest_view_of_a_balance_line(env: Env) -> None:
    # Through the invoice API a balance is a flat-fee line of the subscription, managed by the
    # system, naming the fee it completes in its metadata and saying what it bills.
    ns = "rb_rest"
    pro, at = await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    (balance,) = gathering_balances(await all_invoices(env, ns))
    shown = json.loads(json.dumps(line_rest(balance), default=str))
    said = f"balance for {rfc3339(at)} - {rfc3339(DEC)}: 20.00 it was billed net of, on invoices since voided"
    assert (shown["managedBy"], shown["name"], shown["description"]) == ("system", "Base", said)
    assert shown["metadata"] == {BALANCE_OF: balance.metadata[BALANCE_OF]}
    assert BALANCE_OF in balance.metadata and balance.sync_key is None
    assert shown["subscription"]["subscription"]["id"] == pro.id
    assert (shown["period"]["from"], shown["period"]["to"]) == (rfc3339(at), rfc3339(DEC))
    assert (shown["price"], shown["quantity"]) == ({"type": "flat", "amount": "20", "paymentTerm": "in_advance"}, "1")


async def test_a_chain_with_the_first_invoice_voided_after_both_net_lines_bills_what_was_owed(env: Env) -> None:
    # team's 30.00 issued Nov 1; pro from Nov 11 (40.00 less team's 20.00: 20.00, issued); max from
    # Nov 21 (30.00 less team's 10.00 and half of pro's 20.00: 10.00, issued); team's invoice then
    # voided. Had the void come first, pro would have been issued 40.00 and max 30.00 less half of
    # it, 10.00: 50.00 for 10 days of pro (20.00) and 10 of max (30.00). pro's 20.00 charged 10.00
    # for its own ten days (max was netted of the rest), so pro owes 10.00 more, and max, netted of
    # team's 10.00 no more, 10.00 more: 20 + 10 + 10 + 10 = 50.00, not 40.00.
    ns = "rb_chain"
    team, invoice_id = await voidable_month(env, ns)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    await change(env, ns, pro, "max", NOV + timedelta(days=20))
    await issue_due(env)
    assert await charged(env, ns) == D(60)
    await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 2
    assert sorted(x[1] for x in balances(await all_invoices(env, ns))) == [D(10), D(10)]
    await issue_due(env)
    assert await charged(env, ns) == D(50)
    assert await env.sync.sync_all() == 0


async def test_a_chain_with_the_middle_invoice_voided_bills_the_last_fee_net_of_the_first(env: Env) -> None:
    # As above, but pro's invoice (its 20.00) voided instead: pro's line is forgiven whole, and max
    # owes 30.00 less team's 10.00, 20.00: 10.00 more. 30 + 10 + 10 = 50.00.
    ns = "rb_chain_middle"
    team, _ = await voidable_month(env, ns)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    pro_invoice = await invoice_of(env, ns, pro)
    await change(env, ns, pro, "max", NOV + timedelta(days=20))
    await issue_due(env)
    await voided(env, ns, pro_invoice)
    assert await env.sync.sync_all() == 1
    assert [x[1] for x in balances(await all_invoices(env, ns))] == [D(10)]
    await issue_due(env)
    assert await charged(env, ns) == D(50)
    assert await env.sync.sync_all() == 0


async def test_a_balance_still_gathering_when_the_successor_is_replaced_follows_its_shorter_time(env: Env) -> None:
    # pro's 20.00 issued net of team's, team's invoice voided (a 20.00 balance gathering), then pro
    # changed to max on Nov 21. pro is owed 20.00 for Nov 11-21 and its 20.00 line charged 10.00
    # of it (max is netted of the other 10.00): the balance becomes 10.00. max bills 30.00 less
    # pro's 10.00, 20.00. 20 + 10 + 20 = 50.00, what 10 days of pro and 10 of max cost (not 40.00).
    ns = "rb_gathering_then_max"
    pro, _ = await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    await change(env, ns, pro, "max", NOV + timedelta(days=20))
    assert await env.sync.sync_all() == 0
    said = f"balance for {rfc3339(NOV + timedelta(days=10))} - {rfc3339(NOV + timedelta(days=20))}: 10.00"
    ((status, amount, description),) = balances(await all_invoices(env, ns))
    assert (status, amount) == (InvoiceStatus.GATHERING, D(10))
    assert description is not None and description.startswith(said)
    await issue_due(env)
    assert await charged(env, ns) == D(50)
    assert await env.sync.sync_all() == 0


async def test_a_successor_replaced_after_its_balance_was_issued_is_netted_of_both(env: Env) -> None:
    # pro's 20.00 and its 20.00 balance issued (40.00 for Nov 11 - Dec 1), then max on Nov 21:
    # 30.00 less half of pro's 40.00, 10.00. 20 + 20 + 10 = 50.00, and no balance for pro (its
    # 40.00 charged 20.00 for its ten days, what they cost).
    ns = "rb_balance_then_max"
    pro, _ = await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    await issue_due(env)
    await change(env, ns, pro, "max", NOV + timedelta(days=20))
    await issue_due(env)
    assert await env.sync.sync_all() == 0
    assert await charged(env, ns) == D(50)


async def test_a_version_of_the_fee_issued_before_the_void_owes_its_own_time(env: Env) -> None:
    # team's 30.00 issued Nov 1; pro from Nov 11 (20.00, issued); +5.00 on pro on Nov 21: 21.67
    # less team's 10.00 and half of pro's 20.00, 1.67 (issued); team's invoice voided. Had the void
    # come first: pro 40.00, the add-on's version 21.67 less half of it, 1.67: 41.67. pro's 20.00
    # charged 10.00 for Nov 11-21 (the add-on's version was netted of the rest): 10.00 more; the
    # add-on's version, netted of team's 10.00 no more: 10.00 more. 20 + 1.67 + 10 + 10 = 41.67.
    ns = "rb_version"
    team, invoice_id = await voidable_month(env, ns)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    await boosted(env, ns, pro, NOV + timedelta(days=20))
    await issue_due(env)
    await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 2
    assert sorted(x[1] for x in balances(await all_invoices(env, ns))) == [D(10), D(10)]
    await issue_due(env)
    assert await charged(env, ns) == D("41.67")
    assert await env.sync.sync_all() == 0


async def test_two_invoices_voided_in_a_row_bill_each_version_its_own_time(env: Env) -> None:
    # team's 30.00 issued Nov 1 (invoice 1); +5.00 on Nov 5: 35.00 x 26/30 = 30.33 less team's 26.00,
    # 4.33 (invoice 2); pro on Nov 11: 40.00 less team's 20.00 and 20/26 of the 4.33, 16.67.
    # Invoice 1 voided: the add-on's version owes 7.00 for Nov 5-11 and its 4.33 charged 1.00 of
    # it (pro was netted of the rest): 6.00 more; pro, netted of team's 20.00 no more, 20.00 more.
    # 4.33 + 6 + 16.67 + 20 = 47.00, what 6 days with the add-on and 20 of pro cost (team's 4 days
    # forgiven).
    ns = "rb_two_voids"
    team, first = await voidable_month(env, ns)
    team = await boosted(env, ns, team, NOV + timedelta(days=4))
    await issue_due(env)
    (second,) = [
        f.invoice.id
        for f in await all_invoices(env, ns)
        if f.invoice.status is not InvoiceStatus.GATHERING
        and any(x.period_start == NOV + timedelta(days=4) for x in f.lines)
    ]
    await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    await voided(env, ns, first)
    assert await env.sync.sync_all() == 2
    assert sorted(x[1] for x in balances(await all_invoices(env, ns))) == [D(6), D(20)]
    await issue_due(env)
    assert await charged(env, ns) == D(47)
    assert await env.sync.sync_all() == 0
    # Invoice 2 voided as well: the add-on's version is forgiven whole (its own line voided), and
    # pro owes 40.00 less nothing: 16.67 + 20.00 + 3.33 more. 6.00's invoice is not voided and
    # stays charged: 46.00.
    await voided(env, ns, second)
    assert await env.sync.sync_all() == 1
    await issue_due(env)
    assert sorted(x[1] for x in balances(await all_invoices(env, ns))) == [D("3.33"), D(6), D(20)]
    assert await charged(env, ns) == D(46)
    assert await env.sync.sync_all() == 0


async def test_a_versions_balance_issued_first_does_not_credit_the_next_version(env: Env) -> None:
    # As above, invoice 1 voided, but the add-on's version is synced and its 6.00 balance (for
    # Nov 5-11, its own time) issued before pro is synced: pro is netted of 20/26 of the 4.33 its
    # line charged for Nov 5 - Dec 1, not of a share of the 6.00 too (spread with the line over
    # Nov 5 - Dec 1, it would credit pro 7.95 and its balance would be 15.38): 20.00 more, 47.00.
    ns = "rb_version_first"
    team, first = await voidable_month(env, ns)
    team = await boosted(env, ns, team, NOV + timedelta(days=4))
    await issue_due(env)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    await voided(env, ns, first)
    (ended,) = [s for s in await env.subscriptions.list_for_customer(ns, "c1") if s.id == team.id]
    assert await env.sync.sync(ended) == 1
    (balance,) = gathering_balances(await all_invoices(env, ns))
    # Invoiced at once, before a pass (which would sync pro first) could.
    await env.invoices.invoice_now(ns, InvoiceNowInput(pro.customer_id, line_ids=[balance.id]))
    assert balances(await all_invoices(env, ns))[0][:2] == (InvoiceStatus.PAYMENT_PROCESSING, D(6))
    assert await env.sync.sync(pro) == 1
    assert sorted(x[1] for x in balances(await all_invoices(env, ns))) == [D(6), D(20)]
    await issue_due(env)
    assert await charged(env, ns) == D(47)
    assert await env.sync.sync_all() == 0


async def test_a_balance_still_gathering_when_an_add_on_splits_the_fee_follows_its_shorter_time(env: Env) -> None:
    # pro's 20.00 issued net of team's, team's invoice voided (a 20.00 balance gathering), then
    # +5.00 on pro on Nov 21: pro's first version is owed 20.00 for Nov 11-21 and its 20.00 line
    # charged 10.00 of it, so its balance becomes 10.00; the add-on's version bills 21.67 less the
    # other 10.00 of pro's line, 11.67. 20 + 10 + 11.67 = 41.67, what 10 days of pro and 10 with
    # the add-on cost (not 31.67).
    ns = "rb_gathering_then_addon"
    pro, _ = await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    await boosted(env, ns, pro, NOV + timedelta(days=20))
    assert [x[:2] for x in balances(await all_invoices(env, ns))] == [(InvoiceStatus.GATHERING, D(10))]
    await issue_due(env)
    assert await charged(env, ns) == D("41.67")
    assert await env.sync.sync_all() == 0


async def test_a_deleted_draft_gives_its_balance_back_to_the_gathering_invoice(env: Env) -> None:
    # Invoices wait for approval. pro's 20.00 issued net of team's, team's invoice voided, the
    # 20.00 balance collected onto a draft that is then deleted: the balance goes back to the
    # gathering invoice, still 20.00 and still the system's, and the sync makes no second one.
    ns = "rb_draft_deleted"
    team, invoice_id = await voidable_month(env, ns, approve=False)
    await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    (draft,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.DRAFT]
    await env.invoices.act(ns, draft.invoice.id, Action.APPROVE)
    await voided(env, ns, invoice_id)
    await env.sync.sync_all()
    await issue_due(env)
    (draft,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.DRAFT]
    assert [x.metadata.get(BALANCE_OF) is not None for x in draft.lines if x.parent_line_id is None] == [True]
    await env.invoices.delete(ns, draft.invoice.id)
    assert await env.sync.sync_all() == 0
    (balance,) = gathering_balances(await all_invoices(env, ns))
    assert (balance.managed_by, balance.per_unit_amount) == (ManagedBy.SYSTEM, D(20))
    assert [x[:2] for x in balances(await all_invoices(env, ns))] == [(InvoiceStatus.GATHERING, D(20))]


async def whole_periods(env: Env, ns: str) -> None:
    """The customer's workflow switched to bill the period a subscription ends in whole
    (bill_full_period), its billing profile kept."""
    effective = await env.profiles.effective_profile(ns, "c1")
    whole = WorkflowPatch(subscription_end_proration_mode=ProrationMode.BILL_FULL_PERIOD)
    await env.profiles.upsert_override(ns, "c1", OverrideUpsertInput(profile_id=effective.profile.id, workflow=whole))


async def test_a_workflow_switched_to_bill_full_period_keeps_what_a_void_took_back(env: Env) -> None:
    # pro's 40.00 for Nov 11 - Dec 1 issued as 20.00 net of team's 20.00, team's invoice voided:
    # a 20.00 balance gathering. The workflow then bills a replaced plan's cut period whole, so
    # team's line is no credit for pro's days any more: pro is owed 40.00 either way, and the
    # balance stays 20.00 (40.00 in all, not 20.00: the switch alone moves nothing issued, the
    # void's take-back is still owed).
    ns = "rb_switch_after_void"
    await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    await whole_periods(env, ns)
    assert await env.sync.sync_all() == 0
    assert [x[:2] for x in balances(await all_invoices(env, ns))] == [(InvoiceStatus.GATHERING, D(20))]
    await issue_due(env)
    assert await charged(env, ns) == D(40)

    # The workflow switched first, team's invoice voided after: the same 20.00 balance.
    ns = "rb_switch_before_void"
    team, invoice_id = await voidable_month(env, ns)
    await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    await whole_periods(env, ns)
    assert await env.sync.sync_all() == 0
    await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 1
    await issue_due(env)
    assert await charged(env, ns) == D(40)
    assert await env.sync.sync_all() == 0


async def test_a_balance_is_billed_once_where_the_fee_is_owed_more_than_the_void_took_back(env: Env) -> None:
    # The workflow bills the period a subscription ends in whole. team's 30.00 issued Nov 1; +5.00
    # on Nov 11: 35.00 x 20/30 = 23.33 less team's 20.00, 3.33 (issued); canceled at once on Nov
    # 21, so that version is owed its period whole (35.00), but its line stays as issued. Team's
    # invoice voided: the version's line is owed as it would have been issued had the void come
    # first, 23.33, so a 20.00 balance, once: 23.33, as when the end is prorated. Until 2026-12-08
    # it was judged on the version's ten days (10.00, 13.33: less than prorating bills), and as the
    # fee is still owed more than it was billed (the end's whole period moves nothing issued), only
    # the balances billed already stop a second one: without them, every pass billed it again.
    ns = "rb_whole_after_cut"
    team, invoice_id = await voidable_month(env, ns)
    await whole_periods(env, ns)
    team = await boosted(env, ns, team, NOV + timedelta(days=10))
    await issue_due(env)
    env.clock.at = NOV + timedelta(days=20)
    canceled = await env.subscriptions.cancel(ns, team.id, Timing("immediate"))
    await env.sync.sync(canceled)
    await issue_due(env)
    assert balances(await all_invoices(env, ns)) == []
    await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 1
    await issue_due(env)
    assert [x[:2] for x in balances(await all_invoices(env, ns))] == [(InvoiceStatus.PAYMENT_PROCESSING, D(20))]
    assert await env.sync.sync_all() == 0
    await issue_due(env)
    assert await charged(env, ns) == D("23.33")
