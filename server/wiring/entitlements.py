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
from domain.entitlements.service import EntitlementService
from server.servicers.customers import CustomerServicer, SubjectServicer
from server.servicers.entitlements import EntitlementServicer
from server.servicers.features import FeatureServicer
from server.wiring import Deps, Servicer
from tally.v1 import customers_pb2_grpc, entitlements_pb2_grpc, features_pb2_grpc
from workers.balance import BalanceWorker


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
