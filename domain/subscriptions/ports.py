"""What subscriptions need from storage, the catalog, customers and entitlements."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from domain.entitlements.recurrence import IsoDuration
from domain.subscriptions.addons import AddonOffer
from domain.subscriptions.models import ManagedEntitlement, PlanRef, ProRating, Subscription
from domain.subscriptions.timeline import TimelineRateCard


@dataclass(frozen=True, slots=True)
class PlanPhaseView:
    key: str
    name: str
    description: str | None
    duration: IsoDuration | None
    rate_cards: tuple[TimelineRateCard, ...]


@dataclass(frozen=True, slots=True)
class PlanView:
    """A published plan as a subscription starts from it (read from the catalog)."""

    ref: PlanRef | None  # None: a custom plan, given inline at subscription time
    name: str
    description: str | None
    currency: str
    billing_cadence: IsoDuration
    pro_rating: ProRating
    settlement_mode: str
    phases: tuple[PlanPhaseView, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)


class PlanSource(Protocol):
    async def active_plan(self, namespace: str, key: str, version: int | None) -> PlanView:
        """The plan to subscribe to: the version asked for (if published) or the active one.

        Raises NotFoundError for an unknown key and ValidationError for a plan with no active
        version."""
        ...

    async def custom_plan(self, namespace: str, body: dict[str, Any]) -> PlanView:
        """An inline plan (OpenMeter's customPlan), validated as publish validates a plan."""
        ...

    async def check_rate_card(self, namespace: str, rate_card: TimelineRateCard, path: str) -> None:
        """A rate card an edit adds: ValidationError (fields under `path`) when its feature does
        not exist, is archived or does not fit it, as publish checks a plan's rate cards."""
        ...


class AddonSource(Protocol):
    async def offer(self, namespace: str, plan: PlanRef, addon_id: str, purchase: bool = True) -> AddonOffer:
        """The add-on as the plan version offers it. NotFoundError for an unknown add-on;
        ValidationError when the plan does not offer it, or for a `purchase` when it is not
        published (a version already bought stays changeable after a newer one archived it)."""
        ...


class RateCardTerms(Protocol):
    """The catalog's answers about a rate card that subscriptions act on."""

    def feature_key(self, rate_card: TimelineRateCard) -> str | None: ...

    def is_billable(self, rate_card: TimelineRateCard) -> bool:
        """Whether the rate card has a price (a free one bills nothing, in no currency)."""
        ...

    def entitlement_template(self, rate_card: TimelineRateCard) -> Any | None: ...

    def to_json(self, rate_card: TimelineRateCard, quantity: Decimal = Decimal(1)) -> dict[str, Any]:
        """OpenMeter's JSON, defaults resolved (what the API shows); a flat price `quantity` times
        (an add-on's item, bought that many times)."""
        ...

    def to_storage(self, rate_card: TimelineRateCard) -> dict[str, Any]:
        """The JSON stored in a spec: `from_json` reads it back equal."""
        ...

    def from_json(self, data: dict[str, Any]) -> TimelineRateCard: ...

    def cadence_aligned(self, rate_card: TimelineRateCard, billing_cadence: IsoDuration) -> bool:
        """Whether a billable rate card's cadence aligns with the subscription's billing cadence
        (as publishing a plan requires: one divides the other)."""
        ...


class SubscriptionRepository(Protocol):
    async def create(self, subscription: Subscription) -> None:
        """Insert; ConflictError(only_single_subscription_allowed_per_customer_at_a_time) when it
        would overlap another live subscription of the customer (the database decides)."""
        ...

    async def update(self, subscription: Subscription, expected_revision: int) -> None:
        """Compare-and-set on the revision: ConflictError when someone changed it meanwhile, and the
        same overlap conflict as create."""
        ...

    async def replace_pair(self, current: Subscription, current_revision: int, successor: Subscription) -> None:
        """End `current` and insert `successor` in one transaction (change, migrate)."""
        ...

    async def get(self, namespace: str, subscription_id: str) -> Subscription | None: ...

    async def list_for_customers(self, namespace: str, customer_ids: Sequence[str]) -> list[Subscription]:
        """These customers' subscriptions, deleted ones too."""
        ...

    async def list_changed_since(self, namespace: str | None, after: datetime) -> list[Subscription]: ...

    async def list_billable(self, ended_after: datetime) -> list[Subscription]:
        """Every namespace's live (not deleted) subscriptions that have not ended by `ended_after`,
        and those deleted after it (a sync takes their lines away: a pass repairs a lost one)."""
        ...

    async def customer_ids_with_plan(self, namespace: str, plan_key: str, at: datetime) -> set[str]: ...

    async def list_in_force(self, namespace: str, customer_ids: Sequence[str], at: datetime) -> list[Subscription]:
        """The live subscriptions of these customers that are in force at `at` (started, not ended)."""
        ...

    async def has_live(self, namespace: str, customer_id: str, at: datetime) -> bool: ...

    async def list_live(self, namespace: str, at: datetime) -> list[Subscription]:
        """The namespace's subscriptions (not deleted) in force at `at` or scheduled after it."""
        ...

    async def delete(self, namespace: str, subscription_id: str, at: datetime) -> int:
        """Marks the subscription deleted at `at` (a new revision); returns that revision."""
        ...

    async def mark_entitlements_reconciled(self, namespace: str, subscription_id: str, revision: int) -> None:
        """Records that the managed entitlements match `revision` (no-op once a later one is stored)."""
        ...

    async def list_entitlements_pending(self, changed_before: datetime, limit: int) -> list[Subscription]:
        """Subscriptions, deleted ones included, whose latest revision (stored before
        `changed_before`) has not had its entitlements reconciled, oldest change first."""
        ...


class ManagedEntitlements(Protocol):
    """The entitlements service's side of subscription-managed entitlements."""

    async def managed_for(
        self, namespace: str, customer_id: str, subscription_id: str
    ) -> Sequence[ManagedEntitlementRecord]: ...

    async def create_managed(self, namespace: str, customer_id: str, wanted: ManagedEntitlement) -> str: ...

    async def end_managed(self, namespace: str, entitlement_id: str, at: datetime) -> None:
        """Set (or move) the entitlement's activeTo."""
        ...

    async def delete_managed(self, namespace: str, entitlement_id: str) -> None: ...

    def terms_of(self, wanted: ManagedEntitlement) -> Hashable | None:
        """What the entitlement made for `wanted` would grant (its type and settings, not its
        window), comparable with `ManagedEntitlementRecord.terms`; None when it cannot be told."""
        ...


@dataclass(frozen=True, slots=True)
class ManagedEntitlementRecord:
    entitlement_id: str
    subscription_id: str
    item_id: str
    feature_key: str
    active_from: datetime
    active_to: datetime | None
    # What it grants (see `ManagedEntitlements.terms_of`); None when unknown.
    terms: Hashable | None = None
