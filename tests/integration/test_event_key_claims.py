"""Concurrent key claims on the real Postgres: batches that hold the same keys in different orders
(a client's retry racing its first attempt, two sinks flushing a re-sent batch) must not deadlock.

Each claim inserts its keys one row at a time inside one statement; two statements that take the
same keys in opposite orders each wait for the other's transaction, and Postgres kills one with a
deadlock error, which the sink would answer as a failed flush (503). Claims take keys in one global
order, so the race ends with every key claimed by exactly one batch and the others seeing it held.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.db import create_engine, migrate
from adapters.postgres.event_keys import PostgresEventKeyStore
from domain.metering.events import Event, epoch_ms, new_insert_token
from tests.support.stack import create_database

CLAIMERS = 6
KEYS = 400
ROUNDS = 4


@pytest_asyncio.fixture(scope="module")
async def engine(postgres_ready: None) -> AsyncIterator[AsyncEngine]:
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=CLAIMERS)
    yield engine
    await engine.dispose()


def _events(prefix: str) -> list[Event]:
    now = epoch_ms(datetime.now(UTC))
    # Two namespaces, so the global order has to cover the namespace as well as the key.
    return [Event(f"ns{i % 2}", f"{prefix}-{i}", "t", "src", "s", now, "{}", now) for i in range(KEYS)]


async def test_claims_of_the_same_keys_in_different_orders_never_deadlock(engine: AsyncEngine) -> None:
    keys = PostgresEventKeyStore(engine)
    shuffle = random.Random(20261204)
    for round_ in range(ROUNDS):
        events = _events(f"race{round_}")
        orders = [list(events), list(reversed(events))]
        orders += [shuffle.sample(events, len(events)) for _ in range(CLAIMERS - 2)]
        claims = await asyncio.gather(
            *(keys.claim(f"claimer-{i}", order, new_insert_token()) for i, order in enumerate(orders))
        )
        claimed = [event.id for claim in claims for event in claim.claimed]
        # Exactly one batch holds each key; every other batch sees it held by a pending batch.
        assert sorted(claimed) == sorted(event.id for event in events)
        assert all(len(claim.claimed) + len(claim.in_doubt) == KEYS for claim in claims)
        # Claims keep the caller's order of events, whatever order the keys were taken in.
        for claim, order in zip(claims, orders, strict=True):
            position = {event.id: i for i, event in enumerate(order)}
            assert [position[e.id] for e in claim.claimed] == sorted(position[e.id] for e in claim.claimed)
