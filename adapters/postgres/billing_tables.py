"""Postgres tables of the billing area (sqlmodel). Every table but the billing worker's marks (a
row per pass step, across namespaces) is keyed by namespace first.

Invoices and their lines live here too; profiles keep their workflow as a
JSON document because an invoice snapshots it whole.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, Numeric, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), **kwargs)


def _json(name: str | None = None, nullable: bool = False) -> Any:
    column = Column(name, JSONB, nullable=nullable) if name else Column(JSONB, nullable=nullable)
    return Field(default=None if nullable else {}, sa_column=column)


class AppRow(SQLModel, table=True):
    __tablename__ = "apps"
    __table_args__ = (
        # The sandbox is a singleton per namespace (the marketplace's rule, enforced for racing installs).
        Index(
            "apps_live_sandbox",
            "namespace",
            unique=True,
            postgresql_where=text("deleted_at IS NULL AND type = 'sandbox'"),
        ),
        Index("apps_by_type", "namespace", "type", "created_at"),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    type: str
    name: str
    description: str | None = None
    status: str
    meta: dict[str, str] = _json("metadata")
    # Type-specific settings (custom_invoicing: enable_draft_sync_hook, enable_issuing_sync_hook).
    settings: dict[str, Any] = _json()
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)


class AppCustomerDataRow(SQLModel, table=True):
    __tablename__ = "app_customer_data"
    __table_args__ = (Index("app_customer_data_customer", "namespace", "customer_id"),)

    namespace: str = Field(primary_key=True)
    app_id: str = Field(primary_key=True)
    customer_id: str = Field(primary_key=True)
    meta: dict[str, str] = _json("metadata")
    created_at: datetime = _tz()
    updated_at: datetime = _tz()


class BillingProfileRow(SQLModel, table=True):
    __tablename__ = "billing_profiles"
    __table_args__ = (
        # One default profile per namespace, also when two requests make one the default at once.
        Index(
            "billing_profiles_one_default",
            "namespace",
            unique=True,
            postgresql_where=text("is_default AND deleted_at IS NULL"),
        ),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    name: str
    description: str | None = None
    meta: dict[str, str] = _json("metadata")
    # {name, key, taxCode, address{...}}
    supplier: dict[str, Any] = _json()
    # The complete workflow (domain.billing.models.Workflow), field names as in the domain.
    workflow: dict[str, Any] = _json()
    tax_app_id: str
    invoicing_app_id: str
    payment_app_id: str
    is_default: bool = False
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)


class BillingCustomerOverrideRow(SQLModel, table=True):
    __tablename__ = "billing_customer_overrides"
    __table_args__ = (
        # The live override of a customer, found by index even before the planner has statistics
        # (lists join every customer of a page to it).
        Index(
            "billing_customer_overrides_live",
            "namespace",
            "customer_id",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # Not partial: a second partial index with the same predicate tempts the planner away from
        # the one above when it joins customers to their overrides.
        Index("billing_customer_overrides_profile", "namespace", "profile_id"),
    )

    namespace: str = Field(primary_key=True)
    customer_id: str = Field(primary_key=True)
    profile_id: str | None = None
    # Only the settings the override sets (domain.billing.models.WorkflowPatch, None ones left out).
    workflow: dict[str, Any] = _json()
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)


class BillingSequenceRow(SQLModel, table=True):
    """The last number handed out per namespace and scope (invoice numbers per app type)."""

    __tablename__ = "billing_sequences"

    namespace: str = Field(primary_key=True)
    scope: str = Field(sa_column=Column(String, primary_key=True))
    last_value: int = Field(sa_column=Column(BigInteger, nullable=False))


class BillingMarkRow(SQLModel, table=True):
    """Times the billing worker's passes keep across restarts, by name (not per namespace: a pass
    covers every namespace). `late_usage_read`: when the last late-usage read that finished began."""

    __tablename__ = "billing_worker_marks"

    name: str = Field(primary_key=True)
    at: datetime = _tz()


def _money(nullable: bool = False, default: Any = 0) -> Any:
    # Numeric without precision: exact decimals of any scale (amounts, quantities, unit prices).
    return Field(default=default, sa_column=Column(Numeric, nullable=nullable))


class InvoiceRow(SQLModel, table=True):
    __tablename__ = "billing_invoices"
    __table_args__ = (
        # One live gathering invoice per customer and currency, also for racing pending-line posts.
        Index(
            "billing_invoices_one_gathering",
            "namespace",
            "customer_id",
            "currency",
            unique=True,
            postgresql_where=text("status = 'gathering' AND deleted_at IS NULL"),
        ),
        Index("billing_invoices_customer", "namespace", "customer_id", "created_at"),
        Index("billing_invoices_list", "namespace", "created_at", "id"),
        # The billing worker's scans: work by state and schedule, gathering invoices by due date.
        Index(
            "billing_invoices_work",
            "extended_status",
            "next_attempt_at",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "billing_invoices_gathering_due",
            "collection_at",
            postgresql_where=text("status = 'gathering' AND deleted_at IS NULL"),
        ),
        # The late-usage pass: invoices issued recently (a draft may wait past its period's window).
        Index(
            "billing_invoices_issued",
            "issued_at",
            postgresql_where=text("issued_at IS NOT NULL AND deleted_at IS NULL"),
        ),
        # The billing worker's pass over notifications a write owes and nobody told (0021).
        Index(
            "billing_invoices_notification_owed",
            "notification_owed_at",
            postgresql_where=text("notification_owed IS NOT NULL"),
        ),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    type: str
    status: str
    extended_status: str
    customer_id: str
    currency: str
    number: str | None = None
    description: str | None = None
    profile_id: str
    invoicing_app_id: str
    payment_app_id: str
    tax_app_id: str
    # {id, name, key, subject_keys, billing_address} (usage_subject_keys, the key and subject keys, before)
    customer: dict[str, Any] = _json()
    supplier: dict[str, Any] = _json()
    workflow: dict[str, Any] = _json()
    period_start: datetime | None = _tz(default=None, nullable=True)
    period_end: datetime | None = _tz(default=None, nullable=True)
    collection_at: datetime | None = _tz(default=None, nullable=True)
    draft_until: datetime | None = _tz(default=None, nullable=True)
    issued_at: datetime | None = _tz(default=None, nullable=True)
    due_at: datetime | None = _tz(default=None, nullable=True)
    sent_to_customer_at: datetime | None = _tz(default=None, nullable=True)
    voided_at: datetime | None = _tz(default=None, nullable=True)
    void_reason: str | None = None
    paid_at: datetime | None = _tz(default=None, nullable=True)
    quantity_snapshotted_at: datetime | None = _tz(default=None, nullable=True)
    amount: Decimal = _money()
    charges_total: Decimal = _money()
    discounts_total: Decimal = _money()
    credits_total: Decimal = _money()
    taxes_inclusive_total: Decimal = _money()
    taxes_exclusive_total: Decimal = _money()
    taxes_total: Decimal = _money()
    total: Decimal = _money()
    validation_issues: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    )
    invoicing_external_id: str | None = None
    payment_external_id: str | None = None
    meta: dict[str, str] = _json("metadata")
    # The last app call (domain.billing.invoices.AppAttempt), recorded before the call is made.
    app_attempt: dict[str, Any] | None = _json(nullable=True)
    next_attempt_at: datetime | None = _tz(default=None, nullable=True)
    attempts: int = 0
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)
    # domain.billing.invoices.OwedNotification: 'created' or 'updated', and the owing write's time.
    notification_owed: str | None = None
    notification_owed_at: datetime | None = _tz(default=None, nullable=True)


# The lines that hold their sync key's place (the unique index below; migration 0026 made it so).
SYNC_KEY_HELD = "deleted_at IS NULL AND sync_key IS NOT NULL AND (void_action IS NULL OR void_action <> 'pending')"


class InvoiceLineRow(SQLModel, table=True):
    __tablename__ = "billing_invoice_lines"
    __table_args__ = (
        Index("billing_invoice_lines_invoice", "namespace", "invoice_id", "created_at"),
        # A parent's detailed lines. Top-level lines are not in it, so no plan can read "every
        # top-level line of the namespace" through it (migration 0017 says why that mattered).
        Index(
            "billing_invoice_lines_parent",
            "namespace",
            "parent_line_id",
            postgresql_where=text("parent_line_id IS NOT NULL"),
        ),
        # What was already billed of a period (progressive billing, late usage).
        Index(
            "billing_invoice_lines_period_key",
            "namespace",
            "period_key",
            postgresql_where=text("deleted_at IS NULL AND parent_line_id IS NULL"),
        ),
        # The late-usage pass: usage lines whose period ended recently.
        Index(
            "billing_invoice_lines_usage_ended",
            "period_end",
            postgresql_where=text(
                "type = 'usage_based' AND period_key IS NOT NULL AND parent_line_id IS NULL AND deleted_at IS NULL"
            ),
        ),
        # The subscription sync reads a subscription's lines.
        Index(
            "billing_invoice_lines_subscription",
            "namespace",
            "subscription_id",
            postgresql_where=text("deleted_at IS NULL AND subscription_id IS NOT NULL"),
        ),
        # A subscription sync creates each (item, period part) once, also when it runs twice at once.
        # A line a void put back to be billed again gives its place up (migration 0026).
        Index(
            "billing_invoice_lines_sync_key",
            "namespace",
            "sync_key",
            "period_start",
            unique=True,
            postgresql_where=text(SYNC_KEY_HELD),
        ),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    invoice_id: str
    parent_line_id: str | None = None
    type: str
    status: str
    managed_by: str
    name: str
    description: str | None = None
    currency: str
    period_start: datetime = _tz()
    period_end: datetime = _tz()
    invoice_at: datetime = _tz()
    full_period_start: datetime | None = _tz(default=None, nullable=True)
    full_period_end: datetime | None = _tz(default=None, nullable=True)
    period_key: str | None = None
    sync_key: str | None = None
    feature_key: str | None = None
    # The price and discounts in OpenMeter's RateCard JSON (domain.catalog.prices `rest()`).
    price: dict[str, Any] | None = _json(nullable=True)
    rate_card_discounts: dict[str, Any] | None = _json("rate_card_discounts", nullable=True)
    per_unit_amount: Decimal | None = _money(nullable=True, default=None)
    quantity: Decimal | None = _money(nullable=True, default=None)
    metered_quantity: Decimal | None = _money(nullable=True, default=None)
    pre_line_period_quantity: Decimal | None = _money(nullable=True, default=None)
    period_started: bool | None = None
    period_closed: bool | None = None
    quantity_snapshotted_at: datetime | None = _tz(default=None, nullable=True)
    child_key: str | None = None
    category: str | None = None
    payment_term: str | None = None
    amount: Decimal = _money()
    charges_total: Decimal = _money()
    discounts_total: Decimal = _money()
    credits_total: Decimal = _money()
    taxes_inclusive_total: Decimal = _money()
    taxes_exclusive_total: Decimal = _money()
    taxes_total: Decimal = _money()
    total: Decimal = _money()
    # [{id, reason, amount, description}]
    discounts: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    )
    tax_config: dict[str, Any] | None = _json("tax_config", nullable=True)
    subscription_id: str | None = None
    subscription_phase_id: str | None = None
    subscription_item_id: str | None = None
    # The subscription's billing period the line is invoiced with (migration 0023).
    subscription_billing_period_start: datetime | None = _tz(default=None, nullable=True)
    subscription_billing_period_end: datetime | None = _tz(default=None, nullable=True)
    # A late-usage correction's event subjects (migration 0024); NULL: its invoice's.
    usage_subjects: list[str] | None = _json("usage_subjects", nullable=True)
    # On a voided invoice, what the void did with the line (migration 0026): "discard" (NULL too:
    # it still counts as billed) or "pending" (billed again: it no longer counts).
    void_action: str | None = None
    # A subscription's flat fee: the credit it was billed net of (migration 0027); NULL: not known.
    netted_of: Decimal | None = _money(nullable=True, default=None)
    meta: dict[str, str] = _json("metadata")
    # The line's ID in the invoicing app (custom invoicing's lineExternalIds).
    invoicing_external_id: str | None = None
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)
