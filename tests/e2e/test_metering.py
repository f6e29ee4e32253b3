"""OpenMeter's metering behaviours (its e2e suite, section 4 of the reference) over REST through Envoy."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.support.barrier import settle
from tests.support.metering import cloudevent, create_meter, ingest, query, query_until, rfc3339, total, unique
from tests.support.stack import wait_for


async def test_ingest_single_and_batch_sum_exactly(http: httpx.AsyncClient) -> None:
    event_type = unique("ingest")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.duration_ms")
    now = datetime.now(UTC) - timedelta(minutes=5)
    singles = [cloudevent(event_type, "customer-1", {"duration_ms": i}, time=now) for i in range(1000)]
    semaphore = asyncio.Semaphore(32)

    async def send(event: dict) -> None:
        async with semaphore:
            await ingest(http, event)

    await asyncio.gather(*(send(event) for event in singles))
    batch = [cloudevent(event_type, "customer-2", {"duration_ms": str(i)}, time=now) for i in range(1000)]
    await ingest(http, batch)
    expected = 2 * sum(range(1000))
    rows = await query_until(http, event_type, lambda rows: total(rows) == expected)
    assert len(rows) == 1
    by_subject = await query(http, event_type, groupBy="subject")
    assert {row["subject"]: row["value"] for row in by_subject} == {
        "customer-1": sum(range(1000)),
        "customer-2": sum(range(1000)),
    }


async def test_every_query_row_carries_its_subject_null_unless_grouped_by_subject(http: httpx.AsyncClient) -> None:
    # OpenMeter's MeterQueryRow requires `subject`, null when the query does not group by subject
    # (its rows are Go structs with `json:"subject"`); a client reading row["subject"] got KeyError.
    event_type = unique("row_subject")
    await create_meter(
        http,
        slug=event_type,
        eventType=event_type,
        aggregation="SUM",
        valueProperty="$.n",
        groupBy={"model": "$.model"},
    )
    # A group-by value that looks like the key the nulls are printed after, escaped inside its string.
    tricky = 'a","windowEnd":"b'
    at = datetime.now(UTC) - timedelta(minutes=5)
    await ingest(
        http,
        [
            cloudevent(event_type, "s1", {"n": 1, "model": tricky}, time=at),
            cloudevent(event_type, "s2", {"n": 2, "model": "m"}, time=at),
            cloudevent(event_type, "s2", {"n": 4, "model": "m"}, time=at - timedelta(hours=2)),
        ],
    )
    rows = await query_until(http, event_type, lambda rows: total(rows) == 7)
    assert [(r["subject"], r["groupBy"], r["value"]) for r in rows] == [(None, {}, 7.0)]
    hourly = await query(http, event_type, windowSize="HOUR", groupBy="model")
    assert sorted((r["subject"], r["groupBy"]["model"], r["value"]) for r in hourly) == [
        (None, 'a","windowEnd":"b', 1.0),
        (None, "m", 2.0),
        (None, "m", 4.0),
    ]
    by_subject = await query(http, event_type, groupBy=["subject", "model"])
    assert sorted((r["subject"], r["groupBy"]["model"], r["value"]) for r in by_subject) == [
        ("s1", tricky, 1.0),
        ("s2", "m", 6.0),
    ]
    # Not printed twice, and nothing where there are no rows.
    raw = (await http.get(f"/api/v1/meters/{event_type}/query", params={"groupBy": "model"})).text
    assert raw.count('"subject":null') == 2 and '"subject":"' not in raw
    empty = await http.get(f"/api/v1/meters/{event_type}/query", params={"subject": "nobody"})
    assert empty.json()["data"] == []


async def test_content_types(http: httpx.AsyncClient) -> None:
    event_type = unique("content_types")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="COUNT")
    await ingest(http, cloudevent(event_type, "s"), "application/cloudevents+json")
    await ingest(http, [cloudevent(event_type, "s"), cloudevent(event_type, "s")], "application/cloudevents-batch+json")
    await ingest(http, cloudevent(event_type, "s"), "application/json")
    await ingest(http, [cloudevent(event_type, "s"), cloudevent(event_type, "s")], "application/json")
    await query_until(http, event_type, lambda rows: total(rows) == 6)

    wrong = await http.post("/api/v1/events", content=b"<xml/>", headers={"content-type": "application/xml"})
    assert wrong.status_code == 400
    assert wrong.headers["content-type"] == "application/problem+json"
    array_as_single = await http.post(
        "/api/v1/events", json=[cloudevent(event_type, "s")], headers={"content-type": "application/cloudevents+json"}
    )
    assert array_as_single.status_code == 400
    empty = await http.post("/api/v1/events", json=[], headers={"content-type": "application/json"})
    assert empty.status_code == 400
    # An empty CloudEvents batch is a valid batch of nothing: OpenMeter answers 204 (only its
    # application/json decoding, which cannot tell what was meant, says "no events found").
    empty_batch = await http.post(
        "/api/v1/events", content=b"[]", headers={"content-type": "application/cloudevents-batch+json"}
    )
    assert empty_batch.status_code == 204, empty_batch.text


async def test_invalid_ingest_and_validation_errors_in_listing(http: httpx.AsyncClient) -> None:
    event_type = unique("ingest_invalid")
    subject = event_type
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.duration_ms")
    base = datetime.now(UTC) - timedelta(hours=1)
    times = iter(base - timedelta(minutes=i) for i in range(1, 20))

    xml = cloudevent(event_type, subject, time=next(times), datacontenttype="application/xml")
    xml["data"] = "<xml></xml>"
    response = await http.post("/api/v1/events", json=xml, headers={"content-type": "application/cloudevents+json"})
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["extensions"]["validationErrors"]}
    assert fields == {"datacontenttype", "data"}

    string_data = cloudevent(event_type, subject, time=next(times))
    string_data["data"] = "string"
    response = await http.post(
        "/api/v1/events", json=string_data, headers={"content-type": "application/cloudevents+json"}
    )
    assert response.status_code == 400
    assert response.json()["extensions"]["validationErrors"][0]["field"] == "data"

    null_data = cloudevent(event_type, subject, time=next(times))
    null_data["data"] = None
    await ingest(http, null_data)
    await ingest(http, cloudevent(event_type, subject, time=next(times)))  # no data
    await ingest(http, cloudevent(event_type, subject, {}, time=next(times)))  # empty data
    await ingest(http, cloudevent(event_type, subject, {"duration_ms": "NaN"}, time=next(times)))
    await ingest(http, cloudevent(event_type, subject, {"duration_ms": "Inf"}, time=next(times)))
    await ingest(http, cloudevent(event_type, subject, {"duration_ms": "100"}, time=next(times)))

    rows = await query_until(http, event_type, lambda rows: len(rows) == 1 and rows[0]["value"] == 100)
    assert rows[0]["value"] == 100.0  # NaN and Inf are skipped, not summed

    listed = await http.get("/api/v1/events", params={"subject": subject})
    assert listed.status_code == 200
    events = listed.json()
    assert isinstance(events, list)
    assert len(events) == 6  # the two rejected events were never stored
    errors = [event.get("validationError") for event in events]  # newest first
    assert "invalid event: null and missing value property" in errors[0]
    assert "invalid event: null and missing value property" in errors[1]
    assert 'invalid event: missing value property: "$.duration_ms"' in errors[2]
    assert "invalid event: value cannot be NaN" in errors[3]
    assert "invalid event: value cannot be infinity" in errors[4]
    assert errors[5] is None
    assert events[5]["event"]["data"] == {"duration_ms": "100"}
    # As OpenMeter lists them: JSON data is marked as such, and an event without data has neither.
    assert [event["event"].get("datacontenttype") for event in events] == [None, None, *["application/json"] * 4]
    assert "data" not in events[0]["event"] and "data" not in events[1]["event"]
    assert {"ingestedAt", "storedAt"} <= set(events[0])


async def test_an_event_without_specversion_is_refused(http: httpx.AsyncClient) -> None:
    """specversion is a required CloudEvents attribute: OpenMeter refuses an event without it (400,
    in a batch too, where nothing lands), whatever the content type."""
    event_type = unique("specversion")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="COUNT")
    bare = cloudevent(event_type, "s")
    del bare["specversion"]
    for content_type, body in (
        ("application/cloudevents+json", bare),
        ("application/json", bare),
        ("application/cloudevents-batch+json", [cloudevent(event_type, "s"), bare]),
        ("application/json", [cloudevent(event_type, "s"), bare]),
    ):
        response = await http.post("/api/v1/events", json=body, headers={"content-type": content_type})
        assert response.status_code == 400, (content_type, response.text)
        fields = [e["field"] for e in response.json()["extensions"]["validationErrors"]]
        assert fields == (["[1].specversion"] if isinstance(body, list) else ["specversion"])
    await settle(http)
    assert total(await query(http, event_type)) == 0


async def test_event_times_are_rfc_3339_as_openmeter_reads_them(http: httpx.AsyncClient) -> None:
    """OpenMeter takes an event time as RFC 3339 exactly (its OpenAPI date-time pattern, then Go's
    RFC3339Nano): YYYY-MM-DDTHH:MM:SS, an optional dot fraction, then Z or +hh:mm. Other ISO 8601
    spellings are refused with a 400 naming the time, not guessed at."""
    event_type = unique("times")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="COUNT")
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    accepted = [
        f"{day}T01:02:03Z",
        f"{day}T01:02:03.123456789Z",
        f"{day}T01:02:03.5+05:30",
        f"{day}T01:02:03-00:00",
    ]
    await ingest(http, [cloudevent(event_type, "s", time=None) | {"time": t} for t in accepted])
    refused = [
        f"{day}T01:02:03+0100",
        f"{day}T01:02:03+01",
        f"{day}T01:02:03,5Z",
        f"{day}T01:02:03.Z",
        f"{day}t01:02:03z",
        f"{day}T01:02:03+01:00:30",
        f"{day}T010203Z",
        f"{day}T01:02:03",
    ]
    for time_text in refused:
        response = await http.post(
            "/api/v1/events",
            json=cloudevent(event_type, "s") | {"time": time_text},
            headers={"content-type": "application/cloudevents+json"},
        )
        assert response.status_code == 400, (time_text, response.text)
        assert [e["field"] for e in response.json()["extensions"]["validationErrors"]] == ["time"], time_text
    await settle(http)
    assert total(await query(http, event_type)) == len(accepted)


async def test_data_base64_is_metered_like_data(http: httpx.AsyncClient) -> None:
    """CloudEvents' JSON format may carry the payload as data_base64 (what CloudEvents SDKs send for
    bytes). OpenMeter's CloudEvents decoding reads it as the event's data and meters the JSON inside;
    an event whose data_base64 is not base64 of a JSON object is refused, naming the field."""
    event_type = unique("base64")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.tokens")
    time = datetime.now(UTC) - timedelta(minutes=5)
    encoded = cloudevent(event_type, "s", time=time, data_base64=base64.b64encode(b'{"tokens": 7}').decode())
    await ingest(http, encoded)
    await ingest(http, [cloudevent(event_type, "s", {"tokens": 5}, time=time), {**encoded, "id": "b64-2"}])
    await query_until(http, event_type, lambda rows: total(rows) == 19)
    listed = (await http.get("/api/v1/events", params={"id": encoded["id"]})).json()
    assert [item["event"].get("data") for item in listed] == [{"tokens": 7}]
    assert "validationError" not in listed[0]

    for bad in ("not base64!", base64.b64encode(b"<xml/>").decode(), base64.b64encode(b"[1]").decode(), 5):
        response = await http.post(
            "/api/v1/events",
            json=[cloudevent(event_type, "s", {"tokens": 1}), cloudevent(event_type, "s", data_base64=bad)],
            headers={"content-type": "application/cloudevents-batch+json"},
        )
        assert response.status_code == 400, (bad, response.text)
        assert [e["field"] for e in response.json()["extensions"]["validationErrors"]] == ["[1].data_base64"]
    both = cloudevent(event_type, "s", {"tokens": 1}, data_base64=encoded["data_base64"])
    response = await http.post("/api/v1/events", json=both, headers={"content-type": "application/cloudevents+json"})
    assert response.status_code == 400, response.text
    await settle(http)
    assert total(await query(http, event_type)) == 19  # nothing of the refused batches landed


async def test_dedupe_counts_one(http: httpx.AsyncClient) -> None:
    event_type = unique("dedupe")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="COUNT")
    now = datetime.now(UTC)
    duplicates = [
        cloudevent(
            event_type,
            "customer-1",
            {},
            id="52f44f66-020f-4fa9-a733-102a8ef6f515",
            source="my-app",
            time=now - timedelta(days=i % 30),
        )
        for i in range(1000)
    ]
    # Within one batch, across batches, and one by one.
    await ingest(http, duplicates[:500])
    await ingest(http, duplicates[500:900])
    for event in duplicates[900:]:
        await ingest(http, event)
    await settle(http)
    assert total(await query(http, event_type)) == 1
    # Same id from another source is another event.
    await ingest(http, {**duplicates[0], "source": "other-app"})
    await settle(http)
    assert total(await query(http, event_type)) == 2


async def test_query_windows_total_and_csv(http: httpx.AsyncClient) -> None:
    event_type = unique("query")
    await create_meter(
        http,
        slug=event_type,
        eventType=event_type,
        aggregation="SUM",
        valueProperty="$.duration_ms",
        groupBy={"method": "$.method", "path": "$.path"},
    )
    timestamp = datetime(2024, 1, 1, 10, 17, 31, 400000, tzinfo=UTC)
    events = []
    for subject in ("customer-1", "customer-2"):
        events += [
            cloudevent(event_type, subject, {"duration_ms": 100, "method": "GET", "path": "/"}, time=timestamp),
            cloudevent(
                event_type,
                subject,
                {"duration_ms": 100, "method": "GET", "path": "/"},
                time=timestamp + timedelta(minutes=1),
            ),
            cloudevent(
                event_type,
                subject,
                {"duration_ms": 100, "method": "POST", "path": "/"},
                time=timestamp + timedelta(hours=1),
            ),
            cloudevent(
                event_type,
                subject,
                {"duration_ms": 100, "method": "POST", "path": "/x"},
                time=timestamp + timedelta(days=1),
            ),
        ]
    await ingest(http, events)
    rows = await query_until(http, event_type, lambda rows: total(rows) == 800)
    # The total window: minute-floor of the first event to minute-floor of the last + 1 minute.
    assert rows == [
        {
            "value": 800.0,
            "windowStart": "2024-01-01T10:17:00Z",
            "windowEnd": "2024-01-02T10:18:00Z",
            "subject": None,
            "groupBy": {},
        }
    ]
    minute = await query(http, event_type, windowSize="MINUTE")
    assert [(r["windowStart"], r["windowEnd"], r["value"]) for r in minute] == [
        ("2024-01-01T10:17:00Z", "2024-01-01T10:18:00Z", 200.0),
        ("2024-01-01T10:18:00Z", "2024-01-01T10:19:00Z", 200.0),
        ("2024-01-01T11:17:00Z", "2024-01-01T11:18:00Z", 200.0),
        ("2024-01-02T10:17:00Z", "2024-01-02T10:18:00Z", 200.0),
    ]
    hour = await query(http, event_type, windowSize="HOUR")
    assert [(r["windowStart"], r["value"]) for r in hour] == [
        ("2024-01-01T10:00:00Z", 400.0),
        ("2024-01-01T11:00:00Z", 200.0),
        ("2024-01-02T10:00:00Z", 200.0),
    ]
    day = await query(http, event_type, windowSize="DAY")
    assert [(r["windowStart"], r["windowEnd"], r["value"]) for r in day] == [
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", 600.0),
        ("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z", 200.0),
    ]
    per_subject = await query(http, event_type, subject=["customer-1", "customer-2"])
    assert sorted((r["subject"], r["value"]) for r in per_subject) == [("customer-1", 400.0), ("customer-2", 400.0)]
    grouped = await query(http, event_type, groupBy=["method"], **{"filterGroupBy[path]": "/"})
    assert sorted((r["groupBy"]["method"], r["value"]) for r in grouped) == [("GET", 400.0), ("POST", 200.0)]
    bounded = await query(http, event_type, **{"from": "2024-01-01T10:18:00Z", "to": "2024-01-01T11:17:00Z"})
    assert [(r["windowStart"], r["windowEnd"], r["value"]) for r in bounded] == [
        ("2024-01-01T10:18:00Z", "2024-01-01T11:17:00Z", 200.0)
    ]

    # POST: JSON by default, CSV on request, in OpenMeter's exact format.
    posted = await http.post(f"/api/v1/meters/{event_type}/query", json={})
    assert posted.status_code == 200
    assert posted.json()["data"][0]["value"] == 800.0
    as_csv = await http.post(f"/api/v1/meters/{event_type}/query", json={}, headers={"accept": "text/csv"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"] == "text/csv"
    assert as_csv.text == "window_start,window_end,value\n2024-01-01T10:17:00Z,2024-01-02T10:18:00Z,800.000000\n"
    by_subject_csv = await http.get(
        f"/api/v1/meters/{event_type}/query", params={"groupBy": ["subject", "method"]}, headers={"accept": "text/csv"}
    )
    table = list(csv.reader(io.StringIO(by_subject_csv.text)))
    assert table[0] == ["window_start", "window_end", "subject", "method", "value"]
    assert len(table) == 5

    subjects = await http.get(f"/api/v1/meters/{event_type}/subjects")
    assert subjects.json() == ["customer-1", "customer-2"]
    too_old = await http.get(
        f"/api/v1/meters/{event_type}/group-by/method/values",
        params={"from": "2024-01-01T00:00:00Z", "to": "2024-01-03T00:00:00Z"},
    )
    assert too_old.status_code == 400  # OpenMeter limits group-by value listing to the last 90 days
    await ingest(http, cloudevent(event_type, "customer-3", {"duration_ms": 1, "method": "PUT"}))
    await query_until(http, event_type, lambda rows: total(rows) == 801)
    values = await http.get(f"/api/v1/meters/{event_type}/group-by/method/values")
    assert values.json() == ["PUT"]  # the last 24 hours by default


async def test_csv_names_the_subjects_known_as_subjects(http: httpx.AsyncClient) -> None:
    # OpenMeter's CSV, grouped by subject, adds subject_display_name when any row's subject is a
    # subject entity: its display name, or "" (for a subject without one or not known).
    event_type = unique("csv_names")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="COUNT")
    named, nameless, unknown = (f"{event_type}-{name}" for name in ("named", "nameless", "unknown"))
    response = await http.post("/api/v1/subjects", json=[{"key": named, "displayName": "Named One"}, {"key": nameless}])
    assert response.status_code == 200, response.text
    await ingest(http, [cloudevent(event_type, subject) for subject in (named, nameless, unknown)])
    await query_until(http, event_type, lambda rows: total(rows) == 3)

    async def table(**params: str) -> list[list[str]]:
        response = await http.get(f"/api/v1/meters/{event_type}/query", params=params, headers={"accept": "text/csv"})
        assert response.status_code == 200, response.text
        return list(csv.reader(io.StringIO(response.text)))

    by_subject = await table(groupBy="subject")
    assert by_subject[0] == ["window_start", "window_end", "subject", "subject_display_name", "value"]
    assert sorted(row[2:] for row in by_subject[1:]) == [
        [named, "Named One", "1.000000"],
        [nameless, "", "1.000000"],
        [unknown, "", "1.000000"],
    ]
    # No subject of the rows is known: no column.
    assert (await table(subject=unknown))[0] == ["window_start", "window_end", "subject", "value"]


async def test_a_csv_answer_is_an_attachment_named_after_the_meter(http: httpx.AsyncClient) -> None:
    # OpenMeter's CSV encoder (pkg/framework/commonhttp/encoder.go csvResponseEncoder) names the file
    # after the meter's slug, however the meter was named in the path.
    slug = unique("csv_file")
    meter = await create_meter(http, slug=slug, eventType=slug, aggregation="COUNT")
    for name in (slug, meter["id"]):
        response = await http.get(f"/api/v1/meters/{name}/query", headers={"accept": "text/csv"})
        assert response.status_code == 200, response.text
        assert response.headers["content-disposition"] == f"attachment; filename={slug}.csv"
        assert response.text.startswith("window_start,window_end,value\n")
    posted = await http.post(f"/api/v1/meters/{slug}/query", json={}, headers={"accept": "text/csv"})
    assert posted.headers["content-disposition"] == f"attachment; filename={slug}.csv"
    assert "content-disposition" not in (await http.get(f"/api/v1/meters/{slug}/query")).headers


async def test_csv_is_answered_only_to_an_accept_of_text_csv(http: httpx.AsyncClient) -> None:
    # OpenMeter reads Accept with Go's mime.ParseMediaType (commonhttp.GetMediaType): CSV when the
    # header is text/csv (parameters aside, any case); a list of types does not parse, and is JSON.
    slug = unique("accept")
    await create_meter(http, slug=slug, eventType=slug, aggregation="COUNT")
    path = f"/api/v1/meters/{slug}/query"
    for accept in ("text/csv", "text/csv; charset=utf-8", "Text/CSV"):
        response = await http.get(path, headers={"accept": accept})
        assert response.headers["content-type"] == "text/csv", accept
    for accept in ("application/json, text/csv", "text/csv, application/json", "application/json"):
        response = await http.get(path, headers={"accept": accept})
        assert response.status_code == 200, (accept, response.text)
        assert response.headers["content-type"].startswith("application/json"), accept
        assert "data" in response.json()


async def test_query_validation_errors(http: httpx.AsyncClient) -> None:
    event_type = unique("query_invalid")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="COUNT", groupBy={"model": "$.model"})
    cases = [
        ({"from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "from"),
        ({"windowSize": "WEEK"}, "windowSize"),
        ({"windowTimeZone": "Mars/Olympus"}, "windowTimeZone"),
        ({"groupBy": "nope"}, "groupBy"),
        ({"filterGroupBy[nope]": "x"}, "filterGroupBy"),
    ]
    for params, field in cases:
        response = await http.get(f"/api/v1/meters/{event_type}/query", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        fields = [e["field"] for e in response.json()["extensions"]["validationErrors"]]
        assert any(f.startswith(field) for f in fields), (params, fields)
    missing = await http.get("/api/v1/meters/no_such_meter/query")
    assert missing.status_code == 404


async def test_day_windows_continuous_across_dst(http: httpx.AsyncClient) -> None:
    event_type = unique("dst")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.duration_ms")
    la = ZoneInfo("America/Los_Angeles")
    for month, first_day in ((3, 6), (10, 30)):
        days = [datetime(2025, month, first_day, 10, tzinfo=la) + timedelta(days=i) for i in range(7)]
        await ingest(http, [cloudevent(event_type, "customer-dst", {"duration_ms": "100"}, time=d) for d in days])
        start = days[0].replace(hour=0)
        end = (days[-1] + timedelta(days=1)).replace(hour=0)
        params = {
            "windowSize": "DAY",
            "windowTimeZone": "America/Los_Angeles",
            "subject": "customer-dst",
            "from": rfc3339(start),
            "to": rfc3339(end),
        }
        rows = await query_until(http, event_type, lambda rows: len(rows) == 7, **params)
        for current, following in itertools.pairwise(rows):
            assert current["windowEnd"] == following["windowStart"]
        for row in rows:
            local = datetime.fromisoformat(row["windowStart"]).astimezone(la)
            assert (local.hour, local.minute) == (0, 0)
        lengths = {
            (datetime.fromisoformat(r["windowEnd"]) - datetime.fromisoformat(r["windowStart"])) / timedelta(hours=1)
            for r in rows
        }
        assert lengths == {24, 23} if month == 3 else lengths == {24, 25}


async def test_meter_crud_and_update_limits(http: httpx.AsyncClient) -> None:
    slug = unique("crud")
    created = await create_meter(
        http,
        slug=slug,
        eventType=slug,
        aggregation="SUM",
        valueProperty="$.v",
        groupBy={"model": "$.model"},
        description="d",
    )
    assert created["name"] == slug
    by_id = await http.get(f"/api/v1/meters/{created['id']}")
    assert by_id.json()["slug"] == slug
    listed = await http.get("/api/v1/meters")
    assert slug in {m["slug"] for m in listed.json()}
    updated = await http.put(
        f"/api/v1/meters/{slug}", json={"name": "Renamed", "groupBy": {"model": "$.model", "tier": "$.tier"}}
    )
    assert updated.status_code == 200
    assert updated.json()["name"] == "Renamed"
    assert updated.json()["groupBy"] == {"model": "$.model", "tier": "$.tier"}
    assert updated.json()["aggregation"] == "SUM"
    bad = await http.post(
        "/api/v1/meters", json={"slug": unique("bad"), "eventType": "x", "aggregation": "COUNT", "valueProperty": "$.v"}
    )
    assert bad.status_code == 400
    hostile = await http.post(
        "/api/v1/meters",
        json={"slug": unique("bad"), "eventType": "x", "aggregation": "SUM", "valueProperty": "$.a') OR 1=1 --"},
    )
    assert hostile.status_code == 400
    deleted = await http.delete(f"/api/v1/meters/{slug}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await http.get(f"/api/v1/meters/{slug}")
    assert gone.status_code == 404
    still_by_id = await http.get(f"/api/v1/meters/{created['id']}")
    assert still_by_id.json().get("deletedAt")


async def test_meter_created_after_events_counts_them_and_is_backfilled(http: httpx.AsyncClient) -> None:
    """Meters are data, not schema: a meter created after its events arrived counts them, before and
    after the backfill into typed columns, with identical results."""
    event_type = unique("late_meter")
    now = datetime.now(UTC) - timedelta(minutes=3)
    events = [
        cloudevent(event_type, f"s{i % 3}", {"tokens": str(i) if i % 2 else i, "model": f"m{i % 2}"}, time=now)
        for i in range(60)
    ]
    events.append(cloudevent(event_type, "s0", {"tokens": "NaN", "model": "m0"}, time=now))
    events.append(cloudevent(event_type, "s0", {"model": "m1"}, time=now))
    await ingest(http, events)
    probe = unique("probe")
    await create_meter(http, slug=probe, eventType=event_type, aggregation="COUNT")
    await query_until(http, probe, lambda rows: total(rows) == 62)

    meter = await create_meter(
        http,
        slug=event_type,
        eventType=event_type,
        aggregation="SUM",
        valueProperty="$.tokens",
        groupBy={"model": "$.model"},
    )
    assert not (meter.get("annotations") or {}).get("tally.values.backfilled")
    params = {"groupBy": ["subject", "model"], "windowSize": "HOUR"}
    before = await query(http, event_type, **params)
    assert total(before) == sum(range(60))

    async def backfilled() -> bool:
        current = (await http.get(f"/api/v1/meters/{event_type}")).json()
        return bool((current.get("annotations") or {}).get("tally.values.backfilled"))

    await wait_for(backfilled, timeout=30)
    after = await query(http, event_type, **params)
    assert after == before

    # Changing the group-by adds a path: the meter is backfilled again, results stay exact.
    await http.put(f"/api/v1/meters/{event_type}", json={"groupBy": {"model": "$.model", "tier": "$.tier"}})
    assert total(await query(http, event_type, groupBy=["tier"])) == sum(range(60))
    await wait_for(backfilled, timeout=30)
    assert total(await query(http, event_type, groupBy=["tier"])) == sum(range(60))


async def test_a_query_answer_larger_than_envoys_buffer_reaches_rest_clients(http: httpx.AsyncClient) -> None:
    # Envoy's transcoder holds a whole gRPC response to print it as JSON; by default it refused one
    # over the connection's 1 MiB buffer with a 500 (envoy/envoy.yaml: max_response_body_size).
    # 24,000 rows of about 90 bytes each in protobuf.
    event_type = unique("large_answer")
    await create_meter(http, slug=event_type, eventType=event_type, aggregation="COUNT")
    now = datetime.now(UTC) - timedelta(minutes=5)
    subjects = [f"customer-with-a-rather-long-subject-name-to-fill-the-answer-{i:06d}" for i in range(24_000)]
    for start in range(0, len(subjects), 1000):
        await ingest(http, [cloudevent(event_type, subject, time=now) for subject in subjects[start : start + 1000]])
    rows = await query_until(http, event_type, lambda rows: total(rows) == len(subjects))
    assert len(rows) == 1
    response = await http.get(f"/api/v1/meters/{event_type}/query", params={"groupBy": "subject"})
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) > 2 << 20
    by_subject = response.json()["data"]
    assert sorted(row["subject"] for row in by_subject) == subjects
    assert {row["value"] for row in by_subject} == {1}
