"""MeterService.PreviewMeter (POST /api/v1/tally/meters/preview): what a meter definition would read
from a sample event, checked against what create, ingest, queries and the events list really do."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import orjson

from tally.v1 import meters_pb2, meters_pb2_grpc
from tests.support.metering import cloudevent, create_meter, ingest, query_until, unique
from tests.support.stack import wait_for

PREVIEW = "/api/v1/tally/meters/preview"


async def _preview(http: httpx.AsyncClient, sample: dict[str, Any] | str, **definition: Any) -> dict[str, Any]:
    text = sample if isinstance(sample, str) else orjson.dumps(sample).decode()
    response = await http.post(PREVIEW, json={**definition, "sampleEvent": text})
    assert response.status_code == 200, response.text
    return response.json()


async def test_preview_equals_what_ingest_and_query_read(http: httpx.AsyncClient) -> None:
    slug = unique("preview")
    definition = {
        "eventType": slug,
        "aggregation": "SUM",
        "valueProperty": "$.usage.tokens",
        "groupBy": {"model": "$.model", "region": "$['geo'].region", "tier": "$.tier"},
    }
    event = cloudevent(
        slug,
        "cust-1",
        {"usage": {"tokens": "12.50"}, "model": "gpt-4", "geo": {"region": "eu"}},
        time=datetime.now(UTC) - timedelta(minutes=5),
    )
    preview = await _preview(http, event, **definition)
    assert preview == {
        "meterErrors": [],
        "eventErrors": [],
        "eventTypeMatches": True,
        "value": 12.5,
        "groupBy": {"model": "gpt-4", "region": "eu", "tier": ""},
    }

    await create_meter(http, slug=slug, **definition)
    await ingest(http, event)
    rows = await query_until(http, slug, lambda rows: len(rows) == 1, groupBy=["model", "region", "tier"])
    assert rows[0]["value"] == preview["value"]
    assert rows[0]["groupBy"] == preview["groupBy"]


async def test_preview_of_a_value_that_is_no_number_and_a_missing_path_matches_the_events_list(
    http: httpx.AsyncClient,
) -> None:
    slug = unique("preview_skip")
    definition = {"eventType": slug, "aggregation": "SUM", "valueProperty": "$.tokens"}
    base = datetime.now(UTC) - timedelta(minutes=10)
    not_a_number = cloudevent(slug, slug, {"tokens": "twelve"}, time=base)
    missing = cloudevent(slug, slug, {"other": 1}, time=base + timedelta(minutes=1))

    first = await _preview(http, not_a_number, **definition)
    assert first["value"] == "NaN"
    assert first["skipReason"] == "invalid event: value cannot be parsed as float64: twelve"
    second = await _preview(http, missing, **definition)
    assert second["value"] == "NaN"
    assert second["skipReason"] == 'invalid event: missing value property: "$.tokens"'
    other_type = await _preview(http, {**missing, "type": "something_else"}, **definition)
    assert other_type["eventTypeMatches"] is False

    await create_meter(http, slug=slug, **definition)
    await ingest(http, [not_a_number, missing])

    async def listed() -> list[dict[str, Any]]:
        response = await http.get("/api/v1/events", params={"subject": slug})
        return response.json()

    async def both_stored() -> bool:
        return len(await listed()) == 2

    await wait_for(both_stored, timeout=30)
    errors = [event["validationError"] for event in await listed()]  # newest first
    assert errors == [second["skipReason"], first["skipReason"]]


async def test_preview_reports_the_errors_create_and_ingest_give(http: httpx.AsyncClient) -> None:
    bad_definition = {"eventType": "", "aggregation": "SUM", "valueProperty": "$..tokens", "groupBy": {"m": "$.m["}}
    preview = await _preview(http, cloudevent("t", "s", {"tokens": 1}), **bad_definition)
    created = await http.post("/api/v1/meters", json={"slug": unique("bad"), **bad_definition})
    assert created.status_code == 400
    expected = [
        {key: error[key] for key in ("field", "message", "code")}
        for error in created.json()["extensions"]["validationErrors"]
    ]
    assert preview["meterErrors"] == expected
    assert {error["field"] for error in expected} == {"eventType", "valueProperty", "groupBy.m"}
    assert "value" not in preview

    bad_event = cloudevent("t", "s", {"tokens": 1}, datacontenttype="application/xml")
    del bad_event["id"]
    preview = await _preview(http, bad_event, eventType="t", aggregation="COUNT")
    ingested = await http.post(
        "/api/v1/events", json=bad_event, headers={"content-type": "application/cloudevents+json"}
    )
    assert ingested.status_code == 400
    expected = [
        {key: error[key] for key in ("field", "message", "code")}
        for error in ingested.json()["extensions"]["validationErrors"]
    ]
    assert preview["eventErrors"] == expected
    assert {error["field"] for error in expected} == {"id", "datacontenttype"}

    not_json = await _preview(http, '{"id": ', eventType="t", aggregation="COUNT")
    assert [error["field"] for error in not_json["eventErrors"]] == ["body"]
    assert not_json["eventErrors"][0]["message"].startswith("invalid JSON")


async def test_preview_over_grpc(channel: grpc.aio.Channel) -> None:
    meters = meters_pb2_grpc.MeterServiceStub(channel)
    sample = orjson.dumps(cloudevent("calls", "s", {"tokens": "7", "user": {"id": 42}, "tags": ["a"]})).decode()

    unique_count = await meters.PreviewMeter(
        meters_pb2.PreviewMeterRequest(
            aggregation="UNIQUE_COUNT",
            event_type="calls",
            value_property="$.user.id",
            group_by={"tags": "$.tags"},
            sample_event=sample,
        )
    )
    assert unique_count.unique_value == "42" and not unique_count.HasField("value")
    assert dict(unique_count.group_by) == {"tags": ""}  # an array is no group value
    assert unique_count.event_type_matches and not unique_count.HasField("skip_reason")

    not_a_number = await meters.PreviewMeter(
        meters_pb2.PreviewMeterRequest(
            aggregation="MAX", event_type="calls", value_property="$.user", sample_event=sample
        )
    )
    assert math.isnan(not_a_number.value)
    assert not_a_number.skip_reason == "invalid event: unsupported value property type: map[string]interface {}"

    bad = await meters.PreviewMeter(
        meters_pb2.PreviewMeterRequest(aggregation="TOTAL", event_type="calls", sample_event='{"type": 1}')
    )
    assert [error.field for error in bad.meter_errors] == ["aggregation"]
    assert {error.field for error in bad.event_errors} == {"id", "source", "type", "subject", "specversion"}
    assert not bad.HasField("value") and not bad.event_type_matches
