"""A real webhook receiver for tests: an aiohttp server on a free loopback port.

It verifies every delivery's Standard Webhooks signature with the `standardwebhooks` package,
records what arrived, and can fail on purpose (answer 503, or stall past the sender's timeout) so
tests can exercise retries.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.services import free_port


@dataclass
class Delivery:
    path: str
    webhook_id: str
    verified: bool
    answered: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class WebhookReceiver:
    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    # Per path: the channel's signing secret (for verification).
    secrets: dict[str, str] = field(default_factory=dict)
    # Per path: how many of the next requests to fail with 503.
    fail_next: dict[str, int] = field(default_factory=dict)
    # Per path: answer 503 until told otherwise.
    down: set[str] = field(default_factory=set)
    # Per path: seconds to stall before answering (past the sender's timeout, it sees none).
    slow: dict[str, float] = field(default_factory=dict)
    # Per path: requests wait, unanswered, until the test sets the event (see `hold`).
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    # Per path: answer 307 with this Location (a sender must not follow it).
    redirect: dict[str, str] = field(default_factory=dict)
    # Per path: requests that arrived (counted before any stall or hold).
    arrived: dict[str, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = request.path
        self.arrived[path] = self.arrived.get(path, 0) + 1
        if path in self.held:
            await self.held[path].wait()
        if path in self.slow:
            await asyncio.sleep(self.slow[path])
        verified = False
        secret = self.secrets.get(path)
        if secret is not None:
            try:
                Webhook(secret).verify(raw, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
        if path in self.redirect:
            status = 307
        elif path in self.slow:
            status = 504  # the sender stopped waiting long ago
        elif path in self.down:
            status = 503
        elif self.fail_next.get(path, 0) > 0:
            self.fail_next[path] -= 1
            status = 503
        else:
            status = 200 if verified else 401
        self.deliveries.append(
            Delivery(path, headers.get("webhook-id", ""), verified, status, json.loads(raw or b"null"), headers)
        )
        if status == 307:
            return web.Response(status=307, headers={"location": self.redirect[path]})
        return web.Response(status=status, text="ok" if status == 200 else "nope")

    def hold(self, path: str) -> asyncio.Event:
        """Requests to `path` stay unanswered (in flight, for the sender) until the returned event is set."""
        gate = self.held[path] = asyncio.Event()
        return gate

    async def wait_arrived(self, path: str, count: int, timeout: float = 15) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.arrived.get(path, 0) < count:
            assert loop.time() < deadline, f"{path}: {self.arrived.get(path, 0)} of {count} requests arrived"
            await asyncio.sleep(0.02)

    def to(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    def successes(self, path: str) -> list[Delivery]:
        return [d for d in self.to(path) if d.answered == 200]

    async def wait_for(self, path: str, count: int, timeout: float = 15, success: bool = True) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            got = self.successes(path) if success else self.to(path)
            if len(got) >= count:
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{path}: wanted {count} deliveries, got {[(d.answered, d.webhook_id) for d in self.to(path)]}"
        )
