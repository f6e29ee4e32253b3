"""PlanService, AddonService, PlanAddonService and CurrencyService: proto <-> domain.

Plans and add-ons travel as OpenMeter's JSON: a request message becomes the camelCase dict an
OpenMeter client sends (proto3 JSON names), which the domain reads and checks with field paths;
the domain's OpenMeter-shaped answer is read back into the response message. One reading of a
plan for REST and gRPC, and no field-by-field copy to keep in step with the proto.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2
from google.protobuf.message import Message

from domain.catalog import currencies
from domain.catalog.plan_service import AddonService, ListVersionsInput, Page, PlanAddonService, PlanService
from domain.errors import Violations
from server.context import RequestContext
from server.convert import message_from_dict, optional_str, request_dict
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from tally.v1 import catalog_pb2, catalog_pb2_grpc


def _opt_int(message: Message, name: str) -> int | None:
    return getattr(message, name) if message.HasField(name) else None


def _key_versions(request: Any) -> tuple[tuple[str, int], ...]:
    """`<key>:<version>` values (envoy/tally.lua writes OpenMeter's keyVersion[<key>]=<version> so)."""
    out: list[tuple[str, int]] = []
    v = Violations()
    for value in getattr(request, "key_version", ()):
        key, _, version = value.rpartition(":")
        if not key or not version.isdigit():
            v.add("keyVersion", f"{value!r}: expected keyVersion[<key>]=<version>, a whole number", "invalid_format")
            continue
        out.append((key, int(version)))
    v.raise_if_any()
    return tuple(out)


def _list_input(request: Any, any_of: bool = False) -> ListVersionsInput:
    return ListVersionsInput(
        ids=tuple(request.id),
        keys=tuple(request.key),
        statuses=tuple(getattr(request, "status", ())),
        currencies=tuple(getattr(request, "currency", ())),
        key_versions=_key_versions(request),
        any_of=any_of,
        include_deleted=request.include_deleted,
        page=_opt_int(request, "page"),
        page_size=_opt_int(request, "page_size"),
        order=optional_str(request, "order"),
        order_by=optional_str(request, "order_by"),
    )


def _page_fields(page: Page) -> dict[str, int]:
    return {"total_count": page.total_count, "page": page.page, "page_size": page.page_size}


class PlanServicer(catalog_pb2_grpc.PlanServiceServicer):
    def __init__(self, plans: PlanService, request: RequestContext) -> None:
        self._plans = plans
        self._request = request

    def _out(self, plan: Any) -> catalog_pb2.Plan:
        return message_from_dict(plan.rest(self._plans.now()), catalog_pb2.Plan())

    async def CreatePlan(self, request: catalog_pb2.CreatePlanRequest, context: Ctx) -> catalog_pb2.Plan:
        plan = await self._plans.create(self._request.namespace(context), request_dict(request.plan))
        await rest_hints(context, http_code=201)
        return self._out(plan)

    async def ListPlans(self, request: catalog_pb2.ListPlansRequest, context: Ctx) -> catalog_pb2.ListPlansResponse:
        page = await self._plans.list_plans(self._request.namespace(context), _list_input(request, any_of=True))
        return catalog_pb2.ListPlansResponse(items=[self._out(p) for p in page.items], **_page_fields(page))

    async def GetPlan(self, request: catalog_pb2.GetPlanRequest, context: Ctx) -> catalog_pb2.Plan:
        namespace = self._request.namespace(context)
        return self._out(await self._plans.get(namespace, request.plan_id, request.include_latest))

    async def UpdatePlan(self, request: catalog_pb2.UpdatePlanRequest, context: Ctx) -> catalog_pb2.Plan:
        namespace = self._request.namespace(context)
        return self._out(await self._plans.update(namespace, request.plan_id, request_dict(request.plan)))

    async def DeletePlan(self, request: catalog_pb2.DeletePlanRequest, context: Ctx) -> empty_pb2.Empty:
        await self._plans.delete(self._request.namespace(context), request.plan_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def PublishPlan(self, request: catalog_pb2.PublishPlanRequest, context: Ctx) -> catalog_pb2.Plan:
        return self._out(await self._plans.publish(self._request.namespace(context), request.plan_id))

    async def ArchivePlan(self, request: catalog_pb2.ArchivePlanRequest, context: Ctx) -> catalog_pb2.Plan:
        return self._out(await self._plans.archive(self._request.namespace(context), request.plan_id))

    async def NextPlan(self, request: catalog_pb2.NextPlanRequest, context: Ctx) -> catalog_pb2.Plan:
        plan = await self._plans.next_version(self._request.namespace(context), request.plan_id_or_key)
        await rest_hints(context, http_code=201)
        return self._out(plan)


class AddonServicer(catalog_pb2_grpc.AddonServiceServicer):
    def __init__(self, addons: AddonService, request: RequestContext) -> None:
        self._addons = addons
        self._request = request

    def _out(self, addon: Any) -> catalog_pb2.Addon:
        return message_from_dict(addon.rest(self._addons.now()), catalog_pb2.Addon())

    async def CreateAddon(self, request: catalog_pb2.CreateAddonRequest, context: Ctx) -> catalog_pb2.Addon:
        addon = await self._addons.create(self._request.namespace(context), request_dict(request.addon))
        await rest_hints(context, http_code=201)
        return self._out(addon)

    async def ListAddons(self, request: catalog_pb2.ListAddonsRequest, context: Ctx) -> catalog_pb2.ListAddonsResponse:
        page = await self._addons.list_addons(self._request.namespace(context), _list_input(request))
        return catalog_pb2.ListAddonsResponse(items=[self._out(a) for a in page.items], **_page_fields(page))

    async def GetAddon(self, request: catalog_pb2.GetAddonRequest, context: Ctx) -> catalog_pb2.Addon:
        namespace = self._request.namespace(context)
        return self._out(await self._addons.get(namespace, request.addon_id, request.include_latest))

    async def UpdateAddon(self, request: catalog_pb2.UpdateAddonRequest, context: Ctx) -> catalog_pb2.Addon:
        namespace = self._request.namespace(context)
        return self._out(await self._addons.update(namespace, request.addon_id, request_dict(request.addon)))

    async def DeleteAddon(self, request: catalog_pb2.DeleteAddonRequest, context: Ctx) -> empty_pb2.Empty:
        await self._addons.delete(self._request.namespace(context), request.addon_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def PublishAddon(self, request: catalog_pb2.PublishAddonRequest, context: Ctx) -> catalog_pb2.Addon:
        return self._out(await self._addons.publish(self._request.namespace(context), request.addon_id))

    async def ArchiveAddon(self, request: catalog_pb2.ArchiveAddonRequest, context: Ctx) -> catalog_pb2.Addon:
        return self._out(await self._addons.archive(self._request.namespace(context), request.addon_id))


class PlanAddonServicer(catalog_pb2_grpc.PlanAddonServiceServicer):
    def __init__(self, assignments: PlanAddonService, request: RequestContext) -> None:
        self._assignments = assignments
        self._request = request

    def _out(self, assignment: Any) -> catalog_pb2.PlanAddon:
        return message_from_dict(assignment.rest(self._assignments.now()), catalog_pb2.PlanAddon())

    async def CreatePlanAddon(self, request: catalog_pb2.CreatePlanAddonRequest, context: Ctx) -> catalog_pb2.PlanAddon:
        namespace = self._request.namespace(context)
        assignment = await self._assignments.create(namespace, request.plan_id, request_dict(request.plan_addon))
        await rest_hints(context, http_code=201)
        return self._out(assignment)

    async def ListPlanAddons(
        self, request: catalog_pb2.ListPlanAddonsRequest, context: Ctx
    ) -> catalog_pb2.ListPlanAddonsResponse:
        namespace = self._request.namespace(context)
        page = await self._assignments.list_for_plan(namespace, request.plan_id, _list_input(request))
        return catalog_pb2.ListPlanAddonsResponse(items=[self._out(a) for a in page.items], **_page_fields(page))

    async def GetPlanAddon(self, request: catalog_pb2.GetPlanAddonRequest, context: Ctx) -> catalog_pb2.PlanAddon:
        namespace = self._request.namespace(context)
        return self._out(await self._assignments.get(namespace, request.plan_id, request.plan_addon_id))

    async def UpdatePlanAddon(self, request: catalog_pb2.UpdatePlanAddonRequest, context: Ctx) -> catalog_pb2.PlanAddon:
        namespace = self._request.namespace(context)
        assignment = await self._assignments.update(
            namespace, request.plan_id, request.plan_addon_id, request_dict(request.plan_addon)
        )
        return self._out(assignment)

    async def DeletePlanAddon(self, request: catalog_pb2.DeletePlanAddonRequest, context: Ctx) -> empty_pb2.Empty:
        await self._assignments.delete(self._request.namespace(context), request.plan_id, request.plan_addon_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()


class CurrencyServicer(catalog_pb2_grpc.CurrencyServiceServicer):
    async def ListCurrencies(
        self, request: catalog_pb2.ListCurrenciesRequest, context: Ctx
    ) -> catalog_pb2.ListCurrenciesResponse:
        await rest_hints(context, shape="array")
        return catalog_pb2.ListCurrenciesResponse(
            items=[
                catalog_pb2.Currency(code=c.code, name=c.name, symbol=c.symbol, subunits=c.minor_units)
                for c in currencies.list_currencies()
            ]
        )
