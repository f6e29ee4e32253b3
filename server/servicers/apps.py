"""AppService: proto <-> domain for apps, the marketplace and customer app data."""

from __future__ import annotations

from google.protobuf import empty_pb2

from domain.billing.apps.models import (
    App,
    AppType,
    CustomerAppDataInput,
    CustomerAppEntry,
    InstallAppInput,
    ListAppsInput,
    Listing,
    UpdateAppInput,
)
from domain.billing.apps.registry import Marketplace
from domain.billing.service import AppService, CustomerAppService
from server.context import RequestContext
from server.convert import optional_str, set_timestamp, struct_from
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from tally.v1 import apps_pb2 as pb
from tally.v1 import apps_pb2_grpc


def listing_to_proto(listing: Listing) -> pb.MarketplaceListing:
    return pb.MarketplaceListing(
        type=listing.type.value,
        name=listing.name,
        description=listing.description,
        capabilities=[
            pb.AppCapability(type=c.type.value, key=c.key, name=c.name, description=c.description)
            for c in listing.capabilities
        ],
        install_methods=[m.value for m in listing.install_methods],
    )


def app_to_proto(app: App, marketplace: Marketplace) -> pb.App:
    message = pb.App(
        id=app.id,
        type=app.type.value,
        name=app.name,
        status=app.status.value,
        metadata=struct_from(dict(app.metadata)),
        listing=listing_to_proto(marketplace.entry(app.type).listing),
    )
    if app.description is not None:
        message.description = app.description
    if app.custom_invoicing is not None:
        message.enable_draft_sync_hook = app.custom_invoicing.enable_draft_sync_hook
        message.enable_issuing_sync_hook = app.custom_invoicing.enable_issuing_sync_hook
    set_timestamp(message.created_at, app.created_at)
    set_timestamp(message.updated_at, app.updated_at)
    set_timestamp(message.deleted_at, app.deleted_at)
    return message


def customer_app_data_to_proto(entry: CustomerAppEntry, marketplace: Marketplace) -> pb.CustomerAppData:
    message = pb.CustomerAppData(
        id=entry.app.id,
        type=entry.app.type.value,
        app=app_to_proto(entry.app, marketplace),
    )
    if entry.app.type is AppType.CUSTOM_INVOICING:
        message.metadata.update(entry.data.metadata)
    return message


def _customer_app_data_in(item: pb.CustomerAppData) -> CustomerAppDataInput:
    return CustomerAppDataInput(
        type=item.type,
        app_id=optional_str(item, "id") or None,
        metadata=dict(item.metadata),
        stripe_customer_id=optional_str(item, "stripe_customer_id"),
        stripe_default_payment_method_id=optional_str(item, "stripe_default_payment_method_id"),
    )


def _optional_bool(message: object, name: str) -> bool | None:
    return getattr(message, name) if message.HasField(name) else None  # type: ignore[attr-defined]


class AppServicer(apps_pb2_grpc.AppServiceServicer):
    def __init__(self, apps: AppService, customer_apps: CustomerAppService, request: RequestContext) -> None:
        self._apps = apps
        self._customer_apps = customer_apps
        self._request = request

    def _app(self, app: App) -> pb.App:
        return app_to_proto(app, self._apps.marketplace)

    async def ListApps(self, request: pb.ListAppsRequest, context: Ctx) -> pb.ListAppsResponse:
        data = ListAppsInput(
            page=request.page if request.HasField("page") else None,
            page_size=request.page_size if request.HasField("page_size") else None,
        )
        apps, total, page, size = await self._apps.list_apps(self._request.namespace(context), data)
        return pb.ListAppsResponse(total_count=total, page=page, page_size=size, items=[self._app(a) for a in apps])

    async def GetApp(self, request: pb.GetAppRequest, context: Ctx) -> pb.App:
        return self._app(await self._apps.get_app(self._request.namespace(context), request.app_id))

    async def UpdateApp(self, request: pb.UpdateAppRequest, context: Ctx) -> pb.App:
        data = UpdateAppInput(
            type=request.type,
            name=request.name,
            description=optional_str(request, "description"),
            metadata=dict(request.metadata),
            enable_draft_sync_hook=_optional_bool(request, "enable_draft_sync_hook"),
            enable_issuing_sync_hook=_optional_bool(request, "enable_issuing_sync_hook"),
            secret_api_key=optional_str(request, "secret_api_key"),
        )
        return self._app(await self._apps.update_app(self._request.namespace(context), request.app_id, data))

    async def UninstallApp(self, request: pb.UninstallAppRequest, context: Ctx) -> empty_pb2.Empty:
        await self._apps.uninstall(self._request.namespace(context), request.app_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def ListMarketplaceListings(
        self, request: pb.ListMarketplaceListingsRequest, context: Ctx
    ) -> pb.ListMarketplaceListingsResponse:
        listings, total, page, size = self._apps.list_listings(
            request.page if request.HasField("page") else None,
            request.page_size if request.HasField("page_size") else None,
        )
        return pb.ListMarketplaceListingsResponse(
            total_count=total, page=page, page_size=size, items=[listing_to_proto(x) for x in listings]
        )

    async def GetMarketplaceListing(
        self, request: pb.GetMarketplaceListingRequest, context: Ctx
    ) -> pb.MarketplaceListing:
        return listing_to_proto(self._apps.get_listing(request.type))

    async def _install(self, context: Ctx, data: InstallAppInput) -> pb.InstallMarketplaceListingResponse:
        app, defaults = await self._apps.install(self._request.namespace(context), data)
        return pb.InstallMarketplaceListingResponse(
            app=self._app(app), default_for_capability_types=[c.value for c in defaults]
        )

    async def InstallMarketplaceListing(
        self, request: pb.InstallMarketplaceListingRequest, context: Ctx
    ) -> pb.InstallMarketplaceListingResponse:
        create = _optional_bool(request, "create_billing_profile")
        data = InstallAppInput(
            type=request.type,
            name=optional_str(request, "name"),
            create_billing_profile=True if create is None else create,
        )
        return await self._install(context, data)

    async def InstallMarketplaceListingWithApiKey(
        self, request: pb.InstallMarketplaceListingWithApiKeyRequest, context: Ctx
    ) -> pb.InstallMarketplaceListingResponse:
        create = _optional_bool(request, "create_billing_profile")
        data = InstallAppInput(
            type=request.type,
            name=optional_str(request, "name"),
            create_billing_profile=True if create is None else create,
            api_key=request.api_key,
        )
        return await self._install(context, data)

    async def ListCustomerAppData(
        self, request: pb.ListCustomerAppDataRequest, context: Ctx
    ) -> pb.ListCustomerAppDataResponse:
        entries, total, page, size = await self._customer_apps.list_data(
            self._request.namespace(context),
            request.customer_id_or_key,
            request.page if request.HasField("page") else None,
            request.page_size if request.HasField("page_size") else None,
            optional_str(request, "type"),
        )
        return pb.ListCustomerAppDataResponse(
            total_count=total,
            page=page,
            page_size=size,
            items=[customer_app_data_to_proto(e, self._apps.marketplace) for e in entries],
        )

    async def UpsertCustomerAppData(
        self, request: pb.UpsertCustomerAppDataRequest, context: Ctx
    ) -> pb.UpsertCustomerAppDataResponse:
        entries = await self._customer_apps.upsert(
            self._request.namespace(context),
            request.customer_id_or_key,
            [_customer_app_data_in(item) for item in request.items],
        )
        await rest_hints(context, shape="array")
        return pb.UpsertCustomerAppDataResponse(
            items=[customer_app_data_to_proto(e, self._apps.marketplace) for e in entries]
        )

    async def DeleteCustomerAppData(self, request: pb.DeleteCustomerAppDataRequest, context: Ctx) -> empty_pb2.Empty:
        await self._customer_apps.delete(self._request.namespace(context), request.customer_id_or_key, request.app_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()
