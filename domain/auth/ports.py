"""What authentication needs from storage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from domain.auth.models import ApiKey, PortalToken


class ApiKeyRepository(Protocol):
    async def create(self, key: ApiKey, secret_hash: bytes) -> None: ...

    async def find_by_prefix(self, prefix: str) -> tuple[ApiKey, bytes] | None:
        """The key with this prefix in any namespace, with its stored hash."""
        ...

    async def list_keys(self, namespace: str | None, include_revoked: bool) -> list[ApiKey]:
        """A namespace's keys (None: every namespace, for the operator's CLI), newest first."""
        ...

    async def revoke(self, namespace: str | None, id_or_prefix: str, now: datetime) -> ApiKey | None:
        """Marks the key revoked (idempotent); None when no such key (in that namespace)."""
        ...

    async def count_active(self, now: datetime) -> int: ...


class PortalTokenRepository(Protocol):
    async def create(self, token: PortalToken, secret_hash: bytes) -> None: ...

    async def find_by_prefix(self, prefix: str) -> tuple[PortalToken, bytes] | None: ...

    async def list_tokens(self, namespace: str, limit: int) -> list[PortalToken]:
        """Live (not invalidated) tokens, newest first, expired ones included."""
        ...

    async def invalidate(self, namespace: str, id: str | None, subject: str | None, now: datetime) -> list[str]:
        """Invalidates the matching live tokens; returns their prefixes."""
        ...


class MeterSlugs(Protocol):
    async def missing(self, namespace: str, slugs: Sequence[str]) -> list[str]:
        """The slugs that name no live meter in the namespace."""
        ...
