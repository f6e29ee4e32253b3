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

class TierPrice(_message.Message):
    __slots__ = ("type", "amount")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    type: str
    amount: str
    def __init__(self, type: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class PriceTier(_message.Message):
    __slots__ = ("up_to_amount", "flat_price", "unit_price")
    UP_TO_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    FLAT_PRICE_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    up_to_amount: str
    flat_price: TierPrice
    unit_price: TierPrice
    def __init__(self, up_to_amount: _Optional[str] = ..., flat_price: _Optional[_Union[TierPrice, _Mapping]] = ..., unit_price: _Optional[_Union[TierPrice, _Mapping]] = ...) -> None: ...

class Price(_message.Message):
    __slots__ = ("type", "amount", "payment_term", "mode", "tiers", "quantity_per_package", "multiplier", "minimum_amount", "maximum_amount")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_TERM_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_PER_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    type: str
    amount: str
    payment_term: str
    mode: str
    tiers: _containers.RepeatedCompositeFieldContainer[PriceTier]
    quantity_per_package: str
    multiplier: str
    minimum_amount: str
    maximum_amount: str
    def __init__(self, type: _Optional[str] = ..., amount: _Optional[str] = ..., payment_term: _Optional[str] = ..., mode: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[PriceTier, _Mapping]]] = ..., quantity_per_package: _Optional[str] = ..., multiplier: _Optional[str] = ..., minimum_amount: _Optional[str] = ..., maximum_amount: _Optional[str] = ...) -> None: ...

class DiscountPercentage(_message.Message):
    __slots__ = ("percentage",)
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    percentage: float
    def __init__(self, percentage: _Optional[float] = ...) -> None: ...

class DiscountUsage(_message.Message):
    __slots__ = ("quantity",)
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    quantity: str
    def __init__(self, quantity: _Optional[str] = ...) -> None: ...

class Discounts(_message.Message):
    __slots__ = ("percentage", "usage")
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    percentage: DiscountPercentage
    usage: DiscountUsage
    def __init__(self, percentage: _Optional[_Union[DiscountPercentage, _Mapping]] = ..., usage: _Optional[_Union[DiscountUsage, _Mapping]] = ...) -> None: ...

class EntitlementTemplate(_message.Message):
    __slots__ = ("type", "metadata", "is_soft_limit", "issue_after_reset", "issue_after_reset_priority", "preserve_overage_at_reset", "usage_period", "config")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IS_SOFT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ISSUE_AFTER_RESET_FIELD_NUMBER: _ClassVar[int]
    ISSUE_AFTER_RESET_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_OVERAGE_AT_RESET_FIELD_NUMBER: _ClassVar[int]
    USAGE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    type: str
    metadata: _containers.ScalarMap[str, str]
    is_soft_limit: bool
    issue_after_reset: float
    issue_after_reset_priority: int
    preserve_overage_at_reset: bool
    usage_period: str
    config: str
    def __init__(self, type: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., is_soft_limit: _Optional[bool] = ..., issue_after_reset: _Optional[float] = ..., issue_after_reset_priority: _Optional[int] = ..., preserve_overage_at_reset: _Optional[bool] = ..., usage_period: _Optional[str] = ..., config: _Optional[str] = ...) -> None: ...

class RateCard(_message.Message):
    __slots__ = ("type", "key", "name", "description", "metadata", "feature_key", "entitlement_template", "tax_config", "billing_cadence", "price", "discounts")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    TAX_CONFIG_FIELD_NUMBER: _ClassVar[int]
    BILLING_CADENCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    type: str
    key: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    feature_key: str
    entitlement_template: EntitlementTemplate
    tax_config: TaxConfig
    billing_cadence: str
    price: Price
    discounts: Discounts
    def __init__(self, type: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., feature_key: _Optional[str] = ..., entitlement_template: _Optional[_Union[EntitlementTemplate, _Mapping]] = ..., tax_config: _Optional[_Union[TaxConfig, _Mapping]] = ..., billing_cadence: _Optional[str] = ..., price: _Optional[_Union[Price, _Mapping]] = ..., discounts: _Optional[_Union[Discounts, _Mapping]] = ...) -> None: ...

class ValidationIssue(_message.Message):
    __slots__ = ("field", "code", "message", "severity")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    field: str
    code: str
    message: str
    severity: str
    def __init__(self, field: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., severity: _Optional[str] = ...) -> None: ...

class StripeTaxConfig(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class CustomInvoicingTaxConfig(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class TaxConfig(_message.Message):
    __slots__ = ("behavior", "stripe", "custom_invoicing", "tax_code_id")
    BEHAVIOR_FIELD_NUMBER: _ClassVar[int]
    STRIPE_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_INVOICING_FIELD_NUMBER: _ClassVar[int]
    TAX_CODE_ID_FIELD_NUMBER: _ClassVar[int]
    behavior: str
    stripe: StripeTaxConfig
    custom_invoicing: CustomInvoicingTaxConfig
    tax_code_id: str
    def __init__(self, behavior: _Optional[str] = ..., stripe: _Optional[_Union[StripeTaxConfig, _Mapping]] = ..., custom_invoicing: _Optional[_Union[CustomInvoicingTaxConfig, _Mapping]] = ..., tax_code_id: _Optional[str] = ...) -> None: ...

class ProRatingConfig(_message.Message):
    __slots__ = ("enabled", "mode")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    mode: str
    def __init__(self, enabled: _Optional[bool] = ..., mode: _Optional[str] = ...) -> None: ...

class Alignment(_message.Message):
    __slots__ = ("billables_must_align",)
    BILLABLES_MUST_ALIGN_FIELD_NUMBER: _ClassVar[int]
    billables_must_align: bool
    def __init__(self, billables_must_align: _Optional[bool] = ...) -> None: ...

class PlanPhase(_message.Message):
    __slots__ = ("key", "name", "description", "metadata", "duration", "rate_cards")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    RATE_CARDS_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    duration: str
    rate_cards: _containers.RepeatedCompositeFieldContainer[RateCard]
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., duration: _Optional[str] = ..., rate_cards: _Optional[_Iterable[_Union[RateCard, _Mapping]]] = ...) -> None: ...

class PlanInput(_message.Message):
    __slots__ = ("key", "name", "description", "metadata", "currency", "billing_cadence", "pro_rating_config", "settlement_mode", "alignment", "phases")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BILLING_CADENCE_FIELD_NUMBER: _ClassVar[int]
    PRO_RATING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_MODE_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    description: str
    metadata: _struct_pb2.Struct
    currency: str
    billing_cadence: str
    pro_rating_config: ProRatingConfig
    settlement_mode: str
    alignment: Alignment
    phases: _containers.RepeatedCompositeFieldContainer[PlanPhase]
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., currency: _Optional[str] = ..., billing_cadence: _Optional[str] = ..., pro_rating_config: _Optional[_Union[ProRatingConfig, _Mapping]] = ..., settlement_mode: _Optional[str] = ..., alignment: _Optional[_Union[Alignment, _Mapping]] = ..., phases: _Optional[_Iterable[_Union[PlanPhase, _Mapping]]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("id", "key", "version", "name", "description", "metadata", "currency", "billing_cadence", "pro_rating_config", "settlement_mode", "alignment", "status", "phases", "validation_errors", "effective_from", "effective_to", "created_at", "updated_at", "deleted_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BILLING_CADENCE_FIELD_NUMBER: _ClassVar[int]
    PRO_RATING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_MODE_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ERRORS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    version: int
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    currency: str
    billing_cadence: str
    pro_rating_config: ProRatingConfig
    settlement_mode: str
    alignment: Alignment
    status: str
    phases: _containers.RepeatedCompositeFieldContainer[PlanPhase]
    validation_errors: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    effective_from: _timestamp_pb2.Timestamp
    effective_to: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., version: _Optional[int] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., currency: _Optional[str] = ..., billing_cadence: _Optional[str] = ..., pro_rating_config: _Optional[_Union[ProRatingConfig, _Mapping]] = ..., settlement_mode: _Optional[str] = ..., alignment: _Optional[_Union[Alignment, _Mapping]] = ..., status: _Optional[str] = ..., phases: _Optional[_Iterable[_Union[PlanPhase, _Mapping]]] = ..., validation_errors: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ..., effective_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., effective_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreatePlanRequest(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: PlanInput
    def __init__(self, plan: _Optional[_Union[PlanInput, _Mapping]] = ...) -> None: ...

class ListPlansRequest(_message.Message):
    __slots__ = ("id", "key", "status", "currency", "include_deleted", "page", "page_size", "order", "order_by", "key_version")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    id: _containers.RepeatedScalarFieldContainer[str]
    key: _containers.RepeatedScalarFieldContainer[str]
    status: _containers.RepeatedScalarFieldContainer[str]
    currency: _containers.RepeatedScalarFieldContainer[str]
    include_deleted: bool
    page: int
    page_size: int
    order: str
    order_by: str
    key_version: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[_Iterable[str]] = ..., key: _Optional[_Iterable[str]] = ..., status: _Optional[_Iterable[str]] = ..., currency: _Optional[_Iterable[str]] = ..., include_deleted: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ..., key_version: _Optional[_Iterable[str]] = ...) -> None: ...

class ListPlansResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[Plan]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("plan_id", "include_latest")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LATEST_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    include_latest: bool
    def __init__(self, plan_id: _Optional[str] = ..., include_latest: _Optional[bool] = ...) -> None: ...

class UpdatePlanRequest(_message.Message):
    __slots__ = ("plan_id", "plan")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    plan: PlanInput
    def __init__(self, plan_id: _Optional[str] = ..., plan: _Optional[_Union[PlanInput, _Mapping]] = ...) -> None: ...

class DeletePlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...

class PublishPlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...

class ArchivePlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...

class NextPlanRequest(_message.Message):
    __slots__ = ("plan_id_or_key",)
    PLAN_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    plan_id_or_key: str
    def __init__(self, plan_id_or_key: _Optional[str] = ...) -> None: ...

class AddonInput(_message.Message):
    __slots__ = ("key", "name", "description", "metadata", "instance_type", "currency", "rate_cards")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_CARDS_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    description: str
    metadata: _struct_pb2.Struct
    instance_type: str
    currency: str
    rate_cards: _containers.RepeatedCompositeFieldContainer[RateCard]
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., instance_type: _Optional[str] = ..., currency: _Optional[str] = ..., rate_cards: _Optional[_Iterable[_Union[RateCard, _Mapping]]] = ...) -> None: ...

class Addon(_message.Message):
    __slots__ = ("id", "key", "version", "name", "description", "metadata", "instance_type", "currency", "status", "rate_cards", "validation_errors", "effective_from", "effective_to", "created_at", "updated_at", "deleted_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RATE_CARDS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ERRORS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    version: int
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    instance_type: str
    currency: str
    status: str
    rate_cards: _containers.RepeatedCompositeFieldContainer[RateCard]
    validation_errors: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    effective_from: _timestamp_pb2.Timestamp
    effective_to: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., version: _Optional[int] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., instance_type: _Optional[str] = ..., currency: _Optional[str] = ..., status: _Optional[str] = ..., rate_cards: _Optional[_Iterable[_Union[RateCard, _Mapping]]] = ..., validation_errors: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ..., effective_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., effective_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateAddonRequest(_message.Message):
    __slots__ = ("addon",)
    ADDON_FIELD_NUMBER: _ClassVar[int]
    addon: AddonInput
    def __init__(self, addon: _Optional[_Union[AddonInput, _Mapping]] = ...) -> None: ...

class ListAddonsRequest(_message.Message):
    __slots__ = ("id", "key", "status", "currency", "include_deleted", "page", "page_size", "order", "order_by", "key_version")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    id: _containers.RepeatedScalarFieldContainer[str]
    key: _containers.RepeatedScalarFieldContainer[str]
    status: _containers.RepeatedScalarFieldContainer[str]
    currency: _containers.RepeatedScalarFieldContainer[str]
    include_deleted: bool
    page: int
    page_size: int
    order: str
    order_by: str
    key_version: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[_Iterable[str]] = ..., key: _Optional[_Iterable[str]] = ..., status: _Optional[_Iterable[str]] = ..., currency: _Optional[_Iterable[str]] = ..., include_deleted: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ..., key_version: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAddonsResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[Addon]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[Addon, _Mapping]]] = ...) -> None: ...

class GetAddonRequest(_message.Message):
    __slots__ = ("addon_id", "include_latest")
    ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LATEST_FIELD_NUMBER: _ClassVar[int]
    addon_id: str
    include_latest: bool
    def __init__(self, addon_id: _Optional[str] = ..., include_latest: _Optional[bool] = ...) -> None: ...

class UpdateAddonRequest(_message.Message):
    __slots__ = ("addon_id", "addon")
    ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    ADDON_FIELD_NUMBER: _ClassVar[int]
    addon_id: str
    addon: AddonInput
    def __init__(self, addon_id: _Optional[str] = ..., addon: _Optional[_Union[AddonInput, _Mapping]] = ...) -> None: ...

class DeleteAddonRequest(_message.Message):
    __slots__ = ("addon_id",)
    ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    addon_id: str
    def __init__(self, addon_id: _Optional[str] = ...) -> None: ...

class PublishAddonRequest(_message.Message):
    __slots__ = ("addon_id",)
    ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    addon_id: str
    def __init__(self, addon_id: _Optional[str] = ...) -> None: ...

class ArchiveAddonRequest(_message.Message):
    __slots__ = ("addon_id",)
    ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    addon_id: str
    def __init__(self, addon_id: _Optional[str] = ...) -> None: ...

class PlanAddonInput(_message.Message):
    __slots__ = ("addon_id", "from_plan_phase", "max_quantity", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_PLAN_PHASE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    addon_id: str
    from_plan_phase: str
    max_quantity: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, addon_id: _Optional[str] = ..., from_plan_phase: _Optional[str] = ..., max_quantity: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PlanAddon(_message.Message):
    __slots__ = ("id", "addon", "from_plan_phase", "max_quantity", "metadata", "validation_errors", "created_at", "updated_at", "deleted_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDON_FIELD_NUMBER: _ClassVar[int]
    FROM_PLAN_PHASE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ERRORS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    addon: Addon
    from_plan_phase: str
    max_quantity: int
    metadata: _containers.ScalarMap[str, str]
    validation_errors: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., addon: _Optional[_Union[Addon, _Mapping]] = ..., from_plan_phase: _Optional[str] = ..., max_quantity: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., validation_errors: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreatePlanAddonRequest(_message.Message):
    __slots__ = ("plan_id", "plan_addon")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ADDON_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    plan_addon: PlanAddonInput
    def __init__(self, plan_id: _Optional[str] = ..., plan_addon: _Optional[_Union[PlanAddonInput, _Mapping]] = ...) -> None: ...

class ListPlanAddonsRequest(_message.Message):
    __slots__ = ("plan_id", "id", "key", "include_deleted", "page", "page_size", "order", "order_by")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    id: _containers.RepeatedScalarFieldContainer[str]
    key: _containers.RepeatedScalarFieldContainer[str]
    include_deleted: bool
    page: int
    page_size: int
    order: str
    order_by: str
    def __init__(self, plan_id: _Optional[str] = ..., id: _Optional[_Iterable[str]] = ..., key: _Optional[_Iterable[str]] = ..., include_deleted: _Optional[bool] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListPlanAddonsResponse(_message.Message):
    __slots__ = ("total_count", "page", "page_size", "items")
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    total_count: int
    page: int
    page_size: int
    items: _containers.RepeatedCompositeFieldContainer[PlanAddon]
    def __init__(self, total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., items: _Optional[_Iterable[_Union[PlanAddon, _Mapping]]] = ...) -> None: ...

class GetPlanAddonRequest(_message.Message):
    __slots__ = ("plan_id", "plan_addon_id")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    plan_addon_id: str
    def __init__(self, plan_id: _Optional[str] = ..., plan_addon_id: _Optional[str] = ...) -> None: ...

class UpdatePlanAddonRequest(_message.Message):
    __slots__ = ("plan_id", "plan_addon_id", "plan_addon")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ADDON_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    plan_addon_id: str
    plan_addon: PlanAddonInput
    def __init__(self, plan_id: _Optional[str] = ..., plan_addon_id: _Optional[str] = ..., plan_addon: _Optional[_Union[PlanAddonInput, _Mapping]] = ...) -> None: ...

class DeletePlanAddonRequest(_message.Message):
    __slots__ = ("plan_id", "plan_addon_id")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    plan_addon_id: str
    def __init__(self, plan_id: _Optional[str] = ..., plan_addon_id: _Optional[str] = ...) -> None: ...

class Currency(_message.Message):
    __slots__ = ("code", "name", "symbol", "subunits")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SUBUNITS_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    symbol: str
    subunits: int
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., symbol: _Optional[str] = ..., subunits: _Optional[int] = ...) -> None: ...

class ListCurrenciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCurrenciesResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Currency]
    def __init__(self, items: _Optional[_Iterable[_Union[Currency, _Mapping]]] = ...) -> None: ...
