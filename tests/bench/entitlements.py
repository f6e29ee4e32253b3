"""The entitlement value figure: /value over gRPC, 16 concurrent callers, against its no-op reference.

Setup, all over gRPC and concurrently: a SUM meter and a feature on it; N customers (one subject
each); N metered entitlements (monthly usage period anchored two days ago, usage measured from the
period start) with 5 grants each at different priorities, effective times, expirations and one daily
recurrence, so a computation has several engine breakpoints. The usage (10 events per customer
over the two days) is ingested before the entitlements are created.

Measured: the health-check RPC (the no-op reference) and GetCustomerEntitlementValue with the same
16 concurrent callers, back to back. `cold` is the first call per entitlement (nothing cached in
the server), `value` is calls spread over all entitlements afterwards (the steady request path).

Standalone: `.venv/bin/python -m tests.bench.entitlements [customers] [calls]` starts its own
embedded stack and prints the figures (handy for before/after comparisons); `BENCH_VALUE_CACHE=0`
turns the value cache off to measure the computed path alone; `BENCH_ROLLUPS=0` keeps the meter's
per-hour rollup off (else the cold calls start once it is ready and read it); `BENCH_PROFILE=DIR`
records a py-spy profile of the server during the cold calls (tests/bench/run.py's `profiled`).
`cold_cpu_ms` is the server's CPU time (all threads) per cold call, `cold_loop_cpu_ms` its event
loop's (the main thread's; ClickHouse queries run beside it on a thread pool), `cold_client_cpu_ms`
and `cold_postgres_cpu_ms` what the same calls cost this client and the stack database's Postgres
backends. On an embedded stack the cold calls start once the balance worker has recomputed every
entitlement after its grants, in a restarted server (`cold_after_balance`): nothing cached, nothing
recomputing beside them.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import orjson
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tally.v1 import (
    customers_pb2,
    customers_pb2_grpc,
    entitlements_pb2,
    entitlements_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    features_pb2,
    features_pb2_grpc,
    meters_pb2,
    meters_pb2_grpc,
)

CONCURRENCY = 16
EVENTS_PER_CUSTOMER = 10


async def _bounded(calls: list[Any], concurrency: int = CONCURRENCY) -> list[Any]:
    queue = list(enumerate(calls))
    results: list[Any] = [None] * len(calls)

    async def worker() -> None:
        while queue:
            i, make = queue.pop()
            results[i] = await make()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def _grants(anchor: datetime) -> list[entitlements_pb2.GrantCreateInput]:
    def ts(t: datetime) -> Any:
        from google.protobuf import timestamp_pb2

        out = timestamp_pb2.Timestamp()
        out.FromDatetime(t)
        return out

    day = entitlements_pb2.ExpirationPeriod(duration="DAY", count=30)
    return [
        entitlements_pb2.GrantCreateInput(amount=1000, priority=5, effective_at=ts(anchor)),
        entitlements_pb2.GrantCreateInput(
            amount=300, priority=1, effective_at=ts(anchor + timedelta(hours=6)), expiration=day
        ),
        entitlements_pb2.GrantCreateInput(
            amount=50,
            priority=2,
            effective_at=ts(anchor + timedelta(hours=12)),
            recurrence=entitlements_pb2.RecurringPeriodInput(interval="DAY", anchor=ts(anchor + timedelta(hours=12))),
        ),
        entitlements_pb2.GrantCreateInput(
            amount=200,
            priority=3,
            effective_at=ts(anchor + timedelta(hours=18)),
            expiration=entitlements_pb2.ExpirationPeriod(duration="HOUR", count=30),
        ),
        entitlements_pb2.GrantCreateInput(amount=100, priority=4, effective_at=ts(anchor + timedelta(hours=30))),
    ]


async def setup(target: str, customers: int) -> list[str]:
    """Creates the meter, feature, customers, entitlements, grants and usage; returns customer keys."""
    run = uuid.uuid4().hex[:6]
    slug = f"ent_{run}"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    anchor = now - timedelta(days=2)
    async with grpc.aio.insecure_channel(target) as ch:
        meters = meters_pb2_grpc.MeterServiceStub(ch)
        features = features_pb2_grpc.FeatureServiceStub(ch)
        custs = customers_pb2_grpc.CustomerServiceStub(ch)
        ents = entitlements_pb2_grpc.EntitlementServiceStub(ch)
        events = events_pb2_grpc.EventServiceStub(ch)
        await meters.CreateMeter(
            meters_pb2.CreateMeterRequest(slug=slug, event_type=slug, aggregation="SUM", value_property="$.tokens")
        )
        await features.CreateFeature(features_pb2.CreateFeatureRequest(key=slug, name=slug, meter_slug=slug))
        keys = [f"{slug}_c{i}" for i in range(customers)]

        def create_customer(key: str) -> Any:
            return lambda: custs.CreateCustomer(
                customers_pb2.CreateCustomerRequest(
                    name=key, key=key, usage_attribution=customers_pb2.CustomerUsageAttribution(subject_keys=[key])
                )
            )

        await _bounded([create_customer(k) for k in keys])
        period = entitlements_pb2.RecurringPeriodInput(interval="MONTH")
        period.anchor.FromDatetime(anchor)
        grants = _grants(anchor)

        def create_entitlement(key: str) -> Any:
            return lambda: ents.CreateCustomerEntitlement(
                entitlements_pb2.CreateCustomerEntitlementRequest(
                    customer_id_or_key=key,
                    entitlement=entitlements_pb2.EntitlementCreateInput(
                        type="metered",
                        feature_key=slug,
                        usage_period=period,
                        measure_usage_from="CURRENT_PERIOD_START",
                        grants=grants,
                    ),
                )
            )

        rng = random.Random(7)
        span_ms = int((now - anchor).total_seconds() * 1000)
        batch: list[events_pb2.CloudEvent] = []
        batches: list[events_pb2.IngestEventsRequest] = []
        for key in keys:
            for n in range(EVENTS_PER_CUSTOMER):
                event = events_pb2.CloudEvent(
                    id=f"{key}-{n}",
                    source="bench",
                    type=slug,
                    subject=key,
                    data_json=orjson.dumps({"tokens": rng.randint(1, 20)}),
                )
                event.time.FromMilliseconds(int(anchor.timestamp() * 1000) + rng.randrange(span_ms))
                batch.append(event)
                if len(batch) == 1000:
                    batches.append(events_pb2.IngestEventsRequest(events=batch))
                    batch = []
        if batch:
            batches.append(events_pb2.IngestEventsRequest(events=batch))
        await _bounded([(lambda b=b: events.IngestEvents(b)) for b in batches], 4)
        deadline = time.monotonic() + 120
        while True:
            counted = await meters.QueryMeter(meters_pb2.QueryMeterRequest(meter_id_or_slug=slug, group_by=["subject"]))
            if len(counted.data) >= customers:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("bench usage not queryable after 120 s")
            await asyncio.sleep(0.05)
        # Entitlements after the usage. Creating one makes the balance worker recompute it (warming
        # the value cache as it goes): `cold_after_balance` waits for that and clears the cache, so
        # the cold calls are the request path alone, uncached and unhindered.
        await _bounded([create_entitlement(k) for k in keys])
    return [f"{k}|{slug}" for k in keys]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def _latencies(call: Any, total: int) -> list[float]:
    samples: list[float] = []
    counter = iter(range(total))

    async def caller() -> None:
        for n in counter:
            t0 = time.perf_counter()
            await call(n)
            samples.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return samples


async def measure(
    target: str, targets: list[str], calls: int, around_cold: Callable[[], AbstractContextManager[Any]] = nullcontext
) -> dict[str, float]:
    """noop, cold and steady /value p50/p99 (ms) with 16 concurrent callers, back to back;
    `around_cold` wraps the cold calls (the profiler)."""
    requests = []
    for t in targets:
        customer, feature = t.split("|")
        requests.append(
            entitlements_pb2.GetCustomerEntitlementValueRequest(
                customer_id_or_key=customer, entitlement_id_or_feature_key=feature
            )
        )
    rng = random.Random(11)
    order = [rng.randrange(len(requests)) for _ in range(calls)]
    async with grpc.aio.insecure_channel(target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        ents = entitlements_pb2_grpc.EntitlementServiceStub(ch)

        async def noop(n: int) -> None:
            await health.Check(health_pb2.HealthCheckRequest())

        await _latencies(noop, 300)  # warm-up
        with around_cold():
            cold = await _latencies(lambda n: ents.GetCustomerEntitlementValue(requests[n]), len(requests))
        noop_ms = await _latencies(noop, calls)
        value_ms = await _latencies(lambda n: ents.GetCustomerEntitlementValue(requests[order[n]]), calls)
        noop_after = await _latencies(noop, calls)
    noop_all = noop_ms + noop_after
    return {
        "noop_p50": percentile(noop_all, 50),
        "noop_p99": percentile(noop_all, 99),
        "cold_p50": percentile(cold, 50),
        "cold_p99": percentile(cold, 99),
        "value_p50": percentile(value_ms, 50),
        "value_p99": percentile(value_ms, 99),
    }


def _metric(metrics_port: int, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def cold_after_balance(stack: Any, quiet_s: float = 3.0, timeout: float = 600) -> float:
    """Waits until the stack's balance worker has recomputed the bench's entitlements after their
    grants (its counter moved, then stood still for `quiet_s`), then restarts the stack, whose
    value cache lives in its memory: the cold calls then find nothing cached and no recomputation
    running beside them (measured 2026-12-03: the worker recomputed ~30 entitlements/s through the
    whole cold pass before, and each it reached first was answered from the cache). Seconds waited."""
    started = time.perf_counter()
    last, since = -1.0, time.perf_counter()
    while time.perf_counter() - started < timeout:
        done = _metric(stack.metrics_port, "tally_balance_recomputed_total")
        if done != last:
            last, since = done, time.perf_counter()
        elif done > 0 and time.perf_counter() - since >= quiet_s:
            stack.stop()
            stack.start(180)
            return time.perf_counter() - started
        time.sleep(0.25)
    raise TimeoutError(f"the balance worker was still recomputing after {timeout:.0f} s ({last:.0f} done)")


async def rollups_ready(metrics_port: int, timeout: float = 180, count: int = 1) -> float:
    """Waits until the server's rollup worker reports `count` ready rollups (the meters'); seconds
    waited."""
    import urllib.request

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            for line in response.read().decode().splitlines():
                if line.startswith('tally_meter_rollups{state="ready"}') and float(line.split()[-1]) >= count:
                    return time.perf_counter() - started
        await asyncio.sleep(0.5)
    raise TimeoutError("no meter rollup became ready")


async def entitlement_value(
    target: str,
    customers: int,
    calls: int,
    rollups_metrics_port: int | None = None,
    around_cold: Callable[[], AbstractContextManager[Any]] = nullcontext,
    before_cold: Callable[[], float] | None = None,
) -> dict[str, float]:
    """With `rollups_metrics_port`, cold calls wait until the meter's rollup is ready (the steady
    state of a meter older than its rollup's handover) and read it. `before_cold` runs after the
    setup: `cold_after_balance` on an embedded stack."""
    started = time.perf_counter()
    targets = await setup(target, customers)
    setup_s = time.perf_counter() - started
    waited = await rollups_ready(rollups_metrics_port) if rollups_metrics_port is not None else 0.0
    if before_cold is not None:
        # On this thread, blocking the loop (nothing else runs on it meanwhile): the stack it
        # restarts dies with the thread that started it (popen_dying_with_runner), and a thread of
        # asyncio's pool ends with this asyncio.run, which killed the stack before make bench's
        # next figures.
        balance_wait = before_cold()
    figures = await measure(target, targets, calls, around_cold)
    figures["rollup_wait_s"] = waited
    if before_cold is not None:
        figures["balance_wait_s"] = balance_wait
    figures["setup_s"] = setup_s
    return figures


def main() -> None:
    from tests.bench.run import cpu_time, profiled
    from tests.support.services import ROOT
    from tests.support.stack import TallyProcess, create_database, drop_created_databases

    customers = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    work = ROOT / ".bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    postgres_url = asyncio.run(create_database())
    stack = TallyProcess(data_dir=work / f"ent-{uuid.uuid4().hex[:6]}", postgres_url=postgres_url)
    # BENCH_VALUE_CACHE=0 measures the computed path alone (the cache off).
    # BENCH_ROLLUPS=0 keeps the meter's per-hour rollup off (every computation reads raw events);
    # otherwise its handover runs with a short grace and the cold calls wait until it is ready.
    rollups = os.environ.get("BENCH_ROLLUPS") != "0"
    stack.extra_env = {
        "TALLY_LOG_LEVEL": "warning",
        "TALLY_ENTITLEMENTS__VALUE_CACHE": "false" if os.environ.get("BENCH_VALUE_CACHE") == "0" else "true",
        "TALLY_SINK__ROLLUPS": "true" if rollups else "false",
        "TALLY_SINK__ROLLUP_GRACE_S": "2",
        "TALLY_SINK__ROLLUP_INTERVAL_S": "1",
    }
    stack.start(180)
    spent: list[float] = []

    def loop_cpu() -> float:
        # The server's main thread runs its event loop (ClickHouse queries run on a thread pool).
        assert stack.process is not None
        pid = stack.process.pid
        main = next(t for t in psutil.Process(pid).threads() if t.id == pid)
        return main.user_time + main.system_time

    @contextmanager
    def around_cold() -> Iterator[None]:
        database = postgres_url.rsplit("/", 1)[-1]
        with profiled("cold", stack), cpu_time(stack, database=database) as cpu:
            loop_before = loop_cpu()
            yield
            loop_spent = loop_cpu() - loop_before
        spent.extend([cpu[0], loop_spent, cpu[-2], cpu[-1]])

    try:
        port = stack.metrics_port if rollups else None
        figures = asyncio.run(
            entitlement_value(stack.grpc_target, customers, calls, port, around_cold, lambda: cold_after_balance(stack))
        )
        # The server's CPU per cold call: the figure the shared machine's load disturbs least.
        figures["cold_cpu_ms"] = spent[0] / customers * 1000
        figures["cold_loop_cpu_ms"] = spent[1] / customers * 1000
        # What else each cold call costs the 2 cores: this client's gRPC calls and the Postgres
        # backends serving the stack's database (16 callers back to back keep the cores busy, so a
        # call's latency is mostly its wait for CPU: docs/performance.md).
        figures["cold_client_cpu_ms"] = spent[2] / customers * 1000
        figures["cold_postgres_cpu_ms"] = spent[3] / customers * 1000
    finally:
        stack.stop()
        asyncio.run(drop_created_databases())
    for key, value in figures.items():
        print(f"{key:>12} {value:10.2f}")


if __name__ == "__main__":
    main()
