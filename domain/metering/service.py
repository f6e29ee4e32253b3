"""Metering's use cases: ingest, meter CRUD, queries, event listing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from ulid import ULID

from domain.errors import ConflictError, NotFoundError, ValidationError
from domain.metering.events import (
    EventBatch,
    EventListQuery,
    IngestLimits,
    StoredEvent,
    parse_cloudevents,
)
from domain.metering.models import VALUES_BACKFILLED, Aggregation, Meter, MeterCreateInput, MeterUpdateInput
from domain.metering.ports import CustomerResolver, EventBus, EventStore, MeterRepository
from domain.metering.query import ListGroupByValuesInput, ListSubjectsInput, MeterQuery, MeterQueryInput, QueryRow
from domain.metering.validation import validation_error

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class IngestService:
    def __init__(self, bus: EventBus, limits: IngestLimits, clock: Clock = utcnow) -> None:
        self._bus = bus
        self._limits = limits
        self._clock = clock

    async def ingest_cloudevents(self, namespace: str, body: bytes, content_type: str) -> int:
        events = parse_cloudevents(body, content_type, namespace, self._clock(), self._limits)
        await self._bus.publish(events)
        return len(events)

    def new_batch(self, namespace: str) -> EventBatch:
        """A batch for a decoder that feeds fields itself (the gRPC path); then `ingest_batch`."""
        return EventBatch(namespace, self._clock(), self._limits)

    async def ingest_batch(self, batch: EventBatch) -> int:
        events = batch.result()
        await self._bus.publish(events)
        return len(events)


class MeterService:
    def __init__(
        self,
        meters: MeterRepository,
        store: EventStore,
        clock: Clock = utcnow,
        on_change: Callable[[], None] | None = None,
        customers: CustomerResolver | None = None,
    ) -> None:
        self._meters = meters
        self.customers = customers
        self._store = store
        self._clock = clock
        self._on_change = on_change or (lambda: None)
        # Also called after meter updates and deletes (the entitlement value cache).
        self.listeners: list[Callable[[], None]] = []

    async def list_meters(self, namespace: str, include_deleted: bool = False) -> list[Meter]:
        return await self._meters.list_meters(namespace, include_deleted)

    async def get(self, namespace: str, id_or_slug: str) -> Meter:
        meter = await self._meters.get(namespace, id_or_slug)
        if meter is None:
            raise NotFoundError("meter", id_or_slug)
        return meter

    async def create(self, namespace: str, data: MeterCreateInput) -> Meter:
        data.validate()
        existing = await self._meters.get_by_slug_any(namespace, data.slug)
        if existing is not None:
            raise ConflictError(f"meter with slug {data.slug!r} already exists", conflicting_id=existing.id)
        now = self._clock()
        meter = Meter(
            id=str(ULID()),
            namespace=namespace,
            slug=data.slug,
            name=data.name or data.slug,
            description=data.description,
            aggregation=Aggregation(data.aggregation),
            event_type=data.event_type,
            event_from=data.event_from,
            value_property=data.value_property or None,
            group_by=dict(data.group_by),
            metadata=dict(data.metadata),
            annotations={},
            created_at=now,
            updated_at=now,
        )
        await self._meters.create(meter)
        self._on_change()
        return meter

    async def update(self, namespace: str, id_or_slug: str, data: MeterUpdateInput) -> Meter:
        meter = await self.get(namespace, id_or_slug)
        if meter.deleted_at is not None:
            raise NotFoundError("meter", id_or_slug)
        data.validate(meter)
        annotations = dict(meter.annotations)
        if dict(data.group_by) != meter.group_by:
            # New paths are not in the maps of stored events until the backfill worker has run.
            annotations.pop(VALUES_BACKFILLED, None)
        updated = dataclasses.replace(
            meter,
            annotations=annotations,
            name=data.name or meter.name,
            description=data.description if data.description is not None else meter.description,
            group_by=dict(data.group_by),
            metadata=dict(data.metadata),
            updated_at=self._clock(),
        )
        await self._meters.update(updated)
        self._on_change()
        for listener in self.listeners:
            listener()
        return updated

    async def delete(self, namespace: str, id_or_slug: str) -> None:
        meter = await self.get(namespace, id_or_slug)
        if meter.deleted_at is not None:
            raise NotFoundError("meter", id_or_slug)
        now = self._clock()
        await self._meters.update(dataclasses.replace(meter, deleted_at=now, updated_at=now))
        self._on_change()
        for listener in self.listeners:
            listener()

    async def sync_declared(self, namespace: str, declared: Sequence[MeterCreateInput]) -> None:
        """Meters from the config file: created when missing, otherwise left as they are."""
        for data in declared:
            if await self._meters.get_by_slug_any(namespace, data.slug) is None:
                await self.create(namespace, data)

    async def query(
        self, namespace: str, id_or_slug: str, data: MeterQueryInput
    ) -> tuple[Meter, MeterQuery, list[QueryRow]]:
        meter = await self.get(namespace, id_or_slug)
        customer_subjects: dict[str, tuple[str, ...]] = {}
        if data.filter_customer_ids and self.customers is not None:
            found = await self.customers.resolve(namespace, data.filter_customer_ids)
            # Keys become IDs (rows name customers by ID); unknown ones stay, for validate's 404.
            ids = [found[token][0] if token in found else token for token in data.filter_customer_ids]
            customer_subjects = {customer_id: subjects for customer_id, subjects in found.values()}
            data = dataclasses.replace(data, filter_customer_ids=ids)
        query = data.validate(meter, customer_subjects)
        return meter, query, await self._store.query_meter(meter, query)

    async def subjects(self, namespace: str, id_or_slug: str, data: ListSubjectsInput) -> list[str]:
        meter = await self.get(namespace, id_or_slug)
        return await self._store.list_subjects(namespace, meter, data.validate())

    async def group_by_values(self, namespace: str, id_or_slug: str, data: ListGroupByValuesInput) -> list[str]:
        meter = await self.get(namespace, id_or_slug)
        return await self._store.list_group_by_values(namespace, meter, data.validate(meter, self._clock()))


class EventQueryService:
    """Lists stored events with the reason, if any, that a meter of their type will not count them."""

    MAX_LOOKBACK = timedelta(days=32)
    DEFAULT_LOOKBACK = timedelta(hours=72)

    def __init__(self, store: EventStore, meters: MeterRepository, clock: Clock = utcnow) -> None:
        self._store = store
        self._meters = meters
        self._clock = clock

    async def list_events(self, namespace: str, query: EventListQuery) -> list[StoredEvent]:
        now = self._clock()
        if query.from_ < now - self.MAX_LOOKBACK:
            raise ValidationError.single("from", "must be within the last 32 days", "out_of_range")
        if query.to is not None and query.to <= query.from_:
            raise ValidationError.single("to", "must be after from", "invalid_range")
        if not 1 <= query.limit <= 100:
            raise ValidationError.single("limit", "must be between 1 and 100", "out_of_range")
        events = await self._store.list_events(namespace, query)
        meters = await self._meters.list_meters(namespace)
        return [dataclasses.replace(e, validation_error=validation_error(e.event, meters)) for e in events]

    def default_from(self) -> datetime:
        return self._clock() - self.DEFAULT_LOOKBACK
