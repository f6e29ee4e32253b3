"""A subscription's flat fee line as the sync makes it and an invoice rates it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any

from domain.billing.invoice_rest import line_rest
from domain.billing.invoice_service import rate_lines
from domain.billing.invoice_states import InvoiceStatus
from domain.billing.subscription_sync import _Expected, _line, _plan
from domain.catalog.prices import Discounts, FlatPrice, PaymentTerm
from domain.catalog.ratecards import RateCard, RateCardType
from domain.entitlements.recurrence import Period
from domain.subscriptions.timeline import BillableItem

NOW = datetime(2026, 4, 1, tzinfo=UTC)
APRIL = Period(NOW, datetime(2026, 5, 1, tzinfo=UTC))
SUBSCRIPTION: Any = SimpleNamespace(
    id="sub",
    namespace="ns",
    currency="USD",
    pro_rating=SimpleNamespace(enabled=True),
    spec=SimpleNamespace(active_to=None),
)


def test_a_subscription_flat_fee_takes_its_rate_cards_percentage_discount() -> None:
    card = RateCard(
        RateCardType.FLAT_FEE,
        "seat",
        "Seat",
        price=FlatPrice(D(10), PaymentTerm.IN_ADVANCE),
        discounts=Discounts(percentage=D(50)),
    )
    item = BillableItem("k", "sub", "default", "seat", "it", APRIL, APRIL, APRIL.start, card, quantity=D(3))
    line = _line(SUBSCRIPTION, item, "phase", NOW)
    assert line is not None and (line.per_unit_amount, line.quantity) == (D(10), D(3))
    (rated,), _ = rate_lines("USD", [line], NOW)
    assert (rated.totals.amount, rated.totals.discounts_total, rated.totals.total) == (D(30), D(15), D(15))


def test_a_prorated_fee_bought_several_times_is_rounded_once_for_all_of_them() -> None:
    # Three seats of 10.00 for the last 10 of April's 30 days: 30.00 x 1/3 = 10.00, as OpenMeter
    # charges an add-on bought three times (one fee of three times the amount, prorated and rounded
    # once). Rounding each seat's 3.333... first charged 3 x 3.33 = 9.99; with 100 seats, 233.00
    # instead of 233.33.
    card = RateCard(RateCardType.FLAT_FEE, "seat", "Seat", price=FlatPrice(D(10), PaymentTerm.IN_ADVANCE))
    last_third = Period(datetime(2026, 4, 21, tzinfo=UTC), APRIL.end)
    for seats, total in ((3, D("10.00")), (100, D("333.33")), (7, D("23.33"))):
        item = BillableItem(
            "k", "sub", "default", "seat", "it", last_third, APRIL, last_third.start, card, quantity=D(seats)
        )
        line = _line(SUBSCRIPTION, item, "phase", NOW)
        assert line is not None and line.quantity == D(seats)
        (rated,), _ = rate_lines("USD", [line], NOW)
        assert rated.totals.amount == total, (seats, line.per_unit_amount)


def test_a_fee_bought_several_times_in_a_whole_period_keeps_its_amount_per_unit() -> None:
    # A sub-cent amount (0.015) bought three times: one fee of 0.045, rounded once to 0.05 (OpenMeter's
    # merged price), not 3 x 0.02. The per-unit amount shown is what multiplies back to the total.
    card = RateCard(RateCardType.FLAT_FEE, "seat", "Seat", price=FlatPrice(D("0.015"), PaymentTerm.IN_ADVANCE))
    item = BillableItem("k", "sub", "default", "seat", "it", APRIL, APRIL, APRIL.start, card, quantity=D(3))
    line = _line(SUBSCRIPTION, item, "phase", NOW)
    assert line is not None
    (rated,), _ = rate_lines("USD", [line], NOW)
    assert rated.totals.amount == D("0.05")
    assert rated.totals.amount == round(line.per_unit_amount * line.quantity, 2)


def test_a_subscription_flat_fee_line_keeps_its_payment_term() -> None:
    card = RateCard(RateCardType.FLAT_FEE, "support", "Support", price=FlatPrice(D(20), PaymentTerm.IN_ARREARS))
    item = BillableItem("k", "sub", "default", "support", "it", APRIL, APRIL, APRIL.end, card)
    line = _line(SUBSCRIPTION, item, "phase", NOW)
    assert line is not None and line.payment_term == PaymentTerm.IN_ARREARS.value


def test_detailed_lines_do_not_take_their_parents_id_in_the_invoicing_app() -> None:
    # The app named the fee line (custom invoicing's lineExternalIds); rated again, its detailed
    # line is a line of its own the app has not seen: it must not claim the parent's external ID.
    card = RateCard(RateCardType.FLAT_FEE, "seat", "Seat", price=FlatPrice(D(10), PaymentTerm.IN_ADVANCE))
    item = BillableItem("k", "sub", "default", "seat", "it", APRIL, APRIL, APRIL.start, card)
    line = _line(SUBSCRIPTION, item, "phase", NOW)
    assert line is not None
    (rated,), children = rate_lines("USD", [replace(line, invoicing_external_id="erp-line-1")], NOW)
    assert rated.invoicing_external_id == "erp-line-1"
    assert [c.invoicing_external_id for c in children] == [None]


def test_a_subscription_flat_fee_line_names_its_rate_cards_feature() -> None:
    # OpenMeter's expected line takes the rate card's feature key for a flat fee too
    # (subscriptionsync/service/targetstate/targetstateitem.go, GetExpectedLine), and the API shows
    # it as the line's featureKey and its rateCard's (billing/httpdriver/gatheringinvoice.go).
    card = RateCard(
        RateCardType.FLAT_FEE,
        "premium",
        "Premium",
        feature_key="premium",
        price=FlatPrice(D(10), PaymentTerm.IN_ADVANCE),
    )
    item = BillableItem("k", "sub", "default", "premium", "it", APRIL, APRIL, APRIL.start, card)
    line = _line(SUBSCRIPTION, item, "phase", NOW)
    assert line is not None and line.feature_key == "premium"
    shown = line_rest(line)
    assert (shown["featureKey"], shown["rateCard"]["featureKey"]) == ("premium", "premium")
    (rated,), _ = rate_lines("USD", [line], NOW)
    assert rated.totals.amount == D(10)


def test_bill_full_period_holds_for_a_cancellation_at_a_fraction_of_a_second() -> None:
    # The last period of a subscription canceled at 00:00:00.5 on April 10 ends on the whole second
    # (billed periods have meters' resolution); bill_full_period still bills that period's fee whole
    # (OpenMeter's shouldProrate: the subscription ends within the service period).
    cancel = datetime(2026, 4, 10, 0, 0, 0, 500000, tzinfo=UTC)
    canceled: Any = SimpleNamespace(**{**vars(SUBSCRIPTION), "spec": SimpleNamespace(active_to=cancel)})
    card = RateCard(RateCardType.FLAT_FEE, "seat", "Seat", price=FlatPrice(D(30), PaymentTerm.IN_ADVANCE))
    cut = Period(APRIL.start, cancel.replace(microsecond=0))
    item = BillableItem("k", "sub", "default", "seat", "it", cut, APRIL, APRIL.start, card)
    line = _line(canceled, item, "phase", NOW, full_period_at_end=True)
    assert line is not None and line.per_unit_amount == D(30)
    prorated = _line(canceled, item, "phase", NOW)
    assert prorated is not None and prorated.per_unit_amount == D(9)


def test_lines_made_at_the_microsecond_before_are_in_sync_with_their_whole_second_items() -> None:
    # Lines synced before billed periods were whole seconds (a subscription started at
    # 10:00:00.123456) differ from their items only below the second, which no bill can see: a pass
    # must find them in sync, not rewrite them (or, partly invoiced, plan a correction every pass).
    start = datetime(2026, 4, 1, 10, 0, 0, 123456, tzinfo=UTC)
    card = RateCard(RateCardType.FLAT_FEE, "seat", "Seat", price=FlatPrice(D(10), PaymentTerm.IN_ADVANCE))
    exact = Period(start, datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=UTC))
    whole = Period(start.replace(microsecond=0), exact.end.replace(microsecond=0))
    item = BillableItem("k", "sub", "default", "seat", "it", whole, whole, whole.start, card)
    wanted = _line(SUBSCRIPTION, item, "phase", NOW)
    assert wanted is not None
    held = replace(
        wanted, id="l1", invoice_id="inv", period_start=exact.start, period_end=exact.end, invoice_at=exact.start
    )
    _, plan = _plan({"k": _Expected(item, wanted)}, [(held, InvoiceStatus.GATHERING)], {InvoiceStatus.GATHERING})
    assert plan.empty
