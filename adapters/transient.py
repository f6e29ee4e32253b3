"""Which infrastructure failures are transient (a store restarting, a connection dropped).

The gRPC layer answers those with UNAVAILABLE / 503 so clients retry, instead of INTERNAL / 500;
nothing was acknowledged, so a retry loses and doubles nothing.
"""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from clickhouse_connect.driver.exceptions import OperationalError as ClickHouseOperationalError
from sqlalchemy import exc as sa

_TRANSIENT: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    sa.OperationalError,
    sa.InterfaceError,
    sa.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    KafkaConnectionError,
    KafkaTimeoutError,
    ClickHouseOperationalError,
)


def is_transient(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, _TRANSIENT):
            return True
        if isinstance(current, sa.DBAPIError) and current.connection_invalidated:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
