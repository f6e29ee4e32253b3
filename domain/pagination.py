"""OpenMeter's list pagination: `page`/`pageSize` (the modern form) beating legacy `limit`/`offset`.

A list answered without any paging parameter is, depending on the endpoint, a plain array or the
first page; `Pagination.mode` tells the servicer which shape the caller asked for.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from domain.errors import Violations

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000

T = TypeVar("T")


class SortOrder(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"


class PageMode(enum.Enum):
    NONE = "none"  # no paging parameter: everything (or the endpoint's default page)
    PAGE = "page"
    LIMIT = "limit"


class Unpaged(enum.Enum):
    """What a list answers to a request that names no paging parameter: OpenMeter differs by
    endpoint, and a client relies on it (a plain array capped at 100 is not everything)."""

    EVERYTHING = "everything"
    FIRST_100 = "first_100"  # limit/offset with limit 100: a plain array of at most 100
    FIRST_PAGE = "first_page"  # page 1 of 100


@dataclass(frozen=True, slots=True)
class Pagination:
    page: int | None = None
    page_size: int | None = None
    limit: int | None = None
    offset: int | None = None

    @property
    def mode(self) -> PageMode:
        if self.page is not None or self.page_size is not None:
            return PageMode.PAGE
        if self.limit is not None or self.offset is not None:
            return PageMode.LIMIT
        return PageMode.NONE

    def validate(self) -> Pagination:
        v = Violations()
        if self.page is not None and self.page < 1:
            v.add("page", "must be at least 1", "out_of_range")
        if self.page_size is not None and not 1 <= self.page_size <= MAX_PAGE_SIZE:
            v.add("pageSize", f"must be between 1 and {MAX_PAGE_SIZE}", "out_of_range")
        if self.mode is PageMode.LIMIT:
            if self.limit is not None and not 1 <= self.limit <= MAX_PAGE_SIZE:
                v.add("limit", f"must be between 1 and {MAX_PAGE_SIZE}", "out_of_range")
            if self.offset is not None and self.offset < 0:
                v.add("offset", "must be at least 0", "out_of_range")
        v.raise_if_any()
        return self

    def defaulted(self, unpaged: Unpaged) -> Pagination:
        """This, or when it names no paging parameter, what `unpaged` says such a request gets."""
        if self.mode is not PageMode.NONE or unpaged is Unpaged.EVERYTHING:
            return self
        if unpaged is Unpaged.FIRST_PAGE:
            return self.paged()
        return Pagination(limit=DEFAULT_PAGE_SIZE)

    def paged(self) -> Pagination:
        """For the lists OpenMeter always pages: without page or pageSize, page 1 of 100 rather
        than everything."""
        return Pagination(page=self.effective_page, page_size=self.effective_page_size)

    @property
    def effective_page(self) -> int:
        return self.page or 1

    @property
    def effective_page_size(self) -> int:
        return self.page_size or DEFAULT_PAGE_SIZE

    def window(self) -> tuple[int, int | None]:
        """(offset, limit) to apply; limit None means everything."""
        match self.mode:
            case PageMode.PAGE:
                return (self.effective_page - 1) * self.effective_page_size, self.effective_page_size
            case PageMode.LIMIT:
                return self.offset or 0, self.limit or DEFAULT_PAGE_SIZE
            case PageMode.NONE:
                return 0, None

    def apply(self, items: Sequence[T]) -> list[T]:
        offset, limit = self.window()
        return list(items[offset:] if limit is None else items[offset : offset + limit])


def parse_order_by(
    value: str | None, allowed: Sequence[str], default: str, violations: Violations | None = None
) -> str:
    """The list's sort field: `default` when absent; a violation (raised now, or collected) if unknown."""
    if not value:
        return default
    if value not in allowed:
        v = violations if violations is not None else Violations()
        v.add("orderBy", f"must be one of {', '.join(allowed)}", "invalid_enum")
        if violations is None:
            v.raise_if_any()
        return default
    return value


def parse_order(value: str | None, field: str = "order") -> SortOrder:
    if value is None or value == "":
        return SortOrder.ASC
    upper = value.upper()
    if upper not in SortOrder.__members__:
        v = Violations()
        v.add(field, "must be ASC or DESC", "invalid_enum")
        v.raise_if_any()
    return SortOrder(upper)
