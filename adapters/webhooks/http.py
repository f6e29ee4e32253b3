"""WebhookSender over httpx: one POST, its status, the start of its body and how long it took."""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from domain.notifications.delivery import MAX_RESPONSE_BODY
from domain.notifications.ports import SendResult


class HttpxWebhookSender:
    def __init__(self) -> None:
        # No redirects: a webhook URL that moved is the receiver's configuration to fix, and
        # following one would re-send the signed body somewhere else.
        self._client = httpx.AsyncClient(follow_redirects=False, headers={"user-agent": "Tally-Webhooks/1"})

    async def send(self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float) -> SendResult:
        started = time.monotonic()
        try:
            async with self._client.stream(
                "POST", url, content=body, headers=dict(headers), timeout=httpx.Timeout(timeout_s)
            ) as response:
                received = bytearray()
                async for chunk in response.aiter_bytes():
                    received.extend(chunk)
                    if len(received) >= MAX_RESPONSE_BODY:
                        break
                text = bytes(received[:MAX_RESPONSE_BODY]).decode("utf-8", errors="replace")
                return SendResult(response.status_code, text, int((time.monotonic() - started) * 1000))
        except httpx.TimeoutException:
            return SendResult(None, "", int((time.monotonic() - started) * 1000), error="timed out")
        except httpx.HTTPError as exc:
            message = f"{type(exc).__name__}: {exc}"[:MAX_RESPONSE_BODY]
            return SendResult(None, message, int((time.monotonic() - started) * 1000), error=message)

    async def close(self) -> None:
        await self._client.aclose()
