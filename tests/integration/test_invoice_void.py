"""Voiding an issued invoice does with each line what the request says (OpenMeter's
VoidInvoiceActionInput): `discard` forgives it, so nothing bills it again, not even a later line of
its period; `pending` bills it again from the customer's gathering invoice, when due. Through the
domain service on real Postgres, with test_invoices' store and usage stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio

from domain.billing.invoice_service import BILLED_AGAIN_FROM
from domain.billing.invoice_states import Action, InvoiceStatus, State
from domain.billing.invoices import (
    InvoiceListQuery,
    InvoiceNowInput,
    InvoiceWithLines,
    LineType,
    PendingLinesInput,
    VoidAction,
    VoidInput,
    VoidLineAction,
)
from domain.catalog.prices import Commitments, UnitPrice
from domain.errors import ValidationError
from tests.integration.test_invoices import (
    DEC,
    ENTRY_FEE,
    NOV,
    Env,
    custom_invoicing_customer,
    flat,
    open_env,
    usage_line,
)

D = Decimal
DISCARD = VoidAction(VoidLineAction.DISCARD)
PENDING = VoidAction(VoidLineAction.PENDING)


@pytest_asyncio.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async for made in open_env():
        yield made


async def issued(env: Env, ns: str, cid: str, as_of: datetime | None = None) -> InvoiceWithLines:
    """Invoices the customer's due lines as of `as_of` and has the integrator issue the invoice
    (custom invoicing: it then waits for its payment, so it can be voided)."""
    (made,) = await env.invoices.invoice_now(ns, InvoiceNowInput(cid, as_of=as_of))
    await env.invoices.app_callback(ns, made.invoice.id, Action.DRAFT_SYNCHRONIZED)
    return await env.invoices.app_callback(ns, made.invoice.id, Action.ISSUING_SYNCHRONIZED)


def top(found: InvoiceWithLines) -> list:
    return [x for x in found.lines if x.parent_line_id is None and x.deleted_at is None]


async def gathering_lines(env: Env, ns: str, cid: str) -> list:
    """The lines waiting on the customer's gathering invoice."""
    query = InvoiceListQuery(customers=(cid,), statuses=(InvoiceStatus.GATHERING,))
    invoices, _ = await env.invoices.list_invoices(ns, query, with_lines=True)
    return [x for found in invoices for x in top(found)]


async def calls_on_nov_3(env: Env, ns: str, calls: str) -> str:
    """A customer invoiced through custom invoicing, `calls` calls on Nov 3 and November's calls
    pending under ENTRY_FEE (a graduated price with a 10.00 entry fee); the customer."""
    cid = await custom_invoicing_customer(env, ns, "Globex")
    env.usage.add("calls", cid, NOV + timedelta(days=2), calls)
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", ENTRY_FEE)])
    )
    return cid


async def first_part_issued(env: Env, ns: str) -> tuple[str, InvoiceWithLines]:
    """Calls billed in parts: 3 on Nov 3 and 2 on Nov 21; the customer and its issued first part,
    Nov 1-15 (13.00)."""
    cid = await calls_on_nov_3(env, ns, "3")
    env.usage.add("calls", cid, NOV + timedelta(days=20), "2")
    return cid, await issued(env, ns, cid, NOV + timedelta(days=15))


async def test_a_discarded_part_of_a_period_is_not_billed_again_by_the_periods_next_part(env: Env) -> None:
    # Calls billed in parts: Nov 1-15 (the 10.00 entry fee and 3 units) issued, then voided with
    # discard. The period's next part bills only its own 2 units: the void forgave the first
    # part, entry fee included (before: 15.00, the voided part billed again by the next one).
    ns = "void_discard_part"
    cid, first = await first_part_issued(env, ns)
    assert first.invoice.totals.total == D("13.00")
    voided = await env.invoices.void(ns, first.invoice.id, VoidInput("wrong contact", DISCARD))
    assert voided.invoice.status is InvoiceStatus.VOIDED
    assert [x.void_action for x in top(voided)] == [VoidLineAction.DISCARD]
    # Nothing went back to the gathering invoice but the period's own next part.
    assert [(x.period_start, x.period_end) for x in await gathering_lines(env, ns, cid)] == [
        (NOV + timedelta(days=15), DEC)
    ]
    rest = await issued(env, ns, cid, DEC + timedelta(hours=2))
    (line,) = top(rest)
    assert (line.quantity, line.pre_line_period_quantity, line.period_started) == (D(2), D(3), True)
    assert rest.invoice.totals.total == D("2.00")


async def test_a_void_without_an_action_discards(env: Env) -> None:
    ns = "void_default"
    cid, first = await first_part_issued(env, ns)
    await env.invoices.void(ns, first.invoice.id, VoidInput("wrong contact"))
    assert (await issued(env, ns, cid, DEC + timedelta(hours=2))).invoice.totals.total == D("2.00")


async def test_a_pending_part_of_a_period_is_billed_again_with_the_periods_next_part(env: Env) -> None:
    # The same part voided with pending: it goes back to the gathering invoice, due at once, and
    # is billed again beside the next part: the entry fee and 3 units, then 2 (15.00 in all).
    ns = "void_pending_part"
    cid, first = await first_part_issued(env, ns)
    (voided_line,) = top(first)
    voided = await env.invoices.void(ns, first.invoice.id, VoidInput("wrong contact", PENDING))
    assert [x.void_action for x in top(voided)] == [VoidLineAction.PENDING]
    again, rest = sorted(await gathering_lines(env, ns, cid), key=lambda x: x.period_start)
    assert (again.period_start, again.period_end, again.period_key) == (
        NOV,
        NOV + timedelta(days=15),
        voided_line.period_key,
    )
    assert again.metadata[BILLED_AGAIN_FROM] == voided_line.id and again.quantity is None
    assert (rest.period_start, rest.period_end) == (NOV + timedelta(days=15), DEC)
    both = await issued(env, ns, cid, DEC + timedelta(hours=2))
    by_start = {x.period_start: x for x in top(both)}
    assert (by_start[NOV].quantity, by_start[NOV].period_started) == (D(3), False)
    assert by_start[NOV].totals.total == D("13.00")
    assert by_start[NOV + timedelta(days=15)].totals.total == D("2.00")
    assert both.invoice.totals.total == D("15.00")


async def whole_period_issued(env: Env, ns: str) -> tuple[str, InvoiceWithLines]:
    """November's 5 calls (the entry fee and 5 units: 15.00) and a 40.00 licence, issued at once:
    the customer and the invoice."""
    cid = await custom_invoicing_customer(env, ns, "Globex")
    env.usage.add("calls", cid, NOV + timedelta(days=2), "5")
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", ENTRY_FEE), flat("Licence", "40")])
    )
    return cid, await issued(env, ns, cid)


async def test_a_pending_period_with_no_later_part_is_billed_again_when_due(env: Env) -> None:
    # A whole period's usage and a fee, issued, then voided with pending: nothing else of the
    # period is left to bill them, so the void itself puts both back on the gathering invoice
    # (before: nothing billed them again), due at the action's nextInvoiceAt: the worker collects
    # them then. Invoice-now takes what is billable now, as for any line (OpenMeter's rule): the
    # usage of a period that ended, billed in parts, but not the fee before its invoiceAt.
    ns = "void_pending_whole"
    cid, first = await whole_period_issued(env, ns)
    assert first.invoice.totals.total == D("55.00")
    later = (datetime.now(UTC) + timedelta(hours=6)).replace(microsecond=0)
    pending_later = VoidInput("billed to the wrong entity", VoidAction(VoidLineAction.PENDING, later))
    await env.invoices.void(ns, first.invoice.id, pending_later)
    back = {x.type: x for x in await gathering_lines(env, ns, cid)}
    assert {t: x.invoice_at for t, x in back.items()} == {LineType.USAGE_BASED: later, LineType.FLAT_FEE: later}
    (gathering,), _ = await env.invoices.list_invoices(
        ns, InvoiceListQuery(customers=(cid,), statuses=(InvoiceStatus.GATHERING,))
    )
    assert gathering.invoice.collection_at == later
    usage_now = await issued(env, ns, cid)
    assert [(x.type, x.totals.total) for x in top(usage_now)] == [(LineType.USAGE_BASED, D("15.00"))]
    assert [(x.name, x.invoice_at) for x in await gathering_lines(env, ns, cid)] == [("Licence", later)]

    # Voided again with no time: due at once, and billed as first.
    ns = "void_pending_now"
    cid, first = await whole_period_issued(env, ns)
    env.usage.add("calls", cid, NOV + timedelta(days=9), "1")  # stored since: billed with the rest
    await env.invoices.void(ns, first.invoice.id, VoidInput("billed to the wrong entity", PENDING))
    again = await issued(env, ns, cid)
    assert {x.type: x.totals.total for x in top(again)} == {
        LineType.USAGE_BASED: D("16.00"),
        LineType.FLAT_FEE: D("40.00"),
    }
    assert again.invoice.state is State.PAYMENT_PENDING


async def test_overrides_set_each_lines_fate(env: Env) -> None:
    ns = "void_overrides"
    cid = await custom_invoicing_customer(env, ns, "Globex")
    await env.invoices.create_pending_lines(
        ns, cid, PendingLinesInput("USD", [flat("Licence", "40"), flat("Setup", "15")])
    )
    first = await issued(env, ns, cid)
    by_name = {x.name: x for x in top(first)}
    await env.invoices.void(ns, first.invoice.id, VoidInput("setup was free", PENDING, {by_name["Setup"].id: DISCARD}))
    (back,) = await gathering_lines(env, ns, cid)
    assert (back.name, back.per_unit_amount, back.metadata[BILLED_AGAIN_FROM]) == (
        "Licence",
        D(40),
        by_name["Licence"].id,
    )
    assert (await issued(env, ns, cid)).invoice.totals.total == D("40.00")


async def test_a_void_naming_a_line_of_another_invoice_is_refused_and_changes_nothing(env: Env) -> None:
    ns = "void_unknown_line"
    cid = await custom_invoicing_customer(env, ns, "Globex")
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [flat("Licence", "40")]))
    first = await issued(env, ns, cid)
    with pytest.raises(ValidationError) as refused:
        await env.invoices.void(ns, first.invoice.id, VoidInput("oops", DISCARD, {"01NOTALINE": PENDING}))
    assert [v.field for v in refused.value.violations] == ["overrides[0].lineId"]
    after = await env.invoices.get(ns, first.invoice.id)
    assert after.invoice.status is not InvoiceStatus.VOIDED
    assert [x.void_action for x in top(after)] == [None]
    assert await gathering_lines(env, ns, cid) == []


async def test_usage_stored_after_a_discarded_period_is_still_billed_as_late_usage(env: Env) -> None:
    # November's 5 calls (the entry fee and 5 units) issued, then voided with discard; 2 more
    # calls of November stored after: the late-usage pass bills those 2, not the forgiven 5 (a
    # void forgives what its invoice charged, no more; before, nothing billed them).
    ns = "void_discard_late"
    cid = await calls_on_nov_3(env, ns, "5")
    first = await issued(env, ns, cid)
    assert first.invoice.totals.total == D("15.00")
    await env.invoices.void(ns, first.invoice.id, VoidInput("outage credit", DISCARD))
    env.usage.add("calls", cid, NOV + timedelta(days=20), "2")
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 1
    correction = await issued(env, ns, cid)
    (line,) = top(correction)
    assert (line.quantity, line.pre_line_period_quantity, line.period_started) == (D(2), D(5), True)
    assert line.void_action is None  # a copy of the discarded line, not discarded itself
    assert correction.invoice.totals.total == D("2.00")


async def test_a_pending_part_voided_after_the_periods_last_part_was_issued_is_billed_again_whole(env: Env) -> None:
    # Both parts issued (13.00, then 2.00 rated on top of the first's 3 units), then the first
    # part's invoice voided with pending: its copy reads the usage of its own time again and is
    # rated from the period's start, entry fee included: 13.00 more, 15.00 for November in all.
    ns = "void_pending_early_part"
    cid, first = await first_part_issued(env, ns)
    second = await issued(env, ns, cid, DEC + timedelta(hours=2))
    assert second.invoice.totals.total == D("2.00")
    await env.invoices.void(ns, first.invoice.id, VoidInput("wrong contact", PENDING))
    again = await issued(env, ns, cid)
    (line,) = top(again)
    assert (line.period_start, line.period_end, line.quantity, line.pre_line_period_quantity) == (
        NOV,
        NOV + timedelta(days=15),
        D(3),
        D(0),
    )
    assert again.invoice.totals.total == D("13.00")


async def test_a_part_billed_again_after_a_later_part_took_its_usage_is_rated_on_top_of_it(env: Env) -> None:
    # 90 calls on Nov 3 under ENTRY_FEE (10.00 to start the period, 1.00 a call up to 100, 0.50
    # after); Nov 1-15 issued (100.00), then voided to be billed again. The rest of November is
    # invoiced first: no part counts any more, so it bills the 90 calls (100.00). 20 more calls
    # for Nov 4 are stored late; the part billed again then bills them on top of the 90 (calls
    # 91-110: 10 x 1.00 + 10 x 0.50 = 15.00): 115.00 for November's 110 calls, as one invoice
    # would. Rated at its own place (calls 1-20) it billed 20.00, 120.00 (found by the billing
    # property test: a maximum spend of 40.00 billed as 51.47).
    ns = "void_pending_part_after_the_rest"
    cid = await calls_on_nov_3(env, ns, "90")
    first = await issued(env, ns, cid, NOV + timedelta(days=15))
    assert first.invoice.totals.total == D("100.00")
    await env.invoices.void(ns, first.invoice.id, VoidInput("wrong contact", PENDING))
    again, rest = sorted(await gathering_lines(env, ns, cid), key=lambda x: x.period_start)
    (made,) = await env.invoices.invoice_now(
        ns, InvoiceNowInput(cid, as_of=DEC + timedelta(hours=2), line_ids=[rest.id])
    )
    await env.invoices.app_callback(ns, made.invoice.id, Action.DRAFT_SYNCHRONIZED)
    second = await env.invoices.app_callback(ns, made.invoice.id, Action.ISSUING_SYNCHRONIZED)
    assert [(x.period_start, x.quantity) for x in top(second)] == [(NOV + timedelta(days=15), D(90))]
    assert second.invoice.totals.total == D("100.00")
    env.usage.add("calls", cid, NOV + timedelta(days=3), "20")
    third = await issued(env, ns, cid, DEC + timedelta(hours=2))
    (line,) = top(third)
    assert (line.id, line.quantity, line.pre_line_period_quantity) == (again.id, D(20), D(90))
    assert third.invoice.totals.total == D("15.00")


async def test_a_part_billed_again_under_a_later_part_bills_the_late_usage_of_that_part_on_top(env: Env) -> None:
    # 90 calls on Nov 3 and 10 on Nov 21 under ENTRY_FEE; Nov 1-15 issued (100.00), then the rest
    # (10 calls rated on top of the 90: 10.00), then Nov 1-15 voided to be billed again: the period
    # billed calls 91-100 and has a hole at 1-90. 20 calls for Nov 20 are stored late. The part made
    # again bills its own 90 calls in the hole (100.00), and the late-usage pass the 20 on top of
    # the 100 (calls 101-120 at 0.50: 10.00): 120.00 for November's 120 calls, as one invoice
    # would. Before, the part took the late calls too, 110 rated from the hole over calls 91-100 a
    # second time (115.00: 125.00 in all; found by the billing property test: a package of
    # images lost, 259.00 billed of 262.50).
    ns = "void_pending_part_under_the_rest"
    cid = await calls_on_nov_3(env, ns, "90")
    env.usage.add("calls", cid, NOV + timedelta(days=20), "10")
    first = await issued(env, ns, cid, NOV + timedelta(days=15))
    rest = await issued(env, ns, cid, DEC + timedelta(hours=2))
    assert (first.invoice.totals.total, rest.invoice.totals.total) == (D("100.00"), D("10.00"))
    await env.invoices.void(ns, first.invoice.id, VoidInput("wrong contact", PENDING))
    env.usage.add("calls", cid, NOV + timedelta(days=19), "20")
    again = await issued(env, ns, cid)
    (line,) = top(again)
    assert (line.period_end, line.quantity, line.pre_line_period_quantity) == (NOV + timedelta(days=15), D(90), D(0))
    assert again.invoice.totals.total == D("100.00")
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 1
    correction = await issued(env, ns, cid)
    (line,) = top(correction)
    assert (line.quantity, line.pre_line_period_quantity, line.period_started) == (D(20), D(100), True)
    assert correction.invoice.totals.total == D("10.00")


async def test_a_periods_last_part_billed_again_after_a_correction_under_a_minimum_charges_the_shortfall_again(
    env: Env,
) -> None:
    # 5 calls at 1.00 under a 20.00 minimum: November's invoice charged 5.00 and a 15.00 shortfall.
    # 20 calls stored late: a correction of 5.00 (25.00 above nothing, 5.00 above the minimum). Then
    # November's invoice is voided to be billed again, and 3 more calls are stored late. The part
    # made again bills its own 5 calls in the hole and, as the period's last line again, the
    # shortfall (20.00: the correction closed nothing, it was rated above the part); the 3 calls are
    # a correction on top (3.00). 28.00 in all, what one invoice of 28 calls charges.
    ns = "void_pending_after_a_minimum_correction"
    cid = await custom_invoicing_customer(env, ns, "Globex")
    env.usage.add("calls", cid, NOV + timedelta(days=2), "5")
    floored = UnitPrice(D(1), Commitments(minimum_amount=D(20)))
    await env.invoices.create_pending_lines(ns, cid, PendingLinesInput("USD", [usage_line("Calls", "calls", floored)]))
    first = await issued(env, ns, cid, DEC + timedelta(hours=2))
    assert (first.invoice.totals.amount, first.invoice.totals.charges_total) == (D(5), D(15))
    env.usage.add("calls", cid, NOV + timedelta(days=9), "20")
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 1
    assert (await issued(env, ns, cid)).invoice.totals.total == D(5)
    await env.invoices.void(ns, first.invoice.id, VoidInput("wrong contact", PENDING))
    env.usage.add("calls", cid, NOV + timedelta(days=10), "3")
    again = await issued(env, ns, cid)
    (line,) = top(again)
    assert (line.quantity, line.pre_line_period_quantity, line.period_closed) == (D(5), D(0), False)
    assert (again.invoice.totals.amount, again.invoice.totals.charges_total) == (D(5), D(15))
    assert await env.invoices.bill_late_usage(timedelta(days=30)) == 1
    correction = await issued(env, ns, cid)
    (line,) = top(correction)
    assert (line.quantity, line.pre_line_period_quantity, line.period_closed) == (D(3), D(25), True)
    assert correction.invoice.totals.total == D(3)
