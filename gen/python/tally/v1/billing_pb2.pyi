import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tally.v1 import apps_pb2 as _apps_pb2
from tally.v1 import catalog_pb2 as _catalog_pb2
from tally.v1 import customers_pb2 as _customers_pb2
from tally.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BillingParty(_message.Message):
    __slots__ = ("id", "key", "name", "tax_id", "addresses")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    name: str
    tax_id: BillingPartyTaxIdentity
    addresses: _containers.RepeatedCompositeFieldContainer[_customers_pb2.Address]
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., tax_id: _Optional[_Union[BillingPartyTaxIdentity, _Mapping]] = ..., addresses: _Optional[_Iterable[_Union[_customers_pb2.Address, _Mapping]]] = ...) -> None: ...

class BillingPartyTaxIdentity(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class BillingRecurringPeriod(_message.Message):
    __slots__ = ("interval", "anchor")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    interval: str
    anchor: _timestamp_pb2.Timestamp
    def __init__(self, interval: _Optional[str] = ..., anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BillingWorkflowCollectionAlignment(_message.Message):
    __slots__ = ("type", "recurring_period")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RECURRING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    type: str
    recurring_period: BillingRecurringPeriod
    def __init__(self, type: _Optional[str] = ..., recurring_period: _Optional[_Union[BillingRecurringPeriod, _Mapping]] = ...) -> None: ...

class BillingWorkflowCollectionSettings(_message.Message):
    __slots__ = ("alignment", "interval")
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    alignment: BillingWorkflowCollectionAlignment
    interval: str
    def __init__(self, alignment: _Optional[_Union[BillingWorkflowCollectionAlignment, _Mapping]] = ..., interval: _Optional[str] = ...) -> None: ...

class BillingWorkflowInvoicingSettings(_message.Message):
    __slots__ = ("auto_advance", "draft_period", "due_after", "progressive_billing", "subscription_end_proration_mode", "default_tax_config")
    AUTO_ADVANCE_FIELD_NUMBER: _ClassVar[int]
    DRAFT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    DUE_AFTER_FIELD_NUMBER: _ClassVar[int]
    PROGRESSIVE_BILLING_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_END_PRORATION_MODE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TAX_CONFIG_FIELD_NUMBER: _ClassVar[int]
    auto_advance: bool
    draft_period: str
    due_after: str
    progressive_billing: bool
    subscription_end_proration_mode: str
    default_tax_config: _catalog_pb2.TaxConfig
    def __init__(self, auto_advance: _Optional[bool] = ..., draft_period: _Optional[str] = ..., due_after: _Optional[str] = ..., progressive_billing: _Optional[bool] = ..., subscription_end_proration_mode: _Optional[str] = ..., default_tax_config: _Optional[_Union[_catalog_pb2.TaxConfig, _Mapping]] = ...) -> None: ...

class BillingWorkflowPaymentSettings(_message.Message):
    __slots__ = ("collection_method",)
    COLLECTION_METHOD_FIELD_NUMBER: _ClassVar[int]
    collection_method: str
    def __init__(self, collection_method: _Optional[str] = ...) -> None: ...

class BillingWorkflowTaxSettings(_message.Message):
    __slots__ = ("enabled", "enforced")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ENFORCED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    enforced: bool
    def __init__(self, enabled: _Optional[bool] = ..., enforced: _Optional[bool] = ...) -> None: ...

class BillingWorkflow(_message.Message):
    __slots__ = ("collection", "invoicing", "payment", "tax")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    INVOICING_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    TAX_FIELD_NUMBER: _ClassVar[int]
    collection: BillingWorkflowCollectionSettings
    invoicing: BillingWorkflowInvoicingSettings
    payment: BillingWorkflowPaymentSettings
    tax: BillingWorkflowTaxSettings
    def __init__(self, collection: _Optional[_Union[BillingWorkflowCollectionSettings, _Mapping]] = ..., invoicing: _Optional[_Union[BillingWorkflowInvoicingSettings, _Mapping]] = ..., payment: _Optional[_Union[BillingWorkflowPaymentSettings, _Mapping]] = ..., tax: _Optional[_Union[BillingWorkflowTaxSettings, _Mapping]] = ...) -> None: ...

class BillingProfileApps(_message.Message):
    __slots__ = ("tax", "invoicing", "payment")
    TAX_FIELD_NUMBER: _ClassVar[int]
    INVOICING_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    tax: _apps_pb2.App
    invoicing: _apps_pb2.App
    payment: _apps_pb2.App
    def __init__(self, tax: _Optional[_Union[_apps_pb2.App, _Mapping]] = ..., invoicing: _Optional[_Union[_apps_pb2.App, _Mapping]] = ..., payment: _Optional[_Union[_apps_pb2.App, _Mapping]] = ...) -> None: ...

class BillingProfile(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "created_at", "updated_at", "deleted_at", "supplier", "workflow", "apps", "default")
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
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    supplier: BillingParty
    workflow: BillingWorkflow
    apps: BillingProfileApps
    default: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., supplier: _Optional[_Union[BillingParty, _Mapping]] = ..., workflow: _Optional[_Union[BillingWorkflow, _Mapping]] = ..., apps: _Optional[_Union[BillingProfileApps, _Mapping]] = ..., default: _Optional[bool] = ...) -> None: ...

class BillingProfileAppsCreate(_message.Message):
    __slots__ = ("tax", "invoicing", "payment")
    TAX_FIELD_NUMBER: _ClassVar[int]
    INVOICING_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    tax: str
    invoicing: str
    payment: str
    def __init__(self, tax: _Optional[str] = ..., invoicing: _Optional[str] = ..., payment: _Optional[str] = ...) -> None: ...

class ListBillingProfilesRequest(_message.Message):
    __slots__ = ("include_archived", "expand", "page", "page_size", "order", "order_by")
    INCLUDE_ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    EXPAND_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    include_archived: bool
    expand: _containers.RepeatedScalarFieldContainer[str]
    page: int
    page_size: int
    order: str
    order_by: str
    def __init__(self, include_archived: _Optional[bool] = ..., expand: _Optional[_Iterable[str]] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListBillingProfilesResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[BillingProfile]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[BillingProfile, _Mapping]]] = ...) -> None: ...

class CreateBillingProfileRequest(_message.Message):
    __slots__ = ("name", "description", "metadata", "supplier", "default", "workflow", "apps")
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
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    supplier: BillingParty
    default: bool
    workflow: BillingWorkflow
    apps: BillingProfileAppsCreate
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., supplier: _Optional[_Union[BillingParty, _Mapping]] = ..., default: _Optional[bool] = ..., workflow: _Optional[_Union[BillingWorkflow, _Mapping]] = ..., apps: _Optional[_Union[BillingProfileAppsCreate, _Mapping]] = ...) -> None: ...

class GetBillingProfileRequest(_message.Message):
    __slots__ = ("profile_id", "expand")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPAND_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    expand: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, profile_id: _Optional[str] = ..., expand: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateBillingProfileRequest(_message.Message):
    __slots__ = ("profile_id", "name", "description", "metadata", "supplier", "default", "workflow")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    supplier: BillingParty
    default: bool
    workflow: BillingWorkflow
    def __init__(self, profile_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., supplier: _Optional[_Union[BillingParty, _Mapping]] = ..., default: _Optional[bool] = ..., workflow: _Optional[_Union[BillingWorkflow, _Mapping]] = ...) -> None: ...

class DeleteBillingProfileRequest(_message.Message):
    __slots__ = ("profile_id",)
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    def __init__(self, profile_id: _Optional[str] = ...) -> None: ...

class BillingProfileCustomerOverride(_message.Message):
    __slots__ = ("created_at", "updated_at", "billing_profile_id", "customer_id", "workflow")
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    BILLING_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    billing_profile_id: str
    customer_id: str
    workflow: BillingWorkflow
    def __init__(self, created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., billing_profile_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., workflow: _Optional[_Union[BillingWorkflow, _Mapping]] = ...) -> None: ...

class BillingCustomerProfile(_message.Message):
    __slots__ = ("supplier", "workflow", "apps")
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    supplier: BillingParty
    workflow: BillingWorkflow
    apps: BillingProfileApps
    def __init__(self, supplier: _Optional[_Union[BillingParty, _Mapping]] = ..., workflow: _Optional[_Union[BillingWorkflow, _Mapping]] = ..., apps: _Optional[_Union[BillingProfileApps, _Mapping]] = ...) -> None: ...

class BillingProfileCustomerOverrideWithDetails(_message.Message):
    __slots__ = ("customer_override", "base_billing_profile_id", "customer_profile", "customer")
    CUSTOMER_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    BASE_BILLING_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_PROFILE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer_override: BillingProfileCustomerOverride
    base_billing_profile_id: str
    customer_profile: BillingCustomerProfile
    customer: _customers_pb2.Customer
    def __init__(self, customer_override: _Optional[_Union[BillingProfileCustomerOverride, _Mapping]] = ..., base_billing_profile_id: _Optional[str] = ..., customer_profile: _Optional[_Union[BillingCustomerProfile, _Mapping]] = ..., customer: _Optional[_Union[_customers_pb2.Customer, _Mapping]] = ...) -> None: ...

class ListBillingProfileCustomerOverridesRequest(_message.Message):
    __slots__ = ("billing_profile", "customers_without_pinned_profile", "include_all_customers", "customer_id", "customer_name", "customer_key", "customer_primary_email", "expand", "order", "order_by", "page", "page_size")
    BILLING_PROFILE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_WITHOUT_PINNED_PROFILE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ALL_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_NAME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_KEY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_PRIMARY_EMAIL_FIELD_NUMBER: _ClassVar[int]
    EXPAND_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    billing_profile: _containers.RepeatedScalarFieldContainer[str]
    customers_without_pinned_profile: bool
    include_all_customers: bool
    customer_id: _containers.RepeatedScalarFieldContainer[str]
    customer_name: str
    customer_key: str
    customer_primary_email: str
    expand: _containers.RepeatedScalarFieldContainer[str]
    order: str
    order_by: str
    page: int
    page_size: int
    def __init__(self, billing_profile: _Optional[_Iterable[str]] = ..., customers_without_pinned_profile: _Optional[bool] = ..., include_all_customers: _Optional[bool] = ..., customer_id: _Optional[_Iterable[str]] = ..., customer_name: _Optional[str] = ..., customer_key: _Optional[str] = ..., customer_primary_email: _Optional[str] = ..., expand: _Optional[_Iterable[str]] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListBillingProfileCustomerOverridesResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[BillingProfileCustomerOverrideWithDetails]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[BillingProfileCustomerOverrideWithDetails, _Mapping]]] = ...) -> None: ...

class UpsertBillingProfileCustomerOverrideRequest(_message.Message):
    __slots__ = ("customer_id", "billing_profile_id", "workflow")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    BILLING_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    billing_profile_id: str
    workflow: BillingWorkflow
    def __init__(self, customer_id: _Optional[str] = ..., billing_profile_id: _Optional[str] = ..., workflow: _Optional[_Union[BillingWorkflow, _Mapping]] = ...) -> None: ...

class GetBillingProfileCustomerOverrideRequest(_message.Message):
    __slots__ = ("customer_id", "expand")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPAND_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    expand: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_id: _Optional[str] = ..., expand: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteBillingProfileCustomerOverrideRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...
