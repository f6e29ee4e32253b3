"""Leader election: with several replicas only one runs the pull sources (Prometheus, Kubernetes).

Push sources (the HTTP relay, the OTLP receiver) run on every replica; scraping twice would not
count twice (ids are deterministic) but would double the load on Prometheus and the API server.
A replica leads while it holds the lock: a Kubernetes Lease in a cluster (the official client's
LeaseLock, adapters/collectors/kubernetes.py), an exclusive file lock (flock) otherwise. The leader
stops its pull sources when it cannot renew within the renew deadline, before the lease expires
for the others. Windows are fixed by the schedule, so a new leader catching up on windows the old
one already ran produces the same ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import structlog

from adapters.collectors import metrics

log = structlog.get_logger(__name__)


class Elector(Protocol):
    async def try_acquire(self) -> bool:
        """Acquires or renews the lock; True while this replica holds it."""
        ...

    async def release(self) -> None: ...


class NoElection:
    """A single replica: always the leader."""

    async def try_acquire(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class FileLock:
    """An exclusive flock: released by the kernel when the holder exits, even on kill -9."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


async def lead(
    elector: Elector,
    retry_period: float,
    renew_deadline: float,
    on_start: Callable[[], Awaitable[None]],
    on_stop: Callable[[], Awaitable[None]],
) -> None:
    """Runs until cancelled, calling on_start when leadership is won and on_stop when it is lost."""
    leading = False
    last_renewed = 0.0
    try:
        while True:
            try:
                held = await elector.try_acquire()
            except Exception as exc:
                log.warning("leader election failed; retrying", error=str(exc))
                held = False
            now = time.monotonic()
            if held:
                last_renewed = now
                if not leading:
                    leading = True
                    metrics.LEADER.set(1)
                    log.info("leading: running the pull sources")
                    await on_start()
            elif leading and now - last_renewed > renew_deadline:
                leading = False
                metrics.LEADER.set(0)
                log.warning("lost leadership: stopping the pull sources")
                await on_stop()
            await asyncio.sleep(retry_period)
    finally:
        if leading:
            metrics.LEADER.set(0)
            await on_stop()
        await elector.release()
