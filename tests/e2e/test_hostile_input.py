"""Hostile requests from outside, through Envoy: each gets a clean 4xx problem+json and changes nothing.

Oversized bodies, deep nesting, invalid UTF-8, NaN and huge numbers, NUL characters, out-of-range
times and SQL injection in slugs, paths, group-bys and filters. Before and after: the same meter
total, the same meters, the same events of the test's subject.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson

from tests.support.barrier import settle
from tests.support.metering import cloudevent, create_meter, ingest, query, query_until, total, unique

INJECTION = "x' OR '1'='1'; DROP TABLE events; --"
CE = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


async def _snapshot(http: httpx.AsyncClient, slug: str, subject: str) -> dict[str, Any]:
    meters = (await http.get("/api/v1/meters")).json()
    events = await http.get("/api/v1/events", params={"subject": subject})
    assert events.status_code == 200, events.text
    return {
        "total": total(await query(http, slug)),
        "grouped": await query(http, slug, groupBy="model"),
        "meters": sorted(m["slug"] for m in meters),
        "events": sorted(e["event"]["id"] for e in events.json()),
    }


async def test_hostile_requests_get_clean_4xx_and_change_nothing(http: httpx.AsyncClient) -> None:
    slug, event_type, subject = unique("hostile"), unique("hostile_type"), unique("hostile_subject")
    await create_meter(
        http, slug=slug, eventType=event_type, aggregation="SUM", valueProperty="$.v", groupBy={"model": "$.model"}
    )
    await ingest(
        http,
        [
            cloudevent(event_type, subject, {"v": 5, "model": "a"}),
            cloudevent(event_type, subject, {"v": 7, "model": "b"}),
        ],
    )
    await query_until(http, slug, lambda rows: total(rows) == 12)
    before = await _snapshot(http, slug, subject)

    event = cloudevent(event_type, subject, {"v": 1000, "model": "a"})
    body_with = lambda data: orjson.dumps(event)[:-1] + b',"data":' + data + b"}"  # noqa: E731
    meter_path = f"/api/v1/meters/{slug}"
    requests: list[tuple[str, str, dict[str, Any], int]] = [
        # Oversized: past Tally's 10 MiB request limit, and past Envoy's 16 MiB buffer.
        ("POST", "/api/v1/events", {"content": b"[" + b" " * (11 * 1024 * 1024) + b"]", "headers": BATCH}, 413),
        ("POST", "/api/v1/events", {"content": b" " * (17 * 1024 * 1024), "headers": BATCH}, 413),
        ("POST", "/api/v1/events", {"content": body_with(b'{"v":"' + b"x" * 70_000 + b'"}'), "headers": CE}, 413),
        # Deep nesting: within JSON's limits but past Tally's, past the encoder's, past the parser's.
        ("POST", "/api/v1/events", {"content": body_with(_nested(40)), "headers": CE}, 400),
        ("POST", "/api/v1/events", {"content": body_with(_nested(300)), "headers": CE}, 400),
        ("POST", "/api/v1/events", {"content": body_with(_nested(5000)), "headers": CE}, 400),
        (
            "POST",
            f"{meter_path}/query",
            {
                "content": b'{"advancedMeterGroupByFilters":{"model":'
                + b'{"$and":[' * 200
                + b"{}"
                + b"]}" * 200
                + b"}}",
                "headers": {"content-type": "application/json"},
            },
            400,
        ),
        # Invalid UTF-8 and NUL characters.
        ("POST", "/api/v1/events", {"content": body_with(b'{"v":"\xff\xfe\xc3\x28"}'), "headers": CE}, 400),
        (
            "POST",
            "/api/v1/meters",
            {
                "content": b'{"slug":"s\xff","eventType":"e","aggregation":"COUNT"}',
                "headers": {"content-type": "application/json"},
            },
            400,
        ),
        ("POST", "/api/v1/customers", {"json": {"name": "nul", "key": "a\u0000b"}}, 400),
        ("GET", "/api/v1/customers/a%00b", {}, 400),
        # NaN, infinities and huge numbers.
        ("POST", "/api/v1/events", {"content": body_with(b'{"v":NaN}'), "headers": CE}, 400),
        ("POST", "/api/v1/events", {"content": body_with(b'{"v":1e999}'), "headers": CE}, 400),
        ("GET", "/api/v1/events", {"params": {"limit": "1e99"}}, 400),
        ("GET", "/api/v1/events", {"params": {"limit": "NaN"}}, 400),
        ("GET", f"{meter_path}/query", {"params": {"from": "NaN"}}, 400),
        # Times outside what the store can hold.
        (
            "POST",
            "/api/v1/events",
            {"content": orjson.dumps({**event, "time": "0001-01-01T00:00:00Z"}), "headers": CE},
            400,
        ),
        # SQL injection in slugs, paths, group-bys, filters and subjects.
        ("POST", "/api/v1/meters", {"json": {"slug": INJECTION, "eventType": event_type, "aggregation": "COUNT"}}, 400),
        (
            "POST",
            "/api/v1/meters",
            {
                "json": {
                    "slug": unique("inj"),
                    "eventType": event_type,
                    "aggregation": "SUM",
                    "valueProperty": "$.v') OR 1=1 --",
                }
            },
            400,
        ),
        (
            "POST",
            "/api/v1/meters",
            {
                "json": {
                    "slug": unique("inj"),
                    "eventType": event_type,
                    "aggregation": "COUNT",
                    "groupBy": {"m": "$[?(@.v>0)]"},
                }
            },
            400,
        ),
        ("GET", f"/api/v1/meters/{quote(INJECTION, safe='')}/query", {}, 404),
        ("GET", f"{meter_path}/query", {"params": {"groupBy": INJECTION}}, 400),
        ("GET", f"{meter_path}/query", {"params": {"windowTimeZone": INJECTION}}, 400),
        ("GET", f"{meter_path}/query", {"params": {"windowSize": INJECTION}}, 400),
        ("GET", f"{meter_path}/query", {"params": {f"filterGroupBy[{INJECTION}]": "a"}}, 400),
        ("GET", f"{meter_path}/group-by/{quote(INJECTION, safe='')}/values", {}, 400),
        (
            "POST",
            f"{meter_path}/query",
            {"json": {"advancedMeterGroupByFilters": {"model": {"$eq": "a", "$ne": INJECTION}}}},
            400,
        ),
        ("PUT", meter_path, {"json": {"groupBy": {INJECTION: "$.model"}}}, 400),
    ]
    for method, path, kwargs, expected in requests:
        response = await http.request(method, path, **kwargs)
        label = f"{method} {path[:80]} {str(kwargs)[:100]}"
        assert response.status_code == expected, f"{label}: {response.status_code} {response.text[:300]}"
        assert response.headers["content-type"] == "application/problem+json", label
        problem = response.json()
        assert problem["status"] == expected and problem["title"], label

    # Injection as plain data: bound as a value, so it simply matches nothing.
    assert await query(http, slug, **{"filterGroupBy[model]": INJECTION}) == []
    assert await query(http, slug, subject=INJECTION) == []
    like = await http.post(
        f"{meter_path}/query", json={"advancedMeterGroupByFilters": {"model": {"$like": "%' OR 1=1 --"}}}
    )
    assert like.status_code == 200 and like.json()["data"] == []
    # A time before ClickHouse's text range used to be a 500.
    old = await http.get("/api/v1/events", params={"ingestedAtTo": "0466-02-04T10:54:29Z"})
    assert old.status_code == 200 and old.json() == []

    # Anything wrongly accepted has reached the store once markers sent after it have.
    await settle(http)
    assert await _snapshot(http, slug, subject) == before
