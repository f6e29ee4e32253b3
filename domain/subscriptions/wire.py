"""Subscriptions in OpenMeter's JSON shape (Subscription, SubscriptionExpanded), as the catalog
does for plans: the servicer parses these dicts into the proto messages, so the REST wire format
is written in one place and gRPC carries the same fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.subscriptions.models import Subscription, SubscriptionAddon
from domain.subscriptions.ports import RateCardTerms
from domain.subscriptions.timeline import (
    ItemView,
    PhaseView,
    billing_period_at,
    item_timelines,
    phases,
    representative_items,
)
from domain.wiretime import rfc3339


def _drop_none(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if v is not None}


def subscription_rest(sub: Subscription, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sub.id,
        "name": sub.name,
        "description": sub.description,
        "metadata": dict(sub.metadata) if sub.metadata else None,
        "createdAt": rfc3339(sub.created_at),
        "updatedAt": rfc3339(sub.updated_at),
        "deletedAt": rfc3339(sub.deleted_at),
        "activeFrom": rfc3339(sub.active_from),
        "activeTo": rfc3339(sub.active_to),
        "annotations": dict(sub.annotations) if sub.annotations else None,
        "status": sub.status(now),
        "customerId": sub.customer_id,
        "plan": {"id": sub.plan.id, "key": sub.plan.key, "version": sub.plan.version} if sub.plan else None,
        "currency": sub.currency,
        "costBasisMode": sub.cost_basis_mode,
        "costBasisPins": [],
        "billingCadence": sub.billing_cadence.iso(),
        "proRatingConfig": {"enabled": sub.pro_rating.enabled, "mode": sub.pro_rating.mode},
        # As given (OpenMeter keeps any anchor since openmeter#3229; it no longer normalises it).
        "billingAnchor": rfc3339(sub.billing_anchor),
        "settlementMode": sub.settlement_mode,
        "alignment": {"billablesMustAlign": True},
    }
    return _drop_none(out)


def expanded_rest(
    sub: Subscription, now: datetime, rate_cards: RateCardTerms, entitlement_ids: dict[str, str] | None = None
) -> dict[str, Any]:
    """SubscriptionExpanded: phases with `items` (one version per key, OpenMeter's flattening) and
    `itemTimelines` (every version), and the current aligned billing period."""
    out = subscription_rest(sub, now)
    views = phases(sub.spec)
    out["phases"] = [_phase_rest(sub, view, now, rate_cards, entitlement_ids or {}) for view in views]
    alignment: dict[str, Any] = {"billablesMustAlign": True}
    if sub.status(now) in ("active", "canceled"):
        # Cut at the phase (and so at the subscription's start and end), as OpenMeter's
        # GetAlignedBillingPeriodAt: the period a phase switch falls in is billed as two.
        period = billing_period_at(sub.spec, now)
        alignment["currentAlignedBillingPeriod"] = {"from": rfc3339(period.start), "to": rfc3339(period.end)}
    out["alignment"] = alignment
    return out


def _phase_rest(
    sub: Subscription, view: PhaseView, now: datetime, rate_cards: RateCardTerms, entitlement_ids: dict[str, str]
) -> dict[str, Any]:
    phase = view.spec
    timelines = item_timelines(sub.spec, view)
    return _drop_none(
        {
            "id": phase.id,
            "key": phase.key,
            "name": phase.name,
            "description": phase.description,
            "createdAt": rfc3339(sub.created_at),
            "updatedAt": rfc3339(sub.updated_at),
            "activeFrom": rfc3339(view.active_from),
            "activeTo": rfc3339(view.active_to),
            "items": [
                _item_rest(sub, item, rate_cards, entitlement_ids) for item in representative_items(sub.spec, view, now)
            ],
            "itemTimelines": {
                key: [_item_rest(sub, item, rate_cards, entitlement_ids) for item in versions]
                for key, versions in timelines.items()
            },
        }
    )


def _item_rest(
    sub: Subscription, item: ItemView, rate_cards: RateCardTerms, entitlement_ids: dict[str, str]
) -> dict[str, Any]:
    card = rate_cards.to_json(item.spec.rate_card, item.spec.quantity)
    out: dict[str, Any] = {
        "id": item.spec.id,
        "key": item.spec.key,
        "name": card.get("name", item.spec.key),
        "description": card.get("description"),
        "metadata": card.get("metadata"),
        "createdAt": rfc3339(item.spec.created_at or sub.created_at),
        "updatedAt": rfc3339(sub.updated_at),
        "activeFrom": rfc3339(item.active_from),
        "activeTo": rfc3339(item.active_to),
        "featureKey": card.get("featureKey"),
        "billingCadence": card.get("billingCadence"),
        "price": card.get("price"),
        "discounts": card.get("discounts"),
        "taxConfig": card.get("taxConfig"),
        # The rate card's currency, which only a priced one has (OpenMeter's materialized currency).
        "currency": sub.currency if card.get("price") is not None else None,
    }
    # billingCadence and price are required keys (null for one-time and free items).
    return {k: v for k, v in out.items() if v is not None or k in ("billingCadence", "price")}


def addon_rest(sub: Subscription, addon: SubscriptionAddon, now: datetime, rate_cards: RateCardTerms) -> dict[str, Any]:
    """SubscriptionAddon: the quantity now and over time, and the items its rate cards became."""
    affected: dict[str, list[str]] = {}
    cards: dict[str, Any] = {}
    for view in phases(sub.spec):
        for item in view.spec.items:
            # One instance's rate card: an item of the add-on's own, or what it extends a plan item by.
            own = next((e.rate_card for e in item.extensions if e.addon_id == addon.id), None)
            if item.addon_id == addon.id:
                own = item.rate_card
            if own is not None:
                affected.setdefault(item.key, []).append(item.id)
                cards.setdefault(item.key, own)
    return _drop_none(
        {
            "id": addon.id,
            "name": addon.name,
            "description": addon.description,
            "metadata": dict(addon.metadata) if addon.metadata else None,
            "createdAt": rfc3339(addon.created_at),
            "updatedAt": rfc3339(addon.updated_at),
            "activeFrom": rfc3339(addon.active_from),
            "activeTo": rfc3339(addon.active_to),
            "addon": {
                "id": addon.addon_id,
                "key": addon.addon_key,
                "version": addon.addon_version,
                "instanceType": addon.instance_type,
            },
            "quantityAt": rfc3339(now),
            "quantity": addon.quantity_at(now),
            "timeline": [
                _drop_none(
                    {"activeFrom": rfc3339(s.active_from), "activeTo": rfc3339(s.active_to), "quantity": s.quantity}
                )
                for s in addon.timeline
            ],
            "subscriptionId": sub.id,
            "rateCards": [
                {"rateCard": rate_cards.to_json(card), "affectedSubscriptionItemIds": affected[key]}
                for key, card in cards.items()
            ],
        }
    )
