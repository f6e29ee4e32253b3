"""`tally billing collect` and `tally billing advance`: one pass of the billing worker, on demand
(OpenMeter's `jobs billing ...`).

They open the database and the event store `tally serve` uses, found the same way
(server/commands/database.py), and take work the way the worker does (leases), so they are safe
next to running billing workers. The embedded event store (chDB) allows one process per data
directory: with the embedded default, run them while `tally serve` is stopped (a running server's
billing role does the same work on its own). After billing was stopped, run `advance` before
`collect`, as the worker's pass does: an invoice-now part waiting for its collection is then read
before the later part of its period that `collect` makes, so each bills its own time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer

from server.commands.common import fail
from server.commands.database import announce, command_database
from server.config import Settings, load_settings
from workers.billing import BillingWorker, PassResult

app = typer.Typer(help="Run the billing worker's passes once (collect, advance).", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (default: ./config.yaml if present).")
]


def _with_worker(settings: Settings, work: Callable[[BillingWorker], Awaitable[PassResult]]) -> PassResult:
    from adapters.postgres.billing import PostgresInvoiceNumbers
    from adapters.postgres.customers import PostgresCustomerRepository
    from adapters.postgres.db import create_engine, session_factory
    from adapters.postgres.subscriptions import PostgresSubscriptionRepository
    from domain.billing.apps.registry import Marketplace
    from domain.customers.service import CustomerService
    from domain.subscriptions.catalog import CatalogRateCards
    from server.logging import configure
    from server.wiring import open_event_store
    from server.wiring.billing import billing_worker, invoicing

    # stdout carries the result; logs (each invoice collected, each failure) go to stderr.
    configure(settings.log_level, settings.log_format)
    announce(settings, create=False)
    try:
        with command_database(settings, migrate=settings.migrate_on_start) as url:

            async def main() -> PassResult:
                engine = create_engine(url, pool_size=settings.billing.concurrency + 2)
                clickhouse = open_event_store(settings)
                try:
                    sessions = session_factory(engine)
                    parts = invoicing(
                        sessions,
                        clickhouse,
                        CustomerService(PostgresCustomerRepository(sessions)),
                        PostgresSubscriptionRepository(sessions, CatalogRateCards()),
                        Marketplace(PostgresInvoiceNumbers(sessions)),
                    )
                    return await work(billing_worker(settings.billing, parts))
                finally:
                    clickhouse.close()
                    await engine.dispose()

            return asyncio.run(main())
    except OSError as error:
        fail(f"cannot reach the database or the event store: {error}")


def _report(result: PassResult) -> None:
    typer.echo(
        f"subscription lines synced: {result.synced}, late-usage corrections: {result.corrections}, "
        f"invoices collected: {result.collected}, advanced: {result.advanced}, failed: {result.failed}"
    )
    if result.failed:
        # Failed steps are retried by the next pass after their backoff; the log says why.
        raise typer.Exit(1)


@app.command()
def collect(config: ConfigOption = None) -> None:
    """Sync subscription lines and late usage, then turn every gathering invoice whose lines are due
    into invoices, each advanced as far as its workflow allows."""
    settings = load_settings(config)

    async def work(worker: BillingWorker) -> PassResult:
        synced, corrections = await worker.sync()
        collected, failed = await worker.collect()
        return PassResult(synced=synced, corrections=corrections, collected=collected, failed=failed)

    _report(_with_worker(settings, work))


@app.command()
def advance(config: ConfigOption = None) -> None:
    """Advance every invoice the worker can move now: collection or draft period over, a failed
    step due for its retry, a payment past its due date (overdue)."""
    settings = load_settings(config)

    async def work(worker: BillingWorker) -> PassResult:
        advanced, failed = await worker.advance()
        return PassResult(advanced=advanced, failed=failed)

    _report(_with_worker(settings, work))
