"""The Prometheus source against answers of Prometheus' HTTP API made in the test."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import orjson

from adapters.collectors import metrics
from adapters.collectors.prometheus import Prometheus

TICK = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def prometheus(result: list[dict[str, object]]) -> tuple[Prometheus, list[httpx.Request]]:
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, content=orjson.dumps(body))

    source = Prometheus("gpu", "http://prometheus:9090", "q", offset=30)
    source.client = httpx.AsyncClient(base_url="http://prometheus:9090", transport=httpx.MockTransport(answer))
    return source, asked


async def test_a_native_histogram_sample_is_skipped_not_a_stalled_source() -> None:
    # A native histogram sample has "histogram" instead of "value": the KeyError failed the whole
    # window, retried forever, so no sample of the query (nor any later window) was ever metered.
    histogram = {"count": "3", "sum": "1.5", "buckets": []}
    source, asked = prometheus(
        [
            {"metric": {"job": "api"}, "value": [1740830370, "2.5"]},
            {"metric": {"job": "native"}, "histogram": [1740830370, histogram]},
        ]
    )
    before = metrics.REGISTRY.get_sample_value("tally_collector_failed_total", {"source": "gpu", "reason": "histogram"})
    records = await source.collect(TICK.replace(minute=0, hour=11), TICK)
    assert [(r.values["metric"], r.values["value"]) for r in records] == [({"job": "api"}, 2.5)]
    assert records[0].values["time"] == "2025-03-01T11:59:30.000Z"
    assert asked[0].url.params["time"] == "1740830370.000"
    after = metrics.REGISTRY.get_sample_value("tally_collector_failed_total", {"source": "gpu", "reason": "histogram"})
    assert (after or 0) - (before or 0) == 1
    await source.close()
