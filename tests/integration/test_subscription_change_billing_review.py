"""Plan changes' netting (docs/billing.md, "Subscriptions: a flat fee's later version is billed net
of what was issued") tried from more sides: a scheduled change, a migration, proration off in
either plan, the replaced invoice voided or still a draft, cadences that differ, add-ons on either
subscription, a change at a period's start or twice at one instant, a workflow switched, racing
syncs. Each test computes what the customer owes by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from domain.billing.invoice_states import Action, InvoiceStatus
from domain.billing.invoices import (
    BALANCE_OF,
    InvoiceNowInput,
    InvoiceWithLines,
    LineType,
    VoidAction,
    VoidInput,
    VoidLineAction,
)
from domain.billing.models import OverrideUpsertInput, ProrationMode, WorkflowPatch
from domain.customers.models import CustomerInput
from domain.errors import ValidationError
from domain.subscriptions import edits
from domain.subscriptions.models import (
    ChangeSubscriptionInput,
    CreateSubscriptionInput,
    PlanSelector,
    Subscription,
    Timing,
)
from domain.subscriptions.ports import PlanView
from domain.wiretime import rfc3339
from tests.integration.test_subscription_addon_extensions import BASE_PLUS_FIVE, Offers
from tests.integration.test_subscription_billing import (
    DEC,
    JAN,
    NOV,
    PLAN,
    TRIAL_PLAN,
    D,
    Env,
    Plans,
    all_invoices,
    as_given,
    open_env,
    paying_later,
    published,
    subscribe,
)
from tests.integration.test_subscription_change_billing import (
    DUO,
    MAX,
    PRO,
    _monthly,
    change,
    issue_due,
    issued_fees,
    issued_team_month,
)

FEB = JAN.replace(month=2)


def _without_proration(body: dict[str, Any], key: str) -> dict[str, Any]:
    """`body` under `key`, its fees billed whole for a partial period (proRatingConfig off)."""
    return {**body, "key": key, "proRatingConfig": {"enabled": False, "mode": "prorate_prices"}}


def _yearly(key: str, amount: str) -> dict[str, Any]:
    """An in-advance base fee of `amount` a year (billing cadence a year too)."""
    plan = _monthly(key, "base", amount)
    plan["billingCadence"] = "P1Y"
    plan["phases"][0]["rateCards"][0]["billingCadence"] = "P1Y"
    return plan


SEATS = {
    "type": "flat_fee",
    "key": "seats",
    "name": "Seats",
    "billingCadence": "P1M",
    "price": {"type": "flat", "amount": "10", "paymentTerm": "in_advance"},
}
# team's 30.00 and pro's 60.00 a month, billed whole for part of a month; 365.00 a year (1.00 a
# day from Nov 1, 2026 to Nov 1, 2027).
TEAM_WHOLE, PRO_WHOLE = _without_proration(PLAN, "team_whole"), _without_proration(PRO, "pro_whole")
YEARLY = _yearly("yearly", "365")
# Version 2 of the team plan: its base fee at 45.00 a month.
TEAM_V2 = _monthly("team", "base", "45")


class VersionedPlans(Plans):
    """Plans, and later versions of some, asked for by version only (a plan asked for without one
    is its version 1, as for the other tests' plans)."""

    def __init__(self, bodies: tuple[dict[str, Any], ...], later: dict[int, dict[str, Any]]) -> None:
        super().__init__(bodies)
        self.versions: dict[tuple[str, int], PlanView] = {(key, 1): view for key, view in self.views.items()}
        for version, body in later.items():
            self.versions[(str(body["key"]), version)] = published(body, version)

    async def active_plan(self, namespace: str, key: str, version: int | None) -> PlanView:
        if version is None:
            return await super().active_plan(namespace, key, None)
        return self.versions[(key, version)]


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    offers = Offers()
    offers.add("boost", "single", BASE_PLUS_FIVE)  # +5.00 a month on the base fee
    offers.add("seats", "single", SEATS)  # an item of its own, 10.00 a month in advance
    plans = VersionedPlans((PLAN, PRO, MAX, DUO, TEAM_WHOLE, PRO_WHOLE, YEARLY, TRIAL_PLAN), {2: TEAM_V2})
    async with open_env(plans, addons=offers) as opened:
        yield opened


async def november(env: Env, ns: str) -> D:
    """What the customer was invoiced for November's fees, once everything due is issued."""
    return sum((x[3] for x in await issued_fees(env, ns)), D(0))


async def pro_from_december(env: Env, ns: str) -> tuple[Subscription, Subscription]:
    """team's November issued (issued_team_month), and on Nov 11 a change to pro scheduled for the
    next billing cycle (Dec 1), both synced: team and pro."""
    team = await issued_team_month(env, ns)
    env.clock.at = NOV + timedelta(days=10)
    ended, pro = await env.subscriptions.change(
        ChangeSubscriptionInput(ns, team.id, PlanSelector("pro"), Timing("next_billing_cycle"))
    )
    for sub in (ended, pro):
        await env.sync.sync(sub)
    return ended, pro


async def test_a_change_at_the_next_billing_cycle_bills_the_new_fee_whole_from_then(env: Env) -> None:
    # team's November 30.00 issued on Nov 1; on Nov 11 a change to pro is scheduled for Dec 1.
    # Nothing of the two overlaps: November stays 30.00, December is pro's 60.00 whole, and
    # neither sync moves anything again.
    ns = "rv_next"
    _, pro = await pro_from_december(env, ns)
    assert await env.sync.sync(pro) == 0
    env.clock.at = DEC
    await issue_due(env)
    assert await env.sync.sync_all() == 0
    assert await issued_fees(env, ns, JAN) == [("pro", DEC, JAN, D(60)), ("team", NOV, DEC, D(30))]


async def test_a_replaced_plan_without_proration_is_owed_whole_issued_or_not(env: Env) -> None:
    # team_whole bills 30.00 for any part of a month. Changed to pro on Nov 11 while November's
    # line is still gathering, team_whole's line is cut to Nov 1-11 and billed whole, 30.00, beside
    # pro's 40.00: 70.00. Issued on Nov 1 first, it is the same 30.00 owed whole for Nov 1-11, so
    # it is no credit for pro's days (as under bill_full_period): 70.00 too, not 30.00 + 20.00.
    env.clock.at = NOV
    gathering = await subscribe(env, "rv_whole_g", "c1", "team_whole")
    await env.sync.sync(gathering)
    at = NOV + timedelta(days=10)
    await change(env, "rv_whole_g", gathering, "pro", at)
    await issue_due(env)
    assert await issued_fees(env, "rv_whole_g") == [("pro", at, DEC, D(40)), ("team_whole", NOV, at, D(30))]

    issued = await issued_team_month(env, "rv_whole_i", "team_whole")
    await change(env, "rv_whole_i", issued, "pro", at)
    await issue_due(env)
    assert await november(env, "rv_whole_i") == D(70)


async def test_a_new_plan_without_proration_does_not_pay_the_replaced_plans_issued_days_twice(env: Env) -> None:
    # team prorates: changed on Nov 11 with November still gathering, its line is cut to 10.00,
    # and pro_whole bills 60.00 for Nov 11 - Dec 1 (whole, no proration): 70.00. Issued on Nov 1
    # first, team's 30.00 already charged 20.00 for Nov 11 - Dec 1, so pro_whole's 60.00 should
    # bill 40.00 beside it (70.00 again), not 60.00 (90.00: those 20 days paid twice).
    env.clock.at = NOV
    gathering = await subscribe(env, "rv_new_whole_g", "c1")
    await env.sync.sync(gathering)
    at = NOV + timedelta(days=10)
    await change(env, "rv_new_whole_g", gathering, "pro_whole", at)
    await issue_due(env)
    assert await november(env, "rv_new_whole_g") == D(70)

    issued = await issued_team_month(env, "rv_new_whole_i")
    await change(env, "rv_new_whole_i", issued, "pro_whole", at)
    await issue_due(env)
    assert await november(env, "rv_new_whole_i") == D(70)


async def unpaid_team_month(
    env: Env, ns: str, *, approve: bool = True, full_period_at_end: bool = False
) -> tuple[Subscription, str]:
    """Customer c1 invoiced through custom invoicing without sync hooks (an issued invoice waits
    for its payment, so it can still be voided), subscribed to team on Nov 1 and November's 30.00
    issued (or, without `approve`, on a draft waiting for approval; with `full_period_at_end`, its
    workflow bills the period a subscription ends in whole); the subscription and that invoice's
    ID."""
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    workflow = WorkflowPatch(
        auto_advance=None if approve else False,
        subscription_end_proration_mode=ProrationMode.BILL_FULL_PERIOD if full_period_at_end else None,
    )
    await paying_later(env, ns, "c1", workflow)
    env.clock.at = NOV
    team = await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector("team"), customer_key="c1"))
    await env.sync.sync(team)
    await issue_due(env)
    invoice_id = (await billing_from(env, ns, NOV)).invoice.id
    return team, invoice_id


async def billing_from(env: Env, ns: str, start: datetime) -> InvoiceWithLines:
    """The one invoice past gathering with a line whose period starts at `start`."""
    (found,) = [
        f
        for f in await all_invoices(env, ns)
        if f.invoice.status is not InvoiceStatus.GATHERING and any(x.period_start == start for x in f.lines)
    ]
    return found


async def pro_issued_after_team(
    env: Env, ns: str, *, full_period_at_end: bool = False
) -> tuple[str, Subscription, datetime]:
    """team's month issued unpaid (unpaid_team_month), changed to pro on Nov 11 and pro's fee for
    Nov 11 - Dec 1 issued (net of team's, unless the workflow bills the period a subscription ends
    in whole): team's invoice's ID, pro and the change's time."""
    team, invoice_id = await unpaid_team_month(env, ns, full_period_at_end=full_period_at_end)
    at = NOV + timedelta(days=10)
    pro = await change(env, ns, team, "pro", at)
    await issue_due(env)
    return invoice_id, pro, at


async def voided(env: Env, ns: str, invoice_id: str) -> None:
    """The payment app voids the invoice (nothing it charged is owed any more)."""
    await env.invoices.app_callback(ns, invoice_id, Action.PAYMENT_VOID)
    (found,) = [f for f in await all_invoices(env, ns) if f.invoice.id == invoice_id]
    assert found.invoice.status is InvoiceStatus.VOIDED


PENDING = VoidAction(VoidLineAction.PENDING)


async def billed(env: Env, ns: str) -> list[tuple[str, datetime, datetime, D]]:
    """What the customer is charged for, per subscription line that charges anything, on invoices
    past gathering and not voided: (plan, start, end, total), balances with the fee they complete."""
    by_subscription = {s.id: s.plan.key for s in await env.subscriptions.list_for_customer(ns, "c1") if s.plan}
    return sorted(
        (by_subscription[x.subscription.subscription_id], x.period_start, x.period_end, x.totals.total)
        for f in await all_invoices(env, ns)
        if f.invoice.status not in (InvoiceStatus.GATHERING, InvoiceStatus.VOIDED, InvoiceStatus.DELETED)
        for x in f.lines
        if x.parent_line_id is None and x.subscription is not None and x.deleted_at is None and x.totals.total
    )


async def test_a_subscriptions_month_voided_with_pending_is_billed_again(env: Env) -> None:
    # team's 30.00 for November, voided to bill it again (a wrong address, say): the void makes
    # the month's line again at once, and it is billed as it was. Synced again: nothing more.
    ns = "rv_pending_month"
    team, invoice_id = await unpaid_team_month(env, ns)
    voided = await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    assert [x.void_action for x in voided.lines if x.parent_line_id is None] == [VoidLineAction.PENDING]
    (again,) = [
        (x.period_start, x.period_end, x.per_unit_amount)
        for f in await all_invoices(env, ns)
        if f.invoice.status is InvoiceStatus.GATHERING
        for x in f.lines
        if x.type is LineType.FLAT_FEE and x.period_start == NOV
    ]
    assert again == (NOV, DEC, D(30))
    assert await env.sync.sync(team) == 0
    await issue_due(env)
    assert await billed(env, ns) == [("team", NOV, DEC, D(30))]
    assert await env.sync.sync_all() == 0


async def test_a_replaced_month_voided_with_pending_bills_the_plans_own_time_and_the_rest(env: Env) -> None:
    # team's 30.00 issued, changed to pro on Nov 11 and pro's 40.00 issued as 20.00 net of team's
    # 20.00 for Nov 11 - Dec 1; then team's invoice voided to bill it again. team is now owed
    # 10.00 for its ten days (its line made again as the change cut it), and pro's netting against
    # a charge that is gone is billed as a balance of 20.00: 50.00 for November, as had the void
    # come first (discarded instead, team's ten days would be forgiven: 40.00).
    ns = "rv_pending_replaced"
    invoice_id, pro, at = await pro_issued_after_team(env, ns)
    await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    await env.sync.sync_all()
    await issue_due(env)
    assert await billed(env, ns) == [("pro", at, DEC, D(20)), ("pro", at, DEC, D(20)), ("team", NOV, at, D(10))]
    assert [x[1] for x in balances(await all_invoices(env, ns))] == [D(20)]
    assert await env.sync.sync_all() == 0
    assert await env.sync.sync(pro) == 0


@pytest.mark.parametrize("balance_forgiven", [False, True])
async def test_a_net_line_billed_again_after_its_balance_bills_the_fee_less_that_balance(
    env: Env, balance_forgiven: bool
) -> None:
    # As above (team's ten days 10.00, pro's 20.00 net line and its balance of 20.00 issued), then
    # pro's net line voided with pending too: made again, it bills pro's 40.00 less the balance
    # that charges for that time, 20.00. 50.00 for November; the line made again at 40.00 billed
    # 70.00 (found by the billing property test's voids). The same when the invoice of the balance
    # (and of team's ten days made again) was forgiven first: what the balance charged was owed
    # (the void let the customer off it), so 20.00 billed and 30.00 forgiven; the line made again
    # billed 40.00 there, the forgiven 20.00 a second time (found by the property test too).
    ns = f"rv_pending_net_after_{'forgiven_' if balance_forgiven else ''}balance"
    invoice_id, _, at = await pro_issued_after_team(env, ns)
    pro_invoice = (await billing_from(env, ns, at)).invoice.id
    await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    await env.sync.sync_all()
    await issue_due(env)
    if balance_forgiven:
        (balance_invoice,) = [
            f.invoice.id for f in await all_invoices(env, ns) if any(BALANCE_OF in x.metadata for x in f.lines)
        ]
        await voided(env, ns, balance_invoice)
    await env.invoices.void(ns, pro_invoice, VoidInput("wrong address", PENDING))
    await env.sync.sync_all()
    await issue_due(env)
    balance_and_team = [] if balance_forgiven else [("pro", at, DEC, D(20)), ("team", NOV, at, D(10))]
    assert sorted(await billed(env, ns)) == sorted([("pro", at, DEC, D(20)), *balance_and_team])
    assert await env.sync.sync_all() == 0


async def test_a_fee_billed_whole_owes_no_balance_when_the_month_before_it_is_billed_again(env: Env) -> None:
    # The workflow bills the period a subscription ends in whole from the start: team's 30.00
    # stays whole when changed to pro on Nov 11, and pro's 40.00 for Nov 11 - Dec 1 is billed
    # net of nothing. pro canceled on Nov 21 is owed its whole month now, but its issued line
    # stays. team's invoice then voided with pending: team's month is made again, 30.00, and pro
    # owes nothing more, 70.00 for November. pro was billed a balance of 20.00, as if it had been
    # netted of team's month (found by the billing property test).
    ns = "rv_pending_whole"
    invoice_id, pro, at = await pro_issued_after_team(env, ns, full_period_at_end=True)
    assert await billed(env, ns) == [("pro", at, DEC, D(40)), ("team", NOV, DEC, D(30))]
    env.clock.at = NOV + timedelta(days=20)
    pro = await env.subscriptions.cancel(ns, pro.id, Timing("immediate"))
    await env.sync.sync(pro)
    await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    await env.sync.sync_all()
    await issue_due(env)
    assert await billed(env, ns) == [("pro", at, DEC, D(40)), ("team", NOV, at, D(30))]
    assert balances(await all_invoices(env, ns)) == []
    assert await env.sync.sync(pro) == 0


async def test_a_month_billed_again_then_replaced_nets_the_line_billed_again_and_nothing_more(env: Env) -> None:
    # team's 30.00 voided on Nov 5 to bill it again (30.00 again), then changed to pro on Nov 11:
    # pro's 40.00 is netted of the 20.00 the month billed again charged for its time, and the
    # voided line, whose charge is billed again, takes nothing back from it: no balance, 50.00.
    ns = "rv_pending_then_change"
    team, invoice_id = await unpaid_team_month(env, ns)
    env.clock.at = NOV + timedelta(days=4)
    await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    await issue_due(env)
    at = NOV + timedelta(days=10)
    pro = await change(env, ns, team, "pro", at)
    await issue_due(env)
    await env.sync.sync_all()
    await issue_due(env)
    assert await billed(env, ns) == [("pro", at, DEC, D(20)), ("team", NOV, DEC, D(30))]
    assert balances(await all_invoices(env, ns)) == []
    assert await env.sync.sync(pro) == 0


async def net_line_billed_again(env: Env, ns: str) -> tuple[str, datetime]:
    """team's 30.00 issued, changed to pro on Nov 11, pro's 20.00 (net of team's) issued, voided
    with pending and issued again: team's invoice's ID and the change's time."""
    team_invoice, _, at = await pro_issued_after_team(env, ns)
    pro_invoice = (await billing_from(env, ns, at)).invoice.id
    await env.invoices.void(ns, pro_invoice, VoidInput("wrong address", PENDING))
    await issue_due(env)
    return team_invoice, at


async def test_a_net_line_voided_with_pending_is_netted_again(env: Env) -> None:
    # pro's 20.00 (net of team's issued 30.00) voided to bill it again: made again, netted as
    # before, 20.00; team's month stands. 50.00 for November.
    ns = "rv_pending_net"
    _, at = await net_line_billed_again(env, ns)
    assert await billed(env, ns) == [("pro", at, DEC, D(20)), ("team", NOV, DEC, D(30))]
    assert balances(await all_invoices(env, ns)) == []
    assert await env.sync.sync_all() == 0


async def test_a_net_line_billed_again_then_its_replaced_month_discarded_bills_the_rest(env: Env) -> None:
    # pro's 20.00 voided and billed again (20.00, net of team's 30.00), then team's invoice voided
    # (discarded): the line billed again, not the one voided, is pro's, so pro is still owed what
    # team's charge took off it, 20.00, as had team's void come first (pro's 40.00 whole).
    ns = "rv_pending_then_discard"
    team_invoice, at = await net_line_billed_again(env, ns)
    await voided(env, ns, team_invoice)
    await env.sync.sync_all()
    await issue_due(env)
    assert await billed(env, ns) == [("pro", at, DEC, D(20)), ("pro", at, DEC, D(20))]
    assert [x[1] for x in balances(await all_invoices(env, ns))] == [D(20)]
    assert await env.sync.sync_all() == 0


async def test_a_usage_period_voided_with_pending_reads_its_usage_again(env: Env) -> None:
    # December's invoice: its 30.00 in advance and November's 1,000 api calls (10.00), voided to
    # bill it again after 500 more calls of November were stored: made again, the calls read
    # again, 45.00.
    ns = "rv_pending_usage"
    team, _ = await unpaid_team_month(env, ns)
    env.usage.add("api", team.customer_id, NOV + timedelta(days=4), "1000")
    env.clock.at = DEC
    await env.sync.sync_all()
    await issue_due(env)
    december = await billing_from(env, ns, DEC)
    assert december.invoice.totals.total == D(40)
    env.usage.add("api", team.customer_id, NOV + timedelta(days=6), "500")
    await env.invoices.void(ns, december.invoice.id, VoidInput("wrong address", PENDING))
    await issue_due(env)
    assert await billed(env, ns) == [
        ("team", NOV, DEC, D(15)),
        ("team", NOV, DEC, D(30)),
        ("team", DEC, JAN, D(30)),
    ]


async def calls_invoiced_now(env: Env, ns: str) -> tuple[Subscription, str]:
    """team's month (unpaid_team_month) and 1,000 api calls on Nov 5, billed by invoice-now on
    Nov 10 (10.00) and issued; 500 more calls on Nov 21. The subscription and that invoice's ID."""
    team, _ = await unpaid_team_month(env, ns)
    env.usage.add("api", team.customer_id, NOV + timedelta(days=4), "1000")
    env.clock.at = NOV + timedelta(days=9)
    (now,) = await env.invoices.invoice_now(ns, InvoiceNowInput(team.customer_id))
    await issue_due(env)
    env.usage.add("api", team.customer_id, NOV + timedelta(days=20), "500")
    return team, now.invoice.id


async def test_usage_parts_voided_with_pending_are_billed_again_while_the_periods_other_part_stands(
    env: Env,
) -> None:
    # November's api calls billed in two parts: 1,000 by invoice-now on Nov 10 (10.00), 500 more
    # with the month (5.00, on December's invoice). December's invoice voided to bill it again:
    # the month's part is made again over its own time while Nov 10's stands, 5.00 (it was never
    # billed again: the sync compared the period's whole time with the part still standing; found
    # by the billing property test). Then Nov 10's invoice voided too: its part made again, 10.00.
    ns = "rv_pending_usage_parts"
    _, invoiced_now = await calls_invoiced_now(env, ns)
    env.clock.at = DEC
    await env.sync.sync_all()
    await issue_due(env)
    (december,) = [f.invoice.id for f in await all_invoices(env, ns) if f.invoice.created_at >= DEC]
    calls = [
        ("team", NOV, NOV + timedelta(days=9), D(10)),
        ("team", NOV, DEC, D(30)),
        ("team", NOV + timedelta(days=9), DEC, D(5)),
    ]
    assert [x for x in await billed(env, ns) if x[1] < DEC] == calls
    for voided_now in (december, invoiced_now):
        await env.invoices.void(ns, voided_now, VoidInput("wrong address", PENDING))
        await issue_due(env)
        assert [x for x in await billed(env, ns) if x[1] < DEC] == calls
        assert await env.sync.sync_all() == 0


async def test_a_part_voided_with_pending_while_the_rest_of_its_period_gathers_is_billed_with_it(
    env: Env,
) -> None:
    # Nov 10's part (10.00) voided to bill it again while the rest of November still gathers: the
    # gathering part takes the whole month, and December's invoice bills the 1,500 calls, 15.00,
    # in one line (making the part again beside it failed on the sync key's unique index).
    ns = "rv_pending_usage_gathering"
    _, invoiced_now = await calls_invoiced_now(env, ns)
    await env.invoices.void(ns, invoiced_now, VoidInput("wrong address", PENDING))
    assert await env.sync.sync_all() == 0
    env.clock.at = DEC
    await issue_due(env)
    assert [x for x in await billed(env, ns) if x[1] < DEC] == [("team", NOV, DEC, D(15)), ("team", NOV, DEC, D(30))]
    assert await env.sync.sync_all() == 0


async def test_a_line_the_user_edited_voided_with_pending_is_billed_again_as_edited(env: Env) -> None:
    # November's fee set to 25.00 on its draft (so managedBy manual: the user's, which the sync
    # leaves alone), issued, then voided to bill it again: billed again at 25.00, not as the plan
    # says (30.00), and the sync still leaves it alone.
    ns = "rv_pending_edited"
    await unpaid_team_month(env, ns, approve=False)
    (draft,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.DRAFT]
    (fee,) = [x for x in draft.lines if x.parent_line_id is None and x.type is LineType.FLAT_FEE]
    await env.invoices.update_lines(ns, draft.invoice.id, [(fee.id, as_given(fee, per_unit_amount=D(25)))])
    await env.invoices.act(ns, draft.invoice.id, Action.APPROVE)
    await env.invoices.void(ns, draft.invoice.id, VoidInput("wrong address", PENDING))
    assert await env.sync.sync_all() == 0
    await issue_due(env)
    assert await billed(env, ns) == [("team", NOV, DEC, D(25))]
    assert await env.sync.sync_all() == 0


async def test_a_time_to_bill_a_subscriptions_line_again_is_refused(env: Env) -> None:
    # The sync makes a subscription's line again at once, as its plan says: a nextInvoiceAt for it
    # is refused, naming the line and its subscription, and the invoice stays as it was.
    ns = "rv_pending_later"
    team, invoice_id = await unpaid_team_month(env, ns)
    (fee,) = [x for x in (await env.invoices.get(ns, invoice_id)).lines if x.parent_line_id is None]
    later = VoidAction(VoidLineAction.PENDING, DEC)
    for request, field in (
        (VoidInput("wrong plan", later), "action.action.nextInvoiceAt"),
        (VoidInput("wrong plan", VoidAction(), {fee.id: later}), "overrides[0].action.action.nextInvoiceAt"),
    ):
        with pytest.raises(ValidationError) as refused:
            await env.invoices.void(ns, invoice_id, request)
        (violation,) = refused.value.violations
        assert violation.field == field and fee.id in violation.message and team.id in violation.message
        assert (await env.invoices.get(ns, invoice_id)).invoice.status is not InvoiceStatus.VOIDED


async def test_a_replaced_invoice_voided_before_the_net_line_is_issued_takes_the_netting_back(env: Env) -> None:
    # team's 30.00 issued Nov 1, pro from Nov 11 nets to 20.00 (gathering). team's invoice voided:
    # it charged nothing, so pro's 40.00 for Nov 11 - Dec 1 is billed whole.
    ns = "rv_void_before"
    team, invoice_id = await unpaid_team_month(env, ns)
    at = NOV + timedelta(days=10)
    pro = await change(env, ns, team, "pro", at)
    await voided(env, ns, invoice_id)
    assert await env.sync.sync(pro) == 1
    assert await env.sync.sync(pro) == 0
    await issue_due(env)
    assert [x for x in await issued_fees(env, ns) if x[0] == "pro"] == [("pro", at, DEC, D(40))]


@pytest.mark.parametrize("pending", [False, True])
async def test_a_replaced_invoice_voided_after_pooled_fees_were_netted_bills_each_its_share(
    env: Env, pending: bool
) -> None:
    # team's 30.00 (unpaid) -> duo on Nov 11: its fees issued net of their shares of team's 20.00
    # for Nov 11 - Dec 1 (extra 3.81, platform 22.86). team's invoice voided: each fee is owed the
    # share it was netted of as a balance (2.86 and 17.14), so duo's 46.67 is billed in all; voided
    # to bill it again, team's ten days are billed again too (10.00).
    ns = f"rv_void_pooled_{pending}"
    team, invoice_id = await unpaid_team_month(env, ns)
    at = NOV + timedelta(days=10)
    await change(env, ns, team, "duo", at)
    await issue_due(env)
    if pending:
        await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    else:
        await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 2
    await issue_due(env)
    assert sorted(x[1] for x in balances(await all_invoices(env, ns))) == [D("2.86"), D("17.14")]
    team_again = [("team", NOV, at, D(10))] if pending else []
    assert await billed(env, ns) == [
        ("duo", at, DEC, D("2.86")),
        ("duo", at, DEC, D("3.81")),
        ("duo", at, DEC, D("17.14")),
        ("duo", at, DEC, D("22.86")),
        *team_again,
    ]
    assert await env.sync.sync_all() == 0


def balances(found: list[InvoiceWithLines]) -> list[tuple[InvoiceStatus, D, str | None]]:
    """The balance lines (a fee's rest billed after its issue): their invoice's status, amount (a
    balance is one unit; a gathering line has no totals yet) and description."""
    return [
        (f.invoice.status, x.per_unit_amount if x.quantity == 1 else D(-1), x.description)
        for f in found
        for x in f.lines
        if x.parent_line_id is None and BALANCE_OF in x.metadata
    ]


async def voided_after_pro_was_netted(env: Env, ns: str) -> tuple[Subscription, datetime]:
    """team's 30.00 issued on Nov 1 (unpaid, so voidable), changed to pro on Nov 11 and pro's
    40.00 for Nov 11 - Dec 1 issued net of team's 20.00, then team's invoice voided; pro and the
    change's time."""
    invoice_id, pro, at = await pro_issued_after_team(env, ns)
    assert [x for x in await issued_fees(env, ns) if x[0] == "pro"] == [("pro", at, DEC, D(20))]
    await voided(env, ns, invoice_id)
    return pro, at


async def test_a_replaced_invoice_voided_after_the_net_line_was_issued_bills_the_rest_as_a_balance(env: Env) -> None:
    # team's invoice charged nothing in the end, so pro's 40.00 for Nov 11 - Dec 1 is owed whole:
    # 20.00 issued, the other 20.00 billed as a balance line (as had team been voided first).
    ns = "rv_void_after"
    pro, at = await voided_after_pro_was_netted(env, ns)
    assert await env.sync.sync_all() == 1
    assert await env.sync.sync(pro) == 0
    said = f"balance for {rfc3339(at)} - {rfc3339(DEC)}: 20.00 it was billed net of, on invoices since voided"
    assert balances(await all_invoices(env, ns)) == [(InvoiceStatus.GATHERING, D(20), said)]
    await issue_due(env)
    assert [x[1] for x in balances(await all_invoices(env, ns))] == [D(20)]
    assert sum((x[3] for x in await issued_fees(env, ns) if x[0] == "pro"), D(0)) == D(40)
    assert await env.sync.sync_all() == 0


async def test_a_voided_balance_is_not_billed_again(env: Env) -> None:
    # The balance's own invoice voided (a void forgives what its invoice charged): nothing more.
    ns = "rv_void_balance"
    await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    await issue_due(env)
    assert [x[0] for x in balances(await all_invoices(env, ns))] == [InvoiceStatus.PAYMENT_PROCESSING]
    (invoice_id,) = [
        f.invoice.id for f in await all_invoices(env, ns) if any(BALANCE_OF in x.metadata for x in f.lines)
    ]
    await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 0
    assert [x[0] for x in balances(await all_invoices(env, ns))] == [InvoiceStatus.VOIDED]


async def test_a_balance_voided_with_pending_is_billed_again(env: Env) -> None:
    # The balance's own invoice voided to bill it again: the sync makes the balance again (pro is
    # still owed it), 20.00, and pro's 40.00 is billed in all.
    ns = "rv_pending_balance"
    await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    await issue_due(env)
    (invoice_id,) = [
        f.invoice.id for f in await all_invoices(env, ns) if any(BALANCE_OF in x.metadata for x in f.lines)
    ]
    await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    await issue_due(env)
    assert [(x[0], x[1]) for x in balances(await all_invoices(env, ns))] == [
        (InvoiceStatus.VOIDED, D(20)),
        (InvoiceStatus.PAYMENT_PROCESSING, D(20)),
    ]
    assert sum((x[3] for x in await billed(env, ns) if x[0] == "pro"), D(0)) == D(40)
    assert await env.sync.sync_all() == 0


async def test_a_fee_whose_own_invoice_was_voided_gets_no_balance(env: Env) -> None:
    # pro's net 20.00 voided with its invoice, then team's: had team's void come first, pro's line
    # would have been 40.00, voided whole. Nothing is billed either way.
    ns = "rv_void_both"
    team, team_invoice = await unpaid_team_month(env, ns)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    (pro_invoice,) = [
        f.invoice.id
        for f in await all_invoices(env, ns)
        if any(x.subscription and x.subscription.subscription_id == pro.id for x in f.lines)
        and f.invoice.status is not InvoiceStatus.GATHERING
        and f.invoice.id != team_invoice
    ]
    await voided(env, ns, pro_invoice)
    await voided(env, ns, team_invoice)
    assert await env.sync.sync_all() == 0
    assert balances(await all_invoices(env, ns)) == []


@pytest.mark.parametrize("forgiven_first", [True, False])
async def test_a_forgiven_fee_still_owes_what_a_month_billed_again_had_credited_it(
    env: Env, forgiven_first: bool
) -> None:
    # pro's net 20.00 forgiven with its invoice, and team's month voided to be billed again (a
    # wrong address): team is made again for its own ten days, 10.00, so the 20.00 of pro's time
    # team's line had charged is charged by no line now. Billing an invoice again changes no
    # total: pro owes that 20.00 as a balance, 30.00 billed for November as before, in either
    # order. It billed 10.00 either way (pro forgiven last, the balance the first void made was
    # taken off while still gathering): no balance was billed for a fee whose own line a void
    # forgave, whichever void took the credit back (found by the billing property test).
    ns = f"rv_forgiven_{'first' if forgiven_first else 'last'}"
    invoice_id, pro, at = await pro_issued_after_team(env, ns)
    pro_invoice = (await billing_from(env, ns, at)).invoice.id
    if forgiven_first:
        await voided(env, ns, pro_invoice)
    await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    await env.sync.sync_all()
    if not forgiven_first:
        await voided(env, ns, pro_invoice)
        await env.sync.sync_all()
    await issue_due(env)
    assert await billed(env, ns) == [("pro", at, DEC, D(20)), ("team", NOV, at, D(10))]
    assert [x[1] for x in balances(await all_invoices(env, ns))] == [D(20)]
    assert await env.sync.sync_all() == 0
    assert await env.sync.sync(pro) == 0


async def test_a_later_version_is_netted_against_the_fee_and_its_balance(env: Env) -> None:
    # pro's 20.00 and its 20.00 balance both issued (40.00 for Nov 11 - Dec 1); +5.00 on pro on
    # Nov 21: 65.00 x 10/30 = 21.67 less half of the 40.00 pro's fee charged, 1.67 (not 11.67:
    # the balance charged for those days too). November: 40.00 of pro and 1.67.
    ns = "rv_void_then_addon"
    pro, _ = await voided_after_pro_was_netted(env, ns)
    await env.sync.sync_all()
    await issue_due(env)
    await boosted(env, ns, pro, NOV + timedelta(days=20))
    await issue_due(env)
    pro_fees = sorted(x[3] for x in await issued_fees(env, ns) if x[0] == "pro")
    assert pro_fees == [D("1.67"), D(20), D(20)]
    assert await env.sync.sync_all() == 0


@pytest.mark.parametrize("canceled_first", [False, True])
@pytest.mark.parametrize("end", ["cancel", "remove"])
async def test_a_balance_stays_when_the_fee_issued_before_an_end_is_owed_less(
    env: Env, canceled_first: bool, end: str
) -> None:
    # pro's 40.00 for Nov 11 - Dec 1 issued as 20.00 net of team's month, team's invoice voided to
    # be billed again (team's line made again for Nov 1-11, 10.00), and pro canceled at once on
    # Nov 16, before or after the void. Issued before the cancellation, pro's line stays as issued
    # (no credit notes): had the void come first it would have been issued whole, 40.00, so the
    # 20.00 the void took back from its netting is still owed, whether the balance was gathering,
    # on a draft (test_subscription_balance_review) or not made yet: 50.00 for November, as before
    # the void. Until 2026-12-07 the balance went (or was never made) once pro was owed 10.00 for
    # Nov 11-16: 30.00 (found by the billing property test: an add-on's version netted against a
    # voided month, then an immediate cancellation). The same when an edit removes pro's fee on
    # Nov 16 instead of a cancellation: the line stays as issued all the same.
    ns = f"rv_void_{end}_{canceled_first}"
    invoice_id, pro, at = await pro_issued_after_team(env, ns)

    async def cancel() -> None:
        env.clock.at = NOV + timedelta(days=15)
        if end == "cancel":
            ended = await env.subscriptions.cancel(ns, pro.id, Timing("immediate"))
        else:
            ended = await env.subscriptions.edit(ns, pro.id, [edits.RemoveItem("default", "base")], Timing("immediate"))
        await env.sync.sync(ended)

    if canceled_first:
        await cancel()
    await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    await env.sync.sync_all()
    if not canceled_first:
        await cancel()
    assert [x[1] for x in balances(await all_invoices(env, ns))] == [D(20)]
    await issue_due(env)
    # The balance is over the fee's time now, Nov 11-16 (pro's line, issued, over the month).
    nov_16 = NOV + timedelta(days=15)
    assert await billed(env, ns) == [("pro", at, nov_16, D(20)), ("pro", at, DEC, D(20)), ("team", NOV, at, D(10))]
    assert await env.sync.sync_all() == 0


async def test_an_add_on_netted_against_a_voided_invoice_bills_the_rest_as_a_balance(env: Env) -> None:
    # The +5.00 add-on bought on Nov 11 after team's 30.00 was issued: 23.33 for Nov 11 - Dec 1
    # less the 20.00 the issued line charged, 3.33 (issued). November's invoice voided: the new
    # version is owed its 23.33, so 20.00 more.
    ns = "rv_void_addon"
    team, invoice_id = await unpaid_team_month(env, ns)
    await boosted(env, ns, team, NOV + timedelta(days=10))
    await issue_due(env)
    await voided(env, ns, invoice_id)
    assert await env.sync.sync_all() == 1
    assert [x[1] for x in balances(await all_invoices(env, ns))] == [D(20)]


@pytest.mark.parametrize("ended_first", [False, True])
async def test_an_add_on_netted_against_a_month_billed_again_owes_its_balance_when_the_end_bills_the_period_whole(
    env: Env, ended_first: bool
) -> None:
    # As above, the workflow billing the period a subscription ends in whole (bill_full_period):
    # the +5.00 version for Nov 11 - Dec 1 issued as 3.33 net of team's 20.00; November's invoice
    # voided to be billed again (team's line made again for Nov 1-11, 10.00), and the subscription
    # canceled at the next billing cycle, before or after the void. The end makes Nov 11 - Dec 1
    # the period it ends in, billed whole were it not issued; issued net, it stays, and what the
    # void took back from its netting is owed: 20.00, 33.33 for November, as before the void.
    # Without it: 13.33 (found by the billing property test, the cancellation after the void).
    ns = "rv_pending_addon_whole"
    team, invoice_id = await unpaid_team_month(env, ns, full_period_at_end=True)
    team = await boosted(env, ns, team, NOV + timedelta(days=10))
    await issue_due(env)

    async def cancel() -> None:
        canceled = await env.subscriptions.cancel(ns, team.id, Timing("next_billing_cycle"))
        await env.sync.sync(canceled)

    if ended_first:
        await cancel()
    await env.invoices.void(ns, invoice_id, VoidInput("wrong address", PENDING))
    await env.sync.sync_all()
    if not ended_first:
        await cancel()
    await issue_due(env)
    assert [x[1] for x in balances(await all_invoices(env, ns))] == [D(20)]
    assert sum((x[3] for x in await billed(env, ns)), D(0)) == D("33.33")
    assert await env.sync.sync_all() == 0


async def test_two_syncs_of_the_successor_at_once_net_it_once(env: Env) -> None:
    # The change's own sync of pro never ran; two syncs and a pass race: one line of 20.00, and
    # then nothing.
    ns = "rv_race"
    team = await issued_team_month(env, ns)
    at = NOV + timedelta(days=10)
    env.clock.at = at
    ended, pro = await env.subscriptions.change(
        ChangeSubscriptionInput(ns, team.id, PlanSelector("pro"), Timing("immediate"))
    )
    await env.sync.sync(ended)
    await asyncio.gather(env.sync.sync(pro), env.sync.sync(pro), env.sync.sync_all())
    assert await env.sync.sync(pro) == 0
    assert await env.sync.sync_all() == 0
    await issue_due(env)
    assert await issued_fees(env, ns) == [("pro", at, DEC, D(20)), ("team", NOV, DEC, D(30))]


async def test_a_yearly_fee_keeps_netting_a_monthly_successor_until_its_year_runs_out(env: Env) -> None:
    # 365.00 for Nov 1, 2026 - Nov 1, 2027 issued on Nov 1 (1.00 a day); pro (60.00 a month) from
    # Nov 11: Nov 11 - Dec 1 bills 40.00 less 20 days of the year, 20.00; December 60.00 less 31
    # days, 29.00; January the same.
    ns = "rv_yearly"
    yearly = await issued_team_month(env, ns, "yearly")
    at = NOV + timedelta(days=10)
    await change(env, ns, yearly, "pro", at)
    await issue_due(env)
    for month in (DEC, JAN):
        env.clock.at = month
        await issue_due(env)
        assert await env.sync.sync_all() == 0
    fees = await issued_fees(env, ns, FEB)
    assert fees == [
        ("pro", at, DEC, D(20)),
        ("pro", DEC, JAN, D(29)),
        ("pro", JAN, FEB, D(29)),
        ("yearly", NOV, NOV.replace(year=2027), D(365)),
    ]


async def test_a_migration_to_a_dearer_version_nets_the_issued_fee(env: Env) -> None:
    # team v1's 30.00 issued Nov 1 (the customer subscribed to version 1 explicitly); migrated on
    # Nov 11 to v2 (45.00): 30.00 for Nov 11 - Dec 1 less the 20.00 v1's line charged for those
    # days, 10.00. November: 10 days of v1 and 20 of v2, 40.00. December is v2's 45.00.
    ns = "rv_migrate"
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    env.clock.at = NOV
    v1 = await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector("team", 1), customer_key="c1"))
    await env.sync.sync(v1)
    await issue_due(env)
    at = NOV + timedelta(days=10)
    env.clock.at = at
    ended, v2 = await env.subscriptions.change(
        ChangeSubscriptionInput(ns, v1.id, PlanSelector("team", 2), Timing("immediate")), migrate=True
    )
    await env.sync.sync(ended)
    await env.sync.sync(v2)
    assert await env.sync.sync(v2) == 0
    await issue_due(env)
    assert await issued_fees(env, ns) == [("team", NOV, DEC, D(30)), ("team", at, DEC, D(10))]
    env.clock.at = DEC
    await issue_due(env)
    assert [x[3] for x in await issued_fees(env, ns, JAN) if x[1] == DEC] == [D(45)]


async def boosted(env: Env, ns: str, pro: Subscription, at: datetime) -> Subscription:
    """The +5.00 add-on bought on `pro` at `at`, synced."""
    env.clock.at = at
    pro, _ = await env.subscriptions.create_addon(ns, pro.id, "boost", 1, Timing("immediate"))
    await env.sync.sync(pro)
    assert await env.sync.sync(pro) == 0
    return pro


async def test_an_add_on_on_the_successor_after_its_net_line_was_issued_and_another_change(env: Env) -> None:
    # team's 30.00 issued Nov 1; pro from Nov 11 (40.00 less team's 20.00: 20.00, issued); +5.00
    # on pro on Nov 21: 65.00 x 10/30 = 21.67 less team's 10.00 and half of pro's 20.00, 1.67
    # (issued); then max on Nov 26: 90 x 5/30 = 15.00 less team's 5.00, a quarter of pro's 20.00
    # (5.00) and half of the 1.67 (0.835), 10.835 rounded once to 10.84: 4.16. November billed
    # 30 + 20 + 1.67 + 4.16 = 55.83, what 10 days of team (10.00), 10 of pro (20.00), 5 of pro
    # with the add-on (10.83) and 5 of max (15.00) cost had nothing been issued.
    ns = "rv_addon_after"
    team = await issued_team_month(env, ns)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    pro = await boosted(env, ns, pro, NOV + timedelta(days=20))
    await issue_due(env)
    await change(env, ns, pro, "max", NOV + timedelta(days=25))
    await issue_due(env)
    assert sorted(x[3] for x in await issued_fees(env, ns)) == sorted([D(30), D(20), D("1.67"), D("4.16")])
    assert await november(env, ns) == D("55.83")
    assert await env.sync.sync_all() == 0


async def test_an_add_on_item_of_the_replaced_subscription_counts_against_the_new_plan(env: Env) -> None:
    # team's 30.00 and the seats add-on's 10.00 (an item of its own, bought on Nov 1) issued for
    # November; pro from Nov 11: the change ends the add-on with the subscription, and pro's 40.00
    # for Nov 11 - Dec 1 bills less what both lines charged for those days (20.00 and 6.67), 13.33.
    # November 53.33: ten days of team with seats (13.33) and twenty of pro (40.00).
    ns = "rv_addon_item"
    env.clock.at = NOV
    team = await subscribe(env, ns, "c1")
    team, _ = await env.subscriptions.create_addon(ns, team.id, "seats", 1, Timing("immediate"))
    await env.sync.sync(team)
    await issue_due(env)
    assert await november(env, ns) == D(40)
    at = NOV + timedelta(days=10)
    await change(env, ns, team, "pro", at)
    await issue_due(env)
    assert [x for x in await issued_fees(env, ns) if x[0] == "pro"] == [("pro", at, DEC, D("13.33"))]
    assert await november(env, ns) == D("53.33")


async def test_an_add_on_on_the_successor_before_its_net_line_was_issued_and_another_change(env: Env) -> None:
    # As above, but the add-on is bought on Nov 21 while pro's line is still gathering: pro splits
    # into Nov 11-21 (20.00 less team's 10.00: 10.00) and Nov 21 - Dec 1 with the add-on (21.67
    # less team's 10.00: 11.67), both issued; max on Nov 26: 15.00 less team's 5.00 and half of
    # the 11.67 (5.835), 10.835 rounded once to 10.84: 4.16. November 30 + 10 + 11.67 + 4.16 =
    # 55.83 again.
    ns = "rv_addon_before"
    team = await issued_team_month(env, ns)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    pro = await boosted(env, ns, pro, NOV + timedelta(days=20))
    await issue_due(env)
    await change(env, ns, pro, "max", NOV + timedelta(days=25))
    await issue_due(env)
    assert sorted(x[3] for x in await issued_fees(env, ns)) == sorted([D(30), D(10), D("11.67"), D("4.16")])
    assert await env.sync.sync_all() == 0


async def test_a_trial_plan_after_its_trial_nets_its_issued_fee_on_a_change(env: Env) -> None:
    # trial: Nov 1-15 free, then 30.00 a month: 16.00 for Nov 15 - Dec 1 issued on Nov 15. pro
    # from Nov 21: 20.00 for Nov 21 - Dec 1 less the 10.00 (10 of 16 days) the trial plan's line
    # charged: 10.00. November 26.00: 6 days of the trial plan's fee and 10 of pro's.
    ns = "rv_trial"
    env.clock.at = NOV
    trial = await subscribe(env, ns, "c1", "trial")
    await env.sync.sync(trial)
    env.clock.at = NOV + timedelta(days=14)
    await issue_due(env)
    at = NOV + timedelta(days=20)
    await change(env, ns, trial, "pro", at)
    await issue_due(env)
    assert await issued_fees(env, ns) == [("pro", at, DEC, D(10)), ("trial", NOV + timedelta(days=14), DEC, D(16))]


async def test_a_workflow_switched_to_bill_full_period_before_the_net_line_is_issued_bills_it_whole(
    env: Env,
) -> None:
    # Prorating at the change, pro's line nets to 20.00 (gathering); the workflow then bills the
    # period a subscription ends in whole, which owes team's 30.00 for its ten days: the pass bills
    # pro's 40.00 whole (70.00 for November, as when the workflow said so at the change).
    ns = "rv_switch"
    team = await issued_team_month(env, ns)
    at = NOV + timedelta(days=10)
    await change(env, ns, team, "pro", at)
    whole = WorkflowPatch(subscription_end_proration_mode=ProrationMode.BILL_FULL_PERIOD)
    await env.profiles.upsert_override(ns, "c1", OverrideUpsertInput(workflow=whole))
    assert await env.sync.sync_all() == 1
    assert await env.sync.sync_all() == 0
    await issue_due(env)
    assert await issued_fees(env, ns) == [("pro", at, DEC, D(40)), ("team", NOV, DEC, D(30))]


async def test_a_change_at_the_instant_an_invoice_now_issued_the_first_fee_bills_the_difference(env: Env) -> None:
    # Subscribed to team on Nov 1 and November's 30.00 invoiced at once; changed to pro at that
    # very instant: pro's 60.00 for all of November less the 30.00, 30.00 (60.00 in all, what pro
    # costs; team had no time).
    ns = "rv_instant"
    env.clock.at = NOV
    team = await subscribe(env, ns, "c1")
    await env.sync.sync(team)
    await env.invoices.invoice_now(ns, InvoiceNowInput(team.customer_id))
    await change(env, ns, team, "pro", NOV)
    await issue_due(env)
    assert await issued_fees(env, ns) == [("pro", NOV, DEC, D(30)), ("team", NOV, DEC, D(30))]
    assert await env.sync.sync_all() == 0


async def test_a_change_at_a_period_start_nets_an_issued_fee_and_drops_a_drafts(env: Env) -> None:
    # pro's December 60.00 invoiced at Dec 1 00:00 by an invoice-now (issued at once: no usage on
    # it waits); changed to max at that instant: max's December 90.00 less the 60.00 pro's line
    # charged for it, 30.00.
    ns = "rv_boundary_issued"
    pro = await issued_team_month(env, ns, "pro")
    env.clock.at = DEC
    await env.invoices.invoice_now(ns, InvoiceNowInput(pro.customer_id))
    await change(env, ns, pro, "max", DEC)
    await issue_due(env)
    assert [x for x in await issued_fees(env, ns, JAN) if x[1] == DEC] == [
        ("max", DEC, JAN, D(30)),
        ("pro", DEC, JAN, D(60)),
    ]
    assert await env.sync.sync_all() == 0

    # team's December 30.00 on a draft at Dec 1 00:00 (the billing worker's pass: it waits with
    # November's usage): the change to pro at that instant takes team's line off the draft, and
    # pro bills its 60.00 whole.
    ns = "rv_boundary_draft"
    team = await issued_team_month(env, ns)
    env.clock.at = DEC
    await env.worker().run_once()
    draft = await billing_from(env, ns, DEC)
    assert draft.invoice.status is InvoiceStatus.DRAFT
    await change(env, ns, team, "pro", DEC)
    await issue_due(env)
    assert [x for x in await issued_fees(env, ns, JAN) if x[1] == DEC] == [("pro", DEC, JAN, D(60))]
    assert await env.sync.sync_all() == 0


async def test_a_monthly_fee_nets_a_yearly_successors_first_period(env: Env) -> None:
    # team's November 30.00 issued; yearly (365.00, 1.00 a day) from Nov 11 on the subscription's
    # Nov 1 anchor: Nov 11, 2026 - Nov 1, 2027 is 355.00, less team's 20.00 for Nov 11 - Dec 1:
    # 335.00.
    ns = "rv_to_yearly"
    team = await issued_team_month(env, ns)
    at = NOV + timedelta(days=10)
    await change(env, ns, team, "yearly", at)
    await issue_due(env)
    assert await issued_fees(env, ns) == [
        ("team", NOV, DEC, D(30)),
        ("yearly", at, NOV.replace(year=2027), D(335)),
    ]


async def test_two_changes_at_one_instant_net_the_plan_that_had_time(env: Env) -> None:
    # team's 30.00 issued Nov 1; on Nov 11 changed to pro (synced: 20.00 gathering) and at that same
    # instant on to max. pro had no time: its line goes, and max's 60.00 for Nov 11 - Dec 1 bills
    # less team's 20.00, 40.00 (November 70.00: 10 days of team, 20 of max).
    ns = "rv_twice"
    team = await issued_team_month(env, ns)
    at = NOV + timedelta(days=10)
    pro = await change(env, ns, team, "pro", at)
    await change(env, ns, pro, "max", at)
    await issue_due(env)
    assert await issued_fees(env, ns) == [("max", at, DEC, D(40)), ("team", NOV, DEC, D(30))]
    assert await env.sync.sync_all() == 0


async def test_changed_back_to_the_first_plan_bills_nothing_more_that_month(env: Env) -> None:
    # team (30.00, issued) -> pro on Nov 11 (20.00 net, issued) -> team again on Nov 21: 10.00 for
    # Nov 21 - Dec 1 less team's 10.00 and half of pro's 20.00: nothing (floored). December is the
    # new team subscription's 30.00 whole.
    ns = "rv_back"
    team = await issued_team_month(env, ns)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    await change(env, ns, pro, "team", NOV + timedelta(days=20))
    await issue_due(env)
    assert await issued_fees(env, ns) == [("pro", NOV + timedelta(days=10), DEC, D(20)), ("team", NOV, DEC, D(30))]
    env.clock.at = DEC
    await issue_due(env)
    assert [x[3] for x in await issued_fees(env, ns, JAN) if x[1] == DEC] == [D(30)]
    assert await env.sync.sync_all() == 0


async def drafted_team_month(env: Env, ns: str) -> tuple[Subscription, str]:
    """Customer c1 whose invoices wait as drafts for approval, subscribed to team on Nov 1 and
    November's 30.00 on a draft; the subscription and the draft's ID."""
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    await env.profiles.upsert_override(ns, "c1", OverrideUpsertInput(workflow=WorkflowPatch(auto_advance=False)))
    env.clock.at = NOV
    team = await env.subscriptions.create(CreateSubscriptionInput(ns, PlanSelector("team"), customer_key="c1"))
    await env.sync.sync(team)
    await issue_due(env)
    (draft,) = [f for f in await all_invoices(env, ns) if f.invoice.status is InvoiceStatus.DRAFT]
    return team, draft.invoice.id


async def test_a_replaced_fee_still_on_a_draft_follows_the_change_and_is_not_netted(env: Env) -> None:
    # November's 30.00 waits on a draft at the change to pro on Nov 11: the draft's line follows
    # team's end (Nov 1-11, 10.00) and pro bills its 40.00 whole, and the draft approved after
    # that does not make pro's line net: November is 50.00, as when the 30.00 was issued before
    # the change (30.00 + 20.00).
    ns = "rv_draft_approved"
    team, draft_id = await drafted_team_month(env, ns)
    at = NOV + timedelta(days=10)
    pro = await change(env, ns, team, "pro", at)
    await env.invoices.act(ns, draft_id, Action.APPROVE)
    assert await env.sync.sync(pro) == 0
    # Invoiced now (rated on a draft that waits for approval).
    await env.invoices.invoice_now(ns, InvoiceNowInput(pro.customer_id))
    assert await issued_fees(env, ns) == [("pro", at, DEC, D(40)), ("team", NOV, at, D(10))]

    # The draft deleted at the change instead: its line goes back to gathering, still Nov 1-11.
    ns = "rv_draft_deleted"
    team, draft_id = await drafted_team_month(env, ns)
    pro = await change(env, ns, team, "pro", at)
    await env.invoices.delete(ns, draft_id)
    await env.sync.sync_all()
    assert await env.sync.sync_all() == 0
    await env.invoices.invoice_now(ns, InvoiceNowInput(pro.customer_id))
    assert await issued_fees(env, ns) == [("pro", at, DEC, D(40)), ("team", NOV, at, D(10))]


async def test_an_add_on_on_the_replaced_subscription_counts_with_its_plans_fee(env: Env) -> None:
    # team's 30.00 issued Nov 1; +5.00 on Nov 5: 35.00 x 26/30 = 30.33 less team's 26.00, 4.33
    # (issued); pro on Nov 11: 40.00 less team's 20.00 and 20/26 of the 4.33 (3.3308), 23.33
    # rounded once: 16.67. November 30 + 4.33 + 16.67 = 51.00, what 4 days of team (4.00), 6 with
    # the add-on (7.00) and 20 of pro (40.00) cost had nothing been issued.
    ns = "rv_addon_replaced"
    team = await issued_team_month(env, ns)
    team = await boosted(env, ns, team, NOV + timedelta(days=4))
    await issue_due(env)
    await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    assert sorted(x[3] for x in await issued_fees(env, ns)) == [D("4.33"), D("16.67"), D(30)]
    assert await env.sync.sync_all() == 0


async def test_a_restored_subscription_bills_nothing_of_the_change_it_had_scheduled(env: Env) -> None:
    # team from Nov 1 (November issued), changed on Nov 11 to pro from the next billing cycle:
    # pro's December fee (60.00) waits on the gathering invoice. team is then restored: pro is
    # deleted and team runs on, so December bills team's 30.00 alone. The restore deleted pro
    # without telling anyone (no listener: no sync), and a sync pass passes over deleted
    # subscriptions, so pro's fee stayed to be billed beside team's: 90.00 for December.
    ns = "rv_restored"
    team, pro = await pro_from_december(env, ns)
    told: list[Subscription] = []
    env.subscriptions.listeners.append(told.append)
    restored = await env.subscriptions.restore(ns, team.id)
    assert [(s.id, s.deleted_at is not None) for s in told] == [(pro.id, True), (team.id, False)]
    # Only team is synced, as though pro's sync were lost (its process stopped, say): the
    # billing worker's pass finds pro's line and takes it away.
    await env.sync.sync(restored)
    env.clock.at = DEC + timedelta(hours=2)
    await env.worker().run_once()
    december = [
        (x.subscription.subscription_id, x.totals.total)
        for f in await all_invoices(env, ns)
        for x in f.lines
        if x.parent_line_id is None and x.type is LineType.FLAT_FEE and x.subscription and x.period_start == DEC
    ]
    assert december == [(team.id, D(30))]
    assert await env.sync.sync_all() == 0
