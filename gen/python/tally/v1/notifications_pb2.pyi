import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
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

class NotificationChannel(_message.Message):
    __slots__ = ("id", "type", "name", "disabled", "url", "custom_headers", "signing_secret", "metadata", "annotations", "created_at", "updated_at", "deleted_at")
    class CustomHeadersEntry(_message.Message):
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
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_HEADERS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    name: str
    disabled: bool
    url: str
    custom_headers: _containers.ScalarMap[str, str]
    signing_secret: str
    metadata: _containers.ScalarMap[str, str]
    annotations: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., name: _Optional[str] = ..., disabled: _Optional[bool] = ..., url: _Optional[str] = ..., custom_headers: _Optional[_Mapping[str, str]] = ..., signing_secret: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListNotificationChannelsRequest(_message.Message):
    __slots__ = ("include_deleted", "include_disabled", "page", "page_size", "order", "order_by")
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DISABLED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    include_deleted: bool
    include_disabled: bool
    page: int
    page_size: int
    order: str
    order_by: str
    def __init__(self, include_deleted: _Optional[bool] = ..., include_disabled: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListNotificationChannelsResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[NotificationChannel]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[NotificationChannel, _Mapping]]] = ...) -> None: ...

class CreateNotificationChannelRequest(_message.Message):
    __slots__ = ("type", "name", "disabled", "url", "custom_headers", "signing_secret", "metadata")
    class CustomHeadersEntry(_message.Message):
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
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_HEADERS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    disabled: bool
    url: str
    custom_headers: _containers.ScalarMap[str, str]
    signing_secret: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., disabled: _Optional[bool] = ..., url: _Optional[str] = ..., custom_headers: _Optional[_Mapping[str, str]] = ..., signing_secret: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetNotificationChannelRequest(_message.Message):
    __slots__ = ("channel_id",)
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    channel_id: str
    def __init__(self, channel_id: _Optional[str] = ...) -> None: ...

class UpdateNotificationChannelRequest(_message.Message):
    __slots__ = ("channel_id", "type", "name", "disabled", "url", "custom_headers", "signing_secret", "metadata")
    class CustomHeadersEntry(_message.Message):
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
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_HEADERS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_SECRET_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    channel_id: str
    type: str
    name: str
    disabled: bool
    url: str
    custom_headers: _containers.ScalarMap[str, str]
    signing_secret: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, channel_id: _Optional[str] = ..., type: _Optional[str] = ..., name: _Optional[str] = ..., disabled: _Optional[bool] = ..., url: _Optional[str] = ..., custom_headers: _Optional[_Mapping[str, str]] = ..., signing_secret: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteNotificationChannelRequest(_message.Message):
    __slots__ = ("channel_id",)
    CHANNEL_ID_FIELD_NUMBER: _ClassVar[int]
    channel_id: str
    def __init__(self, channel_id: _Optional[str] = ...) -> None: ...

class NotificationChannelMeta(_message.Message):
    __slots__ = ("id", "type")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class NotificationFeatureMeta(_message.Message):
    __slots__ = ("id", "key")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class NotificationRuleBalanceThresholdValue(_message.Message):
    __slots__ = ("value", "type")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    value: float
    type: str
    def __init__(self, value: _Optional[float] = ..., type: _Optional[str] = ...) -> None: ...

class NotificationRule(_message.Message):
    __slots__ = ("id", "type", "name", "disabled", "channels", "thresholds", "features", "metadata", "annotations", "created_at", "updated_at", "deleted_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    name: str
    disabled: bool
    channels: _containers.RepeatedCompositeFieldContainer[NotificationChannelMeta]
    thresholds: _containers.RepeatedCompositeFieldContainer[NotificationRuleBalanceThresholdValue]
    features: _containers.RepeatedCompositeFieldContainer[NotificationFeatureMeta]
    metadata: _containers.ScalarMap[str, str]
    annotations: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., name: _Optional[str] = ..., disabled: _Optional[bool] = ..., channels: _Optional[_Iterable[_Union[NotificationChannelMeta, _Mapping]]] = ..., thresholds: _Optional[_Iterable[_Union[NotificationRuleBalanceThresholdValue, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[NotificationFeatureMeta, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListNotificationRulesRequest(_message.Message):
    __slots__ = ("include_deleted", "include_disabled", "feature", "channel", "page", "page_size", "order", "order_by")
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DISABLED_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    include_deleted: bool
    include_disabled: bool
    feature: _containers.RepeatedScalarFieldContainer[str]
    channel: _containers.RepeatedScalarFieldContainer[str]
    page: int
    page_size: int
    order: str
    order_by: str
    def __init__(self, include_deleted: _Optional[bool] = ..., include_disabled: _Optional[bool] = ..., feature: _Optional[_Iterable[str]] = ..., channel: _Optional[_Iterable[str]] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListNotificationRulesResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[NotificationRule]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[NotificationRule, _Mapping]]] = ...) -> None: ...

class CreateNotificationRuleRequest(_message.Message):
    __slots__ = ("type", "name", "disabled", "channels", "thresholds", "features", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    disabled: bool
    channels: _containers.RepeatedScalarFieldContainer[str]
    thresholds: _containers.RepeatedCompositeFieldContainer[NotificationRuleBalanceThresholdValue]
    features: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., disabled: _Optional[bool] = ..., channels: _Optional[_Iterable[str]] = ..., thresholds: _Optional[_Iterable[_Union[NotificationRuleBalanceThresholdValue, _Mapping]]] = ..., features: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetNotificationRuleRequest(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class UpdateNotificationRuleRequest(_message.Message):
    __slots__ = ("rule_id", "type", "name", "disabled", "channels", "thresholds", "features", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    type: str
    name: str
    disabled: bool
    channels: _containers.RepeatedScalarFieldContainer[str]
    thresholds: _containers.RepeatedCompositeFieldContainer[NotificationRuleBalanceThresholdValue]
    features: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, rule_id: _Optional[str] = ..., type: _Optional[str] = ..., name: _Optional[str] = ..., disabled: _Optional[bool] = ..., channels: _Optional[_Iterable[str]] = ..., thresholds: _Optional[_Iterable[_Union[NotificationRuleBalanceThresholdValue, _Mapping]]] = ..., features: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteNotificationRuleRequest(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class TestNotificationRuleRequest(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class NotificationEventDeliveryAttemptResponse(_message.Message):
    __slots__ = ("status_code", "body", "duration_ms", "url")
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    status_code: int
    body: str
    duration_ms: int
    url: str
    def __init__(self, status_code: _Optional[int] = ..., body: _Optional[str] = ..., duration_ms: _Optional[int] = ..., url: _Optional[str] = ...) -> None: ...

class NotificationEventDeliveryAttempt(_message.Message):
    __slots__ = ("state", "response", "timestamp")
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    state: str
    response: NotificationEventDeliveryAttemptResponse
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[str] = ..., response: _Optional[_Union[NotificationEventDeliveryAttemptResponse, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class NotificationEventDeliveryStatus(_message.Message):
    __slots__ = ("state", "reason", "updated_at", "channel", "annotations", "next_attempt", "attempts")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    state: str
    reason: str
    updated_at: _timestamp_pb2.Timestamp
    channel: NotificationChannelMeta
    annotations: _struct_pb2.Struct
    next_attempt: _timestamp_pb2.Timestamp
    attempts: _containers.RepeatedCompositeFieldContainer[NotificationEventDeliveryAttempt]
    def __init__(self, state: _Optional[str] = ..., reason: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., channel: _Optional[_Union[NotificationChannelMeta, _Mapping]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., next_attempt: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[NotificationEventDeliveryAttempt, _Mapping]]] = ...) -> None: ...

class NotificationEvent(_message.Message):
    __slots__ = ("id", "type", "created_at", "rule", "delivery_status", "payload", "annotations")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_STATUS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    created_at: _timestamp_pb2.Timestamp
    rule: NotificationRule
    delivery_status: _containers.RepeatedCompositeFieldContainer[NotificationEventDeliveryStatus]
    payload: _struct_pb2.Struct
    annotations: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule: _Optional[_Union[NotificationRule, _Mapping]] = ..., delivery_status: _Optional[_Iterable[_Union[NotificationEventDeliveryStatus, _Mapping]]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListNotificationEventsRequest(_message.Message):
    __slots__ = ("to", "feature", "subject", "rule", "channel", "page", "page_size", "order", "order_by")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    to: _timestamp_pb2.Timestamp
    feature: _containers.RepeatedScalarFieldContainer[str]
    subject: _containers.RepeatedScalarFieldContainer[str]
    rule: _containers.RepeatedScalarFieldContainer[str]
    channel: _containers.RepeatedScalarFieldContainer[str]
    page: int
    page_size: int
    order: str
    order_by: str
    def __init__(self, to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feature: _Optional[_Iterable[str]] = ..., subject: _Optional[_Iterable[str]] = ..., rule: _Optional[_Iterable[str]] = ..., channel: _Optional[_Iterable[str]] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ..., **kwargs) -> None: ...

class ListNotificationEventsResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[NotificationEvent]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[NotificationEvent, _Mapping]]] = ...) -> None: ...

class GetNotificationEventRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class ResendNotificationEventRequest(_message.Message):
    __slots__ = ("event_id", "channels")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    channels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, event_id: _Optional[str] = ..., channels: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamNotificationEventsRequest(_message.Message):
    __slots__ = ("after_event_id", "types")
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    after_event_id: str
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, after_event_id: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ...) -> None: ...
