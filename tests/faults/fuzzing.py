"""What the fuzz tests share: reproducible hypothesis settings and a peak-memory probe."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

from hypothesis import HealthCheck, settings

MIB = 1 << 20


def fuzz(examples: int) -> settings:
    """Reproducible runs: the same examples every time, no database, no deadline (a slow
    example is no failure here; each file's run time is kept small by the counts)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def peak_memory(action: Callable[[], object]) -> tuple[int, object]:
    """Run `action`; return (the peak of Python's allocations meanwhile, its result or the
    exception it raised)."""
    tracemalloc.start()
    try:
        try:
            outcome: object = action()
        except Exception as exc:  # noqa: BLE001 - the caller asserts on what came out
            outcome = exc
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()
