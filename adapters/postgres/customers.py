"""CustomerRepository and SubjectRepository over Postgres."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ARRAY, String, and_, any_, bindparam, delete, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.db import autocommit, plain_columns
from adapters.postgres.entitlements_tables import CustomerRow, CustomerSubjectRow, SubjectRow
from adapters.postgres.subscriptions_tables import SubscriptionRow
from domain.customers.models import Address, Customer, CustomerListQuery, Subject
from domain.errors import ConflictError
from domain.pagination import SortOrder


def _contains_pattern(text: str) -> str:
    """An ILIKE pattern (escape character backslash) matching `text` anywhere, its own % and _ literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def customer_from_row(row: Any) -> Customer:
    """From a CustomerRow or a result row of its columns under the same names."""
    return Customer(
        id=row.id,
        namespace=row.namespace,
        name=row.name,
        key=row.key,
        subject_keys=tuple(row.subject_keys),
        description=row.description,
        primary_email=row.primary_email,
        currency=row.currency,
        billing_address=Address.from_dict(row.billing_address),
        metadata=dict(row.meta),
        annotations=dict(row.annotations),
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _to_row(c: Customer) -> CustomerRow:
    return CustomerRow(
        namespace=c.namespace,
        id=c.id,
        key=c.key,
        name=c.name,
        description=c.description,
        primary_email=c.primary_email,
        currency=c.currency,
        subject_keys=list(c.subject_keys),
        billing_address=c.billing_address.as_dict() if c.billing_address else None,
        meta=dict(c.metadata),
        annotations=dict(c.annotations),
        created_at=c.created_at,
        updated_at=c.updated_at,
        deleted_at=c.deleted_at,
    )


_C = CustomerRow.__table__.c  # type: ignore[attr-defined]
# Built once (building a statement costs more than running it); plain rows, no ORM objects.
_BY_ID_OR_KEY = sa_select(*plain_columns(CustomerRow)).where(
    _C.namespace == bindparam("namespace"),
    or_(_C.id == bindparam("id_or_key"), and_(_C.key == bindparam("id_or_key"), _C.deleted_at.is_(None))),
)
# The same for several IDs or keys at once.
_TOKENS = bindparam("ids_or_keys", type_=ARRAY(String))
_BY_IDS_OR_KEYS = sa_select(*plain_columns(CustomerRow)).where(
    _C.namespace == bindparam("namespace"),
    or_(_C.id == any_(_TOKENS), and_(_C.key == any_(_TOKENS), _C.deleted_at.is_(None))),
)


class PostgresCustomerRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def _write(self, customer: Customer, insert: bool) -> None:
        async with self._sessions() as session:
            try:
                if insert:
                    session.add(_to_row(customer))
                else:
                    await session.merge(_to_row(customer))
                await session.exec(
                    delete(CustomerSubjectRow).where(
                        col(CustomerSubjectRow.namespace) == customer.namespace,
                        col(CustomerSubjectRow.customer_id) == customer.id,
                    )
                )
                await session.flush()
                if customer.deleted_at is None:
                    for subject in customer.usage_subjects:
                        session.add(
                            CustomerSubjectRow(
                                namespace=customer.namespace, subject_key=subject, customer_id=customer.id
                            )
                        )
                await session.commit()
            except IntegrityError as exc:
                await session.rollback()
                raise ConflictError("customer key or subject key is already taken") from exc

    async def create(self, customer: Customer) -> None:
        await self._write(customer, insert=True)

    async def update(self, customer: Customer) -> None:
        await self._write(customer, insert=False)

    async def get(self, namespace: str, id_or_key: str, include_deleted: bool = False) -> Customer | None:
        # By ID a deleted customer is still found (callers decide); by key only a live one. One
        # statement for both (the ID wins when another customer's key equals it).
        rows = await autocommit(self._sessions, _BY_ID_OR_KEY, {"namespace": namespace, "id_or_key": id_or_key})
        row = next((r for r in rows if r.id == id_or_key), rows[0] if rows else None)
        return customer_from_row(row) if row is not None else None

    async def resolve(self, namespace: str, ids_or_keys: Sequence[str]) -> dict[str, Customer]:
        # What `get` finds for each, in one statement: by ID (deleted too), else a live one by key.
        tokens = list(dict.fromkeys(ids_or_keys))
        if not tokens:
            return {}
        rows = await autocommit(self._sessions, _BY_IDS_OR_KEYS, {"namespace": namespace, "ids_or_keys": tokens})
        by_id = {row.id: row for row in rows}
        by_key = {row.key: row for row in rows if row.key is not None and row.deleted_at is None}
        found = {token: by_id.get(token, by_key.get(token)) for token in tokens}
        return {token: customer_from_row(row) for token, row in found.items() if row is not None}

    async def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Customer]:
        if not ids:
            return {}
        statement = select(CustomerRow).where(CustomerRow.namespace == namespace, col(CustomerRow.id).in_(list(ids)))
        async with self._sessions() as session:
            return {row.id: customer_from_row(row) for row in (await session.exec(statement)).all()}

    async def list_customers(self, namespace: str, query: CustomerListQuery) -> tuple[list[Customer], int]:
        statement = select(CustomerRow).where(CustomerRow.namespace == namespace)
        if not query.include_deleted:
            statement = statement.where(col(CustomerRow.deleted_at).is_(None))
        # Case-insensitive partial matches with the filter's own % and _ taken literally, as
        # OpenMeter's contains filters (ent's ContainsFold escapes them).
        if query.key:
            statement = statement.where(col(CustomerRow.key).ilike(_contains_pattern(query.key), escape="\\"))
        if query.name:
            statement = statement.where(col(CustomerRow.name).ilike(_contains_pattern(query.name), escape="\\"))
        if query.primary_email:
            pattern = _contains_pattern(query.primary_email)
            statement = statement.where(col(CustomerRow.primary_email).ilike(pattern, escape="\\"))
        if query.subject:
            # A case-insensitive partial match on any of the customer's subject keys (OpenAPI
            # listCustomers `subject`; OpenMeter's containsFilter), not one key equal to it. A
            # deleted customer's subjects are released with it: includeDeleted does not bring it
            # back by subject (OpenMeter matches live customer_subjects rows only).
            subjects = (
                func.jsonb_array_elements_text(col(CustomerRow.subject_keys))
                .table_valued("subject_key")
                .render_derived()
            )
            statement = statement.where(col(CustomerRow.deleted_at).is_(None)).where(
                sa_select(1)
                .select_from(subjects)
                .where(subjects.c.subject_key.ilike(_contains_pattern(query.subject), escape="\\"))
                .exists()
            )
        if query.plan_key:
            at = query.at or datetime.now(UTC)
            subscribed = select(SubscriptionRow.customer_id).where(
                SubscriptionRow.namespace == namespace,
                SubscriptionRow.plan_key == query.plan_key,
                col(SubscriptionRow.deleted_at).is_(None),
                col(SubscriptionRow.active_from) <= at,
                col(SubscriptionRow.active_to).is_(None) | (col(SubscriptionRow.active_to) > at),
            )
            statement = statement.where(col(CustomerRow.id).in_(subscribed))
        column = {"name": CustomerRow.name, "createdAt": CustomerRow.created_at}.get(query.order_by, CustomerRow.id)
        order = col(column).desc() if query.order is SortOrder.DESC else col(column).asc()
        offset, limit = query.pagination.window()
        async with self._sessions() as session:
            total = (await session.exec(select(func.count()).select_from(statement.subquery()))).one()
            paged = statement.order_by(order, col(CustomerRow.id)).offset(offset)
            if limit is not None:
                paged = paged.limit(limit)
            rows = (await session.exec(paged)).all()
        return [customer_from_row(row) for row in rows], int(total)

    async def by_subject(self, namespace: str, subject_key: str) -> Customer | None:
        async with self._sessions() as session:
            owner = await session.get(CustomerSubjectRow, (namespace, subject_key))
            if owner is None:
                return None
            row = await session.get(CustomerRow, (namespace, owner.customer_id))
        return customer_from_row(row) if row is not None and row.deleted_at is None else None

    async def owners(self, namespace: str, subject_keys: Sequence[str]) -> dict[str, str]:
        if not subject_keys:
            return {}
        statement = select(CustomerSubjectRow).where(
            CustomerSubjectRow.namespace == namespace, col(CustomerSubjectRow.subject_key).in_(list(subject_keys))
        )
        async with self._sessions() as session:
            return {row.subject_key: row.customer_id for row in (await session.exec(statement)).all()}


def _subject(row: SubjectRow) -> Subject:
    return Subject(
        id=row.id,
        namespace=row.namespace,
        key=row.key,
        display_name=row.display_name,
        metadata=row.meta,
        current_period_start=row.current_period_start,
        current_period_end=row.current_period_end,
        stripe_customer_id=row.stripe_customer_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class PostgresSubjectRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def upsert(self, subjects: Sequence[Subject]) -> list[Subject]:
        out: list[Subject] = []
        async with self._sessions() as session:
            for subject in subjects:
                statement = select(SubjectRow).where(
                    SubjectRow.namespace == subject.namespace, SubjectRow.key == subject.key
                )
                row = (await session.exec(statement.with_for_update())).first()
                if row is None:
                    row = SubjectRow(
                        namespace=subject.namespace,
                        id=subject.id,
                        key=subject.key,
                        created_at=subject.created_at,
                        updated_at=subject.updated_at,
                    )
                # Only the fields given; an existing subject keeps the others (SubjectRepository.upsert).
                if subject.display_name is not None:
                    row.display_name = subject.display_name
                if subject.metadata is not None:
                    row.meta = dict(subject.metadata)
                if subject.current_period_start is not None:
                    row.current_period_start = subject.current_period_start
                if subject.current_period_end is not None:
                    row.current_period_end = subject.current_period_end
                if subject.stripe_customer_id is not None:
                    row.stripe_customer_id = subject.stripe_customer_id
                row.updated_at = subject.updated_at
                session.add(row)
                await session.flush()
                out.append(_subject(row))
            await session.commit()
        return out

    async def list_subjects(self, namespace: str) -> list[Subject]:
        # By ID, as OpenMeter lists them: IDs are ULIDs, so in the order the subjects were made.
        statement = select(SubjectRow).where(SubjectRow.namespace == namespace).order_by(col(SubjectRow.id))
        async with self._sessions() as session:
            return [_subject(row) for row in (await session.exec(statement)).all()]

    async def get(self, namespace: str, id_or_key: str) -> Subject | None:
        statement = select(SubjectRow).where(
            SubjectRow.namespace == namespace, or_(col(SubjectRow.id) == id_or_key, col(SubjectRow.key) == id_or_key)
        )
        async with self._sessions() as session:
            row = (await session.exec(statement)).first()
        return _subject(row) if row is not None else None

    async def by_keys(self, namespace: str, keys: Sequence[str]) -> list[Subject]:
        if not keys:
            return []
        statement = select(SubjectRow).where(SubjectRow.namespace == namespace, col(SubjectRow.key).in_(list(keys)))
        async with self._sessions() as session:
            return [_subject(row) for row in (await session.exec(statement)).all()]

    async def delete(self, namespace: str, subject_id: str) -> None:
        async with self._sessions() as session:
            await session.exec(
                delete(SubjectRow).where(col(SubjectRow.namespace) == namespace, col(SubjectRow.id) == subject_id)
            )
            await session.commit()
