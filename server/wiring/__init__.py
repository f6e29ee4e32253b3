"""How each domain area plugs into the process: its servicers, workers and background tasks.

`App` (server/app.py) builds the shared infrastructure once (Postgres sessions, the event store,
the bus and sink) into `Deps`, then calls every area's `wire(deps)` in `AREAS` order. An area
returns what it serves over gRPC and registers what must stop with the process. Adding an area is
one module here and one line in AREAS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from domain.announcements import Announcement, Announcements
from domain.events import DomainEvents
from domain.metering.ports import EventBus
from server.config import Settings
from server.context import RequestContext
from workers.sink import EventSink

StopStep = Callable[[], Awaitable[None] | None]

log = structlog.get_logger(__name__)


def open_event_store(settings: Settings) -> ClickHouse:
    """The event store's ClickHouse as configured: the embedded engine with its bounds, or a server
    (with its cluster). Every command and role opens it here, so none forgets a setting."""
    embedded = settings.event_store_url.startswith("chdb://")
    return ClickHouse(
        settings.event_store_url,
        cluster=settings.clickhouse_cluster,
        engine_options=settings.chdb.engine_options() if embedded else None,
    )


@dataclass(frozen=True, slots=True)
class Servicer:
    """A gRPC servicer and the generated function that adds it to a server."""

    add_to_server: Callable[[Any, Any], None]
    servicer: Any
    service_name: str


@dataclass
class Deps:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    clickhouse: ClickHouse
    event_store: ClickHouseEventStore
    sink: EventSink
    # None in a process without the api role on Kafka (nothing publishes there).
    bus: EventBus | None
    request: RequestContext
    # In-process domain events between areas (balance snapshots -> notifications, ...).
    events: DomainEvents
    # Changes every process hears (stored usage, grants, entity writes): in process or on Kafka.
    announcements: Announcements
    # Whether other processes announce too (Kafka); the balance role then reads its own group.
    announcements_shared: bool = False
    # The database's URL (the embedded one's too): what listens for its change notifications.
    postgres_url: str | None = None
    # Services an area exposes to areas wired after it (e.g. "meters" for entitlements).
    services: dict[str, Any] = field(default_factory=dict)
    # Run in reverse order at shutdown, after the gRPC server and Envoy have stopped.
    stop_steps: list[StopStep] = field(default_factory=list)

    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def has_role(self, *roles: str) -> bool:
        return any(role in self.settings.roles for role in roles)

    def announce_soon(self, announcement: Announcement) -> None:
        """For synchronous change listeners: announces in the background, retrying for a minute (this
        process has already applied the change locally; other processes' caches wait for it)."""

        async def announce() -> None:
            for attempt in range(12):
                try:
                    await self.announcements.announce(announcement)
                    return
                except Exception:
                    log.warning("announcing a change failed; retrying", announcement=type(announcement).__name__)
                    await asyncio.sleep(min(10.0, 0.5 * 2**attempt))
            log.error("a change was not announced; other processes may serve stale values", announcement=announcement)

        task = asyncio.get_running_loop().create_task(announce())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


Wire = Callable[[Deps], Awaitable[list[Servicer]]]
