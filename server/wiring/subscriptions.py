"""Subscriptions: plans applied to customers, and the entitlements they manage.

Wired after the catalog (plans) and entitlements (customers, the managed-entitlement API). A
customer with a live subscription cannot be deleted (the customers service asks before deleting).
The customer API is served from here, as its answers carry the customer's subscriptions in force.
"""

from __future__ import annotations

from adapters.postgres.subscriptions import PostgresSubscriptionRepository
from domain.subscriptions.catalog import CatalogRateCards
from domain.subscriptions.entitlements import EntitlementBridge
from domain.subscriptions.plans import CatalogAddons, CatalogPlans
from domain.subscriptions.service import SubscriptionService
from server.servicers.customers import CustomerServicer
from server.servicers.subscriptions import SubscriptionServicer
from server.wiring import Deps, Servicer
from tally.v1 import customers_pb2_grpc, subscriptions_pb2_grpc


async def wire(deps: Deps) -> list[Servicer]:
    customers = deps.services["customers"]
    rate_cards = CatalogRateCards()
    subscriptions = SubscriptionService(
        PostgresSubscriptionRepository(deps.sessions, rate_cards),
        CatalogPlans(deps.services["plans"]),
        customers,
        rate_cards,
        EntitlementBridge(deps.services["entitlements"], customers),
        addons=CatalogAddons(deps.services["addons"], deps.services["plan_addons"]),
    )
    # Subscriptions ask first: their message says what to do (cancel), the managed entitlements' would not.
    customers.delete_guards.insert(0, subscriptions.guard_customer_delete)
    customers.update_guards.append(subscriptions.guard_customer_update)
    deps.services["features"].archive_guards.append(subscriptions.guard_feature_archive)
    deps.services["subscriptions"] = subscriptions
    if not deps.has_role("api"):
        return []
    return [
        Servicer(
            customers_pb2_grpc.add_CustomerServiceServicer_to_server,
            CustomerServicer(customers, subscriptions, deps.request),
            "tally.v1.CustomerService",
        ),
        Servicer(
            subscriptions_pb2_grpc.add_SubscriptionServiceServicer_to_server,
            SubscriptionServicer(
                subscriptions, deps.request, deps.services["features"], deps.services["entitlements"], customers
            ),
            "tally.v1.SubscriptionService",
        ),
    ]
