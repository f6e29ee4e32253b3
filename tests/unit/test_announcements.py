"""Announcements on the wire: every kind survives the Kafka encoding; unknown kinds are skipped."""

from __future__ import annotations

import orjson

from adapters.bus.announcements import LocalAnnouncements, decode, encode
from domain.announcements import Announcement, EntitiesChanged, EntitlementChanged, MetersChanged, UsageStored


def test_every_kind_round_trips_with_its_origin() -> None:
    kinds: list[Announcement] = [
        UsageStored(frozenset({("ns", "subject-1", "prompt"), ("ns2", "s", "t")})),
        EntitlementChanged("ns", "01ENTITLEMENT"),
        EntitiesChanged(),
        MetersChanged(),
    ]
    for announcement in kinds:
        assert decode(encode("origin-a", announcement)) == ("origin-a", announcement)


def test_a_kind_from_a_newer_peer_is_skipped() -> None:
    assert decode(orjson.dumps({"o": "x", "k": "something-new"})) == ("x", None)


async def test_local_announcements_reach_every_handler_despite_a_failing_one() -> None:
    seen: list[Announcement] = []
    local = LocalAnnouncements()

    async def failing(announcement: Announcement) -> None:
        raise RuntimeError("a handler's failure is its own")

    async def record(announcement: Announcement) -> None:
        seen.append(announcement)

    local.subscribe(failing)
    local.subscribe(record)
    await local.announce(MetersChanged())
    assert seen == [MetersChanged()]
