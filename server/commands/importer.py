"""Backfills: events from an NDJSON or CSV file, sent in batches, with a resumable checkpoint.

The checkpoint records the byte offset just past the last event the server acknowledged, and is
replaced atomically after every acknowledged batch. A re-run after an interruption (Ctrl-C, a
crash, kill -9) starts from that offset, so acknowledged events are not sent again. A batch that
was in flight when the import stopped is sent again; the server drops duplicates of (source, id),
so it is still counted once. Events without an id get one derived from their line number and
content, so that holds for them too.

NDJSON: one CloudEvents JSON object per line ({"id", "source", "type", "subject", "time", "data"}).
CSV: a header row; columns id, source, type, subject, time and data (a JSON object) map to the event;
any other column becomes a property of data, as a number or boolean when it reads as one.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

import tally_sdk

Format = Literal["ndjson", "csv"]
FINGERPRINT_BYTES = 64 * 1024
CSV_EVENT_COLUMNS = {"id", "source", "type", "subject", "time", "specversion"}


class ImportFailed(Exception):
    """A problem with the input file or the checkpoint, told to the user as is."""


def detect_format(path: Path, given: str | None) -> Format:
    if given:
        if given not in ("ndjson", "csv"):
            raise ImportFailed(f"--format must be ndjson or csv, not {given!r}")
        return "csv" if given == "csv" else "ndjson"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".ndjson", ".jsonl", ".json"):
        return "ndjson"
    raise ImportFailed(f"{path}: cannot tell the format from the name; pass --format ndjson or --format csv")


def fingerprint(path: Path) -> str:
    """Identifies the file's content cheaply: a hash of its first 64 KiB (appending keeps it)."""
    with path.open("rb") as f:
        return hashlib.sha256(f.read(FINGERPRINT_BYTES)).hexdigest()


@dataclass
class Checkpoint:
    file: str
    fingerprint: str
    offset: int = 0
    line: int = 0
    events: int = 0
    completed: bool = False

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        if not path.exists():
            return None
        try:
            return cls(**orjson.loads(path.read_bytes()))
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ImportFailed(f"checkpoint {path} is not readable ({exc}); delete it or pass --restart") from exc

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Record:
    line: int  # where the record starts, 1-based
    end_line: int
    end: int  # byte offset just past the record
    event: tally_sdk.Event


def _derived_id(line: int, raw: bytes) -> str:
    return "import-" + hashlib.sha256(b"%d:" % line + raw).hexdigest()[:32]


def _coerce(value: str) -> Any:
    """A CSV cell as a JSON number or boolean when it reads as one, else the string."""
    if re.fullmatch(r"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?|true|false", value):
        return orjson.loads(value)
    return value


class Reader:
    """Records of a file from a byte offset, with the offset and line just past each."""

    def __init__(self, path: Path, fmt: Format, offset: int, line: int, source: str) -> None:
        self.path = path
        self.fmt = fmt
        self.offset = offset
        self.line = line
        self.source = source

    def __iter__(self) -> Iterator[Record]:
        with self.path.open("rb") as f:
            yield from (self._ndjson(f) if self.fmt == "ndjson" else self._csv(f))

    def _event(self, raw: dict[str, Any], line: int, text: bytes) -> tally_sdk.Event:
        if not raw.get("id"):
            raw["id"] = _derived_id(line, text)
        if not raw.get("source"):
            raw["source"] = self.source
        try:
            return tally_sdk.Event.from_dict(raw)
        except ValueError as exc:
            raise ImportFailed(f"{self.path}:{line}: {exc}") from exc

    def _ndjson(self, f: BinaryIO) -> Iterator[Record]:
        f.seek(self.offset)
        position, line = self.offset, self.line
        for text in f:
            position += len(text)
            line += 1
            if not text.strip():
                continue
            try:
                raw = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise ImportFailed(f"{self.path}:{line}: not valid JSON ({exc})") from exc
            if not isinstance(raw, dict):
                raise ImportFailed(f"{self.path}:{line}: expected a JSON object per line")
            yield Record(line, line, position, self._event(raw, line, text))

    def _csv(self, f: BinaryIO) -> Iterator[Record]:
        header_text = f.readline()
        header = next(csv.reader([header_text.decode("utf-8-sig")]), [])
        if not {"type", "subject"} <= set(header):
            raise ImportFailed(f"{self.path}: the CSV header needs at least the columns type and subject")
        position, line = (self.offset, self.line) if self.offset else (len(header_text), 1)
        f.seek(position)
        consumed: list[bytes] = []

        def lines() -> Iterator[str]:
            nonlocal position, line
            for text in f:
                position += len(text)
                line += 1
                consumed.append(text)
                yield text.decode()

        for row in csv.reader(lines()):
            start_line = line - len(consumed) + 1
            text = b"".join(consumed)
            consumed.clear()
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ImportFailed(f"{self.path}:{start_line}: {len(row)} columns, the header has {len(header)}")
            raw: dict[str, Any] = {}
            data: dict[str, Any] = {}
            for name, value in zip(header, row, strict=True):
                if value == "":
                    continue
                if name == "data":
                    try:
                        loaded = orjson.loads(value)
                    except orjson.JSONDecodeError as exc:
                        raise ImportFailed(f"{self.path}:{start_line}: column data is not JSON ({exc})") from exc
                    if not isinstance(loaded, dict):
                        raise ImportFailed(f"{self.path}:{start_line}: column data must be a JSON object")
                    data.update(loaded)
                elif name in CSV_EVENT_COLUMNS:
                    raw[name] = value
                else:
                    data[name] = _coerce(value)
            raw["data"] = data
            yield Record(start_line, line, position, self._event(raw, start_line, text))


def batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


_INDEX = re.compile(r"^\[(\d+)\]\.?(.*)$")


def _explain_rejection(error: tally_sdk.TallyError, batch: list[Record], path: Path) -> str:
    """A rejected batch in terms of the file: the line of each offending event."""
    if not error.violations:
        match = re.search(r"\[(\d+)\]", error.message)
        if match and int(match.group(1)) < len(batch):
            return f"{path}:{batch[int(match.group(1))].line}: {error}"
        return f"{path}: the server rejected the batch of lines {batch[0].line}-{batch[-1].line}: {error}"
    problems = []
    for violation in error.violations:
        match = _INDEX.match(violation.field)
        if match and int(match.group(1)) < len(batch):
            field = match.group(2) or "event"
            problems.append(f"{path}:{batch[int(match.group(1))].line}: {field}: {violation.description}")
        else:
            problems.append(f"{path}: {violation.field}: {violation.description}")
    return "\n".join(problems)


Progress = Callable[[int, int], None]  # (byte offset reached, events imported in this run)


async def run_import(
    client: tally_sdk.Client,
    path: Path,
    reader: Reader,
    checkpoint: Checkpoint,
    checkpoint_path: Path,
    batch_size: int,
    in_flight: int,
    progress: Progress,
) -> int:
    """Sends the file's remaining events; returns how many were acknowledged in this run.

    Up to `in_flight` batches travel at once; the checkpoint advances only over the acknowledged
    prefix of the file, in order.
    """
    sent = 0
    pending: deque[tuple[asyncio.Task[int], list[Record]]] = deque()

    async def settle() -> None:
        nonlocal sent
        task, batch = pending.popleft()
        try:
            await task
        except (tally_sdk.InvalidArgumentError, tally_sdk.ResourceExhaustedError) as error:
            raise ImportFailed(_explain_rejection(error, batch, path)) from None
        checkpoint.offset, checkpoint.line = batch[-1].end, batch[-1].end_line
        checkpoint.events += len(batch)
        checkpoint.save(checkpoint_path)
        sent += len(batch)
        progress(checkpoint.offset, sent)

    try:
        for batch in batches(iter(reader), batch_size):
            request = client.build_batch(record.event for record in batch)
            pending.append((asyncio.create_task(client.ingest(request)), batch))
            if len(pending) >= in_flight:
                await settle()
        while pending:
            await settle()
    finally:
        for task, _ in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*(task for task, _ in pending), return_exceptions=True)
    checkpoint.completed = True
    checkpoint.save(checkpoint_path)
    return sent
