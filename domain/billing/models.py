"""Billing profiles (who bills, with which apps, by which workflow) and customer overrides.

A workflow says when lines are collected into an invoice, how long a draft waits and whether it
is approved automatically, when payment is due and how it is collected. A profile holds a complete
workflow (OpenMeter's defaults fill what a create leaves out); a customer override may pin another
profile and override single settings (`WorkflowPatch`); `EffectiveProfile` is what applies to a
customer, the one thing the invoicing code reads.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Final

from domain.billing.apps.models import App, validate_metadata, validate_name
from domain.catalog.durations import Duration, DurationError
from domain.catalog.ratecards import TaxConfig
from domain.customers.models import COUNTRY_RE, ULID_RE, Address, Customer
from domain.errors import ValidationError, Violations
from domain.pagination import Pagination, SortOrder, parse_order, parse_order_by

# OpenMeter names the default profile it provisions this way; kept so clients that look for it find it.
DEFAULT_PROFILE_NAME: Final = "openmeter-sandbox"
DEFAULT_PROFILE_DESCRIPTION: Final = "Default profile, using the sandbox app"
DEFAULT_SUPPLIER_NAME: Final = "Tally"
DEFAULT_SUPPLIER_COUNTRY: Final = "US"
MAX_DESCRIPTION_LENGTH: Final = 1024
MAX_TAX_CODE_LENGTH: Final = 32
PROFILE_ORDER_BY: Final = ("createdAt", "updatedAt", "default", "name")
OVERRIDE_ORDER_BY: Final = ("customerId", "customerName", "customerKey", "customerPrimaryEmail", "customerCreatedAt")
_PERIOD_UNITS: Final = {"DAY": "P1D", "WEEK": "P1W", "MONTH": "P1M", "YEAR": "P1Y"}
_STRIPE_TAX_CODE: Final = re.compile(r"^txcd_\d{8}$")


class Alignment(enum.StrEnum):
    SUBSCRIPTION = "subscription"
    ANCHORED = "anchored"


class CollectionMethod(enum.StrEnum):
    CHARGE_AUTOMATICALLY = "charge_automatically"
    SEND_INVOICE = "send_invoice"


class ProrationMode(enum.StrEnum):
    BILL_FULL_PERIOD = "bill_full_period"
    BILL_ACTUAL_PERIOD = "bill_actual_period"


@dataclass(frozen=True, slots=True)
class RecurringPeriod:
    """An anchored alignment's recurrence: `interval` as given (ISO 8601, or DAY/WEEK/MONTH/YEAR)."""

    interval: str
    anchor: datetime

    def duration(self) -> Duration:
        return Duration.parse(_PERIOD_UNITS.get(self.interval, self.interval))


def validate_tax_config(v: Violations, location: str, tax: TaxConfig) -> None:
    if tax.stripe_code is not None and not _STRIPE_TAX_CODE.match(tax.stripe_code):
        v.add(f"{location}.stripe.code", "must be a Stripe product tax code such as txcd_10000000", "invalid_tax_code")
    if tax.custom_invoicing_code is not None and not tax.custom_invoicing_code:
        v.add(f"{location}.customInvoicing.code", "must not be empty", "required")
    if tax.tax_code_id is not None and not ULID_RE.match(tax.tax_code_id):
        v.add(f"{location}.taxCodeId", "must be a ULID", "invalid_id")


_TAX_CODE_DEPRECATED: Final = (
    "a tax code (stripe.code / taxCodeId) in a default tax config is deprecated: it can no longer be "
    "added or changed, only removed (behavior and customInvoicing.code can still be set)"
)


def keep_tax_code_as_stored(
    v: Violations, location: str, given: TaxConfig | None, stored: TaxConfig | None
) -> TaxConfig | None:
    """A workflow's default tax config as a replace may write it: its tax code (the Stripe code or
    the tax code ID) only as stored or removed, as the contract's defaultTaxConfig says and
    OpenMeter's WithDeprecatedTaxCodeEnforced enforces (billing/profile.go). A removed Stripe code
    takes the tax code ID with it, as the two name one tax code; a client that predates taxCodeId
    sends the Stripe code alone and keeps both."""
    if given is None:
        return None
    if given.tax_code_id is not None and given.tax_code_id != (stored.tax_code_id if stored else None):
        v.add(f"{location}.taxCodeId", _TAX_CODE_DEPRECATED, "tax_code_deprecated")
    stored_stripe = stored.stripe_code if stored else None
    if given.stripe_code and given.stripe_code != stored_stripe:
        v.add(f"{location}.stripe.code", _TAX_CODE_DEPRECATED, "tax_code_deprecated")
    if stored_stripe and not given.stripe_code:
        return replace(given, tax_code_id=None)
    return given


@dataclass(frozen=True, slots=True)
class Workflow:
    """A complete workflow. Durations are kept as written (P0D stays P0D) and validated on input."""

    alignment: Alignment = Alignment.SUBSCRIPTION
    recurring_period: RecurringPeriod | None = None
    collection_interval: str = "PT1H"
    auto_advance: bool = True
    draft_period: str = "P0D"
    due_after: str = "P30D"
    progressive_billing: bool = True
    subscription_end_proration_mode: ProrationMode = ProrationMode.BILL_ACTUAL_PERIOD
    default_tax_config: TaxConfig | None = None
    collection_method: CollectionMethod = CollectionMethod.CHARGE_AUTOMATICALLY
    tax_enabled: bool = True
    tax_enforced: bool = False

    def collection_interval_duration(self) -> Duration:
        return Duration.parse(self.collection_interval)

    def draft_period_duration(self) -> Duration:
        return Duration.parse(self.draft_period)

    def due_after_duration(self) -> Duration:
        return Duration.parse(self.due_after)

    # The dates an invoice takes from its workflow snapshot (OpenMeter: collectionAt, draftUntil, dueAt).

    def collection_at(self, lines_due_at: datetime) -> datetime:
        """When quantities are snapshotted: the collection interval after the latest line became due
        (late usage within the interval is still counted)."""
        return self.collection_interval_duration().add_to(lines_due_at)

    def draft_until(self, draft_created_at: datetime) -> datetime:
        """When an automatically approved draft is approved."""
        return self.draft_period_duration().add_to(draft_created_at)

    def due_at(self, issued_at: datetime) -> datetime:
        return self.due_after_duration().add_to(issued_at)


DEFAULT_WORKFLOW: Final = Workflow()


@dataclass(frozen=True, slots=True)
class WorkflowPatch:
    """Workflow settings given in a request: None means "not given".

    On create a missing setting takes OpenMeter's default; on a customer override it inherits the
    profile's. The same validation serves both.
    """

    alignment: Alignment | None = None
    recurring_period: RecurringPeriod | None = None
    collection_interval: str | None = None
    auto_advance: bool | None = None
    draft_period: str | None = None
    due_after: str | None = None
    progressive_billing: bool | None = None
    subscription_end_proration_mode: ProrationMode | None = None
    default_tax_config: TaxConfig | None = None
    collection_method: CollectionMethod | None = None
    tax_enabled: bool | None = None
    tax_enforced: bool | None = None

    def validate(self, v: Violations, location: str = "workflow") -> None:
        for name, path in (
            ("collection_interval", "collection.interval"),
            ("draft_period", "invoicing.draftPeriod"),
            ("due_after", "invoicing.dueAfter"),
        ):
            text = getattr(self, name)
            if text is not None:
                _check_duration(v, f"{location}.{path}", text)
        if self.alignment is Alignment.ANCHORED:
            if self.recurring_period is None:
                v.add(f"{location}.collection.alignment.recurringPeriod", "required for anchored alignment", "required")
            else:
                _check_recurring_period(v, f"{location}.collection.alignment.recurringPeriod", self.recurring_period)
        elif self.recurring_period is not None:
            # Only the anchored alignment has a period; under the subscription alignment it would be
            # kept where nothing reads it (OpenMeter's CollectionConfig.Validate refuses it too).
            v.add(
                f"{location}.collection.alignment.recurringPeriod",
                "only the anchored alignment takes a recurring period",
                "not_applicable",
            )
        if self.default_tax_config is not None:
            validate_tax_config(v, f"{location}.invoicing.defaultTaxConfig", self.default_tax_config)
        # OpenMeter's WorkflowTaxConfig.Validate: tax cannot be enforced when it is not enabled.
        if self.tax_enforced and self.tax_enabled is False:
            v.add(f"{location}.tax.enforced", "tax cannot be enforced when it is not enabled", "tax_not_enabled")

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def with_tax_code_as_stored(
        self, v: Violations, stored: TaxConfig | None, location: str = "workflow"
    ) -> WorkflowPatch:
        """This patch with its default tax config checked by `keep_tax_code_as_stored`."""
        tax = keep_tax_code_as_stored(v, f"{location}.invoicing.defaultTaxConfig", self.default_tax_config, stored)
        return replace(self, default_tax_config=tax)

    def apply(self, base: Workflow) -> Workflow:
        changes = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        if self.alignment is Alignment.SUBSCRIPTION:
            changes["recurring_period"] = None
        return replace(base, **changes)


def _check_profile_workflow(v: Violations, patch: WorkflowPatch, location: str = "workflow") -> None:
    """Rules for a profile's own workflow, beyond those an override's settings share.

    OpenMeter validates a profile's collection interval as positive ("item collection period must
    be greater or equal to 0", tested with IsPositive), while an override's only as not negative.
    """
    interval = patch.collection_interval
    if interval is not None:
        try:
            zero = Duration.parse(interval).is_zero()
        except DurationError:
            zero = False  # reported by WorkflowPatch.validate
        if zero:
            v.add(f"{location}.collection.interval", "must be longer than zero", "invalid_duration")


def _check_duration(v: Violations, location: str, text: str) -> None:
    try:
        Duration.parse(text)
    except DurationError as exc:
        v.add(location, str(exc), "invalid_duration")


def _check_recurring_period(v: Violations, location: str, period: RecurringPeriod) -> None:
    try:
        duration = period.duration()
    except DurationError as exc:
        v.add(f"{location}.interval", str(exc), "invalid_duration")
        return
    if duration.is_zero():
        v.add(f"{location}.interval", "must be longer than zero", "invalid_duration")


@dataclass(frozen=True, slots=True)
class Supplier:
    """OpenMeter's BillingParty as a profile's supplier: who issues the invoices."""

    name: str
    address: Address
    key: str | None = None
    tax_code: str | None = None

    def validate(self, v: Violations, location: str = "supplier") -> None:
        if not self.name:
            v.add(f"{location}.name", "required", "required")
        elif len(self.name) > 256:
            v.add(f"{location}.name", "must be at most 256 characters", "invalid_length")
        if self.key is not None and not 1 <= len(self.key) <= 256:
            v.add(f"{location}.key", "must be 1 to 256 characters", "invalid_length")
        if self.address.country is None:
            v.add(f"{location}.addresses[0].country", "required (an invoice needs the supplier's country)", "required")
        elif not COUNTRY_RE.match(self.address.country):
            v.add(
                f"{location}.addresses[0].country", "must be an ISO 3166-1 alpha-2 code such as US", "invalid_country"
            )
        if self.tax_code is not None and not 1 <= len(self.tax_code) <= MAX_TAX_CODE_LENGTH:
            v.add(f"{location}.taxId.code", f"must be 1 to {MAX_TAX_CODE_LENGTH} characters", "invalid_length")


@dataclass(frozen=True, slots=True)
class ProfileApps:
    """The apps a profile uses for each capability (IDs)."""

    tax: str
    invoicing: str
    payment: str

    def ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.tax, self.invoicing, self.payment)))


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    namespace: str
    name: str
    supplier: Supplier
    workflow: Workflow
    apps: ProfileApps
    default: bool
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ResolvedApps:
    tax: App
    invoicing: App
    payment: App


@dataclass(frozen=True, slots=True)
class ProfileView:
    """A profile as answered: with its apps expanded when asked (expand=apps)."""

    profile: Profile
    apps: ResolvedApps | None = None


def _validate_profile_fields(
    v: Violations, name: str, description: str | None, metadata: Mapping[str, str], supplier: Supplier
) -> None:
    validate_name(v, "name", name)
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        v.add("description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters", "invalid_length")
    validate_metadata(v, "metadata", metadata)
    supplier.validate(v)


@dataclass(frozen=True, slots=True)
class ProfileCreateInput:
    name: str
    supplier: Supplier
    apps: ProfileApps
    default: bool = False
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    workflow: WorkflowPatch = field(default_factory=WorkflowPatch)

    def validate(self) -> Workflow:
        v = Violations()
        _validate_profile_fields(v, self.name, self.description, self.metadata, self.supplier)
        for capability in ("tax", "invoicing", "payment"):
            if not ULID_RE.match(getattr(self.apps, capability) or ""):
                v.add(f"apps.{capability}", "must be an app ID (ULID)", "invalid_id")
        if len(self.apps.ids()) > 1:
            # OpenMeter's rule: one app serves all three capabilities of a profile.
            v.add("apps", "tax, invoicing and payment must be the same app", "apps_differ")
        self.workflow.validate(v)
        _check_profile_workflow(v, self.workflow)
        workflow = self.workflow.with_tax_code_as_stored(v, None)
        v.raise_if_any()
        return workflow.apply(DEFAULT_WORKFLOW)


@dataclass(frozen=True, slots=True)
class ProfileUpdateInput:
    """OpenMeter's BillingProfileReplaceUpdateWithWorkflow: everything but the apps."""

    name: str
    supplier: Supplier
    default: bool
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    workflow: WorkflowPatch = field(default_factory=WorkflowPatch)

    def validate(self, current: Profile) -> Workflow:
        v = Violations()
        _validate_profile_fields(v, self.name, self.description, self.metadata, self.supplier)
        self.workflow.validate(v)
        _check_profile_workflow(v, self.workflow)
        workflow = self.workflow.with_tax_code_as_stored(v, current.workflow.default_tax_config)
        v.raise_if_any()
        # A replace: missing settings take the defaults, except the proration mode, which OpenMeter
        # keeps (clients that predate it must not reset it).
        base = replace(
            DEFAULT_WORKFLOW, subscription_end_proration_mode=current.workflow.subscription_end_proration_mode
        )
        return workflow.apply(base)


@dataclass(frozen=True, slots=True)
class ProfileListQuery:
    pagination: Pagination
    order: SortOrder
    order_by: str
    include_archived: bool


@dataclass(frozen=True, slots=True)
class ListProfilesInput:
    page: int | None = None
    page_size: int | None = None
    order: str | None = None
    order_by: str | None = None
    include_archived: bool = False
    expand: Sequence[str] = ()

    def validate(self) -> tuple[ProfileListQuery, bool]:
        v = Violations()
        pagination = Pagination(page=self.page, page_size=self.page_size).validate().paged()
        order_by = parse_order_by(self.order_by, PROFILE_ORDER_BY, "createdAt", v)
        expand_apps = parse_expand(v, self.expand, ("apps",)).get("apps", False)
        v.raise_if_any()
        # OpenMeter lists profiles newest first unless asked otherwise.
        order = parse_order(self.order) if self.order else SortOrder.DESC
        return ProfileListQuery(pagination, order, order_by, self.include_archived), expand_apps


def parse_expand(v: Violations, values: Sequence[str], allowed: Sequence[str]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for value in values:
        # Both `expand=a&expand=b` and `expand=a,b` reach here.
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            if item not in allowed:
                v.add("expand", f"must be one of {', '.join(allowed)}", "invalid_enum")
            else:
                out[item] = True
    return out


@dataclass(frozen=True, slots=True)
class CustomerOverride:
    namespace: str
    customer_id: str
    created_at: datetime
    updated_at: datetime
    # None: the customer follows whichever profile is the default.
    profile_id: str | None = None
    workflow: WorkflowPatch = field(default_factory=WorkflowPatch)
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OverrideUpsertInput:
    profile_id: str | None = None
    workflow: WorkflowPatch = field(default_factory=WorkflowPatch)

    def validate(self) -> None:
        v = Violations()
        if self.profile_id is not None and not ULID_RE.match(self.profile_id):
            v.add("billingProfileId", "must be a billing profile ID (ULID)", "invalid_id")
        self.workflow.validate(v)
        v.raise_if_any()

    def check_merged(self, merged: Workflow) -> None:
        """The override's settings over its profile's keep the rules a whole workflow keeps, as
        OpenMeter validates the merged profile: tax is enforced only while it is enabled."""
        if merged.tax_enforced and not merged.tax_enabled:
            # The setting this override gave is the one to change.
            name = "enabled" if self.workflow.tax_enabled is False else "enforced"
            raise ValidationError.single(
                f"workflow.tax.{name}",
                "tax cannot be enforced when it is not enabled (this override's settings over its profile's)",
                "tax_not_enabled",
            )


@dataclass(frozen=True, slots=True)
class EffectiveProfile:
    """What applies to one customer: its base profile, the override if any, and the merged workflow."""

    customer_id: str
    profile: Profile
    workflow: Workflow
    override: CustomerOverride | None = None
    apps: ResolvedApps | None = None
    customer: Customer | None = None


@dataclass(frozen=True, slots=True)
class OverrideListQuery:
    pagination: Pagination
    order: SortOrder
    order_by: str
    profile_ids: tuple[str, ...]
    include_all_customers: bool
    customers_without_pinned_profile: bool
    customer_ids: tuple[str, ...]
    customer_name: str | None
    customer_key: str | None
    customer_primary_email: str | None


@dataclass(frozen=True, slots=True)
class ListOverridesInput:
    page: int | None = None
    page_size: int | None = None
    order: str | None = None
    order_by: str | None = None
    billing_profile: Sequence[str] = ()
    # OpenMeter's spec defaults this to true (every customer, with its effective profile).
    include_all_customers: bool | None = None
    customers_without_pinned_profile: bool = False
    customer_id: Sequence[str] = ()
    customer_name: str | None = None
    customer_key: str | None = None
    customer_primary_email: str | None = None
    expand: Sequence[str] = ()

    def validate(self) -> tuple[OverrideListQuery, dict[str, bool]]:
        v = Violations()
        # Always paged: without page or pageSize, the contract's page 1 of 100 (the answer says so).
        pagination = Pagination(page=self.page, page_size=self.page_size).validate().paged()
        order_by = parse_order_by(self.order_by, OVERRIDE_ORDER_BY, "customerId", v)
        expand = parse_expand(v, self.expand, ("apps", "customer"))
        for i, profile_id in enumerate(self.billing_profile):
            if not ULID_RE.match(profile_id):
                v.add(f"billingProfile[{i}]", "must be a billing profile ID (ULID)", "invalid_id")
        for i, customer_id in enumerate(self.customer_id):
            if not ULID_RE.match(customer_id):
                v.add(f"customerId[{i}]", "must be a customer ID (ULID)", "invalid_id")
        if self.customers_without_pinned_profile and self.billing_profile:
            # Customers pinned to none of the profiles cannot be pinned to one of them (OpenMeter
            # refuses the pair as well).
            v.add(
                "billingProfile",
                "cannot be used with customersWithoutPinnedProfile",
                "conflicting_filters",
            )
        v.raise_if_any()
        query = OverrideListQuery(
            pagination=pagination,
            # OpenMeter lists overrides newest customer ID first unless asked otherwise.
            order=parse_order(self.order) if self.order else SortOrder.DESC,
            order_by=order_by,
            profile_ids=tuple(self.billing_profile),
            include_all_customers=True if self.include_all_customers is None else self.include_all_customers,
            customers_without_pinned_profile=self.customers_without_pinned_profile,
            customer_ids=tuple(self.customer_id),
            customer_name=self.customer_name or None,
            customer_key=self.customer_key or None,
            customer_primary_email=self.customer_primary_email or None,
        )
        return query, expand


def default_profile_input(sandbox_app_id: str) -> ProfileCreateInput:
    return ProfileCreateInput(
        name=DEFAULT_PROFILE_NAME,
        description=DEFAULT_PROFILE_DESCRIPTION,
        supplier=Supplier(name=DEFAULT_SUPPLIER_NAME, address=Address(country=DEFAULT_SUPPLIER_COUNTRY)),
        apps=ProfileApps(tax=sandbox_app_id, invoicing=sandbox_app_id, payment=sandbox_app_id),
        default=True,
    )
