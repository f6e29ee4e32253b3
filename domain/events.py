"""Domain events between areas inside one process (e.g. balance snapshots -> notifications).

Areas publish typed, frozen dataclasses; subscribers are async callables keyed by the event class.
A subscriber's failure is its own: it is logged by the hub and never fails the publisher.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

E = TypeVar("E")


class DomainEvents(Protocol):
    def subscribe(self, event_type: type[E], handler: Callable[[E], Awaitable[None]]) -> None: ...

    async def publish(self, event: Any) -> None: ...
