"""Metering's use cases: ingest, meter CRUD, queries, event listing."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from ulid import ULID

from domain.errors import ConflictError, NotFoundError, ValidationError, Violations
from domain.metering.event_list import EventListQuery
from domain.metering.events import (
    EventBatch,
    IngestLimits,
    StoredEvent,
    parse_cloudevents,
)
from domain.metering.models import (
    BACKFILL_PROGRESS_ID,
    BACKFILL_PROGRESS_PREFIX,
    VALUES_BACKFILLED,
    Aggregation,
    Meter,
    MeterCreateInput,
    MeterUpdateInput,
    Progress,
)
from domain.metering.ports import CustomerResolver, EventBus, EventStore, MeterRepository, SubjectNames
from domain.metering.query import ListGroupByValuesInput, ListSubjectsInput, MeterQuery, MeterQueryInput, QueryRow
from domain.metering.validation import validation_error
from domain.pagination import SortOrder, parse_order, parse_order_by

Clock = Callable[[], datetime]

# OpenMeter's meter.OrderBy values (meter/meter.go), as listMeters' orderBy names them.
_METER_SORT_KEYS: dict[str, Callable[[Meter], str | datetime]] = {
    "key": lambda m: m.slug,
    "name": lambda m: m.name,
    "aggregation": lambda m: m.aggregation.value,
    "createdAt": lambda m: m.created_at,
    "updatedAt": lambda m: m.updated_at,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class IngestService:
    def __init__(self, bus: EventBus, limits: IngestLimits, clock: Clock = utcnow) -> None:
        self._bus = bus
        self._limits = limits
        self._clock = clock

    async def ingest_cloudevents(self, namespace: str, body: bytes, content_type: str) -> int:
        events = parse_cloudevents(body, content_type, namespace, self._clock(), self._limits)
        if events:  # an empty CloudEvents batch (a 204) has nothing to publish
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
        # Set by the customers area once it is wired (it comes after metering), as `customers`.
        self.subject_names: SubjectNames | None = None
        self._store = store
        self._clock = clock
        self._on_change = on_change or (lambda: None)
        # Also called after meter updates and deletes (the entitlement value cache).
        self.listeners: list[Callable[[], None]] = []
        # Set by the areas that read meters (features, entitlements) once they are wired: each
        # raises to refuse deleting the meter, or changing its group-by to the given map, while
        # something depends on it (OpenMeter's meter/service/manage.go, 409).
        self.delete_guards: list[Callable[[str, Meter], Awaitable[None]]] = []
        self.group_by_guards: list[Callable[[str, Meter, Mapping[str, str]], Awaitable[None]]] = []

    async def list_meters(
        self, namespace: str, include_deleted: bool = False, order_by: str | None = None, order: str | None = None
    ) -> list[Meter]:
        """OpenMeter's listMeters: by `order_by` (key by default), ASC unless `order` is DESC."""
        field = parse_order_by(order_by, tuple(_METER_SORT_KEYS), "key")
        descending = parse_order(order) is SortOrder.DESC
        meters = await self._meters.list_meters(namespace, include_deleted)
        meters.sort(key=_METER_SORT_KEYS[field], reverse=descending)
        return meters

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
        meter_id = str(ULID())
        meter = Meter(
            id=meter_id,
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
            # Events stored before the meter existed get its values by a backfill; its progress:
            annotations={BACKFILL_PROGRESS_ID: BACKFILL_PROGRESS_PREFIX + meter_id},
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
        for group_by_guard in self.group_by_guards:
            await group_by_guard(namespace, meter, data.group_by)
        annotations = dict(meter.annotations)
        if dict(data.group_by) != meter.group_by:
            # New paths are not in the maps of stored events until the backfill worker has run.
            annotations.pop(VALUES_BACKFILLED, None)
            annotations[BACKFILL_PROGRESS_ID] = BACKFILL_PROGRESS_PREFIX + meter.id
        updated = dataclasses.replace(
            meter,
            annotations=annotations,
            # A replacement, as OpenMeter's PUT: a name left out is the slug again, as at creation,
            # and a description left out is no description (meter/httphandler/meter.go UpdateMeter).
            name=data.name or meter.slug,
            description=data.description,
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
            # Found by its ID: deleted already, so a retried delete succeeds without a change, as
            # OpenMeter's DeleteMeter returns (meter/service/manage.go).
            return
        for guard in self.delete_guards:
            await guard(namespace, meter)
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
        meter, query = await self._validated(namespace, id_or_slug, data)
        return meter, query, await self._store.query_meter(meter, query)

    async def query_wire(self, namespace: str, id_or_slug: str, data: MeterQueryInput) -> tuple[MeterQuery, bytes]:
        """The validated query, and its rows as the store encodes them for the API
        (EventStore.query_meter_wire)."""
        meter, query = await self._validated(namespace, id_or_slug, data)
        return query, await self._store.query_meter_wire(meter, query)

    async def _validated(self, namespace: str, id_or_slug: str, data: MeterQueryInput) -> tuple[Meter, MeterQuery]:
        meter = await self.get(namespace, id_or_slug)
        customer_subjects: dict[str, tuple[str, ...]] = {}
        if data.filter_customer_ids and self.customers is not None:
            found = await self.customers.resolve(namespace, data.filter_customer_ids)
            # Keys become IDs (rows name customers by ID); unknown ones stay, for validate's 404.
            ids = [found[token][0] if token in found else token for token in data.filter_customer_ids]
            customer_subjects = {customer_id: subjects for customer_id, subjects in found.values()}
            data = dataclasses.replace(data, filter_customer_ids=ids)
        return meter, data.validate(meter, customer_subjects)

    async def subject_display_names(
        self, namespace: str, query: MeterQuery, rows: Sequence[QueryRow]
    ) -> dict[str, str]:
        """The display names the query's CSV shows (OpenMeter's subject_display_name): for a query
        grouped by subject, each row subject that is a subject entity -> its display name, or ""."""
        if not query.groups_by_subject or self.subject_names is None:
            return {}
        keys = [row.subject for row in rows if row.subject is not None]
        names = await self.subject_names.display_names(namespace, keys) if keys else {}
        return {key: name or "" for key, name in names.items()}

    async def progress(self, namespace: str, progress_id: str) -> Progress:
        """A meter values backfill's progress: events of its type that carry its values, of all."""
        meter_id = progress_id.removeprefix(BACKFILL_PROGRESS_PREFIX)
        meter = (
            await self._meters.get(namespace, meter_id) if progress_id.startswith(BACKFILL_PROGRESS_PREFIX) else None
        )
        if meter is None or meter.id != meter_id or meter.deleted_at is not None:
            raise NotFoundError("progress", progress_id)
        done, total = await self._store.backfill_progress(meter)
        return Progress(success=done, failed=0, total=total, updated_at=self._clock())

    async def subjects(self, namespace: str, id_or_slug: str, data: ListSubjectsInput) -> list[str]:
        meter = await self.get(namespace, id_or_slug)
        return await self._store.list_subjects(namespace, meter, data.validate())

    async def group_by_values(self, namespace: str, id_or_slug: str, data: ListGroupByValuesInput) -> list[str]:
        meter = await self.get(namespace, id_or_slug)
        return await self._store.list_group_by_values(namespace, meter, data.validate(meter, self._clock()))


class EventQueryService:
    """Lists stored events with the reason, if any, that a meter of their type will not count them."""

    MAX_LOOKBACK = timedelta(days=32)
    # Without `from`, OpenMeter's v1 handler lists from the oldest `from` it accepts (a second
    # inside the limit, so the check that follows passes); its API description's "72 hours" is
    # not what it does.
    DEFAULT_LOOKBACK = MAX_LOOKBACK - timedelta(seconds=1)

    def __init__(
        self,
        store: EventStore,
        meters: MeterRepository,
        clock: Clock = utcnow,
        customers: CustomerResolver | None = None,
    ) -> None:
        self._store = store
        self._meters = meters
        self._clock = clock
        # Set by the customers area once it is wired (it comes after metering).
        self.customers = customers

    async def list_events(self, namespace: str, query: EventListQuery) -> list[StoredEvent]:
        now = self._clock()
        oldest = now - self.MAX_LOOKBACK
        violations = Violations()
        if query.from_ is not None and query.from_ < oldest:
            violations.add("from", "must be within the last 32 days", "out_of_range")
        if query.from_ is not None and query.to is not None and query.to < query.from_:
            violations.add("to", "must not be before from", "invalid_range")
        if query.ingested_at_from is not None and query.ingested_at_from < oldest:
            violations.add("ingestedAtFrom", "must be within the last 32 days", "out_of_range")
        if (
            query.ingested_at_from is not None
            and query.ingested_at_to is not None
            and query.ingested_at_to < query.ingested_at_from
        ):
            violations.add("ingestedAtTo", "must not be before ingestedAtFrom", "invalid_range")
        if not 1 <= query.limit <= 100:
            violations.add("limit", "must be between 1 and 100", "out_of_range")
        violations.raise_if_any()
        if query.customer_ids:
            subjects = await self._customer_subjects(namespace, query.customer_ids)
            if not subjects:
                return []  # customers with no subjects have no events
            query = dataclasses.replace(query, subjects=subjects)
        events = await self._store.list_events(namespace, query)
        meters = await self._meters.list_meters(namespace)
        owners = await self.customers.owners(namespace, [e.event.subject for e in events]) if self.customers else {}
        return [
            dataclasses.replace(
                e, validation_error=validation_error(e.event, meters), customer_id=owners.get(e.event.subject)
            )
            for e in events
        ]

    async def _customer_subjects(self, namespace: str, customer_ids: Sequence[str]) -> tuple[str, ...]:
        """Every subject of these customers (key and subject keys); an unknown customer is a 400, as in OpenMeter."""
        if self.customers is None:
            raise ValidationError.single("customerId", "customers are not available in this process", "unavailable")
        found = await self.customers.resolve(namespace, customer_ids)
        # OpenMeter's filter names customers by ID; a key resolving to a customer is taken as well.
        missing = [token for token in customer_ids if token not in found]
        if missing:
            raise ValidationError.single(
                "customerId", f"customers not found in namespace {namespace}: {', '.join(missing)}", "not_found"
            )
        return tuple(dict.fromkeys(subject for _, subjects in found.values() for subject in subjects))

    def default_from(self) -> datetime:
        return self._clock() - self.DEFAULT_LOOKBACK

    async def debug_counts(self, namespace: str) -> list[tuple[str, int]]:
        """OpenMeter's debug metrics: events per subject since midnight UTC (the counters reset daily)."""
        midnight = self._clock().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return await self._store.count_events_by_subject(namespace, midnight)
