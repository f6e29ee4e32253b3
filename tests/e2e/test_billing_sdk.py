"""OpenMeter's official Python SDK, unchanged, against Tally's apps, marketplace, customer app data,
billing profiles and customer overrides (it checks status codes exactly and parses the unions).

Runs on the shared stack: it creates its own apps, profiles and customers and leaves the
namespace's default profile as it found it.
"""

from __future__ import annotations

import asyncio

import pytest
from corehttp.exceptions import HttpResponseError
from openmeter import Client

from tests.support.metering import unique
from tests.support.stack import TallyProcess

SUPPLIER = {"name": "SDK Supplier", "addresses": [{"country": "NL"}]}


def _sdk_billing_flow(rest_url: str) -> None:
    client = Client(endpoint=rest_url)

    apps = client.apps.list()
    sandbox = next(a for a in apps["items"] if a["type"] == "sandbox")
    # Apps are a union: the SDK hands them over as JSON objects.
    assert sandbox["name"] == "Sandbox" and sandbox["status"] == "ready"
    assert client.apps.get(sandbox["id"])["id"] == sandbox["id"]

    listings = client.marketplace.list()
    assert {x.type for x in listings["items"]} == {"stripe", "sandbox", "custom_invoicing"}
    assert client.marketplace.get("custom_invoicing").install_methods == ["no_credentials_required"]
    with pytest.raises(HttpResponseError) as singleton:
        client.marketplace.install("sandbox", {})
    assert singleton.value.status_code == 409

    installed = client.marketplace.install(
        "custom_invoicing", {"name": unique("sdk_erp"), "createBillingProfile": False}
    )
    app = installed.app
    assert app["type"] == "custom_invoicing" and app["enableDraftSyncHook"] is False
    assert installed.default_for_capability_types == []
    updated = client.apps.update(
        app["id"],
        {"type": "custom_invoicing", "name": "SDK ERP", "enableDraftSyncHook": True, "enableIssuingSyncHook": False},
    )
    assert updated["enableDraftSyncHook"] is True and updated["name"] == "SDK ERP"

    profiles = client.billing_profiles.list(page_size=1000)
    default = next(p for p in profiles["items"] if p.default)
    assert default.name == "openmeter-sandbox"
    assert default.workflow.invoicing.due_after == "P30D"
    assert default.workflow.collection.interval == "PT1H"

    profile = client.billing_profiles.create(
        {
            "name": unique("sdk_profile"),
            "supplier": SUPPLIER,
            "default": False,
            "workflow": {"invoicing": {"autoAdvance": False}},
            "apps": {"tax": app["id"], "invoicing": app["id"], "payment": app["id"]},
        }
    )
    assert profile.workflow.invoicing.auto_advance is False
    assert profile.workflow.invoicing.draft_period == "P0D"
    assert profile.apps["invoicing"]["type"] == "custom_invoicing"
    got = client.billing_profiles.get(profile.id, expand=["apps"])
    assert got.apps["payment"]["id"] == app["id"]
    renamed = client.billing_profiles.update(
        profile.id, {"name": "SDK profile", "supplier": SUPPLIER, "default": False, "workflow": {}}
    )
    assert renamed.name == "SDK profile" and renamed.workflow.invoicing.auto_advance is True

    key = unique("sdk_billing_customer")
    customer = client.customers.create({"name": "SDK customer", "key": key})
    plain = client.customer_overrides.get(customer.id)
    assert plain.base_billing_profile_id == default.id
    override = client.customer_overrides.upsert(customer.id, {"billingProfileId": profile.id})
    assert override.customer_override.billing_profile_id == profile.id
    assert override.customer_override.customer_id == customer.id
    assert override.base_billing_profile_id == profile.id
    listed = client.customer_overrides.list(billing_profile=[profile.id], expand=["customer"])
    assert [item.customer.id for item in listed["items"]] == [customer.id]
    with pytest.raises(HttpResponseError) as pinned:
        client.billing_profiles.delete(profile.id)
    assert pinned.value.status_code == 400

    data = client.customer_apps.upsert_app_data(
        customer.id, [{"type": "custom_invoicing", "id": app["id"], "metadata": {"erpId": "X-1"}}]
    )
    assert data[0]["metadata"] == {"erpId": "X-1"}
    page = client.customer_apps.list_app_data(customer.id)
    assert page.total_count == 1 and page["items"][0]["app"]["id"] == app["id"]
    client.customer_apps.delete_app_data(customer.id, app["id"])
    assert client.customer_apps.list_app_data(customer.id).total_count == 0

    client.customer_overrides.delete(customer.id)
    client.billing_profiles.delete(profile.id)
    client.apps.uninstall(app["id"])
    # Answered still, as uninstalled (OpenMeter's GET reads deleted apps too), and no longer listed.
    assert client.apps.get(app["id"])["deletedAt"] is not None
    assert app["id"] not in {a["id"] for a in client.apps.list()["items"]}
    with pytest.raises(HttpResponseError) as gone:
        client.apps.uninstall(app["id"])
    assert gone.value.status_code == 404


async def test_openmeter_sdk_billing(tally: TallyProcess) -> None:
    await asyncio.to_thread(_sdk_billing_flow, tally.rest_url)
