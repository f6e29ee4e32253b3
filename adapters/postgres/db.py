"""Postgres connections (SQLAlchemy async over asyncpg) and migrations; the embedded server is in embedded.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import structlog
from sqlalchemy import Executable, Row, event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresError

log = structlog.get_logger(__name__)

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "autocommit",
    "create_engine",
    "migrate",
    "plain_columns",
    "run_migrations",
    "session_factory",
]

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations" / "postgres"


def async_url(url: str) -> str:
    """Accepts plain postgres:// or postgresql:// URLs and selects the asyncpg driver."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _json_text(value: object) -> str:
    # JSON and JSONB columns (prices, metadata, workflow) are written with orjson, a tenth of the
    # standard library's time; they are read with the standard library, which keeps an integer past
    # 64 bits exact where orjson would read a float (checking for one first cost what orjson saves).
    try:
        # Non-string keys become strings, as json.dumps makes them.
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        # An integer past 64 bits, or a type orjson does not know: as before.
        return json.dumps(value)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=10, json_serializer=_json_text)
    # Instead of pool_pre_ping, whose ping over asyncpg is three round trips (BEGIN, an empty
    # statement, ROLLBACK) on every checkout, a pooled connection the server closed (a restart,
    # pg_terminate_backend) is known to asyncpg already: the event loop read its end. Such a
    # connection is replaced before use. One the server drops in the instant before a checkout
    # fails its statement as a disconnect: SQLAlchemy then drops the whole pool and the call is
    # answered as transient (503, adapters/transient.py), as during the outage itself.
    event.listen(engine.sync_engine, "checkout", _replace_closed)
    return engine


def _replace_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("connection closed by the server")


async def autocommit(
    sessions: async_sessionmaker[AsyncSession], statement: Executable, params: Mapping[str, Any] | None = None
) -> list[Row[Any]]:
    """Runs one statement as its own transaction and returns its rows (none for a write without
    RETURNING): no BEGIN and COMMIT/ROLLBACK round trips around it (for one statement, what a
    transaction gave: it sees one snapshot), and plain rows through Core, no ORM objects. For the
    hot reads and writes of a request path (an entitlement value's, see docs/performance.md).
    On a pooled connection of the sessions' engine, without a session: one statement needs none of
    its state, and making and closing one was 13-30 % of the statement's CPU (docs/performance.md)."""
    engine: AsyncEngine = sessions.kw["bind"]
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        result = await connection.execute(statement, dict(params or {}))
        return list(result.all()) if result.returns_rows else []


def plain_columns(model: Any) -> list[Any]:
    """A model's table columns labelled with its attribute names (`meta` for "metadata"), so a
    plain result row reads like the model object."""
    return [attr.columns[0].label(attr.key) for attr in sa_inspect(model).column_attrs]


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def run_migrations(url: str) -> None:
    """alembic upgrade heads; idempotent. (Areas add revisions independently; heads applies them all.)"""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    command.upgrade(config, "heads")


async def migrate(url: str) -> None:
    # alembic's async env runs its own event loop; keep it off ours.
    await asyncio.to_thread(run_migrations, url)
