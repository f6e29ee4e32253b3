"""The meter query model: what a caller may ask of a meter, OpenMeter's rules for it, and the answer rows.

`MeterQueryInput.validate` turns a request (REST query string, POST body or gRPC message, already
decoded) into a `MeterQuery`, the resolved form the ClickHouse adapter renders: implied group-bys
added, `eventFrom` applied, filters normalised. The rules are OpenMeter v1's (see
reference/openmeter-semantics.md 3.3); where OpenMeter would fail inside ClickHouse with a 500
(an empty `$and`, unbounded filter nesting) this model answers 400 instead.

`ListSubjectsInput` and `ListGroupByValuesInput` are the inputs of the two helper endpoints,
`.../subjects` and `.../group-by/{key}/values`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Final
from zoneinfo import available_timezones

from domain.errors import NotFoundError, Violations
from domain.metering.models import Meter, WindowSize

SUBJECT_GROUP_BY: Final = "subject"
CUSTOMER_GROUP_BY: Final = "customer_id"
DEFAULT_TIME_ZONE: Final = "UTC"
MAX_SUBJECTS: Final = 100
MAX_CUSTOMERS: Final = 100
MAX_GROUP_BY: Final = 100
MAX_CLIENT_ID_LENGTH: Final = 36
# OpenMeter does not bound filter nesting; ClickHouse's parser would, with a 500. Ten levels is
# far beyond any real filter.
MAX_FILTER_DEPTH: Final = 10
GROUP_BY_VALUES_DEFAULT_SPAN: Final = timedelta(hours=24)
GROUP_BY_VALUES_MAX_AGE: Final = timedelta(days=90)
GROUP_BY_VALUES_MAX_SPAN: Final = timedelta(days=30)


@lru_cache(maxsize=1)
def allowed_time_zones() -> frozenset[str]:
    """IANA names a query may window in.

    The `posix/` and `right/` copies of the database (the latter counts leap seconds, which
    ClickHouse refuses) and the host-dependent `localtime` are left out.
    """
    return frozenset(
        name for name in available_timezones() if not name.startswith(("posix/", "right/")) and name != "localtime"
    )


# --- FilterString ------------------------------------------------------------------------------

_SCALAR_OPERATORS: Final = {
    "$eq": "eq",
    "$ne": "ne",
    "$like": "like",
    "$nlike": "nlike",
    "$ilike": "ilike",
    "$nilike": "nilike",
    "$gt": "gt",
    "$gte": "gte",
    "$lt": "lt",
    "$lte": "lte",
}
_LIST_OPERATORS: Final = {"$in": "in_", "$nin": "nin"}
_NESTED_OPERATORS: Final = {"$and": "and_", "$or": "or_"}
OPERATORS: Final = (*_SCALAR_OPERATORS, *_LIST_OPERATORS, *_NESTED_OPERATORS)


@dataclass(frozen=True, slots=True)
class FilterString:
    """OpenMeter's FilterString: at most one operator; an empty filter matches everything.

    `$gt`..`$lte` compare strings; `$like` patterns use SQL LIKE wildcards; `$ilike` lower-cases
    both sides (ASCII, as ClickHouse's `lower`) in meter queries and folds case in all of UTF-8 in
    the event list (ClickHouse's ILIKE), as OpenMeter's do.
    """

    eq: str | None = None
    ne: str | None = None
    in_: tuple[str, ...] | None = None
    nin: tuple[str, ...] | None = None
    like: str | None = None
    nlike: str | None = None
    ilike: str | None = None
    nilike: str | None = None
    gt: str | None = None
    gte: str | None = None
    lt: str | None = None
    lte: str | None = None
    and_: tuple[FilterString, ...] | None = None
    or_: tuple[FilterString, ...] | None = None

    def operators(self) -> list[str]:
        """The `$` names of the operators that are set."""
        return [name for name in OPERATORS if getattr(self, _attribute(name)) is not None]

    def is_empty(self) -> bool:
        return not self.operators()

    @classmethod
    def from_json(cls, value: Any, location: str = "filter") -> FilterString:
        """Decodes `{"$in": [...]}`-style JSON (null operands count as absent); raises ValidationError."""
        violations = Violations()
        result = _decode_filter(value, location, violations, depth=0)
        violations.raise_if_any()
        assert result is not None  # no violations means it decoded
        return result

    def validate(self, location: str, violations: Violations, depth: int = 0) -> None:
        """OpenMeter's FilterString.Validate plus the guards it leaves to ClickHouse."""
        operators = self.operators()
        if len(operators) > 1:
            violations.add(location, f"only one operator is allowed, got {', '.join(operators)}", "invalid_filter")
            return
        if not operators:
            return
        name = operators[0]
        operand = getattr(self, _attribute(name))
        if name in _SCALAR_OPERATORS:
            if not isinstance(operand, str):
                violations.add(f"{location}.{name}", "must be a string", "invalid_filter")
            elif operand == "":
                violations.add(f"{location}.{name}", "must not be empty", "invalid_filter")
        elif name in _LIST_OPERATORS:
            for i, item in enumerate(operand):
                if not isinstance(item, str):
                    violations.add(f"{location}.{name}[{i}]", "must be a string", "invalid_filter")
                elif item == "":
                    violations.add(f"{location}.{name}[{i}]", "must not be empty", "invalid_filter")
        else:
            if not operand:
                violations.add(f"{location}.{name}", "must hold at least one filter", "invalid_filter")
            elif depth + 1 > MAX_FILTER_DEPTH:
                violations.add(location, f"filters nest at most {MAX_FILTER_DEPTH} levels deep", "too_complex")
            else:
                for i, child in enumerate(operand):
                    if not isinstance(child, FilterString):
                        violations.add(f"{location}.{name}[{i}]", "must be a filter", "invalid_filter")
                    else:
                        child.validate(f"{location}.{name}[{i}]", violations, depth + 1)


def _attribute(operator: str) -> str:
    return _SCALAR_OPERATORS.get(operator) or _LIST_OPERATORS.get(operator) or _NESTED_OPERATORS[operator]


def _is_string_list(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and all(isinstance(item, str) for item in value)
    )


def _decode_filter(value: Any, location: str, violations: Violations, depth: int) -> FilterString | None:
    if not isinstance(value, Mapping):
        violations.add(location, "must be an object of filter operators", "invalid_filter")
        return None
    if depth > MAX_FILTER_DEPTH:
        violations.add(location, f"filters nest at most {MAX_FILTER_DEPTH} levels deep", "too_complex")
        return None
    kwargs: dict[str, Any] = {}
    ok = True
    for key, operand in value.items():
        where = f"{location}.{key}"
        if key not in OPERATORS:
            violations.add(where, f"unknown operator; use one of {', '.join(OPERATORS)}", "invalid_filter")
            ok = False
        elif operand is None:
            continue
        elif key in _SCALAR_OPERATORS:
            if not isinstance(operand, str):
                violations.add(where, "must be a string", "invalid_filter")
                ok = False
            else:
                kwargs[_SCALAR_OPERATORS[key]] = operand
        elif key in _LIST_OPERATORS:
            if _is_string_list(operand):
                kwargs[_LIST_OPERATORS[key]] = tuple(operand)
            else:
                violations.add(where, "must be an array of strings", "invalid_filter")
                ok = False
        else:
            if not isinstance(operand, Sequence) or isinstance(operand, str | bytes):
                violations.add(where, "must be an array of filters", "invalid_filter")
                ok = False
                continue
            children = [
                _decode_filter(child, f"{where}[{i}]", violations, depth + 1) for i, child in enumerate(operand)
            ]
            if any(child is None for child in children):
                ok = False
            else:
                kwargs[_NESTED_OPERATORS[key]] = tuple(child for child in children if child is not None)
    return FilterString(**kwargs) if ok else None


# --- the meter query ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterQuery:
    """A validated, resolved meter query; the adapter renders it as it is.

    `from_` is the effective lower bound (the request's `from` clamped by the meter's `eventFrom`);
    `requested_from` is what the caller sent, echoed as `windowStart` of rows without a window.
    `group_by` is sorted and holds the implied `subject` / `customer_id`; `group_by_order` holds the
    same keys in the order OpenMeter's handler keeps them (the request's, then an implied `subject`,
    then an implied `customer_id`), which its CSV's columns follow. `customer_subjects` maps each
    filtered customer ID to its subject keys, in request order.
    """

    namespace: str
    from_: datetime | None
    to: datetime | None
    requested_from: datetime | None
    window_size: WindowSize | None
    time_zone: str
    subjects: tuple[str, ...]
    customer_subjects: tuple[tuple[str, tuple[str, ...]], ...]
    group_by: tuple[str, ...]
    filters: tuple[tuple[str, FilterString], ...]
    client_id: str | None = None
    group_by_order: tuple[str, ...] = ()

    @property
    def groups_by_subject(self) -> bool:
        return SUBJECT_GROUP_BY in self.group_by

    @property
    def groups_by_customer(self) -> bool:
        return CUSTOMER_GROUP_BY in self.group_by

    @property
    def meter_group_by(self) -> tuple[str, ...]:
        """The requested group-by keys that are the meter's own (not subject / customer_id)."""
        return tuple(key for key in self.group_by if key not in (SUBJECT_GROUP_BY, CUSTOMER_GROUP_BY))


@dataclass(frozen=True, slots=True)
class QueryRow:
    """One aggregated row: OpenMeter's MeterQueryRow."""

    value: float
    window_start: datetime
    window_end: datetime
    subject: str | None
    customer_id: str | None
    group_by: dict[str, str | None]


def _check_aware(violations: Violations, name: str, value: datetime | None) -> bool:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        violations.add(name, "must carry a time zone offset", "invalid_time")
        return False
    return True


def _check_range(violations: Violations, from_: datetime | None, to: datetime | None) -> None:
    ok = _check_aware(violations, "from", from_) & _check_aware(violations, "to", to)
    if ok and from_ is not None and to is not None:
        if from_ == to:
            violations.add("from", "from and to cannot be equal", "invalid_range")
        elif from_ > to:
            violations.add("from", "from must be before to", "invalid_range")


@dataclass(frozen=True, slots=True)
class MeterQueryInput:
    """A meter query as the caller sent it.

    A non-empty `subjects` filters and groups by subject. (OpenMeter also groups by subject for an
    explicit empty list in a POST body; proto3 cannot tell that from an absent field, so Tally
    treats both as absent.) `filter_group_by` is the deprecated `filterGroupBy[key]=value` form (each list
    becomes `$in`); `advanced_filters` is `advancedMeterGroupByFilters`.
    """

    from_: datetime | None = None
    to: datetime | None = None
    window_size: str | None = None
    window_time_zone: str | None = None
    subjects: Sequence[str] = ()
    filter_customer_ids: Sequence[str] = ()
    group_by: Sequence[str] = ()
    filter_group_by: Mapping[str, Sequence[str]] = field(default_factory=dict)
    advanced_filters: Mapping[str, FilterString] = field(default_factory=dict)
    client_id: str | None = None

    def validate(self, meter: Meter, customer_subjects: Mapping[str, Sequence[str]] | None = None) -> MeterQuery:
        """Applies OpenMeter's rules and resolves the query.

        `customer_subjects` maps each customer ID the caller could resolve to its subject keys (key
        and usage-attribution subjects); an ID in `filter_customer_ids` missing from it raises
        NotFoundError, after every 400-class problem has been reported.
        """
        v = Violations()
        if self.client_id is not None and not 1 <= len(self.client_id) <= MAX_CLIENT_ID_LENGTH:
            v.add("clientId", f"must be 1 to {MAX_CLIENT_ID_LENGTH} characters", "invalid_length")
        _check_range(v, self.from_, self.to)

        window_size: WindowSize | None = None
        if self.window_size is not None:
            if self.window_size in WindowSize.__members__:
                window_size = WindowSize(self.window_size)
            else:
                v.add("windowSize", f"must be one of {', '.join(WindowSize)}", "invalid_enum")

        time_zone = self.window_time_zone or DEFAULT_TIME_ZONE
        if time_zone not in allowed_time_zones():
            v.add("windowTimeZone", f"unknown IANA time zone {time_zone!r}", "invalid_time_zone")

        subjects = tuple(self.subjects)
        if len(subjects) > MAX_SUBJECTS:
            v.add("subject", f"at most {MAX_SUBJECTS} subjects are allowed", "too_many")
        customer_ids = tuple(dict.fromkeys(self.filter_customer_ids))
        if len(self.filter_customer_ids) > MAX_CUSTOMERS:
            v.add("filterCustomerId", f"at most {MAX_CUSTOMERS} customers are allowed", "too_many")
        if len(self.group_by) > MAX_GROUP_BY:
            v.add("groupBy", f"at most {MAX_GROUP_BY} group-by keys are allowed", "too_many")

        group_by: dict[str, None] = {}
        for i, key in enumerate(self.group_by):
            if key in (SUBJECT_GROUP_BY, CUSTOMER_GROUP_BY) or key in meter.group_by:
                group_by[key] = None
            else:
                v.add(f"groupBy[{i}]", f"invalid group by: {key}", "unknown_group_by")
        if CUSTOMER_GROUP_BY in group_by and not customer_ids:
            v.add("groupBy", "customer filter is required with customer_id group by", "requires_customer_filter")
        if subjects:
            group_by[SUBJECT_GROUP_BY] = None
        if customer_ids:
            group_by[CUSTOMER_GROUP_BY] = None

        filters = self._filters(meter, v)
        v.raise_if_any()

        resolved = customer_subjects or {}
        for customer_id in customer_ids:
            if customer_id not in resolved:
                raise NotFoundError("customer", customer_id)

        return MeterQuery(
            namespace=meter.namespace,
            from_=_clamp_from(self.from_, meter.event_from),
            to=self.to,
            requested_from=self.from_,
            window_size=window_size,
            time_zone=time_zone,
            subjects=subjects,
            customer_subjects=tuple((cid, tuple(resolved[cid])) for cid in customer_ids),
            group_by=tuple(sorted(group_by)),
            filters=filters,
            client_id=self.client_id,
            group_by_order=tuple(group_by),
        )

    def _filters(self, meter: Meter, v: Violations) -> tuple[tuple[str, FilterString], ...]:
        filters: dict[str, FilterString] = {}
        advanced = {key: f for key, f in self.advanced_filters.items() if not f.is_empty()}
        for key, f in self.advanced_filters.items():
            location = f"advancedMeterGroupByFilters.{key}"
            if key not in meter.group_by:
                v.add(location, f"meter does not have group by: {key}", "unknown_group_by")
                continue
            f.validate(location, v)
        if self.filter_group_by:
            if self.advanced_filters:
                v.add(
                    "filterGroupBy",
                    "advanced meter group by filters and filter group by cannot be used together",
                    "conflicting_filters",
                )
            for key, values in self.filter_group_by.items():
                location = f"filterGroupBy.{key}"
                if key not in meter.group_by:
                    v.add(location, f"invalid group by filter: {key}", "unknown_group_by")
                    continue
                if values:
                    f = FilterString(in_=tuple(values))
                    f.validate(location, v)
                    filters[key] = f
        else:
            filters.update((key, f) for key, f in advanced.items() if key in meter.group_by)
        return tuple(sorted(filters.items()))


def _clamp_from(from_: datetime | None, event_from: datetime | None) -> datetime | None:
    if from_ is None:
        return event_from
    if event_from is None:
        return from_
    return max(from_, event_from)


# --- helper endpoints --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubjectsQuery:
    from_: datetime | None
    to: datetime | None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class ListSubjectsInput:
    """`GET /api/v1/meters/{meter}/subjects`: distinct subjects of the meter's events, sorted."""

    from_: datetime | None = None
    to: datetime | None = None
    search: str | None = None

    def validate(self) -> SubjectsQuery:
        v = Violations()
        _check_range(v, self.from_, self.to)
        v.raise_if_any()
        return SubjectsQuery(from_=self.from_, to=self.to, search=self.search or None)


@dataclass(frozen=True, slots=True)
class GroupByValuesQuery:
    group_by_key: str
    from_: datetime | None
    to: datetime | None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class ListGroupByValuesInput:
    """`GET /api/v1/meters/{meter}/group-by/{key}/values`: distinct values of one group-by key.

    Without `from` and `to` the last 24 hours are listed; `from` may reach back at most 90 days
    and the range may span at most 30 days (OpenMeter's limits).
    """

    group_by_key: str
    from_: datetime | None = None
    to: datetime | None = None
    search: str | None = None

    def validate(self, meter: Meter, now: datetime) -> GroupByValuesQuery:
        v = Violations()
        if not self.group_by_key:
            v.add("groupByKey", "required", "required")
        elif self.group_by_key not in meter.group_by:
            v.add("groupByKey", "group by key is not valid for this meter", "unknown_group_by")
        from_ = self.from_
        if from_ is None and self.to is None:
            from_ = now - GROUP_BY_VALUES_DEFAULT_SPAN
        _check_range(v, from_, self.to)
        if not v and from_ is not None:
            if now - from_ >= GROUP_BY_VALUES_MAX_AGE:
                v.add("from", "from time must not be more than 90 days ago", "out_of_range")
            if self.to is not None and self.to - from_ > GROUP_BY_VALUES_MAX_SPAN:
                v.add("to", "time window must be less than 30 days", "out_of_range")
        v.raise_if_any()
        return GroupByValuesQuery(self.group_by_key, from_, self.to, self.search or None)
