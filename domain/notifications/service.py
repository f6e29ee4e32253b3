"""NotificationService: channels, rules, events and resends, and the entitlement events that become
notification events (balance thresholds, resets).

Events are created here and stored with a PENDING delivery status per channel; delivering them is
the notify worker's job (workers/notify.py), so nothing here waits on a receiver.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import structlog
from ulid import ULID

from domain.entitlements.events import BalanceSnapshotEvent, EntitlementResetEvent
from domain.errors import ConflictError, NotFoundError, ValidationError
from domain.notifications import samples
from domain.notifications.models import (
    ANNOTATION_CUSTOMER_ID,
    ANNOTATION_CUSTOMER_KEY,
    ANNOTATION_DEDUPE_HASH,
    ANNOTATION_FEATURE_ID,
    ANNOTATION_FEATURE_KEY,
    ANNOTATION_INVOICE_ID,
    ANNOTATION_INVOICE_NUMBER,
    ANNOTATION_INVOICE_STATUS,
    ANNOTATION_RULE_TEST,
    ANNOTATION_SUBJECT_ID,
    ANNOTATION_SUBJECT_KEY,
    ULID_RE,
    Channel,
    ChannelInput,
    Event,
    EventFilter,
    EventType,
    FeatureRef,
    ListChannelsInput,
    ListEventsInput,
    ListRulesInput,
    Page,
    PagedResult,
    Rule,
    RuleInput,
    SortOrder,
    new_signing_secret,
)
from domain.notifications.ports import DestinationPolicy, FeatureResolver, NotificationRepository, SubjectResolver
from domain.notifications.thresholds import (
    DedupeKey,
    EntitlementValue,
    active_thresholds,
    same_threshold,
)
from domain.wiretime import rfc3339

log = structlog.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _number(value: Decimal) -> int | float:
    """A JSON number for a Decimal (OpenMeter sends float64s)."""
    return int(value) if value == value.to_integral_value() else float(value)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class NotificationService:
    def __init__(
        self,
        repository: NotificationRepository,
        features: FeatureResolver | None = None,
        on_event_created: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = _now,
        destinations: DestinationPolicy | None = None,
        subjects: SubjectResolver | None = None,
    ) -> None:
        self._repo = repository
        self._subjects = subjects
        self._destinations = destinations
        self._features = features
        self._on_event_created = on_event_created
        self._clock = clock
        # Serializes threshold decisions per dedupe hash inside this process (the balance worker
        # handles an entitlement in one place, so this is the race that matters); striped, so bounded.
        self._locks = [asyncio.Lock() for _ in range(64)]

    def set_feature_resolver(self, features: FeatureResolver) -> None:
        self._features = features

    # -- channels ------------------------------------------------------------------------------------

    async def _check_destination(self, url: str) -> None:
        """A URL the destination policy refuses would fail every delivery: refuse the channel instead."""
        refusal = await self._destinations.refusal(url) if self._destinations is not None else None
        if refusal is not None and refusal.by_policy:
            raise ValidationError.single("url", refusal.message, "destination_refused")

    async def create_channel(self, namespace: str, data: ChannelInput) -> Channel:
        channel_type = data.validate()
        await self._check_destination(data.url)
        now = self._clock()
        channel = Channel(
            namespace=namespace,
            id=str(ULID()),
            type=channel_type,
            name=data.name,
            disabled=data.disabled,
            url=data.url,
            custom_headers=dict(data.custom_headers),
            signing_secret=data.signing_secret or new_signing_secret(),
            metadata=dict(data.metadata),
            annotations={},
            created_at=now,
            updated_at=now,
        )
        await self._repo.create_channel(channel)
        return channel

    async def get_channel(self, namespace: str, channel_id: str) -> Channel:
        channel = await self._repo.get_channel(namespace, channel_id) if ULID_RE.match(channel_id) else None
        if channel is None:
            raise NotFoundError("notification channel", channel_id)
        return channel

    async def update_channel(self, namespace: str, channel_id: str, data: ChannelInput) -> Channel:
        current = await self.get_channel(namespace, channel_id)
        data.validate()
        if current.deleted_at is not None:
            # OpenMeter's UpdateAfterDeleteError: 409, not a validation error.
            raise ConflictError("a deleted notification channel cannot be updated", current.id)
        await self._check_destination(data.url)
        channel = replace(
            current,
            name=data.name,
            disabled=data.disabled,
            url=data.url,
            custom_headers=dict(data.custom_headers),
            signing_secret=data.signing_secret or current.signing_secret,
            metadata=dict(data.metadata),
            updated_at=self._clock(),
        )
        await self._repo.update_channel(channel)
        return channel

    async def delete_channel(self, namespace: str, channel_id: str) -> None:
        current = await self.get_channel(namespace, channel_id)
        if current.deleted_at is not None:
            return
        using = await self._repo.list_rules(
            namespace, include_deleted=False, include_disabled=True, channels=[channel_id]
        )
        if using.total_count:
            ids = ", ".join(rule.id for rule in using.items)
            raise ValidationError.single(
                "channelId", f"the channel is used by notification rules: {ids}", "channel_in_use"
            )
        now = self._clock()
        await self._repo.update_channel(replace(current, deleted_at=now, updated_at=now))

    async def list_channels(self, namespace: str, data: ListChannelsInput) -> PagedResult[Channel]:
        page, order, order_by = data.validate()
        return await self._repo.list_channels(
            namespace,
            include_deleted=data.include_deleted,
            include_disabled=data.include_disabled,
            page=page,
            order=order,
            order_by=order_by,
        )

    # -- rules ---------------------------------------------------------------------------------------

    async def _check_channels(self, namespace: str, channel_ids: Sequence[str]) -> None:
        found = {c.id for c in await self._repo.get_channels(namespace, channel_ids) if c.deleted_at is None}
        missing = [c for c in channel_ids if c not in found]
        if missing:
            raise ValidationError.single("channels", f"non-existing channels: {', '.join(missing)}", "not_found")

    async def _resolve_features(self, namespace: str, features: Sequence[str]) -> tuple[FeatureRef, ...]:
        if not features:
            return ()
        if self._features is None:
            # No feature catalogue in this process: keep the reference as both ID and key; matching
            # compares either, so the rule still applies to the feature it names.
            return tuple(FeatureRef(id=f, key=f) for f in features)
        resolved = await self._features.resolve(namespace, features)
        missing = [f for f in features if f not in resolved]
        if missing:
            raise ValidationError.single("features", f"non-existing features: {', '.join(missing)}", "not_found")
        return tuple(resolved[f] for f in features)

    async def create_rule(self, namespace: str, data: RuleInput) -> Rule:
        rule_type, thresholds = data.validate()
        await self._check_channels(namespace, data.channels)
        features = await self._resolve_features(namespace, data.features)
        now = self._clock()
        rule = Rule(
            namespace=namespace,
            id=str(ULID()),
            type=rule_type,
            name=data.name,
            disabled=data.disabled,
            channel_ids=tuple(data.channels),
            thresholds=thresholds,
            features=features,
            metadata=dict(data.metadata),
            annotations={},
            created_at=now,
            updated_at=now,
        )
        await self._repo.create_rule(rule)
        return rule

    async def get_rule(self, namespace: str, rule_id: str) -> Rule:
        rule = await self._repo.get_rule(namespace, rule_id) if ULID_RE.match(rule_id) else None
        if rule is None:
            raise NotFoundError("notification rule", rule_id)
        return rule

    async def update_rule(self, namespace: str, rule_id: str, data: RuleInput) -> Rule:
        current = await self.get_rule(namespace, rule_id)
        rule_type, thresholds = data.validate()
        if current.deleted_at is not None:
            raise ConflictError("a deleted notification rule cannot be updated", current.id)
        if rule_type is not current.type:
            raise ValidationError.single("type", f"cannot change rule type {current.type} to {rule_type}", "immutable")
        await self._check_channels(namespace, data.channels)
        features = await self._resolve_features(namespace, data.features)
        rule = replace(
            current,
            name=data.name,
            disabled=data.disabled,
            channel_ids=tuple(data.channels),
            thresholds=thresholds,
            features=features,
            metadata=dict(data.metadata),
            updated_at=self._clock(),
        )
        await self._repo.update_rule(rule)
        return rule

    async def delete_rule(self, namespace: str, rule_id: str) -> None:
        current = await self.get_rule(namespace, rule_id)
        if current.deleted_at is None:
            now = self._clock()
            await self._repo.update_rule(replace(current, deleted_at=now, updated_at=now))

    async def list_rules(self, namespace: str, data: ListRulesInput) -> PagedResult[Rule]:
        page, order, order_by = data.validate()
        return await self._repo.list_rules(
            namespace,
            include_deleted=data.include_deleted,
            include_disabled=data.include_disabled,
            features=data.features,
            channels=data.channels,
            page=page,
            order=order,
            order_by=order_by,
        )

    async def test_rule(self, namespace: str, rule_id: str) -> Event:
        """A real event with sample data for the rule, delivered like any other."""
        rule = await self.get_rule(namespace, rule_id)
        if rule.deleted_at is not None:
            raise NotFoundError("notification rule", rule_id)
        event_id = str(ULID())
        now = self._clock()
        data = samples.sample_data(rule, now)
        return await self._create_event(rule, event_id, now, data, {ANNOTATION_RULE_TEST: True})

    # -- events --------------------------------------------------------------------------------------

    async def _create_event(
        self, rule: Rule, event_id: str, now: datetime, data: dict[str, Any], annotations: dict[str, Any]
    ) -> Event:
        if rule.disabled:
            raise ValidationError.single("ruleId", "the rule is disabled", "rule_disabled")
        channels = [
            c
            for c in await self._repo.get_channels(rule.namespace, rule.channel_ids)
            if c.deleted_at is None and not c.disabled
        ]
        payload = {"id": event_id, "type": rule.type.value, "timestamp": rfc3339(now), "data": data}
        event = Event(
            namespace=rule.namespace,
            id=event_id,
            type=rule.type,
            created_at=now,
            rule_id=rule.id,
            payload=payload,
            annotations=annotations,
        )
        stored = await self._repo.create_event(event, [c.id for c in channels])
        if self._on_event_created is not None:
            self._on_event_created()
        return replace(stored, rule=rule)

    async def get_event(self, namespace: str, event_id: str) -> Event:
        event = await self._repo.get_event(namespace, event_id)
        if event is None:
            raise NotFoundError("notification event", event_id)
        return event

    async def list_events(self, namespace: str, data: ListEventsInput) -> PagedResult[Event]:
        page, order, order_by = data.validate()
        filter = EventFilter(
            from_=data.from_,
            to=data.to,
            features=data.features,
            subjects=data.subjects,
            rules=data.rules,
            channels=data.channels,
        )
        return await self._repo.list_events(namespace, filter, page, order, order_by)

    async def resend_event(self, namespace: str, event_id: str, channel_ids: Sequence[str]) -> None:
        event = await self.get_event(namespace, event_id)
        by_id = {
            c.id: c for c in await self._repo.get_channels(namespace, [s.channel_id for s in event.delivery_statuses])
        }
        # OpenMeter resends only to channels the event's rule still sends to.
        on_rule = set(event.rule.channel_ids) if event.rule is not None else set()
        problems: list[str] = []
        for channel_id in channel_ids:
            channel = by_id.get(channel_id)
            if channel is None or channel.deleted_at is not None or channel_id not in on_rule:
                problems.append(f"channel {channel_id} not found")
            elif channel.disabled:
                problems.append(f"channel {channel_id} is disabled")
        if problems:
            raise ValidationError.single("channels", "; ".join(problems), "invalid_channel")
        targets = [
            cid
            for cid, channel in by_id.items()
            if (not channel_ids or cid in channel_ids) and not channel.disabled and channel.deleted_at is None
        ]
        await self._repo.resend(namespace, event_id, targets, self._clock(), "event re-send was triggered")
        if self._on_event_created is not None:
            self._on_event_created()

    async def event_seq(self, namespace: str, event_id: str) -> int:
        seq = await self._repo.event_seq(namespace, event_id)
        if seq is None:
            raise NotFoundError("notification event", event_id)
        return seq

    async def events_after(self, namespace: str, after_seq: int, types: Sequence[str], limit: int = 100) -> list[Event]:
        kinds: list[EventType] = []
        for index, value in enumerate(types):
            try:
                kinds.append(EventType(value))
            except ValueError:
                raise ValidationError.single(f"types[{index}]", "unknown event type", "invalid_event_type") from None
        return await self._repo.events_after(namespace, after_seq, kinds, limit)

    # -- entitlement events --------------------------------------------------------------------------

    async def _rules_for(self, namespace: str, rule_type: EventType, feature_id: str, feature_key: str) -> list[Rule]:
        rules = await self._repo.list_rules(namespace, include_deleted=False, include_disabled=False, types=[rule_type])
        return [r for r in rules.items if r.applies_to_feature(feature_id, feature_key)]

    async def on_balance_snapshot(self, snapshot: BalanceSnapshotEvent) -> None:
        value = EntitlementValue(
            balance=snapshot.balance,
            usage=snapshot.usage,
            overage=snapshot.overage,
            total_available_grant_amount=snapshot.total_available_grant_amount,
        )
        if value.total_available_grant_amount <= 0:
            return
        rules = await self._rules_for(
            snapshot.namespace, EventType.BALANCE_THRESHOLD, snapshot.feature_id, snapshot.feature_key
        )
        for rule in rules:
            try:
                await self._balance_rule(snapshot, value, rule)
            except Exception:
                log.exception("balance threshold rule failed", rule=rule.id, entitlement=snapshot.entitlement_id)

    async def _balance_rule(self, snapshot: BalanceSnapshotEvent, value: EntitlementValue, rule: Rule) -> None:
        measure_from = _parse_time(snapshot.entitlement.get("measureUsageFrom"))
        for kind, threshold in active_thresholds(rule.thresholds, value).items():
            dedupe = DedupeKey(
                kind=kind,
                rule_id=rule.id,
                namespace=snapshot.namespace,
                period_from=snapshot.period_start,
                period_to=snapshot.period_end,
                subject_key=snapshot.subject_key,
                entitlement_id=snapshot.entitlement_id,
                feature_id=snapshot.feature_id,
                measure_usage_from=measure_from,
            ).hash()
            async with self._locks[int(hashlib.sha1(dedupe.encode(), usedforsecurity=False).hexdigest()[:8], 16) % 64]:
                # OpenMeter also limits the lookup to events created within the period; the hash
                # already names the period, and a snapshot processed late must not notify twice.
                last = await self._repo.list_events(
                    snapshot.namespace,
                    EventFilter(dedupe_hashes=[dedupe]),
                    Page(1, 1),
                    SortOrder.DESC,
                    "createdAt",
                )
                if last.items:
                    previous = last.items[0]
                    if previous.type is EventType.BALANCE_THRESHOLD and same_threshold(
                        previous.payload.get("data", {}).get("threshold"), threshold
                    ):
                        continue
                subject = await self._subject(snapshot)
                data = self._value_payload(snapshot, subject)
                data["threshold"] = threshold.to_json()
                annotations = self._annotations(snapshot, subject)
                annotations[ANNOTATION_DEDUPE_HASH] = dedupe
                await self._create_event(rule, str(ULID()), self._clock(), data, annotations)

    # -- invoice events ------------------------------------------------------------------------------

    async def on_invoice(self, namespace: str, created: bool, invoice: dict[str, Any]) -> None:
        """invoice.created / invoice.updated: every enabled rule of the type (they have no scope)
        gets an event whose data is the invoice as the API shows it (OpenMeter's payload)."""
        rule_type = EventType.INVOICE_CREATED if created else EventType.INVOICE_UPDATED
        rules = await self._repo.list_rules(namespace, include_deleted=False, include_disabled=False, types=[rule_type])
        customer = invoice.get("customer") or {}
        annotations: dict[str, Any] = {
            ANNOTATION_INVOICE_ID: invoice.get("id"),
            ANNOTATION_INVOICE_NUMBER: invoice.get("number"),
            ANNOTATION_INVOICE_STATUS: (invoice.get("statusDetails") or {}).get("extendedStatus"),
            ANNOTATION_CUSTOMER_ID: customer.get("id"),
        }
        if customer.get("key"):
            annotations[ANNOTATION_CUSTOMER_KEY] = customer["key"]
        failed: Exception | None = None
        for rule in rules.items:
            try:
                await self._create_event(rule, str(ULID()), self._clock(), invoice, dict(annotations))
            except Exception as exc:
                log.exception("invoice rule failed", rule=rule.id, invoice=invoice.get("id"))
                failed = exc
        if failed is not None:
            # The other rules have their events; the invoice's owed notification stays recorded and
            # the billing worker tells it again (its rules may then hear it twice, never not at all).
            raise failed

    async def on_entitlement_reset(self, reset: EntitlementResetEvent) -> None:
        feature_id = str(reset.feature.get("id") or "")
        rules = await self._rules_for(reset.namespace, EventType.ENTITLEMENT_RESET, feature_id, reset.feature_key)
        for rule in rules:
            # One event per rule, entitlement and reset, however often the reset is announced.
            source = "/".join((rule.id, reset.namespace, reset.entitlement_id, rfc3339(reset.reset_at)))
            dedupe = "reset_v1_" + hashlib.sha256(source.encode()).hexdigest()
            try:
                existing = await self._repo.list_events(
                    reset.namespace, EventFilter(dedupe_hashes=[dedupe]), Page(1, 1), SortOrder.DESC, "createdAt"
                )
                if existing.items:
                    continue
                subject = await self._subject(reset)
                data = self._value_payload(reset, subject)
                annotations = self._annotations(reset, subject)
                annotations[ANNOTATION_DEDUPE_HASH] = dedupe
                await self._create_event(rule, str(ULID()), self._clock(), data, annotations)
            except Exception:
                log.exception("entitlement reset rule failed", rule=rule.id, entitlement=reset.entitlement_id)

    async def _subject(self, source: BalanceSnapshotEvent | EntitlementResetEvent) -> dict[str, Any]:
        """The payload's subject: OpenMeter sends the API's Subject (id, key, createdAt, updatedAt,
        displayName, metadata) when the usage subject exists as a subject entity; else its key.
        Looked up here, only when an event is made, not on every balance recomputation."""
        found = await self._subjects.subject(source.namespace, source.subject_key) if self._subjects else None
        return dict(found) if found is not None else dict(source.subject)

    @staticmethod
    def _value_payload(source: BalanceSnapshotEvent | EntitlementResetEvent, subject: dict[str, Any]) -> dict[str, Any]:
        """OpenMeter's EntitlementValuePayloadBase: the entitlement, feature, subject, customer and value."""
        data: dict[str, Any] = {
            "entitlement": dict(source.entitlement),
            "feature": dict(source.feature),
            "subject": subject,
            "value": {
                "hasAccess": source.has_access,
                "balance": _number(source.balance),
                "usage": _number(source.usage),
                "overage": _number(source.overage),
                "totalAvailableGrantAmount": _number(source.total_available_grant_amount),
            },
        }
        if source.customer is not None:
            data["customer"] = dict(source.customer)
        return data

    @staticmethod
    def _annotations(source: BalanceSnapshotEvent | EntitlementResetEvent, subject: dict[str, Any]) -> dict[str, Any]:
        annotations: dict[str, Any] = {
            ANNOTATION_SUBJECT_KEY: source.subject_key,
            ANNOTATION_FEATURE_KEY: source.feature_key,
        }
        feature_id = source.feature.get("id") or getattr(source, "feature_id", None)
        if feature_id:
            annotations[ANNOTATION_FEATURE_ID] = feature_id
        subject_id = subject.get("id")
        if subject_id:
            annotations[ANNOTATION_SUBJECT_ID] = subject_id
        if source.customer_id:
            annotations[ANNOTATION_CUSTOMER_ID] = source.customer_id
        if source.customer is not None and source.customer.get("key"):
            annotations[ANNOTATION_CUSTOMER_KEY] = source.customer["key"]
        return annotations
