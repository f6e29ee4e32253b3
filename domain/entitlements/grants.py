"""The grant value type the burn-down engine consumes, and its expiration rule.

A grant adds `amount` to an entitlement's balance while it is active, in
[effective_at, min(expires_at, voided_at, deleted_at)). Lower `priority` numbers burn first; a
recurring grant refills to `amount` at each recurrence; at a usage reset its balance becomes
min(max_rollover_amount, max(balance, min_rollover_amount)).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.entitlements.recurrence import Recurrence, add_date_overflowing, ensure_utc
from domain.errors import Violations

ZERO = Decimal(0)
# 0 is what OpenMeter stores for a grant created without a priority (clients may send only 1..255).
MIN_PRIORITY = 0
MAX_PRIORITY = 255
MAX_EXPIRATION_COUNT = 1000


class ExpirationDuration(enum.StrEnum):
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"


@dataclass(frozen=True, slots=True)
class ExpirationPeriod:
    """`{duration, count}`: a grant expires `count` durations after it takes effect."""

    duration: ExpirationDuration
    count: int

    def __post_init__(self) -> None:
        v = Violations()
        if not isinstance(self.duration, ExpirationDuration):
            v.add("expiration.duration", "must be one of HOUR, DAY, WEEK, MONTH, YEAR")
        if not 1 <= self.count <= MAX_EXPIRATION_COUNT:
            v.add("expiration.count", f"must be between 1 and {MAX_EXPIRATION_COUNT}")
        v.raise_if_any()

    def expires_at(self, effective_at: datetime) -> datetime:
        """The expiry for a grant effective at `effective_at`.

        Months and years use Go's overflowing `AddDate` (Jan 31 + 1 month = Mar 2 or 3), exactly as
        OpenMeter computes `expiresAt`; recurrences clamp instead.
        """
        t = ensure_utc(effective_at)
        match self.duration:
            case ExpirationDuration.HOUR:
                return t + timedelta(hours=self.count)
            case ExpirationDuration.DAY:
                return add_date_overflowing(t, days=self.count)
            case ExpirationDuration.WEEK:
                return add_date_overflowing(t, days=7 * self.count)
            case ExpirationDuration.MONTH:
                return add_date_overflowing(t, months=self.count)
            case ExpirationDuration.YEAR:
                return add_date_overflowing(t, years=self.count)


_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
_FAR_PAST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant as the engine sees it. Times are normalised to UTC.

    `expires_at` is derived from `expiration` when not given. `created_at` only breaks ties in the
    burn order (a missing one sorts first).
    """

    id: str
    amount: Decimal
    effective_at: datetime
    priority: int = 1
    expiration: ExpirationPeriod | None = None
    expires_at: datetime | None = None
    created_at: datetime | None = None
    voided_at: datetime | None = None
    deleted_at: datetime | None = None
    recurrence: Recurrence | None = None
    min_rollover_amount: Decimal = ZERO
    max_rollover_amount: Decimal = ZERO

    def __post_init__(self) -> None:
        v = Violations()
        if not self.id:
            v.add("id", "grant id is required", "required")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite() or self.amount < 0:
            v.add("amount", "must be a finite decimal >= 0")
        if not isinstance(self.priority, int) or not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            v.add("priority", f"must be between {MIN_PRIORITY} and {MAX_PRIORITY}")
        for name in ("min_rollover_amount", "max_rollover_amount"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                v.add(name, "must be a finite decimal >= 0")
        v.raise_if_any()
        object.__setattr__(self, "effective_at", ensure_utc(self.effective_at, "effectiveAt"))
        for name in ("expires_at", "created_at", "voided_at", "deleted_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, ensure_utc(value, name))
        if self.expires_at is None and self.expiration is not None:
            object.__setattr__(self, "expires_at", self.expiration.expires_at(self.effective_at))

    @property
    def active_until(self) -> datetime | None:
        """Exclusive end of the active window: min(expires_at, voided_at, deleted_at), >= effective_at."""
        ends = [t for t in (self.expires_at, self.voided_at, self.deleted_at) if t is not None]
        if not ends:
            return None
        return max(min(ends), self.effective_at)

    def active_at(self, t: datetime) -> bool:
        end = self.active_until
        return self.effective_at <= t and (end is None or t < end)

    def rollover_balance(self, balance: Decimal) -> Decimal:
        """The balance kept across a usage reset."""
        return min(self.max_rollover_amount, max(self.min_rollover_amount, balance))

    def recurrence_balance(self, balance: Decimal) -> Decimal:
        """The balance after the grant's own recurrence: the full amount (no rollover applies)."""
        return balance if self.recurrence is None else self.amount

    def burn_order_key(self) -> tuple[int, datetime, datetime, str]:
        """Lowest priority number, then earliest expiry (none last), then earliest creation, then id."""
        return (
            self.priority,
            self.expires_at or _FAR_FUTURE,
            self.created_at or _FAR_PAST,
            self.id,
        )
