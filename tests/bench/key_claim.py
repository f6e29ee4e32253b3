"""Postgres's CPU per key of the sink's key claim, on scratch tables shaped like `event_keys`.

`.venv/bin/python -m tests.bench.key_claim` creates `bench_claim_keys` in the `postgres` database on
127.0.0.1:5432, fills it with 200,000 keys, then claims 100 batches of 1,000 fresh keys per variant
and reads the server backend's CPU time (psutil, the backend's pid): the claim's statement as the
sink runs it (adapters/postgres/event_keys.py, without the batch row), the same without RETURNING,
without the secondary indexes, and a plain INSERT without conflict handling (a reference only: it
cannot deduplicate).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime

import asyncpg
import psutil

URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CLAIM = (
    "WITH k AS (INSERT INTO bench_claim_keys SELECT ns, key, $1, $2 "
    "FROM unnest($3::text[], $4::bytea[]) q(ns, key) ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM k"
)
BOTH_INDEXES = ("batch_id", "created_at")
# name: (statement, secondary indexes besides the primary key)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "claim as the sink does (unnest, ON CONFLICT DO NOTHING RETURNING 1, count)": (CLAIM, BOTH_INDEXES),
    "the same without RETURNING (row count)": (
        "INSERT INTO bench_claim_keys SELECT ns, key, $1, $2 FROM unnest($3::text[], $4::bytea[]) q(ns, key) "
        "ON CONFLICT DO NOTHING",
        BOTH_INDEXES,
    ),
    "the claim without the created_at index": (CLAIM, ("batch_id",)),
    "the claim with the primary key only": (CLAIM, ()),
    "plain INSERT, no conflict handling (reference)": (
        "INSERT INTO bench_claim_keys SELECT ns, key, $1, $2 FROM unnest($3::text[], $4::bytea[]) q(ns, key)",
        BOTH_INDEXES,
    ),
}


async def main() -> None:
    connection = await asyncpg.connect(URL)
    backend = psutil.Process(await connection.fetchval("SELECT pg_backend_pid()"))
    try:
        for name, (sql, indexes) in VARIANTS.items():
            await connection.execute("DROP TABLE IF EXISTS bench_claim_keys")
            await connection.execute(
                "CREATE TABLE bench_claim_keys (namespace text, key bytea, batch_id bigint NOT NULL, "
                "created_at timestamptz NOT NULL, PRIMARY KEY (namespace, key))"
            )
            for column in indexes:  # names from the fixed list above, never input
                await connection.execute(f"CREATE INDEX ON bench_claim_keys ({column})")
            for batch in range(200):
                keys = [secrets.token_bytes(16) for _ in range(1000)]
                await connection.execute(
                    "INSERT INTO bench_claim_keys SELECT 'default', k, $1, now() FROM unnest($2::bytea[]) k",
                    batch,
                    keys,
                )
            cpu = sum(backend.cpu_times()[:2])
            started = time.perf_counter()
            for batch in range(100):
                args = (batch, datetime.now(UTC), ["default"] * 1000, [secrets.token_bytes(16) for _ in range(1000)])
                await connection.execute(sql, *args)
            cpu = sum(backend.cpu_times()[:2]) - cpu
            elapsed = time.perf_counter() - started
            print(f"{name}: {cpu / 100_000 * 1e6:.1f} µs of Postgres CPU per key, {elapsed * 10:.1f} ms per 1,000 keys")
    finally:
        await connection.execute("DROP TABLE IF EXISTS bench_claim_keys")
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
