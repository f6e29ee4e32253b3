"""The Kafka bus (production): ingest produces with acks=all; the sink consumes in a consumer group.

Framing: one Kafka message carries all of a request's events bound for one partition (a compact
JSON array of arrays), so per-message overhead is paid per batch, not per event. An event's
partition is chosen by a hash of (namespace, source, id): duplicates of an event always meet in the
same partition, where one sink handles them in order. The sink gathers what arrives within its
flush interval and stores the events of every fetched partition with shared inserts, each
partition's keys claimed as a batch of its own (so a partition's next owner settles its part alone).
Offsets are committed only after the sink has stored the batch; a crash replays it and the sink's
key records drop what was already stored.
A flush that leaves events in doubt (their keys held by a flush still pending: workers/sink.py) is
not committed: the consumer seeks that partition back to its last committed offset and pauses it,
delivering it again after a wait that doubles per attempt (up to IN_DOUBT_MAX_SECONDS), until the
pending flush is settled and the events are stored or found to be duplicates. Other partitions go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from collections.abc import Iterable, Sequence
from itertools import starmap
from operator import attrgetter

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from adapters import metrics
from domain.errors import UnavailableError
from domain.metering.events import Event
from domain.metering.ports import BatchConsumer

log = structlog.get_logger(__name__)

STALL_CHECK_SECONDS = 5.0
STALL_SECONDS = 10.0
# Redelivery of a batch with events in doubt: the first wait, doubled per attempt up to the second.
IN_DOUBT_FIRST_SECONDS = 0.2
IN_DOUBT_MAX_SECONDS = 5.0
# Messages held for one flush at most (each carries one request's events for its partition).
MAX_FETCH_MESSAGES = 1000


# An event's fields in the order of the wire's inner arrays (and of Event's constructor); attrgetter
# and starmap do the per-event work in C, and orjson writes tuples as arrays.
_WIRE = attrgetter("namespace", "id", "type", "source", "subject", "time_ms", "data", "ingested_ms")


def encode(events: Sequence[Event]) -> bytes:
    return orjson.dumps(list(map(_WIRE, events)))


def decode(value: bytes) -> list[Event]:
    return list(starmap(Event, orjson.loads(value)))


def partition_for(event: Event, partitions: int) -> int:
    digest = hashlib.blake2b(f"{event.namespace}\x00{event.source}\x00{event.id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


async def ensure_topic(brokers: str, topic: str, partitions: int, configs: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name=topic, num_partitions=partitions, replication_factor=1, topic_configs=configs or {})]
        )
        # The admin client reports per-topic errors in the response rather than raising them.
        for name, code, *rest in getattr(response, "topic_errors", ()):
            if code == 0:
                log.info("kafka topic created", topic=name, partitions=partitions)
            elif code != TopicAlreadyExistsError.errno:
                raise for_code(code)(f"creating topic {name}: {rest[0] if rest else code}")
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


class KafkaBus:
    def __init__(
        self, brokers: str, topic: str, request_timeout_ms: int, enable_idempotence: bool, linger_ms: int = 0
    ) -> None:
        self.brokers = brokers
        self.topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=brokers,
            acks="all",
            enable_idempotence=enable_idempotence,
            request_timeout_ms=request_timeout_ms,
            # aiokafka keeps one produce request in flight per broker and sends what accumulated
            # meanwhile as the next one, so concurrent calls share requests without lingering.
            linger_ms=linger_ms,
            max_request_size=16 * 1024 * 1024,
            compression_type=None,
        )
        self._partitions: int = 1

    async def start(self) -> None:
        await self._producer.start()
        partitions = await self._producer.partitions_for(self.topic)
        self._partitions = max(1, len(partitions or ()))

    async def publish(self, events: Sequence[Event]) -> None:
        by_partition: dict[int, list[Event]] = {}
        for event in events:
            by_partition.setdefault(partition_for(event, self._partitions), []).append(event)
        try:
            sends = [
                await self._producer.send(self.topic, encode(chunk), partition=partition)
                for partition, chunk in by_partition.items()
            ]
            await asyncio.gather(*sends)
        except KafkaError as error:
            raise UnavailableError(f"the event bus (Kafka) did not accept the events: {error}; retry") from error

    async def stop(self) -> None:
        await self._producer.stop()


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands partitions between the sinks of a group so that no two ever flush the same one, and no
    partition is flushed before its interrupted flushes are settled.

    Revoked: the batch in hand is finished (stored, its offsets committed) before the group may give
    its partitions to another sink. Without this wait the next owner settles the batch as
    interrupted while it is still being stored, releases its keys and stores its events a second time
    (or, if the first owner then fails, drops them as duplicates of events that were never stored).
    Assigned: the interrupted flushes of each partition are settled before anything of it is flushed.
    aiokafka hands out the new assignment (and wakes `getmany`) before it calls this listener, so the
    consumer loop checks `settled` itself: replayed events flushed before the settling would meet their
    own still-claimed keys, be dropped as duplicates and be lost once the settling released the keys.
    """

    def __init__(self, sink: BatchConsumer, in_hand: asyncio.Lock) -> None:
        self._sink = sink
        self._in_hand = in_hand
        # Bumped at every revocation: a batch fetched under an earlier generation is not flushed
        # (its partitions may have moved; a partition kept restarts from its committed offset).
        self.generation = 0
        # Set once the current assignment's interrupted flushes are settled; cleared at revocation.
        self.settled = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info(
                "sink partitions revoked; finishing the batch in hand",
                partitions=sorted(tp.partition for tp in revoked),
            )
        async with self._in_hand:
            self.generation += 1
            self.settled.clear()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("sink partitions assigned", partitions=sorted(tp.partition for tp in assigned))
        async with self._in_hand:
            for tp in assigned:
                # A failure (the event store briefly unreachable) is retried here, never skipped:
                # consuming the partition must wait for its settling.
                for attempt in itertools.count():
                    try:
                        await self._sink.recover(owner=f"{tp.topic}:{tp.partition}")
                        break
                    except Exception:
                        log.exception("settling interrupted flushes failed; retrying", partition=tp.partition)
                        await asyncio.sleep(min(5.0, 0.5 * (attempt + 1)))
            self.settled.set()


class KafkaSinkConsumer:
    """Drains the events topic into the sink, committing offsets only after each stored batch."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        group: str,
        sink: BatchConsumer,
        max_batch_events: int,
        flush_interval_ms: int,
        session_timeout_ms: int,
        fetch_max_wait_ms: int = 100,
    ) -> None:
        self._sink = sink
        self._topic = topic
        self._flush_interval_ms = flush_interval_ms
        self._max_batch_events = max_batch_events
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=brokers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 5),
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        # Held while a fetched batch is flushed and committed; a revocation waits for it.
        self._in_hand = asyncio.Lock()
        self._handover = _Handover(sink, self._in_hand)
        self._waiting_logged = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # When each partition last delivered (or was seen caught up), for the stall check.
        self._progress: dict[TopicPartition, float] = {}
        # Partitions held back with events in doubt: until when, and the last wait (doubled per attempt).
        self._in_doubt: dict[TopicPartition, tuple[float, float]] = {}

    async def start(self) -> None:
        self._consumer.subscribe([self._topic], listener=self._handover)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="kafka-sink")

    async def _run(self) -> None:
        next_check = time.monotonic() + STALL_CHECK_SECONDS
        with metrics.LIVENESS.watching("sink", 60.0):
            while not self._stopping.is_set():
                metrics.LIVENESS.beat("sink")
                try:
                    self._resume_due()
                    generation = self._handover.generation
                    batches = await self._fetch(generation)
                    if batches and not self._handover.settled.is_set() and not self._waiting_logged:
                        log.info("sink holding fetched events until its partitions are settled")
                        self._waiting_logged = True
                    async with self._in_hand:
                        # Flushed only if no rebalance began since the fetch (these partitions may
                        # be another sink's now) and this assignment's interrupted flushes are settled.
                        current = self._handover.generation == generation and self._handover.settled.is_set()
                        if current:
                            await self._flush(batches)
                        elif batches:
                            self._refetch(batches)
                    if not current:
                        await self._await_settled()
                    if time.monotonic() >= next_check:
                        await self._restart_stalled_fetches()
                        next_check = time.monotonic() + STALL_CHECK_SECONDS
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sink batch failed; retrying from the last committed offset")
                    await self._rewind()
                    await asyncio.sleep(1.0)

    async def _hold_back(self, tp: TopicPartition, events: int) -> None:
        """Not a failure: the flush holding the events' keys is still to be settled (this process
        settles its own in the background). The partition is fetched again from its committed offset
        once the wait is over; meanwhile the other partitions go on, and a rebalance can proceed."""
        wait = min(IN_DOUBT_MAX_SECONDS, self._in_doubt.get(tp, (0.0, 0.0))[1] * 2 or IN_DOUBT_FIRST_SECONDS)
        self._in_doubt[tp] = (time.monotonic() + wait, wait)
        log.warning(
            "sink batch has events still being settled; delivering it again",
            partition=tp.partition,
            events=events,
            retry_in_s=wait,
        )
        await self._rewind([tp])
        self._consumer.pause(tp)

    def _resume_due(self) -> None:
        now = time.monotonic()
        assigned = self._consumer.assignment()
        for tp, (until, _) in list(self._in_doubt.items()):
            if tp not in assigned:
                del self._in_doubt[tp]  # another sink's now (or later ours again, not paused)
            elif now >= until:
                self._consumer.resume(tp)  # its wait is kept: doubled if still in doubt

    async def _rewind(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Nothing was committed for the failed batch: seek back so it is consumed again."""
        for tp in self._consumer.assignment() if partitions is None else partitions:
            committed = await self._consumer.committed(tp)
            if committed is not None:
                self._consumer.seek(tp, committed)
            else:
                await self._consumer.seek_to_beginning(tp)

    async def _await_settled(self) -> None:
        # Bounded, so the loop still notices a stop and reports itself alive.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._handover.settled.wait(), self._flush_interval_ms / 1000)
        if self._handover.settled.is_set():
            self._waiting_logged = False

    def _refetch(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        assigned = self._consumer.assignment()
        for tp, messages in batches.items():
            if tp in assigned:
                self._consumer.seek(tp, messages[0].offset)

    async def _restart_stalled_fetches(self) -> None:
        """Re-seeks a partition that has messages behind its committed offset but delivered none for
        a while (a fetch left stuck by a rebalance, say): a stalled partition would hold acknowledged
        events back indefinitely, so it is logged loudly and fetched again from the committed offset."""
        now = time.monotonic()
        for tp in self._consumer.assignment():
            since = self._progress.setdefault(tp, now)
            if now - since < STALL_SECONDS or tp in self._in_doubt:  # held back on purpose
                continue
            committed = await self._consumer.committed(tp)
            end = (await self._consumer.end_offsets([tp])).get(tp)
            if end is not None and committed is not None and end <= committed:
                self._progress[tp] = now  # caught up: nothing to fetch
                continue
            log.warning("sink partition stalled; fetching again", partition=tp.partition, committed=committed, end=end)
            if committed is not None:
                self._consumer.seek(tp, committed)
            else:
                await self._consumer.seek_to_beginning(tp)
            self._progress[tp] = now

    async def _fetch(self, generation: int) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """The next messages to store: what arrives within flush_interval_ms of the first one, up to
        MAX_FETCH_MESSAGES. A sink that flushed every fetch at once would make a small insert per fetch
        under light traffic (tens a second, each a new part for ClickHouse to write and merge);
        waiting for the interval makes it one per interval, and a backlog is not held back."""
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await self._consumer.getmany(
            timeout_ms=self._flush_interval_ms, max_records=MAX_FETCH_MESSAGES
        )
        held = sum(map(len, batches.values()))
        deadline = time.monotonic() + self._flush_interval_ms / 1000
        while 0 < held < MAX_FETCH_MESSAGES and self._handover.generation == generation:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or self._stopping.is_set():
                break
            more = await self._consumer.getmany(timeout_ms=left_ms, max_records=MAX_FETCH_MESSAGES - held)
            for tp, messages in more.items():
                batches.setdefault(tp, []).extend(messages)
                held += len(messages)
        return batches

    async def _flush(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Stores the fetched messages of every partition in shared inserts of at most max_batch_events,
        committing each partition's offset past a message once all its events are stored. Only about
        one insert's events are decoded at a time: a fetch may hold a thousand messages of a thousand
        events each, and the sink's memory must stay bounded however far behind it is. A partition
        whose events are in doubt is held back (`_hold_back`) and the rest of its messages left for
        its redelivery; the other partitions go on."""
        parts: dict[TopicPartition, list[Event]] = {}
        done: dict[TopicPartition, ConsumerRecord[bytes, bytes]] = {}  # last message whose events are all in `parts`
        held: set[TopicPartition] = set()
        size = 0
        for tp, messages in batches.items():
            for message in messages:
                if tp in held:
                    break
                events = decode(message.value) if message.value else []
                if size and size + len(events) > self._max_batch_events:
                    await self._store(parts, done, held)
                    parts, done, size = {}, {}, 0
                # A message larger than one insert (max_batch_events below the ingest limit) is split.
                while len(events) > self._max_batch_events and tp not in held:
                    await self._store({tp: events[: self._max_batch_events]}, {}, held)
                    events = events[self._max_batch_events :]
                if tp in held:
                    break
                parts.setdefault(tp, []).extend(events)
                done[tp] = message
                size += len(events)
        await self._store(parts, done, held)
        now = time.monotonic()
        for tp, messages in batches.items():
            if tp not in held:
                self._in_doubt.pop(tp, None)
                self._observe_lag(tp, messages[-1].offset + 1)
                self._progress[tp] = now

    async def _store(
        self,
        parts: dict[TopicPartition, list[Event]],
        done: dict[TopicPartition, ConsumerRecord[bytes, bytes]],
        held: set[TopicPartition],
    ) -> None:
        """One insert of several partitions' events, then each partition's offset committed past its
        last message in `done`, except for partitions with events in doubt, which are held back."""
        parts = {tp: events for tp, events in parts.items() if tp not in held}
        if not parts:
            return
        results = await self._sink.flush_parts([(f"{tp.topic}:{tp.partition}", events) for tp, events in parts.items()])
        offsets: dict[TopicPartition, int] = {}
        for tp, result in zip(parts, results, strict=True):
            if result.in_doubt:
                # What was stored stays stored (a redelivery finds it a duplicate); nothing is committed.
                held.add(tp)
                await self._hold_back(tp, len(result.in_doubt))
            elif tp in done:
                offsets[tp] = done[tp].offset + 1
        if offsets:
            await self._consumer.commit(offsets)

    def _observe_lag(self, tp: TopicPartition, committed: int) -> None:
        highwater = self._consumer.highwater(tp)
        if highwater is not None:
            metrics.SINK_LAG.labels(str(tp.partition)).set(max(0, highwater - committed))

    async def stop(self) -> None:
        """Finishes the batch in hand (its offsets committed), then leaves the group."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        await self._consumer.stop()
