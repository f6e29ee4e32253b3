"""`PlanSource` over the catalog's plan service."""

from __future__ import annotations

from domain.catalog.plan_service import ListVersionsInput, PlanService
from domain.catalog.plans import PlanStatus
from domain.errors import NotFoundError, ValidationError
from domain.subscriptions.catalog import plan_view
from domain.subscriptions.models import PlanRef
from domain.subscriptions.ports import PlanView


class CatalogPlans:
    """`PlanSource` over the catalog's plan service: a published version (active, or archived when
    asked for by number, as a migration back may need), never a draft."""

    def __init__(self, plans: PlanService) -> None:
        self._plans = plans

    async def active_plan(self, namespace: str, key: str, version: int | None) -> PlanView:
        if version is None:
            return plan_view(await self._plans.get(namespace, key))
        page = await self._plans.list_plans(namespace, ListVersionsInput(keys=(key,), page_size=1000))
        for plan in page.items:
            if plan.version == version:
                if plan.status(self._plans.now()) not in (PlanStatus.ACTIVE, PlanStatus.ARCHIVED):
                    raise ValidationError.single(
                        "plan.version", f"version {version} of plan {key!r} is not published", "plan_not_published"
                    )
                return plan_view(plan)
        raise NotFoundError("plan", f"{key} version {version}")

    async def plans_by_key(self, namespace: str, key: str) -> list[PlanRef]:
        page = await self._plans.list_plans(namespace, ListVersionsInput(keys=(key,), page_size=1000))
        return [PlanRef(p.id, p.key, p.version) for p in page.items]
