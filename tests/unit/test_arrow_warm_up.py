"""The sink's first flush imports nothing once `load_arrow_conversions` ran at start.

pyarrow imports pandas on its first conversion of a Python sequence; in a running sink that stopped
the event loop for 0.3-0.8 s at the first flush after every start (docs/performance.md). Each case
runs in a fresh interpreter, since this one has long converted sequences."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Prints the modules that building one flush's Arrow table imported, after `warm` ran.
_PROBE = """
import json, sys
from adapters.clickhouse.events import load_arrow_conversions, to_arrow
from domain.metering.events import Event
if {warm}:
    load_arrow_conversions()
before = set(sys.modules)
to_arrow([Event("default", "id-1", "tokens", "src", "customer-1", 1, '{{"tokens": 1}}', 2)], [({{"$.tokens": 1.0}}, {{}})])
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _imported_by_first_flush(warm: bool) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(warm=warm)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_the_warm_up_the_first_flush_imports_pandas() -> None:
    # What the warm-up is for: if this stops importing anything, the warm-up has nothing left to do.
    assert "pandas" in _imported_by_first_flush(warm=False)


def test_after_the_warm_up_the_first_flush_imports_nothing() -> None:
    assert _imported_by_first_flush(warm=True) == []
