"""Notifications: channels, rules and events (api role), entitlement events turned into notification
events (wherever entitlements publish them), and webhook delivery (notify role)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from adapters.postgres.notifications import PostgresNotificationRepository
from adapters.webhooks.http import HttpxWebhookSender, WebhookDestinations
from domain.catalog.service import FeatureService
from domain.customers.service import SubjectService
from domain.entitlements.events import BalanceSnapshotEvent, EntitlementResetEvent
from domain.errors import NotFoundError
from domain.notifications.delivery import RetryPolicy
from domain.notifications.models import FeatureRef
from domain.notifications.service import NotificationService
from server.servicers.notifications import NotificationServicer
from server.wiring import Deps, Servicer
from tally.v1 import notifications_pb2_grpc
from workers.notify import NotifyWorker


class _FeatureLookup:
    """FeatureResolver over the catalogue: live (not archived) features by ID or key, as OpenMeter's
    ValidateRuleConfigWithFeatures lists them; what is not found is left out (the rule is refused)."""

    def __init__(self, features: FeatureService) -> None:
        self._features = features

    async def resolve(self, namespace: str, ids_or_keys: Sequence[str]) -> Mapping[str, FeatureRef]:
        found: dict[str, FeatureRef] = {}
        for ref in ids_or_keys:
            try:
                feature = await self._features.get_live(namespace, ref)
            except NotFoundError:
                continue
            found[ref] = FeatureRef(id=str(feature.id), key=str(feature.key))
        return found


class _SubjectLookup:
    """SubjectResolver over the subjects service: the subject entity's REST shape by key."""

    def __init__(self, subjects: SubjectService) -> None:
        self._subjects = subjects

    async def subject(self, namespace: str, key: str) -> Mapping[str, Any] | None:
        found = await self._subjects.find(namespace, key)
        # find() takes an ID or a key; only a key match is this usage subject.
        return found.rest() if found is not None and found.key == key else None


class _NewEvents:
    """Wakes the in-process waiters (the notify worker, event streams) when events are created."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.worker: NotifyWorker | None = None

    def notify(self) -> None:
        if self.worker is not None:
            self.worker.wake()
        # Wake every current waiter, then arm again for the next ones.
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)


async def wire(deps: Deps) -> list[Servicer]:
    settings = deps.settings
    repository = PostgresNotificationRepository(deps.sessions)
    signal = _NewEvents()
    notify = settings.notify
    service = NotificationService(
        repository,
        features=_FeatureLookup(deps.services["features"]),
        subjects=_SubjectLookup(deps.services["subjects"]),
        on_event_created=signal.notify,
        # Channels whose URL the policy refuses are refused at create / update (400 naming `url`).
        destinations=WebhookDestinations(notify.allowed_hosts, notify.allow_private_destinations),
    )
    deps.services["notifications"] = service

    deps.events.subscribe(BalanceSnapshotEvent, service.on_balance_snapshot)
    deps.events.subscribe(EntitlementResetEvent, service.on_entitlement_reset)

    if deps.has_role("notify"):
        sender = HttpxWebhookSender(allowed_hosts=notify.allowed_hosts, allow_private=notify.allow_private_destinations)
        worker = NotifyWorker(
            repository,
            sender,
            # Every namespace: deliveries of all tenants, not only the configured default one.
            None,
            RetryPolicy(
                initial=timedelta(milliseconds=notify.retry_initial_ms),
                maximum=timedelta(milliseconds=notify.retry_max_ms),
                jitter=notify.retry_jitter,
                pending_timeout=timedelta(seconds=notify.pending_timeout_s),
                sending_timeout=timedelta(seconds=notify.sending_timeout_s),
            ),
            timeout=timedelta(milliseconds=notify.timeout_ms),
            poll_interval=timedelta(milliseconds=notify.poll_interval_ms),
            max_concurrency=notify.max_concurrency,
        )
        await worker.start()
        signal.worker = worker
        deps.stop_steps.append(sender.close)
        deps.stop_steps.append(worker.stop)

    if not deps.has_role("api"):
        return []
    return [
        Servicer(
            notifications_pb2_grpc.add_NotificationServiceServicer_to_server,
            NotificationServicer(service, deps.request, signal.wait),
            "tally.v1.NotificationService",
        )
    ]
