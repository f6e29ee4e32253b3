"""Customers and subjects: the domain types and the inputs that create or change them.

A customer owns the usage of every event whose subject is its `key` or one of its usage-attribution
`subject_keys`; a subject key belongs to at most one live customer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from domain.catalog.currencies import lookup as lookup_currency
from domain.errors import Violations
from domain.pagination import Pagination, SortOrder, parse_order, parse_order_by
from domain.wiretime import rfc3339

MAX_NAME_LENGTH: Final = 256
MAX_KEY_LENGTH: Final = 256
MAX_DESCRIPTION_LENGTH: Final = 1024
CURRENCY_RE: Final = re.compile(r"^[A-Z]{3}$")
COUNTRY_RE: Final = re.compile(r"^[A-Z]{2}$")
ULID_RE: Final = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")
CUSTOMER_ORDER_BY: Final = ("id", "name", "createdAt")


@dataclass(frozen=True, slots=True)
class Address:
    country: str | None = None
    postal_code: str | None = None
    state: str | None = None
    city: str | None = None
    line1: str | None = None
    line2: str | None = None
    phone_number: str | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__slots__)

    def as_dict(self) -> dict[str, str]:
        return {name: value for name in self.__slots__ if (value := getattr(self, name)) is not None}

    def overlaid(self, other: Address) -> Address:
        """This address with the fields `other` sets taken from it (OpenMeter's replace sets each
        address field only when the new address carries it)."""
        return Address(
            **{
                name: getattr(self, name) if getattr(other, name) is None else getattr(other, name)
                for name in self.__slots__
            }
        )

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> Address | None:
        if not value:
            return None
        return cls(**{k: v for k, v in value.items() if k in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    namespace: str
    name: str
    created_at: datetime
    updated_at: datetime
    key: str | None = None
    subject_keys: tuple[str, ...] = ()
    description: str | None = None
    primary_email: str | None = None
    currency: str | None = None
    billing_address: Address | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    deleted_at: datetime | None = None

    @property
    def usage_subjects(self) -> tuple[str, ...]:
        """Every event subject that counts for this customer: its key and its subject keys."""
        keys = ([self.key] if self.key else []) + list(self.subject_keys)
        return tuple(dict.fromkeys(keys))

    def rest(self) -> dict[str, Any]:
        """OpenMeter's Customer JSON (for event payloads)."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "usageAttribution": {"subjectKeys": list(self.subject_keys)},
            "metadata": dict(self.metadata),
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
        }
        for name, value in (
            ("key", self.key),
            ("description", self.description),
            ("primaryEmail", self.primary_email),
            ("currency", self.currency),
        ):
            if value is not None:
                out[name] = value
        if self.billing_address is not None:
            out["billingAddress"] = {_camel(k): v for k, v in self.billing_address.as_dict().items()}
        if self.deleted_at is not None:
            out["deletedAt"] = rfc3339(self.deleted_at)
        return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True, slots=True)
class CustomerInput:
    """CustomerCreate and CustomerReplaceUpdate share their fields and rules."""

    name: str
    key: str | None = None
    subject_keys: Sequence[str] = ()
    description: str | None = None
    primary_email: str | None = None
    currency: str | None = None
    billing_address: Address | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Whether the request carried usageAttribution at all: OpenMeter's update guards look at the
    # subject keys only when it did (an absent one still replaces them with none).
    usage_attribution_given: bool = True

    def validate(self) -> None:
        v = Violations()
        if not self.name or len(self.name) > MAX_NAME_LENGTH:
            v.add("name", f"must be 1 to {MAX_NAME_LENGTH} characters", "invalid_length")
        if self.key is not None and not 1 <= len(self.key) <= MAX_KEY_LENGTH:
            v.add("key", f"must be 1 to {MAX_KEY_LENGTH} characters", "invalid_length")
        if not self.key and not self.subject_keys:
            v.add("usageAttribution.subjectKeys", "either key or usageAttribution.subjectKeys is required", "required")
        for i, subject in enumerate(self.subject_keys):
            if not subject or len(subject) > MAX_KEY_LENGTH:
                v.add(f"usageAttribution.subjectKeys[{i}]", f"must be 1 to {MAX_KEY_LENGTH} characters")
        if len(set(self.subject_keys)) != len(self.subject_keys):
            v.add("usageAttribution.subjectKeys", "subject keys must be unique", "duplicate")
        if self.description is not None and len(self.description) > MAX_DESCRIPTION_LENGTH:
            v.add("description", f"must be at most {MAX_DESCRIPTION_LENGTH} characters", "invalid_length")
        # OpenMeter's validateCustomerCurrency: a known fiat code, not just three capital letters
        # (an invoice for the customer is rounded to the currency's minor units).
        if self.currency is not None and (
            not CURRENCY_RE.match(self.currency) or lookup_currency(self.currency) is None
        ):
            v.add("currency", "must be an ISO 4217 code such as USD", "invalid_currency")
        if self.primary_email is not None and "@" not in self.primary_email:
            v.add("primaryEmail", "must be an email address", "invalid_email")
        address = self.billing_address
        if address is not None and address.country is not None and not COUNTRY_RE.match(address.country):
            v.add("billingAddress.country", "must be an ISO 3166-1 alpha-2 code such as US", "invalid_country")
        v.raise_if_any()


@dataclass(frozen=True, slots=True)
class CustomerListQuery:
    pagination: Pagination
    order: SortOrder
    order_by: str
    include_deleted: bool = False
    key: str | None = None
    name: str | None = None
    primary_email: str | None = None
    subject: str | None = None
    # Customers with a subscription to this plan (key) in force at `at`.
    plan_key: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ListCustomersInput:
    page: int | None = None
    page_size: int | None = None
    order: str | None = None
    order_by: str | None = None
    include_deleted: bool = False
    key: str | None = None
    name: str | None = None
    primary_email: str | None = None
    subject: str | None = None
    plan_key: str | None = None

    def validate(self, at: datetime | None = None) -> CustomerListQuery:
        pagination = Pagination(page=self.page, page_size=self.page_size).validate().paged()
        order = parse_order(self.order)
        # OpenMeter's listCustomers sorts by name unless orderBy says otherwise.
        order_by = parse_order_by(self.order_by, CUSTOMER_ORDER_BY, "name")
        return CustomerListQuery(
            pagination=pagination,
            order=order,
            order_by=order_by,
            include_deleted=self.include_deleted,
            key=self.key or None,
            name=self.name or None,
            primary_email=self.primary_email or None,
            subject=self.subject or None,
            plan_key=self.plan_key or None,
            at=at,
        )


@dataclass(frozen=True, slots=True)
class Subject:
    id: str
    namespace: str
    key: str
    created_at: datetime
    updated_at: datetime
    display_name: str | None = None
    metadata: Mapping[str, Any] | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    stripe_customer_id: str | None = None

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "key": self.key,
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
        }
        if self.display_name is not None:
            out["displayName"] = self.display_name
        if self.metadata is not None:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True, slots=True)
class SubjectUpsertInput:
    key: str
    display_name: str | None = None
    metadata: Mapping[str, Any] | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    stripe_customer_id: str | None = None

    def validate(self, location: str = "") -> None:
        v = Violations()
        if not self.key or len(self.key) > MAX_KEY_LENGTH:
            v.add(f"{location}key", f"must be 1 to {MAX_KEY_LENGTH} characters", "invalid_length")
        # A Stripe customer ID, as OpenMeter's upsertSubject checks it (its prefix).
        if self.stripe_customer_id is not None and not self.stripe_customer_id.startswith("cus_"):
            v.add(f"{location}stripeCustomerId", "must start with cus_ when set", "invalid_format")
        v.raise_if_any()
