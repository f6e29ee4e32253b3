"""What a plan and an add-on have in common: each is one version of a catalog entry.

A version belongs to its entry's `key` and is numbered (1, 2, ...) in it; its editable `content`
(a `PlanInput`, an `AddonInput`) is kept apart from the lifecycle around it: when it was published
(`effective_from`), when it ended (`effective_to`), when it was deleted, and the warnings found
when it was last written. Its status is derived from the effective period by each entity, as
their statuses differ (a plan can be published for later, "scheduled"; an add-on cannot).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, NamedTuple, Protocol, TypeVar

from domain.catalog.wire import Obj, Reader, violations_rest
from domain.errors import FieldViolation
from domain.wiretime import rfc3339

# What lists of versions (and of plan add-ons) can be ordered by.
VERSION_ORDER_BY: Final = ("id", "key", "version", "created_at", "updated_at")


class VersionContent(Protocol):
    """A version's editable content, written as the entity's create JSON (OpenMeter's PlanCreate,
    AddonCreate) for storage and for the REST view."""

    @property
    def key(self) -> str: ...

    @property
    def currency(self) -> str: ...

    @property
    def description(self) -> str | None: ...

    @property
    def metadata(self) -> Mapping[str, str]: ...

    def document(self, resolve_defaults: bool = False) -> dict[str, Any]: ...

    def feature_keys(self) -> set[str]: ...


ContentT = TypeVar("ContentT", bound=VersionContent)


class CommonFields(NamedTuple):
    """What every entry's create body names besides its own content (None where it has an error)."""

    key: str | None
    name: str | None
    description: str | None
    metadata: dict[str, str]


def read_common_fields(r: Reader, obj: Obj, existing: VersionContent | None) -> CommonFields:
    """The key, name, description and metadata of a create body, or of a replace-update of
    `existing`: its key stays, and its description and metadata when the body leaves them out (as
    OpenMeter's update sets them only when given)."""
    key = r.key(obj, "key", "") if existing is None else existing.key
    name = r.name(obj, "")
    description = r.description(obj, "")
    metadata = r.metadata(obj, "")
    if existing is not None and obj.get("description") is None:
        description = existing.description
    if existing is not None and obj.get("metadata") is None:
        metadata = dict(existing.metadata)
    return CommonFields(key, name, description, metadata)


@dataclass(frozen=True, slots=True)
class CatalogVersion(Generic[ContentT]):
    id: str
    namespace: str
    version: int
    content: ContentT
    created_at: datetime
    updated_at: datetime
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    deleted_at: datetime | None = None
    # Warnings found when the draft was last written (OpenMeter's `validationErrors`).
    validation_errors: tuple[FieldViolation, ...] = ()

    @property
    def key(self) -> str:
        return self.content.key

    def status(self, now: datetime) -> enum.StrEnum:
        raise NotImplementedError  # each entity names its own statuses (see the module's docstring)

    # The states every entity has, by their wire names, for the lifecycle rules plans and add-ons share.
    def is_draft(self, now: datetime) -> bool:
        return self.status(now) == "draft"

    def is_active(self, now: datetime) -> bool:
        return self.status(now) == "active"

    def rest(self, now: datetime) -> dict[str, Any]:
        """The REST view: the content's document with the version's own fields; the effective
        period and the deletion time only once they are set."""
        out = self.content.document(resolve_defaults=True)
        out.update(
            id=self.id,
            version=self.version,
            status=self.status(now).value,
            validationErrors=violations_rest(list(self.validation_errors), "warning"),
            createdAt=rfc3339(self.created_at),
            updatedAt=rfc3339(self.updated_at),
        )
        for name, value in (
            ("effectiveFrom", self.effective_from),
            ("effectiveTo", self.effective_to),
            ("deletedAt", self.deleted_at),
        ):
            if value is not None:
                out[name] = rfc3339(value)
        return out


# A plan or an add-on, for what works on the versions of either (their repository and services).
VersionT = TypeVar("VersionT", bound=CatalogVersion[Any])
