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
        reason = await sender.refusal(url)
        assert reason is not None and reason.startswith(("destination refused", "destination unresolvable"))
        result = await sender.send(url, {}, b"{}", 1.0)
        assert result.status_code is None and result.error == reason
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
        assert "not in notify.allowed_hosts" in (await sender.refusal("https://8.8.8.8/hook") or "")
    finally:
        await sender.close()


async def test_private_destinations_can_be_allowed() -> None:
    sender = HttpxWebhookSender(allow_private=True)
    try:
        assert await sender.refusal("http://10.1.2.3/hook") is None
    finally:
        await sender.close()
