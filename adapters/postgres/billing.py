"""Billing's repositories over Postgres, sharing one session per unit of work, and invoice numbers."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.billing_tables import (
    AppCustomerDataRow,
    AppRow,
    BillingCustomerOverrideRow,
    BillingProfileRow,
    BillingSequenceRow,
    InvoiceLineRow,
    InvoiceRow,
)
from adapters.postgres.customers import customer_from_row
from adapters.postgres.entitlements_tables import CustomerRow
from domain.billing.apps.models import App, AppStatus, AppType, CustomerAppData, CustomInvoicingSettings
from domain.billing.invoice_states import State as InvoiceState
from domain.billing.invoices import LineStatus
from domain.billing.models import (
    Alignment,
    CollectionMethod,
    CustomerOverride,
    OverrideListQuery,
    Profile,
    ProfileApps,
    ProfileListQuery,
    ProrationMode,
    RecurringPeriod,
    Supplier,
    Workflow,
    WorkflowPatch,
)
from domain.billing.ports import UnitOfWork

if TYPE_CHECKING:
    from adapters.postgres.invoices import PostgresInvoiceRepository
from domain.catalog.ratecards import TaxBehavior, TaxConfig
from domain.customers.models import Address, Customer
from domain.errors import ConflictError
from domain.pagination import SortOrder

W = TypeVar("W", Workflow, WorkflowPatch)
_ENUMS: dict[str, type[enum.Enum]] = {
    "alignment": Alignment,
    "subscription_end_proration_mode": ProrationMode,
    "collection_method": CollectionMethod,
}


def tax_config_to_json(tax: TaxConfig) -> dict[str, Any]:
    return {
        "behavior": tax.behavior.value if tax.behavior else None,
        "stripe_code": tax.stripe_code,
        "custom_invoicing_code": tax.custom_invoicing_code,
        "tax_code_id": tax.tax_code_id,
    }


def tax_config_from_json(value: dict[str, Any]) -> TaxConfig:
    behavior = value.get("behavior")
    return TaxConfig(
        behavior=TaxBehavior(behavior) if behavior else None,
        stripe_code=value.get("stripe_code"),
        custom_invoicing_code=value.get("custom_invoicing_code"),
        tax_code_id=value.get("tax_code_id"),
    )


def workflow_to_json(workflow: Workflow | WorkflowPatch) -> dict[str, Any]:
    """Field name -> JSON value; settings that are None (not set in a patch) are left out."""
    out: dict[str, Any] = {}
    for f in fields(workflow):
        value = getattr(workflow, f.name)
        if value is None:
            continue
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, RecurringPeriod):
            value = {"interval": value.interval, "anchor": value.anchor.isoformat()}
        elif isinstance(value, TaxConfig):
            value = tax_config_to_json(value)
        out[f.name] = value
    return out


def workflow_from_json(kind: type[W], value: dict[str, Any]) -> W:
    kwargs: dict[str, Any] = {}
    for f in fields(kind):
        if f.name not in value or value[f.name] is None:
            continue
        raw = value[f.name]
        if f.name in _ENUMS:
            raw = _ENUMS[f.name](raw)
        elif f.name == "recurring_period":
            raw = RecurringPeriod(interval=raw["interval"], anchor=datetime.fromisoformat(raw["anchor"]))
        elif f.name == "default_tax_config":
            raw = tax_config_from_json(raw)
        kwargs[f.name] = raw
    return kind(**kwargs)


def _supplier_to_json(supplier: Supplier) -> dict[str, Any]:
    return {
        "name": supplier.name,
        "key": supplier.key,
        "tax_code": supplier.tax_code,
        "address": supplier.address.as_dict(),
    }


def _supplier_from_json(value: dict[str, Any]) -> Supplier:
    return Supplier(
        name=value.get("name", ""),
        key=value.get("key"),
        tax_code=value.get("tax_code"),
        address=Address.from_dict(value.get("address")) or Address(),
    )


def _app(row: AppRow) -> App:
    app_type = AppType(row.type)
    settings = None
    if app_type is AppType.CUSTOM_INVOICING:
        settings = CustomInvoicingSettings(
            enable_draft_sync_hook=bool(row.settings.get("enable_draft_sync_hook", False)),
            enable_issuing_sync_hook=bool(row.settings.get("enable_issuing_sync_hook", False)),
        )
    return App(
        id=row.id,
        namespace=row.namespace,
        type=app_type,
        name=row.name,
        description=row.description,
        status=AppStatus(row.status),
        metadata=dict(row.meta),
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
        custom_invoicing=settings,
    )


def _app_row(app: App) -> AppRow:
    settings: dict[str, Any] = {}
    if app.custom_invoicing is not None:
        settings = {
            "enable_draft_sync_hook": app.custom_invoicing.enable_draft_sync_hook,
            "enable_issuing_sync_hook": app.custom_invoicing.enable_issuing_sync_hook,
        }
    return AppRow(
        namespace=app.namespace,
        id=app.id,
        type=app.type.value,
        name=app.name,
        description=app.description,
        status=app.status.value,
        meta=dict(app.metadata),
        settings=settings,
        created_at=app.created_at,
        updated_at=app.updated_at,
        deleted_at=app.deleted_at,
    )


def _profile(row: BillingProfileRow) -> Profile:
    return Profile(
        id=row.id,
        namespace=row.namespace,
        name=row.name,
        description=row.description,
        metadata=dict(row.meta),
        supplier=_supplier_from_json(row.supplier),
        workflow=workflow_from_json(Workflow, row.workflow),
        apps=ProfileApps(tax=row.tax_app_id, invoicing=row.invoicing_app_id, payment=row.payment_app_id),
        default=row.is_default,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _profile_row(profile: Profile) -> BillingProfileRow:
    return BillingProfileRow(
        namespace=profile.namespace,
        id=profile.id,
        name=profile.name,
        description=profile.description,
        meta=dict(profile.metadata),
        supplier=_supplier_to_json(profile.supplier),
        workflow=workflow_to_json(profile.workflow),
        tax_app_id=profile.apps.tax,
        invoicing_app_id=profile.apps.invoicing,
        payment_app_id=profile.apps.payment,
        is_default=profile.default,
        created_at=profile.created_at,
        updated_at=profile.updated_at,
        deleted_at=profile.deleted_at,
    )


def _override(row: BillingCustomerOverrideRow) -> CustomerOverride:
    return CustomerOverride(
        namespace=row.namespace,
        customer_id=row.customer_id,
        profile_id=row.profile_id,
        workflow=workflow_from_json(WorkflowPatch, row.workflow),
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


async def _flush(session: AsyncSession, message: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError(message) from exc


class PostgresAppRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, namespace: str, app_id: str, *, lock: bool = False) -> App | None:
        statement = select(AppRow).where(AppRow.namespace == namespace, AppRow.id == app_id)
        if lock:
            statement = statement.with_for_update()
        row = (await self._session.exec(statement)).first()
        return _app(row) if row is not None else None

    async def list_apps(
        self, namespace: str, offset: int, limit: int, app_type: AppType | None = None
    ) -> tuple[list[App], int]:
        statement = select(AppRow).where(AppRow.namespace == namespace, col(AppRow.deleted_at).is_(None))
        if app_type is not None:
            statement = statement.where(AppRow.type == app_type.value)
        total = (await self._session.exec(select(func.count()).select_from(statement.subquery()))).one()
        paged = statement.order_by(col(AppRow.created_at), col(AppRow.id)).offset(offset).limit(limit)
        rows = (await self._session.exec(paged)).all()
        return [_app(row) for row in rows], int(total)

    async def insert(self, app: App) -> None:
        self._session.add(_app_row(app))
        await _flush(self._session, f"a {app.type.value} app is already installed")

    async def update(self, app: App) -> None:
        await self._session.merge(_app_row(app))
        await _flush(self._session, "app update conflicts with another app")


class PostgresCustomerAppDataRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list_for_customer(
        self, namespace: str, customer_id: str, app_type: AppType | None, offset: int, limit: int
    ) -> tuple[list[CustomerAppData], int]:
        statement = (
            select(AppCustomerDataRow)
            .join(
                AppRow,
                and_(
                    col(AppRow.namespace) == AppCustomerDataRow.namespace, col(AppRow.id) == AppCustomerDataRow.app_id
                ),
            )
            .where(
                AppCustomerDataRow.namespace == namespace,
                AppCustomerDataRow.customer_id == customer_id,
                col(AppRow.deleted_at).is_(None),
            )
        )
        if app_type is not None:
            statement = statement.where(AppRow.type == app_type.value)
        total = (await self._session.exec(select(func.count()).select_from(statement.subquery()))).one()
        paged = statement.order_by(col(AppRow.created_at), col(AppRow.id)).offset(offset).limit(limit)
        rows = (await self._session.exec(paged)).all()
        return [self._data(row) for row in rows], int(total)

    @staticmethod
    def _data(row: AppCustomerDataRow) -> CustomerAppData:
        return CustomerAppData(
            namespace=row.namespace,
            app_id=row.app_id,
            customer_id=row.customer_id,
            metadata=dict(row.meta),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def get(self, namespace: str, app_id: str, customer_id: str) -> CustomerAppData | None:
        row = await self._session.get(AppCustomerDataRow, (namespace, app_id, customer_id))
        return self._data(row) if row is not None else None

    async def upsert(self, data: CustomerAppData) -> None:
        statement = insert(AppCustomerDataRow).values(
            namespace=data.namespace,
            app_id=data.app_id,
            customer_id=data.customer_id,
            metadata=dict(data.metadata),
            created_at=data.created_at,
            updated_at=data.updated_at,
        )
        statement = statement.on_conflict_do_update(
            index_elements=["namespace", "app_id", "customer_id"],
            set_={"metadata": statement.excluded.metadata, "updated_at": statement.excluded.updated_at},
        )
        await self._session.exec(statement)

    async def delete(self, namespace: str, app_id: str, customer_id: str) -> bool:
        row = await self._session.get(AppCustomerDataRow, (namespace, app_id, customer_id))
        if row is None:
            return False
        await self._session.delete(row)
        await self._session.flush()
        return True

    async def delete_for_app(self, namespace: str, app_id: str) -> None:
        rows = await self._session.exec(
            select(AppCustomerDataRow).where(
                AppCustomerDataRow.namespace == namespace, AppCustomerDataRow.app_id == app_id
            )
        )
        for row in rows.all():
            await self._session.delete(row)
        await self._session.flush()


class PostgresProfileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, namespace: str, profile_id: str, *, lock: bool = False) -> Profile | None:
        statement = select(BillingProfileRow).where(
            BillingProfileRow.namespace == namespace, BillingProfileRow.id == profile_id
        )
        if lock:
            statement = statement.with_for_update()
        row = (await self._session.exec(statement)).first()
        return _profile(row) if row is not None else None

    async def get_default(self, namespace: str, *, lock: bool = False) -> Profile | None:
        statement = select(BillingProfileRow).where(
            BillingProfileRow.namespace == namespace,
            col(BillingProfileRow.is_default).is_(True),
            col(BillingProfileRow.deleted_at).is_(None),
        )
        if lock:
            statement = statement.with_for_update()
        row = (await self._session.exec(statement)).first()
        return _profile(row) if row is not None else None

    async def get_many(self, namespace: str, profile_ids: Sequence[str]) -> list[Profile]:
        if not profile_ids:
            return []
        statement = select(BillingProfileRow).where(
            BillingProfileRow.namespace == namespace, col(BillingProfileRow.id).in_(list(profile_ids))
        )
        return [_profile(row) for row in (await self._session.exec(statement)).all()]

    async def list_profiles(self, namespace: str, query: ProfileListQuery) -> tuple[list[Profile], int]:
        statement = select(BillingProfileRow).where(BillingProfileRow.namespace == namespace)
        if not query.include_archived:
            statement = statement.where(col(BillingProfileRow.deleted_at).is_(None))
        column = {
            "createdAt": BillingProfileRow.created_at,
            "updatedAt": BillingProfileRow.updated_at,
            "default": BillingProfileRow.is_default,
            "name": BillingProfileRow.name,
        }[query.order_by]
        order = col(column).desc() if query.order is SortOrder.DESC else col(column).asc()
        offset, limit = query.pagination.window()
        total = (await self._session.exec(select(func.count()).select_from(statement.subquery()))).one()
        paged = statement.order_by(order, col(BillingProfileRow.id)).offset(offset)
        if limit is not None:
            paged = paged.limit(limit)
        rows = (await self._session.exec(paged)).all()
        return [_profile(row) for row in rows], int(total)

    async def insert(self, profile: Profile) -> None:
        self._session.add(_profile_row(profile))
        await _flush(self._session, "another billing profile is already the default")

    async def update(self, profile: Profile) -> None:
        await self._session.merge(_profile_row(profile))
        await _flush(self._session, "another billing profile is already the default")

    async def using_app(self, namespace: str, app_id: str) -> list[Profile]:
        statement = (
            select(BillingProfileRow)
            .where(
                BillingProfileRow.namespace == namespace,
                col(BillingProfileRow.deleted_at).is_(None),
                or_(
                    col(BillingProfileRow.tax_app_id) == app_id,
                    col(BillingProfileRow.invoicing_app_id) == app_id,
                    col(BillingProfileRow.payment_app_id) == app_id,
                ),
            )
            .order_by(col(BillingProfileRow.created_at))
        )
        return [_profile(row) for row in (await self._session.exec(statement)).all()]


class PostgresOverrideRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, namespace: str, customer_id: str, *, lock: bool = False) -> CustomerOverride | None:
        statement = select(BillingCustomerOverrideRow).where(
            BillingCustomerOverrideRow.namespace == namespace,
            BillingCustomerOverrideRow.customer_id == customer_id,
            col(BillingCustomerOverrideRow.deleted_at).is_(None),
        )
        if lock:
            statement = statement.with_for_update()
        row = (await self._session.exec(statement)).first()
        return _override(row) if row is not None else None

    async def upsert(self, override: CustomerOverride) -> None:
        values = {
            "namespace": override.namespace,
            "customer_id": override.customer_id,
            "profile_id": override.profile_id,
            "workflow": workflow_to_json(override.workflow),
            "created_at": override.created_at,
            "updated_at": override.updated_at,
            "deleted_at": None,
        }
        statement = insert(BillingCustomerOverrideRow).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["namespace", "customer_id"],
            set_={
                name: getattr(statement.excluded, name) for name in values if name not in ("namespace", "customer_id")
            },
        )
        await self._session.exec(statement)

    async def delete(self, namespace: str, customer_id: str, at: datetime) -> bool:
        result = await self._session.exec(
            update(BillingCustomerOverrideRow)
            .where(
                col(BillingCustomerOverrideRow.namespace) == namespace,
                col(BillingCustomerOverrideRow.customer_id) == customer_id,
                col(BillingCustomerOverrideRow.deleted_at).is_(None),
            )
            .values(deleted_at=at, updated_at=at)
        )
        return bool(result.rowcount)

    async def customers_pinned_to(self, namespace: str, profile_id: str) -> list[str]:
        statement = (
            select(BillingCustomerOverrideRow.customer_id)
            .join(
                CustomerRow,
                and_(
                    col(CustomerRow.namespace) == BillingCustomerOverrideRow.namespace,
                    col(CustomerRow.id) == BillingCustomerOverrideRow.customer_id,
                ),
            )
            .where(
                BillingCustomerOverrideRow.namespace == namespace,
                BillingCustomerOverrideRow.profile_id == profile_id,
                col(BillingCustomerOverrideRow.deleted_at).is_(None),
                col(CustomerRow.deleted_at).is_(None),
            )
            .order_by(col(BillingCustomerOverrideRow.customer_id))
        )
        return list((await self._session.exec(statement)).all())

    async def unpinned_with_subscription_lines(self, namespace: str) -> list[str]:
        pinned = select(BillingCustomerOverrideRow.customer_id).where(
            BillingCustomerOverrideRow.namespace == namespace,
            BillingCustomerOverrideRow.customer_id == CustomerRow.id,
            col(BillingCustomerOverrideRow.deleted_at).is_(None),
            col(BillingCustomerOverrideRow.profile_id).is_not(None),
        )
        waiting = (
            select(InvoiceRow.id)
            .join(
                InvoiceLineRow,
                and_(
                    col(InvoiceLineRow.namespace) == InvoiceRow.namespace,
                    col(InvoiceLineRow.invoice_id) == InvoiceRow.id,
                ),
            )
            .where(
                InvoiceRow.namespace == namespace,
                InvoiceRow.customer_id == CustomerRow.id,
                InvoiceRow.status == InvoiceState.GATHERING.value,
                col(InvoiceRow.deleted_at).is_(None),
                InvoiceLineRow.status == LineStatus.VALID.value,
                col(InvoiceLineRow.deleted_at).is_(None),
                col(InvoiceLineRow.subscription_id).is_not(None),
            )
        )
        statement = (
            select(CustomerRow.id)
            .where(
                CustomerRow.namespace == namespace,
                col(CustomerRow.deleted_at).is_(None),
                waiting.exists(),
                ~pinned.exists(),
            )
            .order_by(col(CustomerRow.id))
        )
        return list((await self._session.exec(statement)).all())

    async def list_customers(
        self, namespace: str, query: OverrideListQuery, default_profile_id: str | None
    ) -> tuple[list[tuple[Customer, CustomerOverride | None]], int]:
        # Customers are paged on their own, with the override conditions as correlated EXISTS
        # probes of the (namespace, customer_id) index; then the page's overrides are read by ID.
        # (A join of every customer to its override ran as a nested loop over all overrides while
        # the planner had no statistics for freshly filled tables.)
        o = BillingCustomerOverrideRow
        live = and_(
            col(o.namespace) == CustomerRow.namespace,
            col(o.customer_id) == CustomerRow.id,
            col(o.deleted_at).is_(None),
        )

        def has_override(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
            return select(o.customer_id).where(live, *conditions).exists()

        statement = select(CustomerRow).where(CustomerRow.namespace == namespace, col(CustomerRow.deleted_at).is_(None))
        if query.customer_ids:
            statement = statement.where(col(CustomerRow.id).in_(query.customer_ids))
        if query.customer_name:
            statement = statement.where(col(CustomerRow.name).ilike(f"%{_like(query.customer_name)}%", escape="\\"))
        if query.customer_key:
            statement = statement.where(CustomerRow.key == query.customer_key)
        if query.customer_primary_email:
            statement = statement.where(
                col(CustomerRow.primary_email).ilike(f"%{_like(query.customer_primary_email)}%", escape="\\")
            )
        pins_profile = has_override(col(o.profile_id).is_not(None))
        pinned = has_override(col(o.profile_id).in_(query.profile_ids))
        wants_default = default_profile_id is not None and default_profile_id in query.profile_ids
        if query.customers_without_pinned_profile:
            statement = statement.where(~pins_profile)
        elif not query.include_all_customers:
            if not query.profile_ids:
                statement = statement.where(has_override())
            elif wants_default:
                statement = statement.where(or_(pinned, has_override(col(o.profile_id).is_(None))))
            else:
                statement = statement.where(pinned)
        elif query.profile_ids:
            statement = statement.where(or_(pinned, ~pins_profile) if wants_default else pinned)
        column = {
            "customerId": CustomerRow.id,
            "customerName": CustomerRow.name,
            "customerKey": CustomerRow.key,
            "customerPrimaryEmail": CustomerRow.primary_email,
            "customerCreatedAt": CustomerRow.created_at,
        }[query.order_by]
        order = col(column).desc() if query.order is SortOrder.DESC else col(column).asc()
        offset, limit = query.pagination.window()
        total = (await self._session.exec(select(func.count()).select_from(statement.subquery()))).one()
        paged = statement.order_by(order, col(CustomerRow.id)).offset(offset)
        if limit is not None:
            paged = paged.limit(limit)
        customers = (await self._session.exec(paged)).all()
        overrides: dict[str, CustomerOverride] = {}
        if customers:
            found = await self._session.exec(
                select(o).where(
                    o.namespace == namespace,
                    col(o.customer_id).in_([c.id for c in customers]),
                    col(o.deleted_at).is_(None),
                )
            )
            overrides = {row.customer_id: _override(row) for row in found.all()}
        return [(customer_from_row(c), overrides.get(c.id)) for c in customers], int(total)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class PostgresBillingStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._apps = PostgresAppRepository(session)
        self._customer_data = PostgresCustomerAppDataRepository(session)
        self._profiles = PostgresProfileRepository(session)
        self._overrides = PostgresOverrideRepository(session)
        # Imported here: the invoice repository reuses this module's JSON helpers.
        from adapters.postgres.invoices import PostgresInvoiceRepository

        self._invoices = PostgresInvoiceRepository(session)

    @property
    def session(self) -> AsyncSession:
        return self._session

    @property
    def apps(self) -> PostgresAppRepository:
        return self._apps

    @property
    def customer_data(self) -> PostgresCustomerAppDataRepository:
        return self._customer_data

    @property
    def profiles(self) -> PostgresProfileRepository:
        return self._profiles

    @property
    def overrides(self) -> PostgresOverrideRepository:
        return self._overrides

    @property
    def invoices(self) -> PostgresInvoiceRepository:
        return self._invoices

    @property
    def numbers(self) -> TransactionInvoiceNumbers:
        return TransactionInvoiceNumbers(self._session)

    async def commit(self) -> None:
        await self._session.commit()


def billing_unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> UnitOfWork:
    @asynccontextmanager
    async def unit() -> AsyncIterator[PostgresBillingStore]:
        async with sessions() as session:
            try:
                yield PostgresBillingStore(session)
            finally:
                if session.in_transaction():
                    await session.rollback()

    return unit


class PostgresInvoiceNumbers:
    """InvoiceNumbers: one row per (namespace, scope), incremented in its own transaction (for an
    app bound outside an invoice's state change; invoices take theirs from `BillingStore.numbers`,
    `TransactionInvoiceNumbers`, in the transaction of the state change)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def next_number(self, namespace: str, scope: str) -> int:
        async with self._sessions() as session:
            value = await TransactionInvoiceNumbers(session).next_number(namespace, scope)
            await session.commit()
        return value


class TransactionInvoiceNumbers:
    """TransactionNumbers: the number is taken with the state change that uses it, so one rolled
    back gives it back (gap-free), and the sequence's row stays locked until that transaction ends
    (issuing serializes per namespace and scope, as a gap-free sequence must)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def next_number(self, namespace: str, scope: str) -> int:
        return await self.reserve(namespace, scope, 1)

    async def reserve(self, namespace: str, scope: str, count: int) -> int:
        params = {"namespace": namespace, "scope": scope, "count": count}
        return int((await self._session.exec(_RESERVE, params=params)).scalar_one()) - count + 1

    async def give_back(self, namespace: str, scope: str, count: int) -> None:
        await self._session.exec(_GIVE_BACK, params={"b_namespace": namespace, "b_scope": scope, "count": count})


# Built once (every issued invoice takes a number).
_SEQUENCES = BillingSequenceRow.__table__  # type: ignore[attr-defined]
_RESERVE = (
    insert(BillingSequenceRow)
    .values(namespace=bindparam("namespace"), scope=bindparam("scope"), last_value=bindparam("count"))
    .on_conflict_do_update(
        index_elements=["namespace", "scope"],
        set_={"last_value": _SEQUENCES.c.last_value + bindparam("count")},
    )
    .returning(_SEQUENCES.c.last_value)
)
# An UPDATE's parameters must not be named after its table's columns (SQLAlchemy reserves those).
_GIVE_BACK = (
    update(BillingSequenceRow)
    .where(_SEQUENCES.c.namespace == bindparam("b_namespace"), _SEQUENCES.c.scope == bindparam("b_scope"))
    .values(last_value=_SEQUENCES.c.last_value - bindparam("count"))
)
