"""The billing-run figure: the billing worker collects, rates and issues the invoices of N subscribed
customers, against a same-run reference.

Setup (not timed), in this process on real Postgres and the embedded event store (chDB): three
meters (COUNT, SUM, MAX) with a feature each; a plan with three usage-based rate cards on them
(unit, graduated tiers, package); N customers, each subscribed from the start of last month, with
usage of every meter in that month written through the real sink; the subscription sync puts
their lines on the gathering invoices (its time is reported as `billing_sync_s`).

Measured: `billing_run_s`, one pass of the worker two hours after the month ended (past the
collection interval): every gathering invoice collected, its quantities read from the event store,
rated, validated, issued and paid through the sandbox app, one transaction per state change;
`billing_invoices_per_s` is N / billing_run_s. The reference, `billing_reference_s`, does the
least any billing run must do with the same data: read the same usage with one query per meter
(grouped by subject) and write the same rows (an invoice row and its three line rows per customer)
with bulk inserts in one transaction.

Standalone: `.venv/bin/python -m tests.bench.billing [customers]` (default 1,000).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import column, insert, text
from sqlalchemy import table as sql_table

from adapters.clickhouse.billing_usage import ClickHouseUsageSource
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.billing import PostgresInvoiceNumbers, billing_unit_of_work
from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import create_engine, migrate, session_factory
from adapters.postgres.event_keys import PostgresEventKeyStore
from adapters.postgres.features import PostgresFeatureRepository
from adapters.postgres.meters import PostgresMeterRepository
from adapters.postgres.subscriptions import PostgresSubscriptionRepository
from domain.billing.apps.registry import Marketplace
from domain.billing.invoice_service import InvoiceService
from domain.billing.invoices import UsageRequest
from domain.billing.service import BillingProfileService, Provisioner
from domain.billing.subscription_sync import SubscriptionSync
from domain.catalog.models import FeatureCreateInput
from domain.catalog.plans import Plan, parse_plan
from domain.catalog.service import FeatureService
from domain.customers.models import CustomerInput
from domain.customers.service import CustomerService
from domain.metering.events import IngestLimits, validate_batch
from domain.metering.models import MeterCreateInput
from domain.metering.service import MeterService
from domain.subscriptions.catalog import CatalogRateCards, plan_view
from domain.subscriptions.models import CreateSubscriptionInput, PlanSelector
from domain.subscriptions.ports import PlanView
from domain.subscriptions.service import SubscriptionService
from tests.support.stack import create_database, drop_created_databases
from workers.billing import BillingWorker
from workers.sink import EventSink, MeterCatalog

NS = "bench_billing"
CONCURRENCY = 16
METERS = (("calls", "COUNT", None), ("tokens", "SUM", "$.tokens"), ("storage", "LATEST", "$.gb"))
PLAN: dict[str, Any] = {
    "key": "usage",
    "name": "Usage",
    "currency": "USD",
    "billingCadence": "P1M",
    "phases": [
        {
            "key": "default",
            "name": "Default",
            "rateCards": [
                {
                    "type": "usage_based",
                    "key": "calls",
                    "name": "Calls",
                    "featureKey": "calls",
                    "billingCadence": "P1M",
                    "price": {"type": "unit", "amount": "0.002"},
                },
                {
                    "type": "usage_based",
                    "key": "tokens",
                    "name": "Tokens",
                    "featureKey": "tokens",
                    "billingCadence": "P1M",
                    "price": {
                        "type": "tiered",
                        "mode": "graduated",
                        "tiers": [
                            {"upToAmount": "1000", "unitPrice": {"type": "unit", "amount": "0.01"}},
                            {
                                "unitPrice": {"type": "unit", "amount": "0.005"},
                                "flatPrice": {"type": "flat", "amount": "2"},
                            },
                        ],
                    },
                },
                {
                    "type": "usage_based",
                    "key": "storage",
                    "name": "Storage",
                    "featureKey": "storage",
                    "billingCadence": "P1M",
                    "price": {"type": "package", "amount": "5", "quantityPerPackage": "10"},
                },
            ],
        }
    ],
}


class Clock:
    """A fixed time while the subscriptions are made in the past; then the real time (usage is read
    as stored by the cutoff, and the events were stored just now)."""

    def __init__(self, at: datetime | None) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at or datetime.now(UTC)


class OnePlan:
    def __init__(self, start: datetime) -> None:
        content, issues = parse_plan(PLAN)
        issues.raise_if_errors()
        assert content is not None
        self.view = plan_view(Plan("plan-usage-1", NS, 1, content, start, start, effective_from=start))

    async def active_plan(self, namespace: str, key: str, version: int | None) -> PlanView:
        return self.view


async def _bounded(calls: list[Any], concurrency: int = CONCURRENCY) -> list[Any]:
    queue = list(enumerate(calls))
    results: list[Any] = [None] * len(calls)

    async def run() -> None:
        while queue:
            i, make = queue.pop()
            results[i] = await make()

    await asyncio.gather(*(run() for _ in range(concurrency)))
    return results


async def billing_figures(customers: int, work: Path | None = None) -> dict[str, float]:
    directory = Path(work or tempfile.mkdtemp(prefix="bench-billing-"))
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=CONCURRENCY + 4)
    sessions = session_factory(engine)
    clickhouse = ClickHouse(f"chdb://{directory / f'events-{uuid.uuid4().hex[:6]}'}")
    try:
        return await _run(customers, engine, sessions, clickhouse)
    finally:
        clickhouse.close()
        await engine.dispose()


async def _run(customers: int, engine: Any, sessions: Any, clickhouse: ClickHouse) -> dict[str, float]:
    now = datetime.now(UTC)
    # A monthly period that ended days ago: the run is past its collection interval.
    start = (now - timedelta(days=35)).replace(minute=0, second=0, microsecond=0)
    clock = Clock(start)
    await clickhouse.migrate()
    store = ClickHouseEventStore(clickhouse)
    meters = PostgresMeterRepository(sessions)
    meter_service = MeterService(meters, store)
    features = FeatureService(PostgresFeatureRepository(sessions), meters)
    for slug, aggregation, value in METERS:
        await meter_service.create(
            NS, MeterCreateInput(slug=slug, aggregation=aggregation, event_type=slug, value_property=value)
        )
        await features.create(NS, FeatureCreateInput(key=slug, name=slug, meter_slug=slug))
    customer_service = CustomerService(PostgresCustomerRepository(sessions))
    rate_cards = CatalogRateCards()
    repository = PostgresSubscriptionRepository(sessions, rate_cards)
    subscriptions = SubscriptionService(repository, OnePlan(start), customer_service, rate_cards, clock=clock)
    keys = [f"c{i:06d}" for i in range(customers)]
    print(f"  {customers:,} customers and subscriptions ...", flush=True)

    async def subscribe(key: str) -> None:
        await customer_service.create(NS, CustomerInput(name=key, key=key, subject_keys=[key]))
        await subscriptions.create(CreateSubscriptionInput(NS, PlanSelector("usage"), customer_key=key))

    t0 = time.perf_counter()
    await _bounded([lambda k=k: subscribe(k) for k in keys])
    print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)

    # Usage through the real sink: per customer 3 calls, 2 token events and 2 storage readings.
    sink = EventSink(store, PostgresEventKeyStore(engine), MeterCatalog(meters, 0.01), owner="bench")
    raws = []
    for n, key in enumerate(keys):
        for j in range(3):
            raws.append(_event(f"{key}-c{j}", "calls", key, start + timedelta(days=1 + j), {}))
        for j in range(2):
            raws.append(_event(f"{key}-t{j}", "tokens", key, start + timedelta(days=2 + j), {"tokens": 300 + n % 900}))
        for j in range(2):
            raws.append(_event(f"{key}-s{j}", "storage", key, start + timedelta(days=3 + j), {"gb": 10 + (n + j) % 40}))
    for i in range(0, len(raws), 10_000):
        await sink.flush(validate_batch(raws[i : i + 10_000], NS, now, IngestLimits()))

    uow = billing_unit_of_work(sessions)
    marketplace = Marketplace(PostgresInvoiceNumbers(sessions))
    profiles = BillingProfileService(uow, Provisioner(uow), customer_service, marketplace)
    usage = ClickHouseUsageSource(clickhouse, PostgresFeatureRepository(sessions), meters, customer_service)
    invoices = InvoiceService(uow, profiles, customer_service, marketplace, usage, clock=clock)
    sync = SubscriptionSync(uow, profiles, repository, clock=clock, drafts=invoices)
    worker = BillingWorker(invoices, sync, batch_size=200, concurrency=CONCURRENCY, clock=clock)

    clock.at = None
    print("  subscription sync ...", flush=True)
    started = time.perf_counter()
    await worker.sync()
    sync_s = time.perf_counter() - started
    # The steady state: the next pass, with every subscription's lines already as they should be.
    started = time.perf_counter()
    synced, _ = await worker.sync()
    sync_again_s = time.perf_counter() - started
    if synced:
        raise RuntimeError(f"a second sync pass changed {synced} lines")

    print("  billing run ...", flush=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    collected, failed_c = await worker.collect()
    advanced, failed_a = await worker.advance()
    run_s = time.perf_counter() - started
    run_cpu_s = time.process_time() - cpu_started
    if collected != customers or failed_c or failed_a:
        raise RuntimeError(f"billing run: {collected} collected of {customers}, {failed_c + failed_a} failed")
    paid = await _scalar(engine, "SELECT count(*) FROM billing_invoices WHERE status = 'paid' AND total > 0")
    if paid != customers:
        raise RuntimeError(f"billing run: {paid} paid invoices of {customers}")

    period_end = await _scalar(engine, "SELECT max(period_end) FROM billing_invoices WHERE status = 'paid'")
    reference_s = await _reference(engine, usage, keys, start, period_end)
    return {
        "sync_s": sync_s,
        "sync_again_s": sync_again_s,
        "run_s": run_s,
        "invoices_per_s": customers / run_s,
        # The worker's own CPU (this process) per invoice: steadier than the rate on a shared machine.
        "run_cpu_ms_per_invoice": run_cpu_s * 1000 / customers,
        "reference_s": reference_s,
        "advanced_after_collect": float(advanced),
    }


def _event(event_id: str, event_type: str, subject: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "bench",
        "type": event_type,
        "subject": subject,
        "time": at.isoformat(),
        "data": data,
    }


async def _scalar(engine: Any, sql: str) -> Any:
    async with engine.connect() as connection:
        return (await connection.execute(text(sql))).scalar_one()


async def _reference(
    engine: Any, usage: ClickHouseUsageSource, keys: list[str], start: datetime, end: datetime
) -> float:
    """The same usage read with one query per meter (the bulk path billing uses, grouped by
    subject), and the same rows written: an invoice and its three lines per customer, bulk-inserted
    into scratch copies of the invoice tables in one transaction."""
    customer_ids = await _customer_ids(engine)
    requests = [UsageRequest(slug, customer_ids[key], start, end) for slug, _, _ in METERS for key in keys]
    started = time.perf_counter()
    quantities = await usage.quantities(NS, requests, datetime.now(UTC))
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TEMP TABLE ref_invoices (LIKE billing_invoices INCLUDING DEFAULTS)"))
        await connection.execute(text("CREATE TEMP TABLE ref_lines (LIKE billing_invoice_lines INCLUDING DEFAULTS)"))
        invoice_rows = await connection.execute(
            text("SELECT * FROM billing_invoices WHERE status = 'paid' AND namespace = :ns"), {"ns": NS}
        )
        # Joined by (namespace, invoice id), the lines index's prefix: the statistics the worker
        # refreshed after the sync show no paid invoice, and planned on them an IN over every
        # invoice ID read the lines once per paid invoice (the reference took 12-18 s at N = 10,000).
        line_rows = await connection.execute(
            text(
                "SELECT l.* FROM billing_invoice_lines l JOIN billing_invoices i"
                " ON i.namespace = l.namespace AND i.id = l.invoice_id"
                " WHERE i.namespace = :ns AND i.status = 'paid' AND l.parent_line_id IS NULL"
            ),
            {"ns": NS},
        )
        invoices_data = [_plain(r._mapping) for r in invoice_rows]
        lines_data = [_plain(r._mapping) for r in line_rows]
        await _bulk_insert(connection, "ref_invoices", invoices_data)
        await _bulk_insert(connection, "ref_lines", lines_data)
    elapsed = time.perf_counter() - started
    if len(quantities) != len(requests):
        raise RuntimeError("reference: usage missing")
    return elapsed


def _plain(row: Any) -> dict[str, Any]:
    """A row as a bulk insert sends it: JSON columns as text."""
    return {k: orjson.dumps(v).decode() if isinstance(v, dict | list) else v for k, v in row.items()}


async def _bulk_insert(connection: Any, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    target = sql_table(table, *(column(name) for name in rows[0]))
    for i in range(0, len(rows), 2_000):
        await connection.execute(insert(target), rows[i : i + 2_000])


async def _customer_ids(engine: Any) -> dict[str, str]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT key, id FROM customers WHERE namespace = :ns"), {"ns": NS})
        return {key: id_ for key, id_ in rows}


async def _standalone(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-billing-") as work:
        try:
            return await billing_figures(count, Path(work))
        finally:
            await drop_created_databases()


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    figures = asyncio.run(_standalone(count))
    for name, value in figures.items():
        print(f"billing_{name} = {value:,.3f}")
