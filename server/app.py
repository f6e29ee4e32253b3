"""Wiring: builds adapters and domain services for the configured roles, starts and stops them.

Start order: Postgres (embedded if unconfigured) -> migrations -> event store -> bus and sink ->
gRPC server -> Envoy. Stop runs in reverse, draining: Envoy stops taking REST, the gRPC server
finishes in-flight calls, the bus flushes what it acknowledged, then the stores close.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from adapters.bus.inprocess import InProcessBus
from adapters.bus.kafka import KafkaBus, KafkaSinkConsumer, ensure_topic
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.db import EmbeddedPostgres, create_engine, migrate, session_factory
from adapters.postgres.event_keys import PostgresEventKeyStore
from adapters.postgres.meters import PostgresMeterRepository
from domain.metering.events import IngestLimits
from domain.metering.models import MeterCreateInput
from domain.metering.service import EventQueryService, IngestService, MeterService
from server import metrics
from server.config import Settings
from server.context import RequestContext
from server.envoy import Envoy
from server.interceptors import ErrorInterceptor
from server.servicers.events import EventServicer
from server.servicers.meters import MeterServicer
from tally.v1 import events_pb2, events_pb2_grpc, meters_pb2, meters_pb2_grpc
from workers.sink import EventSink, MeterCatalog

log = structlog.get_logger(__name__)

SERVICE_NAMES = (
    events_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    meters_pb2.DESCRIPTOR.services_by_name["MeterService"].full_name,
)


class _AllMeters:
    """The sink's view of meters across namespaces."""

    def __init__(self, repository: PostgresMeterRepository, namespaces: list[str]) -> None:
        self._repository = repository
        self._namespaces = namespaces

    async def list_all(self) -> list[Any]:
        meters: list[Any] = []
        for namespace in self._namespaces:
            meters.extend(await self._repository.list_meters(namespace))
        return meters


@dataclass
class App:
    settings: Settings
    postgres_url: str = ""
    _stack: list[Any] = field(default_factory=list)
    grpc_server: grpc.aio.Server | None = None
    _periodic: list[asyncio.Task[None]] = field(default_factory=list)

    def _needs(self, *roles: str) -> bool:
        return any(role in self.settings.roles for role in roles)

    async def start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.kafka_brokers is None and self._needs("api") != self._needs("sink"):
            raise RuntimeError(
                "the in-process bus needs the api and sink roles in one process; set TALLY_KAFKA_BROKERS to split them"
            )
        if settings.postgres_url is None:
            embedded = EmbeddedPostgres(settings.data_dir)
            self.postgres_url = await asyncio.to_thread(embedded.start)
            self._stack.append(embedded.stop)
        else:
            self.postgres_url = settings.postgres_url
        if settings.migrate_on_start:
            await migrate(self.postgres_url)
        engine = create_engine(self.postgres_url)
        self._stack.append(engine.dispose)
        sessions = session_factory(engine)
        meter_repository = PostgresMeterRepository(sessions)

        clickhouse = ClickHouse(settings.event_store_url)
        self._stack.append(clickhouse.close)
        if settings.migrate_on_start:
            await clickhouse.migrate()
        store = ClickHouseEventStore(clickhouse)

        catalog = MeterCatalog(_AllMeters(meter_repository, [settings.namespace]))
        key_store = PostgresEventKeyStore(sessions)
        sink = EventSink(store, key_store, catalog, owner="inprocess")
        self.sink = sink

        bus: Any = None
        if settings.kafka_brokers is None:
            inprocess = InProcessBus(sink, settings.sink.max_batch_events)
            await inprocess.start()
            self._stack.append(inprocess.stop)
            bus = inprocess
        else:
            await ensure_topic(settings.kafka_brokers, settings.kafka.topic, settings.kafka.partitions)
            if self._needs("sink"):
                consumer = KafkaSinkConsumer(
                    settings.kafka_brokers,
                    settings.kafka.topic,
                    settings.sink.consumer_group,
                    sink,
                    settings.sink.max_batch_events,
                    settings.sink.flush_interval_ms,
                    settings.kafka.session_timeout_ms,
                )
                await consumer.start()
                self._stack.append(consumer.stop)
            if self._needs("api"):
                kafka = KafkaBus(
                    settings.kafka_brokers,
                    settings.kafka.topic,
                    settings.kafka.request_timeout_ms,
                    settings.kafka.enable_idempotence,
                )
                await kafka.start()
                self._stack.append(kafka.stop)
                bus = kafka
        if self._needs("sink"):
            self._periodic.append(
                asyncio.create_task(self._purge_keys(key_store, timedelta(days=settings.sink.dedup_window_days)))
            )

        meter_service = MeterService(meter_repository, store, on_change=catalog.invalidate)
        if settings.meters:
            await meter_service.sync_declared(
                settings.namespace,
                [
                    MeterCreateInput(
                        slug=m.slug,
                        aggregation=m.aggregation,
                        event_type=m.event_type,
                        name=m.name,
                        description=m.description,
                        value_property=m.value_property,
                        group_by=m.group_by,
                    )
                    for m in settings.meters
                ],
            )

        if self._needs("api"):
            limits = IngestLimits(
                settings.ingest.max_event_bytes,
                settings.ingest.max_batch_events,
                settings.ingest.max_batch_bytes,
            )
            request = RequestContext(settings.namespace)
            await self._start_grpc(
                [
                    (
                        events_pb2_grpc.add_EventServiceServicer_to_server,
                        EventServicer(IngestService(bus, limits), EventQueryService(store, meter_repository), request),
                    ),
                    (
                        meters_pb2_grpc.add_MeterServiceServicer_to_server,
                        MeterServicer(meter_service, request),
                    ),
                ]
            )
            if settings.envoy_enabled:
                envoy = Envoy(settings)
                await envoy.start()
                self._stack.append(envoy.stop)
        metrics.serve(settings.metrics_host, settings.metrics_port)
        log.info(
            "tally started",
            roles=",".join(settings.roles),
            grpc=f"{settings.grpc_host}:{settings.grpc_port}",
            rest=f"http://{settings.rest_host}:{settings.rest_port}" if settings.envoy_enabled else "disabled",
            bus="kafka" if settings.kafka_brokers else "in-process",
            events=settings.event_store_url,
        )

    async def _start_grpc(self, servicers: list[tuple[Any, Any]]) -> None:
        server = grpc.aio.server(
            interceptors=[ErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", 32 * 1024 * 1024),
                ("grpc.max_send_message_length", 32 * 1024 * 1024),
            ],
        )
        for add, servicer in servicers:
            add(servicer, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        bound = server.add_insecure_port(f"{self.settings.grpc_host}:{self.settings.grpc_port}")
        if bound == 0:
            raise RuntimeError(f"cannot listen on {self.settings.grpc_host}:{self.settings.grpc_port}")
        await server.start()
        self.grpc_server = server
        self.health = health_servicer

        async def stop_grpc() -> None:
            await health_servicer.enter_graceful_shutdown()
            await server.stop(grace=10)

        self._stack.append(stop_grpc)

    async def _purge_keys(self, store: PostgresEventKeyStore, window: timedelta) -> None:
        while True:
            try:
                purged = await store.purge(window)
                if purged:
                    log.info("purged expired deduplication keys", keys=purged)
            except Exception:
                log.exception("purging deduplication keys failed")
            await asyncio.sleep(3600)

    async def stop(self) -> None:
        for task in self._periodic:
            task.cancel()
        # Envoy first (stop taking REST), then gRPC, bus, stores, Postgres.
        while self._stack:
            step = self._stack.pop()
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("error while stopping", step=getattr(step, "__qualname__", str(step)))
        log.info("tally stopped")
