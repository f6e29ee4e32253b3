"""Postgres tables (sqlmodel). Every table is keyed by namespace first.

Schema changes: edit these classes, then `alembic revision --autogenerate` (see migrations/postgres),
review the revision, commit it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Index, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), **kwargs)


class MeterRow(SQLModel, table=True):
    __tablename__ = "meters"
    __table_args__ = (
        # Slugs are unique among a namespace's live meters; a deleted slug may be reused.
        Index("meters_live_slug", "namespace", "slug", unique=True, postgresql_where=text("deleted_at IS NULL")),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    slug: str
    name: str
    description: str | None = None
    aggregation: str
    event_type: str
    event_from: datetime | None = _tz(default=None, nullable=True)
    value_property: str | None = None
    group_by: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    meta: dict[str, str] = Field(default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False))
    annotations: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _tz()
    updated_at: datetime = _tz()
    deleted_at: datetime | None = _tz(default=None, nullable=True)


class EventKeyRow(SQLModel, table=True):
    """Deduplication keys of stored events: a 16-byte hash of (namespace, source, id).

    A key is written with the sink batch that stores its event; it counts as recorded (a later copy
    is a duplicate) only once that batch is settled (see SinkBatchRow); while the batch is pending
    a later copy is in doubt and retried, so a crash can never claim an unstored event.
    """

    __tablename__ = "event_keys"
    __table_args__ = (Index("event_keys_created_at", "created_at"),)

    namespace: str = Field(primary_key=True)
    key: bytes = Field(sa_column=Column(LargeBinary(16), primary_key=True))
    batch_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    created_at: datetime = _tz()


class SinkBatchRow(SQLModel, table=True):
    """A sink flush in flight: `pending` from before the event-store insert until after it, then
    `stored` (marked, or settled: the keys of events not found in the store released)."""

    __tablename__ = "sink_batches"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    # Which sink wrote it: "inprocess", or "<topic>:<partition>" on Kafka, so a sink recovers only its own.
    owner: str = Field(sa_column=Column(String, nullable=False, index=True))
    token: str = Field(sa_column=Column(String, nullable=False))
    state: str = Field(sa_column=Column(String, nullable=False))
    # While pending: the batch's (namespace, source, id) triples, orjson-encoded, for crash recovery.
    event_keys: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = _tz()
