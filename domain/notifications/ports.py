"""What the notifications area needs from outside; adapters/ implements these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain.notifications.models import (
    Channel,
    DeliveryAttempt,
    DeliveryState,
    DeliveryStatus,
    Event,
    EventFilter,
    EventType,
    FeatureRef,
    Page,
    PagedResult,
    Rule,
    SortOrder,
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery: the status, its event (with its rule as it is now, None if gone) and the
    channel to deliver to (None if gone)."""

    status: DeliveryStatus
    event: Event
    channel: Channel | None


class NotificationRepository(Protocol):
    # Channels.
    async def create_channel(self, channel: Channel) -> None: ...

    async def update_channel(self, channel: Channel) -> None: ...

    async def get_channel(self, namespace: str, channel_id: str) -> Channel | None: ...

    async def get_channels(self, namespace: str, channel_ids: Sequence[str]) -> list[Channel]: ...

    async def list_channels(
        self,
        namespace: str,
        *,
        include_deleted: bool,
        include_disabled: bool,
        page: Page,
        order: SortOrder,
        order_by: str,
    ) -> PagedResult[Channel]: ...

    # Rules.
    async def create_rule(self, rule: Rule) -> None: ...

    async def update_rule(self, rule: Rule) -> None: ...

    async def get_rule(self, namespace: str, rule_id: str) -> Rule | None: ...

    async def list_rules(
        self,
        namespace: str,
        *,
        include_deleted: bool,
        include_disabled: bool,
        types: Sequence[EventType] = (),
        features: Sequence[str] = (),
        channels: Sequence[str] = (),
        page: Page | None = None,
        order: SortOrder = SortOrder.ASC,
        order_by: str = "id",
    ) -> PagedResult[Rule]: ...

    # Events.
    async def create_event(self, event: Event, channel_ids: Sequence[str]) -> Event:
        """Stores the event with a PENDING delivery status per channel; returns it as stored."""
        ...

    async def get_event(self, namespace: str, event_id: str) -> Event | None: ...

    async def list_events(
        self, namespace: str, filter: EventFilter, page: Page, order: SortOrder, order_by: str
    ) -> PagedResult[Event]: ...

    async def event_seq(self, namespace: str, event_id: str) -> int | None: ...

    async def events_after(
        self, namespace: str, after_seq: int, types: Sequence[EventType], limit: int
    ) -> list[Event]: ...

    # Delivery.
    async def resend(
        self, namespace: str, event_id: str, channel_ids: Sequence[str], now: datetime, reason: str
    ) -> int:
        """Moves the event's SENDING/SUCCESS/FAILED statuses on these channels to RESENDING."""
        ...

    async def claim_due(
        self, namespaces: Sequence[str] | None, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        """Active statuses due by `now` (in these namespaces; None: every namespace), leased until `lease_until` (version bumped) so no other
        worker takes them; a worker that dies leaves them due again when the lease ends."""
        ...

    async def record_attempt(
        self,
        status: DeliveryStatus,
        *,
        state: DeliveryState,
        reason: str,
        next_attempt: datetime | None,
        sending_since: datetime | None,
        attempt: DeliveryAttempt | None,
        now: datetime,
    ) -> bool:
        """Saves the outcome if the status is still at `status.version`; else only appends the
        attempt (someone resent it meanwhile). Returns whether the state was saved."""
        ...


class FeatureResolver(Protocol):
    """Looks features up by ID or key (the entitlements area provides it once it exists)."""

    async def resolve(self, namespace: str, ids_or_keys: Sequence[str]) -> Mapping[str, FeatureRef]: ...


class SubjectResolver(Protocol):
    """A subject entity in OpenMeter's REST shape (id, key, createdAt, ...) by key, or None."""

    async def subject(self, namespace: str, key: str) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why Tally will not call a webhook URL."""

    message: str
    # The destination policy (notify.allow_private_destinations, notify.allowed_hosts) refuses it:
    # only a configuration change helps, so a channel with it is refused and a delivery not retried.
    # False for passing trouble such as a name that does not resolve right now.
    by_policy: bool


class DestinationPolicy(Protocol):
    async def refusal(self, url: str) -> Refusal | None:
        """Why this URL may not be called, or None."""
        ...


@dataclass(frozen=True, slots=True)
class SendResult:
    status_code: int | None
    body: str
    duration_ms: int
    # Set when no response arrived (connection refused, timeout, refused destination).
    error: str | None = None
    # The destination policy refused the URL; nothing was sent, and retrying cannot help.
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender(Protocol):
    async def send(self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float) -> SendResult: ...
