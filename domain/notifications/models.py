"""Notifications' domain types: channels, rules, events with their delivery status, and the inputs
that create, change or list them (each validating itself, reporting every bad field at once)."""

from __future__ import annotations

import base64
import binascii
import enum
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from domain.errors import Violations

ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")
FEATURE_REF_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$|^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")
SIGNING_SECRET_RE = re.compile(r"^(whsec_)?[a-zA-Z0-9+/=]{32,100}$")
SIGNING_SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
MAX_NAME_LENGTH = 256
MAX_CHANNELS_PER_RULE = 5
MAX_THRESHOLDS = 10
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

# Annotations OpenMeter puts on events (models.Annotations keys).
ANNOTATION_RULE_TEST = "notification.rule.test"
ANNOTATION_FEATURE_KEY = "event.feature.key"
ANNOTATION_FEATURE_ID = "event.feature.id"
ANNOTATION_SUBJECT_KEY = "event.subject.key"
ANNOTATION_SUBJECT_ID = "event.subject.id"
ANNOTATION_CUSTOMER_ID = "event.customer.id"
ANNOTATION_CUSTOMER_KEY = "event.customer.key"
ANNOTATION_DEDUPE_HASH = "event.balance.dedupe.hash"
ANNOTATION_RESEND_TIMESTAMP = "event.resend.timestamp"
ANNOTATION_INVOICE_ID = "event.invoice.id"
ANNOTATION_INVOICE_NUMBER = "event.invoice.number"
ANNOTATION_INVOICE_STATUS = "event.invoice.status"


T = TypeVar("T")


class ChannelType(enum.StrEnum):
    WEBHOOK = "WEBHOOK"


class EventType(enum.StrEnum):
    """A rule's type is the type of the events it produces."""

    BALANCE_THRESHOLD = "entitlements.balance.threshold"
    ENTITLEMENT_RESET = "entitlements.reset"
    INVOICE_CREATED = "invoice.created"
    INVOICE_UPDATED = "invoice.updated"

    @property
    def has_features(self) -> bool:
        return self in (EventType.BALANCE_THRESHOLD, EventType.ENTITLEMENT_RESET)


class ThresholdType(enum.StrEnum):
    USAGE_VALUE = "usage_value"
    USAGE_PERCENTAGE = "usage_percentage"
    BALANCE_VALUE = "balance_value"
    # Deprecated spellings of usage_value and usage_percentage, still accepted and kept as given.
    NUMBER = "NUMBER"
    PERCENT = "PERCENT"


class DeliveryState(enum.StrEnum):
    PENDING = "PENDING"
    SENDING = "SENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    RESENDING = "RESENDING"

    @property
    def active(self) -> bool:
        """Still owed to the receiver: the notify worker works on it."""
        return self in (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.RESENDING)


class SortOrder(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"


def new_signing_secret() -> str:
    """OpenMeter's generated secret: whsec_ + base64 of 32 random bytes."""
    return SIGNING_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SIGNING_SECRET_PREFIX))


def _standard_base64(value: str) -> bool:
    """Whether Go's base64.StdEncoding (OpenMeter's check) decodes it: padded to whole quanta, padding
    only at the end. Python's default decode stops at the first padding and ignores what follows, so
    it would sign with a shorter key than the receiver's library derives."""
    if len(value) % 4:
        return False
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Threshold:
    value: Decimal
    type: ThresholdType

    def to_json(self) -> dict[str, Any]:
        value = int(self.value) if self.value == self.value.to_integral_value() else float(self.value)
        return {"value": value, "type": self.type.value}


@dataclass(frozen=True, slots=True)
class FeatureRef:
    id: str
    key: str


@dataclass(frozen=True, slots=True)
class Channel:
    namespace: str
    id: str
    type: ChannelType
    name: str
    disabled: bool
    url: str
    custom_headers: dict[str, str]
    signing_secret: str
    metadata: dict[str, str]
    annotations: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    namespace: str
    id: str
    type: EventType
    name: str
    disabled: bool
    channel_ids: tuple[str, ...]
    thresholds: tuple[Threshold, ...]
    features: tuple[FeatureRef, ...]
    metadata: dict[str, str]
    annotations: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    def applies_to_feature(self, feature_id: str, feature_key: str) -> bool:
        if not self.features:
            return True
        return any(ref.id == feature_id or ref.key == feature_key for ref in self.features)


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    state: DeliveryState
    timestamp: datetime
    status_code: int | None
    body: str
    duration_ms: int
    url: str | None


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    namespace: str
    id: str
    event_id: str
    channel_id: str
    state: DeliveryState
    reason: str
    created_at: datetime
    updated_at: datetime
    next_attempt: datetime | None
    # Oldest first (the API shows them newest first).
    attempts: tuple[DeliveryAttempt, ...]
    annotations: dict[str, Any]
    # When the current run of attempts began (first send, or the last resend); the give-up deadline
    # for SENDING counts from here.
    sending_since: datetime | None
    # Bumped whenever the row changes hands (claimed by a worker, resent), so a worker whose claim
    # went stale cannot overwrite a newer state.
    version: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    namespace: str
    id: str
    type: EventType
    created_at: datetime
    rule_id: str
    payload: dict[str, Any]
    annotations: dict[str, Any]
    delivery_statuses: tuple[DeliveryStatus, ...] = ()
    # The rule as it is now (OpenMeter shows the current rule); None if it is gone.
    rule: Rule | None = None
    # Creation order, for the event stream.
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Page:
    number: int = 1
    size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


@dataclass(frozen=True, slots=True)
class PagedResult(Generic[T]):
    items: list[T]
    total_count: int
    page: Page


# -- inputs ------------------------------------------------------------------------------------------


def _page(violations: Violations, page: int | None, page_size: int | None) -> Page:
    number = page or 1
    size = page_size or DEFAULT_PAGE_SIZE
    if number < 1:
        violations.add("page", "must be at least 1", "invalid_page")
    if not 1 <= size <= MAX_PAGE_SIZE:
        violations.add("pageSize", f"must be between 1 and {MAX_PAGE_SIZE}", "invalid_page_size")
    return Page(max(number, 1), min(max(size, 1), MAX_PAGE_SIZE))


def _order(violations: Violations, order: str | None, default: SortOrder) -> SortOrder:
    if not order:
        return default
    try:
        return SortOrder(order.upper())
    except ValueError:
        violations.add("order", "must be ASC or DESC", "invalid_order")
        return default


def _order_by(violations: Violations, order_by: str | None, allowed: tuple[str, ...], default: str) -> str:
    if not order_by:
        return default
    if order_by not in allowed:
        violations.add("orderBy", f"must be one of {', '.join(allowed)}", "invalid_order_by")
        return default
    return order_by


def _check_name(violations: Violations, name: str) -> None:
    if not name.strip():
        violations.add("name", "is required", "required")
    elif len(name) > MAX_NAME_LENGTH:
        violations.add("name", f"must be at most {MAX_NAME_LENGTH} characters", "too_long")


@dataclass(frozen=True, slots=True)
class ChannelInput:
    """Create or update (replace) a channel. An absent signing secret is generated on create and kept on update."""

    type: str
    name: str
    url: str
    disabled: bool = False
    custom_headers: dict[str, str] = field(default_factory=dict)
    signing_secret: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def validate(self) -> ChannelType:
        violations = Violations()
        channel_type = ChannelType.WEBHOOK
        if self.type != ChannelType.WEBHOOK.value:
            violations.add("type", "must be WEBHOOK", "invalid_channel_type")
        _check_name(violations, self.name)
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            violations.add("url", "must be an absolute http or https URL", "invalid_url")
        if self.signing_secret is not None:
            if not SIGNING_SECRET_RE.match(self.signing_secret):
                violations.add(
                    "signingSecret", "must match ^(whsec_)?[a-zA-Z0-9+/=]{32,100}$", "invalid_signing_secret"
                )
            elif not _standard_base64(self.signing_secret.removeprefix(SIGNING_SECRET_PREFIX)):
                violations.add("signingSecret", "must be base64, optionally prefixed whsec_", "invalid_signing_secret")
        for name in self.custom_headers:
            if not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", name):
                violations.add(f"customHeaders.{name}", "is not a valid HTTP header name", "invalid_header")
            elif name.lower().startswith("webhook-"):
                violations.add(f"customHeaders.{name}", "webhook-* headers are set by the signature", "reserved_header")
        violations.raise_if_any()
        return channel_type


@dataclass(frozen=True, slots=True)
class ThresholdInput:
    value: float
    type: str


@dataclass(frozen=True, slots=True)
class RuleInput:
    """Create or update (replace) a rule. The type is immutable on update (checked by the service)."""

    type: str
    name: str
    channels: list[str]
    disabled: bool = False
    thresholds: list[ThresholdInput] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def validate(self) -> tuple[EventType, tuple[Threshold, ...]]:
        violations = Violations()
        try:
            rule_type = EventType(self.type)
        except ValueError:
            violations.add("type", f"must be one of {', '.join(t.value for t in EventType)}", "invalid_rule_type")
            violations.raise_if_any()
            raise  # unreachable: raise_if_any raised
        _check_name(violations, self.name)
        if not self.channels:
            violations.add("channels", "at least one channel is required", "required")
        elif len(self.channels) > MAX_CHANNELS_PER_RULE:
            violations.add("channels", f"at most {MAX_CHANNELS_PER_RULE} channels", "too_many")
        for index, channel in enumerate(self.channels):
            if not ULID_RE.match(channel):
                violations.add(f"channels[{index}]", "must be a channel ID (ULID)", "invalid_id")
        if len(set(self.channels)) != len(self.channels):
            violations.add("channels", "duplicated channels", "duplicated")
        if self.features and not rule_type.has_features:
            violations.add("features", f"not supported by {rule_type.value} rules", "not_supported")
        for index, feature in enumerate(self.features):
            if not FEATURE_REF_RE.match(feature) or len(feature) > 64:
                violations.add(f"features[{index}]", "must be a feature ID or key", "invalid_feature")
        if len(set(self.features)) != len(self.features):
            violations.add("features", "duplicated features", "duplicated")
        thresholds: list[Threshold] = []
        if rule_type is EventType.BALANCE_THRESHOLD:
            if not self.thresholds:
                violations.add("thresholds", "at least one threshold is required", "required")
            elif len(self.thresholds) > MAX_THRESHOLDS:
                violations.add("thresholds", f"at most {MAX_THRESHOLDS} thresholds", "too_many")
            for index, item in enumerate(self.thresholds):
                try:
                    kind = ThresholdType(item.type)
                except ValueError:
                    violations.add(
                        f"thresholds[{index}].type",
                        f"must be one of {', '.join(t.value for t in ThresholdType)}",
                        "invalid_threshold_type",
                    )
                    continue
                value = Decimal(repr(item.value))
                if not value.is_finite():
                    violations.add(f"thresholds[{index}].value", "must be a finite number", "invalid_threshold")
                elif kind is ThresholdType.BALANCE_VALUE and value < 0:
                    violations.add(
                        f"thresholds[{index}].value", "must be greater than or equal to 0", "invalid_threshold"
                    )
                elif kind is not ThresholdType.BALANCE_VALUE and value <= 0:
                    violations.add(f"thresholds[{index}].value", "must be greater than 0", "invalid_threshold")
                else:
                    thresholds.append(Threshold(value, kind))
        elif self.thresholds:
            violations.add("thresholds", f"not supported by {rule_type.value} rules", "not_supported")
        violations.raise_if_any()
        return rule_type, tuple(thresholds)


@dataclass(frozen=True, slots=True)
class ListChannelsInput:
    include_deleted: bool = False
    include_disabled: bool = False
    page: int | None = None
    page_size: int | None = None
    order: str | None = None
    order_by: str | None = None

    def validate(self) -> tuple[Page, SortOrder, str]:
        violations = Violations()
        page = _page(violations, self.page, self.page_size)
        order = _order(violations, self.order, SortOrder.DESC)
        order_by = _order_by(violations, self.order_by, ("id", "type", "createdAt", "updatedAt"), "id")
        violations.raise_if_any()
        return page, order, order_by


@dataclass(frozen=True, slots=True)
class ListRulesInput:
    include_deleted: bool = False
    include_disabled: bool = False
    features: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    page: int | None = None
    page_size: int | None = None
    order: str | None = None
    order_by: str | None = None

    def validate(self) -> tuple[Page, SortOrder, str]:
        violations = Violations()
        page = _page(violations, self.page, self.page_size)
        # OpenMeter lists rules oldest first by default (channels and events newest first).
        order = _order(violations, self.order, SortOrder.ASC)
        order_by = _order_by(violations, self.order_by, ("id", "type", "createdAt", "updatedAt"), "id")
        violations.raise_if_any()
        return page, order, order_by


@dataclass(frozen=True, slots=True)
class ListEventsInput:
    from_: datetime | None = None
    to: datetime | None = None
    features: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    page: int | None = None
    page_size: int | None = None
    order: str | None = None
    order_by: str | None = None

    def validate(self) -> tuple[Page, SortOrder, str]:
        violations = Violations()
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            violations.add("from", "must not be after to", "invalid_range")
        page = _page(violations, self.page, self.page_size)
        order = _order(violations, self.order, SortOrder.DESC)
        order_by = _order_by(violations, self.order_by, ("id", "createdAt"), "createdAt")
        violations.raise_if_any()
        return page, order, order_by


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What the repository filters events by (validated ListEventsInput, plus internal lookups)."""

    from_: datetime | None = None
    to: datetime | None = None
    features: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    dedupe_hashes: list[str] = field(default_factory=list)
