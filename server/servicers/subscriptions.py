"""SubscriptionService: proto <-> domain.

Requests map field by field onto the domain's inputs (rate cards and phases in customizations are
read by the catalog's parser, with OpenMeter's field paths); answers are the domain's
OpenMeter-shaped dicts (domain/subscriptions/wire.py) read into the response messages, as the
catalog servicers do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import empty_pb2, json_format
from ulid import ULID

from domain.catalog.service import FeatureService
from domain.customers.service import CustomerService
from domain.entitlements.models import Entitlement
from domain.entitlements.recurrence import IsoDuration
from domain.entitlements.service import EntitlementService, entitlement_rest
from domain.errors import NotFoundError, ValidationError, Violations
from domain.pagination import Pagination, SortOrder, parse_order, parse_order_by
from domain.subscriptions import edits
from domain.subscriptions.catalog import CatalogRateCards
from domain.subscriptions.models import (
    ChangeSubscriptionInput,
    CreateSubscriptionInput,
    PlanSelector,
    Subscription,
    SubscriptionAddon,
    Timing,
)
from domain.subscriptions.service import SubscriptionService
from domain.subscriptions.timeline import PhaseSpec
from domain.subscriptions.wire import addon_rest, expanded_rest, subscription_rest
from server.context import RequestContext
from server.convert import message_from_dict, optional_str, request_dict, timestamp_or_none
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from server.servicers.features import feature_to_proto
from tally.v1 import subscriptions_pb2, subscriptions_pb2_grpc

STATUSES = ("active", "inactive", "canceled", "scheduled")


def _holds(entitlement: Entitlement, feature_key: str, at: datetime) -> bool:
    return (
        entitlement.feature_key == feature_key
        and entitlement.active_from <= at
        and (entitlement.active_to is None or at < entitlement.active_to)
    )


def _duration(text: str | None, field: str, required: bool) -> IsoDuration | None:
    if not text:
        if required:
            raise ValidationError.single(field, "required", "required")
        return None
    return IsoDuration.parse(text, field)


def _selector(request: Any) -> PlanSelector | None:
    if not request.HasField("plan"):
        return None
    return PlanSelector(request.plan.key, request.plan.version if request.plan.HasField("version") else None)


class SubscriptionServicer(subscriptions_pb2_grpc.SubscriptionServiceServicer):
    def __init__(
        self,
        subscriptions: SubscriptionService,
        request: RequestContext,
        features: FeatureService,
        entitlements: EntitlementService,
        customers: CustomerService,
    ) -> None:
        self._subscriptions = subscriptions
        self._request = request
        self._features = features
        self._entitlements = entitlements
        self._customers = customers
        self._rate_cards = CatalogRateCards()

    def _sub(self, sub: Subscription) -> subscriptions_pb2.Subscription:
        return message_from_dict(subscription_rest(sub, self._subscriptions.now()), subscriptions_pb2.Subscription())

    async def _expanded(self, sub: Subscription, at: datetime | None = None) -> subscriptions_pb2.SubscriptionExpanded:
        """The expanded view as of `at` (now unless given): its status, current billing period,
        items in force and their entitlements' values. Edits never rewrite the past (an item in
        force is ended, not deleted), so the stored spec read at a past time is what was in force
        then; at a future time it is what is planned now."""
        now = at or self._subscriptions.now()
        data = expanded_rest(sub, now, self._rate_cards)
        await self._add_included(sub, data, now)
        return message_from_dict(data, subscriptions_pb2.SubscriptionExpanded())

    async def _add_included(self, sub: Subscription, data: dict[str, Any], now: datetime) -> None:
        """OpenMeter's SubscriptionItem.included on every item with a feature (in `items` and in
        `itemTimelines`): the feature, and the managed entitlement for the feature whose active
        time holds the item's start."""
        items = [i for phase in data["phases"] for i in phase["items"]]
        items += [i for phase in data["phases"] for versions in phase["itemTimelines"].values() for i in versions]
        items = [i for i in items if i.get("featureKey")]
        if not items:
            return
        features: dict[str, dict[str, Any]] = {}
        for key in {i["featureKey"] for i in items}:
            try:
                feature = await self._features.get(sub.namespace, key)
            except NotFoundError:
                continue
            features[key] = json_format.MessageToDict(feature_to_proto(feature))
        managed = await self._entitlements.managed_for(sub.namespace, sub.customer_id, sub.id)
        customer = await self._customers.get(sub.namespace, sub.customer_id) if managed else None
        for item in items:
            feature_json = features.get(item["featureKey"])
            if feature_json is None:
                continue
            included: dict[str, Any] = {"feature": feature_json}
            start = datetime.fromisoformat(item["activeFrom"])
            entitlement = next((e for e in managed if _holds(e, item["featureKey"], start)), None)
            if entitlement is not None and customer is not None:
                included["entitlement"] = entitlement_rest(entitlement, customer, now)
            # Read through the message, so that a timeline's item (a Struct) shows exactly what the
            # typed item does, defaults included.
            typed = message_from_dict(included, subscriptions_pb2.SubscriptionItemIncluded())
            item["included"] = json_format.MessageToDict(typed, always_print_fields_with_no_presence=True)

    async def CreateSubscription(
        self, request: subscriptions_pb2.CreateSubscriptionRequest, context: Ctx
    ) -> subscriptions_pb2.Subscription:
        data = CreateSubscriptionInput(
            namespace=self._request.namespace(context),
            plan=_selector(request),
            custom_plan=request_dict(request.custom_plan) if request.HasField("custom_plan") else None,
            customer_id=request.customer_id or None,
            customer_key=request.customer_key or None,
            timing=Timing.parse(optional_str(request, "timing")),
            billing_anchor=timestamp_or_none(request, "billing_anchor"),
            starting_phase=optional_str(request, "starting_phase"),
            name=optional_str(request, "name"),
            description=optional_str(request, "description"),
            metadata=dict(request.metadata),
            settlement_mode=optional_str(request, "settlement_mode"),
            cost_basis_mode=optional_str(request, "cost_basis_mode"),
        )
        created = await self._subscriptions.create(data)
        await rest_hints(context, http_code=201)
        return self._sub(created)

    async def GetSubscription(
        self, request: subscriptions_pb2.GetSubscriptionRequest, context: Ctx
    ) -> subscriptions_pb2.SubscriptionExpanded:
        sub = await self._subscriptions.get(self._request.namespace(context), request.subscription_id)
        # OpenMeter answers 501 for `at`; Tally answers the subscription as of then (it was ignored).
        return await self._expanded(sub, timestamp_or_none(request, "at"))

    def _operation(self, index: int, op: subscriptions_pb2.SubscriptionEditOperation) -> edits.EditOperation:
        path = f"customizations[{index}]"
        phase_key = optional_str(op, "phase_key")
        kind = op.op
        if kind in ("add_item", "remove_item", "remove_phase", "stretch_phase") and not phase_key:
            raise ValidationError.single(f"{path}.phaseKey", "required", "required")
        if kind == "add_item":
            if not op.HasField("rate_card"):
                raise ValidationError.single(f"{path}.rateCard", "required", "required")
            card = self._rate_cards.parse(request_dict(op.rate_card), f"{path}.rateCard")
            return edits.AddItem(phase_key or "", card, str(ULID()))
        if kind == "remove_item":
            item_key = optional_str(op, "item_key")
            if not item_key:
                raise ValidationError.single(f"{path}.itemKey", "required", "required")
            return edits.RemoveItem(phase_key or "", item_key)
        if kind == "add_phase":
            if not op.HasField("phase"):
                raise ValidationError.single(f"{path}.phase", "required", "required")
            p = op.phase
            if not p.key or not p.name:
                raise ValidationError.single(f"{path}.phase.key", "key and name are required", "required")
            start_after = _duration(optional_str(p, "start_after"), f"{path}.phase.startAfter", False) or IsoDuration()
            duration = _duration(optional_str(p, "duration"), f"{path}.phase.duration", False)
            return edits.AddPhase(
                PhaseSpec(str(ULID()), p.key, p.name, start_after, (), optional_str(p, "description"), duration)
            )
        if kind == "remove_phase":
            return edits.RemovePhase(phase_key or "", optional_str(op, "shift") or "")
        if kind == "stretch_phase":
            text = optional_str(op, "extend_by") or ""
            negative = text.startswith("-")
            extend = _duration(text.lstrip("-"), f"{path}.extendBy", True)
            assert extend is not None
            return edits.StretchPhase(phase_key or "", extend, negative)
        if kind == "unschedule_edit":
            return edits.UnscheduleEdit()
        raise ValidationError.single(
            f"{path}.op",
            "must be one of add_item, remove_item, add_phase, remove_phase, stretch_phase, unschedule_edit",
            "invalid_enum",
        )

    async def EditSubscription(
        self, request: subscriptions_pb2.EditSubscriptionRequest, context: Ctx
    ) -> subscriptions_pb2.Subscription:
        if len(request.customizations) > edits.MAX_CUSTOMIZATIONS:
            raise ValidationError.single(
                "customizations", f"at most {edits.MAX_CUSTOMIZATIONS} operations", "too_many_customizations"
            )
        operations = [self._operation(i, op) for i, op in enumerate(request.customizations)]
        timing = Timing.parse(optional_str(request, "timing"))
        sub = await self._subscriptions.edit(
            self._request.namespace(context), request.subscription_id, operations, timing
        )
        return self._sub(sub)

    async def DeleteSubscription(
        self, request: subscriptions_pb2.DeleteSubscriptionRequest, context: Ctx
    ) -> empty_pb2.Empty:
        await self._subscriptions.delete(self._request.namespace(context), request.subscription_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def CancelSubscription(
        self, request: subscriptions_pb2.CancelSubscriptionRequest, context: Ctx
    ) -> subscriptions_pb2.Subscription:
        timing = Timing.parse(optional_str(request, "timing"))
        sub = await self._subscriptions.cancel(self._request.namespace(context), request.subscription_id, timing)
        return self._sub(sub)

    async def UnscheduleCancelation(
        self, request: subscriptions_pb2.UnscheduleCancelationRequest, context: Ctx
    ) -> subscriptions_pb2.Subscription:
        namespace = self._request.namespace(context)
        return self._sub(await self._subscriptions.unschedule_cancelation(namespace, request.subscription_id))

    async def RestoreSubscription(
        self, request: subscriptions_pb2.RestoreSubscriptionRequest, context: Ctx
    ) -> subscriptions_pb2.Subscription:
        namespace = self._request.namespace(context)
        return self._sub(await self._subscriptions.restore(namespace, request.subscription_id))

    async def _change_response(
        self, result: tuple[Subscription, Subscription]
    ) -> subscriptions_pb2.SubscriptionChangeResponse:
        current, following = result
        return subscriptions_pb2.SubscriptionChangeResponse(
            current=self._sub(current), next=await self._expanded(following)
        )

    async def ChangeSubscription(
        self, request: subscriptions_pb2.ChangeSubscriptionRequest, context: Ctx
    ) -> subscriptions_pb2.SubscriptionChangeResponse:
        if request.HasField("plan") == request.HasField("custom_plan"):
            raise ValidationError.single("plan", "give either plan {key, version?} or customPlan", "required")
        data = ChangeSubscriptionInput(
            namespace=self._request.namespace(context),
            subscription_id=request.subscription_id,
            plan=_selector(request),
            custom_plan=request_dict(request.custom_plan) if request.HasField("custom_plan") else None,
            timing=Timing.parse(request.timing, default=None),
            billing_anchor=timestamp_or_none(request, "billing_anchor"),
            starting_phase=optional_str(request, "starting_phase"),
            name=optional_str(request, "name"),
            description=optional_str(request, "description"),
            metadata=dict(request.metadata) or None,
            settlement_mode=optional_str(request, "settlement_mode"),
            cost_basis_mode=optional_str(request, "cost_basis_mode"),
        )
        return await self._change_response(await self._subscriptions.change(data))

    async def MigrateSubscription(
        self, request: subscriptions_pb2.MigrateSubscriptionRequest, context: Ctx
    ) -> subscriptions_pb2.SubscriptionChangeResponse:
        namespace = self._request.namespace(context)
        current = await self._subscriptions.get(namespace, request.subscription_id)
        if current.plan is None:
            raise ValidationError.single("subscriptionId", "a subscription without a plan cannot migrate", "no_plan")
        version = request.target_version if request.HasField("target_version") else None
        if version is not None and version < 1:
            raise ValidationError.single("targetVersion", "must be at least 1", "out_of_range")
        data = ChangeSubscriptionInput(
            namespace=namespace,
            subscription_id=request.subscription_id,
            plan=PlanSelector(current.plan.key, version),
            timing=Timing.parse(optional_str(request, "timing")),
            billing_anchor=timestamp_or_none(request, "billing_anchor"),
            starting_phase=optional_str(request, "starting_phase"),
            # A migration keeps what the subscription is called (OpenMeter's Migrate passes them on).
            name=current.name,
            description=current.description,
            metadata=current.metadata,
            # And its cost basis mode (OpenMeter's Migrate passes the subscription's on).
            cost_basis_mode=current.cost_basis_mode,
        )
        return await self._change_response(await self._subscriptions.change(data, migrate=True))

    async def ListCustomerSubscriptions(
        self, request: subscriptions_pb2.ListCustomerSubscriptionsRequest, context: Ctx
    ) -> subscriptions_pb2.ListSubscriptionsResponse:
        for index, status in enumerate(request.status):
            if status not in STATUSES:
                raise ValidationError.single(
                    f"status[{index}]", f"must be one of {', '.join(STATUSES)}", "invalid_enum"
                )
        namespace = self._request.namespace(context)
        subs = await self._subscriptions.list_for_customer(namespace, request.customer_id_or_key)
        now = self._subscriptions.now()
        if request.status:
            subs = [s for s in subs if s.status(now) in request.status]
        problems = Violations()
        order_by = parse_order_by(optional_str(request, "order_by"), ("activeFrom", "activeTo"), "activeFrom", problems)
        problems.raise_if_any()
        far = now.replace(year=9999)
        key = (lambda s: (s.active_from, s.id)) if order_by == "activeFrom" else (lambda s: (s.active_to or far, s.id))
        # Newest first unless asked otherwise, as OpenMeter's listCustomerSubscriptions.
        order = optional_str(request, "order") or SortOrder.DESC.value
        subs.sort(key=key, reverse=parse_order(order) is SortOrder.DESC)
        pagination = Pagination(
            request.page if request.HasField("page") else None,
            request.page_size if request.HasField("page_size") else None,
        ).validate()
        chunk = pagination.apply(subs)
        return subscriptions_pb2.ListSubscriptionsResponse(
            items=[self._sub(s) for s in chunk],
            total_count=len(subs),
            page=pagination.effective_page,
            page_size=pagination.effective_page_size,
        )

    def _addon(self, sub: Subscription, addon: SubscriptionAddon) -> subscriptions_pb2.SubscriptionAddon:
        data = addon_rest(sub, addon, self._subscriptions.now(), self._rate_cards)
        return message_from_dict(data, subscriptions_pb2.SubscriptionAddon())

    async def CreateSubscriptionAddon(
        self, request: subscriptions_pb2.CreateSubscriptionAddonRequest, context: Ctx
    ) -> subscriptions_pb2.SubscriptionAddon:
        body = request.addon_create
        if not body.addon.id:
            raise ValidationError.single("addon.id", "required", "required")
        if not body.name:
            raise ValidationError.single("name", "required", "required")
        namespace = self._request.namespace(context)
        timing = Timing.parse(body.timing, default=None)
        current = await self._subscriptions.get(namespace, request.subscription_id)
        held = next((a for a in current.addons if a.addon_id == body.addon.id), None)
        if held is not None:
            # An add-on the subscription has: its quantity is changed, as OpenMeter's create handler
            # does "as a convenience" (name, description and metadata are left as they are there
            # too). Answered 201 all the same: the SDKs check the code exactly.
            sub, addon = await self._subscriptions.update_addon(
                namespace, request.subscription_id, held.id, body.quantity, timing
            )
        else:
            sub, addon = await self._subscriptions.create_addon(
                namespace,
                request.subscription_id,
                body.addon.id,
                body.quantity,
                timing,
                name=body.name,
                description=optional_str(body, "description"),
                metadata=dict(body.metadata),
            )
        await rest_hints(context, http_code=201)
        return self._addon(sub, addon)

    async def ListSubscriptionAddons(
        self, request: subscriptions_pb2.ListSubscriptionAddonsRequest, context: Ctx
    ) -> subscriptions_pb2.ListSubscriptionAddonsResponse:
        sub = await self._subscriptions.get(self._request.namespace(context), request.subscription_id)
        await rest_hints(context, shape="array")
        return subscriptions_pb2.ListSubscriptionAddonsResponse(items=[self._addon(sub, a) for a in sub.addons])

    async def GetSubscriptionAddon(
        self, request: subscriptions_pb2.GetSubscriptionAddonRequest, context: Ctx
    ) -> subscriptions_pb2.SubscriptionAddon:
        sub = await self._subscriptions.get(self._request.namespace(context), request.subscription_id)
        return self._addon(sub, self._subscriptions.find_addon(sub, request.subscription_addon_id))

    async def UpdateSubscriptionAddon(
        self, request: subscriptions_pb2.UpdateSubscriptionAddonRequest, context: Ctx
    ) -> subscriptions_pb2.SubscriptionAddon:
        body = request.addon_update
        sub, addon = await self._subscriptions.update_addon(
            self._request.namespace(context),
            request.subscription_id,
            request.subscription_addon_id,
            body.quantity if body.HasField("quantity") else None,
            Timing.parse(optional_str(body, "timing")),
            name=optional_str(body, "name"),
            description=optional_str(body, "description"),
            metadata=dict(body.metadata) or None,
        )
        return self._addon(sub, addon)
