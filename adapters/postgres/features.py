"""FeatureRepository over Postgres."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.entitlements_tables import FeatureRow
from domain.catalog.models import Feature, filter_to_json
from domain.catalog.unit_cost import UnitCost
from domain.errors import ConflictError
from domain.metering.query import FilterString


def _to_domain(row: FeatureRow) -> Feature:
    return Feature(
        id=row.id,
        namespace=row.namespace,
        key=row.key,
        name=row.name,
        meter_slug=row.meter_slug,
        filters={key: FilterString.from_json(value, key) for key, value in row.filters.items()},
        metadata=dict(row.meta),
        created_at=row.created_at,
        updated_at=row.updated_at,
        archived_at=row.archived_at,
        unit_cost=UnitCost.from_rest(row.unit_cost) if row.unit_cost is not None else None,
    )


def _to_row(f: Feature) -> FeatureRow:
    return FeatureRow(
        namespace=f.namespace,
        id=f.id,
        key=f.key,
        name=f.name,
        meter_slug=f.meter_slug,
        filters={key: filter_to_json(value) for key, value in f.filters.items()},
        meta=dict(f.metadata),
        created_at=f.created_at,
        updated_at=f.updated_at,
        archived_at=f.archived_at,
        unit_cost=f.unit_cost.rest() if f.unit_cost is not None else None,
    )


class PostgresFeatureRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, feature: Feature) -> None:
        async with self._sessions() as session:
            session.add(_to_row(feature))
            try:
                await session.commit()
            except IntegrityError as exc:
                raise ConflictError(f"feature with key {feature.key!r} already exists") from exc

    async def update(self, feature: Feature) -> None:
        async with self._sessions() as session:
            await session.merge(_to_row(feature))
            await session.commit()

    async def get(self, namespace: str, id_or_key: str, include_archived: bool = True) -> Feature | None:
        async with self._sessions() as session:
            row = await session.get(FeatureRow, (namespace, id_or_key))
            if row is not None and (include_archived or row.archived_at is None):
                return _to_domain(row)
            statement = select(FeatureRow).where(
                FeatureRow.namespace == namespace, FeatureRow.key == id_or_key, col(FeatureRow.archived_at).is_(None)
            )
            found = (await session.exec(statement)).first()
        return _to_domain(found) if found is not None else None

    async def list_features(self, namespace: str, include_archived: bool) -> list[Feature]:
        statement = select(FeatureRow).where(FeatureRow.namespace == namespace)
        if not include_archived:
            statement = statement.where(col(FeatureRow.archived_at).is_(None))
        async with self._sessions() as session:
            return [_to_domain(row) for row in (await session.exec(statement)).all()]
