"""`PlanSource` and `AddonSource` over the catalog's services."""

from __future__ import annotations

from typing import Any

from domain.catalog.addons import AddonStatus
from domain.catalog.plan_service import AddonService, ListVersionsInput, PlanAddonService, PlanService
from domain.catalog.plans import PlanStatus
from domain.errors import ValidationError
from domain.subscriptions.addons import AddonOffer
from domain.subscriptions.catalog import card_of, content_view, plan_view
from domain.subscriptions.models import PlanRef
from domain.subscriptions.ports import PlanView
from domain.subscriptions.timeline import TimelineRateCard


class CatalogPlans:
    """`PlanSource` over the catalog's plan service: a published version (active, or archived when
    asked for by number, as a migration back may need), never a draft."""

    def __init__(self, plans: PlanService) -> None:
        self._plans = plans

    async def active_plan(self, namespace: str, key: str, version: int | None) -> PlanView:
        if version is None:
            return plan_view(await self._plans.get(namespace, key))
        plan = await self._plans.get_version(namespace, key, version)
        if plan.status(self._plans.now()) not in (PlanStatus.ACTIVE, PlanStatus.ARCHIVED):
            raise ValidationError.single(
                "plan.version", f"version {version} of plan {key!r} is not published", "plan_not_published"
            )
        return plan_view(plan)

    async def custom_plan(self, namespace: str, body: dict[str, Any]) -> PlanView:
        return content_view(await self._plans.check_custom(namespace, body), None)

    async def check_rate_card(self, namespace: str, rate_card: TimelineRateCard, path: str) -> None:
        await self._plans.check_rate_card(namespace, card_of(rate_card), path)


class CatalogAddons:
    """`AddonSource` over the catalog: the add-on (a published version) and the plan add-on that
    offers it on the subscription's plan version. The plan add-on names one add-on version, the one
    checked against the plan (currency, cadences, rate card keys): only that version is offered,
    as OpenMeter looks the plan add-on up by the add-on's ID."""

    def __init__(self, addons: AddonService, plan_addons: PlanAddonService) -> None:
        self._addons = addons
        self._plan_addons = plan_addons

    async def offer(self, namespace: str, plan: PlanRef, addon_id: str, purchase: bool = True) -> AddonOffer:
        addon = await self._addons.get(namespace, addon_id)
        if purchase and addon.status(self._addons.now()) is not AddonStatus.ACTIVE:
            raise ValidationError.single("addon.id", f"add-on {addon_id} is not published", "addon_not_active")
        page = await self._plan_addons.list_for_plan(namespace, plan.id, ListVersionsInput(page_size=1000))
        for offered in page.items:
            if offered.record.addon_id == addon.id and offered.record.deleted_at is None:
                content = addon.content
                return AddonOffer(
                    addon_id=addon.id,
                    key=addon.key,
                    version=addon.version,
                    instance_type=content.instance_type.value,
                    name=content.name,
                    rate_cards=content.rate_cards,
                    from_plan_phase=offered.record.content.from_plan_phase,
                    max_quantity=offered.record.content.max_quantity,
                )
        raise ValidationError.single(
            "addon.id", f"plan {plan.key} v{plan.version} does not offer add-on {addon.key!r}", "addon_not_offered"
        )
