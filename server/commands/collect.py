"""`tally collect`: the collector process (workers/collector), and `--check` to validate its config."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from server.commands.common import fail, stderr
from server.logging import configure


def collect(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", envvar="TALLY_COLLECT_CONFIG", help="The collector's YAML config.")
    ] = None,
    check: Annotated[
        Path | None, typer.Option("--check", help="Validate this config file and exit (0: valid, 1: not).")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", envvar="TALLY_LOG_LEVEL")] = "info",
    log_format: Annotated[str, typer.Option("--log-format", envvar="TALLY_LOG_FORMAT")] = "console",
) -> None:
    """Collect usage from Prometheus, Kubernetes, OpenTelemetry logs or an HTTP relay into Tally."""
    from workers.collector.config import ConfigError, load_config

    path = check or config
    if path is None:
        fail("pass --config FILE (or --check FILE); see docs/collectors.md")
    try:
        loaded = load_config(path)
    except ConfigError as error:
        for problem in error.problems:
            stderr.print(problem.render(str(path)), markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if check is not None:
        names = ", ".join(f"{s.name} ({s.type})" for s in loaded.sources)
        typer.echo(f"{path}: valid; sources: {names}; sink: {loaded.sink.url}")
        return
    configure(log_level, log_format)
    from server.errors import problem_response
    from workers.collector.runner import BufferInUseError, Collector

    async def main() -> None:
        collector = Collector(loaded, problem=problem_response)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await collector.run(stop)

    try:
        asyncio.run(main())
    except BufferInUseError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot start the collector: {error}")
