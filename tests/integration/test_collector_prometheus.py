"""`tally collect` with a real Prometheus (Debian's package) scraping an exporter this test runs,
delivering to a real Tally; the collector is killed with SIGKILL mid-run and started again, and
every scheduled tick still lands exactly once."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

import tally_sdk
from tests.support.collector import CollectorProcess, PrometheusServer
from tests.support.metering import create_meter, query, unique
from tests.support.services import free_port
from tests.support.stack import TallyProcess, wait_for

SUFFIX = uuid.uuid4().hex[:8]
ACME, GLOBEX = f"acme-{SUFFIX}", f"globex-{SUFFIX}"


@pytest.fixture(scope="module")
def exporter() -> Iterator[int]:
    registry = CollectorRegistry()
    gauge = Gauge("test_gpu_usage", "GPUs in use", ["customer", "model"], registry=registry)
    gauge.labels(ACME, "a100").set(3.5)
    gauge.labels(GLOBEX, "h100").set(2)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield port
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def prometheus(exporter: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{exporter}"]).start()
    deadline = time.monotonic() + 30
    while len(server.query(f'test_gpu_usage{{customer=~".*-{SUFFIX}"}}')) < 2:
        assert time.monotonic() < deadline, f"prometheus never scraped the exporter:\n{server.log_tail()}"
        time.sleep(0.2)
    yield server
    server.stop()


def collector_config(
    tmp_path: Path, tally: TallyProcess, prometheus: PrometheusServer, event_type: str, replica: str = "a"
) -> Path:
    """One replica's config: its own buffer and metrics port, the leader lock shared by all."""
    metrics_port = free_port()
    config: dict[str, Any] = {
        "sink": {"url": f"grpc://{tally.grpc_target}", "timeout": "5s"},
        "batch": {"size": 100, "period": "200ms", "max_backoff": "1s"},
        "buffer": {"path": str(tmp_path / f"buffer-{replica}.db")},
        "leader": {"mode": "file", "file": str(tmp_path / "leader.lock"), "retry_period": "1s", "lease_duration": "5s"},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "shutdown_timeout": "10s",
        "sources": [
            {
                "name": "gpus",
                "type": "prometheus",
                "url": prometheus.url,
                "query": f'test_gpu_usage{{customer=~".*-{SUFFIX}"}}',
                "schedule": {"interval": "1s"},
                "mapping": {
                    "type": event_type,
                    "subject": "metric.customer",
                    "data": {"value": "value", "model": "metric.model"},
                },
            }
        ],
    }
    path = tmp_path / f"collector-{replica}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start(config: Path) -> CollectorProcess:
    return CollectorProcess(
        config, int(yaml.safe_load(config.read_text())["metrics"]["listen"].rsplit(":", 1)[1])
    ).start()


async def subject_events(tally: TallyProcess, subject: str, event_type: str) -> list[Any]:
    async with tally_sdk.Client(tally.grpc_target) as client:
        return [e for e in await client.list_events(subject=subject, limit=100) if e.event.type == event_type]


async def assert_every_tick_once(
    tally: TallyProcess, http: httpx.AsyncClient, event_type: str, meter: str, at_least: int
) -> None:
    """Both series: one event per 1 s tick, contiguous from the first to the last, each with its value."""

    stored: dict[str, int] = {}

    async def settled() -> list[Any] | None:
        acme, globex = await subject_events(tally, ACME, event_type), await subject_events(tally, GLOBEX, event_type)
        stored.update(acme=len(acme), globex=len(globex))
        return [acme, globex] if len(acme) >= at_least and len(acme) == len(globex) else None

    # The collectors have stopped: this waits for Tally to store what they sent (slow on a loaded
    # machine), and says how far it got if it never does.
    try:
        acme, globex = await wait_for(settled, timeout=60)
    except AssertionError as error:
        raise AssertionError(f"{error}; ticks stored per subject: {stored}") from None
    for events, value in ((acme, Decimal("3.5")), (globex, Decimal(2))):
        times = sorted(item.event.time.ToDatetime() for item in events)
        assert len(times) == len(set(times)), "a tick was stored twice"
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap == timedelta(seconds=1) for gap in gaps), f"missing ticks: {gaps}"
        assert {item.event.source for item in events} == {"collector/gpus"}
        rows = await query(http, meter, subject=events[0].event.subject)
        assert sum(Decimal(str(row["value"])) for row in rows) == value * len(times)


async def test_prometheus_ticks_land_exactly_once_across_sigkill(
    prometheus: PrometheusServer, tally: TallyProcess, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    event_type = unique("gpu_usage")
    total = unique("gpu_total")
    await create_meter(
        http, slug=total, eventType=event_type, aggregation="SUM", valueProperty="$.value", groupBy={"model": "$.model"}
    )
    config = collector_config(tmp_path, tally, prometheus, event_type)
    collector = start(config)
    try:
        await wait_for(
            lambda: asyncio.to_thread(lambda: collector.metric("tally_collector_sent_total") >= 6), timeout=30
        )
        # /metrics tells what happened.
        assert collector.metric("tally_collector_leader") == 1
        assert collector.metric("tally_collector_scraped_total", 'source="gpus"') >= 6
        assert collector.metric("tally_collector_buffered_total", 'source="gpus"') >= 6
        assert collector.metric("tally_collector_lag_seconds") >= 0
        assert collector.metric("tally_collector_last_run_timestamp_seconds", 'source="gpus"') > 0
        collector.stop(signal.SIGKILL)
        await asyncio.sleep(2.5)  # ticks pass while the collector is down: caught up on restart
        collector.start()
        await wait_for(
            lambda: asyncio.to_thread(lambda: collector.metric("tally_collector_sent_total") >= 6), timeout=30
        )
        assert collector.stop(signal.SIGTERM) == 0, collector.log_tail()
    finally:
        collector.stop(signal.SIGKILL)

    await assert_every_tick_once(tally, http, event_type, total, at_least=6)
    models = {row["groupBy"]["model"] for row in await query(http, total, groupBy="model", subject=ACME)}
    assert models == {"a100"}


async def test_a_follower_takes_over_when_the_leader_is_killed(
    prometheus: PrometheusServer, tally: TallyProcess, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Two replicas, one lock: only the leader scrapes; when it hangs and is killed the other leads
    and catches up on the ticks the dead leader missed, and each tick still lands exactly once."""
    event_type, total = unique("gpu_usage"), unique("gpu_total")
    await create_meter(http, slug=total, eventType=event_type, aggregation="SUM", valueProperty="$.value")
    replicas = [start(collector_config(tmp_path, tally, prometheus, event_type, replica)) for replica in "ab"]
    try:

        async def one_leader_sent() -> list[CollectorProcess] | None:
            leaders = [r for r in replicas if await asyncio.to_thread(r.metric, "tally_collector_leader") == 1]
            if len(leaders) == 1 and await asyncio.to_thread(leaders[0].metric, "tally_collector_sent_total") >= 4:
                return leaders
            return None

        (leader,) = await wait_for(one_leader_sent, timeout=30)
        (follower,) = [r for r in replicas if r is not leader]
        assert follower.metric("tally_collector_scraped_total", 'source="gpus"') == 0
        # The leader hangs for a few ticks, then dies: the lock is released only at its death, so
        # the ticks it missed are older than the follower's first own tick.
        assert leader.process is not None
        leader.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(3)
        leader.stop(signal.SIGKILL)
        killed_at = datetime.now(UTC).replace(tzinfo=None)

        # The follower leads until Tally holds one of its own ticks from after the leader's death
        # (a count of what it sent cannot tell: its catch-up may resend ticks the leader sent).
        async def own_tick_stored() -> bool:
            events = await subject_events(tally, ACME, event_type)
            return any(item.event.time.ToDatetime() >= killed_at + timedelta(seconds=1) for item in events)

        await wait_for(own_tick_stored, timeout=60)
        assert follower.metric("tally_collector_leader") == 1
        assert follower.stop(signal.SIGTERM) == 0, follower.log_tail()
    finally:
        for replica in replicas:
            replica.stop(signal.SIGKILL)
    # From the dead leader's first tick to the follower's after the death, every tick once: the
    # contiguity checked there shows the ticks missed while the leader hung were caught up.
    await assert_every_tick_once(tally, http, event_type, total, at_least=5)
