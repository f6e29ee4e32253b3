"""The marketplace: every app type Tally knows, its listing, and how to bind a stored app to code.

Stripe is listed as OpenMeter lists it (a client enumerating the marketplace sees the same three
types), but it cannot be installed here: Tally has no Stripe adapter yet, so installing it answers
501 Not Implemented, and the listing's description says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from domain.billing.apps import custom_invoicing, sandbox
from domain.billing.apps.models import App, AppType, Capability, CapabilityType, InstallMethod, Listing
from domain.billing.apps.port import InvoiceNumbers, InvoicingApp
from domain.errors import NotFoundError, NotImplementedFeatureError

STRIPE_LISTING = Listing(
    type=AppType.STRIPE,
    name="Stripe",
    description=(
        "Stripe invoicing, tax and payments. Not available in this version of Tally: "
        "installing it answers 501 until a Stripe app is built."
    ),
    capabilities=(
        Capability(CapabilityType.COLLECT_PAYMENTS, "stripe_collect_payment", "Payment", "Payments through Stripe"),
        Capability(CapabilityType.CALCULATE_TAX, "stripe_calculate_tax", "Calculate Tax", "Stripe Tax"),
        Capability(CapabilityType.INVOICE_CUSTOMERS, "stripe_invoice_customer", "Invoice Customer", "Stripe invoices"),
    ),
    install_methods=(InstallMethod.WITH_API_KEY,),
)

Factory = Callable[[App, InvoiceNumbers], InvoicingApp]


@dataclass(frozen=True, slots=True)
class MarketplaceEntry:
    listing: Listing
    # None: listed but not installable in this build.
    factory: Factory | None
    # At most one installed app of this type per namespace (the sandbox: a second install is 409).
    singleton: bool = False


DEFAULT_ENTRIES: tuple[MarketplaceEntry, ...] = (
    MarketplaceEntry(STRIPE_LISTING, None),
    MarketplaceEntry(sandbox.LISTING, sandbox.SandboxApp, singleton=True),
    MarketplaceEntry(custom_invoicing.LISTING, custom_invoicing.CustomInvoicingApp),
)


class Marketplace:
    def __init__(self, numbers: InvoiceNumbers, entries: tuple[MarketplaceEntry, ...] = DEFAULT_ENTRIES) -> None:
        self._numbers = numbers
        self._entries: Mapping[AppType, MarketplaceEntry] = {e.listing.type: e for e in entries}

    def listings(self) -> list[Listing]:
        return [e.listing for e in self._entries.values()]

    def entry(self, app_type: AppType) -> MarketplaceEntry:
        found = self._entries.get(app_type)
        if found is None:
            raise NotFoundError("marketplace listing", app_type.value)
        return found

    def installable(self, app_type: AppType) -> MarketplaceEntry:
        entry = self.entry(app_type)
        if entry.factory is None:
            raise NotImplementedFeatureError(f"the {entry.listing.name} app is not available in this version of Tally")
        return entry

    def bind(self, app: App, numbers: InvoiceNumbers | None = None) -> InvoicingApp:
        """The app over its stored state; `numbers`, when given, are the invoice numbers of the
        caller's transaction (an invoice's state change), else numbers taken on their own."""
        factory = self.installable(app.type).factory
        assert factory is not None  # installable() refuses the others
        return factory(app, numbers or self._numbers)
