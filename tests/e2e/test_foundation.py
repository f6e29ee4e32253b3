"""The foundation as a user meets it: gRPC health and reflection, REST through Envoy, errors, shutdown."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.services import port_open
from tests.support.stack import TallyProcess, create_database

TALLY_SERVICES = {
    "tally.v1.EventService",
    "tally.v1.MeterService",
    "tally.v1.NotificationService",
    "tally.v1.CustomerService",
    "tally.v1.SubjectService",
    "tally.v1.FeatureService",
    "tally.v1.EntitlementService",
    "tally.v1.ApiKeyService",
    "tally.v1.CallerService",
    "tally.v1.PortalService",
    "tally.v1.AppService",
    "tally.v1.BillingProfileService",
    "tally.v1.PlanService",
    "tally.v1.AddonService",
    "tally.v1.PlanAddonService",
    "tally.v1.CurrencyService",
}


async def test_grpc_health_serving(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", *TALLY_SERVICES):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service


def test_grpcurl_lists_every_service(tally: TallyProcess) -> None:
    grpcurl = Path(sys.prefix) / "bin" / "grpcurl"
    assert grpcurl.exists(), "grpcurl comes with the dev dependencies"
    out = subprocess.run(
        [str(grpcurl), "-plaintext", tally.grpc_target, "list"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    assert set(out) >= TALLY_SERVICES
    assert "grpc.health.v1.Health" in out
    described = subprocess.run(
        [str(grpcurl), "-plaintext", tally.grpc_target, "describe", "tally.v1.MeterService"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "rpc QueryMeter" in described


async def test_rest_reaches_servicer_and_lists_are_plain_arrays(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/meters")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json(), list)
    # gRPC transport headers stay behind Envoy.
    assert not any(name.startswith("grpc-") for name in response.headers)


async def test_not_found_is_problem_json(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/meters/does_not_exist")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"
    assert body["status"] == 404
    assert "does_not_exist" in body["detail"]
    assert body["instance"] == "/api/v1/meters/does_not_exist"


async def test_validation_error_lists_fields(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/meters", json={"slug": "Not A Slug", "aggregation": "MEDIAN", "eventType": "x"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    errors = {e["field"]: e for e in response.json()["extensions"]["validationErrors"]}
    assert set(errors) == {"slug", "aggregation"}
    assert "SUM" in errors["aggregation"]["message"]


async def test_envoy_rejections_are_problem_json(http: httpx.AsyncClient) -> None:
    bad_body = await http.post("/api/v1/meters", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_body.status_code == 400
    assert bad_body.headers["content-type"] == "application/problem+json"
    assert bad_body.json()["status"] == 400
    bad_time = await http.get("/api/v1/meters/x/query", params={"from": "yesterday"})
    assert bad_time.status_code == 400
    assert "from" in bad_time.json()["detail"]
    unknown = await http.get("/api/v1/no/such/path")
    assert unknown.status_code in (404, 405)
    assert unknown.headers["content-type"] == "application/problem+json"


async def test_conflict_carries_conflicting_entity_id(http: httpx.AsyncClient) -> None:
    meter = {"slug": "conflict_probe", "aggregation": "COUNT", "eventType": "probe"}
    first = await http.post("/api/v1/meters", json=meter)
    assert first.status_code == 201
    second = await http.post("/api/v1/meters", json=meter)
    assert second.status_code == 409
    assert second.json()["extensions"]["conflictingEntityId"] == first.json()["id"]


async def test_sigterm_stops_everything(postgres_ready: None, tmp_path: Path) -> None:
    stack = TallyProcess(data_dir=tmp_path / "stack", postgres_url=await create_database())
    await asyncio.to_thread(stack.start)
    assert stack.process is not None
    children = psutil.Process(stack.process.pid).children(recursive=True)
    assert any("envoy" in child.name() for child in children), "Envoy runs as Tally's child"
    assert await asyncio.to_thread(stack.stop, signal.SIGTERM) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {[p.pid for p in alive]}"
    for port in (stack.rest_port, stack.grpc_port, stack.envoy_admin_port):
        assert not port_open("127.0.0.1", port)


async def test_embedded_default_needs_no_services(embedded_tmp: Path) -> None:
    """`make run` with no TALLY_POSTGRES_URL: embedded Postgres in the data dir, chDB, in-process bus."""
    data_dir = embedded_tmp / "embedded"
    stack = TallyProcess(data_dir=data_dir, postgres_url=None)
    await asyncio.to_thread(stack.start, 120)
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url) as client:
            created = await client.post(
                "/api/v1/meters", json={"slug": "embedded", "aggregation": "COUNT", "eventType": "e"}
            )
            assert created.status_code == 201
        assert (data_dir / "postgres").is_dir()
        assert (data_dir / "events").is_dir()
    finally:
        assert await asyncio.to_thread(stack.stop) == 0
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if str(data_dir / "postgres") in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers, "the embedded Postgres stops with Tally"


async def test_metrics_expose_the_sink_and_rpcs(http: httpx.AsyncClient, tally: TallyProcess) -> None:
    # Something must have flowed through the sink for its histograms to have samples.
    response = await http.post(
        "/api/v1/events",
        json={"specversion": "1.0", "id": "metrics-probe", "source": "t", "type": "metrics_probe", "subject": "s"},
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 204
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{tally.metrics_port}/metrics")).text
    for name in (
        "tally_rpc_total",
        "tally_rpc_seconds_bucket",
        "tally_events_ingested_total",
        "tally_events_stored_total",
        "tally_sink_batch_events_bucket",
        "tally_sink_insert_seconds_bucket",
        "tally_sink_ingest_to_stored_seconds_bucket",
    ):
        assert name in text, name
    assert 'method="IngestCloudEvents"' in text
