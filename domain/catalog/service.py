"""Feature use cases."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from ulid import ULID

from domain.catalog.models import Feature, FeatureCreateInput, ListFeaturesInput
from domain.catalog.ports import FeatureRepository
from domain.errors import ConflictError, NotFoundError
from domain.metering.models import Meter
from domain.metering.ports import MeterRepository
from domain.pagination import PageMode, SortOrder

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


_SORT_KEYS: dict[str, Callable[[Feature], object]] = {
    "id": lambda f: f.id,
    "key": lambda f: f.key,
    "name": lambda f: f.name,
    "createdAt": lambda f: f.created_at,
    "updatedAt": lambda f: f.updated_at,
}


class FeatureService:
    def __init__(self, features: FeatureRepository, meters: MeterRepository, clock: Clock = utcnow) -> None:
        self._features = features
        self._meters = meters
        self._clock = clock
        # Called after every feature write (the entitlement value cache drops its look-ups).
        self.listeners: list[Callable[[], None]] = []
        # Asked before a feature is archived; each raises to refuse (plans and subscriptions that use it).
        self.archive_guards: list[Callable[[str, Feature], Awaitable[None]]] = []

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    async def create(self, namespace: str, data: FeatureCreateInput) -> Feature:
        meter = None
        if data.meter_slug:
            meter = await self._meters.get(namespace, data.meter_slug)
            if meter is None or meter.deleted_at is not None:
                raise NotFoundError("meter", data.meter_slug)
        filters, unit_cost = data.validated(meter)
        existing = await self._features.get(namespace, data.key, include_archived=False)
        if existing is not None and existing.archived_at is None:
            raise ConflictError(f"feature with key {data.key!r} already exists", conflicting_id=existing.id)
        now = self._clock()
        feature = Feature(
            id=str(ULID()),
            namespace=namespace,
            key=data.key,
            name=data.name,
            meter_slug=meter.slug if meter is not None else None,
            filters=filters,
            metadata=dict(data.metadata),
            created_at=now,
            updated_at=now,
            unit_cost=unit_cost,
        )
        await self._features.create(feature)
        self._changed()
        return feature

    async def get(self, namespace: str, id_or_key: str) -> Feature:
        feature = await self._features.get(namespace, id_or_key)
        if feature is None:
            raise NotFoundError("feature", id_or_key)
        return feature

    async def get_live(self, namespace: str, id_or_key: str) -> Feature:
        feature = await self._features.get(namespace, id_or_key, include_archived=False)
        if feature is None or feature.archived_at is not None:
            raise NotFoundError("feature", id_or_key)
        return feature

    async def list_features(
        self, namespace: str, data: ListFeaturesInput
    ) -> tuple[list[Feature], int, PageMode, int, int]:
        query = data.validate()
        features = await self._features.list_features(namespace, query.include_archived)
        if query.meter_slugs:
            features = [f for f in features if f.meter_slug in query.meter_slugs]
        features.sort(key=_SORT_KEYS[query.order_by], reverse=query.order is SortOrder.DESC)  # type: ignore[arg-type]
        total = len(features)
        page = query.pagination
        return page.apply(features), total, page.mode, page.effective_page, page.effective_page_size

    async def of_meter(self, namespace: str, meter: Meter, include_archived: bool) -> list[Feature]:
        """The features that read `meter` (features name their meter by slug)."""
        features = await self._features.list_features(namespace, include_archived)
        return [f for f in features if f.meter_slug == meter.slug]

    async def guard_meter_delete(self, namespace: str, meter: Meter) -> None:
        """MeterService delete guard: a live feature keeps its meter (OpenMeter's DeleteMeter,
        HasActiveFeatureForMeter: 409)."""
        if await self.of_meter(namespace, meter, include_archived=False):
            raise ConflictError("meter has active features and cannot be deleted")

    async def guard_meter_group_by(self, namespace: str, meter: Meter, group_by: Mapping[str, str]) -> None:
        """MeterService group-by guard: a key a live feature filters on stays, or the feature's
        queries would name a key the meter no longer has (OpenMeter's UpdateMeter: 409)."""
        dropped = [key for key in meter.group_by if key not in group_by]
        if not dropped:
            return
        for feature in await self.of_meter(namespace, meter, include_archived=False):
            for key in dropped:
                if key in feature.filters:
                    raise ConflictError(
                        f"meter group by: {key} cannot be dropped because it is used by feature: {feature.key}"
                    )

    async def archive(self, namespace: str, id_or_key: str) -> None:
        feature = await self.get_live(namespace, id_or_key)
        for guard in self.archive_guards:
            await guard(namespace, feature)
        now = self._clock()
        await self._features.update(dataclasses.replace(feature, archived_at=now, updated_at=now))
        self._changed()
