"""Balance-threshold evaluation, as OpenMeter does it.

Given a rule's thresholds and an entitlement's value, each threshold is turned into a credit amount
and judged active or not; per kind (usage thresholds, balance thresholds) the most advanced active
one is the one that fires. A fired threshold is remembered per usage period through a deduplication
hash over (kind, rule, namespace, period, subject, entitlement, feature, measureUsageFrom): a new
event is due only when the kind's most advanced threshold differs from the last one notified in
that period. Nothing is evaluated without grants (totalAvailableGrantAmount must be above zero).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import xxhash

from domain.notifications.models import Threshold, ThresholdType

_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
# OpenMeter's tolerance for "balance and overage are both positive" (float64 noise).
_ABSOLUTE_ZERO = Decimal("1e-9")


class ThresholdKind(enum.StrEnum):
    USAGE = "usage"
    BALANCE = "balance"


def kind_of(threshold: Threshold) -> ThresholdKind:
    return ThresholdKind.BALANCE if threshold.type is ThresholdType.BALANCE_VALUE else ThresholdKind.USAGE


@dataclass(frozen=True, slots=True)
class EntitlementValue:
    balance: Decimal
    usage: Decimal
    overage: Decimal
    total_available_grant_amount: Decimal


class InconsistentValueError(ValueError):
    """Balance and overage are both positive: the value cannot be judged."""


@dataclass(frozen=True, slots=True)
class NumericThreshold:
    threshold: Threshold
    # The threshold in credits, whether given as a value or a percentage of the grants.
    amount: Decimal
    active: bool


def numeric_threshold(threshold: Threshold, value: EntitlementValue) -> NumericThreshold | None:
    """The threshold judged against the value; None without grants (it cannot be judged then)."""
    total = value.total_available_grant_amount
    if total == 0:
        return None
    if value.balance > _ABSOLUTE_ZERO and value.overage > _ABSOLUTE_ZERO:
        raise InconsistentValueError("balance and overage cannot both be positive")
    match threshold.type:
        case ThresholdType.USAGE_VALUE | ThresholdType.NUMBER:
            return NumericThreshold(threshold, threshold.value, threshold.value < value.usage)
        case ThresholdType.USAGE_PERCENTAGE | ThresholdType.PERCENT:
            amount = total * (threshold.value / 100)
            return NumericThreshold(threshold, amount, amount < value.usage)
        case ThresholdType.BALANCE_VALUE:
            active = threshold.value >= value.balance if threshold.value == 0 else threshold.value > value.balance
            return NumericThreshold(threshold, threshold.value, active)


@dataclass(frozen=True, slots=True)
class ActiveThresholds:
    usage: Threshold | None = None
    balance: Threshold | None = None

    def items(self) -> list[tuple[ThresholdKind, Threshold]]:
        result: list[tuple[ThresholdKind, Threshold]] = []
        if self.usage is not None:
            result.append((ThresholdKind.USAGE, self.usage))
        if self.balance is not None:
            result.append((ThresholdKind.BALANCE, self.balance))
        return result


def active_thresholds(thresholds: tuple[Threshold, ...], value: EntitlementValue) -> ActiveThresholds:
    """Per kind, the most advanced active threshold: the highest usage one, the lowest balance one.

    Ties keep OpenMeter's order: among usage percentages a later equal one wins, among usage values
    and balance values the first one stays.
    """
    usage: NumericThreshold | None = None
    balance: NumericThreshold | None = None
    for threshold in thresholds:
        numeric = numeric_threshold(threshold, value)
        if numeric is None or not numeric.active:
            continue
        match threshold.type:
            case ThresholdType.BALANCE_VALUE:
                if balance is None or balance.amount > numeric.amount:
                    balance = numeric
            case ThresholdType.USAGE_PERCENTAGE | ThresholdType.PERCENT:
                if usage is None or usage.amount <= numeric.amount:
                    usage = numeric
            case ThresholdType.USAGE_VALUE | ThresholdType.NUMBER:
                if usage is None or usage.amount < numeric.amount:
                    usage = numeric
    return ActiveThresholds(
        usage=usage.threshold if usage else None,
        balance=balance.threshold if balance else None,
    )


def _go_rfc3339(value: datetime | None) -> str:
    """Go's time.RFC3339 rendering in UTC (whole seconds, Z); the zero time when absent."""
    v = (value or _ZERO_TIME).astimezone(UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}Z"


@dataclass(frozen=True, slots=True)
class DedupeKey:
    kind: ThresholdKind
    rule_id: str
    namespace: str
    period_from: datetime | None
    period_to: datetime | None
    subject_key: str
    entitlement_id: str
    feature_id: str
    measure_usage_from: datetime | None

    def hash(self) -> str:
        """OpenMeter's v2 balance-snapshot dedupe hash: xxh3-128 over the fields joined, hex, prefixed."""
        source = "".join(
            (
                self.kind.value,
                self.rule_id,
                self.namespace,
                _go_rfc3339(self.period_from),
                _go_rfc3339(self.period_to),
                self.subject_key,
                self.entitlement_id,
                self.feature_id,
                _go_rfc3339(self.measure_usage_from),
            )
        )
        return "bsnap_v2_" + xxhash.xxh3_128_hexdigest(source.encode())


def same_threshold(payload_threshold: object, threshold: Threshold) -> bool:
    """Whether a stored payload's `threshold` ({value, type}) is this threshold."""
    if not isinstance(payload_threshold, dict):
        return False
    try:
        value = Decimal(repr(float(payload_threshold.get("value", "nan"))))
    except (TypeError, ValueError):
        return False
    return payload_threshold.get("type") == threshold.type.value and value == threshold.value
