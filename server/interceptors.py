"""gRPC server interceptors: error mapping and request metrics, applied to every method."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import structlog

from adapters import metrics
from domain.errors import PayloadTooLargeError, TallyError, ValidationError
from server.errors import as_domain_error, mapping_for, trailing_metadata
from server.json_fields import check_json_body
from server.rest import ServicerContext, header, is_rest, method_null_paths, with_null_hint

log = structlog.get_logger(__name__)

Handler: TypeAlias = grpc.RpcMethodHandler


async def _abort(context: ServicerContext, error: BaseException) -> None:
    domain_error = as_domain_error(error)
    if domain_error is not None:
        if domain_error is not error:
            log.warning("transient failure answered as UNAVAILABLE", error=repr(error))
        mapping = mapping_for(domain_error)
        instance = header(context, "x-envoy-original-path")
        metadata = trailing_metadata(domain_error, is_rest(context), instance)
        await context.abort(mapping.grpc_code, domain_error.message, metadata)
    log.exception("unhandled error in servicer", exc_info=error)
    internal = TallyError("internal error; see the server log")
    await context.abort(grpc.StatusCode.INTERNAL, internal.message, trailing_metadata(internal, is_rest(context), None))


def _observe(method: str, started: float, code: str, error: BaseException | None = None) -> None:
    metrics.RPC_LATENCY.labels(method).observe(time.perf_counter() - started)
    metrics.RPC_TOTAL.labels(method, code).inc()
    # Events refused for what they are (invalid, too large), apart from outages and auth failures.
    if method.startswith("Ingest") and isinstance(error, ValidationError | PayloadTooLargeError):
        metrics.INGEST_REJECTED.labels(type(error).__name__).inc()


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns domain errors into statuses with details, and counts and times every call."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _wrap_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            response = await behavior(request, context)
        except grpc.aio.AbortError:
            _observe(method, started, "ABORTED")
            raise
        except Exception as error:
            _observe(method, started, mapping_for(error).grpc_code.name, error)
            await _abort(context, error)
            raise
        _observe(method, started, "OK")
        return response

    return wrapped


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def wrapped(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        try:
            async for response in behavior(request, context):
                yield response
        except grpc.aio.AbortError:
            _observe(method, started, "ABORTED")
            raise
        except Exception as error:
            _observe(method, started, mapping_for(error).grpc_code.name, error)
            await _abort(context, error)
            raise
        _observe(method, started, "OK")

    return wrapped


class RestInterceptor(grpc.aio.ServerInterceptor):
    """What REST calls through Envoy need around a servicer, for every unary method at once.

    * Bodies: fields the transcoder would drop silently are refused (server/json_fields.py).
      Innermost, after authentication: a caller without a key gets 401, not a lesson in the
      schema; its ValidationError reaches ErrorInterceptor like a servicer's.
    * Answers: OpenMeter's required-but-nullable fields print as null (server/rest.py), for
      methods whose response can hold one.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior, path = handler.unary_unary, handler_call_details.method
        nulls = method_null_paths(path)

        async def served(request: Any, context: ServicerContext) -> Any:
            check_json_body(path, context.invocation_metadata())
            if nulls is None or not is_rest(context):
                return await behavior(request, context)
            return await with_null_hint(nulls, context, behavior, request)

        return grpc.unary_unary_rpc_method_handler(
            served,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
