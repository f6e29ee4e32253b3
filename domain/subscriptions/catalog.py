"""Subscriptions' view of the product catalog: rate cards' billing terms, their stored form, and
plans as a subscription starts from them.

The catalog measures cadences with its own `Duration` (months, days, seconds); the timeline uses
the entitlements' `IsoDuration` and `Recurrence`, which add the same way (months clamped to the
month end, then days, then seconds). `to_iso` converts at this one boundary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from domain.catalog.durations import Duration
from domain.catalog.plans import Plan, PlanInput
from domain.catalog.prices import FlatPrice, PaymentTerm
from domain.catalog.ratecards import EntitlementTemplate, RateCard, parse_rate_card
from domain.catalog.wire import Reader
from domain.entitlements.recurrence import IsoDuration
from domain.subscriptions.models import PlanRef, ProRating
from domain.subscriptions.ports import PlanPhaseView, PlanView
from domain.subscriptions.timeline import TimelineRateCard


def to_iso(duration: Duration) -> IsoDuration:
    return IsoDuration(months=duration.months, days=duration.days, seconds=duration.seconds)


def from_iso(duration: IsoDuration) -> Duration:
    return Duration(
        months=duration.years * 12 + duration.months,
        days=duration.weeks * 7 + duration.days,
        seconds=duration.hours * 3600 + duration.minutes * 60 + duration.seconds,
    )


def card_of(rate_card: TimelineRateCard) -> RateCard:
    assert isinstance(rate_card, RateCard), type(rate_card)
    return rate_card


@dataclass(frozen=True, slots=True)
class RateCardBilling:
    """A catalog rate card's billing terms, as the timeline asks for them."""

    card: RateCard

    def is_billable(self) -> bool:
        return self.card.price is not None

    def invoiced_in_advance(self) -> bool:
        price = self.card.price
        return isinstance(price, FlatPrice) and price.payment_term is PaymentTerm.IN_ADVANCE

    @property
    def cadence(self) -> IsoDuration | None:
        return to_iso(self.card.billing_cadence) if self.card.billing_cadence is not None else None


def billing_terms(rate_card: TimelineRateCard) -> RateCardBilling:
    return RateCardBilling(card_of(rate_card))


class CatalogRateCards:
    """`RateCardTerms` over the catalog's rate cards (stored in the spec in OpenMeter's JSON form)."""

    def feature_key(self, rate_card: TimelineRateCard) -> str | None:
        return card_of(rate_card).feature_key

    def is_billable(self, rate_card: TimelineRateCard) -> bool:
        return card_of(rate_card).is_billable

    def entitlement_template(self, rate_card: TimelineRateCard) -> EntitlementTemplate | None:
        return card_of(rate_card).entitlement_template

    def to_json(self, rate_card: TimelineRateCard, quantity: Decimal = Decimal(1)) -> dict[str, Any]:
        card = card_of(rate_card)
        if quantity != 1 and isinstance(card.price, FlatPrice):
            # An item of an add-on bought `quantity` times bills that many flat fees as one (see
            # docs/billing.md), and shows it: OpenMeter applies the add-on's rate card once per
            # instance, adding up the amounts (subscription/addon/extend.go).
            card = dataclasses.replace(card, price=dataclasses.replace(card.price, amount=card.price.amount * quantity))
        return card.rest()

    def to_storage(self, rate_card: TimelineRateCard) -> dict[str, Any]:
        # Defaults stay unset, so what is read back equals what was stored.
        return card_of(rate_card).rest(resolve_defaults=False)

    def cadence_aligned(self, rate_card: TimelineRateCard, billing_cadence: IsoDuration) -> bool:
        card = card_of(rate_card)
        if not card.is_billable or card.billing_cadence is None:
            return True
        return card.billing_cadence.aligned_with(from_iso(billing_cadence))

    def from_json(self, data: dict[str, Any]) -> RateCard:
        reader = Reader()
        card = parse_rate_card(reader, data, "rateCard")
        reader.issues.raise_if_errors()
        assert card is not None
        return card

    def parse(self, data: Any, path: str) -> RateCard:
        """A rate card from a request (an edit's add_item), every problem under `path`."""
        reader = Reader()
        card = parse_rate_card(reader, data, path)
        reader.issues.raise_if_errors()
        assert card is not None
        return card


TermsFor = Callable[[TimelineRateCard], RateCardBilling]


def plan_view(plan: Plan) -> PlanView:
    """A catalog plan version as a subscription starts from it."""
    return content_view(plan.content, PlanRef(plan.id, plan.content.key, plan.version))


def content_view(c: PlanInput, ref: PlanRef | None) -> PlanView:
    """A plan's content as a subscription starts from it (`ref` None: a custom plan)."""
    return PlanView(
        ref=ref,
        name=c.name,
        description=c.description,
        currency=c.currency,
        billing_cadence=to_iso(c.billing_cadence),
        pro_rating=ProRating(c.pro_rating.enabled, c.pro_rating.mode),
        settlement_mode=c.settlement_mode.value,
        phases=tuple(
            PlanPhaseView(p.key, p.name, p.description, to_iso(p.duration) if p.duration else None, p.rate_cards)
            for p in c.phases
        ),
        metadata=dict(c.metadata),
    )
