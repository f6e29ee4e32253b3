"""The billing worker's batches: many invoices' state changes in one transaction per step.

Invoice day is tens of thousands of invoices, each going through a dozen states. Moving each
invoice alone costs a transaction (a locked read, the writes, a commit) per state per invoice, and
almost all of the time goes into those round trips. A batch instead takes the same step for all of
its invoices in one transaction: one locked read of the invoices, one read of their lines, then
each invoice's row of the table applied by the very code that moves a single invoice
(`InvoiceService._apply`), against a `StagedStore` that serves that invoice's rows from the batch's
reads and keeps its writes, which are then written for the whole batch in one statement each.

So each invoice's state change still commits atomically with its lines (the batch's transaction
holds all of them or none), a worker killed mid-batch leaves every invoice in its last committed
state, and the table decides per invoice exactly as before. Within one transaction an invoice takes
every row it can until a row would call an app that reaches outside Tally (such a call gets a
transaction of its own, as on the one-invoice path), so the sandbox's whole path from draft to paid
is one round. What a batch does not do alone (a
deletion's release of lines, a step that fails) goes to the one-invoice path, which also records
the failure and its backoff.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.billing.apps.models import App
from domain.billing.apps.port import InvoiceNumbers
from domain.billing.invoices import Billed, Invoice, InvoiceLine
from domain.billing.ports import BillingStore, TransactionNumbers


class StagedInvoices:
    """The part of InvoiceRepository one invoice's state change uses, over the batch's reads.

    Reads see the invoice's lines as the batch read them plus this invoice's own staged writes;
    writes are kept (`updated`, `lines_updated`, `lines_inserted`, `children_deleted`) for the
    batch to write at once."""

    def __init__(self, invoice_id: str, lines: Sequence[InvoiceLine], billed: Mapping[str, Mapping[str, Billed]]):
        self._invoice_id = invoice_id
        self._lines = list(lines)
        self._billed = billed
        self.updated: Invoice | None = None
        self.lines_updated: dict[str, InvoiceLine] = {}
        self.lines_inserted: list[InvoiceLine] = []
        self.children_deleted: list[str] = []
        self.children_kept: set[str] = set()
        self.children_deleted_at: datetime | None = None

    def _own(self, invoice_ids: Iterable[str]) -> None:
        if list(invoice_ids) != [self._invoice_id]:
            raise UnstagedError("lines of another invoice")

    async def lines(
        self, namespace: str, invoice_ids: Sequence[str], *, include_deleted: bool = False
    ) -> dict[str, list[InvoiceLine]]:
        self._own(invoice_ids)
        if include_deleted:
            raise UnstagedError("deleted lines")
        return {self._invoice_id: list(self._lines)}

    def current_lines(self) -> list[InvoiceLine]:
        """The invoice's live lines with this state change's writes applied."""
        return list(self._lines)

    async def lock_period_keys(self, namespace: str, period_keys: Sequence[str]) -> None:
        # The batch's transaction locked the period keys of all its invoices before reading `billed`.
        return None

    async def billed_quantities(
        self, namespace: str, period_keys: Sequence[str], exclude_invoice_id: str | None = None
    ) -> dict[str, Billed]:
        if exclude_invoice_id != self._invoice_id:
            raise UnstagedError("billed quantities for another invoice")
        out: dict[str, Billed] = {}
        for key in period_keys:
            others = [b for i, b in self._billed.get(key, {}).items() if i != self._invoice_id]
            if others:
                out[key] = functools.reduce(operator.add, others)
        return out

    async def delete_children(
        self, namespace: str, parent_ids: Sequence[str], at: datetime, keep: Collection[str] = ()
    ) -> None:
        parents, kept = set(parent_ids), set(keep)
        self._lines = [x for x in self._lines if x.parent_line_id not in parents or x.id in kept]
        # Children staged by an earlier state change of the same transaction are never written
        # (one kept is still to be inserted, as it is last).
        self.lines_inserted = [x for x in self.lines_inserted if x.parent_line_id not in parents or x.id in kept]
        self.children_deleted.extend(parent_ids)
        self.children_kept.update(kept)
        self.children_deleted_at = at

    async def update_lines(self, lines: Sequence[InvoiceLine]) -> None:
        by_id = {x.id: x for x in lines}
        if any(x.invoice_id != self._invoice_id for x in lines):
            raise UnstagedError("moving lines to another invoice")
        self._lines = [by_id.get(x.id, x) for x in self._lines]
        inserted = {x.id for x in self.lines_inserted}
        # A line staged for insertion is inserted as it is last; the others are updated.
        self.lines_inserted = [by_id.get(x.id, x) for x in self.lines_inserted]
        self.lines_updated.update({k: v for k, v in by_id.items() if k not in inserted})

    async def insert_lines(self, lines: Sequence[InvoiceLine]) -> None:
        self._lines.extend(lines)
        self.lines_inserted.extend(lines)

    async def update(self, invoice: Invoice) -> None:
        if invoice.id != self._invoice_id:
            raise UnstagedError("another invoice")
        self.updated = invoice

    def __getattr__(self, name: str) -> Any:
        # Anything else a state change might do (release lines, read other invoices) is the
        # one-invoice path's: the batch hands the invoice over instead of guessing.
        raise UnstagedError(name)


class StagedApps:
    """App reads, once per batch (every invoice of a namespace uses one or two apps)."""

    def __init__(self, tx: BillingStore) -> None:
        self._tx = tx
        self._found: dict[tuple[str, str], App | None] = {}

    async def get(self, namespace: str, app_id: str, *, lock: bool = False) -> App | None:
        if lock:
            raise UnstagedError("a locked app read")
        key = (namespace, app_id)
        if key not in self._found:
            self._found[key] = await self._tx.apps.get(namespace, app_id)
        return self._found[key]


class RoundNumbers:
    """The invoice numbers of one batch round, reserved `block` at a time: one statement for the
    round instead of one per issued invoice. What the round did not use goes back (`give_back`)
    before it commits; the sequence's row is locked from the first reservation to the commit, so
    the numbers stay gap-free. `taken` counts the numbers handed out."""

    def __init__(self, numbers: TransactionNumbers, block: int) -> None:
        self._numbers = numbers
        self._block = max(1, block)
        # (namespace, scope) -> (next number to hand out, end of the reserved block)
        self._blocks: dict[tuple[str, str], tuple[int, int]] = {}
        self.taken = 0

    async def next_number(self, namespace: str, scope: str) -> int:
        key = (namespace, scope)
        number, end = self._blocks.get(key, (0, 0))
        if number == end:
            # Continues the block before (if any) exactly: the row has stayed locked since.
            number = await self._numbers.reserve(namespace, scope, self._block)
            end = number + self._block
        self._blocks[key] = (number + 1, end)
        self.taken += 1
        return number

    async def give_back(self) -> None:
        for (namespace, scope), (number, end) in self._blocks.items():
            if end > number:
                await self._numbers.give_back(namespace, scope, end - number)
        self._blocks.clear()


@dataclass
class StagedStore:
    """The BillingStore one invoice's state change sees inside a batch (invoice numbers are taken
    in the batch's transaction, from the round's `RoundNumbers`: they are neither lines nor
    invoices to stage)."""

    invoices: StagedInvoices
    apps: StagedApps
    numbers: InvoiceNumbers

    def __getattr__(self, name: str) -> Any:
        raise UnstagedError(name)


class UnstagedError(RuntimeError):
    """A state change needed something a batch does not stage: it is redone on the one-invoice path."""


@dataclass
class StagedWrites:
    """The writes of a batch's state changes, gathered to be written with one statement each."""

    invoices: list[Invoice] = field(default_factory=list)
    lines_updated: list[InvoiceLine] = field(default_factory=list)
    lines_inserted: list[InvoiceLine] = field(default_factory=list)
    children_deleted: dict[datetime, list[str]] = field(default_factory=dict)
    # Detailed lines a new rating took over under their IDs: updated, not deleted.
    children_kept: set[str] = field(default_factory=set)

    def add(self, staged: StagedInvoices) -> None:
        if staged.updated is not None:
            self.invoices.append(staged.updated)
        self.lines_updated.extend(staged.lines_updated.values())
        self.lines_inserted.extend(staged.lines_inserted)
        if staged.children_deleted and staged.children_deleted_at is not None:
            self.children_deleted.setdefault(staged.children_deleted_at, []).extend(staged.children_deleted)
        self.children_kept.update(staged.children_kept)

    async def write(self, tx: BillingStore, namespace: str) -> None:
        """In the order one state change writes them: old detailed lines out, the rated lines, the
        new detailed lines, the invoices."""
        for at, parents in self.children_deleted.items():
            await tx.invoices.delete_children(namespace, parents, at, keep=self.children_kept)
        await tx.invoices.update_lines(self.lines_updated)
        await tx.invoices.insert_lines(self.lines_inserted)
        await tx.invoices.update_many(self.invoices)


@dataclass
class StagedRound:
    """What one batch transaction staged (`InvoiceService._stage`): the writes, and each invoice
    moved as it will be committed with its lines; the invoices it left out because their step
    failed (`left`), or because they share a period with an invoice moved before them (`waiting`),
    have nothing staged."""

    writes: StagedWrites = field(default_factory=StagedWrites)
    committed: dict[str, tuple[Invoice, list[InvoiceLine]]] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
