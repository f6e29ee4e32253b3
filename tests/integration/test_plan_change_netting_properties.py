"""A plan change after the month's in-advance fees were issued, between plans of any recurring
flat fees (one to three, under any keys, some discounted): the customer is invoiced for the month
what they would have been had nothing been issued before the change (the old plan's days and the
new plan's), or, where the new plan costs less for its days than the old plan charged for them, the
old plan's issued month and nothing more (nothing is given back without credit notes). So the old
plan's time after the change is never paid twice, and never credited twice (docs/billing.md,
"Several fees"). Through the subscription service, the sync and the billing worker on real
Postgres; the arithmetic below is independent of the sync's shares and slices."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.integration.test_subscription_billing import DEC, NOV, PLAN, D, Env, Plans, card, open_env, published
from tests.integration.test_subscription_change_billing import change, issue_due, issued_fees, issued_team_month

_namespaces = itertools.count()
CENT = D("0.01")

# A fee: its rate-card key, its amount a month and its percentage discount (none: 0).
fees = st.lists(
    st.tuples(
        st.sampled_from(["base", "platform", "extra", "seats"]),
        st.decimals(min_value=10, max_value=200, places=2),
        st.sampled_from([0, 0, 10, 50]),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda fee: fee[0],
)
# When the change comes: days and minutes after Nov 1 (never in its last five days, so that what
# the old plan charged for the time after it is well above the cents rounding may move).
change_offsets = st.tuples(st.integers(1, 24), st.integers(0, 24 * 60 - 1))


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[tuple[Env, Plans]]:
    plans = Plans((PLAN,))
    async with open_env(plans) as env:
        yield env, plans


def _plan(key: str, drawn: list[tuple[str, Decimal, int]]) -> dict[str, Any]:
    cards = []
    for name, amount, off in drawn:
        fee = card(name, {"type": "flat", "amount": str(amount), "paymentTerm": "in_advance"})
        if off:
            fee["discounts"] = {"percentage": {"percentage": off}}
        cards.append(fee)
    phase: dict[str, Any] = PLAN["phases"][0]  # type: ignore[assignment]
    return {**PLAN, "key": key, "phases": [{**phase, "rateCards": cards}]}


def _line(amount: Decimal, off: int, start: datetime, end: datetime) -> Decimal:
    """What a fee's line for [start, end) of November charges: its amount prorated and rounded,
    less its discount rounded."""
    share = Fraction(int((end - start).total_seconds()), int((DEC - NOV).total_seconds()))
    prorated = (amount * share.numerator / share.denominator).quantize(CENT, rounding=ROUND_HALF_UP)
    return prorated - (prorated * off / 100).quantize(CENT, rounding=ROUND_HALF_UP)


async def _check(
    stack: tuple[Env, Plans], old: list[tuple[str, Decimal, int]], new: list[tuple[str, Decimal, int]], at: timedelta
) -> None:
    env, plans = stack
    n = next(_namespaces)
    ns = f"chg_prop_{n}"
    for key, drawn in ((f"old{n}", old), (f"new{n}", new)):
        plans.views[key] = published(_plan(key, drawn))
    changed = NOV + at
    issued = sum((_line(a, off, NOV, DEC) for _, a, off in old), D(0))
    old_days = sum((_line(a, off, NOV, changed) for _, a, off in old), D(0))
    new_days = sum((_line(a, off, changed, DEC) for _, a, off in new), D(0))
    credited = issued - old_days  # what the issued month charged for the days after the change
    await _changed_at(env, ns, f"old{n}", f"new{n}", changed)
    billed = sum((x[3] for x in await issued_fees(env, ns)), D(0))
    # Each line rounds on its own (each fee's days either side, each share of the credit, each
    # discount): a cent each, at most.
    slack = CENT * (2 * len(old) + 2 * len(new) + 1)
    if new_days >= credited + slack:
        assert abs(billed - (old_days + new_days)) <= slack, (billed, old_days + new_days, old, new, at)
    elif new_days + slack <= credited:
        assert abs(billed - issued) <= slack, (billed, issued, old, new, at)
    assert billed >= issued, (billed, issued)


async def _changed_at(env: Env, ns: str, old: str, new: str, at: datetime) -> None:
    """Subscribed to `old` on Nov 1 (November's fees issued), changed to `new` at `at` and what is
    due then issued."""
    current = await issued_team_month(env, ns, old)
    await change(env, ns, current, new, at)
    await issue_due(env)


_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


@settings(max_examples=10, derandomize=True, phases=[Phase.generate], **_SETTINGS)
@given(old=fees, new=fees, at=change_offsets)
async def test_a_plan_change_bills_the_month_once_whatever_the_fees(
    stack: tuple[Env, Plans], old: list[tuple[str, Decimal, int]], new: list[tuple[str, Decimal, int]], at: Any
) -> None:
    await _check(stack, old, new, timedelta(days=at[0], minutes=at[1]))


@pytest.mark.full_suite
@settings(max_examples=int(os.environ.get("TALLY_PLANCHANGE_EXAMPLES", "150")), **_SETTINGS)
@given(old=fees, new=fees, at=change_offsets)
async def test_a_plan_change_bills_the_month_once_over_many_random_fees(
    stack: tuple[Env, Plans], old: list[tuple[str, Decimal, int]], new: list[tuple[str, Decimal, int]], at: Any
) -> None:
    # `make etoe`: the same property over many more (and new) examples than `make test` affords.
    await _check(stack, old, new, timedelta(days=at[0], minutes=at[1]))
