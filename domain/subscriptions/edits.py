"""Subscription edits (`PATCH /api/v1/subscriptions/{id}`) as pure transformations of the spec.

Each operation takes the spec and the edit's effective time and returns a new spec, or raises a
typed error that names the operation (`customizations[i]`) and the field. They are applied in
order, so an edit may remove an item and add its replacement in one request; the whole result is
validated afterwards and nothing is stored when any operation fails. The rules follow OpenMeter's
patches: the past is never rewritten (a current item is ended at the effective time rather than
deleted; past phases cannot change), future phases change freely, and phase shifts keep the
spacing of the phases after them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from domain.entitlements.recurrence import IsoDuration
from domain.errors import ConflictError, FieldViolation, ForbiddenError, ValidationError
from domain.subscriptions.timeline import (
    ItemSpec,
    PhaseSpec,
    SubscriptionSpec,
    TimelineRateCard,
    current_phase,
    phase_start,
    phases,
)

MAX_CUSTOMIZATIONS = 100


@dataclass(frozen=True, slots=True)
class AddItem:
    phase_key: str
    rate_card: TimelineRateCard
    item_id: str


@dataclass(frozen=True, slots=True)
class RemoveItem:
    phase_key: str
    item_key: str


@dataclass(frozen=True, slots=True)
class AddPhase:
    phase: PhaseSpec  # start_after relative to the subscription's start; duration required unless last


@dataclass(frozen=True, slots=True)
class RemovePhase:
    phase_key: str
    shift: str  # "next" | "prev"


@dataclass(frozen=True, slots=True)
class StretchPhase:
    phase_key: str
    extend_by: IsoDuration
    negative: bool = False


@dataclass(frozen=True, slots=True)
class UnscheduleEdit:
    pass


EditOperation = AddItem | RemoveItem | AddPhase | RemovePhase | StretchPhase | UnscheduleEdit


def apply_edits(spec: SubscriptionSpec, operations: Sequence[EditOperation], at: datetime) -> SubscriptionSpec:
    """All operations in order at effective time `at`; errors carry `customizations[i]` paths."""
    if len(operations) > MAX_CUSTOMIZATIONS:
        raise ValidationError.single(
            "customizations", f"at most {MAX_CUSTOMIZATIONS} operations per edit", "too_many_customizations"
        )
    for index, operation in enumerate(operations):
        try:
            spec = _APPLY[type(operation)](spec, operation, at)
        except (ValidationError, ConflictError, ForbiddenError) as error:
            raise _prefixed(error, f"customizations[{index}]") from None
    validate_spec(spec)
    return spec


def validate_spec(spec: SubscriptionSpec) -> None:
    """What every stored spec must satisfy: unique phase keys, a first phase at the start, items in
    every phase, no overlapping versions of one item key."""
    keys = [p.key for p in spec.phases]
    if len(set(keys)) != len(keys):
        raise ValidationError.single("phases", "phase keys must be unique", "subscription_phase_key_not_unique")
    if not spec.phases:
        raise ValidationError.single("phases", "a subscription needs at least one phase", "subscription_has_no_phases")
    if min(phase_start(spec, p) for p in spec.phases) != spec.active_from:
        raise ValidationError.single(
            "phases", "the first phase must start with the subscription", "subscription_phase_start_after_is_negative"
        )
    for phase in spec.phases:
        if not phase.items:
            # A phase bills and grants nothing without items (OpenMeter's SubscriptionPhaseSpec.Validate);
            # checked on the result of a whole edit, so a new phase gets its items in the same edit.
            raise ValidationError.single(
                f"phases[{phase.key}]", "a phase needs at least one item", "subscription_phase_has_no_items"
            )
        by_key: dict[str, list[ItemSpec]] = {}
        for item in phase.items:
            by_key.setdefault(item.key, []).append(item)
        for key, versions in by_key.items():
            ends = [(v.active_from, v.active_to) for v in versions]
            for (_, prev_to), (next_from, _) in itertools.pairwise(ends):
                if prev_to is None or (next_from is not None and next_from < prev_to):
                    raise ConflictError(
                        f"item {key} of phase {phase.key} would have two versions active at once",
                        code="only_single_subscription_item_allowed_at_a_time",
                    )


# ---------------------------------------------------------------------------------------------
# operations


def _phase(spec: SubscriptionSpec, key: str, field: str = "phaseKey") -> PhaseSpec:
    for phase in spec.phases:
        if phase.key == key:
            return phase
    raise ValidationError.single(field, f"phase {key} not found", "subscription_phase_not_found")


def _with_phase(spec: SubscriptionSpec, phase: PhaseSpec) -> SubscriptionSpec:
    return replace(spec, phases=tuple(phase if p.key == phase.key else p for p in spec.phases))


def _is_before_current(spec: SubscriptionSpec, phase: PhaseSpec, at: datetime) -> bool:
    current = current_phase(spec, at)
    start = phase_start(spec, phase)
    if current is None:
        return start < at
    return start < current.active_from


def _add_item(spec: SubscriptionSpec, op: AddItem, at: datetime) -> SubscriptionSpec:
    phase = _phase(spec, op.phase_key)
    if _is_before_current(spec, phase, at):
        raise ForbiddenError(f"cannot add an item to phase {phase.key}, which has already ended")
    key = op.rate_card.key
    current = current_phase(spec, at)
    versions = [i for i in phase.items if i.key == key]
    if current is not None and current.spec.key == phase.key:
        # The current phase: the new version starts now; a live version of the same key ends now.
        kept: list[ItemSpec] = []
        for item in phase.items:
            if item.key == key and (item.active_to is None or item.active_to > at):
                if item.active_from is not None and item.active_from > at:
                    raise ConflictError(
                        f"item {key} already has a version scheduled to start at {item.active_from.isoformat()}",
                        code="only_single_subscription_item_allowed_at_a_time",
                    )
                if item.active_to is not None:
                    # OpenMeter's PatchAddItem: a PatchForbiddenError (403), "you should delete first".
                    raise ForbiddenError(
                        f"item {key} already ends at {item.active_to.isoformat()}, after the new version "
                        "would start: remove it first"
                    )
                item = replace(item, active_to=at)
            kept.append(item)
        new = ItemSpec(op.item_id, key, op.rate_card, active_from=at, created_at=at)
        return _with_phase(spec, replace(phase, items=(*kept, new)))
    if versions:
        raise ForbiddenError(f"phase {phase.key} already has an item {key}; remove it first")
    return _with_phase(
        spec, replace(phase, items=(*phase.items, ItemSpec(op.item_id, key, op.rate_card, created_at=at)))
    )


def _remove_item(spec: SubscriptionSpec, op: RemoveItem, at: datetime) -> SubscriptionSpec:
    phase = _phase(spec, op.phase_key)
    versions = [i for i in phase.items if i.key == op.item_key]
    if not versions:
        raise ValidationError.single(
            "itemKey", f"item {op.item_key} does not exist in phase {phase.key}", "subscription_item_not_found"
        )
    if _is_before_current(spec, phase, at):
        raise ForbiddenError(f"cannot remove an item from phase {phase.key}, which has already ended")
    current = current_phase(spec, at)
    last = versions[-1]
    if current is not None and current.spec.key == phase.key:
        if last.active_to is not None and last.active_to <= at:
            # Already ended (an edit retried, or an immediate removal followed by one at the next
            # billing cycle): ending it again would move its end later and bill the days between.
            raise ValidationError.single(
                "itemKey",
                f"item {op.item_key} of phase {phase.key} already ended at {last.active_to.isoformat()}",
                "subscription_item_not_found",
            )
        # History stays: the live version ends now; a version scheduled for later is dropped.
        if last.active_from is not None and last.active_from > at:
            items = tuple(i for i in phase.items if i is not last)
        else:
            items = tuple(replace(i, active_to=at) if i is last else i for i in phase.items)
        return _with_phase(spec, replace(phase, items=items))
    return _with_phase(spec, replace(phase, items=tuple(i for i in phase.items if i is not last)))


def _add_phase(spec: SubscriptionSpec, op: AddPhase, at: datetime) -> SubscriptionSpec:
    new = op.phase
    if any(p.key == new.key for p in spec.phases):
        raise ConflictError(f"phase {new.key} already exists", code="subscription_phase_key_not_unique")
    start = new.start_after.add_to(spec.active_from)
    if start <= at:
        raise ForbiddenError("cannot add a phase that starts in the past")
    if spec.active_to is not None and start >= spec.active_to:
        raise ForbiddenError("cannot add a phase that starts after the subscription ends")
    later = sorted((p for p in spec.phases if phase_start(spec, p) >= start), key=lambda p: phase_start(spec, p))
    if later and new.duration is None:
        raise ValidationError.single("phase.duration", "required unless the phase is the last one", "required")
    shifted = {p.key: p for p in spec.phases}
    if later and new.duration is not None:
        # The next phase starts after the new one's duration; the ones after keep their spacing
        # (OpenMeter's PatchAddPhase: each moves by duration - (next's startAfter - new's startAfter)).
        till_next = later[0].start_after.plus(new.start_after, -1)
        diff = new.duration.plus(till_next, -1)
        for p in later:
            shifted[p.key] = replace(p, start_after=_shift(p.start_after, spec, diff))
    return replace(spec, phases=(*shifted.values(), new))


def _remove_phase(spec: SubscriptionSpec, op: RemovePhase, at: datetime) -> SubscriptionSpec:
    phase = _phase(spec, op.phase_key)
    start = phase_start(spec, phase)
    if start <= at:
        raise ForbiddenError("cannot remove a phase that has already started")
    if op.shift not in ("next", "prev"):
        raise ValidationError.single("shift", "must be next or prev", "invalid_shift")
    rest = [p for p in spec.phases if p.key != phase.key]
    if op.shift == "next":
        later = sorted((p for p in rest if phase_start(spec, p) > start), key=lambda p: phase_start(spec, p))
        if later:
            # They move back by the gap the removed phase left (OpenMeter's PatchRemovePhase).
            gap = later[0].start_after.plus(phase.start_after, -1)
            shifted = {p.key: replace(p, start_after=_shift(p.start_after, spec, gap, -1)) for p in later}
            rest = [shifted.get(p.key, p) for p in rest]
    return replace(spec, phases=tuple(rest))


def _stretch_phase(spec: SubscriptionSpec, op: StretchPhase, at: datetime) -> SubscriptionSpec:
    phase = _phase(spec, op.phase_key)
    if _is_before_current(spec, phase, at):
        raise ForbiddenError("cannot stretch a phase that has already ended")
    if len(spec.phases) < 2:
        raise ConflictError("cannot stretch the only phase", code="subscription_phase_stretch_single")
    ordered = sorted(spec.phases, key=lambda p: phase_start(spec, p))
    index = next(i for i, p in enumerate(ordered) if p.key == phase.key)
    sign = -1 if op.negative else 1
    updated = list(ordered)
    for i in range(index + 1, len(ordered)):
        p = ordered[i]
        # Each later phase's startAfter grows by extendBy (OpenMeter's PatchStretchPhase).
        start_after = _shift(p.start_after, spec, op.extend_by, sign)
        new_start = start_after.add_to(spec.active_from)
        previous_start = phase_start(spec, updated[i - 1]) if i - 1 != index else phase_start(spec, ordered[index])
        if new_start <= previous_start:
            raise ConflictError(
                f"phase {updated[i - 1].key} would disappear by stretching", code="subscription_phase_would_disappear"
            )
        if i == index + 1 and new_start <= at:
            raise ForbiddenError("cannot shorten the current phase into the past")
        updated[i] = replace(p, start_after=start_after)
    by_key = {p.key: p for p in updated}
    return replace(spec, phases=tuple(by_key[p.key] for p in spec.phases))


def _unschedule_edit(spec: SubscriptionSpec, op: UnscheduleEdit, at: datetime) -> SubscriptionSpec:
    current = current_phase(spec, at)
    if current is None:
        raise ConflictError("the subscription has no current phase: nothing to unschedule", code="no_current_phase")
    phase = current.spec
    kept: list[ItemSpec] = []
    for item in phase.items:
        if item.active_from is not None and item.active_from > at:
            continue  # a version scheduled for later: dropped
        if item.active_to is not None and item.active_to > at:
            item = replace(item, active_to=None)  # a scheduled end: removed
        kept.append(item)
    return _with_phase(spec, replace(phase, items=tuple(kept)))


_APPLY: dict[type, Callable[[SubscriptionSpec, object, datetime], SubscriptionSpec]] = {
    AddItem: _add_item,  # type: ignore[dict-item]
    RemoveItem: _remove_item,  # type: ignore[dict-item]
    AddPhase: _add_phase,  # type: ignore[dict-item]
    RemovePhase: _remove_phase,  # type: ignore[dict-item]
    StretchPhase: _stretch_phase,  # type: ignore[dict-item]
    UnscheduleEdit: _unschedule_edit,  # type: ignore[dict-item]
}


def _shift(start_after: IsoDuration, spec: SubscriptionSpec, by: IsoDuration, sign: int = 1) -> IsoDuration:
    """`start_after` moved by `by` (or back, sign -1), field by field as OpenMeter adds durations.

    The result is kept as that duration when no field went negative (so a later edit still adds
    months to months); otherwise as the whole seconds past the subscription's start it lands on,
    which is the same instant (stored durations have no negative fields).
    """
    moved = start_after.plus(by, sign)
    new_start = moved.add_to(spec.active_from)
    if new_start < spec.active_from:
        raise ValidationError.single("startAfter", "a phase cannot start before the subscription", "negative_start")
    if moved.is_non_negative:
        return moved
    return _seconds_duration(int((new_start - spec.active_from).total_seconds()))


def _seconds_duration(seconds: int) -> IsoDuration:
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return IsoDuration(days=days, hours=hours, minutes=minutes, seconds=secs)


def _prefixed(error: ValidationError | ConflictError | ForbiddenError, prefix: str) -> Exception:
    if isinstance(error, ValidationError):
        return ValidationError(
            [FieldViolation(f"{prefix}.{v.field}" if v.field else prefix, v.message, v.code) for v in error.violations]
        )
    error.message = f"{prefix}: {error.message}"
    error.args = (error.message,)
    return error


def phase_keys(spec: SubscriptionSpec) -> list[str]:
    return [view.spec.key for view in phases(spec)]
