"""Postgres tables of the billing area (sqlmodel). Every table is keyed by namespace first.

Invoices and their lines come next to these (the invoice work); profiles keep their workflow as a
JSON document because an invoice snapshots it whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, String, text
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
