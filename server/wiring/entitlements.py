"""Customers, subjects, features, entitlements and grants, and the balance worker."""

from __future__ import annotations

from datetime import timedelta

from adapters.postgres.customers import PostgresCustomerRepository, PostgresSubjectRepository
from adapters.postgres.entitlements import (
    PostgresEntitlementRepository,
    PostgresGrantRepository,
    PostgresSnapshotRepository,
)
from adapters.postgres.features import PostgresFeatureRepository
from domain.catalog.service import FeatureService
from domain.customers.service import CustomerService, CustomerSubjectResolver, SubjectService
from domain.entitlements.cache import ValueCache
from domain.entitlements.service import EntitlementService
from server.servicers.customers import CustomerServicer, SubjectServicer
from server.servicers.entitlements import EntitlementServicer
from server.servicers.features import FeatureServicer
from server.wiring import Deps, Servicer
from tally.v1 import customers_pb2_grpc, entitlements_pb2_grpc, features_pb2_grpc
from workers.balance import BalanceWorker


def value_cache_trusted(deps: Deps) -> bool:
    """The value cache is only correct where this process sees every change.

    That is the api and sink roles together on the in-process bus, which is also one process per
    event store in the embedded default (chDB locks its data dir). On Kafka, or with the api role
    apart from the sink, another process can store events or write grants unseen, so the api
    computes every value instead (no TTL: a value that may be stale is not served).
    """
    settings = deps.settings
    return (
        settings.entitlements.value_cache
        and settings.kafka_brokers is None
        and deps.has_role("api")
        and deps.has_role("sink")
    )


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
    if value_cache_trusted(deps):
        # This process sees every change: ingest reaches its own sink, and every customer,
        # entitlement, grant, feature and meter write goes through its services.
        cache = ValueCache(deps.settings.entitlements.value_cache_entries)
        entitlements.cache = cache
        deps.sink.subscribe(cache.on_flush)
        customers.listeners.append(entitlements.entities_changed)
        features.listeners.append(entitlements.entities_changed)
        deps.services["meters"].listeners.append(entitlements.entities_changed)
        deps.services["value_cache"] = cache
    # Meter queries' filterCustomerId resolves customers (ID or key) to their subjects.
    deps.services["meters"].customers = CustomerSubjectResolver(customers)
    deps.services.update(customers=customers, subjects=subjects, features=features, entitlements=entitlements)

    if deps.has_role("balance"):
        worker = BalanceWorker(entitlements)
        entitlements.on_change = worker.on_change
        if deps.has_role("sink"):
            deps.sink.subscribe(worker.on_flush)
        worker.start()
        deps.services["balance_worker"] = worker
        deps.stop_steps.append(worker.stop)

    if not deps.has_role("api"):
        return []
    return [
        Servicer(
            customers_pb2_grpc.add_CustomerServiceServicer_to_server,
            CustomerServicer(customers, deps.request),
            "tally.v1.CustomerService",
        ),
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
