"""MeterRepository over Postgres."""

from __future__ import annotations

from sqlalchemy import cast, func, or_, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.tables import MeterRow
from domain.metering.models import VALUES_BACKFILLED, Aggregation, Meter


def _to_domain(row: MeterRow) -> Meter:
    return Meter(
        id=row.id,
        namespace=row.namespace,
        slug=row.slug,
        name=row.name,
        description=row.description,
        aggregation=Aggregation(row.aggregation),
        event_type=row.event_type,
        event_from=row.event_from,
        value_property=row.value_property,
        group_by=dict(row.group_by),
        metadata=dict(row.meta),
        annotations=dict(row.annotations),
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _to_row(meter: Meter) -> MeterRow:
    return MeterRow(
        namespace=meter.namespace,
        id=meter.id,
        slug=meter.slug,
        name=meter.name,
        description=meter.description,
        aggregation=meter.aggregation.value,
        event_type=meter.event_type,
        event_from=meter.event_from,
        value_property=meter.value_property,
        group_by=meter.group_by,
        meta=meter.metadata,
        annotations=meter.annotations,
        created_at=meter.created_at,
        updated_at=meter.updated_at,
        deleted_at=meter.deleted_at,
    )


class PostgresMeterRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def list_meters(self, namespace: str, include_deleted: bool = False) -> list[Meter]:
        statement = select(MeterRow).where(MeterRow.namespace == namespace)
        if not include_deleted:
            statement = statement.where(col(MeterRow.deleted_at).is_(None))
        statement = statement.order_by(col(MeterRow.created_at), col(MeterRow.id))
        async with self._sessions() as session:
            return [_to_domain(row) for row in (await session.exec(statement)).all()]

    async def get(self, namespace: str, id_or_slug: str) -> Meter | None:
        """By ID (deleted included, as OpenMeter answers a deleted meter with deletedAt set), or live slug."""
        statement = (
            select(MeterRow)
            .where(MeterRow.namespace == namespace)
            .where(
                or_(
                    col(MeterRow.id) == id_or_slug,
                    (col(MeterRow.slug) == id_or_slug) & col(MeterRow.deleted_at).is_(None),
                )
            )
        )
        async with self._sessions() as session:
            row = (await session.exec(statement)).first()
        return _to_domain(row) if row else None

    async def get_by_slug_any(self, namespace: str, slug: str) -> Meter | None:
        statement = (
            select(MeterRow)
            .where(MeterRow.namespace == namespace, MeterRow.slug == slug)
            .where(col(MeterRow.deleted_at).is_(None))
        )
        async with self._sessions() as session:
            row = (await session.exec(statement)).first()
        return _to_domain(row) if row else None

    async def list_all_live(self) -> list[Meter]:
        statement = select(MeterRow).where(col(MeterRow.deleted_at).is_(None)).order_by(col(MeterRow.namespace))
        async with self._sessions() as session:
            return [_to_domain(row) for row in (await session.exec(statement)).all()]

    async def mark_backfilled(self, meter: Meter) -> bool:
        # Compare-and-set on updated_at: a meter whose paths changed meanwhile stays unmarked.
        statement = (
            update(MeterRow)
            .where(col(MeterRow.namespace) == meter.namespace, col(MeterRow.id) == meter.id)
            .where(col(MeterRow.updated_at) == meter.updated_at)
            .values(
                annotations=func.coalesce(col(MeterRow.annotations), cast({}, JSONB)).op("||")(
                    cast({VALUES_BACKFILLED: True}, JSONB)
                )
            )
        )
        async with self._sessions() as session:
            result = await session.exec(statement)
            await session.commit()
            return bool(result.rowcount)

    async def create(self, meter: Meter) -> None:
        async with self._sessions() as session:
            session.add(_to_row(meter))
            await session.commit()

    async def update(self, meter: Meter) -> None:
        # One statement writing every column. An ORM merge reads the row and writes only the columns
        # that differ from what it read, so a backfill mark (mark_backfilled) committed between its
        # read and its write survived a change of the meter's paths: the changed meter then read as
        # backfilled, and its queries read the value maps, where stored events lack the new paths.
        row = _to_row(meter)
        values = {column.key: getattr(row, column.key) for column in sa_inspect(MeterRow).column_attrs}
        statement = (
            update(MeterRow)
            .where(col(MeterRow.namespace) == meter.namespace, col(MeterRow.id) == meter.id)
            .values(**values)
        )
        async with self._sessions() as session:
            await session.exec(statement)
            await session.commit()
