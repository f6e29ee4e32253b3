"""Add-ons (OpenMeter's `Addon`) and their assignment to plans (`PlanAddon`).

An add-on is versioned like a plan (key, version, draft -> active -> archived; no "scheduled": it
is published now) and carries rate cards. `instance_type` single: bought at most once per
subscription; multiple: bought several times, so only free or flat-priced rate cards make sense.
Its priced, recurring rate cards share one billing cadence (checked at publish).

A plan add-on makes an *active* add-on purchasable on a *draft* plan from the phase
`from_plan_phase` on, at most `max_quantity` times (multiple-instance add-ons only). Its rules
(`check_plan_addon`): the plan is a draft (a published plan's offer cannot change), the add-on is
active, the phase exists, currencies match, the add-on's billing cadences align with the plan's,
and a rate card sharing a key with a plan rate card from that phase on has the same type, feature
and cadence.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.catalog.plans import Plan, PlanStatus, parse_currency
from domain.catalog.prices import FlatPrice
from domain.catalog.ratecards import (
    FeatureFacts,
    RateCard,
    TemplateType,
    check_rate_card_features,
    check_rate_card_keys,
    parse_rate_card,
)
from domain.catalog.versions import CatalogVersion, read_common_fields
from domain.catalog.wire import Issues, Reader, join, violations_rest
from domain.customers.models import ULID_RE
from domain.errors import FieldViolation
from domain.wiretime import rfc3339


class AddonStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


class InstanceType(enum.StrEnum):
    SINGLE = "single"
    MULTIPLE = "multiple"


def addon_status(effective_from: datetime | None, effective_to: datetime | None, now: datetime) -> AddonStatus:
    if effective_from is None:
        return AddonStatus.DRAFT
    if effective_to is not None and effective_to <= now:
        return AddonStatus.ARCHIVED
    return AddonStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class AddonInput:
    key: str
    name: str
    instance_type: InstanceType
    currency: str
    rate_cards: tuple[RateCard, ...]
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def feature_keys(self) -> set[str]:
        return {c.feature_key for c in self.rate_cards if c.feature_key is not None}

    def document(self, resolve_defaults: bool = False) -> dict[str, Any]:
        """The AddonCreate JSON of this content; `parse_addon(document())` gives it back (storage)."""
        out: dict[str, Any] = {
            "key": self.key,
            "name": self.name,
            "instanceType": self.instance_type.value,
            "currency": self.currency,
            "rateCards": [card.rest(resolve_defaults) for card in self.rate_cards],
        }
        if self.description is not None:
            out["description"] = self.description
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True, slots=True)
class Addon(CatalogVersion[AddonInput]):
    def status(self, now: datetime) -> AddonStatus:
        return addon_status(self.effective_from, self.effective_to, now)


def parse_addon(data: Any, existing: AddonInput | None = None) -> tuple[AddonInput | None, Issues]:
    """Reads an AddonCreate body, or an AddonReplaceUpdate of `existing` (key and currency stay, and
    its description and metadata when the body leaves them out, as OpenMeter's update)."""
    r = Reader()
    obj = r.obj(data, "")
    if obj is None:
        return None, r.issues
    key, name, description, metadata = read_common_fields(r, obj, existing)
    instance = r.choice(obj, "instanceType", "", tuple(t.value for t in InstanceType), required=True)
    currency = parse_currency(r, obj, "") if existing is None else existing.currency
    cards: list[RateCard | None] = []
    for index, raw in enumerate(r.list(obj, "rateCards", "", required=True)):
        cards.append(parse_rate_card(r, raw, f"rateCards[{index}]"))
    check_rate_card_keys(r, cards, "rateCards")
    if r.issues.errors or key is None or name is None or instance is None:
        return None, r.issues
    return (
        AddonInput(
            key, name, InstanceType(instance), currency, tuple(c for c in cards if c is not None), description, metadata
        ),
        r.issues,
    )


def check_addon(addon: AddonInput, features: Mapping[str, FeatureFacts], strict: bool, issues: Issues) -> None:
    r = Reader(issues)

    problem = issues.warning_or_error(strict)

    if not addon.rate_cards:
        problem("rateCards", "an add-on needs at least one rate card", "addon_has_no_rate_cards")
    # Its priced, recurring rate cards are billed on one cadence (OpenMeter's
    # ValidateAddonHasSingleBillingCadence); the first one sets it.
    cadence = next((c.billing_cadence for c in addon.rate_cards if c.is_billable and c.billing_cadence), None)
    for index, card in enumerate(addon.rate_cards):
        path = f"rateCards[{index}]"
        if cadence is not None and card.is_billable and card.billing_cadence not in (None, cadence):
            problem(
                join(path, "billingCadence"),
                f"billing cadence {card.billing_cadence.iso()} differs from the add-on's {cadence.iso()}: "
                "an add-on's priced rate cards share one billing cadence",
                "rate_card_multiple_billing_cadence",
            )
        if (
            addon.instance_type is InstanceType.MULTIPLE
            and card.price is not None
            and not isinstance(card.price, FlatPrice)
        ):
            problem(
                join(path, "price"),
                "a multiple-instance add-on takes only free or flat-priced rate cards",
                "addon_invalid_ratecard_price_for_multi_instance",
            )
        check_rate_card_features(r, card, path, features, strict)


@dataclass(frozen=True, slots=True)
class PlanAddonInput:
    from_plan_phase: str
    max_quantity: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def parse_plan_addon(data: Any, create: bool) -> tuple[str | None, PlanAddonInput | None, Issues]:
    """(addonId, input, issues) from a PlanAddonCreate (create) or PlanAddonReplaceUpdate body."""
    r = Reader()
    obj = r.obj(data, "")
    if obj is None:
        return None, None, r.issues
    addon_id = None
    if create:
        addon_id = r.string(obj, "addonId", "", required=True)
        if addon_id is not None and not ULID_RE.match(addon_id):
            r.issues.error("addonId", "must be a ULID", "invalid_id")
    phase = r.key(obj, "fromPlanPhase", "")
    metadata = r.metadata(obj, "")
    raw_max = obj.get("maxQuantity")
    max_quantity: int | None = None
    if raw_max is not None:
        if isinstance(raw_max, bool) or not isinstance(raw_max, int | float) or int(raw_max) != raw_max:
            r.issues.error("maxQuantity", "must be an integer", "invalid_type")
        elif raw_max <= 0:
            r.issues.error("maxQuantity", "must be a positive integer", "plan_addon_max_quantity_must_be_set")
        else:
            max_quantity = int(raw_max)
    if r.issues.errors or phase is None:
        return addon_id, None, r.issues
    return addon_id, PlanAddonInput(phase, max_quantity, metadata), r.issues


@dataclass(frozen=True, slots=True)
class PlanAddonRecord:
    """A stored assignment of an add-on version to a plan version."""

    id: str
    namespace: str
    plan_id: str
    addon_id: str
    content: PlanAddonInput
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PlanAddon:
    record: PlanAddonRecord
    addon: Addon
    # What makes the assignment unusable now (OpenMeter validates a plan add-on on every read).
    validation_errors: tuple[FieldViolation, ...] = ()

    def rest(self, now: datetime) -> dict[str, Any]:
        record = self.record
        out: dict[str, Any] = {
            "id": record.id,
            "addon": self.addon.rest(now),
            "fromPlanPhase": record.content.from_plan_phase,
            "metadata": dict(record.content.metadata),
            "validationErrors": violations_rest(list(self.validation_errors), "warning"),
            "createdAt": rfc3339(record.created_at),
            "updatedAt": rfc3339(record.updated_at),
        }
        if record.content.max_quantity is not None:
            out["maxQuantity"] = record.content.max_quantity
        if record.deleted_at is not None:
            out["deletedAt"] = rfc3339(record.deleted_at)
        return out


def check_plan_addon(
    plan: Plan,
    addon: Addon,
    data: PlanAddonInput,
    now: datetime,
    issues: Issues,
    require_active_addon: bool = True,
    editing: bool = True,
) -> None:
    """The assignment rules; all critical here (OpenMeter's warnings on a plan add-on block its use).
    `editing=False` checks an existing assignment as OpenMeter's PlanAddon.Validate does on a read:
    its plan may then be active too, only an archived one is incompatible."""
    if editing and plan.deleted_at is not None:
        # A deleted draft still reads as a draft by ID (OpenMeter's plan.IsPlanDeleted refuses it).
        issues.error("planId", "the plan is deleted", "plan_deleted")
    elif editing and plan.status(now) is not PlanStatus.DRAFT:
        issues.error(
            "planId",
            f"add-ons can be attached to draft plans only (plan is {plan.status(now).value})",
            "plan_addon_incompatible_status",
        )
    if not editing and plan.status(now) is PlanStatus.ARCHIVED:
        issues.error("planId", "the plan is archived", "plan_addon_incompatible_status")
    if require_active_addon and (addon.status(now) is not AddonStatus.ACTIVE or addon.effective_to is not None):
        issues.error(
            "addonId",
            f"only active add-ons can be attached (add-on is {addon.status(now).value})",
            "plan_addon_incompatible_status",
        )
    if addon.content.instance_type is InstanceType.SINGLE and data.max_quantity is not None:
        issues.error(
            "maxQuantity", "must not be set for a single-instance add-on", "plan_addon_max_quantity_must_not_be_set"
        )
    if addon.content.currency != plan.content.currency:
        issues.error(
            "addonId",
            f"add-on currency {addon.content.currency} differs from the plan's {plan.content.currency}",
            "plan_addon_currency_mismatch",
        )
    phases = plan.content.phases
    start = next((i for i, p in enumerate(phases) if p.key == data.from_plan_phase), None)
    if start is None:
        issues.error(
            "fromPlanPhase", f"plan has no phase {data.from_plan_phase!r}", "plan_addon_unknown_plan_phase_key"
        )
        return
    cadence = plan.content.billing_cadence
    for index, card in enumerate(addon.content.rate_cards):
        where = f"addon.rateCards[{index}]"
        if card.is_billable and card.billing_cadence is not None and not card.billing_cadence.aligned_with(cadence):
            issues.error(
                join(where, "billingCadence"),
                f"billing cadence {card.billing_cadence.iso()} does not align with the plan's {cadence.iso()}",
                "rate_card_billing_cadence_unaligned",
            )
        for phase in phases[start:]:
            for plan_card in phase.rate_cards:
                if plan_card.key != card.key:
                    continue
                if plan_card.type is not card.type or (
                    plan_card.price is not None and card.price is not None and plan_card.price.type != card.price.type
                ):
                    issues.error(
                        where,
                        f"rate card {card.key!r} differs in type from phase {phase.key!r}'s",
                        "rate_card_price_type_mismatch",
                    )
                if plan_card.feature_key != card.feature_key:
                    issues.error(
                        join(where, "featureKey"),
                        f"rate card {card.key!r} has another feature in phase {phase.key!r}",
                        "rate_card_feature_key_mismatch",
                    )
                if plan_card.billing_cadence != card.billing_cadence:
                    issues.error(
                        join(where, "billingCadence"),
                        f"rate card {card.key!r} has another billing cadence in phase {phase.key!r}",
                        "rate_card_billing_cadence_mismatch",
                    )
                _check_overlay(plan_card, card, where, phase.key, issues)


def _check_overlay(plan_card: RateCard, card: RateCard, where: str, phase_key: str, issues: Issues) -> None:
    """What an add-on rate card may add on top of the plan rate card with its key (OpenMeter's
    RateCardWithOverlay.Validate): a second price only as a flat fee with the plan's payment term,
    no second percentage discount, and a second entitlement template of the same type that is not
    static (and, metered, has the same usage period)."""
    in_phase = f"in phase {phase_key!r}"
    if plan_card.price is not None and card.price is not None:
        if not isinstance(plan_card.price, FlatPrice) or not isinstance(card.price, FlatPrice):
            issues.error(
                join(where, "price"),
                f"rate card {card.key!r} is priced {in_phase} too: only two flat prices can add up",
                "rate_card_only_flat_price_allowed",
            )
        elif plan_card.price.payment_term is not card.price.payment_term:
            issues.error(
                join(where, "price.paymentTerm"),
                f"rate card {card.key!r} is paid {plan_card.price.payment_term.value} {in_phase}",
                "rate_card_price_payment_term_mismatch",
            )
    check_overlay_terms(plan_card, card, where, in_phase, issues)


def check_overlay_terms(plan_card: RateCard, card: RateCard, where: str, in_phase: str, issues: Issues) -> None:
    """The discounts and entitlement template part of `_check_overlay` (a subscription's add-on
    purchase checks the price its own way: see domain.subscriptions.extensions)."""
    if plan_card.discounts.percentage is not None and card.discounts.percentage is not None:
        issues.error(
            join(where, "discounts.percentage"),
            f"rate card {card.key!r} has a percentage discount {in_phase} already",
            "rate_card_percentage_discount_not_allowed",
        )
    plan_template, template = plan_card.entitlement_template, card.entitlement_template
    if plan_template is None or template is None:
        return
    path = join(where, "entitlementTemplate")
    if plan_template.type is not template.type:
        issues.error(
            path,
            f"rate card {card.key!r} has a {plan_template.type.value} entitlement template {in_phase}",
            "rate_card_entitlement_template_type_mismatch",
        )
    elif template.type is TemplateType.STATIC:
        issues.error(
            path,
            f"rate card {card.key!r} has a static entitlement template {in_phase}: two cannot be combined",
            "rate_card_static_entitlement_template_not_allowed",
        )
    elif template.type is TemplateType.METERED and plan_card.usage_period != card.usage_period:
        period = plan_card.usage_period.iso() if plan_card.usage_period is not None else "none"
        issues.error(
            path,
            f"rate card {card.key!r} has a metered entitlement template with usage period {period} {in_phase}",
            "rate_card_metered_entitlement_template_usage_period_mismatch",
        )
