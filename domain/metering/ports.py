"""What the metering service needs from the outside world; adapters/ implements these."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from domain.metering.event_list import EventListQuery
from domain.metering.events import Claim, Event, EventKey, FlushResult, PendingBatch, StoredEvent
from domain.metering.models import Meter
from domain.metering.query import GroupByValuesQuery, MeterQuery, QueryRow, SubjectsQuery


class MeterRepository(Protocol):
    async def list_meters(self, namespace: str, include_deleted: bool = False) -> list[Meter]: ...

    async def get(self, namespace: str, id_or_slug: str) -> Meter | None: ...

    async def get_by_slug_any(self, namespace: str, slug: str) -> Meter | None:
        """The active meter with this slug, if any (slugs are unique among active meters)."""
        ...

    async def list_all_live(self) -> list[Meter]:
        """Live meters of every namespace (the sink and the backfill worker serve them all)."""
        ...

    async def mark_backfilled(self, meter: Meter) -> bool:
        """Sets the VALUES_BACKFILLED annotation unless the meter changed since `meter` was read."""
        ...

    async def create(self, meter: Meter) -> None: ...

    async def update(self, meter: Meter) -> None: ...


class CustomerResolver(Protocol):
    """Customers for meter queries' filterCustomerId and the event lists (implemented by the customers area)."""

    async def resolve(self, namespace: str, ids_or_keys: Sequence[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
        """ID or key -> (customer ID, subject keys) for the live customers found; others are absent."""
        ...

    async def owners(self, namespace: str, subjects: Sequence[str]) -> dict[str, str]:
        """Event subject -> ID of the live customer it is attributed to; unattributed ones are absent."""
        ...


class SubjectNames(Protocol):
    """Subject entities' display names, for the meter query's CSV (implemented by the customers area)."""

    async def display_names(self, namespace: str, keys: Sequence[str]) -> dict[str, str | None]:
        """Key -> display name (None when it has none) of the keys that are subjects; others are absent."""
        ...


class EventBus(Protocol):
    """Carries accepted events from the ingest API to the sink.

    `publish` returns only once the batch is durable (Kafka acks=all, or stored by the in-process
    sink); it raises domain UnavailableError when the bus cannot take it.
    """

    async def publish(self, events: Sequence[Event]) -> None: ...


class BatchConsumer(Protocol):
    """What a bus delivers accepted events to (the sink implements it; the bus adapters call it).

    `flush` stores one batch exactly once and returns only when it is durable; the bus acknowledges
    the batch (Kafka: commits its offsets) only after that, or, given `acknowledge`, answers its
    callers when the sink calls it (the events stored, their keys claimed and announced: durable and
    counted once; what follows is bookkeeping that recovery redoes). Events whose keys a still
    pending flush holds are neither stored nor duplicates (`FlushResult.in_doubt`): the bus must not
    acknowledge them (Kafka: commit no offset past them) and delivers them again later. `recover`
    settles flushes a crash interrupted for this owner (a Kafka partition, or the in-process bus)
    before it delivers again.
    """

    async def recover(self, owner: str | None = None) -> None: ...

    async def flush(
        self,
        events: Sequence[Event],
        owner: str | None = None,
        acknowledge: Callable[[FlushResult], None] | None = None,
    ) -> FlushResult: ...

    async def flush_parts(self, parts: Sequence[tuple[str, Sequence[Event]]]) -> list[FlushResult]:
        """`flush` of several owners' events at once (a Kafka fetch's partitions): one insert into
        the event store, each owner's events claimed and settled as a batch of its own, so `recover`
        for one owner settles its part alone. One result per part, in order."""
        ...


class EventStore(Protocol):
    async def query_meter(self, meter: Meter, query: MeterQuery) -> list[QueryRow]: ...

    async def query_meter_wire(self, meter: Meter, query: MeterQuery) -> bytes:
        """The rows `query_meter` gives, already encoded as the `data` field (4) of
        tally.v1.QueryMeterResponse in protobuf's wire format: large results reach the API without
        an object per row."""
        ...

    async def query_meter_windows(
        self,
        meter: Meter,
        query: MeterQuery,
        windows: Sequence[tuple[datetime, datetime]],
        tail_from: datetime | None = None,
    ) -> tuple[list[float | None], datetime | None]:
        """The meter value over each [since, until) window in one scan (None: no event counts), and
        the earliest stored event time at or after `tail_from` (None: none, or no `tail_from`)."""
        ...

    async def list_subjects(self, namespace: str, meter: Meter, query: SubjectsQuery) -> list[str]: ...

    async def list_group_by_values(self, namespace: str, meter: Meter, query: GroupByValuesQuery) -> list[str]: ...

    async def list_events(self, namespace: str, query: EventListQuery) -> Sequence[StoredEvent]: ...

    async def count_events_by_subject(self, namespace: str, since: datetime) -> list[tuple[str, int]]:
        """Stored events with a time at or after `since`, per subject."""
        ...

    async def backfill_progress(self, meter: Meter) -> tuple[int, int]:
        """(events of the meter's type that carry its values, events of its type)."""
        ...


class EventKeyStore(Protocol):
    """Recorded (namespace, source, id) keys of stored events; see adapters/postgres/event_keys.py."""

    async def claim(self, owner: str, events: Sequence[Event], token: str) -> Claim: ...
    async def commit(self, batch_ids: Sequence[int]) -> None: ...
    async def abort(self, batch_id: int, keep: Sequence[EventKey] = ()) -> None: ...
    async def pending(self, owner: str) -> list[PendingBatch]: ...
    async def purge(self, window: timedelta) -> int: ...


ExtractedValues = tuple[dict[str, float], dict[str, str]]


class EventWriter(Protocol):
    async def insert(self, events: Sequence[Event], values: Sequence[ExtractedValues], token: str) -> None: ...
    async def existing_keys(self, keys: Sequence[EventKey], insert_token: str) -> set[EventKey]:
        """Which of `keys` the store holds, asked once the insert named `insert_token` can store
        nothing more (a server may still be running an insert whose client gave up): final."""
        ...
