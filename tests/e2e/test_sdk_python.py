"""The Python SDK's example, run as a user runs it, against a running Tally."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import grpc

from tally.v1 import meters_pb2, meters_pb2_grpc
from tests.support.barrier import settle_grpc
from tests.support.services import ROOT
from tests.support.stack import TallyProcess

EXAMPLE = ROOT / "sdk" / "python" / "examples" / "quickstart.py"
EXPECTED = ["customer-1 gpt-4o 100", "customer-1 gpt-4o-mini 20", "customer-2 gpt-4o 7"]


def run_example(tally: TallyProcess) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--server", tally.grpc_target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


async def stored_totals(tally: TallyProcess) -> list[str]:
    """The meter's totals once everything sent before is through the sink (the example's own query
    runs right after its ingest, before duplicates on a Kafka bus would have been consumed)."""
    async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
        await settle_grpc(channel, partitions=tally.partitions)
        response = await meters_pb2_grpc.MeterServiceStub(channel).QueryMeter(
            meters_pb2.QueryMeterRequest(meter_id_or_slug="sdk_example_tokens", group_by=["subject", "model"])
        )
    rows = sorted((row.subject, row.group_by["model"], row.value) for row in response.data)
    return [f"{subject} {model} {value:g}" for subject, model, value in rows]


async def test_example_ingests_and_queries(tally: TallyProcess) -> None:
    first = await asyncio.to_thread(run_example, tally)
    assert "ingested 3 events" in first
    assert first[-3:] == EXPECTED
    # Fixed event ids: a second run is deduplicated by the server, the totals do not move.
    second = await asyncio.to_thread(run_example, tally)
    assert "created meter sdk_example_tokens" not in second
    assert second[-3:] == EXPECTED
    assert await stored_totals(tally) == EXPECTED
