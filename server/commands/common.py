"""What every client command shares: the server and API-key options, and user-facing errors.

A user mistake (a bad file, an unknown meter, a server that is not running) ends the command with
one clear line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

import tally_sdk

T = TypeVar("T")

DEFAULT_SERVER = "127.0.0.1:50051"

ServerOption = Annotated[
    str,
    typer.Option(
        "--server",
        "-s",
        envvar="TALLY_SERVER",
        help="Tally's gRPC address, host:port.",
        show_default=True,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="TALLY_API_KEY", help="API key, sent as 'Authorization: Bearer <key>'."),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Deadline of each call, in seconds.", min=0.1)]

# Messages are never wrapped by rich: a path or key cut by a line break cannot be copied, and piped
# output would be wrapped at an assumed 80 columns.
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def table_console() -> Console:
    """stdout for tables. Piped or redirected, rich would assume 80 columns and cut ids and slugs
    short with an ellipsis; a value must stay whole so it can be copied, so tables are as wide as
    their content there. On a terminal the width is the terminal's (columns that hold ids keep
    their full width: see the tables' min_width)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 100_000)


def fail(message: str, code: int = 1) -> NoReturn:
    stderr.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def client(server: str, api_key: str | None, timeout: float = 10.0) -> tally_sdk.Client:
    # A CLI user waits for one answer: a few quick retries cover a restarting server, no more.
    retry = tally_sdk.RetryPolicy(max_attempts=3, initial_backoff=0.2, max_backoff=1.0)
    return tally_sdk.Client(server, api_key=api_key, timeout=timeout, retry=retry, source="tally-cli")


def explain(error: tally_sdk.TallyError, server: str) -> str:
    if isinstance(error, tally_sdk.UnavailableError):
        return f"cannot reach Tally at {server} ({error.message}); is it running? Set --server or TALLY_SERVER."
    if isinstance(error, tally_sdk.DeadlineExceededError):
        return f"Tally at {server} did not answer in time; try a larger --timeout."
    if isinstance(error, tally_sdk.UnauthenticatedError):
        return f"{error.message}: pass an API key with --api-key or TALLY_API_KEY."
    return str(error)


def run(server: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs an async command body, turning SDK errors into one line on stderr."""
    try:
        return asyncio.run(work())
    except tally_sdk.TallyError as error:
        fail(explain(error, server))


def parse_time(value: str | None, name: str) -> datetime | None:
    """An RFC 3339 time or a date (midnight UTC); times without a zone are UTC."""
    if value is None:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        except ValueError:
            fail(f"{name}: {value!r} is not a time; use RFC 3339 (2025-01-31T12:00:00Z) or a date (2025-01-31)")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
