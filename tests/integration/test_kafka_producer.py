"""The ingest producer (adapters/bus/kafka.py, KafkaBus) on the real broker (tansu).

What the api's acknowledgement relies on: each event lands in the partition `partition_for` chose
(the sink and the recovery of a partition's interrupted flushes rely on it); a publish returns only
once the broker holds its events, and otherwise fails as retryable (UnavailableError): when the
broker does not answer (within the request timeout), or when the producer is stopped (SIGTERM)
while the publish is under way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.bus.kafka import KafkaBus, decode, ensure_topic, partition_for
from domain.errors import UnavailableError
from domain.metering.events import Event
from tests.support.metering import unique
from tests.support.services import Tansu

PARTITIONS = 4


def _events(n: int) -> list[Event]:
    return [Event("default", uuid.uuid4().hex, "t", f"source-{i % 7}", "customer", 1, None, 1) for i in range(n)]


async def _read_all(brokers: str, topic: str) -> dict[int, list[Event]]:
    """Every event of the topic up to its end offsets, by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        found: dict[int, list[Event]] = {}
        deadline = time.monotonic() + 30
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "the topic was not read to its end"
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                for message in messages:
                    found.setdefault(tp.partition, []).extend(decode(message.value))
        return found
    finally:
        await consumer.stop()


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    """A broker of this test's own, since it is frozen."""
    broker = Tansu().start(tmp_path_factory.mktemp("tansu-producer") / "tansu.log")
    yield broker
    broker.stop()


async def test_each_event_in_its_partition_and_nothing_acknowledged_that_the_broker_lacks(tansu: Tansu) -> None:
    topic = unique("producer")
    await ensure_topic(tansu.brokers, topic, PARTITIONS)
    bus = KafkaBus(tansu.brokers, topic, request_timeout_ms=10_000, enable_idempotence=False)
    await bus.start()
    one = _events(500)
    await bus.publish(one)
    # Published concurrently and stopped at once, as at SIGTERM with calls in flight: a publish that
    # returned has all its events in the topic; any other failed as retryable (it may have some there:
    # its retry is deduplicated by the sink).
    many = [_events(50) for _ in range(20)]
    publishes = [asyncio.ensure_future(bus.publish(batch)) for batch in many]
    await asyncio.sleep(0)
    await bus.stop()
    outcomes = await asyncio.gather(*publishes, return_exceptions=True)
    assert all(o is None or isinstance(o, UnavailableError) for o in outcomes), outcomes

    acknowledged = one + [event for batch, o in zip(many, outcomes, strict=True) if o is None for event in batch]
    found = await _read_all(tansu.brokers, topic)
    assert {e.id for e in acknowledged} <= {e.id for events in found.values() for e in events}
    for partition, events in found.items():
        assert {partition_for(e, PARTITIONS) for e in events} == {partition}
    assert len(found) == PARTITIONS


async def test_a_broker_that_does_not_answer_fails_the_publish_retryable(own_broker: Tansu) -> None:
    """Frozen (SIGSTOP), as in a network partition: the publish fails with UnavailableError within
    the request timeout instead of hanging or acknowledging, and succeeds again once it is back."""
    topic = unique("producer_frozen")
    await ensure_topic(own_broker.brokers, topic, PARTITIONS)
    bus = KafkaBus(own_broker.brokers, topic, request_timeout_ms=2_000, enable_idempotence=False)
    await bus.start()
    assert own_broker.process is not None
    try:
        await bus.publish(_events(10))
        os.kill(own_broker.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(UnavailableError, match="did not accept the events"):
                await asyncio.wait_for(bus.publish(_events(10)), 20)
            assert time.monotonic() - started < 15
        finally:
            os.kill(own_broker.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while True:
            try:
                await bus.publish(_events(10))
                break
            except UnavailableError:
                assert time.monotonic() < deadline, "the producer did not recover"
                await asyncio.sleep(0.2)
    finally:
        await bus.stop()
