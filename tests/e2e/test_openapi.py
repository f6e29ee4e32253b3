"""The OpenAPI description Envoy serves, and schemathesis against the REST surface it describes.

The document is gen/openapi/tally.openapi.{yaml,json} (tools/protoc_gen_openapi.py, `make gen`).
schemathesis generates requests for every operation from it, valid and invalid, and checks every
answer: never a 5xx, a documented status, the documented content type, a body matching the schema
(problem+json for errors). Bounded by the number of examples (a few per operation, derandomized,
no shrinking), not by a clock: a loaded machine runs the same cases, only slower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.stack import TallyProcess

OPENAPI_DIR = Path(__file__).resolve().parents[2] / "gen" / "openapi"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 12


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/api/v1/openapi.yaml", "tally.openapi.yaml", "application/yaml"),
        ("/api/swagger.json", "tally.openapi.json", "application/json"),
    ],
)
async def test_envoy_serves_the_generated_description(
    http: httpx.AsyncClient, path: str, name: str, content_type: str
) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (OPENAPI_DIR / name).read_bytes()


def test_rest_surface_matches_its_description(tally: TallyProcess) -> None:
    schema = schemathesis.openapi.from_path(str(OPENAPI_DIR / "tally.openapi.json"))
    failures: dict[tuple[str, str], str] = {}
    statuses: dict[int, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50
    for operation in operations:
        _fuzz(operation, tally.rest_url, failures, statuses)
    report = "\n\n".join(f"{label} [{kinds}]\n{detail}" for (label, kinds), detail in failures.items())
    assert not failures, f"statuses {statuses}\n{report}"
    assert not any(code >= 500 for code in statuses)


def _fuzz(operation: Any, base_url: str, failures: dict[tuple[str, str], str], statuses: dict[int, int]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as exc:  # schemathesis raises a FailureGroup (a BaseExceptionGroup)
            kinds = ",".join(sorted({type(e).__name__ for e in getattr(exc, "exceptions", [exc])}))
            failures.setdefault((operation.label, kinds), f"{case.as_curl_command()}\n{str(exc)[:1500]}")

    run()
