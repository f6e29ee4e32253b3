"""Collector tests' real parts: Debian's Prometheus server, a small exporter, `tally collect` processes.

Prometheus comes from Debian's `prometheus` package (.ci/run installs it); a missing binary skips
the test, or fails it under TALLY_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.services import ROOT, free_port, port_open, require
from tests.support.stack import popen_dying_with_runner


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    require(binary is not None, "prometheus (Debian package prometheus)")
    assert binary is not None
    return binary


@dataclass
class PrometheusServer:
    """A real Prometheus scraping the given targets every second, with its own TSDB in a temp dir."""

    directory: Path
    targets: list[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        binary = prometheus_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "exporter", "static_configs": [{"targets": self.targets}]}],
        }
        (self.directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = (self.directory / "prometheus.log").open("ab")
        self.process = popen_dying_with_runner(
            [
                binary,
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus did not become ready:\n{self.log_tail()}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def log_tail(self) -> str:
        path = self.directory / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@dataclass
class CollectorProcess:
    """`tally collect --config FILE` as a user runs it."""

    config_path: Path
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> CollectorProcess:
        log = self.config_path.with_suffix(".log").open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
        self.process = popen_dying_with_runner(
            [sys.executable, "-m", "server.cli", "collect", "--config", str(self.config_path)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", self.metrics_port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def metric(self, name: str, labels: str = "") -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log_tail(self) -> str:
        path = self.config_path.with_suffix(".log")
        return "\n".join(path.read_text(errors="replace").splitlines()[-40:]) if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
