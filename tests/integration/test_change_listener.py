"""Entity writes heard from Postgres as they commit (adapters/postgres/change_listener.py, migration 0015).

A real Postgres with Tally's schema: writes of any kind, made here with plain SQL as any process or
an operator would, reach the listener when they commit and never when they roll back; a dropped
listening connection is noticed, reconnected and reported as a gap (changes may have been missed).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from adapters.postgres.change_listener import APPLICATION_NAME, PostgresChangeListener
from adapters.postgres.db import migrate
from domain.announcements import Announcement, EntitiesChanged, EntitlementChanged
from tests.support.stack import create_database, wait_for

_RESET = (
    "INSERT INTO usage_resets (namespace, entitlement_id, reset_at, anchor, usage_interval, created_at)"
    " VALUES ($1, $2, $3, $3, 'MONTH', $3)"
)


async def _async(value: bool) -> bool:
    return value


async def test_committed_writes_are_heard_rolled_back_ones_never_and_a_lost_connection_is_a_gap(
    postgres_ready: None,
) -> None:
    url = await create_database()
    await migrate(url)
    heard: list[Announcement] = []
    gaps: list[bool] = []
    listener = PostgresChangeListener(url, heard.append, on_gap=lambda: gaps.append(True))
    await listener.start()
    writer = await asyncpg.connect(url)
    try:
        assert listener.connected and len(gaps) == 1
        now = datetime.now(UTC)
        # Rolled back: never heard.
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute(_RESET, "ns", "rolled-back", now)
        await writer.execute("DELETE FROM features WHERE false")
        await transaction.rollback()
        # Committed: a reset of one entitlement, then a statement on an entity table.
        async with writer.transaction():
            await writer.execute(_RESET, "ns", "ent-1", now)
        await writer.execute("DELETE FROM customers WHERE false")
        await wait_for(lambda: _async(EntitiesChanged() in heard), timeout=30)
        assert heard == [EntitlementChanged("ns", "ent-1"), EntitiesChanged()]

        # The listening connection dies: the listener is out of step until it listens again,
        # which it reports as a gap; then it hears writes again.
        await writer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
        await wait_for(lambda: _async(len(gaps) == 2 and listener.connected), timeout=30)
        await writer.execute("UPDATE meters SET slug = slug WHERE false")
        await wait_for(lambda: _async(len(heard) == 3), timeout=30)
        assert heard[2] == EntitiesChanged()
    finally:
        await writer.close()
        await listener.stop()
