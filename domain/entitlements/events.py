"""Events the entitlements area publishes for others (notifications, billing).

The JSON-ready mappings carry OpenMeter's REST shapes (camelCase keys, RFC 3339 times, numbers as
numbers), so a consumer such as the webhook payload builder can embed them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class BalanceSnapshotEvent:
    """A metered entitlement's balance was (re)computed after usage, grant or reset changes."""

    namespace: str
    entitlement_id: str
    feature_id: str
    feature_key: str
    subject_key: str
    customer_id: str | None
    # When the value was computed, and the usage period it belongs to.
    at: datetime
    period_start: datetime
    period_end: datetime
    balance: Decimal
    usage: Decimal
    overage: Decimal
    total_available_grant_amount: Decimal
    has_access: bool
    # OpenMeter REST shapes for webhook payloads: entitlement, feature, subject, customer (or None).
    entitlement: Mapping[str, Any]
    feature: Mapping[str, Any]
    subject: Mapping[str, Any]
    customer: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class EntitlementResetEvent:
    """A metered entitlement's usage was reset (manually or by its usage period)."""

    namespace: str
    entitlement_id: str
    feature_key: str
    subject_key: str
    customer_id: str | None
    reset_at: datetime
    # The value right after the reset (OpenMeter's reset notification carries the reset's balance
    # snapshot: usage restarts, but balance, preserved overage and grants are what they are then).
    balance: Decimal
    usage: Decimal
    overage: Decimal
    total_available_grant_amount: Decimal
    has_access: bool
    entitlement: Mapping[str, Any]
    feature: Mapping[str, Any]
    subject: Mapping[str, Any]
    customer: Mapping[str, Any] | None
