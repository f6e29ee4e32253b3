"""The REST contract has one source: the `(tally.v1.rest)` method option in proto/tally/v1.

The servicers send the matching hints to Envoy (server/rest.py, envoy/tally.lua) and the OpenAPI file
is generated from the option, so the three must agree. Statically here (the servicers' rest_hints
calls against the option), and at run time by tests/e2e/test_openapi.py (schemathesis checks every
answer's status and shape against the generated description).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2

from tally.v1 import options_pb2

ROOT = Path(__file__).resolve().parents[2]
SERVICERS = ROOT / "server" / "servicers"
OPENAPI = ROOT / "gen" / "openapi" / "tally.openapi.json"


def _http_methods() -> list[tuple[str, Any]]:
    methods = []
    for proto in sorted((ROOT / "proto" / "tally" / "v1").glob("*.proto")):
        module = importlib.import_module(f"tally.v1.{proto.stem}_pb2")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.GetOptions().HasExtension(annotations_pb2.http):
                    methods.append((method.name, method))
    return methods


HTTP_METHODS = _http_methods()


def _hints(function: ast.AsyncFunctionDef, helpers: dict[str, ast.AsyncFunctionDef]) -> tuple[set[int], set[str]]:
    """http_code and shape values of rest_hints calls in `function`, following self._helpers."""
    codes: set[int] = set()
    shapes: set[str] = set()
    seen: set[str] = set()
    todo = [function]
    while todo:
        current = todo.pop()
        for node in ast.walk(current):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func
            if isinstance(callee, ast.Name) and callee.id == "rest_hints":
                for keyword in node.keywords:
                    if isinstance(keyword.value, ast.Constant):
                        (codes if keyword.arg == "http_code" else shapes).add(keyword.value.value)
            elif isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name) and callee.value.id == "self":
                helper = helpers.get(callee.attr)
                if helper is not None and callee.attr not in seen:
                    seen.add(callee.attr)
                    todo.append(helper)
    return codes, shapes


def _servicer_methods() -> dict[str, tuple[ast.AsyncFunctionDef, dict[str, ast.AsyncFunctionDef]]]:
    found = {}
    for path in sorted(SERVICERS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                functions = {f.name: f for f in node.body if isinstance(f, ast.AsyncFunctionDef)}
                helpers = {name: f for name, f in functions.items() if name.startswith("_")}
                for name, function in functions.items():
                    if name[:1].isupper():
                        found[name] = (function, helpers)
    return found


SERVICER_METHODS = _servicer_methods()


@pytest.mark.parametrize(("name", "method"), HTTP_METHODS, ids=[name for name, _ in HTTP_METHODS])
def test_servicer_hints_match_the_rest_option(name: str, method: Any) -> None:
    option = method.GetOptions().Extensions[options_pb2.rest]
    assert name in SERVICER_METHODS, f"no servicer implements {name}"
    function, helpers = SERVICER_METHODS[name]
    codes, shapes = _hints(function, helpers)
    own_codes, own_shapes = _hints(function, {})
    if option.status:
        assert codes == {option.status}, f"{name}: the proto says {option.status}, the servicer sends {codes}"
    else:
        assert not own_codes, f"{name}: sends {own_codes} but the proto's (tally.v1.rest) says 200"
    if option.shape != options_pb2.REST_SHAPE_UNSPECIFIED:
        assert shapes == {"array"}, f"{name}: the proto says a bare array; the servicer never sends the hint"
    else:
        # A shared helper may send the hint for another method (v1 and v2 lists); the method itself must not.
        assert not own_shapes, f"{name}: sends x-tally-shape but the proto's (tally.v1.rest) has no shape"


def test_openapi_describes_every_http_binding() -> None:
    document = json.loads(OPENAPI.read_text())
    operation_ids = {operation["operationId"] for path in document["paths"].values() for operation in path.values()}
    assert {name for name, _ in HTTP_METHODS} <= operation_ids
    for path, operations in document["paths"].items():
        assert path.startswith("/api/")
        for verb, operation in operations.items():
            assert verb in {"get", "post", "put", "patch", "delete"}
            assert operation["responses"]["default"] == {"$ref": "#/components/responses/Error"}
            assert any(code.startswith("2") for code in operation["responses"]), (verb, path)
    schemas = document["components"]["schemas"]
    # proto3 JSON names, well-known types and REST shapes as Envoy serves them.
    meter = schemas["Meter"]["properties"]
    assert meter["eventType"]["type"] == "string" and "event_type" not in meter
    assert meter["createdAt"] == {"type": "string", "format": "date-time", "readOnly": True}
    assert meter["annotations"]["type"] == "object"
    meters = document["paths"]["/api/v1/meters"]
    assert meters["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Meter"},
    }
    assert "201" in meters["post"]["responses"]
    assert "204" in document["paths"]["/api/v1/meters/{meterIdOrSlug}"]["delete"]["responses"]
    ingest = document["paths"]["/api/v1/events"]["post"]
    assert set(ingest["requestBody"]["content"]) == {
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "application/json",
    }
    assert "content" not in ingest["responses"]["204"]
    query = document["paths"]["/api/v1/meters/{meterIdOrSlug}/query"]["get"]
    assert set(query["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert {p["name"] for p in query["parameters"]} >= {"meterIdOrSlug", "from", "to", "windowSize", "groupBy"}
    problem = schemas["Problem"]["properties"]
    # Tally's field list, and OpenMeter's billing code at the top of extensions (docs/billing.md).
    assert {"validationErrors", "code", "message", "severity"} <= set(problem["extensions"]["properties"])


def test_openapi_declares_how_requests_authenticate() -> None:
    """Bearer API keys everywhere (or none, keyless on loopback), portal tokens on the portal's queries,
    exactly the methods the auth interceptor treats as portal calls."""
    from server.auth import PORTAL_METHODS

    spec = importlib.util.spec_from_file_location("protoc_gen_openapi", ROOT / "tools" / "protoc_gen_openapi.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.PORTAL_METHODS == PORTAL_METHODS

    document = json.loads(OPENAPI.read_text())
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {**schemes["ApiKeyAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["PortalTokenAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"ApiKeyAuth": []}, {}]
    portal = {
        (path, verb)
        for path, operations in document["paths"].items()
        for verb, operation in operations.items()
        if operation.get("security") == [{"PortalTokenAuth": []}]
    }
    # JSON, and the CSV form that `Accept: text/csv` is routed to.
    query = "/api/v1/portal/meters/{meterIdOrSlug}/query"
    assert portal == {(query, "get"), (f"{query}:csv", "get")}


def test_every_rest_nullable_field_is_named_to_envoy_by_some_method() -> None:
    """A `(tally.v1.rest_nullable)` field only prints as null where server/rest.py names its path
    (maps and well-known types are not walked): each marked field must be reachable from a REST answer."""
    from server.rest import method_null_paths

    marked: set[tuple[str, str]] = set()
    named: set[tuple[str, str]] = set()
    for proto in sorted((ROOT / "proto" / "tally" / "v1").glob("*.proto")):
        module = importlib.import_module(f"tally.v1.{proto.stem}_pb2")
        for message in module.DESCRIPTOR.message_types_by_name.values():
            for field in message.fields:
                if field.GetOptions().Extensions[options_pb2.rest_nullable]:
                    marked.add((message.full_name, field.json_name))
    assert ("tally.v1.PlanPhase", "duration") in marked
    for name, method in HTTP_METHODS:
        paths = method_null_paths(f"/{method.containing_service.full_name}/{name}")
        for entry in (paths or "").split(";"):
            if not entry:
                continue
            path, keys = entry.split(":")
            message = method.output_type
            for step in path.split("."):
                if step and step != "*":
                    message = next(f for f in message.fields if f.json_name == step).message_type
            named.update((message.full_name, key) for key in keys.split(","))
    assert marked == named
