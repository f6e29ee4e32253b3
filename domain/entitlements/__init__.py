"""Entitlements: usage periods, grants and the grant burn-down engine.

The engine (`engine.py`) is pure: callers fetch usage for the windows it names and pass it back.
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
