"""A billing worker in a process of its own, for the SIGKILL test: it advances the invoices due at
the given time and, inside the first quantity snapshot's transaction, creates the marker file and
waits there until it is killed.

    python -m tests.support.billing_worker_proc <postgres url> <now, ISO 8601> <marker path>
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from adapters.postgres.billing import PostgresInvoiceNumbers, billing_unit_of_work
from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import create_engine, session_factory
from domain.billing.apps.registry import Marketplace
from domain.billing.invoice_service import InvoiceService
from domain.billing.invoices import UsageRequest
from domain.billing.service import BillingProfileService, Provisioner
from domain.customers.service import CustomerService
from workers.billing import BillingWorker


class StuckUsage:
    """Refuses the worker's bulk read of a batch's usage, so the invoice reads its own inside its
    snapshot transaction, and stops there."""

    def __init__(self, marker: Path) -> None:
        self._marker = marker
        self._calls = 0

    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]:
        self._calls += 1
        if self._calls == 1:
            raise ConnectionError("the batch read is refused")
        self._marker.touch()
        await asyncio.Event().wait()  # until SIGKILL
        raise AssertionError("unreachable")

    async def growing_features(self, namespace: str, feature_keys: Collection[str]) -> set[str]:
        return set(feature_keys)


async def main(url: str, now: datetime, marker: Path) -> None:
    engine = create_engine(url, pool_size=2)
    sessions = session_factory(engine)
    customers = CustomerService(PostgresCustomerRepository(sessions))
    uow = billing_unit_of_work(sessions)
    marketplace = Marketplace(PostgresInvoiceNumbers(sessions))
    profiles = BillingProfileService(uow, Provisioner(uow), customers, marketplace)
    invoices = InvoiceService(uow, profiles, customers, marketplace, StuckUsage(marker), clock=lambda: now)
    await BillingWorker(invoices, clock=lambda: now).advance()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], datetime.fromisoformat(sys.argv[2]), Path(sys.argv[3])))
