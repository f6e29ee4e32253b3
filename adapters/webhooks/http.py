"""WebhookSender over httpx: one POST, its status, the start of its body and how long it took.

Destinations are checked first (server-side request forgery): URLs whose host resolves to a
loopback, private, link-local or otherwise non-public address are refused unless explicitly
allowed, and `allowed_hosts`, when set, is the complete list of hosts Tally may call. A refused
delivery fails without any connection being made. (A host that changes its DNS answer between the
check and the request is not caught; put an egress proxy in front for that.)"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import httpx

from domain.notifications.delivery import MAX_RESPONSE_BODY
from domain.notifications.ports import Refusal, SendResult


class WebhookDestinations:
    """The destination policy: notify.allowed_hosts, then notify.allow_private_destinations."""

    def __init__(self, allowed_hosts: Iterable[str] = (), allow_private: bool = False) -> None:
        self._allowed_hosts = frozenset(host.lower() for host in allowed_hosts)
        self._allow_private = allow_private

    async def refusal(self, url: str) -> Refusal | None:
        """Why Tally will not call this URL, or None."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            return Refusal("destination refused: not an http(s) URL", by_policy=True)
        if self._allowed_hosts:
            if host in self._allowed_hosts:
                return None
            return Refusal(
                f"destination refused: {host} is not in notify.allowed_hosts ({', '.join(sorted(self._allowed_hosts))})",
                by_policy=True,
            )
        if self._allow_private:
            return None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except OSError as exc:
            # Maybe a DNS hiccup, maybe a name not yet published: a delivery retries it.
            return Refusal(f"destination unresolvable: {host}: {exc}", by_policy=False)
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                return Refusal(
                    f"destination refused: {host} resolves to a non-public address ({address}); "
                    "allow it with notify.allow_private_destinations (TALLY_NOTIFY__ALLOW_PRIVATE_DESTINATIONS=true) "
                    "or notify.allowed_hosts",
                    by_policy=True,
                )
        return None


class HttpxWebhookSender:
    def __init__(self, allowed_hosts: Iterable[str] = (), allow_private: bool = False) -> None:
        self.destinations = WebhookDestinations(allowed_hosts, allow_private)
        # No redirects: a webhook URL that moved is the receiver's configuration to fix, and
        # following one would re-send the signed body somewhere else.
        self._client = httpx.AsyncClient(follow_redirects=False, headers={"user-agent": "Tally-Webhooks/1"})

    async def refusal(self, url: str) -> Refusal | None:
        return await self.destinations.refusal(url)

    async def send(self, url: str, headers: Mapping[str, str], body: bytes, timeout_s: float) -> SendResult:
        started = time.monotonic()
        refused = await self.refusal(url)
        if refused is not None:
            return SendResult(None, refused.message, 0, error=refused.message, refused=refused.by_policy)
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
