"""The `tally` command line."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer

from server.commands import apikeys, billing, collect, events, meters
from server.config import load_settings
from server.logging import configure, redirect_output
from server.startup import StartupError

app = typer.Typer(
    help="Tally: usage metering, entitlements and billing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
log = structlog.get_logger("tally")
app.add_typer(meters.app, name="meters")
app.add_typer(events.app, name="events")
app.add_typer(apikeys.app, name="apikeys")
app.add_typer(billing.app, name="billing")
app.command("collect")(collect.collect)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (default: ./config.yaml if present).")
]


@app.command()
def serve(
    config: ConfigOption = None,
    roles: Annotated[
        str | None,
        typer.Option(help="Comma-separated roles: api,sink,balance,notify,billing (default: all)."),
    ] = None,
) -> None:
    """Run Tally: by default every role in one process on the embedded stack."""
    settings = load_settings(config, roles=roles)
    configure(settings.log_level, settings.log_format)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how a hung start or drain is diagnosed.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from server.app import App

    async def main() -> None:
        application = App(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def hangup() -> None:
            # The terminal was closed (or `kill -HUP`): drain and stop like SIGTERM. The terminal
            # may be gone, and writing to it would fail, so the rest of the log goes to a file.
            target = settings.data_dir / "tally.log"
            with contextlib.suppress(OSError):
                log.warning("hang-up (SIGHUP): draining and stopping", log_file=str(target))
            redirect_output(target)
            log.warning("hang-up (SIGHUP): draining and stopping")
            stop.set()

        loop.add_signal_handler(signal.SIGHUP, hangup)
        try:
            await application.start()
            # What the process holds once started (modules, the ORM's and gRPC's tables, the catalogs:
            # about 200k objects) is out of the cyclic collector's reach from here on. Otherwise each
            # full collection walks all of it, 94-170 ms with the event loop stopped, and every
            # request in flight waits that long (the 16 slowest cold values of a bench run were one
            # such pause; docs/performance.md, "A full garbage collection").
            gc.collect()
            gc.freeze()
            await stop.wait()
            log.info("stopping: draining in-flight work")
        finally:
            await application.stop()
            if application.abandoned:
                # asyncio.run would wait for the steps stop went on without, for ever if one ignores
                # cancellation; everything else is stopped, so the process ends here.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)

    from adapters.postgres.embedded import EmbeddedPostgresError
    from server.wiring.auth import AuthPolicyError

    try:
        asyncio.run(main())
    except AuthPolicyError as error:
        log.error(str(error))
        raise typer.Exit(2) from None
    except (EmbeddedPostgresError, StartupError) as error:
        # Something a user can fix (a port or data dir in use): one line, no traceback.
        log.error(str(error))
        raise typer.Exit(1) from None


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Apply Postgres and ClickHouse migrations, then exit."""
    settings = load_settings(config)
    configure(settings.log_level, settings.log_format)
    from server.commands.database import announce, command_database
    from server.wiring import open_event_store

    announce(settings, create=True)
    with command_database(settings, migrate=True):
        clickhouse = open_event_store(settings)
        applied = asyncio.run(clickhouse.migrate())
        clickhouse.close()
        typer.echo(f"migrations applied (ClickHouse: {', '.join(applied) or 'up to date'})")


@app.command("envoy-config")
def envoy_config(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory to write envoy.yaml, tally.lua and the descriptor.")
    ],
    config: ConfigOption = None,
) -> None:
    """Render envoy/envoy.yaml for these settings into a directory Envoy can run from (k8s sidecar)."""
    import shutil

    from server.envoy import (
        CONSOLE_FILES,
        DESCRIPTOR,
        DOCS_FILES,
        ENVOY_DIR,
        OPENAPI_DIR,
        OPENAPI_FILES,
        SWAGGER_UI_FILES,
        console_dir,
        render,
        swagger_ui_dir,
    )

    settings = load_settings(config)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DESCRIPTOR, out / DESCRIPTOR.name)
    for name in ("tally.lua", *DOCS_FILES):
        shutil.copyfile(ENVOY_DIR / name, out / name)
    for name in OPENAPI_FILES:
        shutil.copyfile(OPENAPI_DIR / name, out / name)
    for name in SWAGGER_UI_FILES:
        shutil.copyfile(swagger_ui_dir() / name, out / name)
    for name in CONSOLE_FILES:
        (out / "console" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(console_dir() / name, out / "console" / name)
    where = out.resolve()
    (out / "envoy.yaml").write_text(
        render(
            settings,
            descriptor=where / DESCRIPTOR.name,
            envoy_dir=where,
            openapi_dir=where,
            swagger_dir=where,
            console=where / "console",
        )
    )
    typer.echo(f"wrote {out / 'envoy.yaml'}")


if __name__ == "__main__":
    app()
