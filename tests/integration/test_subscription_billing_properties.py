"""Subscription billing over random histories: what each customer is invoiced equals what they owe.

A history is one or two customers, each subscribed mid-period to one of two monthly plans (or to
the first of them after a ten-day trial phase: its base fee free, compute not offered, the
billing period the trial ends in split at the switch), all priced in USD, JPY or BHD (every amount
rounds to a cent, a yen or a fils), on a billing anchor of its own (a day of
the month that short months cut, or not, at a time of day: a period starts on the anchor's day
and time every month, counted from the anchor, the day cut to the month's end), each with a
workflow of its own (the flat fee of the period a subscription ends in prorated or billed whole;
invoices approved automatically or waiting as drafts for a person to approve them; progressive
billing on or off; a collection interval of none, an hour or a day; a draft period; lines
collected as each falls due or on a weekly anchor), then random steps
over a few weeks: time passing (with a billing-worker
pass, as the `billing` role runs continuously, by two workers at once, or with the worker stopped
for up to ten days),
a customer's usage events at random earlier times
(some stored after their period was invoiced: late usage), invoice-now, a plan change, a
cancellation (immediate or at the next billing cycle), approving or deleting a waiting draft, add-ons
bought, changed or taken off (from now or the next billing period): seats, an item of its own,
and two that extend a plan item (the in-advance base fee, the in-arrears support fee), and an
issued invoice voided to be billed again (`pending`; invoices wait for their payment, told by a
callback of the invoicing app, so one can be voided), and a customer's workflow changed (its
collection, progressive billing, draft period and approval by hand). At the end each last subscription ends,
everything due is collected, approved and paid, and the invoices are checked against `Owed`, a
model written here with plain arithmetic and none of the product's code (a line a void bills
again is owed as if it had never been issued):

- per subscription, rate card and service period, the issued invoices' lines add up to the model's
  charge: a flat fee prorated by time, against the billing period's own length (28 days for one
  ending on Feb 28), when its service period is shorter than the billing period (in the period
  the subscription ends in, whole when the customer's workflow says
  subscriptionEndProrationMode bill_full_period), in parts split at each change of its add-on's
  quantity (N instances: one fee of N x the add-on's amount on top of the plan's), one line per
  part, and an in-advance line issued before such a cut (or the end) as it was issued, each
  prorated part after it billing net of what the fee's issued lines charged for its time (floored
  at 0: no line), after a plan change also of its share, by price, of what every fee of the plans
  replaced charged for it; every fee line less its rate card's percentage discount (pro's base fee is 15 %
  off), netted by what the lines charge after their discounts; usage
  priced on the period's total usage of that customer alone: per unit, graduated tiers, a volume
  tier picked by the total, packages, a percentage discount then a maximum spend, a usage discount
  (the first units free) then a minimum spend (docs/billing.md's order; commitments are not
  prorated for a period the span cuts short);
- every line lies inside one service period of its subscription (nothing billed outside the
  active span, no line across two periods), on an invoice of the subscription's own customer, and
  a flat fee's lines are the model's parts, one line each;
- each invoice's total is the sum of its lines, every amount in whole minor units of the
  history's currency (USD, or JPY and BHD, whose minor units are the yen and the thousandth).

Services and store are those of test_subscription_billing (real Postgres, the usage stand-in), a
new database per example (one to three seconds each). `make test` runs the explicit histories (all
but MONTH_END anchored on Nov 1 at midnight: calendar months) and four drawn ones, derandomized
(the same ones every run); `make etoe` (TALLY_FULL_SUITE=1) runs 100 new ones, or
`TALLY_BILLPROPS_EXAMPLES`."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import contextvars
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from domain.billing.apps.models import InstallAppInput, UpdateAppInput
from domain.billing.invoice_states import Action, InvoiceStatus, State
from domain.billing.invoices import (
    InvoiceLine,
    InvoiceNowInput,
    InvoiceWithLines,
    VoidAction,
    VoidInput,
    VoidLineAction,
)
from domain.billing.models import (
    Alignment,
    OverrideUpsertInput,
    ProfileApps,
    ProfileCreateInput,
    ProrationMode,
    RecurringPeriod,
    WorkflowPatch,
)
from domain.catalog import currencies
from domain.customers.models import CustomerInput
from domain.errors import ValidationError
from domain.subscriptions import edits
from domain.subscriptions.addons import AddonOffer
from domain.subscriptions.catalog import CatalogRateCards
from domain.subscriptions.models import (
    ChangeSubscriptionInput,
    CreateSubscriptionInput,
    PlanRef,
    PlanSelector,
    Subscription,
    Timing,
)
from tests.integration.test_subscription_billing import Env, Plans, all_invoices, card, open_env

D = Decimal
CENT = D("0.01")
# The minor unit of the history's currency (USD's cent, JPY's yen, BHD's fils): what the model
# rounds to, as the product rounds every amount to its currency's.
MINOR_UNIT: contextvars.ContextVar[Decimal] = contextvars.ContextVar("minor_unit", default=CENT)
NOV = datetime(2026, 11, 1, tzinfo=UTC)

# The tokens price of both plans; the model's `graduated` charges it by hand.
GRADUATED = {
    "type": "tiered",
    "mode": "graduated",
    "tiers": [
        {"upToAmount": "100", "unitPrice": {"type": "unit", "amount": "0.02"}},
        {
            "upToAmount": "500",
            "unitPrice": {"type": "unit", "amount": "0.015"},
            "flatPrice": {"type": "flat", "amount": "1"},
        },
        {"unitPrice": {"type": "unit", "amount": "0.0125"}},
    ],
}

# The calls price of both plans; the model's `volume` charges it by hand. Every tier's flat price
# is above what the tier before charges at its bound, so more usage never costs less: a late
# correction never meets a total cheaper than what was billed (which Tally leaves as billed, having
# no credit notes; docs/billing.md, "Bills late usage").
VOLUME = {
    "type": "tiered",
    "mode": "volume",
    "tiers": [
        {"upToAmount": "100", "unitPrice": {"type": "unit", "amount": "0.05"}},
        {
            "upToAmount": "1000",
            "unitPrice": {"type": "unit", "amount": "0.04"},
            "flatPrice": {"type": "flat", "amount": "1"},
        },
        {"unitPrice": {"type": "unit", "amount": "0.035"}, "flatPrice": {"type": "flat", "amount": "7"}},
    ],
}


def _plan(
    key: str,
    base: tuple[str, str | None],
    support: str,
    api: str,
    images: str,
    storage: tuple[str, str, str],
    compute: tuple[str, str],
) -> dict[str, Any]:
    base_amount, base_off = base
    storage_unit, storage_off, storage_max = storage
    compute_unit, compute_min = compute
    base_card = card("base", {"type": "flat", "amount": base_amount, "paymentTerm": "in_advance"})
    if base_off is not None:
        base_card["discounts"] = {"percentage": {"percentage": float(base_off)}}
    return {
        "key": key,
        "name": key.title(),
        "currency": "USD",
        "billingCadence": "P1M",
        "phases": [
            {
                "key": "default",
                "name": "Default",
                "rateCards": [
                    base_card,
                    card("support", {"type": "flat", "amount": support, "paymentTerm": "in_arrears"}),
                    card("api", {"type": "unit", "amount": api}, "api"),
                    card("tokens", GRADUATED, "tokens"),
                    card("images", {"type": "package", "amount": images, "quantityPerPackage": "10"}, "images"),
                    card("calls", VOLUME, "calls"),
                    {
                        **card(
                            "storage", {"type": "unit", "amount": storage_unit, "maximumAmount": storage_max}, "storage"
                        ),
                        "discounts": {"percentage": {"percentage": float(storage_off)}},
                    },
                    {
                        **card(
                            "compute", {"type": "unit", "amount": compute_unit, "minimumAmount": compute_min}, "compute"
                        ),
                        "discounts": {"usage": {"quantity": str(COMPUTE_FREE)}},
                    },
                ],
            }
        ],
    }


COMPUTE_FREE = 10  # the first units of compute a period are free (a usage discount)
BASIC = _plan("basic", ("30", None), "12", "0.013", "5", storage=("0.25", "10", "40"), compute=("0.5", "5"))
# pro's base fee is 15 % off: a plan change nets what each plan's line charges after its discount.
PRO = _plan("pro", ("49.99", "15"), "20", "0.0075", "3.5", storage=("0.21", "15", "60"), compute=("0.35", "8"))
FEATURES = ("api", "tokens", "images", "calls", "storage", "compute")
# basic after a trial: for its first ten days (a phase, so the switch splits the billing period it
# falls in; docs/billing.md) the base fee is free and compute not offered; the rest as basic.
TRIAL_DAYS = 10
TRIAL = {
    **BASIC,
    "key": "trial",
    "name": "Trial",
    "phases": [
        {
            "key": "trial",
            "name": "Trial",
            "duration": f"P{TRIAL_DAYS}D",
            "rateCards": [
                {**c, "price": {**c["price"], "amount": "0"}} if c["key"] == "base" else c
                for c in BASIC["phases"][0]["rateCards"]
                if c["key"] != "compute"
            ],
        },
        *BASIC["phases"],
    ],
}
IN_ADVANCE = ("base", "seats")  # the in-advance flat fees (their lines' names, lower case)


def _addon_card(key: str, name: str, amount: Decimal, term: str) -> Any:
    body = {
        "type": "flat_fee",
        "key": key,
        "name": name,
        "billingCadence": "P1M",
        "price": {"type": "flat", "amount": str(amount), "paymentTerm": term},
    }
    return CatalogRateCards().parse(body, "rateCards[0]")


# The add-ons every plan offers (from its only phase), each changing one flat fee, by the add-on's
# key: its fee (the line's name, lower case), what one instance adds to it a month, and how many
# may be bought. Seats are an item of their own (in advance); boost and extra have the key of the
# plans' in-advance base fee and both extend it; care has the key of the in-arrears support fee and
# extends that (docs/billing.md: an add-on rate card with a plan item's key extends that item, its
# flat price added once per instance).
SEAT, BOOST, EXTRA, CARE = D(5), D(5), D("2.5"), D("4.5")
ADDONS: dict[str, tuple[str, Decimal, int]] = {
    "seats": ("seats", SEAT, 3),
    "boost": ("base", BOOST, 3),
    "extra": ("base", EXTRA, 2),
    "care": ("support", CARE, 1),
}
# A fee -> the add-ons that change it.
FEE_ADDONS = {fee: tuple(k for k, (f, _, _) in ADDONS.items() if f == fee) for fee, _, _ in ADDONS.values()}
OFFERS = {
    "seats": AddonOffer(
        "seats", "seats", 1, "multiple", "Seats", (_addon_card("seats", "Seats", SEAT, "in_advance"),), "default", 3
    ),
    "boost": AddonOffer(
        "boost",
        "boost",
        1,
        "multiple",
        "Boost",
        (_addon_card("base", "Base boost", BOOST, "in_advance"),),
        "default",
        3,
    ),
    "extra": AddonOffer(
        "extra", "extra", 1, "multiple", "Extra", (_addon_card("base", "Extra", EXTRA, "in_advance"),), "default", 2
    ),
    "care": AddonOffer(
        "care", "care", 1, "single", "Care", (_addon_card("support", "Priority care", CARE, "in_arrears"),), "default"
    ),
}


class PlanAddons:
    """The plan add-ons the catalog would hand over (every plan offers all of them)."""

    async def offer(self, namespace: str, plan: PlanRef, addon_id: str, purchase: bool = True) -> AddonOffer:
        return OFFERS[addon_id]


# ---------------------------------------------------------------------------------------------
# The model: what is owed, by the simplest arithmetic.


def whole_units(amount: Decimal) -> Decimal:
    """In the history's currency's minor units, half away from zero (amounts here are never
    negative, so half up)."""
    return amount.quantize(MINOR_UNIT.get(), rounding=ROUND_HALF_UP)


def in_currency(plan: dict[str, Any], code: str) -> dict[str, Any]:
    """`plan` priced in `code`: the same amounts, rounded to its minor units when rated (a JPY
    plan's 49.99 base fee bills 50 yen a month)."""
    return {**plan, "currency": code}


def anchored(anchor: datetime, months: int) -> datetime:
    """The start of billing period `months` of a monthly cadence on `anchor` (negative: before
    it): the anchor's day and time of day that many calendar months on, the day cut to the
    month's last where the month is shorter. Each one counted from the anchor itself, never from
    the period before (anchored on Jan 31: Feb 28, then Mar 31, not Mar 28)."""
    index = anchor.year * 12 + anchor.month - 1 + months
    year, month = index // 12, index % 12 + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1]))


def graduated(quantity: Decimal) -> Decimal:
    """GRADUATED, unit by unit tier: 100 at 0.02, then 1.00 once usage enters the second tier and
    up to 500 at 0.015, then 0.0125 each."""
    charge = min(quantity, D(100)) * D("0.02")
    if quantity > 100:
        charge += D(1) + (min(quantity, D(500)) - 100) * D("0.015")
    if quantity > 500:
        charge += (quantity - 500) * D("0.0125")
    return charge


def volume(quantity: Decimal) -> Decimal:
    """VOLUME: every unit at the price of the tier the period's total falls in (bounds inclusive),
    plus that tier's flat price."""
    if quantity <= 100:
        return quantity * D("0.05")
    if quantity <= 1000:
        return quantity * D("0.04") + 1
    return quantity * D("0.035") + 7


def rate_card(plan: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in plan["phases"][0]["rateCards"] if c["key"] == name]
    return found


def flat_amount(plan: dict[str, Any], name: str) -> Decimal:
    return D(rate_card(plan, name)["price"]["amount"])


def charged(plan: dict[str, Any], name: str, amount: Decimal) -> Decimal:
    """What a line of the fee `name` of `amount` (in minor units) charges: less its rate card's
    percentage discount in whole minor units (seats, an add-on item of its own, has none; an add-on
    extending a plan fee keeps the plan's: docs/billing.md)."""
    found = [x for x in plan["phases"][0]["rateCards"] if x["key"] == name]
    off = found[0].get("discounts", {}).get("percentage") if found else None
    if off is None:
        return amount
    return amount - whole_units(amount * D(str(off["percentage"])) / 100)


def unit_amount(plan: dict[str, Any]) -> Decimal:
    return flat_amount(plan, "api")


def packages(plan: dict[str, Any], quantity: Decimal) -> Decimal:
    """Every started package of 10 images at the plan's amount: the period's total usage decides
    (docs/billing.md: progressive lines bill only the packages they start)."""
    return math.ceil(quantity / 10) * flat_amount(plan, "images")


def storage(plan: dict[str, Any], quantity: Decimal) -> Decimal:
    """Per unit, less the rate card's percentage (of the charge in whole minor units, rounded), capped at
    the maximum spend: docs/billing.md's order, price -> percentage discount -> maximum spend."""
    found = rate_card(plan, "storage")
    charge = whole_units(quantity * D(found["price"]["amount"]))
    charge -= whole_units(charge * D(str(found["discounts"]["percentage"]["percentage"])) / 100)
    return min(charge, D(found["price"]["maximumAmount"]))


def compute(plan: dict[str, Any], quantity: Decimal) -> Decimal:
    """Per unit after the first COMPUTE_FREE of the period (usage discount), and at least the
    minimum spend, whatever the usage and however short the service period (commitments are not
    prorated: docs/billing.md "Not yet", as OpenMeter)."""
    found = rate_card(plan, "compute")
    charge = whole_units(max(quantity - COMPUTE_FREE, D(0)) * D(found["price"]["amount"]))
    return max(charge, D(found["price"]["minimumAmount"]))


@dataclass(frozen=True)
class Issued:
    """An in-advance fee line issued before a cut, as it stays: its fee's name, its service period
    and the fee a period it billed (prorated over its period, net of what the fee's lines issued
    before it charged for that time). `replaces`: the cut fell inside it, so it bills the part of
    its version before the cut (and after); otherwise the cut was at its very start (its version
    ended where it began: an add-on changed at the instant the version started, once its fee was
    issued) and the new version's part, which starts there too, is billed net of it."""

    name: str
    start: datetime
    end: datetime
    amount: Decimal
    replaces: bool
    # Billed whole, not prorated: issued while an end a restore took back made its period the
    # last under bill_full_period.
    whole: bool = False


# Lines forgiven by a void: (fee, start, end).
Forgiven = frozenset[tuple[str, datetime, datetime]]
# A fee's lines by service period start: (start, end, amount).
Parts = dict[datetime, list[tuple[datetime, datetime, Decimal]]]
# A line that credits a later one: (start, end, amount) and the slice [low, high) of it that counts.
Charged = tuple[datetime, datetime, Decimal, Fraction, Fraction]
WHOLE = (Fraction(0), Fraction(1))


@dataclass
class Span:
    """One subscription as the model sees it: its customer, plan and active span, its add-ons'
    quantities over time, and the in-advance fees invoiced before a cut (an end, or an add-on
    changed) shortened them: what was issued stays (Tally has no credit notes, docs/billing.md
    "Not yet": an edit that shortens an item whose period was already invoiced; OpenMeter's sync
    leaves an issued line alone too)."""

    customer: str
    plan: dict[str, Any]
    start: datetime
    # The billing anchor: billing periods start on it and every month from it (`anchored`).
    anchor: datetime
    end: datetime | None = None
    sub_id: str = ""
    # The customer's workflow bills the flat fees of the period a subscription ends in whole,
    # however short the period (subscriptionEndProrationMode bill_full_period; OpenMeter's
    # StateItem.shouldProrate: no proration when the subscription ends at or before the service
    # period's end; docs/billing.md "Not yet").
    full_period_at_end: bool = False
    # Line ID -> an in-advance fee line issued before a cut fell inside it or at its start.
    issued: dict[str, Issued] = field(default_factory=dict)
    # Add-on key -> its quantity from each change on, oldest first (a later change drops what was
    # scheduled from its time on, as a new one replaces it).
    addons: dict[str, list[tuple[datetime, int]]] = field(default_factory=dict)
    # Add-on key -> the subscription add-on's ID, once bought.
    addon_ids: dict[str, str] = field(default_factory=dict)
    # The subscription a plan change replaced with this one: its fees' lines charged for this one's
    # time too, a share of them netted by each of this one's plan fees (docs/billing.md: "Several
    # fees").
    previous: Span | None = None
    # The end of the plan's trial phase (TRIAL: `plan` is then the phase after it, basic's), if
    # it has one.
    trial_until: datetime | None = None
    # Flat fee -> when an edit removed its item (from then on nothing of it is owed).
    removed: dict[str, datetime] = field(default_factory=dict)
    # `issued` before the end was scheduled: a restore takes the end back, and with it what its
    # cut noted (nothing else is noted while an end is scheduled).
    before_the_end: dict[str, Issued] | None = None

    def schedule_end(self, end: datetime) -> None:
        self.before_the_end = dict(self.issued)
        self.end = end

    def restore(self) -> None:
        assert self.before_the_end is not None
        self.issued = dict(self.before_the_end)
        self.end, self.before_the_end = None, None

    def periods(self) -> Iterator[tuple[datetime, datetime, datetime, datetime]]:
        """(service start, service end, billing period start, billing period end): the monthly
        billing periods on the anchor cut at the span, and split where the trial ends (each
        phase's items bill their own part, prorated against the whole billing period)."""
        assert self.end is not None
        index = self.period_index(self.start)
        while (at := anchored(self.anchor, index)) < self.end:
            following = anchored(self.anchor, index + 1)
            start, end = max(at, self.start), min(following, self.end)
            if self.trial_until is not None and start < self.trial_until < end:
                yield start, self.trial_until, at, following
                yield self.trial_until, end, at, following
            else:
                yield start, end, at, following
            index += 1

    def in_trial(self, at: datetime) -> bool:
        return self.trial_until is not None and at < self.trial_until

    def period_index(self, at: datetime) -> int:
        """Which billing period (counted from the anchor's) `at` falls in."""
        index = (at.year - self.anchor.year) * 12 + at.month - self.anchor.month
        while anchored(self.anchor, index) > at:
            index -= 1
        while anchored(self.anchor, index + 1) <= at:
            index += 1
        return index

    def next_period(self, at: datetime) -> datetime:
        """The start of the billing period after the one `at` falls in (the next billing cycle):
        in the trial, its end if that comes first (the phase's end cuts the billing period)."""
        following = anchored(self.anchor, self.period_index(at) + 1)
        return min(following, self.trial_until) if self.in_trial(at) else following

    def quantity(self, addon: str, at: datetime) -> int:
        return next((n for since, n in reversed(self.addons.get(addon, [])) if since <= at), 0)

    def fee(self, name: str, at: datetime) -> Decimal:
        """A period's fee at `at`: the plan's (seats: none), plus each instance of the add-ons that
        change it in force then (N instances are one fee of N x the amount: docs/billing.md)."""
        if name in self.removed and at >= self.removed[name]:
            return D(0)
        free = name == "seats" or (name == "base" and self.in_trial(at))
        plan = D(0) if free else flat_amount(self.plan, name)
        return plan + sum((self.quantity(addon, at) * ADDONS[addon][1] for addon in FEE_ADDONS[name]), D(0))

    def charged(self, name: str, amount: Decimal) -> Decimal:
        return charged(self.plan, name, amount)

    def versions(self, name: str) -> list[datetime]:
        """Where the fee's item is split: at every change of the quantity of an add-on that changes
        it (the same quantity again too: a new version), but not from 0 to 0 (nothing of it in
        force either side: an add-on scheduled and taken back before it started leaves the item as
        if never split); and where an edit removed it."""
        out = {self.removed[name]} if name in self.removed else set()
        for addon in FEE_ADDONS[name]:
            before = 0
            for since, n in self.addons.get(addon, []):
                if before or n:
                    out.add(since)
                before = n
        return sorted(out)

    def change_addon(self, addon: str, quantity: int, at: datetime) -> None:
        self.addons[addon] = [(t, n) for t, n in self.addons.get(addon, []) if t < at] + [(at, quantity)]

    def fee_parts(
        self, name: str, forgiven: Forgiven = frozenset(), memo: dict[tuple[int, str], Parts] | None = None
    ) -> Parts:
        """Service period start -> the fee's lines in it (start, end, amount): one a version of
        the item in force in the period, prorated over its part of the billing period (each part
        rounded on its own); the part the end meets whole under bill_full_period (OpenMeter's
        shouldProrate looks at each line's own end); a part issued before a cut as it was issued.
        A prorated part bills net of what the lines issued before it charged for its time (each
        issued line's amount times the share of its period the part overlaps, summed, rounded
        once), at least 0 (docs/billing.md: nothing is given back; a part of 0 is no line, as
        `fee_lines` leaves it out). Lines `forgiven` (their fee, start and end) credit nothing: as
        had their void come first. `memo`: the parts of this and the replaced spans' fees found so
        far (every fee of a replaced span credits each of its successor's)."""
        memo = {} if memo is None else memo
        if (id(self), name) in memo:
            return memo[(id(self), name)]
        out: Parts = {}
        for start, end, full_start, full_end in self.periods():
            cuts = sorted({start, end, *(v for v in self.versions(name) if start < v < end)})
            # In the order they were issued: a later version's line starts later (or, made at the
            # instant the earlier one started, is noted at a later cut).
            issued = sorted(
                (i for i in self.issued.values() if i.name == name and self.holding(i.start) == start),
                key=lambda i: i.start,
            )
            parts = out.setdefault(start, [])
            earlier = self.replaced_lines(name, forgiven, memo)
            issued_lines: list[tuple[datetime, datetime, Decimal]] = []
            credits: list[Charged] = []
            for i in issued:
                full = whole_units(i.amount) if i.whole else prorated(i.amount, i.start, i.end, full_start, full_end)
                amount = self.charged(name, full)
                issued_lines.append((i.start, i.end, net_of(amount, i.start, i.end, earlier + credits)))
                if (name, i.start, i.end) not in forgiven:
                    credits.append((*issued_lines[-1], *WHOLE))
            parts.extend(issued_lines)
            replaced = {i.start for i in issued if i.replaces}
            for a, b in itertools.pairwise(cuts):
                if a in replaced:
                    continue
                if self.full_period_at_end and b == self.end and (a, b) != (full_start, full_end):
                    part = (a, b, self.charged(name, whole_units(self.fee(name, a))))
                else:
                    fee = self.charged(name, prorated(self.fee(name, a), a, b, full_start, full_end))
                    part = (a, b, net_of(fee, a, b, earlier + credits))
                parts.append(part)
        memo[(id(self), name)] = out
        return out

    def replaced_lines(self, name: str, forgiven: Forgiven, memo: dict[tuple[int, str], Parts]) -> list[Charged]:
        """The lines of every fee of the subscriptions plan changes replaced on the way to this
        one, each with the share of it the fee `name` nets (`pool_share`). Those covering time
        after a change are lines issued before it, as they stayed: what the successor's fees are
        billed net of; none when the customer's workflow bills the period a subscription ends in
        whole (that line is owed whole, issued or not)."""
        if self.previous is None or self.full_period_at_end:
            return []
        low, high = self.pool_share(name)
        out: list[Charged] = []
        replaced: Span | None = self.previous
        while replaced is not None:
            for fee in FEES:
                for parts in replaced.fee_parts(fee, forgiven, memo).values():
                    out.extend((a, b, paid, low, high) for a, b, paid in parts if (fee, a, b) not in forgiven)
            replaced = replaced.previous
        return out

    def pool_share(self, name: str) -> tuple[Fraction, Fraction]:
        """The slice [low, high) of what the replaced plans charged for this one's time that its
        fee `name` nets (docs/billing.md, "Several fees"): the plan's fees share it in proportion to
        their prices after discount, in the order of their keys; seats (an add-on's item) none."""
        weights = {fee: Fraction(self.charged(fee, whole_units(flat_amount(self.plan, fee)))) for fee in PLAN_FEES}
        if name not in weights:
            return Fraction(0), Fraction(0)
        total = sum(weights.values(), Fraction(0))
        before = sum((w for fee, w in weights.items() if fee < name), Fraction(0))
        return before / total, (before + weights[name]) / total

    def holding(self, at: datetime) -> datetime:
        """The service period (its start) `at` falls in; at the end, the last one."""
        found = [p for p, e, _, _ in self.periods() if p <= at < e or at == e == self.end]
        return found[0]


def prorated(amount: Decimal, start: datetime, end: datetime, full_start: datetime, full_end: datetime) -> Decimal:
    """OpenMeter prorates a flat fee by the share of the billing period its service period covers
    (rating's flat-fee proration, invoice line `prorate`), rounded to the minor unit."""
    share = Fraction(int((end - start).total_seconds()), int((full_end - full_start).total_seconds()))
    return whole_units(amount * D(share.numerator) / D(share.denominator))


def net_of(amount: Decimal, start: datetime, end: datetime, charged: list[Charged]) -> Decimal:
    """`amount` for [start, end) less what the `charged` lines (start, end, amount, and for a
    replaced plan's line the slice [low, high) of it that counts) charged for that time: each
    line's amount times the share of its own period that overlaps, in seconds; whole lines summed
    and rounded to the minor unit once, each slice's lines summed and credited as their sum times
    `high`, rounded, less their sum times `low`, rounded (so the slices of a pool sum to its
    rounded whole); never below 0."""
    sums: dict[tuple[Fraction, Fraction], Fraction] = {}
    for a, b, paid, low, high in charged:
        overlap = (min(b, end) - max(a, start)).total_seconds()
        if overlap > 0:
            sums[(low, high)] = sums.get((low, high), Fraction(0)) + Fraction(paid) * Fraction(
                int(overlap), int((b - a).total_seconds())
            )

    def rounded(x: Fraction) -> Decimal:
        return whole_units(D(x.numerator) / D(x.denominator))

    whole = sums.pop(WHOLE, Fraction(0))
    credit = rounded(whole) + sum((rounded(high * p) - rounded(low * p) for (low, high), p in sums.items()), D(0))
    return max(D(0), amount - credit)


FEES = ("base", "support", "seats")
# The plans' own recurring flat fees (both plans have both; seats are an add-on's item).
PLAN_FEES = ("base", "support")


@dataclass
class Owed:
    spans: list[Span] = field(default_factory=list)
    # (customer, feature, time, quantity) of every usage event.
    events: list[tuple[str, str, datetime, Decimal]] = field(default_factory=list)
    # How many invoices were voided.
    voids: int = 0
    # (customer, fee, start, end) of each flat-fee line a void forgave (`discard`) -> what it
    # charged (summed, should a line made again be forgiven again).
    forgiven: dict[tuple[str, str, datetime, datetime], Decimal] = field(default_factory=dict)

    def billed_again(self, line_ids: list[str]) -> None:
        """Lines voided with `pending` are billed again as their subscription says now, as if
        they had never been issued: an in-advance line issued before a cut no longer stays as it
        was (its item's parts are billed as the model says, the parts issued net of it owing what
        they were netted of)."""
        self.voids += 1
        for span in self.spans:
            for line_id in line_ids:
                span.issued.pop(line_id, None)

    def forgive(self, customer: str, lines: list[InvoiceLine]) -> None:
        """Lines voided with `discard` are forgiven: what they charged counts as billed (a usage
        line's quantity too, so later parts of its period and late-usage corrections bill only
        what lies beyond it), as it stays issued before a cut. A flat fee's part netted against a
        forgiven line (a later version, a plan change's successor) bills what it was netted of
        as a balance, unless its own line was forgiven before that, whole: the fees of a period
        a forgiven fee line overlaps are owed, by the order of the voids, between what they
        would be owed without the voids and what they would be owed net of nothing forgiven
        (`forgiven_fee`, `charges(forgiving=True)`)."""
        self.voids += 1
        for x in lines:
            if x.name.lower() in FEES:
                key = (customer, x.name.lower(), x.period_start, x.period_end)
                self.forgiven[key] = self.forgiven.get(key, D(0)) + x.totals.total

    def forgiven_fee(self, key: tuple[str, str, datetime]) -> bool:
        """Whether the key is a flat fee's and a forgiven line of a flat fee (its customer's, any
        subscription) overlaps the key's service period: of its own fee, or of another, which a
        plan change may have shared among the successor's fees."""
        sub_id, name, start = key
        if name not in FEES:
            return False
        span = self.span_of(sub_id)
        (end,) = [e for p, e, _, _ in span.periods() if p == start]
        return any(c == span.customer and a < end and start < b for c, _, a, b in self.forgiven)

    def billing_period_of(self, key: tuple[str, str, datetime]) -> tuple[str, datetime]:
        """(customer, billing period start) of a (subscription, flat fee, service period start):
        a balance can fall to any of the fees a plan change shared a credit among."""
        sub_id, _, start = key
        span = self.span_of(sub_id)
        (period,) = [full for p, _, full, _ in span.periods() if p == start]
        return span.customer, period

    def fee_lines(
        self, forgiving: bool = False
    ) -> dict[tuple[str, str, datetime], list[tuple[datetime, datetime, Decimal]]]:
        """(subscription, flat fee, service period start) -> its lines, sorted (`forgiving`: net
        of no forgiven line)."""
        memo: dict[tuple[int, str], Parts] = {}
        return {
            (span.sub_id, name, start): sorted(line for line in parts if line[2])
            for span in self.spans
            for name in FEES
            for start, parts in span.fee_parts(name, self._forgiven(span.customer, forgiving), memo).items()
            if any(line[2] for line in parts)
        }

    def forgiven_above_model(self) -> dict[tuple[str, str, datetime], Decimal]:
        """(subscription, flat fee, service period start) -> how much more its forgiven lines
        charged than the model's parts net of no forgiven line that they are (the same fee and
        period): the bound `charges(forgiving=True)` counts each such line at least at its face.

        Why a forgiven line can charge more than that: it was netted, when issued, of an earlier
        fee's line as that line stood then. A void after that line was issued leaves it as issued
        (a balance bills its own time), while the model's forgiving parts net later fees of it
        made whole again. Two forgiving voids in a chain of plan changes show it: basic A's
        invoice forgiven after pro B's line was issued net of it; basic C, issued net of B's line
        as issued, forgiven too. The model nets C of B's whole fee (0.00); C charged 8.29, and D,
        after C, is netted of B's line as issued, not of C's."""
        out: dict[tuple[str, str, datetime], Decimal] = {}
        memo: dict[tuple[int, str], Parts] = {}
        for span in self.spans:
            for name in FEES:
                for start, parts in span.fee_parts(name, self._forgiven(span.customer, True), memo).items():
                    for a, b, amount in parts:
                        face = self.forgiven.get((span.customer, name, a, b), D(0))
                        if face > amount:
                            key = (span.sub_id, name, start)
                            out[key] = out.get(key, D(0)) + face - amount
        return out

    def _forgiven(self, customer: str, forgiving: bool) -> Forgiven:
        if not forgiving:
            return frozenset()
        return frozenset((n, a, b) for c, n, a, b in self.forgiven if c == customer)

    def charges(self, forgiving: bool = False) -> dict[tuple[str, str, datetime], Decimal]:
        """(subscription, rate card, service period start) -> what its customer owes for it
        (`forgiving`: its flat fees net of no forgiven line)."""
        out = {key: sum((amount for _, _, amount in parts), D(0)) for key, parts in self.fee_lines(forgiving).items()}
        for span in self.spans:
            plan = span.plan
            for start, end, _, _ in span.periods():
                used = {
                    feature: sum(
                        (q for c, f, at, q in self.events if c == span.customer and f == feature and start <= at < end),
                        D(0),
                    )
                    for feature in FEATURES
                }
                out[(span.sub_id, "api", start)] = whole_units(used["api"] * unit_amount(plan))
                out[(span.sub_id, "tokens", start)] = whole_units(graduated(used["tokens"]))
                out[(span.sub_id, "images", start)] = whole_units(packages(plan, used["images"]))
                out[(span.sub_id, "calls", start)] = whole_units(volume(used["calls"]))
                out[(span.sub_id, "storage", start)] = storage(plan, used["storage"])
                if not span.in_trial(start):  # the trial offers no compute
                    out[(span.sub_id, "compute", start)] = compute(plan, used["compute"])
        return out

    def span_of(self, sub_id: str) -> Span:
        found = [s for s in self.spans if s.sub_id == sub_id]
        assert len(found) == 1, f"a line billed for subscription {sub_id}, none of the model's (one a restore deleted?)"
        return found[0]

    def period_of(self, sub_id: str, line: InvoiceLine) -> datetime:
        """The service period (its start) of the subscription that holds the line whole: inside
        the period cut at the active span, or, for an in-advance fee issued before the cut, the
        very period it was issued for."""
        span = self.span_of(sub_id)
        if line.id in span.issued:
            return span.holding(line.period_start)
        holding = [p for p, e, _, _ in span.periods() if p <= line.period_start and line.period_end <= e]
        assert len(holding) == 1, (
            f"{line.name} {line.period_start} - {line.period_end} lies in no service period of "
            f"{span.start} - {span.end}"
        )
        return holding[0]


# ---------------------------------------------------------------------------------------------
# Histories.

# Drawn histories open two days before February's end (2027): most are short (hypothesis draws
# small waits), and an anchor on the 29th to the 31st meets a period ending on Feb 28 (clamped) and
# often the next one, to the anchor's day in March (not: counted from the anchor, not from Feb 28).
# Some open before a leap day instead (a period of 29 days, Feb 29 an anchor's clamped end), or
# in the last days of a year at a minute of the day (periods across the year's end).
LATE_FEBRUARY = datetime(2027, 2, 26, tzinfo=UTC)
openings = st.sampled_from(
    [LATE_FEBRUARY, LATE_FEBRUARY, datetime(2028, 2, 26, tzinfo=UTC), datetime(2026, 12, 28, 13, 7, tzinfo=UTC)]
)


def _anchor(month: int, day: int, minute_of_day: int) -> datetime:
    """A billing anchor in 2026 on `day` of `month` (cut to its last day: Nov 31 is Nov 30) at a
    time of day."""
    day = min(day, calendar.monthrange(2026, month)[1])
    return datetime(2026, month, day, tzinfo=UTC) + timedelta(minutes=minute_of_day)


# Days of the month short months cut (and the 1st and 15th, which no month does), of October or
# November 2026 (an anchor on Oct 31 and one on Nov 30 share February 28 but not March's end),
# at midnight or any minute of the day.
anchors = st.builds(
    _anchor,
    st.sampled_from([10, 11]),
    st.sampled_from([1, 15, 28, 29, 30, 31]),
    st.one_of(st.just(0), st.integers(0, 24 * 60 - 1)),
)


@dataclass(frozen=True)
class Collection:
    """When a customer's invoices are made and issued, where their workflow differs from the
    defaults (OpenMeter's: progressive billing on, lines collected an hour after they fall due, as
    each falls due, drafts issued at once). What a customer owes depends on none of it, only when
    and on which invoices it is billed, so `Owed` does not read it."""

    # Progressive billing: an invoice-now bills usage so far (off: usage only once its period ended).
    progressive: bool = True
    # How long a draft waits for late events before its usage is read (collection.interval).
    interval: str = "PT1H"
    # How long a draft waits before it is approved automatically (invoicing.draftPeriod).
    draft_period: str = "P0D"
    # Lines collected only on a weekly anchor from this time (collection.alignment anchored), not
    # as each falls due.
    weekly_from: datetime | None = None

    def patch(self) -> dict[str, Any]:
        """The workflow settings that say so (none for the defaults)."""
        out: dict[str, Any] = {}
        if not self.progressive:
            out["progressive_billing"] = False
        if self.interval != "PT1H":
            out["collection_interval"] = self.interval
        if self.draft_period != "P0D":
            out["draft_period"] = self.draft_period
        if self.weekly_from is not None:
            out["alignment"] = Alignment.ANCHORED
            out["recurring_period"] = RecurringPeriod("WEEK", self.weekly_from)
        return out

    def settles(self) -> timedelta:
        """The longest a line that fell due waits for its invoice to be issued (without a person's
        approval): the next weekly anchor, the collection interval, the draft period."""
        weekly = timedelta(days=7) if self.weekly_from is not None else timedelta()
        return weekly + _DURATIONS[self.interval] + _DURATIONS[self.draft_period]


_DURATIONS = {
    "PT0S": timedelta(),
    "P0D": timedelta(),
    "PT1H": timedelta(hours=1),
    "PT6H": timedelta(hours=6),
    "P1D": timedelta(days=1),
}

# Mostly the defaults; otherwise any mix of progressive billing off, a collection interval of none
# or a day, a draft period of six hours, and collection on a weekly anchor at a minute of a day in
# the week before Feb 26, 2027 (any minute of the week: weeks run both ways from the anchor, so
# histories that open in other years are collected weekly too).
collections = st.one_of(
    st.just(Collection()),
    st.builds(
        Collection,
        st.booleans(),
        st.sampled_from(["PT0S", "PT1H", "P1D"]),
        st.sampled_from(["P0D", "PT6H"]),
        st.one_of(st.none(), st.integers(0, 7 * 24 * 60 - 1).map(lambda m: LATE_FEBRUARY - timedelta(minutes=m))),
    ),
)
# A customer: minutes after the history opens they subscribe, their plan, their workflow (bill
# the period a subscription ends in whole, bill_full_period; approve invoices by hand), their
# billing anchor, and when their invoices are made and issued (explicit histories leave it out:
# the defaults).
customers = st.tuples(
    st.integers(0, 27 * 24 * 60 - 1),
    st.sampled_from(["basic", "pro", "trial"]),
    st.booleans(),
    st.booleans(),
    anchors,
    collections,
)
# `who` picks a customer (modulo how many there are).
who = st.integers(0, 1)
addon_step = st.tuples(
    st.just("addon"),
    who,
    st.sampled_from(sorted(ADDONS)),
    st.integers(0, 3),
    st.sampled_from(["immediate", "next_billing_cycle"]),
)
# How a void step voids: to bill the invoice again (`pending`), to forgive it (`discard`), or the
# invoicing app reporting it voided (which forgives).
void_step = st.tuples(st.just("void"), st.integers(0, 3), st.sampled_from(["pending", "discard", "app"]))
# A usage event at up to two days before now; stored now.
usage_step = st.tuples(st.just("usage"), who, st.sampled_from(FEATURES), st.integers(0, 48 * 60), st.integers(1, 400))
invoice_now_step = st.tuples(st.just("invoice_now"), who)
timings = st.sampled_from(["immediate", "next_billing_cycle"])
cancel_step, change_step = (st.tuples(st.just(kind), who, timings) for kind in ("cancel", "change"))
end_step = st.one_of(cancel_step, change_step)
# A person approves one of the drafts waiting for it (by its place among them, modulo).
approve_step = st.tuples(st.just("approve"), st.integers(0, 3))
# A person deletes a draft waiting for approval: its lines go back to the gathering invoice (each
# part to the line it was cut from), to be billed again when due.
delete_step = st.tuples(st.just("delete"), st.integers(0, 3))
# A person takes back a cancellation or a change still to come (restore).
restore_step = st.tuples(st.just("restore"), who)
# A person removes a flat fee's item (an edit), from now or from the next billing period.
remove_step = st.tuples(st.just("remove"), who, st.sampled_from(["base", "support"]), timings)
steps = st.one_of(
    # Time passes (up to three days, so a late event is always seen within the late-usage window).
    st.tuples(st.just("wait"), st.integers(1, 72 * 60)),
    # Time passes with the billing worker stopped, up to ten days (longer than the late-usage
    # window): the next pass (a wait step's, or the end's) finds everything that fell due since at
    # once (periods to sync, drafts whose collection ended, gathering invoices to collect, balances
    # a void owes, usage stored late for periods issued before the stop).
    st.tuples(st.just("down"), st.integers(1, 10 * 24 * 60)),
    # Time passes (as "wait") with two billing workers' passes at once, as two replicas of the
    # billing role run them: leases share the work out, and nothing is billed twice or not at all.
    st.tuples(st.just("race"), st.integers(1, 72 * 60)),
    usage_step,
    invoice_now_step,
    cancel_step,
    change_step,
    approve_step,
    delete_step,
    restore_step,
    remove_step,
    # An issued invoice still waiting for its payment is voided, by its place among them, oldest
    # first (modulo); drawn twice as often too, so that a history voids a line made again by an
    # earlier void.
    void_step,
    void_step,
    # The customer buys an add-on or changes how many they have (0: taken off), drawn twice as
    # often as the other steps: most histories soon schedule an end, after which none is made.
    addon_step,
    addon_step,
)
# A person changes a customer's workflow: any of `collections`, approving by hand or not.
workflow_step = st.tuples(st.just("workflow"), who, collections, st.booleans())
# The plans' currency: mostly USD; JPY (no minor unit: a 49.99 fee bills 50 yen, half a yen
# rounds up) and BHD (three decimals) round every prorated, discounted and rated amount otherwise.
history_currencies = st.sampled_from(["USD", "USD", "JPY", "BHD"])
# (customers, steps, when the history opens, the plans' currency)
histories = st.tuples(
    st.lists(customers, min_size=1, max_size=2),
    st.lists(steps, min_size=5, max_size=40),
    openings,
    history_currencies,
)


def _slanted(*more: st.SearchStrategy[tuple[Any, ...]], by_hand: bool = False) -> st.SearchStrategy[tuple[Any, ...]]:
    """Longer histories whose steps draw each of `more` as often as all of `steps` together, of
    customers who subscribe within three days of each other (their invoices, voids and changes
    meet) and approve their invoices by hand when `by_hand`."""
    people = st.tuples(
        st.integers(0, 3 * 24 * 60 - 1),
        st.sampled_from(["basic", "pro", "trial"]),
        st.booleans(),
        st.just(True) if by_hand else st.booleans(),
        anchors,
        collections,
    )
    return st.tuples(
        st.lists(people, min_size=1, max_size=2),
        st.lists(st.one_of(steps, *more), min_size=10, max_size=60),
        openings,
        history_currencies,
    )


# What `make etoe` hunts with besides `histories`: each slant found defects the even mix had not
# (docs/billing.md names them by their tests): voids and plan changes; drafts deleted and invoiced
# now; late usage; ends taken back; add-ons and changes; items an edit removed. The seventh reaches
# what the even mix seldom does: late usage under a minimum spend already charged. The eighth, a
# customer's workflow changed while lines gather and drafts wait, has found nothing yet (350
# histories); it is kept because settings are changed on live customers, and money must not move.
# The ninth, edits, add-ons and restores approved by hand, found a balance billed again on every
# pass (test_a_balance_is_billed_once_where_the_fee_is_owed_more_than_the_void_took_back).
next_cycle_end = st.tuples(st.sampled_from(["cancel", "change"]), who, st.just("next_billing_cycle"))
# Compute kept under its minimum spend as it is used, then taken over it by usage stored a day or
# two late: corrections of periods whose last line charged the shortfall (the even mix's usage
# mostly passes the minimum at once, so it seldom makes one).
compute_step = st.one_of(
    st.tuples(st.just("usage"), who, st.just("compute"), st.integers(0, 60), st.integers(1, 8)),
    st.tuples(st.just("usage"), who, st.just("compute"), st.integers(12 * 60, 48 * 60), st.integers(3, 40)),
)
slanted_histories = st.one_of(
    _slanted(void_step, void_step, end_step),
    _slanted(delete_step, delete_step, invoice_now_step, invoice_now_step, usage_step, by_hand=True),
    _slanted(usage_step, usage_step, usage_step, void_step, invoice_now_step),
    _slanted(restore_step, restore_step, next_cycle_end, next_cycle_end, delete_step),
    _slanted(addon_step, addon_step, end_step, end_step, delete_step, void_step, by_hand=True),
    _slanted(remove_step, remove_step, end_step, void_step, invoice_now_step),
    _slanted(compute_step, compute_step, compute_step, void_step, invoice_now_step, delete_step, by_hand=True),
    _slanted(workflow_step, workflow_step, invoice_now_step, usage_step, end_step, void_step),
    _slanted(workflow_step, addon_step, remove_step, restore_step, approve_step, by_hand=True),
)


# How many billing workers pass at once after each kind of time step: one (the role running),
# none (stopped), two (two replicas racing).
_PASSES_AFTER = {"wait": 1, "down": 0, "race": 2}


async def _worker_pass(env: Env) -> None:
    result = await env.worker().run_once()
    assert result.failed == 0, result


# Invoices whose lines do not stay as issued: not issued yet, or deleted (nor do lines a void
# bills again: Owed.billed_again).
_NOT_ISSUED = (InvoiceStatus.GATHERING, InvoiceStatus.DRAFT, InvoiceStatus.DELETED)


async def _issued_before_cut(env: Env, ns: str, span: Span, at: datetime, fees: tuple[str, ...] = IN_ADVANCE) -> None:
    """On a cut at `at` (the end, or a change of an add-on's quantity) of `fees`: note each of
    their in-advance lines an issued invoice (no longer mutable) bills across it or from it, and
    at the end one up to it too. The cut changes what that part should be (prorated to the cut,
    the rest at the new fee; at the end, under bill_full_period, whole where it was prorated by a
    mid-period start; nothing for a version the cut ends where it began), but an issued line stays
    as it is. An add-on changed from a line's end on (the next billing period) leaves the line's
    version whole: it is not noted then, so a cut at its start later still notes it. Called before
    the model's change and a sync: issued lines do not move either way."""
    for x in await _issued_lines(env, ns, span):
        name = x.name.lower()
        cut = x.period_start <= at < x.period_end or at == x.period_end == span.end
        if name in IN_ADVANCE and name in fees and cut and x.id not in span.issued:
            # The fee in force at its start is its version's: the model changes from `at` after.
            fee = span.fee(name, x.period_start)
            span.issued[x.id] = Issued(name, x.period_start, x.period_end, fee, x.period_start < at)


async def _issued_lines(env: Env, ns: str, span: Span) -> list[InvoiceLine]:
    """The span's top-level lines on invoices issued (no longer mutable), but those a void put
    back to be billed again."""
    return [
        x
        for found in await all_invoices(env, ns)
        if found.invoice.status not in _NOT_ISSUED
        for x in found.lines
        if x.parent_line_id is None
        and x.subscription is not None
        and x.subscription.subscription_id == span.sub_id
        and x.void_action is not VoidLineAction.PENDING
    ]


async def _issued_whole_before(env: Env, ns: str, span: Span, end: datetime, noted: set[str]) -> None:
    """On a restore under bill_full_period: note each in-advance line of the span issued while
    the end taken back was scheduled (not `noted` by its cut) whose part that end met: it was
    billed whole as the period's last, and an issued line stays as it is."""
    for x in await _issued_lines(env, ns, span):
        name = x.name.lower()
        if name in IN_ADVANCE and x.period_end == end and x.id not in noted:
            span.issued[x.id] = Issued(name, x.period_start, end, span.fee(name, x.period_start), True, whole=True)


def _ends_when_asked(active_to: datetime | None, span: Span, timing: str, now: datetime) -> datetime:
    """The end the product gave a subscription cancelled (or changed) `now` with `timing`, checked
    against the model's: now, or the start of the model's next billing period on the span's anchor
    (a wrong one would be billed consistently with itself, and the invoices alone would not tell)."""
    expected = now if timing == "immediate" else span.next_period(now)
    assert active_to == expected, (timing, now, active_to, expected)
    return active_to


def _active(span: Span, now: datetime) -> bool:
    return span.end is None or now < span.end


async def _waiting_for_approval(env: Env, ns: str, made_by: datetime | None = None) -> list[str]:
    """The drafts waiting for approval (made by `made_by`), oldest first."""
    found = await all_invoices(env, ns)
    waiting = [
        f.invoice
        for f in found
        if f.invoice.state is State.DRAFT_MANUAL_APPROVAL_NEEDED
        and (made_by is None or f.invoice.created_at <= made_by)
    ]
    return [x.id for x in sorted(waiting, key=lambda x: (x.created_at, x.id))]


async def _waiting_for_payment(env: Env, ns: str) -> list[InvoiceWithLines]:
    """The issued invoices whose payment is still open, oldest first."""
    found = [f for f in await all_invoices(env, ns) if f.invoice.status in _WAITING_FOR_PAYMENT]
    return sorted(found, key=lambda f: (f.invoice.created_at, f.invoice.id))


_WAITING_FOR_PAYMENT = (InvoiceStatus.PAYMENT_PROCESSING, InvoiceStatus.OVERDUE)


async def _pays_later(env: Env, ns: str) -> None:
    """Every customer is invoiced through an app told of payments by a callback (custom
    invoicing, its sync hooks off), not the sandbox, which pays an invoice as it is issued: an
    issued invoice stays open until the end, when everything is paid, so a void step finds one."""
    app, _ = await env.apps.install(ns, InstallAppInput(type="custom_invoicing", create_billing_profile=False))
    hooks_off = UpdateAppInput(
        type="custom_invoicing", name="Pays later", enable_draft_sync_hook=False, enable_issuing_sync_hook=False
    )
    await env.apps.update_app(ns, app.id, hooks_off)
    supplier = (await env.profiles.get_default(ns)).supplier
    apps = ProfileApps(app.id, app.id, app.id)
    await env.profiles.create(ns, ProfileCreateInput("Pays later", supplier, apps, default=True))


def _workflow(full_period_at_end: bool, by_hand: bool, collection: Collection) -> WorkflowPatch:
    """A customer's workflow override: the end-proration mode, approval by hand, `collection`."""
    return WorkflowPatch(
        subscription_end_proration_mode=ProrationMode.BILL_FULL_PERIOD if full_period_at_end else None,
        auto_advance=False if by_hand else None,
        **collection.patch(),
    )


async def run_history(
    people: list[tuple[Any, ...]], history: list[tuple[Any, ...]], opening: datetime = NOV, currency: str = "USD"
) -> None:
    MINOR_UNIT.set(currencies.get(currency).unit)
    plans = {"basic": in_currency(BASIC, currency), "pro": in_currency(PRO, currency)}
    async with open_env(Plans([*plans.values(), in_currency(TRIAL, currency)]), addons=PlanAddons()) as env:
        ns = "billprops"
        owed = Owed()
        await _pays_later(env, ns)
        ids: list[str] = []
        # Each customer's subscriptions, oldest first; the last one is the current one.
        theirs: list[list[Span]] = []
        collections = [person[5] if len(person) > 5 else Collection() for person in people]
        for index, (start_minutes, plan_key, full_period_at_end, manual, anchor, *_) in sorted(
            enumerate(people), key=lambda p: p[1][0]
        ):
            env.clock.at = opening + timedelta(minutes=start_minutes)
            key = f"c{index}"
            customer = await env.customers.create(ns, CustomerInput(name=key, key=key))
            patch = _workflow(full_period_at_end, manual, collections[index])
            if patch != WorkflowPatch():
                await env.profiles.upsert_override(ns, key, OverrideUpsertInput(workflow=patch))
            sub = await env.subscriptions.create(
                CreateSubscriptionInput(ns, PlanSelector(plan_key), customer_key=key, billing_anchor=anchor)
            )
            trial = plan_key == "trial"
            span = Span(
                customer.id,
                plans["basic"] if trial else plans[plan_key],
                sub.active_from,
                anchor,
                sub_id=sub.id,
                full_period_at_end=full_period_at_end,
                trial_until=sub.active_from + timedelta(days=TRIAL_DAYS) if trial else None,
            )
            owed.spans.append(span)
            ids.append(customer.id)
            theirs.append([span])
            await env.sync.sync(sub)
        order = sorted(range(len(people)), key=lambda i: people[i][0])
        ids = [ids[order.index(i)] for i in range(len(people))]
        theirs = [theirs[order.index(i)] for i in range(len(people))]

        def now() -> datetime:
            return env.clock.at

        told: list[Subscription] = []
        env.subscriptions.listeners.append(told.append)
        for step in history:
            if step[0] in _PASSES_AFTER:
                # Time passes, then as many billing-worker passes at once as the step says. Drafts
                # waiting for approval wait for an approve step, or the end, however long (usage
                # stored after a draft's snapshot is billed by a late-usage correction once it is
                # issued: the window runs from the issue too).
                env.clock.at = now() + timedelta(minutes=step[1])
                await asyncio.gather(*(_worker_pass(env) for _ in range(_PASSES_AFTER[step[0]])))
            elif step[0] == "usage":
                _, whom, feature, back, quantity = step
                at = now() - timedelta(minutes=back)
                customer_id = ids[whom % len(ids)]
                env.usage.add(feature, customer_id, at, str(quantity), stored_at=now())
                owed.events.append((customer_id, feature, at, D(quantity)))
            elif step[0] == "invoice_now":
                with contextlib.suppress(ValidationError):  # nothing due: no invoice (docs/billing.md)
                    await env.invoices.invoice_now(ns, InvoiceNowInput(customer=ids[step[1] % len(ids)]))
            elif step[0] == "addon":
                # An add-on bought, or its quantity changed (0 takes it off), from now or from the
                # next billing period, while the subscription is active and no end is scheduled.
                _, whom, addon, quantity, timing = step
                current = theirs[whom % len(theirs)][-1]
                quantity = min(quantity, ADDONS[addon][2])
                if (
                    current.end is not None
                    or now() < current.start
                    or current.in_trial(now())  # the add-ons are offered from the phase after it
                    or current.removed  # an add-on would extend (or bring back) an item an edit took
                    or (addon not in current.addon_ids and not quantity)
                ):
                    continue
                at = now() if timing == "immediate" else current.next_period(now())
                if addon in current.addon_ids:
                    sub, _ = await env.subscriptions.update_addon(
                        ns, current.sub_id, current.addon_ids[addon], quantity, Timing(timing)
                    )
                else:
                    sub, bought = await env.subscriptions.create_addon(
                        ns, current.sub_id, addon, quantity, Timing(timing)
                    )
                    current.addon_ids[addon] = bought.id
                # The cut ends the version of the add-on's fee in force at `at` only if the add-on
                # is in it or in the next one (0 to 0 leaves the item as it is).
                touched = (ADDONS[addon][0],) if quantity or current.quantity(addon, at) else ()
                await _issued_before_cut(env, ns, current, at, touched)
                current.change_addon(addon, quantity, at)
                await env.sync.sync(sub)
            elif step[0] in ("approve", "delete"):
                waiting = await _waiting_for_approval(env, ns)
                if waiting:
                    action = Action.APPROVE if step[0] == "approve" else Action.DELETE
                    await env.invoices.act(ns, waiting[step[1] % len(waiting)], action)
            elif step[0] == "void":
                unpaid = await _waiting_for_payment(env, ns)
                if unpaid:
                    _, pick, how = step
                    voided = unpaid[pick % len(unpaid)]
                    top = [x for x in voided.lines if x.parent_line_id is None]
                    if how == "pending":
                        owed.billed_again([x.id for x in top])
                        pending = VoidAction(VoidLineAction.PENDING)
                        await env.invoices.void(ns, voided.invoice.id, VoidInput("wrong address", pending))
                    else:
                        owed.forgive(voided.invoice.customer_id, top)
                        if how == "discard":
                            discard = VoidAction(VoidLineAction.DISCARD)
                            await env.invoices.void(ns, voided.invoice.id, VoidInput("goodwill", discard))
                        else:
                            await env.invoices.app_callback(ns, voided.invoice.id, Action.PAYMENT_VOID)
            elif step[0] in ("cancel", "change"):
                _, whom, timing = step
                mine = theirs[whom % len(theirs)]
                current = mine[-1]
                if not _active(current, now()) or now() <= current.start or current.end is not None:
                    continue  # not started, or already ending (the model keeps to one end)
                if step[0] == "cancel":
                    ended = await env.subscriptions.cancel(ns, current.sub_id, Timing(timing))
                else:
                    other = "pro" if current.plan["key"] == "basic" else "basic"
                    ended, successor = await env.subscriptions.change(
                        ChangeSubscriptionInput(ns, current.sub_id, PlanSelector(other), Timing(timing))
                    )
                    assert successor.active_from == ended.active_to, (successor.active_from, ended.active_to)
                    # The new plan is billed on the anchor of the subscription it replaces
                    # (OpenMeter's change keeps the billing anchor).
                    span = Span(
                        current.customer,
                        plans[other],
                        successor.active_from,
                        current.anchor,
                        sub_id=successor.id,
                        full_period_at_end=current.full_period_at_end,
                        previous=current,
                    )
                    owed.spans.append(span)
                    mine.append(span)
                    await env.sync.sync(successor)
                current.schedule_end(_ends_when_asked(ended.active_to, current, timing, now()))
                assert current.end is not None
                await _issued_before_cut(env, ns, current, current.end)
                await env.sync.sync(ended)
            elif step[0] == "remove":
                # A person removes a flat fee's item from the plan's phase (an edit), from now or
                # from the next billing period: an issued in-advance line stays as it is (no credit
                # notes), the rest of the fee is owed up to then. Only outside the trial (the
                # trial's phase has the item too, and an edit stays in one phase), on a subscription
                # that never had an add-on (OpenMeter refuses to edit one that has).
                _, whom, name, timing = step
                current = theirs[whom % len(theirs)][-1]
                if (
                    current.end is not None
                    or now() <= current.start
                    or current.in_trial(now())
                    or name in current.removed
                    or any(n for quantities in current.addons.values() for _, n in quantities)
                ):
                    continue
                at = now() if timing == "immediate" else current.next_period(now())
                sub = await env.subscriptions.edit(
                    ns, current.sub_id, [edits.RemoveItem("default", name)], Timing(timing)
                )
                await _issued_before_cut(env, ns, current, at, (name,))
                current.removed[name] = at
                await env.sync.sync(sub)
            elif step[0] == "workflow":
                # A person changes how a customer's invoices are made and issued (the override
                # replaced as a whole: when lines are collected, progressive billing, the draft
                # period, approval by hand), keeping its end-proration mode, which is part of what
                # the customer owes. Nothing else changes what they owe: what waits already
                # (gathering lines, drafts) is billed once, under whichever settings apply to it.
                _, whom, collection, by_hand = step
                index = whom % len(ids)
                patch = _workflow(theirs[index][0].full_period_at_end, by_hand, collection)
                await env.profiles.upsert_override(ns, ids[index], OverrideUpsertInput(workflow=patch))
                collections.append(collection)  # the end waits as long as the slowest workflow takes
            elif step[0] == "restore":
                # A person takes back an end still to come: a cancellation, or a change scheduled
                # for the next billing cycle (the subscription it scheduled is deleted). Each
                # subscription the restore tells of is synced, as the API's listener does.
                mine = theirs[step[1] % len(theirs)]
                restored = mine[-2] if len(mine) > 1 and now() < mine[-1].start else mine[-1]
                if restored.end is None or not restored.start < now() < restored.end:
                    continue
                told.clear()
                await env.subscriptions.restore(ns, restored.sub_id)
                if restored is not mine[-1]:
                    owed.spans.remove(mine.pop())
                taken_back, noted = restored.end, set(restored.issued)
                restored.restore()
                if restored.full_period_at_end:
                    await _issued_whole_before(env, ns, restored, taken_back, noted)
                for sub in list(told):
                    await env.sync.sync(sub)

        # The end: each customer's last subscription ends at its billing cycle's end, and
        # everything due is collected, approved and issued (the first pass soon after the last
        # event, inside the late-usage window; then past the end; the collection interval is an
        # hour). The billing role runs continuously: a pass follows the last step at once, before
        # the clock jumps to a successor's start (a draft approved by the last step was issued
        # then, and the usage stored after its snapshot is corrected within the window that runs
        # from the issue, not weeks later, outside it).
        await _worker_pass(env)
        for mine in theirs:
            last = mine[-1]
            if now() < last.start:  # a change at the next billing cycle still to come
                env.clock.at = last.start + timedelta(minutes=1)
                await _worker_pass(env)
        for mine in theirs:
            last = mine[-1]
            if last.end is None:
                ended = await env.subscriptions.cancel(ns, last.sub_id, Timing("next_billing_cycle"))
                last.end = _ends_when_asked(ended.active_to, last, "next_billing_cycle", now())
                await _issued_before_cut(env, ns, last, last.end)
                await env.sync.sync(ended)
        final = max(mine[-1].end or now() for mine in theirs)
        env.clock.at = now() + timedelta(hours=2)
        await _approve_all(env, ns)
        env.clock.at = max(now(), final) + timedelta(hours=2)
        await _approve_all(env, ns)
        # Then until nothing is left to issue, each time as long as the slowest workflow takes to
        # issue what fell due (what the end made due; then the late-usage corrections of what was
        # issued at the end).
        settle = max(c.settles() for c in collections) + timedelta(hours=2)
        for _ in range(4):
            if not any(
                f.invoice.status in (InvoiceStatus.GATHERING, InvoiceStatus.DRAFT) for f in await all_invoices(env, ns)
            ):
                break
            env.clock.at = now() + settle
            await _approve_all(env, ns)
            # The role runs on: its next pass reads the usage stored late for what this one issued
            # (a pass reads late usage before it issues anything), which a correction then bills.
            await _worker_pass(env)
        for unpaid in await _waiting_for_payment(env, ns):
            await env.invoices.app_callback(ns, unpaid.invoice.id, Action.PAYMENT_PAID)

        check(owed, await all_invoices(env, ns))
        # Settled: another pass bills nothing. A sync that kept making lines (a balance billed
        # again on every pass) shows here whatever the amounts, even where the end's rounds ran
        # out with its last line still waiting for approval.
        assert await env.sync.sync_all() == 0


async def _approve_all(env: Env, ns: str) -> None:
    """A worker pass, then every draft waiting for approval approved (and a pass again for what
    that made due)."""
    await _worker_pass(env)
    waiting = await _waiting_for_approval(env, ns)
    for invoice_id in waiting:
        await env.invoices.act(ns, invoice_id, Action.APPROVE)
    if waiting:
        await _worker_pass(env)


def check(owed: Owed, found: list[InvoiceWithLines]) -> None:
    billed: dict[tuple[str, str, datetime], Decimal] = {}
    fees: dict[tuple[str, str, datetime], list[tuple[datetime, datetime, Decimal]]] = {}
    for f in found:
        if f.invoice.status is InvoiceStatus.DELETED:
            continue
        top = [x for x in f.lines if x.parent_line_id is None and x.deleted_at is None]
        if f.invoice.status is InvoiceStatus.GATHERING:
            assert top == [], f"still gathering after the end: {[(x.name, x.period_start) for x in top]}"
            continue
        assert f.invoice.status in (InvoiceStatus.PAID, InvoiceStatus.VOIDED), (f.invoice.id, f.invoice.state)
        assert f.invoice.totals.total == sum((x.totals.total for x in top), D(0)), f.invoice.id
        # A voided invoice's lines billed again charge nothing; the forgiven ones count as billed.
        for x in (x for x in top if x.void_action is not VoidLineAction.PENDING):
            assert x.totals.total == x.totals.total.quantize(MINOR_UNIT.get()), (x.name, x.totals.total)
            assert x.subscription is not None, x.name
            sub_id = x.subscription.subscription_id
            # No line of one customer's subscription on another's invoice.
            assert owed.span_of(sub_id).customer == f.invoice.customer_id, (x.name, sub_id, f.invoice.id)
            key = (sub_id, x.name.lower(), owed.period_of(sub_id, x))
            billed[key] = billed.get(key, D(0)) + x.totals.total
            if key[1] in FEES and x.totals.total:
                fees.setdefault(key, []).append((x.period_start, x.period_end, x.totals.total))
    owed_now = owed.charges()
    expected = {k: v for k, v in owed_now.items() if v and not owed.forgiven_fee(k)}
    got = {k: v for k, v in billed.items() if v and not owed.forgiven_fee(k)}
    wrong = {k: (got.get(k), expected.get(k)) for k in set(expected) | set(got) if got.get(k) != expected.get(k)}
    assert wrong == {}, "(billed, owed) per (subscription, rate card, period): " + repr(sorted(wrong.items()))
    # The fees of a period a forgiven line overlaps, by customer, fee and billing period (over
    # the subscriptions plan changes chained: a balance can fall to either side of a change): at
    # least what was owed as issued, at most what is owed net of nothing forgiven (each balance
    # the order of the voids made), a forgiven line in that at least at its face.
    forgiving = owed.charges(forgiving=True)
    for k, above in owed.forgiven_above_model().items():
        forgiving[k] = forgiving.get(k, D(0)) + above
    bounds: dict[tuple[str, datetime], list[Decimal]] = {}
    for sums, at in ((owed_now, 0), (billed, 1), (forgiving, 2)):
        for k, v in sums.items():
            if owed.forgiven_fee(k):
                bounds.setdefault(owed.billing_period_of(k), [D(0)] * 3)[at] += v
    outside = {k: tuple(v) for k, v in bounds.items() if not v[0] <= v[1] <= v[2]}
    assert outside == {}, "(owed as issued, billed, owed net of nothing forgiven): " + repr(sorted(outside.items()))
    if owed.voids:
        # A part issued net of a line voided since bills what it was netted of as a balance line
        # of its own: its fee is the model's, in more lines than the model's parts.
        return
    # A flat fee is billed once per version of its item in force in the period, over that part.
    lines = owed.fee_lines()
    wrong_lines = {
        k: (sorted(fees.get(k, [])), lines.get(k))
        for k in set(fees) | set(lines)
        if sorted(fees.get(k, [])) != lines.get(k, [])
    }
    assert wrong_lines == {}, "(billed, owed) fee lines: " + repr(sorted(wrong_lines.items()))


def _run(history: tuple[Any, ...]) -> None:
    try:
        asyncio.run(run_history(*history))
    except Exception as failed:
        # Hypothesis's own report of a failing example can come out empty for a tuple argument.
        raise AssertionError(f"{failed}\nhistory: {history!r}") from failed


# Shrinking a history costs minutes (a database and a few dozen service calls per try); while
# hunting, TALLY_BILLPROPS_NO_SHRINK=1 reports the first failing history as drawn.
_PHASES = [Phase.explicit, Phase.generate] if os.environ.get("TALLY_BILLPROPS_NO_SHRINK") == "1" else list(Phase)
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


# `make etoe`'s runs: many more (and new) histories than `make test` affords.
_MANY = settings(
    max_examples=int(os.environ.get("TALLY_BILLPROPS_EXAMPLES", "100")),
    deadline=None,
    phases=_PHASES,
    report_multiple_bugs=False,
    suppress_health_check=_SLOW,
)


# A history that takes every path at least once, whatever the draws: usage before the start (not
# billed), November billed on Dec 1, usage for November stored after that (a late-usage
# correction), a progressive invoice-now in December, a change of plan after December's in-advance
# fee was issued (it stays as issued; the new plan's fee is prorated from the change), a graduated
# price into its third tier, images billed progressively across a package (13 then 4: two packages),
# volume-priced calls into the second tier with late calls taking the period into the third,
# storage past its maximum spend, compute under its minimum in one period and over it in another
# (November's taken over it by late usage, in two corrections: the first covered by the shortfall
# already charged, so none is made; the second billing what the period costs above the minimum),
# and an immediate cancellation in January; with each proration mode at the end. Add-ons: on
# Nov 13, two seats (prorated from the purchase), a boost on the base fee already invoiced for
# November (that line stays; 35 from the purchase, net of what it charged for that time) and care
# on the support fee (12 to the purchase, 16.50 after, both in arrears); on Nov 22, three boosts and no care from December, and
# two extras on the base fee at once (a second add-on extending it); on Dec 4, a third seat and the
# boosts taken off (the extras stay), after December's fees were invoiced; on the new plan, care
# again on Dec 9, so the support fee the cancellation cuts is in two parts.
EVERY_PATH_STEPS = (
    [
        ("usage", 0, "api", 60, 250),
        ("wait", 3 * 24 * 60),
        ("addon", 0, "seats", 2, "immediate"),
        ("addon", 0, "boost", 1, "immediate"),
        ("addon", 0, "care", 1, "immediate"),
        ("usage", 0, "tokens", 120, 150),
    ]
    + [("usage", 0, "calls", 60, 400), ("usage", 0, "storage", 30, 90), ("usage", 0, "compute", 0, 12)]
    + [("wait", 3 * 24 * 60)] * 3
    + [("addon", 0, "boost", 3, "next_billing_cycle"), ("addon", 0, "care", 0, "next_billing_cycle")]
    + [("addon", 0, "extra", 2, "immediate")]
    + [("wait", 3 * 24 * 60)] * 3
    + [("usage", 0, "calls", 60, 400), ("usage", 0, "storage", 30, 200)]
    + [("wait", 120), ("usage", 0, "api", 180, 100), ("usage", 0, "calls", 180, 300), ("wait", 60)]
    + [("usage", 0, "compute", 240, 4), ("wait", 60), ("usage", 0, "compute", 300, 30)]
    + [("usage", 0, "api", 60, 40)]
    + [("wait", 3 * 24 * 60), ("invoice_now", 0), ("usage", 0, "api", 30, 7), ("usage", 0, "compute", 0, 30)]
    + [("addon", 0, "seats", 3, "immediate"), ("addon", 0, "boost", 0, "immediate")]
    + [("wait", 3000)]
    + [("change", 0, "immediate"), ("usage", 0, "tokens", 10, 600), ("wait", 3 * 24 * 60)]
    + [("usage", 0, "images", 5, 13)]
    + [("invoice_now", 0), ("addon", 0, "care", 1, "immediate"), ("usage", 0, "images", 5, 4)]
    + [("wait", 3 * 24 * 60), ("usage", 0, "api", 5, 3)]
    + [("wait", 3 * 24 * 60)] * 2
    + [("cancel", 0, "immediate")]
)
# The steps of EVERY_PATH_STEPS up to a few hours into December.
NOVEMBER = 25
EVERY_PATH = ([(9 * 24 * 60, "basic", False, False, NOV)], EVERY_PATH_STEPS)
# EVERY_PATH's history, voiding to bill again (every invoice still waits for its payment): after
# the plan change (Dec 6), the oldest, November's base fee of 21.00 from Nov 10, issued before the
# add-ons cut it on Nov 13 and 22 (the versions after each cut were issued net of it, 3.00 and
# 1.50: now owed 9.00 more each as balances, and Nov 10 - 13 made again, 3.00); before the
# cancellation (Dec 18), the oldest again, Nov 13's seats and base version (3.00, whose balance
# was issued): made again, that version bills 10.50 less its balance, 1.50 (it billed 10.50 on
# top: 34.50 for November's base fee where 25.50 is owed).
_CHANGED = EVERY_PATH_STEPS.index(("change", 0, "immediate")) + 1
BILLED_AGAIN = (
    EVERY_PATH[0],
    [
        *EVERY_PATH_STEPS[:_CHANGED],
        ("void", 0, "pending"),
        *EVERY_PATH_STEPS[_CHANGED:-1],
        ("void", 0, "pending"),
        EVERY_PATH_STEPS[-1],
    ],
)
# EVERY_PATH's history with voids that forgive: after the plan change (Dec 6), December 1's invoice
# (November's usage and support fee, December's in-advance fees, issued before an add-on and the
# change cut them) is voided to forgive it (`discard`): its usage still counts as billed for
# November's later usage (late calls corrected on top), and the new plan's base fee, netted of the
# forgiven one, bills that as a balance. Before the cancellation (Dec 18), the invoicing app reports
# November's first base fee voided (forgiven likewise).
FORGIVEN = (
    EVERY_PATH[0],
    [
        *EVERY_PATH_STEPS[:_CHANGED],
        ("void", 3, "discard"),
        *EVERY_PATH_STEPS[_CHANGED:-1],
        ("void", 0, "app"),
        EVERY_PATH_STEPS[-1],
    ],
)
# Two customers, one approving by hand: the first's history, and the second's usage of the same
# features at the same times never reaches the first (nor the other way round); its drafts wait
# for approval across a plan change and a cancellation at the next billing cycle.
TWO_CUSTOMERS = (
    [(9 * 24 * 60, "basic", True, False, NOV), (12 * 24 * 60, "pro", False, True, NOV)],
    [("usage", 1, "storage", 0, 300), ("usage", 1, "calls", 0, 50)]
    + [s if s[0] != "usage" else (*s[:1], 1, *s[2:]) for s in EVERY_PATH_STEPS[:NOVEMBER]]
    + [("approve", 0), ("change", 1, "next_billing_cycle"), ("wait", 3 * 24 * 60), ("approve", 1)]
    + EVERY_PATH_STEPS[NOVEMBER:],
)

# A draft approved long after its period: November's invoice waits for a person from Dec 1, api
# usage of Nov 30 is stored after its snapshot, and it is approved nine days later, past the
# late-usage window counted from the period's end: the usage is billed by a correction after the
# issue (the window runs from the issue too; it was never billed when it ran from the end alone).
LATE_APPROVAL = (
    [(9 * 24 * 60, "basic", False, True, NOV)],
    [("usage", 0, "api", 0, 100)]
    + [("wait", 3 * 24 * 60)] * 7
    + [("wait", 180), ("usage", 0, "api", 24 * 60, 77)]
    + [("wait", 3 * 24 * 60)] * 3
    + [("approve", 0), ("wait", 3 * 24 * 60), ("wait", 3 * 24 * 60)],
)

# The billing worker stopped for ten days right after November's invoice was issued, with usage of
# Nov 30 stored late, after the issue: the pass after the stop bills it, though the period ended,
# and its invoice was issued, longer ago than the late-usage window (the window ran back from now,
# so the usage was never billed).
WORKER_DOWN = (
    [(9 * 24 * 60, "basic", False, False, NOV)],
    [("usage", 0, "api", 0, 100)]
    + [("wait", 3 * 24 * 60)] * 7
    + [("wait", 180), ("usage", 0, "api", 24 * 60, 77), ("down", 10 * 24 * 60)],
)
# The same with the worker never run before the stop's end: November invoiced by invoice-now on
# Dec 1 (its period over, it is issued at once), the late usage after it, ten days down. The first
# late-usage read reads every issued period (there is no last read to count the window back from;
# counted back from now, it left November out: found by the drawn histories with storage usage).
NEVER_RAN = (
    WORKER_DOWN[0],
    [("usage", 0, "api", 0, 100)]
    + [("down", 3 * 24 * 60)] * 7
    + [("down", 180), ("invoice_now", 0), ("usage", 0, "api", 24 * 60, 77), ("down", 10 * 24 * 60)],
)

# EVERY_PATH with every pass run by two billing workers at once.
RACING = (EVERY_PATH[0], [("race", *s[1:]) if s[0] == "wait" else s for s in EVERY_PATH_STEPS])

# EVERY_PATH on the plan with a trial (Nov 10-20: the add-ons of Nov 13 are not offered yet, the
# billing period is split on Nov 20), the period the subscription ends in billed whole; and a
# customer who cancels during the trial at the next billing cycle, which the trial's end is.
TRIAL_FIRST = ([(9 * 24 * 60, "trial", True, False, NOV)], EVERY_PATH_STEPS)
CANCELED_IN_TRIAL = (
    [(2 * 24 * 60, "trial", False, False, NOV)],
    [
        ("usage", 0, "api", 60, 100),
        ("wait", 3 * 24 * 60),
        ("cancel", 0, "next_billing_cycle"),
        ("usage", 0, "calls", 60, 50),
        ("wait", 3 * 24 * 60),
        ("usage", 0, "storage", 60, 30),
        ("wait", 3 * 24 * 60),
        ("usage", 0, "compute", 0, 30),
        ("wait", 3 * 24 * 60),
    ],
)

# EVERY_PATH for a customer whose invoices are made otherwise: no progressive billing (the
# invoice-nows bill no usage), lines collected on Wednesdays at 05:00 only, usage read a day after
# its period ends, and drafts issued six hours after they are made.
COLLECTED_WEEKLY = (
    [(9 * 24 * 60, "basic", False, False, NOV, Collection(False, "P1D", "PT6H", datetime(2026, 11, 4, 5, tzinfo=UTC)))],
    EVERY_PATH_STEPS,
)

# COLLECTED_WEEKLY's workflow taken on Nov 16, mid-period, with approval by hand (November's
# invoice waits for the end as a draft), then the defaults again after the plan change in
# December; nothing owed changes.
WORKFLOW_CHANGED = (
    EVERY_PATH[0],
    [
        *EVERY_PATH_STEPS[:10],
        ("workflow", 0, COLLECTED_WEEKLY[0][0][5], True),
        *EVERY_PATH_STEPS[10:_CHANGED],
        ("workflow", 0, Collection(), False),
        *EVERY_PATH_STEPS[_CHANGED:],
    ],
)

# Compute under its minimum billed progressively by an invoice issued at once (no collection
# interval), the subscription canceled at that instant: the issued part is the whole period now,
# and a closing line charges the minimum's shortfall (docs/billing.md "Closing lines"); then the
# issued part voided to be billed again, made again under the closing line. Until 2026-12-07 the
# model owed no minimum there, as Tally billed none.
CLOSED_AT_THE_CUT = (
    [(9 * 24 * 60, "basic", False, False, NOV, Collection(interval="PT0S"))],
    [
        ("usage", 0, "compute", 60, 12),
        ("wait", 3 * 24 * 60),
        ("invoice_now", 0),
        ("cancel", 0, "immediate"),
        ("wait", 3 * 24 * 60),
        ("void", 0, "pending"),
        ("wait", 60),
    ],
)

# Month ends and a time of day, across February and April: the first customer is anchored on
# Jan 31 at midnight (periods end Feb 28, Mar 31, Apr 30: each counted from the anchor, not from
# Feb 28), the second on Nov 30 at 17:45 (Jan 30 17:45, Feb 28 17:45, Mar 30 17:45, ...; billed
# whole at the end). Seats bought on Feb 5 are prorated against February's 28 days; a boost
# scheduled for the next billing cycle starts at 17:45 on Feb 28; usage either side of Feb 28
# midnight and of 17:45 falls in the period its time says. On Mar 3 the first customer changes plan
# at once (the new plan's base fee prorated against March's 31 days, on the same anchor) and takes
# care on it; the second changes at its next billing cycle, Mar 30 17:45, with usage just before.
FEB = datetime(2027, 2, 1, tzinfo=UTC)
MONTH_END = (
    [
        (2 * 24 * 60 + 10 * 60, "basic", False, False, datetime(2027, 1, 31, tzinfo=UTC)),
        (4 * 24 * 60, "pro", True, False, datetime(2026, 11, 30, 17, 45, tzinfo=UTC)),
    ],
    [("addon", 0, "seats", 2, "immediate"), ("addon", 1, "boost", 1, "next_billing_cycle")]
    + [("usage", 0, "api", 0, 120), ("usage", 1, "tokens", 0, 300)]
    + [("wait", 3 * 24 * 60)] * 7
    + [("wait", 2 * 24 * 60 + 17 * 60 + 50)]  # to Feb 28 17:50
    + [("usage", 0, "api", 18 * 60, 50), ("usage", 0, "api", 0, 30)]
    + [("usage", 1, "api", 50, 70), ("usage", 1, "api", 0, 40), ("usage", 1, "calls", 10, 200)]
    + [("wait", 3 * 24 * 60)]  # to Mar 3 17:50
    + [("change", 0, "immediate"), ("addon", 0, "care", 1, "immediate"), ("change", 1, "next_billing_cycle")]
    + [("usage", 0, "tokens", 60, 200)]
    + [("wait", 3 * 24 * 60)] * 9  # to Mar 30 17:50
    + [("usage", 1, "api", 10, 5), ("wait", 2 * 24 * 60)]
    + [("usage", 0, "api", 60, 9), ("usage", 1, "api", 60, 11)],
    FEB,
)

# An add-on from the next billing period (Feb 28 06:00, the end of the in-advance base line already
# issued) leaves that line's version whole; two extras bought at the subscription's very start
# then end it where it began: the issued 0.74 stays and the new version is billed too, whole at
# the end (bill_full_period). Drawn: the model noted the line at the first cut, as cut inside, and
# so billed nothing for the new version.
ADDON_AT_ITS_START = (
    [(2252, "basic", True, False, datetime(2026, 10, 31, 6, tzinfo=UTC))],
    [("invoice_now", 0), ("addon", 0, "boost", 1, "next_billing_cycle"), ("addon", 0, "extra", 2, "immediate")],
    LATE_FEBRUARY,
)


# Drawn: the first customer (approving by hand) is canceled on Mar 3 and invoiced at once; 400
# api units of Mar 1 are stored after the draft's snapshot; the draft is approved on Mar 6, and the
# second customer's change at its next billing cycle (Apr 1) is the last step. The billing role
# passes right after the approval and bills the 400 units as a late-usage correction. The history
# jumped to Apr 1 first, past the window counted from the issue, and found 0.01 billed where 5.21
# is owed: the harness's time, not the product (its first pass at the end now comes before any
# jump).
APPROVED_BEFORE_A_JUMP = (
    [
        (5501, "basic", False, True, datetime(2026, 10, 1, tzinfo=UTC)),
        (474, "basic", False, True, datetime(2026, 10, 1, tzinfo=UTC)),
    ],
    [
        ("approve", 0),
        ("usage", 0, "api", 0, 1),
        ("wait", 1),
        ("wait", 2788),
        ("cancel", 0, "immediate"),
        ("invoice_now", 0),
        ("wait", 1),
        ("approve", 0),
        ("wait", 294),
        ("usage", 0, "api", 2880, 400),
        ("wait", 2973),
        ("wait", 31),
        ("approve", 0),
        ("approve", 0),
        ("change", 1, "next_billing_cycle"),
    ],
    LATE_FEBRUARY,
)


# Found by a hunt priced in JPY (it fails in every currency): c1's base fee issued for Feb 28 - Mar
# 30, three boosts from Feb 28 05:18 (that version issued net of the month's line), c1 canceled at
# once at 10:22, then the month's invoice voided to be billed again (made again for 00:00 - 05:18).
# The version's line, issued before the cancellation, stays as issued; had the void come first it
# would have been issued net of nothing, so what the void took back from its netting is owed as a
# balance. Before: none (the version owed only its five hours now), 15.11 billed of 44.89.
CANCELED_AFTER_A_NETTED_VERSION = (
    [
        (3198, "basic", True, False, datetime(2026, 10, 31, 4, 51, tzinfo=UTC), Collection()),
        (73, "basic", False, False, datetime(2026, 11, 30, tzinfo=UTC), Collection()),
    ],
    [
        ("invoice_now", 1),
        ("addon", 1, "boost", 3, "immediate"),
        ("race", 304),
        ("cancel", 1, "immediate"),
        ("void", 0, "pending"),
    ],
    LATE_FEBRUARY,
)


@settings(max_examples=4, deadline=None, derandomize=True, phases=_PHASES, suppress_health_check=_SLOW)
@given(histories)
@example(EVERY_PATH)
@example(([(9 * 24 * 60, "basic", True, False, NOV)], EVERY_PATH_STEPS))
@example((*EVERY_PATH, NOV, "JPY"))
@example((*BILLED_AGAIN, NOV, "BHD"))
@example(TWO_CUSTOMERS)
@example(LATE_APPROVAL)
@example(MONTH_END)
@example(ADDON_AT_ITS_START)
@example(APPROVED_BEFORE_A_JUMP)
@example(BILLED_AGAIN)
@example(FORGIVEN)
@example(WORKER_DOWN)
@example(NEVER_RAN)
@example(RACING)
@example(COLLECTED_WEEKLY)
@example(WORKFLOW_CHANGED)
@example(CLOSED_AT_THE_CUT)
@example(TRIAL_FIRST)
@example(CANCELED_IN_TRIAL)
@example(CANCELED_AFTER_A_NETTED_VERSION)
def test_customers_are_invoiced_what_they_owe_over_a_random_history(history: tuple[Any, ...]) -> None:
    _run(history)


@pytest.mark.full_suite
@_MANY
@given(histories)
def test_customers_are_invoiced_what_they_owe_over_many_random_histories(history: tuple[Any, ...]) -> None:
    # `make etoe`: the same property over many more (and new) histories than `make test` affords.
    _run(history)


@pytest.mark.full_suite
@_MANY
@given(slanted_histories)
def test_customers_are_invoiced_what_they_owe_over_many_slanted_histories(history: tuple[Any, ...]) -> None:
    # `make etoe` too: histories slanted towards the steps that meet (`slanted_histories`).
    _run(history)
