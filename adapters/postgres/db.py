"""Postgres connections (SQLAlchemy async over asyncpg) and migrations; the embedded server is in embedded.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresError

log = structlog.get_logger(__name__)

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "create_engine", "migrate", "run_migrations", "session_factory"]

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
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        json_serializer=_json_text,
    )


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
