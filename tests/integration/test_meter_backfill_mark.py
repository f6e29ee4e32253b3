"""A meter's backfill mark never outlives a change of its paths.

The backfill worker marks a meter backfilled with a compare-and-set on `updated_at` (the meter it
backfilled is still the current one). A change of the meter's group-by removes the mark and moves
`updated_at`. If the mark is committed between the change's read of the row and its write, the
write must still remove it: a meter marked backfilled is queried from the value maps alone, and
stored events lack the new paths there (a group-by would read '' for them). The interleaving is
forced with a row lock held by this test, on real Postgres.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.db import session_factory
from adapters.postgres.meters import PostgresMeterRepository
from domain.metering.models import VALUES_BACKFILLED, Aggregation
from tests.integration.test_meter_rollup_chdb import make_meter
from tests.support.stack import migrated_engine


@pytest_asyncio.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(pool_size=4) as engine:
        yield engine


async def _waiting_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        waiting = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


async def test_a_mark_committed_while_a_meter_changes_does_not_survive_the_change(engine: AsyncEngine) -> None:
    meters = PostgresMeterRepository(session_factory(engine))
    created = datetime(2026, 12, 1, tzinfo=UTC)
    before = dataclasses.replace(
        make_meter("default", Aggregation.SUM), id="01JBACKFILLRACE0000000000", group_by={}, updated_at=created
    )
    await meters.create(before)
    # What MeterService.update writes: the new group-by, no mark, a later updated_at.
    after = dataclasses.replace(before, group_by={"model": "$.model"}, updated_at=created + timedelta(minutes=1))

    async with engine.connect() as holder:
        await holder.execute(text("SELECT 1 FROM meters WHERE id = :id FOR UPDATE"), {"id": before.id})
        change = asyncio.create_task(meters.update(after))
        for _ in range(500):  # the change is now waiting for the row
            if await _waiting_on_a_lock(engine):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the change never waited for the row lock")
        # The worker's compare-and-set, committed before the change writes (as mark_backfilled).
        marked = await holder.execute(
            text(
                "UPDATE meters SET annotations = annotations || jsonb_build_object(CAST(:mark AS text), true) "
                "WHERE id = :id AND updated_at = :updated_at"
            ),
            {"mark": VALUES_BACKFILLED, "id": before.id, "updated_at": before.updated_at},
        )
        assert marked.rowcount == 1
        await holder.commit()
    await change

    stored = await meters.get("default", before.id)
    assert stored is not None
    assert stored.group_by == {"model": "$.model"} and stored.updated_at == after.updated_at
    assert not stored.values_backfilled
