"""`replaced_chain`: the subscriptions plan changes replaced on the way to one (what the billing
sync nets a new plan's fee against), followed through OpenMeter's `subscription.previous.id`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from domain.entitlements.recurrence import IsoDuration
from domain.subscriptions.models import PREVIOUS_ANNOTATION, Subscription, replaced_chain
from domain.subscriptions.timeline import SubscriptionSpec

NOV = datetime(2026, 11, 1, tzinfo=UTC)


def subscription(sub_id: str, previous: str | None = None) -> Subscription:
    monthly = IsoDuration.parse("P1M")
    return Subscription(
        id=sub_id,
        namespace="ns",
        customer_id="c1",
        name=sub_id,
        currency="USD",
        billing_cadence=monthly,
        billing_anchor=NOV,
        active_from=NOV,
        active_to=None,
        spec=SubscriptionSpec(NOV, None, NOV, monthly, ()),
        created_at=NOV,
        updated_at=NOV,
        annotations={PREVIOUS_ANNOTATION: previous} if previous else {},
    )


def test_the_chain_runs_from_the_latest_replaced_subscription_back() -> None:
    a, b, c = subscription("a"), subscription("b", "a"), subscription("c", "b")
    other = subscription("x")
    assert [s.id for s in replaced_chain(c, [other, a, b, c])] == ["b", "a"]
    assert replaced_chain(a, [a, b, c]) == []


def test_a_link_to_a_subscription_not_found_ends_the_chain() -> None:
    b, c = subscription("b", "gone"), subscription("c", "b")
    assert [s.id for s in replaced_chain(c, [b, c])] == ["b"]


def test_a_link_back_into_the_chain_ends_it() -> None:
    # Annotations are data: a loop (written by hand, or by a bug) must not hang the sync.
    a, b = subscription("a", "b"), subscription("b", "a")
    assert [s.id for s in replaced_chain(b, [a, b])] == ["a"]
    looped = dataclasses.replace(a, annotations={PREVIOUS_ANNOTATION: "a"})
    assert replaced_chain(looped, [looped]) == []
