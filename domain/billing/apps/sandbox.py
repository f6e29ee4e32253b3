"""The sandbox app: invoices and "collects" without any external system, for trying Tally out.

It accepts every invoice, numbers it `OM-SANDBOX-<customer>-<n>` (OpenMeter's prefix, so numbers
look the same after a move) and reports it paid as soon as it is issued. An invoice's metadata
`openmeter.io/sandbox/target-payment-status` (OpenMeter's key) picks another payment outcome for
tests: failed, uncollectible or action_required.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from domain.billing.apps.models import (
    App,
    AppType,
    Capability,
    CapabilityType,
    CustomerAppData,
    CustomerAppDataInput,
    InstallMethod,
    Listing,
)
from domain.billing.apps.port import (
    DraftSyncResult,
    InvoiceNumbers,
    InvoiceView,
    IssuingSyncResult,
    PaymentResult,
    SyncResult,
    ValidationIssue,
    invoice_number,
)
from domain.billing.invoice_states import Action

NUMBER_PREFIX = "OM-SANDBOX"
NUMBER_SCOPE = "invoices/app/sandbox"
TARGET_PAYMENT_STATUS_KEY = "openmeter.io/sandbox/target-payment-status"
_TARGET_OUTCOMES: Mapping[str, Action] = {
    "paid": Action.PAYMENT_PAID,
    "failed": Action.PAYMENT_FAILED,
    "uncollectible": Action.PAYMENT_UNCOLLECTIBLE,
    "action_required": Action.PAYMENT_ACTION_REQUIRED,
}

LISTING = Listing(
    type=AppType.SANDBOX,
    name="Sandbox",
    description="Invoices and payments simulated inside Tally, with no external system: for trying billing out.",
    capabilities=(
        Capability(CapabilityType.COLLECT_PAYMENTS, "sandbox_collect_payment", "Payment", "Marks issued invoices paid"),
        Capability(CapabilityType.CALCULATE_TAX, "sandbox_calculate_tax", "Calculate Tax", "Adds no tax"),
        Capability(
            CapabilityType.INVOICE_CUSTOMERS,
            "sandbox_invoice_customer",
            "Invoice Customer",
            "Numbers and issues invoices",
        ),
    ),
    install_methods=(InstallMethod.NO_CREDENTIALS_REQUIRED,),
)


class SandboxApp:
    def __init__(self, app: App, numbers: InvoiceNumbers) -> None:
        self._app = app
        self._numbers = numbers

    @property
    def app(self) -> App:
        return self._app

    @property
    def calls_out(self) -> bool:
        return False  # the sandbox decides everything itself

    def capabilities(self) -> frozenset[CapabilityType]:
        return LISTING.capability_types()

    def validate_customer_data(self, data: CustomerAppDataInput, location: str) -> Mapping[str, str]:
        # The sandbox keeps nothing about a customer; a row still records that the customer uses it.
        return {}

    def customer_data_input(self, stored: CustomerAppData) -> CustomerAppDataInput:
        return CustomerAppDataInput(type=AppType.SANDBOX.value, app_id=stored.app_id)

    async def validate_invoice(self, invoice: InvoiceView) -> Sequence[ValidationIssue]:
        return ()

    async def sync_draft(self, invoice: InvoiceView) -> DraftSyncResult:
        return DraftSyncResult(SyncResult.DONE)

    async def sync_issuing(self, invoice: InvoiceView) -> IssuingSyncResult:
        number = invoice.number
        if number is None or not number.startswith(NUMBER_PREFIX):
            sequence = await self._numbers.next_number(invoice.namespace, NUMBER_SCOPE)
            number = invoice_number(NUMBER_PREFIX, invoice.customer_name, sequence)
        # As OpenMeter's sandbox, which reports the invoice sent as it finalizes it.
        return IssuingSyncResult(SyncResult.DONE, invoice_number=number, sent_now=True)

    async def collect_payment(self, invoice: InvoiceView) -> PaymentResult:
        target = invoice.metadata.get(TARGET_PAYMENT_STATUS_KEY, "paid")
        return PaymentResult(outcome=_TARGET_OUTCOMES.get(target, Action.PAYMENT_PAID))

    async def delete_invoice(self, invoice: InvoiceView) -> None:
        return None

    async def void_invoice(self, invoice: InvoiceView, reason: str | None) -> None:
        return None
