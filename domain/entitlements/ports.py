"""What the entitlements area needs from storage; adapters/postgres implements these."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from domain.entitlements.engine import Snapshot
from domain.entitlements.models import Entitlement, EntitlementListQuery, StoredGrant, UsageReset


class EntitlementRepository(Protocol):
    async def create(
        self, entitlement: Entitlement, grants: Sequence[StoredGrant], replaces: str | None = None
    ) -> None:
        """Stores the entitlement with its initial grants, ending `replaces` where it starts (and
        deleting that one's grants) in the same transaction; raises ConflictError (with the other's id) when another live entitlement of
        the customer and feature key has an active window that meets the new one's."""
        ...

    async def set_active_to(self, namespace: str, entitlement_id: str, active_to: datetime, at: datetime) -> None:
        """Moves the end of a live entitlement's active window (the same overlap rule as create)."""
        ...

    async def get(self, namespace: str, entitlement_id: str) -> Entitlement | None: ...

    async def for_customer(
        self, namespace: str, customer_id: str, id_or_feature_key: str, live_at: datetime
    ) -> list[Entitlement]:
        """In one read, the customer's entitlement with that ID (in any state) and its entitlements
        of that feature key not deleted at `live_at` (any window)."""
        ...

    async def list_entitlements(self, namespace: str, query: EntitlementListQuery) -> list[Entitlement]:
        """Filtered by customers and deletion; the service filters the rest and pages."""
        ...

    async def delete(self, namespace: str, entitlement_id: str, at: datetime) -> None:
        """Soft-deletes the entitlement and, at the same instant, its live grants."""
        ...

    async def add_reset(self, namespace: str, entitlement_id: str, reset: UsageReset) -> None: ...

    async def metered_touched_by(
        self, namespace: str, subject_keys: Sequence[str], event_types: Sequence[str]
    ) -> list[Entitlement]:
        """Undeleted metered entitlements whose usage events of these subjects and types can change:
        those of the subjects' live customers on features (archived ones too) of live meters of
        these event types."""
        ...


class GrantRepository(Protocol):
    async def create(self, grant: StoredGrant) -> None: ...

    async def get(self, namespace: str, grant_id: str) -> StoredGrant | None: ...

    async def with_latest_snapshot(
        self, namespace: str, entitlement_id: str, at: datetime | None
    ) -> tuple[list[StoredGrant], Snapshot | None, int]:
        """In one read, the entitlement's grants (deleted ones included), with `at` its newest
        balance snapshot taken at or before `at`, and its balance inputs revision now
        (`Entitlement.inputs_revision`): a balance computation's inputs besides usage."""
        ...

    async def for_entitlements(
        self, namespace: str, entitlement_ids: Sequence[str], include_deleted: bool = True
    ) -> list[StoredGrant]: ...

    async def void(self, namespace: str, grant_id: str, at: datetime) -> None: ...


class SnapshotRepository(Protocol):
    """Balance snapshots: caches of engine state, never the source of a result."""

    # The newest one is read with the grants (GrantRepository.with_latest_snapshot).

    async def save(self, namespace: str, entitlement_id: str, snapshot: Snapshot, inputs_revision: int) -> None:
        """Keeps `snapshot` unless a grant, void or reset was written since the entitlement was read
        at `inputs_revision` (`Entitlement.inputs_revision`): those writes drop the snapshots they
        outdate, in their own transaction (GrantRepository.create and void, add_reset)."""
        ...
