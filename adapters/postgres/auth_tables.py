"""Postgres tables of API keys and portal tokens (sqlmodel). Keyed by namespace first, like every table.

The one lookup that cannot name a namespace is authentication itself (the credential decides the
namespace), so each table also has a unique index on the credential's clear-text prefix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, LargeBinary
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def _tz(**kwargs: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), **kwargs)


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_keys"
    __table_args__ = (Index("api_keys_prefix", "prefix", unique=True),)

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    name: str
    # Shown in lists and used to find the key; the secret part is only ever stored as a hash.
    prefix: str
    secret_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _tz()
    expires_at: datetime | None = _tz(default=None, nullable=True)
    revoked_at: datetime | None = _tz(default=None, nullable=True)


class PortalTokenRow(SQLModel, table=True):
    __tablename__ = "portal_tokens"
    __table_args__ = (
        Index("portal_tokens_prefix", "prefix", unique=True),
        Index("portal_tokens_subject", "namespace", "subject"),
    )

    namespace: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    subject: str
    prefix: str
    secret_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    # Empty: every meter of the namespace.
    allowed_meter_slugs: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    created_at: datetime = _tz()
    expires_at: datetime = _tz()
    invalidated_at: datetime | None = _tz(default=None, nullable=True)
