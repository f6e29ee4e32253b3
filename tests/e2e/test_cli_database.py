"""`tally apikeys` opens the database `tally serve` uses, found the same way, wherever it runs from.

Tally runs as after `make run`: embedded Postgres in the project's `.tally`, found from its working
directory (no TALLY_DATA_DIR). The CLI runs from a subdirectory of that project, and from a directory
outside any project, with no TALLY_* settings at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.stack import TallyProcess

TALLY = [sys.executable, "-m", "server.cli"]


def cli(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    # An 80-column terminal's width: what rich assumes when output is piped.
    env.update(COLUMNS="80", **extra)
    return subprocess.run([*TALLY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, TallyProcess]]:
    root = tmp_path_factory.mktemp("project")
    stack = TallyProcess(
        data_dir=root / ".tally", postgres_url=None, cwd=root, extra_env={"TALLY_AUTH__REQUIRED": "true"}
    ).start()
    yield root, stack
    stack.stop()


def test_keys_made_from_a_subdirectory_work_against_the_server(project: tuple[Path, TallyProcess]) -> None:
    root, stack = project
    deep = root / "app" / "scripts"
    deep.mkdir(parents=True)

    created = cli(deep, "apikeys", "create", "--name", "from-a-subdir", "--scope", "read", "--json")
    assert created.returncode == 0, created.stderr
    assert f"database: the embedded Postgres in {root.resolve() / '.tally' / 'postgres'}" in created.stderr
    key = json.loads(created.stdout)
    assert not (deep / ".tally").exists() and not (root / "app" / ".tally").exists()

    meters = f"{stack.rest_url}/api/v1/meters"
    assert httpx.get(meters, headers={"authorization": f"Bearer {key['key']}"}).status_code == 200
    assert httpx.get(meters).status_code == 401

    listed = cli(root / "app", "apikeys", "list")
    assert listed.returncode == 0, listed.stderr
    # The whole id, on a line of an 80-column table, so it can be copied into `revoke`.
    assert any(line.split()[:1] == [key["id"]] for line in listed.stdout.splitlines()), listed.stdout

    revoked = cli(deep, "apikeys", "revoke", key["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in revoked.stdout


def test_outside_a_project_nothing_is_created(project: tuple[Path, TallyProcess], tmp_path: Path) -> None:
    for args in (["list"], ["create", "--name", "lost"]):
        result = cli(tmp_path, "apikeys", *args)
        assert result.returncode == 1
        assert "no Tally project here" in result.stderr and "TALLY_DATA_DIR" in result.stderr
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_configured_data_dir_and_postgres_are_named(project: tuple[Path, TallyProcess], tmp_path: Path) -> None:
    root, _ = project
    # TALLY_DATA_DIR pointing at the project's data dir works from anywhere.
    result = cli(tmp_path, "apikeys", "list", TALLY_DATA_DIR=str(root / ".tally"))
    assert result.returncode == 0, result.stderr
    assert str(root.resolve() / ".tally" / "postgres") in result.stderr
    # An explicit data dir without a database is refused, not created.
    empty = cli(tmp_path, "apikeys", "list", TALLY_DATA_DIR=str(tmp_path / "elsewhere"))
    assert empty.returncode == 1 and "no database in" in empty.stderr
    assert not (tmp_path / "elsewhere").exists()
