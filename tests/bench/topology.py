"""Figures in the production topology: api, sink and balance as separate processes on Kafka (tansu),
Postgres and a ClickHouse server reached over HTTP (the test suite's endpoint in front of chDB).

- `entitlement_value_p99_ms_split`: /value on the api process, whose value cache hears of usage
  through the announcements topic, with its adjacent no-op RPC (health check) p99 on the same process.
- `entitlement_value_staleness_p99_ms_split`: from an ingest acknowledged by the api (Kafka acks=all)
  to the api's /value counting the event (sink -> ClickHouse -> announcement -> cache invalidated ->
  recomputed), one event at a time, polled every 5 ms.
- Kafka ingest throughput and single-event latency on the split api.

Standalone: `.venv/bin/python -m tests.bench.topology [customers] [calls] [staleness samples]`; the
sink role's memory under steady ingest: `.venv/bin/python -m tests.bench.topology rss [rounds] [seconds]`.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import grpc

from server.config import SinkSettings
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
from tests.bench import entitlements
from tests.support.services import ClickHouseHttp, Tansu
from tests.support.stack import TallyProcess, create_database


@contextmanager
def split_stack(work: Path) -> Iterator[tuple[TallyProcess, list[TallyProcess]]]:
    """api, sink and balance in separate processes; yields (api, every process)."""
    work.mkdir(parents=True, exist_ok=True)
    broker = Tansu().start(work / "tansu.log")
    endpoint = ClickHouseHttp(work / "clickhouse").start(work / "clickhouse.log")
    url = asyncio.run(create_database())
    stack_id = uuid.uuid4().hex[:10]
    processes = [
        TallyProcess(
            data_dir=work / role,
            postgres_url=url,
            kafka_brokers=broker.brokers,
            stack_id=stack_id,
            extra_env={
                "TALLY_ROLES": role,
                "TALLY_CLICKHOUSE_URL": endpoint.url,
                "TALLY_LOG_LEVEL": "warning",
                "TALLY_MIGRATE_ON_START": "true" if role == "api" else "false",
                # The product's default, not the test stacks' faster cadence: these figures are the
                # production topology's.
                "TALLY_SINK__FLUSH_INTERVAL_MS": str(SinkSettings().flush_interval_ms),
            },
        )
        for role in ("api", "sink", "balance")
    ]
    try:
        processes[0].start(180)
        for process in processes[1:]:
            process.start(180)
        yield processes[0], processes
    finally:
        for process in processes:
            process.stop()
        endpoint.stop()
        broker.stop()


async def staleness(target: str, samples: int) -> list[float]:
    """ms from each single-event ingest's acknowledgement to /value counting it."""
    slug = f"stale_{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(target) as ch:
        meters = meters_pb2_grpc.MeterServiceStub(ch)
        features = features_pb2_grpc.FeatureServiceStub(ch)
        customers = customers_pb2_grpc.CustomerServiceStub(ch)
        ents = entitlements_pb2_grpc.EntitlementServiceStub(ch)
        events = events_pb2_grpc.EventServiceStub(ch)
        await meters.CreateMeter(meters_pb2.CreateMeterRequest(slug=slug, aggregation="COUNT", event_type=slug))
        await features.CreateFeature(features_pb2.CreateFeatureRequest(key=slug, name=slug, meter_slug=slug))
        await customers.CreateCustomer(
            customers_pb2.CreateCustomerRequest(
                name=slug, key=slug, usage_attribution=customers_pb2.CustomerUsageAttribution(subject_keys=[slug])
            )
        )
        await ents.CreateCustomerEntitlement(
            entitlements_pb2.CreateCustomerEntitlementRequest(
                customer_id_or_key=slug,
                entitlement=entitlements_pb2.EntitlementCreateInput(
                    type="metered",
                    feature_key=slug,
                    usage_period=entitlements_pb2.RecurringPeriodInput(interval="MONTH"),
                    measure_usage_from="CURRENT_PERIOD_START",
                ),
            )
        )
        request = entitlements_pb2.GetCustomerEntitlementValueRequest(
            customer_id_or_key=slug, entitlement_id_or_feature_key=slug
        )
        results: list[float] = []
        for n in range(samples):
            await ents.GetCustomerEntitlementValue(request)  # cached before the event
            event = events_pb2.CloudEvent(id=f"{slug}-{n}", source="bench", type=slug, subject=slug)
            event.time.FromDatetime(datetime.now(UTC))
            await events.IngestEvents(events_pb2.IngestEventsRequest(events=[event]))
            acknowledged = time.perf_counter()
            while True:
                value = await ents.GetCustomerEntitlementValue(request)
                if float(value.usage or 0) >= n + 1:
                    break
                await asyncio.sleep(0.005)
            results.append((time.perf_counter() - acknowledged) * 1000)
    return results


def figures(work: Path, customers: int, calls: int, samples: int) -> dict[str, float]:
    with split_stack(work) as (api, _):
        value = asyncio.run(entitlements.entitlement_value(api.grpc_target, customers, calls))
        stale = asyncio.run(staleness(api.grpc_target, samples))
    return {
        "entitlement_value_p99_ms_split": value["value_p99"],
        "entitlement_value_p50_ms_split": value["value_p50"],
        "entitlement_value_cold_p99_ms_split": value["cold_p99"],
        "entitlement_noop_p99_ms_split": value["noop_p99"],
        "entitlement_value_staleness_p50_ms_split": entitlements.percentile(stale, 50),
        "entitlement_value_staleness_p99_ms_split": entitlements.percentile(stale, 99),
        "entitlement_value_staleness_max_ms_split": max(stale),
    }


def sink_memory(work: Path, rounds: int, seconds: int) -> dict[str, float]:
    """The sink role's peak RSS and private memory in rounds of steady ingest through the api."""
    from tests.bench.run import sustained_rss

    result: dict[str, float] = {}
    with split_stack(work) as (api, roles):
        sink = next(p for p in roles if p.extra_env.get("TALLY_ROLES") == "sink")
        for n in range(rounds):
            peak, _, private, rate = asyncio.run(sustained_rss(api, {"sustain_s": seconds, "subjects": 100}, sink))
            result |= {f"sink_rss_mb_{n}": peak, f"sink_private_mb_{n}": private, f"ingest_eps_{n}": rate}
    return result


def main() -> None:
    """`[customers] [calls] [staleness samples]` for the value figures, or `rss [rounds] [seconds]`."""
    from tests.support.services import ROOT
    from tests.support.stack import drop_created_databases

    work = ROOT / ".bench" / "work" / f"split-{uuid.uuid4().hex[:6]}"
    try:
        if sys.argv[1:2] == ["rss"]:
            rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
            result = sink_memory(work, rounds, int(sys.argv[3]) if len(sys.argv) > 3 else 30)
        else:
            customers = int(sys.argv[1]) if len(sys.argv) > 1 else 300
            calls = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
            samples = int(sys.argv[3]) if len(sys.argv) > 3 else 100
            result = figures(work, customers, calls, samples)
    finally:
        asyncio.run(drop_created_databases())
    for key, value in result.items():
        print(f"{key:>45} {value:10.2f}")


if __name__ == "__main__":
    main()
