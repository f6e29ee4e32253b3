"""Postgres tables of the notifications area (sqlmodel). Every table is keyed by namespace first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), **kwargs)


class NotificationChannelRow(SQLModel, table=True):
    __tablename__ = "notification_channels"

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    type: str
    name: str
    disabled: bool = False
    url: str
    custom_headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    signing_secret: str
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False))
    annotations: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)


class NotificationRuleRow(SQLModel, table=True):
    __tablename__ = "notification_rules"
    __table_args__ = (Index("notification_rules_channels", "channel_ids", postgresql_using="gin"),)

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    type: str
    name: str
    disabled: bool = False
    channel_ids: list[str] = Field(default_factory=list, sa_column=Column(ARRAY(String), nullable=False))
    # [{value (decimal string), type}]
    thresholds: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    # [{id, key}]
    features: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False))
    annotations: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)


class NotificationEventRow(SQLModel, table=True):
    __tablename__ = "notification_events"
    __table_args__ = (
        Index("notification_events_created", "namespace", "created_at"),
        Index("notification_events_dedupe", "namespace", "dedupe_hash"),
        Index("notification_events_seq", "namespace", "seq"),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    # Creation order across the table, for the resumable event stream.
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), nullable=False, unique=True))
    type: str
    rule_id: str
    created_at: datetime = _tz()
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    annotations: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    # Copied out of the annotations for filtering.
    dedupe_hash: str | None = None
    feature_id: str | None = None
    feature_key: str | None = None
    subject_key: str | None = None
    subject_id: str | None = None


class NotificationDeliveryRow(SQLModel, table=True):
    """Delivery of one event to one channel: its state, attempts and the next attempt's time."""

    __tablename__ = "notification_delivery_statuses"
    __table_args__ = (
        Index("notification_delivery_event", "namespace", "event_id"),
        Index(
            "notification_delivery_due",
            "next_attempt",
            postgresql_where=text("state IN ('PENDING', 'SENDING', 'RESENDING')"),
        ),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    event_id: str
    channel_id: str
    state: str
    reason: str = ""
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    next_attempt: datetime | None = _tz(default=None, nullable=True)
    sending_since: datetime | None = _tz(default=None, nullable=True)
    # [{state, timestamp, statusCode, body, durationMs, url}], oldest first.
    attempts: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    annotations: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    version: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
