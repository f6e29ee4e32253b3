"""Entitlements and grants as stored, and the inputs that create or change them.

An entitlement belongs to a customer and a feature. Metered entitlements have a usage period (a
recurrence in force from `measure_usage_from`, then one more entry per manual reset) and grants;
boolean ones only grant access; static ones carry a JSON `config`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from domain.entitlements.grants import ExpirationDuration, ExpirationPeriod
from domain.entitlements.grants import Grant as EngineGrant
from domain.entitlements.recurrence import (
    IsoDuration,
    Period,
    Recurrence,
    UsagePeriod,
    UsagePeriodEntry,
    floor_minute,
    parse_interval,
)
from domain.errors import TallyError, ValidationError, Violations
from domain.pagination import Pagination, SortOrder, Unpaged, parse_order, parse_order_by

DEFAULT_ISSUE_PRIORITY: Final = 1
# OpenMeter's grant APIs default an omitted priority to 0 (its column default), below the 1..255 a
# client may send: such grants burn before every explicitly prioritised one.
DEFAULT_GRANT_PRIORITY: Final = 0
ISSUE_AFTER_RESET_ANNOTATION: Final = "issueAfterReset"
# OpenMeter marks an entitlement a subscription created (and owns) with this annotation; the public
# API then refuses to delete, override or grant to it (403).
SUBSCRIPTION_ID_ANNOTATION: Final = "subscription.id"
ENTITLEMENT_ORDER_BY: Final = ("createdAt", "updatedAt")
GRANT_ORDER_BY: Final = ("id", "createdAt", "updatedAt")


class EntitlementType(enum.StrEnum):
    METERED = "metered"
    BOOLEAN = "boolean"
    STATIC = "static"


class MeasureUsageFrom(enum.StrEnum):
    CURRENT_PERIOD_START = "CURRENT_PERIOD_START"
    NOW = "NOW"


def interval_name(interval: IsoDuration) -> str:
    """OpenMeter's `interval`: DAY/WEEK/MONTH/YEAR for those, the ISO string otherwise."""
    return interval.enum_name() or interval.iso()


@dataclass(frozen=True, slots=True)
class UsageReset:
    """A manual reset: usage restarts at `at`; periods then recur from `anchor` by `interval`.

    `preserve_overage` is what the reset request asked for (falling back to the entitlement's
    preserveOverageAtReset when it asked nothing); None on resets stored before it was recorded,
    which then follow the entitlement's setting.
    """

    at: datetime
    anchor: datetime
    interval: IsoDuration
    preserve_overage: bool | None = None


@dataclass(frozen=True, slots=True)
class Entitlement:
    id: str
    namespace: str
    type: EntitlementType
    feature_id: str
    feature_key: str
    customer_id: str
    created_at: datetime
    updated_at: datetime
    active_from: datetime
    deleted_at: datetime | None = None
    active_to: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    usage_interval: IsoDuration | None = None
    usage_anchor: datetime | None = None
    measure_usage_from: datetime | None = None
    is_soft_limit: bool = False
    issue_after_reset: Decimal | None = None
    issue_after_reset_priority: int | None = None
    preserve_overage_at_reset: bool = False
    config: str | None = None
    resets: tuple[UsageReset, ...] = ()
    # How many writes have changed its balance's inputs (grants, voids, resets) when it was read:
    # a balance snapshot computed from this read is saved only while no later write came.
    inputs_revision: int = 0

    @property
    def metered(self) -> bool:
        return self.type is EntitlementType.METERED

    def usage_period(self) -> UsagePeriod | None:
        if self.usage_interval is None or self.usage_anchor is None:
            return None
        start = self.measure_usage_from if self.measure_usage_from is not None else self.usage_anchor
        entries = [UsagePeriodEntry(start, Recurrence(self.usage_interval, self.usage_anchor))]
        entries.extend(UsagePeriodEntry(r.at, Recurrence(r.interval, r.anchor)) for r in self.resets)
        return UsagePeriod(tuple(entries))

    def current_usage_period(self, at: datetime) -> Period | None:
        period = self.usage_period()
        return None if period is None else period.current_period_at(at)

    def last_reset(self, now: datetime) -> datetime | None:
        """The start of the usage period in force now (a manual or a scheduled reset)."""
        current = self.current_usage_period(now)
        return None if current is None else current.start

    def active_at(self, t: datetime) -> bool:
        """Active in [active_from, active_to) and not deleted by `t` (OpenMeter's IsActive)."""
        if self.deleted_at is not None and self.deleted_at <= t:
            return False
        return self.active_from <= t and (self.active_to is None or t < self.active_to)

    @property
    def subscription_managed(self) -> bool:
        return self.annotations.get(SUBSCRIPTION_ID_ANNOTATION) is not None

    def window_overlaps(self, start: datetime, end: datetime | None) -> bool:
        """Whether its active window [active_from, active_to) meets [start, end); an empty window
        (from == to) is never active and meets nothing."""
        if self.active_to is not None and self.active_to <= self.active_from:
            return False
        if end is not None and end <= start:
            return False
        return (end is None or self.active_from < end) and (self.active_to is None or start < self.active_to)

    def current_interval_and_anchor(self) -> tuple[IsoDuration, datetime] | None:
        if self.usage_interval is None or self.usage_anchor is None:
            return None
        if self.resets:
            return self.resets[-1].interval, self.resets[-1].anchor
        return self.usage_interval, self.usage_anchor


@dataclass(frozen=True, slots=True)
class StoredGrant:
    id: str
    namespace: str
    entitlement_id: str
    amount: Decimal
    priority: int
    effective_at: datetime
    created_at: datetime
    updated_at: datetime
    expiration: ExpirationPeriod | None = None
    expires_at: datetime | None = None
    max_rollover_amount: Decimal = Decimal(0)
    min_rollover_amount: Decimal = Decimal(0)
    metadata: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    recurrence: Recurrence | None = None
    voided_at: datetime | None = None
    deleted_at: datetime | None = None

    def engine(self) -> EngineGrant:
        return EngineGrant(
            id=self.id,
            amount=self.amount,
            effective_at=self.effective_at,
            priority=self.priority,
            expires_at=self.expires_at,
            created_at=self.created_at,
            voided_at=self.voided_at,
            deleted_at=self.deleted_at,
            recurrence=self.recurrence,
            min_rollover_amount=self.min_rollover_amount,
            max_rollover_amount=self.max_rollover_amount,
        )

    def next_recurrence(self, now: datetime) -> datetime | None:
        """The first boundary at or after `now`, as OpenMeter reports `nextRecurrence` (even before
        the grant takes effect)."""
        if self.recurrence is None:
            return None
        return self.recurrence.next_after(now, inclusive=True)


def _decimal(value: float | Decimal | None, name: str, v: Violations, minimum: Decimal | None = None) -> Decimal | None:
    if value is None:
        return None
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        v.add(name, "must be a number", "invalid_number")
        return None
    if not result.is_finite():
        v.add(name, "must be finite", "invalid_number")
        return None
    if minimum is not None and result < minimum:
        v.add(name, f"must be at least {minimum}", "out_of_range")
        return None
    return result


def _recurrence(
    interval: str, anchor: datetime | None, now: datetime, location: str, v: Violations
) -> Recurrence | None:
    """A usage period's or a grant's recurrence: at least an hour, in whole minutes (the anchor is
    truncated to the minute, and the engine runs on whole minutes).

    OpenMeter holds only usage periods to an hour (UsagePeriod.Validate) and takes any positive
    grant recurrence. Tally keeps grants to an hour too: every recurrence is a phase of the burn-down
    and a window of the usage statement, evaluated for each of the customer's events, so a grant
    refilling every minute would make one value over a month 43,200 windows x every event of it,
    holding the event store for as long."""
    try:
        duration = parse_interval(interval, f"{location}.interval")
    except ValidationError as exc:
        for violation in exc.violations:
            v.add(violation.field, violation.message, violation.code)
        return None
    if duration.seconds % 60:
        v.add(f"{location}.interval", "interval must be a whole number of minutes", "interval_too_short")
        return None
    return Recurrence(duration, floor_minute(anchor if anchor is not None else now))


@dataclass(frozen=True, slots=True)
class RecurrenceInput:
    interval: str
    anchor: datetime | None = None


@dataclass(frozen=True, slots=True)
class GrantInput:
    """EntitlementGrantCreateInput (v1) or EntitlementGrantCreateInputV2 (v2)."""

    amount: float | Decimal
    effective_at: datetime | None
    v2: bool = False
    priority: int | None = None
    expiration_duration: str | None = None
    expiration_count: int | None = None
    max_rollover_amount: float | Decimal | None = None
    min_rollover_amount: float | Decimal | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    recurrence: RecurrenceInput | None = None

    def validate(self, now: datetime, location: str = "") -> ValidatedGrant:
        v = Violations()
        amount = _decimal(self.amount, f"{location}amount", v, Decimal(0))
        if amount is not None and amount <= 0:
            v.add(f"{location}amount", "amount must be positive", "out_of_range")
        if self.effective_at is None:
            v.add(f"{location}effectiveAt", "required", "required")
        priority = DEFAULT_GRANT_PRIORITY if self.priority is None else self.priority
        if self.priority is not None and not 1 <= priority <= 255:
            v.add(f"{location}priority", "must be between 1 and 255", "out_of_range")
        expiration: ExpirationPeriod | None = None
        if self.expiration_duration is not None or self.expiration_count is not None:
            if self.expiration_duration not in ExpirationDuration.__members__:
                v.add(f"{location}expiration.duration", "must be one of HOUR, DAY, WEEK, MONTH, YEAR", "invalid_enum")
            elif self.expiration_count is None or not 1 <= self.expiration_count <= 1000:
                v.add(f"{location}expiration.count", "must be between 1 and 1000", "out_of_range")
            else:
                expiration = ExpirationPeriod(ExpirationDuration(str(self.expiration_duration)), self.expiration_count)
        elif not self.v2:
            v.add(f"{location}expiration", "required", "required")
        max_rollover = _decimal(self.max_rollover_amount, f"{location}maxRolloverAmount", v, Decimal(0))
        min_rollover = _decimal(self.min_rollover_amount, f"{location}minRolloverAmount", v, Decimal(0))
        recurrence = None
        if self.recurrence is not None:
            # Without an anchor a grant recurs from its own effectiveAt (as OpenMeter's API does), so
            # its refills do not depend on when the request happened to be made.
            default_anchor = self.effective_at if self.effective_at is not None else now
            recurrence = _recurrence(
                self.recurrence.interval,
                self.recurrence.anchor,
                default_anchor,
                f"{location}recurrence",
                v,
            )
        v.raise_if_any()
        assert amount is not None and self.effective_at is not None
        if max_rollover is None:
            max_rollover = amount if self.v2 else Decimal(0)
        effective_at = floor_minute(self.effective_at)
        return ValidatedGrant(
            amount=amount,
            priority=priority,
            effective_at=effective_at,
            expiration=expiration,
            expires_at=expiration.expires_at(effective_at) if expiration is not None else None,
            max_rollover_amount=max_rollover,
            min_rollover_amount=min_rollover or Decimal(0),
            metadata=dict(self.metadata),
            annotations=dict(self.annotations),
            recurrence=recurrence,
        )


@dataclass(frozen=True, slots=True)
class ValidatedGrant:
    amount: Decimal
    priority: int
    effective_at: datetime
    expiration: ExpirationPeriod | None
    expires_at: datetime | None
    max_rollover_amount: Decimal
    min_rollover_amount: Decimal
    metadata: dict[str, str]
    annotations: dict[str, Any]
    recurrence: Recurrence | None


@dataclass(frozen=True, slots=True)
class EntitlementInput:
    """EntitlementCreateInputs (v1) or EntitlementV2CreateInputs (v2), flat with `type`."""

    type: str
    feature_key: str | None = None
    feature_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    usage_period: RecurrenceInput | None = None
    measure_usage_from: str | None = None
    is_soft_limit: bool | None = None
    issue_after_reset: float | Decimal | None = None
    issue_after_reset_priority: int | None = None
    preserve_overage_at_reset: bool | None = None
    config: str | None = None
    grants: Sequence[GrantInput] = ()
    v2: bool = False

    def validate(self, now: datetime) -> ValidatedEntitlement:
        v = Violations()
        kind: EntitlementType | None = None
        if self.type in {t.value for t in EntitlementType}:
            kind = EntitlementType(self.type)
        else:
            v.add("type", "must be one of metered, boolean, static", "invalid_enum")
        if not self.feature_key and not self.feature_id:
            v.add("featureKey", "featureKey or featureId is required", "required")
        recurrence = None
        if self.usage_period is not None:
            recurrence = _recurrence(self.usage_period.interval, self.usage_period.anchor, now, "usagePeriod", v)
        elif kind is EntitlementType.METERED:
            v.add("usagePeriod", "required for metered entitlements", "required")
        measure_from: datetime | None = None
        issue = _decimal(self.issue_after_reset, "issueAfterReset", v, Decimal(0))
        if kind is EntitlementType.METERED:
            if self.issue_after_reset_priority is not None:
                if issue is None:
                    v.add("issueAfterResetPriority", "requires issueAfterReset", "requires_issue")
                if not 1 <= self.issue_after_reset_priority <= 255:
                    v.add("issueAfterResetPriority", "must be between 1 and 255", "out_of_range")
            if recurrence is not None:
                measure_from = self._measure_from(recurrence, now, v)
            if issue is not None and self.grants:
                # OpenMeter's v2 create refuses both (the issued grant would duplicate them).
                v.add("grants", "issueAfterReset and grants cannot be used together", "issue_with_grants")
        else:
            for name, value in (
                ("isSoftLimit", self.is_soft_limit),
                ("issueAfterReset", self.issue_after_reset),
                ("measureUsageFrom", self.measure_usage_from),
                ("preserveOverageAtReset", self.preserve_overage_at_reset),
            ):
                if value is not None:
                    v.add(name, f"not allowed for {self.type} entitlements", "not_allowed")
            if self.grants:
                v.add("grants", f"not allowed for {self.type} entitlements", "not_allowed")
        if kind is EntitlementType.STATIC:
            if self.config is None:
                v.add("config", "required for static entitlements", "required")
            else:
                try:
                    parsed = json.loads(self.config)
                except ValueError:
                    parsed = None
                if not isinstance(parsed, dict):
                    v.add("config", "must be a JSON object encoded as a string", "invalid_json")
        elif self.config is not None:
            v.add("config", "only static entitlements have a config", "not_allowed")
        v.raise_if_any()
        assert kind is not None
        grants = tuple(g.validate(now, f"grants[{i}].") for i, g in enumerate(self.grants))
        return ValidatedEntitlement(
            type=kind,
            feature_key=self.feature_key,
            feature_id=self.feature_id,
            metadata=dict(self.metadata),
            recurrence=recurrence,
            measure_usage_from=measure_from,
            is_soft_limit=bool(self.is_soft_limit),
            issue_after_reset=issue if issue else None,
            issue_after_reset_priority=self.issue_after_reset_priority if issue else None,
            preserve_overage_at_reset=bool(self.preserve_overage_at_reset),
            config=self.config,
            grants=grants,
        )

    def _measure_from(self, recurrence: Recurrence, now: datetime, v: Violations) -> datetime | None:
        text = self.measure_usage_from
        if text is None or text == "":
            return floor_minute(now)
        if text == MeasureUsageFrom.NOW:
            return floor_minute(now)
        if text == MeasureUsageFrom.CURRENT_PERIOD_START:
            return floor_minute(recurrence.period_at(now).start)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            v.add("measureUsageFrom", "must be CURRENT_PERIOD_START, NOW or an RFC 3339 time", "invalid_time")
            return None
        return floor_minute(parsed)


@dataclass(frozen=True, slots=True)
class ValidatedEntitlement:
    type: EntitlementType
    feature_key: str | None
    feature_id: str | None
    metadata: dict[str, str]
    recurrence: Recurrence | None
    measure_usage_from: datetime | None
    is_soft_limit: bool
    issue_after_reset: Decimal | None
    issue_after_reset_priority: int | None
    preserve_overage_at_reset: bool
    config: str | None
    grants: tuple[ValidatedGrant, ...]


@dataclass(frozen=True, slots=True)
class ResetInput:
    effective_at: datetime | None = None
    retain_anchor: bool = False
    preserve_overage: bool | None = None


@dataclass(frozen=True, slots=True)
class HistoryInput:
    window_size: str
    from_: datetime | None = None
    to: datetime | None = None
    window_time_zone: str | None = None


@dataclass(frozen=True, slots=True)
class EntitlementListQuery:
    pagination: Pagination
    order: SortOrder
    order_by: str
    customer_ids: tuple[str, ...] = ()
    feature_keys_or_ids: tuple[str, ...] = ()
    types: tuple[EntitlementType, ...] = ()
    include_deleted: bool = False
    exclude_inactive: bool = False


@dataclass(frozen=True, slots=True)
class ListEntitlementsInput:
    features: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    include_deleted: bool = False
    exclude_inactive: bool = False
    page: int | None = None
    page_size: int | None = None
    limit: int | None = None
    offset: int | None = None
    order: str | None = None
    order_by: str | None = None
    unpaged: Unpaged = Unpaged.EVERYTHING

    def validate(self, customer_ids: Sequence[str] = ()) -> EntitlementListQuery:
        pagination = Pagination(self.page, self.page_size, self.limit, self.offset).validate().defaulted(self.unpaged)
        order = parse_order(self.order)
        v = Violations()
        order_by = parse_order_by(self.order_by, ENTITLEMENT_ORDER_BY, "createdAt", v)
        types: list[EntitlementType] = []
        for i, t in enumerate(self.types):
            if t in {e.value for e in EntitlementType}:
                types.append(EntitlementType(t))
            else:
                v.add(f"entitlementType[{i}]", "must be one of metered, boolean, static", "invalid_enum")
        v.raise_if_any()
        return EntitlementListQuery(
            pagination=pagination,
            order=order,
            order_by=order_by,
            customer_ids=tuple(customer_ids),
            feature_keys_or_ids=tuple(self.features),
            types=tuple(types),
            include_deleted=self.include_deleted,
            exclude_inactive=self.exclude_inactive,
        )


@dataclass(frozen=True, slots=True)
class GrantListQuery:
    pagination: Pagination
    order: SortOrder
    order_by: str
    include_deleted: bool = False


@dataclass(frozen=True, slots=True)
class ListGrantsInput:
    include_deleted: bool = False
    page: int | None = None
    page_size: int | None = None
    limit: int | None = None
    offset: int | None = None
    order: str | None = None
    order_by: str | None = None
    # What an absent orderBy sorts by: an entitlement's grants by createdAt, while OpenMeter's
    # namespace-wide grant lists (/api/v1/grants, /api/v2/grants) default to effectiveAt, a field
    # a client cannot ask for itself.
    default_order_by: str = "createdAt"
    unpaged: Unpaged = Unpaged.EVERYTHING

    def validate(self) -> GrantListQuery:
        pagination = Pagination(self.page, self.page_size, self.limit, self.offset).validate().defaulted(self.unpaged)
        order = parse_order(self.order)
        order_by = parse_order_by(self.order_by, GRANT_ORDER_BY, self.default_order_by)
        return GrantListQuery(pagination, order, order_by, self.include_deleted)


@dataclass(frozen=True, slots=True)
class EntitlementValue:
    has_access: bool
    balance: Decimal | None = None
    usage: Decimal | None = None
    overage: Decimal | None = None
    total_available_grant_amount: Decimal | None = None
    config: str | None = None
    grant_balances: Mapping[str, Decimal] | None = None


class EntitlementInactiveError(TallyError):
    """Internal marker: the entitlement has no value at the requested time."""
