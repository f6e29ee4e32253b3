"""Entitlements: usage periods, grants and the grant burn-down engine.

The engine (`engine.py`) is pure: callers fetch usage for the windows it names and pass it back.
`service.EntitlementService` holds the use cases; `cache.ValueCache` the current values.

Active windows. Every entitlement is active in [active_from, active_to) and until deleted
(`Entitlement.active_at`). The public API (REST and gRPC create, as OpenMeter's, which ignores
activeFrom/activeTo on create) makes entitlements active from now with no end; both fields are
returned on the wire. Outside its window an entitlement's value is `{"hasAccess": false}`; a
feature key resolves to the customer's entitlement active at the asked time (`for_customer(...,
at)`), so a value at a time before any entitlement existed finds none (v2: no access, v1 subject
path: 404). Windows of one customer and feature key may follow each other but never overlap
(ConflictError naming the entitlement in the way). The balance worker skips entitlements that have
not started or have ended; an ended entitlement's history defaults to ending at its active_to.

The API subscriptions call (in-process, on `EntitlementService`):

- `create_managed(namespace, customer, data, *, subscription_id, active_from, active_to=None,
  annotations=None)` creates an entitlement from an ordinary `EntitlementInput`, active in
  [active_from, active_to), annotated `{"subscription.id": subscription_id}` (OpenMeter's
  annotation; it is what the wire shows, under `annotations`) plus any extra `annotations` (an
  item reference, say). Defaults that depend on "now" are taken at active_from instead: the
  usage period anchor, measureUsageFrom (NOW, CURRENT_PERIOD_START, or unset: active_from) and the
  issueAfterReset grant's start. A window overlapping another live entitlement of the customer and
  feature raises ConflictError(conflicting_id=...).
- `end_managed(namespace, entitlement_id, at)` sets (or moves) active_to; `at` may not precede
  active_from (equal: never active) and may not make the window overlap a later one.
- `delete_managed(namespace, entitlement_id)` soft-deletes it.
- `managed_for(namespace, customer_id, subscription_id)` lists the customer's live entitlements of
  that subscription, by active_from.
- `guard_customer_delete` is registered on CustomerService.delete_guards (409 while an entitlement
  is active); subscriptions add their own guard there for "an active subscription".

A subscription-managed entitlement (`Entitlement.subscription_managed`) cannot be deleted,
overridden, reset or given grants through the public API: ForbiddenError (403), as OpenMeter's
subscription hook. Its value, history and grants list work as for any other. The managed
calls refuse entitlements without the annotation (ForbiddenError).
"""

from domain.entitlements.engine import (
    BurnDownError,
    GrantUsage,
    RunInput,
    RunResult,
    Segment,
    SegmentReasons,
    Snapshot,
    UsageMode,
    UsageWindow,
    breakpoints,
    run,
    run_with,
)
from domain.entitlements.grants import ExpirationDuration, ExpirationPeriod, Grant
from domain.entitlements.recurrence import (
    IsoDuration,
    Period,
    Recurrence,
    UsagePeriod,
    UsagePeriodEntry,
    ceil_minute,
    floor_minute,
    parse_interval,
    resets_between,
)

__all__ = [
    "BurnDownError",
    "ExpirationDuration",
    "ExpirationPeriod",
    "Grant",
    "GrantUsage",
    "IsoDuration",
    "Period",
    "Recurrence",
    "RunInput",
    "RunResult",
    "Segment",
    "SegmentReasons",
    "Snapshot",
    "UsageMode",
    "UsagePeriod",
    "UsagePeriodEntry",
    "UsageWindow",
    "breakpoints",
    "ceil_minute",
    "floor_minute",
    "parse_interval",
    "resets_between",
    "run",
    "run_with",
]
