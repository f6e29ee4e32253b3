"""Reading OpenMeter-shaped JSON (camelCase dicts) into catalog inputs, collecting every problem.

Servicers turn the request message into the dict OpenMeter's clients send (proto3 JSON names),
and the catalog's `parse_*` functions read it with a `Reader`, which records each problem under
the field path OpenMeter reports (`phases[0].rateCards[1].price.tiers[2].upToAmount`), so a bad
plan is answered with all of its problems at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from domain.errors import FieldViolation, ValidationError
from domain.metering.models import MAX_SLUG_LENGTH, SLUG_RE

# Enough digits for any price; bounded so hostile input cannot make Decimal arithmetic slow.
MAX_DECIMAL_DIGITS: Final = 38
MAX_NAME_LENGTH: Final = 256
MAX_DESCRIPTION_LENGTH: Final = 1024

Obj = Mapping[str, Any]


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@dataclass
class Issues:
    """Critical problems (the request is refused) and warnings (kept on a draft as validationErrors)."""

    errors: list[FieldViolation] = field(default_factory=list)
    warnings: list[FieldViolation] = field(default_factory=list)

    def error(self, path: str, message: str, code: str = "invalid") -> None:
        self.errors.append(FieldViolation(path, message, code))

    def warn(self, path: str, message: str, code: str) -> None:
        self.warnings.append(FieldViolation(path, message, code))

    def warning_or_error(self, strict: bool) -> Callable[[str, str, str], None]:
        """Where a rule OpenMeter treats as a warning records a problem: the warnings (kept on a
        draft as its validationErrors), or with `strict` (publish) the errors, which refuse."""
        return self.error if strict else self.warn

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ValidationError(self.errors)


class Reader:
    def __init__(self, issues: Issues | None = None) -> None:
        self.issues = issues if issues is not None else Issues()

    def obj(self, data: Any, path: str, required: bool = True) -> Obj | None:
        if data is None:
            if required:
                self.issues.error(path or "body", "required", "required")
            return None
        if not isinstance(data, Mapping):
            self.issues.error(path or "body", "must be an object", "invalid_type")
            return None
        return data

    def list(self, data: Obj, name: str, path: str, required: bool = False) -> list[Any]:
        value = data.get(name)
        if value is None:
            if required:
                self.issues.error(join(path, name), "required", "required")
            return []
        if not isinstance(value, list):
            self.issues.error(join(path, name), "must be an array", "invalid_type")
            return []
        return value

    def string(
        self, data: Obj, name: str, path: str, required: bool = False, max_length: int | None = None
    ) -> str | None:
        value = data.get(name)
        where = join(path, name)
        if value is None or value == "":
            if required:
                self.issues.error(where, "required", "required")
            return None
        if not isinstance(value, str):
            self.issues.error(where, "must be a string", "invalid_type")
            return None
        if max_length is not None and len(value) > max_length:
            self.issues.error(where, f"must be at most {max_length} characters", "too_long")
        return value

    def key(self, data: Obj, name: str, path: str, required: bool = True) -> str | None:
        value = self.string(data, name, path, required=required)
        if value is not None and (len(value) > MAX_SLUG_LENGTH or not SLUG_RE.match(value)):
            self.issues.error(
                join(path, name), "must match ^[a-z0-9]+(?:_[a-z0-9]+)*$ and be at most 64 characters", "invalid_key"
            )
            return None
        return value

    def name(self, data: Obj, path: str) -> str | None:
        return self.string(data, "name", path, required=True, max_length=MAX_NAME_LENGTH)

    def description(self, data: Obj, path: str) -> str | None:
        return self.string(data, "description", path, max_length=MAX_DESCRIPTION_LENGTH)

    def metadata(self, data: Obj, path: str) -> dict[str, str]:
        value = data.get("metadata")
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            self.issues.error(join(path, "metadata"), "must be an object of strings", "invalid_type")
            return {}
        return {str(k): v for k, v in value.items()}

    def decimal(
        self, data: Obj, name: str, path: str, required: bool = False, positive: bool = False
    ) -> Decimal | None:
        """A Numeric (decimal string, or a JSON number that is an integer); never negative."""
        value = data.get(name)
        where = join(path, name)
        if value is None or value == "":
            if required:
                self.issues.error(where, "required", "required")
            return None
        parsed = parse_decimal(value)
        if parsed is None:
            self.issues.error(where, 'must be a decimal number such as "12.50"', "invalid_number")
            return None
        if parsed < 0:
            self.issues.error(where, "must not be negative", "negative")
            return None
        if positive and parsed == 0:
            self.issues.error(where, "must be greater than zero", "not_positive")
            return None
        return parsed

    def boolean(self, data: Obj, name: str, path: str, default: bool) -> bool:
        value = data.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.issues.error(join(path, name), "must be true or false", "invalid_type")
            return default
        return value

    def choice(self, data: Obj, name: str, path: str, allowed: tuple[str, ...], required: bool = False) -> str | None:
        value = self.string(data, name, path, required=required)
        if value is not None and value not in allowed:
            self.issues.error(join(path, name), f"must be one of {', '.join(allowed)}", "invalid_enum")
            return None
        return value


_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def parse_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, float):
        # JSON numbers arrive as floats; accept those that are exact integers or short decimals.
        value = repr(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    # Decimal() alone would also read "1_000" and non-ASCII digits; OpenMeter's Numeric is plain
    # ASCII digits with an optional sign, point and exponent.
    if not _DECIMAL_TEXT.fullmatch(text):
        return None
    try:
        parsed = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not parsed.is_finite():
        return None
    digits = parsed.as_tuple()
    if len(digits.digits) > MAX_DECIMAL_DIGITS or abs(int(digits.exponent)) > MAX_DECIMAL_DIGITS:
        return None
    # Normalise "-0" and keep the scale the caller wrote ("10.00" stays "10.00").
    return parsed + 0 if parsed == 0 else parsed


def decimal_text(value: Decimal) -> str:
    """A Numeric as OpenMeter prints it: plain notation, no exponent."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def violations_rest(items: list[FieldViolation], severity: str) -> list[dict[str, Any]]:
    return [{"field": v.field, "code": v.code, "message": v.message, "severity": severity} for v in items]
