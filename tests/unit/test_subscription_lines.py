"""A subscription's flat fee line as the sync makes it and an invoice rates it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any

from domain.billing.invoice_service import rate_lines
from domain.billing.subscription_sync import _line
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
