"""Cluster-wide mutual exclusion for background work that must run in one process at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sqlalchemy import bindparam, func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession


def advisory_lock(
    sessions: async_sessionmaker[AsyncSession], name: str
) -> Callable[[], AbstractAsyncContextManager[bool]]:
    """A factory of contexts that try Postgres's transaction-level advisory lock on `name` and hold
    it (and a connection) until the context closes; the context's value says whether it was got.
    A process that dies releases it with its connection."""

    @asynccontextmanager
    async def hold() -> AsyncIterator[bool]:
        async with sessions() as session, session.begin():
            statement = sa_select(func.pg_try_advisory_xact_lock(func.hashtextextended(bindparam("name", name), 0)))
            got = (await session.exec(statement)).one()  # type: ignore[call-overload]
            yield bool(got[0] if isinstance(got, tuple) else got)

    return hold
