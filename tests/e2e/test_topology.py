"""The production topology, whole: every role in its own process, on Kafka and a ClickHouse server.

tansu (Kafka protocol), PostgreSQL, the ClickHouse HTTP endpoint (tests/support/clickhouse_http.py)
and seven Tally processes: two api, two sink, one balance, one notify, one billing. Usage is ingested
through both api processes while one sink and one api are killed with SIGKILL and restarted; every
acknowledged event is then counted exactly once, entitlement values agree across the api processes
(each with its own value cache, invalidated by announcements from the sinks), a balance threshold is
delivered once as a signed webhook, and SIGTERM stops every role cleanly with nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import clickhouse_connect
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from adapters.bus.kafka import partition_for
from adapters.postgres.event_keys import key_hash
from domain.metering.events import Event
from tests.support.metering import cloudevent, create_meter, query, unique
from tests.support.services import ClickHouseHttp, Tansu, require
from tests.support.stack import TallyProcess, create_database, wait_for
from tests.support.webhooks import WebhookReceiver

ROLES = {
    "api1": "api",
    "api2": "api",
    "sink1": "sink",
    "sink2": "sink",
    "balance": "balance",
    "notify": "notify",
    "billing": "billing",
}
BATCHES_PER_API = 40
EVENTS_PER_BATCH = 50
SUBJECTS = ("cust-a", "other-1", "other-2")


async def _ok(response: httpx.Response, status: int = 201) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


class Topology:
    def __init__(self, root: Path, brokers: str, postgres_url: str, clickhouse_url: str) -> None:
        stack_id = unique("topo")
        self.processes: dict[str, TallyProcess] = {}
        for name, role in ROLES.items():
            self.processes[name] = TallyProcess(
                data_dir=root / name,
                postgres_url=postgres_url,
                kafka_brokers=brokers,
                stack_id=stack_id,
                extra_env={
                    "TALLY_ROLES": role,
                    "TALLY_CLICKHOUSE_URL": clickhouse_url,
                    # The first api migrates; the rest start against the migrated schema.
                    "TALLY_MIGRATE_ON_START": "true" if name == "api1" else "false",
                    "TALLY_NOTIFY__POLL_INTERVAL_MS": "200",
                    "TALLY_NOTIFY__RETRY_INITIAL_MS": "200",
                },
            )

    def start(self) -> None:
        self.processes["api1"].start(timeout=120)
        # The others together: launched from this thread (a child dies with the thread that forked
        # it), then waited for.
        others = [p for name, p in self.processes.items() if name != "api1"]
        for process in others:
            process.launch()
        for process in others:
            process.wait_ready(120)

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@pytest.fixture
def topology(postgres_ready: None, tansu: Tansu, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = Path(tmp_path_factory.mktemp("topology"))
    endpoint = ClickHouseHttp(root / "clickhouse")
    try:
        endpoint.start(root / "clickhouse.log")
    except (RuntimeError, OSError) as exc:
        require(False, f"ClickHouse HTTP endpoint ({exc})")
    url = asyncio.run(create_database())
    stack = Topology(root, tansu.brokers, url, endpoint.url)
    try:
        stack.start()
        yield stack, endpoint
    finally:
        stack.stop()
        endpoint.stop()


async def _ingest_until_acknowledged(clients: list[httpx.AsyncClient], batch: list[dict[str, Any]]) -> None:
    """Sends one batch until an api acknowledges it (204), trying the other api while one is down.
    A batch may reach the bus more than once; (source, id) deduplication keeps the count exact."""
    for attempt in itertools.count():
        client = clients[attempt % len(clients)]
        try:
            response = await client.post(
                "/api/v1/events", json=batch, headers={"content-type": "application/cloudevents-batch+json"}
            )
            if response.status_code == 204:
                return
        except httpx.HTTPError:
            pass
        if attempt > 200:
            raise AssertionError("no api acknowledged a batch for a long time")
        await asyncio.sleep(0.1)


# In `make test` (about a minute). It once failed at random: partitions changing hands between the
# sinks doubled or lost events (docs/topology.md, "Partitions changing hands between sinks").
async def test_every_role_in_its_own_process(topology: tuple[Topology, ClickHouseHttp]) -> None:
    stack, endpoint = topology
    procs = stack.processes
    api1 = httpx.AsyncClient(base_url=procs["api1"].rest_url, timeout=30)
    api2 = httpx.AsyncClient(base_url=procs["api2"].rest_url, timeout=30)
    receiver = await WebhookReceiver().start()
    try:
        event_type = unique("topo")
        await create_meter(api1, slug=event_type, eventType=event_type, aggregation="SUM", valueProperty="$.n")
        feature = unique("feature")
        await _ok(await api2.post("/api/v1/features", json={"key": feature, "name": feature, "meterSlug": event_type}))
        customer = unique("customer")
        await _ok(
            await api1.post(
                "/api/v1/customers",
                json={"name": customer, "key": customer, "usageAttribution": {"subjectKeys": ["cust-a"]}},
            )
        )
        # Every event of the customer's subject carries n in 1..9; the grant is 1.5x the expected
        # usage, so exactly the 50% threshold is crossed, once, during the load.
        rng = random.Random(16)
        values = [[rng.randint(1, 9) for _ in range(EVENTS_PER_BATCH)] for _ in range(2 * BATCHES_PER_API)]
        expected_total = sum(n for batch in values for n in batch)
        expected_customer = sum(n for batch in values for i, n in enumerate(batch) if SUBJECTS[i % 3] == "cust-a")
        grant = expected_customer * 3 // 2
        entitlement = await _ok(
            await api2.post(
                f"/api/v2/customers/{customer}/entitlements",
                json={
                    "type": "metered",
                    "featureKey": feature,
                    "usagePeriod": {"interval": "MONTH"},
                    "issue": {"amount": grant},
                    "measureUsageFrom": "CURRENT_PERIOD_START",
                },
            )
        )
        channel = await _ok(
            await api1.post(
                "/api/v1/notification/channels",
                json={"type": "WEBHOOK", "name": unique("hook"), "url": receiver.url("/balance")},
            )
        )
        receiver.secrets["/balance"] = channel["signingSecret"]
        await _ok(
            await api2.post(
                "/api/v1/notification/rules",
                json={
                    "type": "entitlements.balance.threshold",
                    "name": unique("rule"),
                    "channels": [channel["id"]],
                    "features": [feature],
                    "thresholds": [
                        {"value": 50, "type": "usage_percentage"},
                        {"value": 90, "type": "usage_percentage"},
                    ],
                },
            )
        )
        # Every worker reports its loops alive on /healthz (what k8s/ probes).
        expected_loops = {
            "sink1": {"event-loop", "sink", "announcements"},
            "balance": {"event-loop", "balance", "balance-announcements"},
            "notify": {"event-loop", "notify"},
            "billing": {"event-loop"},
        }
        for name, loops in expected_loops.items():
            health = httpx.get(f"http://127.0.0.1:{procs[name].metrics_port}/healthz", timeout=5)
            assert health.status_code == 200, (name, health.text)
            assert loops <= set(health.json()["loops"]), (name, health.text)

        # A value before any usage, through each api (each caches it).
        for client in (api1, api2):
            value = await _ok(await client.get(f"/api/v2/customers/{customer}/entitlements/{feature}/value"), 200)
            assert value["usage"] == 0

        # Events happen now, after the entitlement and its grant exist.
        now = datetime.now(UTC)
        batches = [
            [cloudevent(event_type, SUBJECTS[i % 3], {"n": n}, time=now, id=f"b{b}-e{i}") for i, n in enumerate(batch)]
            for b, batch in enumerate(values)
        ]

        # Load through both api processes; a third of the way in, kill -9 one sink and one api.
        killed = asyncio.Event()

        async def load(first: httpx.AsyncClient, other: httpx.AsyncClient, mine: list[list[dict[str, Any]]]) -> None:
            for index, batch in enumerate(mine):
                if index == len(mine) // 3 and first is api1:
                    killed.set()
                await _ingest_until_acknowledged([first, other], batch)

        # The surviving sink takes every partition once the killed one's session expires; the
        # restarted sink then takes two back while events still flow (a trickle keeps them flowing),
        # so partitions change hands in the middle of flushes on every run.
        handed_back = asyncio.Event()
        trickle: list[list[dict[str, Any]]] = []

        async def crash_and_restart() -> None:
            await killed.wait()
            sink2_log, sink1_log = procs["sink2"].log_size(), procs["sink1"].log_size()
            procs["sink1"].kill()
            procs["api2"].kill()
            procs["api2"].launch()
            try:
                await wait_for(
                    lambda: _async("partitions=[0, 1, 2, 3]" in procs["sink2"].log_since(sink2_log)),
                    timeout=60,
                    interval=0.1,
                )
            except AssertionError as exc:
                # Seen once in a CI run, not reproduced since (nor under CPU load): what the surviving
                # sink and its consumer (aiokafka logs its group's heartbeats and rejoins there) did
                # since the kill, so the next failure says why the rebalance did not complete.
                raise AssertionError(
                    f"sink2 did not take every partition within 60 s of sink1's kill; its log since:\n"
                    f"{procs['sink2'].log_since(sink2_log)[-8000:]}"
                ) from exc
            procs["sink1"].launch()
            await wait_for(
                lambda: _async("sink partitions assigned" in procs["sink1"].log_since(sink1_log)),
                timeout=120,
                interval=0.1,
            )
            handed_back.set()
            await asyncio.to_thread(procs["sink1"].wait_ready, 120)
            await asyncio.to_thread(procs["api2"].wait_ready, 120)

        async def keep_flowing() -> None:
            await killed.wait()
            after = 0
            while after < 20:
                batch = [
                    cloudevent(event_type, "other-2", {"n": 1}, time=now, id=f"t{len(trickle)}-{i}") for i in range(10)
                ]
                await _ingest_until_acknowledged([api1, api2], batch)
                trickle.append(batch)
                after += handed_back.is_set()

        await asyncio.gather(
            load(api1, api2, batches[:BATCHES_PER_API]),
            load(api2, api1, batches[BATCHES_PER_API:]),
            crash_and_restart(),
            keep_flowing(),
        )
        expected_total += sum(len(batch) for batch in trickle)
        batches += trickle

        # Exact totals, through each api.
        async def totals_match() -> bool:
            rows = await query(api1, event_type, groupBy="subject")
            return sum(r["value"] for r in rows) == expected_total

        try:
            await wait_for(totals_match, timeout=120, interval=0.5)
        except AssertionError:
            raise AssertionError(await _account(procs["sink1"], endpoint, event_type, batches)) from None
        for client in (api1, api2):
            rows = await query(client, event_type, groupBy="subject")
            by_subject = {r["subject"]: r["value"] for r in rows}
            assert sum(by_subject.values()) == expected_total
            assert by_subject["cust-a"] == expected_customer

        # Entitlement values agree across processes (cached or not) and match the usage.
        async def value_of(client: httpx.AsyncClient) -> dict[str, Any]:
            return await _ok(await client.get(f"/api/v2/customers/{customer}/entitlements/{feature}/value"), 200)

        for client in (api1, api2):
            await wait_for(lambda c=client: _usage_is(value_of(c), expected_customer), timeout=30, interval=0.2)
            value = await value_of(client)
            assert value["usage"] == expected_customer
            assert value["balance"] == grant - expected_customer
            assert value["hasAccess"] is True

        # New usage through api2 reaches api1's cached value (announced by the sink that stored it).
        await value_of(api1)
        await _ingest_until_acknowledged([api2], [cloudevent(event_type, "cust-a", {"n": 7}, time=now, id="late-1")])
        await wait_for(lambda: _usage_is(value_of(api1), expected_customer + 7), timeout=30, interval=0.1)
        # A grant made through api1 reaches api2's cached value (announced by api1).
        await _ok(
            await api1.post(
                f"/api/v2/customers/{customer}/entitlements/{entitlement['id']}/grants",
                json={"amount": 10, "effectiveAt": now.isoformat().replace("+00:00", "Z")},
            )
        )

        async def granted() -> bool:
            return (await value_of(api2))["balance"] == grant + 10 - expected_customer - 7

        await wait_for(granted, timeout=30, interval=0.1)

        # The 50% threshold was delivered exactly once, signed; 90% was never reached.
        deliveries = await receiver.wait_for("/balance", 1, timeout=60)
        assert deliveries[0].verified
        assert deliveries[0].body["data"]["threshold"] == {"value": 50, "type": "usage_percentage"}

        # Drain: a last batch through each api, then SIGTERM every role, api first; sinks store
        # what the apis acknowledged before they go.
        final = [
            [cloudevent(event_type, "other-1", {"n": 1}, time=now, id=f"final-{a}-{i}") for i in range(20)]
            for a in (1, 2)
        ]
        await _ingest_until_acknowledged([api1], final[0])
        await _ingest_until_acknowledged([api2], final[1])
        assert procs["api1"].stop() == 0
        assert procs["api2"].stop() == 0
        with clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port) as ch:

            def stored() -> tuple[int, int]:
                rows = ch.query(
                    "SELECT count(), uniqExact(source, id) FROM events WHERE type = {t:String}",
                    parameters={"t": event_type},
                ).result_rows
                return int(rows[0][0]), int(rows[0][1])

            expected_events = sum(len(batch) for batch in batches) + 1 + 40
            await wait_for(lambda: _async(stored()[0] == expected_events), timeout=60, interval=0.5)
            for name in ("sink1", "sink2", "balance", "notify", "billing"):
                assert procs[name].stop() == 0, f"{name} did not stop cleanly:\n{procs[name].log_tail()}"
            count, distinct = stored()
            assert count == distinct == expected_events
        assert len([d for d in receiver.deliveries if d.path == "/balance"]) == 1
    finally:
        await receiver.stop()
        with contextlib.suppress(Exception):
            await api1.aclose()
            await api2.aclose()


async def _account(
    sink: TallyProcess, endpoint: ClickHouseHttp, event_type: str, batches: list[list[dict[str, Any]]]
) -> str:
    """Why the totals are not exact, per partition: what the broker holds and the sink group committed,
    which acknowledged events ClickHouse lacks or holds twice, and what the sink's key records say of
    the missing ones (claimed by a batch still pending, by a stored batch, or not at all)."""
    env = sink.env()
    topic, group = env["TALLY_KAFKA__TOPIC"], env["TALLY_SINK__CONSUMER_GROUP"]
    with clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port) as ch:
        rows = ch.query(
            "SELECT namespace, source, id, count() FROM events WHERE type = {t:String} GROUP BY namespace, source, id",
            parameters={"t": event_type},
        ).result_rows
    stored = {row[2]: int(row[3]) for row in rows}
    namespace, source = (rows[0][0], rows[0][1]) if rows else ("default", "tests")
    acknowledged = [event["id"] for batch in batches for event in batch]
    missing = [i for i in acknowledged if i not in stored]
    doubled = [i for i in acknowledged if stored.get(i, 0) > 1]

    def partition(event_id: str) -> int:
        return partition_for(Event(namespace, event_id, event_type, source, "", 0, "", 0), sink.partitions)

    consumer = AIOKafkaConsumer(bootstrap_servers=sink.kafka_brokers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(sink.partitions)]
        ends = await consumer.end_offsets(tps)
        committed = {tp.partition: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()
    connection = await asyncpg.connect(sink.postgres_url)
    try:
        claims = await connection.fetch(
            "SELECT b.state, b.owner, count(*) AS n FROM event_keys k LEFT JOIN sink_batches b ON b.id = k.batch_id"
            " WHERE k.key = ANY($1::bytea[]) GROUP BY 1, 2",
            [key_hash(source, i) for i in missing],
        )
    finally:
        await connection.close()
    lines = [f"stored {sum(stored.values())} rows of {len(acknowledged)} acknowledged events"]
    for tp in tps:
        lines.append(
            f"partition {tp.partition}: end offset {ends[tp]}, committed {committed[tp.partition]},"
            f" missing {sum(partition(i) == tp.partition for i in missing)},"
            f" doubled {sum(partition(i) == tp.partition for i in doubled)}"
        )
    lines.append(f"key records of the missing: {[dict(row) for row in claims]} (of {len(missing)})")
    return "\n".join(lines)


async def _usage_is(value: Any, expected: float) -> bool:
    return (await value)["usage"] == expected


async def _async(result: bool) -> bool:
    return result
