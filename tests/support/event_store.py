"""The two ways tests reach the event store: chDB in the test process, or the ClickHouse HTTP endpoint.

Integration tests of the ClickHouse adapter take the `event_store_kind` parameter ("chdb", "http")
so that every one of them runs over the embedded engine and over clickhouse-connect's HTTP client,
the path production uses. Over HTTP each module gets a database of its own on the shared endpoint.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import clickhouse_connect
import pytest

from tests.support.services import ClickHouseHttp

KINDS = ("chdb", "http")
_databases = itertools.count()


def event_store_url(request: pytest.FixtureRequest, kind: str, tmp: Path, name: str) -> str:
    """A ClickHouse URL for Tally's adapter (ClickHouse(url)): a chDB directory or an HTTP database."""
    if kind == "chdb":
        return f"chdb://{tmp / 'events'}"
    endpoint: ClickHouseHttp = request.getfixturevalue("clickhouse_http")
    database = f"{name}_{os.getpid()}_{next(_databases)}"
    admin = clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port)
    admin.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    admin.close()
    return f"http://default@127.0.0.1:{endpoint.port}/{database}"


def client(request: pytest.FixtureRequest, kind: str, tmp: Path, name: str) -> clickhouse_connect.driver.Client:
    """A clickhouse-connect client on a fresh event store of this kind."""
    return client_at(event_store_url(request, kind, tmp, name))


def client_at(url: str) -> clickhouse_connect.driver.Client:
    """A clickhouse-connect client on the event store at an `event_store_url`."""
    if url.startswith("chdb://"):
        return clickhouse_connect.get_client(dsn=url)
    port = int(url.split(":")[2].split("/")[0])
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, database=url.rsplit("/", 1)[1])
