"""`again_on_conflict`: a write that lost a race to another writer (ConflictError) is run again,
a bounded number of times; any other failure is not retried."""

from __future__ import annotations

import pytest

from domain.errors import ConflictError, NotFoundError, again_on_conflict


class Write:
    """Raises `failures` in turn, then answers how many calls it took."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.calls


async def test_a_write_that_lost_a_race_is_run_again() -> None:
    write = Write(ConflictError("made first by another"))
    assert await again_on_conflict(write) == 2


async def test_conflicts_past_the_attempts_are_raised() -> None:
    write = Write(*(ConflictError(f"lost {i}") for i in range(3)))
    with pytest.raises(ConflictError, match="lost 2"):
        await again_on_conflict(write, attempts=3)
    assert write.calls == 3


async def test_other_failures_are_not_retried() -> None:
    write = Write(NotFoundError("invoice", "x"))
    with pytest.raises(NotFoundError):
        await again_on_conflict(write)
    assert write.calls == 1
