"""Authentication and authorization of every call, in one gRPC interceptor.

REST requests reach it through Envoy, which forwards `Authorization` as gRPC metadata, so both
transports meet the same check. Each method maps to one required scope (`required_scope`): the
ingest RPCs need `ingest`; those that read (List/Get/Query/Stream/Preview/Simulate) need `read`; those
that change something (Create/Update/Delete/Publish/Cancel/..., WRITE_PREFIXES) need `write`; the API key
service needs `admin` (admin implies the others); an unknown method needs `admin` (fail closed). Health checks and reflection stay open. The
portal's meter query is authenticated by a portal token instead of an API key.

The caller (`Principal`) is kept in a context variable for the duration of the call;
`RequestContext.namespace(context)` (server/context.py) reads the namespace from it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Literal, TypeAlias

import grpc
import structlog

from domain.auth.models import Principal, Scope, grants
from domain.auth.service import ApiKeyService, PortalTokenService
from domain.errors import ForbiddenError, UnauthenticatedError
from server.rest import ServicerContext, header

log = structlog.get_logger(__name__)

Handler: TypeAlias = grpc.RpcMethodHandler
Need: TypeAlias = Scope | Literal["portal"] | None
PORTAL: Literal["portal"] = "portal"

OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
ADMIN_SERVICES = frozenset({"tally.v1.ApiKeyService"})
PORTAL_METHODS = frozenset({"tally.v1.PortalService/QueryPortalMeter", "tally.v1.PortalService/QueryPortalMeterCsv"})
# Simulate stores nothing (an invoice as it would be).
READ_PREFIXES = ("List", "Get", "Query", "Stream", "Preview", "Simulate")
WRITE_PREFIXES = (
    "Create",
    "Update",
    "Delete",
    "Upsert",
    "Override",
    "Reset",
    "Void",
    "Test",
    "Resend",
    "Invalidate",
    "Install",
    "Uninstall",
    # The catalog's, invoices' and subscriptions' own verbs.
    "Publish",
    "Archive",
    "Next",
    "Invoice",
    "Advance",
    "Approve",
    "Retry",
    "Snapshot",
    "Draft",
    "Issuing",
    "Edit",
    "Cancel",
    "Unschedule",
    "Change",
    "Migrate",
    "Restore",
)

MISSING_KEY = "missing API key: send 'Authorization: Bearer <key>'"
MISSING_PORTAL_TOKEN = "missing portal token: send 'Authorization: Bearer <token>'"  # noqa: S105

_principal: ContextVar[Principal | None] = ContextVar("tally_principal", default=None)


def current_principal() -> Principal | None:
    return _principal.get()


def required_scope(full_method: str) -> Need:
    """What a call needs: a scope, a portal token, or nothing (health, reflection)."""
    service, _, method = full_method.lstrip("/").partition("/")
    if service in OPEN_SERVICES:
        return None
    if service in ADMIN_SERVICES:
        return Scope.ADMIN
    if f"{service}/{method}" in PORTAL_METHODS:
        return PORTAL
    if method.startswith("Ingest"):
        return Scope.INGEST
    if method.startswith(READ_PREFIXES):
        return Scope.READ
    if method.startswith(WRITE_PREFIXES):
        return Scope.WRITE
    return Scope.ADMIN


def bearer(context: ServicerContext) -> str | None:
    value = header(context, "authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError("malformed Authorization header: expected 'Bearer <key>'")
    return token.strip()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Turns a call's credentials into a Principal, or refuses it (401 / 403)."""

    def __init__(self, api_keys: ApiKeyService, portal_tokens: PortalTokenService, anonymous: Principal | None) -> None:
        self._api_keys = api_keys
        self._portal = portal_tokens
        # Set when auth is not required: who a call without credentials is.
        self._anonymous = anonymous

    async def principal(self, context: ServicerContext, need: Scope | Literal["portal"]) -> Principal:
        token = bearer(context)
        if need == PORTAL:
            if token is None:
                raise UnauthenticatedError(MISSING_PORTAL_TOKEN)
            portal = await self._portal.authenticate(token)
            return Principal(namespace=portal.namespace, scopes=frozenset(), portal=portal)
        if token is None:
            if self._anonymous is not None:
                return self._anonymous
            raise UnauthenticatedError(MISSING_KEY)
        key = await self._api_keys.authenticate(token)
        if not grants(key.scopes, need):
            raise ForbiddenError(f"this API key lacks the '{need.value}' scope")
        return Principal(namespace=key.namespace, scopes=frozenset(key.scopes), key_id=key.id)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates and authorizes every call before its servicer runs. Placed after the
    ErrorInterceptor, so its 401/403 errors get the same status details and problem+json."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        need = required_scope(handler_call_details.method)
        if handler is None or need is None:
            return handler
        auth = self._auth
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, auth, need),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _unary(handler.stream_unary, auth, need),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _stream(handler.unary_stream, auth, need),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _stream(handler.stream_stream, auth, need),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _unary(
    behavior: Callable[..., Awaitable[Any]], auth: Authenticator, need: Scope | Literal["portal"]
) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: ServicerContext) -> Any:
        _principal.set(None)
        _principal.set(await auth.principal(context, need))
        return await behavior(request, context)

    return wrapped


def _stream(
    behavior: Callable[..., AsyncIterator[Any]], auth: Authenticator, need: Scope | Literal["portal"]
) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
        _principal.set(None)
        _principal.set(await auth.principal(context, need))
        async for response in behavior(request, context):
            yield response

    return wrapped
