"""The one error root of Tally's domain.

Every failure a caller can act on is a `TallyError` of one of a few kinds. The gRPC layer maps kinds
to status codes (server/errors.py) and Envoy turns those into RFC 7807 problem+json, so a domain
module never thinks about transports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid input field: where (a JSONPath-like location), what is wrong, and a stable code."""

    field: str
    message: str
    code: str = "invalid"


class TallyError(Exception):
    """Root of every error the domain raises on purpose. `code`, where a kind takes one, is the
    error's stable reason as OpenMeter names it; clients branch on it, so every transport carries
    it (server/errors.py)."""

    code: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(TallyError):
    """`code` is OpenMeter's where its billing names one (`invoice_not_found`, `profile_not_found`)."""

    def __init__(self, entity: str, key: str, code: str | None = None) -> None:
        super().__init__(f"{entity} not found: {key}")
        self.entity = entity
        self.key = key
        self.code = code


class ConflictError(TallyError):
    """A request that contradicts stored state; `code` is the stable reason where OpenMeter names one
    (e.g. `only_single_subscription_allowed_per_customer_at_a_time`)."""

    def __init__(self, message: str, conflicting_id: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.conflicting_id = conflicting_id
        self.code = code


async def again_on_conflict(write: Callable[[], Awaitable[T]], attempts: int = 2) -> T:
    """`write()`, run again when it raises ConflictError (another writer made the row it was about
    to make: the next attempt reads and uses that one), `attempts` times at most in all."""
    for attempt in range(1, attempts + 1):
        try:
            return await write()
        except ConflictError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


class ValidationError(TallyError):
    """Invalid input, or an action the entity's state refuses (400). `code` is the stable reason of
    the whole error where OpenMeter names one (its billing errors' issue codes, e.g.
    `invoice_action_not_available`): clients written against OpenMeter branch on it, so it travels
    to REST at the top of the problem's `extensions` and to gRPC in ErrorInfo's metadata."""

    def __init__(
        self, violations: Iterable[FieldViolation], message: str | None = None, code: str | None = None
    ) -> None:
        self.violations = tuple(violations)
        summary = message or "; ".join(f"{v.field}: {v.message}" for v in self.violations)
        super().__init__(summary or "invalid request")
        self.code = code

    @classmethod
    def single(cls, field: str, message: str, code: str = "invalid") -> ValidationError:
        return cls([FieldViolation(field, message, code)])

    @classmethod
    def coded(cls, field: str, message: str, code: str) -> ValidationError:
        """One violation whose code is also the error's: an OpenMeter issue code."""
        return cls([FieldViolation(field, message, code)], code=code)


class PayloadTooLargeError(TallyError):
    """A request over a size limit (events, batch bytes)."""


class UnauthenticatedError(TallyError):
    pass


class ForbiddenError(TallyError):
    pass


class PreconditionFailedError(TallyError):
    pass


class NotImplementedFeatureError(TallyError):
    """A feature Tally lists for compatibility but has not built (REST 501)."""


class UnavailableError(TallyError):
    """A dependency (the bus, the event store) is down; the caller should retry."""


class Violations:
    """Collects field violations so an input reports all of its problems at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, message: str, code: str = "invalid") -> None:
        self._items.append(FieldViolation(field, message, code))

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def items(self) -> tuple[FieldViolation, ...]:
        return tuple(self._items)

    def raise_if_any(self, code: str | None = None) -> None:
        if self._items:
            raise ValidationError(self._items, code=code)
