"""REST-only hints a servicer attaches for Envoy's Lua filter (envoy/tally.lua).

gRPC has one success status; OpenMeter's REST API answers 201, 202 and 204 and returns some lists
as bare arrays. Servicers state that here, once per call, and only for requests that came through
Envoy (marked with x-tally-rest), so native gRPC clients see clean responses.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import grpc

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


async def rest_hints(
    context: ServicerContext,
    *,
    http_code: int | None = None,
    shape: Shape | None = None,
) -> None:
    if not is_rest(context):
        return
    metadata: list[tuple[str, str]] = []
    if http_code is not None:
        metadata.append(("x-http-code", str(http_code)))
    if shape is not None:
        metadata.append(("x-tally-shape", shape))
    if metadata:
        await context.send_initial_metadata(metadata)
