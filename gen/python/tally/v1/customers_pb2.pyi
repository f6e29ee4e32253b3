import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tally.v1 import options_pb2 as _options_pb2
from tally.v1 import subscriptions_pb2 as _subscriptions_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Address(_message.Message):
    __slots__ = ("country", "postal_code", "state", "city", "line1", "line2", "phone_number")
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    POSTAL_CODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    LINE1_FIELD_NUMBER: _ClassVar[int]
    LINE2_FIELD_NUMBER: _ClassVar[int]
    PHONE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    country: str
    postal_code: str
    state: str
    city: str
    line1: str
    line2: str
    phone_number: str
    def __init__(self, country: _Optional[str] = ..., postal_code: _Optional[str] = ..., state: _Optional[str] = ..., city: _Optional[str] = ..., line1: _Optional[str] = ..., line2: _Optional[str] = ..., phone_number: _Optional[str] = ...) -> None: ...

class CustomerUsageAttribution(_message.Message):
    __slots__ = ("subject_keys",)
    SUBJECT_KEYS_FIELD_NUMBER: _ClassVar[int]
    subject_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subject_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class Customer(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "created_at", "updated_at", "deleted_at", "key", "usage_attribution", "primary_email", "currency", "billing_address", "annotations", "current_subscription_id", "subscriptions")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    USAGE_ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_EMAIL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BILLING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    key: str
    usage_attribution: CustomerUsageAttribution
    primary_email: str
    currency: str
    billing_address: Address
    annotations: _struct_pb2.Struct
    current_subscription_id: str
    subscriptions: _containers.RepeatedCompositeFieldContainer[_subscriptions_pb2.Subscription]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key: _Optional[str] = ..., usage_attribution: _Optional[_Union[CustomerUsageAttribution, _Mapping]] = ..., primary_email: _Optional[str] = ..., currency: _Optional[str] = ..., billing_address: _Optional[_Union[Address, _Mapping]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., current_subscription_id: _Optional[str] = ..., subscriptions: _Optional[_Iterable[_Union[_subscriptions_pb2.Subscription, _Mapping]]] = ...) -> None: ...

class CreateCustomerRequest(_message.Message):
    __slots__ = ("name", "description", "metadata", "key", "usage_attribution", "primary_email", "currency", "billing_address")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    USAGE_ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_EMAIL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BILLING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    key: str
    usage_attribution: CustomerUsageAttribution
    primary_email: str
    currency: str
    billing_address: Address
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., key: _Optional[str] = ..., usage_attribution: _Optional[_Union[CustomerUsageAttribution, _Mapping]] = ..., primary_email: _Optional[str] = ..., currency: _Optional[str] = ..., billing_address: _Optional[_Union[Address, _Mapping]] = ...) -> None: ...

class ListCustomersRequest(_message.Message):
    __slots__ = ("page", "page_size", "order", "order_by", "include_deleted", "key", "name", "primary_email", "subject", "plan_key")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_EMAIL_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PLAN_KEY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    order: str
    order_by: str
    include_deleted: bool
    key: str
    name: str
    primary_email: str
    subject: str
    plan_key: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ..., include_deleted: _Optional[bool] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., primary_email: _Optional[str] = ..., subject: _Optional[str] = ..., plan_key: _Optional[str] = ...) -> None: ...

class ListCustomersResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[Customer]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[Customer, _Mapping]]] = ...) -> None: ...

class GetCustomerRequest(_message.Message):
    __slots__ = ("customer_id_or_key",)
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    def __init__(self, customer_id_or_key: _Optional[str] = ...) -> None: ...

class UpdateCustomerRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "name", "description", "metadata", "key", "usage_attribution", "primary_email", "currency", "billing_address")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    USAGE_ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_EMAIL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BILLING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    key: str
    usage_attribution: CustomerUsageAttribution
    primary_email: str
    currency: str
    billing_address: Address
    def __init__(self, customer_id_or_key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., key: _Optional[str] = ..., usage_attribution: _Optional[_Union[CustomerUsageAttribution, _Mapping]] = ..., primary_email: _Optional[str] = ..., currency: _Optional[str] = ..., billing_address: _Optional[_Union[Address, _Mapping]] = ...) -> None: ...

class DeleteCustomerRequest(_message.Message):
    __slots__ = ("customer_id_or_key",)
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    def __init__(self, customer_id_or_key: _Optional[str] = ...) -> None: ...

class Subject(_message.Message):
    __slots__ = ("id", "key", "display_name", "metadata", "created_at", "updated_at", "deleted_at", "current_period_start", "current_period_end", "stripe_customer_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    STRIPE_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    display_name: str
    metadata: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    current_period_start: _timestamp_pb2.Timestamp
    current_period_end: _timestamp_pb2.Timestamp
    stripe_customer_id: str
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., display_name: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stripe_customer_id: _Optional[str] = ...) -> None: ...

class SubjectUpsert(_message.Message):
    __slots__ = ("key", "display_name", "metadata", "current_period_start", "current_period_end", "stripe_customer_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    STRIPE_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    display_name: str
    metadata: _struct_pb2.Struct
    current_period_start: _timestamp_pb2.Timestamp
    current_period_end: _timestamp_pb2.Timestamp
    stripe_customer_id: str
    def __init__(self, key: _Optional[str] = ..., display_name: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., current_period_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_period_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stripe_customer_id: _Optional[str] = ...) -> None: ...

class UpsertSubjectsRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SubjectUpsert]
    def __init__(self, items: _Optional[_Iterable[_Union[SubjectUpsert, _Mapping]]] = ...) -> None: ...

class UpsertSubjectsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Subject]
    def __init__(self, items: _Optional[_Iterable[_Union[Subject, _Mapping]]] = ...) -> None: ...

class ListSubjectsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSubjectsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Subject]
    def __init__(self, items: _Optional[_Iterable[_Union[Subject, _Mapping]]] = ...) -> None: ...

class GetSubjectRequest(_message.Message):
    __slots__ = ("subject_id_or_key",)
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    def __init__(self, subject_id_or_key: _Optional[str] = ...) -> None: ...

class DeleteSubjectRequest(_message.Message):
    __slots__ = ("subject_id_or_key",)
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    def __init__(self, subject_id_or_key: _Optional[str] = ...) -> None: ...
