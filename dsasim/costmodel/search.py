"""Bisection over integers, shared by the batch limits, the plan search and the crossover search."""

from __future__ import annotations

from collections.abc import Callable


def last_true(predicate: Callable[[int], bool], low: int, high: int) -> int:
    """Return the largest x in [low, high) for which a monotone `predicate` holds.

    The caller guarantees predicate(low) is True and predicate(high) is False; the predicate must be True
    up to some x and False after it.
    """
    while high - low > 1:
        middle = (low + high) // 2
        if predicate(middle):
            low = middle
        else:
            high = middle
    return low
