"""Start-up problems a user can fix (a port or a data dir in use), reported in one line."""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from server.config import Settings


class StartupError(RuntimeError):
    """Tally cannot start; the message says why and what to do, in one line."""


@dataclass(frozen=True)
class Listener:
    what: str
    host: str
    port: int
    setting: str


def listeners(settings: Settings) -> list[Listener]:
    """The ports this process will listen on, with the setting that moves each."""
    found: list[Listener] = []
    if "api" in settings.roles:
        found.append(Listener("gRPC", settings.grpc_host, settings.grpc_port, "TALLY_GRPC_PORT"))
        if settings.envoy_enabled:
            found.append(Listener("REST", settings.rest_host, settings.rest_port, "TALLY_REST_PORT"))
            found.append(Listener("Envoy admin", "127.0.0.1", settings.envoy_admin_port, "TALLY_ENVOY_ADMIN_PORT"))
    found.append(Listener("metrics", settings.metrics_host, settings.metrics_port, "TALLY_METRICS_PORT"))
    return found


def holder(port: int) -> str:
    """Who listens on `port`, as well as this user may know ("pid 123 (tally serve)")."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return "another process"
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
            if connection.pid is None:
                return "another process"
            try:
                process = psutil.Process(connection.pid)
                command = " ".join(process.cmdline()[:4]) or process.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return f"pid {connection.pid}"
            return f"pid {connection.pid} ({command})"
    return "another process"


def _free(listener: Listener) -> bool:
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port in TIME_WAIT after a restart is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((listener.host, listener.port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            return False
    return True


def check_ports(settings: Settings, grace_s: float = 3.0) -> None:
    """Refuses to start, in one line, when a port Tally needs is taken (a second `make run`).

    A port is given `grace_s` to free up: right after a crash the previous Envoy may still be
    shutting down (it ends by its parent-death signal)."""
    deadline = time.monotonic() + grace_s
    for listener in listeners(settings):
        while not _free(listener):
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise StartupError(
                f"{listener.what} port {listener.host}:{listener.port} is already in use by "
                f"{holder(listener.port)}: stop it (another Tally?), or set {listener.setting} to a free port"
            ) from None
