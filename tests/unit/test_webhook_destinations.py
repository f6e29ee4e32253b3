"""Webhook destinations are checked before any connection (server-side request forgery guard)."""

from __future__ import annotations

import pytest

from adapters.webhooks.http import HttpxWebhookSender


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "ftp://example.com/hook",
        "not a url",
    ],
)
async def test_non_public_destinations_are_refused_by_default(url: str) -> None:
    sender = HttpxWebhookSender()
    try:
        refusal = await sender.refusal(url)
        assert refusal is not None and refusal.message.startswith(("destination refused", "destination unresolvable"))
        result = await sender.send(url, {}, b"{}", 1.0)
        assert result.status_code is None and result.error == refusal.message
        assert result.refused == refusal.by_policy
    finally:
        await sender.close()


async def test_public_address_literals_are_allowed() -> None:
    sender = HttpxWebhookSender()
    try:
        assert await sender.refusal("https://8.8.8.8/hook") is None  # checked only; nothing is sent
    finally:
        await sender.close()


async def test_allowed_hosts_is_the_complete_list() -> None:
    sender = HttpxWebhookSender(allowed_hosts=["127.0.0.1"])
    try:
        assert await sender.refusal("http://127.0.0.1:8080/hook") is None
        refusal = await sender.refusal("https://8.8.8.8/hook")
        assert refusal is not None and refusal.by_policy and "not in notify.allowed_hosts" in refusal.message
    finally:
        await sender.close()


async def test_private_destinations_can_be_allowed() -> None:
    sender = HttpxWebhookSender(allow_private=True)
    try:
        assert await sender.refusal("http://10.1.2.3/hook") is None
    finally:
        await sender.close()


async def test_private_refusals_name_the_setting_and_are_permanent() -> None:
    sender = HttpxWebhookSender()
    try:
        refusal = await sender.refusal("http://127.0.0.1:9/hook")
        assert refusal is not None and refusal.by_policy
        assert "notify.allow_private_destinations" in refusal.message
    finally:
        await sender.close()


def test_a_refused_destination_fails_the_delivery_without_retry() -> None:
    """A retry cannot change the policy's answer: the delivery fails at once, saying why."""
    from datetime import UTC, datetime

    from domain.notifications.delivery import RetryPolicy, after_attempt
    from domain.notifications.models import DeliveryState, DeliveryStatus
    from domain.notifications.ports import SendResult

    now = datetime(2026, 1, 1, tzinfo=UTC)
    status = DeliveryStatus(
        namespace="ns",
        id="d",
        event_id="e",
        channel_id="c",
        state=DeliveryState.PENDING,
        reason="",
        created_at=now,
        updated_at=now,
        next_attempt=now,
        attempts=(),
        annotations={},
        sending_since=None,
    )
    policy = RetryPolicy()
    message = "destination refused: 127.0.0.1 resolves to a non-public address"
    refused = after_attempt(status, SendResult(None, message, 0, error=message, refused=True), now, policy, lambda: 0.5)
    assert refused.state is DeliveryState.FAILED and refused.next_attempt is None
    assert message in refused.reason and "will NOT be attempted" in refused.reason
    passing = after_attempt(status, SendResult(None, "", 0, error="timed out"), now, policy, lambda: 0.5)
    assert passing.state is DeliveryState.SENDING and passing.next_attempt is not None
