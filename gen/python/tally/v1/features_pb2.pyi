import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tally.v1 import meters_pb2 as _meters_pb2
from tally.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Feature(_message.Message):
    __slots__ = ("id", "key", "name", "metadata", "meter_slug", "meter_group_by_filters", "advanced_meter_group_by_filters", "created_at", "updated_at", "deleted_at", "archived_at", "unit_cost")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    METER_SLUG_FIELD_NUMBER: _ClassVar[int]
    METER_GROUP_BY_FILTERS_FIELD_NUMBER: _ClassVar[int]
    ADVANCED_METER_GROUP_BY_FILTERS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_AT_FIELD_NUMBER: _ClassVar[int]
    UNIT_COST_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    name: str
    metadata: _containers.ScalarMap[str, str]
    meter_slug: str
    meter_group_by_filters: _struct_pb2.Struct
    advanced_meter_group_by_filters: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    archived_at: _timestamp_pb2.Timestamp
    unit_cost: FeatureUnitCost
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., meter_slug: _Optional[str] = ..., meter_group_by_filters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., advanced_meter_group_by_filters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., archived_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unit_cost: _Optional[_Union[FeatureUnitCost, _Mapping]] = ...) -> None: ...

class FeatureUnitCost(_message.Message):
    __slots__ = ("type", "amount", "provider_property", "provider", "model_property", "model", "token_type_property", "token_type")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    type: str
    amount: str
    provider_property: str
    provider: str
    model_property: str
    model: str
    token_type_property: str
    token_type: str
    def __init__(self, type: _Optional[str] = ..., amount: _Optional[str] = ..., provider_property: _Optional[str] = ..., provider: _Optional[str] = ..., model_property: _Optional[str] = ..., model: _Optional[str] = ..., token_type_property: _Optional[str] = ..., token_type: _Optional[str] = ...) -> None: ...

class CreateFeatureRequest(_message.Message):
    __slots__ = ("key", "name", "metadata", "meter_slug", "meter_group_by_filters", "advanced_meter_group_by_filters", "unit_cost")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MeterGroupByFiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AdvancedMeterGroupByFiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _meters_pb2.FilterString
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_meters_pb2.FilterString, _Mapping]] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    METER_SLUG_FIELD_NUMBER: _ClassVar[int]
    METER_GROUP_BY_FILTERS_FIELD_NUMBER: _ClassVar[int]
    ADVANCED_METER_GROUP_BY_FILTERS_FIELD_NUMBER: _ClassVar[int]
    UNIT_COST_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    metadata: _containers.ScalarMap[str, str]
    meter_slug: str
    meter_group_by_filters: _containers.ScalarMap[str, str]
    advanced_meter_group_by_filters: _containers.MessageMap[str, _meters_pb2.FilterString]
    unit_cost: FeatureUnitCost
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., meter_slug: _Optional[str] = ..., meter_group_by_filters: _Optional[_Mapping[str, str]] = ..., advanced_meter_group_by_filters: _Optional[_Mapping[str, _meters_pb2.FilterString]] = ..., unit_cost: _Optional[_Union[FeatureUnitCost, _Mapping]] = ...) -> None: ...

class ListFeaturesRequest(_message.Message):
    __slots__ = ("meter_slug", "include_archived", "page", "page_size", "offset", "limit", "order", "order_by")
    METER_SLUG_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    meter_slug: _containers.RepeatedScalarFieldContainer[str]
    include_archived: bool
    page: int
    page_size: int
    offset: int
    limit: int
    order: str
    order_by: str
    def __init__(self, meter_slug: _Optional[_Iterable[str]] = ..., include_archived: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListFeaturesResponse(_message.Message):
    __slots__ = ("items", "total_count", "page", "page_size")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Feature]
    total_count: int
    page: int
    page_size: int
    def __init__(self, items: _Optional[_Iterable[_Union[Feature, _Mapping]]] = ..., total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class GetFeatureRequest(_message.Message):
    __slots__ = ("feature_id",)
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    feature_id: str
    def __init__(self, feature_id: _Optional[str] = ...) -> None: ...

class DeleteFeatureRequest(_message.Message):
    __slots__ = ("feature_id",)
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    feature_id: str
    def __init__(self, feature_id: _Optional[str] = ...) -> None: ...
