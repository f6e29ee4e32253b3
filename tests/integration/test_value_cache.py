"""The current-value cache against real Postgres and the event store: a cached answer always equals
a full computation at that instant.

A seeded stream of ingests (some with future times), grants (expiring, recurring, future), voids,
resets, entity writes, balance-worker passes and clock jumps across breakpoints and period
rollovers; after every step /value for "now" (cache) is compared with a computation at the same
instant by a service without a cache.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from domain.catalog.models import FeatureCreateInput
from domain.catalog.service import FeatureService
from domain.customers.models import CustomerInput
from domain.customers.service import CustomerService
from domain.entitlements.cache import ValueCache
from domain.entitlements.models import EntitlementInput, GrantInput, RecurrenceInput, ResetInput
from domain.entitlements.service import EntitlementService
from domain.errors import ValidationError
from domain.metering.events import IngestLimits, validate_batch
from domain.metering.models import MeterCreateInput
from tests.support import event_store
from tests.support.entitlements import entitlement_parts
from tests.support.services import require_module
from workers.balance import BalanceWorker
from workers.sink import EventSink

require_module("chdb")

NS = "default"
START = datetime.now(UTC).replace(second=0, microsecond=0)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Stack:
    cached: EntitlementService
    reference: EntitlementService
    cache: ValueCache
    worker: BalanceWorker
    sink: EventSink
    clock: Clock
    customers: CustomerService
    features: FeatureService


@pytest_asyncio.fixture(scope="module", params=event_store.KINDS)
async def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    clock = Clock()
    async with entitlement_parts(request, tmp_path_factory, "value_cache", clock) as parts:
        cached, reference = (parts.service(grace_period=timedelta(minutes=30)) for _ in range(2))
        cache = ValueCache()
        cached.cache = cache
        customers, features = parts.customers, parts.features
        customers.listeners.append(cached.entities_changed)
        customers.delete_guards.append(cached.guard_customer_delete)  # as server/wiring does
        features.listeners.append(cached.entities_changed)

        sink = parts.sink(owner="cache-test")
        sink.subscribe(cache.on_flush)
        worker = BalanceWorker(cached)
        sink.subscribe(worker.on_flush)
        cached.on_change = worker.on_change
        await parts.meters.create(
            NS, MeterCreateInput(slug="calls", aggregation="SUM", event_type="call", value_property="$.n")
        )
        await parts.meters.create(
            NS, MeterCreateInput(slug="users", aggregation="UNIQUE_COUNT", event_type="visit", value_property="$.user")
        )
        # Every test's entitlements are of these features.
        await features.create(NS, FeatureCreateInput(key="calls", name="Calls", meter_slug="calls"))
        await features.create(NS, FeatureCreateInput(key="users", name="Users", meter_slug="users"))
        yield Stack(cached, reference, cache, worker, sink, clock, customers, features)


async def ingest(stack: Stack, rng: random.Random, subjects: list[str], n: int) -> None:
    now = stack.clock.now
    raws = []
    for _ in range(n):
        # Mostly recent usage; some late (an hour back) and some stamped minutes in the future.
        offset = rng.choice([-rng.randint(0, 3600), -rng.randint(0, 120), rng.randint(1, 600)])
        kind = rng.choice(["call", "visit"])
        raws.append(
            {
                "specversion": "1.0",
                "id": f"e{rng.getrandbits(64)}",
                "source": "t",
                "type": kind,
                "subject": rng.choice(subjects),
                "time": (now + timedelta(seconds=offset)).isoformat(),
                "data": {"n": rng.randint(1, 40)} if kind == "call" else {"user": f"u{rng.randint(1, 30)}"},
            }
        )
    await stack.sink.flush(validate_batch(raws, NS, now, IngestLimits()))


async def store_call(stack: Stack, event_id: str, subject: str, at: datetime, n: int) -> None:
    """One `call` event of `n`, stored by the sink as of the stack's clock."""
    raw = {"specversion": "1.0", "id": event_id, "source": "t", "type": "call", "subject": subject}
    raw |= {"time": at.isoformat(), "data": {"n": n}}
    await stack.sink.flush(validate_batch([raw], NS, stack.clock.now, IngestLimits()))


def same(a: Any, b: Any) -> tuple[Any, ...]:
    return (
        a.has_access,
        a.balance,
        a.usage,
        a.overage,
        a.total_available_grant_amount,
        dict(a.grant_balances or {}),
    ), (b.has_access, b.balance, b.usage, b.overage, b.total_available_grant_amount, dict(b.grant_balances or {}))


async def test_cached_value_equals_full_computation_under_a_stream_of_changes(stack: Stack) -> None:
    svc, ref, clock = stack.cached, stack.reference, stack.clock
    rng = random.Random(20240601)
    acme = await svc.customers.create(NS, CustomerInput(name="Acme", key="acme", subject_keys=["acme", "acme-2"]))
    beta = await svc.customers.create(NS, CustomerInput(name="Beta", key="beta", subject_keys=["beta"]))
    subjects = ["acme", "acme-2", "beta", "nobody"]
    entitlements = []
    for customer, feature, interval in ((acme, "calls", "DAY"), (beta, "calls", "PT2H"), (acme, "users", "DAY")):
        entitlements.append(
            await svc.create(
                NS,
                customer,
                EntitlementInput(
                    type="metered",
                    feature_key=feature,
                    usage_period=RecurrenceInput(interval, START - timedelta(hours=3)),
                    measure_usage_from="CURRENT_PERIOD_START",
                    is_soft_limit=feature == "users",
                    grants=[
                        # From the current usage period's start (a grant may not take effect before it).
                        GrantInput(
                            amount=100, effective_at=START - timedelta(hours=3 if interval == "DAY" else 1), v2=True
                        ),
                        GrantInput(
                            amount=40,
                            effective_at=START,
                            v2=True,
                            priority=2,
                            expiration_duration="HOUR",
                            expiration_count=2,
                        ),
                        GrantInput(
                            amount=25,
                            effective_at=START + timedelta(minutes=30),
                            v2=True,
                            recurrence=RecurrenceInput("PT1H", START + timedelta(minutes=30)),
                        ),
                    ],
                    v2=True,
                ),
            )
        )
    grants: list[str] = []
    compared = 0
    for step in range(70):
        action = rng.choice(["ingest", "ingest", "read", "grant", "void", "reset", "time", "time", "worker", "entity"])
        entitlement = rng.choice(entitlements)
        entitlement = await svc.get(NS, entitlement.id)
        if action == "ingest":
            await ingest(stack, rng, subjects, rng.randint(1, 8))
        elif action == "grant":
            period = entitlement.current_usage_period(clock.now)
            assert period is not None
            effective = clock.now + timedelta(minutes=rng.choice([-5, 0, 3, 17, 90]))
            effective = max(effective, period.start)
            grant = await svc.create_grant(
                NS,
                entitlement,
                GrantInput(
                    amount=rng.randint(5, 60),
                    effective_at=effective,
                    v2=True,
                    priority=rng.randint(1, 3),
                    **(
                        {"expiration_duration": "HOUR", "expiration_count": rng.choice([1, 3])}
                        if rng.random() < 0.6
                        else {}
                    ),
                ),
            )
            grants.append(grant.id)
        elif action == "void" and grants:
            # Voiding before the current period start is refused; nothing changes then.
            with contextlib.suppress(ValidationError):
                await svc.void_grant(NS, grants.pop(rng.randrange(len(grants))), None)
        elif action == "reset":
            # A reset in the same minute as the last reset (or measurement start) is refused.
            with contextlib.suppress(ValidationError):
                await svc.reset(NS, entitlement, ResetInput(retain_anchor=rng.random() < 0.5))
        elif action == "time":
            clock.now += timedelta(seconds=rng.choice([20, 60, 7 * 60, 31 * 60, 95 * 60]))
        elif action == "worker":
            await stack.worker.drain()
        elif action == "entity":
            # A second subject key moves usage between customers: look-ups and values must follow.
            keys = ["acme", "acme-2"] if rng.random() < 0.5 else ["acme"]
            acme = await svc.customers.update(NS, "acme", CustomerInput(name="Acme", key="acme", subject_keys=keys))
        for e in entitlements:
            customer = await svc.customer(NS, e.customer_id)
            current = await svc.for_customer(NS, customer, e.id)
            got = await svc.value(NS, current, None, customer)
            want = await ref.value(NS, await ref.get(NS, e.id), clock.now)
            expected, actual = same(want, got)
            assert actual == expected, f"step {step} ({action}) entitlement {e.id}"
            compared += 1
    assert compared == 70 * len(entitlements)
    # The stream must actually exercise the cache, not only fill it.
    assert stack.cache.hits > 40, (stack.cache.hits, stack.cache.misses)
    assert stack.cache.misses > 20


async def test_future_event_counts_once_its_minute_passes(stack: Stack) -> None:
    svc, clock = stack.cached, stack.clock
    customer = await svc.customers.create(NS, CustomerInput(name="Gamma", key="gamma", subject_keys=["gamma"]))
    entitlement = await svc.create(
        NS,
        customer,
        EntitlementInput(
            type="metered",
            feature_key="calls",
            usage_period=RecurrenceInput("MONTH", clock.now),
            grants=[GrantInput(amount=10, effective_at=clock.now, v2=True)],
            v2=True,
        ),
    )
    await store_call(stack, "future-1", "gamma", clock.now + timedelta(minutes=5, seconds=10), 4)
    assert (await svc.value(NS, entitlement)).usage == 0
    hits = stack.cache.hits
    clock.now += timedelta(minutes=3)
    assert (await svc.value(NS, entitlement)).usage == 0
    assert stack.cache.hits == hits + 1  # still before the event: served from the cache
    clock.now += timedelta(minutes=3)
    value = await svc.value(NS, entitlement)
    assert (value.usage, value.balance) == (4, 6)


async def test_period_rollover_and_grant_expiry_invalidate_without_new_usage(stack: Stack) -> None:
    svc, clock = stack.cached, stack.clock
    customer = await svc.customers.create(NS, CustomerInput(name="Delta", key="delta", subject_keys=["delta"]))
    anchor = clock.now - timedelta(minutes=10)
    entitlement = await svc.create(
        NS,
        customer,
        EntitlementInput(
            type="metered",
            feature_key="calls",
            usage_period=RecurrenceInput("PT1H", anchor),
            measure_usage_from="CURRENT_PERIOD_START",
            grants=[
                GrantInput(amount=10, effective_at=anchor, v2=True),
                GrantInput(
                    amount=5, effective_at=anchor, v2=True, priority=2, expiration_duration="HOUR", expiration_count=3
                ),
            ],
            v2=True,
        ),
    )
    await store_call(stack, "delta-1", "delta", clock.now - timedelta(minutes=2), 7)
    first = await svc.value(NS, entitlement)
    assert (first.usage, first.balance) == (7, 8)
    clock.now += timedelta(minutes=20)
    assert (await svc.value(NS, entitlement)).usage == 7  # same period, nothing new: cached
    clock.now += timedelta(minutes=35)  # past the period end: usage restarts
    after = await svc.value(NS, entitlement)
    assert after.usage == 0
    reference = await stack.reference.value(NS, entitlement, clock.now)
    assert (after.balance, after.usage, after.overage) == (reference.balance, reference.usage, reference.overage)
    clock.now += timedelta(hours=2, minutes=10)  # past the 3-hour grant's expiry
    expired = await svc.value(NS, entitlement)
    reference = await stack.reference.value(NS, entitlement, clock.now)
    assert (expired.balance, expired.total_available_grant_amount) == (
        reference.balance,
        reference.total_available_grant_amount,
    )


async def test_a_value_computed_from_an_entitlement_read_before_a_reset_is_not_kept(stack: Stack) -> None:
    # A /value call reads the entitlement, then computes; a reset written in between is stamped
    # before the computation's mark, so only the revision read with the grants can tell that the
    # entitlement it computed from (without that reset) is outdated.
    svc, clock = stack.cached, stack.clock
    customer = await svc.customers.create(NS, CustomerInput(name="Eps", key="eps", subject_keys=["eps"]))
    start = clock.now - timedelta(minutes=30)
    entitlement = await svc.create(
        NS,
        customer,
        EntitlementInput(
            type="metered",
            feature_key="calls",
            usage_period=RecurrenceInput("MONTH", start),
            measure_usage_from=start.isoformat(),
            grants=[GrantInput(amount=100, effective_at=start, v2=True)],
            v2=True,
        ),
    )
    await store_call(stack, "eps-1", "eps", clock.now - timedelta(minutes=5), 9)
    read_before = await svc.for_customer(NS, customer, "calls")
    await svc.reset(NS, await svc.get(NS, entitlement.id), ResetInput(effective_at=clock.now - timedelta(minutes=1)))
    # This call computes from the outdated read: it may answer from it, but must not keep it.
    assert (await svc.value(NS, read_before)).usage == 9
    fresh = await svc.for_customer(NS, customer, "calls")
    assert len(fresh.resets) == len(read_before.resets) + 1
    value = await svc.value(NS, fresh)
    reference = await stack.reference.value(NS, fresh, clock.now)
    assert value.usage == reference.usage == 0
