"""The sink: moves accepted events from the bus into the event store, each exactly once.

One flush: drop duplicates within the batch and against the recorded keys -> record the remaining
keys with a pending batch -> insert the events (with meter values extracted for every meter of their
type) -> announce what changed (domain/announcements.py: the value caches and the balance worker
listen, in this process or on Kafka) -> `acknowledge` -> mark the batch stored. The in-process bus
answers its callers at `acknowledge`: the events are in the store and their keys claimed, which is
all that "stored exactly once" needs, and a read after the answer sees them (the caches were told).
Marking the batch stored is bookkeeping for recovery, so the callers do not wait for that second
Postgres transaction. The Kafka consumer commits offsets only after the whole flush, so a crash
replays the batch and the keys drop what was already stored.

A flush may carry several owners' events (`flush_parts`: the Kafka consumer's partitions, fetched
together): each owner's keys are recorded as a batch of its own, every batch naming the flush's one
insert, so an owner's recovery (a partition's next sink) settles its own batch by the same rules
whatever happens to the others', and the event store gets one insert per flush, not per partition.

A key held by another batch that is still pending is *in doubt*, not a duplicate: that batch may yet
fail to store its event. Such events are left out of the flush and reported in
`FlushResult.in_doubt`; the bus does not acknowledge them (the in-process bus answers their requests
retryable, the Kafka consumer commits no offset past them and delivers them again), and the retry
finds them stored (duplicates) or free once the pending batch is settled.

Settling a batch (keep the keys whose events reached the store, release the others, mark it) is done
one way, `_settle`: right after a failed insert; by `recover` at start (or when a Kafka partition is
assigned) for what a dead process left pending; and, when settling after a failed insert or marking
a stored batch fails (Postgres briefly away), again in the background until it succeeds, so the
doubt it leaves resolves without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter
from typing import Protocol

import structlog

from adapters import metrics
from domain.metering.events import Claim, Event, EventKey, FlushResult, event_key, new_insert_token
from domain.metering.jsonpath import JsonPath, extract_values
from domain.metering.models import Meter
from domain.metering.ports import EventKeyStore, EventWriter, ExtractedValues

log = structlog.get_logger(__name__)

TouchedKey = tuple[str, str, str]  # (namespace, subject, event type)
Listener = Callable[[set[TouchedKey]], Awaitable[None]]


class MeterSource(Protocol):
    async def list_all_live(self) -> Sequence[Meter]: ...


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
    def __init__(
        self,
        writer: EventWriter,
        keys: EventKeyStore,
        catalog: MeterCatalog,
        owner: str,
        settle_retry_seconds: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.writer = writer
        self.keys = keys
        self.catalog = catalog
        self.owner = owner
        self._listeners: list[Listener] = []
        # Batches this process could not settle (batch id -> its insert's token and claimed keys),
        # retried in the background from the first delay, doubling up to the second, until settled.
        self._unsettled: dict[int, tuple[str, list[EventKey]]] = {}
        self._settle_retry_seconds = settle_retry_seconds
        self._settler: asyncio.Task[None] | None = None

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def recover(self, owner: str | None = None) -> None:
        """Settles flushes a crash interrupted: keeps the keys of events that reached the store."""
        for batch in await self.keys.pending(owner or self.owner):
            stored = await self._settle(batch.id, batch.token, batch.keys)
            log.warning("recovered interrupted sink flush", batch=batch.id, events=len(batch.keys), stored=stored)

    async def close(self) -> None:
        """Stops the background settling; a batch still unsettled stays pending for the next start."""
        if self._settler is not None:
            self._settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._settler
            self._settler = None

    async def flush(
        self,
        events: Sequence[Event],
        owner: str | None = None,
        acknowledge: Callable[[FlushResult], None] | None = None,
    ) -> FlushResult:
        """Stores `events` exactly once, except those in doubt (module docstring), which it leaves to
        a retry; calls `acknowledge` with the result once the stored ones are stored and announced,
        before the batch is marked stored. Raises if anything fails, also after that call."""
        answer = None if acknowledge is None else (lambda results: acknowledge(results[0]))
        return (await self._flush([(owner or self.owner, events)], answer))[0]

    async def flush_parts(self, parts: Sequence[tuple[str, Sequence[Event]]]) -> list[FlushResult]:
        """`flush` of several owners' events (a Kafka fetch's partitions) with one insert: each
        owner's keys are claimed by a batch of its own, all naming that insert, so recovering one
        owner settles its part alone, as if it had been flushed by itself. One result per part."""
        return await self._flush(parts, None)

    async def _flush(
        self,
        parts: Sequence[tuple[str, Sequence[Event]]],
        acknowledge: Callable[[list[FlushResult]], None] | None,
    ) -> list[FlushResult]:
        uniques = [(owner, _first_of_each(events)) for owner, events in parts]
        every = [event for _, unique in uniques for event in unique]
        if not every:
            return [FlushResult(0, 0) for _ in parts]
        # Before the claims: reading the meter catalogue can fail (Postgres away), and a failure
        # between a claim and the insert would leave the keys claimed by a batch that stored
        # nothing, so the client's retry would be in doubt until that batch is settled.
        values = await self._values(every)
        token = new_insert_token()
        claims: list[Claim | None] = []
        started = time.perf_counter()
        try:
            for owner, unique in uniques:
                claims.append(await self.keys.claim(owner, unique, token) if unique else None)
        except BaseException:
            # Nothing was inserted: the parts claimed so far are settled (their keys released).
            await asyncio.shield(self._settle_all(claims, token, may_be_stored=False))
            raise
        metrics.SINK_KEYS_SECONDS.labels("claim").observe(time.perf_counter() - started)
        batches = [claim for claim in claims if claim is not None]
        fresh = [event for claim in batches for event in claim.claimed]
        inserted = False
        try:
            if fresh:
                if len(fresh) < len(every):  # the claims return the same Event objects they were given
                    by_event = {id(event): value for event, value in zip(every, values, strict=True)}
                    values = [by_event[id(event)] for event in fresh]
                await self._insert(batches, token, fresh, values)  # settles the batches itself if it fails
            inserted = True
            results = [
                _result(events, claim) if claim is not None else FlushResult(0, len(events))
                for (_, events), claim in zip(parts, claims, strict=True)
            ]
            metrics.SINK_BATCH_SIZE.observe(sum(len(events) for _, events in parts))
            metrics.EVENTS_STORED.inc(len(fresh))
            metrics.EVENTS_DUPLICATE.inc(sum(result.duplicates for result in results))
            metrics.EVENTS_IN_DOUBT.inc(sum(len(result.in_doubt) for result in results))
            if self._listeners:
                # Every event of the batch, duplicates included: a batch replayed after a crash
                # between storing and announcing is all duplicates, and must still be announced. A
                # listener's failure fails the flush (the bus then acknowledges nothing and replays
                # the batch), so what was stored is announced at least once; an extra announcement
                # is harmless.
                touched = set(map(_TOUCHED, every))
                for listener in self._listeners:
                    await listener(touched)
            if acknowledge is not None:
                acknowledge(results)
            started = time.perf_counter()
            await self.keys.commit([claim.batch_id for claim in batches])
            metrics.SINK_KEYS_SECONDS.labels("stored").observe(time.perf_counter() - started)
        except BaseException:
            if inserted:
                # Stored, but announcing or marking the batches failed. Left pending, their keys
                # would keep the replay or retry in doubt: settle them now (keeping every key), or later.
                await asyncio.shield(self._settle_all(claims, token, may_be_stored=True))
            raise
        return results

    async def _insert(
        self, batches: list[Claim], token: str, events: list[Event], values: list[ExtractedValues]
    ) -> None:
        started = time.perf_counter()
        try:
            # The token names the insert: a driver-level retry of the same insert is dropped by
            # ClickHouse's insert deduplication instead of storing the events twice.
            await self.writer.insert(events, values, token)
        except BaseException:
            # The insert may or may not have landed (a timeout after the write): settle it the way
            # recovery would, so a retry neither loses nor doubles anything.
            await asyncio.shield(self._settle_all(batches, token, may_be_stored=True))
            raise
        metrics.SINK_INSERT_SECONDS.observe(time.perf_counter() - started)
        oldest_ms = min(event.ingested_ms for event in events)
        metrics.SINK_DELAY_SECONDS.observe(max(0.0, time.time() - oldest_ms / 1000))

    async def _settle(self, batch_id: int, token: str, keys: Sequence[EventKey]) -> int:
        """Keeps the batch's keys whose events reached the store, releases the others and marks the
        batch settled; returns how many were stored. Raises if the stores cannot be reached. Settling
        a batch twice (here and by another sink's recovery) gives the same result."""
        # Asked once the batch's insert can store nothing more: a server may still be running one
        # whose client gave up, which would land after the look-up under released keys.
        stored = await self.writer.existing_keys(keys, token)
        await self.keys.abort(batch_id, keep=sorted(stored))
        self._unsettled.pop(batch_id, None)
        return len(stored)

    async def _settle_all(self, claims: Sequence[Claim | None], token: str, may_be_stored: bool) -> None:
        """Settles each claimed batch of a failed flush now, or in the background if it cannot be.
        `may_be_stored`: whether the insert may have run; if not, every key is released unread."""
        for claim in claims:
            if claim is not None:
                keys = list(map(event_key, claim.claimed)) if may_be_stored else []
                await self._settle_or_retry_later(claim.batch_id, token, keys)

    async def _settle_or_retry_later(self, batch_id: int, token: str, keys: list[EventKey]) -> None:
        try:
            await self._settle(batch_id, token, keys)
        except Exception:
            log.exception("could not settle a failed flush; retrying in the background", batch=batch_id)
            self._settle_later(batch_id, token, keys)

    def _settle_later(self, batch_id: int, token: str, keys: list[EventKey]) -> None:
        self._unsettled[batch_id] = (token, keys)
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._settle_unsettled(), name="sink-settle")

    async def _settle_unsettled(self) -> None:
        delay, longest = self._settle_retry_seconds
        while self._unsettled:
            await asyncio.sleep(delay)
            for batch_id, (token, keys) in list(self._unsettled.items()):
                try:
                    stored = await self._settle(batch_id, token, keys)
                except Exception as error:
                    delay = min(longest, delay * 2)
                    log.warning("settling a failed flush failed again; retrying", batch=batch_id, error=str(error))
                    break
                log.warning("settled a failed flush", batch=batch_id, events=len(keys), stored=stored)

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


def _first_of_each(events: Sequence[Event]) -> Sequence[Event]:
    """`events` without repeats of a key: the first of each is kept."""
    keys = list(map(event_key, events))
    if len(set(keys)) == len(keys):
        return events
    first: dict[EventKey, Event] = {}
    for key, event in zip(keys, events, strict=True):
        first.setdefault(key, event)
    return list(first.values())


def _result(events: Sequence[Event], claim: Claim) -> FlushResult:
    """One part's outcome: what its batch claimed was stored; the rest were in doubt or duplicates
    (of earlier flushes, or of each other within the part)."""
    duplicates = len(events) - len(claim.claimed) - len(claim.in_doubt)
    return FlushResult(len(claim.claimed), duplicates, frozenset(map(event_key, claim.in_doubt)))


_NO_VALUES: ExtractedValues = ({}, {})
_TOUCHED: Callable[[Event], TouchedKey] = attrgetter("namespace", "subject", "type")
