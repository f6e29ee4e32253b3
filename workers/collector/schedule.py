"""When pull sources run: ticks of an interval aligned to the Unix epoch, or of a cron expression (UTC).

Ticks are a pure function of the schedule, never of when the process started: every replica and
every restart computes the same windows, so the same window yields the same event ids.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from croniter import croniter

from workers.collector.config import Schedule

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Ticks:
    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def at_or_before(self, moment: datetime) -> datetime:
        if self.schedule.interval is not None:
            step = self.schedule.interval
            seconds = (moment - _EPOCH).total_seconds()
            return _EPOCH + timedelta(seconds=math.floor(seconds / step) * step)
        assert self.schedule.cron is not None
        # get_prev is strictly before its start: start a microsecond later so a tick at `moment` counts.
        result: datetime = croniter(self.schedule.cron, moment + timedelta(microseconds=1)).get_prev(datetime)
        return result.astimezone(UTC).replace(fold=0)

    def after(self, moment: datetime) -> datetime:
        if self.schedule.interval is not None:
            return self.at_or_before(moment) + timedelta(seconds=self.schedule.interval)
        assert self.schedule.cron is not None
        result: datetime = croniter(self.schedule.cron, moment).get_next(datetime)
        return result.astimezone(UTC).replace(fold=0)

    def before(self, tick: datetime) -> datetime:
        """The tick preceding `tick` (the start of the window that `tick` ends)."""
        if self.schedule.interval is not None:
            return tick - timedelta(seconds=self.schedule.interval)
        assert self.schedule.cron is not None
        result: datetime = croniter(self.schedule.cron, tick).get_prev(datetime)
        return result.astimezone(UTC).replace(fold=0)

    def between(self, after: datetime, until: datetime, limit: int) -> tuple[list[datetime], int]:
        """Ticks in (after, until], the newest `limit` of them, and how many older ones were left out."""
        ticks: list[datetime] = []
        skipped = 0
        tick = until
        while tick > after:
            if len(ticks) < limit:
                ticks.append(tick)
            else:
                skipped += 1
                if skipped > 100_000:  # a cursor from long ago: stop counting
                    break
            tick = self.before(tick)
        ticks.reverse()
        return ticks, skipped
