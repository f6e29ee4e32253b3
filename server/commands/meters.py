"""`tally meters`: list, create from YAML, query as a table or CSV."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import orjson
import pydantic
import typer
import yaml
from rich.table import Table

from domain.wiretime import rfc3339
from server.commands.common import (
    DEFAULT_SERVER,
    ApiKeyOption,
    ServerOption,
    TimeoutOption,
    client,
    fail,
    parse_time,
    run,
    table_console,
)
from server.config import MeterConfig

app = typer.Typer(help="List, create and query meters.", no_args_is_help=True)
stdout = table_console()

WINDOW_SIZES = ("MINUTE", "HOUR", "DAY", "MONTH")


@app.command("list")
def list_meters(
    server: ServerOption = DEFAULT_SERVER,
    api_key: ApiKeyOption = None,
    timeout: TimeoutOption = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per meter instead of a table.")] = False,
) -> None:
    """List the namespace's meters."""

    async def work() -> None:
        async with client(server, api_key, timeout) as tally:
            meters = await tally.list_meters()
        if as_json:
            from google.protobuf import json_format

            for meter in meters:
                typer.echo(orjson.dumps(json_format.MessageToDict(meter)).decode())
            return
        table = Table("slug", "aggregation", "event type", "value property", "group by", box=None)
        for meter in meters:
            group_by = ", ".join(f"{k}={v}" for k, v in sorted(meter.group_by.items()))
            value = meter.value_property if meter.HasField("value_property") else ""
            table.add_row(meter.slug, meter.aggregation, meter.event_type, value, group_by)
        stdout.print(table) if meters else typer.echo("no meters")

    run(server, work)


def load_meter_file(path: Path) -> list[MeterConfig]:
    """Meters from YAML (or JSON): one meter, a list of meters, or a config file's `meters:` list."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        fail(f"{path}: not valid YAML: {exc}")
    if isinstance(loaded, dict) and isinstance(loaded.get("meters"), list):
        loaded = loaded["meters"]
    items: list[Any] = loaded if isinstance(loaded, list) else [loaded]
    if not items or not all(isinstance(item, dict) for item in items):
        fail(f"{path}: expected a meter (a mapping with slug, eventType, aggregation, ...) or a list of them")
    meters: list[MeterConfig] = []
    for index, item in enumerate(items):
        try:
            meters.append(MeterConfig.model_validate(item))
        except pydantic.ValidationError as exc:
            where = f"{path} meter {index + 1}" if len(items) > 1 else str(path)
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            fail(f"{where}: {problems}")
    return meters


@app.command("create")
def create(
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            "-f",
            help="YAML file: one meter (slug, eventType, aggregation, valueProperty, groupBy, name, description), "
            "a list of them, or a config file with `meters:`.",
        ),
    ],
    server: ServerOption = DEFAULT_SERVER,
    api_key: ApiKeyOption = None,
    timeout: TimeoutOption = 10.0,
    skip_existing: Annotated[bool, typer.Option(help="Skip meters whose slug already exists.")] = False,
) -> None:
    """Create meters from a YAML file."""
    import tally_sdk

    meters = load_meter_file(file)

    async def work() -> None:
        async with client(server, api_key, timeout) as tally:
            for meter in meters:
                try:
                    created = await tally.create_meter(
                        meter.slug,
                        aggregation=meter.aggregation,
                        event_type=meter.event_type,
                        value_property=meter.value_property,
                        group_by=meter.group_by,
                        name=meter.name,
                        description=meter.description,
                    )
                except tally_sdk.AlreadyExistsError:
                    if not skip_existing:
                        fail(f"meter {meter.slug!r} already exists (use --skip-existing to skip it)")
                    typer.echo(f"exists  {meter.slug}")
                    continue
                except tally_sdk.InvalidArgumentError as error:
                    fail(f"meter {meter.slug!r}: {error}")
                typer.echo(f"created {created.slug} ({created.id})")

    run(server, work)


@app.command("query")
def query(
    meter: Annotated[str, typer.Argument(help="Meter slug or ID.")],
    from_: Annotated[
        str | None, typer.Option("--from", help="Start, inclusive: RFC 3339 time or a date (UTC).")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="End, exclusive: RFC 3339 time or a date (UTC).")] = None,
    window_size: Annotated[
        str | None,
        typer.Option("--window-size", "-w", help="MINUTE, HOUR, DAY or MONTH; default: one row per group."),
    ] = None,
    window_time_zone: Annotated[
        str | None, typer.Option("--tz", help="IANA time zone of window boundaries (default UTC).")
    ] = None,
    subject: Annotated[list[str] | None, typer.Option("--subject", help="Only these subjects (repeatable).")] = None,
    group_by: Annotated[
        list[str] | None, typer.Option("--group-by", "-g", help="Group by subject or a meter key (repeatable).")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="Only rows whose group-by key has this value: key=value (repeatable)."),
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="OpenMeter's CSV instead of a table.")] = False,
    server: ServerOption = DEFAULT_SERVER,
    api_key: ApiKeyOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Aggregate a meter's usage, as a table or CSV."""
    if window_size is not None and window_size.upper() not in WINDOW_SIZES:
        fail(f"--window-size must be one of {', '.join(WINDOW_SIZES)}")
    filters: dict[str, list[str]] = {}
    for item in where or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--where {item!r}: expected key=value")
        filters.setdefault(key, []).append(value)
    params: dict[str, Any] = {
        "from_": parse_time(from_, "--from"),
        "to": parse_time(to, "--to"),
        "window_size": window_size.upper() if window_size else None,
        "window_time_zone": window_time_zone,
        "subjects": subject or [],
        "group_by": group_by or [],
        "filter_group_by": filters,
    }

    async def work() -> None:
        async with client(server, api_key, timeout) as tally:
            if csv:
                typer.echo(await tally.query_meter_csv(meter, **params), nl=False)
                return
            result = await tally.query_meter(meter, **params)
        keys = sorted({key for row in result.data for key in row.group_by})
        with_subject = any(row.HasField("subject") for row in result.data)
        table = Table("window start", "window end", *(["subject"] if with_subject else []), *keys, box=None)
        table.add_column("value", justify="right")
        for row in result.data:
            table.add_row(
                rfc3339(row.window_start.ToDatetime(tzinfo=UTC)),
                rfc3339(row.window_end.ToDatetime(tzinfo=UTC)),
                *([row.subject] if with_subject else []),
                *(row.group_by.get(key, "") for key in keys),
                f"{row.value:f}".rstrip("0").rstrip("."),
            )
        if result.data:
            stdout.print(table)
        else:
            typer.echo("no usage in this range")

    run(server, work)
