"""A stand-in for billing's UsageSource port over a list of events, for tests of the invoice
service, the billing worker and the subscription sync that need usage without ClickHouse (the
ClickHouse reader, adapters/clickhouse/billing_usage.py, has its own test on real events)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain.billing.invoices import UsageRequest


@dataclass
class EventUsage:
    """(feature, customer, time, quantity, stored_at) events; a request sums its window as of the cutoff."""

    events: list[tuple[str, str, datetime, Decimal, datetime]] = field(default_factory=list)

    def add(self, feature: str, customer: str, at: datetime, qty: str, stored_at: datetime | None = None) -> None:
        self.events.append((feature, customer, at, Decimal(qty), stored_at or at))

    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]:
        return {
            r: sum(
                (
                    q
                    for f, c, at, q, stored in self.events
                    if f == r.feature_key and c == r.customer_id and r.start <= at < r.end and stored <= cutoff
                ),
                Decimal(0),
            )
            for r in requests
        }
