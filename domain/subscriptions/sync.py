"""Subscription → billing sync, as a plan computed by a pure function.

`plan_sync(expected, existing)` compares the billable items a subscription should have now
(`timeline.billable_items`) with the lines the billing side already holds for it, keyed by the
billable item's key, and says what to create, update and delete. Lines already invoiced are never
touched here: a changed amount for an invoiced period is the billing side's correction to make (it
rates the period again and bills the difference). The billing side applies a plan in one
transaction, so a crash leaves either the old lines or the new ones, and running the sync again
computes an empty plan once the lines match. Nothing is billed twice (a key is one line) and
nothing is dropped (every expected key is created).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.entitlements.recurrence import Period
from domain.subscriptions.timeline import BillableItem


@dataclass(frozen=True, slots=True)
class HeldLine:
    """What the billing side holds for one billable key."""

    key: str
    service_period: Period
    invoice_at: datetime
    item_id: str
    # True once the line (or its latest part) is on an invoice past gathering: no longer ours to change.
    invoiced: bool = False


@dataclass(frozen=True, slots=True)
class SyncPlan:
    create: tuple[BillableItem, ...] = ()
    update: tuple[BillableItem, ...] = ()
    delete: tuple[str, ...] = ()
    # Invoiced lines whose period or existence changed: the billing side corrects them.
    corrections: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete or self.corrections)


def plan_sync(expected: Sequence[BillableItem], existing: Mapping[str, HeldLine]) -> SyncPlan:
    create: list[BillableItem] = []
    update: list[BillableItem] = []
    corrections: list[str] = []
    wanted = {item.key: item for item in expected}
    for key, item in wanted.items():
        held = existing.get(key)
        if held is None:
            create.append(item)
        elif held.service_period != item.service_period or held.invoice_at != item.invoice_at:
            if held.invoiced:
                corrections.append(key)
            else:
                update.append(item)
    delete: list[str] = []
    for key, held in existing.items():
        if key not in wanted:
            (corrections if held.invoiced else delete).append(key)
    return SyncPlan(tuple(create), tuple(update), tuple(sorted(delete)), tuple(sorted(corrections)))


def held_from(items: Sequence[BillableItem]) -> dict[str, HeldLine]:
    """The lines a billing side would hold after applying a plan that created `items`."""
    return {i.key: HeldLine(i.key, i.service_period, i.invoice_at, i.item_id) for i in items}
