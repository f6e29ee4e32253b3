"""Prices, spend commitments and rate-card discounts (OpenMeter's `Price`, `SpendCommitments`, `Discounts`).

Every price is a frozen dataclass with a `type` (the wire discriminator). All amounts and
quantities are `Decimal` and never negative. What a price *charges* is rating.py's business; this
module only says what a valid price is:

- `FlatPrice(amount, payment_term)`: a fixed fee, in advance (default) or in arrears.
- `UnitPrice(amount)`: quantity x amount.
- `TieredPrice(mode, tiers)`: tiers ordered by `up_to_amount` (inclusive upper bound), strictly
  increasing, the last one open-ended (`None`) and only the last; each tier has a flat and/or unit
  component. `volume`: the period's total picks one tier. `graduated`: each unit is priced by the
  tier it falls in, a tier's flat price is charged once the tier is entered.
- `PackagePrice(amount, quantity_per_package)`: ceil(quantity / size) packages x amount.
- `DynamicPrice(multiplier)`: the metered value is already money; charged value x multiplier.
Usage prices (all but flat) carry `Commitments(minimum_amount, maximum_amount)`.
`Discounts(percentage, usage)`: a percentage off each charge (0-100), and/or the first N units free
(usage prices only).

Tally refuses tiers that are out of order, which OpenMeter silently sorts: a tier list whose order
differs from its bounds is almost always a typo in the bounds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Final

from domain.catalog.wire import Obj, Reader, decimal_text, join
from domain.customers.models import ULID_RE

HUNDRED: Final = Decimal(100)


class PriceType(enum.StrEnum):
    FLAT = "flat"
    UNIT = "unit"
    TIERED = "tiered"
    DYNAMIC = "dynamic"
    PACKAGE = "package"


class PaymentTerm(enum.StrEnum):
    IN_ADVANCE = "in_advance"
    IN_ARREARS = "in_arrears"


class TieredMode(enum.StrEnum):
    VOLUME = "volume"
    GRADUATED = "graduated"


@dataclass(frozen=True, slots=True)
class Commitments:
    minimum_amount: Decimal | None = None
    maximum_amount: Decimal | None = None

    def rest(self, out: dict[str, Any]) -> None:
        if self.minimum_amount is not None:
            out["minimumAmount"] = decimal_text(self.minimum_amount)
        if self.maximum_amount is not None:
            out["maximumAmount"] = decimal_text(self.maximum_amount)


NO_COMMITMENTS: Final = Commitments()


@dataclass(frozen=True, slots=True)
class FlatPrice:
    amount: Decimal
    payment_term: PaymentTerm = PaymentTerm.IN_ADVANCE
    type: ClassVar[PriceType] = PriceType.FLAT
    commitments: ClassVar[Commitments] = NO_COMMITMENTS

    def rest(self) -> dict[str, Any]:
        return {"type": "flat", "amount": decimal_text(self.amount), "paymentTerm": self.payment_term.value}


@dataclass(frozen=True, slots=True)
class UnitPrice:
    amount: Decimal
    commitments: Commitments = NO_COMMITMENTS
    type: ClassVar[PriceType] = PriceType.UNIT

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "unit", "amount": decimal_text(self.amount)}
        self.commitments.rest(out)
        return out


@dataclass(frozen=True, slots=True)
class PriceTier:
    up_to_amount: Decimal | None = None
    flat_price: Decimal | None = None
    unit_price: Decimal | None = None

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "flatPrice": None if self.flat_price is None else {"type": "flat", "amount": decimal_text(self.flat_price)},
            "unitPrice": None if self.unit_price is None else {"type": "unit", "amount": decimal_text(self.unit_price)},
        }
        if self.up_to_amount is not None:
            out["upToAmount"] = decimal_text(self.up_to_amount)
        return out


@dataclass(frozen=True, slots=True)
class TieredPrice:
    mode: TieredMode
    tiers: tuple[PriceTier, ...]
    commitments: Commitments = NO_COMMITMENTS
    type: ClassVar[PriceType] = PriceType.TIERED

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "tiered", "mode": self.mode.value, "tiers": [t.rest() for t in self.tiers]}
        self.commitments.rest(out)
        return out


@dataclass(frozen=True, slots=True)
class PackagePrice:
    amount: Decimal
    quantity_per_package: Decimal
    commitments: Commitments = NO_COMMITMENTS
    type: ClassVar[PriceType] = PriceType.PACKAGE

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "package",
            "amount": decimal_text(self.amount),
            "quantityPerPackage": decimal_text(self.quantity_per_package),
        }
        self.commitments.rest(out)
        return out


@dataclass(frozen=True, slots=True)
class DynamicPrice:
    multiplier: Decimal = Decimal(1)
    commitments: Commitments = NO_COMMITMENTS
    type: ClassVar[PriceType] = PriceType.DYNAMIC

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "dynamic", "multiplier": decimal_text(self.multiplier)}
        self.commitments.rest(out)
        return out


Price = FlatPrice | UnitPrice | TieredPrice | PackagePrice | DynamicPrice
UsagePrice = UnitPrice | TieredPrice | PackagePrice | DynamicPrice


def allows_progressive_billing(price: Price) -> bool:
    """Whether a period's usage under this price may be invoiced in several parts (progressive
    billing). Flat fees are never split; volume tiers price the period's total, known only at its end."""
    if isinstance(price, FlatPrice):
        return False
    return not (isinstance(price, TieredPrice) and price.mode is TieredMode.VOLUME)


@dataclass(frozen=True, slots=True)
class Discounts:
    percentage: Decimal | None = None
    usage_quantity: Decimal | None = None
    # An invoice line's discounts only (OpenMeter's BillingDiscounts): the ULIDs that link a
    # discount across the invoices of one period (progressive billing). Rating ignores them.
    percentage_correlation_id: str | None = None
    usage_correlation_id: str | None = None

    def is_empty(self) -> bool:
        return self.percentage is None and self.usage_quantity is None

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.percentage is not None:
            out["percentage"] = {"percentage": float(self.percentage)}
            if self.percentage_correlation_id is not None:
                out["percentage"]["correlationId"] = self.percentage_correlation_id
        if self.usage_quantity is not None:
            out["usage"] = {"quantity": decimal_text(self.usage_quantity)}
            if self.usage_correlation_id is not None:
                out["usage"]["correlationId"] = self.usage_correlation_id
        return out


NO_DISCOUNTS: Final = Discounts()


# --- reading from the wire -------------------------------------------------------------------


def parse_commitments(r: Reader, data: Obj, path: str) -> Commitments:
    minimum = r.decimal(data, "minimumAmount", path)
    maximum = r.decimal(data, "maximumAmount", path)
    if minimum is not None and maximum is not None and minimum > maximum:
        r.issues.error(join(path, "minimumAmount"), "must not be greater than maximumAmount", "minimum_above_maximum")
    if minimum is None and maximum is None:
        return NO_COMMITMENTS
    return Commitments(minimum, maximum)


def _component(r: Reader, data: Obj, name: str, path: str, expected: str) -> Decimal | None:
    value = data.get(name)
    if value is None:
        return None
    where = join(path, name)
    obj = r.obj(value, where)
    if obj is None:
        return None
    kind = obj.get("type")
    if kind is not None and kind != expected:
        r.issues.error(join(where, "type"), f"must be {expected}", "invalid_enum")
    return r.decimal(obj, "amount", where, required=True)


def _tiers(r: Reader, data: Obj, path: str) -> tuple[PriceTier, ...]:
    raw = r.list(data, "tiers", path, required=True)
    tiers_path = join(path, "tiers")
    if not raw and "tiers" in data:
        r.issues.error(tiers_path, "at least one tier is required", "required")
    tiers: list[PriceTier] = []
    previous: Decimal | None = None
    open_ended: list[int] = []
    for index, item in enumerate(raw):
        where = f"{tiers_path}[{index}]"
        obj = r.obj(item, where)
        if obj is None:
            continue
        up_to = r.decimal(obj, "upToAmount", where)
        flat = _component(r, obj, "flatPrice", where, "flat")
        unit = _component(r, obj, "unitPrice", where, "unit")
        if obj.get("flatPrice") is None and obj.get("unitPrice") is None:
            r.issues.error(where, "a tier needs a flatPrice, a unitPrice or both", "tier_without_price")
        if up_to is None and obj.get("upToAmount") in (None, ""):
            open_ended.append(index)
        elif up_to is not None:
            if up_to == 0:
                r.issues.error(join(where, "upToAmount"), "must be greater than zero", "not_positive")
            elif previous is not None and up_to <= previous:
                r.issues.error(
                    join(where, "upToAmount"),
                    f"tiers must be in increasing order of upToAmount (previous tier ends at {decimal_text(previous)})",
                    "tiers_out_of_order",
                )
            previous = up_to if previous is None or up_to > previous else previous
        tiers.append(PriceTier(up_to, flat, unit))
    if raw and not open_ended:
        r.issues.error(
            f"{tiers_path}[{len(raw) - 1}].upToAmount",
            "the last tier must be open-ended (no upToAmount)",
            "missing_open_ended_tier",
        )
    for index in open_ended:
        if index != len(raw) - 1:
            r.issues.error(
                f"{tiers_path}[{index}].upToAmount", "only the last tier may be open-ended", "open_ended_tier_not_last"
            )
    return tuple(tiers)


def parse_price(r: Reader, data: Any, path: str, allow_usage: bool) -> Price | None:
    """A price object; `allow_usage` False for flat-fee rate cards (flat prices only)."""
    obj = r.obj(data, path)
    if obj is None:
        return None
    kind = r.choice(obj, "type", path, tuple(t.value for t in PriceType), required=True)
    if kind is None:
        return None
    if kind != PriceType.FLAT and not allow_usage:
        r.issues.error(
            join(path, "type"), "a flat_fee rate card takes a flat price only", "rate_card_only_flat_price_allowed"
        )
        return None
    match PriceType(kind):
        case PriceType.FLAT:
            amount = r.decimal(obj, "amount", path, required=True)
            term = r.choice(obj, "paymentTerm", path, tuple(t.value for t in PaymentTerm))
            if amount is None:
                return None
            return FlatPrice(amount, PaymentTerm(term) if term else PaymentTerm.IN_ADVANCE)
        case PriceType.UNIT:
            amount = r.decimal(obj, "amount", path, required=True)
            commitments = parse_commitments(r, obj, path)
            return None if amount is None else UnitPrice(amount, commitments)
        case PriceType.TIERED:
            mode = r.choice(obj, "mode", path, tuple(m.value for m in TieredMode), required=True)
            tiers = _tiers(r, obj, path)
            commitments = parse_commitments(r, obj, path)
            return None if mode is None else TieredPrice(TieredMode(mode), tiers, commitments)
        case PriceType.PACKAGE:
            amount = r.decimal(obj, "amount", path, required=True)
            size = r.decimal(obj, "quantityPerPackage", path, required=True, positive=True)
            commitments = parse_commitments(r, obj, path)
            if amount is None or size is None:
                return None
            return PackagePrice(amount, size, commitments)
        case PriceType.DYNAMIC:
            multiplier = r.decimal(obj, "multiplier", path)
            commitments = parse_commitments(r, obj, path)
            return DynamicPrice(Decimal(1) if multiplier is None else multiplier, commitments)
    return None  # pragma: no cover - the match is exhaustive


def _correlation_id(r: Reader, data: Obj, path: str) -> str | None:
    value = r.string(data, "correlationId", path)
    if value is not None and not ULID_RE.match(value):
        r.issues.error(join(path, "correlationId"), "must be a ULID", "invalid_id")
        return None
    return value


def parse_discounts(r: Reader, data: Any, path: str, price: Price | None, correlated: bool = False) -> Discounts:
    """A rate card's discounts; `correlated` (an invoice line's) reads each one's correlationId too."""
    obj = r.obj(data, path, required=False)
    if obj is None:
        return NO_DISCOUNTS
    percentage: Decimal | None = None
    usage: Decimal | None = None
    pct_correlation = usage_correlation = None
    raw_pct = r.obj(obj.get("percentage"), join(path, "percentage"), required=False)
    if raw_pct is not None:
        where = join(path, "percentage")
        percentage = r.decimal(raw_pct, "percentage", where, required=True)
        if percentage is not None and percentage > HUNDRED:
            r.issues.error(join(where, "percentage"), "must be between 0 and 100", "percentage_discount_invalid_value")
            percentage = None
        pct_correlation = _correlation_id(r, raw_pct, where) if correlated else None
    raw_usage = r.obj(obj.get("usage"), join(path, "usage"), required=False)
    if raw_usage is not None:
        where = join(path, "usage")
        usage = r.decimal(raw_usage, "quantity", where, required=True, positive=True)
        if price is None or isinstance(price, FlatPrice):
            r.issues.error(where, "a usage discount needs a usage-based price", "usage_discount_with_flat_price")
        usage_correlation = _correlation_id(r, raw_usage, where) if correlated else None
    if (percentage is not None or usage is not None) and price is None:
        r.issues.error(path, "discounts need a price", "discount_without_price")
    if percentage is None and usage is None:
        return NO_DISCOUNTS
    return Discounts(
        percentage,
        usage,
        pct_correlation if percentage is not None else None,
        usage_correlation if usage is not None else None,
    )


__all__ = [
    "Commitments",
    "Discounts",
    "DynamicPrice",
    "FlatPrice",
    "PackagePrice",
    "PaymentTerm",
    "Price",
    "PriceTier",
    "PriceType",
    "TieredMode",
    "TieredPrice",
    "UnitPrice",
    "UsagePrice",
    "allows_progressive_billing",
    "parse_discounts",
    "parse_price",
]
