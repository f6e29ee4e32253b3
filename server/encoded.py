"""Responses already in protobuf's wire format: a servicer method may return `bytes`, the serialized
response message, and gRPC sends them as they are.

Meter queries use it (server/servicers/meters.py): ClickHouse encodes their rows
(adapters/clickhouse/meter_wire.py), and parsing them into a message only to serialize it again
would cost what encoding them there saved. Every other method returns messages, serialized by the
generated serializer as before.

`PassingBytes` wraps the server for the generated `add_*_to_server` functions: the method handlers
they register get a serializer that passes bytes through. The interceptors keep each handler's
serializer, so they see no difference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc


def _passing_bytes(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    serialize: Callable[[Any], bytes] | None = handler.response_serializer
    if serialize is None:
        return handler

    def serializer(response: Any) -> bytes:
        return response if isinstance(response, bytes) else serialize(response)

    # grpc's handlers are namedtuples.
    replaced: grpc.RpcMethodHandler = handler._replace(response_serializer=serializer)
    return replaced


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        return None if handler is None else _passing_bytes(handler)


class PassingBytes:
    """The part of grpc.aio.Server the generated `add_*_to_server` functions call."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_Generic(handler) for handler in handlers))

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(
            service, {method: _passing_bytes(handler) for method, handler in handlers.items()}
        )
