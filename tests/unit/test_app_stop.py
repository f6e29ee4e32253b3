"""App.stop: every stop step runs, in reverse order of start, even when one never finishes."""

from __future__ import annotations

import asyncio

import pytest

from server import app as app_module
from server.app import App
from server.config import Settings


async def test_a_stop_step_that_never_finishes_does_not_hold_up_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "_STOP_STEP_BOUND_S", 0.2)
    ran: list[str] = []
    release = asyncio.Event()

    async def hangs_and_ignores_cancellation() -> None:
        # Waits for ever (here: until the test ends), whatever is cancelled.
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    async def drains() -> None:
        ran.append("drains")

    def closes() -> None:
        ran.append("closes")

    async def fails() -> None:
        raise RuntimeError("the store is away")

    application = App(Settings())
    # Popped last-in first: fails, hangs, drains, closes.
    application._stack.extend([closes, drains, hangs_and_ignores_cancellation, fails])
    stopping = asyncio.ensure_future(application.stop())
    try:
        done, _ = await asyncio.wait({stopping}, timeout=10)
        assert done, "stop waited for the step that never finishes"
        assert ran == ["drains", "closes"]
        assert len(application.abandoned) == 1 and not application.abandoned[0].done()
    finally:
        release.set()  # lets the step end, so the test's event loop can close
        await stopping
        await asyncio.gather(*application.abandoned)
