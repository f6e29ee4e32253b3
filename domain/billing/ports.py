"""What billing needs from storage: repositories bound to one transaction (`BillingStore`), opened by
a unit of work, so a rule that reads and then writes (a profile in use cannot be deleted; one
default profile per namespace) holds under concurrency: the service locks the rows it reasons
about, decides, writes and commits, or nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from domain.billing.apps.models import App, AppType, CustomerAppData
from domain.billing.apps.port import InvoiceNumbers
from domain.billing.invoice_states import InvoiceStatus, State
from domain.billing.invoices import Billed, Invoice, InvoiceLine, InvoiceListQuery, OwedNotification, UsageRequest
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

    async def unpinned_with_subscription_lines(self, namespace: str) -> list[str]:
        """IDs of live customers that follow the default profile (no live override pins one) and
        have a subscription's line waiting on a gathering invoice: a paid subscription's customers."""
        ...

    async def list_customers(
        self, namespace: str, query: OverrideListQuery, default_profile_id: str | None
    ) -> tuple[list[tuple[Customer, CustomerOverride | None]], int]:
        """Live customers matching the query, each with its live override (or None)."""
        ...


class InvoiceRepository(Protocol):
    """Invoices and their lines. Reads with `lock` hold the invoice row until commit, so one
    state change (the invoice and its lines) is decided and written by one transaction."""

    async def get(self, namespace: str, invoice_id: str, *, lock: bool = False) -> Invoice | None:
        """The invoice, deleted ones included."""
        ...

    async def get_many(self, namespace: str, invoice_ids: Sequence[str], *, lock: bool = False) -> list[Invoice]:
        """The invoices among these IDs that exist, in one read (ordered by ID; with `lock`, all
        held until commit)."""
        ...

    async def unfinished_using_app(self, namespace: str, app_id: str, limit: int) -> tuple[list[Invoice], int]:
        """Up to `limit` live invoices, not gathering and not final (paid, uncollectible, voided),
        whose invoicing, payment or tax app this is, and how many there are."""
        ...

    async def get_gathering(
        self, namespace: str, customer_id: str, currency: str, *, lock: bool = False
    ) -> Invoice | None:
        """The customer's live gathering invoice in that currency (there is at most one)."""
        ...

    async def gathering_for_customer(self, namespace: str, customer_id: str, *, lock: bool = False) -> list[Invoice]:
        """The customer's live gathering invoices, one per currency."""
        ...

    async def insert(self, invoice: Invoice) -> None:
        """Raises ConflictError when it is a second live gathering invoice of the customer and
        currency (the unique index decides, also between racing transactions)."""
        ...

    async def insert_many(self, invoices: Sequence[Invoice]) -> None:
        """Standard invoices in one write (ConflictError as `insert`)."""
        ...

    async def update(self, invoice: Invoice) -> None: ...

    async def update_many(self, invoices: Sequence[Invoice]) -> None:
        """Several invoices in one write."""
        ...

    async def list_invoices(self, namespace: str, query: InvoiceListQuery) -> tuple[list[Invoice], int]: ...

    async def lines(
        self, namespace: str, invoice_ids: Sequence[str], *, include_deleted: bool = False
    ) -> dict[str, list[InvoiceLine]]:
        """Live lines (children included) of each invoice, by invoice ID, in creation order."""
        ...

    async def get_lines(self, namespace: str, line_ids: Sequence[str], *, lock: bool = False) -> list[InvoiceLine]:
        """Live lines by ID."""
        ...

    async def insert_lines(self, lines: Sequence[InvoiceLine]) -> None:
        """Raises ConflictError on a second live line with the same sync key and period start."""
        ...

    async def update_lines(self, lines: Sequence[InvoiceLine]) -> None: ...

    async def delete_lines(self, namespace: str, line_ids: Sequence[str], at: datetime) -> None:
        """Soft-deletes the lines and their children."""
        ...

    async def delete_children(
        self, namespace: str, parent_ids: Sequence[str], at: datetime, keep: Collection[str] = ()
    ) -> None:
        """Soft-deletes the detailed lines of these parents (before they are rated again), but for
        those in `keep` (a new rating's lines under their IDs, updated instead)."""
        ...

    async def subscription_lines(
        self, namespace: str, subscription_ids: Sequence[str]
    ) -> dict[str, list[tuple[InvoiceLine, InvoiceStatus]]]:
        """Live top-level lines synced from each of these subscriptions (by subscription ID, every
        ID present), each with the status of the live invoice it is on, by period start; and
        those of their lines a user deleted (managedBy manual, `deleted_at` set), with the status
        of the invoice they were on."""
        ...

    async def issued_usage_lines(self, ended_after: datetime | None) -> list[tuple[InvoiceLine, str, tuple[str, ...]]]:
        """Every namespace's top-level usage lines (with a period key) on issued invoices that
        still count (issued, in payment, overdue, paid, uncollectible) whose period ended after
        `ended_after`, and every such line of the periods an invoice issued after it billed (None:
        every such line), each with its invoice's customer ID and the event subjects the invoice
        copied from its customer (`CustomerSnapshot.usage_subjects`); period keys that also have a line on a
        gathering, draft or issuing invoice (being billed already) are left out."""
        ...

    async def late_usage_read_at(self) -> datetime | None:
        """When the last late-usage read that finished began (None: never)."""
        ...

    async def mark_late_usage_read(self, at: datetime) -> None:
        """A late-usage read that began at `at` finished (a mark never moves back: a slower read
        that began earlier, finishing later, leaves it)."""
        ...

    async def refresh_statistics(self, changed_rows: int) -> None:
        """`changed_rows` invoices and lines were just written at once (a sync pass, a collection):
        a store that plans its reads from statistics refreshes them when that is a large share of
        what it holds, rather than planning the rest of the pass from a picture of before."""
        ...

    async def pending_period_keys(self, namespace: str, period_keys: Sequence[str]) -> set[str]:
        """The period keys among these with a live top-level line on a gathering, draft or issuing
        invoice (their usage is being billed)."""
        ...

    async def lock_period_keys(self, namespace: str, period_keys: Sequence[str]) -> None:
        """Serialises the quantity snapshots of these period keys until the transaction ends: a
        snapshot reads what other invoices billed of its periods and then decides its own part, so
        two parts of one period snapshotted at once must not each read the other as unbilled."""
        ...

    async def billed_quantities(
        self, namespace: str, period_keys: Sequence[str], exclude_invoice_id: str | None = None
    ) -> dict[str, Billed]:
        """Per period key: the quantity already billed by top-level lines of standard invoices that
        still count (not gathering, deleted or voided), and whether one of them started the period,
        `exclude_invoice_id` left out (the invoice being rated). A key billed nowhere is absent."""
        ...

    async def billed_quantities_by_invoice(
        self, namespace: str, period_keys: Sequence[str]
    ) -> dict[str, dict[str, Billed]]:
        """`billed_quantities` per period key and invoice ID, for a batch of invoices at once
        (each leaves out its own)."""
        ...

    async def claim(
        self,
        states: Sequence[State],
        now: datetime,
        limit: int,
        namespace: str | None = None,
    ) -> list[Invoice]:
        """Live invoices in one of `states` whose `next_attempt_at` has passed (or is unset), locked
        with FOR UPDATE SKIP LOCKED: several workers may claim at once and each invoice goes to
        exactly one; a worker's lock ends with its transaction (also when it is killed)."""
        ...

    async def claim_gathering_due(self, now: datetime, limit: int, namespace: str | None = None) -> list[Invoice]:
        """Live gathering invoices whose `collection_at` and `next_attempt_at` (unless unset) have
        passed, locked with SKIP LOCKED."""
        ...

    async def schedule(self, namespace: str, invoice_ids: Sequence[str], at: datetime) -> None:
        """Sets the invoices' `next_attempt_at` (a worker's lease, or when to look again)."""
        ...

    async def owed_notifications(self, namespace: str, invoice_ids: Sequence[str]) -> dict[str, OwedNotification]:
        """The notifications these invoices' writes owe (invoices owing none are left out)."""
        ...

    async def claim_owed_notifications(
        self, before: datetime, now: datetime, limit: int
    ) -> list[tuple[str, str, OwedNotification]]:
        """(namespace, invoice ID, notification) owed by writes before `before`, oldest first,
        claimed: each is owed since `now` from then on, so no other worker's pass takes it until it
        is as old again (a lease), and a write after the claim owes its own."""
        ...

    async def clear_owed_notifications(self, namespace: str, told: Mapping[str, datetime]) -> None:
        """Clears each invoice's owed notification while it is still the one owed since that time."""
        ...


class UsageSource(Protocol):
    """Metered usage as billing reads it: the quantity of each feature's meter for a customer over
    [start, end), counting only the events stored by `cutoff` (so a re-run with the same cutoff
    reads the same number, and usage stored later is billed by a later run as a correction).

    One call answers many requests: an implementation reads them in bulk (per meter and period,
    grouped by subject), never one query per customer. A request whose feature has no meter, or
    whose customer has no usage, answers 0."""

    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]: ...

    async def growing_features(self, namespace: str, feature_keys: Collection[str]) -> set[str]:
        """Those of the features whose usage over a period can only grow (their meter's
        aggregation `only_grows`): only their lines may be billed in parts."""
        ...


class TransactionNumbers(InvoiceNumbers, Protocol):
    """Invoice number sequences inside a billing transaction: a sequence's row stays locked from
    the first number taken until the transaction ends, so numbers are gap-free and a rolled-back
    change gives its numbers back."""

    async def reserve(self, namespace: str, scope: str, count: int) -> int:
        """Takes `count` consecutive numbers at once; returns the first."""
        ...

    async def give_back(self, namespace: str, scope: str, count: int) -> None:
        """Returns the last `count` numbers this transaction reserved and did not use. Nobody else
        took a number since (the row is locked), so the sequence has no gap."""
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

    @property
    def invoices(self) -> InvoiceRepository: ...

    @property
    def numbers(self) -> TransactionNumbers:
        """Invoice number sequences in this transaction: a number is taken with the state change
        that uses it and given back if that change rolls back."""
        ...

    async def commit(self) -> None: ...


UnitOfWork = Callable[[], AbstractAsyncContextManager[BillingStore]]


class CustomerLookup(Protocol):
    """The customers area, as billing uses it (CustomerService implements it)."""

    async def get(self, namespace: str, id_or_key: str) -> Customer:
        """By ID (deleted customers too) or by key (live ones); NotFoundError otherwise."""
        ...

    async def resolve(self, namespace: str, ids_or_keys: Sequence[str]) -> Mapping[str, Customer]: ...
