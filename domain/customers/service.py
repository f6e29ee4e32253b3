"""Customer and subject use cases, and the customer lookups other areas rely on."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from ulid import ULID

from domain.customers.models import (
    Customer,
    CustomerInput,
    ListCustomersInput,
    Subject,
    SubjectUpsertInput,
)
from domain.customers.ports import CustomerRepository, SubjectRepository
from domain.errors import ConflictError, NotFoundError, PreconditionFailedError, ValidationError

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class CustomerService:
    def __init__(self, customers: CustomerRepository, clock: Clock = utcnow) -> None:
        self._customers = customers
        self._clock = clock
        # Called after every customer write (the entitlement value cache drops its look-ups).
        self.listeners: list[Callable[[], None]] = []
        # Asked before a customer is deleted; each raises (ConflictError or ValidationError) to
        # refuse, as OpenMeter's customer request validators do: entitlements refuse while any is
        # active, subscriptions while one is, billing while an invoice is open. Areas that build on customers register here, so this one imports none.
        self.delete_guards: list[Callable[[str, Customer], Awaitable[None]]] = []
        # Asked before a customer is replaced, with the customer as stored and the replacement; each
        # raises to refuse, as OpenMeter's update validators do (subscriptions: the subject keys stay
        # while one is in force).
        self.update_guards: list[Callable[[str, Customer, CustomerInput], Awaitable[None]]] = []
        # Awaited with the customer as stored after a create or update (SubjectService.provision).
        self.after_write: list[Callable[[str, Customer], Awaitable[None]]] = []

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    async def _written(self, namespace: str, customer: Customer) -> None:
        for hook in self.after_write:
            await hook(namespace, customer)
        self._changed()

    async def create(self, namespace: str, data: CustomerInput) -> Customer:
        data.validate()
        await self._check_conflicts(namespace, data, None)
        now = self._clock()
        customer = Customer(
            id=str(ULID()),
            namespace=namespace,
            name=data.name,
            key=data.key,
            subject_keys=tuple(data.subject_keys),
            description=data.description,
            primary_email=data.primary_email,
            currency=data.currency,
            billing_address=data.billing_address,
            metadata=dict(data.metadata),
            created_at=now,
            updated_at=now,
        )
        await self._customers.create(customer)
        await self._written(namespace, customer)
        return customer

    async def get(self, namespace: str, id_or_key: str) -> Customer:
        customer = await self._customers.get(namespace, id_or_key)
        if customer is None:
            raise NotFoundError("customer", id_or_key)
        return customer

    async def get_many(self, namespace: str, ids: Sequence[str]) -> dict[str, Customer]:
        """Customers by ID (deleted ones included) in one read; unknown IDs are absent."""
        return await self._customers.get_many(namespace, list(dict.fromkeys(ids)))

    async def get_live(self, namespace: str, id_or_key: str) -> Customer:
        customer = await self.get(namespace, id_or_key)
        if customer.deleted_at is not None:
            raise NotFoundError("customer", id_or_key)
        return customer

    async def get_undeleted(self, namespace: str, id_or_key: str) -> Customer:
        """The customer a write or a customer-scoped read names: a deleted one is found by its ID (as
        get finds it) and refused with 412, as OpenMeter's customer and customer entitlement
        handlers answer "customer is deleted"."""
        customer = await self.get(namespace, id_or_key)
        if customer.deleted_at is not None:
            raise PreconditionFailedError(f"customer {customer.id} is deleted")
        return customer

    async def adopt_currency(self, namespace: str, customer_id: str, currency: str) -> None:
        """Gives a customer without a currency this one; one with a currency keeps it. A paid
        subscription does this (OpenMeter's subscription service: updateCustomerCurrencyIfNotSet),
        so the customer is billed in one currency from then on."""
        customer = await self.get(namespace, customer_id)
        if customer.currency is not None or customer.deleted_at is not None:
            return
        updated = dataclasses.replace(customer, currency=currency, updated_at=self._clock())
        await self._customers.update(updated)
        await self._written(namespace, updated)

    async def list_customers(self, namespace: str, data: ListCustomersInput) -> tuple[list[Customer], int, int, int]:
        query = data.validate(self._clock())
        items, total = await self._customers.list_customers(namespace, query)
        return items, total, query.pagination.effective_page, query.pagination.effective_page_size

    async def update(self, namespace: str, id_or_key: str, data: CustomerInput) -> Customer:
        customer = await self.get_undeleted(namespace, id_or_key)
        data.validate()
        for guard in self.update_guards:
            await guard(namespace, customer, data)
        await self._check_conflicts(namespace, data, customer.id)
        # OpenMeter's replace leaves primaryEmail, currency and each billing address field as they
        # are when the replacement leaves them out; an absent billingAddress clears the address.
        address = data.billing_address
        if address is not None and customer.billing_address is not None:
            address = customer.billing_address.overlaid(address)
        updated = dataclasses.replace(
            customer,
            name=data.name,
            key=data.key,
            subject_keys=tuple(data.subject_keys),
            description=data.description,
            primary_email=data.primary_email if data.primary_email is not None else customer.primary_email,
            currency=data.currency if data.currency is not None else customer.currency,
            billing_address=address,
            metadata=dict(data.metadata),
            updated_at=self._clock(),
        )
        await self._customers.update(updated)
        await self._written(namespace, updated)
        return updated

    async def delete(self, namespace: str, id_or_key: str) -> Customer:
        customer = await self.get_undeleted(namespace, id_or_key)
        # OpenMeter asks every delete validator and joins their refusals; the answer is 409 when one
        # of them is a conflict (active entitlements), else 400 (subscriptions, open invoices).
        refusals: list[ConflictError | ValidationError] = []
        for guard in self.delete_guards:
            try:
                await guard(namespace, customer)
            except (ConflictError, ValidationError) as exc:
                refusals.append(exc)
        if refusals:
            message = "\n".join(r.message for r in refusals)
            if any(isinstance(r, ConflictError) for r in refusals):
                raise ConflictError(message)
            raise ValidationError([], message=message)
        now = self._clock()
        deleted = dataclasses.replace(customer, deleted_at=now, updated_at=now)
        await self._customers.update(deleted)
        self._changed()
        return deleted

    async def by_subject(self, namespace: str, subject_key: str) -> Customer | None:
        return await self._customers.by_subject(namespace, subject_key)

    async def owners(self, namespace: str, subject_keys: Sequence[str]) -> dict[str, str]:
        """Event subject -> ID of the live customer it is attributed to (its key or a subject key)."""
        return await self._customers.owners(namespace, list(dict.fromkeys(subject_keys)))

    async def resolve(self, namespace: str, ids_or_keys: Sequence[str]) -> dict[str, Customer]:
        """The live customers among `ids_or_keys` (IDs or keys), keyed by what was asked."""
        found = await self._customers.resolve(namespace, ids_or_keys)
        return {token: customer for token, customer in found.items() if customer.deleted_at is None}

    async def _check_conflicts(self, namespace: str, data: CustomerInput, own_id: str | None) -> None:
        if data.key:
            existing = await self._customers.get(namespace, data.key)
            # A key that is another customer's ID (deleted ones too, as get finds them by ID) would
            # make /customers/{idOrKey} name two customers: OpenMeter refuses it with 409.
            if existing is not None and existing.id == data.key and existing.id != own_id:
                raise ConflictError(
                    f"key {data.key!r} overlaps with id of another customer", conflicting_id=existing.id
                )
            if (
                existing is not None
                and existing.deleted_at is None
                and existing.id != own_id
                and existing.key == data.key
            ):
                raise ConflictError(f"customer with key {data.key!r} already exists", conflicting_id=existing.id)
        keys = list(dict.fromkeys(([data.key] if data.key else []) + list(data.subject_keys)))
        owners = await self._customers.owners(namespace, keys)
        for subject in keys:
            owner = owners.get(subject)
            if owner is not None and owner != own_id:
                raise ConflictError(
                    f"subject {subject!r} is already attributed to customer {owner}", conflicting_id=owner
                )


class CustomerSubjectResolver:
    """Metering's CustomerResolver over the customer service: ID or key -> (ID, subjects)."""

    def __init__(self, customers: CustomerService) -> None:
        self._customers = customers

    async def resolve(self, namespace: str, ids_or_keys: Sequence[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
        found = await self._customers.resolve(namespace, ids_or_keys)
        return {token: (c.id, c.usage_subjects) for token, c in found.items()}

    async def owners(self, namespace: str, subjects: Sequence[str]) -> dict[str, str]:
        return await self._customers.owners(namespace, subjects)


class SubjectService:
    def __init__(self, subjects: SubjectRepository, clock: Clock = utcnow) -> None:
        self._subjects = subjects
        self._clock = clock

    async def upsert(self, namespace: str, items: Sequence[SubjectUpsertInput]) -> list[Subject]:
        for i, item in enumerate(items):
            item.validate(f"[{i}].")
        if len({item.key for item in items}) != len(items):
            raise ValidationError.single("key", "subject keys must be unique within a request", "duplicate")
        now = self._clock()
        subjects = [
            Subject(
                id=str(ULID()),
                namespace=namespace,
                key=item.key,
                display_name=item.display_name,
                metadata=item.metadata,
                current_period_start=item.current_period_start,
                current_period_end=item.current_period_end,
                stripe_customer_id=item.stripe_customer_id,
                created_at=now,
                updated_at=now,
            )
            for item in items
        ]
        return await self._subjects.upsert(subjects)

    async def provision(self, namespace: str, customer: Customer) -> None:
        """CustomerService after-write hook: each of the customer's usage-attribution keys that is
        not a subject becomes one, marked as OpenMeter's subject provisioner marks it
        (subject/service/hooks/customersubject.go EnsureSubjects); existing subjects stay as they are."""
        known = {s.key for s in await self._subjects.by_keys(namespace, customer.subject_keys)}
        now = self._clock()
        missing = [
            Subject(
                id=str(ULID()),
                namespace=namespace,
                key=key,
                metadata={"createdBy": "subject.provisioner", "customerId": customer.id},
                created_at=now,
                updated_at=now,
            )
            for key in dict.fromkeys(customer.subject_keys)
            if key not in known
        ]
        if missing:
            await self._subjects.upsert(missing)

    async def list_subjects(self, namespace: str) -> list[Subject]:
        return await self._subjects.list_subjects(namespace)

    async def get(self, namespace: str, id_or_key: str) -> Subject:
        subject = await self._subjects.get(namespace, id_or_key)
        if subject is None:
            raise NotFoundError("subject", id_or_key)
        return subject

    async def find(self, namespace: str, id_or_key: str) -> Subject | None:
        return await self._subjects.get(namespace, id_or_key)

    async def display_names(self, namespace: str, keys: Sequence[str]) -> dict[str, str | None]:
        """Metering's SubjectNames: key -> display name of the keys that are subjects."""
        subjects = await self._subjects.by_keys(namespace, list(dict.fromkeys(keys)))
        return {subject.key: subject.display_name for subject in subjects}

    async def delete(self, namespace: str, id_or_key: str) -> None:
        subject = await self.get(namespace, id_or_key)
        await self._subjects.delete(namespace, subject.id)
