"""Custom invoicing: the customer's own invoicing and payment system, driven through callbacks.

With `enableDraftSyncHook` an invoice waits in draft.syncing until the integrator calls
draft/synchronized; with `enableIssuingSyncHook` it waits in issuing.syncing until
issuing/synchronized (which may set the invoice number and external IDs). Payment is always the
integrator's to report (payment/status). The integrator learns of invoices through notifications
(invoice.created / invoice.updated). Invoices it does not number are numbered `INV-<customer>-<n>`.
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
    CustomInvoicingSettings,
    InstallMethod,
    Listing,
    validate_metadata,
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
from domain.errors import Violations

NUMBER_PREFIX = "INV"
NUMBER_SCOPE = "invoices/custom-invoicing"
# Stamped into an invoice's metadata when the integrator's callback arrives (OpenMeter's keys, so an
# integrator reading them works unchanged): when the draft was synchronized, when it was finalized.
DRAFT_SYNCED_AT = "openmeter.io/custominvoicing/draft-synced-at"
FINALIZED_AT = "openmeter.io/custominvoicing/finalized-at"

LISTING = Listing(
    type=AppType.CUSTOM_INVOICING,
    name="Custom Invoicing",
    description="Your own invoicing and payment system: Tally notifies it of invoices and waits for its callbacks.",
    capabilities=(
        Capability(
            CapabilityType.COLLECT_PAYMENTS,
            "custom_invoicing_collect_payment",
            "Payment",
            "Payment status reported by your system",
        ),
        Capability(
            CapabilityType.CALCULATE_TAX, "custom_invoicing_calculate_tax", "Calculate Tax", "Tax set by your system"
        ),
        Capability(
            CapabilityType.INVOICE_CUSTOMERS,
            "custom_invoicing_invoice_customer",
            "Invoice Customer",
            "Invoices synchronized with your system",
        ),
    ),
    install_methods=(InstallMethod.NO_CREDENTIALS_REQUIRED,),
)


class CustomInvoicingApp:
    def __init__(self, app: App, numbers: InvoiceNumbers) -> None:
        self._app = app
        self._numbers = numbers
        self._settings = app.custom_invoicing or CustomInvoicingSettings()

    @property
    def app(self) -> App:
        return self._app

    @property
    def calls_out(self) -> bool:
        return False  # the integrator calls Tally, not the other way round

    def capabilities(self) -> frozenset[CapabilityType]:
        return LISTING.capability_types()

    def validate_customer_data(self, data: CustomerAppDataInput, location: str) -> Mapping[str, str]:
        metadata = dict(data.metadata or {})
        v = Violations()
        validate_metadata(v, f"{location}.metadata", metadata)
        v.raise_if_any()
        return metadata

    def customer_data_input(self, stored: CustomerAppData) -> CustomerAppDataInput:
        return CustomerAppDataInput(
            type=AppType.CUSTOM_INVOICING.value, app_id=stored.app_id, metadata=dict(stored.metadata)
        )

    async def validate_invoice(self, invoice: InvoiceView) -> Sequence[ValidationIssue]:
        # The integrator reports its own issues through draft/synchronized.
        return ()

    async def sync_draft(self, invoice: InvoiceView) -> DraftSyncResult:
        if self._settings.enable_draft_sync_hook:
            return DraftSyncResult(SyncResult.WAITING)
        return DraftSyncResult(SyncResult.DONE)

    async def sync_issuing(self, invoice: InvoiceView) -> IssuingSyncResult:
        if self._settings.enable_issuing_sync_hook:
            return IssuingSyncResult(SyncResult.WAITING)
        return IssuingSyncResult(SyncResult.DONE, invoice_number=await self.final_number(invoice))

    async def final_number(self, invoice: InvoiceView) -> str:
        """The number an issued invoice gets when the integrator did not set one."""
        # A number is set only by the integrator (draft/synchronized or issuing/synchronized) or
        # by an earlier call of this; a draft has none (its API number is DRAFT-<id>).
        if invoice.number is not None:
            return invoice.number
        sequence = await self._numbers.next_number(invoice.namespace, NUMBER_SCOPE)
        return invoice_number(NUMBER_PREFIX, invoice.customer_name, sequence)

    async def collect_payment(self, invoice: InvoiceView) -> PaymentResult:
        return PaymentResult(outcome=None)

    async def delete_invoice(self, invoice: InvoiceView) -> None:
        return None

    async def void_invoice(self, invoice: InvoiceView, reason: str | None) -> None:
        return None
