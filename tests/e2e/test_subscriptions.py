"""Subscriptions through Envoy with OpenMeter's official Python SDK, and over gRPC.

A plan is published through the catalog API, a customer subscribes, and the subscription is read
expanded, edited, canceled and restored, changed to another plan; its managed entitlement exists
and cannot be deleted (403). A second subscription for the customer answers 409 with OpenMeter's
code.
"""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from corehttp.exceptions import HttpResponseError
from openmeter import Client

from tally.v1 import subscriptions_pb2, subscriptions_pb2_grpc
from tests.support.metering import cloudevent, unique
from tests.support.plans import plan_body
from tests.support.stack import TallyProcess

CLOUDEVENT_JSON = {"content-type": "application/cloudevents+json"}


def setup_catalog(http: httpx.Client, feature: str) -> None:
    meter = http.post(
        "/api/v1/meters",
        json={"slug": feature, "eventType": feature, "aggregation": "SUM", "valueProperty": "$.tokens"},
    )
    assert meter.status_code == 201, meter.text
    created = http.post("/api/v1/features", json={"key": feature, "name": feature, "meterSlug": feature})
    assert created.status_code == 201, created.text


def publish(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    plan = http.post("/api/v1/plans", json=body)
    assert plan.status_code == 201, plan.text
    published = http.post(f"/api/v1/plans/{plan.json()['id']}/publish")
    assert published.status_code == 200, published.text
    return published.json()


def plan_and_customer(http: httpx.Client, prefix: str) -> tuple[str, str, str, dict[str, Any]]:
    """A metered feature, a published plan_body plan on it and a customer attributed its own key as
    subject: (feature, plan key, customer key, the customer as created)."""
    feature = unique(f"{prefix}_tokens")
    setup_catalog(http, feature)
    key = unique(prefix)
    publish(http, plan_body(key, feature))
    customer_key = unique(f"{prefix}_customer")
    created = http.post(
        "/api/v1/customers",
        json={"name": f"{prefix} Co", "key": customer_key, "usageAttribution": {"subjectKeys": [customer_key]}},
    )
    assert created.status_code == 201, created.text
    customer: dict[str, Any] = created.json()
    return feature, key, customer_key, customer


def test_subscription_lifecycle_with_the_openmeter_sdk(tally: TallyProcess) -> None:
    feature = unique("sub_tokens")
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    setup_catalog(http, feature)
    key = unique("pro")
    plan = publish(http, plan_body(key, feature))
    client = Client(endpoint=tally.rest_url)
    customer_key = unique("sub_customer")
    client.customers.create(
        {"name": "Sub Co", "key": customer_key, "usageAttribution": {"subjectKeys": [customer_key]}}
    )

    sub = client.subscriptions.create({"plan": {"key": key}, "customerKey": customer_key})
    assert sub.status == "active" and sub.plan.key == key and sub.plan.version == plan["version"]
    assert sub["billingCadence"] == "P1M" and sub.currency == "USD"

    expanded = client.subscriptions.get_expanded(sub.id)
    assert [p.key for p in expanded.phases] == ["trial", "default"]
    assert [i.key for i in expanded.phases[0]["items"]] == ["base"]
    assert set(expanded.phases[1].item_timelines) == {"base", feature}

    # One subscription per customer at a time.
    with pytest.raises(HttpResponseError) as second:
        client.subscriptions.create({"plan": {"key": key}, "customerKey": customer_key})
    assert second.value.status_code == 409
    problem = second.value.response.json()
    assert (
        problem["extensions"]["validationErrors"][0]["code"]
        == "only_single_subscription_allowed_per_customer_at_a_time"
    )

    # Edit: add an item to the current phase.
    edited = client.subscriptions.edit(
        sub.id,
        {
            "customizations": [
                {
                    "op": "add_item",
                    "phaseKey": "trial",
                    "rateCard": {
                        "type": "flat_fee",
                        "key": "support",
                        "name": "Support",
                        "billingCadence": "P1M",
                        "price": {"type": "flat", "amount": "10", "paymentTerm": "in_advance"},
                    },
                },
                # Free and one-time: price and billingCadence are null (required keys in OpenMeter's schema).
                {
                    "op": "add_item",
                    "phaseKey": "trial",
                    "rateCard": {"type": "flat_fee", "key": "kickoff", "name": "K"},
                },
            ]
        },
    )
    assert edited.id == sub.id
    after_edit = client.subscriptions.get_expanded(sub.id)
    items = {i.key: i for i in after_edit.phases[0]["items"]}
    assert set(items) == {"base", "support", "kickoff"}
    assert (items["kickoff"]["price"], items["kickoff"]["billingCadence"]) == (None, None)
    assert items["support"]["billingCadence"] == "P1M"
    assert after_edit.phases[0].item_timelines["kickoff"][0]["price"] is None
    bad = http.patch(
        f"/api/v1/subscriptions/{sub.id}",
        json={"customizations": [{"op": "remove_item", "phaseKey": "nope", "itemKey": "base"}]},
    )
    assert bad.status_code == 400
    assert bad.json()["extensions"]["validationErrors"][0]["field"] == "customizations[0].phaseKey"

    # Cancel at the end of the billing cycle, then take it back.
    canceled = client.subscriptions.cancel(sub.id, {"timing": "next_billing_cycle"})
    assert canceled.status == "canceled" and canceled.active_to is not None
    restored = client.subscriptions.unschedule_cancelation(sub.id)
    assert restored.status == "active" and restored.active_to is None
    off_cycle = http.post(f"/api/v1/subscriptions/{sub.id}/cancel", json={"timing": "2031-01-01T00:00:17Z"})
    assert off_cycle.status_code == 400

    # Change to another plan: {current, next}, the same billing cycle.
    other = unique("team")
    publish(http, plan_body(other, feature, base="99"))
    changed = client.subscriptions.change(sub.id, {"timing": "immediate", "plan": {"key": other}})
    assert changed.current.id == sub.id and changed.current.active_to is not None
    assert changed.next.plan.key == other and changed.next.active_from == changed.current.active_to

    listed = client.customers.list_customer_subscriptions(customer_key)
    # Newest first unless asked otherwise (OpenMeter's default order is activeFrom DESC).
    assert [s.id for s in listed["items"]] == [changed.next.id, sub.id]
    oldest_first = http.get(f"/api/v1/customers/{customer_key}/subscriptions", params={"order": "ASC"}).json()
    assert [s["id"] for s in oldest_first["items"]] == [sub.id, changed.next.id]
    # Customers filtered by the plan of the subscription in force now.
    on_other = http.get("/api/v1/customers", params={"planKey": other}).json()["items"]
    assert [c["key"] for c in on_other] == [customer_key]
    assert http.get("/api/v1/customers", params={"planKey": key}).json()["items"] == []


def test_managed_entitlement_follows_the_item_and_cannot_be_deleted(tally: TallyProcess) -> None:
    feature = unique("sub_calls")
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    setup_catalog(http, feature)
    key = unique("starter")
    body = plan_body(key, feature)
    body["phases"] = body["phases"][1:]  # straight into the phase with the metered item
    publish(http, body)
    customer_key = unique("ent_customer")
    assert http.post("/api/v1/customers", json={"name": "E", "key": customer_key}).status_code == 201
    created = http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key})
    assert created.status_code == 201, created.text

    entitlements = http.get(f"/api/v2/customers/{customer_key}/entitlements")
    assert entitlements.status_code == 200, entitlements.text
    items = entitlements.json()["items"] if isinstance(entitlements.json(), dict) else entitlements.json()
    managed = [e for e in items if e["featureKey"] == feature]
    assert len(managed) == 1
    entitlement = managed[0]
    assert entitlement["annotations"]["subscription.id"] == created.json()["id"]
    value = http.get(f"/api/v2/customers/{customer_key}/entitlements/{feature}/value")
    assert value.status_code == 200 and value.json()["hasAccess"] is True
    assert value.json()["balance"] == 1000

    refused = http.delete(f"/api/v2/customers/{customer_key}/entitlements/{entitlement['id']}")
    assert refused.status_code == 403
    # Nor reset: its usage periods are the subscription's (OpenMeter's subscription hook refuses
    # the reset's PreUpdate, entitlement/hooks/subscription/hook.go).
    reset = http.post(f"/api/v2/customers/{customer_key}/entitlements/{feature}/reset", json={})
    assert reset.status_code == 403, reset.text
    assert "managed by subscription" in reset.json()["detail"]
    # A customer with a live subscription cannot be deleted either.
    assert http.delete(f"/api/v1/customers/{customer_key}").status_code in (400, 409)

    # Canceling ends the managed entitlement with the subscription.
    canceled = http.post(f"/api/v1/subscriptions/{created.json()['id']}/cancel", json={"timing": "next_billing_cycle"})
    assert canceled.status_code == 200, canceled.text
    again = http.get(f"/api/v2/customers/{customer_key}/entitlements")
    items = again.json()["items"] if isinstance(again.json(), dict) else again.json()
    ended = [e for e in items if e["featureKey"] == feature]
    assert ended and ended[0].get("activeTo") == canceled.json()["activeTo"]


async def test_subscriptions_over_grpc(tally: TallyProcess) -> None:
    feature = unique("sub_grpc")
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    setup_catalog(http, feature)
    key = unique("grpc_plan")
    publish(http, plan_body(key, feature))
    customer_key = unique("grpc_customer")
    assert http.post("/api/v1/customers", json={"name": "G", "key": customer_key}).status_code == 201
    async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
        stub = subscriptions_pb2_grpc.SubscriptionServiceStub(channel)
        sub = await stub.CreateSubscription(
            subscriptions_pb2.CreateSubscriptionRequest(
                plan=subscriptions_pb2.PlanReferenceInput(key=key), customer_key=customer_key
            )
        )
        assert sub.status == "active"
        expanded = await stub.GetSubscription(subscriptions_pb2.GetSubscriptionRequest(subscription_id=sub.id))
        assert [p.key for p in expanded.phases] == ["trial", "default"]
        assert expanded.phases[1].items[0].price.type == "flat"
        with pytest.raises(grpc.aio.AioRpcError) as conflict:
            await stub.CreateSubscription(
                subscriptions_pb2.CreateSubscriptionRequest(
                    plan=subscriptions_pb2.PlanReferenceInput(key=key), customer_key=customer_key
                )
            )
        assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
        canceled = await stub.CancelSubscription(
            subscriptions_pb2.CancelSubscriptionRequest(subscription_id=sub.id, timing="next_billing_cycle")
        )
        assert canceled.status == "canceled"


def test_addons_bought_changed_and_billed_as_items(tally: TallyProcess) -> None:
    feature = unique("sub_seats")
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    setup_catalog(http, feature)
    addon = http.post(
        "/api/v1/addons",
        json={
            "key": unique("seats"),
            "name": "Seats",
            "instanceType": "multiple",
            "currency": "USD",
            "rateCards": [
                {
                    "type": "flat_fee",
                    "key": "seat",
                    "name": "Seat",
                    "billingCadence": "P1M",
                    "price": {"type": "flat", "amount": "5", "paymentTerm": "in_advance"},
                }
            ],
        },
    )
    assert addon.status_code == 201, addon.text
    assert http.post(f"/api/v1/addons/{addon.json()['id']}/publish").status_code == 200
    key = unique("with_seats")
    draft = http.post("/api/v1/plans", json=plan_body(key, feature))
    assert draft.status_code == 201, draft.text
    offered = http.post(
        f"/api/v1/plans/{draft.json()['id']}/addons",
        json={"addonId": addon.json()["id"], "fromPlanPhase": "default", "maxQuantity": 5},
    )
    assert offered.status_code == 201, offered.text
    assert http.post(f"/api/v1/plans/{draft.json()['id']}/publish").status_code == 200
    customer_key = unique("addon_customer")
    assert http.post("/api/v1/customers", json={"name": "A", "key": customer_key}).status_code == 201
    client = Client(endpoint=tally.rest_url)
    # Skipping the trial: the add-on is offered from "default" on, and bought now (see
    # test_an_add_on_cannot_be_bought_before_its_phase for a purchase during the trial).
    sub = client.subscriptions.create({"plan": {"key": key}, "customerKey": customer_key, "startingPhase": "default"})

    bought = client.subscription_addons.create(
        sub.id, {"name": "Seats", "quantity": 2, "timing": "immediate", "addon": {"id": addon.json()["id"]}}
    )
    assert bought.quantity == 2 and bought.addon.key == addon.json()["key"]
    assert len(bought.timeline) == 1 and bought.timeline[0].quantity == 2
    expanded = client.subscriptions.get_expanded(sub.id)
    assert [p.key for p in expanded.phases] == ["default"]
    assert [i["id"] for i in expanded.phases[0].item_timelines["seat"]] == bought.rate_cards[
        0
    ].affected_subscription_item_ids

    too_many = http.patch(f"/api/v1/subscriptions/{sub.id}/addons/{bought.id}", json={"quantity": 6})
    assert too_many.status_code == 400
    assert too_many.json()["extensions"]["validationErrors"][0]["code"] == "addon_max_quantity_exceeded"
    changed = client.subscription_addons.update(sub.id, bought.id, {"quantity": 3, "timing": "immediate"})
    assert changed.quantity == 3
    listed = client.subscription_addons.list(sub.id)
    assert [a.id for a in listed] == [bought.id]
    assert client.subscription_addons.get(sub.id, bought.id).quantity == 3
    # Buying the same add-on again changes its quantity (as OpenMeter's create handler does).
    again = _buy_seats(http, sub.id, addon.json()["id"], 1)
    assert again.status_code == 201 and (again.json()["id"], again.json()["quantity"]) == (bought.id, 1)


def custom_plan_and_customer(http: httpx.Client, prefix: str) -> tuple[dict[str, Any], str]:
    """A metered feature, a plan_body plan on it without a key (a custom plan's body) and a new
    customer: (the custom plan, the customer's key)."""
    feature = unique(f"{prefix}_tokens")
    setup_catalog(http, feature)
    customer_key = unique(f"{prefix}_customer")
    assert http.post("/api/v1/customers", json={"name": "C", "key": customer_key}).status_code == 201
    custom = plan_body("ignored", feature)
    custom.pop("key")
    return custom, customer_key


def test_custom_plan_is_checked_like_a_published_one(tally: TallyProcess) -> None:
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    custom, customer_key = custom_plan_and_customer(http, "sub_custom")
    bad = {
        **custom,
        "phases": [
            {**custom["phases"][1], "rateCards": [{**custom["phases"][1]["rateCards"][1], "billingCadence": "P1W"}]}
        ],
    }
    refused = http.post("/api/v1/subscriptions", json={"customPlan": bad, "customerKey": customer_key})
    assert refused.status_code == 400
    fields = {v["field"] for v in refused.json()["extensions"]["validationErrors"]}
    assert any(f.startswith("customPlan.phases[0].rateCards[0]") for f in fields), fields
    created = http.post("/api/v1/subscriptions", json={"customPlan": custom, "customerKey": customer_key})
    assert created.status_code == 201, created.text
    assert "plan" not in created.json() and created.json()["billingCadence"] == "P1M"
    expanded = http.get(f"/api/v1/subscriptions/{created.json()['id']}").json()
    assert [p["key"] for p in expanded["phases"]] == ["trial", "default"]
    migrate = http.post(f"/api/v1/subscriptions/{created.json()['id']}/migrate", json={"timing": "immediate"})
    assert migrate.status_code == 400


def test_customer_shows_the_subscription_in_force(tally: TallyProcess) -> None:
    """OpenMeter's Customer carries currentSubscriptionId and, with expand=subscriptions (the
    default of GET and list), the subscriptions in force now; create and update answer neither."""
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    _, key, customer_key, created = plan_and_customer(http, "cur")
    assert "currentSubscriptionId" not in created
    assert not created.get("subscriptions")
    assert "currentSubscriptionId" not in http.get(f"/api/v1/customers/{customer_key}").json()

    sub = http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key})
    assert sub.status_code == 201, sub.text
    sub_id = sub.json()["id"]

    for params in ({}, {"expand": "subscriptions"}):
        got = http.get(f"/api/v1/customers/{customer_key}", params=params)
        assert got.status_code == 200, got.text
        assert got.json()["currentSubscriptionId"] == sub_id
        assert [(s["id"], s["status"], s["plan"]["key"]) for s in got.json()["subscriptions"]] == [
            (sub_id, "active", key)
        ]
        listed = http.get("/api/v1/customers", params={"key": customer_key, **params})
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()["items"]
        assert item["currentSubscriptionId"] == sub_id
        assert [s["id"] for s in item["subscriptions"]] == [sub_id]

    # Canceled now, nothing is in force.
    canceled = http.post(f"/api/v1/subscriptions/{sub_id}/cancel", json={"timing": "immediate"})
    assert canceled.status_code == 200, canceled.text
    after = http.get(f"/api/v1/customers/{customer_key}").json()
    assert "currentSubscriptionId" not in after and not after.get("subscriptions")


def test_an_item_with_a_feature_includes_it_and_its_entitlement(tally: TallyProcess) -> None:
    """OpenMeter's SubscriptionItem.included: the item's feature and the entitlement it manages;
    an item without a feature includes nothing."""
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    feature, key, customer_key, _ = plan_and_customer(http, "inc")
    sub = http.post(
        "/api/v1/subscriptions",
        json={"plan": {"key": key}, "customerKey": customer_key, "startingPhase": "default"},
    )
    assert sub.status_code == 201, sub.text
    entitlement = http.get(f"/api/v2/customers/{customer_key}/entitlements/{feature}")
    assert entitlement.status_code == 200, entitlement.text

    expanded = http.get(f"/api/v1/subscriptions/{sub.json()['id']}")
    assert expanded.status_code == 200, expanded.text
    (phase,) = expanded.json()["phases"]
    items = {i["key"]: i for i in phase["items"]}
    assert "included" not in items["base"]
    included = items[feature]["included"]
    assert included["feature"]["key"] == feature and included["feature"]["meterSlug"] == feature
    assert included["entitlement"]["id"] == entitlement.json()["id"]
    assert included["entitlement"]["type"] == "metered" and included["entitlement"]["subjectKey"] == customer_key
    assert phase["itemTimelines"][feature][0]["included"] == included


def test_customer_with_a_subscription_and_no_entitlement_is_refused_with_400(tally: TallyProcess) -> None:
    # OpenMeter's subscription customer validator refuses with a plain error, which the customer
    # service wraps as a validation error (400); only an active entitlement's refusal is a 409.
    feature = unique("sub_free")
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    setup_catalog(http, feature)
    key = unique("free")
    body = plan_body(key, feature)
    body["phases"] = body["phases"][:1]  # the free base fee alone: no entitlement, no invoice line
    del body["phases"][0]["duration"]
    publish(http, body)
    customer_key = unique("free_customer")
    customer = http.post("/api/v1/customers", json={"name": "F", "key": customer_key})
    assert customer.status_code == 201, customer.text
    created = http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key})
    assert created.status_code == 201, created.text
    refused = http.delete(f"/api/v1/customers/{customer_key}")
    assert refused.status_code == 400, refused.text
    assert "still have active subscriptions" in refused.json()["detail"]


def test_subject_keys_of_a_customer_with_a_subscription_cannot_change(tally: TallyProcess) -> None:
    # OpenMeter's subscription customer validator (ValidateUpdateCustomer): while a subscription is
    # in force, a replace that carries usageAttribution must keep its subject keys (in order); a
    # plain error, so a 400. Other fields still change; without a subscription the keys do too.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    _, key, customer_key, _ = plan_and_customer(http, "subk")
    body = {"name": "Renamed", "key": customer_key, "usageAttribution": {"subjectKeys": [customer_key]}}
    sub = http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key})
    assert sub.status_code == 201, sub.text
    for keys in ([customer_key, f"{customer_key}_b"], [f"{customer_key}_b"], []):
        refused = http.put(
            f"/api/v1/customers/{customer_key}", json={**body, "usageAttribution": {"subjectKeys": keys}}
        )
        assert refused.status_code == 400, (keys, refused.text)
        assert "cannot change subject keys" in refused.json()["detail"]
    got = http.get(f"/api/v1/customers/{customer_key}").json()
    assert got["usageAttribution"] == {"subjectKeys": [customer_key]} and got["name"] == "subk Co"
    renamed = http.put(f"/api/v1/customers/{customer_key}", json=body)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Renamed"

    canceled = http.post(f"/api/v1/subscriptions/{sub.json()['id']}/cancel", json={"timing": "immediate"})
    assert canceled.status_code == 200, canceled.text
    moved = http.put(
        f"/api/v1/customers/{customer_key}", json={**body, "usageAttribution": {"subjectKeys": [f"{customer_key}_b"]}}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["usageAttribution"] == {"subjectKeys": [f"{customer_key}_b"]}


def _seats_addon(key: str, amount: str = "5") -> dict[str, Any]:
    return {
        "key": key,
        "name": "Seats",
        "instanceType": "multiple",
        "currency": "USD",
        "rateCards": [
            {
                "type": "flat_fee",
                "key": "seat",
                "name": "Seat",
                "billingCadence": "P1M",
                "price": {"type": "flat", "amount": amount, "paymentTerm": "in_advance"},
            }
        ],
    }


def _buy_seats(
    http: httpx.Client, sub_id: str, addon_id: str, quantity: int, timing: str = "immediate"
) -> httpx.Response:
    """POST the subscription's purchase of `quantity` of the add-on (the answer, not checked)."""
    return http.post(
        f"/api/v1/subscriptions/{sub_id}/addons",
        json={"name": "Seats", "quantity": quantity, "timing": timing, "addon": {"id": addon_id}},
    )


def _seats_on_a_plan(
    http: httpx.Client, prefix: str, starting_phase: str | None = None, rate_cards: list[dict[str, Any]] | None = None
) -> tuple[str, str]:
    """A published multiple-instance add-on (seats, or `rate_cards`) offered from the plan_body
    plan's "default" phase, and a customer subscribed to that plan now (from `starting_phase`):
    (add-on id, subscription id)."""
    feature = unique(f"{prefix}_tokens")
    setup_catalog(http, feature)
    body = _seats_addon(unique(f"{prefix}_seats"))
    if rate_cards is not None:
        body["rateCards"] = rate_cards
    addon = http.post("/api/v1/addons", json=body)
    assert addon.status_code == 201, addon.text
    assert http.post(f"/api/v1/addons/{addon.json()['id']}/publish").status_code == 200
    key = unique(prefix)
    draft = http.post("/api/v1/plans", json=plan_body(key, feature))
    assert draft.status_code == 201, draft.text
    offered = http.post(
        f"/api/v1/plans/{draft.json()['id']}/addons", json={"addonId": addon.json()["id"], "fromPlanPhase": "default"}
    )
    assert offered.status_code == 201, offered.text
    assert http.post(f"/api/v1/plans/{draft.json()['id']}/publish").status_code == 200
    customer_key = unique(f"{prefix}_customer")
    assert http.post("/api/v1/customers", json={"name": "S", "key": customer_key}).status_code == 201
    body: dict[str, Any] = {"plan": {"key": key}, "customerKey": customer_key}
    if starting_phase is not None:
        body["startingPhase"] = starting_phase
    sub = http.post("/api/v1/subscriptions", json=body)
    assert sub.status_code == 201, sub.text
    return addon.json()["id"], sub.json()["id"]


def test_an_add_on_taken_back_before_it_starts_leaves_no_quantity(tally: TallyProcess) -> None:
    # An add-on bought for the next billing cycle and set to 0 then, before it started, is not bought
    # at all: its items were removed, and its timeline must not go on promising 2 seats from next
    # month (it did: the change gave an empty timeline, and the update kept the old one instead).
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "undo_addon")
    bought = _buy_seats(http, sub_id, addon_id, 2, "next_billing_cycle")
    assert bought.status_code == 201, bought.text
    assert [s["quantity"] for s in bought.json()["timeline"]] == [2]
    zeroed = http.patch(
        f"/api/v1/subscriptions/{sub_id}/addons/{bought.json()['id']}",
        json={"quantity": 0, "timing": "next_billing_cycle"},
    )
    assert zeroed.status_code == 200, zeroed.text
    expanded = http.get(f"/api/v1/subscriptions/{sub_id}").json()
    assert all("seat" not in p["itemTimelines"] for p in expanded["phases"])
    got = http.get(f"/api/v1/subscriptions/{sub_id}/addons/{bought.json()['id']}").json()
    assert [s["quantity"] for s in got["timeline"] if s["quantity"] > 0] == []


def test_an_add_on_rate_card_with_a_plan_items_key_extends_that_item(tally: TallyProcess) -> None:
    # OpenMeter merges it into the plan item (subscriptionaddon Apply: flat amounts add up, once per
    # instance) and Restore takes it off again; Tally refused the purchase (400
    # addon_rate_card_key_conflict).
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    boost = {
        "type": "flat_fee",
        "key": "base",
        "name": "Boost",
        "billingCadence": "P1M",
        "price": {"type": "flat", "amount": "10", "paymentTerm": "in_advance"},
    }
    addon_id, sub_id = _seats_on_a_plan(http, "boost_addon", "default", rate_cards=[boost])
    bought = _buy_seats(http, sub_id, addon_id, 2)
    assert bought.status_code == 201, bought.text

    def base_item() -> dict[str, Any]:
        (phase,) = [p for p in http.get(f"/api/v1/subscriptions/{sub_id}").json()["phases"] if p["key"] == "default"]
        (item,) = [i for i in phase["items"] if i["key"] == "base"]
        return item

    extended = base_item()
    assert (extended["name"], extended["price"]["amount"]) == ("Base", "69")  # 49 + 2 x 10
    (card,) = bought.json()["rateCards"]
    assert (card["rateCard"]["price"]["amount"], card["affectedSubscriptionItemIds"]) == ("10", [extended["id"]])
    zeroed = http.patch(f"/api/v1/subscriptions/{sub_id}/addons/{bought.json()['id']}", json={"quantity": 0})
    assert zeroed.status_code == 200, zeroed.text
    assert base_item()["price"]["amount"] == "49"


def test_an_add_on_extending_a_metered_item_adds_its_allowance_to_the_managed_entitlement(
    tally: TallyProcess,
) -> None:
    # OpenMeter's Apply adds an add-on's metered issueAfterReset to the plan item's, once per
    # instance; the item's managed entitlement is replaced from the purchase with the sum, and
    # restored when the add-on is set to 0. The merge was unit-tested only: here it goes through
    # the subscription sync's entitlement reconciliation to the value a customer reads.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    feature = unique("topup_tokens")
    setup_catalog(http, feature)
    topup = {
        "type": "usage_based",
        "key": feature,
        "name": "More tokens",
        "featureKey": feature,
        "billingCadence": "P1M",
        "entitlementTemplate": {"type": "metered", "issueAfterReset": 500},
    }
    addon = http.post("/api/v1/addons", json={**_seats_addon(unique("topup")), "rateCards": [topup]})
    assert addon.status_code == 201, addon.text
    assert http.post(f"/api/v1/addons/{addon.json()['id']}/publish").status_code == 200
    draft = http.post("/api/v1/plans", json=plan_body(unique("topup_plan"), feature))
    assert draft.status_code == 201, draft.text
    offered = http.post(
        f"/api/v1/plans/{draft.json()['id']}/addons", json={"addonId": addon.json()["id"], "fromPlanPhase": "default"}
    )
    assert offered.status_code == 201, offered.text
    assert http.post(f"/api/v1/plans/{draft.json()['id']}/publish").status_code == 200
    customer_key = unique("topup_customer")
    customer = {"name": "T", "key": customer_key, "usageAttribution": {"subjectKeys": [customer_key]}}
    assert http.post("/api/v1/customers", json=customer).status_code == 201
    sub = http.post(
        "/api/v1/subscriptions",
        json={"plan": {"key": draft.json()["key"]}, "customerKey": customer_key, "startingPhase": "default"},
    )
    assert sub.status_code == 201, sub.text
    value_url = f"/api/v2/customers/{customer_key}/entitlements/{feature}/value"

    def balance() -> Any:
        value = http.get(value_url)
        assert value.status_code == 200, value.text
        return value.json()["balance"]

    assert balance() == 1000
    # Usage before the purchase counts against the extended allowance too: the replacing
    # entitlement measures usage from the phase's start and issues its allowance from the start of
    # the current usage period (OpenMeter's default grant), not from the purchase.
    used = http.post("/api/v1/events", json=cloudevent(feature, customer_key, {"tokens": 300}), headers=CLOUDEVENT_JSON)
    assert used.status_code == 204, used.text
    assert balance() == 700
    bought = _buy_seats(http, sub.json()["id"], addon.json()["id"], 2)
    assert bought.status_code == 201, bought.text
    assert balance() == 1700  # 1,000 + 2 x 500 - 300
    listed = http.get(f"/api/v2/customers/{customer_key}/entitlements").json()
    items = listed["items"] if isinstance(listed, dict) else listed
    live = [e for e in items if e["featureKey"] == feature and "activeTo" not in e]
    assert [(e["issueAfterReset"], e["issue"]["amount"]) for e in live] == [(2000, 2000)]
    zeroed = http.patch(f"/api/v1/subscriptions/{sub.json()['id']}/addons/{bought.json()['id']}", json={"quantity": 0})
    assert zeroed.status_code == 200, zeroed.text
    assert balance() == 700


def test_a_subscription_with_add_ons_cannot_be_edited(tally: TallyProcess) -> None:
    # OpenMeter's EditRunning refuses a subscription with an add-on bought on it (403): an edit
    # could remove or reprice the add-on's items, and the add-on would go on showing seats that are
    # no longer billed. Tally took the edit: removing "seat" left 2 seats on the add-on, unbilled.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "edit_addon")
    bought = _buy_seats(http, sub_id, addon_id, 2, "next_billing_cycle")
    assert bought.status_code == 201, bought.text
    before = http.get(f"/api/v1/subscriptions/{sub_id}").json()
    edit = http.patch(
        f"/api/v1/subscriptions/{sub_id}",
        json={"customizations": [{"op": "remove_item", "phaseKey": "default", "itemKey": "seat"}]},
    )
    assert edit.status_code == 403, edit.text
    after = http.get(f"/api/v1/subscriptions/{sub_id}").json()
    assert after["phases"] == before["phases"]


def test_an_add_on_cannot_be_bought_before_its_phase(tally: TallyProcess) -> None:
    # OpenMeter (subscriptionaddon service Create and ChangeQuantity) refuses an add-on whose
    # fromPlanPhase has not been reached at the time it takes effect: 400 during the trial. Tally
    # answered 201 and scheduled it into the next phase.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "early_addon")
    body = {"name": "Seats", "quantity": 2, "timing": "immediate", "addon": {"id": addon_id}}
    early = http.post(f"/api/v1/subscriptions/{sub_id}/addons", json=body)
    assert early.status_code == 400, early.text
    assert early.json()["extensions"]["validationErrors"][0]["field"] == "timing"
    assert http.get(f"/api/v1/subscriptions/{sub_id}/addons").json() == []
    # From the next billing cycle on the subscription is in "default": that purchase is taken, and
    # a change of its quantity during the trial is refused the same way.
    bought = http.post(f"/api/v1/subscriptions/{sub_id}/addons", json={**body, "timing": "next_billing_cycle"})
    assert bought.status_code == 201, bought.text
    change = http.patch(
        f"/api/v1/subscriptions/{sub_id}/addons/{bought.json()['id']}", json={"quantity": 3, "timing": "immediate"}
    )
    assert change.status_code == 400, change.text


def test_a_bought_add_on_keeps_its_quantity_changes_after_a_new_version(tally: TallyProcess) -> None:
    # Publishing version 2 of an add-on archives version 1, which customers bought. They must
    # still be able to change (or end) the quantity of what they bought, as OpenMeter's
    # ChangeQuantity reads the bought version and its plan add-on whatever their status; Tally
    # refused with 400 addon_not_active, so seats could not be reduced any more.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "v2_addon", starting_phase="default")
    bought = _buy_seats(http, sub_id, addon_id, 3)
    assert bought.status_code == 201, bought.text
    key = http.get(f"/api/v1/addons/{addon_id}").json()["key"]
    v2 = http.post("/api/v1/addons", json=_seats_addon(key, amount="7"))
    assert v2.status_code == 201, v2.text
    assert http.post(f"/api/v1/addons/{v2.json()['id']}/publish").status_code == 200
    assert http.get(f"/api/v1/addons/{addon_id}").json()["status"] == "archived"
    fewer = http.patch(
        f"/api/v1/subscriptions/{sub_id}/addons/{bought.json()['id']}", json={"quantity": 1, "timing": "immediate"}
    )
    assert fewer.status_code == 200, fewer.text
    assert fewer.json()["quantity"] == 1 and fewer.json()["addon"]["version"] == 1
    # The seats keep the price they were bought at (version 1's 5, not version 2's 7).
    assert fewer.json()["rateCards"][0]["rateCard"]["price"]["amount"] == "5"


def test_only_the_add_on_version_the_plan_offers_can_be_bought(tally: TallyProcess) -> None:
    # The plan offers version 1 of the add-on, checked against the plan (currency, cadences, rate
    # card keys) when it was attached. Version 2, published later with another currency, was
    # bought too (matched by key): euro seats on a dollar subscription. OpenMeter's
    # subscriptionaddon Create looks the plan add-on up by the add-on's ID: 400, not linked.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "v2_buy", starting_phase="default")
    key = http.get(f"/api/v1/addons/{addon_id}").json()["key"]
    v2 = http.post("/api/v1/addons", json={**_seats_addon(key), "currency": "EUR"})
    assert v2.status_code == 201, v2.text
    assert http.post(f"/api/v1/addons/{v2.json()['id']}/publish").status_code == 200
    bought = _buy_seats(http, sub_id, v2.json()["id"], 1)
    assert bought.status_code == 400, bought.text
    assert http.get(f"/api/v1/subscriptions/{sub_id}/addons").json() == []


def test_migrate_keeps_the_subscriptions_name_and_description(tally: TallyProcess) -> None:
    # OpenMeter's Migrate (productcatalog/subscription/service/migrate.go) moves the subscription to
    # the newer plan version with its own name, description and metadata. Tally gave the new
    # subscription the plan's name and description, losing what the customer's was called.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    _, key, customer_key, _ = plan_and_customer(http, "migrate")
    sub = http.post(
        "/api/v1/subscriptions",
        json={
            "plan": {"key": key},
            "customerKey": customer_key,
            "name": "Acme's plan",
            "description": "negotiated",
            "metadata": {"crm": "42"},
        },
    )
    assert sub.status_code == 201, sub.text
    v2 = http.post(f"/api/v1/plans/{key}/next")
    assert v2.status_code == 201, v2.text
    assert http.post(f"/api/v1/plans/{v2.json()['id']}/publish").status_code == 200
    migrated = http.post(f"/api/v1/subscriptions/{sub.json()['id']}/migrate", json={"timing": "immediate"})
    assert migrated.status_code == 200, migrated.text
    following = migrated.json()["next"]
    assert following["plan"]["version"] == 2
    assert (following["name"], following.get("description"), following.get("metadata")) == (
        "Acme's plan",
        "negotiated",
        {"crm": "42"},
    )


def test_an_add_on_set_to_zero_shows_the_zero_in_its_timeline(tally: TallyProcess) -> None:
    # OpenMeter's SubscriptionAddon timeline has a segment per quantity change, 0 included (its
    # OpenAPI example: 1, 0, 1), and activeTo is the end of the last segment: none while the add-on
    # is on the subscription at 0. Tally dropped the 0 and ended the add-on at the change.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "zero_addon", starting_phase="default")
    bought = _buy_seats(http, sub_id, addon_id, 2)
    assert bought.status_code == 201, bought.text
    url = f"/api/v1/subscriptions/{sub_id}/addons/{bought.json()['id']}"
    zeroed = http.patch(url, json={"quantity": 0, "timing": "immediate"})
    assert zeroed.status_code == 200, zeroed.text
    again = http.patch(url, json={"quantity": 1, "timing": "immediate"})
    assert again.status_code == 200, again.text
    got = http.get(url).json()
    assert [s["quantity"] for s in got["timeline"]] == [2, 0, 1]
    segments = got["timeline"]
    assert segments[0]["activeTo"] == segments[1]["activeFrom"] and segments[1]["activeTo"] == segments[2]["activeFrom"]
    assert "activeTo" not in segments[2] and "activeTo" not in got
    assert got["quantity"] == 1


def test_a_subscription_takes_no_description_from_its_plan(tally: TallyProcess) -> None:
    # OpenMeter's create (productcatalog/subscription/http/create.go) gives a plan subscription the
    # description of the request only; the plan's is the subscription's only for a customPlan. Tally
    # copied the plan's description onto every subscription created without one.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    feature = unique("desc_tokens")
    setup_catalog(http, feature)
    key = unique("desc")
    publish(http, {**plan_body(key, feature), "description": "Internal pricing notes"})
    customer_key = unique("desc_customer")
    assert http.post("/api/v1/customers", json={"name": "D", "key": customer_key}).status_code == 201
    sub = http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key})
    assert sub.status_code == 201, sub.text
    assert "description" not in sub.json()
    assert "description" not in http.get(f"/api/v1/subscriptions/{sub.json()['id']}").json()


def test_a_change_takes_the_new_plans_settlement_mode(tally: TallyProcess) -> None:
    # OpenMeter's change (productcatalog/subscription/service/change.go) builds the new
    # subscription from the new plan, whose settlementMode it takes unless the request gives one.
    # Tally kept the current subscription's mode and ignored the request's settlementMode.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    feature, key, customer_key, _ = plan_and_customer(http, "settle")
    credit_only = unique("settle_credit")
    publish(http, {**plan_body(credit_only, feature), "settlementMode": "credit_only"})

    def subscribe(customer: str) -> str:
        sub = http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer})
        assert sub.status_code == 201, sub.text
        assert sub.json()["settlementMode"] == "credit_then_invoice"
        return str(sub.json()["id"])

    sub_id = subscribe(customer_key)
    change = {"plan": {"key": credit_only}, "timing": "next_billing_cycle"}
    bad = http.post(f"/api/v1/subscriptions/{sub_id}/change", json={**change, "settlementMode": "later"})
    assert bad.status_code == 400, bad.text
    assert bad.json()["extensions"]["validationErrors"][0]["field"] == "settlementMode"
    changed = http.post(f"/api/v1/subscriptions/{sub_id}/change", json=change)
    assert changed.status_code == 200, changed.text
    assert changed.json()["next"]["settlementMode"] == "credit_only"
    # The request's mode wins over the plan's.
    other_customer = unique("settle_other")
    assert http.post("/api/v1/customers", json={"name": "O", "key": other_customer}).status_code == 201
    kept = http.post(
        f"/api/v1/subscriptions/{subscribe(other_customer)}/change",
        json={**change, "settlementMode": "credit_then_invoice"},
    )
    assert kept.status_code == 200, kept.text
    assert kept.json()["next"]["settlementMode"] == "credit_then_invoice"


def test_an_edit_adding_an_item_for_an_unknown_or_archived_feature_is_refused(tally: TallyProcess) -> None:
    """A subscription edit's rate card goes through the checks a plan's does: its feature must
    exist and be live, or the item bills usage of nothing and its entitlement cannot be made."""
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    feature, _plan, _customer_key, customer = plan_and_customer(http, "edit_feature")
    created = http.post("/api/v1/subscriptions", json={"plan": {"key": _plan}, "customerId": customer["id"]})
    assert created.status_code == 201, created.text
    archived = unique("edit_archived")
    setup_catalog(http, archived)
    assert http.delete(f"/api/v1/features/{archived}").status_code == 204

    for key, code in (("edit_nope", "rate_card_feature_not_found"), (archived, "rate_card_feature_archived")):
        card = {
            "type": "usage_based",
            "key": key,
            "name": key,
            "featureKey": key,
            "billingCadence": "P1M",
            "price": {"type": "unit", "amount": "0.01"},
        }
        edit = http.patch(
            f"/api/v1/subscriptions/{created.json()['id']}",
            json={"customizations": [{"op": "add_item", "phaseKey": "trial", "rateCard": card}]},
        )
        assert edit.status_code == 400, edit.text
        problem = edit.json()["extensions"]["validationErrors"][0]
        assert (problem["field"], problem["code"]) == ("customizations[0].rateCard.featureKey", code)
    expanded = http.get(f"/api/v1/subscriptions/{created.json()['id']}").json()
    assert {i["key"] for i in expanded["phases"][0]["items"]} == {"base"}
    assert feature in expanded["phases"][1]["itemTimelines"]


def test_a_feature_a_plan_or_subscription_uses_cannot_be_archived(tally: TallyProcess) -> None:
    """OpenMeter's ArchiveFeature refuses (400) while a published plan version that has not ended,
    or a subscription in force or scheduled, uses the feature; archiving the plan and cancelling
    the subscription free it."""
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    feature, plan_key, _customer_key, customer = plan_and_customer(http, "archive_in_use")
    refused = http.delete(f"/api/v1/features/{feature}")
    assert refused.status_code == 400, refused.text
    assert "referenced by active plan" in refused.json()["detail"]

    created = http.post("/api/v1/subscriptions", json={"plan": {"key": plan_key}, "customerId": customer["id"]})
    assert created.status_code == 201, created.text
    plan_id = created.json()["plan"]["id"]
    assert http.post(f"/api/v1/plans/{plan_id}/archive").status_code == 200
    refused = http.delete(f"/api/v1/features/{feature}")
    assert refused.status_code == 400, refused.text
    assert "referenced by active subscription" in refused.json()["detail"]
    assert http.get(f"/api/v1/features/{feature}").status_code == 200  # still live

    cancelled = http.post(f"/api/v1/subscriptions/{created.json()['id']}/cancel", json={"timing": "immediate"})
    assert cancelled.status_code == 200, cancelled.text
    assert http.delete(f"/api/v1/features/{feature}").status_code == 204
    assert http.get(f"/api/v1/features/{feature}").status_code == 404


def test_a_deleted_customer_named_by_id_is_refused_with_412(tally: TallyProcess) -> None:
    """OpenMeter's subscription create and a customer's subscription list answer "customer is
    deleted" (412) for a deleted customer named by its ID."""
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    _feature, plan_key, _customer_key, customer = plan_and_customer(http, "deleted_customer")
    assert http.delete(f"/api/v1/customers/{customer['id']}").status_code == 204
    created = http.post("/api/v1/subscriptions", json={"plan": {"key": plan_key}, "customerId": customer["id"]})
    assert created.status_code == 412, created.text
    listed = http.get(f"/api/v1/customers/{customer['id']}/subscriptions")
    assert listed.status_code == 412, listed.text


def test_an_item_without_a_price_shows_no_currency(tally: TallyProcess) -> None:
    # The reference contract's SubscriptionItem.currency: "present for priced items" (OpenMeter's
    # MapSubscriptionItemToAPI sets it from the rate card's materialized currency, which only a
    # priced one has). Tally showed the subscription's currency on every item.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    feature = unique("badge_tokens")
    setup_catalog(http, feature)
    key = unique("badged")
    body = plan_body(key, feature)
    body["phases"][0]["rateCards"].append(
        {"type": "flat_fee", "key": "badge", "name": "Badge", "billingCadence": None, "price": None}
    )
    publish(http, body)
    customer_key = unique("badged_customer")
    assert http.post("/api/v1/customers", json={"name": "Badge Co", "key": customer_key}).status_code == 201
    sub = http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key})
    assert sub.status_code == 201, sub.text
    got = http.get(f"/api/v1/subscriptions/{sub.json()['id']}")
    assert got.status_code == 200, got.text
    trial = got.json()["phases"][0]
    items = {i["key"]: i for i in trial["items"]}
    assert items["base"]["currency"] == "USD"
    assert "currency" not in items["badge"], items["badge"]
    assert "currency" not in trial["itemTimelines"]["badge"][0]


def test_a_custom_plans_metadata_is_the_subscriptions(tally: TallyProcess) -> None:
    # CustomSubscriptionCreate has no metadata of its own: OpenMeter's create handler gives the
    # subscription the custom plan's name, description and metadata ("We map the plan metadata to
    # the subscription metadata", productcatalog/subscription/http/create.go; change.go does the
    # same for a change to a custom plan). Tally took the name and description but left metadata
    # empty.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    custom, customer_key = custom_plan_and_customer(http, "sub_custom_meta")
    custom["metadata"] = {"crm": "7"}
    created = http.post("/api/v1/subscriptions", json={"customPlan": custom, "customerKey": customer_key})
    assert created.status_code == 201, created.text
    assert created.json().get("metadata") == {"crm": "7"}
    custom["metadata"] = {"crm": "8"}
    changed = http.post(
        f"/api/v1/subscriptions/{created.json()['id']}/change", json={"customPlan": custom, "timing": "immediate"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["next"].get("metadata") == {"crm": "8"}


def test_an_add_on_is_refused_while_the_customer_is_billed_in_another_currency(tally: TallyProcess) -> None:
    # Buying an add-on or changing its quantity stores the subscription with Service.Update, whose
    # validateUpdate (openmeter/subscription/service/servicevalidation.go) checks the customer's
    # currency as create does: 400 "currency mismatch" for a USD subscription of a customer since
    # billed in EUR. Tally added the add-on's USD prices.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "eur_addon", starting_phase="default")
    customer_id = http.get(f"/api/v1/subscriptions/{sub_id}").json()["customerId"]
    customer = http.get(f"/api/v1/customers/{customer_id}").json()
    moved = http.put(
        f"/api/v1/customers/{customer_id}",
        json={"name": customer["name"], "key": customer["key"], "currency": "EUR"},
    )
    assert moved.status_code == 200, moved.text
    refused = _buy_seats(http, sub_id, addon_id, 2)
    assert refused.status_code == 400, refused.text
    assert "currency" in refused.text
    assert http.get(f"/api/v1/subscriptions/{sub_id}/addons").json() == []


def test_an_add_ons_quantity_change_is_refused_while_the_customer_is_billed_in_another_currency(
    tally: TallyProcess,
) -> None:
    # OpenMeter's ChangeAddonQuantity stores the subscription with Service.Update as a purchase does
    # (validateUpdate, openmeter/subscription/service/servicevalidation.go): 400 "currency mismatch".
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "eur_addon_change", starting_phase="default")
    bought = _buy_seats(http, sub_id, addon_id, 2)
    assert bought.status_code == 201, bought.text
    customer_id = http.get(f"/api/v1/subscriptions/{sub_id}").json()["customerId"]
    customer = http.get(f"/api/v1/customers/{customer_id}").json()
    moved = http.put(
        f"/api/v1/customers/{customer_id}",
        json={"name": customer["name"], "key": customer["key"], "currency": "EUR"},
    )
    assert moved.status_code == 200, moved.text
    change = http.patch(
        f"/api/v1/subscriptions/{sub_id}/addons/{bought.json()['id']}", json={"quantity": 3, "timing": "immediate"}
    )
    assert change.status_code == 400, change.text
    assert http.get(f"/api/v1/subscriptions/{sub_id}/addons").json()[0]["quantity"] == 2


def test_a_subscription_read_at_a_time_shows_it_as_of_then(tally: TallyProcess) -> None:
    """GET /api/v1/subscriptions/{id}?at=: the proto promises the subscription as of that time
    (OpenMeter answers 501); the view was today's whatever `at` said."""
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    feature, key, customer_key, _ = plan_and_customer(http, "asof")
    start = "2031-03-01T00:00:00Z"
    created = http.post(
        "/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key, "timing": start}
    )
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    today = http.get(f"/api/v1/subscriptions/{sub_id}")
    assert today.status_code == 200, today.text
    assert today.json()["status"] == "scheduled"
    assert "currentAlignedBillingPeriod" not in today.json()["alignment"]

    # Ten days into the default phase (after the month of trial): active, billed Apr 1 - May 1,
    # and the default phase's items are the ones in force.
    then = http.get(f"/api/v1/subscriptions/{sub_id}", params={"at": "2031-04-11T00:00:00Z"})
    assert then.status_code == 200, then.text
    body = then.json()
    assert body["status"] == "active"
    assert body["alignment"]["currentAlignedBillingPeriod"] == {
        "from": "2031-04-01T00:00:00Z",
        "to": "2031-05-01T00:00:00Z",
    }
    default = next(p for p in body["phases"] if p["key"] == "default")
    assert {i["key"] for i in default["items"]} == {"base", feature}
    bad = http.get(f"/api/v1/subscriptions/{sub_id}", params={"at": "yesterday"})
    assert bad.status_code == 400, bad.text


def test_an_add_on_items_price_is_what_its_quantity_bills(tally: TallyProcess) -> None:
    # OpenMeter applies a multiple-instance add-on's rate card once per instance, so the item it
    # makes shows N x the flat amount (subscription/addon/extend.go: Apply adds the amounts), and
    # that is what Tally bills (docs/billing.md). The expanded subscription showed the amount of
    # one seat whatever the quantity: 2 seats of 5 read as an item priced 5.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "seat_price", starting_phase="default")
    bought = _buy_seats(http, sub_id, addon_id, 2)
    assert bought.status_code == 201, bought.text
    expanded = http.get(f"/api/v1/subscriptions/{sub_id}").json()
    seat = next(i for i in expanded["phases"][0]["items"] if i["key"] == "seat")
    assert (seat["price"]["type"], seat["price"]["amount"]) == ("flat", "10")
    # The add-on's own rate card is one instance's, as OpenMeter's SubscriptionAddon shows it.
    assert bought.json()["rateCards"][0]["rateCard"]["price"]["amount"] == "5"
    changed = http.patch(
        f"/api/v1/subscriptions/{sub_id}/addons/{bought.json()['id']}", json={"quantity": 3, "timing": "immediate"}
    )
    assert changed.status_code == 200, changed.text
    timeline = http.get(f"/api/v1/subscriptions/{sub_id}").json()["phases"][0]["itemTimelines"]["seat"]
    assert [v["price"]["amount"] for v in timeline] == ["10", "15"]


def test_the_billing_anchor_is_shown_as_given(tally: TallyProcess) -> None:
    # OpenMeter keeps the anchor it is given ("allow any subscription anchor, do not normalize the
    # anchor", openmeter#3229; its e2e test reads back the anchor it sent, and a change's next
    # subscription shows the current one's). Tally showed it moved to the last billing-period start
    # at or before the subscription's start: an anchor on the 1st of next month read back as the 1st
    # of this one, and the next subscription of a change at the next billing cycle had an anchor a
    # month later than the current one's.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    _, key, customer_key, _ = plan_and_customer(http, "anchor")
    anchor = "2031-02-01T00:00:00Z"
    created = http.post(
        "/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key, "billingAnchor": anchor}
    )
    assert created.status_code == 201, created.text
    assert created.json()["billingAnchor"] == anchor
    sub_id = created.json()["id"]
    assert http.get(f"/api/v1/subscriptions/{sub_id}").json()["billingAnchor"] == anchor
    changed = http.post(
        f"/api/v1/subscriptions/{sub_id}/change", json={"plan": {"key": key}, "timing": "next_billing_cycle"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["current"]["billingAnchor"] == changed.json()["next"]["billingAnchor"] == anchor
    # Billing still runs from the anchor: the next subscription starts on a 1st.
    assert changed.json()["next"]["activeFrom"].endswith("-01T00:00:00Z")


def test_buying_an_add_on_the_subscription_has_changes_its_quantity(tally: TallyProcess) -> None:
    # OpenMeter's POST /subscriptions/{id}/addons changes the quantity of an add-on the
    # subscription already has, "as a convenience" (subscription/addon/http/create.go, since
    # openmeter#2812), so a client may set the quantity with the same call it bought with. Tally
    # answered 409 addon_already_purchased.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    addon_id, sub_id = _seats_on_a_plan(http, "seat_again", starting_phase="default")
    bought = _buy_seats(http, sub_id, addon_id, 2)
    assert bought.status_code == 201, bought.text
    again = _buy_seats(http, sub_id, addon_id, 4)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == bought.json()["id"]
    assert again.json()["quantity"] == 4
    assert [s["quantity"] for s in again.json()["timeline"]] == [2, 4]
    listed = http.get(f"/api/v1/subscriptions/{sub_id}/addons").json()
    assert [(a["id"], a["quantity"]) for a in listed] == [(bought.json()["id"], 4)]


def test_a_change_links_the_two_subscriptions_in_their_annotations(tally: TallyProcess) -> None:
    # OpenMeter's ChangeToPlan (subscription/workflow/service/subscription.go) annotates the next
    # subscription with the one it follows (subscription.previous.id) and the current one with its
    # successor (subscription.superseding.id); Subscription.annotations carries them. Tally's
    # answers had no annotations. A restore deletes the successor, and drops the link to it.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    _, key, _, customer = plan_and_customer(http, "linked")
    created = http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerId": customer["id"]})
    assert created.status_code == 201, created.text
    assert "annotations" not in created.json()
    sub_id = created.json()["id"]
    changed = http.post(
        f"/api/v1/subscriptions/{sub_id}/change", json={"plan": {"key": key}, "timing": "next_billing_cycle"}
    )
    assert changed.status_code == 200, changed.text
    next_id = changed.json()["next"]["id"]
    assert changed.json()["current"]["annotations"] == {"subscription.superseding.id": next_id}
    assert changed.json()["next"]["annotations"] == {"subscription.previous.id": sub_id}
    assert http.get(f"/api/v1/subscriptions/{sub_id}").json()["annotations"] == {"subscription.superseding.id": next_id}
    listed = http.get(f"/api/v1/customers/{customer['id']}/subscriptions").json()["items"]
    assert {s["id"]: s.get("annotations") for s in listed} == {
        sub_id: {"subscription.superseding.id": next_id},
        next_id: {"subscription.previous.id": sub_id},
    }
    restored = http.post(f"/api/v1/subscriptions/{sub_id}/restore")
    assert restored.status_code == 200, restored.text
    assert "annotations" not in restored.json()
    # Deleting the successor drops the link to it too (OpenMeter's annotation cleanup hook).
    again = http.post(
        f"/api/v1/subscriptions/{sub_id}/change", json={"plan": {"key": key}, "timing": "next_billing_cycle"}
    )
    assert again.status_code == 200, again.text
    assert http.delete(f"/api/v1/subscriptions/{again.json()['next']['id']}").status_code == 204
    assert "annotations" not in http.get(f"/api/v1/subscriptions/{sub_id}").json()
    continued = http.post(f"/api/v1/subscriptions/{sub_id}/unschedule-cancelation")
    assert continued.status_code == 200, continued.text
    assert "annotations" not in continued.json()


def test_a_paid_subscription_gives_a_customer_without_a_currency_the_plans(tally: TallyProcess) -> None:
    # OpenMeter's subscription service sets the customer's currency to the subscription's when the
    # customer has none and the subscription bills anything (updateCustomerCurrencyIfNotSet, on
    # create and update), so the customer is billed in one currency from then on. Tally left the
    # customer without one: a later subscription to a plan in another currency went through.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    feature, key, customer_key, customer = plan_and_customer(http, "cur_set")
    assert customer.get("currency") is None
    created = http.post("/api/v1/subscriptions", json={"plan": {"key": key}, "customerKey": customer_key})
    assert created.status_code == 201, created.text
    assert http.get(f"/api/v1/customers/{customer_key}").json().get("currency") == "USD"
    # A plan in another currency is refused for the customer from then on.
    assert http.post(f"/api/v1/subscriptions/{created.json()['id']}/cancel", json={}).status_code == 200
    euro = unique("cur_set_eur")
    publish(http, {**plan_body(euro, feature), "currency": "EUR"})
    refused = http.post("/api/v1/subscriptions", json={"plan": {"key": euro}, "customerKey": customer_key})
    assert refused.status_code == 400, refused.text
    assert refused.json()["extensions"]["validationErrors"][0]["code"] == "currency_mismatch"


def test_the_cost_basis_mode_is_checked_and_kept(tally: TallyProcess) -> None:
    # costBasisMode (dynamic, the default, or pinned) is part of OpenMeter's create and change
    # bodies and its Subscription; migrate keeps the subscription's. Tally ignored it: "pinned" read
    # back as "dynamic", and a value outside the enum was taken without a word.
    http = httpx.Client(base_url=tally.rest_url, timeout=30)
    _, key, customer_key, _ = plan_and_customer(http, "cost_basis")
    body = {"plan": {"key": key}, "customerKey": customer_key}
    bad = http.post("/api/v1/subscriptions", json={**body, "costBasisMode": "frozen"})
    assert bad.status_code == 400, bad.text
    assert bad.json()["extensions"]["validationErrors"][0]["field"] == "costBasisMode"
    created = http.post("/api/v1/subscriptions", json={**body, "costBasisMode": "pinned"})
    assert created.status_code == 201, created.text
    assert created.json()["costBasisMode"] == "pinned"
    sub_id = created.json()["id"]
    assert http.get(f"/api/v1/subscriptions/{sub_id}").json()["costBasisMode"] == "pinned"
    changed = http.post(f"/api/v1/subscriptions/{sub_id}/change", json={"plan": {"key": key}, "timing": "immediate"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["current"]["costBasisMode"] == "pinned"
    assert changed.json()["next"]["costBasisMode"] == "dynamic"
    # A migration keeps the subscription's mode.
    pinned = http.post(
        f"/api/v1/subscriptions/{changed.json()['next']['id']}/change",
        json={"plan": {"key": key}, "timing": "immediate", "costBasisMode": "pinned"},
    )
    assert pinned.status_code == 200, pinned.text
    v2 = http.post(f"/api/v1/plans/{key}/next")
    assert v2.status_code == 201, v2.text
    assert http.post(f"/api/v1/plans/{v2.json()['id']}/publish").status_code == 200
    migrated = http.post(f"/api/v1/subscriptions/{pinned.json()['next']['id']}/migrate", json={})
    assert migrated.status_code == 200, migrated.text
    assert migrated.json()["next"]["costBasisMode"] == "pinned"
