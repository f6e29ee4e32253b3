"""Plan, add-on and plan add-on use cases (OpenMeter's /api/v1/plans, /addons, /plans/{id}/addons).

Versions: creating a plan (or add-on) whose key exists makes the next version; at most one live
draft per key (a second is refused, 400, also under concurrency: a unique index backs it).
Publishing makes a draft active now and archives the version that was active; archiving ends an
active version now. Only drafts can be updated or published (and a plan's scheduled versions);
drafts, scheduled and archived versions can be deleted (soft), an active one cannot; deleting a
deleted version again succeeds and changes nothing, publishing or archiving it is refused. `next`
copies a plan version into a new draft. Plans and add-ons share this lifecycle
(`_CatalogVersions`); each names its refusals in its own words and codes (plan_invalid_status,
addon_invalid_status). Every refusal is a ValidationError with a field path and OpenMeter's code, and
nothing is stored; except that, as in OpenMeter, changing or removing an add-on offered on a plan
that is no longer a draft answers as if the assignment did not exist (NotFoundError, 404).

Requests arrive as OpenMeter's JSON (dicts with camelCase keys): the parse functions of plans.py
and addons.py read them, so the servicers stay thin and REST and gRPC share one reading.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Generic

from ulid import ULID

from domain.catalog.addons import (
    Addon,
    AddonInput,
    AddonStatus,
    PlanAddon,
    PlanAddonRecord,
    check_addon,
    check_plan_addon,
    parse_addon,
    parse_plan_addon,
)
from domain.catalog.models import Feature
from domain.catalog.plans import Plan, PlanInput, PlanStatus, check_plan, parse_plan
from domain.catalog.ports import (
    AddonRepository,
    FeatureRepository,
    PlanAddonRepository,
    PlanRepository,
    VersionRepository,
)
from domain.catalog.ratecards import FeatureFacts, RateCard, check_rate_card_features
from domain.catalog.versions import VERSION_ORDER_BY, ContentT, VersionT
from domain.catalog.wire import Issues, Reader
from domain.customers.models import ULID_RE
from domain.errors import ConflictError, NotFoundError, ValidationError, Violations
from domain.pagination import Pagination, SortOrder, parse_order, parse_order_by

Clock = Callable[[], datetime]

MAX_FILTER_VALUES: Final = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


def _invalid(field: str, message: str, code: str) -> ValidationError:
    return ValidationError.single(field, message, code)


@dataclass(frozen=True, slots=True)
class ListVersionsInput:
    """Filters of GET /api/v1/plans and /api/v1/addons."""

    ids: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ()
    # OpenMeter's keyVersion[<key>]=<version>: (key, version) pairs.
    key_versions: tuple[tuple[str, int], ...] = ()
    # Plans match any of ids, keys, key_versions and currencies (OpenMeter's ListPlans ORs them);
    # add-ons must match each filter given.
    any_of: bool = False
    include_deleted: bool = False
    page: int | None = None
    page_size: int | None = None
    order: str | None = None
    order_by: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    total_count: int
    page: int
    page_size: int


def _sort_key(order_by: str) -> Callable[[Any], Any]:
    return {
        "id": lambda x: x.id,
        "key": lambda x: (x.key, x.version),
        "version": lambda x: (x.version, x.id),
        "created_at": lambda x: x.created_at,
        "updated_at": lambda x: x.updated_at,
    }[order_by]


def _page(
    items: list[VersionT],
    data: ListVersionsInput,
    allowed_status: Sequence[str],
    order_by_values: Sequence[str],
    now: datetime,
) -> Page:
    v = Violations()
    for status in data.statuses:
        if status not in allowed_status:
            v.add("status", f"must be one of {', '.join(allowed_status)}", "invalid_enum")
    if len(data.ids) > MAX_FILTER_VALUES or len(data.keys) > MAX_FILTER_VALUES:
        v.add("id", f"at most {MAX_FILTER_VALUES} values", "too_many")
    order_by = parse_order_by(data.order_by, order_by_values, "id", v)
    v.raise_if_any()
    order = parse_order(data.order)
    pagination = Pagination(data.page, data.page_size).validate()
    if data.ids or data.keys or data.key_versions or data.currencies:
        items = [x for x in items if _matches(x, data)]
    if data.statuses:
        items = [x for x in items if x.status(now).value in data.statuses]
    items.sort(key=_sort_key(order_by), reverse=order is SortOrder.DESC)
    size = pagination.effective_page_size
    start = (pagination.effective_page - 1) * size
    return Page(items[start : start + size], len(items), pagination.effective_page, size)


def _matches(item: Any, data: ListVersionsInput) -> bool:
    """Whether a plan or add-on passes the id, key, keyVersion and currency filters that were given."""
    results: list[bool] = []
    if data.ids:
        results.append(item.id in data.ids)
    if data.keys:
        results.append(item.key in data.keys)
    if data.key_versions:
        results.append((item.key, item.version) in data.key_versions)
    if data.currencies:
        results.append(item.content.currency in data.currencies)
    return any(results) if data.any_of else all(results)


def _read_keys(data: ListVersionsInput) -> tuple[str, ...]:
    """The keys the store may narrow its read to (every key, (), when the filters cannot say)."""
    key_version_keys = tuple(key for key, _ in data.key_versions)
    if not data.any_of:
        return data.keys or key_version_keys
    if data.ids or data.currencies:
        return ()  # a match by ID or currency may have any key
    return (*data.keys, *key_version_keys)


class _Features:
    def __init__(self, features: FeatureRepository) -> None:
        self._features = features

    async def facts(self, namespace: str, keys: set[str]) -> dict[str, FeatureFacts]:
        if not keys:
            return {}
        found: dict[str, FeatureFacts] = {}
        for feature in await self._features.list_features(namespace, include_archived=True):
            if feature.key not in keys:
                continue
            facts = FeatureFacts(feature.key, feature.archived_at is not None, feature.meter_slug is not None)
            # A live feature wins over archived ones with the same key.
            if feature.key not in found or found[feature.key].archived:
                found[feature.key] = facts
        return found


def _warnings_of(issues: Issues) -> tuple[Any, ...]:
    return tuple(issues.warnings)


@dataclass(frozen=True, slots=True)
class _Naming:
    """How one kind of catalog entry names itself in refusals: in messages (`noun`, `plural`) and
    as the prefix of OpenMeter's error codes (`code`: plan_invalid_status, addon_invalid_status)."""

    noun: str
    plural: str
    code: str


class _CatalogVersions(Generic[VersionT, ContentT]):
    """The lifecycle plans and add-ons share (see the module's docstring): versions by key, the
    look-ups, create, delete, archive, and the steps update and publish are made of. Each service
    adds its own rules (which statuses may be updated or published, what a publish checks or a
    delete refuses) and answers in its own words and codes (`_Naming`)."""

    def __init__(
        self,
        versions: VersionRepository[VersionT],
        entity: type[VersionT],
        naming: _Naming,
        parse: Callable[[Any, ContentT | None], tuple[ContentT | None, Issues]],
        check: Callable[[ContentT, Mapping[str, FeatureFacts], bool, Issues], None],
        features: FeatureRepository,
        clock: Clock,
    ) -> None:
        self._versions = versions
        self._entity = entity
        self._naming = naming
        self._parse = parse
        self._check = check
        self._features = _Features(features)
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    async def _checked(
        self, namespace: str, body: Any, existing: ContentT | None, strict: bool
    ) -> tuple[ContentT, Issues]:
        content, issues = self._parse(body, existing)
        issues.raise_if_errors()
        assert content is not None
        self._check(content, await self._features.facts(namespace, content.feature_keys()), strict, issues)
        issues.raise_if_errors()
        return content, issues

    async def create(self, namespace: str, body: Any) -> VersionT:
        """A new draft: the first version of its key, or the next one (one live draft per key)."""
        noun, code = self._naming.noun, self._naming.code
        content, issues = await self._checked(namespace, body, None, strict=False)
        versions = await self._versions.list_versions(namespace, [content.key], include_deleted=True)
        now = self._clock()
        if any(v.deleted_at is None and v.is_draft(now) for v in versions):
            raise _invalid(
                "key",
                f"{noun} {content.key!r} already has a draft version; update or publish it",
                f"{code}_draft_exists",
            )
        version = self._entity(
            id=str(ULID()),
            namespace=namespace,
            version=max((v.version for v in versions), default=0) + 1,
            content=content,
            created_at=now,
            updated_at=now,
            validation_errors=_warnings_of(issues),
        )
        try:
            await self._versions.create(version)
        except ConflictError as exc:
            raise _invalid(
                "key", f"{noun} {content.key!r} already has a draft version", f"{code}_draft_exists"
            ) from exc
        return version

    async def get(self, namespace: str, id_or_key: str, include_latest: bool = False) -> VersionT:
        """By ID (any version, deleted included), or by key: the active version, or with
        `include_latest` the newest live version (a draft when there is one)."""
        if ULID_RE.match(id_or_key):
            found = await self._versions.get(namespace, id_or_key)
            if found is not None:
                return found
            raise NotFoundError(self._naming.noun, id_or_key)
        versions = [v for v in await self._versions.list_versions(namespace, [id_or_key]) if v.deleted_at is None]
        now = self._clock()
        if include_latest and versions:
            return max(versions, key=lambda v: v.version)
        active = [v for v in versions if v.is_active(now)]
        if not active:
            raise NotFoundError(self._naming.noun, id_or_key)
        return max(active, key=lambda v: v.version)

    async def get_version(self, namespace: str, key: str, version: int) -> VersionT:
        """One version by key and number (any status; not deleted): what a subscription references."""
        for found in await self._versions.list_versions(namespace, [key]):
            if found.version == version:
                return found
        raise NotFoundError(self._naming.noun, f"{key} v{version}")

    async def _list(self, namespace: str, data: ListVersionsInput, statuses: Sequence[str]) -> Page:
        versions = await self._versions.list_versions(namespace, _read_keys(data), include_deleted=data.include_deleted)
        return _page(versions, data, statuses, VERSION_ORDER_BY, self._clock())

    async def _live(self, namespace: str, version_id: str) -> VersionT:
        found = await self.get(namespace, version_id)
        if found.deleted_at is not None:
            raise NotFoundError(self._naming.noun, version_id)
        return found

    async def _rewrite(self, namespace: str, version: VersionT, body: Any) -> VersionT:
        """Replaces the content of a version whose status allows it (the caller checked)."""
        content, issues = await self._checked(namespace, body, version.content, strict=False)
        updated = dataclasses.replace(
            version, content=content, updated_at=self._clock(), validation_errors=_warnings_of(issues)
        )
        await self._versions.save(updated)
        return updated

    async def _check_deletable(self, namespace: str, version: VersionT) -> None:
        """What else refuses to delete a version that is not active (raises); nothing by default."""

    async def delete(self, namespace: str, version_id: str) -> None:
        version = await self.get(namespace, version_id)
        if version.deleted_at is not None:
            return  # already deleted: a retried DELETE succeeds as the first did (as OpenMeter)
        now = self._clock()
        if version.is_active(now):
            noun, code = self._naming.noun, self._naming.code
            raise _invalid("status", f"an active {noun} cannot be deleted; archive it first", f"{code}_invalid_status")
        await self._check_deletable(namespace, version)
        await self._versions.save(dataclasses.replace(version, deleted_at=now, updated_at=now))

    async def _not_deleted(self, namespace: str, version_id: str) -> VersionT:
        """The version to publish or archive: a deleted one is a bad request (400), as OpenMeter's
        PublishPlan, PublishAddon and ArchiveAddon refuse it ("cannot publish a deleted Plan"),
        not an unknown one."""
        version = await self.get(namespace, version_id)
        if version.deleted_at is not None:
            raise _invalid("id", f"the {self._naming.noun} version is deleted", f"{self._naming.code}_deleted")
        return version

    async def _publish(
        self, namespace: str, version: VersionT, now: datetime, supersedes: Container[enum.StrEnum]
    ) -> VersionT:
        """Makes a checked version active now; the other live versions of its key whose status is
        in `supersedes` end now, in the same write."""
        archived = [
            dataclasses.replace(v, effective_to=now, updated_at=now)
            for v in await self._versions.list_versions(namespace, [version.key])
            if v.id != version.id and v.deleted_at is None and v.status(now) in supersedes
        ]
        published = dataclasses.replace(
            version, effective_from=now, effective_to=None, updated_at=now, validation_errors=()
        )
        await self._versions.publish(published, archived)
        return published

    async def archive(self, namespace: str, version_id: str) -> VersionT:
        version = await self._not_deleted(namespace, version_id)
        now = self._clock()
        if not version.is_active(now):
            raise _invalid(
                "status",
                f"only active {self._naming.plural} can be archived, this one is {version.status(now).value}",
                f"{self._naming.code}_invalid_status",
            )
        archived = dataclasses.replace(version, effective_to=now, updated_at=now)
        await self._versions.save(archived)
        return archived


class PlanService(_CatalogVersions[Plan, PlanInput]):
    def __init__(
        self,
        plans: PlanRepository,
        features: FeatureRepository,
        assignments: PlanAddonRepository,
        addons: AddonRepository,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(plans, Plan, _Naming("plan", "plans", "plan"), parse_plan, check_plan, features, clock)
        self._assignments = assignments
        self._addons = addons

    async def check_custom(self, namespace: str, body: Any) -> PlanInput:
        """An inline plan (a subscription's `customPlan`, which has no key), checked as strictly as
        publish checks a plan; problems are named under `customPlan`."""
        document = {**body, "key": "custom"} if isinstance(body, dict) else body
        try:
            content, _ = await self._checked(namespace, document, None, strict=True)
        except ValidationError as error:
            raise ValidationError(
                [dataclasses.replace(v, field=f"customPlan.{v.field}") for v in error.violations]
            ) from None
        return content

    async def check_rate_card(self, namespace: str, card: RateCard, path: str) -> None:
        """A rate card added outside a plan (a subscription edit's add_item): its feature must
        exist and fit it, as publish checks a plan's; problems are named under `path`."""
        keys = {card.feature_key} if card.feature_key is not None else set()
        reader = Reader()
        check_rate_card_features(reader, card, path, await self._features.facts(namespace, keys), strict=True)
        reader.issues.raise_if_errors()

    async def list_plans(self, namespace: str, data: ListVersionsInput) -> Page:
        return await self._list(namespace, data, tuple(s.value for s in PlanStatus))

    async def update(self, namespace: str, plan_id: str, body: Any) -> Plan:
        plan = await self._live(namespace, plan_id)
        status = plan.status(self._clock())
        if status not in (PlanStatus.DRAFT, PlanStatus.SCHEDULED):
            raise _invalid(
                "status",
                f"only draft or scheduled plans can be updated, this one is {status.value}; "
                "make a new version with POST /api/v1/plans/{key}/next",
                "plan_invalid_status",
            )
        return await self._rewrite(namespace, plan, body)

    async def publish(self, namespace: str, plan_id: str) -> Plan:
        plan = await self._not_deleted(namespace, plan_id)
        now = self._clock()
        status = plan.status(now)
        if status not in (PlanStatus.DRAFT, PlanStatus.SCHEDULED):
            raise _invalid(
                "status",
                f"only draft or scheduled plans can be published, this one is {status.value}",
                "plan_invalid_status",
            )
        # The same rules as at create, now strict (warnings refuse the publish).
        content, _ = await self._checked(namespace, plan.content.document(), None, strict=True)
        issues = Issues()
        for assignment in await self._assignments.list_for_plan(namespace, plan.id):
            addon = await self._addons.get(namespace, assignment.addon_id)
            if addon is None:
                continue
            # The plan must stay compatible with every add-on offered on it.
            check_plan_addon(dataclasses.replace(plan, content=content), addon, assignment.content, now, issues)
        issues.raise_if_errors()
        return await self._publish(namespace, plan, now, supersedes=(PlanStatus.ACTIVE, PlanStatus.SCHEDULED))

    async def guard_feature_archive(self, namespace: str, feature: Feature) -> None:
        """A feature archive guard (FeatureService.archive_guards): not while a published plan
        version that has not ended (active or scheduled) has a rate card of it (OpenMeter's
        ArchiveFeature, a 400)."""
        now = self._clock()
        for plan in await self._versions.list_versions(namespace):
            if plan.status(now) not in (PlanStatus.ACTIVE, PlanStatus.SCHEDULED):
                continue
            for phase in plan.content.phases:
                if any(card.feature_key == feature.key for card in phase.rate_cards):
                    raise _invalid(
                        "feature", "feature is referenced by active plan, it cannot be archived", "feature_in_use"
                    )

    async def next_version(self, namespace: str, id_or_key: str) -> Plan:
        """A new draft copied from the version named by ID, or by key the active (else newest) one."""
        if ULID_RE.match(id_or_key):
            source = await self._live(namespace, id_or_key)
        else:
            versions = [p for p in await self._versions.list_versions(namespace, [id_or_key]) if p.deleted_at is None]
            if not versions:
                raise NotFoundError("plan", id_or_key)
            now = self._clock()
            active = [p for p in versions if p.status(now) is PlanStatus.ACTIVE]
            source = max(active or versions, key=lambda p: p.version)
        return await self.create(namespace, source.content.document())


class AddonService(_CatalogVersions[Addon, AddonInput]):
    def __init__(
        self,
        addons: AddonRepository,
        features: FeatureRepository,
        assignments: PlanAddonRepository,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(
            addons, Addon, _Naming("add-on", "add-ons", "addon"), parse_addon, check_addon, features, clock
        )
        self._assignments = assignments

    async def list_addons(self, namespace: str, data: ListVersionsInput) -> Page:
        return await self._list(namespace, data, tuple(s.value for s in AddonStatus))

    async def update(self, namespace: str, addon_id: str, body: Any) -> Addon:
        addon = await self._live(namespace, addon_id)
        status = addon.status(self._clock())
        if status is not AddonStatus.DRAFT:
            raise _invalid(
                "status", f"only draft add-ons can be updated, this one is {status.value}", "addon_invalid_status"
            )
        return await self._rewrite(namespace, addon, body)

    async def _check_deletable(self, namespace: str, addon: Addon) -> None:
        # As OpenMeter: a plan that offers the add-on would be left offering a deleted one.
        if offered := await self._assignments.list_for_addon(namespace, addon.id):
            raise _invalid(
                "id",
                f"the add-on is offered on {len(offered)} plan(s); remove it from them first",
                "addon_has_plan_assignments",
            )

    async def publish(self, namespace: str, addon_id: str) -> Addon:
        addon = await self._not_deleted(namespace, addon_id)
        now = self._clock()
        status = addon.status(now)
        if status is not AddonStatus.DRAFT:
            raise _invalid(
                "status",
                f"only draft add-ons can be published, this one is {status.value}",
                "addon_invalid_status_for_publish",
            )
        await self._checked(namespace, addon.content.document(), None, strict=True)
        return await self._publish(namespace, addon, now, supersedes=(AddonStatus.ACTIVE,))


class PlanAddonService:
    def __init__(
        self, assignments: PlanAddonRepository, plans: PlanService, addons: AddonService, clock: Clock = utcnow
    ) -> None:
        self._assignments = assignments
        self._plans = plans
        self._addons = addons
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()

    async def _resolve(self, namespace: str, record: PlanAddonRecord) -> PlanAddon:
        addon = await self._addons.get(namespace, record.addon_id)
        plan = await self._plans.get(namespace, record.plan_id)
        issues = Issues()
        check_plan_addon(plan, addon, record.content, self._clock(), issues, editing=False)
        return PlanAddon(record, addon, tuple(issues.errors))

    async def create(self, namespace: str, plan_id: str, body: Any) -> PlanAddon:
        addon_id, data, issues = parse_plan_addon(body, create=True)
        issues.raise_if_errors()
        assert addon_id is not None and data is not None
        plan = await self._plans.get(namespace, plan_id)
        addon = await self._addons.get(namespace, addon_id)
        now = self._clock()
        check_plan_addon(plan, addon, data, now, issues)
        issues.raise_if_errors()
        existing = await self._assignments.list_for_plan(namespace, plan.id)
        if any(r.addon_id == addon.id for r in existing):
            raise ConflictError(f"add-on {addon.key!r} v{addon.version} is already assigned to this plan")
        record = PlanAddonRecord(str(ULID()), namespace, plan.id, addon.id, data, now, now)
        await self._assignments.create(record)
        return PlanAddon(record, addon)

    async def _find(self, namespace: str, plan_id: str, ref: str) -> tuple[Plan, PlanAddonRecord]:
        """`ref` is the assignment's ID, or the assigned add-on's ID or key."""
        plan = await self._plans.get(namespace, plan_id)
        for record in await self._assignments.list_for_plan(namespace, plan.id):
            if ref in (record.id, record.addon_id):
                return plan, record
        for record in await self._assignments.list_for_plan(namespace, plan.id):
            addon = await self._addons.get(namespace, record.addon_id)
            if addon.key == ref:
                return plan, record
        raise NotFoundError("plan add-on", ref)

    async def _find_editable(self, namespace: str, plan_id: str, ref: str) -> tuple[Plan, PlanAddonRecord]:
        """As `_find`, for a change or removal: only a draft (or scheduled) plan's offer may change.
        Otherwise the assignment is answered as not found (404), as OpenMeter's UpdatePlanAddon and
        DeletePlanAddon wrap the plan's status check in a not-found error."""
        plan, record = await self._find(namespace, plan_id, ref)
        status = plan.status(self._clock())
        if plan.deleted_at is not None or status not in (PlanStatus.DRAFT, PlanStatus.SCHEDULED):
            state = "deleted" if plan.deleted_at is not None else status.value
            raise NotFoundError("plan add-on", f"{ref} (its plan is {state}: only a draft plan's add-ons can change)")
        return plan, record

    async def get(self, namespace: str, plan_id: str, ref: str) -> PlanAddon:
        _, record = await self._find(namespace, plan_id, ref)
        return await self._resolve(namespace, record)

    async def list_for_plan(self, namespace: str, plan_id: str, data: ListVersionsInput) -> Page:
        plan = await self._plans.get(namespace, plan_id)
        resolved = [
            await self._resolve(namespace, r)
            for r in await self._assignments.list_for_plan(namespace, plan.id, data.include_deleted)
        ]
        if data.ids:
            resolved = [x for x in resolved if x.record.id in data.ids or x.addon.id in data.ids]
        if data.keys:
            resolved = [x for x in resolved if x.addon.key in data.keys]
        pagination = Pagination(data.page, data.page_size).validate()
        order = parse_order(data.order)
        order_by = parse_order_by(data.order_by, VERSION_ORDER_BY, "id")
        sort: dict[str, Callable[[PlanAddon], Any]] = {
            "id": lambda x: x.record.id,
            "key": lambda x: x.addon.key,
            "version": lambda x: x.addon.version,
            "created_at": lambda x: x.record.created_at,
            "updated_at": lambda x: x.record.updated_at,
        }
        resolved.sort(key=sort[order_by], reverse=order is SortOrder.DESC)
        size = pagination.effective_page_size
        start = (pagination.effective_page - 1) * size
        return Page(resolved[start : start + size], len(resolved), pagination.effective_page, size)

    async def update(self, namespace: str, plan_id: str, ref: str, body: Any) -> PlanAddon:
        _, data, issues = parse_plan_addon(body, create=False)
        issues.raise_if_errors()
        assert data is not None
        plan, record = await self._find_editable(namespace, plan_id, ref)
        addon = await self._addons.get(namespace, record.addon_id)
        now = self._clock()
        check_plan_addon(plan, addon, data, now, issues, require_active_addon=False)
        issues.raise_if_errors()
        updated = dataclasses.replace(record, content=data, updated_at=now)
        await self._assignments.save(updated)
        return await self._resolve(namespace, updated)

    async def delete(self, namespace: str, plan_id: str, ref: str) -> None:
        _, record = await self._find_editable(namespace, plan_id, ref)
        now = self._clock()
        await self._assignments.save(dataclasses.replace(record, deleted_at=now, updated_at=now))
