"""Errors Envoy produces itself say what to fix, as problem+json; a second Tally on taken ports says
which port and who holds it, in one line."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.support.services import ROOT
from tests.support.stack import TallyProcess


def problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/events?from=yesterday", "from"),
        ("/api/v1/events?limit=5&ingestedAtTo=2025-01-01", "ingestedAtTo"),
        ("/api/v1/meters/anything/query?windowSize=HOUR&to=2025-13-01%2010:00", "to"),
    ],
)
async def test_a_bad_time_parameter_is_named_with_the_format(http: httpx.AsyncClient, path: str, field: str) -> None:
    body = problem(await http.get(path), 400)
    assert f"query parameter {field} is not a valid time" in str(body["detail"])
    assert "RFC 3339" in str(body["detail"])
    violations = body["extensions"]["validationErrors"]  # type: ignore[index]
    assert [v["field"] for v in violations] == [field]  # type: ignore[index]


async def test_an_unknown_path_is_a_404_naming_it(http: httpx.AsyncClient) -> None:
    body = problem(await http.get("/api/v1/no-such-thing?x=1"), 404)
    assert "GET /api/v1/no-such-thing" in str(body["detail"]) and "openapi" in str(body["detail"])
    assert body["instance"] == "/api/v1/no-such-thing"
    body = problem(await http.patch("/api/v1/meters"), 404)
    assert "PATCH /api/v1/meters" in str(body["detail"])


def test_a_second_tally_on_the_same_ports_says_which_port_and_who_holds_it(tally: TallyProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    second = TallyProcess(data_dir=tmp_path / "second", postgres_url=tally.postgres_url)
    second.rest_port, second.grpc_port = tally.rest_port, tally.grpc_port
    second.metrics_port, second.envoy_admin_port = tally.metrics_port, tally.envoy_admin_port
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve"], cwd=ROOT, env=second.env(), capture_output=True, timeout=120
    )
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert tally.process is not None
    [line] = [line for line in err.splitlines() if "already in use" in line]
    assert f"port 127.0.0.1:{tally.grpc_port} is already in use by pid {tally.process.pid}" in line
    assert "TALLY_GRPC_PORT" in line
