"""A plan change after the period's in-advance fee was issued: the new plan's recurring flat fees
bill net of what the replaced subscriptions' issued fee lines charged for their time, shared among
them by price whatever either plan calls them (docs/billing.md, "Subscriptions: a flat fee's later
version is billed net of what was issued", "Several fees").
Through the subscription service, the sync and the billing worker on real Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest_asyncio

from domain.billing.invoice_states import InvoiceStatus
from domain.billing.invoices import LineType
from domain.billing.models import OverrideUpsertInput, ProrationMode, WorkflowPatch
from domain.customers.models import CustomerInput
from domain.subscriptions.models import (
    ChangeSubscriptionInput,
    CreateSubscriptionInput,
    PlanSelector,
    Subscription,
    Timing,
)
from tests.integration.test_subscription_billing import (
    DEC,
    JAN,
    NOV,
    PLAN,
    D,
    Env,
    Plans,
    all_invoices,
    card,
    open_env,
    subscribe,
)


def _monthly(key: str, fee_key: str, amount: str) -> dict[str, Any]:
    """The team plan under another key, its in-advance fee `fee_key` at `amount` a month."""
    phase: dict[str, Any] = PLAN["phases"][0]  # type: ignore[assignment]
    fee = card(fee_key, {"type": "flat", "amount": amount, "paymentTerm": "in_advance"})
    return {**PLAN, "key": key, "phases": [{**phase, "rateCards": [fee]}]}


# team: base 30.00 a month (PLAN); pro and max: the same fee at 60.00 and 90.00; other: 60.00 a
# month under another rate-card key.
PRO, MAX, OTHER = _monthly("pro", "base", "60"), _monthly("max", "base", "90"), _monthly("other", "platform", "60")
# team and pro with their base fee at half price (a 50 % discount on the rate card).
TEAM_HALF, PRO_HALF = _monthly("team_half", "base", "30"), _monthly("pro_half", "base", "60")
for _half in (TEAM_HALF, PRO_HALF):
    _half["phases"][0]["rateCards"][0]["discounts"] = {"percentage": {"percentage": 50}}
# duo: "platform" at 60.00 and "extra" at 10.00 a month, two fees team (its fee is "base") lacks.
DUO = _monthly("duo", "platform", "60")
DUO["phases"][0]["rateCards"].append(card("extra", {"type": "flat", "amount": "10", "paymentTerm": "in_advance"}))
# trio: "seats", "support" and "uptime" at 10.00 a month each (30.00 in all, as team), none of them
# a fee team names.
TRIO = _monthly("trio", "seats", "10")
TRIO["phases"][0]["rateCards"] += [
    card(key, {"type": "flat", "amount": "10", "paymentTerm": "in_advance"}) for key in ("support", "uptime")
]
# team_extra: team's "base" (30.00 a month) and "extra" at 10.00 a month.
TEAM_EXTRA = _monthly("team_extra", "base", "30")
TEAM_EXTRA["phases"][0]["rateCards"].append(
    card("extra", {"type": "flat", "amount": "10", "paymentTerm": "in_advance"})
)
# seated: team's "base" cheaper (20.00 a month) and "seats" at 30.00 a month.
SEATED = _monthly("seated", "base", "20")
SEATED["phases"][0]["rateCards"].append(card("seats", {"type": "flat", "amount": "30", "paymentTerm": "in_advance"}))
# base_support and dearer_base: "base" at 30.00 and 45.00 a month beside "support" at 10.00.
BASE_SUPPORT, DEARER_BASE = _monthly("base_support", "base", "30"), _monthly("dearer_base", "base", "45")
for _plan in (BASE_SUPPORT, DEARER_BASE):
    _plan["phases"][0]["rateCards"].append(
        card("support", {"type": "flat", "amount": "10", "paymentTerm": "in_advance"})
    )
# mixed: "base" at 30.00 a month and "annual" at 365.00 a year (1.00 a day each from Nov 11).
MIXED = _monthly("mixed", "base", "30")
MIXED["phases"][0]["rateCards"].append(
    {**card("annual", {"type": "flat", "amount": "365", "paymentTerm": "in_advance"}), "billingCadence": "P1Y"}
)
# base: 100.00 once (no billing cadence), in advance.
SETUP = _monthly("setup", "base", "100")
SETUP["phases"][0]["rateCards"][0].pop("billingCadence")


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    async with open_env(
        Plans(
            (
                PLAN,
                PRO,
                MAX,
                OTHER,
                SETUP,
                TEAM_HALF,
                PRO_HALF,
                DUO,
                TRIO,
                TEAM_EXTRA,
                SEATED,
                BASE_SUPPORT,
                DEARER_BASE,
                MIXED,
            )
        )
    ) as opened:
        yield opened


async def issued_fees(env: Env, ns: str, before: datetime = DEC) -> list[tuple[str, datetime, datetime, Decimal]]:
    """The flat-fee lines past gathering that start before `before`: (plan, start, end, total)."""
    by_subscription = {s.id: s.plan.key for s in await env.subscriptions.list_for_customer(ns, "c1") if s.plan}
    return sorted(
        (by_subscription[x.subscription.subscription_id], x.period_start, x.period_end, x.totals.total)
        for f in await all_invoices(env, ns)
        if f.invoice.status is not InvoiceStatus.GATHERING
        for x in f.lines
        if x.parent_line_id is None and x.type is LineType.FLAT_FEE and x.subscription and x.period_start < before
    )


async def issue_due(env: Env) -> None:
    """Two hours on, a billing-worker pass collects and issues what is due (auto-approved)."""
    env.clock.at += timedelta(hours=2)
    await env.worker().run_once()


async def change(env: Env, ns: str, current: Subscription, plan: str, at: datetime) -> Subscription:
    """Changes `current` to `plan` at `at` (immediately) and syncs both; returns the new one."""
    env.clock.at = at
    ended, successor = await env.subscriptions.change(
        ChangeSubscriptionInput(ns, current.id, PlanSelector(plan), Timing("immediate"))
    )
    await env.sync.sync(ended)
    await env.sync.sync(successor)
    # Synced again: nothing moves (the netting is the same on a re-run).
    assert await env.sync.sync(successor) == 0
    return successor


async def issued_team_month(env: Env, ns: str, plan: str = "team") -> Subscription:
    """The customer subscribed to `plan` on Nov 1 and November's fee issued."""
    env.clock.at = NOV
    sub = await subscribe(env, ns, "c1", plan)
    await env.sync.sync(sub)
    await issue_due(env)
    return sub


async def changed_after_issue(env: Env, ns: str, plan: str, to: str) -> datetime:
    """Subscribed to `plan` on Nov 1 (November's fee issued), changed to `to` on Nov 11 and what is
    due then issued; returns the change's time."""
    current = await issued_team_month(env, ns, plan)
    at = NOV + timedelta(days=10)
    await change(env, ns, current, to, at)
    await issue_due(env)
    return at


async def test_an_upgrade_after_the_months_fee_was_issued_bills_the_new_fee_net_of_it(env: Env) -> None:
    # November's 30.00 was issued on Nov 1; the change to pro on Nov 11 ends the team plan there,
    # but the issued line stays whole (no credit notes). Pro's 40.00 for Nov 11 - Dec 1 is billed
    # less the 20.00 the issued line charged for that time: 20.00, so November costs 10.00 of team
    # and 40.00 of pro, as had nothing been issued (OpenMeter bills the 40.00 on top).
    ns = "chg_up"
    at = await changed_after_issue(env, ns, "team", "pro")
    assert await issued_fees(env, ns) == [("pro", at, DEC, D(20)), ("team", NOV, DEC, D(30))]
    (netted,) = [
        x
        for f in await all_invoices(env, ns)
        for x in f.lines
        if x.parent_line_id is None and x.name == "Base" and x.period_start == at
    ]
    assert netted.description == "less 20.00 already invoiced for 2026-11-01T00:00:00Z - 2026-12-01T00:00:00Z"
    env.clock.at = DEC + timedelta(hours=2)
    await env.worker().run_once()
    assert [x for x in await issued_fees(env, ns, JAN) if x[1] == DEC] == [("pro", DEC, JAN, D(60))]


async def test_changes_in_a_row_net_every_replaced_plans_issued_fee(env: Env) -> None:
    # team (30.00, issued Nov 1) -> pro on Nov 11 (40.00 for the rest less 20.00: 20.00, issued)
    # -> max on Nov 21: 30.00 for Nov 21 - Dec 1 less what team's line (10.00) and pro's (half of
    # its 20.00) charged for those days: 10.00. November: 10 + 20 + 30 days' worth, 60.00 in all.
    ns = "chg_chain"
    team = await issued_team_month(env, ns)
    pro = await change(env, ns, team, "pro", NOV + timedelta(days=10))
    await issue_due(env)
    await change(env, ns, pro, "max", NOV + timedelta(days=20))
    await issue_due(env)
    assert await issued_fees(env, ns) == [
        ("max", NOV + timedelta(days=20), DEC, D(10)),
        ("pro", NOV + timedelta(days=10), DEC, D(20)),
        ("team", NOV, DEC, D(30)),
    ]
    assert sum(x[3] for x in await issued_fees(env, ns)) == D(60)


async def test_a_downgrade_after_the_months_fee_was_issued_bills_nothing_more_that_month(env: Env) -> None:
    # Pro's 60.00 issued on Nov 1; team from Nov 11 wants 20.00 for the rest, less the 40.00 pro's
    # line charged for those days: nothing (floored at 0; the 20.00 difference is not given back,
    # which needs credit notes). December is team's 30.00.
    ns = "chg_down"
    await changed_after_issue(env, ns, "pro", "team")
    assert await issued_fees(env, ns) == [("pro", NOV, DEC, D(60))]
    env.clock.at = DEC + timedelta(hours=2)
    await env.worker().run_once()
    assert [x for x in await issued_fees(env, ns, JAN) if x[1] == DEC] == [("team", DEC, JAN, D(30))]


async def test_netting_counts_what_each_plan_charges_after_its_discount(env: Env) -> None:
    # team_half charged 15.00 for November (30.00, 50 % off), 10.00 of it for Nov 11 - Dec 1. pro
    # from Nov 11 charges 40.00 for those days: 30.00 more, not 20.00 (40.00 less team's 20.00
    # before its discount). November: 5.00 for team's days and 40.00 for pro's, 45.00.
    at = await changed_after_issue(env, "chg_off_old", "team_half", "pro")
    assert await issued_fees(env, "chg_off_old") == [("pro", at, DEC, D(30)), ("team_half", NOV, DEC, D(15))]
    # Upgraded to pro_half instead (60.00, 50 % off): 20.00 for Nov 11 - Dec 1, less the 20.00
    # team's 30.00 charged for them: nothing more (not 10.00: half of 40.00 less 20.00).
    await changed_after_issue(env, "chg_off_new", "team", "pro_half")
    assert await issued_fees(env, "chg_off_new") == [("team", NOV, DEC, D(30))]
    # Both at half price: 20.00 less 10.00, 10.00 (a 20.00 line, 50 % off), as before.
    at = await changed_after_issue(env, "chg_off_both", "team_half", "pro_half")
    assert await issued_fees(env, "chg_off_both") == [("pro_half", at, DEC, D(10)), ("team_half", NOV, DEC, D(15))]


async def test_a_fee_named_differently_nets_the_replaced_plans_fee(env: Env) -> None:
    # team's fee is "base", other's "platform", its only one: other's 40.00 for Nov 11 - Dec 1
    # bills less the 20.00 team's issued 30.00 charged for those days, 20.00 (not 40.00 beside it:
    # those days paid twice).
    ns = "chg_other"
    at = await changed_after_issue(env, ns, "team", "other")
    assert await issued_fees(env, ns) == [("other", at, DEC, D(20)), ("team", NOV, DEC, D(30))]


async def changed_twice(env: Env, ns: str, first: str, then: str) -> datetime:
    """team's November issued, changed to `first` on Nov 11 and to `then` on Nov 21, what is due
    issued after each; returns the second change's time."""
    team = await issued_team_month(env, ns)
    middle = await change(env, ns, team, first, NOV + timedelta(days=10))
    await issue_due(env)
    at = NOV + timedelta(days=20)
    await change(env, ns, middle, then, at)
    await issue_due(env)
    return at


async def test_a_chain_through_a_differently_named_fee_nets_each_replaced_plan(env: Env) -> None:
    # team ("base") -> other ("platform", 60.00) on Nov 11: 20.00 net; -> max ("base", 90.00) on
    # Nov 21: 30.00 less team's 10.00 and half of other's 20.00 (what each charged for Nov 21 -
    # Dec 1), 10.00. November 60.00, as had nothing been issued.
    ns = "chg_other_chain"
    at = await changed_twice(env, ns, "other", "max")
    assert [x for x in await issued_fees(env, ns) if x[0] == "max"] == [("max", at, DEC, D(10))]
    assert sum((x[3] for x in await issued_fees(env, ns)), D(0)) == D(60)


async def netted_by(env: Env, ns: str, start: datetime) -> list[tuple[str, str | None]]:
    """The flat-fee lines issued for a period from `start`: (name, description), by name."""
    return sorted(
        (x.name, x.description)
        for f in await all_invoices(env, ns)
        if f.invoice.status is not InvoiceStatus.GATHERING
        for x in f.lines
        if x.parent_line_id is None and x.type is LineType.FLAT_FEE and x.period_start == start
    )


async def test_fees_named_differently_share_what_the_replaced_fee_charged_for_their_time(env: Env) -> None:
    # duo has two recurring fees team does not name ("platform" at 60.00 and "extra" at 10.00 a
    # month). team's issued 30.00 charged 20.00 for Nov 11 - Dec 1, and duo's two fees share that
    # credit as they share its price: extra one seventh (2.86 of its 6.67), platform six sevenths
    # (17.14 of its 40.00). November 56.67, as had nothing been issued (10.00 of team, 46.67 of
    # duo), not 76.67: team's last twenty days are not paid twice.
    ns = "chg_duo"
    at = await changed_after_issue(env, ns, "team", "duo")
    assert await issued_fees(env, ns) == [
        ("duo", at, DEC, D("3.81")),
        ("duo", at, DEC, D("22.86")),
        ("team", NOV, DEC, D(30)),
    ]
    period = "2026-11-01T00:00:00Z - 2026-12-01T00:00:00Z"
    assert await netted_by(env, ns, at) == [
        ("Extra", f"less 2.86 already invoiced for {period}"),
        ("Platform", f"less 17.14 already invoiced for {period}"),
    ]
    env.clock.at = DEC + timedelta(hours=2)
    await env.worker().run_once()
    assert [x[3] for x in await issued_fees(env, ns, JAN) if x[1] == DEC] == [D(10), D(60)]


async def test_fees_sharing_a_credit_alike_are_credited_its_rounded_whole_between_them(env: Env) -> None:
    # trio's three fees at 10.00 a month each share team's 20.00 for Nov 11 - Dec 1 alike: 6.67,
    # 6.66 and 6.67 (20.00 in all, not 6.67 three times), against their own 6.67 each: support,
    # the middle one, bills 0.01 (trio's twenty days are 20.01, each fee rounded on its own); the
    # others nothing (no line). November 30.01.
    ns = "chg_trio"
    at = await changed_after_issue(env, ns, "team", "trio")
    assert await issued_fees(env, ns) == [("team", NOV, DEC, D(30)), ("trio", at, DEC, D("0.01"))]
    assert await netted_by(env, ns, at) == [
        ("Support", "less 6.66 already invoiced for 2026-11-01T00:00:00Z - 2026-12-01T00:00:00Z")
    ]


async def test_two_fees_the_new_plan_does_not_name_are_netted_from_the_one_it_does_not_share(env: Env) -> None:
    # duo's platform and extra (70.00 issued for November) -> max ("base", 90.00) on Nov 11:
    # max's 60.00 for Nov 11 - Dec 1 bills less the 46.67 both charged for those days, 13.33.
    # November 83.33: 23.33 of duo, 60.00 of max.
    ns = "chg_duo_max"
    at = await changed_after_issue(env, ns, "duo", "max")
    assert [x for x in await issued_fees(env, ns) if x[0] == "max"] == [("max", at, DEC, D("13.33"))]
    assert sum((x[3] for x in await issued_fees(env, ns)), D(0)) == D("83.33")


async def test_a_fee_the_new_plan_lacks_is_netted_from_its_fees_when_it_names_the_others(env: Env) -> None:
    # team_extra ("base" 30.00 and "extra" 10.00, 40.00 issued for November) -> pro ("base" 60.00)
    # on Nov 11: pro names every fee but extra, so pro's 40.00 for Nov 11 - Dec 1 bills less both
    # team_extra's lines charged for those days (20.00 and 6.67), 13.33. November 53.33.
    ns = "chg_extra_pro"
    at = await changed_after_issue(env, ns, "team_extra", "pro")
    assert [x for x in await issued_fees(env, ns) if x[0] == "pro"] == [("pro", at, DEC, D("13.33"))]
    assert sum((x[3] for x in await issued_fees(env, ns)), D(0)) == D("53.33")


async def test_a_fee_made_cheaper_beside_a_new_one_shares_the_credit_with_it(env: Env) -> None:
    # team ("base" 30.00) -> seated ("base" 20.00, "seats" 30.00) on Nov 11: seated's 33.33 for
    # Nov 11 - Dec 1 less the 20.00 team charged for those days, shared two fifths and three
    # fifths: base 13.33 - 8.00, seats 20.00 - 12.00. November 43.33, as had nothing been issued
    # (crediting base alone would floor it at 0 and lose 6.67 of the credit: 50.00).
    ns = "chg_seated"
    at = await changed_after_issue(env, ns, "team", "seated")
    assert await issued_fees(env, ns) == [
        ("seated", at, DEC, D("5.33")),
        ("seated", at, DEC, D(8)),
        ("team", NOV, DEC, D(30)),
    ]


async def test_two_fees_against_two_share_both_credits(env: Env) -> None:
    # team_extra ("base" 30.00, "extra" 10.00) -> duo ("platform" 60.00, "extra" 10.00) on Nov 11:
    # duo's 46.67 for Nov 11 - Dec 1 less both team_extra's lines' 26.67 for those days, shared
    # six sevenths and one seventh (22.86 and 3.81): extra 2.86, platform 17.14. November 60.00:
    # 13.33 of team_extra, 46.67 of duo. Back to team_extra instead (a downgrade: 26.67 against
    # duo's 46.67 charged for those days), nothing more: each fee floored at 0, no line.
    ns = "chg_extra_duo"
    at = await changed_after_issue(env, ns, "team_extra", "duo")
    assert [x for x in await issued_fees(env, ns) if x[0] == "duo"] == [
        ("duo", at, DEC, D("2.86")),
        ("duo", at, DEC, D("17.14")),
    ]
    assert sum((x[3] for x in await issued_fees(env, ns)), D(0)) == D(60)
    ns = "chg_duo_extra"
    await changed_after_issue(env, ns, "duo", "team_extra")
    assert await issued_fees(env, ns) == [("duo", NOV, DEC, D(10)), ("duo", NOV, DEC, D(60))]


async def test_a_fee_whose_price_did_not_change_nets_its_share_too(env: Env) -> None:
    # base_support (30.00 + 10.00) -> dearer_base (45.00 + the same 10.00) on Nov 11: both old
    # lines' 26.67 for Nov 11 - Dec 1 shared 45 : 10, 21.82 and 4.85: base 30.00 - 21.82, support
    # 6.67 - 4.85. The 10.00 difference in all, as had nothing been issued.
    ns = "chg_dearer_base"
    at = await changed_after_issue(env, ns, "base_support", "dearer_base")
    assert [x for x in await issued_fees(env, ns) if x[0] == "dearer_base"] == [
        ("dearer_base", at, DEC, D("1.82")),
        ("dearer_base", at, DEC, D("8.18")),
    ]


async def test_fees_of_different_cadences_share_by_what_each_charges_a_day(env: Env) -> None:
    # team -> mixed on Nov 11: base (30.00 a month) and annual (365.00 a year) each charge 1.00 a
    # day from then, so they share team's 20.00 for Nov 11 - Dec 1 alike: base 20.00 - 10.00, and
    # annual's 355.00 for Nov 11 - Nov 1, 2027 (its yearly period on the anchor) less 10.00.
    ns = "chg_mixed"
    at = await changed_after_issue(env, ns, "team", "mixed")
    assert [x for x in await issued_fees(env, ns, JAN) if x[0] == "mixed"] == [
        ("mixed", at, DEC, D(10)),
        ("mixed", at, NOV.replace(year=2027), D(345)),
    ]


async def test_a_chain_through_pooled_fees_nets_each_replaced_plan_once(env: Env) -> None:
    # team -> duo on Nov 11 (3.81 and 22.86 net) -> max ("base", 90.00) on Nov 21: max's 30.00
    # less team's 10.00 for Nov 21 - Dec 1 and half of each duo line (11.43 and 1.905: what they
    # charged for those days), 23.34 (the sum rounded once), so 6.66. November 63.33, as had
    # nothing been issued: 10.00 of team, 23.33 of duo, 30.00 of max.
    ns = "chg_duo_chain"
    at = await changed_twice(env, ns, "duo", "max")
    assert [x for x in await issued_fees(env, ns) if x[0] == "max"] == [("max", at, DEC, D("6.66"))]
    assert sum((x[3] for x in await issued_fees(env, ns)), D(0)) == D("63.33")


async def test_a_change_before_the_fee_was_issued_bills_each_plan_its_own_days(env: Env) -> None:
    # Nothing issued yet (November's fee still gathering at the change): team's line is cut to
    # Nov 1-11 (10.00) and pro bills its 40.00 in full; nothing to net.
    ns = "chg_gathering"
    env.clock.at = NOV
    team = await subscribe(env, ns, "c1")
    await env.sync.sync(team)
    at = NOV + timedelta(days=10)
    await change(env, ns, team, "pro", at)
    await issue_due(env)
    assert await issued_fees(env, ns) == [("pro", at, DEC, D(40)), ("team", NOV, at, D(10))]


async def test_a_one_time_fee_of_the_replaced_plan_is_not_netted(env: Env) -> None:
    # A one-time fee is no charge for time, even under the same key: pro's 40.00 for Nov 11 - Dec 1
    # is billed whole beside the 100.00 paid once on Nov 1.
    ns = "chg_once"
    at = await changed_after_issue(env, ns, "setup", "pro")
    assert await issued_fees(env, ns) == [("pro", at, DEC, D(40)), ("setup", NOV, DEC, D(100))]


async def test_a_sync_pass_nets_a_changed_subscription_and_then_leaves_it_alone(env: Env) -> None:
    # The change's own sync never ran (the worker's pass repairs it): the pass reads the replaced
    # subscription's lines too and bills pro net of team's issued line; while that line is still
    # gathering, later passes find nothing to do for either subscription (each would otherwise be
    # synced again on every pass, in a transaction locking the gathering invoice, to change nothing).
    ns = "chg_pass"
    team = await issued_team_month(env, ns)
    at = NOV + timedelta(days=10)
    env.clock.at = at
    await env.subscriptions.change(ChangeSubscriptionInput(ns, team.id, PlanSelector("pro"), Timing("immediate")))
    assert await env.sync.sync_all() > 0
    synced: list[str] = []
    sync = env.sync.sync

    async def counted(subscription: Subscription) -> int:
        synced.append(subscription.id)
        return await sync(subscription)

    env.sync.sync = counted  # type: ignore[method-assign]
    assert await env.sync.sync_all() == 0
    assert synced == []
    await issue_due(env)
    assert await issued_fees(env, ns) == [("pro", at, DEC, D(20)), ("team", NOV, DEC, D(30))]


async def test_under_bill_full_period_the_replaced_plans_fee_is_owed_whole_and_not_netted(env: Env) -> None:
    # The customer's workflow bills the period a subscription ends in whole. Not yet issued at the
    # change, team's November line is billed whole (30.00) beside pro's 40.00; issued before the
    # change, it is the same 30.00, so pro's 40.00 is not netted against it either (netting would
    # make the month 20.00 cheaper because the fee happened to be issued first).
    await set_bill_full_period(env, "chg_whole_gathering")
    env.clock.at = NOV
    team = await env.subscriptions.create(
        CreateSubscriptionInput("chg_whole_gathering", PlanSelector("team"), customer_key="c1")
    )
    await env.sync.sync(team)
    at = NOV + timedelta(days=10)
    await change(env, "chg_whole_gathering", team, "pro", at)
    await issue_due(env)
    assert await issued_fees(env, "chg_whole_gathering") == [("pro", at, DEC, D(40)), ("team", NOV, at, D(30))]

    await set_bill_full_period(env, "chg_whole_issued")
    env.clock.at = NOV
    team = await env.subscriptions.create(
        CreateSubscriptionInput("chg_whole_issued", PlanSelector("team"), customer_key="c1")
    )
    await env.sync.sync(team)
    await issue_due(env)
    await change(env, "chg_whole_issued", team, "pro", at)
    await issue_due(env)
    assert await issued_fees(env, "chg_whole_issued") == [("pro", at, DEC, D(40)), ("team", NOV, DEC, D(30))]


async def set_bill_full_period(env: Env, ns: str) -> None:
    """Customer c1 of `ns`, its workflow billing the period a subscription ends in whole."""
    await env.customers.create(ns, CustomerInput(name="c1", key="c1"))
    patch = WorkflowPatch(subscription_end_proration_mode=ProrationMode.BILL_FULL_PERIOD)
    await env.profiles.upsert_override(ns, "c1", OverrideUpsertInput(workflow=patch))
