"""HTTP relay source: a local CloudEvents endpoint that buffers events durably and forwards them.

Applications post to it exactly as to Tally's ingest API (POST /api/v1/events with
application/cloudevents+json, application/cloudevents-batch+json or application/json), validated by
the same rules (domain/metering/events.py) and refused with the same problem+json. 204 means the
events are on the collector's disk, not yet in Tally: the collector delivers them, keeping each
event's own (source, id), so a client that retries after a lost answer doubles nothing. A full
buffer answers 503 with Retry-After.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from adapters.collectors.records import BufferFullError, record_time
from domain.errors import PayloadTooLargeError, TallyError, UnavailableError, ValidationError
from domain.metering.events import Event, IngestLimits, parse_cloudevents

Accept = Callable[[Sequence[dict[str, Any]]], Awaitable[None]]
# A domain error -> (HTTP status, problem+json body), given the request path: Tally's own mapping
# (server/errors.py), which the process that starts the relay passes in (the host sits above here).
Problem = Callable[[TallyError, str], tuple[int, dict[str, Any]]]


def cloudevent(event: Event) -> dict[str, Any]:
    """The validated event as the CloudEvent the collector forwards (time fixed at acceptance)."""
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": record_time(event.time),
        "data": event.decoded(),
    }


class HttpRelay:
    def __init__(self, name: str, listen: str, accept: Accept, problem: Problem, max_body_bytes: int) -> None:
        self.name = name
        self.accept = accept
        self.problem = problem
        self.limits = IngestLimits(max_batch_bytes=max_body_bytes)
        self.app = web.Application(client_max_size=max_body_bytes + 1024)
        self.app.router.add_post("/api/v1/events", self.ingest)
        self.app.router.add_get("/healthz", self.health)
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5.0)
        host, _, port = listen.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def ingest(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._problem(PayloadTooLargeError("request body too large"), request.path)
        try:
            events = parse_cloudevents(
                body, request.headers.get("content-type", ""), "default", datetime.now(UTC), self.limits
            )
        except (ValidationError, PayloadTooLargeError) as error:
            return self._problem(error, request.path)
        try:
            await self.accept([cloudevent(event) for event in events])
        except BufferFullError as exc:
            return self._problem(UnavailableError(str(exc)), request.path, {"retry-after": "5"})
        return web.Response(status=204)

    def _problem(self, error: TallyError, instance: str, headers: dict[str, str] | None = None) -> web.Response:
        status, body = self.problem(error, instance)
        return web.Response(
            status=status, body=orjson.dumps(body), content_type="application/problem+json", headers=headers
        )
