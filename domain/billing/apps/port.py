"""The one port every app implements: customer data, and the invoice operations the lifecycle calls.

The billing worker calls these as the transition table says (`invoice_states.AppHook`): validate
while the draft is validated, `sync_draft` on entering draft.syncing, `sync_issuing` on entering
issuing.syncing, `collect_payment` once issued, `delete_invoice` and `void_invoice`. Each call must
be idempotent for the same invoice and state: the worker may repeat a call after a crash, and an
app that talks to a provider keys its requests by invoice ID (a call that timed out is looked up,
not blindly repeated).

An app sees an invoice through `InvoiceView`, a small read-only projection, so the port does not
depend on how invoices are stored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from anyascii import anyascii

from domain.billing.apps.models import App, CapabilityType, CustomerAppData, CustomerAppDataInput
from domain.billing.invoice_states import Action, State


@dataclass(frozen=True, slots=True)
class InvoiceLineView:
    id: str
    name: str
    currency: str
    period_start: datetime
    period_end: datetime
    quantity: Decimal | None
    total: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceView:
    """What an app may read of an invoice."""

    id: str
    namespace: str
    state: State
    currency: str
    customer_id: str
    customer_name: str
    total: Decimal
    created_at: datetime
    number: str | None = None
    issued_at: datetime | None = None
    due_at: datetime | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    lines: Sequence[InvoiceLineView] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Set by earlier syncs: the invoice's ID in the invoicing and payment systems.
    invoicing_external_id: str | None = None
    payment_external_id: str | None = None
    # The customer's data kept by this app (custom invoicing: the integrator's metadata).
    customer_data: Mapping[str, str] = field(default_factory=dict)


class IssueSeverity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """An issue an app found (OpenMeter's validationIssues): critical ones block the invoice."""

    severity: IssueSeverity
    code: str
    message: str
    field: str | None = None


class SyncResult(enum.StrEnum):
    DONE = "done"
    # The app finishes later through a callback (custom invoicing's draft/synchronized and
    # issuing/synchronized); the invoice waits in draft.syncing / issuing.syncing.
    WAITING = "waiting"


@dataclass(frozen=True, slots=True)
class DraftSyncResult:
    result: SyncResult
    invoicing_external_id: str | None = None
    issues: Sequence[ValidationIssue] = ()


@dataclass(frozen=True, slots=True)
class IssuingSyncResult:
    result: SyncResult
    # The final invoice number, when the app assigns it.
    invoice_number: str | None = None
    invoicing_external_id: str | None = None
    payment_external_id: str | None = None
    sent_to_customer_at: datetime | None = None
    # The app sent the invoice to the customer as it synced it: sent at the sync's instant.
    sent_now: bool = False


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """What happened when the app was asked to collect: a payment outcome now, or none yet."""

    outcome: Action | None = None
    payment_external_id: str | None = None


class InvoiceNumbers(Protocol):
    """Gap-free sequence numbers per namespace and scope (e.g. one per app type)."""

    async def next_number(self, namespace: str, scope: str) -> int: ...


class InvoicingApp(Protocol):
    """One installed app, bound to its stored state (`app`)."""

    @property
    def app(self) -> App: ...

    def capabilities(self) -> frozenset[CapabilityType]: ...

    @property
    def calls_out(self) -> bool:
        """Whether the invoice operations reach a system outside Tally (a payment provider's API).
        Such a call is made in a transaction of its own, so one that timed out is found recorded
        (`AppAttempt`) rather than repeated blindly; calls that stay inside Tally may share a
        transaction with the state changes around them."""
        ...

    def validate_customer_data(self, data: CustomerAppDataInput, location: str) -> Mapping[str, str]:
        """The data to store for a customer, or ValidationError with field paths under `location`."""
        ...

    def customer_data_input(self, stored: CustomerAppData) -> CustomerAppDataInput:
        """The stored data back in the shape of an input (what GET /customers/{id}/apps shows)."""
        ...

    async def validate_invoice(self, invoice: InvoiceView) -> Sequence[ValidationIssue]: ...

    async def sync_draft(self, invoice: InvoiceView) -> DraftSyncResult: ...

    async def sync_issuing(self, invoice: InvoiceView) -> IssuingSyncResult: ...

    async def collect_payment(self, invoice: InvoiceView) -> PaymentResult: ...

    async def delete_invoice(self, invoice: InvoiceView) -> None: ...

    async def void_invoice(self, invoice: InvoiceView, reason: str | None) -> None: ...


def customer_prefix(name: str) -> str:
    """The customer part of an invoice number: OpenMeter's rule, kept so numbers look the same to
    someone moving from OpenMeter. The name transliterated to ASCII ("Péter Túri" as "Peter Turi"),
    upper case, split at each space: the first four characters of a one-word name, else two of
    each of the first two words (an empty word, from a doubled space, gives none); UNKN when empty."""
    words = anyascii(name).upper().split(" ")
    if words == [""]:
        return "UNKN"
    if len(words) == 1:
        return words[0][:4]
    return words[0][:2] + words[1][:2]


def invoice_number(prefix: str, customer_name: str, sequence: int) -> str:
    return f"{prefix}-{customer_prefix(customer_name)}-{sequence}"
