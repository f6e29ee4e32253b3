"""What the catalog needs from storage."""

from __future__ import annotations

from typing import Protocol

from domain.catalog.models import Feature


class FeatureRepository(Protocol):
    async def create(self, feature: Feature) -> None:
        """Raises ConflictError when a live feature has the key."""
        ...

    async def update(self, feature: Feature) -> None: ...

    async def get(self, namespace: str, id_or_key: str, include_archived: bool = True) -> Feature | None:
        """By ID (archived included when asked), or by the key of the live feature."""
        ...

    async def list_features(self, namespace: str, include_archived: bool) -> list[Feature]: ...
