"""The staged store a batched state change writes through (domain/billing/invoice_batch.py): what
one invoice's several state changes in one transaction leave to be written must be exactly what
writing each change at once would leave in the database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.billing.invoice_batch import RoundNumbers, StagedInvoices, StagedWrites, UnstagedError
from domain.billing.invoices import Billed, InvoiceLine, LineStatus, LineType, ManagedBy

T0 = datetime(2026, 12, 1, tzinfo=UTC)
T1 = datetime(2026, 12, 1, 1, tzinfo=UTC)


def line(id_: str, parent: str | None = None, quantity: str | None = None, invoice: str = "inv") -> InvoiceLine:
    return InvoiceLine(
        id=id_,
        namespace="ns",
        invoice_id=invoice,
        type=LineType.USAGE_BASED,
        status=LineStatus.DETAILED if parent else LineStatus.VALID,
        managed_by=ManagedBy.SYSTEM,
        name=id_,
        currency="USD",
        period_start=T0,
        period_end=T1,
        invoice_at=T1,
        created_at=T0,
        updated_at=T0,
        parent_line_id=parent,
        quantity=Decimal(quantity) if quantity is not None else None,
    )


async def test_children_rated_twice_in_one_transaction_are_written_once() -> None:
    stored_child = line("old-child", parent="top")
    staged = StagedInvoices("inv", [line("top"), stored_child], {})
    # First rating: the stored child goes, a new one comes.
    await staged.delete_children("ns", ["top"], T1)
    await staged.update_lines([line("top", quantity="5")])
    await staged.insert_lines([line("child-1", parent="top", quantity="5")])
    # Second rating in the same transaction: child-1 was never written, so it is simply dropped.
    await staged.delete_children("ns", ["top"], T1)
    await staged.update_lines([line("top", quantity="7")])
    await staged.insert_lines([line("child-2", parent="top", quantity="7")])

    assert [(x.id, x.quantity) for x in staged.current_lines()] == [("top", Decimal(7)), ("child-2", Decimal(7))]
    writes = StagedWrites()
    writes.add(staged)
    assert writes.children_deleted == {T1: ["top", "top"]}  # the stored child is soft-deleted
    assert [(x.id, x.quantity) for x in writes.lines_updated] == [("top", Decimal(7))]
    assert [x.id for x in writes.lines_inserted] == ["child-2"]


async def test_a_child_a_new_rating_keeps_is_updated_not_deleted() -> None:
    """A rating again that takes over a stored detailed line under its ID (OpenMeter's
    DetailedLinesWithIDReuse) keeps it: updated in place, left out of the soft-delete."""
    staged = StagedInvoices("inv", [line("top"), line("child", parent="top", quantity="5")], {})
    await staged.delete_children("ns", ["top"], T1, keep=["child"])
    await staged.update_lines([line("top", quantity="7"), line("child", parent="top", quantity="7")])

    assert [(x.id, x.quantity) for x in staged.current_lines()] == [("top", Decimal(7)), ("child", Decimal(7))]
    writes = StagedWrites()
    writes.add(staged)
    assert writes.children_deleted == {T1: ["top"]} and writes.children_kept == {"child"}
    assert [(x.id, x.quantity) for x in writes.lines_updated] == [("top", Decimal(7)), ("child", Decimal(7))]
    assert writes.lines_inserted == []


async def test_a_line_inserted_then_updated_is_inserted_as_it_ends() -> None:
    staged = StagedInvoices("inv", [line("top")], {})
    await staged.insert_lines([line("child", parent="top", quantity="1")])
    await staged.update_lines([dataclasses.replace(line("child", parent="top"), quantity=Decimal(3))])
    assert staged.lines_updated == {}
    assert [(x.id, x.quantity) for x in staged.lines_inserted] == [("child", Decimal(3))]


async def test_billed_quantities_leave_out_the_invoice_itself() -> None:
    NOV_15, DEC_1 = datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    billed = {
        "period-a": {
            "inv": Billed(Decimal(4), started=False),
            "earlier": Billed(Decimal(10), started=False, latest_end=NOV_15),
            "other": Billed(Decimal("2.5"), started=True),
        },
        "period-b": {"inv": Billed(Decimal(1), started=False)},
        "period-c": {
            "inv": Billed(Decimal(1), started=True, latest_end=DEC_1),
            "later": Billed(Decimal(2), started=False, latest_end=NOV_15),
        },
    }
    staged = StagedInvoices("inv", [], billed)
    assert await staged.billed_quantities("ns", ["period-a", "period-b", "period-c", "period-d"], "inv") == {
        # The latest end of the others' lines, where one is known.
        "period-a": Billed(Decimal("12.5"), started=True, latest_end=NOV_15),
        # Only the invoice itself started it and ends latest: for the others, nothing that counts did.
        "period-c": Billed(Decimal(2), started=False, latest_end=NOV_15),
    }


async def test_anything_not_staged_is_refused_rather_than_guessed() -> None:
    staged = StagedInvoices("inv", [line("top")], {})
    with pytest.raises(UnstagedError):
        await staged.lines("ns", ["another-invoice"])
    with pytest.raises(UnstagedError):
        await staged.update_lines([line("top", invoice="another-invoice")])
    with pytest.raises(UnstagedError):
        await staged.get_gathering("ns", "customer", "USD")


class Sequences:
    """TransactionNumbers as the Postgres adapter's statements behave inside one transaction."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], int] = {}
        self.statements = 0

    async def next_number(self, namespace: str, scope: str) -> int:
        return await self.reserve(namespace, scope, 1)

    async def reserve(self, namespace: str, scope: str, count: int) -> int:
        self.statements += 1
        self.last[namespace, scope] = self.last.get((namespace, scope), 0) + count
        return self.last[namespace, scope] - count + 1

    async def give_back(self, namespace: str, scope: str, count: int) -> None:
        self.statements += 1
        self.last[namespace, scope] -= count


async def test_a_round_numbers_from_blocks_and_gives_back_what_it_did_not_use() -> None:
    sequences = Sequences()
    sequences.last["ns", "sandbox"] = 41
    numbers = RoundNumbers(sequences, block=3)
    taken = [await numbers.next_number("ns", "sandbox") for _ in range(4)]
    other = await numbers.next_number("ns", "custom")
    # Consecutive across blocks, each scope its own sequence.
    assert taken == [42, 43, 44, 45] and other == 1 and numbers.taken == 5
    await numbers.give_back()
    # Exactly the numbers used stay taken: the next ones follow without a gap.
    assert sequences.last == {("ns", "sandbox"): 45, ("ns", "custom"): 1}
    # Three blocks and two give-backs, not a statement per number.
    assert sequences.statements == 5
