"""Process wiring: shared infrastructure, then every domain area (server/wiring), then serving.

Start order: Postgres (embedded if unconfigured) -> migrations -> event store -> bus and sink ->
areas -> gRPC server -> Envoy. Stop runs in reverse, draining: Envoy stops taking REST, the gRPC
server finishes in-flight calls, the bus flushes what it acknowledged, then the stores close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from adapters import metrics
from adapters.bus.announcements import KafkaAnnouncements, LocalAnnouncements
from adapters.bus.hub import InProcessHub
from adapters.bus.inprocess import InProcessBus
from adapters.bus.kafka import KafkaBus, KafkaSinkConsumer, ensure_topic
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore, load_arrow_conversions
from adapters.clickhouse.rollups import ReadyRollups
from adapters.postgres.db import EmbeddedPostgres, create_engine, migrate, session_factory
from adapters.postgres.event_keys import PostgresEventKeyStore
from adapters.postgres.meters import PostgresMeterRepository
from domain.announcements import Announcement, MetersChanged, UsageStored
from server.auth import AuthInterceptor
from server.config import Settings
from server.context import RequestContext
from server.encoded import PassingBytes
from server.envoy import Envoy
from server.interceptors import ErrorInterceptor, RestInterceptor
from server.startup import StartupError, check_ports, holder
from server.wiring import (
    Deps,
    Servicer,
    StopStep,
    Wire,
    auth,
    billing,
    catalog,
    entitlements,
    metering,
    notifications,
    open_event_store,
    subscriptions,
)
from workers.sink import EventSink, MeterCatalog

log = structlog.get_logger(__name__)

# A stop step that takes this long is logged with its time: where a slow or hung drain spends it.
_SLOW_STOP_STEP_S = 2.0
# How long one stop step may take before the stop goes on without it (gRPC's grace is 10 s).
_STOP_STEP_BOUND_S = 30.0

# Every domain area, in dependency order (an area may use services of those before it).
AREAS: Sequence[Wire] = (
    metering.wire,
    entitlements.wire,
    catalog.wire,
    subscriptions.wire,
    notifications.wire,
    billing.wire,
    auth.wire,
)


def receive_limit(max_batch_bytes: int) -> int:
    """grpc's cap on one request message, from ingest.max_batch_bytes."""
    return max(32 * 1024 * 1024, 2 * max_batch_bytes + 1024 * 1024)


def _task_stacks() -> str:
    """Where every other task of the event loop waits: what a stop step that does not finish waits on."""
    out = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        frames = "\n".join(f"    {f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}" for f in task.get_stack())
        out.append(f"  {task.get_name()}:\n{frames}")
    return "\n" + "\n".join(out)


@dataclass
class App:
    settings: Settings
    postgres_url: str = ""
    services: list[str] = field(default_factory=list)
    _stack: list[StopStep] = field(default_factory=list)
    _periodic: list[asyncio.Task[None]] = field(default_factory=list)
    # Stop steps that did not finish in their bound (see stop): still pending when stop returns.
    abandoned: list[asyncio.Future[Any]] = field(default_factory=list)

    def _needs(self, *roles: str) -> bool:
        return any(role in self.settings.roles for role in roles)

    async def start(self) -> None:
        settings = self.settings
        # Before anything starts: a port in use (a second `make run`) is one clear line.
        check_ports(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.kafka_brokers is None and self._needs("api") != self._needs("sink"):
            raise RuntimeError(
                "the in-process bus needs the api and sink roles in one process; set TALLY_KAFKA_BROKERS to split them"
            )
        if settings.postgres_url is None:
            embedded = EmbeddedPostgres(settings.data_dir, owner="serve")
            # Stopped last, whatever fails after this point; started on this (the main) thread
            # because its parent-death signal is tied to the starting thread.
            self._stack.append(embedded.stop)
            self.postgres_url = embedded.start()
        else:
            self.postgres_url = settings.postgres_url
        if settings.migrate_on_start:
            await migrate(self.postgres_url)
        engine = create_engine(self.postgres_url)
        self._stack.append(engine.dispose)
        sessions = session_factory(engine)
        # Before anything else starts: refuse a non-loopback bind nobody could authenticate to.
        auth_required = True
        if self._needs("api"):
            auth_required = await auth.check_policy(settings, auth.api_key_service(sessions, settings))

        clickhouse = open_event_store(settings)
        self._stack.append(clickhouse.close)
        if settings.migrate_on_start:
            await clickhouse.migrate()
        if clickhouse.embedded:
            self._periodic.append(asyncio.create_task(self._report_engine_caches(clickhouse)))
        store = ClickHouseEventStore(clickhouse, ReadyRollups(clickhouse))

        catalog = MeterCatalog(PostgresMeterRepository(sessions), settings.sink.catalog_refresh_s)
        key_store = PostgresEventKeyStore(engine)
        sink = EventSink(store, key_store, catalog, owner="inprocess")
        # Stopped after the bus (steps stop last-in first): a flush while draining may still need it.
        self._stack.append(sink.close)
        # Before the bus: the sink announces every stored batch, also while the bus drains at stop.
        announcements = await self._start_announcements()

        async def announce_stored(touched: set[tuple[str, str, str]]) -> None:
            await announcements.announce(UsageStored(frozenset(touched)))

        async def on_announcement(announcement: Announcement) -> None:
            if isinstance(announcement, MetersChanged):
                catalog.invalidate()

        sink.subscribe(announce_stored)
        announcements.subscribe(on_announcement)
        if self._needs("sink"):
            load_arrow_conversions()  # before the bus can hand the sink its first flush
        bus = await self._start_bus(sink)
        if self._needs("sink"):
            window = timedelta(days=settings.sink.dedup_window_days)
            self._periodic.append(asyncio.create_task(self._purge_keys(key_store, window)))

        deps = Deps(
            settings=settings,
            sessions=sessions,
            clickhouse=clickhouse,
            event_store=store,
            sink=sink,
            bus=bus,
            request=RequestContext(settings.namespace, anonymous=not auth_required),
            events=InProcessHub(),
            announcements=announcements,
            announcements_shared=settings.kafka_brokers is not None,
            postgres_url=self.postgres_url,
        )
        servicers: list[Servicer] = []
        for wire in AREAS:
            servicers.extend(await wire(deps))
        self._stack.extend(deps.stop_steps)

        if self._needs("api"):
            await self._start_grpc(servicers, AuthInterceptor(deps.services["authenticator"]))
            if settings.envoy_enabled:
                envoy = Envoy(settings)
                await envoy.start()
                self._stack.append(envoy.stop)
        self._periodic.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        metrics_server = metrics.serve(settings.metrics_host, settings.metrics_port)
        self._stack.insert(0, metrics_server.shutdown)
        log.info(
            "tally started",
            roles=",".join(settings.roles),
            grpc=f"{settings.grpc_host}:{settings.grpc_port}",
            rest=f"http://{settings.rest_host}:{settings.rest_port}" if settings.envoy_enabled else "disabled",
            bus="kafka" if settings.kafka_brokers else "in-process",
            auth="api keys required" if auth_required else "DISABLED (no API keys)",
            events=settings.event_store_url,
        )

    async def _start_announcements(self) -> LocalAnnouncements | KafkaAnnouncements:
        settings = self.settings
        if settings.kafka_brokers is None:
            return LocalAnnouncements()
        kafka = settings.kafka
        await ensure_topic(
            settings.kafka_brokers,
            kafka.announcements_topic,
            kafka.partitions,
            {"cleanup.policy": "delete", "retention.ms": str(kafka.announcements_retention_ms)},
        )
        announcements = KafkaAnnouncements(
            settings.kafka_brokers,
            kafka.announcements_topic,
            kafka.request_timeout_ms,
            # Processes that keep derived state listen: api (value cache), sink (meter catalogue).
            listen=self._needs("api", "sink"),
            sync_interval_s=kafka.announcements_sync_interval_ms / 1000,
            max_staleness_s=kafka.announcements_max_staleness_ms / 1000,
            fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        )
        await announcements.start()
        self._stack.append(announcements.stop)
        return announcements

    async def _start_bus(self, sink: EventSink) -> Any:
        settings = self.settings
        if settings.kafka_brokers is None:
            inprocess = InProcessBus(sink, settings.sink.max_batch_events)
            await inprocess.start()
            self._stack.append(inprocess.stop)
            return inprocess
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
                settings.kafka.fetch_max_wait_ms,
            )
            await consumer.start()
            self._stack.append(consumer.stop)
        if not self._needs("api"):
            return None
        kafka = KafkaBus(
            settings.kafka_brokers,
            settings.kafka.topic,
            settings.kafka.request_timeout_ms,
            settings.kafka.enable_idempotence,
            settings.kafka.linger_ms,
        )
        await kafka.start()
        self._stack.append(kafka.stop)
        return kafka

    async def _start_grpc(self, servicers: list[Servicer], auth_interceptor: AuthInterceptor) -> None:
        server = grpc.aio.server(
            # Outermost first: auth's 401/403 errors go through the error mapping like any other.
            interceptors=[ErrorInterceptor(), auth_interceptor, RestInterceptor()],
            options=[
                # Requests: ingest refuses a message over ingest.max_batch_bytes itself, naming the
                # setting; grpc's own cap sits well above it (REST bodies arrive wrapped, and a
                # message just over the limit should get that message, not grpc's generic one).
                ("grpc.max_receive_message_length", receive_limit(self.settings.ingest.max_batch_bytes)),
                # Responses: meter queries are not paginated (OpenMeter's API); a month of hourly
                # windows for thousands of groups is tens of MiB.
                ("grpc.max_send_message_length", 512 * 1024 * 1024),
                # Envoy forwards REST JSON bodies of up to 16 KiB in a header (server/json_fields.py),
                # base64: above grpc's 8 KiB default for metadata.
                ("grpc.max_metadata_size", 64 * 1024),
                # A second Tally on the same port must fail to bind, not share it (grpc sets
                # SO_REUSEPORT by default, and the kernel would split calls between the two).
                ("grpc.so_reuseport", 0),
            ],
        )
        for item in servicers:
            # A method may return its response already serialized (server/encoded.py).
            item.add_to_server(item.servicer, PassingBytes(server))
        self.services = [item.service_name for item in servicers]
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in ("", *self.services):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (*self.services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        if server.add_insecure_port(f"{self.settings.grpc_host}:{self.settings.grpc_port}") == 0:
            raise StartupError(
                f"gRPC port {self.settings.grpc_host}:{self.settings.grpc_port} is already in use by "
                f"{holder(self.settings.grpc_port)}: stop it, or set TALLY_GRPC_PORT to a free port"
            )
        await server.start()

        async def stop_grpc() -> None:
            await health_servicer.enter_graceful_shutdown()
            await server.stop(grace=10)

        self._stack.append(stop_grpc)

    async def _heartbeat(self) -> None:
        """A blocked event loop stops this beat, and /healthz (served from a thread) then fails."""
        with metrics.LIVENESS.watching("event-loop", 10.0):
            while True:
                metrics.LIVENESS.beat("event-loop")
                await asyncio.sleep(1.0)

    async def _report_engine_caches(self, clickhouse: ClickHouse) -> None:
        """The embedded engine shares this process's memory: its caches go to /metrics."""
        while True:
            try:
                for cache, size in (await clickhouse.engine_cache_bytes()).items():
                    metrics.EMBEDDED_ENGINE_CACHE_BYTES.labels(cache).set(size)
            except Exception:
                log.warning("reading the embedded engine's cache sizes failed", exc_info=True)
            await asyncio.sleep(15)

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
        # Envoy first (stop taking REST), then gRPC, areas' workers, bus, stores, Postgres.
        while self._stack:
            step = self._stack.pop()
            name = getattr(step, "__qualname__", str(step))
            started = time.monotonic()
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    # Bounded, and never cancelled: a step that does not finish (the billing
                    # worker's once waited out its poll interval) must not hold up the rest, and a
                    # cancellation it ignored would be waited for just the same.
                    running = asyncio.ensure_future(result)
                    done, _ = await asyncio.wait({running}, timeout=_STOP_STEP_BOUND_S)
                    if not done:
                        log.error(
                            "a stop step did not finish; stopping the rest without it",
                            step=name,
                            waiting=_task_stacks(),
                        )
                        self.abandoned.append(running)
                        continue
                    running.result()
            except Exception:
                log.exception("error while stopping", step=name)
            took = time.monotonic() - started
            if took >= _SLOW_STOP_STEP_S:
                log.warning("a stop step was slow", step=name, seconds=round(took, 1))
        log.info("tally stopped")
