"""ApiKeyRepository and PortalTokenRepository over Postgres, and the meter-slug check for portal tokens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.auth_tables import ApiKeyRow, PortalTokenRow
from adapters.postgres.tables import MeterRow
from domain.auth.models import ApiKey, PortalToken, Scope
from domain.errors import ConflictError


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        namespace=row.namespace,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(Scope(scope) for scope in row.scopes),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _token(row: PortalTokenRow) -> PortalToken:
    return PortalToken(
        id=row.id,
        namespace=row.namespace,
        subject=row.subject,
        prefix=row.prefix,
        allowed_meter_slugs=tuple(row.allowed_meter_slugs),
        created_at=row.created_at,
        expires_at=row.expires_at,
        invalidated_at=row.invalidated_at,
    )


class PostgresApiKeyRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, key: ApiKey, secret_hash: bytes) -> None:
        row = ApiKeyRow(
            namespace=key.namespace,
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            secret_hash=secret_hash,
            scopes=[scope.value for scope in key.scopes],
            created_at=key.created_at,
            expires_at=key.expires_at,
        )
        async with self._sessions() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError as exc:  # a prefix collision: 1 in 36^12; retrying is the caller's call
                raise ConflictError("api key prefix collision; try again") from exc

    async def find_by_prefix(self, prefix: str) -> tuple[ApiKey, bytes] | None:
        async with self._sessions() as session:
            row = (await session.exec(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix))).first()
        return (_key(row), row.secret_hash) if row is not None else None

    async def list_keys(self, namespace: str | None, include_revoked: bool) -> list[ApiKey]:
        statement = select(ApiKeyRow)
        if namespace is not None:
            statement = statement.where(ApiKeyRow.namespace == namespace)
        if not include_revoked:
            statement = statement.where(col(ApiKeyRow.revoked_at).is_(None))
        statement = statement.order_by(col(ApiKeyRow.created_at).desc(), col(ApiKeyRow.id).desc())
        async with self._sessions() as session:
            return [_key(row) for row in (await session.exec(statement)).all()]

    async def revoke(self, namespace: str | None, id_or_prefix: str, now: datetime) -> ApiKey | None:
        statement = select(ApiKeyRow).where(
            or_(col(ApiKeyRow.id) == id_or_prefix, col(ApiKeyRow.prefix) == id_or_prefix)
        )
        if namespace is not None:
            statement = statement.where(ApiKeyRow.namespace == namespace)
        async with self._sessions() as session:
            row = (await session.exec(statement.with_for_update())).first()
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = now
                session.add(row)
            await session.commit()
            return _key(row)

    async def count_active(self, now: datetime) -> int:
        statement = (
            select(func.count())
            .select_from(ApiKeyRow)
            .where(col(ApiKeyRow.revoked_at).is_(None))
            .where(or_(col(ApiKeyRow.expires_at).is_(None), col(ApiKeyRow.expires_at) > now))
        )
        async with self._sessions() as session:
            return int((await session.exec(statement)).one())


class PostgresPortalTokenRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, token: PortalToken, secret_hash: bytes) -> None:
        row = PortalTokenRow(
            namespace=token.namespace,
            id=token.id,
            subject=token.subject,
            prefix=token.prefix,
            secret_hash=secret_hash,
            allowed_meter_slugs=list(token.allowed_meter_slugs),
            created_at=token.created_at,
            expires_at=token.expires_at,
        )
        async with self._sessions() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise ConflictError("portal token prefix collision; try again") from exc

    async def find_by_prefix(self, prefix: str) -> tuple[PortalToken, bytes] | None:
        async with self._sessions() as session:
            row = (await session.exec(select(PortalTokenRow).where(PortalTokenRow.prefix == prefix))).first()
        return (_token(row), row.secret_hash) if row is not None else None

    async def list_tokens(self, namespace: str, limit: int) -> list[PortalToken]:
        statement = (
            select(PortalTokenRow)
            .where(PortalTokenRow.namespace == namespace, col(PortalTokenRow.invalidated_at).is_(None))
            .order_by(col(PortalTokenRow.created_at).desc(), col(PortalTokenRow.id).desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            return [_token(row) for row in (await session.exec(statement)).all()]

    async def invalidate(self, namespace: str, id: str | None, subject: str | None, now: datetime) -> list[str]:
        statement = (
            update(PortalTokenRow)
            .where(col(PortalTokenRow.namespace) == namespace, col(PortalTokenRow.invalidated_at).is_(None))
            .values(invalidated_at=now)
            .returning(col(PortalTokenRow.prefix))
        )
        if id is not None:
            statement = statement.where(col(PortalTokenRow.id) == id)
        if subject is not None:
            statement = statement.where(col(PortalTokenRow.subject) == subject)
        async with self._sessions() as session:
            result = await session.exec(statement)
            prefixes = [str(value) for value in result.scalars().all()]
            await session.commit()
        return prefixes


class PostgresMeterSlugs:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def missing(self, namespace: str, slugs: Sequence[str]) -> list[str]:
        statement = select(MeterRow.slug).where(
            MeterRow.namespace == namespace, col(MeterRow.slug).in_(list(slugs)), col(MeterRow.deleted_at).is_(None)
        )
        async with self._sessions() as session:
            found = set((await session.exec(statement)).all())
        return [slug for slug in slugs if slug not in found]
