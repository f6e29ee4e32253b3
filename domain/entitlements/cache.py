"""The current-value cache: each metered entitlement's latest computed value, kept in memory.

A /value request for "now" is answered from here when nothing it depends on can have changed since
the value was computed. Changes are tracked by a process-wide sequence number: every change notice
(the sink's (namespace, subject, event type) announcements after a stored flush; grant, void and
reset calls per entitlement; customer, entitlement, feature and meter writes for everything) stamps
the current sequence onto what it touched. A value remembers the sequence read *before* any of its
inputs were read (`mark`), so it is current while nothing it depends on carries a later stamp. A
computation that raced a change is therefore never trusted, whichever finished first.

Time is the other input: a value computed for instant U (a whole minute) also holds at a later
instant T while no engine breakpoint lies in (U, T] (a grant taking effect, expiring, voided or
recurring, a usage period rollover) and no stored event has a time in [U, T) (events already stored
with a future time). The computation supplies that horizon as `valid_before`.

Change notices arrive as announcements (domain/announcements.py): in process in the embedded
default, and on Kafka from every other process in production. There a process may fall behind the
announcements; `gate` (set by the wiring) says whether it is in step within the configured bound,
and while it is not, every value and look-up is computed instead of served. `clear` forgets
everything (called when announcements may have been skipped).

Resolved look-ups (customer by ID or key, a customer's entitlement by ID or feature key) are kept
under the same rule, invalidated by any entity write in the process. A look-up can also carry a
time horizon: which entitlement of a feature key is active "now" changes without any write when a
scheduled entitlement starts or ends (its active_from / active_to), so that look-up is only
trusted before the next such instant.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.entitlements.models import EntitlementValue

DEFAULT_MAX_ENTRIES = 200_000


@dataclass(frozen=True, slots=True)
class CachedValue:
    value: EntitlementValue
    computed_for: datetime
    valid_before: datetime | None
    mark: int
    subjects: tuple[str, ...]
    event_type: str


class ValueCache:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._max = max_entries
        self._seq = 0
        self._entities = 0  # stamp of the last customer/entitlement/feature/meter write
        self._usage: dict[tuple[str, str, str], int] = {}
        self._entitlements: dict[tuple[str, str], int] = {}
        self._values: OrderedDict[tuple[str, str], CachedValue] = OrderedDict()
        self._lookups: OrderedDict[tuple[Any, ...], tuple[int, Any, datetime | None]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        # None: always trusted (every change is seen in process, synchronously).
        self.gate: Callable[[], bool] | None = None

    # --- change notices -------------------------------------------------------------------------

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    async def on_flush(self, touched: Iterable[tuple[str, str, str]]) -> None:
        """Sink listener: events of these (namespace, subject, event type) were stored."""
        self.usage_changed(touched)

    def usage_changed(self, touched: Iterable[tuple[str, str, str]]) -> None:
        stamp = self._next()
        for key in touched:
            self._usage[key] = stamp
        if len(self._usage) > 4 * self._max:
            # Bounded memory: forget the per-subject stamps and distrust every cached value instead.
            self._usage.clear()
            self._entitlements.clear()
            self.entities_changed()

    def entitlement_changed(self, namespace: str, entitlement_id: str) -> None:
        self._entitlements[(namespace, entitlement_id)] = self._next()
        self._values.pop((namespace, entitlement_id), None)

    def entities_changed(self) -> None:
        self._entities = self._next()
        self._lookups.clear()

    def clear(self) -> None:
        """Forgets every value and look-up (changes may have been missed)."""
        self._values.clear()
        self._usage.clear()
        self._entitlements.clear()
        self.entities_changed()

    # --- values ---------------------------------------------------------------------------------

    def mark(self) -> int:
        """Read before any input of a computation is read; pass it to `put`."""
        return self._seq

    def _current(self, namespace: str, entitlement_id: str, entry: CachedValue) -> bool:
        mark = entry.mark
        if self._entities > mark or self._entitlements.get((namespace, entitlement_id), 0) > mark:
            return False
        usage = self._usage
        event_type = entry.event_type
        return all(usage.get((namespace, s, event_type), 0) <= mark for s in entry.subjects)

    def get(self, namespace: str, entitlement_id: str, at: datetime) -> EntitlementValue | None:
        key = (namespace, entitlement_id)
        entry = self._values.get(key)
        if (
            entry is None
            or (self.gate is not None and not self.gate())
            or at < entry.computed_for
            or (entry.valid_before is not None and at >= entry.valid_before)
            or not self._current(namespace, entitlement_id, entry)
        ):
            self.misses += 1
            return None
        self._values.move_to_end(key)
        self.hits += 1
        return entry.value

    def put(
        self,
        namespace: str,
        entitlement_id: str,
        mark: int,
        computed_for: datetime,
        valid_before: datetime | None,
        subjects: Sequence[str],
        event_type: str,
        value: EntitlementValue,
    ) -> None:
        entry = CachedValue(value, computed_for, valid_before, mark, tuple(subjects), event_type)
        if not self._current(namespace, entitlement_id, entry):
            return  # something changed while it was computed
        key = (namespace, entitlement_id)
        old = self._values.get(key)
        if old is not None and old.computed_for > computed_for and self._current(namespace, entitlement_id, old):
            return  # keep the newer one
        self._values[key] = entry
        self._values.move_to_end(key)
        while len(self._values) > self._max:
            self._values.popitem(last=False)

    # --- look-ups -------------------------------------------------------------------------------

    def lookup(self, key: tuple[Any, ...], at: datetime | None = None) -> Any | None:
        found = self._lookups.get(key)
        if found is None or found[0] < self._entities or (self.gate is not None and not self.gate()):
            return None
        valid_before = found[2]
        if valid_before is not None and (at is None or at >= valid_before):
            return None
        return found[1]

    def remember(self, key: tuple[Any, ...], mark: int, value: Any, valid_before: datetime | None = None) -> None:
        if self._entities > mark:
            return
        self._lookups[key] = (mark, value, valid_before)
        while len(self._lookups) > self._max:
            self._lookups.popitem(last=False)

    def __len__(self) -> int:
        return len(self._values)


__all__ = ["CachedValue", "ValueCache"]
