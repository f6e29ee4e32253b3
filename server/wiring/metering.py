"""Metering: meters, ingest and event listing."""

from __future__ import annotations

from datetime import timedelta

from adapters.clickhouse.rollups import RollupLifecycle
from adapters.postgres.locks import advisory_lock
from adapters.postgres.meters import PostgresMeterRepository
from domain.announcements import MetersChanged
from domain.metering.events import IngestLimits
from domain.metering.models import MeterCreateInput
from domain.metering.service import EventQueryService, IngestService, MeterService
from server.servicers.events import EventServicer
from server.servicers.meters import MeterServicer
from server.wiring import Deps, Servicer
from tally.v1 import events_pb2_grpc, meters_pb2_grpc
from workers.backfill import BackfillWorker
from workers.rollups import RollupWorker


async def wire(deps: Deps) -> list[Servicer]:
    settings = deps.settings
    repository = PostgresMeterRepository(deps.sessions)
    catalog = deps.sink.catalog

    rollups: RollupWorker | None = None

    def meters_changed() -> None:
        # Here at once; the sinks of other processes when they hear the announcement.
        catalog.invalidate()
        deps.announce_soon(MetersChanged())
        if rollups is not None:
            rollups.wake()

    meters = MeterService(repository, deps.event_store, on_change=meters_changed)
    deps.services["meter_repository"] = repository
    deps.services["meters"] = meters
    # Declared meters go to their own namespace, else the configured default one.
    for namespace in dict.fromkeys(m.namespace or settings.namespace for m in settings.meters):
        await meters.sync_declared(
            namespace,
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
                if (m.namespace or settings.namespace) == namespace
            ],
        )
    if deps.has_role("sink"):
        backfill = BackfillWorker(
            repository,
            deps.event_store,
            delay=timedelta(seconds=settings.sink.backfill_delay_s),
            interval_seconds=settings.sink.backfill_interval_s,
        )
        backfill.start()
        deps.stop_steps.append(backfill.stop)
        if settings.sink.rollups:
            lifecycle = RollupLifecycle(
                deps.event_store.ch,
                grace=timedelta(seconds=settings.sink.rollup_grace_s),
                drop_after=timedelta(seconds=settings.sink.rollup_drop_after_s),
                audit_interval=timedelta(seconds=settings.sink.rollup_audit_interval_s),
                fill_interval=timedelta(seconds=settings.sink.rollup_fill_interval_s),
            )
            rollups = RollupWorker(
                repository,
                lifecycle,
                advisory_lock(deps.sessions, "tally.meter_rollups"),
                interval_seconds=settings.sink.rollup_interval_s,
            )
            rollups.start()
            deps.stop_steps.append(rollups.stop)
    if not deps.has_role("api") or deps.bus is None:
        return []
    limits = IngestLimits(
        settings.ingest.max_event_bytes, settings.ingest.max_batch_events, settings.ingest.max_batch_bytes
    )
    event_query = EventQueryService(deps.event_store, repository)
    deps.services["events"] = event_query
    events = EventServicer(IngestService(deps.bus, limits), event_query, deps.request)
    return [
        Servicer(events_pb2_grpc.add_EventServiceServicer_to_server, events, "tally.v1.EventService"),
        Servicer(
            meters_pb2_grpc.add_MeterServiceServicer_to_server,
            MeterServicer(meters, deps.request, limits),
            "tally.v1.MeterService",
        ),
    ]
