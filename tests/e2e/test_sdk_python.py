"""The Python SDK's example, run as a user runs it, against a running Tally."""

from __future__ import annotations

import subprocess
import sys

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


def test_example_ingests_and_queries(tally: TallyProcess) -> None:
    first = run_example(tally)
    assert "ingested 3 events" in first
    assert first[-3:] == EXPECTED
    # Fixed event ids: a second run is deduplicated by the server, the totals do not move.
    second = run_example(tally)
    assert "created meter sdk_example_tokens" not in second
    assert second[-3:] == EXPECTED
