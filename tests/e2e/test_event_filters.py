"""Both event lists' filters, against OpenMeter's semantics, through Envoy (REST) and gRPC.

One set of events with known customers, subjects, types, sources, times and ids; every filter is
checked for exactly the events it must return (ids are unique to this module's run).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import orjson
import pytest
import pytest_asyncio

from tally.v1 import events_pb2, events_pb2_grpc
from tests.support.metering import cloudevent, ingest, rfc3339
from tests.support.stack import TallyProcess, wait_for


@dataclass
class World:
    prefix: str
    acme: str  # customer IDs
    beta: str
    t1: str  # event types
    t2: str
    times: dict[str, datetime]  # by event short name
    ingested_before: datetime

    def id(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def ids(self, *shorts: str) -> set[str]:
        return {self.id(short) for short in shorts}


ALL = ("e1", "e2", "e3", "e10", "e5")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(tally: TallyProcess) -> World:
    prefix = f"ef{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    async with httpx.AsyncClient(base_url=tally.rest_url, timeout=30) as http:
        customers = {}
        for name, subjects in (("acme", ["a1", "a2"]), ("beta", ["b1"])):
            response = await http.post(
                "/api/v1/customers",
                json={
                    "name": name,
                    "key": f"{prefix}-{name}",
                    "usageAttribution": {"subjectKeys": [f"{prefix}-{s}" for s in subjects]},
                },
            )
            assert response.status_code == 201, response.text
            customers[name] = response.json()["id"]
        t1, t2 = f"{prefix}_t1", f"{prefix}_t2"
        times = {
            "e1": now - timedelta(hours=3),
            "e2": now - timedelta(hours=2),
            "e3": now - timedelta(hours=1),
            "e10": now - timedelta(minutes=30),
            "e5": now - timedelta(minutes=10),
        }
        spec = {
            "e1": (f"{prefix}-a1", t1, "src-x"),
            "e2": (f"{prefix}-a2", t1, "src-y"),
            "e3": (f"{prefix}-b1", t2, "src-x"),
            "e10": (f"{prefix}-nobody", t2, "src-y"),
            "e5": (f"{prefix}-acme", t1, "Src-Z"),  # the customer's key is one of its subjects too
        }
        ingested_before = datetime.now(UTC) - timedelta(seconds=1)
        await ingest(
            http,
            [
                cloudevent(event_type, subject, {"n": 1}, time=times[short], id=f"{prefix}-{short}", source=source)
                for short, (subject, event_type, source) in spec.items()
            ],
        )

        async def stored() -> bool:
            response = await http.get(
                "/api/v1/events", params={"subject": prefix, "from": rfc3339(now - timedelta(hours=4))}
            )
            return len(response.json()) == len(spec)

        await wait_for(stored, timeout=30)
    return World(prefix, customers["acme"], customers["beta"], t1, t2, times, ingested_before)


# --- v1 ------------------------------------------------------------------------------------------


async def v1(http: httpx.AsyncClient, world: World, **params: Any) -> list[dict[str, Any]]:
    params.setdefault("from", rfc3339(world.times["e1"] - timedelta(minutes=1)))
    response = await http.get("/api/v1/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def ids_of(items: list[dict[str, Any]], world: World) -> set[str]:
    # Events of other tests share the stack; only this module's matter.
    return {item["event"]["id"] for item in items if item["event"]["id"].startswith(world.prefix)}


async def test_v1_customer_filter(http: httpx.AsyncClient, world: World) -> None:
    acme = await v1(http, world, customerId=world.acme)
    assert {item["event"]["id"] for item in acme} == world.ids("e1", "e2", "e5"), "only acme's events, nobody else's"
    assert {item["customerId"] for item in acme} == {world.acme}
    both = await v1(http, world, customerId=[world.acme, world.beta])
    assert {item["event"]["id"] for item in both} == world.ids("e1", "e2", "e3", "e5")
    assert {item["event"]["id"]: item.get("customerId") for item in both}[world.id("e3")] == world.beta


async def test_v1_unknown_customer_is_a_400(http: httpx.AsyncClient, world: World) -> None:
    unknown = "01J00000000000000000000000"
    response = await http.get("/api/v1/events", params={"customerId": unknown})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert unknown in body["detail"]
    assert body["extensions"]["validationErrors"][0]["field"] == "customerId"


async def test_v1_events_carry_their_customer(http: httpx.AsyncClient, world: World) -> None:
    by_id = {item["event"]["id"]: item for item in await v1(http, world, subject=world.prefix)}
    assert by_id[world.id("e1")]["customerId"] == world.acme
    assert by_id[world.id("e5")]["customerId"] == world.acme  # attributed by the customer's key
    assert by_id[world.id("e3")]["customerId"] == world.beta
    assert "customerId" not in by_id[world.id("e10")]


async def test_v1_partial_id_and_subject(http: httpx.AsyncClient, world: World) -> None:
    assert ids_of(await v1(http, world, id=world.id("e1")), world) == world.ids("e1", "e10")
    assert ids_of(await v1(http, world, subject=f"{world.prefix}-a"), world) == world.ids("e1", "e2", "e5")


async def test_v1_time_bounds_are_inclusive(http: httpx.AsyncClient, world: World) -> None:
    at = rfc3339(world.times["e2"])
    assert ids_of(await v1(http, world, subject=world.prefix, **{"from": at, "to": at}), world) == world.ids("e2")
    to_e3 = await v1(http, world, subject=world.prefix, to=rfc3339(world.times["e3"]))
    assert ids_of(to_e3, world) == world.ids("e1", "e2", "e3")
    # Newest first.
    assert [item["event"]["id"] for item in to_e3] == [world.id("e3"), world.id("e2"), world.id("e1")]


async def test_v1_ingestion_time_and_limit(http: httpx.AsyncClient, world: World) -> None:
    everything = await v1(http, world, subject=world.prefix, ingestedAtFrom=rfc3339(world.ingested_before))
    assert ids_of(everything, world) == world.ids(*ALL)
    none = await v1(http, world, subject=world.prefix, ingestedAtTo=rfc3339(world.ingested_before))
    assert ids_of(none, world) == set()
    assert [i["event"]["id"] for i in await v1(http, world, subject=world.prefix, limit=2)] == [
        world.id("e5"),
        world.id("e10"),
    ]


async def test_v1_from_defaults_to_the_oldest_it_accepts(http: httpx.AsyncClient, world: World) -> None:
    """Without `from`, OpenMeter's v1 handler lists from now - 32 days + 1 s (the oldest `from` it
    accepts), not the 72 hours its API description states: an event of 5 days ago is listed."""
    old = f"{world.prefix}-five-days"
    # Its own type, and a subject without the prefix, so the other tests' exact sets are not disturbed.
    await ingest(
        http,
        cloudevent(
            f"{world.prefix}_five", f"five{world.prefix[2:]}", time=datetime.now(UTC) - timedelta(days=5), id=old
        ),
    )

    async def stored() -> bool:
        return old in ids_of(
            await v1(http, world, id=old, **{"from": rfc3339(datetime.now(UTC) - timedelta(days=6))}), world
        )

    await wait_for(stored, timeout=30)
    response = await http.get("/api/v1/events", params={"id": old})
    assert response.status_code == 200, response.text
    assert ids_of(response.json(), world) == {old}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2020-01-01T00:00:00Z"}, "from"),
        ({"ingestedAtFrom": "2020-01-01T00:00:00Z"}, "ingestedAtFrom"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, None),
        ({"limit": "101"}, "limit"),
    ],
)
async def test_v1_refuses_what_openmeter_refuses(
    http: httpx.AsyncClient, world: World, params: dict[str, str], field: str | None
) -> None:
    response = await http.get("/api/v1/events", params=params)
    assert response.status_code == 400, response.text
    if field:
        assert field in {v["field"] for v in response.json()["extensions"]["validationErrors"]}


async def test_v1_customer_filter_over_grpc(channel: grpc.aio.Channel, world: World) -> None:
    stub = events_pb2_grpc.EventServiceStub(channel)
    request = events_pb2.ListEventsRequest(customer_id=[world.beta])
    request.__getattribute__("from").FromDatetime(world.times["e1"] - timedelta(minutes=1))
    response = await stub.ListEvents(request)
    assert {item.event.id for item in response.items} == world.ids("e3")
    assert {item.customer_id for item in response.items} == {world.beta}
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.ListEvents(events_pb2.ListEventsRequest(customer_id=["01J00000000000000000000000"]))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT


# --- v2, through REST and gRPC alike -------------------------------------------------------------


class V2:
    def __init__(self, transport: str, http: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
        self.transport = transport
        self.http = http
        self.stub = events_pb2_grpc.EventServiceStub(channel)

    async def page(
        self, filter: dict[str, Any], limit: int = 100, cursor: str | None = None
    ) -> tuple[list[str], str | None]:
        if self.transport == "rest":
            params: dict[str, Any] = {"filter": orjson.dumps(filter).decode(), "limit": limit}
            if cursor:
                params["cursor"] = cursor
            response = await self.http.get("/api/v2/events", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            return [item["event"]["id"] for item in body["items"]], body.get("nextCursor")
        request = events_pb2.ListEventsV2Request(filter=orjson.dumps(filter).decode(), limit=limit)
        if cursor:
            request.cursor = cursor
        response = await self.stub.ListEventsV2(request)
        return [item.event.id for item in response.items], response.next_cursor or None

    async def ids(self, filter: dict[str, Any]) -> set[str]:
        ids, _ = await self.page(filter)
        return set(ids)

    async def refused(self, filter: Any) -> str:
        """The field the 400 / INVALID_ARGUMENT names."""
        text = filter if isinstance(filter, str) else orjson.dumps(filter).decode()
        if self.transport == "rest":
            response = await self.http.get("/api/v2/events", params={"filter": text})
            assert response.status_code == 400, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            return str(response.json()["extensions"]["validationErrors"][0]["field"])
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await self.stub.ListEventsV2(events_pb2.ListEventsV2Request(filter=text))
        assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        return error.value.details() or ""


@pytest.fixture(params=["rest", "grpc"])
def v2(request: pytest.FixtureRequest, http: httpx.AsyncClient, channel: grpc.aio.Channel) -> V2:
    return V2(request.param, http, channel)


def mine(world: World) -> dict[str, Any]:
    return {"type": {"$in": [world.t1, world.t2]}}


async def test_v2_customer_filter(v2: V2, world: World) -> None:
    assert await v2.ids({"customerId": {"$in": [world.acme]}}) == world.ids("e1", "e2", "e5")
    assert await v2.ids({"customerId": {"$eq": world.beta}}) == world.ids("e3")
    assert await v2.ids({"customerId": {"$in": [world.acme, world.beta]}}) == world.ids("e1", "e2", "e3", "e5")
    # With another filter: both hold.
    assert await v2.ids(
        {"customerId": {"$in": [world.acme]}, "type": {"$eq": world.t1}, "source": {"$eq": "src-x"}}
    ) == world.ids("e1")
    assert "customerId" in await v2.refused({"customerId": {"$in": ["01J00000000000000000000000"]}})
    assert "customerId" in await v2.refused({"customerId": {"$ne": world.acme}})


async def test_v2_id_is_exact_and_in_takes_many(v2: V2, world: World) -> None:
    assert await v2.ids({"id": {"$eq": world.id("e1")}}) == world.ids("e1"), "$eq is exact (e10 does not match)"
    assert await v2.ids({"id": {"$in": [world.id("e1"), world.id("e3"), world.id("e10")]}}) == world.ids(
        "e1", "e3", "e10"
    )
    assert await v2.ids({**mine(world), "id": {"$nin": [world.id("e1"), world.id("e2")]}}) == world.ids(
        "e3", "e10", "e5"
    )
    assert await v2.ids({"id": {"$like": f"{world.prefix}-e1%"}}) == world.ids("e1", "e10")
    assert await v2.ids({**mine(world), "id": {"$ne": world.id("e1")}}) == world.ids("e2", "e3", "e10", "e5")


async def test_v2_subject_type_source(v2: V2, world: World) -> None:
    p = world.prefix
    assert await v2.ids({"subject": {"$eq": f"{p}-a1"}}) == world.ids("e1")
    assert await v2.ids({"subject": {"$in": [f"{p}-a1", f"{p}-b1"]}}) == world.ids("e1", "e3")
    assert await v2.ids({"subject": {"$ilike": f"{p.upper()}-A%"}}) == world.ids("e1", "e2", "e5")
    assert await v2.ids({**mine(world), "subject": {"$nlike": f"{p}-a%"}}) == world.ids("e3", "e10")
    assert await v2.ids({"type": {"$eq": world.t2}}) == world.ids("e3", "e10")
    # Isolated by subject here: the type filter is the one under test.
    assert await v2.ids({"subject": {"$like": f"{p}-%"}, "type": {"$nin": [world.t2]}}) == world.ids("e1", "e2", "e5")
    assert await v2.ids({**mine(world), "source": {"$eq": "src-x"}}) == world.ids("e1", "e3")
    assert await v2.ids({**mine(world), "source": {"$nilike": "src-%"}}) == set(), "$nilike ignores case"
    assert await v2.ids({**mine(world), "source": {"$or": [{"$eq": "src-y"}, {"$eq": "Src-Z"}]}}) == world.ids(
        "e2", "e10", "e5"
    )
    assert await v2.ids({**mine(world), "source": {"$gt": "src-x"}}) == world.ids("e2", "e10"), "string order"


async def test_v2_ilike_ignores_case_beyond_ascii(v2: V2, world: World, http: httpx.AsyncClient) -> None:
    # OpenMeter's event list renders $ilike / $nilike as ClickHouse's ILIKE / NOT ILIKE, which fold
    # case in all of UTF-8 (its meter query's group-by filters use LOWER(), ASCII only).
    event_type = f"{world.prefix}_umlaut"
    # Its own type, and a subject without the prefix, so the other tests' exact sets are not disturbed.
    subject = f"ÄÖ-{world.prefix[2:]}"
    await ingest(http, cloudevent(event_type, subject, id=f"{world.prefix}-umlaut"))

    async def stored() -> bool:
        return await v2.ids({"type": {"$eq": event_type}}) == {f"{world.prefix}-umlaut"}

    await wait_for(stored, timeout=30)
    lower = f"äö-{world.prefix[2:]}"
    assert await v2.ids({"subject": {"$ilike": lower}}) == {f"{world.prefix}-umlaut"}
    assert await v2.ids({"type": {"$eq": event_type}, "subject": {"$nilike": lower}}) == set()


async def test_v2_time_and_ingestion_time(v2: V2, world: World) -> None:
    t = world.times
    assert await v2.ids({**mine(world), "time": {"$gte": rfc3339(t["e3"])}}) == world.ids("e3", "e10", "e5")
    assert await v2.ids({**mine(world), "time": {"$gt": rfc3339(t["e3"])}}) == world.ids("e10", "e5")
    assert await v2.ids({**mine(world), "time": {"$lte": rfc3339(t["e2"])}}) == world.ids("e1", "e2")
    assert await v2.ids({**mine(world), "time": {"$lt": rfc3339(t["e2"])}}) == world.ids("e1")
    between = {"$and": [{"$gte": rfc3339(t["e2"])}, {"$lt": rfc3339(t["e10"])}]}
    assert await v2.ids({**mine(world), "time": between}) == world.ids("e2", "e3")
    either = {"$or": [{"$lte": rfc3339(t["e1"])}, {"$gte": rfc3339(t["e5"])}]}
    assert await v2.ids({**mine(world), "time": either}) == world.ids("e1", "e5")
    ingested = {**mine(world), "ingestedAt": {"$gte": rfc3339(world.ingested_before)}}
    assert await v2.ids(ingested) == world.ids(*ALL)
    assert await v2.ids({**mine(world), "ingestedAt": {"$lt": rfc3339(world.ingested_before)}}) == set()


async def test_v2_filters_on_time_and_ingestion_time_together(v2: V2, world: World) -> None:
    # Both must hold (OpenMeter refused the pair until its #4211).
    since_e3 = {"time": {"$gte": rfc3339(world.times["e3"])}}
    ingested = {"ingestedAt": {"$gte": rfc3339(world.ingested_before)}}
    assert await v2.ids({**mine(world), **since_e3, **ingested}) == world.ids("e3", "e10", "e5")
    not_ingested = {"ingestedAt": {"$lt": rfc3339(world.ingested_before)}}
    assert await v2.ids({**mine(world), **since_e3, **not_ingested}) == set()


async def test_v2_has_no_default_time_range(v2: V2, world: World, http: httpx.AsyncClient) -> None:
    """OpenMeter's v2 list applies no default time range: an event of 10 days ago is listed."""
    old = f"{world.prefix}-old"
    # Its own type, so the other tests' exact sets are not disturbed.
    await ingest(
        http,
        cloudevent(f"{world.prefix}_old", f"{world.prefix}-old", time=datetime.now(UTC) - timedelta(days=10), id=old),
    )

    async def listed() -> bool:
        return await v2.ids({"id": {"$eq": old}}) == {old}

    await wait_for(listed, timeout=30)
    assert old not in ids_of(
        await v1(http, world, id=old, **{"from": rfc3339(datetime.now(UTC) - timedelta(hours=72))}), world
    )


async def test_v2_orders_by_event_time_also_when_filtering_on_ingestion_time(v2: V2, world: World) -> None:
    # OpenMeter's v2 list orders by event time, newest first, whatever it filters on (it ordered by
    # ingestion time under an ingestedAt filter until its #4211). All of them were ingested at once.
    ids, _ = await v2.page({**mine(world), "ingestedAt": {"$gte": rfc3339(world.ingested_before)}})
    assert ids == [world.id(short) for short in ("e5", "e10", "e3", "e2", "e1")]


async def test_v2_cursor_pages_through_everything_once(v2: V2, world: World) -> None:
    for filter in (mine(world), {**mine(world), "ingestedAt": {"$gte": rfc3339(world.ingested_before)}}):
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            ids, cursor = await v2.page(filter, limit=2, cursor=cursor)
            seen.extend(ids)
            if cursor is None:
                break
        assert sorted(seen) == sorted(i for i in seen if i.startswith(world.prefix))
        assert len(seen) == len(set(seen)) and world.ids(*ALL) <= set(seen)


@pytest.mark.parametrize(
    ("filter", "field"),
    [
        ({"id": {"$eq": "a", "$ne": "b"}}, "filter.id"),
        ({"time": {"$gte": "2026-01-01T00:00:00Z", "$lt": "2026-02-01T00:00:00Z"}}, "filter.time"),
        ({"customerID": {"$in": ["x"]}}, "filter.customerID"),
        ({"subject": {"$and": [{"$or": [{"$eq": "a"}]}]}}, "filter.subject"),
        ({"time": {"$gte": "yesterday"}}, "filter.time.$gte"),
        ({"type": {"$regex": "x"}}, "filter.type.$regex"),
        ("[1, 2]", "filter"),
        ("{not json", "filter"),
    ],
)
async def test_v2_refuses_what_openmeter_refuses(v2: V2, world: World, filter: Any, field: str) -> None:
    assert field in await v2.refused(filter)
