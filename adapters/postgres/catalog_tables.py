"""Postgres tables of the product catalog: plans, add-ons and plan add-ons.

A plan or add-on version is one row; its phases and rate cards are kept as the OpenMeter-shaped
JSON document the domain reads back with the same parser that checks API input (one way of
reading a rate card). The invariants that must hold under concurrent writers are indexes:
versions are unique per key, and at most one live draft exists per key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), **kwargs)


class VersionRow(SQLModel):
    """The columns of a plan or add-on version (a table each: their indexes name the table)."""

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    key: str
    version: int
    currency: str
    # The version's content (its create JSON, e.g. PlanCreate, without ids and statuses).
    document: dict[str, Any] = Field(sa_type=JSONB, nullable=False)
    validation_errors: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONB, nullable=False)
    effective_from: datetime | None = _tz(default=None, nullable=True)
    effective_to: datetime | None = _tz(default=None, nullable=True)
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)


def _version_indexes(table: str) -> tuple[Index, ...]:
    """Versions are unique per key, and a key has at most one live draft."""
    return (
        Index(f"{table}_key_version", "namespace", "key", "version", unique=True),
        Index(
            f"{table}_one_draft",
            "namespace",
            "key",
            unique=True,
            postgresql_where=text("effective_from IS NULL AND deleted_at IS NULL"),
        ),
    )


class PlanRow(VersionRow, table=True):
    __tablename__ = "catalog_plans"
    __table_args__ = _version_indexes("catalog_plans")


class AddonRow(VersionRow, table=True):
    __tablename__ = "catalog_addons"
    __table_args__ = _version_indexes("catalog_addons")


class PlanAddonRow(SQLModel, table=True):
    __tablename__ = "catalog_plan_addons"
    __table_args__ = (
        # An add-on is assigned to a plan version at most once (live assignments).
        Index(
            "catalog_plan_addons_live",
            "namespace",
            "plan_id",
            "addon_id",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    plan_id: str = Field(index=True)
    addon_id: str
    from_plan_phase: str
    max_quantity: int | None = None
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False))
    validation_errors: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)
