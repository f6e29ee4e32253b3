"""The entitlement services of an in-process test stack: real Postgres and a real event store
(chDB or the ClickHouse HTTP endpoint), wired as server/wiring wires them, for the integration
tests that drive the balance engine, the value cache and the balance worker without a server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.customers import PostgresCustomerRepository, PostgresSubjectRepository
from adapters.postgres.db import session_factory
from adapters.postgres.entitlements import (
    PostgresEntitlementRepository,
    PostgresGrantRepository,
    PostgresSnapshotRepository,
)
from adapters.postgres.event_keys import PostgresEventKeyStore
from adapters.postgres.features import PostgresFeatureRepository
from adapters.postgres.meters import PostgresMeterRepository
from domain.catalog.service import FeatureService
from domain.customers.service import CustomerService, SubjectService
from domain.entitlements.service import EntitlementService
from domain.events import DomainEvents
from domain.metering.service import MeterService
from tests.support import event_store
from tests.support.stack import migrated_engine
from workers.sink import EventSink, MeterCatalog


@dataclass
class EntitlementParts:
    """One database's repositories and the services an EntitlementService reads through."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: ClickHouseEventStore
    clock: Callable[[], datetime]
    meter_repository: PostgresMeterRepository
    grants: PostgresGrantRepository
    snapshots: PostgresSnapshotRepository
    customers: CustomerService
    features: FeatureService
    meters: MeterService

    def service(self, grace_period: timedelta, events: DomainEvents | None = None) -> EntitlementService:
        """A new EntitlementService on these parts (several may share them, as the tests' cached
        and reference services do). `events`: the hub balance snapshots are published on."""
        sessions = self.sessions
        return EntitlementService(
            PostgresEntitlementRepository(sessions),
            self.grants,
            self.snapshots,
            self.customers,
            SubjectService(PostgresSubjectRepository(sessions), self.clock),
            self.features,
            self.meter_repository,
            self.store,
            events=events,
            clock=self.clock,
            grace_period=grace_period,
        )

    def sink(self, owner: str) -> EventSink:
        """The embedded sink on these parts, its meter catalogue refreshed every 10 ms."""
        return EventSink(
            self.store, PostgresEventKeyStore(self.engine), MeterCatalog(self.meter_repository, 0.01), owner=owner
        )


@asynccontextmanager
async def entitlement_parts(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    clock: Callable[[], datetime],
) -> AsyncIterator[EntitlementParts]:
    """A migrated database and a fresh event store of `request.param`'s kind (event_store.KINDS)."""
    async with migrated_engine(pool_size=2) as engine:
        sessions = session_factory(engine)
        clickhouse = ClickHouse(
            event_store.event_store_url(request, request.param, Path(tmp_path_factory.mktemp(name)), name)
        )
        await clickhouse.migrate()
        try:
            store = ClickHouseEventStore(clickhouse)
            meter_repository = PostgresMeterRepository(sessions)
            yield EntitlementParts(
                engine=engine,
                sessions=sessions,
                store=store,
                clock=clock,
                meter_repository=meter_repository,
                grants=PostgresGrantRepository(sessions),
                snapshots=PostgresSnapshotRepository(sessions),
                customers=CustomerService(PostgresCustomerRepository(sessions), clock),
                features=FeatureService(PostgresFeatureRepository(sessions), meter_repository, clock),
                meters=MeterService(meter_repository, store, clock),
            )
        finally:
            clickhouse.close()
