"""Notification channels, rules and events over REST through Envoy, with OpenMeter's status codes
and shapes; the rule test endpoint delivering a signed webhook to a real receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest_asyncio

from tally.v1 import notifications_pb2, notifications_pb2_grpc
from tests.support.metering import create_meter, unique
from tests.support.stack import wait_for
from tests.support.webhooks import WebhookReceiver

CHANNELS = "/api/v1/notification/channels"
RULES = "/api/v1/notification/rules"
EVENTS = "/api/v1/notification/events"


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.stop()


async def make_channel(http: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    response = await http.post(CHANNELS, json={"type": "WEBHOOK", "name": "hook", "url": url, **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def test_channel_crud(http: httpx.AsyncClient) -> None:
    created = await make_channel(
        http, "https://example.com/hook", customHeaders={"x-team": "billing"}, metadata={"env": "test"}
    )
    assert created["type"] == "WEBHOOK"
    assert created["signingSecret"].startswith("whsec_")
    assert created["customHeaders"] == {"x-team": "billing"}
    assert created["disabled"] is False
    assert "createdAt" in created and "deletedAt" not in created

    got = await http.get(f"{CHANNELS}/{created['id']}")
    assert got.status_code == 200 and got.json()["id"] == created["id"]

    secret = "whsec_" + "A" * 40
    updated = await http.put(
        f"{CHANNELS}/{created['id']}",
        json={"type": "WEBHOOK", "name": "renamed", "url": "https://example.com/other", "signingSecret": secret},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "renamed" and updated.json()["signingSecret"] == secret

    listed = await http.get(CHANNELS, params={"pageSize": 1000})
    assert listed.status_code == 200
    body = listed.json()
    assert set(body) == {"totalCount", "page", "pageSize", "items"}
    assert isinstance(body["totalCount"], int) and body["page"] == 1 and body["pageSize"] == 1000
    assert created["id"] in [c["id"] for c in body["items"]]

    assert (await http.delete(f"{CHANNELS}/{created['id']}")).status_code == 204
    gone = (await http.get(f"{CHANNELS}/{created['id']}")).json()
    assert "deletedAt" in gone
    after = (await http.get(CHANNELS, params={"pageSize": 1000})).json()
    assert created["id"] not in [c["id"] for c in after["items"]]
    with_deleted = (await http.get(CHANNELS, params={"includeDeleted": "true", "pageSize": 1000})).json()
    assert created["id"] in [c["id"] for c in with_deleted["items"]]


async def test_channel_validation_and_not_found(http: httpx.AsyncClient) -> None:
    bad = await http.post(CHANNELS, json={"type": "SLACK", "name": "", "url": "nope", "signingSecret": "x"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in bad.json()["extensions"]["validationErrors"]}
    assert fields == {"type", "name", "url", "signingSecret"}
    missing = await http.get(f"{CHANNELS}/01J8J4RXH778XB056JS088PCYT")
    assert missing.status_code == 404


async def make_feature(http: httpx.AsyncClient) -> dict[str, Any]:
    slug = unique("notif_meter")
    await create_meter(http, slug=slug, eventType=slug, aggregation="SUM", valueProperty="$.tokens")
    key = unique("tokens")
    response = await http.post("/api/v1/features", json={"key": key, "name": key, "meterSlug": slug})
    assert response.status_code == 201, response.text
    return response.json()


async def test_rule_crud_and_channel_in_use(http: httpx.AsyncClient) -> None:
    channel = await make_channel(http, "https://example.com/hook")
    tokens = (await make_feature(http))["key"]
    body = {
        "type": "entitlements.balance.threshold",
        "name": "usage alerts",
        "channels": [channel["id"]],
        "thresholds": [{"value": 50, "type": "usage_percentage"}, {"value": 10, "type": "balance_value"}],
        "features": [tokens],
    }
    created = await http.post(RULES, json=body)
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["type"] == "entitlements.balance.threshold"
    assert rule["channels"] == [{"id": channel["id"], "type": "WEBHOOK"}]
    assert rule["thresholds"] == body["thresholds"]
    assert [f["key"] for f in rule["features"]] == [tokens]

    # Channels in use cannot be deleted.
    refused = await http.delete(f"{CHANNELS}/{channel['id']}")
    assert refused.status_code == 400, refused.text

    # The type is immutable.
    changed = await http.put(f"{RULES}/{rule['id']}", json={**body, "type": "entitlements.reset", "thresholds": []})
    assert changed.status_code == 400
    updated = await http.put(f"{RULES}/{rule['id']}", json={**body, "name": "renamed", "disabled": True})
    assert updated.status_code == 200 and updated.json()["disabled"] is True

    # Disabled rules are listed only on request; filters by channel and feature.
    listed = (await http.get(RULES, params={"channel": channel["id"]})).json()
    assert rule["id"] not in [r["id"] for r in listed["items"]]
    listed = (await http.get(RULES, params={"channel": channel["id"], "includeDisabled": "true"})).json()
    assert [r["id"] for r in listed["items"]] == [rule["id"]]
    listed = (await http.get(RULES, params={"feature": tokens, "includeDisabled": "true"})).json()
    assert rule["id"] in [r["id"] for r in listed["items"]]

    # Unknown channels are refused; so is a sixth channel.
    unknown = await http.post(RULES, json={**body, "channels": ["01J8J4RXH778XB056JS088PCYT"]})
    assert unknown.status_code == 400

    assert (await http.delete(f"{RULES}/{rule['id']}")).status_code == 204
    assert (await http.delete(f"{CHANNELS}/{channel['id']}")).status_code == 204


async def test_rule_validation(http: httpx.AsyncClient) -> None:
    channel = await make_channel(http, "https://example.com/hook")
    bad = await http.post(
        RULES,
        json={
            "type": "entitlements.balance.threshold",
            "name": "x",
            "channels": [channel["id"]],
            "thresholds": [{"value": 0, "type": "usage_value"}, {"value": 5, "type": "bogus"}],
        },
    )
    assert bad.status_code == 400
    fields = {e["field"] for e in bad.json()["extensions"]["validationErrors"]}
    assert fields == {"thresholds[0].value", "thresholds[1].type"}
    # Invoice rules are accepted and stored.
    invoice = await http.post(RULES, json={"type": "invoice.created", "name": "inv", "channels": [channel["id"]]})
    assert invoice.status_code == 201 and invoice.json()["type"] == "invoice.created"


async def test_rule_test_event_is_delivered_signed(http: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    channel = await make_channel(http, receiver.url("/test-rule"), customHeaders={"x-team": "billing"})
    receiver.secrets["/test-rule"] = channel["signingSecret"]
    rule = (
        await http.post(
            RULES,
            json={
                "type": "entitlements.balance.threshold",
                "name": "t",
                "channels": [channel["id"]],
                "thresholds": [{"value": 90, "type": "usage_percentage"}],
            },
        )
    ).json()
    tested = await http.post(f"{RULES}/{rule['id']}/test")
    assert tested.status_code == 201, tested.text
    event = tested.json()
    assert event["type"] == "entitlements.balance.threshold"
    assert event["annotations"] == {"notification.rule.test": True}
    assert event["rule"]["id"] == rule["id"]
    assert event["payload"]["id"] == event["id"]
    assert event["payload"]["data"]["threshold"] == {"value": 90, "type": "usage_percentage"}
    assert [s["state"] for s in event["deliveryStatus"]] == ["PENDING"]

    [delivery] = await receiver.wait_for("/test-rule", 1)
    assert delivery.verified and delivery.webhook_id == event["id"]
    assert delivery.headers["x-team"] == "billing"
    assert delivery.body == event["payload"]

    async def delivered() -> dict[str, Any] | None:
        got = (await http.get(f"{EVENTS}/{event['id']}")).json()
        return got if got["deliveryStatus"][0]["state"] == "SUCCESS" else None

    final = await wait_for(delivered, timeout=10)
    status = final["deliveryStatus"][0]
    assert status["channel"] == {"id": channel["id"], "type": "WEBHOOK"}
    assert "nextAttempt" not in status
    [attempt] = status["attempts"]
    assert attempt["state"] == "SUCCESS"
    assert attempt["response"]["statusCode"] == 200
    assert attempt["response"]["url"] == receiver.url("/test-rule")
    assert isinstance(attempt["response"]["durationMs"], int)

    # Listing and filtering.
    listed = (await http.get(EVENTS, params={"rule": rule["id"]})).json()
    assert [e["id"] for e in listed["items"]] == [event["id"]] and listed["totalCount"] == 1
    listed = (await http.get(EVENTS, params={"channel": channel["id"]})).json()
    assert [e["id"] for e in listed["items"]] == [event["id"]]
    assert (await http.get(f"{EVENTS}/01J8J4RXH778XB056JS088PCYT")).status_code == 404

    # Resend: 202, RESENDING, then delivered again with the same webhook-id.
    resent = await http.post(f"{EVENTS}/{event['id']}/resend", json={})
    assert resent.status_code == 202, resent.text
    deliveries = await receiver.wait_for("/test-rule", 2)
    assert {d.webhook_id for d in deliveries} == {event["id"]}
    final = await wait_for(delivered, timeout=10)
    assert len(final["deliveryStatus"][0]["attempts"]) == 2
    assert "event.resend.timestamp" in final["deliveryStatus"][0]["annotations"]


async def test_disabled_rule_cannot_be_tested(http: httpx.AsyncClient) -> None:
    channel = await make_channel(http, "https://example.com/hook")
    rule = (
        await http.post(
            RULES, json={"type": "entitlements.reset", "name": "r", "channels": [channel["id"]], "disabled": True}
        )
    ).json()
    assert (await http.post(f"{RULES}/{rule['id']}/test")).status_code == 400


async def test_event_stream_resumes_after_last_seen(http: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
    hook = await make_channel(http, "https://example.com/hook", disabled=True)
    rule = (await http.post(RULES, json={"type": "entitlements.reset", "name": "s", "channels": [hook["id"]]})).json()
    first = (await http.post(f"{RULES}/{rule['id']}/test")).json()
    stub = notifications_pb2_grpc.NotificationServiceStub(channel)

    stream = stub.StreamNotificationEvents(
        notifications_pb2.StreamNotificationEventsRequest(after_event_id=first["id"], types=["entitlements.reset"])
    )
    second = (await http.post(f"{RULES}/{rule['id']}/test")).json()
    received = await stream.read()
    assert received.id == second["id"]
    assert received.payload["id"] == second["id"]
    third = (await http.post(f"{RULES}/{rule['id']}/test")).json()
    assert (await stream.read()).id == third["id"]
    stream.cancel()
    # A disabled channel gets no delivery status.
    assert second["deliveryStatus"] == []


async def test_updating_a_deleted_channel_or_rule_is_a_conflict(http: httpx.AsyncClient) -> None:
    """OpenMeter answers 409 (UpdateAfterDeleteError) to a PUT on a deleted channel or rule."""
    channel = await make_channel(http, "https://example.com/hook")
    rule_body = {"type": "invoice.created", "name": "inv", "channels": [channel["id"]]}
    rule = (await http.post(RULES, json=rule_body)).json()
    assert (await http.delete(f"{RULES}/{rule['id']}")).status_code == 204
    refused = await http.put(f"{RULES}/{rule['id']}", json={**rule_body, "name": "renamed"})
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await http.delete(f"{CHANNELS}/{channel['id']}")).status_code == 204
    channel_body = {"type": "WEBHOOK", "name": "renamed", "url": "https://example.com/hook"}
    refused = await http.put(f"{CHANNELS}/{channel['id']}", json=channel_body)
    assert refused.status_code == 409, refused.text
    # An invalid body on a deleted channel is still a 400 first, as OpenMeter validates before it looks.
    assert (await http.put(f"{CHANNELS}/{channel['id']}", json={**channel_body, "url": "nope"})).status_code == 400


async def test_rule_features_must_exist(http: httpx.AsyncClient) -> None:
    """A rule's features are checked against the catalogue (OpenMeter's ValidateRuleConfigWithFeatures:
    live features, by ID or key, else 400 "non-existing features"); a rule scoped to a feature that
    does not exist would never fire. Each shows as the feature's {id, key}."""
    channel = await make_channel(http, "https://example.com/hook")
    feature = await make_feature(http)
    body = {"type": "entitlements.reset", "name": "resets", "channels": [channel["id"]]}
    for ref in (feature["key"], feature["id"]):
        created = await http.post(RULES, json={**body, "features": [ref]})
        assert created.status_code == 201, created.text
        assert created.json()["features"] == [{"id": feature["id"], "key": feature["key"]}]
    missing = await http.post(RULES, json={**body, "features": [feature["key"], "no_such_feature"]})
    assert missing.status_code == 400, missing.text
    assert [e["field"] for e in missing.json()["extensions"]["validationErrors"]] == ["features"]
    assert "no_such_feature" in missing.text
    assert (await http.delete(f"/api/v1/features/{feature['id']}")).status_code == 204
    archived = await http.post(RULES, json={**body, "features": [feature["key"]]})
    assert archived.status_code == 400, archived.text


async def test_resend_only_to_channels_the_rule_still_sends_to(
    http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    """A resend naming a channel taken off the event's rule is a 400 "channel ... not found"
    (OpenMeter's ResendEvent, notification/service/event.go, checks the rule's active channels)."""
    first = await make_channel(http, receiver.url("/resend-first"))
    second = await make_channel(http, receiver.url("/resend-second"))
    receiver.secrets["/resend-first"] = first["signingSecret"]
    body = {"type": "entitlements.reset", "name": "resend", "channels": [first["id"]]}
    rule = (await http.post(RULES, json=body)).json()
    event = (await http.post(f"{RULES}/{rule['id']}/test")).json()
    await receiver.wait_for("/resend-first", 1)
    moved = await http.put(f"{RULES}/{rule['id']}", json={**body, "channels": [second["id"]]})
    assert moved.status_code == 200, moved.text
    refused = await http.post(f"{EVENTS}/{event['id']}/resend", json={"channels": [first["id"]]})
    assert refused.status_code == 400, refused.text
    assert f"channel {first['id']} not found" in refused.json()["detail"]
