"""The notify worker: delivers notification events to webhook channels, signed, with retries.

Delivery statuses in Postgres are the queue. A loop claims due ones (leasing them, so another
worker or a restarted one picks them up only if this one dies), POSTs the event payload with
Standard Webhooks headers (webhook-id is the event's ID on every attempt, so a receiver can drop
repeats), and records the attempt and the next state: SUCCESS, SENDING with the next attempt
after exponential backoff with jitter, or FAILED past OpenMeter's deadlines. Nothing here runs
in a request path: ingestion and the API never wait on a receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import orjson
import structlog

from adapters import metrics
from domain.notifications.delivery import (
    REASON_CHANNEL_DISABLED,
    REASON_CHANNEL_NOT_FOUND,
    REASON_RULE_NOT_ASSIGNED,
    RetryPolicy,
    after_attempt,
    expired,
    sign,
)
from domain.notifications.models import Channel, DeliveryAttempt, DeliveryState, Rule
from domain.notifications.ports import Delivery, NotificationRepository, WebhookSender

log = structlog.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _undeliverable(rule: Rule | None, channel: Channel | None) -> tuple[str, str] | None:
    """Why a delivery is abandoned without an attempt (metric label, reason), or None. OpenMeter's
    checks, in its order (eventhandler/webhook.go): the channel is gone, the rule no longer sends to
    it (deleted, or the channel taken off it), the channel is disabled."""
    if channel is None or channel.deleted_at is not None:
        return "channel_not_found", REASON_CHANNEL_NOT_FOUND
    if rule is None or rule.deleted_at is not None or channel.id not in rule.channel_ids:
        return "rule_not_assigned", REASON_RULE_NOT_ASSIGNED
    if channel.disabled:
        return "channel_disabled", REASON_CHANNEL_DISABLED
    return None


class NotifyWorker:
    def __init__(
        self,
        repository: NotificationRepository,
        sender: WebhookSender,
        # None: every namespace that has due deliveries.
        namespaces: Sequence[str] | None,
        policy: RetryPolicy,
        *,
        timeout: timedelta = timedelta(seconds=15),
        poll_interval: timedelta = timedelta(seconds=1),
        max_concurrency: int = 16,
        clock: Callable[[], datetime] = _now,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._repo = repository
        self._sender = sender
        self._namespaces = list(namespaces) if namespaces is not None else None
        self._policy = policy
        self._timeout = timeout
        self._poll = poll_interval
        self._max = max_concurrency
        self._clock = clock
        self._rand = rand
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    def wake(self) -> None:
        """New work may be due (an event was created or resent in this process)."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notify-worker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._inflight:
            # Let running attempts finish and record their outcome; past the request timeout they
            # are cancelled, and their leases make them due again after a restart.
            _, pending = await asyncio.wait(self._inflight, timeout=self._timeout.total_seconds() + 1)
            for task in pending:
                task.cancel()

    async def _run(self) -> None:
        with metrics.LIVENESS.watching("notify", 60.0):
            while not self._stopping:
                metrics.LIVENESS.beat("notify")
                # Cleared before the pass, never after it: a wake during the pass (new work, or
                # stop) then ends the wait below at once instead of being lost for a poll interval.
                self._wake.clear()
                try:
                    claimed = await self.run_once()
                except Exception:
                    log.exception("claiming due notification deliveries failed")
                    claimed = 0
                if claimed and len(self._inflight) < self._max:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll.total_seconds())

    async def run_once(self) -> int:
        """Claims what is due (up to the free concurrency) and starts delivering it."""
        free = self._max - len(self._inflight)
        if free <= 0:
            return 0
        now = self._clock()
        # The lease outlasts one attempt, so a live worker never loses its claim mid-request.
        lease = now + self._timeout + timedelta(seconds=5)
        deliveries = await self._repo.claim_due(self._namespaces, now, lease, free)
        for delivery in deliveries:
            task = asyncio.create_task(self._deliver(delivery))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(deliveries)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("notification delivery crashed", error=repr(task.exception()))
        # A slot freed up: look again at once if there is a backlog.
        self._wake.set()

    async def _deliver(self, delivery: Delivery) -> None:
        status, event, channel = delivery.status, delivery.event, delivery.channel
        now = self._clock()
        since = status.sending_since or status.created_at
        abandon = _undeliverable(event.rule, channel)
        if channel is None or abandon is not None:
            label, reason = abandon or ("channel_not_found", REASON_CHANNEL_NOT_FOUND)
            metrics.WEBHOOK_ABANDONED.labels(label).inc()
            await self._repo.record_attempt(
                status,
                state=DeliveryState.FAILED,
                reason=reason,
                next_attempt=None,
                sending_since=since,
                attempt=None,
                now=now,
            )
            return
        gone = expired(status, now, self._policy)
        if gone is not None:
            metrics.WEBHOOK_ABANDONED.labels("deadline_passed").inc()
            await self._repo.record_attempt(
                status,
                state=gone.state,
                reason=gone.reason,
                next_attempt=None,
                sending_since=gone.sending_since,
                attempt=None,
                now=now,
            )
            return

        body = orjson.dumps(event.payload)
        timestamp = int(now.timestamp())
        headers = {
            **channel.custom_headers,
            "content-type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(channel.signing_secret, event.id, timestamp, body),
        }
        result = await self._sender.send(channel.url, headers, body, self._timeout.total_seconds())
        finished = self._clock()
        outcome = after_attempt(status, result, finished, self._policy, self._rand)
        metrics.WEBHOOK_ATTEMPTS.labels("success" if result.ok else "error", outcome.state.value).inc()
        metrics.WEBHOOK_ATTEMPT_SECONDS.observe(max(0.0, (finished - now).total_seconds()))
        attempt = DeliveryAttempt(
            state=DeliveryState.SUCCESS if result.ok else DeliveryState.FAILED,
            timestamp=now,
            status_code=result.status_code,
            body=result.body,
            duration_ms=result.duration_ms,
            url=channel.url,
        )
        saved = await self._repo.record_attempt(
            status,
            state=outcome.state,
            reason=outcome.reason,
            next_attempt=outcome.next_attempt,
            sending_since=outcome.sending_since,
            attempt=attempt,
            now=finished,
        )
        # A failed attempt is an operator's business (a receiver down, a URL the policy refuses).
        report = log.info if result.ok else log.warning
        report(
            "webhook delivery attempt" if result.ok else "webhook delivery failed",
            event_id=event.id,
            channel_id=channel.id,
            url=channel.url,
            status=result.status_code,
            error=result.error,
            state=outcome.state.value if saved else "superseded",
            reason=outcome.reason or None,
            next_attempt=outcome.next_attempt.isoformat() if outcome.next_attempt else None,
        )
