"""Why a stored event would not count for a meter: OpenMeter's read-time `validationError`.

OpenMeter accepts any well-formed CloudEvent and checks it against the meters of its type only when
events are listed, so a user can see events that were accepted but are skipped by a meter. The
messages match OpenMeter's (its meter/parse.go) so tooling that matches on them keeps working.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import orjson

from domain.metering.events import Event
from domain.metering.jsonpath import MISSING, lookup, parse_jsonpath
from domain.metering.models import Aggregation, Meter

# Go's strconv.ParseFloat grammar, which OpenMeter parses a string value with: Go's float literals
# (decimal, or hexadecimal with a required p exponent; `_` allowed between digits, checked apart),
# plus inf/infinity/nan in any case.
_GO_DECIMAL = re.compile(r"[+-]?(?:[0-9_]+\.?[0-9_]*|\.[0-9_]+)(?:[eE][+-]?[0-9][0-9_]*)?")
_GO_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F_]+\.?[0-9a-fA-F_]*|\.[0-9a-fA-F_]+)[pP][+-]?[0-9][0-9_]*")
_GO_SPECIAL = re.compile(r"[+-]?(?i:inf|infinity)|(?i:nan)")
_DIGITS = frozenset("0123456789")
_HEX_DIGITS = _DIGITS | frozenset("abcdefABCDEF")

# Go's %T names for JSON values that are neither strings nor numbers.
_GO_TYPE_NAMES = {bool: "bool", dict: "map[string]interface {}", list: "[]interface {}"}


def _underscores_ok(text: str) -> bool:
    """Go's rule for `_` in a number: only between two digits (a 0x prefix counting as one)."""
    body = text[1:] if text[:1] in "+-" else text
    digits = _DIGITS
    if body[:2] in ("0x", "0X"):
        body, digits = "0" + body[2:], _HEX_DIGITS
    return all(
        0 < i < len(body) - 1 and body[i - 1] in digits and body[i + 1] in digits
        for i, ch in enumerate(body)
        if ch == "_"
    )


def _parse_go_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64), or None where it fails: bad syntax, or a finite literal past
    float64's range (ErrRange; OpenMeter reports both as a parse error, not as infinity)."""
    if _GO_SPECIAL.fullmatch(text):
        return float(text)
    hexadecimal = _GO_HEX.fullmatch(text) is not None
    if not (hexadecimal or _GO_DECIMAL.fullmatch(text)) or not _underscores_ok(text):
        return None
    digits = text.replace("_", "")
    try:
        value = float.fromhex(digits) if hexadecimal else float(digits)
    except (OverflowError, ValueError):
        return None
    return None if math.isinf(value) else value


def _check_number(value: float) -> str | None:
    if math.isnan(value):
        return "value cannot be NaN"
    if math.isinf(value):
        return "value cannot be infinity"
    return None


def meter_error(meter: Meter, data: Any) -> str | None:
    """The reason `meter` cannot count an event with this (parsed) data, or None."""
    if meter.aggregation is Aggregation.COUNT:
        return None
    if data is None:
        return "null and missing value property"
    if meter.value_property is None:
        return "non count meter value property is missing"
    value = lookup(data, parse_jsonpath(meter.value_property))
    if value is MISSING:
        return f'missing value property: "{meter.value_property}"'
    if value is None:
        return "value cannot be null"
    if meter.aggregation is Aggregation.UNIQUE_COUNT:
        return None
    if isinstance(value, str):
        number = _parse_go_float(value)
        if number is None:
            return f"value cannot be parsed as float64: {value}"
        return _check_number(number)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"unsupported value property type: {_GO_TYPE_NAMES.get(type(value), type(value).__name__)}"
    return _check_number(float(value))


def validation_error(event: Event, meters: Sequence[Meter]) -> str | None:
    """Why the meters skip the event, as OpenMeter reports it: the reason of every meter of its
    type that cannot count it, or that no meter has its type; one per line (Go's errors.Join)."""
    data: Any = MISSING
    reasons = []
    for meter in meters:
        if meter.event_type != event.type:
            continue
        if data is MISSING:
            data = orjson.loads(event.data) if event.data else None
        reason = meter_error(meter, data)
        if reason is not None:
            reasons.append(f"invalid event: {reason}")
    if data is MISSING:
        reasons.append(f"no meter found for event type: {event.type}")
    return "\n".join(reasons) or None
