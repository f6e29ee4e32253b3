"""Plan, add-on and plan add-on repositories over Postgres (catalog_tables.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.catalog_tables import AddonRow, PlanAddonRow, PlanRow
from domain.catalog.addons import Addon, PlanAddonInput, PlanAddonRecord, parse_addon
from domain.catalog.plans import Plan, parse_plan
from domain.errors import ConflictError, FieldViolation


def _violations(items: Sequence[FieldViolation]) -> list[dict[str, Any]]:
    return [{"field": v.field, "message": v.message, "code": v.code} for v in items]


def _from_violations(items: list[dict[str, Any]]) -> tuple[FieldViolation, ...]:
    return tuple(FieldViolation(i["field"], i["message"], i["code"]) for i in items)


def _plan(row: PlanRow) -> Plan:
    content, issues = parse_plan(row.document)
    if content is None:  # written by this code, so only a schema drift gets here
        raise RuntimeError(f"stored plan {row.id} does not read back: {issues.errors}")
    return Plan(
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


def _plan_row(plan: Plan) -> PlanRow:
    return PlanRow(
        namespace=plan.namespace,
        id=plan.id,
        key=plan.key,
        version=plan.version,
        currency=plan.content.currency,
        document=plan.content.document(),
        validation_errors=_violations(plan.validation_errors),
        effective_from=plan.effective_from,
        effective_to=plan.effective_to,
        created_at=plan.created_at,
        updated_at=plan.updated_at,
        deleted_at=plan.deleted_at,
    )


def _addon(row: AddonRow) -> Addon:
    content, issues = parse_addon(row.document)
    if content is None:
        raise RuntimeError(f"stored add-on {row.id} does not read back: {issues.errors}")
    return Addon(
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


def _addon_row(addon: Addon) -> AddonRow:
    return AddonRow(
        namespace=addon.namespace,
        id=addon.id,
        key=addon.key,
        version=addon.version,
        currency=addon.content.currency,
        document=addon.content.document(),
        validation_errors=_violations(addon.validation_errors),
        effective_from=addon.effective_from,
        effective_to=addon.effective_to,
        created_at=addon.created_at,
        updated_at=addon.updated_at,
        deleted_at=addon.deleted_at,
    )


class PostgresPlanRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, plan: Plan) -> None:
        async with self._sessions() as session:
            session.add(_plan_row(plan))
            try:
                await session.commit()
            except IntegrityError as exc:
                raise ConflictError(f"plan {plan.key!r}: a draft or version {plan.version} exists") from exc

    async def save(self, plan: Plan) -> None:
        async with self._sessions() as session:
            await session.merge(_plan_row(plan))
            await session.commit()

    async def publish(self, plan: Plan, archived: Sequence[Plan]) -> None:
        async with self._sessions() as session:
            for other in archived:
                await session.merge(_plan_row(other))
            await session.merge(_plan_row(plan))
            await session.commit()

    async def get(self, namespace: str, plan_id: str) -> Plan | None:
        async with self._sessions() as session:
            row = await session.get(PlanRow, (namespace, plan_id))
        return _plan(row) if row is not None else None

    async def list_plans(self, namespace: str, keys: Sequence[str] = (), include_deleted: bool = False) -> list[Plan]:
        statement = select(PlanRow).where(PlanRow.namespace == namespace)
        if keys:
            statement = statement.where(col(PlanRow.key).in_(list(keys)))
        if not include_deleted:
            statement = statement.where(col(PlanRow.deleted_at).is_(None))
        async with self._sessions() as session:
            return [_plan(row) for row in (await session.exec(statement)).all()]


class PostgresAddonRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, addon: Addon) -> None:
        async with self._sessions() as session:
            session.add(_addon_row(addon))
            try:
                await session.commit()
            except IntegrityError as exc:
                raise ConflictError(f"add-on {addon.key!r}: a draft or version {addon.version} exists") from exc

    async def save(self, addon: Addon) -> None:
        async with self._sessions() as session:
            await session.merge(_addon_row(addon))
            await session.commit()

    async def publish(self, addon: Addon, archived: Sequence[Addon]) -> None:
        async with self._sessions() as session:
            for other in archived:
                await session.merge(_addon_row(other))
            await session.merge(_addon_row(addon))
            await session.commit()

    async def get(self, namespace: str, addon_id: str) -> Addon | None:
        async with self._sessions() as session:
            row = await session.get(AddonRow, (namespace, addon_id))
        return _addon(row) if row is not None else None

    async def list_addons(self, namespace: str, keys: Sequence[str] = (), include_deleted: bool = False) -> list[Addon]:
        statement = select(AddonRow).where(AddonRow.namespace == namespace)
        if keys:
            statement = statement.where(col(AddonRow.key).in_(list(keys)))
        if not include_deleted:
            statement = statement.where(col(AddonRow.deleted_at).is_(None))
        async with self._sessions() as session:
            return [_addon(row) for row in (await session.exec(statement)).all()]


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
