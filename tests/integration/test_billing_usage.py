"""Billing's UsageSource over the event store (chDB, and ClickHouse's HTTP path), with events
written by the real sink: every aggregation a feature (and so a usage-based price) can use, a
customer with two subjects, a feature's group-by filter, the period bounds, the store cutoff (late
events count only from a later cutoff on), one query per feature and period for all customers, the
subjects an invoice copied from its customer, and an archived feature's meter once it is deleted.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from adapters.clickhouse.billing_usage import ClickHouseUsageSource
from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import create_engine, migrate, session_factory
from adapters.postgres.event_keys import PostgresEventKeyStore
from adapters.postgres.features import PostgresFeatureRepository
from adapters.postgres.meters import PostgresMeterRepository
from domain.billing.invoices import UsageRequest
from domain.catalog.models import FeatureCreateInput
from domain.catalog.service import FeatureService
from domain.customers.models import CustomerInput
from domain.customers.service import CustomerService
from domain.metering.events import IngestLimits, validate_batch
from domain.metering.models import MeterCreateInput
from domain.metering.service import MeterService
from tests.support import event_store
from tests.support.services import require, require_module
from tests.support.stack import create_database, postgres_available
from workers.sink import EventSink, MeterCatalog

require_module("chdb")

NS = "billing_usage"
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
D = Decimal
_ids = itertools.count()


class CountingClickHouse(ClickHouse):
    """The real client; it also counts the queries billing sends."""

    queries = 0

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self.queries += 1
        return await super().query(sql, parameters)


@dataclass
class Stack:
    usage: ClickHouseUsageSource
    clickhouse: CountingClickHouse
    sink: EventSink
    customers: dict[str, str]
    meters: MeterService
    features: FeatureService
    customer_service: CustomerService


@pytest_asyncio.fixture(scope="module", params=event_store.KINDS)
async def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=2)
    sessions = session_factory(engine)
    clickhouse = CountingClickHouse(
        event_store.event_store_url(request, request.param, Path(tmp_path_factory.mktemp("usage")), "billing_usage")
    )
    await clickhouse.migrate()
    store = ClickHouseEventStore(clickhouse)
    meters = PostgresMeterRepository(sessions)
    meter_service = MeterService(meters, store)
    for slug, aggregation, event_type, value in (
        ("calls", "COUNT", "call", None),
        ("tokens", "SUM", "prompt", "$.tokens"),
        ("users", "UNIQUE_COUNT", "login", "$.user"),
        ("seats", "LATEST", "seat_count", "$.seats"),
    ):
        await meter_service.create(
            NS,
            MeterCreateInput(
                slug=slug,
                aggregation=aggregation,
                event_type=event_type,
                value_property=value,
                group_by={"model": "$.model"} if slug == "tokens" else {},
            ),
        )
    features = FeatureService(PostgresFeatureRepository(sessions), meters)
    for key, meter, filters in (
        ("calls", "calls", {}),
        ("tokens", "tokens", {}),
        ("gpt_tokens", "tokens", {"model": "gpt"}),
        ("users", "users", {}),
        ("seats", "seats", {}),
        ("manual", None, {}),
    ):
        await features.create(
            NS, FeatureCreateInput(key=key, name=key, meter_slug=meter, meter_group_by_filters=filters)
        )
    customer_service = CustomerService(PostgresCustomerRepository(sessions))
    customers = {}
    for key, subjects in (("acme", ["acme-dev"]), ("beta", []), ("idle", [])):
        made = await customer_service.create(NS, CustomerInput(name=key, key=key, subject_keys=subjects))
        customers[key] = made.id
    sink = EventSink(store, PostgresEventKeyStore(engine), MeterCatalog(meters, 0.01), owner="test")
    usage = ClickHouseUsageSource(clickhouse, PostgresFeatureRepository(sessions), meters, customer_service)
    yield Stack(usage, clickhouse, sink, customers, meter_service, features, customer_service)
    clickhouse.close()
    await engine.dispose()


async def ingest(stack: Stack, *events: tuple[str, str, datetime, dict[str, Any]], namespace: str = NS) -> datetime:
    """Writes the events through the sink; returns the latest `stored_at` of the store afterwards."""
    raws = [
        {
            "specversion": "1.0",
            # Zero-padded: ids sort as they were made (LATEST's last tie-break is the id).
            "id": f"e{next(_ids):09d}",
            "source": "test",
            "type": event_type,
            "subject": subject,
            "time": at.isoformat(),
            "data": data,
        }
        for event_type, subject, at, data in events
    ]
    await stack.sink.flush(validate_batch(raws, namespace, datetime.now(UTC), IngestLimits()))
    rows = await stack.clickhouse.query("SELECT max(stored_at) FROM events")
    stored: datetime = rows[0][0]
    return stored if stored.tzinfo is not None else stored.replace(tzinfo=UTC)


async def store_clock_past(stack: Stack, moment: datetime) -> None:
    """Waits until the store's clock has passed `moment`, so the next rows are stored after it."""
    while True:
        (now,) = (await stack.clickhouse.query("SELECT now64(3, 'UTC')"))[0]
        if (now if now.tzinfo else now.replace(tzinfo=UTC)) > moment:
            return


def requests(stack: Stack, *asked: tuple[str, str, datetime, datetime]) -> list[UsageRequest]:
    return [UsageRequest(feature, stack.customers[customer], start, end) for feature, customer, start, end in asked]


async def read(stack: Stack, asked: Sequence[UsageRequest], cutoff: datetime) -> dict[tuple[str, str], Decimal]:
    names = {v: k for k, v in stack.customers.items()}
    found = await stack.usage.quantities(NS, asked, cutoff)
    assert set(found) == set(asked)
    return {(r.feature_key, names[r.customer_id]): found[r] for r in asked if r.end == DEC}


async def test_every_aggregation_in_bulk_as_of_the_store_cutoff(stack: Stack) -> None:
    day = timedelta(days=1)
    first = await ingest(
        stack,
        # acme counts under its key and its second subject.
        ("call", "acme", NOV + day, {}),
        ("call", "acme-dev", NOV + 2 * day, {}),
        ("call", "beta", NOV + 3 * day, {}),
        ("call", "acme", NOV - timedelta(seconds=1), {}),  # before the period
        ("call", "acme", DEC, {}),  # the period's end is exclusive
        ("call", "stranger", NOV + day, {}),  # nobody's subject
        ("prompt", "acme", NOV + day, {"tokens": 1.5, "model": "gpt"}),
        ("prompt", "acme-dev", NOV + 2 * day, {"tokens": 2.25, "model": "claude"}),
        ("prompt", "beta", NOV + 3 * day, {"tokens": 40, "model": "gpt"}),
        # The same user under both of acme's subjects is one user.
        ("login", "acme", NOV + day, {"user": "ann"}),
        ("login", "acme-dev", NOV + 2 * day, {"user": "ann"}),
        ("login", "acme-dev", NOV + 2 * day, {"user": "bob"}),
        ("login", "beta", NOV + day, {"user": "ann"}),
        # LATEST is the value of the last event by time across all of acme's subjects.
        ("seat_count", "acme-dev", NOV + 5 * day, {"seats": 7}),
        ("seat_count", "acme", NOV + 4 * day, {"seats": 9}),
        ("seat_count", "beta", NOV + day, {"seats": 3}),
    )
    await ingest(stack, ("call", "acme", NOV + day, {}), namespace="elsewhere")
    await store_clock_past(stack, first)
    # Late usage for November, stored after the first cutoff.
    second = await ingest(
        stack,
        ("call", "acme", NOV + 10 * day, {}),
        ("prompt", "acme-dev", NOV + 10 * day, {"tokens": 0.25, "model": "gpt"}),
        ("login", "acme", NOV + 10 * day, {"user": "cy"}),
        ("seat_count", "acme", NOV + 10 * day, {"seats": 12}),
    )
    asked = requests(
        stack,
        *[
            (feature, customer, NOV, DEC)
            for feature in ("calls", "tokens", "gpt_tokens", "users", "seats")
            for customer in ("acme", "beta", "idle")
        ],
        ("manual", "acme", NOV, DEC),  # a feature without a meter
        ("no_such_feature", "acme", NOV, DEC),
        ("calls", "acme", NOV, NOV + 2 * day),  # another period of the same feature
    )
    before = stack.clickhouse.queries
    at_first = await read(stack, asked, first)
    # One query per feature and period (five features over November, calls over a second period),
    # whatever the number of customers; nothing for features without a meter.
    assert stack.clickhouse.queries - before == 6
    assert at_first == {
        ("calls", "acme"): D(2),
        ("calls", "beta"): D(1),
        ("calls", "idle"): D(0),
        ("tokens", "acme"): D("3.75"),
        ("tokens", "beta"): D(40),
        ("tokens", "idle"): D(0),
        ("gpt_tokens", "acme"): D("1.5"),
        ("gpt_tokens", "beta"): D(40),
        ("gpt_tokens", "idle"): D(0),
        ("users", "acme"): D(2),
        ("users", "beta"): D(1),
        ("users", "idle"): D(0),
        ("seats", "acme"): D(7),
        ("seats", "beta"): D(3),
        ("seats", "idle"): D(0),
        ("manual", "acme"): D(0),
        ("no_such_feature", "acme"): D(0),
    }
    short = await stack.usage.quantities(NS, [asked[-1]], first)
    assert short[asked[-1]] == D(1)
    # The same cutoff reads the same numbers again; the later one counts the late events.
    assert await read(stack, asked, first) == at_first
    at_second = await read(stack, asked, second)
    changed = {k: v for k, v in at_second.items() if at_first[k] != v}
    assert changed == {
        ("calls", "acme"): D(3),
        ("tokens", "acme"): D("4.00"),
        ("gpt_tokens", "acme"): D("1.75"),
        ("users", "acme"): D(3),
        ("seats", "acme"): D(12),
    }


async def test_only_features_whose_meters_only_grow_may_be_billed_in_parts(stack: Stack) -> None:
    # OpenMeter splits a period only for SUM, COUNT, MAX and UNIQUE_COUNT meters: a LATEST value
    # may fall, and a part billed on it could not be taken back. A feature without a meter, or
    # unknown, bills nothing in parts either.
    asked = {"calls", "tokens", "gpt_tokens", "users", "seats", "manual", "nope"}
    assert await stack.usage.growing_features(NS, asked) == {"calls", "tokens", "gpt_tokens", "users"}


async def test_a_request_counts_the_subjects_its_invoice_copied(stack: Stack) -> None:
    # An invoice counts the subjects it copied from its customer when it was made (OpenMeter's
    # invoice customer usage attribution), not the customer's subjects now. Two requests that count
    # one subject for different customers (a copy that still had a subject another customer has
    # now) each count it, in one call: the bulk query mapped each subject to one customer only.
    oct1, oct31 = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC)
    stored = await ingest(
        stack,
        ("call", "acme", oct1 + timedelta(days=1), {}),
        ("call", "acme-dev", oct1 + timedelta(days=2), {}),
        ("call", "beta", oct1 + timedelta(days=3), {}),
        ("call", "beta", oct1 + timedelta(days=4), {}),
    )
    acme, beta = stack.customers["acme"], stack.customers["beta"]
    copied = UsageRequest("calls", acme, oct1, oct31, ("acme",))
    with_beta = UsageRequest("calls", acme, oct1, oct31, ("acme", "beta"))
    now = UsageRequest("calls", acme, oct1, oct31)
    betas = UsageRequest("calls", beta, oct1, oct31)
    before = stack.clickhouse.queries
    found = await stack.usage.quantities(NS, [copied, now, with_beta, betas], stored)
    assert [found[r] for r in (copied, now, with_beta, betas)] == [D(1), D(2), D(3), D(2)]
    assert stack.clickhouse.queries - before == 3  # three sets of subjects that meet: three queries


async def test_an_archived_features_line_reads_its_own_meter_after_the_meter_is_deleted(stack: Stack) -> None:
    # A line made for a feature keeps billing it once the feature is archived, and then its meter
    # may be deleted (no live feature holds it). OpenMeter resolves a feature's meter by ID, deleted
    # meters included (ResolveFeatureMeters, productcatalog/feature/featuremeter.go), so the line
    # still bills the meter's events; Tally looked the meter up by slug among live meters: 0 calls
    # once it was deleted, and the events of another meter once one was made under the same slug.
    nov2 = NOV + timedelta(days=1)
    await stack.meters.create(NS, MeterCreateInput(slug="old_calls", aggregation="COUNT", event_type="old_call"))
    await stack.features.create(NS, FeatureCreateInput(key="old_calls", name="old calls", meter_slug="old_calls"))
    stored = await ingest(
        stack,
        ("old_call", "acme", nov2, {}),
        ("old_call", "acme", nov2, {}),
        ("new_call", "acme", nov2, {"n": 5}),
    )
    asked = UsageRequest("old_calls", stack.customers["acme"], NOV, DEC)
    assert (await stack.usage.quantities(NS, [asked], stored))[asked] == D(2)
    await stack.features.archive(NS, "old_calls")
    await stack.meters.delete(NS, "old_calls")
    assert (await stack.usage.quantities(NS, [asked], stored))[asked] == D(2)
    await stack.meters.create(
        NS, MeterCreateInput(slug="old_calls", aggregation="SUM", event_type="new_call", value_property="$.n")
    )
    assert (await stack.usage.quantities(NS, [asked], stored))[asked] == D(2)


async def test_a_sum_is_read_as_the_decimal_sum_of_what_the_events_carried(stack: Stack) -> None:
    # 0.1 + 0.2 GB is 0.3; its Float64 sum, in either order, is 0.30000000000000004, which a
    # price per package of 0.3 GB would bill as two packages, and a volume tier ending at 0.3 in
    # the next tier. A value the decimal scale cannot hold (1e-12: more decimals; 1e30: more
    # digits) keeps the Float64 sum, as the meter query reads it, rather than being truncated.
    sep1, sep30 = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 9, 30, tzinfo=UTC)
    at = sep1 + timedelta(days=1)
    stored = await ingest(
        stack,
        ("prompt", "acme", at, {"tokens": 0.1, "model": "gpt"}),
        ("prompt", "acme-dev", at, {"tokens": 0.2, "model": "gpt"}),
        ("prompt", "acme", at, {"tokens": 5, "model": "claude"}),
        ("prompt", "beta", at, {"tokens": 0.1}),
        ("prompt", "beta", at, {"tokens": 1e-12}),
        ("prompt", "idle", at, {"tokens": 1e30}),
        ("prompt", "idle", at, {"tokens": 1}),
    )
    acme, beta, idle = (UsageRequest("tokens", stack.customers[c], sep1, sep30) for c in ("acme", "beta", "idle"))
    gpt = UsageRequest("gpt_tokens", stack.customers["acme"], sep1, sep30)
    found = await stack.usage.quantities(NS, [acme, beta, idle, gpt], stored)
    assert 0.1 + 0.2 != 0.3  # the Float64 sum this guards against
    assert found[gpt] == D("0.3")
    assert found[acme] == D("5.3")
    assert found[beta] == D(repr(0.1 + 1e-12))
    assert found[idle] == D(repr(1e30 + 1))
