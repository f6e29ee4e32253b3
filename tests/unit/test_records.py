"""`evolve` (domain/records.py) gives what `dataclasses.replace` gives, for the billing records it
copies on the billing run's hot path and for the classes it leaves to `dataclasses.replace`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.billing.invoices import InvoiceLine, LineStatus, LineType, ManagedBy, SubscriptionRef
from domain.records import evolve

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 2, 1, tzinfo=UTC)


def line() -> InvoiceLine:
    return InvoiceLine(
        id="l1",
        namespace="ns",
        invoice_id="inv",
        type=LineType.USAGE_BASED,
        status=LineStatus.VALID,
        managed_by=ManagedBy.SYSTEM,
        name="calls",
        currency="USD",
        period_start=T0,
        period_end=T1,
        invoice_at=T1,
        created_at=T0,
        updated_at=T0,
        quantity=Decimal("3"),
        metadata={"a": "b"},
    )


def test_every_field_changed_or_kept_as_replace_does() -> None:
    original = line()
    for f in dataclasses.fields(InvoiceLine):
        value = object()
        got, want = evolve(original, **{f.name: value}), dataclasses.replace(original, **{f.name: value})
        assert type(got) is InvoiceLine
        assert all(getattr(got, g.name) is getattr(want, g.name) for g in dataclasses.fields(InvoiceLine)), f.name
    assert evolve(original) == original and evolve(original) is not original
    assert evolve(original, quantity=Decimal("4"), updated_at=T1) == dataclasses.replace(
        original, quantity=Decimal("4"), updated_at=T1
    )
    assert original.quantity == Decimal("3") and original.updated_at == T0


def test_the_copy_is_as_frozen_and_hashable_as_the_record() -> None:
    ref = SubscriptionRef("s", "p", "i")
    copied = evolve(ref, item_id="j")
    assert copied == SubscriptionRef("s", "p", "j") and hash(copied) == hash(SubscriptionRef("s", "p", "j"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        copied.item_id = "k"  # type: ignore[misc]


def test_an_unknown_field_is_refused_as_replace_refuses_it() -> None:
    with pytest.raises(TypeError, match="quantityy"):
        evolve(line(), quantityy=Decimal(1))


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low > high")


def test_a_record_with_post_init_still_goes_through_it() -> None:
    assert evolve(Checked(1, 2), high=3) == Checked(1, 3)
    with pytest.raises(ValueError, match="low > high"):
        evolve(Checked(1, 2), low=5)
