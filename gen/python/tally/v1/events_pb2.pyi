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

class GetDebugMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CloudEvent(_message.Message):
    __slots__ = ("id", "source", "specversion", "type", "subject", "time", "datacontenttype", "dataschema", "data", "data_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPECVERSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DATACONTENTTYPE_FIELD_NUMBER: _ClassVar[int]
    DATASCHEMA_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    source: str
    specversion: str
    type: str
    subject: str
    time: _timestamp_pb2.Timestamp
    datacontenttype: str
    dataschema: str
    data: _struct_pb2.Struct
    data_json: bytes
    def __init__(self, id: _Optional[str] = ..., source: _Optional[str] = ..., specversion: _Optional[str] = ..., type: _Optional[str] = ..., subject: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., datacontenttype: _Optional[str] = ..., dataschema: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., data_json: _Optional[bytes] = ...) -> None: ...

class IngestEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[CloudEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[CloudEvent, _Mapping]]] = ...) -> None: ...

class IngestEventsResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class IngestedEvent(_message.Message):
    __slots__ = ("event", "customer_id", "validation_error", "ingested_at", "stored_at")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_FIELD_NUMBER: _ClassVar[int]
    STORED_AT_FIELD_NUMBER: _ClassVar[int]
    event: CloudEvent
    customer_id: str
    validation_error: str
    ingested_at: _timestamp_pb2.Timestamp
    stored_at: _timestamp_pb2.Timestamp
    def __init__(self, event: _Optional[_Union[CloudEvent, _Mapping]] = ..., customer_id: _Optional[str] = ..., validation_error: _Optional[str] = ..., ingested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stored_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("to", "ingested_at_from", "ingested_at_to", "id", "subject", "customer_id", "limit")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_FROM_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_TO_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    to: _timestamp_pb2.Timestamp
    ingested_at_from: _timestamp_pb2.Timestamp
    ingested_at_to: _timestamp_pb2.Timestamp
    id: str
    subject: str
    customer_id: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ingested_at_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ingested_at_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., id: _Optional[str] = ..., subject: _Optional[str] = ..., customer_id: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., **kwargs) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[IngestedEvent]
    def __init__(self, items: _Optional[_Iterable[_Union[IngestedEvent, _Mapping]]] = ...) -> None: ...

class ListEventsV2Request(_message.Message):
    __slots__ = ("filter", "cursor", "limit")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    filter: str
    cursor: str
    limit: int
    def __init__(self, filter: _Optional[str] = ..., cursor: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEventsV2Response(_message.Message):
    __slots__ = ("items", "next_cursor")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[IngestedEvent]
    next_cursor: str
    def __init__(self, items: _Optional[_Iterable[_Union[IngestedEvent, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...
