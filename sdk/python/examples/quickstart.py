"""Ingest a few usage events and query a meter through Tally's Python SDK.

    python sdk/python/examples/quickstart.py [--server 127.0.0.1:50051] [--api-key KEY]

Safe to run repeatedly: the events have fixed ids, and Tally drops duplicates of (source, id),
so the totals stay the same however often it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime

import tally_sdk

METER = "sdk_example_tokens"
# Its own event type: the README quickstart's meter counts "prompt" events, and this example must
# not change its numbers (nor be changed by them).
EVENT_TYPE = "sdk_example_prompt"
EVENTS = [
    # (id, subject, model, tokens)
    ("sdk-example-1", "customer-1", "gpt-4o", 100),
    ("sdk-example-2", "customer-1", "gpt-4o-mini", 20),
    ("sdk-example-3", "customer-2", "gpt-4o", 7),
]


async def main(server: str, api_key: str | None) -> None:
    async with tally_sdk.Client(server, api_key=api_key, timeout=10, source="sdk-example") as client:
        try:
            await client.get_meter(METER)
        except tally_sdk.NotFoundError:
            await client.create_meter(
                METER,
                aggregation="SUM",
                event_type=EVENT_TYPE,
                value_property="$.tokens",
                group_by={"model": "$.model"},
                description="Tokens per subject and model (SDK example)",
            )
            print(f"created meter {METER}")

        now = datetime.now(UTC)
        accepted = await client.ingest(
            tally_sdk.Event(id=id_, type=EVENT_TYPE, subject=subject, time=now, data={"model": model, "tokens": tokens})
            for id_, subject, model, tokens in EVENTS
        )
        print(f"ingested {accepted} events")

        # Usage counts once the sink has stored the events: at once on the embedded bus, after the
        # sink's flush interval on Kafka.
        expected = sum(tokens for *_, tokens in EVENTS)
        for _ in range(50):
            result = await client.query_meter(METER, group_by=["subject", "model"])
            if sum(row.value for row in result.data) >= expected:
                break
            await asyncio.sleep(0.2)
        for row in sorted(result.data, key=lambda r: (r.subject, r.group_by["model"])):
            print(f"{row.subject} {row.group_by['model']} {row.value:g}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("TALLY_SERVER", "127.0.0.1:50051"))
    parser.add_argument("--api-key", default=os.environ.get("TALLY_API_KEY"))
    args = parser.parse_args()
    asyncio.run(main(args.server, args.api_key))
