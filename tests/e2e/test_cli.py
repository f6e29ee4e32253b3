"""The `tally` CLI as a user runs it: a subprocess against a running Tally over gRPC."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from tally.v1 import events_pb2, events_pb2_grpc
from tests.support.barrier import markers, wait_listed
from tests.support.services import ROOT
from tests.support.stack import TallyProcess

# The same entry point as the `tally` console script.
TALLY = [sys.executable, "-m", "server.cli"]


def cli_env(tally: TallyProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env["TALLY_SERVER"] = tally.grpc_target
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    return env


def tally_cli(
    tally: TallyProcess, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*TALLY, *args], cwd=ROOT, env=cli_env(tally), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def create_count_meter(tally: TallyProcess, tmp_path: Path, event_type: str) -> str:
    slug = unique("cli_count")
    meter_file = tmp_path / f"{slug}.yaml"
    meter_file.write_text(f"slug: {slug}\neventType: {event_type}\naggregation: COUNT\ngroupBy:\n  region: $.region\n")
    out = tally_cli(tally, "meters", "create", "-f", str(meter_file)).stdout
    assert f"created {slug}" in out
    return slug


def total(tally: TallyProcess, slug: str) -> float:
    out = tally_cli(tally, "meters", "query", slug, "--csv").stdout
    return sum(float(row["value"]) for row in csv.DictReader(io.StringIO(out)))


def wait_total(tally: TallyProcess, slug: str, expected: float, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    value = total(tally, slug)
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.3)
        value = total(tally, slug)
    return value


def settle_cli(tally: TallyProcess, tmp_path: Path) -> None:
    """The barrier (tests/support/barrier.py) on the CLI's own path: the markers go in with
    `tally events import`, after everything the test sent before them."""
    sent = markers(tally.partitions)
    path = tmp_path / f"{sent.subject}.ndjson"
    path.write_text("".join(json.dumps(event) + "\n" for event in sent.cloudevents()))
    tally_cli(tally, "events", "import", str(path), "--no-progress")

    async def wait() -> None:
        async with grpc.aio.insecure_channel(tally.grpc_target) as channel:
            stub = events_pb2_grpc.EventServiceStub(channel)

            async def count(subject: str) -> int:
                return len((await stub.ListEvents(events_pb2.ListEventsRequest(subject=subject))).items)

            await wait_listed(count, sent)

    asyncio.run(wait())


def test_help_everywhere() -> None:
    for args in ([], ["meters"], ["meters", "query"], ["events"], ["events", "import"], ["events", "tail"], ["serve"]):
        result = subprocess.run([*TALLY, *args, "--help"], cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage" in result.stdout


def test_meters_create_list_query(tally: TallyProcess, tmp_path: Path) -> None:
    event_type = unique("cli_tokens")
    slug = unique("cli_sum")
    (tmp_path / "meters.yaml").write_text(
        f"meters:\n  - slug: {slug}\n    eventType: {event_type}\n    aggregation: SUM\n"
        "    valueProperty: $.tokens\n    groupBy:\n      model: $.model\n"
    )
    tally_cli(tally, "meters", "create", "-f", str(tmp_path / "meters.yaml"))
    again = tally_cli(tally, "meters", "create", "-f", str(tmp_path / "meters.yaml"), check=False)
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert (
        "exists" in tally_cli(tally, "meters", "create", "-f", str(tmp_path / "meters.yaml"), "--skip-existing").stdout
    )
    assert slug in tally_cli(tally, "meters", "list").stdout
    listed = [json.loads(line) for line in tally_cli(tally, "meters", "list", "--json").stdout.splitlines()]
    assert any(m["slug"] == slug and m["aggregation"] == "SUM" for m in listed)

    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    events = tmp_path / "events.csv"
    events.write_text(
        "id,type,subject,time,model,tokens\n"
        f"a,{event_type},customer-1,{(day + timedelta(hours=1)).isoformat()},gpt-4o,10\n"
        f"b,{event_type},customer-1,{(day + timedelta(hours=2)).isoformat()},gpt-4o-mini,5\n"
        f'c,{event_type},customer-2,{(day + timedelta(hours=25)).isoformat()},"gpt-4o",1.5\n'
    )
    assert "imported 3 events" in tally_cli(tally, "events", "import", str(events)).stdout

    window = ["--from", day.isoformat(), "--to", (day + timedelta(days=2)).isoformat()]
    assert wait_total(tally, slug, 16.5) == 16.5
    daily = tally_cli(tally, "meters", "query", slug, *window, "-w", "day", "-g", "model", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(daily)))
    assert {(r["window_start"][:10], r["model"], float(r["value"])) for r in rows} == {
        (day.date().isoformat(), "gpt-4o", 10.0),
        (day.date().isoformat(), "gpt-4o-mini", 5.0),
        ((day + timedelta(days=1)).date().isoformat(), "gpt-4o", 1.5),
    }
    table = tally_cli(
        tally, "meters", "query", slug, *window, "--subject", "customer-1", "--where", "model=gpt-4o"
    ).stdout
    assert "customer-1" in table and " 10" in table and "customer-2" not in table


def test_user_mistakes_are_one_line_errors(tally: TallyProcess, tmp_path: Path) -> None:
    cases = [
        (["meters", "query", "no_such_meter"], "not found"),
        (["meters", "query", "x", "--from", "yesterday"], "not a time"),
        (["meters", "query", "x", "-w", "WEEK"], "--window-size"),
        (["meters", "create", "-f", str(tmp_path / "missing.yaml")], "No such file"),
        (["events", "import", str(tmp_path / "missing.ndjson")], "no such file"),
        (["meters", "list", "--server", "127.0.0.1:1"], "cannot reach Tally at 127.0.0.1:1"),
    ]
    (tmp_path / "bad.yaml").write_text("slug: Bad Slug\neventType: x\naggregation: MEDIAN\n")
    cases.append((["meters", "create", "-f", str(tmp_path / "bad.yaml")], "aggregation: must be one of"))
    (tmp_path / "bad.ndjson").write_text('{"type": "x", "subject": "s"}\n{"type": "x"}\n')
    cases.append((["events", "import", str(tmp_path / "bad.ndjson")], "bad.ndjson:2: event is missing subject"))
    for args, message in cases:
        result = tally_cli(tally, *args, check=False)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, args


def write_ndjson(path: Path, count: int, event_type: str) -> None:
    start = datetime.now(UTC) - timedelta(hours=2)
    with path.open("w") as f:
        for n in range(count):
            event = {
                "id": f"evt-{n}",
                "source": "backfill",
                "type": event_type,
                "subject": f"customer-{n % 50}",
                "time": (start + timedelta(milliseconds=n)).isoformat(),
                "data": {"region": "eu" if n % 3 else "us"},
            }
            f.write(json.dumps(event) + "\n")


def test_import_resumes_after_kill_without_double_counting(tally: TallyProcess, tmp_path: Path) -> None:
    event_type = unique("cli_backfill")
    slug = create_count_meter(tally, tmp_path, event_type)
    events = tmp_path / "backfill.ndjson"
    count = 30_000
    write_ndjson(events, count, event_type)
    checkpoint = tmp_path / "backfill.ndjson.tally-checkpoint"

    process = subprocess.Popen(
        [*TALLY, "events", "import", str(events), "--batch-size", "250"],
        cwd=ROOT,
        env=cli_env(tally),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    done_at_kill = 0
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists():
            done_at_kill = json.loads(checkpoint.read_text())["events"]
            if done_at_kill >= 2_000:
                break
        time.sleep(0.01)
    assert process.poll() is None, "the import finished before it could be interrupted; use more events"
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = json.loads(checkpoint.read_text())
    assert not state["completed"] and 0 < state["events"] < count
    assert state["events"] % 250 == 0

    resumed = tally_cli(tally, "events", "import", str(events), "--batch-size", "250")
    assert f"resuming {events} at line {state['line'] + 1}" in resumed.stderr
    assert f"imported {count - state['events']} events" in resumed.stdout
    assert json.loads(checkpoint.read_text()) | {"completed": True} == json.loads(checkpoint.read_text())

    settle_cli(tally, tmp_path)
    assert total(tally, slug) == count
    by_region = tally_cli(tally, "meters", "query", slug, "-g", "region", "--csv").stdout
    assert {r["region"]: float(r["value"]) for r in csv.DictReader(io.StringIO(by_region))} == {
        "us": float(len(range(0, count, 3))),
        "eu": float(count - len(range(0, count, 3))),
    }

    again = tally_cli(tally, "events", "import", str(events))
    assert "already imported" in again.stdout
    # A restart sends everything again; the server's deduplication keeps the count exact.
    tally_cli(tally, "events", "import", str(events), "--restart", "--no-progress")
    settle_cli(tally, tmp_path)
    assert total(tally, slug) == count


def test_import_of_changed_file_asks_for_restart(tally: TallyProcess, tmp_path: Path) -> None:
    events = tmp_path / "small.ndjson"
    write_ndjson(events, 10, unique("cli_small"))
    tally_cli(tally, "events", "import", str(events))
    write_ndjson(events, 5, unique("cli_other"))
    result = tally_cli(tally, "events", "import", str(events), check=False)
    assert result.returncode == 1 and "changed since checkpoint" in result.stderr and "--restart" in result.stderr


def test_events_tail_prints_new_events(tally: TallyProcess, tmp_path: Path) -> None:
    event_type = unique("cli_tail")
    process = subprocess.Popen(
        [*TALLY, "events", "tail", "--type", event_type, "--interval", "0.2", "--json", "-n", "0"],
        cwd=ROOT,
        env=cli_env(tally),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)
        events = tmp_path / "tail.ndjson"
        events.write_text(
            "".join(
                json.dumps({"id": f"t{n}", "type": event_type, "subject": "tailer", "data": {"n": n}}) + "\n"
                for n in range(3)
            )
        )
        tally_cli(tally, "events", "import", str(events))
        assert process.stdout is not None
        buffer = b""
        deadline = time.monotonic() + 30
        while buffer.count(b"\n") < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            if ready:
                buffer += os.read(process.stdout.fileno(), 65536)
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
        seen = [json.loads(line) for line in buffer.splitlines()]
        assert sorted(e["id"] for e in seen) == ["t0", "t1", "t2"]
        assert all(e["type"] == event_type and e["subject"] == "tailer" for e in seen)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
