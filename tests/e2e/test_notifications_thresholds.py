"""Balance thresholds end to end, in process: entitlement snapshots published on the domain-event
hub become notification events exactly as OpenMeter decides them, and the notify worker delivers
each one, signed, to a real receiver (over real Postgres and HTTP).

The snapshots are published here directly (the entitlements area publishes the same events from
the balance worker); once entitlements are wired, the same crossings also run through real ingest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest_asyncio

from adapters.bus.hub import InProcessHub
from adapters.postgres.db import create_engine, migrate, session_factory
from adapters.postgres.notifications import PostgresNotificationRepository
from adapters.webhooks.http import HttpxWebhookSender
from domain.entitlements.events import BalanceSnapshotEvent, EntitlementResetEvent
from domain.notifications.delivery import RetryPolicy
from domain.notifications.models import (
    ChannelInput,
    DeliveryState,
    EventType,
    ListEventsInput,
    RuleInput,
    ThresholdInput,
)
from domain.notifications.service import NotificationService
from tests.support.stack import create_database, wait_for
from tests.support.webhooks import WebhookReceiver
from workers.notify import NotifyWorker

NS = "default"
PERIOD = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Harness:
    repository: PostgresNotificationRepository
    service: NotificationService
    hub: InProcessHub
    receiver: WebhookReceiver
    worker: NotifyWorker


@pytest_asyncio.fixture
async def harness(postgres_ready: None) -> AsyncIterator[Harness]:
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=4)
    repository = PostgresNotificationRepository(session_factory(engine))
    receiver = await WebhookReceiver().start()
    sender = HttpxWebhookSender(allowed_hosts=["127.0.0.1"])
    worker = NotifyWorker(
        repository,
        sender,
        [NS],
        RetryPolicy(initial=timedelta(milliseconds=200), maximum=timedelta(seconds=1)),
        timeout=timedelta(seconds=2),
        poll_interval=timedelta(milliseconds=100),
    )
    service = NotificationService(repository, on_event_created=worker.wake)
    hub = InProcessHub()
    hub.subscribe(BalanceSnapshotEvent, service.on_balance_snapshot)
    hub.subscribe(EntitlementResetEvent, service.on_entitlement_reset)
    await worker.start()
    yield Harness(repository, service, hub, receiver, worker)
    await worker.stop()
    await sender.close()
    await receiver.stop()
    await engine.dispose()


def snapshot(
    usage: float, total: float = 100, period: datetime = PERIOD, feature: str = "tokens"
) -> BalanceSnapshotEvent:
    used, granted = Decimal(repr(usage)), Decimal(repr(total))
    balance = max(granted - used, Decimal(0))
    overage = max(used - granted, Decimal(0))
    end = period + timedelta(days=31)
    return BalanceSnapshotEvent(
        namespace=NS,
        entitlement_id="01JENT0000000000000000000A",
        feature_id="01JFEAT000000000000000000A",
        feature_key=feature,
        subject_key="customer-1",
        customer_id=None,
        at=period + timedelta(days=1),
        period_start=period,
        period_end=end,
        balance=balance,
        usage=used,
        overage=overage,
        total_available_grant_amount=granted,
        has_access=balance > 0,
        entitlement={"id": "01JENT0000000000000000000A", "type": "metered", "measureUsageFrom": "2026-01-01T00:00:00Z"},
        feature={"id": "01JFEAT000000000000000000A", "key": feature},
        subject={"key": "customer-1"},
        customer=None,
    )


async def hook(h: Harness, path: str, rule: RuleInput) -> str:
    channel = await h.service.create_channel(NS, ChannelInput(type="WEBHOOK", name=path, url=h.receiver.url(path)))
    h.receiver.secrets[path] = channel.signing_secret
    created = await h.service.create_rule(NS, replace(rule, channels=[channel.id]))
    return created.id


def thresholds_of(deliveries: list[Any]) -> list[dict[str, Any]]:
    return [d.body["data"]["threshold"] for d in deliveries]


async def test_one_delivery_per_threshold_crossing_per_period(harness: Harness) -> None:
    h = harness
    rule_id = await hook(
        h,
        "/thresholds",
        RuleInput(
            type="entitlements.balance.threshold",
            name="alerts",
            channels=[],
            thresholds=[
                ThresholdInput(50, "usage_percentage"),
                ThresholdInput(75, "usage_percentage"),
                ThresholdInput(10, "balance_value"),
            ],
        ),
    )
    for usage in (40, 60, 65, 60, 80, 85):
        await h.hub.publish(snapshot(usage))
    got = await h.receiver.wait_for("/thresholds", 2)
    assert thresholds_of(got) == [
        {"value": 50, "type": "usage_percentage"},
        {"value": 75, "type": "usage_percentage"},
    ]
    # Balance 5 < 10: the balance kind fires on its own; usage stays at 75%.
    await h.hub.publish(snapshot(95))
    await h.hub.publish(snapshot(96))
    got = await h.receiver.wait_for("/thresholds", 3)
    assert thresholds_of(got)[2] == {"value": 10, "type": "balance_value"}
    # No grants: nothing is evaluated.
    await h.hub.publish(snapshot(500, total=0))
    # A new usage period notifies again.
    await h.hub.publish(snapshot(60, period=PERIOD + timedelta(days=31)))
    got = await h.receiver.wait_for("/thresholds", 4)

    async def settled() -> bool:
        events = await h.service.list_events(NS, ListEventsInput(rules=[rule_id]))
        states = [s.state for e in events.items for s in e.delivery_statuses]
        return len(states) == 4 and all(s is DeliveryState.SUCCESS for s in states)

    await wait_for(settled, timeout=10)
    deliveries = h.receiver.to("/thresholds")
    assert len(deliveries) == 4 and all(d.verified for d in deliveries)
    assert len({d.webhook_id for d in deliveries}) == 4
    body = deliveries[0].body
    assert body["type"] == "entitlements.balance.threshold"
    assert body["id"] == deliveries[0].webhook_id
    assert body["data"]["value"] == {
        "hasAccess": True,
        "balance": 40,
        "usage": 60,
        "overage": 0,
        "totalAvailableGrantAmount": 100,
    }
    assert body["data"]["subject"] == {"key": "customer-1"}
    assert body["data"]["feature"]["key"] == "tokens"

    events = await h.service.list_events(NS, ListEventsInput(rules=[rule_id], order="ASC"))
    annotations = events.items[0].annotations
    assert annotations["event.subject.key"] == "customer-1"
    assert annotations["event.feature.key"] == "tokens"
    assert annotations["event.balance.dedupe.hash"].startswith("bsnap_v2_")


async def test_feature_scoped_rules_and_resets(harness: Harness) -> None:
    h = harness
    await hook(
        h,
        "/scoped",
        RuleInput(
            type="entitlements.balance.threshold",
            name="other feature",
            channels=[],
            thresholds=[ThresholdInput(1, "usage_value")],
            features=["images"],
        ),
    )
    reset_rule = await hook(h, "/resets", RuleInput(type="entitlements.reset", name="resets", channels=[]))
    await h.hub.publish(snapshot(60))
    reset = EntitlementResetEvent(
        namespace=NS,
        entitlement_id="01JENT0000000000000000000A",
        feature_key="tokens",
        subject_key="customer-1",
        customer_id=None,
        reset_at=PERIOD,
        balance=Decimal(100),
        usage=Decimal(0),
        overage=Decimal(0),
        total_available_grant_amount=Decimal(100),
        has_access=True,
        entitlement={"id": "01JENT0000000000000000000A"},
        feature={"id": "01JFEAT000000000000000000A", "key": "tokens"},
        subject={"key": "customer-1"},
        customer=None,
    )
    await h.hub.publish(reset)
    await h.hub.publish(reset)  # announced twice, notified once
    [delivery] = await h.receiver.wait_for("/resets", 1)
    assert delivery.body["type"] == EventType.ENTITLEMENT_RESET.value
    assert delivery.verified
    await h.hub.publish(snapshot(70, feature="images"))
    await h.receiver.wait_for("/scoped", 1)
    events = await h.service.list_events(NS, ListEventsInput(rules=[reset_rule]))
    assert events.total_count == 1
    assert len(h.receiver.to("/resets")) == 1
    # The "tokens" snapshot did not reach the rule scoped to "images".
    assert [d.body["data"]["feature"]["key"] for d in h.receiver.to("/scoped")] == ["images"]


async def test_invoice_events_are_annotated_like_openmeters(harness: Harness) -> None:
    """invoice.* events carry OpenMeter's annotations (notification/consumer/invoice.go):
    event.invoice.id and event.invoice.number."""
    h = harness
    rule = await hook(h, "/invoices", RuleInput(type="invoice.created", name="invoices", channels=[]))
    invoice = {
        "id": "01JINV0000000000000000000A",
        "number": "INV-42",
        "status": "issued",
        "statusDetails": {"extendedStatus": "issued"},
        "customer": {"id": "01JCUS0000000000000000000A", "key": "acme"},
    }
    await h.service.on_invoice(NS, True, invoice)
    [event] = (await h.service.list_events(NS, ListEventsInput(rules=[rule]))).items
    assert event.annotations["event.invoice.id"] == invoice["id"]
    assert event.annotations["event.invoice.number"] == "INV-42"
    [delivery] = await h.receiver.wait_for("/invoices", 1)
    assert delivery.body["data"] == invoice


async def test_a_resend_is_stamped_in_utc_whatever_the_clock_s_zone(harness: Harness) -> None:
    """The event.resend.timestamp annotation is RFC 3339 UTC to the second, as OpenMeter writes it,
    also when the service's clock answers in another zone (the same instant)."""
    h = harness
    rule = await hook(h, "/resent", RuleInput(type="invoice.created", name="resent", channels=[]))
    await h.service.on_invoice(NS, True, {"id": "01JINV0000000000000000000B", "customer": {"key": "acme"}})
    await h.receiver.wait_for("/resent", 1)

    async def delivered() -> Any:
        [event] = (await h.service.list_events(NS, ListEventsInput(rules=[rule]))).items
        return event if event.delivery_statuses[0].state is DeliveryState.SUCCESS else None

    event = await wait_for(delivered)
    plus_two = timezone(timedelta(hours=2))
    elsewhere = NotificationService(h.repository, clock=lambda: datetime(2026, 11, 1, 2, 0, 5, 750000, tzinfo=plus_two))
    await elsewhere.resend_event(NS, event.id, [])
    [status] = (await h.service.get_event(NS, event.id)).delivery_statuses
    assert status.annotations["event.resend.timestamp"] == "2026-11-01T00:00:05Z"
