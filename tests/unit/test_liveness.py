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
    port = free_port()
    server = serve("127.0.0.1", port)
    try:
        LIVENESS.register("test-loop", 60)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        LIVENESS.register("test-loop", 0.01)
        time.sleep(0.05)
        stalled = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert stalled.status_code == 503
        assert stalled.json()["loops"]["test-loop"]["alive"] is False
        assert "tally_rpc_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        LIVENESS.unregister("test-loop")
        server.shutdown()
