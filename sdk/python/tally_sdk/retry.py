"""Retry with capped exponential backoff and full jitter, for calls that are safe to repeat."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import grpc

# UNAVAILABLE: the server is unreachable or could not make the work durable in time.
# DEADLINE_EXCEEDED: the attempt ran out of time; for an idempotent call, trying again is safe.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How idempotent calls (reads, and ingest, which the server deduplicates) are retried.

    Attempt n (0-based) waits a random time in [0, min(max_backoff, initial_backoff * multiplier**n)]
    before the next one; full jitter keeps many clients from retrying in step.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    codes: frozenset[grpc.StatusCode] = field(default=RETRYABLE)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoff times must be >= 0 and multiplier >= 1")

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier**attempt)
        return random.uniform(0, ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)
