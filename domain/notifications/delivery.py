"""Webhook delivery rules: Standard Webhooks signatures, retry timing, and when to give up.

The notify worker (workers/notify.py) moves delivery statuses through PENDING -> SENDING ->
SUCCESS | FAILED (and RESENDING -> ... after a resend) with these decisions; every attempt of one
event carries the event's ID as webhook-id, so a receiver can drop repeats.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.notifications.models import DeliveryState, DeliveryStatus, signing_key
from domain.notifications.ports import SendResult

# OpenMeter's reasons, so clients matching on them keep working.
REASON_PENDING_EXPIRED = "system error: multiple dispatch attempts failed. retry will NOT be attempted"
REASON_SENDING_EXPIRED = (
    "user error: multiple failed to send event due to errors from the recipient. retry will NOT be attempted"
)
REASON_CHANNEL_DISABLED = "system error: channel is disabled. retry will NOT be attempted"
REASON_CHANNEL_NOT_FOUND = "system error: channel not found. retry will NOT be attempted"
REASON_RULE_NOT_ASSIGNED = "system error: rule not assigned to channel. retry will NOT be attempted"
MAX_RESPONSE_BODY = 2048


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value (Standard Webhooks v1: HMAC-SHA256, base64)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial: timedelta = timedelta(seconds=5)
    maximum: timedelta = timedelta(hours=2)
    # Each delay is scaled by a random factor in [1 - jitter, 1 + jitter].
    jitter: float = 0.2
    # Give up on a delivery never attempted for this long (the worker was down) ...
    pending_timeout: timedelta = timedelta(hours=3)
    # ... and on one whose attempts have been failing for this long.
    sending_timeout: timedelta = timedelta(hours=48)

    def backoff(self, failures: int, random: Callable[[], float]) -> timedelta:
        """The wait after the `failures`-th failed attempt in a row (1-based): doubling, capped, jittered."""
        base = min(self.maximum, self.initial * (1 << min(max(failures - 1, 0), 40)))
        factor = 1 + self.jitter * (2 * random() - 1)
        return base * factor


@dataclass(frozen=True, slots=True)
class Outcome:
    state: DeliveryState
    reason: str
    next_attempt: datetime | None
    sending_since: datetime | None


def expired(status: DeliveryStatus, now: datetime, policy: RetryPolicy) -> Outcome | None:
    """A FAILED outcome when the delivery is past its deadline before this attempt, else None."""
    if status.state is DeliveryState.PENDING and now - status.created_at > policy.pending_timeout:
        return Outcome(DeliveryState.FAILED, REASON_PENDING_EXPIRED, None, status.sending_since)
    since = status.sending_since or status.created_at
    if status.state is DeliveryState.SENDING and now - since > policy.sending_timeout:
        return Outcome(DeliveryState.FAILED, REASON_SENDING_EXPIRED, None, since)
    return None


def failures_in_run(status: DeliveryStatus) -> int:
    since = status.sending_since or status.created_at
    return sum(1 for a in status.attempts if a.state is DeliveryState.FAILED and a.timestamp >= since)


def after_attempt(
    status: DeliveryStatus, result: SendResult, now: datetime, policy: RetryPolicy, random: Callable[[], float]
) -> Outcome:
    """The state after an attempt: SUCCESS, or SENDING with the next attempt, or FAILED past the deadline."""
    if result.ok:
        return Outcome(DeliveryState.SUCCESS, "", None, status.sending_since)
    since = status.sending_since or status.created_at
    if result.refused:
        return Outcome(DeliveryState.FAILED, f"{result.error}. retry will NOT be attempted", None, since)
    if status.state is DeliveryState.RESENDING:
        # A resend starts a new run of attempts with its own deadline.
        since = now
        failures = 1
    else:
        failures = failures_in_run(status) + 1
    next_attempt = now + policy.backoff(failures, random)
    if next_attempt - since > policy.sending_timeout:
        return Outcome(DeliveryState.FAILED, REASON_SENDING_EXPIRED, None, since)
    what = (
        f"receiver answered {result.status_code}" if result.status_code is not None else (result.error or "no response")
    )
    return Outcome(DeliveryState.SENDING, f"delivery attempt failed: {what}; retry scheduled", next_attempt, since)
