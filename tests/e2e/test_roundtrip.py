"""The round trip an OpenMeter client makes: GET a resource, PUT back what it read (unchanged or
with one field changed), and expect nothing else to change. REST through Envoy on the shared stack.

Each test builds one resource with the details where a replace loses things (money, quantities,
periods, discounts, tax configs, entitlement templates, metadata, nullable fields), sends the GET's
own JSON back as the PUT body, and compares the GET after with the GET before: equal but for
`updatedAt` (server-managed). Then it changes one field and checks that only that field moved.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx

from tests.e2e.test_invoices_api import add_lines, invoice_now, line, manual_approval, metered_customer
from tests.e2e.test_subscription_invoicing import until
from tests.support.metering import unique

# Fields the contract marks read-only that a replace is expected to move.
SERVER_STAMPS = {"updatedAt"}


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def without_stamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_stamps(v) for k, v in value.items() if k not in SERVER_STAMPS}
    if isinstance(value, list):
        return [without_stamps(v) for v in value]
    return value


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Where two JSON documents differ, as readable paths (the assertion message of a round trip)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after)):
            where = f"{path}.{key}" if path else key
            if key not in after:
                out.append(f"{where}: {before[key]!r} -> (absent)")
            elif key not in before:
                out.append(f"{where}: (absent) -> {after[key]!r}")
            else:
                out += differences(before[key], after[key], where)
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            d for i, (b, a) in enumerate(zip(before, after, strict=True)) for d in differences(b, a, f"{path}[{i}]")
        ]
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


# What an OpenMeter client sends back: the GET's JSON cut down to the fields of the contract's
# replace-update schema (Tally refuses unknown fields, as an SDK's typed model would never send
# them). A key maps to None (sent as read) or to the shape of its own value (cut down in turn);
# lists are cut item by item.
Shape = dict[str, Any]
CUSTOMER: Shape = {
    k: None
    for k in (
        "billingAddress",
        "currency",
        "description",
        "key",
        "metadata",
        "name",
        "primaryEmail",
        "usageAttribution",
    )
}
METER: Shape = {k: None for k in ("description", "groupBy", "metadata", "name")}
APP: Shape = {
    k: None for k in ("description", "metadata", "name", "type", "enableDraftSyncHook", "enableIssuingSyncHook")
}
PROFILE: Shape = {k: None for k in ("default", "description", "metadata", "name", "supplier", "workflow")}
PLAN: Shape = {
    k: None
    for k in (
        "alignment",
        "billingCadence",
        "description",
        "metadata",
        "name",
        "phases",
        "proRatingConfig",
        "settlementMode",
    )
}
ADDON: Shape = {k: None for k in ("description", "instanceType", "metadata", "name", "rateCards")}
PLAN_ADDON: Shape = {k: None for k in ("fromPlanPhase", "maxQuantity", "metadata")}
CHANNEL: Shape = {k: None for k in ("customHeaders", "disabled", "metadata", "name", "signingSecret", "type", "url")}
RULE: Shape = {k: None for k in ("channels", "disabled", "features", "metadata", "name", "thresholds", "type")}
PARTY: Shape = {k: None for k in ("addresses", "key", "name", "taxId")}
INVOICE_LINE: Shape = {
    **{k: None for k in ("description", "featureKey", "id", "invoiceAt", "metadata", "name", "period", "taxConfig")},
    "rateCard": {k: None for k in ("discounts", "featureKey", "price", "taxConfig")},
}
INVOICE: Shape = {
    "customer": PARTY,
    "supplier": PARTY,
    "description": None,
    "metadata": None,
    "lines": INVOICE_LINE,
    "workflow": {
        "workflow": {
            "invoicing": {
                k: None
                for k in ("autoAdvance", "defaultTaxConfig", "draftPeriod", "dueAfter", "subscriptionEndProrationMode")
            },
            "payment": None,
        }
    },
}


def cut(value: Any, shape: Shape | None) -> Any:
    if shape is None:
        return copy.deepcopy(value)
    if isinstance(value, list):
        return [cut(item, shape) for item in value]
    return {k: cut(v, shape[k]) for k, v in value.items() if k in shape}


async def round_trip(http: httpx.AsyncClient, path: str, shape: Shape, change: Any = None) -> tuple[Any, Any]:
    """GETs `path`, PUTs the GET's JSON back as the replace-update body (after `change(body)` if
    given), GETs it again. Returns (before, after), both without server stamps."""
    before = await ok(await http.get(path))
    body = cut(before, shape)
    if change is not None:
        change(body)
    await ok(await http.put(path, json=body))
    after = await ok(await http.get(path))
    return without_stamps(before), without_stamps(after)


def assert_same(before: Any, after: Any) -> None:
    assert_same_but(before, after, set())


def assert_same_but(before: Any, after: Any, ignored_paths: set[str]) -> None:
    changed = [d for d in differences(before, after) if d.split(": ")[0] not in ignored_paths]
    assert not changed, "changed:\n" + "\n".join(changed)


async def assert_unchanged_by_its_own_put(http: httpx.AsyncClient, path: str, shape: Shape) -> Any:
    before, after = await round_trip(http, path, shape)
    assert_same(before, after)
    return before


async def assert_only_changed(http: httpx.AsyncClient, path: str, shape: Shape, change: Any, *moved: str) -> Any:
    """PUTs the GET back with `change` applied; only the paths in `moved` (as `differences` names
    them, or a prefix of them) may differ."""
    before, after = await round_trip(http, path, shape, change)
    changed = differences(before, after)
    unexpected = [d for d in changed if not any(d.startswith(m) for m in moved)]
    assert not unexpected, "changed besides the change:\n" + "\n".join(unexpected)
    assert changed, f"{path}: the change did not show"
    return after


async def meter_and_feature(http: httpx.AsyncClient) -> tuple[str, str]:
    slug = unique("rt_meter")
    meter = {
        "slug": slug,
        "eventType": slug,
        "aggregation": "SUM",
        "valueProperty": "$.tokens",
        "groupBy": {"model": "$.model"},
        "description": "Tokens",
    }
    await ok(await http.post("/api/v1/meters", json=meter), 201)
    await ok(await http.post("/api/v1/features", json={"key": slug, "name": slug, "meterSlug": slug}), 201)
    return slug, slug


async def test_a_customer_put_back_as_read_is_unchanged(http: httpx.AsyncClient) -> None:
    key = unique("rt_customer")
    customer = await ok(
        await http.post(
            "/api/v1/customers",
            json={
                "key": key,
                "name": "Acme",
                "description": "A customer",
                "primaryEmail": "billing@acme.test",
                "currency": "EUR",
                "usageAttribution": {"subjectKeys": [key]},
                "billingAddress": {"country": "DE", "city": "Berlin", "line1": "Street 1"},
                "metadata": {"tier": "gold"},
            },
        ),
        201,
    )
    path = f"/api/v1/customers/{customer['id']}"
    await assert_unchanged_by_its_own_put(http, path, CUSTOMER)
    await assert_only_changed(http, path, CUSTOMER, lambda b: b.update(description="Changed"), "description")
    # A replace: a field left out is cleared, and sent back as read (absent) it stays absent.
    cleared = await assert_only_changed(http, path, CUSTOMER, lambda b: b.pop("description"), "description")
    assert "description" not in cleared
    await assert_unchanged_by_its_own_put(http, path, CUSTOMER)


async def test_a_meter_put_back_as_read_is_unchanged(http: httpx.AsyncClient) -> None:
    slug, _ = await meter_and_feature(http)
    path = f"/api/v1/meters/{slug}"
    await assert_unchanged_by_its_own_put(http, path, METER)
    await assert_only_changed(http, path, METER, lambda b: b.update(name="Renamed"), "name")


async def test_an_app_put_back_as_read_is_unchanged(http: httpx.AsyncClient) -> None:
    apps = (await ok(await http.get("/api/v1/apps")))["items"]
    sandbox = next(a for a in apps if a["type"] == "sandbox")
    path = f"/api/v1/apps/{sandbox['id']}"
    await assert_unchanged_by_its_own_put(http, path, APP)


async def test_a_custom_invoicing_app_put_back_as_read_is_unchanged(http: httpx.AsyncClient) -> None:
    installed = await ok(
        await http.post(
            "/api/v1/marketplace/listings/custom_invoicing/install",
            json={"name": unique("rt_erp"), "createBillingProfile": False},
        )
    )
    path = f"/api/v1/apps/{installed['app']['id']}"
    await ok(
        await http.put(
            path,
            json={
                "type": "custom_invoicing",
                "name": "ERP",
                "description": "Our ERP",
                "metadata": {"k": "v"},
                "enableDraftSyncHook": True,
                "enableIssuingSyncHook": False,
            },
        )
    )
    await assert_unchanged_by_its_own_put(http, path, APP)
    await assert_only_changed(http, path, APP, lambda b: b.update(enableIssuingSyncHook=True), "enableIssuingSyncHook")


async def test_a_billing_profile_and_a_customer_override_put_back_as_read_are_unchanged(
    http: httpx.AsyncClient,
) -> None:
    apps = (await ok(await http.get("/api/v1/apps")))["items"]
    sandbox = next(a for a in apps if a["type"] == "sandbox")
    profile = await ok(
        await http.post(
            "/api/v1/billing/profiles",
            json={
                "name": unique("rt_profile"),
                "description": "Round trip",
                "metadata": {"k": "v"},
                "supplier": {"name": "Acme Billing Ltd", "addresses": [{"country": "DE", "city": "Berlin"}]},
                "default": False,
                "workflow": {
                    "collection": {"interval": "PT2H", "alignment": {"type": "subscription"}},
                    "invoicing": {
                        "autoAdvance": False,
                        "draftPeriod": "P2D",
                        "dueAfter": "P14D",
                        "progressiveBilling": True,
                        "defaultTaxConfig": {"behavior": "inclusive", "customInvoicing": {"code": "VAT"}},
                    },
                    "payment": {"collectionMethod": "send_invoice"},
                    "tax": {"enabled": True, "enforced": False},
                },
                "apps": {"tax": sandbox["id"], "invoicing": sandbox["id"], "payment": sandbox["id"]},
            },
        ),
        201,
    )
    path = f"/api/v1/billing/profiles/{profile['id']}"
    await assert_unchanged_by_its_own_put(http, path, PROFILE)
    await assert_only_changed(
        http, path, PROFILE, lambda b: b["workflow"]["invoicing"].update(dueAfter="P30D"), "workflow.invoicing.dueAfter"
    )
    await assert_only_changed(
        http,
        path,
        PROFILE,
        lambda b: b["workflow"]["invoicing"].pop("defaultTaxConfig"),
        "workflow.invoicing.defaultTaxConfig",
    )
    await assert_unchanged_by_its_own_put(http, path, PROFILE)

    customer, _ = await metered_customer(http)
    await ok(
        await http.put(
            f"/api/v1/billing/customers/{customer}",
            json={
                "billingProfileId": profile["id"],
                "workflow": {
                    "collection": {"interval": "PT3H"},
                    "invoicing": {
                        "autoAdvance": True,
                        "draftPeriod": "P1D",
                        "dueAfter": "P7D",
                        "defaultTaxConfig": {"behavior": "exclusive"},
                    },
                    "payment": {"collectionMethod": "charge_automatically"},
                    "tax": {"enabled": True, "enforced": True},
                },
            },
        )
    )
    # The contract's body is BillingProfileCustomerOverrideCreate (the profile's ID); Tally's
    # override also keeps a workflow, which its GET shows and its PUT takes: both go back.
    override = f"/api/v1/billing/customers/{customer}"
    before = await ok(await http.get(override))
    shown = before["customerOverride"]
    await ok(
        await http.put(override, json={"billingProfileId": shown["billingProfileId"], "workflow": shown["workflow"]})
    )
    after = await ok(await http.get(override))
    assert_same(without_stamps(before), without_stamps(after))


async def test_customer_app_data_put_back_as_read_is_unchanged(http: httpx.AsyncClient) -> None:
    customer, _ = await metered_customer(http)
    apps = (await ok(await http.get("/api/v1/apps")))["items"]
    sandbox = next(a for a in apps if a["type"] == "sandbox")
    path = f"/api/v1/customers/{customer}/apps"
    await ok(await http.put(path, json=[{"type": "sandbox", "id": sandbox["id"]}]))
    before = (await ok(await http.get(path)))["items"]
    await ok(await http.put(path, json=before))
    after = (await ok(await http.get(path)))["items"]
    assert_same(without_stamps(before), without_stamps(after))


def rich_plan(key: str, feature: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": "Round trip",
        "description": "Every detail",
        "metadata": {"k": "v"},
        "currency": "USD",
        "billingCadence": "P1M",
        "proRatingConfig": {"enabled": True, "mode": "prorate_prices"},
        "phases": [
            {
                "key": "trial",
                "name": "Trial",
                "description": "First month",
                "metadata": {"p": "1"},
                "duration": "P1M",
                "rateCards": [
                    {
                        "type": "flat_fee",
                        "key": "setup",
                        "name": "Setup",
                        "billingCadence": None,
                        "price": {"type": "flat", "amount": "100.50", "paymentTerm": "in_advance"},
                        "taxConfig": {"behavior": "inclusive", "stripe": {"code": "txcd_10000000"}},
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
                        "description": "Monthly",
                        "metadata": {"r": "1"},
                        "billingCadence": "P1M",
                        "price": {"type": "flat", "amount": "49.99", "paymentTerm": "in_arrears"},
                        "discounts": {"percentage": {"percentage": 12.5}},
                    },
                    {
                        "type": "usage_based",
                        "key": feature,
                        "name": "Tokens",
                        "featureKey": feature,
                        "billingCadence": "P1M",
                        "price": {
                            "type": "tiered",
                            "mode": "graduated",
                            "tiers": [
                                {"upToAmount": "1000", "unitPrice": {"type": "unit", "amount": "0.01"}},
                                {
                                    "flatPrice": {"type": "flat", "amount": "5"},
                                    "unitPrice": {"type": "unit", "amount": "0.005"},
                                },
                            ],
                            "minimumAmount": "10",
                            "maximumAmount": "1000.25",
                        },
                        "discounts": {"usage": {"quantity": "100"}, "percentage": {"percentage": 5}},
                        "entitlementTemplate": {
                            "type": "metered",
                            "issueAfterReset": 1000,
                            "issueAfterResetPriority": 3,
                            "isSoftLimit": True,
                            "preserveOverageAtReset": True,
                            "usagePeriod": "P1M",
                            "metadata": {"e": "1"},
                        },
                    },
                ],
            },
        ],
    }


async def test_a_draft_plan_put_back_as_read_is_unchanged(http: httpx.AsyncClient) -> None:
    _, feature = await meter_and_feature(http)
    plan = await ok(await http.post("/api/v1/plans", json=rich_plan(unique("rt_plan"), feature)), 201)
    path = f"/api/v1/plans/{plan['id']}"
    await assert_unchanged_by_its_own_put(http, path, PLAN)
    await assert_only_changed(
        http,
        path,
        PLAN,
        lambda b: b["phases"][1]["rateCards"][0]["price"].update(amount="59.99"),
        "phases[1].rateCards[0].price.amount",
    )

    def new_allowance_no_usage_discount(body: dict[str, Any]) -> None:
        tokens = body["phases"][1]["rateCards"][1]
        tokens["entitlementTemplate"]["issueAfterReset"] = 2000
        del tokens["discounts"]["usage"]

    await assert_only_changed(
        http,
        path,
        PLAN,
        new_allowance_no_usage_discount,
        "phases[1].rateCards[1].entitlementTemplate.issueAfterReset",
        "phases[1].rateCards[1].discounts.usage",
    )


def rich_addon(key: str, feature: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": "Extra tokens",
        "description": "More",
        "metadata": {"k": "v"},
        "currency": "USD",
        "instanceType": "single",
        "rateCards": [
            {
                "type": "flat_fee",
                "key": "extra",
                "name": "Extra",
                "billingCadence": "P1M",
                "price": {"type": "flat", "amount": "9.95", "paymentTerm": "in_advance"},
                "discounts": {"percentage": {"percentage": 10}},
                "taxConfig": {"behavior": "exclusive", "stripe": {"code": "txcd_10000000"}},
            },
            {
                "type": "usage_based",
                "key": feature,
                "name": "Tokens",
                "featureKey": feature,
                "billingCadence": "P1M",
                "price": {"type": "package", "amount": "2.5", "quantityPerPackage": "1000"},
                "entitlementTemplate": {"type": "metered", "issueAfterReset": 500, "usagePeriod": "P1M"},
            },
        ],
    }


async def test_a_draft_addon_and_a_plan_addon_put_back_as_read_are_unchanged(http: httpx.AsyncClient) -> None:
    _, feature = await meter_and_feature(http)
    addon = await ok(await http.post("/api/v1/addons", json=rich_addon(unique("rt_addon"), feature)), 201)
    path = f"/api/v1/addons/{addon['id']}"
    await assert_unchanged_by_its_own_put(http, path, ADDON)
    await assert_only_changed(
        http, path, ADDON, lambda b: b["rateCards"][0]["price"].update(amount="19.95"), "rateCards[0].price.amount"
    )
    await ok(await http.post(f"{path}/publish"))

    _, plan_feature = await meter_and_feature(http)
    plan = await ok(await http.post("/api/v1/plans", json=rich_plan(unique("rt_plan"), plan_feature)), 201)
    plan_addon = await ok(
        await http.post(
            f"/api/v1/plans/{plan['id']}/addons",
            json={"addonId": addon["id"], "fromPlanPhase": "default", "metadata": {"k": "v"}},
        ),
        201,
    )
    pa_path = f"/api/v1/plans/{plan['id']}/addons/{plan_addon['id']}"
    await assert_unchanged_by_its_own_put(http, pa_path, PLAN_ADDON)

    # A multiple-instance add-on's plan add-on has a maxQuantity to carry.
    seats = await ok(
        await http.post(
            "/api/v1/addons",
            json={
                **rich_addon(unique("rt_seats"), plan_feature),
                "instanceType": "multiple",
                "rateCards": [rich_addon("x", plan_feature)["rateCards"][0]],
            },
        ),
        201,
    )
    await ok(await http.post(f"/api/v1/addons/{seats['id']}/publish"))
    seats_addon = await ok(
        await http.post(
            f"/api/v1/plans/{plan['id']}/addons",
            json={"addonId": seats["id"], "fromPlanPhase": "default", "maxQuantity": 3},
        ),
        201,
    )
    seats_path = f"/api/v1/plans/{plan['id']}/addons/{seats_addon['id']}"
    await assert_unchanged_by_its_own_put(http, seats_path, PLAN_ADDON)
    await assert_only_changed(http, seats_path, PLAN_ADDON, lambda b: b.update(maxQuantity=5), "maxQuantity")
    await assert_unchanged_by_its_own_put(http, pa_path, PLAN_ADDON)
    await assert_only_changed(http, pa_path, PLAN_ADDON, lambda b: b.update(metadata={"k": "w"}), "metadata.k")


async def test_notification_channels_and_rules_put_back_as_read_are_unchanged(http: httpx.AsyncClient) -> None:
    channel = await ok(
        await http.post(
            "/api/v1/notification/channels",
            json={
                "type": "WEBHOOK",
                "name": unique("rt_channel"),
                "url": "https://example.com/hook",
                "customHeaders": {"X-Env": "test"},
                "disabled": True,
                "metadata": {"k": "v"},
            },
        ),
        201,
    )
    path = f"/api/v1/notification/channels/{channel['id']}"
    await assert_unchanged_by_its_own_put(http, path, CHANNEL)
    await assert_only_changed(http, path, CHANNEL, lambda b: b.update(url="https://example.com/other"), "url")

    _, feature = await meter_and_feature(http)
    rule = await ok(
        await http.post(
            "/api/v1/notification/rules",
            json={
                "type": "entitlements.balance.threshold",
                "name": unique("rt_rule"),
                "channels": [channel["id"]],
                "features": [feature],
                "thresholds": [{"value": 75.5, "type": "PERCENT"}, {"value": 1000, "type": "NUMBER"}],
                "disabled": True,
                "metadata": {"k": "v"},
            },
        ),
        201,
    )
    rule_path = f"/api/v1/notification/rules/{rule['id']}"

    def by_reference(body: dict[str, Any]) -> None:
        # The GET answers the channels and features themselves; the request names them.
        body["channels"] = [c["id"] for c in body["channels"]]
        body["features"] = [f["key"] for f in body["features"]]

    before, after = await round_trip(http, rule_path, RULE, by_reference)
    assert_same(before, after)

    def lower_threshold(body: dict[str, Any]) -> None:
        by_reference(body)
        body["thresholds"][0]["value"] = 50

    await assert_only_changed(http, rule_path, RULE, lower_threshold, "thresholds[0].value")


async def test_a_draft_invoice_put_back_as_read_is_unchanged(http: httpx.AsyncClient) -> None:
    customer, feature = await metered_customer(http, 1500)
    await manual_approval(http, customer)
    await add_lines(
        http,
        customer,
        line(
            "Seats",
            {"type": "flat", "amount": "10"},
            quantity="3",
            taxConfig={"behavior": "exclusive", "stripe": {"code": "txcd_10000000"}},
            discounts={"percentage": {"percentage": 10}},
        ),
        line(
            "Tokens",
            {"type": "unit", "amount": "0.02", "minimumAmount": "5", "maximumAmount": "500"},
            feature,
            discounts={"usage": {"quantity": "100"}},
        ),
    )
    (draft,) = await invoice_now(http, customer)
    path = f"/api/v1/billing/invoices/{draft['id']}"
    await ok(await http.put(path, json={**cut(draft, INVOICE), "description": "Q4", "metadata": {"po": "42"}}))
    # Timestamps a PUT of a draft still moves (see the audit's report): Tally dates a line's
    # discounts by the line's last rating, and the draft's usage is snapshotted again.
    restamped = {"quantitySnapshotedAt"} | {
        f"lines[{i}]{child}.discounts.{kind}[0].createdAt"
        for i in range(2)
        for child in ("", ".children[0]")
        for kind in ("amount", "usage")
    }
    before, after = await round_trip(http, path, INVOICE)
    assert_same_but(before, after, restamped)

    def seats_at_12(body: dict[str, Any]) -> None:
        body["lines"][0]["rateCard"]["price"]["amount"] = "12"

    before, after = await round_trip(http, path, INVOICE, seats_at_12)
    changed = {d.split(": ")[0] for d in differences(before, after)} - restamped
    # Only the seats line and what adds up from it: the other line is as it was.
    assert changed and all(p.startswith(("lines[0].", "totals.")) for p in changed), changed
    assert after["lines"][0]["managedBy"] == "manual" and after["lines"][0]["totals"]["amount"] == "12"


async def test_a_gathering_invoice_put_back_as_read_is_unchanged(http: httpx.AsyncClient) -> None:
    customer, feature = await metered_customer(http, 1500)
    created = await add_lines(
        http,
        customer,
        line("Seats", {"type": "flat", "amount": "10"}, taxConfig={"behavior": "inclusive"}),
        line("Tokens", {"type": "unit", "amount": "0.02"}, feature, discounts={"percentage": {"percentage": 20}}),
    )
    path = f"/api/v1/billing/invoices/{created['invoice']['id']}"
    # A gathering invoice's detailed lines are rated anew on every read (OpenMeter's live data),
    # with new IDs each time: what two reads in a row already differ in is not the PUT's doing.
    first = without_stamps(await ok(await http.get(path)))
    second = without_stamps(await ok(await http.get(path)))
    live = {d.split(": ")[0] for d in differences(first, second)}
    before, after = await round_trip(http, path, INVOICE)
    assert_same_but(before, after, live)

    def seats_at_12(body: dict[str, Any]) -> None:
        body["lines"][0]["rateCard"]["price"]["amount"] = "12"

    before, after = await round_trip(http, path, INVOICE, seats_at_12)
    changed = {d.split(": ")[0] for d in differences(before, after)} - live
    assert changed and all(p.startswith(("lines[0].", "totals.")) for p in changed), changed
    assert after["lines"][0]["managedBy"] == "manual" and after["lines"][0]["totals"]["amount"] == "12"


async def test_a_subscriptions_gathering_invoice_put_back_as_read_stays_the_subscriptions(
    http: httpx.AsyncClient,
) -> None:
    """Lines the subscription sync made, sent back as read, are not the user's edits: they stay
    managedBy subscription (OpenMeter makes a line manual only when the update changes it)."""
    _, feature = await meter_and_feature(http)
    plan_key = unique("rt_sub_plan")
    # The plan's default phase only: its in-arrears fee and its usage gather until the period ends.
    body = rich_plan(plan_key, feature)
    body["phases"] = body["phases"][1:]
    plan = await ok(await http.post("/api/v1/plans", json=body), 201)
    await ok(await http.post(f"/api/v1/plans/{plan['id']}/publish"))
    key = unique("rt_sub_customer")
    customer = await ok(
        await http.post(
            "/api/v1/customers", json={"name": "Sub", "key": key, "usageAttribution": {"subjectKeys": [key]}}
        ),
        201,
    )
    await ok(await http.post("/api/v1/subscriptions", json={"plan": {"key": plan_key}, "customerKey": key}), 201)
    items = await until(
        http,
        customer["id"],
        lambda xs: any(i["status"] == "gathering" and i.get("lines") for i in xs),
        "the subscription's lines gathering",
    )
    (gathering,) = [i for i in items if i["status"] == "gathering"]
    path = f"/api/v1/billing/invoices/{gathering['id']}"
    first = without_stamps(await ok(await http.get(path)))
    second = without_stamps(await ok(await http.get(path)))
    live = {d.split(": ")[0] for d in differences(first, second)}
    before, after = await round_trip(http, path, INVOICE)
    assert_same_but(before, after, live)
    assert {x["managedBy"] for x in after["lines"]} == {"subscription"}


async def test_a_subscriptions_draft_invoice_put_back_as_read_stays_the_subscriptions(http: httpx.AsyncClient) -> None:
    _, feature = await meter_and_feature(http)
    plan_key = unique("rt_sub_draft_plan")
    body = rich_plan(plan_key, feature)
    body["phases"] = body["phases"][1:]
    # Billed in advance: the fee is invoiced at once, and waits in draft for approval.
    body["phases"][0]["rateCards"][0]["price"]["paymentTerm"] = "in_advance"
    plan = await ok(await http.post("/api/v1/plans", json=body), 201)
    await ok(await http.post(f"/api/v1/plans/{plan['id']}/publish"))
    key = unique("rt_sub_draft_customer")
    customer = await ok(
        await http.post(
            "/api/v1/customers", json={"name": "Sub", "key": key, "usageAttribution": {"subjectKeys": [key]}}
        ),
        201,
    )
    await manual_approval(http, customer["id"])
    await ok(await http.post("/api/v1/subscriptions", json={"plan": {"key": plan_key}, "customerKey": key}), 201)
    # Waiting for the draft's resting state, not just a draft: the billing worker makes it in
    # draft.created and rates and advances it in a second step, which a read-and-put in between
    # would race with.
    items = await until(
        http,
        customer["id"],
        lambda xs: any(i["statusDetails"]["extendedStatus"] == "draft.manual_approval_needed" for i in xs),
        "the subscription's fee in a draft waiting for approval",
    )
    (draft,) = [i for i in items if i["status"] == "draft"]
    path = f"/api/v1/billing/invoices/{draft['id']}"
    before, after = await round_trip(http, path, INVOICE)
    restamped = {"quantitySnapshotedAt"} | {
        f"lines[0]{child}.discounts.amount[0].createdAt" for child in ("", ".children[0]")
    }
    assert_same_but(before, after, restamped)
    assert {x["managedBy"] for x in after["lines"]} == {"subscription"}
