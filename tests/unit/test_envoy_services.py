"""Envoy transcodes exactly the services in proto/tally/v1: a service left out of envoy.yaml's list
answers REST with Envoy's 404, which no other test of that service would notice if it only used gRPC."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _proto_services() -> set[str]:
    services = set()
    for proto in sorted((ROOT / "proto" / "tally" / "v1").glob("*.proto")):
        module = importlib.import_module(f"tally.v1.{proto.stem}_pb2")
        services |= {service.full_name for service in module.DESCRIPTOR.services_by_name.values()}
    return services


def _transcoded_services() -> set[str]:
    text = (ROOT / "envoy" / "envoy.yaml").read_text()
    block = text.split("services:", 1)[1].split("print_options:", 1)[0]
    return set(re.findall(r"-\s*(tally\.v1\.\w+)", block))


def test_envoy_transcodes_every_tally_service() -> None:
    services = _proto_services()
    assert {"tally.v1.AppService", "tally.v1.BillingProfileService"} <= services
    assert _transcoded_services() == services
