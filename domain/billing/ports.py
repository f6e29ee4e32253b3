"""What billing needs from storage: repositories bound to one transaction (`BillingStore`), opened by
a unit of work, so a rule that reads and then writes (a profile in use cannot be deleted; one
default profile per namespace) holds under concurrency: the service locks the rows it reasons
about, decides, writes and commits, or nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from domain.billing.apps.models import App, AppType, CustomerAppData
from domain.billing.models import CustomerOverride, OverrideListQuery, Profile, ProfileListQuery
from domain.customers.models import Customer


class AppRepository(Protocol):
    async def get(self, namespace: str, app_id: str, *, lock: bool = False) -> App | None:
        """The app, uninstalled ones included (with deleted_at); `lock` holds its row until commit."""
        ...

    async def list_apps(
        self, namespace: str, offset: int, limit: int, app_type: AppType | None = None
    ) -> tuple[list[App], int]:
        """Installed apps, oldest first."""
        ...

    async def insert(self, app: App) -> None:
        """Raises ConflictError when a singleton type (the sandbox) already has an installed app."""
        ...

    async def update(self, app: App) -> None: ...


class CustomerAppDataRepository(Protocol):
    async def list_for_customer(
        self, namespace: str, customer_id: str, app_type: AppType | None, offset: int, limit: int
    ) -> tuple[list[CustomerAppData], int]:
        """The customer's data for installed apps, by app creation."""
        ...

    async def get(self, namespace: str, app_id: str, customer_id: str) -> CustomerAppData | None: ...

    async def upsert(self, data: CustomerAppData) -> None: ...

    async def delete(self, namespace: str, app_id: str, customer_id: str) -> bool: ...

    async def delete_for_app(self, namespace: str, app_id: str) -> None: ...


class ProfileRepository(Protocol):
    async def get(self, namespace: str, profile_id: str, *, lock: bool = False) -> Profile | None:
        """The profile, deleted ones included."""
        ...

    async def get_default(self, namespace: str, *, lock: bool = False) -> Profile | None: ...

    async def get_many(self, namespace: str, profile_ids: Sequence[str]) -> list[Profile]:
        """The profiles among `profile_ids` that exist (deleted ones included)."""
        ...

    async def list_profiles(self, namespace: str, query: ProfileListQuery) -> tuple[list[Profile], int]: ...

    async def insert(self, profile: Profile) -> None:
        """Raises ConflictError when it is a second default profile of the namespace."""
        ...

    async def update(self, profile: Profile) -> None: ...

    async def using_app(self, namespace: str, app_id: str) -> list[Profile]:
        """Live profiles that use the app for any capability."""
        ...


class OverrideRepository(Protocol):
    async def get(self, namespace: str, customer_id: str, *, lock: bool = False) -> CustomerOverride | None:
        """The customer's live override."""
        ...

    async def upsert(self, override: CustomerOverride) -> None: ...

    async def delete(self, namespace: str, customer_id: str, at: datetime) -> bool: ...

    async def customers_pinned_to(self, namespace: str, profile_id: str) -> list[str]:
        """IDs of live customers whose live override pins the profile."""
        ...

    async def list_customers(
        self, namespace: str, query: OverrideListQuery, default_profile_id: str | None
    ) -> tuple[list[tuple[Customer, CustomerOverride | None]], int]:
        """Live customers matching the query, each with its live override (or None)."""
        ...


class BillingStore(Protocol):
    """Billing's repositories sharing one transaction. Leaving the unit of work without `commit`
    rolls everything back."""

    @property
    def apps(self) -> AppRepository: ...

    @property
    def customer_data(self) -> CustomerAppDataRepository: ...

    @property
    def profiles(self) -> ProfileRepository: ...

    @property
    def overrides(self) -> OverrideRepository: ...

    async def commit(self) -> None: ...


UnitOfWork = Callable[[], AbstractAsyncContextManager[BillingStore]]


class CustomerLookup(Protocol):
    """The customers area, as billing uses it (CustomerService implements it)."""

    async def get(self, namespace: str, id_or_key: str) -> Customer:
        """By ID (deleted customers too) or by key (live ones); NotFoundError otherwise."""
        ...

    async def resolve(self, namespace: str, ids_or_keys: Sequence[str]) -> Mapping[str, Customer]: ...
