"""Webhook delivery by the notify worker of a real Tally process: retries through receiver outages
and timeouts, giving up at the deadline, and a kill -9 of the worker mid-retry that neither loses
nor duplicates the delivery. Retry timing is shortened through TALLY_NOTIFY__* settings."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from domain.notifications.delivery import REASON_SENDING_EXPIRED
from tests.support.metering import unique
from tests.support.stack import TallyProcess, create_database, wait_for
from tests.support.webhooks import WebhookReceiver

FAST = {
    "TALLY_NOTIFY__RETRY_INITIAL_MS": "300",
    "TALLY_NOTIFY__RETRY_MAX_MS": "800",
    "TALLY_NOTIFY__RETRY_JITTER": "0.2",
    "TALLY_NOTIFY__TIMEOUT_MS": "700",
    "TALLY_NOTIFY__POLL_INTERVAL_MS": "100",
}


@pytest.fixture(scope="module")
def fast(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    url = asyncio.run(create_database())
    env = {**FAST, "TALLY_NOTIFY__SENDING_TIMEOUT_S": "5"}
    stack = TallyProcess(data_dir=tmp_path_factory.mktemp("notify"), postgres_url=url, extra_env=env).start()
    yield stack
    stack.stop()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.stop()


async def setup_hook(http: httpx.AsyncClient, receiver: WebhookReceiver, path: str) -> dict[str, Any]:
    """A channel to the receiver at `path` and a reset rule on it; returns the rule."""
    channel = (
        await http.post(
            "/api/v1/notification/channels", json={"type": "WEBHOOK", "name": path, "url": receiver.url(path)}
        )
    ).json()
    receiver.secrets[path] = channel["signingSecret"]
    response = await http.post(
        "/api/v1/notification/rules", json={"type": "entitlements.reset", "name": path, "channels": [channel["id"]]}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def status_of(http: httpx.AsyncClient, event_id: str) -> dict[str, Any]:
    event = (await http.get(f"/api/v1/notification/events/{event_id}")).json()
    [status] = event["deliveryStatus"]
    return status


def times(status: dict[str, Any]) -> list[datetime]:
    return sorted(datetime.fromisoformat(a["timestamp"].replace("Z", "+00:00")) for a in status["attempts"])


async def test_retries_through_an_outage(fast: TallyProcess, receiver: WebhookReceiver) -> None:
    async with httpx.AsyncClient(base_url=fast.rest_url, timeout=30) as http:
        rule = await setup_hook(http, receiver, "/outage")
        receiver.down.add("/outage")
        event = (await http.post(f"/api/v1/notification/rules/{rule['id']}/test")).json()
        await receiver.wait_for("/outage", 3, success=False)

        status = await status_of(http, event["id"])
        assert status["state"] == "SENDING"
        assert status["nextAttempt"]
        assert "503" in status["reason"]
        assert {a["response"]["statusCode"] for a in status["attempts"]} == {503}

        receiver.down.discard("/outage")
        await receiver.wait_for("/outage", 1)

        async def settled() -> dict[str, Any] | None:
            got = await status_of(http, event["id"])
            return got if got["state"] == "SUCCESS" else None

        final = await wait_for(settled, timeout=10)
        await asyncio.sleep(1)  # nothing more arrives
        deliveries = receiver.to("/outage")
        assert len(receiver.successes("/outage")) == 1
        assert {d.webhook_id for d in deliveries} == {event["id"]}
        assert all(d.verified for d in deliveries)
        assert len(final["attempts"]) == len(deliveries)
        assert final["attempts"][0]["state"] == "SUCCESS"  # newest first
        assert "nextAttempt" not in final
        # Backoff: no retry comes before its doubling, jittered wait (FAST: 300 ms doubling up to
        # 800 ms, +-20 %). A lower bound only: under load, attempts can only come later. The exact
        # schedule is tests/unit/test_notification_rules.py's, with a controlled random source.
        stamps = times(final)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
        assert len(gaps) >= 2, gaps
        for failures, gap in enumerate(gaps, start=1):
            planned = min(0.8, 0.3 * 2 ** (failures - 1))
            assert gap >= planned * (1 - 0.2) - 0.002, (failures, gaps)  # attempt times are in ms


async def test_timeouts_are_retried(fast: TallyProcess, receiver: WebhookReceiver) -> None:
    async with httpx.AsyncClient(base_url=fast.rest_url, timeout=30) as http:
        rule = await setup_hook(http, receiver, "/slow")
        receiver.slow["/slow"] = 2.0
        event = (await http.post(f"/api/v1/notification/rules/{rule['id']}/test")).json()

        async def timed_out() -> dict[str, Any] | None:
            got = await status_of(http, event["id"])
            return got if got["attempts"] else None

        status = await wait_for(timed_out, timeout=10)
        attempt = status["attempts"][0]
        assert attempt["state"] == "FAILED"
        assert "statusCode" not in attempt["response"]
        assert attempt["response"]["durationMs"] >= 600

        del receiver.slow["/slow"]
        await receiver.wait_for("/slow", 1, timeout=10)


async def test_ingest_is_not_held_up_by_a_delivery_in_flight(
    http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    """Order, not time: ingest answers while a delivery is still unanswered at the receiver.

    On the session's stack, whose sender waits 15 s for an answer (the default). Were ingest queued
    behind the delivery, it would answer only after the sender gave up on it, and the delivery would
    then show a failed attempt before its success. (Ingest latency while a receiver stalls is a
    `make bench` matter.)"""
    rule = await setup_hook(http, receiver, "/held")
    gate = receiver.hold("/held")
    event = (await http.post(f"/api/v1/notification/rules/{rule['id']}/test")).json()
    await receiver.wait_arrived("/held", 1)
    ingest = await http.post(
        "/api/v1/events",
        json={"specversion": "1.0", "id": unique("n"), "source": "t", "type": "x", "subject": "s", "data": {}},
        headers={"content-type": "application/cloudevents+json"},
    )
    assert ingest.status_code == 204
    assert not receiver.to("/held"), "the delivery was still in flight when ingest answered"
    gate.set()

    async def settled() -> dict[str, Any] | None:
        got = await status_of(http, event["id"])
        return got if got["state"] == "SUCCESS" else None

    final = await wait_for(settled, timeout=30)
    assert [a["state"] for a in final["attempts"]] == ["SUCCESS"], final["attempts"]


async def test_gives_up_at_the_deadline(fast: TallyProcess, receiver: WebhookReceiver) -> None:
    async with httpx.AsyncClient(base_url=fast.rest_url, timeout=30) as http:
        rule = await setup_hook(http, receiver, "/dead")
        receiver.down.add("/dead")
        event = (await http.post(f"/api/v1/notification/rules/{rule['id']}/test")).json()

        async def failed() -> dict[str, Any] | None:
            got = await status_of(http, event["id"])
            return got if got["state"] == "FAILED" else None

        final = await wait_for(failed, timeout=15, interval=0.2)
        assert final["reason"] == REASON_SENDING_EXPIRED
        assert "nextAttempt" not in final
        count = len(receiver.to("/dead"))
        assert count == len(final["attempts"]) >= 3
        await asyncio.sleep(1.5)
        assert len(receiver.to("/dead")) == count  # no attempt after giving up

        # A resend starts over, and succeeds once the receiver is back.
        receiver.down.discard("/dead")
        assert (await http.post(f"/api/v1/notification/events/{event['id']}/resend", json={})).status_code == 202
        await receiver.wait_for("/dead", 1)
        assert {d.webhook_id for d in receiver.to("/dead")} == {event["id"]}


async def test_worker_killed_mid_retry_neither_loses_nor_duplicates(
    postgres_ready: None, tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver
) -> None:
    url = await create_database()
    stack = TallyProcess(data_dir=tmp_path_factory.mktemp("notify-restart"), postgres_url=url, extra_env=FAST)
    await asyncio.to_thread(stack.start)
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            rule = await setup_hook(http, receiver, "/restart")
            receiver.down.add("/restart")
            event = (await http.post(f"/api/v1/notification/rules/{rule['id']}/test")).json()
            await receiver.wait_for("/restart", 2, success=False)
            before = await status_of(http, event["id"])
            assert before["state"] == "SENDING"

            stack.kill()
            failed_before_restart = len(receiver.to("/restart"))
            receiver.down.discard("/restart")
            await asyncio.to_thread(stack.start)

            await receiver.wait_for("/restart", 1, timeout=20)

            async def settled() -> dict[str, Any] | None:
                got = await status_of(http, event["id"])
                return got if got["state"] == "SUCCESS" else None

            final = await wait_for(settled, timeout=10)
            await asyncio.sleep(1)
            deliveries = receiver.to("/restart")
            assert len(receiver.successes("/restart")) == 1
            assert {d.webhook_id for d in deliveries} == {event["id"]}
            assert all(d.verified for d in deliveries)
            # Every attempt before the crash is still on record, plus the successful one.
            assert len(final["attempts"]) >= failed_before_restart + 1
    finally:
        await asyncio.to_thread(stack.stop)


async def test_deliveries_stop_when_the_rule_no_longer_sends_to_the_channel(
    fast: TallyProcess, receiver: WebhookReceiver
) -> None:
    """Deleting a rule, or taking a channel off it, ends that channel's deliveries still being retried:
    FAILED with OpenMeter's reason (eventhandler/webhook.go ErrSystemRuleNotAssignToChannel), never
    delivered after the user stopped them."""
    async with httpx.AsyncClient(base_url=fast.rest_url, timeout=30) as http:
        deleted = await setup_hook(http, receiver, "/rule-deleted")
        moved = await setup_hook(http, receiver, "/channel-removed")
        receiver.down.update({"/rule-deleted", "/channel-removed"})
        gone = (await http.post(f"/api/v1/notification/rules/{deleted['id']}/test")).json()
        off = (await http.post(f"/api/v1/notification/rules/{moved['id']}/test")).json()
        await receiver.wait_for("/rule-deleted", 1, success=False)
        await receiver.wait_for("/channel-removed", 1, success=False)

        assert (await http.delete(f"/api/v1/notification/rules/{deleted['id']}")).status_code == 204
        other = (
            await http.post(
                "/api/v1/notification/channels",
                json={"type": "WEBHOOK", "name": "other", "url": receiver.url("/other")},
            )
        ).json()
        body = {"type": moved["type"], "name": moved["name"], "channels": [other["id"]]}
        assert (await http.put(f"/api/v1/notification/rules/{moved['id']}", json=body)).status_code == 200
        receiver.down.clear()

        async def failed(event_id: str) -> dict[str, Any] | None:
            got = await status_of(http, event_id)
            return got if got["state"] == "FAILED" else None

        for event in (gone, off):
            status = await wait_for(lambda event=event: failed(event["id"]), timeout=10)
            assert status["reason"] == "system error: rule not assigned to channel. retry will NOT be attempted"
        await asyncio.sleep(1.5)
        assert receiver.successes("/rule-deleted") == [] and receiver.successes("/channel-removed") == []
