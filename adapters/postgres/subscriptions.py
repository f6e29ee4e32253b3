"""SubscriptionRepository over Postgres; the spec is stored as JSONB (see subscriptions_tables)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.subscriptions_tables import ONE_AT_A_TIME_CONSTRAINT, SubscriptionRow
from domain.entitlements.recurrence import IsoDuration
from domain.errors import ConflictError
from domain.subscriptions.models import PlanRef, ProRating, QuantitySegment, Subscription, SubscriptionAddon
from domain.subscriptions.ports import RateCardTerms
from domain.subscriptions.service import SINGLE_SUBSCRIPTION
from domain.subscriptions.timeline import Extension, ItemSpec, PhaseSpec, SubscriptionSpec


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _dump_addon(a: SubscriptionAddon) -> dict[str, Any]:
    return {
        "id": a.id,
        "addonId": a.addon_id,
        "addonKey": a.addon_key,
        "addonVersion": a.addon_version,
        "instanceType": a.instance_type,
        "name": a.name,
        "description": a.description,
        "metadata": dict(a.metadata),
        "timeline": [
            {"activeFrom": _time(t.active_from), "activeTo": _time(t.active_to), "quantity": t.quantity}
            for t in a.timeline
        ],
        "createdAt": _time(a.created_at),
        "updatedAt": _time(a.updated_at),
    }


def _load_addon(data: dict[str, Any]) -> SubscriptionAddon:
    created = _parse_time(data["createdAt"])
    updated = _parse_time(data["updatedAt"])
    assert created is not None and updated is not None
    timeline = []
    for t in data["timeline"]:
        start = _parse_time(t["activeFrom"])
        assert start is not None
        timeline.append(QuantitySegment(start, _parse_time(t.get("activeTo")), int(t["quantity"])))
    return SubscriptionAddon(
        id=data["id"],
        addon_id=data["addonId"],
        addon_key=data["addonKey"],
        addon_version=int(data["addonVersion"]),
        instance_type=data["instanceType"],
        name=data["name"],
        description=data.get("description"),
        metadata=dict(data.get("metadata") or {}),
        timeline=tuple(timeline),
        created_at=created,
        updated_at=updated,
    )


class SpecCodec:
    """Spec <-> JSON; rate cards through the catalog's own wire format."""

    def __init__(self, rate_cards: RateCardTerms) -> None:
        self._rate_cards = rate_cards

    def dump(self, spec: SubscriptionSpec) -> dict[str, Any]:
        return {
            "phases": [
                {
                    "id": p.id,
                    "key": p.key,
                    "name": p.name,
                    "description": p.description,
                    "startAfter": p.start_after.iso(),
                    "duration": p.duration.iso() if p.duration is not None else None,
                    "items": [
                        {
                            "id": i.id,
                            "key": i.key,
                            "rateCard": self._rate_cards.to_storage(i.rate_card),
                            "activeFrom": _time(i.active_from),
                            "activeTo": _time(i.active_to),
                            "createdAt": _time(i.created_at),
                            "addonId": i.addon_id,
                            "quantity": str(i.quantity),
                            **self._extended(i),
                        }
                        for i in p.items
                    ],
                }
                for p in spec.phases
            ]
        }

    def _extended(self, item: ItemSpec) -> dict[str, Any]:
        """What add-ons extend a plan item version by (nothing for most items, so nothing stored)."""
        if item.base is None:
            return {}
        return {
            "base": self._rate_cards.to_storage(item.base),
            "extensions": [
                {"addonId": e.addon_id, "rateCard": self._rate_cards.to_storage(e.rate_card), "quantity": e.quantity}
                for e in item.extensions
            ],
        }

    def load(self, row: SubscriptionRow) -> SubscriptionSpec:
        phases = tuple(
            PhaseSpec(
                id=p["id"],
                key=p["key"],
                name=p["name"],
                description=p.get("description"),
                start_after=IsoDuration.parse(p["startAfter"]),
                duration=IsoDuration.parse(p["duration"]) if p.get("duration") else None,
                items=tuple(
                    ItemSpec(
                        id=i["id"],
                        key=i["key"],
                        rate_card=self._rate_cards.from_json(i["rateCard"]),
                        active_from=_parse_time(i.get("activeFrom")),
                        active_to=_parse_time(i.get("activeTo")),
                        created_at=_parse_time(i.get("createdAt")),
                        addon_id=i.get("addonId"),
                        quantity=Decimal(i.get("quantity", "1")),
                        base=self._rate_cards.from_json(i["base"]) if i.get("base") else None,
                        extensions=tuple(
                            Extension(e["addonId"], self._rate_cards.from_json(e["rateCard"]), int(e["quantity"]))
                            for e in i.get("extensions", ())
                        ),
                    )
                    for i in p["items"]
                ),
            )
            for p in row.spec["phases"]
        )
        cadence = IsoDuration.parse(row.billing_cadence)
        return SubscriptionSpec(row.active_from, row.active_to, row.billing_anchor, cadence, phases)


def _is_overlap(exc: Exception) -> bool:
    return ONE_AT_A_TIME_CONSTRAINT in str(getattr(exc, "orig", exc))


def _not_ended(by: datetime) -> tuple[ColumnElement[bool], ...]:
    """A subscription not deleted and still in force at `by` (or scheduled after it)."""
    active_to = col(SubscriptionRow.active_to)
    return col(SubscriptionRow.deleted_at).is_(None), active_to.is_(None) | (active_to > by)


def _overlap_error() -> ConflictError:
    return ConflictError(
        "only one subscription is allowed per customer at a time: the customer already has a subscription "
        "in force over that period",
        code=SINGLE_SUBSCRIPTION,
    )


class PostgresSubscriptionRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], rate_cards: RateCardTerms) -> None:
        self._sessions = sessions
        self._codec = SpecCodec(rate_cards)

    def _to_row(self, s: Subscription) -> SubscriptionRow:
        return SubscriptionRow(
            namespace=s.namespace,
            id=s.id,
            customer_id=s.customer_id,
            name=s.name,
            description=s.description,
            meta=dict(s.metadata),
            plan_id=s.plan.id if s.plan else None,
            plan_key=s.plan.key if s.plan else None,
            plan_version=s.plan.version if s.plan else None,
            currency=s.currency,
            billing_cadence=s.billing_cadence.iso(),
            billing_anchor=s.billing_anchor,
            pro_rating={"enabled": s.pro_rating.enabled, "mode": s.pro_rating.mode},
            settlement_mode=s.settlement_mode,
            active_from=s.active_from,
            active_to=s.active_to,
            spec={
                **self._codec.dump(s.spec),
                "addons": [_dump_addon(a) for a in s.addons],
                "annotations": dict(s.annotations),
                # Kept with the spec, as the annotations, so neither needed a column.
                "costBasisMode": s.cost_basis_mode,
            },
            revision=s.revision,
            created_at=s.created_at,
            updated_at=s.updated_at,
            deleted_at=s.deleted_at,
        )

    def _to_domain(self, row: SubscriptionRow) -> Subscription:
        plan = (
            PlanRef(row.plan_id, row.plan_key, row.plan_version)
            if row.plan_id and row.plan_key and row.plan_version is not None
            else None
        )
        return Subscription(
            id=row.id,
            namespace=row.namespace,
            customer_id=row.customer_id,
            name=row.name,
            description=row.description,
            metadata=dict(row.meta),
            plan=plan,
            currency=row.currency,
            billing_cadence=IsoDuration.parse(row.billing_cadence),
            billing_anchor=row.billing_anchor,
            pro_rating=ProRating(bool(row.pro_rating.get("enabled", True)), str(row.pro_rating.get("mode"))),
            settlement_mode=row.settlement_mode,
            active_from=row.active_from,
            active_to=row.active_to,
            spec=self._codec.load(row),
            revision=row.revision,
            created_at=row.created_at,
            updated_at=row.updated_at,
            deleted_at=row.deleted_at,
            addons=tuple(_load_addon(a) for a in row.spec.get("addons", [])),
            annotations=dict(row.spec.get("annotations") or {}),
            cost_basis_mode=str(row.spec.get("costBasisMode") or "dynamic"),
        )

    async def create(self, subscription: Subscription) -> None:
        async with self._sessions() as session:
            session.add(self._to_row(subscription))
            try:
                await session.commit()
            except (IntegrityError, DBAPIError) as exc:
                if _is_overlap(exc):
                    raise _overlap_error() from exc
                raise

    async def _compare_and_set(self, session: AsyncSession, subscription: Subscription, expected: int) -> None:
        row = self._to_row(subscription)
        values = {c: getattr(row, c) for c in SubscriptionRow.model_fields if c not in ("namespace", "id")}
        statement = (
            update(SubscriptionRow)
            .where(
                col(SubscriptionRow.namespace) == subscription.namespace,
                col(SubscriptionRow.id) == subscription.id,
                col(SubscriptionRow.revision) == expected,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        result = await session.exec(statement)
        if result.rowcount != 1:
            raise ConflictError("the subscription was changed by another request; retry", code="concurrent_update")

    async def update(self, subscription: Subscription, expected_revision: int) -> None:
        async with self._sessions() as session:
            try:
                await self._compare_and_set(session, subscription, expected_revision)
                await session.commit()
            except (IntegrityError, DBAPIError) as exc:
                if _is_overlap(exc):
                    raise _overlap_error() from exc
                raise

    async def replace_pair(self, current: Subscription, current_revision: int, successor: Subscription) -> None:
        async with self._sessions() as session:
            try:
                await self._compare_and_set(session, current, current_revision)
                session.add(self._to_row(successor))
                await session.commit()
            except (IntegrityError, DBAPIError) as exc:
                if _is_overlap(exc):
                    raise _overlap_error() from exc
                raise

    async def get(self, namespace: str, subscription_id: str) -> Subscription | None:
        async with self._sessions() as session:
            row = await session.get(SubscriptionRow, (namespace, subscription_id))
        return self._to_domain(row) if row is not None else None

    async def list_for_customers(self, namespace: str, customer_ids: Sequence[str]) -> list[Subscription]:
        if not customer_ids:
            return []
        statement = select(SubscriptionRow).where(
            SubscriptionRow.namespace == namespace, col(SubscriptionRow.customer_id).in_(list(customer_ids))
        )
        async with self._sessions() as session:
            return [self._to_domain(r) for r in (await session.exec(statement)).all()]

    async def list_changed_since(self, namespace: str | None, after: datetime) -> list[Subscription]:
        statement = select(SubscriptionRow).where(col(SubscriptionRow.updated_at) > after)
        if namespace is not None:
            statement = statement.where(SubscriptionRow.namespace == namespace)
        async with self._sessions() as session:
            return [self._to_domain(r) for r in (await session.exec(statement)).all()]

    async def list_billable(self, ended_after: datetime) -> list[Subscription]:
        statement = (
            select(SubscriptionRow)
            .where(
                # Deleted since too: a pass takes away what a lost sync of the delete left.
                or_(and_(*_not_ended(by=ended_after)), col(SubscriptionRow.deleted_at) > ended_after),
            )
            .order_by(col(SubscriptionRow.namespace), col(SubscriptionRow.id))
        )
        async with self._sessions() as session:
            return [self._to_domain(r) for r in (await session.exec(statement)).all()]

    async def customer_ids_with_plan(self, namespace: str, plan_key: str, at: datetime) -> set[str]:
        statement = select(SubscriptionRow.customer_id).where(
            SubscriptionRow.namespace == namespace,
            SubscriptionRow.plan_key == plan_key,
            col(SubscriptionRow.active_from) <= at,
            *_not_ended(by=at),
        )
        async with self._sessions() as session:
            return set((await session.exec(statement)).all())

    async def list_in_force(self, namespace: str, customer_ids: Sequence[str], at: datetime) -> list[Subscription]:
        if not customer_ids:
            return []
        statement = select(SubscriptionRow).where(
            SubscriptionRow.namespace == namespace,
            col(SubscriptionRow.customer_id).in_(list(customer_ids)),
            col(SubscriptionRow.active_from) <= at,
            *_not_ended(by=at),
        )
        async with self._sessions() as session:
            return [self._to_domain(r) for r in (await session.exec(statement)).all()]

    async def list_live(self, namespace: str, at: datetime) -> list[Subscription]:
        statement = select(SubscriptionRow).where(
            SubscriptionRow.namespace == namespace,
            *_not_ended(by=at),
        )
        async with self._sessions() as session:
            return [self._to_domain(r) for r in (await session.exec(statement)).all()]

    async def has_live(self, namespace: str, customer_id: str, at: datetime) -> bool:
        """A subscription in force at `at` or scheduled after it."""
        statement = select(func.count()).where(
            SubscriptionRow.namespace == namespace,
            SubscriptionRow.customer_id == customer_id,
            *_not_ended(by=at),
        )
        async with self._sessions() as session:
            return int((await session.exec(statement)).one()) > 0

    async def delete(self, namespace: str, subscription_id: str, at: datetime) -> int:
        statement = (
            update(SubscriptionRow)
            .where(col(SubscriptionRow.namespace) == namespace, col(SubscriptionRow.id) == subscription_id)
            .values(deleted_at=at, updated_at=at, revision=SubscriptionRow.revision + 1)
            .returning(col(SubscriptionRow.revision))
            .execution_options(synchronize_session=False)
        )
        async with self._sessions() as session:
            revision = (await session.exec(statement)).scalar_one()
            await session.commit()
        return int(revision)

    async def mark_entitlements_reconciled(self, namespace: str, subscription_id: str, revision: int) -> None:
        # Only while the row is still at that revision: a write after it needs its own reconciliation.
        statement = (
            update(SubscriptionRow)
            .where(
                col(SubscriptionRow.namespace) == namespace,
                col(SubscriptionRow.id) == subscription_id,
                col(SubscriptionRow.revision) == revision,
            )
            .values(entitlements_revision=revision)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions() as session:
            await session.exec(statement)
            await session.commit()

    async def list_entitlements_pending(self, changed_before: datetime, limit: int) -> list[Subscription]:
        # The partial index's predicate, written the same way so the planner uses it.
        statement = (
            select(SubscriptionRow)
            .where(
                col(SubscriptionRow.entitlements_revision).is_distinct_from(col(SubscriptionRow.revision)),
                col(SubscriptionRow.updated_at) < changed_before,
            )
            .order_by(col(SubscriptionRow.updated_at))
            .limit(limit)
        )
        async with self._sessions() as session:
            return [self._to_domain(r) for r in (await session.exec(statement)).all()]
