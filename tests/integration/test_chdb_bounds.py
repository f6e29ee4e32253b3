"""The embedded engine's caches and memory are bounded by Tally's settings (`chdb.*`), not left at
the engine's server defaults (5 GiB per cache, 90 % of RAM).

Each check opens the event store exactly as `tally serve` does (`open_event_store`) in a process of
its own: chDB runs one engine per process, so this test process's engine, opened by other tests,
would keep the settings it started with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.stack import ROOT

READ_ENGINE_SETTINGS = """
import asyncio, json, sys
from server.config import Settings
from server.wiring import open_event_store

clickhouse = open_event_store(Settings(data_dir=sys.argv[1]))
rows = asyncio.run(clickhouse.query(
    "SELECT name, value FROM system.server_settings WHERE name IN "
    "('mark_cache_size', 'primary_index_cache_size', 'index_mark_cache_size', "
    "'query_condition_cache_size', 'max_server_memory_usage')"
))
print(json.dumps({name: int(value) for name, value in rows}))
clickhouse.close()
"""


def engine_settings(data_dir: Path, **env: str) -> dict[str, int]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")} | env
    done = subprocess.run(
        [sys.executable, "-c", READ_ENGINE_SETTINGS, str(data_dir)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


MIB = 2**20


def test_defaults_bound_every_cache(tmp_path: Path) -> None:
    found = engine_settings(tmp_path)
    assert found["mark_cache_size"] == 128 * MIB
    assert found["primary_index_cache_size"] == 64 * MIB
    assert found["index_mark_cache_size"] == 32 * MIB
    assert found["query_condition_cache_size"] == 32 * MIB


def test_settings_from_the_environment_reach_the_engine(tmp_path: Path) -> None:
    found = engine_settings(
        tmp_path,
        TALLY_CHDB__MARK_CACHE_MB="7",
        TALLY_CHDB__PRIMARY_INDEX_CACHE_MB="5",
        TALLY_CHDB__MEMORY_LIMIT_MB="3000",
    )
    assert found["mark_cache_size"] == 7 * MIB
    assert found["primary_index_cache_size"] == 5 * MIB
    assert found["max_server_memory_usage"] == 3000 * MIB


def test_zero_keeps_the_engine_default(tmp_path: Path) -> None:
    defaults = engine_settings(tmp_path / "a", TALLY_CHDB__MARK_CACHE_MB="0")
    # The engine's own default for a dedicated server: far above Tally's bound.
    assert defaults["mark_cache_size"] > 1024 * MIB


READ_COMPILE_SETTINGS = """
import asyncio, json, sys
from server.config import Settings
from server.wiring import open_event_store

clickhouse = open_event_store(Settings(data_dir=sys.argv[1]))
names = ("compile_expressions", "compile_aggregate_expressions", "compile_sort_description")
# A query and a command: every statement of the event store's client carries the settings.
row = asyncio.run(clickhouse.query("SELECT " + ", ".join(f"toUInt8(getSetting('{n}'))" for n in names)))[0]
by_command = asyncio.run(clickhouse.command("SELECT toUInt8(getSetting('compile_expressions'))"))
print(json.dumps({**dict(zip(names, row)), "by_command": int(by_command)}))
clickhouse.close()
"""


def test_the_embedded_engine_compiles_no_statement(tmp_path: Path) -> None:
    # A statement compiled on its fourth run held the engine 55-70 ms longer (docs/performance.md).
    done = subprocess.run(
        [sys.executable, "-c", READ_COMPILE_SETTINGS, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {
        "compile_expressions": 0,
        "compile_aggregate_expressions": 0,
        "compile_sort_description": 0,
        "by_command": 0,
    }
