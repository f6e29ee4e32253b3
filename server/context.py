"""Who is calling: the namespace (tenant) of a request, set by the auth interceptor (server/auth.py)."""

from __future__ import annotations

from domain.auth.models import PortalToken, Principal
from domain.errors import UnauthenticatedError
from server.auth import current_principal
from server.rest import ServicerContext


class RequestContext:
    def __init__(self, default_namespace: str, anonymous: bool = True) -> None:
        self.default_namespace = default_namespace
        # Whether a call may run without credentials (auth not required): then it is in the default namespace.
        self.anonymous = anonymous

    def principal(self, context: ServicerContext) -> Principal:
        principal = current_principal()
        if principal is not None:
            return principal
        if not self.anonymous:
            # The auth interceptor sets a principal on every authenticated call; reaching here
            # without one is a wiring bug, and must not fall back to some namespace.
            raise UnauthenticatedError("not authenticated")
        return Principal(namespace=self.default_namespace, scopes=frozenset())

    def namespace(self, context: ServicerContext) -> str:
        return self.principal(context).namespace

    def portal_token(self, context: ServicerContext) -> PortalToken:
        token = self.principal(context).portal
        if token is None:
            raise UnauthenticatedError("this call needs a portal token")
        return token
