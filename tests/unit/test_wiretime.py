"""`rfc3339` (domain/wiretime.py): how every time is written on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from domain.wiretime import rfc3339

BUDAPEST = ZoneInfo("Europe/Budapest")


def test_a_utc_time_ends_in_z() -> None:
    assert rfc3339(datetime(2026, 11, 1, tzinfo=UTC)) == "2026-11-01T00:00:00Z"


def test_an_aware_time_elsewhere_is_written_in_utc() -> None:
    at = datetime(2026, 11, 1, 2, 30, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(at) == "2026-11-01T00:30:00Z"
    assert rfc3339(datetime(2026, 7, 1, 0, 0, tzinfo=BUDAPEST)) == "2026-06-30T22:00:00Z"


def test_microseconds_are_kept_by_default_and_cut_by_timespec() -> None:
    at = datetime(2026, 11, 1, 0, 0, 5, 123456, tzinfo=UTC)
    assert rfc3339(at) == "2026-11-01T00:00:05.123456Z"
    assert rfc3339(at, timespec="milliseconds") == "2026-11-01T00:00:05.123Z"
    # Cut, never rounded up into the next second (Go's time.RFC3339 truncates too).
    assert rfc3339(at.replace(microsecond=999999), timespec="seconds") == "2026-11-01T00:00:05Z"


def test_whole_seconds_have_no_fraction_unless_asked() -> None:
    at = datetime(2026, 11, 1, tzinfo=UTC)
    assert rfc3339(at, timespec="milliseconds") == "2026-11-01T00:00:00.000Z"


def test_none_stays_none() -> None:
    assert rfc3339(None) is None
    assert rfc3339(None, timespec="seconds") is None


LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("at", "zone", "written"),
    [
        (datetime(2024, 1, 1, tzinfo=BUDAPEST), BUDAPEST, "2024-01-01T00:00:00+01:00"),
        (datetime(2024, 1, 1, tzinfo=UTC), BUDAPEST, "2024-01-01T01:00:00+01:00"),
        # A zone at UTC's offset is written "Z", as Go's time.RFC3339 writes it.
        (datetime(2024, 1, 1, tzinfo=UTC), LONDON, "2024-01-01T00:00:00Z"),
    ],
)
def test_a_zone_writes_its_offset_and_z_for_none(at: datetime, zone: ZoneInfo, written: str) -> None:
    assert rfc3339(at, timespec="seconds", zone=zone) == written
