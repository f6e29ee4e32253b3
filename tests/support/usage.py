"""A stand-in for billing's UsageSource port over a list of events, for tests of the invoice
service, the billing worker and the subscription sync that need usage without ClickHouse.

It answers as the ClickHouse reader (adapters/clickhouse/billing_usage.py) does for COUNT and SUM
meters (a COUNT event is one of quantity 1) and LATEST ones: tests/integration/
test_billing_usage_differential.py feeds both the same random events and holds them equal, so its
rules are the reader's: period bounds at whole seconds (floored, as every meter query), event
times and `stored_at` at the store's millisecond, the cutoff floored to its millisecond, and a
LATEST tie (one millisecond) going to the event stored last."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain.billing.invoices import UsageRequest


def _to_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _to_millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass
class EventUsage:
    """(feature, customer, time, quantity, stored_at, subject) events, in the order they were
    stored; a request sums its window as of the cutoff, or, for a feature in `latest` (a LATEST
    meter's), takes its last event's value. An event with a subject counts only for requests whose
    subjects take it in (None: the customer's now, as a test sets them in `subjects_now`; every one
    where it did not). A feature in `unmetered` (no meter, or none of that key) has no usage and is
    never billed in parts."""

    events: list[tuple[str, str, datetime, Decimal, datetime, str | None]] = field(default_factory=list)
    latest: set[str] = field(default_factory=set)
    subjects_now: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unmetered: set[str] = field(default_factory=set)

    def add(
        self,
        feature: str,
        customer: str,
        at: datetime,
        qty: str,
        stored_at: datetime | None = None,
        subject: str | None = None,
    ) -> None:
        stored = _to_millisecond(stored_at or at)
        self.events.append((feature, customer, _to_millisecond(at), Decimal(qty), stored, subject))

    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]:
        out: dict[UsageRequest, Decimal] = {}
        by = _to_millisecond(cutoff)
        for r in requests:
            subjects = r.subjects if r.subjects is not None else self.subjects_now.get(r.customer_id)
            start, end = _to_second(r.start), _to_second(r.end)
            # By time, then the order stored: LATEST takes the last of one millisecond's events.
            seen = sorted(
                ((at, order), q)
                for order, (f, c, at, q, stored, subject) in enumerate(self.events)
                if f == r.feature_key
                and c == r.customer_id
                and start <= at < end
                and stored <= by
                and (subject is None or subjects is None or subject in subjects)
            )
            if r.feature_key in self.unmetered:
                out[r] = Decimal(0)
            elif r.feature_key in self.latest:
                out[r] = seen[-1][1] if seen else Decimal(0)
            else:
                out[r] = sum((q for _, q in seen), Decimal(0))
        return out

    async def growing_features(self, namespace: str, feature_keys: Collection[str]) -> set[str]:
        return {key for key in feature_keys if key not in self.latest and key not in self.unmetered}
