"""Postgres tables of customers, subjects, features, entitlements, grants and balance snapshots.

Every table is keyed by namespace first. Uniqueness rules of the domain are backed by indexes: one
live customer per key, one customer per subject key (customer_subjects), one live feature per key. At most one entitlement of a (customer, feature key) is active at any
instant: overlapping active windows are refused by the repository under an advisory lock.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Index, Integer, Numeric, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), **kwargs)


def _json(name: str | None = None, nullable: bool = False) -> Any:
    column = Column(name, JSONB, nullable=nullable) if name else Column(JSONB, nullable=nullable)
    return Field(default=None if nullable else {}, sa_column=column)


class CustomerRow(SQLModel, table=True):
    __tablename__ = "customers"
    __table_args__ = (
        Index(
            "customers_live_key",
            "namespace",
            "key",
            unique=True,
            postgresql_where=text("deleted_at IS NULL AND key IS NOT NULL"),
        ),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    key: str | None = None
    name: str
    description: str | None = None
    primary_email: str | None = None
    currency: str | None = None
    subject_keys: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    billing_address: dict[str, str] | None = _json(nullable=True)
    meta: dict[str, str] = _json("metadata")
    annotations: dict[str, Any] = _json()
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)


class CustomerSubjectRow(SQLModel, table=True):
    """Which live customer owns a subject key (its own key included): at most one."""

    __tablename__ = "customer_subjects"
    __table_args__ = (Index("customer_subjects_customer", "namespace", "customer_id"),)

    namespace: str = Field(primary_key=True)
    subject_key: str = Field(primary_key=True)
    customer_id: str


class SubjectRow(SQLModel, table=True):
    __tablename__ = "subjects"
    __table_args__ = (Index("subjects_key", "namespace", "key", unique=True),)

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    key: str
    display_name: str | None = None
    meta: dict[str, Any] | None = _json("metadata", nullable=True)
    current_period_start: datetime | None = _tz(default=None, nullable=True)
    current_period_end: datetime | None = _tz(default=None, nullable=True)
    stripe_customer_id: str | None = None
    created_at: datetime = _tz()
    updated_at: datetime = _tz()


class FeatureRow(SQLModel, table=True):
    __tablename__ = "features"
    __table_args__ = (
        Index("features_live_key", "namespace", "key", unique=True, postgresql_where=text("archived_at IS NULL")),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    key: str
    name: str
    meter_slug: str | None = None
    # Canonical advanced filters, {"groupByKey": {"$eq": "..."}}.
    filters: dict[str, Any] = _json()
    meta: dict[str, str] = _json("metadata")
    # OpenMeter's FeatureUnitCost JSON ({"type": "manual", "amount": "0.5"} or the llm fields).
    unit_cost: dict[str, Any] | None = _json(nullable=True)
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    archived_at: datetime | None = _tz(default=None, nullable=True)


class EntitlementRow(SQLModel, table=True):
    __tablename__ = "entitlements"
    __table_args__ = (
        # Not unique: scheduled entitlements of one feature may follow each other (active_from /
        # active_to); the repository refuses overlapping windows under an advisory lock instead.
        Index("entitlements_customer_feature_key", "namespace", "customer_id", "feature_key"),
        Index("entitlements_customer", "namespace", "customer_id"),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    type: str
    feature_id: str
    feature_key: str
    customer_id: str
    meta: dict[str, str] = _json("metadata")
    annotations: dict[str, Any] = _json()
    # ISO-8601 duration of the original usage period, and its anchor.
    usage_interval: str | None = None
    usage_anchor: datetime | None = _tz(default=None, nullable=True)
    measure_usage_from: datetime | None = _tz(default=None, nullable=True)
    is_soft_limit: bool = False
    issue_after_reset: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    issue_after_reset_priority: int | None = None
    preserve_overage_at_reset: bool = False
    config: str | None = None
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    active_from: datetime = _tz()
    active_to: datetime | None = _tz(default=None, nullable=True)
    deleted_at: datetime | None = _tz(default=None, nullable=True)
    # Counts the writes that change a balance's inputs (grants, voids, resets), each in the
    # transaction that drops the snapshots it outdates: a snapshot computed from older inputs is
    # not saved (PostgresSnapshotRepository.save). Migration 0022.
    balance_inputs_revision: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))


class UsageResetRow(SQLModel, table=True):
    __tablename__ = "usage_resets"

    namespace: str = Field(primary_key=True)
    entitlement_id: str = Field(primary_key=True)
    reset_at: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    anchor: datetime = _tz()
    usage_interval: str
    # What the reset asked for (or the entitlement's setting); NULL on resets stored before this
    # was recorded: they follow the entitlement's preserve_overage_at_reset.
    preserve_overage: bool | None = None
    created_at: datetime = _tz()


class GrantRow(SQLModel, table=True):
    __tablename__ = "grants"
    __table_args__ = (Index("grants_entitlement", "namespace", "entitlement_id"),)

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    entitlement_id: str
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    priority: int = Field(sa_column=Column(Integer, nullable=False))
    effective_at: datetime = _tz()
    expiration_duration: str | None = None
    expiration_count: int | None = None
    expires_at: datetime | None = _tz(default=None, nullable=True)
    max_rollover_amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    min_rollover_amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    meta: dict[str, str] = _json("metadata")
    annotations: dict[str, Any] = _json()
    recurrence_interval: str | None = None
    recurrence_anchor: datetime | None = _tz(default=None, nullable=True)
    voided_at: datetime | None = _tz(default=None, nullable=True)
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)


class BalanceSnapshotRow(SQLModel, table=True):
    """A cached engine state (domain Snapshot); dropped whenever grants or resets change it."""

    __tablename__ = "balance_snapshots"

    namespace: str = Field(primary_key=True)
    entitlement_id: str = Field(primary_key=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    # {grant id: decimal string}
    balances: dict[str, str] = _json()
    overage: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    usage: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    total_grant_usage: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    period_start: datetime = _tz()
    created_at: datetime = _tz()


__all__ = [
    "BalanceSnapshotRow",
    "CustomerRow",
    "CustomerSubjectRow",
    "EntitlementRow",
    "FeatureRow",
    "GrantRow",
    "SubjectRow",
    "UsageResetRow",
]
