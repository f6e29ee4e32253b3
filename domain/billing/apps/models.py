"""Apps as stored and shown (OpenMeter's App, MarketplaceListing, CustomerAppData) and their inputs."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from domain.customers.models import ULID_RE
from domain.errors import ValidationError, Violations

MAX_NAME_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 1024
MAX_METADATA_ENTRIES = 100
MAX_METADATA_TEXT = 1024


class AppType(enum.StrEnum):
    STRIPE = "stripe"
    SANDBOX = "sandbox"
    CUSTOM_INVOICING = "custom_invoicing"


class CapabilityType(enum.StrEnum):
    REPORT_USAGE = "reportUsage"
    REPORT_EVENTS = "reportEvents"
    CALCULATE_TAX = "calculateTax"
    INVOICE_CUSTOMERS = "invoiceCustomers"
    COLLECT_PAYMENTS = "collectPayments"


class InstallMethod(enum.StrEnum):
    WITH_OAUTH2 = "with_oauth2"
    WITH_API_KEY = "with_api_key"
    NO_CREDENTIALS_REQUIRED = "no_credentials_required"


class AppStatus(enum.StrEnum):
    READY = "ready"
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, slots=True)
class Capability:
    type: CapabilityType
    key: str
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class Listing:
    """A marketplace entry: what an app type can do and how it is installed."""

    type: AppType
    name: str
    description: str
    capabilities: tuple[Capability, ...]
    install_methods: tuple[InstallMethod, ...]

    def capability_types(self) -> frozenset[CapabilityType]:
        return frozenset(c.type for c in self.capabilities)


@dataclass(frozen=True, slots=True)
class CustomInvoicingSettings:
    """Whether an invoice waits for the integrator at draft sync and at issuing sync."""

    enable_draft_sync_hook: bool = False
    enable_issuing_sync_hook: bool = False


@dataclass(frozen=True, slots=True)
class App:
    id: str
    namespace: str
    type: AppType
    name: str
    created_at: datetime
    updated_at: datetime
    status: AppStatus = AppStatus.READY
    # Set only by a replace (OpenMeter's AppReplaceUpdate); installs take none.
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    deleted_at: datetime | None = None
    # Set for custom_invoicing apps only.
    custom_invoicing: CustomInvoicingSettings | None = None


def validate_metadata(v: Violations, location: str, metadata: Mapping[str, str]) -> None:
    if len(metadata) > MAX_METADATA_ENTRIES:
        v.add(location, f"at most {MAX_METADATA_ENTRIES} entries", "too_many")
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_TEXT or len(value) > MAX_METADATA_TEXT:
            v.add(f"{location}.{key}", f"keys and values must be 1 to {MAX_METADATA_TEXT} characters", "invalid_length")


def validate_name(v: Violations, location: str, name: str) -> None:
    if not name or len(name) > MAX_NAME_LENGTH:
        v.add(location, f"must be 1 to {MAX_NAME_LENGTH} characters", "invalid_length")


def parse_app_type(value: str, location: str = "type") -> AppType:
    try:
        return AppType(value)
    except ValueError:
        raise ValidationError.single(
            location, f"must be one of {', '.join(t.value for t in AppType)}", "invalid_enum"
        ) from None


def require_ulid(value: str, location: str) -> str:
    if not ULID_RE.match(value or ""):
        raise ValidationError.single(location, "must be a ULID", "invalid_id")
    return value


@dataclass(frozen=True, slots=True)
class InstallAppInput:
    type: str
    name: str | None = None
    # OpenMeter's createBillingProfile (default true): also create a billing profile that uses the app.
    create_billing_profile: bool = True
    # Set for install/apikey only.
    api_key: str | None = None

    def validate(self) -> AppType:
        app_type = parse_app_type(self.type)
        v = Violations()
        if self.name is not None:
            validate_name(v, "name", self.name)
        if self.api_key is not None and not self.api_key.strip():
            v.add("apiKey", "must not be empty", "required")
        v.raise_if_any()
        return app_type


@dataclass(frozen=True, slots=True)
class UpdateAppInput:
    """OpenMeter's AppReplaceUpdate: the whole mutable state, discriminated by `type`."""

    type: str
    name: str
    description: str | None = None
    metadata: Mapping[str, str] | None = None
    enable_draft_sync_hook: bool | None = None
    enable_issuing_sync_hook: bool | None = None
    secret_api_key: str | None = None

    def validate(self, current: App) -> None:
        app_type = parse_app_type(self.type)
        v = Violations()
        if app_type is not current.type:
            v.add("type", f"the app is a {current.type.value} app; its type cannot change", "type_mismatch")
        validate_name(v, "name", self.name)
        if self.description is not None and len(self.description) > MAX_DESCRIPTION_LENGTH:
            v.add("description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters", "invalid_length")
        validate_metadata(v, "metadata", self.metadata or {})
        if app_type is AppType.CUSTOM_INVOICING:
            if self.enable_draft_sync_hook is None:
                v.add("enableDraftSyncHook", "required for a custom_invoicing app", "required")
            if self.enable_issuing_sync_hook is None:
                v.add("enableIssuingSyncHook", "required for a custom_invoicing app", "required")
        v.raise_if_any()


@dataclass(frozen=True, slots=True)
class ListAppsInput:
    page: int | None = None
    page_size: int | None = None


@dataclass(frozen=True, slots=True)
class CustomerAppData:
    """What one app keeps about one customer (for custom invoicing: the integrator's metadata)."""

    namespace: str
    app_id: str
    customer_id: str
    created_at: datetime
    updated_at: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CustomerAppDataInput:
    """One item of PUT /customers/{id}/apps: the app (by ID, or the customer's app of that type) and its data."""

    type: str
    app_id: str | None = None
    metadata: Mapping[str, str] | None = None
    stripe_customer_id: str | None = None
    stripe_default_payment_method_id: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerAppEntry:
    """An app a customer has data for, with that data (a row of GET /customers/{id}/apps)."""

    app: App
    data: CustomerAppData
