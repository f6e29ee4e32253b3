"""Announcements: what one process tells every other about changes that invalidate derived state.

The sink announces the (namespace, subject, event type) of every stored batch; the api announces
grant, void and reset calls per entitlement, and customer, entitlement, feature and meter writes.
Listeners: the entitlement value cache of every api process, the balance worker, and the sinks'
meter catalogue. In the embedded default they travel in process; in production on a Kafka topic, so
api, sink, balance and notify can each run as their own processes and replicas.

An announcement is made after the change it describes is durable, and `announce` returns only once
the announcement itself is durable (Kafka acks=all), raising UnavailableError otherwise. A repeated
announcement is harmless: every listener treats one as "something may have changed".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

TouchedKey = tuple[str, str, str]  # (namespace, subject, event type)


@dataclass(frozen=True, slots=True)
class UsageStored:
    """Events of these (namespace, subject, event type) were stored (or re-confirmed after a replay)."""

    touched: frozenset[TouchedKey]


@dataclass(frozen=True, slots=True)
class EntitlementChanged:
    """A grant, void or reset of this entitlement."""

    namespace: str
    entitlement_id: str


@dataclass(frozen=True, slots=True)
class EntitiesChanged:
    """A customer, entitlement, feature or meter was written (any namespace)."""


@dataclass(frozen=True, slots=True)
class MetersChanged:
    """A meter was created, changed or deleted: the sinks re-read which values to extract."""


Announcement = UsageStored | EntitlementChanged | EntitiesChanged | MetersChanged
Handler = Callable[[Announcement], Awaitable[None]]


class Announcements(Protocol):
    async def announce(self, announcement: Announcement) -> None:
        """Delivers to this process's handlers and, where other processes listen, to them."""
        ...

    def subscribe(self, handler: Handler) -> None:
        """`handler` receives every announcement, made here or (when listening) in other processes."""
        ...
