"""Helpers for metering tests: unique names, CloudEvents, meters and polling queries over REST."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.stack import wait_for


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloudevent(
    event_type: str, subject: str, data: Any = None, *, time: datetime | None = None, **extra: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": extra.pop("id", uuid.uuid4().hex),
        "source": extra.pop("source", "tests"),
        "type": event_type,
        "subject": subject,
    }
    if time is not None:
        event["time"] = rfc3339(time)
    if data is not None:
        event["data"] = data
    event.update(extra)
    return event


async def create_meter(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await http.post("/api/v1/meters", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


async def ingest(
    http: httpx.AsyncClient, events: list[dict[str, Any]] | dict[str, Any], content_type: str | None = None
) -> None:
    if content_type is None:
        content_type = (
            "application/cloudevents-batch+json" if isinstance(events, list) else "application/cloudevents+json"
        )
    response = await http.post("/api/v1/events", json=events, headers={"content-type": content_type})
    assert response.status_code == 204, response.text


async def query(http: httpx.AsyncClient, slug: str, **params: Any) -> list[dict[str, Any]]:
    response = await http.get(f"/api/v1/meters/{slug}/query", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def query_until(
    http: httpx.AsyncClient, slug: str, predicate: Any, timeout: float = 15.0, **params: Any
) -> list[dict[str, Any]]:
    """Polls the meter query until `predicate(rows)` holds (ingest is asynchronous)."""

    async def check() -> tuple[list[dict[str, Any]]] | None:
        rows = await query(http, slug, **params)
        return (rows,) if predicate(rows) else None

    (rows,) = await wait_for(check, timeout=timeout)
    return rows


def total(rows: list[dict[str, Any]]) -> float:
    return sum(row["value"] for row in rows)
