"""Tenancy: API keys and portal tokens, the auth policy checked at start, and their servicers.

`App` runs `check_policy` before starting anything else, wires this area after metering (portal
queries run through the meter service), and builds the gRPC auth interceptor from
`deps.services["authenticator"]`.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from adapters.postgres.auth import PostgresApiKeyRepository, PostgresMeterSlugs, PostgresPortalTokenRepository
from domain.auth.models import Principal, Scope
from domain.auth.service import ApiKeyService, PortalTokenService
from server.auth import Authenticator, is_loopback
from server.config import Settings
from server.servicers.apikeys import ApiKeyServicer, CallerServicer
from server.servicers.portal import PortalServicer
from server.wiring import Deps, Servicer
from tally.v1 import apikeys_pb2_grpc, portal_pb2_grpc

log = structlog.get_logger(__name__)


class AuthPolicyError(RuntimeError):
    """Tally refuses to start: it would serve a non-loopback address with nobody able to authenticate."""


def loopback_only(settings: Settings) -> bool:
    """The embedded stack on loopback: Tally's own Envoy and gRPC both on loopback addresses. Without
    its own Envoy (a sidecar serves REST) Tally cannot know who reaches it, so it is not loopback-only."""
    return settings.envoy_enabled and is_loopback(settings.rest_host) and is_loopback(settings.grpc_host)


def auth_required(settings: Settings) -> bool:
    """Required unless explicitly disabled, or unset on a loopback-only bind (the embedded stack)."""
    if settings.auth.required is not None:
        return settings.auth.required
    return not loopback_only(settings)


def api_key_service(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> ApiKeyService:
    return ApiKeyService(
        PostgresApiKeyRepository(sessions),
        settings.auth.pepper.encode(),
        cache_ttl=settings.auth.cache_ttl_s,
    )


async def check_policy(settings: Settings, keys: ApiKeyService) -> bool:
    """Logs what the auth policy is and whether it is safe; returns whether auth is required."""
    required = auth_required(settings)
    where = f"gRPC {settings.grpc_host}:{settings.grpc_port}" + (
        f", REST {settings.rest_host}:{settings.rest_port}" if settings.envoy_enabled else ""
    )
    if not required:
        log.warning(
            "!!! AUTHENTICATION IS DISABLED !!! every request without an API key acts in namespace "
            f"{settings.namespace!r} with every scope; this is only safe on a loopback bind. "
            "Set TALLY_AUTH__REQUIRED=true to require API keys (create one with `tally apikeys create`).",
            listening=where,
            explicit=settings.auth.required is False,
        )
        if settings.auth.required is False and not loopback_only(settings):
            log.warning("!!! Tally listens beyond loopback WITHOUT authentication (auth.required=false) !!!")
        return False
    active = await keys.count_active()
    if active == 0:
        hint = "create one with `tally apikeys create --namespace <ns> --scope admin` (it writes to the same database)"
        if settings.auth.required is None:
            raise AuthPolicyError(
                f"refusing to start: Tally listens beyond loopback ({where}) and no API key exists, so nobody could "
                f"authenticate; {hint}, or set TALLY_AUTH__REQUIRED=true to start anyway "
                "(or TALLY_AUTH__REQUIRED=false to run without authentication, not recommended)"
            )
        log.warning(f"API keys are required but none exists: every request will be refused; {hint}")
    log.info("API keys required", active_keys=active, listening=where)
    return True


async def wire(deps: Deps) -> list[Servicer]:
    settings = deps.settings
    if not deps.has_role("api"):
        return []
    keys = api_key_service(deps.sessions, settings)
    portal = PortalTokenService(
        PostgresPortalTokenRepository(deps.sessions),
        PostgresMeterSlugs(deps.sessions),
        settings.auth.pepper.encode(),
        default_ttl=timedelta(seconds=settings.portal.token_expiration_s),
        cache_ttl=settings.auth.cache_ttl_s,
    )
    # App checked the policy (check_policy) before anything started and set deps.request.anonymous.
    anonymous = Principal(namespace=settings.namespace, scopes=frozenset(Scope)) if deps.request.anonymous else None
    deps.services.update(api_keys=keys, portal_tokens=portal, authenticator=Authenticator(keys, portal, anonymous))
    return [
        Servicer(
            apikeys_pb2_grpc.add_ApiKeyServiceServicer_to_server,
            ApiKeyServicer(keys, deps.request),
            "tally.v1.ApiKeyService",
        ),
        Servicer(apikeys_pb2_grpc.add_CallerServiceServicer_to_server, CallerServicer(), "tally.v1.CallerService"),
        Servicer(
            portal_pb2_grpc.add_PortalServiceServicer_to_server,
            PortalServicer(portal, deps.services["meters"], deps.request),
            "tally.v1.PortalService",
        ),
    ]
