"""The rating engine on worked examples (amounts computed by hand)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from domain.catalog import currencies
from domain.catalog.prices import (
    Commitments,
    Discounts,
    DynamicPrice,
    FlatPrice,
    PackagePrice,
    PaymentTerm,
    PriceTier,
    TieredMode,
    TieredPrice,
    UnitPrice,
)
from domain.catalog.ratecards import RateCard, parse_rate_card
from domain.catalog.rating import (
    DiscountReason,
    LineCategory,
    Period,
    RatingError,
    RatingInput,
    charged_for,
    flat_amount_charging,
    flat_per_unit,
    rate,
    rate_flat_units,
)
from domain.catalog.wire import Issues, Reader

USD = currencies.get("USD")
JAN = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
MID = datetime(2026, 1, 16, tzinfo=UTC)
FIRST_HALF = Period(JAN.start, MID)
SECOND_HALF = Period(MID, JAN.end)

GRADUATED = TieredPrice(
    TieredMode.GRADUATED,
    (PriceTier(D(10), D(5), D(1)), PriceTier(D(20), D(3), D("0.5")), PriceTier(None, None, D("0.1"))),
)
VOLUME = TieredPrice(
    TieredMode.VOLUME,
    (PriceTier(D(10), D(5), D(1)), PriceTier(D(20), D(3), D("0.5")), PriceTier(None, None, D("0.1"))),
)


def test_unit_price() -> None:
    result = rate(RatingInput(UnitPrice(D("0.25")), USD, JAN, quantity=D(7), name="calls"))
    (line,) = result.lines
    assert (line.key, line.quantity, line.per_unit_amount, line.amount) == ("unit-price-usage", 7, D("0.25"), D("1.75"))
    assert result.totals.total == D("1.75")


def test_graduated_tiers_split_the_quantity_and_charge_tier_flats_on_entry() -> None:
    result = rate(RatingInput(GRADUATED, USD, JAN, quantity=D(25)))
    amounts = {line.key: (line.quantity, line.amount) for line in result.lines}
    assert amounts == {
        "graduated-tiered-1-price-usage": (10, D("10.00")),
        "graduated-tiered-1-flat-price": (1, D("5.00")),
        "graduated-tiered-2-price-usage": (10, D("5.00")),
        "graduated-tiered-2-flat-price": (1, D("3.00")),
        "graduated-tiered-3-price-usage": (5, D("0.50")),
    }
    assert result.totals.total == D("23.50")


def test_graduated_first_tier_flat_is_due_without_usage() -> None:
    result = rate(RatingInput(GRADUATED, USD, JAN, quantity=D(0)))
    assert [(line.key, line.amount) for line in result.lines] == [("graduated-tiered-1-flat-price", D("5.00"))]


def test_whether_a_line_before_started_the_period_decides_the_first_tier_flat_not_its_position() -> None:
    def first_flat(line: RatingInput) -> D:
        return sum((x.amount for x in rate(line).lines if x.key == "graduated-tiered-1-flat-price"), D(0))

    # By position (no billing history given): the period's first line pays the entry.
    assert first_flat(RatingInput(GRADUATED, USD, FIRST_HALF, JAN, quantity=D(3))) == D(5)
    assert first_flat(RatingInput(GRADUATED, USD, SECOND_HALF, JAN, quantity=D(3), pre_period_quantity=D(3))) == 0
    # A correction covering the whole period after one billed at zero usage: already paid.
    assert first_flat(RatingInput(GRADUATED, USD, JAN, JAN, quantity=D(5), period_started=True)) == 0
    # The rest of a period whose first invoice was voided: nothing counting paid it yet.
    assert first_flat(RatingInput(GRADUATED, USD, SECOND_HALF, JAN, quantity=D(5), period_started=False)) == D(5)
    # Higher tiers still follow the quantities: the second tier's fee is due once 10 is passed.
    crossing = rate(
        RatingInput(GRADUATED, USD, SECOND_HALF, JAN, quantity=D(5), pre_period_quantity=D(8), period_started=True)
    )
    assert [(x.key, x.amount) for x in crossing.lines if "flat" in x.key] == [
        ("graduated-tiered-2-flat-price", D("3.00"))
    ]


def test_volume_picks_one_tier_by_the_total() -> None:
    result = rate(RatingInput(VOLUME, USD, JAN, quantity=D(15)))
    assert [(line.key, line.amount) for line in result.lines] == [
        ("volume-flat-price", D("3.00")),
        ("volume-tiered-price", D("7.50")),
    ]
    with pytest.raises(RatingError):
        rate(RatingInput(VOLUME, USD, FIRST_HALF, JAN, quantity=D(15)))


def test_package_counts_started_packages() -> None:
    price = PackagePrice(D(10), D(20))
    for quantity, total in ((D(0), D(0)), (D(20), D(10)), (D("20.1"), D(20)), (D(98), D(50))):
        assert rate(RatingInput(price, USD, JAN, quantity=quantity)).totals.total == total


def test_dynamic_multiplies_the_metered_money() -> None:
    result = rate(RatingInput(DynamicPrice(D("1.5")), USD, JAN, quantity=D("10.333")))
    assert result.totals.total == D("15.50")  # 15.4995 rounds half up to the cent


def test_dynamic_without_usage_has_no_line() -> None:
    # OpenMeter's dynamic pricer bills only positive usage (rate/dynamic.go; dynamic_test.go "no
    # usage": no detailed lines, and with a minimum spend only the min-spend line). A zero usage
    # line would reach the customer's invoice (and Stripe) as a 0.00 "usage in period" item.
    assert rate(RatingInput(DynamicPrice(D(1)), USD, JAN, quantity=D(0))).lines == ()
    with_minimum = rate(RatingInput(DynamicPrice(D(1), Commitments(minimum_amount=D(100))), USD, JAN))
    assert [(x.key, x.amount) for x in with_minimum.lines] == [("min-spend", D("100.00"))]
    # A later part of a progressively billed period with no new usage adds nothing either.
    later = rate(RatingInput(DynamicPrice(D(1)), USD, SECOND_HALF, JAN, quantity=D(0), pre_period_quantity=D(5)))
    assert later.lines == ()
    # Free units from a usage discount are no usage to show.
    free = rate(RatingInput(DynamicPrice(D(1)), USD, JAN, quantity=D(3), discounts=Discounts(usage_quantity=D(5))))
    assert (free.lines, free.usage_discount_quantity) == ((), D(3))
    # Usage that rounds to nothing is still shown, as OpenMeter does (quantity 1 x 0.00).
    tiny = rate(RatingInput(DynamicPrice(D(1)), USD, JAN, quantity=D("0.001")))
    assert [(x.key, x.quantity, x.amount) for x in tiny.lines] == [("usage", 1, D("0.00"))]


def test_flat_fee_is_prorated_by_time() -> None:
    price = FlatPrice(D(31), PaymentTerm.IN_ADVANCE)
    result = rate(RatingInput(price, USD, SECOND_HALF, JAN))  # 16 of 31 days
    assert result.totals.total == D("16.00")
    assert result.lines[0].payment_term is PaymentTerm.IN_ADVANCE
    assert rate(RatingInput(price, USD, SECOND_HALF, JAN, prorate=False)).totals.total == D(31)


def test_progressive_billing_does_not_drift_by_a_cent() -> None:
    price = UnitPrice(D("0.015"))
    first = rate(RatingInput(price, USD, FIRST_HALF, JAN, quantity=D(1)))
    second = rate(RatingInput(price, USD, SECOND_HALF, JAN, quantity=D(1), pre_period_quantity=D(1)))
    whole = rate(RatingInput(price, USD, JAN, quantity=D(2)))
    assert (first.totals.total, second.totals.total) == (D("0.02"), D("0.01"))
    assert first.totals.total + second.totals.total == whole.totals.total == D("0.03")


def test_usage_discount_frees_the_periods_first_units() -> None:
    discounts = Discounts(usage_quantity=D(8))
    first = rate(RatingInput(UnitPrice(D(1)), USD, FIRST_HALF, JAN, quantity=D(5), discounts=discounts))
    second = rate(
        RatingInput(
            UnitPrice(D(1)), USD, SECOND_HALF, JAN, quantity=D(5), pre_period_quantity=D(5), discounts=discounts
        )
    )
    assert (first.totals.total, first.usage_discount_quantity) == (0, 5)
    assert (second.totals.total, second.usage_discount_quantity, second.pre_period_usage_discount_quantity) == (2, 3, 5)


def test_percentage_discount_and_maximum_spend() -> None:
    price = UnitPrice(D(1), Commitments(maximum_amount=D(50)))
    result = rate(RatingInput(price, USD, JAN, quantity=D(100), discounts=Discounts(percentage=D(10))))
    (line,) = result.lines
    reasons = {d.reason: d.amount for d in line.discounts}
    assert reasons == {DiscountReason.RATECARD_PERCENTAGE: D("10.00"), DiscountReason.MAXIMUM_SPEND: D("40.00")}
    assert result.totals == result.totals.__class__(D("100.00"), D(0), D("50.00"), D("50.00"))


def test_minimum_spend_once_on_the_last_line() -> None:
    price = UnitPrice(D(1), Commitments(minimum_amount=D(20)))
    first = rate(RatingInput(price, USD, FIRST_HALF, JAN, quantity=D(5)))
    last = rate(RatingInput(price, USD, SECOND_HALF, JAN, quantity=D(3), pre_period_quantity=D(5)))
    assert first.totals.charges_total == 0
    commitment = [line for line in last.lines if line.category is LineCategory.COMMITMENT]
    assert [(line.key, line.amount, line.period) for line in commitment] == [("min-spend", D("12.00"), JAN)]
    assert first.totals.total + last.totals.total == D(20)


def test_a_late_usage_correction_bills_only_what_the_period_costs_above_a_minimum_already_charged() -> None:
    # 5 units at 1.00 under a 20.00 minimum: 5.00 and a 15.00 shortfall. Late usage of the same
    # period is rated above the billed 5 with `period_closed` (the line it corrects judged the
    # minimum): 10 more units cost 15.00 in all, which the shortfall already paid (nothing); 10 more
    # after those, 25.00 in all, 5.00 above the minimum, as one item; then 5 more, all above it, as
    # the usual component. 30.00, what one invoice of 30 units charges. Rated by position alone, the
    # first correction charged 10.00 and another 5.00 shortfall.
    price = UnitPrice(D(1), Commitments(minimum_amount=D(20)))
    billed = rate(RatingInput(price, USD, JAN, quantity=D(5)))

    def late(pre: int, more: int) -> tuple[list[tuple[str, D, D]], D]:
        r = rate(RatingInput(price, USD, JAN, JAN, quantity=D(more), pre_period_quantity=D(pre), period_closed=True))
        return [(x.key, x.quantity, x.amount) for x in r.lines], r.totals.total

    assert late(5, 10) == ([], D(0))
    assert late(15, 10) == ([("min-spend-late-usage", D(1), D(5))], D(5))
    assert late(25, 5) == ([("unit-price-usage", D(5), D(5))], D(5))
    assert billed.totals.total + D(5) + D(5) == rate(RatingInput(price, USD, JAN, quantity=D(30))).totals.total
    by_position = rate(RatingInput(price, USD, JAN, JAN, quantity=D(10), pre_period_quantity=D(5)))
    assert by_position.totals.total == D(15)  # 10.00 of usage and a 5.00 shortfall again


def test_a_progressive_period_with_a_percentage_discount_keeps_its_commitments() -> None:
    """Split lines of a period with a percentage discount and a maximum or minimum charge what one
    invoice would. (OpenMeter judges the earlier lines by their amounts before discounts, so it
    charges 36 + 10 = 46 for the maximum case and 50 without a minimum line for the minimum case.)"""
    off = Discounts(percentage=D(10))
    capped = UnitPrice(D(1), Commitments(maximum_amount=D(50)))
    first = rate(RatingInput(capped, USD, FIRST_HALF, JAN, quantity=D(40), discounts=off))
    second = rate(RatingInput(capped, USD, SECOND_HALF, JAN, quantity=D(20), pre_period_quantity=D(40), discounts=off))
    whole = rate(RatingInput(capped, USD, JAN, quantity=D(60), discounts=off))
    assert (first.totals.total, second.totals.total, whole.totals.total) == (D(36), D(14), D(50))

    half_off = Discounts(percentage=D(50))
    floored = UnitPrice(D(1), Commitments(minimum_amount=D(100)))
    first = rate(RatingInput(floored, USD, FIRST_HALF, JAN, quantity=D(100), discounts=half_off))
    last = rate(
        RatingInput(floored, USD, SECOND_HALF, JAN, quantity=D(0), pre_period_quantity=D(100), discounts=half_off)
    )
    commitment = [(line.key, line.amount) for line in last.lines if line.category is LineCategory.COMMITMENT]
    assert (first.totals.total, commitment, last.totals.total) == (D(50), [("min-spend", D(50))], D(50))


def test_rejects_inconsistent_input() -> None:
    with pytest.raises(RatingError):
        rate(RatingInput(UnitPrice(D(1)), USD, JAN, quantity=D(-1)))
    with pytest.raises(RatingError):
        rate(RatingInput(UnitPrice(D(1)), USD, JAN, quantity=D(1), pre_period_quantity=D(-1)))


def test_a_late_usage_correction_bills_the_difference_for_the_whole_period() -> None:
    # The period was billed whole (1 unit at 0.015 -> 0.02); a late unit then arrives. The correction
    # covers the same period with the billed unit as pre-period usage: 0.03 cumulative - 0.02 = 0.01.
    price = UnitPrice(D("0.015"))
    billed = rate(RatingInput(price, USD, JAN, quantity=D(1)))
    correction = rate(RatingInput(price, USD, JAN, JAN, quantity=D(1), pre_period_quantity=D(1)))
    whole = rate(RatingInput(price, USD, JAN, quantity=D(2)))
    assert (billed.totals.total, correction.totals.total) == (D("0.02"), D("0.01"))
    assert billed.totals.total + correction.totals.total == whole.totals.total


def test_rounds_in_the_currencys_minor_units() -> None:
    jpy, bhd = currencies.get("JPY"), currencies.get("BHD")
    assert rate(RatingInput(UnitPrice(D("0.5")), jpy, JAN, quantity=D(3))).totals.total == D(2)
    assert rate(RatingInput(UnitPrice(D("0.0005")), bhd, JAN, quantity=D(3))).totals.total == D("0.002")


def test_service_period_must_lie_within_the_full_period() -> None:
    later = Period(JAN.start, JAN.end + (JAN.end - MID))
    with pytest.raises(RatingError):
        rate(RatingInput(FlatPrice(D(10)), USD, later, JAN))
    with pytest.raises(RatingError):
        rate(RatingInput(UnitPrice(D(1)), USD, later, JAN, quantity=D(1)))


def test_huge_amounts_round_instead_of_failing() -> None:
    result = rate(RatingInput(UnitPrice(D("123456789012345678901234567890.123")), USD, JAN, quantity=D(3)))
    assert result.totals.total == D("370370367037037036703703703670.37")


def test_input_for_a_rate_card() -> None:
    card, issues = parse_rate_card_for_test(
        {
            "type": "usage_based",
            "key": "api",
            "name": "API calls",
            "featureKey": "api",
            "billingCadence": "P1M",
            "price": {"type": "unit", "amount": "0.5"},
            "discounts": {"usage": {"quantity": "2"}},
        }
    )
    assert card is not None and not issues.errors
    result = rate(RatingInput.for_rate_card(card, USD, JAN, quantity=D(10)))
    assert (result.totals.total, result.usage_discount_quantity, result.lines[0].name) == (
        D("4.00"),
        D(2),
        "API calls: usage in period",
    )
    free, _ = parse_rate_card_for_test({"type": "flat_fee", "key": "free", "name": "Free", "price": None})
    assert free is not None
    with pytest.raises(RatingError):
        RatingInput.for_rate_card(free, USD, JAN)


def parse_rate_card_for_test(data: dict[str, object]) -> tuple[RateCard | None, Issues]:
    reader = Reader()
    return parse_rate_card(reader, data, "rateCard"), reader.issues


def test_an_invoices_flat_fee_line_is_rounded_once_and_takes_its_percentage_discount() -> None:
    ten_off = Discounts(percentage=D(10))
    assert rate_flat_units(D(100), D(1), USD, ten_off) == (D("100.00"), D("10.00"))
    assert rate_flat_units(D("33.335"), D(3), USD) == (D("100.01"), D(0))  # 100.005: once, half up
    # 34 digits: the default context (28) rounded the product to 1000000.005 before the cents.
    assert rate_flat_units(D("1000000.00499999999999999999999999"), D(1), USD) == (D("1000000.00"), D(0))
    assert rate_flat_units(D(1000), D(3), currencies.get("JPY"), ten_off) == (D(3000), D(300))


def test_what_issued_lines_charged_for_a_time_is_their_overlapping_shares_rounded_once() -> None:
    # The subscription sync nets a flat fee's later version by this: each issued line's amount
    # times the share of its own period the time overlaps, summed exactly, then rounded once.
    nov, nov11, nov21 = (datetime(2026, 11, d, tzinfo=UTC) for d in (1, 11, 21))
    dec = datetime(2026, 12, 1, tzinfo=UTC)
    late = Period(nov21, dec)
    # Half of 3.33 twice is 3.33 (1.67 + 1.67 = 3.34 had each been rounded).
    assert charged_for(late, [(Period(nov11, dec), D("3.33")), (Period(nov11, dec), D("3.33"))], USD) == D("3.33")
    # 10 of 30 days of 30.00; a line that only meets the time at its edge charged nothing for it.
    assert charged_for(late, [(Period(nov, dec), D(30)), (Period(nov, nov21), D(9))], USD) == D("10.00")
    assert charged_for(late, [], USD) == D(0)


def test_a_flat_total_splits_into_per_unit_amounts_that_charge_it_back() -> None:
    assert flat_per_unit(D("3.33"), D(1), USD) == D("3.33")
    per_unit = flat_per_unit(D("10.00"), D(3), USD)
    assert rate_flat_units(per_unit, D(3), USD)[0] == D("10.00")


def test_the_amount_charging_a_net_is_the_smallest_whose_discount_leaves_it() -> None:
    half, third = Discounts(percentage=D(50)), Discounts(percentage=D("33.3333"))
    # 50 % off: 0.03 charges 0.03 - 0.02 (half of 0.03 rounded up) = 0.01, and so does 0.02.
    assert flat_amount_charging(D("0.01"), USD, half) == D("0.02")
    assert flat_amount_charging(D("10.00"), USD, half) == D("20.00")
    assert flat_amount_charging(D("10.00"), USD) == D("10.00")
    # Every net in cents from 0 to 50.00 is reached exactly, by the smallest amount that does.
    for cents in range(0, 5001, 7):
        net = D(cents) / 100
        for off in (half, third, Discounts(percentage=D("99.99"))):
            amount = flat_amount_charging(net, USD, off)
            charged = rate_flat_units(amount, D(1), USD, off)
            assert charged[0] - charged[1] == net, (net, off.percentage, amount)
            if amount > 0:
                less = rate_flat_units(amount - USD.unit, D(1), USD, off)
                assert less[0] - less[1] < net, (net, off.percentage, amount)
    with pytest.raises(RatingError):
        flat_amount_charging(D(1), USD, Discounts(percentage=D(100)))
