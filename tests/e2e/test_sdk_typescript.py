"""The TypeScript SDK's example, built and run as a user runs it, against a running Tally.

It talks gRPC-web to Envoy's REST port, so it also checks that gRPC-web passes through Envoy (and
tally.lua) untouched, errors included: the example's first step expects NOT_FOUND for its meter.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.services import ROOT, require
from tests.support.stack import TallyProcess

SDK = ROOT / "sdk" / "typescript"
EXPECTED = ["customer-1 gpt-4o 100", "customer-1 gpt-4o-mini 20", "customer-2 gpt-4o 7"]


@pytest.fixture(scope="module")
def example() -> list[str]:
    """The build and example commands; node_modules comes from `make gen` (npm ci from the lock file)."""
    require(shutil.which("node") is not None and shutil.which("npm") is not None, "node and npm")
    require((SDK / "node_modules" / ".installed").exists(), "sdk/typescript/node_modules (make gen)")
    build = subprocess.run(["npm", "run", "build"], cwd=SDK, capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    compile_ = subprocess.run(
        ["node_modules/.bin/tsc", "-p", "examples/tsconfig.json"],
        cwd=SDK,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert compile_.returncode == 0, compile_.stdout + compile_.stderr
    return ["node", "build/examples/quickstart.js"]


def run_example(
    command: list[str], tally: TallyProcess, *args: str, server: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, "--server", server or tally.rest_url, *args],
        cwd=SDK,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_example_ingests_and_queries(example: list[str], tally: TallyProcess) -> None:
    first = run_example(example, tally)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "ingested 3 events" in lines
    assert lines[-3:] == EXPECTED
    # Fixed event ids: a second run is deduplicated by the server, the totals do not move.
    second = run_example(example, tally)
    assert second.returncode == 0, second.stderr
    assert "created meter sdk_ts_example_tokens" not in second.stdout
    assert second.stdout.splitlines()[-3:] == EXPECTED


def test_grpc_errors_reach_the_client(example: list[str], tally: TallyProcess) -> None:
    # A malformed key is refused with UNAUTHENTICATED, carried in gRPC-web's own status, not REST's.
    result = run_example(example, tally, "--api-key", "not a key")
    assert result.returncode != 0
    assert "ConnectError" in result.stderr
    assert "[unauthenticated]" in result.stderr


def test_example_over_grpc(example: list[str], tally: TallyProcess) -> None:
    # The same client straight to the gRPC port (HTTP/2), Envoy not involved.
    result = run_example(example, tally, "--protocol", "grpc", server=f"http://{tally.grpc_target}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == EXPECTED
