"""The server's own purge job forgets deduplication keys by the configured window, and no sooner.

A Tally with a 2-day window stores two events, is stopped, and the keys of those events are aged
in Postgres (the clock moved, as far as the keys can tell): one 2 days and 1 hour old, one 2 days
less an hour. At the next start the job purges; re-sent, the first is a new event again (counted a
second time, as OpenMeter does past its window) and the second is still a duplicate. With the
default 35-day window, or a cutoff off by a day either way, one of the two comes out wrong. The
boundary to the microsecond is tests/integration/test_dedup_window.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from adapters.postgres.event_keys import key_hash
from tests.support.barrier import settle
from tests.support.metering import cloudevent, create_meter, ingest, query, unique
from tests.support.stack import TallyProcess, create_database, wait_for


async def test_the_purge_job_applies_the_configured_window(postgres_ready: None, tmp_path: Path) -> None:
    url = await create_database()
    stack = TallyProcess(
        data_dir=tmp_path / "tally", postgres_url=url, extra_env={"TALLY_SINK__DEDUP_WINDOW_DAYS": "2"}
    )
    await asyncio.to_thread(stack.start)
    event_type = unique("window")
    now = datetime.now(UTC) - timedelta(minutes=1)
    expired = cloudevent(event_type, "expired", time=now, id=unique("expired"))
    kept = cloudevent(event_type, "kept", time=now, id=unique("kept"))
    try:
        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            await create_meter(http, slug=event_type, eventType=event_type, aggregation="COUNT")
            await ingest(http, [expired, kept])
            await settle(http, partitions=stack.partitions)
        await asyncio.to_thread(stack.stop)

        connection = await asyncpg.connect(url)
        try:
            ages = {expired["id"]: timedelta(days=2, hours=1), kept["id"]: timedelta(days=2, hours=-1)}
            for event_id, age in ages.items():
                updated = await connection.execute(
                    "UPDATE event_keys SET created_at = now() - $2::interval WHERE namespace = 'default' AND key = $1",
                    key_hash("tests", event_id),
                    age,
                )
                assert updated == "UPDATE 1", updated

            await asyncio.to_thread(stack.start)

            async def purged() -> bool:
                left = await connection.fetchval(
                    "SELECT count(*) FROM event_keys WHERE key = $1", key_hash("tests", expired["id"])
                )
                return left == 0

            await wait_for(purged, timeout=60, interval=0.2)
            still = await connection.fetchval(
                "SELECT count(*) FROM event_keys WHERE key = $1", key_hash("tests", kept["id"])
            )
            assert still == 1, "a key inside the window was purged"
        finally:
            await connection.close()

        async with httpx.AsyncClient(base_url=stack.rest_url, timeout=30) as http:
            await ingest(http, [expired, kept])
            await settle(http, partitions=stack.partitions)
            rows = await query(http, event_type, groupBy="subject")
            assert {row["subject"]: row["value"] for row in rows} == {"expired": 2, "kept": 1}
    finally:
        await asyncio.to_thread(stack.stop)
