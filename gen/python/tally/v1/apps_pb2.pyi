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

class AppCapability(_message.Message):
    __slots__ = ("type", "key", "name", "description")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    type: str
    key: str
    name: str
    description: str
    def __init__(self, type: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class MarketplaceListing(_message.Message):
    __slots__ = ("type", "name", "description", "capabilities", "install_methods")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    INSTALL_METHODS_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    description: str
    capabilities: _containers.RepeatedCompositeFieldContainer[AppCapability]
    install_methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., capabilities: _Optional[_Iterable[_Union[AppCapability, _Mapping]]] = ..., install_methods: _Optional[_Iterable[str]] = ...) -> None: ...

class App(_message.Message):
    __slots__ = ("id", "type", "name", "metadata", "created_at", "updated_at", "deleted_at", "listing", "status", "enable_draft_sync_hook", "enable_issuing_sync_hook", "stripe_account_id", "livemode", "masked_api_key", "description")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    LISTING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_DRAFT_SYNC_HOOK_FIELD_NUMBER: _ClassVar[int]
    ENABLE_ISSUING_SYNC_HOOK_FIELD_NUMBER: _ClassVar[int]
    STRIPE_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LIVEMODE_FIELD_NUMBER: _ClassVar[int]
    MASKED_API_KEY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    name: str
    metadata: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    listing: MarketplaceListing
    status: str
    enable_draft_sync_hook: bool
    enable_issuing_sync_hook: bool
    stripe_account_id: str
    livemode: bool
    masked_api_key: str
    description: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., name: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., listing: _Optional[_Union[MarketplaceListing, _Mapping]] = ..., status: _Optional[str] = ..., enable_draft_sync_hook: _Optional[bool] = ..., enable_issuing_sync_hook: _Optional[bool] = ..., stripe_account_id: _Optional[str] = ..., livemode: _Optional[bool] = ..., masked_api_key: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ListAppsRequest(_message.Message):
    __slots__ = ("page", "page_size")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListAppsResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[App]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[App, _Mapping]]] = ...) -> None: ...

class GetAppRequest(_message.Message):
    __slots__ = ("app_id",)
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    def __init__(self, app_id: _Optional[str] = ...) -> None: ...

class UpdateAppRequest(_message.Message):
    __slots__ = ("app_id", "type", "name", "metadata", "enable_draft_sync_hook", "enable_issuing_sync_hook", "secret_api_key", "description")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ENABLE_DRAFT_SYNC_HOOK_FIELD_NUMBER: _ClassVar[int]
    ENABLE_ISSUING_SYNC_HOOK_FIELD_NUMBER: _ClassVar[int]
    SECRET_API_KEY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    type: str
    name: str
    metadata: _containers.ScalarMap[str, str]
    enable_draft_sync_hook: bool
    enable_issuing_sync_hook: bool
    secret_api_key: str
    description: str
    def __init__(self, app_id: _Optional[str] = ..., type: _Optional[str] = ..., name: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., enable_draft_sync_hook: _Optional[bool] = ..., enable_issuing_sync_hook: _Optional[bool] = ..., secret_api_key: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class UninstallAppRequest(_message.Message):
    __slots__ = ("app_id",)
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    def __init__(self, app_id: _Optional[str] = ...) -> None: ...

class ListMarketplaceListingsRequest(_message.Message):
    __slots__ = ("page", "page_size")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListMarketplaceListingsResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[MarketplaceListing]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[MarketplaceListing, _Mapping]]] = ...) -> None: ...

class GetMarketplaceListingRequest(_message.Message):
    __slots__ = ("type",)
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: str
    def __init__(self, type: _Optional[str] = ...) -> None: ...

class InstallMarketplaceListingRequest(_message.Message):
    __slots__ = ("type", "name", "create_billing_profile")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_BILLING_PROFILE_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    create_billing_profile: bool
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., create_billing_profile: _Optional[bool] = ...) -> None: ...

class InstallMarketplaceListingWithApiKeyRequest(_message.Message):
    __slots__ = ("type", "name", "api_key", "create_billing_profile")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATE_BILLING_PROFILE_FIELD_NUMBER: _ClassVar[int]
    type: str
    name: str
    api_key: str
    create_billing_profile: bool
    def __init__(self, type: _Optional[str] = ..., name: _Optional[str] = ..., api_key: _Optional[str] = ..., create_billing_profile: _Optional[bool] = ...) -> None: ...

class InstallMarketplaceListingResponse(_message.Message):
    __slots__ = ("app", "default_for_capability_types")
    APP_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FOR_CAPABILITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    app: App
    default_for_capability_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, app: _Optional[_Union[App, _Mapping]] = ..., default_for_capability_types: _Optional[_Iterable[str]] = ...) -> None: ...

class CustomerAppData(_message.Message):
    __slots__ = ("id", "type", "app", "metadata", "stripe_customer_id", "stripe_default_payment_method_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STRIPE_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    STRIPE_DEFAULT_PAYMENT_METHOD_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    app: App
    metadata: _containers.ScalarMap[str, str]
    stripe_customer_id: str
    stripe_default_payment_method_id: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., app: _Optional[_Union[App, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., stripe_customer_id: _Optional[str] = ..., stripe_default_payment_method_id: _Optional[str] = ...) -> None: ...

class ListCustomerAppDataRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "page", "page_size", "type")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    page: int
    page_size: int
    type: str
    def __init__(self, customer_id_or_key: _Optional[str] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., type: _Optional[str] = ...) -> None: ...

class ListCustomerAppDataResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[CustomerAppData]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[CustomerAppData, _Mapping]]] = ...) -> None: ...

class UpsertCustomerAppDataRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "items")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    items: _containers.RepeatedCompositeFieldContainer[CustomerAppData]
    def __init__(self, customer_id_or_key: _Optional[str] = ..., items: _Optional[_Iterable[_Union[CustomerAppData, _Mapping]]] = ...) -> None: ...

class UpsertCustomerAppDataResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CustomerAppData]
    def __init__(self, items: _Optional[_Iterable[_Union[CustomerAppData, _Mapping]]] = ...) -> None: ...

class DeleteCustomerAppDataRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "app_id")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    app_id: str
    def __init__(self, customer_id_or_key: _Optional[str] = ..., app_id: _Optional[str] = ...) -> None: ...
