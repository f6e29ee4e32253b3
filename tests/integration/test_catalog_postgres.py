"""The catalog's services against real Postgres: versions and the one-draft rule under simultaneous
writers (decided by the database's unique indexes), a stored plan reading back exactly, and the
plan add-on rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from ulid import ULID

from adapters.postgres.catalog import PostgresAddonRepository, PostgresPlanAddonRepository, PostgresPlanRepository
from adapters.postgres.db import create_engine, migrate, session_factory
from adapters.postgres.features import PostgresFeatureRepository
from domain.catalog.models import Feature
from domain.catalog.plan_service import AddonService, ListVersionsInput, PlanAddonService, PlanService
from domain.errors import NotFoundError, ValidationError
from domain.wiretime import rfc3339
from tests.support.metering import unique
from tests.support.services import require
from tests.support.stack import create_database, postgres_available

NS = "default"


@dataclass
class Catalog:
    plans: PlanService
    addons: AddonService
    plan_addons: PlanAddonService
    feature: str


@pytest_asyncio.fixture(scope="module")
async def catalog() -> AsyncIterator[Catalog]:
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=8)
    sessions = session_factory(engine)
    features = PostgresFeatureRepository(sessions)
    now = datetime.now(UTC)
    await features.create(Feature(str(ULID()), NS, "tokens", "Tokens", now, now, meter_slug="tokens_total"))
    plan_repository = PostgresPlanRepository(sessions)
    addon_repository = PostgresAddonRepository(sessions)
    assignments = PostgresPlanAddonRepository(sessions)
    plans = PlanService(plan_repository, features, assignments, addon_repository)
    addons = AddonService(addon_repository, features, assignments)
    yield Catalog(plans, addons, PlanAddonService(assignments, plans, addons), "tokens")
    await engine.dispose()


def plan_body(key: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "name": "Pro",
        "currency": "EUR",
        "billingCadence": "P1M",
        "phases": [
            {
                "key": "trial",
                "name": "Trial",
                "duration": "P14D",
                "rateCards": [
                    {"type": "flat_fee", "key": "setup", "name": "Setup", "price": {"type": "flat", "amount": "10"}}
                ],
            },
            {
                "key": "default",
                "name": "Default",
                "rateCards": [
                    {
                        "type": "usage_based",
                        "key": "tokens",
                        "name": "Tokens",
                        "featureKey": "tokens",
                        "billingCadence": "P1M",
                        "price": {
                            "type": "tiered",
                            "mode": "graduated",
                            "minimumAmount": "5",
                            "tiers": [
                                {
                                    "upToAmount": "1000",
                                    "unitPrice": {"type": "unit", "amount": "0.01"},
                                    "flatPrice": {"type": "flat", "amount": "1"},
                                },
                                {"unitPrice": {"type": "unit", "amount": "0.005"}},
                            ],
                        },
                        "discounts": {"percentage": {"percentage": 12.5}, "usage": {"quantity": "100"}},
                        "taxConfig": {"behavior": "inclusive", "taxCodeId": "01G65Z755AFWAKHE12NY0CQ9FH"},
                        "entitlementTemplate": {
                            "type": "metered",
                            "issueAfterReset": 100,
                            "preserveOverageAtReset": True,
                        },
                    },
                ],
            },
        ],
    }
    body.update(overrides)
    return body


async def test_simultaneous_creates_make_one_draft(catalog: Catalog) -> None:
    key = unique("race")
    results = await asyncio.gather(
        *(catalog.plans.create(NS, plan_body(key)) for _ in range(8)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(created) == 1, results
    assert all(isinstance(e, ValidationError) and e.violations[0].code == "plan_draft_exists" for e in refused)
    page = await catalog.plans.list_plans(NS, ListVersionsInput(keys=(key,), include_deleted=True))
    assert [p.id for p in page.items] == [created[0].id]

    # With v1 published, simultaneous creates make exactly one v2 draft.
    await catalog.plans.publish(NS, created[0].id)
    results = await asyncio.gather(
        *(catalog.plans.create(NS, plan_body(key)) for _ in range(8)), return_exceptions=True
    )
    drafts = [r for r in results if not isinstance(r, BaseException)]
    assert [d.version for d in drafts] == [2]


async def test_a_stored_plan_reads_back_exactly(catalog: Catalog) -> None:
    plan = await catalog.plans.create(NS, plan_body(unique("roundtrip")))
    stored = await catalog.plans.get(NS, plan.id)
    assert stored.content == plan.content
    assert stored.rest(catalog.plans.now()) == plan.rest(catalog.plans.now())


async def test_publish_archives_the_previous_version_and_keeps_history(catalog: Catalog) -> None:
    key = unique("history")
    v1 = await catalog.plans.create(NS, plan_body(key))
    await catalog.plans.publish(NS, v1.id)
    v2 = await catalog.plans.next_version(NS, key)
    assert v2.content == v1.content and v2.version == 2
    await catalog.plans.publish(NS, v2.id)
    assert (await catalog.plans.get(NS, v1.id)).status(catalog.plans.now()).value == "archived"
    assert (await catalog.plans.get(NS, key)).id == v2.id
    assert (await catalog.plans.get_version(NS, key, 1)).id == v1.id
    with pytest.raises(NotFoundError):
        await catalog.plans.get_version(NS, key, 7)
    with pytest.raises(ValidationError) as archived_draft:
        await catalog.plans.archive(NS, (await catalog.plans.next_version(NS, key)).id)
    assert archived_draft.value.violations[0].code == "plan_invalid_status"


async def test_plan_addon_rules(catalog: Catalog) -> None:
    addon_body = {
        "key": unique("addon"),
        "name": "Boost",
        "instanceType": "single",
        "currency": "EUR",
        "rateCards": [
            {
                "type": "flat_fee",
                "key": "boost",
                "name": "Boost",
                "billingCadence": "P1M",
                "price": {"type": "flat", "amount": "3"},
            }
        ],
    }
    addon = await catalog.addons.create(NS, addon_body)
    await catalog.addons.publish(NS, addon.id)
    assert (await catalog.addons.get_version(NS, addon_body["key"], 1)).id == addon.id
    usd_addon = await catalog.addons.create(NS, dict(addon_body, key=unique("usd_addon"), currency="USD"))
    await catalog.addons.publish(NS, usd_addon.id)
    weekly = await catalog.addons.create(
        NS, dict(addon_body, key=unique("weekly"), rateCards=[dict(addon_body["rateCards"][0], billingCadence="P1W")])
    )
    await catalog.addons.publish(NS, weekly.id)
    plan = await catalog.plans.create(NS, plan_body(unique("offers")))

    async def refused(addon_id: str, **body: Any) -> set[tuple[str, str]]:
        with pytest.raises(ValidationError) as error:
            await catalog.plan_addons.create(NS, plan.id, {"addonId": addon_id, "fromPlanPhase": "default", **body})
        return {(v.field, v.code) for v in error.value.violations}

    assert ("maxQuantity", "plan_addon_max_quantity_must_not_be_set") in await refused(addon.id, maxQuantity=2)
    assert ("addonId", "plan_addon_currency_mismatch") in await refused(usd_addon.id)
    assert ("addon.rateCards[0].billingCadence", "rate_card_billing_cadence_unaligned") in await refused(weekly.id)
    assigned = await catalog.plan_addons.create(NS, plan.id, {"addonId": addon.id, "fromPlanPhase": "trial"})
    assert assigned.addon.id == addon.id
    page = await catalog.plan_addons.list_for_plan(NS, plan.id, ListVersionsInput())
    assert [a.addon.id for a in page.items] == [addon.id]
    # Publishing keeps it; afterwards the offer is fixed, and OpenMeter answers a change or removal
    # of it as if the assignment were not there (404, planaddon/service/planaddon.go).
    await catalog.plans.publish(NS, plan.id)
    with pytest.raises(NotFoundError):
        await catalog.plan_addons.delete(NS, plan.id, addon.id)
    with pytest.raises(NotFoundError):
        await catalog.plan_addons.update(NS, plan.id, addon.id, {"fromPlanPhase": "default"})
    assert (await catalog.plan_addons.get(NS, plan.id, addon.id)).record.content.from_plan_phase == "trial"


async def test_deleting_a_deleted_version_again_is_a_no_op(catalog: Catalog) -> None:
    """A second DELETE of a plan or add-on version answers as the first did (204), and the version
    keeps the time it was first deleted: a retried request is not an error."""
    plan = await catalog.plans.create(NS, plan_body(unique("redelete")))
    await catalog.plans.delete(NS, plan.id)
    first = (await catalog.plans.get(NS, plan.id)).deleted_at
    await catalog.plans.delete(NS, plan.id)
    assert (await catalog.plans.get(NS, plan.id)).deleted_at == first is not None
    addon = await catalog.addons.create(
        NS,
        {
            "key": unique("redelete_addon"),
            "name": "Boost",
            "instanceType": "single",
            "currency": "EUR",
            "rateCards": [
                {"type": "flat_fee", "key": "boost", "name": "Boost", "price": {"type": "flat", "amount": "3"}}
            ],
        },
    )
    await catalog.addons.delete(NS, addon.id)
    first = (await catalog.addons.get(NS, addon.id)).deleted_at
    await catalog.addons.delete(NS, addon.id)
    assert (await catalog.addons.get(NS, addon.id)).deleted_at == first is not None


async def test_a_deleted_version_cannot_be_published_or_archived(catalog: Catalog) -> None:
    """Publishing or archiving a deleted plan or add-on version is refused as a bad request (400),
    as OpenMeter's PublishPlan, PublishAddon and ArchiveAddon do ("cannot publish a deleted ..."),
    not answered as if the version did not exist."""
    plan = await catalog.plans.create(NS, plan_body(unique("deleted_publish")))
    await catalog.plans.delete(NS, plan.id)
    for action in (catalog.plans.publish, catalog.plans.archive):
        with pytest.raises(ValidationError) as refused:
            await action(NS, plan.id)
        assert [(v.field, v.code) for v in refused.value.violations] == [("id", "plan_deleted")]
    addon = await catalog.addons.create(
        NS,
        {
            "key": unique("deleted_publish_addon"),
            "name": "Boost",
            "instanceType": "single",
            "currency": "EUR",
            "rateCards": [
                {"type": "flat_fee", "key": "boost", "name": "Boost", "price": {"type": "flat", "amount": "3"}}
            ],
        },
    )
    await catalog.addons.delete(NS, addon.id)
    for addon_action in (catalog.addons.publish, catalog.addons.archive):
        with pytest.raises(ValidationError) as refused:
            await addon_action(NS, addon.id)
        assert [(v.field, v.code) for v in refused.value.violations] == [("id", "addon_deleted")]
    assert (await catalog.addons.get(NS, addon.id)).effective_from is None


def addon_body(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": "Boost",
        "instanceType": "single",
        "currency": "EUR",
        "rateCards": [{"type": "flat_fee", "key": "boost", "name": "Boost", "price": {"type": "flat", "amount": "3"}}],
    }


async def refusal(action: Any) -> tuple[str, str, str]:
    """The one violation (field, message, code) a refused lifecycle step answers with."""
    with pytest.raises(ValidationError) as refused:
        await action
    [violation] = refused.value.violations
    return violation.field, violation.message, violation.code


async def not_found(action: Any) -> str:
    with pytest.raises(NotFoundError) as missing:
        await action
    return str(missing.value)


async def test_each_lifecycle_refusal_names_its_own_entity(catalog: Catalog) -> None:
    """Plans and add-ons share a lifecycle but answer its refusals in their own words and codes
    (clients branch on OpenMeter's codes): a plan may be updated while draft or scheduled, an
    add-on only while draft; publishing an add-on that is not a draft has a code of its own."""
    plans, addons = catalog.plans, catalog.addons
    plan_key = unique("refusals")
    plan = await plans.create(NS, plan_body(plan_key))
    assert await refusal(plans.create(NS, plan_body(plan_key))) == (
        "key",
        f"plan {plan_key!r} already has a draft version; update or publish it",
        "plan_draft_exists",
    )
    assert await refusal(plans.archive(NS, plan.id)) == (
        "status",
        "only active plans can be archived, this one is draft",
        "plan_invalid_status",
    )
    await plans.publish(NS, plan.id)
    assert await refusal(plans.update(NS, plan.id, plan_body(plan_key))) == (
        "status",
        "only draft or scheduled plans can be updated, this one is active; "
        "make a new version with POST /api/v1/plans/{key}/next",
        "plan_invalid_status",
    )
    assert await refusal(plans.publish(NS, plan.id)) == (
        "status",
        "only draft or scheduled plans can be published, this one is active",
        "plan_invalid_status",
    )
    assert await refusal(plans.delete(NS, plan.id)) == (
        "status",
        "an active plan cannot be deleted; archive it first",
        "plan_invalid_status",
    )
    assert await not_found(plans.get_version(NS, plan_key, 9)) == f"plan not found: {plan_key} v9"
    assert await not_found(plans.get(NS, "no_such_plan")) == "plan not found: no_such_plan"

    addon_key = unique("refusals_addon")
    addon = await addons.create(NS, addon_body(addon_key))
    assert await refusal(addons.create(NS, addon_body(addon_key))) == (
        "key",
        f"add-on {addon_key!r} already has a draft version; update or publish it",
        "addon_draft_exists",
    )
    assert await refusal(addons.archive(NS, addon.id)) == (
        "status",
        "only active add-ons can be archived, this one is draft",
        "addon_invalid_status",
    )
    await addons.publish(NS, addon.id)
    assert await refusal(addons.update(NS, addon.id, addon_body(addon_key))) == (
        "status",
        "only draft add-ons can be updated, this one is active",
        "addon_invalid_status",
    )
    assert await refusal(addons.publish(NS, addon.id)) == (
        "status",
        "only draft add-ons can be published, this one is active",
        "addon_invalid_status_for_publish",
    )
    assert await refusal(addons.delete(NS, addon.id)) == (
        "status",
        "an active add-on cannot be deleted; archive it first",
        "addon_invalid_status",
    )
    assert await not_found(addons.get_version(NS, addon_key, 9)) == f"add-on not found: {addon_key} v9"
    assert await not_found(addons.get(NS, "no_such_addon")) == "add-on not found: no_such_addon"


async def test_plans_and_add_ons_answer_the_same_version_envelope(catalog: Catalog) -> None:
    """The REST view of a version: the content's document and the version's own fields, the
    effective period and deletion time only once they are set."""
    now = catalog.plans.now()
    for service, body in (
        (catalog.plans, plan_body(unique("envelope"))),
        (catalog.addons, addon_body(unique("envelope_addon"))),
    ):
        draft = await service.create(NS, body)
        view = draft.rest(now)
        assert {name: view[name] for name in ("id", "key", "version", "status", "validationErrors")} == {
            "id": draft.id,
            "key": body["key"],
            "version": 1,
            "status": "draft",
            "validationErrors": [],
        }
        assert not {"effectiveFrom", "effectiveTo", "deletedAt"} & set(view)
        published = await service.publish(NS, draft.id)
        archived = await service.archive(NS, published.id)
        view = archived.rest(catalog.plans.now())
        assert view["status"] == "archived"
        assert view["effectiveFrom"] == rfc3339(published.effective_from)
        assert view["effectiveTo"] == rfc3339(archived.effective_to) == view["updatedAt"]
        assert "deletedAt" not in view
        await service.delete(NS, archived.id)
        deleted = await service.get(NS, archived.id)
        assert deleted.rest(catalog.plans.now())["deletedAt"] == rfc3339(deleted.deleted_at)
