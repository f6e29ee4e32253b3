"""Billing's UsageSource over the ClickHouse event store.

A billing run asks for the usage of many (feature, customer, period) triples at once. They are
read in bulk: one query per feature and period, over every customer that asks for it, grouped by
customer (each event's subject mapped to its customer in the query), never one query per customer.
A request counts the subjects its invoice copied from the customer (`UsageRequest.subjects`), or
else the customer's subjects now; a subject two requests count for different customers takes a
second query for the period, so each counts it.

"Stored by the cutoff" is the events table's `stored_at` column (set by the store when the sink
writes the row; a batch the sink replays after a crash is de-duplicated by its insert token, so an
event has one `stored_at`). Reading with the same cutoff again gives the same number; usage stored
later counts from the next run's cutoff on, and the invoice service bills the difference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.usage_sql import render_billing_usage_query
from domain.billing.invoices import ZERO, UsageRequest
from domain.catalog.models import Feature
from domain.catalog.ports import FeatureRepository
from domain.customers.models import Customer
from domain.metering.models import Meter
from domain.metering.ports import MeterRepository


class CustomersById(Protocol):
    async def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Customer]: ...


def _decimal(value: object) -> Decimal:
    """A meter value as billing counts it: the number ClickHouse returned, digit for digit (repr of
    the float, as the meter API prints it), never a binary expansion."""
    if value is None:
        return ZERO
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value else ZERO
    return Decimal(str(value))


class ClickHouseUsageSource:
    def __init__(
        self,
        clickhouse: ClickHouse,
        features: FeatureRepository,
        meters: MeterRepository,
        customers: CustomersById,
    ) -> None:
        self._ch = clickhouse
        self._features = features
        self._meters = meters
        self._customers = customers

    async def _feature(self, namespace: str, key: str) -> Feature | None:
        """The live feature with this key, or else the one archived last (a line keeps billing the
        usage of the feature it was made for)."""
        live = await self._features.get(namespace, key)
        if live is not None:
            return live
        archived = [f for f in await self._features.list_features(namespace, include_archived=True) if f.key == key]
        return max(archived, key=lambda f: f.archived_at or f.updated_at, default=None)

    async def _metered(self, namespace: str, feature_keys: Iterable[str]) -> dict[str, tuple[Feature, Meter]]:
        """Each feature key's feature and its meter, for the keys that have both.

        A feature's meter is the one it was made with, as OpenMeter resolves it by ID with deleted
        meters included (ResolveFeatureMeters): features name their meter by slug, and the meter
        under that slug when the feature was made is it. A live feature keeps its meter from being
        deleted, but an archived one (whose lines still bill) does not, and the slug may be taken by
        a new meter since: the line still reads the events of its own."""
        out: dict[str, tuple[Feature, Meter]] = {}
        everyone: list[Meter] | None = None
        for key in dict.fromkeys(feature_keys):
            feature = await self._feature(namespace, key)
            if feature is None or feature.meter_slug is None:
                continue
            meter = await self._meters.get(namespace, feature.meter_slug)
            if meter is None or meter.created_at > feature.created_at:
                if everyone is None:
                    everyone = await self._meters.list_meters(namespace, include_deleted=True)
                meter = _meter_when_made(everyone, feature) or meter
            if meter is not None:
                out[key] = (feature, meter)
        return out

    async def growing_features(self, namespace: str, feature_keys: Collection[str]) -> set[str]:
        metered = await self._metered(namespace, feature_keys)
        return {key for key, (_, meter) in metered.items() if meter.aggregation.only_grows}

    async def quantities(
        self, namespace: str, requests: Sequence[UsageRequest], cutoff: datetime
    ) -> Mapping[UsageRequest, Decimal]:
        out: dict[UsageRequest, Decimal] = dict.fromkeys(requests, ZERO)
        if not requests:
            return out
        customers = await self._customers.get_many(namespace, [r.customer_id for r in requests])
        # One query per feature and period, for every customer that asks for it.
        groups: dict[tuple[str, datetime, datetime], list[UsageRequest]] = defaultdict(list)
        for request in dict.fromkeys(requests):
            if request.customer_id in customers and request.start < request.end:
                groups[(request.feature_key, request.start, request.end)].append(request)
        metered = await self._metered(namespace, (feature_key for feature_key, _, _ in groups))
        for (feature_key, start, end), asked in groups.items():
            if feature_key not in metered:
                continue
            feature, meter = metered[feature_key]
            for owners in _disjoint(asked, customers):
                sql, parameters = render_billing_usage_query(
                    meter,
                    namespace,
                    {str(slot): subjects for slot, (subjects, _) in enumerate(owners)},
                    start,
                    end,
                    cutoff,
                    feature.filters,
                    # A deleted meter's values are not extracted from the events stored since: read them.
                    maps_complete=meter.values_backfilled and meter.deleted_at is None,
                )
                values = {slot: _decimal(value) for slot, value in await self._ch.query(sql, parameters)}
                for slot, (_, each) in enumerate(owners):
                    for request in each:
                        out[request] = values.get(str(slot), ZERO)
        return out


def _meter_when_made(meters: Iterable[Meter], feature: Feature) -> Meter | None:
    """The meter under the feature's slug at the feature's creation (the last one made by then)."""
    made = [
        m
        for m in meters
        if m.slug == feature.meter_slug
        and m.created_at <= feature.created_at
        and (m.deleted_at is None or m.deleted_at > feature.created_at)
    ]
    return max(made, key=lambda m: m.created_at, default=None)


def _disjoint(
    requests: Iterable[UsageRequest], customers: Mapping[str, Customer]
) -> list[list[tuple[tuple[str, ...], list[UsageRequest]]]]:
    """The requests of one feature and period as queries whose subject sets do not meet: each query
    a list of (subjects, the requests that count them). A query maps each subject to one set, so
    two sets that share a subject (an invoice's copy of its customer and another customer that took
    one of its subjects since, or the same customer's copy and its subjects now) go to different
    queries; usually there is one. Requests without subjects need no query."""
    queries: list[dict[tuple[str, ...], list[UsageRequest]]] = []
    taken: list[set[str]] = []
    for request in requests:
        subjects = request.subjects if request.subjects is not None else customers[request.customer_id].usage_subjects
        if not subjects:
            continue
        for query, used in zip(queries, taken, strict=True):
            if subjects in query:
                query[subjects].append(request)
                break
            if used.isdisjoint(subjects):
                query[subjects] = [request]
                used.update(subjects)
                break
        else:
            queries.append({subjects: [request]})
            taken.append(set(subjects))
    return [list(query.items()) for query in queries]
