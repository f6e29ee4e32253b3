"""The rating figure: invoice lines rated per second by the engine, on one core, against its reference.

Inputs: a fixed mix of rate cards over every price type (unit, unit with commitments, graduated
and volume tiers, package, dynamic, flat with proration), a third with a percentage discount and a
fifth with free units, quantities of 0-2,000 units (whole units, so the reference can walk them).
Every line is a whole billing period, the case the reference model covers. The engine's answers
are checked against the reference on the compared lines before any figure is reported.

Measured in CPU seconds of this process (`time.process_time`), so the figure is what one core
delivers even on a machine whose other core is busy. `rating_lines_per_s` is the engine over the
whole mix (best of three passes); `rating_reference_lines_per_s` is the unit-by-unit reference
model (tests/support/rating_reference.py) on the first lines of the same mix; the ratio is the
engine's speed over the reference's on those same lines. `rating_before_lines_per_s` is the engine
as it was before its speed work (tests/support/rating_engine_before.py, the model the differential
test holds it to) on the whole mix, so the speed-up is a ratio measured in the same run.

Standalone: `.venv/bin/python -m tests.bench.rating [lines]`.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from domain.catalog import currencies
from domain.catalog.prices import (
    Commitments,
    Discounts,
    DynamicPrice,
    FlatPrice,
    PackagePrice,
    PriceTier,
    TieredMode,
    TieredPrice,
    UnitPrice,
)
from domain.catalog.rating import Period, RatingInput, rate
from tests.support import rating_engine_before
from tests.support.rating_reference import reference

START = datetime(2026, 1, 1, tzinfo=UTC)
FULL = Period(START, START + timedelta(days=31))
PARTIAL = Period(START + timedelta(days=10), FULL.end)
PRICES = (
    UnitPrice(D("0.01")),
    UnitPrice(D("0.002"), Commitments(D("10"), D("500"))),
    TieredPrice(
        TieredMode.GRADUATED,
        (
            PriceTier(D(100), None, D("0.02")),
            PriceTier(D(1000), D(5), D("0.01")),
            PriceTier(None, None, D("0.005")),
        ),
        Commitments(maximum_amount=D(15)),
    ),
    TieredPrice(TieredMode.VOLUME, (PriceTier(D(100), D(10), None), PriceTier(None, None, D("0.1")))),
    PackagePrice(D(10), D(100)),
    DynamicPrice(D("1.2")),
    FlatPrice(D("49.99")),
)


def make_inputs(count: int, seed: int = 7) -> list[RatingInput]:
    rng = random.Random(seed)
    usd = currencies.get("USD")
    inputs = []
    for i in range(count):
        price = PRICES[i % len(PRICES)]
        discounts = Discounts(
            D(10) if rng.random() < 0.33 else None,
            D(rng.randint(1, 50)) if rng.random() < 0.2 and not isinstance(price, FlatPrice) else None,
        )
        service = PARTIAL if isinstance(price, FlatPrice) and rng.random() < 0.5 else FULL
        inputs.append(
            RatingInput(price, usd, service, FULL, quantity=D(rng.randint(0, 2000)), discounts=discounts, name="line")
        )
    return inputs


def _engine_rate(inputs: list[RatingInput], passes: int = 3, engine: Callable[[RatingInput], object] = rate) -> float:
    best = 0.0
    for _ in range(passes):
        started = time.process_time()
        for data in inputs:
            engine(data)
        elapsed = time.process_time() - started
        best = max(best, len(inputs) / elapsed)
    return best


def _reference_rate(inputs: list[RatingInput]) -> float:
    started = time.process_time()
    for data in inputs:
        reference(data.price, data.discounts, data.currency, int(data.quantity))
    return len(inputs) / (time.process_time() - started)


def figures(lines: int = 70_000, compared: int = 1_400) -> dict[str, float]:
    inputs = make_inputs(lines)
    sample = [d for d in inputs[:compared] if d.service_period == FULL]
    for data in sample:  # a figure for wrong answers would be worthless
        expected = reference(data.price, data.discounts, data.currency, int(data.quantity)).total
        assert rate(data).totals.total == expected, data
    engine = _engine_rate(inputs)
    before = _engine_rate(inputs, engine=rating_engine_before.rate)
    engine_on_sample = _engine_rate(sample)
    reference_rate = _reference_rate(sample)
    return {"engine": engine, "before": before, "engine_on_sample": engine_on_sample, "reference": reference_rate}


if __name__ == "__main__":
    result = figures(int(sys.argv[1]) if len(sys.argv) > 1 else 70_000)
    print(
        f"rating_lines_per_s {result['engine']:,.0f}   reference {result['reference']:,.0f}   "
        f"ratio {result['engine_on_sample'] / result['reference']:,.1f}   "
        f"before the speed work {result['before']:,.0f} (speed-up {result['engine'] / result['before']:.2f})"
    )
