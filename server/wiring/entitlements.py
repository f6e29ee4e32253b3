"""Customers, subjects, features, entitlements and grants, and the balance worker."""

from __future__ import annotations

from datetime import timedelta

from adapters.bus.announcements import KafkaAnnouncementGroup, KafkaAnnouncements
from adapters.postgres.change_listener import PostgresChangeListener
from adapters.postgres.customers import PostgresCustomerRepository, PostgresSubjectRepository
from adapters.postgres.entitlements import (
    PostgresEntitlementRepository,
    PostgresGrantRepository,
    PostgresSnapshotRepository,
)
from adapters.postgres.features import PostgresFeatureRepository
from domain.announcements import Announcement, EntitiesChanged, EntitlementChanged, MetersChanged, UsageStored
from domain.catalog.service import FeatureService
from domain.customers.service import CustomerService, CustomerSubjectResolver, SubjectService
from domain.entitlements.cache import ValueCache
from domain.entitlements.service import EntitlementService
from server.servicers.customers import SubjectServicer
from server.servicers.entitlements import EntitlementServicer
from server.servicers.features import FeatureServicer
from server.wiring import Deps, Servicer
from tally.v1 import customers_pb2_grpc, entitlements_pb2_grpc, features_pb2_grpc
from workers.balance import BalanceWorker


def value_cache_on(deps: Deps) -> bool:
    """Every api process keeps the value cache; it hears every change through the announcements.

    In the embedded default they are in process and synchronous (the sink announces a stored batch
    before ingest acknowledges it). On Kafka the cache serves only while the process is in step with
    the announcements topic (kafka.announcements_max_staleness_ms), and computes otherwise.
    """
    return deps.settings.entitlements.value_cache and deps.has_role("api")


async def wire(deps: Deps) -> list[Servicer]:
    sessions = deps.sessions
    meter_repository = deps.services["meter_repository"]
    customers = CustomerService(PostgresCustomerRepository(sessions))
    subjects = SubjectService(PostgresSubjectRepository(sessions))
    features = FeatureService(PostgresFeatureRepository(sessions), meter_repository)
    entitlements = EntitlementService(
        PostgresEntitlementRepository(sessions),
        PostgresGrantRepository(sessions),
        PostgresSnapshotRepository(sessions),
        customers,
        subjects,
        features,
        meter_repository,
        deps.event_store,
        events=deps.events,
        grace_period=timedelta(seconds=deps.settings.entitlements.grace_period_s),
    )
    # A customer's usage-attribution keys are subjects (OpenMeter's subject provisioner hook).
    customers.after_write.append(subjects.provision)
    # OpenMeter's customer validator: no deleting a customer with an active entitlement (409).
    customers.delete_guards.append(entitlements.guard_customer_delete)
    # Nor a meter that a live feature or an active entitlement reads, nor a group-by key a feature
    # filters on (OpenMeter's meter/service/manage.go, 409).
    meters = deps.services["meters"]
    meters.delete_guards += [features.guard_meter_delete, entitlements.guard_meter_delete]
    meters.group_by_guards.append(features.guard_meter_group_by)
    # Writes here take effect here at once, and reach other processes as announcements.
    customers.listeners.append(entitlements.entities_changed)
    features.listeners.append(entitlements.entities_changed)
    deps.services["meters"].listeners.append(entitlements.entities_changed)
    entitlements.listeners.append(lambda: deps.announce_soon(EntitiesChanged()))

    async def entitlement_changed(namespace: str, entitlement_id: str) -> None:
        # Awaited, so a grant, void or reset normally returns once every process can hear of it. The
        # change is committed already: failing the call would invite a retry that grants twice, so
        # a failed announcement is retried in the background instead.
        announcement = EntitlementChanged(namespace, entitlement_id)
        try:
            await deps.announcements.announce(announcement)
        except Exception:
            deps.announce_soon(announcement)

    entitlements.on_change = entitlement_changed

    if value_cache_on(deps):
        cache = ValueCache(deps.settings.entitlements.value_cache_entries)
        entitlements.cache = cache

        def apply(announcement: Announcement) -> None:
            # Not entitlements.entities_changed: that would announce again.
            match announcement:
                case UsageStored(touched):
                    cache.usage_changed(touched)
                case EntitlementChanged(namespace, entitlement_id):
                    cache.entitlement_changed(namespace, entitlement_id)
                case EntitiesChanged() | MetersChanged():
                    cache.entities_changed()

        async def invalidate(announcement: Announcement) -> None:
            apply(announcement)

        announcements = deps.announcements
        if isinstance(announcements, KafkaAnnouncements):
            announcements.on_gap.append(cache.clear)
            gate = announcements.synced_within
            if deps.postgres_url is not None:
                # Entity writes of any process also arrive from Postgres as they commit (their
                # announcement follows on Kafka, after the commit, and could be lost with its writer).
                changes = PostgresChangeListener(deps.postgres_url, apply, on_gap=cache.clear)
                await changes.start()
                deps.stop_steps.append(changes.stop)
                cache.gate = lambda: gate() and changes.connected
            else:
                cache.gate = gate

        announcements.subscribe(invalidate)
        deps.services["value_cache"] = cache
    # Meter queries' filterCustomerId resolves customers (ID or key) to their subjects.
    deps.services["meters"].customers = CustomerSubjectResolver(customers)
    # The meter query CSV's subject_display_name.
    deps.services["meters"].subject_names = subjects
    # The event lists' customerId filter, and each listed event's customerId.
    if "events" in deps.services:
        deps.services["events"].customers = deps.services["meters"].customers
    deps.services.update(customers=customers, subjects=subjects, features=features, entitlements=entitlements)

    if deps.has_role("balance"):
        worker = BalanceWorker(entitlements)

        async def recompute(announcement: Announcement) -> None:
            match announcement:
                case UsageStored(touched):
                    await worker.on_flush(touched)
                case EntitlementChanged(namespace, entitlement_id):
                    await worker.on_change(namespace, entitlement_id)

        if deps.announcements_shared:
            # Every announcement of every process, once per balance group, from committed offsets.
            kafka = deps.settings.kafka
            assert deps.settings.kafka_brokers is not None
            group = KafkaAnnouncementGroup(
                deps.settings.kafka_brokers,
                kafka.announcements_topic,
                kafka.balance_consumer_group,
                recompute,
                kafka.session_timeout_ms,
                kafka.fetch_max_wait_ms,
            )
            await group.start()
            deps.stop_steps.append(group.stop)
            deps.services["balance_announcements"] = group
        else:
            deps.announcements.subscribe(recompute)
        worker.start()
        deps.services["balance_worker"] = worker
        deps.stop_steps.append(worker.stop)

    if not deps.has_role("api"):
        return []
    return [
        Servicer(
            customers_pb2_grpc.add_SubjectServiceServicer_to_server,
            SubjectServicer(subjects, deps.request),
            "tally.v1.SubjectService",
        ),
        Servicer(
            features_pb2_grpc.add_FeatureServiceServicer_to_server,
            FeatureServicer(features, deps.request),
            "tally.v1.FeatureService",
        ),
        Servicer(
            entitlements_pb2_grpc.add_EntitlementServiceServicer_to_server,
            EntitlementServicer(entitlements, deps.request),
            "tally.v1.EntitlementService",
        ),
    ]
