"""The rating engine's reference model, written the simplest way: unit by unit, whole period at once.

It knows nothing of cumulative differences or progressive billing: it walks the period's units one
at a time, adds each unit's price to its tier's bucket, counts packages as they start, and rounds
each charge component once (the documented rule, docs/billing.md). Property tests hold the engine
to it (tests/unit/test_rating_properties.py) and `make bench` reports the engine's speed against it.
Quantities are whole units; package sizes whole numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal as D

from domain.catalog.currencies import Currency
from domain.catalog.prices import (
    Discounts,
    DynamicPrice,
    FlatPrice,
    PackagePrice,
    Price,
    TieredMode,
    TieredPrice,
    UnitPrice,
)


@dataclass
class Reference:
    charges: D  # regular amounts, before discounts
    discounts: D
    commitment: D

    @property
    def total(self) -> D:
        return self.charges - self.discounts + self.commitment


def reference(price: Price, disc: Discounts, currency: Currency, quantity: int) -> Reference:
    free = int(disc.usage_quantity or 0)
    billable_units = list(range(1, quantity + 1))[free:]  # the period's first `free` units cost nothing
    n = len(billable_units)
    components: list[D] = []  # each charge component, exact, rounded once below
    if isinstance(price, FlatPrice):  # a whole period: the fee itself
        components.append(price.amount)
    elif isinstance(price, UnitPrice):
        total = D(0)
        for _ in billable_units:
            total += price.amount
        components.append(total)
    elif isinstance(price, DynamicPrice):
        total = D(0)
        for _ in billable_units:
            total += price.multiplier
        components.append(total)
    elif isinstance(price, PackagePrice):
        size = int(price.quantity_per_package)
        packages = 0
        for position in range(1, n + 1):
            if (position - 1) % size == 0:  # this unit opens a new package
                packages += 1
        components.append(packages * price.amount)
    elif isinstance(price, TieredPrice) and price.mode is TieredMode.GRADUATED:
        unit_sums = [D(0)] * len(price.tiers)
        entered = {0}
        for position in range(1, n + 1):
            for index, tier in enumerate(price.tiers):
                if tier.up_to_amount is None or position <= tier.up_to_amount:
                    entered.add(index)
                    if tier.unit_price is not None:
                        unit_sums[index] += tier.unit_price
                    break
        for index, tier in enumerate(price.tiers):
            if tier.unit_price is not None and unit_sums[index]:
                components.append(unit_sums[index])
            if tier.flat_price is not None and index in entered:
                components.append(tier.flat_price)
    else:
        assert isinstance(price, TieredPrice)
        chosen = next(t for t in price.tiers if t.up_to_amount is None or n <= t.up_to_amount)
        if chosen.flat_price is not None:
            components.append(chosen.flat_price)
        if chosen.unit_price is not None:
            unit_total = D(0)
            for _ in range(n):
                unit_total += chosen.unit_price
            components.append(unit_total)
    rounded = [currency.round(c) for c in components]
    charges = sum(rounded, D(0))
    pct = sum((currency.round(c * (disc.percentage or 0) / 100) for c in rounded), D(0))
    billed = charges - pct
    cap = price.commitments.maximum_amount
    if cap is not None and billed > currency.round(cap):
        pct += billed - currency.round(cap)
        billed = currency.round(cap)
    floor = price.commitments.minimum_amount
    commitment = D(0)
    if floor is not None and billed < currency.round(floor):
        commitment = currency.round(floor) - billed
    return Reference(charges, pct, commitment)
