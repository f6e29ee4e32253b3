from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from tally.v1 import billing_pb2 as _billing_pb2
from tally.v1 import catalog_pb2 as _catalog_pb2
from tally.v1 import customers_pb2 as _customers_pb2
from tally.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvoicePeriod(_message.Message):
    __slots__ = ("to",)
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    to: str
    def __init__(self, to: _Optional[str] = ..., **kwargs) -> None: ...

class InvoiceTotals(_message.Message):
    __slots__ = ("amount", "charges_total", "discounts_total", "credits_total", "taxes_inclusive_total", "taxes_exclusive_total", "taxes_total", "total")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CHARGES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREDITS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAXES_INCLUSIVE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAXES_EXCLUSIVE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAXES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    amount: str
    charges_total: str
    discounts_total: str
    credits_total: str
    taxes_inclusive_total: str
    taxes_exclusive_total: str
    taxes_total: str
    total: str
    def __init__(self, amount: _Optional[str] = ..., charges_total: _Optional[str] = ..., discounts_total: _Optional[str] = ..., credits_total: _Optional[str] = ..., taxes_inclusive_total: _Optional[str] = ..., taxes_exclusive_total: _Optional[str] = ..., taxes_total: _Optional[str] = ..., total: _Optional[str] = ...) -> None: ...

class InvoiceAvailableActionDetails(_message.Message):
    __slots__ = ("resulting_state",)
    RESULTING_STATE_FIELD_NUMBER: _ClassVar[int]
    resulting_state: str
    def __init__(self, resulting_state: _Optional[str] = ...) -> None: ...

class InvoiceAvailableActionInvoiceDetails(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InvoiceAvailableActions(_message.Message):
    __slots__ = ("advance", "approve", "delete", "retry", "snapshot_quantities", "void", "invoice")
    ADVANCE_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_QUANTITIES_FIELD_NUMBER: _ClassVar[int]
    VOID_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    advance: InvoiceAvailableActionDetails
    approve: InvoiceAvailableActionDetails
    delete: InvoiceAvailableActionDetails
    retry: InvoiceAvailableActionDetails
    snapshot_quantities: InvoiceAvailableActionDetails
    void: InvoiceAvailableActionDetails
    invoice: InvoiceAvailableActionInvoiceDetails
    def __init__(self, advance: _Optional[_Union[InvoiceAvailableActionDetails, _Mapping]] = ..., approve: _Optional[_Union[InvoiceAvailableActionDetails, _Mapping]] = ..., delete: _Optional[_Union[InvoiceAvailableActionDetails, _Mapping]] = ..., retry: _Optional[_Union[InvoiceAvailableActionDetails, _Mapping]] = ..., snapshot_quantities: _Optional[_Union[InvoiceAvailableActionDetails, _Mapping]] = ..., void: _Optional[_Union[InvoiceAvailableActionDetails, _Mapping]] = ..., invoice: _Optional[_Union[InvoiceAvailableActionInvoiceDetails, _Mapping]] = ...) -> None: ...

class InvoiceStatusDetails(_message.Message):
    __slots__ = ("immutable", "failed", "extended_status", "available_actions")
    IMMUTABLE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_STATUS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    immutable: bool
    failed: bool
    extended_status: str
    available_actions: InvoiceAvailableActions
    def __init__(self, immutable: _Optional[bool] = ..., failed: _Optional[bool] = ..., extended_status: _Optional[str] = ..., available_actions: _Optional[_Union[InvoiceAvailableActions, _Mapping]] = ...) -> None: ...

class InvoiceUsageAttribution(_message.Message):
    __slots__ = ("subject_keys",)
    SUBJECT_KEYS_FIELD_NUMBER: _ClassVar[int]
    subject_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subject_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class InvoiceTaxIdentity(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class InvoiceCustomer(_message.Message):
    __slots__ = ("id", "key", "name", "usage_attribution", "addresses", "tax_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USAGE_ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    name: str
    usage_attribution: InvoiceUsageAttribution
    addresses: _containers.RepeatedCompositeFieldContainer[_customers_pb2.Address]
    tax_id: InvoiceTaxIdentity
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., usage_attribution: _Optional[_Union[InvoiceUsageAttribution, _Mapping]] = ..., addresses: _Optional[_Iterable[_Union[_customers_pb2.Address, _Mapping]]] = ..., tax_id: _Optional[_Union[InvoiceTaxIdentity, _Mapping]] = ...) -> None: ...

class InvoiceSupplier(_message.Message):
    __slots__ = ("id", "key", "name", "tax_id", "addresses")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAX_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    name: str
    tax_id: InvoiceTaxIdentity
    addresses: _containers.RepeatedCompositeFieldContainer[_customers_pb2.Address]
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., tax_id: _Optional[_Union[InvoiceTaxIdentity, _Mapping]] = ..., addresses: _Optional[_Iterable[_Union[_customers_pb2.Address, _Mapping]]] = ...) -> None: ...

class InvoiceWorkflowSettings(_message.Message):
    __slots__ = ("apps", "source_billing_profile_id", "workflow")
    APPS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BILLING_PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    apps: _billing_pb2.BillingProfileApps
    source_billing_profile_id: str
    workflow: _billing_pb2.BillingWorkflow
    def __init__(self, apps: _Optional[_Union[_billing_pb2.BillingProfileApps, _Mapping]] = ..., source_billing_profile_id: _Optional[str] = ..., workflow: _Optional[_Union[_billing_pb2.BillingWorkflow, _Mapping]] = ...) -> None: ...

class InvoiceAppExternalIds(_message.Message):
    __slots__ = ("invoicing", "tax", "payment")
    INVOICING_FIELD_NUMBER: _ClassVar[int]
    TAX_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    invoicing: str
    tax: str
    payment: str
    def __init__(self, invoicing: _Optional[str] = ..., tax: _Optional[str] = ..., payment: _Optional[str] = ...) -> None: ...

class InvoiceValidationIssue(_message.Message):
    __slots__ = ("id", "created_at", "updated_at", "severity", "field", "code", "message", "component")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: str
    updated_at: str
    severity: str
    field: str
    code: str
    message: str
    component: str
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., severity: _Optional[str] = ..., field: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., component: _Optional[str] = ...) -> None: ...

class IdReference(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class BillingDiscountReason(_message.Message):
    __slots__ = ("type", "percentage", "quantity", "correlation_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    type: str
    percentage: float
    quantity: str
    correlation_id: str
    def __init__(self, type: _Optional[str] = ..., percentage: _Optional[float] = ..., quantity: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class InvoiceLineAmountDiscount(_message.Message):
    __slots__ = ("id", "created_at", "updated_at", "reason", "description", "amount", "external_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: str
    updated_at: str
    reason: BillingDiscountReason
    description: str
    amount: str
    external_ids: InvoiceAppExternalIds
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., reason: _Optional[_Union[BillingDiscountReason, _Mapping]] = ..., description: _Optional[str] = ..., amount: _Optional[str] = ..., external_ids: _Optional[_Union[InvoiceAppExternalIds, _Mapping]] = ...) -> None: ...

class InvoiceLineUsageDiscount(_message.Message):
    __slots__ = ("id", "created_at", "updated_at", "reason", "description", "quantity", "pre_line_period_quantity", "external_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRE_LINE_PERIOD_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: str
    updated_at: str
    reason: BillingDiscountReason
    description: str
    quantity: str
    pre_line_period_quantity: str
    external_ids: InvoiceAppExternalIds
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., reason: _Optional[_Union[BillingDiscountReason, _Mapping]] = ..., description: _Optional[str] = ..., quantity: _Optional[str] = ..., pre_line_period_quantity: _Optional[str] = ..., external_ids: _Optional[_Union[InvoiceAppExternalIds, _Mapping]] = ...) -> None: ...

class InvoiceLineDiscounts(_message.Message):
    __slots__ = ("amount", "usage")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    amount: _containers.RepeatedCompositeFieldContainer[InvoiceLineAmountDiscount]
    usage: _containers.RepeatedCompositeFieldContainer[InvoiceLineUsageDiscount]
    def __init__(self, amount: _Optional[_Iterable[_Union[InvoiceLineAmountDiscount, _Mapping]]] = ..., usage: _Optional[_Iterable[_Union[InvoiceLineUsageDiscount, _Mapping]]] = ...) -> None: ...

class InvoiceLineSubscriptionReference(_message.Message):
    __slots__ = ("subscription", "phase", "item", "billing_period")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    BILLING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    subscription: IdReference
    phase: IdReference
    item: IdReference
    billing_period: InvoicePeriod
    def __init__(self, subscription: _Optional[_Union[IdReference, _Mapping]] = ..., phase: _Optional[_Union[IdReference, _Mapping]] = ..., item: _Optional[_Union[IdReference, _Mapping]] = ..., billing_period: _Optional[_Union[InvoicePeriod, _Mapping]] = ...) -> None: ...

class BillingDiscounts(_message.Message):
    __slots__ = ("percentage", "usage")
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    percentage: BillingDiscountPercentage
    usage: BillingDiscountUsage
    def __init__(self, percentage: _Optional[_Union[BillingDiscountPercentage, _Mapping]] = ..., usage: _Optional[_Union[BillingDiscountUsage, _Mapping]] = ...) -> None: ...

class BillingDiscountPercentage(_message.Message):
    __slots__ = ("percentage", "correlation_id")
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    percentage: float
    correlation_id: str
    def __init__(self, percentage: _Optional[float] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class BillingDiscountUsage(_message.Message):
    __slots__ = ("quantity", "correlation_id")
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    quantity: str
    correlation_id: str
    def __init__(self, quantity: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class InvoiceLineRateCard(_message.Message):
    __slots__ = ("feature_key", "tax_config", "price", "discounts", "quantity")
    FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    TAX_CONFIG_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    feature_key: str
    tax_config: _catalog_pb2.TaxConfig
    price: _catalog_pb2.Price
    discounts: BillingDiscounts
    quantity: str
    def __init__(self, feature_key: _Optional[str] = ..., tax_config: _Optional[_Union[_catalog_pb2.TaxConfig, _Mapping]] = ..., price: _Optional[_Union[_catalog_pb2.Price, _Mapping]] = ..., discounts: _Optional[_Union[BillingDiscounts, _Mapping]] = ..., quantity: _Optional[str] = ...) -> None: ...

class InvoiceLine(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "created_at", "updated_at", "deleted_at", "managed_by", "status", "discounts", "invoice", "currency", "tax_config", "totals", "period", "invoice_at", "subscription", "type", "price", "feature_key", "children", "rate_card", "quantity", "metered_quantity", "pre_line_period_quantity", "metered_pre_line_period_quantity", "per_unit_amount", "payment_term", "category", "external_ids")
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
    MANAGED_BY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TAX_CONFIG_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    INVOICE_AT_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    RATE_CARD_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    METERED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRE_LINE_PERIOD_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    METERED_PRE_LINE_PERIOD_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PER_UNIT_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_TERM_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    created_at: str
    updated_at: str
    deleted_at: str
    managed_by: str
    status: str
    discounts: InvoiceLineDiscounts
    invoice: IdReference
    currency: str
    tax_config: _catalog_pb2.TaxConfig
    totals: InvoiceTotals
    period: InvoicePeriod
    invoice_at: str
    subscription: InvoiceLineSubscriptionReference
    type: str
    price: _catalog_pb2.Price
    feature_key: str
    children: _containers.RepeatedCompositeFieldContainer[InvoiceLine]
    rate_card: InvoiceLineRateCard
    quantity: str
    metered_quantity: str
    pre_line_period_quantity: str
    metered_pre_line_period_quantity: str
    per_unit_amount: str
    payment_term: str
    category: str
    external_ids: InvoiceAppExternalIds
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., deleted_at: _Optional[str] = ..., managed_by: _Optional[str] = ..., status: _Optional[str] = ..., discounts: _Optional[_Union[InvoiceLineDiscounts, _Mapping]] = ..., invoice: _Optional[_Union[IdReference, _Mapping]] = ..., currency: _Optional[str] = ..., tax_config: _Optional[_Union[_catalog_pb2.TaxConfig, _Mapping]] = ..., totals: _Optional[_Union[InvoiceTotals, _Mapping]] = ..., period: _Optional[_Union[InvoicePeriod, _Mapping]] = ..., invoice_at: _Optional[str] = ..., subscription: _Optional[_Union[InvoiceLineSubscriptionReference, _Mapping]] = ..., type: _Optional[str] = ..., price: _Optional[_Union[_catalog_pb2.Price, _Mapping]] = ..., feature_key: _Optional[str] = ..., children: _Optional[_Iterable[_Union[InvoiceLine, _Mapping]]] = ..., rate_card: _Optional[_Union[InvoiceLineRateCard, _Mapping]] = ..., quantity: _Optional[str] = ..., metered_quantity: _Optional[str] = ..., pre_line_period_quantity: _Optional[str] = ..., metered_pre_line_period_quantity: _Optional[str] = ..., per_unit_amount: _Optional[str] = ..., payment_term: _Optional[str] = ..., category: _Optional[str] = ..., external_ids: _Optional[_Union[InvoiceAppExternalIds, _Mapping]] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("id", "description", "metadata", "created_at", "updated_at", "deleted_at", "type", "supplier", "customer", "number", "currency", "totals", "status", "status_details", "issued_at", "draft_until", "quantity_snapshoted_at", "collection_at", "due_at", "period", "voided_at", "sent_to_customer_at", "workflow", "lines", "validation_issues", "external_ids", "void_reason")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAILS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    DRAFT_UNTIL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_SNAPSHOTED_AT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_AT_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    VOIDED_AT_FIELD_NUMBER: _ClassVar[int]
    SENT_TO_CUSTOMER_AT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ISSUES_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    VOID_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    created_at: str
    updated_at: str
    deleted_at: str
    type: str
    supplier: InvoiceSupplier
    customer: InvoiceCustomer
    number: str
    currency: str
    totals: InvoiceTotals
    status: str
    status_details: InvoiceStatusDetails
    issued_at: str
    draft_until: str
    quantity_snapshoted_at: str
    collection_at: str
    due_at: str
    period: InvoicePeriod
    voided_at: str
    sent_to_customer_at: str
    workflow: InvoiceWorkflowSettings
    lines: _containers.RepeatedCompositeFieldContainer[InvoiceLine]
    validation_issues: _containers.RepeatedCompositeFieldContainer[InvoiceValidationIssue]
    external_ids: InvoiceAppExternalIds
    void_reason: str
    def __init__(self, id: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., deleted_at: _Optional[str] = ..., type: _Optional[str] = ..., supplier: _Optional[_Union[InvoiceSupplier, _Mapping]] = ..., customer: _Optional[_Union[InvoiceCustomer, _Mapping]] = ..., number: _Optional[str] = ..., currency: _Optional[str] = ..., totals: _Optional[_Union[InvoiceTotals, _Mapping]] = ..., status: _Optional[str] = ..., status_details: _Optional[_Union[InvoiceStatusDetails, _Mapping]] = ..., issued_at: _Optional[str] = ..., draft_until: _Optional[str] = ..., quantity_snapshoted_at: _Optional[str] = ..., collection_at: _Optional[str] = ..., due_at: _Optional[str] = ..., period: _Optional[_Union[InvoicePeriod, _Mapping]] = ..., voided_at: _Optional[str] = ..., sent_to_customer_at: _Optional[str] = ..., workflow: _Optional[_Union[InvoiceWorkflowSettings, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[InvoiceLine, _Mapping]]] = ..., validation_issues: _Optional[_Iterable[_Union[InvoiceValidationIssue, _Mapping]]] = ..., external_ids: _Optional[_Union[InvoiceAppExternalIds, _Mapping]] = ..., void_reason: _Optional[str] = ...) -> None: ...

class ListInvoicesRequest(_message.Message):
    __slots__ = ("statuses", "extended_statuses", "issued_after", "issued_before", "period_start_after", "period_start_before", "created_after", "created_before", "expand", "customers", "include_deleted", "page", "page_size", "order", "order_by")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_STATUSES_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AFTER_FIELD_NUMBER: _ClassVar[int]
    ISSUED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_AFTER_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EXPAND_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[str]
    extended_statuses: _containers.RepeatedScalarFieldContainer[str]
    issued_after: str
    issued_before: str
    period_start_after: str
    period_start_before: str
    created_after: str
    created_before: str
    expand: _containers.RepeatedScalarFieldContainer[str]
    customers: _containers.RepeatedScalarFieldContainer[str]
    include_deleted: bool
    page: int
    page_size: int
    order: str
    order_by: str
    def __init__(self, statuses: _Optional[_Iterable[str]] = ..., extended_statuses: _Optional[_Iterable[str]] = ..., issued_after: _Optional[str] = ..., issued_before: _Optional[str] = ..., period_start_after: _Optional[str] = ..., period_start_before: _Optional[str] = ..., created_after: _Optional[str] = ..., created_before: _Optional[str] = ..., expand: _Optional[_Iterable[str]] = ..., customers: _Optional[_Iterable[str]] = ..., include_deleted: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListInvoicesResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[Invoice]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ...) -> None: ...

class InvoicePendingLinesFilters(_message.Message):
    __slots__ = ("line_ids",)
    LINE_IDS_FIELD_NUMBER: _ClassVar[int]
    line_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, line_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class InvoicePendingLinesRequest(_message.Message):
    __slots__ = ("customer_id", "as_of", "filters", "progressive_billing_override")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    PROGRESSIVE_BILLING_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    as_of: str
    filters: InvoicePendingLinesFilters
    progressive_billing_override: bool
    def __init__(self, customer_id: _Optional[str] = ..., as_of: _Optional[str] = ..., filters: _Optional[_Union[InvoicePendingLinesFilters, _Mapping]] = ..., progressive_billing_override: _Optional[bool] = ...) -> None: ...

class InvoicePendingLinesResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Invoice]
    def __init__(self, items: _Optional[_Iterable[_Union[Invoice, _Mapping]]] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("invoice_id", "expand", "include_deleted_lines")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPAND_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_LINES_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    expand: _containers.RepeatedScalarFieldContainer[str]
    include_deleted_lines: bool
    def __init__(self, invoice_id: _Optional[str] = ..., expand: _Optional[_Iterable[str]] = ..., include_deleted_lines: _Optional[bool] = ...) -> None: ...

class DeleteInvoiceRequest(_message.Message):
    __slots__ = ("invoice_id",)
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    def __init__(self, invoice_id: _Optional[str] = ...) -> None: ...

class InvoiceActionRequest(_message.Message):
    __slots__ = ("invoice_id",)
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    def __init__(self, invoice_id: _Optional[str] = ...) -> None: ...

class InvoicePendingLine(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "period", "invoice_at", "rate_card", "price", "feature_key", "tax_config", "quantity", "pre_line_period_quantity")
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
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    INVOICE_AT_FIELD_NUMBER: _ClassVar[int]
    RATE_CARD_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    TAX_CONFIG_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRE_LINE_PERIOD_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    period: InvoicePeriod
    invoice_at: str
    rate_card: InvoiceLineRateCard
    price: _catalog_pb2.Price
    feature_key: str
    tax_config: _catalog_pb2.TaxConfig
    quantity: str
    pre_line_period_quantity: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., period: _Optional[_Union[InvoicePeriod, _Mapping]] = ..., invoice_at: _Optional[str] = ..., rate_card: _Optional[_Union[InvoiceLineRateCard, _Mapping]] = ..., price: _Optional[_Union[_catalog_pb2.Price, _Mapping]] = ..., feature_key: _Optional[str] = ..., tax_config: _Optional[_Union[_catalog_pb2.TaxConfig, _Mapping]] = ..., quantity: _Optional[str] = ..., pre_line_period_quantity: _Optional[str] = ...) -> None: ...

class CreatePendingInvoiceLinesRequest(_message.Message):
    __slots__ = ("customer_id", "currency", "lines")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    currency: str
    lines: _containers.RepeatedCompositeFieldContainer[InvoicePendingLine]
    def __init__(self, customer_id: _Optional[str] = ..., currency: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[InvoicePendingLine, _Mapping]]] = ...) -> None: ...

class CreatePendingInvoiceLinesResponse(_message.Message):
    __slots__ = ("lines", "invoice", "is_invoice_new")
    LINES_FIELD_NUMBER: _ClassVar[int]
    INVOICE_FIELD_NUMBER: _ClassVar[int]
    IS_INVOICE_NEW_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[InvoiceLine]
    invoice: Invoice
    is_invoice_new: bool
    def __init__(self, lines: _Optional[_Iterable[_Union[InvoiceLine, _Mapping]]] = ..., invoice: _Optional[_Union[Invoice, _Mapping]] = ..., is_invoice_new: _Optional[bool] = ...) -> None: ...

class SimulateInvoiceRequest(_message.Message):
    __slots__ = ("customer_id", "number", "currency", "lines")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    number: str
    currency: str
    lines: _containers.RepeatedCompositeFieldContainer[InvoicePendingLine]
    def __init__(self, customer_id: _Optional[str] = ..., number: _Optional[str] = ..., currency: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[InvoicePendingLine, _Mapping]]] = ...) -> None: ...

class UpdateInvoiceRequest(_message.Message):
    __slots__ = ("invoice_id", "description", "metadata", "supplier", "customer", "lines", "workflow")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    supplier: InvoiceSupplier
    customer: InvoiceCustomer
    lines: _containers.RepeatedCompositeFieldContainer[InvoicePendingLine]
    workflow: InvoiceWorkflowSettings
    def __init__(self, invoice_id: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., supplier: _Optional[_Union[InvoiceSupplier, _Mapping]] = ..., customer: _Optional[_Union[InvoiceCustomer, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[InvoicePendingLine, _Mapping]]] = ..., workflow: _Optional[_Union[InvoiceWorkflowSettings, _Mapping]] = ...) -> None: ...

class VoidInvoiceLineAction(_message.Message):
    __slots__ = ("type", "next_invoice_at")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NEXT_INVOICE_AT_FIELD_NUMBER: _ClassVar[int]
    type: str
    next_invoice_at: str
    def __init__(self, type: _Optional[str] = ..., next_invoice_at: _Optional[str] = ...) -> None: ...

class VoidInvoiceAction(_message.Message):
    __slots__ = ("percentage", "action")
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    percentage: float
    action: VoidInvoiceLineAction
    def __init__(self, percentage: _Optional[float] = ..., action: _Optional[_Union[VoidInvoiceLineAction, _Mapping]] = ...) -> None: ...

class VoidInvoiceActionLineOverride(_message.Message):
    __slots__ = ("line_id", "action")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    action: VoidInvoiceAction
    def __init__(self, line_id: _Optional[str] = ..., action: _Optional[_Union[VoidInvoiceAction, _Mapping]] = ...) -> None: ...

class VoidInvoiceRequest(_message.Message):
    __slots__ = ("invoice_id", "action", "reason", "overrides")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    action: VoidInvoiceAction
    reason: str
    overrides: _containers.RepeatedCompositeFieldContainer[VoidInvoiceActionLineOverride]
    def __init__(self, invoice_id: _Optional[str] = ..., action: _Optional[_Union[VoidInvoiceAction, _Mapping]] = ..., reason: _Optional[str] = ..., overrides: _Optional[_Iterable[_Union[VoidInvoiceActionLineOverride, _Mapping]]] = ...) -> None: ...

class CustomInvoicingLineExternalIdMapping(_message.Message):
    __slots__ = ("line_id", "external_id")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    external_id: str
    def __init__(self, line_id: _Optional[str] = ..., external_id: _Optional[str] = ...) -> None: ...

class CustomInvoicingLineDiscountExternalIdMapping(_message.Message):
    __slots__ = ("line_discount_id", "external_id")
    LINE_DISCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    line_discount_id: str
    external_id: str
    def __init__(self, line_discount_id: _Optional[str] = ..., external_id: _Optional[str] = ...) -> None: ...

class CustomInvoicingSyncResult(_message.Message):
    __slots__ = ("invoice_number", "external_id", "line_external_ids", "line_discount_external_ids")
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    LINE_DISCOUNT_EXTERNAL_IDS_FIELD_NUMBER: _ClassVar[int]
    invoice_number: str
    external_id: str
    line_external_ids: _containers.RepeatedCompositeFieldContainer[CustomInvoicingLineExternalIdMapping]
    line_discount_external_ids: _containers.RepeatedCompositeFieldContainer[CustomInvoicingLineDiscountExternalIdMapping]
    def __init__(self, invoice_number: _Optional[str] = ..., external_id: _Optional[str] = ..., line_external_ids: _Optional[_Iterable[_Union[CustomInvoicingLineExternalIdMapping, _Mapping]]] = ..., line_discount_external_ids: _Optional[_Iterable[_Union[CustomInvoicingLineDiscountExternalIdMapping, _Mapping]]] = ...) -> None: ...

class CustomInvoicingDraftSynchronizedRequest(_message.Message):
    __slots__ = ("invoice_id", "invoicing")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICING_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    invoicing: CustomInvoicingSyncResult
    def __init__(self, invoice_id: _Optional[str] = ..., invoicing: _Optional[_Union[CustomInvoicingSyncResult, _Mapping]] = ...) -> None: ...

class CustomInvoicingFinalizedInvoicing(_message.Message):
    __slots__ = ("invoice_number", "sent_to_customer_at")
    INVOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SENT_TO_CUSTOMER_AT_FIELD_NUMBER: _ClassVar[int]
    invoice_number: str
    sent_to_customer_at: str
    def __init__(self, invoice_number: _Optional[str] = ..., sent_to_customer_at: _Optional[str] = ...) -> None: ...

class CustomInvoicingFinalizedPayment(_message.Message):
    __slots__ = ("external_id",)
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    external_id: str
    def __init__(self, external_id: _Optional[str] = ...) -> None: ...

class CustomInvoicingIssuingSynchronizedRequest(_message.Message):
    __slots__ = ("invoice_id", "invoicing", "payment")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    INVOICING_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    invoicing: CustomInvoicingFinalizedInvoicing
    payment: CustomInvoicingFinalizedPayment
    def __init__(self, invoice_id: _Optional[str] = ..., invoicing: _Optional[_Union[CustomInvoicingFinalizedInvoicing, _Mapping]] = ..., payment: _Optional[_Union[CustomInvoicingFinalizedPayment, _Mapping]] = ...) -> None: ...

class CustomInvoicingUpdatePaymentStatusRequest(_message.Message):
    __slots__ = ("invoice_id", "trigger")
    INVOICE_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    invoice_id: str
    trigger: str
    def __init__(self, invoice_id: _Optional[str] = ..., trigger: _Optional[str] = ...) -> None: ...
