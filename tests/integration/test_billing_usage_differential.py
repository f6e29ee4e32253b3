"""Billing's usage reader and the tests' stand-in answer every request alike (differential, hypothesis).

The invoice, billing-worker and subscription-billing tests (the subscription property test
included) read usage from `EventUsage` (tests/support/usage.py), not from the event store. They
prove billing right only if the stand-in answers as the real reader,
`adapters/clickhouse/billing_usage.py`, does. Here both get the same random events and answer the
same random requests, which must be equal, Decimal for Decimal:

- events of a COUNT, a SUM (with a group-by, and a feature filtering on it) and a LATEST meter, the
  aggregations the stand-in models, from the customers' keys, their subject keys and a stranger,
  at times on the period bounds, a millisecond or a microsecond either side, a second inside, or
  anywhere, in several time zones; written by the sink (the product's write path) in batches, so
  that they are stored at different times;
- customers whose subjects are drawn, and one subject taken from its customer and given to another
  between two rounds of reads;
- requests of every feature (one without a meter, one that does not exist), of the three customers
  and an unknown one, over periods between any two of those times (empty and reversed ones
  included, in any time zone), counting the customer's subjects now or a drawn copy (empty, shared
  with another customer, or naming subjects nobody has);
- cutoffs on an event's `stored_at`, a millisecond or a microsecond either side, before
  everything and after everything.

`stored_at` cannot be chosen through the sink: the store sets it (`DEFAULT now64(3)`) when it
writes a batch. Each batch is written after the store's clock passed the last one's, and the
stand-in is fed each event's `stored_at` as read back from the events table: the value the reader
compares with the cutoff. `growing_features` is compared for every feature too.

Over chDB and the ClickHouse HTTP endpoint. `make test` runs ten fixed examples per store (a fresh
namespace each, one store for all); `make etoe` (TALLY_FULL_SUITE=1) runs 200 new ones per store
(`TALLY_USAGEDIFF_EXAMPLES`).
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from domain.billing.invoices import UsageRequest
from domain.catalog.models import FeatureCreateInput
from domain.customers.models import Customer, CustomerInput
from domain.metering.models import MeterCreateInput
from tests.integration import test_billing_usage
from tests.integration.test_billing_usage import Stack, ingest, store_clock_past
from tests.support.services import require_module
from tests.support.usage import EventUsage

require_module("chdb")

# The reader's test's stack (Postgres, the event store over chDB and over HTTP, the sink, the
# reader), one per store for the whole module; each example takes a namespace of its own.
usage_stack = test_billing_usage.stack

NOV = datetime(2026, 11, 1, tzinfo=UTC)
MID = datetime(2026, 11, 13, 7, 30, 15, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
BOUNDS = (NOV, MID, DEC)
NUDGES = (
    timedelta(0),
    timedelta(milliseconds=-1),
    timedelta(milliseconds=1),
    timedelta(microseconds=-1),
    timedelta(microseconds=1),
    timedelta(milliseconds=999),
    timedelta(seconds=-1),
)
ZONES = (UTC, timezone(timedelta(hours=5, minutes=30)), ZoneInfo("America/Los_Angeles"), ZoneInfo("Pacific/Chatham"))

CUSTOMERS = ("c0", "c1", "c2")
SUBJECT_KEYS = ("s1", "s2", "s3", "s4")
# Every subject an event or a copied request names: the customers' keys (a key counts as a
# subject), their subject keys, and one nobody has.
SUBJECTS = (*CUSTOMERS, *SUBJECT_KEYS, "stranger")

# (meter slug, aggregation, event type, value property, group-by); features (key, meter, filters).
METERS = (
    ("calls", "COUNT", "call", None, {}),
    ("tokens", "SUM", "prompt", "$.tokens", {"model": "$.model"}),
    ("seats", "LATEST", "seat", "$.seats", {}),
)
FEATURES = (
    ("calls", "calls", {}),
    ("tokens", "tokens", {}),
    ("gpt_tokens", "tokens", {"model": "gpt"}),
    ("seats", "seats", {}),
    ("manual", None, {}),
)
ASKED_FEATURES = (*(key for key, _, _ in FEATURES), "no_such_feature")

_namespaces = itertools.count()


def _moment(anywhere: int) -> st.SearchStrategy[datetime]:
    """A time on a bound (nudged), or anywhere from two days before November to two after."""
    on_bound = st.builds(lambda b, n: b + n, st.sampled_from(BOUNDS), st.sampled_from(NUDGES))
    free = st.integers(0, anywhere).map(lambda ms: NOV - timedelta(days=2) + timedelta(milliseconds=ms))
    return st.one_of(on_bound, free)


_SPAN_MS = (DEC - NOV + timedelta(days=4)) // timedelta(milliseconds=1)
moments = _moment(_SPAN_MS)
zones = st.sampled_from(ZONES)
# Whole numbers, quarters and hundredths, negative ones included: the reader sums a SUM meter's
# values as decimals (docs/billing.md), so 0.1 + 0.2 must read 0.3 as the stand-in adds it.
values = st.one_of(
    st.integers(-5, 1000),
    st.integers(-20, 400).map(lambda q: q / 4),
    st.integers(-500, 5000).map(lambda c: c / 100),
    # Tenths whose Float64 sums are off in any order (0.1 + 0.2 is 0.30000000000000004).
    st.sampled_from((0.1, 0.2, 0.7, 1.1, 2.2)),
)


@st.composite
def events(draw: st.DrawFn) -> tuple[str, str, datetime, dict[str, Any]]:
    kind = draw(st.sampled_from(("call", "prompt", "seat")))
    subject = draw(st.sampled_from(SUBJECTS))
    at = draw(moments).astimezone(draw(zones))
    if kind == "call":
        data: dict[str, Any] = {}
    elif kind == "prompt":
        data = {"tokens": draw(values)}
        model = draw(st.sampled_from(("gpt", "claude", None)))
        if model is not None:
            data["model"] = model
    else:
        data = {"seats": draw(values)}
    return kind, subject, at, data


def _features_of(kind: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    """(feature, quantity) the stand-in is given for an event: what each feature's meter and
    filters take of it (a COUNT event counts 1)."""
    if kind == "call":
        return [("calls", "1")]
    if kind == "seat":
        return [("seats", repr(data["seats"]))]
    out = [("tokens", repr(data["tokens"]))]
    if data.get("model") == "gpt":
        out.append(("gpt_tokens", repr(data["tokens"])))
    return out


def _revalued(payload: dict[str, Any], value: float) -> dict[str, Any]:
    return {k: value if k in ("tokens", "seats") else v for k, v in payload.items()}


async def _namespace(stack: Stack, ns: str, owners: dict[str, int]) -> list[Customer]:
    for slug, aggregation, event_type, value, group_by in METERS:
        await stack.meters.create(
            ns,
            MeterCreateInput(
                slug=slug, aggregation=aggregation, event_type=event_type, value_property=value, group_by=group_by
            ),
        )
    for key, meter, filters in FEATURES:
        await stack.features.create(
            ns, FeatureCreateInput(key=key, name=key, meter_slug=meter, meter_group_by_filters=filters)
        )
    return [
        await stack.customer_service.create(
            ns,
            CustomerInput(name=key, key=key, subject_keys=[s for s, owner in owners.items() if owner == index]),
        )
        for index, key in enumerate(CUSTOMERS)
    ]


async def _stored_at(stack: Stack, ns: str) -> dict[str, datetime]:
    rows = await stack.clickhouse.query("SELECT id, stored_at FROM events WHERE namespace = {ns:String}", {"ns": ns})
    return {i: (s if s.tzinfo is not None else s.replace(tzinfo=UTC)) for i, s in rows}


@st.composite
def requests(draw: st.DrawFn, customers: list[Customer]) -> list[UsageRequest]:
    """Requests over a few periods (a billing run asks many customers for one period: one query
    for all of them, subject sets that meet split over several), any of them empty or reversed."""
    ids = [c.id for c in customers] + ["nobody"]
    periods = []
    for _ in range(draw(st.integers(1, 3))):
        start, end = draw(moments), draw(moments)
        if draw(st.booleans()):
            start, end = min(start, end), max(start, end)
        periods.append((start, end))
    out = []
    for _ in range(draw(st.integers(1, 10))):
        start, end = draw(st.sampled_from(periods))
        copied = draw(st.none() | st.lists(st.sampled_from(SUBJECTS), unique=True, max_size=4).map(tuple))
        out.append(
            UsageRequest(
                draw(st.sampled_from(ASKED_FEATURES)),
                draw(st.sampled_from(ids)),
                start.astimezone(draw(zones)),
                end.astimezone(draw(zones)),
                copied,
            )
        )
    # A billing run's read: every feature of every customer over one of the periods.
    if draw(st.booleans()):
        start, end = draw(st.sampled_from(periods))
        out += [UsageRequest(feature, i, start, end) for feature in ASKED_FEATURES for i in ids]
    return out


def cutoffs(stored: list[datetime]) -> st.SearchStrategy[datetime]:
    near = st.builds(lambda s, n: s + n, st.sampled_from(stored), st.sampled_from(NUDGES[:5]))
    far = st.sampled_from((NOV - timedelta(days=30), datetime.now(UTC) + timedelta(days=1)))
    return st.builds(lambda c, z: c.astimezone(z), st.one_of(near, far), zones)


async def _agree(stack: Stack, standin: EventUsage, ns: str, asked: list[UsageRequest], cutoff: datetime) -> None:
    real = await stack.usage.quantities(ns, asked, cutoff)
    model = await standin.quantities(ns, asked, cutoff)
    assert set(real) == set(model) == set(asked)
    differences = {r: (real[r], model[r]) for r in asked if real[r] != model[r]}
    assert not differences, f"reader vs stand-in at cutoff {cutoff.isoformat()}: {differences}"


_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "phases": [Phase.generate, Phase.shrink],
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
_DRAWS: dict[str, st.SearchStrategy[Any]] = {
    "owners": st.fixed_dictionaries({s: st.integers(0, len(CUSTOMERS)) for s in SUBJECT_KEYS}),
    "batches": st.lists(st.lists(events(), min_size=1, max_size=12), min_size=1, max_size=3),
    "data": st.data(),
}


@settings(max_examples=10, derandomize=True, **_SETTINGS)
@given(**_DRAWS)
async def test_the_reader_answers_as_the_stand_in_billing_tests_use(
    usage_stack: Stack, owners: dict[str, int], batches: list[list[Any]], data: st.DataObject
) -> None:
    await _check(usage_stack, owners, batches, data)


@pytest.mark.full_suite
@settings(max_examples=int(os.environ.get("TALLY_USAGEDIFF_EXAMPLES", "200")), **_SETTINGS)
@given(**_DRAWS)
async def test_the_reader_answers_as_the_stand_in_over_many_random_examples(
    usage_stack: Stack, owners: dict[str, int], batches: list[list[Any]], data: st.DataObject
) -> None:
    # `make etoe`: the same property over many more (and new) examples than `make test` affords.
    await _check(usage_stack, owners, batches, data)


async def _check(stack: Stack, owners: dict[str, int], batches: list[list[Any]], data: st.DataObject) -> None:
    ns = f"usagediff{next(_namespaces)}"
    customers = await _namespace(stack, ns, owners)
    written: list[list[Any]] = []
    latest = None
    for drawn in batches:
        # Events at the very time of another one (a LATEST one's, where there is one), of any
        # subject and value: a tie, which LATEST breaks by the order stored.
        earlier = [e for b in written for e in b] + drawn
        earlier = [e for e in earlier if e[0] == "seat"] or earlier
        echoes = data.draw(st.lists(st.tuples(st.sampled_from(earlier), st.sampled_from(SUBJECTS), values), max_size=4))
        batch = drawn + [(kind, subject, at, _revalued(payload, v)) for (kind, _, at, payload), subject, v in echoes]
        if latest is not None:
            await store_clock_past(stack, latest)
        latest = await ingest(stack, *batch, namespace=ns)
        written.append(batch)
    stored_at = await _stored_at(stack, ns)
    # The sink's ids sort in the order the events were written (ingest numbers them so).
    ordered = sorted(stored_at)
    standin = EventUsage(latest={"seats"}, unmetered={"manual", "no_such_feature"})
    for (kind, subject, at, payload), event_id in zip((e for batch in written for e in batch), ordered, strict=True):
        for feature, quantity in _features_of(kind, payload):
            # Under every customer: the request's subjects (or the customer's now) pick it.
            for customer in customers:
                standin.add(feature, customer.id, at, quantity, stored_at[event_id], subject)
    times = sorted(set(stored_at.values()))

    for round_ in range(2):
        if round_:
            # A subject taken from one customer and given to another.
            taker = data.draw(st.sampled_from(customers))
            giver = next((c for c in customers if c.id != taker.id and c.subject_keys), None)
            if giver is None:
                continue
            moved = data.draw(st.sampled_from(giver.subject_keys))
            await stack.customer_service.update(
                ns,
                giver.id,
                CustomerInput(
                    name=giver.key or "", key=giver.key, subject_keys=[s for s in giver.subject_keys if s != moved]
                ),
            )
            await stack.customer_service.update(
                ns,
                taker.id,
                CustomerInput(name=taker.key or "", key=taker.key, subject_keys=[*taker.subject_keys, moved]),
            )
            customers = list((await stack.customer_service.get_many(ns, [c.id for c in customers])).values())
        standin.subjects_now = {c.id: c.usage_subjects for c in customers}
        for _ in range(3):
            await _agree(stack, standin, ns, data.draw(requests(customers)), data.draw(cutoffs(times)))

    keys = set(ASKED_FEATURES)
    assert await stack.usage.growing_features(ns, keys) == await standin.growing_features(ns, keys)
