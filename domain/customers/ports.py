"""What the customers area needs from storage; adapters/postgres implements it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from domain.customers.models import Customer, CustomerListQuery, Subject


class CustomerRepository(Protocol):
    async def create(self, customer: Customer) -> None:
        """Raises ConflictError when the key or a subject key is taken by a live customer."""
        ...

    async def update(self, customer: Customer) -> None:
        """Same conflicts as `create`; a deleted customer releases its key and subject keys."""
        ...

    async def get(self, namespace: str, id_or_key: str, include_deleted: bool = False) -> Customer | None: ...

    async def resolve(self, namespace: str, ids_or_keys: Sequence[str]) -> dict[str, Customer]:
        """What `get` finds for each of `ids_or_keys`, in one read, keyed by what was asked; the
        ones found by neither are absent."""
        ...

    async def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Customer]:
        """The customers among `ids` (deleted ones included), by ID, in one read."""
        ...

    async def list_customers(self, namespace: str, query: CustomerListQuery) -> tuple[list[Customer], int]: ...

    async def by_subject(self, namespace: str, subject_key: str) -> Customer | None:
        """The live customer whose key or usage-attribution subject keys include `subject_key`."""
        ...

    async def owners(self, namespace: str, subject_keys: Sequence[str]) -> dict[str, str]:
        """subject key -> ID of the live customer that owns it, for the keys that are taken."""
        ...


class SubjectRepository(Protocol):
    async def upsert(self, subjects: Sequence[Subject]) -> list[Subject]:
        """Creates the subjects whose keys are new and updates the others, as stored afterwards.
        An update writes only the optional fields that are set (not None): OpenMeter's upsert
        changes only the fields a request carries."""
        ...

    async def list_subjects(self, namespace: str) -> list[Subject]: ...

    async def get(self, namespace: str, id_or_key: str) -> Subject | None: ...

    async def by_keys(self, namespace: str, keys: Sequence[str]) -> list[Subject]:
        """The subjects with these keys, in one read."""
        ...

    async def delete(self, namespace: str, subject_id: str) -> None: ...
