"""Billing's use cases: apps and the marketplace, customer app data, billing profiles and customer
overrides, and each namespace's defaults (a sandbox app and a default profile using it).

`BillingProfileService.effective_profile` is what invoicing reads: the customer's profile, apps and
merged workflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog
from ulid import ULID

from domain.billing.apps.models import (
    App,
    AppType,
    CapabilityType,
    CustomerAppData,
    CustomerAppDataInput,
    CustomerAppEntry,
    CustomInvoicingSettings,
    InstallAppInput,
    InstallMethod,
    ListAppsInput,
    Listing,
    UpdateAppInput,
    parse_app_type,
)
from domain.billing.apps.port import InvoicingApp
from domain.billing.apps.registry import Marketplace
from domain.billing.models import (
    CustomerOverride,
    EffectiveProfile,
    ListOverridesInput,
    ListProfilesInput,
    OverrideUpsertInput,
    Profile,
    ProfileApps,
    ProfileCreateInput,
    ProfileUpdateInput,
    ProfileView,
    ResolvedApps,
    Supplier,
    Workflow,
    default_profile_input,
    parse_expand,
)
from domain.billing.ports import BillingStore, CustomerLookup, UnitOfWork
from domain.customers.models import Address, Customer
from domain.errors import (
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    ValidationError,
    Violations,
    again_on_conflict,
)
from domain.pagination import MAX_PAGE_SIZE, Pagination

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

# The capability each profile slot needs from its app.
_SLOT_CAPABILITY = {
    "tax": CapabilityType.CALCULATE_TAX,
    "invoicing": CapabilityType.INVOICE_CUSTOMERS,
    "payment": CapabilityType.COLLECT_PAYMENTS,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _page(page: int | None, page_size: int | None) -> Pagination:
    return Pagination(page=page, page_size=page_size).validate()


def _window(pagination: Pagination) -> tuple[int, int]:
    size = pagination.effective_page_size
    return (pagination.effective_page - 1) * size, size


class Provisioner:
    """Each namespace's defaults: the sandbox app and a default profile using it (OpenMeter provisions
    both for a namespace before it is used). Idempotent and safe under concurrency: the stores'
    unique indexes make a racing second writer fail, and it then finds the first one's rows."""

    def __init__(self, uow: UnitOfWork, clock: Clock = utcnow) -> None:
        self._uow = uow
        self._clock = clock
        self._ready: set[str] = set()

    async def ensure(self, namespace: str) -> None:
        if namespace in self._ready:
            return
        await again_on_conflict(lambda: self._provision(namespace), attempts=3)
        self._ready.add(namespace)

    async def _provision(self, namespace: str) -> None:
        async with self._uow() as tx:
            if await tx.profiles.get_default(namespace) is not None:
                return
            sandboxes, _ = await tx.apps.list_apps(namespace, 0, 1, AppType.SANDBOX)
            now = self._clock()
            if sandboxes:
                sandbox = sandboxes[0]
            else:
                sandbox = App(str(ULID()), namespace, AppType.SANDBOX, "Sandbox", now, now)
                await tx.apps.insert(sandbox)
            spec = default_profile_input(sandbox.id)
            await tx.profiles.insert(_new_profile(namespace, spec, spec.validate(), now))
            await tx.commit()
            log.info("provisioned billing defaults", namespace=namespace, sandbox_app=sandbox.id)


def _new_profile(namespace: str, spec: ProfileCreateInput, workflow: Workflow, now: datetime) -> Profile:
    return Profile(
        id=str(ULID()),
        namespace=namespace,
        name=spec.name,
        description=spec.description,
        metadata=dict(spec.metadata),
        supplier=spec.supplier,
        workflow=workflow,
        apps=spec.apps,
        default=spec.default,
        created_at=now,
        updated_at=now,
    )


async def _live_app(tx: BillingStore, namespace: str, app_id: str, *, lock: bool = False) -> App:
    app = await tx.apps.get(namespace, app_id, lock=lock)
    if app is None or app.deleted_at is not None:
        raise NotFoundError("app", app_id)
    return app


async def _resolve_apps(tx: BillingStore, profile: Profile) -> ResolvedApps:
    apps = {app_id: await tx.apps.get(profile.namespace, app_id) for app_id in profile.apps.ids()}
    for app_id, app in apps.items():
        if app is None:
            raise NotFoundError("app", app_id)

    def pick(app_id: str) -> App:
        found = apps[app_id]
        assert found is not None
        return found

    return ResolvedApps(
        tax=pick(profile.apps.tax), invoicing=pick(profile.apps.invoicing), payment=pick(profile.apps.payment)
    )


class _Lookups:
    """Profiles and their apps read once per unit of work."""

    def __init__(self, tx: BillingStore, namespace: str) -> None:
        self.tx = tx
        self.namespace = namespace
        self._profiles: dict[str, Profile | None] = {}
        self._apps: dict[str, ResolvedApps] = {}
        self._default: Profile | None = None

    async def default(self) -> Profile | None:
        if self._default is None:
            self._default = await self.tx.profiles.get_default(self.namespace)
        return self._default

    async def prefetch(self, profile_ids: Sequence[str]) -> None:
        wanted = [i for i in dict.fromkeys(profile_ids) if i not in self._profiles]
        found = {p.id: p for p in await self.tx.profiles.get_many(self.namespace, wanted)}
        for profile_id in wanted:
            self._profiles[profile_id] = found.get(profile_id)

    async def profile(self, profile_id: str) -> Profile | None:
        if profile_id not in self._profiles:
            self._profiles[profile_id] = await self.tx.profiles.get(self.namespace, profile_id)
        return self._profiles[profile_id]

    async def apps(self, profile: Profile) -> ResolvedApps:
        if profile.id not in self._apps:
            self._apps[profile.id] = await _resolve_apps(self.tx, profile)
        return self._apps[profile.id]


class AppService:
    def __init__(
        self,
        uow: UnitOfWork,
        marketplace: Marketplace,
        provisioner: Provisioner,
        clock: Clock = utcnow,
    ) -> None:
        self._uow = uow
        self._marketplace = marketplace
        self._provisioner = provisioner
        self._clock = clock

    @property
    def marketplace(self) -> Marketplace:
        return self._marketplace

    def bind(self, app: App) -> InvoicingApp:
        """The app's code (the port) for a stored app."""
        return self._marketplace.bind(app)

    def list_listings(self, page: int | None, page_size: int | None) -> tuple[list[Listing], int, int, int]:
        pagination = _page(page, page_size)
        listings = self._marketplace.listings()
        offset, limit = _window(pagination)
        return (
            listings[offset : offset + limit],
            len(listings),
            pagination.effective_page,
            pagination.effective_page_size,
        )

    def get_listing(self, app_type: str) -> Listing:
        return self._marketplace.entry(parse_app_type(app_type)).listing

    async def list_apps(self, namespace: str, data: ListAppsInput) -> tuple[list[App], int, int, int]:
        await self._provisioner.ensure(namespace)
        pagination = _page(data.page, data.page_size)
        offset, limit = _window(pagination)
        async with self._uow() as tx:
            apps, total = await tx.apps.list_apps(namespace, offset, limit)
        return apps, total, pagination.effective_page, pagination.effective_page_size

    async def get_app(self, namespace: str, app_id: str) -> App:
        """An app, uninstalled ones too (with their `deleted_at`), as OpenMeter answers them: an
        invoice or a profile may still name an uninstalled app. Only changes need it installed."""
        await self._provisioner.ensure(namespace)
        async with self._uow() as tx:
            app = await tx.apps.get(namespace, app_id)
        if app is None:
            raise NotFoundError("app", app_id)
        return app

    async def update_app(self, namespace: str, app_id: str, data: UpdateAppInput) -> App:
        await self._provisioner.ensure(namespace)
        async with self._uow() as tx:
            app = await _live_app(tx, namespace, app_id, lock=True)
            data.validate(app)
            if data.secret_api_key is not None:
                raise ValidationError.single("secretAPIKey", "only a Stripe app has an API key", "not_applicable")
            settings = app.custom_invoicing
            if app.type is AppType.CUSTOM_INVOICING:
                assert data.enable_draft_sync_hook is not None and data.enable_issuing_sync_hook is not None
                settings = CustomInvoicingSettings(data.enable_draft_sync_hook, data.enable_issuing_sync_hook)
            updated = dataclasses.replace(
                app,
                name=data.name,
                description=data.description,
                metadata=dict(data.metadata or {}),
                custom_invoicing=settings,
                updated_at=self._clock(),
            )
            await tx.apps.update(updated)
            await tx.commit()
        return updated

    async def install(self, namespace: str, data: InstallAppInput) -> tuple[App, list[CapabilityType]]:
        """Installs an app from the marketplace; returns it and the capabilities it became the default for."""
        app_type = data.validate()
        await self._provisioner.ensure(namespace)
        entry = self._marketplace.installable(app_type)
        method = InstallMethod.WITH_API_KEY if data.api_key is not None else InstallMethod.NO_CREDENTIALS_REQUIRED
        if method not in entry.listing.install_methods:
            raise ValidationError.single(
                "type",
                f"the {entry.listing.name} app cannot be installed this way; it supports: "
                + ", ".join(m.value for m in entry.listing.install_methods),
                "install_method_not_supported",
            )
        now = self._clock()
        app = App(
            id=str(ULID()),
            namespace=namespace,
            type=app_type,
            name=data.name or entry.listing.name,
            created_at=now,
            updated_at=now,
            custom_invoicing=CustomInvoicingSettings() if app_type is AppType.CUSTOM_INVOICING else None,
        )
        async with self._uow() as tx:
            if entry.singleton:
                existing, _ = await tx.apps.list_apps(namespace, 0, 1, app_type)
                if existing:
                    raise ConflictError(
                        f"a {entry.listing.name} app is already installed; there can be only one",
                        conflicting_id=existing[0].id,
                    )
            await tx.apps.insert(app)
            if data.create_billing_profile:
                # The spec's createBillingProfile: a profile that uses the new app for everything,
                # with the current default's supplier. It does not become the default (OpenMeter
                # would make only a Stripe app the default, replacing a sandbox default).
                current = await tx.profiles.get_default(namespace)
                supplier = current.supplier if current is not None else Supplier("Tally", Address(country="US"))
                spec = ProfileCreateInput(
                    name=app.name,
                    supplier=supplier,
                    apps=ProfileApps(app.id, app.id, app.id),
                    description=f"Created with the {entry.listing.name} app",
                )
                await tx.profiles.insert(_new_profile(namespace, spec, spec.validate(), now))
            await tx.commit()
        return app, []

    async def uninstall(self, namespace: str, app_id: str) -> None:
        await self._provisioner.ensure(namespace)
        async with self._uow() as tx:
            app = await _live_app(tx, namespace, app_id, lock=True)
            profiles = await tx.profiles.using_app(namespace, app_id)
            if profiles:
                names = ", ".join(f"{p.name}[{p.id}]" for p in profiles[:10])
                raise ConflictError(
                    f"the app is used by {len(profiles)} billing profile(s): {names}", conflicting_id=profiles[0].id
                )
            # An unfinished invoice keeps the apps it was made with: it needs this one until it
            # is paid, written off, voided or deleted.
            invoices, count = await tx.invoices.unfinished_using_app(namespace, app_id, 10)
            if invoices:
                names = ", ".join(f"{i.number or 'DRAFT'}[{i.id}]" for i in invoices)
                raise ConflictError(
                    f"the app is used by {count} unfinished invoice(s): {names}", conflicting_id=invoices[0].id
                )
            now = self._clock()
            await tx.apps.update(dataclasses.replace(app, deleted_at=now, updated_at=now))
            await tx.customer_data.delete_for_app(namespace, app_id)
            await tx.commit()


class CustomerAppService:
    """Per-customer data of installed apps (GET/PUT /customers/{id}/apps), validated by each app."""

    def __init__(
        self,
        uow: UnitOfWork,
        apps: AppService,
        profiles: BillingProfileService,
        customers: CustomerLookup,
        clock: Clock = utcnow,
    ) -> None:
        self._uow = uow
        self._apps = apps
        self._profiles = profiles
        self._customers = customers
        self._clock = clock

    async def _customer(self, namespace: str, id_or_key: str) -> Customer:
        customer = await self._customers.get(namespace, id_or_key)
        if customer.deleted_at is not None:
            # OpenMeter's answer for a deleted customer's app data.
            raise PreconditionFailedError(f"customer {customer.id} is deleted")
        return customer

    async def list_data(
        self, namespace: str, customer_id_or_key: str, page: int | None, page_size: int | None, app_type: str | None
    ) -> tuple[list[CustomerAppEntry], int, int, int]:
        customer = await self._customer(namespace, customer_id_or_key)
        wanted = parse_app_type(app_type) if app_type else None
        pagination = _page(page, page_size)
        offset, limit = _window(pagination)
        async with self._uow() as tx:
            rows, total = await tx.customer_data.list_for_customer(namespace, customer.id, wanted, offset, limit)
            entries = []
            for row in rows:
                app = await tx.apps.get(namespace, row.app_id)
                if app is not None:
                    entries.append(CustomerAppEntry(app, row))
        return entries, total, pagination.effective_page, pagination.effective_page_size

    async def upsert(
        self, namespace: str, customer_id_or_key: str, items: Sequence[CustomerAppDataInput]
    ) -> list[CustomerAppEntry]:
        """All items or none: each is checked by its app before anything is stored."""
        customer = await self._customer(namespace, customer_id_or_key)
        effective: EffectiveProfile | None = None
        out: list[CustomerAppEntry] = []
        now = self._clock()
        async with self._uow() as tx:
            seen: set[str] = set()
            for i, item in enumerate(items):
                location = f"[{i}]"
                app_type = parse_app_type(item.type, f"{location}.type")
                if item.app_id:
                    app = await tx.apps.get(namespace, item.app_id, lock=True)
                    if app is None or app.deleted_at is not None:
                        raise NotFoundError("app", item.app_id)
                    if app.type is not app_type:
                        raise ValidationError.single(
                            f"{location}.type", f"app {app.id} is a {app.type.value} app", "type_mismatch"
                        )
                else:
                    if effective is None:
                        effective = await self._profiles.effective_profile(namespace, customer.id, expand_apps=True)
                    assert effective.apps is not None
                    candidates = [effective.apps.invoicing, effective.apps.payment, effective.apps.tax]
                    match = next((a for a in candidates if a.type is app_type), None)
                    if match is None:
                        raise PreconditionFailedError(
                            f"no {app_type.value} app in the billing profile of customer {customer.id}; give its id"
                        )
                    app = match
                if app.id in seen:
                    raise ValidationError.single(f"{location}.id", "the same app appears twice", "duplicate")
                seen.add(app.id)
                metadata = self._apps.bind(app).validate_customer_data(item, location)
                existing = await tx.customer_data.get(namespace, app.id, customer.id)
                data = CustomerAppData(
                    namespace=namespace,
                    app_id=app.id,
                    customer_id=customer.id,
                    metadata=metadata,
                    created_at=existing.created_at if existing else now,
                    updated_at=now,
                )
                await tx.customer_data.upsert(data)
                out.append(CustomerAppEntry(app, data))
            await tx.commit()
        return out

    async def delete(self, namespace: str, customer_id_or_key: str, app_id: str) -> None:
        customer = await self._customer(namespace, customer_id_or_key)
        async with self._uow() as tx:
            await _live_app(tx, namespace, app_id)
            await tx.customer_data.delete(namespace, app_id, customer.id)
            await tx.commit()


class BillingProfileService:
    def __init__(
        self,
        uow: UnitOfWork,
        provisioner: Provisioner,
        customers: CustomerLookup,
        marketplace: Marketplace,
        clock: Clock = utcnow,
    ) -> None:
        self._uow = uow
        self._provisioner = provisioner
        self._customers = customers
        self._marketplace = marketplace
        self._clock = clock

    async def _check_apps(self, tx: BillingStore, namespace: str, apps: ProfileApps) -> None:
        v = Violations()
        for slot, capability in _SLOT_CAPABILITY.items():
            app_id = getattr(apps, slot)
            app = await tx.apps.get(namespace, app_id, lock=True)
            if app is None or app.deleted_at is not None:
                raise NotFoundError("app", app_id)
            if capability not in self._marketplace.entry(app.type).listing.capability_types():
                v.add(f"apps.{slot}", f"app {app_id} cannot {capability.value}", "missing_capability")
        v.raise_if_any()

    async def create(self, namespace: str, data: ProfileCreateInput) -> ProfileView:
        workflow = data.validate()
        await self._provisioner.ensure(namespace)
        now = self._clock()
        profile = Profile(
            id=str(ULID()),
            namespace=namespace,
            name=data.name,
            description=data.description,
            metadata=dict(data.metadata),
            supplier=data.supplier,
            workflow=workflow,
            apps=data.apps,
            default=data.default,
            created_at=now,
            updated_at=now,
        )
        async with self._uow() as tx:
            await self._check_apps(tx, namespace, data.apps)
            demoted = await self._demote_default(tx, namespace, now) if data.default else None
            await tx.profiles.insert(profile)
            apps = await _resolve_apps(tx, profile)
            if demoted is not None:
                await self._keep_paid_subscriptions_on(tx, demoted, apps, now)
            await tx.commit()
        return ProfileView(profile, apps)

    async def _demote_default(self, tx: BillingStore, namespace: str, now: datetime) -> Profile | None:
        """The default profile stops being it; returns it (None when there was none)."""
        current = await tx.profiles.get_default(namespace, lock=True)
        if current is None:
            return None
        await tx.profiles.update(dataclasses.replace(current, default=False, updated_at=now))
        return current

    async def _keep_paid_subscriptions_on(
        self, tx: BillingStore, demoted: Profile, new_apps: ResolvedApps, now: datetime
    ) -> None:
        """A new default invoiced by another kind of app would move running paid subscriptions to
        it mid-period: their customers are pinned to the old default instead, as OpenMeter's
        handleDefaultProfileChange does (the same kind of app needs no pinning)."""
        if (await _resolve_apps(tx, demoted)).invoicing.type is new_apps.invoicing.type:
            return
        namespace = demoted.namespace
        following = await tx.overrides.unpinned_with_subscription_lines(namespace)
        for customer_id in following:
            existing = await tx.overrides.get(namespace, customer_id, lock=True)
            if existing is not None and existing.profile_id is not None:
                continue  # pinned since it was read
            pinned = CustomerOverride(namespace, customer_id, created_at=now, updated_at=now)
            if existing is not None:
                pinned = dataclasses.replace(existing, updated_at=now)
            await tx.overrides.upsert(dataclasses.replace(pinned, profile_id=demoted.id))
        if following:
            log.info(
                "customers with paid subscriptions pinned to the previous default billing profile",
                namespace=namespace,
                profile_id=demoted.id,
                customer_ids=",".join(following),
            )

    async def get(self, namespace: str, profile_id: str, expand_apps: bool = False) -> ProfileView:
        await self._provisioner.ensure(namespace)
        async with self._uow() as tx:
            profile = await tx.profiles.get(namespace, profile_id)
            if profile is None:
                raise NotFoundError("billing profile", profile_id, "profile_not_found")
            apps = await _resolve_apps(tx, profile) if expand_apps else None
        return ProfileView(profile, apps)

    async def get_default(self, namespace: str) -> Profile:
        await self._provisioner.ensure(namespace)
        async with self._uow() as tx:
            profile = await tx.profiles.get_default(namespace)
        if profile is None:
            raise NotFoundError("default billing profile", namespace, "default_profile_not_found")
        return profile

    async def list_profiles(self, namespace: str, data: ListProfilesInput) -> tuple[list[ProfileView], int, int, int]:
        query, expand_apps = data.validate()
        await self._provisioner.ensure(namespace)
        async with self._uow() as tx:
            profiles, total = await tx.profiles.list_profiles(namespace, query)
            views = [ProfileView(p, await _resolve_apps(tx, p) if expand_apps else None) for p in profiles]
        return views, total, query.pagination.effective_page, query.pagination.effective_page_size

    async def update(self, namespace: str, profile_id: str, data: ProfileUpdateInput) -> ProfileView:
        await self._provisioner.ensure(namespace)
        now = self._clock()
        async with self._uow() as tx:
            current = await tx.profiles.get(namespace, profile_id, lock=True)
            if current is None:
                raise NotFoundError("billing profile", profile_id, "profile_not_found")
            if current.deleted_at is not None:
                raise ValidationError.coded("id", "the billing profile is deleted", "profile_already_deleted")
            workflow = data.validate(current)
            if current.default and not data.default:
                raise ValidationError.coded(
                    "default",
                    "the default profile stays the default until another profile is made the default",
                    "default_profile_cannot_be_unset",
                )
            demoted = await self._demote_default(tx, namespace, now) if data.default and not current.default else None
            updated = dataclasses.replace(
                current,
                name=data.name,
                description=data.description,
                metadata=dict(data.metadata),
                supplier=data.supplier,
                workflow=workflow,
                default=data.default,
                updated_at=now,
            )
            await tx.profiles.update(updated)
            apps = await _resolve_apps(tx, updated)
            if demoted is not None:
                await self._keep_paid_subscriptions_on(tx, demoted, apps, now)
            await tx.commit()
        return ProfileView(updated, apps)

    async def delete(self, namespace: str, profile_id: str) -> None:
        await self._provisioner.ensure(namespace)
        async with self._uow() as tx:
            profile = await tx.profiles.get(namespace, profile_id, lock=True)
            if profile is None:
                raise NotFoundError("billing profile", profile_id, "profile_not_found")
            if profile.deleted_at is not None:
                return
            if profile.default:
                raise ValidationError.coded(
                    "id", "the default billing profile cannot be deleted", "default_profile_cannot_be_deleted"
                )
            pinned = await tx.overrides.customers_pinned_to(namespace, profile_id)
            if pinned:
                raise ValidationError.coded(
                    "id",
                    f"the billing profile is used by the overrides of {len(pinned)} customer(s): "
                    + ", ".join(pinned[:10]),
                    "profile_referenced",
                )
            now = self._clock()
            await tx.profiles.update(dataclasses.replace(profile, deleted_at=now, updated_at=now))
            await tx.commit()

    # Customer overrides and the effective profile.

    async def effective_profile(
        self, namespace: str, customer_id_or_key: str, *, expand_apps: bool = False, with_customer: bool = False
    ) -> EffectiveProfile:
        """The profile, apps and merged workflow that apply to the customer now."""
        await self._provisioner.ensure(namespace)
        customer = await self._live_customer(namespace, customer_id_or_key)
        async with self._uow() as tx:
            override = await tx.overrides.get(namespace, customer.id)
            return await self._effective(_Lookups(tx, namespace), customer, override, expand_apps, with_customer)

    async def effective_profiles(self, namespace: str, customer_ids: Sequence[str]) -> dict[str, EffectiveProfile]:
        """`effective_profile(with_customer=True)` of many customers at once, by customer ID (one
        read of the customers with their overrides per page); deleted customers are absent."""
        ids = list(dict.fromkeys(customer_ids))
        out: dict[str, EffectiveProfile] = {}
        for i in range(0, len(ids), MAX_PAGE_SIZE):
            chunk = ids[i : i + MAX_PAGE_SIZE]
            page = ListOverridesInput(page=1, page_size=len(chunk), customer_id=chunk, expand=("customer",))
            items, *_ = await self.list_overrides(namespace, page)
            out.update((e.customer_id, e) for e in items)
        return out

    async def _effective(
        self,
        lookups: _Lookups,
        customer: Customer,
        override: CustomerOverride | None,
        expand_apps: bool,
        with_customer: bool,
    ) -> EffectiveProfile:
        base: Profile | None
        if override is not None and override.profile_id is not None:
            base = await lookups.profile(override.profile_id)
        else:
            base = await lookups.default()
        if base is None:
            raise NotFoundError("default billing profile", lookups.namespace, "default_profile_not_found")
        workflow = override.workflow.apply(base.workflow) if override is not None else base.workflow
        return EffectiveProfile(
            customer_id=customer.id,
            profile=base,
            workflow=workflow,
            override=override,
            apps=await lookups.apps(base) if expand_apps else None,
            customer=customer if with_customer else None,
        )

    async def _live_customer(self, namespace: str, id_or_key: str) -> Customer:
        customer = await self._customers.get(namespace, id_or_key)
        if customer.deleted_at is not None:
            raise NotFoundError("customer", id_or_key)
        return customer

    # The override endpoints find a deleted customer by its ID (by key only a live one), as
    # OpenMeter's override service does (its GetCustomer by ID reads deleted customers too): its
    # override can still be read, changed and deleted; only the list leaves it out.

    async def get_override(
        self, namespace: str, customer_id_or_key: str, expand: Sequence[str] = ()
    ) -> EffectiveProfile:
        v = Violations()
        flags = parse_expand(v, expand, ("apps", "customer"))
        v.raise_if_any()
        await self._provisioner.ensure(namespace)
        customer = await self._customers.get(namespace, customer_id_or_key)
        async with self._uow() as tx:
            override = await tx.overrides.get(namespace, customer.id)
            return await self._effective(
                _Lookups(tx, namespace), customer, override, flags.get("apps", False), flags.get("customer", False)
            )

    async def upsert_override(
        self, namespace: str, customer_id_or_key: str, data: OverrideUpsertInput
    ) -> EffectiveProfile:
        data.validate()
        await self._provisioner.ensure(namespace)
        customer = await self._customers.get(namespace, customer_id_or_key)
        now = self._clock()
        async with self._uow() as tx:
            if data.profile_id is not None:
                # Locked, so a concurrent delete of the profile waits and then sees this pin.
                profile = await tx.profiles.get(namespace, data.profile_id, lock=True)
                if profile is None or profile.deleted_at is not None:
                    raise NotFoundError("billing profile", data.profile_id, "profile_not_found")
            existing = await tx.overrides.get(namespace, customer.id, lock=True)
            v = Violations()
            workflow = data.workflow.with_tax_code_as_stored(
                v, existing.workflow.default_tax_config if existing else None
            )
            v.raise_if_any()
            override = CustomerOverride(
                namespace=namespace,
                customer_id=customer.id,
                profile_id=data.profile_id,
                workflow=workflow,
                created_at=existing.created_at if existing else now,
                updated_at=now,
            )
            result = await self._effective(_Lookups(tx, namespace), customer, override, False, False)
            data.check_merged(result.workflow)
            await tx.overrides.upsert(override)
            await tx.commit()
        return result

    async def delete_override(self, namespace: str, customer_id_or_key: str) -> None:
        await self._provisioner.ensure(namespace)
        customer = await self._customers.get(namespace, customer_id_or_key)
        async with self._uow() as tx:
            if not await tx.overrides.delete(namespace, customer.id, self._clock()):
                raise NotFoundError("customer override", customer.id, "customer_override_not_found")
            await tx.commit()

    async def list_overrides(
        self, namespace: str, data: ListOverridesInput
    ) -> tuple[list[EffectiveProfile], int, int, int]:
        query, expand = data.validate()
        await self._provisioner.ensure(namespace)
        async with self._uow() as tx:
            # One lookup per profile and per profile's apps for the whole page, not per customer.
            lookups = _Lookups(tx, namespace)
            default = await lookups.default()
            rows, total = await tx.overrides.list_customers(namespace, query, default.id if default else None)
            await lookups.prefetch([o.profile_id for _, o in rows if o is not None and o.profile_id is not None])
            items = [
                await self._effective(
                    lookups, customer, override, expand.get("apps", False), expand.get("customer", False)
                )
                for customer, override in rows
            ]
        return items, total, query.pagination.effective_page, query.pagination.effective_page_size
