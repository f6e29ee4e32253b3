"""Features: a key and name, optionally bound to a meter and narrowed by group-by filters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from domain.catalog.unit_cost import UnitCost, UnitCostInput
from domain.customers.models import ULID_RE
from domain.errors import Violations
from domain.metering.models import MAX_SLUG_LENGTH, SLUG_RE, Aggregation, Meter
from domain.metering.query import FilterString
from domain.pagination import Pagination, SortOrder, Unpaged, parse_order, parse_order_by
from domain.wiretime import rfc3339

# OpenMeter allows entitlements only over these aggregations.
FEATURE_AGGREGATIONS: Final = (Aggregation.SUM, Aggregation.COUNT, Aggregation.UNIQUE_COUNT, Aggregation.LATEST)
FEATURE_ORDER_BY: Final = ("id", "key", "name", "createdAt", "updatedAt")


def filter_to_json(f: FilterString) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in f.operators():
        attribute = name.lstrip("$") + ("_" if name in ("$in", "$and", "$or") else "")
        value = getattr(f, attribute)
        if name in ("$and", "$or"):
            out[name] = [filter_to_json(child) for child in value]
        elif name in ("$in", "$nin"):
            out[name] = list(value)
        else:
            out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class Feature:
    id: str
    namespace: str
    key: str
    name: str
    created_at: datetime
    updated_at: datetime
    meter_slug: str | None = None
    # The canonical filters; `simple_filters` is the deprecated {key: value} view of the $eq ones.
    filters: Mapping[str, FilterString] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    archived_at: datetime | None = None
    unit_cost: UnitCost | None = None

    @property
    def simple_filters(self) -> dict[str, str]:
        return {k: f.eq for k, f in self.filters.items() if f.eq is not None and len(f.operators()) == 1}

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "key": self.key,
            "name": self.name,
            "metadata": dict(self.metadata),
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
        }
        if self.meter_slug is not None:
            out["meterSlug"] = self.meter_slug
        if self.filters:
            out["meterGroupByFilters"] = self.simple_filters
            out["advancedMeterGroupByFilters"] = {k: filter_to_json(f) for k, f in self.filters.items()}
        if self.unit_cost is not None:
            out["unitCost"] = self.unit_cost.rest()
        if self.archived_at is not None:
            out["archivedAt"] = rfc3339(self.archived_at)
        return out


@dataclass(frozen=True, slots=True)
class FeatureCreateInput:
    key: str
    name: str
    meter_slug: str | None = None
    meter_group_by_filters: Mapping[str, str] = field(default_factory=dict)
    advanced_filters: Mapping[str, FilterString] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    unit_cost: UnitCostInput | None = None

    def validate(self, meter: Meter | None) -> dict[str, FilterString]:
        """Checks the input against the resolved meter; returns the canonical filters."""
        return self.validated(meter)[0]

    def validated(self, meter: Meter | None) -> tuple[dict[str, FilterString], UnitCost | None]:
        """Checks the input against the resolved meter; the canonical filters and the unit cost."""
        v = Violations()
        if not self.key or len(self.key) > MAX_SLUG_LENGTH or not SLUG_RE.match(self.key):
            v.add("key", "must match ^[a-z0-9]+(?:_[a-z0-9]+)*$ and be at most 64 characters", "invalid_key")
        elif ULID_RE.match(self.key):
            v.add("key", "feature key cannot be a valid ULID", "invalid_key")
        if not self.name:
            v.add("name", "required", "required")
        filters: dict[str, FilterString] = {}
        for key, value in self.meter_group_by_filters.items():
            filters[key] = FilterString(eq=value)
        for key, f in self.advanced_filters.items():
            if not f.is_empty():
                f.validate(f"advancedMeterGroupByFilters.{key}", v)
                filters[key] = f
        if filters and meter is None:
            v.add("meterGroupByFilters", "group-by filters need a meterSlug", "requires_meter")
        if meter is not None:
            if meter.aggregation not in FEATURE_AGGREGATIONS:
                v.add(
                    "meterSlug",
                    f"meter aggregation {meter.aggregation} is not supported; use one of "
                    + ", ".join(FEATURE_AGGREGATIONS),
                    "invalid_aggregation",
                )
            for key in filters:
                if key not in meter.group_by:
                    v.add(
                        f"meterGroupByFilters.{key}", f"meter {meter.slug} has no group by {key!r}", "unknown_group_by"
                    )
        unit_cost = self.unit_cost.validate(meter, v) if self.unit_cost is not None else None
        v.raise_if_any()
        return filters, unit_cost


@dataclass(frozen=True, slots=True)
class FeatureListQuery:
    pagination: Pagination
    order: SortOrder
    order_by: str
    meter_slugs: tuple[str, ...] = ()
    include_archived: bool = False


@dataclass(frozen=True, slots=True)
class ListFeaturesInput:
    meter_slugs: tuple[str, ...] = ()
    include_archived: bool = False
    page: int | None = None
    page_size: int | None = None
    limit: int | None = None
    offset: int | None = None
    order: str | None = None
    order_by: str | None = None

    def validate(self) -> FeatureListQuery:
        # OpenMeter's listFeatures without paging parameters: the first 100, as a plain array.
        pagination = (
            Pagination(self.page, self.page_size, self.limit, self.offset).validate().defaulted(Unpaged.FIRST_100)
        )
        order = parse_order(self.order)
        order_by = parse_order_by(self.order_by, FEATURE_ORDER_BY, "key")  # OpenMeter's default
        return FeatureListQuery(pagination, order, order_by, tuple(self.meter_slugs), self.include_archived)
