"""Worker liveness (/healthz): alive while every registered loop beats within its maximum age."""

from __future__ import annotations

import time

import httpx

from adapters.metrics import LIVENESS, Liveness, serve
from tests.support.services import free_port


def test_a_loop_that_stops_beating_is_reported_stalled() -> None:
    liveness = Liveness()
    liveness.register("quick", 0.05)
    liveness.register("slow", 60)
    assert liveness.report()[0]
    time.sleep(0.1)
    ok, loops = liveness.report()
    assert not ok
    assert loops["quick"]["alive"] is False and loops["slow"]["alive"] is True
    liveness.beat("quick")
    assert liveness.report()[0]
    liveness.unregister("quick")
    assert set(liveness.report()[1]) == {"slow"}


def test_healthz_and_metrics_are_served() -> None:
    # A registry of its own: loops of other tests in this process must not decide this test's answer.
    liveness = Liveness()
    port = free_port()
    server = serve("127.0.0.1", port, liveness)
    try:
        liveness.register("test-loop", 60)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        liveness.register("test-loop", 0.01)
        time.sleep(0.05)
        stalled = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert stalled.status_code == 503
        assert stalled.json()["loops"]["test-loop"]["alive"] is False
        assert "tally_rpc_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        server.shutdown()


def test_a_loop_that_ended_is_no_longer_watched() -> None:
    """A stopped worker's loop leaves the registry: /healthz of a process that stopped one app and
    runs another (as tests and `tally serve` reloads do) does not report the old loop stalled."""
    with LIVENESS.watching("ended-loop", 0.01):
        assert "ended-loop" in LIVENESS.report()[1]
    time.sleep(0.02)
    assert "ended-loop" not in LIVENESS.report()[1]
