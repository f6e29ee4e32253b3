"""ApiKeyService: proto <-> domain for the caller's namespace's API keys (admin scope); CallerService:
who the caller is (read scope)."""

from __future__ import annotations

from google.protobuf import empty_pb2

from domain.auth.models import ApiKey, ApiKeyCreateInput
from domain.auth.service import ApiKeyService
from domain.errors import UnauthenticatedError
from server.auth import MISSING_KEY, current_principal
from server.context import RequestContext
from server.convert import set_timestamp, timestamp_or_none
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from tally.v1 import apikeys_pb2, apikeys_pb2_grpc


def api_key_to_proto(key: ApiKey, secret: str | None = None) -> apikeys_pb2.ApiKey:
    message = apikeys_pb2.ApiKey(
        id=key.id,
        name=key.name,
        namespace=key.namespace,
        prefix=f"tly_{key.prefix}",
        scopes=[scope.value for scope in key.scopes],
    )
    set_timestamp(message.created_at, key.created_at)
    set_timestamp(message.expires_at, key.expires_at)
    set_timestamp(message.revoked_at, key.revoked_at)
    if secret is not None:
        message.key = secret
    return message


class ApiKeyServicer(apikeys_pb2_grpc.ApiKeyServiceServicer):
    def __init__(self, keys: ApiKeyService, request: RequestContext) -> None:
        self._keys = keys
        self._request = request

    async def CreateApiKey(self, request: apikeys_pb2.CreateApiKeyRequest, context: Ctx) -> apikeys_pb2.ApiKey:
        data = ApiKeyCreateInput(
            name=request.name, scopes=list(request.scopes), expires_at=timestamp_or_none(request, "expires_at")
        )
        created = await self._keys.create(self._request.namespace(context), data)
        await rest_hints(context, http_code=201)
        return api_key_to_proto(created.key, created.secret)

    async def ListApiKeys(
        self, request: apikeys_pb2.ListApiKeysRequest, context: Ctx
    ) -> apikeys_pb2.ListApiKeysResponse:
        keys = await self._keys.list_keys(self._request.namespace(context), request.include_revoked)
        return apikeys_pb2.ListApiKeysResponse(items=[api_key_to_proto(key) for key in keys])

    async def RevokeApiKey(self, request: apikeys_pb2.RevokeApiKeyRequest, context: Ctx) -> empty_pb2.Empty:
        ref = request.api_key_id.removeprefix("tly_")
        await self._keys.revoke(self._request.namespace(context), ref)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()


class CallerServicer(apikeys_pb2_grpc.CallerServiceServicer):
    async def GetCaller(self, request: apikeys_pb2.GetCallerRequest, context: Ctx) -> apikeys_pb2.Caller:
        # The auth interceptor sets the principal for every call that needs a scope, as this one does.
        principal = current_principal()
        if principal is None:
            raise UnauthenticatedError(MISSING_KEY)
        return apikeys_pb2.Caller(
            namespace=principal.namespace,
            scopes=sorted(scope.value for scope in principal.scopes),
            api_key_id=principal.key_id,
        )
