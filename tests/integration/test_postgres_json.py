"""JSONB columns through the engine Tally makes (`adapters.postgres.db.create_engine`, which writes
JSON with orjson): values come back as they went in, also integers past 64 bits (which orjson does
not write: the standard library does) and numbers past a double."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.stack import engine_with_tables

_DOCUMENTS = Table("json_documents", MetaData(), Column("id", Integer, primary_key=True), Column("doc", JSONB))


@pytest_asyncio.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    async with engine_with_tables(_DOCUMENTS.metadata) as engine:
        yield engine


async def _round_trip(engine: AsyncEngine, row_id: int, document: Any) -> Any:
    async with engine.begin() as connection:
        await connection.execute(insert(_DOCUMENTS).values(id=row_id, doc=document))
        return (await connection.execute(select(_DOCUMENTS.c.doc).where(_DOCUMENTS.c.id == row_id))).scalar_one()


@pytest.mark.parametrize(
    "document",
    [
        {"plain": "text", "amount": "12.50", "n": 3, "f": 0.1, "nested": [{"a": None, "b": True}]},
        {"past_64_bits": 123456789012345678901234567890, "negative": -(2**70)},
        {"id_like": "01234567890123456789012345"},
        [1, 2.5, "three", {"four": [5]}],
        {"unicode": "grüße ✓", "empty": {}},
    ],
)
async def test_a_document_comes_back_as_written(engine: AsyncEngine, document: Any) -> None:
    row_id = abs(hash(repr(document))) % 1_000_000_000
    assert await _round_trip(engine, row_id, document) == document


async def test_non_string_keys_are_written_as_strings(engine: AsyncEngine) -> None:
    assert await _round_trip(engine, 1, {1: "one", "two": 2}) == {"1": "one", "two": 2}


async def test_a_number_past_a_double_stored_by_postgres_is_read(engine: AsyncEngine) -> None:
    # Postgres keeps JSONB numbers as numeric (1e400 comes back as its 401 digits): a value no
    # double holds can be in a column, and it is read exactly.
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO json_documents (id, doc) VALUES (2, '{\"huge\": 1e400}')"))
        read = (await connection.execute(select(_DOCUMENTS.c.doc).where(_DOCUMENTS.c.id == 2))).scalar_one()
    assert read == {"huge": 10**400}
