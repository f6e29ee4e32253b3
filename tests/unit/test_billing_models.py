"""Billing profiles' pure rules: OpenMeter's workflow defaults, replace vs override merge, validation
with field paths, list inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.billing.apps.models import AppType, CustomerAppDataInput, InstallAppInput, UpdateAppInput
from domain.billing.apps.sandbox import LISTING
from domain.billing.models import (
    DEFAULT_WORKFLOW,
    Alignment,
    CollectionMethod,
    ListOverridesInput,
    ListProfilesInput,
    Profile,
    ProfileApps,
    ProfileCreateInput,
    ProfileUpdateInput,
    ProrationMode,
    RecurringPeriod,
    Supplier,
    WorkflowPatch,
    default_profile_input,
)
from domain.catalog.ratecards import TaxConfig
from domain.customers.models import Address
from domain.errors import ValidationError, Violations
from domain.pagination import SortOrder
from tests.unit.test_invoice_states import NOW, Numbers, make_app

APP = "01JAPP00000000000000000000"
SUPPLIER = Supplier("Acme", Address(country="DE"))


def fields_of(error: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {v.field for v in error.value.violations}


def test_openmeter_defaults() -> None:
    workflow = default_profile_input(APP).validate()
    assert workflow == DEFAULT_WORKFLOW
    assert (workflow.alignment, workflow.collection_interval) == (Alignment.SUBSCRIPTION, "PT1H")
    assert (workflow.draft_period, workflow.due_after) == ("P0D", "P30D")
    assert workflow.auto_advance and workflow.progressive_billing
    assert workflow.collection_method is CollectionMethod.CHARGE_AUTOMATICALLY
    assert workflow.subscription_end_proration_mode is ProrationMode.BILL_ACTUAL_PERIOD
    assert workflow.tax_enabled and not workflow.tax_enforced
    assert workflow.draft_period_duration().is_zero()
    assert workflow.due_after_duration().days == 30
    assert default_profile_input(APP).name == "openmeter-sandbox"


def test_create_fills_defaults_and_validates() -> None:
    created = ProfileCreateInput(
        name="EU", supplier=SUPPLIER, apps=ProfileApps(APP, APP, APP), workflow=WorkflowPatch(auto_advance=False)
    ).validate()
    assert created.auto_advance is False and created.due_after == "P30D"

    with pytest.raises(ValidationError) as bad:
        ProfileCreateInput(
            name="",
            supplier=Supplier("", Address(country="Germany")),
            apps=ProfileApps(APP, "01JAPQ00000000000000000000", "nope"),
            workflow=WorkflowPatch(
                draft_period="-P1D",
                due_after="P1.5M",
                collection_interval="hourly",
                alignment=Alignment.ANCHORED,
                default_tax_config=TaxConfig(stripe_code="txcd_1"),
            ),
        ).validate()
    assert fields_of(bad) == {
        "name",
        "supplier.name",
        "supplier.addresses[0].country",
        "apps.payment",
        "apps",
        "workflow.invoicing.draftPeriod",
        "workflow.invoicing.dueAfter",
        "workflow.collection.interval",
        "workflow.collection.alignment.recurringPeriod",
        "workflow.invoicing.defaultTaxConfig.stripe.code",
    }

    violations = Violations()
    WorkflowPatch(alignment=Alignment.ANCHORED, recurring_period=RecurringPeriod("PT0S", NOW)).validate(violations)
    with pytest.raises(ValidationError) as zero:
        violations.raise_if_any()
    assert fields_of(zero) == {"workflow.collection.alignment.recurringPeriod.interval"}
    month = RecurringPeriod("MONTH", NOW)
    assert month.duration().months == 1


def test_update_is_a_replace_that_keeps_the_proration_mode() -> None:
    current = Profile(
        id=APP,
        namespace="default",
        name="EU",
        supplier=SUPPLIER,
        workflow=WorkflowPatch(
            auto_advance=False, subscription_end_proration_mode=ProrationMode.BILL_FULL_PERIOD
        ).apply(DEFAULT_WORKFLOW),
        apps=ProfileApps(APP, APP, APP),
        default=False,
        created_at=NOW,
        updated_at=NOW,
    )
    replaced = ProfileUpdateInput(name="EU", supplier=SUPPLIER, default=False).validate(current)
    assert replaced.auto_advance is True
    assert replaced.subscription_end_proration_mode is ProrationMode.BILL_FULL_PERIOD


def test_a_stored_tax_code_may_be_sent_back_or_removed_but_not_changed() -> None:
    # OpenMeter's WithDeprecatedTaxCodeEnforced: a profile stored with a tax code (from before the
    # deprecation) keeps it when a replace sends it back, loses it when left out (a removed Stripe
    # code takes the tax code ID with it), and refuses another.
    stored = TaxConfig(stripe_code="txcd_10000000", tax_code_id="01JTAX00000000000000000000")
    current = Profile(
        id=APP,
        namespace="default",
        name="EU",
        supplier=SUPPLIER,
        workflow=WorkflowPatch(default_tax_config=stored).apply(DEFAULT_WORKFLOW),
        apps=ProfileApps(APP, APP, APP),
        default=False,
        created_at=NOW,
        updated_at=NOW,
    )

    def replace_with(tax: TaxConfig) -> TaxConfig | None:
        patch = WorkflowPatch(default_tax_config=tax)
        return ProfileUpdateInput("EU", SUPPLIER, False, workflow=patch).validate(current).default_tax_config

    assert replace_with(stored) == stored
    # A client that predates taxCodeId sends the Stripe code alone: both stay.
    legacy = TaxConfig(stripe_code="txcd_10000000", tax_code_id=None)
    assert replace_with(legacy) == legacy
    # Removing the Stripe code removes the ID naming the same code.
    assert replace_with(TaxConfig(tax_code_id=stored.tax_code_id)) == TaxConfig()
    with pytest.raises(ValidationError) as changed:
        replace_with(TaxConfig(stripe_code="txcd_20030000", tax_code_id="01JTAX00000000000000000001"))
    where = "workflow.invoicing.defaultTaxConfig"
    assert fields_of(changed) == {f"{where}.stripe.code", f"{where}.taxCodeId"}
    with pytest.raises(ValidationError) as added:
        ProfileCreateInput(
            "EU", SUPPLIER, ProfileApps(APP, APP, APP), workflow=WorkflowPatch(default_tax_config=stored)
        ).validate()
    assert fields_of(added) == {f"{where}.stripe.code", f"{where}.taxCodeId"}


def test_override_merge() -> None:
    anchored = WorkflowPatch(
        alignment=Alignment.ANCHORED, recurring_period=RecurringPeriod("P1M", datetime(2026, 1, 1, tzinfo=UTC))
    )
    base = anchored.apply(DEFAULT_WORKFLOW)
    merged = WorkflowPatch(due_after="P7D", collection_method=CollectionMethod.SEND_INVOICE).apply(base)
    assert merged.due_after == "P7D" and merged.collection_method is CollectionMethod.SEND_INVOICE
    assert merged.alignment is Alignment.ANCHORED and merged.recurring_period == base.recurring_period
    assert merged.draft_period == base.draft_period
    # Switching an override to subscription alignment drops the profile's anchor.
    assert WorkflowPatch(alignment=Alignment.SUBSCRIPTION).apply(base).recurring_period is None
    assert WorkflowPatch().is_empty() and WorkflowPatch().apply(base) == base


def test_list_inputs() -> None:
    query, expand_apps = ListProfilesInput(expand=["apps"]).validate()
    assert expand_apps and query.order is SortOrder.DESC and query.order_by == "createdAt"
    with pytest.raises(ValidationError) as bad:
        ListProfilesInput(order_by="id", expand=["apps,bogus"]).validate()
    assert fields_of(bad) == {"orderBy", "expand"}

    overrides, expand = ListOverridesInput(expand=["apps,customer"]).validate()
    assert overrides.include_all_customers is True and expand == {"apps": True, "customer": True}
    assert ListOverridesInput(include_all_customers=False).validate()[0].include_all_customers is False
    with pytest.raises(ValidationError) as ids:
        ListOverridesInput(billing_profile=["x"], customer_id=["y"]).validate()
    assert fields_of(ids) == {"billingProfile[0]", "customerId[0]"}


def test_app_inputs() -> None:
    assert InstallAppInput(type="custom_invoicing").validate() is AppType.CUSTOM_INVOICING
    with pytest.raises(ValidationError):
        InstallAppInput(type="quickbooks").validate()
    custom = make_app(AppType.CUSTOM_INVOICING)
    with pytest.raises(ValidationError) as missing:
        UpdateAppInput(type="custom_invoicing", name="x").validate(custom)
    assert fields_of(missing) == {"enableDraftSyncHook", "enableIssuingSyncHook"}
    with pytest.raises(ValidationError) as other:
        UpdateAppInput(type="sandbox", name="", metadata={"k": "v" * 2000}).validate(custom)
    assert fields_of(other) == {"type", "name", "metadata.k"}
    assert {c.key for c in LISTING.capabilities} == {
        "sandbox_collect_payment",
        "sandbox_calculate_tax",
        "sandbox_invoice_customer",
    }


def test_customer_data_is_validated_by_the_app() -> None:
    from domain.billing.apps.custom_invoicing import CustomInvoicingApp
    from domain.billing.apps.sandbox import SandboxApp

    custom = CustomInvoicingApp(make_app(AppType.CUSTOM_INVOICING), Numbers())
    item = CustomerAppDataInput(type="custom_invoicing", metadata={"erpId": "C-1"})
    assert custom.validate_customer_data(item, "[0]") == {"erpId": "C-1"}
    with pytest.raises(ValidationError) as bad:
        custom.validate_customer_data(CustomerAppDataInput(type="custom_invoicing", metadata={"": "x"}), "[3]")
    assert fields_of(bad) == {"[3].metadata."}
    sandbox = SandboxApp(make_app(AppType.SANDBOX), Numbers())
    assert sandbox.validate_customer_data(CustomerAppDataInput(type="sandbox", metadata={"a": "b"}), "[0]") == {}


def test_invoice_dates_from_the_workflow() -> None:
    issued = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert DEFAULT_WORKFLOW.due_at(issued) == datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert DEFAULT_WORKFLOW.draft_until(issued) == issued
    assert DEFAULT_WORKFLOW.collection_at(issued) == datetime(2026, 1, 31, 13, tzinfo=UTC)
    monthly = WorkflowPatch(due_after="P1M", draft_period="P2D").apply(DEFAULT_WORKFLOW)
    # Calendar months clamp to the month's end (Jan 31 + P1M = Feb 28).
    assert monthly.due_at(issued) == datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert monthly.draft_until(issued) == datetime(2026, 2, 2, 12, tzinfo=UTC)
