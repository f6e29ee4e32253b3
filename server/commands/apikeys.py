"""`tally apikeys`: create, list and revoke API keys directly in Tally's database.

These commands do not call a running server: they open the Postgres `tally serve` uses, found the same
way (server/commands/database.py), so that the first admin key can be made before any key exists.
The server sees a new key at once, and a revocation within its cache TTL (1 s); REST and gRPC
clients with an admin key can do the same through /api/v1/tally/api-keys (tally.v1.ApiKeyService).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import orjson
import typer
from rich.table import Column, Table

from domain.auth.models import ApiKey, ApiKeyCreateInput, Scope
from domain.auth.service import ApiKeyService
from domain.errors import TallyError
from domain.wiretime import rfc3339
from server.commands.common import fail, parse_time, table_console
from server.commands.database import announce, command_database
from server.config import Settings, load_settings

app = typer.Typer(help="Create, list and revoke API keys (directly in the database).", no_args_is_help=True)
stdout = table_console()
T = TypeVar("T")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (default: ./config.yaml if present).")
]


def _with_keys(settings: Settings, work: Callable[[ApiKeyService], Awaitable[T]]) -> T:
    """Runs `work` against the configured database (embedded if unset), migrating it first if allowed."""
    from adapters.postgres.db import create_engine, session_factory
    from server.logging import configure
    from server.wiring.auth import api_key_service

    # stdout carries the result only (a key, or JSON for scripts); logs go to stderr, warnings up.
    configure("warning", settings.log_format)
    announce(settings, create=False)

    try:
        with command_database(settings, migrate=settings.migrate_on_start) as url:

            async def main() -> T:
                engine = create_engine(url, pool_size=1)
                try:
                    return await work(api_key_service(session_factory(engine), settings))
                finally:
                    await engine.dispose()

            return asyncio.run(main())
    except TallyError as error:
        fail(error.message)
    except OSError as error:
        fail(f"cannot reach the database: {error}")


def _row(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "namespace": key.namespace,
        "name": key.name,
        "prefix": f"tly_{key.prefix}",
        "scopes": [scope.value for scope in key.scopes],
        "createdAt": rfc3339(key.created_at),
        "expiresAt": rfc3339(key.expires_at) if key.expires_at else None,
        "revokedAt": rfc3339(key.revoked_at) if key.revoked_at else None,
    }


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "api key",
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="The key's namespace (default: the configured one).")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="ingest, read, write or admin (repeatable; admin implies all). Default: admin."),
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option("--expires-at", help="RFC 3339 time or date; default never.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The key as one JSON object.")] = False,
    config: ConfigOption = None,
) -> None:
    """Create a key and print it once: it cannot be shown again."""
    settings = load_settings(config)
    data = ApiKeyCreateInput(
        name=name, scopes=scope or [Scope.ADMIN.value], expires_at=parse_time(expires_at, "--expires-at")
    )
    created = _with_keys(settings, lambda keys: keys.create(namespace or settings.namespace, data))
    if as_json:
        typer.echo(orjson.dumps({**_row(created.key), "key": created.secret}).decode())
        return
    key = created.key
    typer.echo(f"created API key {key.id} in namespace {key.namespace!r} (scopes: {', '.join(key.scopes)})")
    typer.echo("store it now; it is not shown again:")
    typer.echo(created.secret)


@app.command("list")
def list_keys(
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace (default: every namespace).")
    ] = None,
    include_revoked: Annotated[bool, typer.Option("--include-revoked", help="Show revoked keys too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key.")] = False,
    config: ConfigOption = None,
) -> None:
    """List keys (never their secrets)."""
    settings = load_settings(config)
    keys = _with_keys(settings, lambda service: service.list_keys(namespace, include_revoked))
    if as_json:
        for key in keys:
            typer.echo(orjson.dumps(_row(key)).decode())
        return
    if not keys:
        typer.echo("no API keys")
        return
    # The id is what `revoke` takes: never shortened, even on a narrow terminal.
    id_column = Column("id", no_wrap=True, min_width=max(len(key.id) for key in keys))
    table = Table(id_column, "namespace", "name", "prefix", "scopes", "created", "state", box=None)
    now = datetime.now(UTC)
    for key in keys:
        state = "revoked" if key.revoked_at else "active" if key.active(now) else "expired"
        table.add_row(
            key.id, key.namespace, key.name, f"tly_{key.prefix}", ",".join(key.scopes), rfc3339(key.created_at), state
        )
    stdout.print(table)


@app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="The key's ID or prefix (tly_xxxxxxxxxxxx).")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only in this namespace (default: any).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Revoke a key: refused within 1 s by every running Tally."""
    settings = load_settings(config)
    revoked = _with_keys(settings, lambda keys: keys.revoke(namespace, key.removeprefix("tly_")))
    typer.echo(f"revoked API key {revoked.id} ({revoked.name!r}) in namespace {revoked.namespace!r}")
