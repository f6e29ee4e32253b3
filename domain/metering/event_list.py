"""Listing stored events: the query both event lists resolve to, and the v2 list's JSON filter.

OpenMeter's rules (reference/openmeter-semantics.md 3.1 and its API description):
- v1 (`GET /api/v1/events`): `from` and `ingestedAtFrom` must be within 32 days, and `from`
  defaults to the oldest it may be (OpenMeter's handler; its API description says 72 hours); `to`
  and `ingestedAtTo` are inclusive and may not precede their start; `id` and `subject` match
  partially; `customerId` (repeated) keeps the events of those customers' subjects
  (key and usage-attribution subject keys) and an unknown customer is a 400; newest first.
- v2 (`GET /api/v2/events`): `filter` is a JSON object of `id`, `source`, `subject`, `type`
  (FilterString: exactly one operator per object; `$and`/`$or` one level deep), `customerId`
  (`$in`; `$eq` also taken here), `time` and `ingestedAt` (FilterTime: `$gt`, `$gte`, `$lt`, `$lte`,
  `$and`, `$or`; both together since OpenMeter's #4211). No default time range. Ordered by `time`,
  newest first, whatever is filtered (OpenMeter ordered by `ingested_at` under an `ingestedAt`
  filter until its #4211), with a cursor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from domain.errors import ValidationError, Violations
from domain.metering.events import parse_time
from domain.metering.query import FilterString

# OpenMeter validates event filters with a complexity of 1: one level of $and / $or.
EVENT_FILTER_DEPTH: Final = 1
STRING_FIELDS: Final = ("id", "source", "subject", "type")
TIME_FIELDS: Final = ("time", "ingestedAt")
V2_FIELDS: Final = (*STRING_FIELDS, "customerId", *TIME_FIELDS)
_TIME_OPERATORS: Final = ("$gt", "$gte", "$lt", "$lte")
_TIME_NESTED: Final = ("$and", "$or")


@dataclass(frozen=True, slots=True)
class TimeFilter:
    """OpenMeter's FilterTime: one operator; `$and` / `$or` combine ranges."""

    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None
    and_: tuple[TimeFilter, ...] | None = None
    or_: tuple[TimeFilter, ...] | None = None

    @classmethod
    def from_json(cls, value: Any, location: str, violations: Violations, depth: int = 0) -> TimeFilter | None:
        if not isinstance(value, Mapping):
            violations.add(location, "must be an object of $gt, $gte, $lt, $lte, $and or $or", "invalid_filter")
            return None
        present = {key: operand for key, operand in value.items() if operand is not None}
        unknown = [key for key in present if key not in _TIME_OPERATORS and key not in _TIME_NESTED]
        if unknown:
            violations.add(
                f"{location}.{unknown[0]}",
                "unknown operator; use one of $gt, $gte, $lt, $lte, $and, $or",
                "invalid_filter",
            )
            return None
        if len(present) > 1:
            violations.add(
                location,
                f"only one operator is allowed, got {', '.join(present)}; combine them with $and",
                "invalid_filter",
            )
            return None
        if not present:
            return cls()
        key, operand = next(iter(present.items()))
        if key in _TIME_OPERATORS:
            try:
                moment = parse_time(operand)
            except (TypeError, ValueError) as exc:
                violations.add(f"{location}.{key}", str(exc), "invalid_time")
                return None
            return cls(
                gt=moment if key == "$gt" else None,
                gte=moment if key == "$gte" else None,
                lt=moment if key == "$lt" else None,
                lte=moment if key == "$lte" else None,
            )
        if depth + 1 > EVENT_FILTER_DEPTH:
            violations.add(location, f"$and / $or nest at most {EVENT_FILTER_DEPTH} level deep", "too_complex")
            return None
        if not isinstance(operand, Sequence) or isinstance(operand, str | bytes) or not operand:
            violations.add(f"{location}.{key}", "must be a non-empty array of filters", "invalid_filter")
            return None
        children = [
            cls.from_json(child, f"{location}.{key}[{i}]", violations, depth + 1) for i, child in enumerate(operand)
        ]
        if any(child is None for child in children):
            return None
        nested = tuple(child for child in children if child is not None)
        return cls(and_=nested) if key == "$and" else cls(or_=nested)

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in ("gt", "gte", "lt", "lte", "and_", "or_"))


@dataclass(frozen=True, slots=True)
class EventListQuery:
    """A validated listing of stored events, newest first; every condition must hold."""

    # v1's time range: `to` inclusive. None: no bound (v2 without a time filter).
    from_: datetime | None = None
    to: datetime | None = None
    ingested_at_from: datetime | None = None
    ingested_at_to: datetime | None = None
    # v1's partial matches.
    id_contains: str | None = None
    subject_contains: str | None = None
    # v2's filters.
    id: FilterString | None = None
    source: FilterString | None = None
    subject: FilterString | None = None
    type: FilterString | None = None
    time: TimeFilter | None = None
    ingested_at: TimeFilter | None = None
    # Customers (IDs) whose events to keep; the service resolves them into `subjects`.
    customer_ids: tuple[str, ...] = ()
    subjects: tuple[str, ...] | None = None
    limit: int = 100
    # Cursor pagination (v2): events strictly after this (time, id) position.
    before: tuple[datetime, str] | None = None


def _string_filter(value: Any, location: str, violations: Violations) -> FilterString | None:
    try:
        parsed = FilterString.from_json(value, location)
        local = Violations()
        parsed.validate(location, local)
        if _depth(parsed) > EVENT_FILTER_DEPTH:
            local.add(location, f"$and / $or nest at most {EVENT_FILTER_DEPTH} level deep", "too_complex")
        local.raise_if_any()
    except ValidationError as error:
        for item in error.violations:
            violations.add(item.field, item.message, item.code)
        return None
    return parsed


def _depth(f: FilterString) -> int:
    children = f.and_ or f.or_
    return 1 + max(_depth(child) for child in children) if children else 0


@dataclass(frozen=True, slots=True)
class ListEventsV2Filter:
    """The decoded `filter` parameter of the v2 list."""

    strings: Mapping[str, FilterString]
    customer_ids: tuple[str, ...]
    time: TimeFilter | None
    ingested_at: TimeFilter | None

    @classmethod
    def parse(cls, text: str | None) -> ListEventsV2Filter:
        """Raises ValidationError naming `filter.<field>` for anything OpenMeter would refuse."""
        violations = Violations()
        value: Any = {}
        if text:
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                violations.add("filter", f"must be a JSON object: {exc}", "invalid_json")
                violations.raise_if_any()
        if not isinstance(value, Mapping):
            violations.add("filter", "must be a JSON object", "invalid_type")
            violations.raise_if_any()
        for key in value:
            if key not in V2_FIELDS:
                violations.add(
                    f"filter.{key}", f"unknown filter field; use one of {', '.join(V2_FIELDS)}", "unknown_field"
                )
        strings: dict[str, FilterString] = {}
        for name in STRING_FIELDS:
            if value.get(name) is not None:
                parsed = _string_filter(value[name], f"filter.{name}", violations)
                if parsed is not None and not parsed.is_empty():
                    strings[name] = parsed
        customer_ids = _customer_ids(value.get("customerId"), violations)
        times = {
            name: TimeFilter.from_json(value[name], f"filter.{name}", violations)
            if value.get(name) is not None
            else None
            for name in TIME_FIELDS
        }
        time, ingested_at = times["time"], times["ingestedAt"]
        violations.raise_if_any()
        return cls(strings, customer_ids, time, ingested_at)


def _customer_ids(value: Any, violations: Violations) -> tuple[str, ...]:
    if value is None:
        return ()
    location = "filter.customerId"
    if not isinstance(value, Mapping):
        violations.add(location, 'must be an object: {"$in": [ids]} or {"$eq": id}', "invalid_filter")
        return ()
    present = {key: operand for key, operand in value.items() if operand is not None}
    if set(present) - {"$in", "$eq"} or len(present) > 1:
        violations.add(location, "supports only one of $in (OpenMeter's) or $eq", "invalid_filter")
        return ()
    if "$eq" in present:
        operand = present["$eq"]
        if not isinstance(operand, str) or not operand:
            violations.add(f"{location}.$eq", "must be a customer ID", "invalid_filter")
            return ()
        return (operand,)
    if "$in" in present:
        operand = present["$in"]
        if not isinstance(operand, list) or not operand or not all(isinstance(item, str) and item for item in operand):
            violations.add(f"{location}.$in", "must be a non-empty array of customer IDs", "invalid_filter")
            return ()
        return tuple(dict.fromkeys(operand))
    return ()
