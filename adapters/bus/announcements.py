"""Announcements (domain/announcements.py) in one process, or across processes on a Kafka topic.

On Kafka, `announce` produces with acks=all and then runs this process's own handlers at once (so a
process sees its own writes immediately). Every process that keeps derived state (api: the value
cache; sink: the meter catalogue) listens with a consumer of its own, without a group, from the end
of the topic, skipping what it announced itself. The balance role reads through the consumer group
`tally-balance` instead, with committed offsets, so a restarted balance worker picks up what was
announced while it was down and replicas share the partitions.

Staleness: a listener tracks how far it has read. Every `sync_interval` it asks the broker for the
end offsets and records the moment it asked once it has handled everything up to them; `synced_within`
then says whether every announcement acknowledged more than that long ago has been handled. The value
cache serves only while that holds (and computes while the process is behind: nothing is lost, the
announcements are read in order). It is cleared only when announcements may have been skipped: the
next message of a partition is not the one after the last handled (an offset reset after retention
deleted what the listener had not read).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from adapters import metrics
from domain.announcements import (
    Announcement,
    EntitiesChanged,
    EntitlementChanged,
    Handler,
    MetersChanged,
    UsageStored,
)
from domain.errors import UnavailableError

log = structlog.get_logger(__name__)


def encode(origin: str, announcement: Announcement) -> bytes:
    match announcement:
        case UsageStored(touched):
            return orjson.dumps({"o": origin, "k": "usage", "t": sorted(touched)})
        case EntitlementChanged(namespace, entitlement_id):
            return orjson.dumps({"o": origin, "k": "entitlement", "n": namespace, "e": entitlement_id})
        case EntitiesChanged():
            return orjson.dumps({"o": origin, "k": "entities"})
        case MetersChanged():
            return orjson.dumps({"o": origin, "k": "meters"})
    raise TypeError(f"not an announcement: {announcement!r}")


def decode(value: bytes) -> tuple[str, Announcement | None]:
    """(origin, announcement); None for a kind this version does not know (a newer peer's)."""
    message = orjson.loads(value)
    kind = message.get("k")
    origin = str(message.get("o", ""))
    if kind == "usage":
        return origin, UsageStored(frozenset((str(n), str(s), str(t)) for n, s, t in message["t"]))
    if kind == "entitlement":
        return origin, EntitlementChanged(str(message["n"]), str(message["e"]))
    if kind == "entities":
        return origin, EntitiesChanged()
    if kind == "meters":
        return origin, MetersChanged()
    return origin, None


async def _dispatch(handlers: Iterable[Handler], announcement: Announcement) -> None:
    for handler in handlers:
        try:
            await handler(announcement)
        except Exception:
            log.exception("announcement handler failed", announcement=type(announcement).__name__)


class LocalAnnouncements:
    """The embedded default: every listener is in this process."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def announce(self, announcement: Announcement) -> None:
        await _dispatch(self._handlers, announcement)

    def synced_within(self, seconds: float) -> bool:
        return True


class KafkaAnnouncements:
    """Announces on the topic; with `listen`, also hears every other process's announcements."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        request_timeout_ms: int,
        listen: bool,
        sync_interval_s: float = 0.2,
        max_staleness_s: float = 1.0,
        fetch_max_wait_ms: int = 100,
    ) -> None:
        self.brokers = brokers
        self.topic = topic
        self.origin = uuid.uuid4().hex
        self._handlers: list[Handler] = []
        self._listen = listen
        self._sync_interval = sync_interval_s
        self._max_staleness = max_staleness_s
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._producer = AIOKafkaProducer(
            bootstrap_servers=brokers, acks="all", request_timeout_ms=request_timeout_ms, linger_ms=0
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._handled: dict[TopicPartition, int] = {}
        self._synced_at: float | None = None
        # Called when announcements may have been skipped (the value cache clears itself).
        self.on_gap: list[Callable[[], None]] = []
        self.received = 0

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def start(self) -> None:
        await self._producer.start()
        if not self._listen:
            return
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.brokers,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        await consumer.start()
        partitions = consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            await consumer.topics()  # metadata refresh: the topic was created a moment ago
            partitions = consumer.partitions_for_topic(self.topic) or {0}
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        # Derived state starts empty, so nothing announced before this start matters here.
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            self._handled[tp] = await consumer.position(tp)
        self._consumer = consumer
        self._synced_at = time.monotonic()
        self._tasks = [
            asyncio.create_task(self._consume(), name="announcements"),
            asyncio.create_task(self._sync(), name="announcements-sync"),
        ]

    async def announce(self, announcement: Announcement) -> None:
        try:
            await self._producer.send_and_wait(self.topic, encode(self.origin, announcement))
        except KafkaError as error:
            raise UnavailableError(f"announcing a change on Kafka failed: {error}; retry") from error
        await _dispatch(self._handlers, announcement)

    def synced_within(self, seconds: float | None = None) -> bool:
        """Every announcement acknowledged more than `seconds` ago has been handled here."""
        limit = self._max_staleness if seconds is None else seconds
        return self._synced_at is not None and time.monotonic() - self._synced_at <= limit

    async def _consume(self) -> None:
        assert self._consumer is not None
        with metrics.LIVENESS.watching("announcements", 30.0):
            while True:
                metrics.LIVENESS.beat("announcements")
                try:
                    batches = await self._consumer.getmany(timeout_ms=100, max_records=1000)
                    for tp, messages in batches.items():
                        if messages[0].offset > self._handled.get(tp, messages[0].offset):
                            log.warning(
                                "announcements skipped (offset reset); derived state cleared", partition=tp.partition
                            )
                            for callback in self.on_gap:
                                callback()
                        for message in messages:
                            self.received += 1
                            origin, announcement = decode(message.value or b"{}")
                            if announcement is not None and origin != self.origin:
                                await _dispatch(self._handlers, announcement)
                        self._handled[tp] = messages[-1].offset + 1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reading announcements failed; retrying")
                    await asyncio.sleep(0.5)

    async def _sync(self) -> None:
        assert self._consumer is not None
        while True:
            await asyncio.sleep(self._sync_interval)
            asked = time.monotonic()
            try:
                ends = await self._consumer.end_offsets(list(self._handled))
                deadline = asked + 10 * self._max_staleness
                while any(self._handled.get(tp, 0) < end for tp, end in ends.items()):
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.005)
                else:
                    self._synced_at = asked
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checking the announcements position failed")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await self._consumer.stop()
        await self._producer.stop()


class KafkaAnnouncementGroup:
    """The balance role's durable reading of the announcements: consumer group, committed offsets.

    Offsets are committed after the handler took each batch (the balance worker only queues it), so
    a balance worker that crashes loses at most what it had queued and not yet recomputed; its
    successor recomputes from the committed offset on."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        group: str,
        handler: Handler,
        session_timeout_ms: int,
        fetch_max_wait_ms: int = 100,
    ) -> None:
        self._handler = handler
        self._topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=brokers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 5),
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._task: asyncio.Task[None] | None = None
        self.last_poll = time.monotonic()

    async def start(self) -> None:
        self._consumer.subscribe([self._topic])
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="announcements-balance")

    async def _run(self) -> None:
        with metrics.LIVENESS.watching("balance-announcements", 30.0):
            while True:
                metrics.LIVENESS.beat("balance-announcements")
                try:
                    batches = await self._consumer.getmany(timeout_ms=200, max_records=1000)
                    self.last_poll = time.monotonic()
                    for tp, messages in batches.items():
                        for message in messages:
                            _, announcement = decode(message.value or b"{}")
                            if announcement is not None:
                                await _dispatch((self._handler,), announcement)
                        await self._consumer.commit({tp: messages[-1].offset + 1})
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("balance: reading announcements failed; retrying")
                    await asyncio.sleep(0.5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
