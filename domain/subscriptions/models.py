"""Subscriptions' entities and inputs.

A `Subscription` is its header (customer, plan reference, currency, cadence, anchor, start and end)
plus the spec its timeline is computed from (`timeline.SubscriptionSpec`). `status` is derived from
the start and end at the time asked, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from domain.entitlements.recurrence import IsoDuration
from domain.errors import ValidationError, Violations
from domain.subscriptions.timeline import SubscriptionSpec

SubscriptionStatus = Literal["active", "inactive", "canceled", "scheduled"]
SETTLEMENT_MODES = ("credit_then_invoice", "credit_only")
# How custom-currency cost bases are chosen (OpenMeter's SubscriptionCostBasisMode). Tally has no
# custom currencies, so neither pins anything; the mode is checked and kept as OpenMeter keeps it.
COST_BASIS_MODES = ("dynamic", "pinned")
TIMING_ENUMS = ("immediate", "next_billing_cycle")
# OpenMeter's annotation keys (subscription/annotations.go): the subscription a change's next one
# follows, and the one that follows a changed subscription.
PREVIOUS_ANNOTATION = "subscription.previous.id"
SUPERSEDING_ANNOTATION = "subscription.superseding.id"
MAX_NAME = 256
MAX_DESCRIPTION = 1024


@dataclass(frozen=True, slots=True)
class PlanRef:
    id: str
    key: str
    version: int


@dataclass(frozen=True, slots=True)
class ProRating:
    enabled: bool = True
    mode: str = "prorate_prices"


@dataclass(frozen=True, slots=True)
class QuantitySegment:
    """An add-on's quantity over [active_from, active_to)."""

    active_from: datetime
    active_to: datetime | None
    quantity: int


@dataclass(frozen=True, slots=True)
class SubscriptionAddon:
    """An add-on bought on a subscription: its quantity over time. Its rate cards are items of the
    spec (ItemSpec.addon_id is this id), one version per quantity segment and phase, or, with a plan
    item's key, extensions of that item's versions (ItemSpec.extensions)."""

    id: str
    addon_id: str
    addon_key: str
    addon_version: int
    instance_type: str
    name: str
    timeline: tuple[QuantitySegment, ...]
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def quantity_at(self, at: datetime) -> int:
        for segment in self.timeline:
            if segment.active_from <= at and (segment.active_to is None or at < segment.active_to):
                return segment.quantity
        return 0

    @property
    def active_from(self) -> datetime:
        return self.timeline[0].active_from

    @property
    def active_to(self) -> datetime | None:
        return self.timeline[-1].active_to


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    namespace: str
    customer_id: str
    name: str
    currency: str
    billing_cadence: IsoDuration
    billing_anchor: datetime
    active_from: datetime
    active_to: datetime | None
    spec: SubscriptionSpec
    created_at: datetime
    updated_at: datetime
    plan: PlanRef | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    pro_rating: ProRating = field(default_factory=ProRating)
    settlement_mode: str = "credit_then_invoice"
    cost_basis_mode: str = "dynamic"
    deleted_at: datetime | None = None
    # Bumped by every change; the billing sync remembers the revision it last saw.
    revision: int = 1
    addons: tuple[SubscriptionAddon, ...] = ()
    # Set by the system, not the user (OpenMeter's Subscription.annotations): a plan change links
    # the two subscriptions (PREVIOUS_ANNOTATION, SUPERSEDING_ANNOTATION).
    annotations: dict[str, str] = field(default_factory=dict)

    def status(self, at: datetime) -> SubscriptionStatus:
        if at < self.active_from:
            return "scheduled"
        if self.active_to is None:
            return "active"
        if at < self.active_to:
            return "canceled"
        return "inactive"

    def with_spec(self, spec: SubscriptionSpec, at: datetime) -> Subscription:
        return replace(
            self,
            spec=spec,
            active_from=spec.active_from,
            active_to=spec.active_to,
            updated_at=at,
            revision=self.revision + 1,
        )


def replaced_chain(subscription: Subscription, customers_subscriptions: list[Subscription]) -> list[Subscription]:
    """The subscriptions plan changes replaced on the way to `subscription`, the latest first (its
    PREVIOUS_ANNOTATION, that one's, and so on), found among its customer's subscriptions (deleted
    ones too: what their issued invoices charged stays charged). A link to a subscription not among
    them, or back into the chain, ends it."""
    by_id = {s.id: s for s in customers_subscriptions}
    chain: list[Subscription] = []
    seen = {subscription.id}
    previous = subscription.annotations.get(PREVIOUS_ANNOTATION)
    while previous is not None and previous not in seen and previous in by_id:
        seen.add(previous)
        chain.append(by_id[previous])
        previous = by_id[previous].annotations.get(PREVIOUS_ANNOTATION)
    return chain


@dataclass(frozen=True, slots=True)
class Timing:
    """`immediate`, `next_billing_cycle`, or an explicit time (OpenMeter's SubscriptionTiming)."""

    enum: str | None = None
    at: datetime | None = None

    @classmethod
    def parse(cls, value: str | None, field_name: str = "timing", default: str | None = "immediate") -> Timing:
        text = (value or "").strip()
        if not text:
            if default is None:
                raise ValidationError.single(field_name, "timing is required", "required")
            return cls(enum=default)
        if text in TIMING_ENUMS:
            return cls(enum=text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError.single(
                field_name, "must be immediate, next_billing_cycle or an RFC 3339 time", "invalid_timing"
            ) from None
        if parsed.tzinfo is None:
            raise ValidationError.single(field_name, "a time must carry its offset (e.g. Z)", "invalid_timing")
        return cls(at=parsed)


@dataclass(frozen=True, slots=True)
class PlanSelector:
    key: str
    version: int | None = None


@dataclass(frozen=True, slots=True)
class CreateSubscriptionInput:
    namespace: str
    plan: PlanSelector | None
    customer_id: str | None = None
    customer_key: str | None = None
    timing: Timing = field(default_factory=lambda: Timing(enum="immediate"))
    billing_anchor: datetime | None = None
    starting_phase: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    settlement_mode: str | None = None
    # OpenMeter's customPlan: a plan given inline (its JSON), instead of `plan`.
    custom_plan: dict[str, Any] | None = None
    cost_basis_mode: str | None = None

    def validate(self) -> None:
        problems = Violations()
        if not self.customer_id and not self.customer_key:
            problems.add("customerId", "customerId or customerKey is required", "required")
        if (self.plan is None) == (self.custom_plan is None):
            problems.add("plan", "give either plan {key, version?} or customPlan", "required")
        elif self.plan is not None and not self.plan.key:
            problems.add("plan.key", "the plan's key is required", "required")
        # An empty name is no name: the subscription takes the plan's (OpenMeter's CoalesceOrEmpty).
        if self.name is not None and len(self.name) > MAX_NAME:
            problems.add("name", f"at most {MAX_NAME} characters", "invalid_length")
        if self.description is not None and len(self.description) > MAX_DESCRIPTION:
            problems.add("description", f"at most {MAX_DESCRIPTION} characters", "invalid_length")
        _check_settlement_mode(self.settlement_mode, problems)
        _check_cost_basis_mode(self.cost_basis_mode, problems)
        if self.billing_anchor is not None and self.billing_anchor.tzinfo is None:
            problems.add("billingAnchor", "must carry its offset", "invalid_time")
        problems.raise_if_any()


def _check_cost_basis_mode(mode: str | None, problems: Violations) -> None:
    if mode is not None and mode not in COST_BASIS_MODES:
        problems.add("costBasisMode", f"must be one of {', '.join(COST_BASIS_MODES)}", "invalid_value")


def _check_settlement_mode(mode: str | None, problems: Violations) -> None:
    if mode is not None and mode not in SETTLEMENT_MODES:
        problems.add("settlementMode", f"must be one of {', '.join(SETTLEMENT_MODES)}", "invalid_value")


@dataclass(frozen=True, slots=True)
class ChangeSubscriptionInput:
    """Change to another plan (`change`) or to another version of the same plan (`migrate`)."""

    namespace: str
    subscription_id: str
    plan: PlanSelector | None
    timing: Timing
    billing_anchor: datetime | None = None
    starting_phase: str | None = None
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None
    custom_plan: dict[str, Any] | None = None
    # None: the new plan's (OpenMeter's change and migrate build the subscription from the plan).
    settlement_mode: str | None = None
    # None: dynamic, OpenMeter's default (migrate passes the subscription's own).
    cost_basis_mode: str | None = None

    def validate(self) -> None:
        problems = Violations()
        _check_settlement_mode(self.settlement_mode, problems)
        _check_cost_basis_mode(self.cost_basis_mode, problems)
        problems.raise_if_any()


@dataclass(frozen=True, slots=True)
class ManagedEntitlement:
    """An entitlement a subscription item should have: what reconciliation compares and creates."""

    subscription_id: str
    item_id: str
    feature_key: str
    # The item's rate card: its entitlement template (and the cadence a usage period defaults to).
    rate_card: Any
    active_from: datetime
    active_to: datetime | None
    # The subscription's billing anchor: a usage period restarts with each billing period.
    billing_anchor: datetime
    # Its phase's start, where usage is measured from: a version replacing another mid-period
    # counts the period's usage so far (one allowance per period, not one per edit).
    measure_usage_from: datetime
    # How many of the rate card the item holds (an add-on bought several times): each one grants
    # its issueAfterReset.
    quantity: Decimal = Decimal(1)
