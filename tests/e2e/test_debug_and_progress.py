"""OpenMeter's GET /api/v1/debug/metrics (OpenMetrics event counts since midnight UTC) and
GET /api/v1/info/progress/{id} (here: a meter's values backfill), over REST and gRPC."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import httpx
import pytest

from tally.v1 import events_pb2, events_pb2_grpc, meters_pb2, meters_pb2_grpc
from tests.support.metering import cloudevent, ingest, unique
from tests.support.stack import wait_for


async def test_debug_metrics_count_todays_events_per_subject(
    http: httpx.AsyncClient, channel: grpc.aio.Channel
) -> None:
    subject = unique("dbg")
    # Now, unless the test runs across midnight UTC: then both fall on the same (new) day anyway.
    now = datetime.now(UTC)
    await ingest(http, [cloudevent("debug_probe", subject, {"n": i}, time=now) for i in range(3)])
    await ingest(http, cloudevent("debug_probe", f'{subject}"q', time=now))
    line = f'openmeter_events_total{{subject="{subject}"}} 3'

    async def counted() -> str | None:
        response = await http.get("/api/v1/debug/metrics")
        assert response.status_code == 200, response.text
        return response.text if line in response.text.splitlines() else None

    text = await wait_for(counted, timeout=30)
    assert response_is_openmetrics(text)
    assert f'openmeter_events_total{{subject="{subject}\\"q"}} 1' in text.splitlines(), "label values are escaped"

    body = await events_pb2_grpc.EventServiceStub(channel).GetDebugMetrics(events_pb2.GetDebugMetricsRequest())
    assert body.content_type.startswith("text/plain") and line in body.data.decode().splitlines()


def response_is_openmetrics(text: str) -> bool:
    lines = text.splitlines()
    return (
        lines[:3]
        == [
            "# HELP openmeter_events Number of ingested events.",
            "# TYPE openmeter_events counter",
            "# UNIT openmeter_events events",
        ]
        and lines[-1] == "# EOF"
    )


async def test_a_meter_backfill_reports_its_progress(http: httpx.AsyncClient, channel: grpc.aio.Channel) -> None:
    event_type = unique("backfill")
    await ingest(http, [cloudevent(event_type, "s", {"tokens": i, "model": "m"}) for i in range(5)])

    async def stored() -> bool:
        response = await http.get("/api/v2/events", params={"filter": f'{{"type":{{"$eq":"{event_type}"}}}}'})
        return len(response.json()["items"]) == 5

    await wait_for(stored, timeout=30)
    # Created after its events: their values are backfilled.
    created = await http.post(
        "/api/v1/meters",
        json={"slug": event_type, "eventType": event_type, "aggregation": "SUM", "valueProperty": "$.tokens"},
    )
    assert created.status_code == 201, created.text
    meter = created.json()
    progress_id = meter["annotations"]["tally.backfill.progress_id"]
    assert progress_id == f"meter_backfill_{meter['id']}"

    first = await http.get(f"/api/v1/info/progress/{progress_id}")
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"success", "failed", "total", "updatedAt"}
    assert body["total"] == 5 and body["failed"] == 0 and 0 <= body["success"] <= 5

    async def done() -> bool:
        return (await http.get(f"/api/v1/info/progress/{progress_id}")).json()["success"] == 5

    await wait_for(done, timeout=120)

    # A group-by change starts another backfill under the same id; gRPC sees the same progress.
    updated = await http.put(f"/api/v1/meters/{event_type}", json={"groupBy": {"model": "$.model"}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["annotations"]["tally.backfill.progress_id"] == progress_id
    stub = meters_pb2_grpc.MeterServiceStub(channel)

    async def regrouped() -> meters_pb2.Progress | None:
        progress = await stub.GetProgress(meters_pb2.GetProgressRequest(id=progress_id))
        return progress if progress.success == 5 else None

    # Bounded generously: the one backfill worker serves every meter of the shared stack in turn.
    progress = await wait_for(regrouped, timeout=120)
    assert (progress.success, progress.failed, progress.total) == (5, 0, 5)


@pytest.mark.parametrize("progress_id", ["nope", "meter_backfill_01J00000000000000000000000"])
async def test_unknown_progress_is_a_404(http: httpx.AsyncClient, progress_id: str) -> None:
    response = await http.get(f"/api/v1/info/progress/{progress_id}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
