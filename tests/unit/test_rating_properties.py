"""The rating engine against a reference written the simplest way (tests/support/rating_reference.py):
unit by unit, the whole period at once. The engine must agree with it for one invoice, and any
progressive split of the period must add up to the same total."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.catalog import currencies
from domain.catalog.currencies import Currency
from domain.catalog.prices import (
    Commitments,
    Discounts,
    DynamicPrice,
    PackagePrice,
    Price,
    PriceTier,
    TieredMode,
    TieredPrice,
    UnitPrice,
    allows_progressive_billing,
)
from domain.catalog.rating import LineCategory, Period, RatingInput, rate
from tests.support.rating_reference import reference

START = datetime(2026, 3, 1, tzinfo=UTC)
FULL = Period(START, START + timedelta(days=31))
CURRENCIES = [currencies.get(c) for c in ("USD", "JPY", "BHD")]

money = st.decimals(min_value=0, max_value=50, places=4, allow_nan=False, allow_infinity=False)


@st.composite
def tiered(draw: st.DrawFn, mode: TieredMode) -> TieredPrice:
    bounds = sorted(set(draw(st.lists(st.integers(1, 120), min_size=0, max_size=4))))
    tiers = []
    for bound in [*bounds, None]:
        flat = draw(st.none() | money)
        unit = draw(st.none() | money) if flat is not None else draw(money)
        tiers.append(PriceTier(D(bound) if bound is not None else None, flat, unit))
    return TieredPrice(mode, tuple(tiers), draw(commitments()))


@st.composite
def commitments(draw: st.DrawFn) -> Commitments:
    minimum = draw(st.none() | st.decimals(0, 200, places=2))
    maximum = draw(st.none() | st.decimals(0, 400, places=2))
    if minimum is not None and maximum is not None and minimum > maximum:
        minimum, maximum = maximum, minimum
    return Commitments(minimum, maximum)


prices = st.one_of(
    st.builds(UnitPrice, money, commitments()),
    st.builds(PackagePrice, money, st.integers(1, 25).map(D), commitments()),
    st.builds(DynamicPrice, st.decimals(0, 3, places=3), commitments()),
    tiered(TieredMode.GRADUATED),
    tiered(TieredMode.VOLUME),
)
discounts = st.builds(
    Discounts,
    st.none() | st.decimals(0, 100, places=1),
    st.none() | st.integers(1, 60).map(D),
)


def _splits(total: int, cuts: list[int]) -> list[int]:
    points = sorted({min(c, total) for c in cuts})
    parts, previous = [], 0
    for point in [*points, total]:
        parts.append(point - previous)
        previous = point
    return parts


def _rate_progressively(price: Price, disc: Discounts, currency: Currency, parts: list[int]) -> list:
    results = []
    billed = 0
    boundaries = [FULL.start + (FULL.end - FULL.start) * i / len(parts) for i in range(len(parts))] + [FULL.end]
    for index, part in enumerate(parts):
        period = Period(boundaries[index], boundaries[index + 1])
        results.append(
            rate(
                RatingInput(
                    price, currency, period, FULL, quantity=D(part), pre_period_quantity=D(billed), discounts=disc
                )
            )
        )
        billed += part
    return results


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(prices, discounts, st.sampled_from(CURRENCIES), st.integers(0, 250))
def test_one_invoice_equals_the_unit_by_unit_reference(
    price: Price, disc: Discounts, currency: Currency, quantity: int
) -> None:
    result = rate(RatingInput(price, currency, FULL, quantity=D(quantity), discounts=disc))
    expected = reference(price, disc, currency, quantity)
    assert result.totals.amount == expected.charges
    assert result.totals.discounts_total == expected.discounts
    assert result.totals.charges_total == expected.commitment
    assert result.totals.total == expected.total


@settings(max_examples=400, deadline=None)
@given(
    prices.filter(allows_progressive_billing),
    discounts,
    st.sampled_from(CURRENCIES),
    st.integers(0, 250),
    st.lists(st.integers(0, 250), max_size=5),
)
def test_progressive_invoices_add_up_to_one_invoice(
    price: Price, disc: Discounts, currency: Currency, quantity: int, cuts: list[int]
) -> None:
    parts = _splits(quantity, cuts)
    results = _rate_progressively(price, disc, currency, parts)
    whole = rate(RatingInput(price, currency, FULL, quantity=D(quantity), discounts=disc))
    for field in ("amount", "charges_total", "discounts_total", "total"):
        assert sum((getattr(r.totals, field) for r in results), D(0)) == getattr(whole.totals, field), field
    assert sum((r.usage_discount_quantity for r in results), D(0)) == whole.usage_discount_quantity
    # Never negative, every line's discounts within its amount, the minimum spend once, at the end.
    for index, result in enumerate(results):
        assert result.totals.total >= 0
        for line in result.lines:
            assert 0 <= line.discounts_total <= line.amount
            assert currency.is_rounded(line.amount) and currency.is_rounded(line.discounts_total)
        commitment_lines = [line for line in result.lines if line.category is LineCategory.COMMITMENT]
        assert len(commitment_lines) <= (1 if index == len(results) - 1 else 0)


@settings(max_examples=200, deadline=None)
@given(
    prices.filter(allows_progressive_billing),
    discounts,
    st.integers(0, 200),
    st.lists(st.integers(0, 200), max_size=4),
    st.lists(st.integers(0, 200), max_size=4),
)
def test_the_total_does_not_depend_on_how_usage_is_split(
    price: Price, disc: Discounts, quantity: int, cuts_a: list[int], cuts_b: list[int]
) -> None:
    usd = CURRENCIES[0]
    a = _rate_progressively(price, disc, usd, _splits(quantity, cuts_a))
    b = _rate_progressively(price, disc, usd, _splits(quantity, cuts_b))
    assert sum((r.totals.total for r in a), D(0)) == sum((r.totals.total for r in b), D(0))


@settings(max_examples=300, deadline=None)
@given(prices, discounts, st.sampled_from(CURRENCIES), st.integers(0, 250))
def test_totals_are_never_negative(price: Price, disc: Discounts, currency: Currency, quantity: int) -> None:
    result = rate(RatingInput(price, currency, FULL, quantity=D(quantity), discounts=disc))
    assert result.totals.total >= 0 and result.totals.discounts_total <= result.totals.amount
    if price.commitments.maximum_amount is not None:
        assert result.totals.amount - result.totals.discounts_total <= currency.round(price.commitments.maximum_amount)


@settings(max_examples=300, deadline=None)
@given(
    tiered(TieredMode.VOLUME),
    discounts,
    st.sampled_from(CURRENCIES),
    st.integers(0, 250),
    st.lists(st.integers(1, 250), min_size=1, max_size=4),
)
def test_volume_late_usage_corrections_bill_the_rise_of_the_period_total(
    price: TieredPrice, disc: Discounts, currency: Currency, billed: int, late: list[int]
) -> None:
    """A period billed whole, then corrected for each batch of late usage (the engine's shape of a
    late-usage correction: the whole period again, after the quantity billed): the total charged is
    the highest period total reached at a correction, never less than the first invoice, and every
    correction charges what the total rose by since the last quantity billed. Under a minimum spend
    the totals are at least the minimum, so a correction charges only what the period costs above
    it (`period_closed`: the line billed whole charged the shortfall).

    To the minor unit without a percentage discount. With one, the period's total discounts each
    of the tier's items (its flat price and its unit price) apart and rounds each, and a correction
    discounts its one item: they may differ by up to two minor units per correction (docs/billing.md;
    e.g. BHD, 11.9 % off, 52 then 121 units over a 4.132 + 0.0266 / 1.228 + 0.4486 volume price: the
    correction 44.044, the rise of the period totals 44.046)."""

    def whole(quantity: int) -> D:
        return rate(RatingInput(price, currency, FULL, quantity=D(quantity), discounts=disc)).totals.total

    charged = whole(billed)
    billed_quantity, stored, corrections = billed, billed, 0
    for more in late:
        stored += more
        line = rate(
            RatingInput(
                price,
                currency,
                FULL,
                FULL,
                quantity=D(stored - billed_quantity),
                pre_period_quantity=D(billed_quantity),
                discounts=disc,
                period_started=True,
                period_closed=True,
            )
        )
        assert line.totals.total >= 0 and line.totals.charges_total == 0
        rise = max(D(0), whole(stored) - whole(billed_quantity))
        assert abs(line.totals.total - rise) <= (2 * currency.unit if disc.percentage else D(0))
        if line.totals.total:  # a correction made; one that charges nothing is not (its usage waits)
            charged += line.totals.total
            billed_quantity = stored
            corrections += 1
    slack = 2 * currency.unit * corrections if disc.percentage else D(0)
    assert abs(charged - max(whole(billed), whole(billed_quantity))) <= slack


@settings(max_examples=400, deadline=None)
@given(
    prices.filter(allows_progressive_billing),
    st.decimals(0, 200, places=2),
    discounts,
    st.sampled_from(CURRENCIES),
    st.integers(0, 250),
    st.lists(st.integers(0, 250), max_size=3),
    st.lists(st.integers(1, 250), min_size=1, max_size=4),
)
def test_late_usage_corrections_under_a_minimum_spend_add_up_to_one_invoice(
    price: Price, minimum: D, disc: Discounts, currency: Currency, billed: int, cuts: list[int], late: list[int]
) -> None:
    """A period with a minimum spend billed in parts (its last charging the shortfall), then
    corrected for each batch of late usage (`period_closed`: the line it corrects judged the
    minimum): every invoice together charges what one invoice for the period's final usage would,
    to the minor unit. Each correction charges only what the period now costs above the minimum
    less what it cost above it before (one item where the minimum covered part of the usage), never
    a shortfall again, never below 0."""
    maximum = price.commitments.maximum_amount
    if maximum is not None and maximum < minimum:
        minimum, maximum = maximum, minimum
    price = dataclasses.replace(price, commitments=Commitments(minimum, maximum))
    results = _rate_progressively(price, disc, currency, _splits(billed, cuts))
    stored = billed
    for more in late:
        results.append(
            rate(
                RatingInput(
                    price,
                    currency,
                    FULL,
                    FULL,
                    quantity=D(more),
                    pre_period_quantity=D(stored),
                    discounts=disc,
                    period_started=True,
                    period_closed=True,
                )
            )
        )
        stored += more
        correction = results[-1]
        assert correction.totals.total >= 0 and correction.totals.charges_total == 0
        for line in correction.lines:
            assert 0 <= line.discounts_total <= line.amount and currency.is_rounded(line.amount)
    whole = rate(RatingInput(price, currency, FULL, quantity=D(stored), discounts=disc))
    assert sum((r.totals.total for r in results), D(0)) == whole.totals.total
