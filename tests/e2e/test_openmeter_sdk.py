"""OpenMeter's official Python SDK, unchanged, against Tally: the wire-format contract."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from corehttp.exceptions import HttpResponseError
from openmeter import Client
from openmeter.models import Event, MeterCreate

from tests.support.metering import unique
from tests.support.stack import TallyProcess


def _eventually(fn, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _sdk_flow(rest_url: str) -> None:
    client = Client(endpoint=rest_url)
    slug = unique("sdk_tokens")
    meter = client.meters.create(
        MeterCreate(
            slug=slug, event_type=slug, aggregation="SUM", value_property="$.tokens", group_by={"model": "$.model"}
        )
    )
    assert meter.slug == slug
    assert meter.id
    assert meter.aggregation == "SUM"
    assert client.meters.get(slug).id == meter.id
    assert slug in {m.slug for m in client.meters.list()}

    now = datetime.now(UTC) - timedelta(minutes=1)
    client.events.ingest_event(
        Event(
            id="sdk-1",
            source="sdk",
            specversion="1.0",
            type=slug,
            subject="acme",
            time=now,
            data={"tokens": 10, "model": "gpt-4o"},
        )
    )
    client.events.ingest_events(
        [
            Event(
                id=f"sdk-batch-{i}",
                source="sdk",
                specversion="1.0",
                type=slug,
                subject="acme",
                time=now,
                data={"tokens": 5, "model": "gpt-4o-mini"},
            )
            for i in range(4)
        ]
    )

    def settled() -> object:
        result = client.meters.query_json(slug, group_by=["model"])
        assert sorted((row.group_by["model"], row.value) for row in result.data) == [
            ("gpt-4o", 10.0),
            ("gpt-4o-mini", 20.0),
        ]
        return result

    result = _eventually(settled)
    assert all(row.subject is None for row in result.data)
    csv_text = client.meters.query_csv(slug)
    body = csv_text if isinstance(csv_text, str) else b"".join(csv_text).decode()
    assert body.splitlines()[0] == "window_start,window_end,value"
    assert body.splitlines()[1].endswith(",30.000000")

    events = client.events.list(subject="acme")
    assert {e.event.id for e in events} >= {"sdk-1", "sdk-batch-0"}

    with pytest.raises(HttpResponseError) as missing:
        client.meters.get("no_such_meter_here")
    assert missing.value.status_code == 404
    client.meters.delete(slug)


async def test_openmeter_sdk_against_tally(tally: TallyProcess) -> None:
    await asyncio.to_thread(_sdk_flow, tally.rest_url)
