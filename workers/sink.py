"""The sink: moves accepted events from the bus into the event store, each exactly once.

One flush: drop duplicates within the batch and against the recorded keys -> record the remaining
keys with a pending batch -> insert the events (with meter values extracted for every meter of their
type) -> announce what changed (domain/announcements.py: the value caches and the balance worker
listen, in this process or on Kafka) -> `acknowledge` -> mark the batch stored. The in-process bus
answers its callers at `acknowledge`: the events are in the store and their keys claimed, which is
all that "stored exactly once" needs, and a read after the answer sees them (the caches were told).
Marking the batch stored is bookkeeping for recovery, so the callers do not wait for that second
Postgres transaction: if it fails or the process dies first, the batch stays pending and the recovery
at start keeps exactly the keys whose events reached the store (all of them here). The Kafka consumer
commits offsets only after the whole flush, so a crash replays the batch and the keys drop what was
already stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

import structlog

from adapters import metrics
from domain.metering.events import Event, EventKey, event_key
from domain.metering.jsonpath import JsonPath, extract_values
from domain.metering.models import Meter
from domain.metering.ports import EventKeyStore, EventWriter, ExtractedValues

log = structlog.get_logger(__name__)

TouchedKey = tuple[str, str, str]  # (namespace, subject, event type)
Listener = Callable[[set[TouchedKey]], Awaitable[None]]


class MeterSource(Protocol):
    async def list_all_live(self) -> Sequence[Meter]: ...


@dataclass(frozen=True, slots=True)
class FlushResult:
    stored: int
    duplicates: int


class MeterCatalog:
    """Which JSONPaths to extract for each (namespace, event type), refreshed from the meters."""

    def __init__(self, source: MeterSource, refresh_seconds: float = 15.0) -> None:
        self._source = source
        self._refresh_seconds = refresh_seconds
        self._paths: dict[tuple[str, str], tuple[list[JsonPath], list[JsonPath]]] = {}
        self._loaded_at = 0.0

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    async def paths(self, namespace: str, event_type: str) -> tuple[list[JsonPath], list[JsonPath]]:
        if time.monotonic() - self._loaded_at > self._refresh_seconds:
            await self._reload()
        return self._paths.get((namespace, event_type), ([], []))

    async def _reload(self) -> None:
        numeric: dict[tuple[str, str], dict[str, JsonPath]] = {}
        strings: dict[tuple[str, str], dict[str, JsonPath]] = {}
        for meter in await self._source.list_all_live():
            key = (meter.namespace, meter.event_type)
            meter_numeric, meter_strings = meter.extracted_paths
            for path in meter_numeric:
                numeric.setdefault(key, {})[path.canonical] = path
            for path in meter_strings:
                strings.setdefault(key, {})[path.canonical] = path
        self._paths = {
            key: (list(numeric.get(key, {}).values()), list(strings.get(key, {}).values()))
            for key in set(numeric) | set(strings)
        }
        self._loaded_at = time.monotonic()


class EventSink:
    def __init__(self, writer: EventWriter, keys: EventKeyStore, catalog: MeterCatalog, owner: str) -> None:
        self.writer = writer
        self.keys = keys
        self.catalog = catalog
        self.owner = owner
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def recover(self, owner: str | None = None) -> None:
        """Settles flushes a crash interrupted: keeps the keys of events that reached the store."""
        for batch in await self.keys.pending(owner or self.owner):
            stored = await self.writer.existing_keys(batch.keys)
            await self.keys.abort(batch.id, keep=sorted(stored))
            log.warning("recovered interrupted sink flush", batch=batch.id, events=len(batch.keys), stored=len(stored))

    async def flush(
        self, events: Sequence[Event], owner: str | None = None, acknowledge: Callable[[], None] | None = None
    ) -> FlushResult:
        """Stores `events` exactly once; calls `acknowledge` once they are stored and announced, before
        the batch is marked stored (module docstring). Raises if anything fails, also after that call."""
        if not events:
            return FlushResult(0, 0)
        keys = list(map(event_key, events))
        unique: Sequence[Event] = events
        if len(set(keys)) < len(keys):  # duplicates within the batch: the first of each is kept
            first: dict[EventKey, Event] = {}
            for key, event in zip(keys, events, strict=True):
                first.setdefault(key, event)
            unique = list(first.values())
        # Before the claim: reading the meter catalogue can fail (Postgres away), and a failure
        # between the claim and the insert would leave the keys claimed by a batch that stored
        # nothing, so the client's retry would be dropped as a duplicate until the next start.
        values = await self._values(unique)
        started = time.perf_counter()
        batch_id, fresh = await self.keys.claim(owner or self.owner, list(unique))
        metrics.SINK_KEYS_SECONDS.labels("claim").observe(time.perf_counter() - started)
        if fresh:
            if len(fresh) < len(unique):  # the claim returns the same Event objects it was given
                by_event = {id(event): value for event, value in zip(unique, values, strict=True)}
                values = [by_event[id(event)] for event in fresh]
            await self._insert(batch_id, fresh, values)
        duplicates = len(events) - len(fresh)
        metrics.SINK_BATCH_SIZE.observe(len(events))
        metrics.EVENTS_STORED.inc(len(fresh))
        metrics.EVENTS_DUPLICATE.inc(duplicates)
        if self._listeners:
            # Every event of the batch, duplicates included: a batch replayed after a crash between
            # storing and announcing is all duplicates, and must still be announced. A listener's
            # failure fails the flush (the bus then acknowledges nothing and replays the batch), so
            # what was stored is announced at least once; an extra announcement is harmless.
            touched = set(map(_TOUCHED, unique))
            for listener in self._listeners:
                await listener(touched)
        if acknowledge is not None:
            acknowledge()
        started = time.perf_counter()
        await self.keys.commit(batch_id)
        metrics.SINK_KEYS_SECONDS.labels("stored").observe(time.perf_counter() - started)
        return FlushResult(len(fresh), duplicates)

    async def _insert(self, batch_id: int, events: list[Event], values: list[ExtractedValues]) -> None:
        started = time.perf_counter()
        try:
            # The batch id names the insert: a driver-level retry of the same insert is dropped by
            # ClickHouse's insert deduplication instead of storing the batch twice.
            await self.writer.insert(events, values, f"batch-{batch_id}")
        except BaseException:
            # The insert may or may not have landed (a timeout after the write): settle it the way
            # recovery would, so a retry neither loses nor doubles anything.
            await asyncio.shield(self._settle(batch_id, events))
            raise
        metrics.SINK_INSERT_SECONDS.observe(time.perf_counter() - started)
        oldest_ms = min(event.ingested_ms for event in events)
        metrics.SINK_DELAY_SECONDS.observe(max(0.0, time.time() - oldest_ms / 1000))

    async def _settle(self, batch_id: int, events: Sequence[Event]) -> None:
        keys = [(e.namespace, e.source, e.id) for e in events]
        try:
            stored = await self.writer.existing_keys(keys)
            await self.keys.abort(batch_id, keep=sorted(stored))
        except Exception:
            # Left pending: the next start's recovery settles it.
            log.exception("could not settle a failed flush; recovery will", batch=batch_id)

    async def _values(self, events: Sequence[Event]) -> list[ExtractedValues]:
        """Each event's meter values, for the meters of its (namespace, type)."""
        paths: dict[tuple[str, str], tuple[list[JsonPath], list[JsonPath]]] = {}
        result: list[ExtractedValues] = []
        for event in events:
            key = (event.namespace, event.type)
            wanted = paths.get(key)
            if wanted is None:
                wanted = paths[key] = await self.catalog.paths(*key)
            numeric, strings = wanted
            result.append(extract_values(event.decoded(), numeric, strings) if numeric or strings else _NO_VALUES)
        return result


_NO_VALUES: ExtractedValues = ({}, {})
_TOUCHED: Callable[[Event], TouchedKey] = attrgetter("namespace", "subject", "type")
