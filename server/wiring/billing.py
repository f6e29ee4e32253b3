"""Billing: apps and the marketplace, customer app data, billing profiles and customer overrides,
invoices (usage read from the event store in bulk) and custom invoicing's callbacks.

Every namespace gets its sandbox app and default profile on first use; the configured namespace
gets them at start, so they are there before the first request (as OpenMeter provisions them).
"""

from __future__ import annotations

from adapters.clickhouse.billing_usage import ClickHouseUsageSource
from adapters.postgres.billing import PostgresInvoiceNumbers, billing_unit_of_work
from adapters.postgres.features import PostgresFeatureRepository
from domain.billing.apps.registry import Marketplace
from domain.billing.invoice_service import InvoiceService
from domain.billing.service import AppService, BillingProfileService, CustomerAppService, Provisioner
from server.servicers.apps import AppServicer
from server.servicers.billing import BillingProfileServicer
from server.servicers.invoices import CustomInvoicingServicer, InvoiceServicer, invoice_json
from server.wiring import Deps, Servicer
from tally.v1 import apps_pb2_grpc, billing_pb2_grpc, invoices_pb2_grpc


async def wire(deps: Deps) -> list[Servicer]:
    uow = billing_unit_of_work(deps.sessions)
    numbers = PostgresInvoiceNumbers(deps.sessions)
    marketplace = Marketplace(numbers)
    provisioner = Provisioner(uow)
    customers = deps.services["customers"]
    apps = AppService(uow, marketplace, provisioner)
    profiles = BillingProfileService(uow, provisioner, customers, marketplace)
    customer_apps = CustomerAppService(uow, apps, profiles, customers)
    usage = ClickHouseUsageSource(
        deps.clickhouse, PostgresFeatureRepository(deps.sessions), deps.services["meter_repository"], customers
    )
    invoices = InvoiceService(uow, profiles, customers, marketplace, usage)
    notifications = deps.services.get("notifications")
    if notifications is not None:

        async def invoice_changed(namespace: str, invoice_id: str, created: bool) -> None:
            # invoice.created / invoice.updated rules, delivered by the notify worker's outbox.
            found = await invoices.get(namespace, invoice_id)
            await notifications.on_invoice(namespace, created, invoice_json(invoices, found))

        invoices.listeners.append(invoice_changed)
    await provisioner.ensure(deps.settings.namespace)
    deps.services.update(
        billing_unit_of_work=uow,
        invoice_numbers=numbers,
        billing_provisioner=provisioner,
        billing_apps=apps,
        billing_profiles=profiles,
        customer_apps=customer_apps,
        invoices=invoices,
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
        Servicer(
            invoices_pb2_grpc.add_InvoiceServiceServicer_to_server,
            InvoiceServicer(invoices, deps.request),
            "tally.v1.InvoiceService",
        ),
        Servicer(
            invoices_pb2_grpc.add_CustomInvoicingServiceServicer_to_server,
            CustomInvoicingServicer(invoices, deps.request),
            "tally.v1.CustomInvoicingService",
        ),
    ]
