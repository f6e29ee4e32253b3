"""Postgres tables of subscriptions.

One row per subscription: the header columns the queries filter on, and the spec (phases, item
versions with their rate cards) as JSONB, rewritten whole by each change under a revision
compare-and-set. "One subscription per customer at a time" is an exclusion constraint over
[active_from, active_to) per customer (btree_gist), so two concurrent creates cannot both win.

`entitlements_revision` is the revision whose managed entitlements were last brought in line: every
write stores a new revision (and no entitlements revision), and the reconciliation that follows it
marks its revision. A row where the two differ is one whose reconciliation did not finish (the
process died, or Postgres failed in between): the billing worker finds it through the partial index
and reconciles it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, Integer, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

ONE_AT_A_TIME_CONSTRAINT = "subscriptions_one_at_a_time"
ENTITLEMENTS_PENDING_INDEX = "subscriptions_entitlements_pending"


def _tz(**kwargs: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), **kwargs)


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("subscriptions_customer", "namespace", "customer_id"),
        Index("subscriptions_plan_key", "namespace", "plan_key"),
        Index("subscriptions_updated", "updated_at"),
        Index(
            ENTITLEMENTS_PENDING_INDEX,
            "updated_at",
            postgresql_where=text("entitlements_revision IS DISTINCT FROM revision"),
        ),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    customer_id: str
    name: str
    description: str | None = None
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False))
    plan_id: str | None = None
    plan_key: str | None = None
    plan_version: int | None = None
    currency: str
    billing_cadence: str
    billing_anchor: datetime = _tz()
    pro_rating: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    settlement_mode: str
    active_from: datetime = _tz()
    active_to: datetime | None = _tz(default=None, nullable=True)
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    revision: int = Field(sa_column=Column(Integer, nullable=False))
    entitlements_revision: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)
