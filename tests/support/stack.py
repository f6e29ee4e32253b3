"""A running Tally for end-to-end tests: the real `tally serve` process with Envoy in front.

Each stack gets its own Postgres database, chDB directory and free ports, so tests can run while a
developer's `make run` is up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import MetaData, event
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.children import dying_with_parent
from adapters.postgres.db import create_engine, migrate
from server.config import KafkaSettings
from tests.support.services import POSTGRES_ADMIN_URL, ROOT, free_port, port_open, require

# Databases this test session created; dropped when it ends (tests/conftest.py).
CREATED_DATABASES: list[str] = []


async def create_database() -> str:
    name = f"tally_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    CREATED_DATABASES.append(name)
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@asynccontextmanager
async def engine_with_tables(metadata: MetaData) -> AsyncIterator[AsyncEngine]:
    """Tally's engine (`create_engine`) on a new database holding `metadata`'s tables, with one
    pooled connection, so uses one after another get the connection the previous one returned."""
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    engine = create_engine(await create_database(), pool_size=1)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def migrated_engine(pool_size: int) -> AsyncIterator[AsyncEngine]:
    """Tally's engine (`create_engine`) on a new database with every migration applied."""
    require(await postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = await create_database()
    await migrate(url)
    engine = create_engine(url, pool_size=pool_size)
    try:
        yield engine
    finally:
        await engine.dispose()


@contextmanager
def statements_run(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements the engine's connections run inside the block, in order."""
    ran: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        ran.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield ran
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def drop_created_databases() -> None:
    if not CREATED_DATABASES:
        return
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        while CREATED_DATABASES:
            # Names are generated above (hex), never user input.
            await connection.execute(f'DROP DATABASE IF EXISTS "{CREATED_DATABASES.pop()}" WITH (FORCE)')
    finally:
        await connection.close()


def popen_dying_with_runner(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen for what a test or a benchmark starts (Tally, a collector, Prometheus): it ends with
    the runner, even when the runner is killed, as Tally's own children end with Tally."""
    argv, preexec_fn = dying_with_parent(argv, signal.SIGTERM)
    return subprocess.Popen(argv, start_new_session=True, preexec_fn=preexec_fn, **kwargs)


async def postgres_available() -> bool:
    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


@dataclass
class TallyProcess:
    data_dir: Path
    # None: Tally's embedded Postgres in the data dir.
    postgres_url: str | None
    kafka_brokers: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # Set: Tally runs there as `make run` would, finding its data dir (data_dir, which must be
    # cwd/.tally) itself instead of being told with TALLY_DATA_DIR.
    cwd: Path | None = None
    rest_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    envoy_admin_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    stack_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    _started: bool = False

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def partitions(self) -> int:
        """Partitions of this stack's events topic (1: the in-process bus, one ordered queue); what
        tests/support/barrier.py needs to put a marker on every partition."""
        if not self.kafka_brokers:
            return 1
        return int(self.extra_env.get("TALLY_KAFKA__PARTITIONS", KafkaSettings().partitions))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
        if self.cwd is None:
            env["TALLY_DATA_DIR"] = str(self.data_dir)
        env.update(
            TALLY_REST_PORT=str(self.rest_port),
            TALLY_GRPC_PORT=str(self.grpc_port),
            TALLY_METRICS_PORT=str(self.metrics_port),
            TALLY_ENVOY_ADMIN_PORT=str(self.envoy_admin_port),
            TALLY_LOG_LEVEL="info",
            # Tests measure through the sink quickly; a fixed test cadence keeps them deterministic.
            TALLY_SINK__FLUSH_INTERVAL_MS="20",
            # Webhooks from test stacks may only reach receivers on this machine's loopback, and
            # example.com (reserved for documentation, RFC 2606), whose URLs the API tests and the
            # README's recipes give channels: a channel the policy refuses is a 400 at creation.
            TALLY_NOTIFY__ALLOWED_HOSTS='["127.0.0.1", "example.com"]',
            TALLY_SINK__CATALOG_REFRESH_S="0.5",
            TALLY_SINK__BACKFILL_DELAY_S="1",
            TALLY_SINK__BACKFILL_INTERVAL_S="0.5",
            TALLY_KAFKA__SESSION_TIMEOUT_MS="6000",
            # The billing worker collects due lines on its own; tests that invoice lines through the
            # API would race it. It still passes at start and whenever a subscription changes.
            TALLY_BILLING__POLL_INTERVAL_S="3600",
        )
        if self.postgres_url:
            env["TALLY_POSTGRES_URL"] = self.postgres_url
        if self.kafka_brokers:
            env["TALLY_KAFKA_BROKERS"] = self.kafka_brokers
            # Stacks share the session's broker: each gets its own topic and consumer group, so one
            # stack's sink never consumes (and stores) another's events. Kept across restarts.
            env["TALLY_KAFKA__TOPIC"] = f"tally.events.{self.stack_id}"
            env["TALLY_SINK__CONSUMER_GROUP"] = f"tally-sink-{self.stack_id}"
            env["TALLY_KAFKA__ANNOUNCEMENTS_TOPIC"] = f"tally.announcements.{self.stack_id}"
            env["TALLY_KAFKA__BALANCE_CONSUMER_GROUP"] = f"tally-balance-{self.stack_id}"
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> TallyProcess:
        for attempt in range(3):
            try:
                return self._start(timeout)
            except RuntimeError as error:
                # Another process took one of the ports between choosing and binding it. A first
                # start may move to new ports; a restart keeps its ports (clients hold the URLs).
                if "already in use" not in str(error) or self._started or attempt == 2:
                    raise
                self.rest_port, self.grpc_port = free_port(), free_port()
                self.metrics_port, self.envoy_admin_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> TallyProcess:
        self.launch()
        self.wait_ready(timeout)
        self._started = True
        return self

    def launch(self) -> None:
        """Starts the process without waiting for it. Call from a thread that outlives the process
        (the main one): the child is told to die with the thread that forked it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "tally.log").open("ab")
        self.process = popen_dying_with_runner(
            [sys.executable, "-m", "server.cli", "serve"],
            cwd=self.cwd or ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"tally exited with {self.process.returncode}:\n{self.log_tail()}")
            if "api" not in self.extra_env.get("TALLY_ROLES", "api"):
                # A worker-only process serves no API; it is up once its metrics port is.
                if port_open("127.0.0.1", self.metrics_port):
                    return
            else:
                try:
                    if (
                        # 401: auth is required, and the answer still came from Tally through Envoy.
                        httpx.get(f"{self.rest_url}/api/v1/meters", timeout=1).status_code in (200, 401)
                        and self._grpc_serving()
                    ):
                        return
                except (httpx.HTTPError, grpc.RpcError):
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"tally did not become ready in {timeout}s:\n{self.log_tail()}")

    def _grpc_serving(self) -> bool:
        with grpc.insecure_channel(self.grpc_target) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return response.status == health_pb2.HealthCheckResponse.SERVING

    def log_size(self) -> int:
        """How far Tally's log has grown: a mark for `log_since`."""
        path = self.data_dir / "tally.log"
        return path.stat().st_size if path.exists() else 0

    def log_since(self, mark: int) -> str:
        """What Tally logged after `mark` (a `log_size()`), across restarts (the log is appended to)."""
        with (self.data_dir / "tally.log").open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        """The end of Tally's log, and of Envoy's (a port Envoy could not bind shows only there)."""
        tails = []
        for path in (self.data_dir / "tally.log", self.data_dir / "envoy" / "envoy.log"):
            if path.exists():
                tails.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(tails)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90.0) -> int:
        # The bound only turns a hang into a failure: a drain on a machine loaded by other suites
        # took over 30 s once (CI, load average 6), and the SIGKILL after it failed a clean stop.
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        os.killpg(self.process.pid, sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            # Where it hangs, into its log (a failing test shows log_tail()): Tally prints its
            # threads' stacks on SIGUSR1 (server/cli.py).
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(2)
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def kill(self) -> None:
        """kill -9 of Tally alone (not its process group): what a crash looks like."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Polls an async predicate until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
