"""API keys and portal tokens: issuing, listing, revoking, and authenticating credentials.

Authentication runs on every request, so its results are cached for `cache_ttl` (1 s by default):
a revocation takes effect at once in the process that revoked (its cache is cleared) and within
`cache_ttl` in every other process. Failed look-ups are cached too, so a flood of bad credentials
costs one database query per distinct credential and second.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from ulid import ULID

from domain.auth.models import (
    API_KEY_MARK,
    PORTAL_TOKEN_MARK,
    ApiKey,
    ApiKeyCreateInput,
    CreatedApiKey,
    CreatedPortalToken,
    PortalToken,
    PortalTokenCreateInput,
    PortalTokenInvalidateInput,
    hash_credential,
    new_credential,
    parse_prefix,
)
from domain.auth.ports import ApiKeyRepository, MeterSlugs, PortalTokenRepository
from domain.errors import NotFoundError, UnauthenticatedError, ValidationError

V = TypeVar("V")

INVALID_API_KEY = "invalid, expired or revoked API key"
INVALID_PORTAL_TOKEN = "invalid, expired or invalidated portal token"  # noqa: S105


def _now() -> datetime:
    return datetime.now(UTC)


class TtlCache(Generic[V]):
    """A small time-bounded cache of authentication results (hits and misses)."""

    def __init__(self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._items: dict[bytes, tuple[float, V | None]] = {}

    def get(self, key: bytes) -> tuple[bool, V | None]:
        item = self._items.get(key)
        if item is None or item[0] <= self._clock():
            return False, None
        return True, item[1]

    def put(self, key: bytes, value: V | None) -> None:
        if self._ttl <= 0:
            return
        if len(self._items) >= self._max:
            now = self._clock()
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
            if len(self._items) >= self._max:
                self._items.clear()
        self._items[key] = (self._clock() + self._ttl, value)

    def clear(self) -> None:
        self._items.clear()


class ApiKeyService:
    def __init__(
        self,
        repository: ApiKeyRepository,
        pepper: bytes,
        cache_ttl: float = 1.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._repo = repository
        self._pepper = pepper
        self._clock = clock
        self._cache: TtlCache[ApiKey] = TtlCache(cache_ttl)

    async def create(self, namespace: str, data: ApiKeyCreateInput) -> CreatedApiKey:
        now = self._clock()
        scopes = data.validate(namespace, now)
        credential = new_credential(API_KEY_MARK, self._pepper)
        key = ApiKey(
            id=str(ULID()),
            namespace=namespace,
            name=data.name.strip(),
            prefix=credential.prefix,
            scopes=scopes,
            created_at=now,
            expires_at=data.expires_at,
        )
        await self._repo.create(key, credential.secret_hash)
        return CreatedApiKey(key, credential.value)

    async def list_keys(self, namespace: str | None, include_revoked: bool = False) -> list[ApiKey]:
        return await self._repo.list_keys(namespace, include_revoked)

    async def revoke(self, namespace: str | None, id_or_prefix: str) -> ApiKey:
        key = await self._repo.revoke(namespace, id_or_prefix, self._clock())
        if key is None:
            raise NotFoundError("api key", id_or_prefix)
        # Effective at once here; other processes drop their cached copy within the cache TTL.
        self._cache.clear()
        return key

    async def count_active(self) -> int:
        return await self._repo.count_active(self._clock())

    async def authenticate(self, credential: str) -> ApiKey:
        digest = hash_credential(credential, self._pepper)
        hit, cached = self._cache.get(digest)
        if not hit:
            cached = await self._lookup(credential, digest)
            self._cache.put(digest, cached)
        if cached is None or not cached.active(self._clock()):
            raise UnauthenticatedError(INVALID_API_KEY)
        return cached

    async def _lookup(self, credential: str, digest: bytes) -> ApiKey | None:
        prefix = parse_prefix(credential, API_KEY_MARK)
        if prefix is None:
            return None
        found = await self._repo.find_by_prefix(prefix)
        if found is None:
            return None
        key, stored = found
        return key if hmac.compare_digest(stored, digest) else None


class PortalTokenService:
    def __init__(
        self,
        repository: PortalTokenRepository,
        meters: MeterSlugs,
        pepper: bytes,
        default_ttl: timedelta = timedelta(hours=1),
        cache_ttl: float = 1.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._repo = repository
        self._meters = meters
        self._pepper = pepper
        self._default_ttl = default_ttl
        self._clock = clock
        self._cache: TtlCache[PortalToken] = TtlCache(cache_ttl)

    async def create(self, namespace: str, data: PortalTokenCreateInput) -> CreatedPortalToken:
        now = self._clock()
        data.validate(now)
        allowed = tuple(dict.fromkeys(data.allowed_meter_slugs or ()))
        if allowed:
            missing = await self._meters.missing(namespace, allowed)
            if missing:
                raise NotFoundError("meter", ", ".join(missing))
        credential = new_credential(PORTAL_TOKEN_MARK, self._pepper)
        token = PortalToken(
            id=str(ULID()),
            namespace=namespace,
            subject=data.subject,
            prefix=credential.prefix,
            allowed_meter_slugs=allowed,
            created_at=now,
            expires_at=data.expires_at or now + self._default_ttl,
        )
        await self._repo.create(token, credential.secret_hash)
        return CreatedPortalToken(token, credential.value)

    async def list_tokens(self, namespace: str, limit: int | None = None) -> list[PortalToken]:
        size = 25 if limit is None else limit
        if not 1 <= size <= 100:
            raise ValidationError.single("limit", "must be between 1 and 100")
        return await self._repo.list_tokens(namespace, size)

    async def invalidate(self, namespace: str, data: PortalTokenInvalidateInput) -> int:
        data.validate()
        prefixes = await self._repo.invalidate(namespace, data.id, data.subject, self._clock())
        if prefixes:
            self._cache.clear()
        return len(prefixes)

    def now(self) -> datetime:
        return self._clock()

    async def authenticate(self, credential: str) -> PortalToken:
        digest = hash_credential(credential, self._pepper)
        hit, cached = self._cache.get(digest)
        if not hit:
            cached = await self._lookup(credential, digest)
            self._cache.put(digest, cached)
        if cached is None or cached.invalidated_at is not None or cached.expired(self._clock()):
            raise UnauthenticatedError(INVALID_PORTAL_TOKEN)
        return cached

    async def _lookup(self, credential: str, digest: bytes) -> PortalToken | None:
        prefix = parse_prefix(credential, PORTAL_TOKEN_MARK)
        if prefix is None:
            return None
        found = await self._repo.find_by_prefix(prefix)
        if found is None:
            return None
        token, stored = found
        return token if hmac.compare_digest(stored, digest) else None
