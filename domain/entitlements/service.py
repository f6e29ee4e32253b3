"""Entitlement use cases: create, override, delete, grants, reset, and the real-time balance.

A metered entitlement's value is a burn-down run (engine.py) over usage read from the event store
through the feature's meter, filtered to the customer's subjects and the feature's group-by
filters. Runs resume from the newest balance snapshot (a cache) when one exists; snapshots are only
taken at instants older than the grace period, so late events within it are always counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ulid import ULID

from domain.catalog.models import Feature
from domain.catalog.service import FeatureService
from domain.customers.models import Customer
from domain.customers.service import CustomerService, SubjectService
from domain.entitlements.cache import ValueCache
from domain.entitlements.engine import (
    RunInput,
    RunResult,
    Segment,
    Snapshot,
    UsageMode,
    UsageWindow,
    breakpoints,
    next_change,
    run,
)
from domain.entitlements.events import BalanceSnapshotEvent, EntitlementResetEvent
from domain.entitlements.grants import ZERO
from domain.entitlements.models import (
    DEFAULT_ISSUE_PRIORITY,
    ISSUE_AFTER_RESET_ANNOTATION,
    SUBSCRIPTION_ID_ANNOTATION,
    Entitlement,
    EntitlementInput,
    EntitlementType,
    EntitlementValue,
    GrantInput,
    HistoryInput,
    ListEntitlementsInput,
    ListGrantsInput,
    ResetInput,
    StoredGrant,
    UsageReset,
    ValidatedGrant,
    interval_name,
)
from domain.entitlements.ports import EntitlementRepository, GrantRepository, SnapshotRepository
from domain.entitlements.recurrence import MINUTE, add_months_no_overflow, ceil_minute, ensure_utc, floor_minute
from domain.errors import ConflictError, ForbiddenError, NotFoundError, PreconditionFailedError, ValidationError
from domain.events import DomainEvents
from domain.metering.models import Aggregation, Meter
from domain.metering.ports import EventStore, MeterRepository
from domain.metering.query import MeterQueryInput, allowed_time_zones
from domain.pagination import PageMode, SortOrder
from domain.wiretime import rfc3339

Clock = Callable[[], datetime]
DEFAULT_GRACE_PERIOD = timedelta(days=1)
# Fixed-length window sizes; DAY and MONTH follow the calendar of the window time zone instead.
HISTORY_WINDOWS = {"MINUTE": timedelta(minutes=1), "HOUR": timedelta(hours=1), "DAY": timedelta(days=1)}
# OpenMeter's history takes its meter WindowSize enum, MONTH included.
HISTORY_WINDOW_SIZES = ("MINUTE", "HOUR", "DAY", "MONTH")
MAX_HISTORY_WINDOWS = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value)) if value == value else ZERO


@dataclass(frozen=True, slots=True)
class MeteredContext:
    """What a balance computation reads besides usage. Read for a run until `until`, it also holds
    the newest balance snapshot at or before it (cumulative meters only), read with the grants."""

    entitlement: Entitlement
    feature: Feature
    meter: Meter
    customer: Customer
    grants: tuple[StoredGrant, ...]
    until: datetime | None = None
    snapshot: Snapshot | None = None
    # The entitlement's balance inputs revision read with the grants: when it differs from
    # `entitlement.inputs_revision`, the entitlement was read before a grant, void or reset.
    inputs_revision: int = 0

    @property
    def mode(self) -> UsageMode:
        return UsageMode.LATEST if self.meter.aggregation is Aggregation.LATEST else UsageMode.CUMULATIVE


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    start: datetime
    end: datetime
    usage: Decimal
    balance_at_start: Decimal


@dataclass(frozen=True, slots=True)
class History:
    windows: tuple[HistoryWindow, ...]
    segments: tuple[Segment, ...]


class UsageReader:
    """Reads meter values for the engine's windows: all of a run's windows in one event-store scan."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def _query(self, ctx: MeteredContext, since: datetime | None, until: datetime | None, **extra: Any) -> Any:
        customer = ctx.customer
        return MeterQueryInput(
            from_=since,
            to=until,
            filter_customer_ids=[customer.id],
            advanced_filters=dict(ctx.feature.filters),
            **extra,
        ).validate(ctx.meter, {customer.id: customer.usage_subjects})

    async def total(self, ctx: MeteredContext, since: datetime, until: datetime) -> Decimal:
        if since >= until:
            return ZERO
        rows = await self._store.query_meter(ctx.meter, self._query(ctx, since, until))
        return sum((_decimal(row.value) for row in rows), ZERO)

    async def windows(
        self, ctx: MeteredContext, windows: Sequence[UsageWindow], tail_from: datetime | None = None
    ) -> tuple[dict[datetime, Decimal], datetime | None]:
        """Each window's meter value, and the first stored event time at or after `tail_from`."""
        if not windows and tail_from is None:
            return {}, None
        lower = min([w.since for w in windows] + ([tail_from] if tail_from is not None else []))
        query = self._query(ctx, lower, None)
        values, first = await self._store.query_meter_windows(
            ctx.meter, query, [(w.since, w.until) for w in windows], tail_from
        )
        out: dict[datetime, Decimal] = {}
        for w, value in zip(windows, values, strict=True):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"meter query produced a non-finite value: {value}")
            out[w.until] = ZERO if value is None else _decimal(value)
        return out, first

    async def windowed(
        self, ctx: MeteredContext, since: datetime, until: datetime, window_size: str, tz: str
    ) -> dict[datetime, Decimal]:
        query = self._query(ctx, since, until, window_size=window_size, window_time_zone=tz)
        rows = await self._store.query_meter(ctx.meter, query)
        out: dict[datetime, Decimal] = {}
        for row in rows:
            out[row.window_start] = out.get(row.window_start, ZERO) + _decimal(row.value)
        return out


class EntitlementService:
    def __init__(
        self,
        entitlements: EntitlementRepository,
        grants: GrantRepository,
        snapshots: SnapshotRepository,
        customers: CustomerService,
        subjects: SubjectService,
        features: FeatureService,
        meters: MeterRepository,
        store: EventStore,
        events: DomainEvents | None = None,
        clock: Clock = utcnow,
        grace_period: timedelta = DEFAULT_GRACE_PERIOD,
    ) -> None:
        self._entitlements = entitlements
        self._grants = grants
        self._snapshots = snapshots
        self.customers = customers
        self.subjects = subjects
        self.features = features
        self._meters = meters
        self._usage = UsageReader(store)
        self._events = events
        self._clock = clock
        self.grace_period = grace_period
        # Called with (namespace, entitlement id) after grants, voids and resets (the balance worker).
        self.on_change: Callable[[str, str], Awaitable[None]] | None = None
        # Current values and resolved look-ups; only set where this process sees every change
        # (see cache.py and server/wiring/entitlements.py).
        self.cache: ValueCache | None = None
        # Called after entitlement writes here (the wiring announces them to other processes).
        self.listeners: list[Callable[[], None]] = []

    def entities_changed(self) -> None:
        """A customer, entitlement, feature or meter was written in this process."""
        if self.cache is not None:
            self.cache.entities_changed()
        for listener in self.listeners:
            listener()

    # --- owners -------------------------------------------------------------------------------

    async def _remembered(self, key: tuple[str, ...], read: Callable[[], Awaitable[Any]]) -> Any:
        """`read()`, kept as a cached look-up (dropped on any customer, entitlement, feature or
        meter write, in this process or, through the announcements, in any other) when the cache is on."""
        cache = self.cache
        if cache is None:
            return await read()
        found = cache.lookup(key)
        if found is None:
            mark = cache.mark()
            found = await read()
            cache.remember(key, mark, found)
        return found

    async def customer(self, namespace: str, id_or_key: str) -> Customer:
        customer: Customer = await self._remembered(
            ("customer", namespace, id_or_key), lambda: self.customers.get_undeleted(namespace, id_or_key)
        )
        return customer

    async def subject_customer(self, namespace: str, subject_key: str) -> Customer:
        """The customer a v1 subject-scoped call acts for (the one its usage is attributed to)."""
        customer = await self.customers.by_subject(namespace, subject_key)
        if customer is not None:
            return customer
        if await self.subjects.find(namespace, subject_key) is not None:
            raise PreconditionFailedError(f"customer not found for subject {subject_key}")
        raise NotFoundError("subject", subject_key)

    async def guard_customer_delete(self, namespace: str, customer: Customer) -> None:
        """CustomerService delete guard: a customer with an entitlement active now cannot be
        deleted (OpenMeter's entitlement customer validator, 409). Scheduled ones that have not
        started, or have ended, do not count."""
        now = self._clock()
        items = await self._entitlements.list_entitlements(namespace, ListEntitlementsInput().validate([customer.id]))
        if any(e.active_at(now) for e in items):
            raise ConflictError(
                f"customer {customer.id} still has active entitlements, please remove them before deleting the customer"
            )

    async def guard_meter_delete(self, namespace: str, meter: Meter) -> None:
        """MeterService delete guard: an entitlement active now keeps the meter of its feature,
        archived features included (OpenMeter's DeleteMeter, HasEntitlementForMeter: 409)."""
        features = {f.id for f in await self.features.of_meter(namespace, meter, include_archived=True)}
        if not features:
            return
        now = self._clock()
        items = await self._entitlements.list_entitlements(namespace, ListEntitlementsInput().validate())
        if any(e.feature_id in features and e.active_at(now) for e in items):
            raise ConflictError("meter has active entitlements and cannot be deleted")

    # --- entitlements -------------------------------------------------------------------------

    async def create(self, namespace: str, customer: Customer, data: EntitlementInput) -> Entitlement:
        """The public create: active from now until deleted (OpenMeter ignores activeFrom/To here)."""
        return await self._create(namespace, customer, data, replaces=None)

    async def create_managed(
        self,
        namespace: str,
        customer: Customer,
        data: EntitlementInput,
        *,
        subscription_id: str,
        active_from: datetime,
        active_to: datetime | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> Entitlement:
        """An entitlement owned by a subscription, active in [active_from, active_to).

        It carries the annotation {"subscription.id": subscription_id} (plus any `annotations`
        given, e.g. the subscription item); the public API refuses to delete, override or grant to
        it (403). See the module docstring.
        """
        if not subscription_id:
            raise ValidationError.single("subscriptionId", "required", "required")
        return await self._create(
            namespace,
            customer,
            data,
            replaces=None,
            active_from=active_from,
            active_to=active_to,
            annotations={**(annotations or {}), SUBSCRIPTION_ID_ANNOTATION: subscription_id},
        )

    async def managed_for(self, namespace: str, customer_id: str, subscription_id: str) -> list[Entitlement]:
        """The customer's live (not deleted) entitlements a subscription manages, by active_from."""
        items = await self._entitlements.list_entitlements(namespace, ListEntitlementsInput().validate([customer_id]))
        found = [e for e in items if e.annotations.get(SUBSCRIPTION_ID_ANNOTATION) == subscription_id]
        return sorted(found, key=lambda e: (e.active_from, e.id))

    async def end_managed(self, namespace: str, entitlement_id: str, at: datetime) -> Entitlement:
        """Ends a subscription-managed entitlement's active window at `at` (moving an earlier end
        too). `at` may not precede its active_from (equal: it never becomes active)."""
        entitlement = await self.get(namespace, entitlement_id)
        if entitlement.deleted_at is not None:
            raise NotFoundError("entitlement", entitlement_id)
        if not entitlement.subscription_managed:
            raise ForbiddenError(f"entitlement {entitlement_id} is not managed by a subscription")
        at = _utc(at, "activeTo")
        if at < entitlement.active_from:
            raise ValidationError.single("activeTo", "activeTo cannot be before activeFrom", "invalid_range")
        await self._entitlements.set_active_to(namespace, entitlement_id, at, self._clock())
        self.entities_changed()
        await self._changed(namespace, entitlement_id)
        return await self.get(namespace, entitlement_id)

    async def delete_managed(self, namespace: str, entitlement_id: str) -> None:
        """Deletes a subscription-managed entitlement (what the public delete refuses)."""
        entitlement = await self.get(namespace, entitlement_id)
        if not entitlement.subscription_managed:
            raise ForbiddenError(f"entitlement {entitlement_id} is not managed by a subscription")
        await self._delete(namespace, entitlement)

    async def _create(
        self,
        namespace: str,
        customer: Customer,
        data: EntitlementInput,
        replaces: Entitlement | None,
        *,
        active_from: datetime | None = None,
        active_to: datetime | None = None,
        annotations: dict[str, Any] | None = None,
    ) -> Entitlement:
        now = self._clock()
        start = now if active_from is None else _utc(active_from, "activeFrom")
        if replaces is not None:
            # The old one ends where the new one starts: that must be inside its window
            # (OpenMeter's SupersedeEntitlement).
            if start <= replaces.active_from:
                raise ValidationError.single(
                    "entitlementIdOrFeatureKey",
                    "the override must start after the entitlement it replaces starts",
                    "override_before_start",
                )
            if replaces.active_to is not None and replaces.active_to < start:
                raise ValidationError.single(
                    "entitlementIdOrFeatureKey",
                    "the entitlement to override has already ended",
                    "override_after_end",
                )
        if active_to is not None:
            active_to = _utc(active_to, "activeTo")
            if active_to < start:
                raise ValidationError.single("activeTo", "activeTo cannot be before activeFrom", "invalid_range")
        # A scheduled entitlement's defaults (usage period anchor, measureUsageFrom NOW or
        # CURRENT_PERIOD_START, the issueAfterReset grant) are taken at its start, not at creation.
        valid = data.validate(start)
        feature = await self.features.get_live(namespace, valid.feature_id or valid.feature_key or "")
        if valid.feature_id and valid.feature_key and feature.key != valid.feature_key:
            raise ValidationError.single("featureKey", "featureKey and featureId name different features")
        if valid.type is EntitlementType.METERED and feature.meter_slug is None:
            raise ValidationError.single("featureKey", f"feature {feature.key} has no meter", "feature_without_meter")
        if replaces is not None and replaces.feature_id != feature.id:
            raise ValidationError.single("featureKey", "an override must keep the feature", "feature_mismatch")
        recurrence = valid.recurrence
        entitlement = Entitlement(
            id=str(ULID()),
            namespace=namespace,
            type=valid.type,
            feature_id=feature.id,
            feature_key=feature.key,
            customer_id=customer.id,
            created_at=now,
            updated_at=now,
            active_from=start,
            active_to=active_to,
            metadata=valid.metadata,
            annotations=dict(annotations or {}),
            usage_interval=recurrence.interval if recurrence else None,
            usage_anchor=recurrence.anchor if recurrence else None,
            measure_usage_from=valid.measure_usage_from,
            is_soft_limit=valid.is_soft_limit,
            issue_after_reset=valid.issue_after_reset,
            issue_after_reset_priority=valid.issue_after_reset_priority,
            preserve_overage_at_reset=valid.preserve_overage_at_reset,
            config=valid.config,
        )
        grants: list[StoredGrant] = []
        if entitlement.metered:
            period = entitlement.current_usage_period(start)
            assert period is not None
            if valid.issue_after_reset:
                amount = valid.issue_after_reset
                grants.append(
                    self._stored_grant(
                        namespace,
                        entitlement.id,
                        ValidatedGrant(
                            amount=amount,
                            priority=valid.issue_after_reset_priority or DEFAULT_ISSUE_PRIORITY,
                            effective_at=period.start,
                            expiration=None,
                            expires_at=None,
                            max_rollover_amount=amount,
                            min_rollover_amount=amount,
                            metadata={},
                            annotations={ISSUE_AFTER_RESET_ANNOTATION: True},
                            recurrence=None,
                        ),
                        now,
                    )
                )
            for i, grant in enumerate(valid.grants):
                # Issued as create_grant issues one (OpenMeter's CreateGrant for each inline grant).
                _check_grant_in_period(grant, period.start, f"grants[{i}].effectiveAt")
                grants.append(self._stored_grant(namespace, entitlement.id, grant, now))
        await self._entitlements.create(entitlement, grants, replaces=replaces.id if replaces else None)
        self.entities_changed()
        if entitlement.metered:
            # Its customer's usage may be stored already: the balance worker computes its balance now
            # (and its notification rules see it), as OpenMeter's recalculates on an entitlement's
            # creation, rather than at the customer's next event.
            await self._changed(namespace, entitlement.id)
        return entitlement

    async def override(
        self, namespace: str, customer: Customer, id_or_feature_key: str, data: EntitlementInput
    ) -> Entitlement:
        old = await self.for_customer(namespace, customer, id_or_feature_key)
        if old.subscription_managed:
            raise ForbiddenError("entitlement is managed by subscription")
        return await self._create(namespace, customer, data, replaces=old)

    async def get(self, namespace: str, entitlement_id: str) -> Entitlement:
        entitlement = await self._entitlements.get(namespace, entitlement_id)
        if entitlement is None:
            raise NotFoundError("entitlement", entitlement_id)
        return entitlement

    def now(self) -> datetime:
        return self._clock()

    async def for_customer(
        self, namespace: str, customer: Customer, id_or_feature_key: str, at: datetime | None = None
    ) -> Entitlement:
        """A customer's entitlement by ID (in any state), or the one of the feature with that key
        that is active at `at` (default now); NotFoundError when there is none."""
        cache = self.cache
        if cache is None or at is not None:
            found, _ = await self._for_customer(namespace, customer, id_or_feature_key, at or self._clock())
            return found
        now = self._clock()
        key = ("entitlement", namespace, customer.id, id_or_feature_key)
        cached: Entitlement | None = cache.lookup(key, now)
        if cached is not None:
            return cached
        mark = cache.mark()
        found, valid_before = await self._for_customer(namespace, customer, id_or_feature_key, now)
        cache.remember(key, mark, found, valid_before)
        return found

    async def _for_customer(
        self, namespace: str, customer: Customer, id_or_feature_key: str, at: datetime
    ) -> tuple[Entitlement, datetime | None]:
        """The entitlement, and the next instant a feature-key look-up may resolve differently."""
        found = await self._entitlements.for_customer(namespace, customer.id, id_or_feature_key, at)
        for entitlement in found:
            if entitlement.id == id_or_feature_key:
                return entitlement, None
        candidates = [e for e in found if e.feature_key == id_or_feature_key]
        active = [e for e in candidates if e.active_at(at)]
        changes = [
            t for e in candidates for t in (e.active_from, e.active_to, e.deleted_at) if t is not None and t > at
        ]
        if not active:
            raise NotFoundError("entitlement", id_or_feature_key)
        return active[0], min(changes, default=None)

    async def list_entitlements(
        self, namespace: str, data: ListEntitlementsInput, customer_ids: Sequence[str] = ()
    ) -> tuple[list[Entitlement], int, PageMode, int, int]:
        query = data.validate(customer_ids)
        items = await self._entitlements.list_entitlements(namespace, query)
        if query.feature_keys_or_ids:
            wanted = set(query.feature_keys_or_ids)
            items = [e for e in items if e.feature_key in wanted or e.feature_id in wanted]
        if query.types:
            items = [e for e in items if e.type in query.types]
        if query.exclude_inactive:
            now = self._clock()
            items = [e for e in items if e.active_at(now)]
        key = (lambda e: (e.updated_at, e.id)) if query.order_by == "updatedAt" else (lambda e: (e.created_at, e.id))
        items.sort(key=key, reverse=query.order is SortOrder.DESC)
        page = query.pagination
        return page.apply(items), len(items), page.mode, page.effective_page, page.effective_page_size

    async def delete(self, namespace: str, entitlement: Entitlement) -> None:
        if entitlement.subscription_managed:
            raise ForbiddenError("entitlement is managed by subscription")
        await self._delete(namespace, entitlement)

    async def _delete(self, namespace: str, entitlement: Entitlement) -> None:
        if entitlement.deleted_at is not None:
            raise NotFoundError("entitlement", entitlement.id)
        await self._entitlements.delete(namespace, entitlement.id, self._clock())
        self.entities_changed()

    # --- grants -------------------------------------------------------------------------------

    def _stored_grant(self, namespace: str, entitlement_id: str, grant: ValidatedGrant, now: datetime) -> StoredGrant:
        return StoredGrant(
            id=str(ULID()),
            namespace=namespace,
            entitlement_id=entitlement_id,
            amount=grant.amount,
            priority=grant.priority,
            effective_at=grant.effective_at,
            expiration=grant.expiration,
            expires_at=grant.expires_at,
            max_rollover_amount=grant.max_rollover_amount,
            min_rollover_amount=grant.min_rollover_amount,
            metadata=grant.metadata,
            annotations=grant.annotations,
            recurrence=grant.recurrence,
            created_at=now,
            updated_at=now,
        )

    async def create_grant(self, namespace: str, entitlement: Entitlement, data: GrantInput) -> StoredGrant:
        if entitlement.deleted_at is not None:
            raise NotFoundError("entitlement", entitlement.id)
        if entitlement.subscription_managed:
            # OpenMeter refuses grants on subscription-managed entitlements (issue #3293).
            raise ForbiddenError("entitlement is managed by subscription")
        if not entitlement.metered:
            raise ValidationError.single(
                "entitlement", "grants are only supported on metered entitlements", "not_metered"
            )
        now = self._clock()
        valid = data.validate(now)
        period = entitlement.current_usage_period(now)
        assert period is not None
        _check_grant_in_period(valid, period.start, "effectiveAt")
        grant = self._stored_grant(namespace, entitlement.id, valid, now)
        await self._grants.create(grant)
        await self._changed(namespace, entitlement.id)
        return grant

    async def grants(
        self, namespace: str, entitlements: Sequence[Entitlement], data: ListGrantsInput
    ) -> tuple[list[StoredGrant], int, PageMode, int, int]:
        query = data.validate()
        items = await self._grants.for_entitlements(namespace, [e.id for e in entitlements], query.include_deleted)
        if not query.include_deleted:
            items = [g for g in items if g.deleted_at is None]
        key = {
            "id": lambda g: (g.id,),
            "updatedAt": lambda g: (g.updated_at, g.id),
            "effectiveAt": lambda g: (g.effective_at, g.id),
        }.get(query.order_by, lambda g: (g.created_at, g.id))
        items.sort(key=key, reverse=query.order is SortOrder.DESC)
        page = query.pagination
        return page.apply(items), len(items), page.mode, page.effective_page, page.effective_page_size

    async def void_grant(self, namespace: str, grant_id: str, at: datetime | None) -> None:
        grant = await self._grants.get(namespace, grant_id)
        if grant is None or grant.deleted_at is not None:
            raise NotFoundError("grant", grant_id)
        if grant.voided_at is not None:
            raise ValidationError.single("grantId", "grant already voided", "already_voided")
        now = self._clock()
        void_at = floor_minute(at if at is not None else now)
        if void_at > now:
            raise ValidationError.single("at", f"void time {rfc3339(void_at)} must not be in the future", "in_future")
        entitlement = await self.get(namespace, grant.entitlement_id)
        period = entitlement.current_usage_period(now)
        if period is not None and void_at < period.start:
            raise ValidationError.single(
                "at",
                f"void time {rfc3339(void_at)} is before the current usage period start {rfc3339(period.start)}",
                "before_usage_period",
            )
        await self._grants.void(namespace, grant_id, void_at)
        await self._changed(namespace, entitlement.id)

    # --- balance ------------------------------------------------------------------------------

    async def context(
        self,
        namespace: str,
        entitlement: Entitlement,
        customer: Customer | None = None,
        until: datetime | None = None,
    ) -> MeteredContext:
        """The computation's inputs; with `until`, for a run that may resume from a snapshot."""
        feature: Feature = await self._remembered(
            ("feature", namespace, entitlement.feature_id), lambda: self.features.get(namespace, entitlement.feature_id)
        )
        slug = feature.meter_slug
        if slug is None:
            raise ValidationError.single("feature", f"feature {feature.key} has no meter", "feature_without_meter")
        meter: Meter | None = await self._remembered(
            ("meter", namespace, slug), lambda: self._meters.get(namespace, slug)
        )
        if meter is None:
            raise NotFoundError("meter", slug)
        if customer is None or customer.id != entitlement.customer_id:
            customer = await self.customers.get(namespace, entitlement.customer_id)
        # Only cumulative runs resume from snapshots.
        snapshot_at = until if meter.aggregation is not Aggregation.LATEST else None
        grants, snapshot, revision = await self._grants.with_latest_snapshot(namespace, entitlement.id, snapshot_at)
        return MeteredContext(entitlement, feature, meter, customer, tuple(grants), until, snapshot, revision)

    async def run_until(self, namespace: str, ctx: MeteredContext, until: datetime, cached: bool = True) -> RunResult:
        """`cached`: resume from the context's snapshot (read by `context(..., until=until)`) and
        store a newer one when due; else a full run from the start of measurement."""
        result, _ = await self._run(namespace, ctx, until, cached)
        return result

    async def _run(
        self,
        namespace: str,
        ctx: MeteredContext,
        until: datetime,
        cached: bool = True,
        tail: bool = False,
        resume: Snapshot | None = None,
    ) -> tuple[RunResult, datetime | None]:
        """The run until `until`; with `tail`, also the first stored event time at or after `until`.
        `resume` (uncached runs only): start from this state, one an earlier run of `ctx` ended in."""
        entitlement = ctx.entitlement
        assert entitlement.measure_usage_from is not None
        start_at = entitlement.measure_usage_from
        until = max(until, start_at)
        grants = [g.engine() for g in ctx.grants]
        cumulative = ctx.mode is UsageMode.CUMULATIVE
        if cached and ctx.until != until:
            raise ValueError("a cached run needs the context read for its instant (context(..., until=))")
        if cached and resume is not None:
            raise ValueError("a cached run resumes from the context's snapshot")
        snapshot = resume if resume is not None else ctx.snapshot if cached and cumulative else None
        if snapshot is not None and (snapshot.at < start_at or set(snapshot.balances) - {g.id for g in grants}):
            snapshot = None
        if snapshot is None:
            snapshot = Snapshot.starting(grants, start_at, period_start=start_at)
        period = entitlement.usage_period()
        assert period is not None
        inp = RunInput(
            grants=grants,
            start=snapshot,
            until=until,
            resets=period.reset_times(snapshot.at, until),
            preserve_overage=entitlement.preserve_overage_at_reset,
            preserve_overage_at={
                r.at: r.preserve_overage for r in entitlement.resets if r.preserve_overage is not None
            },
            mode=ctx.mode,
        )
        usage, first_event = await self._usage.windows(ctx, breakpoints(inp), until if tail else None)
        result = run(inp, usage)
        if cached and cumulative:
            await self._maybe_snapshot(namespace, entitlement, snapshot, result)
        return result, first_event

    async def _current(
        self, namespace: str, entitlement: Entitlement, when: datetime, customer: Customer | None = None
    ) -> tuple[MeteredContext, EntitlementValue]:
        """Computes the value at `when` (a whole minute, now) and keeps it in the cache."""
        cache = self.cache
        mark = cache.mark() if cache is not None else 0  # before any input is read
        ctx = await self.context(namespace, entitlement, customer, when)
        assert entitlement.measure_usage_from is not None
        keep = cache is not None and when >= entitlement.measure_usage_from
        result, first_event = await self._run(namespace, ctx, when, tail=keep)
        value = self._metered_value(entitlement, result)
        # The caller read `entitlement` before `mark`: a reset written in between is missing from
        # it, yet stamped before the mark, so the cache would trust this value. The revision read
        # with the grants (after the mark) tells; such a value answers this call and is not kept.
        keep = keep and ctx.inputs_revision == entitlement.inputs_revision
        if cache is not None and keep:
            # The value holds until the next breakpoint, period end or already-stored event.
            horizon = [next_change([g.engine() for g in ctx.grants], when)]
            period = entitlement.current_usage_period(when)
            horizon.append(period.end if period is not None else None)
            horizon.append(floor_minute(first_event) + MINUTE if first_event is not None else None)
            valid_before = min((t for t in horizon if t is not None), default=None)
            cache.put(
                namespace,
                entitlement.id,
                mark,
                when,
                valid_before,
                ctx.customer.usage_subjects,
                ctx.meter.event_type,
                value,
            )
        return ctx, value

    async def _maybe_snapshot(
        self, namespace: str, entitlement: Entitlement, start: Snapshot, result: RunResult
    ) -> None:
        # Only instants older than the grace period: a late event inside it must still count.
        not_after = self._clock() - self.grace_period
        candidates = [s for s in result.resumable_snapshots() if start.at < s.at <= not_after]
        if candidates:
            await self._snapshots.save(namespace, entitlement.id, candidates[-1], entitlement.inputs_revision)

    async def value(
        self, namespace: str, entitlement: Entitlement, at: datetime | None = None, customer: Customer | None = None
    ) -> EntitlementValue:
        instant = at if at is not None else self._clock()
        # Outside its active window (before it started, after it ended or was deleted) an
        # entitlement gives no access and no balance, as OpenMeter's NoAccessValue.
        if not entitlement.active_at(instant):
            return EntitlementValue(has_access=False)
        when = ceil_minute(instant)
        if entitlement.type is EntitlementType.BOOLEAN:
            return EntitlementValue(has_access=True)
        if entitlement.type is EntitlementType.STATIC:
            return EntitlementValue(has_access=True, config=entitlement.config)
        if at is None and self.cache is not None:
            cached = self.cache.get(namespace, entitlement.id, when)
            if cached is not None:
                return cached
            _, value = await self._current(namespace, entitlement, when, customer)
            return value
        ctx = await self.context(namespace, entitlement, customer, when)
        result = await self.run_until(namespace, ctx, when)
        return self._metered_value(entitlement, result)

    @staticmethod
    def _metered_value(entitlement: Entitlement, result: RunResult) -> EntitlementValue:
        balance = result.balance
        return EntitlementValue(
            has_access=entitlement.is_soft_limit or balance > 0,
            balance=balance,
            usage=result.usage,
            overage=result.overage,
            total_available_grant_amount=result.total_available_grant_amount,
            grant_balances=dict(result.grant_balances),
        )

    async def access(self, namespace: str, customer: Customer) -> dict[str, tuple[Entitlement, EntitlementValue]]:
        items = await self._entitlements.list_entitlements(
            namespace,
            ListEntitlementsInput().validate([customer.id]),
        )
        now = self._clock()
        active = [e for e in items if e.active_at(now)]
        # "Now" (not an explicit time), so current values may come from the cache.
        values = await asyncio.gather(*(self.value(namespace, e, None, customer) for e in active))
        return {e.feature_key: (e, v) for e, v in zip(active, values, strict=True)}

    async def history(self, namespace: str, entitlement: Entitlement, data: HistoryInput) -> History:
        if not entitlement.metered:
            raise ValidationError.single(
                "entitlement", "history is only available for metered entitlements", "not_metered"
            )
        if data.window_size not in HISTORY_WINDOW_SIZES:
            raise ValidationError.single("windowSize", "must be one of MINUTE, HOUR, DAY, MONTH", "invalid_enum")
        tz_name = data.window_time_zone or "UTC"
        if tz_name not in allowed_time_zones():
            raise ValidationError.single("windowTimeZone", f"unknown IANA time zone {tz_name!r}", "invalid_time_zone")
        now = self._clock()
        assert entitlement.measure_usage_from is not None
        from_ = data.from_ if data.from_ is not None else entitlement.last_reset(now)
        assert from_ is not None
        to = data.to if data.to is not None else now
        if data.to is None and entitlement.active_to is not None and entitlement.active_to < to:
            to = entitlement.active_to  # an ended entitlement's history stops where it ended
        if from_ < entitlement.measure_usage_from:
            raise ValidationError.single(
                "from",
                f"from {rfc3339(from_)} cannot be before {rfc3339(entitlement.measure_usage_from)}",
                "before_measurement",
            )
        start, end = floor_minute(from_), ceil_minute(to)
        if end <= start:
            raise ValidationError.single("to", "to must be after from", "invalid_range")
        tz = ZoneInfo(tz_name)
        windows = _history_windows(start, end, data.window_size, tz)
        if len(windows) > MAX_HISTORY_WINDOWS:
            raise ValidationError.single("windowSize", "too many windows; use a larger window size", "too_many")
        ctx = await self.context(namespace, entitlement)
        engine_from = min([start, *[w[0] for w in windows]])
        engine_to = max([end, *[w[1] for w in windows]]) if windows else end
        # The burn-down is a run from the state at its first window's start, everything due then
        # (a reset's rollover, a grant taking effect) already applied, as OpenMeter's history runs
        # from the balance there: its first segment starts at that instant with the balance then,
        # and a reset at that instant is not listed again as a rollover segment.
        head, _ = await self._run(namespace, ctx, engine_from, cached=False)
        result, _ = await self._run(namespace, ctx, engine_to, cached=False, resume=head.snapshot)
        # Windows are whole (aligned to the window size in the time zone) but only [from, to) is
        # counted, as a meter query counts a window its bounds cut: usage before `from` (the
        # previous usage period, or before measurement began) or after `to` is not this history's.
        usage = await self._usage.windowed(ctx, start, end, data.window_size, tz_name) if windows else {}
        segments = list(result.history)
        marks = [(s.start, s.balance_at_start, s.overage_at_start) for s in result.history if s.end > s.start]
        out: list[HistoryWindow] = []
        used_marks: set[int] = set()
        balance = ZERO
        for w_start, w_end in windows:
            counted_from = max(w_start, start)  # the first window's balance is the one at `from`
            index = max((i for i, m in enumerate(marks) if m[0] <= counted_from), default=None)
            if index is None:
                balance = ZERO
            elif index not in used_marks:
                used_marks.add(index)
                mark_at, balance, _ = marks[index]
                between = await self._usage.total(ctx, mark_at, counted_from) if mark_at < counted_from else ZERO
                balance = max(ZERO, balance - between)
            value = usage.get(w_start, ZERO)
            out.append(HistoryWindow(w_start, w_end, value, balance))
            balance = max(ZERO, balance - value)
        return History(tuple(out), tuple(segments))

    # --- reset --------------------------------------------------------------------------------

    async def reset(self, namespace: str, entitlement: Entitlement, data: ResetInput) -> None:
        if entitlement.deleted_at is not None:
            raise NotFoundError("entitlement", entitlement.id)
        if entitlement.subscription_managed:
            # Its usage periods are the subscription's: OpenMeter's subscription hook refuses the
            # reset (PreUpdate) as it refuses a delete.
            raise ForbiddenError("entitlement is managed by subscription")
        if not entitlement.metered:
            raise ValidationError.single("entitlement", "only metered entitlements can be reset", "not_metered")
        now = self._clock()
        asked = ensure_utc(data.effective_at if data.effective_at is not None else now, "effectiveAt")
        assert entitlement.measure_usage_from is not None
        # Compared before the truncation, as OpenMeter's ResetUsageForOwner does.
        if asked > now:
            raise ValidationError.single("effectiveAt", f"cannot reset at {rfc3339(asked)} in the future", "in_future")
        at = floor_minute(asked)
        if at < entitlement.measure_usage_from:
            raise ValidationError.single(
                "effectiveAt", "reset cannot be before the start of measurement", "before_measurement"
            )
        period = entitlement.current_usage_period(now)
        assert period is not None
        if at < period.start:
            raise ValidationError.single(
                "effectiveAt",
                f"reset at {rfc3339(at)} is before current usage period start {rfc3339(period.start)}",
                "before_usage_period",
            )
        # OpenMeter's lastReset is the last reset made (or the start of measurement), not a scheduled
        # period start: a reset exactly at the start of the current period is allowed.
        last = max([entitlement.measure_usage_from, *(r.at for r in entitlement.resets)])
        if at == floor_minute(last):
            raise ValidationError.single(
                "effectiveAt",
                f"reset at {rfc3339(at)} must be after last reset at {rfc3339(last)}",
                "same_minute",
            )
        current = entitlement.current_interval_and_anchor()
        assert current is not None
        interval, anchor = current
        # The request's preserveOverage, falling back to the entitlement's (OpenMeter's reset.go).
        preserve = data.preserve_overage if data.preserve_overage is not None else entitlement.preserve_overage_at_reset
        reset = UsageReset(
            at=at, anchor=anchor if data.retain_anchor else at, interval=interval, preserve_overage=preserve
        )
        await self._entitlements.add_reset(namespace, entitlement.id, reset)
        self.entities_changed()
        if self._events is not None:
            updated = dataclasses.replace(entitlement, resets=(*entitlement.resets, reset))
            after = await self.snapshot_event(namespace, updated)
            await self._events.publish(
                EntitlementResetEvent(
                    namespace=namespace,
                    entitlement_id=entitlement.id,
                    feature_key=after.feature_key,
                    subject_key=after.subject_key,
                    customer_id=after.customer_id,
                    reset_at=at,
                    balance=after.balance,
                    usage=after.usage,
                    overage=after.overage,
                    total_available_grant_amount=after.total_available_grant_amount,
                    has_access=after.has_access,
                    entitlement=after.entitlement,
                    feature=after.feature,
                    subject=after.subject,
                    customer=after.customer,
                )
            )
        await self._changed(namespace, entitlement.id)

    # --- worker support -----------------------------------------------------------------------

    async def _changed(self, namespace: str, entitlement_id: str) -> None:
        if self.cache is not None:
            self.cache.entitlement_changed(namespace, entitlement_id)
        if self.on_change is not None:
            await self.on_change(namespace, entitlement_id)

    async def affected(self, namespace: str, subjects: Sequence[str], event_types: Sequence[str]) -> list[Entitlement]:
        """Active metered entitlements whose usage events of these subjects and types can change."""
        if not subjects or not event_types:
            return []
        found = await self._entitlements.metered_touched_by(namespace, subjects, event_types)
        now = self._clock()
        # Scheduled ones that have not started, or have ended, have no balance to recompute.
        return [e for e in found if e.active_at(now)]

    async def snapshot_event(self, namespace: str, entitlement: Entitlement) -> BalanceSnapshotEvent:
        """Recomputes the entitlement's value now (storing a snapshot when one is due)."""
        now = self._clock()
        ctx, value = await self._current(namespace, entitlement, ceil_minute(now))
        period = entitlement.current_usage_period(now)
        assert period is not None
        subject_key = _subject_key(ctx.customer)
        return BalanceSnapshotEvent(
            namespace=namespace,
            entitlement_id=entitlement.id,
            feature_id=ctx.feature.id,
            feature_key=ctx.feature.key,
            subject_key=subject_key,
            customer_id=ctx.customer.id,
            at=now,
            period_start=period.start,
            period_end=period.end,
            balance=value.balance or ZERO,
            usage=value.usage or ZERO,
            overage=value.overage or ZERO,
            total_available_grant_amount=value.total_available_grant_amount or ZERO,
            has_access=value.has_access,
            entitlement=entitlement_rest(entitlement, ctx.customer, now),
            feature=ctx.feature.rest(),
            subject={"key": subject_key},
            customer=ctx.customer.rest(),
        )

    async def publish(self, event: Any) -> None:
        if self._events is not None:
            await self._events.publish(event)


def _check_grant_in_period(grant: ValidatedGrant, period_start: datetime, field: str) -> None:
    """OpenMeter's CreateGrant: a grant may not take effect before the current usage period (400)."""
    if grant.effective_at < period_start:
        raise ValidationError.single(
            field,
            f"grant effective date {rfc3339(grant.effective_at)} is before the current usage period "
            f"{rfc3339(period_start)}",
            "before_usage_period",
        )


def _utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise ValidationError.single(field, "must carry a time zone", "invalid_time")
    return value.astimezone(UTC)


def _subject_key(customer: Customer) -> str:
    """The subject a customer-owned entitlement shows in the v1 API."""
    if customer.subject_keys:
        return customer.subject_keys[0]
    return customer.key or customer.id


def subject_key_for(customer: Customer, requested: str | None = None) -> str:
    if requested is not None and requested in customer.usage_subjects:
        return requested
    return _subject_key(customer)


def entitlement_rest(entitlement: Entitlement, customer: Customer, now: datetime) -> dict[str, Any]:
    """OpenMeter's Entitlement JSON (both the v1 subjectKey and the v2 customer fields)."""
    out: dict[str, Any] = {
        "id": entitlement.id,
        "type": entitlement.type.value,
        "featureId": entitlement.feature_id,
        "featureKey": entitlement.feature_key,
        "subjectKey": _subject_key(customer),
        "customerId": customer.id,
        "metadata": dict(entitlement.metadata),
        "createdAt": rfc3339(entitlement.created_at),
        "updatedAt": rfc3339(entitlement.updated_at),
        "activeFrom": rfc3339(entitlement.active_from),
    }
    if entitlement.active_to is not None:
        out["activeTo"] = rfc3339(entitlement.active_to)
    if entitlement.annotations:
        out["annotations"] = dict(entitlement.annotations)
    if customer.key:
        out["customerKey"] = customer.key
    if entitlement.deleted_at is not None:
        out["deletedAt"] = rfc3339(entitlement.deleted_at)
    if entitlement.usage_interval is not None and entitlement.usage_anchor is not None:
        current = entitlement.current_interval_and_anchor()
        assert current is not None
        out["usagePeriod"] = {
            "interval": interval_name(current[0]),
            "intervalISO": current[0].iso(),
            "anchor": rfc3339(current[1]),
        }
        period = entitlement.current_usage_period(now)
        if period is not None:
            out["currentUsagePeriod"] = {"from": rfc3339(period.start), "to": rfc3339(period.end)}
    if entitlement.metered:
        assert entitlement.measure_usage_from is not None
        out["isSoftLimit"] = entitlement.is_soft_limit
        out["preserveOverageAtReset"] = entitlement.preserve_overage_at_reset
        out["measureUsageFrom"] = rfc3339(entitlement.measure_usage_from)
        last = entitlement.last_reset(now)
        if last is not None:
            out["lastReset"] = rfc3339(last)
        # As the API shows it: an absent issueAfterReset is OpenMeter's stored 0, and a priority only
        # when one was given.
        issue = entitlement.issue_after_reset
        out["issueAfterReset"] = float(issue) if issue is not None else 0.0
        if issue is not None and entitlement.issue_after_reset_priority is not None:
            out["issueAfterResetPriority"] = entitlement.issue_after_reset_priority
    if entitlement.config is not None:
        out["config"] = entitlement.config
    return out


def _history_windows(start: datetime, end: datetime, size: str, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """Windows of `size` in `tz` covering [start, end): the first starts at or before `start`."""
    local = start.astimezone(tz)
    if size == "MINUTE":
        first = local.replace(second=0, microsecond=0)
    elif size == "HOUR":
        first = local.replace(minute=0, second=0, microsecond=0)
    elif size == "DAY":
        first = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    out: list[tuple[datetime, datetime]] = []
    current = first
    while current.astimezone(UTC) < end and len(out) <= MAX_HISTORY_WINDOWS:
        if size == "DAY":
            naive = current.replace(tzinfo=None) + timedelta(days=1)
            nxt = naive.replace(tzinfo=tz)
        elif size == "MONTH":
            # Always from the first of a month, so adding a month never clamps the day.
            nxt = add_months_no_overflow(current.replace(tzinfo=None), 1).replace(tzinfo=tz)
        else:
            nxt = (current.astimezone(UTC) + HISTORY_WINDOWS[size]).astimezone(tz)
        out.append((current.astimezone(UTC), nxt.astimezone(UTC)))
        current = nxt
    return out


__all__ = ["MINUTE", "EntitlementService", "History", "HistoryWindow", "MeteredContext", "UsageReader"]
