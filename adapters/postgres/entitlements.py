"""Entitlement, grant and balance-snapshot repositories over Postgres."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, DateTime, String, and_, any_, bindparam, delete, func, or_, true, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.db import autocommit, plain_columns
from adapters.postgres.entitlements_tables import (
    BalanceSnapshotRow,
    CustomerSubjectRow,
    EntitlementRow,
    FeatureRow,
    GrantRow,
    UsageResetRow,
)
from adapters.postgres.tables import MeterRow
from domain.entitlements.engine import Snapshot
from domain.entitlements.grants import ExpirationDuration, ExpirationPeriod
from domain.entitlements.models import Entitlement, EntitlementListQuery, EntitlementType, StoredGrant, UsageReset
from domain.entitlements.recurrence import IsoDuration, Recurrence
from domain.errors import ConflictError, NotFoundError


def _entitlement(row: Any, resets: Sequence[UsageReset]) -> Entitlement:
    """From an EntitlementRow or a result row of its columns under the same names."""
    return Entitlement(
        id=row.id,
        namespace=row.namespace,
        type=EntitlementType(row.type),
        feature_id=row.feature_id,
        feature_key=row.feature_key,
        customer_id=row.customer_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        active_from=row.active_from,
        active_to=row.active_to,
        deleted_at=row.deleted_at,
        metadata=dict(row.meta),
        annotations=dict(row.annotations),
        usage_interval=IsoDuration.parse(row.usage_interval) if row.usage_interval else None,
        usage_anchor=row.usage_anchor,
        measure_usage_from=row.measure_usage_from,
        is_soft_limit=row.is_soft_limit,
        issue_after_reset=row.issue_after_reset,
        issue_after_reset_priority=row.issue_after_reset_priority,
        preserve_overage_at_reset=row.preserve_overage_at_reset,
        config=row.config,
        resets=tuple(sorted(resets, key=lambda r: r.at)),
        inputs_revision=row.balance_inputs_revision,
    )


def _entitlement_row(e: Entitlement) -> EntitlementRow:
    return EntitlementRow(
        namespace=e.namespace,
        id=e.id,
        type=e.type.value,
        feature_id=e.feature_id,
        feature_key=e.feature_key,
        customer_id=e.customer_id,
        meta=dict(e.metadata),
        annotations=dict(e.annotations),
        usage_interval=e.usage_interval.iso() if e.usage_interval else None,
        usage_anchor=e.usage_anchor,
        measure_usage_from=e.measure_usage_from,
        is_soft_limit=e.is_soft_limit,
        issue_after_reset=e.issue_after_reset,
        issue_after_reset_priority=e.issue_after_reset_priority,
        preserve_overage_at_reset=e.preserve_overage_at_reset,
        config=e.config,
        created_at=e.created_at,
        updated_at=e.updated_at,
        active_from=e.active_from,
        active_to=e.active_to,
        deleted_at=e.deleted_at,
    )


def _grant(row: Any) -> StoredGrant:
    """From a GrantRow or a result row of its columns under the same names."""
    expiration = None
    if row.expiration_duration and row.expiration_count:
        expiration = ExpirationPeriod(ExpirationDuration(row.expiration_duration), row.expiration_count)
    recurrence = None
    if row.recurrence_interval and row.recurrence_anchor:
        recurrence = Recurrence(IsoDuration.parse(row.recurrence_interval), row.recurrence_anchor)
    return StoredGrant(
        id=row.id,
        namespace=row.namespace,
        entitlement_id=row.entitlement_id,
        amount=row.amount,
        priority=row.priority,
        effective_at=row.effective_at,
        expiration=expiration,
        expires_at=row.expires_at,
        max_rollover_amount=row.max_rollover_amount,
        min_rollover_amount=row.min_rollover_amount,
        metadata=dict(row.meta),
        annotations=dict(row.annotations),
        recurrence=recurrence,
        voided_at=row.voided_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _grant_row(g: StoredGrant) -> GrantRow:
    return GrantRow(
        namespace=g.namespace,
        id=g.id,
        entitlement_id=g.entitlement_id,
        amount=g.amount,
        priority=g.priority,
        effective_at=g.effective_at,
        expiration_duration=g.expiration.duration.value if g.expiration else None,
        expiration_count=g.expiration.count if g.expiration else None,
        expires_at=g.expires_at,
        max_rollover_amount=g.max_rollover_amount,
        min_rollover_amount=g.min_rollover_amount,
        meta=dict(g.metadata),
        annotations=dict(g.annotations),
        recurrence_interval=g.recurrence.interval.iso() if g.recurrence else None,
        recurrence_anchor=g.recurrence.anchor if g.recurrence else None,
        voided_at=g.voided_at,
        created_at=g.created_at,
        updated_at=g.updated_at,
        deleted_at=g.deleted_at,
    )


# The statements of an entitlement value's computation, built once (building one costs more than
# running it) and run through Core as plain rows (columns under the model's attribute names).
_E = EntitlementRow.__table__.c  # type: ignore[attr-defined]
_R = UsageResetRow.__table__.c  # type: ignore[attr-defined]
_G = GrantRow.__table__  # type: ignore[attr-defined]
_S = BalanceSnapshotRow.__table__  # type: ignore[attr-defined]
_CS = CustomerSubjectRow.__table__.c  # type: ignore[attr-defined]
_F = FeatureRow.__table__  # type: ignore[attr-defined]
_M = MeterRow.__table__  # type: ignore[attr-defined]

# Entitlements with their usage resets (a row per reset, or one with NULL reset columns).
_RESET_COLUMNS = (
    _R.reset_at,
    _R.anchor.label("reset_anchor"),
    _R.usage_interval.label("reset_usage_interval"),
    _R.preserve_overage.label("reset_preserve_overage"),
)
_ENTITLEMENTS = sa_select(*plain_columns(EntitlementRow), *_RESET_COLUMNS).select_from(
    EntitlementRow.__table__.outerjoin(  # type: ignore[attr-defined]
        UsageResetRow.__table__,  # type: ignore[attr-defined]
        and_(_R.namespace == _E.namespace, _R.entitlement_id == _E.id),
    )
)
_ENTITLEMENT_BY_ID = _ENTITLEMENTS.where(_E.namespace == bindparam("namespace"), _E.id == bindparam("id"))
# The metered entitlements a flush's usage can change, in one statement read through indexes, whatever
# the size of the namespace's catalogue (reading its meters and features first cost every flush as
# much): the subjects' live customers by the subject index, then each one's metered entitlements by
# the customer index, on features (archived ones too) of live meters of the flushed types. The
# per-customer LATERAL keeps the plan that way when Postgres plans it generically (a prepared
# statement after five runs) from stale statistics; a semi-join over the customers was planned as a
# scan of the namespace's subjects per entitlement, 10 x slower at 100 subjects.
_OWNERS = (
    sa_select(_CS.customer_id)
    .where(
        _CS.namespace == bindparam("namespace"),
        _CS.subject_key == any_(bindparam("subject_keys", type_=ARRAY(String))),
    )
    .distinct()
    .subquery("owners")
)
_TOUCHED = (
    sa_select(*plain_columns(EntitlementRow))
    .where(
        _E.namespace == bindparam("namespace"),
        _E.customer_id == _OWNERS.c.customer_id,
        _E.type == EntitlementType.METERED.value,
        _E.deleted_at.is_(None),
        _E.feature_id.in_(
            sa_select(_F.c.id)
            .select_from(_F.join(_M, and_(_M.c.namespace == _F.c.namespace, _M.c.slug == _F.c.meter_slug)))
            .where(
                _F.c.namespace == bindparam("namespace"),
                _M.c.deleted_at.is_(None),
                _M.c.event_type == any_(bindparam("event_types", type_=ARRAY(String))),
            )
        ),
    )
    .lateral("touched")
)
_METERED_TOUCHED_BY = sa_select(*_TOUCHED.c, *_RESET_COLUMNS).select_from(
    _OWNERS.join(_TOUCHED, true()).outerjoin(
        UsageResetRow.__table__,  # type: ignore[attr-defined]
        and_(_R.namespace == _TOUCHED.c.namespace, _R.entitlement_id == _TOUCHED.c.id),
    )
)
_ENTITLEMENTS_FOR_CUSTOMER = _ENTITLEMENTS.where(
    _E.namespace == bindparam("namespace"),
    _E.customer_id == bindparam("customer_id"),
    or_(
        _E.id == bindparam("id_or_key"),
        and_(
            _E.feature_key == bindparam("id_or_key"),
            or_(_E.deleted_at.is_(None), _E.deleted_at > bindparam("at", type_=DateTime(timezone=True))),
        ),
    ),
)

# The latest snapshot at or before :at (none when :at is NULL) and the entitlement's balance inputs
# revision beside every grant, or one row of NULL grant columns when there is none: a computation's
# inputs besides usage in one round trip.
_LATEST_SNAPSHOT = (
    sa_select(
        *[
            getattr(_S.c, name).label(f"snapshot_{name}")
            for name in ("at", "balances", "overage", "usage", "total_grant_usage", "period_start")
        ]
    )
    .where(
        _S.c.namespace == bindparam("namespace"),
        _S.c.entitlement_id == bindparam("entitlement_id"),
        _S.c.at <= bindparam("at", type_=DateTime(timezone=True)),
    )
    .order_by(_S.c.at.desc())
    .limit(1)
    .lateral("latest")
)
_INPUTS_REVISION = (
    sa_select(_E.balance_inputs_revision)
    .where(_E.namespace == bindparam("namespace"), _E.id == bindparam("entitlement_id"))
    .scalar_subquery()
)
_ONE = sa_select(_INPUTS_REVISION.label("inputs_revision")).subquery("one")
_GRANTS_WITH_LATEST_SNAPSHOT = sa_select(
    _ONE.c.inputs_revision, *_LATEST_SNAPSHOT.c, *plain_columns(GrantRow)
).select_from(
    _ONE.outerjoin(_LATEST_SNAPSHOT, true()).outerjoin(
        _G, and_(_G.c.namespace == bindparam("namespace"), _G.c.entitlement_id == bindparam("entitlement_id"))
    )
)

# One upsert (the same instant may be saved again by another computation), made only while the
# entitlement's balance inputs are at the revision the computation read: it waits (FOR SHARE) for a
# grant, void or reset being written, whose transaction drops the snapshots it outdates, and then
# finds the revision moved on. A snapshot of older inputs would otherwise outlive that drop.
_SNAPSHOT_INSERT = pg_insert(_S).from_select(
    [c.name for c in _S.c],
    sa_select(*[bindparam(c.name, type_=c.type) for c in _S.c])
    .where(
        _E.namespace == bindparam("namespace"),
        _E.id == bindparam("entitlement_id"),
        _E.balance_inputs_revision == bindparam("revision"),
    )
    .with_for_update(read=True),
)
_SAVE_SNAPSHOT = _SNAPSHOT_INSERT.on_conflict_do_update(
    index_elements=[c.name for c in _S.primary_key],
    set_={c.name: _SNAPSHOT_INSERT.excluded[c.name] for c in _S.c if not c.primary_key},
)


class PostgresEntitlementRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def _read(self, statement: Any, params: dict[str, Any] | None = None) -> list[Entitlement]:
        """The entitlements a select of _ENTITLEMENTS finds, each with its usage resets."""
        found: dict[str, Any] = {}
        resets: dict[str, list[UsageReset]] = {}
        for row in await autocommit(self._sessions, statement, params):
            found.setdefault(row.id, row)
            if row.reset_at is not None:
                resets.setdefault(row.id, []).append(
                    UsageReset(
                        at=row.reset_at,
                        anchor=row.reset_anchor,
                        interval=IsoDuration.parse(row.reset_usage_interval),
                        preserve_overage=row.reset_preserve_overage,
                    )
                )
        return [_entitlement(row, resets.get(row.id, [])) for row in found.values()]

    @staticmethod
    async def _lock_scope(session: AsyncSession, namespace: str, customer_id: str, feature_key: str) -> None:
        """Serialises writes to one (customer, feature key) until the transaction ends, so the
        overlap check and the write that follows it cannot interleave with another's."""
        scope = json.dumps(["entitlement", namespace, customer_id, feature_key])
        await session.exec(
            sa_select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("scope", scope), 0)))  # type: ignore[call-overload]
        )

    @staticmethod
    async def _overlapping(
        session: AsyncSession,
        namespace: str,
        customer_id: str,
        feature_key: str,
        start: datetime,
        end: datetime | None,
        exclude: Sequence[str],
    ) -> str | None:
        """The id of a live entitlement of the scope whose window meets [start, end), if any."""
        statement = select(EntitlementRow).where(
            EntitlementRow.namespace == namespace,
            EntitlementRow.customer_id == customer_id,
            EntitlementRow.feature_key == feature_key,
            col(EntitlementRow.deleted_at).is_(None),
        )
        rows = (await session.exec(statement)).all()
        for row in sorted(rows, key=lambda r: (r.active_from, r.id)):
            if row.id in exclude:
                continue
            if _entitlement(row, []).window_overlaps(start, end):
                return row.id
        return None

    async def create(
        self, entitlement: Entitlement, grants: Sequence[StoredGrant], replaces: str | None = None
    ) -> None:
        e = entitlement
        async with self._sessions() as session:
            await self._lock_scope(session, e.namespace, e.customer_id, e.feature_key)
            if replaces is not None:
                # OpenMeter's override (SupersedeEntitlement) ends the old entitlement where the new
                # one starts rather than deleting it, and deletes its grants.
                await session.exec(
                    update(EntitlementRow)
                    .where(col(EntitlementRow.namespace) == e.namespace, col(EntitlementRow.id) == replaces)
                    .values(active_to=e.active_from, updated_at=e.created_at)
                )
                await self._delete_grants(session, e.namespace, replaces, e.created_at)
                await session.flush()
            clash = await self._overlapping(
                session, e.namespace, e.customer_id, e.feature_key, e.active_from, e.active_to, [e.id]
            )
            if clash is not None:
                await session.rollback()
                raise ConflictError(
                    f"entitlement already exists for customer {e.customer_id} and feature {e.feature_key}",
                    conflicting_id=clash,
                )
            session.add(_entitlement_row(e))
            await session.flush()
            for grant in grants:
                session.add(_grant_row(grant))
            await session.commit()

    async def set_active_to(self, namespace: str, entitlement_id: str, active_to: datetime, at: datetime) -> None:
        async with self._sessions() as session:
            row = await session.get(EntitlementRow, (namespace, entitlement_id))
            if row is None or row.deleted_at is not None:
                raise NotFoundError("entitlement", entitlement_id)
            await self._lock_scope(session, namespace, row.customer_id, row.feature_key)
            await session.refresh(row)
            clash = await self._overlapping(
                session, namespace, row.customer_id, row.feature_key, row.active_from, active_to, [row.id]
            )
            if clash is not None:
                await session.rollback()
                raise ConflictError(
                    f"entitlement {clash} is active in the window this change would open", conflicting_id=clash
                )
            row.active_to = active_to
            row.updated_at = at
            session.add(row)
            await session.commit()

    async def get(self, namespace: str, entitlement_id: str) -> Entitlement | None:
        found = await self._read(_ENTITLEMENT_BY_ID, {"namespace": namespace, "id": entitlement_id})
        return found[0] if found else None

    async def for_customer(
        self, namespace: str, customer_id: str, id_or_feature_key: str, live_at: datetime
    ) -> list[Entitlement]:
        params = {"namespace": namespace, "customer_id": customer_id, "id_or_key": id_or_feature_key, "at": live_at}
        return await self._read(_ENTITLEMENTS_FOR_CUSTOMER, params)

    async def list_entitlements(self, namespace: str, query: EntitlementListQuery) -> list[Entitlement]:
        statement = _ENTITLEMENTS.where(_E.namespace == namespace)
        if query.customer_ids:
            statement = statement.where(_E.customer_id.in_(list(query.customer_ids)))
        if not query.include_deleted:
            statement = statement.where(_E.deleted_at.is_(None))
        return await self._read(statement)

    async def delete(self, namespace: str, entitlement_id: str, at: datetime) -> None:
        async with self._sessions() as session:
            await session.exec(
                update(EntitlementRow)
                .where(col(EntitlementRow.namespace) == namespace, col(EntitlementRow.id) == entitlement_id)
                .values(deleted_at=at, updated_at=at)
            )
            await self._delete_grants(session, namespace, entitlement_id, at)
            await session.commit()

    @staticmethod
    async def _delete_grants(session: AsyncSession, namespace: str, entitlement_id: str, at: datetime) -> None:
        """An entitlement's grants go with it (OpenMeter's credit hook deletes the owner's grants)."""
        await session.exec(
            update(GrantRow)
            .where(
                col(GrantRow.namespace) == namespace,
                col(GrantRow.entitlement_id) == entitlement_id,
                col(GrantRow.deleted_at).is_(None),
            )
            .values(deleted_at=at, updated_at=at)
        )

    async def add_reset(self, namespace: str, entitlement_id: str, reset: UsageReset) -> None:
        async with self._sessions() as session:
            await _balance_inputs_changed(session, namespace, entitlement_id, reset.at)
            session.add(
                UsageResetRow(
                    namespace=namespace,
                    entitlement_id=entitlement_id,
                    reset_at=reset.at,
                    anchor=reset.anchor,
                    usage_interval=reset.interval.iso(),
                    preserve_overage=reset.preserve_overage,
                    created_at=datetime.now(reset.at.tzinfo),
                )
            )
            try:
                await session.commit()
            except IntegrityError as exc:
                raise ConflictError("a reset at this time already exists") from exc

    async def metered_touched_by(
        self, namespace: str, subject_keys: Sequence[str], event_types: Sequence[str]
    ) -> list[Entitlement]:
        params = {"namespace": namespace, "subject_keys": list(subject_keys), "event_types": list(event_types)}
        return await self._read(_METERED_TOUCHED_BY, params)


async def _balance_inputs_changed(session: AsyncSession, namespace: str, entitlement_id: str, at: datetime) -> None:
    """In the transaction of a grant, void or reset effective at `at`: counts the change (the
    entitlement's row stays locked until the commit, so a snapshot save waits for it) and drops
    the balance snapshots taken at or after `at`, which it outdates. One transaction: a crash or a
    failure between the write and the drop would leave snapshots that ignore the write."""
    await session.exec(
        update(EntitlementRow)
        .where(col(EntitlementRow.namespace) == namespace, col(EntitlementRow.id) == entitlement_id)
        .values(balance_inputs_revision=col(EntitlementRow.balance_inputs_revision) + 1)
    )
    await session.exec(
        delete(BalanceSnapshotRow).where(
            col(BalanceSnapshotRow.namespace) == namespace,
            col(BalanceSnapshotRow.entitlement_id) == entitlement_id,
            col(BalanceSnapshotRow.at) >= at,
        )
    )


class PostgresGrantRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, grant: StoredGrant) -> None:
        async with self._sessions() as session:
            await _balance_inputs_changed(session, grant.namespace, grant.entitlement_id, grant.effective_at)
            session.add(_grant_row(grant))
            await session.commit()

    async def get(self, namespace: str, grant_id: str) -> StoredGrant | None:
        async with self._sessions() as session:
            row = await session.get(GrantRow, (namespace, grant_id))
        return _grant(row) if row is not None else None

    async def with_latest_snapshot(
        self, namespace: str, entitlement_id: str, at: datetime | None
    ) -> tuple[list[StoredGrant], Snapshot | None, int]:
        params = {"namespace": namespace, "entitlement_id": entitlement_id, "at": at}
        rows = await autocommit(self._sessions, _GRANTS_WITH_LATEST_SNAPSHOT, params)
        grants = [_grant(row) for row in rows if row.id is not None]
        first = rows[0]
        snapshot = None
        if first.snapshot_at is not None:
            snapshot = Snapshot(
                at=first.snapshot_at,
                balances={k: Decimal(v) for k, v in first.snapshot_balances.items()},
                overage=first.snapshot_overage,
                usage=first.snapshot_usage,
                total_grant_usage=first.snapshot_total_grant_usage,
                period_start=first.snapshot_period_start,
            )
        return grants, snapshot, first.inputs_revision or 0

    async def for_entitlements(
        self, namespace: str, entitlement_ids: Sequence[str], include_deleted: bool = True
    ) -> list[StoredGrant]:
        if not entitlement_ids:
            return []
        statement = select(GrantRow).where(
            GrantRow.namespace == namespace, col(GrantRow.entitlement_id).in_(list(entitlement_ids))
        )
        if not include_deleted:
            statement = statement.where(col(GrantRow.deleted_at).is_(None))
        async with self._sessions() as session:
            return [_grant(row) for row in (await session.exec(statement)).all()]

    async def void(self, namespace: str, grant_id: str, at: datetime) -> None:
        async with self._sessions() as session:
            voided = await session.exec(
                update(GrantRow)
                .where(col(GrantRow.namespace) == namespace, col(GrantRow.id) == grant_id)
                .values(voided_at=at, updated_at=datetime.now(at.tzinfo))
                .returning(col(GrantRow.entitlement_id))
            )
            for (entitlement_id,) in voided.all():
                await _balance_inputs_changed(session, namespace, entitlement_id, at)
            await session.commit()


class PostgresSnapshotRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def save(self, namespace: str, entitlement_id: str, snapshot: Snapshot, inputs_revision: int) -> None:
        params = {
            "namespace": namespace,
            "entitlement_id": entitlement_id,
            "revision": inputs_revision,
            "at": snapshot.at,
            "balances": {k: str(v) for k, v in snapshot.balances.items()},
            "overage": snapshot.overage,
            "usage": snapshot.usage,
            "total_grant_usage": snapshot.total_grant_usage,
            "period_start": snapshot.usage_period_start,
            "created_at": datetime.now(snapshot.at.tzinfo),
        }
        await autocommit(self._sessions, _SAVE_SNAPSHOT, params)
