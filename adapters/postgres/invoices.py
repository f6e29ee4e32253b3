"""Invoices and lines over Postgres (InvoiceRepository), sharing the billing unit of work's session.

The billing worker's leases are row locks: `claim` and `claim_gathering_due` select with
FOR UPDATE SKIP LOCKED inside the caller's transaction, so racing workers each get different
invoices and a killed worker's locks vanish with its connection; nothing is half-written because
the state change and its lines commit together.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import String, and_, any_, bindparam, func, insert, literal, or_, text, tuple_, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.billing import (
    tax_config_from_json,
    tax_config_to_json,
    workflow_from_json,
    workflow_to_json,
)
from adapters.postgres.billing_tables import BillingMarkRow, InvoiceLineRow, InvoiceRow
from adapters.postgres.db import plain_columns
from domain.billing.apps.port import IssueSeverity
from domain.billing.invoice_states import InvoiceStatus, State
from domain.billing.invoices import (
    CORRECTION_KEY,
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
    OwedNotification,
    StoredIssue,
    SubscriptionRef,
    Totals,
    VoidLineAction,
)
from domain.billing.models import Workflow
from domain.catalog.prices import NO_DISCOUNTS, Discounts, Price, parse_price
from domain.catalog.rating import DiscountReason, LineCategory
from domain.catalog.wire import Reader
from domain.errors import ConflictError

_TOTAL_FIELDS = (
    "amount",
    "charges_total",
    "discounts_total",
    "credits_total",
    "taxes_inclusive_total",
    "taxes_exclusive_total",
    "taxes_total",
    "total",
)


def _totals(row: Any) -> Totals:
    # Numeric columns already read as Decimal.
    return Totals(*(getattr(row, name) for name in _TOTAL_FIELDS))


def _totals_columns(totals: Totals) -> dict[str, Decimal]:
    return {name: getattr(totals, name) for name in _TOTAL_FIELDS}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _customer_json(c: CustomerSnapshot) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "key": c.key,
        "subject_keys": list(c.subject_keys),
        "billing_address": dict(c.billing_address),
    }


def _subject_keys(value: dict[str, Any]) -> tuple[str, ...]:
    if "subject_keys" in value:
        return tuple(value["subject_keys"])
    # Stored before the subject keys were kept apart: `usage_subject_keys` was the key, then the
    # subject keys not equal to it. The same subjects count either way; only a subject key equal
    # to the key is no longer shown.
    keys = tuple(value.get("usage_subject_keys", ()))
    return keys[1:] if keys and keys[0] == value.get("key") else keys


def _customer(value: dict[str, Any]) -> CustomerSnapshot:
    return CustomerSnapshot(
        id=value["id"],
        name=value["name"],
        key=value.get("key"),
        subject_keys=_subject_keys(value),
        billing_address=dict(value.get("billing_address", {})),
    )


def _attempt_json(a: AppAttempt | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {
        "hook": a.hook,
        "state": a.state.value,
        "idempotency_key": a.idempotency_key,
        "started_at": _iso(a.started_at),
        "finished_at": _iso(a.finished_at),
        "error": a.error,
        "waiting": a.waiting,
    }


def _attempt(value: dict[str, Any] | None) -> AppAttempt | None:
    if not value:
        return None
    started = _dt(value["started_at"])
    assert started is not None
    return AppAttempt(
        hook=value["hook"],
        state=State(value["state"]),
        idempotency_key=value["idempotency_key"],
        started_at=started,
        finished_at=_dt(value.get("finished_at")),
        error=value.get("error"),
        waiting=bool(value.get("waiting", False)),
    )


def _issue_json(i: StoredIssue) -> dict[str, Any]:
    return {
        "id": i.id,
        "severity": i.severity.value,
        "code": i.code,
        "message": i.message,
        "component": i.component,
        "field": i.field,
    }


def _issue(value: dict[str, Any]) -> StoredIssue:
    return StoredIssue(
        id=value["id"],
        severity=IssueSeverity(value["severity"]),
        code=value["code"],
        message=value["message"],
        component=value["component"],
        field=value.get("field"),
    )


def _invoice(row: Any) -> Invoice:
    if isinstance(row, Row):
        row = _InvoiceRecord._make(row)
    return Invoice(
        id=row.id,
        namespace=row.namespace,
        type=InvoiceType(row.type),
        state=State(row.extended_status),
        customer=_customer(row.customer),
        currency=row.currency,
        profile_id=row.profile_id,
        invoicing_app_id=row.invoicing_app_id,
        payment_app_id=row.payment_app_id,
        tax_app_id=row.tax_app_id,
        workflow=workflow_from_json(Workflow, row.workflow),
        created_at=row.created_at,
        updated_at=row.updated_at,
        supplier=dict(row.supplier),
        number=row.number,
        description=row.description,
        period_start=row.period_start,
        period_end=row.period_end,
        collection_at=row.collection_at,
        draft_until=row.draft_until,
        issued_at=row.issued_at,
        due_at=row.due_at,
        sent_to_customer_at=row.sent_to_customer_at,
        voided_at=row.voided_at,
        void_reason=row.void_reason,
        paid_at=row.paid_at,
        quantity_snapshotted_at=row.quantity_snapshotted_at,
        totals=_totals(row),
        validation_issues=tuple(_issue(i) for i in row.validation_issues),
        invoicing_external_id=row.invoicing_external_id,
        payment_external_id=row.payment_external_id,
        metadata=dict(row.meta),
        app_attempt=_attempt(row.app_attempt),
        next_attempt_at=row.next_attempt_at,
        attempts=row.attempts,
        deleted_at=row.deleted_at,
        owed_notification=_owed(row.notification_owed, row.notification_owed_at),
    )


def _owed(kind: str | None, since: datetime | None) -> OwedNotification | None:
    if kind is None or since is None:
        return None
    return OwedNotification(kind == "created", since)


def _invoice_values(inv: Invoice) -> dict[str, Any]:
    """Every column of an invoice's row, by attribute name: what the row is built from, and what
    an update sends without building the row (as `_line_values` for lines)."""
    return dict(
        namespace=inv.namespace,
        id=inv.id,
        type=inv.type.value,
        status=inv.status.value,
        extended_status=inv.state.value,
        customer_id=inv.customer.id,
        currency=inv.currency,
        number=inv.number,
        description=inv.description,
        profile_id=inv.profile_id,
        invoicing_app_id=inv.invoicing_app_id,
        payment_app_id=inv.payment_app_id,
        tax_app_id=inv.tax_app_id,
        customer=_customer_json(inv.customer),
        supplier=dict(inv.supplier),
        workflow=workflow_to_json(inv.workflow),
        period_start=inv.period_start,
        period_end=inv.period_end,
        collection_at=inv.collection_at,
        draft_until=inv.draft_until,
        issued_at=inv.issued_at,
        due_at=inv.due_at,
        sent_to_customer_at=inv.sent_to_customer_at,
        voided_at=inv.voided_at,
        void_reason=inv.void_reason,
        paid_at=inv.paid_at,
        quantity_snapshotted_at=inv.quantity_snapshotted_at,
        validation_issues=[_issue_json(i) for i in inv.validation_issues],
        invoicing_external_id=inv.invoicing_external_id,
        payment_external_id=inv.payment_external_id,
        meta=dict(inv.metadata),
        app_attempt=_attempt_json(inv.app_attempt),
        next_attempt_at=inv.next_attempt_at,
        attempts=inv.attempts,
        created_at=inv.created_at,
        updated_at=inv.updated_at,
        deleted_at=inv.deleted_at,
        notification_owed=_owed_kind(inv.owed_notification),
        notification_owed_at=inv.owed_notification.since if inv.owed_notification is not None else None,
        **_totals_columns(inv.totals),
    )


def _owed_kind(owed: OwedNotification | None) -> str | None:
    if owed is None:
        return None
    return "created" if owed.created else "updated"


def _discounts_json(d: Discounts) -> dict[str, Any] | None:
    # Exact strings, not the wire's float percentage: a stored line must rate the same forever.
    if d.is_empty():
        return None
    return {
        "percentage": str(d.percentage) if d.percentage is not None else None,
        "usage_quantity": str(d.usage_quantity) if d.usage_quantity is not None else None,
        "percentage_correlation_id": d.percentage_correlation_id,
        "usage_correlation_id": d.usage_correlation_id,
    }


def _discounts(value: dict[str, Any] | None) -> Discounts:
    if not value:
        return NO_DISCOUNTS
    pct, usage = value.get("percentage"), value.get("usage_quantity")
    return Discounts(
        percentage=Decimal(pct) if pct is not None else None,
        usage_quantity=Decimal(usage) if usage is not None else None,
        percentage_correlation_id=value.get("percentage_correlation_id"),
        usage_correlation_id=value.get("usage_correlation_id"),
    )


# Parsed prices by their stored JSON: the lines of a billing run share a few prices, and parsing
# one was a tenth of reading a line. Prices are immutable, so one object serves every line.
_PRICES: dict[bytes, Price] = {}
_PRICES_KEPT = 4096


def _price(value: dict[str, Any] | None) -> Price | None:
    if value is None:
        return None
    key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    found = _PRICES.get(key)
    if found is not None:
        return found
    reader = Reader()
    price = parse_price(reader, value, "price", allow_usage=True)
    if price is None or reader.issues.errors:  # written by this code: only a schema drift gets here
        raise RuntimeError(f"stored line price does not read back: {reader.issues.errors}")
    if len(_PRICES) >= _PRICES_KEPT:
        _PRICES.clear()
    _PRICES[key] = price
    return price


def _dec(value: Any) -> Decimal | None:
    return Decimal(value) if value is not None else None


def _line_and(row: Any) -> tuple[InvoiceLine, Any]:
    """A line read with one more column after its own (`_LINES_WITH_CUSTOMER`, `_LINES_WITH_STATUS`)."""
    return _line(_LineRecord._make(row[:-1])), row[-1]


def _any_of(column: Any, values: Sequence[str]) -> Any:
    """`column` equal to any of `values`, as one array parameter rather than one parameter per
    value: a list can be longer than a statement's 32,767 parameters."""
    return column == any_(literal(list(values), ARRAY(String)))


def _line(row: Any) -> InvoiceLine:
    if isinstance(row, Row):
        row = _LineRecord._make(row)
    sub = (
        SubscriptionRef(
            row.subscription_id,
            row.subscription_phase_id or "",
            row.subscription_item_id or "",
            row.subscription_billing_period_start,
            row.subscription_billing_period_end,
        )
        if row.subscription_id
        else None
    )
    return InvoiceLine(
        id=row.id,
        namespace=row.namespace,
        invoice_id=row.invoice_id,
        type=LineType(row.type),
        status=LineStatus(row.status),
        managed_by=ManagedBy(row.managed_by),
        name=row.name,
        currency=row.currency,
        period_start=row.period_start,
        period_end=row.period_end,
        invoice_at=row.invoice_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        parent_line_id=row.parent_line_id,
        description=row.description,
        full_period_start=row.full_period_start,
        full_period_end=row.full_period_end,
        period_key=row.period_key,
        sync_key=row.sync_key,
        feature_key=row.feature_key,
        price=_price(row.price),
        rate_card_discounts=_discounts(row.rate_card_discounts),
        per_unit_amount=_dec(row.per_unit_amount),
        quantity=_dec(row.quantity),
        metered_quantity=_dec(row.metered_quantity),
        pre_line_period_quantity=_dec(row.pre_line_period_quantity),
        period_started=row.period_started,
        period_closed=row.period_closed,
        quantity_snapshotted_at=row.quantity_snapshotted_at,
        child_key=row.child_key,
        category=LineCategory(row.category) if row.category else None,
        payment_term=row.payment_term,
        totals=_totals(row),
        discounts=tuple(_discount(d) for d in row.discounts),
        tax_config=tax_config_from_json(row.tax_config) if row.tax_config else None,
        subscription=sub,
        metadata=dict(row.meta),
        deleted_at=row.deleted_at,
        invoicing_external_id=row.invoicing_external_id,
        usage_subjects=tuple(row.usage_subjects) if row.usage_subjects is not None else None,
        void_action=VoidLineAction(row.void_action) if row.void_action is not None else None,
        netted_of=_dec(row.netted_of),
    )


def _discount(d: dict[str, Any]) -> LineDiscount:
    quantity, pre = d.get("quantity"), d.get("preLinePeriodQuantity")
    return LineDiscount(
        d["id"],
        DiscountReason(d["reason"]),
        Decimal(d["amount"]),
        d.get("description"),
        None if quantity is None else Decimal(quantity),
        None if pre is None else Decimal(pre),
        d.get("invoicingExternalId"),
    )


def _discount_json(d: LineDiscount) -> dict[str, Any]:
    out: dict[str, Any] = {"id": d.id, "reason": d.reason.value, "amount": str(d.amount), "description": d.description}
    # Only a usage discount has quantities; the other rows keep their shape.
    if d.quantity is not None:
        out["quantity"] = str(d.quantity)
    if d.pre_line_period_quantity is not None:
        out["preLinePeriodQuantity"] = str(d.pre_line_period_quantity)
    if d.invoicing_external_id is not None:
        out["invoicingExternalId"] = d.invoicing_external_id
    return out


def _line_row(line: InvoiceLine) -> InvoiceLineRow:
    return InvoiceLineRow(**_line_values(line))


def _line_values(line: InvoiceLine) -> dict[str, Any]:
    """Every column of a line's row, by attribute name: what the row is built from, and what bulk
    statements send without building rows (SQLModel's validating constructor is most of the CPU of
    writing lines)."""
    return dict(
        namespace=line.namespace,
        id=line.id,
        invoice_id=line.invoice_id,
        parent_line_id=line.parent_line_id,
        type=line.type.value,
        status=line.status.value,
        managed_by=line.managed_by.value,
        name=line.name,
        description=line.description,
        currency=line.currency,
        period_start=line.period_start,
        period_end=line.period_end,
        invoice_at=line.invoice_at,
        full_period_start=line.full_period_start,
        full_period_end=line.full_period_end,
        period_key=line.period_key,
        sync_key=line.sync_key,
        feature_key=line.feature_key,
        price=line.price.rest() if line.price is not None else None,
        rate_card_discounts=_discounts_json(line.rate_card_discounts),
        per_unit_amount=line.per_unit_amount,
        quantity=line.quantity,
        metered_quantity=line.metered_quantity,
        pre_line_period_quantity=line.pre_line_period_quantity,
        period_started=line.period_started,
        period_closed=line.period_closed,
        quantity_snapshotted_at=line.quantity_snapshotted_at,
        child_key=line.child_key,
        category=line.category.value if line.category else None,
        payment_term=line.payment_term,
        discounts=[_discount_json(d) for d in line.discounts],
        tax_config=tax_config_to_json(line.tax_config) if line.tax_config else None,
        subscription_id=line.subscription.subscription_id if line.subscription else None,
        subscription_phase_id=line.subscription.phase_id if line.subscription else None,
        subscription_item_id=line.subscription.item_id if line.subscription else None,
        subscription_billing_period_start=line.subscription.billing_period_start if line.subscription else None,
        subscription_billing_period_end=line.subscription.billing_period_end if line.subscription else None,
        meta=dict(line.metadata),
        invoicing_external_id=line.invoicing_external_id,
        usage_subjects=list(line.usage_subjects) if line.usage_subjects is not None else None,
        void_action=line.void_action.value if line.void_action is not None else None,
        netted_of=line.netted_of,
        created_at=line.created_at,
        updated_at=line.updated_at,
        deleted_at=line.deleted_at,
        **_totals_columns(line.totals),
    )


def _update_by_key(row_type: Any) -> tuple[Any, dict[str, str]]:
    """One UPDATE of every column of a row by its key, built once: the statement, with the bound
    parameter of each attribute (values come keyed by attribute name). Executed with one row's
    values or, as an executemany, many rows'; no statement is built per call."""
    table = row_type.__table__
    names = {c.key: f"v_{c.columns[0].name}" for c in sa_inspect(row_type).column_attrs}
    statement = (
        update(table)
        .where(table.c.namespace == bindparam("k_namespace"), table.c.id == bindparam("k_id"))
        .values({sa_inspect(row_type).column_attrs[k].columns[0]: bindparam(v) for k, v in names.items()})
    )
    return statement, names


_UPDATE_INVOICE, _INVOICE_PARAMS = _update_by_key(InvoiceRow)
# An owed notification cleared once told, unless a later write owes one of its own (executemany).
_INVOICES: Any = InvoiceRow.__table__  # type: ignore[attr-defined]
_CLEAR_OWED = (
    update(_INVOICES)
    .where(
        _INVOICES.c.namespace == bindparam("k_namespace"),
        _INVOICES.c.id == bindparam("k_id"),
        _INVOICES.c.notification_owed_at == bindparam("k_since"),
    )
    .values(notification_owed=None, notification_owed_at=None)
)
_UPDATE_LINE, _LINE_PARAMS = _update_by_key(InvoiceLineRow)


def _params(values: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    params = {names[k]: v for k, v in values.items()}
    params["k_namespace"] = values["namespace"]
    params["k_id"] = values["id"]
    return params


def _fresh(statement: Any) -> Any:
    """Rows are read anew even when the session holds them (updates are by statement, not through
    the session's objects)."""
    return statement.execution_options(populate_existing=True)


_ORDER: dict[str, Any] = {
    "createdAt": col(InvoiceRow.created_at),
    "issuedAt": col(InvoiceRow.issued_at),
    "status": col(InvoiceRow.extended_status),
    # The name snapshotted on the invoice, as OpenMeter's ByCustomerName (its customer_name column).
    "customer.name": col(InvoiceRow.customer)["name"].astext,
    "updatedAt": col(InvoiceRow.updated_at),
    "periodStart": col(InvoiceRow.period_start),
}

# Whether a snapshotted line of the group started its period (was rated as the period's first
# line). Lines snapshotted before `period_started` was recorded: by the rule the rating used then,
# their position (the period's start, nothing billed before).
_SNAPSHOTTED = col(InvoiceLineRow.quantity).is_not(None)
_STARTED = func.bool_or(
    or_(
        col(InvoiceLineRow.period_started).is_(False),
        and_(
            col(InvoiceLineRow.period_started).is_(None),
            func.coalesce(InvoiceLineRow.full_period_start, InvoiceLineRow.period_start) == InvoiceLineRow.period_start,
            func.coalesce(InvoiceLineRow.pre_line_period_quantity, 0) == 0,
        ),
    )
).filter(_SNAPSHOTTED)
# Whether a snapshotted line of the group closed its period (was rated as the period's last line,
# so judged its minimum spend): its end is its full period's. A late-usage correction ends there
# too but closes nothing: it is rated above what the line it corrects charged.
_CLOSED = func.bool_or(
    func.coalesce(InvoiceLineRow.full_period_end, InvoiceLineRow.period_end) == InvoiceLineRow.period_end
).filter(_SNAPSHOTTED, col(InvoiceLineRow.meta)[CORRECTION_KEY].astext.is_(None))
# The latest end of the snapshotted lines billing a period key (Billed.latest_end).
_LATEST_END = func.max(InvoiceLineRow.period_end).filter(_SNAPSHOTTED)
# The parts billing a period key (Billed.parts), late-usage corrections left out: each part's time
# and the subjects it counts, its own or its invoice's customer copy's (read by `_parts`). A part
# not snapshotted yet is one too (a draft waiting for late events, when a later part is read
# first): the later part reads its time for the subjects it copied, not its own.
_PARTS = func.json_agg(
    func.json_build_array(
        InvoiceLineRow.period_start, InvoiceLineRow.period_end, InvoiceLineRow.usage_subjects, InvoiceRow.customer
    )
).filter(col(InvoiceLineRow.meta)[CORRECTION_KEY].astext.is_(None))


# Where each snapshotted line billing a period key was rated (Billed.ranges): its
# preLinePeriodQuantity and quantity, as text (JSON numbers would come back as floats).
_RANGES = func.json_agg(
    func.json_build_array(
        func.cast(col(InvoiceLineRow.pre_line_period_quantity), String), func.cast(col(InvoiceLineRow.quantity), String)
    )
).filter(_SNAPSHOTTED)


def _ranges(value: list[list[str | None]] | None) -> tuple[tuple[Decimal | None, Decimal], ...]:
    ranges = ((Decimal(pre) if pre is not None else None, Decimal(quantity or 0)) for pre, quantity in value or ())
    return tuple(sorted(ranges, key=lambda r: (r[0] is not None, r[0] or 0, r[1])))


def _parts(value: list[list[Any]] | None) -> tuple[BilledPart, ...]:
    parts = (
        BilledPart(
            datetime.fromisoformat(start),
            datetime.fromisoformat(end),
            tuple(own) if own is not None else (_customer(customer).usage_subjects or None),
        )
        for start, end, own, customer in value or ()
    )
    return tuple(sorted(parts, key=lambda p: (p.start, p.end, p.subjects or ())))


# Invoices whose lines no longer count as billed (their usage is billed again by a later run).
# What no longer needs its apps (OpenMeter's IsAppUsed final statuses), and gathering invoices,
# which take their apps from the profile when they are invoiced.
_SETTLED_OR_GATHERING = [
    s.value
    for s in (
        InvoiceStatus.GATHERING,
        InvoiceStatus.PAID,
        InvoiceStatus.UNCOLLECTIBLE,
        InvoiceStatus.VOIDED,
        InvoiceStatus.DELETED,
    )
]
_NOT_BILLED = (InvoiceStatus.GATHERING.value, InvoiceStatus.VOIDED.value, InvoiceStatus.DELETED.value)


def _discarded_by_a_void(lines: Any, invoices: Any) -> Any:
    """A line of a voided invoice that the void discarded (forgiven, so it still counts as billed;
    NULL: an app's void) rather than put back to be billed again (VoidLineAction)."""
    return and_(
        col(invoices.status) == InvoiceStatus.VOIDED.value,
        func.coalesce(col(lines.void_action), VoidLineAction.DISCARD.value) != VoidLineAction.PENDING.value,
    )


# A line that counts as billed for its period key: on an invoice past gathering and not deleted,
# or discarded by a void.
_COUNTS_AS_BILLED = or_(col(InvoiceRow.status).not_in(_NOT_BILLED), _discarded_by_a_void(InvoiceLineRow, InvoiceRow))
# Issued invoices that count: their lines' quantities are final.
_ISSUED = tuple(
    s.value
    for s in (
        InvoiceStatus.ISSUED,
        InvoiceStatus.PAYMENT_PROCESSING,
        InvoiceStatus.OVERDUE,
        InvoiceStatus.PAID,
        InvoiceStatus.UNCOLLECTIBLE,
    )
)
# Invoices whose lines are still to be (re)rated.
_BEING_BILLED = (InvoiceStatus.GATHERING.value, InvoiceStatus.DRAFT.value, InvoiceStatus.ISSUING.value)


# Reads return plain rows with the attributes `_invoice` and `_line` read, without building an ORM
# object per row (that was most of a billing batch's read time).
_INVOICE_COLUMNS = plain_columns(InvoiceRow)
_LINE_COLUMNS = plain_columns(InvoiceLineRow)
# A line and its invoice's customer (the late-usage pass), or its invoice's status (the sync).
_LINES_WITH_CUSTOMER: list[Any] = [*_LINE_COLUMNS, col(InvoiceRow.customer_id).label("invoice_customer_id")]
# The late-usage pass also reads the invoice's customer copy (the subjects the line counted).
_LINES_WITH_CUSTOMER_COPY: list[Any] = [*_LINES_WITH_CUSTOMER, col(InvoiceRow.customer)]


def _line_on_its_invoice(lines: Any, invoices: Any) -> Any:
    """A line joined to its invoice (either table may be an alias)."""
    return and_(col(invoices.namespace) == col(lines.namespace), col(invoices.id) == col(lines.invoice_id))


_ON_ITS_INVOICE = _line_on_its_invoice(InvoiceLineRow, InvoiceRow)
# The late-usage pass's second select (issued_usage_lines) reads the line and invoice tables twice.
_ISSUED_LINE = aliased(InvoiceLineRow)
_ISSUED_INVOICE = aliased(InvoiceRow)


def _issued_usage_line(lines: Any, invoices: Any) -> tuple[Any, ...]:
    """A top-level usage line billing a period (the predicate of billing_invoice_lines_usage_ended,
    whole, so that index applies) on a live invoice that was issued and still counts (voided, if
    the void discarded the line: it forgave what the line billed, not usage stored since)."""
    return (
        lines.type == LineType.USAGE_BASED.value,
        lines.period_key.is_not(None),
        lines.parent_line_id.is_(None),
        lines.deleted_at.is_(None),
        col(invoices.deleted_at).is_(None),
        or_(col(invoices.status).in_(_ISSUED), _discarded_by_a_void(lines, invoices)),
    )


_LINES_WITH_STATUS: list[Any] = [*_LINE_COLUMNS, col(InvoiceRow.status).label("invoice_status")]
# A plain row's attributes are looked up by name on every read (about 2 us each); a named tuple's
# are slots. `_invoice` and `_line` read each attribute once, from one of these.
_InvoiceRecord = namedtuple("_InvoiceRecord", [c.key for c in _INVOICE_COLUMNS])  # type: ignore[misc]
_LineRecord = namedtuple("_LineRecord", [c.key for c in _LINE_COLUMNS])  # type: ignore[misc]

# The reads every state change makes, built once with bound parameters (building and cache-keying
# a statement per call was much of the billing run's CPU).
_GET = _fresh(
    select(*_INVOICE_COLUMNS).where(InvoiceRow.namespace == bindparam("namespace"), InvoiceRow.id == bindparam("id"))
)
_GET_LOCKED = _GET.with_for_update()
_GET_MANY = _fresh(
    select(*_INVOICE_COLUMNS)
    .where(
        InvoiceRow.namespace == bindparam("namespace"),
        col(InvoiceRow.id).in_(bindparam("ids", expanding=True)),
    )
    # Locked in one order by every batch, so two batches over shared rows cannot deadlock.
    .order_by(col(InvoiceRow.id))
)
_GET_MANY_LOCKED = _GET_MANY.with_for_update()
# Statistics are refreshed after a pass that wrote at least this many rows (`refresh_statistics`),
# and a tenth of the lines the planner believes there are (-1: never analyzed).
_ANALYZE_AT_LEAST = 500
_LINES_HELD = text("SELECT reltuples FROM pg_class WHERE oid = 'billing_invoice_lines'::regclass")
_ANALYZE = text("ANALYZE billing_invoices, billing_invoice_lines")
_LINES_OF = select(*_LINE_COLUMNS).where(
    InvoiceLineRow.namespace == bindparam("namespace"),
    col(InvoiceLineRow.invoice_id).in_(bindparam("invoice_ids", expanding=True)),
)
_LINE_ORDER = (col(InvoiceLineRow.created_at), col(InvoiceLineRow.id))
# Deleted lines (a draft's lines an update removed) are listed only when asked for.
_LINES = _fresh(_LINES_OF.where(col(InvoiceLineRow.deleted_at).is_(None)).order_by(*_LINE_ORDER))
_LINES_WITH_DELETED = _fresh(_LINES_OF.order_by(*_LINE_ORDER))
_MARKS = BillingMarkRow.__table__  # type: ignore[attr-defined]
_LATE_USAGE_READ = "late_usage_read"
_LATE_USAGE_READ_AT = select(_MARKS.c.at).where(_MARKS.c.name == _LATE_USAGE_READ)
_MARK_LATE_USAGE_READ = (
    pg_insert(BillingMarkRow)
    .values(name=_LATE_USAGE_READ, at=bindparam("at"))
    .on_conflict_do_update(index_elements=["name"], set_={"at": func.greatest(_MARKS.c.at, bindparam("at"))})
)
# Transaction-level advisory locks on period keys (`lock_period_keys`), in the array's order.
_LOCK_PERIOD_KEYS = text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest(CAST(:keys AS text[])) AS k"
)


class PostgresInvoiceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, namespace: str, invoice_id: str, *, lock: bool = False) -> Invoice | None:
        statement = _GET_LOCKED if lock else _GET
        row = (await self._session.exec(statement, params={"namespace": namespace, "id": invoice_id})).first()
        return _invoice(row) if row is not None else None

    async def get_many(self, namespace: str, invoice_ids: Sequence[str], *, lock: bool = False) -> list[Invoice]:
        if not invoice_ids:
            return []
        statement = _GET_MANY_LOCKED if lock else _GET_MANY
        params = {"namespace": namespace, "ids": list(invoice_ids)}
        return [_invoice(row) for row in (await self._session.exec(statement, params=params)).all()]

    async def unfinished_using_app(self, namespace: str, app_id: str, limit: int) -> tuple[list[Invoice], int]:
        statement = select(*_INVOICE_COLUMNS).where(
            InvoiceRow.namespace == namespace,
            col(InvoiceRow.deleted_at).is_(None),
            col(InvoiceRow.status).not_in(_SETTLED_OR_GATHERING),
            or_(
                col(InvoiceRow.invoicing_app_id) == app_id,
                col(InvoiceRow.payment_app_id) == app_id,
                col(InvoiceRow.tax_app_id) == app_id,
            ),
        )
        total = (await self._session.exec(select(func.count()).select_from(statement.subquery()))).one()
        rows = (await self._session.exec(_fresh(statement.order_by(col(InvoiceRow.id)).limit(limit)))).all()
        return [_invoice(row) for row in rows], int(total)

    def _gathering(self, namespace: str, customer_id: str) -> Any:
        return select(*_INVOICE_COLUMNS).where(
            InvoiceRow.namespace == namespace,
            InvoiceRow.customer_id == customer_id,
            InvoiceRow.status == InvoiceStatus.GATHERING.value,
            col(InvoiceRow.deleted_at).is_(None),
        )

    async def get_gathering(
        self, namespace: str, customer_id: str, currency: str, *, lock: bool = False
    ) -> Invoice | None:
        statement = self._gathering(namespace, customer_id).where(InvoiceRow.currency == currency)
        if lock:
            statement = statement.with_for_update()
        row = (await self._session.exec(_fresh(statement))).first()
        return _invoice(row) if row is not None else None

    async def gathering_for_customer(self, namespace: str, customer_id: str, *, lock: bool = False) -> list[Invoice]:
        statement = self._gathering(namespace, customer_id).order_by(col(InvoiceRow.currency))
        if lock:
            statement = statement.with_for_update()
        return [_invoice(row) for row in (await self._session.exec(_fresh(statement))).all()]

    async def insert(self, invoice: Invoice) -> None:
        # An INSERT statement, as insert_many: adding a row object to the session and flushing it
        # ran the ORM's unit of work for one row on every first sync of a customer.
        await self._insert(
            [invoice], f"customer {invoice.customer.id} already has a gathering invoice in {invoice.currency}"
        )

    async def insert_many(self, invoices: Sequence[Invoice]) -> None:
        await self._insert(invoices, "an invoice conflicts with another invoice")

    async def _insert(self, invoices: Sequence[Invoice], conflict: str) -> None:
        if not invoices:
            return
        rows = [_invoice_values(i) for i in invoices]
        try:
            await self._session.exec(insert(InvoiceRow), params=rows if len(rows) > 1 else rows[0])
        except IntegrityError as exc:
            raise ConflictError(conflict) from exc

    async def update(self, invoice: Invoice) -> None:
        await self.update_many([invoice])

    async def update_many(self, invoices: Sequence[Invoice]) -> None:
        # One UPDATE by key (a merge would SELECT the row first), as an executemany for several.
        # Rows held by the session are not synchronized: every read here loads them anew (`_fresh`).
        if not invoices:
            return
        rows = [_params(_invoice_values(invoice), _INVOICE_PARAMS) for invoice in invoices]
        try:
            await self._session.exec(_UPDATE_INVOICE, params=rows if len(rows) > 1 else rows[0])
        except IntegrityError as exc:
            raise ConflictError("invoice update conflicts with another invoice") from exc

    async def list_invoices(self, namespace: str, query: InvoiceListQuery) -> tuple[list[Invoice], int]:
        statement = select(*_INVOICE_COLUMNS).where(InvoiceRow.namespace == namespace)
        if not query.include_deleted:
            statement = statement.where(col(InvoiceRow.deleted_at).is_(None))
        if query.customers:
            statement = statement.where(col(InvoiceRow.customer_id).in_(list(query.customers)))
        if query.statuses:
            statement = statement.where(col(InvoiceRow.status).in_([s.value for s in query.statuses]))
        if query.extended_statuses:
            statement = statement.where(col(InvoiceRow.extended_status).in_([s.value for s in query.extended_statuses]))
        if query.currencies:
            statement = statement.where(col(InvoiceRow.currency).in_(list(query.currencies)))
        bounds = (
            (InvoiceRow.issued_at, query.issued_after, query.issued_before),
            (InvoiceRow.period_start, query.period_start_after, query.period_start_before),
            (InvoiceRow.created_at, query.created_after, query.created_before),
        )
        for column, after, before in bounds:
            if after is not None:
                statement = statement.where(col(column) >= after)
            if before is not None:
                statement = statement.where(col(column) <= before)
        total = (await self._session.exec(select(func.count()).select_from(statement.subquery()))).one()
        order = _ORDER.get(query.order_by, _ORDER["createdAt"])
        keys = (order.desc(), col(InvoiceRow.id).desc()) if query.descending else (order, col(InvoiceRow.id))
        rows = (
            await self._session.exec(_fresh(statement.order_by(*keys).offset(query.offset).limit(query.limit)))
        ).all()
        return [_invoice(row) for row in rows], int(total)

    async def lines(
        self, namespace: str, invoice_ids: Sequence[str], *, include_deleted: bool = False
    ) -> dict[str, list[InvoiceLine]]:
        out: dict[str, list[InvoiceLine]] = {i: [] for i in invoice_ids}
        if not invoice_ids:
            return out
        statement = _LINES_WITH_DELETED if include_deleted else _LINES
        params = {"namespace": namespace, "invoice_ids": list(invoice_ids)}
        for row in (await self._session.exec(statement, params=params)).all():
            out[row.invoice_id].append(_line(row))
        return out

    async def get_lines(self, namespace: str, line_ids: Sequence[str], *, lock: bool = False) -> list[InvoiceLine]:
        if not line_ids:
            return []
        statement = select(*_LINE_COLUMNS).where(
            InvoiceLineRow.namespace == namespace,
            col(InvoiceLineRow.id).in_(list(line_ids)),
            col(InvoiceLineRow.deleted_at).is_(None),
        )
        if lock:
            statement = statement.with_for_update()
        return [_line(row) for row in (await self._session.exec(_fresh(statement))).all()]

    async def insert_lines(self, lines: Sequence[InvoiceLine]) -> None:
        if not lines:
            return
        try:
            await self._session.exec(insert(InvoiceLineRow), params=[_line_values(line) for line in lines])
        except IntegrityError as exc:
            raise ConflictError("a line with the same sync key and period already exists") from exc

    async def update_lines(self, lines: Sequence[InvoiceLine]) -> None:
        if not lines:
            return
        # One UPDATE by key as an executemany, not a SELECT and an UPDATE per line.
        rows = [_params(_line_values(line), _LINE_PARAMS) for line in lines]
        try:
            await self._session.exec(_UPDATE_LINE, params=rows)
        except IntegrityError as exc:
            raise ConflictError("a line with the same sync key and period already exists") from exc

    async def delete_lines(self, namespace: str, line_ids: Sequence[str], at: datetime) -> None:
        if not line_ids:
            return
        ids = list(line_ids)
        await self._session.exec(
            update(InvoiceLineRow)
            .where(
                col(InvoiceLineRow.namespace) == namespace,
                or_(col(InvoiceLineRow.id).in_(ids), col(InvoiceLineRow.parent_line_id).in_(ids)),
                col(InvoiceLineRow.deleted_at).is_(None),
            )
            .values(deleted_at=at, updated_at=at)
        )

    async def delete_children(
        self, namespace: str, parent_ids: Sequence[str], at: datetime, keep: Collection[str] = ()
    ) -> None:
        if not parent_ids:
            return
        statement = update(InvoiceLineRow).where(
            col(InvoiceLineRow.namespace) == namespace,
            col(InvoiceLineRow.parent_line_id).in_(list(parent_ids)),
            col(InvoiceLineRow.deleted_at).is_(None),
        )
        if keep:
            statement = statement.where(col(InvoiceLineRow.id).not_in(list(keep)))
        await self._session.exec(statement.values(deleted_at=at, updated_at=at))

    async def subscription_lines(
        self, namespace: str, subscription_ids: Sequence[str]
    ) -> dict[str, list[tuple[InvoiceLine, InvoiceStatus]]]:
        out: dict[str, list[tuple[InvoiceLine, InvoiceStatus]]] = {i: [] for i in subscription_ids}
        if not subscription_ids:
            return out
        statement = (
            select(*_LINES_WITH_STATUS)
            .join(InvoiceRow, _ON_ITS_INVOICE)
            .where(
                InvoiceLineRow.namespace == namespace,
                # One subscription (a sync's transaction) by equality: planned on no statistics (a
                # first sync filling the table), a list is read by the namespace alone and filtered,
                # every line of the namespace once per subscription.
                col(InvoiceLineRow.subscription_id) == subscription_ids[0]
                if len(subscription_ids) == 1
                else _any_of(col(InvoiceLineRow.subscription_id), subscription_ids),
                col(InvoiceLineRow.parent_line_id).is_(None),
                or_(
                    and_(col(InvoiceLineRow.deleted_at).is_(None), col(InvoiceRow.deleted_at).is_(None)),
                    # A line the user deleted (on an invoice since deleted too, perhaps) still
                    # holds its item's place: the sync must not make it again.
                    and_(
                        col(InvoiceLineRow.deleted_at).is_not(None),
                        col(InvoiceLineRow.managed_by) == ManagedBy.MANUAL.value,
                    ),
                ),
            )
            .order_by(col(InvoiceLineRow.period_start), col(InvoiceLineRow.id))
        )
        for row in (await self._session.exec(_fresh(statement))).all():
            line, status = _line_and(row)
            out[line.subscription.subscription_id if line.subscription else ""].append((line, InvoiceStatus(status)))
        return out

    async def issued_usage_lines(self, ended_after: datetime | None) -> list[tuple[InvoiceLine, str, tuple[str, ...]]]:
        # Two statements rather than one with NOT EXISTS: the anti-join's plan depended on its
        # estimates, and a poor one (tables filled by a sync pass just before any ANALYZE) probed
        # every top-level line of the namespace once per candidate line: 30,000 lines took minutes.
        # The window is two selects, not one ORed condition, so each keeps its index: the lines
        # whose period ended in it (billing_invoice_lines_usage_ended), and every part of the
        # periods an invoice issued in it billed (billing_invoices_issued, then by period key): a
        # draft that waited longer than the window after its period ended (for approval, or an
        # integrator) is corrected for the usage stored after its snapshot, with all of its
        # period's parts, so the pass sees the period's latest part as the other select would.
        # No window (no late-usage read yet): every issued usage line, in one select.
        windows: tuple[Any, ...] = (literal(True),)
        if ended_after is not None:
            issued_lately = (
                select(col(_ISSUED_LINE.namespace), col(_ISSUED_LINE.period_key))
                .join(_ISSUED_INVOICE, _line_on_its_invoice(_ISSUED_LINE, _ISSUED_INVOICE))
                .where(col(_ISSUED_INVOICE.issued_at) > ended_after, *_issued_usage_line(_ISSUED_LINE, _ISSUED_INVOICE))
            )
            windows = (
                col(InvoiceLineRow.period_end) > ended_after,
                tuple_(col(InvoiceLineRow.namespace), col(InvoiceLineRow.period_key)).in_(issued_lately),
            )
        found_by_id: dict[str, tuple[InvoiceLine, str, tuple[str, ...]]] = {}
        for window in windows:
            statement = (
                select(*_LINES_WITH_CUSTOMER_COPY)
                .join(InvoiceRow, _ON_ITS_INVOICE)
                .where(*_issued_usage_line(InvoiceLineRow, InvoiceRow), window)
            )
            for row in (await self._session.exec(_fresh(statement))).all():
                line, customer_id = _line_and(row[:-1])
                found_by_id[line.id] = (line, customer_id, _customer(row[-1]).usage_subjects)
        found = sorted(found_by_id.values(), key=lambda x: (x[0].namespace, x[0].period_key or "", x[0].id))
        keys_by_namespace: dict[str, set[str]] = {}
        for line, _, _ in found:
            keys_by_namespace.setdefault(line.namespace, set()).add(line.period_key or "")
        being_billed = {
            (namespace, key)
            for namespace, keys in keys_by_namespace.items()
            for key in await self.pending_period_keys(namespace, sorted(keys))
        }
        return [x for x in found if (x[0].namespace, x[0].period_key) not in being_billed]

    async def late_usage_read_at(self) -> datetime | None:
        at = (await self._session.exec(_LATE_USAGE_READ_AT)).first()
        return None if at is None else at.astimezone(UTC)

    async def mark_late_usage_read(self, at: datetime) -> None:
        await self._session.exec(_MARK_LATE_USAGE_READ, params={"at": at})

    async def refresh_statistics(self, changed_rows: int) -> None:
        # Autovacuum analyzes a table once about a tenth of it changed, but only on its next round
        # (a minute by default, or never where it is off): a billing pass right after a sync that
        # filled the tables would plan its reads from a picture of before. Planned on no
        # statistics, a period-key read started from every live invoice of the namespace, once
        # per batch round: quadratic in the invoices of a billing run. ANALYZE samples a bounded
        # number of rows, so this costs well under a second, and it blocks no reads or writes.
        if changed_rows < _ANALYZE_AT_LEAST:
            return
        connection = await self._session.connection()
        held = (await connection.execute(_LINES_HELD)).scalar_one()
        if held is None or held < 0 or changed_rows * 10 >= held:
            await connection.execute(_ANALYZE)

    async def pending_period_keys(self, namespace: str, period_keys: Sequence[str]) -> set[str]:
        if not period_keys:
            return set()
        statement = (
            _live_period_lines(select(InvoiceLineRow.period_key), namespace, period_keys)
            .where(col(InvoiceRow.status).in_(_BEING_BILLED))
            .distinct()
        )
        return {key for key in (await self._session.exec(_fresh(statement))).all() if key is not None}

    async def lock_period_keys(self, namespace: str, period_keys: Sequence[str]) -> None:
        # One statement for all keys, taken in the array's (sorted) order by every caller, so two
        # transactions locking overlapping keys cannot deadlock.
        keys = sorted({f"billing-period/{namespace}/{key}" for key in period_keys})
        if keys:
            await self._session.exec(_LOCK_PERIOD_KEYS, params={"keys": keys})  # type: ignore[call-overload]

    async def billed_quantities(
        self, namespace: str, period_keys: Sequence[str], exclude_invoice_id: str | None = None
    ) -> dict[str, Billed]:
        if not period_keys:
            return {}
        statement = (
            _live_period_lines(
                select(  # type: ignore[call-overload]  # sqlmodel types select() up to four columns
                    InvoiceLineRow.period_key,
                    func.sum(InvoiceLineRow.quantity),
                    _STARTED,
                    _LATEST_END,
                    _PARTS,
                    _RANGES,
                    _CLOSED,
                ),
                namespace,
                period_keys,
            )
            .where(_COUNTS_AS_BILLED)
            .group_by(col(InvoiceLineRow.period_key))
        )
        if exclude_invoice_id is not None:
            statement = statement.where(InvoiceRow.id != exclude_invoice_id)
        rows = (await self._session.exec(_fresh(statement))).all()
        return {
            key: Billed(Decimal(total or 0), bool(started), latest_end, _parts(parts), _ranges(ranges), bool(closed))
            for key, total, started, latest_end, parts, ranges, closed in rows
            if key is not None and (total is not None or parts)
        }

    async def billed_quantities_by_invoice(
        self, namespace: str, period_keys: Sequence[str]
    ) -> dict[str, dict[str, Billed]]:
        if not period_keys:
            return {}
        statement = (
            _live_period_lines(
                select(  # type: ignore[call-overload]  # sqlmodel types select() up to four columns
                    InvoiceLineRow.period_key,
                    InvoiceRow.id,
                    func.sum(InvoiceLineRow.quantity),
                    _STARTED,
                    _LATEST_END,
                    _PARTS,
                    _RANGES,
                    _CLOSED,
                ),
                namespace,
                period_keys,
            )
            .where(_COUNTS_AS_BILLED)
            .group_by(col(InvoiceLineRow.period_key), col(InvoiceRow.id))
        )
        out: dict[str, dict[str, Billed]] = {}
        rows = (await self._session.exec(_fresh(statement))).all()
        for key, invoice_id, total, started, latest_end, parts, ranges, closed in rows:
            if key is not None and (total is not None or parts):
                out.setdefault(key, {})[invoice_id] = Billed(
                    Decimal(total or 0), bool(started), latest_end, _parts(parts), _ranges(ranges), bool(closed)
                )
        return out

    async def claim(
        self,
        states: Sequence[State],
        now: datetime,
        limit: int,
        namespace: str | None = None,
    ) -> list[Invoice]:
        statement = select(*_INVOICE_COLUMNS).where(
            col(InvoiceRow.extended_status).in_([s.value for s in states]),
            col(InvoiceRow.deleted_at).is_(None),
            or_(col(InvoiceRow.next_attempt_at).is_(None), col(InvoiceRow.next_attempt_at) <= now),
        )
        if namespace is not None:
            statement = statement.where(InvoiceRow.namespace == namespace)
        statement = (
            statement.order_by(col(InvoiceRow.next_attempt_at).nulls_first(), col(InvoiceRow.created_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_invoice(row) for row in (await self._session.exec(_fresh(statement))).all()]

    async def claim_gathering_due(self, now: datetime, limit: int, namespace: str | None = None) -> list[Invoice]:
        statement = select(*_INVOICE_COLUMNS).where(
            InvoiceRow.status == InvoiceStatus.GATHERING.value,
            col(InvoiceRow.deleted_at).is_(None),
            col(InvoiceRow.collection_at) <= now,
            or_(col(InvoiceRow.next_attempt_at).is_(None), col(InvoiceRow.next_attempt_at) <= now),
        )
        if namespace is not None:
            statement = statement.where(InvoiceRow.namespace == namespace)
        statement = statement.order_by(col(InvoiceRow.collection_at)).limit(limit).with_for_update(skip_locked=True)
        return [_invoice(row) for row in (await self._session.exec(_fresh(statement))).all()]

    async def schedule(self, namespace: str, invoice_ids: Sequence[str], at: datetime) -> None:
        if not invoice_ids:
            return
        await self._session.exec(
            update(InvoiceRow)
            .where(col(InvoiceRow.namespace) == namespace, col(InvoiceRow.id).in_(list(invoice_ids)))
            .values(next_attempt_at=at)
        )

    async def owed_notifications(self, namespace: str, invoice_ids: Sequence[str]) -> dict[str, OwedNotification]:
        if not invoice_ids:
            return {}
        rows = await self._session.exec(
            select(InvoiceRow.id, InvoiceRow.notification_owed, InvoiceRow.notification_owed_at).where(
                col(InvoiceRow.namespace) == namespace,
                col(InvoiceRow.id).in_(list(invoice_ids)),
                col(InvoiceRow.notification_owed).is_not(None),
            )
        )
        return {i: owed for i, kind, since in rows.all() if (owed := _owed(kind, since)) is not None}

    async def claim_owed_notifications(
        self, before: datetime, now: datetime, limit: int
    ) -> list[tuple[str, str, OwedNotification]]:
        # The partial index's predicate, written the same way so the planner uses it; rows another
        # worker is claiming are skipped, and the claim moves each row's time to `now`.
        oldest = (
            select(InvoiceRow.namespace, InvoiceRow.id)
            .where(col(InvoiceRow.notification_owed).is_not(None), col(InvoiceRow.notification_owed_at) < before)
            .order_by(col(InvoiceRow.notification_owed_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
            .subquery()
        )
        rows = await self._session.exec(
            update(_INVOICES)
            .where(_INVOICES.c.namespace == oldest.c.namespace, _INVOICES.c.id == oldest.c.id)
            .values(notification_owed_at=now)
            .returning(_INVOICES.c.namespace, _INVOICES.c.id, _INVOICES.c.notification_owed)
        )
        return [(ns, i, owed) for ns, i, kind in rows.all() if (owed := _owed(kind, now)) is not None]

    async def clear_owed_notifications(self, namespace: str, told: Mapping[str, datetime]) -> None:
        if not told:
            return
        rows = [{"k_namespace": namespace, "k_id": i, "k_since": since} for i, since in told.items()]
        await self._session.exec(_CLEAR_OWED, params=rows if len(rows) > 1 else rows[0])


def _live_period_lines(statement: Any, namespace: str, period_keys: Sequence[str]) -> Any:
    """`statement` over the live top-level lines of live invoices under any of `period_keys`: what
    a period has on its invoices, before the caller narrows it by the invoices' status."""
    return statement.join(
        InvoiceRow,
        _ON_ITS_INVOICE,
    ).where(
        InvoiceLineRow.namespace == namespace,
        # A late-usage pass asks about every period key billed lately (`_any_of`).
        _any_of(col(InvoiceLineRow.period_key), period_keys),
        col(InvoiceLineRow.parent_line_id).is_(None),
        col(InvoiceLineRow.deleted_at).is_(None),
        col(InvoiceRow.deleted_at).is_(None),
    )
