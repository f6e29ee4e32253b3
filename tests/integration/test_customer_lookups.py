"""Customers resolved by ID or key, many at once, on real Postgres: what `get` finds for each, in one
statement however many were asked (meter queries' and entitlement lists' customer filters)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.postgres.customers import PostgresCustomerRepository
from adapters.postgres.db import session_factory
from domain.customers.models import CustomerInput
from domain.customers.service import CustomerService
from tests.support.stack import migrated_engine, statements_run

NS = "default"


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(pool_size=2) as engine:
        yield engine


async def test_many_ids_and_keys_resolve_as_each_alone_in_one_statement(engine: AsyncEngine) -> None:
    repository = PostgresCustomerRepository(session_factory(engine))
    customers = CustomerService(repository)
    acme = await customers.create(NS, CustomerInput(name="Acme", key="acme"))
    keyless = await customers.create(NS, CustomerInput(name="No key", subject_keys=["no-key-subject"]))
    gone = await customers.create(NS, CustomerInput(name="Gone", key="gone"))
    await customers.delete(NS, gone.id)
    # A live customer whose key is another customer's ID: asked for that ID, the ID wins.
    shadow = await customers.create(NS, CustomerInput(name="Shadow", key=acme.id.lower()))
    bystanders = [await customers.create(NS, CustomerInput(name=f"c{i}", key=f"c{i}")) for i in range(30)]

    asked = [acme.id, "acme", keyless.id, gone.id, "gone", "nobody", acme.id.lower(), "acme"]
    alone = {token: c for token in dict.fromkeys(asked) if (c := await repository.get(NS, token))}
    with statements_run(engine) as few:
        found = await customers.resolve(NS, asked)
    # Each as `get` finds it alone, deleted ones left out (by ID or by key), unknown ones absent.
    assert found == {t: c for t, c in alone.items() if c.deleted_at is None}
    assert {t: c.id for t, c in found.items()} == {
        acme.id: acme.id,
        "acme": acme.id,
        keyless.id: keyless.id,
        acme.id.lower(): shadow.id,
    }
    with statements_run(engine) as many:
        assert len(await customers.resolve(NS, [*asked, *(b.key or "" for b in bystanders)])) == 4 + 30
    assert len(few) == len(many) == 1
