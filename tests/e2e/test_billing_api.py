"""Apps, the marketplace, customer app data, billing profiles and customer overrides over REST
through Envoy, with OpenMeter's paths, shapes and status codes.

The module runs its own Tally on a fresh database: these tests change the namespace's default
profile and installed apps, which the shared stack's other tests must not see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.stack import TallyProcess, create_database

APPS = "/api/v1/apps"
LISTINGS = "/api/v1/marketplace/listings"
PROFILES = "/api/v1/billing/profiles"
OVERRIDES = "/api/v1/billing/customers"
SUPPLIER = {"name": "Acme Billing Ltd", "addresses": [{"country": "DE", "city": "Berlin"}]}


@pytest.fixture(scope="module")
def billing_stack(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    url = asyncio.run(create_database())
    stack = TallyProcess(data_dir=tmp_path_factory.mktemp("tally-billing"), postgres_url=url).start()
    yield stack
    stack.stop()


@pytest_asyncio.fixture
async def api(billing_stack: TallyProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=billing_stack.rest_url, timeout=30) as client:
        yield client


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def sandbox(api: httpx.AsyncClient) -> dict[str, Any]:
    apps = (await ok(await api.get(APPS)))["items"]
    return next(a for a in apps if a["type"] == "sandbox")


async def default_profile(api: httpx.AsyncClient) -> dict[str, Any]:
    profiles = (await ok(await api.get(PROFILES, params={"pageSize": 1000})))["items"]
    return next(p for p in profiles if p["default"])


async def install_custom(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    return await ok(await api.post(f"{LISTINGS}/custom_invoicing/install", json=body))


async def make_customer(api: httpx.AsyncClient, key: str, **extra: Any) -> dict[str, Any]:
    body = {"name": key.title(), "key": key, **extra}
    return await ok(await api.post("/api/v1/customers", json=body), 201)


async def test_sandbox_and_default_profile_exist_from_the_start(api: httpx.AsyncClient) -> None:
    app = await sandbox(api)
    assert app["name"] == "Sandbox" and app["status"] == "ready"
    assert app["listing"]["type"] == "sandbox"
    assert {c["type"] for c in app["listing"]["capabilities"]} == {
        "collectPayments",
        "calculateTax",
        "invoiceCustomers",
    }
    assert "enableDraftSyncHook" not in app and "deletedAt" not in app

    profile = await default_profile(api)
    assert profile["name"] == "openmeter-sandbox"
    assert profile["apps"] == {"tax": {"id": app["id"]}, "invoicing": {"id": app["id"]}, "payment": {"id": app["id"]}}
    workflow = profile["workflow"]
    assert workflow["collection"] == {"alignment": {"type": "subscription"}, "interval": "PT1H"}
    assert workflow["invoicing"] == {
        "autoAdvance": True,
        "draftPeriod": "P0D",
        "dueAfter": "P30D",
        "progressiveBilling": True,
        "subscriptionEndProrationMode": "bill_actual_period",
    }
    assert workflow["payment"] == {"collectionMethod": "charge_automatically"}
    assert workflow["tax"] == {"enabled": True, "enforced": False}

    expanded = await ok(await api.get(f"{PROFILES}/{profile['id']}", params={"expand": "apps"}))
    assert expanded["apps"]["invoicing"]["type"] == "sandbox"
    assert expanded["apps"]["invoicing"]["listing"]["name"] == "Sandbox"


async def test_sandbox_is_a_singleton(api: httpx.AsyncClient) -> None:
    existing = await sandbox(api)
    response = await api.post(f"{LISTINGS}/sandbox/install", json={})
    assert response.status_code == 409, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["extensions"]["conflictingEntityId"] == existing["id"]


async def test_marketplace(api: httpx.AsyncClient) -> None:
    listings = await ok(await api.get(LISTINGS))
    assert listings["totalCount"] == 3 and listings["page"] == 1
    assert {x["type"] for x in listings["items"]} == {"stripe", "sandbox", "custom_invoicing"}
    custom = await ok(await api.get(f"{LISTINGS}/custom_invoicing"))
    assert custom["installMethods"] == ["no_credentials_required"]
    assert (await api.get(f"{LISTINGS}/nope")).status_code == 400
    paged = await ok(await api.get(LISTINGS, params={"page": 2, "pageSize": 2}))
    assert paged["totalCount"] == 3 and len(paged["items"]) == 1

    # Stripe is listed, and says it cannot be installed here; installing it answers 501.
    stripe = await ok(await api.get(f"{LISTINGS}/stripe"))
    assert "not available" in stripe["description"].lower()
    refused = await api.post(f"{LISTINGS}/stripe/install/apikey", json={"apiKey": "sk_test_123"})
    assert refused.status_code == 501, refused.text
    # The other apps take no API key.
    wrong = await api.post(f"{LISTINGS}/custom_invoicing/install/apikey", json={"apiKey": "k"})
    assert wrong.status_code == 400, wrong.text


async def test_custom_invoicing_install_settings_and_uninstall(api: httpx.AsyncClient) -> None:
    installed = await install_custom(api, name="ERP", createBillingProfile=False)
    app = installed["app"]
    assert installed["defaultForCapabilityTypes"] == []
    assert app["type"] == "custom_invoicing" and app["name"] == "ERP"
    assert app["enableDraftSyncHook"] is False and app["enableIssuingSyncHook"] is False

    updated = await ok(
        await api.put(
            f"{APPS}/{app['id']}",
            json={
                "type": "custom_invoicing",
                "name": "ERP sync",
                "metadata": {"team": "finance"},
                "enableDraftSyncHook": True,
                "enableIssuingSyncHook": True,
            },
        )
    )
    assert updated["enableDraftSyncHook"] is True and updated["enableIssuingSyncHook"] is True
    assert updated["metadata"] == {"team": "finance"} and updated["name"] == "ERP sync"
    assert (await ok(await api.get(f"{APPS}/{app['id']}")))["enableIssuingSyncHook"] is True

    # The hooks are required for a custom invoicing app, and the type cannot change.
    missing = await api.put(f"{APPS}/{app['id']}", json={"type": "custom_invoicing", "name": "x"})
    assert missing.status_code == 400
    fields = {e["field"] for e in missing.json()["extensions"]["validationErrors"]}
    assert fields == {"enableDraftSyncHook", "enableIssuingSyncHook"}
    assert (await api.put(f"{APPS}/{app['id']}", json={"type": "sandbox", "name": "x"})).status_code == 400

    assert (await api.delete(f"{APPS}/{app['id']}")).status_code == 204
    # As in OpenMeter (its adapter's GetApp reads deleted apps too): an uninstalled app is still
    # answered, with its deletedAt, so an invoice or profile that names it can be followed; it is
    # no longer listed, and it cannot be changed or uninstalled again.
    gone = await ok(await api.get(f"{APPS}/{app['id']}"))
    assert gone["id"] == app["id"] and gone["name"] == "ERP sync" and gone["deletedAt"] >= app["createdAt"]
    assert gone["enableIssuingSyncHook"] is True
    assert app["id"] not in {a["id"] for a in (await ok(await api.get(APPS)))["items"]}
    assert (await api.delete(f"{APPS}/{app['id']}")).status_code == 404
    again = {"type": "custom_invoicing", "name": "x", "enableDraftSyncHook": False, "enableIssuingSyncHook": False}
    assert (await api.put(f"{APPS}/{app['id']}", json=again)).status_code == 404
    assert (await api.get(f"{APPS}/01J0000000000000000000000Z")).status_code == 404


async def test_app_description_is_replaced_and_answered(api: httpx.AsyncClient) -> None:
    """OpenMeter's AppReplaceUpdate takes an optional description (at most 1024 characters), which
    the app answers with until a replace leaves it out."""
    app = (await install_custom(api, name="Described", createBillingProfile=False))["app"]
    assert "description" not in app
    body = {
        "type": "custom_invoicing",
        "name": "Described",
        "enableDraftSyncHook": False,
        "enableIssuingSyncHook": False,
    }
    updated = await ok(await api.put(f"{APPS}/{app['id']}", json={**body, "description": "Our ERP"}))
    assert updated["description"] == "Our ERP"
    assert (await ok(await api.get(f"{APPS}/{app['id']}")))["description"] == "Our ERP"
    listed = (await ok(await api.get(APPS, params={"pageSize": 1000})))["items"]
    assert next(a for a in listed if a["id"] == app["id"])["description"] == "Our ERP"

    too_long = await api.put(f"{APPS}/{app['id']}", json={**body, "description": "x" * 1025})
    assert too_long.status_code == 400, too_long.text
    assert [e["field"] for e in too_long.json()["extensions"]["validationErrors"]] == ["description"]

    cleared = await ok(await api.put(f"{APPS}/{app['id']}", json=body))
    assert "description" not in cleared
    assert (await api.delete(f"{APPS}/{app['id']}")).status_code == 204


async def test_install_with_billing_profile_and_uninstall_refused_while_used(api: httpx.AsyncClient) -> None:
    installed = await install_custom(api, name="Netsuite")
    app_id = installed["app"]["id"]
    profiles = (await ok(await api.get(PROFILES, params={"pageSize": 1000})))["items"]
    created = [p for p in profiles if p["apps"]["invoicing"]["id"] == app_id]
    assert len(created) == 1 and created[0]["default"] is False
    assert created[0]["supplier"] == (await default_profile(api))["supplier"]

    refused = await api.delete(f"{APPS}/{app_id}")
    assert refused.status_code == 409, refused.text
    assert refused.json()["extensions"]["conflictingEntityId"] == created[0]["id"]

    assert (await api.delete(f"{PROFILES}/{created[0]['id']}")).status_code == 204
    assert (await api.delete(f"{APPS}/{app_id}")).status_code == 204


async def test_profile_crud_defaults_and_validation(api: httpx.AsyncClient) -> None:
    app_id = (await install_custom(api, createBillingProfile=False))["app"]["id"]
    apps = {"tax": app_id, "invoicing": app_id, "payment": app_id}
    created = await ok(
        await api.post(
            PROFILES,
            json={
                "name": "EU",
                "description": "EU customers",
                "supplier": SUPPLIER,
                "default": False,
                "workflow": {"invoicing": {"autoAdvance": False, "draftPeriod": "P1D"}},
                "apps": apps,
            },
        ),
        201,
    )
    # Create answers with the apps expanded; missing settings take OpenMeter's defaults.
    assert created["apps"]["invoicing"]["type"] == "custom_invoicing"
    assert created["workflow"]["invoicing"]["autoAdvance"] is False
    assert created["workflow"]["invoicing"]["draftPeriod"] == "P1D"
    assert created["workflow"]["invoicing"]["dueAfter"] == "P30D"
    assert created["workflow"]["collection"]["interval"] == "PT1H"
    assert created["supplier"]["name"] == "Acme Billing Ltd"
    assert created["supplier"]["addresses"] == [{"country": "DE", "city": "Berlin"}]

    got = await ok(await api.get(f"{PROFILES}/{created['id']}"))
    assert got["apps"] == {"tax": {"id": app_id}, "invoicing": {"id": app_id}, "payment": {"id": app_id}}

    updated = await ok(
        await api.put(
            f"{PROFILES}/{created['id']}",
            json={
                "name": "EU (net 14)",
                "supplier": SUPPLIER,
                "default": False,
                "workflow": {
                    "collection": {
                        "alignment": {
                            "type": "anchored",
                            "recurringPeriod": {"interval": "MONTH", "anchor": "2026-01-01T00:00:00Z"},
                        },
                        "interval": "PT2H",
                    },
                    "invoicing": {"dueAfter": "P14D"},
                    "payment": {"collectionMethod": "send_invoice"},
                },
            },
        )
    )
    assert updated["name"] == "EU (net 14)"
    assert updated["workflow"]["invoicing"]["dueAfter"] == "P14D"
    # A replace: settings left out go back to the defaults.
    assert updated["workflow"]["invoicing"]["autoAdvance"] is True
    assert updated["workflow"]["collection"]["alignment"] == {
        "type": "anchored",
        "recurringPeriod": {"interval": "MONTH", "anchor": "2026-01-01T00:00:00Z"},
    }
    assert updated["workflow"]["payment"]["collectionMethod"] == "send_invoice"

    bad = await api.post(
        PROFILES,
        json={
            "name": "",
            "supplier": {"name": "x", "addresses": [{"country": "Germany"}]},
            "default": False,
            "workflow": {"invoicing": {"dueAfter": "30 days"}, "payment": {"collectionMethod": "cash"}},
            "apps": {"tax": app_id, "invoicing": "01J00000000000000000000000", "payment": app_id},
        },
    )
    assert bad.status_code == 400, bad.text
    fields = {e["field"] for e in bad.json()["extensions"]["validationErrors"]}
    assert {"workflow.payment.collectionMethod"} <= fields

    bad = await api.post(
        PROFILES,
        json={
            "name": "",
            "supplier": {"name": "x", "addresses": [{"country": "Germany"}]},
            "default": False,
            "workflow": {"invoicing": {"dueAfter": "30 days"}},
            "apps": {"tax": app_id, "invoicing": "01J00000000000000000000000", "payment": app_id},
        },
    )
    assert bad.status_code == 400, bad.text
    fields = {e["field"] for e in bad.json()["extensions"]["validationErrors"]}
    assert {"name", "supplier.addresses[0].country", "workflow.invoicing.dueAfter", "apps"} <= fields

    unknown_app = "01J00000000000000000000000"
    missing = await api.post(
        PROFILES,
        json={
            "name": "x",
            "supplier": SUPPLIER,
            "default": False,
            "apps": {"tax": unknown_app, "invoicing": unknown_app, "payment": unknown_app},
        },
    )
    assert missing.status_code == 404

    assert (await api.delete(f"{PROFILES}/{created['id']}")).status_code == 204
    deleted = await ok(await api.get(f"{PROFILES}/{created['id']}"))
    assert "deletedAt" in deleted
    # A deleted profile is listed only when archived ones are asked for, and deleting it again is fine.
    listed = await ok(await api.get(PROFILES, params={"pageSize": 1000}))
    assert created["id"] not in {p["id"] for p in listed["items"]}
    archived = await ok(await api.get(PROFILES, params={"pageSize": 1000, "includeArchived": "true"}))
    assert created["id"] in {p["id"] for p in archived["items"]}
    assert (await api.delete(f"{PROFILES}/{created['id']}")).status_code == 204
    assert (await api.put(f"{PROFILES}/{created['id']}", json={"name": "x", "supplier": SUPPLIER})).status_code == 400
    assert (await api.get(f"{PROFILES}/01J00000000000000000000000")).status_code == 404


async def test_profile_list_without_paging_parameters_is_the_first_page_of_100(api: httpx.AsyncClient) -> None:
    # OpenMeter's listBillingProfiles pages always (page 1 of 100 by default); Tally answered every
    # profile under "pageSize": 100.
    app_id = (await sandbox(api))["id"]
    apps = {"tax": app_id, "invoicing": app_id, "payment": app_id}

    async def create(n: int) -> dict[str, Any]:
        body = {"name": f"Bulk {n:03d}", "supplier": SUPPLIER, "default": False, "apps": apps}
        created: dict[str, Any] = await ok(await api.post(PROFILES, json=body), 201)
        return created

    created: list[dict[str, Any]] = []
    for start in range(0, 101, 25):
        created += await asyncio.gather(*(create(n) for n in range(start, min(start + 25, 101))))
    try:
        first = await ok(await api.get(PROFILES))
        assert (first["page"], first["pageSize"], len(first["items"])) == (1, 100, 100)
        assert first["totalCount"] >= 102  # these and the default profile
        rest = await ok(await api.get(PROFILES, params={"page": 2}))
        assert len(rest["items"]) == first["totalCount"] - 100
    finally:
        for profile in created:
            await ok(await api.delete(f"{PROFILES}/{profile['id']}"), 204)


async def test_profile_collection_interval_must_be_positive(api: httpx.AsyncClient) -> None:
    # OpenMeter's CollectionConfig.Validate: "item collection period must be greater or equal to 0",
    # tested with IsPositive, so a zero interval is refused on create and on update.
    app_id = (await install_custom(api, createBillingProfile=False))["app"]["id"]
    apps = {"tax": app_id, "invoicing": app_id, "payment": app_id}
    body = {"name": "Zero", "supplier": SUPPLIER, "default": False, "apps": apps}
    zero = await api.post(PROFILES, json={**body, "workflow": {"collection": {"interval": "PT0S"}}})
    assert zero.status_code == 400, zero.text
    fields = {e["field"] for e in zero.json()["extensions"]["validationErrors"]}
    assert fields == {"workflow.collection.interval"}
    created = await ok(await api.post(PROFILES, json=body), 201)
    body.pop("apps")
    replaced = await api.put(
        f"{PROFILES}/{created['id']}", json={**body, "workflow": {"collection": {"interval": "P0D"}}}
    )
    assert replaced.status_code == 400, replaced.text
    assert (await ok(await api.get(f"{PROFILES}/{created['id']}")))["workflow"]["collection"]["interval"] == "PT1H"
    assert (await api.delete(f"{PROFILES}/{created['id']}")).status_code == 204


async def test_profile_tax_enforced_needs_tax_enabled(api: httpx.AsyncClient) -> None:
    # OpenMeter's WorkflowTaxConfig.Validate: "tax is enforced but tax is not enabled".
    app_id = (await install_custom(api, createBillingProfile=False))["app"]["id"]
    apps = {"tax": app_id, "invoicing": app_id, "payment": app_id}
    body = {"name": "Tax", "supplier": SUPPLIER, "default": False, "apps": apps}
    refused = await api.post(PROFILES, json={**body, "workflow": {"tax": {"enabled": False, "enforced": True}}})
    assert refused.status_code == 400, refused.text
    fields = {e["field"] for e in refused.json()["extensions"]["validationErrors"]}
    assert fields == {"workflow.tax.enforced"}
    # Enabled is true unless given, so enforcing alone is fine.
    created = await ok(await api.post(PROFILES, json={**body, "workflow": {"tax": {"enforced": True}}}), 201)
    assert created["workflow"]["tax"] == {"enabled": True, "enforced": True}
    # Nor may an override turn tax off under a profile that enforces it: OpenMeter checks the
    # merged workflow (billing/service/customeroverride.go resolveProfileWorkflow, profile.Validate).
    customer = await make_customer(api, "override_tax_off")
    off = {"billingProfileId": created["id"], "workflow": {"tax": {"enabled": False}}}
    turned_off = await api.put(f"{OVERRIDES}/{customer['id']}", json=off)
    assert turned_off.status_code == 400, turned_off.text
    fields = {e["field"] for e in turned_off.json()["extensions"]["validationErrors"]}
    assert fields == {"workflow.tax.enabled"}
    assert "customerOverride" not in (await ok(await api.get(f"{OVERRIDES}/{customer['id']}")))
    both = {"billingProfileId": created["id"], "workflow": {"tax": {"enabled": False, "enforced": False}}}
    relaxed = await ok(await api.put(f"{OVERRIDES}/{customer['id']}", json=both))
    assert relaxed["customerProfile"]["workflow"]["tax"] == {"enabled": False, "enforced": False}
    assert (await api.delete(f"{OVERRIDES}/{customer['id']}")).status_code == 204
    body.pop("apps")
    replaced = await api.put(
        f"{PROFILES}/{created['id']}", json={**body, "workflow": {"tax": {"enabled": False, "enforced": True}}}
    )
    assert replaced.status_code == 400, replaced.text
    assert (await ok(await api.get(f"{PROFILES}/{created['id']}")))["workflow"]["tax"]["enabled"] is True
    assert (await api.delete(f"{PROFILES}/{created['id']}")).status_code == 204


async def test_a_recurring_period_needs_the_anchored_alignment(api: httpx.AsyncClient) -> None:
    # OpenMeter's CollectionConfig.Validate ("anchored alignment detail must be set when alignment is
    # anchored") and CollectionOverrideConfig.Validate ("not supported when alignment is
    # subscription"): a recurring period under the subscription alignment is refused, not stored
    # where it does nothing (an override showed it while its merged workflow had none).
    app_id = (await install_custom(api, createBillingProfile=False))["app"]["id"]
    apps = {"tax": app_id, "invoicing": app_id, "payment": app_id}
    period = {"interval": "P1M", "anchor": "2026-01-01T00:00:00Z"}
    alignment = {"type": "subscription", "recurringPeriod": period}
    workflow = {"collection": {"alignment": alignment}}
    body = {"name": "Aligned", "supplier": SUPPLIER, "default": False, "apps": apps}
    refused = await api.post(PROFILES, json={**body, "workflow": workflow})
    assert refused.status_code == 400, refused.text
    fields = {e["field"] for e in refused.json()["extensions"]["validationErrors"]}
    assert fields == {"workflow.collection.alignment.recurringPeriod"}
    customer = await make_customer(api, "override_subscription_period")
    override = await api.put(f"{OVERRIDES}/{customer['id']}", json={"workflow": workflow})
    assert override.status_code == 400, override.text
    assert (await api.get(f"{OVERRIDES}/{customer['id']}")).json().get("customerOverride") is None
    anchored = {"collection": {"alignment": {"type": "anchored", "recurringPeriod": period}}}
    created = await ok(await api.post(PROFILES, json={**body, "workflow": anchored}), 201)
    assert created["workflow"]["collection"]["alignment"] == anchored["collection"]["alignment"]
    assert (await api.delete(f"{PROFILES}/{created['id']}")).status_code == 204


async def test_a_default_tax_code_can_no_longer_be_set(api: httpx.AsyncClient) -> None:
    # The contract's BillingWorkflowInvoicingSettings.defaultTaxConfig: setting a tax code
    # (stripe.code / taxCodeId) there "is deprecated and can no longer be added or changed";
    # behavior (and custom invoicing's code) still is. OpenMeter answers 400
    # (billing/profile.go InvoicingConfig.WithDeprecatedTaxCodeEnforced). A customer override's
    # workflow (Tally's extension) follows the same rule.
    app_id = (await install_custom(api, createBillingProfile=False))["app"]["id"]
    apps = {"tax": app_id, "invoicing": app_id, "payment": app_id}
    body = {"name": "Taxed", "supplier": SUPPLIER, "default": False}

    def taxed(config: dict[str, Any]) -> dict[str, Any]:
        return {"invoicing": {"defaultTaxConfig": config}}

    def refused_fields(response: httpx.Response) -> set[str]:
        assert response.status_code == 400, response.text
        assert "deprecated" in response.text
        return {e["field"] for e in response.json()["extensions"]["validationErrors"]}

    where = "workflow.invoicing.defaultTaxConfig"
    stripe = {"behavior": "exclusive", "stripe": {"code": "txcd_10000000"}}
    by_id = {"taxCodeId": "01J00000000000000000000000"}
    created = await api.post(PROFILES, json={**body, "apps": apps, "workflow": taxed(stripe)})
    assert refused_fields(created) == {f"{where}.stripe.code"}
    created = await api.post(PROFILES, json={**body, "apps": apps, "workflow": taxed(by_id)})
    assert refused_fields(created) == {f"{where}.taxCodeId"}

    allowed = {"behavior": "exclusive", "customInvoicing": {"code": "VAT"}}
    profile = await ok(await api.post(PROFILES, json={**body, "apps": apps, "workflow": taxed(allowed)}), 201)
    assert profile["workflow"]["invoicing"]["defaultTaxConfig"] == allowed
    replaced = await api.put(f"{PROFILES}/{profile['id']}", json={**body, "workflow": taxed({**allowed, **stripe})})
    assert refused_fields(replaced) == {f"{where}.stripe.code"}
    assert (await ok(await api.get(f"{PROFILES}/{profile['id']}")))["workflow"]["invoicing"]["defaultTaxConfig"] == (
        allowed
    )

    customer = await make_customer(api, "override_tax_code")
    override = await api.put(f"{OVERRIDES}/{customer['id']}", json={"workflow": taxed(stripe)})
    assert refused_fields(override) == {f"{where}.stripe.code"}
    kept = await ok(await api.put(f"{OVERRIDES}/{customer['id']}", json={"workflow": taxed(allowed)}))
    assert kept["customerProfile"]["workflow"]["invoicing"]["defaultTaxConfig"] == allowed
    assert (await api.delete(f"{OVERRIDES}/{customer['id']}")).status_code == 204
    assert (await api.delete(f"{PROFILES}/{profile['id']}")).status_code == 204


async def test_default_profile_rules(api: httpx.AsyncClient) -> None:
    original = await default_profile(api)
    # The default cannot be deleted, nor stop being the default by itself.
    # Each with OpenMeter's code at the top of the problem's extensions (billing.EncodeValidationIssues).
    refused = await api.delete(f"{PROFILES}/{original['id']}")
    assert refused.status_code == 400, refused.text
    assert refused.json()["extensions"]["code"] == "default_profile_cannot_be_deleted", refused.text
    unset = await api.put(
        f"{PROFILES}/{original['id']}",
        json={"name": original["name"], "supplier": original["supplier"], "default": False},
    )
    assert unset.status_code == 400, unset.text
    assert unset.json()["extensions"]["code"] == "default_profile_cannot_be_unset", unset.text
    unknown = await api.get(f"{PROFILES}/01J0000000000000000000NOPE")
    assert unknown.status_code == 404 and unknown.json()["extensions"]["code"] == "profile_not_found", unknown.text

    app_id = (await install_custom(api, createBillingProfile=False))["app"]["id"]
    apps = {"tax": app_id, "invoicing": app_id, "payment": app_id}
    new_default = await ok(
        await api.post(PROFILES, json={"name": "New default", "supplier": SUPPLIER, "default": True, "apps": apps}), 201
    )
    assert (await default_profile(api))["id"] == new_default["id"]
    assert (await ok(await api.get(f"{PROFILES}/{original['id']}")))["default"] is False

    # Back to the sandbox profile (an update can make a profile the default).
    restored = await api.put(
        f"{PROFILES}/{original['id']}",
        json={"name": original["name"], "supplier": original["supplier"], "default": True},
    )
    assert restored.status_code == 200, restored.text
    assert (await default_profile(api))["id"] == original["id"]
    assert (await api.delete(f"{PROFILES}/{new_default['id']}")).status_code == 204


async def test_customer_overrides(api: httpx.AsyncClient) -> None:
    default = await default_profile(api)
    customer = await make_customer(api, "override_acme", primaryEmail="billing@acme.test")
    other = await make_customer(api, "override_globex")

    # No override yet: the default profile applies.
    plain = await ok(await api.get(f"{OVERRIDES}/{customer['id']}"))
    assert "customerOverride" not in plain
    assert plain["baseBillingProfileId"] == default["id"]
    assert plain["customerProfile"]["workflow"] == default["workflow"]
    none = await api.delete(f"{OVERRIDES}/{customer['id']}")
    assert none.status_code == 404 and none.json()["extensions"]["code"] == "customer_override_not_found", none.text

    app_id = (await install_custom(api, createBillingProfile=False))["app"]["id"]
    apps = {"tax": app_id, "invoicing": app_id, "payment": app_id}
    pinned = await ok(
        await api.post(
            PROFILES,
            json={
                "name": "Manual approval",
                "supplier": SUPPLIER,
                "default": False,
                "apps": apps,
                "workflow": {"invoicing": {"autoAdvance": False}},
            },
        ),
        201,
    )
    upserted = await ok(await api.put(f"{OVERRIDES}/{customer['id']}", json={"billingProfileId": pinned["id"]}))
    assert upserted["customerOverride"]["customerId"] == customer["id"]
    assert upserted["customerOverride"]["billingProfileId"] == pinned["id"]
    assert upserted["baseBillingProfileId"] == pinned["id"]
    assert upserted["customerProfile"]["workflow"]["invoicing"]["autoAdvance"] is False
    assert upserted["customerProfile"]["supplier"]["name"] == "Acme Billing Ltd"

    # A pinned profile cannot be deleted.
    refused = await api.delete(f"{PROFILES}/{pinned['id']}")
    assert refused.status_code == 400, refused.text
    assert customer["id"] in refused.json()["detail"]
    assert refused.json()["extensions"]["code"] == "profile_referenced", refused.text

    # Tally's extension: override single settings; the rest comes from the profile.
    tuned = await ok(
        await api.put(
            f"{OVERRIDES}/{customer['key']}",
            json={"billingProfileId": pinned["id"], "workflow": {"invoicing": {"dueAfter": "P7D"}}},
        )
    )
    assert tuned["customerOverride"]["workflow"] == {"invoicing": {"dueAfter": "P7D"}}
    merged = tuned["customerProfile"]["workflow"]["invoicing"]
    assert merged["dueAfter"] == "P7D" and merged["autoAdvance"] is False and merged["draftPeriod"] == "P0D"

    expanded = await ok(await api.get(f"{OVERRIDES}/{customer['id']}", params={"expand": ["apps", "customer"]}))
    assert expanded["customer"]["id"] == customer["id"]
    assert expanded["customerProfile"]["apps"]["invoicing"]["type"] == "custom_invoicing"
    assert (await api.get(f"{OVERRIDES}/{customer['id']}", params={"expand": "bogus"})).status_code == 400

    # Lists: every customer by default; only overrides; by profile; without a pinned profile.
    everyone = await ok(await api.get(OVERRIDES, params={"pageSize": 1000}))
    ids = {item["customerProfile"] and item.get("customerOverride", {}).get("customerId") for item in everyone["items"]}
    assert customer["id"] in ids
    assert everyone["totalCount"] >= 2
    only = await ok(await api.get(OVERRIDES, params={"includeAllCustomers": "false", "pageSize": 1000}))
    assert [i["customerOverride"]["customerId"] for i in only["items"]] == [customer["id"]]
    by_profile = await ok(await api.get(OVERRIDES, params={"billingProfile": pinned["id"]}))
    assert by_profile["totalCount"] == 1
    on_default = await ok(await api.get(OVERRIDES, params={"billingProfile": default["id"], "pageSize": 1000}))
    assert customer["id"] not in {i.get("customerOverride", {}).get("customerId") for i in on_default["items"]}
    assert all(i["baseBillingProfileId"] == default["id"] for i in on_default["items"])
    unpinned = await ok(await api.get(OVERRIDES, params={"customersWithoutPinnedProfile": "true", "pageSize": 1000}))
    assert all(i["baseBillingProfileId"] == default["id"] for i in unpinned["items"])
    filtered = await ok(
        await api.get(OVERRIDES, params={"customerKey": other["key"], "expand": "customer"}),
    )
    assert [i["customer"]["id"] for i in filtered["items"]] == [other["id"]]
    by_email = await ok(await api.get(OVERRIDES, params={"customerPrimaryEmail": "ACME.TEST"}))
    assert by_email["totalCount"] == 1
    assert (await api.get(OVERRIDES, params={"orderBy": "nope"})).status_code == 400

    assert (await api.delete(f"{OVERRIDES}/{customer['id']}")).status_code == 204
    back = await ok(await api.get(f"{OVERRIDES}/{customer['id']}"))
    assert back["baseBillingProfileId"] == default["id"] and "customerOverride" not in back
    assert (await api.delete(f"{PROFILES}/{pinned['id']}")).status_code == 204
    assert (await api.put(f"{OVERRIDES}/01J00000000000000000000000", json={})).status_code == 404
    missing_profile = await api.put(f"{OVERRIDES}/{customer['id']}", json={"billingProfileId": pinned["id"]})
    assert missing_profile.status_code == 404


async def test_customer_app_data(api: httpx.AsyncClient) -> None:
    app_id = (await install_custom(api, createBillingProfile=False))["app"]["id"]
    customer = await make_customer(api, "appdata_acme")
    base = f"/api/v1/customers/{customer['id']}/apps"

    empty = await ok(await api.get(base))
    assert empty == {"totalCount": 0, "page": 1, "pageSize": 100, "items": []}

    stored = await ok(
        await api.put(
            base,
            json=[
                {"type": "custom_invoicing", "id": app_id, "metadata": {"erpId": "C-42"}},
                # Without an ID: the customer's profile's app of that type (the sandbox here).
                {"type": "sandbox"},
            ],
        )
    )
    assert isinstance(stored, list) and len(stored) == 2
    assert stored[0]["id"] == app_id and stored[0]["metadata"] == {"erpId": "C-42"}
    assert stored[0]["app"]["type"] == "custom_invoicing"
    assert stored[1]["type"] == "sandbox" and stored[1]["app"]["name"] == "Sandbox"

    listed = await ok(await api.get(f"/api/v1/customers/{customer['key']}/apps"))
    assert listed["totalCount"] == 2
    only = await ok(await api.get(base, params={"type": "custom_invoicing"}))
    assert [i["metadata"] for i in only["items"]] == [{"erpId": "C-42"}]

    # Validated by the app, all or nothing.
    bad = await api.put(
        base,
        json=[
            {"type": "custom_invoicing", "id": app_id, "metadata": {"erpId": "C-43"}},
            {"type": "custom_invoicing", "id": app_id, "metadata": {"": "x"}},
        ],
    )
    assert bad.status_code == 400, bad.text
    mismatch = await api.put(base, json=[{"type": "sandbox", "id": app_id}])
    assert mismatch.status_code == 400
    # No stripe app in the customer's profile.
    assert (await api.put(base, json=[{"type": "stripe", "stripeCustomerId": "cus_1"}])).status_code == 412
    assert (await ok(await api.get(base, params={"type": "custom_invoicing"})))["items"][0]["metadata"] == {
        "erpId": "C-42"
    }

    assert (await api.delete(f"{base}/{app_id}")).status_code == 204
    assert (await ok(await api.get(base)))["totalCount"] == 1
    assert (await api.delete(f"{base}/01J00000000000000000000000")).status_code == 404

    await ok(await api.delete(f"/api/v1/customers/{customer['id']}"), 204)
    assert (await api.get(base)).status_code == 412


async def test_override_list_is_newest_customer_id_first_unless_asked_otherwise(api: httpx.AsyncClient) -> None:
    # OpenMeter's listCustomerOverrides orders by customerId, DESC when no order is given
    # (billing/httpdriver/customeroverride.go: lo.FromPtrOr(input.Order, api.SortOrderDESC)).
    made = [await make_customer(api, f"override_order_{n}") for n in range(3)]
    ids = [c["id"] for c in made]
    params: dict[str, Any] = {"customerId": ids}
    listed = await ok(await api.get(OVERRIDES, params=params))
    assert [i["customer"]["id"] if "customer" in i else None for i in listed["items"]] == [None] * 3
    by_default = await ok(await api.get(OVERRIDES, params={**params, "expand": "customer"}))
    assert [i["customer"]["id"] for i in by_default["items"]] == sorted(ids, reverse=True)
    ascending = await ok(await api.get(OVERRIDES, params={**params, "expand": "customer", "order": "ASC"}))
    assert [i["customer"]["id"] for i in ascending["items"]] == sorted(ids)


async def test_override_list_without_paging_parameters_is_its_first_page_of_100(api: httpx.AsyncClient) -> None:
    # The contract's defaults are page 1 and pageSize 100, and the answer says so: it answered every
    # customer under "page 1 of 100", so a client paging on met customers 101 and on twice.
    ids = [(await make_customer(api, f"override_paging_{n}"))["id"] for n in range(101)]
    params: dict[str, Any] = {"customerId": ids, "expand": "customer"}
    first = await ok(await api.get(OVERRIDES, params=params))
    assert (first["page"], first["pageSize"], first["totalCount"], len(first["items"])) == (1, 100, 101, 100)
    second = await ok(await api.get(OVERRIDES, params={**params, "page": 2}))
    assert (second["page"], second["pageSize"], second["totalCount"], len(second["items"])) == (2, 100, 101, 1)
    listed = [i["customer"]["id"] for i in (*first["items"], *second["items"])]
    assert sorted(listed) == sorted(ids)


async def test_override_list_refuses_billing_profile_with_customers_without_pinned_profile(
    api: httpx.AsyncClient,
) -> None:
    # The two filters contradict each other; OpenMeter refuses the pair with 400
    # (billing/customeroverride.go ListCustomerOverridesInput.Validate), Tally ignored billingProfile.
    default = await default_profile(api)
    refused = await api.get(
        OVERRIDES, params={"customersWithoutPinnedProfile": "true", "billingProfile": default["id"]}
    )
    assert refused.status_code == 400, refused.text
    assert "billingProfile" in refused.text and "customersWithoutPinnedProfile" in refused.text


async def test_a_deleted_customers_override_is_still_answered_by_its_id(api: httpx.AsyncClient) -> None:
    # OpenMeter finds a customer by ID whether deleted or not (customer adapter GetCustomer), and its
    # override service asks no more than that (billing/service/customeroverride.go: Get and Upsert
    # check the customer exists, Delete only the override); only the list leaves deleted customers
    # out. Tally answered 404 to all three.
    customer = await make_customer(api, "override_deleted")
    tuned = {"workflow": {"invoicing": {"dueAfter": "P7D"}}}
    await ok(await api.put(f"{OVERRIDES}/{customer['id']}", json=tuned))
    await ok(await api.delete(f"/api/v1/customers/{customer['id']}"), 204)

    kept = await ok(await api.get(f"{OVERRIDES}/{customer['id']}", params={"expand": "customer"}))
    assert kept["customerOverride"]["workflow"] == {"invoicing": {"dueAfter": "P7D"}}
    assert kept["customer"]["id"] == customer["id"] and "deletedAt" in kept["customer"]
    # By key a deleted customer is no one's (as everywhere else): its key may be taken again.
    assert (await api.get(f"{OVERRIDES}/{customer['key']}")).status_code == 404

    changed = await ok(
        await api.put(f"{OVERRIDES}/{customer['id']}", json={"workflow": {"invoicing": {"dueAfter": "P14D"}}})
    )
    assert changed["customerProfile"]["workflow"]["invoicing"]["dueAfter"] == "P14D"
    listed = await ok(await api.get(OVERRIDES, params={"customerId": customer["id"], "includeAllCustomers": "false"}))
    assert listed["items"] == []

    assert (await api.delete(f"{OVERRIDES}/{customer['id']}")).status_code == 204
    assert (await api.delete(f"{OVERRIDES}/{customer['id']}")).status_code == 404
    plain = await ok(await api.get(f"{OVERRIDES}/{customer['id']}"))
    assert "customerOverride" not in plain
