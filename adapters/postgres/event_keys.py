"""Deduplication keys of stored events, and the sink batches that write them (Postgres).

Protocol (workers/sink.py drives it): `claim` records a pending batch and claims the keys of its
events in one statement; the event-store insert follows; `commit` marks the batch stored. A crash
between the two leaves a pending batch, which `pending` returns at the next start so the sink can
keep exactly the keys whose events reached the store and release the others (`abort`). Keys are
claimed before the insert but released if it fails, so nothing is ever dropped as a duplicate of an
event that was not stored (OpenMeter issue #5118).

A key that `claim` finds taken is a duplicate only if the batch holding it is settled (marked
stored, or aborted keeping the keys of events found in the store). A key held by a batch that is
still pending is *in doubt*: that batch's insert may be under way, or may have failed with its
settling still to come, so its event may never be stored; answering "duplicate" would lose it. Such
events come back in `Claim.in_doubt` for the caller to retry, as do events whose key was released
between the claim and the look-up.

One round trip per claim when every key is new (the common case: one statement answers with a count),
two when some are not; one more to mark the batch stored. Autocommit connections: this is the
ingest hot path.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.metering.events import Claim, Event, EventKey, PendingBatch, event_key

# One statement records the pending batch and claims the keys. It counts the claimed keys instead
# of returning them: almost every key is new, so one number usually says all.
_CLAIM = text(
    "WITH batch AS ("
    "  INSERT INTO sink_batches (id, owner, token, state, event_keys, created_at)"
    "  VALUES (:batch_id, :owner, :token, 'pending', :triples, :now)"
    "), claimed AS ("
    "  INSERT INTO event_keys (namespace, key, batch_id, created_at)"
    "  SELECT namespace, key, :batch_id, :now"
    "  FROM unnest(CAST(:namespaces AS text[]), CAST(:keys AS bytea[])) AS q(namespace, key)"
    "  ON CONFLICT DO NOTHING RETURNING 1"
    ") SELECT count(*) FROM claimed"
)
# Who holds each of the batch's keys once some were taken: this batch (claimed), a pending batch or
# nobody (released since: in doubt), or a settled one (a duplicate). One statement, one snapshot, so
# a holder's settling (keys released and batch marked in one transaction) is seen whole or not at all.
_HOLDERS = text(
    "SELECT q.i, k.batch_id, b.state"
    " FROM unnest(CAST(:namespaces AS text[]), CAST(:keys AS bytea[])) WITH ORDINALITY AS q(namespace, key, i)"
    " LEFT JOIN event_keys k ON k.namespace = q.namespace AND k.key = q.key"
    " LEFT JOIN sink_batches b ON b.id = k.batch_id"
    " ORDER BY q.i"
)
_STORED = text("UPDATE sink_batches SET state = 'stored', event_keys = NULL WHERE id = ANY(CAST(:ids AS bigint[]))")


def key_hash(source: str, event_id: str) -> bytes:
    return hashlib.blake2b(f"{source}\x00{event_id}".encode(), digest_size=16).digest()


class PostgresEventKeyStore:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        # When a key is recorded and when the window ends: one clock, so tests can move it.
        self._clock = clock

    async def _execute(self, statement: Any, params: dict[str, Any]) -> Any:
        async with self._engine.connect() as connection:
            return await connection.execute(statement, params)

    async def claim(self, owner: str, events: Sequence[Event], token: str) -> Claim:
        """Records a pending batch, to be stored by the insert named `token`, and claims its events'
        keys (`events` carry distinct keys); returns the batch, the events it claimed and those in
        doubt. The rest are duplicates."""
        now = self._clock()
        # Chosen here, not by a sequence, so one statement both creates the batch and claims keys.
        batch_id = secrets.randbits(62)
        keys = list(map(event_key, events))
        hashes = [key_hash(source, event_id) for _, source, event_id in keys]
        namespaces = [key[0] for key in keys]
        # The statement takes its keys one row at a time, waiting on any a concurrent claim holds;
        # two claims taking shared keys in different orders would each wait on the other (a
        # deadlock Postgres breaks by failing one: a 503 for a client's racing retry). One global
        # order, (namespace, key), makes every claim take shared keys in the same sequence.
        ordered = sorted(zip(namespaces, hashes, strict=True))
        async with self._engine.connect() as connection:
            result = await connection.execute(
                _CLAIM,
                {
                    "batch_id": batch_id,
                    "owner": owner,
                    "token": token,
                    "triples": orjson.dumps(keys),
                    "now": now,
                    "namespaces": [namespace for namespace, _ in ordered],
                    "keys": [key for _, key in ordered],
                },
            )
            if result.scalar_one() == len(events):
                return Claim(batch_id, list(events), [])
            holders = await connection.execute(_HOLDERS, {"namespaces": namespaces, "keys": hashes})
        claimed: list[Event] = []
        in_doubt: list[Event] = []
        for position, holder, state in holders:
            event = events[position - 1]
            if holder == batch_id:
                claimed.append(event)
            elif holder is None or state == "pending":
                in_doubt.append(event)
        return Claim(batch_id, claimed, in_doubt)

    async def commit(self, batch_ids: Sequence[int]) -> None:
        """Marks batches stored, in one statement."""
        await self._execute(_STORED, {"ids": list(batch_ids)})

    async def abort(self, batch_id: int, keep: Sequence[EventKey] = ()) -> None:
        """Releases a batch's keys except `keep` (events found in the store after all)."""
        keep_hashes = {(ns, key_hash(source, event_id)) for ns, source, event_id in keep}
        async with self._engine.connect() as connection, connection.begin():
            await self._release(connection, batch_id, keep_hashes)
            await connection.execute(_STORED, {"ids": [batch_id]})

    @staticmethod
    async def _release(connection: AsyncConnection, batch_id: int, keep: set[tuple[str, bytes]]) -> None:
        if not keep:
            await connection.execute(text("DELETE FROM event_keys WHERE batch_id = :id"), {"id": batch_id})
            return
        rows = await connection.execute(
            text("SELECT namespace, key FROM event_keys WHERE batch_id = :id"), {"id": batch_id}
        )
        drop = [(r[0], bytes(r[1])) for r in rows if (r[0], bytes(r[1])) not in keep]
        await connection.execute(
            text(
                "DELETE FROM event_keys k "
                "USING unnest(CAST(:namespaces AS text[]), CAST(:keys AS bytea[])) AS q(namespace, key) "
                # Only this batch's: a key released by a concurrent settling of the same batch may
                # already be claimed by a retry's batch, whose claim must stand.
                "WHERE k.namespace = q.namespace AND k.key = q.key AND k.batch_id = :id"
            ),
            {"namespaces": [d[0] for d in drop], "keys": [d[1] for d in drop], "id": batch_id},
        )

    async def pending(self, owner: str) -> list[PendingBatch]:
        rows = await self._execute(
            text("SELECT id, token, event_keys FROM sink_batches WHERE owner = :owner AND state = 'pending'"),
            {"owner": owner},
        )
        return [
            PendingBatch(id=row[0], token=row[1], keys=[(k[0], k[1], k[2]) for k in orjson.loads(row[2] or b"[]")])
            for row in rows
        ]

    async def purge(self, window: timedelta) -> int:
        """Forgets keys (and finished batches) older than the deduplication window: a key recorded
        exactly `window` ago is still kept, one recorded a microsecond earlier is forgotten."""
        cutoff = self._clock() - window
        async with self._engine.connect() as connection, connection.begin():
            result = await connection.execute(
                text("DELETE FROM event_keys WHERE created_at < :cutoff"), {"cutoff": cutoff}
            )
            await connection.execute(
                text("DELETE FROM sink_batches WHERE state = 'stored' AND created_at < :cutoff"), {"cutoff": cutoff}
            )
            return int(result.rowcount or 0)
