"""PortalService: OpenMeter's consumer portal tokens, and the portal's meter query for one subject."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from google.api import httpbody_pb2
from google.protobuf import empty_pb2

from domain.auth.models import PortalToken, PortalTokenCreateInput, PortalTokenInvalidateInput
from domain.auth.service import PortalTokenService
from domain.errors import UnauthenticatedError, ValidationError
from domain.metering.query import MeterQueryInput
from domain.metering.service import MeterService
from server.context import RequestContext
from server.convert import optional_str, set_timestamp, timestamp_or_none
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from server.servicers.meters import csv_answer, query_input, query_response, render_csv, rest_query_rows
from tally.v1 import meters_pb2, portal_pb2, portal_pb2_grpc


def portal_token_to_proto(token: PortalToken, now: datetime, secret: str | None = None) -> portal_pb2.PortalToken:
    message = portal_pb2.PortalToken(
        id=token.id,
        subject=token.subject,
        allowed_meter_slugs=list(token.allowed_meter_slugs),
        expired=token.expired(now),
    )
    set_timestamp(message.expires_at, token.expires_at)
    set_timestamp(message.created_at, token.created_at)
    if secret is not None:
        message.token = secret
    return message


def _allowed_slugs(request: portal_pb2.CreatePortalTokenRequest) -> list[str] | None:
    if not request.HasField("allowed_meter_slugs"):
        return None
    values = list(request.allowed_meter_slugs)
    if not all(isinstance(value, str) for value in values):
        raise ValidationError.single("allowedMeterSlugs", "must be an array of meter slugs")
    return [str(value) for value in values]


class PortalServicer(portal_pb2_grpc.PortalServiceServicer):
    def __init__(self, tokens: PortalTokenService, meters: MeterService, request: RequestContext) -> None:
        self._tokens = tokens
        self._meters = meters
        self._request = request

    async def CreatePortalToken(
        self, request: portal_pb2.CreatePortalTokenRequest, context: Ctx
    ) -> portal_pb2.PortalToken:
        data = PortalTokenCreateInput(
            subject=request.subject,
            allowed_meter_slugs=_allowed_slugs(request),
            expires_at=timestamp_or_none(request, "expires_at"),
        )
        created = await self._tokens.create(self._request.namespace(context), data)
        return portal_token_to_proto(created.token, self._tokens.now(), created.secret)

    async def ListPortalTokens(
        self, request: portal_pb2.ListPortalTokensRequest, context: Ctx
    ) -> portal_pb2.ListPortalTokensResponse:
        limit = request.limit if request.HasField("limit") else None
        tokens = await self._tokens.list_tokens(self._request.namespace(context), limit)
        now = self._tokens.now()
        await rest_hints(context, shape="array")
        return portal_pb2.ListPortalTokensResponse(items=[portal_token_to_proto(token, now) for token in tokens])

    async def InvalidatePortalTokens(
        self, request: portal_pb2.InvalidatePortalTokensRequest, context: Ctx
    ) -> empty_pb2.Empty:
        data = PortalTokenInvalidateInput(id=optional_str(request, "id"), subject=optional_str(request, "subject"))
        await self._tokens.invalidate(self._request.namespace(context), data)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()

    async def _input(self, request: meters_pb2.QueryMeterRequest, context: Ctx) -> tuple[str, str, MeterQueryInput]:
        """The namespace, meter ID and query a portal token allows for this request."""
        token = self._request.portal_token(context)
        # Checked on the path's slug before the meter is looked up, as OpenMeter's portal
        # authenticator does (verifyPortalToken): a meter the token does not name is a 401 whether
        # it exists or not, so a token's holder learns nothing of the other meters.
        if not token.allows(request.meter_id_or_slug):
            raise UnauthenticatedError(f"this portal token does not allow meter {request.meter_id_or_slug!r}")
        meter = await self._meters.get(token.namespace, request.meter_id_or_slug)
        # The token's subject, whatever the request asks for: a portal reads one subject's usage.
        data = dataclasses.replace(query_input(request, context), subjects=[token.subject], filter_customer_ids=[])
        return token.namespace, meter.id, data

    async def QueryPortalMeter(self, request: meters_pb2.QueryMeterRequest, context: Ctx) -> bytes:
        namespace, meter_id, data = await self._input(request, context)
        query, rows = await self._meters.query_wire(namespace, meter_id, data)
        await rest_query_rows(context, query)
        return query_response(data, rows)

    async def QueryPortalMeterCsv(self, request: meters_pb2.QueryMeterRequest, context: Ctx) -> httpbody_pb2.HttpBody:
        namespace, meter_id, data = await self._input(request, context)
        meter, query, rows = await self._meters.query(namespace, meter_id, data)
        # The meter query's CSV (OpenMeter serves the portal's through it), display names included.
        names = await self._meters.subject_display_names(namespace, query, rows)
        return await csv_answer(context, meter, render_csv(query, rows, names))
