"""Plans, add-ons, plan add-ons and currencies (the product catalog's prices; features are wired
with entitlements). Exposes the services to areas wired after it (subscriptions, billing)."""

from __future__ import annotations

from adapters.postgres.catalog import PostgresAddonRepository, PostgresPlanAddonRepository, PostgresPlanRepository
from adapters.postgres.features import PostgresFeatureRepository
from domain.catalog.plan_service import AddonService, PlanAddonService, PlanService
from server.servicers.catalog import AddonServicer, CurrencyServicer, PlanAddonServicer, PlanServicer
from server.wiring import Deps, Servicer
from tally.v1 import catalog_pb2_grpc


async def wire(deps: Deps) -> list[Servicer]:
    sessions = deps.sessions
    features = PostgresFeatureRepository(sessions)
    plan_repository = PostgresPlanRepository(sessions)
    addon_repository = PostgresAddonRepository(sessions)
    assignments = PostgresPlanAddonRepository(sessions)
    plans = PlanService(plan_repository, features, assignments, addon_repository)
    addons = AddonService(addon_repository, features, assignments)
    plan_addons = PlanAddonService(assignments, plans, addons)
    deps.services["features"].archive_guards.append(plans.guard_feature_archive)
    deps.services.update(plans=plans, addons=addons, plan_addons=plan_addons)
    if not deps.has_role("api"):
        return []
    return [
        Servicer(
            catalog_pb2_grpc.add_PlanServiceServicer_to_server,
            PlanServicer(plans, deps.request),
            "tally.v1.PlanService",
        ),
        Servicer(
            catalog_pb2_grpc.add_AddonServiceServicer_to_server,
            AddonServicer(addons, deps.request),
            "tally.v1.AddonService",
        ),
        Servicer(
            catalog_pb2_grpc.add_PlanAddonServiceServicer_to_server,
            PlanAddonServicer(plan_addons, deps.request),
            "tally.v1.PlanAddonService",
        ),
        Servicer(
            catalog_pb2_grpc.add_CurrencyServiceServicer_to_server, CurrencyServicer(), "tally.v1.CurrencyService"
        ),
    ]
