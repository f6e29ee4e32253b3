"""Shared fixtures: a running Tally (embedded bus) and, for Kafka tests, one behind tansu."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
import pytest_asyncio

from tests.support.services import ClickHouseHttp, Tansu, require
from tests.support.stack import TallyProcess, create_database, drop_created_databases, postgres_available


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if asyncio.run(postgres_available()):
        asyncio.run(drop_created_databases())


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: `make etoe` selects by the full_suite marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselects (never skips) what this run is not for:
    - k8s_live: needs a Kubernetes API server, which no registry here provides; runs with
      TALLY_K8S_LIVE=1 where a cluster is reachable (KUBECONFIG);
    - full_suite: the long runs (the console's longer browser flows, the rollup property test at
      300 examples), which `make etoe` runs (TALLY_FULL_SUITE=1) and `make test` (CI) leaves out
      for time; with full_suite_over_http, the [http] variant of an event-store test (the
      statements of its [chdb] variant, which `make test` runs, through the test suite's
      ClickHouse HTTP endpoint, at two to three times the cost)."""
    for item in items:
        spec = getattr(item, "callspec", None)
        if item.get_closest_marker("full_suite_over_http") and spec is not None and "http" in spec.params.values():
            item.add_marker(pytest.mark.full_suite)
    wanted = {
        "k8s_live": os.environ.get("TALLY_K8S_LIVE") == "1",
        "full_suite": os.environ.get("TALLY_FULL_SUITE") == "1",
    }
    out = [i for i in items if any(i.get_closest_marker(m) and not on for m, on in wanted.items())]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [i for i in items if i not in out]


# The session's shared stacks: a test's failure carries what they logged while it ran (their own
# log files live in pytest's temporary directories, which a CI run does not keep).
_SHARED_STACKS = ("tally", "tally_kafka")
_LOG_SECTION_LIMIT = 30_000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    values = getattr(item, "funcargs", {})
    marks = [(name, values[name], values[name].log_size()) for name in _SHARED_STACKS if name in values]
    try:
        return (yield)
    except BaseException:
        for name, stack, mark in marks:
            logged = stack.log_since(mark)
            if len(logged) > _LOG_SECTION_LIMIT:
                logged = "[...]\n" + logged[-_LOG_SECTION_LIMIT:]
            item.add_report_section("call", f"log of the shared stack `{name}` during the test", logged)
        raise


@pytest.fixture
def embedded_tmp() -> Iterator[Path]:
    """A directory for a Tally with its embedded PostgreSQL, outside /tmp/pytest-of-root: every pytest
    session on the machine resets that to 0700, which cuts PostgreSQL's own user (Tally runs it as one
    when started as root) off its data dir mid-start when sessions run in parallel."""
    path = Path(tempfile.mkdtemp(prefix="tally-embedded-"))
    path.chmod(0o755)
    yield path
    # Whatever a failing test left behind must not outlive it.
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(path) in " ".join(process.info["cmdline"] or []):
            process.kill()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_ready() -> None:
    require(asyncio.run(postgres_available()), "PostgreSQL on 127.0.0.1:5432")


@pytest.fixture(scope="session")
def tally(postgres_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    """Tally on the in-process bus with Envoy: the embedded default, over a real Postgres."""
    url = asyncio.run(create_database())
    stack = TallyProcess(data_dir=tmp_path_factory.mktemp("tally"), postgres_url=url).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    broker = Tansu()
    try:
        broker.start(Path(tmp_path_factory.mktemp("tansu")) / "tansu.log")
    except (RuntimeError, OSError) as exc:
        require(False, f"tansu Kafka-protocol broker ({exc})")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def clickhouse_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseHttp]:
    """The ClickHouse HTTP endpoint over chDB: the event store reached the way production reaches it."""
    root = Path(tmp_path_factory.mktemp("clickhouse-http"))
    endpoint = ClickHouseHttp(root / "events")
    try:
        endpoint.start(root / "endpoint.log")
    except (RuntimeError, OSError) as exc:
        require(False, f"ClickHouse HTTP endpoint ({exc})")
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="session")
def tally_kafka(postgres_ready: None, tansu: Tansu, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TallyProcess]:
    """Tally producing to and consuming from the Kafka-protocol broker."""
    url = asyncio.run(create_database())
    stack = TallyProcess(data_dir=tmp_path_factory.mktemp("tally-kafka"), postgres_url=url, kafka_brokers=tansu.brokers)
    stack.start()
    yield stack
    stack.stop()


@pytest_asyncio.fixture
async def http(tally: TallyProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tally.rest_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def channel(tally: TallyProcess) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(tally.grpc_target) as ch:
        yield ch
