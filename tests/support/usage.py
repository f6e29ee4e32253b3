"""A stand-in for billing's UsageSource port over a list of events, for tests of the invoice
service, the billing worker and the subscription sync that need usage without ClickHouse (the
ClickHouse reader, adapters/clickhouse/billing_usage.py, has its own test on real events)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain.billing.invoices import UsageRequest


@dataclass
class EventUsage:
    """(feature, customer, time, quantity, stored_at, subject) events; a request sums its window as
    of the cutoff, or, for a feature in `latest` (a LATEST meter's), takes its last event's value.
    An event with a subject counts only for requests whose subjects take it in (None: the
    customer's now, as a test sets them in `subjects_now`; every one where it did not)."""

    events: list[tuple[str, str, datetime, Decimal, datetime, str | None]] = field(default_factory=list)
    latest: set[str] = field(default_factory=set)
    subjects_now: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(
        self,
        feature: str,
        customer: str,
        at: datetime,
        qty: str,
        stored_at: datetime | None = None,
        subject: str | None = None,
    ) -> None:
        self.events.append((feature, customer, at, Decimal(qty), stored_at or at, subject))

    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]:
        out: dict[UsageRequest, Decimal] = {}
        for r in requests:
            subjects = r.subjects if r.subjects is not None else self.subjects_now.get(r.customer_id)
            seen = sorted(
                (at, q)
                for f, c, at, q, stored, subject in self.events
                if f == r.feature_key
                and c == r.customer_id
                and r.start <= at < r.end
                and stored <= cutoff
                and (subject is None or subjects is None or subject in subjects)
            )
            if r.feature_key in self.latest:
                out[r] = seen[-1][1] if seen else Decimal(0)
            else:
                out[r] = sum((q for _, q in seen), Decimal(0))
        return out

    async def growing_features(self, namespace: str, feature_keys: Collection[str]) -> set[str]:
        return {key for key in feature_keys if key not in self.latest}
