"""Webhook URLs the destination policy refuses: a 400 at channel create / update naming the field and
the setting, and a delivery to such a destination (the policy tightened after the channel was made)
fails at once with the reason instead of retrying for two days."""

from __future__ import annotations

import grpc
import httpx
import pytest

from tally.v1 import notifications_pb2, notifications_pb2_grpc
from tests.support.stack import TallyProcess, create_database, wait_for

CHANNELS = "/api/v1/notification/channels"
RULES = "/api/v1/notification/rules"
EVENTS = "/api/v1/notification/events"
FAST = {"TALLY_NOTIFY__POLL_INTERVAL_MS": "100", "TALLY_NOTIFY__RETRY_INITIAL_MS": "200"}


def refused_field(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    [violation] = response.json()["extensions"]["validationErrors"]
    return violation


async def test_allow_list_refuses_other_hosts_at_create_and_update(http: httpx.AsyncClient) -> None:
    """The test stacks' allow-list (127.0.0.1, example.com) is the complete list."""
    violation = refused_field(
        await http.post(CHANNELS, json={"type": "WEBHOOK", "name": "x", "url": "https://8.8.8.8/hook"})
    )
    assert violation["field"] == "url" and "notify.allowed_hosts" in violation["message"]

    created = await http.post(CHANNELS, json={"type": "WEBHOOK", "name": "ok", "url": "https://example.com/hook"})
    assert created.status_code == 201, created.text
    channel = created.json()
    updated = await http.put(
        f"{CHANNELS}/{channel['id']}", json={"type": "WEBHOOK", "name": "ok", "url": "https://evil.test/hook"}
    )
    violation = refused_field(updated)
    assert violation["field"] == "url" and "notify.allowed_hosts" in violation["message"]
    assert (await http.get(f"{CHANNELS}/{channel['id']}")).json()["url"] == "https://example.com/hook"


async def test_private_destinations_are_refused_by_default_and_a_tightened_policy_stops_retries(
    postgres_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = await create_database()
    data_dir = tmp_path_factory.mktemp("destinations")
    # No allow-list: the default policy, which refuses loopback and private addresses.
    strict = {"TALLY_NOTIFY__ALLOWED_HOSTS": "[]", **FAST}
    stack = TallyProcess(data_dir=data_dir, postgres_url=url, extra_env=strict).start()
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            for hook in ("http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://localhost/hook"):
                violation = refused_field(await http.post(CHANNELS, json={"type": "WEBHOOK", "name": "x", "url": hook}))
                assert violation["field"] == "url"
                assert "notify.allow_private_destinations" in violation["message"], violation
        async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
            stub = notifications_pb2_grpc.NotificationServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.CreateNotificationChannel(
                    notifications_pb2.CreateNotificationChannelRequest(
                        type="WEBHOOK", name="x", url="http://127.0.0.1:9/h"
                    )
                )
            assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "notify.allow_private_destinations" in (error.value.details() or "")
    finally:
        assert stack.stop() == 0

    # Allowed, a channel to loopback is made; then the operator tightens the policy again.
    stack.extra_env = {"TALLY_NOTIFY__ALLOW_PRIVATE_DESTINATIONS": "true", **strict}
    stack.start()
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            created = await http.post(
                CHANNELS, json={"type": "WEBHOOK", "name": "lo", "url": "http://127.0.0.1:9/hook"}
            )
            assert created.status_code == 201, created.text
            rule = await http.post(
                RULES, json={"type": "entitlements.reset", "name": "lo", "channels": [created.json()["id"]]}
            )
            assert rule.status_code == 201, rule.text
    finally:
        assert stack.stop() == 0
    stack.extra_env = strict
    stack.start()
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            tested = await http.post(f"{RULES}/{rule.json()['id']}/test")
            assert tested.status_code == 201, tested.text
            event_id = tested.json()["id"]

            async def settled() -> dict[str, object] | None:
                status = (await http.get(f"{EVENTS}/{event_id}")).json()["deliveryStatus"][0]
                return status if status["state"] == "FAILED" else None

            status = await wait_for(settled, timeout=30)
            assert "destination refused" in status["reason"] and "will NOT be attempted" in status["reason"]
            assert "nextAttempt" not in status
            assert len(status["attempts"]) == 1, "not retried"
        log = (data_dir / "tally.log").read_text()
        assert "webhook delivery failed" in log and "warning" in log
    finally:
        assert stack.stop() == 0
