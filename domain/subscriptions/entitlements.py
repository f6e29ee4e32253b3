"""Subscription-managed entitlements through the entitlements service's managed API.

An item version with a feature and an entitlement template is one entitlement window of the
customer: created with the template's settings, active over the item's [activeFrom, activeTo),
annotated with the subscription's id (which is how the public API knows to refuse deleting it or
granting on it). Windows are matched to item versions by (feature key, activeFrom), and a window
whose terms (type and settings) are no longer the version's is replaced, as OpenMeter's sync
replaces an entitlement that differs from the one its item wants.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.catalog.ratecards import RateCard, TemplateType
from domain.customers.service import CustomerService
from domain.entitlements.models import (
    SUBSCRIPTION_ID_ANNOTATION,
    Entitlement,
    EntitlementInput,
    ListEntitlementsInput,
    RecurrenceInput,
)
from domain.entitlements.service import EntitlementService
from domain.errors import ValidationError
from domain.subscriptions.models import ManagedEntitlement
from domain.subscriptions.ports import ManagedEntitlementRecord

_PAGE = 1000


def entitlement_input(wanted: ManagedEntitlement) -> EntitlementInput:
    card = wanted.rate_card
    assert isinstance(card, RateCard) and card.entitlement_template is not None
    template = card.entitlement_template
    if template.type is TemplateType.METERED:
        period = card.usage_period
        # One allowance per instance (OpenMeter applies an add-on's rate card once per quantity).
        issue = (
            None if template.issue_after_reset is None else Decimal(str(template.issue_after_reset)) * wanted.quantity
        )
        return EntitlementInput(
            type="metered",
            feature_key=wanted.feature_key,
            metadata=dict(template.metadata),
            # The usage period restarts with each billing period: anchored at the subscription's
            # billing anchor (OpenMeter's AlignedBillingAnchor), measured from the phase's start.
            usage_period=RecurrenceInput(period.iso(), wanted.billing_anchor) if period is not None else None,
            measure_usage_from=wanted.measure_usage_from.isoformat(),
            is_soft_limit=template.is_soft_limit,
            issue_after_reset=issue,
            issue_after_reset_priority=template.issue_after_reset_priority if template.issue_after_reset else None,
            preserve_overage_at_reset=template.preserve_overage_at_reset,
            v2=True,
        )
    if template.type is TemplateType.STATIC:
        return EntitlementInput(
            type="static",
            feature_key=wanted.feature_key,
            metadata=dict(template.metadata),
            config=template.config,
            v2=True,
        )
    return EntitlementInput(type="boolean", feature_key=wanted.feature_key, metadata=dict(template.metadata), v2=True)


def _terms(
    type_: str,
    metadata: Any,
    usage_period: tuple[Any, datetime] | None,
    measure_usage_from: datetime | None,
    is_soft_limit: bool,
    issue_after_reset: Decimal | None,
    issue_after_reset_priority: int | None,
    preserve_overage_at_reset: bool,
    config: str | None,
) -> Hashable:
    return (
        type_,
        tuple(sorted(dict(metadata).items())),
        usage_period,
        measure_usage_from,
        is_soft_limit,
        issue_after_reset,
        issue_after_reset_priority,
        preserve_overage_at_reset,
        config,
    )


def stored_terms(entitlement: Entitlement) -> Hashable:
    """What a stored entitlement grants, in the form `wanted_terms` gives."""
    period = None
    if entitlement.usage_interval is not None and entitlement.usage_anchor is not None:
        period = (entitlement.usage_interval, entitlement.usage_anchor)
    return _terms(
        entitlement.type.value,
        entitlement.metadata,
        period,
        entitlement.measure_usage_from,
        entitlement.is_soft_limit,
        entitlement.issue_after_reset,
        entitlement.issue_after_reset_priority,
        entitlement.preserve_overage_at_reset,
        entitlement.config,
    )


def wanted_terms(wanted: ManagedEntitlement) -> Hashable | None:
    """What the entitlement made for `wanted` would grant, normalised as creating it stores it
    (anchor and measureUsageFrom to the minute, no issue of 0); None for a template the entitlement
    service would refuse (creating it reports that)."""
    try:
        valid = entitlement_input(wanted).validate(wanted.active_from)
    except ValidationError:
        return None
    period = None if valid.recurrence is None else (valid.recurrence.interval, valid.recurrence.anchor)
    return _terms(
        valid.type.value,
        valid.metadata,
        period,
        valid.measure_usage_from,
        valid.is_soft_limit,
        valid.issue_after_reset,
        valid.issue_after_reset_priority,
        valid.preserve_overage_at_reset,
        valid.config,
    )


class EntitlementBridge:
    """`ManagedEntitlements` over EntitlementService."""

    def __init__(self, entitlements: EntitlementService, customers: CustomerService) -> None:
        self._entitlements = entitlements
        self._customers = customers

    async def managed_for(
        self, namespace: str, customer_id: str, subscription_id: str
    ) -> Sequence[ManagedEntitlementRecord]:
        found = []
        page = 1
        while True:
            items, total, _, _, _ = await self._entitlements.list_entitlements(
                namespace, ListEntitlementsInput(page=page, page_size=_PAGE), customer_ids=[customer_id]
            )
            found.extend(items)
            if page * _PAGE >= total or not items:
                break
            page += 1
        return [
            ManagedEntitlementRecord(
                e.id, subscription_id, "", e.feature_key, e.active_from, e.active_to, stored_terms(e)
            )
            for e in found
            if e.deleted_at is None and e.annotations.get(SUBSCRIPTION_ID_ANNOTATION) == subscription_id
        ]

    def terms_of(self, wanted: ManagedEntitlement) -> Hashable | None:
        return wanted_terms(wanted)

    async def create_managed(self, namespace: str, customer_id: str, wanted: ManagedEntitlement) -> str:
        customer = await self._customers.get_live(namespace, customer_id)
        created = await self._entitlements.create_managed(
            namespace,
            customer,
            entitlement_input(wanted),
            subscription_id=wanted.subscription_id,
            active_from=wanted.active_from,
            active_to=wanted.active_to,
        )
        return created.id

    async def end_managed(self, namespace: str, entitlement_id: str, at: datetime) -> None:
        await self._entitlements.end_managed(namespace, entitlement_id, at)

    async def delete_managed(self, namespace: str, entitlement_id: str) -> None:
        await self._entitlements.delete_managed(namespace, entitlement_id)
