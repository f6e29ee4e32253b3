"""AppService and BillingProfileService over native gRPC: typed messages, status codes and
google.rpc error details (the same services Envoy transcodes for REST)."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from tally.v1 import apps_pb2, apps_pb2_grpc, billing_pb2, billing_pb2_grpc, customers_pb2, customers_pb2_grpc
from tests.support.metering import unique


def _details(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError("no status details")


async def test_apps_and_profiles_over_grpc(channel: grpc.aio.Channel) -> None:
    apps = apps_pb2_grpc.AppServiceStub(channel)
    profiles = billing_pb2_grpc.BillingProfileServiceStub(channel)
    customers = customers_pb2_grpc.CustomerServiceStub(channel)

    listed = await apps.ListApps(apps_pb2.ListAppsRequest())
    sandbox = next(a for a in listed.items if a.type == "sandbox")
    assert sandbox.HasField("listing") and not sandbox.HasField("enable_draft_sync_hook")

    with pytest.raises(grpc.aio.AioRpcError) as singleton:
        await apps.InstallMarketplaceListing(apps_pb2.InstallMarketplaceListingRequest(type="sandbox"))
    assert singleton.value.code() is grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as stripe:
        await apps.InstallMarketplaceListingWithApiKey(
            apps_pb2.InstallMarketplaceListingWithApiKeyRequest(type="stripe", api_key="sk_test")
        )
    assert stripe.value.code() is grpc.StatusCode.UNIMPLEMENTED

    installed = await apps.InstallMarketplaceListing(
        apps_pb2.InstallMarketplaceListingRequest(type="custom_invoicing", create_billing_profile=False)
    )
    app = installed.app
    assert app.type == "custom_invoicing" and app.HasField("enable_draft_sync_hook")
    updated = await apps.UpdateApp(
        apps_pb2.UpdateAppRequest(
            app_id=app.id,
            type="custom_invoicing",
            name="gRPC ERP",
            enable_draft_sync_hook=False,
            enable_issuing_sync_hook=True,
        )
    )
    assert updated.enable_issuing_sync_hook and updated.name == "gRPC ERP"

    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await profiles.CreateBillingProfile(
            billing_pb2.CreateBillingProfileRequest(
                name="x",
                supplier=billing_pb2.BillingParty(name="S", addresses=[customers_pb2.Address(country="NL")]),
                apps=billing_pb2.BillingProfileAppsCreate(tax=app.id, invoicing=app.id, payment=app.id),
                workflow=billing_pb2.BillingWorkflow(
                    invoicing=billing_pb2.BillingWorkflowInvoicingSettings(due_after="soon")
                ),
            )
        )
    assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    bad_request = error_details_pb2.BadRequest()
    assert _details(invalid.value).details[0].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["workflow.invoicing.dueAfter"]

    created = await profiles.CreateBillingProfile(
        billing_pb2.CreateBillingProfileRequest(
            name=unique("grpc_profile"),
            supplier=billing_pb2.BillingParty(name="S", addresses=[customers_pb2.Address(country="NL")]),
            apps=billing_pb2.BillingProfileAppsCreate(tax=app.id, invoicing=app.id, payment=app.id),
            workflow=billing_pb2.BillingWorkflow(
                invoicing=billing_pb2.BillingWorkflowInvoicingSettings(draft_period="P2D")
            ),
        )
    )
    assert created.workflow.invoicing.draft_period == "P2D"
    assert created.workflow.invoicing.due_after == "P30D"
    assert created.apps.invoicing.type == "custom_invoicing"
    reference = await profiles.GetBillingProfile(billing_pb2.GetBillingProfileRequest(profile_id=created.id))
    assert reference.apps.invoicing.id == app.id and not reference.apps.invoicing.HasField("type")

    customer = await customers.CreateCustomer(
        customers_pb2.CreateCustomerRequest(name="gRPC billing", key=unique("grpc_billing"))
    )
    details = await profiles.UpsertBillingProfileCustomerOverride(
        billing_pb2.UpsertBillingProfileCustomerOverrideRequest(
            customer_id=customer.key,
            billing_profile_id=created.id,
            workflow=billing_pb2.BillingWorkflow(
                payment=billing_pb2.BillingWorkflowPaymentSettings(collection_method="send_invoice")
            ),
        )
    )
    assert details.customer_override.customer_id == customer.id
    assert details.customer_profile.workflow.payment.collection_method == "send_invoice"
    assert details.customer_profile.workflow.invoicing.draft_period == "P2D"
    got = await profiles.GetBillingProfileCustomerOverride(
        billing_pb2.GetBillingProfileCustomerOverrideRequest(customer_id=customer.id, expand=["customer"])
    )
    assert got.customer.id == customer.id and got.base_billing_profile_id == created.id

    with pytest.raises(grpc.aio.AioRpcError) as in_use:
        await apps.UninstallApp(apps_pb2.UninstallAppRequest(app_id=app.id))
    assert in_use.value.code() is grpc.StatusCode.ALREADY_EXISTS
    await profiles.DeleteBillingProfileCustomerOverride(
        billing_pb2.DeleteBillingProfileCustomerOverrideRequest(customer_id=customer.id)
    )
    await profiles.DeleteBillingProfile(billing_pb2.DeleteBillingProfileRequest(profile_id=created.id))
    await apps.UninstallApp(apps_pb2.UninstallAppRequest(app_id=app.id))
    # Still answered, as uninstalled; a second uninstall finds no installed app.
    assert (await apps.GetApp(apps_pb2.GetAppRequest(app_id=app.id))).HasField("deleted_at")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await apps.UninstallApp(apps_pb2.UninstallAppRequest(app_id=app.id))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
