"""REST-only hints a servicer attaches for Envoy's Lua filter (envoy/tally.lua).

gRPC has one success status; OpenMeter's REST API answers 201, 202 and 204 and returns some lists
as bare arrays. Servicers state that here, once per call, and only for requests that came through
Envoy (marked with x-tally-rest), so native gRPC clients see clean responses.

One hint needs no servicer: fields OpenMeter's contract requires but allows to be null (marked
`(tally.v1.rest_nullable)` in the protos) are left out of the transcoder's JSON when unset. For a
method whose response can hold such fields, an interceptor names them to Envoy (`x-tally-nulls`,
see `null_paths`), and envoy/tally.lua prints each missing one as `null`. That walk steps through
every token of the answer; a meter query's may hold a million rows, all alike, so its servicer
names what every row misses instead (`rest_hints(row_fill=...)`), which Envoy inserts with one
substitution.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, TypeAlias

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, MethodDescriptor

from tally.v1 import options_pb2

Shape = Literal["array"]
# grpc ships no type information: its context is Any to mypy; the alias names what it is.
ServicerContext: TypeAlias = grpc.aio.ServicerContext


def is_rest(context: ServicerContext) -> bool:
    return any(key == "x-tally-rest" for key, _ in context.invocation_metadata() or ())


def header(context: ServicerContext, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return None


@dataclass
class _RestCall:
    """What the interceptor knows of the REST call being served (server/interceptors.py, `RestInterceptor`)."""

    nulls: str
    sent: bool = False


# Set by the interceptor around a REST call whose response can hold nullable fields; rest_hints adds
# the nulls hint to its own, since gRPC sends a call's initial metadata once.
_CALL: ContextVar[_RestCall | None] = ContextVar("tally_rest_call", default=None)


async def rest_hints(
    context: ServicerContext,
    *,
    http_code: int | None = None,
    shape: Shape | None = None,
    headers: Sequence[tuple[str, str]] = (),
    row_fill: tuple[str, Sequence[str]] | None = None,
) -> None:
    """`headers` are HTTP response headers for the REST client (Envoy passes them on).

    `row_fill` = (anchor, missing), for an answer whose rows all miss the same keys (a meter
    query's `subject` when it does not group by subject): `missing` is their JSON
    (`"subject":null`), printed by envoy/tally.lua after each row's `anchor` key, whose value must
    be a string without escapes (a time). It stands in for the call's `x-tally-nulls` walk, which
    is then not asked for, even when nothing is missing."""
    if not is_rest(context):
        return
    metadata: list[tuple[str, str]] = list(headers)
    if http_code is not None:
        metadata.append(("x-http-code", str(http_code)))
    if shape is not None:
        metadata.append(("x-tally-shape", shape))
    call = _CALL.get()
    if row_fill is not None:
        anchor, missing = row_fill
        if missing:
            metadata.append(("x-tally-fill", f"{anchor}|{','.join(missing)}"))
        if call is not None:
            call.sent = True
    elif call is not None and metadata:
        metadata.append(("x-tally-nulls", call.nulls))
        call.sent = True
    if metadata:
        await context.send_initial_metadata(metadata)


def _null_entries(message: Descriptor, path: str, stack: tuple[str, ...], out: list[str]) -> None:
    nullable = [field.json_name for field in message.fields if field.GetOptions().Extensions[options_pb2.rest_nullable]]
    if nullable:
        out.append(f"{path}:{','.join(nullable)}")
    for field in message.fields:
        child = field.message_type
        # Maps and well-known types (printed as strings or free-form JSON) hold no nullable field.
        if child is None or child.GetOptions().map_entry or child.full_name.startswith("google."):
            continue
        # A message may hold itself (an invoice line's detailed children): one level of that is
        # what the API returns, and a bound keeps the walk finite.
        if stack.count(child.full_name) >= 2:
            continue
        step = field.json_name + (".*" if field.is_repeated else "")
        _null_entries(child, f"{path}.{step}" if path else step, (*stack, child.full_name), out)


@cache
def null_paths(message_name: str) -> str | None:
    """Where a response of this message type may need nulls, as envoy/tally.lua reads them.

    `path:key,key;path:key`, a path being JSON names from the response's root joined by dots, `*`
    for every element of an array: `items.*.phases.*:duration`. None when the type holds no
    `(tally.v1.rest_nullable)` field at any depth.
    """
    message = descriptor_pool.Default().FindMessageTypeByName(message_name)
    out: list[str] = []
    _null_entries(message, "", (message.full_name,), out)
    return ";".join(out) or None


@cache
def method_descriptor(method_path: str) -> MethodDescriptor | None:
    """The method a gRPC call names as `/pkg.Service/Method`, or None when there is none."""
    try:
        service, name = method_path.lstrip("/").rsplit("/", 1)
        method: MethodDescriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except (KeyError, ValueError):
        return None
    return method


@cache
def method_null_paths(method_path: str) -> str | None:
    """null_paths of the response of `/pkg.Service/Method`, or None (unknown method, no nullables)."""
    method = method_descriptor(method_path)
    return None if method is None else null_paths(method.output_type.full_name)


async def with_null_hint(nulls: str, context: ServicerContext, behavior: Any, request: Any) -> Any:
    """Serves a REST call whose response may need nulls, making sure Envoy hears where."""
    call = _RestCall(nulls)
    token = _CALL.set(call)
    try:
        response = await behavior(request, context)
    finally:
        _CALL.reset(token)
    if not call.sent:
        await context.send_initial_metadata([("x-tally-nulls", nulls)])
    return response
