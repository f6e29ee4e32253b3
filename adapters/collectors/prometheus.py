"""Prometheus source: an instant PromQL query per scheduled tick, over Prometheus' HTTP API.

The query is evaluated at (tick - offset), never at "now", so a run repeated after a crash or by
another replica sees the same instant and yields the same samples and the same event ids. Each
sample of the resulting vector is a record: `metric` (its labels), `value` (the sample, a float as
Prometheus computes it), `time` (the evaluation instant). Samples that are NaN or infinite, or native
histograms, cannot be metered and are counted as failed.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson

from adapters.collectors import metrics
from adapters.collectors.records import Record, record_time


class PrometheusError(Exception):
    pass


class Prometheus:
    def __init__(
        self,
        name: str,
        url: str,
        query: str,
        *,
        offset: float = 0.0,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.query = query
        self.offset = offset
        self.client = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout, headers=headers or {})

    async def close(self) -> None:
        await self.client.aclose()

    async def collect(self, start: datetime, end: datetime) -> list[Record]:
        """The samples of the query at the tick `end` (minus the offset); `start` is not used."""
        at = end - timedelta(seconds=self.offset)
        try:
            response = await self.client.get(
                "/api/v1/query", params={"query": self.query, "time": f"{at.timestamp():.3f}"}
            )
        except httpx.HTTPError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise PrometheusError(f"Prometheus answered {response.status_code} without JSON") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"query failed ({response.status_code}): {body.get('error', body)}")
        data = body["data"]
        result_type = data.get("resultType")
        if result_type == "scalar":
            samples: list[dict[str, Any]] = [{"metric": {}, "value": data["result"]}]
        elif result_type == "vector":
            samples = data["result"]
        else:
            raise PrometheusError(f"the query must return an instant vector or a scalar, not a {result_type}")
        window = record_time(end)
        records = []
        for sample in samples:
            labels = sample.get("metric", {})
            if "value" not in sample:
                # A native histogram sample ("histogram"): not one number to meter. Skipped alone, so
                # the query's other samples and later windows go on (histogram_count() etc. meter it).
                metrics.FAILED.labels(self.name, "histogram").inc()
                continue
            value = float(sample["value"][1])
            if not math.isfinite(value):
                metrics.FAILED.labels(self.name, "not_finite").inc()
                continue
            key = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()
            values = {"metric": labels, "value": value, "time": record_time(at)}
            records.append(Record(values=values, key=key, window=window, time=at))
        return records
