"""BillingProfileService: proto <-> domain for billing profiles and customer overrides."""

from __future__ import annotations

import enum
from datetime import UTC
from typing import Any, TypeVar

from google.protobuf import empty_pb2

from domain.billing.models import (
    Alignment,
    CollectionMethod,
    EffectiveProfile,
    ListOverridesInput,
    ListProfilesInput,
    OverrideUpsertInput,
    ProfileApps,
    ProfileCreateInput,
    ProfileUpdateInput,
    ProfileView,
    ProrationMode,
    RecurringPeriod,
    ResolvedApps,
    Supplier,
    Workflow,
    WorkflowPatch,
    parse_expand,
)
from domain.billing.service import AppService, BillingProfileService
from domain.catalog.ratecards import TaxBehavior, TaxConfig
from domain.customers.models import Address
from domain.errors import Violations
from server.context import RequestContext
from server.convert import optional_str, set_timestamp
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from server.servicers.apps import app_to_proto
from server.servicers.customers import address_from_proto, customer_to_proto
from tally.v1 import apps_pb2, billing_pb2_grpc, catalog_pb2, customers_pb2
from tally.v1 import billing_pb2 as pb

E = TypeVar("E", bound=enum.Enum)


def _enum(kind: type[E], value: str, location: str, v: Violations) -> E | None:
    try:
        return kind(value)
    except ValueError:
        v.add(location, f"must be one of {', '.join(str(m.value) for m in kind)}", "invalid_enum")
        return None


def _opt_bool(message: object, name: str) -> bool | None:
    return getattr(message, name) if message.HasField(name) else None  # type: ignore[attr-defined]


def _tax_config_in(message: catalog_pb2.TaxConfig, location: str, v: Violations) -> TaxConfig:
    behavior = optional_str(message, "behavior")
    return TaxConfig(
        behavior=_enum(TaxBehavior, behavior, f"{location}.behavior", v) if behavior is not None else None,
        stripe_code=message.stripe.code if message.HasField("stripe") else None,
        custom_invoicing_code=message.custom_invoicing.code if message.HasField("custom_invoicing") else None,
        tax_code_id=optional_str(message, "tax_code_id"),
    )


def workflow_patch_in(message: pb.BillingWorkflow, v: Violations, location: str = "workflow") -> WorkflowPatch:
    """The settings a request gives (None for the others); decoding problems go to `v`."""
    given: dict[str, Any] = {}
    if message.HasField("collection"):
        collection = message.collection
        given["collection_interval"] = optional_str(collection, "interval")
        if collection.HasField("alignment"):
            where = f"{location}.collection.alignment"
            given["alignment"] = _enum(Alignment, collection.alignment.type, f"{where}.type", v)
            if collection.alignment.HasField("recurring_period"):
                period = collection.alignment.recurring_period
                if not period.HasField("anchor"):
                    v.add(f"{where}.recurringPeriod.anchor", "required", "required")
                else:
                    given["recurring_period"] = RecurringPeriod(period.interval, period.anchor.ToDatetime(tzinfo=UTC))
    if message.HasField("invoicing"):
        invoicing = message.invoicing
        where = f"{location}.invoicing"
        given["auto_advance"] = _opt_bool(invoicing, "auto_advance")
        given["draft_period"] = optional_str(invoicing, "draft_period")
        given["due_after"] = optional_str(invoicing, "due_after")
        given["progressive_billing"] = _opt_bool(invoicing, "progressive_billing")
        mode = optional_str(invoicing, "subscription_end_proration_mode")
        if mode is not None:
            given["subscription_end_proration_mode"] = _enum(
                ProrationMode, mode, f"{where}.subscriptionEndProrationMode", v
            )
        if invoicing.HasField("default_tax_config"):
            given["default_tax_config"] = _tax_config_in(invoicing.default_tax_config, f"{where}.defaultTaxConfig", v)
    if message.HasField("payment") and message.payment.HasField("collection_method"):
        given["collection_method"] = _enum(
            CollectionMethod, message.payment.collection_method, f"{location}.payment.collectionMethod", v
        )
    if message.HasField("tax"):
        given["tax_enabled"] = _opt_bool(message.tax, "enabled")
        given["tax_enforced"] = _opt_bool(message.tax, "enforced")
    return WorkflowPatch(**given)


def _tax_config_out(tax: TaxConfig) -> catalog_pb2.TaxConfig:
    message = catalog_pb2.TaxConfig()
    if tax.behavior is not None:
        message.behavior = tax.behavior.value
    if tax.stripe_code is not None:
        message.stripe.code = tax.stripe_code
    if tax.custom_invoicing_code is not None:
        message.custom_invoicing.code = tax.custom_invoicing_code
    if tax.tax_code_id is not None:
        message.tax_code_id = tax.tax_code_id
    return message


def workflow_out(workflow: Workflow | WorkflowPatch) -> pb.BillingWorkflow:
    """A complete workflow, or only the settings a patch sets."""
    message = pb.BillingWorkflow()
    if workflow.alignment is not None:
        message.collection.alignment.type = workflow.alignment.value
        if workflow.recurring_period is not None:
            message.collection.alignment.recurring_period.interval = workflow.recurring_period.interval
            set_timestamp(message.collection.alignment.recurring_period.anchor, workflow.recurring_period.anchor)
    if workflow.collection_interval is not None:
        message.collection.interval = workflow.collection_interval
    invoicing = message.invoicing
    for name in ("auto_advance", "draft_period", "due_after", "progressive_billing"):
        value = getattr(workflow, name)
        if value is not None:
            setattr(invoicing, name, value)
    if workflow.subscription_end_proration_mode is not None:
        invoicing.subscription_end_proration_mode = workflow.subscription_end_proration_mode.value
    if workflow.default_tax_config is not None:
        invoicing.default_tax_config.CopyFrom(_tax_config_out(workflow.default_tax_config))
    if workflow.collection_method is not None:
        message.payment.collection_method = workflow.collection_method.value
    if workflow.tax_enabled is not None:
        message.tax.enabled = workflow.tax_enabled
    if workflow.tax_enforced is not None:
        message.tax.enforced = workflow.tax_enforced
    if isinstance(workflow, WorkflowPatch):
        # Leave sections the patch does not touch out of the answer altogether.
        for section in ("collection", "invoicing", "payment", "tax"):
            if getattr(message, section).ByteSize() == 0:
                message.ClearField(section)
    return message


def supplier_in(message: pb.BillingParty, v: Violations) -> Supplier:
    if len(message.addresses) > 1:
        v.add("supplier.addresses", "at most one address", "too_many")
    address = address_from_proto(message.addresses[0]) if message.addresses else None
    return Supplier(
        name=optional_str(message, "name") or "",
        key=optional_str(message, "key"),
        tax_code=optional_str(message.tax_id, "code") if message.HasField("tax_id") else None,
        address=address or Address(),
    )


def supplier_out(supplier: Supplier) -> pb.BillingParty:
    message = pb.BillingParty(name=supplier.name, addresses=[customers_pb2.Address(**supplier.address.as_dict())])
    if supplier.key is not None:
        message.key = supplier.key
    if supplier.tax_code is not None:
        message.tax_id.code = supplier.tax_code
    return message


class BillingProfileServicer(billing_pb2_grpc.BillingProfileServiceServicer):
    def __init__(self, profiles: BillingProfileService, apps: AppService, request: RequestContext) -> None:
        self._profiles = profiles
        self._apps = apps
        self._request = request

    def _apps_out(self, refs: ProfileApps, resolved: ResolvedApps | None) -> pb.BillingProfileApps:
        if resolved is None:
            return pb.BillingProfileApps(
                tax=apps_pb2.App(id=refs.tax),
                invoicing=apps_pb2.App(id=refs.invoicing),
                payment=apps_pb2.App(id=refs.payment),
            )
        market = self._apps.marketplace
        return pb.BillingProfileApps(
            tax=app_to_proto(resolved.tax, market),
            invoicing=app_to_proto(resolved.invoicing, market),
            payment=app_to_proto(resolved.payment, market),
        )

    def _profile_out(self, view: ProfileView) -> pb.BillingProfile:
        profile = view.profile
        message = pb.BillingProfile(
            id=profile.id,
            name=profile.name,
            metadata=dict(profile.metadata),
            supplier=supplier_out(profile.supplier),
            workflow=workflow_out(profile.workflow),
            apps=self._apps_out(profile.apps, view.apps),
            default=profile.default,
        )
        if profile.description is not None:
            message.description = profile.description
        set_timestamp(message.created_at, profile.created_at)
        set_timestamp(message.updated_at, profile.updated_at)
        set_timestamp(message.deleted_at, profile.deleted_at)
        return message

    def _effective_out(self, effective: EffectiveProfile) -> pb.BillingProfileCustomerOverrideWithDetails:
        message = pb.BillingProfileCustomerOverrideWithDetails(
            base_billing_profile_id=effective.profile.id,
            customer_profile=pb.BillingCustomerProfile(
                supplier=supplier_out(effective.profile.supplier),
                workflow=workflow_out(effective.workflow),
                apps=self._apps_out(effective.profile.apps, effective.apps),
            ),
        )
        override = effective.override
        if override is not None:
            stored = message.customer_override
            # The customer's ID (OpenMeter answers the override's own ID here, a known bug).
            stored.customer_id = override.customer_id
            if override.profile_id is not None:
                stored.billing_profile_id = override.profile_id
            if not override.workflow.is_empty():
                stored.workflow.CopyFrom(workflow_out(override.workflow))
            set_timestamp(stored.created_at, override.created_at)
            set_timestamp(stored.updated_at, override.updated_at)
        if effective.customer is not None:
            message.customer.CopyFrom(customer_to_proto(effective.customer))
        return message

    async def ListBillingProfiles(
        self, request: pb.ListBillingProfilesRequest, context: Ctx
    ) -> pb.ListBillingProfilesResponse:
        data = ListProfilesInput(
            page=request.page if request.HasField("page") else None,
            page_size=request.page_size if request.HasField("page_size") else None,
            order=optional_str(request, "order"),
            order_by=optional_str(request, "order_by"),
            include_archived=request.include_archived,
            expand=list(request.expand),
        )
        views, total, page, size = await self._profiles.list_profiles(self._request.namespace(context), data)
        return pb.ListBillingProfilesResponse(
            total_count=total, page=page, page_size=size, items=[self._profile_out(v) for v in views]
        )

    async def CreateBillingProfile(self, request: pb.CreateBillingProfileRequest, context: Ctx) -> pb.BillingProfile:
        v = Violations()
        data = ProfileCreateInput(
            name=request.name,
            description=optional_str(request, "description"),
            metadata=dict(request.metadata),
            supplier=supplier_in(request.supplier, v),
            default=request.default,
            workflow=workflow_patch_in(request.workflow, v),
            apps=ProfileApps(tax=request.apps.tax, invoicing=request.apps.invoicing, payment=request.apps.payment),
        )
        v.raise_if_any()
        view = await self._profiles.create(self._request.namespace(context), data)
        await rest_hints(context, http_code=201)
        return self._profile_out(view)

    async def GetBillingProfile(self, request: pb.GetBillingProfileRequest, context: Ctx) -> pb.BillingProfile:
        v = Violations()
        expand = parse_expand(v, list(request.expand), ("apps",))
        v.raise_if_any()
        view = await self._profiles.get(
            self._request.namespace(context), request.profile_id, expand_apps=expand.get("apps", False)
        )
        return self._profile_out(view)

    async def UpdateBillingProfile(self, request: pb.UpdateBillingProfileRequest, context: Ctx) -> pb.BillingProfile:
        v = Violations()
        data = ProfileUpdateInput(
            name=request.name,
            description=optional_str(request, "description"),
            metadata=dict(request.metadata),
            supplier=supplier_in(request.supplier, v),
            default=request.default,
            workflow=workflow_patch_in(request.workflow, v),
        )
        v.raise_if_any()
        view = await self._profiles.update(self._request.namespace(context), request.profile_id, data)
        return self._profile_out(view)

    async def DeleteBillingProfile(self, request: pb.DeleteBillingProfileRequest, context: Ctx) -> empty_pb2.Empty:
        await self._profiles.delete(self._request.namespace(context), request.profile_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def ListBillingProfileCustomerOverrides(
        self, request: pb.ListBillingProfileCustomerOverridesRequest, context: Ctx
    ) -> pb.ListBillingProfileCustomerOverridesResponse:
        data = ListOverridesInput(
            page=request.page if request.HasField("page") else None,
            page_size=request.page_size if request.HasField("page_size") else None,
            order=optional_str(request, "order"),
            order_by=optional_str(request, "order_by"),
            billing_profile=list(request.billing_profile),
            include_all_customers=_opt_bool(request, "include_all_customers"),
            customers_without_pinned_profile=request.customers_without_pinned_profile,
            customer_id=list(request.customer_id),
            customer_name=optional_str(request, "customer_name"),
            customer_key=optional_str(request, "customer_key"),
            customer_primary_email=optional_str(request, "customer_primary_email"),
            expand=list(request.expand),
        )
        items, total, page, size = await self._profiles.list_overrides(self._request.namespace(context), data)
        return pb.ListBillingProfileCustomerOverridesResponse(
            total_count=total, page=page, page_size=size, items=[self._effective_out(e) for e in items]
        )

    async def UpsertBillingProfileCustomerOverride(
        self, request: pb.UpsertBillingProfileCustomerOverrideRequest, context: Ctx
    ) -> pb.BillingProfileCustomerOverrideWithDetails:
        v = Violations()
        data = OverrideUpsertInput(
            profile_id=optional_str(request, "billing_profile_id") or None,
            workflow=workflow_patch_in(request.workflow, v),
        )
        v.raise_if_any()
        effective = await self._profiles.upsert_override(self._request.namespace(context), request.customer_id, data)
        return self._effective_out(effective)

    async def GetBillingProfileCustomerOverride(
        self, request: pb.GetBillingProfileCustomerOverrideRequest, context: Ctx
    ) -> pb.BillingProfileCustomerOverrideWithDetails:
        effective = await self._profiles.get_override(
            self._request.namespace(context), request.customer_id, list(request.expand)
        )
        return self._effective_out(effective)

    async def DeleteBillingProfileCustomerOverride(
        self, request: pb.DeleteBillingProfileCustomerOverrideRequest, context: Ctx
    ) -> empty_pb2.Empty:
        await self._profiles.delete_override(self._request.namespace(context), request.customer_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()
