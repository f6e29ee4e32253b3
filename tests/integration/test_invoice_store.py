"""The invoice repository on real Postgres: a stored invoice and its lines read back exactly, one
gathering invoice per customer and currency also for racing inserts, what counts as already billed
for a period key, and SKIP LOCKED claims that hand each invoice to one worker only."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from ulid import ULID

from adapters.postgres.billing import billing_unit_of_work
from adapters.postgres.db import MIGRATIONS_DIR, async_url, create_engine, migrate, session_factory
from domain.billing.apps.port import IssueSeverity
from domain.billing.invoice_states import State
from domain.billing.invoices import (
    AppAttempt,
    Billed,
    BilledPart,
    CustomerSnapshot,
    Invoice,
    InvoiceLine,
    InvoiceListQuery,
    InvoiceType,
    LineDiscount,
    LineStatus,
    LineType,
    ManagedBy,
    StoredIssue,
    SubscriptionRef,
    Totals,
    VoidLineAction,
)
from domain.billing.models import Workflow
from domain.billing.ports import UnitOfWork
from domain.catalog.prices import Discounts, PriceTier, TieredMode, TieredPrice, UnitPrice
from domain.catalog.ratecards import TaxBehavior, TaxConfig
from domain.catalog.rating import DiscountReason, LineCategory
from domain.errors import ConflictError
from tests.support.services import require
from tests.support.stack import create_database, postgres_available

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest_asyncio.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture
def uow(engine: AsyncEngine) -> UnitOfWork:
    return billing_unit_of_work(session_factory(engine))


def make_invoice(namespace: str, customer: str, state: State = State.GATHERING, currency: str = "USD") -> Invoice:
    return Invoice(
        id=str(ULID()),
        namespace=namespace,
        type=InvoiceType.STANDARD,
        state=state,
        customer=CustomerSnapshot(id=customer, name="Acme Corp", key="acme", subject_keys=("acme",)),
        currency=currency,
        profile_id="p1",
        invoicing_app_id="a1",
        payment_app_id="a1",
        tax_app_id="a1",
        workflow=Workflow(auto_advance=False, draft_period="P1D"),
        created_at=T0,
        updated_at=T0,
        collection_at=T0 + timedelta(days=30),
    )


def make_line(invoice: Invoice, **changes: object) -> InvoiceLine:
    line = InvoiceLine(
        id=str(ULID()),
        namespace=invoice.namespace,
        invoice_id=invoice.id,
        type=LineType.USAGE_BASED,
        status=LineStatus.VALID,
        managed_by=ManagedBy.MANUAL,
        name="API calls",
        currency=invoice.currency,
        period_start=T0,
        period_end=T0 + timedelta(days=30),
        invoice_at=T0 + timedelta(days=30),
        created_at=T0,
        updated_at=T0,
        feature_key="api_calls",
        price=UnitPrice(Decimal("0.015")),
        period_key="item1/2026-11",
    )
    return dataclasses.replace(line, **changes)  # type: ignore[arg-type]


async def test_invoice_and_lines_read_back_exactly(uow: UnitOfWork) -> None:
    ns = "store_roundtrip"
    invoice = dataclasses.replace(
        make_invoice(ns, "c1", State.DRAFT_MANUAL_APPROVAL_NEEDED),
        number="OM-SANDBOX-ACME-1",
        totals=Totals.of(amount=Decimal("123456789012345678901234.015"), discounts_total=Decimal("0.005")),
        validation_issues=(StoredIssue("i1", IssueSeverity.WARNING, "w", "careful", "sandbox", "lines/0"),),
        app_attempt=AppAttempt("sync_draft", State.DRAFT_SYNCING, "key-1", T0, None, "timeout"),
        metadata={"po": "42"},
    )
    tiered = TieredPrice(
        TieredMode.GRADUATED,
        (PriceTier(Decimal(100), None, Decimal("0.1")), PriceTier(None, Decimal(5), Decimal("0.05"))),
    )
    parent = make_line(
        invoice,
        price=tiered,
        rate_card_discounts=Discounts(percentage=Decimal("12.345678901234567"), usage_quantity=Decimal(10)),
        quantity=Decimal("150.5"),
        metered_quantity=Decimal("160.5"),
        pre_line_period_quantity=Decimal("0"),
        tax_config=TaxConfig(behavior=TaxBehavior.EXCLUSIVE, stripe_code="txcd_10000000"),
        subscription=SubscriptionRef("s1", "ph1", "it1"),
        sync_key="s1/it1/v1",
        usage_subjects=("acme", "acme-eu"),
        void_action=VoidLineAction.PENDING,
        netted_of=Decimal("17.32"),
        totals=Totals.of(amount=Decimal("12.53"), discounts_total=Decimal("1.55")),
        discounts=(LineDiscount("d1", DiscountReason.RATECARD_PERCENTAGE, Decimal("1.55")),),
    )
    child = make_line(
        invoice,
        parent_line_id=parent.id,
        status=LineStatus.DETAILED,
        managed_by=ManagedBy.SYSTEM,
        price=None,
        period_key=None,
        child_key="graduated-tiered-1-price-usage",
        category=LineCategory.REGULAR,
        payment_term="in_arrears",
        per_unit_amount=Decimal("0.1"),
        quantity=Decimal(100),
    )
    async with uow() as store:
        await store.invoices.insert(invoice)
        await store.invoices.insert_lines([parent, child])
        await store.commit()
    async with uow() as store:
        assert await store.invoices.get(ns, invoice.id) == invoice
        lines = (await store.invoices.lines(ns, [invoice.id]))[invoice.id]
    assert sorted(lines, key=lambda line: line.id) == sorted([parent, child], key=lambda line: line.id)


async def test_an_invoice_stored_with_the_key_among_its_subject_keys_reads_them_apart(
    uow: UnitOfWork, engine: AsyncEngine
) -> None:
    # Invoices stored before the customer's subject keys were kept apart from its key hold them
    # together (`usage_subject_keys`, the key first): they read back as OpenMeter shows them.
    ns = "store_old_customer"
    invoice = make_invoice(ns, "c1", State.DRAFT_MANUAL_APPROVAL_NEEDED)
    async with uow() as store:
        await store.invoices.insert(invoice)
        await store.commit()
    old = '{"id": "c1", "name": "Acme Corp", "key": "acme", "usage_subject_keys": ["acme", "s1"]}'
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE billing_invoices SET customer = CAST(:c AS jsonb) WHERE id = :id"),
            {"c": old, "id": invoice.id},
        )
    async with uow() as store:
        found = await store.invoices.get(ns, invoice.id)
    assert found is not None
    assert (found.customer.key, tuple(found.customer.subject_keys)) == ("acme", ("s1",))
    assert found.customer.usage_subjects == ("acme", "s1")


async def test_one_gathering_invoice_per_customer_and_currency_under_races(uow: UnitOfWork) -> None:
    ns = "store_gathering"

    async def create(currency: str) -> Invoice:
        invoice = make_invoice(ns, "c1", currency=currency)
        async with uow() as store:
            await store.invoices.insert(invoice)
            await store.commit()
        return invoice

    results = await asyncio.gather(*(create("USD") for _ in range(6)), create("EUR"), return_exceptions=True)
    made = [r for r in results if isinstance(r, Invoice)]
    conflicts = [r for r in results if isinstance(r, ConflictError)]
    assert sorted(i.currency for i in made) == ["EUR", "USD"] and len(conflicts) == 5, results
    async with uow() as store:
        usd = await store.invoices.get_gathering(ns, "c1", "USD")
        both = await store.invoices.gathering_for_customer(ns, "c1")
        assert usd is not None and usd.id in {i.id for i in made}
        assert [i.currency for i in both] == ["EUR", "USD"]
        # A deleted gathering invoice frees the slot; a standard one never took it.
        await store.invoices.update(dataclasses.replace(usd, deleted_at=T0))
        await store.invoices.insert(make_invoice(ns, "c1", State.DRAFT_CREATED))
        await store.invoices.insert(make_invoice(ns, "c1"))
        await store.commit()


async def test_billed_quantities_count_only_live_standard_invoices(uow: UnitOfWork) -> None:
    ns = "store_billed"
    END = T0 + timedelta(days=30)  # make_line's period end
    key = "item1/2026-11"
    issued = make_invoice(ns, "c1", State.ISSUED)
    paid = make_invoice(ns, "c1", State.PAID)
    voided = make_invoice(ns, "c1", State.VOIDED)
    gathering = make_invoice(ns, "c1")
    deleted = dataclasses.replace(make_invoice(ns, "c1", State.DELETED), deleted_at=T0)
    async with uow() as store:
        for inv in (issued, paid, voided, gathering, deleted):
            await store.invoices.insert(inv)
        await store.invoices.insert_lines(
            [
                # Snapshotted before `period_started` was recorded: at the period's start with
                # nothing before it, so it started the period (the rating's rule then).
                # The first part of its period, not its last: it closes nothing.
                make_line(issued, quantity=Decimal("10.5"), period_end=T0 + timedelta(days=15), full_period_end=END),
                make_line(paid, quantity=Decimal("4"), pre_line_period_quantity=Decimal("10.5"), period_started=True),
                make_line(
                    paid,
                    quantity=Decimal("7"),
                    pre_line_period_quantity=Decimal(0),
                    period_key="other",
                    period_started=True,
                ),
                # Voided and put back to be billed again: no longer billed here.
                make_line(
                    voided,
                    quantity=Decimal(1000),
                    period_key="other",
                    period_started=False,
                    void_action=VoidLineAction.PENDING,
                ),
                # Lines that do not count do not make the latest end either.
                make_line(
                    voided,
                    quantity=Decimal(1000),
                    period_end=T0 + timedelta(days=45),
                    void_action=VoidLineAction.PENDING,
                ),
                # Voided and discarded (forgiven): still billed, as is a line an app's void left unmarked.
                make_line(voided, quantity=Decimal(3), period_key="forgiven", period_started=True),
                make_line(voided, quantity=Decimal(2), period_key="forgiven", void_action=VoidLineAction.DISCARD),
                make_line(gathering, quantity=Decimal(1000)),
                make_line(deleted, quantity=Decimal(1000)),
            ]
        )
        # A late-usage correction bills more of the parts' time: no part of its own.
        correction = make_line(
            paid,
            quantity=Decimal(0),
            pre_line_period_quantity=Decimal("14.5"),
            period_started=True,
            usage_subjects=("elsewhere",),
            metadata={"tally.correction": "late_usage"},
        )
        # A part not snapshotted yet bills nothing, starts and ends nothing, but is a part.
        unread = make_line(issued, period_start=T0 + timedelta(days=15), period_end=T0 + timedelta(days=45))
        # A period whose first part is issued and whose only line at its end is a correction: the
        # correction is rated above the lines it corrects, it does not close the period.
        corrected = [
            make_line(issued, quantity=Decimal(2), period_end=T0 + timedelta(days=15), full_period_end=END),
            dataclasses.replace(correction, id=str(ULID()), quantity=Decimal(1), pre_line_period_quantity=Decimal(2)),
        ]
        corrected = [dataclasses.replace(x, period_key="corrected") for x in corrected]
        await store.invoices.insert_lines([correction, unread, make_line(issued, period_key="unread"), *corrected])
        removed = make_line(paid, quantity=Decimal(1000))
        await store.invoices.insert_lines([removed])
        await store.invoices.delete_lines(ns, [removed.id], T0)
        await store.commit()
    # Each part's time and the subjects its invoice copied (the customer's key and subject keys).
    half, whole = BilledPart(T0, T0 + timedelta(days=15), ("acme",)), BilledPart(T0, END, ("acme",))
    rest = BilledPart(T0 + timedelta(days=15), T0 + timedelta(days=45), ("acme",))
    # Where each snapshotted line was rated: (preLinePeriodQuantity, quantity); None where the
    # line did not record it, which rates the next line after all of them, end to end.
    unrecorded = (None, Decimal("10.5"))
    rated = ((Decimal("10.5"), Decimal(4)), (Decimal("14.5"), Decimal(0)))
    async with uow() as store:
        found = await store.invoices.billed_quantities(ns, [key, "other", "unread", "forgiven", "none"])
        # Closed: a line that counts was rated as its period's last (it ends at its full period's
        # end, or has no other full period).
        assert found == {
            key: Billed(Decimal("14.5"), True, END, (half, whole, rest), (unrecorded, *rated), closed=True),
            # The line that started "other" is on the voided invoice, billed again: nothing counting did.
            "other": Billed(Decimal(7), False, END, (whole,), ((Decimal(0), Decimal(7)),), closed=True),
            "forgiven": Billed(
                Decimal(5), True, END, (whole, whole), ((None, Decimal(2)), (None, Decimal(3))), closed=True
            ),
            "unread": Billed(Decimal(0), False, None, (whole,)),
        }
        (with_a_correction,) = (await store.invoices.billed_quantities(ns, ["corrected"])).values()
        assert (with_a_correction.quantity, with_a_correction.closed) == (Decimal(3), False)
        assert [found[k].first_hole() for k in (key, "other", "forgiven", "unread")] == [
            (Decimal("14.5"), None),
            (Decimal(7), None),
            (Decimal(5), None),
            (Decimal(0), None),
        ]
        assert await store.invoices.billed_quantities(ns, [key], exclude_invoice_id=paid.id) == {
            key: Billed(Decimal("10.5"), True, T0 + timedelta(days=15), (half, rest), (unrecorded,))
        }  # the period's first part alone closes nothing
        # Without the first 10.5 units' line (its invoice's lines billed again, say), what it
        # was rated over is the first not billed.
        without_the_first = await store.invoices.billed_quantities(ns, [key], exclude_invoice_id=issued.id)
        assert without_the_first == {key: Billed(Decimal(4), False, END, (whole,), rated, closed=True)}
        # A hole of 10.5 units: a line rated there holds no more before it meets the next one.
        assert without_the_first[key].first_hole() == (0, Decimal("10.5"))
        assert await store.invoices.billed_quantities_by_invoice(ns, ["other"]) == {
            "other": {paid.id: Billed(Decimal(7), False, END, (whole,), ((Decimal(0), Decimal(7)),), closed=True)}
        }


async def test_claims_skip_locked_invoices(uow: UnitOfWork) -> None:
    ns = "store_claims"
    now = T0 + timedelta(days=40)
    invoices = [make_invoice(ns, f"c{i}", State.DRAFT_WAITING_AUTO_APPROVAL) for i in range(4)]
    later = dataclasses.replace(
        make_invoice(ns, "c9", State.DRAFT_WAITING_AUTO_APPROVAL), next_attempt_at=now + timedelta(minutes=1)
    )
    gathering = [make_invoice(ns, f"g{i}") for i in range(3)]
    async with uow() as store:
        for inv in [*invoices, later, *gathering]:
            await store.invoices.insert(inv)
        await store.commit()

    states = [State.DRAFT_WAITING_AUTO_APPROVAL]
    async with uow() as first, uow() as second:
        a = await first.invoices.claim(states, now, 3, ns)
        b = await second.invoices.claim(states, now, 3, ns)
        assert len(a) == 3 and len(b) == 1
        assert {i.id for i in a} | {i.id for i in b} == {i.id for i in invoices}
        ga = await first.invoices.claim_gathering_due(now, 2, ns)
        gb = await second.invoices.claim_gathering_due(now, 2, ns)
        assert len(ga) == 2 and len(gb) == 1 and not {i.id for i in ga} & {i.id for i in gb}
        # Nothing is due before its collection time.
        assert await second.invoices.claim_gathering_due(T0, 5, ns) == []
    # The locks end with the transactions.
    async with uow() as third:
        assert len(await third.invoices.claim(states, now, 10, ns)) == 4


async def test_list_filters(uow: UnitOfWork) -> None:
    ns = "store_list"
    a = make_invoice(ns, "c1", State.ISSUED)
    b = dataclasses.replace(make_invoice(ns, "c2", State.PAID, "EUR"), created_at=T0 + timedelta(hours=1))
    async with uow() as store:
        await store.invoices.insert(a)
        await store.invoices.insert(b)
        await store.commit()
    async with uow() as store:
        found, total = await store.invoices.list_invoices(ns, InvoiceListQuery(customers=["c2"]))
        assert total == 1 and found[0].id == b.id
        found, total = await store.invoices.list_invoices(ns, InvoiceListQuery(descending=True))
        assert total == 2 and [i.id for i in found] == [b.id, a.id]
        found, _ = await store.invoices.list_invoices(ns, InvoiceListQuery(extended_statuses=[State.ISSUED]))
        assert [i.id for i in found] == [a.id]


async def test_list_ordered_by_customer_name_orders_by_the_name(uow: UnitOfWork) -> None:
    # GET /api/v1/billing/invoices?orderBy=customer.name orders by the customer's name (OpenMeter's
    # ByCustomerName), not by its ID: "Zeta" (ID c1) comes after "Alpha" (ID c2).
    ns = "store_list_by_name"
    zeta = make_invoice(ns, "c1", State.ISSUED)
    zeta = dataclasses.replace(zeta, customer=dataclasses.replace(zeta.customer, name="Zeta Ltd"))
    alpha = make_invoice(ns, "c2", State.ISSUED)
    alpha = dataclasses.replace(alpha, customer=dataclasses.replace(alpha.customer, name="Alpha Inc"))
    async with uow() as store:
        await store.invoices.insert(zeta)
        await store.invoices.insert(alpha)
        await store.commit()
    async with uow() as store:
        found, _ = await store.invoices.list_invoices(ns, InvoiceListQuery(order_by="customer.name"))
        assert [i.customer.name for i in found] == ["Alpha Inc", "Zeta Ltd"]
        found, _ = await store.invoices.list_invoices(ns, InvoiceListQuery(order_by="customer.name", descending=True))
        assert [i.customer.name for i in found] == ["Zeta Ltd", "Alpha Inc"]


async def test_statistics_are_refreshed_after_a_write_that_is_a_large_share_of_the_lines() -> None:
    # A database of its own: the planner's row count (pg_class.reltuples, -1 until the first
    # ANALYZE, exact after one on a table this small) shows whether statistics were refreshed.
    engine = create_engine(await _migrated_database(), pool_size=2)
    uow = billing_unit_of_work(session_factory(engine))
    invoice = make_invoice("store_statistics", "c1")

    async def add_lines(count: int) -> None:
        async with uow() as store:
            if count == 600:
                await store.invoices.insert(invoice)
            await store.invoices.insert_lines([make_line(invoice, period_key=str(ULID())) for _ in range(count)])
            await store.commit()

    async def refresh_and_count(changed_rows: int) -> float:
        async with uow() as store:
            await store.invoices.refresh_statistics(changed_rows)
            await store.commit()
        async with engine.connect() as connection:
            reltuples = await connection.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = 'billing_invoice_lines'::regclass")
            )
            return float(reltuples.scalar_one())

    try:
        await add_lines(600)
        assert await refresh_and_count(499) == -1  # too few rows to bother
        assert await refresh_and_count(500) == 600  # never analyzed
        await add_lines(5400)
        assert await refresh_and_count(600) == 6000  # at least a tenth of the 600 believed
        await add_lines(100)
        assert await refresh_and_count(599) == 6000  # under a tenth of the 6,000 believed
        assert await refresh_and_count(600) == 6100
    finally:
        await engine.dispose()


async def _migrated_database() -> str:
    url = await create_database()
    await migrate(url)
    return url


def _alembic(url: str, verb: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    getattr(command, verb)(config, revision)


async def test_lines_voided_before_void_actions_keep_what_they_did() -> None:
    # Before migration 0026 a voided invoice's lines stopped counting as billed (their usage was
    # billed again by the period's next line); the migration marks them `pending`, which keeps
    # that, except a subscription's, which held their items' places and are marked `discard` (as
    # `pending`, the sync would bill them again). Other lines are left unmarked. Stored, then 0026
    # undone and done again; its index of held sync keys leaves pending lines out.
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=2)
    uow = billing_unit_of_work(session_factory(engine))
    ns = "store_migrated_voids"
    voided = dataclasses.replace(make_invoice(ns, "c1", State.VOIDED), issued_at=T0)
    issued = dataclasses.replace(make_invoice(ns, "c1", State.ISSUED), issued_at=T0)
    synced = make_line(
        voided,
        quantity=Decimal(5),
        period_key="item2/2026-11",
        subscription=SubscriptionRef("s1", "ph1", "it2"),
        sync_key="s1/it2/v1",
    )
    lines = [make_line(voided, quantity=Decimal(4)), make_line(issued, quantity=Decimal(6)), synced]
    async with uow() as store:
        # Migration 0028 left a new database with no late-usage read: its first reads every period.
        assert await store.invoices.late_usage_read_at() is None
        for invoice in (voided, issued):
            await store.invoices.insert(invoice)
        await store.invoices.insert_lines(lines)
        await store.commit()
    await engine.dispose()
    await asyncio.to_thread(_alembic, url, "downgrade", "0025_invoices_issued_index")
    await asyncio.to_thread(_alembic, url, "upgrade", "heads")
    engine = create_engine(url, pool_size=2)
    async with engine.connect() as connection:
        marked = set((await connection.execute(text("SELECT id, void_action FROM billing_invoice_lines"))).all())
        index = (
            await connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'billing_invoice_lines_sync_key'")
            )
        ).scalar_one()
    assert marked == {(x.id, action) for x, action in zip(lines, ("pending", None, "discard"), strict=True)}
    assert "void_action" in index
    whole = BilledPart(T0, T0 + timedelta(days=30), ("acme",))
    async with billing_unit_of_work(session_factory(engine))() as store:
        assert await store.invoices.billed_quantities(ns, ["item1/2026-11", "item2/2026-11"]) == {
            "item1/2026-11": Billed(
                Decimal(6), True, T0 + timedelta(days=30), (whole,), ((None, Decimal(6)),), closed=True
            ),
            "item2/2026-11": Billed(
                Decimal(5), True, T0 + timedelta(days=30), (whole,), ((None, Decimal(5)),), closed=True
            ),
        }
        # One that has issued invoices goes on from the migration's time, as if a read had just
        # finished (it does not read again periods the window had already left).
        assert await store.invoices.late_usage_read_at() is not None
    await engine.dispose()
