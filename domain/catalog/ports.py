"""What the catalog needs from storage: features, plan and add-on versions, plan add-ons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from domain.catalog.addons import Addon, PlanAddonRecord
from domain.catalog.models import Feature
from domain.catalog.plans import Plan
from domain.catalog.versions import VersionT


class FeatureRepository(Protocol):
    async def create(self, feature: Feature) -> None:
        """Raises ConflictError when a live feature has the key."""
        ...

    async def update(self, feature: Feature) -> None: ...

    async def get(self, namespace: str, id_or_key: str, include_archived: bool = True) -> Feature | None:
        """By ID (archived included when asked), or by the key of the live feature."""
        ...

    async def list_features(self, namespace: str, include_archived: bool) -> list[Feature]: ...


class VersionRepository(Protocol[VersionT]):
    """The versions of one kind of catalog entry (plans, add-ons). Writes that break "one live
    draft per key" or "versions unique per key" (a concurrent writer) raise ConflictError."""

    async def create(self, version: VersionT) -> None: ...

    async def save(self, version: VersionT) -> None:
        """Updates a stored version (content, effective period, warnings, deletion)."""
        ...

    async def publish(self, version: VersionT, archived: Sequence[VersionT]) -> None:
        """Stores the published version and the versions it archives, in one transaction."""
        ...

    async def get(self, namespace: str, version_id: str) -> VersionT | None: ...

    async def list_versions(
        self, namespace: str, keys: Sequence[str] = (), include_deleted: bool = False
    ) -> list[VersionT]:
        """Every version (of these keys when given), deleted ones only when asked."""
        ...


PlanRepository = VersionRepository[Plan]
AddonRepository = VersionRepository[Addon]


class PlanAddonRepository(Protocol):
    """Assignments, returned with the add-on version they point at (resolved by the service)."""

    async def create(self, assignment: PlanAddonRecord) -> None:
        """Raises ConflictError when the add-on is already assigned to the plan."""
        ...

    async def save(self, assignment: PlanAddonRecord) -> None: ...

    async def list_for_plan(
        self, namespace: str, plan_id: str, include_deleted: bool = False
    ) -> list[PlanAddonRecord]: ...

    async def list_for_addon(self, namespace: str, addon_id: str) -> list[PlanAddonRecord]:
        """The live assignments of an add-on version on plans that are not deleted."""
        ...
