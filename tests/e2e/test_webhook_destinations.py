"""The webhook destination guard (server-side request forgery) in a running server with the default
policy, not an allow-list: private, loopback and link-local destinations, by address and by a name
that resolves to one, are refused when the channel is created, and nothing reaches them; and no
server follows a redirect. (Test stacks elsewhere allow 127.0.0.1, so their receivers can be
reached; this one allows nothing but public addresses, of which the machine reaches none.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.metering import unique
from tests.support.stack import TallyProcess, create_database, wait_for
from tests.support.webhooks import WebhookReceiver


@pytest.fixture(scope="module")
def default_policy(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    url = asyncio.run(create_database())
    # The default policy: no allowed_hosts list, private destinations not allowed.
    env = {"TALLY_NOTIFY__ALLOWED_HOSTS": "[]", "TALLY_NOTIFY__POLL_INTERVAL_MS": "100"}
    stack = TallyProcess(data_dir=tmp_path_factory.mktemp("ssrf"), postgres_url=url, extra_env=env).start()
    yield stack
    stack.stop()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.stop()


async def _hook(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """A channel to `url`, a rule on it, and a test event sent through them; returns the event."""
    channel = await http.post(
        "/api/v1/notification/channels", json={"type": "WEBHOOK", "name": unique("c"), "url": url}
    )
    assert channel.status_code == 201, channel.text
    rule = await http.post(
        "/api/v1/notification/rules",
        json={"type": "entitlements.reset", "name": unique("r"), "channels": [channel.json()["id"]]},
    )
    assert rule.status_code == 201, rule.text
    event = await http.post(f"/api/v1/notification/rules/{rule.json()['id']}/test")
    assert event.status_code in (200, 201), event.text
    return event.json()  # type: ignore[no-any-return]


async def _first_attempt(http: httpx.AsyncClient, event_id: str) -> dict[str, Any]:
    async def attempted() -> dict[str, Any] | None:
        event = (await http.get(f"/api/v1/notification/events/{event_id}")).json()
        [status] = event["deliveryStatus"]
        return status if status.get("attempts") else None

    status: dict[str, Any] = await wait_for(attempted, timeout=30, interval=0.1)
    return status


async def test_non_public_destinations_are_refused(default_policy: TallyProcess, receiver: WebhookReceiver) -> None:
    """Refused when the channel is created (400 naming the setting that would allow it), so no
    delivery is ever attempted; the delivery-time check (a name that resolves elsewhere later) is
    unit-tested in tests/unit/test_webhook_destinations.py."""
    port = receiver.port
    destinations = {
        "private address": f"http://10.1.2.3:{port}/private",
        "loopback address": receiver.url("/loopback"),
        "name resolving to loopback": f"http://localhost:{port}/by-name",
        "IPv6 loopback": f"http://[::1]:{port}/v6",
        "link-local (cloud metadata)": "http://169.254.169.254/latest/meta-data",
    }
    async with httpx.AsyncClient(base_url=default_policy.rest_url, timeout=30) as http:
        for what, url in destinations.items():
            channel = await http.post(
                "/api/v1/notification/channels", json={"type": "WEBHOOK", "name": unique("c"), "url": url}
            )
            assert channel.status_code == 400, (what, channel.text)
            [violation] = channel.json()["extensions"]["validationErrors"]
            assert violation["field"] == "url" and violation["code"] == "destination_refused", (what, violation)
            assert "notify.allow_private_destinations" in violation["message"], (what, violation)
        listed = (await http.get("/api/v1/notification/channels")).json()
        assert all(c["url"] not in destinations.values() for c in listed.get("items", listed)), listed
    assert receiver.arrived == {}


async def test_redirects_are_not_followed(http: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    # The session's stack allows 127.0.0.1, so the first hop is delivered; the redirect it answers
    # with is a failed attempt, never a request to where it points.
    receiver.redirect["/moved"] = receiver.url("/elsewhere")
    event = await _hook(http, receiver.url("/moved"))
    status = await _first_attempt(http, event["id"])
    assert status["attempts"][-1]["response"].get("statusCode") == 307, status
    assert status["attempts"][-1]["state"] == "FAILED", status
    assert receiver.arrived.get("/moved", 0) >= 1
    assert "/elsewhere" not in receiver.arrived
