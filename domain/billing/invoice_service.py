"""InvoiceService: pending lines on the gathering invoice, invoice-now, and the lifecycle.

Every state change is one transaction: the invoice row is locked, the transition table
(`invoice_states`) decides, Tally's step runs (calculate, snapshot quantities, finalize, release
lines), the invoice and its lines are written, and the transaction commits. An app hook runs in
the transaction of the row that calls it, with the attempt recorded on the invoice (`AppAttempt`,
keyed by invoice and state) so the app can tell a repeated call from a new one.

Quantities: a usage line's quantity is the cumulative usage of its billing period
(`full_period_start` to the line's end) as of the snapshot's cutoff, minus what earlier invoices
still counting already billed under the same `period_key` (`pre_line_period_quantity`); the rating
engine rates the line on top of that, with cumulative rounding, so the invoices of one period add
up exactly to one invoice for the whole period. Usage that arrives after an invoice was issued is
billed by the next invoice of the same period key the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any, Final, cast

import structlog
from ulid import ULID

from domain.billing.apps.custom_invoicing import DRAFT_SYNCED_AT, FINALIZED_AT, CustomInvoicingApp
from domain.billing.apps.models import AppType
from domain.billing.apps.port import (
    InvoiceLineView,
    InvoiceView,
    InvoicingApp,
    IssueSeverity,
    SyncResult,
)
from domain.billing.apps.registry import Marketplace
from domain.billing.invoice_batch import RoundNumbers, StagedApps, StagedInvoices, StagedRound, StagedStore
from domain.billing.invoice_states import (
    FINAL_STATES,
    TABLE,
    Action,
    Actor,
    AppHook,
    Conditions,
    InvoiceStatus,
    State,
    Step,
    Transition,
    fire,
    transition,
)
from domain.billing.invoices import (
    BALANCE_OF,
    CORRECTION_KEY,
    ZERO,
    AppAttempt,
    Billed,
    BilledPart,
    CustomerSnapshot,
    Invoice,
    InvoiceLine,
    InvoiceListQuery,
    InvoiceNowInput,
    InvoiceType,
    InvoiceWithLines,
    LineDiscount,
    LineStatus,
    LineType,
    ManagedBy,
    OwedNotification,
    PartyUpdate,
    PendingLineInput,
    PendingLinesInput,
    StoredIssue,
    Totals,
    UsageRequest,
    VoidInput,
    VoidLineAction,
    by_namespace,
)
from domain.billing.models import DEFAULT_WORKFLOW, Alignment, EffectiveProfile, Supplier, Workflow, WorkflowPatch
from domain.billing.ports import BillingStore, CustomerLookup, UnitOfWork, UsageSource
from domain.billing.service import BillingProfileService
from domain.catalog import currencies
from domain.catalog.prices import Discounts, FlatPrice, allows_progressive_billing
from domain.catalog.ratecards import TaxConfig, merge_tax_configs
from domain.catalog.rating import (
    EXACT,
    DiscountReason,
    LineCategory,
    Period,
    RatingError,
    RatingInput,
    rate,
    rate_flat_units,
)
from domain.catalog.wire import decimal_text
from domain.customers.models import Customer
from domain.entitlements.recurrence import IsoDuration, Recurrence
from domain.errors import NotFoundError, ValidationError, Violations, again_on_conflict
from domain.records import evolve
from domain.wiretime import rfc3339

Clock = Callable[[], datetime]
# Told after an invoice was created (True) or changed (False): (namespace, invoice ID, created).
InvoiceListener = Callable[[str, str, bool], Awaitable[None]]
# (namespace, customer ID, subscription IDs): the sync's `bill_again`.
BillAgain = Callable[[str, str, Collection[str]], Awaitable[None]]

log = structlog.get_logger(__name__)

# The longest walk through the table is under 20 rows; beyond this something is wrong with it.
_MAX_STEPS = 50

# The billing worker's schedule (`Invoice.next_attempt_at`) of an invoice that waits for a person
# or an app, not for time: no pass claims it; the action or callback that moves it drives it and
# writes its schedule again.
UNSCHEDULED: Final = datetime(9999, 12, 31, tzinfo=UTC)

# OpenMeter's final invoice statuses (StandardInvoiceStatus.IsFinal): a customer whose invoices are
# all in these may be deleted. Uncollectible counts, though it may still be voided or paid.
_CUSTOMER_DELETE_FINAL_STATES: Final = frozenset({State.PAID, State.UNCOLLECTIBLE, State.VOIDED, State.DELETED})
# How many open invoices a refused customer delete names at most.
_CUSTOMER_DELETE_LISTED: Final = 100
# OpenMeter's code for a listed line that cannot be invoiced now (ErrInvoiceLinesNotBillable).
_LINES_NOT_BILLABLE: Final = "invoice_lines_not_billable"

# The states the billing worker moves on its own: it advances them, or marks them overdue.
WORKER_STATES: Final = frozenset(
    t.source for t in TABLE if t.action in (Action.ADVANCE, Action.PAYMENT_OVERDUE) and t.source not in FINAL_STATES
)


def wake_at(invoice: Invoice, now: datetime) -> datetime:
    """When the worker has something to do for an invoice the table cannot move now: the future
    time its guard waits for (collection, the draft period, the due date), else UNSCHEDULED (a
    time already past means it waits for something else: an approval, a fix of its issues)."""
    wait: datetime | None = None
    if invoice.state is State.DRAFT_WAITING_FOR_COLLECTION:
        wait = invoice.collection_at
    elif invoice.state is State.DRAFT_WAITING_AUTO_APPROVAL:
        wait = invoice.draft_until
    elif any(t.source is invoice.state and t.action is Action.PAYMENT_OVERDUE for t in TABLE):
        wait = invoice.due_at
    return wait if wait is not None and wait > now else UNSCHEDULED


# OpenMeter's number of a simulated invoice whose request gives none (SimulateInvoice).
SIMULATED_INVOICE_NUMBER: Final = "INV-SIMULATED"

_CALLBACK_STAMPS: Final = {Action.DRAFT_SYNCHRONIZED: DRAFT_SYNCED_AT, Action.ISSUING_SYNCHRONIZED: FINALIZED_AT}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(ULID())


def _closing_lines_sent_back(
    lines: Sequence[tuple[str | None, PendingLineInput]], current: Mapping[str, InvoiceLine]
) -> set[int]:
    """The indexes of the lines of a PUT that send one of the invoice's closing lines (`current`:
    its top-level lines by ID) back with its period, over no time."""
    return {
        i
        for i, (line_id, given) in enumerate(lines)
        if line_id is not None
        and (old := current.get(line_id)) is not None
        and old.period_start == old.period_end == given.period_start == given.period_end
    }


async def _top_lines(tx: BillingStore, namespace: str, invoice_id: str) -> dict[str, InvoiceLine]:
    """An invoice's top-level lines by ID."""
    return {x.id: x for x in (await tx.invoices.lines(namespace, [invoice_id]))[invoice_id] if x.parent_line_id is None}


def _validate_pending(data: PendingLinesInput, closing: Collection[int] = ()) -> None:
    """The rules of a pending line, for new lines and for those a PUT sends; `closing`: the
    indexes of lines that send a closing line back with its period, which lies over no time
    (docs/billing.md "Closing lines")."""
    v = Violations()
    if currencies.lookup(data.currency) is None:
        v.add("currency", f"unknown currency {data.currency!r}", "invalid_currency")
    if not data.lines:
        v.add("lines", "at least one line is required", "required")
    for i, line in enumerate(data.lines):
        at = f"lines[{i}]"
        if not line.name:
            v.add(f"{at}.name", "required", "required")
        if line.period_end < line.period_start or (line.period_end == line.period_start and i not in closing):
            v.add(f"{at}.period", "the period must end after it starts", "invalid_period")
        if line.price is None and line.per_unit_amount is None:
            v.add(f"{at}", "a line needs a price (usage) or a perUnitAmount (flat fee)", "required")
        if line.price is not None and line.per_unit_amount is None and not line.feature_key:
            v.add(f"{at}.featureKey", "a usage-based line needs a feature key", "required")
        if line.per_unit_amount is not None and line.per_unit_amount < 0:
            v.add(f"{at}.perUnitAmount", "must not be negative", "invalid")
        if line.quantity is not None and line.quantity < 0:
            v.add(f"{at}.quantity", "must not be negative", "invalid")
    v.raise_if_any()


class InvoiceService:
    def __init__(
        self,
        uow: UnitOfWork,
        profiles: BillingProfileService,
        customers: CustomerLookup,
        marketplace: Marketplace,
        usage: UsageSource,
        clock: Clock = _utcnow,
    ) -> None:
        self._uow = uow
        self._profiles = profiles
        self._customers = customers
        self._marketplace = marketplace
        self._usage = usage
        self._clock = clock
        # Invoice notifications (invoice.created / invoice.updated): called once per operation that
        # created or moved an invoice, after its transactions committed, with its state by then.
        # The write recorded the notification it owes (`Invoice.owed_notification`); one not told
        # here (the process died first, a listener failed) is told by `tell_owed_notifications`.
        self.listeners: list[InvoiceListener] = []
        # The subscription sync's `bill_again` (wired beside it): after a void put a subscription's
        # lines back to be billed again, makes them again at once (the billing worker's passes
        # would, but only for subscriptions live or ended lately).
        self.bill_again: BillAgain | None = None

    async def _told(self, namespace: str, invoice_id: str, created: bool) -> None:
        await self._tell(namespace, [invoice_id], created)

    async def _tell(
        self,
        namespace: str,
        invoice_ids: Sequence[str],
        created: bool,
        owed: Mapping[str, OwedNotification] | None = None,
    ) -> int:
        """Tells the listeners of each invoice's change, then clears what its writes owed: a
        notification owed for its creation is told as one (the creating call may have died before
        telling). Without listeners nothing is told nor cleared, so a process that sends no
        notifications (the CLI) leaves them to the billing worker of one that does. Returns how
        many invoices every listener heard."""
        if not self.listeners or not invoice_ids:
            return 0
        if owed is None:
            try:
                async with self._uow() as tx:
                    owed = await tx.invoices.owed_notifications(namespace, invoice_ids)
            except Exception:
                # The invoices are committed and owe their notifications: the caller's answer
                # stands, and the worker's pass tells them.
                log.exception("reading the invoice notifications owed failed", invoices=list(invoice_ids))
                return 0
        told: dict[str, datetime] = {}
        heard = 0
        for invoice_id in invoice_ids:
            record = owed.get(invoice_id)
            first = created or (record is not None and record.created)
            failed = False
            for listener in self.listeners:
                try:
                    await listener(namespace, invoice_id, first)
                except Exception:
                    # The invoice is committed; a listener's failure must not undo the caller's
                    # answer. What it owes stays recorded, and the worker's pass tells it again.
                    log.exception("invoice listener failed", invoice=invoice_id, created=first)
                    failed = True
            if failed:
                continue
            heard += 1
            if record is not None:
                told[invoice_id] = record.since
        if told:
            try:
                async with self._uow() as tx:
                    await tx.invoices.clear_owed_notifications(namespace, told)
                    await tx.commit()
            except Exception:
                # Told already: the worker's pass tells them once more (at least once, never lost).
                log.exception("clearing told invoice notifications failed", invoices=sorted(told))
        return heard

    async def tell_owed_notifications(self, settle: timedelta = timedelta(minutes=1), limit: int = 500) -> int:
        """The billing worker's repair: tells the notifications that writes older than `settle`
        owe and nobody told (a younger one may still be told by its own call), each claimed for
        another `settle` so that racing workers tell it once. How many."""
        if not self.listeners:
            return 0
        now = self._clock()
        async with self._uow() as tx:
            found = await tx.invoices.claim_owed_notifications(now - settle, now, limit)
            await tx.commit()
        by_namespace: dict[str, dict[str, OwedNotification]] = {}
        for namespace, invoice_id, record in found:
            by_namespace.setdefault(namespace, {})[invoice_id] = record
        told = 0
        for namespace, records in by_namespace.items():
            told += await self._tell(namespace, list(records), False, records)
        return told

    # --- reads --------------------------------------------------------------------------------

    async def get(
        self, namespace: str, invoice_id: str, *, include_deleted_lines: bool = False, live: bool = False
    ) -> InvoiceWithLines:
        """`live`: a gathering invoice as answered to a client, rated as of now (`_with_live_data`);
        otherwise as stored, for code that works on its lines."""
        async with self._uow() as tx:
            invoice = await tx.invoices.get(namespace, invoice_id)
            if invoice is None:
                raise NotFoundError("invoice", invoice_id, "invoice_not_found")
            lines = (await tx.invoices.lines(namespace, [invoice.id], include_deleted=include_deleted_lines))[
                invoice.id
            ]
            found = InvoiceWithLines(invoice, lines)
            if live:
                (found,) = await self._with_live_data(tx, namespace, [found])
        return found

    async def list_invoices(
        self, namespace: str, query: InvoiceListQuery, *, with_lines: bool = False, live: bool = False
    ) -> tuple[list[InvoiceWithLines], int]:
        """`live` as in `get`."""
        async with self._uow() as tx:
            invoices, total = await tx.invoices.list_invoices(namespace, query)
            wanted = [i.id for i in invoices if with_lines or (live and i.state is State.GATHERING)]
            # A live gathering invoice's totals come from its lines, read even when they are not answered.
            lines = await tx.invoices.lines(namespace, wanted) if wanted else {}
            found = [InvoiceWithLines(i, lines.get(i.id, [])) for i in invoices]
            if live:
                found = await self._with_live_data(tx, namespace, found)
        if not with_lines:
            found = [InvoiceWithLines(f.invoice, []) for f in found]
        return found, total

    async def _with_live_data(
        self, tx: BillingStore, namespace: str, found: Sequence[InvoiceWithLines]
    ) -> list[InvoiceWithLines]:
        """Gathering invoices as OpenMeter answers them (calculateGatheringInvoiceWithLiveData):
        what their lines come to now, each usage line's quantity read as of now (less what other
        invoices billed of its period) and every line rated by the code that bills, totals summed.
        Nothing is stored: a gathering invoice's stored lines stay unrated until invoiced."""
        gathering = [f for f in found if f.invoice.state is State.GATHERING and f.lines]
        if not gathering:
            return list(found)
        now = self._clock()
        live = {
            f.invoice.id: [x for x in f.lines if x.deleted_at is None and x.parent_line_id is None] for f in gathering
        }
        requests = {k: v for f in gathering for k, v in _usage_requests(f.invoice, live[f.invoice.id]).items()}
        # One read of what other invoices billed, and one of the event store for them all (with
        # the earlier parts' times for their own subjects, where those were others).
        keys = sorted({x.period_key for lines in live.values() for x in lines if x.period_key})
        billed = await tx.invoices.billed_quantities(namespace, keys) if keys else {}
        # A gathering invoice counts its customer's subjects now (a request's None): compared with
        # the parts' as they are, so a customer that kept its subjects reads nothing more.
        now_subjects: dict[str, tuple[str, ...] | None] = {}
        if any(b.parts for b in billed.values()):
            ids = sorted({r.customer_id for r in requests.values() if r.subjects is None})
            found_now = await self._customers.resolve(namespace, ids) if ids else {}
            now_subjects = {c.id: c.usage_subjects or None for c in found_now.values()}
        splits = _subject_splits([x for lines in live.values() for x in lines], requests, billed, now_subjects)
        wanted = {*requests.values(), *_split_reads(requests, splits)}
        quantities = await self._usage.quantities(namespace, list(wanted), now) if wanted else {}
        out: dict[str, InvoiceWithLines] = {}
        for f in gathering:
            snapshotted = _snapshotted(live[f.invoice.id], requests, quantities, dict(billed), splits, {}, now, now)
            rated, children = rate_lines(f.invoice.currency, snapshotted, now)
            shown = rated + children + [x for x in f.lines if x.deleted_at is not None]
            invoice = evolve(_with_totals(f.invoice, rated), quantity_snapshotted_at=now)
            out[f.invoice.id] = InvoiceWithLines(invoice, shown)
        return [out.get(f.invoice.id, f) for f in found]

    async def guard_customer_delete(self, namespace: str, customer: Customer) -> None:
        """A customer delete guard (CustomerService.delete_guards): OpenMeter's billing customer
        validator refuses (400) while the customer has a gathering invoice or a standard one not in
        a final state (paid, uncollectible, voided, deleted), naming each invoice."""
        open_states = [s for s in State if s not in _CUSTOMER_DELETE_FINAL_STATES]
        query = InvoiceListQuery(limit=_CUSTOMER_DELETE_LISTED, customers=(customer.id,), extended_statuses=open_states)
        open_invoices, _ = await self.list_invoices(namespace, query)
        if not open_invoices:
            return
        problems = [
            f"invoice {found.invoice.id} is still in gathering state"
            if found.invoice.state is State.GATHERING
            else f"invoice {found.invoice.id} is not in final state, please either delete the invoice or mark it uncollectible"
            for found in open_invoices
        ]
        raise ValidationError([], message="\n".join(problems))

    def conditions(self, invoice: Invoice, now: datetime | None = None) -> Conditions:
        """What the transition table's guards read for this invoice now."""
        now = now or self._clock()
        attempt = invoice.app_attempt
        waiting = attempt is not None and attempt.state is invoice.state and attempt.waiting
        return Conditions(
            auto_advance=invoice.workflow.auto_advance,
            collection_due=invoice.collection_at is None or now >= invoice.collection_at,
            draft_period_over=invoice.draft_until is None or now >= invoice.draft_until,
            critical_issues=any(i.severity is IssueSeverity.CRITICAL for i in invoice.validation_issues),
            draft_sync_pending=waiting and invoice.state is State.DRAFT_SYNCING,
            issuing_sync_pending=waiting and invoice.state is State.ISSUING_SYNCING,
        )

    # --- pending lines --------------------------------------------------------------------------

    async def create_pending_lines(
        self, namespace: str, customer_id_or_key: str, data: PendingLinesInput
    ) -> tuple[InvoiceWithLines, list[InvoiceLine], bool]:
        """Adds the lines to the customer's gathering invoice in the currency (made when missing).
        Returns the gathering invoice, the new lines, and whether the invoice was created."""
        _validate_pending(data)
        effective = await self._profiles.effective_profile(namespace, customer_id_or_key, with_customer=True)
        customer = effective.customer
        assert customer is not None
        # Another request may make the gathering invoice first: then add to that one.
        return await again_on_conflict(lambda: self._add_pending(namespace, customer, effective, data))

    async def _add_pending(
        self, namespace: str, customer: Customer, effective: EffectiveProfile, data: PendingLinesInput
    ) -> tuple[InvoiceWithLines, list[InvoiceLine], bool]:
        now = self._clock()
        async with self._uow() as tx:
            invoice = await tx.invoices.get_gathering(namespace, customer.id, data.currency, lock=True)
            created = invoice is None
            if invoice is None:
                invoice = new_gathering(namespace, customer, effective, data.currency, now)
                await tx.invoices.insert(invoice)
            lines = [self._pending_line(namespace, invoice, line, now) for line in data.lines]
            invoice, all_lines = await _add_gathering_lines(tx, invoice, lines, now)
            await tx.commit()
        return InvoiceWithLines(invoice, all_lines), lines, created

    @staticmethod
    def _pending_line(namespace: str, invoice: Invoice, data: PendingLineInput, now: datetime) -> InvoiceLine:
        line_id = _new_id()
        usage = data.per_unit_amount is None
        return InvoiceLine(
            id=line_id,
            namespace=namespace,
            invoice_id=invoice.id,
            type=LineType.USAGE_BASED if usage else LineType.FLAT_FEE,
            status=LineStatus.VALID,
            managed_by=ManagedBy.MANUAL,
            name=data.name,
            description=data.description,
            currency=invoice.currency,
            period_start=data.period_start,
            period_end=data.period_end,
            invoice_at=data.invoice_at,
            created_at=now,
            updated_at=now,
            full_period_start=data.period_start,
            full_period_end=data.period_end,
            # A manual line is its own billing period: its key is its ID (kept when it is split).
            period_key=f"line/{line_id}" if usage else None,
            feature_key=data.feature_key if usage else None,
            price=data.price if usage else None,
            rate_card_discounts=_with_correlation_ids(data.rate_card_discounts),
            per_unit_amount=data.per_unit_amount,
            quantity=None if usage else (data.quantity if data.quantity is not None else Decimal(1)),
            payment_term=None if usage else data.payment_term,
            tax_config=data.tax_config,
            metadata=dict(data.metadata),
        )

    # --- invoice now ---------------------------------------------------------------------------

    async def invoice_now(self, namespace: str, data: InvoiceNowInput) -> list[InvoiceWithLines]:
        """Standard invoices (one per currency) from the customer's lines due by `as_of`, advanced
        as far as the workflow lets them go. Nothing due: ValidationError, never an empty invoice."""
        out = []
        for invoice in await self._create_invoices(namespace, data):
            if self._may_move(invoice, self._clock()):
                # The next row calls an app that calls out: a transaction of its own.
                await self._drive(namespace, invoice.id, None)
            await self._told(namespace, invoice.id, True)
            out.append(await self.get(namespace, invoice.id))
        return out

    async def _create_invoices(self, namespace: str, data: InvoiceNowInput) -> list[Invoice]:
        """invoice-now's first transaction: the standard invoices, each made in the state its first
        advance leads to (up to the first state that waits, or the first call of an app that calls
        out), as OpenMeter's invoice creation advances an invoice until it is stable in the
        creating transaction: no committed state shows one in draft.created, its lines unrated. A
        failure of that advance (the usage store does not answer) rolls the whole of it back: the
        lines stay on the gathering invoice."""
        customer = await self._customers.get(namespace, data.customer)
        now = self._clock()
        as_of = data.as_of or now
        if as_of > now:
            raise ValidationError.single("asOf", "must not be in the future", "invalid")
        # To the second, as OpenMeter resolves billable periods (asOf truncated to
        # streaming.MinimumWindowSizeDuration): a line cut at asOf ends on a whole second.
        as_of = as_of.replace(microsecond=0)
        # The standard invoices follow the customer's profile and override as they are now, not
        # as they were when the gathering invoice was made (OpenMeter's InvoicePendingLines).
        effective = (await self._profiles.effective_profiles(namespace, [customer.id])).get(customer.id)
        if data.collection_aligned and effective is not None:
            as_of = collection_cutoff(effective.workflow, as_of)

        async def split(gathering: Invoice, lines: list[InvoiceLine]) -> GatheringSplit | None:
            return await self._split_now(gathering, lines, as_of, data, now, effective)

        usage = await self._usage_before_collecting(
            namespace, lambda tx: tx.invoices.gathering_for_customer(namespace, customer.id), split, now
        )
        created: list[Invoice] = []
        async with self._uow() as tx:
            gatherings = await tx.invoices.gathering_for_customer(namespace, customer.id, lock=True)
            if data.line_ids:
                # OpenMeter's rule: every listed line must exist and be invoicable as of asOf.
                pending = await tx.invoices.lines(namespace, [g.id for g in gatherings])
                known = {x.id: x for lines in pending.values() for x in lines if x.parent_line_id is None}
                v = Violations()
                for i, line_id in enumerate(data.line_ids):
                    line = known.get(line_id)
                    if line is None:
                        v.add(f"filters.lineIds[{i}]", "no such pending line for the customer", "not_found")
                    elif line.period_start >= as_of:
                        v.add(f"filters.lineIds[{i}]", "the line is not invoicable as of asOf", _LINES_NOT_BILLABLE)
                v.raise_if_any(_LINES_NOT_BILLABLE)
            invoiced: set[str] = set()
            splits: list[GatheringSplit] = []
            for gathering in gatherings:
                made = await self._invoice_gathering(tx, gathering, as_of, data, now, effective)
                if made is not None:
                    splits.append(made)
                    invoiced.update(x.id for x in made.moved)
            # The periods of all of them locked at once, in one order, as a batch round locks them:
            # each invoice's snapshot locking its own in turn could deadlock with a round holding
            # some of the keys of both (a customer billed in two currencies).
            keys = {x.period_key for made in splits for x in made.moved if x.period_key}
            await tx.invoices.lock_period_keys(namespace, sorted(keys))
            for made in splits:
                standard = made.standard
                created.append(
                    await self._apply_while_inside(tx, standard, self._first_advance(standard, now), now, usage)
                )
            # A listed line that is not billable as of asOf (a fee not due yet, a usage line that
            # cannot be split) refuses the whole call, as OpenMeter's ErrInvoiceLinesNotBillable:
            # nothing of this transaction is committed.
            v = Violations()
            for i, line_id in enumerate(data.line_ids):
                if line_id not in invoiced:
                    v.add(f"filters.lineIds[{i}]", "the line is not invoicable as of asOf", _LINES_NOT_BILLABLE)
            v.raise_if_any(_LINES_NOT_BILLABLE)
            if not created:
                raise ValidationError.coded(
                    "customerId", "the customer has no pending lines due by asOf", "invoice_create_no_lines"
                )
            await tx.commit()
        return created

    async def _invoice_gathering(
        self,
        tx: BillingStore,
        gathering: Invoice,
        as_of: datetime,
        data: InvoiceNowInput,
        now: datetime,
        effective: EffectiveProfile | None,
    ) -> GatheringSplit | None:
        """The standard invoice made from the gathering invoice's due lines (the split, as
        written); None when nothing is due."""
        fire(gathering.state, Action.INVOICE, self.conditions(gathering, now))
        lines = (await tx.invoices.lines(gathering.namespace, [gathering.id]))[gathering.id]
        split = await self._split_now(gathering, lines, as_of, data, now, effective)
        if split is None:
            return None
        await tx.invoices.insert(split.standard)
        await tx.invoices.update_lines(split.moved)
        if split.kept:
            await tx.invoices.insert_lines(split.kept)
        await tx.invoices.update(split.gathering)
        return split

    async def _split_now(
        self,
        gathering: Invoice,
        lines: Sequence[InvoiceLine],
        as_of: datetime,
        data: InvoiceNowInput,
        now: datetime,
        effective: EffectiveProfile | None,
    ) -> GatheringSplit | None:
        """invoice-now's split of a gathering invoice (`split_gathering`), progressive where the
        line's meter only grows."""
        # Which usage lines only progressive billing makes due now (cut at as_of, or ended but
        # not at their invoiceAt yet) could be billed so (their meters only grow).
        across = {
            x.feature_key
            for x in lines
            if x.type is LineType.USAGE_BASED
            and x.feature_key
            and x.period_start < as_of
            and (as_of < x.period_end or as_of < x.invoice_at)
        }
        growing = await self._usage.growing_features(gathering.namespace, across) if across else set()
        return split_gathering(
            gathering,
            lines,
            as_of,
            now,
            line_ids=data.line_ids,
            progressive_override=data.progressive_billing_override,
            effective=effective,
            growing=growing,
        )

    # --- user actions --------------------------------------------------------------------------

    async def act(self, namespace: str, invoice_id: str, action: Action) -> InvoiceWithLines:
        """approve, advance, retry, snapshot-quantities, delete, void: one row of the table, then
        the worker's advances as far as the invoice can go now."""
        await self._drive(namespace, invoice_id, action)
        await self._told(namespace, invoice_id, False)
        return await self.get(namespace, invoice_id)

    async def delete(self, namespace: str, invoice_id: str) -> None:
        """DELETE /invoices/{id}: a standard invoice takes the table's delete; a gathering
        invoice's pending lines are deleted, and with them the invoice, as OpenMeter's
        DeleteGatheringInvoice (the same as a PUT without lines: deleted as manual, so the
        subscription sync does not make them again). One deleted already: nothing to do."""
        async with self._uow() as tx:
            invoice = await tx.invoices.get(namespace, invoice_id, lock=True)
            if invoice is None:
                raise NotFoundError("invoice", invoice_id, "invoice_not_found")
            if invoice.state is State.GATHERING:
                if invoice.deleted_at is None:
                    await self._edit_gathering(tx, namespace, invoice, [])
                    await tx.commit()
                return
        await self.act(namespace, invoice_id, Action.DELETE)

    async def void(self, namespace: str, invoice_id: str, data: VoidInput) -> InvoiceWithLines:
        """Voids an issued (or unpaid) invoice, telling the invoicing app why. OpenMeter answers
        501 here; Tally keeps the reason on the invoice and does with each line what the request
        says (VoidLineAction: discarded, or billed again on the gathering invoice)."""
        if not data.reason.strip():
            raise ValidationError.single("reason", "required: say why the invoice is voided", "required")
        # The void's transaction may make the customer's gathering invoice for the lines billed
        # again; another request making it first is a conflict: then the void is tried again.
        await again_on_conflict(lambda: self._drive(namespace, invoice_id, Action.VOID, void=data))
        await self._told(namespace, invoice_id, False)
        found = await self.get(namespace, invoice_id)
        subscriptions = {
            x.subscription.subscription_id
            for x in found.lines
            if x.void_action is VoidLineAction.PENDING and x.subscription is not None and x.parent_line_id is None
        }
        if subscriptions and self.bill_again is not None:
            try:
                await self.bill_again(namespace, found.invoice.customer_id, subscriptions)
            except Exception:
                # The void stands; the billing worker's next pass syncs the subscriptions.
                log.exception("billing a voided invoice's subscription lines again failed", invoice_id=invoice_id)
        return found

    async def _gathering_or_new(
        self, tx: BillingStore, namespace: str, customer_id: str, currency: str, found: Invoice | None, now: datetime
    ) -> Invoice:
        """`found` (the customer's gathering invoice in the currency, read under its lock), or a new
        one stored in `tx`, with the profile that applies to the customer now."""
        if found is not None:
            return found
        effective = await self._profiles.effective_profile(namespace, customer_id, with_customer=True)
        assert effective.customer is not None
        made = new_gathering(namespace, effective.customer, effective, currency, now)
        await tx.invoices.insert(made)
        return made

    async def _void_lines(self, tx: BillingStore, invoice: Invoice, data: VoidInput, now: datetime) -> None:
        """In the void's transaction: each top-level line records what the void did with it, and
        the lines to bill again are copied onto the customer's gathering invoice in the currency."""
        lines = [
            x
            for x in (await tx.invoices.lines(invoice.namespace, [invoice.id]))[invoice.id]
            if x.parent_line_id is None and x.deleted_at is None
        ]
        ids = {x.id for x in lines}
        v = Violations()
        for i, line_id in enumerate(data.overrides):
            if line_id not in ids:
                v.add(f"overrides[{i}].lineId", f"{line_id} is not a line of invoice {invoice.id}", "not_found")
        override_at = {line_id: i for i, line_id in enumerate(data.overrides)}
        for line in lines:
            action = data.action_for(line.id)
            if action.next_invoice_at is not None and _made_by_the_sync(line):
                where = f"overrides[{override_at[line.id]}].action" if line.id in override_at else "action"
                assert line.subscription is not None
                v.add(
                    f"{where}.action.nextInvoiceAt",
                    f"line {line.id} is billed by subscription {line.subscription.subscription_id}, whose sync "
                    "makes it again at once, as its plan says: leave nextInvoiceAt out",
                    "unsupported",
                )
        v.raise_if_any()
        await tx.invoices.update_lines(
            [evolve(x, void_action=data.action_for(x.id).kind, updated_at=now) for x in lines]
        )
        # A subscription's item lines and balances are the sync's to make again (`bill_again`);
        # the others (manual lines, late-usage corrections) are copied back here.
        again = [x for x in lines if data.action_for(x.id).kind is VoidLineAction.PENDING and not _made_by_the_sync(x)]
        if not again:
            return
        found = await tx.invoices.get_gathering(invoice.namespace, invoice.customer_id, invoice.currency, lock=True)
        gathering = await self._gathering_or_new(
            tx, invoice.namespace, invoice.customer_id, invoice.currency, found, now
        )
        copies = [
            _copy_to_bill_again(x, gathering.id, data.action_for(x.id).next_invoice_at or now, invoice, now)
            for x in again
        ]
        await _add_gathering_lines(tx, gathering, copies, now)

    async def update_lines(
        self,
        namespace: str,
        invoice_id: str,
        lines: Sequence[tuple[str | None, PendingLineInput]],
        *,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        supplier: PartyUpdate | None = None,
        customer: PartyUpdate | None = None,
        workflow: WorkflowPatch | None = None,
    ) -> InvoiceWithLines:
        """PUT /invoices/{id} on a draft: its description and metadata become the ones given, the
        supplier's and customer's details those given (name, address, the supplier's tax ID: as
        OpenMeter's updateStandardInvoice; None: kept), its workflow the approval and payment
        settings given (`_workflow_updated`; None: kept), and its top-level lines become `lines` (a
        line with the ID of one of them replaces it, one without an ID or with another ID is added,
        the others are deleted); the invoice is rated again in the same transaction, and its
        quantities read at the next snapshot."""
        async with self._uow() as tx:
            invoice = await tx.invoices.get(namespace, invoice_id, lock=True)
            if invoice is None:
                raise NotFoundError("invoice", invoice_id, "invoice_not_found")
            if invoice.state is State.GATHERING and invoice.deleted_at is None:
                await self._edit_gathering(tx, namespace, invoice, lines)
                await tx.commit()
                # A gathering invoice never notifies, and its lines are collected by the worker.
                return await self.get(namespace, invoice_id)
            current = await _top_lines(tx, namespace, invoice.id)
            # An empty list is refused here too: a draft without lines is deleted, not emptied.
            closing = _closing_lines_sent_back(lines, current)
            _validate_pending(PendingLinesInput(invoice.currency, [x for _, x in lines]), closing)
            v = Violations()
            for location, party in (("supplier", supplier), ("customer", customer)):
                if party is not None:
                    party.validate(v, location)
            if workflow is not None:
                workflow.validate(v, "workflow.workflow")
            v.raise_if_any()
            now = self._clock()
            row = fire(invoice.state, Action.UPDATE, self.conditions(invoice, now))
            kept: list[InvoiceLine] = []
            added: list[InvoiceLine] = []
            for line_id, given in lines:
                made = self._pending_line(namespace, invoice, given, now)
                if line_id is None or line_id not in current:
                    # A new line; an ID that is not one of the invoice's is the client's own for it
                    # (OpenMeter's mergeStandardInvoiceLinesFromAPI), not stored.
                    added.append(made)
                    continue
                old = current[line_id]
                made = _with_what_the_body_omits(made, given, old)
                # A usage line of the same feature stays in its billing period (a price change is
                # rated on top of what the period billed); a fee that becomes a usage line, or a
                # line given another feature, is a new line with a billing period of its own.
                same_period = (
                    made.type is LineType.USAGE_BASED
                    and old.period_key is not None
                    and old.feature_key == made.feature_key
                )
                if same_period:
                    period_key = old.period_key
                    full_period = (
                        old.full_period_start or made.full_period_start,
                        old.full_period_end or made.full_period_end,
                    )
                else:
                    period_key = f"line/{_new_id()}" if made.type is LineType.USAGE_BASED else None
                    full_period = (made.full_period_start, made.full_period_end)
                # A line the user changed is the user's (OpenMeter's mergeLineFromInvoiceLineReplaceUpdate
                # makes it managedBy manual): the subscription sync leaves it as edited.
                edited = _as_edited(made, invoice.workflow.default_tax_config) != _as_edited(
                    old, invoice.workflow.default_tax_config
                )
                if made.type is LineType.USAGE_BASED and not edited:
                    # A usage line sent back as it was keeps its snapshot (OpenMeter merges the
                    # update into the stored line), so rating it again gives the same detailed
                    # lines, under their IDs, instead of none until the next snapshot.
                    made = evolve(
                        made,
                        quantity=old.quantity,
                        metered_quantity=old.metered_quantity,
                        pre_line_period_quantity=old.pre_line_period_quantity,
                        quantity_snapshotted_at=old.quantity_snapshotted_at,
                        period_started=old.period_started,
                        period_closed=old.period_closed,
                    )
                kept.append(
                    evolve(
                        made,
                        id=old.id,
                        created_at=old.created_at,
                        managed_by=ManagedBy.MANUAL if edited else old.managed_by,
                        period_key=period_key,
                        full_period_start=full_period[0],
                        full_period_end=full_period[1],
                        sync_key=old.sync_key,
                        subscription=old.subscription,
                        # The app's IDs of the line and its discounts stay (the rating keeps a
                        # discount's ID and the app's ID for it while the discount stays).
                        invoicing_external_id=old.invoicing_external_id,
                        discounts=old.discounts,
                    )
                )
            await _store_edited_lines(tx, namespace, current.values(), kept, added, now)
            # A replace, as OpenMeter's UpdateInvoice: no description clears it, no metadata is {}.
            invoice = evolve(invoice, description=description, metadata=dict(metadata or {}))
            if supplier is not None:
                invoice = evolve(invoice, supplier=_supplier_updated(invoice.supplier, supplier))
            if customer is not None:
                address = customer.address.as_dict() if customer.address is not None else {}
                invoice = evolve(
                    invoice, customer=evolve(invoice.customer, name=customer.name, billing_address=address)
                )
            if workflow is not None:
                # Before the row is applied: the draft is calculated (draftUntil, dueAt) and moves on
                # (manual or automatic approval) by the workflow it now has.
                invoice = evolve(invoice, workflow=_workflow_updated(invoice.workflow, workflow))
            await self._apply(tx, invoice, row, now)
            await tx.commit()
        await self._drive(namespace, invoice_id, None)
        await self._told(namespace, invoice_id, False)
        return await self.get(namespace, invoice_id)

    async def _edit_gathering(
        self,
        tx: BillingStore,
        namespace: str,
        invoice: Invoice,
        lines: Sequence[tuple[str | None, PendingLineInput]],
    ) -> None:
        """PUT /invoices/{id} on a gathering invoice, as OpenMeter's updateGatheringInvoice
        (openmeter/billing/httpdriver/invoice.go, invoiceline.go mergeGatheringInvoiceLinesFromAPI):
        only the lines change (its description and metadata are not the request's to set). A line
        with the ID of one of its lines replaces it and, when anything of it changed, becomes
        managedBy manual, so the subscription sync leaves it as the user made it; a line without
        an ID (or with another one) is a new manual line; a line left out is deleted, as manual,
        so the sync does not bring it back. No lines left: the invoice is deleted. Its period and
        collection time follow its lines (OpenMeter's CalculateGatheringInvoice)."""
        current = await _top_lines(tx, namespace, invoice.id)
        if lines:
            _validate_pending(
                PendingLinesInput(invoice.currency, [x for _, x in lines]), _closing_lines_sent_back(lines, current)
            )
        now = self._clock()
        kept: list[InvoiceLine] = []
        added: list[InvoiceLine] = []
        at_index: dict[str, int] = {}  # line ID: its index in the request, for errors
        v = Violations()
        for i, (line_id, given) in enumerate(lines):
            made = self._pending_line(namespace, invoice, given, now)
            old = current.get(line_id) if line_id is not None else None
            if old is None:
                # An ID that is not one of the invoice's is the client's own for a new line
                # (OpenMeter's mergeGatheringInvoiceLinesFromAPI), not stored.
                added.append(made)
                at_index[made.id] = i
                continue
            made = _with_what_the_body_omits(made, given, old)
            usage = made.type is LineType.USAGE_BASED
            # The rest of a period billed in part already (progressive billing) starts after its
            # full period does: its period cannot move, as OpenMeter refuses a period change of a
            # split line (ErrInvoiceLineNoPeriodChangeForSplitLine); it can be deleted.
            split = old.type is LineType.USAGE_BASED and old.full_period_start not in (None, old.period_start)
            if split and (made.period_start, made.period_end) != (old.period_start, old.period_end):
                v.add(
                    f"lines[{i}].period",
                    "the period of a line whose earlier part was invoiced already cannot change "
                    f"(it stays {old.period_start.isoformat()} to {old.period_end.isoformat()}); delete the line instead",
                    "invalid_period",
                )
                continue
            same_period = usage and old.period_key is not None and old.feature_key == made.feature_key
            merged = evolve(
                old,
                type=made.type,
                name=made.name,
                description=made.description,
                period_start=made.period_start,
                period_end=made.period_end,
                invoice_at=made.invoice_at,
                # A usage line not billed in part yet is billed over its new period; a line that
                # changes kind or feature bills a period of its own.
                full_period_start=old.full_period_start if split else made.full_period_start,
                full_period_end=made.full_period_end,
                period_key=old.period_key if same_period else made.period_key,
                feature_key=made.feature_key,
                price=made.price,
                per_unit_amount=made.per_unit_amount,
                quantity=made.quantity,
                payment_term=made.payment_term,
                tax_config=made.tax_config,
                rate_card_discounts=made.rate_card_discounts,
                metadata=made.metadata,
            )
            same_dates = (made.period_start, made.period_end) == (old.period_start, old.period_end)
            if not usage and old.type is LineType.FLAT_FEE and same_dates:
                # A fee whose period stays keeps the full period it was prorated against.
                merged = evolve(merged, full_period_start=old.full_period_start, full_period_end=old.full_period_end)
            if merged != old:
                merged = evolve(merged, managed_by=ManagedBy.MANUAL, updated_at=now)
            kept.append(merged)
            at_index[merged.id] = i
        v.raise_if_any()
        await self._check_billable(namespace, invoice, [(at_index[x.id], x) for x in (*kept, *added)])
        await _store_edited_lines(tx, namespace, current.values(), kept, added, now)
        remaining = [*kept, *added]
        if not remaining:
            await tx.invoices.update(evolve(invoice, deleted_at=now, updated_at=now))
        else:
            await tx.invoices.update(gathering_schedule(invoice, remaining, now))

    async def _check_billable(self, namespace: str, invoice: Invoice, lines: Sequence[tuple[int, InvoiceLine]]) -> None:
        """Each line of an edited gathering invoice must be invoiceable at its invoiceAt, as
        OpenMeter checks (service/gatheringinvoice.go checkIfGatheringLinesAreInvoicable, rating
        ResolveBillablePeriod), by the rule collection uses (split_gathering): a fee at any time;
        usage once its period has ended, or, when it can be billed in parts (progressive billing
        in the customer's workflow, a price that allows it, a meter that only grows), once its
        period has begun. A part of a period billed in part already needs a price billed in parts."""
        early: list[tuple[int, InvoiceLine]] = []
        split: list[tuple[int, InvoiceLine]] = []
        for i, line in lines:
            if line.type is not LineType.USAGE_BASED:
                continue
            if line.invoice_at.replace(microsecond=0) < line.period_end.replace(microsecond=0):
                early.append((i, line))
            if line.full_period_start not in (None, line.period_start):
                split.append((i, line))
        if not early and not split:
            return
        effective = await self._profiles.effective_profile(namespace, invoice.customer_id)
        progressive = effective.workflow.progressive_billing
        keys = {x.feature_key for _, x in early if x.feature_key}
        growing = await self._usage.growing_features(namespace, keys) if progressive and keys else set()
        v = Violations()
        for i, line in split:
            if line.price is None or not allows_progressive_billing(line.price):
                v.add(
                    f"lines[{i}].price",
                    "the line is the rest of a period invoiced in part already: its price must allow "
                    "progressive billing",
                    "invalid",
                )
        for i, line in early:
            in_parts = (
                progressive
                and line.price is not None
                and allows_progressive_billing(line.price)
                and line.feature_key in growing
            )
            if in_parts and line.invoice_at.replace(microsecond=0) > line.period_start.replace(microsecond=0):
                continue
            v.add(
                f"lines[{i}].invoiceAt",
                f"a usage line can be invoiced at {line.invoice_at.isoformat()} only when billed in parts "
                "(progressive billing, a meter that only grows) and after its period starts; otherwise "
                f"at or after its period's end, {line.period_end.isoformat()}",
                "not_billable",
            )
        v.raise_if_any()

    async def edit_subscription_lines(
        self,
        tx: BillingStore,
        namespace: str,
        invoice_id: str,
        updated: Sequence[InvoiceLine],
        removed: Sequence[str],
        now: datetime,
    ) -> bool:
        """The subscription sync's edit of a standard invoice's lines, in the sync's transaction:
        an invoice not sent yet (one the table still lets be updated) follows the subscription as
        its gathering invoice does, and is rated again (OpenMeter's invoice updater patches mutable
        standard invoices). An edit that takes every line off deletes the invoice, as OpenMeter's
        invoice updater deletes a mutable invoice the sync emptied. False, with nothing written,
        when the invoice can no longer be edited (what it bills stays). `settle_edited` moves it on
        once the transaction has committed."""
        invoice = await tx.invoices.get(namespace, invoice_id, lock=True)
        if invoice is None:
            return False
        top = {x.id for x in (await tx.invoices.lines(namespace, [invoice.id]))[invoice.id] if x.parent_line_id is None}
        action = Action.DELETE if top <= set(removed) else Action.UPDATE
        row = transition(invoice.state, action, self.conditions(invoice, now))
        if row is None:
            return False
        if removed:
            await tx.invoices.delete_lines(namespace, removed, now)
        if updated:
            await tx.invoices.update_lines(updated)
        await self._apply(tx, invoice, row, now)
        return True

    async def settle_edited(self, namespace: str, invoice_id: str) -> None:
        """After `edit_subscription_lines` committed: the invoice advances as far as it can again."""
        await self._drive(namespace, invoice_id, None)
        await self._told(namespace, invoice_id, False)

    async def app_callback(
        self,
        namespace: str,
        invoice_id: str,
        action: Action,
        *,
        invoice_number: str | None = None,
        invoicing_external_id: str | None = None,
        payment_external_id: str | None = None,
        sent_to_customer_at: datetime | None = None,
        line_external_ids: Sequence[tuple[str, str]] = (),
        line_discount_external_ids: Sequence[tuple[str, str]] = (),
    ) -> InvoiceWithLines:
        """The invoicing app's (custom invoicing's integrator's) report: draft/synchronized,
        issuing/synchronized (which may set the number, external IDs and when the invoice was sent
        to the customer; draft/synchronized may give the app's ID of each line and of each line
        discount, as (line or discount ID, external ID) pairs) or a payment status.
        Refused unless the invoice is waiting for exactly this (an out-of-order call changes
        nothing); then the invoice advances as far as it can."""
        if action.actor is not Actor.APP:
            raise ValueError(f"{action.value} is not an app's action")
        async with self._uow() as tx:
            invoice = await tx.invoices.get(namespace, invoice_id, lock=True)
            if invoice is None:
                raise NotFoundError("invoice", invoice_id, "invoice_not_found")
            stored = await tx.apps.get(namespace, invoice.invoicing_app_id)
            if stored is None or stored.type is not AppType.CUSTOM_INVOICING:
                # Only custom invoicing's integrator reports here: another app's invoice (the
                # sandbox's, say) is not its to sync or to mark paid.
                raise ValidationError([], message=f"invoice {invoice_id} is not managed by the custom invoicing app")
            now = self._clock()
            row = fire(invoice.state, action, self.conditions(invoice, now))
            attempt = invoice.app_attempt
            stamp = _CALLBACK_STAMPS.get(action)
            metadata = invoice.metadata
            if stamp is not None:
                # To the second, as Go's time.RFC3339 prints OpenMeter's stamps.
                metadata = {**metadata, stamp: rfc3339(now, timespec="seconds")}
            invoice = evolve(
                invoice,
                state=row.target,
                updated_at=now,
                metadata=metadata,
                number=invoice_number or invoice.number,
                invoicing_external_id=invoicing_external_id or invoice.invoicing_external_id,
                payment_external_id=payment_external_id or invoice.payment_external_id,
                sent_to_customer_at=sent_to_customer_at or invoice.sent_to_customer_at,
                # The wait is over: the callback is the app's answer to the recorded attempt.
                app_attempt=evolve(attempt, waiting=False) if attempt is not None else None,
            )
            if row.target is State.ISSUED and invoice.number is None:
                # The integrator may leave the number to us (OpenMeter: custom invoicing's
                # FinalizeStandardInvoice numbers it once the hook is done); taken in this
                # transaction, so the sequence stays gap-free.
                invoice = evolve(invoice, number=await self._final_number(tx, invoice))
            # The move owes invoice.updated in its own transaction, as every row `_apply` writes.
            invoice = _entered(invoice, now).owing(now)
            await tx.invoices.update(invoice)
            if line_external_ids or line_discount_external_ids:
                await tx.invoices.update_lines(
                    _with_external_ids(
                        await tx.invoices.lines(namespace, [invoice_id]),
                        invoice_id,
                        line_external_ids,
                        line_discount_external_ids,
                        now,
                    )
                )
            await tx.commit()
        await self._drive(namespace, invoice_id, None)
        await self._told(namespace, invoice_id, False)
        return await self.get(namespace, invoice_id)

    async def _final_number(self, tx: BillingStore, invoice: Invoice) -> str | None:
        """The number custom invoicing gives an invoice its integrator issued without one."""
        stored = await tx.apps.get(invoice.namespace, invoice.invoicing_app_id)
        if stored is None:
            raise NotFoundError("app", invoice.invoicing_app_id)
        app = self._marketplace.bind(stored, tx.numbers)
        if isinstance(app, CustomInvoicingApp):
            return await app.final_number(_view(invoice, ()))
        return None

    async def advance_due(self, namespace: str, invoice_id: str, usage: UsageSnapshot | None = None) -> bool:
        """The billing worker's step for one invoice: advance while the table allows it, reading
        quantities from `usage` when it holds them (`prefetch_usage`). Whether it moved."""
        moved = await self._drive(namespace, invoice_id, None, usage=usage)
        if moved:
            await self._told(namespace, invoice_id, False)
        return moved

    async def refresh_statistics(self, changed_rows: int) -> None:
        """After a pass wrote many invoices or lines at once (InvoiceRepository.refresh_statistics)."""
        async with self._uow() as tx:
            await tx.invoices.refresh_statistics(changed_rows)
            await tx.commit()

    async def prefetch_usage(self, invoices: Sequence[Invoice], cutoff: datetime) -> UsageSnapshot:
        """The usage the quantity snapshots of these invoices will ask for, read in
        bulk as of `cutoff`: one UsageSource call per namespace (one query per meter and period,
        grouped by customer) instead of one per invoice. Drafts whose collection is not due yet are
        left out."""
        quantities: dict[tuple[str, UsageRequest], Decimal] = {}
        for namespace, claimed in by_namespace(invoices).items():
            async with self._uow() as tx:
                # Read again: the caller's copies may be older than the invoices' last state change.
                found = await tx.invoices.get_many(namespace, [i.id for i in claimed])
                due = [i for i in found if i.collection_at is None or i.collection_at <= cutoff]
                lines = await tx.invoices.lines(namespace, [i.id for i in due])
            requests = [r for i in due for r in _usage_requests(i, lines[i.id]).values()]
            if requests:
                answered = await self._usage.quantities(namespace, requests, cutoff)
                quantities.update(((namespace, r), q) for r, q in answered.items())
        return UsageSnapshot(cutoff, quantities)

    async def _drive(
        self,
        namespace: str,
        invoice_id: str,
        first: Action | None,
        *,
        void: VoidInput | None = None,
        usage: UsageSnapshot | None = None,
    ) -> bool:
        """`first` (refused when the table does not allow it), then ADVANCE while it applies; one
        transaction per row. Whether any row applied."""
        action = first
        moved = False
        for _ in range(_MAX_STEPS):
            async with self._uow() as tx:
                invoice = await tx.invoices.get(namespace, invoice_id, lock=True)
                if invoice is None:
                    raise NotFoundError("invoice", invoice_id, "invoice_not_found")
                # A deleted invoice is in `deleted`, a final state: the table refuses every action.
                now = self._clock()
                conditions = self.conditions(invoice, now)
                if action is not None:
                    row = fire(invoice.state, action, conditions)
                    if action is Action.VOID and void is not None:
                        invoice = evolve(invoice, void_reason=void.reason.strip())
                        await self._void_lines(tx, invoice, void, now)
                else:
                    found = _next_advance(invoice, conditions, now)
                    if found is None:
                        # At rest: the worker looks again when time can move it, and not before.
                        resting = _at_rest(invoice, now)
                        if resting is not invoice:
                            await tx.invoices.update(resting)
                            await tx.commit()
                        return moved
                    row = found
                invoice = await self._apply(tx, invoice, row, now, usage, settle=True)
                await tx.commit()
            action = None
            moved = True
            if invoice.state is State.DELETED or _next_advance(invoice, self.conditions(invoice, now), now) is None:
                # Settled in the transaction that moved it (`_apply`): no transaction to find that out.
                return moved
        raise RuntimeError(f"invoice {invoice_id} did not settle in {_MAX_STEPS} steps")

    async def _apply(
        self,
        tx: BillingStore,
        invoice: Invoice,
        row: Transition,
        now: datetime,
        usage: UsageSnapshot | None = None,
        *,
        settle: bool = False,
    ) -> Invoice:
        """One row: Tally's step, the state change with its timestamps, then the app's hook. With
        `settle`, an invoice the table cannot move further now gets its rest schedule (`wake_at`) in
        the same write, sparing `_drive` a transaction that would only find that out."""
        lines: list[InvoiceLine] = []
        if row.hook is not None or row.step in _STEPS_WITH_LINES:
            lines = (await tx.invoices.lines(invoice.namespace, [invoice.id]))[invoice.id]
        stored = lines
        if row.step is Step.SNAPSHOT_QUANTITIES:
            lines, cutoff = await self._snapshot(tx, invoice, lines, now, usage)
            invoice = evolve(invoice, quantity_snapshotted_at=cutoff)
        if row.step in (Step.CALCULATE, Step.SNAPSHOT_QUANTITIES):
            lines = await self._calculate(tx, invoice, lines, now, stored)
            invoice = _with_line_dates(_with_totals(invoice, lines), lines)
        if row.step is Step.RELEASE_LINES:
            await self._release(tx, invoice, lines, now)
            invoice = evolve(invoice, totals=Totals())
        invoice = _entered(evolve(invoice, state=row.target, updated_at=now), now).owing(now)
        if row.hook is not None:
            invoice = await self._call_app(tx, invoice, row, lines, now)
        if row.target is State.DELETED:
            invoice = evolve(invoice, deleted_at=now)
        settled = row.target is not State.DELETED and _next_advance(invoice, self.conditions(invoice, now), now) is None
        if settle and settled:
            invoice = _at_rest(invoice, now)
        await tx.invoices.update(invoice)
        return invoice

    async def _call_app(
        self, tx: BillingStore, invoice: Invoice, row: Transition, lines: Sequence[InvoiceLine], now: datetime
    ) -> Invoice:
        stored = await tx.apps.get(invoice.namespace, invoice.invoicing_app_id)
        if stored is None:
            raise NotFoundError("app", invoice.invoicing_app_id)
        app: InvoicingApp = self._marketplace.bind(stored, tx.numbers)
        assert row.hook is not None
        attempt = AppAttempt(row.hook.value, invoice.state, f"{invoice.id}/{invoice.state.value}", now)
        view = _view(invoice, lines)
        waiting = False
        match row.hook:
            case AppHook.VALIDATE:
                issues = await app.validate_invoice(view)
                invoice = evolve(
                    invoice,
                    validation_issues=tuple(
                        StoredIssue(_new_id(), i.severity, i.code, i.message, stored.type.value, i.field)
                        for i in issues
                    ),
                )
            case AppHook.SYNC_DRAFT:
                draft = await app.sync_draft(view)
                waiting = draft.result is SyncResult.WAITING
                invoice = evolve(
                    invoice, invoicing_external_id=draft.invoicing_external_id or invoice.invoicing_external_id
                )
            case AppHook.SYNC_ISSUING:
                issuing = await app.sync_issuing(view)
                waiting = issuing.result is SyncResult.WAITING
                invoice = evolve(
                    invoice,
                    number=issuing.invoice_number or invoice.number,
                    invoicing_external_id=issuing.invoicing_external_id or invoice.invoicing_external_id,
                    payment_external_id=issuing.payment_external_id or invoice.payment_external_id,
                    sent_to_customer_at=(now if issuing.sent_now else issuing.sent_to_customer_at)
                    or invoice.sent_to_customer_at,
                )
            case AppHook.COLLECT_PAYMENT:
                payment = await app.collect_payment(view)
                invoice = evolve(
                    invoice, payment_external_id=payment.payment_external_id or invoice.payment_external_id
                )
                attempt = evolve(attempt, finished_at=now)
                invoice = evolve(invoice, app_attempt=attempt)
                if payment.outcome is not None:
                    # The payment result is the app's own action, fired in the same transaction.
                    result = fire(invoice.state, payment.outcome, self.conditions(invoice, now))
                    invoice = _entered(evolve(invoice, state=result.target), now)
                return invoice
            case AppHook.DELETE:
                await app.delete_invoice(view)
            case AppHook.VOID:
                await app.void_invoice(view, invoice.void_reason)
        return evolve(invoice, app_attempt=evolve(attempt, finished_at=now, waiting=waiting))

    # --- the billing worker's bookkeeping ---------------------------------------------------

    async def claim_due(self, now: datetime, limit: int, lease_until: datetime) -> list[Invoice]:
        """Standard invoices the worker can move now, leased to the caller until `lease_until`:
        claimed with SKIP LOCKED and their schedule moved to the lease's end in one transaction, so
        racing workers take different invoices, and one killed mid-advance leaves its invoices to
        the next worker once the lease ends (each state change being its own transaction, nothing
        is half-done)."""
        async with self._uow() as tx:
            found = await tx.invoices.claim(sorted(WORKER_STATES), now, limit)
            await _lease(tx, found, lease_until)
            await tx.commit()
        return found

    async def claim_gathering_due(self, now: datetime, limit: int, lease_until: datetime) -> list[Invoice]:
        """Gathering invoices whose earliest line is due, leased like `claim_due`."""
        async with self._uow() as tx:
            found = await tx.invoices.claim_gathering_due(now, limit)
            await _lease(tx, found, lease_until)
            await tx.commit()
        return found

    async def collect(self, gathering: Invoice, now: datetime) -> list[str]:
        """The worker's collection of a gathering invoice: the customer's lines due by now become
        standard invoices, made advanced as `_create_invoices` makes them (progressive billing is
        for an explicit invoice-now, not for this); the caller advances them on. Nothing due
        (another worker was first): []. A failure leaves the lines on the gathering invoice."""
        data = InvoiceNowInput(
            customer=gathering.customer.id, as_of=now, progressive_billing_override=False, collection_aligned=True
        )
        try:
            made = [i.id for i in await self._create_invoices(gathering.namespace, data)]
        except ValidationError as exc:
            if any(v.code == "no_invoicable_lines" for v in exc.violations):
                return []
            raise
        await self._tell(gathering.namespace, made, True)
        return made

    async def prefetch_collection_usage(self, gatherings: Sequence[Invoice], now: datetime) -> UsageSnapshot:
        """The usage the first advance of the invoices `collect_batch` will make of these gathering
        invoices reads (`_usage_before_collecting`): one UsageSource call per namespace for the
        whole claim, however many parts `collect_batch` takes it in. What a failed read should have
        held is left out: each of those invoices reads its own."""
        quantities: dict[tuple[str, UsageRequest], Decimal] = {}
        for namespace, batch in by_namespace(gatherings).items():
            try:
                split = await self._collection_split(namespace, batch, now)
            except Exception as exc:
                log.warning("reading a collection's profiles failed", error=repr(exc))
                continue
            usage = await self._usage_before_collecting(namespace, _reading(namespace, batch), split, now)
            if usage is not None:
                quantities.update(usage.quantities)
        return UsageSnapshot(now, quantities)

    async def _collection_split(
        self, namespace: str, gatherings: Sequence[Invoice], now: datetime
    ) -> Callable[[Invoice, list[InvoiceLine]], Awaitable[GatheringSplit | None]]:
        """The worker's split of these gathering invoices by now: no progressive split (that is for
        an explicit invoice-now, as in `collect`), the lines due by the collection's cutoff (the
        latest anchor, when anchored), on each customer's effective profile as it is now."""
        profiles = await self._profiles.effective_profiles(namespace, [g.customer.id for g in gatherings])

        async def split(g: Invoice, lines: list[InvoiceLine]) -> GatheringSplit | None:
            effective = profiles.get(g.customer.id)
            cutoff = collection_cutoff(effective.workflow if effective is not None else g.workflow, now)
            return split_gathering(g, lines, cutoff, now, progressive_override=False, effective=effective)

        return split

    async def collect_batch(
        self, namespace: str, gatherings: Sequence[Invoice], now: datetime, usage: UsageSnapshot | None = None
    ) -> CollectedBatch:
        """`collect` for many gathering invoices of one namespace in one transaction: one locked
        read of the invoices, one of their lines, the same split (`split_gathering`), the new
        invoices' first advance staged as a batch round stages it (`_stage`), and one write each of
        the new invoices, the moved lines, the remainders, the gathering invoices and what the
        advance changed. Their usage is read before the transaction (`usage`, from
        `prefetch_collection_usage`, or else read here). A gathering invoice whose new invoice's
        advance failed (or shares a period with another of the batch) is left out of the
        transaction, its lines where they were; it, and every one if the transaction fails, is for
        `collect`, one at a time."""
        made: dict[str, Invoice] = {}
        left: set[str] = set()
        try:
            split = await self._collection_split(namespace, gatherings, now)
            if usage is None:
                usage = await self._usage_before_collecting(namespace, _reading(namespace, gatherings), split, now)
            async with self._uow() as tx:
                found = await tx.invoices.get_many(namespace, [g.id for g in gatherings], lock=True)
                live = [
                    g
                    for g in found
                    if g.deleted_at is None and transition(g.state, Action.INVOICE, self.conditions(g, now)) is not None
                ]
                lines = await tx.invoices.lines(namespace, [g.id for g in live])
                splits = [(g.id, await split(g, lines[g.id])) for g in live]
                done = [(gathering_id, made) for gathering_id, made in splits if made is not None]
                # No committed state shows a new invoice unrated: it is made in the state its first
                # advance leads to, up to the first state that waits (as OpenMeter's invoice
                # creation advances it until it is stable, in the creating transaction).
                staged = await self._stage(
                    tx,
                    namespace,
                    [(x.standard, self._first_advance(x.standard, now), x.moved) for _, x in done],
                    now,
                    usage,
                )
                left = {g for g, x in done if x.standard.id in staged.left or x.standard.id in staged.waiting}
                done = [(g, x) for g, x in done if g not in left]
                # Each new invoice is inserted as its advance left it and each moved line written
                # once, as rated: the advance's writes of the same rows are taken out of its own.
                writes = staged.writes
                advanced = {i.id: i for i in writes.invoices}
                rated = {x.id: x for x in writes.lines_updated}
                new_ids = {x.standard.id for _, x in done}
                moved = [line for _, x in done for line in x.moved]
                moved_ids = {x.id for x in moved}
                writes.invoices = [i for i in writes.invoices if i.id not in new_ids]
                writes.lines_updated = [x for x in writes.lines_updated if x.id not in moved_ids]
                await tx.invoices.insert_many([advanced.get(x.standard.id, x.standard) for _, x in done])
                await tx.invoices.update_lines([rated.get(x.id, x) for x in moved])
                await tx.invoices.insert_lines([line for _, x in done for line in x.kept])
                await tx.invoices.update_many([x.gathering for _, x in done])
                await writes.write(tx, namespace)
                await tx.commit()
            made = {g: staged.committed[x.standard.id][0] for g, x in done}
        except Exception as exc:
            log.warning("collecting a batch failed; collecting its invoices one by one", error=repr(exc))
            return CollectedBatch({}, list(gatherings))
        await self._tell(namespace, [i.id for i in made.values()], True)
        return CollectedBatch(
            {g: [i.id] for g, i in made.items()},
            [g for g in gatherings if g.id in left],
            [i.id for i in made.values() if self._may_move(i, now)],
        )

    async def _usage_before_collecting(
        self,
        namespace: str,
        gatherings: Callable[[BillingStore], Awaitable[list[Invoice]]],
        split: Callable[[Invoice, list[InvoiceLine]], Awaitable[GatheringSplit | None]],
        cutoff: datetime,
    ) -> UsageSnapshot | None:
        """The usage the first advance of a collection's new invoices will read, read before the
        collection's transaction, so that no lock is held while the usage store answers: the
        gathering invoices and their lines read without locks and split as the collection will
        split them. A split that comes out otherwise under the lock (a line changed meanwhile) asks
        for usage this does not hold, and its invoice reads its own. None if the read failed: each
        invoice then reads its own, and fails on its own."""
        try:
            async with self._uow() as tx:
                found = await gatherings(tx)
                lines = await tx.invoices.lines(namespace, [g.id for g in found])
            requests: list[UsageRequest] = []
            for g in found:
                made = await split(g, lines[g.id]) if g.deleted_at is None else None
                if made is not None and (made.standard.collection_at is None or made.standard.collection_at <= cutoff):
                    requests.extend(_usage_requests(made.standard, made.moved).values())
            quantities = await self._usage.quantities(namespace, requests, cutoff) if requests else {}
        except Exception as exc:
            log.warning("reading a collection's usage failed", error=repr(exc))
            return None
        return UsageSnapshot(cutoff, {(namespace, r): q for r, q in quantities.items()})

    def _first_advance(self, invoice: Invoice, now: datetime) -> Transition:
        """A new standard invoice's first row: draft.created is left at once, its lines rated."""
        return fire(invoice.state, Action.ADVANCE, self.conditions(invoice, now))

    def _may_move(self, invoice: Invoice, now: datetime) -> bool:
        """Whether the worker's advance can move the invoice now (an app that calls out is next)."""
        return (
            invoice.state is not State.DELETED
            and _next_advance(invoice, self.conditions(invoice, now), now) is not None
        )

    async def advance_batch(
        self, namespace: str, invoice_ids: Sequence[str], usage: UsageSnapshot | None = None
    ) -> AdvancedBatch:
        """`advance_due` for many invoices of one namespace: each round is one transaction in which
        every invoice of the batch that can move takes its next row of the table (module
        invoice_batch). Invoices a round cannot move on its own (a step failed, or it is not one a
        batch stages) are returned as `handed_over`, untouched by that round, for `advance_due`."""
        moving = list(dict.fromkeys(invoice_ids))
        moved: set[str] = set()
        handed_over: list[str] = []
        written: dict[str, tuple[Invoice, list[InvoiceLine]]] = {}
        for _ in range(_MAX_STEPS):
            if not moving:
                break
            try:
                moving = await self._advance_round(namespace, moving, usage, moved, handed_over, written)
            except Exception as exc:
                # The round's transaction is gone: nothing of it was written.
                log.warning("advancing a batch failed; advancing its invoices one by one", error=repr(exc))
                handed_over.extend(moving)
                moving = []
        handed_over.extend(moving)
        await self._tell(namespace, sorted(moved), False)
        return AdvancedBatch(sorted(moved), list(dict.fromkeys(handed_over)))

    async def _advance_round(
        self,
        namespace: str,
        ids: list[str],
        usage: UsageSnapshot | None,
        moved: set[str],
        handed_over: list[str],
        written: dict[str, tuple[Invoice, list[InvoiceLine]]],
    ) -> list[str]:
        """One transaction of `advance_batch`; the invoices that may move further.

        `written` holds each invoice and its lines as the previous round committed them. An invoice
        read back (under its lock) exactly as written was changed by nobody since, and neither were
        its lines: every write of a standard invoice's lines (a line edit, an app's callback, a
        deletion) changes the invoice in the same transaction. Its lines are then not read again."""
        resting: list[Invoice] = []
        async with self._uow() as tx:
            now = self._clock()
            steps: list[tuple[Invoice, Transition]] = []
            unchanged: set[str] = set()
            for invoice in await tx.invoices.get_many(namespace, ids, lock=True):
                known = written.get(invoice.id)
                if known is not None and known[0] == invoice:
                    unchanged.add(invoice.id)
                row = _next_advance(invoice, self.conditions(invoice, now), now)
                if row is None:
                    rest = _at_rest(invoice, now)
                    if rest is not invoice:
                        resting.append(rest)
                elif row.step is Step.RELEASE_LINES or row.hook is AppHook.DELETE:
                    handed_over.append(invoice.id)
                else:
                    steps.append((invoice, row))
            lines: dict[str, list[InvoiceLine]] = {}
            unread: list[str] = []
            for invoice, _row in steps:
                if invoice.id in unchanged:
                    lines[invoice.id] = written[invoice.id][1]
                else:
                    unread.append(invoice.id)
            lines.update(await tx.invoices.lines(namespace, unread))
            staged = await self._stage(tx, namespace, [(i, row, lines[i.id]) for i, row in steps], now, usage)
            handed_over.extend(staged.left)
            staged.writes.invoices.extend(resting)
            await staged.writes.write(tx, namespace)
            await tx.commit()
        written.update(staged.committed)
        for invoice_id in handed_over:
            written.pop(invoice_id, None)
        moved.update(staged.committed)
        return staged.waiting + [
            i.id
            for i, _ in staged.committed.values()
            if i.state is not State.DELETED and _next_advance(i, self.conditions(i, now), now) is not None
        ]

    async def _stage(
        self,
        tx: BillingStore,
        namespace: str,
        steps: Sequence[tuple[Invoice, Transition, list[InvoiceLine]]],
        now: datetime,
        usage: UsageSnapshot | None,
    ) -> StagedRound:
        """Each invoice's `row` and the rows after it that stay inside Tally, staged in `tx` (the
        batch's reads, every write kept in `StagedRound.writes` for the caller to write). An
        invoice whose step failed is `left` out, one sharing a period with an invoice before it is
        `waiting`: neither has anything staged."""
        out = StagedRound()
        # A quantity snapshot subtracts what other invoices billed of the same periods; two
        # invoices of one batch sharing a period move in successive rounds, as they would one
        # after the other.
        period_keys: set[str] = set()
        taken: list[tuple[Invoice, Transition, list[InvoiceLine]]] = []
        for invoice, row, lines in steps:
            keys = {x.period_key for x in lines if x.period_key and x.parent_line_id is None}
            if keys & period_keys:
                out.waiting.append(invoice.id)
                continue
            period_keys |= keys
            taken.append((invoice, row, lines))
        # Parts of these periods on invoices outside the batch may be snapshotted at the same time.
        await tx.invoices.lock_period_keys(namespace, sorted(period_keys))
        billed = await tx.invoices.billed_quantities_by_invoice(namespace, sorted(period_keys))
        apps = StagedApps(tx)
        # Each invoice of the round issues at most once in it: a block of that many numbers.
        numbers = RoundNumbers(tx.numbers, block=len(taken))
        for invoice, row, lines in taken:
            staged = StagedInvoices(invoice.id, lines, billed)
            numbered = numbers.taken
            try:
                # The staged store is the part of a BillingStore a worker's state change uses.
                store = cast(BillingStore, StagedStore(staged, apps, numbers))
                after = await self._apply_while_inside(store, invoice, row, now, usage)
            except Exception as exc:
                if numbers.taken != numbered:
                    # It failed after taking an invoice number: dropping only its writes would
                    # leave a gap in the sequence. The whole round rolls back instead, and its
                    # invoices are moved one by one.
                    raise
                # This invoice's staged writes are dropped; the one-invoice path redoes the row
                # in its own transaction and records a failure and its backoff if it fails again.
                log.info("an invoice left its batch", invoice=invoice.id, error=repr(exc))
                out.left.append(invoice.id)
                continue
            out.writes.add(staged)
            out.committed[invoice.id] = (after, staged.current_lines())
        await numbers.give_back()
        return out

    async def _apply_while_inside(
        self, tx: BillingStore, invoice: Invoice, row: Transition, now: datetime, usage: UsageSnapshot | None
    ) -> Invoice:
        """`row`, then the worker's next rows in the same transaction for as long as nothing on the
        way leaves Tally: an app that calls out (`InvoicingApp.calls_out`) gets a transaction per
        call, as does anything the batch hands to the one-invoice path. Each state change is whole
        in the transaction; a crash before the commit leaves the invoice where it was."""
        while True:
            invoice = await self._apply(tx, invoice, row, now, usage, settle=True)
            if invoice.state is State.DELETED or (row.hook is not None and await self._calls_out(tx, invoice)):
                return invoice
            following = _next_advance(invoice, self.conditions(invoice, now), now)
            if (
                following is None
                or following.step is Step.RELEASE_LINES
                or following.hook is AppHook.DELETE
                or (following.hook is not None and await self._calls_out(tx, invoice))
            ):
                return invoice
            row = following

    async def _calls_out(self, tx: BillingStore, invoice: Invoice) -> bool:
        stored = await tx.apps.get(invoice.namespace, invoice.invoicing_app_id)
        return stored is None or self._marketplace.bind(stored).calls_out

    async def bill_late_usage(self, ended_within: timedelta) -> int:
        """Late usage: for every usage period billed by issued invoices and ended within
        `ended_within` before the last late-usage read (none yet: every one), or billed (in part)
        by an invoice issued within it (a draft may wait for
        approval longer than that after its period ended), the period's cumulative usage as stored now is compared with what was
        billed; where usage arrived after the invoice was issued, a correction line for the same
        period (same period key, the old service period, due now) goes on the customer's gathering
        invoice. Its quantity snapshot bills exactly the difference (cumulative minus already
        billed), rated on top of what was billed. Usage is read in bulk, one call per namespace.
        Late usage is that of the subjects the period was billed for: those the invoice of the
        period's latest billed line copied from its customer (as every usage line reads its
        invoice's copy), not the customer's now; a subject the customer took later did not count
        then, so its usage of the period is not late. A period billed in parts whose invoices
        copied other subjects counts each part's time for that part's own (`_other_subject_parts`),
        as the correction's snapshot does. The correction keeps the latest part's subjects
        (`usage_subjects`), for the invoice it is billed on copies the customer as it is then.
        Returns how many correction lines were made."""
        now = self._clock()
        async with self._uow() as tx:
            # The window runs back from the last read that finished, not from now: after a stop
            # longer than the window (the worker down), the periods that left it meanwhile are
            # read once more, and the usage stored for them while nobody read is billed. No read
            # yet (a new database): every issued period.
            last = await tx.invoices.late_usage_read_at()
            found = await tx.invoices.issued_usage_lines(None if last is None else min(now, last) - ended_within)
        periods: dict[tuple[str, str], list[tuple[InvoiceLine, str, tuple[str, ...]]]] = {}
        for line, customer_id, copied in found:
            if not _correctable(line):
                continue
            periods.setdefault((line.namespace, line.period_key or ""), []).append((line, customer_id, copied))
        # A deleted customer is not billed again (OpenMeter deletes a customer only once every
        # invoice of it is final, and bills nothing after): its periods are left out before the
        # read, so its subjects, which a live customer may have taken since, count for no one else.
        live: dict[str, Collection[str]] = {}
        for namespace in {namespace for namespace, _ in periods}:
            ids = sorted(
                {customer_id for (ns, _), parts in periods.items() if ns == namespace for _, customer_id, _ in parts}
            )
            live[namespace] = {c.id for c in (await self._customers.resolve(namespace, ids)).values()}
        wanted: dict[str, list[tuple[UsageRequest, tuple[BilledPart, ...], InvoiceLine, Decimal, str]]] = {}
        for (namespace, _), parts in periods.items():
            if parts[0][1] not in live[namespace]:
                continue
            latest, _, copied = max(parts, key=lambda x: (x[0].period_end, x[0].created_at))
            lines = [x for x, _, _ in parts]
            start = min(x.full_period_start or x.period_start for x in lines)
            billed = sum((x.quantity or ZERO for x in lines), ZERO)
            subjects = latest.usage_subjects if latest.usage_subjects is not None else (copied or None)
            request = UsageRequest(latest.feature_key or "", parts[0][1], start, latest.period_end, subjects)
            # Each part's time counts the subjects that part counted (as its snapshot did), not
            # the latest part's: usage of a subject a part did not have is not its late usage.
            own = Billed(
                billed,
                False,
                parts=tuple(
                    BilledPart(
                        x.period_start, x.period_end, x.usage_subjects if x.usage_subjects is not None else (c or None)
                    )
                    for x, _, c in parts
                    if CORRECTION_KEY not in x.metadata
                ),
            )
            split = _other_subject_parts(request, own)
            wanted.setdefault(namespace, []).append((request, split, latest, billed, parts[0][1]))
        made = 0
        for namespace, periods_read in wanted.items():
            reads = {r for request, split, *_ in periods_read for r in (request, *_part_reads(request, split))}
            quantities = await self._usage.quantities(namespace, list(reads), now)
            for request, split, latest, billed, customer_id in periods_read:
                cumulative = quantities.get(request, ZERO) + _shift(request, split, quantities, request.end)
                if cumulative > billed:
                    made += await self._add_correction(namespace, customer_id, latest, request, cumulative, now)
        async with self._uow() as tx:
            await tx.invoices.mark_late_usage_read(now)
            await tx.commit()
        return made

    async def _add_correction(
        self,
        namespace: str,
        customer_id: str,
        latest: InvoiceLine,
        request: UsageRequest,
        cumulative: Decimal,
        now: datetime,
    ) -> int:
        start = request.start
        key = latest.period_key or ""

        async def add() -> int:
            async with self._uow() as tx:
                gathering = await tx.invoices.get_gathering(namespace, customer_id, latest.currency, lock=True)
                # Under the gathering invoice's lock (collection takes it too): another worker
                # may have made this correction since the usage was read, or billed it already.
                if key in await tx.invoices.pending_period_keys(namespace, [key]):
                    return 0
                so_far = (await tx.invoices.billed_quantities(namespace, [key])).get(key)
                billed = so_far.quantity if so_far is not None else ZERO
                if cumulative <= billed:
                    return 0
                if not _charges_for(latest, so_far, cumulative - billed, now):
                    # Past a maximum spend, inside a free allowance or under a minimum spend
                    # already charged: a correction would be an invoice of 0.00. What a later
                    # correction bills is rated on top of what was billed, so leaving this usage
                    # out now changes no later amount.
                    return 0
                gathering = await self._gathering_or_new(tx, namespace, customer_id, latest.currency, gathering, now)
                correction = _unrated_copy(
                    latest,
                    gathering.id,
                    now,
                    managed_by=ManagedBy.SYSTEM,
                    sync_key=None,
                    period_start=start,
                    full_period_start=start,
                    invoice_at=now,
                    usage_subjects=request.subjects,
                    metadata={**latest.metadata, "tally.correction": "late_usage"},
                )
                await _add_gathering_lines(tx, gathering, [correction], now)
                await tx.commit()
            return 1

        # Another worker may make the gathering invoice first: then check again against it.
        return await again_on_conflict(add)

    async def record_failure(self, namespace: str, invoice_id: str, retry_at: datetime) -> Invoice | None:
        """A worker's step failed (an app or the store did not answer): the invoice stays in its
        last committed state and is tried again at `retry_at`. None: the invoice is gone."""
        async with self._uow() as tx:
            invoice = await tx.invoices.get(namespace, invoice_id, lock=True)
            if invoice is None:
                return None
            invoice = evolve(invoice, attempts=invoice.attempts + 1, next_attempt_at=retry_at)
            await tx.invoices.update(invoice)
            await tx.commit()
        return invoice

    # --- steps ---------------------------------------------------------------------------------

    async def _snapshot(
        self,
        tx: BillingStore,
        invoice: Invoice,
        lines: Sequence[InvoiceLine],
        now: datetime,
        usage: UsageSnapshot | None = None,
    ) -> tuple[list[InvoiceLine], datetime]:
        """Each usage line's quantity: the period's cumulative usage as of now (or as of the
        prefetch's cutoff, when it holds every request), minus what earlier invoices billed of the
        same period key."""
        top = [x for x in lines if x.parent_line_id is None and x.type is LineType.USAGE_BASED]
        requests = _usage_requests(invoice, lines)
        prefetched = usage.answer(invoice.namespace, list(requests.values())) if usage is not None else None
        cutoff = now
        quantities: Mapping[UsageRequest, Decimal]
        if prefetched is not None and usage is not None:
            quantities, cutoff = prefetched, usage.cutoff
        else:
            quantities = await self._usage.quantities(invoice.namespace, list(requests.values()), cutoff)
        keys = [x.period_key for x in top if x.period_key]
        # Another invoice's part of the same period may be snapshotted at this moment: this one
        # reads what it billed only once that is committed (the lock is held until ours is).
        await tx.invoices.lock_period_keys(invoice.namespace, keys)
        billed = dict(await tx.invoices.billed_quantities(invoice.namespace, keys, exclude_invoice_id=invoice.id))
        splits = _subject_splits(lines, requests, billed)
        if splits:
            # Earlier parts that counted other subjects (the customer's changed between them):
            # their times are read for their own subjects too, as of the same cutoff. Rare, so
            # read apart rather than before every lock.
            more = [r for r in _split_reads(requests, splits) if r not in quantities]
            if more:
                quantities = {**quantities, **await self._usage.quantities(invoice.namespace, more, cutoff)}
        later = await self._later_parts_usage(invoice, lines, requests, billed, splits, quantities, cutoff)
        return _snapshotted(lines, requests, quantities, billed, splits, later, cutoff, now), cutoff

    async def _later_parts_usage(
        self,
        invoice: Invoice,
        lines: Sequence[InvoiceLine],
        requests: Mapping[str, UsageRequest],
        billed: Mapping[str, Billed],
        splits: Mapping[str, tuple[BilledPart, ...]],
        quantities: Mapping[UsageRequest, Decimal],
        cutoff: datetime,
    ) -> dict[str, Decimal]:
        """For each line whose period has a billed part ending after it (a draft read again after
        the rest of its period was invoiced, a part voided to be billed again), the period's usage
        up to that part's end, read as of `cutoff`. Usually nothing: parts are read in period
        order."""
        reads: dict[str, UsageRequest] = {}
        for line in lines:
            so_far = billed.get(line.period_key or "") if line.id in requests else None
            if so_far is not None and so_far.latest_end is not None and so_far.latest_end > line.period_end:
                reads[line.id] = evolve(requests[line.id], end=so_far.latest_end)
        if not reads:
            return {}
        wanted = list(set(reads.values()))
        usage = {**quantities, **await self._usage.quantities(invoice.namespace, wanted, cutoff)}
        return {
            k: usage.get(through, ZERO) + _shift(through, splits.get(k, ()), usage, through.end)
            for k, through in reads.items()
        }

    async def _calculate(
        self,
        tx: BillingStore,
        invoice: Invoice,
        lines: Sequence[InvoiceLine],
        now: datetime,
        stored: Sequence[InvoiceLine],
    ) -> list[InvoiceLine]:
        """Rates every top-level line; detailed child lines are made anew. A rating that gives the
        lines as `stored` (before a snapshot changed them, if one did: a draft rated again with
        nothing changed) writes nothing."""
        top = [x for x in lines if x.parent_line_id is None]
        rated, children = rate_lines(invoice.currency, top, now)
        if _same_rating(stored, rated, children):
            return list(lines)
        rated, children = _reusing_detailed_line_ids(stored, rated, children)
        live = {x.id for x in stored if x.parent_line_id is not None and x.deleted_at is None}
        kept = [x for x in children if x.id in live]
        await tx.invoices.delete_children(invoice.namespace, [x.id for x in top], now, keep=[x.id for x in kept])
        await tx.invoices.update_lines(rated + kept)
        made = [x for x in children if x.id not in live]
        if made:
            await tx.invoices.insert_lines(made)
        return rated + children

    async def simulate(self, namespace: str, customer_id_or_key: str, data: PendingLinesInput) -> InvoiceWithLines:
        """OpenMeter's simulate: the invoice these lines would make with their given quantities
        (each line its own whole period, with its given preLinePeriodQuantity billed before it),
        rated by the very code that bills (`rate_lines`), nothing stored and no app called."""
        _validate_pending(data)
        effective = await self._profiles.effective_profile(namespace, customer_id_or_key, with_customer=True)
        assert effective.customer is not None
        now = self._clock()
        invoice = new_invoice(namespace, effective.customer, effective, data.currency, now, State.DRAFT_CREATED)
        top = []
        for given in data.lines:
            line = self._pending_line(namespace, invoice, given, now)
            if line.type is LineType.USAGE_BASED:
                line = evolve(
                    line,
                    quantity=given.quantity or ZERO,
                    metered_quantity=given.quantity or ZERO,
                    pre_line_period_quantity=given.pre_line_period_quantity or ZERO,
                )
            top.append(line)
        rated, children = rate_lines(invoice.currency, top, now)
        lines = rated + children
        # Calculated as a real draft is (period, collectionAt, draftUntil, dueAt), and numbered as
        # OpenMeter numbers a simulation unless the request gives a number (the servicer sets it).
        invoice = evolve(invoice, number=SIMULATED_INVOICE_NUMBER)
        invoice = _draft_dates(_with_line_dates(_with_totals(invoice, lines), lines))
        return InvoiceWithLines(invoice, lines)

    async def _release(self, tx: BillingStore, invoice: Invoice, lines: Sequence[InvoiceLine], now: datetime) -> None:
        """A deleted invoice's lines go back to the customer's gathering invoice, unrated."""
        top = [x for x in lines if x.parent_line_id is None]
        await tx.invoices.delete_children(invoice.namespace, [x.id for x in top], now)
        if not top:
            return
        gathering = await tx.invoices.get_gathering(invoice.namespace, invoice.customer.id, invoice.currency, lock=True)
        if gathering is None:
            # A new gathering invoice for the customer, as the deleted invoice was made: nothing
            # that was the deleted invoice's own (its app's external IDs, description, metadata).
            gathering = Invoice(
                id=_new_id(),
                namespace=invoice.namespace,
                type=InvoiceType.STANDARD,
                state=State.GATHERING,
                customer=invoice.customer,
                currency=invoice.currency,
                profile_id=invoice.profile_id,
                invoicing_app_id=invoice.invoicing_app_id,
                payment_app_id=invoice.payment_app_id,
                tax_app_id=invoice.tax_app_id,
                workflow=invoice.workflow,
                supplier=invoice.supplier,
                created_at=now,
                updated_at=now,
            )
            await tx.invoices.insert(gathering)
        released = [
            evolve(
                x,
                invoice_id=gathering.id,
                totals=Totals(),
                discounts=(),
                quantity=x.quantity if x.type is LineType.FLAT_FEE else None,
                metered_quantity=None,
                pre_line_period_quantity=None,
                period_started=None,
                period_closed=None,
                quantity_snapshotted_at=None,
                # The app's ID named the line on the deleted invoice; a gathering line has none.
                invoicing_external_id=None,
                updated_at=now,
            )
            for x in top
        ]
        gathered = (await tx.invoices.lines(invoice.namespace, [gathering.id]))[gathering.id]
        stored, merged_away = rejoin_parts(released, gathered, now)
        if merged_away:
            await tx.invoices.delete_lines(invoice.namespace, merged_away, now)
        await tx.invoices.update_lines(stored)
        remaining = (await tx.invoices.lines(invoice.namespace, [gathering.id]))[gathering.id]
        await tx.invoices.update(gathering_schedule(gathering, remaining, now))


def rejoin_parts(
    released: Sequence[InvoiceLine], gathered: Sequence[InvoiceLine], now: datetime
) -> tuple[list[InvoiceLine], list[str]]:
    """Released lines (a deleted invoice's, moving to the gathering invoice) joined again with the
    parts of the same billing period that are still gathering: the lines to store and the IDs of
    those merged away.

    Progressive billing cuts a usage line at the invoice's `as_of` (`split_gathering`): the part
    before goes on the new invoice, the rest stays gathering under the same period key. When that
    invoice is deleted, its part comes back; left as a line of its own it would meet the rest on
    one invoice, where each part is billed the period's usage up to its end less what *other*
    invoices billed, so the first part's usage would be billed twice, and a subscription sync
    would move both parts onto the same dates. Joined, it is the line it was before the cut: the
    earliest part keeps its ID and spans every contiguous part of its period key, to where the
    latest part ends its usage period (the subscription sync keeps the gathering part's
    `full_period_end` at an end that cut the period short: the line that reaches it is the
    period's last and carries its minimum spend)."""
    by_key: dict[str, list[InvoiceLine]] = {}
    for line in [*released, *(x for x in gathered if x.parent_line_id is None and x.deleted_at is None)]:
        if line.type is LineType.USAGE_BASED and line.period_key is not None:
            by_key.setdefault(line.period_key, []).append(line)
    returning = {x.id for x in released}
    joined: dict[str, InvoiceLine] = {}
    merged_away: list[str] = []
    for parts in by_key.values():
        parts.sort(key=lambda x: x.period_start)
        run = [parts[0]]
        for part in [*parts[1:], None]:
            if part is not None and part.period_start == run[-1].period_end:
                run.append(part)
                continue
            if len(run) > 1 and any(x.id in returning for x in run):
                last = run[-1]
                joined[run[0].id] = evolve(
                    run[0],
                    period_end=last.period_end,
                    full_period_end=last.full_period_end,
                    invoice_at=last.invoice_at,
                    updated_at=now,
                )
                merged_away += [x.id for x in run[1:]]
            if part is not None:
                run = [part]
    gone = set(merged_away)
    stored = [joined.get(x.id, x) for x in released if x.id not in gone]
    stored += [line for line_id, line in joined.items() if line_id not in returning]
    return stored, merged_away


@dataclasses.dataclass(frozen=True, slots=True)
class GatheringSplit:
    """A gathering invoice's collection: the new standard invoice, the lines moved onto it, the
    remainders of progressively billed lines that stay behind, and the gathering invoice after."""

    standard: Invoice
    moved: list[InvoiceLine]
    kept: list[InvoiceLine]
    gathering: Invoice


def split_gathering(
    gathering: Invoice,
    lines: Sequence[InvoiceLine],
    as_of: datetime,
    now: datetime,
    *,
    line_ids: Sequence[str] = (),
    progressive_override: bool | None = None,
    effective: EffectiveProfile | None = None,
    growing: Collection[str] = (),
) -> GatheringSplit | None:
    """The lines of `gathering` due by `as_of` (only `line_ids`, when given) on a new standard
    invoice in draft.created (None when nothing is due); an emptied gathering invoice disappears,
    a remaining one is rescheduled. The new invoice takes the customer, profile and workflow of
    `effective` (what applies to the customer now; the gathering invoice's when None). Progressive
    billing as that workflow says, unless overridden, and only for lines of `growing` features
    (whose meters only grow: UsageSource.growing_features)."""
    workflow = effective.workflow if effective is not None else gathering.workflow
    progressive = progressive_override if progressive_override is not None else workflow.progressive_billing
    wanted = set(line_ids)
    invoice_id = _new_id()
    moved: list[InvoiceLine] = []
    kept: list[InvoiceLine] = []
    for line in lines:
        if line.parent_line_id is not None or (wanted and line.id not in wanted):
            continue
        usage = line.type is LineType.USAGE_BASED
        in_parts = (
            progressive
            and usage
            and line.price is not None
            and allows_progressive_billing(line.price)
            and line.feature_key in growing
        )
        # OpenMeter's billable lines (gatherInScopeLines, rate/flat.go and rate/base.go
        # ResolveBillablePeriod): a fee once its invoiceAt has come; usage once its period has
        # ended, and its invoiceAt has come unless it is billed in parts. Compared to the second,
        # as OpenMeter compares them (a late-usage correction is due at a time with a fraction).
        invoice_at, period_end = line.invoice_at.replace(microsecond=0), line.period_end.replace(microsecond=0)
        fee_due = not usage and invoice_at <= as_of
        usage_due = usage and period_end <= as_of and (in_parts or invoice_at <= as_of)
        if fee_due or usage_due:
            moved.append(evolve(line, invoice_id=invoice_id, updated_at=now))
        elif in_parts and line.period_start < as_of:
            # Bill the part of the period up to as_of now; the rest waits on the gathering invoice.
            moved.append(evolve(line, invoice_id=invoice_id, period_end=as_of, invoice_at=as_of))
            kept.append(
                evolve(
                    line,
                    id=_new_id(),
                    period_start=as_of,
                    created_at=now,
                    updated_at=now,
                    sync_key=line.sync_key,
                )
            )
    if not moved:
        return None
    current = gathering
    if effective is not None and effective.customer is not None:
        fresh = new_invoice(
            gathering.namespace, effective.customer, effective, gathering.currency, now, State.GATHERING
        )
        current = evolve(
            gathering,
            customer=fresh.customer,
            profile_id=fresh.profile_id,
            invoicing_app_id=fresh.invoicing_app_id,
            payment_app_id=fresh.payment_app_id,
            tax_app_id=fresh.tax_app_id,
            workflow=fresh.workflow,
            supplier=fresh.supplier,
        )
    standard = evolve(
        current,
        id=invoice_id,
        state=State.DRAFT_CREATED,
        workflow=workflow,
        created_at=now,
        updated_at=now,
        draft_until=None,
        next_attempt_at=None,
        attempts=0,
    )
    standard = _with_line_dates(standard, moved).owing(now, created=True)
    gone = {x.id for x in moved}
    remaining = [x for x in lines if x.id not in gone] + kept
    if not remaining:
        # An emptied gathering invoice disappears.
        after = evolve(gathering, deleted_at=now, updated_at=now)
    else:
        after = gathering_schedule(gathering, remaining, now)
    return GatheringSplit(standard, moved, kept, after)


def _same_rating(stored: Sequence[InvoiceLine], rated: Sequence[InvoiceLine], children: Sequence[InvoiceLine]) -> bool:
    """Whether a new rating equals the stored lines, but for when it was made (and the new
    children's IDs)."""
    old_top = {x.id: x for x in stored if x.parent_line_id is None}
    if len(old_top) != len(rated) or {x.id for x in rated} != old_top.keys():
        return False
    if any(old_top[x.id] != evolve(x, updated_at=old_top[x.id].updated_at) for x in rated):
        return False
    stored_children = [x for x in stored if x.parent_line_id is not None]
    old_children = {(x.parent_line_id, x.child_key): x for x in stored_children}
    new_children = {(x.parent_line_id, x.child_key): x for x in children}
    if not len(stored_children) == len(old_children) == len(new_children) == len(children):
        return False  # a key twice on either side: not comparable line by line
    if old_children.keys() != new_children.keys():
        return False
    return all(
        evolve(new_children[key], id=old.id, created_at=old.created_at, updated_at=old.updated_at) == old
        for key, old in old_children.items()
    )


def _reusing_detailed_line_ids(
    stored: Sequence[InvoiceLine], rated: Sequence[InvoiceLine], children: Sequence[InvoiceLine]
) -> tuple[list[InvoiceLine], list[InvoiceLine]]:
    """A new rating's detailed lines under the IDs (and creation times) of the stored ones they
    replace: the same parent and component key. Their discounts keep their IDs too, matched by
    reason, and the parent's list of its children's discounts follows. An invoice rated again
    (a PUT of a draft, a new snapshot) thus keeps the detailed lines an invoicing app or a client
    knows, as OpenMeter's StandardLine.DetailedLinesWithIDReuse and ReuseIDsFrom do
    (openmeter/billing/stdinvoiceline.go, openmeter/billing/invoicelinediscount.go). A key found
    twice on either side is not matched: which one is which is not known."""

    def unique_by(items: Sequence[Any], key: Callable[[Any], Any]) -> dict[Any, Any]:
        counted: dict[Any, list[Any]] = {}
        for item in items:
            counted.setdefault(key(item), []).append(item)
        return {k: v[0] for k, v in counted.items() if len(v) == 1}

    old_children = unique_by(
        [x for x in stored if x.parent_line_id is not None and x.deleted_at is None],
        lambda x: (x.parent_line_id, x.child_key),
    )
    new_keys = unique_by(children, lambda x: (x.parent_line_id, x.child_key))
    renamed_discounts: dict[str, str] = {}
    out: list[InvoiceLine] = []
    for child in children:
        key = (child.parent_line_id, child.child_key)
        old = old_children.get(key)
        if old is None or key not in new_keys:
            out.append(child)
            continue
        old_discounts = unique_by(old.discounts, lambda d: d.reason)
        new_discounts = unique_by(child.discounts, lambda d: d.reason)
        discounts: list[LineDiscount] = []
        for discount in child.discounts:
            earlier: LineDiscount | None = old_discounts.get(discount.reason)
            if earlier is not None and discount.reason in new_discounts and earlier.id != discount.id:
                renamed_discounts[discount.id] = earlier.id
                discount = evolve(
                    discount,
                    id=earlier.id,
                    invoicing_external_id=discount.invoicing_external_id or earlier.invoicing_external_id,
                )
            discounts.append(discount)
        # The same line in the invoicing app too: its ID there stays with it.
        out.append(
            evolve(
                child,
                id=old.id,
                created_at=old.created_at,
                discounts=tuple(discounts),
                invoicing_external_id=child.invoicing_external_id or old.invoicing_external_id,
            )
        )
    parents = [
        evolve(
            line,
            discounts=tuple(
                evolve(d, id=renamed_discounts[d.id]) if d.id in renamed_discounts else d for d in line.discounts
            ),
        )
        if any(d.id in renamed_discounts for d in line.discounts)
        else line
        for line in rated
    ]
    return parents, out


def _detailed_line(parent: InvoiceLine, line_id: str, now: datetime, **fields: Any) -> InvoiceLine:
    """A detailed (child) line of `parent` with `fields` set: made by the system, outside the
    sync's keys, and a line of its own that the invoicing app has not named (yet)."""
    return evolve(
        parent,
        id=line_id,
        parent_line_id=parent.id,
        status=LineStatus.DETAILED,
        managed_by=ManagedBy.SYSTEM,
        period_key=None,
        sync_key=None,
        invoicing_external_id=None,
        created_at=now,
        updated_at=now,
        **fields,
    )


def rate_lines(
    currency_code: str, top: Sequence[InvoiceLine], now: datetime
) -> tuple[list[InvoiceLine], list[InvoiceLine]]:
    """Top-level lines with their totals, and the detailed child lines of the usage ones: the one
    rating path of invoices and simulate."""
    with localcontext(EXACT):  # the rating engine's digits: totals of 38-digit amounts are sums, unrounded
        return _rate_lines(currency_code, top, now)


def _rate_lines(
    currency_code: str, top: Sequence[InvoiceLine], now: datetime
) -> tuple[list[InvoiceLine], list[InvoiceLine]]:
    currency = currencies.get(currency_code)
    rated: list[InvoiceLine] = []
    children: list[InvoiceLine] = []
    for line in top:
        if line.type is LineType.FLAT_FEE:
            amount, discount = rate_flat_units(
                line.per_unit_amount or ZERO, line.quantity or ZERO, currency, line.rate_card_discounts
            )
            off: tuple[LineDiscount, ...] = ()
            if discount:
                # The discount keeps its ID (and the app's ID for it) from one rating to the next (an
                # unchanged draft is not rewritten).
                known = next((d for d in line.discounts if d.reason is DiscountReason.RATECARD_PERCENTAGE), None)
                off = (
                    LineDiscount(
                        known.id if known else _new_id(),
                        DiscountReason.RATECARD_PERCENTAGE,
                        discount,
                        invoicing_external_id=known.invoicing_external_id if known else None,
                    ),
                )
            totals = Totals.of(amount=amount, discounts_total=discount)
            rated.append(evolve(line, totals=totals, discounts=off, updated_at=now))
            # Detailed like every line (OpenMeter's flat pricer: one "flat-price" line): apps sync
            # the detailed lines, and those of an invoice add up to its total.
            children.append(
                _detailed_line(
                    line,
                    _new_id(),
                    now,
                    child_key="flat-price",
                    category=LineCategory.REGULAR,
                    totals=totals,
                    discounts=off,
                )
            )
            continue
        if line.price is None or line.quantity is None:
            rated.append(evolve(line, totals=Totals(), updated_at=now))
            continue
        full = Period(line.full_period_start or line.period_start, line.full_period_end or line.period_end)
        try:
            result = rate(
                RatingInput(
                    price=line.price,
                    currency=currency,
                    service_period=Period(line.period_start, line.period_end),
                    full_period=full,
                    quantity=line.quantity,
                    pre_period_quantity=line.pre_line_period_quantity or ZERO,
                    discounts=line.rate_card_discounts,
                    name=line.name,
                    period_started=line.period_started,
                    period_closed=bool(line.period_closed),
                )
            )
        except RatingError as exc:
            raise ValidationError.single(f"lines[{line.id}]", str(exc), "rating_failed") from exc
        t = result.totals
        discounts: list[LineDiscount] = []
        maximum = line.price.commitments.maximum_amount
        # OpenMeter's words for the cap, with the maximum as the engine applies it (rounded).
        capped = (
            None
            if maximum is None
            else f"Maximum spend discount for charges over {decimal_text(currency.round(maximum))}"
        )
        for d in result.lines:
            child_id = _new_id()
            child_discounts = tuple(
                LineDiscount(
                    _new_id(), x.reason, x.amount, capped if x.reason is DiscountReason.MAXIMUM_SPEND else None
                )
                for x in d.discounts
            )
            discounts.extend(child_discounts)
            charges = d.amount if d.category.value == "commitment" else ZERO
            children.append(
                _detailed_line(
                    line,
                    child_id,
                    now,
                    type=LineType.FLAT_FEE,
                    name=d.name,
                    period_start=d.period.start,
                    period_end=d.period.end,
                    feature_key=None,
                    price=None,
                    per_unit_amount=d.per_unit_amount,
                    quantity=d.quantity,
                    metered_quantity=None,
                    pre_line_period_quantity=None,
                    child_key=d.key,
                    category=d.category,
                    payment_term=d.payment_term.value,
                    totals=Totals.of(
                        amount=d.amount - charges,
                        charges_total=charges,
                        discounts_total=sum((x.amount for x in d.discounts), ZERO),
                    ),
                    discounts=child_discounts,
                )
            )
        if result.usage_discount_quantity:
            # The units the rate card's usage discount made free on this line, listed on it as
            # OpenMeter lists them (none when the discount no longer reaches the line). Its ID is
            # kept from one rating to the next (with the app's ID for it), like a flat fee's discount.
            known = next((d for d in line.discounts if d.reason is DiscountReason.RATECARD_USAGE), None)
            discounts.append(
                LineDiscount(
                    known.id if known else _new_id(),
                    DiscountReason.RATECARD_USAGE,
                    ZERO,
                    quantity=result.usage_discount_quantity,
                    pre_line_period_quantity=result.pre_period_usage_discount_quantity,
                    invoicing_external_id=known.invoicing_external_id if known else None,
                )
            )
        rated.append(
            evolve(
                line,
                totals=Totals.of(amount=t.amount, charges_total=t.charges_total, discounts_total=t.discounts_total),
                discounts=tuple(discounts),
                updated_at=now,
            )
        )
    return rated, children


@dataclasses.dataclass(frozen=True, slots=True)
class CollectedBatch:
    made: dict[str, list[str]]  # the standard invoices made, by gathering invoice ID
    handed_over: list[Invoice]  # for `collect`, one by one
    # The invoices made that the worker's advance can move on (the next row calls an app that
    # calls out); the others wait (for their collection, a person, an app's callback) or are done.
    moving: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True, slots=True)
class AdvancedBatch:
    moved: list[str]
    handed_over: list[str]  # for `advance_due`, one by one


@dataclasses.dataclass(frozen=True, slots=True)
class UsageSnapshot:
    """Usage read in bulk for a batch of invoices, all as of one cutoff (`prefetch_usage`)."""

    cutoff: datetime
    quantities: Mapping[tuple[str, UsageRequest], Decimal]

    def answer(self, namespace: str, requests: Sequence[UsageRequest]) -> dict[UsageRequest, Decimal] | None:
        """The quantities of these requests if every one was read; None sends the caller to the store."""
        out = {}
        for request in requests:
            found = self.quantities.get((namespace, request))
            if found is None:
                return None
            out[request] = found
        return out


def _usage_requests(invoice: Invoice, lines: Sequence[InvoiceLine]) -> dict[str, UsageRequest]:
    """What each top-level usage line's quantity snapshot reads, by line ID: the cumulative usage of
    its billing period up to the line's end, for the subjects a standard invoice copied from its
    customer when it was made (a subject added or taken away since does not change what it bills,
    as OpenMeter's invoice customer snapshot). A gathering invoice reads the customer's subjects
    now: a standard invoice made from it now would copy those. A late-usage correction reads the
    subjects it keeps, those of the invoice it corrects (see bill_late_usage)."""
    subjects = None
    if invoice.state is not State.GATHERING and invoice.customer.usage_subjects:
        subjects = invoice.customer.usage_subjects
    return {
        x.id: UsageRequest(
            x.feature_key or "",
            invoice.customer.id,
            x.full_period_start or x.period_start,
            x.period_end,
            x.usage_subjects if x.usage_subjects is not None else subjects,
        )
        for x in lines
        if x.parent_line_id is None and x.type is LineType.USAGE_BASED
    }


def _other_subject_parts(
    request: UsageRequest, billed: Billed | None, now_subjects: tuple[str, ...] | None = None
) -> tuple[BilledPart, ...]:
    """The billed parts of `request`'s period that counted other subjects than it does (its
    customer's changed between them). A period billed in parts counts each part's time for that
    part's own subjects, as OpenMeter reads each split line's range (and the range before it) for
    its own invoice's customer: so a subject given to the customer after a part was billed does
    not bill its usage of that part's time later, and one taken away does not leave a hole.
    `now_subjects`: the customer's subjects now, what a request's None counts, where known."""
    if billed is None:
        return ()
    subjects = request.subjects if request.subjects is not None else now_subjects
    own = None if subjects is None else set(subjects)
    return tuple(
        sorted(
            {
                p
                for p in billed.parts
                if (None if p.subjects is None else set(p.subjects)) != own and p.start >= request.start
            },
            key=lambda p: (p.start, p.end),
        )
    )


def _subject_splits(
    lines: Sequence[InvoiceLine],
    requests: Mapping[str, UsageRequest],
    billed: Mapping[str, Billed],
    now_subjects: Mapping[str, tuple[str, ...] | None] | None = None,
) -> dict[str, tuple[BilledPart, ...]]:
    """`_other_subject_parts` of each usage line that has any, by line ID (usually none)."""
    out = {}
    for line in lines:
        if line.id in requests and line.period_key:
            request = requests[line.id]
            now = (now_subjects or {}).get(request.customer_id)
            split = _other_subject_parts(request, billed.get(line.period_key), now)
            if split:
                out[line.id] = split
    return out


def _part_reads(request: UsageRequest, parts: Sequence[BilledPart]) -> list[UsageRequest]:
    """What `_shift` reads: each part's time for its own subjects and for the request's."""
    return [
        r
        for p in parts
        for r in (
            UsageRequest(request.feature_key, request.customer_id, p.start, p.end, p.subjects),
            evolve(request, start=p.start, end=p.end),
        )
    ]


def _split_reads(requests: Mapping[str, UsageRequest], splits: Mapping[str, Sequence[BilledPart]]) -> set[UsageRequest]:
    return {r for line_id, parts in splits.items() for r in _part_reads(requests[line_id], parts)}


def _shift(
    request: UsageRequest, parts: Sequence[BilledPart], quantities: Mapping[UsageRequest, Decimal], through: datetime
) -> Decimal:
    """What the period's usage up to `through` counted with each part's own subjects differs by
    from `request`'s count (its subjects over the whole range): for every part before `through`
    that counted others, its subjects' usage of its time less the request's subjects' usage of it."""
    reads = _part_reads(request, [p for p in parts if p.end <= through])
    return sum(
        (
            quantities.get(theirs, ZERO) - quantities.get(ours, ZERO)
            for theirs, ours in zip(reads[::2], reads[1::2], strict=True)
        ),
        ZERO,
    )


def _snapshotted(
    lines: Sequence[InvoiceLine],
    requests: Mapping[str, UsageRequest],
    quantities: Mapping[UsageRequest, Decimal],
    billed: dict[str, Billed],
    splits: Mapping[str, tuple[BilledPart, ...]],
    later: Mapping[str, Decimal],
    cutoff: datetime,
    now: datetime,
) -> list[InvoiceLine]:
    """`lines` with each usage line's quantity: its period's cumulative usage (`quantities`, read
    as of `cutoff`; each earlier part's time for that part's subjects, `splits`) minus what was
    `billed` of the same period key (updated as lines take theirs)."""
    snapshotted: dict[str, InvoiceLine] = {}
    # Two parts of one period key on this invoice (rejoin_parts joins the usual case) are billed
    # in period order, each after what the earlier ones take, so none is billed twice.
    for line in sorted((x for x in lines if x.id in requests), key=lambda x: x.period_start):
        request = requests[line.id]
        cumulative = quantities.get(request, ZERO) + _shift(request, splits.get(line.id, ()), quantities, request.end)
        so_far = billed.get(line.period_key or "")
        before = so_far.quantity if so_far is not None else ZERO
        if line.id in later:
            # A later part of the period was billed before this line was read (again): this
            # line's quantity is what the period's usage up to that part's end leaves.
            cumulative = later[line.id]
        quantity = max(cumulative - before, ZERO)
        # Rated where nothing billed was: after the earlier parts, as usual; at its own place when
        # a later part was rated on top of its usage (a draft read again after the rest of its
        # period was invoiced); on top of a later part that billed its usage while it did not
        # count (voided to be billed again).
        pre, above = so_far.first_hole() if so_far is not None else (ZERO, None)
        if above is not None and quantity > above - pre and _correctable(line):
            # More than that place holds: usage of the later part's time stored after it was read
            # (late). Rated here it would count units that part was rated over a second time; a
            # late-usage correction bills it on top of everything once this line is issued.
            quantity = above - pre
        closed = so_far is not None and so_far.closed
        if line.period_key:
            billed[line.period_key] = (so_far or Billed(ZERO, False)) + Billed(
                quantity, True, ranges=((pre, quantity),), closed=closes_its_period(line)
            )
        snapshotted[line.id] = evolve(
            line,
            quantity=quantity,
            metered_quantity=quantity,
            pre_line_period_quantity=pre,
            period_started=so_far is not None and so_far.started,
            period_closed=closed,
            quantity_snapshotted_at=cutoff,
            updated_at=now,
        )
    return [snapshotted.get(x.id, x) for x in lines]


def closes_its_period(line: InvoiceLine) -> bool:
    """Whether `line` is rated as its period's last line (judges the minimum spend) and is not a
    late-usage correction, which is its period's last line too but is rated above the one that was
    (the store's `_CLOSED` reads the same from stored lines)."""
    return line.period_end == (line.full_period_end or line.period_end) and CORRECTION_KEY not in line.metadata


def _charges_for(latest: InvoiceLine, so_far: Billed | None, more: Decimal, now: datetime) -> bool:
    """Whether `more` usage, rated on top of what was billed of `latest`'s period (`so_far`),
    charges anything (a rating that fails says yes: the correction's own rating reports it)."""
    probe = evolve(
        latest,
        quantity=more,
        metered_quantity=more,
        pre_line_period_quantity=so_far.quantity if so_far is not None else ZERO,
        period_started=so_far is not None and so_far.started,
        period_closed=so_far is not None and so_far.closed,
    )
    try:
        rated, _ = rate_lines(latest.currency, [probe], now)
    except ValidationError:
        return True
    return rated[0].totals.total > ZERO


def _correctable(line: InvoiceLine) -> bool:
    """Whether late usage of the line's period is billed by a correction: every usage price's.
    Volume tiers bill the period's new total less the billed one; a minimum spend already charged
    what the period now costs above it (the rating engine's `period_closed`)."""
    price = line.price
    return price is not None and not isinstance(price, FlatPrice)


async def _lease(tx: BillingStore, invoices: Sequence[Invoice], until: datetime) -> None:
    for namespace, leased in by_namespace(invoices).items():
        await tx.invoices.schedule(namespace, [i.id for i in leased], until)


# The steps that read or rewrite the invoice's lines (an app hook reads them too).
_STEPS_WITH_LINES: Final = frozenset({Step.SNAPSHOT_QUANTITIES, Step.CALCULATE, Step.RELEASE_LINES})


def _reading(namespace: str, invoices: Sequence[Invoice]) -> Callable[[BillingStore], Awaitable[list[Invoice]]]:
    """A read of these invoices as they are now, without locks."""
    ids = [i.id for i in invoices]

    async def read(tx: BillingStore) -> list[Invoice]:
        return await tx.invoices.get_many(namespace, ids)

    return read


def _next_advance(invoice: Invoice, conditions: Conditions, now: datetime) -> Transition | None:
    """The row the worker's advance takes from here now, if any."""
    return transition(invoice.state, Action.ADVANCE, conditions) or _overdue(invoice, conditions, now)


def _at_rest(invoice: Invoice, now: datetime) -> Invoice:
    """An invoice the table cannot move now, scheduled for when time can (the same invoice when its
    schedule is already that)."""
    wake = wake_at(invoice, now)
    if invoice.next_attempt_at == wake and not invoice.attempts:
        return invoice
    return evolve(invoice, next_attempt_at=wake, attempts=0)


def _overdue(invoice: Invoice, conditions: Conditions, now: datetime) -> Transition | None:
    """The worker's own payment outcome: an open payment past its due date is overdue."""
    if invoice.due_at is None or now < invoice.due_at:
        return None
    return transition(invoice.state, Action.PAYMENT_OVERDUE, conditions)


def new_gathering(
    namespace: str, customer: Customer, effective: EffectiveProfile, currency: str, now: datetime
) -> Invoice:
    """The customer's gathering invoice in the currency, on its effective profile and workflow."""
    return new_invoice(namespace, customer, effective, currency, now, State.GATHERING)


def new_invoice(
    namespace: str, customer: Customer, effective: EffectiveProfile, currency: str, now: datetime, state: State
) -> Invoice:
    """A new standard invoice in `state` for the customer, on its effective profile and workflow."""
    profile = effective.profile
    return Invoice(
        id=_new_id(),
        namespace=namespace,
        type=InvoiceType.STANDARD,
        state=state,
        customer=_snapshot(customer),
        currency=currency,
        profile_id=profile.id,
        invoicing_app_id=profile.apps.invoicing,
        payment_app_id=profile.apps.payment,
        tax_app_id=profile.apps.tax,
        workflow=effective.workflow,
        supplier=_supplier(profile.supplier),
        created_at=now,
        updated_at=now,
    )


def _snapshot(customer: Customer) -> CustomerSnapshot:
    address = customer.billing_address
    return CustomerSnapshot(
        id=customer.id,
        name=customer.name,
        key=customer.key,
        subject_keys=tuple(customer.subject_keys),
        billing_address={k: v for k, v in dataclasses.asdict(address).items() if v is not None} if address else {},
    )


def _workflow_updated(stored: Workflow, given: WorkflowPatch) -> Workflow:
    """A draft's workflow after a PUT, as OpenMeter's mergeInvoiceWorkflowFromAPI: autoAdvance,
    draftPeriod, dueAfter and collectionMethod are the body's, each one it leaves out its default
    (the body replaces them); every other setting stays as snapshotted."""
    return evolve(
        stored,
        auto_advance=DEFAULT_WORKFLOW.auto_advance if given.auto_advance is None else given.auto_advance,
        draft_period=given.draft_period or DEFAULT_WORKFLOW.draft_period,
        due_after=given.due_after or DEFAULT_WORKFLOW.due_after,
        collection_method=given.collection_method or DEFAULT_WORKFLOW.collection_method,
    )


def _supplier_updated(stored: Mapping[str, object], given: PartyUpdate) -> dict[str, object]:
    """An invoice's supplier with a PUT's name, address and tax code (its ID and key stay)."""
    out = {k: v for k, v in stored.items() if k not in ("name", "address", "tax_code")}
    out["name"] = given.name
    if given.address is not None:
        out["address"] = given.address.as_dict()
    if given.tax_code is not None:
        out["tax_code"] = given.tax_code
    return out


def _supplier(supplier: Supplier) -> dict[str, object]:
    return {k: v for k, v in dataclasses.asdict(supplier).items() if v is not None}


def _with_external_ids(
    lines: Mapping[str, Sequence[InvoiceLine]],
    invoice_id: str,
    ids: Sequence[tuple[str, str]],
    discount_ids: Sequence[tuple[str, str]],
    now: datetime,
) -> list[InvoiceLine]:
    """The invoice's lines the app named (or whose discounts it named), carrying their external
    IDs; a line or discount that is not the invoice's is refused (nothing is stored: the caller's
    transaction is not committed)."""
    by_id = {line.id: line for line in lines[invoice_id]}
    v = Violations()
    changed: dict[str, InvoiceLine] = {}
    for i, (line_id, external_id) in enumerate(ids):
        line = changed.get(line_id) or by_id.get(line_id)
        if line is None:
            v.add(f"invoicing.lineExternalIds[{i}].lineId", f"{line_id!r} is not a line of this invoice", "not_found")
            continue
        changed[line_id] = evolve(line, invoicing_external_id=external_id, updated_at=now)
    for i, (discount_id, external_id) in enumerate(discount_ids):
        # A usage line lists its detailed lines' discounts too, under the same IDs: each copy is named.
        holders = [x for x in by_id.values() if any(d.id == discount_id for d in x.discounts)]
        if not holders:
            v.add(
                f"invoicing.lineDiscountExternalIds[{i}].lineDiscountId",
                f"{discount_id!r} is not a discount of this invoice's lines",
                "not_found",
            )
        for holder in holders:
            line = changed.get(holder.id, holder)
            discounts = tuple(
                evolve(d, invoicing_external_id=external_id) if d.id == discount_id else d for d in line.discounts
            )
            changed[holder.id] = evolve(line, discounts=discounts, updated_at=now)
    v.raise_if_any()
    return list(changed.values())


def _collection_anchors(workflow: Workflow) -> Recurrence | None:
    """The collection anchors of an `anchored` collection alignment (None: aligned with the
    subscription, collected as lines become due)."""
    period = workflow.recurring_period
    if workflow.alignment is not Alignment.ANCHORED or period is None:
        return None
    return Recurrence(IsoDuration.parse(period.duration().iso()), period.anchor)


def _with_what_the_body_omits(made: InvoiceLine, given: PendingLineInput, stored: InvoiceLine) -> InvoiceLine:
    """A line a PUT names, with what its body does not carry taken from the stored line (OpenMeter
    merges the update into it): its discounts' correlation IDs, and a fee's quantity (the body
    has none: three seats sent back as shown stay three, not one)."""
    fee_kept = made.type is LineType.FLAT_FEE and stored.type is LineType.FLAT_FEE and given.quantity is None
    return evolve(
        made,
        rate_card_discounts=_with_correlation_ids(given.rate_card_discounts, stored.rate_card_discounts),
        quantity=stored.quantity if fee_kept else made.quantity,
        usage_subjects=stored.usage_subjects,  # a correction keeps counting what it corrects
    )


def _with_correlation_ids(given: Discounts, stored: Discounts | None = None) -> Discounts:
    """A line's rate card discounts with their correlation IDs: the ones given; else, for a line
    updated, the stored line's for the same kind of discount (a line the subscription sync made
    has none, and sent back as read it is not edited); else new ones (OpenMeter gives every line's
    discounts one: invoicecalc/discounts.go UpsertDiscountCorrelationIDs)."""

    def correlation_id(present: bool, given_id: str | None, stored_kind: bool, stored_id: str | None) -> str | None:
        if not present or given_id is not None:
            return given_id
        return stored_id if stored_kind else str(ULID())

    return evolve(
        given,
        percentage_correlation_id=correlation_id(
            given.percentage is not None,
            given.percentage_correlation_id,
            stored is not None and stored.percentage is not None,
            stored.percentage_correlation_id if stored is not None else None,
        ),
        usage_correlation_id=correlation_id(
            given.usage_quantity is not None,
            given.usage_correlation_id,
            stored is not None and stored.usage_quantity is not None,
            stored.usage_correlation_id if stored is not None else None,
        ),
    )


async def _store_edited_lines(
    tx: BillingStore,
    namespace: str,
    current: Iterable[InvoiceLine],
    kept: Sequence[InvoiceLine],
    added: Sequence[InvoiceLine],
    now: datetime,
) -> None:
    """A PUT's lines stored: the invoice's `current` lines not `kept` are deleted, as manual (the
    user's: the subscription sync does not make them again), `kept` ones updated, `added` made."""
    kept_ids = {x.id for x in kept}
    gone = [x for x in current if x.id not in kept_ids]
    if gone:
        await tx.invoices.update_lines([evolve(x, managed_by=ManagedBy.MANUAL, updated_at=now) for x in gone])
        await tx.invoices.delete_lines(namespace, [x.id for x in gone], now)
    if kept:
        await tx.invoices.update_lines(kept)
    if added:
        await tx.invoices.insert_lines(added)


def _as_edited(line: InvoiceLine, default_tax_config: TaxConfig | None) -> tuple[object, ...]:
    """What a PUT of a draft sets of a line, as the API shows it (its tax config over the
    workflow's default): a line whose answer differs from what it was is edited by the user."""
    return (
        line.type,
        line.name,
        line.description,
        line.period_start,
        line.period_end,
        line.invoice_at,
        line.feature_key,
        line.price,
        line.per_unit_amount,
        line.quantity if line.type is LineType.FLAT_FEE else None,
        line.payment_term,
        line.rate_card_discounts,
        dict(line.metadata),
        merge_tax_configs(default_tax_config, line.tax_config),
    )


def collection_cutoff(workflow: Workflow, at: datetime) -> datetime:
    """What the billing worker's collection at `at` takes the lines due by: `at`, or under an
    anchored alignment the latest anchor at or before it (OpenMeter's
    resolvePendingLineCollectionCutoff)."""
    anchors = _collection_anchors(workflow)
    return at if anchors is None else anchors.prev_before(at, inclusive=True)


def _made_by_the_sync(line: InvoiceLine) -> bool:
    """A line the subscription sync makes (an item's line, or a balance of a fee) and the user did
    not edit: billed again by the sync when a void puts it back, rather than as a copy. A line the
    user edited (managedBy manual) is copied, sync key and all: the copy holds the item's place as
    the user's line, as the voided one did, and the sync leaves it as it leaves that one."""
    return (
        line.subscription is not None
        and line.managed_by is not ManagedBy.MANUAL
        and (line.sync_key is not None or BALANCE_OF in line.metadata)
    )


# The metadata of a line billed again after a void (VoidLineAction.PENDING): the voided line's ID.
BILLED_AGAIN_FROM: Final = "tally.billed_again_from"


def _unrated_copy(line: InvoiceLine, gathering_id: str, now: datetime, **changes: Any) -> InvoiceLine:
    """`line` as a new line of the gathering invoice `gathering_id`, with `changes`, and nothing of
    its rating, snapshot, app ID (the app's ID is the copied line's) or void kept."""
    unrated: dict[str, Any] = dict(
        quantity=None,
        metered_quantity=None,
        pre_line_period_quantity=None,
        period_started=None,
        period_closed=None,
        quantity_snapshotted_at=None,
        totals=Totals(),
        discounts=(),
        invoicing_external_id=None,
        void_action=None,
        created_at=now,
        updated_at=now,
    )
    return evolve(line, id=_new_id(), invoice_id=gathering_id, **{**unrated, **changes})


def _copy_to_bill_again(
    line: InvoiceLine, gathering_id: str, at: datetime, voided: Invoice, now: datetime
) -> InvoiceLine:
    """A voided line to bill again, as a new pending line due at `at` (a usage line no earlier
    than its period's end). A usage line reads its usage again when it is invoiced, for the
    subjects the voided invoice counted, under its period key: the voided line no longer counts
    there, so it bills what that line billed and what was stored since."""
    if line.type is LineType.USAGE_BASED:
        subjects = line.usage_subjects if line.usage_subjects is not None else voided.customer.usage_subjects
        return _unrated_copy(
            line,
            gathering_id,
            now,
            invoice_at=max(at, line.period_end),
            usage_subjects=subjects,
            metadata={**line.metadata, BILLED_AGAIN_FROM: line.id},
        )
    return _unrated_copy(
        line,
        gathering_id,
        now,
        invoice_at=at,
        quantity=line.quantity,
        metadata={**line.metadata, BILLED_AGAIN_FROM: line.id},
    )


async def _add_gathering_lines(
    tx: BillingStore, gathering: Invoice, lines: Sequence[InvoiceLine], now: datetime
) -> tuple[Invoice, list[InvoiceLine]]:
    """Stores `lines` on the gathering invoice and reschedules it from all its lines: the invoice as
    stored and its lines."""
    await tx.invoices.insert_lines(lines)
    all_lines = (await tx.invoices.lines(gathering.namespace, [gathering.id]))[gathering.id]
    rescheduled = gathering_schedule(gathering, all_lines, now)
    await tx.invoices.update(rescheduled)
    return rescheduled, all_lines


def gathering_schedule(invoice: Invoice, lines: Sequence[InvoiceLine], now: datetime) -> Invoice:
    """A gathering invoice's period and collection time, from its lines. Its lines changed, so the
    worker's lease or retry delay on it ends: it is collected as soon as a line is due (a second
    collection racing the first finds nothing due under the invoice's row lock), or under an
    anchored alignment at the first anchor at or after that (OpenMeter's
    calculateGatheringInvoiceNextCollectionAt)."""
    top = [x for x in lines if x.parent_line_id is None]
    if not top:
        return evolve(invoice, updated_at=now)
    earliest = min(x.invoice_at for x in top)
    anchors = _collection_anchors(invoice.workflow)
    return evolve(
        invoice,
        updated_at=now,
        period_start=min(x.period_start for x in top),
        period_end=max(x.period_end for x in top),
        collection_at=earliest if anchors is None else anchors.next_after(earliest, inclusive=True),
        next_attempt_at=None,
        attempts=0,
    )


def _with_line_dates(invoice: Invoice, lines: Sequence[InvoiceLine]) -> Invoice:
    """A standard invoice's period and collection time from its live top-level lines, worked out
    again whenever its lines are calculated, as OpenMeter's calculator does on every calculation
    (invoicecalc/period.go, invoicecalc/collectionat.go): a draft update that adds, moves or
    removes lines moves both, so a usage line added for a period that has not ended is read only
    once it has. Usage is read once late events had `collection_interval` to arrive after the
    usage ended; an invoice without usage lines is collected when it was made."""
    top = [x for x in lines if x.parent_line_id is None and x.deleted_at is None]
    if not top:
        return invoice
    usage_ends = [x.period_end for x in top if x.type is LineType.USAGE_BASED]
    collection_at = (
        invoice.workflow.collection_interval_duration().add_to(max(usage_ends)) if usage_ends else invoice.created_at
    )
    return evolve(
        invoice,
        period_start=min(x.period_start for x in top),
        period_end=max(x.period_end for x in top),
        collection_at=collection_at,
    )


def _with_totals(invoice: Invoice, lines: Sequence[InvoiceLine]) -> Invoice:
    totals = Totals()
    with localcontext(EXACT):  # the rating engine's digits: totals of 38-digit amounts are sums, unrounded
        for line in lines:
            if line.parent_line_id is None:
                totals = totals + line.totals
    return evolve(invoice, totals=totals)


def _entered(invoice: Invoice, now: datetime) -> Invoice:
    """Timestamps of the state just entered."""
    state = invoice.state
    if state.status is InvoiceStatus.DRAFT:
        return _draft_dates(invoice)
    if state is State.ISSUED and invoice.issued_at is None:
        due_at = invoice.due_at
        if due_at is None or not invoice.workflow.auto_advance:
            # Manual approval: due from the issue, so the invoice is not overdue once issued.
            due_at = invoice.workflow.due_at(now).replace(microsecond=0)
        return evolve(invoice, issued_at=now, due_at=due_at)
    if state is State.PAID and invoice.paid_at is None:
        return evolve(invoice, paid_at=now)
    if state is State.VOIDED and invoice.voided_at is None:
        return evolve(invoice, voided_at=now)
    return invoice


def _draft_dates(invoice: Invoice) -> Invoice:
    """A draft's `draftUntil` and `dueAt` as OpenMeter calculates them on every draft it calculates
    (CalculateDraftUntil, CalculateDueAt), so both show from the draft's start and follow a change
    of its workflow: with automatic approval, the draft period runs from the later of the
    invoice's creation and its collection, and the invoice is due its `dueAfter` past that (an early
    approval does not make it due earlier); with manual approval neither is known before the issue.
    Whole seconds, as OpenMeter's due date. The collection is the scheduled one (`collectionAt`),
    or when the quantities were snapshotted if that was earlier: OpenMeter counts from the scheduled
    time even when snapshot-quantities forced the collection early, which would hold a forced
    invoice until then. A snapshot later than scheduled (the worker's lag) moves neither date."""
    workflow = invoice.workflow
    if not workflow.auto_advance:
        return evolve(invoice, draft_until=None, due_at=None)
    times = [t for t in (invoice.quantity_snapshotted_at, invoice.collection_at) if t is not None]
    collected = min(times, default=invoice.created_at)
    start = max(collected, invoice.created_at)
    draft_until = workflow.draft_until(start)
    return evolve(invoice, draft_until=draft_until, due_at=workflow.due_at(draft_until).replace(microsecond=0))


def _view(invoice: Invoice, lines: Sequence[InvoiceLine]) -> InvoiceView:
    return InvoiceView(
        id=invoice.id,
        namespace=invoice.namespace,
        state=invoice.state,
        currency=invoice.currency,
        customer_id=invoice.customer.id,
        customer_name=invoice.customer.name,
        total=invoice.totals.total,
        created_at=invoice.created_at,
        number=invoice.number,
        issued_at=invoice.issued_at,
        due_at=invoice.due_at,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        lines=tuple(
            InvoiceLineView(x.id, x.name, x.currency, x.period_start, x.period_end, x.quantity, x.totals.total)
            for x in lines
            if x.parent_line_id is None
        ),
        metadata=dict(invoice.metadata),
        invoicing_external_id=invoice.invoicing_external_id,
        payment_external_id=invoice.payment_external_id,
    )
