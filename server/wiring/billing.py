"""Billing: apps and the marketplace, customer app data, billing profiles and customer overrides,
invoices (usage read from the event store in bulk) and custom invoicing's callbacks, the
subscription line sync, and the billing worker (`billing` role).

Every namespace gets its sandbox app and default profile on first use; the configured namespace
gets them at start, so they are there before the first request (as OpenMeter provisions them).
Wired after subscriptions: a subscription's writes sync its lines onto the gathering invoice in the
background (the worker's pass repairs a sync that failed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.clickhouse.billing_usage import ClickHouseUsageSource
from adapters.clickhouse.client import ClickHouse
from adapters.postgres.billing import PostgresInvoiceNumbers, billing_unit_of_work
from adapters.postgres.features import PostgresFeatureRepository
from adapters.postgres.meters import PostgresMeterRepository
from adapters.postgres.subscriptions import PostgresSubscriptionRepository
from domain.billing.apps.registry import Marketplace
from domain.billing.invoice_service import InvoiceService
from domain.billing.service import AppService, BillingProfileService, CustomerAppService, Provisioner
from domain.billing.subscription_sync import SubscriptionFeed, SubscriptionSync
from domain.customers.service import CustomerService
from domain.subscriptions.catalog import CatalogRateCards
from domain.subscriptions.models import Subscription
from server.config import BillingSettings
from server.servicers.apps import AppServicer
from server.servicers.billing import BillingProfileServicer
from server.servicers.invoices import CustomInvoicingServicer, InvoiceServicer, invoice_event_json
from server.wiring import Deps, Servicer
from tally.v1 import apps_pb2_grpc, billing_pb2_grpc, invoices_pb2_grpc
from workers.billing import Backoff, BillingWorker, EntitlementRepair

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Invoicing:
    """What invoicing is made of; the `billing` CLI builds the same outside the server."""

    profiles: BillingProfileService
    invoices: InvoiceService
    sync: SubscriptionSync


def invoicing(
    sessions: async_sessionmaker[AsyncSession],
    clickhouse: ClickHouse,
    customers: CustomerService,
    subscriptions: SubscriptionFeed,
    marketplace: Marketplace,
    provisioner: Provisioner | None = None,
) -> Invoicing:
    uow = billing_unit_of_work(sessions)
    profiles = BillingProfileService(uow, provisioner or Provisioner(uow), customers, marketplace)
    usage = ClickHouseUsageSource(
        clickhouse, PostgresFeatureRepository(sessions), PostgresMeterRepository(sessions), customers
    )
    invoices = InvoiceService(uow, profiles, customers, marketplace, usage)
    sync = SubscriptionSync(uow, profiles, subscriptions, drafts=invoices)
    invoices.bill_again = sync.bill_again
    return Invoicing(profiles, invoices, sync)


def billing_worker(
    settings: BillingSettings, parts: Invoicing, entitlements: EntitlementRepair | None = None
) -> BillingWorker:
    """The worker; `entitlements` (the subscription service, where entitlements are wired) lets its
    passes finish subscriptions' entitlement reconciliations that a write left unfinished."""
    return BillingWorker(
        parts.invoices,
        parts.sync,
        batch_size=settings.batch_size,
        concurrency=settings.concurrency,
        lease=timedelta(seconds=settings.lease_s),
        backoff=Backoff(timedelta(seconds=settings.retry_initial_s), timedelta(seconds=settings.retry_max_s)),
        poll_interval=timedelta(seconds=settings.poll_interval_s),
        sync_interval=timedelta(seconds=settings.sync_interval_s),
        late_usage_window=timedelta(seconds=settings.late_usage_window_s),
        entitlements=entitlements,
    )


class _SyncOnChange:
    """A subscription service listener (called synchronously after a write): syncs the
    subscription's lines in the background and wakes this process's billing worker."""

    def __init__(self, sync: SubscriptionSync) -> None:
        self._sync = sync
        self._pending: set[asyncio.Task[None]] = set()
        self.worker: BillingWorker | None = None

    def __call__(self, subscription: Subscription) -> None:
        task = asyncio.get_running_loop().create_task(self._run(subscription))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run(self, subscription: Subscription) -> None:
        try:
            await self._sync.sync(subscription)
        except Exception:
            log.exception(
                "syncing a subscription's invoice lines failed; the billing worker retries", id=subscription.id
            )
            return
        if self.worker is not None:
            self.worker.wake()

    async def drain(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=10)


async def wire(deps: Deps) -> list[Servicer]:
    uow = billing_unit_of_work(deps.sessions)
    numbers = PostgresInvoiceNumbers(deps.sessions)
    marketplace = Marketplace(numbers)
    provisioner = Provisioner(uow)
    customers = deps.services["customers"]
    apps = AppService(uow, marketplace, provisioner)
    subscriptions = deps.services["subscriptions"]
    # The sync reads subscriptions as stored (ended and deleted ones too), as the `billing` CLI does.
    feed = PostgresSubscriptionRepository(deps.sessions, CatalogRateCards())
    parts = invoicing(deps.sessions, deps.clickhouse, customers, feed, marketplace, provisioner)
    profiles = parts.profiles
    customer_apps = CustomerAppService(uow, apps, profiles, customers)
    invoices = parts.invoices
    # After the subscription and entitlement guards: a customer with open invoices is not deleted.
    customers.delete_guards.append(invoices.guard_customer_delete)
    notifications = deps.services.get("notifications")
    if notifications is not None:

        async def invoice_changed(namespace: str, invoice_id: str, created: bool) -> None:
            # invoice.created / invoice.updated rules, delivered by the notify worker's outbox.
            found = await invoices.get(namespace, invoice_id)
            await notifications.on_invoice(namespace, created, await invoice_event_json(invoices, apps, found))

        invoices.listeners.append(invoice_changed)
    await provisioner.ensure(deps.settings.namespace)
    on_change = _SyncOnChange(parts.sync)
    subscriptions.listeners.append(on_change)
    deps.stop_steps.append(on_change.drain)
    if deps.has_role("billing"):
        worker = billing_worker(deps.settings.billing, parts, subscriptions)
        await worker.start()
        on_change.worker = worker
        deps.stop_steps.append(worker.stop)
    deps.services.update(
        invoices=parts.invoices,
        subscription_sync=parts.sync,
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
        Servicer(
            invoices_pb2_grpc.add_InvoiceServiceServicer_to_server,
            InvoiceServicer(parts.invoices, apps, deps.request),
            "tally.v1.InvoiceService",
        ),
        Servicer(
            invoices_pb2_grpc.add_CustomInvoicingServiceServicer_to_server,
            CustomInvoicingServicer(parts.invoices, deps.request),
            "tally.v1.CustomInvoicingService",
        ),
    ]
