"""Plans, add-ons, plan add-ons and currencies: OpenMeter's official SDK and plain HTTP through
Envoy, and gRPC through the generated stubs, against a real Tally on real Postgres."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import pytest
from corehttp.exceptions import HttpResponseError
from google.protobuf import json_format
from openmeter import Client

from tally.v1 import catalog_pb2, catalog_pb2_grpc
from tests.support.metering import unique
from tests.support.stack import TallyProcess


def _feature(http: httpx.Client, metered: bool = True) -> str:
    key = unique("cat_feature")
    body: dict[str, Any] = {"key": key, "name": key}
    if metered:
        slug = unique("cat_meter")
        meter = {"slug": slug, "eventType": slug, "aggregation": "SUM", "valueProperty": "$.value"}
        assert http.post("/api/v1/meters", json=meter).status_code == 201
        body["meterSlug"] = slug
    assert http.post("/api/v1/features", json=body).status_code == 201
    return key


def _usage(feature: str, price: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "usage_based",
        "key": feature,
        "name": f"Usage of {feature}",
        "featureKey": feature,
        "billingCadence": "P1M",
        "price": price,
        **extra,
    }


def _every_price_plan(key: str, features: list[str]) -> dict[str, Any]:
    unit, graduated, volume, package, dynamic = features
    return {
        "key": key,
        "name": "Every price",
        "currency": "USD",
        "billingCadence": "P1M",
        "phases": [
            {
                "key": "trial",
                "name": "Trial",
                "duration": "P1M",
                "rateCards": [
                    {
                        "type": "flat_fee",
                        "key": "setup",
                        "name": "Setup",
                        "billingCadence": None,
                        "price": {"type": "flat", "amount": "100", "paymentTerm": "in_advance"},
                    }
                ],
            },
            {
                "key": "default",
                "name": "Default",
                "duration": None,
                "rateCards": [
                    {
                        "type": "flat_fee",
                        "key": "base",
                        "name": "Base",
                        "billingCadence": "P1M",
                        "price": {"type": "flat", "amount": "49.99", "paymentTerm": "in_arrears"},
                        "discounts": {"percentage": {"percentage": 10}},
                        "taxConfig": {"behavior": "exclusive", "stripe": {"code": "txcd_10000000"}},
                    },
                    _usage(
                        unit,
                        {"type": "unit", "amount": "0.01", "minimumAmount": "5", "maximumAmount": "500"},
                        discounts={"usage": {"quantity": "1000"}},
                        entitlementTemplate={"type": "metered", "isSoftLimit": True, "issueAfterReset": 1000},
                    ),
                    _usage(
                        graduated,
                        {
                            "type": "tiered",
                            "mode": "graduated",
                            "tiers": [
                                {"upToAmount": "1000", "unitPrice": {"type": "unit", "amount": "0.02"}},
                                {
                                    "upToAmount": "10000",
                                    "flatPrice": {"type": "flat", "amount": "5"},
                                    "unitPrice": {"type": "unit", "amount": "0.01"},
                                },
                                {"unitPrice": {"type": "unit", "amount": "0.005"}},
                            ],
                        },
                    ),
                    _usage(
                        volume,
                        {
                            "type": "tiered",
                            "mode": "volume",
                            "tiers": [
                                {"upToAmount": "100", "flatPrice": {"type": "flat", "amount": "10"}},
                                {"unitPrice": {"type": "unit", "amount": "0.1"}},
                            ],
                        },
                    ),
                    _usage(package, {"type": "package", "amount": "10", "quantityPerPackage": "1000"}),
                    _usage(dynamic, {"type": "dynamic", "multiplier": "1.2"}),
                ],
            },
        ],
    }


def _problem(exc: HttpResponseError) -> dict[str, Any]:
    body: dict[str, Any] = exc.response.json()
    return body


def test_sdk_creates_publishes_versions_and_archives_plans(tally: TallyProcess) -> None:
    client = Client(endpoint=tally.rest_url)
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        features = [_feature(http) for _ in range(5)]
        key = unique("plan")
        plan = client.plans.create(_every_price_plan(key, features))
        assert (plan.key, plan.version, plan.status, plan.currency) == (key, 1, "draft", "USD")
        # The SDK leaves `type`-discriminated unions (rate cards) as plain JSON objects.
        default = plan.phases[1].rate_cards
        assert [rc["price"]["type"] for rc in default] == ["flat", "unit", "tiered", "tiered", "package", "dynamic"]
        unit = default[1]
        assert unit["price"]["amount"] == "0.01" and unit["price"]["minimumAmount"] == "5"
        assert unit["discounts"]["usage"]["quantity"] == "1000"
        # The metered template's usage period defaults to the rate card's cadence.
        assert unit["entitlementTemplate"]["usagePeriod"] == "P1M"
        assert "upToAmount" not in default[2]["price"]["tiers"][2]
        assert default[0]["taxConfig"] == {"behavior": "exclusive", "stripe": {"code": "txcd_10000000"}}
        assert plan.phases[0].rate_cards[0].get("billingCadence") is None  # one-time fee

        # A second draft for the key is refused, 400, with nothing stored.
        with pytest.raises(HttpResponseError) as second:
            client.plans.create(_every_price_plan(key, features))
        assert second.value.status_code == 400
        assert [p.id for p in client.plans.list(key=[key])] == [plan.id]

        # Draft update, then publish.
        body = _every_price_plan(key, features)
        body["name"] = "Every price, renamed"
        del body["key"], body["currency"]
        updated = client.plans.update(plan.id, body)
        assert updated.name == "Every price, renamed" and updated.version == 1
        published = client.plans.publish(plan.id)
        assert published.status == "active" and published.effective_from is not None
        assert client.plans.get(key).id == plan.id

        # A published version cannot be changed or deleted.
        with pytest.raises(HttpResponseError) as changed:
            client.plans.update(plan.id, body)
        assert changed.value.status_code == 400
        assert _problem(changed.value)["extensions"]["validationErrors"][0]["code"] == "plan_invalid_status"
        with pytest.raises(HttpResponseError) as deleted:
            client.plans.delete(plan.id)
        assert deleted.value.status_code == 400

        # Next version: a draft copy; publishing it archives v1.
        v2 = client.plans.next(key)
        assert (v2.version, v2.status) == (2, "draft")
        assert client.plans.get(key, include_latest=True).id == v2.id
        assert client.plans.get(key).id == plan.id
        client.plans.publish(v2.id)
        assert client.plans.get(plan.id).status == "archived"
        assert client.plans.get(key).id == v2.id
        statuses = {p.version: p.status for p in client.plans.list(key=[key])}
        assert statuses == {1: "archived", 2: "active"}
        assert [p.version for p in client.plans.list(key=[key], status=["active"])] == [2]

        archived = client.plans.archive(v2.id)
        assert archived.status == "archived" and archived.effective_to is not None
        with pytest.raises(HttpResponseError) as missing:
            client.plans.get(key)
        assert missing.value.status_code == 404
        client.plans.delete(v2.id)  # archived versions may be deleted: 204
        assert [p.version for p in client.plans.list(key=[key])] == [1]
        assert {p.version for p in client.plans.list(key=[key], include_deleted=True)} == {1, 2}


def test_publish_refuses_unaligned_cadences_that_create_accepted(tally: TallyProcess) -> None:
    client = Client(endpoint=tally.rest_url)
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        feature = _feature(http)
        key = unique("unaligned")
        body = {
            "key": key,
            "name": "Unaligned",
            "billingCadence": "P1M",
            "phases": [
                {
                    "key": "default",
                    "name": "Default",
                    "rateCards": [_usage(feature, {"type": "unit", "amount": "1"}, billingCadence="P1W")],
                }
            ],
        }
        plan = client.plans.create(body)
        assert plan.currency == "USD"
        assert [(e.field, e.code) for e in plan.validation_errors] == [
            ("phases[0].rateCards[0].billingCadence", "rate_card_billing_cadence_unaligned")
        ]
        with pytest.raises(HttpResponseError) as refused:
            client.plans.publish(plan.id)
        assert refused.value.status_code == 400
        (issue,) = _problem(refused.value)["extensions"]["validationErrors"]
        assert (issue["field"], issue["code"]) == (
            "phases[0].rateCards[0].billingCadence",
            "rate_card_billing_cadence_unaligned",
        )
        assert client.plans.get(plan.id).status == "draft"


def test_metered_template_without_issue_after_reset_is_a_warning_publish_refuses(tally: TallyProcess) -> None:
    """OpenMeter's RateCardMeta.Validate (productcatalog/ratecard.go, #3946): a metered template
    needs `issueAfterReset` (entitlement_template_issue_after_reset_required, a warning: kept on
    the draft, refused at publish)."""
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        feature = _feature(http)
        card = _usage(feature, {"type": "unit", "amount": "1"}, entitlementTemplate={"type": "metered"})
        phases = [{"key": "default", "name": "Default", "rateCards": [card]}]
        body = {"key": unique("no_issue"), "name": "No issue", "billingCadence": "P1M", "phases": phases}
        created = http.post("/api/v1/plans", json=body)
        assert created.status_code == 201, created.text
        path = "phases[0].rateCards[0].entitlementTemplate.issueAfterReset"
        code = "entitlement_template_issue_after_reset_required"
        assert [(e["field"], e["code"]) for e in created.json()["validationErrors"]] == [(path, code)]
        plan_id = created.json()["id"]
        refused = http.post(f"/api/v1/plans/{plan_id}/publish")
        assert refused.status_code == 400, refused.text
        assert [(e["field"], e["code"]) for e in refused.json()["extensions"]["validationErrors"]] == [(path, code)]

        card["entitlementTemplate"] = {"type": "metered", "issueAfterReset": 0}
        del body["key"]
        assert http.put(f"/api/v1/plans/{plan_id}", json=body).json()["validationErrors"] == []
        assert http.post(f"/api/v1/plans/{plan_id}/publish").status_code == 200


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (
            lambda b: b["phases"][1]["rateCards"][1]["price"].update(amount="-1"),
            "phases[1].rateCards[1].price.amount",
            "negative",
        ),
        (
            lambda b: b["phases"][1]["rateCards"][2]["price"]["tiers"][1].update(upToAmount="500"),
            "phases[1].rateCards[2].price.tiers[1].upToAmount",
            "tiers_out_of_order",
        ),
        (
            lambda b: b["phases"][1]["rateCards"][2]["price"]["tiers"][0].pop("upToAmount"),
            "phases[1].rateCards[2].price.tiers[0].upToAmount",
            "open_ended_tier_not_last",
        ),
        (lambda b: b.update(currency="ABC"), "currency", "currency_invalid"),
        (
            lambda b: b["phases"][1]["rateCards"][5].update(key="nope", featureKey="nope"),
            "phases[1].rateCards[5].featureKey",
            "rate_card_feature_not_found",
        ),
    ],
)
def test_bad_plans_are_refused_with_field_paths_and_nothing_is_stored(
    tally: TallyProcess, mutate: Any, field: str, code: str
) -> None:
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        features = [_feature(http) for _ in range(5)]
        key = unique("bad")
        body = _every_price_plan(key, features)
        mutate(body)
        response = http.post("/api/v1/plans", json=body)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        errors = {(e["field"], e["code"]) for e in response.json()["extensions"]["validationErrors"]}
        assert (field, code) in errors, errors
        listed = http.get("/api/v1/plans", params={"key": key, "includeDeleted": "true"}).json()
        assert listed["totalCount"] == 0 and listed["items"] == []


def test_draft_update_keeps_what_its_body_leaves_out(tally: TallyProcess) -> None:
    """OpenMeter's PUT of a plan or add-on sets description, metadata and (plans) settlementMode
    only when the body has them (`SetNillableDescription`, `if params.Metadata != nil`,
    `SetNillableSettlementMode` in productcatalog/plan/adapter/plan.go and addon/adapter/addon.go):
    a rename that leaves them out keeps them."""
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        feature = _feature(http)
        phases = [
            {"key": "default", "name": "Default", "rateCards": [_usage(feature, {"type": "unit", "amount": "1"})]}
        ]
        plan = http.post(
            "/api/v1/plans",
            json={
                "key": unique("keep"),
                "name": "Keep",
                "description": "Prepaid credits",
                "metadata": {"crm": "pro-2026"},
                "settlementMode": "credit_only",
                "billingCadence": "P1M",
                "phases": phases,
            },
        )
        assert plan.status_code == 201, plan.text
        path = f"/api/v1/plans/{plan.json()['id']}"
        renamed = http.put(path, json={"name": "Kept", "billingCadence": "P1M", "phases": phases})
        assert renamed.status_code == 200, renamed.text
        body = renamed.json()
        assert body["name"] == "Kept"
        assert (body.get("description"), body["settlementMode"]) == ("Prepaid credits", "credit_only")
        assert body["metadata"] == {"crm": "pro-2026"}
        # Given, it replaces; `{}` clears; values must be strings.
        replaced = http.put(path, json={"name": "Kept", "billingCadence": "P1M", "phases": phases, "metadata": {}})
        assert replaced.status_code == 200 and not replaced.json().get("metadata"), replaced.text
        bad = http.put(path, json={"name": "K", "billingCadence": "P1M", "phases": phases, "metadata": {"n": 1}})
        assert bad.status_code == 400 and "metadata" in bad.text, bad.text

        card = {
            "type": "flat_fee",
            "key": "seat",
            "name": "Seat",
            "billingCadence": "P1M",
            "price": {"type": "flat", "amount": "15"},
        }
        addon = http.post(
            "/api/v1/addons",
            json={
                "key": unique("keep_addon"),
                "name": "Seats",
                "description": "Extra seats",
                "metadata": {"sku": "seat-1"},
                "instanceType": "single",
                "currency": "USD",
                "rateCards": [card],
            },
        )
        assert addon.status_code == 201, addon.text
        renamed = http.put(
            f"/api/v1/addons/{addon.json()['id']}",
            json={"name": "Seats+", "instanceType": "single", "rateCards": [card]},
        )
        assert renamed.status_code == 200, renamed.text
        body = renamed.json()
        assert (body["name"], body.get("description"), body["metadata"]) == ("Seats+", "Extra seats", {"sku": "seat-1"})


def test_addons_and_plan_addons(tally: TallyProcess) -> None:
    client = Client(endpoint=tally.rest_url)
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        feature = _feature(http)
        addon_key = unique("addon")
        addon = client.addons.create(
            {
                "key": addon_key,
                "name": "Extra seats",
                "instanceType": "multiple",
                "currency": "USD",
                "rateCards": [
                    {
                        "type": "flat_fee",
                        "key": "seat",
                        "name": "Seat",
                        "billingCadence": "P1M",
                        "price": {"type": "flat", "amount": "15", "paymentTerm": "in_advance"},
                    }
                ],
            }
        )
        assert (addon.status, addon.version, addon.instance_type) == ("draft", 1, "multiple")
        plan = client.plans.create(
            {
                "key": unique("with_addons"),
                "name": "With add-ons",
                "billingCadence": "P1M",
                "phases": [
                    {
                        "key": "default",
                        "name": "Default",
                        "rateCards": [_usage(feature, {"type": "unit", "amount": "0.1"})],
                    }
                ],
            }
        )
        # A draft add-on cannot be offered yet.
        with pytest.raises(HttpResponseError) as draft_addon:
            client.plan_addons.create(plan.id, {"addonId": addon.id, "fromPlanPhase": "default", "maxQuantity": 5})
        assert draft_addon.value.status_code == 400
        assert client.addons.publish(addon.id).status == "active"
        with pytest.raises(HttpResponseError) as unknown_phase:
            client.plan_addons.create(plan.id, {"addonId": addon.id, "fromPlanPhase": "nope"})
        codes = [e["code"] for e in _problem(unknown_phase.value)["extensions"]["validationErrors"]]
        assert codes == ["plan_addon_unknown_plan_phase_key"]

        assignment = client.plan_addons.create(
            plan.id, {"addonId": addon.id, "fromPlanPhase": "default", "maxQuantity": 5}
        )
        assert (assignment.addon.id, assignment.max_quantity, assignment.from_plan_phase) == (addon.id, 5, "default")
        listed = client.plan_addons.list(plan.id)
        # `items` collides with the mapping method on the SDK model: read it as JSON.
        assert listed.total_count == 1 and [a["addon"]["key"] for a in listed["items"]] == [addon_key]
        # OpenMeter names a plan add-on by its add-on (ID or key).
        assert client.plan_addons.get(plan.id, addon_key).addon.id == addon.id
        assert client.plan_addons.get(plan.id, addon.id).max_quantity == 5
        updated = client.plan_addons.update(plan.id, addon.id, {"fromPlanPhase": "default", "maxQuantity": 2})
        assert updated.max_quantity == 2

        client.plans.publish(plan.id)
        # No add-on can be attached to, changed on or removed from a plan that is no longer a draft;
        # OpenMeter answers a change or removal 404 (planaddon/service/planaddon.go).
        with pytest.raises(HttpResponseError) as published:
            client.plan_addons.delete(plan.id, addon.id)
        assert published.value.status_code == 404
        with pytest.raises(HttpResponseError) as published:
            client.plan_addons.update(plan.id, addon.id, {"fromPlanPhase": "default", "maxQuantity": 3})
        assert published.value.status_code == 404

        # Add-on versions: next draft, publish archives v1.
        with pytest.raises(HttpResponseError) as changed:
            client.addons.update(addon.id, {"name": "x", "instanceType": "single", "rateCards": []})
        assert changed.value.status_code == 400
        v2 = client.addons.create(
            {"key": addon_key, "name": "Extra seats v2", "instanceType": "multiple", "currency": "USD", "rateCards": []}
        )
        assert v2.version == 2
        assert [e.code for e in v2.validation_errors] == ["addon_has_no_rate_cards"]
        with pytest.raises(HttpResponseError):
            client.addons.publish(v2.id)  # no rate cards: a warning on the draft, refused at publish
        client.addons.update(
            v2.id,
            {
                "name": "Extra seats v2",
                "instanceType": "multiple",
                "rateCards": [
                    {
                        "type": "flat_fee",
                        "key": "seat",
                        "name": "Seat",
                        "billingCadence": "P1M",
                        "price": {"type": "flat", "amount": "12"},
                    }
                ],
            },
        )
        client.addons.publish(v2.id)
        assert client.addons.get(addon.id).status == "archived"
        assert client.addons.get(addon_key).version == 2
        assert client.addons.archive(v2.id).status == "archived"


def test_plan_addon_shows_what_makes_it_unusable(tally: TallyProcess) -> None:
    """OpenMeter validates a plan add-on on every read (FromPlanAddon calls ValidationErrors() in
    productcatalog/planaddon/httpdriver/mapping.go): once the assigned add-on version is archived
    (its next version published), the assignment says so in `validationErrors`."""
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        body, v1, plan, assigned = _addon_offered_on_a_plan(http, "aging", {"type": "flat", "amount": "15"})
        assert assigned.json()["validationErrors"] == []
        assert http.post(f"/api/v1/plans/{plan['id']}/publish").status_code == 200

        v2 = http.post("/api/v1/addons", json=body).json()
        assert http.post(f"/api/v1/addons/{v2['id']}/publish").status_code == 200
        read = http.get(f"/api/v1/plans/{plan['id']}/addons/{v1['id']}")
        assert read.status_code == 200, read.text
        assert read.json()["addon"]["status"] == "archived"
        issues = read.json()["validationErrors"]
        assert [(i["code"], i["severity"]) for i in issues] == [("plan_addon_incompatible_status", "warning")], issues
        listed = http.get(f"/api/v1/plans/{plan['id']}/addons").json()["items"]
        assert [i["code"] for i in listed[0]["validationErrors"]] == ["plan_addon_incompatible_status"]


def test_an_addon_offered_on_a_plan_cannot_be_deleted(tally: TallyProcess) -> None:
    """OpenMeter's DeleteAddon refuses an add-on with live plan assignments (400, "add-on has
    active assignments", productcatalog/addon/service/addon.go); once no plan offers it, it may go."""
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        _, addon, plan, _ = _addon_offered_on_a_plan(http, "offered", None)
        assert http.post(f"/api/v1/addons/{addon['id']}/archive").status_code == 200

        refused = http.delete(f"/api/v1/addons/{addon['id']}")
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "deletedAt" not in http.get(f"/api/v1/addons/{addon['id']}").json()

        assert http.delete(f"/api/v1/plans/{plan['id']}/addons/{addon['id']}").status_code == 204
        assert http.delete(f"/api/v1/addons/{addon['id']}").status_code == 204


def test_currencies_list_iso_4217_with_minor_units(tally: TallyProcess) -> None:
    client = Client(endpoint=tally.rest_url)
    by_code = {c.code: c for c in client.currencies.list_currencies()}
    assert (by_code["USD"].subunits, by_code["USD"].symbol, by_code["USD"].name) == (2, "$", "US Dollar")
    assert by_code["JPY"].subunits == 0 and by_code["KWD"].subunits == 3
    assert "XAU" not in by_code


async def test_grpc_plan_lifecycle(tally: TallyProcess, channel: grpc.aio.Channel) -> None:
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        feature = await asyncio.to_thread(_feature, http)
    plans = catalog_pb2_grpc.PlanServiceStub(channel)
    key = unique("grpc_plan")
    body = {
        "key": key,
        "name": "gRPC plan",
        "billingCadence": "P1M",
        "phases": [
            {
                "key": "default",
                "name": "Default",
                "rateCards": [_usage(feature, {"type": "package", "amount": "5", "quantityPerPackage": "100"})],
            }
        ],
    }
    request = json_format.ParseDict({"plan": body}, catalog_pb2.CreatePlanRequest())
    plan = await plans.CreatePlan(request)
    assert (plan.key, plan.version, plan.status) == (key, 1, "draft")
    assert plan.phases[0].rate_cards[0].price.quantity_per_package == "100"
    published = await plans.PublishPlan(catalog_pb2.PublishPlanRequest(plan_id=plan.id))
    assert published.status == "active"
    listed = await plans.ListPlans(catalog_pb2.ListPlansRequest(key=[key]))
    assert (listed.total_count, [p.id for p in listed.items]) == (1, [plan.id])

    bad = json_format.ParseDict({"plan": dict(body, key=unique("grpc_bad"))}, catalog_pb2.CreatePlanRequest())
    bad.plan.phases[0].rate_cards[0].price.amount = "-5"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await plans.CreatePlan(bad)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "phases[0].rateCards[0].price.amount" in (refused.value.details() or "")

    currencies = await catalog_pb2_grpc.CurrencyServiceStub(channel).ListCurrencies(catalog_pb2.ListCurrenciesRequest())
    assert {c.code: c.subunits for c in currencies.items}["EUR"] == 2


def _addon_offered_on_a_plan(
    http: httpx.Client, key: str, price: dict[str, str] | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], httpx.Response]:
    """A published single-instance add-on (one flat "seat" rate card at `price`) offered on a new
    draft plan's default phase: the add-on's body, the add-on, the plan and the assignment's answer."""
    feature = _feature(http)
    card = {"type": "flat_fee", "key": "seat", "name": "Seat", "billingCadence": "P1M", "price": price}
    body = {"key": unique(key), "name": "Seats", "instanceType": "single", "currency": "USD", "rateCards": [card]}
    addon = http.post("/api/v1/addons", json=body).json()
    assert http.post(f"/api/v1/addons/{addon['id']}/publish").status_code == 200
    phases = [{"key": "default", "name": "Default", "rateCards": [_usage(feature, {"type": "unit", "amount": "1"})]}]
    plan = http.post(
        "/api/v1/plans", json={"key": unique(key), "name": "P", "billingCadence": "P1M", "phases": phases}
    ).json()
    assigned = http.post(
        f"/api/v1/plans/{plan['id']}/addons", json={"addonId": addon["id"], "fromPlanPhase": "default"}
    )
    assert assigned.status_code == 201, assigned.text
    return body, addon, plan, assigned


def test_rest_prints_required_nullable_fields_as_null(tally: TallyProcess) -> None:
    """OpenMeter's contract requires these keys in answers and allows null: a client reading
    `phase["duration"]` must get None, not a KeyError. gRPC answers leave them unset."""
    tricky = 'braces } { ] [ , quotes " \\" and a backslash \\ : "duration":1'
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        feature = _feature(http)
        graduated = {
            "type": "tiered",
            "mode": "graduated",
            "tiers": [
                {"upToAmount": "10", "unitPrice": {"type": "unit", "amount": "1"}},
                {"flatPrice": {"type": "flat", "amount": "5"}},
            ],
        }
        body = {
            "key": unique("nulls"),
            "name": "Nulls",
            "description": tricky,
            "currency": "USD",
            "billingCadence": "P1M",
            "phases": [
                {
                    "key": "trial",
                    "name": "Trial",
                    "duration": "P1M",
                    "rateCards": [{"type": "flat_fee", "key": "setup", "name": "Setup {}", "price": None}],
                },
                {
                    "key": "default",
                    "name": "Default",
                    "description": tricky,
                    "rateCards": [_usage(feature, graduated, description=tricky)],
                },
            ],
        }
        created = http.post("/api/v1/plans", json=body)
        assert created.status_code == 201, created.text
        plan = created.json()
        listed = http.get("/api/v1/plans", params={"key": body["key"]}).json()
        assert listed["items"] == [plan]
        for answer in (plan, http.get(f"/api/v1/plans/{plan['id']}").json()):
            trial, default = answer["phases"]
            assert trial["duration"] == "P1M" and default["duration"] is None
            setup = trial["rateCards"][0]
            assert (setup["billingCadence"], setup["price"], setup["name"]) == (None, None, "Setup {}")
            tiers = default["rateCards"][0]["price"]["tiers"]
            assert tiers == [
                {"upToAmount": "10", "flatPrice": None, "unitPrice": {"type": "unit", "amount": "1"}},
                {"flatPrice": {"type": "flat", "amount": "5"}, "unitPrice": None},
            ]
            # Strings that look like JSON structure pass through unchanged.
            assert answer["description"] == default["description"] == tricky
            assert default["rateCards"][0]["description"] == tricky

        # OpenMeter's SDK hands rate cards (a union) over as JSON objects: plain key access works.
        sdk_plan = Client(endpoint=tally.rest_url).plans.get(plan["id"])
        assert sdk_plan.phases[0].rate_cards[0]["billingCadence"] is None
        assert sdk_plan.phases[0].rate_cards[0]["price"] is None

        # The same nulls on an add-on, and a 400 is a problem, not an object given nulls.
        addon = http.post(
            "/api/v1/addons",
            json={
                "key": unique("nulls_addon"),
                "name": "Free extra",
                "instanceType": "single",
                "currency": "USD",
                "rateCards": [{"type": "flat_fee", "key": "extra", "name": "Extra", "billingCadence": "P1M"}],
            },
        )
        assert addon.status_code == 201, addon.text
        assert addon.json()["rateCards"][0]["price"] is None
        refused = http.post("/api/v1/plans", json=dict(body, key=unique("nulls"), currency="XXX"))
        assert refused.status_code == 400 and "price" not in refused.json()


async def test_grpc_answers_leave_nullable_fields_unset(tally: TallyProcess, channel: grpc.aio.Channel) -> None:
    body = {
        "key": unique("grpc_nulls"),
        "name": "gRPC nulls",
        "billingCadence": "P1M",
        "phases": [{"key": "default", "name": "Default", "rateCards": [{"type": "flat_fee", "key": "f", "name": "F"}]}],
    }
    plans = catalog_pb2_grpc.PlanServiceStub(channel)
    plan = await plans.CreatePlan(json_format.ParseDict({"plan": body}, catalog_pb2.CreatePlanRequest()))
    fetched = await plans.GetPlan(catalog_pb2.GetPlanRequest(plan_id=plan.id))
    card = fetched.phases[0].rate_cards[0]
    assert not fetched.phases[0].HasField("duration")
    assert not card.HasField("billing_cadence") and not card.HasField("price")


def test_plans_filter_by_key_and_version_as_openmeter_clients_ask(tally: TallyProcess) -> None:
    """OpenMeter's keyVersion[<key>]=<version> (a deepObject the transcoder cannot bind; it was
    dropped without a word, and every plan came back). A plan matches any of id, key, keyVersion
    and currency, as OpenMeter's ListPlans ORs them; add-ons must match each filter."""
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        feature = _feature(http)
        phases = [{"key": "default", "name": "D", "rateCards": [_usage(feature, {"type": "unit", "amount": "1"})]}]
        ka, kb = unique("kv_a"), unique("kv_b")
        v1 = http.post("/api/v1/plans", json={"key": ka, "name": "A", "billingCadence": "P1M", "phases": phases})
        assert v1.status_code == 201, v1.text
        assert http.post(f"/api/v1/plans/{v1.json()['id']}/publish").status_code == 200
        v2 = http.post(f"/api/v1/plans/{ka}/next")
        assert v2.status_code == 201, v2.text
        b = http.post(
            "/api/v1/plans", json={"key": kb, "name": "B", "billingCadence": "P1M", "currency": "EUR", "phases": phases}
        )
        assert b.status_code == 201, b.text

        def listed(query: str) -> list[tuple[str, int]]:
            answer = http.get(f"/api/v1/plans?{query}")
            assert answer.status_code == 200, answer.text
            return sorted((p["key"], p["version"]) for p in answer.json()["items"])

        assert listed(f"keyVersion[{ka}]=2") == [(ka, 2)]
        assert listed(f"keyVersion%5B{ka}%5D=1&keyVersion%5B{ka}%5D=2") == [(ka, 1), (ka, 2)]
        assert listed(f"key={kb}&keyVersion[{ka}]=1") == [(ka, 1), (kb, 1)]
        assert listed(f"keyVersion[{ka}]=1&keyVersion[{kb}]=1&status=draft") == [(kb, 1)]
        bad = http.get(f"/api/v1/plans?keyVersion[{ka}]=latest")
        assert bad.status_code == 400 and "keyVersion" in bad.text, bad.text

        card = {"type": "flat_fee", "key": "s", "name": "S", "billingCadence": "P1M", "price": None}
        kc = unique("kv_addon")
        addon = http.post(
            "/api/v1/addons",
            json={"key": kc, "name": "C", "instanceType": "single", "currency": "USD", "rateCards": [card]},
        )
        assert addon.status_code == 201, addon.text
        found = http.get(f"/api/v1/addons?keyVersion[{kc}]=1").json()["items"]
        assert [a["id"] for a in found] == [addon.json()["id"]]
        assert http.get(f"/api/v1/addons?keyVersion[{kc}]=2").json()["items"] == []
        assert http.get(f"/api/v1/addons?keyVersion[{kc}]=1&currency=EUR").json()["items"] == []


def test_an_add_on_cannot_be_attached_to_a_deleted_plan(tally: TallyProcess) -> None:
    # A deleted draft plan still read as a draft by ID, so an add-on could be attached to it (201).
    # OpenMeter's CreatePlanAddon validates the plan with plan.IsPlanDeleted: 400.
    with httpx.Client(base_url=tally.rest_url, timeout=30) as http:
        feature = _feature(http)
        addon = http.post(
            "/api/v1/addons",
            json={
                "key": unique("deleted_plan_addon"),
                "name": "A",
                "instanceType": "single",
                "currency": "USD",
                "rateCards": [{"type": "flat_fee", "key": "extra", "name": "Extra"}],
            },
        )
        assert addon.status_code == 201, addon.text
        assert http.post(f"/api/v1/addons/{addon.json()['id']}/publish").status_code == 200
        plan = http.post(
            "/api/v1/plans",
            json={
                "key": unique("deleted_plan"),
                "name": "P",
                "currency": "USD",
                "billingCadence": "P1M",
                "phases": [
                    {"key": "default", "name": "D", "rateCards": [_usage(feature, {"type": "unit", "amount": "1"})]}
                ],
            },
        )
        assert plan.status_code == 201, plan.text
        assert http.delete(f"/api/v1/plans/{plan.json()['id']}").status_code == 204
        attached = http.post(
            f"/api/v1/plans/{plan.json()['id']}/addons",
            json={"addonId": addon.json()["id"], "fromPlanPhase": "default"},
        )
        assert attached.status_code in (400, 404), attached.text
