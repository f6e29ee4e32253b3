"""NotificationRepository over Postgres: channels, rules, events and their delivery statuses.

Delivery statuses double as the notify worker's durable queue: a worker claims due rows with
FOR UPDATE SKIP LOCKED and leases them by pushing next_attempt forward and bumping `version`, so a
crashed worker's deliveries fall due again when the lease ends, and a stale worker cannot overwrite
a newer state (every write is conditional on the version it claimed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import String, and_, func, literal, or_, true, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from ulid import ULID

from adapters.postgres.notifications_tables import (
    NotificationChannelRow,
    NotificationDeliveryRow,
    NotificationEventRow,
    NotificationRuleRow,
)
from domain.notifications.models import (
    ANNOTATION_DEDUPE_HASH,
    ANNOTATION_FEATURE_ID,
    ANNOTATION_FEATURE_KEY,
    ANNOTATION_RESEND_TIMESTAMP,
    ANNOTATION_SUBJECT_ID,
    ANNOTATION_SUBJECT_KEY,
    Channel,
    ChannelType,
    DeliveryAttempt,
    DeliveryState,
    DeliveryStatus,
    Event,
    EventFilter,
    EventType,
    FeatureRef,
    Page,
    PagedResult,
    Rule,
    SortOrder,
    Threshold,
    ThresholdType,
)
from domain.notifications.ports import Delivery
from domain.wiretime import rfc3339

ACTIVE_STATES = [s.value for s in DeliveryState if s.active]


def _channel(row: NotificationChannelRow) -> Channel:
    return Channel(
        namespace=row.namespace,
        id=row.id,
        type=ChannelType(row.type),
        name=row.name,
        disabled=row.disabled,
        url=row.url,
        custom_headers=dict(row.custom_headers),
        signing_secret=row.signing_secret,
        metadata=dict(row.meta),
        annotations=dict(row.annotations),
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _channel_row(channel: Channel) -> NotificationChannelRow:
    return NotificationChannelRow(
        namespace=channel.namespace,
        id=channel.id,
        type=channel.type.value,
        name=channel.name,
        disabled=channel.disabled,
        url=channel.url,
        custom_headers=channel.custom_headers,
        signing_secret=channel.signing_secret,
        meta=channel.metadata,
        annotations=channel.annotations,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
        deleted_at=channel.deleted_at,
    )


def _rule(row: NotificationRuleRow) -> Rule:
    return Rule(
        namespace=row.namespace,
        id=row.id,
        type=EventType(row.type),
        name=row.name,
        disabled=row.disabled,
        channel_ids=tuple(row.channel_ids),
        thresholds=tuple(Threshold(Decimal(t["value"]), ThresholdType(t["type"])) for t in row.thresholds),
        features=tuple(FeatureRef(id=f["id"], key=f["key"]) for f in row.features),
        metadata=dict(row.meta),
        annotations=dict(row.annotations),
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _rule_row(rule: Rule) -> NotificationRuleRow:
    return NotificationRuleRow(
        namespace=rule.namespace,
        id=rule.id,
        type=rule.type.value,
        name=rule.name,
        disabled=rule.disabled,
        channel_ids=list(rule.channel_ids),
        thresholds=[{"value": str(t.value), "type": t.type.value} for t in rule.thresholds],
        features=[{"id": f.id, "key": f.key} for f in rule.features],
        meta=rule.metadata,
        annotations=rule.annotations,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        deleted_at=rule.deleted_at,
    )


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _attempt(item: dict[str, Any]) -> DeliveryAttempt:
    return DeliveryAttempt(
        state=DeliveryState(item["state"]),
        timestamp=_time(item["timestamp"]),
        status_code=item.get("statusCode"),
        body=item.get("body", ""),
        duration_ms=int(item.get("durationMs", 0)),
        url=item.get("url"),
    )


def _attempt_json(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "state": attempt.state.value,
        "timestamp": attempt.timestamp.isoformat(),
        "statusCode": attempt.status_code,
        "body": attempt.body,
        "durationMs": attempt.duration_ms,
        "url": attempt.url,
    }


def _status(row: NotificationDeliveryRow) -> DeliveryStatus:
    return DeliveryStatus(
        namespace=row.namespace,
        id=row.id,
        event_id=row.event_id,
        channel_id=row.channel_id,
        state=DeliveryState(row.state),
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        next_attempt=row.next_attempt,
        attempts=tuple(_attempt(a) for a in row.attempts),
        annotations=dict(row.annotations),
        sending_since=row.sending_since,
        version=row.version,
    )


def _event(row: NotificationEventRow, statuses: Sequence[NotificationDeliveryRow], rule: Rule | None) -> Event:
    return Event(
        namespace=row.namespace,
        id=row.id,
        type=EventType(row.type),
        created_at=row.created_at,
        rule_id=row.rule_id,
        payload=dict(row.payload),
        annotations=dict(row.annotations),
        delivery_statuses=tuple(_status(s) for s in statuses),
        rule=rule,
        seq=row.seq or 0,
    )


def _ordering(column: Any, order: SortOrder) -> Any:
    return column.desc() if order is SortOrder.DESC else column.asc()


class PostgresNotificationRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # -- channels ------------------------------------------------------------------------------------

    async def create_channel(self, channel: Channel) -> None:
        async with self._sessions() as session:
            session.add(_channel_row(channel))
            await session.commit()

    async def update_channel(self, channel: Channel) -> None:
        async with self._sessions() as session:
            await session.merge(_channel_row(channel))
            await session.commit()

    async def get_channel(self, namespace: str, channel_id: str) -> Channel | None:
        async with self._sessions() as session:
            row = await session.get(NotificationChannelRow, (namespace, channel_id))
        return _channel(row) if row else None

    async def get_channels(self, namespace: str, channel_ids: Sequence[str]) -> list[Channel]:
        if not channel_ids:
            return []
        statement = select(NotificationChannelRow).where(
            NotificationChannelRow.namespace == namespace, col(NotificationChannelRow.id).in_(list(channel_ids))
        )
        async with self._sessions() as session:
            return [_channel(row) for row in (await session.exec(statement)).all()]

    async def list_channels(
        self,
        namespace: str,
        *,
        include_deleted: bool,
        include_disabled: bool,
        page: Page,
        order: SortOrder,
        order_by: str,
    ) -> PagedResult[Channel]:
        where: list[Any] = [NotificationChannelRow.namespace == namespace]
        if not include_deleted:
            where.append(col(NotificationChannelRow.deleted_at).is_(None))
        if not include_disabled:
            where.append(col(NotificationChannelRow.disabled).is_(False))
        column = {
            "id": col(NotificationChannelRow.id),
            "type": col(NotificationChannelRow.type),
            "createdAt": col(NotificationChannelRow.created_at),
            "updatedAt": col(NotificationChannelRow.updated_at),
        }[order_by]
        statement = (
            select(NotificationChannelRow)
            .where(*where)
            .order_by(_ordering(column, order), _ordering(col(NotificationChannelRow.id), order))
            .offset(page.offset)
            .limit(page.size)
        )
        count = select(func.count()).select_from(NotificationChannelRow).where(*where)
        async with self._sessions() as session:
            rows = (await session.exec(statement)).all()
            total = (await session.exec(count)).one()
        return PagedResult([_channel(r) for r in rows], int(total), page)

    # -- rules ---------------------------------------------------------------------------------------

    async def create_rule(self, rule: Rule) -> None:
        async with self._sessions() as session:
            session.add(_rule_row(rule))
            await session.commit()

    async def update_rule(self, rule: Rule) -> None:
        async with self._sessions() as session:
            await session.merge(_rule_row(rule))
            await session.commit()

    async def get_rule(self, namespace: str, rule_id: str) -> Rule | None:
        async with self._sessions() as session:
            row = await session.get(NotificationRuleRow, (namespace, rule_id))
        return _rule(row) if row else None

    async def list_rules(
        self,
        namespace: str,
        *,
        include_deleted: bool,
        include_disabled: bool,
        types: Sequence[EventType] = (),
        features: Sequence[str] = (),
        channels: Sequence[str] = (),
        page: Page | None = None,
        order: SortOrder = SortOrder.ASC,
        order_by: str = "id",
    ) -> PagedResult[Rule]:
        where: list[Any] = [NotificationRuleRow.namespace == namespace]
        if not include_deleted:
            where.append(col(NotificationRuleRow.deleted_at).is_(None))
        if not include_disabled:
            where.append(col(NotificationRuleRow.disabled).is_(False))
        if types:
            where.append(col(NotificationRuleRow.type).in_([t.value for t in types]))
        if channels:
            where.append(col(NotificationRuleRow.channel_ids).op("&&")(literal(list(channels), ARRAY(String))))
        if features:
            # Matches a feature by ID or key.
            where.append(
                or_(
                    *(
                        col(NotificationRuleRow.features).contains([{"id": f}])
                        | col(NotificationRuleRow.features).contains([{"key": f}])
                        for f in features
                    )
                )
            )
        column = {
            "id": col(NotificationRuleRow.id),
            "type": col(NotificationRuleRow.type),
            "createdAt": col(NotificationRuleRow.created_at),
            "updatedAt": col(NotificationRuleRow.updated_at),
        }[order_by]
        statement = select(NotificationRuleRow).where(*where).order_by(_ordering(column, order))
        if page is not None:
            statement = statement.offset(page.offset).limit(page.size)
        count = select(func.count()).select_from(NotificationRuleRow).where(*where)
        async with self._sessions() as session:
            rows = (await session.exec(statement)).all()
            total = (await session.exec(count)).one()
        return PagedResult([_rule(r) for r in rows], int(total), page or Page(1, max(len(rows), 1)))

    # -- events --------------------------------------------------------------------------------------

    async def create_event(self, event: Event, channel_ids: Sequence[str]) -> Event:
        row = NotificationEventRow(
            namespace=event.namespace,
            id=event.id,
            type=event.type.value,
            rule_id=event.rule_id,
            created_at=event.created_at,
            payload=event.payload,
            annotations=event.annotations,
            dedupe_hash=event.annotations.get(ANNOTATION_DEDUPE_HASH),
            feature_id=event.annotations.get(ANNOTATION_FEATURE_ID),
            feature_key=event.annotations.get(ANNOTATION_FEATURE_KEY),
            subject_key=event.annotations.get(ANNOTATION_SUBJECT_KEY),
            subject_id=event.annotations.get(ANNOTATION_SUBJECT_ID),
        )
        statuses = [
            NotificationDeliveryRow(
                namespace=event.namespace,
                id=str(ULID()),
                event_id=event.id,
                channel_id=channel_id,
                state=DeliveryState.PENDING.value,
                reason="",
                created_at=event.created_at,
                updated_at=event.created_at,
                next_attempt=None,
                sending_since=event.created_at,
                attempts=[],
                annotations={},
                version=0,
            )
            for channel_id in channel_ids
        ]
        async with self._sessions() as session:
            session.add(row)
            await session.flush()
            for status in statuses:
                session.add(status)
            await session.commit()
            await session.refresh(row)
        return _event(row, statuses, None)

    async def _load(self, session: AsyncSession, rows: Sequence[NotificationEventRow]) -> list[Event]:
        if not rows:
            return []
        namespace = rows[0].namespace
        ids = [r.id for r in rows]
        status_rows = (
            await session.exec(
                select(NotificationDeliveryRow)
                .where(NotificationDeliveryRow.namespace == namespace, col(NotificationDeliveryRow.event_id).in_(ids))
                .order_by(col(NotificationDeliveryRow.id))
            )
        ).all()
        rule_ids = list({r.rule_id for r in rows})
        rule_rows = (
            await session.exec(
                select(NotificationRuleRow).where(
                    NotificationRuleRow.namespace == namespace, col(NotificationRuleRow.id).in_(rule_ids)
                )
            )
        ).all()
        rules = {r.id: _rule(r) for r in rule_rows}
        by_event: dict[str, list[NotificationDeliveryRow]] = {}
        for status in status_rows:
            by_event.setdefault(status.event_id, []).append(status)
        return [_event(r, by_event.get(r.id, []), rules.get(r.rule_id)) for r in rows]

    async def get_event(self, namespace: str, event_id: str) -> Event | None:
        async with self._sessions() as session:
            row = await session.get(NotificationEventRow, (namespace, event_id))
            if row is None:
                return None
            return (await self._load(session, [row]))[0]

    async def list_events(
        self, namespace: str, filter: EventFilter, page: Page, order: SortOrder, order_by: str
    ) -> PagedResult[Event]:
        where: list[Any] = [NotificationEventRow.namespace == namespace]
        if filter.from_ is not None:
            where.append(col(NotificationEventRow.created_at) >= filter.from_)
        if filter.to is not None:
            where.append(col(NotificationEventRow.created_at) <= filter.to)
        if filter.features:
            where.append(
                or_(
                    col(NotificationEventRow.feature_id).in_(filter.features),
                    col(NotificationEventRow.feature_key).in_(filter.features),
                )
            )
        if filter.subjects:
            where.append(
                or_(
                    col(NotificationEventRow.subject_key).in_(filter.subjects),
                    col(NotificationEventRow.subject_id).in_(filter.subjects),
                )
            )
        if filter.rules:
            where.append(col(NotificationEventRow.rule_id).in_(filter.rules))
        if filter.dedupe_hashes:
            where.append(col(NotificationEventRow.dedupe_hash).in_(filter.dedupe_hashes))
        if filter.channels:
            where.append(
                col(NotificationEventRow.id).in_(
                    select(NotificationDeliveryRow.event_id).where(
                        NotificationDeliveryRow.namespace == namespace,
                        col(NotificationDeliveryRow.channel_id).in_(filter.channels),
                    )
                )
            )
        column = col(NotificationEventRow.id) if order_by == "id" else col(NotificationEventRow.seq)
        statement = (
            select(NotificationEventRow)
            .where(*where)
            .order_by(_ordering(column, order))
            .offset(page.offset)
            .limit(page.size)
        )
        count = select(func.count()).select_from(NotificationEventRow).where(*where)
        async with self._sessions() as session:
            rows = (await session.exec(statement)).all()
            total = (await session.exec(count)).one()
            return PagedResult(await self._load(session, rows), int(total), page)

    async def event_seq(self, namespace: str, event_id: str) -> int | None:
        async with self._sessions() as session:
            row = await session.get(NotificationEventRow, (namespace, event_id))
        return row.seq if row else None

    async def events_after(self, namespace: str, after_seq: int, types: Sequence[EventType], limit: int) -> list[Event]:
        statement = select(NotificationEventRow).where(
            NotificationEventRow.namespace == namespace, col(NotificationEventRow.seq) > after_seq
        )
        if types:
            statement = statement.where(col(NotificationEventRow.type).in_([t.value for t in types]))
        statement = statement.order_by(col(NotificationEventRow.seq)).limit(limit)
        async with self._sessions() as session:
            rows = (await session.exec(statement)).all()
            return await self._load(session, rows)

    # -- delivery ------------------------------------------------------------------------------------

    async def resend(
        self, namespace: str, event_id: str, channel_ids: Sequence[str], now: datetime, reason: str
    ) -> int:
        if not channel_ids:
            return 0
        allowed = [DeliveryState.SENDING.value, DeliveryState.SUCCESS.value, DeliveryState.FAILED.value]
        statement = (
            update(NotificationDeliveryRow)
            .where(
                col(NotificationDeliveryRow.namespace) == namespace,
                col(NotificationDeliveryRow.event_id) == event_id,
                col(NotificationDeliveryRow.channel_id).in_(list(channel_ids)),
                col(NotificationDeliveryRow.state).in_(allowed),
            )
            .values(
                state=DeliveryState.RESENDING.value,
                reason=reason,
                updated_at=now,
                next_attempt=None,
                sending_since=now,
                version=col(NotificationDeliveryRow.version) + 1,
                annotations=col(NotificationDeliveryRow.annotations).op("||")(
                    literal({ANNOTATION_RESEND_TIMESTAMP: rfc3339(now, timespec="seconds")}, JSONB)
                ),
            )
        )
        async with self._sessions() as session:
            result = await session.exec(statement)
            await session.commit()
        return int(getattr(result, "rowcount", 0) or 0)

    async def claim_due(
        self, namespaces: Sequence[str] | None, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        statement = (
            select(NotificationDeliveryRow)
            .where(
                # None: every namespace (one notify worker serves all tenants).
                col(NotificationDeliveryRow.namespace).in_(list(namespaces)) if namespaces is not None else true(),
                col(NotificationDeliveryRow.state).in_(ACTIVE_STATES),
                or_(
                    col(NotificationDeliveryRow.next_attempt).is_(None),
                    col(NotificationDeliveryRow.next_attempt) <= now,
                ),
            )
            .order_by(func.coalesce(col(NotificationDeliveryRow.next_attempt), col(NotificationDeliveryRow.created_at)))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._sessions() as session:
            rows = list((await session.exec(statement)).all())
            for row in rows:
                row.next_attempt = lease_until
                row.version += 1
                session.add(row)
            await session.commit()
            if not rows:
                return []
            deliveries: list[Delivery] = []
            for row in rows:
                event_row = await session.get(NotificationEventRow, (row.namespace, row.event_id))
                channel_row = await session.get(NotificationChannelRow, (row.namespace, row.channel_id))
                if event_row is None:
                    continue
                # The rule as it is now: the worker delivers only while it still sends to the channel.
                rule_row = await session.get(NotificationRuleRow, (row.namespace, event_row.rule_id))
                deliveries.append(
                    Delivery(
                        status=_status(row),
                        event=_event(event_row, [], _rule(rule_row) if rule_row else None),
                        channel=_channel(channel_row) if channel_row else None,
                    )
                )
            return deliveries

    async def record_attempt(
        self,
        status: DeliveryStatus,
        *,
        state: DeliveryState,
        reason: str,
        next_attempt: datetime | None,
        sending_since: datetime | None,
        attempt: DeliveryAttempt | None,
        now: datetime,
    ) -> bool:
        appended = (
            col(NotificationDeliveryRow.attempts).op("||")(literal([_attempt_json(attempt)], JSONB))
            if attempt is not None
            else col(NotificationDeliveryRow.attempts)
        )
        key = and_(
            col(NotificationDeliveryRow.namespace) == status.namespace, col(NotificationDeliveryRow.id) == status.id
        )
        async with self._sessions() as session:
            result = await session.exec(
                update(NotificationDeliveryRow)
                .where(key, col(NotificationDeliveryRow.version) == status.version)
                .values(
                    state=state.value,
                    reason=reason,
                    next_attempt=next_attempt,
                    sending_since=sending_since,
                    attempts=appended,
                    updated_at=now,
                )
            )
            saved = bool(getattr(result, "rowcount", 0))
            if not saved and attempt is not None:
                # Resent meanwhile: the new state stands, the attempt still happened.
                await session.exec(update(NotificationDeliveryRow).where(key).values(attempts=appended))
            await session.commit()
        return saved
