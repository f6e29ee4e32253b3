"""Subscriptions against real Postgres: one per customer at a time (decided by the database, also for
simultaneous creates), edits and lifecycle stored with a revision compare-and-set.

The plan comes from the catalog's own parser (a published plan as the catalog hands it over); the
catalog's REST/gRPC surface is tested in its own suite and end to end in tests/e2e.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import create_engine, migrate, session_factory
from adapters.postgres.subscriptions import PostgresSubscriptionRepository
from domain.catalog.plans import Plan, parse_plan
from domain.customers.models import CustomerInput
from domain.customers.service import CustomerService
from domain.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from domain.subscriptions import edits
from domain.subscriptions.catalog import CatalogRateCards, billing_terms, plan_view
from domain.subscriptions.models import (
    ChangeSubscriptionInput,
    CreateSubscriptionInput,
    PlanSelector,
    Timing,
)
from domain.subscriptions.ports import PlanView
from domain.subscriptions.service import SINGLE_SUBSCRIPTION, SubscriptionService
from domain.subscriptions.timeline import billable_items, current_phase, phases
from domain.subscriptions.wire import expanded_rest
from tests.support.plans import plan_body
from tests.support.services import require
from tests.support.stack import create_database, postgres_available

NS = "default"
START = datetime(2026, 3, 1, 9, tzinfo=UTC)

PLAN = plan_body("pro", "tokens")


class FixedPlans:
    """The catalog's published plans, versioned by key."""

    def __init__(self) -> None:
        self.plans: dict[tuple[str, int], PlanView] = {}

    def publish(self, data: dict[str, Any], version: int) -> PlanView:
        content, issues = parse_plan(data)
        issues.raise_if_errors()
        assert content is not None
        plan = Plan(f"plan-{content.key}-{version}", NS, version, content, START, START, effective_from=START)
        view = plan_view(plan)
        self.plans[(content.key, version)] = view
        return view

    async def active_plan(self, namespace: str, key: str, version: int | None) -> PlanView:
        versions = sorted(v for (k, v) in self.plans if k == key)
        if not versions:
            raise NotFoundError("plan", key)
        return self.plans[(key, version if version is not None else versions[-1])]

    async def check_rate_card(self, namespace: str, rate_card: Any, path: str) -> None:
        return None  # no features here; the catalog's check of an edit's items is tested end to end


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Stack:
    service: SubscriptionService
    customers: CustomerService
    plans: FixedPlans
    clock: Clock


@pytest_asyncio.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=4)
    sessions = session_factory(engine)
    clock = Clock()
    customers = CustomerService(PostgresCustomerRepository(sessions), clock=clock)
    plans = FixedPlans()
    plans.publish(PLAN, 1)
    service = SubscriptionService(
        PostgresSubscriptionRepository(sessions, CatalogRateCards()), plans, customers, CatalogRateCards(), clock=clock
    )
    yield Stack(service, customers, plans, clock)
    await engine.dispose()


async def new_customer(stack: Stack, key: str) -> str:
    customer = await stack.customers.create(NS, CustomerInput(name=key, key=key))
    return customer.id


async def test_create_reads_back_with_its_phases(stack: Stack) -> None:
    stack.clock.now = START
    customer = await new_customer(stack, "c-read")
    created = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-read"))
    got = await stack.service.get(NS, created.id)
    assert got == created
    assert got.status(START) == "active" and got.customer_id == customer
    assert [(p.spec.key, p.active_from, p.active_to) for p in phases(got.spec)] == [
        ("trial", START, datetime(2026, 4, 1, 9, tzinfo=UTC)),
        ("default", datetime(2026, 4, 1, 9, tzinfo=UTC), None),
    ]
    assert [s.id for s in await stack.service.list_for_customer(NS, "c-read")] == [created.id]
    assert await stack.service.customer_ids_with_plan(NS, "pro") >= {customer}


async def test_simultaneous_creates_leave_exactly_one(stack: Stack) -> None:
    stack.clock.now = START
    await new_customer(stack, "c-race")
    attempts = [
        stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-race")) for _ in range(6)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(created) == 1
    assert all(isinstance(r, ConflictError) and r.code == SINGLE_SUBSCRIPTION for r in refused), refused
    assert len(await stack.service.list_for_customer(NS, "c-race")) == 1


async def test_unknown_customer_and_past_start(stack: Stack) -> None:
    with pytest.raises(NotFoundError):
        await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="nobody"))
    await new_customer(stack, "c-past")
    stack.clock.now = START
    with pytest.raises(ValidationError) as caught:
        await stack.service.create(
            CreateSubscriptionInput(
                NS, PlanSelector("pro"), customer_key="c-past", timing=Timing(at=START - timedelta(minutes=3))
            )
        )
    assert caught.value.violations[0].field == "timing"
    ok = await stack.service.create(
        CreateSubscriptionInput(
            NS, PlanSelector("pro"), customer_key="c-past", timing=Timing(at=START - timedelta(minutes=1))
        )
    )
    assert ok.active_from == START - timedelta(minutes=1)


async def test_cancel_unschedule_and_a_successor_after_the_end(stack: Stack) -> None:
    stack.clock.now = START
    await new_customer(stack, "c-cancel")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-cancel"))
    stack.clock.now = START + timedelta(days=10)
    with pytest.raises(ValidationError, match="boundary"):
        await stack.service.cancel(NS, sub.id, Timing(at=START + timedelta(days=20)))
    canceled = await stack.service.cancel(NS, sub.id, Timing(enum="next_billing_cycle"))
    assert canceled.active_to == datetime(2026, 4, 1, 9, tzinfo=UTC)
    assert canceled.status(stack.clock.now) == "canceled"
    # Another subscription may start where this one ends, not before.
    with pytest.raises(ConflictError):
        await stack.service.create(
            CreateSubscriptionInput(
                NS, PlanSelector("pro"), customer_key="c-cancel", timing=Timing(at=START + timedelta(days=15))
            )
        )
    restored = await stack.service.unschedule_cancelation(NS, sub.id)
    assert restored.active_to is None and restored.revision == canceled.revision + 1
    with pytest.raises(ForbiddenError):
        await stack.service.unschedule_cancelation(NS, sub.id)


async def test_an_ended_subscription_is_not_restored_over_its_running_successor(stack: Stack) -> None:
    # Restore deletes the subscriptions "scheduled to start later" (OpenMeter's API; its state machine
    # permits `delete` only while scheduled). Once the customer's next subscription runs, restoring
    # the old one must be refused: it deleted the running successor (its billing and entitlements
    # with it) and revived the old plan behind its back.
    stack.clock.now = START
    await new_customer(stack, "c-restore-ended")
    sub = await stack.service.create(
        CreateSubscriptionInput(NS, PlanSelector("pro", 1), customer_key="c-restore-ended")
    )
    stack.clock.now = START + timedelta(days=10)
    ended, following = await stack.service.change(
        ChangeSubscriptionInput(NS, sub.id, PlanSelector("pro", 1), Timing(enum="next_billing_cycle"))
    )
    stack.clock.now = START + timedelta(days=45)
    assert ended.status(stack.clock.now) == "inactive" and following.status(stack.clock.now) == "active"
    with pytest.raises(ForbiddenError):
        await stack.service.restore(NS, sub.id)
    assert (await stack.service.get(NS, following.id)).deleted_at is None
    assert (await stack.service.get(NS, sub.id)).active_to == ended.active_to


async def test_edit_is_stored_and_a_stale_revision_is_refused(stack: Stack) -> None:
    stack.clock.now = START
    await new_customer(stack, "c-edit")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-edit"))
    stack.clock.now = START + timedelta(days=3)
    card = CatalogRateCards().parse(
        {
            "type": "usage_based",
            "key": "calls",
            "name": "Calls",
            "featureKey": "calls",
            "billingCadence": "P1M",
            "price": {"type": "unit", "amount": "0.01"},
        },
        "customizations[0].rateCard",
    )
    edited = await stack.service.edit(
        NS, sub.id, [edits.AddItem("trial", card, "item-calls")], Timing(enum="immediate")
    )
    again = await stack.service.get(NS, sub.id)
    assert again == edited
    phase = current_phase(again.spec, stack.clock.now)
    assert phase is not None and [i.key for i in phase.spec.items] == ["base", "calls"]
    got = billable_items(sub.id, again.spec, stack.clock.now, billing_terms)
    assert [(b.item_key, b.service_period.start) for b in got] == [("base", START), ("calls", stack.clock.now)]
    # A write based on the old revision loses.
    with pytest.raises(ConflictError):
        await stack.service._repository.update(sub, sub.revision)


async def test_change_ends_the_current_and_starts_the_next_on_the_same_anchor(stack: Stack) -> None:
    stack.clock.now = START
    await new_customer(stack, "c-change")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro", 1), customer_key="c-change"))
    stack.plans.publish({**PLAN, "name": "Pro v2"}, 2)
    stack.clock.now = START + timedelta(days=40)
    current, following = await stack.service.change(
        ChangeSubscriptionInput(NS, sub.id, PlanSelector("pro"), Timing(enum="next_billing_cycle")), migrate=True
    )
    assert current.active_to == datetime(2026, 5, 1, 9, tzinfo=UTC) == following.active_from
    assert following.billing_anchor == sub.billing_anchor and following.plan is not None
    assert following.plan.version == 2
    with pytest.raises(ValidationError):
        await stack.service.change(
            ChangeSubscriptionInput(NS, following.id, PlanSelector("pro", 1), Timing(enum="immediate")), migrate=True
        )
    listed = await stack.service.list_for_customer(NS, "c-change")
    assert [s.id for s in listed] == [sub.id, following.id]


async def test_delete_only_before_start(stack: Stack) -> None:
    stack.clock.now = START
    await new_customer(stack, "c-delete")
    later = await stack.service.create(
        CreateSubscriptionInput(
            NS, PlanSelector("pro"), customer_key="c-delete", timing=Timing(at=START + timedelta(days=5))
        )
    )
    assert later.status(START) == "scheduled"
    await stack.service.delete(NS, later.id)
    with pytest.raises(NotFoundError):
        await stack.service.get(NS, later.id)
    running = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-delete"))
    with pytest.raises(ForbiddenError):
        await stack.service.delete(NS, running.id)


async def test_the_current_aligned_billing_period_ends_with_the_phase(stack: Stack) -> None:
    # Anchored on the 15th, the trial month from Mar 1 ends on Apr 1, inside the billing period
    # Mar 15 - Apr 15: the trial's items bill to Apr 1 and the plan's from it, so the aligned billing
    # period on Mar 20 is Mar 15 - Apr 1 (OpenMeter's currentAlignedBillingPeriod is
    # GetAlignedBillingPeriodAt, cut at the phase). Tally showed Mar 15 - Apr 15.
    stack.clock.now = START
    await new_customer(stack, "c-aligned")
    sub = await stack.service.create(
        CreateSubscriptionInput(
            NS, PlanSelector("pro"), customer_key="c-aligned", billing_anchor=datetime(2026, 1, 15, 9, tzinfo=UTC)
        )
    )
    now = datetime(2026, 3, 20, tzinfo=UTC)
    shown = expanded_rest(sub, now, CatalogRateCards())["alignment"]["currentAlignedBillingPeriod"]
    assert shown == {"from": "2026-03-15T09:00:00Z", "to": "2026-04-01T09:00:00Z"}


async def test_an_edit_at_the_next_billing_cycle_that_falls_in_another_phase_is_refused(stack: Stack) -> None:
    # In the trial's last billing period the next cycle starts the default phase: OpenMeter refuses
    # such an edit (Timing.ValidateForAction: "cannot edit to the next billing cycle as it falls
    # into a different phase", 400). Tally applied it to the default phase, and an edit at the
    # next cycle during a 14-day trial was timed at the cadence's boundary, not the trial's end.
    stack.clock.now = START
    await new_customer(stack, "c-edit-next")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-edit-next"))
    stack.clock.now = START + timedelta(days=3)
    card = CatalogRateCards().parse(
        {
            "type": "flat_fee",
            "key": "support",
            "name": "Support",
            "billingCadence": "P1M",
            "price": {"type": "flat", "amount": "10", "paymentTerm": "in_advance"},
        },
        "customizations[0].rateCard",
    )
    for phase_key in ("default", "trial"):
        with pytest.raises(ValidationError) as refused:
            await stack.service.edit(
                NS, sub.id, [edits.AddItem(phase_key, card, "item-support")], Timing(enum="next_billing_cycle")
            )
        assert refused.value.violations[0].field == "timing"
    assert (await stack.service.get(NS, sub.id)).revision == sub.revision
    # In the default phase, the next cycle is in the same phase: the item starts then.
    stack.clock.now = START + timedelta(days=40)
    edited = await stack.service.edit(
        NS, sub.id, [edits.AddItem("default", card, "item-support")], Timing(enum="next_billing_cycle")
    )
    phase = current_phase(edited.spec, stack.clock.now)
    assert phase is not None
    assert [(i.key, i.active_from) for i in phase.spec.items if i.key == "support"] == [
        ("support", datetime(2026, 5, 1, 9, tzinfo=UTC))
    ]


async def test_actions_a_subscriptions_state_does_not_permit_are_forbidden(stack: Stack) -> None:
    # OpenMeter's SubscriptionStateMachine (subscription/state.go): edit and cancel (change and
    # migrate cancel first) only while active, continue (unschedule-cancelation) only while
    # canceled, delete only while scheduled; anything else is a GenericForbiddenError, 403. Tally
    # answered 400, and moved a canceled subscription's end earlier, changed the plan of a canceled
    # one and canceled one that had not started.
    stack.clock.now = START
    await new_customer(stack, "c-states")
    running = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-states"))
    with pytest.raises(ForbiddenError):
        await stack.service.unschedule_cancelation(NS, running.id)
    with pytest.raises(ForbiddenError):
        await stack.service.delete(NS, running.id)
    stack.clock.now = START + timedelta(days=40)
    canceled = await stack.service.cancel(NS, running.id, Timing(enum="next_billing_cycle"))
    refused = [
        stack.service.cancel(NS, running.id, Timing(enum="immediate")),
        stack.service.change(ChangeSubscriptionInput(NS, running.id, PlanSelector("pro"), Timing(enum="immediate"))),
        stack.service.edit(NS, running.id, [edits.RemovePhase("default", "next")], Timing(enum="immediate")),
        stack.service.delete(NS, running.id),
    ]
    for attempt in refused:
        with pytest.raises(ForbiddenError):
            await attempt
    assert (await stack.service.get(NS, running.id)).revision == canceled.revision

    await new_customer(stack, "c-states-later")
    later = await stack.service.create(
        CreateSubscriptionInput(
            NS,
            PlanSelector("pro"),
            customer_key="c-states-later",
            timing=Timing(at=stack.clock.now + timedelta(days=5)),
        )
    )
    for attempt in (
        stack.service.cancel(NS, later.id, Timing(enum="next_billing_cycle")),
        stack.service.cancel(NS, later.id, Timing(enum="immediate")),
        stack.service.edit(NS, later.id, [edits.RemovePhase("default", "next")], Timing(enum="immediate")),
    ):
        with pytest.raises(ForbiddenError):
            await attempt
    assert (await stack.service.get(NS, later.id)).revision == later.revision
    stack.clock.now = datetime(2026, 6, 1, 9, tzinfo=UTC)  # the first one has ended
    for attempt in (
        stack.service.cancel(NS, running.id, Timing(enum="immediate")),
        stack.service.unschedule_cancelation(NS, running.id),
    ):
        with pytest.raises(ForbiddenError):
            await attempt


async def test_an_edit_adding_an_item_of_an_unaligned_cadence_is_refused(stack: Stack) -> None:
    # A weekly fee on a monthly subscription: publishing such a plan is refused, and so is an edit
    # that adds one (OpenMeter's EditRunning runs SubscriptionSpec.ValidateAlignment: 400
    # rate_card_billing_cadence_unaligned). Tally stored it and billed weeks that straddle the
    # subscription's billing periods.
    stack.clock.now = START
    await new_customer(stack, "c-unaligned")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-unaligned"))
    stack.clock.now = START + timedelta(days=3)

    def fee(cadence: str) -> Any:
        return CatalogRateCards().parse(
            {
                "type": "flat_fee",
                "key": "support",
                "name": "Support",
                "billingCadence": cadence,
                "price": {"type": "flat", "amount": "10", "paymentTerm": "in_advance"},
            },
            "customizations[1].rateCard",
        )

    with pytest.raises(ValidationError) as refused:
        await stack.service.edit(
            NS,
            sub.id,
            [edits.RemoveItem("trial", "base"), edits.AddItem("trial", fee("P1W"), "item-weekly")],
            Timing(enum="immediate"),
        )
    assert [(v.field, v.code) for v in refused.value.violations] == [
        ("customizations[1].rateCard.billingCadence", "rate_card_billing_cadence_unaligned")
    ]
    assert (await stack.service.get(NS, sub.id)).revision == sub.revision
    # Aligned cadences (a day, a year) are taken.
    await stack.service.edit(NS, sub.id, [edits.AddItem("trial", fee("P1D"), "item-daily")], Timing(enum="immediate"))


async def test_create_subscribes_to_the_active_version_whatever_version_is_asked(stack: Stack) -> None:
    # OpenMeter's create maps only the plan's key (productcatalog/subscription/http/create.go:
    # PlanRefInput{Key}), so a subscription starts on the plan's active version: `plan.version` is
    # ignored. Tally subscribed to the version asked for, an archived one (its old prices) included.
    stack.plans.publish(plan_body("solo", "tokens"), 1)
    stack.plans.publish({**plan_body("solo", "tokens", base="59"), "name": "Solo v2"}, 2)
    stack.clock.now = START
    await new_customer(stack, "c-version")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("solo", 1), customer_key="c-version"))
    assert sub.plan is not None and (sub.plan.key, sub.plan.version) == ("solo", 2)
    assert sub.name == "Solo v2"


async def test_change_to_an_archived_plan_version_is_refused(stack: Stack) -> None:
    # OpenMeter's ChangeToPlan (productcatalog/subscription/service/change.go) takes the version
    # asked for only while it is active: 400 "plan ... is not active" for an archived one (migrate
    # may go to an archived version, change may not). Tally moved the customer onto the archived
    # version's old prices.
    stack.plans.publish(plan_body("duo", "tokens"), 1)
    stack.plans.publish({**plan_body("duo", "tokens", base="59"), "name": "Duo v2"}, 2)
    stack.clock.now = START
    await new_customer(stack, "c-archived")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-archived"))
    stack.clock.now = START + timedelta(days=40)
    with pytest.raises(ValidationError) as refused:
        await stack.service.change(
            ChangeSubscriptionInput(NS, sub.id, PlanSelector("duo", 1), Timing(enum="next_billing_cycle"))
        )
    assert refused.value.violations[0].field == "plan.version"
    assert (await stack.service.get(NS, sub.id)).active_to is None
    _, following = await stack.service.change(
        ChangeSubscriptionInput(NS, sub.id, PlanSelector("duo", 2), Timing(enum="next_billing_cycle"))
    )
    assert following.plan is not None and following.plan.version == 2


async def test_a_customer_billed_in_another_currency_cannot_subscribe_to_a_priced_plan(stack: Stack) -> None:
    # OpenMeter's validateCreate (subscription/service/servicevalidation.go): a subscription with
    # billables (an item with a price) takes the customer's currency when the customer has one,
    # else 400 "currency mismatch". Tally subscribed a EUR customer to a USD plan, whose invoices
    # would then be in USD.
    stack.clock.now = START
    await stack.customers.create(NS, CustomerInput(name="c-eur", key="c-eur", currency="EUR"))
    with pytest.raises(ValidationError, match="currency"):
        await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-eur"))
    assert await stack.service.list_for_customer(NS, "c-eur") == []
    # The same currency, or a customer without one, subscribes.
    await stack.customers.create(NS, CustomerInput(name="c-usd", key="c-usd", currency="USD"))
    assert (
        await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-usd"))
    ).currency == "USD"
    # A plan without prices bills nothing: any customer may take it.
    free = plan_body("free_eur", "tokens")
    free["phases"] = [
        {
            "key": "default",
            "name": "Default",
            "rateCards": [{"type": "flat_fee", "key": "badge", "name": "Badge", "billingCadence": None, "price": None}],
        }
    ]
    stack.plans.publish(free, 1)
    assert (
        await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("free_eur"), customer_key="c-eur"))
    ).currency == "USD"


async def test_a_change_to_a_plan_in_another_currency_than_the_customers_is_refused(stack: Stack) -> None:
    # OpenMeter's ChangeToPlan creates the next subscription with CreateFromPlan, which validates
    # it as a create (subscription/service/servicevalidation.go, validateCreate): the customer's
    # currency against the plan's.
    stack.plans.publish({**plan_body("euro", "tokens"), "currency": "EUR"}, 1)
    stack.clock.now = START
    await stack.customers.create(NS, CustomerInput(name="c-usd-change", key="c-usd-change", currency="USD"))
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-usd-change"))
    stack.clock.now = START + timedelta(days=10)
    with pytest.raises(ValidationError, match="currency"):
        await stack.service.change(ChangeSubscriptionInput(NS, sub.id, PlanSelector("euro"), Timing(enum="immediate")))
    assert (await stack.service.get(NS, sub.id)).active_to is None


async def test_an_edit_without_customizations_is_refused(stack: Stack) -> None:
    # OpenMeter's edit handler (productcatalog/subscription/http/edit.go) answers 400 "missing
    # customizations" for an empty list. Tally stored a new revision that changed nothing (and woke
    # the billing sync for it).
    stack.clock.now = START
    await new_customer(stack, "c-edit-empty")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-edit-empty"))
    with pytest.raises(ValidationError) as refused:
        await stack.service.edit(NS, sub.id, [], Timing(enum="immediate"))
    assert refused.value.violations[0].field == "customizations"
    assert (await stack.service.get(NS, sub.id)).revision == sub.revision


async def test_a_change_does_not_carry_the_current_subscriptions_metadata_over(stack: Stack) -> None:
    # OpenMeter's change handler (productcatalog/subscription/http/change.go) gives the next
    # subscription the request's metadata, none when it has none (ChangeToPlan creates it from the
    # plan with that input); only migrate keeps the current subscription's (service/migrate.go).
    stack.clock.now = START
    await new_customer(stack, "c-change-meta")
    sub = await stack.service.create(
        CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-change-meta", metadata={"crm": "42"})
    )
    stack.clock.now = START + timedelta(days=10)
    _, following = await stack.service.change(
        ChangeSubscriptionInput(NS, sub.id, PlanSelector("pro"), Timing(enum="next_billing_cycle"))
    )
    assert following.metadata == {}


async def test_only_priced_items_show_a_currency(stack: Stack) -> None:
    # The reference contract's SubscriptionItem.currency is "present for priced items": OpenMeter
    # materializes a rate card's currency only when it has a price (SubscriptionSpec.validateCurrencies
    # refuses a currency on an unpriced one, subscription/subscriptionspec.go) and the item shows it
    # only when set (MapSubscriptionItemToAPI, productcatalog/subscription/http/mapping.go). Tally
    # gave every item the subscription's currency, a free one included.
    body = plan_body("badged", "tokens")
    body["phases"][1]["rateCards"].append(
        {"type": "flat_fee", "key": "badge", "name": "Badge", "billingCadence": None, "price": None}
    )
    stack.plans.publish(body, 1)
    stack.clock.now = START
    await new_customer(stack, "c-badge")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("badged"), customer_key="c-badge"))
    shown = expanded_rest(sub, START + timedelta(days=40), CatalogRateCards())
    items = {i["key"]: i for i in shown["phases"][1]["items"]}
    assert items["base"]["currency"] == "USD" and items["tokens"]["currency"] == "USD"
    assert "currency" not in items["badge"]
    assert "currency" not in shown["phases"][1]["itemTimelines"]["badge"][0]


async def test_an_empty_name_takes_the_plans(stack: Stack) -> None:
    # OpenMeter's create handler reads `name` as lo.FromPtr (an empty string when absent or empty)
    # and CreateFromPlan takes lo.CoalesceOrEmpty(name, plan name) (subscription/workflow/service/
    # subscription.go): an empty name is the plan's, as an absent one. Tally refused it with 400.
    stack.plans.publish(plan_body("named", "tokens"), 1)
    stack.clock.now = START
    await new_customer(stack, "c-empty-name")
    sub = await stack.service.create(
        CreateSubscriptionInput(NS, PlanSelector("named"), customer_key="c-empty-name", name="")
    )
    assert sub.name == "Named"


async def test_an_edit_is_refused_while_the_customer_is_billed_in_another_currency(stack: Stack) -> None:
    # OpenMeter's validateUpdate (subscription/service/servicevalidation.go), which every edit runs
    # through (EditRunning -> Service.Update), checks the customer's currency against the
    # subscription's as create does: 400 "currency mismatch" once the customer is billed in another.
    stack.clock.now = START
    await new_customer(stack, "c-edit-eur")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-edit-eur"))
    await stack.customers.update(NS, "c-edit-eur", CustomerInput(name="c-edit-eur", key="c-edit-eur", currency="EUR"))
    stack.clock.now = START + timedelta(days=3)
    card = CatalogRateCards().parse(
        {
            "type": "flat_fee",
            "key": "setup",
            "name": "Setup",
            "billingCadence": None,
            "price": {"type": "flat", "amount": "10", "paymentTerm": "in_advance"},
        },
        "customizations[0].rateCard",
    )
    with pytest.raises(ValidationError, match="currency"):
        await stack.service.edit(NS, sub.id, [edits.AddItem("trial", card, "item-setup")], Timing(enum="immediate"))
    assert (await stack.service.get(NS, sub.id)).revision == sub.revision


async def test_a_cancel_or_change_at_a_past_billing_boundary_is_refused(stack: Stack) -> None:
    # OpenMeter's cancel checks only that a custom time is a billing-period boundary; ending a
    # subscription before now would take back service already given and billed, so Tally refuses
    # it (docs/billing.md, subscriptions' deliberate differences).
    stack.clock.now = START
    await new_customer(stack, "c-past-cancel")
    sub = await stack.service.create(CreateSubscriptionInput(NS, PlanSelector("pro"), customer_key="c-past-cancel"))
    stack.clock.now = START + timedelta(days=40)
    boundary = datetime(2026, 4, 1, 9, tzinfo=UTC)
    with pytest.raises(ValidationError) as canceled:
        await stack.service.cancel(NS, sub.id, Timing(at=boundary))
    assert canceled.value.violations[0].code == "invalid_timing"
    with pytest.raises(ValidationError) as changed:
        await stack.service.change(ChangeSubscriptionInput(NS, sub.id, PlanSelector("pro"), Timing(at=boundary)))
    assert changed.value.violations[0].code == "invalid_timing"
    assert (await stack.service.get(NS, sub.id)).active_to is None
