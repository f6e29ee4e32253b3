"""Deduplication keys of stored events, and the sink batches that write them (Postgres).

Protocol (workers/sink.py drives it): `filter_new` drops events whose key is already recorded;
`begin` records the remaining keys with a `pending` batch in one transaction; the event store
insert follows; `commit` marks the batch stored. A crash between `begin` and `commit` leaves a
pending batch, which `pending` returns at the next start so the sink can keep exactly the keys whose
events reached the store. Keys are claimed before the insert but only count once the batch commits,
so nothing is ever dropped as a duplicate of an event that was not stored (OpenMeter issue #5118).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.metering.events import Event, EventKey, PendingBatch


def key_hash(source: str, event_id: str) -> bytes:
    return hashlib.blake2b(f"{source}\x00{event_id}".encode(), digest_size=16).digest()


class PostgresEventKeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def filter_new(self, events: Sequence[Event]) -> list[Event]:
        """The events whose (namespace, source, id) is not yet recorded by a stored batch."""
        if not events:
            return []
        hashes = [key_hash(e.source, e.id) for e in events]
        namespaces = [e.namespace for e in events]
        async with self._sessions() as session:
            result = await session.execute(
                text(
                    "SELECT k.namespace, k.key FROM event_keys k "
                    "JOIN unnest(CAST(:namespaces AS text[]), CAST(:keys AS bytea[])) AS q(namespace, key) "
                    "ON k.namespace = q.namespace AND k.key = q.key"
                ),
                {"namespaces": namespaces, "keys": hashes},
            )
            seen = {(row[0], bytes(row[1])) for row in result}
        if not seen:
            return list(events)
        return [e for e, h in zip(events, hashes, strict=True) if (e.namespace, h) not in seen]

    async def begin(self, owner: str, token: str, events: Sequence[Event]) -> tuple[int, list[Event]]:
        """Claims the events' keys with a pending batch; returns the batch and the events it claimed.

        A key another flush claimed in the meantime (a zombie consumer after a rebalance, say) is not
        claimed again, so the same event is never inserted twice, even by concurrent flushes.
        """
        now = datetime.now(UTC)
        triples = [(e.namespace, e.source, e.id) for e in events]
        hashes = [key_hash(t[1], t[2]) for t in triples]
        async with self._sessions() as session:
            batch_id = (
                await session.execute(
                    text(
                        "INSERT INTO sink_batches (owner, token, state, event_keys, created_at) "
                        "VALUES (:owner, :token, 'pending', :keys, :now) RETURNING id"
                    ),
                    {"owner": owner, "token": token, "keys": orjson.dumps(triples), "now": now},
                )
            ).scalar_one()
            claimed_rows = await session.execute(
                text(
                    "INSERT INTO event_keys (namespace, key, batch_id, created_at) "
                    "SELECT namespace, key, :batch_id, :now "
                    "FROM unnest(CAST(:namespaces AS text[]), CAST(:keys AS bytea[])) AS q(namespace, key) "
                    "ON CONFLICT DO NOTHING RETURNING namespace, key"
                ),
                {"batch_id": batch_id, "now": now, "namespaces": [t[0] for t in triples], "keys": hashes},
            )
            claimed = {(row[0], bytes(row[1])) for row in claimed_rows}
            await session.commit()
        if len(claimed) == len(events):
            return int(batch_id), list(events)
        return int(batch_id), [e for e, h in zip(events, hashes, strict=True) if (e.namespace, h) in claimed]

    async def commit(self, batch_id: int) -> None:
        async with self._sessions() as session:
            await session.execute(
                text("UPDATE sink_batches SET state = 'stored', event_keys = NULL WHERE id = :id"),
                {"id": batch_id},
            )
            await session.commit()

    async def abort(self, batch_id: int, keep: Sequence[EventKey] = ()) -> None:
        """Releases a batch's keys except `keep` (events found in the store after all)."""
        keep_hashes = {(ns, key_hash(source, event_id)) for ns, source, event_id in keep}
        async with self._sessions() as session:
            if keep_hashes:
                rows = await session.execute(
                    text("SELECT namespace, key FROM event_keys WHERE batch_id = :id"), {"id": batch_id}
                )
                drop = [(r[0], bytes(r[1])) for r in rows if (r[0], bytes(r[1])) not in keep_hashes]
                await session.execute(
                    text(
                        "DELETE FROM event_keys k USING unnest(CAST(:namespaces AS text[]), CAST(:keys AS bytea[])) "
                        "AS q(namespace, key) WHERE k.namespace = q.namespace AND k.key = q.key"
                    ),
                    {"namespaces": [d[0] for d in drop], "keys": [d[1] for d in drop]},
                )
            else:
                await session.execute(text("DELETE FROM event_keys WHERE batch_id = :id"), {"id": batch_id})
            await session.execute(
                text("UPDATE sink_batches SET state = 'stored', event_keys = NULL WHERE id = :id"),
                {"id": batch_id},
            )
            await session.commit()

    async def pending(self, owner: str) -> list[PendingBatch]:
        async with self._sessions() as session:
            rows = await session.execute(
                text("SELECT id, token, event_keys FROM sink_batches WHERE owner = :owner AND state = 'pending'"),
                {"owner": owner},
            )
            return [
                PendingBatch(id=row[0], token=row[1], keys=[(k[0], k[1], k[2]) for k in orjson.loads(row[2] or b"[]")])
                for row in rows
            ]

    async def purge(self, window: timedelta) -> int:
        """Forgets keys (and finished batches) older than the deduplication window."""
        cutoff = datetime.now(UTC) - window
        async with self._sessions() as session:
            result = await session.execute(
                text("DELETE FROM event_keys WHERE created_at < :cutoff"), {"cutoff": cutoff}
            )
            await session.execute(
                text("DELETE FROM sink_batches WHERE state = 'stored' AND created_at < :cutoff"),
                {"cutoff": cutoff},
            )
            await session.commit()
            return int(result.rowcount or 0)  # type: ignore[attr-defined]
