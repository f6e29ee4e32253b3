"""FeatureService: proto <-> domain."""

from __future__ import annotations

from google.protobuf import empty_pb2

from domain.catalog.models import Feature, FeatureCreateInput, ListFeaturesInput, filter_to_json
from domain.catalog.service import FeatureService
from domain.catalog.unit_cost import UnitCostInput
from domain.pagination import PageMode
from server.context import RequestContext
from server.convert import optional_str, set_timestamp, struct_from
from server.rest import ServicerContext as Ctx
from server.rest import rest_hints
from server.servicers.meters import _filter_string
from tally.v1 import features_pb2, features_pb2_grpc


def feature_to_proto(feature: Feature) -> features_pb2.Feature:
    message = features_pb2.Feature(id=feature.id, key=feature.key, name=feature.name, metadata=dict(feature.metadata))
    if feature.meter_slug is not None:
        message.meter_slug = feature.meter_slug
    if feature.filters:
        message.meter_group_by_filters.CopyFrom(struct_from(feature.simple_filters))
        message.advanced_meter_group_by_filters.CopyFrom(
            struct_from({key: filter_to_json(f) for key, f in feature.filters.items()})
        )
    if feature.unit_cost is not None:
        cost = feature.unit_cost
        message.unit_cost.type = cost.type
        for name, value in (
            ("amount", cost.rest().get("amount")),
            ("provider", cost.provider),
            ("provider_property", cost.provider_property),
            ("model", cost.model),
            ("model_property", cost.model_property),
            ("token_type", cost.token_type),
            ("token_type_property", cost.token_type_property),
        ):
            if value is not None:
                setattr(message.unit_cost, name, value)
    set_timestamp(message.created_at, feature.created_at)
    set_timestamp(message.updated_at, feature.updated_at)
    set_timestamp(message.archived_at, feature.archived_at)
    return message


def _unit_cost_input(message: features_pb2.FeatureUnitCost) -> UnitCostInput:
    return UnitCostInput(
        type=message.type,
        amount=optional_str(message, "amount"),
        provider=optional_str(message, "provider"),
        provider_property=optional_str(message, "provider_property"),
        model=optional_str(message, "model"),
        model_property=optional_str(message, "model_property"),
        token_type=optional_str(message, "token_type"),
        token_type_property=optional_str(message, "token_type_property"),
    )


def _opt_int(message: object, name: str) -> int | None:
    return getattr(message, name) if message.HasField(name) else None  # type: ignore[attr-defined]


class FeatureServicer(features_pb2_grpc.FeatureServiceServicer):
    def __init__(self, features: FeatureService, request: RequestContext) -> None:
        self._features = features
        self._request = request

    async def CreateFeature(self, request: features_pb2.CreateFeatureRequest, context: Ctx) -> features_pb2.Feature:
        data = FeatureCreateInput(
            key=request.key,
            name=request.name,
            meter_slug=optional_str(request, "meter_slug"),
            meter_group_by_filters=dict(request.meter_group_by_filters),
            advanced_filters={k: _filter_string(v) for k, v in request.advanced_meter_group_by_filters.items()},
            metadata=dict(request.metadata),
            unit_cost=_unit_cost_input(request.unit_cost) if request.HasField("unit_cost") else None,
        )
        feature = await self._features.create(self._request.namespace(context), data)
        await rest_hints(context, http_code=201)
        return feature_to_proto(feature)

    async def ListFeatures(
        self, request: features_pb2.ListFeaturesRequest, context: Ctx
    ) -> features_pb2.ListFeaturesResponse:
        data = ListFeaturesInput(
            meter_slugs=tuple(request.meter_slug),
            include_archived=request.include_archived,
            page=_opt_int(request, "page"),
            page_size=_opt_int(request, "page_size"),
            limit=_opt_int(request, "limit"),
            offset=_opt_int(request, "offset"),
            order=optional_str(request, "order"),
            order_by=optional_str(request, "order_by"),
        )
        items, total, mode, page, size = await self._features.list_features(self._request.namespace(context), data)
        response = features_pb2.ListFeaturesResponse(items=[feature_to_proto(f) for f in items])
        if mode is PageMode.PAGE:
            response.total_count, response.page, response.page_size = total, page, size
        else:
            await rest_hints(context, shape="array")
        return response

    async def GetFeature(self, request: features_pb2.GetFeatureRequest, context: Ctx) -> features_pb2.Feature:
        # An archived feature is not found by ID or key, as in OpenMeter (its list shows it with includeArchived).
        return feature_to_proto(await self._features.get_live(self._request.namespace(context), request.feature_id))

    async def DeleteFeature(self, request: features_pb2.DeleteFeatureRequest, context: Ctx) -> empty_pb2.Empty:
        await self._features.archive(self._request.namespace(context), request.feature_id)
        await rest_hints(context, http_code=204)
        return empty_pb2.Empty()
