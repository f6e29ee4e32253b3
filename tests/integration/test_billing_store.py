"""Billing's rules under concurrency, on real Postgres: provisioning from several processes at once,
racing default-profile changes, a profile deleted while an override pins it, invoice numbers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.billing import PostgresInvoiceNumbers, billing_unit_of_work
from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import create_engine, migrate, session_factory
from domain.billing.apps.models import AppType, InstallAppInput, ListAppsInput
from domain.billing.apps.registry import Marketplace
from domain.billing.models import (
    ListProfilesInput,
    OverrideUpsertInput,
    ProfileApps,
    ProfileCreateInput,
    Supplier,
)
from domain.billing.service import AppService, BillingProfileService, Provisioner
from domain.customers.models import Address, CustomerInput
from domain.customers.service import CustomerService
from domain.errors import ConflictError, NotFoundError, ValidationError
from tests.support.services import require
from tests.support.stack import create_database, postgres_available


@dataclass
class Billing:
    engine: AsyncEngine
    apps: AppService
    profiles: BillingProfileService
    customers: CustomerService
    numbers: PostgresInvoiceNumbers

    def fresh(self) -> tuple[AppService, BillingProfileService]:
        """Services as another process would have them (nothing provisioned in memory)."""
        sessions = session_factory(self.engine)
        uow = billing_unit_of_work(sessions)
        provisioner = Provisioner(uow)
        marketplace = Marketplace(self.numbers)
        return (
            AppService(uow, marketplace, provisioner),
            BillingProfileService(uow, provisioner, self.customers, marketplace),
        )


@pytest_asyncio.fixture(scope="module")
async def billing() -> AsyncIterator[Billing]:
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=10)
    sessions = session_factory(engine)
    customers = CustomerService(PostgresCustomerRepository(sessions))
    numbers = PostgresInvoiceNumbers(sessions)
    uow = billing_unit_of_work(sessions)
    provisioner = Provisioner(uow)
    marketplace = Marketplace(numbers)
    yield Billing(
        engine,
        AppService(uow, marketplace, provisioner),
        BillingProfileService(uow, provisioner, customers, marketplace),
        customers,
        numbers,
    )
    await engine.dispose()


async def test_provisioning_races_leave_one_sandbox_and_one_default(billing: Billing) -> None:
    namespace = "race_provisioning"
    services = [billing.fresh() for _ in range(6)]
    await asyncio.gather(*(apps.list_apps(namespace, ListAppsInput()) for apps, _ in services))
    apps, total, _, _ = await billing.apps.list_apps(namespace, ListAppsInput())
    assert total == 1 and apps[0].type is AppType.SANDBOX
    profiles, _, _, _ = await billing.profiles.list_profiles(namespace, ListProfilesInput())
    assert [p.profile.default for p in profiles] == [True]
    assert profiles[0].profile.apps.invoicing == apps[0].id


async def test_sandbox_installs_race_to_one(billing: Billing) -> None:
    namespace = "race_sandbox"
    default = await billing.profiles.get_default(namespace)
    # Free the sandbox: point the default elsewhere, drop the sandbox's profile, uninstall it.
    custom, _ = await billing.apps.install(namespace, InstallAppInput(type="custom_invoicing"))
    supplier = default.supplier
    await billing.profiles.create(
        namespace, ProfileCreateInput("New default", supplier, ProfileApps(custom.id, custom.id, custom.id), True)
    )
    await billing.profiles.delete(namespace, default.id)
    await billing.apps.uninstall(namespace, default.apps.invoicing)

    results = await asyncio.gather(
        *(apps.install(namespace, InstallAppInput(type="sandbox")) for apps, _ in [billing.fresh() for _ in range(5)]),
        return_exceptions=True,
    )
    installed = [r for r in results if not isinstance(r, BaseException)]
    conflicts = [r for r in results if isinstance(r, ConflictError)]
    assert len(installed) == 1 and len(conflicts) == 4, results
    apps, _, _, _ = await billing.apps.list_apps(namespace, ListAppsInput())
    assert sum(a.type is AppType.SANDBOX for a in apps) == 1


async def test_racing_defaults_leave_exactly_one(billing: Billing) -> None:
    namespace = "race_default"
    sandbox_id = (await billing.profiles.get_default(namespace)).apps.invoicing
    supplier = Supplier("Acme", Address(country="US"))

    async def make_default(i: int) -> object:
        _, profiles = billing.fresh()
        try:
            return await profiles.create(
                namespace, ProfileCreateInput(f"d{i}", supplier, ProfileApps(sandbox_id, sandbox_id, sandbox_id), True)
            )
        except ConflictError as exc:
            # A racer that lost answers 409 and changed nothing; the client retries.
            return exc

    await asyncio.gather(*(make_default(i) for i in range(6)))
    views, _, _, _ = await billing.profiles.list_profiles(namespace, ListProfilesInput(page_size=1000))
    assert sum(v.profile.default for v in views) == 1


async def test_profile_delete_and_override_pin_serialize(billing: Billing) -> None:
    namespace = "race_pin"
    sandbox_id = (await billing.profiles.get_default(namespace)).apps.invoicing
    supplier = Supplier("Acme", Address(country="US"))
    for round_ in range(5):
        view = await billing.profiles.create(
            namespace, ProfileCreateInput(f"p{round_}", supplier, ProfileApps(sandbox_id, sandbox_id, sandbox_id))
        )
        customer = await billing.customers.create(namespace, CustomerInput(name="c", key=f"pin_{round_}"))
        _, a = billing.fresh()
        _, b = billing.fresh()
        results = await asyncio.gather(
            a.delete(namespace, view.profile.id),
            b.upsert_override(namespace, customer.id, OverrideUpsertInput(profile_id=view.profile.id)),
            return_exceptions=True,
        )
        deleted_ok = not isinstance(results[0], BaseException)
        pinned_ok = not isinstance(results[1], BaseException)
        # Exactly one wins: a deleted profile is never pinned, a pinned one never deleted.
        assert deleted_ok != pinned_ok, results
        if deleted_ok:
            assert isinstance(results[1], NotFoundError)
        else:
            assert isinstance(results[0], ValidationError)
            effective = await billing.profiles.effective_profile(namespace, customer.id)
            assert effective.profile.id == view.profile.id and effective.profile.deleted_at is None


async def test_invoice_numbers_are_unique_under_concurrency(billing: Billing) -> None:
    values = await asyncio.gather(*(billing.numbers.next_number("numbers", "invoices/app/sandbox") for _ in range(30)))
    assert sorted(values) == list(range(1, 31))
    assert await billing.numbers.next_number("numbers", "invoices/custom-invoicing") == 1
    assert await billing.numbers.next_number("other", "invoices/app/sandbox") == 1
