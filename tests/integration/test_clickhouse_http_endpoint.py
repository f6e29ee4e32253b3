"""The test suite's ClickHouse HTTP endpoint answers clickhouse-connect the way a server does.

The adapter's own integration tests run over it (event_store.KINDS); these check the transport
promises they rely on and that docs/clickhouse-http-endpoint.md states: bound parameters, per-request
settings, every compression clickhouse-connect negotiates, insert deduplication tokens, and errors
carrying ClickHouse's code in the header and the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import clickhouse_connect
import httpx
import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from adapters.clickhouse.client import ClickHouse
from adapters.clickhouse.events import ClickHouseEventStore
from domain.metering.events import Event, epoch_ms
from tests.support.services import ClickHouseHttp, require_module

require_module("chdb")


@pytest.fixture(scope="module")
def database(clickhouse_http: ClickHouseHttp) -> Iterator[str]:
    admin = clickhouse_connect.get_client(host="127.0.0.1", port=clickhouse_http.port)
    admin.command("CREATE DATABASE IF NOT EXISTS endpoint_checks")
    admin.command(
        "CREATE TABLE IF NOT EXISTS endpoint_checks.t (k String, v Float64, at DateTime64(3, 'UTC')) "
        "ENGINE = MergeTree ORDER BY k SETTINGS non_replicated_deduplication_window = 100"
    )
    admin.close()
    yield "endpoint_checks"


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip", False])
def test_round_trip_with_each_compression(clickhouse_http: ClickHouseHttp, database: str, compress: str | bool) -> None:
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=clickhouse_http.port, database=database, compress=compress
    )
    key = f"c-{compress}"
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    client.insert_arrow(
        "t",
        pa.table({"k": [key] * 3, "v": [1.5, 2.0, -0.25], "at": pa.array([at] * 3, pa.timestamp("ms", tz="UTC"))}),
    )
    rows = client.query(
        "SELECT k, sum(v), count(), max(at) FROM t WHERE k = {k:String} GROUP BY k", parameters={"k": key}
    ).result_rows
    assert rows[0][:3] == (key, 3.25, 3)
    assert rows[0][3].replace(tzinfo=UTC) == at
    # A large answer goes through the compressed response path whole.
    assert client.query("SELECT sum(number) FROM numbers(200000)").result_rows == [(199999 * 200000 // 2,)]
    client.close()


def test_settings_apply_to_one_request_only(clickhouse_http: ClickHouseHttp, database: str) -> None:
    client = clickhouse_connect.get_client(host="127.0.0.1", port=clickhouse_http.port, database=database)
    assert client.query("SELECT getSetting('max_threads')", settings={"max_threads": 1}).result_rows == [(1,)]
    assert client.query("SELECT getSetting('max_threads')").result_rows != [(1,)]
    with pytest.raises(DatabaseError) as failure:
        client.query("SELECT 1", settings={"max_threads": "many"})
    assert failure.value.code is not None
    client.close()


async def test_insert_deduplication_token_drops_a_replayed_insert(
    clickhouse_http: ClickHouseHttp, database: str
) -> None:
    store = ClickHouse(f"http://default@127.0.0.1:{clickhouse_http.port}/{database}")
    table = pa.table({"k": ["dedup"], "v": [1.0], "at": pa.array([datetime.now(UTC)], pa.timestamp("ms", tz="UTC"))})
    for _ in range(2):
        await store.insert_arrow("t", table, {"insert_deduplication_token": "batch-42"})
    assert await store.query("SELECT count() FROM t WHERE k = 'dedup'") == [(1,)]
    store.close()


def test_errors_carry_clickhouse_codes(clickhouse_http: ClickHouseHttp, database: str) -> None:
    client = clickhouse_connect.get_client(host="127.0.0.1", port=clickhouse_http.port, database=database)
    with pytest.raises(DatabaseError) as failure:
        client.query("SELECT * FROM no_such_table")
    assert failure.value.code == 60
    assert "UNKNOWN_TABLE" in str(failure.value)
    with pytest.raises(DatabaseError) as failure:
        client.command("SELEC 1")
    assert failure.value.code == 62
    client.close()
    # On the wire: the status by kind, the code header, and ClickHouse's text body.
    response = httpx.post(f"http://127.0.0.1:{clickhouse_http.port}/", content=b"SELECT * FROM nowhere_at_all")
    assert response.status_code == 404
    assert response.headers["X-ClickHouse-Exception-Code"] == "60"
    assert response.text.startswith("Code: 60. DB::Exception: ")
    assert "(UNKNOWN_TABLE)" in response.text
    assert httpx.get(f"http://127.0.0.1:{clickhouse_http.port}/ping").text == "Ok.\n"


async def test_large_bound_parameters_travel_in_a_form(clickhouse_http: ClickHouseHttp) -> None:
    """A long IN list (recovery looks up thousands of event keys) makes clickhouse-connect send the
    statement and parameters as a multipart form instead of in the URL."""
    admin = clickhouse_connect.get_client(host="127.0.0.1", port=clickhouse_http.port)
    admin.command("CREATE DATABASE IF NOT EXISTS endpoint_keys")
    admin.close()
    clickhouse = ClickHouse(f"http://default@127.0.0.1:{clickhouse_http.port}/endpoint_keys")
    await clickhouse.migrate()
    store = ClickHouseEventStore(clickhouse)
    now = epoch_ms(datetime.now(UTC))
    stored = [Event("ns", f"id-{i}", "t", "src", "s", now, "{}", now) for i in range(0, 6000, 1000)]
    await store.insert(stored, [({}, {})] * len(stored), "keys-batch")
    wanted = [("ns", "src", f"id-{i}") for i in range(6000)]
    assert await store.existing_keys(wanted, "keys-batch") == {("ns", "src", e.id) for e in stored}
    clickhouse.close()


async def test_the_adapter_runs_queries_concurrently_over_http(clickhouse_http: ClickHouseHttp, database: str) -> None:
    """The adapter's thread pool shares one client; over HTTP that must not be one server session
    (clickhouse-connect refuses concurrent queries within a session: the api answered 500s)."""
    store = ClickHouse(f"http://default@127.0.0.1:{clickhouse_http.port}/{database}")
    results = await asyncio.gather(*(store.query("SELECT {n:UInt32} * 2", {"n": n}) for n in range(32)))
    assert [r[0][0] for r in results] == [n * 2 for n in range(32)]
    store.close()
