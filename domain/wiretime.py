"""Times on the wire: RFC 3339, in UTC with a "Z" ("2026-11-01T00:00:00Z"), as OpenMeter writes them.

Every REST body, webhook payload, CLI output and collected record writes its times through
`rfc3339`, so they all agree on the zone and the suffix; a caller picks only the precision (and,
for a meter's CSV, the zone of its windows).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Literal, overload

# `datetime.isoformat`'s: "auto" keeps microseconds when there are any; the others cut (never round).
Timespec = Literal["auto", "seconds", "milliseconds"]


@overload
def rfc3339(value: datetime, *, timespec: Timespec = "auto", zone: tzinfo = UTC) -> str: ...


@overload
def rfc3339(value: None, *, timespec: Timespec = "auto", zone: tzinfo = UTC) -> None: ...


def rfc3339(value: datetime | None, *, timespec: Timespec = "auto", zone: tzinfo = UTC) -> str | None:
    """`value` in `zone` (UTC unless asked), written "Z" where the offset is zero; None for None
    (an optional field stays absent or null)."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat(timespec=timespec)
    return text[:-6] + "Z" if text.endswith("+00:00") else text
