"""The collector's pipeline pieces on their own: mapping, ticks, the SQLite buffer (kill -9 included)
and leader election by file lock."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.collectors.records import BufferFullError, Record, json_number
from tests.support.services import ROOT
from workers.collector.buffer import Buffer
from workers.collector.config import Mapping, Schedule
from workers.collector.leader import FileLock, lead
from workers.collector.mapping import Mapper, MappingError, event_id
from workers.collector.schedule import Ticks

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def record(**values: object) -> Record:
    return Record(values=dict(values), key="k1", window="2025-03-01T12:00:00.000Z", time=T0)


def mapper(**fields: object) -> Mapper:
    base: dict[str, object] = {"type": "gpu", "subject": "metric.customer", "data": {"value": "value"}}
    return Mapper("gpus", Mapping.model_validate(base | fields))


def test_mapping_builds_a_cloudevent_with_a_deterministic_id() -> None:
    event = mapper().map(record(metric={"customer": "acme"}, value=1.5))
    assert event == {
        "specversion": "1.0",
        "id": event_id("gpus", "k1", "2025-03-01T12:00:00.000Z"),
        "source": "collector/gpus",
        "type": "gpu",
        "subject": "acme",
        "time": "2025-03-01T12:00:00.000Z",
        "data": {"value": 1.5},
    }
    # Same source, object and window: the same id, whatever the values; any change of the three: another.
    again = mapper().map(record(metric={"customer": "acme"}, value=99))
    assert again["id"] == event["id"]
    ids = {event_id("gpus", "k1", "w1"), event_id("gpus", "k2", "w1"), event_id("gpus", "k1", "w2")}
    assert len(ids | {event_id("cpus", "k1", "w1")}) == 4


def test_mapping_expressions_key_time_filter_and_source() -> None:
    m = mapper(
        key="metric.pod",
        time="at",
        filter="value > `0`",
        source="my-cluster",
        data={"value": "value", "pod": "metric.pod", "labels": "metric"},
    )
    values = {"metric": {"customer": "acme", "pod": "p1"}, "value": 2, "at": "2025-03-01T11:59:00Z"}
    event = m.map(record(**values))
    assert event["id"] == event_id("gpus", "p1", "2025-03-01T12:00:00.000Z")
    assert event["time"] == "2025-03-01T11:59:00.000Z"
    assert event["source"] == "my-cluster"
    assert event["data"] == {"value": 2, "pod": "p1", "labels": {"customer": "acme", "pod": "p1"}}
    assert m.accepts(record(**values))
    assert not m.accepts(record(**(values | {"value": 0})))


def test_mapping_refuses_what_tally_would_refuse() -> None:
    with pytest.raises(MappingError, match="subject"):
        mapper().map(record(metric={}, value=1))
    with pytest.raises(MappingError, match="time"):
        mapper(time="'yesterday'").map(record(metric={"customer": "a"}, value=1))
    with pytest.raises(MappingError, match="time"):
        mapper(time="`4102444800`").map(record(metric={"customer": "a"}, value=1))  # 2100: past Tally's range
    # A number as subject is accepted as its text.
    assert mapper().map(record(metric={"customer": 42}, value=1))["subject"] == "42"


def test_json_number_keeps_every_digit() -> None:
    assert json_number(Decimal("0.500")) == 0.5
    assert json_number(Decimal("1.29E+8")) == 129_000_000
    assert json_number(Decimal("0.1")) == 0.1
    assert json_number(Decimal("0.12345678901234567890123")) == "0.12345678901234567890123"
    assert json_number(Decimal("2147483648")) == 2_147_483_648


def test_interval_ticks_are_aligned_to_the_clock() -> None:
    ticks = Ticks(Schedule(interval=300))
    assert ticks.at_or_before(T0 + timedelta(minutes=3)) == T0
    assert ticks.at_or_before(T0) == T0
    assert ticks.after(T0) == T0 + timedelta(minutes=5)
    assert ticks.before(T0) == T0 - timedelta(minutes=5)
    done, skipped = ticks.between(T0 - timedelta(minutes=30), T0, limit=3)
    assert done == [T0 - timedelta(minutes=10), T0 - timedelta(minutes=5), T0]
    assert skipped == 3


def test_cron_ticks() -> None:
    ticks = Ticks(Schedule(cron="0 * * * *"))
    assert ticks.at_or_before(T0 + timedelta(minutes=59)) == T0
    assert ticks.at_or_before(T0) == T0
    assert ticks.after(T0) == T0 + timedelta(hours=1)
    assert ticks.before(T0) == T0 - timedelta(hours=1)
    assert ticks.between(T0 - timedelta(hours=1), T0 + timedelta(hours=1), 10) == (
        [T0, T0 + timedelta(hours=1)],
        0,
    )


def test_a_six_field_cron_has_seconds_first_as_in_openmeter() -> None:
    # OpenMeter's prometheus input defaults to "0 * * * * *" (second 0 of every minute, Go's cron
    # with seconds first). Read with the seconds last it ticked every second of minute 0 of each
    # hour: 60 runs of an increase(...[1m]) query per hour over the same minute, the other 59 none.
    ticks = Ticks(Schedule(cron="0 * * * * *"))
    assert ticks.after(T0) == T0 + timedelta(minutes=1)
    assert ticks.before(T0) == T0 - timedelta(minutes=1)
    assert Ticks(Schedule(cron="30 */5 * * * *")).after(T0) == T0 + timedelta(seconds=30)
    assert Ticks(Schedule(cron="30 */5 * * * *")).after(T0 + timedelta(seconds=30)) == T0 + timedelta(
        minutes=5, seconds=30
    )
    with pytest.raises(ValueError, match="6 fields seconds first"):
        Schedule(cron="0 0 * * * * 2025")


def event(n: int, source: str = "s") -> dict[str, object]:
    return {"id": f"e{n}", "source": source, "type": "t", "subject": "x", "data": {"n": n}}


async def test_buffer_keeps_events_until_acknowledged(tmp_path: Path) -> None:
    buffer = Buffer(tmp_path / "b.db", max_events=5)
    assert await buffer.put([event(1), event(2), event(1)], cursor=("src", "c1")) == 2
    assert await buffer.put([event(2), event(3)]) == 1  # (source, id) is kept once
    assert await buffer.put([event(2, source="other")]) == 1
    assert buffer.pending == 4
    taken = await buffer.take(10)
    assert [item.event["id"] for item in taken] == ["e1", "e2", "e3", "e2"]
    await buffer.ack([taken[0].seq, taken[1].seq])
    await buffer.dead_letter(taken[2].seq, "refused")
    assert buffer.pending == 1
    assert await buffer.cursor("src") == "c1"
    with pytest.raises(BufferFullError):
        await buffer.put([event(n) for n in range(10, 15)])
    buffer.close()
    reopened = Buffer(tmp_path / "b.db")
    assert [item.event["source"] for item in await reopened.take(10)] == ["other"]
    assert [(e["id"], reason) for e, reason in reopened.dead_letters_sync()] == [("e3", "refused")]
    reopened.close()


async def test_concurrent_puts_commit_together_and_only_an_overflowing_one_fails(tmp_path: Path) -> None:
    buffer = Buffer(tmp_path / "b.db", max_events=100)
    puts = [buffer.put([event(n * 10 + i) for i in range(10)], cursor=(f"src{n}", str(n))) for n in range(9)]
    puts.append(buffer.put([event(1000 + i) for i in range(20)]))  # 90 + 20 > 100: refused
    results = await asyncio.gather(*puts, return_exceptions=True)
    assert results[:9] == [10] * 9
    assert isinstance(results[9], BufferFullError)
    assert buffer.pending == 90
    assert [await buffer.cursor(f"src{n}") for n in range(9)] == [str(n) for n in range(9)]
    assert await buffer.put([event(5)]) == 0  # already there
    buffer.close()


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from workers.collector.buffer import Buffer

    buffer = Buffer(Path(sys.argv[1]))
    n = 0
    while True:
        batch = [{"id": f"e{n + i}", "source": "s", "type": "t", "subject": "x"} for i in range(50)]
        buffer.put_sync(batch, cursor=("src", str(n + 49)))
        n += 50
        print(n, flush=True)  # acknowledged to the "source" only after the commit
    """
)


def test_buffer_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert process.stdout is not None
    acknowledged = 0
    for line in process.stdout:
        acknowledged = int(line)
        if acknowledged >= 2000:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    buffer = Buffer(path)
    stored = buffer.take_sync(1_000_000)
    ids = [int(item.event["id"][1:]) for item in stored]
    # Everything acknowledged is there, in order, once; what followed is there whole or not at all.
    assert ids == list(range(len(ids))) and len(ids) >= acknowledged and len(ids) % 50 == 0
    assert buffer.cursor_sync("src") == str(len(ids) - 1)
    buffer.close()


async def test_file_lock_elects_one_leader_and_hands_over(tmp_path: Path) -> None:
    path = tmp_path / "leader.lock"
    first, second = FileLock(path), FileLock(path)
    assert await first.try_acquire()
    assert await first.try_acquire()
    assert not await second.try_acquire()
    await first.release()
    assert await second.try_acquire()
    await second.release()

    log: list[str] = []

    async def started(name: str) -> None:
        log.append(f"start {name}")

    async def stopped(name: str) -> None:
        log.append(f"stop {name}")

    a = asyncio.create_task(lead(FileLock(path), 0.05, 1, lambda: started("a"), lambda: stopped("a")))
    await asyncio.sleep(0.2)
    b = asyncio.create_task(lead(FileLock(path), 0.05, 1, lambda: started("b"), lambda: stopped("b")))
    await asyncio.sleep(0.2)
    assert log == ["start a"]
    a.cancel()
    await asyncio.gather(a, return_exceptions=True)
    for _ in range(100):
        if "start b" in log:
            break
        await asyncio.sleep(0.05)
    b.cancel()
    await asyncio.gather(b, return_exceptions=True)
    assert log == ["start a", "stop a", "start b", "stop b"]


@pytest.mark.parametrize("schedule", [{"interval": "5m"}, {"cron": "*/5 * * * *"}])
async def test_a_schedule_change_never_meters_a_span_twice(
    tmp_path: Path, schedule: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.collectors.kubernetes import Selection, records
    from workers.collector import runner
    from workers.collector.config import CollectorConfig

    config = CollectorConfig.model_validate(
        {
            "sink": {"url": "grpc://127.0.0.1:1"},
            "buffer": {"path": str(tmp_path / "buffer.db")},
            "leader": {"mode": "none"},
            "metrics": {"listen": None},
            "sources": [
                {"name": "pods", "type": "kubernetes", "schedule": schedule, "mapping": {"type": "t", "subject": "s"}}
            ],
        }
    )

    class Clock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> Clock:
            return cls(2025, 3, 1, 12, 5, 10, tzinfo=UTC)

    class Source:
        name = "pods"
        windows: list[tuple[datetime, datetime]] = []

        async def collect(self, start: datetime, end: datetime) -> list[Record]:
            self.windows.append((start, end))
            return []

        async def close(self) -> None:
            return None

    monkeypatch.setattr(runner, "datetime", Clock)
    collector = runner.Collector(config)
    source = Source()
    try:
        # The source ran every minute until 12:03 (its cursor); then its schedule became 5 minutes.
        await collector.buffer.put([], cursor=("pods", "2025-03-01T12:03:00.000Z"))
        task = asyncio.create_task(collector.run_pull(source, Ticks(config.sources[0].schedule), 60))  # type: ignore[union-attr]
        while not source.windows:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert source.windows == [(T0 + timedelta(minutes=3), T0 + timedelta(minutes=5))]
        # A pod running all along: 11:59 to 12:05 is six minutes of run time, not eight.
        pod = {
            "metadata": {"uid": "u1", "name": "p", "namespace": "n"},
            "spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": "Running", "startTime": "2025-03-01T11:00:00Z"},
        }
        every_minute = [(T0 + timedelta(minutes=m - 1), T0 + timedelta(minutes=m)) for m in range(4)]
        windows = every_minute + source.windows
        metered = [r for start, end in windows for r in records([pod], Selection(), start, end)]
        assert sum(r.values["cpu_request_core_seconds"] for r in metered) == 360
    finally:
        await collector.close()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"time": "at"}, "time"),  # epoch milliseconds where seconds are expected: year 56971
        ({"data": {"value": "value", "n": "abs(n)"}}, "data.n"),  # a function given null
        ({"filter": "abs(n) > `0`"}, "filter"),
    ],
)
async def test_a_record_the_mapping_cannot_evaluate_is_refused_alone(
    tmp_path: Path, fields: dict[str, object], field: str
) -> None:
    # It raised out of intake: the window's other records were not buffered, and a pull source
    # retried the window forever, metering nothing more for anyone.
    from workers.collector.config import CollectorConfig
    from workers.collector.runner import Collector

    config = CollectorConfig.model_validate(
        {
            "sink": {"url": "grpc://127.0.0.1:1"},
            "buffer": {"path": str(tmp_path / "buffer.db")},
            "leader": {"mode": "none"},
            "metrics": {"listen": None},
            "sources": [{"name": "logs", "type": "otel_logs", "mapping": {"type": "t", "subject": "s"}}],
        }
    )
    collector = Collector(config)
    try:
        good = Record(values={"s": "acme", "at": 1740830400, "n": 2, "value": 1}, key="good", window="w", time=T0)
        bad = Record(values={"s": "acme", "at": 1740830400000, "n": None, "value": 1}, key="bad", window="w", time=T0)
        refused, reason = await collector.intake(mapper(subject="s", **fields), [good, bad], cursor=("gpus", "c"))
        assert refused == 1 and reason.startswith(f"{field}: ")
        assert [e.event["id"] for e in await collector.buffer.take(10)] == [event_id("gpus", "good", "w")]
        assert await collector.buffer.cursor("gpus") == "c"
    finally:
        await collector.close()


def test_a_filter_keeps_a_zero_as_jmespath_does() -> None:
    # JMESPath's false values are false, null and empty strings, lists and objects; 0 is true. A
    # reading of 0 was dropped, so a LATEST or COUNT meter kept showing the value before it.
    m = mapper(filter="value")
    assert [m.accepts(record(value=v)) for v in (0, 0.0, 1, "x")] == [True, True, True, True]
    assert [m.accepts(record(value=v)) for v in (False, None, "", [], {})] == [False] * 5
    assert [e["data"]["value"] for e in [m.map(record(metric={"customer": "acme"}, value=0))]] == [0]
