"""The collector's push sources against a real Tally: the OpenTelemetry SDK's own OTLP exporter
sending logs to the receiver, and the HTTP relay fed by real HTTP clients while Tally is killed and
started again: every event the relay accepted is counted exactly once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
import yaml

from adapters.collectors import metrics
from server.errors import problem_response
from tests.support.metering import create_meter, query, unique
from tests.support.services import free_port, port_open
from tests.support.stack import TallyProcess, create_database, wait_for
from workers.collector.config import parse_config
from workers.collector.runner import Collector


def config_for(tmp_path: Path, sink: str, sources: list[dict[str, Any]], **extra: Any) -> str:
    config: dict[str, Any] = {
        "sink": {"url": sink, "timeout": "3s"},
        "batch": {"size": 50, "period": "100ms", "max_backoff": "500ms"},
        "buffer": {"path": str(tmp_path / "buffer.db")},
        "metrics": {"listen": None},
        "shutdown_timeout": "10s",
        "sources": sources,
    } | extra
    return yaml.safe_dump(config)


@pytest_asyncio.fixture
async def running(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Starts a Collector in this process from a YAML text; stops it (SIGTERM's path) afterwards."""
    started: list[tuple[Collector, asyncio.Event, asyncio.Task[None]]] = []

    async def start(text: str) -> Collector:
        collector = Collector(parse_config(text), problem=problem_response)
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        started.append((collector, stop, task))
        return collector

    yield start
    for _, stop, task in started:
        stop.set()
        await asyncio.wait_for(task, 30)


# OpenTelemetry logs


async def test_otel_sdk_logs_become_events(
    tally: TallyProcess, http: httpx.AsyncClient, tmp_path: Path, running: Any
) -> None:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    event_type, slug = unique("llm_call"), unique("output_tokens")
    customer = unique("customer")
    await create_meter(
        http, slug=slug, eventType=event_type, aggregation="SUM", valueProperty="$.tokens", groupBy={"model": "$.model"}
    )
    port = free_port()
    source = {
        "name": "llm_logs",
        "type": "otel_logs",
        "listen": f"127.0.0.1:{port}",
        "mapping": {
            "type": event_type,
            "subject": 'attributes."customer.id"',
            "filter": "attributes.\"event.name\" == 'usage'",
            "data": {
                "tokens": 'attributes."gen_ai.usage.output_tokens"',
                "model": 'attributes."gen_ai.request.model"',
                "service": 'resource."service.name"',
                "message": "body",
            },
        },
    }
    failed_before = metrics.FAILED.labels("llm_logs", "mapping")._value.get()
    await running(config_for(tmp_path, f"grpc://{tally.grpc_target}", [source]))
    await wait_for(lambda: asyncio.to_thread(port_open, "127.0.0.1", port), timeout=10)

    def emit() -> None:
        provider = LoggerProvider(resource=Resource.create({"service.name": "chat-api"}))
        provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"127.0.0.1:{port}", insecure=True))
        )
        logger = provider.get_logger("otel-test")
        for n in range(1, 21):
            model = "gpt-4o" if n % 2 else "o3"
            logger.emit(
                body="completion",
                severity_number=SeverityNumber.INFO,
                event_name="usage",
                attributes={
                    "event.name": "usage",
                    "customer.id": customer,
                    "gen_ai.usage.output_tokens": n,
                    "gen_ai.request.model": model,
                },
            )
        logger.emit(body="not usage", attributes={"event.name": "request", "customer.id": customer})  # filtered
        logger.emit(body="no customer", attributes={"event.name": "usage", "gen_ai.usage.output_tokens": 5})
        provider.force_flush()
        provider.shutdown()

    await asyncio.to_thread(emit)

    async def total() -> dict[str, Decimal] | None:
        rows = await query(http, slug, subject=customer, groupBy="model")
        found = {row["groupBy"]["model"]: Decimal(str(row["value"])) for row in rows}
        return found if sum(found.values()) == 210 else None

    assert await wait_for(total, timeout=20) == {"gpt-4o": Decimal(100), "o3": Decimal(110)}
    assert metrics.FAILED.labels("llm_logs", "mapping")._value.get() == failed_before + 1


async def test_an_otlp_export_sent_twice_counts_once(
    tally: TallyProcess, http: httpx.AsyncClient, tmp_path: Path, running: Any
) -> None:
    """An exporter that lost the answer sends the same request again: the same event ids."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2

    event_type, slug, customer = unique("log_call"), unique("log_calls"), unique("customer")
    await create_meter(http, slug=slug, eventType=event_type, aggregation="COUNT")
    port = free_port()
    source = {
        "name": "raw_logs",
        "type": "otel_logs",
        "listen": f"127.0.0.1:{port}",
        "mapping": {"type": event_type, "subject": "attributes.customer"},
    }
    await running(config_for(tmp_path, f"grpc://{tally.grpc_target}", [source]))
    await wait_for(lambda: asyncio.to_thread(port_open, "127.0.0.1", port), timeout=10)

    def log_record(n: int) -> logs_pb2.LogRecord:
        return logs_pb2.LogRecord(
            time_unix_nano=1_740_000_000_000_000_000 + n,
            body=common_pb2.AnyValue(string_value=f"call {n}"),
            attributes=[common_pb2.KeyValue(key="customer", value=common_pb2.AnyValue(string_value=customer))],
        )

    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=[log_record(n) for n in range(7)])])
        ]
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        for _ in range(3):
            response = await stub.Export(request, timeout=10)
            assert not response.HasField("partial_success")

    async def counted() -> Decimal | None:
        rows = await query(http, slug, subject=customer, **{"from": "2025-02-01T00:00:00Z"})
        value = sum(Decimal(str(row["value"])) for row in rows)
        return value if value else None

    assert await wait_for(counted, timeout=20) == 7
    await asyncio.sleep(1)  # a late double would show now
    assert await counted() == 7


# HTTP relay


@pytest.fixture
def own_tally(postgres_ready: None, tmp_path: Path) -> Any:
    """A Tally of this test's own, to kill and start again."""
    url = asyncio.run(create_database())
    stack = TallyProcess(data_dir=tmp_path / "tally", postgres_url=url).start()
    yield stack
    stack.stop()


async def test_relay_delivers_every_accepted_event_once_while_tally_restarts(
    own_tally: TallyProcess, tmp_path: Path, running: Any
) -> None:
    event_type, count_slug, sum_slug = unique("relayed"), unique("relayed_count"), unique("relayed_sum")
    async with httpx.AsyncClient(base_url=own_tally.rest_url, timeout=30) as api:
        await create_meter(api, slug=count_slug, eventType=event_type, aggregation="COUNT")
        await create_meter(api, slug=sum_slug, eventType=event_type, aggregation="SUM", valueProperty="$.n")
    port = free_port()
    relay = {"name": "relay", "type": "http", "listen": f"127.0.0.1:{port}"}
    collector = await running(config_for(tmp_path, f"grpc://{own_tally.grpc_target}", [relay]))
    await wait_for(lambda: asyncio.to_thread(port_open, "127.0.0.1", port), timeout=10)

    accepted: dict[str, int] = {}
    sent_batches = 0
    outage = asyncio.Event()
    back = asyncio.Event()
    during_outage: list[int] = []

    async def client(worker: int) -> None:
        nonlocal sent_batches
        rng = random.Random(worker)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as relay_client:
            for batch_no in range(25):
                events = [
                    {
                        "specversion": "1.0",
                        "id": f"w{worker}-b{batch_no}-e{i}",
                        "source": f"app-{worker}",
                        "type": event_type,
                        "subject": f"customer-{i % 3}",
                        "data": {"n": rng.randint(1, 100)},
                    }
                    for i in range(rng.randint(1, 6))
                ]
                if len(events) == 1 and rng.random() < 0.5:
                    body, content_type = events[0], "application/cloudevents+json"
                else:
                    body, content_type = events, rng.choice(["application/cloudevents-batch+json", "application/json"])
                while True:  # a client retries until the relay answers 204
                    response = await relay_client.post(
                        "/api/v1/events", json=body, headers={"content-type": content_type}
                    )
                    if response.status_code == 204:
                        break
                    await asyncio.sleep(0.1)
                for event in events:
                    accepted[f"{event['source']}/{event['id']}"] = event["data"]["n"]
                if outage.is_set() and not back.is_set():
                    during_outage.append(len(events))
                if rng.random() < 0.2:  # a retry after an answer that was lost: the same ids again
                    response = await relay_client.post(
                        "/api/v1/events", json=body, headers={"content-type": content_type}
                    )
                    assert response.status_code == 204
                sent_batches += 1
                if sent_batches == 30:
                    outage.set()
                if outage.is_set() and not back.is_set():
                    await asyncio.sleep(0.05)  # keep traffic flowing through the outage
                await asyncio.sleep(0)

    async def chaos() -> None:
        await outage.wait()
        await asyncio.to_thread(own_tally.kill)  # kill -9 mid-stream
        await asyncio.sleep(2)
        await asyncio.to_thread(own_tally.start)
        back.set()

    errors_before = _errors()
    await asyncio.gather(*(client(worker) for worker in range(4)), chaos())
    # The outage was real: the relay accepted events while Tally was down, and delivery failed.
    assert during_outage and _errors() > errors_before
    # The relay refuses what Tally would refuse, with the same problem+json.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as relay_client:
        bad = await relay_client.post(
            "/api/v1/events",
            json=[{"id": "x", "source": "s", "type": event_type}],
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["extensions"]["validationErrors"][0]["field"] == "[0].subject"

    await wait_for(lambda: _drained(collector), timeout=60)
    async with httpx.AsyncClient(base_url=own_tally.rest_url, timeout=30) as api:

        async def totals() -> tuple[Decimal, Decimal] | None:
            count = sum(Decimal(str(r["value"])) for r in await query(api, count_slug))
            total = sum(Decimal(str(r["value"])) for r in await query(api, sum_slug))
            return (count, total) if count >= len(accepted) else None

        count, total = await wait_for(totals, timeout=30)
        assert count == len(accepted)
        assert total == sum(accepted.values())
        await asyncio.sleep(1)
        assert await totals() == (count, total)
    assert len(accepted) > 100


def _errors() -> float:
    return sum(s.value for m in metrics.DELIVERY_ERRORS.collect() for s in m.samples if s.name.endswith("_total"))


async def _drained(collector: Collector) -> bool:
    return collector.buffer.pending == 0


@pytest.mark.parametrize("transport", ["grpc", "rest"])
async def test_events_tally_refuses_go_to_dead_letters_and_the_rest_is_delivered(
    tally: TallyProcess, http: httpx.AsyncClient, tmp_path: Path, running: Any, transport: str
) -> None:
    event_type, slug, subject = unique("mixed"), unique("mixed_count"), unique("subject")
    await create_meter(http, slug=slug, eventType=event_type, aggregation="COUNT")
    port = free_port()
    relay = {"name": "relay", "type": "http", "listen": f"127.0.0.1:{port}"}
    sink = f"grpc://{tally.grpc_target}" if transport == "grpc" else tally.rest_url
    collector = await running(config_for(tmp_path, sink, [relay], batch={"size": 20, "period": "5s"}))

    def event(n: int, **extra: Any) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"m{n}",
            "source": f"tests-{transport}-{subject}",
            "type": event_type,
            "subject": subject,
            "data": {},
        } | extra

    # Put straight into the buffer (the relay would refuse these): one Tally refuses (time past
    # 2100), one the SDK cannot encode (no subject), among 18 good ones.
    events = [event(n) for n in range(18)]
    events.insert(5, event(100, time="2200-01-01T00:00:00Z"))
    events.insert(13, event(101, subject=""))
    await collector.buffer.put(events)
    collector.delivery.notify()
    await wait_for(lambda: _drained(collector), timeout=30)
    rows = await wait_for(lambda: query(http, slug, subject=subject), timeout=20)
    assert sum(Decimal(str(r["value"])) for r in rows) == 18
    dead = {e["id"]: reason for e, reason in collector.buffer.dead_letters_sync()}
    assert set(dead) == {"m100", "m101"}
    assert "2100" in dead["m100"] and "subject" in dead["m101"]


async def test_sigterm_keeps_what_it_could_not_deliver_for_the_next_start(
    tally: TallyProcess, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    event_type, slug, subject = unique("kept"), unique("kept_count"), unique("subject")
    await create_meter(http, slug=slug, eventType=event_type, aggregation="COUNT")
    port = free_port()
    relay = {"name": "relay", "type": "http", "listen": f"127.0.0.1:{port}"}
    nowhere = f"grpc://127.0.0.1:{free_port()}"  # Tally is not there
    first = Collector(parse_config(config_for(tmp_path, nowhere, [relay], shutdown_timeout="1s")), problem_response)
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await wait_for(lambda: asyncio.to_thread(port_open, "127.0.0.1", port), timeout=10)
    events = [
        {"specversion": "1.0", "id": f"k{n}", "source": f"tests-{subject}", "type": event_type, "subject": subject}
        for n in range(40)
    ]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as relay_client:
        response = await relay_client.post(
            "/api/v1/events", json=events, headers={"content-type": "application/cloudevents-batch+json"}
        )
        assert response.status_code == 204
    stop.set()  # what SIGTERM does
    await asyncio.wait_for(task, 30)
    # Nothing could be delivered: all of it is still on disk, and the relay no longer listens.
    reopened = parse_config(config_for(tmp_path, f"grpc://{tally.grpc_target}", [relay]))
    assert not await asyncio.to_thread(port_open, "127.0.0.1", port)
    second = Collector(reopened, problem_response)
    assert second.buffer.pending == 40
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    try:
        await wait_for(lambda: _drained(second), timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    async def counted() -> Decimal | None:
        value = sum(Decimal(str(r["value"])) for r in await query(http, slug, subject=subject))
        return value or None

    assert await wait_for(counted, timeout=20) == 40
