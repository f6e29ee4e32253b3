"""`tally events`: import a backfill from NDJSON or CSV, tail what arrives."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from google.protobuf import json_format
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

import tally_sdk
from domain.wiretime import rfc3339
from server.commands.common import (
    DEFAULT_SERVER,
    ApiKeyOption,
    ServerOption,
    TimeoutOption,
    client,
    explain,
    fail,
    stderr,
)
from server.commands.importer import Checkpoint, ImportFailed, Reader, detect_format, fingerprint, run_import
from tally.v1 import events_pb2

app = typer.Typer(help="Import events from files, tail what arrives.", no_args_is_help=True)

MAX_BATCH = 10_000


@app.command("import")
def import_events(
    file: Annotated[Path, typer.Argument(help="NDJSON (.ndjson, .jsonl) or CSV (.csv) file of events.")],
    server: ServerOption = DEFAULT_SERVER,
    api_key: ApiKeyOption = None,
    timeout: TimeoutOption = 30.0,
    file_format: Annotated[
        str | None, typer.Option("--format", help="ndjson or csv (default: from the file name).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Events per request.", min=1, max=MAX_BATCH)] = 1000,
    in_flight: Annotated[int, typer.Option(help="Batches sent concurrently.", min=1, max=16)] = 2,
    source: Annotated[str, typer.Option(help="CloudEvents source of events that carry none.")] = "tally-import",
    checkpoint_file: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="Where progress is recorded (default: FILE.tally-checkpoint)."),
    ] = None,
    restart: Annotated[bool, typer.Option(help="Ignore an existing checkpoint and start from the top.")] = False,
    show_progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Import events from an NDJSON or CSV file, resuming where an interrupted run stopped.

    NDJSON: one CloudEvent per line. CSV: a header with type and subject (optionally id, source, time, and data as a JSON object); other columns become properties of data.

    Progress is checkpointed after every acknowledged batch: run the same command again after an interruption to continue. Events without an id get one derived from their line, so anything sent twice is still deduplicated by the server.
    """
    if not file.is_file():
        fail(f"{file}: no such file")
    try:
        fmt = detect_format(file, file_format)
        checkpoint_path = checkpoint_file or file.with_name(file.name + ".tally-checkpoint")
        current = Checkpoint(file=str(file.resolve()), fingerprint=fingerprint(file))
        previous = None if restart else Checkpoint.load(checkpoint_path)
    except (ImportFailed, OSError) as exc:
        fail(str(exc))
    size = file.stat().st_size
    if previous is not None:
        if previous.fingerprint != current.fingerprint or previous.offset > size:
            fail(
                f"{file} changed since checkpoint {checkpoint_path} was written; "
                "pass --restart to import it from the top (the server drops events it already has)"
            )
        if previous.completed and previous.offset >= size:
            typer.echo(
                f"{file}: already imported ({previous.events} events, checkpoint {checkpoint_path}); "
                "--restart to send it again"
            )
            return
        current = previous
        current.completed = False
        stderr.print(
            f"resuming {file} at line {current.line + 1} ({current.events} events already imported; "
            f"checkpoint {checkpoint_path})"
        )
    reader = Reader(file, fmt, current.offset, current.line, source)
    started = time.monotonic()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[events]} events"),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=not show_progress,
    )
    task = progress.add_task(f"importing {file.name}", total=size, completed=current.offset, events=0)

    def advance(offset: int, sent: int) -> None:
        progress.update(task, completed=offset, events=f"{current.events:,}")

    async def work() -> int:
        async with client(server, api_key, timeout) as tally:
            return await run_import(tally, file, reader, current, checkpoint_path, batch_size, in_flight, advance)

    try:
        with progress:
            sent = asyncio.run(work())
    except ImportFailed as exc:
        fail(f"{exc}\nnothing after the last acknowledged batch was imported; fix the file and run again to resume")
    except tally_sdk.TallyError as error:
        fail(f"{explain(error, server)}\n{current.events} events imported so far; run again to resume")
    except KeyboardInterrupt:
        stderr.print(f"interrupted after {current.events} events; run the same command again to resume")
        raise typer.Exit(130) from None
    elapsed = max(time.monotonic() - started, 1e-6)
    typer.echo(
        f"imported {sent} events from {file} in {elapsed:.1f}s ({sent / elapsed:,.0f} events/s); "
        f"{current.events} in all"
    )


def _plain(value: Any) -> Any:
    """Struct numbers are doubles: show 42, not 42.0, for whole numbers."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _line(item: events_pb2.IngestedEvent, as_json: bool) -> str:
    event = item.event
    data = _plain(json_format.MessageToDict(event.data)) if event.HasField("data") else None
    if as_json:
        body = {
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": rfc3339(event.time.ToDatetime(tzinfo=UTC)),
            "data": data,
            "ingestedAt": rfc3339(item.ingested_at.ToDatetime(tzinfo=UTC)),
        }
        if item.HasField("validation_error"):
            body["validationError"] = item.validation_error
        return orjson.dumps(body).decode()
    text = f"{rfc3339(event.time.ToDatetime(tzinfo=UTC))}  {event.subject}  {event.type}  {event.id}  "
    text += orjson.dumps(data).decode() if data is not None else "-"
    if item.HasField("validation_error"):
        text += f"  ! {item.validation_error}"
    return text


@app.command("tail")
def tail(
    server: ServerOption = DEFAULT_SERVER,
    api_key: ApiKeyOption = None,
    timeout: TimeoutOption = 10.0,
    interval: Annotated[float, typer.Option(help="Seconds between polls.", min=0.1)] = 1.0,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Recent events to show first.", min=0, max=100)] = 10,
    subject: Annotated[str | None, typer.Option(help="Only events of this subject.")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="Only events of this type.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    lookback: Annotated[
        float,
        typer.Option(help="Seconds of ingestion time each poll looks back, for events stored late (Kafka)."),
    ] = 30.0,
) -> None:
    """Print events as they are stored, polling ListEvents (Ctrl-C to stop)."""
    filters: dict[str, object] = {}
    if subject:
        filters["subject"] = {"$eq": subject}
    if event_type:
        filters["type"] = {"$eq": event_type}

    def show(item: events_pb2.IngestedEvent) -> None:
        print(_line(item, as_json), flush=True)

    async def work() -> None:
        seen: dict[tuple[str, str], datetime] = {}
        async with client(server, api_key, timeout) as tally:
            # The v2 list has no default time range: the newest events, however old their times.
            recent, _ = await tally.list_events_page(filter=filters, limit=max(lines, 1))
            for item in reversed(recent[:lines]):
                show(item)
            for item in recent:
                seen[(item.event.source, item.event.id)] = item.ingested_at.ToDatetime(tzinfo=UTC)
            # Events ingested before the tail started are history, shown above or not at all.
            started = cursor = datetime.now(UTC)
            while True:
                await asyncio.sleep(interval)
                since = cursor - timedelta(seconds=lookback)
                found = []
                page_cursor: str | None = None
                for _ in range(100):
                    items, page_cursor = await tally.list_events_page(
                        # By ingestion time (the list then also orders and pages by it); OpenMeter
                        # refuses a filter on both time and ingestedAt.
                        filter={**filters, "ingestedAt": {"$gte": rfc3339(since)}},
                        cursor=page_cursor,
                        limit=100,
                    )
                    found.extend(items)
                    if page_cursor is None:
                        break
                fresh = [
                    item
                    for item in found
                    if (item.event.source, item.event.id) not in seen
                    and item.ingested_at.ToDatetime(tzinfo=UTC) >= started
                ]
                fresh.sort(key=lambda item: (item.ingested_at.ToDatetime(), item.event.time.ToDatetime()))
                for item in fresh:
                    ingested = item.ingested_at.ToDatetime(tzinfo=UTC)
                    seen[(item.event.source, item.event.id)] = ingested
                    cursor = max(cursor, ingested)
                    show(item)
                horizon = cursor - timedelta(seconds=2 * lookback)
                for key in [key for key, at in seen.items() if at < horizon]:
                    del seen[key]

    try:
        asyncio.run(work())
    except tally_sdk.TallyError as error:
        fail(explain(error, server))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
