"""Plan, add-on and plan add-on repositories over Postgres (catalog_tables.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic

from sqlalchemy import and_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.catalog_tables import AddonRow, PlanAddonRow, PlanRow, VersionRow
from domain.catalog.addons import Addon, PlanAddonInput, PlanAddonRecord, parse_addon
from domain.catalog.plans import Plan, parse_plan
from domain.catalog.versions import VersionContent, VersionT
from domain.catalog.wire import Issues
from domain.errors import ConflictError, FieldViolation


def _violations(items: Sequence[FieldViolation]) -> list[dict[str, Any]]:
    return [{"field": v.field, "message": v.message, "code": v.code} for v in items]


def _from_violations(items: list[dict[str, Any]]) -> tuple[FieldViolation, ...]:
    return tuple(FieldViolation(i["field"], i["message"], i["code"]) for i in items)


class _PostgresVersionRepository(Generic[VersionT]):
    """One catalog entry's versions, a row each in its table; the content is stored as its create
    JSON and read back with the parser that checks API input."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        table: type[VersionRow],
        entity: type[VersionT],
        parse: Callable[[Any], tuple[VersionContent | None, Issues]],
        noun: str,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._entity = entity
        self._parse = parse
        self._noun = noun

    def _version(self, row: VersionRow) -> VersionT:
        content, issues = self._parse(row.document)
        if content is None:  # written by this code, so only a schema drift gets here
            raise RuntimeError(f"stored {self._noun} {row.id} does not read back: {issues.errors}")
        return self._entity(
            id=row.id,
            namespace=row.namespace,
            version=row.version,
            content=content,
            created_at=row.created_at,
            updated_at=row.updated_at,
            effective_from=row.effective_from,
            effective_to=row.effective_to,
            deleted_at=row.deleted_at,
            validation_errors=_from_violations(row.validation_errors),
        )

    def _row(self, version: VersionT) -> VersionRow:
        return self._table(
            namespace=version.namespace,
            id=version.id,
            key=version.key,
            version=version.version,
            currency=version.content.currency,
            document=version.content.document(),
            validation_errors=_violations(version.validation_errors),
            effective_from=version.effective_from,
            effective_to=version.effective_to,
            created_at=version.created_at,
            updated_at=version.updated_at,
            deleted_at=version.deleted_at,
        )

    async def create(self, version: VersionT) -> None:
        async with self._sessions() as session:
            session.add(self._row(version))
            try:
                await session.commit()
            except IntegrityError as exc:
                raise ConflictError(
                    f"{self._noun} {version.key!r}: a draft or version {version.version} exists"
                ) from exc

    async def save(self, version: VersionT) -> None:
        async with self._sessions() as session:
            await session.merge(self._row(version))
            await session.commit()

    async def publish(self, version: VersionT, archived: Sequence[VersionT]) -> None:
        async with self._sessions() as session:
            for other in archived:
                await session.merge(self._row(other))
            await session.merge(self._row(version))
            await session.commit()

    async def get(self, namespace: str, version_id: str) -> VersionT | None:
        async with self._sessions() as session:
            row = await session.get(self._table, (namespace, version_id))
        return self._version(row) if row is not None else None

    async def list_versions(
        self, namespace: str, keys: Sequence[str] = (), include_deleted: bool = False
    ) -> list[VersionT]:
        table = self._table
        statement = select(table).where(table.namespace == namespace)
        if keys:
            statement = statement.where(col(table.key).in_(list(keys)))
        if not include_deleted:
            statement = statement.where(col(table.deleted_at).is_(None))
        async with self._sessions() as session:
            return [self._version(row) for row in (await session.exec(statement)).all()]


class PostgresPlanRepository(_PostgresVersionRepository[Plan]):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions, PlanRow, Plan, parse_plan, "plan")


class PostgresAddonRepository(_PostgresVersionRepository[Addon]):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions, AddonRow, Addon, parse_addon, "add-on")


def _assignment(row: PlanAddonRow) -> PlanAddonRecord:
    return PlanAddonRecord(
        id=row.id,
        namespace=row.namespace,
        plan_id=row.plan_id,
        addon_id=row.addon_id,
        content=PlanAddonInput(row.from_plan_phase, row.max_quantity, dict(row.meta)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _assignment_row(record: PlanAddonRecord) -> PlanAddonRow:
    return PlanAddonRow(
        namespace=record.namespace,
        id=record.id,
        plan_id=record.plan_id,
        addon_id=record.addon_id,
        from_plan_phase=record.content.from_plan_phase,
        max_quantity=record.content.max_quantity,
        meta=dict(record.content.metadata),
        validation_errors=[],
        created_at=record.created_at,
        updated_at=record.updated_at,
        deleted_at=record.deleted_at,
    )


class PostgresPlanAddonRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, assignment: PlanAddonRecord) -> None:
        async with self._sessions() as session:
            session.add(_assignment_row(assignment))
            try:
                await session.commit()
            except IntegrityError as exc:
                raise ConflictError("the add-on is already assigned to this plan") from exc

    async def save(self, assignment: PlanAddonRecord) -> None:
        async with self._sessions() as session:
            await session.merge(_assignment_row(assignment))
            await session.commit()

    async def list_for_plan(self, namespace: str, plan_id: str, include_deleted: bool = False) -> list[PlanAddonRecord]:
        statement = select(PlanAddonRow).where(PlanAddonRow.namespace == namespace, PlanAddonRow.plan_id == plan_id)
        if not include_deleted:
            statement = statement.where(col(PlanAddonRow.deleted_at).is_(None))
        async with self._sessions() as session:
            return [_assignment(row) for row in (await session.exec(statement)).all()]

    async def list_for_addon(self, namespace: str, addon_id: str) -> list[PlanAddonRecord]:
        statement = (
            select(PlanAddonRow)
            .join(
                PlanRow, and_(col(PlanRow.namespace) == PlanAddonRow.namespace, col(PlanRow.id) == PlanAddonRow.plan_id)
            )
            .where(
                PlanAddonRow.namespace == namespace,
                PlanAddonRow.addon_id == addon_id,
                col(PlanAddonRow.deleted_at).is_(None),
                col(PlanRow.deleted_at).is_(None),
            )
        )
        async with self._sessions() as session:
            return [_assignment(row) for row in (await session.exec(statement)).all()]
