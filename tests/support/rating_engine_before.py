"""The rating engine as it was before it was tuned for speed (main at 3faf52f), kept as a model.

`tests/unit/test_rating_differential.py` holds the tuned engine (domain/catalog/rating.py) to it:
every result, line by line, digit by digit, must be the same. Only the algorithm is here; the
input and result types are the product's. Not used by the product.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_CEILING, Context, Decimal, localcontext
from typing import Final

from domain.catalog.durations import period_fraction
from domain.catalog.prices import (
    DynamicPrice,
    FlatPrice,
    PackagePrice,
    PaymentTerm,
    TieredMode,
    TieredPrice,
    UnitPrice,
)
from domain.catalog.rating import (
    AmountDiscount,
    DetailedLine,
    DiscountReason,
    LineCategory,
    Period,
    RatingError,
    RatingInput,
    RatingResult,
    Totals,
)

ZERO: Final = Decimal(0)
ONE: Final = Decimal(1)
_PCT: Final = Decimal("0.01")

_Round = Callable[[Decimal], Decimal]
# A charge component: (key, name, displayed quantity, per-unit amount, cumulative rounded amount
# before this line, after it).
_Component = tuple[str, str, Decimal, Decimal, Decimal, Decimal]
_EMPTY_TOTALS: Final = Totals()
_EXACT: Final = Context(prec=80)


def rate(data: RatingInput) -> RatingResult:
    # Enough digits that no product or sum is ever rounded before the one rounding to minor units
    # (inputs carry at most 38 digits; the default context keeps 28).
    with localcontext(_EXACT):
        return _rate(data)


def _rate(data: RatingInput) -> RatingResult:
    price = data.price
    full = data.full_period or data.service_period
    service = data.service_period
    if not (full.start <= service.start <= service.end <= full.end):
        raise RatingError("the service period must lie within the full period, and neither may end before it starts")
    if type(price) is FlatPrice:
        return _rate_flat(data, price, service, full)

    first = service.start == full.start
    last = service.end == full.end
    quantity = data.quantity
    pre = data.pre_period_quantity
    if quantity < 0 or pre < 0:
        raise RatingError("quantities must not be negative")
    if first and pre:
        raise RatingError("the period's first line has no usage billed before it")

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
    elif kind is TieredPrice and price.mode is TieredMode.GRADUATED:  # type: ignore[union-attr]
        components = _graduated(price, pre_rated, cum_rated, first, rounding, label)  # type: ignore[arg-type]
    elif kind is TieredPrice:
        if not (first and last):
            raise RatingError("a volume-tiered price is billed once for the whole period, never progressively")
        components = _volume(price, cum_rated, rounding, label)  # type: ignore[arg-type]
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
        billed_after = ZERO
        for key, name, shown, per_unit, before, after in components:
            billed_after += after
            line_amount = after - before
            if line_amount or shown:
                amount_total += line_amount
                lines.append(
                    DetailedLine(
                        key,
                        name,
                        shown,
                        per_unit,
                        line_amount,
                        (),
                        LineCategory.REGULAR,
                        PaymentTerm.IN_ARREARS,
                        service,
                    )
                )
    else:
        nets: list[Decimal] = []
        pcts: list[Decimal] = []
        total_before = ZERO
        total_after = ZERO
        for _, _, _, _, before, after in components:
            if share is not None:
                d_before = rounding(before * share)
                d_after = rounding(after * share)
            else:
                d_before = d_after = ZERO
            pcts.append(d_after - d_before)
            nets.append(after - before - (d_after - d_before))
            total_before += before - d_before
            total_after += after - d_after
        billed_after = total_after
        allowed: Decimal | None = None
        if maximum is not None:
            cap = rounding(maximum)
            billed_after = min(total_after, cap)
            allowed = billed_after - min(total_before, cap)
        for index, (key, name, shown, per_unit, before, after) in enumerate(components):
            line_amount = after - before
            if not line_amount and not shown:
                continue
            line_discounts: list[AmountDiscount] = []
            pct = pcts[index]
            if pct:
                line_discounts.append(AmountDiscount(DiscountReason.RATECARD_PERCENTAGE, pct))
                discount_total += pct
            if allowed is not None:
                # The maximum spend keeps components in order until the cap, the rest is discounted.
                net = nets[index]
                kept = net if net <= allowed else allowed
                allowed -= kept
                if net - kept:
                    line_discounts.append(AmountDiscount(DiscountReason.MAXIMUM_SPEND, net - kept))
                    discount_total += net - kept
            amount_total += line_amount
            lines.append(
                DetailedLine(
                    key,
                    name,
                    shown,
                    per_unit,
                    line_amount,
                    tuple(line_discounts),
                    LineCategory.REGULAR,
                    PaymentTerm.IN_ARREARS,
                    service,
                )
            )

    charges = ZERO
    if minimum is not None and last:
        floor = rounding(minimum)
        if billed_after < floor:
            charges = floor - billed_after
            lines.append(
                DetailedLine(
                    "min-spend",
                    f"{label}: minimum spend",
                    ONE,
                    charges,
                    charges,
                    (),
                    LineCategory.COMMITMENT,
                    PaymentTerm.IN_ARREARS,
                    full,
                )
            )

    if not lines:
        return RatingResult((), _EMPTY_TOTALS, usage_discount, pre_usage_discount)
    totals = Totals(amount_total, charges, discount_total, amount_total + charges - discount_total)
    return RatingResult(tuple(lines), totals, usage_discount, pre_usage_discount)


def _graduated(
    price: TieredPrice, pre: Decimal, cumulative: Decimal, first: bool, rounding: _Round, label: str
) -> list[_Component]:
    components: list[_Component] = []
    lower = ZERO
    for index, tier in enumerate(price.tiers):
        upper = tier.up_to_amount
        number = index + 1
        unit = tier.unit_price
        if unit is not None:
            in_before = _units_in(pre, lower, upper)
            in_after = _units_in(cumulative, lower, upper)
            if in_after or in_before:
                components.append(
                    (
                        f"graduated-tiered-{number}-price-usage",
                        f"{label}: usage price for tier {number}",
                        in_after - in_before,
                        unit,
                        rounding(in_before * unit),
                        rounding(in_after * unit),
                    )
                )
        if tier.flat_price is not None:
            # A tier's flat price is due once the usage enters the tier (the first tier: always).
            entered_before = not first and (index == 0 or pre > lower)
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


def _units_in(quantity: Decimal, lower: Decimal, upper: Decimal | None) -> Decimal:
    if quantity <= lower:
        return ZERO
    if upper is not None and quantity > upper:
        return upper - lower
    return quantity - lower


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


def _rate_flat(data: RatingInput, price: FlatPrice, service: Period, full: Period) -> RatingResult:
    amount = price.amount
    if data.prorate and (service.start != full.start or service.end != full.end):
        amount = amount * period_fraction(service.start, service.end, full.start, full.end)
    amount = data.currency.round(amount)
    if amount == 0:
        return RatingResult((), Totals())
    discounts: tuple[AmountDiscount, ...] = ()
    discount = ZERO
    if data.discounts.percentage:
        discount = data.currency.round(amount * data.discounts.percentage * _PCT)
        if discount:
            discounts = (AmountDiscount(DiscountReason.RATECARD_PERCENTAGE, discount),)
    line = DetailedLine(
        "flat-price", data.name, ONE, amount, amount, discounts, LineCategory.REGULAR, price.payment_term, service
    )
    return RatingResult((line,), Totals(amount, ZERO, discount, amount - discount))
