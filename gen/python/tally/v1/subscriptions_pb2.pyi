import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tally.v1 import catalog_pb2 as _catalog_pb2
from tally.v1 import entitlements_pb2 as _entitlements_pb2
from tally.v1 import features_pb2 as _features_pb2
from tally.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanReference(_message.Message):
    __slots__ = ("id", "key", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    version: int
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class PlanReferenceInput(_message.Message):
    __slots__ = ("key", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    version: int
    def __init__(self, key: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SubscriptionAlignment(_message.Message):
    __slots__ = ("billables_must_align", "current_aligned_billing_period")
    BILLABLES_MUST_ALIGN_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ALIGNED_BILLING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    billables_must_align: bool
    current_aligned_billing_period: _entitlements_pb2.Period
    def __init__(self, billables_must_align: _Optional[bool] = ..., current_aligned_billing_period: _Optional[_Union[_entitlements_pb2.Period, _Mapping]] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "created_at", "updated_at", "deleted_at", "active_from", "active_to", "annotations", "alignment", "status", "customer_id", "plan", "currency", "cost_basis_mode", "cost_basis_pins", "billing_cadence", "pro_rating_config", "billing_anchor", "settlement_mode")
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
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    COST_BASIS_MODE_FIELD_NUMBER: _ClassVar[int]
    COST_BASIS_PINS_FIELD_NUMBER: _ClassVar[int]
    BILLING_CADENCE_FIELD_NUMBER: _ClassVar[int]
    PRO_RATING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    BILLING_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_MODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    annotations: _struct_pb2.Struct
    alignment: SubscriptionAlignment
    status: str
    customer_id: str
    plan: PlanReference
    currency: str
    cost_basis_mode: str
    cost_basis_pins: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    billing_cadence: str
    pro_rating_config: _catalog_pb2.ProRatingConfig
    billing_anchor: _timestamp_pb2.Timestamp
    settlement_mode: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., alignment: _Optional[_Union[SubscriptionAlignment, _Mapping]] = ..., status: _Optional[str] = ..., customer_id: _Optional[str] = ..., plan: _Optional[_Union[PlanReference, _Mapping]] = ..., currency: _Optional[str] = ..., cost_basis_mode: _Optional[str] = ..., cost_basis_pins: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., billing_cadence: _Optional[str] = ..., pro_rating_config: _Optional[_Union[_catalog_pb2.ProRatingConfig, _Mapping]] = ..., billing_anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., settlement_mode: _Optional[str] = ...) -> None: ...

class SubscriptionItem(_message.Message):
    __slots__ = ("id", "key", "name", "description", "metadata", "created_at", "updated_at", "deleted_at", "active_from", "active_to", "feature_key", "billing_cadence", "price", "discounts", "tax_config", "currency", "included")
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
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    FEATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    BILLING_CADENCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    TAX_CONFIG_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    feature_key: str
    billing_cadence: str
    price: _catalog_pb2.Price
    discounts: _catalog_pb2.Discounts
    tax_config: _catalog_pb2.TaxConfig
    currency: str
    included: SubscriptionItemIncluded
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., feature_key: _Optional[str] = ..., billing_cadence: _Optional[str] = ..., price: _Optional[_Union[_catalog_pb2.Price, _Mapping]] = ..., discounts: _Optional[_Union[_catalog_pb2.Discounts, _Mapping]] = ..., tax_config: _Optional[_Union[_catalog_pb2.TaxConfig, _Mapping]] = ..., currency: _Optional[str] = ..., included: _Optional[_Union[SubscriptionItemIncluded, _Mapping]] = ...) -> None: ...

class SubscriptionItemIncluded(_message.Message):
    __slots__ = ("feature", "entitlement")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENT_FIELD_NUMBER: _ClassVar[int]
    feature: _features_pb2.Feature
    entitlement: _entitlements_pb2.Entitlement
    def __init__(self, feature: _Optional[_Union[_features_pb2.Feature, _Mapping]] = ..., entitlement: _Optional[_Union[_entitlements_pb2.Entitlement, _Mapping]] = ...) -> None: ...

class SubscriptionPhaseExpanded(_message.Message):
    __slots__ = ("id", "key", "name", "description", "metadata", "created_at", "updated_at", "deleted_at", "active_from", "active_to", "discounts", "items", "item_timelines")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ItemTimelinesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.ListValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ITEM_TIMELINES_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    discounts: _catalog_pb2.Discounts
    items: _containers.RepeatedCompositeFieldContainer[SubscriptionItem]
    item_timelines: _containers.MessageMap[str, _struct_pb2.ListValue]
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., discounts: _Optional[_Union[_catalog_pb2.Discounts, _Mapping]] = ..., items: _Optional[_Iterable[_Union[SubscriptionItem, _Mapping]]] = ..., item_timelines: _Optional[_Mapping[str, _struct_pb2.ListValue]] = ...) -> None: ...

class SubscriptionExpanded(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "created_at", "updated_at", "deleted_at", "active_from", "active_to", "annotations", "alignment", "status", "customer_id", "plan", "currency", "cost_basis_mode", "cost_basis_pins", "billing_cadence", "pro_rating_config", "billing_anchor", "settlement_mode", "phases")
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
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    COST_BASIS_MODE_FIELD_NUMBER: _ClassVar[int]
    COST_BASIS_PINS_FIELD_NUMBER: _ClassVar[int]
    BILLING_CADENCE_FIELD_NUMBER: _ClassVar[int]
    PRO_RATING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    BILLING_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_MODE_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    annotations: _struct_pb2.Struct
    alignment: SubscriptionAlignment
    status: str
    customer_id: str
    plan: PlanReference
    currency: str
    cost_basis_mode: str
    cost_basis_pins: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    billing_cadence: str
    pro_rating_config: _catalog_pb2.ProRatingConfig
    billing_anchor: _timestamp_pb2.Timestamp
    settlement_mode: str
    phases: _containers.RepeatedCompositeFieldContainer[SubscriptionPhaseExpanded]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., annotations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., alignment: _Optional[_Union[SubscriptionAlignment, _Mapping]] = ..., status: _Optional[str] = ..., customer_id: _Optional[str] = ..., plan: _Optional[_Union[PlanReference, _Mapping]] = ..., currency: _Optional[str] = ..., cost_basis_mode: _Optional[str] = ..., cost_basis_pins: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., billing_cadence: _Optional[str] = ..., pro_rating_config: _Optional[_Union[_catalog_pb2.ProRatingConfig, _Mapping]] = ..., billing_anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., settlement_mode: _Optional[str] = ..., phases: _Optional[_Iterable[_Union[SubscriptionPhaseExpanded, _Mapping]]] = ...) -> None: ...

class CreateSubscriptionRequest(_message.Message):
    __slots__ = ("plan", "custom_plan", "customer_id", "customer_key", "timing", "billing_anchor", "starting_phase", "name", "description", "metadata", "settlement_mode", "alignment", "cost_basis_mode")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_PLAN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_KEY_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    BILLING_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    STARTING_PHASE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_MODE_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    COST_BASIS_MODE_FIELD_NUMBER: _ClassVar[int]
    plan: PlanReferenceInput
    custom_plan: _catalog_pb2.PlanInput
    customer_id: str
    customer_key: str
    timing: str
    billing_anchor: _timestamp_pb2.Timestamp
    starting_phase: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    settlement_mode: str
    alignment: _catalog_pb2.Alignment
    cost_basis_mode: str
    def __init__(self, plan: _Optional[_Union[PlanReferenceInput, _Mapping]] = ..., custom_plan: _Optional[_Union[_catalog_pb2.PlanInput, _Mapping]] = ..., customer_id: _Optional[str] = ..., customer_key: _Optional[str] = ..., timing: _Optional[str] = ..., billing_anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., starting_phase: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., settlement_mode: _Optional[str] = ..., alignment: _Optional[_Union[_catalog_pb2.Alignment, _Mapping]] = ..., cost_basis_mode: _Optional[str] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "at")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubscriptionPhaseCreate(_message.Message):
    __slots__ = ("start_after", "duration", "discounts", "key", "name", "description")
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    start_after: str
    duration: str
    discounts: _catalog_pb2.Discounts
    key: str
    name: str
    description: str
    def __init__(self, start_after: _Optional[str] = ..., duration: _Optional[str] = ..., discounts: _Optional[_Union[_catalog_pb2.Discounts, _Mapping]] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class SubscriptionEditOperation(_message.Message):
    __slots__ = ("op", "phase_key", "rate_card", "item_key", "phase", "shift", "extend_by")
    OP_FIELD_NUMBER: _ClassVar[int]
    PHASE_KEY_FIELD_NUMBER: _ClassVar[int]
    RATE_CARD_FIELD_NUMBER: _ClassVar[int]
    ITEM_KEY_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    EXTEND_BY_FIELD_NUMBER: _ClassVar[int]
    op: str
    phase_key: str
    rate_card: _catalog_pb2.RateCard
    item_key: str
    phase: SubscriptionPhaseCreate
    shift: str
    extend_by: str
    def __init__(self, op: _Optional[str] = ..., phase_key: _Optional[str] = ..., rate_card: _Optional[_Union[_catalog_pb2.RateCard, _Mapping]] = ..., item_key: _Optional[str] = ..., phase: _Optional[_Union[SubscriptionPhaseCreate, _Mapping]] = ..., shift: _Optional[str] = ..., extend_by: _Optional[str] = ...) -> None: ...

class EditSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "customizations", "timing")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMIZATIONS_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    customizations: _containers.RepeatedCompositeFieldContainer[SubscriptionEditOperation]
    timing: str
    def __init__(self, subscription_id: _Optional[str] = ..., customizations: _Optional[_Iterable[_Union[SubscriptionEditOperation, _Mapping]]] = ..., timing: _Optional[str] = ...) -> None: ...

class DeleteSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class CancelSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "timing")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    timing: str
    def __init__(self, subscription_id: _Optional[str] = ..., timing: _Optional[str] = ...) -> None: ...

class UnscheduleCancelationRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class RestoreSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class ChangeSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "timing", "plan", "custom_plan", "starting_phase", "name", "description", "metadata", "billing_anchor", "settlement_mode", "alignment", "cost_basis_mode")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_PLAN_FIELD_NUMBER: _ClassVar[int]
    STARTING_PHASE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    BILLING_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_MODE_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    COST_BASIS_MODE_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    timing: str
    plan: PlanReferenceInput
    custom_plan: _catalog_pb2.PlanInput
    starting_phase: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    billing_anchor: _timestamp_pb2.Timestamp
    settlement_mode: str
    alignment: _catalog_pb2.Alignment
    cost_basis_mode: str
    def __init__(self, subscription_id: _Optional[str] = ..., timing: _Optional[str] = ..., plan: _Optional[_Union[PlanReferenceInput, _Mapping]] = ..., custom_plan: _Optional[_Union[_catalog_pb2.PlanInput, _Mapping]] = ..., starting_phase: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., billing_anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., settlement_mode: _Optional[str] = ..., alignment: _Optional[_Union[_catalog_pb2.Alignment, _Mapping]] = ..., cost_basis_mode: _Optional[str] = ...) -> None: ...

class MigrateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription_id", "timing", "target_version", "starting_phase", "billing_anchor")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    TARGET_VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTING_PHASE_FIELD_NUMBER: _ClassVar[int]
    BILLING_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    timing: str
    target_version: int
    starting_phase: str
    billing_anchor: _timestamp_pb2.Timestamp
    def __init__(self, subscription_id: _Optional[str] = ..., timing: _Optional[str] = ..., target_version: _Optional[int] = ..., starting_phase: _Optional[str] = ..., billing_anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubscriptionChangeResponse(_message.Message):
    __slots__ = ("current", "next")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    current: Subscription
    next: SubscriptionExpanded
    def __init__(self, current: _Optional[_Union[Subscription, _Mapping]] = ..., next: _Optional[_Union[SubscriptionExpanded, _Mapping]] = ...) -> None: ...

class ListCustomerSubscriptionsRequest(_message.Message):
    __slots__ = ("customer_id_or_key", "status", "page", "page_size", "order", "order_by")
    CUSTOMER_ID_OR_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    customer_id_or_key: str
    status: _containers.RepeatedScalarFieldContainer[str]
    page: int
    page_size: int
    order: str
    order_by: str
    def __init__(self, customer_id_or_key: _Optional[str] = ..., status: _Optional[_Iterable[str]] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., order: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("items", "total_count", "page", "page_size")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Subscription]
    total_count: int
    page: int
    page_size: int
    def __init__(self, items: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., total_count: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class AddonReference(_message.Message):
    __slots__ = ("id", "key", "version", "instance_type")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    version: int
    instance_type: str
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., version: _Optional[int] = ..., instance_type: _Optional[str] = ...) -> None: ...

class QuantitySegment(_message.Message):
    __slots__ = ("active_from", "active_to", "quantity")
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    quantity: int
    def __init__(self, active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quantity: _Optional[int] = ...) -> None: ...

class SubscriptionAddonRateCard(_message.Message):
    __slots__ = ("rate_card", "affected_subscription_item_ids")
    RATE_CARD_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_SUBSCRIPTION_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    rate_card: _catalog_pb2.RateCard
    affected_subscription_item_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rate_card: _Optional[_Union[_catalog_pb2.RateCard, _Mapping]] = ..., affected_subscription_item_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SubscriptionAddon(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "created_at", "updated_at", "deleted_at", "active_from", "active_to", "addon", "quantity_at", "quantity", "timeline", "subscription_id", "rate_cards")
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
    ACTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_TO_FIELD_NUMBER: _ClassVar[int]
    ADDON_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_AT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    RATE_CARDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deleted_at: _timestamp_pb2.Timestamp
    active_from: _timestamp_pb2.Timestamp
    active_to: _timestamp_pb2.Timestamp
    addon: AddonReference
    quantity_at: _timestamp_pb2.Timestamp
    quantity: int
    timeline: _containers.RepeatedCompositeFieldContainer[QuantitySegment]
    subscription_id: str
    rate_cards: _containers.RepeatedCompositeFieldContainer[SubscriptionAddonRateCard]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deleted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., addon: _Optional[_Union[AddonReference, _Mapping]] = ..., quantity_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quantity: _Optional[int] = ..., timeline: _Optional[_Iterable[_Union[QuantitySegment, _Mapping]]] = ..., subscription_id: _Optional[str] = ..., rate_cards: _Optional[_Iterable[_Union[SubscriptionAddonRateCard, _Mapping]]] = ...) -> None: ...

class AddonIdInput(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SubscriptionAddonCreate(_message.Message):
    __slots__ = ("name", "description", "metadata", "quantity", "timing", "addon")
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
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    ADDON_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    quantity: int
    timing: str
    addon: AddonIdInput
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., quantity: _Optional[int] = ..., timing: _Optional[str] = ..., addon: _Optional[_Union[AddonIdInput, _Mapping]] = ...) -> None: ...

class CreateSubscriptionAddonRequest(_message.Message):
    __slots__ = ("subscription_id", "addon_create")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    ADDON_CREATE_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    addon_create: SubscriptionAddonCreate
    def __init__(self, subscription_id: _Optional[str] = ..., addon_create: _Optional[_Union[SubscriptionAddonCreate, _Mapping]] = ...) -> None: ...

class ListSubscriptionAddonsRequest(_message.Message):
    __slots__ = ("subscription_id",)
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ...) -> None: ...

class ListSubscriptionAddonsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SubscriptionAddon]
    def __init__(self, items: _Optional[_Iterable[_Union[SubscriptionAddon, _Mapping]]] = ...) -> None: ...

class GetSubscriptionAddonRequest(_message.Message):
    __slots__ = ("subscription_id", "subscription_addon_id")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    subscription_addon_id: str
    def __init__(self, subscription_id: _Optional[str] = ..., subscription_addon_id: _Optional[str] = ...) -> None: ...

class SubscriptionAddonUpdate(_message.Message):
    __slots__ = ("name", "description", "metadata", "quantity", "timing")
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
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    quantity: int
    timing: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., quantity: _Optional[int] = ..., timing: _Optional[str] = ...) -> None: ...

class UpdateSubscriptionAddonRequest(_message.Message):
    __slots__ = ("subscription_id", "subscription_addon_id", "addon_update")
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ADDON_ID_FIELD_NUMBER: _ClassVar[int]
    ADDON_UPDATE_FIELD_NUMBER: _ClassVar[int]
    subscription_id: str
    subscription_addon_id: str
    addon_update: SubscriptionAddonUpdate
    def __init__(self, subscription_id: _Optional[str] = ..., subscription_addon_id: _Optional[str] = ..., addon_update: _Optional[_Union[SubscriptionAddonUpdate, _Mapping]] = ...) -> None: ...
