"""Invoices in OpenMeter's JSON (camelCase dicts): what the API answers, and the requests it reads.

Servicers turn request messages into the dict an OpenMeter client sends (server/convert.py) and
read the answers below back into response messages, so REST and gRPC share one reading.

Lines: OpenMeter's v1 API shows every top-level line as `type: usage_based` with a rate card;
a manual flat fee is a line whose price is `flat` (its amount per unit, quantity 1). Tally keeps
such a line as a flat fee (`LineType.FLAT_FEE`) and shows it the same way. Detailed child lines
are `flat_fee` lines with `perUnitAmount`, `quantity` and `category`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.billing.invoice_states import (
    API_ACTIONS,
    PAYMENT_TRIGGERS,
    Action,
    Conditions,
    InvoiceStatus,
    State,
    available_actions,
    failed,
    immutable,
)
from domain.billing.invoices import (
    Invoice,
    InvoiceLine,
    InvoiceListQuery,
    InvoiceNowInput,
    InvoiceWithLines,
    LineDiscount,
    LineType,
    PartyUpdate,
    PendingLineInput,
    PendingLinesInput,
    Totals,
    VoidAction,
    VoidInput,
    VoidLineAction,
)
from domain.catalog.prices import Discounts, FlatPrice, PaymentTerm, Price, parse_discounts, parse_price
from domain.catalog.ratecards import TaxConfig, merge_tax_configs, parse_tax_config
from domain.catalog.rating import DiscountReason
from domain.catalog.wire import Obj, Reader, decimal_text, join
from domain.customers.models import Address
from domain.errors import ValidationError
from domain.wiretime import rfc3339

# GET /api/v1/billing/invoices?orderBy=
ORDER_BY = ("customer.name", "issuedAt", "status", "createdAt", "updatedAt", "periodStart")
EXPAND = ("lines", "preceding", "workflow.apps")


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _address(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {_camel(k): v for k, v in raw.items() if v is not None}


def totals_rest(t: Totals) -> dict[str, str]:
    return {
        "amount": decimal_text(t.amount),
        "chargesTotal": decimal_text(t.charges_total),
        "discountsTotal": decimal_text(t.discounts_total),
        "creditsTotal": decimal_text(t.credits_total),
        "taxesInclusiveTotal": decimal_text(t.taxes_inclusive_total),
        "taxesExclusiveTotal": decimal_text(t.taxes_exclusive_total),
        "taxesTotal": decimal_text(t.taxes_total),
        "total": decimal_text(t.total),
    }


def status_details_rest(invoice: Invoice, conditions: Conditions) -> dict[str, Any]:
    """statusDetails, read from the transition table (invoice_states) and nothing else."""
    actions: dict[str, Any] = {}
    for action, target in available_actions(invoice.state, conditions).items():
        name = API_ACTIONS[action]
        # OpenMeter's `invoice` action (on a gathering invoice) carries no resulting state.
        actions[name] = {} if action is Action.INVOICE else {"resultingState": target.value}
    return {
        "immutable": immutable(invoice.state, conditions),
        "failed": failed(invoice.state),
        "extendedStatus": invoice.state.value,
        "availableActions": actions,
    }


def _discounts_rest(discounts: Sequence[LineDiscount], at: datetime, card: Discounts) -> dict[str, Any]:
    """A line's amount discounts, and the units its usage discount made free. A rate card
    discount's reason carries the rate card's percentage or quantity, as OpenMeter's
    DiscountReasonRatecardPercentage and DiscountReasonRatecardUsage require, and its correlation ID."""
    if not discounts:
        return {}
    out: dict[str, Any] = {}
    for d in discounts:
        common: dict[str, Any] = {"id": d.id, "createdAt": rfc3339(at), "updatedAt": rfc3339(at)}
        if d.invoicing_external_id:
            common["externalIds"] = {"invoicing": d.invoicing_external_id}
        if d.reason is DiscountReason.RATECARD_USAGE:
            usage = {**common, "quantity": decimal_text(d.quantity or Decimal(0))}
            if d.pre_line_period_quantity:  # OpenMeter leaves a zero out
                usage["preLinePeriodQuantity"] = decimal_text(d.pre_line_period_quantity)
            reason: dict[str, Any] = {"type": d.reason.value}
            if card.usage_quantity is not None:
                reason["quantity"] = decimal_text(card.usage_quantity)
                _put(reason, "correlationId", card.usage_correlation_id)
            out.setdefault("usage", []).append({**usage, "reason": reason})
            continue
        out.setdefault("amount", []).append(
            {
                **common,
                "reason": _reason_rest(d.reason, card),
                "amount": decimal_text(d.amount),
                **({"description": d.description} if d.description else {}),
            }
        )
    return out


def _listed_discounts(line: InvoiceLine) -> Sequence[LineDiscount]:
    """A usage line's amount discounts are listed on its detailed lines only, where they were
    taken; the line itself lists its usage discount (OpenMeter's mapDiscountsToAPI maps only
    `Usage` on an InvoiceLine). Listing both made a client that adds up every listed discount count
    them twice."""
    if line.type is LineType.USAGE_BASED and line.parent_line_id is None:
        return [d for d in line.discounts if d.reason is DiscountReason.RATECARD_USAGE]
    return line.discounts


def _reason_rest(reason: DiscountReason, card: Discounts) -> dict[str, Any]:
    if reason is DiscountReason.RATECARD_PERCENTAGE and card.percentage is not None:
        # A JSON number, as OpenMeter's Percentage prints (and as rate cards carry it).
        out: dict[str, Any] = {"type": reason.value, "percentage": float(card.percentage)}
        _put(out, "correlationId", card.percentage_correlation_id)
        return out
    return {"type": reason.value}


def _flat_price(line: InvoiceLine) -> dict[str, Any]:
    term = PaymentTerm(line.payment_term) if line.payment_term else PaymentTerm.IN_ADVANCE
    return FlatPrice(line.per_unit_amount or Decimal(0), term).rest()


def _line_common(line: InvoiceLine, tax_config: TaxConfig | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": line.id,
        "name": line.name,
        "metadata": dict(line.metadata),
        "createdAt": rfc3339(line.created_at),
        "updatedAt": rfc3339(line.updated_at),
        "managedBy": line.managed_by.value,
        "status": line.status.value,
        "invoice": {"id": line.invoice_id},
        "currency": line.currency,
        "totals": totals_rest(line.totals),
        "period": {"from": rfc3339(line.period_start), "to": rfc3339(line.period_end)},
        "invoiceAt": rfc3339(line.invoice_at),
        "discounts": _discounts_rest(_listed_discounts(line), line.updated_at, line.rate_card_discounts),
    }
    _put(out, "description", line.description)
    _put(out, "deletedAt", rfc3339(line.deleted_at))
    if line.invoicing_external_id is not None:
        out["externalIds"] = {"invoicing": line.invoicing_external_id}
    if tax_config is not None:
        out["taxConfig"] = tax_config.rest()
    if line.subscription is not None:
        ref = line.subscription
        out["subscription"] = {
            "subscription": {"id": ref.subscription_id},
            "phase": {"id": ref.phase_id},
            "item": {"id": ref.item_id},
            # Lines synced before the billing period was kept show their own full period.
            "billingPeriod": {
                "from": rfc3339(ref.billing_period_start or line.full_period_start or line.period_start),
                "to": rfc3339(ref.billing_period_end or line.full_period_end or line.period_end),
            },
        }
    return out


def _net_of_usage_discount(line: InvoiceLine) -> tuple[Decimal | None, Decimal | None]:
    """A usage line's `quantity` and `preLinePeriodQuantity` as OpenMeter shows them: the metered
    ones (stored, and rated) less the units the rate card's usage discount made free, the
    period's first N (billing/rating/service/mutator/discountusage.go)."""
    quantity, pre = line.quantity, line.pre_line_period_quantity
    free = line.rate_card_discounts.usage_quantity
    if not free or quantity is None:
        return quantity, pre
    before = pre or Decimal(0)
    free_before = min(before, free)
    return quantity - min(free - free_before, quantity), None if pre is None else before - free_before


def line_rest(
    line: InvoiceLine, children: Sequence[InvoiceLine] = (), default_tax_config: TaxConfig | None = None
) -> dict[str, Any]:
    """A top-level line (OpenMeter's InvoiceLine) with its detailed children. On a standard invoice
    the line's tax config is shown over its workflow's `default_tax_config`, and its children show
    the line's (OpenMeter snapshots both into the lines it calculates)."""
    tax_config = merge_tax_configs(default_tax_config, line.tax_config)
    out = _line_common(line, tax_config)
    out["type"] = "usage_based"
    price: dict[str, Any] | None
    if line.type is LineType.FLAT_FEE:
        price = _flat_price(line)
        quantity = line.quantity
    else:
        price = line.price.rest() if line.price is not None else None
        quantity, pre = _net_of_usage_discount(line)
        _put(out, "meteredQuantity", None if line.metered_quantity is None else decimal_text(line.metered_quantity))
        if line.pre_line_period_quantity is not None and pre is not None:
            out["preLinePeriodQuantity"] = decimal_text(pre)
            out["meteredPreLinePeriodQuantity"] = decimal_text(line.pre_line_period_quantity)
    # Any line with a feature shows it, a flat fee's included (OpenMeter's line mapping).
    _put(out, "featureKey", line.feature_key)
    _put(out, "price", price)
    _put(out, "quantity", None if quantity is None else decimal_text(quantity))
    rate_card: dict[str, Any] = {"price": price}
    _put(rate_card, "featureKey", line.feature_key)
    if tax_config is not None:
        rate_card["taxConfig"] = tax_config.rest()
    if not line.rate_card_discounts.is_empty():
        rate_card["discounts"] = line.rate_card_discounts.rest()
    out["rateCard"] = rate_card
    out["children"] = [detailed_line_rest(c, tax_config) for c in children]
    return out


def detailed_line_rest(line: InvoiceLine, tax_config: TaxConfig | None) -> dict[str, Any]:
    """A detailed child line (OpenMeter's InvoiceDetailedLine), with its parent's `tax_config`."""
    out = _line_common(line, tax_config)
    price = _flat_price(line)
    quantity = decimal_text(line.quantity or Decimal(0))
    rate_card: dict[str, Any] = {"price": price, "quantity": quantity}
    if tax_config is not None:
        rate_card["taxConfig"] = tax_config.rest()
    out.update(
        type="flat_fee",
        perUnitAmount=decimal_text(line.per_unit_amount or Decimal(0)),
        paymentTerm=price["paymentTerm"],
        quantity=quantity,
        category=(line.category.value if line.category is not None else "regular"),
        rateCard=rate_card,
    )
    return out


def lines_rest(lines: Sequence[InvoiceLine], default_tax_config: TaxConfig | None = None) -> list[dict[str, Any]]:
    children: dict[str, list[InvoiceLine]] = {}
    for line in lines:
        if line.parent_line_id is not None:
            children.setdefault(line.parent_line_id, []).append(line)
    return [line_rest(x, children.get(x.id, ()), default_tax_config) for x in lines if x.parent_line_id is None]


def _in_answer_order(lines: Sequence[InvoiceLine]) -> list[InvoiceLine]:
    """An invoice's top-level lines by name, then period start, then ID, as OpenMeter sorts them
    before answering (StandardLines.Sort); each line's detailed lines stay in their own order."""
    top = sorted((x for x in lines if x.parent_line_id is None), key=lambda x: (x.name, x.period_start, x.id))
    return top + [x for x in lines if x.parent_line_id is not None]


def invoice_rest(found: InvoiceWithLines, conditions: Conditions, *, with_lines: bool) -> dict[str, Any]:
    """OpenMeter's Invoice, but for `workflow`, which the servicer adds (it shares the profile's
    workflow encoding)."""
    invoice = found.invoice
    customer = invoice.customer
    customer_out: dict[str, Any] = {
        "id": customer.id,
        "name": customer.name,
        "usageAttribution": {"subjectKeys": list(customer.subject_keys)},
    }
    _put(customer_out, "key", customer.key)
    if customer.billing_address:
        customer_out["addresses"] = [_address(customer.billing_address)]
    supplier = dict(invoice.supplier)
    supplier_out: dict[str, Any] = {"name": supplier.get("name", "")}
    _put(supplier_out, "key", supplier.get("key"))
    if supplier.get("tax_code"):
        supplier_out["taxId"] = {"code": supplier["tax_code"]}
    address = supplier.get("address")
    if isinstance(address, Mapping):
        supplier_out["addresses"] = [_address(address)]
    out: dict[str, Any] = {
        "id": invoice.id,
        "type": invoice.type.value,
        "metadata": dict(invoice.metadata),
        "createdAt": rfc3339(invoice.created_at),
        "updatedAt": rfc3339(invoice.updated_at),
        "supplier": supplier_out,
        "customer": customer_out,
        # OpenMeter shows a draft's number as "DRAFT-…" until the app gives the final one.
        "number": invoice.number or f"DRAFT-{invoice.id}",
        "currency": invoice.currency,
        "totals": totals_rest(invoice.totals),
        "status": invoice.status.value if invoice.status is not InvoiceStatus.DELETED else "deleted",
        "statusDetails": status_details_rest(invoice, conditions),
        "validationIssues": [
            {
                "id": i.id,
                "createdAt": rfc3339(invoice.updated_at),
                "updatedAt": rfc3339(invoice.updated_at),
                "severity": i.severity.value,
                "code": i.code,
                "message": i.message,
                "component": i.component,
                **({"field": i.field} if i.field else {}),
            }
            for i in invoice.validation_issues
        ],
        "externalIds": {
            k: v
            for k, v in (("invoicing", invoice.invoicing_external_id), ("payment", invoice.payment_external_id))
            if v
        },
    }
    _put(out, "description", invoice.description)
    _put(out, "deletedAt", rfc3339(invoice.deleted_at))
    _put(out, "issuedAt", rfc3339(invoice.issued_at))
    _put(out, "draftUntil", rfc3339(invoice.draft_until))
    _put(out, "quantitySnapshotedAt", rfc3339(invoice.quantity_snapshotted_at))
    _put(out, "collectionAt", rfc3339(invoice.collection_at))
    _put(out, "dueAt", rfc3339(invoice.due_at))
    _put(out, "voidedAt", rfc3339(invoice.voided_at))
    _put(out, "sentToCustomerAt", rfc3339(invoice.sent_to_customer_at))
    _put(out, "voidReason", invoice.void_reason)
    if invoice.period_start is not None and invoice.period_end is not None:
        out["period"] = {"from": rfc3339(invoice.period_start), "to": rfc3339(invoice.period_end)}
    if with_lines:
        # A gathering invoice's lines are what was asked for; a standard invoice's are calculated,
        # and carry its workflow's default tax config under their own.
        default_tax = None if invoice.state is State.GATHERING else invoice.workflow.default_tax_config
        out["lines"] = lines_rest(_in_answer_order(found.lines), default_tax)
    return out


# --- requests ---------------------------------------------------------------------------------


def _time_in(r: Reader, data: Obj, name: str, path: str, required: bool = False) -> datetime | None:
    text = r.string(data, name, path, required=required)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        r.issues.error(join(path, name), "must be an RFC 3339 date-time", "invalid_time")
        return None
    if value.tzinfo is None:
        r.issues.error(join(path, name), "must carry a time zone (Z or an offset)", "invalid_time")
        return None
    return value


def _pending_line(r: Reader, raw: Any, path: str, *, with_quantity: bool) -> PendingLineInput | None:
    obj = r.obj(raw, path)
    if obj is None:
        return None
    name = r.name(obj, path)
    description = r.description(obj, path)
    metadata = r.metadata(obj, path)
    period = r.obj(obj.get("period"), join(path, "period"))
    start = end = None
    if period is not None:
        start = _time_in(r, period, "from", join(path, "period"), required=True)
        end = _time_in(r, period, "to", join(path, "period"), required=True)
    invoice_at = _time_in(r, obj, "invoiceAt", path, required=True)
    # Whole seconds, as OpenMeter reads a line's times (httpdriver/invoiceline.go truncates them to
    # streaming.MinimumWindowSizeDuration) and as every meter query bounds a period.
    start, end, invoice_at = (None if t is None else t.replace(microsecond=0) for t in (start, end, invoice_at))
    card = r.obj(obj.get("rateCard"), join(path, "rateCard"), required=False)
    # rateCard is the current form; price / featureKey / taxConfig at the top are the deprecated one.
    source, where = (card, join(path, "rateCard")) if card is not None else (obj, path)
    price: Price | None = None
    if source.get("price") is not None:
        price = parse_price(r, source.get("price"), join(where, "price"), allow_usage=True)
    elif card is None:
        r.issues.error(join(path, "rateCard"), "required: a line needs a rate card with a price", "required")
    feature_key = r.string(source, "featureKey", where)
    tax_config = parse_tax_config(r, source.get("taxConfig"), join(where, "taxConfig"))
    # Correlation IDs the body leaves out are the service's to give (a new line's, or the stored
    # line's for an update).
    discounts = parse_discounts(r, source.get("discounts"), join(where, "discounts"), price, True)
    quantity = r.decimal(obj, "quantity", path, required=with_quantity) if with_quantity else None
    pre_quantity = r.decimal(obj, "preLinePeriodQuantity", path) if with_quantity else None
    if name is None or start is None or end is None or invoice_at is None:
        return None
    if isinstance(price, FlatPrice):
        # A flat fee: the price's amount once (OpenMeter's manual flat line).
        return PendingLineInput(
            name,
            start,
            end,
            invoice_at,
            per_unit_amount=price.amount,
            # Not carried by the body: a new fee is one, an updated one keeps its own.
            quantity=None,
            payment_term=price.payment_term.value,
            description=description,
            rate_card_discounts=discounts,
            tax_config=tax_config,
            metadata=metadata,
        )
    return PendingLineInput(
        name,
        start,
        end,
        invoice_at,
        price=price,
        feature_key=feature_key,
        quantity=quantity,
        description=description,
        rate_card_discounts=discounts,
        tax_config=tax_config,
        metadata=metadata,
        pre_line_period_quantity=pre_quantity,
    )


def parse_pending_lines(data: Obj, *, simulation: bool = False) -> PendingLinesInput:
    """InvoicePendingLineCreateInput (or, with `simulation`, InvoiceSimulationInput, whose lines
    carry their quantity and preLinePeriodQuantity)."""
    r = Reader()
    # The currency and the lines' business rules are the service's (reported together with these).
    currency = r.string(data, "currency", "", required=True)
    raw_lines = r.list(data, "lines", "", required=True)
    if not raw_lines and "lines" in data:
        r.issues.error("lines", "at least one line is required", "required")
    lines = [_pending_line(r, x, f"lines[{i}]", with_quantity=simulation) for i, x in enumerate(raw_lines)]
    r.issues.raise_if_errors()
    return PendingLinesInput(currency or "", [x for x in lines if x is not None])


@dataclass(frozen=True, slots=True)
class InvoiceUpdate:
    """InvoiceReplaceUpdate as Tally applies it to a draft: description, metadata, the lines, and
    the supplier's and customer's details when the body carries them (the workflow's settings are
    read by the servicer, which decodes workflows for profiles too)."""

    description: str | None
    metadata: dict[str, str]
    lines: list[tuple[str | None, PendingLineInput]]
    supplier: PartyUpdate | None = None
    customer: PartyUpdate | None = None


_ADDRESS_FIELDS = tuple((name, _camel(name)) for name in Address.__slots__)


def _party(r: Reader, data: Obj, name: str) -> PartyUpdate | None:
    """The body's `supplier` or `customer`, decoded; None when it has none (Tally keeps the
    snapshot). Checked (`PartyUpdate.validate`) only on a draft: a gathering invoice's PUT ignores
    both, as OpenMeter's."""
    party = r.obj(data.get(name), name, required=False)
    if party is None:
        return None
    party_name = r.string(party, "name", name)
    addresses = r.list(party, "addresses", name)
    if len(addresses) > 1:
        r.issues.error(f"{name}.addresses", "at most one address", "too_many")
    address = None
    first = r.obj(addresses[0], f"{name}.addresses[0]") if addresses else None
    if first is not None:
        given = {field: r.string(first, camel, f"{name}.addresses[0]") for field, camel in _ADDRESS_FIELDS}
        address = Address(**given)
        address = None if address.is_empty() else address
    tax = r.obj(party.get("taxId"), f"{name}.taxId", required=False)
    tax_code = r.string(tax, "code", f"{name}.taxId") if tax is not None else None
    return PartyUpdate(party_name or "", address, tax_code if name == "supplier" else None)


def parse_invoice_update(data: Obj) -> InvoiceUpdate:
    r = Reader()
    description = r.description(data, "")
    metadata = r.metadata(data, "")
    supplier = _party(r, data, "supplier")
    customer = _party(r, data, "customer")
    raw_lines = r.list(data, "lines", "", required=True)
    lines: list[tuple[str | None, PendingLineInput]] = []
    for i, raw in enumerate(raw_lines):
        line = _pending_line(r, raw, f"lines[{i}]", with_quantity=False)
        line_id = raw.get("id") if isinstance(raw, Mapping) else None
        if line is not None:
            lines.append((str(line_id) if line_id else None, line))
    r.issues.raise_if_errors()
    return InvoiceUpdate(description, metadata, lines, supplier, customer)


def parse_invoice_now(data: Obj) -> InvoiceNowInput:
    """InvoicePendingLinesActionInput."""
    r = Reader()
    customer = r.string(data, "customerId", "", required=True)
    as_of = _time_in(r, data, "asOf", "")
    filters = r.obj(data.get("filters"), "filters", required=False)
    line_ids = [str(x) for x in r.list(filters, "lineIds", "filters")] if filters is not None else []
    if filters is not None and not line_ids:
        # OpenMeter's InvoicePendingLinesInput.Validate: a filter names at least one line. Read as
        # no filter, an empty selection would invoice every due line.
        r.issues.error(
            "filters.lineIds", "must name at least one line (without filters every due line is invoiced)", "required"
        )
    override = data.get("progressiveBillingOverride")
    if override is not None and not isinstance(override, bool):
        r.issues.error("progressiveBillingOverride", "must be true or false", "invalid_type")
        override = None
    r.issues.raise_if_errors()
    return InvoiceNowInput(customer or "", as_of, tuple(line_ids), override)


_VOID_KINDS = tuple(k.value for k in VoidLineAction)


def _void_action(r: Reader, raw: Any, path: str) -> VoidAction | None:
    """VoidInvoiceActionCreate(Item): `percentage` (100: the whole line; anything less would take
    part of a charge back, which needs a credit note) and `action` (discard, or pending with an
    optional `nextInvoiceAt`)."""
    data = r.obj(raw, path)
    if data is None:
        return None
    percentage = data.get("percentage")
    if percentage is not None and (isinstance(percentage, bool) or percentage != 100):
        r.issues.error(
            join(path, "percentage"),
            "must be 100: a void takes back each line whole (part of a line would need a credit note, "
            "which Tally does not have)",
            "unsupported",
        )
    inner = r.obj(data.get("action"), join(path, "action"))
    if inner is None:
        return None
    kind = r.choice(inner, "type", join(path, "action"), _VOID_KINDS, required=True)
    at = _time_in(r, inner, "nextInvoiceAt", join(path, "action"))
    if at is not None and kind == VoidLineAction.DISCARD:
        r.issues.error(join(path, "action.nextInvoiceAt"), "only with type pending", "invalid")
    return VoidAction(VoidLineAction(kind), at) if kind is not None else None


def parse_void(data: Obj) -> VoidInput:
    """VoidInvoiceActionInput: the reason, the action for every line (Tally: discard when left
    out; OpenMeter requires it) and per-line overrides."""
    r = Reader()
    raw_reason = r.string(data, "reason", "", required=True)
    reason = (raw_reason or "").strip()
    if raw_reason is not None and not reason:
        r.issues.error("reason", "required: say why the invoice is voided", "required")
    action = _void_action(r, data["action"], "action") if data.get("action") is not None else VoidAction()
    overrides: dict[str, VoidAction] = {}
    for i, raw in enumerate(r.list(data, "overrides", "")):
        path = f"overrides[{i}]"
        item = r.obj(raw, path)
        if item is None:
            continue
        line_id = r.string(item, "lineId", path, required=True)
        if line_id is not None and line_id in overrides:
            r.issues.error(join(path, "lineId"), f"line {line_id} is named by an earlier override", "duplicate")
        found = _void_action(r, item.get("action"), join(path, "action"))
        if line_id is not None and found is not None:
            overrides[line_id] = found
    r.issues.raise_if_errors()
    return VoidInput(reason, action or VoidAction(), overrides)


def parse_sent_to_customer_at(text: str | None) -> datetime | None:
    """issuing/synchronized's `invoicing.sentToCustomerAt`: when the integrator sent the invoice."""
    r = Reader()
    value = _time_in(r, {"sentToCustomerAt": text} if text is not None else {}, "sentToCustomerAt", "invoicing")
    r.issues.raise_if_errors()
    return value


def parse_payment_trigger(trigger: str) -> Action:
    action = PAYMENT_TRIGGERS.get(trigger)
    if action is None:
        raise ValidationError.single("trigger", f"must be one of {', '.join(PAYMENT_TRIGGERS)}", "invalid_enum")
    return action


def parse_list_query(
    *,
    statuses: Sequence[str],
    extended_statuses: Sequence[str],
    customers: Sequence[str],
    times: Mapping[str, str | None],
    include_deleted: bool,
    page: int | None,
    page_size: int | None,
    order: str | None,
    order_by: str | None,
) -> InvoiceListQuery:
    """GET /api/v1/billing/invoices's query parameters; every problem named by its parameter."""
    r = Reader()
    known_status = {s.value for s in InvoiceStatus if s not in (InvoiceStatus.DELETE, InvoiceStatus.DELETED)}
    for s in statuses:
        if s not in known_status:
            r.issues.error("statuses", f"{s!r}: must be one of {', '.join(sorted(known_status))}", "invalid_enum")
    known_state = {s.value for s in State}
    for s in extended_statuses:
        if s not in known_state:
            r.issues.error("extendedStatuses", f"{s!r} is not an extended status", "invalid_enum")
    parsed = {name: _time_in(r, {name: value}, name, "") for name, value in times.items()}
    if order is not None and order not in ("ASC", "DESC"):
        r.issues.error("order", "must be ASC or DESC", "invalid_enum")
    if order_by is not None and order_by not in ORDER_BY:
        r.issues.error("orderBy", f"must be one of {', '.join(ORDER_BY)}", "invalid_enum")
    if page is not None and page < 1:
        r.issues.error("page", "must be at least 1", "invalid")
    if page_size is not None and not 1 <= page_size <= 1000:
        r.issues.error("pageSize", "must be between 1 and 1000", "invalid")
    r.issues.raise_if_errors()
    size = page_size or 100
    return InvoiceListQuery(
        offset=((page or 1) - 1) * size,
        limit=size,
        customers=tuple(customers),
        statuses=tuple(InvoiceStatus(s) for s in statuses),
        extended_statuses=tuple(State(s) for s in extended_statuses),
        issued_after=parsed.get("issuedAfter"),
        issued_before=parsed.get("issuedBefore"),
        period_start_after=parsed.get("periodStartAfter"),
        period_start_before=parsed.get("periodStartBefore"),
        created_after=parsed.get("createdAfter"),
        created_before=parsed.get("createdBefore"),
        include_deleted=include_deleted,
        order_by=order_by or "createdAt",
        descending=order == "DESC",
    )


__all__ = [
    "EXPAND",
    "InvoiceUpdate",
    "invoice_rest",
    "line_rest",
    "lines_rest",
    "parse_invoice_now",
    "parse_invoice_update",
    "parse_list_query",
    "parse_payment_trigger",
    "parse_pending_lines",
    "status_details_rest",
    "totals_rest",
]
