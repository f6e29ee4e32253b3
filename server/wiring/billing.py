"""Billing: apps and the marketplace, customer app data, billing profiles and customer overrides.

Every namespace gets its sandbox app and default profile on first use; the configured namespace
gets them at start, so they are there before the first request (as OpenMeter provisions them).
"""

from __future__ import annotations

from adapters.postgres.billing import PostgresInvoiceNumbers, billing_unit_of_work
from domain.billing.apps.registry import Marketplace
from domain.billing.service import AppService, BillingProfileService, CustomerAppService, Provisioner
from server.servicers.apps import AppServicer
from server.servicers.billing import BillingProfileServicer
from server.wiring import Deps, Servicer
from tally.v1 import apps_pb2_grpc, billing_pb2_grpc


async def wire(deps: Deps) -> list[Servicer]:
    uow = billing_unit_of_work(deps.sessions)
    numbers = PostgresInvoiceNumbers(deps.sessions)
    marketplace = Marketplace(numbers)
    provisioner = Provisioner(uow)
    customers = deps.services["customers"]
    apps = AppService(uow, marketplace, provisioner)
    profiles = BillingProfileService(uow, provisioner, customers, marketplace)
    customer_apps = CustomerAppService(uow, apps, profiles, customers)
    await provisioner.ensure(deps.settings.namespace)
    deps.services.update(
        billing_unit_of_work=uow,
        invoice_numbers=numbers,
        billing_provisioner=provisioner,
        billing_apps=apps,
        billing_profiles=profiles,
        customer_apps=customer_apps,
    )
    if not deps.has_role("api"):
        return []
    return [
        Servicer(
            apps_pb2_grpc.add_AppServiceServicer_to_server,
            AppServicer(apps, customer_apps, deps.request),
            "tally.v1.AppService",
        ),
        Servicer(
            billing_pb2_grpc.add_BillingProfileServiceServicer_to_server,
            BillingProfileServicer(profiles, apps, deps.request),
            "tally.v1.BillingProfileService",
        ),
    ]
