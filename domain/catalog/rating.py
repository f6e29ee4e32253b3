"""The rating engine: a rate card's price, a period and quantities in; invoice line amounts out.

Pure code, `Decimal` only, no I/O. Subscriptions and invoices call `rate()` for every line they
bill; `simulate` and real invoices use the very same call.

How to call it
--------------
    result = rate(RatingInput(
        price=rate_card.price, discounts=rate_card.discounts, currency=currencies.get("USD"),
        service_period=Period(line_start, line_end),      # this line's part of the period
        full_period=Period(period_start, period_end),     # the whole billing period
        quantity=Decimal("120"),                          # usage in service_period, as of the cutoff
        pre_period_quantity=Decimal("80"),                # usage already billed earlier in full_period
        name="API calls"))
    result.lines        # DetailedLine per charge component (tier, flat fee, minimum spend, ...)
    result.totals       # amount, charges_total, discounts_total, total

- `RatingInput.for_rate_card(card, currency, ...)` takes the price, discounts and name from a
  catalog rate card (a free card, price None, has nothing to rate).
- `full_period` defaults to `service_period`; `service_period` must lie within it. The line is the period's first when
  `service_period.start == full_period.start` and nothing was billed before it, and its last when
  `service_period.end == full_period.end`; progressive billing is a period cut into consecutive lines, each rated with
  the usage billed by the lines before it as `pre_period_quantity` (0 on the first line). A late-usage correction
  covers the whole period again with what was billed as `pre_period_quantity`: it is the period's last line, not its
  first. Its `period_closed` says that the line it corrects was the period's last (so judged the minimum spend).
- Flat prices ignore quantities. They are never split: a `service_period` shorter than
  `full_period` means a partial period (subscription start, end or change) and, with
  `prorate=True`, the amount is prorated by time: amount x service / full. A zero (prorated)
  amount yields no line. Usage prices are not prorated (as OpenMeter).
- Usage prices (unit, tiered, package, dynamic) may be billed progressively except volume tiers
  (`prices.allows_progressive_billing`): a volume price rated on a split period raises
  `RatingError`; bill it once, for the whole period, on its last line.

What the result means
---------------------
Each `DetailedLine` has `quantity`, `per_unit_amount`, `amount` (rounded), its `discounts`
(ratecard percentage, maximum spend), `total = amount - discounts` and a stable `key` (OpenMeter's
child reference ids: `unit-price-usage`, `graduated-tiered-2-price-usage`, `min-spend`...).
Category `commitment` lines (the minimum-spend shortfall) count in `charges_total`, the others in
`amount`. Free units from a usage discount are reported in `usage_discount_quantity` and are
simply not charged.

Order of application (OpenMeter's): usage discount (first N units of the period free) -> price ->
percentage discount (per component) -> maximum spend (excess becomes a `maximum_spend` discount,
component by component in order) -> minimum spend (on the period's last line only, the shortfall
of the whole period's billed total after discounts, as one `min-spend` commitment line). A
late-usage correction of a period whose last line charged a shortfall (`period_closed`) bills only
what the period now costs above its minimum less what it cost above it before, as one
`min-spend-late-usage` item: the shortfall charged paid for the usage up to the minimum, and giving
it back would need a credit note.

The rounding rule (the one place amounts are rounded)
-----------------------------------------------------
Every amount is rounded to the currency's minor units, half away from zero, by `Currency.round`.
What is rounded is the *cumulative* charge of each component for the period's usage up to the end
of the line: a line's amount is `round(C(pre + quantity)) - round(C(pre))`, and likewise its
percentage discount and its maximum-spend discount. So the lines of a period billed in several
progressive invoices add up, to the cent, to what one invoice for the whole period would charge,
however the usage is split. OpenMeter rounds each line's own quantity x price, so splitting a
period there can drift by a minor unit per invoice (0.015/unit billed as 1+1 units: 0.02 + 0.02
instead of 0.03). A displayed line may therefore differ by one minor unit from its own
`quantity x per_unit_amount`; its amount is the one that keeps the period's total exact.
Totals are never negative: every discount of a line is at most that line's amount.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, Context, Decimal, getcontext, setcontext
from typing import Final, NamedTuple

from domain.catalog.currencies import Currency
from domain.catalog.durations import period_fraction
from domain.catalog.prices import (
    NO_DISCOUNTS,
    Discounts,
    DynamicPrice,
    FlatPrice,
    PackagePrice,
    PaymentTerm,
    Price,
    TieredMode,
    TieredPrice,
    UnitPrice,
)
from domain.catalog.ratecards import RateCard

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
_PCT: Final = Decimal("0.01")

_Round = Callable[[Decimal], Decimal]


class RatingError(ValueError):
    """The input cannot be rated (negative quantity, a split volume-tiered period, ...): a caller bug."""


class LineCategory(enum.StrEnum):
    REGULAR = "regular"
    COMMITMENT = "commitment"


class DiscountReason(enum.StrEnum):
    RATECARD_PERCENTAGE = "ratecard_percentage"
    MAXIMUM_SPEND = "maximum_spend"
    # Units, not money: the engine reports them in `usage_discount_quantity` and never as an
    # AmountDiscount; billing lists them on the line, as OpenMeter does.
    RATECARD_USAGE = "ratecard_usage"


class Period(NamedTuple):
    start: datetime
    end: datetime


# The results are NamedTuples: immutable like frozen dataclasses, and several times cheaper to
# build, which matters to a billing run rating hundreds of thousands of lines.
class AmountDiscount(NamedTuple):
    reason: DiscountReason
    amount: Decimal


class DetailedLine(NamedTuple):
    key: str
    name: str
    quantity: Decimal
    per_unit_amount: Decimal
    amount: Decimal
    discounts: tuple[AmountDiscount, ...]
    category: LineCategory
    payment_term: PaymentTerm
    period: Period

    @property
    def discounts_total(self) -> Decimal:
        return sum((d.amount for d in self.discounts), ZERO)

    @property
    def total(self) -> Decimal:
        return self.amount - self.discounts_total


class Totals(NamedTuple):
    amount: Decimal = ZERO
    charges_total: Decimal = ZERO
    discounts_total: Decimal = ZERO
    total: Decimal = ZERO


class RatingResult(NamedTuple):
    lines: tuple[DetailedLine, ...]
    totals: Totals
    # Units made free by the rate card's usage discount on this line, and on the lines before it.
    usage_discount_quantity: Decimal = ZERO
    pre_period_usage_discount_quantity: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class RatingInput:
    price: Price
    currency: Currency
    service_period: Period
    full_period: Period | None = None
    quantity: Decimal = ZERO
    pre_period_quantity: Decimal = ZERO
    discounts: Discounts = NO_DISCOUNTS
    prorate: bool = True
    name: str = ""
    # Whether a line billed before this one started the period (charged a graduated price's
    # first-tier flat fee, due once per period). None: judged by position, as the docstring says.
    # Billing knows it for sure: a late-usage correction after a period billed at zero usage, or a
    # line billed again after the period's first invoice was voided, cannot tell by position.
    period_started: bool | None = None
    # Whether a line billed before this one was rated as the period's last, and so judged its
    # minimum spend. Position cannot tell: a late-usage correction is its period's last line too,
    # and the shortfall it would charge was charged by the line it corrects (see the docstring).
    period_closed: bool = False

    @classmethod
    def for_rate_card(
        cls,
        card: RateCard,
        currency: Currency,
        service_period: Period,
        full_period: Period | None = None,
        quantity: Decimal = ZERO,
        pre_period_quantity: Decimal = ZERO,
        prorate: bool = True,
    ) -> RatingInput:
        """The input for a rate card's line: its price, discounts and name (a free card has no line)."""
        if card.price is None:
            raise RatingError(f"rate card {card.key!r} is free: it has no price to rate")
        return cls(
            card.price,
            currency,
            service_period,
            full_period,
            quantity,
            pre_period_quantity,
            card.discounts,
            prorate,
            card.name,
        )


# A charge component: (key, name, displayed quantity, per-unit amount, cumulative rounded amount
# before this line, after it).
_Component = tuple[str, str, Decimal, Decimal, Decimal, Decimal]
_EMPTY_TOTALS: Final = Totals()
_EMPTY_RESULT: Final = RatingResult((), _EMPTY_TOTALS)
# Enough digits that no product or sum is ever rounded before the one rounding to minor units
# (inputs carry at most 38 digits; the default context keeps 28).
EXACT: Final = Context(prec=80)
# Enum members bound once: reading `LineCategory.REGULAR` goes through the enum machinery on every
# access (~0.15 us each, several per line).
_REGULAR: Final = LineCategory.REGULAR
_COMMITMENT: Final = LineCategory.COMMITMENT
_IN_ARREARS: Final = PaymentTerm.IN_ARREARS
_BY_PERCENTAGE: Final = DiscountReason.RATECARD_PERCENTAGE
_BY_MAXIMUM: Final = DiscountReason.MAXIMUM_SPEND
_GRADUATED: Final = TieredMode.GRADUATED
# Results are built with `tuple.__new__`, every field in declaration order: a NamedTuple's own
# constructor is a Python function binding its arguments by name, and building a simple line's
# three results with it cost as much as rating it.
_build: Final = tuple.__new__


_BAD_PERIODS: Final = "the service period must lie within the full period, and neither may end before it starts"


def rate(data: RatingInput) -> RatingResult:
    # The exact context is installed as it is and the caller's put back, rather than entered with
    # `localcontext`, which copies the context on every call (1.3 us, a quarter of a line's cost).
    # Sharing one context object is safe: nothing reads its flags and its settings never change.
    outer = getcontext()
    setcontext(EXACT)
    try:
        return _rate(data)
    finally:
        setcontext(outer)


def _rate(data: RatingInput) -> RatingResult:
    price = data.price
    service = data.service_period
    full = data.full_period
    if full is None or full == service:  # a whole period, the usual line: two comparisons fewer
        full = service
        first = last = True
        if service.start > service.end:
            raise RatingError(_BAD_PERIODS)
    else:
        if not (full.start <= service.start <= service.end <= full.end):
            raise RatingError(_BAD_PERIODS)
        first = service.start == full.start
        last = service.end == full.end
    if type(price) is FlatPrice:
        return _rate_flat(data, price, service, full, first and last)

    quantity = data.quantity
    pre = data.pre_period_quantity
    if quantity < ZERO or pre < ZERO:
        raise RatingError("quantities must not be negative")
    if pre:
        # The first line starts the period with nothing billed before it. A late-usage correction
        # covers the whole period again, after what was billed: it is not the first.
        first = False

    # Usage discount: the period's first N units are free, wherever the line boundaries fall.
    discounts = data.discounts
    free = discounts.usage_quantity
    cumulative = pre + quantity
    if free:
        pre_rated = pre - free if pre > free else ZERO
        cum_rated = cumulative - free if cumulative > free else ZERO
        usage_discount = quantity - (cum_rated - pre_rated)
        pre_usage_discount = pre - pre_rated
    else:
        pre_rated, cum_rated = pre, cumulative
        usage_discount = pre_usage_discount = ZERO

    rounding = data.currency.round
    label = data.name
    components: list[_Component]
    kind = type(price)
    if kind is UnitPrice:
        unit = price.amount  # type: ignore[union-attr]
        before = ZERO if first else rounding(pre_rated * unit)
        components = [
            (
                "unit-price-usage",
                f"{label}: usage in period",
                cum_rated - pre_rated,
                unit,
                before,
                rounding(cum_rated * unit),
            )
        ]
    elif kind is PackagePrice:
        size = price.quantity_per_package  # type: ignore[union-attr]
        amount = price.amount  # type: ignore[union-attr]
        before_packages = ZERO if first else (pre_rated / size).to_integral_value(ROUND_CEILING)
        after_packages = (cum_rated / size).to_integral_value(ROUND_CEILING)
        components = [
            (
                "usage",
                f"{label}: usage in period",
                after_packages - before_packages,
                amount,
                rounding(before_packages * amount),
                rounding(after_packages * amount),
            )
        ]
    elif kind is DynamicPrice:
        multiplier = price.multiplier  # type: ignore[union-attr]
        before = ZERO if first else rounding(pre_rated * multiplier)
        after = rounding(cum_rated * multiplier)
        # Shown as one item of the line's money, and only when the line has usage (as OpenMeter):
        # a line without usage is no 0.00 item on the customer's invoice.
        shown = ONE if cum_rated > pre_rated else ZERO
        components = [("usage", f"{label}: usage in period", shown, after - before, before, after)]
    elif kind is TieredPrice and price.mode is _GRADUATED:  # type: ignore[union-attr]
        started = not first if data.period_started is None else data.period_started
        components = _graduated(price, pre_rated, cum_rated, first, started, rounding, label)  # type: ignore[arg-type]
    elif kind is TieredPrice:
        # Billed before: a late-usage correction of a period billed whole (at zero usage, too).
        billed_before = bool(pre) or data.period_started is True
        if not last or not (first or billed_before):
            raise RatingError("a volume-tiered price is billed once for the whole period, never progressively")
        components = _volume(price, cum_rated, rounding, label)  # type: ignore[arg-type]
        if billed_before:
            components = _volume_late(price, pre_rated, components, rounding, label)  # type: ignore[arg-type]
    else:  # pragma: no cover - Price is a closed union
        raise RatingError(f"unsupported price {price!r}")

    percentage = discounts.percentage
    share = percentage * _PCT if percentage else None
    maximum = price.commitments.maximum_amount
    minimum = price.commitments.minimum_amount

    lines: list[DetailedLine] = []
    amount_total = ZERO
    discount_total = ZERO
    if share is None and maximum is None:
        # The common case: no discount to spread, each component is its own line.
        net_before = net_after = ZERO
        for key, name, shown, per_unit, before, after in components:
            net_before += before
            net_after += after
            line_amount = after - before
            if line_amount or shown:
                amount_total += line_amount
                lines.append(
                    _build(
                        DetailedLine,
                        (
                            key,
                            name,
                            shown,
                            per_unit,
                            line_amount,
                            (),
                            _REGULAR,
                            _IN_ARREARS,
                            service,
                        ),
                    )
                )
    else:
        # Each component's percentage discount (cumulative, rounded like its amount), and the
        # period's billed total before and after this line once they are taken off.
        pcts: list[Decimal] | None = None
        total_before = total_after = ZERO
        if share is None:
            for component in components:
                total_before += component[4]
                total_after += component[5]
        else:
            pcts = []
            for component in components:
                d_before = rounding(component[4] * share) if component[4] else ZERO
                d_after = rounding(component[5] * share)
                pcts.append(d_after - d_before)
                total_before += component[4] - d_before
                total_after += component[5] - d_after
        net_before, net_after = total_before, total_after
        allowed: Decimal | None = None
        if maximum is not None:
            cap = rounding(maximum)
            net_before, net_after = min(total_before, cap), min(total_after, cap)
            allowed = net_after - net_before
        for index, (key, name, shown, per_unit, before, after) in enumerate(components):
            line_amount = after - before
            if not line_amount and not shown:
                continue
            line_discounts: tuple[AmountDiscount, ...] = ()
            net = line_amount
            if pcts is not None:
                pct = pcts[index]
                if pct:
                    line_discounts = (_build(AmountDiscount, (_BY_PERCENTAGE, pct)),)
                    discount_total += pct
                    net = line_amount - pct
            if allowed is not None:
                # The maximum spend keeps components in order until the cap, the rest is discounted.
                kept = net if net <= allowed else allowed
                allowed -= kept
                if net - kept:
                    line_discounts += (_build(AmountDiscount, (_BY_MAXIMUM, net - kept)),)
                    discount_total += net - kept
            amount_total += line_amount
            lines.append(
                _build(
                    DetailedLine,
                    (
                        key,
                        name,
                        shown,
                        per_unit,
                        line_amount,
                        line_discounts,
                        _REGULAR,
                        _IN_ARREARS,
                        service,
                    ),
                )
            )

    charges = ZERO
    if minimum is not None and last and data.period_closed:
        # A late-usage correction: the shortfall charged with the period's last line already paid
        # for usage up to the minimum, so only what the period now costs above it is owed.
        floor = rounding(minimum)
        paid = floor - net_before if net_before < floor else ZERO
        if paid:
            lines = _above_the_minimum(net_after - net_before, paid, label, service)
            amount_total, discount_total = (lines[0].amount if lines else ZERO), ZERO
    elif minimum is not None and last:
        floor = rounding(minimum)
        if net_after < floor:
            charges = floor - net_after
            lines.append(
                _build(
                    DetailedLine,
                    (
                        "min-spend",
                        f"{label}: minimum spend",
                        ONE,
                        charges,
                        charges,
                        (),
                        _COMMITMENT,
                        _IN_ARREARS,
                        full,
                    ),
                )
            )

    if not lines:
        return _build(RatingResult, ((), _EMPTY_TOTALS, usage_discount, pre_usage_discount))
    totals = _build(Totals, (amount_total, charges, discount_total, amount_total + charges - discount_total))
    return _build(RatingResult, (tuple(lines), totals, usage_discount, pre_usage_discount))


def _graduated(
    price: TieredPrice,
    pre: Decimal,
    cumulative: Decimal,
    first: bool,
    started: bool,
    rounding: _Round,
    label: str,
) -> list[_Component]:
    components: list[_Component] = []
    lower = ZERO
    for index, tier in enumerate(price.tiers):
        upper = tier.up_to_amount
        number = index + 1
        unit = tier.unit_price
        # The units in this tier, (lower, upper], before this line and after it; the usage before
        # the line is at most the usage after it, so a tier the usage has not reached is skipped.
        if unit is not None and cumulative > lower:
            in_after = (upper if upper is not None and cumulative > upper else cumulative) - lower
            if pre > lower:
                in_before = (upper if upper is not None and pre > upper else pre) - lower
                before = rounding(in_before * unit)
            else:
                in_before = before = ZERO
            if in_after:
                components.append(
                    (
                        f"graduated-tiered-{number}-price-usage",
                        f"{label}: usage price for tier {number}",
                        in_after - in_before,
                        unit,
                        before,
                        rounding(in_after * unit),
                    )
                )
        if tier.flat_price is not None:
            # A tier's flat price is due once the usage enters the tier (the first tier: always).
            entered_before = started if index == 0 else not first and pre > lower
            if index == 0 or cumulative > lower:
                flat = rounding(tier.flat_price)
                components.append(
                    (
                        f"graduated-tiered-{number}-flat-price",
                        f"{label}: flat price for tier {number}",
                        ZERO if entered_before else ONE,
                        tier.flat_price,
                        flat if entered_before else ZERO,
                        flat,
                    )
                )
        if upper is None or cumulative <= upper:
            break
        lower = upper
    return components


def _volume(price: TieredPrice, quantity: Decimal, rounding: _Round, label: str) -> list[_Component]:
    index = len(price.tiers) - 1
    for i, tier in enumerate(price.tiers):
        if tier.up_to_amount is None or quantity <= tier.up_to_amount:
            index = i
            break
    tier = price.tiers[index]
    number = index + 1
    components: list[_Component] = []
    if tier.flat_price is not None:
        components.append(
            (
                "volume-flat-price",
                f"{label}: flat price for tier {number}",
                ONE,
                tier.flat_price,
                ZERO,
                rounding(tier.flat_price),
            )
        )
    if tier.unit_price is not None and quantity:
        components.append(
            (
                "volume-tiered-price",
                f"{label}: unit price for tier {number}",
                quantity,
                tier.unit_price,
                ZERO,
                rounding(quantity * tier.unit_price),
            )
        )
    return components


def _above_the_minimum(net: Decimal, paid: Decimal, label: str, service: Period) -> list[DetailedLine]:
    """A late-usage correction's `net` charge (after its discounts and maximum spend) less the part
    of it that the shortfall already charged (`paid`) covers, as one item: the period's cost above
    its minimum spend now, less what it cost above it when billed. Its components' amounts and
    discounts are not shown apart, since the minimum took a part of them that is not a component's.
    No item at all when the minimum still covers everything."""
    more = net - paid
    if more <= ZERO:
        return []
    return [
        _build(
            DetailedLine,
            (
                "min-spend-late-usage",
                f"{label}: late usage above the minimum spend",
                ONE,
                more,
                more,
                (),
                _REGULAR,
                _IN_ARREARS,
                service,
            ),
        )
    ]


def _volume_late(
    price: TieredPrice, pre: Decimal, whole: list[_Component], rounding: _Round, label: str
) -> list[_Component]:
    """A late-usage correction of a period billed whole at `pre`: the period's new total (`whole`)
    less the total billed, as one item (the tier, and so every unit's price, may have changed),
    cumulative like every component (billed before it, the new total after) so that discounts and
    a maximum spend apply to the period as a whole. Never below what was billed: a total that now
    costs less needs a credit note, which this is not."""
    billed = sum((after for *_, after in _volume(price, pre, rounding, label)), ZERO)
    total = sum((after for *_, after in whole), ZERO)
    more = total - billed if total > billed else ZERO
    return [("volume-late-usage", f"{label}: late usage in period", ONE if more else ZERO, more, billed, billed + more)]


def _rate_flat(data: RatingInput, price: FlatPrice, service: Period, full: Period, whole: bool) -> RatingResult:
    amount = price.amount
    if data.prorate and not whole:
        amount = amount * period_fraction(service.start, service.end, full.start, full.end)
    amount = data.currency.round(amount)
    if amount == 0:
        return _EMPTY_RESULT
    discounts: tuple[AmountDiscount, ...] = ()
    discount = _percentage_off(data.currency, amount, data.discounts)
    if discount:
        discounts = (_build(AmountDiscount, (_BY_PERCENTAGE, discount)),)
    line = _build(
        DetailedLine, ("flat-price", data.name, ONE, amount, amount, discounts, _REGULAR, price.payment_term, service)
    )
    return _build(RatingResult, ((line,), _build(Totals, (amount, ZERO, discount, amount - discount)), ZERO, ZERO))


def _percentage_off(currency: Currency, amount: Decimal, discounts: Discounts) -> Decimal:
    """A flat amount's rate-card percentage discount, rounded to the currency's minor units."""
    return currency.round(amount * discounts.percentage * _PCT) if discounts.percentage else ZERO


def rate_flat_units(
    per_unit: Decimal, quantity: Decimal, currency: Currency, discounts: Discounts = NO_DISCOUNTS
) -> tuple[Decimal, Decimal]:
    """An invoice's flat fee line, OpenMeter's perUnitAmount x quantity: its amount and its rate
    card's percentage discount, each rounded once to the currency's minor units, computed in the
    exact context as `rate` computes (the default context's 28 digits would round the product
    first)."""
    outer = getcontext()
    setcontext(EXACT)
    try:
        amount = currency.round(per_unit * quantity)
        return amount, _percentage_off(currency, amount, discounts)
    finally:
        setcontext(outer)


def flat_amount_charging(charge: Decimal, currency: Currency, discounts: Discounts = NO_DISCOUNTS) -> Decimal:
    """The smallest flat amount whose rate card's percentage discount leaves `charge` to pay: the
    inverse of `rate_flat_units` for one unit (a fee billed net of what was already charged is
    netted after discounts, then given the amount that charges the net). One always exists below a
    100 % discount: a minor unit more adds a minor unit or nothing to the charge."""
    if not discounts.percentage:
        return charge
    share = discounts.percentage * _PCT
    if share >= 1:
        raise RatingError("no amount charges anything under a 100 % discount")
    outer = getcontext()
    setcontext(EXACT)
    try:

        def charged(amount: Decimal) -> Decimal:
            return amount - _percentage_off(currency, amount, discounts)

        amount = currency.round(charge / (1 - share))
        while charged(amount) < charge:
            amount += currency.unit
        while amount > 0 and charged(amount - currency.unit) >= charge:
            amount -= currency.unit
        return amount
    finally:
        setcontext(outer)


# The places of a per-unit amount that does not divide into minor units (Stripe's unit_amount_decimal
# keeps 12 too): per_unit x quantity then rounds back to the total for any quantity under 10^9.
_PER_UNIT_PLACES: Final = Decimal("1e-12")


def flat_fee_per_unit(data: RatingInput, quantity: Decimal) -> Decimal:
    """The perUnitAmount of a flat fee bought `quantity` times (an add-on's seats), such that
    `rate_flat_units(per_unit, quantity)` charges what one fee of quantity x the amount charges:
    prorated and rounded once for all of them, as OpenMeter prices an add-on bought N times (one
    rate card of N x the amount). Rounding each unit first would charge 3 seats of 10.00 for a
    third of a period 3 x 3.33 = 9.99 instead of 10.00. 0 when the fee comes to nothing."""
    price = data.price
    if not isinstance(price, FlatPrice) or quantity <= 0:
        raise RatingError("a flat fee's per-unit amount needs a flat price and a positive quantity")
    outer = getcontext()
    setcontext(EXACT)
    try:
        whole = _rate(replace(data, price=replace(price, amount=price.amount * quantity)))
        return flat_per_unit(whole.totals.amount, quantity, data.currency)
    finally:
        setcontext(outer)


def flat_per_unit(total: Decimal, quantity: Decimal, currency: Currency) -> Decimal:
    """The perUnitAmount of a flat fee line of `quantity` units that charges `total` (in minor
    units) once `rate_flat_units` multiplies and rounds it."""
    outer = getcontext()
    setcontext(EXACT)
    try:
        per_unit = total / quantity
        if per_unit * quantity != total:
            per_unit = per_unit.quantize(_PER_UNIT_PLACES)
            if currency.round(per_unit * quantity) != total:
                raise RatingError(f"a flat fee cannot be split into {quantity} units exactly")
        return per_unit
    finally:
        setcontext(outer)


def charged_for(
    service: Period, charged: Sequence[tuple[Period, Decimal]], currency: Currency, share: Decimal = ONE
) -> Decimal:
    """What `charged` (lines already invoiced: each its service period and amount) charged for
    `service`'s time: each line's amount times the share of its own period that overlaps
    `service`, exactly (time in whole units, as proration), summed, times `share` (the part of it
    a pooled credit's fee takes, cumulative: see the subscription sync), then rounded once to the
    currency's minor units as every rated amount is. A flat fee's later version bills net of it
    (the subscription sync; docs/billing.md)."""
    outer = getcontext()
    setcontext(EXACT)
    try:
        total = ZERO
        for period, amount in charged:
            start, end = max(period.start, service.start), min(period.end, service.end)
            if start < end and period.start < period.end:
                total += amount * period_fraction(start, end, period.start, period.end)
        return currency.round(total * share)
    finally:
        setcontext(outer)
