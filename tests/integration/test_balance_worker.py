"""The balance worker against real Postgres and the event store (chDB), in-process.

Checks the cache contract: a balance resumed from a stored snapshot equals a full recomputation,
including for late events inside the grace period, and the worker publishes BalanceSnapshotEvent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.bus.hub import InProcessHub
from adapters.postgres.entitlements import (
    PostgresGrantRepository,
)
from domain.catalog.models import FeatureCreateInput
from domain.customers.models import CustomerInput
from domain.entitlements.events import BalanceSnapshotEvent
from domain.entitlements.models import EntitlementInput, GrantInput, RecurrenceInput
from domain.entitlements.service import EntitlementService
from domain.metering.events import IngestLimits, validate_batch
from domain.metering.models import MeterCreateInput
from domain.metering.service import MeterService
from tests.support import event_store
from tests.support.entitlements import entitlement_parts
from tests.support.services import require_module
from tests.support.stack import statements_run, wait_for
from workers.balance import BalanceWorker
from workers.sink import EventSink

require_module("chdb")

NS = "default"
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Stack:
    service: EntitlementService
    worker: BalanceWorker
    sink: EventSink
    grants: PostgresGrantRepository
    published: list[BalanceSnapshotEvent]
    clock: Clock
    engine: AsyncEngine
    meters: MeterService


@pytest_asyncio.fixture(scope="module", params=event_store.KINDS)
async def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    clock = Clock()
    async with entitlement_parts(request, tmp_path_factory, "balance", clock) as parts:
        hub = InProcessHub()
        published: list[BalanceSnapshotEvent] = []

        async def collect(event: BalanceSnapshotEvent) -> None:
            published.append(event)

        hub.subscribe(BalanceSnapshotEvent, collect)
        service = parts.service(grace_period=timedelta(hours=1), events=hub)
        sink = parts.sink(owner="test")
        worker = BalanceWorker(service)
        # As the server wires it (through the announcements): grants, voids, resets and new entitlements.
        service.on_change = worker.on_change
        sink.subscribe(worker.on_flush)
        await parts.meters.create(
            NS, MeterCreateInput(slug="tokens", aggregation="SUM", event_type="prompt", value_property="$.tokens")
        )
        yield Stack(service, worker, sink, parts.grants, published, clock, parts.engine, parts.meters)


async def flush(stack: Stack, *events: tuple[str, datetime, int]) -> None:
    raws = [
        {
            "specversion": "1.0",
            "id": f"e{i}-{t.isoformat()}-{s}",
            "source": "t",
            "type": "prompt",
            "subject": s,
            "time": t.isoformat(),
            "data": {"tokens": n},
        }
        for i, (s, t, n) in enumerate(events)
    ]
    await stack.sink.flush(validate_batch(raws, NS, NOW, IngestLimits()))


async def test_snapshot_resume_equals_full_recomputation_with_late_events(stack: Stack) -> None:
    svc = stack.service
    customer = await svc.customers.create(NS, CustomerInput(name="Acme", key="acme", subject_keys=["acme"]))
    feature = await svc.features.create(NS, FeatureCreateInput(key="tokens", name="Tokens", meter_slug="tokens"))
    start = NOW - timedelta(hours=3)
    entitlement = await svc.create(
        NS,
        customer,
        metered(
            feature.key,
            start,
            GrantInput(amount=100, effective_at=start, v2=True),
            GrantInput(amount=50, effective_at=NOW - timedelta(hours=2), v2=True, priority=2),
        ),
    )
    await flush(stack, ("acme", start + timedelta(minutes=30), 30), ("acme", NOW - timedelta(minutes=90), 40))
    assert await stack.worker.drain() == 1
    event = stack.published[-1]
    assert event.entitlement_id == entitlement.id and event.usage == Decimal(70) and event.balance == Decimal(80)
    assert event.entitlement["featureKey"] == "tokens" and event.customer is not None

    # A snapshot was stored, at an instant older than the grace period.
    _, snapshot, _ = await stack.grants.with_latest_snapshot(NS, entitlement.id, NOW)
    assert snapshot is not None and snapshot.at <= NOW - timedelta(hours=1)

    # A late event inside the grace period still counts, and the cached path agrees with a full run.
    await flush(stack, ("acme", NOW - timedelta(minutes=30), 25))
    assert await stack.worker.drain() == 1
    assert stack.published[-1].usage == Decimal(95)
    ctx = await svc.context(NS, entitlement, until=NOW)
    cached = await svc.run_until(NS, ctx, NOW)
    full = await svc.run_until(NS, ctx, NOW, cached=False)
    assert (
        (cached.balance, cached.usage, cached.overage, cached.total_available_grant_amount)
        == (
            full.balance,
            full.usage,
            full.overage,
            full.total_available_grant_amount,
        )
        == (Decimal(55), Decimal(95), Decimal(0), Decimal(150))
    )

    # Grants invalidate snapshots they change.
    await svc.create_grant(NS, entitlement, GrantInput(amount=10, effective_at=start, v2=True))
    _, snapshot, _ = await stack.grants.with_latest_snapshot(NS, entitlement.id, NOW)
    assert snapshot is None or snapshot.at < start
    await asyncio.sleep(0)
    assert (await svc.value(NS, entitlement, NOW)).balance == Decimal(65)


async def test_a_computation_that_read_before_a_grant_saves_no_snapshot_after_it(stack: Stack) -> None:
    """A balance computed from grants read before a backdated grant was written must not leave a
    snapshot behind once the grant's write dropped the snapshots it outdates: resumed from it, the
    balance would ignore the grant's share of the usage since it took effect."""
    svc = stack.service
    customer = await svc.customers.create(NS, CustomerInput(name="Racer", key="racer", subject_keys=["racer"]))
    await svc.features.create(NS, FeatureCreateInput(key="race_tokens", name="Race tokens", meter_slug="tokens"))
    start = NOW - timedelta(hours=4)
    entitlement = await svc.create(
        NS,
        customer,
        metered(
            "race_tokens",
            start,
            GrantInput(amount=100, effective_at=start, v2=True, priority=5),
            # Its start is a segment boundary older than the grace period: a snapshot is offered there.
            GrantInput(amount=10, effective_at=NOW - timedelta(hours=2), v2=True, priority=9),
        ),
    )
    await flush(stack, ("racer", start + timedelta(minutes=30), 30), ("racer", NOW - timedelta(hours=3), 90))
    # Read by a computation (the balance worker's, an API call's) before the grant below.
    ctx = await svc.context(NS, entitlement, until=NOW)
    # 50 more, effective before all usage and burnt first (priority 1).
    await svc.create_grant(NS, entitlement, GrantInput(amount=50, effective_at=start, v2=True, priority=1))
    # The computation finishes now, from its older inputs, and offers its snapshots.
    await svc.run_until(NS, ctx, NOW)
    _, snapshot, _ = await stack.grants.with_latest_snapshot(NS, entitlement.id, NOW)
    assert snapshot is None, f"a snapshot of the inputs before the grant was saved at {snapshot.at}"
    current = await svc.get(NS, entitlement.id)
    ctx = await svc.context(NS, current, until=NOW)
    cached = await svc.run_until(NS, ctx, NOW)
    again = await svc.run_until(NS, await svc.context(NS, current, until=NOW), NOW)  # resumed from a snapshot
    full = await svc.run_until(NS, ctx, NOW, cached=False)
    assert (cached.balance, cached.overage) == (again.balance, again.overage) == (full.balance, full.overage)
    # 50 then 70 of the 100 burnt by the 120 used before the 10 arrived.
    assert full.balance == Decimal(40) and full.overage == Decimal(0)


def metered(feature_key: str, start: datetime | None = None, *grants: GrantInput) -> EntitlementInput:
    """A monthly metered entitlement of the feature, measuring usage from `start` (default: now)."""
    return EntitlementInput(
        type="metered",
        feature_key=feature_key,
        usage_period=RecurrenceInput("MONTH", datetime(2024, 1, 1, tzinfo=UTC)),
        measure_usage_from=start.isoformat() if start is not None else None,
        grants=grants,
        v2=True,
    )


async def test_a_flush_finds_the_entitlements_its_usage_can_change_in_one_statement_for_any_number_of_subjects(
    stack: Stack,
) -> None:
    svc = stack.service
    feature = await svc.features.create(NS, FeatureCreateInput(key="fan_out", name="Fan-out", meter_slug="tokens"))
    archived = await svc.features.create(NS, FeatureCreateInput(key="fan_old", name="Old", meter_slug="tokens"))
    for slug, event_type in (("fan_completions", "completion"), ("fan_dropped", "prompt")):
        await stack.meters.create(NS, MeterCreateInput(slug=slug, aggregation="COUNT", event_type=event_type))
    completions = await svc.features.create(
        NS, FeatureCreateInput(key="fan_completions", name="Completions", meter_slug="fan_completions")
    )
    dropped = await svc.features.create(
        NS, FeatureCreateInput(key="fan_dropped", name="Dropped", meter_slug="fan_dropped")
    )

    async def customer(key: str, subjects: list[str]) -> Any:
        return await svc.customers.create(NS, CustomerInput(name=key, key=key, subject_keys=subjects))

    two_subjects = await customer("fan-two", ["fan-two-a", "fan-two-b"])
    one_subject = await customer("fan-one", ["fan-one"])
    gone = await customer("fan-gone", ["fan-gone"])
    # Customers with subjects but without an entitlement on a meter of the flushed type.
    bystanders = [await customer(f"fan-by-{i}", [f"fan-by-{i}"]) for i in range(40)]
    expected = set()
    for owner in (two_subjects, one_subject, gone):
        entitlement = await svc.create(NS, owner, metered(feature.key))
        if owner is not gone:
            expected.add(entitlement.id)
    await svc.customers.delete(NS, gone.id)
    # Entitlements of an archived feature keep counting usage (as OpenMeter's do).
    expected.add((await svc.create(NS, one_subject, metered(archived.key))).id)
    await svc.features.archive(NS, archived.id)
    # Not the flushed type's: another meter's, and a deleted meter's (even of the same type).
    other_type = await svc.create(NS, two_subjects, metered(completions.key))
    await svc.create(NS, two_subjects, metered(dropped.key))
    await stack.meters.delete(NS, "fan_dropped")
    # Deleted entitlements and other types count nothing.
    deleted = await svc.create(NS, one_subject, metered(completions.key))
    await svc.delete(NS, deleted)
    await svc.create(NS, bystanders[0], EntitlementInput(type="boolean", feature_key=feature.key))

    few = ["fan-two-a", "fan-one"]
    many = ["fan-two-a", "fan-two-b", "fan-one", "fan-gone", "fan-nobody", *(b.key for b in bystanders)]
    with statements_run(stack.engine) as for_few:
        found_for_few = await svc.affected(NS, few, ["prompt"])
    with statements_run(stack.engine) as for_many:
        found_for_many = await svc.affected(NS, many, ["prompt"])
    assert {e.id for e in found_for_few} == {e.id for e in found_for_many} == expected
    assert [e.id for e in await svc.affected(NS, many, ["completion", "another-type"])] == [other_type.id]
    assert await svc.affected(NS, many, ["another-type"]) == []
    assert await svc.affected(NS, ["fan-gone", "fan-nobody", "fan-by-0", "fan-by-3"], ["prompt"]) == []
    # One statement, however many subjects the flush touched and however large the catalogue.
    assert len(for_few) == len(for_many) == 1, (for_few, for_many)


async def customer_with_usage(stack: Stack, key: str, tokens: int) -> tuple[Any, str, datetime]:
    """A customer (subject `key`) with `tokens` of usage stored two hours ago and a feature on the
    meter, no entitlement yet, and nothing left announced to the worker: (customer, feature key, start)."""
    svc = stack.service
    await stack.worker.drain()  # whatever earlier tests left announced
    customer = await svc.customers.create(NS, CustomerInput(name=key, key=key, subject_keys=[key]))
    feature = await svc.features.create(NS, FeatureCreateInput(key=f"{key}_tokens", name=key, meter_slug="tokens"))
    start = NOW - timedelta(hours=2)
    await flush(stack, (key, start + timedelta(minutes=10), tokens))
    return customer, feature.key, start


async def granted(stack: Stack, customer: Any, feature_key: str, start: datetime) -> tuple[Any, datetime]:
    """The customer's metered entitlement of the feature from `start`, with a grant of 100: (it, start)."""
    grant = GrantInput(amount=100, effective_at=start, v2=True)
    return await stack.service.create(NS, customer, metered(feature_key, start, grant)), start


def last_published(stack: Stack) -> tuple[str, Decimal, Decimal]:
    """The last balance the worker published: (entitlement, usage, balance)."""
    event = stack.published[-1]
    return event.entitlement_id, event.usage, event.balance


async def test_an_entitlement_created_after_its_customers_usage_is_recomputed_without_another_event(
    stack: Stack,
) -> None:
    customer, feature_key, start = await customer_with_usage(stack, "late", 30)
    assert await stack.worker.drain() == 0  # no entitlement yet
    entitlement, _ = await granted(stack, customer, feature_key, start)
    # No event since: the creation itself has the worker compute the balance (and publish it).
    assert await stack.worker.drain() == 1
    assert last_published(stack) == (entitlement.id, Decimal(30), Decimal(70))


async def failing_once(stack: Stack, monkeypatch: pytest.MonkeyPatch, method: str) -> tuple[int | None, int]:
    """Drains with the entitlement service's `method` failing, then again with it back and nothing
    announced since: both drains' counts (None: the drain raised)."""
    real = getattr(stack.service, method)

    async def unreachable(*args: object) -> Any:
        raise ConnectionError(f"{method}: the store or bus behind it is away")

    monkeypatch.setattr(stack.service, method, unreachable)
    try:
        first: int | None = await stack.worker.drain()
    except ConnectionError:
        first = None
    monkeypatch.setattr(stack.service, method, real)
    return first, await stack.worker.drain()


async def test_a_recomputation_that_fails_is_retried_by_the_next_drain(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    entitlement, _ = await granted(stack, *await customer_with_usage(stack, "retry", 40))
    # Publishing fails: nothing is published; the next drain recomputes it with no new announcement.
    assert await failing_once(stack, monkeypatch, "publish") == (0, 1)
    assert last_published(stack) == (entitlement.id, Decimal(40), Decimal(60))


async def test_a_flush_whose_entitlements_cannot_be_looked_up_is_kept_for_the_next_drain(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    entitlement, start = await granted(stack, *await customer_with_usage(stack, "lookup", 25))
    await stack.worker.drain()  # the creation's own recomputation
    await flush(stack, ("lookup", start + timedelta(minutes=20), 5))  # announced to the worker
    # The look-up fails and the drain with it; the next drain still has the flush's announcement.
    assert await failing_once(stack, monkeypatch, "affected") == (None, 1)
    assert last_published(stack) == (entitlement.id, Decimal(30), Decimal(70))


async def test_the_running_worker_retries_what_failed_without_another_announcement(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker as `tally serve` runs it: a recomputation that fails is done again a moment later,
    although nothing is announced after the failure."""
    entitlement, _ = await granted(stack, *await customer_with_usage(stack, "rerun", 15))
    svc, publish = stack.service, stack.service.publish
    attempts: list[object] = []

    async def away_once(event: object) -> None:
        attempts.append(event)
        if len(attempts) == 1:
            raise ConnectionError("the notification bus is away")
        monkeypatch.setattr(svc, "publish", publish)
        await publish(event)  # type: ignore[arg-type]

    monkeypatch.setattr(svc, "publish", away_once)
    monkeypatch.setattr("workers.balance.RETRY_SECONDS", 0.05)
    stack.worker.start()
    try:
        await wait_for(lambda: _async(bool(stack.published) and stack.published[-1].entitlement_id == entitlement.id))
    finally:
        await stack.worker.stop()
    assert len(attempts) == 2
    assert last_published(stack) == (entitlement.id, Decimal(15), Decimal(85))


async def _async(value: bool) -> bool:
    return value
