"""A feature's optional per-unit cost, as OpenMeter's v1 features carry it (`unitCost`).

Two kinds, told apart by `type`:
- `manual`: a fixed per-unit `amount` in USD (a non-negative Numeric string on the wire).
- `llm`: where to find the provider, the model and the token type of a unit, each either a static
  value or the name of one of the meter's group-by properties (exactly one of the two). The cost
  itself comes from an LLM price list at read time; Tally has no such list, so the read-only
  `pricing` OpenMeter may add to responses is never filled here.

Stored and returned as given; nothing in Tally computes with it yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from domain.catalog.wire import decimal_text, parse_decimal
from domain.errors import Violations
from domain.metering.models import Meter

TOKEN_TYPES: Final = ("input", "output", "cache_read", "reasoning", "cache_write", "request", "response")
# (static field, property field) per dimension, as their JSON names.
LLM_DIMENSIONS: Final = (
    ("provider", "providerProperty"),
    ("model", "modelProperty"),
    ("tokenType", "tokenTypeProperty"),
)


@dataclass(frozen=True, slots=True)
class UnitCost:
    type: str
    amount: Decimal | None = None
    provider: str | None = None
    provider_property: str | None = None
    model: str | None = None
    model_property: str | None = None
    token_type: str | None = None
    token_type_property: str | None = None

    def rest(self) -> dict[str, Any]:
        """OpenMeter's FeatureUnitCost JSON."""
        if self.type == "manual":
            assert self.amount is not None
            return {"type": "manual", "amount": decimal_text(self.amount)}
        out: dict[str, Any] = {"type": "llm"}
        for name, value in self._llm_fields().items():
            if value:
                out[name] = value
        return out

    def _llm_fields(self) -> dict[str, str | None]:
        return {
            "provider": self.provider,
            "providerProperty": self.provider_property,
            "model": self.model,
            "modelProperty": self.model_property,
            "tokenType": self.token_type,
            "tokenTypeProperty": self.token_type_property,
        }

    @classmethod
    def from_rest(cls, data: dict[str, Any]) -> UnitCost:
        """From what `rest()` wrote (storage)."""
        amount = data.get("amount")
        return cls(
            type=str(data["type"]),
            amount=Decimal(str(amount)) if amount is not None else None,
            provider=data.get("provider"),
            provider_property=data.get("providerProperty"),
            model=data.get("model"),
            model_property=data.get("modelProperty"),
            token_type=data.get("tokenType"),
            token_type_property=data.get("tokenTypeProperty"),
        )


@dataclass(frozen=True, slots=True)
class UnitCostInput:
    """FeatureUnitCost as sent; `amount` is the wire's Numeric string."""

    type: str
    amount: str | None = None
    provider: str | None = None
    provider_property: str | None = None
    model: str | None = None
    model_property: str | None = None
    token_type: str | None = None
    token_type_property: str | None = None

    def validate(self, meter: Meter | None, v: Violations, location: str = "unitCost") -> UnitCost | None:
        """OpenMeter's UnitCost.Validate and ValidateWithMeter; problems go into `v` (then None)."""
        problems: list[tuple[str, str, str]] = []
        fields = {
            "provider": self.provider,
            "providerProperty": self.provider_property,
            "model": self.model,
            "modelProperty": self.model_property,
            "tokenType": self.token_type,
            "tokenTypeProperty": self.token_type_property,
        }
        result: UnitCost | None = None
        if self.type == "manual":
            problems.extend(
                (name, "not allowed for a manual unit cost", "not_allowed") for name, x in fields.items() if x
            )
            if self.amount is None or self.amount == "":
                problems.append(("amount", "required for a manual unit cost", "required"))
            elif (amount := parse_decimal(self.amount)) is None:
                problems.append(("amount", "must be a decimal number such as 0.002", "invalid_number"))
            elif amount < 0:
                problems.append(("amount", "manual unit cost amount must be non-negative", "out_of_range"))
            else:
                result = UnitCost(type="manual", amount=amount)
        elif self.type == "llm":
            if self.amount is not None:
                problems.append(("amount", "not allowed for an llm unit cost", "not_allowed"))
            for static, prop in LLM_DIMENSIONS:
                if not fields[static] and not fields[prop]:
                    problems.append((static, f"either {prop} or {static} is required", "required"))
                elif fields[static] and fields[prop]:
                    problems.append((prop, f"{prop} and {static} are mutually exclusive", "mutually_exclusive"))
            if self.token_type and self.token_type not in TOKEN_TYPES:
                problems.append(("tokenType", "must be one of " + ", ".join(TOKEN_TYPES), "invalid_enum"))
            if meter is None:
                problems.append(("type", "an llm unit cost needs the feature to have a meterSlug", "requires_meter"))
            else:
                for _, prop in LLM_DIMENSIONS:
                    name = fields[prop]
                    if name and name not in meter.group_by:
                        problems.append((prop, f"meter {meter.slug} has no group by {name!r}", "unknown_group_by"))
            result = UnitCost(
                type="llm",
                provider=self.provider or None,
                provider_property=self.provider_property or None,
                model=self.model or None,
                model_property=self.model_property or None,
                token_type=self.token_type or None,
                token_type_property=self.token_type_property or None,
            )
        else:
            problems.append(("type", "must be one of manual, llm", "invalid_enum"))
        for name, message, code in problems:
            v.add(f"{location}.{name}", message, code)
        return None if problems else result


__all__ = ["UnitCost", "UnitCostInput"]
