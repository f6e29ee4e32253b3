"""`adapters.postgres.db.autocommit`, the request path's one-statement transactions, on a real
Postgres: committed at once, and the pooled connection it used goes back as it came (a transaction
opened on it afterwards still rolls back), also when the server had closed it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.db import autocommit, session_factory
from tests.support.services import POSTGRES_ADMIN_URL
from tests.support.stack import engine_with_tables

_ROWS = Table("autocommit_rows", MetaData(), Column("id", Integer, primary_key=True))


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    async with engine_with_tables(_ROWS.metadata) as engine:
        yield engine


async def _ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        return sorted((await connection.execute(select(_ROWS.c.id))).scalars())


async def test_a_statement_is_committed_and_the_connection_goes_back_transactional(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    assert await autocommit(sessions, insert(_ROWS).returning(_ROWS.c.id), {"id": 1}) == [(1,)]
    assert await autocommit(sessions, insert(_ROWS), {"id": 2}) == []  # no RETURNING: no rows
    # Seen from another connection at once: committed, not waiting in a transaction.
    other = await asyncpg.connect(engine.url.render_as_string(hide_password=False).replace("+asyncpg", ""))
    try:
        assert sorted(r["id"] for r in await other.fetch("SELECT id FROM autocommit_rows")) == [1, 2]
    finally:
        await other.close()
    # The same pooled connection, in a transaction that rolls back: its insert is gone, so the
    # connection did not stay in autocommit.
    async with engine.connect() as connection:
        assert await connection.get_isolation_level() == "READ COMMITTED"
        transaction = await connection.begin()
        await connection.execute(insert(_ROWS), {"id": 3})
        await transaction.rollback()
    assert await _ids(engine) == [1, 2]
    assert engine.pool.checkedout() == 0


async def test_a_connection_the_server_closed_is_replaced(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    await autocommit(sessions, insert(_ROWS), {"id": 1})
    async with engine.connect() as connection:  # the one pooled connection
        pooled = (await connection.get_raw_connection()).driver_connection
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        database = engine.url.database
        ended = await admin.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1) t",
            database,
        )
        assert ended == 1  # the pooled connection
    finally:
        await admin.close()
    # Once the event loop has read the server's end of it (what the checkout relies on; a statement
    # sent in the instant before fails as a disconnect, answered as transient), the pool hands out a
    # new connection instead of the dead one: the statement just works.
    deadline = time.monotonic() + 30
    while not pooled.is_closed():
        assert time.monotonic() < deadline, "the loop never saw the connection end"
        await asyncio.sleep(0.01)
    assert await autocommit(sessions, select(_ROWS.c.id)) == [(1,)]
