"""Invoices and their lines: what is stored, what the API shows, what the lifecycle moves.

An invoice is OpenMeter's: `gathering` (one per customer and currency: pending lines wait there
until they are due) or a standard invoice moving through `invoice_states.State`. Its lines are
either top-level lines (`parent_line_id` None: a manual flat or usage line, or one synced from a
subscription) or the detailed child lines the rating engine produced for a top-level usage line
(one per charge component: tier, flat fee, minimum spend...).

Progressive billing and late usage share one mechanism, carried by `period_key`: every top-level
line billing usage of one (item, billing period) names that pair; a run rates the period's
cumulative quantity as of its cutoff and bills the difference from what earlier, still-valid
invoices already billed under the same key (`pre_line_period_quantity`). `full_period` is that
billing period; `period` is the part this line covers.

Money and quantities are `Decimal`; times are aware UTC.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final

from domain.billing.apps.port import IssueSeverity
from domain.billing.invoice_states import InvoiceStatus, State
from domain.billing.models import Supplier, Workflow
from domain.catalog.prices import NO_DISCOUNTS, Discounts, Price
from domain.catalog.ratecards import TaxConfig
from domain.catalog.rating import DiscountReason, LineCategory
from domain.customers.models import COUNTRY_RE, Address
from domain.errors import Violations
from domain.records import evolve

ZERO: Final = Decimal(0)


class InvoiceType(enum.StrEnum):
    STANDARD = "standard"
    # Credit notes may come later; the column is there so they need no migration.
    CREDIT_NOTE = "credit_note"


class LineType(enum.StrEnum):
    """OpenMeter's line `type`: a fixed amount, or a price applied to a feature's metered usage."""

    FLAT_FEE = "flat_fee"
    USAGE_BASED = "usage_based"


class LineStatus(enum.StrEnum):
    """`valid`: a top-level line; `detailed`: a child line the rating engine made."""

    VALID = "valid"
    DETAILED = "detailed"


class ManagedBy(enum.StrEnum):
    """Who owns a line (OpenMeter's `managedBy`): a manual line may be edited by the user; a
    subscription line is re-synced from its subscription; system lines are the engine's."""

    MANUAL = "manual"
    SUBSCRIPTION = "subscription"
    SYSTEM = "system"


class VoidLineAction(enum.StrEnum):
    """What a void does with a line (OpenMeter's VoidInvoiceLineActionType).

    `discard`: forgiven. What the line charged is not billed again, by it or by a later line of
    its period: a usage line's quantity still counts as billed for its period key.
    `pending`: billed again. The line no longer counts as billed, and the charge goes back to the
    customer's gathering invoice, due at the action's `next_invoice_at` (or at once).
    A void the invoicing app reports (a payment `void` trigger) discards."""

    DISCARD = "discard"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Totals:
    """OpenMeter's InvoiceTotals, for a line or a whole invoice.

    total = amount + charges_total + taxes_exclusive_total - discounts_total - credits_total.
    No tax engine yet: taxes are zero, the line's taxConfig is carried for the app.
    """

    amount: Decimal = ZERO
    charges_total: Decimal = ZERO
    discounts_total: Decimal = ZERO
    credits_total: Decimal = ZERO
    taxes_inclusive_total: Decimal = ZERO
    taxes_exclusive_total: Decimal = ZERO
    taxes_total: Decimal = ZERO
    total: Decimal = ZERO

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            amount=self.amount + other.amount,
            charges_total=self.charges_total + other.charges_total,
            discounts_total=self.discounts_total + other.discounts_total,
            credits_total=self.credits_total + other.credits_total,
            taxes_inclusive_total=self.taxes_inclusive_total + other.taxes_inclusive_total,
            taxes_exclusive_total=self.taxes_exclusive_total + other.taxes_exclusive_total,
            taxes_total=self.taxes_total + other.taxes_total,
            total=self.total + other.total,
        )

    @staticmethod
    def of(
        amount: Decimal = ZERO,
        charges_total: Decimal = ZERO,
        discounts_total: Decimal = ZERO,
        credits_total: Decimal = ZERO,
    ) -> Totals:
        """Totals without taxes, `total` derived (the one place the formula lives)."""
        return Totals(
            amount=amount,
            charges_total=charges_total,
            discounts_total=discounts_total,
            credits_total=credits_total,
            total=amount + charges_total - discounts_total - credits_total,
        )


@dataclass(frozen=True, slots=True)
class LineDiscount:
    """An amount taken off a line (OpenMeter's line discounts: ratecard percentage, maximum spend),
    or, with reason ratecard_usage, the units a usage line's rate card made free (`quantity` on this
    line, `pre_line_period_quantity` on the period's lines before it; `amount` 0: free units are
    not charged, nothing is taken off)."""

    id: str
    reason: DiscountReason
    amount: Decimal
    description: str | None = None
    quantity: Decimal | None = None
    pre_line_period_quantity: Decimal | None = None
    # The discount's ID in the invoicing app (custom invoicing's lineDiscountExternalIds).
    invoicing_external_id: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionRef:
    """The subscription item a synced line bills (OpenMeter's line `subscription`)."""

    subscription_id: str
    phase_id: str
    item_id: str
    # The subscription's billing period the line is invoiced with (OpenMeter's
    # `subscription.billingPeriod`); None on lines synced before it was kept.
    billing_period_start: datetime | None = None
    billing_period_end: datetime | None = None


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    id: str
    namespace: str
    invoice_id: str
    type: LineType
    status: LineStatus
    managed_by: ManagedBy
    name: str
    currency: str
    period_start: datetime
    period_end: datetime
    # When the line becomes due for invoicing (usage lines: the end of their period).
    invoice_at: datetime
    created_at: datetime
    updated_at: datetime
    parent_line_id: str | None = None
    description: str | None = None
    # The billing period this line is part of, and the key shared by every line billing it
    # (progressive billing and late-usage corrections; see the module docstring).
    full_period_start: datetime | None = None
    full_period_end: datetime | None = None
    period_key: str | None = None
    # Idempotency of syncs: a subscription line's deterministic key (None for manual lines).
    sync_key: str | None = None
    feature_key: str | None = None
    # Usage lines and rated flat lines keep the price they were created with.
    price: Price | None = None
    rate_card_discounts: Discounts = NO_DISCOUNTS
    # Flat lines: the amount per unit and how many (OpenMeter's perUnitAmount x quantity).
    per_unit_amount: Decimal | None = None
    # Usage lines after the quantity snapshot: billed quantity for `period`, the raw metered one,
    # and what earlier invoices billed of the same period key.
    quantity: Decimal | None = None
    metered_quantity: Decimal | None = None
    pre_line_period_quantity: Decimal | None = None
    quantity_snapshotted_at: datetime | None = None
    # Set with the quantity: whether a line that counts had already started the period (charged
    # its entry: a graduated price's first-tier flat fee, due once per period). None before the
    # snapshot; the rating then judges by the line's position.
    period_started: bool | None = None
    # Set with the quantity too: whether a line that counts was rated as the period's last (judged
    # its minimum spend), so this one, a late-usage correction, is rated above what that charged.
    period_closed: bool | None = None
    # Detailed child lines: the rating engine's component key, category and term.
    child_key: str | None = None
    category: LineCategory | None = None
    payment_term: str | None = None
    totals: Totals = Totals()
    discounts: Sequence[LineDiscount] = ()
    tax_config: TaxConfig | None = None
    subscription: SubscriptionRef | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    deleted_at: datetime | None = None
    # The line's ID in the invoicing app (custom invoicing: draft/synchronized's lineExternalIds).
    invoicing_external_id: str | None = None
    # The event subjects a usage line counts when they are not its invoice's: a late-usage
    # correction counts those the invoice it corrects copied from its customer, whatever the
    # invoice it is billed on copied later. None: its invoice's.
    usage_subjects: tuple[str, ...] | None = None
    # On a voided invoice: what the void did with the line (None: discarded, as an app's void).
    void_action: VoidLineAction | None = None
    # A subscription's flat-fee line: the credit it was billed net of when made (what earlier
    # lines charged for its time; 0: none), the most a void of those lines can take back from it.
    # None: another line, or one made before migration 0027 (not known).
    netted_of: Decimal | None = None


# The metadata a late-usage correction line carries (its value: "late_usage"): it bills more of
# the time of parts billed before it, so it is no part of its own (BilledPart).
CORRECTION_KEY: Final = "tally.correction"
# The metadata of a balance line (the subscription sync's `_balances`): the sync key of the flat
# fee it completes.
BALANCE_OF: Final = "tally.balance_of"


def put_back_by_a_void(line: InvoiceLine, status: InvoiceStatus) -> bool:
    """A line of a voided invoice put back to be billed again (VoidLineAction.PENDING): for the
    subscription sync it no longer holds its item's place, which the sync fills again."""
    return status is InvoiceStatus.VOIDED and line.void_action is VoidLineAction.PENDING


@dataclass(frozen=True, slots=True)
class BilledPart:
    """One part of a period on an invoice that counts (not a late-usage correction; snapshotted
    or not yet): its own time and the event subjects it counts there (its invoice's copy, or its
    own `usage_subjects`; None: the customer's at the time it is read)."""

    start: datetime
    end: datetime
    subjects: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Billed:
    """What the lines that count (top-level, on invoices not gathering, deleted or voided) billed of
    one period key: their quantity, whether one of them started the period (was rated as its
    first line, so charged a graduated price's first-tier flat fee), and whether one of them, not a
    late-usage correction, closed it (was rated as its last line, so judged its minimum spend)."""

    quantity: Decimal
    started: bool
    # The latest end of those lines: past a line's own end, a later part of its period was billed
    # before this line's usage was read (again).
    latest_end: datetime | None = None
    # The parts on those invoices, snapshotted or not: a later part counts the usage of each
    # earlier part's time with that part's subjects (a customer's subjects may change between
    # parts). A key whose only parts are not snapshotted yet bills 0 with them.
    parts: tuple[BilledPart, ...] = ()
    # The quantities of the period each of those lines was rated over, [pre, pre + quantity)
    # (pre None: a line that did not record it).
    ranges: tuple[tuple[Decimal | None, Decimal], ...] = ()
    closed: bool = False

    def __add__(self, other: Billed) -> Billed:
        ends = [x for x in (self.latest_end, other.latest_end) if x is not None]
        return Billed(
            self.quantity + other.quantity,
            self.started or other.started,
            max(ends, default=None),
            self.parts + other.parts,
            self.ranges + other.ranges,
            self.closed or other.closed,
        )

    def first_hole(self) -> tuple[Decimal, Decimal | None]:
        """Where the next line of the period is rated from, and where the next billed range starts
        above it (None: nothing billed above it). The start is the lowest quantity no line that
        counts was rated over: usually all of them, end to end (`quantity`). A part voided to be
        billed again leaves a hole where it was rated, which whatever bills its usage next fills
        (no more than it holds): so the lines of a period, whatever the order they are read in,
        rate the period's total once (a tier, a package or a maximum spend counted over the same
        units twice would not add up to it)."""
        if any(pre is None for pre, _ in self.ranges) or sum((q for _, q in self.ranges), Decimal(0)) != self.quantity:
            return self.quantity, None  # lines that did not record where they were rated: end to end
        at = Decimal(0)
        for pre, size in sorted((pre, size) for pre, size in self.ranges if pre is not None and size):
            if pre > at:
                return at, pre
            at = max(at, pre + size)
        return at, None


@dataclass(frozen=True, slots=True)
class StoredIssue:
    """A validation issue kept on the invoice (OpenMeter's validationIssues)."""

    id: str
    severity: IssueSeverity
    code: str
    message: str
    component: str
    field: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    """The customer as the invoice was made for it (OpenMeter copies it onto the invoice)."""

    id: str
    name: str
    key: str | None = None
    # The customer's subject keys, without its key (OpenMeter's usageAttribution.subjectKeys).
    subject_keys: Sequence[str] = ()
    billing_address: Mapping[str, str] = field(default_factory=dict)

    @property
    def usage_subjects(self) -> tuple[str, ...]:
        """Every event subject that counts for the invoice: the key and the subject keys (as
        Customer.usage_subjects, and OpenMeter's CustomerUsageAttribution.GetValues)."""
        return tuple(dict.fromkeys(([self.key] if self.key else []) + list(self.subject_keys)))


@dataclass(frozen=True, slots=True)
class AppAttempt:
    """The last call to the invoicing app, recorded before it is made: a worker that finds one
    without an outcome (it crashed, or the call timed out) asks the app again with the same
    idempotency key instead of starting a fresh call."""

    hook: str
    state: State
    idempotency_key: str
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    # The app answered that it finishes later (custom invoicing waits for its callback).
    waiting: bool = False


@dataclass(frozen=True, slots=True)
class OwedNotification:
    """An invoice.created / invoice.updated notification its write owes, recorded in the write's
    own transaction: the listeners are told after the commit, and a process that dies before
    (or a listener that fails) leaves it here for the billing worker's pass to tell.

    `since` is the owing write's time; telling clears the record only while it is still the same,
    so a later write's own notification is never cleared by an earlier one's."""

    created: bool
    since: datetime


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    namespace: str
    type: InvoiceType
    state: State
    customer: CustomerSnapshot
    currency: str
    profile_id: str
    invoicing_app_id: str
    payment_app_id: str
    tax_app_id: str
    # The effective workflow, snapshotted when the invoice was created.
    workflow: Workflow
    created_at: datetime
    updated_at: datetime
    supplier: Mapping[str, object] = field(default_factory=dict)
    number: str | None = None
    description: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    # Gathering: when its earliest line becomes due. Draft: when the lines' quantities are read.
    collection_at: datetime | None = None
    draft_until: datetime | None = None
    issued_at: datetime | None = None
    due_at: datetime | None = None
    sent_to_customer_at: datetime | None = None
    voided_at: datetime | None = None
    # Why the user voided it (OpenMeter's void takes a reason; the invoicing app is told it).
    void_reason: str | None = None
    paid_at: datetime | None = None
    quantity_snapshotted_at: datetime | None = None
    totals: Totals = Totals()
    validation_issues: Sequence[StoredIssue] = ()
    invoicing_external_id: str | None = None
    payment_external_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    app_attempt: AppAttempt | None = None
    # The billing worker's schedule for this invoice and its failures so far (retry backoff).
    next_attempt_at: datetime | None = None
    attempts: int = 0
    deleted_at: datetime | None = None
    owed_notification: OwedNotification | None = None

    def owing(self, now: datetime, *, created: bool = False) -> Invoice:
        """This invoice as written by a change its listeners must hear of: a notification still
        owed for its creation stays one for its creation."""
        first = created or (self.owed_notification is not None and self.owed_notification.created)
        return evolve(self, owed_notification=OwedNotification(first, now))

    @property
    def status(self) -> InvoiceStatus:
        return self.state.status

    @property
    def customer_id(self) -> str:
        return self.customer.id


@dataclass(frozen=True, slots=True)
class InvoiceListQuery:
    """Filters of GET /api/v1/billing/invoices (all optional; empty sequences mean any)."""

    offset: int = 0
    limit: int = 100
    customers: Sequence[str] = ()
    statuses: Sequence[InvoiceStatus] = ()
    extended_statuses: Sequence[State] = ()
    currencies: Sequence[str] = ()
    issued_after: datetime | None = None
    issued_before: datetime | None = None
    period_start_after: datetime | None = None
    period_start_before: datetime | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    include_deleted: bool = False
    order_by: str = "createdAt"
    descending: bool = False


@dataclass(frozen=True, slots=True)
class PartyUpdate:
    """A BillingPartyReplaceUpdate as a draft's PUT applies it (OpenMeter's
    mergeInvoiceSupplierFromAPI / mergeInvoiceCustomerFromAPI): the name, the first address (none:
    no address) and, for the supplier, the tax ID's code (none: no tax ID). A customer's tax ID is
    accepted and kept nowhere, as in OpenMeter."""

    name: str
    address: Address | None
    tax_code: str | None = None

    def validate(self, v: Violations, location: str) -> None:
        """A draft's party needs a name; a supplier what a profile's supplier needs (a country
        above all, and a tax code of a valid length); an address's country is ISO 3166-1."""
        if location == "supplier":
            Supplier(self.name, self.address or Address(), tax_code=self.tax_code).validate(v, location)
            return
        if not self.name:
            v.add(f"{location}.name", "required", "required")
        elif len(self.name) > 256:
            v.add(f"{location}.name", "must be at most 256 characters", "invalid_length")
        if self.address is not None and self.address.country is not None and not COUNTRY_RE.match(self.address.country):
            v.add(
                f"{location}.addresses[0].country", "must be an ISO 3166-1 alpha-2 code such as US", "invalid_country"
            )


@dataclass(frozen=True, slots=True)
class UsageRequest:
    """Usage of a feature's meter for a customer over [start, end): one line's quantity.

    `subjects`: the event subjects that count, as a standard invoice copied them from its customer
    when it was made (OpenMeter reads a line's quantity for the invoice's customer usage
    attribution, not the customer's current one); None: the customer's subjects now."""

    feature_key: str
    customer_id: str
    start: datetime
    end: datetime
    subjects: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class PendingLineInput:
    """One manual line (OpenMeter's InvoicePendingLineCreate): a flat fee (`per_unit_amount` x
    `quantity`) or a usage line (`price` applied to `feature_key`'s metered usage over the period)."""

    name: str
    period_start: datetime
    period_end: datetime
    invoice_at: datetime
    price: Price | None = None
    feature_key: str | None = None
    per_unit_amount: Decimal | None = None
    quantity: Decimal | None = None
    description: str | None = None
    rate_card_discounts: Discounts = NO_DISCOUNTS
    tax_config: TaxConfig | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # A flat fee's payment term (shown with its price; when it is due is `invoice_at`).
    payment_term: str | None = None
    # Simulation only: the usage of the line's period billed before it (OpenMeter's
    # preLinePeriodQuantity), which the line is rated on top of.
    pre_line_period_quantity: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PendingLinesInput:
    currency: str
    lines: Sequence[PendingLineInput]


@dataclass(frozen=True, slots=True)
class InvoiceNowInput:
    """POST /api/v1/billing/invoices/invoice: the customer's lines due by `as_of` become invoices."""

    customer: str
    as_of: datetime | None = None
    line_ids: Sequence[str] = ()
    progressive_billing_override: bool | None = None
    # The billing worker's collection takes the lines due by the latest collection anchor at or
    # before `as_of` under an anchored alignment; invoice-now through the API bypasses it, as
    # OpenMeter's (WithBypassCollectionAlignment).
    collection_aligned: bool = False


@dataclass(frozen=True, slots=True)
class VoidAction:
    """One line's fate in a void (OpenMeter's VoidInvoiceActionCreate at 100 %): discarded, or
    billed again from `next_invoice_at` (None: at once)."""

    kind: VoidLineAction = VoidLineAction.DISCARD
    next_invoice_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class VoidInput:
    """POST /invoices/{id}/void: why, what happens to the lines, and per-line exceptions (by line ID)."""

    reason: str
    action: VoidAction = VoidAction()
    overrides: Mapping[str, VoidAction] = field(default_factory=dict)

    def action_for(self, line_id: str) -> VoidAction:
        return self.overrides.get(line_id, self.action)


@dataclass(frozen=True, slots=True)
class InvoiceWithLines:
    invoice: Invoice
    lines: Sequence[InvoiceLine] = ()


def by_namespace(invoices: Sequence[Invoice]) -> dict[str, list[Invoice]]:
    """Invoices grouped by namespace (work on invoices is done per namespace), in their order."""
    out: dict[str, list[Invoice]] = {}
    for invoice in invoices:
        out.setdefault(invoice.namespace, []).append(invoice)
    return out
