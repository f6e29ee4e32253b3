"""Subscription use cases: create, edit, cancel, change, migrate, restore, delete, and the
entitlements a subscription manages.

The spec is the truth. Every operation computes the new spec with the pure functions in
`timeline`/`edits`, stores it with a compare-and-set on the revision (one active subscription per
customer is enforced by the database, not by a read before the write), and then reconciles the
managed entitlements against the spec. Reconciliation is idempotent, and each one that finishes
marks its revision in the store: a subscription whose latest revision was never marked (the process
died, or a store failed, between the write and the end of its reconciliation) is reconciled again by
`repair_entitlements`, which the billing worker runs on each of its sync passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from ulid import ULID

from domain.catalog.models import Feature
from domain.customers.models import Customer, CustomerInput
from domain.entitlements.recurrence import IsoDuration
from domain.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from domain.subscriptions import addons as addon_ops
from domain.subscriptions import edits
from domain.subscriptions.models import (
    PREVIOUS_ANNOTATION,
    SUPERSEDING_ANNOTATION,
    ChangeSubscriptionInput,
    CreateSubscriptionInput,
    ManagedEntitlement,
    PlanSelector,
    Subscription,
    SubscriptionAddon,
    Timing,
)
from domain.subscriptions.ports import (
    AddonSource,
    ManagedEntitlementRecord,
    ManagedEntitlements,
    PlanSource,
    PlanView,
    RateCardTerms,
    SubscriptionRepository,
)
from domain.subscriptions.timeline import (
    ItemSpec,
    PhaseSpec,
    SubscriptionSpec,
    billing_period_at,
    current_phase,
    phases,
)
from domain.subscriptions.timeline import items as item_views

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
# OpenMeter lets a subscription start up to two minutes in the past (clock skew between callers).
PAST_START_TOLERANCE = timedelta(minutes=2)
SINGLE_SUBSCRIPTION = "only_single_subscription_allowed_per_customer_at_a_time"

# OpenMeter's SubscriptionStateMachine (subscription/state.go): the states each action is permitted
# in. Change and migrate cancel the current subscription first; an add-on purchase or change of
# quantity updates it. Anything else is a GenericForbiddenError (403).
_PERMITTED = {
    "update": ("active",),
    "change_addons": ("active",),
    "cancel": ("active",),
    "continue": ("canceled",),
    "delete": ("scheduled",),
}


def _permit(subscription: Subscription, now: datetime, action: str) -> None:
    status = subscription.status(now)
    if status not in _PERMITTED[action]:
        raise ForbiddenError(f"transition {action} in state {status} not allowed")


def add_durations(a: IsoDuration, b: IsoDuration) -> IsoDuration:
    return IsoDuration(
        a.years + b.years,
        a.months + b.months,
        a.weeks + b.weeks,
        a.days + b.days,
        a.hours + b.hours,
        a.minutes + b.minutes,
        a.seconds + b.seconds,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


class CustomerLookup(Protocol):
    """What subscriptions use of CustomerService: a deleted customer named by its ID is refused with
    412 (OpenMeter's subscription handlers answer "customer is deleted"), and a paid subscription
    gives a customer without a currency its own."""

    async def get_undeleted(self, namespace: str, id_or_key: str) -> Customer: ...

    async def adopt_currency(self, namespace: str, customer_id: str, currency: str) -> None: ...


class SubscriptionService:
    def __init__(
        self,
        repository: SubscriptionRepository,
        plans: PlanSource,
        customers: CustomerLookup,
        rate_cards: RateCardTerms,
        entitlements: ManagedEntitlements | None = None,
        clock: Clock = utcnow,
        addons: AddonSource | None = None,
    ) -> None:
        self._repository = repository
        self._plans = plans
        self._customers = customers
        self._rate_cards = rate_cards
        self._entitlements = entitlements
        self._addons = addons
        self._clock = clock
        # Called with the subscription after every write (the billing sync wakes up on it).
        self.listeners: list[Callable[[Subscription], None]] = []

    # -----------------------------------------------------------------------------------------
    # reads

    async def get(self, namespace: str, subscription_id: str) -> Subscription:
        found = await self._repository.get(namespace, subscription_id)
        if found is None or found.deleted_at is not None:
            raise NotFoundError("subscription", subscription_id)
        return found

    async def list_for_customer(self, namespace: str, customer_id_or_key: str) -> list[Subscription]:
        customer = await self._customers.get_undeleted(namespace, customer_id_or_key)
        subs = await self._repository.list_for_customers(namespace, [customer.id])
        return sorted((s for s in subs if s.deleted_at is None), key=lambda s: (s.active_from, s.id))

    async def in_force_by_customer(self, namespace: str, customer_ids: Sequence[str]) -> dict[str, list[Subscription]]:
        """Each of these customers' subscriptions in force now, oldest first (customers without one
        are left out): what OpenMeter's customer answers carry."""
        found: dict[str, list[Subscription]] = {}
        subs = await self._repository.list_in_force(namespace, customer_ids, self._clock())
        for sub in sorted(subs, key=lambda s: (s.active_from, s.id)):
            found.setdefault(sub.customer_id, []).append(sub)
        return found

    async def customer_ids_with_plan(self, namespace: str, plan_key: str) -> set[str]:
        return await self._repository.customer_ids_with_plan(namespace, plan_key, self._clock())

    async def has_live_subscription(self, namespace: str, customer_id: str) -> bool:
        return await self._repository.has_live(namespace, customer_id, self._clock())

    def now(self) -> datetime:
        return self._clock()

    async def guard_customer_delete(self, namespace: str, customer: Customer) -> None:
        """A customer delete guard (CustomerService.delete_guards): not while a subscription runs."""
        if await self._repository.has_live(namespace, customer.id, self._clock()):
            # OpenMeter's subscription customer validator returns a plain error: a 400, not a 409.
            raise ValidationError(
                [],
                message=f"customer {customer.id} still have active subscriptions, please cancel them before deleting the customer",
            )

    async def guard_feature_archive(self, namespace: str, feature: Feature) -> None:
        """A feature archive guard (FeatureService.archive_guards): not while a subscription in force
        or scheduled has an item of it, in any phase (OpenMeter's ArchiveFeature, a 400)."""
        for subscription in await self._repository.list_live(namespace, self._clock()):
            for phase in subscription.spec.phases:
                if any(self._rate_cards.feature_key(item.rate_card) == feature.key for item in phase.items):
                    raise ValidationError.single(
                        "feature",
                        "feature is referenced by active subscription, it cannot be archived",
                        "feature_in_use",
                    )

    async def guard_customer_update(self, namespace: str, customer: Customer, data: CustomerInput) -> None:
        """A customer update guard (CustomerService.update_guards): while a subscription is in force,
        a replacement that carries usageAttribution keeps the subject keys, in order (OpenMeter's
        subscription customer validator, whose plain error is a 400)."""
        if not data.usage_attribution_given or tuple(data.subject_keys) == tuple(customer.subject_keys):
            return
        if await self._repository.list_in_force(namespace, [customer.id], self._clock()):
            raise ValidationError([], message="cannot change subject keys for customer with active subscriptions")

    # -----------------------------------------------------------------------------------------
    # create

    async def create(self, data: CreateSubscriptionInput) -> Subscription:
        data.validate()
        now = self._clock()
        customer = await self._customers.get_undeleted(data.namespace, data.customer_id or data.customer_key or "")
        # A new subscription starts on the plan's active version: OpenMeter's create takes only the
        # plan's key (http/create.go), whatever `plan.version` says.
        selector = PlanSelector(data.plan.key) if data.plan is not None else None
        plan = await self._plan(data.namespace, selector, data.custom_plan)
        start = self._start_time(data.timing, now)
        subscription = self._from_plan(
            namespace=data.namespace,
            customer_id=customer.id,
            plan=plan,
            start=start,
            anchor=data.billing_anchor,
            starting_phase=data.starting_phase,
            name=data.name,
            description=data.description,
            metadata=data.metadata,
            settlement_mode=data.settlement_mode,
            cost_basis_mode=data.cost_basis_mode,
            now=now,
        )
        self._check_currency(customer, subscription)
        await self._repository.create(subscription)
        try:
            await self.reconcile_entitlements(subscription)
        except ConflictError:
            # The customer already has an entitlement the plan would manage: undo the subscription,
            # with the entitlements it had already created for other features.
            await self._discard(subscription, now)
            raise
        await self._adopt_currency(subscription)
        self._changed(subscription)
        return subscription

    async def _plan(self, namespace: str, selector: PlanSelector | None, custom: dict[str, Any] | None) -> PlanView:
        if custom is not None:
            return await self._plans.custom_plan(namespace, custom)
        assert selector is not None
        return await self._plans.active_plan(namespace, selector.key, selector.version)

    def _check_currency(self, customer: Customer, subscription: Subscription) -> None:
        """A subscription that bills anything bills in its customer's currency, when the customer
        has one (OpenMeter's validateCreate: 400 "currency mismatch"); a free one bills nothing."""
        if customer.currency is None or customer.currency == subscription.currency:
            return
        if any(
            self._rate_cards.is_billable(item.rate_card) for phase in subscription.spec.phases for item in phase.items
        ):
            raise ValidationError.single(
                "currency",
                f"currency mismatch: the customer is billed in {customer.currency}, the plan in "
                f"{subscription.currency}",
                "currency_mismatch",
            )

    async def _adopt_currency(self, subscription: Subscription) -> None:
        """A stored subscription that bills anything gives its customer, when the customer has no
        currency, the subscription's (OpenMeter's updateCustomerCurrencyIfNotSet, after a create
        or an update): from then on `_check_currency` holds every subscription to it."""
        if subscription.deleted_at is None and any(
            self._rate_cards.is_billable(item.rate_card) for phase in subscription.spec.phases for item in phase.items
        ):
            await self._customers.adopt_currency(
                subscription.namespace, subscription.customer_id, subscription.currency
            )

    def _start_time(self, timing: Timing, now: datetime) -> datetime:
        if timing.enum == "immediate":
            return now
        if timing.enum == "next_billing_cycle":
            raise ValidationError.single(
                "timing", "a new subscription has no billing cycle yet: use immediate or a time", "invalid_timing"
            )
        assert timing.at is not None
        start = timing.at.astimezone(UTC)
        if start < now - PAST_START_TOLERANCE:
            raise ValidationError.single(
                "timing", "a subscription cannot start more than two minutes in the past", "invalid_timing"
            )
        return start

    def _from_plan(
        self,
        *,
        namespace: str,
        customer_id: str,
        plan: PlanView,
        start: datetime,
        anchor: datetime | None,
        starting_phase: str | None,
        name: str | None,
        description: str | None,
        metadata: dict[str, str],
        settlement_mode: str | None,
        now: datetime,
        cost_basis_mode: str | None = None,
    ) -> Subscription:
        plan_phases = list(plan.phases)
        if starting_phase is not None:
            keys = [p.key for p in plan_phases]
            if starting_phase not in keys:
                raise ValidationError.single(
                    "startingPhase", f"the plan has no phase {starting_phase!r}", "subscription_phase_not_found"
                )
            plan_phases = plan_phases[keys.index(starting_phase) :]
        # The anchor is kept as given: boundaries are computed from it (Jan 31 + n months stays on
        # month ends), and shown as given, as OpenMeter does.
        anchor = anchor or start
        phase_specs: list[PhaseSpec] = []
        # Each phase starts after the sum of the durations before it (ISO durations add field by
        # field, as OpenMeter's StartAfter does: P1M + P2M = P3M, clamped once at the end).
        after = IsoDuration()
        for index, phase in enumerate(plan_phases):
            items = tuple(ItemSpec(str(ULID()), card.key, card, created_at=now) for card in phase.rate_cards)
            phase_specs.append(
                PhaseSpec(str(ULID()), phase.key, phase.name, after, items, phase.description, phase.duration)
            )
            if phase.duration is None:
                if index != len(plan_phases) - 1:
                    raise ValidationError.single(
                        f"phases[{index}].duration", "only the last phase may be open-ended", "invalid_phase"
                    )
                break
            after = add_durations(after, phase.duration)
        spec = SubscriptionSpec(start, None, anchor, plan.billing_cadence, tuple(phase_specs))
        edits.validate_spec(spec)
        return Subscription(
            id=str(ULID()),
            namespace=namespace,
            customer_id=customer_id,
            name=name or plan.name,
            # A catalog plan's description describes the plan; a custom plan's is the
            # subscription's own (OpenMeter's create maps only the request's, or the customPlan's).
            description=description if description is not None or plan.ref is not None else plan.description,
            # A custom plan's metadata likewise (OpenMeter maps the customPlan's onto the subscription).
            metadata=dict(metadata or (plan.metadata if plan.ref is None else {})),
            plan=plan.ref,
            currency=plan.currency,
            billing_cadence=plan.billing_cadence,
            billing_anchor=anchor,
            active_from=start,
            active_to=None,
            spec=spec,
            created_at=now,
            updated_at=now,
            pro_rating=plan.pro_rating,
            settlement_mode=settlement_mode or plan.settlement_mode,
            cost_basis_mode=cost_basis_mode or "dynamic",
        )

    # -----------------------------------------------------------------------------------------
    # edits and lifecycle

    async def edit(
        self, namespace: str, subscription_id: str, operations: Sequence[edits.EditOperation], timing: Timing
    ) -> Subscription:
        if not operations:
            # OpenMeter's edit handler refuses it before looking the subscription up: 400 "missing
            # customizations" (a no-op edit is not stored).
            raise ValidationError.single("customizations", "at least one operation is required", "required")
        current = await self.get(namespace, subscription_id)
        now = self._clock()
        _permit(current, now, "update")
        if any(
            segment.quantity > 0 and (current.active_to is None or segment.active_from < current.active_to)
            for addon in current.addons
            for segment in addon.timeline
        ):
            # OpenMeter's EditRunning refuses these (403): an edit could remove or reprice the
            # add-on's items while the add-on goes on showing what was bought.
            raise ForbiddenError("subscription with addons cannot be edited")
        if timing.at is not None:
            raise ValidationError.single("timing", "edits take immediate or next_billing_cycle", "invalid_timing")
        at = now
        if timing.enum == "next_billing_cycle":
            # The end of the billing period cut at its phase (OpenMeter's ResolveForSpec); an edit
            # is made within one phase, so one whose next cycle starts another phase is refused
            # (OpenMeter's Timing.ValidateForAction).
            at = billing_period_at(current.spec, now).end
            here, there = current_phase(current.spec, now), current_phase(current.spec, at)
            if here is not None and there is not None and here.spec.key != there.spec.key:
                raise ValidationError.single(
                    "timing",
                    "cannot edit to the next billing cycle as it falls into a different phase",
                    "invalid_timing",
                )
        for index, operation in enumerate(operations):
            if not isinstance(operation, edits.AddItem):
                continue
            # The item's feature exists, is live and fits its price and template, as in a plan:
            # otherwise it bills usage of nothing and its entitlement cannot be made.
            await self._plans.check_rate_card(namespace, operation.rate_card, f"customizations[{index}].rateCard")
            # A rate card's cadence must align with the subscription's, as publishing a plan
            # requires (OpenMeter's EditRunning: SubscriptionSpec.ValidateAlignment).
            if not self._rate_cards.cadence_aligned(operation.rate_card, current.billing_cadence):
                raise ValidationError.single(
                    f"customizations[{index}].rateCard.billingCadence",
                    f"the rate card's billing cadence does not align with the subscription's "
                    f"{current.billing_cadence.iso()} (one must be a whole multiple of the other)",
                    "rate_card_billing_cadence_unaligned",
                )
        spec = edits.apply_edits(current.spec, operations, at)
        updated = current.with_spec(spec, now)
        # OpenMeter's validateUpdate checks every edit against the customer as create does.
        self._check_currency(await self._customers.get_undeleted(namespace, current.customer_id), updated)
        await self._save(updated, current)
        return updated

    def resolve_end(self, current: Subscription, timing: Timing, now: datetime, field: str = "timing") -> datetime:
        """The end time a cancel or change asks for; a custom time must be a billing boundary."""
        if timing.enum == "immediate":
            return now
        # Billing periods as the subscription bills them: a phase switch inside a period ends a
        # billing cycle too (OpenMeter's GetAlignedBillingPeriodAt), so a cancel at the next cycle
        # during a 14-day trial ends with the trial.
        if timing.enum == "next_billing_cycle":
            return billing_period_at(current.spec, max(now, current.active_from)).end
        assert timing.at is not None
        at = timing.at.astimezone(UTC)
        period = billing_period_at(current.spec, at)
        if at not in (period.start, period.end):
            raise ValidationError.single(
                field, "a custom time must fall on a billing-period boundary", "timing_not_aligned_with_billing_cadence"
            )
        if at < now:
            raise ValidationError.single(field, "cannot take effect in the past", "invalid_timing")
        return at

    async def cancel(self, namespace: str, subscription_id: str, timing: Timing) -> Subscription:
        current = await self.get(namespace, subscription_id)
        now = self._clock()
        _permit(current, now, "cancel")
        end = self.resolve_end(current, timing, now)
        if end <= current.active_from:
            raise ValidationError.single(
                "timing", "the subscription has not started: delete it instead", "subscription_not_started"
            )
        if current.active_to is not None and end >= current.active_to:
            raise ValidationError.single("timing", "the subscription already ends before that", "invalid_timing")
        updated = current.with_spec(dataclasses.replace(current.spec, active_to=end), now)
        await self._save(updated, current)
        return updated

    async def unschedule_cancelation(self, namespace: str, subscription_id: str) -> Subscription:
        current = await self.get(namespace, subscription_id)
        now = self._clock()
        _permit(current, now, "continue")
        updated = self._continued(current, now)
        await self._save(updated, current)
        return updated

    @staticmethod
    def _continued(current: Subscription, now: datetime) -> Subscription:
        """`current` without its end. A subscription that runs on indefinitely has no successor: the
        link a change made to one (deleted by a restore, or before) is dropped."""
        annotations = {k: v for k, v in current.annotations.items() if k != SUPERSEDING_ANNOTATION}
        return dataclasses.replace(
            current.with_spec(dataclasses.replace(current.spec, active_to=None), now), annotations=annotations
        )

    async def restore(self, namespace: str, subscription_id: str) -> Subscription:
        """Continue a canceled subscription indefinitely; subscriptions scheduled after it are deleted."""
        current = await self.get(namespace, subscription_id)
        now = self._clock()
        status = current.status(now)
        if status != "canceled":
            # OpenMeter's state machine permits continue only while canceled, its end still to come:
            # an ended subscription revived would bill the time between its end and now, which the
            # customer had no service for (and a running successor would have to give way).
            raise ForbiddenError(f"only a canceled subscription that has not ended can be restored (it is {status})")
        assert current.active_to is not None
        # Those start at its end or later, which is still to come: all are scheduled.
        later = [
            other
            for other in await self._repository.list_for_customers(namespace, [current.customer_id])
            if other.id != current.id and other.deleted_at is None and other.active_from >= current.active_to
        ]
        for other in later:
            # Told as a delete is: the billing sync takes away the lines it made for them.
            self._changed(await self._discard(other, now))
        updated = self._continued(current, now)
        await self._save(updated, current)
        return updated

    async def delete(self, namespace: str, subscription_id: str) -> None:
        current = await self.get(namespace, subscription_id)
        now = self._clock()
        _permit(current, now, "delete")
        self._changed(await self._discard(current, now))
        # The subscription a change scheduled this one to follow no longer has a successor
        # (OpenMeter's annotation cleanup hook, BeforeDelete).
        previous_id = current.annotations.get(PREVIOUS_ANNOTATION)
        previous = await self._repository.get(namespace, previous_id) if previous_id else None
        if previous is not None and previous.annotations.get(SUPERSEDING_ANNOTATION) == current.id:
            annotations = {k: v for k, v in previous.annotations.items() if k != SUPERSEDING_ANNOTATION}
            unlinked = dataclasses.replace(
                previous, annotations=annotations, updated_at=now, revision=previous.revision + 1
            )
            await self._save(unlinked, previous)

    async def change(self, data: ChangeSubscriptionInput, migrate: bool = False) -> tuple[Subscription, Subscription]:
        data.validate()
        current = await self.get(data.namespace, data.subscription_id)
        now = self._clock()
        plan = await self._plan(data.namespace, data.plan, data.custom_plan)
        if not migrate and data.plan is not None and data.plan.version is not None:
            # A change goes to an active version only (OpenMeter's ChangeToPlan: "plan is not
            # active" for an archived one); a migration may go to an archived one.
            active = await self._plans.active_plan(data.namespace, data.plan.key, None)
            if active.ref is None or active.ref.version != data.plan.version:
                raise ValidationError.single(
                    "plan.version",
                    f"version {data.plan.version} of plan {data.plan.key!r} is not active",
                    "plan_not_active",
                )
        if migrate:
            assert current.plan is not None and plan.ref is not None
            if plan.ref.version <= current.plan.version:
                raise ValidationError.single(
                    "targetVersion",
                    f"the subscription is on version {current.plan.version}; migrate only moves to a newer one",
                    "invalid_target_version",
                )
        _permit(current, now, "cancel")
        switch = self.resolve_end(current, data.timing, now)
        if current.active_to is not None and switch >= current.active_to:
            raise ValidationError.single("timing", "the subscription ends before that", "invalid_timing")
        successor = self._from_plan(
            namespace=data.namespace,
            customer_id=current.customer_id,
            plan=plan,
            start=switch,
            anchor=data.billing_anchor or current.billing_anchor,
            starting_phase=data.starting_phase,
            name=data.name,
            description=data.description,
            # The request's, not the current subscription's (OpenMeter's change handler maps only the
            # body's metadata; migrate passes the current subscription's in `data`).
            metadata=data.metadata or {},
            settlement_mode=data.settlement_mode,
            cost_basis_mode=data.cost_basis_mode,
            now=now,
        )
        # The next subscription is created as any other (OpenMeter's ChangeToPlan: CreateFromPlan).
        self._check_currency(await self._customers.get_undeleted(data.namespace, current.customer_id), successor)
        # Each names the other, as OpenMeter's ChangeToPlan annotates them.
        successor = dataclasses.replace(successor, annotations={PREVIOUS_ANNOTATION: current.id})
        ended = dataclasses.replace(
            current.with_spec(dataclasses.replace(current.spec, active_to=switch), now),
            annotations={**current.annotations, SUPERSEDING_ANNOTATION: successor.id},
        )
        await self._repository.replace_pair(ended, current.revision, successor)
        try:
            await self.reconcile_entitlements(ended)
            await self.reconcile_entitlements(successor)
        except ConflictError:
            # An entitlement in the way of the new plan refuses the change, as `_save` refuses an
            # edit: the successor goes and the current subscription runs on as it was.
            await self._discard(successor, now)
            await self._undo(ended, current)
            raise
        await self._adopt_currency(successor)
        self._changed(ended)
        self._changed(successor)
        return ended, successor

    # -----------------------------------------------------------------------------------------
    # add-ons

    def _addon_time(self, current: Subscription, timing: Timing, now: datetime) -> datetime:
        if timing.enum == "immediate":
            return max(now, current.active_from)
        if timing.enum == "next_billing_cycle":
            # The billing period cut at its phase, as cancel's (OpenMeter's ResolveForSpec).
            return billing_period_at(current.spec, max(now, current.active_from)).end
        assert timing.at is not None
        at = timing.at.astimezone(UTC)
        if at < now - PAST_START_TOLERANCE:
            raise ValidationError.single("timing", "cannot take effect in the past", "invalid_timing")
        return at

    async def create_addon(
        self,
        namespace: str,
        subscription_id: str,
        addon_id: str,
        quantity: int,
        timing: Timing,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> tuple[Subscription, SubscriptionAddon]:
        if self._addons is None:
            raise ValidationError.single("addon", "add-ons are not available", "unsupported")
        current = await self.get(namespace, subscription_id)
        now = self._clock()
        _permit(current, now, "change_addons")
        if current.plan is None:
            raise ValidationError.single("subscriptionId", "the subscription has no plan to offer add-ons", "no_plan")
        offer = await self._addons.offer(namespace, current.plan, addon_id)
        # OpenMeter's AddAddon: an add-on the subscription has, at any quantity (0 included), is
        # changed, not bought again (the API's create does that change: see the servicer);
        # another version of it only while it is not in force.
        if any(
            a.addon_id == offer.addon_id or (a.addon_key == offer.key and a.quantity_at(now) > 0)
            for a in current.addons
        ):
            raise ConflictError(
                f"the add-on {offer.key!r} is already on the subscription: change its quantity instead",
                code="addon_already_purchased",
            )
        addon_ops.check_quantity(offer, quantity, allow_zero=False)
        at = self._addon_time(current, timing, now)
        if current.active_to is not None and at >= current.active_to:
            raise ValidationError.single("timing", "the subscription ends before that", "invalid_timing")
        addon_ops.check_phase(current.spec, offer, at)
        bought = SubscriptionAddon(
            id=str(ULID()),
            addon_id=offer.addon_id,
            addon_key=offer.key,
            addon_version=offer.version,
            instance_type=offer.instance_type,
            name=name or offer.name,
            description=description,
            metadata=dict(metadata or {}),
            timeline=addon_ops.new_timeline(quantity, at),
            created_at=now,
            updated_at=now,
        )
        spec = addon_ops.add_items(current.spec, bought.id, offer, quantity, at, lambda: str(ULID()))
        edits.validate_spec(spec)
        updated = dataclasses.replace(current.with_spec(spec, now), addons=(*current.addons, bought))
        # Stored with OpenMeter's Service.Update, whose validateUpdate checks the customer's currency.
        self._check_currency(await self._customers.get_undeleted(namespace, current.customer_id), updated)
        await self._save(updated, current)
        return updated, bought

    async def update_addon(
        self,
        namespace: str,
        subscription_id: str,
        subscription_addon_id: str,
        quantity: int | None,
        timing: Timing,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> tuple[Subscription, SubscriptionAddon]:
        if self._addons is None:
            raise ValidationError.single("addon", "add-ons are not available", "unsupported")
        current = await self.get(namespace, subscription_id)
        addon = self.find_addon(current, subscription_addon_id)
        now = self._clock()
        spec = current.spec
        timeline = addon.timeline
        if quantity is not None:
            _permit(current, now, "change_addons")
            assert current.plan is not None
            offer = await self._addons.offer(namespace, current.plan, addon.addon_id, purchase=False)
            addon_ops.check_quantity(offer, quantity, allow_zero=True)
            at = self._addon_time(current, timing, now)
            addon_ops.check_phase(spec, offer, at)
            spec = addon_ops.end_items(spec, addon.id, at, lambda: str(ULID()))
            if quantity > 0:
                spec = addon_ops.add_items(spec, addon.id, offer, quantity, at, lambda: str(ULID()))
            timeline = addon_ops.change_timeline(addon, quantity, at)
            edits.validate_spec(spec)
            # As a purchase (OpenMeter's ChangeAddonQuantity stores it with Service.Update too).
            self._check_currency(
                await self._customers.get_undeleted(namespace, current.customer_id), current.with_spec(spec, now)
            )
        changed = dataclasses.replace(
            addon,
            timeline=timeline,
            name=name if name is not None else addon.name,
            description=description if description is not None else addon.description,
            metadata=dict(metadata) if metadata is not None else addon.metadata,
            updated_at=now,
        )
        updated = dataclasses.replace(
            current.with_spec(spec, now), addons=tuple(changed if a.id == addon.id else a for a in current.addons)
        )
        await self._save(updated, current)
        return updated, changed

    @staticmethod
    def find_addon(subscription: Subscription, subscription_addon_id: str) -> SubscriptionAddon:
        for addon in subscription.addons:
            if addon.id == subscription_addon_id:
                return addon
        raise NotFoundError("subscription add-on", subscription_addon_id)

    # -----------------------------------------------------------------------------------------
    # managed entitlements

    def expected_entitlements(self, subscription: Subscription) -> list[ManagedEntitlement]:
        if subscription.deleted_at is not None:
            return []
        wanted: list[ManagedEntitlement] = []
        for phase in phases(subscription.spec):
            for item in item_views(subscription.spec, phase):
                template = self._rate_cards.entitlement_template(item.spec.rate_card)
                feature = self._rate_cards.feature_key(item.spec.rate_card)
                if item.is_empty or template is None or feature is None:
                    continue
                wanted.append(
                    ManagedEntitlement(
                        subscription.id,
                        item.spec.id,
                        feature,
                        item.spec.rate_card,
                        item.active_from,
                        item.active_to,
                        subscription.billing_anchor,
                        phase.active_from,
                        item.spec.quantity,
                    )
                )
        return wanted

    async def reconcile_entitlements(self, subscription: Subscription) -> None:
        """Make the customer's managed entitlements match the spec: create what is missing, end what
        ended, remove what never started. Idempotent."""
        if self._entitlements is None:
            return
        await self._reconcile(subscription)
        await self._repository.mark_entitlements_reconciled(
            subscription.namespace, subscription.id, subscription.revision
        )

    async def repair_entitlements(self, settle: timedelta = timedelta(minutes=1), limit: int = 500) -> int:
        """Reconciles the subscriptions whose last write did not finish reconciling its entitlements
        (a customer keeping access after a cancel, or never getting it after a create); returns how
        many were repaired. Only writes older than `settle` are taken: a younger one may still be
        reconciling in the request that made it, and two reconciliations of one subscription at once
        could both create the same entitlement."""
        if self._entitlements is None:
            return 0
        repaired = 0
        for subscription in await self._repository.list_entitlements_pending(self._clock() - settle, limit):
            try:
                await self.reconcile_entitlements(subscription)
            except ConflictError as exc:
                # The customer's own entitlement is in the way of one the subscription manages (the
                # write that would have been refused for it died before its undo): someone must
                # choose between them, and the subscription is tried again on each pass until then.
                log.warning(
                    "a subscription's entitlements cannot be reconciled",
                    namespace=subscription.namespace,
                    subscription=subscription.id,
                    error=str(exc),
                )
                continue
            except Exception:
                # Not held against the others (they are listed oldest first, this one among them):
                # it is tried again on the next pass.
                log.exception(
                    "reconciling a subscription's entitlements failed",
                    namespace=subscription.namespace,
                    subscription=subscription.id,
                )
                continue
            repaired += 1
        return repaired

    async def _reconcile(self, subscription: Subscription) -> None:
        assert self._entitlements is not None
        now = self._clock()
        namespace = subscription.namespace
        # An item version is one entitlement window: matched by feature and start.
        existing = {
            (r.feature_key, r.active_from): r
            for r in await self._entitlements.managed_for(namespace, subscription.customer_id, subscription.id)
        }
        wanted = {(w.feature_key, w.active_from): w for w in self.expected_entitlements(subscription)}
        # Ends first, so a replacement version can start where the previous one stops; windows that
        # give way (removed, or taken back) before any end moves later into the time they held.
        recreate: set[tuple[str, datetime]] = set()
        later_ends: list[tuple[str, datetime]] = []
        for key, record in existing.items():
            want = wanted.get(key)
            if want is None:
                if record.active_from >= now:
                    await self._entitlements.delete_managed(namespace, record.entitlement_id)
                elif record.active_to is None or record.active_to > now:
                    await self._entitlements.end_managed(namespace, record.entitlement_id, now)
            elif (record.active_to is None or record.active_to > now) and not self._grants_as_wanted(record, want):
                # Same feature and start, other terms (an add-on's quantity or an item changed
                # before the version started): replaced, as OpenMeter's sync replaces an
                # entitlement that differs from its item's (subscription/service/syncnode.go).
                # A window already over is history, and is not made again (see below).
                await self._entitlements.delete_managed(namespace, record.entitlement_id)
                recreate.add(key)
            elif want.active_to is None and record.active_to is not None:
                # An end that was taken back (unscheduled cancelation, restore): an entitlement's end
                # can only move, not disappear, so the window is replaced by an open one.
                await self._entitlements.delete_managed(namespace, record.entitlement_id)
                recreate.add(key)
            elif want.active_to != record.active_to:
                assert want.active_to is not None
                if record.active_to is not None and want.active_to > record.active_to:
                    later_ends.append((record.entitlement_id, want.active_to))
                else:
                    await self._entitlements.end_managed(namespace, record.entitlement_id, want.active_to)
        for entitlement_id, end in later_ends:
            await self._entitlements.end_managed(namespace, entitlement_id, end)
        for key, want in wanted.items():
            if key in existing and key not in recreate:
                continue
            if want.active_to is not None and want.active_to <= now:
                continue  # ended before it was ever managed (e.g. a replayed past version): nothing to grant
            await self._entitlements.create_managed(namespace, subscription.customer_id, want)

    def _grants_as_wanted(self, record: ManagedEntitlementRecord, want: ManagedEntitlement) -> bool:
        """Whether the entitlement grants what its item version wants (unknown terms: assumed so)."""
        assert self._entitlements is not None
        terms = self._entitlements.terms_of(want)
        return record.terms is None or terms is None or record.terms == terms

    async def _save(self, updated: Subscription, current: Subscription) -> None:
        """Store a change (compare-and-set on the revision), then bring its entitlements in line.

        An entitlement in the way (the customer's own for a feature the change would manage) refuses
        the change: the previous spec is stored again, as the next revision, with its entitlements."""
        await self._repository.update(updated, current.revision)
        try:
            await self.reconcile_entitlements(updated)
        except ConflictError:
            await self._undo(updated, current)
            raise
        await self._adopt_currency(updated)
        self._changed(updated)

    async def _discard(self, subscription: Subscription, at: datetime) -> Subscription:
        """Deletes the subscription (a new revision) and removes the entitlements it manages."""
        revision = await self._repository.delete(subscription.namespace, subscription.id, at)
        deleted = dataclasses.replace(subscription, deleted_at=at, updated_at=at, revision=revision)
        await self.reconcile_entitlements(deleted)
        return deleted

    async def _undo(self, stored: Subscription, previous: Subscription) -> None:
        """Stores `previous` again, as the revision after `stored`, with its entitlements (a
        compensating write: the change and its entitlements are not one transaction)."""
        undone = dataclasses.replace(previous, revision=stored.revision + 1, updated_at=stored.updated_at)
        await self._repository.update(undone, stored.revision)
        await self.reconcile_entitlements(undone)

    def _changed(self, subscription: Subscription) -> None:
        for listener in self.listeners:
            listener(subscription)
