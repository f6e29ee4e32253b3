"""API keys and portal tokens: what they grant, their inputs with validation, and secret handling.

Credentials are high-entropy random strings: `tly_<prefix>_<secret>` for API keys and
`tlyp_<prefix>_<secret>` for portal tokens. The prefix is stored in clear to find the row; the whole
credential is stored only as a keyed SHA-256 (HMAC with a server-side pepper). Hashing a 238-bit
random secret needs no slow KDF: there is nothing to brute-force.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.errors import Violations

NAMESPACE_PATTERN = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
API_KEY_MARK = "tly"
PORTAL_TOKEN_MARK = "tlyp"  # noqa: S105  (a marker, not a secret)
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 12
SECRET_LENGTH = 40


class Scope(enum.StrEnum):
    INGEST = "ingest"
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


def grants(scopes: Iterable[Scope], needed: Scope) -> bool:
    """admin implies every scope; the others imply only themselves."""
    held = set(scopes)
    return Scope.ADMIN in held or needed in held


@dataclass(frozen=True, slots=True)
class Credential:
    """A freshly generated credential: the full string (shown once), its prefix and its hash."""

    value: str
    prefix: str
    secret_hash: bytes


def new_credential(mark: str, pepper: bytes) -> Credential:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    value = f"{mark}_{prefix}_{secret}"
    return Credential(value, prefix, hash_credential(value, pepper))


def hash_credential(value: str, pepper: bytes) -> bytes:
    return hmac.new(pepper, value.encode(), hashlib.sha256).digest()


def parse_prefix(value: str, mark: str) -> str | None:
    """The lookup prefix of a well-formed credential of this kind, else None."""
    parts = value.split("_")
    if len(parts) != 3 or parts[0] != mark:
        return None
    prefix, secret = parts[1], parts[2]
    if len(prefix) != PREFIX_LENGTH or len(secret) != SECRET_LENGTH:
        return None
    if not (prefix.isascii() and prefix.isalnum() and secret.isascii() and secret.isalnum()):
        return None
    return prefix


def valid_namespace(namespace: str) -> bool:
    return len(namespace) <= 64 and NAMESPACE_PATTERN.match(namespace) is not None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    namespace: str
    name: str
    prefix: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class ApiKeyCreateInput:
    name: str
    scopes: Sequence[str]
    expires_at: datetime | None = None

    def validate(self, namespace: str, now: datetime) -> tuple[Scope, ...]:
        problems = Violations()
        if not valid_namespace(namespace):
            problems.add("namespace", "must match ^[a-z0-9]+(?:[_-][a-z0-9]+)*$ (at most 64 characters)")
        if not self.name.strip() or len(self.name) > 256:
            problems.add("name", "must be 1 to 256 characters")
        known = {scope.value for scope in Scope}
        unknown = [scope for scope in self.scopes if scope not in known]
        if not self.scopes:
            problems.add("scopes", f"at least one of {', '.join(sorted(known))}", "required")
        elif unknown:
            problems.add("scopes", f"unknown {unknown}; allowed: {', '.join(sorted(known))}")
        if self.expires_at is not None and self.expires_at <= now:
            problems.add("expiresAt", "must be in the future")
        problems.raise_if_any()
        return tuple(sorted({Scope(scope) for scope in self.scopes}))


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    key: ApiKey
    # The credential itself: returned by create only, never stored or shown again.
    secret: str


@dataclass(frozen=True, slots=True)
class PortalToken:
    id: str
    namespace: str
    subject: str
    prefix: str
    allowed_meter_slugs: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    invalidated_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    def allows(self, meter_slug: str) -> bool:
        return not self.allowed_meter_slugs or meter_slug in self.allowed_meter_slugs


@dataclass(frozen=True, slots=True)
class PortalTokenCreateInput:
    subject: str
    # None: every meter. OpenMeter refuses an empty list when one is sent.
    allowed_meter_slugs: Sequence[str] | None = None
    expires_at: datetime | None = None

    def validate(self, now: datetime) -> None:
        problems = Violations()
        if not self.subject:
            problems.add("subject", "is required", "required")
        if self.allowed_meter_slugs is not None:
            if not self.allowed_meter_slugs:
                problems.add("allowedMeterSlugs", "cannot be an empty array when provided")
            for index, slug in enumerate(self.allowed_meter_slugs):
                if not SLUG_PATTERN.match(slug) or len(slug) > 64:
                    problems.add(f"allowedMeterSlugs[{index}]", "is not a meter slug")
        if self.expires_at is not None and self.expires_at <= now:
            problems.add("expiresAt", "expiration date must be in the future")
        problems.raise_if_any()


@dataclass(frozen=True, slots=True)
class CreatedPortalToken:
    token: PortalToken
    secret: str


@dataclass(frozen=True, slots=True)
class PortalTokenInvalidateInput:
    id: str | None = None
    subject: str | None = None

    def validate(self) -> None:
        problems = Violations()
        if self.id is None and self.subject is None:
            problems.add("id", "either id or subject must be provided", "required")
        if self.id is not None and not self.id:
            problems.add("id", "cannot be empty")
        if self.subject is not None and not self.subject:
            problems.add("subject", "cannot be empty")
        problems.raise_if_any()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a namespace and what they may do there (an API key, or no auth at all)."""

    namespace: str
    scopes: frozenset[Scope]
    key_id: str | None = None
    # Set for calls authenticated by a portal token: the one subject they may read.
    portal: PortalToken | None = None
