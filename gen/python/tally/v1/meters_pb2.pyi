import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tally.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Meter(_message.Message):
    __slots__ = ("id", "slug", "name", "description", "aggregation", "event_type", "event_from", "value_property", "group_by", "metadata", "annotations", "created_at", "updated_at", "deleted_at")
    class GroupByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FROM_FIELD_NUMBER: _ClassVar[int]
    VALUE_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    slug: str
    name: str
    description: str
    aggregation: str
    event_type: str
    event_from: _timestamp_pb2.Timestamp
    value_property: str
    group_by: _containers.ScalarMap[str, str]
    metadata: _containers.ScalarMap[str, str]
    annotations: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., slug: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., aggregation: _Optional[str] = ..., event_type: _Optional[str] = ..., event_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value_property: _Optional[str] = ..., group_by: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PreviewMeterRequest(_message.Message):
    __slots__ = ("aggregation", "event_type", "value_property", "group_by", "sample_event")
    class GroupByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_EVENT_FIELD_NUMBER: _ClassVar[int]
    aggregation: str
    event_type: str
    value_property: str
    group_by: _containers.ScalarMap[str, str]
    sample_event: str
    def __init__(self, aggregation: _Optional[str] = ..., event_type: _Optional[str] = ..., value_property: _Optional[str] = ..., group_by: _Optional[_Mapping[str, str]] = ..., sample_event: _Optional[str] = ...) -> None: ...

class PreviewFieldError(_message.Message):
    __slots__ = ("field", "message", "code")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    field: str
    message: str
    code: str
    def __init__(self, field: _Optional[str] = ..., message: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class PreviewMeterResponse(_message.Message):
    __slots__ = ("meter_errors", "event_errors", "event_type_matches", "value", "unique_value", "group_by", "skip_reason")
    class GroupByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METER_ERRORS_FIELD_NUMBER: _ClassVar[int]
    EVENT_ERRORS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_MATCHES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_VALUE_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    meter_errors: _containers.RepeatedCompositeFieldContainer[PreviewFieldError]
    event_errors: _containers.RepeatedCompositeFieldContainer[PreviewFieldError]
    event_type_matches: bool
    value: float
    unique_value: str
    group_by: _containers.ScalarMap[str, str]
    skip_reason: str
    def __init__(self, meter_errors: _Optional[_Iterable[_Union[PreviewFieldError, _Mapping]]] = ..., event_errors: _Optional[_Iterable[_Union[PreviewFieldError, _Mapping]]] = ..., event_type_matches: _Optional[bool] = ..., value: _Optional[float] = ..., unique_value: _Optional[str] = ..., group_by: _Optional[_Mapping[str, str]] = ..., skip_reason: _Optional[str] = ...) -> None: ...

class ListMetersRequest(_message.Message):
    __slots__ = ("include_deleted", "order", "order_by")
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    include_deleted: bool
    order: str
    order_by: str
    def __init__(self, include_deleted: _Optional[bool] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListMetersResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Meter]
    def __init__(self, items: _Optional[_Iterable[_Union[Meter, _Mapping]]] = ...) -> None: ...

class CreateMeterRequest(_message.Message):
    __slots__ = ("slug", "name", "description", "aggregation", "event_type", "event_from", "value_property", "group_by", "metadata")
    class GroupByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SLUG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FROM_FIELD_NUMBER: _ClassVar[int]
    VALUE_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    slug: str
    name: str
    description: str
    aggregation: str
    event_type: str
    event_from: _timestamp_pb2.Timestamp
    value_property: str
    group_by: _containers.ScalarMap[str, str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, slug: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., aggregation: _Optional[str] = ..., event_type: _Optional[str] = ..., event_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value_property: _Optional[str] = ..., group_by: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetMeterRequest(_message.Message):
    __slots__ = ("meter_id_or_slug",)
    METER_ID_OR_SLUG_FIELD_NUMBER: _ClassVar[int]
    meter_id_or_slug: str
    def __init__(self, meter_id_or_slug: _Optional[str] = ...) -> None: ...

class UpdateMeterRequest(_message.Message):
    __slots__ = ("meter_id_or_slug", "name", "description", "group_by", "metadata")
    class GroupByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METER_ID_OR_SLUG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    meter_id_or_slug: str
    name: str
    description: str
    group_by: _containers.ScalarMap[str, str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, meter_id_or_slug: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., group_by: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteMeterRequest(_message.Message):
    __slots__ = ("meter_id_or_slug",)
    METER_ID_OR_SLUG_FIELD_NUMBER: _ClassVar[int]
    meter_id_or_slug: str
    def __init__(self, meter_id_or_slug: _Optional[str] = ...) -> None: ...

class FilterString(_message.Message):
    __slots__ = ("eq", "ne", "nin", "like", "nlike", "ilike", "nilike", "gt", "gte", "lt", "lte")
    EQ_FIELD_NUMBER: _ClassVar[int]
    NE_FIELD_NUMBER: _ClassVar[int]
    IN_FIELD_NUMBER: _ClassVar[int]
    NIN_FIELD_NUMBER: _ClassVar[int]
    LIKE_FIELD_NUMBER: _ClassVar[int]
    NLIKE_FIELD_NUMBER: _ClassVar[int]
    ILIKE_FIELD_NUMBER: _ClassVar[int]
    NILIKE_FIELD_NUMBER: _ClassVar[int]
    GT_FIELD_NUMBER: _ClassVar[int]
    GTE_FIELD_NUMBER: _ClassVar[int]
    LT_FIELD_NUMBER: _ClassVar[int]
    LTE_FIELD_NUMBER: _ClassVar[int]
    AND_FIELD_NUMBER: _ClassVar[int]
    OR_FIELD_NUMBER: _ClassVar[int]
    eq: str
    ne: str
    nin: _containers.RepeatedScalarFieldContainer[str]
    like: str
    nlike: str
    ilike: str
    nilike: str
    gt: str
    gte: str
    lt: str
    lte: str
    def __init__(self, eq: _Optional[str] = ..., ne: _Optional[str] = ..., nin: _Optional[_Iterable[str]] = ..., like: _Optional[str] = ..., nlike: _Optional[str] = ..., ilike: _Optional[str] = ..., nilike: _Optional[str] = ..., gt: _Optional[str] = ..., gte: _Optional[str] = ..., lt: _Optional[str] = ..., lte: _Optional[str] = ..., **kwargs) -> None: ...

class QueryMeterRequest(_message.Message):
    __slots__ = ("meter_id_or_slug", "to", "window_size", "window_time_zone", "subject", "filter_customer_id", "group_by", "filter_group_by", "advanced_meter_group_by_filters", "client_id")
    class AdvancedMeterGroupByFiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FilterString
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FilterString, _Mapping]] = ...) -> None: ...
    METER_ID_OR_SLUG_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    FILTER_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    FILTER_GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    ADVANCED_METER_GROUP_BY_FILTERS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    meter_id_or_slug: str
    to: _timestamp_pb2.Timestamp
    window_size: str
    window_time_zone: str
    subject: _containers.RepeatedScalarFieldContainer[str]
    filter_customer_id: _containers.RepeatedScalarFieldContainer[str]
    group_by: _containers.RepeatedScalarFieldContainer[str]
    filter_group_by: _struct_pb2.Struct
    advanced_meter_group_by_filters: _containers.MessageMap[str, FilterString]
    client_id: str
    def __init__(self, meter_id_or_slug: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_size: _Optional[str] = ..., window_time_zone: _Optional[str] = ..., subject: _Optional[_Iterable[str]] = ..., filter_customer_id: _Optional[_Iterable[str]] = ..., group_by: _Optional[_Iterable[str]] = ..., filter_group_by: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., advanced_meter_group_by_filters: _Optional[_Mapping[str, FilterString]] = ..., client_id: _Optional[str] = ..., **kwargs) -> None: ...

class MeterQueryRow(_message.Message):
    __slots__ = ("value", "window_start", "window_end", "subject", "customer_id", "group_by")
    class GroupByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    value: float
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    subject: str
    customer_id: str
    group_by: _containers.ScalarMap[str, str]
    def __init__(self, value: _Optional[float] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subject: _Optional[str] = ..., customer_id: _Optional[str] = ..., group_by: _Optional[_Mapping[str, str]] = ...) -> None: ...

class QueryMeterResponse(_message.Message):
    __slots__ = ("to", "window_size", "data")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    to: _timestamp_pb2.Timestamp
    window_size: str
    data: _containers.RepeatedCompositeFieldContainer[MeterQueryRow]
    def __init__(self, to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_size: _Optional[str] = ..., data: _Optional[_Iterable[_Union[MeterQueryRow, _Mapping]]] = ..., **kwargs) -> None: ...

class ListMeterSubjectsRequest(_message.Message):
    __slots__ = ("meter_id_or_slug", "to")
    METER_ID_OR_SLUG_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    meter_id_or_slug: str
    to: _timestamp_pb2.Timestamp
    def __init__(self, meter_id_or_slug: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., **kwargs) -> None: ...

class ListMeterSubjectsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[str]] = ...) -> None: ...

class ListMeterGroupByValuesRequest(_message.Message):
    __slots__ = ("meter_id_or_slug", "group_by_key", "to", "search")
    METER_ID_OR_SLUG_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    meter_id_or_slug: str
    group_by_key: str
    to: _timestamp_pb2.Timestamp
    search: str
    def __init__(self, meter_id_or_slug: _Optional[str] = ..., group_by_key: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., search: _Optional[str] = ..., **kwargs) -> None: ...

class ListMeterGroupByValuesResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[str]] = ...) -> None: ...

class GetProgressRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("success", "failed", "total", "updated_at")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    success: float
    failed: float
    total: float
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, success: _Optional[float] = ..., failed: _Optional[float] = ..., total: _Optional[float] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
