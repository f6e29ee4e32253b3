"""Active windows (activeFrom/activeTo) and subscription-managed entitlements, against real Postgres
and chDB with a controlled clock, through the domain API subscriptions use.

OpenMeter's rules: an entitlement is active in [activeFrom, activeTo) and not deleted; outside that
window its value is {"hasAccess": false}; a feature key resolves to the entitlement active at the
asked time; windows of one customer and feature key may follow each other but never overlap; the
balance worker skips entitlements that have not started or have ended; entitlements annotated with
a subscription cannot be deleted, overridden or given grants through the public API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from adapters.postgres.subscriptions import PostgresSubscriptionRepository
from domain.catalog.models import FeatureCreateInput
from domain.catalog.plans import Plan, parse_plan
from domain.customers.models import Customer, CustomerInput
from domain.customers.service import CustomerService
from domain.entitlements.models import (
    Entitlement,
    EntitlementInput,
    GrantInput,
    HistoryInput,
    ListEntitlementsInput,
    ListGrantsInput,
    RecurrenceInput,
    ResetInput,
)
from domain.entitlements.recurrence import IsoDuration
from domain.entitlements.service import EntitlementService
from domain.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from domain.metering.events import IngestLimits, validate_batch
from domain.metering.models import MeterCreateInput
from domain.subscriptions import edits
from domain.subscriptions.addons import AddonOffer
from domain.subscriptions.catalog import CatalogRateCards, billing_terms, plan_view
from domain.subscriptions.entitlements import EntitlementBridge
from domain.subscriptions.models import (
    ChangeSubscriptionInput,
    CreateSubscriptionInput,
    PlanRef,
    PlanSelector,
    Subscription,
    Timing,
)
from domain.subscriptions.ports import PlanView
from domain.subscriptions.service import SubscriptionService
from domain.subscriptions.timeline import billable_items
from tests.integration.test_value_cache import NS, START, Clock, Stack, stack
from tests.support.entitlements import entitlement_parts
from tests.support.services import require_module
from workers.billing import BillingWorker
from workers.sink import EventSink

require_module("chdb")

__all__ = ["stack"]  # the module-scoped fixture, shared with the value-cache tests


def metered(feature_key: str, issue: int) -> EntitlementInput:
    return EntitlementInput(
        type="metered", feature_key=feature_key, usage_period=RecurrenceInput("DAY"), issue_after_reset=issue, v2=True
    )


async def flush(stack: Stack | SubStack, subject: str, *events: tuple[timedelta, int]) -> None:
    """Events of `subject` at the clock's time plus each offset, stored as received now."""
    base = stack.clock.now
    raws = [
        {
            "specversion": "1.0",
            "id": f"{subject}-{offset.total_seconds()}-{n}",
            "source": "windows",
            "type": "call",
            "subject": subject,
            "time": (base + offset).isoformat(),
            "data": {"n": n},
        }
        for offset, n in events
    ]
    await stack.sink.flush(validate_batch(raws, NS, base, IngestLimits()))


def triple(value: object) -> tuple[object, ...]:
    return (
        getattr(value, "has_access", None),
        getattr(value, "balance", None),
        getattr(value, "usage", None),
    )


async def test_managed_entitlements_follow_each_other_and_answer_only_inside_their_window(stack: Stack) -> None:
    svc, ref, clock = stack.cached, stack.reference, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="sched_calls", name="Scheduled calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Sched", key="sched", subject_keys=["sched"]))
    c0 = clock.now
    first = await svc.create_managed(
        NS,
        customer,
        metered("sched_calls", 100),
        subscription_id="sub_1",
        active_from=c0 + timedelta(hours=1),
        active_to=c0 + timedelta(hours=3),
    )
    second = await svc.create_managed(
        NS,
        customer,
        metered("sched_calls", 50),
        subscription_id="sub_1",
        active_from=c0 + timedelta(hours=3),
        annotations={"subscription.item.id": "item_2", "subscription.id": "not this one"},
    )
    assert second.annotations == {"subscription.item.id": "item_2", "subscription.id": "sub_1"}
    assert [e.id for e in await svc.managed_for(NS, customer.id, "sub_1")] == [first.id, second.id]
    assert await svc.managed_for(NS, customer.id, "sub_other") == []
    assert first.annotations == {"subscription.id": "sub_1"} and first.subscription_managed
    # A scheduled entitlement measures usage from its start, and its issueAfterReset grant starts there.
    assert first.measure_usage_from == c0 + timedelta(hours=1)
    assert (second.active_from, second.active_to) == (c0 + timedelta(hours=3), None)

    # Windows never overlap, whoever asks: the conflict names the entitlement in the way.
    with pytest.raises(ConflictError) as clash:
        await svc.create_managed(
            NS, customer, metered("sched_calls", 1), subscription_id="sub_2", active_from=c0 + timedelta(hours=2)
        )
    assert clash.value.conflicting_id == first.id
    with pytest.raises(ConflictError) as public:
        await svc.create(NS, customer, metered("sched_calls", 1))
    assert public.value.conflicting_id == first.id
    with pytest.raises(ValidationError):
        await svc.create_managed(
            NS,
            customer,
            metered("sched_calls", 1),
            subscription_id="sub_2",
            active_from=c0 + timedelta(hours=9),
            active_to=c0 + timedelta(hours=8),
        )

    # Before the first starts: no entitlement of the key is active, and by id it has no access.
    with pytest.raises(NotFoundError):
        await svc.for_customer(NS, customer, "sched_calls")
    assert triple(await svc.value(NS, first)) == (False, None, None)
    await flush(stack, "sched", (timedelta(minutes=30), 5))
    assert await stack.worker.drain() == 0  # nothing active to recompute

    # Inside the first window: usage from its start only (the event at +30 min is before it).
    clock.now = c0 + timedelta(hours=2)
    await flush(stack, "sched", (timedelta(minutes=-30), 7))
    assert (await svc.for_customer(NS, customer, "sched_calls")).id == first.id
    got = await svc.value(NS, first)
    assert (got.has_access, got.balance, got.usage) == (True, Decimal(93), Decimal(7))
    assert triple(got) == triple(await ref.value(NS, first))
    assert await stack.worker.drain() == 1

    # Past the boundary, with no write in between: the key resolves to the second one (the cached
    # look-up expires at the first one's activeTo), the first gives no access.
    clock.now = c0 + timedelta(hours=3, minutes=30)
    await flush(stack, "sched", (timedelta(minutes=-10), 11))
    assert (await svc.for_customer(NS, customer, "sched_calls")).id == second.id
    assert triple(await svc.value(NS, first)) == (False, None, None)
    now_value = await svc.value(NS, second)
    assert (now_value.balance, now_value.usage) == (Decimal(39), Decimal(11))
    assert triple(now_value) == triple(await ref.value(NS, second))
    assert await stack.worker.drain() == 1  # only the second: the first has ended

    # Values at an explicit time resolve the key at that time, as OpenMeter does.
    at = c0 + timedelta(hours=2)
    assert (await svc.for_customer(NS, customer, "sched_calls", at)).id == first.id
    past = await svc.value(NS, first, at)
    assert (past.has_access, past.usage) == (True, Decimal(7))
    with pytest.raises(NotFoundError):
        await svc.for_customer(NS, customer, "sched_calls", c0 + timedelta(minutes=30))

    # An ended entitlement's history stops where it ended.
    history = await svc.history(NS, first, HistoryInput(window_size="MINUTE"))
    assert history.windows[-1].end == c0 + timedelta(hours=3)
    assert sum(w.usage for w in history.windows) == Decimal(7)

    # The public API may not delete, override or grant to a managed entitlement (403).
    with pytest.raises(ForbiddenError):
        await svc.delete(NS, second)
    with pytest.raises(ForbiddenError):
        await svc.create_grant(NS, second, GrantInput(amount=5, effective_at=clock.now, v2=True))
    with pytest.raises(ForbiddenError):
        await svc.override(NS, customer, "sched_calls", metered("sched_calls", 1))

    # Subscriptions end and replace them through the managed API.
    ended = await svc.end_managed(NS, second.id, c0 + timedelta(hours=5))
    assert ended.active_to == c0 + timedelta(hours=5)
    third = await svc.create_managed(
        NS, customer, metered("sched_calls", 10), subscription_id="sub_2", active_from=c0 + timedelta(hours=5)
    )
    with pytest.raises(ConflictError) as moved:
        await svc.end_managed(NS, second.id, c0 + timedelta(hours=6))
    assert moved.value.conflicting_id == third.id
    with pytest.raises(ValidationError):
        await svc.end_managed(NS, third.id, c0 + timedelta(hours=4))
    clock.now = c0 + timedelta(hours=5, minutes=1)
    assert (await svc.for_customer(NS, customer, "sched_calls")).id == third.id
    assert triple(await svc.value(NS, await svc.get(NS, second.id))) == (False, None, None)
    await svc.delete_managed(NS, third.id)
    with pytest.raises(NotFoundError):
        await svc.for_customer(NS, customer, "sched_calls")

    # The managed API only acts on managed entitlements.
    plain = await svc.create(NS, customer, metered("sched_calls", 3))
    with pytest.raises(ForbiddenError):
        await svc.end_managed(NS, plain.id, clock.now + timedelta(hours=1))
    with pytest.raises(ForbiddenError):
        await svc.delete_managed(NS, plain.id)


async def test_value_before_the_entitlement_existed_has_no_access(stack: Stack) -> None:
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="early_calls", name="Early calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Early", key="early", subject_keys=["early"]))
    created_at = clock.now
    data = EntitlementInput(
        type="metered",
        feature_key="early_calls",
        usage_period=RecurrenceInput("DAY", created_at - timedelta(hours=6)),
        measure_usage_from=(created_at - timedelta(hours=2)).isoformat(),
        issue_after_reset=20,
        v2=True,
    )
    entitlement = await svc.create(NS, customer, data)
    assert entitlement.active_from == created_at
    await flush(stack, "early", (timedelta(hours=-1), 4))

    # Usage measured from before creation still counts now...
    now = await svc.value(NS, entitlement)
    assert (now.has_access, now.balance, now.usage) == (True, Decimal(16), Decimal(4))
    # ...but at a time before the entitlement existed there was no entitlement: no access, no
    # balance, and the feature key resolves to nothing.
    before = created_at - timedelta(minutes=30)
    assert triple(await svc.value(NS, entitlement, before)) == (False, None, None)
    with pytest.raises(NotFoundError):
        await svc.for_customer(NS, customer, "early_calls", before)
    assert (await svc.for_customer(NS, customer, "early_calls", created_at)).id == entitlement.id


async def test_archived_feature_is_still_recomputed_and_customer_delete_guard(stack: Stack) -> None:
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="old_calls", name="Old calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Old", key="old", subject_keys=["old"]))
    entitlement = await svc.create(NS, customer, metered("old_calls", 10))
    await svc.features.archive(NS, "old_calls")
    await stack.worker.drain()  # what earlier tests left announced
    # The balance worker still finds entitlements of an archived feature when their usage changes.
    clock.now += timedelta(minutes=2)
    await flush(stack, "old", (timedelta(seconds=-30), 4))
    assert await stack.worker.drain() == 1
    value = await svc.value(NS, entitlement)
    assert (value.has_access, value.balance, value.usage) == (True, Decimal(6), Decimal(4))
    # New entitlements on it are refused.
    other = await svc.customers.create(NS, CustomerInput(name="New", key="new", subject_keys=["new"]))
    with pytest.raises(NotFoundError):
        await svc.create(NS, other, metered("old_calls", 1))

    # A customer with an entitlement active now cannot be deleted...
    with pytest.raises(ConflictError) as refused:
        await svc.customers.delete(NS, "old")
    assert "still has active entitlements" in refused.value.message
    # ...one whose only entitlement starts later can (OpenMeter counts those active now).
    await svc.features.create(NS, FeatureCreateInput(key="later_calls", name="Later", meter_slug="calls"))
    await svc.create_managed(
        NS, other, metered("later_calls", 1), subscription_id="sub_9", active_from=clock.now + timedelta(days=1)
    )
    await svc.customers.delete(NS, "new")
    await svc.delete(NS, entitlement)
    await svc.customers.delete(NS, "old")


async def test_concurrent_creates_leave_one_active_entitlement(stack: Stack) -> None:
    # The unique index gave way to an overlap check under an advisory lock: racing creates of the
    # same customer and feature must still end with exactly one, the others told which one.
    svc = stack.cached
    await svc.features.create(NS, FeatureCreateInput(key="race_calls", name="Race", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Race", key="race", subject_keys=["race"]))
    results = await asyncio.gather(
        *(svc.create(NS, customer, metered("race_calls", 1)) for _ in range(6)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    conflicts = [r for r in results if isinstance(r, ConflictError)]
    assert len(created) == 1 and len(conflicts) == 5, results
    assert {c.conflicting_id for c in conflicts} == {created[0].id}


async def test_history_counts_usage_from_its_from_to_its_to_in_whole_windows(stack: Stack) -> None:
    # Windows are whole hours, but only [from, to) counts: an entitlement created at hh:37 (its
    # measurement and usage period start) keeps its first, partial hour (it was dropped), and a
    # `to` inside an hour leaves out what came after it (it was counted).
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="hist_calls", name="History calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Hist", key="hist", subject_keys=["hist"]))
    hour = clock.now.replace(minute=0) + timedelta(hours=2)
    clock.now = hour + timedelta(minutes=37)
    entitlement = await svc.create(NS, customer, metered("hist_calls", 100))
    assert entitlement.measure_usage_from == clock.now
    clock.now = hour + timedelta(hours=2, minutes=37)
    await flush(stack, "hist", (timedelta(minutes=-110), 8), (timedelta(minutes=-60), 2))  # hh:47, hh+1:37

    whole = await svc.history(NS, entitlement, HistoryInput(window_size="HOUR"))
    assert [(w.start - hour, w.usage, w.balance_at_start) for w in whole.windows] == [
        (timedelta(0), Decimal(8), Decimal(100)),
        (timedelta(hours=1), Decimal(2), Decimal(92)),
        (timedelta(hours=2), Decimal(0), Decimal(90)),
    ]
    cut = await svc.history(NS, entitlement, HistoryInput(window_size="HOUR", to=hour + timedelta(hours=1, minutes=10)))
    assert [(w.start - hour, w.usage) for w in cut.windows] == [
        (timedelta(0), Decimal(8)),
        (timedelta(hours=1), Decimal(0)),
    ]


async def test_history_in_monthly_windows(stack: Stack) -> None:
    # OpenMeter's history takes windowSize MONTH (its WindowSize enum, truncated to the first of the
    # month and stepped a calendar month); it was refused with a validation error here.
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="month_calls", name="Month calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Month", key="month", subject_keys=["month"]))
    index = clock.now.year * 12 + clock.now.month + 1  # the first of the month after next
    m0 = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    m1 = datetime((index + 1) // 12, (index + 1) % 12 + 1, 1, tzinfo=UTC)
    clock.now = m0 + timedelta(hours=1)
    data = EntitlementInput(
        type="metered",
        feature_key="month_calls",
        usage_period=RecurrenceInput("YEAR", m0),
        measure_usage_from="CURRENT_PERIOD_START",
        issue_after_reset=1000,
        v2=True,
    )
    entitlement = await svc.create(NS, customer, data)
    clock.now = m1 + timedelta(days=2, minutes=37)
    await flush(stack, "month", (m0 + timedelta(days=5) - clock.now, 10), (m1 + timedelta(days=1) - clock.now, 20))

    history = await svc.history(NS, entitlement, HistoryInput(window_size="MONTH"))
    assert [(w.start, w.end, w.usage, w.balance_at_start) for w in history.windows] == [
        (m0, m1, Decimal(10), Decimal(1000)),
        (m1, datetime((index + 2) // 12, (index + 2) % 12 + 1, 1, tzinfo=UTC), Decimal(20), Decimal(990)),
    ]
    # In a time zone the months are its calendar's: from New York's first of the month on.
    ny = ZoneInfo("America/New_York")
    local = [datetime(m.year, m.month, 1, tzinfo=ny) for m in (m0, m1)]
    local.append(datetime((index + 2) // 12, (index + 2) % 12 + 1, 1, tzinfo=ny))
    zoned = await svc.history(
        NS, entitlement, HistoryInput(window_size="MONTH", from_=local[0], window_time_zone="America/New_York")
    )
    assert [(w.start, w.end, w.usage, w.balance_at_start) for w in zoned.windows] == [
        (local[0], local[1], Decimal(10), Decimal(1000)),
        (local[1], local[2], Decimal(20), Decimal(990)),
    ]


async def test_history_from_the_last_reset_starts_after_its_rollover(stack: Stack) -> None:
    # OpenMeter's metered/balance_test.go "defaulting to the last reset": history from a reset
    # starts with the state after it (the balance at `from` is computed up to and including the
    # reset), so the burn-down has one segment and no zero-length rollover segment at `from`; it
    # listed the rollover (balance 0) first.
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="reset_calls", name="Reset calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Reset", key="resetter", subject_keys=["resetter"]))
    start = clock.now.replace(minute=0) + timedelta(hours=3)
    clock.now = start
    data = EntitlementInput(type="metered", feature_key="reset_calls", usage_period=RecurrenceInput("YEAR", start))
    entitlement = await svc.create(NS, customer, data)
    await svc.create_grant(
        NS,
        entitlement,
        GrantInput(amount=10000, effective_at=start, priority=1, expiration_duration="DAY", expiration_count=3),
    )
    reset_at = start + timedelta(hours=2)
    clock.now = reset_at
    await flush(stack, "resetter", (timedelta(minutes=1) - (reset_at - start), 100))
    await svc.reset(NS, entitlement, ResetInput(effective_at=reset_at, retain_anchor=True))
    entitlement = await svc.get(NS, entitlement.id)
    query_at = start + timedelta(hours=12)
    clock.now = query_at
    minute, second = timedelta(minutes=1), timedelta(seconds=1)
    hours = [timedelta(hours=h) + minute - (query_at - start) for h in (2, 3, 5, 8)]
    await flush(stack, "resetter", *zip(hours, (100, 100, 100, 1100), strict=True), (-second, 100))
    await svc.create_grant(
        NS,
        entitlement,
        GrantInput(amount=10000, effective_at=reset_at, priority=1, expiration_duration="DAY", expiration_count=3),
    )

    history = await svc.history(NS, entitlement, HistoryInput(window_size="HOUR", to=query_at))
    assert [(w.start - start, w.usage, w.balance_at_start) for w in history.windows] == [
        (timedelta(hours=h), Decimal(u), Decimal(b))
        for h, u, b in [
            (2, 100, 10000),
            (3, 100, 9900),
            (4, 0, 9800),
            (5, 100, 9800),
            (6, 0, 9700),
            (7, 0, 9700),
            (8, 1100, 9700),
            (9, 0, 8600),
            (10, 0, 8600),
            (11, 100, 8600),
        ]
    ]
    assert [(s.start, s.end, s.balance_at_start) for s in history.segments] == [(reset_at, query_at, Decimal(10000))]
    # From inside a segment ("doesn't coincide with history breakpoints"): the burn-down starts at
    # `from` with the balance there, not at the segment's own start.
    later = await svc.history(NS, entitlement, HistoryInput(window_size="HOUR", from_=reset_at + timedelta(hours=1)))
    assert [(s.start, s.end, s.usage, s.balance_at_start) for s in later.segments] == [
        (reset_at + timedelta(hours=1), query_at, Decimal(1400), Decimal(9900))
    ]
    assert later.windows[0].balance_at_start == Decimal(9900)


async def test_a_reset_at_a_scheduled_period_start_is_allowed(stack: Stack) -> None:
    # OpenMeter's metered/reset_test.go "Should be able to reset at a programmatic reset time": a
    # daily entitlement reset at 00:00 when it is 00:01 succeeds (it was refused as "the same minute
    # as the last reset"); only the minute of the last reset made, or of the start of measurement,
    # is refused.
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="midnight_calls", name="Midnight", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Midnight", key="midnight", subject_keys=["midnight"]))
    start = clock.now.replace(hour=0, minute=0) + timedelta(days=5)
    clock.now = start
    data = EntitlementInput(type="metered", feature_key="midnight_calls", usage_period=RecurrenceInput("DAY", start))
    entitlement = await svc.create(NS, customer, data)
    midnight = start + timedelta(days=2)
    clock.now = midnight + timedelta(minutes=1)
    await svc.reset(NS, entitlement, ResetInput(effective_at=midnight, retain_anchor=False))
    entitlement = await svc.get(NS, entitlement.id)
    assert entitlement.current_interval_and_anchor() == (IsoDuration.parse("P1D"), midnight)
    with pytest.raises(ValidationError) as exc:
        await svc.reset(NS, entitlement, ResetInput(effective_at=midnight + timedelta(seconds=30)))
    assert exc.value.violations[0].code == "same_minute"


async def test_a_reset_seconds_in_the_future_is_refused(stack: Stack) -> None:
    # OpenMeter's ResetUsageForOwner refuses an `at` after now before it truncates it to the minute:
    # a reset 30 seconds ahead answers 400. It was truncated first, to a minute not after now, and
    # the reset was made (204).
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="ahead_calls", name="Ahead", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Ahead", key="ahead", subject_keys=["ahead"]))
    start = clock.now.replace(minute=0) + timedelta(days=30)
    clock.now = start
    data = EntitlementInput(type="metered", feature_key="ahead_calls", usage_period=RecurrenceInput("DAY", start))
    entitlement = await svc.create(NS, customer, data)
    clock.now = start + timedelta(hours=2, seconds=10)
    with pytest.raises(ValidationError) as exc:
        await svc.reset(NS, entitlement, ResetInput(effective_at=clock.now + timedelta(seconds=30)))
    assert exc.value.violations[0].code == "in_future"
    assert (await svc.get(NS, entitlement.id)).resets == ()
    await svc.reset(NS, entitlement, ResetInput(effective_at=clock.now))
    assert [r.at for r in (await svc.get(NS, entitlement.id)).resets] == [start + timedelta(hours=2)]


async def test_deleting_an_entitlement_deletes_its_grants(stack: Stack) -> None:
    # OpenMeter's credit entitlement hook (PreDelete: DeleteOwnerGrants): the grants of a deleted
    # entitlement are deleted with it, so a grant listing leaves them out unless asked for deleted
    # ones (it listed 1 live grant of a deleted entitlement).
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="gone_calls", name="Gone calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Gone", key="gone", subject_keys=["gone"]))
    entitlement = await svc.create(NS, customer, metered("gone_calls", 0))
    await svc.create_grant(NS, entitlement, GrantInput(amount=10, effective_at=clock.now, v2=True))
    clock.now += timedelta(minutes=5)
    await svc.delete(NS, entitlement)
    deleted = await svc.get(NS, entitlement.id)
    live, total, *_ = await svc.grants(NS, [deleted], ListGrantsInput())
    assert (live, total) == ([], 0)
    every, _, *_ = await svc.grants(NS, [deleted], ListGrantsInput(include_deleted=True))
    assert [g.deleted_at for g in every] == [deleted.deleted_at]


async def test_override_ends_the_old_entitlement_and_deletes_its_grants(stack: Stack) -> None:
    # OpenMeter's SupersedeEntitlement (scheduling_test.go "Should supersede entitlement"): the old
    # entitlement is not deleted but ends where the new one starts (activeTo = its activeFrom), and
    # its grants are deleted (the PreDelete hook). It was soft-deleted and kept its grants, so the
    # customer's entitlement listing showed 1 instead of 2 and the old grant stayed live.
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="over_calls", name="Over calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Over", key="over", subject_keys=["over"]))
    old = await svc.create(NS, customer, metered("over_calls", 0))
    await svc.create_grant(NS, old, GrantInput(amount=10, effective_at=clock.now, v2=True))
    clock.now += timedelta(minutes=5)
    new = await svc.override(NS, customer, "over_calls", metered("over_calls", 50))
    old = await svc.get(NS, old.id)
    assert (old.deleted_at, old.active_to, new.active_from, new.active_to) == (None, clock.now, clock.now, None)
    assert (await svc.for_customer(NS, customer, "over_calls")).id == new.id
    listed, total, *_ = await svc.list_entitlements(NS, ListEntitlementsInput(), [customer.id])
    assert total == 2 and {e.id for e in listed} == {old.id, new.id}
    live, count, *_ = await svc.grants(NS, [old], ListGrantsInput())
    assert (live, count) == ([], 0)
    assert (await svc.value(NS, old)).has_access is False
    value = await svc.value(NS, new)
    assert (value.has_access, value.balance) == (True, Decimal(50))
    # The superseded one (by its ID) cannot be overridden again, nor the new one at its own start
    # (OpenMeter's SupersedeEntitlement: the new one must start inside the old one's window).
    clock.now += timedelta(minutes=5)
    with pytest.raises(ValidationError) as ended:
        await svc.override(NS, customer, old.id, metered("over_calls", 70))
    assert ended.value.violations[0].code == "override_after_end"
    fresh = await svc.override(NS, customer, "over_calls", metered("over_calls", 60))
    with pytest.raises(ValidationError) as same_instant:
        await svc.override(NS, customer, fresh.id, metered("over_calls", 70))
    assert same_instant.value.violations[0].code == "override_before_start"
    assert (await svc.for_customer(NS, customer, "over_calls")).id == fresh.id


async def test_an_inline_grant_before_the_current_usage_period_is_refused(stack: Stack) -> None:
    # OpenMeter's v2 create and override issue the inline grants[] through CreateGrant, which
    # refuses an effectiveAt before the current usage period start (the first period starts at the
    # start of measurement) with 400; the grant was stored, a grant backdated into yesterday's
    # period adding its full amount to the balance.
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="inline_calls", name="Inline calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="Inline", key="inline", subject_keys=["inline"]))
    midnight = clock.now.replace(hour=0, minute=0) + timedelta(days=20)
    clock.now = midnight + timedelta(hours=10)

    def daily(*grants: GrantInput, measure: str | None = None) -> EntitlementInput:
        return EntitlementInput(
            type="metered",
            feature_key="inline_calls",
            usage_period=RecurrenceInput("DAY", midnight),
            measure_usage_from=measure,
            grants=grants,
            v2=True,
        )

    yesterday = GrantInput(amount=40, effective_at=midnight - timedelta(hours=1), v2=True)
    this_morning = GrantInput(amount=20, effective_at=midnight + timedelta(hours=1), v2=True)
    for data in (daily(yesterday), daily(this_morning), daily(yesterday, measure="CURRENT_PERIOD_START")):
        with pytest.raises(ValidationError) as refused:
            await svc.create(NS, customer, data)
        assert refused.value.violations[0].code == "before_usage_period"
        with pytest.raises(NotFoundError):
            await svc.for_customer(NS, customer, "inline_calls")  # nothing was stored

    entitlement = await svc.create(NS, customer, daily(this_morning, measure="CURRENT_PERIOD_START"))
    assert (await svc.value(NS, entitlement)).balance == Decimal(20)
    clock.now += timedelta(minutes=5)
    with pytest.raises(ValidationError) as override:
        await svc.override(NS, customer, "inline_calls", daily(yesterday))
    assert override.value.violations[0].code == "before_usage_period"
    assert (await svc.for_customer(NS, customer, "inline_calls")).id == entitlement.id
    now = GrantInput(amount=30, effective_at=clock.now, v2=True)
    replaced = await svc.override(NS, customer, "inline_calls", daily(now))
    assert (await svc.value(NS, replaced)).balance == Decimal(30)


# ---------------------------------------------------------------------------------------------
# entitlements a subscription manages, through the subscription service as server/wiring wires it

SUB_PLAN: dict[str, Any] = {
    "key": "metered",
    "name": "Metered",
    "currency": "USD",
    "billingCadence": "P1M",
    "phases": [
        {
            "key": "default",
            "name": "Default",
            "rateCards": [
                {
                    "type": "usage_based",
                    "key": "sub_calls",
                    "name": "Calls",
                    "featureKey": "sub_calls",
                    "billingCadence": "P1M",
                    "price": {"type": "unit", "amount": "0.01"},
                    "entitlementTemplate": {"type": "metered", "issueAfterReset": 1000},
                }
            ],
        }
    ],
}


# A trial month with a smaller allowance of the same feature, then the plan's.
TRIAL_PLAN: dict[str, Any] = {
    **SUB_PLAN,
    "key": "with_trial",
    "phases": [
        {
            "key": "trial",
            "name": "Trial",
            "duration": "P1M",
            "rateCards": [
                {
                    **SUB_PLAN["phases"][0]["rateCards"][0],
                    "price": None,
                    "entitlementTemplate": {"type": "metered", "issueAfterReset": 100},
                }
            ],
        },
        SUB_PLAN["phases"][0],
    ],
}


# A plan that manages `extra_calls` instead of `sub_calls`.
EXTRA_PLAN: dict[str, Any] = {
    **SUB_PLAN,
    "key": "extra",
    "phases": [
        {
            "key": "default",
            "name": "Default",
            "rateCards": [
                {
                    **SUB_PLAN["phases"][0]["rateCards"][0],
                    "key": "extra_calls",
                    "featureKey": "extra_calls",
                    "entitlementTemplate": {"type": "metered", "issueAfterReset": 500},
                }
            ],
        }
    ],
}


# Both features at once: `sub_calls` first, then `extra_calls`.
BOTH_PLAN: dict[str, Any] = {
    **SUB_PLAN,
    "key": "both",
    "phases": [
        {
            "key": "default",
            "name": "Default",
            "rateCards": [SUB_PLAN["phases"][0]["rateCards"][0], EXTRA_PLAN["phases"][0]["rateCards"][0]],
        }
    ],
}


# A boolean and a static entitlement, with metadata, next to the metered one.
ACCESS_PLAN: dict[str, Any] = {
    **SUB_PLAN,
    "key": "access",
    "phases": [
        {
            "key": "default",
            "name": "Default",
            "rateCards": [
                {
                    **SUB_PLAN["phases"][0]["rateCards"][0],
                    "entitlementTemplate": {
                        "type": "metered",
                        "issueAfterReset": 1000,
                        "issueAfterResetPriority": 3,
                        "isSoftLimit": True,
                        "preserveOverageAtReset": True,
                        "usagePeriod": "P1D",
                        "metadata": {"tier": "pro"},
                    },
                },
                {
                    "type": "flat_fee",
                    "key": "extra_calls",
                    "name": "Extra calls",
                    "featureKey": "extra_calls",
                    "billingCadence": "P1M",
                    "price": {"type": "flat", "amount": "5", "paymentTerm": "in_advance"},
                    "entitlementTemplate": {"type": "static", "config": '{"seats": 5}', "metadata": {"a": "b"}},
                },
                {
                    "type": "flat_fee",
                    "key": "sub_sso",
                    "name": "SSO",
                    "featureKey": "sub_sso",
                    "entitlementTemplate": {"type": "boolean", "metadata": {"c": "d"}},
                },
            ],
        }
    ],
}


class SomePlans:
    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.views: dict[str, PlanView] = {}
        for body in bodies:
            content, issues = parse_plan(body)
            issues.raise_if_errors()
            assert content is not None
            plan = Plan(f"plan-{content.key}", NS, 1, content, START, START, effective_from=START)
            self.views[content.key] = plan_view(plan)

    async def active_plan(self, namespace: str, key: str, version: int | None) -> PlanView:
        if key not in self.views:
            raise NotFoundError("plan", key)
        return self.views[key]

    async def custom_plan(self, namespace: str, body: dict[str, Any]) -> PlanView:
        raise NotFoundError("plan", "custom")

    async def check_rate_card(self, namespace: str, rate_card: Any, path: str) -> None:
        return None  # no features here; the catalog's check of an edit's items is tested end to end


# A multiple-instance add-on: 500 more calls of its own feature a month for each one bought.
EXTRA_CALLS = CatalogRateCards().parse(
    {
        "type": "flat_fee",
        "key": "extra_calls",
        "name": "Extra calls",
        "featureKey": "extra_calls",
        "billingCadence": "P1M",
        "price": {"type": "flat", "amount": "5", "paymentTerm": "in_advance"},
        "entitlementTemplate": {"type": "metered", "issueAfterReset": 500},
    },
    "rateCards[0]",
)


class ExtraCallsOffer:
    """The plan add-on the catalog would hand over: `extra_calls` from the default phase."""

    async def offer(self, namespace: str, plan: PlanRef, addon_id: str, purchase: bool = True) -> AddonOffer:
        return AddonOffer(addon_id, "extra", 1, "multiple", "Extra", (EXTRA_CALLS,), "default", 10)


class DiesMidReconcile:
    """The managed-entitlement port of a process that dies while reconciling: a call to a method
    named in `dying` raises, as a kill -9 between two statements would stop the write there."""

    def __init__(self, inner: EntitlementBridge) -> None:
        self._inner = inner
        self.dying: set[str] = set()

    def _call(self, name: str) -> Any:
        if name in self.dying:
            raise RuntimeError(f"the process died in {name}")
        return getattr(self._inner, name)

    async def managed_for(self, namespace: str, customer_id: str, subscription_id: str) -> Any:
        return await self._call("managed_for")(namespace, customer_id, subscription_id)

    async def create_managed(self, namespace: str, customer_id: str, wanted: Any) -> str:
        return await self._call("create_managed")(namespace, customer_id, wanted)  # type: ignore[no-any-return]

    async def end_managed(self, namespace: str, entitlement_id: str, at: datetime) -> None:
        await self._call("end_managed")(namespace, entitlement_id, at)

    async def delete_managed(self, namespace: str, entitlement_id: str) -> None:
        await self._call("delete_managed")(namespace, entitlement_id)

    def terms_of(self, wanted: Any) -> Any:
        return self._inner.terms_of(wanted)


@dataclass
class SubStack:
    subscriptions: SubscriptionService
    entitlements: EntitlementService
    customers: CustomerService
    sink: EventSink
    clock: Clock
    # The same subscriptions, reconciled through a port that can be made to die mid-way.
    dying: SubscriptionService
    port: DiesMidReconcile


@pytest_asyncio.fixture(scope="module")
async def subs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SubStack]:
    request.param = "chdb"  # one event store is enough here
    clock = Clock()
    clock.now = datetime(2026, 11, 15, 10, tzinfo=UTC)
    async with entitlement_parts(request, tmp_path_factory, "sub_windows", clock) as parts:
        entitlements = parts.service(grace_period=timedelta(minutes=30))
        await parts.meters.create(
            NS, MeterCreateInput(slug="calls", aggregation="SUM", event_type="call", value_property="$.n")
        )
        await parts.features.create(NS, FeatureCreateInput(key="sub_calls", name="Calls", meter_slug="calls"))
        await parts.features.create(NS, FeatureCreateInput(key="extra_calls", name="Extra", meter_slug="calls"))
        await parts.features.create(NS, FeatureCreateInput(key="sub_sso", name="SSO"))
        rate_cards = CatalogRateCards()
        repository = PostgresSubscriptionRepository(parts.sessions, rate_cards)
        plans = SomePlans(SUB_PLAN, TRIAL_PLAN, EXTRA_PLAN, BOTH_PLAN, ACCESS_PLAN)
        bridge = EntitlementBridge(entitlements, parts.customers)
        subscriptions = SubscriptionService(
            repository, plans, parts.customers, rate_cards, bridge, clock=clock, addons=ExtraCallsOffer()
        )
        port = DiesMidReconcile(bridge)
        dying = SubscriptionService(repository, plans, parts.customers, rate_cards, port, clock=clock)
        yield SubStack(
            subscriptions, entitlements, parts.customers, parts.sink(owner="sub-windows"), clock, dying, port
        )


async def test_managed_usage_period_follows_the_billing_anchor(subs: SubStack) -> None:
    # Subscribed mid-month on a billing anchor of the 1st: invoices bill [Nov 15, Dec 1), then whole
    # months from the 1st. OpenMeter anchors the managed entitlement's usage period at the
    # subscription's billing anchor (subscriptionspec.go: NewRecurrenceFromISODuration(usagePeriod,
    # AlignedBillingAnchor)), measuring usage from the phase's start, so the allowance resets when a
    # new billing period starts, not a month after the day the customer subscribed.
    clock = subs.clock
    subscribed = clock.now
    customer = await subs.customers.create(NS, CustomerInput(name="Anchor", key="anchor", subject_keys=["anchor"]))
    sub = await subs.subscriptions.create(
        CreateSubscriptionInput(
            NS, PlanSelector("metered"), customer_id=customer.id, billing_anchor=datetime(2026, 1, 1, tzinfo=UTC)
        )
    )
    billed = [
        b.service_period for b in billable_items(sub.id, sub.spec, datetime(2026, 12, 20, tzinfo=UTC), billing_terms)
    ]
    assert [(p.start, p.end) for p in billed] == [
        (subscribed, datetime(2026, 12, 1, tzinfo=UTC)),
        (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ]

    entitlement = await subs.entitlements.for_customer(NS, customer, "sub_calls")
    periods = [entitlement.current_usage_period(p.start + timedelta(days=1)) for p in billed]
    assert [(p.start, p.end) for p in periods if p is not None] == [(p.start, p.end) for p in billed]

    # 900 calls in November; on Dec 2 the allowance has been issued again for December.
    clock.now = subscribed + timedelta(days=5)
    await flush(subs, "anchor", (timedelta(0), 900))
    clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    value = await subs.entitlements.value(NS, entitlement)
    assert (value.has_access, value.balance, value.usage) == (True, Decimal(1000), Decimal(0))


async def test_replacing_a_managed_item_mid_period_does_not_issue_the_allowance_again(subs: SubStack) -> None:
    # An edit that replaces the metered item mid-period (here: a new price, the same allowance)
    # ends one entitlement and starts the next. OpenMeter measures a managed entitlement's usage
    # from its phase's start (subscriptionspec.go: MeasureUsageFrom = PhaseStart), so the usage of
    # the billing period so far still counts against the new one: the customer has one allowance
    # per period, not one per edit.
    clock = subs.clock
    clock.now = datetime(2026, 11, 15, 10, tzinfo=UTC)
    subscribed = clock.now
    customer = await subs.customers.create(NS, CustomerInput(name="Edit", key="edited", subject_keys=["edited"]))
    sub = await subs.subscriptions.create(
        CreateSubscriptionInput(
            NS, PlanSelector("metered"), customer_id=customer.id, billing_anchor=datetime(2026, 1, 1, tzinfo=UTC)
        )
    )
    clock.now = subscribed + timedelta(days=1)
    await flush(subs, "edited", (timedelta(0), 900))
    clock.now = datetime(2026, 11, 20, tzinfo=UTC)
    before = await subs.entitlements.for_customer(NS, customer, "sub_calls")
    assert (await subs.entitlements.value(NS, before)).balance == Decimal(100)

    card = CatalogRateCards().parse(
        {**SUB_PLAN["phases"][0]["rateCards"][0], "price": {"type": "unit", "amount": "0.02"}},
        "customizations[1].rateCard",
    )
    await subs.subscriptions.edit(
        NS,
        sub.id,
        [edits.RemoveItem("default", "sub_calls"), edits.AddItem("default", card, "item-dearer")],
        Timing(enum="immediate"),
    )
    clock.now = datetime(2026, 11, 21, tzinfo=UTC)
    after = await subs.entitlements.for_customer(NS, customer, "sub_calls")
    assert after.id != before.id and after.active_from == datetime(2026, 11, 20, tzinfo=UTC)
    value = await subs.entitlements.value(NS, after)
    assert (value.has_access, value.balance, value.usage) == (True, Decimal(100), Decimal(900))
    # December: the allowance again, once.
    clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    value = await subs.entitlements.value(NS, after)
    assert (value.balance, value.usage) == (Decimal(1000), Decimal(0))


async def test_stretching_a_phase_moves_the_managed_entitlements_with_it(subs: SubStack) -> None:
    # The trial phase grants 100 calls, the next phase 1000 of the same feature. Stretching the trial
    # by a month moves the trial's entitlement's end later and the next one's start with it: the
    # next one must give way first, or the trial's longer window overlaps it (a conflict, after the
    # edit was stored).
    clock = subs.clock
    clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="Trial", key="trial", subject_keys=["trial"]))
    sub = await subs.subscriptions.create(
        CreateSubscriptionInput(NS, PlanSelector("with_trial"), customer_id=customer.id)
    )
    clock.now = datetime(2026, 11, 10, tzinfo=UTC)
    await subs.subscriptions.edit(
        NS, sub.id, [edits.StretchPhase("trial", IsoDuration(months=1))], Timing(enum="immediate")
    )
    windows = [
        (e.active_from, e.active_to, e.issue_after_reset)
        for e in await subs.entitlements.managed_for(NS, customer.id, sub.id)
        if e.deleted_at is None
    ]
    assert windows == [
        (datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), Decimal(100)),
        (datetime(2027, 1, 1, tzinfo=UTC), None, Decimal(1000)),
    ]


async def test_an_add_on_bought_several_times_grants_its_allowance_that_many_times(subs: SubStack) -> None:
    # Three of an add-on granting 500 calls a month are billed three times (the item's quantity) and
    # grant 1500: OpenMeter applies the add-on's rate card once per instance, adding its
    # issueAfterReset each time (subscription/addon/diff/apply.go, addon/extend.go).
    clock = subs.clock
    clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="Extra", key="extra", subject_keys=["extra"]))
    sub = await subs.subscriptions.create(CreateSubscriptionInput(NS, PlanSelector("metered"), customer_id=customer.id))
    clock.now = datetime(2026, 11, 3, tzinfo=UTC)
    sub, bought = await subs.subscriptions.create_addon(NS, sub.id, "extra", 3, Timing(enum="immediate"))
    billed = billable_items(sub.id, sub.spec, clock.now, billing_terms)
    # November's, and December's made ahead (due when it starts): three each.
    assert [(b.item_key, b.quantity) for b in billed if b.item_key == "extra_calls"] == [
        ("extra_calls", Decimal(3)),
        ("extra_calls", Decimal(3)),
    ]
    extra = await subs.entitlements.for_customer(NS, customer, "extra_calls")
    assert extra.issue_after_reset == Decimal(1500)
    assert (await subs.entitlements.value(NS, extra)).balance == Decimal(1500)

    # Down to one from December: 500 from then on.
    sub, _ = await subs.subscriptions.update_addon(NS, sub.id, bought.id, 1, Timing(enum="next_billing_cycle"))
    clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    extra = await subs.entitlements.for_customer(NS, customer, "extra_calls")
    assert (await subs.entitlements.value(NS, extra)).balance == Decimal(500)


async def subscribed_with_own_extra_calls(subs: SubStack, key: str) -> tuple[Customer, Entitlement, Subscription]:
    """A customer with an `extra_calls` entitlement of its own, subscribed to "metered" on Nov 1;
    the clock at Nov 3."""
    subs.clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="Own", key=key, subject_keys=[key]))
    own = await subs.entitlements.create(NS, customer, metered("extra_calls", 10))
    sub = await subs.subscriptions.create(CreateSubscriptionInput(NS, PlanSelector("metered"), customer_id=customer.id))
    subs.clock.now = datetime(2026, 11, 3, tzinfo=UTC)
    return customer, own, sub


async def test_an_edit_refused_for_an_entitlement_in_the_way_is_not_stored(subs: SubStack) -> None:
    # The customer already has an entitlement of its own for the feature an added item would manage:
    # the edit is refused (409, naming it) and, as OpenMeter's edit runs in one transaction, nothing
    # of it is stored: the subscription does not bill an item it could not grant.
    customer, own, sub = await subscribed_with_own_extra_calls(subs, "own")
    with pytest.raises(ConflictError) as refused:
        await subs.subscriptions.edit(
            NS, sub.id, [edits.AddItem("default", EXTRA_CALLS, "item-extra")], Timing(enum="immediate")
        )
    assert refused.value.conflicting_id == own.id
    again = await subs.subscriptions.get(NS, sub.id)
    assert (again.spec, again.addons, again.active_to) == (sub.spec, sub.addons, sub.active_to)
    assert [e.feature_key for e in await subs.entitlements.managed_for(NS, customer.id, sub.id)] == ["sub_calls"]


async def test_a_plan_change_refused_for_an_entitlement_in_the_way_is_not_stored(subs: SubStack) -> None:
    # The new plan would manage a feature the customer has an entitlement of its own for: the change
    # is refused (409, naming it) and nothing of it stays: no successor waits to be billed, and the
    # current subscription runs on, unended, with its entitlement.
    customer, own, sub = await subscribed_with_own_extra_calls(subs, "own_change")
    with pytest.raises(ConflictError) as refused:
        await subs.subscriptions.change(
            ChangeSubscriptionInput(NS, sub.id, PlanSelector("extra"), Timing(enum="immediate"))
        )
    assert refused.value.conflicting_id == own.id
    again = await subs.subscriptions.get(NS, sub.id)
    assert (again.spec, again.active_to) == (sub.spec, None)
    live = [s.id for s in await subs.subscriptions.list_for_customer(NS, customer.id) if s.deleted_at is None]
    assert live == [sub.id]
    managed = await subs.entitlements.managed_for(NS, customer.id, sub.id)
    assert [(e.feature_key, e.active_to) for e in managed] == [("sub_calls", None)]


async def test_a_refused_create_removes_the_entitlements_it_had_created(subs: SubStack) -> None:
    # The plan manages sub_calls, then extra_calls, which the customer has an entitlement of its own
    # for: the create is refused, and the sub_calls entitlement made before the refusal goes with the
    # subscription (it was left granting a deleted subscription's allowance).
    subs.clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="Both", key="both", subject_keys=["both"]))
    own = await subs.entitlements.create(NS, customer, metered("extra_calls", 10))
    with pytest.raises(ConflictError) as refused:
        await subs.subscriptions.create(CreateSubscriptionInput(NS, PlanSelector("both"), customer_id=customer.id))
    assert refused.value.conflicting_id == own.id
    assert await subs.subscriptions.list_for_customer(NS, customer.id) == []
    left, *_ = await subs.entitlements.list_entitlements(NS, ListEntitlementsInput(), [customer.id])
    assert [e.id for e in left] == [own.id]


async def test_a_write_that_died_before_its_entitlements_were_reconciled_is_repaired(subs: SubStack) -> None:
    # A write stores the subscription, then brings its entitlements in line: two steps, not one
    # transaction. A process killed between them left the customer without the plan's allowance
    # (after a create) or with it for good (after a cancel), until some later write to the same
    # subscription. The billing worker's repair pass finds such subscriptions and finishes them.
    clock, port = subs.clock, subs.port
    clock.now = datetime(2026, 11, 20, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="Died", key="died", subject_keys=["died"]))
    port.dying = {"create_managed"}
    with pytest.raises(RuntimeError):
        await subs.dying.create(CreateSubscriptionInput(NS, PlanSelector("metered"), customer_id=customer.id))
    port.dying = set()
    (sub,) = await subs.subscriptions.list_for_customer(NS, customer.id)
    assert await subs.entitlements.managed_for(NS, customer.id, sub.id) == []

    # A write this recent may still be reconciling in its own request: left alone.
    clock.now += timedelta(seconds=30)
    assert await subs.dying.repair_entitlements() == 0
    clock.now += timedelta(minutes=1)
    # A pass that fails on it (the store away) holds nothing up and leaves it for the next.
    port.dying = {"managed_for"}
    assert await subs.dying.repair_entitlements() == 0
    port.dying = set()
    worker = BillingWorker(None, entitlements=subs.dying)  # type: ignore[arg-type]  # repair needs no invoices
    assert await worker.repair() == 1
    (granted,) = await subs.entitlements.managed_for(NS, customer.id, sub.id)
    assert (granted.feature_key, granted.active_from, granted.active_to) == ("sub_calls", sub.active_from, None)
    assert await subs.dying.repair_entitlements() == 0  # done, and marked done

    # A cancel that died before ending the entitlement: the customer kept access after the end.
    end = clock.now
    port.dying = {"end_managed"}
    with pytest.raises(RuntimeError):
        await subs.dying.cancel(NS, sub.id, Timing(enum="immediate"))
    port.dying = set()
    assert (await subs.entitlements.managed_for(NS, customer.id, sub.id))[0].active_to is None
    clock.now += timedelta(minutes=2)
    assert await subs.dying.repair_entitlements() == 1
    (ended,) = await subs.entitlements.managed_for(NS, customer.id, sub.id)
    assert (ended.id, ended.active_to) == (granted.id, end)
    assert await subs.dying.repair_entitlements() == 0


async def test_an_add_on_bought_for_the_next_billing_cycle_starts_with_the_phase_that_ends_the_cycle(
    subs: SubStack,
) -> None:
    # Anchored on the 15th, the one-month trial from Nov 1 ends on Dec 1, inside the billing period
    # Nov 15 - Dec 15: that period is split, and the cycle running on Nov 20 ends on Dec 1, where
    # the add-on's phase starts. OpenMeter resolves next_billing_cycle to the end of the aligned
    # billing period (Timing.ResolveForSpec, cut at the phase). Tally started the add-on on Dec 15:
    # two weeks without the seats bought, and without their fee.
    clock = subs.clock
    clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="Next", key="next_cycle", subject_keys=["nc"]))
    sub = await subs.subscriptions.create(
        CreateSubscriptionInput(
            NS, PlanSelector("with_trial"), customer_id=customer.id, billing_anchor=datetime(2026, 1, 15, tzinfo=UTC)
        )
    )
    clock.now = datetime(2026, 11, 20, tzinfo=UTC)
    sub, bought = await subs.subscriptions.create_addon(NS, sub.id, "extra", 2, Timing(enum="next_billing_cycle"))
    assert [(s.active_from, s.quantity) for s in bought.timeline] == [(datetime(2026, 12, 1, tzinfo=UTC), 2)]
    sub, changed = await subs.subscriptions.update_addon(NS, sub.id, bought.id, 3, Timing(enum="next_billing_cycle"))
    assert [(s.active_from, s.quantity) for s in changed.timeline] == [(datetime(2026, 12, 1, tzinfo=UTC), 3)]


async def test_add_ons_are_bought_and_changed_only_on_an_active_subscription(subs: SubStack) -> None:
    # OpenMeter buys an add-on or changes its quantity by updating the subscription, which its
    # state machine permits only while active (403 otherwise). Tally sold seats on a subscription
    # that had not started yet, or was canceled.
    clock = subs.clock
    clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="States", key="addon_states", subject_keys=["as"]))
    sub = await subs.subscriptions.create(CreateSubscriptionInput(NS, PlanSelector("metered"), customer_id=customer.id))
    clock.now = datetime(2026, 11, 3, tzinfo=UTC)
    sub, bought = await subs.subscriptions.create_addon(NS, sub.id, "extra", 2, Timing(enum="immediate"))
    sub = await subs.subscriptions.cancel(NS, sub.id, Timing(enum="next_billing_cycle"))
    with pytest.raises(ForbiddenError):
        await subs.subscriptions.update_addon(NS, sub.id, bought.id, 3, Timing(enum="immediate"))
    # Its name is not the subscription's state.
    _, renamed = await subs.subscriptions.update_addon(NS, sub.id, bought.id, None, Timing(enum="immediate"), name="X")
    assert renamed.name == "X"

    later_customer = await subs.customers.create(
        NS, CustomerInput(name="Later", key="addon_later", subject_keys=["al"])
    )
    later = await subs.subscriptions.create(
        CreateSubscriptionInput(
            NS,
            PlanSelector("metered"),
            customer_id=later_customer.id,
            timing=Timing(at=datetime(2026, 12, 1, tzinfo=UTC)),
        )
    )
    with pytest.raises(ForbiddenError):
        await subs.subscriptions.create_addon(NS, later.id, "extra", 1, Timing(enum="immediate"))


async def test_an_add_on_already_on_the_subscription_is_not_bought_again(subs: SubStack) -> None:
    # OpenMeter's AddAddon refuses an add-on the subscription already has, whatever its quantity
    # (409 "subscription already has that addon purchased"): its quantity is changed instead. Tally
    # took a second purchase once the first was set to 0: two subscription add-ons of one add-on.
    clock = subs.clock
    clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="Again", key="addon_again", subject_keys=["aa"]))
    sub = await subs.subscriptions.create(CreateSubscriptionInput(NS, PlanSelector("metered"), customer_id=customer.id))
    clock.now = datetime(2026, 11, 3, tzinfo=UTC)
    sub, bought = await subs.subscriptions.create_addon(NS, sub.id, "extra", 2, Timing(enum="immediate"))
    sub, _ = await subs.subscriptions.update_addon(NS, sub.id, bought.id, 0, Timing(enum="immediate"))
    clock.now = datetime(2026, 11, 4, tzinfo=UTC)
    with pytest.raises(ConflictError):
        await subs.subscriptions.create_addon(NS, sub.id, "extra", 1, Timing(enum="immediate"))
    assert [a.id for a in (await subs.subscriptions.get(NS, sub.id)).addons] == [bought.id]


async def test_a_quantity_changed_before_the_add_on_starts_changes_its_entitlements_allowance(subs: SubStack) -> None:
    # Two of the add-on bought for the next billing cycle, then three, before that cycle starts: the
    # item version starting then now holds three, and so must the entitlement starting then. OpenMeter
    # compares each item's wanted entitlement with the one it has and replaces it when they differ
    # (subscription/service/syncnode.go: entitlementSyncNode.Compare, then Archive and Create). Tally
    # matched entitlements to item versions by feature and start alone, so the entitlement made for
    # two stayed: 1000 calls a month for three add-ons bought.
    clock = subs.clock
    clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="Regrown", key="regrown", subject_keys=["regrown"]))
    sub = await subs.subscriptions.create(
        CreateSubscriptionInput(
            NS, PlanSelector("metered"), customer_id=customer.id, billing_anchor=datetime(2026, 1, 1, tzinfo=UTC)
        )
    )
    clock.now = datetime(2026, 11, 20, tzinfo=UTC)
    sub, bought = await subs.subscriptions.create_addon(NS, sub.id, "extra", 2, Timing(enum="next_billing_cycle"))
    sub, _ = await subs.subscriptions.update_addon(NS, sub.id, bought.id, 3, Timing(enum="next_billing_cycle"))
    managed = [
        e for e in await subs.entitlements.managed_for(NS, customer.id, sub.id) if e.feature_key == "extra_calls"
    ]
    assert [(e.active_from, e.active_to, e.issue_after_reset) for e in managed] == [
        (datetime(2026, 12, 1, tzinfo=UTC), None, Decimal(1500))
    ]
    clock.now = datetime(2026, 12, 2, tzinfo=UTC)
    extra = await subs.entitlements.for_customer(NS, customer, "extra_calls")
    assert (await subs.entitlements.value(NS, extra)).balance == Decimal(1500)


async def test_reconciling_an_unchanged_subscription_keeps_each_kind_of_entitlement(subs: SubStack) -> None:
    # The terms an entitlement was made with are compared with its item version's on every
    # reconciliation: for each kind of template they must read back equal, or every write would
    # replace the customer's entitlements (new ids, a new issueAfterReset grant).
    clock = subs.clock
    clock.now = datetime(2026, 11, 1, tzinfo=UTC)
    customer = await subs.customers.create(NS, CustomerInput(name="Kinds", key="kinds", subject_keys=["kinds"]))
    sub = await subs.subscriptions.create(CreateSubscriptionInput(NS, PlanSelector("access"), customer_id=customer.id))
    made = {e.feature_key: e for e in await subs.entitlements.managed_for(NS, customer.id, sub.id)}
    assert {k: e.type.value for k, e in made.items()} == {
        "sub_calls": "metered",
        "extra_calls": "static",
        "sub_sso": "boolean",
    }
    clock.now = datetime(2026, 11, 3, tzinfo=UTC)
    await subs.subscriptions.reconcile_entitlements(sub)
    canceled = await subs.subscriptions.cancel(NS, sub.id, Timing(enum="next_billing_cycle"))
    after = {e.feature_key: e for e in await subs.entitlements.managed_for(NS, customer.id, sub.id)}
    assert {k: (e.id, e.active_to) for k, e in after.items()} == {
        k: (e.id, canceled.active_to) for k, e in made.items()
    }


async def test_daily_history_across_a_dst_change_at_local_midnight(stack: Stack) -> None:
    # America/Santiago moves its clocks at midnight: 2026-09-06 starts at 01:00 (-03), so that day
    # has 23 hours and no 00:00. Each day's window must start where the meter query's does (the
    # day's first instant) and hold that day's usage; one that missed would show the day as 0.
    svc, clock = stack.cached, stack.clock
    await svc.features.create(NS, FeatureCreateInput(key="dst_calls", name="DST calls", meter_slug="calls"))
    customer = await svc.customers.create(NS, CustomerInput(name="DST", key="santiago", subject_keys=["santiago"]))
    santiago = ZoneInfo("America/Santiago")
    start = datetime(2026, 9, 4, tzinfo=UTC)
    clock.now = start
    data = EntitlementInput(
        type="metered",
        feature_key="dst_calls",
        usage_period=RecurrenceInput("YEAR", start),
        measure_usage_from="CURRENT_PERIOD_START",
        issue_after_reset=1000,
        v2=True,
    )
    entitlement = await svc.create(NS, customer, data)
    clock.now = datetime(2026, 9, 9, tzinfo=UTC)
    local = [
        datetime(2026, 9, 5, 12, tzinfo=santiago),
        datetime(2026, 9, 6, 1, 30, tzinfo=santiago),  # the day's first hour
        datetime(2026, 9, 6, 23, 59, tzinfo=santiago),
        datetime(2026, 9, 7, 0, 0, tzinfo=santiago),
    ]
    await flush(stack, "santiago", *zip((t - clock.now for t in local), (1, 10, 100, 1000), strict=True))

    days = [datetime(2026, 9, 5, tzinfo=santiago), datetime(2026, 9, 6, 1, tzinfo=santiago)]
    days += [datetime(2026, 9, d, tzinfo=santiago) for d in (7, 8)]
    history = await svc.history(
        NS,
        entitlement,
        HistoryInput(window_size="DAY", from_=days[0], to=days[3], window_time_zone="America/Santiago"),
    )
    assert [(w.start, w.end, w.usage) for w in history.windows] == [
        (days[0], days[1], Decimal(1)),
        (days[1], days[2], Decimal(110)),
        (days[2], days[3], Decimal(1000)),
    ]
    assert [w.end - w.start for w in history.windows] == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]
