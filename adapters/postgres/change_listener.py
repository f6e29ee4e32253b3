"""Entity writes heard from Postgres as they commit (LISTEN), in every api process.

Migration 0015 makes every write of customers, subjects, features, meters and entitlements notify
the channel `tally_entities`, and every grant and usage reset `tally_entitlements` (namespace and
entitlement ID), from triggers: whichever process or path wrote it, and only when it commits. So a
change reaches every listening process without waiting for its announcement on Kafka, which the
writing process sends after the commit and could fail to send (it died, Kafka was down).

Notifications sent while a process is not listening are gone: `connected` says whether it is, and
`on_gap` runs on every (re)connection, when changes may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog
from sqlalchemy.engine import make_url

from domain.announcements import Announcement, EntitiesChanged, EntitlementChanged

log = structlog.get_logger(__name__)

ENTITIES = "tally_entities"
ENTITLEMENTS = "tally_entitlements"
# What the listening connection is called in pg_stat_activity.
APPLICATION_NAME = "tally-change-listener"
# How often the listening connection is checked (a silently dropped connection hears nothing).
PING_SECONDS = 2.0


def _dsn(url: str) -> str:
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def decode(channel: str, payload: str) -> Announcement | None:
    if channel == ENTITIES:
        return EntitiesChanged()
    if channel == ENTITLEMENTS and " " in payload:
        namespace, entitlement_id = payload.split(" ", 1)
        return EntitlementChanged(namespace, entitlement_id)
    return None


class PostgresChangeListener:
    def __init__(self, url: str, on_change: Callable[[Announcement], None], on_gap: Callable[[], None]) -> None:
        self._dsn = _dsn(url)
        self._on_change = on_change
        self._on_gap = on_gap
        self._connected = False
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self, within: float = 30.0) -> None:
        """Starts listening; returns once it listens (or after `within` seconds, still retrying)."""
        self._task = asyncio.create_task(self._run(), name="postgres-change-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), within)

    def _notified(self, _connection: object, _pid: int, channel: str, payload: str) -> None:
        announcement = decode(channel, payload)
        if announcement is not None:
            self._on_change(announcement)

    def _terminated(self, _connection: object) -> None:
        self._connected = False

    async def _run(self) -> None:
        attempt = 0
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(self._dsn, server_settings={"application_name": APPLICATION_NAME})
                await connection.add_listener(ENTITIES, self._notified)
                await connection.add_listener(ENTITLEMENTS, self._notified)
                connection.add_termination_listener(self._terminated)
                # Whatever was written while nobody here listened is unknown: forget it all.
                self._on_gap()
                self._connected = True
                self._listening.set()
                attempt = 0
                while True:
                    await asyncio.sleep(PING_SECONDS)
                    await asyncio.wait_for(connection.fetchval("SELECT 1"), PING_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("listening for entity changes failed; reconnecting", error=str(error))
            finally:
                self._connected = False
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(connection.close(timeout=2))
            attempt += 1
            await asyncio.sleep(min(5.0, 0.2 * attempt))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
