"""Who is calling: the namespace (tenant) of a request."""

from __future__ import annotations

from server.rest import ServicerContext


class RequestContext:
    def __init__(self, default_namespace: str) -> None:
        self.default_namespace = default_namespace

    def namespace(self, context: ServicerContext) -> str:
        # One namespace until API keys (which belong to a namespace) arrive.
        return self.default_namespace
