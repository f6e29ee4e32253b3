"""The `tally collect` process: sources -> mapping -> durable buffer -> delivery to Tally.

Pull sources (prometheus, kubernetes) run on the leader only, once per scheduled tick. A source's
cursor (the last tick it completed) is stored with that tick's events in one transaction; on start,
ticks missed while the collector was down are caught up (up to max_catch_up), and a tick that fails
(Prometheus unreachable) is retried with backoff before the next one runs. Push sources (otel_logs,
http) run on every replica and answer their clients once the events are on disk.

SIGTERM stops the sources first (nothing new is accepted), then delivers what it can within
shutdown_timeout; the rest stays in the buffer for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.collectors import metrics
from adapters.collectors.http_relay import Problem
from adapters.collectors.records import BufferFullError, Record, record_time
from workers.collector.buffer import Buffer
from workers.collector.config import CollectorConfig, HttpSource, KubernetesSource, OtelLogsSource, PrometheusSource
from workers.collector.delivery import Delivery, Sender, sender_for
from workers.collector.leader import Elector, FileLock, NoElection, lead
from workers.collector.mapping import Mapper, MappingError
from workers.collector.schedule import Ticks

log = structlog.get_logger(__name__)


class PullSource(Protocol):
    name: str

    async def collect(self, start: datetime, end: datetime) -> list[Record]: ...

    async def close(self) -> None: ...


class PushSource(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class BufferInUseError(Exception):
    pass


class Collector:
    def __init__(self, config: CollectorConfig, problem: Problem | None = None, sender: Sender | None = None) -> None:
        """problem: how the HTTP relay renders refusals (server.errors.problem_response, passed in by
        `tally collect`; the host's error mapping sits above this package)."""
        self.config = config
        buffer_path = Path(config.buffer.path)
        buffer_path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = _exclusive(buffer_path.with_name(buffer_path.name + ".owner"))
        self.buffer = Buffer(buffer_path, config.buffer.max_events)
        self.delivery = Delivery(self.buffer, sender or sender_for(config.sink), config.batch)
        self.mappers = {s.name: Mapper(s.name, s.mapping) for s in config.sources if s.mapping is not None}
        self.pulls: list[tuple[PullSource, Ticks, int]] = []
        self.pushes: list[PushSource] = []
        self._pull_tasks: list[asyncio.Task[None]] = []
        self._leading_since = datetime.now(UTC)
        self._metrics_runner: web.AppRunner | None = None
        for source in config.sources:
            if isinstance(source, PrometheusSource):
                from adapters.collectors.prometheus import Prometheus

                prometheus = Prometheus(
                    source.name,
                    source.url,
                    source.query,
                    offset=source.offset,
                    timeout=source.timeout,
                    headers=source.headers,
                )
                self.pulls.append((prometheus, Ticks(source.schedule), source.schedule.max_catch_up))
            elif isinstance(source, KubernetesSource):
                from adapters.collectors.kubernetes import Kubernetes

                kubernetes = Kubernetes(source.name, source.selection(), source.kubeconfig, source.context)
                self.pulls.append((kubernetes, Ticks(source.schedule), source.schedule.max_catch_up))
            elif isinstance(source, OtelLogsSource):
                from adapters.collectors.otel_logs import OtelLogsReceiver

                mapper = self.mappers[source.name]

                async def accept_logs(records: list[Record], mapper: Mapper = mapper) -> tuple[int, str]:
                    return await self.intake(mapper, records)

                self.pushes.append(OtelLogsReceiver(source.name, source.listen, accept_logs))
            elif isinstance(source, HttpSource):
                from adapters.collectors.http_relay import HttpRelay

                async def accept_events(events: Sequence[dict[str, Any]], name: str = source.name) -> None:
                    await self.accept_events(name, events)

                if problem is None:
                    raise ValueError("an http source needs the problem+json renderer (server.errors.problem_response)")
                self.pushes.append(HttpRelay(source.name, source.listen, accept_events, problem, source.max_body_bytes))

    # Intake: the one way into the buffer.

    async def intake(
        self, mapper: Mapper, records: Sequence[Record], cursor: tuple[str, str] | None = None
    ) -> tuple[int, str]:
        """Maps records and buffers the events (with the cursor); returns (refused, first reason)."""
        name = mapper.source_name
        metrics.SCRAPED.labels(name).inc(len(records))
        events: dict[str, dict[str, Any]] = {}
        refused, reason = 0, ""
        for record in records:
            try:
                if not mapper.accepts(record):
                    continue
                event = mapper.map(record)
            except MappingError as exc:
                refused += 1
                reason = reason or str(exc)
                metrics.FAILED.labels(name, "mapping").inc()
                continue
            if event["id"] in events:
                # Two records with one key in one window: the mapping's `key` is not unique enough.
                refused += 1
                reason = reason or f"key: two records map to the same event id (key {record.key!r})"
                metrics.FAILED.labels(name, "duplicate_key").inc()
                continue
            events[event["id"]] = event
        if refused:
            log.warning("records not turned into events", source=name, refused=refused, reason=reason)
        added = await self.buffer.put(list(events.values()), cursor)
        metrics.BUFFERED.labels(name).inc(added)
        metrics.PENDING.set(self.buffer.pending)
        self.delivery.notify()
        return refused, reason

    async def accept_events(self, name: str, events: Sequence[dict[str, Any]]) -> None:
        metrics.SCRAPED.labels(name).inc(len(events))
        added = await self.buffer.put(events)
        metrics.BUFFERED.labels(name).inc(added)
        metrics.PENDING.set(self.buffer.pending)
        self.delivery.notify()

    # Pull sources.

    async def run_tick(self, source: PullSource, start: datetime, tick: datetime) -> None:
        """One window [start, tick] of a pull source, retried until its events and cursor are buffered."""
        attempt = 0
        while True:
            try:
                records = await source.collect(start, tick)
                await self.intake(self.mappers[source.name], records, cursor=(source.name, record_time(tick)))
                metrics.LAST_RUN.labels(source.name).set(tick.timestamp())
                log.info("window collected", source=source.name, tick=record_time(tick), records=len(records))
                return
            except asyncio.CancelledError:
                raise
            except BufferFullError:
                log.warning("buffer full; waiting for delivery", source=source.name)
                delay = 1.0
            except Exception as exc:
                metrics.SOURCE_ERRORS.labels(source.name).inc()
                delay = random.uniform(0, min(30.0, 0.5 * 2**attempt))
                log.warning("source run failed; retrying", source=source.name, error=str(exc), retry_in=round(delay, 2))
            attempt += 1
            await asyncio.sleep(delay)

    async def windows(
        self, name: str, ticks: Ticks, max_catch_up: int, now: datetime
    ) -> list[tuple[datetime, datetime]]:
        """The windows (start, tick) a pull source runs now, oldest first."""
        latest = ticks.at_or_before(now)
        cursor = await self.buffer.cursor(name)
        if cursor is None:
            # Never ran here: another replica may have led until it died, unnoticed for up to
            # a lease (plus a retry). Run the ticks of that span too; what the old leader did
            # already yields the same ids.
            since = self._leading_since - timedelta(seconds=self._takeover_seconds())
            todo, _ = ticks.between(since, latest, max(1, max_catch_up))
            return [(ticks.before(tick), tick) for tick in todo or [latest]]
        done = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
        todo, skipped = ticks.between(done, latest, max(1, max_catch_up))
        if skipped:
            metrics.SKIPPED_RUNS.labels(name).inc(skipped)
            log.warning("runs missed beyond max_catch_up were skipped", source=name, skipped=skipped)
        # A window never reaches back before the cursor: after a schedule change (1m to 5m, a new
        # cron) the first tick's previous tick lies before the last window done, and that span,
        # already metered, would be metered again (a pod's run time counted twice).
        return [(max(ticks.before(tick), done), tick) for tick in todo]

    async def run_pull(self, source: PullSource, ticks: Ticks, max_catch_up: int) -> None:
        while True:
            now = datetime.now(UTC)
            for start, tick in await self.windows(source.name, ticks, max_catch_up, now):
                await self.run_tick(source, start, tick)
            wait = (ticks.after(ticks.at_or_before(now)) - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(0.0, wait))

    def _takeover_seconds(self) -> float:
        leader = self.config.leader
        return 0.0 if leader.mode == "none" else leader.lease_duration + leader.retry_period

    async def start_pulls(self) -> None:
        self._leading_since = datetime.now(UTC)
        for source, ticks, max_catch_up in self.pulls:
            self._pull_tasks.append(asyncio.create_task(self.run_pull(source, ticks, max_catch_up)))

    async def stop_pulls(self) -> None:
        tasks, self._pull_tasks = self._pull_tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def elector(self) -> Elector:
        leader = self.config.leader
        mode = leader.mode
        if mode == "auto":
            from adapters.collectors.kubernetes import in_cluster

            mode = "kubernetes" if in_cluster() else "file"
        if mode == "kubernetes":
            from adapters.collectors.kubernetes import KubernetesLease

            return KubernetesLease(
                leader.lease_name, leader.lease_namespace, leader.lease_duration, leader.retry_period, leader.identity
            )
        if mode == "file":
            path = Path(leader.file) if leader.file else Path(self.config.buffer.path).parent / "collector-leader.lock"
            return FileLock(path)
        return NoElection()

    # Metrics.

    async def _metrics(self, request: web.Request) -> web.Response:
        metrics.PENDING.set(self.buffer.pending)
        metrics.LAG.set(await self.buffer.oldest_age() if self.buffer.pending else 0.0)
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"content-type": CONTENT_TYPE_LATEST})

    async def _start_metrics(self) -> None:
        if not self.config.metrics.listen:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", lambda _: _ok())
        self._metrics_runner = web.AppRunner(app, access_log=None)
        await self._metrics_runner.setup()
        host, _, port = self.config.metrics.listen.rpartition(":")
        await web.TCPSite(self._metrics_runner, host or "127.0.0.1", int(port)).start()

    # The process.

    async def run(self, stop: asyncio.Event) -> None:
        metrics.PENDING.set(self.buffer.pending)
        started: list[PushSource] = []
        leader_task: asyncio.Task[None] | None = None
        delivery_task = asyncio.create_task(self.delivery.run())
        try:
            await self._start_metrics()
            for push in self.pushes:
                await push.start()
                started.append(push)
            if self.pulls:
                leader = self.config.leader
                leader_task = asyncio.create_task(
                    lead(
                        self.elector(),
                        leader.retry_period,
                        leader.lease_duration * 2 / 3,
                        self.start_pulls,
                        self.stop_pulls,
                    )
                )
            log.info(
                "collector running",
                sources=[s.name for s in self.config.sources],
                buffered=self.buffer.pending,
                sink=self.config.sink.url,
            )
            await stop.wait()
        finally:
            log.info("stopping: no new events accepted, delivering the buffer", buffered=self.buffer.pending)
            for push in started:
                await push.stop()
            if leader_task is not None:
                leader_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await leader_task
            await self.stop_pulls()
            delivery_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivery_task
            done = await self.delivery.flush(self.config.shutdown_timeout)
            log.info("stopped", delivered_all=done, left_in_buffer=self.buffer.pending)
            await self.close()

    async def close(self) -> None:
        for source, _, _ in self.pulls:
            await source.close()
        await self.delivery.sender.close()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        await self.buffer.drain_writes()
        self.buffer.close()
        os.close(self._owner)


async def _ok() -> web.Response:
    return web.Response(text="ok")


def _exclusive(path: Path) -> int:
    """One collector per buffer: two processes appending to one file would each count it wrong."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BufferInUseError(
            f"another collector uses the buffer {path.with_suffix('')}; give each replica its own buffer.path"
        ) from None
    return fd
