"""The meter value backfill worker: a meter whose backfill fails does not hold back the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.metering.models import VALUES_BACKFILLED, Aggregation, Meter
from workers.backfill import BackfillWorker

CHANGED = datetime(2026, 1, 1, tzinfo=UTC)


def meter(slug: str, minutes_ago: int) -> Meter:
    changed = CHANGED - timedelta(minutes=minutes_ago)
    return Meter(
        id=slug, namespace="ns", slug=slug, name=slug, description=None, aggregation=Aggregation.SUM,
        event_type=slug, event_from=None, value_property="$.v", group_by={}, metadata={}, annotations={},
        created_at=changed, updated_at=changed,
    )  # fmt: skip


class Meters:
    def __init__(self, meters: list[Meter]) -> None:
        self.meters = meters
        self.marked: list[str] = []

    async def list_all_live(self) -> list[Meter]:
        return [m for m in self.meters if not m.annotations.get(VALUES_BACKFILLED)]

    async def mark_backfilled(self, m: Meter) -> bool:
        self.marked.append(m.slug)
        m.annotations[VALUES_BACKFILLED] = True
        return True


class Store:
    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.tried: list[str] = []

    async def backfill_values(self, m: Meter) -> bool:
        self.tried.append(m.slug)
        if m.slug in self.failing:
            raise RuntimeError(f"mutation for {m.slug} failed")
        return True


async def test_a_failing_meter_does_not_hold_back_the_others_and_the_oldest_goes_first() -> None:
    meters = Meters([meter("newest", 1), meter("broken", 30), meter("oldest", 60)])
    store = Store(failing={"broken"})
    worker = BackfillWorker(meters, store, delay=timedelta(0), interval_seconds=1)  # type: ignore[arg-type]

    assert await worker.run_once() == 2
    assert store.tried == ["oldest", "broken", "newest"]
    assert meters.marked == ["oldest", "newest"]

    store.failing.clear()  # the next pass retries only what is left
    assert await worker.run_once() == 1
    assert meters.marked == ["oldest", "newest", "broken"]
