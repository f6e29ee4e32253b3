"""The TypeScript SDK's example, built and run as a user runs it, against a running Tally.

It talks gRPC-web to Envoy's REST port, so it also checks that gRPC-web passes through Envoy (and
tally.lua) untouched, errors included: the example's first step expects NOT_FOUND for its meter.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import httpx
import pytest

from tests.support.barrier import settle
from tests.support.metering import query
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


async def stored_totals(tally: TallyProcess) -> list[str]:
    """The meter's totals once everything sent before is through the sink (the example's own query
    runs right after its ingest, before duplicates on a Kafka bus would have been consumed)."""
    async with httpx.AsyncClient(base_url=tally.rest_url, timeout=30) as http:
        # The example reaches Tally through Envoy's REST port (gRPC-web); so do the markers.
        await settle(http, partitions=tally.partitions)
        rows = await query(http, "sdk_ts_example_tokens", groupBy=["subject", "model"])
    return [f"{r['subject']} {r['groupBy']['model']} {r['value']:g}" for r in sorted(rows, key=_row_key)]


def _row_key(row: dict) -> tuple[str, str]:
    return (row["subject"], row["groupBy"]["model"])


async def test_example_ingests_and_queries(example: list[str], tally: TallyProcess) -> None:
    first = await asyncio.to_thread(run_example, example, tally)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "ingested 3 events" in lines
    assert lines[-3:] == EXPECTED
    # Fixed event ids: a second run is deduplicated by the server, the totals do not move.
    second = await asyncio.to_thread(run_example, example, tally)
    assert second.returncode == 0, second.stderr
    assert "created meter sdk_ts_example_tokens" not in second.stdout
    assert second.stdout.splitlines()[-3:] == EXPECTED
    assert await stored_totals(tally) == EXPECTED


def test_grpc_errors_reach_the_client(example: list[str], tally: TallyProcess) -> None:
    # A malformed key is refused with UNAUTHENTICATED, carried in gRPC-web's own status, not REST's.
    result = run_example(example, tally, "--api-key", "not a key")
    assert result.returncode != 0
    assert "ConnectError" in result.stderr
    assert "[unauthenticated]" in result.stderr


async def test_example_over_grpc(example: list[str], tally: TallyProcess) -> None:
    # The same client straight to the gRPC port (HTTP/2), Envoy not involved; its events are
    # duplicates of the other tests' runs (or the first of them), the totals are the same.
    result = await asyncio.to_thread(
        run_example, example, tally, "--protocol", "grpc", server=f"http://{tally.grpc_target}"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == EXPECTED
    assert await stored_totals(tally) == EXPECTED
