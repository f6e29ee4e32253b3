"""`tally billing collect` and `tally billing advance` as a user runs them: the CLI in a process of its
own, on the database and event store it is configured with, billing usage written by the real sink
into ClickHouse (over its HTTP endpoint: the test writes events while the CLI reads them).

Times are relative to the real clock: the CLI bills what is due now."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.billing import PostgresInvoiceNumbers, billing_unit_of_work
from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import create_engine, migrate, session_factory
from adapters.postgres.event_keys import PostgresEventKeyStore
from adapters.postgres.features import PostgresFeatureRepository
from adapters.postgres.meters import PostgresMeterRepository
from domain.billing.apps.registry import Marketplace
from domain.billing.invoice_service import InvoiceService
from domain.billing.invoice_states import State
from domain.billing.invoices import InvoiceListQuery, InvoiceNowInput, PendingLineInput, PendingLinesInput, UsageRequest
from domain.billing.service import BillingProfileService, Provisioner
from domain.catalog.models import FeatureCreateInput
from domain.catalog.prices import UnitPrice
from domain.catalog.service import FeatureService
from domain.customers.models import CustomerInput
from domain.customers.service import CustomerService
from domain.metering.events import IngestLimits, validate_batch
from domain.metering.models import MeterCreateInput
from domain.metering.service import MeterService
from tests.support import event_store
from tests.support.services import require
from tests.support.stack import create_database, postgres_available
from workers.sink import EventSink, MeterCatalog

ROOT = Path(__file__).resolve().parents[2]
NS = "default"
D = Decimal
HALF_HOUR = timedelta(minutes=30)


class StoreDown:
    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]:
        raise ConnectionError("usage store unavailable")

    async def growing_features(self, namespace: str, feature_keys: Collection[str]) -> set[str]:
        return set(feature_keys)  # features and meters are in Postgres, which is up


def tally(tmp_path: Path, postgres: str, clickhouse: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(
        TALLY_POSTGRES_URL=postgres,
        TALLY_CLICKHOUSE_URL=clickhouse,
        TALLY_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=os.environ.get("PYTHONPATH", str(ROOT)),
    )
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "billing", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_billing_collect_and_advance_through_the_cli(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=4)
    sessions = session_factory(engine)
    clickhouse_url = event_store.event_store_url(request, "http", tmp_path, "billing_cli")
    clickhouse = ClickHouse(clickhouse_url)
    try:
        await clickhouse.migrate()
        store = ClickHouseEventStore(clickhouse)
        meters = PostgresMeterRepository(sessions)
        await MeterService(meters, store).create(
            NS, MeterCreateInput(slug="calls", aggregation="COUNT", event_type="call")
        )
        await FeatureService(PostgresFeatureRepository(sessions), meters).create(
            NS, FeatureCreateInput(key="calls", name="Calls", meter_slug="calls")
        )
        customers = CustomerService(PostgresCustomerRepository(sessions))
        acme = await customers.create(NS, CustomerInput(name="Acme", key="acme", subject_keys=["acme"]))
        beta = await customers.create(NS, CustomerInput(name="Beta", key="beta", subject_keys=["beta"]))
        uow = billing_unit_of_work(sessions)
        marketplace = Marketplace(PostgresInvoiceNumbers(sessions))
        profiles = BillingProfileService(uow, Provisioner(uow), customers, marketplace)

        # Last month's usage, ended two hours ago (past the default collection interval, PT1H).
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        start = end - timedelta(days=30)
        lines = PendingLinesInput(
            "USD",
            [
                PendingLineInput("Platform", start, end, end, per_unit_amount=D(20), quantity=D(1)),
                PendingLineInput("Calls", start, end, end, price=UnitPrice(D("0.01")), feature_key="calls"),
            ],
        )
        sink = EventSink(store, PostgresEventKeyStore(engine), MeterCatalog(meters, 0.01), owner="test")
        events = [
            {
                "specversion": "1.0",
                "id": f"call-{subject}-{i}",
                "source": "test",
                "type": "call",
                "subject": subject,
                "time": (start + timedelta(hours=i)).isoformat(),
                "data": {},
            }
            for subject, count in (("acme", 150), ("beta", 40))
            for i in range(count)
        ]
        await sink.flush(validate_batch(events, NS, datetime.now(UTC), IngestLimits()))

        # Beta's invoice was made before its collection was due (half an hour after its usage
        # ended, the collection interval being an hour): a draft waiting for its collection.
        down = InvoiceService(uow, profiles, customers, marketplace, StoreDown())
        early = InvoiceService(uow, profiles, customers, marketplace, StoreDown(), clock=lambda: end + HALF_HOUR)
        await down.create_pending_lines(NS, beta.id, lines)
        await early.invoice_now(NS, InvoiceNowInput(beta.id))
        # Acme's lines wait on its gathering invoice for the worker.
        await down.create_pending_lines(NS, acme.id, lines)

        collected = tally(tmp_path, url, clickhouse_url, "collect")
        assert collected.returncode == 0, collected.stderr
        assert "invoices collected: 1," in collected.stdout and "failed: 0" in collected.stdout

        found, _ = await down.list_invoices(NS, InvoiceListQuery(), with_lines=True)
        by_customer = {f.invoice.customer.id: f for f in found}
        assert set(by_customer) == {acme.id, beta.id} and len(found) == 2
        paid = by_customer[acme.id]
        assert paid.invoice.state is State.PAID and paid.invoice.totals.total == D("21.50")
        assert by_customer[beta.id].invoice.state is State.DRAFT_WAITING_FOR_COLLECTION

        advanced = tally(tmp_path, url, clickhouse_url, "advance")
        assert advanced.returncode == 0, advanced.stderr
        assert "advanced: 1," in advanced.stdout
        retried = (await down.get(NS, by_customer[beta.id].invoice.id)).invoice
        assert retried.state is State.PAID and retried.totals.total == D("20.40")

        # Nothing is left to do: both commands find no work.
        for command in ("collect", "advance"):
            again = tally(tmp_path, url, clickhouse_url, command)
            assert again.returncode == 0, again.stderr
            assert "invoices collected: 0, advanced: 0, failed: 0" in again.stdout
    finally:
        clickhouse.close()
        await engine.dispose()
