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

class RecurringPeriodInput(_message.Message):
    __slots__ = ("interval", "anchor")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    interval: str
    anchor: _timestamp_pb2.Timestamp
    def __init__(self, interval: _Optional[str] = ..., anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecurringPeriod(_message.Message):
    __slots__ = ("interval", "anchor", "interval_iso")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_ISO_FIELD_NUMBER: _ClassVar[int]
    interval: str
    anchor: _timestamp_pb2.Timestamp
    interval_iso: str
    def __init__(self, interval: _Optional[str] = ..., anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interval_iso: _Optional[str] = ...) -> None: ...

class Period(_message.Message):
    __slots__ = ("to",)
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    to: _timestamp_pb2.Timestamp
    def __init__(self, to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., **kwargs) -> None: ...

class ExpirationPeriod(_message.Message):
    __slots__ = ("duration", "count")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    duration: str
    count: int
    def __init__(self, duration: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class IssueAfterReset(_message.Message):
    __slots__ = ("amount", "priority")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    amount: float
    priority: int
    def __init__(self, amount: _Optional[float] = ..., priority: _Optional[int] = ...) -> None: ...

class GrantCreateInput(_message.Message):
    __slots__ = ("amount", "priority", "effective_at", "expiration", "max_rollover_amount", "min_rollover_amount", "metadata", "recurrence", "annotations")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_FIELD_NUMBER: _ClassVar[int]
    MAX_ROLLOVER_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_ROLLOVER_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    amount: float
    priority: int
    effective_at: _timestamp_pb2.Timestamp
    expiration: ExpirationPeriod
    max_rollover_amount: float
    min_rollover_amount: float
    metadata: _containers.ScalarMap[str, str]
    recurrence: RecurringPeriodInput
    annotations: _struct_pb2.Struct
    def __init__(self, amount: _Optional[float] = ..., priority: _Optional[int] = ..., effective_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expiration: _Optional[_Union[ExpirationPeriod, _Mapping]] = ..., max_rollover_amount: _Optional[float] = ..., min_rollover_amount: _Optional[float] = ..., metadata: _Optional[_Mapping[str, str]] = ..., recurrence: _Optional[_Union[RecurringPeriodInput, _Mapping]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class EntitlementCreateInput(_message.Message):
    __slots__ = ("type", "feature_key", "feature_id", "metadata", "usage_period", "measure_usage_from", "is_soft_limit", "is_unlimited", "issue_after_reset", "issue_after_reset_priority", "preserve_overage_at_reset", "issue", "grants", "config", "active_from", "active_to")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    USAGE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    MEASURE_USAGE_FROM_FIELD_NUMBER: _ClassVar[int]
    IS_SOFT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    IS_UNLIMITED_FIELD_NUMBER: _ClassVar[int]
    ISSUE_AFTER_RESET_FIELD_NUMBER: _ClassVar[int]
    ISSUE_AFTER_RESET_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_OVERAGE_AT_RESET_FIELD_NUMBER: _ClassVar[int]
    ISSUE_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    type: str
    feature_key: str
    feature_id: str
    metadata: _containers.ScalarMap[str, str]
    usage_period: RecurringPeriodInput
    measure_usage_from: str
    is_soft_limit: bool
    is_unlimited: bool
    issue_after_reset: float
    issue_after_reset_priority: int
    preserve_overage_at_reset: bool
    issue: IssueAfterReset
    grants: _containers.RepeatedCompositeFieldContainer[GrantCreateInput]
    config: str
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., feature_key: _Optional[str] = ..., feature_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., usage_period: _Optional[_Union[RecurringPeriodInput, _Mapping]] = ..., measure_usage_from: _Optional[str] = ..., is_soft_limit: _Optional[bool] = ..., is_unlimited: _Optional[bool] = ..., issue_after_reset: _Optional[float] = ..., issue_after_reset_priority: _Optional[int] = ..., preserve_overage_at_reset: _Optional[bool] = ..., issue: _Optional[_Union[IssueAfterReset, _Mapping]] = ..., grants: _Optional[_Iterable[_Union[GrantCreateInput, _Mapping]]] = ..., config: _Optional[str] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Entitlement(_message.Message):
    __slots__ = ("type", "id", "feature_key", "feature_id", "subject_key", "customer_id", "customer_key", "metadata", "annotations", "created_at", "updated_at", "deleted_at", "active_from", "active_to", "usage_period", "current_usage_period", "is_soft_limit", "is_unlimited", "issue_after_reset", "issue_after_reset_priority", "preserve_overage_at_reset", "issue", "last_reset", "measure_usage_from", "config")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    USAGE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    CURRENT_USAGE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    IS_SOFT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    IS_UNLIMITED_FIELD_NUMBER: _ClassVar[int]
    ISSUE_AFTER_RESET_FIELD_NUMBER: _ClassVar[int]
    ISSUE_AFTER_RESET_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_OVERAGE_AT_RESET_FIELD_NUMBER: _ClassVar[int]
    ISSUE_FIELD_NUMBER: _ClassVar[int]
    LAST_RESET_FIELD_NUMBER: _ClassVar[int]
    MEASURE_USAGE_FROM_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    type: str
    id: str
    feature_key: str
    feature_id: str
    subject_key: str
    customer_id: str
    customer_key: str
    metadata: _containers.ScalarMap[str, str]
    annotations: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    usage_period: RecurringPeriod
    current_usage_period: Period
    is_soft_limit: bool
    is_unlimited: bool
    issue_after_reset: float
    issue_after_reset_priority: int
    preserve_overage_at_reset: bool
    issue: IssueAfterReset
    last_reset: _timestamp_pb2.Timestamp
    measure_usage_from: _timestamp_pb2.Timestamp
    config: str
    def __init__(self, type: _Optional[str] = ..., id: _Optional[str] = ..., feature_key: _Optional[str] = ..., feature_id: _Optional[str] = ..., subject_key: _Optional[str] = ..., customer_id: _Optional[str] = ..., customer_key: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., usage_period: _Optional[_Union[RecurringPeriod, _Mapping]] = ..., current_usage_period: _Optional[_Union[Period, _Mapping]] = ..., is_soft_limit: _Optional[bool] = ..., is_unlimited: _Optional[bool] = ..., issue_after_reset: _Optional[float] = ..., issue_after_reset_priority: _Optional[int] = ..., preserve_overage_at_reset: _Optional[bool] = ..., issue: _Optional[_Union[IssueAfterReset, _Mapping]] = ..., last_reset: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., measure_usage_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., config: _Optional[str] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("id", "entitlement_id", "amount", "priority", "effective_at", "expiration", "expires_at", "max_rollover_amount", "min_rollover_amount", "metadata", "annotations", "recurrence", "next_recurrence", "voided_at", "created_at", "updated_at", "deleted_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_ROLLOVER_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_ROLLOVER_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    VOIDED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    entitlement_id: str
    amount: float
    priority: int
    effective_at: _timestamp_pb2.Timestamp
    expiration: ExpirationPeriod
    expires_at: _timestamp_pb2.Timestamp
    max_rollover_amount: float
    min_rollover_amount: float
    metadata: _containers.ScalarMap[str, str]
    annotations: _struct_pb2.Struct
    recurrence: RecurringPeriod
    next_recurrence: _timestamp_pb2.Timestamp
    voided_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., entitlement_id: _Optional[str] = ..., amount: _Optional[float] = ..., priority: _Optional[int] = ..., effective_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expiration: _Optional[_Union[ExpirationPeriod, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_rollover_amount: _Optional[float] = ..., min_rollover_amount: _Optional[float] = ..., metadata: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., recurrence: _Optional[_Union[RecurringPeriod, _Mapping]] = ..., next_recurrence: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., voided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EntitlementValue(_message.Message):
    __slots__ = ("has_access", "balance", "usage", "overage", "total_available_grant_amount", "config", "grant_balances")
    HAS_ACCESS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AVAILABLE_GRANT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    GRANT_BALANCES_FIELD_NUMBER: _ClassVar[int]
    has_access: bool
    balance: float
    usage: float
    overage: float
    total_available_grant_amount: float
    config: str
    grant_balances: _struct_pb2.Struct
    def __init__(self, has_access: _Optional[bool] = ..., balance: _Optional[float] = ..., usage: _Optional[float] = ..., overage: _Optional[float] = ..., total_available_grant_amount: _Optional[float] = ..., config: _Optional[str] = ..., grant_balances: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class BalanceHistoryWindow(_message.Message):
    __slots__ = ("period", "usage", "balance_at_start")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AT_START_FIELD_NUMBER: _ClassVar[int]
    period: Period
    usage: float
    balance_at_start: float
    def __init__(self, period: _Optional[_Union[Period, _Mapping]] = ..., usage: _Optional[float] = ..., balance_at_start: _Optional[float] = ...) -> None: ...

class GrantUsageRecord(_message.Message):
    __slots__ = ("grant_id", "usage")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    usage: float
    def __init__(self, grant_id: _Optional[str] = ..., usage: _Optional[float] = ...) -> None: ...

class GrantBurnDownHistorySegment(_message.Message):
    __slots__ = ("period", "usage", "overage", "balance_at_start", "grant_balances_at_start", "balance_at_end", "grant_balances_at_end", "grant_usages")
    class GrantBalancesAtStartEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class GrantBalancesAtEndEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AT_START_FIELD_NUMBER: _ClassVar[int]
    GRANT_BALANCES_AT_START_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AT_END_FIELD_NUMBER: _ClassVar[int]
    GRANT_BALANCES_AT_END_FIELD_NUMBER: _ClassVar[int]
    GRANT_USAGES_FIELD_NUMBER: _ClassVar[int]
    period: Period
    usage: float
    overage: float
    balance_at_start: float
    grant_balances_at_start: _containers.ScalarMap[str, float]
    balance_at_end: float
    grant_balances_at_end: _containers.ScalarMap[str, float]
    grant_usages: _containers.RepeatedCompositeFieldContainer[GrantUsageRecord]
    def __init__(self, period: _Optional[_Union[Period, _Mapping]] = ..., usage: _Optional[float] = ..., overage: _Optional[float] = ..., balance_at_start: _Optional[float] = ..., grant_balances_at_start: _Optional[_Mapping[str, float]] = ..., balance_at_end: _Optional[float] = ..., grant_balances_at_end: _Optional[_Mapping[str, float]] = ..., grant_usages: _Optional[_Iterable[_Union[GrantUsageRecord, _Mapping]]] = ...) -> None: ...

class EntitlementHistory(_message.Message):
    __slots__ = ("windowed_history", "burndown_history")
    WINDOWED_HISTORY_FIELD_NUMBER: _ClassVar[int]
    BURNDOWN_HISTORY_FIELD_NUMBER: _ClassVar[int]
    windowed_history: _containers.RepeatedCompositeFieldContainer[BalanceHistoryWindow]
    burndown_history: _containers.RepeatedCompositeFieldContainer[GrantBurnDownHistorySegment]
    def __init__(self, windowed_history: _Optional[_Iterable[_Union[BalanceHistoryWindow, _Mapping]]] = ..., burndown_history: _Optional[_Iterable[_Union[GrantBurnDownHistorySegment, _Mapping]]] = ...) -> None: ...

class CustomerAccessEntry(_message.Message):
    __slots__ = ("has_access", "balance", "usage", "overage", "total_available_grant_amount", "config", "id")
    HAS_ACCESS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    OVERAGE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_AVAILABLE_GRANT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    has_access: bool
    balance: float
    usage: float
    overage: float
    total_available_grant_amount: float
    config: str
    id: str
    def __init__(self, has_access: _Optional[bool] = ..., balance: _Optional[float] = ..., usage: _Optional[float] = ..., overage: _Optional[float] = ..., total_available_grant_amount: _Optional[float] = ..., config: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class CustomerAccess(_message.Message):
    __slots__ = ("entitlements",)
    class EntitlementsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CustomerAccessEntry
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CustomerAccessEntry, _Mapping]] = ...) -> None: ...
    ENTITLEMENTS_FIELD_NUMBER: _ClassVar[int]
    entitlements: _containers.MessageMap[str, CustomerAccessEntry]
    def __init__(self, entitlements: _Optional[_Mapping[str, CustomerAccessEntry]] = ...) -> None: ...

class ListEntitlementsResponse(_message.Message):
    __slots__ = ("items", "total_count", "page", "page_size")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Entitlement]
    total_count: int
    page: int
    page_size: int
    def __init__(self, items: _Optional[_Iterable[_Union[Entitlement, _Mapping]]] = ..., total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListGrantsResponse(_message.Message):
    __slots__ = ("items", "total_count", "page", "page_size")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Grant]
    total_count: int
    page: int
    page_size: int
    def __init__(self, items: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class CreateCustomerEntitlementRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "entitlement")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    entitlement: EntitlementCreateInput
    def __init__(self, customer_id_or_key: _Optional[str] = ..., entitlement: _Optional[_Union[EntitlementCreateInput, _Mapping]] = ...) -> None: ...

class ListCustomerEntitlementsRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "include_deleted", "page", "page_size", "order", "order_by")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    include_deleted: bool
    page: int
    page_size: int
    order: str
    order_by: str
    def __init__(self, customer_id_or_key: _Optional[str] = ..., include_deleted: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class CustomerEntitlementRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "entitlement_id_or_feature_key")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    entitlement_id_or_feature_key: str
    def __init__(self, customer_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ...) -> None: ...

class OverrideCustomerEntitlementRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "entitlement_id_or_feature_key", "entitlement")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    entitlement_id_or_feature_key: str
    entitlement: EntitlementCreateInput
    def __init__(self, customer_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., entitlement: _Optional[_Union[EntitlementCreateInput, _Mapping]] = ...) -> None: ...

class ListCustomerEntitlementGrantsRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "entitlement_id_or_feature_key", "include_deleted", "page", "page_size", "offset", "limit", "order", "order_by")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    entitlement_id_or_feature_key: str
    include_deleted: bool
    page: int
    page_size: int
    offset: int
    limit: int
    order: str
    order_by: str
    def __init__(self, customer_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., include_deleted: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class CreateCustomerEntitlementGrantRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "entitlement_id_or_feature_key", "grant")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    entitlement_id_or_feature_key: str
    grant: GrantCreateInput
    def __init__(self, customer_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., grant: _Optional[_Union[GrantCreateInput, _Mapping]] = ...) -> None: ...

class GetCustomerEntitlementValueRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "entitlement_id_or_feature_key", "time")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    entitlement_id_or_feature_key: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, customer_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCustomerEntitlementHistoryRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "entitlement_id_or_feature_key", "to", "window_size", "window_time_zone")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    entitlement_id_or_feature_key: str
    to: _timestamp_pb2.Timestamp
    window_size: str
    window_time_zone: str
    def __init__(self, customer_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_size: _Optional[str] = ..., window_time_zone: _Optional[str] = ..., **kwargs) -> None: ...

class ResetCustomerEntitlementUsageRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "entitlement_id_or_feature_key", "effective_at", "retain_anchor", "preserve_overage")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    RETAIN_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_OVERAGE_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    entitlement_id_or_feature_key: str
    effective_at: _timestamp_pb2.Timestamp
    retain_anchor: bool
    preserve_overage: bool
    def __init__(self, customer_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., effective_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retain_anchor: _Optional[bool] = ..., preserve_overage: _Optional[bool] = ...) -> None: ...

class GetCustomerAccessRequest(_message.Message):
    __slots__ = ("customer_id_or_key",)
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    def __init__(self, customer_id_or_key: _Optional[str] = ...) -> None: ...

class ListEntitlementsRequest(_message.Message):
    __slots__ = ("feature", "subject", "customer_keys", "customer_ids", "entitlement_type", "exclude_inactive", "page", "page_size", "offset", "limit", "order", "order_by")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_KEYS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_IDS_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_INACTIVE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    feature: _containers.RepeatedScalarFieldContainer[str]
    subject: _containers.RepeatedScalarFieldContainer[str]
    customer_keys: _containers.RepeatedScalarFieldContainer[str]
    customer_ids: _containers.RepeatedScalarFieldContainer[str]
    entitlement_type: _containers.RepeatedScalarFieldContainer[str]
    exclude_inactive: bool
    page: int
    page_size: int
    offset: int
    limit: int
    order: str
    order_by: str
    def __init__(self, feature: _Optional[_Iterable[str]] = ..., subject: _Optional[_Iterable[str]] = ..., customer_keys: _Optional[_Iterable[str]] = ..., customer_ids: _Optional[_Iterable[str]] = ..., entitlement_type: _Optional[_Iterable[str]] = ..., exclude_inactive: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class GetEntitlementByIdRequest(_message.Message):
    __slots__ = ("entitlement_id",)
    ENTITLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    entitlement_id: str
    def __init__(self, entitlement_id: _Optional[str] = ...) -> None: ...

class ListGrantsRequest(_message.Message):
    __slots__ = ("feature", "subject", "customer", "include_deleted", "page", "page_size", "offset", "limit", "order", "order_by")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    feature: _containers.RepeatedScalarFieldContainer[str]
    subject: _containers.RepeatedScalarFieldContainer[str]
    customer: _containers.RepeatedScalarFieldContainer[str]
    include_deleted: bool
    page: int
    page_size: int
    offset: int
    limit: int
    order: str
    order_by: str
    def __init__(self, feature: _Optional[_Iterable[str]] = ..., subject: _Optional[_Iterable[str]] = ..., customer: _Optional[_Iterable[str]] = ..., include_deleted: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class CreateSubjectEntitlementRequest(_message.Message):
    __slots__ = ("subject_id_or_key", "entitlement")
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    entitlement: EntitlementCreateInput
    def __init__(self, subject_id_or_key: _Optional[str] = ..., entitlement: _Optional[_Union[EntitlementCreateInput, _Mapping]] = ...) -> None: ...

class ListSubjectEntitlementsRequest(_message.Message):
    __slots__ = ("subject_id_or_key", "include_deleted")
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    include_deleted: bool
    def __init__(self, subject_id_or_key: _Optional[str] = ..., include_deleted: _Optional[bool] = ...) -> None: ...

class SubjectEntitlementRequest(_message.Message):
    __slots__ = ("subject_id_or_key", "entitlement_id")
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    entitlement_id: str
    def __init__(self, subject_id_or_key: _Optional[str] = ..., entitlement_id: _Optional[str] = ...) -> None: ...

class OverrideSubjectEntitlementRequest(_message.Message):
    __slots__ = ("subject_id_or_key", "entitlement_id_or_feature_key", "entitlement")
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    entitlement_id_or_feature_key: str
    entitlement: EntitlementCreateInput
    def __init__(self, subject_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., entitlement: _Optional[_Union[EntitlementCreateInput, _Mapping]] = ...) -> None: ...

class ListSubjectEntitlementGrantsRequest(_message.Message):
    __slots__ = ("subject_id_or_key", "entitlement_id_or_feature_key", "include_deleted", "order_by")
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    entitlement_id_or_feature_key: str
    include_deleted: bool
    order_by: str
    def __init__(self, subject_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., include_deleted: _Optional[bool] = ..., order_by: _Optional[str] = ...) -> None: ...

class CreateSubjectEntitlementGrantRequest(_message.Message):
    __slots__ = ("subject_id_or_key", "entitlement_id_or_feature_key", "grant")
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    entitlement_id_or_feature_key: str
    grant: GrantCreateInput
    def __init__(self, subject_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., grant: _Optional[_Union[GrantCreateInput, _Mapping]] = ...) -> None: ...

class GetSubjectEntitlementValueRequest(_message.Message):
    __slots__ = ("subject_id_or_key", "entitlement_id_or_feature_key", "time")
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_OR_FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    entitlement_id_or_feature_key: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, subject_id_or_key: _Optional[str] = ..., entitlement_id_or_feature_key: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSubjectEntitlementHistoryRequest(_message.Message):
    __slots__ = ("subject_id_or_key", "entitlement_id", "to", "window_size", "window_time_zone")
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    entitlement_id: str
    to: _timestamp_pb2.Timestamp
    window_size: str
    window_time_zone: str
    def __init__(self, subject_id_or_key: _Optional[str] = ..., entitlement_id: _Optional[str] = ..., to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_size: _Optional[str] = ..., window_time_zone: _Optional[str] = ..., **kwargs) -> None: ...

class ResetSubjectEntitlementUsageRequest(_message.Message):
    __slots__ = ("subject_id_or_key", "entitlement_id", "effective_at", "retain_anchor", "preserve_overage")
    SUBJECT_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    RETAIN_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_OVERAGE_FIELD_NUMBER: _ClassVar[int]
    subject_id_or_key: str
    entitlement_id: str
    effective_at: _timestamp_pb2.Timestamp
    retain_anchor: bool
    preserve_overage: bool
    def __init__(self, subject_id_or_key: _Optional[str] = ..., entitlement_id: _Optional[str] = ..., effective_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retain_anchor: _Optional[bool] = ..., preserve_overage: _Optional[bool] = ...) -> None: ...

class VoidGrantRequest(_message.Message):
    __slots__ = ("grant_id", "at")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, grant_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
