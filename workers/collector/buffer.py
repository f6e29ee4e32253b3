"""The durable buffer: every event the collector has accepted and Tally has not yet acknowledged.

SQLite in WAL mode with synchronous=FULL: a `put` returns only after its transaction is on disk,
and only then does a source get its acknowledgement (the relay's 204, OTLP's response) or a pull
source move its cursor. A pull source's events and its cursor are written in one transaction, so
after kill -9 either both are there or neither is, and the window is simply run again (the same
ids). Events leave the buffer only when Tally acknowledged them. Events are keyed by (source, id):
the same event put twice is kept once.

sqlite3 is synchronous; the collector calls it from a worker thread (asyncio.to_thread) through one
connection guarded by a lock. Concurrent puts (the relay's requests, OTLP exports) are committed
together, one transaction and one fsync for all that queued meanwhile (group commit): each caller
is still answered only after the commit that holds its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from adapters.collectors.records import BufferFullError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    buffered_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, id)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    source TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Buffered:
    seq: int
    event: dict[str, Any]


class Buffer:
    def __init__(self, path: Path, max_events: int = 1_000_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_events = max_events
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._pending: int = self._db.execute("SELECT count(*) FROM events").fetchone()[0]
        self._queued: list[tuple[Sequence[dict[str, Any]], tuple[str, str] | None, asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def pending(self) -> int:
        """Events waiting for Tally (kept in memory: read on every metrics scrape and put)."""
        return self._pending

    # Synchronous API (called from a worker thread).

    def put_sync(self, events: Sequence[dict[str, Any]], cursor: tuple[str, str] | None = None) -> int:
        """Stores events (and a source's cursor) in one durable transaction; returns how many were new."""
        result = self.put_many_sync([(events, cursor)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def put_many_sync(
        self, puts: Sequence[tuple[Sequence[dict[str, Any]], tuple[str, str] | None]]
    ) -> list[int | BufferFullError]:
        """Several puts in one transaction: per put, how many events were new, or BufferFullError
        for a put that did not fit (the others are stored)."""
        results: list[int | BufferFullError] = []
        with self._lock:
            now = time.time()
            pending = self._pending
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for events, cursor in puts:
                    if events and pending + len(events) > self.max_events:
                        results.append(BufferFullError(f"buffer holds {pending} events (max_events {self.max_events})"))
                        continue
                    before = self._db.total_changes
                    self._db.executemany(
                        "INSERT OR IGNORE INTO events (source, id, body, buffered_at) VALUES (?, ?, ?, ?)",
                        [(e["source"], e["id"], orjson.dumps(e), now) for e in events],
                    )
                    added = self._db.total_changes - before
                    if cursor is not None:
                        self._db.execute(
                            "INSERT INTO cursors (source, value) VALUES (?, ?) "
                            "ON CONFLICT (source) DO UPDATE SET value = excluded.value",
                            cursor,
                        )
                    pending += added
                    results.append(int(added))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending = pending
        return results

    def take_sync(self, limit: int) -> list[Buffered]:
        with self._lock:
            rows = self._db.execute("SELECT seq, body FROM events ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [Buffered(seq, orjson.loads(body)) for seq, body in rows]

    def ack_sync(self, seqs: Sequence[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
            removed = self._db.total_changes - before
            self._db.execute("COMMIT")
            self._pending -= removed

    def attempted_sync(self, seqs: Sequence[int]) -> None:
        with self._lock:
            self._db.executemany("UPDATE events SET attempts = attempts + 1 WHERE seq = ?", [(s,) for s in seqs])

    def dead_letter_sync(self, seq: int, reason: str) -> None:
        """Moves an event Tally refused for good out of the way, kept for inspection."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letters (seq, source, id, body, reason, failed_at) "
                "SELECT seq, source, id, body, ?, ? FROM events WHERE seq = ?",
                (reason, time.time(), seq),
            )
            before = self._db.total_changes
            self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
            removed = self._db.total_changes - before
            self._db.execute("COMMIT")
            self._pending -= removed

    def dead_letters_sync(self) -> list[tuple[dict[str, Any], str]]:
        with self._lock:
            rows = self._db.execute("SELECT body, reason FROM dead_letters ORDER BY seq").fetchall()
        return [(orjson.loads(body), reason) for body, reason in rows]

    def oldest_age_sync(self) -> float:
        with self._lock:
            # seq follows insertion: the first row is the oldest (read through the primary key).
            row = self._db.execute("SELECT buffered_at FROM events ORDER BY seq LIMIT 1").fetchone()
        return max(0.0, time.time() - row[0]) if row is not None else 0.0

    def cursor_sync(self, source: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM cursors WHERE source = ?", (source,)).fetchone()
        return row[0] if row else None

    # Async wrappers: SQLite's fsync must not stall the event loop.

    async def put(self, events: Sequence[dict[str, Any]], cursor: tuple[str, str] | None = None) -> int:
        """Returns once the events are durable, committed with the puts queued beside them."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queued.append((events, cursor, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                # Shielded: a caller that gives up (cancelled) must not cut the commit of the others.
                results = await asyncio.shield(
                    asyncio.to_thread(self.put_many_sync, [(events, cursor) for events, cursor, _ in batch])
                )
            except BaseException as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def drain_writes(self) -> None:
        """Waits for queued puts to be committed (before closing)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer

    async def take(self, limit: int) -> list[Buffered]:
        return await asyncio.to_thread(self.take_sync, limit)

    async def ack(self, seqs: Sequence[int]) -> None:
        await asyncio.to_thread(self.ack_sync, seqs)

    async def attempted(self, seqs: Sequence[int]) -> None:
        await asyncio.to_thread(self.attempted_sync, seqs)

    async def dead_letter(self, seq: int, reason: str) -> None:
        await asyncio.to_thread(self.dead_letter_sync, seq, reason)

    async def oldest_age(self) -> float:
        return await asyncio.to_thread(self.oldest_age_sync)

    async def cursor(self, source: str) -> str | None:
        return await asyncio.to_thread(self.cursor_sync, source)
